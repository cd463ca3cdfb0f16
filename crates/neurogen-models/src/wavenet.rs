//! An autoregressive WaveNet (van den Oord et al. 2016) over `[channels, time]` windows:
//! p(x) = Π_t p(x_t | x_{<t}), every channel of step t predicted jointly from the shared past.
//!
//! **Network** (the reference workload W6 by default): a 1×1 input convolution, then gated,
//! dilated, causal kernel-2 convolutions — `z = tanh(W_f [h_{t−d}, h_t]) ⊙ σ(W_g [h_{t−d}, h_t])`,
//! `h ← h + W_r z`, `skip += W_s z` — and a head `ReLU → 1×1 → ReLU → 1×1` from the summed
//! skips to each step's distribution: a Gaussian (mean, log σ per channel), a mixture of K
//! Gaussians (`mixture = K`: weights, means, log σ) or a Poisson (log-rate, for counts). The
//! filter and gate taps are one product (`[h_{t−d}, h_t]` → `[filter, gate]`), on time-major
//! activations `[batch, time, width]`.
//!
//! **Causality.** The input at step t is x_{t−1} (zeros before the window), and each layer reads
//! only h_t and h_{t−d}: the output at t sees x_{<t}, within a receptive field of
//! `1 + Σ dilations` steps. The first step is predicted from no data, so the likelihood covers
//! the whole window.
//!
//! **Likelihood.** Exact: log p(x) = Σ_t Σ_c log p(x_{c,t} | x_{<t}) in nats per window, with
//! the `ln x!` term for counts; [`WaveNet::log_likelihood_steps`] gives every step's term (the
//! surprise that localises an anomaly in time). The training loss is the mean per element (W6).
//!
//! **Sampling** is ancestral, from host normals: each step's noise is mapped through the
//! step's distribution (Gaussian: mean + σ z; mixture: the component by inverse CDF of Φ(z₁),
//! then mean + σ z₂; Poisson: the count by inverse CDF of Φ(z)). Each layer keeps its past
//! inputs, so one new step costs one pass through the layers ("fast WaveNet generation",
//! Paine et al. 2016), not a pass over the receptive field; the naive form, which re-runs the
//! whole network for each step, is kept for the test that they agree.
//!
//! **Conditioning.** A conditional model adds a projection of the label's embedding to the
//! input activations at every step (global conditioning). A model driven by exogenous inputs
//! `u` (`[data] inputs`, e.g. a stimulus) adds `V_l u_t` to every layer's filter and gate
//! pre-activations (WaveNet's local conditioning) and `V_0 u_t` to the input activations, so
//! that through the dilated stack step t sees u_{t−r+1..t} like it sees the data: step t is
//! predicted from x_{<t} and u_{≤t}, since the stimulus at t is known when x_t is drawn.
//! (Per-layer terms alone reach only lags that are sums of the later layers' dilations.) Sampling with new inputs
//! ([`Driven`]) simulates the response to a new stimulus.

use std::collections::VecDeque;

use crate::activation::{sigmoid, tanh};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, relu, softmax};
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::condition::{self, LabelEmbedding};
use crate::conv::shift;
use crate::likelihood::{
    gaussian_nll_elements, normal_cdf, normal_quantile, poisson_nll_elements, Likelihood,
};
use crate::{
    Density, Driven, FamilyConfig, GenerativeModel, Loss, LossContext, ModelError, ModelFamily,
    Observation, Sampler, WindowShape,
};

/// Largest count the Poisson sampler's inverse CDF reaches in one step.
const MAX_COUNT: usize = 64;

/// `[model] kind = "autoregressive"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WaveNetConfig {
    /// Width of the residual stream.
    pub residual: usize,
    /// Width of the skip paths and the head.
    pub skip: usize,
    /// One gated layer per dilation (kernel 2 each).
    pub dilations: Vec<usize>,
    /// `gaussian` or `poisson`; default from the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<Likelihood>,
    /// Gaussians per step and channel (1: one Gaussian).
    pub mixture: usize,
    /// Conditional on the run's labels.
    pub conditional: bool,
    /// Size of the learned label embedding.
    pub embed_dim: usize,
    /// Steps generated before each sample and dropped (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub burn_in: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for WaveNetConfig {
    fn default() -> Self {
        WaveNetConfig {
            residual: 64,
            skip: 64,
            dilations: vec![1, 2, 4, 8, 16, 32, 64, 128],
            likelihood: None,
            mixture: 1,
            conditional: false,
            embed_dim: condition::default_embed_dim(),
            burn_in: 0,
        }
    }
}

impl FamilyConfig for WaveNetConfig {
    const KIND: &'static str = "autoregressive";
    const TAKES_INPUTS: bool = true;

    fn resolved(&self, kind: SignalKind) -> Self {
        WaveNetConfig {
            likelihood: Some(Likelihood::resolve(self.likelihood, kind)),
            ..self.clone()
        }
    }

    fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        if self.residual == 0 || self.skip == 0 {
            return bad(
                "residual",
                format!(
                    "residual and skip widths must be at least 1, got {} and {}",
                    self.residual, self.skip
                ),
            );
        }
        if self.dilations.is_empty() || self.dilations.contains(&0) {
            return bad(
                "dilations",
                format!(
                    "needs at least one layer, each dilation ≥ 1, got {:?}",
                    self.dilations
                ),
            );
        }
        let likelihood = Likelihood::resolve(self.likelihood, kind);
        if likelihood == Likelihood::GaussianAr1 {
            return bad(
                "likelihood",
                "\"gaussian_ar1\" is for decoders that see no past; the WaveNet predicts every \
                 step from the past already: use \"gaussian\" (and mixture = K)"
                    .into(),
            );
        }
        if likelihood == Likelihood::Poisson && kind == SignalKind::Continuous {
            return bad(
                "likelihood",
                "\"poisson\" needs count data (spike trains); these data are continuous".into(),
            );
        }
        if self.mixture == 0 {
            return bad("mixture", "needs at least 1 component, got 0".into());
        }
        if self.mixture > 1 && likelihood == Likelihood::Poisson {
            return bad(
                "mixture",
                format!(
                    "a mixture of {} Gaussians cannot be used with likelihood = \"poisson\"; use mixture = 1",
                    self.mixture
                ),
            );
        }
        condition::check(self.conditional, self.embed_dim)
    }

    fn conditional(&self) -> bool {
        self.conditional
    }
}

impl ModelFamily for WaveNetConfig {
    type Model = WaveNet;

    fn build(&self, shape: WindowShape, kind: SignalKind, device: &Device) -> WaveNet {
        self.init(shape, kind, device)
    }
}

impl WaveNetConfig {
    /// Steps of the past one output sees, the current input included: `1 + Σ dilations`.
    pub fn receptive_field(&self) -> usize {
        1 + self.dilations.iter().sum::<usize>()
    }

    /// Builds the network for windows of `shape` of data of `kind`.
    pub fn init(&self, shape: WindowShape, kind: SignalKind, device: &Device) -> WaveNet {
        let (c, r, s, u) = (shape.channels, self.residual, self.skip, shape.inputs);
        let likelihood = Likelihood::resolve(self.likelihood, kind);
        let k = if likelihood == Likelihood::Poisson {
            0
        } else {
            self.mixture
        };
        let per_channel = params_per_channel(k);
        let linear = |a, b| LinearConfig::new(a, b).init(device);
        let embed = condition::init(self.conditional, shape.classes, self.embed_dim, device);
        let label = embed.as_ref().map(|e| linear(e.dim(), r));
        tracing::info!(
            receptive_field = self.receptive_field(),
            "wavenet receptive field (steps)"
        );
        WaveNet {
            input: linear(c, r),
            layers: self
                .dilations
                .iter()
                .map(|&d| Layer {
                    taps: linear(2 * r, 2 * r),
                    residual: linear(r, r),
                    skip: linear(r, s),
                    drive: (u > 0).then(|| linear(u, 2 * r)),
                    dilation: d,
                })
                .collect(),
            input_drive: (u > 0).then(|| linear(u, r)),
            head1: linear(s, s),
            head2: linear(s, c * per_channel),
            embed,
            label,
            channels: c,
            inputs: u,
            time: shape.time,
            burn_in: self.burn_in,
            components: k,
            counts: kind == SignalKind::Counts,
        }
    }
}

/// One gated layer: the dilated kernel-2 taps → filter and gate, then the residual and skip
/// 1×1 convolutions.
#[derive(Module, Debug)]
struct Layer {
    taps: Linear,
    residual: Linear,
    skip: Linear,
    /// The exogenous inputs' map into the filter and gate pre-activations.
    drive: Option<Linear>,
    dilation: usize,
}

/// The WaveNet.
#[derive(Module, Debug)]
pub struct WaveNet {
    input: Linear,
    /// The exogenous inputs' map into the input activations.
    input_drive: Option<Linear>,
    layers: Vec<Layer>,
    head1: Linear,
    head2: Linear,
    embed: Option<LabelEmbedding>,
    /// The label embedding's map into the residual stream.
    label: Option<Linear>,
    channels: usize,
    /// Exogenous input channels, after the data channels of a batch.
    inputs: usize,
    time: usize,
    /// Steps generated before a sample and dropped. The network learnt every window's start
    /// from an empty past, but its channels are independent given the past: from nothing, the
    /// first steps carry none of the data's cross-channel structure (on spikes, none of the
    /// shared latent), and the model's reply to its own incoherent start rings through the
    /// window. Windows cut from a stationary recording begin in the middle of things, so
    /// a sampler that starts there matches them better.
    burn_in: usize,
    /// Gaussians per step and channel; 0 for Poisson.
    components: usize,
    counts: bool,
}

impl WaveNet {
    /// Steps of the past one output sees.
    pub fn receptive_field(&self) -> usize {
        1 + self.layers.iter().map(|l| l.dilation).sum::<usize>()
    }

    /// Standard normals one step of one window consumes when sampling (per channel).
    fn noise_per_value(&self) -> usize {
        if self.components > 1 {
            2
        } else {
            1
        }
    }

