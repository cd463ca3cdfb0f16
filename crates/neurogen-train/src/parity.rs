//! Do two backends train the same model the same way?
//!
//! Backends seed their own generators differently by design, so a run on `flex` and one on
//! `wgpu` never match bit for bit. Parity removes every source of difference but the
//! arithmetic: the initial weights are saved once (burnpack) and loaded on each backend, and
//! every batch and noise tensor is drawn on the host exactly as `fit` draws it. What remains —
//! the loss and every parameter's gradient after one step, the loss curve after K steps — must
//! agree within float32 rounding.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use neurogen_data::Dataset;
use neurogen_models::{Critic, GenerativeModel, Generator, LossContext, ModelConfig, WindowShape};
use serde::Serialize;

use crate::fit::{adam, apply, ckpt_err, host_tensor, kl_weight, scalar};
use crate::gan::{gan_step, step_input, Players};
use crate::rng::{batch_indices, normals, rng, Stream};
use crate::{build_model, Experiment, Model, TrainError};

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
    /// Every step's loss terms, flattened in step order (names as in `loss`).
    curve: Vec<Vec<f64>>,
}

/// Compares `devices` (name, plain device; the first is the reference) on `exp`'s model and
/// data over `steps` steps; the initial weights are written once to `dir`.
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
    let shape = WindowShape::from(&data.train.meta);
    ref_dev.seed(exp.seed);
    let ad = ref_dev.clone().autodiff();
    // The initial weights, written once by the reference backend.
    let files = [dir.join("model.bpk"), dir.join("critic.bpk")];
    let model = match build_model(exp, shape, &ad) {
        Model::RealNvp(m) => Model::RealNvp(crate::runs::init_from_data(m, data, exp.seed, &ad)),
        m => m,
    };
    model
        .save_file(&files[0])
        .map_err(|e| ckpt_err(&files[0], e))?;
    if let ModelConfig::Gan(c) = &exp.model {
        c.init_critic(shape, &ad)
            .save_file(&files[1])
            .map_err(|e| ckpt_err(&files[1], e))?;
    }
    let mut traces = Vec::new();
    for (name, device) in devices {
        let bump = (perturb == Some(name.as_str())).then_some(1e-3);
        traces.push(trace(exp, data, shape, device, &files, steps, bump)?);
    }
    let reference = &traces[0];
    let mut report = ParityReport {
        model: exp.model.kind().into(),
        reference: ref_name.clone(),
        steps,
        tolerances: tol,
        reference_curve: reference.curve.iter().map(|v| v[0]).collect(),
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

/// Loads the initial weights on `device`, takes the first step's gradients, then `steps`
/// training steps, all from host-drawn batches and noise.
fn trace(
    exp: &Experiment,
    data: &Dataset,
    shape: WindowShape,
    device: &Device,
    files: &[std::path::PathBuf; 2],
    steps: u64,
    bump: Option<f32>,
) -> Result<Trace, TrainError> {
    let ad = device.clone().autodiff();
    let f = &files[0];
    let model = build_model(exp, shape, &ad)
        .load_file(f)
        .map_err(|e| ckpt_err(f, e))?
        .map(&mut Bump(bump));
    match (&exp.model, model) {
        (ModelConfig::Gan(cfg), Model::Gan(generator)) => {
            let f = &files[1];
            let critic: Critic = cfg
                .init_critic(shape, &ad)
                .try_load_file(f)
                .map_err(|e| ckpt_err(f, e))?
                .map(&mut Bump(bump));
            Ok(trace_gan(exp, cfg, data, &ad, generator, critic, steps))
        }
        (_, Model::Vae(m)) => Ok(trace_fit(exp, data, &ad, m, steps)),
        (_, Model::RealNvp(m)) => Ok(trace_fit(exp, data, &ad, m, steps)),
        (_, Model::LatentOde(m)) => Ok(trace_fit(exp, data, &ad, m, steps)),
        (_, Model::Gan(_)) => unreachable!("a GAN config builds a generator"),
    }
}

/// `fit`'s step, K times, keeping the first step's gradients.
fn trace_fit<M: GenerativeModel>(
    exp: &Experiment,
    data: &Dataset,
    ad: &Device,
    mut model: M,
    steps: u64,
) -> Trace {
    let t = &exp.train;
    let (n, b, d) = (data.train.n, t.batch_size, model.noise_dim());
    let mut optim: ModuleOptimizer = adam(t).init();
    let (mut first, mut grads_out, mut curve) = (Vec::new(), Vec::new(), Vec::new());
    for step in 1..=steps {
        let x = data.train.batch(&batch_indices(exp.seed, step, n, b), ad); // [batch, channels, time]
        let eps = normals(&mut rng(exp.seed, Stream::TrainNoise, step), b * d);
        let eps = host_tensor(eps, [b, d], ad); // [batch, noise_dim]
        let ctx = LossContext {
            kl_warmup: kl_weight(t, step) as f32,
        };
        let loss = model.loss(x, eps, &ctx);
        let mut values = vec![("loss".to_string(), scalar(&loss.total))];
        values.extend(loss.terms.iter().map(|(k, v)| (k.to_string(), scalar(v))));
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        if step == 1 {
            grads_out = collect_grads(&model, &grads);
            first = values.clone();
        }
        (model, _) = apply(model, &mut optim, grads, t.lr, t.grad_clip);
        curve.push(values.into_iter().map(|(_, v)| v).collect());
    }
    Trace {
        loss: first,
        grads: grads_out,
        curve,
    }
}

/// `fit_gan`'s step, K times; the first step's gradients are the critic's on the real batch
/// and detached fakes, and the generator's through the initial critic.
fn trace_gan(
    exp: &Experiment,
    cfg: &neurogen_models::GanConfig,
    data: &Dataset,
    ad: &Device,
    generator: Generator,
    critic: Critic,
    steps: u64,
) -> Trace {
    let t = &exp.train;
    let lr = (t.lr, cfg.critic_lr.unwrap_or(t.lr));
    let input = step_input(exp, cfg, &data.train, 1, ad);
    let mut c0 = critic.clone();
    if cfg.spectral_norm {
        c0 = c0.power_iteration();
    }
    let fake = generator.forward(input.z[0].clone()).detach(); // [batch, channels, time]
    let (d_real, d_fake) = (c0.forward(input.real[0].clone()), c0.forward(fake));
    let lc = cfg.loss.critic(d_real, d_fake);
    let gc = GradientsParams::from_grads(lc.backward(), &c0);
    let lg = cfg
        .loss
        .generator(c0.forward(generator.forward(input.z[cfg.n_critic].clone())));
    let gg = GradientsParams::from_grads(lg.backward(), &generator);
    let mut grads = prefixed("critic", collect_grads(&c0, &gc));
    grads.extend(prefixed("generator", collect_grads(&generator, &gg)));
    let loss = vec![
        ("loss_critic".to_string(), scalar(&lc)),
        ("loss_generator".to_string(), scalar(&lg)),
    ];
    let (mut opt_g, mut opt_c) = (adam(t).init(), adam(t).init());
    let mut p = Players {
        generator,
        critic,
        ema: None,
    };
    let mut curve = Vec::new();
    for step in 1..=steps {
        let input = step_input(exp, cfg, &data.train, step, ad);
        let losses;
        (p, losses) = gan_step(p, cfg, input, lr, t.grad_clip, &mut opt_g, &mut opt_c);
        curve.push(vec![scalar(&losses.critic), scalar(&losses.generator)]);
    }
    Trace { loss, grads, curve }
}

fn prefixed(p: &str, v: Vec<(String, Vec<f32>)>) -> Vec<(String, Vec<f32>)> {
    v.into_iter()
        .map(|(k, g)| (format!("{p}.{k}"), g))
        .collect()
}

/// Every parameter's gradient on the host, by dotted path.
fn collect_grads<M: Module>(module: &M, grads: &GradientsParams) -> Vec<(String, Vec<f32>)> {
    let mut c = CollectGrads {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

struct CollectGrads<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Fixed parameters (e.g. a fixed σ) have no gradient on any backend.
        if let Some(g) = self.grads.get::<D>(param.id) {
            let values = g.into_data().try_to_vec::<f32>().unwrap_or_default();
            self.out.push((self.path.join("."), values));
        }
    }
}

/// Adds its value, if any, to every float parameter.
struct Bump(Option<f32>);

impl ModuleMapper for Bump {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.0 {
            // A fresh leaf, so the perturbed weights are what gradients are taken against.
            Some(b) => param.map(|t| t.add_scalar(b).detach().require_grad()),
            None => param,
        }
    }
}
