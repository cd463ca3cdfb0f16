//! What every command shares: the backend argument, usage errors and exit codes, opening a run.

use std::path::Path;

use anyhow::{bail, Result};
use burn::tensor::Device;
use neurogen_data::{DataError, SignalKind};
use neurogen_train::{load_checkpoint_with, Backend, ConfigError, LoadedRun, RunDir, TrainError};

use crate::{device_for, EXIT_USAGE};

/// `--backend`: which burn backend runs the command.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BackendArg {
    Ndarray,
    Flex,
    Wgpu,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Ndarray => Backend::Ndarray,
            BackendArg::Flex => Backend::Flex,
            BackendArg::Wgpu => Backend::Wgpu,
        }
    }
}

/// `--kind`: what the numbers in a file are.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum KindArg {
    Continuous,
    Counts,
}

impl From<KindArg> for SignalKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Continuous => SignalKind::Continuous,
            KindArg::Counts => SignalKind::Counts,
        }
    }
}

/// Parses a comma-separated backend list given to `flag` (`ndarray,flex,wgpu`); none named is
/// ndarray, flex.
pub(crate) fn backends(names: &[String], flag: &str) -> Result<Vec<Backend>> {
    const ALL: [Backend; 3] = [Backend::Ndarray, Backend::Flex, Backend::Wgpu];
    let mut out: Vec<Backend> = Vec::new();
    for name in names.iter().flat_map(|s| s.split(',')).map(str::trim) {
        let Some(b) = ALL.into_iter().find(|b| b.name() == name) else {
            bail!(UsageError(format!(
                "{flag} {name}: no such backend; choose from {}",
                ALL.map(Backend::name).join(", ")
            )));
        };
        if !crate::BUILT_BACKENDS.contains(&name) {
            bail!(UsageError(format!(
                "{flag} {name}: not in this build of neurogen, which has {} (rebuild with the \
                 default features to have all three)",
                crate::BUILT_BACKENDS.join(", ")
            )));
        }
        if !out.contains(&b) {
            out.push(b);
        }
    }
    if out.is_empty() {
        out = vec![Backend::Ndarray, Backend::Flex];
    }
    Ok(out)
}

/// Loads a run's newest checkpoint (with `best`, its best validated one) onto `backend`, or
/// the backend it was trained on; `burn_in` overrides an autoregressive model's.
pub(crate) fn open_run(
    run_dir: &Path,
    backend: Option<BackendArg>,
    best: bool,
    burn_in: Option<usize>,
) -> Result<(Device, LoadedRun)> {
    let run = RunDir::new(run_dir);
    let exp = run.read_experiment()?;
    let device = device_for(backend.map(Backend::from).unwrap_or(exp.backend))?;
    let loaded = load_checkpoint_with(&run, &device, best, burn_in)?;
    Ok((device, loaded))
}

/// A progress message on stderr, unless `-q`.
pub(crate) fn status(quiet: bool, line: &str) {
    if !quiet {
        eprintln!("{line}");
    }
}

/// A usage error found after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// The error and its causes on one line, each cause once: our error types already print their
/// source, so a cause whose text is already there is skipped.
pub(crate) fn describe(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out = format!("{out}: {c}");
        }
    }
    out
}

/// Training diverged beyond what the NaN guard may roll back.
pub(crate) const EXIT_DIVERGED: i32 = 3;

/// 2 for the user's input (usage, config, data, run directory), 3 for divergence, 1 else.
pub(crate) fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<UsageError>().is_some() || e.downcast_ref::<ConfigError>().is_some() {
        return EXIT_USAGE;
    }
    if let Some(t) = e.downcast_ref::<TrainError>() {
        if let TrainError::Diverged { .. } = t {
            return EXIT_DIVERGED;
        }
        return if t.is_user_error() { EXIT_USAGE } else { 1 };
    }
    if let Some(neurogen_eval::EvalError::Invalid(_)) = e.downcast_ref() {
        return EXIT_USAGE;
    }
    match e.downcast_ref::<DataError>() {
        Some(DataError::Invalid { .. } | DataError::Format { .. }) => EXIT_USAGE,
        // An output path in a directory that does not exist is the user's input too.
        Some(DataError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            EXIT_USAGE
        }
        _ => 1,
    }
}
