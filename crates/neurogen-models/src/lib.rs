//! The generative model families of neurogen and the blocks they share.
//!
//! The one design decision of this crate: **models never draw randomness themselves**. Every
//! random number a model consumes (the reparameterisation noise of a VAE, the latent of a
//! sample) is drawn on the host by the caller from a seeded `StdRng` and passed in as a tensor.
//! A run is therefore a pure function of its seed, resumes exactly at any step, and runs on
//! `ndarray`, `flex` and `wgpu` from the same noise.
//!
//! Each family lives in one file (`vae.rs`, …) and is built as in burn's examples:
//! config → `init(shape, &device)` → `loss` / `generate`. The file also implements the traits
//! through which the rest of neurogen uses it: [`FamilyConfig`] (and [`ModelFamily`]) on the
//! config, [`GenerativeModel`] and [`Sampler`] on the model, and the capabilities it has
//! ([`Density`], [`Encode`]).

pub mod activation;
pub mod condition;
pub mod conv;
pub mod diffusion;
pub mod flow;
pub mod gan;
pub mod latent_ode;
pub mod likelihood;
mod mlp;
pub mod ode;
pub mod spectral;
pub mod taps;
pub mod vae;
#[cfg(feature = "flex")]
mod vmath;
pub mod wavenet;

#[cfg(test)]
mod test_util {
    use burn::tensor::{Device, Tensor};
    use std::sync::{Mutex, MutexGuard};

    /// Seeds `device`'s random generator and holds it for the calling test: the generator is
    /// one per backend, so tests drawing from it in parallel would take each other's draws.
    /// Keep the guard until the test's last draw (weights are drawn lazily, at first use).
    pub(crate) fn seed(device: &Device, seed: u64) -> MutexGuard<'static, ()> {
        static RNG: Mutex<()> = Mutex::new(());
        let guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        guard
    }

    /// A tensor's values on the host, as f64.
    pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// Checks `m`'s [`Density::bound_elements`](crate::Density::bound_elements) on windows `x`
    /// (`[batch, channels, time]`) with score noise `noise`: the shares sum per window to
    /// `bound` (what the family's own bound computes with the same noise), and, with `spike`,
    /// a 12 sd spike added to one element of window 1 is where that window loses the most.
    pub(crate) fn check_bound_elements(
        m: &dyn crate::Density,
        x: Tensor<3>,
        noise: Tensor<3>,
        bound: Tensor<1>,
        spike: bool,
    ) {
        let [b, c, t] = x.dims();
        let shares = m
            .bound_elements(x.clone(), None, noise.clone())
            .expect("the bound splits")
            .unwrap();
        assert_eq!(shares.dims(), [b, c, t]);
        let (shares, bound) = (host(shares), host(bound));
        for (w, whole) in bound.iter().enumerate() {
            let sum: f64 = shares[w * c * t..(w + 1) * c * t].iter().sum();
            assert!(
                (sum - whole).abs() < 1e-4 * whole.abs().max(1.0),
                "window {w}: shares sum to {sum}, the bound is {whole}"
            );
        }
        if !spike {
            return;
        }
        let at = c * t - t / 2 - 1; // the last channel, mid-window
        let mut v = host(x.clone());
        v[c * t + at] += 12.0;
        let spiked = Tensor::<3>::from_data(
            burn::tensor::TensorData::new(v.iter().map(|v| *v as f32).collect(), [b, c, t]),
            &x.device(),
        );
        let shares = host(m.bound_elements(spiked, None, noise).unwrap().unwrap());
        let w1 = &shares[c * t..2 * c * t];
        let lowest = (0..c * t).min_by(|&i, &j| w1[i].total_cmp(&w1[j])).unwrap();
        assert_eq!(lowest, at, "the spike's share is the lowest of its window");
    }
}

