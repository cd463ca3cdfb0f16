//! Latent ODE (Rubanova, Chen & Duvenaud 2019): a recognition network reads a window backwards
//! in time to a posterior over the initial latent state `z0`; an MLP vector field carries `z0`
//! through time with [`odeint`]; a linear readout gives the observation model at every sample.
//!
//! Observations may be missing: each window has its own mask over the time grid (NaN samples
//! are missing, and `obs_keep < 1` hides a random subset of each training window, drawn by the
//! caller like all randomness). The encoder reads only observed samples; the likelihood counts
//! only observed samples. In extrapolation mode the encoder sees the first part of each window
//! only and the model forecasts the rest; the forecast error is reported as its own terms.
//!
//! **Exogenous inputs** (`[data] inputs`, LFADS's external inputs) enter as in a state-space
//! model `dz/dt = f(z, e, u(t))`, `out_t = C z_t + D u_t`: the vector field reads the inputs at
//! time t (linear between samples, so adaptive solvers see a continuous field) for their lagged
//! effects through the dynamics, and a feedthrough `D` gives their immediate effect on the
//! observation, which the dynamics could only reach by moving z within one sample (a slow,
//! seed-dependent thing to learn). The encoder reads the data alone. A new stimulus of any
//! length gives the response to it ([`Driven`]).

use crate::activation::sigmoid;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use neurogen_data::SignalKind;
use serde::{Deserialize, Serialize};

use crate::activation::logistic_tanh as tanh;
use crate::condition::{self, LabelEmbedding};
use crate::likelihood::{
    bounds, elbo_elements, elbo_loss, posterior_draws, prior_draw, prior_kl, repeat_draws,
    sum_window, LearnedPrior, Likelihood, ObservationHead, Prior,
};
use crate::ode::{odeint, OdeError, OdeOptions, OdeStats, Solver, VectorField};
use crate::{
    Density, Driven, Encode, FamilyConfig, GenerativeModel, Loss, LossContext, ModelError,
    ModelFamily, Observation, Sampler, WindowShape,
};

/// How the recognition network reads a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoder {
    /// A GRU run backwards in time over the observed samples.
    Rnn,
    /// ODE-RNN: between observations the hidden state follows its own learned ODE.
    Odernn,
}

/// `[model] kind = "latent_ode"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatentOdeConfig {
    /// Dimension of the latent state.
    pub latent_dim: usize,
    /// `rnn` or `odernn`.
    pub encoder: Encoder,
    /// GRU hidden size of the encoder.
    pub rnn_hidden: usize,
    /// Hidden sizes of the dynamics MLP (tanh).
    pub hidden: Vec<usize>,
    /// `euler`, `midpoint`, `rk4` or `dopri5`.
    pub solver: Solver,
    /// Fixed-step solvers: largest step in ODE time; default one step per sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// dopri5 relative tolerance.
    pub rtol: f64,
    /// dopri5 absolute tolerance.
    pub atol: f64,
    /// dopri5 step limit per solve.
    pub max_steps: usize,
    /// ODE time units per second of signal.
    pub time_scale: f64,
    /// Observation model; default `poisson` for counts, `gaussian` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<Likelihood>,
    /// Gaussian σ (normalised units): fixed value or start of a learned per-channel σ.
    pub sigma: f64,
    /// Learn σ per channel.
    pub learn_sigma: bool,
    /// Final KL weight.
    pub beta: f64,
    /// Fraction of samples of each training window the model sees (1 = all); the rest are
    /// hidden from encoder and likelihood, a fresh random subset per window and step.
    pub obs_keep: f64,
    /// Fraction at the end of each window the encoder does not see (0 = reconstruct; 0.5 =
    /// encode the first half, forecast the second).
    pub extrapolate: f64,
    /// A conditional latent ODE: the label's embedding sets the encoder's initial state and is
    /// an input of the latent dynamics.
    pub conditional: bool,
    /// Size of the learned label embedding.
    pub embed_dim: usize,
    /// The prior of `z0`: `standard` N(0, I) or a `learned` diagonal Gaussian, which samples
    /// from where the posteriors are instead of where they were asked to be.
    #[serde(skip_serializing_if = "Prior::is_standard")]
    pub prior: Prior,
}

impl Default for LatentOdeConfig {
    fn default() -> Self {
        LatentOdeConfig {
            latent_dim: 16,
            encoder: Encoder::Rnn,
            rnn_hidden: 64,
            hidden: vec![64, 64],
            solver: Solver::Rk4,
            step: None,
            rtol: 1e-3,
            atol: 1e-4,
            max_steps: 2000,
            time_scale: 1.0,
            likelihood: None,
            sigma: 1.0,
            learn_sigma: true,
            beta: 1.0,
            obs_keep: 1.0,
            extrapolate: 0.0,
            conditional: false,
            embed_dim: crate::condition::default_embed_dim(),
            prior: Prior::Standard,
        }
    }
}

impl FamilyConfig for LatentOdeConfig {
    const KIND: &'static str = "latent_ode";
    const TAKES_INPUTS: bool = true;

    fn resolved(&self, kind: SignalKind) -> LatentOdeConfig {
        LatentOdeConfig {
            likelihood: Some(Likelihood::resolve(self.likelihood, kind)),
            ..self.clone()
        }
    }

    fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
        let bad = |key, message: String| Err(ModelError::Invalid { key, message });
        let positive = [
            ("latent_dim", self.latent_dim as f64),
            ("rnn_hidden", self.rnn_hidden as f64),
            ("rtol", self.rtol),
            ("atol", self.atol),
            ("max_steps", self.max_steps as f64),
            ("time_scale", self.time_scale),
            ("sigma", self.sigma),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, format!("must be positive, got {v}"));
            }
        }
        if let Some(s) = self.step {
            if !(s.is_finite() && s > 0.0) {
                return bad("step", format!("must be positive, got {s}"));
            }
        }
        if self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("layer sizes must be ≥ 1, got {:?}", self.hidden),
            );
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("beta", format!("must be ≥ 0, got {}", self.beta));
        }
        if !(self.obs_keep > 0.0 && self.obs_keep <= 1.0) {
            return bad(
                "obs_keep",
                format!("must lie in (0, 1], got {}", self.obs_keep),
            );
        }
        if !(0.0..1.0).contains(&self.extrapolate) {
            return bad(
                "extrapolate",
                format!("must lie in [0, 1), got {}", self.extrapolate),
            );
        }
        crate::condition::check(self.conditional, self.embed_dim)?;
        if self.likelihood == Some(Likelihood::GaussianAr1) {
            // Its samples may be missing (obs_keep, NaNs), and an AR(1) likelihood over gaps
            // needs the marginal across each gap, which this decoder does not compute.
            return bad(
                "likelihood",
                "\"gaussian_ar1\" is the VAE's; the latent ODE's observations may have gaps \
                 (obs_keep, NaNs), which its AR(1) chain does not bridge: use \"gaussian\""
                    .into(),
            );
        }
        Likelihood::check(self.likelihood, kind)
    }

    fn conditional(&self) -> bool {
        self.conditional
    }
}

impl ModelFamily for LatentOdeConfig {
    type Model = LatentOde;

    fn build(&self, shape: WindowShape, _kind: SignalKind, device: &Device) -> LatentOde {
        self.init(shape, device)
    }
}

impl LatentOdeConfig {
    /// Builds the model for windows of `shape` (a resolved config: see
    /// [`FamilyConfig::resolved`]).
    pub fn init(&self, shape: WindowShape, device: &Device) -> LatentOde {
        let (c, h, l) = (shape.channels, self.rnn_hidden, self.latent_dim);
        let obs = ObservationHead::new(self.likelihood, self.learn_sigma, c);
        let seen = ((shape.time as f64) * (1.0 - self.extrapolate)).round() as usize;
        let embed = condition::init(self.conditional, shape.classes, self.embed_dim, device);
        let e = embed.as_ref().map_or(0, LabelEmbedding::dim);
        LatentOde {
            gru: GruCell::init(2 * c, h, device),
            enc_dynamics: match self.encoder {
                Encoder::Odernn => Some(Dynamics::init(h, 0, &self.hidden, device)),
                Encoder::Rnn => None,
            },
            head: LinearConfig::new(h, 2 * l).init(device),
            dynamics: Dynamics::init(l, e + shape.inputs, &self.hidden, device),
            readout: LinearConfig::new(l, c).init(device),
            feedthrough: (shape.inputs > 0).then(|| {
                LinearConfig::new(shape.inputs, c)
                    .with_bias(false)
                    .init(device)
            }),
            log_sigma: obs.init_log_sigma(self.sigma, device),
            prior: (self.prior == Prior::Learned).then(|| LearnedPrior::init(l, device)),
            initial_state: (e > 0).then(|| LinearConfig::new(e, h).init(device)),
            embed,
            channels: c,
            inputs: shape.inputs,
            time: shape.time,
            latent_dim: l,
            dt: self.time_scale / shape.sfreq,
            seen: seen.clamp(1, shape.time),
            solver: self.solver,
            step: self.step.unwrap_or(0.0),
            rtol: self.rtol,
            atol: self.atol,
            max_steps: self.max_steps,
            obs,
            beta: self.beta as f32,
            obs_keep: self.obs_keep as f32,
        }
    }
}

/// A GRU cell with PyTorch's gate convention (reset gate applied to the hidden projection).
#[derive(Module, Debug)]
pub struct GruCell {
    input: Linear,
    hidden: Linear,
    size: usize,
}

impl GruCell {
    fn init(d_in: usize, size: usize, device: &Device) -> Self {
        GruCell {
            input: LinearConfig::new(d_in, 3 * size).init(device),
            hidden: LinearConfig::new(size, 3 * size).init(device),
            size,
        }
    }

    /// One update from a precomputed input projection `xi` `[batch, 3·size]`.
    fn step(&self, xi: Tensor<2>, h: Tensor<2>) -> Tensor<2> {
        let n = self.size;
        let hh = self.hidden.forward(h.clone()); // [batch, 3 * size]
        let r = sigmoid(xi.clone().narrow(1, 0, n) + hh.clone().narrow(1, 0, n));
        let u = sigmoid(xi.clone().narrow(1, n, n) + hh.clone().narrow(1, n, n));
        let cand = tanh(xi.narrow(1, 2 * n, n) + r * hh.narrow(1, 2 * n, n));
        let one_minus_u = u.clone().neg().add_scalar(1.0);
        one_minus_u * cand + u * h
    }
}

/// An autonomous MLP vector field with tanh activations.
#[derive(Module, Debug)]
pub struct Dynamics {
    layers: Vec<Linear>,
}

