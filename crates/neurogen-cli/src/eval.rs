//! `neurogen eval` and `neurogen plot`.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::{npy, SignalKind, SignalMeta, Signals};
use neurogen_eval::plot::{self, Colouring, Series};
use neurogen_eval::{EvalOptions, Report, Spectra, View};
use neurogen_train::evaluate::{
    add_likelihood, infer_latents, latent_r2, run_splits, Latents, RunSplits,
};
use neurogen_train::{sample_signals, LoadedRun, Model, RunDir};
use serde_json::json;

use crate::commands::{open_run, sidecar, BackendArg, UsageError};

/// What `--kind` says the numbers in a file are.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum KindArg {
    Continuous,
    Counts,
}

/// Which figure `neurogen plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FigureArg {
    All,
    Traces,
    Raster,
    Psd,
    Loss,
    Latents,
}

/// How a window file's shape and meaning are known when it is not a run's own data.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FileMeta {
    pub sfreq: Option<f64>,
    pub kind: Option<KindArg>,
}

/// Reads `[n, channels, time]` windows (or one `[channels, time]` window) from an `.npy`.
///
/// Rate, kind, channel names and unit come from, in order: `--sfreq`/`--kind`, the `.json`
/// sidecar `neurogen sample`/`data` write beside the file, then `fallback` (the run's data).
pub(crate) fn read_windows(
    path: &Path,
    fallback: Option<&SignalMeta>,
    flags: FileMeta,
) -> Result<Signals> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !ext.eq_ignore_ascii_case("npy") {
        bail!(UsageError(format!(
            "{}: expected an .npy of windows [n, channels, time]",
            path.display()
        )));
    }
    let (shape, values) = npy::read_f32(path)?;
    let [n, channels, time] = match shape[..] {
        [n, c, t] => [n, c, t],
        [c, t] => [1, c, t],
        _ => bail!(UsageError(format!(
            "{}: shape {shape:?}: expected windows [n, channels, time]",
            path.display()
        ))),
    };
    if n == 0 || channels == 0 || time == 0 {
        bail!(UsageError(format!(
            "{}: shape {shape:?} holds no values",
            path.display()
        )));
    }
    neurogen_data::files::check_finite(path, &values)?;
    if let Some(f) = flags.sfreq.filter(|f| !(*f > 0.0 && f.is_finite())) {
        bail!(UsageError(format!(
            "--sfreq {f}: must be a positive number of Hz"
        )));
    }
    let side = sidecar(path, ".json");
    let side: Option<serde_json::Value> = match std::fs::read_to_string(&side) {
        Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
            UsageError(format!(
                "{}: not the JSON sidecar of {}: {e}",
                side.display(),
                path.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!(UsageError(format!("{}: {e}", side.display()))),
    };
    let from_side = |key: &str| side.as_ref().and_then(|s| s.get(key));
    let sfreq = flags
        .sfreq
        .or_else(|| from_side("sfreq").and_then(|v| v.as_f64()))
        .or(fallback.map(|m| m.sfreq));
    let Some(sfreq) = sfreq.filter(|f| *f > 0.0 && f.is_finite()) else {
        bail!(UsageError(format!(
            "{}: the sampling rate is unknown: pass --sfreq HZ (a positive number)",
            path.display()
        )));
    };
    let (kind, why) = match flags.kind {
        Some(KindArg::Continuous) => (SignalKind::Continuous, "--kind continuous"),
        Some(KindArg::Counts) => (SignalKind::Counts, "--kind counts"),
        None => match from_side("kind").and_then(|v| v.as_str()) {
            Some("counts") => (SignalKind::Counts, "its .json sidecar says so"),
            Some(_) => (SignalKind::Continuous, "its .json sidecar says so"),
            None => match fallback {
                Some(m) if m.kind == SignalKind::Counts => {
                    (SignalKind::Counts, "the run models spike counts")
                }
                _ => (SignalKind::Continuous, "the default"),
            },
        },
    };
    if kind == SignalKind::Counts && values.iter().any(|v| *v < 0.0 || v.fract() != 0.0) {
        bail!(UsageError(format!(
            "{}: the windows should be spike counts ({why}), but the file holds values that are not non-negative integers",
            path.display()
        )));
    }
    let channel_names = from_side("channel_names")
        .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
        .filter(|n| n.len() == channels)
        .or_else(|| {
            fallback
                .filter(|m| m.channels == channels)
                .map(|m| m.channel_names.clone())
        })
        .unwrap_or_else(|| (0..channels).map(|c| format!("ch{c}")).collect());
    let unit = from_side("unit")
        .and_then(|v| v.as_str().map(str::to_string))
        .or(fallback.map(|m| m.unit.clone()))
        .unwrap_or_else(|| {
            if kind == SignalKind::Counts {
                "count"
            } else {
                "a.u."
            }
            .into()
        });
    Ok(Signals {
        values,
        n,
        meta: SignalMeta {
            channels,
            time,
            sfreq,
            channel_names,
            kind,
            unit,
            label_names: vec![],
        },
        latents: None,
        labels: None,
    })
}

/// The arguments of `neurogen eval`.
#[derive(Debug)]
pub(crate) struct EvalArgs<'a> {
    pub run_dir: Option<&'a Path>,
    pub samples: Option<&'a Path>,
    pub against: Option<&'a str>,
    pub n: usize,
    pub out: Option<&'a Path>,
    pub file: FileMeta,
    pub k: usize,
    pub seed: u64,
    pub backend: Option<BackendArg>,
    pub quiet: bool,
}

