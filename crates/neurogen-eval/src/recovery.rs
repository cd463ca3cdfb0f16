//! Latent recovery (R² of a linear map) and memorisation (nearest-neighbour distances).

use crate::distribution::sq_dist;

/// Solves `A x = b` for a symmetric positive-definite `A` (`[d, d]`, row-major) by Cholesky.
/// `None` when `A` is not positive definite.
pub(crate) fn solve_spd(a: &[f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = a[i * d + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (a[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    let mut y = vec![0f64; d];
    for i in 0..d {
        y[i] = (b[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>()) / l[i * d + i];
    }
    let mut x = vec![0f64; d];
    for i in (0..d).rev() {
        x[i] = (y[i] - (i + 1..d).map(|k| l[k * d + i] * x[k]).sum::<f64>()) / l[i * d + i];
    }
    Some(x)
}

/// R² of a linear map (with intercept) from features to targets, fitted by least squares on
/// the `fit` rows and scored on the `score` rows: `1 − Σ(y − ŷ)² / Σ(y − ȳ)²` per target
/// column (ȳ the scored rows' mean), averaged over columns with variance
/// (`sklearn.metrics.r2_score`'s uniform average). A ridge of 1e-9 × the mean feature variance
/// keeps collinear features solvable without moving the fit.
///
/// # Shapes
/// - `fit_x`: `[n, p]`, `fit_y`: `[n, q]`, `score_x`: `[m, p]`, `score_y`: `[m, q]`
pub fn linear_r2(
    fit_x: &[f64],
    fit_y: &[f64],
    score_x: &[f64],
    score_y: &[f64],
    p: usize,
    q: usize,
) -> f64 {
    let n = fit_x.len() / p.max(1);
    let m = score_x.len() / p.max(1);
    if n <= p || m < 2 || q == 0 {
        return f64::NAN;
    }
    // Normal equations on [x, 1].
    let d = p + 1;
    let row = |x: &[f64], i: usize| -> Vec<f64> {
        let mut r = x[i * p..(i + 1) * p].to_vec();
        r.push(1.0);
        r
    };
    let mut xtx = vec![0f64; d * d];
    let mut xty = vec![0f64; d * q];
    for i in 0..n {
        let r = row(fit_x, i);
        for a in 0..d {
            for b in 0..d {
                xtx[a * d + b] += r[a] * r[b];
            }
            for c in 0..q {
                xty[a * q + c] += r[a] * fit_y[i * q + c];
            }
        }
    }
    let ridge = 1e-9 * (0..p).map(|a| xtx[a * d + a]).sum::<f64>() / p.max(1) as f64;
    for a in 0..p {
        xtx[a * d + a] += ridge.max(1e-12);
    }
    let mut r2_sum = 0.0;
    let mut used = 0usize;
    for c in 0..q {
        let rhs: Vec<f64> = (0..d).map(|a| xty[a * q + c]).collect();
        let Some(w) = solve_spd(&xtx, &rhs, d) else {
            return f64::NAN;
        };
        let y: Vec<f64> = (0..m).map(|i| score_y[i * q + c]).collect();
        let mean = y.iter().sum::<f64>() / m as f64;
        let ss_tot: f64 = y.iter().map(|v| (v - mean) * (v - mean)).sum();
        if ss_tot <= 0.0 {
            continue;
        }
        let ss_res: f64 = (0..m)
            .map(|i| {
                let pred: f64 = row(score_x, i).iter().zip(&w).map(|(a, b)| a * b).sum();
                (y[i] - pred) * (y[i] - pred)
            })
            .sum();
        r2_sum += 1.0 - ss_res / ss_tot;
        used += 1;
    }
    r2_sum / used as f64
}

/// Euclidean distance from each row of `queries` to its nearest row of `pool` (`[_, dim]`).
pub fn nearest_distances(queries: &[f32], pool: &[f32], dim: usize) -> Vec<f64> {
    queries
        .chunks_exact(dim)
        .map(|q| {
            pool.chunks_exact(dim)
                .map(|p| sq_dist(q, p))
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
        .collect()
}

/// The memorisation ratio: median nearest-training-window distance of the samples divided by
/// that of held-out test windows. ≈ 1 when samples are as far from the training set as fresh
/// data are; well below 1 flags copying.
pub fn memorisation_ratio(samples: &[f32], train: &[f32], test: &[f32], dim: usize) -> f64 {
    let median = |mut v: Vec<f64>| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let k = v.len();
        if k % 2 == 1 {
            v[k / 2]
        } else {
            (v[k / 2 - 1] + v[k / 2]) / 2.0
        }
    };
    median(nearest_distances(samples, train, dim)) / median(nearest_distances(test, train, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::gaussian_rows;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn r2_is_one_under_an_exact_linear_map_and_near_zero_for_noise() {
        let mut rng = StdRng::seed_from_u64(5);
        let x: Vec<f64> = gaussian_rows(300, 3, 0.0, &mut rng)
            .into_iter()
            .map(f64::from)
            .collect();
        // y = A x + b with A = [[1, -2, 0.5], [0.3, 0, 4]], b = [3, -1].
        let map = |x: &[f64]| -> Vec<f64> {
            x.chunks(3)
                .flat_map(|r| {
                    [
                        r[0] - 2.0 * r[1] + 0.5 * r[2] + 3.0,
                        0.3 * r[0] + 4.0 * r[2] - 1.0,
                    ]
                })
                .collect()
        };
        let y = map(&x);
        let r2 = linear_r2(&x[..600], &y[..400], &x[600..], &y[400..], 3, 2);
        assert!((r2 - 1.0).abs() < 1e-9, "{r2}");
        let noise: Vec<f64> = gaussian_rows(300, 2, 0.0, &mut rng)
            .into_iter()
            .map(f64::from)
            .collect();
        let r2 = linear_r2(&x[..600], &noise[..400], &x[600..], &noise[400..], 3, 2);
        assert!(r2 < 0.05 && r2 > -0.2, "{r2}");
    }

    #[test]
    fn copies_of_training_windows_give_a_ratio_far_below_one() {
        let mut rng = StdRng::seed_from_u64(9);
        let dim = 16;
        let train = gaussian_rows(300, dim, 0.0, &mut rng);
        let test = gaussian_rows(100, dim, 0.0, &mut rng);
        let fresh = gaussian_rows(100, dim, 0.0, &mut rng);
        // Copies with a whisper of noise.
        let copies: Vec<f32> = train[..100 * dim]
            .iter()
            .map(|v| v + 0.01 * crate::normal(&mut rng) as f32)
            .collect();
        let copied = memorisation_ratio(&copies, &train, &test, dim);
        let honest = memorisation_ratio(&fresh, &train, &test, dim);
        assert!(copied < 0.05, "{copied}");
        assert!((honest - 1.0).abs() < 0.15, "{honest}");
    }
}
