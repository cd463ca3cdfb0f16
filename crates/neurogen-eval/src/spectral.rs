//! Welch spectra, band powers and coherence, with SciPy's `welch`/`csd` conventions.
//!
//! Every spectrum here is `scipy.signal.welch(x, fs, nperseg=min(256, time))` with the rest of
//! SciPy's defaults: a periodic Hann window, 50 % overlap, constant detrend per segment, a
//! one-sided density in units²/Hz, and the mean over segments. Averaging over windows is a mean
//! of the per-window spectra (every window has the same number of segments, so this is also the
//! mean over all segments of all windows).

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::View;

/// The canonical EEG bands, `[lo, hi)` in Hz.
pub const BANDS: [(&str, f64, f64); 5] = [
    ("delta", 1.0, 4.0),
    ("theta", 4.0, 8.0),
    ("alpha", 8.0, 13.0),
    ("beta", 13.0, 30.0),
    ("gamma", 30.0, 45.0),
];

/// Welch's segment length for windows of `time` samples: `min(256, time)`.
pub fn nperseg(time: usize) -> usize {
    time.clamp(1, 256)
}

/// One Welch estimator: segment length, window and FFT plan, reused across signals.
pub struct Welch {
    nperseg: usize,
    fs: f64,
    window: Vec<f64>,
    /// `1 / (fs · Σ w²)`: SciPy's density scaling.
    scale: f64,
    fft: Arc<dyn Fft<f64>>,
}

impl Welch {
    /// An estimator for segments of `nperseg` samples at `fs` Hz.
    pub fn new(nperseg: usize, fs: f64) -> Welch {
        let n = nperseg.max(1);
        // SciPy's `get_window('hann', n)` is the periodic (DFT-even) Hann window.
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let wsum: f64 = window.iter().map(|w| w * w).sum();
        Welch {
            nperseg: n,
            fs,
            scale: 1.0 / (fs * wsum.max(f64::MIN_POSITIVE)),
            window,
            fft: FftPlanner::new().plan_fft_forward(n),
        }
    }

    /// Number of one-sided frequency bins, `nperseg / 2 + 1`.
    pub fn bins(&self) -> usize {
        self.nperseg / 2 + 1
    }

    /// The frequency of each bin in Hz.
    pub fn freqs(&self) -> Vec<f64> {
        (0..self.bins())
            .map(|k| k as f64 * self.fs / self.nperseg as f64)
            .collect()
    }