/// A run opened for evaluation or plotting.
struct RunCtx {
    run: RunDir,
    loaded: LoadedRun,
    splits: RunSplits,
    device: burn::tensor::Device,
    /// The test windows' inferred latents, once asked for (latent R² and the latents figure
    /// both use them).
    test_latents: OnceCell<Option<Latents>>,
}

impl RunCtx {
    /// The encoder's latents of the test split (inferred on first use); `None` without one.
    fn test_latents(&self) -> Result<Option<&Latents>> {
        if self.test_latents.get().is_none() {
            let lat = infer_latents(&self.loaded, &self.splits.test, &self.device)?;
            let _ = self.test_latents.set(lat);
        }
        Ok(self.test_latents.get().and_then(Option::as_ref))
    }
}

fn open(run_dir: &Path, backend: Option<BackendArg>) -> Result<RunCtx> {
    let (device, loaded) = open_run(run_dir, backend)?;
    let run = RunDir::new(run_dir);
    let splits = run_splits(&run, &loaded)?;
    Ok(RunCtx {
        run,
        loaded,
        splits,
        device,
        test_latents: OnceCell::new(),
    })
}

fn status(quiet: bool, line: &str) {
    if !quiet {
        eprintln!("{line}");
    }
}

pub(crate) fn eval(a: &EvalArgs) -> Result<()> {
    if a.n < 2 {
        bail!(UsageError("-n: at least 2 samples are needed".into()));
    }
    if a.k == 0 {
        bail!(UsageError("-k: must be at least 1".into()));
    }
    match (a.run_dir, a.samples, a.against) {
        (None, None, _) => bail!(UsageError(
            "give a RUN_DIR, or --samples FILE.npy --against FILE.npy to compare two files".into()
        )),
        (None, _, None | Some("test")) => bail!(UsageError(
            "--against test needs a RUN_DIR; without one pass --against FILE.npy".into()
        )),
        _ => {}
    }
    let ctx = match a.run_dir {
        Some(dir) => Some(open(dir, a.backend)?),
        None => None,
    };
    let out_dir = match (a.out, a.run_dir) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(r)) => r.join("eval"),
        (None, None) => PathBuf::from("eval"),
    };
    let run_meta = ctx.as_ref().map(|c| &c.loaded.info.meta);
    // Samples: a file, or drawn from the run.
    let samples = match (a.samples, &ctx) {
        (Some(f), _) => read_windows(f, run_meta, a.file)?,
        (None, Some(c)) => {
            status(a.quiet, &format!("sampling {} windows from the run…", a.n));
            sample_signals(&c.loaded, a.n, a.seed, &c.device)?
        }
        (None, None) => unreachable!("refused above"),
    };
    // Reference: the run's test split, or a file.
    let against = a.against.unwrap_or("test");
    let reference = match (against, &ctx) {
        ("test", Some(c)) => {
            if c.splits.test.n < 2 {
                bail!(UsageError(format!(
                    "{}: the run's test split holds {} window(s); pass --against FILE.npy",
                    c.run.root().display(),
                    c.splits.test.n
                )));
            }
            c.splits.test.clone()
        }
        ("test", None) => unreachable!("refused above"),
        (file, _) => read_windows(Path::new(file), run_meta.or(Some(&samples.meta)), a.file)?,
    };
    if (samples.meta.sfreq - reference.meta.sfreq).abs() > 1e-9 * reference.meta.sfreq {
        bail!(UsageError(format!(
            "the samples are at {} Hz but the reference at {} Hz",
            samples.meta.sfreq, reference.meta.sfreq
        )));
    }
    if samples.meta.kind != reference.meta.kind {
        bail!(UsageError(format!(
            "the samples are {:?} but the reference is {:?}; pass --kind to say which",
            samples.meta.kind, reference.meta.kind
        )));
    }
    let opts = EvalOptions {
        seed: a.seed,
        ..EvalOptions::default()
    };
    status(a.quiet, "computing sample-quality metrics…");
    let mut report = neurogen_eval::compare(&samples, &reference, &opts)
        .map_err(|e| UsageError(e.to_string()))?;
    report.meta.insert(
        "samples".into(),
        json!(a.samples.map_or("drawn from the run".to_string(), |p| p
            .display()
            .to_string())),
    );
    report.meta.insert("reference".into(), json!(against));
    if let Some(c) = &ctx {
        run_metrics(&mut report, c, &samples, &reference, against == "test", a)?;
    }
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let ref_name = if ctx.is_some() && against == "test" {
        "test data"
    } else {
        "reference"
    };
    let figures = draw(
        &out_dir.join("figures"),
        FigureArg::All,
        &[(ref_name, &reference), ("samples", &samples)],
        ctx.as_ref(),
    )?;
    report.meta.insert(
        "figures".into(),
        json!(figures
            .iter()
            .filter_map(|p| p
                .file_name()
                .map(|f| format!("figures/{}", f.to_string_lossy())))
            .collect::<Vec<_>>()),
    );
    let path = out_dir.join("report.json");
    npy::write_atomic(
        &path,
        serde_json::to_string_pretty(&report.to_json())?.as_bytes(),
    )?;
    if !a.quiet {
        print_table(&report);
        println!(
            "wrote {} and {} figure(s) in {}",
            path.display(),
            figures.len(),
            out_dir.join("figures").display()
        );
    }
    Ok(())
}

