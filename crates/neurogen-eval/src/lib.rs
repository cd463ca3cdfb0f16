//! Sample-quality metrics and figures on host arrays.
//!
//! The one design decision of this crate: **metrics never touch burn**. They take plain
//! `[n, channels, time]` arrays, so they judge any sample file, ours or another tool's, and give
//! the same number whichever backend produced it. Metrics that need a model (likelihood, latent
//! recovery) are computed by the trainer and handed in as numbers or host arrays.
//!
//! Every definition follows a named SciPy/NumPy function where one exists (Welch PSD, coherence,
//! KS statistic, Wasserstein distance), and the tests paste that function's output as golden
//! numbers.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use neurogen_data::{SignalKind, Signals};

pub mod anomaly;
pub mod augment;
pub mod conditions;
pub mod decoding;
pub mod distribution;
pub mod plot;
pub mod recovery;
pub mod spectral;
pub mod stats;

pub use distribution::{
    auc, c2st_auc, mean_pairwise_distance, mmd2_rbf, mmd2_test, sliced_wasserstein, wasserstein_1d,
};
pub use recovery::{linear_r2, memorisation_ratio, nearest_distances};
pub use spectral::{psd_db_distance, Spectra, Welch, BANDS};
pub use stats::{ks_statistic, SpikeStats};

/// Errors from evaluating or plotting.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The two sets cannot be compared (shapes differ, too few windows, non-finite values).
    #[error("{0}")]
    Invalid(String),
    /// Writing a figure or report failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A borrowed `[n, channels, time]` array.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Row-major values.
    pub values: &'a [f32],
    /// Windows.
    pub n: usize,
    /// Channels per window.
    pub channels: usize,
    /// Samples per channel.
    pub time: usize,
}

impl<'a> View<'a> {
    /// The windows of `s`.
    pub fn of(s: &'a Signals) -> View<'a> {
        View {
            values: &s.values,
            n: s.n,
            channels: s.meta.channels,
            time: s.meta.time,
        }
    }

    /// Window `i`, `[channels, time]`.
    pub fn window(&self, i: usize) -> &'a [f32] {
        let len = self.channels * self.time;
        &self.values[i * len..(i + 1) * len]
    }

    /// Channel `c` of window `i`, `[time]`.
    pub fn row(&self, i: usize, c: usize) -> &'a [f32] {
        let start = (i * self.channels + c) * self.time;
        &self.values[start..start + self.time]
    }
}

/// Mean and standard deviation of one channel over every window and time step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
}

/// Per-channel statistics of `values` laid out `[n, channels, time]`.
///
/// Returns one entry per channel; an empty array gives NaNs.
pub fn channel_stats(values: &[f32], channels: usize, time: usize) -> Vec<ChannelStats> {
    let mut sum = vec![0f64; channels];
    let mut sq = vec![0f64; channels];
    let mut count = vec![0usize; channels];
    for (row_idx, row) in values.chunks(time.max(1)).enumerate() {
        let c = row_idx % channels.max(1);
        for &v in row {
            sum[c] += v as f64;
            sq[c] += (v as f64) * (v as f64);
            count[c] += 1;
        }
    }
    (0..channels)
        .map(|c| {
            let n = count[c] as f64;
            let mean = sum[c] / n;
            ChannelStats {
                mean,
                std: (sq[c] / n - mean * mean).max(0.0).sqrt(),
            }
        })
        .collect()
}

/// A standard normal draw (Box–Muller), so the crate needs no distribution dependency.
pub(crate) fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Windows `[n, channels, time]` for tests, channels named `ch0`, `ch1`, ….
#[cfg(test)]
pub(crate) fn test_signals(
    values: Vec<f32>,
    n: usize,
    channels: usize,
    sfreq: f64,
    kind: SignalKind,
) -> Signals {
    let time = values.len() / (n * channels);
    Signals {
        inputs: None,
        values,
        n,
        meta: neurogen_data::SignalMeta {
            input_names: Vec::new(),
            channels,
            time,
            sfreq,
            channel_names: (0..channels).map(|c| format!("ch{c}")).collect(),
            kind,
            unit: if kind == SignalKind::Counts {
                "count"
            } else {
                "uV"
            }
            .into(),
            label_names: vec![],
        },
        latents: None,
        labels: None,
    }
}