    /// The PSD bins in each of [`BANDS`], leaving out bands with no bin (above Nyquist).
    pub fn band_bins(&self) -> Vec<Vec<usize>> {
        let freqs = self.freqs();
        BANDS
            .iter()
            .map(|(_, lo, hi)| {
                (0..freqs.len())
                    .filter(|&k| freqs[k] >= *lo && freqs[k] < *hi)
                    .collect::<Vec<_>>()
            })
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// Start of each segment in a signal of `len` samples (SciPy: step = nperseg − nperseg/2).
    fn starts(&self, len: usize) -> impl Iterator<Item = usize> {
        let step = self.nperseg - self.nperseg / 2;
        let count = if len < self.nperseg {
            0
        } else {
            (len - self.nperseg / 2) / step
        };
        (0..count).map(move |i| i * step)
    }

    /// Windowed, detrended, transformed segment: the first `bins()` FFT coefficients.
    fn transform(&self, seg: &[f32]) -> Vec<Complex<f64>> {
        let mean = seg.iter().map(|v| *v as f64).sum::<f64>() / seg.len() as f64;
        let mut buf: Vec<Complex<f64>> = seg
            .iter()
            .zip(&self.window)
            .map(|(v, w)| Complex::new((*v as f64 - mean) * w, 0.0))
            .collect();
        self.fft.process(&mut buf);
        buf.truncate(self.bins());
        buf
    }

    /// The one-sided density weight of bin `k`: 2 except at DC and (even `nperseg`) Nyquist.
    fn one_sided(&self, k: usize) -> f64 {
        if k == 0 || (self.nperseg.is_multiple_of(2) && k == self.nperseg / 2) {
            1.0
        } else {
            2.0
        }
    }

    /// The cross-spectral densities of every channel pair of one multichannel signal
    /// (`[channels, len]`), summed over its segments, added to `acc` (`[channels, channels,
    /// bins]`, complex). Returns the number of segments.
    fn add_csd(&self, x: &[f32], channels: usize, acc: &mut [Complex<f64>]) -> usize {
        let len = x.len() / channels.max(1);
        let bins = self.bins();
        let mut count = 0;
        for start in self.starts(len) {
            let spectra: Vec<Vec<Complex<f64>>> = (0..channels)
                .map(|c| self.transform(&x[c * len + start..c * len + start + self.nperseg]))
                .collect();
            for (a, sa) in spectra.iter().enumerate() {
                for (b, sb) in spectra.iter().enumerate().skip(a) {
                    let row = &mut acc[(a * channels + b) * bins..(a * channels + b + 1) * bins];
                    for (k, cell) in row.iter_mut().enumerate() {
                        *cell += sa[k].conj() * sb[k] * (self.scale * self.one_sided(k));
                    }
                }
            }
            count += 1;
        }
        count
    }

    /// Welch PSD of one signal: `scipy.signal.welch(x, fs, nperseg)`. Empty when the signal is
    /// shorter than a segment.
    pub fn psd(&self, x: &[f32]) -> Vec<f64> {
        let mut acc = vec![Complex::new(0.0, 0.0); self.bins()];
        let count = self.add_csd(x, 1, &mut acc);
        if count == 0 {
            return Vec::new();
        }
        acc.iter().map(|c| c.re / count as f64).collect()
    }
}

/// Per-channel spectra of a set of windows, averaged over windows, with their cross-spectra.
#[derive(Debug, Clone)]
pub struct Spectra {
    /// Bin frequencies in Hz.
    pub freqs: Vec<f64>,
    /// Mean PSD per channel, `[channels][bins]`, units²/Hz.
    pub psd: Vec<Vec<f64>>,
    /// Mean cross-spectral density, `[channels, channels, bins]` (upper triangle filled).
    csd: Vec<Complex<f64>>,
    channels: usize,
}

impl Spectra {
    /// Welch spectra of every window of `v` at `fs` Hz, averaged over all segments.
    pub fn of(v: &View, fs: f64) -> Spectra {
        let w = Welch::new(nperseg(v.time), fs);
        let bins = w.bins();
        let c = v.channels;
        let mut acc = vec![Complex::new(0.0, 0.0); c * c * bins];
        let mut count = 0;
        for i in 0..v.n {
            count += w.add_csd(v.window(i), c, &mut acc);
        }
        let count = count.max(1) as f64;
        for cell in acc.iter_mut() {
            *cell /= count;
        }
        let psd = (0..c)
            .map(|ch| {
                acc[(ch * c + ch) * bins..(ch * c + ch + 1) * bins]
                    .iter()
                    .map(|z| z.re)
                    .collect()
            })
            .collect();
        Spectra {
            freqs: w.freqs(),
            psd,
            csd: acc,
            channels: c,
        }
    }

    /// The channel-mean PSD, `[bins]`.
    pub fn mean_psd(&self) -> Vec<f64> {
        let c = self.psd.len().max(1) as f64;
        (0..self.freqs.len())
            .map(|k| self.psd.iter().map(|p| p[k]).sum::<f64>() / c)
            .collect()
    }

    /// Indices of the bins with `lo ≤ f ≤ hi`.
    pub fn bins_in(&self, lo: f64, hi: f64) -> Vec<usize> {
        (0..self.freqs.len())
            .filter(|&k| self.freqs[k] >= lo && self.freqs[k] <= hi)
            .collect()
    }

