//! The family registry: the one place that names every model family.
//!
//! Each line of [`families!`] maps a `[model] kind` to its config struct (a
//! [`FamilyConfig`] in its own file under `neurogen-models`) and to how neurogen trains and
//! loads it: [`Single`] for every family with one [`GenerativeModel`] and one optimiser, or a
//! family's own [`Family`] (the GAN's two players, `gan.rs`). Adding a family is its file and
//! one line here; nothing else in neurogen matches on families.

use std::path::Path;

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::Device;
use neurogen_data::{from_table, take_tag, SignalKind, SignalMeta, Signals};
use neurogen_models::{
    FamilyConfig, GenerativeModel, ModelError, ModelFamily, Sampler, WindowShape,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::gan::Adversarial;
use crate::rng::{normals, rng, Stream};
use crate::run_dir::Checkpoint;
use crate::trainer::{host_tensor, ModelTrainer, Trainer};
use crate::vae_gan::Variational;
use crate::{TrainConfig, TrainError};

/// Declares [`ModelConfig`]: one variant per family, and the dispatch to each.
macro_rules! families {
    ($($(#[$doc:meta])* $variant:ident($config:ty) => $family:ident,)*) => {
        /// The `[model]` table: one variant per family, chosen by `kind`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ModelConfig {
            $($(#[$doc])* $variant($config),)*
        }

        impl ModelConfig {
            /// Every family's `kind`, in registry order.
            pub const KINDS: &'static [&'static str] = &[$(<$config>::KIND),*];

            /// The family's name as written in `kind`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ModelConfig::$variant(_) => <$config>::KIND,)*
                }
            }

            /// A copy with data-dependent defaults filled in.
            pub fn resolved(&self, kind: SignalKind) -> ModelConfig {
                match self {
                    $(ModelConfig::$variant(c) => ModelConfig::$variant(c.resolved(kind)),)*
                }
            }

            /// Checks the config against data of `kind`.
            pub fn check(&self, kind: SignalKind) -> Result<(), ModelError> {
                match self {
                    $(ModelConfig::$variant(c) => c.check(kind),)*
                }
            }

            /// Whether the run's labels are an input of the model.
            pub fn conditional(&self) -> bool {
                match self {
                    $(ModelConfig::$variant(c) => c.conditional(),)*
                }
            }

            /// The `kind` of every family that conditions on exogenous inputs.
            pub fn driven_kinds() -> Vec<&'static str> {
                let mut kinds = Vec::new();
                $(if <$config as FamilyConfig>::TAKES_INPUTS {
                    kinds.push(<$config>::KIND);
                })*
                kinds
            }

            /// Whether the family conditions on exogenous inputs (`[data] inputs`).
            pub fn takes_inputs(&self) -> bool {
                match self {
                    $(ModelConfig::$variant(_) => <$config as FamilyConfig>::TAKES_INPUTS,)*
                }
            }

            /// How neurogen trains and loads this family.
            pub fn family(&self) -> Box<dyn Family + '_> {
                match self {
                    $(ModelConfig::$variant(c) => Box::new($family(c)),)*
                }
            }

            fn from_kind(kind: &str, table: toml::Table) -> Result<ModelConfig, String> {
                $(if kind == <$config>::KIND {
                    return from_table(table).map(ModelConfig::$variant);
                })*
                Err(format!("kind: no model family \"{kind}\""))
            }
        }

        impl Serialize for ModelConfig {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(ModelConfig::$variant(c) => Tagged { kind: <$config>::KIND, config: c }
                        .serialize(s),)*
                }
            }
        }
    };
}

families! {
    /// Variational autoencoder (`vae.rs`; with `adversarial`, trained by this crate's
    /// `vae_gan.rs`).
    Vae(neurogen_models::VaeConfig) => Variational,
    /// Generative adversarial network (`gan.rs`; trained by this crate's `gan.rs`).
    Gan(neurogen_models::GanConfig) => Adversarial,
    /// RealNVP normalising flow (`flow.rs`).
    RealNvp(neurogen_models::RealNvpConfig) => Single,
    /// Latent ODE (`latent_ode.rs`).
    LatentOde(neurogen_models::LatentOdeConfig) => Single,
    /// Denoising diffusion (`diffusion.rs`).
    Diffusion(neurogen_models::DiffusionConfig) => Single,
    /// Autoregressive WaveNet (`wavenet.rs`).
    Autoregressive(neurogen_models::WaveNetConfig) => Single,
}

/// A config serialised with its `kind` first, as `[model]` is written.
#[derive(Serialize)]
struct Tagged<'a, C> {
    kind: &'static str,
    #[serde(flatten)]
    config: &'a C,
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut table = toml::Table::deserialize(d)?;
        let kind = take_tag(&mut table, "kind", Self::KINDS).map_err(D::Error::custom)?;
        Self::from_kind(&kind, table).map_err(D::Error::custom)
    }
}

