//! The library's error type: every variant names the file, key or value at fault.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },

    #[error("config key `{key}`: {message}")]
    ConfigKey { key: String, message: String },

    #[error("invalid device {value:?}: expected auto, cpu, cuda or cuda:N")]
    DeviceSpec { value: String },

    #[error("device {requested} requested, but {reason}")]
    DeviceUnavailable { requested: String, reason: String },

    #[error("{path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("{path}, line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("annotation frame: {0}")]
    Frame(String),

    #[error("{path}: {message}")]
    Image { path: PathBuf, message: String },

    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("training stopped at epoch {epoch}, batch {batch}: {message}")]
    Training {
        epoch: usize,
        batch: usize,
        message: String,
    },

    #[error("download: {message}")]
    Download { message: String },

    #[error("plot: {0}")]
    Plot(String),

    #[error("libtorch: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A libtorch error's message without the C++ stack frames it carries.
pub fn torch_message(e: &tch::TchError) -> String {
    let text = e.to_string();
    let cut = [
        "\nException raised from",
        "Exception raised from",
        "\nframe #0",
    ]
    .iter()
    .filter_map(|m| text.find(m))
    .min()
    .unwrap_or(text.len());
    text[..cut].trim().to_string()
}
