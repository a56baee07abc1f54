//! libtorch works from Rust: a tensor op and a safetensors VarStore round trip.
use tch::{nn, nn::Module, Device, Kind, Tensor};

#[test]
fn tensor_matmul_matches_hand_computation() {
    let a = Tensor::from_slice(&[1f32, 2., 3., 4.]).view([2, 2]);
    let b = Tensor::from_slice(&[5f32, 6., 7., 8.]).view([2, 2]);
    let c = a.matmul(&b);
    assert_eq!(c.size(), [2, 2]);
    assert_eq!(
        Vec::<f32>::try_from(c.flatten(0, 1)).unwrap(),
        [19., 22., 43., 50.]
    );
}

#[test]
fn varstore_safetensors_round_trip() {
    tch::manual_seed(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("net.safetensors");

    let build = |vs: &nn::VarStore| {
        let root = vs.root();
        nn::seq()
            .add(nn::linear(&root / "fc1", 4, 8, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "fc2", 8, 1, Default::default()))
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs);
    vs.save(&path).unwrap();

    // A fresh store starts from other random weights, then loads ours.
    tch::manual_seed(2);
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    let net2 = build(&vs2);
    let x = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
    assert!(!net
        .forward(&x)
        .allclose(&net2.forward(&x), 1e-6, 1e-6, false));
    vs2.load(&path).unwrap();
    assert!(net.forward(&x).equal(&net2.forward(&x)));

    // It is a real safetensors file: the header names our variables.
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    for name in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
        assert!(header.contains(name), "{name} missing from {header}");
    }
}
