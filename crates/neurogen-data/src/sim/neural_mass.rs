//! `neural_mass`: EEG-like signals from Jansen–Rit cortical columns.
//!
//! Each column is a pyramidal population with excitatory and inhibitory interneurons
//! (Jansen & Rit 1995). With postsynaptic potentials y₀ (pyramidal), y₁ (excitatory) and
//! y₂ (inhibitory) and the sigmoid S(v) = 2e₀ / (1 + exp(r(v₀ − v))):
//!
//! ```text
//! ÿ₀ = A a S(y₁ − y₂)                  − 2a ẏ₀ − a² y₀
//! ÿ₁ = A a (p(t) + C₂ S(C₁ y₀) + k Iₙ) − 2a ẏ₁ − a² y₁
//! ÿ₂ = B b C₄ S(C₃ y₀)                 − 2b ẏ₂ − b² y₂
//! ```
//!
//! p(t) is the noisy extrinsic pulse density (uniform in [p_min, p_max] per integration step,
//! as in the original paper) and Iₙ = mean over the other columns of S(y₁ − y₂) is the optional
//! coupling of strength k. A channel is gain · (y₁ − y₂) with its recording mean removed (the
//! amplifier's high-pass) plus white sensor noise. The standard parameters put the spectral
//! peak in the alpha band (≈ 10 Hz). Latents are each column's y₁ − y₂ in mV.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::Recordings;
use crate::{DataError, SignalKind};

/// `[data] source = "neural_mass"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NeuralMassConfig {
    /// Independent recordings.
    pub n_recordings: usize,
    /// Seconds per recording (after a discarded 2 s transient).
    pub duration_s: f64,
    /// Output sampling rate in Hz.
    pub sfreq: f64,
    /// Columns, one channel each.
    pub n_columns: usize,
    /// Coupling k between columns (pulses/s per unit of the others' mean firing rate).
    pub coupling: f64,
    /// Excitatory synaptic gain A, mV.
    pub a_gain_mv: f64,
    /// Inhibitory synaptic gain B, mV.
    pub b_gain_mv: f64,
    /// Excitatory rate constant a, 1/s.
    pub a_rate: f64,
    /// Inhibitory rate constant b, 1/s.
    pub b_rate: f64,
    /// Connectivity constant C (C₁ = C, C₂ = 0.8C, C₃ = C₄ = 0.25C).
    pub c: f64,
    /// Lower and upper bound of the extrinsic pulse density p(t), pulses/s.
    pub p_range: [f64; 2],
    /// Scalp gain from y₁ − y₂ (mV) to the channel (µV).
    pub gain_uv_per_mv: f64,
    /// Standard deviation of the white sensor noise, µV.
    pub noise_uv: f64,
    /// Conditions (0: none, unlabelled). Recording `r` has condition `c = r mod n`, labelled
    /// `c1`, `c2`, …; in it the columns `i` with `i mod n = c` receive `condition_input` more
    /// extrinsic input, which moves them away from their alpha rhythm (an event-related
    /// desynchronisation analogue).
    pub n_conditions: usize,
    /// Extra pulse density (1/s) into a condition's columns.
    pub condition_input: f64,
}

impl Default for NeuralMassConfig {
    fn default() -> Self {
        NeuralMassConfig {
            n_recordings: 1,
            duration_s: 300.0,
            sfreq: 128.0,
            n_columns: 4,
            coupling: 0.0,
            a_gain_mv: 3.25,
            b_gain_mv: 22.0,
            a_rate: 100.0,
            b_rate: 50.0,
            c: 135.0,
            p_range: [120.0, 320.0],
            gain_uv_per_mv: 10.0,
            noise_uv: 1.0,
            n_conditions: 0,
            condition_input: 120.0,
        }
    }
}

/// Integration step, seconds: the rate constants (≤ 100 /s) keep a·h ≤ 0.1.
const STEP_S: f64 = 1e-3;
/// Seconds simulated and thrown away so the columns reach their limit cycle.
const TRANSIENT_S: f64 = 2.0;

fn sigmoid(v: f64) -> f64 {
    // e₀ = 2.5 /s, v₀ = 6 mV, r = 0.56 /mV (Jansen & Rit 1995).
    5.0 / (1.0 + (0.56 * (6.0 - v)).exp())
}