/// Settings of [`compare`]; the defaults are what `neurogen eval` uses.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Lower edge of the PSD-distance range in Hz.
    pub f_lo: f64,
    /// Upper edge of the PSD-distance and coherence range in Hz (clipped to Nyquist).
    pub f_hi: f64,
    /// Windows per side for the pairwise tests (MMD, sliced Wasserstein, C2ST), drawn at
    /// random (seeded) when a side has more.
    pub max_pairwise: usize,
    /// Permutations of the MMD test.
    pub permutations: usize,
    /// Random directions of the sliced Wasserstein distance.
    pub projections: usize,
    /// Cross-validation folds of the C2ST.
    pub folds: usize,
    /// Seed of every random choice above.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            f_lo: 1.0,
            f_hi: 40.0,
            max_pairwise: 256,
            permutations: 200,
            projections: 128,
            folds: 5,
            seed: 0,
        }
    }
}

/// Metric name → value, plus a free-form `meta` object; serialised flat as `report.json`.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The metrics; undefined ones are left out, never written as NaN.
    pub metrics: BTreeMap<String, f64>,
    /// What was compared, with which settings.
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    /// Records `value` under `name` when it is finite.
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.metrics.insert(name.into(), value);
        }
    }

    /// The value of `name`, if defined.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// Adds every metric of `floor` (the same metrics between two sets of real windows) as
    /// `<metric>_floor`, before any `@<condition>` suffix: `mmd2_floor`,
    /// `psd_db_distance_floor@left`.
    pub fn add_floor(&mut self, floor: &Report) {
        for (k, v) in &floor.metrics {
            self.set(floor_name(k), *v);
        }
    }

    /// The flat JSON object: every metric, then `meta`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut out: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        out.insert("meta".into(), serde_json::Value::Object(self.meta.clone()));
        serde_json::Value::Object(out)
    }
}

/// The name of `metric`'s floor: `_floor` before any `@<condition>` suffix.
pub fn floor_name(metric: &str) -> String {
    match metric.split_once('@') {
        Some((m, cond)) => format!("{m}_floor@{cond}"),
        None => format!("{metric}_floor"),
    }
}

/// The real-vs-real floor of [`compare`]: every metric between `n` windows of `train` (drawn at
/// random, seeded by `opts.seed`) and `reference`, with the same settings. Fresh real data
/// score this; a sample set cannot be asked to come closer to `reference`, and on a recording
/// that drifts the floor is far from zero.
pub fn floor(
    train: &Signals,
    reference: &Signals,
    n: usize,
    opts: &EvalOptions,
) -> Result<Report, EvalError> {
    compare(&floor_windows(train, n, opts.seed), reference, opts)
}

/// The `n` training windows the floor compares (seeded; a stream apart from [`compare`]'s own
/// draws).
pub fn floor_windows(train: &Signals, n: usize, seed: u64) -> Signals {
    subsample(train, n, seed.wrapping_add(0x5eed_f100))
}

/// Checks that two sets of windows can be compared.
fn check_pair(samples: &Signals, reference: &Signals) -> Result<(), EvalError> {
    let (s, r) = (&samples.meta, &reference.meta);
    if (s.channels, s.time) != (r.channels, r.time) {
        return Err(EvalError::Invalid(format!(
            "samples are [{} channels × {} samples] but the reference is [{} × {}]",
            s.channels, s.time, r.channels, r.time
        )));
    }
    for (name, set) in [("samples", samples), ("reference", reference)] {
        if set.n < 2 {
            return Err(EvalError::Invalid(format!(
                "the {name} hold {} window(s); at least 2 are needed",
                set.n
            )));
        }
        if set.values.len() != set.n * set.window_len() {
            return Err(EvalError::Invalid(format!(
                "the {name} hold {} values, not n × channels × time = {}",
                set.values.len(),
                set.n * set.window_len()
            )));
        }
        if let Some(i) = set.values.iter().position(|v| !v.is_finite()) {
            return Err(EvalError::Invalid(format!(
                "the {name} contain a non-finite value (window {})",
                i / set.window_len().max(1)
            )));
        }
    }
    if !(r.sfreq > 0.0 && r.sfreq.is_finite()) {
        return Err(EvalError::Invalid(format!(
            "the sampling rate must be a positive number of Hz, not {}",
            r.sfreq
        )));
    }
    Ok(())
}

