//! Amplitude, correlation, autocorrelation and spike-train statistics of `[n, channels, time]`
//! windows.

use crate::View;

/// The two empirical CDFs just after each distinct value of `a ∪ b`: `(x, F_a(x), F_b(x))` in
/// increasing `x`. Empty when either side is.
pub(crate) fn cdf_steps(a: &[f64], b: &[f64]) -> Vec<(f64, f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return Vec::new();
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j) = (0usize, 0usize);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        // Step past every copy of the smallest remaining value on both sides, so ties move
        // together.
        let x = match (a.get(i), b.get(j)) {
            (Some(p), Some(q)) => p.min(*q),
            (Some(p), None) => *p,
            (None, Some(q)) => *q,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        out.push((x, i as f64 / a.len() as f64, j as f64 / b.len() as f64));
    }
    out
}

/// Two-sample Kolmogorov–Smirnov statistic `sup |F_a − F_b|` (`scipy.stats.ks_2samp(a,
/// b).statistic`). NaN when either side is empty.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let steps = cdf_steps(a, b);
    if steps.is_empty() {
        return f64::NAN;
    }
    steps
        .iter()
        .map(|(_, fa, fb)| (fa - fb).abs())
        .fold(0.0, f64::max)
}

/// Every value of channel `c`, over all windows and time steps.
pub fn channel_values(v: &View, c: usize) -> Vec<f64> {
    (0..v.n)
        .flat_map(|i| v.row(i, c).iter().map(|x| *x as f64))
        .collect()
}

/// Pearson correlation of every channel pair `a < b`, pooled over all windows and time steps
/// (`np.corrcoef` of the channels concatenated over windows). A channel without variance
/// correlates 0 with everything.
pub fn correlation_pairs(v: &View) -> Vec<f64> {
    let c = v.channels;
    let cols: Vec<Vec<f64>> = (0..c)
        .map(|ch| {
            let x = channel_values(v, ch);
            let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
            x.into_iter().map(|x| x - mean).collect()
        })
        .collect();
    let norm: Vec<f64> = cols
        .iter()
        .map(|x| x.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let mut out = Vec::with_capacity(c * c.saturating_sub(1) / 2);
    for a in 0..c {
        for b in a + 1..c {
            let dot: f64 = cols[a].iter().zip(&cols[b]).map(|(x, y)| x * y).sum();
            let d = norm[a] * norm[b];
            out.push(if d > 0.0 { dot / d } else { 0.0 });
        }
    }
    out
}

/// Mean absolute difference of two equally long lists; NaN when empty.
pub fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return f64::NAN;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// The largest lag the autocorrelation covers: half a second, at most `time − 1`, at least 1.
pub fn max_lag(time: usize, sfreq: f64) -> usize {
    ((0.5 * sfreq).round() as usize).clamp(1, time.saturating_sub(1).max(1))
}

/// Autocorrelation of one demeaned row at lags `0..=lags`: `Σ x_t x_{t+k} / Σ x_t²`.
/// `None` for a constant row.
fn row_acf(row: &[f32], lags: usize) -> Option<Vec<f64>> {
    let mean = row.iter().map(|v| *v as f64).sum::<f64>() / row.len() as f64;
    let x: Vec<f64> = row.iter().map(|v| *v as f64 - mean).collect();
    let var: f64 = x.iter().map(|v| v * v).sum();
    if var <= 0.0 {
        return None;
    }
    Some(
        (0..=lags.min(x.len() - 1))
            .map(|k| {
                x[..x.len() - k]
                    .iter()
                    .zip(&x[k..])
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    / var
            })
            .collect(),
    )
}

/// Autocorrelation at lags `0..=lags`, averaged over every (window, channel) row that is not
/// constant. NaN entries when every row is constant.
pub fn mean_acf(v: &View, lags: usize) -> Vec<f64> {
    let mut sum = vec![0f64; lags + 1];
    let mut count = 0usize;
    for i in 0..v.n {
        for c in 0..v.channels {
            if let Some(a) = row_acf(v.row(i, c), lags) {
                for (s, x) in sum.iter_mut().zip(a) {
                    *s += x;
                }
                count += 1;
            }
        }
    }
    sum.into_iter().map(|s| s / count as f64).collect()
}

/// Mean `|acf_s(k) − acf_r(k)|` over lags `1..=lags`.
pub fn acf_distance(s: &[f64], r: &[f64]) -> f64 {
    mean_abs_diff(&s[1..], &r[1..])
}

/// Per-channel statistics of spike counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeStats {
    /// Mean rate per neuron in spikes/s (mean count per bin × bins per second).
    pub rate_hz: Vec<f64>,
    /// Fano factor per neuron of the spike count per window (`np.var / np.mean` over windows);
    /// NaN for a silent neuron.
    pub fano: Vec<f64>,
    /// Golomb's synchrony χ²: variance over bins of the population mean count divided by the
    /// mean over neurons of each neuron's variance over bins. 1 = fully synchronous, ≈ 1/N for
    /// independent neurons.
    pub synchrony: f64,
}

