//! DCGAN-style 1-D convolution stacks shared by the VAE (`arch = "conv"`) and the GAN.
//!
//! Down: strided convolutions (kernel 4, stride 2, padding 1) halve the time axis per layer.
//! Up: a linear layer to `[channels[0], t0]`, then transposed convolutions (same kernel) double
//! it per layer; `t0 = ⌈time / 2^layers⌉`, and the result is cropped to `time`, so any window
//! length works.

use burn::module::Module;
use burn::nn::conv::{ConvTranspose1d, ConvTranspose1dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::spectral::SnConv1d;

const SLOPE: f64 = 0.2;

/// LeakyReLU as `slope·x + (1 − slope)·relu(x)`.
///
/// The same function as burn's `leaky_relu`, which selects between `x` and `slope·x` with a
/// mask in the forward and twice more in the backward pass: burn-flex's `mask_where` is a
/// scalar loop, and those masks took 14 % of a DCGAN training step; scalar products and relu
/// are vectorised.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, slope: f64) -> Tensor<D> {
    x.clone().mul_scalar(slope) + relu(x).mul_scalar(1.0 - slope)
}

/// Strided convolutions from `[batch, c_in, time]` to a flat feature vector.
#[derive(Module, Debug)]
pub struct ConvDown {
    layers: Vec<SnConv1d>,
    /// Length of the flattened output.
    features: usize,
}

impl ConvDown {
    /// `c_in → channels[0] → channels[1] → …`, each halving time, LeakyReLU(0.2) after each.
    pub fn init(
        c_in: usize,
        time: usize,
        channels: &[usize],
        spectral: bool,
        device: &Device,
    ) -> Self {
        let mut layers = Vec::new();
        let (mut c, mut t) = (c_in, time);
        for &c_out in channels {
            let l = SnConv1d::init(c, c_out, 4, 2, 1, spectral, device);
            t = l.out_len(t);
            c = c_out;
            layers.push(l);
        }
        ConvDown {
            layers,
            features: c * t,
        }
    }

    /// Size of the flattened output.
    pub fn features(&self) -> usize {
        self.features
    }

    /// # Shapes
    /// - `x`: `[batch, c_in, time]` → `[batch, features]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let b = x.dims()[0];
        let h = self
            .layers
            .iter()
            .fold(x, |h, l| leaky_relu(l.forward(h), SLOPE)); // [batch, c, t]
        h.reshape([b, self.features])
    }

    /// See [`SnConv1d::power_iteration`].
    pub fn power_iteration(self) -> Self {
        ConvDown {
            layers: self
                .layers
                .into_iter()
                .map(SnConv1d::power_iteration)
                .collect(),
            ..self
        }
    }

    /// See [`SnConv1d::clip`].
    pub fn clip(self, c: f32) -> Self {
        ConvDown {
            layers: self.layers.into_iter().map(|l| l.clip(c)).collect(),
            ..self
        }
    }
}

/// A linear layer then transposed convolutions from a vector to `[batch, c_out, time]`.
#[derive(Module, Debug)]
pub struct ConvUp {
    input: Linear,
    layers: Vec<ConvTranspose1d>,
    c0: usize,
    t0: usize,
    time: usize,
}

impl ConvUp {
    /// `d_in → [channels[0], t0] → channels[1] → … → c_out`, each layer doubling time;
    /// LeakyReLU(0.2) between layers, a linear output.
    pub fn init(
        d_in: usize,
        channels: &[usize],
        c_out: usize,
        time: usize,
        device: &Device,
    ) -> Self {
        let n = channels.len().max(1);
        let t0 = time.div_ceil(1 << n).max(1);
        let c0 = channels.first().copied().unwrap_or(c_out);
        let mut sizes: Vec<usize> = channels.to_vec();
        if sizes.is_empty() {
            sizes.push(c0);
        }
        sizes.push(c_out);
        let layers = sizes
            .windows(2)
            .map(|w| {
                ConvTranspose1dConfig::new([w[0], w[1]], 4)
                    .with_stride(2)
                    .with_padding(1)
                    .init(device)
            })
            .collect();
        ConvUp {
            input: LinearConfig::new(d_in, c0 * t0).init(device),
            layers,
            c0,
            t0,
            time,
        }
    }

    /// # Shapes
    /// - `z`: `[batch, d_in]` → `[batch, c_out, time]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<3> {
        let b = z.dims()[0];
        let mut h = leaky_relu(self.input.forward(z), SLOPE).reshape([b, self.c0, self.t0]);
        let last = self.layers.len().saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(h); // [batch, c, 2t]
            if i < last {
                h = leaky_relu(h, SLOPE);
            }
        }
        h.narrow(2, 0, self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn stacks_produce_the_window_shape_for_odd_lengths() {
        let device = Device::flex();
        for time in [100, 128, 37] {
            let up = ConvUp::init(8, &[32, 16], 5, time, &device);
            let x = up.forward(Tensor::zeros([3, 8], &device));
            assert_eq!(x.dims(), [3, 5, time]);
            let down = ConvDown::init(5, time, &[16, 32], false, &device);
            assert_eq!(down.forward(x).dims(), [3, down.features()]);
        }
    }

    #[test]
    fn leaky_relu_and_its_gradient_match_burns() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::random([7, 9], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let ours = leaky_relu(x.clone(), SLOPE);
        let theirs = burn::tensor::activation::leaky_relu(x.clone(), SLOPE);
        ours.to_data()
            .assert_approx_eq::<f32>(&theirs.to_data(), Default::default());
        let g1 = ours.sum().backward();
        let g2 = theirs.sum().backward();
        let (a, b) = (x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
        a.to_data()
            .assert_approx_eq::<f32>(&b.to_data(), Default::default());
        // Slope below zero, 1 above.
        let v: Vec<f32> = a.into_data().try_to_vec().unwrap();
        assert!(v
            .iter()
            .all(|g| (*g - 0.2).abs() < 1e-6 || (*g - 1.0).abs() < 1e-6));
    }
}
