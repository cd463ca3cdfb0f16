//! `neurogen sweep`: expand a sweep file into points, run them here or as a Slurm job array,
//! and collect their results.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use neurogen_train::sweep::{collect, point_state, PointState, Row, SlurmConfig, Sweep};

use crate::common::{status, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The sweep file (TOML): `base`, `[axes]`, `[random]`, `[slurm]` (README, "Sweeps").
    #[arg(required_unless_present = "collect")]
    sweep: Option<PathBuf>,
    /// Run every unfinished point on this machine (finished points are skipped, interrupted
    /// ones resumed).
    #[arg(long, conflicts_with_all = ["slurm", "collect"])]
    local: bool,
    /// Points trained at once with --local; each gets cores/J compute threads.
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    jobs: u32,
    /// Write sweeps/<name>/sweep.sbatch: one Slurm job array, a task per point.
    #[arg(long, conflicts_with = "collect")]
    slurm: bool,
    /// With --slurm: submit the array with sbatch.
    #[arg(long, requires = "slurm")]
    submit: bool,
    /// Gather the points of a sweep directory into results.csv and results.md.
    #[arg(long, value_name = "SWEEP_DIR")]
    collect: Option<PathBuf>,
    /// With --collect: the column that ranks the points (lowest first), e.g. valid_loss or a
    /// dotted path of eval/report.json.
    #[arg(long, value_name = "METRIC")]
    by: Option<String>,
    /// With --collect: rank highest first.
    #[arg(long)]
    descending: bool,
    /// Where the sweep directory goes: default sweeps/<name> (relative to the working directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if let Some(dir) = &a.collect {
        return collect_table(dir, a.by.as_deref(), a.descending, quiet);
    }
    let Some(file) = &a.sweep else {
        bail!(UsageError(
            "give a sweep file, or --collect SWEEP_DIR".into()
        ));
    };
    let sweep = Sweep::load(file)?;
    let root = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("sweeps").join(&sweep.name));
    let dirs = sweep.write(&root)?;
    status(
        quiet,
        &format!(
            "{} points of sweep {} (base {}) in {}",
            dirs.len(),
            sweep.name,
            sweep.base.display(),
            root.display()
        ),
    );
    if a.slurm {
        // Only the points still to train: a finished one would take a slot for nothing, and
        // one a process is training now would be refused by its run's lock.
        let mut todo = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            match point_state(d) {
                PointState::Finished => {}
                PointState::Running => bail!(UsageError(format!(
                    "{}: a training process (status.json) is running this point; wait for the \
                     sweep's tasks to end (squeue) before submitting it again",
                    d.display()
                ))),
                _ => todo.push(i),
            }
        }
        if todo.is_empty() {
            println!(
                "every point of {} is finished; nothing to submit",
                root.display()
            );
            return Ok(());
        }
        let script = write_sbatch(&sweep, &root, &todo)?;
        if a.submit {
            let out = Command::new("sbatch")
                .arg("--parsable")
                .arg(&script)
                .output()
                .context("cannot run sbatch (is Slurm installed and on the PATH?)")?;
            if !out.status.success() {
                bail!(
                    "sbatch {} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            // --parsable prints "id" or "id;cluster".
            let printed = String::from_utf8_lossy(&out.stdout);
            let id = printed.trim().split(';').next().unwrap_or("").to_string();
            neurogen_data::io::write_atomic(&root.join("slurm_job_id"), id.as_bytes())?;
            println!(
                "submitted job array {id} ({} tasks): {}",
                dirs.len(),
                script.display()
            );
        } else {
            println!(
                "wrote {}; submit it with `sbatch {}` (or --submit)",
                script.display(),
                script.display()
            );
        }
    } else if a.local {
        run_local(&dirs, a.jobs as usize, quiet)?;
    } else {
        for d in &dirs {
            println!("{}", d.display());
        }
        status(
            quiet,
            "run them with --local [--jobs J] or --slurm [--submit]; gather them with --collect",
        );
    }
    Ok(())
}

/// The Slurm job array for the points `indices` under `root`.
fn write_sbatch(sweep: &Sweep, root: &Path, indices: &[usize]) -> Result<PathBuf> {
    let root = std::path::absolute(root)?;
    let bin = std::env::current_exe().context("cannot find this neurogen's own path")?;
    // #SBATCH lines are not shell: a space ends the option and % starts a pattern.
    if let Some(odd) = root
        .to_str()
        .filter(|r| r.contains(|c: char| c.is_whitespace() || c == '%'))
    {
        bail!(UsageError(format!(
            "{odd}: Slurm's #SBATCH --output cannot name a directory with spaces or %; run the \
             sweep from another directory or give --out"
        )));
    }
    let script = root.join("sweep.sbatch");
    let text = sbatch_text(sweep, &root, &bin, indices);
    neurogen_data::io::write_atomic(&script, text.as_bytes())?;
    Ok(script)
}

