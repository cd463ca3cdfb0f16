//! The decoder behind TSTR/TRTR and the augmentation curve: does synthetic data help a
//! classifier of conditions?
//!
//! **Features** of a window ([`decoder_features`]): per channel, the window averaged in
//! [`TIME_BINS`] equal time bins (the downsampled waveform, which carries evoked responses),
//! then — continuous signals — the log power in each EEG band below Nyquist of the channel's
//! Welch PSD (`nperseg = min(256, time)`, as [`crate::window_features`]), or — counts — the log
//! of one plus the channel's mean count (its rate).
//!
//! **Decoder** ([`Decoder`]): multinomial (softmax) logistic regression with an L2 penalty
//! `λ/2 ‖W‖²` (λ = [`LAMBDA`], intercepts unpenalised) on features z-scored with the training
//! set's mean and standard deviation, fitted by full-batch gradient descent with Nesterov
//! momentum (step 1/L, L from a power-iteration bound on the loss's curvature) for
//! [`ITERATIONS`] iterations from zero weights: deterministic, no randomness.

use neurogen_data::{SignalKind, Signals};

use crate::spectral::{self, Welch};
use crate::stats::Standardiser;
use crate::View;

/// Time bins per channel of the downsampled waveform.
pub const TIME_BINS: usize = 16;
/// L2 penalty on the standardised weights.
pub const LAMBDA: f64 = 1e-2;
/// Gradient iterations.
pub const ITERATIONS: usize = 400;

/// The decoder's features of each window of `s` (see the module docs).
pub fn decoder_features(s: &Signals) -> Vec<Vec<f64>> {
    let v = View::of(s);
    let bins = TIME_BINS.min(v.time).max(1);
    let welch = Welch::new(spectral::nperseg(v.time), s.meta.sfreq);
    let bands = welch.band_bins();
    (0..v.n)
        .map(|i| {
            let mut f = Vec::new();
            for c in 0..v.channels {
                let row = v.row(i, c);
                for b in 0..bins {
                    let (lo, hi) = (
                        b * v.time / bins,
                        ((b + 1) * v.time / bins).max(b * v.time / bins + 1),
                    );
                    let part = &row[lo..hi.min(v.time)];
                    f.push(part.iter().map(|x| *x as f64).sum::<f64>() / part.len().max(1) as f64);
                }
                match s.meta.kind {
                    SignalKind::Continuous => {
                        let p = welch.psd(row);
                        spectral::push_log_band_powers(&p, &bands, &mut f);
                    }
                    SignalKind::Counts => {
                        let mean = row.iter().map(|x| *x as f64).sum::<f64>() / v.time as f64;
                        f.push(mean.max(0.0).ln_1p());
                    }
                }
            }
            f
        })
        .collect()
}

/// A fitted multinomial logistic regression (see the module docs).
#[derive(Debug, Clone)]
pub struct Decoder {
    standardiser: Standardiser,
    /// `[classes, d + 1]`, the intercept last in each row.
    w: Vec<f64>,
    classes: usize,
}

impl Decoder {
    /// Fits the decoder to rows `x` (equal lengths) with labels `y < classes`.
    pub fn fit(x: &[Vec<f64>], y: &[u32], classes: usize) -> Decoder {
        let d = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f64;
        let standardiser = Standardiser::fit(x, 1e-24);
        let z: Vec<Vec<f64>> = x.iter().map(|r| standardiser.apply(r)).collect();
        let dd = d + 1;
        let k = classes.max(1);
        // The softmax loss's Hessian is at most ½ ZᵀZ/n per class block: its largest
        // eigenvalue (power iteration) bounds the step.
        let mut v = vec![1.0 / (dd as f64).sqrt(); dd];
        let mut lmax = 0.0;
        for _ in 0..30 {
            let mut next = vec![0.0; dd];
            for zi in &z {
                let s: f64 = zi.iter().zip(&v).map(|(a, b)| a * b).sum();
                for (nj, zj) in next.iter_mut().zip(zi) {
                    *nj += s * zj / n;
                }
            }
            lmax = next.iter().map(|a| a * a).sum::<f64>().sqrt();
            if lmax <= 0.0 {
                break;
            }
            v = next.iter().map(|a| a / lmax).collect();
        }
        let step = 1.0 / (0.5 * lmax + LAMBDA).max(1e-12);
        let (mut w, mut prev) = (vec![0.0; k * dd], vec![0.0; k * dd]);
        let mut probs = vec![0.0; k];
        for it in 0..ITERATIONS {
            // Nesterov: the gradient at the extrapolated point.
            let beta = it as f64 / (it as f64 + 3.0);
            let look: Vec<f64> = w
                .iter()
                .zip(&prev)
                .map(|(a, b)| a + beta * (a - b))
                .collect();
            let mut g = vec![0.0; k * dd];
            for (zi, &yi) in z.iter().zip(y) {
                softmax_into(&look, zi, k, &mut probs);
                for c in 0..k {
                    let r = probs[c] - if c as u32 == yi { 1.0 } else { 0.0 };
                    for (gj, zj) in g[c * dd..(c + 1) * dd].iter_mut().zip(zi) {
                        *gj += r * zj / n;
                    }
                }
            }
            for c in 0..k {
                for j in 0..d {
                    g[c * dd + j] += LAMBDA * look[c * dd + j];
                }
            }
            prev = w;
            w = look.iter().zip(&g).map(|(a, b)| a - step * b).collect();
        }
        Decoder {
            standardiser,
            w,
            classes: k,
        }
    }