    /// What the network reads of a value: Poisson counts as `ln(1 + k)`, other data as they
    /// are.
    fn read<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.components == 0 {
            x.add_scalar(1.0).log()
        } else {
            x
        }
    }

    /// The label term added to the input activations, `[batch, residual]`.
    fn label_term(&self, y: Option<Tensor<2>>, batch: usize, device: &Device) -> Option<Tensor<2>> {
        let e = condition::embed(&self.embed, y, batch, device)?;
        self.label.as_ref().map(|l| l.forward(e))
    }

    /// A batch's data channels and (for a driven model) its inputs, time-major.
    fn split(&self, x: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>) {
        crate::split_inputs(x, self.channels, self.inputs)
    }

    /// Teacher-forced distribution parameters of every step: step t from x_{<t} (and the
    /// inputs u_{≤t} of a driven model).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` → `[batch, time, channels × params]`; `u`: `[batch,
    ///   time, inputs]`
    fn forward(&self, x: Tensor<3>, y: Option<Tensor<2>>, u: Option<Tensor<3>>) -> Tensor<3> {
        let [b, _, _] = x.dims();
        let device = x.device();
        let past = shift(self.read(x).swap_dims(1, 2), 1); // [batch, time, channels]
        let mut h = self.input.forward(past); // [batch, time, residual]
        let r = h.dims()[2];
        // Label then inputs, in the order cached sampling adds them.
        if let Some(l) = self.label_term(y, b, &device) {
            h = h + l.reshape([b, 1, r]);
        }
        if let (Some(v), Some(u)) = (&self.input_drive, &u) {
            h = h + v.forward(u.clone());
        }
        let mut skip: Option<Tensor<3>> = None;
        for layer in &self.layers {
            let then = shift(h.clone(), layer.dilation as isize);
            let drive = layer.drive_term(u.clone()); // [batch, time, 2 · residual]
            let (next, s) = layer.forward(then, h, drive, r); // [batch, time, residual], [batch, time, skip]
            h = next;
            skip = Some(add_skip(skip, s));
        }
        self.head(skip.expect("at least one layer (checked)"))
    }

    /// The head: the summed skips to each step's distribution parameters.
    ///
    /// # Shapes
    /// - `skip`: `[…, skip]` → `[…, channels × params]`
    fn head<const D: usize>(&self, skip: Tensor<D>) -> Tensor<D> {
        self.head2.forward(relu(self.head1.forward(relu(skip))))
    }

    /// −log p(x_{c,t} | x_{<t}) per value.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `params`: `[batch, time, channels × params]` →
    ///   `[batch, channels, time]`
    fn nll_elements(&self, x: Tensor<3>, params: Tensor<3>) -> Tensor<3> {
        let [b, c, t] = x.dims();
        let p = params.reshape([b, t, c, self.params_per_channel()]);
        let x = x.swap_dims(1, 2); // [batch, time, channels]
        let nll = match self.components {
            0 => {
                let log_rate = p.narrow(3, 0, 1).reshape([b, t, c]);
                poisson_nll_elements(x, log_rate)
            }
            1 => {
                let mean = p.clone().narrow(3, 0, 1).reshape([b, t, c]);
                let log_sigma = p.narrow(3, 1, 1).reshape([b, t, c]);
                gaussian_nll_elements(x, mean, log_sigma)
            }
            k => {
                let (logits, mean, log_sigma) = split_mixture(p, k); // each [b, t, c, k]
                let log_w = log_softmax(logits, 3);
                let xs = x.unsqueeze_dim::<4>(3); // [b, t, c, 1]
                let z = (xs - mean) / log_sigma.clone().exp();
                let log_n =
                    z.square().mul_scalar(-0.5) - log_sigma - crate::likelihood::HALF_LN_2PI;
                log_sum_exp(log_w + log_n).neg() // [b, t, c]
            }
        };
        nll.swap_dims(1, 2)
    }

    fn params_per_channel(&self) -> usize {
        params_per_channel(self.components)
    }

    /// Every step's log-likelihood per channel, `log p(x_ct | x_{<t})` (the head factorises
    /// over channels given the past), nats.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` → `[batch, channels, time]`
    pub fn log_likelihood_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Tensor<3> {
        let (x, u) = self.split(x);
        let params = self.forward(x.clone(), y, u);
        self.nll_elements(x, params).neg()
    }

    /// Every element's standard-normal residual given the past, `Φ⁻¹(F(x_ct | x_{<t}))` (the
    /// probability integral transform): i.i.d. N(0, 1) under the model, whatever the data, so
    /// a stretch of residuals that is not white (a held value the model keeps mispredicting
    /// alike) is evidence against the window that the likelihood may not give. `(x − μ) / σ`
    /// for one Gaussian; the mixture's CDF through [`normal_quantile`] for several; `None`
    /// for counts, whose CDF has steps.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` → `[batch, channels, time]`
    pub fn residual_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Option<Tensor<3>> {
        if self.components == 0 {
            return None;
        }
        let (x, u) = self.split(x);
        let [b, c, t] = x.dims();
        let p = self
            .forward(x.clone(), y, u)
            .reshape([b, t, c, self.params_per_channel()]);
        let x = x.swap_dims(1, 2); // [batch, time, channels]
        let z = match self.components {
            1 => {
                let mean = p.clone().narrow(3, 0, 1).reshape([b, t, c]);
                let sigma = p.narrow(3, 1, 1).reshape([b, t, c]).exp();
                (x - mean) / sigma
            }
            k => {
                let (logits, mean, log_sigma) = split_mixture(p, k); // each [b, t, c, k]
                let w = softmax(logits, 3);
                let xs = x.unsqueeze_dim::<4>(3); // [b, t, c, 1]
                let cdf = (w * normal_cdf((xs - mean) / log_sigma.exp())).sum_dim(3);
                normal_quantile(cdf.reshape([b, t, c]))
            }
        };
        Some(z.swap_dims(1, 2))
    }

    /// Every step's log-likelihood, summed over channels: the surprise −log p(x_t | x_{<t})
    /// negated, nats.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` → `[batch, time]`
    pub fn log_likelihood_steps(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Tensor<2> {
        let [b, _, t] = x.dims();
        self.log_likelihood_elements(x, y)
            .sum_dim(1)
            .reshape([b, t])
    }

    /// The value of one step drawn from its parameters and host normals.
    ///
    /// # Shapes
    /// - `params`: `[n, channels × params]`; `z`: `[n, channels, noise_per_value]` → `[n, channels]`
    fn draw(&self, params: Tensor<2>, z: Tensor<3>) -> Tensor<2> {
        let [n, c, _] = z.dims();
        let p = params.reshape([n, c, self.params_per_channel()]);
        match self.components {
            0 => {
                let rate = p.narrow(2, 0, 1).reshape([n, c]).exp();
                poisson_quantile(rate, normal_cdf(z.narrow(2, 0, 1).reshape([n, c])))
            }
            1 => {
                let mean = p.clone().narrow(2, 0, 1).reshape([n, c]);
                let sigma = p.narrow(2, 1, 1).reshape([n, c]).exp();
                mean + sigma * z.narrow(2, 0, 1).reshape([n, c])
            }
            k => {
                let p4 = p.reshape([n, 1, c, 3 * k]);
                let (logits, mean, log_sigma) = split_mixture(p4, k); // [n, 1, c, k]
                let w = softmax(logits, 3).reshape([n, c, k]);
                // The component: the first whose cumulative weight exceeds u.
                let u = normal_cdf(z.clone().narrow(2, 0, 1)); // [n, c, 1]
                let cdf = w.cumsum(2); // [n, c, k]
                let below = cdf.lower_equal(u.expand([n, c, k])).float();
                let chosen = below.sum_dim(2).clamp(0.0, (k - 1) as f32).int(); // [n, c, 1]
                let mean = mean.reshape([n, c, k]).gather(2, chosen.clone());
                let sigma = log_sigma.reshape([n, c, k]).gather(2, chosen).exp();
                (mean + sigma * z.narrow(2, 1, 1)).reshape([n, c])
            }
        }
    }

    /// A drawn step as the data have it: counts modelled by Gaussians are rounded to
    /// non-negative integers before they are fed back.
    fn as_data(&self, v: Tensor<2>) -> Tensor<2> {
        if self.counts && self.components > 0 {
            v.clamp_min(0.0).round()
        } else {
            v
        }
    }

    /// A driven model's inputs time-major, zeros (the training mean when normalised) when none
    /// are given;
    /// `None` for a model without inputs.
    ///
    /// # Shapes
    /// - `u`: `[n, inputs, length]` → `[n, length, inputs]`
    fn inputs_or_zeros(
        &self,
        u: Option<Tensor<3>>,
        n: usize,
        length: usize,
        device: &Device,
    ) -> Option<Tensor<3>> {
        if self.inputs == 0 {
            return None;
        }
        Some(match u {
            Some(u) => u.swap_dims(1, 2),
            None => Tensor::zeros([n, length, self.inputs], device),
        })
    }

    /// Ancestral sampling with each layer's past kept: `length` steps from `z` (driven by
    /// inputs `u`, or by inputs held at 0, for a driven model).
    ///
    /// # Shapes
    /// - `z`: `[n, channels · length · noise_per_value]`, standard normal; `y`: `[n, classes]`;
    ///   `u`: `[n, inputs, length]` → `[n, channels, length]`
    pub fn sample_cached(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        u: Option<Tensor<3>>,
        length: usize,
    ) -> Tensor<3> {
        let [n, _] = z.dims();
        let (c, k) = (self.channels, self.noise_per_value());
        let device = z.device();
        let z = z.reshape([n, length, c, k]);
        let label = self.label_term(y, n, &device);
        let r = self.input.weight.dims()[1];
        let u = self.inputs_or_zeros(u, n, length, &device); // [n, length, inputs]

        // history[l]: the inputs of layer l over the last `dilation` steps, oldest first.
        let mut history: Vec<VecDeque<Tensor<2>>> = self
            .layers
            .iter()
            .map(|l| VecDeque::with_capacity(l.dilation + 1))
            .collect();
        let mut prev = Tensor::<2>::zeros([n, c], &device);
        let mut out = Vec::with_capacity(length);
        let zeros = Tensor::<2>::zeros([n, r], &device);
        for t in 0..length {
            let mut h = self.input.forward(self.read(prev.clone())); // [n, residual]
            if let Some(l) = &label {
                h = h + l.clone();
            }
            let ut = u
                .as_ref()
                .map(|u| u.clone().narrow(1, t, 1).reshape([n, self.inputs])); // [n, inputs]
            if let (Some(v), Some(ut)) = (&self.input_drive, &ut) {
                h = h + v.forward(ut.clone());
            }
            let mut skip: Option<Tensor<2>> = None;
            for (layer, past) in self.layers.iter().zip(history.iter_mut()) {
                past.push_back(h.clone());
                let then = if past.len() > layer.dilation {
                    past.pop_front().unwrap_or_else(|| zeros.clone())
                } else {
                    zeros.clone()
                };
                let drive = layer.drive_term(ut.clone()); // [n, 2 · residual]
                let (next, s) = layer.forward(then, h, drive, r); // [n, residual], [n, skip]
                h = next;
                skip = Some(add_skip(skip, s));
            }
            let params = self.head(skip.expect("at least one layer (checked)"));
            let zt = z.clone().narrow(1, t, 1).reshape([n, c, k]);
            prev = self.as_data(self.draw(params, zt));
            out.push(prev.clone().reshape([n, c, 1]));
        }
        Tensor::cat(out, 2)
    }

    /// Ancestral sampling by re-running the whole network for each step (what
    /// [`sample_cached`](Self::sample_cached) must equal).
    ///
    /// # Shapes
    /// - as [`sample_cached`](Self::sample_cached)
    pub fn sample_naive(
        &self,
        z: Tensor<2>,
        y: Option<Tensor<2>>,
        u: Option<Tensor<3>>,
        length: usize,
    ) -> Tensor<3> {
        let [n, _] = z.dims();
        let (c, k) = (self.channels, self.noise_per_value());
        let device = z.device();
        let z = z.reshape([n, length, c, k]);
        let u = self.inputs_or_zeros(u, n, length, &device);
        let mut x = Tensor::<3>::zeros([n, c, length], &device);
        for t in 0..length {
            let params = self.forward(x.clone(), y.clone(), u.clone()); // [n, length, c·params]
            let p = params
                .narrow(1, t, 1)
                .reshape([n, c * self.params_per_channel()]);
            let v = self.as_data(self.draw(p, z.clone().narrow(1, t, 1).reshape([n, c, k])));
            x = x.slice_assign([0..n, 0..c, t..t + 1], v.reshape([n, c, 1]));
        }
        x
    }
}