impl Dynamics {
    /// A field on `dim` dimensions that also reads `context` values (a label embedding).
    fn init(dim: usize, context: usize, hidden: &[usize], device: &Device) -> Self {
        let mut sizes = vec![dim + context];
        sizes.extend(hidden);
        sizes.push(dim);
        Dynamics {
            layers: sizes
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }
}

impl VectorField for Dynamics {
    fn eval(&self, _t: f64, y: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        self.layers.iter().enumerate().fold(y, |h, (i, l)| {
            let h = l.forward(h);
            if i < last {
                tanh(h)
            } else {
                h
            }
        })
    }
}

/// `f` driven by a label context held fixed along each trajectory and by exogenous inputs
/// read at time t: `f(z ⊕ e ⊕ u(t))`.
struct WithContext<'a> {
    f: &'a Dynamics,
    /// `[batch, context]`.
    e: Option<&'a Tensor<2>>,
    /// Inputs at the sample times `[batch, time, inputs]`, and the ODE time between samples.
    u: Option<(&'a Tensor<3>, f64)>,
}

impl VectorField for WithContext<'_> {
    fn eval(&self, t: f64, y: Tensor<2>) -> Tensor<2> {
        let mut parts = vec![y];
        parts.extend(self.e.cloned());
        if let Some((u, dt)) = self.u {
            parts.push(interpolate(u, t / dt));
        }
        self.f.eval(t, Tensor::cat(parts, 1))
    }
}

/// `u` at fractional sample index `pos`, linear between samples and held beyond the ends.
///
/// # Shapes
/// - `u`: `[batch, time, inputs]` → `[batch, inputs]`
fn interpolate(u: &Tensor<3>, pos: f64) -> Tensor<2> {
    let [b, t, k] = u.dims();
    let pos = pos.clamp(0.0, (t - 1) as f64);
    let i = (pos.floor() as usize).min(t - 1);
    let w = (pos - i as f64) as f32;
    let at = |j: usize| u.clone().narrow(1, j, 1).reshape([b, k]);
    if w <= 1e-6 || i + 1 >= t {
        at(i)
    } else {
        at(i).mul_scalar(1.0 - w) + at(i + 1).mul_scalar(w)
    }
}

/// The time-reversed field `-f`, so the encoder's ODE can run backwards with increasing time.
struct Reversed<'a>(&'a Dynamics);

impl VectorField for Reversed<'_> {
    fn eval(&self, t: f64, y: Tensor<2>) -> Tensor<2> {
        self.0.eval(t, y).neg()
    }
}

/// The latent ODE module.
#[derive(Module, Debug)]
pub struct LatentOde {
    gru: GruCell,
    enc_dynamics: Option<Dynamics>,
    head: Linear,
    dynamics: Dynamics,
    readout: Linear,
    /// The inputs' immediate effect on the readout (`D` of a state-space model).
    feedthrough: Option<Linear>,
    log_sigma: Param<Tensor<1>>,
    /// The learned prior of `z0` (`prior = "learned"`; N(0, I) without).
    prior: Option<LearnedPrior>,
    /// A conditional model's map from the label embedding to the encoder's initial state.
    initial_state: Option<Linear>,
    /// The label embedding of a conditional model.
    embed: Option<LabelEmbedding>,
    channels: usize,
    /// Exogenous input channels, after the data channels of a batch.
    inputs: usize,
    time: usize,
    latent_dim: usize,
    /// ODE time between samples.
    #[module(skip)]
    dt: f64,
    /// Samples the encoder may see (the rest is forecast).
    seen: usize,
    #[module(skip)]
    solver: Solver,
    #[module(skip)]
    step: f64,
    #[module(skip)]
    rtol: f64,
    #[module(skip)]
    atol: f64,
    max_steps: usize,
    #[module(skip)]
    obs: ObservationHead,
    beta: f32,
    obs_keep: f32,
}

/// Everything one pass computes, per window.
struct Pass {
    /// Observation NLL summed over observed samples, `[batch]`.
    nll: Tensor<1>,
    /// NLL and squared error summed over the forecast part (observed samples only), `[batch]`.
    forecast: Option<(Tensor<1>, Tensor<1>)>,
    mu: Tensor<2>,
    logvar: Tensor<2>,
    stats: OdeStats,
}

impl LatentOde {
    /// Dimension of the latent state `z0`.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// The ODE time of each of `length` samples.
    fn times(&self, length: usize) -> Vec<f64> {
        (0..length).map(|i| i as f64 * self.dt).collect()
    }

    /// A batch's data channels and (for a driven model) its inputs, time-major.
    fn split(&self, x: Tensor<3>) -> (Tensor<3>, Option<Tensor<3>>) {
        crate::split_inputs(x, self.channels, self.inputs)
    }

    /// A driven model's inputs held at 0 (their training mean when normalised) for `n` windows
    /// of `length`;
    /// `None` for a model without inputs.
    fn zero_inputs(&self, n: usize, length: usize, device: &Device) -> Option<Tensor<3>> {
        (self.inputs > 0).then(|| Tensor::zeros([n, length, self.inputs], device))
    }

    fn ode_opts(&self) -> OdeOptions {
        OdeOptions {
            step: (self.step > 0.0).then_some(self.step),
            rtol: self.rtol,
            atol: self.atol,
            max_steps: self.max_steps,
        }
    }

