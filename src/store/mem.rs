//! An in-memory [`ObjectStore`] with S3's listing semantics, for unit and property tests of
//! the filesystem core. It counts requests so tests can check how many a read costs.

use super::{ListPage, Metadata, NewObject, ObjectInfo, ObjectStore, Part, RangeBody, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

#[derive(Clone, Debug)]
struct MemObject {
    data: Bytes,
    metadata: Metadata,
    content_type: Option<String>,
    etag: String,
    last_modified: SystemTime,
}

/// Request counters of a [`MemStore`].
#[derive(Debug, Default)]
pub struct MemCounters {
    /// ListObjectsV2 pages served.
    pub lists: AtomicU64,
    /// HeadObject calls.
    pub heads: AtomicU64,
    /// GetObject calls.
    pub gets: AtomicU64,
    /// Bytes returned by GetObject.
    pub bytes_read: AtomicU64,
    /// Objects written (PutObject, CompleteMultipartUpload, CopyObject).
    pub writes: AtomicU64,
    /// Multipart uploads started.
    pub uploads_started: AtomicU64,
    /// Parts uploaded or copied.
    pub parts: AtomicU64,
    /// Multipart uploads aborted.
    pub aborts: AtomicU64,
    /// DeleteObject calls.
    pub deletes: AtomicU64,
}

#[derive(Debug)]
struct Upload {
    key: String,
    new: NewObject,
    parts: BTreeMap<i32, Bytes>,
}

/// A bucket held in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, MemObject>>,
    denied_prefixes: Mutex<BTreeSet<String>>,
    read_only_prefixes: Mutex<BTreeSet<String>>,
    uploads: Mutex<HashMap<String, Upload>>,
    failing_parts: std::sync::atomic::AtomicBool,
    faults: Faults,
    versions: AtomicU64,
    /// Objects written at each key by an upload (PutObject, CompleteMultipartUpload, or a
    /// CopyObject onto itself), not by a copy from elsewhere.
    uploads_at: Mutex<HashMap<String, u64>>,
    /// What this store has been asked.
    pub counters: MemCounters,
}

impl MemStore {
    /// An empty bucket.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores an object, replacing any previous one.
    pub fn put(&self, key: &str, data: impl Into<Bytes>, metadata: Metadata) {
        self.store(
            key,
            data.into(),
            NewObject {
                metadata,
                content_type: None,
            },
        );
    }

    fn store(&self, key: &str, data: Bytes, new: NewObject) -> String {
        let version = self.versions.fetch_add(1, Ordering::Relaxed);
        let etag = format!("\"v{version}\"");
        let obj = MemObject {
            data,
            metadata: new.metadata,
            content_type: new.content_type,
            etag: etag.clone(),
            last_modified: SystemTime::now(),
        };
        self.lock().insert(key.to_owned(), obj);
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        etag
    }

    fn uploaded(&self, key: &str) {
        *self
            .uploads_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default() += 1;
    }

    /// How many times an upload has written `key` (a copy from another key does not count):
    /// lets a test tell when a file's staged bytes went up.
    pub fn uploads_at(&self, key: &str) -> u64 {
        self.uploads_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The bytes, metadata and content type of an object, if it exists.
    pub fn get(&self, key: &str) -> Option<(Bytes, Metadata, Option<String>)> {
        self.lock()
            .get(key)
            .map(|o| (o.data.clone(), o.metadata.clone(), o.content_type.clone()))
    }

    /// Every key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The parts of each multipart upload still open at `key`, by number: where the bytes
    /// of a file that could not be completed wait.
    pub fn open_upload_parts(&self, key: &str) -> Vec<BTreeMap<i32, Bytes>> {
        self.uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|u| u.key == key)
            .map(|u| u.parts.clone())
            .collect()
    }

    /// Makes every change to keys under `prefix` fail with AccessDenied (reads still work),
    /// like a role with a read-only policy.
    pub fn deny_writes(&self, prefix: &str) {
        if let Ok(mut d) = self.read_only_prefixes.lock() {
            d.insert(prefix.to_owned());
        }
    }

    /// Makes every request that changes the bucket fail with 503 SlowDown (as S3 does after
    /// the client's retries in an outage) until turned off again; reads still work.
    pub fn fail_writes(&self, fail: bool) {
        self.faults.fail_writes.store(fail, Ordering::Relaxed);
    }