impl Layer {
    /// The inputs' term in this layer's pre-activations, `[…, 2 · residual]` from `[…,
    /// inputs]`; `None` for a model without inputs.
    fn drive_term<const D: usize>(&self, u: Option<Tensor<D>>) -> Option<Tensor<D>> {
        Some(self.drive.as_ref()?.forward(u?))
    }

    /// One gated layer on the residual stream `h` and its value `dilation` steps back, `then`
    /// (both `[…, residual]`, time-major or one step), plus the inputs' term `drive`: the new
    /// stream and the layer's skip.
    fn forward<const D: usize>(
        &self,
        then: Tensor<D>,
        h: Tensor<D>,
        drive: Option<Tensor<D>>,
        r: usize,
    ) -> (Tensor<D>, Tensor<D>) {
        let mut pre = self.taps.forward(Tensor::cat(vec![then, h.clone()], D - 1));
        if let Some(d) = drive {
            pre = pre + d;
        }
        let z = gate(pre, r);
        let s = self.skip.forward(z.clone());
        (h + self.residual.forward(z), s)
    }
}

/// Parameters per channel and step for `components` Gaussians (0: Poisson): a log-rate; a
/// mean and log σ; or weights, means and log σ.
fn params_per_channel(components: usize) -> usize {
    match components {
        0 => 1,
        1 => 2,
        k => 3 * k,
    }
}