/// The metrics that need the run: likelihood, memorisation and latent recovery.
fn run_metrics(
    report: &mut Report,
    c: &RunCtx,
    samples: &Signals,
    reference: &Signals,
    reference_is_test: bool,
    a: &EvalArgs,
) -> Result<()> {
    let meta = &c.loaded.info.meta;
    let l = &c.loaded;
    report
        .meta
        .insert("run_dir".into(), json!(c.run.root().display().to_string()));
    report
        .meta
        .insert("model".into(), json!(l.exp.model.kind()));
    report
        .meta
        .insert("checkpoint_step".into(), json!(l.checkpoint.step));
    let shaped = (reference.meta.channels, reference.meta.time) == (meta.channels, meta.time);
    if shaped && !matches!(l.model, Model::Gan(_)) {
        status(a.quiet, "scoring the reference under the model…");
        add_likelihood(
            report,
            l,
            reference,
            &c.splits.train,
            a.k,
            a.seed,
            &c.device,
        )?;
    }
    if c.splits.train.n > 0 && reference_is_test {
        let train = neurogen_eval::subsample(&c.splits.train, 2000, a.seed);
        let by = neurogen_eval::standardiser(&c.splits.train);
        let s = neurogen_eval::subsample(samples, 256, a.seed);
        let t = neurogen_eval::subsample(reference, 256, a.seed);
        report.set(
            "memorisation_ratio",
            neurogen_eval::memorisation_ratio(
                &neurogen_eval::standardised(&s, &by),
                &neurogen_eval::standardised(&train, &by),
                &neurogen_eval::standardised(&t, &by),
                samples.window_len(),
            ),
        );
    }
    let encodes = matches!(l.model, Model::Vae(_) | Model::LatentOde(_));
    if c.splits.train.latents.is_some() && reference_is_test && encodes {
        status(a.quiet, "fitting the latent map…");
        let train = neurogen_eval::subsample(&c.splits.train, 1000, a.seed);
        if let Some(score) = c.test_latents()? {
            if let Some(r2) = latent_r2(l, &train, &c.splits.test, score, &c.device)? {
                report.set("latent_r2", r2);
            }
        }
    }
    Ok(())
}

