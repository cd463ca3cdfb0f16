//! Whole operations on a run directory: train an experiment, load a run, sample from it.

use std::path::Path;

use burn::module::{Module, ModuleMapper};
use burn::tensor::{Device, Tensor};
use neurogen_data::{Dataset, SignalKind, SignalMeta, Signals};
use neurogen_models::likelihood::bounds;
use neurogen_models::{
    GenerativeModel, Generator, LatentOde, ModelConfig, Observation, RealNvp, Vae, WindowShape,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::fit::host_tensor;
use crate::gan::{ema_file, fit_gan, Players};
use crate::rng::{normals, rng, Stream};
use crate::run_dir::{Checkpoint, DataInfo};
use crate::{fit, Experiment, FitOptions, FitReport, Provenance, RunDir, TrainError};

/// A built model of any family, as sampling and scoring need it.
#[derive(Debug, Clone)]
pub enum Model {
    /// A VAE.
    Vae(Vae),
    /// A RealNVP flow.
    RealNvp(RealNvp),
    /// A latent ODE.
    LatentOde(LatentOde),
    /// A GAN's generator (its moving average when the run keeps one).
    Gan(Generator),
}

impl Model {
    /// These weights loaded from a burnpack file written by a model of the same config.
    pub(crate) fn load_file(self, file: &Path) -> Result<Model, burn::store::RecordError> {
        Ok(match self {
            Model::Vae(m) => Model::Vae(m.try_load_file(file)?),
            Model::RealNvp(m) => Model::RealNvp(m.try_load_file(file)?),
            Model::LatentOde(m) => Model::LatentOde(m.try_load_file(file)?),
            Model::Gan(m) => Model::Gan(m.try_load_file(file)?),
        })
    }

    /// Writes the weights as a burnpack file.
    pub(crate) fn save_file(&self, file: &Path) -> Result<(), burn::store::RecordError> {
        match self {
            Model::Vae(m) => m.clone().save_file(file),
            Model::RealNvp(m) => m.clone().save_file(file),
            Model::LatentOde(m) => m.clone().save_file(file),
            Model::Gan(m) => m.clone().save_file(file),
        }
    }

    /// Every parameter passed through `mapper`.
    pub(crate) fn map(self, mapper: &mut impl ModuleMapper) -> Model {
        match self {
            Model::Vae(m) => Model::Vae(m.map(mapper)),
            Model::RealNvp(m) => Model::RealNvp(m.map(mapper)),
            Model::LatentOde(m) => Model::LatentOde(m.map(mapper)),
            Model::Gan(m) => Model::Gan(m.map(mapper)),
        }
    }
}

/// Builds the model an experiment describes for windows of `shape` (for the GAN, the
/// generator).
pub fn build_model(exp: &Experiment, shape: WindowShape, device: &Device) -> Model {
    let kind = exp.data.kind();
    match &exp.model {
        ModelConfig::Vae(c) => Model::Vae(c.init(shape, device)),
        ModelConfig::RealNvp(c) => Model::RealNvp(c.init(shape, kind, device)),
        ModelConfig::LatentOde(c) => Model::LatentOde(c.init(shape, device)),
        ModelConfig::Gan(c) => Model::Gan(c.init_generator(shape, kind, device)),
    }
}

/// Runs a model's data-dependent initialisation on the first (up to) 512 training windows.
pub(crate) fn init_from_data<M: GenerativeModel>(
    model: M,
    data: &Dataset,
    seed: u64,
    device: &Device,
) -> M {
    let n = data.train.n.min(512);
    let idx: Vec<usize> = (0..n).collect();
    let x = data.train.batch(&idx, device); // [n, channels, time]
    let d = model.noise_dim();
    let noise = host_tensor(
        normals(&mut rng(seed, Stream::Init, 0), n * d),
        [n, d],
        device,
    );
    model.init_from_data(x, noise)
}

/// Builds the data, prepares the run directory and trains.
///
/// `config_path` is only used in messages and provenance.
pub fn train_experiment(
    exp: &Experiment,
    config_path: &Path,
    run: &RunDir,
    device: &Device,
    opts: FitOptions,
) -> Result<FitReport, TrainError> {
    let mut exp = exp.clone();
    let windows = exp.build_data(config_path)?;
    // Defaults only the data could settle (a file's window length, split unit).
    exp.data = windows.config.clone();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut provenance = Provenance {
        neurogen_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: crate::experiment::BURN_VERSION.into(),
        backend: exp.backend,
        seed: exp.seed,
        config_file: config_path.display().to_string(),
        created_unix: created,
    };
    let has_checkpoint = run.latest_checkpoint()?.is_some();
    if opts.resume {
        // A run killed before its first checkpoint (or never started) has nothing to resume:
        // it starts from step 0, so a scheduler can always restart with --resume.
        if run.experiment_file().exists() {
            let stored = run.read_experiment()?;
            if stored.resume_key() != exp.resume_key() {
                return Err(TrainError::RunDir {
                    path: run.experiment_file(),
                    message: "--resume: the experiment differs from the one this run was started \
                              with (only train.steps, backend, train.grad_clip, train.lr_cut and \
                              train.max_rollbacks may change on resume)"
                        .into(),
                });
            }
            if let Some(p) = stored.provenance {
                provenance.created_unix = p.created_unix;
            }
        }
        if has_checkpoint {
            // Refuse a damaged checkpoint before anything in the run directory is rewritten.
            crate::fit::resume_point(run, exp.model.kind())?;
        } else {
            tracing::warn!(
                "{}: no checkpoint to resume from yet; starting from step 0",
                run.root().display()
            );
        }
    } else if has_checkpoint || run.metrics_file().exists() {
        return Err(TrainError::RunDir {
            path: run.root().to_path_buf(),
            message:
                "already holds a run; pass --resume to continue it, or --out DIR for a new one"
                    .into(),
        });
    }
    let opts = FitOptions {
        resume: opts.resume && has_checkpoint,
        ..opts
    };
    exp.provenance = Some(provenance);

    let data = windows.into_dataset();
    tracing::info!(
        train = data.train.n,
        valid = data.valid.n,
        test = data.test.n,
        channels = data.train.meta.channels,
        time = data.train.meta.time,
        "data built"
    );
    exp.check_against(config_path, data.train.n)?;

    run.create()?;
    run.write_experiment(&exp)?;
    run.write_data_info(&DataInfo {
        meta: data.train.meta.clone(),
        norm: data.norm.clone(),
        windows: [data.train.n, data.valid.n, data.test.n],
    })?;

    device.seed(exp.seed);
    let shape = WindowShape::from(&data.train.meta);
    // Parameters must be created on the autodiff device to be tracked.
    let ad = device.clone().autodiff();
    let fresh = !opts.resume;
    match &exp.model {
        ModelConfig::Gan(c) => {
            let generator = c.init_generator(shape, exp.data.kind(), &ad);
            let players = Players {
                ema: c.ema.map(|_| generator.valid()),
                critic: c.init_critic(shape, &ad),
                generator,
            };
            fit_gan(players, c, &data, &exp, run, device, opts).map(|(_, r)| r)
        }
        _ => match build_model(&exp, shape, &ad) {
            Model::Vae(m) => fit(m, &data, &exp, run, device, opts).map(|(_, r)| r),
            Model::RealNvp(m) => {
                let m = if fresh {
                    init_from_data(m, &data, exp.seed, &ad)
                } else {
                    m
                };
                fit(m, &data, &exp, run, device, opts).map(|(_, r)| r)
            }
            Model::LatentOde(m) => fit(m, &data, &exp, run, device, opts).map(|(_, r)| r),
            Model::Gan(_) => unreachable!("the GAN is matched above"),
        },
    }
}

/// A trained run, ready to sample.
#[derive(Debug)]
pub struct LoadedRun {
    /// The resolved experiment it was trained with.
    pub exp: Experiment,
    /// Its data's shape, names and normalisation.
    pub info: DataInfo,
    /// The checkpoint loaded.
    pub checkpoint: Checkpoint,
    /// The model with that checkpoint's weights.
    pub model: Model,
}

/// Loads the newest checkpoint of a run onto `device`.
pub fn load_run(run: &RunDir, device: &Device) -> Result<LoadedRun, TrainError> {
    let exp = run.read_experiment()?;
    let info = run.read_data_info()?;
    let checkpoint = run.latest_checkpoint()?.ok_or_else(|| TrainError::RunDir {
        path: run.root().to_path_buf(),
        message: "holds no complete checkpoint yet".into(),
    })?;
    run.verify(&checkpoint, exp.model.kind())?;
    let shape = WindowShape::from(&info.meta);
    // A GAN samples from its generator's moving average when the run kept one.
    let ema = ema_file(&checkpoint);
    let file = if matches!(exp.model, ModelConfig::Gan(_)) && ema.exists() {
        ema
    } else {
        checkpoint.model_file()
    };
    let load_err = |e: burn::store::RecordError| TrainError::Checkpoint {
        path: file.clone(),
        message: format!("cannot load model weights: {e}"),
    };
    let model = build_model(&exp, shape, device)
        .load_file(&file)
        .map_err(load_err)?;
    Ok(LoadedRun {
        exp,
        info,
        checkpoint,
        model,
    })
}

/// Draws `n` windows from the model in physical units, deterministically for `seed`.
///
/// Latents and observation noise are drawn on the host, so the same seed gives the same
/// samples on every backend (up to floating-point differences in the decoder).
pub fn sample_signals(
    run: &LoadedRun,
    n: usize,
    seed: u64,
    device: &Device,
) -> Result<Signals, TrainError> {
    let meta = &run.info.meta;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(n * meta.channels * meta.time);
    let chunk = 256;
    let mut done = 0;
    while done < n {
        let m = chunk.min(n - done);
        let mut z = |d: usize| host_tensor(normals(&mut rng, m * d), [m, d], device);
        let obs = match &run.model {
            Model::Vae(v) => v.generate(z(v.noise_dim())),
            Model::RealNvp(f) => f.generate(z(f.noise_dim())),
            Model::LatentOde(o) => o.generate(z(o.noise_dim())),
            Model::Gan(g) => g.generate(z(g.noise_dim())),
        };
        draw(obs, meta, &mut rng, &mut values)?;
        done += m;
    }
    let mut out = Signals {
        values,
        n,
        meta: meta.clone(),
        latents: None,
        labels: None,
    };
    // Counts are never normalised (the config check refuses it), so they stay integers.
    run.info.norm.invert(&mut out);
    Ok(out)
}

/// Draws one observation per element on the host and appends them to `out`.
fn draw(
    obs: Observation,
    meta: &SignalMeta,
    rng: &mut StdRng,
    out: &mut Vec<f32>,
) -> Result<(), TrainError> {
    let read = |t: burn::tensor::TensorData| {
        t.try_to_vec::<f32>().map_err(|e| TrainError::RunDir {
            path: std::path::PathBuf::from("<device>"),
            message: format!("reading samples back failed: {e:?}"),
        })
    };
    match obs {
        Observation::Gaussian { mean, sigma } => {
            let mean = read(mean.into_data())?;
            let sigma = read(sigma.into_data())?;
            let eps = normals(rng, mean.len());
            for (i, (m, e)) in mean.iter().zip(eps).enumerate() {
                let c = (i / meta.time) % meta.channels;
                out.push(m + sigma[c] * e);
            }
        }
        Observation::Poisson { rate } => {
            for r in read(rate.into_data())? {
                out.push(neurogen_data::sim::poisson(rng, r as f64));
            }
        }
        Observation::Point { values } => out.extend(read(values.into_data())?),
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::RunDir {
            path: std::path::PathBuf::from("<samples>"),
            message: "the model produced non-finite samples (a diverged or unstable checkpoint)"
                .into(),
        });
    }
    Ok(())
}

