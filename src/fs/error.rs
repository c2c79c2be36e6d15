//! Errors of the filesystem core and their one mapping to errno.

use crate::store::StoreError;

/// A failed filesystem operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FsError {
    /// No such file or directory.
    #[error("not found")]
    NotFound,
    /// S3 or IAM refused the request.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A write on a read-only mount.
    #[error("read-only filesystem")]
    ReadOnly,
    /// A path component is not a directory.
    #[error("not a directory")]
    NotDir,
    /// A directory where a file was needed.
    #[error("is a directory")]
    IsDir,
    /// A name longer than 255 bytes.
    #[error("name too long")]
    NameTooLong,
    /// rmdir of a directory with entries.
    #[error("directory not empty")]
    NotEmpty,
    /// A bad argument (e.g. readlink of a file).
    #[error("invalid argument")]
    Invalid,
    /// The object changed while it was open.
    #[error("stale file: {0}")]
    Stale(String),
    /// An unknown file handle or inode.
    #[error("bad file handle")]
    BadHandle,
    /// The name is taken.
    #[error("file exists")]
    Exists,
    /// The staging area is full.
    #[error("no space left in the staging directory")]
    NoSpace,
    /// Not permitted (hard links, changing the bucket root).
    #[error("operation not permitted")]
    NotPermitted,
    /// An operation the filesystem does not offer.
    #[error("not supported")]
    NotSupported,
    /// Anything else; the message has the key and the AWS error.
    #[error("I/O error: {0}")]
    Io(String),
}

impl FsError {
    /// The errno the kernel receives. This is the only place errors become numbers.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::AccessDenied(_) => libc::EACCES,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid => libc::EINVAL,
            FsError::Stale(_) => libc::ESTALE,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::Exists => libc::EEXIST,
            FsError::NoSpace => libc::ENOSPC,
            FsError::NotPermitted => libc::EPERM,
            FsError::Io(_) => libc::EIO,
        }
    }
}

impl From<StoreError> for FsError {
    /// Logs what the caller will see as an errno, with the key, the AWS error code and the
    /// request id as fields (journal fields under systemd: KEY=, AWS_ERROR_CODE=, ...).
    fn from(e: StoreError) -> Self {
        macro_rules! log {
            ($level:ident) => {
                tracing::$level!(
                    op = e.op(),
                    key = e.key(),
                    aws_error_code = e.code(),
                    request_id = e.request_id(),
                    "{e}"
                )
            };
        }
        match e {
            StoreError::NotFound { .. } => FsError::NotFound,
            StoreError::AccessDenied { .. } => {
                log!(warn);
                FsError::AccessDenied(e.to_string())
            }
            StoreError::PreconditionFailed { .. } => {
                log!(warn);
                FsError::Stale(e.to_string())
            }
            StoreError::Other { .. } => {
                log!(error);
                FsError::Io(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_the_documented_errno() {
        let denied = StoreError::AccessDenied {
            op: "GetObject",
            key: "k".into(),
            code: "AccessDenied".into(),
            message: "m".into(),
            request_id: None,
        };
        assert_eq!(FsError::from(denied).errno(), libc::EACCES);
        let missing = StoreError::NotFound {
            op: "GetObject",
            key: "k".into(),
            code: "NoSuchKey".into(),
        };
        assert_eq!(FsError::from(missing).errno(), libc::ENOENT);
        let other = StoreError::Other {
            op: "GetObject",
            key: "k".into(),
            code: Some("SlowDown".into()),
            message: "m".into(),
            request_id: None,
        };
        assert_eq!(FsError::from(other).errno(), libc::EIO);
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
    }
}
