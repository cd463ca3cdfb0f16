//! `neurogen sample`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::samples::{sidecar, sidecar_path, write_sidecar};
use neurogen_data::write::{write_signals, OutputFormat};
use neurogen_data::SignalKind;
use neurogen_train::evaluate::run_splits;
use neurogen_train::{
    cycled_inputs, sample_driven, sample_recordings, sample_signals, LoadedRun, RunDir,
};
use serde_json::json;

use crate::common::{open_run, BackendArg, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run directory.
    run_dir: PathBuf,
    /// Number of windows [default: 100, or one per stimulus of a 3-D --inputs file].
    #[arg(short = 'n')]
    n: Option<usize>,
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
    /// Load the run's best validated checkpoint (`train.keep_best`) instead of its newest.
    #[arg(long)]
    best: bool,
    /// Steps an autoregressive run draws before each window and drops, instead of its
    /// `model.burn_in` (sampling only; other families refuse it).
    #[arg(long, value_name = "STEPS")]
    burn_in: Option<usize>,
    /// Condition to generate, by name (one of a conditional run's labels); repeat it to split
    /// the windows equally over several (`--label a --label b`), or `--label all` for every
    /// label. Default for a conditional run: the training split's proportions.
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,
    /// Autoregressive runs: generate recordings of this many samples (longer than the training
    /// window, continued step by step without seams) instead of windows.
    #[arg(long, value_name = "N")]
    length: Option<usize>,
    /// Runs driven by exogenous inputs (`[data] inputs`): simulate the response to these
    /// inputs, an .npy in physical units of shape [inputs, samples] (one stimulus for every
    /// window) or [n, inputs, samples] (one window per stimulus); any number of samples.
    /// Default for a driven run: the inputs of the held-out test windows, in turn.
    #[arg(long, value_name = "FILE.npy")]
    inputs: Option<PathBuf>,
}

/// The inputs a driven run's windows respond to: `[n, inputs, length]` physical values, `n`
/// and `length`.
struct Stimulus {
    values: Vec<f32>,
    n: usize,
    length: usize,
    source: String,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.n == Some(0) {
        bail!(UsageError("-n: must be at least 1".into()));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.run_dir.join("samples.npy"));
    OutputFormat::of(&out)?;
    let (device, loaded) = open_run(&a.run_dir, a.backend, a.best, a.burn_in)?;
    let stimulus = stimulus(a, &loaded)?;
    let n = match &stimulus {
        Some(s) => s.n,
        None => a.n.unwrap_or(100),
    };
    let labels = if a.label.is_empty() {
        loaded.default_labels(n)
    } else {
        Some(chosen_labels(&a.run_dir, &loaded, &a.label, n)?)
    };
    let start = std::time::Instant::now();
    let s = match (&stimulus, a.length) {
        (Some(u), _) => {
            if !quiet {
                eprintln!("driving the model with {}", u.source);
            }
            sample_driven(
                &loaded,
                &u.values,
                n,
                u.length,
                a.seed,
                labels.as_deref(),
                &device,
            )
            .with_context(|| a.run_dir.display().to_string())?
        }
        (None, Some(length)) => {
            sample_recordings(&loaded, n, length, a.seed, labels.as_deref(), &device)
                .with_context(|| a.run_dir.display().to_string())?
        }
        (None, None) => sample_signals(&loaded, n, a.seed, labels.as_deref(), &device)?,
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
    if let Some(u) = &stimulus {
        meta.insert("inputs_from".into(), json!(u.source));
    } else if let Some(n) = loaded.burn_in() {
        meta.insert("burn_in".into(), json!(n));
    }
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
    if s.inputs.is_some() {
        println!(
            "wrote their inputs ({}) to {}",
            s.meta.input_names.join(", "),
            sidecar_path(&out, "_inputs.npy").display()
        );
    }
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

/// The stimulus of a driven run: `--inputs`, or the held-out test windows' inputs; `None`
/// for a run without inputs (which refuses `--inputs`).
fn stimulus(a: &Args, loaded: &LoadedRun) -> Result<Option<Stimulus>> {
    let names = &loaded.info.meta.input_names;
    let k = names.len();
    let Some(path) = &a.inputs else {
        if k == 0 {
            return Ok(None);
        }
        if a.length.is_some() {
            bail!(UsageError(format!(
                "--length: the responses of a run driven by inputs ({}) are as long as their inputs; give --inputs FILE.npy with as many samples",
                names.join(", ")
            )));
        }
        let test = run_splits(&RunDir::new(&a.run_dir), loaded)?.test;
        let (Some(_), true) = (&test.inputs, test.n > 0) else {
            bail!(
                "{}: the run is driven by inputs ({}), but its held-out split has none to drive it with; give --inputs FILE.npy",
                a.run_dir.display(),
                names.join(", ")
            );
        };
        let n = a.n.unwrap_or(100);
        let values = cycled_inputs(&test, n).unwrap_or_default();
        return Ok(Some(Stimulus {
            values,
            n,
            length: test.meta.time,
            source: format!(
                "the inputs ({}) of the {} held-out test windows, in turn (--inputs to choose)",
                names.join(", "),
                test.n
            ),
        }));
    };
    if k == 0 {
        bail!(UsageError(format!(
            "--inputs {}: the `{}` run {} was trained without exogenous inputs (`[data] inputs`)",
            path.display(),
            loaded.exp.model.kind(),
            a.run_dir.display()
        )));
    }
    let (shape, values) = neurogen_data::npy::read_f32(path)?;
    let (n, length) = match shape[..] {
        [c, t] if c == k && t > 0 => {
            let n = a.n.unwrap_or(100);
            (n, t)
        }
        [m, c, t] if c == k && t > 0 && m > 0 => {
            if let Some(n) = a.n.filter(|&n| n != m) {
                bail!(UsageError(format!(
                    "-n {n}: {} holds {m} stimuli, one window each; drop -n or give -n {m}",
                    path.display()
                )));
            }
            (m, t)
        }
        _ => bail!(UsageError(format!(
            "--inputs {}: shape {shape:?}; the run is driven by {k} input(s) ({}), so expected [{k}, samples] or [n, {k}, samples]",
            path.display(),
            names.join(", ")
        ))),
    };
    if let Some(l) = a.length.filter(|&l| l != length) {
        bail!(UsageError(format!(
            "--length {l}: the inputs of {} are {length} samples long, and the responses are as long as their inputs",
            path.display()
        )));
    }
    let values = if shape.len() == 2 {
        values.repeat(n)
    } else {
        values
    };
    Ok(Some(Stimulus {
        values,
        n,
        length,
        source: format!("the {} input(s) of {}", k, path.display()),
    }))
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
