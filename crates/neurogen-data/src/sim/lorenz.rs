//! `lorenz_spikes`: the LFADS synthetic benchmark.
//!
//! A Lorenz system (σ = 10, ρ = 28, β = 8/3) is integrated per trial from a random point on the
//! attractor; the 3-D state is standardised over all trials, mapped through a random readout
//! to the log-rates of N neurons around a baseline rate, and Poisson counts are drawn per bin.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};

use super::{rk4_step, Recordings};
use crate::{DataError, SignalKind};

/// `[data] source = "lorenz_spikes"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LorenzConfig {
    /// Number of trials.
    pub n_trials: usize,
    /// Number of simulated neurons (channels).
    pub n_neurons: usize,
    /// Time bins per trial.
    pub n_bins: usize,
    /// Bin width in milliseconds (sets `sfreq = 1000 / bin_ms`).
    pub bin_ms: f64,
    /// Lorenz time units advanced per bin.
    pub dt: f64,
    /// Baseline firing rate in Hz, the rate at the standardised state's origin.
    pub base_rate_hz: f64,
    /// Scale of the random readout from the 3-D state to log-rates.
    pub gain: f64,
    /// Lorenz σ.
    pub sigma: f64,
    /// Lorenz ρ.
    pub rho: f64,
    /// Lorenz β.
    pub beta: f64,
    /// Conditions (0: none, unlabelled). Trial `t` has condition `c = t mod n`, labelled `c1`,
    /// `c2`, …; in it the neurons `i` with `i mod n = c` receive an input that adds
    /// `condition_gain` to their log-rate (a condition-specific drive, as a reach direction
    /// drives its tuned neurons).
    pub n_conditions: usize,
    /// Log-rate added to a condition's neurons (ln 2: their rates double).
    pub condition_gain: f64,
    /// Stimulus pulses per trial (0: no stimulus). With pulses the data gain a channel
    /// `stim` (1 while a pulse is on, else 0; name it in `[data] inputs` to drive a model with
    /// it), and the even-numbered neurons `n000`, `n002`, … receive it: `stim_gain · stim(t)`
    /// is added to their log-rate in the same bin, so their rate is `exp(stim_gain)` times
    /// higher while it is on. Onsets are uniform over the trial, drawn from their own stream.
    pub stim_pulses: usize,
    /// Bins each pulse lasts.
    pub stim_bins: usize,
    /// Log-rate a pulse adds to a driven neuron (ln 3: its rate triples).
    pub stim_gain: f64,
}

impl Default for LorenzConfig {
    fn default() -> Self {
        LorenzConfig {
            n_trials: 1000,
            n_neurons: 30,
            n_bins: 100,
            bin_ms: 10.0,
            dt: 0.01,
            base_rate_hz: 15.0,
            gain: 1.0,
            sigma: 10.0,
            rho: 28.0,
            beta: 8.0 / 3.0,
            n_conditions: 0,
            condition_gain: std::f64::consts::LN_2,
            stim_pulses: 0,
            stim_bins: 10,
            stim_gain: 3f64.ln(),
        }
    }
}

/// RK4 sub-steps per bin: keeps the integration error far below the Poisson noise.
const SUBSTEPS: usize = 4;
/// Steps run from a random start before recording, so every trial starts on the attractor.
const BURN_IN: usize = 500;

impl LorenzConfig {
    pub(crate) fn check(&self) -> Result<(), DataError> {
        super::positive(&[
            ("n_trials", self.n_trials as f64),
            ("n_neurons", self.n_neurons as f64),
            ("n_bins", self.n_bins as f64),
            ("bin_ms", self.bin_ms),
            ("dt", self.dt),
            ("base_rate_hz", self.base_rate_hz),
        ])?;
        super::non_negative(&[("gain", self.gain)])?;
        if !self.condition_gain.is_finite() {
            return Err(DataError::invalid("condition_gain", "must be finite"));
        }
        if !self.stim_gain.is_finite() {
            return Err(DataError::invalid("stim_gain", "must be finite"));
        }
        if self.stim_pulses > 0 && !(1..=self.n_bins).contains(&self.stim_bins) {
            return Err(DataError::invalid(
                "stim_bins",
                format!(
                    "a pulse must last 1 to n_bins = {} bins, got {}",
                    self.n_bins, self.stim_bins
                ),
            ));
        }
        super::check_conditions(
            self.n_conditions,
            (self.n_trials, "trials"),
            (self.n_neurons, "neurons"),
        )
    }

    /// Simulates every trial.
    ///
    /// # Shapes
    /// - data: `n_trials` × `[n_neurons, n_bins]` counts.
    /// - latents: `n_trials` × `[3, n_bins]` standardised Lorenz state.
    pub fn simulate(&self, seed: u64) -> Result<Recordings, DataError> {
        self.simulate_with_rates(seed).map(|(recs, _)| recs)
    }

