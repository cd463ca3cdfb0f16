//! RealNVP normalising flow over flattened windows (Dinh et al. 2017).
//!
//! Data `x ∈ R^D` (`D = channels × time`) maps to a standard-normal latent through affine
//! coupling layers that alternate which half of the vector conditions the other, each optionally
//! preceded by an ActNorm layer. Log-scales are `bound · tanh(·)`, so no layer can blow up early
//! in training, and the last layer of each conditioner starts at zero, so the flow starts as the
//! identity (after ActNorm's data-dependent start).
//!
//! Count data are dequantised: a window of counts `k` is modelled as `k + u`, `u ~ U(0, 1)^D`,
//! whose density lower-bounds the probability of `k` (Theis et al. 2016). Continuous data are
//! modelled in the run's normalised units.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::activation::tanh;
use crate::condition::{self, LabelEmbedding};
use crate::likelihood::{std_normal_log_prob, HALF_LN_2PI};
use crate::{
    Density, FamilyConfig, GenerativeModel, Loss, LossContext, Mlp, ModelError, ModelFamily,
    Observation, Sampler, WindowShape,
};

/// An invertible map with a tractable Jacobian, optionally conditioned on a context (a
/// conditional flow's label embedding), which is an input of the map and never transformed.
pub trait Transform {
    /// Data → latent, with `log|det ∂z/∂x|` per row.
    ///
    /// # Shapes
    /// - `x`: `[batch, dim]`; `context`: `[batch, c]` → (`[batch, dim]`, `[batch]`)
    fn forward(&self, x: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>);

    /// Latent → data, the exact inverse of [`forward`](Self::forward) for the same context,
    /// with `log|det ∂x/∂z|` per row.
    ///
    /// # Shapes
    /// - `z`: `[batch, dim]`; `context`: `[batch, c]` → (`[batch, dim]`, `[batch]`)
    fn inverse(&self, z: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>);
}

/// `[model] kind = "realnvp"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealNvpConfig {
    /// Coupling layers.
    pub n_layers: usize,
    /// Hidden sizes of each coupling layer's conditioner MLP.
    pub hidden: Vec<usize>,
    /// An ActNorm layer (per-dimension affine, initialised from the first batch) before each
    /// coupling layer.
    pub actnorm: bool,
    /// Log-scales are `scale_bound · tanh(raw)`.
    pub scale_bound: f64,
    /// A conditional flow: the label's embedding is an extra input of every coupling's
    /// conditioner.
    pub conditional: bool,
    /// Size of the learned label embedding.
    pub embed_dim: usize,
    /// Dropout probability on the conditioners' hidden units in training steps (the flow
    /// overfits small data sets); 0 = none.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for RealNvpConfig {
    fn default() -> Self {
        RealNvpConfig {
            n_layers: 8,
            hidden: vec![256, 256],
            actnorm: true,
            scale_bound: 1.0,
            conditional: false,
            embed_dim: crate::condition::default_embed_dim(),
            dropout: 0.0,
        }
    }
}

impl FamilyConfig for RealNvpConfig {
    const KIND: &'static str = "realnvp";

    fn check(&self, _kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if self.n_layers == 0 {
            return bad("n_layers", "must be at least 1".into());
        }
        if self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("layer sizes must be ≥ 1, got {:?}", self.hidden),
            );
        }
        if !(self.scale_bound.is_finite() && self.scale_bound > 0.0) {
            return bad(
                "scale_bound",
                format!("must be positive, got {}", self.scale_bound),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must lie in [0, 1), got {}", self.dropout),
            );
        }
        crate::condition::check(self.conditional, self.embed_dim)
    }

    fn conditional(&self) -> bool {
        self.conditional
    }
}

impl ModelFamily for RealNvpConfig {
    type Model = RealNvp;

    fn build(&self, shape: WindowShape, kind: SignalKind, device: &Device) -> RealNvp {
        self.init(shape, kind, device)
    }
}

impl RealNvpConfig {
    /// Builds the flow for windows of `shape` of data of `kind`.
    pub fn init(&self, shape: WindowShape, kind: SignalKind, device: &Device) -> RealNvp {
        let dim = shape.dim();
        let e = if self.conditional && shape.classes > 0 {
            self.embed_dim
        } else {
            0
        };
        RealNvp {
            norms: if self.actnorm {
                (0..self.n_layers)
                    .map(|_| ActNorm::init(dim, device))
                    .collect()
            } else {
                vec![]
            },
            couplings: (0..self.n_layers)
                .map(|k| {
                    let first = k % 2 == 0;
                    AffineCoupling::init(dim, e, &self.hidden, first, self.scale_bound, device)
                })
                .collect(),
            channels: shape.channels,
            time: shape.time,
            counts: kind == SignalKind::Counts,
            embed: condition::init(self.conditional, shape.classes, self.embed_dim, device),
            dropout: self.dropout as f32,
            hidden: self.hidden.clone(),
        }
    }
}

