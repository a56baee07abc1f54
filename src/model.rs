//! The model stage: what the network predicts ([`Target`], with the recipe's age
//! standardisation) and the recipe's m46 network: six VGG-style blocks and a three-layer head.
//!
//! Block k: conv 3×3 (pad 1) → ELU → BatchNorm → conv 1×1 → ELU → BatchNorm → max-pool
//! 3×3 stride 2 (no padding); channels 32, 64, 128, 128, 256, 384. Head: flatten →
//! dropout 0.3 → linear 2048 → ELU → dropout 0.3 → linear 2048 → ELU → linear 1. The
//! sex ("gender") model ends in a sigmoid; `forward` returns its logit, and
//! [`M46::predict`] applies the sigmoid. Optionally sex (±1) joins the flattened features.
//!
//! Variable names (`blocks.0.conv3.weight`, `fc1.bias`, …) match `scripts/m46.py`.
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// The recipe's target standardisation: (months − 120) / 120.
pub const AGE_CENTER: f64 = 120.0;
pub const AGE_SCALE: f64 = 120.0;
/// Bone ages a reading reports, in months: the RSNA training range (1–228).
pub const AGE_RANGE_MONTHS: (f64, f64) = (0.0, 228.0);

/// What the network predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Bone age, standardised as (months − 120) / 120.
    #[default]
    Age,
    /// Sex, 1 = male (the recipe's "gender" model).
    Sex,
}

/// Channels of the six blocks.
pub const CHANNELS: [i64; 6] = [32, 64, 128, 128, 256, 384];
pub const HIDDEN: i64 = 2048;
pub const DROPOUT: f64 = 0.3;

/// What to build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `age` (regression) or `sex` (classification, the recipe's gender model).
    pub target: Target,
    /// Concatenate sex (±1) to the flattened features (off in the recipe).
    pub sex_input: bool,
    /// Dropout before `fc1` and `fc2` in training (the recipe: 0.3; 0 turns it off, as the
    /// training-step parity test with PyTorch needs).
    pub dropout: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            target: Target::Age,
            sex_input: false,
            dropout: DROPOUT,
        }
    }
}

/// Spatial size after one 3×3 stride-2 max-pool without padding.
pub fn pooled(n: i64) -> i64 {
    if n < 3 {
        0
    } else {
        (n - 3) / 2 + 1
    }
}

#[derive(Debug)]
struct Block {
    conv3: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv1: nn::Conv2D,
    bn2: nn::BatchNorm,
}

