//! Do two backends train the same model the same way?
//!
//! Backends seed their own generators differently by design, so a run on `flex` and one on
//! `wgpu` never match bit for bit. Parity removes every source of difference but the
//! arithmetic: the initial weights are saved once (burnpack) and loaded on each backend, and
//! every batch and noise tensor is drawn on the host by the same [`Trainer`] `neurogen train`
//! runs, whose `step` each backend takes. What remains —
//! the loss and every parameter's gradient after one step, the loss curve after K steps — must
//! agree within float32 rounding.

use std::path::Path;

use burn::tensor::Device;
use neurogen_data::Dataset;
use serde::Serialize;

use crate::registry::Build;
use crate::trainer::{StepArgs, Trainer};
use crate::{Checkpoint, Experiment, TrainError};

/// Largest relative differences that pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Of the first step's loss terms.
    pub loss: f64,
    /// Of any parameter's gradient after the first step, `max |a − b| / max |a|` per tensor.
    pub grad: f64,
    /// Of the loss at any of the K steps.
    pub curve: f64,
}

/// The largest difference between a reference and another backend's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diff {
    /// `max |a − b|`.
    pub max_abs: f64,
    /// The relative difference compared with the tolerance.
    pub max_rel: f64,
}

/// A difference of one named quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Named {
    /// What was compared (a loss term, or a parameter's dotted path).
    pub name: String,
    /// The reference backend's value (losses) or `max |a|` (gradients).
    pub reference: f64,
    /// The difference.
    #[serde(flatten)]
    pub diff: Diff,
}

/// One backend against the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendReport {
    /// The backend compared.
    pub backend: String,
    /// First-step loss terms.
    pub loss: Vec<Named>,
    /// Every parameter's gradient after the first step.
    pub grads: Vec<Named>,
    /// The loss curve over K steps (every step's loss terms).
    pub curve: Diff,
    /// The step where the curve differed most.
    pub curve_worst_step: u64,
    /// Each tolerance exceeded, in words.
    pub failures: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParityReport {
    /// The model family.
    pub model: String,
    /// The reference backend.
    pub reference: String,
    /// Steps of the compared loss curve.
    pub steps: u64,
    /// Tolerances applied.
    pub tolerances: Tolerances,
    /// The reference backend's loss at each step (`loss`, the total minimised).
    pub reference_curve: Vec<f64>,
    /// Every other backend.
    pub backends: Vec<BackendReport>,
    /// Whether every backend is within every tolerance.
    pub passed: bool,
}

/// What one backend computed.
struct Trace {
    /// First-step loss terms.
    loss: Vec<(String, f64)>,
    /// First-step gradients by parameter path.
    grads: Vec<(String, Vec<f32>)>,
    /// Every step's loss terms, in step order (names as in `loss`).
    curve: Vec<Vec<f64>>,
}

/// Compares `devices` (name, plain device; the first is the reference) on `exp`'s model and
/// data over `steps` steps of the family's production [`Trainer::step`]; the initial weights
/// are written once to `dir`.
///
/// `perturb` names a backend whose loaded weights get `+1e-3` each, to show what a real
/// difference looks like (the test of this check).
pub fn parity(
    exp: &Experiment,
    data: &Dataset,
    devices: &[(String, Device)],
    steps: u64,
    tol: Tolerances,
    dir: &Path,
    perturb: Option<&str>,
) -> Result<ParityReport, TrainError> {
    let steps = steps.max(1);
    let (ref_name, ref_dev) = devices.first().ok_or_else(|| TrainError::RunDir {
        path: dir.to_path_buf(),
        message: "parity needs at least one backend".into(),
    })?;
    let build = |device| Build::new(exp, &data.train.meta, device);
    let family = exp.model.family();
    // The initial weights, written once by the reference backend as a step-0 checkpoint.
    ref_dev.seed(exp.seed);
    let weights = Checkpoint {
        step: 0,
        dir: dir.to_path_buf(),
    };
    family
        .trainer(&build(ref_dev), Some(&data.train))
        .save(&weights)?;
    let mut traces = Vec::new();
    for (name, device) in devices {
        let mut trainer = family.trainer(&build(device), None);
        trainer.restore(&weights)?;
        if perturb == Some(name.as_str()) {
            trainer.perturb(1e-3);
        }
        traces.push(trace(trainer.as_mut(), data, steps, exp.train.grad_clip));
    }
    let reference = &traces[0];
    let mut report = ParityReport {
        model: exp.model.kind().into(),
        reference: ref_name.clone(),
        steps,
        tolerances: tol,
        reference_curve: reference
            .curve
            .iter()
            .map(|v| v.first().copied().unwrap_or(f64::NAN))
            .collect(),
        backends: Vec::new(),
        passed: true,
    };
    for ((name, _), t) in devices.iter().zip(&traces).skip(1) {
        let b = compare(name, reference, t, tol);
        report.passed &= b.failures.is_empty();
        report.backends.push(b);
    }
    Ok(report)
}

