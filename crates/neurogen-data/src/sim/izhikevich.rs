//! `izhikevich`: binned spikes of a random network of Izhikevich neurons.
//!
//! The network of Izhikevich (2003, "Simple model of spiking neurons"), scaled to any size:
//! regular-spiking excitatory cells (a = 0.02, b = 0.2, c = −65 + 15r², d = 8 − 6r²) and
//! fast-spiking inhibitory cells (a = 0.02 + 0.08r, b = 0.25 − 0.05r, c = −65, d = 2), with
//! r ~ U(0, 1) per cell;
//!
//! ```text
//! v' = 0.04v² + 5v + 140 − u + I,   u' = a(bv − u),   v ≥ 30 mV ⇒ v ← c, u ← u + d
//! ```
//!
//! integrated in two 0.5 ms half-steps per millisecond. I is a noisy thalamic drive
//! (N(0, drive_exc²) for excitatory, N(0, drive_inh²) for inhibitory cells, per ms) plus the
//! synaptic input of last millisecond's spikes: every pair is connected, with weights
//! U(0, w_exc) from excitatory and −U(0, w_inh) from inhibitory cells, each scaled by 1000/N so
//! a neuron receives the same total input at every network size. With the defaults, mean
//! rates lie between 2 and 30 Hz for excitatory and 5 and 60 Hz for inhibitory cells.
//!
//! Output: spike counts per bin and neuron (`output = "spikes"`), or the LFP proxy, the
//! summed synaptic current of the excitatory cells averaged per bin (`output = "lfp"`, one
//! continuous channel in arbitrary units). Either way the latent is the LFP proxy.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::Recordings;
use crate::{DataError, SignalKind};

/// What the recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IzhikevichOutput {
    /// Spike counts per neuron and bin.
    Spikes,
    /// One continuous channel: summed synaptic current per bin.
    Lfp,
}

/// `[data] source = "izhikevich"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IzhikevichConfig {
    /// Trials (consecutive stretches of one network run).
    pub n_trials: usize,
    /// Bins per trial.
    pub n_bins: usize,
    /// Bin width in milliseconds (a whole number; sets `sfreq = 1000 / bin_ms`).
    pub bin_ms: usize,
    /// Regular-spiking excitatory neurons.
    pub n_excitatory: usize,
    /// Fast-spiking inhibitory neurons.
    pub n_inhibitory: usize,
    /// Upper bound of excitatory weights (at 1000 neurons).
    pub w_exc: f64,
    /// Upper bound of inhibitory weights (at 1000 neurons).
    pub w_inh: f64,
    /// Standard deviation of the thalamic drive of excitatory cells.
    pub drive_exc: f64,
    /// Standard deviation of the thalamic drive of inhibitory cells.
    pub drive_inh: f64,
    /// `spikes` (default) or `lfp`.
    pub output: IzhikevichOutput,
}

impl Default for IzhikevichConfig {
    fn default() -> Self {
        IzhikevichConfig {
            n_trials: 500,
            n_bins: 100,
            bin_ms: 10,
            n_excitatory: 40,
            n_inhibitory: 10,
            w_exc: 0.5,
            w_inh: 1.0,
            drive_exc: 5.0,
            drive_inh: 2.0,
            output: IzhikevichOutput::Spikes,
        }
    }
}

/// Milliseconds simulated and discarded before the first trial.
const WARMUP_MS: usize = 500;

/// The network: per-cell parameters and the weight matrix, `w[post * n + pre]`.
struct Network {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
    w: Vec<f64>,
    n_exc: usize,
}

impl IzhikevichConfig {
    pub(crate) fn check(&self) -> Result<(), DataError> {
        super::positive(&[
            ("n_trials", self.n_trials as f64),
            ("n_bins", self.n_bins as f64),
            ("bin_ms", self.bin_ms as f64),
            ("n_excitatory", self.n_excitatory as f64),
        ])?;
        super::non_negative(&[
            ("w_exc", self.w_exc),
            ("w_inh", self.w_inh),
            ("drive_exc", self.drive_exc),
            ("drive_inh", self.drive_inh),
        ])?;
        let n = self.n_excitatory + self.n_inhibitory;
        if n > 5000 {
            return Err(DataError::invalid(
                "n_excitatory",
                format!("{n} neurons in all; at most 5000 (the network is fully connected)"),
            ));
        }
        if self
            .n_trials
            .saturating_mul(self.n_bins)
            .saturating_mul(self.bin_ms)
            > 100_000_000
        {
            return Err(DataError::invalid(
                "n_trials",
                "more than 1e8 ms of simulated time",
            ));
        }
        Ok(())
    }

