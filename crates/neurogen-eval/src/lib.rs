//! Sample-quality metrics on host arrays.
//!
//! The one design decision of this crate: **metrics never touch burn**. They take plain
//! `[n, channels, time]` arrays, so they judge any sample file, ours or another tool's, and give
//! the same number whichever backend produced it.
//!
//! This first slice holds per-channel summary statistics, which `neurogen sample` prints beside
//! the training data's so a user sees at once whether samples sit on the right scale. Spectra,
//! spike statistics and distribution tests build on it.

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

/// Squared Euclidean distance between two rows.
fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum()
}

/// Unbiased squared maximum mean discrepancy (Gretton et al. 2012) between the rows of `x` and
/// of `y` (each `[n, dim]`, flattened), with an RBF kernel whose bandwidth is the median
/// pairwise distance of the pooled rows. Near 0 when both come from one distribution.
///
/// Returns NaN when either side has fewer than two rows.
pub fn mmd2_rbf(x: &[f32], y: &[f32], dim: usize) -> f64 {
    let (xs, ys): (Vec<&[f32]>, Vec<&[f32]>) = (
        x.chunks_exact(dim.max(1)).collect(),
        y.chunks_exact(dim.max(1)).collect(),
    );
    let (n, m) = (xs.len(), ys.len());
    if n < 2 || m < 2 {
        return f64::NAN;
    }
    let pooled: Vec<&[f32]> = xs.iter().chain(&ys).copied().collect();
    let p = pooled.len();
    let mut d = vec![0f64; p * p];
    let mut all = Vec::with_capacity(p * (p - 1) / 2);
    for i in 0..p {
        for j in i + 1..p {
            let v = sq_dist(pooled[i], pooled[j]);
            d[i * p + j] = v;
            d[j * p + i] = v;
            all.push(v);
        }
    }
    all.sort_by(f64::total_cmp);
    let median = all[all.len() / 2].max(1e-12);
    let k = |i: usize, j: usize| (-d[i * p + j] / median).exp();
    let mean_within = |lo: usize, len: usize| {
        let mut s = 0.0;
        for i in lo..lo + len {
            for j in lo..lo + len {
                if i != j {
                    s += k(i, j);
                }
            }
        }
        s / (len * (len - 1)) as f64
    };
    let mut cross = 0.0;
    for i in 0..n {
        for j in n..p {
            cross += k(i, j);
        }
    }
    mean_within(0, n) + mean_within(n, m) - 2.0 * cross / (n * m) as f64
}

/// Mean Euclidean distance between distinct rows of `x` (`[n, dim]`): a spread figure whose
/// ratio between samples and data exposes mode collapse (ratio → 0).
pub fn mean_pairwise_distance(x: &[f32], dim: usize) -> f64 {
    let rows: Vec<&[f32]> = x.chunks_exact(dim.max(1)).collect();
    let n = rows.len();
    if n < 2 {
        return f64::NAN;
    }
    let mut s = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            s += sq_dist(rows[i], rows[j]).sqrt();
        }
    }
    s / (n * (n - 1) / 2) as f64
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

    #[test]
    fn mmd_separates_shifted_draws_and_spread_sees_collapse() {
        // A fixed pseudo-random sequence (LCG → Box–Muller) keeps the test free of dependencies.
        let mut state = 12345u64;
        let mut normal = || {
            let mut u = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (a, b) = (u(), u());
            ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
        };
        let dim = 4;
        let draw = |n: usize, shift: f32, f: &mut dyn FnMut() -> f32| -> Vec<f32> {
            (0..n * dim).map(|_| f() + shift).collect()
        };
        let a = draw(150, 0.0, &mut normal);
        let b = draw(150, 0.0, &mut normal);
        let c = draw(150, 1.0, &mut normal);
        let same = mmd2_rbf(&a, &b, dim);
        let shifted = mmd2_rbf(&a, &c, dim);
        assert!(same.abs() < 0.02, "same distribution: {same}");
        assert!(shifted > 0.1, "shifted: {shifted}");
        // Expected distance between two N(0, I₄) draws is about √(2·4)·0.94 ≈ 2.66.
        let spread = mean_pairwise_distance(&a, dim);
        assert!((spread - 2.66).abs() < 0.2, "{spread}");
        let collapsed = vec![0.5f32; 150 * dim];
        assert_eq!(mean_pairwise_distance(&collapsed, dim), 0.0);
    }
}
