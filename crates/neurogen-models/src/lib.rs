//! The generative model families of neurogen and the blocks they share.
//!
//! The one design decision of this crate: **models never draw randomness themselves**. Every
//! random number a model consumes (the reparameterisation noise of a VAE, the latent of a
//! sample) is drawn on the host by the caller from a seeded `StdRng` and passed in as a tensor.
//! A run is therefore a pure function of its seed, resumes exactly at any step, and runs on
//! `ndarray`, `flex` and `wgpu` from the same noise.
//!
//! Each family lives in one file (`vae.rs`, …) and is built as in burn's examples:
//! config → `init(shape, &device)` → `loss` / `generate`.

mod config;
pub mod conv;
pub mod flow;
pub mod gan;
pub mod latent_ode;
pub mod likelihood;
mod mlp;
pub mod ode;
pub mod spectral;
pub mod vae;

pub use config::ModelConfig;
pub use flow::{RealNvp, RealNvpConfig, Transform};
pub use gan::{Critic, GanConfig, GanLoss, Generator};
pub use latent_ode::{LatentOde, LatentOdeConfig};
pub use likelihood::Likelihood;
pub use mlp::{Mlp, MlpHead};
pub use ode::{odeint, OdeOptions, OdeStats, Solver, VectorField};
pub use vae::{Vae, VaeConfig};

use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// The shape of one window a model is built for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowShape {
    /// Channels (neurons).
    pub channels: usize,
    /// Samples (bins).
    pub time: usize,
    /// Samples per second (time grids of the latent ODE).
    pub sfreq: f64,
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
        }
    }
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

/// A model trained by the single-optimiser loop `fit`.
///
/// The GAN has two players and its own loop; VAE, RealNVP and latent ODE implement this.
pub trait GenerativeModel: Module + Clone + core::fmt::Debug + Send + 'static {
    /// Size of the standard-normal noise one window needs in [`loss`](Self::loss) and
    /// [`generate`](Self::generate).
    fn noise_dim(&self) -> usize;

    /// The loss on a batch.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]` (normalised units)
    /// - `noise`: `[batch, noise_dim]`, standard normal, drawn by the caller
    fn loss(&self, x: Tensor<3>, noise: Tensor<2>, ctx: &LossContext) -> Loss;

    /// Decodes latent draws to the observation distribution.
    ///
    /// # Shapes
    /// - `z`: `[n, noise_dim]`, standard normal
    fn generate(&self, z: Tensor<2>) -> Observation;

    /// Data-dependent initialisation from a first batch (e.g. ActNorm); default: none.
    ///
    /// # Shapes
    /// - `x`: `[batch, channels, time]`; `noise`: `[batch, noise_dim]`
    fn init_from_data(self, x: Tensor<3>, noise: Tensor<2>) -> Self {
        let _ = (x, noise);
        self
    }
}

/// The device the parameters of `module` live on (the first one found).
pub fn module_device<M: Module>(module: &M) -> Option<Device> {
    module.devices().into_iter().next()
}