/// The running sum of the layers' skips.
fn add_skip<const D: usize>(acc: Option<Tensor<D>>, s: Tensor<D>) -> Tensor<D> {
    match acc {
        Some(acc) => acc + s,
        None => s,
    }
}

/// `tanh(filter) ⊙ σ(gate)` of `[…, 2r]` pre-activations (filter first, last axis).
fn gate<const D: usize>(pre: Tensor<D>, r: usize) -> Tensor<D> {
    tanh(pre.clone().narrow(D - 1, 0, r)) * sigmoid(pre.narrow(D - 1, r, r))
}

/// A mixture's logits, means and log σ from `[…, 3k]` parameters (in that order).
fn split_mixture(p: Tensor<4>, k: usize) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    (
        p.clone().narrow(3, 0, k),
        p.clone().narrow(3, k, k),
        p.narrow(3, 2 * k, k),
    )
}

/// `log Σ_k exp(x)` over the last axis, dropped.
fn log_sum_exp(x: Tensor<4>) -> Tensor<3> {
    let [b, t, c, _] = x.dims();
    let max = x.clone().max_dim(3).detach();
    ((x - max.clone()).exp().sum_dim(3).log() + max).reshape([b, t, c])
}

/// The Poisson(`rate`) quantile of `u`: the number of k ≥ 0 with F(k) < u, up to
/// [`MAX_COUNT`] (64 counts per bin: far above any firing rate these models see per bin).
///
/// # Shapes
/// - `rate`, `u`: `[n, c]` → `[n, c]`
fn poisson_quantile(rate: Tensor<2>, u: Tensor<2>) -> Tensor<2> {
    // Φ(z) rounds to 1 in f32 for z > 5.3; kept below the CDF's f32 sum at large k.
    let u = u.clamp_max(0.999_99);
    let mut p = rate.clone().neg().exp(); // P(0)
    let mut cdf = p.clone();
    let mut count = cdf.clone().lower(u.clone()).float();
    for k in 1..MAX_COUNT {
        p = p * rate.clone().div_scalar(k as f32);
        cdf = cdf + p.clone();
        count = count + cdf.clone().lower(u.clone()).float();
    }
    count
}