/// Up to `max` windows of `s`, chosen at random (seeded) when it has more, in their order.
pub fn subsample(s: &Signals, max: usize, seed: u64) -> Signals {
    if s.n <= max {
        return s.clone();
    }
    let mut idx: Vec<usize> = (0..s.n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed));
    idx.truncate(max);
    idx.sort_unstable();
    s.select(&idx)
}

/// Per-channel `(mean, std)` of the reference, for putting both sides on its scale.
pub fn standardiser(reference: &Signals) -> Vec<(f32, f32)> {
    channel_stats(
        &reference.values,
        reference.meta.channels,
        reference.meta.time,
    )
    .into_iter()
    .map(|s| (s.mean as f32, if s.std > 0.0 { s.std as f32 } else { 1.0 }))
    .collect()
}

/// The windows of `s` flattened, each channel shifted and scaled by `by`.
pub fn standardised(s: &Signals, by: &[(f32, f32)]) -> Vec<f32> {
    let (c, t) = (s.meta.channels, s.meta.time);
    s.values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (m, sd) = by[(i / t) % c];
            (v - m) / sd
        })
        .collect()
}

/// The C2ST's features of each window: per channel the mean, log standard deviation and lag-1
/// autocorrelation, plus (continuous) the log power in each EEG band below Nyquist of the
/// window's Welch PSD, or (counts) the window's population mean and variance.
pub fn window_features(s: &Signals) -> Vec<Vec<f64>> {
    let v = View::of(s);
    let fs = s.meta.sfreq;
    let welch = Welch::new(spectral::nperseg(v.time), fs);
    let bands = welch.band_bins();
    (0..v.n)
        .map(|i| {
            let mut f = Vec::new();
            for c in 0..v.channels {
                let row: Vec<f64> = v.row(i, c).iter().map(|x| *x as f64).collect();
                let (m, var) = stats::mean_var(&row);
                f.push(m);
                f.push((var.sqrt() + 1e-6).ln());
                let lag1 = if var > 0.0 {
                    row.windows(2).map(|w| (w[0] - m) * (w[1] - m)).sum::<f64>()
                        / (var * row.len() as f64)
                } else {
                    0.0
                };
                f.push(lag1);
                if s.meta.kind == SignalKind::Continuous {
                    let p = welch.psd(v.row(i, c));
                    spectral::push_log_band_powers(&p, &bands, &mut f);
                }
            }
            if s.meta.kind == SignalKind::Counts {
                let pop: Vec<f64> = (0..v.time)
                    .map(|k| (0..v.channels).map(|c| v.row(i, c)[k] as f64).sum())
                    .collect();
                let (m, var) = stats::mean_var(&pop);
                f.push(m);
                f.push(var);
            }
            f
        })
        .collect()
}

