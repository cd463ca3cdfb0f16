//! Evaluation of labelled (conditional) samples: every metric per condition, the evoked
//! response per condition, train-on-synthetic/test-on-real decoding, and the augmentation
//! curve — does synthetic data help a decoder trained on few real windows?

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use neurogen_data::Signals;

use crate::augment::Augmentation;
use crate::decoding::{accuracy, balanced_accuracy, decoder_features, Decoder};
use crate::stats::pearson;
use crate::{compare, EvalError, EvalOptions, Report, View};

/// The windows of `s` with label `label`.
pub fn of_label(s: &Signals, label: u32) -> Signals {
    let idx: Vec<usize> = match &s.labels {
        Some(l) => (0..s.n).filter(|&i| l[i] == label).collect(),
        None => Vec::new(),
    };
    s.select(&idx)
}

/// Every metric of [`compare`] per condition, as `<metric>@<label>`, and each metric's mean over
/// the conditions as `<metric>@mean`; then the evoked response per condition
/// ([`evoked_metrics`]). Both sets must carry labels indexing `names`; a condition with fewer
/// than two windows on either side is left out.
pub fn per_condition(
    samples: &Signals,
    reference: &Signals,
    names: &[String],
    opts: &EvalOptions,
    report: &mut Report,
) -> Result<(), EvalError> {
    let mut sums: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    let mut done = Vec::new();
    for (c, name) in names.iter().enumerate() {
        let (s, r) = (of_label(samples, c as u32), of_label(reference, c as u32));
        if s.n < 2 || r.n < 2 {
            continue;
        }
        let rep = compare(&s, &r, opts)?;
        let (corr, latency) = evoked_metrics(&s, &r);
        let all = rep.metrics.into_iter().chain([
            ("evoked_correlation".to_string(), corr),
            ("evoked_peak_latency_error_s".to_string(), latency),
        ]);
        for (k, v) in all {
            if v.is_finite() {
                report.set(format!("{k}@{name}"), v);
                let e = sums.entry(k).or_insert((0.0, 0));
                (e.0, e.1) = (e.0 + v, e.1 + 1);
            }
        }
        done.push(name.clone());
    }
    for (k, (sum, count)) in sums {
        if count == done.len() {
            report.set(format!("{k}@mean"), sum / count as f64);
        }
    }
    report.meta.insert("conditions".into(), json!(done));
    Ok(())
}

/// The evoked response (the mean window over trials) of samples against reference: the mean
/// over channels of the Pearson correlation of the two evoked waveforms, and the mean over
/// channels of the difference in seconds between the times of their largest deviation from
/// the channel's mean.
pub fn evoked_metrics(samples: &Signals, reference: &Signals) -> (f64, f64) {
    let (es, er) = (evoked(samples), evoked(reference));
    let (c, t) = (reference.meta.channels, reference.meta.time);
    let peak = |row: &[f64]| {
        let m = row.iter().sum::<f64>() / row.len().max(1) as f64;
        (0..row.len())
            .max_by(|&a, &b| (row[a] - m).abs().total_cmp(&(row[b] - m).abs()))
            .unwrap_or(0)
    };
    let (mut corr, mut lat) = (Vec::new(), Vec::new());
    for ch in 0..c {
        let (a, b) = (&es[ch * t..(ch + 1) * t], &er[ch * t..(ch + 1) * t]);
        corr.push(pearson(a, b));
        lat.push((peak(a) as f64 - peak(b) as f64).abs() / reference.meta.sfreq);
    }
    (
        crate::stats::finite_mean(&corr),
        crate::stats::finite_mean(&lat),
    )
}

/// The mean window over trials, `[channels, time]`.
fn evoked(s: &Signals) -> Vec<f64> {
    let v = View::of(s);
    let mut out = vec![0.0; v.channels * v.time];
    for i in 0..v.n {
        for c in 0..v.channels {
            for (o, x) in out[c * v.time..(c + 1) * v.time]
                .iter_mut()
                .zip(v.row(i, c))
            {
                *o += *x as f64 / v.n as f64;
            }
        }
    }
    out
}

