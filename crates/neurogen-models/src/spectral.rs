//! Dense and 1-D convolution layers with optional spectral normalisation (Miyato et al. 2018).
//!
//! burn has no spectral norm, so these layers hold their weights directly and divide them by an
//! estimate of the largest singular value σ. The estimate comes from power iteration with a
//! persistent vector `u`: [`SnLinear::power_iteration`] (called by the trainer once per critic
//! step, as torch's `spectral_norm` does in training mode) refines `u` from detached weights;
//! `forward` computes `v ∝ Wᵀu` and `σ = uᵀWv` with `u`, `v` detached, so gradients flow through
//! `W` only. `u` is a parameter that never receives a gradient; it is saved with the weights, so
//! a resumed run continues the same iteration.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};

const EPS: f32 = 1e-12;

/// `y = x W / σ + b`, `W` stored `[in, out]` as burn's `Linear`.
#[derive(Module, Debug)]
pub struct SnLinear {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
    /// Left singular vector estimate, `[out]`.
    u: Param<Tensor<1>>,
    spectral: bool,
}

impl SnLinear {
    /// A layer `d_in → d_out` with burn's default `Linear` initialisation.
    pub fn init(d_in: usize, d_out: usize, spectral: bool, device: &Device) -> Self {
        let lin = LinearConfig::new(d_in, d_out).init(device);
        let bias = lin
            .bias
            .unwrap_or_else(|| Param::from_tensor(Tensor::zeros([d_out], device)));
        SnLinear {
            weight: lin.weight,
            bias,
            u: Param::from_tensor(unit(Tensor::random(
                [d_out],
                Distribution::Normal(0.0, 1.0),
                device,
            ))),
            spectral,
        }
    }

    /// # Shapes
    /// - `x`: `[batch, in]` → `[batch, out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let w = self.weight.val(); // [in, out]
                                   // The normalised matrix is M = Wᵀ, [out, in].
        let w = normalised(w, Tensor::transpose, &self.u, self.spectral);
        x.matmul(w) + self.bias.val().unsqueeze_dim(0)
    }

    /// One power-iteration update of `u` (no-op without spectral normalisation).
    pub fn power_iteration(mut self) -> Self {
        if self.spectral {
            self.u = iterate(self.u, self.weight.val().transpose());
        }
        self
    }

    /// Clamps weight and bias to `[-c, c]` (WGAN weight clipping).
    pub fn clip(mut self, c: f32) -> Self {
        (self.weight, self.bias) = clamp(self.weight, self.bias, c);
        self
    }

    /// The largest singular value of the effective weight (after normalisation), from a
    /// fresh converged power iteration; for tests and diagnostics.
    pub fn effective_sigma(&self, iterations: usize) -> f32 {
        let w = self.weight.val().detach();
        let w = normalised(w, Tensor::transpose, &self.u, self.spectral);
        converged_sigma(w.transpose(), iterations)
    }
}

/// A 1-D convolution, kernel `[out, in, k]`, with optional spectral normalisation of the
/// `[out, in·k]` matrix.
#[derive(Module, Debug)]
pub struct SnConv1d {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<1>>,
    u: Param<Tensor<1>>,
    stride: usize,
    padding: usize,
    spectral: bool,
}

impl SnConv1d {
    /// A convolution `c_in → c_out` with kernel `k`, `stride`, symmetric `padding`; burn's
    /// default Conv1d initialisation (Kaiming uniform, gain 1/√3).
    pub fn init(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        spectral: bool,
        device: &Device,
    ) -> Self {
        let init = Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        let fan_in = c_in * k;
        SnConv1d {
            weight: init.init_with([c_out, c_in, k], Some(fan_in), Some(c_out * k), device),
            bias: init.init_with([c_out], Some(fan_in), None, device),
            u: Param::from_tensor(unit(Tensor::random(
                [c_out],
                Distribution::Normal(0.0, 1.0),
                device,
            ))),
            stride,
            padding,
            spectral,
        }
    }

    /// Output length for an input of `len` samples.
    pub fn out_len(&self, len: usize) -> usize {
        let k = self.weight.dims()[2];
        (len + 2 * self.padding).saturating_sub(k) / self.stride + 1
    }

    /// # Shapes
    /// - `x`: `[batch, c_in, len]` → `[batch, c_out, out_len(len)]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_nlc(x.swap_dims(1, 2)).swap_dims(1, 2)
    }

    /// [`forward`](Self::forward) on time-major activations (see [`crate::conv::conv1d`]).
    ///
    /// # Shapes
    /// - `x`: `[batch, len, c_in]` → `[batch, out_len(len), c_out]`
    pub fn forward_nlc(&self, x: Tensor<3>) -> Tensor<3> {
        let w = self.weight.val(); // [out, in, k]
        let w = normalised(w, matrix, &self.u, self.spectral);
        crate::conv::conv1d_nlc(x, w, Some(self.bias.val()), self.stride, self.padding)
    }

    /// One power-iteration update of `u` (no-op without spectral normalisation).
    pub fn power_iteration(mut self) -> Self {
        if self.spectral {
            self.u = iterate(self.u, matrix(self.weight.val()));
        }
        self
    }

    /// Clamps weight and bias to `[-c, c]` (WGAN weight clipping).
    pub fn clip(mut self, c: f32) -> Self {
        (self.weight, self.bias) = clamp(self.weight, self.bias, c);
        self
    }
}