    /// The label embedding of a conditional model, `[batch, embed_dim]`.
    fn context(&self, y: Option<Tensor<2>>, batch: usize, device: &Device) -> Option<Tensor<2>> {
        condition::embed(&self.embed, y, batch, device)
    }

    /// Posterior mean and log-variance of `z0` from the observed samples of `x` (all of them:
    /// see `encode_seen` for the part the model was trained to see); a conditional model's
    /// encoder starts from a state set by the label's embedding `e`.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` (missing samples zeroed); `mask`: `[batch, time]` (1 =
    ///   observed); `e`: `[batch, embed_dim]` → (`[batch, latent]`, `[batch, latent]`)
    pub fn encode(
        &self,
        x: Tensor<3>,
        mask: Tensor<2>,
        e: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Tensor<2>, OdeStats), OdeError> {
        let [b, c, t] = x.dims();
        let x = self.obs.encoder_input(x);
        // Input at each time: the sample and its mask, so "zero" and "missing" differ.
        let m3 = mask.clone().reshape([b, 1, t]); // [batch, 1, time]
        let inp = Tensor::cat(vec![x, m3.expand([b, c, t])], 1).swap_dims(1, 2); // [batch, time, 2c]
        let proj = self.gru.input.forward(inp); // [batch, time, 3h]
        let mut h = match (&self.initial_state, e) {
            (Some(w), Some(e)) => tanh(w.forward(e)),
            _ => Tensor::zeros([b, self.gru.size], &mask.device()),
        }; // [batch, hidden]
        let mut stats = OdeStats::default();
        for i in (0..t).rev() {
            // ODE-RNN: evolve h back over the interval to the previous sample first.
            if let (Some(f), true) = (&self.enc_dynamics, i + 1 < t) {
                let (mut hs, s) = odeint(
                    &Reversed(f),
                    h,
                    &[0.0, self.dt],
                    self.solver,
                    &self.ode_opts(),
                )?;
                h = hs.pop().ok_or(OdeError::BadTimes(vec![]))?;
                stats.add(s);
            }
            let xi = proj.clone().narrow(1, i, 1).reshape([b, 3 * self.gru.size]);
            let m = mask.clone().narrow(1, i, 1); // [batch, 1]
            let updated = self.gru.step(xi, h.clone());
            h = updated * m.clone() + h * m.neg().add_scalar(1.0);
        }
        let out = self.head.forward(h); // [batch, 2 * latent]
        let l = self.latent_dim;
        Ok((
            out.clone().narrow(1, 0, l),
            out.narrow(1, l, l).clamp(-12.0, 8.0),
            stats,
        ))
    }

    /// [`encode`](Self::encode) on the samples the encoder sees: the first `seen` (all but the
    /// forecast part in extrapolation mode).
    fn encode_seen(
        &self,
        x: Tensor<3>,
        mask: Tensor<2>,
        e: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Tensor<2>, OdeStats), OdeError> {
        let seen = self.seen.min(x.dims()[2]);
        self.encode(x.narrow(2, 0, seen), mask.narrow(1, 0, seen), e)
    }

    /// The latent trajectory from `z0` (driven by the label embedding `e` of a conditional
    /// model and the inputs `u` of a driven one), at every sample time: the window's, or as
    /// many as `u` has.
    ///
    /// # Shapes
    /// - `z0`: `[batch, latent]`; `e`: `[batch, embed_dim]`; `u`: `[batch, length, inputs]` →
    ///   `[batch, length, latent]`
    pub fn latent_path(
        &self,
        z0: Tensor<2>,
        e: Option<&Tensor<2>>,
        u: Option<&Tensor<3>>,
    ) -> Result<(Tensor<3>, OdeStats), OdeError> {
        let length = u.map_or(self.time, |u| u.dims()[1]);
        let (times, opts) = (self.times(length), self.ode_opts());
        let (zs, stats) = if e.is_some() || u.is_some() {
            let f = WithContext {
                f: &self.dynamics,
                e,
                u: u.map(|u| (u, self.dt)),
            };
            odeint(&f, z0, &times, self.solver, &opts)?
        } else {
            odeint(&self.dynamics, z0, &times, self.solver, &opts)?
        };
        Ok((Tensor::stack(zs, 1), stats))
    }

    /// Posterior mean of `z0` for fully observed windows (of conditions `y`), the encoder
    /// seeing what it saw in training, and the label embedding it used.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]` → `[batch, latent]`
    pub fn posterior_mean(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Option<Tensor<2>>), OdeError> {
        let (x, _) = self.split(x);
        let e = self.context(y, x.dims()[0], &x.device());
        let (xo, mask) = self.observed(x, None);
        Ok((self.encode_seen(xo, mask, e.clone())?.0, e))
    }

    /// Decoder output at every sample: Gaussian means or Poisson log-rates.
    ///
    /// # Shapes
    /// - `z0`: `[batch, latent]`; `e`: `[batch, embed_dim]`; `u`: `[batch, length, inputs]` →
    ///   `[batch, channels, length]` (`length`: the window's without `u`)
    pub fn decode(
        &self,
        z0: Tensor<2>,
        e: Option<&Tensor<2>>,
        u: Option<&Tensor<3>>,
    ) -> Result<(Tensor<3>, OdeStats), OdeError> {
        let (z, stats) = self.latent_path(z0, e, u)?; // [batch, length, latent]
        let mut out = self.readout.forward(z); // [batch, length, channels]
        if let (Some(d), Some(u)) = (&self.feedthrough, u) {
            out = out + d.forward(u.clone());
        }
        let out = out.swap_dims(1, 2); // [batch, channels, length]
        Ok((self.obs.output(out), stats))
    }

