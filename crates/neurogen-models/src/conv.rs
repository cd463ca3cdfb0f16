//! DCGAN-style 1-D convolution stacks shared by the VAE (`arch = "conv"`) and the GAN.
//!
//! Down: strided convolutions (kernel 4, stride 2, padding 1) halve the time axis per layer.
//! Up: a linear layer to `[channels[0], t0]`, then transposed convolutions (same kernel) double
//! it per layer — or, with [`Upsample::Nearest`], a nearest-neighbour repeat and a kernel-3
//! convolution (resize-convolution, Odena et al. 2016), which has no stride-2 checkerboard;
//! `t0 = ⌈time / 2^layers⌉`, and the result is cropped to `time`, so any window length works.

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, ConvTranspose1d, ConvTranspose1dConfig};
use burn::nn::PaddingConfig1d;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::ops::IndexingUpdateOp;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

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

/// Time-major activations `x` (`[batch, time, c]`) delayed by `d` steps (`x[t − d]`, zeros
/// before the start), or advanced when `d` is negative: the taps of a dilated convolution.
pub fn shift(x: Tensor<3>, d: isize) -> Tensor<3> {
    let [b, t, c] = x.dims();
    let k = d.unsigned_abs();
    if k == 0 {
        return x;
    }
    if k >= t {
        return x.zeros_like();
    }
    let zeros = Tensor::zeros([b, k, c], &x.device());
    if d > 0 {
        Tensor::cat(vec![zeros, x.narrow(1, 0, t - k)], 1)
    } else {
        Tensor::cat(vec![x.narrow(1, k, t - k), zeros], 1)
    }
}

