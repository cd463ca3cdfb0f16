//! Anomaly scoring on host arrays: the background model of the likelihood ratio, calibrated
//! p-values, AUPRC, and the artefacts the benchmark injects.
//!
//! Everything here works in the run's normalised units (per-channel z-scores), where a
//! standard deviation is 1; the artefacts are stated in those units, so "a 4 sd step" means
//! the same on every data set.

use rand::rngs::StdRng;
use rand::Rng;

use crate::normal;

/// The background model of the likelihood-ratio score (Ren et al. 2019): a per-channel
/// Gaussian autoregression, which captures the low-level statistics (scale, spectrum) and
/// nothing else. Step `t` is predicted from the `min(t, order)` steps before it, each prefix
/// order fitted by least squares on the training windows, so the window's density is exact
/// (a product of proper conditionals), not a conditional likelihood that ignores the first
/// steps.
#[derive(Debug, Clone)]
pub struct ArBackground {
    /// The largest order.
    pub order: usize,
    /// `[channel][lags]`: intercept then coefficients of lags 1..=lags, for lags 0..=order.
    coefs: Vec<Vec<Vec<f64>>>,
    /// `[channel][lags]`: the residual variance of that prefix order.
    var: Vec<Vec<f64>>,
}

impl ArBackground {
    /// Fits AR(0..=order) per channel on windows `x` (`[n, channels, time]`, normalised).
    pub fn fit(x: &[f32], channels: usize, time: usize, order: usize) -> ArBackground {
        let order = order.min(time.saturating_sub(1));
        let n = x.len() / (channels * time).max(1);
        let mut coefs = Vec::with_capacity(channels);
        let mut var = Vec::with_capacity(channels);
        for c in 0..channels {
            let rows: Vec<&[f32]> = (0..n)
                .map(|i| &x[(i * channels + c) * time..(i * channels + c + 1) * time])
                .collect();
            let (mut cs, mut vs) = (Vec::new(), Vec::new());
            for p in 0..=order {
                let (b, v) = least_squares_ar(&rows, p);
                cs.push(b);
                vs.push(v);
            }
            coefs.push(cs);
            var.push(vs);
        }
        ArBackground { order, coefs, var }
    }

    /// Per-element log-density of one window `[channels, time]`: `log p(x_ct | x_c,<t)`, nats.
    pub fn elements(&self, window: &[f32], channels: usize, time: usize) -> Vec<f64> {
        self.conditionals(window, channels, time)
            .map(|(r, v)| {
                -0.5 * (r * r / v + v.ln() + std::f64::consts::LN_2 + std::f64::consts::PI.ln())
            })
            .collect()
    }

    /// Per-element standardised residual of one window `[channels, time]`,
    /// `(x_ct − E[x_ct | x_c,<t]) / sd`: i.i.d. N(0, 1) under the background.
    pub fn residuals(&self, window: &[f32], channels: usize, time: usize) -> Vec<f64> {
        self.conditionals(window, channels, time)
            .map(|(r, v)| r / v.sqrt())
            .collect()
    }

    /// Per element, channel by channel: the residual from the conditional mean and the
    /// conditional variance.
    fn conditionals<'a>(
        &'a self,
        window: &'a [f32],
        channels: usize,
        time: usize,
    ) -> impl Iterator<Item = (f64, f64)> + 'a {
        (0..channels).flat_map(move |c| {
            let row = &window[c * time..(c + 1) * time];
            (0..time).map(move |t| {
                let p = t.min(self.order);
                let b = &self.coefs[c][p];
                let mean = b[0] + (1..=p).map(|k| b[k] * row[t - k] as f64).sum::<f64>();
                (row[t] as f64 - mean, self.var[c][p])
            })
        })
    }

    /// The log-density of one window, nats.
    pub fn log_likelihood(&self, window: &[f32], channels: usize, time: usize) -> f64 {
        self.elements(window, channels, time).iter().sum()
    }
}

