//! Hand-crafted augmentations of a window `[channels, time]`: the baselines a user would reach
//! for instead of a generative model (Rommel et al. 2022, "Data augmentation for learning
//! predictive models on EEG: a systematic comparison").
//!
//! - `noise`: add white Gaussian noise of 0.1 × each channel's standard deviation;
//! - `time_shift`: roll all channels by one random shift of up to ±10 % of the window (at
//!   least ±1 sample);
//! - `amplitude_scale`: multiply the window by one factor drawn from U(0.8, 1.2);
//! - `ft_surrogate`: the Fourier-transform surrogate — every frequency's phase shifted by one
//!   random angle in [0, 2π), the same for every channel (keeping cross-channel phase
//!   relations), so each channel keeps its amplitude spectrum.
//!
//! On spike counts every augmented value is rounded to the nearest non-negative integer.

use rand::rngs::StdRng;
use rand::Rng;
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// One of the hand-crafted augmentations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Augmentation {
    /// White Gaussian noise.
    Noise,
    /// A circular time shift.
    TimeShift,
    /// An amplitude factor.
    AmplitudeScale,
    /// Random phases, the amplitude spectrum kept.
    FtSurrogate,
}

impl Augmentation {
    /// Every augmentation, in report order.
    pub const ALL: [Augmentation; 4] = [
        Augmentation::Noise,
        Augmentation::TimeShift,
        Augmentation::AmplitudeScale,
        Augmentation::FtSurrogate,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Augmentation::Noise => "noise",
            Augmentation::TimeShift => "time_shift",
            Augmentation::AmplitudeScale => "amplitude_scale",
            Augmentation::FtSurrogate => "ft_surrogate",
        }
    }

    /// An augmented copy of `window` (`channels` rows of `time` samples); for spike counts
    /// (`counts`), rounded to the nearest non-negative integer.
    pub fn apply_to(
        self,
        window: &[f32],
        channels: usize,
        counts: bool,
        rng: &mut StdRng,
    ) -> Vec<f32> {
        let out = self.apply(window, channels, rng);
        if counts {
            out.into_iter().map(|v| v.round().max(0.0)).collect()
        } else {
            out
        }
    }

    /// An augmented copy of `window` (`channels` rows of `time` samples).
    pub fn apply(self, window: &[f32], channels: usize, rng: &mut StdRng) -> Vec<f32> {
        let time = window.len() / channels.max(1);
        match self {
            Augmentation::Noise => {
                let mut out = window.to_vec();
                for row in out.chunks_mut(time.max(1)) {
                    let (m, v) =
                        crate::stats::mean_var(&row.iter().map(|x| *x as f64).collect::<Vec<_>>());
                    let _ = m;
                    let sd = 0.1 * v.sqrt();
                    for x in row.iter_mut() {
                        let e = crate::normal(rng);
                        *x += (sd * e) as f32;
                    }
                }
                out
            }
            Augmentation::TimeShift => {
                let max = (time / 10).max(1) as i64;
                let shift = rng.random_range(-max..=max).rem_euclid(time.max(1) as i64) as usize;
                let mut out = Vec::with_capacity(window.len());
                for row in window.chunks(time.max(1)) {
                    out.extend(row[time - shift..].iter().chain(&row[..time - shift]));
                }
                out
            }
            Augmentation::AmplitudeScale => {
                let f = rng.random_range(0.8f32..1.2);
                window.iter().map(|x| x * f).collect()
            }
            Augmentation::FtSurrogate => ft_surrogate(window, channels, rng),
        }
    }
}