impl GenerativeModel for WaveNet {
    fn loss(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        _noise: Tensor<2>,
        _ctx: &LossContext,
    ) -> Loss {
        let (x, u) = self.split(x);
        let [b, c, t] = x.dims();
        let params = self.forward(x.clone(), y, u);
        let nll = self.nll_elements(x, params); // [batch, channels, time]
                                                // W6's loss: the mean per value; the per-window sum is what other families report.
        let mean = nll.clone().mean();
        let per_window = nll.sum().div_scalar(b as f32);
        let bits = per_window
            .clone()
            .div_scalar((c * t) as f32 * std::f32::consts::LN_2);
        Loss {
            total: mean.clone(),
            terms: vec![
                ("nll_per_value", mean),
                ("nll", per_window),
                ("bits_per_dim", bits),
            ],
            stats: vec![],
        }
    }

    fn loss_noise_dim(&self) -> usize {
        // Teacher forcing draws nothing; one value keeps the host noise stream shaped.
        1
    }
}

impl Sampler for WaveNet {
    fn noise_dim(&self) -> usize {
        self.channels * (self.burn_in + self.time) * self.noise_per_value()
    }

    fn classes(&self) -> usize {
        self.embed.as_ref().map_or(0, LabelEmbedding::classes)
    }

    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation {
        Observation::Point {
            values: crate::Sequence::generate_length(self, z, y, self.time),
        }
    }

    fn driven(&self) -> Option<&dyn Driven> {
        (self.inputs > 0).then_some(self as &dyn Driven)
    }

    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }

    fn sequence(&self) -> Option<&dyn crate::Sequence> {
        Some(self)
    }
}

/// The exact log-likelihood.
impl Density for WaveNet {
    fn bound(&self, _k: usize) -> String {
        "exact".into()
    }

    fn score_noise(&self, _k: usize) -> (usize, usize) {
        (1, 1)
    }

    fn score_batch(&self, _k: usize) -> usize {
        64
    }

    fn log_likelihood(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        _noise: Tensor<3>,
    ) -> Result<(Tensor<1>, Option<Tensor<1>>), ModelError> {
        let [b, _, _] = x.dims();
        let steps = self.log_likelihood_steps(x, y); // [batch, time]
        Ok((steps.sum_dim(1).reshape([b]), None))
    }

    fn log_likelihood_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Option<Tensor<3>> {
        Some(WaveNet::log_likelihood_elements(self, x, y))
    }

    fn factorises(&self) -> bool {
        true
    }

    fn residual_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Option<Tensor<3>> {
        WaveNet::residual_elements(self, x, y)
    }

    fn gives_residuals(&self) -> bool {
        self.components > 0
    }
}

/// Recordings of any length, continued step by step.
impl crate::Sequence for WaveNet {
    fn noise_per_step(&self) -> usize {
        self.channels * self.noise_per_value()
    }

    fn receptive_field(&self) -> usize {
        WaveNet::receptive_field(self)
    }

    fn burn_in(&self) -> usize {
        self.burn_in
    }

    fn generate_length(&self, z: Tensor<2>, y: Option<Tensor<2>>, length: usize) -> Tensor<3> {
        let x = self.sample_cached(z, y, None, self.burn_in + length); // [n, channels, burn_in + length]
        if self.burn_in == 0 {
            x
        } else {
            x.narrow(2, self.burn_in, length)
        }
    }
}

/// The response to a stimulus, as long as the stimulus.
impl Driven for WaveNet {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn driven_noise(&self, length: usize) -> usize {
        self.channels * self.noise_per_value() * length
    }

