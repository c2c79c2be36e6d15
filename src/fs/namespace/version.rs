//! One version of an object's contents. Read handles, cached blocks and staging states refer
//! to a version, never to a key: where the bytes are is the inode table's business, asked at
//! each request. A rename by this mount moves a version to a new key (its ETag may change with
//! the copy); a new upload makes a new version, and whoever holds the old one keeps reading
//! the old bytes or gets ESTALE, never a mix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One version of an object's contents.
#[derive(Debug)]
pub struct ObjectVersion {
    /// Unique for the life of the mount; cached blocks are keyed by it.
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    etag: Mutex<Arc<str>>,
}

impl ObjectVersion {
    /// The ETag this version has now (requests carry it in If-Match).
    pub fn etag(&self) -> Arc<str> {
        self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The same bytes now carry another ETag (a server-side copy by a rename made it).
    pub fn set_etag(&self, etag: &str) {
        *self.etag.lock().unwrap_or_else(|p| p.into_inner()) = Arc::from(etag);
    }
}

/// Hands out versions with unique ids.
#[derive(Debug, Default)]
pub struct Versions {
    next: AtomicU64,
}

impl Versions {
    /// A new version with `etag` and `size`.
    pub fn make(&self, etag: &str, size: u64) -> Arc<ObjectVersion> {
        Arc::new(ObjectVersion {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            size,
            etag: Mutex::new(Arc::from(etag)),
        })
    }
}
