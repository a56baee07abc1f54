//! An exponential moving average of the weights and BatchNorm statistics (as timm's
//! ModelEmaV2): after each optimiser step, `shadow ← d · shadow + (1 − d) · live`, with
//! `d = min(decay, (1 + t) / (10 + t))` at step `t`, so the first steps are not averaged
//! with the random initialisation. Validation and `ema.safetensors` use the average; it is
//! saved with every checkpoint set and restored on resume, so resuming stays exact.
use std::path::Path;

use tch::{nn, Tensor};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Ema {
    pub decay: f64,
    /// (name, live variable, its average), in name order.
    vars: Vec<(String, Tensor, Tensor)>,
}

impl Ema {
    /// Starts the average at the current values of every variable of `vs`.
    pub fn new(vs: &nn::VarStore, decay: f64) -> Self {
        let mut vars: Vec<(String, Tensor, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(name, t)| {
                let avg = t.detach().copy();
                (name, t, avg)
            })
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Self { decay, vars }
    }

    /// Folds the live values in after optimiser step `step` (1-based).
    pub fn update(&mut self, step: i64) {
        let t = step.max(1) as f64;
        let d = self.decay.min((1.0 + t) / (10.0 + t));
        tch::no_grad(|| {
            for (_, live, avg) in &mut self.vars {
                let _ = avg.lerp_(&live.detach(), 1.0 - d);
            }
        });
    }

    /// Runs `f` with the averaged values in the live variables, then puts the live ones
    /// back (validation with the average).
    pub fn with_average<T>(&self, f: impl FnOnce() -> T) -> T {
        let saved: Vec<Tensor> = self
            .vars
            .iter()
            .map(|(_, l, _)| l.detach().copy())
            .collect();
        tch::no_grad(|| {
            for (_, live, avg) in &self.vars {
                live.shallow_clone().copy_(avg);
            }
        });
        let out = f();
        tch::no_grad(|| {
            for ((_, live, _), s) in self.vars.iter().zip(&saved) {
                live.shallow_clone().copy_(s);
            }
        });
        out
    }

    /// Writes the average as a weights file under the model's names: a checkpoint that
    /// `evaluate` and `predict` load like any other.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named: Vec<(String, Tensor)> = self
            .vars
            .iter()
            .map(|(n, _, a)| (n.clone(), a.to_device(tch::Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&named, path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: crate::error::torch_message(&e),
        })
    }

    /// Restores what [`Ema::save`] wrote; every variable must be there with its shape.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let file: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| bad(crate::error::torch_message(&e)))?
            .into_iter()
            .collect();
        for (name, live, avg) in &mut self.vars {
            let t = file
                .get(name.as_str())
                .ok_or_else(|| bad(format!("the weight average has no `{name}`")))?;
            if t.size() != live.size() {
                return Err(bad(format!(
                    "`{name}` is {:?}, the model needs {:?}",
                    t.size(),
                    live.size()
                )));
            }
            *avg = t.to_kind(live.kind()).to_device(live.device());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn averages_with_warmup_and_swaps_back() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().zeros("w", &[3]);
        let mut ema = Ema::new(&vs, 0.9);
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(1.0);
        });
        ema.update(1); // d = min(0.9, 2/11)
        let d = 2.0 / 11.0;
        let avg = ema.with_average(|| f64::try_from(w.mean(Kind::Double)).unwrap());
        assert!((avg - (1.0 - d)).abs() < 1e-6, "{avg}");
        assert_eq!(
            f64::try_from(w.mean(Kind::Double)).unwrap(),
            1.0,
            "live restored"
        );
        for step in 2..200 {
            ema.update(step);
        }
        let avg = ema.with_average(|| f64::try_from(w.mean(Kind::Double)).unwrap());
        assert!(
            (avg - 1.0).abs() < 1e-4,
            "converges to the live value: {avg}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ema.safetensors");
        ema.save(&path).unwrap();
        let mut other = Ema::new(&vs, 0.9);
        other.load(&path).unwrap();
        assert_eq!(
            other.with_average(|| w.copy()),
            ema.with_average(|| w.copy())
        );
    }
}
