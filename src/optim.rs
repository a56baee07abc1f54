//! Adam and AdamW (torch.optim semantics: L2 or decoupled weight decay) with state we can
//! save and restore, so a resumed run continues with the same moments (tch's built-in
//! optimizers keep theirs inside libtorch, out of reach), and global gradient-norm
//! clipping as torch.nn.utils.clip_grad_norm_.
use std::collections::HashMap;
use std::path::Path;

use tch::{nn, Kind, Tensor};

use crate::error::{Error, Result};

extern "C" {
    fn bone_age_reset_grad(tensor: *mut std::ffi::c_void);
    fn bone_age_adam_step(
        param: *mut std::ffi::c_void,
        exp_avg: *mut std::ffi::c_void,
        exp_avg_sq: *mut std::ffi::c_void,
        step: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: i32,
    );
    fn bone_age_clip_grad_norm(params: *const *mut std::ffi::c_void, n: i64, max_norm: f64) -> f64;
}

#[derive(Debug)]
pub struct Adam {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Decoupled weight decay (AdamW) instead of L2 in the gradient (Adam).
    pub decoupled: bool,
    /// Steps taken (bias correction).
    pub step: i64,
    /// Learning-rate multiplier per parameter, in `params` order (1 unless set).
    scales: Vec<f64>,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Over the trainable variables of `vs`, in the order the model created them (as
    /// PyTorch's `parameters()`, which the total norm of gradient clipping sums in).
    pub fn new(vs: &nn::VarStore, lr: f64, betas: (f64, f64), weight_decay: f64) -> Self {
        let created: HashMap<usize, usize> = vs
            .trainable_variables()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.data_ptr() as usize, i))
            .collect();
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by_key(|(name, t)| {
            (created.get(&(t.data_ptr() as usize)).copied(), name.clone())
        });
        let zeros = |p: &[(String, Tensor)]| p.iter().map(|(_, t)| t.zeros_like()).collect();
        Self {
            lr,
            betas,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            step: 0,
            exp_avg: zeros(&params),
            exp_avg_sq: zeros(&params),
            scales: vec![1.0; params.len()],
            params,
        }
    }

    /// The same over `vs` as `[train]` configures it: Adam or AdamW, and the head's rate.
    pub fn from_config(vs: &nn::VarStore, tc: &crate::schedule::TrainConfig) -> Self {
        let mut opt = Self::new(vs, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay);
        opt.decoupled = tc.optimizer == crate::schedule::OptimizerKind::AdamW;
        opt.scale_lr("fc", tc.head_lr_scale);
        opt
    }

    /// Scales every gradient by `max_norm / total` when their global L2 norm `total`
    /// exceeds `max_norm` (torch.nn.utils.clip_grad_norm_, op for op: csrc/adam.cpp);
    /// returns `total`.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let ptrs: Vec<*mut std::ffi::c_void> = self
            .params
            .iter_mut()
            .map(|(_, p)| p.as_mut_ptr().cast())
            .collect();
        // SAFETY: every pointer is a live tensor handle owned by this optimizer, for the
        // length of the call; the call only reads and scales their gradients.
        unsafe { bone_age_clip_grad_norm(ptrs.as_ptr(), ptrs.len() as i64, max_norm) }
    }

    /// Multiplies the learning rate of the parameters whose name starts with `prefix`.
    pub fn scale_lr(&mut self, prefix: &str, factor: f64) {
        for ((name, _), s) in self.params.iter().zip(&mut self.scales) {
            if name.starts_with(prefix) {
                *s *= factor;
            }
        }
    }

    /// Sets every gradient to none (torch.optim's default), so the next backward writes
    /// fresh gradients rather than adding into zeroed ones.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            // SAFETY: `p` is a live tensor handle owned by this optimizer; the call only
            // drops its gradient (csrc/grad.cpp).
            unsafe { bone_age_reset_grad(p.as_mut_ptr().cast()) }
        }
    }

    /// One update from the gradients in place, as torch.optim.Adam/AdamW's single-tensor
    /// step on the CPU, op for op (csrc/adam.cpp): two temporaries per parameter.
    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = self.betas;
        for ((((_, p), m), v), scale) in self
            .params
            .iter_mut()
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
            .zip(&self.scales)
        {
            // SAFETY: the three handles are live tensors owned by this optimizer; the call
            // updates them in place under a no-grad guard and keeps no reference.
            unsafe {
                bone_age_adam_step(
                    p.as_mut_ptr().cast(),
                    m.as_mut_ptr().cast(),
                    v.as_mut_ptr().cast(),
                    self.step,
                    self.lr * scale,
                    b1,
                    b2,
                    self.eps,
                    self.weight_decay,
                    i32::from(self.decoupled),
                )
            }
        }
    }

    /// Writes the moments and step count to a safetensors file (a training run writes
    /// it as part of its checkpoint set, see `commit`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> =
            vec![("step".into(), Tensor::from_slice(&[self.step]))];
        for ((name, _), (m, v)) in self
            .params
            .iter()
            .zip(self.exp_avg.iter().zip(&self.exp_avg_sq))
        {
            named.push((format!("exp_avg.{name}"), m.to_device(tch::Device::Cpu)));
            named.push((format!("exp_avg_sq.{name}"), v.to_device(tch::Device::Cpu)));
        }
        Tensor::write_safetensors(&named, path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: crate::error::torch_message(&e),
        })
    }

    /// Restores what [`Adam::save`] wrote; every parameter must be present.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let loaded: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: crate::error::torch_message(&e),
            })?
            .into_iter()
            .collect();
        let get = |k: &str| {
            loaded.get(k).ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                message: format!("optimizer state has no `{k}`"),
            })
        };
        self.step = get("step")?.int64_value(&[0]);
        for ((name, p), (m, v)) in self
            .params
            .iter()
            .zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut()))
        {
            for (slot, key) in [(m, "exp_avg"), (v, "exp_avg_sq")] {
                let t = get(&format!("{key}.{name}"))?;
                if t.size() != p.size() {
                    return Err(Error::Checkpoint {
                        path: path.to_path_buf(),
                        message: format!(
                            "`{key}.{name}` is {:?}, the parameter {:?}",
                            t.size(),
                            p.size()
                        ),
                    });
                }
                *slot = t.to_kind(Kind::Float).to_device(p.device());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::Module, Device};

    #[test]
    fn matches_the_closed_form_first_step_and_minimises() {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 3, 1, Default::default());
        let mut opt = Adam::new(&vs, 0.1, (0.9, 0.999), 0.0);
        let x = Tensor::randn([64, 3], (Kind::Float, Device::Cpu));
        let y = x.sum_dim_intlist(1, true, Kind::Float);
        let w0 = lin.ws.copy();
        let loss = (lin.forward(&x) - &y).square().mean(Kind::Float);
        opt.zero_grad();
        loss.backward();
        let g = lin.ws.grad().copy();
        opt.step();
        // First Adam step moves each weight by lr · sign(g) (up to eps).
        let moved = (&w0 - &lin.ws) / 0.1;
        assert!(f64::try_from((moved - g.sign()).abs().max()).unwrap() < 1e-4);
        for _ in 0..300 {
            let loss = (lin.forward(&x) - &y).square().mean(Kind::Float);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
        let loss = f64::try_from((lin.forward(&x) - &y).square().mean(Kind::Float)).unwrap();
        assert!(loss < 1e-3, "{loss}");
    }

    #[test]
    fn zero_grad_sets_gradients_to_none_and_backward_writes_them_afresh() {
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "l", 3, 1, Default::default());
        let mut opt = Adam::new(&vs, 0.1, (0.9, 0.999), 0.0);
        let x = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let loss = || lin.forward(&x).square().mean(Kind::Float);
        loss().backward();
        let first = lin.ws.grad().copy();
        opt.zero_grad();
        assert!(!lin.ws.grad().defined(), "no gradient after zero_grad");
        loss().backward();
        assert!(
            lin.ws.grad().equal(&first),
            "written afresh, not added to the old one"
        );
    }
}
