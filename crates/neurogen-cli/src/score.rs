//! `neurogen score`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use neurogen_data::samples::{read_windows, Stated};
use neurogen_train::{classify_signals, score_signals, score_steps, Experiment, Scores};

use crate::common::{open_run, BackendArg, UsageError};

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
}

pub(crate) fn run(a: &Args, quiet: bool) -> Result<()> {
    if a.k == 0 {
        bail!(UsageError("-k: must be at least 1".into()));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.run_dir.join("scores.csv"));
    let (device, loaded) = open_run(&a.run_dir, a.backend, a.best)?;
    if loaded.density().is_none() {
        bail!(UsageError(format!(
            "{}: a {} run has no likelihood to score with; score works for runs of families that have one",
            a.run_dir.display(),
            loaded.exp.model.kind()
        )));
    }
    let data = &a.data;
    let ext = data.extension().and_then(|e| e.to_str()).unwrap_or("");
    let windows = if ext.eq_ignore_ascii_case("toml") {
        let e = Experiment::load(data, &[])?;
        e.build_data(data)?.signals
    } else if let Some(cfg) = loaded.exp.data.for_recording(data) {
        // A recording of the run's own format, cut as the run's data were.
        cfg.build(loaded.exp.seed)?.signals
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
    let steps = match &a.per_sample {
        Some(_) => Some(score_steps(&loaded, &windows, &device).map_err(in_context)?),
        None => None,
    };
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
        csv.push_str(&(row.join(",") + "\n"));
    }
    if let (Some(path), Some(steps)) = (&a.per_sample, &steps) {
        let time = steps.first().map_or(0, Vec::len);
        let surprise: Vec<f32> = steps.iter().flatten().map(|v| -*v as f32).collect();
        neurogen_data::npy::write_f32(path, &[steps.len(), time], &surprise)?;
    }
    neurogen_data::io::write_atomic(&out, csv.as_bytes())?;
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
    }
    Ok(())
}
