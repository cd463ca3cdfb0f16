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

/// Reads a whole file and parses it; a parse error becomes [`DataError::Format`] naming it.
pub(crate) fn read_parsed<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|message| DataError::Format {
        path: path.to_path_buf(),
        message,
    })
}

impl DataError {
    pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        DataError::Invalid {
            key,
            message: message.into(),
        }
    }
}