    fn generate_driven(&self, z: Tensor<2>, y: Option<Tensor<2>>, u: Tensor<3>) -> Observation {
        let length = u.dims()[2];
        Observation::Point {
            values: self.sample_cached(z, y, Some(u), length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::host;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    fn shape(channels: usize, time: usize) -> WindowShape {
        WindowShape {
            inputs: 0,
            channels,
            time,
            sfreq: 100.0,
            classes: 0,
        }
    }

    fn small(mixture: usize) -> WaveNetConfig {
        WaveNetConfig {
            residual: 8,
            skip: 8,
            dilations: vec![1, 2, 4],
            mixture,
            ..Default::default()
        }
    }

    #[test]
    fn a_change_at_t_changes_no_output_before_t_plus_one() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 1);
        for (mixture, kind) in [
            (1, SignalKind::Continuous),
            (3, SignalKind::Continuous),
            (1, SignalKind::Counts),
        ] {
            let m = small(mixture).init(shape(2, 12), kind, &d);
            let x = Tensor::<3>::random([1, 2, 12], Distribution::Uniform(0.0, 3.0), &d).floor();
            let base = host(m.forward(x.clone(), None, None));
            let per_step = base.len() / 12;
            for t in [0, 5, 11] {
                let bumped = x
                    .clone()
                    .slice_assign([0..1, 1..2, t..t + 1], Tensor::full([1, 1, 1], 7.0, &d));
                let out = host(m.forward(bumped, None, None));
                for s in 0..12 {
                    let same =
                        (0..per_step).all(|j| base[s * per_step + j] == out[s * per_step + j]);
                    if s <= t {
                        assert!(same, "step {s} moved after a change at {t} ({kind:?})");
                    } else if s == t + 1 {
                        assert!(!same, "step {s} must see the change at {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_input_at_t_moves_outputs_from_t_on_and_cached_sampling_follows_it() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 5);
        let shape = WindowShape {
            inputs: 2,
            ..shape(2, 12)
        };
        let m = small(1).init(shape, SignalKind::Continuous, &d);
        let x = Tensor::<3>::random([1, 4, 12], Distribution::Normal(0.0, 1.0), &d);
        let params = |x: Tensor<3>| {
            let (data, u) = m.split(x);
            host(m.forward(data, None, u))
        };
        let base = params(x.clone());
        let per_step = base.len() / 12;
        for t in [0, 6, 11] {
            // Input 1 (channel 3 of the batch) changes at t.
            let bumped = x
                .clone()
                .slice_assign([0..1, 3..4, t..t + 1], Tensor::full([1, 1, 1], 5.0, &d));
            let out = params(bumped);
            // Every lag within the receptive field (8 steps), as the data's.
            for s in 0..12 {
                let same = (0..per_step).all(|j| base[s * per_step + j] == out[s * per_step + j]);
                assert_eq!(
                    same,
                    s < t || s >= t + 8,
                    "step {s} after an input change at {t}"
                );
            }
        }
        // The likelihood reads the data channels only: [batch, 2 + 2, time] scores 2 channels.
        let steps = m.log_likelihood_steps(x, None);
        assert_eq!(steps.dims(), [1, 12]);
        // Driven sampling: cached equals naive, and the inputs change the samples.
        let z = Tensor::<2>::random([3, 12 * 2], Distribution::Normal(0.0, 1.0), &d);
        let u = Tensor::<3>::random([3, 2, 12], Distribution::Normal(0.0, 1.0), &d);
        let fast = host(m.sample_cached(z.clone(), None, Some(u.clone()), 12));
        let slow = host(m.sample_naive(z.clone(), None, Some(u.clone()), 12));
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
        }
        let Observation::Point { values } = m.generate_driven(z.clone(), None, u) else {
            panic!("a WaveNet draws points");
        };
        assert_eq!(host(values), fast);
        let held = host(m.sample_cached(z, None, None, 12));
        assert_ne!(held, fast, "inputs held at 0 differ from the drawn inputs");
    }

    #[test]
    fn the_exact_likelihood_is_the_sum_of_per_step_gaussian_densities() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 2);
        let m = small(1).init(shape(2, 10), SignalKind::Continuous, &d);
        let x = Tensor::<3>::random([3, 2, 10], Distribution::Normal(0.0, 1.0), &d);
        let params = host(m.forward(x.clone(), None, None)); // [3, 10, 2·2]
        let xs = host(x.clone());
        let mut want = [0.0f64; 3];
        for (b, w) in want.iter_mut().enumerate() {
            for t in 0..10 {
                for c in 0..2 {
                    let p = &params[((b * 10 + t) * 2 + c) * 2..];
                    let (mean, log_sigma) = (p[0], p[1]);
                    let v = xs[(b * 2 + c) * 10 + t];
                    let z = (v - mean) / log_sigma.exp();
                    *w += -0.5 * z * z - log_sigma - 0.5 * (2.0 * std::f64::consts::PI).ln();
                }
            }
        }
        let noise = Tensor::zeros([1, 3, 1], &d);
        let (got, _) = Density::log_likelihood(&m, x, None, noise).unwrap();
        for (g, w) in host(got).iter().zip(want) {
            assert!((g - w).abs() < 1e-4 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn cached_sampling_draws_what_naive_sampling_draws() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 3);
        let gaussian = Some(Likelihood::Gaussian);
        for (mixture, kind, likelihood) in [
            (1, SignalKind::Continuous, None),
            (3, SignalKind::Continuous, None),
            (1, SignalKind::Counts, None),
            (2, SignalKind::Counts, gaussian),
        ] {
            let cfg = WaveNetConfig {
                likelihood,
                ..small(mixture)
            };
            let m = cfg.init(shape(3, 16), kind, &d);
            let z = Tensor::<2>::random(
                [4, 16 * 3 * m.noise_per_value()],
                Distribution::Normal(0.0, 1.0),
                &d,
            );
            let fast = host(m.sample_cached(z.clone(), None, None, 16));
            let slow = host(m.sample_naive(z, None, None, 16));
            for (a, b) in fast.iter().zip(&slow) {
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "{a} vs {b} ({kind:?}, mixture {mixture})"
                );
            }
            if kind == SignalKind::Counts {
                assert!(fast.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
            }
        }
    }

    #[test]
    fn burn_in_keeps_the_tail_of_a_longer_draw_and_the_windows_start_from_a_past() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 5);
        let (c, t, b) = (3, 16, 24);
        for (mixture, kind) in [(1, SignalKind::Continuous), (1, SignalKind::Counts)] {
            let plain = small(mixture).init(shape(c, t), kind, &d);
            let burnt = WaveNetConfig {
                burn_in: b,
                ..small(mixture)
            }
            .init(shape(c, t), kind, &d)
            .load_record(plain.clone().into_record());
            let k = plain.noise_per_value();
            assert_eq!(burnt.noise_dim(), c * (b + t) * k);
            let z = Tensor::<2>::random([4, burnt.noise_dim()], Distribution::Normal(0.0, 1.0), &d);
            let Observation::Point { values } = burnt.generate(z.clone(), None) else {
                panic!("a WaveNet draws points")
            };
            let kept = host(values);
            let whole = host(
                plain
                    .sample_cached(z.clone(), None, None, b + t)
                    .narrow(2, b, t),
            );
            assert_eq!(kept, whole, "{kind:?}: the last {t} of {} steps", b + t);
            // The same noise for the kept steps, but from an empty past: another window (an
            // untrained Poisson head's rates barely move with the past, so its integer
            // quantiles can coincide).
            if kind == SignalKind::Continuous {
                let tail = z
                    .reshape([4, b + t, c * k])
                    .narrow(1, b, t)
                    .reshape([4, t * c * k]);
                let fresh = host(plain.sample_cached(tail, None, None, t));
                assert_ne!(kept, fresh);
            }
            let longer = host(crate::Sequence::generate_length(
                &burnt,
                Tensor::<2>::random([4, c * (b + 2 * t) * k], Distribution::Normal(0.0, 1.0), &d),
                None,
                2 * t,
            ));
            assert_eq!(longer.len(), 4 * c * 2 * t);
        }
    }

    #[test]
    fn the_residuals_of_the_model_s_own_samples_are_the_noise_it_drew_or_white_normals() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 11);
        let (n, c, t) = (48, 3, 64);
        for mixture in [1, 3] {
            let m = small(mixture).init(shape(c, t), SignalKind::Continuous, &d);
            let k = m.noise_per_value();
            let z = Tensor::<2>::random([n, t * c * k], Distribution::Normal(0.0, 1.0), &d);
            let x = m.sample_cached(z.clone(), None, None, t);
            let r = host(m.residual_elements(x, None).expect("continuous"));
            if mixture == 1 {
                // One Gaussian: x = μ + σ z, so the residual is the very z ([n, t, c] drawn).
                let z = host(z.reshape([n, t, c]).swap_dims(1, 2));
                for (a, b) in r.iter().zip(&z) {
                    assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{a} vs {b}");
                }
            } else {
                // A mixture's PIT of its own draws is uniform: residuals N(0, 1) and white.
                let len = r.len() as f64;
                let mean = r.iter().sum::<f64>() / len;
                let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len;
                let lag1 = (0..n * c)
                    .flat_map(|row| (1..t).map(move |s| row * t + s))
                    .map(|i| r[i] * r[i - 1])
                    .sum::<f64>()
                    / (n * c * (t - 1)) as f64;
                assert!(mean.abs() < 0.05, "mean {mean}");
                assert!((var.sqrt() - 1.0).abs() < 0.05, "sd {}", var.sqrt());
                assert!(lag1.abs() < 0.05, "lag-1 autocovariance {lag1}");
            }
        }
        let counts = small(1).init(shape(c, t), SignalKind::Counts, &d);
        let x = Tensor::<3>::zeros([1, c, t], &d);
        assert!(counts.residual_elements(x, None).is_none());
    }