    /// The most probable label of each row.
    pub fn predict(&self, x: &[Vec<f64>]) -> Vec<u32> {
        let mut probs = vec![0.0; self.classes];
        x.iter()
            .map(|r| {
                let z = self.standardiser.apply(r);
                softmax_into(&self.w, &z, self.classes, &mut probs);
                (0..self.classes)
                    .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
                    .unwrap_or(0) as u32
            })
            .collect()
    }
}

/// Class probabilities of row `z` under weights `w` (`[k, z.len()]`).
fn softmax_into(w: &[f64], z: &[f64], k: usize, out: &mut [f64]) {
    let dd = z.len();
    let mut max = f64::NEG_INFINITY;
    for (c, o) in out.iter_mut().enumerate().take(k) {
        *o = w[c * dd..(c + 1) * dd]
            .iter()
            .zip(z)
            .map(|(a, b)| a * b)
            .sum();
        max = max.max(*o);
    }
    let mut total = 0.0;
    for o in out.iter_mut().take(k) {
        *o = (*o - max).exp();
        total += *o;
    }
    for o in out.iter_mut().take(k) {
        *o /= total;
    }
}

/// The fraction of `predicted` equal to `truth`.
pub fn accuracy(predicted: &[u32], truth: &[u32]) -> f64 {
    let right = predicted.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len().max(1) as f64
}

/// The mean over the labels present in `truth` of the recall of each (chance: 1 / classes).
pub fn balanced_accuracy(predicted: &[u32], truth: &[u32], classes: usize) -> f64 {
    let recalls: Vec<f64> = (0..classes as u32)
        .filter_map(|c| {
            let of_c: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == c).collect();
            (!of_c.is_empty()).then(|| {
                of_c.iter().filter(|&&i| predicted[i] == c).count() as f64 / of_c.len() as f64
            })
        })
        .collect();
    recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
}

/// Trains the decoder on `train` (labelled windows) and scores it on `test`:
/// `(accuracy, balanced accuracy)`. `None` when either set lacks labels.
pub fn train_test(train: &Signals, test: &Signals, classes: usize) -> Option<(f64, f64)> {
    let (ytr, yte) = (train.labels.as_ref()?, test.labels.as_ref()?);
    let dec = Decoder::fit(&decoder_features(train), ytr, classes);
    let pred = dec.predict(&decoder_features(test));
    Some((accuracy(&pred, yte), balanced_accuracy(&pred, yte, classes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_decoder_separates_separable_classes_and_not_noise() {
        // Three classes of 2-D points around different means: near-perfect; the same points
        // with shuffled labels: near chance on fresh points.
        let mut rng = StdRng::seed_from_u64(1);
        let mut pts = |n: usize, shuffled: bool| -> (Vec<Vec<f64>>, Vec<u32>) {
            (0..n)
                .map(|i| {
                    let c = (i % 3) as u32;
                    let centre = [(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)][c as usize];
                    let x = vec![
                        centre.0 + rng.random_range(-1.0..1.0),
                        centre.1 + rng.random_range(-1.0..1.0),
                    ];
                    let label = if shuffled { rng.random_range(0..3) } else { c };
                    (x, label)
                })
                .unzip()
        };
        let (x, y) = pts(300, false);
        let (xt, yt) = pts(300, false);
        let pred = Decoder::fit(&x, &y, 3).predict(&xt);
        assert!(accuracy(&pred, &yt) > 0.97, "{}", accuracy(&pred, &yt));
        assert!(balanced_accuracy(&pred, &yt, 3) > 0.97);
        let (x, y) = pts(300, true);
        let (xt, yt) = pts(300, true);
        let pred = Decoder::fit(&x, &y, 3).predict(&xt);
        let acc = balanced_accuracy(&pred, &yt, 3);
        assert!((acc - 1.0 / 3.0).abs() < 0.12, "{acc}");
        // Balanced accuracy weighs each class equally: always guessing 0 scores 1/3 here.
        assert!((balanced_accuracy(&[0; 6], &[0, 0, 0, 0, 1, 2], 3) - 1.0 / 3.0).abs() < 1e-12);
    }
}