pub use diffusion::{Diffusion, DiffusionConfig};
pub use flow::{RealNvp, RealNvpConfig, Transform};
pub use gan::{AdversarialConfig, Critic, GanConfig, GanLoss, Generator};
pub use latent_ode::{LatentOde, LatentOdeConfig};
pub use likelihood::{LearnedPrior, Likelihood, ObservationHead, Prior};
pub use mlp::{Mlp, MlpHead};
pub use ode::{odeint, OdeOptions, OdeStats, Solver, VectorField};
pub use vae::{Vae, VaeConfig};
pub use wavenet::{WaveNet, WaveNetConfig};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use neurogen_data::SignalKind;

/// The shape of one window a model is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowShape {
    /// Channels (neurons).
    pub channels: usize,
    /// Samples (bins).
    pub time: usize,
    /// Samples per second (time grids of the latent ODE).
    pub sfreq: f64,
    /// Conditions (label names) of the data; 0 for unlabelled data. A conditional model is
    /// built for this many labels.
    pub classes: usize,
    /// Exogenous input channels (`[data] inputs`) that follow the `channels` data channels in
    /// every batch `[batch, channels + inputs, time]`; 0 without inputs. Only families with
    /// [`FamilyConfig::TAKES_INPUTS`] are built with inputs.
    pub inputs: usize,
}

impl WindowShape {
    /// Values per window, `channels × time`.
    pub fn dim(&self) -> usize {
        self.channels * self.time
    }
}

impl From<&neurogen_data::SignalMeta> for WindowShape {
    fn from(meta: &neurogen_data::SignalMeta) -> Self {
        WindowShape {
            channels: meta.channels,
            time: meta.time,
            sfreq: meta.sfreq,
            classes: meta.label_names.len(),
            inputs: meta.input_names.len(),
        }
    }
}

/// A batch's data channels and its exogenous inputs, time-major (see [`WindowShape::inputs`]);
/// no inputs when `inputs` is 0.
///
/// # Shapes
/// - `x`: `[batch, channels + inputs, time]` → (`[batch, channels, time]`,
///   `[batch, time, inputs]`)
pub fn split_inputs(
    x: Tensor<3>,
    channels: usize,
    inputs: usize,
) -> (Tensor<3>, Option<Tensor<3>>) {
    if inputs == 0 {
        return (x, None);
    }
    let u = x.clone().narrow(1, channels, inputs).swap_dims(1, 2);
    (x.narrow(1, 0, channels), Some(u))
}

/// Errors from building a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A `[model]` key holds a value the model cannot use.
    #[error("[model] {key}: {message}")]
    Invalid {
        /// The key under `[model]`.
        key: &'static str,
        /// What was expected.
        message: String,
    },
    /// An ODE solve inside the model failed (too many steps, a non-finite state).
    #[error("the ODE solve failed: {0}")]
    Ode(#[from] ode::OdeError),
}

