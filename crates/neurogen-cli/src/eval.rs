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
use neurogen_train::anomaly::{benchmark, BACKGROUND_ORDER};
use neurogen_train::discriminate::{discriminative_score, DiscriminatorConfig};
use neurogen_train::evaluate::{add_likelihood, latent_r2};
use neurogen_train::sample_held_out;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
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
    /// Adam steps of the neural discriminator (0 skips the discriminative score).
    #[arg(long, default_value_t = DiscriminatorConfig::default().steps)]
    discriminator_steps: usize,
    /// Load the run's best validated checkpoint (`train.keep_best`) instead of its newest.
    #[arg(long)]
    best: bool,
    /// Steps an autoregressive run draws before each window and drops, instead of its
    /// `model.burn_in` (sampling only; other families refuse it).
    #[arg(long, value_name = "STEPS")]
    burn_in: Option<usize>,
    /// Instead of judging samples: the artefact benchmark. Injects each EEG artefact type into
    /// (at most -n) held-out test windows and reports, per type and scoring method, AUROC and
    /// AUPRC against the clean windows, the localisation accuracy and
    /// the false-positive rate at --alpha; default OUT_DIR = RUN_DIR/eval-anomalies.
    #[arg(long)]
    anomalies: bool,
    /// With --anomalies: the significance level of the false-positive rate.
    #[arg(long, default_value_t = 0.01, value_name = "ALPHA")]
    alpha: f64,
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
    if a.anomalies {
        return anomalies(a, quiet);
    }
    // Refused before anything is read: what to compare needs a run or two files.
    let against = a.against.as_deref().unwrap_or("test");
    match (&a.run_dir, &a.samples, against) {
        (None, None, _) => return Err(no_samples()),
        (None, _, "test") => return Err(no_test_split()),
        _ => {}
    }
    if a.burn_in.is_some() && (a.run_dir.is_none() || a.samples.is_some()) {
        bail!(UsageError(
            "--burn-in sets how the run draws its samples: it needs a RUN_DIR and no --samples"
                .into()
        ));
    }
    let ctx = match &a.run_dir {
        Some(dir) => Some(RunCtx::open(dir, a.backend, a.best, a.burn_in)?),
        None => None,
    };
    let out_dir = match (&a.out, &a.run_dir) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(r)) => r.join("eval"),
        (None, None) => PathBuf::from("eval"),
    };
    if a.best && ctx.is_none() {
        bail!(UsageError("--best needs a RUN_DIR".into()));
    }
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
    // The burn-in the samples were drawn with (the run's, or --burn-in's): part of what they are.
    if let Some(n) = ctx
        .as_ref()
        .filter(|_| a.samples.is_none())
        .and_then(|c| c.loaded.burn_in())
    {
        report.meta.insert("burn_in".into(), json!(n));
    }
    if let Some(c) = ctx
        .as_ref()
        .filter(|c| against == "test" && c.splits.train.n >= 2)
    {
        // Fresh real data against the same reference: what no sample set can be asked to beat.
        status(
            quiet,
            "computing the real-vs-real floor (training vs test windows)…",
        );
        let floor = neurogen_eval::floor(&c.splits.train, &reference, samples.n, &opts)
            .map_err(|e| UsageError(e.to_string()))?;
        report.add_floor(&floor);
        report.meta.insert(
            "floor".into(),
            json!({
                "what": "every metric between training windows (drawn at random, seeded) and the test split, same settings",
                "windows": floor.meta.get("n_samples"),
            }),
        );
    }
    if a.discriminator_steps > 0 {
        discriminator(&mut report, ctx.as_ref(), &samples, &reference, a, quiet)?;
    }
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
    let path = write_report(&out_dir, &report)?;
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
    let mut floor = Report::default();
    let real = neurogen_eval::floor_windows(&train, samples.n, a.seed);
    per_condition(&real, &reference, &names, &opts, &mut floor)
        .map_err(|e| UsageError(e.to_string()))?;
    report.add_floor(&floor);
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
        // Its floor: the last training windows (a contiguous stretch of a recording, so few
        // overlap the rest) as if they were samples, against the other training windows.
        let n_train = c.splits.train.n;
        let held = s.n.min(n_train / 2);
        if held >= 2 {
            let (rest, last): (Vec<usize>, Vec<usize>) =
                (0..n_train).partition(|&i| i < n_train - held);
            let rest = neurogen_eval::subsample(&c.splits.train.select(&rest), 2000, a.seed);
            report.set(
                "memorisation_ratio_floor",
                neurogen_eval::memorisation_ratio(
                    &neurogen_eval::standardised(&c.splits.train.select(&last), &by),
                    &neurogen_eval::standardised(&rest, &by),
                    &neurogen_eval::standardised(&t, &by),
                    samples.window_len(),
                ),
            );
        }
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

