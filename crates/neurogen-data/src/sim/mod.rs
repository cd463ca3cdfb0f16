//! Built-in simulators with known ground truth.
//!
//! Each is a pure function of its config and a seed: the same seed gives the same bytes on every
//! machine (host `StdRng`, no threads), and each keeps the latent state that produced its data.

mod izhikevich;
mod kuramoto;
mod lorenz;
mod neural_mass;

pub use izhikevich::{IzhikevichConfig, IzhikevichOutput};
pub use kuramoto::KuramotoConfig;
pub use lorenz::{poisson, LorenzConfig};
pub use neural_mass::NeuralMassConfig;

use crate::{DataError, SignalKind};

/// Continuous recordings (or trials) as a simulator or reader produces them.
///
/// # Shapes
/// - `data[r]`: `[channels, samples_r]` row-major.
/// - `latents[r]`: `[latent_dim, samples_r]` row-major.
#[derive(Debug, Clone)]
pub struct Recordings {
    /// One `[channels, samples]` array per recording.
    pub data: Vec<Vec<f32>>,
    /// Samples in each recording.
    pub samples: Vec<usize>,
    /// Channel names.
    pub channel_names: Vec<String>,
    /// Sampling rate in Hz.
    pub sfreq: f64,
    /// Continuous or counts.
    pub kind: SignalKind,
    /// Physical unit.
    pub unit: String,
    /// Ground truth, `[latent_dim, samples]` per recording, and `latent_dim`.
    pub latents: Option<(Vec<Vec<f32>>, usize)>,
    /// Each recording is one trial (its length is the natural window), not a stretch of a
    /// continuous recording.
    pub trials: bool,
    /// Per recording, the sample indices where a gap in time begins (EDF+D); no window
    /// straddles one.
    pub breaks: Vec<Vec<usize>>,
    /// A label per recording and the label names it indexes.
    pub labels: Option<(Vec<u32>, Vec<String>)>,
}

impl Recordings {
    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channel_names.len()
    }
}

/// The conditions of a simulator with `n_conditions` > 0: recording (trial) `r` has condition
/// `r mod n`, named `c1`, `c2`, …; and channel `ch` belongs to condition `ch mod n`'s group, the
/// channels its condition acts on. `None` without conditions.
pub(crate) fn condition_labels(
    n_conditions: usize,
    recordings: usize,
) -> Option<(Vec<u32>, Vec<String>)> {
    (n_conditions > 0).then(|| {
        (
            (0..recordings).map(|r| (r % n_conditions) as u32).collect(),
            (1..=n_conditions).map(|c| format!("c{c}")).collect(),
        )
    })
}

/// Whether channel `ch` is acted on in recording `r` of a simulator with `n` conditions.
pub(crate) fn in_condition_group(n: usize, r: usize, ch: usize) -> bool {
    n > 0 && ch % n == r % n
}