/// Conv weights Kaiming-normal (fan_out, ReLU gain); biases as PyTorch's default.
fn conv(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let bound = 1.0 / ((cin * k * k) as f64).sqrt();
    let cfg = nn::ConvConfig {
        padding: k / 2,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        bs_init: nn::Init::Uniform {
            lo: -bound,
            up: bound,
        },
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// PyTorch's default `nn.Linear` initialisation (kaiming_uniform with a = √5, i.e.
/// U(±1/√fan_in) for weights and biases); tch's own default is √6 times wider.
fn linear(p: nn::Path, cin: i64, cout: i64) -> nn::Linear {
    let bound = 1.0 / (cin as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    nn::linear(
        p,
        cin,
        cout,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// m46 for one input size.
#[derive(Debug)]
pub struct M46 {
    blocks: Vec<Block>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
    pub config: ModelConfig,
    /// Input [C, H, W].
    pub input: [i64; 3],
}

impl M46 {
    /// Builds the network under `vs.root()` for inputs `[C, H, W]`. H and W must be at
    /// least 127 (six pools).
    pub fn new(vs: &nn::Path, input: [i64; 3], config: ModelConfig) -> crate::Result<Self> {
        let (mut h, mut w) = (input[1], input[2]);
        let mut cin = input[0];
        let mut blocks = Vec::new();
        let bn = nn::BatchNormConfig {
            ws_init: nn::Init::Const(1.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        for (k, &c) in CHANNELS.iter().enumerate() {
            let p = vs / "blocks" / k;
            blocks.push(Block {
                conv3: conv(&p / "conv3", cin, c, 3),
                bn1: nn::batch_norm2d(&p / "bn1", c, bn),
                conv1: conv(&p / "conv1", c, c, 1),
                bn2: nn::batch_norm2d(&p / "bn2", c, bn),
            });
            (h, w, cin) = (pooled(h), pooled(w), c);
        }
        if h < 1 || w < 1 {
            return Err(crate::Error::Invalid {
                what: "model input".into(),
                message: format!(
                    "{}×{} is too small for six 3×3/2 pools (need at least 127×127)",
                    input[1], input[2]
                ),
            });
        }
        let features = cin * h * w + i64::from(config.sex_input);
        Ok(Self {
            blocks,
            fc1: linear(vs / "fc1", features, HIDDEN),
            fc2: linear(vs / "fc2", HIDDEN, HIDDEN),
            fc3: linear(vs / "fc3", HIDDEN, 1),
            config,
            input,
        })
    }

    /// `[N, C, H, W]` images (and `[N, 1]` male as 1/0 when `sex_input`) → `[N, 1]`:
    /// standardised age, or the sex logit.
    pub fn forward(&self, x: &Tensor, male: Option<&Tensor>, train: bool) -> Tensor {
        self.forward_with(x, male, train, None).1
    }

    /// Eval-mode forward pass that also returns block `block`'s (1-based) activation
    /// before its pool, `[N, C, h, w]`, for Grad-CAM; gradients flow as usual.
    pub fn forward_explained(
        &self,
        x: &Tensor,
        male: Option<&Tensor>,
        block: usize,
    ) -> (Tensor, Tensor) {
        let (a, y) = self.forward_with(x, male, false, Some(block));
        (a.expect("block checked by the caller"), y)
    }

    fn forward_with(
        &self,
        x: &Tensor,
        male: Option<&Tensor>,
        train: bool,
        keep: Option<usize>,
    ) -> (Option<Tensor>, Tensor) {
        let mut x = x.shallow_clone();
        let mut kept = None;
        for (k, b) in self.blocks.iter().enumerate() {
            x = b.conv3.forward(&x).elu().apply_t(&b.bn1, train);
            x = b.conv1.forward(&x).elu().apply_t(&b.bn2, train);
            if keep == Some(k + 1) {
                kept = Some(x.shallow_clone()); // [N, C, h, w]
            }
            x = x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false); // [N, C, H', W']
        }
        (kept, self.head(&x, male, train))
    }

    /// Flattened features (and sex) → the output `[N, 1]`.
    fn head(&self, x: &Tensor, male: Option<&Tensor>, train: bool) -> Tensor {
        let mut x = x.flatten(1, -1); // [N, features]
        if self.config.sex_input {
            let m = male.expect("this model takes sex as an input");
            x = Tensor::cat(&[x, m.to_kind(Kind::Float) * 2.0 - 1.0], 1);
        }
        let x = x.dropout(self.config.dropout, train).apply(&self.fc1).elu();
        let x = x.dropout(self.config.dropout, train).apply(&self.fc2).elu();
        x.apply(&self.fc3) // [N, 1]
    }

    /// Eval-mode output in the target's units: standardised age, or P(male).
    pub fn predict(&self, x: &Tensor, male: Option<&Tensor>) -> Tensor {
        let y = tch::no_grad(|| self.forward(x, male, false));
        match self.config.target {
            Target::Age => y,
            Target::Sex => y.sigmoid(),
        }
    }

    /// One row per layer: (name, output shape, parameters), for `bone-age model`.
    pub fn layer_table(&self) -> Vec<(String, String, i64)> {
        let [c, mut h, mut w] = self.input;
        let mut rows = vec![("input".to_string(), format!("{c}×{h}×{w}"), 0)];
        let mut cin = c;
        for (k, &ch) in CHANNELS.iter().enumerate() {
            rows.push((
                format!("block{} conv3×3+ELU+BN", k + 1),
                format!("{ch}×{h}×{w}"),
                cin * ch * 9 + ch + 2 * ch,
            ));
            rows.push((
                format!("block{} conv1×1+ELU+BN", k + 1),
                format!("{ch}×{h}×{w}"),
                ch * ch + ch + 2 * ch,
            ));
            (h, w, cin) = (pooled(h), pooled(w), ch);
            rows.push((
                format!("block{} maxpool3×3/2", k + 1),
                format!("{ch}×{h}×{w}"),
                0,
            ));
        }
        let f = cin * h * w + i64::from(self.config.sex_input);
        let flat = if self.config.sex_input {
            format!("{f} (+sex)")
        } else {
            f.to_string()
        };
        rows.push(("flatten".into(), flat, 0));
        rows.push((
            "dropout0.3 linear ELU".into(),
            HIDDEN.to_string(),
            f * HIDDEN + HIDDEN,
        ));
        rows.push((
            "dropout0.3 linear ELU".into(),
            HIDDEN.to_string(),
            HIDDEN * HIDDEN + HIDDEN,
        ));
        let head = if self.config.target == Target::Sex {
            "linear sigmoid"
        } else {
            "linear"
        };
        rows.push((head.into(), "1".into(), HIDDEN + 1));
        rows
    }
}

/// Trainable parameters in a store (BatchNorm running statistics are not counted).
pub fn count_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}
