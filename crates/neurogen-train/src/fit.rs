//! The single-optimiser training loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use neurogen_data::{Dataset, Signals};
use neurogen_models::{GenerativeModel, Loss, LossContext};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::guard::{clip_grad_norm, first_non_finite, inject_fault, Fault, Guard};
use crate::progress::Progress;
use crate::rng::{batch_indices, normals, rng, Stream};
use crate::run_dir::{write_line, CheckpointState};
use crate::{Experiment, RunDir, TrainError, Verbosity};

/// How `fit` starts and reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct FitOptions {
    /// Continue from the newest checkpoint in the run directory.
    pub resume: bool,
    /// Progress output.
    pub verbosity: Verbosity,
}

/// What a finished run measured.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Step the run started from (0 unless resumed).
    pub start_step: u64,
    /// Last step.
    pub steps: u64,
    /// Mean training loss over the last logging interval.
    pub train_loss: f64,
    /// Validation loss (total) at the end, if there is a validation split.
    pub valid_loss: Option<f64>,
    /// The last validation line (every figure logged), if any.
    pub valid: Option<Map<String, Value>>,
    /// Wall time of this invocation, seconds.
    pub wall_s: f64,
}

impl FitReport {
    /// A report for a run starting at `step`, before any step.
    pub(crate) fn starting_at(step: u64) -> Self {
        FitReport {
            start_step: step,
            steps: step,
            train_loss: f64::NAN,
            valid_loss: None,
            valid: None,
            wall_s: 0.0,
        }
    }
}

/// Adam with the experiment's betas and ε.
pub(crate) fn adam(t: &crate::TrainConfig) -> crate::adam::Adam {
    crate::adam::Adam {
        beta_1: t.betas[0] as f32,
        beta_2: t.betas[1] as f32,
        epsilon: t.eps as f32,
    }
}

/// The newest checkpoint of `run`, verified against its manifest (as one of a `kind` model),
/// and its state.
pub(crate) fn resume_point(
    run: &RunDir,
    kind: &str,
) -> Result<(crate::Checkpoint, CheckpointState), TrainError> {
    let ckpt = run.latest_checkpoint()?.ok_or_else(|| TrainError::RunDir {
        path: run.root().to_path_buf(),
        message: "no complete checkpoint to resume from".into(),
    })?;
    run.verify(&ckpt, kind)?;
    let state = run.read_state(&ckpt)?;
    tracing::info!(step = state.step, dir = %ckpt.dir.display(), "restoring");
    Ok((ckpt, state))
}

impl CheckpointState {
    /// The state after `step` of `exp`, where each step consumes `batches_per_step` batches.
    pub(crate) fn at(
        step: u64,
        exp: &Experiment,
        n_train: usize,
        batches_per_step: u64,
        kl_warmup: f64,
        interval: &LossSums,
        guard: &Guard,
    ) -> Self {
        let per_epoch = (n_train / exp.train.batch_size).max(1) as u64;
        CheckpointState {
            step,
            seed: exp.seed,
            epoch: step * batches_per_step / per_epoch,
            batch_in_epoch: step * batches_per_step % per_epoch,
            kl_warmup,
            neurogen_version: env!("CARGO_PKG_VERSION").into(),
            interval: interval.clone(),
            lr_scale: guard.lr_scale,
            rollbacks: guard.rollbacks,
        }
    }
}

