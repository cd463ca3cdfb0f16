//! Two-sample tests on rows of features: MMD² with a permutation p-value, sliced Wasserstein,
//! and a classifier two-sample test (logistic regression, cross-validated AUC).

use crate::stats::Standardiser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::normal;

/// Squared Euclidean distance between two rows.
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (*x - *y) as f64;
            d * d
        })
        .sum()
}

/// An RBF kernel matrix over pooled rows, `k(i, j) = exp(−‖xᵢ − xⱼ‖² / m)` with `m` the median
/// pairwise squared distance (the median heuristic).
struct Kernel {
    k: Vec<f64>,
    p: usize,
}

impl Kernel {
    fn new(rows: &[&[f32]]) -> Kernel {
        let p = rows.len();
        let mut d = vec![0f64; p * p];
        let mut all = Vec::with_capacity(p * (p - 1) / 2);
        for i in 0..p {
            for j in i + 1..p {
                let v = sq_dist(rows[i], rows[j]);
                d[i * p + j] = v;
                d[j * p + i] = v;
                all.push(v);
            }
        }
        all.sort_by(f64::total_cmp);
        let median = all.get(all.len() / 2).copied().unwrap_or(1.0).max(1e-12);
        Kernel {
            k: d.into_iter().map(|v| (-v / median).exp()).collect(),
            p,
        }
    }

    /// Unbiased MMD² between the rows marked `true` and those marked `false` in `side`.
    fn mmd2(&self, side: &[bool]) -> f64 {
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for i in 0..self.p {
            let row = &self.k[i * self.p..(i + 1) * self.p];
            for (j, k) in row.iter().enumerate() {
                if i == j {
                    continue;
                }
                match (side[i], side[j]) {
                    (true, true) => xx += k,
                    (false, false) => yy += k,
                    _ => xy += k,
                }
            }
        }
        let n = side.iter().filter(|s| **s).count() as f64;
        let m = self.p as f64 - n;
        xx / (n * (n - 1.0)) + yy / (m * (m - 1.0)) - xy / (n * m)
    }
}

/// Unbiased squared maximum mean discrepancy (Gretton et al. 2012) between the rows of `x` and
/// of `y` (each `[n, dim]`, flattened), with an RBF kernel whose bandwidth is the median
/// pairwise squared distance of the pooled rows. Near 0 when both come from one distribution.
///
/// Returns NaN when either side has fewer than two rows.
pub fn mmd2_rbf(x: &[f32], y: &[f32], dim: usize) -> f64 {
    mmd2_test(x, y, dim, 0, 0).0
}

