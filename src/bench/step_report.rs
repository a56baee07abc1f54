//! How `bone-age bench train` reports: medians over the alternating rounds, and the table
//! of ours against PyTorch with the step's breakdown by phase.
use std::fmt;

use super::step::{Breakdown, StepFigures, StepReport};

/// Each figure's median over the rounds (the breakdown phase by phase).
pub(super) fn median(runs: Vec<StepFigures>) -> StepFigures {
    let mid = |f: &dyn Fn(&StepFigures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    StepFigures {
        train_img_s: mid(&|r| r.train_img_s),
        eval_img_s: mid(&|r| r.eval_img_s),
        breakdown: Breakdown {
            prepare_ms: mid(&|r| r.breakdown.prepare_ms),
            forward_ms: mid(&|r| r.breakdown.forward_ms),
            backward_ms: mid(&|r| r.breakdown.backward_ms),
            optimizer_ms: mid(&|r| r.breakdown.optimizer_ms),
        },
        versions: runs[0].versions.clone(),
    }
}

/// Reads one phase of a [`Breakdown`].
type Phase = fn(&Breakdown) -> f64;

impl fmt::Display for StepReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [c, h, w] = self.input;
        writeln!(
            f,
            "m46 training step: input {c}×{h}×{w}, batch {}, {} timed steps, {} threads, {}; \
             medians of {} alternating rounds",
            self.batch, self.steps, self.threads, self.device, self.rounds
        )?;
        // Three significant figures: 34.2 img/s, 1.46 img/s.
        let sig = |v: f64| format!("{v:.*}", if v < 10.0 { 2 } else { 1 });
        let peer = |g: &dyn Fn(&StepFigures) -> f64| {
            self.peer.as_ref().map_or("—".to_string(), |p| sig(g(p)))
        };
        let ratio = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}×"));
        writeln!(
            f,
            "{:<26} {:>10} {:>10} {:>8}",
            "", "bone-age", "PyTorch", "ratio"
        )?;
        writeln!(
            f,
            "{:<26} {:>10} {:>10} {:>8}",
            "train img/s",
            sig(self.ours.train_img_s),
            peer(&|p| p.train_img_s),
            ratio(self.ratio_train)
        )?;
        writeln!(
            f,
            "{:<26} {:>10} {:>10} {:>8}",
            "inference img/s",
            sig(self.ours.eval_img_s),
            peer(&|p| p.eval_img_s),
            ratio(self.ratio_eval)
        )?;
        let phases: [(&str, Phase); 4] = [
            ("  batch preparation ms", |b| b.prepare_ms),
            ("  forward (+ loss) ms", |b| b.forward_ms),
            ("  zero_grad + backward ms", |b| b.backward_ms),
            ("  optimiser ms", |b| b.optimizer_ms),
        ];
        for (name, g) in phases {
            writeln!(
                f,
                "{:<26} {:>10} {:>10} {:>8}",
                name,
                sig(g(&self.ours.breakdown)),
                peer(&|p| g(&p.breakdown)),
                ""
            )?;
        }
        match &self.peer {
            Some(p) => write!(f, "ours: {}; peer: {}", self.ours.versions, p.versions),
            None => write!(f, "peer: not run"),
        }
    }
}
