//! Experiments, the training loop, run directories, checkpoints and sampling from a run.
//!
//! The one design decision of this crate: **a run is a pure function of its seed and step**.
//! The batch order of step `k` and every noise tensor it uses are drawn from host RNGs keyed by
//! `(seed, k)`, not from a stream that advances, so resuming from a checkpoint at step `k`
//! needs only the weights and the optimiser state to continue exactly as if never stopped.

mod adam;
pub mod anomaly;
pub mod bench;
pub mod discriminate;
mod error;
pub mod evaluate;
pub mod experiment;
pub mod export;
mod fit;
mod gan;
mod guard;
mod loaded;
mod params;
pub mod parity;
mod progress;
pub mod registry;
pub mod reproduce;
mod rng;
pub mod run_dir;
mod runs;
pub mod sweep;
pub mod trainer;
mod vae_gan;

pub use error::{ConfigError, TrainError};
pub use experiment::{Backend, Experiment, KeepBest, LrSchedule, Provenance, TrainConfig};
pub use fit::{fit, FitOptions, FitReport, FitSpec};
pub use loaded::{
    classify_signals, cycled_inputs, load_checkpoint, load_checkpoint_with, load_run,
    sample_driven, sample_held_out, sample_recordings, sample_signals, score_bound_elements,
    score_elements, score_residuals, score_signals, score_signals_common, score_steps, steps_of,
    Classified, LoadedRun, Scores,
};
pub use progress::Verbosity;
pub use registry::ModelConfig;
pub use run_dir::{hash_file, Checkpoint, DataInfo, RunDir, RunStatus};
pub use runs::train_experiment;
pub use trainer::Trainer;