/// What one training step minimises, with its parts for logging.
#[derive(Debug, Clone)]
pub struct Loss {
    /// The scalar to minimise, `[1]`.
    pub total: Tensor<1>,
    /// Named parts (each `[1]`), e.g. `nll`, `kl`, `neg_elbo`.
    pub terms: Vec<(&'static str, Tensor<1>)>,
    /// Host-side figures of the step, e.g. the ODE solver's function evaluations `nfe`.
    pub stats: Vec<(&'static str, f64)>,
}

/// Step-dependent settings a loss needs (schedules live in the trainer, not the model).
#[derive(Debug, Clone, Copy)]
pub struct LossContext {
    /// KL warm-up factor in [0, 1]; the model multiplies it by its own β.
    pub kl_warmup: f32,
    /// A training step, not a validation or scoring pass: regularisers that only act in
    /// training (a flow's conditioner dropout) are on.
    pub training: bool,
}

/// The observation distribution a model decodes to; the caller draws from it on the host.
#[derive(Debug, Clone)]
// burn's Tensor is a large opaque value; one Observation exists per sampling call, so boxing
// would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Observation {
    /// Independent Gaussians: `mean` `[n, channels, time]`, `sigma` `[channels]`.
    Gaussian {
        /// Mean, `[n, channels, time]`.
        mean: Tensor<3>,
        /// Standard deviation per channel, `[channels]`.
        sigma: Tensor<1>,
    },
    /// Gaussian residuals around `mean` following a stationary AR(1) process along time per
    /// channel: r_0 = σ ε_0, r_t = φ r_{t−1} + σ √(1 − φ²) ε_t.
    GaussianAr1 {
        /// Mean, `[n, channels, time]`.
        mean: Tensor<3>,
        /// Marginal standard deviation per channel, `[channels]`.
        sigma: Tensor<1>,
        /// Lag-1 coefficient per channel, `[channels]`, |φ| < 1.
        phi: Tensor<1>,
    },
    /// Independent Poisson counts with `rate` `[n, channels, time]`.
    Poisson {
        /// Expected count per bin, `[n, channels, time]`.
        rate: Tensor<3>,
    },
    /// The samples themselves (flows and GANs map noise straight to data), `[n, channels, time]`.
    Point {
        /// The values.
        values: Tensor<3>,
    },
}

/// A family's `[model]` table: the config struct of one `kind`.
///
/// The registry in `neurogen-train` (the one place that names every family) dispatches to
/// these methods; a family implements them once, in its own file.
pub trait FamilyConfig: Clone {
    /// The `kind` that selects the family in TOML.
    const KIND: &'static str;

    /// Whether the family conditions on exogenous inputs (`[data] inputs`): its models read
    /// the trailing [`WindowShape::inputs`] channels of a batch as inputs and implement
    /// [`Driven`]. Other families are refused data with inputs.
    const TAKES_INPUTS: bool = false;

    /// A copy with data-dependent defaults filled in (e.g. the likelihood of count data).
    fn resolved(&self, kind: SignalKind) -> Self {
        let _ = kind;
        self.clone()
    }

    /// Checks the config against data of `kind`.
    fn check(&self, kind: SignalKind) -> Result<(), ModelError>;

    /// Whether `[model] conditional = true`: the run's labels are an input.
    fn conditional(&self) -> bool {
        false
    }
}

/// A family trained by one optimiser on one [`GenerativeModel`] (every family but the GAN):
/// `neurogen-train` trains, checkpoints, samples and scores it with no code of its own.
pub trait ModelFamily: FamilyConfig {
    /// The model the config builds.
    type Model: GenerativeModel;

    /// Builds the model for windows of `shape` of data of `kind` on `device`.
    fn build(&self, shape: WindowShape, kind: SignalKind, device: &Device) -> Self::Model;
}

/// What a trained model can do for its users: draw windows, and (as capabilities it may lack)
/// score windows by likelihood and encode them to latents.
///
/// Labels `y` are one-hot rows `[batch, classes]`, read by conditional models and ignored by
/// unconditional ones; a conditional model given `None` reads "no condition" (a zero
/// embedding).
pub trait Sampler: core::fmt::Debug + Send {
    /// Size of the standard-normal noise one window needs in [`generate`](Self::generate)
    /// (and in [`GenerativeModel::loss`]).
    fn noise_dim(&self) -> usize;

    /// Labels a conditional model was built for; 0 for an unconditional one.
    fn classes(&self) -> usize {
        0
    }

    /// Decodes noise draws (of conditions `y`) to the observation distribution.
    ///
    /// # Shapes
    /// - `z`: `[n, noise_dim]`, standard normal; `y`: `[n, classes]`
    fn generate(&self, z: Tensor<2>, y: Option<Tensor<2>>) -> Observation;

    /// The model's log-likelihood (exact or a bound), if it has one.
    fn density(&self) -> Option<&dyn Density> {
        None
    }

    /// The model's encoder to latents, if it has one.
    fn encoder(&self) -> Option<&dyn Encode> {
        None
    }

    /// The model as a generator of recordings of any length, if it is one.
    fn sequence(&self) -> Option<&dyn Sequence> {
        None
    }

