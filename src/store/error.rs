//! Errors of the object store, classified by what the filesystem must do about them.

/// A failed store operation. Every variant names the key involved so logs can say which
/// object failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The key or the bucket does not exist.
    #[error("{op} {key}: not found ({code})")]
    NotFound {
        /// Operation that failed.
        op: &'static str,
        /// Key (or bucket) involved.
        key: String,
        /// AWS error code, or the HTTP status when the server sent none.
        code: String,
    },
    /// The credentials are refused for this request, or there are no valid credentials.
    #[error("{op} {key}: access denied ({code}: {message})")]
    AccessDenied {
        /// Operation that failed.
        op: &'static str,
        /// Key involved.
        key: String,
        /// AWS error code (AccessDenied, ExpiredToken, ...).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The object changed since it was opened (If-Match failed).
    #[error("{op} {key}: object changed while open")]
    PreconditionFailed {
        /// Operation that failed.
        op: &'static str,
        /// Key involved.
        key: String,
    },
    /// Anything else: network, throttling or 5xx after retries, unexpected answers.
    #[error("{op} {key}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Other {
        /// Operation that failed.
        op: &'static str,
        /// Key involved.
        key: String,
        /// AWS error code if the server sent one.
        code: Option<String>,
        /// What went wrong, with the request id when there is one.
        message: String,
    },
}

impl StoreError {
    /// The AWS error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::NotFound { code, .. } | StoreError::AccessDenied { code, .. } => Some(code),
            StoreError::PreconditionFailed { .. } => Some("PreconditionFailed"),
            StoreError::Other { code, .. } => code.as_deref(),
        }
    }
}
