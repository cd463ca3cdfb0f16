//! `neurogen plot`, and the figures `neurogen eval` draws too.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::samples::{read_windows, Stated};
use neurogen_data::{SignalKind, Signals};
use neurogen_eval::plot::{self, Colouring, Series};
use neurogen_eval::{Spectra, View};
use neurogen_train::evaluate::{infer_latents, run_splits, Latents, RunSplits};
use neurogen_train::{sample_held_out, LoadedRun, RunDir};

use crate::common::{open_run, BackendArg, KindArg, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A run directory or an .npy of windows [n, channels, time].
    target: PathBuf,
    /// Which figure.
    #[arg(long, value_enum, default_value = "all")]
    figure: FigureArg,
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
    kind: Option<KindArg>,
    /// Backend, overriding the run's.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Load the run's best validated checkpoint (`train.keep_best`) instead of its newest.
    #[arg(long)]
    best: bool,
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

/// A run opened for evaluation or plotting.
pub(crate) struct RunCtx {
    pub run: RunDir,
    pub loaded: LoadedRun,
    pub splits: RunSplits,
    pub device: burn::tensor::Device,
    /// The test windows' inferred latents, once asked for (latent R² and the latents figure
    /// both use them).
    test_latents: OnceCell<Option<Latents>>,
}

impl RunCtx {
    /// Opens a run on `backend` (default: its own) and rebuilds its splits.
    pub(crate) fn open(
        run_dir: &Path,
        backend: Option<BackendArg>,
        best: bool,
        burn_in: Option<usize>,
    ) -> Result<RunCtx> {
        let (device, loaded) = open_run(run_dir, backend, best, burn_in)?;
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

    /// The encoder's latents of the test split (inferred on first use); `None` without one.
    pub(crate) fn test_latents(&self) -> Result<Option<&Latents>> {
        if self.test_latents.get().is_none() {
            let lat = infer_latents(&self.loaded, &self.splits.test, &self.device)?;
            let _ = self.test_latents.set(lat);
        }
        Ok(self.test_latents.get().and_then(Option::as_ref))
    }
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if let Some(f) = a.sfreq.filter(|f| !(*f > 0.0 && f.is_finite())) {
        bail!(UsageError(format!(
            "--sfreq {f}: must be a positive number of Hz"
        )));
    }
    if a.best && !a.target.is_dir() {
        bail!(UsageError(format!(
            "--best needs a RUN_DIR; {} is a file",
            a.target.display()
        )));
    }
    let written = if a.target.is_dir() {
        let ctx = RunCtx::open(&a.target, a.backend, a.best, None)?;
        let dir = a.out.clone().unwrap_or_else(|| a.target.join("figures"));
        let needs_samples = matches!(
            a.figure,
            FigureArg::All | FigureArg::Traces | FigureArg::Raster | FigureArg::Psd
        );
        let samples = if needs_samples {
            let n = a.n.max(1);
            Some(sample_held_out(
                &ctx.loaded,
                &ctx.splits.test,
                n,
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
        let stated = Stated {
            sfreq: a.sfreq,
            kind: a.kind.map(Into::into),
        };
        let s = read_windows(&a.target, None, stated)?;
        let stem = a
            .target
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = a
            .out
            .clone()
            .unwrap_or_else(|| a.target.with_file_name(format!("{stem}-figures")));
        draw(&dir, a.figure, &[(stem.as_str(), &s)], None)?
    } else {
        bail!(UsageError(format!(
            "{}: no such run directory or file",
            a.target.display()
        )));
    };
    if !quiet {
        for p in &written {
            println!("wrote {}", p.display());
        }
    }
    Ok(())
}

/// Draws `which` figures into `dir` from whatever is available; returns the files written.
/// Figures that do not apply are skipped under `All` and refused when asked for by name.
pub(crate) fn draw(
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
        let why = format!(
            "the {} model has no encoder whose latents can be drawn",
            c.loaded.exp.model.kind()
        );
        return refuse("latents", &why);
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