/// [`mmd2_rbf`] and its permutation p-value: the fraction of `permutations` random
/// relabellings of the pooled rows whose MMD² reaches the observed one, `(1 + #≥) / (1 + P)`.
/// Returns `(mmd2, p)`; `p` is NaN without permutations.
pub fn mmd2_test(x: &[f32], y: &[f32], dim: usize, permutations: usize, seed: u64) -> (f64, f64) {
    let xs: Vec<&[f32]> = x.chunks_exact(dim.max(1)).collect();
    let ys: Vec<&[f32]> = y.chunks_exact(dim.max(1)).collect();
    if xs.len() < 2 || ys.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let pooled: Vec<&[f32]> = xs.iter().chain(&ys).copied().collect();
    let kernel = Kernel::new(&pooled);
    let mut side: Vec<bool> = (0..pooled.len()).map(|i| i < xs.len()).collect();
    let observed = kernel.mmd2(&side);
    if permutations == 0 {
        return (observed, f64::NAN);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        side.shuffle(&mut rng);
        if kernel.mmd2(&side) >= observed {
            at_least += 1;
        }
    }
    (observed, (1 + at_least) as f64 / (1 + permutations) as f64)
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

/// Wasserstein-1 distance between two 1-D empirical distributions: `∫ |F_a − F_b| dx`
/// (`scipy.stats.wasserstein_distance(a, b)`).
pub fn wasserstein_1d(a: &[f64], b: &[f64]) -> f64 {
    let steps = crate::stats::cdf_steps(a, b);
    if steps.is_empty() {
        return f64::NAN;
    }
    steps
        .windows(2)
        .map(|w| (w[0].1 - w[0].2).abs() * (w[1].0 - w[0].0))
        .sum()
}

/// Sliced Wasserstein-1 distance: the mean over `projections` random unit directions (seeded)
/// of the [`wasserstein_1d`] distance between the projected rows of `x` and `y`.
pub fn sliced_wasserstein(x: &[f32], y: &[f32], dim: usize, projections: usize, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let project = |rows: &[f32], dir: &[f64]| -> Vec<f64> {
        rows.chunks_exact(dim)
            .map(|r| r.iter().zip(dir).map(|(v, d)| *v as f64 * d).sum())
            .collect()
    };
    let mut total = 0.0;
    for _ in 0..projections {
        let mut dir: Vec<f64> = (0..dim).map(|_| normal(&mut rng)).collect();
        let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        dir.iter_mut().for_each(|v| *v /= norm);
        total += wasserstein_1d(&project(x, &dir), &project(y, &dir));
    }
    total / projections.max(1) as f64
}

/// Area under the ROC curve of `scores` for `labels` (true = positive): the Mann–Whitney
/// probability that a positive outranks a negative, ties counting one half.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mid-ranks (1-based) over runs of ties.
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = mid;
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// L2-regularised logistic regression fitted by Newton's method on standardised features.
struct Logistic {
    standardiser: Standardiser,
    /// Weights, the intercept last.
    w: Vec<f64>,
}

impl Logistic {
    fn fit(x: &[Vec<f64>], y: &[bool], lambda: f64) -> Logistic {
        let d = x[0].len();
        let n = x.len() as f64;
        let standardiser = Standardiser::fit(x, 0.0);
        let z: Vec<Vec<f64>> = x.iter().map(|r| standardiser.apply(r)).collect();
        let dd = d + 1;
        let mut w = vec![0.0; dd];
        for _ in 0..25 {
            // Gradient and Hessian of the mean log-loss plus (λ/2)‖w‖² (intercept unpenalised).
            let mut g = vec![0.0; dd];
            let mut h = vec![0.0; dd * dd];
            for (zi, &yi) in z.iter().zip(y) {
                let p = sigmoid(dot(zi, &w));
                let r = p - if yi { 1.0 } else { 0.0 };
                let s = p * (1.0 - p);
                for a in 0..dd {
                    g[a] += r * zi[a] / n;
                    for b in 0..dd {
                        h[a * dd + b] += s * zi[a] * zi[b] / n;
                    }
                }
            }
            for a in 0..d {
                g[a] += lambda * w[a];
                h[a * dd + a] += lambda;
            }
            h[dd * dd - 1] += 1e-9;
            let Some(step) = crate::recovery::solve_spd(&h, &g, dd) else {
                break;
            };
            let mut moved = 0f64;
            for (wa, sa) in w.iter_mut().zip(&step) {
                *wa -= sa;
                moved = moved.max(sa.abs());
            }
            if moved < 1e-8 {
                break;
            }
        }
        Logistic { standardiser, w }
    }

    fn score(&self, x: &[f64]) -> f64 {
        let (mean, scale) = (&self.standardiser.mean, &self.standardiser.scale);
        let d = mean.len();
        (0..d)
            .map(|j| (x[j] - mean[j]) / scale[j] * self.w[j])
            .sum::<f64>()
            + self.w[d]
    }
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Classifier two-sample test: an equal number `m = min(|a|, |b|)` of rows from each side
/// (the first `m`), logistic regression (λ = 0.01 on standardised features) in stratified
/// `folds`-fold cross-validation over a seeded shuffle, and the AUC of the pooled out-of-fold scores for
/// telling `a` from `b`. 0.5 = indistinguishable, 1 = perfectly separable.
pub fn c2st_auc(a: &[Vec<f64>], b: &[Vec<f64>], folds: usize, seed: u64) -> f64 {
    let m = a.len().min(b.len());
    if m < folds.max(2) {
        return f64::NAN;
    }
    // Stratified folds: each side shuffled on its own and dealt round-robin, so every fold holds
    // both sides equally. Unstratified folds bias the null AUC below 0.5 (a fold short of one
    // side trains an intercept that leans the other way).
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..m).collect();
    order.shuffle(&mut rng);
    let mut rows: Vec<(&Vec<f64>, bool, usize)> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| (&a[i], true, k % folds))
        .collect();
    order.shuffle(&mut rng);
    rows.extend(
        order
            .iter()
            .enumerate()
            .map(|(k, &i)| (&b[i], false, k % folds)),
    );
    let mut scores = vec![0.0; rows.len()];
    for f in 0..folds {
        let (train, test): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| rows[i].2 != f);
        let x: Vec<Vec<f64>> = train.iter().map(|&i| rows[i].0.clone()).collect();
        let y: Vec<bool> = train.iter().map(|&i| rows[i].1).collect();
        let model = Logistic::fit(&x, &y, 0.01);
        for i in test {
            scores[i] = model.score(rows[i].0);
        }
    }
    let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
    auc(&scores, &labels)
}