impl SpikeStats {
    /// The statistics of `v` (counts) binned at `sfreq` bins per second.
    pub fn of(v: &View, sfreq: f64) -> SpikeStats {
        let (n, c, t) = (v.n, v.channels, v.time);
        let mut rate_hz = Vec::with_capacity(c);
        let mut fano = Vec::with_capacity(c);
        let mut var_sum = 0.0;
        for ch in 0..c {
            let per_window: Vec<f64> = (0..n)
                .map(|i| v.row(i, ch).iter().map(|x| *x as f64).sum())
                .collect();
            let (m, var) = mean_var(&per_window);
            rate_hz.push(m / t as f64 * sfreq);
            fano.push(if m > 0.0 { var / m } else { f64::NAN });
            var_sum += mean_var(&channel_values(v, ch)).1;
        }
        let pop: Vec<f64> = (0..n)
            .flat_map(|i| {
                (0..t).map(move |k| (0..c).map(|ch| v.row(i, ch)[k] as f64).sum::<f64>() / c as f64)
            })
            .collect();
        let mean_var_each = var_sum / c as f64;
        SpikeStats {
            rate_hz,
            fano,
            synchrony: if mean_var_each > 0.0 {
                mean_var(&pop).1 / mean_var_each
            } else {
                f64::NAN
            },
        }
    }
}

/// Per-column z-scoring fitted on rows, for linear classifiers: each standardised row gets a
/// constant 1 appended (the intercept's input).
#[derive(Debug, Clone)]
pub(crate) struct Standardiser {
    pub(crate) mean: Vec<f64>,
    pub(crate) scale: Vec<f64>,
}

impl Standardiser {
    /// Column means and standard deviations of `x` (equal-length rows); a column whose variance
    /// is at most `min_var` keeps scale 1.
    pub(crate) fn fit(x: &[Vec<f64>], min_var: f64) -> Standardiser {
        let d = x.first().map_or(0, Vec::len);
        let (mut mean, mut scale) = (vec![0.0; d], vec![1.0; d]);
        for j in 0..d {
            let col: Vec<f64> = x.iter().map(|r| r[j]).collect();
            let (m, v) = mean_var(&col);
            mean[j] = m;
            scale[j] = if v > min_var { v.sqrt() } else { 1.0 };
        }
        Standardiser { mean, scale }
    }

    /// `row` standardised, with 1 appended.
    pub(crate) fn apply(&self, row: &[f64]) -> Vec<f64> {
        let mut z: Vec<f64> = row
            .iter()
            .zip(self.mean.iter().zip(&self.scale))
            .map(|(v, (m, s))| (v - m) / s)
            .collect();
        z.push(1.0);
        z
    }
}

/// Mean and population variance (`ddof = 0`).
pub fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n)
}

/// Mean of the finite entries; NaN when there are none.
pub fn finite_mean(x: &[f64]) -> f64 {
    let f: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    f.iter().sum::<f64>() / f.len() as f64
}

