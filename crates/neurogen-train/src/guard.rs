//! The NaN/Inf guard and global gradient-norm clipping of the training loop.
//!
//! Every step's loss terms are read to the host anyway (for logging), so checking them costs
//! nothing; the gradient norm costs one more read and is computed only when clipping is on.
//! On a non-finite value the loop restores the newest checkpoint, multiplies the learning rate
//! by `train.lr_cut` and replays from there. Replays are deterministic on CPU backends, so a run
//! that crashes after a rollback and is resumed from the checkpoint before it meets the same
//! fault and makes the same rollback: the guard's state needs no file of its own.

use std::fs::File;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde_json::json;

use crate::run_dir::{write_line, CheckpointState};
use crate::{RunDir, TrainConfig, TrainError};

/// A non-finite value met at a step.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    /// The step whose loss or gradient went bad.
    pub step: u64,
    /// The loss term (or `grad_norm`) that went bad.
    pub term: String,
    /// Its value (NaN, inf or -inf).
    pub value: f64,
    /// The first parameter holding non-finite values after the step, when one does.
    pub param: Option<String>,
}

impl Fault {
    /// The first non-finite named value of `step`, if any; a named term before the total
    /// `loss`, since the term says more.
    pub(crate) fn find(step: u64, values: &[(&str, f64)]) -> Option<Fault> {
        let bad = |(name, v): &&(&str, f64)| !v.is_finite() && (*name != "loss");
        values
            .iter()
            .find(bad)
            .or_else(|| values.iter().find(|(_, v)| !v.is_finite()))
            .map(|(term, value)| Fault {
                step,
                term: term.to_string(),
                value: *value,
                param: None,
            })
    }

    fn describe(&self) -> String {
        let mut s = format!("`{}` was {} at step {}", self.term, self.value, self.step);
        if let Some(p) = &self.param {
            s.push_str(&format!(" (parameter `{p}` non-finite after the update)"));
        }
        s
    }
}

/// Test hook (the `fault-injection` feature, which only the tests enable): with
/// `NEUROGEN_FAULT_NAN_AT_STEP=<k>`, the loss of step `k` reads NaN the first time this process
/// reaches it, so a test can provoke a rollback in the middle of a run.
#[cfg(feature = "fault-injection")]
pub(crate) fn inject_fault(step: u64, values: &mut [(&str, f64)]) {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static DONE: AtomicBool = AtomicBool::new(false);
    let wanted = std::env::var("NEUROGEN_FAULT_NAN_AT_STEP").ok();
    if wanted.and_then(|s| s.parse::<u64>().ok()) == Some(step) && !DONE.swap(true, Relaxed) {
        if let Some(v) = values.first_mut() {
            v.1 = f64::NAN;
        }
    }
}

/// Without the `fault-injection` feature no fault is ever injected.
#[cfg(not(feature = "fault-injection"))]
pub(crate) fn inject_fault(_step: u64, _values: &mut [(&str, f64)]) {}

/// The guard's state: rollbacks made and the learning-rate factor they left (its settings
/// are read from `[train]` at each rollback).
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Rollbacks made so far.
    pub rollbacks: u32,
    /// Product of the cuts so far.
    pub lr_scale: f64,
}

impl Guard {
    /// A fresh guard, or the one a checkpoint saved when resuming.
    pub(crate) fn new(state: Option<&CheckpointState>) -> Self {
        Guard {
            rollbacks: state.map_or(0, |s| s.rollbacks),
            lr_scale: state.map_or(1.0, |s| s.lr_scale),
        }
    }