/// conv1d (dilation 1, one group) as one matrix product over the whole batch.
///
/// burn-flex runs conv1d as a 3-D convolution with a small product per batch element (burn-flex
/// `src/ops/conv.rs:238`, `conv3d_impl`) and its transposed form as a direct loop
/// (`src/ops/conv_transpose.rs:246`): with their backward passes, 60 % of a DCGAN step; burn-ndarray
/// runs both as scalar loops. Here one row gather lays out every tap of every output position as
/// a `[batch·len_out, k·c_in]` matrix (im2col), so the forward and both gradients are one large
/// product each, near gemm's peak, and the gather's backward is one row scatter-add. Activations
/// stay time-major (`[batch, len, channels]`, see [`conv1d_nlc`]) between layers: rows of that
/// layout are what the gather moves, and it saves a transpose per layer.
///
/// # Shapes
/// - `x`: `[batch, c_in, len]`, `weight`: `[c_out, c_in, k]`, `bias`: `[c_out]`
/// - output: `[batch, c_out, (len + 2·padding − k) / stride + 1]`
pub fn conv1d(
    x: Tensor<3>,
    weight: Tensor<3>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<3> {
    conv1d_nlc(x.swap_dims(1, 2), weight, bias, stride, padding).swap_dims(1, 2)
}

/// [`conv1d`] on time-major activations.
///
/// # Shapes
/// - `x`: `[batch, len, c_in]`, `weight`: `[c_out, c_in, k]`, `bias`: `[c_out]`
/// - output: `[batch, (len + 2·padding − k) / stride + 1, c_out]`
pub fn conv1d_nlc(
    x: Tensor<3>,
    weight: Tensor<3>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<3> {
    let ([b, t, c], [o, _, k], s) = (x.dims(), weight.dims(), stride.max(1));
    let t_out = (t + 2 * padding).saturating_sub(k) / s + 1;
    let device = x.device();
    // One zero row after the data stands for every padded position.
    let rows = Tensor::cat(
        vec![x.reshape([b * t, c]), Tensor::zeros([1, c], &device)],
        0,
    );
    let taps = tap_rows(b, t_out, k, s, padding, t, &device);
    let cols = rows.select(0, taps).reshape([b * t_out, k * c]); // [b·t_out, k·c]
    let w = weight.swap_dims(1, 2).reshape([o, k * c]); // [o, k·c]
    let mut y = cols.matmul(w.transpose()); // [b·t_out, o]
    if let Some(bias) = bias {
        y = y + bias.reshape([1, o]);
    }
    y.reshape([b, t_out, o])
}

/// conv_transpose1d (dilation 1, one group, no output padding) as one matrix product, every
/// tap of every input position at once, then one row scatter-add of the taps to their output
/// positions (col2im). See [`conv1d`] for why.
///
/// # Shapes
/// - `x`: `[batch, c_in, len]`, `weight`: `[c_in, c_out, k]`, `bias`: `[c_out]`
/// - output: `[batch, c_out, (len − 1)·stride + k − 2·padding]`
pub fn conv_transpose1d(
    x: Tensor<3>,
    weight: Tensor<3>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<3> {
    conv_transpose1d_nlc(x.swap_dims(1, 2), weight, bias, stride, padding).swap_dims(1, 2)
}

/// [`conv_transpose1d`] on time-major activations.
///
/// # Shapes
/// - `x`: `[batch, len, c_in]`, `weight`: `[c_in, c_out, k]`, `bias`: `[c_out]`
/// - output: `[batch, (len − 1)·stride + k − 2·padding, c_out]`
pub fn conv_transpose1d_nlc(
    x: Tensor<3>,
    weight: Tensor<3>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<3> {
    let ([b, t, c], [_, o, k], s) = (x.dims(), weight.dims(), stride.max(1));
    let len = ((t - 1) * s + k).saturating_sub(2 * padding);
    let device = x.device();
    // [c, k·o]
    let w = weight.swap_dims(1, 2).reshape([c, k * o]);
    // [b·t·k, o]: row (bb·t + i)·k + j is tap j of input i of batch element bb.
    let y = x.reshape([b * t, c]).matmul(w).reshape([b * t * k, o]);
    // Taps that land in the cropped padding go to one extra row, dropped after.
    let out = Tensor::<2>::zeros([b * len + 1, o], &device).select_assign(
        0,
        tap_rows(b, t, k, s, padding, len, &device),
        y,
        IndexingUpdateOp::Add,
    ); // [b·len + 1, o]
    let mut out = out.narrow(0, 0, b * len).reshape([b, len, o]);
    if let Some(bias) = bias {
        out = out + bias.reshape([1, 1, o]);
    }
    out
}

/// For batch element `bb < b`, position `i < n` and tap `j < k`, in that order: the row of a
/// `[b·len + 1, channels]` matrix at sequence position `i·stride + j − padding` of `bb`, which tap
/// `j` of output `i` reads (conv) or of input `i` writes (transposed conv); positions outside
/// `0..len` (the padding) map to the extra last row `b·len`.
fn tap_rows(
    b: usize,
    n: usize,
    k: usize,
    stride: usize,
    padding: usize,
    len: usize,
    device: &Device,
) -> Tensor<1, Int> {
    let row = |bb: usize, i: usize, j: usize| match (i * stride + j).checked_sub(padding) {
        Some(pos) if pos < len => (bb * len + pos) as i64,
        _ => (b * len) as i64,
    };
    let idx: Vec<i64> = (0..b)
        .flat_map(|bb| (0..n).flat_map(move |i| (0..k).map(move |j| row(bb, i, j))))
        .collect();
    Tensor::from_data(TensorData::new(idx, [b * n * k]), device)
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
        let h = self.layers.iter().fold(x.swap_dims(1, 2), |h, l| {
            leaky_relu(l.forward_nlc(h), SLOPE)
        }); // [batch, t, c]
        let [_, t, c] = h.dims();
        // Free here (a view of a contiguous tensor), but in the backward pass this makes the
        // flatten's gradient, a transposed view, contiguous in one tiled copy before the last
        // LeakyReLU's backward: burn-flex runs scalar products on a strided view element by
        // element (7 % of a DCGAN step's CPU samples). Only data moves: every value is the same.
        let h = h.reshape([b * t, c]).reshape([b, t, c]);
        // Flattened channel-major, as checkpoints of the critic's last layer expect.
        h.swap_dims(1, 2).reshape([b, self.features])
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

/// How [`ConvUp`] doubles the time axis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Transposed convolution, kernel 4, stride 2: even and odd outputs get different taps, so
    /// the output carries a periodic pattern, spectral lines at multiples of fs/2^layers.
    #[default]
    Transposed,
    /// Repeat every step twice, then convolve (kernel 3): every output position sees the same
    /// taps, so no line.
    Nearest,
}

/// A linear layer then upsampling convolutions from a vector to `[batch, c_out, time]`.
#[derive(Module, Debug)]
pub struct ConvUp {
    input: Linear,
    /// `Upsample::Transposed`'s layers (empty otherwise).
    layers: Vec<ConvTranspose1d>,
    /// `Upsample::Nearest`'s layers (empty otherwise).
    resize: Vec<Conv1d>,
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
        upsample: Upsample,
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
        let input = LinearConfig::new(d_in, c0 * t0).init(device);
        let (mut layers, mut resize) = (Vec::new(), Vec::new());
        for w in sizes.windows(2) {
            match upsample {
                Upsample::Transposed => layers.push(
                    ConvTranspose1dConfig::new([w[0], w[1]], 4)
                        .with_stride(2)
                        .with_padding(1)
                        .init(device),
                ),
                Upsample::Nearest => resize.push(
                    Conv1dConfig::new(w[0], w[1], 3)
                        .with_padding(PaddingConfig1d::Explicit(1, 1))
                        .init(device),
                ),
            }
        }
        ConvUp {
            input,
            layers,
            resize,
            c0,
            t0,
            time,
        }
    }

    /// # Shapes
    /// - `z`: `[batch, d_in]` → `[batch, c_out, time]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<3> {
        let b = z.dims()[0];
        let h = leaky_relu(self.input.forward(z), SLOPE).reshape([b, self.c0, self.t0]);
        let mut h = h.swap_dims(1, 2); // [batch, t0, c0]
        let last = (self.layers.len() + self.resize.len()).saturating_sub(1);
        for (i, l) in self.layers.iter().enumerate() {
            let bias = l.bias.as_ref().map(|b| b.val());
            h = conv_transpose1d_nlc(h, l.weight.val(), bias, l.stride, l.padding); // [batch, 2t, c]
            if i < last {
                h = leaky_relu(h, SLOPE);
            }
        }
        for (i, l) in self.resize.iter().enumerate() {
            let [b, t, c] = h.dims();
            let up = h
                .reshape([b, t, 1, c])
                .repeat_dim(2, 2)
                .reshape([b, 2 * t, c]); // [batch, 2t, c]
            let bias = l.bias.as_ref().map(|b| b.val());
            h = conv1d_nlc(up, l.weight.val(), bias, 1, 1); // [batch, 2t, c_out]
            if i < last {
                h = leaky_relu(h, SLOPE);
            }
        }
        h.swap_dims(1, 2).narrow(2, 0, self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// Values and all three gradients against burn's own conv1d and conv_transpose1d, over
    /// kernels, strides, paddings and odd lengths.
    #[test]
    fn gemm_convolutions_match_burns() {
        use burn::tensor::module as reference;
        use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
        use burn::tensor::Tolerance;
        let device = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&device, 5);
        let normal = |shape: [usize; 3]| {
            Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad()
        };
        let close = |a: Tensor<3>, b: Tensor<3>| {
            a.into_data()
                .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4));
        };
        // Ours against burn's on the same leaves: outputs, then the gradients of a loss that
        // weights every output differently, so a misplaced tap shows.
        let check =
            |ours: Tensor<3>, theirs: Tensor<3>, leaves: [&Tensor<3>; 2], bias: &Tensor<1>| {
                assert_eq!(ours.dims(), theirs.dims());
                close(ours.clone(), theirs.clone());
                let weights = Tensor::<3>::random(ours.dims(), Distribution::Default, &device);
                let ga = (ours * weights.clone()).sum().backward();
                let gb = (theirs * weights).sum().backward();
                for leaf in leaves {
                    close(leaf.grad(&ga).unwrap(), leaf.grad(&gb).unwrap());
                }
                let (ba, bb) = (bias.grad(&ga).unwrap(), bias.grad(&gb).unwrap());
                close(ba.reshape([1, 1, 4]), bb.reshape([1, 1, 4]));
            };
        for (k, s, p, t) in [
            (4, 2, 1, 16),
            (4, 2, 1, 17),
            (3, 1, 1, 9),
            (5, 3, 2, 20),
            (1, 1, 0, 4),
        ] {
            let bias = normal([1, 1, 4]).reshape([4]).detach().require_grad();
            let (x, w) = (normal([3, 5, t]), normal([4, 5, k]));
            let opts = ConvOptions::new([s], [p], [1], 1);
            check(
                conv1d(x.clone(), w.clone(), Some(bias.clone()), s, p),
                reference::conv1d(x.clone(), w.clone(), Some(bias.clone()), opts),
                [&x, &w],
                &bias,
            );
            let (x, w) = (normal([3, 5, t]), normal([5, 4, k]));
            let opts = ConvTransposeOptions::new([s], [p], [0], [1], 1);
            check(
                conv_transpose1d(x.clone(), w.clone(), Some(bias.clone()), s, p),
                reference::conv_transpose1d(x.clone(), w.clone(), Some(bias.clone()), opts),
                [&x, &w],
                &bias,
            );
        }
    }

    #[test]
    fn stacks_produce_the_window_shape_for_odd_lengths() {
        let device = Device::flex();
        for (time, upsample) in [100, 128, 37]
            .into_iter()
            .flat_map(|t| [(t, Upsample::Transposed), (t, Upsample::Nearest)])
        {
            let up = ConvUp::init(8, &[32, 16], 5, time, upsample, &device);
            let x = up.forward(Tensor::zeros([3, 8], &device));
            assert_eq!(x.dims(), [3, 5, time]);
            let down = ConvDown::init(5, time, &[16, 32], false, &device);
            assert_eq!(down.forward(x).dims(), [3, down.features()]);
        }
    }

    #[test]
    fn leaky_relu_and_its_gradient_match_burns() {
        let device = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&device, 3);
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