    /// Magnitude-squared coherence `|Pxy|² / (Pxx Pyy)` of channels `a` and `b` per bin, from
    /// cross-spectra averaged over every segment of every window (`scipy.signal.coherence` when
    /// there is a single window).
    pub fn coherence(&self, a: usize, b: usize) -> Vec<f64> {
        let (a, b) = (a.min(b), a.max(b));
        let bins = self.freqs.len();
        let c = self.channels;
        (0..bins)
            .map(|k| {
                let pxy = self.csd[(a * c + b) * bins + k];
                let denom = self.psd[a][k] * self.psd[b][k];
                if denom > 0.0 {
                    pxy.norm_sqr() / denom
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Power in `[lo, hi)` Hz of the channel-mean PSD: `Σ P(f)·Δf` over the bins in the band.
    /// `None` when no bin falls in the band.
    pub fn band_power(&self, lo: f64, hi: f64) -> Option<f64> {
        let df = self.freqs.get(1).copied()?;
        let mean = self.mean_psd();
        let bins: Vec<usize> = (0..self.freqs.len())
            .filter(|&k| self.freqs[k] >= lo && self.freqs[k] < hi)
            .collect();
        (!bins.is_empty()).then(|| bins.iter().map(|&k| mean[k]).sum::<f64>() * df)
    }
}

/// The frequency range `[lo, hi]` clipped to Nyquist.
pub fn clip_range(lo: f64, hi: f64, fs: f64) -> (f64, f64) {
    (lo, hi.min(fs / 2.0))
}

/// Mean over channels and over bins with `lo ≤ f ≤ hi` of `|10·log10 Ps − 10·log10 Pr|` (dB),
/// where Ps and Pr are the window-mean PSDs. Powers are floored at 1e-30 so silent channels
/// give a large finite distance, not infinity. NaN when no bin is in range.
pub fn psd_db_distance(s: &Spectra, r: &Spectra, lo: f64, hi: f64) -> f64 {
    let bins = r.bins_in(lo, hi);
    if bins.is_empty() || s.freqs.len() != r.freqs.len() {
        return f64::NAN;
    }
    let db = |p: f64| 10.0 * p.max(1e-30).log10();
    let mut total = 0.0;
    for (ps, pr) in s.psd.iter().zip(&r.psd) {
        for &k in &bins {
            total += (db(ps[k]) - db(pr[k])).abs();
        }
    }
    total / (bins.len() * r.psd.len()) as f64
}

/// The mean coherence over bins in `[lo, hi]` of every channel pair `a < b`, row-major over
/// pairs.
pub fn coherence_pairs(s: &Spectra, lo: f64, hi: f64) -> Vec<f64> {
    let bins = s.bins_in(lo, hi);
    let mut out = Vec::new();
    for a in 0..s.channels {
        for b in a + 1..s.channels {
            let coh = s.coherence(a, b);
            out.push(bins.iter().map(|&k| coh[k]).sum::<f64>() / bins.len().max(1) as f64);
        }
    }
    out
}

/// ln of the power in each band of `bands` (bin indices, see [`Welch::band_bins`]) of the PSD
/// `p`, floored at 1e-12, appended to `out`: windows' spectral features.
pub fn push_log_band_powers(p: &[f64], bands: &[Vec<usize>], out: &mut Vec<f64>) {
    for b in bands {
        out.push((b.iter().map(|&k| p[k]).sum::<f64>() + 1e-12).ln());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_sine(n: usize, fs: f64, f: f64, amp: f64, seed: u64) -> Vec<f32> {
        let mut rng = crate::test_rng(seed);
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * f * i as f64 / fs).sin()
                    + crate::normal(&mut rng)) as f32
            })
            .collect()
    }

    #[test]
    fn a_sinusoid_in_white_noise_peaks_at_its_frequency_with_its_power() {
        // 10 Hz, amplitude 2 (power A²/2 = 2) in unit white noise at 256 Hz for 64 s.
        let fs = 256.0;
        let x = noisy_sine(64 * 256, fs, 10.0, 2.0, 1);
        let w = Welch::new(256, fs);
        let p = w.psd(&x);
        let f = w.freqs();
        let peak = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(f[peak], 10.0);
        // The Hann window spreads a line over ±1 bin; the integral recovers A²/2.
        let df = f[1];
        let line: f64 = (peak - 2..=peak + 2).map(|k| p[k]).sum::<f64>() * df;
        let floor = 2.0 / fs; // one-sided density of unit white noise: 2σ²/fs
        let power = line - 5.0 * floor * df;
        assert!((power - 2.0).abs() < 0.1, "line power {power}");
        let far: f64 = p[60..120].iter().sum::<f64>() / 60.0;
        assert!(
            (far / floor - 1.0).abs() < 0.1,
            "noise floor {far} vs {floor}"
        );
    }

    #[test]
    fn welch_matches_scipy() {
        // x[i] = sin(0.3 i) + 0.5 cos(1.7 i) + 0.01 i, 300 samples, fs 100, nperseg 64:
        //   import numpy as np; from scipy.signal import welch   # SciPy 1.17.1
        //   i = np.arange(300); x = np.sin(0.3*i) + 0.5*np.cos(1.7*i) + 0.01*i
        //   x = x.astype(np.float32).astype(np.float64)          # our input is f32
        //   f, p = welch(x, 100.0, nperseg=64); print(p[[0, 1, 5, 27, 32]])
        let x: Vec<f32> = (0..300)
            .map(|i| {
                let i = i as f64;
                ((0.3 * i).sin() + 0.5 * (1.7 * i).cos() + 0.01 * i) as f32
            })
            .collect();
        let w = Welch::new(64, 100.0);
        let p = w.psd(&x);
        assert_eq!(p.len(), 33);
        let golden = [
            (0, 1.2061233517e-04),
            (1, 5.0372646326e-03),
            (5, 2.3529690126e-05),
            (27, 4.5980468638e-09),
            (32, 3.2111055050e-10),
        ];
        for (k, want) in golden {
            assert!(
                (p[k] - want).abs() <= 1e-6 * want.abs() + 1e-13,
                "bin {k}: {} vs {want}",
                p[k]
            );
        }
    }

    #[test]
    fn coherence_matches_scipy() {
        //   import numpy as np; from scipy.signal import coherence
        //   i = np.arange(512); a = np.sin(0.4*i) + np.cos(0.05*i*i/50)
        //   b = 0.7*np.sin(0.4*i + 1.0) + np.sin(0.11*i)
        //   a, b = (v.astype(np.float32).astype(np.float64) for v in (a, b))
        //   f, c = coherence(a, b, 128.0, nperseg=128); print(c[[1, 10, 20, 40, 64]])
        let i = (0..512).map(|i| i as f64);
        let a: Vec<f32> = i
            .clone()
            .map(|i| ((0.4 * i).sin() + (0.05 * i * i / 50.0).cos()) as f32)
            .collect();
        let b: Vec<f32> = i
            .map(|i| (0.7 * (0.4 * i + 1.0).sin() + (0.11 * i).sin()) as f32)
            .collect();
        let mut x = a.clone();
        x.extend(&b);
        let v = View {
            values: &x,
            n: 1,
            channels: 2,
            time: 512,
        };
        // `Spectra::of` uses nperseg = min(256, time); reproduce SciPy's 128 by hand instead.
        let w = Welch::new(128, 128.0);
        let mut acc = vec![Complex::new(0.0, 0.0); 4 * w.bins()];
        let n = w.add_csd(v.window(0), 2, &mut acc);
        let s = Spectra {
            freqs: w.freqs(),
            psd: (0..2)
                .map(|c| {
                    acc[(c * 2 + c) * w.bins()..(c * 2 + c + 1) * w.bins()]
                        .iter()
                        .map(|z| z.re / n as f64)
                        .collect()
                })
                .collect(),
            csd: acc.iter().map(|z| z / n as f64).collect(),
            channels: 2,
        };
        let coh = s.coherence(0, 1);
        let golden = [
            (1, 1.1937603687e-01),
            (10, 9.1617363415e-02),
            (20, 7.6913353194e-02),
            (40, 1.9378202260e-01),
            (64, 4.1454523991e-01),
        ];
        for (k, want) in golden {
            assert!(
                (coh[k] - want).abs() < 1e-9,
                "bin {k}: {} vs {want}",
                coh[k]
            );
        }
    }

    #[test]
    fn psd_distance_and_band_power_match_scipy() {
        //   import numpy as np; from scipy.signal import welch   # SciPy 1.17.1
        //   def mk(a):
        //       return np.array([[[np.sin(a*i + w + c) + 0.2*np.cos(2.1*i*(c+1))
        //                          + 0.05*((i*7 + w*3 + c) % 11) for i in range(300)]
        //                         for c in range(2)] for w in range(3)], dtype=np.float32).astype(float)
        //   s, r = mk(0.5), mk(0.8)
        //   f, ps = welch(s, 100.0, nperseg=256); _, pr = welch(r, 100.0, nperseg=256)
        //   ps, pr = ps.mean(0), pr.mean(0); k = (f >= 1) & (f <= 40)
        //   print(np.mean(np.abs(10*np.log10(ps[:, k]) - 10*np.log10(pr[:, k]))))
        //   m = pr.mean(0); b = (f >= 8) & (f < 13); print(m[b].sum() * f[1])
        let mk = |a: f64| -> Vec<f32> {
            let mut v = Vec::new();
            for w in 0..3 {
                for c in 0..2 {
                    for i in 0..300 {
                        let x = (a * i as f64 + w as f64 + c as f64).sin()
                            + 0.2 * (2.1 * i as f64 * (c + 1) as f64).cos()
                            + 0.05 * ((i * 7 + w * 3 + c) % 11) as f64;
                        v.push(x as f32);
                    }
                }
            }
            v
        };
        let (xs, xr) = (mk(0.5), mk(0.8));
        let view = |x: &[f32]| -> Spectra {
            Spectra::of(
                &View {
                    values: x,
                    n: 3,
                    channels: 2,
                    time: 300,
                },
                100.0,
            )
        };
        let (s, r) = (view(&xs), view(&xr));
        let d = psd_db_distance(&s, &r, 1.0, 40.0);
        assert!((d - 11.978977861992172).abs() < 1e-6, "{d}");
        let alpha = r.band_power(8.0, 13.0).unwrap();
        assert!((alpha - 0.48545677708545093).abs() < 1e-9, "{alpha}");
        assert_eq!(psd_db_distance(&s, &s, 1.0, 40.0), 0.0);
    }
}