/// Per-dimension affine map `z = (x − loc) · exp(−log_scale)` (Kingma & Dhariwal 2018).
#[derive(Module, Debug)]
pub struct ActNorm {
    loc: Param<Tensor<1>>,
    log_scale: Param<Tensor<1>>,
}

impl ActNorm {
    /// The identity on `dim` dimensions.
    pub fn init(dim: usize, device: &Device) -> Self {
        ActNorm {
            loc: Param::from_tensor(Tensor::zeros([dim], device)),
            log_scale: Param::from_tensor(Tensor::zeros([dim], device)),
        }
    }

    /// Sets the map so that `x` comes out with zero mean and unit variance per dimension.
    ///
    /// # Shapes
    /// - `x`: `[batch, dim]`
    pub fn fit(mut self, x: Tensor<2>) -> Self {
        let x = x.detach();
        let mean = x.clone().mean_dim(0); // [1, dim]
        let var = (x - mean.clone()).square().mean_dim(0); // [1, dim]
        let log_std = var.add_scalar(1e-6).log().mul_scalar(0.5);
        let dim = mean.dims()[1];
        self.loc = self.loc.map(|_| mean.reshape([dim]));
        self.log_scale = self.log_scale.map(|_| log_std.reshape([dim]));
        self
    }
}

impl ActNorm {
    /// `loc` and `log_scale` as constants: the data-dependent start is a fixed normalisation.
    /// [`ActNorm::fit`] leaves them without gradient on a fresh run; a resumed run loads them
    /// as trainable parameters, and training them there would make resume inexact.
    fn fixed(&self) -> (Tensor<1>, Tensor<1>) {
        (self.loc.val().detach(), self.log_scale.val().detach())
    }
}

impl Transform for ActNorm {
    fn forward(&self, x: Tensor<2>, _context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let b = x.dims()[0];
        let (loc, ls) = self.fixed();
        let z = (x - loc.unsqueeze_dim(0)) * ls.clone().neg().exp().unsqueeze_dim(0);
        (z, ls.sum().neg().expand([b]))
    }

    fn inverse(&self, z: Tensor<2>, _context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let b = z.dims()[0];
        let (loc, ls) = self.fixed();
        let x = z * ls.clone().exp().unsqueeze_dim(0) + loc.unsqueeze_dim(0);
        (x, ls.sum().expand([b]))
    }
}

/// One affine coupling layer: half of the vector passes through and conditions an affine map
/// of the other half.
#[derive(Module, Debug)]
pub struct AffineCoupling {
    net: Mlp,
    out: Linear,
    /// The first half conditions the second (else the reverse).
    first_conditions: bool,
    half: usize,
    dim: usize,
    bound: f32,
}

impl AffineCoupling {
    /// A layer on `dim` ≥ 2 dimensions; the first `dim / 2` condition the rest when
    /// `first_conditions`; the conditioner also reads a context of `context` values.
    pub fn init(
        dim: usize,
        context: usize,
        hidden: &[usize],
        first_conditions: bool,
        bound: f64,
        device: &Device,
    ) -> Self {
        let half = dim / 2;
        let (d_cond, d_trans) = if first_conditions {
            (half, dim - half)
        } else {
            (dim - half, half)
        };
        let mut sizes = vec![d_cond + context];
        sizes.extend(hidden);
        let last = *sizes.last().unwrap_or(&(d_cond + context));
        AffineCoupling {
            net: Mlp::init(&sizes, device),
            // Zero-initialised: the layer starts as the identity.
            out: LinearConfig::new(last, 2 * d_trans)
                .with_initializer(Initializer::Zeros)
                .init(device),
            first_conditions,
            half,
            dim,
            bound: bound as f32,
        }
    }

