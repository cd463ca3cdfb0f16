//! The `Trainer` trait — what the one training loop ([`crate::fit`]), `neurogen parity` and
//! `neurogen bench` need of a family — and its implementation for every single-optimiser
//! [`GenerativeModel`]. Two-player families have their own: the GAN's in `gan.rs`, the VAE-GAN's
//! in `vae_gan.rs`.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use neurogen_data::Signals;
use neurogen_models::{GenerativeModel, Loss, LossContext, Sampler};
use serde_json::{json, Map, Value};

use crate::guard::clip_grad_norm;
use crate::params::{blend, bumped, collect_grads, first_non_finite};
use crate::rng::{batch_indices, normals, rng, Stream};
use crate::run_dir::Checkpoint;
use crate::{TrainConfig, TrainError};

/// The real windows of one step, one tensor per update it makes (`[batch, channels, time]`
/// each, on the autodiff device): one for a single-optimiser model, `n_critic` for a GAN; and
/// for a conditional model their labels, one-hot `[batch, classes]` per update.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The windows of each update.
    pub windows: Vec<Tensor<3>>,
    /// The labels of each update's windows (empty for an unconditional model).
    pub labels: Vec<Tensor<2>>,
}

impl Batch {
    /// The labels of update `i`, if the batch has labels.
    pub fn labels_of(&self, i: usize) -> Option<Tensor<2>> {
        self.labels.get(i).cloned()
    }
}

/// How to take one step.
#[derive(Debug, Clone, Copy)]
pub struct StepArgs {
    /// The step, 1-based: the key of its host noise.
    pub step: u64,
    /// Factor on every configured learning rate (the NaN guard's cuts; 1 otherwise).
    pub lr_scale: f64,
    /// Clip the global gradient norm of each update to this (0 = no clipping).
    pub clip: f64,
    /// Read every parameter's gradient back to the host (parity).
    pub grads: bool,
}