fn print_table(report: &Report) {
    println!("{:<28} {:>14}", "metric", "value");
    for (k, v) in &report.metrics {
        println!("{k:<28} {v:>14.6}");
    }
}

/// Draws `which` figures into `dir` from whatever is available; returns the files written.
/// Figures that do not apply are skipped under `All` and refused when asked for by name.
fn draw(
    dir: &Path,
    which: FigureArg,
    sets: &[(&str, &Signals)],
    ctx: Option<&RunCtx>,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let wants = |f: FigureArg| which == FigureArg::All || which == f;
    let kind = sets.first().map(|(_, s)| s.meta.kind);
    let refuse = |f: &str, why: &str| -> Result<()> {
        if which != FigureArg::All {
            bail!(UsageError(format!("--figure {f}: {why}")));
        }
        Ok(())
    };
    let mut out = |name: &str| -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let p = dir.join(name);
        written.push(p.clone());
        Ok(p)
    };
    if wants(FigureArg::Traces) {
        match kind {
            Some(SignalKind::Continuous) => plot::traces(&out("traces.png")?, sets, 8)?,
            _ => refuse(
                "traces",
                "draws continuous signals; spike counts have --figure raster",
            )?,
        }
    }
    if wants(FigureArg::Raster) {
        match kind {
            Some(SignalKind::Counts) => plot::raster(&out("raster.png")?, sets)?,
            _ => refuse(
                "raster",
                "draws spike counts; continuous signals have --figure traces",
            )?,
        }
    }
    if wants(FigureArg::Psd) {
        match kind {
            Some(SignalKind::Continuous) => {
                let spectra: Vec<(&str, Spectra)> = sets
                    .iter()
                    .map(|(n, s)| (*n, Spectra::of(&View::of(s), s.meta.sfreq)))
                    .collect();
                let refs: Vec<(&str, &Spectra)> = spectra.iter().map(|(n, s)| (*n, s)).collect();
                let unit = sets.first().map_or("", |(_, s)| s.meta.unit.as_str());
                plot::psd(&out("psd.png")?, &refs, unit, 60.0)?;
            }
            _ => refuse("psd", "draws continuous signals' spectra")?,
        }
    }
    if wants(FigureArg::Loss) {
        match ctx {
            Some(c) => {
                let series = loss_series(&c.run)?;
                if series.iter().all(|s| s.points.is_empty()) {
                    refuse("loss", "the run's metrics.jsonl holds no loss yet")?;
                } else {
                    plot::curves(&out("loss.png")?, "loss", "step", "loss", &series)?;
                }
            }
            None => refuse("loss", "needs a run directory")?,
        }
    }
    if wants(FigureArg::Latents) {
        match ctx {
            Some(c) => latents_figure(c, &mut out, &refuse)?,
            None => refuse("latents", "needs a run directory")?,
        }
    }
    Ok(written)
}