/// AR(`p`) with intercept fitted by least squares on every step `t ≥ p` of every row;
/// returns the coefficients (intercept first) and the residual variance (floored, so a
/// constant training channel still gives a finite density).
fn least_squares_ar(rows: &[&[f32]], p: usize) -> (Vec<f64>, f64) {
    let d = p + 1;
    let mut ata = vec![0.0; d * d];
    let mut atb = vec![0.0; d];
    let mut feat = vec![0.0; d];
    let mut count = 0usize;
    for row in rows {
        for t in p..row.len() {
            feat[0] = 1.0;
            for k in 1..=p {
                feat[k] = row[t - k] as f64;
            }
            let y = row[t] as f64;
            for i in 0..d {
                atb[i] += feat[i] * y;
                for j in 0..d {
                    ata[i * d + j] += feat[i] * feat[j];
                }
            }
            count += 1;
        }
    }
    // A small ridge keeps the system solvable for constant or collinear training data.
    for i in 0..d {
        ata[i * d + i] += 1e-6 * count.max(1) as f64;
    }
    let b = solve(ata, atb, d);
    let mut sse = 0.0;
    for row in rows {
        for t in p..row.len() {
            let pred = b[0] + (1..=p).map(|k| b[k] * row[t - k] as f64).sum::<f64>();
            sse += (row[t] as f64 - pred).powi(2);
        }
    }
    (b, (sse / count.max(1) as f64).max(1e-6))
}

/// Solves the `d × d` system `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, d: usize) -> Vec<f64> {
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&i, &j| a[i * d + col].abs().total_cmp(&a[j * d + col].abs()))
            .unwrap_or(col);
        if pivot != col {
            for k in 0..d {
                a.swap(col * d + k, pivot * d + k);
            }
            b.swap(col, pivot);
        }
        let diag = a[col * d + col];
        if diag.abs() < 1e-300 {
            continue;
        }
        for r in col + 1..d {
            let f = a[r * d + col] / diag;
            for k in col..d {
                a[r * d + k] -= f * a[col * d + k];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; d];
    for r in (0..d).rev() {
        let s: f64 = (r + 1..d).map(|k| a[r * d + k] * x[k]).sum();
        let diag = a[r * d + r];
        x[r] = if diag.abs() < 1e-300 {
            0.0
        } else {
            (b[r] - s) / diag
        };
    }
    x
}

/// Empirical p-values of anomaly `scores` (higher = more anomalous) against `reference`
/// scores of clean windows: `(1 + #{r ≥ s}) / (n + 1)`, the conformal p-value, so that on
/// clean data exchangeable with the reference `P(p ≤ α) ≤ α` (and ≈ α).
pub fn p_values(scores: &[f64], reference: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = reference.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    scores
        .iter()
        .map(|s| {
            if s.is_nan() {
                return f64::NAN;
            }
            let below = sorted.partition_point(|r| r < s);
            (1.0 + (sorted.len() - below) as f64) / (n + 1.0)
        })
        .collect()
}

/// Area under the precision–recall curve as average precision (`sklearn`'s
/// `average_precision_score`): Σ (R_k − R_{k−1}) P_k over thresholds at each distinct score,
/// highest first.
pub fn auprc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            if labels[idx[j]] {
                tp += 1;
            } else {
                fp += 1;
            }
            j += 1;
        }
        let recall = tp as f64 / positives as f64;
        ap += (recall - last_recall) * tp as f64 / (tp + fp) as f64;
        last_recall = recall;
        i = j;
    }
    ap
}

/// Kolmogorov–Smirnov statistic of `p` against the uniform distribution on [0, 1].
pub fn ks_uniform(p: &[f64]) -> f64 {
    let mut s: Vec<f64> = p.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, v)| (v - i as f64 / n).max((i + 1) as f64 / n - v))
        .fold(0.0, f64::max)
}

/// The artefact types the benchmark injects, each in the run's normalised units (sd 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artefact {
    /// One channel holds its value at the stretch's onset for the stretch (a loose electrode).
    FlatChannel,
    /// Every channel holds its onset value for the stretch (an amplifier dropout).
    FlatAll,
    /// One channel jumps by ±4 sd from the onset to the end of the window (an electrode pop).
    Step,
    /// One sample of one channel moves by ±10 sd.
    Spike,
    /// A 50 Hz sinusoid of amplitude 1.5 sd on every channel for the stretch (0.4 × the
    /// sampling rate when 50 Hz is not below Nyquist).
    LineNoise,
    /// White noise of sd 3 added to one channel for the stretch (muscle).
    Burst,
    /// One channel clipped at ±1 sd for the stretch (an amplifier at its rail).
    Clipping,
    /// A half-sine of 5 sd lasting 0.4 s (at most half the window) on every channel (a blink).
    Blink,
}