/// The Fourier-transform surrogate of `window`: one random phase per frequency, shared by the
/// channels; DC and (even lengths) Nyquist kept, so the result stays real.
pub fn ft_surrogate(window: &[f32], channels: usize, rng: &mut StdRng) -> Vec<f32> {
    let time = window.len() / channels.max(1);
    if time < 3 {
        return window.to_vec();
    }
    let half = (time - 1) / 2; // frequencies with a distinct negative twin
    let phases: Vec<Complex<f64>> = (0..half)
        .map(|_| Complex::from_polar(1.0, rng.random_range(0.0..std::f64::consts::TAU)))
        .collect();
    let mut planner = FftPlanner::new();
    let (fwd, inv) = (
        planner.plan_fft_forward(time),
        planner.plan_fft_inverse(time),
    );
    let mut out = Vec::with_capacity(window.len());
    for row in window.chunks(time) {
        let mut buf: Vec<Complex<f64>> = row.iter().map(|x| Complex::new(*x as f64, 0.0)).collect();
        fwd.process(&mut buf);
        for (k, p) in (1..=half).zip(&phases) {
            buf[k] *= p;
            buf[time - k] = buf[k].conj();
        }
        inv.process(&mut buf);
        out.extend(buf.iter().map(|c| (c.re / time as f64) as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spectrum(row: &[f32]) -> Vec<Complex<f64>> {
        let mut buf: Vec<Complex<f64>> = row.iter().map(|x| Complex::new(*x as f64, 0.0)).collect();
        FftPlanner::new()
            .plan_fft_forward(row.len())
            .process(&mut buf);
        buf
    }

    #[test]
    fn the_ft_surrogate_keeps_the_amplitude_spectrum_and_changes_the_phases() {
        let mut rng = StdRng::seed_from_u64(3);
        for time in [64usize, 65] {
            // Two channels: a 5-cycle sine plus noise, and a different mixture.
            let window: Vec<f32> = (0..2 * time)
                .map(|i| {
                    let (c, t) = (i / time, (i % time) as f32);
                    (t * 5.0 * std::f32::consts::TAU / time as f32).sin() * (1.0 + c as f32)
                        + rng.random_range(-0.3f32..0.3)
                })
                .collect();
            let s = ft_surrogate(&window, 2, &mut rng);
            assert_eq!(s.len(), window.len());
            let mut phase_moved = 0;
            for c in 0..2 {
                let (a, b) = (
                    spectrum(&window[c * time..(c + 1) * time]),
                    spectrum(&s[c * time..(c + 1) * time]),
                );
                for k in 0..time {
                    assert!(
                        (a[k].norm() - b[k].norm()).abs() < 1e-3 * (1.0 + a[k].norm()),
                        "|X| at {k}"
                    );
                    if k > 0 && (a[k].arg() - b[k].arg()).abs() > 1e-3 {
                        phase_moved += 1;
                    }
                }
            }
            assert!(phase_moved > time, "phases must change: {phase_moved}");
            // The same phase shift for both channels: their cross-spectrum's phase is kept.
            let (a0, a1) = (spectrum(&window[..time]), spectrum(&window[time..]));
            let (b0, b1) = (spectrum(&s[..time]), spectrum(&s[time..]));
            for k in 1..time / 2 {
                let (x, y) = (a0[k] * a1[k].conj(), b0[k] * b1[k].conj());
                assert!(
                    (x - y).norm() < 1e-3 * (1.0 + x.norm()),
                    "cross-spectrum at {k}"
                );
            }
        }
    }

    #[test]
    fn shifts_scales_and_noise_do_what_they_say() {
        let mut rng = StdRng::seed_from_u64(4);
        let window: Vec<f32> = (0..40).map(|i| i as f32).collect(); // 2 channels × 20
        let shifted = Augmentation::TimeShift.apply(&window, 2, &mut rng);
        let mut a = shifted[..20].to_vec();
        let mut b = window[..20].to_vec();
        a.sort_by(f32::total_cmp);
        b.sort_by(f32::total_cmp);
        assert_eq!(a, b, "a roll keeps the values");
        let k = (0..20).find(|&s| (0..20).all(|t| shifted[t] == window[(t + 20 - s) % 20]));
        assert!(
            k.is_some_and(|s| s <= 2 || s >= 18),
            "a roll by at most ±2: {shifted:?}"
        );
        let scaled = Augmentation::AmplitudeScale.apply(&window, 2, &mut rng);
        let f = scaled[5] / window[5];
        assert!((0.8..1.2).contains(&f));
        assert!(scaled
            .iter()
            .zip(&window)
            .all(|(s, w)| (s - f * w).abs() < 1e-4));
        let noisy = Augmentation::Noise.apply(&window, 2, &mut rng);
        let diff: f64 = noisy
            .iter()
            .zip(&window)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / 40.0;
        // Each channel's sd is √(20² − 1)/√12 ≈ 5.77, so the noise sd is ≈ 0.58.
        assert!((diff.sqrt() - 0.577).abs() < 0.25, "{}", diff.sqrt());
    }
}