    /// Makes about `per_mille` of every thousand requests fail with 503 SlowDown, chosen by
    /// a generator seeded with `seed`, so a failing sequence can be replayed.
    pub fn fail_randomly(&self, per_mille: u32, seed: u64) {
        self.faults.per_mille.store(per_mille, Ordering::Relaxed);
        *self.faults.rng.lock().unwrap_or_else(|p| p.into_inner()) = fastrand::Rng::with_seed(seed);
    }

    /// Delays every request by up to `max` (random), to shuffle the order of concurrent work.
    pub fn delay_randomly(&self, max: std::time::Duration) {
        self.faults
            .max_delay_us
            .store(max.as_micros() as u64, Ordering::Relaxed);
    }

    /// Holds every request that changes the bucket until [`resume_writes`](Self::resume_writes).
    pub fn pause_writes(&self) {
        self.faults.paused.send_replace(true);
    }

    /// Lets held and new changes through again.
    pub fn resume_writes(&self) {
        self.faults.paused.send_replace(false);
    }

    /// Makes part uploads fail (as a network outage would) until turned off again.
    pub fn fail_parts(&self, fail: bool) {
        self.failing_parts.store(fail, Ordering::Relaxed);
    }

    fn check_write(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        self.check(op, key)?;
        refuse_under(&self.read_only_prefixes, op, key)
    }

    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn no_upload(op: &'static str, key: &str) -> StoreError {
        StoreError::NotFound {
            op,
            key: key.to_owned(),
            code: "NoSuchUpload".into(),
        }
    }

    /// Removes an object.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Makes every request for keys under `prefix` fail with AccessDenied.
    pub fn deny(&self, prefix: &str) {
        if let Ok(mut d) = self.denied_prefixes.lock() {
            d.insert(prefix.to_owned());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MemObject>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, op: &'static str, key: &str) -> Result<(), StoreError> {
        refuse_under(&self.denied_prefixes, op, key)
    }

    fn info(key: &str, o: &MemObject, with_metadata: bool) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size: o.data.len() as u64,
            etag: o.etag.clone(),
            last_modified: o.last_modified,
            metadata: with_metadata.then(|| o.metadata.clone()),
            content_type: if with_metadata { o.content_type.clone() } else { None },
        }
    }
}

/// Faults injected into requests, for tests of what the filesystem does when S3 misbehaves.
#[derive(Debug)]
struct Faults {
    fail_writes: std::sync::atomic::AtomicBool,
    per_mille: std::sync::atomic::AtomicU32,
    max_delay_us: AtomicU64,
    rng: Mutex<fastrand::Rng>,
    paused: tokio::sync::watch::Sender<bool>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_writes: Default::default(),
            per_mille: Default::default(),
            max_delay_us: Default::default(),
            rng: Mutex::new(fastrand::Rng::with_seed(0)),
            paused: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Faults {
    /// Applies the faults to one request: a delay, a wait while changes are paused, and a
    /// failure if one is due.
    async fn apply(&self, op: &'static str, key: &str, write: bool) -> Result<(), StoreError> {
        let (delay, fail) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            let max = self.max_delay_us.load(Ordering::Relaxed);
            let delay = if max > 0 { rng.u64(0..=max) } else { 0 };
            let per_mille = self.per_mille.load(Ordering::Relaxed);
            (delay, per_mille > 0 && rng.u32(0..1000) < per_mille)
        };
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_micros(delay)).await;
        }
        if write {
            let mut paused = self.paused.subscribe();
            let _ = paused.wait_for(|p| !*p).await;
        }
        if fail || (write && self.fail_writes.load(Ordering::Relaxed)) {
            return Err(StoreError::Other {
                op,
                key: key.to_owned(),
                code: Some("SlowDown".into()),
                message: "HTTP 503: injected failure".into(),
                request_id: None,
            });
        }
        Ok(())
    }
}

/// AccessDenied if `key` is under one of `prefixes`.
fn refuse_under(prefixes: &Mutex<BTreeSet<String>>, op: &'static str, key: &str) -> Result<(), StoreError> {
    let denied = prefixes.lock().unwrap_or_else(|p| p.into_inner());
    if denied.iter().any(|p| key.starts_with(p.as_str())) {
        return Err(StoreError::AccessDenied {
            op,
            key: key.to_owned(),
            code: "AccessDenied".into(),
            message: "Access Denied".into(),
            request_id: None,
        });
    }
    Ok(())
}

