//! The subcommands.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use neurogen_data::files::{write_signals, OutputFormat};
use neurogen_data::{npy, DataError, SignalKind};
use neurogen_train::{
    load_run, sample_signals, score_signals, train_experiment, Backend, ConfigError, Experiment,
    FitOptions, RunDir, TrainError, Verbosity,
};
use serde_json::json;

use crate::{device_for, EXIT_USAGE};

/// Train deep generative models of neural signals and sample synthetic data from them.
#[derive(Debug, Parser)]
#[command(name = "neurogen", version, about)]
pub struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors: no progress, no summaries.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train the model an experiment file describes.
    Train {
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
    },
    /// Sample synthetic windows from a trained run.
    Sample {
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
        /// Condition to generate, by name, for conditional models (one of the run's labels).
        #[arg(long)]
        label: Option<String>,
    },
    /// Write every window an experiment's [data] builds, in physical units.
    Data {
        /// The experiment (TOML).
        config: PathBuf,
        /// Output file (.npy, .npz, .edf, .bdf or .csv); default <name>-data.npy.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Override any key, as for train.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Score windows by their likelihood under a trained run (low = anomalous).
    ///
    /// RealNVP gives the exact log-likelihood; the VAE and the latent ODE give the IWAE bound
    /// with K samples (and the ELBO). Scores are in nats in the run's normalised units.
    Score {
        /// The run directory.
        run_dir: PathBuf,
        /// Windows to score: an .npy of [n, channels, time] in physical units, or an
        /// experiment .toml whose [data] is built and scored whole.
        data: PathBuf,
        /// Output CSV; default RUN_DIR/scores.csv.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Importance samples for the IWAE bound.
        #[arg(short = 'k', default_value_t = 64)]
        k: usize,
        /// Seed of the importance samples (and of the dequantisation of counts).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Backend, overriding the run's.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Judge samples against real data: spectra, amplitudes, spike statistics, two-sample
    /// tests, likelihood, memorisation and latent recovery; writes report.json and figures.
    ///
    /// With a RUN_DIR, samples are drawn from the run (or read from --samples) and compared
    /// with its test split (or --against FILE). Without one, compares two .npy files of
    /// windows [n, channels, time]: --samples A.npy --against B.npy --sfreq HZ.
    Eval {
        /// The run directory (optional when comparing two files).
        run_dir: Option<PathBuf>,
        /// Samples to judge (.npy [n, channels, time]); default: drawn from the run.
        #[arg(long)]
        samples: Option<PathBuf>,
        /// Reference: `test` (the run's test split) or an .npy of windows.
        #[arg(long, value_name = "test|FILE")]
        against: Option<String>,
        /// Windows to draw from the run.
        #[arg(short = 'n', default_value_t = 256)]
        n: usize,
        /// Output directory; default RUN_DIR/eval (./eval without a run).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Sampling rate in Hz of files without a sidecar .json.
        #[arg(long)]
        sfreq: Option<f64>,
        /// What the files hold (default: from the sidecar .json, else continuous).
        #[arg(long, value_enum)]
        kind: Option<crate::eval::KindArg>,
        /// Importance samples for the IWAE bound.
        #[arg(short = 'k', default_value_t = 64)]
        k: usize,
        /// Seed of the samples, permutations, projections and folds.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Backend, overriding the run's.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Draw figures of a run (traces or rasters, PSD, loss curves, latents) or of an .npy file.
    Plot {
        /// A run directory or an .npy of windows [n, channels, time].
        target: PathBuf,
        /// Which figure.
        #[arg(long, value_enum, default_value = "all")]
        figure: crate::eval::FigureArg,
        /// Output directory; default RUN_DIR/figures or FILE-figures beside the file.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Windows to draw from a run for traces and spectra.
        #[arg(short = 'n', default_value_t = 64)]
        n: usize,
        /// Seed of the drawn windows.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sampling rate in Hz of a file without a sidecar .json.
        #[arg(long)]
        sfreq: Option<f64>,
        /// What the file holds (default: from the sidecar .json, else continuous).
        #[arg(long, value_enum)]
        kind: Option<crate::eval::KindArg>,
        /// Backend, overriding the run's.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// Time the reference workloads (../shared/bench/WORKLOADS.md) on each backend: one JSON
    /// line per workload and backend, then a table.
    ///
    /// Each row runs in its own process (so its peak RSS is its own): 10 warm-up steps, then
    /// the median rate of 5 repeats of 50 steps. The models are the shipped configs under
    /// configs/bench/, trained exactly as `neurogen train` trains them.
    Bench {
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
    },
    /// Check that backends agree: the same initial weights, batches and noise on each, then the
    /// loss and every parameter's gradient after one step and the loss curve after K steps,
    /// against tolerances; a JSON report.
    Parity {
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
    },
    /// Show a run's resolved experiment, newest checkpoint and last metrics.
    Inspect {
        /// The run directory.
        run_dir: PathBuf,
    },
}

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

pub(crate) fn dispatch(cli: &Cli) -> Result<()> {
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else {
        Verbosity::Normal
    };
    match &cli.command {
        Command::Train {
            config,
            out,
            backend,
            set,
            resume,
        } => train(config, out.as_deref(), *backend, set, *resume, verbosity),
        Command::Sample {
            run_dir,
            n,
            seed,
            out,
            backend,
            label,
        } => sample(
            run_dir,
            *n,
            *seed,
            out.as_deref(),
            *backend,
            label.as_deref(),
            cli.quiet,
        ),
        Command::Data { config, out, set } => data(config, out.as_deref(), set, cli.quiet),
        Command::Score {
            run_dir,
            data,
            out,
            k,
            seed,
            backend,
        } => score(
            run_dir,
            data,
            out.as_deref(),
            *k,
            *seed,
            *backend,
            cli.quiet,
        ),
        Command::Eval {
            run_dir,
            samples,
            against,
            n,
            out,
            sfreq,
            kind,
            k,
            seed,
            backend,
        } => crate::eval::eval(&crate::eval::EvalArgs {
            run_dir: run_dir.as_deref(),
            samples: samples.as_deref(),
            against: against.as_deref(),
            n: *n,
            out: out.as_deref(),
            file: crate::eval::FileMeta {
                sfreq: *sfreq,
                kind: *kind,
            },
            k: *k,
            seed: *seed,
            backend: *backend,
            quiet: cli.quiet,
        }),
        Command::Plot {
            target,
            figure,
            out,
            n,
            seed,
            sfreq,
            kind,
            backend,
        } => crate::eval::plot_cmd(&crate::eval::PlotArgs {
            target,
            figure: *figure,
            out: out.as_deref(),
            n: *n,
            seed: *seed,
            file: crate::eval::FileMeta {
                sfreq: *sfreq,
                kind: *kind,
            },
            backend: *backend,
            quiet: cli.quiet,
        }),
        Command::Bench {
            workload,
            backend,
            threads,
            out,
            warmup,
            steps,
            repeats,
            child,
        } => crate::bench::bench(&crate::bench::BenchArgs {
            workloads: workload,
            backends: backend,
            threads: *threads,
            out: out.as_deref(),
            warmup: *warmup,
            steps: *steps,
            repeats: *repeats,
            child: *child,
            quiet: cli.quiet,
        }),
        Command::Parity {
            config,
            backends,
            steps,
            set,
            out,
            tol_loss,
            tol_grad,
            tol_curve,
        } => crate::bench::parity(&crate::bench::ParityArgs {
            config,
            backends,
            steps: *steps,
            set,
            out: out.as_deref(),
            tolerances: neurogen_train::parity::Tolerances {
                loss: *tol_loss,
                grad: *tol_grad,
                curve: *tol_curve,
            },
            quiet: cli.quiet,
        }),
        Command::Inspect { run_dir } => inspect(run_dir),
    }
}

fn train(
    config: &Path,
    out: Option<&Path>,
    backend: Option<BackendArg>,
    set: &[String],
    resume: bool,
    verbosity: Verbosity,
) -> Result<()> {
    let mut exp = Experiment::load(config, set)?;
    if let Some(b) = backend {
        exp.backend = b.into();
    }
    let run = RunDir::new(
        out.map(Path::to_path_buf)
            .unwrap_or_else(|| Path::new("runs").join(&exp.name)),
    );
    tracing::info!(run = %run.root().display(), backend = exp.backend.name(), "training");
    let device = device_for(exp.backend);
    let report = train_experiment(
        &exp,
        config,
        &run,
        &device,
        FitOptions { resume, verbosity },
    )?;
    if verbosity != Verbosity::Quiet {
        let mut valid = report
            .valid_loss
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "n/a".into());
        // Figures a user looks for beside the loss: bits/dim (flows), forecast error (latent
        // ODE in extrapolation mode), sample quality (GAN).
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
    }
    Ok(())
}

/// `x.npy` → `x.json`.
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}"))
}