/// `n` rows of `dim` standard normals shifted by `shift`, for tests.
#[cfg(test)]
pub(crate) fn gaussian_rows(n: usize, dim: usize, shift: f64, rng: &mut StdRng) -> Vec<f32> {
    (0..n * dim).map(|_| (normal(rng) + shift) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmd_is_near_zero_with_a_high_p_value_for_one_distribution_and_low_under_a_shift() {
        let mut rng = StdRng::seed_from_u64(7);
        let dim = 4;
        let a = gaussian_rows(150, dim, 0.0, &mut rng);
        let b = gaussian_rows(150, dim, 0.0, &mut rng);
        let c = gaussian_rows(150, dim, 0.5, &mut rng);
        let (same, p_same) = mmd2_test(&a, &b, dim, 200, 1);
        let (shifted, p_shift) = mmd2_test(&a, &c, dim, 200, 1);
        assert!(same.abs() < 0.01, "same distribution: {same}");
        assert!(p_same > 0.1, "same distribution p = {p_same}");
        assert!(shifted > 0.03, "shifted: {shifted}");
        assert!(p_shift < 0.01, "shifted p = {p_shift}");
        // The test form and the plain form agree.
        assert_eq!(mmd2_rbf(&a, &c, dim), shifted);
        // Expected distance between two N(0, I₄) draws is about √(2·4)·0.94 ≈ 2.66.
        let spread = mean_pairwise_distance(&a, dim);
        assert!((spread - 2.66).abs() < 0.2, "{spread}");
        assert_eq!(mean_pairwise_distance(&vec![0.5f32; 150 * dim], dim), 0.0);
    }

    #[test]
    fn wasserstein_matches_scipy_and_slices_see_a_shift() {
        //   from scipy.stats import wasserstein_distance   # SciPy 1.17.1
        //   print(wasserstein_distance([0, 1, 3], [5, 6, 8, 1.5]))
        let w = wasserstein_1d(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0, 1.5]);
        assert!((w - 3.7916666666666665).abs() < 1e-12, "{w}");
        // Shifting N(0, I₈) by 1 on every axis shifts each projection by u·1, so the sliced
        // distance is E|u·1| over unit directions u: √8·Γ(4)/(√π·Γ(4.5)) ≈ 0.823.
        let mut rng = StdRng::seed_from_u64(3);
        let a = gaussian_rows(400, 8, 0.0, &mut rng);
        let b = gaussian_rows(400, 8, 0.0, &mut rng);
        let c = gaussian_rows(400, 8, 1.0, &mut rng);
        let same = sliced_wasserstein(&a, &b, 8, 512, 1);
        let shifted = sliced_wasserstein(&a, &c, 8, 512, 1);
        assert!(same < 0.1, "{same}");
        assert!((shifted - 0.823).abs() < 0.1, "{shifted}");
    }

    #[test]
    fn auc_matches_its_definition() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        // Ties count one half: of the 4 (positive, negative) pairs, 3 are won and 1 tied.
        assert_eq!(
            auc(&[0.5, 0.5, 0.2, 0.7], &[false, true, false, true]),
            0.875
        );
    }

    #[test]
    fn c2st_is_near_half_for_one_distribution_and_near_one_for_separable_sets() {
        let mut rng = StdRng::seed_from_u64(11);
        let rows = |n: usize, shift: f64, rng: &mut StdRng| -> Vec<Vec<f64>> {
            (0..n)
                .map(|_| (0..5).map(|_| normal(rng) + shift).collect())
                .collect()
        };
        let a = rows(300, 0.0, &mut rng);
        let b = rows(300, 0.0, &mut rng);
        let c = rows(300, 3.0, &mut rng);
        let same = c2st_auc(&a, &b, 5, 1);
        let separable = c2st_auc(&a, &c, 5, 1);
        // The null AUC's spread at 300 a side is about 0.03 (20 seeds: mean 0.49).
        assert!((same - 0.5).abs() < 0.1, "{same}");
        assert!(separable > 0.99, "{separable}");
    }
}