    /// Records `fault` and names the checkpoint (of a `kind` model) to restore, or gives up
    /// with [`TrainError::Diverged`] once `train.max_rollbacks` are spent.
    ///
    /// Truncates `metrics.jsonl` to the restored step and appends a `guard` line.
    pub(crate) fn roll_back(
        &mut self,
        run: &RunDir,
        kind: &str,
        fault: Fault,
        t: &TrainConfig,
    ) -> Result<(crate::Checkpoint, CheckpointState, File), TrainError> {
        let (ckpt, state) = crate::fit::resume_point(run, kind)?;
        if self.rollbacks >= t.max_rollbacks {
            return Err(TrainError::Diverged {
                what: fault.describe(),
                rollbacks: self.rollbacks,
                lr: t.lr * self.lr_scale,
                checkpoint: ckpt.step,
            });
        }
        self.rollbacks += 1;
        self.lr_scale *= t.lr_cut;
        let lr = t.lr * self.lr_scale;
        tracing::warn!(
            "{}; rolling back to the checkpoint of step {} with learning rate {lr:.3e} \
             (rollback {} of {})",
            fault.describe(),
            ckpt.step,
            self.rollbacks,
            t.max_rollbacks
        );
        let mut metrics = run.open_metrics(ckpt.step, t.log_every, t.valid_every, true)?;
        let line = json!({
            "step": ckpt.step,
            "split": "guard",
            "event": "rollback",
            "bad_step": fault.step,
            "term": fault.term,
            "value": fault.value.to_string(),
            "param": fault.param,
            "rollbacks": self.rollbacks,
            "lr": lr,
        });
        write_line(&mut metrics, &run.metrics_file(), &line)?;
        Ok((ckpt, state, metrics))
    }
}

/// The global L2 norm of `grads` over `module`'s parameters; when `max_norm` > 0 and the norm
/// exceeds it, every gradient is scaled by `max_norm / norm` (PyTorch's `clip_grad_norm_`).
pub(crate) fn clip_grad_norm<M: Module>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let mut sum = SumSquares {
        grads: &grads,
        total: None,
    };
    module.visit(&mut sum);
    let norm = sum
        .total
        .map_or(0.0, |t| t.into_scalar::<f32>() as f64)
        .sqrt();
    if !(norm.is_finite() && max_norm > 0.0 && norm > max_norm) {
        return (grads, norm);
    }
    let mut scale = Scale {
        grads,
        factor: (max_norm / norm) as f32,
    };
    module.visit(&mut scale);
    (scale.grads, norm)
}

struct SumSquares<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.square().sum(); // [1]
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale {
    grads: GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, Distribution};

    #[derive(Module, Debug)]
    struct Two {
        first: Linear,
        second: Linear,
    }

    fn two(device: &Device) -> Two {
        Two {
            first: LinearConfig::new(3, 4).init(device),
            second: LinearConfig::new(4, 2).init(device),
        }
    }

    #[test]
    fn clipping_scales_to_the_global_norm_and_leaves_small_gradients() {
        let device = Device::flex().autodiff();
        let m = two(&device);
        let x = Tensor::<2>::random([5, 3], Distribution::Normal(0.0, 1.0), &device);
        let loss = m.second.forward(m.first.forward(x)).powf_scalar(2.0).sum() * 100.0;
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        // The norm by hand: every gradient flattened, squared, summed.
        let mut by_hand = 0.0;
        for id in [m.first.weight.id, m.second.weight.id] {
            let g = grads
                .get::<2>(id)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            by_hand += g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        }
        for b in [&m.first.bias, &m.second.bias] {
            let g = grads.get::<1>(b.as_ref().unwrap().id).unwrap();
            let g = g.into_data().try_to_vec::<f32>().unwrap();
            by_hand += g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        }
        let (grads, norm) = clip_grad_norm(&m, grads, 0.0);
        assert!(
            (norm - by_hand.sqrt()).abs() < 1e-4 * norm,
            "{norm} vs {by_hand}"
        );
        let (grads, before) = clip_grad_norm(&m, grads, norm / 4.0);
        assert_eq!(before, norm);
        let (grads, after) = clip_grad_norm(&m, grads, 0.0);
        assert!(
            (after - norm / 4.0).abs() < 1e-4 * norm,
            "{after} vs {}",
            norm / 4.0
        );
        let (_, same) = clip_grad_norm(&m, grads, norm);
        assert!(
            (same - after).abs() < 1e-6 * norm,
            "under the limit: untouched"
        );
    }

    #[test]
    fn faults_name_the_first_non_finite_term() {
        assert!(Fault::find(3, &[("loss", 1.0), ("kl", 2.0)]).is_none());
        let f = Fault::find(3, &[("loss", f64::NAN), ("kl", f64::INFINITY)]).unwrap();
        assert_eq!(
            (f.step, f.term.as_str()),
            (3, "kl"),
            "the term, not the total"
        );
        let f = Fault::find(4, &[("loss", f64::NAN), ("kl", 1.0)]).unwrap();
        assert_eq!((f.step, f.term.as_str()), (4, "loss"));
        assert!(f.describe().contains("`loss` was NaN at step 4"));
    }
}
