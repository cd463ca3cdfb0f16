//! ODE solvers over batched states, one `odeint` for all of them (as torchdiffeq).
//!
//! Every solver is written in tensor operations, so gradients flow back through each stage of
//! each step (no adjoint). The adaptive solver decides step sizes from detached values read back
//! to the host: the control flow is not differentiated, the accepted states are.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The right-hand side `dy/dt = f(t, y)` of an ODE over a batch of states.
pub trait VectorField {
    /// # Shapes
    /// - `y`: `[batch, dim]` → `[batch, dim]`
    fn eval(&self, t: f64, y: Tensor<2>) -> Tensor<2>;
}

impl<F: Fn(f64, Tensor<2>) -> Tensor<2>> VectorField for F {
    fn eval(&self, t: f64, y: Tensor<2>) -> Tensor<2> {
        self(t, y)
    }
}

/// The integration scheme, chosen by name in `[model] solver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// Forward Euler, order 1, one evaluation per step.
    Euler,
    /// Explicit midpoint, order 2, two evaluations per step.
    Midpoint,
    /// Classic Runge–Kutta, order 4, four evaluations per step.
    Rk4,
    /// Dormand–Prince 5(4) with adaptive steps, six evaluations per step (first same as last).
    Dopri5,
}

/// Step settings for [`odeint`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OdeOptions {
    /// Fixed-step solvers: the largest step; each output interval is cut into equal steps no
    /// longer than this. `None`: one step per output interval.
    pub step: Option<f64>,
    /// Dopri5: relative tolerance.
    pub rtol: f64,
    /// Dopri5: absolute tolerance.
    pub atol: f64,
    /// Dopri5: the most steps (accepted or rejected) one call may take.
    pub max_steps: usize,
}

impl Default for OdeOptions {
    fn default() -> Self {
        OdeOptions {
            step: None,
            rtol: 1e-3,
            atol: 1e-4,
            max_steps: 1000,
        }
    }
}

/// What one [`odeint`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OdeStats {
    /// Function evaluations.
    pub nfe: usize,
    /// Steps taken (accepted).
    pub steps: usize,
    /// Steps rejected by the error control.
    pub rejected: usize,
}

impl OdeStats {
    /// Adds another call's counts to these.
    pub fn add(&mut self, other: OdeStats) {
        self.nfe += other.nfe;
        self.steps += other.steps;
        self.rejected += other.rejected;
    }
}

/// Why an integration failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OdeError {
    /// Output times must be finite and strictly increasing.
    #[error("output times must be finite and strictly increasing, got {0:?}")]
    BadTimes(Vec<f64>),
    /// The adaptive solver ran out of steps.
    #[error("dopri5 needed more than max_steps = {max_steps} steps (stopped at t = {t}); raise max_steps or loosen rtol/atol")]
    TooManySteps {
        /// The limit.
        max_steps: usize,
        /// How far it got.
        t: f64,
    },
    /// The state or its error estimate became NaN or infinite.
    #[error("the ODE state became non-finite at t = {0}")]
    NonFinite(f64),
}

/// Integrates `dy/dt = f(t, y)` from `y0` at `ts[0]` and returns the state at every time in `ts`
/// (the first is `y0` itself).
///
/// # Shapes
/// - `y0`: `[batch, dim]`
/// - output: `ts.len()` tensors `[batch, dim]`
pub fn odeint<F: VectorField>(
    f: &F,
    y0: Tensor<2>,
    ts: &[f64],
    solver: Solver,
    opts: &OdeOptions,
) -> Result<(Vec<Tensor<2>>, OdeStats), OdeError> {
    if ts.is_empty() || ts.iter().any(|t| !t.is_finite()) || ts.windows(2).any(|w| w[1] <= w[0]) {
        return Err(OdeError::BadTimes(ts.to_vec()));
    }
    let mut stats = OdeStats::default();
    let mut out = vec![y0.clone()];
    match solver {
        Solver::Dopri5 => {
            let mut dp = Dopri5::new(f, y0, ts[0], opts, &mut stats)?;
            for &t1 in &ts[1..] {
                out.push(dp.advance_to(t1, &mut stats)?);
            }
        }
        _ => {
            let mut y = y0;
            for w in ts.windows(2) {
                let (t0, t1) = (w[0], w[1]);
                let n = match opts.step {
                    Some(h) if h > 0.0 => ((t1 - t0) / h).ceil().max(1.0) as usize,
                    _ => 1,
                };
                let h = (t1 - t0) / n as f64;
                for i in 0..n {
                    y = fixed_step(f, solver, t0 + i as f64 * h, h, y, &mut stats);
                    stats.steps += 1;
                }
                out.push(y.clone());
            }
        }
    }
    Ok((out, stats))
}