    /// (conditioning part, transformed part) of `x`.
    fn split(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let (a, b) = (
            x.clone().narrow(1, 0, self.half),
            x.narrow(1, self.half, self.dim - self.half),
        );
        if self.first_conditions {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn join(&self, cond: Tensor<2>, trans: Tensor<2>) -> Tensor<2> {
        if self.first_conditions {
            Tensor::cat(vec![cond, trans], 1)
        } else {
            Tensor::cat(vec![trans, cond], 1)
        }
    }

    /// Log-scale and shift for the transformed part, each `[batch, d_trans]`, with each
    /// hidden layer's units multiplied by its mask in `masks` (dropout) when given.
    fn scale_shift(
        &self,
        cond: Tensor<2>,
        context: Option<&Tensor<2>>,
        masks: Option<&[Tensor<2>]>,
    ) -> (Tensor<2>, Tensor<2>) {
        let cond = condition::with(cond, context.cloned()); // [batch, d_cond + context]
        let hidden = match masks {
            Some(m) => self.net.forward_masked(cond, m),
            None => self.net.forward(cond),
        };
        let h = self.out.forward(hidden); // [batch, 2 * d_trans]
        let d = h.dims()[1] / 2;
        let s = tanh(h.clone().narrow(1, 0, d)).mul_scalar(self.bound);
        (s, h.narrow(1, d, d))
    }
}

impl AffineCoupling {
    /// [`Transform::forward`] with dropout masks on the conditioner's hidden layers.
    fn forward_masked(
        &self,
        x: Tensor<2>,
        context: Option<&Tensor<2>>,
        masks: Option<&[Tensor<2>]>,
    ) -> (Tensor<2>, Tensor<1>) {
        let (z, s) = self.forward_scales(x, context, masks);
        (z, s.sum_dim(1).squeeze_dim(1).neg())
    }

    /// [`forward_masked`](Self::forward_masked) with the log-scales of the transformed part,
    /// `[batch, d_trans]`, unsummed.
    fn forward_scales(
        &self,
        x: Tensor<2>,
        context: Option<&Tensor<2>>,
        masks: Option<&[Tensor<2>]>,
    ) -> (Tensor<2>, Tensor<2>) {
        let (cond, b) = self.split(x);
        let (s, t) = self.scale_shift(cond.clone(), context, masks);
        let z_b = (b - t) * s.clone().neg().exp(); // [batch, d_trans]
        (self.join(cond, z_b), s)
    }
}

impl Transform for AffineCoupling {
    fn forward(&self, x: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.forward_masked(x, context, None)
    }

    fn inverse(&self, z: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let (cond, z_b) = self.split(z);
        let (s, t) = self.scale_shift(cond.clone(), context, None);
        let b = z_b * s.clone().exp() + t;
        (self.join(cond, b), s.sum_dim(1).squeeze_dim(1))
    }
}

/// The RealNVP flow.
#[derive(Module, Debug)]
pub struct RealNvp {
    norms: Vec<ActNorm>,
    couplings: Vec<AffineCoupling>,
    channels: usize,
    time: usize,
    counts: bool,
    /// The label embedding of a conditional flow.
    embed: Option<LabelEmbedding>,
    /// Dropout probability of the conditioners' hidden units in training.
    dropout: f32,
    /// The conditioners' hidden sizes (the widths of their dropout masks).
    hidden: Vec<usize>,
}

impl RealNvp {
    /// [`Transform::forward`] with `masks[k]` on coupling `k`'s conditioner when given.
    fn forward_masked(
        &self,
        x: Tensor<2>,
        context: Option<&Tensor<2>>,
        masks: Option<&[Vec<Tensor<2>>]>,
    ) -> (Tensor<2>, Tensor<1>) {
        let b = x.dims()[0];
        let mut logdet = Tensor::zeros([b], &x.device());
        let mut h = x;
        for (k, c) in self.couplings.iter().enumerate() {
            if let Some(n) = self.norms.get(k) {
                let (y, ld) = n.forward(h, context);
                (h, logdet) = (y, logdet + ld);
            }
            let m = masks.and_then(|m| m.get(k)).map(Vec::as_slice);
            let (y, ld) = c.forward_masked(h, context, m);
            (h, logdet) = (y, logdet + ld);
        }
        (h, logdet)
    }

    /// Inverted-dropout masks (0, or 1 / (1 − p)) per coupling and hidden layer from the
    /// training noise after its dequantisation draws ([`split_noise`](Self::split_noise)): a
    /// unit is kept when Φ(noise) ≥ p.
    ///
    /// # Shapes
    /// - `noise`: `[batch, dim + n_layers · Σ hidden]` → `n_layers` × `len(hidden)` ×
    ///   `[batch, hidden[i]]`; `None` for noise without mask columns
    fn dropout_masks(&self, noise: Tensor<2>) -> Option<Vec<Vec<Tensor<2>>>> {
        let (p, mut at) = (self.dropout, 0);
        let keep = crate::likelihood::normal_cdf(self.split_noise(noise).1?)
            .greater_equal_elem(p)
            .float()
            .div_scalar(1.0 - p); // [batch, masks]
        let per_coupling = (0..self.couplings.len()).map(|_| {
            self.hidden
                .iter()
                .map(|&h| {
                    at += h;
                    keep.clone().narrow(1, at - h, h)
                })
                .collect()
        });
        Some(per_coupling.collect())
    }
}

/// The whole flow; its context is the (embedded) label, handed to every coupling.
impl Transform for RealNvp {
    fn forward(&self, x: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        self.forward_masked(x, context, None)
    }

    fn inverse(&self, z: Tensor<2>, context: Option<&Tensor<2>>) -> (Tensor<2>, Tensor<1>) {
        let b = z.dims()[0];
        let mut logdet = Tensor::zeros([b], &z.device());
        let mut h = z;
        for (k, c) in self.couplings.iter().enumerate().rev() {
            let (y, ld) = c.inverse(h, context);
            (h, logdet) = (y, logdet + ld);
            if let Some(n) = self.norms.get(k) {
                let (y, ld) = n.inverse(h, context);
                (h, logdet) = (y, logdet + ld);
            }
        }
        (h, logdet)
    }
}

impl RealNvp {
    /// Values per window.
    pub fn dim(&self) -> usize {
        self.channels * self.time
    }

    /// Whether count windows are dequantised.
    pub fn dequantises(&self) -> bool {
        self.counts
    }

    /// Exact log-density of flattened vectors under the flow (given the embedded labels of a
    /// conditional flow).
    ///
    /// # Shapes
    /// - `x`: `[batch, dim]`; `context`: `[batch, embed_dim]` → `[batch]`
    pub fn log_prob_flat(&self, x: Tensor<2>, context: Option<&Tensor<2>>) -> Tensor<1> {
        let (z, logdet) = self.forward(x, context);
        std_normal_log_prob(z) + logdet
    }

    /// [`log_prob`](Self::log_prob) split exactly over the window's elements: each element's
    /// `ln N(z_e)` plus the log-determinant terms of the scales that acted on it (ActNorm's, and
    /// each coupling's where the element was in the transformed half). The couplings split the
    /// vector into halves in place, so element `e` of `z` sits where element `e` of `x` did.
    ///
    /// # Shapes
    /// - as [`log_prob`](Self::log_prob) → `[batch, channels, time]`
    pub fn log_prob_elements(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<2>,
    ) -> Tensor<3> {
        let [b, c, t] = x.dims();
        let device = x.device();
        let context = self.context(y, b, &device);
        let mut h = self.flatten(x, noise); // [batch, dim]
        let mut log_det = Tensor::<2>::zeros([b, c * t], &device);
        for (k, coupling) in self.couplings.iter().enumerate() {
            if let Some(n) = self.norms.get(k) {
                let ls = n.fixed().1; // [dim]
                h = n.forward(h, context.as_ref()).0;
                log_det = log_det - ls.unsqueeze_dim(0);
            }
            let (z, s) = coupling.forward_scales(h, context.as_ref(), None);
            let kept = Tensor::<2>::zeros([b, c * t - s.dims()[1]], &device);
            log_det = log_det - coupling.join(kept, s);
            h = z;
        }
        let log_n = h.square().mul_scalar(-0.5).sub_scalar(HALF_LN_2PI);
        (log_n + log_det).reshape([b, c, t])
    }

    /// Log-density of windows of conditions `y` (normalised units; counts dequantised with
    /// `noise` mapped to uniforms through the normal CDF, so that every random number still
    /// comes from the caller).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `noise`: `[batch, dim]` →
    ///   `[batch]`
    pub fn log_prob(&self, x: Tensor<3>, y: Option<Tensor<2>>, noise: Tensor<2>) -> Tensor<1> {
        let context = self.context(y, x.dims()[0], &x.device());
        self.log_prob_flat(self.flatten(x, noise), context.as_ref())
    }

    /// The embedded labels a conditional flow hands its couplings.
    fn context(&self, y: Option<Tensor<2>>, batch: usize, device: &Device) -> Option<Tensor<2>> {
        condition::embed(&self.embed, y, batch, device)
    }

    /// A window as a vector (counts dequantised by the first part of [`split_noise`](Self::split_noise)).
    fn flatten(&self, x: Tensor<3>, noise: Tensor<2>) -> Tensor<2> {
        let [b, c, t] = x.dims();
        let x = x.reshape([b, c * t]); // [batch, dim]
        if self.counts {
            x + crate::likelihood::normal_cdf(self.split_noise(noise).0)
        } else {
            x
        }
    }
}

impl RealNvp {
    /// Training noise `[batch, dim + m]` as dequantisation draws `[batch, dim]` and `m` more per
    /// window for the dropout masks (`None` when m = 0), split in the order the host drew them:
    /// the first `batch · dim` values dequantise, so the counts of a run with dropout get the
    /// same dequantisation as without.
    fn split_noise(&self, noise: Tensor<2>) -> (Tensor<2>, Option<Tensor<2>>) {
        let [b, d] = noise.dims();
        let dim = self.dim();
        if d <= dim {
            return (noise, None);
        }
        let flat = noise.reshape([b * d]);
        (
            flat.clone().narrow(0, 0, b * dim).reshape([b, dim]),
            Some(flat.narrow(0, b * dim, b * (d - dim)).reshape([b, d - dim])),
        )
    }
}

impl GenerativeModel for RealNvp {
    const INIT_FROM_DATA: bool = true;

    fn loss_noise_dim(&self) -> usize {
        let masks = if self.dropout > 0.0 {
            self.couplings.len() * self.hidden.iter().sum::<usize>()
        } else {
            0
        };
        self.dim() + masks
    }

    fn loss(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<2>,
        ctx: &LossContext,
    ) -> Loss {
        let context = self.context(y, x.dims()[0], &x.device());
        let masks = (ctx.training && self.dropout > 0.0)
            .then(|| self.dropout_masks(noise.clone()))
            .flatten();
        let (z, logdet) =
            self.forward_masked(self.flatten(x, noise), context.as_ref(), masks.as_deref());
        let nll = (std_normal_log_prob(z) + logdet).neg(); // [batch]
        let per_dim = (self.dim() as f32) * std::f32::consts::LN_2;
        let nll = nll.mean();
        Loss {
            total: nll.clone(),
            terms: vec![
                ("nll", nll.clone()),
                ("bits_per_dim", nll.div_scalar(per_dim)),
            ],
            stats: vec![],
        }
    }

    fn init_from_data(mut self, x: Tensor<3>, y: Option<Tensor<2>>, noise: Tensor<2>) -> Self {
        let context = self
            .context(y, x.dims()[0], &x.device())
            .map(|c| c.detach());
        let mut h = self.flatten(x, noise).detach();
        let norms = std::mem::take(&mut self.norms);
        let mut fitted = Vec::with_capacity(norms.len());
        for (k, n) in norms.into_iter().enumerate() {
            let n = n.fit(h.clone());
            h = n.forward(h, None).0;
            h = self.couplings[k].forward(h, context.as_ref()).0.detach();
            fitted.push(n);
        }
        self.norms = fitted;
        self
    }
}

impl Sampler for RealNvp {
    fn noise_dim(&self) -> usize {
        self.dim()
    }

    fn classes(&self) -> usize {
        self.embed.as_ref().map_or(0, LabelEmbedding::classes)
    }

    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation {
        let n = z.dims()[0];
        let context = self.context(y, n, &z.device());
        let (x, _) = self.inverse(z, context.as_ref());
        let x = x.reshape([n, self.channels, self.time]);
        // Dequantised counts k + u with u ∈ [0, 1): the count is the floor.
        let values = if self.counts {
            x.clamp_min(0.0).floor()
        } else {
            x
        };
        Observation::Point { values }
    }

    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }
}

/// The exact log-density (of uniformly dequantised counts for count data: a lower bound on
/// the log-probability of the counts).
impl Density for RealNvp {
    fn bound(&self, _k: usize) -> String {
        "exact".into()
    }