/// Train on synthetic, test on real, beside train on real, test on real: the decoder of
/// [`crate::decoding`] trained on the labelled `synthetic` windows and on the real `train`
/// split, each tested on the real `test` split. Sets `tstr_accuracy`,
/// `tstr_balanced_accuracy`, `trtr_accuracy`, `trtr_balanced_accuracy` and
/// `tstr_trtr_ratio` (of balanced accuracies).
pub fn tstr_trtr(
    synthetic: &Signals,
    train: &Signals,
    test: &Signals,
    classes: usize,
    report: &mut Report,
) {
    let (Some(ys), Some(ytr), Some(yte)) = (&synthetic.labels, &train.labels, &test.labels) else {
        return;
    };
    let xte = decoder_features(test);
    let score = |x: &[Vec<f64>], y: &[u32]| {
        let pred = Decoder::fit(x, y, classes).predict(&xte);
        (accuracy(&pred, yte), balanced_accuracy(&pred, yte, classes))
    };
    let (ts_acc, ts_bal) = score(&decoder_features(synthetic), ys);
    let (tr_acc, tr_bal) = score(&decoder_features(train), ytr);
    report.set("tstr_accuracy", ts_acc);
    report.set("tstr_balanced_accuracy", ts_bal);
    report.set("trtr_accuracy", tr_acc);
    report.set("trtr_balanced_accuracy", tr_bal);
    report.set("tstr_trtr_ratio", ts_bal / tr_bal);
    report.meta.insert(
        "decoder".into(),
        json!({
            "model": "multinomial logistic regression, L2",
            "lambda": crate::decoding::LAMBDA,
            "iterations": crate::decoding::ITERATIONS,
            "features": format!(
                "per channel: {} time-bin means, then log EEG band powers (continuous) or log(1 + mean count) (counts); z-scored on the training set",
                crate::decoding::TIME_BINS
            ),
            "n_synthetic": synthetic.n,
            "n_train": train.n,
            "n_test": test.n,
        }),
    );
}

/// Real windows per class of the augmentation curve (`usize::MAX`: all of them).
pub const AUGMENTATION_K: [usize; 5] = [5, 10, 20, 50, usize::MAX];
/// Seeds of the augmentation curve.
pub const AUGMENTATION_SEEDS: u64 = 5;

/// One method's curve: mean and standard deviation of the test balanced accuracy over the
/// seeds, at each `k` of [`AUGMENTATION_K`] that the training split can give.
#[derive(Debug, Clone)]
pub struct Curve {
    /// `real`, `real+synthetic` or `real+<augmentation>`.
    pub method: String,
    /// `(k, mean, sd)`; `k` is the windows per class actually used.
    pub points: Vec<(usize, f64, f64)>,
}

/// The augmentation curve: for each `k` (capped at the rarest class's training windows: "all"
/// is that many per class), `k` real training windows per class (drawn per seed) train the
/// decoder alone; with `m` synthetic windows per class added (`m`: the rarest label's count
/// among the synthetic windows); and with `m` windows per class made from the `k` real ones by
/// each hand-crafted [`Augmentation`]. Empty when a class has no window on either side. Each is tested on
/// the real `test` split; mean and spread over [`AUGMENTATION_SEEDS`] seeds.
pub fn augmentation_curve(
    synthetic: &Signals,
    train: &Signals,
    test: &Signals,
    classes: usize,
    seed: u64,
) -> Vec<Curve> {
    let (Some(ytr), Some(yte), Some(_)) = (&train.labels, &test.labels, &synthetic.labels) else {
        return Vec::new();
    };
    let xte = decoder_features(test);
    let per_class: Vec<Vec<usize>> = (0..classes as u32)
        .map(|c| (0..train.n).filter(|&i| ytr[i] == c).collect())
        .collect();
    let fewest = per_class.iter().map(Vec::len).min().unwrap_or(0);
    // Every method adds the same number of windows per class: as many synthetic windows as the
    // rarest label has, drawn per class in order.
    let ys = synthetic.labels.clone().unwrap_or_default();
    let synth_per_class = (0..classes as u32)
        .map(|c| ys.iter().filter(|&&l| l == c).count())
        .min()
        .unwrap_or(0);
    let balanced: Vec<usize> = (0..classes as u32)
        .flat_map(|c| {
            let ys = &ys;
            (0..synthetic.n)
                .filter(move |&i| ys[i] == c)
                .take(synth_per_class)
        })
        .collect();
    let synthetic = &synthetic.select(&balanced);
    if fewest == 0 || synth_per_class == 0 {
        return Vec::new();
    }
    let mut methods = vec!["real".to_string(), "real+synthetic".to_string()];
    methods.extend(Augmentation::ALL.map(|a| format!("real+{}", a.name())));
    let mut curves: Vec<Curve> = methods
        .iter()
        .map(|m| Curve {
            method: m.clone(),
            points: Vec::new(),
        })
        .collect();
    let bal = |x: &[Vec<f64>], y: &[u32]| {
        let pred = Decoder::fit(x, y, classes).predict(&xte);
        balanced_accuracy(&pred, yte, classes)
    };
    let mut ks: Vec<usize> = AUGMENTATION_K.iter().map(|&k| k.min(fewest)).collect();
    ks.dedup();
    for &k in ks.iter().filter(|&&k| k > 0) {
        let mut scores = vec![Vec::new(); methods.len()];
        for s in 0..AUGMENTATION_SEEDS {
            let mut rng = StdRng::seed_from_u64(seed ^ (s + 1).wrapping_mul(0x9e37_79b9));
            let mut picked = Vec::new();
            for idx in &per_class {
                let mut idx = idx.clone();
                idx.shuffle(&mut rng);
                picked.extend(idx.into_iter().take(k));
            }
            let real = train.select(&picked);
            let real_y = real.labels.clone().unwrap_or_default();
            let xr = decoder_features(&real);
            scores[0].push(bal(&xr, &real_y));
            scores[1].push(bal(
                &[xr.clone(), decoder_features(synthetic)].concat(),
                &[real_y.clone(), synthetic.labels.clone().unwrap_or_default()].concat(),
            ));
            for (m, aug) in Augmentation::ALL.iter().enumerate() {
                let made = augmented(&real, *aug, synth_per_class, classes, &mut rng);
                scores[2 + m].push(bal(
                    &[xr.clone(), decoder_features(&made)].concat(),
                    &[real_y.clone(), made.labels.clone().unwrap_or_default()].concat(),
                ));
            }
        }
        for (curve, s) in curves.iter_mut().zip(&scores) {
            let (m, v) = crate::stats::mean_var(s);
            curve.points.push((k, m, v.sqrt()));
        }
    }
    curves
}

