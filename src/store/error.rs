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
        /// The id S3 gave the request, to quote to AWS support.
        request_id: Option<String>,
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
        /// What went wrong.
        message: String,
        /// The id S3 gave the request, when it answered, to quote to AWS support.
        request_id: Option<String>,
    },
}

impl StoreError {
    /// The operation that failed, for logs.
    pub fn op(&self) -> &'static str {
        match self {
            StoreError::NotFound { op, .. }
            | StoreError::AccessDenied { op, .. }
            | StoreError::PreconditionFailed { op, .. }
            | StoreError::Other { op, .. } => op,
        }
    }

    /// The key (or bucket) involved, for logs.
    pub fn key(&self) -> &str {
        match self {
            StoreError::NotFound { key, .. }
            | StoreError::AccessDenied { key, .. }
            | StoreError::PreconditionFailed { key, .. }
            | StoreError::Other { key, .. } => key,
        }
    }

    /// The id S3 gave the failed request, when there is one: what AWS support asks for.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            StoreError::AccessDenied { request_id, .. } | StoreError::Other { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// This error, with the id of the request it answers (kept by a denial or another
    /// failure; the other kinds are not worth a support case).
    pub fn with_request_id(mut self, id: Option<&str>) -> Self {
        if let StoreError::AccessDenied { request_id, .. } | StoreError::Other { request_id, .. } = &mut self {
            *request_id = id.map(str::to_owned);
        }
        self
    }

    /// The AWS error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::NotFound { code, .. } | StoreError::AccessDenied { code, .. } => Some(code),
            StoreError::PreconditionFailed { .. } => Some("PreconditionFailed"),
            StoreError::Other { code, .. } => code.as_deref(),
        }
    }
}
