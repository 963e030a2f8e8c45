//! The crate's error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} did not accept connections on {1} within {2} ms")]
    NotReady(String, std::net::SocketAddr, u64),
    #[error("{0} exited early: {1}")]
    ExitedEarly(String, String),
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error(transparent)]
    Loadgen(#[from] loadgen::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