    /// The model as a simulator of responses to exogenous inputs, if it was built with
    /// inputs. (Its [`generate`](Self::generate) holds the inputs at 0: their training mean
    /// when the data are normalised.)
    fn driven(&self) -> Option<&dyn Driven> {
        None
    }
}

/// Capability: the response to exogenous inputs (a stimulus), as long as the inputs are.
pub trait Driven {
    /// Input channels the model reads.
    fn inputs(&self) -> usize;

    /// Standard normals one response of `length` steps consumes.
    fn driven_noise(&self, length: usize) -> usize;

    /// Responses to inputs `u` (normalised units) from noise `z`.
    ///
    /// # Shapes
    /// - `z`: `[n, driven_noise(length)]`; `y`: `[n, classes]`; `u`: `[n, inputs, length]` →
    ///   an observation of `[n, channels, length]`
    fn generate_driven(&self, z: Tensor<2>, y: Option<Tensor<2>>, u: Tensor<3>) -> Observation;
}

/// Capability: recordings longer than the training window, generated step by step (an
/// autoregressive model continues its own output, so there are no seams).
pub trait Sequence {
    /// Standard normals one step consumes.
    fn noise_per_step(&self) -> usize;

    /// Steps of the past one step sees.
    fn receptive_field(&self) -> usize;

    /// Steps generated before the `length` kept, whose noise `z` also holds.
    fn burn_in(&self) -> usize {
        0
    }

    /// `length` steps from noise `z`, after [`burn_in`](Self::burn_in) steps dropped.
    ///
    /// # Shapes
    /// - `z`: `[n, (burn_in + length) · noise_per_step]`; `y`: `[n, classes]` → `[n, channels,
    ///   length]`
    fn generate_length(&self, z: Tensor<2>, y: Option<Tensor<2>>, length: usize) -> Tensor<3>;
}

/// Capability: the log-likelihood of windows (given their conditions), or a lower bound on it.
pub trait Density {
    /// What [`log_likelihood`](Self::log_likelihood) computes with `k` importance samples:
    /// `exact`, or the bound's name (e.g. `iwae_k=64`).
    fn bound(&self, k: usize) -> String;

    /// The standard-normal noise one window's score consumes: `(draws, values per draw)`.
    fn score_noise(&self, k: usize) -> (usize, usize);

    /// Windows scored per call, so that memory stays bounded for `k` draws.
    fn score_batch(&self, k: usize) -> usize {
        (4096 / k.max(1)).max(1)
    }