    /// Per-element NLL of `x` under decoder output `out`, both `[n, channels, time]`.
    fn nll_elements(&self, x: Tensor<3>, out: Tensor<3>) -> Tensor<3> {
        self.obs.nll_elements(x, out, &self.log_sigma, None)
    }

    /// Observation mask `[batch, time]` (1 = observed), with NaNs zeroed in `x`. `keep` draws
    /// (standard normal, `[batch, time]`) hide samples whose Φ exceeds `obs_keep`.
    fn observed(&self, x: Tensor<3>, keep: Option<Tensor<2>>) -> (Tensor<3>, Tensor<2>) {
        let [b, _, t] = x.dims();
        let nan: Tensor<3, Bool> = x.clone().is_nan();
        let x = x.mask_fill(nan.clone(), 0.0);
        // A sample is observed when all its channels are present.
        let present = nan.bool_not().float().min_dim(1).reshape([b, t]); // [batch, time]
        let mask = match keep {
            Some(eps) if self.obs_keep < 1.0 => {
                let u = crate::likelihood::normal_cdf(eps);
                present * u.lower_elem(self.obs_keep).float()
            }
            _ => present,
        };
        (x, mask)
    }

    fn pass(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        eps: Tensor<2>,
        keep: Option<Tensor<2>>,
    ) -> Result<Pass, OdeError> {
        let (x, u) = self.split(x);
        let [b, c, t] = x.dims();
        let e = self.context(y, b, &x.device());
        let (x, mask) = self.observed(x, keep);
        let (mu, logvar, mut stats) = self.encode_seen(x.clone(), mask.clone(), e.clone())?;
        let z0 = mu.clone() + logvar.clone().mul_scalar(0.5).exp() * eps; // [batch, latent]
        let (out, s) = self.decode(z0, e.as_ref(), u.as_ref())?;
        stats.add(s);
        let elems = self.nll_elements(x.clone(), out.clone()); // [batch, channels, time]
        let m3 = mask.reshape([b, 1, t]).expand([b, c, t]);
        let masked = elems * m3.clone();
        let forecast = (self.seen < t).then(|| {
            let n = t - self.seen;
            let part = |v: Tensor<3>| v.narrow(2, self.seen, n);
            let mean = if self.obs.is_poisson() {
                out.exp()
            } else {
                out
            };
            let se = (part(mean) - part(x)).square() * part(m3);
            (sum_window(part(masked.clone())), sum_window(se))
        });
        Ok(Pass {
            nll: sum_window(masked),
            forecast,
            mu,
            logvar,
            stats,
        })
    }

    fn split_noise(&self, noise: Tensor<2>) -> (Tensor<2>, Option<Tensor<2>>) {
        let l = self.latent_dim;
        let eps = noise.clone().narrow(1, 0, l);
        let keep = (self.obs_keep < 1.0).then(|| noise.narrow(1, l, self.time));
        (eps, keep)
    }

    /// Importance log-weights `ln p(x, z) − ln q(z | x)` for `k` posterior draws per window
    /// (every sample of the window observed, the encoder seeing what it saw in training).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `eps`: `[k, batch, latent]` →
    ///   `[k, batch]`
    pub fn log_weights(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        eps: Tensor<3>,
    ) -> Result<Tensor<2>, OdeError> {
        let [k, b, _] = eps.dims();
        let (elems, log_p_over_q) = self.draws_nll(x, y, eps)?;
        Ok((log_p_over_q - sum_window(elems)).reshape([k, b]))
    }

    /// For `k` posterior draws per window: each observed element's −log p(x_ct | z) (0 where
    /// missing) and `ln p(z) − ln q(z | x)`, draw-major.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels (+ inputs), time]`; `y`: `[batch, classes]`; `eps`: `[k, batch,
    ///   latent]` → (`[k·batch, channels, time]`, `[k·batch]`)
    fn draws_nll(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        eps: Tensor<3>,
    ) -> Result<(Tensor<3>, Tensor<1>), OdeError> {
        let [k, b, _] = eps.dims();
        let (x, u) = self.split(x);
        let [_, c, t] = x.dims();
        let e = self.context(y, b, &x.device());
        let (xo, mask) = self.observed(x, None);
        let (mu, logvar, _) = self.encode_seen(xo.clone(), mask.clone(), e.clone())?;
        let (z, log_p_over_q) = posterior_draws(mu, logvar, eps, self.prior.as_ref()); // [k * batch, latent], [k * batch]
        let e = e.map(|e| condition::repeat_rows(e, k)); // [k * batch, embed_dim]
        let u = u.map(|u| repeat_draws(u, k)); // [k * batch, time, inputs]
        let (out, _) = self.decode(z, e.as_ref(), u.as_ref())?;
        let m3 = mask.reshape([b, 1, t]).expand([b, c, t]);
        let elems = self.nll_elements(repeat_draws(xo, k), out) * repeat_draws(m3, k);
        Ok((elems, log_p_over_q))
    }
}