impl NeuralMassConfig {
    pub(crate) fn check(&self) -> Result<(), DataError> {
        super::positive(&[
            ("n_recordings", self.n_recordings as f64),
            ("duration_s", self.duration_s),
            ("sfreq", self.sfreq),
            ("n_columns", self.n_columns as f64),
            ("a_gain_mv", self.a_gain_mv),
            ("b_gain_mv", self.b_gain_mv),
            ("a_rate", self.a_rate),
            ("b_rate", self.b_rate),
            ("c", self.c),
            ("gain_uv_per_mv", self.gain_uv_per_mv),
        ])?;
        super::non_negative(&[("coupling", self.coupling), ("noise_uv", self.noise_uv)])?;
        if !self.condition_input.is_finite() {
            return Err(DataError::invalid("condition_input", "must be finite"));
        }
        super::check_conditions(
            self.n_conditions,
            (self.n_recordings, "recordings"),
            (self.n_columns, "columns"),
        )?;
        let [lo, hi] = self.p_range;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
            return Err(DataError::invalid(
                "p_range",
                format!("[{lo}, {hi}] must satisfy 0 ≤ low ≤ high"),
            ));
        }
        if self.sfreq > 0.5 / STEP_S {
            return Err(DataError::invalid(
                "sfreq",
                format!("at most {} Hz (the integration step is 1 ms)", 0.5 / STEP_S),
            ));
        }
        super::check_length(self.duration_s, self.sfreq)
    }

    /// Simulates every recording.
    ///
    /// # Shapes
    /// - data: `n_recordings` × `[n_columns, samples]` in µV.
    /// - latents: `n_recordings` × `[n_columns, samples]`, y₁ − y₂ in mV.
    pub fn simulate(&self, seed: u64) -> Result<Recordings, DataError> {
        self.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = self.n_columns;
        let t_len = (self.duration_s * self.sfreq).round() as usize;
        // Integrate on a 1 ms grid and read the state at each output sample time.
        let steps_per_sample = 1.0 / (self.sfreq * STEP_S);
        let transient = (TRANSIENT_S / STEP_S) as usize;
        let (a, b, big_a, big_b, c) = (
            self.a_rate,
            self.b_rate,
            self.a_gain_mv,
            self.b_gain_mv,
            self.c,
        );
        let [p_lo, p_hi] = self.p_range;
        let mut data = Vec::with_capacity(self.n_recordings);
        let mut latents = Vec::with_capacity(self.n_recordings);
        for r in 0..self.n_recordings {
            let extra: Vec<f64> = (0..n)
                .map(|i| {
                    if super::in_condition_group(self.n_conditions, r, i) {
                        self.condition_input
                    } else {
                        0.0
                    }
                })
                .collect();
            // [y0, y1, y2, ẏ0, ẏ1, ẏ2] per column, from small random states.
            let mut y: Vec<[f64; 6]> = (0..n)
                .map(|_| {
                    let mut s = [0.0; 6];
                    for v in s.iter_mut().take(3) {
                        *v = rng.random_range(0.0..1.0);
                    }
                    s
                })
                .collect();
            let mut lat = vec![0f32; n * t_len];
            let mut next_sample = 0usize;
            let mut step = 0usize;
            while next_sample < t_len {
                let rates: Vec<f64> = y.iter().map(|s| sigmoid(s[1] - s[2])).collect();
                let total: f64 = rates.iter().sum();
                for (i, s) in y.iter_mut().enumerate() {
                    let others = if n > 1 {
                        (total - rates[i]) / (n - 1) as f64
                    } else {
                        0.0
                    };
                    let mut p = rng.random_range(p_lo..=p_hi) + self.coupling * others;
                    if extra[i] != 0.0 {
                        p += extra[i];
                    }
                    let d = [
                        s[3],
                        s[4],
                        s[5],
                        big_a * a * rates[i] - 2.0 * a * s[3] - a * a * s[0],
                        big_a * a * (p + 0.8 * c * sigmoid(c * s[0]))
                            - 2.0 * a * s[4]
                            - a * a * s[1],
                        big_b * b * 0.25 * c * sigmoid(0.25 * c * s[0])
                            - 2.0 * b * s[5]
                            - b * b * s[2],
                    ];
                    for k in 0..6 {
                        s[k] += STEP_S * d[k];
                    }
                }
                step += 1;
                if step >= transient
                    && (step - transient) as f64 >= next_sample as f64 * steps_per_sample
                {
                    for (i, s) in y.iter().enumerate() {
                        lat[i * t_len + next_sample] = (s[1] - s[2]) as f32;
                    }
                    next_sample += 1;
                }
            }
            let mut x = vec![0f32; n * t_len];
            for i in 0..n {
                let row = &lat[i * t_len..(i + 1) * t_len];
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / t_len as f64;
                for t in 0..t_len {
                    let white: f64 = rng.sample(StandardNormal);
                    x[i * t_len + t] = (self.gain_uv_per_mv * (row[t] as f64 - mean)
                        + self.noise_uv * white) as f32;
                }
            }
            data.push(x);
            latents.push(lat);
        }
        Ok(Recordings {
            data,
            samples: vec![t_len; self.n_recordings],
            channel_names: (1..=n).map(|i| format!("JR{i:02}")).collect(),
            sfreq: self.sfreq,
            kind: SignalKind::Continuous,
            unit: "uV".into(),
            latents: Some((latents, n)),
            trials: false,
            breaks: vec![Vec::new(); self.n_recordings],
            labels: super::condition_labels(self.n_conditions, self.n_recordings),
        })
    }
}
