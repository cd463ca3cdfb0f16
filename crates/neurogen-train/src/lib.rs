//! Experiments, the training loop, run directories, checkpoints and sampling from a run.
//!
//! The one design decision of this crate: **a run is a pure function of its seed and step**.
//! The batch order of step `k` and every noise tensor it uses are drawn from host RNGs keyed by
//! `(seed, k)`, not from a stream that advances, so resuming from a checkpoint at step `k`
//! needs only the weights and the optimiser state to continue exactly as if never stopped.

mod adam;
pub mod bench;
mod error;
pub mod evaluate;
pub mod experiment;
mod fit;
pub mod gan;
mod guard;
pub mod parity;
mod progress;
mod rng;
pub mod run_dir;
mod runs;

pub use error::{ConfigError, TrainError};
pub use experiment::{Backend, Experiment, Provenance, TrainConfig};
pub use fit::{fit, FitOptions, FitReport};
pub use gan::fit_gan;
pub use progress::Verbosity;
pub use run_dir::{Checkpoint, DataInfo, RunDir};
pub use runs::{
    build_model, load_run, sample_signals, score_signals, train_experiment, LoadedRun, Model,
    Scores,
};