impl GenerativeModel for LatentOde {
    fn loss(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<2>,
        ctx: &LossContext,
    ) -> Loss {
        let device = x.device();
        let (eps, keep) = self.split_noise(noise);
        let pass = match self.pass(x, y, eps, keep) {
            Ok(p) => p,
            // A failed solve (too many steps, non-finite state) is a non-finite loss: the
            // trainer's checks see it, and the message is logged here.
            Err(e) => {
                warn_failed(&e);
                let nan = Tensor::<1>::full([1], f32::NAN, &device);
                return Loss {
                    total: nan.clone(),
                    terms: vec![("nll", nan.clone()), ("kl", nan.clone()), ("neg_elbo", nan)],
                    stats: vec![],
                };
            }
        };
        let kl = prior_kl(self.prior.as_ref(), pass.mu, pass.logvar); // [batch]
        let mut loss = elbo_loss(pass.nll, kl, self.beta * ctx.kl_warmup);
        if let Some((fnll, se)) = pass.forecast {
            loss.terms.push(("forecast_nll", fnll.mean()));
            let n = (self.channels * (self.time - self.seen)) as f32;
            loss.terms.push(("forecast_mse", se.mean().div_scalar(n)));
        }
        loss.stats.push(("nfe", pass.stats.nfe as f64));
        loss
    }
}

impl Sampler for LatentOde {
    fn noise_dim(&self) -> usize {
        if self.obs_keep < 1.0 {
            self.latent_dim + self.time
        } else {
            self.latent_dim
        }
    }

    fn classes(&self) -> usize {
        self.embed.as_ref().map_or(0, LabelEmbedding::classes)
    }

    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation {
        let z = z.narrow(1, 0, self.latent_dim);
        let n = z.dims()[0];
        let device = z.device();
        let u = self.zero_inputs(n, self.time, &device);
        self.respond(z, y, u)
    }

    fn driven(&self) -> Option<&dyn Driven> {
        (self.inputs > 0).then_some(self as &dyn Driven)
    }

    fn density(&self) -> Option<&dyn Density> {
        Some(self)
    }

    fn encoder(&self) -> Option<&dyn Encode> {
        Some(self)
    }
}

/// The IWAE bound with `k` importance samples over `z0`, and the ELBO.
impl Density for LatentOde {
    fn bound(&self, k: usize) -> String {
        format!("iwae_k={k}")
    }

    fn score_noise(&self, k: usize) -> (usize, usize) {
        (k, self.latent_dim)
    }