impl Artefact {
    /// Every type, in report order.
    pub const ALL: [Artefact; 8] = [
        Artefact::FlatChannel,
        Artefact::FlatAll,
        Artefact::Step,
        Artefact::Spike,
        Artefact::LineNoise,
        Artefact::Burst,
        Artefact::Clipping,
        Artefact::Blink,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Artefact::FlatChannel => "flat_channel",
            Artefact::FlatAll => "flat_all",
            Artefact::Step => "step",
            Artefact::Spike => "spike",
            Artefact::LineNoise => "line_noise",
            Artefact::Burst => "burst",
            Artefact::Clipping => "clipping",
            Artefact::Blink => "blink",
        }
    }

    /// Injects this artefact into `window` (`[channels, time]`, normalised units, sampled at
    /// `sfreq`) in place, at a stretch drawn from `rng`, and returns where it is.
    pub fn inject(
        self,
        window: &mut [f32],
        channels: usize,
        time: usize,
        sfreq: f64,
        rng: &mut StdRng,
    ) -> Injected {
        // A quarter of the window, somewhere inside it.
        let len = (time / 4).max(1);
        let start = rng.random_range(0..=time - len);
        let channel = rng.random_range(0..channels);
        let sign: f64 = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let row = |c: usize| c * time..(c + 1) * time;
        match self {
            Artefact::FlatChannel | Artefact::FlatAll => {
                let cs: Vec<usize> = if self == Artefact::FlatChannel {
                    vec![channel]
                } else {
                    (0..channels).collect()
                };
                for &c in &cs {
                    let r = &mut window[row(c)];
                    let v = r[start];
                    r[start..start + len].iter_mut().for_each(|x| *x = v);
                }
                Injected::at(
                    start,
                    len,
                    (self == Artefact::FlatChannel).then_some(channel),
                )
            }
            Artefact::Step => {
                let lo = time / 8;
                let onset = rng.random_range(lo..=(time - 1 - lo).max(lo));
                window[row(channel)][onset..]
                    .iter_mut()
                    .for_each(|x| *x += (4.0 * sign) as f32);
                Injected::at(onset, time - onset, Some(channel))
            }
            Artefact::Spike => {
                let at = rng.random_range(0..time);
                window[row(channel)][at] += (10.0 * sign) as f32;
                Injected::at(at, 1, Some(channel))
            }
            Artefact::LineNoise => {
                let f = line_frequency(sfreq);
                let phase = rng.random_range(0.0..std::f64::consts::TAU);
                for c in 0..channels {
                    let r = &mut window[row(c)];
                    for (t, x) in r[start..start + len].iter_mut().enumerate() {
                        let arg = std::f64::consts::TAU * f * (start + t) as f64 / sfreq + phase;
                        *x += (1.5 * arg.sin()) as f32;
                    }
                }
                Injected::at(start, len, None)
            }
            Artefact::Burst => {
                let r = &mut window[row(channel)];
                for x in &mut r[start..start + len] {
                    *x += (3.0 * normal(rng)) as f32;
                }
                Injected::at(start, len, Some(channel))
            }
            Artefact::Clipping => {
                let r = &mut window[row(channel)];
                for x in &mut r[start..start + len] {
                    *x = x.clamp(-1.0, 1.0);
                }
                Injected::at(start, len, Some(channel))
            }
            Artefact::Blink => {
                let len = ((0.4 * sfreq).round() as usize).clamp(1, (time / 2).max(1));
                let start = rng.random_range(0..=time - len);
                for c in 0..channels {
                    let r = &mut window[row(c)];
                    for (t, x) in r[start..start + len].iter_mut().enumerate() {
                        let arg = std::f64::consts::PI * (t as f64 + 0.5) / len as f64;
                        *x += (5.0 * sign * arg.sin()) as f32;
                    }
                }
                Injected::at(start, len, None)
            }
        }
    }
}

/// The mains frequency the line-noise artefact uses at `sfreq`: 50 Hz, or 0.4 × `sfreq` when
/// 50 Hz is not below 0.4 × `sfreq` (so it is never aliased).
pub fn line_frequency(sfreq: f64) -> f64 {
    if 50.0 < 0.4 * sfreq {
        50.0
    } else {
        0.4 * sfreq
    }
}

/// Where an artefact was injected: steps `start..start + len` of one channel or of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// First step.
    pub start: usize,
    /// Steps.
    pub len: usize,
    /// The channel, or `None` for every channel.
    pub channel: Option<usize>,
}

impl Injected {
    fn at(start: usize, len: usize, channel: Option<usize>) -> Injected {
        Injected {
            start,
            len,
            channel,
        }
    }