/// A kernel `[out, in, k]` as the `[out, in·k]` matrix whose σ is normalised.
fn matrix(w: Tensor<3>) -> Tensor<2> {
    let [o, i, k] = w.dims();
    w.reshape([o, i * k])
}

/// `w / σ(m)` where `m = as_matrix(w)` `[rows, cols]`, σ estimated with the layer's `u`
/// (detached, as is `v`: gradients flow through `w` only); `w` itself when `spectral` is off.
fn normalised<const D: usize>(
    w: Tensor<D>,
    as_matrix: impl FnOnce(Tensor<D>) -> Tensor<2>,
    u: &Param<Tensor<1>>,
    spectral: bool,
) -> Tensor<D> {
    if !spectral {
        return w;
    }
    let m = as_matrix(w.clone());
    let [rows, cols] = m.dims();
    w / sigma(m, u.val().detach(), rows, cols).reshape([1; D])
}

/// `u` after one power-iteration step on the detached matrix `m` `[rows, cols]`.
fn iterate(u: Param<Tensor<1>>, m: Tensor<2>) -> Param<Tensor<1>> {
    let next = power_step(m.detach(), u.val().detach());
    u.map(|_| next)
}

/// Weight and bias clamped to `[-c, c]`.
fn clamp<const D: usize>(
    weight: Param<Tensor<D>>,
    bias: Param<Tensor<1>>,
    c: f32,
) -> (Param<Tensor<D>>, Param<Tensor<1>>) {
    (weight.map(|w| w.clamp(-c, c)), bias.map(|b| b.clamp(-c, c)))
}

/// `x / |x|`.
fn unit(x: Tensor<1>) -> Tensor<1> {
    let n = x.clone().square().sum().sqrt().add_scalar(EPS); // [1]
    x / n
}

/// `u ← unit(M unit(Mᵀ u))` for `M` `[rows, cols]`, `u` `[rows]`.
fn power_step(m: Tensor<2>, u: Tensor<1>) -> Tensor<1> {
    let rows = m.dims()[0];
    let cols = m.dims()[1];
    let v = unit(
        m.clone()
            .transpose()
            .matmul(u.reshape([rows, 1]))
            .reshape([cols]),
    );
    unit(m.matmul(v.reshape([cols, 1])).reshape([rows]))
}

/// `σ = uᵀ M v` with `v = unit(Mᵀ u)`; `u` detached by the caller, `v` detached here.
fn sigma(m: Tensor<2>, u: Tensor<1>, rows: usize, cols: usize) -> Tensor<1> {
    let v = unit(
        m.clone()
            .detach()
            .transpose()
            .matmul(u.clone().reshape([rows, 1]))
            .reshape([cols]),
    )
    .detach();
    u.reshape([1, rows])
        .matmul(m)
        .matmul(v.reshape([cols, 1]))
        .reshape([1])
}

/// The largest singular value of `m` by `iterations` power steps from a fixed start.
fn converged_sigma(m: Tensor<2>, iterations: usize) -> f32 {
    let [rows, cols] = m.dims();
    let mut u = unit(Tensor::ones([rows], &m.device()));
    for _ in 0..iterations {
        u = power_step(m.clone(), u);
    }
    sigma(m, u, rows, cols).into_scalar::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_normalisation_brings_the_largest_singular_value_to_one() {
        let device = Device::flex();
        let _rng_lock = crate::test_util::seed(&device, 5);
        let mut layer = SnLinear::init(12, 7, true, &device);
        // Scale the weights up so normalisation has something to do.
        layer.weight = layer.weight.map(|w| w.mul_scalar(9.0));
        let plain = SnLinear {
            spectral: false,
            ..layer.clone()
        };
        assert!(plain.effective_sigma(200) > 2.0);
        // One iteration per training step; a few hundred converge on any matrix.
        for _ in 0..300 {
            layer = layer.power_iteration();
        }
        let s = layer.effective_sigma(200);
        assert!((s - 1.0).abs() < 1e-3, "σ after normalisation: {s}");

        let mut conv = SnConv1d::init(3, 5, 4, 2, 1, true, &device);
        conv.weight = conv.weight.map(|w| w.mul_scalar(9.0));
        for _ in 0..300 {
            conv = conv.power_iteration();
        }
        let [o, i, k] = conv.weight.dims();
        let w = conv.weight.val().reshape([o, i * k]);
        let s_eff = sigma(w.clone(), conv.u.val(), o, i * k);
        let normalised = w / s_eff.reshape([1, 1]);
        let s = converged_sigma(normalised, 200);
        assert!((s - 1.0).abs() < 1e-3, "conv σ after normalisation: {s}");
        assert_eq!(conv.out_len(100), 50);
    }
}