/// One step of a fixed-step scheme from `(t, y)` with step `h`.
fn fixed_step<F: VectorField>(
    f: &F,
    solver: Solver,
    t: f64,
    h: f64,
    y: Tensor<2>,
    stats: &mut OdeStats,
) -> Tensor<2> {
    let hf = h as f32;
    match solver {
        Solver::Euler => {
            stats.nfe += 1;
            y.clone() + f.eval(t, y).mul_scalar(hf)
        }
        Solver::Midpoint => {
            stats.nfe += 2;
            let k1 = f.eval(t, y.clone());
            let mid = y.clone() + k1.mul_scalar(hf / 2.0);
            y + f.eval(t + h / 2.0, mid).mul_scalar(hf)
        }
        Solver::Rk4 | Solver::Dopri5 => {
            stats.nfe += 4;
            let k1 = f.eval(t, y.clone());
            let k2 = f.eval(t + h / 2.0, y.clone() + k1.clone().mul_scalar(hf / 2.0));
            let k3 = f.eval(t + h / 2.0, y.clone() + k2.clone().mul_scalar(hf / 2.0));
            let k4 = f.eval(t + h, y.clone() + k3.clone().mul_scalar(hf));
            let sum = k1 + k2.mul_scalar(2.0) + k3.mul_scalar(2.0) + k4;
            y + sum.mul_scalar(hf / 6.0)
        }
    }
}

// Dormand–Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Nørsett & Wanner, Table II.5.2).
const C: [f64; 6] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
const A: [&[f64]; 6] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
];
/// Fifth-order weights (also the last stage, so its evaluation is reused: FSAL).
const B5: [f64; 7] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
    0.0,
];
/// Embedded fourth-order weights.
const B4: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];

/// The state of an adaptive Dormand–Prince integration between output times.
struct Dopri5<'a, F> {
    f: &'a F,
    opts: &'a OdeOptions,
    t: f64,
    y: Tensor<2>,
    /// `f(t, y)`, carried over from the last stage of the previous step.
    k1: Tensor<2>,
    h: f64,
}

impl<'a, F: VectorField> Dopri5<'a, F> {
    fn new(
        f: &'a F,
        y0: Tensor<2>,
        t0: f64,
        opts: &'a OdeOptions,
        stats: &mut OdeStats,
    ) -> Result<Self, OdeError> {
        let k1 = f.eval(t0, y0.clone());
        stats.nfe += 1;
        // Initial step from Hairer, Nørsett & Wanner, Solving ODEs I, II.4.
        let scale = tolerance_scale(&y0, &y0, opts);
        let d0 = rms(y0.clone().detach() / scale.clone());
        let d1 = rms(k1.clone().detach() / scale.clone());
        let h0 = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        let y1 = y0.clone().detach() + k1.clone().detach().mul_scalar(h0 as f32);
        let k2 = f.eval(t0 + h0, y1).detach();
        stats.nfe += 1;
        let d2 = rms((k2 - k1.clone().detach()) / scale) / h0;
        let h1 = if d1.max(d2) <= 1e-15 {
            (h0 * 1e-3).max(1e-6)
        } else {
            (0.01 / d1.max(d2)).powf(1.0 / 5.0)
        };
        let h = (100.0 * h0).min(h1);
        if !h.is_finite() {
            return Err(OdeError::NonFinite(t0));
        }
        Ok(Dopri5 {
            f,
            opts,
            t: t0,
            y: y0,
            k1,
            h,
        })
    }

    /// Steps until `t1` exactly (the last step is shortened to land on it).
    fn advance_to(&mut self, t1: f64, stats: &mut OdeStats) -> Result<Tensor<2>, OdeError> {
        while self.t < t1 {
            if stats.steps + stats.rejected >= self.opts.max_steps {
                return Err(OdeError::TooManySteps {
                    max_steps: self.opts.max_steps,
                    t: self.t,
                });
            }
            let h = self.h.min(t1 - self.t);
            let last = h >= t1 - self.t;
            let (y_new, k7, err) = self.trial(h, stats);
            if !err.is_finite() {
                return Err(OdeError::NonFinite(self.t));
            }
            // Standard controller: safety 0.9, growth limited to [0.2, 10].
            let factor = if err == 0.0 {
                10.0
            } else {
                (0.9 * err.powf(-1.0 / 5.0)).clamp(0.2, 10.0)
            };
            if err <= 1.0 {
                self.t = if last { t1 } else { self.t + h };
                self.y = y_new;
                self.k1 = k7;
                stats.steps += 1;
                // A step cut short to hit t1 says nothing about the natural step size.
                if !last || factor < 1.0 {
                    self.h = h * factor;
                }
            } else {
                stats.rejected += 1;
                self.h = h * factor;
            }
        }
        Ok(self.y.clone())
    }