    /// Whether step `t` falls inside the stretch.
    pub fn contains(&self, t: usize) -> bool {
        (self.start..self.start + self.len).contains(&t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const C: usize = 3;
    const T: usize = 128;
    const FS: f64 = 256.0;

    fn clean(seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..C * T).map(|_| normal(&mut rng) as f32).collect()
    }

    /// Injects `a` into a fresh window and returns (before, after, where).
    fn injected(a: Artefact, seed: u64) -> (Vec<f32>, Vec<f32>, Injected) {
        let before = clean(seed);
        let mut after = before.clone();
        let mut rng = StdRng::seed_from_u64(seed + 100);
        let at = a.inject(&mut after, C, T, FS, &mut rng);
        (before, after, at)
    }

    /// `after − before` per element, `[channels][time]`.
    fn diff(before: &[f32], after: &[f32]) -> Vec<Vec<f64>> {
        (0..C)
            .map(|c| {
                (0..T)
                    .map(|t| (after[c * T + t] - before[c * T + t]) as f64)
                    .collect()
            })
            .collect()
    }

    /// Every element outside the stretch (and outside its channel, when it has one) is
    /// untouched.
    fn untouched_outside(before: &[f32], after: &[f32], at: Injected) {
        for c in 0..C {
            for t in 0..T {
                let inside = at.contains(t) && at.channel.is_none_or(|k| k == c);
                if !inside {
                    assert_eq!(before[c * T + t], after[c * T + t], "c {c} t {t} {at:?}");
                }
            }
        }
    }

    #[test]
    fn flat_lines_hold_the_onset_value_over_the_stretch() {
        for seed in 0..5 {
            let (b, a, at) = injected(Artefact::FlatChannel, seed);
            let c = at.channel.unwrap();
            assert_eq!(at.len, T / 4);
            let v = b[c * T + at.start];
            assert!((at.start..at.start + at.len).all(|t| a[c * T + t] == v));
            untouched_outside(&b, &a, at);
            let (b, a, at) = injected(Artefact::FlatAll, seed);
            assert_eq!(at.channel, None);
            for c in 0..C {
                let v = b[c * T + at.start];
                assert!((at.start..at.start + at.len).all(|t| a[c * T + t] == v));
            }
            untouched_outside(&b, &a, at);
        }
    }

    #[test]
    fn a_step_adds_four_sd_from_its_onset_to_the_end() {
        for seed in 0..5 {
            let (b, a, at) = injected(Artefact::Step, seed);
            let c = at.channel.unwrap();
            assert_eq!(at.start + at.len, T);
            let d = diff(&b, &a);
            let jump = d[c][at.start];
            assert!((jump.abs() - 4.0).abs() < 1e-5, "{jump}");
            assert!((at.start..T).all(|t| (d[c][t] - jump).abs() < 1e-5));
            untouched_outside(&b, &a, at);
        }
    }

    #[test]
    fn a_spike_moves_one_sample_by_ten_sd() {
        for seed in 0..5 {
            let (b, a, at) = injected(Artefact::Spike, seed);
            let d = diff(&b, &a);
            assert_eq!(at.len, 1);
            assert!((d[at.channel.unwrap()][at.start].abs() - 10.0).abs() < 1e-4);
            untouched_outside(&b, &a, at);
        }
    }

    #[test]
    fn line_noise_is_a_fifty_hertz_sinusoid_of_amplitude_one_and_a_half() {
        let (b, a, at) = injected(Artefact::LineNoise, 1);
        let d = diff(&b, &a);
        for row in &d {
            let s = &row[at.start..at.start + at.len];
            // A sinusoid of frequency f satisfies s[t+1] + s[t−1] = 2 cos(2π f / fs) s[t].
            let k = 2.0 * (std::f64::consts::TAU * 50.0 / FS).cos();
            for t in 1..s.len() - 1 {
                assert!((s[t + 1] + s[t - 1] - k * s[t]).abs() < 1e-4);
            }
            let peak = s.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(peak > 1.4 && peak <= 1.5 + 1e-5, "{peak}");
        }
        untouched_outside(&b, &a, at);
        assert_eq!(line_frequency(100.0), 40.0);
        assert_eq!(line_frequency(256.0), 50.0);
    }

    #[test]
    fn a_burst_adds_noise_of_sd_three_on_one_channel() {
        let (b, a, at) = injected(Artefact::Burst, 2);
        let d = diff(&b, &a);
        let s = &d[at.channel.unwrap()][at.start..at.start + at.len];
        let sd = (s.iter().map(|v| v * v).sum::<f64>() / s.len() as f64).sqrt();
        assert!((sd - 3.0).abs() < 0.8, "{sd}");
        untouched_outside(&b, &a, at);
    }

    #[test]
    fn clipping_holds_one_channel_within_one_sd() {
        let (b, a, at) = injected(Artefact::Clipping, 3);
        let c = at.channel.unwrap();
        for t in at.start..at.start + at.len {
            let (x, y) = (b[c * T + t], a[c * T + t]);
            assert_eq!(y, x.clamp(-1.0, 1.0));
        }
        assert!((at.start..at.start + at.len).any(|t| b[c * T + t].abs() > 1.0));
        untouched_outside(&b, &a, at);
    }

    #[test]
    fn a_blink_is_a_half_sine_of_five_sd_lasting_0_4_s_on_every_channel() {
        let (b, a, at) = injected(Artefact::Blink, 4);
        // 0.4 s is 102 steps at 256 Hz, more than half the 128-step window: capped at half
        assert_eq!(at.len, ((0.4 * FS).round() as usize).min(T / 2));
        let d = diff(&b, &a);
        for row in &d {
            let mid = row[at.start + at.len / 2];
            assert!((mid.abs() - 5.0).abs() < 0.01, "{mid}");
            assert!(row[at.start].abs() < 0.2);
        }
        untouched_outside(&b, &a, at);
    }

    #[test]
    fn the_background_recovers_an_ar2_and_its_density_is_exact() {
        // x_t = 1.2 x_{t−1} − 0.5 x_{t−2} + e_t, e ~ N(0, 0.25)
        let mut rng = StdRng::seed_from_u64(7);
        let (n, t) = (200, 64);
        let mut x = Vec::with_capacity(n * t);
        for _ in 0..n {
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for _ in 0..50 + t {
                let v = 1.2 * a - 0.5 * b + 0.5 * normal(&mut rng);
                b = a;
                a = v;
            }
            for _ in 0..t {
                let v = 1.2 * a - 0.5 * b + 0.5 * normal(&mut rng);
                b = a;
                a = v;
                x.push(v as f32);
            }
        }
        let bg = ArBackground::fit(&x, 1, t, 4);
        let c = &bg.coefs[0][2];
        assert!(
            (c[1] - 1.2).abs() < 0.03 && (c[2] + 0.5).abs() < 0.03,
            "{c:?}"
        );
        assert!((bg.var[0][4] - 0.25).abs() < 0.01);
        // The elements are Gaussian log-densities of the residuals: summed they are the
        // window's density, and its value at step t ≥ order uses the full order.
        let w = &x[..t];
        let e = bg.elements(w, 1, t);
        assert!((e.iter().sum::<f64>() - bg.log_likelihood(w, 1, t)).abs() < 1e-9);
        let b4 = &bg.coefs[0][4];
        let pred = b4[0] + (1..=4).map(|k| b4[k] * w[10 - k] as f64).sum::<f64>();
        let v = bg.var[0][4];
        let want = -0.5 * ((w[10] as f64 - pred).powi(2) / v + (std::f64::consts::TAU * v).ln());
        assert!((e[10] - want).abs() < 1e-9);
    }

    #[test]
    fn conformal_p_values_count_the_reference_at_or_above() {
        let reference = [1.0, 2.0, 3.0, 4.0];
        let p = p_values(&[0.5, 2.0, 4.5], &reference);
        assert_eq!(p, vec![1.0, 4.0 / 5.0, 1.0 / 5.0]);
        // On scores exchangeable with the reference they are uniform.
        let mut rng = StdRng::seed_from_u64(3);
        let r: Vec<f64> = (0..2000).map(|_| normal(&mut rng)).collect();
        let s: Vec<f64> = (0..2000).map(|_| normal(&mut rng)).collect();
        assert!(ks_uniform(&p_values(&s, &r)) < 0.05);
        let shifted: Vec<f64> = s.iter().map(|v| v + 1.0).collect();
        assert!(ks_uniform(&p_values(&shifted, &r)) > 0.2);
    }

    #[test]
    fn average_precision_matches_sklearn() {
        // sklearn.metrics.average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.8333…
        let ap = auprc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12);
        assert_eq!(auprc(&[1.0, 2.0], &[false, true]), 1.0);
    }
}
