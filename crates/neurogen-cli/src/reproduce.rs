//! `neurogen reproduce`: retrain a run from its resolved experiment and compare.

use std::path::PathBuf;

use anyhow::{bail, Result};
use neurogen_train::experiment::{BURN_VERSION, GIT_COMMIT};
use neurogen_train::reproduce::{checkpoint_at, compare_metrics, compare_weights, Tolerance};
use neurogen_train::{hash_file, train_experiment, Backend, FitOptions, RunDir, Verbosity};

use crate::common::{status, BackendArg, UsageError};
use crate::device_for;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run to reproduce.
    run_dir: PathBuf,
    /// Retrain only the first K steps (of the same schedule) and compare those.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    steps: Option<u64>,
    /// Directory of the reproduction; default RUN_DIR-reproduced.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backend, instead of the run's (across backends the comparison has a tolerance).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
}

/// Within this of each other, wgpu runs agree (its reductions have no fixed order).
const GPU_TOLERANCE: Tolerance = Tolerance {
    rel: 1e-3,
    abs: 1e-5,
};

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    let run = RunDir::new(&a.run_dir);
    let stored = run.read_experiment()?;
    let Some(prov) = stored.provenance.clone() else {
        bail!(UsageError(format!(
            "{}: the run's experiment has no [provenance]; it was not written by neurogen train",
            run.experiment_file().display()
        )));
    };
    let Some(last) = run.latest_checkpoint()? else {
        bail!(UsageError(format!(
            "{}: holds no complete checkpoint to compare with",
            a.run_dir.display()
        )));
    };
    let steps = a.steps.unwrap_or(last.step);
    if steps > last.step {
        bail!(UsageError(format!(
            "--steps {steps}: the run has only reached step {}",
            last.step
        )));
    }
    // What may differ, stated before the work.
    let ours = env!("CARGO_PKG_VERSION");
    if prov.neurogen_version != ours {
        status(
            quiet,
            &format!(
                "note: trained by neurogen {}, reproduced by {ours}",
                prov.neurogen_version
            ),
        );
    }
    if prov.burn_version != BURN_VERSION {
        status(
            quiet,
            &format!(
                "note: trained with burn {}, reproduced with {BURN_VERSION}",
                prov.burn_version
            ),
        );
    }
    match (&prov.git_commit, GIT_COMMIT) {
        (Some(a), Some(b)) if a != b => status(
            quiet,
            &format!("note: trained at commit {a}, reproduced at {b}"),
        ),
        (None, Some(b)) => status(
            quiet,
            &format!("note: the run records no commit; reproduced at {b}"),
        ),
        _ => {}
    }
    for (path, hash) in &prov.inputs {
        match hash_file(std::path::Path::new(path)) {
            Ok(now) if &now != hash => status(
                quiet,
                &format!("note: {path} changed since training (XXH3 {hash} then, {now} now)"),
            ),
            Ok(_) => {}
            Err(e) => bail!(UsageError(format!("the run's input cannot be read: {e}"))),
        }
    }
    if let Some(s) = run.read_status().filter(|s| s.attempt > 1) {
        status(
            quiet,
            &format!(
                "note: the run was trained in {} attempts (resumed); [provenance] records the last",
                s.attempt
            ),
        );
    }
    // Beside the run, named after it (a trailing slash must not put it inside).
    let out = a.out.clone().unwrap_or_else(|| {
        let name = a
            .run_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let name = format!("{}-reproduced", name.unwrap_or_else(|| "run".into()));
        a.run_dir
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(name)
    });
    if out.exists() {
        bail!(UsageError(format!(
            "{}: already exists; remove it or give --out DIR",
            out.display()
        )));
    }
    let mut exp = stored.clone();
    exp.provenance = None;
    let backend: Backend = a.backend.map(Backend::from).unwrap_or(prov.backend);
    exp.backend = backend;
    // Exact where a run is a function of its experiment: the same CPU backend.
    let tol = if backend == Backend::Wgpu || backend != prov.backend {
        GPU_TOLERANCE
    } else {
        Tolerance::EXACT
    };
    status(
        quiet,
        &format!(
            "reproducing {} ({}, {} steps of {}) into {}",
            a.run_dir.display(),
            backend.name(),
            steps,
            exp.train.steps,
            out.display()
        ),
    );
    let device = device_for(backend)?;
    let reproduction = RunDir::new(&out);
    let opts = FitOptions {
        resume: false,
        // Progress lines would mix with the verdict on stdout; a terminal gets the bar.
        verbosity: if quiet || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Verbosity::Quiet
        } else {
            Verbosity::Normal
        },
        stop_at: Some(steps),
    };
    let began = std::time::Instant::now();
    train_experiment(&exp, &run.experiment_file(), &reproduction, &device, opts)?;
    let wall = began.elapsed().as_secs_f64();
    let (diff, lines) = compare_metrics(
        &run.metrics_file(),
        &reproduction.metrics_file(),
        Some(steps),
        tol,
    )?;
    let how = if tol == Tolerance::EXACT {
        "exactly".to_string()
    } else {
        format!("within rel {:.0e} + abs {:.0e}", tol.rel, tol.abs)
    };
    if let Some(d) = diff {
        bail!("not reproduced: metrics.jsonl differs at {d} (compared {how})");
    }
    // What agreed besides the metrics, and what could not be compared.
    let (with, without) = match (
        checkpoint_at(&run, steps)?,
        checkpoint_at(&reproduction, steps)?,
    ) {
        (Some(x), Some(y)) => {
            let (d, n) = compare_weights(&x, &y, tol)?;
            if let Some(d) = d {
                bail!(
                    "not reproduced: the metrics agree but the weights of step {steps} differ: {d}"
                );
            }
            (
                format!(" and the {n} weight tensors of step {steps}"),
                String::new(),
            )
        }
        _ => {
            let kept: Vec<String> = run
                .checkpoints()?
                .iter()
                .map(|c| c.step.to_string())
                .collect();
            let why = format!(
                "; weights not compared: the original keeps no checkpoint of step {steps} (it keeps \
                 steps {}: give one as --steps)",
                kept.join(", ")
            );
            (String::new(), why)
        }
    };
    println!(
        "identical: {lines} metric lines up to step {steps}{with} agree {how}{without} ({wall:.1} s; \
         reproduction in {})",
        out.display()
    );
    Ok(())
}