/// What a family is built for.
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    /// One window's shape.
    pub shape: WindowShape,
    /// What the values are.
    pub kind: SignalKind,
    /// The `[train]` settings (optimiser, batch size, schedules).
    pub train: &'a TrainConfig,
    /// The run's seed: the key of every host draw.
    pub seed: u64,
    /// The plain device; trainers create their parameters on its autodiff twin.
    pub device: &'a Device,
}

impl<'a> Build<'a> {
    /// What `exp`'s model is built for on data described by `meta`.
    pub fn new(exp: &'a crate::Experiment, meta: &SignalMeta, device: &'a Device) -> Self {
        Build {
            shape: WindowShape::from(meta),
            kind: exp.data.kind(),
            train: &exp.train,
            seed: exp.seed,
            device,
        }
    }
}

/// How neurogen trains a family and loads it from a checkpoint.
pub trait Family {
    /// A fresh trainer (the device's generator draws the initial weights). `init` is data for
    /// a data-dependent initialisation; `None` when the weights come from a checkpoint next.
    fn trainer(&self, b: &Build, init: Option<&Signals>) -> Box<dyn Trainer>;

    /// The model that samples (and scores and encodes, where it can), with `ckpt`'s weights.
    fn sampler(&self, b: &Build, ckpt: &Checkpoint) -> Result<Box<dyn Sampler>, TrainError>;

    /// The weights [`sampler`](Self::sampler) samples with, under PyTorch's names and layouts
    /// (`neurogen export`).
    fn tensors(&self, b: &Build, ckpt: &Checkpoint) -> Result<Vec<PackTensor>, TrainError>;
}

/// `module`'s float parameters as PyTorch names them: dotted module paths without enum
/// variants, `Linear` weights as `[out, in]`, norms' gamma/beta as weight/bias.
pub(crate) fn torch_tensors<M: Module>(module: &M) -> Vec<PackTensor> {
    module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
}

/// Every [`ModelFamily`]: one model, one optimiser, [`ModelTrainer`].
pub struct Single<'a, F>(pub &'a F);

impl<F: ModelFamily> Family for Single<'_, F> {
    fn trainer(&self, b: &Build, init: Option<&Signals>) -> Box<dyn Trainer> {
        let ad = b.device.clone().autodiff();
        let mut model = self.0.build(b.shape, b.kind, &ad);
        if let Some(data) = init.filter(|_| <F::Model as GenerativeModel>::INIT_FROM_DATA) {
            model = init_from_data(model, data, b.seed, &ad);
        }
        Box::new(ModelTrainer::new(model, b.train, b.seed, b.device))
    }

    fn sampler(&self, b: &Build, ckpt: &Checkpoint) -> Result<Box<dyn Sampler>, TrainError> {
        Ok(Box::new(self.sampling_model(b, ckpt)?))
    }

    fn tensors(&self, b: &Build, ckpt: &Checkpoint) -> Result<Vec<PackTensor>, TrainError> {
        Ok(torch_tensors(&self.sampling_model(b, ckpt)?))
    }
}

impl<F: ModelFamily> Single<'_, F> {
    /// The model with the weights it samples with: the moving average, when the run keeps one.
    fn sampling_model(&self, b: &Build, ckpt: &Checkpoint) -> Result<F::Model, TrainError> {
        let model = self.0.build(b.shape, b.kind, b.device);
        let file = sampling_file(ckpt, model.ema().is_some());
        load_weights(model, &file)
    }
}

/// The weights file of `ckpt` a run samples with: its moving average when the family keeps one
/// (`keeps_ema`) and the checkpoint has it, else the model's.
pub(crate) fn sampling_file(ckpt: &Checkpoint, keeps_ema: bool) -> std::path::PathBuf {
    Some(ckpt.ema_file())
        .filter(|f| keeps_ema && f.exists())
        .unwrap_or_else(|| ckpt.model_file())
}

/// `module` with the weights of a checkpoint's burnpack `file`.
pub(crate) fn load_weights<M: Module>(module: M, file: &Path) -> Result<M, TrainError> {
    module
        .try_load_file(file)
        .map_err(|e| TrainError::Checkpoint {
            path: file.to_path_buf(),
            message: format!("cannot load model weights: {e}"),
        })
}

/// Runs a model's data-dependent initialisation on the first (up to) 512 windows of `data`.
fn init_from_data<M: GenerativeModel>(model: M, data: &Signals, seed: u64, device: &Device) -> M {
    let n = data.n.min(512);
    let idx: Vec<usize> = (0..n).collect();
    let x = data.batch(&idx, device); // [n, channels, time]
    let classes = model.classes();
    let y = (classes > 0)
        .then(|| data.label_batch(&idx, classes, device))
        .flatten(); // [n, classes]
    let d = model.loss_noise_dim();
    let noise = host_tensor(
        normals(&mut rng(seed, Stream::Init, 0), n * d),
        [n, d],
        device,
    );
    model.init_from_data(x, y, noise)
}
