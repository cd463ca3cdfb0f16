//! Adam as one pass over each parameter's memory on the CPU backends.
//!
//! burn's `Adam` (burn-optim 0.22.1 `src/optim/adam.rs`, `AdaptiveMomentum::transform`) is thirteen
//! tensor operations per parameter, each allocating and writing a full-size buffer; on flex the
//! scalar ones are a plain collect into a new `Vec` (burn-flex `src/ops/binary.rs`, `scalar_op`).
//! For the 2.4 M-parameter VAE that was a fifth of the step. This optimiser computes the same
//! update (same formula, same bias corrections, same state type, so checkpoints written by either
//! load in both) in one loop over the parameter, gradient and moments in place, split over the
//! rayon threads. Devices that keep their memory elsewhere (wgpu) take the tensor formula: a
//! host round trip per parameter would cost far more than the operations save.

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

/// Adam without AMSGrad, with optional decoupled weight decay (AdamW: Loshchilov & Hutter
/// 2019, as burn's `AdamW` computes it, `p·(1 − lr·wd) − lr·update`): the optimiser every
/// family trains with.
#[derive(Clone, Debug)]
pub(crate) struct Adam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
}

impl Adam {
    /// A module optimiser stepping every parameter with this Adam.
    pub(crate) fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(self.clone())
    }

    /// `(m·cf) / (√v + ε·bc2)` scale factors of step `time` (1-based), as burn computes them.
    fn factors(&self, time: usize) -> (f32, f32) {
        let t = time as i32;
        let bc2 = (1.0 - self.beta_2.powi(t)).sqrt();
        (bc2 / (1.0 - self.beta_1.powi(t)), self.epsilon * bc2)
    }

    /// The tensor formula, for devices whose memory the host does not hold.
    fn step_tensors<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, AdamState<D>) {
        let (b1, b2) = (self.beta_1, self.beta_2);
        let (m, v, time) = match state {
            Some(s) => {
                let s = s.momentum;
                let m = s.moment_1.mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
                let v = s.moment_2.mul_scalar(b2) + grad.square().mul_scalar(1.0 - b2);
                (m, v, s.time + 1)
            }
            None => (
                grad.clone().mul_scalar(1.0 - b1),
                grad.square().mul_scalar(1.0 - b2),
                1,
            ),
        };
        let (cf, eps) = self.factors(time);
        let update = m
            .clone()
            .mul_scalar(cf)
            .div(v.clone().sqrt().add_scalar(eps));
        let decay = lr as f32 * self.weight_decay;
        let tensor = if decay == 0.0 {
            tensor
        } else {
            tensor.mul_scalar(1.0 - decay)
        };
        let tensor = tensor - update.mul_scalar(lr as f32);
        (tensor, state_of(time, m, v))
    }
}

fn state_of<const D: usize>(time: usize, m: Tensor<D>, v: Tensor<D>) -> AdamState<D> {
    AdamState::new(AdaptiveMomentumState::new(time, m, v))
}