/// Train and valid `loss` against step from a run's `metrics.jsonl`.
fn loss_series(run: &RunDir) -> Result<Vec<Series>> {
    let path = run.metrics_file();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut train = Vec::new();
    let mut valid = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(step), Some(loss)) = (
            v.get("step").and_then(|s| s.as_f64()),
            v.get("loss").and_then(|s| s.as_f64()),
        ) else {
            continue;
        };
        match v.get("split").and_then(|s| s.as_str()) {
            Some("valid") => valid.push((step, loss)),
            _ => train.push((step, loss)),
        }
    }
    Ok(vec![
        Series {
            name: "train".into(),
            points: train,
        },
        Series {
            name: "valid".into(),
            points: valid,
        },
    ])
}

fn latents_figure(
    c: &RunCtx,
    out: &mut dyn FnMut(&str) -> Result<PathBuf>,
    refuse: &dyn Fn(&str, &str) -> Result<()>,
) -> Result<()> {
    let test = &c.splits.test;
    if test.n < 3 {
        return refuse("latents", "the run's test split holds fewer than 3 windows");
    }
    let Some(lat) = c.test_latents()? else {
        return refuse(
            "latents",
            "only vae and latent_ode runs have an encoder whose latents can be drawn",
        );
    };
    let points = plot::pca2(&lat.codes, lat.dim);
    // Labels when there are any; else a simulator's first true latent at the window's first
    // step (does the latent space follow the true state?); else where the window starts.
    let colour = match (
        &test.labels,
        test.meta.label_names.is_empty(),
        &test.latents,
    ) {
        (Some(index), false, _) => Colouring::Labels {
            index: index.clone(),
            names: test.meta.label_names.clone(),
        },
        (_, _, Some((lat, l))) => Colouring::Value {
            values: (0..test.n)
                .map(|i| lat[i * l * test.meta.time] as f64)
                .collect(),
            name: "true latent 1 at t = 0".into(),
        },
        _ => Colouring::Value {
            values: c.splits.test_start_s.clone(),
            name: "window start (s)".into(),
        },
    };
    let title = format!(
        "{} posterior means, test windows",
        c.loaded.exp.model.kind()
    );
    plot::scatter(&out("latents.png")?, &title, &points, &colour)?;
    Ok(())
}

/// The arguments of `neurogen plot`.
#[derive(Debug)]
pub(crate) struct PlotArgs<'a> {
    pub target: &'a Path,
    pub figure: FigureArg,
    pub out: Option<&'a Path>,
    pub n: usize,
    pub seed: u64,
    pub file: FileMeta,
    pub backend: Option<BackendArg>,
    pub quiet: bool,
}

pub(crate) fn plot_cmd(a: &PlotArgs) -> Result<()> {
    let written = if a.target.is_dir() {
        let ctx = open(a.target, a.backend)?;
        let dir = a
            .out
            .map_or_else(|| a.target.join("figures"), Path::to_path_buf);
        let needs_samples = matches!(
            a.figure,
            FigureArg::All | FigureArg::Traces | FigureArg::Raster | FigureArg::Psd
        );
        let samples = if needs_samples {
            Some(sample_signals(
                &ctx.loaded,
                a.n.max(1),
                a.seed,
                &ctx.device,
            )?)
        } else {
            None
        };
        let mut sets: Vec<(&str, &Signals)> = Vec::new();
        if ctx.splits.test.n > 0 {
            sets.push(("test data", &ctx.splits.test));
        }
        if let Some(s) = &samples {
            sets.push(("samples", s));
        }
        draw(&dir, a.figure, &sets, Some(&ctx))?
    } else if a.target.exists() {
        let s = read_windows(a.target, None, a.file)?;
        let stem = a
            .target
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = a.out.map_or_else(
            || a.target.with_file_name(format!("{stem}-figures")),
            Path::to_path_buf,
        );
        draw(&dir, a.figure, &[(stem.as_str(), &s)], None)?
    } else {
        bail!(UsageError(format!(
            "{}: no such run directory or file",
            a.target.display()
        )));
    };
    if !a.quiet {
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}
