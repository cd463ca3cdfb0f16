//! `neurogen score`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use neurogen_data::edf::Annotation;
use neurogen_data::samples::{read_windows, Stated};
use neurogen_data::Source;
use neurogen_train::anomaly::{flagged_stretches, Method, Raw, Reference};
use neurogen_train::evaluate::run_splits;
use neurogen_train::{
    classify_signals, score_elements, score_residuals, score_signals, score_steps, steps_of,
    Experiment, RunDir, Scores,
};

use crate::common::{open_run, status, BackendArg, UsageError};

/// The method `score` uses without `--method`: the one the artefact benchmark shows best (see
/// the README's "Anomaly detection").
const DEFAULT_METHOD: Method = Method::Typicality;

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MethodArg {
    Likelihood,
    Typicality,
    Ratio,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Likelihood => Method::Likelihood,
            MethodArg::Typicality => Method::Typicality,
            MethodArg::Ratio => Method::Ratio,
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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
    /// Load the run's best validated checkpoint (`train.keep_best`) instead of its newest.
    #[arg(long)]
    best: bool,
    /// Conditional runs: also score every window under every label (`log_likelihood@NAME`),
    /// with the posterior over labels (`posterior@NAME`; prior: the training split's label
    /// counts plus one) and its most probable label (`predicted`): a likelihood-based decoder.
    /// Windows without labels are then scored by the marginal log p(x).
    #[arg(long)]
    classify: bool,
    /// Autoregressive runs: also write every time step's surprise −log p(x_t | x_<t) (nats,
    /// summed over channels) to this .npy, `[windows, time]`: where in a window the anomaly is.
    #[arg(long, value_name = "NPY")]
    per_sample: Option<PathBuf>,
    /// Autoregressive runs of continuous data: also write every element's residual given the
    /// past, Φ⁻¹(F(x_ct | x_<t)), to this .npy, `[windows, channels, time]`: i.i.d. N(0, 1)
    /// where the model fits the data (a model check), correlated where it mispredicts alike.
    #[arg(long, value_name = "NPY")]
    residuals: Option<PathBuf>,
    /// How the anomaly score (`score` column, higher = more anomalous) is made: `likelihood`
    /// (−log p), `typicality` (distance of −log p from the typical set of held-out windows, so
    /// too-likely windows such as flat lines are flagged too) or `ratio` (−log p beyond a
    /// per-channel AR(8) background fitted on the training split); default typicality.
    #[arg(long, value_enum)]
    method: Option<MethodArg>,
    /// Flag windows whose p-value (against the validation split's scores) is at most ALPHA:
    /// adds a `flag` column; "anomalous at 1 %" with 0.01.
    #[arg(long, value_name = "ALPHA")]
    alpha: Option<f64>,
    /// Write every element's anomaly score under `--method` to this .npy, `[windows, channels,
    /// time]`: where, and in which channel, a window is anomalous (autoregressive runs: from
    /// each element's likelihood given the past; the other families: from each element's
    /// share of the window's likelihood or bound).
    #[arg(long, value_name = "NPY")]
    localise: Option<PathBuf>,
    /// With an EDF/BDF recording as DATA: write it to this file as EDF+/BDF+ with an
    /// annotation `neurogen:anomaly p=…` over every stretch of flagged windows (needs
    /// `--alpha`; the input is never modified).
    #[arg(long, value_name = "EDF")]
    annotate: Option<PathBuf>,
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.k == 0 {
        bail!(UsageError("-k: must be at least 1".into()));
    }
    if let Some(alpha) = a.alpha.filter(|v| !(*v > 0.0 && *v < 1.0)) {
        bail!(UsageError(format!(
            "--alpha {alpha}: must be a probability strictly between 0 and 1 (e.g. 0.01)"
        )));
    }
    if let Some(out) = &a.annotate {
        let is_edf = |p: &Path| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("edf") || e.eq_ignore_ascii_case("bdf"))
        };
        if !is_edf(&a.data) {
            bail!(UsageError(format!(
                "--annotate: {} is not an EDF/BDF recording; annotations are written into a copy of an .edf or .bdf recording given as DATA",
                a.data.display()
            )));
        }
        if a.alpha.is_none() {
            bail!(UsageError(
                "--annotate: needs --alpha, the p-value at or below which a window is flagged and annotated (e.g. --alpha 0.01)".into()
            ));
        }
        if out.as_path() == a.data.as_path() || same_file(out, &a.data) {
            bail!(UsageError(format!(
                "--annotate {}: is the input recording; the input is never modified, name another file",
                out.display()
            )));
        }
    }
    let method = a.method.map_or(DEFAULT_METHOD, Method::from);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.run_dir.join("scores.csv"));
    let (device, loaded) = open_run(&a.run_dir, a.backend, a.best, None)?;
    if loaded.density().is_none() {
        bail!(UsageError(format!(
            "{}: a {} run has no likelihood to score with; score works for runs of families that have one",
            a.run_dir.display(),
            loaded.exp.model.kind()
        )));
    }
    let data = &a.data;
    let ext = data.extension().and_then(|e| e.to_str()).unwrap_or("");
    // With a recording: where each window starts in it, for --annotate.
    let mut starts = None;
    let windows = if ext.eq_ignore_ascii_case("toml") {
        let e = Experiment::load(data, &[])?;
        e.build_data(data)?.signals
    } else if let Some(cfg) = loaded.exp.data.for_recording(data) {
        // A recording of the run's own format, cut as the run's data were.
        let epochs = matches!(&cfg.source, Source::Edf(s) | Source::Bdf(s) if s.epochs.is_some());
        if a.annotate.is_some() && epochs {
            bail!(UsageError(
                "--annotate: the run cuts epochs around events (`[data.epochs]`); annotating needs windows cut from the whole recording".to_string()
            ));
        }
        let w = cfg.build(loaded.exp.seed)?;
        starts = Some(w.info.iter().map(|i| i.start).collect::<Vec<_>>());
        w.signals
    } else if ext.eq_ignore_ascii_case("npy") {
        read_windows(data, Some(&loaded.info.meta), Stated::default())?
    } else {
        bail!(UsageError(format!(
            "{}: DATA must be an .npy of windows, an experiment .toml, or a recording in the run's own format ({})",
            data.display(),
            loaded.exp.data.source.name()
        )));
    };
    let in_context = |e| anyhow::Error::new(e).context(data.display().to_string());
    // Per-step scores first: cheap, and a run or data they do not suit fail before the rest.
    // The per-element likelihoods are computed once: `--per-sample` sums them over channels,
    // the anomaly columns reuse them.
    let factorises = loaded.density().is_some_and(|d| d.factorises());
    let mut elements = None;
    let steps = match &a.per_sample {
        Some(_) if factorises => {
            let e = score_elements(&loaded, &windows, &device)
                .map_err(in_context)
                .context("--per-sample")?;
            let steps = steps_of(&e, windows.meta.channels, windows.meta.time);
            elements = Some(e);
            Some(steps)
        }
        // Refused with the reason.
        Some(_) => Some(
            score_steps(&loaded, &windows, &device)
                .map_err(in_context)
                .context("--per-sample")?,
        ),
        None => None,
    };
    let residuals = match &a.residuals {
        Some(_) => Some(
            score_residuals(&loaded, &windows, &device)
                .map_err(in_context)
                .context("--residuals")?,
        ),
        None => None,
    };
    let splits = loaded.density().is_some_and(|d| d.splits_bound());
    if a.localise.is_some() && !factorises && !splits {
        bail!(UsageError(format!(
            "--localise: a `{}` run's likelihood neither factorises nor splits over elements, so it has no per-element scores",
            loaded.exp.model.kind()
        )));
    }
    let classified = if a.classify {
        Some(classify_signals(&loaded, &windows, a.k, a.seed, &device).map_err(in_context)?)
    } else {
        None
    };
    // A conditional run scores unlabelled windows only as a classifier does: by the marginal
    // log p(x) = log Σ_y p(x | y) p(y).
    let unlabelled = !loaded.label_names().is_empty() && windows.labels.is_none();
    let scores = match (&classified, unlabelled) {
        (Some(c), true) => Scores {
            labels: None,
            bound: format!(
                "marginal_{}",
                loaded.density().map_or(String::new(), |d| d.bound(a.k))
            ),
            log_likelihood: c.marginal.clone(),
            elbo: None,
            dim: windows.window_len(),
        },
        (None, true) => bail!(UsageError(format!(
            "{}: the windows carry no labels, which the conditional run needs to score log p(x | label); pass --classify to score the marginal log p(x) and label each window, or give the labels (an NPZ `labels` array, EDF+ epochs, a CSV condition column, or `labels` in the .npy's .json sidecar)",
            data.display()
        ))),
        _ => score_signals(&loaded, &windows, a.k, a.seed, &device).map_err(in_context)?,
    };
    // The reference (background, typical set, validation scores) comes from the run's own
    // data. Without it (data that cannot be rebuilt) or for a conditional run's unlabelled
    // windows (scored by the marginal, which the labelled reference does not match), the
    // likelihood columns are still written, unless a method or --alpha was asked for by name.
    let marginal = classified.is_some() && unlabelled;
    let asked = a.method.is_some() || a.alpha.is_some();
    if marginal && asked {
        bail!(UsageError(format!(
            "{}: --method and --alpha compare with the run's labelled windows; unlabelled windows of a conditional run are scored only by their marginal likelihood (leave out --method and --alpha, or give the windows' labels)",
            data.display()
        )));
    }
    let reference = if marginal {
        None
    } else {
        status(
            quiet,
            "scoring the run's training and validation windows (typical set, background, calibration)",
        );
        let run = RunDir::new(&a.run_dir);
        match run_splits(&run, &loaded)
            .and_then(|sp| Reference::build(&loaded, &sp.train, &sp.valid, a.k, a.seed, &device))
        {
            Ok(r) => Some(r),
            Err(e) if !asked => {
                status(
                    quiet,
                    &format!("note: no anomaly scores or p-values: the run's own data could not be scored ({e})"),
                );
                None
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "--method {} / --alpha need the run's training and validation windows",
                    method.name()
                )))
            }
        }
    };
    let anomaly = match &reference {
        Some(r) => {
            let elements = match elements.take() {
                Some(e) => Some(e),
                None if factorises => {
                    Some(score_elements(&loaded, &windows, &device).map_err(in_context)?)
                }
                None => Raw::shares(&loaded, &windows, a.k, a.seed, &device).map_err(in_context)?,
            };
            // A bound estimated from random draws is re-estimated with the draws the
            // reference used, shared by every window, so scores rank windows, not draws.
            let draws = loaded.density().is_some_and(|d| d.score_noise(a.k).1 > 0);
            let ll = if draws && !factorises {
                neurogen_train::score_signals_common(&loaded, &windows, a.k, a.seed, &device)
                    .map_err(in_context)?
            } else {
                scores.log_likelihood.clone()
            };
            let residuals = match &residuals {
                Some(z) => Some(z.clone()),
                None => Raw::residuals(&loaded, &windows, &device).map_err(in_context)?,
            };
            let raw = Raw::with(ll, elements, residuals, &loaded, &windows, &r.background);
            let score = r.score(method, &raw);
            let p = r.p_values(method, &score);
            if a.alpha.is_some() && p.is_none() {
                bail!(UsageError(
                    "--alpha: the run has no validation windows to calibrate p-values on (data.split.valid = 0)".to_string()
                ));
            }
            Some((raw, score, p))
        }
        None => None,
    };
    let flags: Option<Vec<bool>> = match (&anomaly, a.alpha) {
        (Some((_, _, Some(p))), Some(alpha)) => Some(p.iter().map(|v| *v <= alpha).collect()),
        _ => None,
    };
    let channel_scores = match (&anomaly, &reference) {
        (Some((raw, _, _)), Some(r)) => r.channel_scores(method, raw),
        _ => None,
    };
    let names = loaded.label_names();
    let bits = |ll: f64| -ll / (scores.dim as f64 * std::f64::consts::LN_2);
    let mut header = vec!["window", "bound", "log_likelihood", "bits_per_dim"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    if scores.elbo.is_some() {
        header.push("elbo".into());
    }
    if scores.labels.is_some() {
        header.push("label".into());
    }
    if classified.is_some() {
        header.extend(names.iter().map(|n| format!("log_likelihood@{n}")));
        header.extend(names.iter().map(|n| format!("posterior@{n}")));
        header.push("predicted".into());
    }
    if let Some((_, _, p)) = &anomaly {
        header.extend([
            "method".into(),
            "score".into(),
            "background_log_likelihood".into(),
        ]);
        if p.is_some() {
            header.push("p_value".into());
        }
        if flags.is_some() {
            header.push("flag".into());
        }
        if channel_scores.is_some() {
            header.extend(
                windows
                    .meta
                    .channel_names
                    .iter()
                    .map(|n| format!("score@{n}")),
            );
        }
    }
    let mut csv = header.join(",") + "\n";
    for (i, ll) in scores.log_likelihood.iter().enumerate() {
        let mut row = vec![
            i.to_string(),
            scores.bound.clone(),
            ll.to_string(),
            bits(*ll).to_string(),
        ];
        if let Some(e) = &scores.elbo {
            row.push(e[i].to_string());
        }
        if let Some(l) = &scores.labels {
            row.push(names[l[i] as usize].clone());
        }
        if let Some(c) = &classified {
            row.extend(c.log_likelihood[i].iter().map(f64::to_string));
            row.extend(c.posterior[i].iter().map(f64::to_string));
            row.push(names[c.predicted[i] as usize].clone());
        }
        if let Some((raw, score, p)) = &anomaly {
            row.push(method.name().into());
            row.push(score[i].to_string());
            row.push(raw.background[i].iter().sum::<f64>().to_string());
            if let Some(p) = p {
                row.push(p[i].to_string());
            }
            if let Some(f) = &flags {
                row.push(u8::from(f[i]).to_string());
            }
            if let Some(cs) = &channel_scores {
                row.extend(cs[i].iter().map(f64::to_string));
            }
        }
        csv.push_str(&(row.join(",") + "\n"));
    }
    if let (Some(path), Some(steps)) = (&a.per_sample, &steps) {
        let time = steps.first().map_or(0, Vec::len);
        let surprise: Vec<f32> = steps.iter().flatten().map(|v| -*v as f32).collect();
        neurogen_data::npy::write_f32(path, &[steps.len(), time], &surprise)?;
    }
    let per_element = |path: &Path, v: &[Vec<f64>]| {
        let flat: Vec<f32> = v.iter().flatten().map(|x| *x as f32).collect();
        let shape = [v.len(), windows.meta.channels, windows.meta.time];
        neurogen_data::npy::write_f32(path, &shape, &flat)
    };
    if let (Some(path), Some(z)) = (&a.residuals, &residuals) {
        per_element(path, z)?;
    }
    if let Some(path) = &a.localise {
        let (Some((raw, _, _)), Some(r)) = (&anomaly, &reference) else {
            bail!("--localise: no reference to score against (the run's data could not be rebuilt, or the windows are a conditional run's unlabelled ones)");
        };
        let Some(el) = r.element_scores(method, raw) else {
            bail!("--localise: the model gave no per-element scores");
        };
        per_element(path, &el)?;
    }
    neurogen_data::io::write_atomic(&out, csv.as_bytes())?;
    let mut annotated = None;
    if let (Some(path), Some(flags), Some((_, _, Some(p))), Some(starts)) =
        (&a.annotate, &flags, &anomaly, &starts)
    {
        annotated = Some(annotate(
            data,
            path,
            starts,
            (windows.meta.time, windows.meta.sfreq),
            flags,
            p,
        )?);
    }
    if !quiet {
        if let (Some(c), Some(truth)) = (&classified, &scores.labels) {
            let right = c
                .predicted
                .iter()
                .zip(truth)
                .filter(|(p, t)| p == t)
                .count();
            println!(
                "classified {} windows by likelihood: {right} ({:.1} %) predicted their own label",
                truth.len(),
                100.0 * right as f64 / truth.len().max(1) as f64
            );
        }
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
        if let (Some(f), Some(alpha), Some(r)) = (&flags, a.alpha, &reference) {
            println!(
                "flagged {} of {} windows at alpha = {alpha} ({} scores, p-values against {} validation windows)",
                f.iter().filter(|v| **v).count(),
                f.len(),
                method.name(),
                r.calibration_windows()
            );
        }
        if let (Some(path), Some(n)) = (&a.annotate, annotated) {
            println!("wrote {} with {n} anomaly annotation(s)", path.display());
        }
    }
    Ok(())
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Writes `input` to `out` as EDF+/BDF+ with one annotation per stretch of flagged windows;
/// returns how many. Window starts are sample indices of the recording's modelled signals.
fn annotate(
    input: &Path,
    out: &Path,
    starts: &[usize],
    (len, sfreq): (usize, f64),
    flags: &[bool],
    p: &[f64],
) -> Result<usize> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let file = neurogen_data::edf::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    // The modelled signals share one rate; the windows index their samples.
    let spr = ((sfreq * file.record_duration).round() as usize).max(1);
    let time = |sample: usize| {
        let r = (sample / spr).min(file.record_onsets.len().saturating_sub(1));
        file.record_onsets[r] + (sample - r * spr) as f64 / sfreq
    };
    let notes: Vec<Annotation> = flagged_stretches(starts, len, flags, p)
        .into_iter()
        .map(|(s, e, p)| {
            let onset = time(s);
            Annotation {
                onset,
                duration: Some(((e - s) as f64 / sfreq * 1e6).round() / 1e6),
                text: format!("neurogen:anomaly p={p:.3e}"),
            }
        })
        .collect();
    let written = neurogen_data::edf::annotate(&bytes, &notes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    neurogen_data::io::write_atomic(out, &written)?;
    Ok(notes.len())
}
