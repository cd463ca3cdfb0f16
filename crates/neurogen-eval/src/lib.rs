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
