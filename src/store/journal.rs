//! A store that remembers, in a local file, every multipart upload it has started and not yet
//! completed or aborted. A daemon killed during an upload (kill -9, a crash, a reboot) leaves
//! the upload open in S3, where its parts cost money and nobody sees them; the next mount of
//! the same source on the same mount point reads the journal and aborts exactly those
//! uploads, and no one else's (two hosts sharing a bucket and a role never touch each
//! other's uploads).

use super::{ListPage, NewObject, ObjectInfo, ObjectStore, Part, RangeBody, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Rewrite the journal once it has this many more lines than uploads open.
const COMPACT_AFTER: usize = 10_000;

/// One upload a previous run left open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    /// Its key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
}

#[derive(Debug)]
struct JournalFile {
    path: PathBuf,
    file: std::fs::File,
    /// Uploads open now: id to key.
    open: HashMap<String, String>,
    lines: usize,
}

impl JournalFile {
    fn append(&mut self, line: serde_json::Value) -> std::io::Result<()> {
        let mut text = line.to_string();
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.lines += 1;
        if self.lines > COMPACT_AFTER + 2 * self.open.len() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with only the uploads open now.
    fn compact(&mut self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for (id, key) in &self.open {
            writeln!(out, "{}", serde_json::json!({"open": id, "key": key}))?;
        }
        std::fs::rename(&tmp, &self.path)?;
        let file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        lock_exclusive(&file)?;
        self.file = file;
        self.lines = self.open.len();
        Ok(())
    }
}

fn lock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads a journal: the uploads started and not ended.
fn replay(text: &str) -> HashMap<String, String> {
    let mut open = HashMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue; // a line cut short by a crash
        };
        if let (Some(id), Some(key)) = (v["open"].as_str(), v["key"].as_str()) {
            open.insert(id.to_owned(), key.to_owned());
        } else if let Some(id) = v["done"].as_str() {
            open.remove(id);
        }
    }
    open
}

/// An [`ObjectStore`] that journals its multipart uploads.
pub struct Journaled<S: ObjectStore> {
    inner: Arc<S>,
    journal: Option<Arc<Mutex<JournalFile>>>,
}

/// A stable name for the journal of one source mounted on one mount point.
pub fn journal_name(bucket: &str, identity: &str) -> String {
    // FNV-1a: the same on every build, so an upgraded daemon finds its predecessor's file.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let bucket: String = bucket
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(63)
        .collect();
    format!("{bucket}-{hash:016x}.jsonl")
}

impl<S: ObjectStore> Journaled<S> {
    /// Journals `inner`'s multipart uploads in `path` (made 0600, its directory 0700), and
    /// returns the uploads a previous run left open there. If the journal cannot be used
    /// (another live mount holds it, or the directory is not writable), the store works
    /// without one and the reason is returned.
    pub fn open(inner: Arc<S>, path: &Path) -> (Self, Result<Vec<Leftover>, String>) {
        match Self::open_file(path) {
            Ok((file, open)) => {
                let leftovers = open
                    .iter()
                    .map(|(id, key)| Leftover {
                        key: key.clone(),
                        upload_id: id.clone(),
                    })
                    .collect();
                let journal = JournalFile {
                    path: path.to_owned(),
                    file,
                    lines: open.len(),
                    open,
                };
                (
                    Journaled {
                        inner,
                        journal: Some(Arc::new(Mutex::new(journal))),
                    },
                    Ok(leftovers),
                )
            }
            Err(e) => (
                Journaled { inner, journal: None },
                Err(format!("{}: {e}", path.display())),
            ),
        }
    }

