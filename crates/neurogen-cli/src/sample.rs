//! `neurogen sample`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::samples::{sidecar, write_sidecar};
use neurogen_data::write::{write_signals, OutputFormat};
use neurogen_data::SignalKind;
use neurogen_train::{sample_recordings, sample_signals, LoadedRun};
use serde_json::json;

use crate::common::{open_run, BackendArg, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run directory.
    run_dir: PathBuf,
    /// Number of windows.
    #[arg(short = 'n', default_value_t = 100)]
    n: usize,
    /// Seed of the latents and observation noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file; its extension picks the format: .npy, .npz, .edf, .bdf or .csv.
    /// Default RUN_DIR/samples.npy.
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Backend, overriding the run's.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Condition to generate, by name (one of a conditional run's labels); repeat it to split
    /// the windows equally over several (`--label a --label b`), or `--label all` for every
    /// label. Default for a conditional run: the training split's proportions.
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,
    /// Autoregressive runs: generate recordings of this many samples (longer than the training
    /// window, continued step by step without seams) instead of windows.
    #[arg(long, value_name = "N")]
    length: Option<usize>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.n == 0 {
        bail!(UsageError("-n: must be at least 1".into()));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.run_dir.join("samples.npy"));
    OutputFormat::of(&out)?;
    let (device, loaded) = open_run(&a.run_dir, a.backend)?;
    let labels = if a.label.is_empty() {
        loaded.default_labels(a.n)
    } else {
        Some(chosen_labels(&a.run_dir, &loaded, &a.label, a.n)?)
    };
    let start = std::time::Instant::now();
    let s = match a.length {
        Some(length) => sample_recordings(&loaded, a.n, length, a.seed, labels.as_deref(), &device)
            .with_context(|| a.run_dir.display().to_string())?,
        None => sample_signals(&loaded, a.n, a.seed, labels.as_deref(), &device)?,
    };
    let seconds = start.elapsed().as_secs_f64();
    write_signals(&out, &s)?;
    let mut meta = sidecar(&s);
    meta.extend([
        ("model".to_string(), json!(loaded.exp.model.kind())),
        ("checkpoint_step".into(), json!(loaded.checkpoint.step)),
        ("seed".into(), json!(a.seed)),
        ("run_dir".into(), json!(a.run_dir.display().to_string())),
    ]);
    let meta_path = write_sidecar(&out, &meta)?;
    if quiet {
        return Ok(());
    }
    let stats = neurogen_eval::channel_stats(&s.values, s.meta.channels, s.meta.time);
    let mean = stats.iter().map(|c| c.mean).sum::<f64>() / stats.len() as f64;
    let sd = stats.iter().map(|c| c.std).sum::<f64>() / stats.len() as f64;
    let norm = &loaded.info.norm;
    let data_mean = norm.mean.iter().map(|&m| m as f64).sum::<f64>() / stats.len() as f64;
    let data_sd = norm.std.iter().map(|&m| m as f64).sum::<f64>() / stats.len() as f64;
    let counts = s.meta.kind == SignalKind::Counts;
    if counts {
        println!(
            "samples: mean {mean:.3} count/bin ({:.2} Hz)",
            mean * s.meta.sfreq
        );
    } else {
        let unit = &s.meta.unit;
        println!("samples: channel mean {mean:.3} {unit}, sd {sd:.3} {unit} (training data: mean {data_mean:.3}, sd {data_sd:.3})");
    }
    println!(
        "generated {} {} in {seconds:.2} s ({:.1} windows/s)",
        s.n,
        if a.length.is_some() {
            "recordings"
        } else {
            "windows"
        },
        s.n as f64 / seconds.max(1e-9)
    );
    println!(
        "wrote {} windows [{} × {} × {}] ({}) to {} and {}",
        s.n,
        s.n,
        s.meta.channels,
        s.meta.time,
        if counts {
            "counts"
        } else {
            s.meta.unit.as_str()
        },
        out.display(),
        meta_path.display()
    );
    Ok(())
}

/// The label of each of `n` windows for `--label` names (`all`: every label), in equal blocks
/// in the order named; refused unless the run's model generates chosen conditions.
fn chosen_labels(
    run_dir: &Path,
    loaded: &LoadedRun,
    asked: &[String],
    n: usize,
) -> Result<Vec<u32>> {
    let names = &loaded.info.meta.label_names;
    let first = &asked[0];
    if names.is_empty() {
        bail!(UsageError(format!(
            "--label {first}: {} was trained on unlabelled data; labels come from epochs, an NPZ `labels` array, a CSV condition column or a simulator's n_conditions",
            run_dir.display()
        )));
    }
    let wanted: Vec<&String> = if asked.iter().any(|l| l == "all") {
        names.iter().collect()
    } else {
        asked.iter().collect()
    };
    let mut idx = Vec::with_capacity(wanted.len());
    for w in &wanted {
        match names.iter().position(|n| n == *w) {
            Some(i) => idx.push(i as u32),
            None => bail!(UsageError(format!(
                "--label {w}: not a label of {}; its labels are {} (or all)",
                run_dir.display(),
                names.join(", ")
            ))),
        }
    }
    if loaded.label_names().is_empty() {
        bail!(UsageError(format!(
            "--label {first}: the {} model of {} is unconditional and cannot generate one condition; sample without --label, or train with `[model] conditional = true`",
            loaded.exp.model.kind(),
            run_dir.display()
        )));
    }
    if !n.is_multiple_of(idx.len()) {
        bail!(UsageError(format!(
            "-n {n}: cannot be split equally over the {} labels asked for ({}); use a multiple of {}",
            idx.len(),
            wanted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            idx.len()
        )));
    }
    let each = n / idx.len();
    Ok(idx
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, each))
        .collect())
}