/// A tensor's values read back to the host as `f64`; `what` names them in the error.
pub(crate) fn host_f64(data: burn::tensor::TensorData, what: &str) -> Result<Vec<f64>, TrainError> {
    Ok(data
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Input(format!("reading {what} back failed: {e:?}")))?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// Per-window likelihood scores of a run.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Which quantity `log_likelihood` is: `exact` (flows) or `iwae_k=K` (a lower bound).
    pub bound: String,
    /// Per window: log-likelihood (or its bound) in nats, in the run's normalised units.
    pub log_likelihood: Vec<f64>,
    /// Per window: the ELBO (VAE and latent ODE), in nats.
    pub elbo: Option<Vec<f64>>,
    /// Values per window, for bits per dimension.
    pub dim: usize,
}

/// Scores every window of `s` (physical units, the run's window shape) under the run's model:
/// the exact log-likelihood for RealNVP, the IWAE bound with `k` samples (and the ELBO) for the
/// VAE and the latent ODE. Deterministic for `seed`.
pub fn score_signals(
    run: &LoadedRun,
    s: &Signals,
    k: usize,
    seed: u64,
    device: &Device,
) -> Result<Scores, TrainError> {
    let meta = &run.info.meta;
    if (s.meta.channels, s.meta.time) != (meta.channels, meta.time) {
        return Err(TrainError::Input(format!(
            "windows are [{} channels × {} samples], but the run was trained on [{} × {}]",
            s.meta.channels, s.meta.time, meta.channels, meta.time
        )));
    }
    if meta.kind == SignalKind::Counts && s.values.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
        return Err(TrainError::Input(
            "the run models spike counts, but the windows hold values that are not non-negative integers".into(),
        ));
    }
    if s.n == 0 {
        return Err(TrainError::Input("no windows to score".into()));
    }
    if s.values.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::Input(
            "the windows contain NaN or infinite values".into(),
        ));
    }
    let mut s = s.clone();
    run.info.norm.apply(&mut s);
    let dim = meta.channels * meta.time;
    let read = |t: Tensor<1>| host_f64(t.into_data(), "scores");
    let mut ll = Vec::with_capacity(s.n);
    let mut elbo = Vec::with_capacity(s.n);
    let chunk = match &run.model {
        Model::RealNvp(_) => 256,
        _ => (4096 / k.max(1)).max(1),
    };
    let indices: Vec<usize> = (0..s.n).collect();
    for (i, idx) in indices.chunks(chunk).enumerate() {
        let x = s.batch(idx, device); // [chunk, channels, time]
        let b = idx.len();
        let mut r = rng(seed, Stream::Score, i as u64);
        let (l, e) = match &run.model {
            Model::RealNvp(f) => {
                let noise = host_tensor(normals(&mut r, b * dim), [b, dim], device);
                (read(f.log_prob(x, noise))?, None)
            }
            Model::Vae(v) => {
                let d = v.noise_dim();
                let eps = host_tensor(normals(&mut r, k * b * d), [k, b, d], device);
                let (e, w) = bounds(v.log_weights(x, eps));
                (read(w)?, Some(read(e)?))
            }
            Model::LatentOde(o) => {
                let d = o.latent_dim();
                let eps = host_tensor(normals(&mut r, k * b * d), [k, b, d], device);
                let lw = o
                    .log_weights(x, eps)
                    .map_err(|e| TrainError::Input(format!("the ODE solve failed: {e}")))?;
                let (e, w) = bounds(lw);
                (read(w)?, Some(read(e)?))
            }
            Model::Gan(_) => {
                return Err(TrainError::Input(
                    "a GAN has no likelihood to score with; score works for vae, realnvp and latent_ode runs"
                        .into(),
                ))
            }
        };
        ll.extend(l);
        if let Some(e) = e {
            elbo.extend(e);
        }
    }
    let exact = matches!(run.model, Model::RealNvp(_));
    Ok(Scores {
        bound: if exact {
            "exact".into()
        } else {
            format!("iwae_k={k}")
        },
        log_likelihood: ll,
        elbo: (!exact).then_some(elbo),
        dim,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, Tensor};
    use neurogen_data::SignalKind;
    use neurogen_models::{LossContext, VaeConfig};

    #[test]
    fn a_checkpoint_round_trips_to_the_identical_loss() {
        let device = Device::flex();
        device.seed(3);
        let ad = device.clone().autodiff();
        let cfg = VaeConfig {
            latent_dim: 4,
            hidden: vec![16],
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let shape = WindowShape {
            channels: 3,
            time: 8,
            sfreq: 100.0,
        };
        let x = Tensor::<3>::random([6, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let eps = Tensor::<2>::random([6, 4], Distribution::Normal(0.0, 1.0), &device);
        let ctx = LossContext { kl_warmup: 1.0 };

        // A few steps so every parameter (σ included) has moved away from its initial value.
        let mut model = cfg.init(shape, &ad);
        let mut optim = AdamConfig::new().init();
        for _ in 0..5 {
            let loss = model.loss(x.clone().autodiff(), eps.clone().autodiff(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let before = model
            .valid()
            .loss(x.clone(), eps.clone(), &ctx)
            .total
            .into_scalar::<f32>();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.bpk");
        model.clone().save_file(&file).unwrap();
        let fresh = cfg.init(shape, &device);
        let untrained = fresh
            .loss(x.clone(), eps.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        let loaded = fresh.try_load_file(&file).unwrap();
        let after = loaded.loss(x, eps, &ctx).total.into_scalar::<f32>();
        assert_eq!(before.to_bits(), after.to_bits(), "{before} vs {after}");
        assert_ne!(
            untrained, after,
            "a fresh model must differ, or the test proves nothing"
        );
    }
}
