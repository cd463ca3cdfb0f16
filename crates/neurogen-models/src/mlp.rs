//! A stack of linear layers with ReLU between them.

use crate::activation::logistic_tanh;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Linear layers `sizes[0] → sizes[1] → …`, each followed by ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Builds layers between consecutive `sizes`; fewer than two sizes is the identity.
    pub fn init(sizes: &[usize], device: &Device) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Mlp { layers }
    }

    /// # Shapes
    /// - `x`: `[batch, sizes[0]]` → `[batch, sizes.last()]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.layers.iter().fold(x, |h, l| relu(l.forward(h)))
    }

    /// [`forward`](Self::forward) with each layer's output multiplied by its mask (dropout).
    ///
    /// # Shapes
    /// - `x`: `[batch, sizes[0]]`; `masks[i]`: `[batch, sizes[i + 1]]` → `[batch, sizes.last()]`
    pub fn forward_masked(&self, x: Tensor<2>, masks: &[Tensor<2>]) -> Tensor<2> {
        debug_assert_eq!(masks.len(), self.layers.len(), "one mask per layer");
        self.layers
            .iter()
            .zip(masks)
            .fold(x, |h, (l, m)| relu(l.forward(h)) * m.clone())
    }
}

/// An [`Mlp`] followed by a linear output layer (no activation on the output).
#[derive(Module, Debug)]
pub struct MlpHead {
    body: Mlp,
    out: Linear,
}

impl MlpHead {
    /// `sizes[0] → … → sizes.last()` with ReLU, then linear to `d_out`.
    pub fn init(sizes: &[usize], d_out: usize, device: &Device) -> Self {
        let last = sizes.last().copied().unwrap_or(d_out);
        MlpHead {
            body: Mlp::init(sizes, device),
            out: LinearConfig::new(last, d_out).init(device),
        }
    }

    /// # Shapes
    /// - `x`: `[batch, sizes[0]]` → `[batch, d_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(self.body.forward(x))
    }
}

/// `tanh(x)` as `2·σ(2x) − 1`.
///
/// libm's `tanhf` (through `expm1f`) costs about twice `expf`, and this form of tanh was 31 % of a
/// latent-ODE training step when burn-flex evaluated it; as one op of
/// [`crate::activation`] it is one parallel pass each way, and the latent ODE's runs keep their numbers
/// (absolute error below 1e-6 against tanh).
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    logistic_tanh(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn tanh_and_its_gradient_match_burns() {
        let device = Device::flex().autodiff();
        let x =
            Tensor::<2>::random([9, 11], Distribution::Normal(0.0, 4.0), &device).require_grad();
        let ours = tanh(x.clone());
        let theirs = x.clone().tanh();
        let close = |a: Tensor<2>, b: Tensor<2>| {
            let d = (a - b).abs().max().into_scalar::<f32>();
            assert!(d < 1e-6, "max difference {d}");
        };
        close(ours.clone(), theirs.clone());
        let (g1, g2) = (ours.sum().backward(), theirs.sum().backward());
        close(x.grad(&g1).unwrap(), x.grad(&g2).unwrap());
        // Saturated inputs stay finite and exact at ±1.
        let big = Tensor::<1>::from_floats([-1e4, 1e4, 0.0], &Device::flex());
        let v: Vec<f32> = tanh(big).into_data().try_to_vec().unwrap();
        assert_eq!(v, [-1.0, 1.0, 0.0]);
    }
}
