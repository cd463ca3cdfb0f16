use std::path::PathBuf;

/// Everything that can go wrong while building or writing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A `[data]` key holds a value the builder cannot use.
    #[error("[data] {key}: {message}")]
    Invalid {
        /// The key under `[data]`.
        key: &'static str,
        /// What was expected.
        message: String,
    },
    /// A file's content is malformed or unusable.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The field or part that is wrong, and what was expected.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl DataError {
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        DataError::Invalid {
            key,
            message: message.into(),
        }
    }
}