/// `n_conditions` needs at least that many recordings (trials), one per condition, and at
/// least that many channels, so that every condition acts on some channel.
pub(crate) fn check_conditions(
    n_conditions: usize,
    (recordings, rec_key): (usize, &'static str),
    (channels, ch_key): (usize, &'static str),
) -> Result<(), DataError> {
    for (have, key) in [(recordings, rec_key), (channels, ch_key)] {
        if n_conditions > have {
            return Err(DataError::invalid(
                "n_conditions",
                format!("{n_conditions} conditions need at least as many {key}, got {have}"),
            ));
        }
    }
    Ok(())
}

/// Each value must be finite and > 0; an error names its key.
pub(crate) fn positive(values: &[(&'static str, f64)]) -> Result<(), DataError> {
    match values.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        Some((key, v)) => Err(DataError::invalid(
            key,
            format!("must be positive, got {v}"),
        )),
        None => Ok(()),
    }
}

/// Each value must be finite and ≥ 0; an error names its key.
pub(crate) fn non_negative(values: &[(&'static str, f64)]) -> Result<(), DataError> {
    match values.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        Some((key, v)) => Err(DataError::invalid(
            key,
            format!("must be a finite number ≥ 0, got {v}"),
        )),
        None => Ok(()),
    }
}

/// A simulated recording may hold at most 1e8 samples per channel.
pub(crate) fn check_length(duration_s: f64, sfreq: f64) -> Result<(), DataError> {
    if (duration_s * sfreq) as usize > 100_000_000 {
        return Err(DataError::invalid(
            "duration_s",
            "more than 1e8 samples per recording",
        ));
    }
    Ok(())
}

/// Classic fourth-order Runge–Kutta step for a small host ODE.
pub(crate) fn rk4_step<const N: usize>(
    f: impl Fn(&[f64; N]) -> [f64; N],
    y: &[f64; N],
    h: f64,
) -> [f64; N] {
    let add = |a: &[f64; N], b: &[f64; N], s: f64| -> [f64; N] {
        let mut out = *a;
        for i in 0..N {
            out[i] += s * b[i];
        }
        out
    };
    let k1 = f(y);
    let k2 = f(&add(y, &k1, h / 2.0));
    let k3 = f(&add(y, &k2, h / 2.0));
    let k4 = f(&add(y, &k3, h));
    let mut out = *y;
    for i in 0..N {
        out[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_lorenz() -> LorenzConfig {
        LorenzConfig {
            n_trials: 40,
            n_neurons: 12,
            n_bins: 50,
            ..LorenzConfig::default()
        }
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = small_lorenz().simulate(3).unwrap();
        let b = small_lorenz().simulate(3).unwrap();
        let c = small_lorenz().simulate(4).unwrap();
        assert_eq!(a.data, b.data);
        assert_eq!(a.latents.as_ref().unwrap().0, b.latents.as_ref().unwrap().0);
        assert_ne!(a.data, c.data);

        let k = KuramotoConfig {
            duration_s: 5.0,
            ..KuramotoConfig::default()
        };
        let (x, y, z) = (
            k.simulate(9).unwrap(),
            k.simulate(9).unwrap(),
            k.simulate(10).unwrap(),
        );
        assert_eq!(x.data, y.data);
        assert_ne!(x.data, z.data);
    }

    #[test]
    fn a_lorenz_stimulus_multiplies_the_driven_rates_by_exp_gain_while_it_is_on() {
        let cfg = LorenzConfig {
            n_trials: 30,
            stim_pulses: 2,
            stim_bins: 8,
            ..small_lorenz()
        };
        let (recs, rates) = cfg.simulate_with_rates(5).unwrap();
        let (_, base_rates) = LorenzConfig {
            stim_pulses: 0,
            ..cfg.clone()
        }
        .simulate_with_rates(5)
        .unwrap();
        let (n, t) = (cfg.n_neurons, cfg.n_bins);
        assert_eq!(recs.channel_names.len(), n + 1);
        assert_eq!(recs.channel_names[n], "stim");
        let mut on_bins = 0;
        for (trial, (r, b)) in rates.iter().zip(&base_rates).enumerate() {
            let stim = &recs.data[trial][n * t..(n + 1) * t];
            assert!(stim.iter().all(|v| *v == 0.0 || *v == 1.0));
            let on = stim.iter().filter(|v| **v == 1.0).count();
            assert!(
                (8..=16).contains(&on),
                "two pulses of 8 bins, got {on} bins on"
            );
            on_bins += on;
            for neuron in 0..n {
                for bin in 0..t {
                    let ratio = r[neuron * t + bin] / b[neuron * t + bin];
                    let want = if neuron % 2 == 0 && stim[bin] == 1.0 {
                        3.0
                    } else {
                        1.0
                    };
                    assert!(
                        (ratio - want).abs() < 1e-4,
                        "{trial}/{neuron}/{bin}: {ratio}"
                    );
                }
            }
        }
        assert!(on_bins > 0);
        let e = LorenzConfig {
            stim_pulses: 1,
            stim_bins: 51,
            ..small_lorenz()
        }
        .simulate(0)
        .unwrap_err()
        .to_string();
        assert!(e.contains("stim_bins") && e.contains("n_bins = 50"), "{e}");
    }

    /// Power of `x` in 8–12 Hz at `fs`: every DFT bin of the whole signal in the band.
    fn alpha_power(x: &[f32], fs: f64) -> f64 {
        let n = x.len();
        let (lo, hi) = (
            (8.0 * n as f64 / fs) as usize,
            (12.0 * n as f64 / fs) as usize,
        );
        (lo..=hi)
            .map(|k| {
                let w = 2.0 * std::f64::consts::PI * k as f64 / n as f64;
                let (re, im) = x.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, v)| {
                    let a = w * t as f64;
                    (re + *v as f64 * a.cos(), im - *v as f64 * a.sin())
                });
                (re * re + im * im) / n as f64
            })
            .sum::<f64>()
    }

    #[test]
    fn conditions_carry_their_signature_and_labels() {
        // Kuramoto: in condition c (recording r, c = r mod 2) the channels ch ≡ c (mod 2) lose
        // the alpha rhythm (amplitude × 0.3), so their alpha power falls well below the same
        // channels' power in the other condition.
        let k = KuramotoConfig {
            n_recordings: 2,
            n_conditions: 2,
            duration_s: 20.0,
            n_channels: 4,
            ..KuramotoConfig::default()
        };
        let recs = k.simulate(5).unwrap();
        assert_eq!(
            recs.labels,
            Some((vec![0, 1], vec!["c1".into(), "c2".into()]))
        );
        let t = recs.samples[0];
        let power = |r: usize, ch: usize| alpha_power(&recs.data[r][ch * t..(ch + 1) * t], 128.0);
        for ch in 0..4 {
            let (own, other) = (power(ch % 2, ch), power(1 - ch % 2, ch));
            assert!(own < 0.5 * other, "channel {ch}: {own} vs {other}");
        }
        // Without conditions the recording is the one it always was.
        let plain = KuramotoConfig {
            n_conditions: 0,
            ..k.clone()
        };
        let (a, b) = (
            plain.simulate(5).unwrap(),
            KuramotoConfig { erd: 1.0, ..k }.simulate(5).unwrap(),
        );
        assert_eq!(a.data, b.data, "a condition with erd 1 changes nothing");
        assert_eq!(a.labels, None);

        // Lorenz: condition c doubles the rates of the neurons i ≡ c (mod 2).
        let cfg = LorenzConfig {
            n_trials: 200,
            n_conditions: 2,
            ..small_lorenz()
        };
        let (recs, rates) = cfg.simulate_with_rates(1).unwrap();
        let (labels, names) = recs.labels.clone().unwrap();
        assert_eq!(names, ["c1", "c2"]);
        let base = LorenzConfig {
            n_conditions: 0,
            ..cfg.clone()
        };
        let (_, base_rates) = base.simulate_with_rates(1).unwrap();
        for (trial, (r, b)) in rates.iter().zip(&base_rates).enumerate() {
            for n in 0..cfg.n_neurons {
                let ratio = r[n * cfg.n_bins] / b[n * cfg.n_bins];
                let want = if n % 2 == labels[trial] as usize {
                    2.0
                } else {
                    1.0
                };
                assert!(
                    (ratio - want).abs() < 1e-4,
                    "trial {trial} neuron {n}: {ratio}"
                );
            }
        }

        // Neural mass: extra input to a condition's columns moves their alpha power.
        let nm = NeuralMassConfig {
            n_recordings: 2,
            n_conditions: 2,
            duration_s: 20.0,
            n_columns: 2,
            ..NeuralMassConfig::default()
        };
        let recs = nm.simulate(3).unwrap();
        assert_eq!(recs.labels.as_ref().unwrap().0, [0, 1]);
        let t = recs.samples[0];
        let power = |r: usize, ch: usize| alpha_power(&recs.data[r][ch * t..(ch + 1) * t], 128.0);
        for ch in 0..2 {
            let (own, other) = (power(ch, ch), power(1 - ch, ch));
            assert!(
                (own / other).ln().abs() > 0.3,
                "column {ch}: alpha power {own} driven vs {other} not"
            );
        }
        let e = KuramotoConfig {
            n_recordings: 1,
            n_conditions: 2,
            ..KuramotoConfig::default()
        }
        .simulate(1)
        .unwrap_err();
        assert!(e.to_string().contains("n_conditions"), "{e}");
    }

    #[test]
    fn poisson_counts_match_their_rates() {
        let cfg = LorenzConfig {
            n_trials: 200,
            ..small_lorenz()
        };
        let (recs, rates) = cfg.simulate_with_rates(1).unwrap();
        assert!(recs
            .data
            .iter()
            .flatten()
            .all(|&c| c >= 0.0 && c.fract() == 0.0));
        // Per neuron, the mean count over 10,000 bins must match the mean rate: the standard
        // error of the mean is sqrt(rate / 10,000), so 5 standard errors is a loose bound.
        let (n, t) = (cfg.n_neurons, cfg.n_bins);
        for neuron in 0..n {
            let (mut count, mut rate) = (0f64, 0f64);
            for (d, r) in recs.data.iter().zip(&rates) {
                count += d[neuron * t..(neuron + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
                rate += r[neuron * t..(neuron + 1) * t]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
            }
            let bins = (cfg.n_trials * t) as f64;
            let (mc, mr) = (count / bins, rate / bins);
            let se = (mr / bins).sqrt();
            assert!(
                (mc - mr).abs() < 5.0 * se,
                "neuron {neuron}: mean count {mc} vs rate {mr}"
            );
        }
        // With gain 0 every rate is the baseline: 15 Hz × 10 ms = 0.15 per bin.
        let flat = LorenzConfig { gain: 0.0, ..cfg };
        let (_, rates) = flat.simulate_with_rates(1).unwrap();
        assert!(rates.iter().flatten().all(|&r| (r - 0.15).abs() < 1e-6));
    }

    #[test]
    fn lorenz_latents_are_standardised() {
        let recs = small_lorenz().simulate(2).unwrap();
        let (lat, dim) = recs.latents.unwrap();
        assert_eq!(dim, 3);
        let t = 50;
        for d in 0..3 {
            let vals: Vec<f64> = lat
                .iter()
                .flat_map(|r| r[d * t..(d + 1) * t].iter().map(|&v| v as f64))
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!(
                m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3,
                "dim {d}: mean {m}, var {v}"
            );
        }
    }

    /// Power at frequency `f` of `x` sampled at `fs` (plain DFT, Hann window).
    fn power_at(x: &[f32], fs: f64, f: f64) -> f64 {
        let n = x.len();
        let (mut re, mut im) = (0f64, 0f64);
        for (i, &v) in x.iter().enumerate() {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            let ph = std::f64::consts::TAU * f * i as f64 / fs;
            re += w * v as f64 * ph.cos();
            im -= w * v as f64 * ph.sin();
        }
        (re * re + im * im) / n as f64
    }

    #[test]
    fn kuramoto_spectrum_peaks_in_the_configured_bands() {
        let cfg = KuramotoConfig {
            duration_s: 40.0,
            bands: vec![[9.0, 11.0], [20.0, 22.0]],
            ..KuramotoConfig::default()
        };
        let recs = cfg.simulate(5).unwrap();
        let t = recs.samples[0];
        // Average over channels, in 0.25 Hz steps from 2 to 40 Hz, averaged over 1 s segments.
        let freqs: Vec<f64> = (8..=160).map(|i| i as f64 * 0.25).collect();
        let seg = 128;
        let mut psd = vec![0f64; freqs.len()];
        for c in 0..cfg.n_channels {
            let x = &recs.data[0][c * t..(c + 1) * t];
            for s in x.chunks_exact(seg) {
                for (p, &f) in psd.iter_mut().zip(&freqs) {
                    *p += power_at(s, cfg.sfreq, f);
                }
            }
        }
        let band_mean = |lo: f64, hi: f64| {
            let v: Vec<f64> = freqs
                .iter()
                .zip(&psd)
                .filter(|(f, _)| **f >= lo && **f <= hi)
                .map(|(_, p)| *p)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (peak_f, _) =
            freqs
                .iter()
                .zip(&psd)
                .fold((0.0, 0.0), |a, (f, p)| if *p > a.1 { (*f, *p) } else { a });
        assert!(
            (8.0..=12.0).contains(&peak_f) || (19.0..=23.0).contains(&peak_f),
            "peak at {peak_f} Hz"
        );
        // Both bands stand far above the background between and beyond them.
        let background = band_mean(14.0, 17.0).max(band_mean(30.0, 38.0));
        assert!(band_mean(9.0, 11.0) > 5.0 * background);
        assert!(band_mean(20.0, 22.0) > 5.0 * background);
    }

    #[test]
    fn jansen_rit_spectrum_peaks_in_the_alpha_band() {
        let cfg = NeuralMassConfig {
            duration_s: 20.0,
            n_columns: 2,
            ..NeuralMassConfig::default()
        };
        let recs = cfg.simulate(3).unwrap();
        let t = recs.samples[0];
        let freqs: Vec<f64> = (4..=160).map(|i| i as f64 * 0.25).collect();
        let seg = 256;
        let mut psd = vec![0f64; freqs.len()];
        for c in 0..cfg.n_columns {
            for s in recs.data[0][c * t..(c + 1) * t].chunks_exact(seg) {
                for (p, &f) in psd.iter_mut().zip(&freqs) {
                    *p += power_at(s, cfg.sfreq, f);
                }
            }
        }
        let (peak_f, _) =
            freqs
                .iter()
                .zip(&psd)
                .fold((0.0, 0.0), |a, (f, p)| if *p > a.1 { (*f, *p) } else { a });
        assert!((8.0..=12.0).contains(&peak_f), "peak at {peak_f} Hz");
        // EEG-like amplitude in µV, and a latent per column.
        let sd = {
            let x = &recs.data[0][..t];
            (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / t as f64).sqrt()
        };
        assert!((2.0..200.0).contains(&sd), "sd {sd} µV");
        assert_eq!(recs.latents.as_ref().unwrap().1, 2);
    }

    #[test]
    fn izhikevich_rates_fall_in_the_documented_ranges() {
        let cfg = IzhikevichConfig {
            n_trials: 20,
            ..IzhikevichConfig::default()
        };
        let recs = cfg.simulate(1).unwrap();
        let (ne, n) = (cfg.n_excitatory, cfg.n_excitatory + cfg.n_inhibitory);
        assert_eq!(recs.channels(), n);
        let seconds = (cfg.n_trials * cfg.n_bins * cfg.bin_ms) as f64 / 1000.0;
        let t = cfg.n_bins;
        let rate = |i: usize| {
            recs.data
                .iter()
                .map(|d| d[i * t..(i + 1) * t].iter().sum::<f32>() as f64)
                .sum::<f64>()
                / seconds
        };
        let mean = |r: std::ops::Range<usize>| {
            let k = r.len() as f64;
            r.map(rate).sum::<f64>() / k
        };
        let (exc, inh) = (mean(0..ne), mean(ne..n));
        assert!((2.0..=30.0).contains(&exc), "excitatory {exc} Hz");
        assert!((5.0..=60.0).contains(&inh), "inhibitory {inh} Hz");
        assert!(inh > exc, "fast-spiking cells fire faster: {inh} vs {exc}");
        assert!(recs
            .data
            .iter()
            .flatten()
            .all(|&c| c >= 0.0 && c.fract() == 0.0));
    }

    #[test]
    fn bad_simulator_settings_name_their_key() {
        let e = LorenzConfig {
            n_neurons: 0,
            ..small_lorenz()
        }
        .simulate(0)
        .unwrap_err();
        assert!(e.to_string().contains("n_neurons"), "{e}");
        let e = KuramotoConfig {
            bands: vec![[10.0, 80.0]],
            ..KuramotoConfig::default()
        }
        .simulate(0)
        .unwrap_err();
        assert!(
            e.to_string().contains("bands") && e.to_string().contains("Nyquist"),
            "{e}"
        );
    }
}
