//! The m46 network: parameter counts as PyTorch counts them, output shapes, the sex head.
mod common;

use bone_age::model::{count_parameters, ModelConfig, M46};
use bone_age::Target;
use common::{net, serial};
use tch::{nn, Device, Kind, Tensor};

#[test]
fn parameter_counts_match_pytorch() {
    assert_eq!(
        count_parameters(&net([1, 500, 375], ModelConfig::default()).0),
        24_751_201
    );
    assert_eq!(
        count_parameters(&net([1, 128, 128], ModelConfig::default()).0),
        6_663_265
    );
    let sex_in = ModelConfig {
        sex_input: true,
        ..Default::default()
    };
    assert_eq!(
        count_parameters(&net([1, 128, 128], sex_in).0),
        6_663_265 + 2048
    );
    let err = M46::new(
        &nn::VarStore::new(Device::Cpu).root(),
        [1, 100, 128],
        ModelConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("100×128"), "{err}");
}

#[test]
fn output_shapes_and_sex_head() {
    let _turn = serial();
    tch::manual_seed(0);
    let x = Tensor::randn([3, 1, 128, 128], (Kind::Float, Device::Cpu));
    let (_, age) = net([1, 128, 128], ModelConfig::default());
    assert_eq!(age.forward(&x, None, true).size(), [3, 1]);
    assert_eq!(age.predict(&x, None).size(), [3, 1]);
    let (_, sex) = net(
        [1, 128, 128],
        ModelConfig {
            target: Target::Sex,
            sex_input: false,
            ..Default::default()
        },
    );
    let p = sex.predict(&x, None);
    assert!(f64::try_from(p.min()).unwrap() >= 0.0 && f64::try_from(p.max()).unwrap() <= 1.0);
    let (_, with_sex) = net(
        [1, 128, 128],
        ModelConfig {
            sex_input: true,
            ..Default::default()
        },
    );
    let male = Tensor::from_slice(&[1f32, 0., 1.]).view([3, 1]);
    let a = with_sex.predict(&x, Some(&male));
    let b = with_sex.predict(&x, Some(&(1.0 - &male)));
    assert!(
        !a.allclose(&b, 1e-7, 1e-7, false),
        "sex changes the prediction"
    );
}
