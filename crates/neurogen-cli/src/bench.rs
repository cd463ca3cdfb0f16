//! `neurogen bench`: the reference workloads on each backend, one process per row.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use neurogen_train::bench::{self, Protocol, Workload};
use neurogen_train::Backend;
use serde_json::{json, Value};

use crate::commands::UsageError;
use crate::device_for;

/// What `neurogen bench` was asked for.
#[derive(Debug)]
pub(crate) struct BenchArgs<'a> {
    pub workloads: &'a [String],
    pub backends: &'a [String],
    pub threads: Option<usize>,
    pub out: Option<&'a Path>,
    pub warmup: Option<usize>,
    pub steps: Option<usize>,
    pub repeats: Option<usize>,
    pub child: bool,
    pub quiet: bool,
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

/// Parses a comma-separated backend list (`ndarray,flex,wgpu`); none named is ndarray, flex.
pub(crate) fn backends(names: &[String], flag: &str) -> Result<Vec<Backend>> {
    const ALL: [Backend; 3] = [Backend::Ndarray, Backend::Flex, Backend::Wgpu];
    let mut out: Vec<Backend> = Vec::new();
    for name in names.iter().flat_map(|s| s.split(',')).map(str::trim) {
        let Some(b) = ALL.into_iter().find(|b| b.name() == name) else {
            bail!(UsageError(format!(
                "{flag} {name}: no such backend; choose from ndarray, flex, wgpu"
            )));
        };
        if !out.contains(&b) {
            out.push(b);
        }
    }
    if out.is_empty() {
        out = vec![Backend::Ndarray, Backend::Flex];
    }
    Ok(out)
}

/// The reference protocol, with any count the user overrode.
fn protocol(w: Workload, a: &BenchArgs) -> Protocol {
    let p = w.protocol();
    Protocol {
        warmup: a.warmup.unwrap_or(p.warmup),
        steps: a.steps.unwrap_or(p.steps).max(1),
        repeats: a.repeats.unwrap_or(p.repeats).max(1),
    }
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    let list = workloads(a.workloads)?;
    let bs = backends(a.backends, "--backend")?;
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
        let t = bench::run(w, &device_for(b), protocol(w, a))?;
        println!("{}", row(w, b, threads, &t));
        return Ok(());
    }
    let mut file = match a.out {
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
        if !a.quiet {
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
                if !a.quiet {
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
                if !a.quiet {
                    eprintln!("failed: {why}");
                }
                failed.push(format!("{} on burn-{}: {why}", w.name(), b.name()));
            }
        }
    }
    if !a.quiet {
        let table = table(&rows);
        if a.out.is_some() {
            print!("{table}");
        } else {
            eprint!("{table}");
        }
    }
    if let (Some(f), Some(p)) = (&mut file, a.out) {
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

/// What `neurogen parity` was asked for.
#[derive(Debug)]
pub(crate) struct ParityArgs<'a> {
    pub config: &'a Path,
    pub backends: &'a [String],
    pub steps: u64,
    pub set: &'a [String],
    pub out: Option<&'a Path>,
    pub tolerances: neurogen_train::parity::Tolerances,
    pub quiet: bool,
}

/// Parity found backends that disagree (exit code 1, after the report is written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ParityFailed(String);

pub(crate) fn parity(a: &ParityArgs) -> Result<()> {
    let exp = neurogen_train::Experiment::load(a.config, a.set)?;
    let bs = backends(a.backends, "--backends")?;
    if bs.len() < 2 {
        bail!(UsageError(
            "--backends: name at least two backends to compare, e.g. ndarray,flex".into()
        ));
    }
    if a.steps == 0 {
        bail!(UsageError("--steps: must be at least 1".into()));
    }
    let data = exp.build_data(a.config)?.into_dataset();
    exp.check_against(a.config, data.train.n)?;
    let devices: Vec<_> = bs
        .iter()
        .map(|b| (b.name().to_string(), device_for(*b)))
        .collect();
    // Test hook: weights loaded on this backend are nudged, so the check must fail.
    let perturb = std::env::var("NEUROGEN_FAULT_PERTURB_BACKEND").ok();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    if !a.quiet {
        eprintln!(
            "parity of {} ({}) on {} over {} steps …",
            a.config.display(),
            exp.model.kind(),
            bs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "),
            a.steps
        );
    }
    let report = neurogen_train::parity::parity(
        &exp,
        &data,
        &devices,
        a.steps,
        a.tolerances,
        dir.path(),
        perturb.as_deref(),
    )?;
    let text = serde_json::to_string_pretty(&report)?;
    match a.out {
        Some(p) => neurogen_data::npy::write_atomic(p, format!("{text}\n").as_bytes())?,
        None => println!("{text}"),
    }
    let mut bad = Vec::new();
    for b in &report.backends {
        let worst = b
            .grads
            .iter()
            .max_by(|x, y| x.diff.max_rel.total_cmp(&y.diff.max_rel));
        let loss = b.loss.iter().map(|l| l.diff.max_rel).fold(0.0, f64::max);
        if !a.quiet {
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