/// Shell-quotes `s` for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sbatch_text(sweep: &Sweep, root: &Path, bin: &Path, indices: &[usize]) -> String {
    let n = indices.len();
    let SlurmConfig {
        partition,
        time,
        cpus,
        gpus,
        memory,
        account,
        max_parallel,
    } = &sweep.slurm;
    let m = max_parallel.map_or(n, |m| m as usize);
    let mut s = format!(
        "#!/bin/bash\n# Written by `neurogen sweep --slurm` for {} ({} points). One array task per\n\
         # point; a task trains its point with --resume, so a preempted or requeued task continues\n\
         # from the point's newest checkpoint.\n",
        sweep.path.display(),
        n
    );
    s += &format!("#SBATCH --job-name=neurogen-{}\n", sweep.name);
    // Consecutive indices as ranges: 0-9, or 1,4-6 when some points are finished.
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        ranges.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    s += &format!("#SBATCH --array={}%{m}\n", ranges.join(","));
    s += &format!("#SBATCH --output={}/%a/slurm-%A_%a.out\n", root.display());
    s += "#SBATCH --requeue\n#SBATCH --open-mode=append\n";
    if let Some(p) = partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = time {
        s += &format!("#SBATCH --time={t}\n");
    }
    if let Some(c) = cpus {
        s += &format!("#SBATCH --cpus-per-task={c}\n");
    }
    if let Some(g) = gpus {
        s += &format!("#SBATCH --gres=gpu:{g}\n");
    }
    if let Some(m) = memory {
        s += &format!("#SBATCH --mem={m}\n");
    }
    if let Some(a) = account {
        s += &format!("#SBATCH --account={a}\n");
    }
    s += "set -euo pipefail\n";
    if cpus.is_some() {
        s += "export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    }
    s += &format!(
        "point={}/\"$SLURM_ARRAY_TASK_ID\"\n",
        quote(&root.display().to_string())
    );
    s += &format!(
        "exec {} train \"$point/experiment.toml\" --out \"$point\" --resume --quiet\n",
        quote(&bin.display().to_string())
    );
    s
}

/// Trains every unfinished point, `jobs` at a time.
fn run_local(dirs: &[PathBuf], jobs: usize, quiet: bool) -> Result<()> {
    let bin = std::env::current_exe().context("cannot find this neurogen's own path")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads =
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| (cores / jobs).max(1).to_string());
    let mut queue: VecDeque<&PathBuf> = VecDeque::new();
    let mut skipped = 0;
    for d in dirs {
        match point_state(d) {
            PointState::Finished => skipped += 1,
            PointState::Running => bail!(
                "{}: a training process (status.json) is running this point; wait for it or stop it",
                d.display()
            ),
            _ => queue.push_back(d),
        }
    }
    let total = queue.len();
    if skipped > 0 {
        status(
            quiet,
            &format!("{skipped} points already finished: skipped"),
        );
    }
    let mut running: Vec<(&PathBuf, Child, Instant)> = Vec::new();
    let (mut done, mut failed) = (0, Vec::new());
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < jobs {
            let Some(d) = queue.pop_front() else { break };
            // Appended to, like Slurm's logs: an earlier attempt's error stays readable.
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("train.log"))
                .with_context(|| format!("{}: cannot open train.log", d.display()))?;
            let now = neurogen_train::run_dir::unix_now();
            writeln!(log, "== neurogen sweep --local: attempt at unix time {now}")?;
            let mut cmd = Command::new(&bin);
            // Inside a Slurm allocation the points are ours, not the allocation's tasks.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("SLURM_") {
                    cmd.env_remove(k);
                }
            }
            let child = cmd
                .arg("train")
                .arg(d.join("experiment.toml"))
                .arg("--out")
                .arg(d)
                .args(["--resume", "--quiet"])
                .env("RAYON_NUM_THREADS", &threads)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            running.push((d, child, Instant::now()));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            if let Some(exit) = running[i].1.try_wait()? {
                let (d, _, began) = running.swap_remove(i);
                done += 1;
                let secs = began.elapsed().as_secs_f64();
                if exit.success() {
                    status(
                        quiet,
                        &format!("[{done}/{total}] {} finished in {secs:.1} s", d.display()),
                    );
                } else {
                    let why = std::fs::read_to_string(d.join("train.log")).unwrap_or_default();
                    let why = why
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("");
                    status(
                        quiet,
                        &format!(
                            "[{done}/{total}] {} FAILED after {secs:.1} s: {why}",
                            d.display()
                        ),
                    );
                    failed.push(d.display().to_string());
                }
            } else {
                i += 1;
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {total} points failed ({}); see train.log in each; rerun the sweep to resume them",
            failed.len(),
            failed.join(", ")
        );
    }
    status(quiet, &format!("{total} points trained, {skipped} skipped"));
    Ok(())
}