/// Refuses `--label` unless the run's model can generate a chosen condition.
fn check_label(run_dir: &Path, loaded: &neurogen_train::LoadedRun, label: &str) -> Result<()> {
    let names = &loaded.info.meta.label_names;
    if names.is_empty() {
        bail!(UsageError(format!(
            "--label {label}: {} was trained on unlabelled data; labels come from epochs, an NPZ `labels` array or a CSV condition column",
            run_dir.display()
        )));
    }
    if !names.iter().any(|n| n == label) {
        bail!(UsageError(format!(
            "--label {label}: not a label of {}; its labels are {}",
            run_dir.display(),
            names.join(", ")
        )));
    }
    // Every family in this version models p(x), not p(x | label).
    bail!(UsageError(format!(
        "--label {label}: the {} model of {} is unconditional and cannot generate one condition; sample without --label",
        loaded.exp.model.kind(),
        run_dir.display()
    )))
}

#[allow(clippy::too_many_arguments)]
fn sample(
    run_dir: &Path,
    n: usize,
    seed: u64,
    out: Option<&Path>,
    backend: Option<BackendArg>,
    label: Option<&str>,
    quiet: bool,
) -> Result<()> {
    if n == 0 {
        bail!(UsageError("-n: must be at least 1".into()));
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("samples.npy"));
    OutputFormat::of(&out)?;
    let (device, loaded) = open_run(run_dir, backend)?;
    if let Some(label) = label {
        check_label(run_dir, &loaded, label)?;
    }
    let s = sample_signals(&loaded, n, seed, &device)?;
    let shape = [s.n, s.meta.channels, s.meta.time];
    write_signals(&out, &s)?;
    let meta = json!({
        "shape": shape,
        "sfreq": s.meta.sfreq,
        "channel_names": s.meta.channel_names,
        "kind": s.meta.kind,
        "unit": s.meta.unit,
        "model": loaded.exp.model.kind(),
        "checkpoint_step": loaded.checkpoint.step,
        "seed": seed,
        "run_dir": run_dir.display().to_string(),
    });
    let meta_path = sidecar(&out, ".json");
    npy::write_atomic(&meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    if !quiet {
        let stats = neurogen_eval::channel_stats(&s.values, s.meta.channels, s.meta.time);
        let mean = stats.iter().map(|c| c.mean).sum::<f64>() / stats.len() as f64;
        let sd = stats.iter().map(|c| c.std).sum::<f64>() / stats.len() as f64;
        let data_mean =
            loaded.info.norm.mean.iter().map(|&m| m as f64).sum::<f64>() / stats.len() as f64;
        let data_sd =
            loaded.info.norm.std.iter().map(|&m| m as f64).sum::<f64>() / stats.len() as f64;
        let unit = if s.meta.kind == SignalKind::Counts {
            "count/bin"
        } else {
            s.meta.unit.as_str()
        };
        if s.meta.kind == SignalKind::Continuous {
            println!("samples: channel mean {mean:.3} {unit}, sd {sd:.3} {unit} (training data: mean {data_mean:.3}, sd {data_sd:.3})");
        } else {
            println!(
                "samples: mean {mean:.3} {unit} ({:.2} Hz)",
                mean * s.meta.sfreq
            );
        }
        println!(
            "wrote {} windows [{} × {} × {}] ({}) to {} and {}",
            s.n,
            s.n,
            s.meta.channels,
            s.meta.time,
            if s.meta.kind == SignalKind::Counts {
                "counts"
            } else {
                s.meta.unit.as_str()
            },
            out.display(),
            meta_path.display()
        );
    }
    Ok(())
}

fn data(config: &Path, out: Option<&Path>, set: &[String], quiet: bool) -> Result<()> {
    let exp = Experiment::load(config, set)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("{}-data.npy", exp.name)));
    OutputFormat::of(&out)?;
    let windows = exp.build_data(config)?;
    let s = &windows.signals;
    write_signals(&out, s)?;
    let mut meta = json!({
        "shape": [s.n, s.meta.channels, s.meta.time],
        "sfreq": s.meta.sfreq,
        "channel_names": s.meta.channel_names,
        "kind": s.meta.kind,
        "unit": s.meta.unit,
        "windows": windows.info,
    });
    if !s.meta.label_names.is_empty() {
        meta["label_names"] = json!(s.meta.label_names);
        meta["labels"] = json!(s.labels);
    }
    if let Some((lat, dim)) = &s.latents {
        let lat_path = sidecar(&out, "_latents.npy");
        npy::write_f32(&lat_path, &[s.n, *dim, s.meta.time], lat)?;
        meta["latents"] = json!({ "file": lat_path.file_name().map(|f| f.to_string_lossy().into_owned()), "shape": [s.n, dim, s.meta.time] });
    }
    let meta_path = sidecar(&out, ".json");
    npy::write_atomic(&meta_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    if !quiet {
        println!(
            "wrote {} windows [{} × {} × {}] to {} and {}",
            s.n,
            s.n,
            s.meta.channels,
            s.meta.time,
            out.display(),
            meta_path.display()
        );
    }
    Ok(())
}