impl ObjectStore for MemStore {
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        self.faults.apply("ListObjectsV2", prefix, false).await?;
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        self.check("ListObjectsV2", prefix)?;
        let max = max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        let objects = self.lock();
        // Every name the listing shows, in order: an object, or a common prefix standing for
        // all the keys under it. Names strictly increase, so the continuation token is simply
        // the last name returned.
        let mut names: Vec<(String, Option<ObjectInfo>)> = Vec::new();
        for (key, obj) in objects.range(prefix.to_owned()..) {
            if !key.starts_with(prefix) {
                break;
            }
            let rest = &key[prefix.len()..];
            match delimiter.and_then(|d| rest.find(d).map(|i| format!("{prefix}{}", &rest[..i + d.len()]))) {
                Some(common) => {
                    if names.last().map(|(n, _)| n != &common).unwrap_or(true) {
                        names.push((common, None));
                    }
                }
                None => names.push((key.clone(), Some(Self::info(key, obj, false)))),
            }
        }
        let start = continuation.unwrap_or_default();
        let mut page = ListPage::default();
        let rest = names
            .into_iter()
            .filter(|(n, _)| start.is_empty() || n.as_str() > start.as_str());
        for (i, (name, info)) in rest.enumerate() {
            if i == max {
                page.next = page
                    .prefixes
                    .last()
                    .cloned()
                    .into_iter()
                    .chain(page.objects.last().map(|o| o.key.clone()))
                    .max();
                break;
            }
            match info {
                Some(info) => page.objects.push(info),
                None => page.prefixes.push(name),
            }
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.faults.apply("HeadObject", key, false).await?;
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        self.check("HeadObject", key)?;
        let objects = self.lock();
        let obj = objects.get(key).ok_or_else(|| StoreError::NotFound {
            op: "HeadObject",
            key: key.to_owned(),
            code: "404 Not Found".into(),
        })?;
        Ok(Self::info(key, obj, true))
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<RangeBody, StoreError> {
        self.faults.apply("GetObject", key, false).await?;
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.check("GetObject", key)?;
        let objects = self.lock();
        let obj = objects.get(key).ok_or_else(|| StoreError::NotFound {
            op: "GetObject",
            key: key.to_owned(),
            code: "NoSuchKey".into(),
        })?;
        if let Some(etag) = if_match
            && etag != obj.etag
        {
            return Err(StoreError::PreconditionFailed {
                op: "GetObject",
                key: key.to_owned(),
            });
        }
        let len = obj.data.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len) as usize;
        self.counters
            .bytes_read
            .fetch_add((end - start) as u64, Ordering::Relaxed);
        Ok(RangeBody::from_bytes(obj.data.slice(start..end)))
    }

    async fn put(&self, key: &str, body: Bytes, new: &NewObject) -> Result<String, StoreError> {
        self.faults.apply("PutObject", key, true).await?;
        self.check_write("PutObject", key)?;
        self.uploaded(key);
        Ok(self.store(key, body, new.clone()))
    }

