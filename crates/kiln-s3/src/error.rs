//! Errors of the S3 client: each names the operation and the endpoint (and bucket/key path)
//! it concerns. No terminal code here.

/// A failed S3 or IAM call.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The request could not be sent or its answer not read (connection refused, timeout).
    #[error("S3 {operation} on {target} failed: {message}")]
    Transport {
        operation: String,
        target: String,
        message: String,
    },
    /// The server answered with an error status; `code` is its error code (`AccessDenied`,
    /// ...) or, without one, the answer's text.
    #[error("S3 {operation} on {target} failed: HTTP {status} {code}")]
    Refused {
        operation: String,
        target: String,
        status: u16,
        code: String,
    },
    /// A success answer that lacks what the call returns.
    #[error("S3 {operation} on {target} failed: {message}")]
    Answer {
        operation: String,
        target: String,
        message: String,
    },
}

impl S3Error {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = S3Error> = std::result::Result<T, E>;