/// Loads a run's newest checkpoint onto `backend`, or the backend it was trained on.
pub(crate) fn open_run(
    run_dir: &Path,
    backend: Option<BackendArg>,
) -> Result<(burn::tensor::Device, neurogen_train::LoadedRun)> {
    let run = RunDir::new(run_dir);
    let exp = run.read_experiment()?;
    let device = device_for(backend.map(Backend::from).unwrap_or(exp.backend));
    let loaded = load_run(&run, &device)?;
    Ok((device, loaded))
}

#[allow(clippy::too_many_arguments)]
fn score(
    run_dir: &Path,
    data: &Path,
    out: Option<&Path>,
    k: usize,
    seed: u64,
    backend: Option<BackendArg>,
    quiet: bool,
) -> Result<()> {
    if k == 0 {
        bail!(UsageError("-k: must be at least 1".into()));
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("scores.csv"));
    let (device, loaded) = open_run(run_dir, backend)?;
    if matches!(loaded.model, neurogen_train::Model::Gan(_)) {
        bail!(UsageError(format!(
            "{}: a gan run has no likelihood to score with; score works for vae, realnvp and latent_ode runs",
            run_dir.display()
        )));
    }
    let ext = data.extension().and_then(|e| e.to_str()).unwrap_or("");
    let windows = if ext.eq_ignore_ascii_case("toml") {
        let e = Experiment::load(data, &[])?;
        e.build_data(data)?.signals
    } else if let Some(cfg) = loaded.exp.data.for_recording(data) {
        // A recording of the run's own format, cut as the run's data were.
        cfg.build(loaded.exp.seed)?.signals
    } else if ext.eq_ignore_ascii_case("npy") {
        crate::eval::read_windows(data, Some(&loaded.info.meta), Default::default())?
    } else {
        bail!(UsageError(format!(
            "{}: DATA must be an .npy of windows, an experiment .toml, or a recording in the run's own format ({})",
            data.display(),
            loaded.exp.data.source.name()
        )));
    };
    let scores = score_signals(&loaded, &windows, k, seed, &device)
        .map_err(|e| anyhow::Error::new(e).context(data.display().to_string()))?;
    let bits = |ll: f64| -ll / (scores.dim as f64 * std::f64::consts::LN_2);
    let mut csv = String::from("window,bound,log_likelihood,bits_per_dim");
    csv.push_str(if scores.elbo.is_some() {
        ",elbo\n"
    } else {
        "\n"
    });
    for (i, ll) in scores.log_likelihood.iter().enumerate() {
        csv.push_str(&format!("{i},{},{ll},{}", scores.bound, bits(*ll)));
        match &scores.elbo {
            Some(e) => csv.push_str(&format!(",{}\n", e[i])),
            None => csv.push('\n'),
        }
    }
    npy::write_atomic(&out, csv.as_bytes())?;
    if !quiet {
        let mut sorted = scores.log_likelihood.clone();
        sorted.sort_by(f64::total_cmp);
        let med = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "scored {} windows ({}, nats in the run's normalised units): median {med:.2}, lowest {:.2}; wrote {}",
            sorted.len(),
            scores.bound,
            sorted.first().copied().unwrap_or(f64::NAN),
            out.display()
        );
    }
    Ok(())
}

fn inspect(run_dir: &Path) -> Result<()> {
    let run = RunDir::new(run_dir);
    let exp = run.read_experiment()?;
    println!("# run {}\n", run_dir.display());
    println!("{}", exp.to_toml().map_err(anyhow::Error::msg)?);
    match run.latest_checkpoint()? {
        Some(c) => println!("newest checkpoint: step {} ({})", c.step, c.dir.display()),
        None => println!("newest checkpoint: none"),
    }
    for split in ["train", "valid"] {
        if let Some(line) = run.last_metrics(Some(split), 1)?.pop() {
            println!("last {split} metrics: {line}");
        }
    }
    Ok(())
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
