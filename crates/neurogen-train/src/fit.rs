//! The single-optimiser training loop.

use std::path::Path;
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use neurogen_data::{Dataset, Signals};
use neurogen_models::{GenerativeModel, LossContext};
use serde_json::{json, Map, Value};

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
    /// Wall time of this invocation, seconds.
    pub wall_s: f64,
}

/// Trains `model` on `data.train`, logging to and checkpointing in `run`.
///
/// `model` must live on `device.autodiff()` (create it there: parameters moved onto an autodiff
/// device afterwards are not tracked); validation runs on the plain `device`.
pub fn fit<M>(
    model: M,
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
    let ad = device.clone().autodiff();
    let mut model = model;
    let mut optim = AdamConfig::new()
        .with_beta_1(t.betas[0] as f32)
        .with_beta_2(t.betas[1] as f32)
        .with_epsilon(t.eps as f32)
        .init();

    let mut start = 0;
    if opts.resume {
        let ckpt = run.latest_checkpoint()?.ok_or_else(|| TrainError::RunDir {
            path: run.root().to_path_buf(),
            message: "--resume: no complete checkpoint to resume from".into(),
        })?;
        model = model
            .try_load_file(ckpt.model_file())
            .map_err(|e| ckpt_err(&ckpt.model_file(), e))?;
        optim = optim
            .load(ckpt.optim_file())
            .map_err(|e| ckpt_err(&ckpt.optim_file(), e))?;
        start = run.read_state(&ckpt)?.step;
        tracing::info!(step = start, dir = %ckpt.dir.display(), "resuming");
    }
    let metrics_path = run.metrics_file();
    let mut metrics = run.open_metrics(start)?;

    let n_train = data.train.n;
    let batch = t.batch_size;
    let noise_dim = model.noise_dim();
    let warmup = |step: u64| {
        if t.kl_warmup_steps == 0 {
            1.0
        } else {
            (step as f64 / t.kl_warmup_steps as f64).min(1.0)
        }
    };
    let progress = Progress::new(opts.verbosity, start, t.steps);
    let began = Instant::now();
    let mut interval = (Instant::now(), 0u64, 0f64, Map::new());
    let mut report = FitReport {
        start_step: start,
        steps: start,
        train_loss: f64::NAN,
        valid_loss: None,
        wall_s: 0.0,
    };

    for step in start + 1..=t.steps {
        let x = data
            .train
            .batch(&batch_indices(exp.seed, step, n_train, batch), &ad); // [batch, channels, time]
        let eps = host_tensor(
            normals(
                &mut rng(exp.seed, Stream::TrainNoise, step),
                batch * noise_dim,
            ),
            [batch, noise_dim],
            &ad,
        );
        let ctx = LossContext {
            kl_warmup: warmup(step) as f32,
        };
        let loss = model.loss(x, eps, &ctx);
        let grads = GradientsParams::from_grads(loss.total.backward(), &model);
        model = optim.step(t.lr, model, grads);

        // Accumulate the interval's mean of every term.
        let (ref mut since, ref mut count, ref mut sum, ref mut terms) = interval;
        *count += 1;
        *sum += scalar(&loss.total);
        for (name, v) in &loss.terms {
            let e = terms.entry(name.to_string()).or_insert(json!(0.0));
            *e = json!(e.as_f64().unwrap_or(0.0) + scalar(v));
        }
        let elapsed = since.elapsed().as_secs_f64().max(1e-9);
        let rate = (*count as usize * batch) as f64 / elapsed;
        let eta = (t.steps - step) as f64 * elapsed / *count as f64;
        progress.update(step, *sum / *count as f64, rate, eta);

        if step.is_multiple_of(t.log_every) || step == t.steps {
            let mut line = Map::new();
            line.insert("step".into(), json!(step));
            line.insert("split".into(), json!("train"));
            line.insert("loss".into(), json!(*sum / *count as f64));
            for (k, v) in terms.iter() {
                line.insert(k.clone(), json!(v.as_f64().unwrap_or(0.0) / *count as f64));
            }
            line.insert("kl_warmup".into(), json!(ctx.kl_warmup));
            line.insert("lr".into(), json!(t.lr));
            line.insert("samples_per_s".into(), json!(rate));
            write_line(&mut metrics, &metrics_path, &Value::Object(line))?;
            report.train_loss = *sum / *count as f64;
            interval = (Instant::now(), 0, 0.0, Map::new());
        }
        if (step.is_multiple_of(t.valid_every) || step == t.steps) && data.valid.n > 0 {
            let started = Instant::now();
            let mut line = evaluate(&model.valid(), &data.valid, exp.seed, batch, ctx, device);
            let loss = line.get("loss").and_then(Value::as_f64).unwrap_or(f64::NAN);
            line.insert("step".into(), json!(step));
            line.insert("split".into(), json!("valid"));
            line.insert(
                "samples_per_s".into(),
                json!(data.valid.n as f64 / started.elapsed().as_secs_f64().max(1e-9)),
            );
            write_line(&mut metrics, &metrics_path, &Value::Object(line))?;
            progress.println(&format!("step {step}: valid loss {loss:.4}"));
            report.valid_loss = Some(loss);
        }
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps {
            let state = CheckpointState {
                step,
                seed: exp.seed,
                epoch: step / (n_train / batch).max(1) as u64,
                batch_in_epoch: step % (n_train / batch).max(1) as u64,
                kl_warmup: warmup(step),
                neurogen_version: env!("CARGO_PKG_VERSION").into(),
            };
            let to_save = model.clone();
            tracing::debug!(step, "writing checkpoint");
            run.save_checkpoint(
                &state,
                |c| {
                    to_save
                        .save_file(c.model_file())
                        .map_err(|e| ckpt_err(&c.model_file(), e))?;
                    optim
                        .save(c.optim_file())
                        .map_err(|e| ckpt_err(&c.optim_file(), e))
                },
                t.keep_checkpoints,
            )?;
        }
        report.steps = step;
    }
    progress.finish();
    report.wall_s = began.elapsed().as_secs_f64();
    Ok((model, report))
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
    let mut sums: Vec<(String, f64)> = Vec::new();
    let mut total = 0f64;
    let indices: Vec<usize> = (0..split.n).collect();
    for (i, chunk) in indices.chunks(batch.max(1)).enumerate() {
        let x = split.batch(chunk, device);
        let eps = host_tensor(
            normals(
                &mut rng(seed, Stream::ValidNoise, i as u64),
                chunk.len() * noise_dim,
            ),
            [chunk.len(), noise_dim],
            device,
        );
        let loss = model.loss(x, eps, &ctx);
        let w = chunk.len() as f64 / split.n as f64;
        total += w * scalar(&loss.total);
        for (j, (name, v)) in loss.terms.iter().enumerate() {
            if sums.len() <= j {
                sums.push((name.to_string(), 0.0));
            }
            sums[j].1 += w * scalar(v);
        }
    }
    let mut out = Map::new();
    out.insert("loss".into(), json!(total));
    for (k, v) in sums {
        out.insert(k, json!(v));
    }
    out
}

/// A host vector as a tensor on `device`.
pub(crate) fn host_tensor<const D: usize>(
    values: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
