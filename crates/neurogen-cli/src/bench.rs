//! `neurogen bench`: the reference workloads on each backend, one process per row.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use neurogen_train::bench::{self, Protocol, Workload};
use neurogen_train::Backend;
use serde_json::{json, Value};

use crate::common::{backends, UsageError};
use crate::device_for;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// vae, realnvp, realnvp_sample, realnvp_log_prob, gan, latent_ode, sgemm or all
    /// (comma-separated or repeated; default all).
    #[arg(long, value_name = "NAME")]
    workload: Vec<String>,
    /// Backends, comma-separated: ndarray, flex, wgpu (default ndarray,flex).
    #[arg(long, value_name = "LIST")]
    backend: Vec<String>,
    /// Threads of the CPU backends' pools (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the JSON lines here (the table then goes to stdout); default: JSON lines to
    /// stdout, the table to stderr.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Untimed steps first (default: the reference protocol's).
    #[arg(long)]
    warmup: Option<usize>,
    /// Steps per timed repeat (default: the reference protocol's).
    #[arg(long)]
    steps: Option<usize>,
    /// Timed repeats, of which the median is reported (default 5).
    #[arg(long)]
    repeats: Option<usize>,
    /// Run one row in this process (what the parent spawns).
    #[arg(long, hide = true)]
    child: bool,
}

fn workloads(names: &[String]) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    for name in names.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if name == "all" {
            out.extend(Workload::ALL);
            continue;
        }
        match Workload::from_name(name) {
            Some(w) => out.push(w),
            None => bail!(UsageError(format!(
                "--workload {name}: no such workload; choose from all, {}",
                Workload::ALL.map(Workload::name).join(", ")
            ))),
        }
    }
    if out.is_empty() {
        out.extend(Workload::ALL);
    }
    out.dedup();
    Ok(out)
}

/// The reference protocol, with any count the user overrode.
fn protocol(w: Workload, a: &Args) -> Protocol {
    let p = w.protocol();
    Protocol {
        warmup: a.warmup.unwrap_or(p.warmup),
        steps: a.steps.unwrap_or(p.steps).max(1),
        repeats: a.repeats.unwrap_or(p.repeats).max(1),
    }
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    let list = workloads(&a.workload)?;
    let bs = backends(&a.backend, "--backend")?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        bail!(UsageError("--threads: must be at least 1".into()));
    }
    if a.child {
        // One row in this process: the parent set the thread pools' sizes in our environment.
        let (&w, &b) = (
            list.first().context("one workload")?,
            bs.first().context("one backend")?,
        );
        let t = bench::run(w, &device_for(b)?, protocol(w, a))?;
        println!("{}", row(w, b, threads, &t));
        return Ok(());
    }
    let mut file = match &a.out {
        Some(p) => Some(
            std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        ),
        None => None,
    };
    let exe = std::env::current_exe().context("finding the neurogen executable")?;
    let total = list.len() * bs.len();
    let (mut rows, mut failed) = (Vec::new(), Vec::new());
    for (i, (w, b)) in list
        .iter()
        .flat_map(|w| bs.iter().map(move |b| (*w, *b)))
        .enumerate()
    {
        let p = protocol(w, a);
        if !quiet {
            eprint!(
                "[{}/{total}] {} on burn-{} ({} threads, {} warm-up + {} × {} steps) … ",
                i + 1,
                w.name(),
                b.name(),
                threads,
                p.warmup,
                p.repeats,
                p.steps
            );
        }
        let n = threads.to_string();
        let out = Command::new(&exe)
            .args([
                "bench",
                "--child",
                "--workload",
                w.name(),
                "--backend",
                b.name(),
            ])
            .args(["--threads", &n])
            .args(["--warmup", &p.warmup.to_string()])
            .args(["--steps", &p.steps.to_string()])
            .args(["--repeats", &p.repeats.to_string()])
            .env("RAYON_NUM_THREADS", &n)
            .env("MATMUL_NUM_THREADS", &n)
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        match line.map(serde_json::from_str::<Value>) {
            Some(Ok(v)) if out.status.success() => {
                if !quiet {
                    eprintln!("{}", summary(&v));
                }
                match &mut file {
                    Some(f) => writeln!(f, "{v}")?,
                    None => println!("{v}"),
                }
                rows.push(v);
            }
            _ => {
                let err = String::from_utf8_lossy(&out.stderr);
                let why = err
                    .lines()
                    .rev()
                    .find(|l| l.contains("error"))
                    .unwrap_or("no result")
                    .trim()
                    .to_string();
                if !quiet {
                    eprintln!("failed: {why}");
                }
                failed.push(format!("{} on burn-{}: {why}", w.name(), b.name()));
            }
        }
    }
    if !quiet {
        let table = table(&rows);
        if a.out.is_some() {
            print!("{table}");
        } else {
            eprint!("{table}");
        }
    }
    if let (Some(f), Some(p)) = (&mut file, &a.out) {
        f.flush()
            .with_context(|| format!("{}: cannot write", p.display()))?;
    }
    if !failed.is_empty() {
        bail!(
            "{} of {total} runs failed: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// The reference JSON line of one result.
fn row(w: Workload, b: Backend, threads: usize, t: &bench::Timing) -> Value {
    let batch = w.batch();
    json!({
        "workload": w.name(),
        "framework": format!("burn-{}", b.name()),
        "device": if b == Backend::Wgpu { "gpu" } else { "cpu" },
        "threads": threads,
        "batch": batch,
        "steps_per_s": round(t.steps_per_s, 4),
        "samples_per_s": round(t.steps_per_s * batch as f64, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "params": t.params,
        "flops_per_step": w.flops_per_step(),
    })
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// Peak resident set of this process in MiB (`VmHWM`; 0 where /proc is not there).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A numeric field of a result line (NaN when absent).
fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn gflops(v: &Value) -> f64 {
    num(v, "steps_per_s") * num(v, "flops_per_step") / 1e9
}

fn summary(v: &Value) -> String {
    format!(
        "{:.2} steps/s, {:.0} samples/s, {:.1} GFLOP/s, peak RSS {:.0} MiB",
        num(v, "steps_per_s"),
        num(v, "samples_per_s"),
        gflops(v),
        num(v, "peak_rss_mb")
    )
}

fn table(rows: &[Value]) -> String {
    let s = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
        None => String::new(),
    };
    let mut out = format!(
        "\n{:<17} {:<13} {:>7} {:>6} {:>10} {:>11} {:>8} {:>9} {:>9}\n",
        "workload",
        "framework",
        "threads",
        "batch",
        "steps/s",
        "samples/s",
        "GFLOP/s",
        "RSS MiB",
        "params"
    );
    for v in rows {
        out.push_str(&format!(
            "{:<17} {:<13} {:>7} {:>6} {:>10.2} {:>11.0} {:>8.1} {:>9.0} {:>9}\n",
            s(v, "workload"),
            s(v, "framework"),
            s(v, "threads"),
            s(v, "batch"),
            num(v, "steps_per_s"),
            num(v, "samples_per_s"),
            gflops(v),
            num(v, "peak_rss_mb"),
            s(v, "params"),
        ));
    }
    out
}