/// Trains `model` on `data.train`, logging to and checkpointing in `run`.
///
/// `model` must live on `device.autodiff()` (create it there: parameters moved onto an autodiff
/// device afterwards are not tracked); validation runs on the plain `device`. A fresh run
/// checkpoints its initial weights as step 0, so the NaN guard always has a state to restore.
pub fn fit<M>(
    mut model: M,
    data: &Dataset,
    exp: &Experiment,
    run: &RunDir,
    device: &Device,
    opts: FitOptions,
) -> Result<(M, FitReport), TrainError>
where
    M: GenerativeModel,
{
    let t = &exp.train;
    let kind = exp.model.kind();
    let ad = device.clone().autodiff();
    let mut optim = adam(t).init();
    let (mut step, mut interval, mut guard) = (0, LossSums::default(), Guard::new(None));
    let restore = |model: M, ckpt: &crate::Checkpoint| -> Result<_, TrainError> {
        let model = model
            .try_load_file(ckpt.model_file())
            .map_err(|e| ckpt_err(&ckpt.model_file(), e))?;
        let optim = adam(t)
            .init()
            .load(ckpt.optim_file())
            .map_err(|e| ckpt_err(&ckpt.optim_file(), e))?;
        Ok((model, optim))
    };
    if opts.resume {
        let (ckpt, state) = resume_point(run, kind)?;
        (model, optim) = restore(model, &ckpt)?;
        (step, interval) = (state.step, state.interval.clone());
        guard = Guard::new(Some(&state));
    }
    let metrics_path = run.metrics_file();
    let mut metrics = run.open_metrics(step, t.log_every, t.valid_every, false)?;
    let (n_train, batch, noise_dim) = (data.train.n, t.batch_size, model.noise_dim());
    let save = |model: &M, optim: &burn::optim::ModuleOptimizer, state: CheckpointState| {
        tracing::debug!(step = state.step, "writing checkpoint");
        run.save_checkpoint(&state, kind, t.keep_checkpoints, |c| {
            model
                .clone()
                .save_file(c.model_file())
                .map_err(|e| ckpt_err(&c.model_file(), e))?;
            optim
                .save(c.optim_file())
                .map_err(|e| ckpt_err(&c.optim_file(), e))
        })
    };
    if !opts.resume {
        save(
            &model,
            &optim,
            CheckpointState::at(0, exp, n_train, 1, 0.0, &interval, &guard),
        )?;
    }
    let progress = Progress::new(opts.verbosity, step, t.steps);
    let (began, mut since) = (Instant::now(), Instant::now());
    let mut report = FitReport::starting_at(step);

    while step < t.steps {
        step += 1;
        let x = data
            .train
            .batch(&batch_indices(exp.seed, step, n_train, batch), &ad); // [batch, channels, time]
        let eps = normals(
            &mut rng(exp.seed, Stream::TrainNoise, step),
            batch * noise_dim,
        );
        let eps = host_tensor(eps, [batch, noise_dim], &ad); // [batch, noise_dim]
        let ctx = LossContext {
            kl_warmup: kl_weight(t, step) as f32,
        };
        let loss = model.loss(x, eps, &ctx);
        let mut values = loss_values(&loss);
        let lr = t.lr * guard.lr_scale;
        let norm;
        (model, norm) = optimise(model, &mut optim, loss.total, lr, t.grad_clip);
        values.extend(norm.map(|n| ("grad_norm", n)));
        inject_fault(step, &mut values);
        if let Some(mut fault) = Fault::find(step, &values) {
            fault.param = first_non_finite(&model);
            let (ckpt, state, file) = guard.roll_back(run, kind, fault, t)?;
            (model, optim) = restore(model, &ckpt)?;
            (step, interval, metrics, since) = (state.step, state.interval, file, Instant::now());
            continue;
        }
        interval.add_named(&values, 1.0);
        let elapsed = since.elapsed().as_secs_f64().max(1e-9);
        let steps_timed = interval.weight.max(1.0);
        let rate = steps_timed * batch as f64 / elapsed;
        progress.update(
            step,
            interval.mean("loss"),
            rate,
            (t.steps - step) as f64 * elapsed / steps_timed,
        );
        // The last step always logs; off the log_every grid it keeps its interval, so a run
        // resumed from it averages the same steps as an uninterrupted one.
        let on_grid = step.is_multiple_of(t.log_every);
        if on_grid || step == t.steps {
            let mut line = interval.means();
            line.extend(
                [
                    ("step", json!(step)),
                    ("split", json!("train")),
                    ("kl_warmup", json!(ctx.kl_warmup)),
                    ("lr", json!(lr)),
                    ("samples_per_s", json!(rate)),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            );
            write_line(&mut metrics, &metrics_path, &Value::Object(line))?;
            report.train_loss = interval.mean("loss");
            if on_grid {
                (interval, since) = (LossSums::default(), Instant::now());
            }
        }
        if (step.is_multiple_of(t.valid_every) || step == t.steps) && data.valid.n > 0 {
            let timer = Instant::now();
            let mut line = evaluate(&model.valid(), &data.valid, exp.seed, batch, ctx, device);
            let rate = data.valid.n as f64 / timer.elapsed().as_secs_f64().max(1e-9);
            line.extend(
                [
                    ("step", json!(step)),
                    ("split", json!("valid")),
                    ("samples_per_s", json!(rate)),
                ]
                .map(|(k, v)| (k.to_string(), v)),
            );
            let loss = line.get("loss").and_then(Value::as_f64).unwrap_or(f64::NAN);
            write_line(&mut metrics, &metrics_path, &Value::Object(line.clone()))?;
            progress.println(&format!("step {step}: valid loss {loss:.4}"));
            report.valid_loss = Some(loss);
            report.valid = Some(line);
        }
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps {
            let state =
                CheckpointState::at(step, exp, n_train, 1, kl_weight(t, step), &interval, &guard);
            save(&model, &optim, state)?;
        }
        report.steps = step;
    }
    progress.finish();
    report.wall_s = began.elapsed().as_secs_f64();
    Ok((model, report))
}

/// One Adam step on `loss`: backward, gradients of `model`'s parameters, global-norm clipping
/// when `clip` > 0 (then the norm before clipping is returned), update.
pub(crate) fn optimise<M: Module>(
    model: M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
    clip: f64,
) -> (M, Option<f64>) {
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    apply(model, optim, grads, lr, clip)
}

/// The update half of [`optimise`], for a caller that also reads the gradients.
pub(crate) fn apply<M: Module>(
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

/// The KL weight at training step `step` (1-based): a linear ramp to 1 over `kl_warmup_steps`.
pub(crate) fn kl_weight(t: &crate::TrainConfig, step: u64) -> f64 {
    match t.kl_warmup_steps {
        0 => 1.0,
        w => (step as f64 / w as f64).min(1.0),
    }
}

/// Every loss term of one step read to the host: the total as `loss`, then each named term
/// and statistic.
fn loss_values(loss: &Loss) -> Vec<(&'static str, f64)> {
    let mut named = vec![("loss", scalar(&loss.total))];
    named.extend(loss.terms.iter().map(|(k, v)| (*k, scalar(v))));
    named.extend(loss.stats.iter().copied());
    named
}

/// Weighted sums of the loss terms; `mean` divides by the total weight.
///
/// Training adds each step with weight 1 and writes the means every `log_every` steps; the
/// sums since the last line are saved in each checkpoint, so a resumed run's next line averages
/// the same steps as the uninterrupted run's. Validation adds each batch weighted by its size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossSums {
    /// Total weight added (steps, or windows for validation).
    pub weight: f64,
    /// Weighted sum of each term; `loss` is the total minimised.
    pub sums: BTreeMap<String, f64>,
}

impl LossSums {
    fn add(&mut self, loss: &Loss, weight: f64) {
        self.add_named(&loss_values(loss), weight);
    }

    /// Adds named values with `weight`.
    pub(crate) fn add_named(&mut self, values: &[(&str, f64)], weight: f64) {
        self.weight += weight;
        for (name, v) in values {
            *self.sums.entry(name.to_string()).or_default() += weight * v;
        }
    }

    pub(crate) fn mean(&self, key: &str) -> f64 {
        self.sums.get(key).copied().unwrap_or(f64::NAN) / self.weight.max(1e-12)
    }

    pub(crate) fn means(&self) -> Map<String, Value> {
        self.sums
            .keys()
            .map(|k| (k.clone(), json!(self.mean(k))))
            .collect()
    }
}

/// Mean of every loss term over `split`, in batches, with fixed noise.
pub(crate) fn evaluate<M: GenerativeModel>(
    model: &M,
    split: &Signals,
    seed: u64,
    batch: usize,
    ctx: LossContext,
    device: &Device,
) -> Map<String, Value> {
    let noise_dim = model.noise_dim();
    let mut acc = LossSums::default();
    let indices: Vec<usize> = (0..split.n).collect();
    for (i, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let x = split.batch(chunk, device); // [chunk, channels, time]
        let eps = normals(
            &mut rng(seed, Stream::ValidNoise, i as u64),
            chunk.len() * noise_dim,
        );
        let eps = host_tensor(eps, [chunk.len(), noise_dim], device); // [chunk, noise_dim]
        acc.add(&model.loss(x, eps, &ctx), chunk.len() as f64);
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

pub(crate) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