    fn log_likelihood(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Result<(Tensor<1>, Option<Tensor<1>>), ModelError> {
        let (elbo, iwae) = bounds(self.log_weights(x, y, noise)?);
        Ok((iwae, Some(elbo)))
    }

    fn bound_elements(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Option<Result<Tensor<3>, ModelError>> {
        let k = noise.dims()[0];
        Some(
            self.draws_nll(x, y, noise)
                .map(|(nll, lpq)| elbo_elements(nll.neg(), lpq, k))
                .map_err(ModelError::from),
        )
    }

    fn splits_bound(&self) -> bool {
        true
    }
}

/// The posterior mean of `z0` and the latent path it starts.
impl Encode for LatentOde {
    fn encode_mean(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Option<Tensor<3>>), ModelError> {
        let (_, u) = self.split(x.clone());
        let (mu, e) = self.posterior_mean(x, y)?;
        let (path, _) = self.latent_path(mu.clone(), e.as_ref(), u.as_ref())?; // [batch, time, latent]
        Ok((mu, Some(path)))
    }
}

impl LatentOde {
    /// The observation distribution from initial latents `z` `[n, latent]` (of labels `y`,
    /// driven by inputs `u` `[n, length, inputs]`); a failed solve gives NaNs (refused by the
    /// sampler's finiteness check) and a warning.
    fn respond(&self, z: Tensor<2>, y: Option<Tensor<2>>, u: Option<Tensor<3>>) -> Observation {
        let z = prior_draw(self.prior.as_ref(), z); // [n, latent]
        let n = z.dims()[0];
        let device = z.device();
        let length = u.as_ref().map_or(self.time, |u| u.dims()[1]);
        let e = self.context(y, n, &device);
        let out = self
            .decode(z, e.as_ref(), u.as_ref())
            .map(|(o, _)| o)
            .unwrap_or_else(|e| {
                warn_failed(&e);
                Tensor::full([n, self.channels, length], f32::NAN, &device)
            });
        self.obs.observation(out, &self.log_sigma, None)
    }
}

/// The response to a stimulus, as long as the stimulus: the latent path from a prior draw of
/// `z0`, driven by it.
impl Driven for LatentOde {
    fn inputs(&self) -> usize {
        self.inputs
    }

    fn driven_noise(&self, _length: usize) -> usize {
        self.latent_dim
    }

    fn generate_driven(&self, z: Tensor<2>, y: Option<Tensor<2>>, u: Tensor<3>) -> Observation {
        let z = z.narrow(1, 0, self.latent_dim);
        self.respond(z, y, Some(u.swap_dims(1, 2)))
    }
}

fn warn_failed(e: &OdeError) {
    tracing::warn!("latent ODE solve failed: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::host;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::{Distribution, TensorData};

    fn shape(t: usize) -> WindowShape {
        WindowShape {
            inputs: 0,
            channels: 2,
            time: t,
            sfreq: 10.0,
            classes: 0,
        }
    }

    /// Two-channel sinusoids with random phase: the dynamics a 2-D latent ODE can represent.
    fn waves(b: usize, t: usize, device: &Device) -> Tensor<3> {
        let mut v = Vec::with_capacity(b * 2 * t);
        for i in 0..b {
            let ph = i as f32 * 0.7;
            for c in 0..2 {
                for j in 0..t {
                    let s = j as f32 / 10.0 * 2.0 * std::f32::consts::PI * 0.8 + ph;
                    v.push(if c == 0 { s.sin() } else { s.cos() });
                }
            }
        }
        Tensor::from_data(TensorData::new(v, [b, 2, t]), device)
    }

    #[test]
    fn an_input_moves_the_latent_path_only_after_it_changes() {
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 6);
        let cfg = LatentOdeConfig {
            latent_dim: 3,
            rnn_hidden: 8,
            hidden: vec![16],
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let m = cfg.init(
            WindowShape {
                inputs: 1,
                ..shape(16)
            },
            &d,
        );
        let z0 = Tensor::<2>::random([2, 3], Distribution::Normal(0.0, 1.0), &d);
        let u = Tensor::<3>::zeros([2, 16, 1], &d); // [batch, time, inputs]
        let path = |u: &Tensor<3>| host(m.latent_path(z0.clone(), None, Some(u)).unwrap().0);
        let base = path(&u);
        // A step in the input at sample 8: linear between samples, so the field changes from
        // sample 7 on and the path from sample 8 on.
        let stepped = u
            .clone()
            .slice_assign([0..2, 8..16, 0..1], Tensor::ones([2, 8, 1], &d));
        let moved = path(&stepped);
        for b in 0..2 {
            for t in 0..16 {
                let at = |p: &[f64]| p[(b * 16 + t) * 3..(b * 16 + t + 1) * 3].to_vec();
                assert_eq!(at(&base) == at(&moved), t < 8, "window {b}, sample {t}");
            }
        }
        // A driven response is as long as its inputs, and a batch's inputs trail its channels.
        let z = Tensor::<2>::random([2, 3], Distribution::Normal(0.0, 1.0), &d);
        let Observation::Gaussian { mean, .. } =
            m.generate_driven(z, None, Tensor::zeros([2, 1, 40], &d))
        else {
            panic!("a Gaussian latent ODE");
        };
        assert_eq!(mean.dims(), [2, 2, 40]);
        let x = Tensor::cat(vec![waves(2, 16, &d), Tensor::zeros([2, 1, 16], &d)], 1);
        let (codes, path) = Encode::encode_mean(&m, x, None).unwrap();
        assert_eq!(codes.dims(), [2, 3]);
        assert_eq!(path.map(|p| p.dims()), Some([2, 16, 3]));
    }

    fn train(cfg: &LatentOdeConfig, steps: usize) -> (f32, f32, Loss) {
        let ad = Device::flex().autodiff();
        let _rng_lock = crate::test_util::seed(&ad, 9);
        let cfg = cfg.resolved(SignalKind::Continuous);
        let mut model = cfg.init(shape(20), &ad);
        let x = waves(8, 20, &ad);
        let noise =
            Tensor::<2>::random([8, model.noise_dim()], Distribution::Normal(0.0, 1.0), &ad);
        let ctx = LossContext {
            kl_warmup: 0.1,
            training: false,
        };
        let first = model
            .loss(x.clone(), None, noise.clone(), &ctx)
            .total
            .into_scalar::<f32>();
        let mut optim = AdamConfig::new().init();
        for _ in 0..steps {
            let loss = model.loss(x.clone(), None, noise.clone(), &ctx);
            let grads = GradientsParams::from_grads(loss.total.backward(), &model);
            model = optim.step(1e-2, model, grads);
        }
        let loss = model.loss(x, None, noise, &ctx);
        (first, loss.total.clone().into_scalar::<f32>(), loss)
    }

    #[test]
    fn loss_falls_on_a_tiny_batch_for_each_encoder_and_solver() {
        for (encoder, solver) in [
            (Encoder::Rnn, Solver::Rk4),
            (Encoder::Odernn, Solver::Euler),
            (Encoder::Rnn, Solver::Dopri5),
        ] {
            let cfg = LatentOdeConfig {
                latent_dim: 4,
                rnn_hidden: 16,
                hidden: vec![16],
                encoder,
                solver,
                rtol: 1e-2,
                atol: 1e-3,
                ..Default::default()
            };
            let (first, last, loss) = train(&cfg, 60);
            assert!(
                last < first - 0.2 * first.abs(),
                "{encoder:?}/{solver:?}: {first} -> {last}"
            );
            let nfe = loss
                .stats
                .iter()
                .find(|s| s.0 == "nfe")
                .map(|s| s.1)
                .unwrap();
            assert!(nfe >= 19.0, "{encoder:?}/{solver:?}: nfe {nfe}");
        }
    }

    #[test]
    fn masks_and_extrapolation_change_what_is_scored() {
        let cfg = LatentOdeConfig {
            latent_dim: 4,
            rnn_hidden: 8,
            hidden: vec![8],
            obs_keep: 0.5,
            extrapolate: 0.25,
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let d = Device::flex();
        // The device's generator is shared: every test that draws from it holds the lock, or
        // another test's seeded draws (and its loss trajectory) would change under it.
        let _rng_lock = crate::test_util::seed(&d, 10);
        let model = cfg.init(shape(20), &d);
        assert_eq!(model.noise_dim(), 4 + 20);
        assert_eq!(model.seen, 15);
        let x = waves(3, 20, &d);
        // All "keep" draws far below Φ⁻¹(0.5) = 0: everything observed; far above: nothing.
        let eps = Tensor::<2>::zeros([3, 4], &d);
        let all = model
            .pass(
                x.clone(),
                None,
                eps.clone(),
                Some(Tensor::full([3, 20], -5.0, &d)),
            )
            .unwrap();
        let none = model
            .pass(
                x.clone(),
                None,
                eps.clone(),
                Some(Tensor::full([3, 20], 5.0, &d)),
            )
            .unwrap();
        let nll_none: Vec<f32> = none.nll.into_data().try_to_vec().unwrap();
        assert!(nll_none.iter().all(|v| *v == 0.0), "{nll_none:?}");
        let (f_nll, f_se) = all.forecast.unwrap();
        let (f_nll, f_se): (Vec<f32>, Vec<f32>) = (
            f_nll.into_data().try_to_vec().unwrap(),
            f_se.into_data().try_to_vec().unwrap(),
        );
        assert!(f_nll.iter().all(|v| *v != 0.0) && f_se.iter().all(|v| *v > 0.0));
        // A NaN sample counts as missing: the NLL equals the one with that sample hidden by
        // the mask instead (window 0, time 3: channel 0's value is NaN).
        let mut v: Vec<f32> = x.clone().into_data().try_to_vec().unwrap();
        v[3] = f32::NAN;
        let with_nan = Tensor::<3>::from_data(TensorData::new(v, [3, 2, 20]), &d);
        let p = model.pass(with_nan, None, eps.clone(), None).unwrap();
        let nll: Vec<f32> = p.nll.into_data().try_to_vec().unwrap();
        let mut keep = vec![-5f32; 3 * 20];
        keep[3] = 5.0;
        let keep = Tensor::<2>::from_data(TensorData::new(keep, [3, 20]), &d);
        let hidden = model
            .pass(x.clone(), None, eps.clone(), Some(keep))
            .unwrap();
        let want: Vec<f32> = hidden.nll.into_data().try_to_vec().unwrap();
        let full: Vec<f32> = model
            .pass(x, None, eps, None)
            .unwrap()
            .nll
            .into_data()
            .try_to_vec()
            .unwrap();
        for (i, (a, b)) in nll.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "window {i}: {a} vs {b}");
        }
        // …and the sample did count before it went missing.
        assert!((nll[0] - full[0]).abs() > 1e-3, "{} vs {}", nll[0], full[0]);
    }

    #[test]
    fn a_learned_prior_starts_as_the_standard_normal_and_trains() {
        let base = LatentOdeConfig {
            latent_dim: 3,
            rnn_hidden: 8,
            hidden: vec![8],
            ..Default::default()
        };
        let learned = LatentOdeConfig {
            prior: Prior::Learned,
            ..base.clone()
        };
        // At initialisation the learned prior is N(0, I): same bound, same samples. (Weights
        // are drawn lazily, at first use, so each model is used before the next is seeded.)
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 1);
        let x = waves(4, 12, &d);
        let eps = Tensor::<3>::random([8, 4, 3], Distribution::Normal(0.0, 1.0), &d);
        let z = Tensor::<2>::random([3, 3], Distribution::Normal(0.0, 1.0), &d);
        let run = |cfg: &LatentOdeConfig| {
            d.seed(2);
            let m = cfg.resolved(SignalKind::Continuous).init(shape(12), &d);
            let lw = host(m.log_weights(x.clone(), None, eps.clone()).unwrap());
            let Observation::Gaussian { mean, .. } = m.generate(z.clone(), None) else {
                panic!("a Gaussian latent ODE");
            };
            (lw, host(mean))
        };
        let ((la, ma), (lb, mb)) = (run(&base), run(&learned));
        for (p, q) in la.iter().zip(&lb) {
            assert!((p - q).abs() < 1e-4 * p.abs().max(1.0), "{p} vs {q}");
        }
        assert_eq!(ma, mb);
        // And it trains: the loss falls on a tiny batch (`train` seeds and locks on its own).
        drop(_rng_lock);
        let (first, last, _) = train(&learned, 40);
        assert!(last < first - 0.1 * first.abs(), "{first} -> {last}");
    }

    #[test]
    fn iwae_bound_is_at_least_the_elbo_which_splits_over_elements() {
        let cfg = LatentOdeConfig {
            latent_dim: 3,
            rnn_hidden: 8,
            hidden: vec![8],
            ..Default::default()
        }
        .resolved(SignalKind::Continuous);
        let d = Device::flex();
        let _rng_lock = crate::test_util::seed(&d, 2);
        let model = cfg.init(shape(12), &d);
        let x = waves(4, 12, &d);
        let eps = Tensor::<3>::random([32, 4, 3], Distribution::Normal(0.0, 1.0), &d);
        let lw = model.log_weights(x.clone(), None, eps.clone()).unwrap();
        let (elbo, iwae) = crate::likelihood::bounds(lw);
        crate::test_util::check_bound_elements(&model, x, eps, elbo.clone(), true);
        let e: Vec<f32> = elbo.into_data().try_to_vec().unwrap();
        let i: Vec<f32> = iwae.into_data().try_to_vec().unwrap();
        for (e, i) in e.iter().zip(&i) {
            assert!(i >= e, "iwae {i} < elbo {e}");
        }
    }
}