/// Compares samples with reference windows (both physical units, one shape): the spectral,
/// amplitude and correlation metrics (continuous) or spike statistics (counts), then the
/// distribution tests. Deterministic for `opts.seed`.
pub fn compare(
    samples: &Signals,
    reference: &Signals,
    opts: &EvalOptions,
) -> Result<Report, EvalError> {
    check_pair(samples, reference)?;
    let mut rep = Report::default();
    let (sv, rv) = (View::of(samples), View::of(reference));
    let fs = reference.meta.sfreq;
    let (lo, hi) = spectral::clip_range(opts.f_lo, opts.f_hi, fs);
    let lags = stats::max_lag(rv.time, fs);
    // Pairwise channel (neuron) correlations: NaN, so left out, with a single channel.
    let corr_distance = stats::mean_abs_diff(
        &stats::correlation_pairs(&sv),
        &stats::correlation_pairs(&rv),
    );
    match reference.meta.kind {
        SignalKind::Continuous => {
            let (ss, rs) = (Spectra::of(&sv, fs), Spectra::of(&rv, fs));
            rep.set("psd_db_distance", psd_db_distance(&ss, &rs, lo, hi));
            let mut errors = Vec::new();
            for (name, blo, bhi) in BANDS {
                if let (Some(ps), Some(pr)) = (ss.band_power(blo, bhi), rs.band_power(blo, bhi)) {
                    let e = (ps - pr).abs() / pr;
                    rep.set(format!("band_{name}_rel_error"), e);
                    errors.push(e);
                }
            }
            rep.set("band_rel_error_mean", stats::finite_mean(&errors));
            if rv.channels > 1 {
                rep.set("correlation_distance", corr_distance);
                rep.set(
                    "coherence_distance",
                    stats::mean_abs_diff(
                        &spectral::coherence_pairs(&ss, lo, hi),
                        &spectral::coherence_pairs(&rs, lo, hi),
                    ),
                );
            }
            let ks: Vec<f64> = (0..rv.channels)
                .map(|c| {
                    ks_statistic(
                        &stats::channel_values(&sv, c),
                        &stats::channel_values(&rv, c),
                    )
                })
                .collect();
            rep.set("ks_mean", stats::finite_mean(&ks));
            rep.set("ks_max", ks.iter().copied().fold(f64::NAN, f64::max));
        }
        SignalKind::Counts => {
            let (ss, rs) = (SpikeStats::of(&sv, fs), SpikeStats::of(&rv, fs));
            rep.set("rate_hz_samples", stats::finite_mean(&ss.rate_hz));
            rep.set("rate_hz_reference", stats::finite_mean(&rs.rate_hz));
            rep.set(
                "rate_abs_error_hz",
                stats::mean_abs_diff(&ss.rate_hz, &rs.rate_hz),
            );
            if rv.channels > 2 {
                rep.set("rate_correlation", stats::pearson(&ss.rate_hz, &rs.rate_hz));
            }
            rep.set("fano_samples", stats::finite_mean(&ss.fano));
            rep.set("fano_reference", stats::finite_mean(&rs.fano));
            let both: Vec<(f64, f64)> = ss
                .fano
                .iter()
                .zip(&rs.fano)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| (*a, *b))
                .collect();
            let (fa, fb): (Vec<f64>, Vec<f64>) = both.into_iter().unzip();
            rep.set("fano_abs_error", stats::mean_abs_diff(&fa, &fb));
            rep.set("spike_correlation_distance", corr_distance);
            rep.set("synchrony_samples", ss.synchrony);
            rep.set("synchrony_reference", rs.synchrony);
            rep.set("synchrony_abs_error", (ss.synchrony - rs.synchrony).abs());
        }
    }
    rep.set(
        "acf_distance",
        stats::acf_distance(&stats::mean_acf(&sv, lags), &stats::mean_acf(&rv, lags)),
    );

    // Distribution tests on at most `max_pairwise` windows a side, on the reference's scale.
    let s_sub = subsample(samples, opts.max_pairwise, opts.seed);
    let r_sub = subsample(reference, opts.max_pairwise, opts.seed.wrapping_add(1));
    let by = standardiser(reference);
    let (xs, xr) = (standardised(&s_sub, &by), standardised(&r_sub, &by));
    let dim = samples.window_len();
    let (mmd2, p) = mmd2_test(&xs, &xr, dim, opts.permutations, opts.seed);
    rep.set("mmd2", mmd2);
    rep.set("mmd_p_value", p);
    rep.set(
        "sliced_wasserstein",
        sliced_wasserstein(&xs, &xr, dim, opts.projections, opts.seed),
    );
    rep.set(
        "c2st_auc",
        c2st_auc(
            &window_features(&s_sub),
            &window_features(&r_sub),
            opts.folds,
            opts.seed,
        ),
    );

    let m = &mut rep.meta;
    m.insert("n_samples".into(), samples.n.into());
    m.insert("n_reference".into(), reference.n.into());
    m.insert("n_pairwise".into(), s_sub.n.min(r_sub.n).into());
    m.insert("channels".into(), rv.channels.into());
    m.insert("time".into(), rv.time.into());
    m.insert("sfreq".into(), fs.into());
    m.insert(
        "kind".into(),
        match reference.meta.kind {
            SignalKind::Continuous => "continuous",
            SignalKind::Counts => "counts",
        }
        .into(),
    );
    m.insert("psd_range_hz".into(), serde_json::json!([lo, hi]));
    m.insert("nperseg".into(), spectral::nperseg(rv.time).into());
    m.insert("acf_lags".into(), lags.into());
    m.insert("permutations".into(), opts.permutations.into());
    m.insert("projections".into(), opts.projections.into());
    m.insert("folds".into(), opts.folds.into());
    m.insert("seed".into(), opts.seed.into());
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_follow_the_layout() {
        // Two windows, two channels, three steps: channel 0 holds 1..=6, channel 1 holds 10.
        let v = [
            1.0, 2.0, 3.0, 10.0, 10.0, 10.0, 4.0, 5.0, 6.0, 10.0, 10.0, 10.0,
        ];
        let s = channel_stats(&v, 2, 3);
        assert!((s[0].mean - 3.5).abs() < 1e-12);
        assert!((s[0].std - (35.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert_eq!(
            s[1],
            ChannelStats {
                mean: 10.0,
                std: 0.0
            }
        );
        assert!(channel_stats(&[], 2, 3)[0].mean.is_nan());
    }
}

#[cfg(test)]
mod compare_tests {
    use super::*;

    /// `n` windows of 2 channels × 256 samples at 128 Hz: a sinusoid at `freq` with random phase
    /// and amplitude 3, in unit white noise.
    fn oscillation(n: usize, freq: f64, seed: u64) -> Signals {
        let mut rng = test_rng(seed);
        let (c, t, fs) = (2, 256, 128.0);
        let mut values = Vec::with_capacity(n * c * t);
        for _ in 0..n * c {
            let phase = 2.0 * std::f64::consts::PI * rng.random::<f64>();
            for k in 0..t {
                let s = 3.0 * (2.0 * std::f64::consts::PI * freq * k as f64 / fs + phase).sin();
                values.push((s + normal(&mut rng)) as f32);
            }
        }
        test_signals(values, n, c, fs, SignalKind::Continuous)
    }

    #[test]
    fn two_draws_of_one_process_agree_and_another_frequency_does_not() {
        let opts = EvalOptions::default();
        let a = oscillation(80, 10.0, 1);
        let b = oscillation(80, 10.0, 2);
        let c = oscillation(80, 17.0, 3);
        let same = compare(&a, &b, &opts).unwrap();
        let other = compare(&a, &c, &opts).unwrap();
        let g = |r: &Report, k: &str| r.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert!(g(&same, "psd_db_distance") < 1.0, "{:?}", same.metrics);
        // Most bins in 1–40 Hz are noise floor in both, so the two peaks give ≈ 2 dB on average.
        assert!(g(&other, "psd_db_distance") > 1.5, "{:?}", other.metrics);
        assert!(g(&same, "mmd_p_value") > 0.05, "{:?}", same.metrics);
        assert!(g(&other, "mmd_p_value") < 0.01, "{:?}", other.metrics);
        assert!(g(&same, "c2st_auc") < 0.65, "{:?}", same.metrics);
        assert!(g(&other, "c2st_auc") > 0.95, "{:?}", other.metrics);
        assert!(g(&same, "band_alpha_rel_error") < 0.1);
        assert!(g(&other, "band_alpha_rel_error") > 0.8);
        assert!(g(&same, "ks_mean") < 0.05);
        assert!(g(&same, "acf_distance") < g(&other, "acf_distance"));
        // Channels are independent in both, so correlation and coherence barely differ.
        assert!(g(&same, "correlation_distance") < 0.05);
        assert!(g(&same, "coherence_distance") < 0.05);
        // Deterministic for the seed, and the report is flat JSON with a meta object.
        let again = compare(&a, &b, &opts).unwrap();
        assert_eq!(same.metrics, again.metrics);
        let json = same.to_json();
        assert_eq!(json["meta"]["nperseg"], 256);
        assert!(json["psd_db_distance"].is_f64());
    }

    #[test]
    fn the_floor_of_identical_splits_is_zero_distance() {
        let a = oscillation(60, 10.0, 1);
        let floor = super::floor(&a, &a, a.n, &EvalOptions::default()).unwrap();
        for k in [
            "psd_db_distance",
            "band_rel_error_mean",
            "band_alpha_rel_error",
            "correlation_distance",
            "coherence_distance",
            "ks_mean",
            "ks_max",
            "acf_distance",
            "sliced_wasserstein",
        ] {
            assert_eq!(floor.get(k), Some(0.0), "{k}: {:?}", floor.metrics);
        }
        // Two draws of one process: a floor above zero, and every metric has one.
        let b = oscillation(60, 10.0, 2);
        let opts = EvalOptions::default();
        let mut rep = compare(&b, &a, &opts).unwrap();
        let fl = super::floor(&b, &a, 40, &opts).unwrap();
        assert_eq!(fl.meta["n_samples"], 40);
        rep.add_floor(&fl);
        assert!(rep.get("psd_db_distance_floor").unwrap() > 0.0);
        let plain: Vec<_> = rep
            .metrics
            .keys()
            .filter(|k| !k.contains("_floor"))
            .collect();
        for k in plain {
            assert!(rep.get(&floor_name(k)).is_some(), "no floor for {k}");
        }
        assert_eq!(floor_name("mmd2@left"), "mmd2_floor@left");
    }

    #[test]
    fn spike_floors_of_identical_splits_are_zero() {
        let mut rng = test_rng(5);
        let values = (0..40 * 6 * 50)
            .map(|_| (rng.random::<f64>() < 0.1) as u8 as f32)
            .collect();
        let a = test_signals(values, 40, 6, 100.0, SignalKind::Counts);
        let floor = super::floor(&a, &a, a.n, &EvalOptions::default()).unwrap();
        for k in [
            "rate_abs_error_hz",
            "fano_abs_error",
            "spike_correlation_distance",
            "synchrony_abs_error",
            "acf_distance",
        ] {
            assert_eq!(floor.get(k), Some(0.0), "{k}: {:?}", floor.metrics);
        }
    }

    #[test]
    fn mismatched_or_broken_inputs_are_refused_with_the_reason() {
        let a = oscillation(10, 10.0, 1);
        let mut short = oscillation(10, 10.0, 1);
        short.meta.time = 128;
        short.values.truncate(10 * 2 * 128);
        let e = compare(&a, &short, &EvalOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("[2 channels × 256 samples] but the reference is [2 × 128]"),
            "{e}"
        );
        let mut nan = a.clone();
        nan.values[600] = f32::NAN;
        let e = compare(&nan, &a, &EvalOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the samples contain a non-finite value (window 1)"
        );
        let one = a.select(&[0]);
        let e = compare(&a, &one, &EvalOptions::default()).unwrap_err();
        assert!(e.to_string().contains("reference hold 1 window(s)"), "{e}");
    }

    #[test]
    fn spike_metrics_see_a_rate_change() {
        let counts = |rate: f64, seed: u64| -> Signals {
            let mut rng = test_rng(seed);
            let (c, t) = (6, 100);
            let values = (0..60 * c * t)
                .map(|i| {
                    // Bernoulli bins with a per-neuron rate; neuron k fires at rate·(1 + k/5).
                    let k = (i / t) % c;
                    (rng.random::<f64>() < rate * (1.0 + k as f64 / 5.0)) as u8 as f32
                })
                .collect();
            test_signals(values, 60, c, 100.0, SignalKind::Counts)
        };
        let opts = EvalOptions::default();
        let same = compare(&counts(0.05, 1), &counts(0.05, 2), &opts).unwrap();
        let more = compare(&counts(0.15, 3), &counts(0.05, 2), &opts).unwrap();
        let g = |r: &Report, k: &str| r.get(k).unwrap_or_else(|| panic!("{k} missing"));
        // Rate 0.05/bin × 100 bins/s × mean(1 + k/5 for k < 6) = 5 × 1.5 = 7.5 Hz.
        assert!((g(&same, "rate_hz_reference") - 7.5).abs() < 0.5);
        assert!(g(&same, "rate_abs_error_hz") < 1.0);
        assert!(g(&more, "rate_abs_error_hz") > 10.0);
        assert!(g(&same, "rate_correlation") > 0.8);
        // Bernoulli counts are under-dispersed: Fano = 1 − p.
        assert!((g(&same, "fano_reference") - (1.0 - 0.075)).abs() < 0.15);
        assert!(g(&same, "c2st_auc") < 0.7 && g(&more, "c2st_auc") > 0.95);
        assert!(g(&more, "mmd_p_value") < 0.01);
        assert!(
            same.get("psd_db_distance").is_none(),
            "no spectra for counts"
        );
    }
}