/// The neural discriminative score (and, with a run, its real-vs-real floor).
///
/// With a run and its test split: the classifier learns the run's training windows against
/// fresh samples drawn like `samples` (from the training windows' own labels and inputs), and
/// is scored on the test windows against `samples`; the floor puts further training windows in
/// place of both synthetic sets. Otherwise each file is split in halves, the first to learn
/// and the second to score.
fn discriminator(
    report: &mut Report,
    ctx: Option<&RunCtx>,
    samples: &Signals,
    reference: &Signals,
    a: &Args,
    quiet: bool,
) -> Result<()> {
    let cfg = DiscriminatorConfig {
        steps: a.discriminator_steps,
        seed: a.seed,
        ..DiscriminatorConfig::default()
    };
    let halves = |s: &Signals| {
        let h = s.n / 2;
        (
            s.select(&(0..h).collect::<Vec<_>>()),
            s.select(&(h..s.n).collect::<Vec<_>>()),
        )
    };
    let mut meta = cfg.describe();
    let from_run = ctx.filter(|_| a.against.as_deref().unwrap_or("test") == "test");
    // Samples drawn here (not read from a file) leave the classifier's synthetic training set
    // to be drawn too; a file is split in halves.
    let drawn = a.samples.is_none();
    // The classifier needs two windows per set: report why it is missing rather than fail eval.
    let smallest = match from_run {
        Some(c) => {
            let s = if drawn { samples.n } else { samples.n / 2 };
            s.min(c.splits.train.n).min(reference.n)
        }
        None => (samples.n / 2).min(reference.n / 2),
    };
    if smallest < 2 {
        report.meta.insert(
            "discriminator".into(),
            json!("skipped: it needs at least 2 windows in each of its four sets"),
        );
        return Ok(());
    }
    let (result, floor) = match from_run {
        Some(c) => {
            let train = &c.splits.train;
            let n = samples.n.min(train.n);
            let real = neurogen_eval::subsample(train, n, a.seed.wrapping_add(0xd15c));
            let (fake, fake_test) = if drawn {
                status(
                    quiet,
                    &format!("drawing {n} more windows to train the discriminator…"),
                );
                let seed = a.seed.wrapping_add(0xd15c);
                let fake = sample_held_out(&c.loaded, &real, n, seed, &c.device)?;
                (fake, samples.clone())
            } else {
                halves(samples)
            };
            status(quiet, "training the neural discriminator…");
            let result =
                discriminative_score(&real, &fake, reference, &fake_test, &cfg, &c.device)?;
            // The floor: three disjoint sets of training windows stand in for real and both
            // synthetic sets.
            let third = (train.n / 3).min(n);
            let floor = if third >= 2 {
                let mut idx: Vec<usize> = (0..train.n).collect();
                idx.shuffle(&mut StdRng::seed_from_u64(a.seed.wrapping_add(0xf100)));
                let part = |k: usize| train.select(&idx[k * third..(k + 1) * third]);
                status(quiet, "training the discriminator's real-vs-real floor…");
                Some(discriminative_score(
                    &part(0),
                    &part(1),
                    reference,
                    &part(2),
                    &cfg,
                    &c.device,
                )?)
            } else {
                None
            };
            meta["protocol"] = json!(
                "learn the run's training windows against fresh samples; score the test windows against the evaluated samples"
            );
            (result, floor)
        }
        None => {
            let (rs, rt) = halves(reference);
            let (ss, st) = halves(samples);
            let device = crate::host_device();
            let result = discriminative_score(&rs, &ss, &rt, &st, &cfg, &device)?;
            meta["protocol"] = json!(
                "learn the first half of the reference against the first half of the samples; score the second halves"
            );
            (result, None)
        }
    };
    report.set("discriminative_accuracy", result.accuracy);
    report.set("discriminative_score", result.score);
    report.set("discriminative_auc", result.auc);
    if let Some(f) = floor {
        report.set("discriminative_accuracy_floor", f.accuracy);
        report.set("discriminative_score_floor", f.score);
        report.set("discriminative_auc_floor", f.auc);
    }
    report.meta.insert("discriminator".into(), meta);
    Ok(())
}

