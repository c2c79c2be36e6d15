//! Bounded resources: memory for uploads over all writers, and inodes that only listings
//! showed, whatever the number of files.

use super::test_support::*;
use super::*;
use crate::store::mem::MemStore;
use crate::store::{ListPage, Metadata, NewObject, ObjectInfo, ObjectStore, Part, RangeBody, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

/// A store that keeps only the sizes of what it is sent, and takes its time over each part,
/// so many large uploads can be in flight at once without the test holding their bytes.
#[derive(Default)]
struct SinkStore {
    sizes: Mutex<HashMap<String, u64>>,
    uploads: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
}

fn missing(op: &'static str, key: &str) -> StoreError {
    StoreError::NotFound {
        op,
        key: key.to_owned(),
        code: "NoSuchKey".into(),
    }
}

impl ObjectStore for SinkStore {
    async fn list_page(
        &self,
        _prefix: &str,
        _delimiter: Option<&str>,
        _continuation: Option<String>,
        _max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        Ok(ListPage::default())
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let size = *lock(&self.sizes).get(key).ok_or_else(|| missing("HeadObject", key))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size,
            etag: "\"sink\"".into(),
            last_modified: SystemTime::now(),
            metadata: Some(Metadata::new()),
            content_type: None,
        })
    }

    async fn get_range(&self, key: &str, _range: Range<u64>, _if_match: Option<&str>) -> Result<RangeBody, StoreError> {
        Err(missing("GetObject", key))
    }

    async fn put(&self, key: &str, body: Bytes, _new: &NewObject) -> Result<String, StoreError> {
        lock(&self.sizes).insert(key.to_owned(), body.len() as u64);
        Ok("\"sink\"".into())
    }

    async fn create_multipart(&self, _key: &str, _new: &NewObject) -> Result<String, StoreError> {
        let id = format!("u{}", self.next.fetch_add(1, Ordering::Relaxed));
        lock(&self.uploads).insert(id.clone(), 0);
        Ok(id)
    }

    async fn upload_part(&self, _key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<Part, StoreError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(total) = lock(&self.uploads).get_mut(upload_id) {
            *total += body.len() as u64;
        }
        Ok(Part {
            number,
            etag: format!("\"p{number}\""),
            checksum: None,
        })
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        _upload_id: &str,
        _number: i32,
        _source: &str,
        _range: Range<u64>,
        _source_etag: Option<&str>,
    ) -> Result<Part, StoreError> {
        Err(missing("UploadPartCopy", key))
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, _parts: Vec<Part>) -> Result<String, StoreError> {
        let total = lock(&self.uploads)
            .remove(upload_id)
            .ok_or_else(|| missing("CompleteMultipartUpload", key))?;
        lock(&self.sizes).insert(key.to_owned(), total);
        Ok("\"sink\"".into())
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<(), StoreError> {
        lock(&self.uploads).remove(upload_id);
        Ok(())
    }

    async fn copy(
        &self,
        source: &str,
        _dest: &str,
        _size: u64,
        _replace: Option<&NewObject>,
        _source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        Err(missing("CopyObject", source))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.sizes).remove(key);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_writers_of_64_mib_stay_within_one_budget_for_parts_in_flight() {
    let store = Arc::new(SinkStore::default());
    let budget = 64u64 << 20;
    let cfg = FsConfig {
        part_size: 8 << 20,
        upload_concurrency: 8,
        upload_memory: budget,
        ..FsConfig::default()
    };
    let fs = Fs::new(store.clone(), cfg);
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (fs, chunk) = (fs.clone(), chunk.clone());
        writers.spawn(async move {
            let (_, fh) = fs.create(ROOT_INO, &format!("f{i}"), 0o644, 0, 0).await.unwrap();
            for n in 0..64u64 {
                fs.write(fh, n << 20, chunk.clone()).await.unwrap();
            }
            fs.flush(fh).await.unwrap();
            fs.release(fh).await;
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let sizes = lock(&store.sizes).clone();
    assert_eq!(sizes.len(), 50);
    assert!(sizes.values().all(|s| *s == 64 << 20), "every file arrived whole");
    let (now, peak) = fs.upload_memory();
    assert_eq!(now, 0);
    assert!(peak <= budget, "at most {budget} bytes of parts at once, not {peak}");
    assert!(peak >= budget / 2, "the budget was used: {peak}");
}

#[tokio::test]
async fn a_find_over_a_million_keys_keeps_the_inode_table_bounded() {
    let store = Arc::new(MemStore::new());
    for d in 0..1000 {
        for f in 0..1000 {
            store.put(&format!("d{d:03}/f{f:03}"), Bytes::new(), Metadata::new());
        }
    }
    let fs = fs_rw_with(store, |c| c.metadata_ttl = Duration::from_millis(1));
    let mut most = 0;
    // What the kernel does for `find`: a listing of each directory and a lookup of each
    // subdirectory (which it keeps in its cache), never a lookup of the files it lists.
    let root = fs.opendir(ROOT_INO).await.unwrap();
    let dirs = fs.readdir_all(root, 2).unwrap();
    fs.releasedir(root);
    assert_eq!(dirs.len(), 1000);
    for d in dirs {
        let attr = fs.lookup(ROOT_INO, &d.name).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let fh = fs.opendir(attr.ino).await.unwrap();
        assert_eq!(fs.readdir_all(fh, 2).unwrap().len(), 1000);
        fs.releasedir(fh);
        most = most.max(fs.inode_count());
    }
    assert!(most <= 3_100, "the table held {most} inodes at most");
}
