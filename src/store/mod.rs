//! The object store seen by the filesystem core: one trait, an S3 implementation and an
//! in-memory one. The core never sees an SDK type, so it can be tested without a network.

mod error;
pub mod journal;
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
    /// Content-Type, from HEAD only; kept when metadata is rewritten.
    pub content_type: Option<String>,
}

/// How a new object's headers are set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewObject {
    /// User metadata (POSIX attributes and anything else to keep).
    pub metadata: Metadata,
    /// Content-Type, if known.
    pub content_type: Option<String>,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Part number, 1 to 10,000.
    pub number: i32,
    /// ETag the server returned for it.
    pub etag: String,
    /// Its checksum (base64), when the upload has one: CompleteMultipartUpload repeats it.
    pub checksum: Option<String>,
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
            BodyInner::Sdk(stream, key) => {
                let chunk = stream.try_next().await.map_err(|e| StoreError::Other {
                    op: "GetObject",
                    key: key.clone(),
                    code: None,
                    message: format!("reading the body failed: {e}"),
                    request_id: None,
                })?;
                if let Some(c) = &chunk {
                    crate::mount_metrics::s3_bytes_read(c.len());
                }
                Ok(chunk)
            }
        }
    }

    /// Reads the whole remaining body.
    pub async fn collect(mut self) -> Result<Bytes, StoreError> {
        let Some(first) = self.next_chunk().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.next_chunk().await? else {
            return Ok(first);
        };
        let mut out = bytes::BytesMut::from(&first[..]);
        out.extend_from_slice(&second);
        while let Some(chunk) = self.next_chunk().await? {
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

    /// Writes a whole object in one request; returns its ETag.
    fn put(&self, key: &str, body: Bytes, new: &NewObject) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Starts a multipart upload; returns its id.
    fn create_multipart(&self, key: &str, new: &NewObject) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Uploads one part.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl Future<Output = Result<Part, StoreError>> + Send;

    /// Makes one part from a byte range of an existing object, on the server.
    fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        range: Range<u64>,
        source_etag: Option<&str>,
    ) -> impl Future<Output = Result<Part, StoreError>> + Send;

    /// Completes a multipart upload; the object appears whole, or not at all. Returns its ETag.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Abandons a multipart upload and frees its parts.
    fn abort_multipart(&self, key: &str, upload_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Copies an object of `size` bytes (at most 5 GiB) on the server; the size bounds how
    /// long the copy may take. With `replace`, the copy gets those headers; without, it
    /// keeps the source's. Returns the new ETag.
    fn copy(
        &self,
        source: &str,
        dest: &str,
        size: u64,
        replace: Option<&NewObject>,
        source_etag: Option<&str>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Deletes an object; deleting a missing key succeeds, as in S3.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