    fn score_noise(&self, _k: usize) -> (usize, usize) {
        (1, self.dim())
    }

    fn score_batch(&self, _k: usize) -> usize {
        256
    }

    fn log_likelihood(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Result<(Tensor<1>, Option<Tensor<1>>), ModelError> {
        let [_, b, d] = noise.dims();
        Ok((self.log_prob(x, y, noise.reshape([b, d])), None))
    }

    fn bound_elements(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Option<Result<Tensor<3>, ModelError>> {
        let [_, b, d] = noise.dims();
        Some(Ok(self.log_prob_elements(x, y, noise.reshape([b, d]))))
    }

    fn splits_bound(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::host;
    use burn::module::ModuleMapper;
    use burn::tensor::{Distribution, TensorData};

    /// Replaces every parameter with uniform draws on [−0.5, 0.5] from a seeded host generator
    /// (tests run in parallel and share the device's generator), so no layer is the identity.
    struct Randomise(u64);
    impl Randomise {
        /// The next value of a host generator (PCG's LCG step), uniform on [0, 1).
        fn uniform(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 40) as f32 / (1u64 << 24) as f32
        }
    }
    impl ModuleMapper for Randomise {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            p.map(|t| {
                let shape = t.shape();
                let v: Vec<f32> = (0..shape.num_elements())
                    .map(|_| self.uniform() - 0.5)
                    .collect();
                Tensor::from_data(TensorData::new(v, shape), &t.device())
            })
        }
    }

    fn flow(dim: usize, layers: usize, actnorm: bool, seed: u64) -> RealNvp {
        conditional_flow(dim, layers, actnorm, 0, seed)
    }

    /// A flow conditioned on `classes` labels (none: unconditional).
    fn conditional_flow(
        dim: usize,
        layers: usize,
        actnorm: bool,
        classes: usize,
        seed: u64,
    ) -> RealNvp {
        let device = Device::flex();
        let cfg = RealNvpConfig {
            n_layers: layers,
            hidden: vec![16, 16],
            actnorm,
            scale_bound: 1.0,
            conditional: classes > 0,
            embed_dim: 4,
            dropout: 0.0,
        };
        // `init` draws from the device's generator, which tests that seed it share; the weights
        // are replaced below, so only the lock matters here.
        let _rng_lock = crate::test_util::seed(&device, seed);
        cfg.init(
            WindowShape {
                inputs: 0,
                channels: 1,
                time: dim,
                sfreq: 1.0,
                classes,
            },
            SignalKind::Continuous,
            &device,
        )
        .map(&mut Randomise(seed))
    }

    fn check_round_trip<T: Transform>(name: &str, t: &T, x: Tensor<2>) {
        let (z, ld_f) = t.forward(x.clone(), None);
        let (back, ld_i) = t.inverse(z, None);
        for (a, b) in host(x).iter().zip(host(back)) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{name}: {a} vs {b}");
        }
        for (f, i) in host(ld_f).iter().zip(host(ld_i)) {
            assert!((f + i).abs() < 1e-4 * (1.0 + f.abs()), "{name}: {f} + {i}");
        }
    }

