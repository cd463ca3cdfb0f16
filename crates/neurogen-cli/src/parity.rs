//! `neurogen parity`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use neurogen_train::parity::{parity, Tolerances};

use crate::common::{backends, UsageError};
use crate::device_for;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The experiment (TOML).
    config: PathBuf,
    /// Backends to compare, comma-separated; the first is the reference (default
    /// ndarray,flex).
    #[arg(long, value_name = "LIST")]
    backends: Vec<String>,
    /// Steps of the loss curve compared.
    #[arg(long, default_value_t = 20)]
    steps: u64,
    /// Override any key, as for train.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Write the JSON report here (default: stdout).
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Largest relative difference of the first loss.
    #[arg(long, default_value_t = 1e-4)]
    tol_loss: f64,
    /// Largest relative difference of any parameter's gradient (max |a − b| over max |a|).
    #[arg(long, default_value_t = 1e-3)]
    tol_grad: f64,
    /// Largest relative difference of the loss curve after K steps.
    #[arg(long, default_value_t = 1e-3)]
    tol_curve: f64,
}

/// Parity found backends that disagree (exit code 1, after the report is written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ParityFailed(String);

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    let exp = neurogen_train::Experiment::load(&a.config, &a.set)?;
    let bs = backends(&a.backends, "--backends")?;
    if bs.len() < 2 {
        bail!(UsageError(
            "--backends: name at least two backends to compare, e.g. ndarray,flex".into()
        ));
    }
    if a.steps == 0 {
        bail!(UsageError("--steps: must be at least 1".into()));
    }
    let data = exp.build_data(&a.config)?.into_dataset();
    exp.check_against(&a.config, &data.train)?;
    let devices: Vec<_> = bs
        .iter()
        .map(|b| Ok((b.name().to_string(), device_for(*b)?)))
        .collect::<Result<_>>()?;
    // Test hook: weights loaded on this backend are nudged, so the check must fail.
    #[cfg(feature = "fault-injection")]
    let perturb = std::env::var("NEUROGEN_FAULT_PERTURB_BACKEND").ok();
    #[cfg(not(feature = "fault-injection"))]
    let perturb: Option<String> = None;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    if !quiet {
        eprintln!(
            "parity of {} ({}) on {} over {} steps …",
            a.config.display(),
            exp.model.kind(),
            bs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "),
            a.steps
        );
    }
    let tolerances = Tolerances {
        loss: a.tol_loss,
        grad: a.tol_grad,
        curve: a.tol_curve,
    };
    let report = parity(
        &exp,
        &data,
        &devices,
        a.steps,
        tolerances,
        dir.path(),
        perturb.as_deref(),
    )?;
    let text = serde_json::to_string_pretty(&report)?;
    match &a.out {
        Some(p) => neurogen_data::io::write_atomic(p, format!("{text}\n").as_bytes())?,
        None => println!("{text}"),
    }
    let mut bad = Vec::new();
    for b in &report.backends {
        let worst = b
            .grads
            .iter()
            .max_by(|x, y| x.diff.max_rel.total_cmp(&y.diff.max_rel));
        let loss = b.loss.iter().map(|l| l.diff.max_rel).fold(0.0, f64::max);
        if !quiet {
            eprintln!(
                "{} vs {}: {} — first loss rel {:.1e}, gradients max rel {:.1e}{}, loss curve max rel {:.1e} over {} steps",
                b.backend,
                report.reference,
                if b.failures.is_empty() { "PASS" } else { "FAIL" },
                loss,
                worst.map_or(0.0, |w| w.diff.max_rel),
                worst.map_or(String::new(), |w| format!(" (`{}`)", w.name)),
                b.curve.max_rel,
                report.steps
            );
        }
        if !b.failures.is_empty() {
            bad.push(format!(
                "{} differs from {}: {}",
                b.backend,
                report.reference,
                b.failures.join("; ")
            ));
        }
    }
    if !bad.is_empty() {
        bail!(ParityFailed(bad.join(" | ")));
    }
    Ok(())
}
