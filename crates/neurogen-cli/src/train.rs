//! `neurogen train`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use neurogen_train::{train_experiment, Experiment, FitOptions, RunDir, Verbosity};

use crate::common::BackendArg;
use crate::device_for;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The experiment (TOML).
    config: PathBuf,
    /// Run directory; default runs/<name>.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backend, overriding the config's.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Override any key before checks, e.g. --set train.steps=200 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    resume: bool,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    let verbosity = if quiet {
        Verbosity::Quiet
    } else {
        Verbosity::Normal
    };
    let mut exp = Experiment::load(&a.config, &a.set)?;
    if let Some(b) = a.backend {
        exp.backend = b.into();
    }
    let run = RunDir::new(
        a.out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(&exp.name)),
    );
    tracing::info!(run = %run.root().display(), backend = exp.backend.name(), "training");
    let device = device_for(exp.backend)?;
    let opts = FitOptions {
        resume: a.resume,
        verbosity,
        stop_at: None,
    };
    let report = train_experiment(&exp, &a.config, &run, &device, opts)?;
    if quiet {
        return Ok(());
    }
    let mut valid = report
        .valid_loss
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "n/a".into());
    // Figures a user looks for beside the loss: bits/dim (flows), forecast error (latent ODE in
    // extrapolation mode), sample quality (GAN).
    for key in ["bits_per_dim", "forecast_mse", "nfe", "mmd2", "diversity"] {
        if let Some(v) = report
            .valid
            .as_ref()
            .and_then(|l| l.get(key))
            .and_then(|v| v.as_f64())
        {
            valid.push_str(&format!(", {key} {v:.4}"));
        }
    }
    println!(
        "trained {} steps ({}..{}) on {} in {:.1} s: train loss {:.4}, valid loss {valid}; run in {}",
        report.steps - report.start_step,
        report.start_step,
        report.steps,
        exp.backend.name(),
        report.wall_s,
        report.train_loss,
        run.root().display()
    );
    if let Some(b) = report.best {
        let kept = match run.best_checkpoint()? {
            Some(c) if c.step == b.step => {
                format!(
                    ", kept in checkpoints/best-{} (load it with --best)",
                    b.step
                )
            }
            _ => String::new(),
        };
        println!(
            "best validation loss {:.4} at step {}{kept}",
            b.valid_loss, b.step
        );
    }
    if report.stopped_early {
        println!(
            "stopped early at step {}: {} validations without a lower validation loss (train.patience)",
            report.steps, exp.train.patience
        );
    }
    Ok(())
}