/// `steps` training steps exactly as `neurogen train` takes them, keeping the first step's
/// loss terms and gradients.
fn trace(trainer: &mut dyn Trainer, data: &Dataset, steps: u64, clip: f64) -> Trace {
    let (mut loss, mut grads, mut curve) = (Vec::new(), Vec::new(), Vec::new());
    for step in 1..=steps {
        let batch = trainer.batch(&data.train, step);
        let args = StepArgs {
            step,
            lr_scale: 1.0,
            clip,
            grads: step == 1,
        };
        let out = trainer.step(batch, args);
        if step == 1 {
            loss = out
                .losses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            grads = out.grads.unwrap_or_default();
        }
        curve.push(out.losses.iter().map(|(_, v)| *v).collect());
    }
    Trace { loss, grads, curve }
}

/// `|a − b|`, relative to `scale`.
fn rel(a: f64, b: f64, scale: f64) -> Diff {
    diff((a - b).abs(), scale)
}

/// A difference of `abs` relative to `scale` (no difference is none at any scale).
fn diff(abs: f64, scale: f64) -> Diff {
    Diff {
        max_abs: abs,
        max_rel: if abs == 0.0 {
            0.0
        } else {
            abs / scale.max(1e-30)
        },
    }
}

/// Above the tolerance, or NaN (a difference that cannot be measured fails).
fn exceeds(v: f64, tol: f64) -> bool {
    v.is_nan() || v > tol
}

fn compare(name: &str, r: &Trace, t: &Trace, tol: Tolerances) -> BackendReport {
    let mut failures = Vec::new();
    let loss: Vec<Named> = r
        .loss
        .iter()
        .zip(&t.loss)
        .map(|((k, a), (_, b))| Named {
            name: k.clone(),
            reference: *a,
            diff: rel(*a, *b, a.abs()),
        })
        .collect();
    for l in &loss {
        if exceeds(l.diff.max_rel, tol.loss) {
            failures.push(format!(
                "loss term `{}`: {} vs {} on the reference (relative difference {:.2e} > {:.0e})",
                l.name,
                l.reference + l.diff.max_abs * (if l.reference >= 0.0 { 1.0 } else { -1.0 }),
                l.reference,
                l.diff.max_rel,
                tol.loss
            ));
        }
    }
    let grads: Vec<Named> = r
        .grads
        .iter()
        .zip(&t.grads)
        .map(|((k, a), (_, b))| {
            let scale = a.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
            let abs = a
                .iter()
                .zip(b)
                .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
            let abs = if a.len() == b.len() {
                abs
            } else {
                f64::INFINITY
            };
            Named {
                name: k.clone(),
                reference: scale,
                diff: diff(abs, scale),
            }
        })
        .collect();
    if let Some(worst) = grads
        .iter()
        .max_by(|a, b| a.diff.max_rel.total_cmp(&b.diff.max_rel))
        .filter(|g| exceeds(g.diff.max_rel, tol.grad))
    {
        let n = grads
            .iter()
            .filter(|g| exceeds(g.diff.max_rel, tol.grad))
            .count();
        failures.push(format!(
            "gradients of {n} of {} parameters differ; worst `{}`: max |Δ| {:.3e} against max |g| {:.3e} (relative {:.2e} > {:.0e})",
            grads.len(),
            worst.name,
            worst.diff.max_abs,
            worst.reference,
            worst.diff.max_rel,
            tol.grad
        ));
    }
    let (mut curve, mut worst_step) = (Diff::default(), 0);
    for (k, (a, b)) in r.curve.iter().zip(&t.curve).enumerate() {
        for (x, y) in a.iter().zip(b) {
            let d = rel(*x, *y, x.abs());
            if d.max_rel > curve.max_rel || d.max_rel.is_nan() {
                (curve, worst_step) = (d, k as u64 + 1);
            }
        }
    }
    if exceeds(curve.max_rel, tol.curve) {
        failures.push(format!(
            "loss curve: step {worst_step} differs by {:.3e} (relative {:.2e} > {:.0e})",
            curve.max_abs, curve.max_rel, tol.curve
        ));
    }
    BackendReport {
        backend: name.into(),
        loss,
        grads,
        curve,
        curve_worst_step: worst_step,
        failures,
    }
}