    #[test]
    fn dropout_acts_in_training_steps_only_and_keeps_one_minus_p_of_the_units_scaled_up() {
        let device = Device::flex();
        let (dim, batch) = (6, 400);
        let mut f = flow(dim, 2, false, 9);
        f.dropout = 0.25;
        let plain = flow(dim, 2, false, 9); // the same weights without dropout

        // The draws below come from the device's generator, shared with tests that seed it.
        let _rng_lock = crate::test_util::seed(&device, 12);
        assert_eq!(
            f.loss_noise_dim(),
            dim + 2 * 32,
            "two layers of 16 units per coupling"
        );
        let noise = Tensor::<2>::random(
            [batch, f.loss_noise_dim()],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let x = Tensor::<3>::random([batch, 1, dim], Distribution::Normal(0.0, 1.0), &device);
        // The masks: 0 or 1/(1 − p), with 1 − p of the units kept (400 × 64 draws: ±1.5 %).
        let masks = f.dropout_masks(noise.clone()).unwrap();
        assert_eq!(masks.len(), 2);
        let m: Vec<f64> = masks
            .iter()
            .flatten()
            .flat_map(|t| host(t.clone()))
            .collect();
        assert!(m.iter().all(|v| *v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let kept = m.iter().filter(|v| **v > 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.75).abs() < 0.015, "kept {kept}");
        // Outside training the loss is the exact NLL of the same weights without dropout.
        let nll = |f: &RealNvp, training| {
            let ctx = LossContext {
                kl_warmup: 1.0,
                training,
            };
            f.loss(x.clone(), None, noise.clone(), &ctx)
                .total
                .into_scalar::<f32>()
        };
        let exact = -host(plain.log_prob(x.clone(), None, noise.clone()))
            .iter()
            .sum::<f64>()
            / batch as f64;
        assert!((nll(&f, false) as f64 - exact).abs() < 1e-4 * exact.abs());
        assert_eq!(nll(&f, false), nll(&plain, true), "p = 0: no masks at all");
        assert_ne!(
            nll(&f, true),
            nll(&f, false),
            "dropout changes a training step"
        );
        let e = RealNvpConfig {
            dropout: 1.0,
            ..Default::default()
        }
        .check(SignalKind::Continuous)
        .unwrap_err();
        assert!(e.to_string().contains("dropout"), "{e}");
    }

    #[test]
    fn the_log_density_splits_exactly_over_elements() {
        // Randomised weights, so every coupling's scales act; where a trained flow puts an
        // artefact is measured by the artefact benchmark.
        let device = Device::flex();
        for (actnorm, seed) in [(true, 21u64), (false, 22)] {
            let f = flow(16, 4, actnorm, seed);
            let mut r = Randomise(seed + 7);
            let v: Vec<f32> = (0..3 * 16).map(|_| r.uniform() * 4.0 - 2.0).collect();
            let x = Tensor::<3>::from_data(TensorData::new(v, [3, 1, 16]), &device);
            let noise = Tensor::<3>::zeros([1, 3, 16], &device);
            let whole = f.log_prob(x.clone(), None, noise.clone().reshape([3, 16]));
            crate::test_util::check_bound_elements(&f, x, noise, whole, false);
        }
        // Where each term lands: with one coupling and no ActNorm, the conditioning half
        // passes through unscaled, so its elements are exactly ln N(x_e); the scales fall on
        // the other half.
        for seed in [23u64, 24] {
            let mut f = flow(16, 1, false, seed);
            let _rng_lock = crate::test_util::seed(&device, seed);
            for first in [true, false] {
                f.couplings[0].first_conditions = first;
                let x = Tensor::<3>::random([2, 1, 16], Distribution::Normal(0.0, 1.0), &device);
                let noise = Tensor::<2>::zeros([2, 16], &device);
                let el = host(f.log_prob_elements(x.clone(), None, noise));
                let xs = host(x);
                let cond = if first { 0..8 } else { 8..16 };
                for w in 0..2 {
                    for e in 0..16 {
                        let exact = -0.5 * xs[w * 16 + e].powi(2) - 0.918_938_5;
                        let got = el[w * 16 + e];
                        if cond.contains(&e) {
                            assert!((got - exact).abs() < 1e-5, "{first} {e}: {got} vs {exact}");
                        } else {
                            assert!((got - exact).abs() > 1e-4, "{first} {e}: not scaled");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_transform_inverts_exactly_and_its_log_dets_cancel() {
        let device = Device::flex();
        for (seed, dim, batch) in [(1u64, 2usize, 5usize), (2, 7, 3), (3, 16, 8), (4, 33, 4)] {
            // Values spread over [−3, 3) from the same host generator.
            let mut r = Randomise(seed + 100);
            let v: Vec<f32> = (0..batch * dim).map(|_| r.uniform() * 6.0 - 3.0).collect();
            let x = Tensor::<2>::from_data(TensorData::new(v, [batch, dim]), &device);
            let f = flow(dim, 4, true, seed);
            check_round_trip("realnvp", &f, x.clone());
            check_round_trip("actnorm", &f.norms[0], x.clone());
            check_round_trip("coupling(first)", &f.couplings[0], x.clone());
            check_round_trip("coupling(second)", &f.couplings[1], x.clone());
            // A conditional flow inverts exactly for each context, and the context matters.
            let f = conditional_flow(dim, 4, true, 3, seed);
            let y = crate::condition::one_hot(&vec![1; batch], 3, &device);
            let context = f.context(Some(y), batch, &device).unwrap();
            let (z, ld_f) = f.forward(x.clone(), Some(&context));
            let (back, ld_i) = f.inverse(z.clone(), Some(&context));
            for (a, b) in host(x.clone()).iter().zip(host(back)) {
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + a.abs()),
                    "conditional: {a} vs {b}"
                );
            }
            for (f, i) in host(ld_f).iter().zip(host(ld_i)) {
                assert!(
                    (f + i).abs() < 1e-4 * (1.0 + f.abs()),
                    "conditional: {f} + {i}"
                );
            }
            let (z0, _) = f.forward(x, Some(&context.zeros_like()));
            let moved = host(z)
                .iter()
                .zip(host(z0))
                .any(|(a, b)| (a - b).abs() > 1e-4);
            assert!(moved, "the context must change the map");
        }
    }

    /// log|det| of a 5 × 5 Jacobian by central differences and LU in f64.
    fn numeric_logdet<T: Transform>(t: &T, x: &[f32]) -> f64 {
        let d = x.len();
        let device = Device::flex();
        let eval = |v: Vec<f32>| {
            host(
                t.forward(Tensor::from_data(TensorData::new(v, [1, d]), &device), None)
                    .0,
            )
        };
        let h = 1e-3f32;
        let mut j = vec![vec![0f64; d]; d];
        for col in 0..d {
            let (mut p, mut m) = (x.to_vec(), x.to_vec());
            p[col] += h;
            m[col] -= h;
            let (fp, fm) = (eval(p), eval(m));
            for row in 0..d {
                j[row][col] = (fp[row] - fm[row]) / (2.0 * h as f64);
            }
        }
        // Gaussian elimination with partial pivoting.
        let mut logdet = 0.0;
        for c in 0..d {
            let p = (c..d)
                .max_by(|&a, &b| j[a][c].abs().total_cmp(&j[b][c].abs()))
                .unwrap();
            j.swap(c, p);
            logdet += j[c][c].abs().ln();
            let pivot = j[c].clone();
            for row in j.iter_mut().skip(c + 1) {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
            }
        }
        logdet
    }

    #[test]
    fn log_det_matches_a_numerical_jacobian() {
        let device = Device::flex();
        for seed in [11u64, 12, 13] {
            let f = flow(5, 3, true, seed);
            let x: Vec<f32> = (0..5)
                .map(|i| ((seed as f32) * 0.37 + i as f32 * 0.61).sin())
                .collect();
            let (_, ld) = f.forward(
                Tensor::from_data(TensorData::new(x.clone(), [1, 5]), &device),
                None,
            );
            let got = ld.into_scalar::<f32>() as f64;
            let want = numeric_logdet(&f, &x);
            assert!((got - want).abs() < 2e-2, "seed {seed}: {got} vs {want}");
            assert!(want.abs() > 0.1, "the test needs a non-trivial Jacobian");
        }
    }

    #[test]
    fn a_two_dimensional_density_integrates_to_one() {
        let device = Device::flex();
        let f = flow(2, 2, true, 21);
        let (lo, step, n) = (-12.0f32, 0.04f32, 600usize);
        let mut pts = Vec::with_capacity(2 * n * n);
        for i in 0..n {
            for j in 0..n {
                pts.push(lo + (i as f32 + 0.5) * step);
                pts.push(lo + (j as f32 + 0.5) * step);
            }
        }
        let lp = f.log_prob_flat(
            Tensor::from_data(TensorData::new(pts, [n * n, 2]), &device),
            None,
        );
        let mass: f64 = host(lp).iter().map(|l| l.exp()).sum::<f64>() * (step as f64).powi(2);
        assert!((mass - 1.0).abs() < 0.02, "∫ p = {mass}");
    }

    #[test]
    fn loss_falls_on_a_tiny_batch_and_samples_are_floored_counts() {
        use burn::optim::{AdamConfig, GradientsParams};
        let ad = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&ad, 4);
        let shape = WindowShape {
            inputs: 0,
            channels: 2,
            time: 6,
            sfreq: 10.0,
            classes: 0,
        };
        let cfg = RealNvpConfig {
            n_layers: 4,
            hidden: vec![32],
            ..Default::default()
        };
        // Correlated Gaussian data: x = A ε.
        let eps = Tensor::<2>::random([32, 12], Distribution::Normal(0.0, 1.0), &ad);
        let a = Tensor::<2>::random([12, 12], Distribution::Normal(0.0, 0.5), &ad);
        let x = eps.matmul(a).reshape([32, 2, 6]);
        let noise = Tensor::<2>::zeros([32, 12], &ad);
        let mut model = cfg.init(shape, SignalKind::Continuous, &ad).init_from_data(
            x.clone(),
            None,
            noise.clone(),
        );
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };
        let first = model
            .loss(x.clone(), None, noise.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        let mut optim = AdamConfig::new().init();
        for _ in 0..100 {
            let loss = model.loss(x.clone(), None, noise.clone(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(3e-3, model, grads);
        }
        let last = model.loss(x, None, noise, &ctx).total.into_scalar::<f32>();
        assert!(last < first - 5.0, "{first} -> {last}");

        let counts = cfg.init(shape, SignalKind::Counts, &Device::flex());
        match counts.generate(
            Tensor::random([4, 12], Distribution::Normal(0.0, 1.0), &Device::flex()),
            None,
        ) {
            Observation::Point { values } => {
                let v: Vec<f32> = values.into_data().try_to_vec().unwrap();
                assert!(v.iter().all(|x| *x >= 0.0 && x.fract() == 0.0), "{v:?}");
            }
            other => panic!("a flow yields points, got {other:?}"),
        }
    }
}