    async fn create_multipart(&self, key: &str, new: &NewObject) -> Result<String, StoreError> {
        self.faults.apply("CreateMultipartUpload", key, true).await?;
        self.counters.uploads_started.fetch_add(1, Ordering::Relaxed);
        self.check_write("CreateMultipartUpload", key)?;
        let id = format!("upload-{}", self.versions.fetch_add(1, Ordering::Relaxed));
        self.uploads().insert(
            id.clone(),
            Upload {
                key: key.to_owned(),
                new: new.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<Part, StoreError> {
        self.faults.apply("UploadPart", key, true).await?;
        self.check_write("UploadPart", key)?;
        if self.failing_parts.load(Ordering::Relaxed) {
            return Err(StoreError::Other {
                op: "UploadPart",
                key: key.to_owned(),
                code: Some("InternalError".into()),
                message: "injected failure".into(),
                request_id: None,
            });
        }
        let mut uploads = self.uploads();
        let up = uploads
            .get_mut(upload_id)
            .ok_or_else(|| Self::no_upload("UploadPart", key))?;
        up.parts.insert(number, body);
        self.counters.parts.fetch_add(1, Ordering::Relaxed);
        Ok(Part {
            number,
            etag: format!("\"part{number}\""),
            checksum: None,
        })
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<Part, StoreError> {
        self.faults.apply("UploadPartCopy", key, true).await?;
        self.check_write("UploadPartCopy", key)?;
        self.check("UploadPartCopy", source)?;
        let data = {
            let objects = self.lock();
            let obj = objects.get(source).ok_or_else(|| StoreError::NotFound {
                op: "UploadPartCopy",
                key: source.to_owned(),
                code: "NoSuchKey".into(),
            })?;
            if source_etag.is_some_and(|e| e != obj.etag) {
                return Err(StoreError::PreconditionFailed {
                    op: "UploadPartCopy",
                    key: source.to_owned(),
                });
            }
            let len = obj.data.len() as u64;
            obj.data
                .slice(range.start.min(len) as usize..range.end.min(len) as usize)
        };
        let mut uploads = self.uploads();
        let up = uploads
            .get_mut(upload_id)
            .ok_or_else(|| Self::no_upload("UploadPartCopy", key))?;
        up.parts.insert(number, data);
        self.counters.parts.fetch_add(1, Ordering::Relaxed);
        Ok(Part {
            number,
            etag: format!("\"part{number}\""),
            checksum: None,
        })
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<Part>) -> Result<String, StoreError> {
        self.faults.apply("CompleteMultipartUpload", key, true).await?;
        let up = self
            .uploads()
            .remove(upload_id)
            .ok_or_else(|| Self::no_upload("CompleteMultipartUpload", key))?;
        let mut body = bytes::BytesMut::new();
        for (i, p) in parts.iter().enumerate() {
            let data = up.parts.get(&p.number).ok_or_else(|| StoreError::Other {
                op: "CompleteMultipartUpload",
                key: key.to_owned(),
                code: Some("InvalidPart".into()),
                message: format!("part {} was never uploaded", p.number),
                request_id: None,
            })?;
            if i + 1 < parts.len() && data.len() < 5 << 20 {
                return Err(StoreError::Other {
                    op: "CompleteMultipartUpload",
                    key: key.to_owned(),
                    code: Some("EntityTooSmall".into()),
                    message: format!("part {} is smaller than 5 MiB", p.number),
                    request_id: None,
                });
            }
            body.extend_from_slice(data);
        }
        self.uploaded(&up.key);
        Ok(self.store(&up.key, body.freeze(), up.new))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.faults.apply("AbortMultipartUpload", key, true).await?;
        self.uploads()
            .remove(upload_id)
            .ok_or_else(|| Self::no_upload("AbortMultipartUpload", key))?;
        self.counters.aborts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        _size: u64,
        replace: Option<&NewObject>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        self.faults.apply("CopyObject", dest, true).await?;
        self.check("CopyObject", source)?;
        self.check_write("CopyObject", dest)?;
        let (data, new) = {
            let objects = self.lock();
            let obj = objects.get(source).ok_or_else(|| StoreError::NotFound {
                op: "CopyObject",
                key: source.to_owned(),
                code: "NoSuchKey".into(),
            })?;
            if source_etag.is_some_and(|e| e != obj.etag) {
                return Err(StoreError::PreconditionFailed {
                    op: "CopyObject",
                    key: source.to_owned(),
                });
            }
            let new = replace.cloned().unwrap_or_else(|| NewObject {
                metadata: obj.metadata.clone(),
                content_type: obj.content_type.clone(),
            });
            (obj.data.clone(), new)
        };
        if source == dest {
            self.uploaded(dest);
        }
        Ok(self.store(dest, data, new))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.faults.apply("DeleteObject", key, true).await?;
        self.check_write("DeleteObject", key)?;
        self.lock().remove(key);
        self.counters.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn list_all(s: &MemStore, prefix: &str, max: i32) -> (Vec<String>, Vec<String>) {
        let (mut objs, mut prefixes, mut token) = (vec![], vec![], None);
        loop {
            let page = s.list_page(prefix, Some("/"), token, Some(max)).await.unwrap();
            objs.extend(page.objects.into_iter().map(|o| o.key));
            prefixes.extend(page.prefixes);
            token = page.next;
            if token.is_none() {
                return (objs, prefixes);
            }
        }
    }

    #[tokio::test]
    async fn delimited_listing_pages_through_everything_once() {
        let s = MemStore::new();
        for k in ["a", "b/1", "b/2", "c", "d/x/y", "e/", "f"] {
            s.put(k, "x", Metadata::new());
        }
        for max in 1..5 {
            let (objs, prefixes) = list_all(&s, "", max).await;
            assert_eq!(objs, vec!["a", "c", "f"], "max {max}");
            assert_eq!(prefixes, vec!["b/", "d/", "e/"], "max {max}");
        }
        let (objs, prefixes) = list_all(&s, "d/", 1).await;
        assert!(objs.is_empty());
        assert_eq!(prefixes, vec!["d/x/"]);
    }
}
