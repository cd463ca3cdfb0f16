//! `kuramoto`: EEG-like rhythms from coupled phase oscillators.
//!
//! K oscillators with natural frequencies drawn uniformly from configured bands evolve as
//! dθₖ = (ωₖ + (κ/K) Σⱼ sin(θⱼ − θₖ)) dt + η dWₖ (Euler–Maruyama), are mixed linearly into C
//! channels, and sit on 1/f (pink) background plus white sensor noise, all in µV.

use std::f64::consts::TAU;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::Recordings;
use crate::{DataError, SignalKind};

/// `[data] source = "kuramoto"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KuramotoConfig {
    /// Independent recordings (sessions).
    pub n_recordings: usize,
    /// Length of each recording in seconds.
    pub duration_s: f64,
    /// Sampling rate in Hz.
    pub sfreq: f64,
    /// EEG channels.
    pub n_channels: usize,
    /// Frequency bands `[low, high]` in Hz from which natural frequencies are drawn.
    pub bands: Vec<[f64; 2]>,
    /// Oscillators per band.
    pub oscillators_per_band: usize,
    /// Global coupling strength κ (rad/s).
    pub coupling: f64,
    /// Phase diffusion η (rad/√s).
    pub phase_noise: f64,
    /// Amplitude of each oscillator before mixing, µV.
    pub amplitude_uv: f64,
    /// Standard deviation of the pink background per channel, µV.
    pub pink_uv: f64,
    /// Standard deviation of the white sensor noise per channel, µV.
    pub noise_uv: f64,
    /// Conditions (0: none, unlabelled). Recording `r` has condition `c = r mod n`, labelled
    /// `c1`, `c2`, …; in it the first band's rhythm is desynchronised in the channels `ch` with
    /// `ch mod n = c` (their share of it scaled by `erd`): an event-related
    /// desynchronisation, as over the motor cortex opposite an imagined hand movement.
    pub n_conditions: usize,
    /// Amplitude factor of the first band in a condition's channels (power × erd²).
    pub erd: f64,
}

impl Default for KuramotoConfig {
    fn default() -> Self {
        KuramotoConfig {
            n_recordings: 1,
            duration_s: 600.0,
            sfreq: 128.0,
            n_channels: 8,
            bands: vec![[8.0, 12.0], [18.0, 25.0]],
            oscillators_per_band: 3,
            coupling: 2.0,
            phase_noise: 0.5,
            amplitude_uv: 10.0,
            pink_uv: 5.0,
            noise_uv: 1.0,
            n_conditions: 0,
            erd: 0.3,
        }
    }
}

/// Euler–Maruyama sub-steps per sample.
const SUBSTEPS: usize = 4;

impl KuramotoConfig {
    pub(crate) fn check(&self) -> Result<(), DataError> {
        super::positive(&[
            ("n_recordings", self.n_recordings as f64),
            ("duration_s", self.duration_s),
            ("sfreq", self.sfreq),
            ("n_channels", self.n_channels as f64),
            ("oscillators_per_band", self.oscillators_per_band as f64),
        ])?;
        super::non_negative(&[
            ("coupling", self.coupling),
            ("phase_noise", self.phase_noise),
            ("amplitude_uv", self.amplitude_uv),
            ("pink_uv", self.pink_uv),
            ("noise_uv", self.noise_uv),
            ("erd", self.erd),
        ])?;
        super::check_conditions(
            self.n_conditions,
            (self.n_recordings, "recordings"),
            (self.n_channels, "channels"),
        )?;
        if self.bands.is_empty() {
            return Err(DataError::invalid(
                "bands",
                "needs at least one [low, high] band",
            ));
        }
        let nyquist = self.sfreq / 2.0;
        for band in &self.bands {
            if !(band[0] > 0.0 && band[0] < band[1] && band[1] < nyquist) {
                return Err(DataError::invalid(
                    "bands",
                    format!("band {band:?} must satisfy 0 < low < high < Nyquist ({nyquist} Hz)"),
                ));
            }
        }
        super::check_length(self.duration_s, self.sfreq)
    }

