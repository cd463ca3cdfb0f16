//! `neurogen eval`: samples against real data, beside what the run itself can say.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::samples::{read_windows, Stated};
use neurogen_data::Signals;
use neurogen_eval::conditions::{
    augmentation_curve, per_condition, report_curves, tstr_trtr, Curve,
};
use neurogen_eval::plot::{self, Series};
use neurogen_eval::{EvalOptions, Report};
use neurogen_train::evaluate::{add_likelihood, latent_r2};
use neurogen_train::sample_held_out;
use serde_json::json;

use crate::common::{status, BackendArg, KindArg, UsageError};
use crate::plot::{draw, FigureArg, RunCtx};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
    kind: Option<KindArg>,
    /// Importance samples for the IWAE bound.
    #[arg(short = 'k', default_value_t = 64)]
    k: usize,
    /// Seed of the samples, permutations, projections and folds.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend, overriding the run's.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.n < 2 {
        bail!(UsageError("-n: at least 2 samples are needed".into()));
    }
    if a.k == 0 {
        bail!(UsageError("-k: must be at least 1".into()));
    }
    if let Some(f) = a.sfreq.filter(|f| !(*f > 0.0 && f.is_finite())) {
        bail!(UsageError(format!(
            "--sfreq {f}: must be a positive number of Hz"
        )));
    }
    // Refused before anything is read: what to compare needs a run or two files.
    let against = a.against.as_deref().unwrap_or("test");
    match (&a.run_dir, &a.samples, against) {
        (None, None, _) => return Err(no_samples()),
        (None, _, "test") => return Err(no_test_split()),
        _ => {}
    }
    let ctx = match &a.run_dir {
        Some(dir) => Some(RunCtx::open(dir, a.backend)?),
        None => None,
    };
    let out_dir = match (&a.out, &a.run_dir) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(r)) => r.join("eval"),
        (None, None) => PathBuf::from("eval"),
    };
    let run_meta = ctx.as_ref().map(|c| &c.loaded.info.meta);
    // Samples: a file, or drawn from the run.
    let stated = Stated {
        sfreq: a.sfreq,
        kind: a.kind.map(Into::into),
    };
    let samples = match (&a.samples, &ctx) {
        (Some(f), _) => read_windows(f, run_meta, stated)?,
        (None, Some(c)) => {
            status(quiet, &format!("sampling {} windows from the run…", a.n));
            sample_held_out(&c.loaded, &c.splits.test, a.n, a.seed, &c.device)?
        }
        (None, None) => return Err(no_samples()),
    };
    // Reference: the run's test split, or a file.
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
        ("test", None) => return Err(no_test_split()),
        (file, _) => read_windows(Path::new(file), run_meta.or(Some(&samples.meta)), stated)?,
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
    status(quiet, "computing sample-quality metrics…");
    let mut report = neurogen_eval::compare(&samples, &reference, &opts)
        .map_err(|e| UsageError(e.to_string()))?;
    report.meta.insert(
        "samples".into(),
        json!(a
            .samples
            .as_ref()
            .map_or("drawn from the run".to_string(), |p| p
                .display()
                .to_string())),
    );
    report.meta.insert("reference".into(), json!(against));
    let mut curves = Vec::new();
    if let Some(c) = &ctx {
        run_metrics(
            &mut report,
            c,
            &samples,
            &reference,
            against == "test",
            a,
            quiet,
        )?;
        curves = condition_metrics(
            &mut report,
            c,
            &samples,
            &reference,
            against == "test",
            a,
            quiet,
        )?;
    }
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let ref_name = if ctx.is_some() && against == "test" {
        "test data"
    } else {
        "reference"
    };
    let mut figures = draw(
        &out_dir.join("figures"),
        FigureArg::All,
        &[(ref_name, &reference), ("samples", &samples)],
        ctx.as_ref(),
    )?;
    if !curves.is_empty() {
        let path = out_dir.join("figures").join("augmentation.png");
        augmentation_figure(&path, &curves)?;
        figures.push(path);
    }
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
    neurogen_data::io::write_atomic(
        &path,
        serde_json::to_string_pretty(&report.to_json())?.as_bytes(),
    )?;
    if !quiet {
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

/// The metrics of a conditional run: every metric and the evoked response per condition, and
/// — against the run's test split — TSTR/TRTR decoding and the augmentation curve, which it
/// returns for the figure.
fn condition_metrics(
    report: &mut Report,
    c: &RunCtx,
    samples: &Signals,
    reference: &Signals,
    reference_is_test: bool,
    a: &Args,
    quiet: bool,
) -> Result<Vec<Curve>> {
    let names = c.loaded.label_names().to_vec();
    if names.is_empty() || samples.labels.is_none() || reference.labels.is_none() {
        return Ok(Vec::new());
    }
    // Both sides' labels as indices into the run's label names.
    let aligned = |s: &Signals| -> Result<Signals> {
        let mut s = s.clone();
        s.labels = c.loaded.labels_of(&s)?;
        s.meta.label_names = names.clone();
        Ok(s)
    };
    let (samples, reference) = (aligned(samples)?, aligned(reference)?);
    status(quiet, "evaluating each condition…");
    let opts = EvalOptions {
        seed: a.seed,
        ..EvalOptions::default()
    };
    per_condition(&samples, &reference, &names, &opts, report)
        .map_err(|e| UsageError(e.to_string()))?;
    if !reference_is_test || c.splits.train.labels.is_none() {
        return Ok(Vec::new());
    }
    let train = aligned(&c.splits.train)?;
    status(quiet, "decoding: train on synthetic, test on real…");
    tstr_trtr(&samples, &train, &reference, names.len(), report);
    status(quiet, "augmentation curve (5 seeds)…");
    let curves = augmentation_curve(&samples, &train, &reference, names.len(), a.seed);
    report_curves(&curves, report);
    Ok(curves)
}

/// Mean balanced accuracy against real windows per class, one line per method.
fn augmentation_figure(path: &Path, curves: &[Curve]) -> Result<()> {
    let series: Vec<Series> = curves
        .iter()
        .map(|c| Series {
            name: c.method.clone(),
            points: c.points.iter().map(|(k, m, _)| (*k as f64, *m)).collect(),
        })
        .collect();
    plot::curves(
        path,
        "decoder trained on k real windows per class (+ augmentation)",
        "real windows per class",
        "balanced accuracy on real test windows",
        &series,
    )?;
    Ok(())
}

/// The metrics that need the run: likelihood, memorisation and latent recovery.
fn run_metrics(
    report: &mut Report,
    c: &RunCtx,
    samples: &Signals,
    reference: &Signals,
    reference_is_test: bool,
    a: &Args,
    quiet: bool,
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
    if shaped && l.density().is_some() {
        status(quiet, "scoring the reference under the model…");
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
    if c.splits.train.latents.is_some() && reference_is_test && l.encoder().is_some() {
        status(quiet, "fitting the latent map…");
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

fn no_samples() -> anyhow::Error {
    UsageError(
        "give a RUN_DIR, or --samples FILE.npy --against FILE.npy to compare two files".into(),
    )
    .into()
}

fn no_test_split() -> anyhow::Error {
    UsageError("--against test needs a RUN_DIR; without one pass --against FILE.npy".into()).into()
}