    /// [`simulate`](Self::simulate), also returning the Poisson rate of every count.
    pub(crate) fn simulate_with_rates(
        &self,
        seed: u64,
    ) -> Result<(Recordings, Vec<Vec<f32>>), DataError> {
        self.check()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let (s, r, b) = (self.sigma, self.rho, self.beta);
        let field = |y: &[f64; 3]| {
            [
                s * (y[1] - y[0]),
                y[0] * (r - y[2]) - y[1],
                y[0] * y[1] - b * y[2],
            ]
        };
        let h = self.dt / SUBSTEPS as f64;

        // Raw trajectories, [trial][bin] -> state.
        let mut traj: Vec<Vec<[f64; 3]>> = Vec::with_capacity(self.n_trials);
        for _ in 0..self.n_trials {
            let mut y = [
                rng.random_range(-15.0..15.0),
                rng.random_range(-15.0..15.0),
                rng.random_range(5.0..40.0),
            ];
            for _ in 0..BURN_IN {
                y = rk4_step(field, &y, h);
            }
            let mut t = Vec::with_capacity(self.n_bins);
            for _ in 0..self.n_bins {
                t.push(y);
                for _ in 0..SUBSTEPS {
                    y = rk4_step(field, &y, h);
                }
            }
            traj.push(t);
        }

        // Standardise each state dimension over all trials and bins.
        let count = (self.n_trials * self.n_bins) as f64;
        let mut mean = [0.0; 3];
        let mut var = [0.0; 3];
        for p in traj.iter().flatten() {
            for d in 0..3 {
                mean[d] += p[d] / count;
            }
        }
        for p in traj.iter().flatten() {
            for d in 0..3 {
                var[d] += (p[d] - mean[d]).powi(2) / count;
            }
        }
        let std = var.map(|v| v.sqrt().max(1e-12));

        // Random readout: log-rate = log(base · bin) + gain · W z, W ~ N(0, 1/3).
        let normal = Normal::new(0.0, (1.0f64 / 3.0).sqrt())
            .map_err(|e| DataError::invalid("gain", e.to_string()))?;
        let w: Vec<[f64; 3]> = (0..self.n_neurons)
            .map(|_| {
                [
                    normal.sample(&mut rng),
                    normal.sample(&mut rng),
                    normal.sample(&mut rng),
                ]
            })
            .collect();
        let log_base = (self.base_rate_hz * self.bin_ms / 1000.0).ln();

        let stims = self.stimuli(seed);
        let mut data = Vec::with_capacity(self.n_trials);
        let mut latents = Vec::with_capacity(self.n_trials);
        let mut rates = Vec::with_capacity(self.n_trials);
        for (trial, t) in traj.iter().enumerate() {
            let drive: Vec<f64> = (0..self.n_neurons)
                .map(|n| {
                    if super::in_condition_group(self.n_conditions, trial, n) {
                        self.condition_gain
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut counts = vec![0f32; self.n_neurons * self.n_bins];
            let mut rate = vec![0f32; self.n_neurons * self.n_bins];
            let mut lat = vec![0f32; 3 * self.n_bins];
            for (bin, p) in t.iter().enumerate() {
                let z = [0, 1, 2].map(|d| (p[d] - mean[d]) / std[d]);
                for d in 0..3 {
                    lat[d * self.n_bins + bin] = z[d] as f32;
                }
                for (n, wn) in w.iter().enumerate() {
                    let mut log_rate =
                        log_base + self.gain * (wn[0] * z[0] + wn[1] * z[1] + wn[2] * z[2]);
                    if drive[n] != 0.0 {
                        log_rate += drive[n];
                    }
                    if let Some(stim) = stims.get(trial) {
                        if n % 2 == 0 && stim[bin] != 0.0 {
                            log_rate += self.stim_gain * stim[bin] as f64;
                        }
                    }
                    let lambda = log_rate.exp();
                    counts[n * self.n_bins + bin] = poisson(&mut rng, lambda);
                    rate[n * self.n_bins + bin] = lambda as f32;
                }
            }
            if let Some(stim) = stims.get(trial) {
                counts.extend_from_slice(stim);
            }
            data.push(counts);
            latents.push(lat);
            rates.push(rate);
        }
        let recs = Recordings {
            data,
            samples: vec![self.n_bins; self.n_trials],
            channel_names: (0..self.n_neurons)
                .map(|i| format!("n{i:03}"))
                .chain((self.stim_pulses > 0).then(|| "stim".to_string()))
                .collect(),
            sfreq: 1000.0 / self.bin_ms,
            kind: SignalKind::Counts,
            unit: "count".into(),
            latents: Some((latents, 3)),
            trials: true,
            breaks: Vec::new(),
            labels: super::condition_labels(self.n_conditions, self.n_trials),
        };
        Ok((recs, rates))
    }
}

impl LorenzConfig {
    /// Each trial's stimulus, `[n_bins]` of 0/1 (empty without pulses), from a stream of its
    /// own so that the rest of the simulation draws what it draws without a stimulus.
    fn stimuli(&self, seed: u64) -> Vec<Vec<f32>> {
        if self.stim_pulses == 0 {
            return Vec::new();
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5717_5717);
        (0..self.n_trials)
            .map(|_| {
                let mut u = vec![0f32; self.n_bins];
                for _ in 0..self.stim_pulses {
                    let start = rng.random_range(0..=self.n_bins - self.stim_bins);
                    u[start..start + self.stim_bins].fill(1.0);
                }
                u
            })
            .collect()
    }
}

/// One Poisson draw; rates too small for `rand_distr` are zero counts.
pub fn poisson(rng: &mut StdRng, lambda: f64) -> f32 {
    match Poisson::new(lambda) {
        Ok(p) => p.sample(rng) as f32,
        Err(_) => 0.0,
    }
}