    fn network(&self, rng: &mut StdRng) -> Network {
        let (ne, ni) = (self.n_excitatory, self.n_inhibitory);
        let n = ne + ni;
        let mut net = Network {
            a: Vec::with_capacity(n),
            b: Vec::with_capacity(n),
            c: Vec::with_capacity(n),
            d: Vec::with_capacity(n),
            w: vec![0.0; n * n],
            n_exc: ne,
        };
        for i in 0..n {
            let r: f64 = rng.random();
            let (a, b, c, d) = if i < ne {
                (0.02, 0.2, -65.0 + 15.0 * r * r, 8.0 - 6.0 * r * r)
            } else {
                (0.02 + 0.08 * r, 0.25 - 0.05 * r, -65.0, 2.0)
            };
            net.a.push(a);
            net.b.push(b);
            net.c.push(c);
            net.d.push(d);
        }
        let scale = 1000.0 / n as f64;
        for post in 0..n {
            for pre in 0..n {
                let u: f64 = rng.random();
                net.w[post * n + pre] = scale
                    * if pre < ne {
                        self.w_exc * u
                    } else {
                        -self.w_inh * u
                    };
            }
        }
        net
    }

    /// Runs the network once and cuts it into trials.
    ///
    /// # Shapes
    /// - data: `n_trials` × `[neurons, n_bins]` counts (or `[1, n_bins]` LFP).
    /// - latents: `n_trials` × `[1, n_bins]`, the LFP proxy.
    pub fn simulate(&self, seed: u64) -> Result<Recordings, DataError> {
        self.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let net = self.network(&mut rng);
        let n = net.a.len();
        let mut v = vec![-65.0f64; n];
        let mut u: Vec<f64> = v.iter().zip(&net.b).map(|(v, b)| v * b).collect();
        let mut fired: Vec<usize> = Vec::new();
        let mut input = vec![0f64; n];
        let total_ms = WARMUP_MS + self.n_trials * self.n_bins * self.bin_ms;
        let bins = self.n_trials * self.n_bins;
        let mut counts = vec![0u32; n * bins];
        let mut lfp = vec![0f64; bins];
        for ms in 0..total_ms {
            for (i, x) in input.iter_mut().enumerate() {
                let z: f64 = rng.sample(StandardNormal);
                *x = z * if i < net.n_exc {
                    self.drive_exc
                } else {
                    self.drive_inh
                };
            }
            let mut current = 0.0;
            for &pre in &fired {
                for (post, x) in input.iter_mut().enumerate() {
                    let s = net.w[post * n + pre];
                    *x += s;
                    if post < net.n_exc {
                        current += s;
                    }
                }
            }
            for &i in &fired {
                v[i] = net.c[i];
                u[i] += net.d[i];
            }
            fired.clear();
            for i in 0..n {
                for _ in 0..2 {
                    v[i] += 0.5 * (0.04 * v[i] * v[i] + 5.0 * v[i] + 140.0 - u[i] + input[i]);
                }
                // The peak is clipped at 30 mV so an overshoot cannot run away through u.
                if v[i] >= 30.0 || !v[i].is_finite() {
                    v[i] = 30.0;
                    fired.push(i);
                }
                u[i] += net.a[i] * (net.b[i] * v[i] - u[i]);
            }
            if ms >= WARMUP_MS {
                let bin = (ms - WARMUP_MS) / self.bin_ms;
                for &i in &fired {
                    counts[i * bins + bin] += 1;
                }
                lfp[bin] += current / self.bin_ms as f64;
            }
        }
        let t = self.n_bins;
        let lat: Vec<Vec<f32>> = lfp
            .chunks(t)
            .map(|c| c.iter().map(|&x| x as f32).collect())
            .collect();
        let (data, names, kind, unit) = match self.output {
            IzhikevichOutput::Spikes => {
                let data = (0..self.n_trials)
                    .map(|k| {
                        let mut d = Vec::with_capacity(n * t);
                        for i in 0..n {
                            d.extend(
                                counts[i * bins + k * t..i * bins + (k + 1) * t]
                                    .iter()
                                    .map(|&c| c as f32),
                            );
                        }
                        d
                    })
                    .collect();
                let names = (0..n)
                    .map(|i| {
                        if i < net.n_exc {
                            format!("RS{:03}", i + 1)
                        } else {
                            format!("FS{:03}", i + 1 - net.n_exc)
                        }
                    })
                    .collect();
                (data, names, SignalKind::Counts, "count")
            }
            IzhikevichOutput::Lfp => (
                lat.clone(),
                vec!["LFP".into()],
                SignalKind::Continuous,
                "a.u.",
            ),
        };
        Ok(Recordings {
            data,
            samples: vec![t; self.n_trials],
            channel_names: names,
            sfreq: 1000.0 / self.bin_ms as f64,
            kind,
            unit: unit.into(),
            latents: Some((lat, 1)),
            trials: true,
            breaks: vec![Vec::new(); self.n_trials],
            labels: None,
        })
    }
}