/// `neurogen eval RUN --anomalies`: the artefact benchmark.
fn anomalies(a: &Args, quiet: bool) -> Result<()> {
    let Some(dir) = &a.run_dir else {
        bail!(UsageError("--anomalies needs a RUN_DIR".into()));
    };
    if a.samples.is_some() || a.against.is_some() || a.burn_in.is_some() {
        bail!(UsageError(
            "--anomalies scores the run's own test windows; it takes no --samples, --against \
             or --burn-in"
                .into()
        ));
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        bail!(UsageError(format!(
            "--alpha {}: must be a probability strictly between 0 and 1 (e.g. 0.01)",
            a.alpha
        )));
    }
    let c = RunCtx::open(dir, a.backend, a.best, None)?;
    if c.loaded.density().is_none() {
        bail!(UsageError(format!(
            "{}: a {} run has no likelihood to score anomalies with",
            dir.display(),
            c.loaded.exp.model.kind()
        )));
    }
    let out_dir = a.out.clone().unwrap_or_else(|| dir.join("eval-anomalies"));
    let mut progress = |line: &str| status(quiet, line);
    let b = benchmark(
        &c.loaded,
        &c.splits.train,
        &c.splits.valid,
        &c.splits.test,
        a.n,
        (a.k, a.seed, a.alpha),
        &c.device,
        &mut progress,
    )?;
    let mut report = Report::default();
    for (m_i, m) in b.methods.iter().enumerate() {
        for (t_i, t) in b.artefacts.iter().enumerate() {
            report.set(
                format!("auroc_{}_{}", m.name(), t.name()),
                b.auroc[m_i][t_i],
            );
            report.set(
                format!("auprc_{}_{}", m.name(), t.name()),
                b.auprc[m_i][t_i],
            );
            if let Some(loc) = &b.localisation {
                report.set(
                    format!("localisation_{}_{}", m.name(), t.name()),
                    loc[m_i][t_i],
                );
            }
        }
        report.set(
            format!("false_positive_rate_{}", m.name()),
            b.false_positive_rate[m_i],
        );
        report.set(format!("p_value_ks_{}", m.name()), b.p_value_ks[m_i]);
    }
    report.meta.insert(
        "anomalies".into(),
        json!({
            "alpha": b.alpha,
            "test_windows": b.windows,
            "false_positive_windows": b.clean_windows,
            "calibration_windows": b.calibration_windows,
            "typical_windows": b.typical_windows,
            "typical_split": b.typical_split,
            "background": format!("per-channel AR({}) Gaussian fitted on the training split", BACKGROUND_ORDER),
            "k": a.k,
            "seed": a.seed,
            "artefacts": "normalised units (sd 1): flat_channel/flat_all hold the onset value for a quarter window; step ±4 sd from onset to end; spike ±10 sd on one sample; line_noise 50 Hz (0.4 fs if lower) amplitude 1.5 on every channel; burst white noise sd 3 on one channel; clipping at ±1 on one channel; blink half-sine 5 sd over 0.4 s on every channel",
            "localisation": "fraction of injected windows whose peak per-step score (summed over channels) falls inside the injected stretch",
        }),
    );
    std::fs::create_dir_all(out_dir.join("figures"))
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let figure = out_dir.join("figures").join("anomalies.png");
    let groups: Vec<String> = b.artefacts.iter().map(|t| t.name().to_string()).collect();
    let series: Vec<(String, Vec<f64>)> = b
        .methods
        .iter()
        .zip(&b.auroc)
        .map(|(m, v)| (m.name().to_string(), v.clone()))
        .collect();
    plot::bars(
        &figure,
        &format!("Artefact detection on {} held-out windows", b.windows),
        "AUROC",
        &groups,
        &series,
        // Headroom above 1 keeps the legend off the bars.
        (0.0, 1.25),
    )?;
    report
        .meta
        .insert("figures".into(), json!(["figures/anomalies.png"]));
    let path = write_report(&out_dir, &report)?;
    if !quiet {
        print!("{:<14}", "AUROC");
        for m in &b.methods {
            print!(" {:>12}", m.name());
        }
        println!();
        for (t_i, t) in b.artefacts.iter().enumerate() {
            print!("{:<14}", t.name());
            for m_i in 0..b.methods.len() {
                print!(" {:>12.3}", b.auroc[m_i][t_i]);
            }
            println!();
        }
        print!("{:<14}", format!("FPR@{}", b.alpha));
        for v in &b.false_positive_rate {
            print!(" {v:>12.4}");
        }
        println!();
        if let Some(loc) = &b.localisation {
            print!("{:<14}", "localised");
            for v in loc {
                print!(" {:>12.3}", v.iter().sum::<f64>() / v.len().max(1) as f64);
            }
            println!();
        }
        println!("wrote {} and {}", path.display(), figure.display());
    }
    Ok(())
}

/// Every metric with its real-vs-real floor beside it, where it has one.
/// Writes `OUT_DIR/report.json` atomically; returns its path.
fn write_report(out_dir: &Path, report: &Report) -> Result<PathBuf> {
    let path = out_dir.join("report.json");
    neurogen_data::io::write_atomic(
        &path,
        serde_json::to_string_pretty(&report.to_json())?.as_bytes(),
    )?;
    Ok(path)
}

fn print_table(report: &Report) {
    println!("{:<36} {:>14} {:>14}", "metric", "value", "floor");
    for (k, v) in &report.metrics {
        if k.contains("_floor") {
            continue;
        }
        match report.get(&neurogen_eval::floor_name(k)) {
            Some(f) => println!("{k:<36} {v:>14.6} {f:>14.6}"),
            None => println!("{k:<36} {v:>14.6} {:>14}", "—"),
        }
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
