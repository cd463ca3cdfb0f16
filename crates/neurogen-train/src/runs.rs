//! Whole operations on a run directory: train an experiment, load a run, sample from it.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use neurogen_data::{SignalMeta, Signals};
use neurogen_models::{GenerativeModel, ModelConfig, Observation, Vae, WindowShape};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::fit::host_tensor;
use crate::rng::normals;
use crate::run_dir::{Checkpoint, DataInfo};
use crate::{fit, Experiment, FitOptions, FitReport, Provenance, RunDir, TrainError};

/// A built model of any family that trains with `fit`.
#[derive(Debug, Clone)]
pub enum Model {
    /// A VAE.
    Vae(Vae),
}

/// Builds the model an experiment describes for windows of `shape`.
pub fn build_model(exp: &Experiment, shape: WindowShape, device: &Device) -> Model {
    match &exp.model {
        ModelConfig::Vae(c) => Model::Vae(c.init(shape, device)),
    }
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
    if opts.resume {
        let stored = run.read_experiment()?;
        if stored.resume_key() != exp.resume_key() {
            return Err(TrainError::RunDir {
                path: run.experiment_file(),
                message: "--resume: the experiment differs from the one this run was started with \
                          (only train.steps and backend may change on resume)"
                    .into(),
            });
        }
        if let Some(p) = stored.provenance {
            provenance.created_unix = p.created_unix;
        }
    } else if run.latest_checkpoint()?.is_some() || run.metrics_file().exists() {
        return Err(TrainError::RunDir {
            path: run.root().to_path_buf(),
            message:
                "already holds a run; pass --resume to continue it, or --out DIR for a new one"
                    .into(),
        });
    }
    exp.provenance = Some(provenance);

    let windows = exp.build_data(config_path)?;
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
    match build_model(&exp, shape, &device.clone().autodiff()) {
        Model::Vae(m) => fit(m, &data, &exp, run, device, opts).map(|(_, r)| r),
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
    let shape = WindowShape::from(&info.meta);
    let file = checkpoint.model_file();
    let load_err = |e: burn::store::RecordError| TrainError::Checkpoint {
        path: file.clone(),
        message: format!("cannot load model weights: {e}"),
    };
    let model = match build_model(&exp, shape, device) {
        Model::Vae(m) => Model::Vae(m.try_load_file(&file).map_err(load_err)?),
    };
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
        let obs = match &run.model {
            Model::Vae(v) => {
                let z = host_tensor(
                    normals(&mut rng, m * v.noise_dim()),
                    [m, v.noise_dim()],
                    device,
                );
                v.generate(z)
            }
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
    }
    Ok(())
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