/// What one step measured, read to the host.
#[derive(Debug, Clone, Default)]
pub struct StepOut {
    /// The loss terms: `loss` (the total minimised) first, then each named term.
    pub losses: Vec<(&'static str, f64)>,
    /// Other figures of the step: solver evaluations, gradient norms before clipping.
    pub stats: Vec<(&'static str, f64)>,
    /// Extra fields of the step's training log line (e.g. the KL warm-up factor).
    pub fields: Vec<(&'static str, Value)>,
    /// Gradients by module path, when [`StepArgs::grads`] asked for them (a GAN prefixes
    /// `critic.` and `generator.`).
    pub grads: Option<Vec<(String, Vec<f32>)>>,
}

impl StepOut {
    /// Losses then statistics, as logged and checked by the NaN guard.
    pub fn values(&self) -> Vec<(&'static str, f64)> {
        self.losses.iter().chain(&self.stats).copied().collect()
    }
}

/// A validation pass: its log line and the progress message that sums it up.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every figure, for `metrics.jsonl`.
    pub line: Map<String, Value>,
    /// The loss the run reports at its end, if the family has one.
    pub loss: Option<f64>,
    /// One phrase for the progress output, e.g. `valid loss 1520.7312`.
    pub summary: String,
}

/// A family's training behaviour: its model(s), optimiser(s) and host noise.
///
/// Everything a step draws comes from the trainer's seed and the step index, so a trainer
/// restored from the checkpoint of step `k` continues exactly as one that never stopped.
pub trait Trainer {
    /// Batches one step consumes (for the epoch count in checkpoints).
    fn batches_per_step(&self) -> u64 {
        1
    }

    /// The windows of `step` drawn from `data` (its permutation of the epoch `step` falls in).
    fn batch(&self, data: &Signals, step: u64) -> Batch;

    /// One optimisation step on `batch`.
    fn step(&mut self, batch: Batch, args: StepArgs) -> StepOut;

    /// Validation figures on `valid` after `step`; `None` when the split is too small to say
    /// anything (the GAN's diversity needs two windows).
    fn validate(&self, valid: &Signals, step: u64) -> Option<Validation>;

    /// The KL warm-up factor at `step`, recorded in checkpoints (1 for families without one).
    fn kl_warmup(&self, step: u64) -> f64 {
        let _ = step;
        1.0
    }

    /// Writes the weights and optimiser state into `ckpt`'s directory.
    fn save(&self, ckpt: &Checkpoint) -> Result<(), TrainError>;

    /// Loads the weights and optimiser state [`save`](Self::save) wrote.
    fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError>;

    /// Path of the first parameter holding a NaN or an infinity, for the NaN guard.
    fn first_non_finite(&self) -> Option<String>;

    /// Parameters, trainable and fixed, as burn counts them.
    fn num_params(&self) -> usize;

    /// What the run samples with now, without autodiff (a GAN's moving average when kept).
    fn sampler(&self) -> Box<dyn Sampler>;

    /// Adds `delta` to every parameter: parity's demonstration of a real difference.
    fn perturb(&mut self, delta: f32);
}

/// Adam with the experiment's betas and ε.
pub(crate) fn adam(t: &TrainConfig) -> crate::adam::Adam {
    crate::adam::Adam {
        beta_1: t.betas[0] as f32,
        beta_2: t.betas[1] as f32,
        epsilon: t.eps as f32,
        weight_decay: t.weight_decay as f32,
    }
}

/// One Adam update of `model` from `grads`, first clipping their global norm to `clip` when
/// `clip` > 0 (then the norm before clipping is returned).
pub(crate) fn update<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    mut grads: GradientsParams,
    lr: f64,
    clip: f64,
) -> (M, Option<f64>) {
    let mut norm = None;
    if clip > 0.0 {
        let n;
        (grads, n) = clip_grad_norm(&model, grads, clip);
        norm = Some(n);
    }
    (optim.step(lr, model, grads), norm)
}

/// Loads `module`'s weights from a burnpack file of a checkpoint.
pub(crate) fn load<M: Module>(module: M, file: &std::path::Path) -> Result<M, TrainError> {
    module.try_load_file(file).map_err(|e| ckpt_err(file, e))
}

/// Saves `module`'s weights as a burnpack file of a checkpoint.
pub(crate) fn save<M: Module>(module: &M, file: &std::path::Path) -> Result<(), TrainError> {
    module
        .clone()
        .save_file(file)
        .map_err(|e| ckpt_err(file, e))
}

/// An optimiser's state from a checkpoint file.
pub(crate) fn load_optim(
    t: &TrainConfig,
    file: &std::path::Path,
) -> Result<ModuleOptimizer, TrainError> {
    adam(t).init().load(file).map_err(|e| ckpt_err(file, e))
}

pub(crate) fn ckpt_err(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The KL weight at training step `step` (1-based): a linear ramp to 1 over `kl_warmup_steps`.
pub(crate) fn kl_weight(t: &TrainConfig, step: u64) -> f64 {
    match t.kl_warmup_steps {
        0 => 1.0,
        w => (step as f64 / w as f64).min(1.0),
    }
}

/// The trainer of every single-optimiser family: one [`GenerativeModel`] and one Adam.
pub struct ModelTrainer<M> {
    /// `None` only inside a step, which takes the model by value and puts it back.
    model: Option<M>,
    /// The moving average of the weights (plain device) of a model that asks for one
    /// ([`GenerativeModel::ema`]): what the run validates, samples and scores with.
    ema: Option<M>,
    optim: ModuleOptimizer,
    train: TrainConfig,
    seed: u64,
    /// The plain device (validation); the model lives on its autodiff twin.
    device: Device,
}

impl<M: GenerativeModel> ModelTrainer<M> {
    /// A trainer of `model` (created on `device.autodiff()`: parameters moved there afterwards
    /// are not tracked) with a fresh optimiser.
    pub fn new(model: M, train: &TrainConfig, seed: u64, device: &Device) -> Self {
        ModelTrainer {
            ema: model.ema().map(|_| model.valid()),
            model: Some(model),
            optim: adam(train).init(),
            train: train.clone(),
            seed,
            device: device.clone(),
        }
    }

    pub(crate) fn model(&self) -> &M {
        self.model
            .as_ref()
            .expect("the model is put back after every step")
    }

    /// The weights the run samples with: the moving average when kept.
    fn sampling_model(&self) -> M {
        self.ema.clone().unwrap_or_else(|| self.model().valid())
    }
}

/// The windows of `step` for a one-update step, on `device`'s autodiff twin, with their one-hot
/// labels when the model has `classes` > 0; `key` is (seed, batch size, classes).
pub(crate) fn single_batch(
    (seed, batch, classes): (u64, usize, usize),
    data: &Signals,
    step: u64,
    device: &Device,
) -> Batch {
    let ad = device.clone().autodiff();
    let idx = batch_indices(seed, step.max(1), data.n, batch);
    let labels = (classes > 0)
        .then(|| data.label_batch(&idx, classes, &ad))
        .flatten(); // [batch, classes]
    Batch {
        windows: vec![data.batch(&idx, &ad)], // [batch, channels, time]
        labels: labels.into_iter().collect(),
    }
}

impl<M: GenerativeModel> Trainer for ModelTrainer<M> {
    fn batch(&self, data: &Signals, step: u64) -> Batch {
        let key = (self.seed, self.train.batch_size, self.model().classes());
        single_batch(key, data, step, &self.device)
    }

    fn step(&mut self, batch: Batch, args: StepArgs) -> StepOut {
        debug_assert_eq!(batch.windows.len(), 1, "one update per step");
        let y = batch.labels_of(0);
        let Some(x) = batch.windows.into_iter().next() else {
            return StepOut::default();
        };
        let model = self
            .model
            .take()
            .expect("the model is put back after every step");
        let (b, d) = (x.dims()[0], model.loss_noise_dim());
        let eps = normals(&mut rng(self.seed, Stream::TrainNoise, args.step), b * d);
        let eps = host_tensor(eps, [b, d], &x.device()); // [batch, noise_dim]
        let ctx = LossContext {
            kl_warmup: kl_weight(&self.train, args.step) as f32,
            training: true,
        };
        let loss = model.loss(x, y, eps, &ctx);
        let (losses, mut stats) = loss_values(&loss);
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        let grads_out = args.grads.then(|| collect_grads(&model, &grads));
        let lr = self.train.lr * args.lr_scale;
        let (model, norm) = update(model, &mut self.optim, grads, lr, args.clip);
        if let (Some(ema), Some(decay)) = (self.ema.take(), model.ema()) {
            // Warm-up (the decay grows as (1 + s) / (10 + s)): without it the average would
            // keep 0.999^s of the random initial weights, 5 % after 3000 steps.
            let s = args.step as f64;
            let decay = decay.min((1.0 + s) / (10.0 + s));
            self.ema = Some(blend(ema, &model.valid(), decay as f32));
        }
        self.model = Some(model);
        stats.extend(norm.map(|n| ("grad_norm", n)));
        StepOut {
            losses,
            stats,
            fields: vec![("kl_warmup", json!(ctx.kl_warmup))],
            grads: grads_out,
        }
    }

    fn validate(&self, valid: &Signals, step: u64) -> Option<Validation> {
        let (seed, device) = (self.seed, &self.device);
        let model = self.sampling_model();
        Some(validate_model(
            &model,
            valid,
            step,
            (&self.train, seed),
            device,
        ))
    }

    fn kl_warmup(&self, step: u64) -> f64 {
        checkpoint_kl_warmup(&self.train, step)
    }

    fn save(&self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        save(self.model(), &ckpt.model_file())?;
        if let Some(ema) = &self.ema {
            save(ema, &ckpt.ema_file())?;
        }
        let file = ckpt.optim_file();
        self.optim.save(&file).map_err(|e| ckpt_err(&file, e))
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let model = load(self.model().clone(), &ckpt.model_file())?;
        let ema = match &self.ema {
            Some(e) => Some(load(e.clone(), &ckpt.ema_file())?),
            None => None,
        };
        self.optim = load_optim(&self.train, &ckpt.optim_file())?;
        (self.model, self.ema) = (Some(model), ema);
        Ok(())
    }

    fn first_non_finite(&self) -> Option<String> {
        first_non_finite(self.model())
    }

    fn num_params(&self) -> usize {
        self.model().num_params()
    }

    fn sampler(&self) -> Box<dyn Sampler> {
        Box::new(self.sampling_model())
    }

    fn perturb(&mut self, delta: f32) {
        self.model = self.model.take().map(|m| bumped(m, delta));
    }
}

/// The validation of a single-loss model after `step`: the mean of every loss term over `valid`
/// with the KL weight of that step; `key` is the run's (train settings, seed).
pub(crate) fn validate_model<M: GenerativeModel>(
    model: &M,
    valid: &Signals,
    step: u64,
    (train, seed): (&TrainConfig, u64),
    device: &Device,
) -> Validation {
    let ctx = LossContext {
        kl_warmup: kl_weight(train, step) as f32,
        training: false,
    };
    let line = validation_losses(model, valid, seed, train.batch_size, ctx, device);
    let loss = line.get("loss").and_then(Value::as_f64).unwrap_or(f64::NAN);
    Validation {
        line,
        loss: Some(loss),
        summary: format!("valid loss {loss:.4}"),
    }
}

/// The KL warm-up factor a checkpoint of `step` records: 0 at step 0, the initial checkpoint
/// (before any KL term was weighted), the schedule's after.
pub(crate) fn checkpoint_kl_warmup(train: &TrainConfig, step: u64) -> f64 {
    if step == 0 {
        0.0
    } else {
        kl_weight(train, step)
    }
}

/// The loss terms of one step read to the host (the total as `loss`, then each named term),
/// and its statistics.
pub(crate) type HostLoss = (Vec<(&'static str, f64)>, Vec<(&'static str, f64)>);

pub(crate) fn loss_values(loss: &Loss) -> HostLoss {
    let mut named = vec![("loss", scalar(&loss.total))];
    named.extend(loss.terms.iter().map(|(k, v)| (*k, scalar(v))));
    (named, loss.stats.clone())
}

/// Mean of every loss term over `split`, in batches, with fixed noise.
fn validation_losses<M: GenerativeModel>(
    model: &M,
    split: &Signals,
    seed: u64,
    batch: usize,
    ctx: LossContext,
    device: &Device,
) -> Map<String, Value> {
    let (noise_dim, classes) = (model.loss_noise_dim(), model.classes());
    let mut acc = crate::fit::LossSums::default();
    let indices: Vec<usize> = (0..split.n).collect();
    for (i, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let x = split.batch(chunk, device); // [chunk, channels, time]
        let y = (classes > 0)
            .then(|| split.label_batch(chunk, classes, device))
            .flatten(); // [chunk, classes]
        let eps = normals(
            &mut rng(seed, Stream::ValidNoise, i as u64),
            chunk.len() * noise_dim,
        );
        let eps = host_tensor(eps, [chunk.len(), noise_dim], device); // [chunk, noise_dim]
        let (losses, stats) = loss_values(&model.loss(x, y, eps, &ctx));
        let values: Vec<_> = losses.into_iter().chain(stats).collect();
        acc.add_named(&values, chunk.len() as f64);
    }
    acc.means()
}

/// A host vector as a tensor on `device`.
pub(crate) fn host_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

pub(crate) fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}