    /// One trial step: the fifth-order state, its last stage and the scaled RMS error.
    fn trial(&self, h: f64, stats: &mut OdeStats) -> (Tensor<2>, Tensor<2>, f64) {
        let hf = h as f32;
        let mut k = vec![self.k1.clone()];
        for (i, row) in A.iter().enumerate().skip(1) {
            let incr = row
                .iter()
                .zip(&k)
                .filter(|(a, _)| **a != 0.0)
                .map(|(a, ki)| ki.clone().mul_scalar((a * h) as f32))
                .reduce(|s, x| s + x);
            let yi = match incr {
                Some(d) => self.y.clone() + d,
                None => self.y.clone(),
            };
            k.push(self.f.eval(self.t + C[i] * h, yi));
        }
        let y_new = self.y.clone() + weighted(&k, &B5[..6], hf);
        let k7 = self.f.eval(self.t + h, y_new.clone());
        stats.nfe += 6;
        k.push(k7.clone());
        let diff: Vec<f64> = B5.iter().zip(&B4).map(|(a, b)| a - b).collect();
        let k_det: Vec<Tensor<2>> = k.iter().map(|t| t.clone().detach()).collect();
        let err = weighted(&k_det, &diff, hf);
        let scale = tolerance_scale(&self.y, &y_new, self.opts);
        (y_new, k7, rms(err / scale))
    }
}

/// `h · Σ wᵢ kᵢ` over the non-zero weights.
fn weighted(k: &[Tensor<2>], w: &[f64], h: f32) -> Tensor<2> {
    let mut acc: Option<Tensor<2>> = None;
    for (ki, &wi) in k.iter().zip(w) {
        if wi == 0.0 {
            continue;
        }
        let term = ki.clone().mul_scalar(wi as f32 * h);
        acc = Some(match acc {
            Some(a) => a + term,
            None => term,
        });
    }
    acc.unwrap_or_else(|| k[0].zeros_like())
}

/// `atol + rtol · max(|y0|, |y1|)`, detached.
fn tolerance_scale(y0: &Tensor<2>, y1: &Tensor<2>, opts: &OdeOptions) -> Tensor<2> {
    let m = y0
        .clone()
        .detach()
        .abs()
        .max_pair(y1.clone().detach().abs());
    m.mul_scalar(opts.rtol as f32).add_scalar(opts.atol as f32)
}