    fn open_file(path: &Path) -> std::io::Result<(std::fs::File, HashMap<String, String>)> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        lock_exclusive(&file)?;
        let text = std::fs::read_to_string(path)?;
        Ok((file, replay(&text)))
    }

    /// The store journaled.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    async fn record(
        &self,
        line: serde_json::Value,
        change: impl FnOnce(&mut HashMap<String, String>) + Send + 'static,
    ) {
        let Some(journal) = self.journal.clone() else { return };
        let written = tokio::task::spawn_blocking(move || {
            let mut j = journal.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut j.open);
            j.append(line)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot write the upload journal: {e}"),
            Err(e) => tracing::warn!("cannot write the upload journal: {e}"),
        }
    }

    /// Aborts the uploads a previous run left open (found by [`open`](Self::open)); each one
    /// is logged. Returns how many were aborted.
    pub async fn abort_leftovers(&self, leftovers: Vec<Leftover>) -> usize {
        let mut aborted = 0;
        for l in leftovers {
            match self.abort_multipart(&l.key, &l.upload_id).await {
                Ok(()) => {
                    aborted += 1;
                    tracing::info!(key = %l.key, upload_id = %l.upload_id, "aborted an incomplete multipart upload a previous run of this mount left behind");
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(key = %l.key, "cannot abort an upload a previous run left behind: {e}"),
            }
        }
        aborted
    }

    async fn ended(&self, upload_id: &str) {
        let id = upload_id.to_owned();
        self.record(serde_json::json!({ "done": upload_id }), move |open| {
            open.remove(&id);
        })
        .await;
    }
}

impl<S: ObjectStore> ObjectStore for Journaled<S> {
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        self.inner.list_page(prefix, delimiter, continuation, max_keys).await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.inner.head(key).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<RangeBody, StoreError> {
        self.inner.get_range(key, range, if_match).await
    }

    async fn put(&self, key: &str, body: Bytes, new: &NewObject) -> Result<String, StoreError> {
        self.inner.put(key, body, new).await
    }

    async fn create_multipart(&self, key: &str, new: &NewObject) -> Result<String, StoreError> {
        let id = self.inner.create_multipart(key, new).await?;
        let (i, k) = (id.clone(), key.to_owned());
        self.record(serde_json::json!({ "open": id, "key": key }), move |open| {
            open.insert(i, k);
        })
        .await;
        Ok(id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<Part, StoreError> {
        self.inner.upload_part(key, upload_id, number, body).await
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
        self.inner
            .upload_part_copy(key, upload_id, number, source, range, source_etag)
            .await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<Part>) -> Result<String, StoreError> {
        let etag = self.inner.complete_multipart(key, upload_id, parts).await?;
        self.ended(upload_id).await;
        Ok(etag)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let result = self.inner.abort_multipart(key, upload_id).await;
        if matches!(result, Ok(()) | Err(StoreError::NotFound { .. })) {
            self.ended(upload_id).await;
        }
        result
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        size: u64,
        replace: Option<&NewObject>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        self.inner.copy(source, dest, size, replace, source_etag).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    #[tokio::test]
    async fn uploads_left_open_by_a_killed_run_are_found_and_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploads/j.jsonl");
        let store = Arc::new(MemStore::new());
        let (first, leftovers) = Journaled::open(store.clone(), &path);
        assert_eq!(leftovers, Ok(vec![]));
        let done = first.create_multipart("done", &NewObject::default()).await.unwrap();
        let p = first
            .upload_part("done", &done, 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        first.complete_multipart("done", &done, vec![p]).await.unwrap();
        let aborted = first.create_multipart("aborted", &NewObject::default()).await.unwrap();
        first.abort_multipart("aborted", &aborted).await.unwrap();
        let left = first
            .create_multipart("left/behind", &NewObject::default())
            .await
            .unwrap();
        assert_eq!(store.open_uploads(), 1);
        // A second mount while the first is alive cannot take the journal.
        let (_, busy) = Journaled::open(store.clone(), &path);
        assert!(busy.is_err());
        drop(first); // as kill -9 would: nothing is cleaned up
        let (second, leftovers) = Journaled::open(store.clone(), &path);
        let leftovers = leftovers.unwrap();
        assert_eq!(
            leftovers,
            vec![Leftover {
                key: "left/behind".into(),
                upload_id: left
            }]
        );
        assert_eq!(second.abort_leftovers(leftovers).await, 1);
        assert_eq!(store.open_uploads(), 0);
        drop(second);
        let (_, again) = Journaled::open(store, &path);
        assert_eq!(again, Ok(vec![]), "nothing left after the abort");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn journal_names_are_stable_and_differ_by_mount() {
        assert_eq!(journal_name("data", "a"), journal_name("data", "a"));
        assert_ne!(journal_name("data", "a"), journal_name("data", "b"));
        assert_eq!(journal_name("data", ""), "data-cbf29ce484222325.jsonl");
    }
}