/// Elements per rayon task: small parameters stay on one thread.
const CHUNK: usize = 1 << 15;

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        // A GPU device (one that names its part) keeps the step on the device.
        #[cfg(feature = "wgpu")]
        let on_gpu = device.identity().is_some();
        #[cfg(not(feature = "wgpu"))]
        let on_gpu = false;
        if on_gpu {
            let (tensor, state) = self.step_tensors(lr, tensor, grad, state);
            return (tensor, Some(state));
        }
        let shape = tensor.shape();
        let (m, v, time) = match state {
            Some(s) => {
                let s = s.momentum;
                (s.moment_1.into_data(), s.moment_2.into_data(), s.time + 1)
            }
            None => (
                TensorData::zeros::<f32, _>(shape.clone()),
                TensorData::zeros::<f32, _>(shape.clone()),
                1,
            ),
        };
        let (mut p, g, mut m, mut v) = (tensor.into_data(), grad.into_data(), m, v);
        let (cf, eps) = self.factors(time);
        let (b1, b2, lr) = (self.beta_1, self.beta_2, lr as f32);
        let keep = 1.0 - lr * self.weight_decay;
        let slices = (
            p.as_mut_slice::<f32>(),
            g.as_slice::<f32>(),
            m.as_mut_slice::<f32>(),
            v.as_mut_slice::<f32>(),
        );
        let (Ok(ps), Ok(gs), Ok(ms), Ok(vs)) = slices else {
            // Not f32 (a half-precision run): the tensor formula handles every dtype.
            let back = |d: TensorData| Tensor::<D>::from_data(d, &device);
            let state = (time > 1).then(|| state_of(time - 1, back(m), back(v)));
            let (tensor, state) = self.step_tensors(lr as f64, back(p), back(g), state);
            return (tensor, Some(state));
        };
        ps.par_chunks_mut(CHUNK)
            .zip(gs.par_chunks(CHUNK))
            .zip(ms.par_chunks_mut(CHUNK))
            .zip(vs.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let gi = g[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    if keep != 1.0 {
                        p[i] *= keep;
                    }
                    p[i] -= lr * (m[i] * cf / (v[i].sqrt() + eps));
                }
            });
        let back = |d: TensorData| Tensor::<D>::from_data(d, &device);
        (back(p), Some(state_of(time, back(m), back(v))))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, Tolerance};

    fn step(model: Linear, optim: &mut ModuleOptimizer, x: Tensor<2>) -> Linear {
        let loss = model.forward(x).square().mean(); // [1]
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-2, model, grads)
    }

    fn close(a: &Linear, b: &Linear) {
        let (wa, wb) = (a.weight.val().into_data(), b.weight.val().into_data());
        wa.assert_approx_eq::<f32>(&wb, Tolerance::absolute(1e-5));
    }

    /// Twenty steps of this Adam and of burn's agree on a parameter larger than one rayon
    /// chunk, and burn's Adam resumes from this one's state as from its own.
    #[test]
    fn matches_burns_adam_and_shares_its_state() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let model = LinearConfig::new(64, 1024).init(&device); // 66 560 parameters
        let ours = Adam {
            beta_1: 0.8,
            beta_2: 0.99,
            epsilon: 1e-6,
            weight_decay: 0.0,
        };
        let burns = AdamConfig::new()
            .with_beta_1(0.8)
            .with_beta_2(0.99)
            .with_epsilon(1e-6);
        let (mut a, mut b) = (model.clone(), model);
        let (mut oa, mut ob) = (ours.init(), burns.init());
        let batch = || Tensor::<2>::random([16, 64], Distribution::Normal(0.0, 1.0), &device);
        for _ in 0..20 {
            let x = batch();
            a = step(a, &mut oa, x.clone());
            b = step(b, &mut ob, x);
            close(&a, &b);
        }
        let mut resumed = burns.init().load_record(oa.to_record());
        let x = batch();
        let c = step(a.clone(), &mut resumed, x.clone());
        close(&step(a, &mut oa, x), &c);
    }

    /// With weight decay, twenty steps agree with burn's AdamW, on both paths.
    #[test]
    fn weight_decay_matches_burns_adamw() {
        use burn::optim::AdamWConfig;
        let device = Device::flex().autodiff();
        device.seed(4);
        let model = LinearConfig::new(32, 64).init(&device);
        let ours = Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.1,
        };
        let burns = AdamWConfig::new().with_weight_decay(0.1).with_epsilon(1e-8);
        let (mut a, mut b) = (model.clone(), model);
        let (mut oa, mut ob) = (ours.init(), burns.init());
        let batch = || Tensor::<2>::random([16, 32], Distribution::Normal(0.0, 1.0), &device);
        for _ in 0..20 {
            let x = batch();
            a = step(a, &mut oa, x.clone());
            b = step(b, &mut ob, x);
            close(&a, &b);
        }
        // A zero gradient from a fresh state leaves only the decay: p·(1 − lr·wd).
        let plain = Device::flex();
        let p = Tensor::<1>::from_floats([2.0, -4.0], &plain);
        let g = Tensor::<1>::zeros([2], &plain);
        let (fused, _) = ours.step(0.5, p.clone(), g.clone(), None);
        let (tensors, _) = ours.step_tensors(0.5, p, g, None);
        let want = [2.0 * 0.95, -4.0 * 0.95];
        for got in [fused, tensors] {
            got.into_data().assert_approx_eq::<f32>(
                &burn::tensor::TensorData::from(want),
                Tolerance::absolute(1e-6),
            );
        }
    }

    /// The tensor formula (wgpu's path) is the fused loop's.
    #[test]
    fn tensor_path_matches_fused_path() {
        let adam = Adam {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 0.0,
        };
        let device = Device::flex();
        let p = Tensor::<1>::from_floats([0.5, -1.0, 2.0, 0.0], &device);
        let (mut fa, mut fb) = (p.clone(), p);
        let (mut sa, mut sb) = (None, None);
        for k in 0..5 {
            let g = Tensor::<1>::from_floats([0.1 * k as f32, -0.3, 1.5, 1e-4], &device);
            (fa, sa) = adam.step(1e-1, fa, g.clone(), sa);
            let (t, s) = adam.step_tensors(1e-1, fb, g, sb);
            (fb, sb) = (t, Some(s));
        }
        assert_ne!(
            fa.to_data(),
            Tensor::<1>::from_floats([0.5, -1.0, 2.0, 0.0], &device).to_data()
        );
        fa.into_data()
            .assert_approx_eq::<f32>(&fb.into_data(), Tolerance::absolute(1e-6));
    }
}