/// Root mean square over every element, read back to the host.
fn rms(x: Tensor<2>) -> f64 {
    (x.square().mean().into_scalar::<f32>() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn dev() -> Device {
        Device::flex()
    }

    fn host(t: &Tensor<2>) -> Vec<f64> {
        t.clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn tensor(v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), &dev())
    }

    /// y' = -k y for rows with rates k = 0.5, 1, 2: y(t) = y0 e^{-kt}.
    fn decay(_t: f64, y: Tensor<2>) -> Tensor<2> {
        let k = tensor(vec![0.5, 1.0, 2.0], [3, 1]);
        -(y * k)
    }

    /// x' = v, v' = -ω² x with ω = 2: x(t) = cos 2t, v(t) = -2 sin 2t from (1, 0).
    fn oscillator(_t: f64, y: Tensor<2>) -> Tensor<2> {
        let x = y.clone().narrow(1, 0, 1);
        let v = y.narrow(1, 1, 1);
        Tensor::cat(vec![v, x.mul_scalar(-4.0)], 1)
    }

    fn decay_error(solver: Solver, step: f64) -> f64 {
        let y0 = tensor(vec![1.0, 1.0, 1.0], [3, 1]);
        let opts = OdeOptions {
            step: Some(step),
            ..Default::default()
        };
        let (ys, _) = odeint(&decay, y0, &[0.0, 1.0], solver, &opts).unwrap();
        host(&ys[1])
            .iter()
            .zip([0.5f64, 1.0, 2.0])
            .map(|(y, k)| (y - (-k).exp()).abs())
            .fold(0.0, f64::max)
    }

    fn oscillator_error(solver: Solver, step: f64) -> f64 {
        let y0 = tensor(vec![1.0, 0.0], [1, 2]);
        let opts = OdeOptions {
            step: Some(step),
            ..Default::default()
        };
        let (ys, _) = odeint(&oscillator, y0, &[0.0, 1.0], solver, &opts).unwrap();
        let y = host(&ys[1]);
        (y[0] - 2f64.cos())
            .abs()
            .max((y[1] + 2.0 * 2f64.sin()).abs())
    }

    #[test]
    fn fixed_step_solvers_converge_at_their_order() {
        // Observed order log2(e(h) / e(h/2)) within 0.3 of the theoretical order; steps large
        // enough that f32 round-off stays far below the truncation error.
        for (solver, order, h) in [
            (Solver::Euler, 1.0, 0.05),
            (Solver::Midpoint, 2.0, 0.05),
            (Solver::Rk4, 4.0, 0.2),
        ] {
            for (name, err) in [
                ("decay", decay_error as fn(Solver, f64) -> f64),
                ("oscillator", oscillator_error),
            ] {
                let (e1, e2) = (err(solver, h), err(solver, h / 2.0));
                let observed = (e1 / e2).log2();
                assert!(
                    (observed - order).abs() < 0.3,
                    "{solver:?} on {name}: errors {e1:e} -> {e2:e}, order {observed:.2}"
                );
            }
        }
    }

    #[test]
    fn outputs_land_on_every_requested_time() {
        let ts = [0.0, 0.1, 0.35, 0.4, 1.0];
        for solver in [Solver::Euler, Solver::Midpoint, Solver::Rk4, Solver::Dopri5] {
            let y0 = tensor(vec![1.0, 0.0], [1, 2]);
            let opts = OdeOptions {
                step: Some(0.01),
                rtol: 1e-6,
                atol: 1e-7,
                ..Default::default()
            };
            let (ys, _) = odeint(&oscillator, y0, &ts, solver, &opts).unwrap();
            assert_eq!(ys.len(), ts.len());
            for (y, t) in ys.iter().zip(ts) {
                let y = host(y);
                let tol = match solver {
                    Solver::Euler => 3e-2,
                    Solver::Midpoint => 1e-3,
                    _ => 1e-4,
                };
                assert!(
                    (y[0] - (2.0 * t).cos()).abs() < tol,
                    "{solver:?} at t={t}: {y:?}"
                );
            }
        }
    }

    #[test]
    fn dopri5_meets_its_tolerance_and_takes_fewer_steps_when_it_is_looser() {
        let mut last_nfe = usize::MAX;
        for tol in [1e-6, 1e-4, 1e-2] {
            let opts = OdeOptions {
                rtol: tol,
                atol: tol,
                ..Default::default()
            };
            let y0 = tensor(vec![1.0, 0.0], [1, 2]);
            let (ys, stats) = odeint(&oscillator, y0, &[0.0, 3.0], Solver::Dopri5, &opts).unwrap();
            let y = host(&ys[1]);
            let err = (y[0] - 6f64.cos()).abs();
            // Local error control: the global error over a few periods stays within a small
            // multiple of the tolerance (f32 round-off is ~1e-7).
            assert!(err < 20.0 * tol + 1e-5, "tol {tol}: error {err:e}");
            assert!(
                stats.nfe < last_nfe,
                "tol {tol}: {} evaluations, tighter took {last_nfe}",
                stats.nfe
            );
            assert_eq!(stats.nfe, 2 + 6 * (stats.steps + stats.rejected));
            last_nfe = stats.nfe;
        }
    }

    #[test]
    fn dopri5_stops_at_max_steps_and_bad_times_are_refused() {
        let opts = OdeOptions {
            rtol: 1e-7,
            atol: 1e-7,
            max_steps: 3,
            ..Default::default()
        };
        let y0 = tensor(vec![1.0, 0.0], [1, 2]);
        let e = odeint(&oscillator, y0.clone(), &[0.0, 10.0], Solver::Dopri5, &opts).unwrap_err();
        assert!(
            matches!(e, OdeError::TooManySteps { max_steps: 3, .. }),
            "{e}"
        );
        for ts in [vec![], vec![0.0, 0.0], vec![1.0, 0.5], vec![0.0, f64::NAN]] {
            let e = odeint(&oscillator, y0.clone(), &ts, Solver::Rk4, &opts).unwrap_err();
            assert!(matches!(e, OdeError::BadTimes(_)), "{ts:?}");
        }
    }

    #[test]
    fn gradients_flow_back_through_every_solver() {
        // y(1) = y0 e^{-k}, so d y(1) / d y0 = e^{-k} for each row.
        let ad = dev().autodiff();
        for solver in [Solver::Euler, Solver::Midpoint, Solver::Rk4, Solver::Dopri5] {
            let y0 = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3, 1]), &ad)
                .require_grad();
            let k = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 1.0, 2.0], [3, 1]), &ad);
            let f = |_t: f64, y: Tensor<2>| -(y * k.clone());
            let opts = OdeOptions {
                step: Some(0.01),
                rtol: 1e-6,
                atol: 1e-7,
                ..Default::default()
            };
            let (ys, _) = odeint(&f, y0.clone(), &[0.0, 1.0], solver, &opts).unwrap();
            let grads = ys[1].clone().sum().backward();
            let g = y0.grad(&grads).unwrap();
            let g: Vec<f32> = g.into_data().try_to_vec().unwrap();
            for (gi, k) in g.iter().zip([0.5f32, 1.0, 2.0]) {
                let tol = if solver == Solver::Euler { 2e-2 } else { 1e-4 };
                assert!((gi - (-k).exp()).abs() < tol, "{solver:?}: {g:?}");
            }
        }
    }
}