    #[test]
    fn the_poisson_quantile_inverts_the_cdf() {
        let d = Device::flex();
        let rate = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.5, 3.0, 3.0], [1, 4]), &d);
        // F(0) = 0.607 at rate 0.5; F(2) = 0.423, F(3) = 0.647 at rate 3.
        let u = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, 0.7, 0.5, 0.65], [1, 4]), &d);
        assert_eq!(host(poisson_quantile(rate, u)), vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn loss_falls_on_a_tiny_batch_and_the_receptive_field_is_reported() {
        let ad = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&ad, 4);
        assert_eq!(WaveNetConfig::default().receptive_field(), 256);
        let mut m = small(2).init(shape(2, 32), SignalKind::Continuous, &ad);
        assert_eq!(m.receptive_field(), 8);
        // A slow sine per channel: predictable from its past.
        let v: Vec<f32> = (0..4 * 2 * 32)
            .map(|i| ((i % 32) as f32 * 0.4 + (i / 32) as f32).sin())
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(v, [4, 2, 32]), &ad);
        let noise = Tensor::zeros([4, 1], &ad);
        let ctx = LossContext {
            kl_warmup: 1.0,
            training: false,
        };
        let mut optim = AdamConfig::new().init();
        let first = host(m.loss(x.clone(), None, noise.clone(), &ctx).total)[0];
        for _ in 0..60 {
            let loss = m.loss(x.clone(), None, noise.clone(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &m);
            m = optim.step(3e-3, m, grads);
        }
        let last = host(m.loss(x, None, noise, &ctx).total)[0];
        assert!(last < first - 0.5, "{first} → {last}");
    }
}
