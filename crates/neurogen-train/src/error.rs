use std::path::PathBuf;

/// A bad experiment file or override: names the file, the key and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read experiment file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML.
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A `--set key.path=value` argument is malformed or cannot be applied.
    #[error("--set {arg}: {message}")]
    Override {
        /// The argument as given.
        arg: String,
        /// Why.
        message: String,
    },
    /// A key is unknown, missing, of the wrong type or out of range.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key path, e.g. `train.batch_size`.
        key: String,
        /// What was expected.
        message: String,
    },
}

/// Everything `train`, `sample` and `inspect` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The experiment is bad (the user's input: exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A run directory is missing, incomplete or not ours (the user's input: exit code 2).
    #[error("{}: {message}", path.display())]
    RunDir {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Data could not be built or written.
    #[error(transparent)]
    Data(#[from] neurogen_data::DataError),
    /// Windows handed to a run (e.g. to score) do not fit it (the user's input: exit code 2).
    #[error("{0}")]
    Input(String),
    /// Training met non-finite values more often than `train.max_rollbacks` allows (exit 3).
    #[error(
        "training diverged: {what}; {rollbacks} rollback(s) with learning-rate cuts did not \
         help (learning rate now {lr:.3e}). Try gradient clipping or more rollbacks, which \
         continue from the checkpoint of step {checkpoint}: `neurogen train CONFIG --resume \
         --set train.grad_clip=1.0` (or train.max_rollbacks, train.lr_cut); or start a new run \
         with a smaller train.lr or a longer train.kl_warmup_steps"
    )]
    Diverged {
        /// What went bad, where and when.
        what: String,
        /// Rollbacks made before giving up.
        rollbacks: u32,
        /// The learning rate after the cuts.
        lr: f64,
        /// The newest good checkpoint.
        checkpoint: u64,
    },
    /// A checkpoint could not be written or read.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What the store said.
        message: String,
    },
}

impl TrainError {
    /// Whether the error is the user's input (bad config, file or run directory), for exit 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            TrainError::Config(_) | TrainError::RunDir { .. } | TrainError::Input(_) => true,
            TrainError::Data(neurogen_data::DataError::Invalid { .. })
            | TrainError::Data(neurogen_data::DataError::Format { .. }) => true,
            TrainError::Checkpoint { .. } => true,
            TrainError::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            TrainError::Data(_) | TrainError::Diverged { .. } => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