/// `per_class` windows per class made from the windows of `real` (cycling through them) by
/// `aug`, labelled as their sources.
fn augmented(
    real: &Signals,
    aug: Augmentation,
    per_class: usize,
    classes: usize,
    rng: &mut StdRng,
) -> Signals {
    let labels = real.labels.clone().unwrap_or_default();
    let c = real.meta.channels;
    let (mut values, mut out_labels) = (Vec::new(), Vec::new());
    for class in 0..classes as u32 {
        let src: Vec<usize> = (0..real.n).filter(|&i| labels[i] == class).collect();
        for j in 0..per_class {
            if let Some(&i) = src.get(j % src.len().max(1)) {
                let counts = real.meta.kind == neurogen_data::SignalKind::Counts;
                values.extend(aug.apply_to(real.window(i), c, counts, rng));
                out_labels.push(class);
            }
        }
    }
    Signals {
        inputs: None,
        n: out_labels.len(),
        values,
        meta: real.meta.clone(),
        latents: None,
        labels: Some(out_labels),
    }
}

/// Writes the curves into `report`: `augment_<method>_k<k>` (mean balanced accuracy) for
/// every point, the gains at k = 10 of synthetic data over real only
/// (`augmentation_gain_k10_vs_real`) and over the best hand-crafted augmentation
/// (`augmentation_gain_k10_vs_best_handcrafted`), and every point with its spread in `meta`.
pub fn report_curves(curves: &[Curve], report: &mut Report) {
    let at = |method: &str, k: usize| {
        curves
            .iter()
            .find(|c| c.method == method)
            .and_then(|c| c.points.iter().find(|p| p.0 == k))
            .map(|p| p.1)
    };
    for c in curves {
        for (k, m, _) in &c.points {
            report.set(format!("augment_{}_k{k}", c.method), *m);
        }
    }
    if let (Some(s), Some(r)) = (at("real+synthetic", 10), at("real", 10)) {
        report.set("augmentation_gain_k10_vs_real", s - r);
        let best = Augmentation::ALL
            .iter()
            .filter_map(|a| at(&format!("real+{}", a.name()), 10))
            .fold(f64::NEG_INFINITY, f64::max);
        report.set("augmentation_gain_k10_vs_best_handcrafted", s - best);
    }
    report.meta.insert(
        "augmentation".into(),
        json!({
            "seeds": AUGMENTATION_SEEDS,
            "metric": "balanced accuracy on the real test split",
            "curves": curves.iter().map(|c| json!({
                "method": c.method,
                "points": c.points.iter().map(|(k, m, sd)| json!({"k": k, "mean": m, "sd": sd})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    );
}