    /// Simulates every recording.
    ///
    /// # Shapes
    /// - data: `n_recordings` × `[n_channels, samples]` in µV.
    /// - latents: `n_recordings` × `[K, samples]` phases in [0, 2π), K = bands × oscillators.
    pub fn simulate(&self, seed: u64) -> Result<Recordings, DataError> {
        self.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let k = self.bands.len() * self.oscillators_per_band;
        let c = self.n_channels;
        let t_len = (self.duration_s * self.sfreq).round() as usize;
        let omega: Vec<f64> = self
            .bands
            .iter()
            .flat_map(|b| std::iter::repeat_n(*b, self.oscillators_per_band))
            .map(|[lo, hi]| TAU * rng.random_range(lo..hi))
            .collect();
        let mixing: Vec<f64> = (0..c * k)
            .map(|_| rng.sample::<f64, _>(StandardNormal) / (k as f64).sqrt())
            .collect();
        let h = 1.0 / (self.sfreq * SUBSTEPS as f64);
        let diffusion = self.phase_noise * h.sqrt();

        let mut data = Vec::with_capacity(self.n_recordings);
        let mut latents = Vec::with_capacity(self.n_recordings);
        let first_band = self.oscillators_per_band;
        for r in 0..self.n_recordings {
            // A condition scales the first band's share of its channels; other channels and
            // unconditioned runs mix as they always have.
            let gains: Vec<Option<f64>> = (0..c)
                .map(|ch| super::in_condition_group(self.n_conditions, r, ch).then_some(self.erd))
                .collect();
            let mut theta: Vec<f64> = (0..k).map(|_| rng.random_range(0.0..TAU)).collect();
            let mut phases = vec![0f32; k * t_len];
            let mut x = vec![0f32; c * t_len];
            let mut dtheta = vec![0f64; k];
            for t in 0..t_len {
                for _ in 0..SUBSTEPS {
                    for (i, d) in dtheta.iter_mut().enumerate() {
                        let pull: f64 = theta.iter().map(|tj| (tj - theta[i]).sin()).sum();
                        *d = omega[i] + self.coupling / k as f64 * pull;
                    }
                    for (th, d) in theta.iter_mut().zip(&dtheta) {
                        *th = (*th + d * h + diffusion * rng.sample::<f64, _>(StandardNormal))
                            .rem_euclid(TAU);
                    }
                }
                for i in 0..k {
                    phases[i * t_len + t] = theta[i] as f32;
                }
                for ch in 0..c {
                    let s: f64 = match gains[ch] {
                        None => (0..k).map(|i| mixing[ch * k + i] * theta[i].sin()).sum(),
                        Some(g) => (0..k)
                            .map(|i| {
                                let gain = if i < first_band { g } else { 1.0 };
                                gain * mixing[ch * k + i] * theta[i].sin()
                            })
                            .sum(),
                    };
                    x[ch * t_len + t] = (self.amplitude_uv * s) as f32;
                }
            }
            for ch in 0..c {
                let pink = pink_noise(&mut rng, t_len);
                for (t, p) in pink.iter().enumerate() {
                    let white: f64 = rng.sample(StandardNormal);
                    x[ch * t_len + t] += (self.pink_uv * p + self.noise_uv * white) as f32;
                }
            }
            data.push(x);
            latents.push(phases);
        }
        Ok(Recordings {
            data,
            samples: vec![t_len; self.n_recordings],
            channel_names: (0..c).map(|i| format!("EEG{:02}", i + 1)).collect(),
            sfreq: self.sfreq,
            kind: SignalKind::Continuous,
            unit: "uV".into(),
            latents: Some((latents, k)),
            trials: false,
            breaks: Vec::new(),
            labels: super::condition_labels(self.n_conditions, self.n_recordings),
        })
    }
}

/// Unit-variance 1/f noise: white noise through Paul Kellet's refined pinking filter
/// (a sum of first-order low-passes whose poles are spaced to approximate −3 dB/octave).
fn pink_noise(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let mut b = [0f64; 7];
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            let w: f64 = rng.sample(StandardNormal);
            b[0] = 0.99886 * b[0] + w * 0.0555179;
            b[1] = 0.99332 * b[1] + w * 0.0750759;
            b[2] = 0.96900 * b[2] + w * 0.1538520;
            b[3] = 0.86650 * b[3] + w * 0.3104856;
            b[4] = 0.55000 * b[4] + w * 0.5329522;
            b[5] = -0.7616 * b[5] - w * 0.0168980;
            let p = b.iter().sum::<f64>() + w * 0.5362;
            b[6] = w * 0.115926;
            p
        })
        .collect();
    let mean = out.iter().sum::<f64>() / n.max(1) as f64;
    let std = (out.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
    for p in &mut out {
        *p = (*p - mean) / std.max(1e-12);
    }
    out
}
