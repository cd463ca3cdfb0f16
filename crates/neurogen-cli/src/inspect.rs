//! `neurogen inspect`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use neurogen_train::RunDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run directory.
    run_dir: PathBuf,
}

pub(crate) fn run(a: &Args) -> Result<()> {
    let run = RunDir::new(&a.run_dir);
    let exp = run.read_experiment()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "# run {}\n", a.run_dir.display())?;
    writeln!(out, "{}", exp.to_toml().map_err(anyhow::Error::msg)?)?;
    match run.latest_checkpoint()? {
        Some(c) => writeln!(
            out,
            "newest checkpoint: step {} ({})",
            c.step,
            c.dir.display()
        )?,
        None => writeln!(out, "newest checkpoint: none")?,
    }
    if let Some(c) = run.best_checkpoint()? {
        writeln!(
            out,
            "best checkpoint: step {} ({}; load it with --best)",
            c.step,
            c.dir.display()
        )?;
    }
    if let Some(s) = run.read_status() {
        let slurm = s
            .slurm_job
            .map(|j| format!(", Slurm job {j}"))
            .unwrap_or_default();
        writeln!(
            out,
            "status: {} (attempt {}, from step {}, pid {} on {}{slurm})",
            s.state, s.attempt, s.started_from, s.pid, s.host
        )?;
        if let Some(e) = s.error {
            writeln!(out, "error: {e}")?;
        }
    }
    for split in ["train", "valid"] {
        if let Some(line) = run.last_metrics(Some(split), 1)?.pop() {
            writeln!(out, "last {split} metrics: {line}")?;
        }
    }
    Ok(())
}