/// Pearson correlation of two equally long lists; NaN when either is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let cov = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / a.len() as f64;
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_matches_scipy() {
        //   from scipy.stats import ks_2samp   # SciPy 1.17.1
        //   a = [0.1*i*i % 3.7 for i in range(40)]; b = [0.37*i % 2.9 + 0.3 for i in range(55)]
        //   print(ks_2samp(a, b).statistic)
        let a: Vec<f64> = (0..40).map(|i| (0.1 * (i * i) as f64) % 3.7).collect();
        let b: Vec<f64> = (0..55).map(|i| (0.37 * i as f64) % 2.9 + 0.3).collect();
        assert!((ks_statistic(&a, &b) - 0.18863636363636363).abs() < 1e-12);
        assert_eq!(ks_statistic(&a, &a), 0.0);
        // Disjoint supports: the statistic is 1.
        let far: Vec<f64> = a.iter().map(|v| v + 100.0).collect();
        assert_eq!(ks_statistic(&a, &far), 1.0);
        // Ties across the two sides move together.
        assert_eq!(ks_statistic(&[1.0, 1.0, 2.0], &[1.0, 2.0, 2.0]), 1.0 / 3.0);
    }

    #[test]
    fn correlation_and_acf_match_numpy() {
        // Two windows × 3 channels × 6 steps: x[w, c, t] = sin(0.9 t + w) · (c + 1) + 0.1 c t².
        //   import numpy as np
        //   x = np.array([[[np.sin(0.9*t + w)*(c+1) + 0.1*c*t*t for t in range(6)]
        //                  for c in range(3)] for w in range(2)], dtype=np.float32).astype(float)
        //   r = np.corrcoef(np.concatenate(x, axis=1)); print(r[0,1], r[0,2], r[1,2])
        //   def acf(v, L):
        //       v = v - v.mean(); return [np.dot(v[:len(v)-k], v[k:]) / np.dot(v, v) for k in range(L+1)]
        //   print(np.mean([acf(x[w, c], 3) for w in range(2) for c in range(3)], axis=0))
        let mut x = Vec::new();
        for w in 0..2 {
            for c in 0..3 {
                for t in 0..6 {
                    let t = t as f64;
                    x.push(
                        ((0.9 * t + w as f64).sin() * (c + 1) as f64 + 0.1 * c as f64 * t * t)
                            as f32,
                    );
                }
            }
        }
        let v = View {
            values: &x,
            n: 2,
            channels: 3,
            time: 6,
        };
        let r = correlation_pairs(&v);
        let want = [0.8249967574320557, 0.5792724697956462, 0.9385606575062132];
        for (got, want) in r.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let acf = mean_acf(&v, 3);
        let want = [
            1.0,
            0.32435256884083574,
            -0.33896583689126475,
            -0.4153419976563044,
        ];
        for (got, want) in acf.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn spike_statistics_match_hand_computation() {
        // Two windows × 2 neurons × 4 bins at 100 bins/s.
        let x = [
            1., 0., 2., 1., /* n1 */ 0., 0., 0., 0., //
            0., 1., 0., 1., /* n1 */ 1., 0., 1., 0.,
        ];
        let v = View {
            values: &x,
            n: 2,
            channels: 2,
            time: 4,
        };
        let s = SpikeStats::of(&v, 100.0);
        // Neuron 0: counts per window 4 and 2 → mean 3, var 1, rate 3/4·100 = 75 Hz, Fano 1/3.
        assert_eq!(s.rate_hz, vec![75.0, 25.0]);
        assert!((s.fano[0] - 1.0 / 3.0).abs() < 1e-12);
        // Neuron 1: counts 0 and 2 → mean 1, var 1 → Fano 1.
        assert!((s.fano[1] - 1.0).abs() < 1e-12);
        // Population mean per bin: .5 0 1 .5 .5 .5 .5 .5 → var 0.0625; neuron variances over
        // bins: n0 values 1 0 2 1 0 1 0 1 (mean .75, var .4375), n1 0 0 0 0 1 0 1 0 (.1875).
        assert!((s.synchrony - 0.0625 / ((0.4375 + 0.1875) / 2.0)).abs() < 1e-12);
    }
}
