//! The object store seen by the filesystem core: one trait, an S3 implementation and an
//! in-memory one. The core never sees an SDK type, so it can be tested without a network.

mod error;
pub mod mem;
pub mod s3;

pub use error::StoreError;

use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::time::SystemTime;

/// User metadata of an object, keys lower-case and without the `x-amz-meta-` prefix.
pub type Metadata = BTreeMap<String, String>;

/// What the store knows about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The full key, prefix included.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag as the server sent it (quotes included); identifies one version of the content.
    pub etag: String,
    /// Last-Modified from the server.
    pub last_modified: SystemTime,
    /// User metadata; `None` when the object came from a listing, which never carries it.
    pub metadata: Option<Metadata>,
}

/// One page of a delimited listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects directly under the listed prefix (metadata is always `None`).
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes ("subdirectories"), each ending with the delimiter.
    pub prefixes: Vec<String>,
    /// Token for the next page, if the listing was truncated.
    pub next: Option<String>,
}

/// The body of a ranged GET, delivered in chunks so a reader can use the first bytes before
/// the last arrive.
pub struct RangeBody {
    inner: BodyInner,
}

enum BodyInner {
    Whole(Option<Bytes>),
    Sdk(aws_sdk_s3::primitives::ByteStream, String),
}

impl RangeBody {
    /// A body that is already in memory.
    pub fn from_bytes(bytes: Bytes) -> Self {
        RangeBody {
            inner: BodyInner::Whole(Some(bytes)),
        }
    }

    /// The next chunk of the body, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, StoreError> {
        match &mut self.inner {
            BodyInner::Whole(b) => Ok(b.take()),
            BodyInner::Sdk(stream, key) => stream.try_next().await.map_err(|e| StoreError::Other {
                op: "GetObject",
                key: key.clone(),
                code: None,
                message: format!("reading the body failed: {e}"),
            }),
        }
    }

    /// Reads the whole remaining body.
    pub async fn collect(mut self) -> Result<Bytes, StoreError> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if out.is_empty() && chunk.len() == out.capacity() {
                return Ok(chunk);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

/// The operations the filesystem needs from an object store.
///
/// Methods return `Send` futures so the core can spawn them on any tokio worker.
pub trait ObjectStore: Send + Sync + 'static {
    /// Lists one page of keys under `prefix`, grouping at `delimiter` when given.
    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// Size, ETag, Last-Modified and user metadata of one object.
    fn head(&self, key: &str) -> impl Future<Output = Result<ObjectInfo, StoreError>> + Send;

    /// Bytes `range` of `key`; with `if_match`, fails with `PreconditionFailed` if the object
    /// is no longer that version.
    fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<RangeBody, StoreError>> + Send;
}
