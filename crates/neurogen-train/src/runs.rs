//! Training an experiment end to end: data, run directory, the family's trainer, the loop.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

use crate::registry::Build;
use crate::run_dir::DataInfo;
use crate::{fit, Experiment, FitOptions, FitReport, FitSpec, Provenance, RunDir, TrainError};

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
    let created = crate::run_dir::unix_now();
    let mut provenance = Provenance {
        neurogen_version: env!("CARGO_PKG_VERSION").into(),
        burn_version: crate::experiment::BURN_VERSION.into(),
        backend: exp.backend,
        seed: exp.seed,
        config_file: config_path.display().to_string(),
        created_unix: created,
        git_commit: crate::experiment::GIT_COMMIT.map(str::to_string),
        inputs: input_hashes(&exp)?,
    };
    let latest = run.latest_checkpoint()?;
    let has_checkpoint = latest.is_some();
    if opts.resume {
        // A run killed before its first checkpoint (or never started) has nothing to resume:
        // it starts from step 0, so a scheduler can always restart with --resume.
        if run.experiment_file().exists() {
            let stored = run.read_experiment()?;
            // Without a checkpoint nothing has trained yet: the stored experiment (e.g. a sweep
            // point's, whose window only the data settle) is simply replaced.
            if has_checkpoint && stored.resume_key() != exp.resume_key() {
                let keys = differing_keys(&stored.resume_key(), &exp.resume_key()).join(", ");
                return Err(TrainError::RunDir {
                    path: run.experiment_file(),
                    message: format!(
                        "--resume: the experiment differs from the one this run was started \
                         with in {keys} (only train.steps, backend, train.grad_clip, \
                         train.lr_cut, train.max_rollbacks, train.keep_best and train.patience \
                         may change on resume; a key left out takes its default, e.g. a GAN \
                         run resolved before model.upsample existed is \"transposed\")"
                    ),
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
    exp.check_against(config_path, &data.train)?;
    let t = &exp.train;
    let key = if t.patience > 0 {
        "train.patience"
    } else {
        "train.keep_best"
    };
    if t.tracks_best() && exp.model.kind() == "gan" {
        return Err(crate::ConfigError::Invalid {
            path: config_path.to_path_buf(),
            key: key.into(),
            message: "a GAN's validation loss is its critic's loss, which does not rank \
                      generators; keep its checkpoints by step (train.keep_checkpoints) and \
                      judge them with neurogen eval"
                .into(),
        }
        .into());
    }
    if t.tracks_best() && data.valid.n == 0 {
        return Err(crate::ConfigError::Invalid {
            path: config_path.to_path_buf(),
            key: key.into(),
            message: "needs a validation split, but data.split gives it no windows".into(),
        }
        .into());
    }

    run.create()?;
    // One trainer per run directory: a second (a sweep started twice, a task submitted twice)
    // is refused instead of interleaving checkpoints. The OS drops the lock when the process
    // ends, however it ends.
    let lock_path = run.root().join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(TrainError::io(lock_path.clone()))?;
    if let Err(e) = lock.try_lock() {
        let holder = run
            .read_status()
            .filter(|s| s.state == "running")
            .map(|s| format!(" (pid {} on {})", s.pid, s.host))
            .unwrap_or_default();
        return Err(TrainError::RunDir {
            path: run.root().to_path_buf(),
            message: format!("another neurogen process is training this run{holder}: {e}"),
        });
    }
    run.write_experiment(&exp)?;
    // Kept for conditional runs only: their default sampling proportions and classifier prior.
    let kept = if exp.model.conditional() {
        data.train.meta.label_names.len()
    } else {
        0
    };
    let mut label_counts = vec![0; kept];
    for &l in data.train.labels.iter().flatten() {
        if let Some(c) = label_counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    run.write_data_info(&DataInfo {
        meta: data.train.meta.clone(),
        norm: data.norm.clone(),
        windows: [data.train.n, data.valid.n, data.test.n],
        label_counts,
    })?;

    let previous = run.read_status();
    let start = latest.filter(|_| opts.resume).map_or(0, |c| c.step);
    let mut status = crate::run_dir::RunStatus::starting(start, previous.as_ref());
    status.target = Some(exp.train.steps);
    run.write_status(&status)?;
    let result = train_in(&exp, &data, run, device, opts);
    status.state = match &result {
        // Stopped before train.steps on purpose (`reproduce --steps`): resumable, not finished.
        Ok(r) if r.steps < exp.train.steps && !r.stopped_early => "stopped",
        Ok(_) => "finished",
        Err(_) => "failed",
    }
    .into();
    status.unix = crate::run_dir::unix_now();
    status.step = run.latest_checkpoint().ok().flatten().map(|c| c.step);
    status.error = result.as_ref().err().map(|e| e.to_string());
    // The training's own error matters more than a status that could not be written.
    if let Err(e) = run.write_status(&status) {
        tracing::warn!("{e}");
    }
    drop(lock);
    result
}

/// The file hashes of `exp`'s inputs (its recording), by path.
pub(crate) fn input_hashes(exp: &Experiment) -> Result<BTreeMap<String, String>, TrainError> {
    let mut out = BTreeMap::new();
    if let Some(p) = exp.data.source.path() {
        out.insert(p.display().to_string(), crate::run_dir::hash_file(p)?);
    }
    Ok(out)
}

/// Builds the family's trainer and runs the loop.
fn train_in(
    exp: &Experiment,
    data: &neurogen_data::Dataset,
    run: &RunDir,
    device: &Device,
    opts: FitOptions,
) -> Result<FitReport, TrainError> {
    device.seed(exp.seed);
    let build = Build::new(exp, &data.train.meta, device);
    // A resumed run takes its weights from the checkpoint: no data-dependent initialisation.
    let init = (!opts.resume).then_some(&data.train);
    let mut trainer = exp.model.family().trainer(&build, init);
    let spec = FitSpec {
        train: &exp.train,
        seed: exp.seed,
        kind: exp.model.kind(),
    };
    fit(trainer.as_mut(), data, run, &spec, opts)
}

/// The dotted keys (`model.upsample`, `train.lr`) whose values differ between two experiments.
fn differing_keys(a: &crate::Experiment, b: &crate::Experiment) -> Vec<String> {
    let mut out = key_differences(a, b, false);
    if out.is_empty() {
        out.push("its settings".into());
    }
    out
}

/// The dotted keys whose values differ between `a` and `b`. With `only_given`, keys `b` leaves
/// out do not count (defaults only the data settle, e.g. a recording's window, which a freshly
/// resolved experiment lacks and a run's stored one has).
pub(crate) fn key_differences(
    a: &crate::Experiment,
    b: &crate::Experiment,
    only_given: bool,
) -> Vec<String> {
    fn walk(
        prefix: &str,
        a: Option<&toml::Value>,
        b: Option<&toml::Value>,
        only_given: bool,
        out: &mut Vec<String>,
    ) {
        match (a, b) {
            (_, None) if only_given => {}
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), only_given, out);
                }
            }
            (x, y) if x != y => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let (a, b) = (toml::Value::try_from(a).ok(), toml::Value::try_from(b).ok());
    let mut out = Vec::new();
    walk("", a.as_ref(), b.as_ref(), only_given, &mut out);
    out
}
