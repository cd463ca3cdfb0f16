//! A stack of linear layers with ReLU between them.

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