    /// Per-window log-likelihood (or its bound) in nats, in the model's normalised units, and
    /// the ELBO where the score is an importance-weighted bound.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `noise`: `[draws, batch,
    ///   dim]` as [`score_noise`](Self::score_noise) says → (`[batch]`, `[batch]`)
    fn log_likelihood(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Result<(Tensor<1>, Option<Tensor<1>>), ModelError>;

    /// Each element's exact log-likelihood given the past, `log p(x_ct | x_{<t})`, where the
    /// model factorises over time and channels (autoregressive models): they sum to
    /// [`log_likelihood`](Self::log_likelihood). `None` otherwise.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]` → `[batch, channels, time]`
    fn log_likelihood_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Option<Tensor<3>> {
        let _ = (x, y);
        None
    }

    /// Whether [`log_likelihood_elements`](Self::log_likelihood_elements) gives the elements
    /// (so callers can ask before scoring anything).
    fn factorises(&self) -> bool {
        false
    }

    /// Each element's standard-normal residual given the past, `Φ⁻¹(F(x_ct | x_{<t}))`, where
    /// the model factorises and its conditionals are continuous: i.i.d. N(0, 1) under the
    /// model, so whiteness can be tested where the likelihood alone cannot see an anomaly (a
    /// held value is no less likely than a moving one, but the model mispredicts every held
    /// step alike). `None` otherwise: counts, whose CDF has steps, and the families that score
    /// whole windows (a VAE's reconstruction residuals, tried, are far from white on clean
    /// windows — the decoder smooths — and their whiteness mislocalised line noise).
    ///
    /// # Shapes
    /// - `x`: `[batch, channels (+ inputs), time]`; `y`: `[batch, classes]` → `[batch,
    ///   channels, time]`
    fn residual_elements(&self, x: Tensor<3>, y: Option<Tensor<2>>) -> Option<Tensor<3>> {
        let _ = (x, y);
        None
    }

    /// Whether [`residual_elements`](Self::residual_elements) gives the residuals.
    fn gives_residuals(&self) -> bool {
        false
    }

    /// For a model that scores whole windows: its log-likelihood or bound split over the
    /// window's elements, estimated with `noise` as [`log_likelihood`](Self::log_likelihood)
    /// is. A latent-variable model gives each element's `log p(x_ct | z)` (averaged over the
    /// draws) plus an equal share of the window-level terms (KL, constants), summing to the
    /// ELBO; the diffusion its per-element denoising terms, summing to its bound; RealNVP each
    /// element's `ln N(z_e)` plus the log-scales that acted on it, summing to log p(x) exactly.
    /// Not a factorisation of p(x): it says where in the window and in which channel the
    /// likelihood is lost, which is what localising an anomaly needs. `None` where the model
    /// has no such split or [`factorises`](Self::factorises) exactly.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels (+ inputs), time]`; `y`: `[batch, classes]`; `noise`:
    ///   `[draws, batch, dim]` as [`score_noise`](Self::score_noise) says → `[batch, channels,
    ///   time]`, the modelled channels only (a driven model's inputs have no share)
    fn bound_elements(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
        noise: Tensor<3>,
    ) -> Option<Result<Tensor<3>, ModelError>> {
        let _ = (x, y, noise);
        None
    }

    /// Whether [`bound_elements`](Self::bound_elements) gives the split.
    fn splits_bound(&self) -> bool {
        false
    }
}

/// Capability: an encoder from windows to latents.
pub trait Encode {
    /// Posterior means of the latents of `x` (of conditions `y`), and, for a model with latent
    /// dynamics, the latent path they start.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]` → (`[batch, latent]`,
    ///   `[batch, time, latent]`)
    fn encode_mean(
        &self,
        x: Tensor<3>,
        y: Option<Tensor<2>>,
    ) -> Result<(Tensor<2>, Option<Tensor<3>>), ModelError>;
}

/// A model trained by minimising one loss with one optimiser (see [`ModelFamily`]).
pub trait GenerativeModel: Module + Sampler + Clone + core::fmt::Debug + Send + 'static {
    /// The loss on a batch.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` (normalised units); `y`: `[batch, classes]`
    /// - `noise`: `[batch, noise_dim]`, standard normal, drawn by the caller
    fn loss(&self, x: Tensor<3>, y: Option<Tensor<2>>, noise: Tensor<2>, ctx: &LossContext)
        -> Loss;

    /// Size of the standard-normal noise one window needs in [`loss`](Self::loss); default
    /// [`Sampler::noise_dim`] (a diffusion model's training noise differs from its sampling
    /// noise).
    fn loss_noise_dim(&self) -> usize {
        self.noise_dim()
    }

    /// Decay of a moving average of the weights that the run samples and scores with (e.g.
    /// 0.999); `None`: the weights themselves.
    fn ema(&self) -> Option<f64> {
        None
    }

    /// Whether [`init_from_data`](Self::init_from_data) does anything (so trainers build its
    /// first batch only when it does).
    const INIT_FROM_DATA: bool = false;

    /// Data-dependent initialisation from a first batch (e.g. ActNorm); default: none.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `y`: `[batch, classes]`; `noise`: `[batch, noise_dim]`
    fn init_from_data(self, x: Tensor<3>, y: Option<Tensor<2>>, noise: Tensor<2>) -> Self {
        let _ = (x, y, noise);
        self
    }
}

/// The device the parameters of `module` live on (the first one found).
pub fn module_device<M: Module>(module: &M) -> Option<Device> {
    module.devices().into_iter().next()
}
