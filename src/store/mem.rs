//! An in-memory [`ObjectStore`] with S3's listing semantics, for unit and property tests of
//! the filesystem core. It counts requests so tests can check how many a read costs.

use super::{ListPage, Metadata, ObjectInfo, ObjectStore, RangeBody, StoreError};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

#[derive(Clone, Debug)]
struct MemObject {
    data: Bytes,
    metadata: Metadata,
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
}

/// A bucket held in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, MemObject>>,
    denied_prefixes: Mutex<BTreeSet<String>>,
    versions: AtomicU64,
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
        let version = self.versions.fetch_add(1, Ordering::Relaxed);
        let obj = MemObject {
            data: data.into(),
            metadata,
            etag: format!("\"v{version}\""),
            last_modified: SystemTime::now(),
        };
        self.lock().insert(key.to_owned(), obj);
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
        let denied = self.denied_prefixes.lock().unwrap_or_else(|p| p.into_inner());
        if denied.iter().any(|p| key.starts_with(p.as_str())) {
            return Err(StoreError::AccessDenied {
                op,
                key: key.to_owned(),
                code: "AccessDenied".into(),
                message: "Access Denied".into(),
            });
        }
        Ok(())
    }

    fn info(key: &str, o: &MemObject, with_metadata: bool) -> ObjectInfo {
        ObjectInfo {
            key: key.to_owned(),
            size: o.data.len() as u64,
            etag: o.etag.clone(),
            last_modified: o.last_modified,
            metadata: with_metadata.then(|| o.metadata.clone()),
        }
    }
}

impl ObjectStore for MemStore {
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
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