/// Writes results.csv and results.md under `dir`, best first by `by`, and prints the table.
fn collect_table(dir: &Path, by: Option<&str>, descending: bool, quiet: bool) -> Result<()> {
    let mut rows = collect(dir)?;
    let keys: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.point.overrides.keys().cloned())
        .collect();
    let mut metrics: Vec<String> = ["step", "attempts", "train_loss", "valid_loss"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let extra: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.values.keys().cloned())
        .filter(|k| !metrics.contains(k))
        .collect();
    metrics.extend(extra);
    let given = by.is_some();
    let by = by.unwrap_or("valid_loss");
    // The default column may not exist yet (nothing validated): then index order.
    if given && !rows.is_empty() && !rows.iter().any(|r| r.values.contains_key(by)) {
        bail!(UsageError(format!(
            "--by {by}: no point has that column; choose from {}",
            metrics.join(", ")
        )));
    }
    let rank = |r: &Row| r.values.get(by).copied().filter(|v| v.is_finite());
    rows.sort_by(|a, b| match (rank(a), rank(b)) {
        (Some(x), Some(y)) => {
            let o = x.total_cmp(&y);
            if descending {
                o.reverse()
            } else {
                o
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.point.index.cmp(&b.point.index),
    });
    // The CSV keeps every digit; the Markdown table rounds.
    let cell =
        |r: &Row, k: &str| -> String { r.values.get(k).map_or(String::new(), |v| v.to_string()) };
    let short = |c: &str| -> String {
        match c.parse::<f64>() {
            Ok(v) if v.fract() != 0.0 && v.abs() >= 1e-3 => format!("{v:.4}"),
            Ok(v) if v.fract() != 0.0 => format!("{v:.3e}"),
            _ => c.to_string(),
        }
    };
    let over = |r: &Row, k: &str| -> String {
        r.point.overrides.get(k).map_or(String::new(), |v| match v {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        })
    };
    let mut header: Vec<String> = vec!["point".into()];
    header.extend(keys.iter().cloned());
    header.push("status".into());
    header.extend(metrics.iter().cloned());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut line = vec![r.point.index.to_string()];
            line.extend(keys.iter().map(|k| over(r, k)));
            line.push(r.state.name().into());
            line.extend(metrics.iter().map(|k| cell(r, k)));
            line
        })
        .collect();
    let csv_path = dir.join("results.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    for line in std::iter::once(&header).chain(&table) {
        w.write_record(line)?;
    }
    let text = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("results.csv: {e}"))?;
    neurogen_data::io::write_atomic(&csv_path, &text)?;
    // The Markdown table keeps the overrides, the status and the losses; the CSV has every column.
    let shown: Vec<usize> = (0..header.len())
        .filter(|&i| i < keys.len() + 2 + 4 || header[i] == by)
        .collect();
    let mut md = String::new();
    let row = |cells: Vec<&str>| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    md += &row(shown.iter().map(|&i| header[i].as_str()).collect());
    md += &row(shown.iter().map(|_| "---").collect());
    for line in &table {
        let cells: Vec<String> = shown
            .iter()
            .map(|&i| {
                if i > keys.len() {
                    short(&line[i])
                } else {
                    line[i].clone()
                }
            })
            .collect();
        md += &row(cells.iter().map(String::as_str).collect());
    }
    let md_path = dir.join("results.md");
    neurogen_data::io::write_atomic(&md_path, md.as_bytes())?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.state.name()).or_default() += 1;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(md.as_bytes())?;
    status(
        quiet,
        &format!(
            "{} points ({}), best first by {by}: {} and {}",
            rows.len(),
            counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            csv_path.display(),
            md_path.display()
        ),
    );
    Ok(())
}
