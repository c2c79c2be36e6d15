//! The write path. Every file open for writing has one staging state shared by all its
//! handles: a local, unnamed staging file holding the bytes that changed, over the object it
//! started from. Bytes below `kept` are still the base object's, so appending to a large
//! object never downloads it: the upload copies that prefix on the server (UploadPartCopy).
//! close and fsync upload; the object is then complete, or the call fails and nothing
//! partial is visible.

use super::attr::{self, Attr};
use super::read::OpenFile;
use super::{Fs, FsError, lock};
use crate::store::{Metadata, NewObject, ObjectStore, Part};
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Smallest part S3 accepts (except the last).
pub const MIN_PART: u64 = 5 << 20;
/// Largest part, and largest single copy.
pub const MAX_PART: u64 = 5 << 30;
/// Most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// The part size for an object of `size` bytes: at least `min`, grown (to a whole MiB) so
/// that 10,000 parts always suffice, up to 5 TiB.
pub fn part_size_for(size: u64, min: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(min).clamp(MIN_PART, MAX_PART)
}

/// Splits `0..len` into `n` nearly equal ranges of at most `max` bytes each.
pub fn split_even(len: u64, max: u64) -> Vec<std::ops::Range<u64>> {
    if len == 0 {
        return vec![];
    }
    let n = len.div_ceil(max);
    let each = len.div_ceil(n);
    (0..n).map(|i| i * each..((i + 1) * each).min(len)).collect()
}

/// The object a staged file started from.
#[derive(Clone, Debug)]
pub(super) struct Base {
    pub(super) key: String,
    pub(super) etag: String,
    pub(super) size: u64,
}

/// A file being written.
pub(super) struct Dirty {
    /// Where it will be uploaded.
    pub(super) key: String,
    pub(super) file: std::fs::File,
    /// Current size.
    pub(super) size: u64,
    /// The object whose bytes `0..kept` are still current.
    base: Option<Base>,
    kept: u64,
    /// Current attributes.
    pub(super) attr: Attr,
    /// User metadata of the base that is not POSIX, kept on upload; and its content type.
    extra: Metadata,
    content_type: Option<String>,
    /// Differs from S3.
    pub(super) changed: bool,
    /// Open handles that may write.
    pub(super) writers: usize,
    /// Unlinked while open: never uploaded.
    pub(super) unlinked: bool,
    /// Bytes counted against the staging limit.
    staged: u64,
    /// Every write so far appended at the end (a stream may follow it).
    pub(super) sequential: bool,
    /// The upload following a sequential writer, if one is under way.
    pub(super) stream: Option<super::stream::Stream>,
    /// chmod, chown or utimens happened while the file was open.
    pub(super) explicit_attrs: bool,
}

/// Bytes `range` of a staging file; past its end (a hole left by truncate) they read as zeros.
pub(super) fn read_range(file: &std::fs::File, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], range.start + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(Bytes::from(buf))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, FsError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FsError::Io(format!("staging file: {e}"))),
        Err(e) => Err(FsError::Io(format!("staging task: {e}"))),
    }
}

impl<S: ObjectStore> Fs<S> {
    fn staging_file(&self) -> Result<std::fs::File, FsError> {
        tempfile::tempfile_in(&self.cfg.staging_dir).map_err(|e| {
            FsError::Io(format!(
                "cannot create a staging file in {}: {e}",
                self.cfg.staging_dir.display()
            ))
        })
    }

    /// Accounts `delta` more staged bytes, refusing with ENOSPC past the limit.
    fn reserve(&self, dirty: &mut Dirty, extent: u64) -> Result<(), FsError> {
        if extent <= dirty.staged {
            return Ok(());
        }
        let delta = extent - dirty.staged;
        let total = self.staged.fetch_add(delta, Ordering::SeqCst) + delta;
        if total > self.cfg.staging_limit {
            self.staged.fetch_sub(delta, Ordering::SeqCst);
            tracing::warn!(key = %dirty.key, "staging limit of {} bytes reached", self.cfg.staging_limit);
            return Err(FsError::NoSpace);
        }
        dirty.staged = extent;
        Ok(())
    }

    pub(super) fn unreserve(&self, dirty: &mut Dirty) {
        self.staged.fetch_sub(dirty.staged, Ordering::SeqCst);
        dirty.staged = 0;
    }

    /// The staging state of `ino`, if it is open for writing.
    pub(super) fn dirty_of(&self, ino: u64) -> Option<Arc<tokio::sync::Mutex<Dirty>>> {
        lock(&self.dirty).get(&ino).cloned()
    }

    /// Starts writing `ino`: from its current object (bytes kept on the server), or empty.
    pub(super) async fn begin_write(
        self: &Arc<Self>,
        ino: u64,
        attr: &Attr,
        key: &str,
        exists: bool,
    ) -> Result<Arc<tokio::sync::Mutex<Dirty>>, FsError> {
        if let Some(d) = self.dirty_of(ino) {
            d.lock().await.writers += 1;
            return Ok(d);
        }
        let (base, extra, content_type) = if exists {
            let info = self.head(key).await?.ok_or(FsError::NotFound)?;
            let mut extra = info.metadata.clone().unwrap_or_default();
            for k in ["mode", "uid", "gid", "mtime"] {
                extra.remove(k);
            }
            (
                Some(Base {
                    key: key.to_owned(),
                    etag: info.etag.clone(),
                    size: info.size,
                }),
                extra,
                info.content_type.clone(),
            )
        } else {
            (None, Metadata::new(), None)
        };
        let size = base.as_ref().map(|b| b.size).unwrap_or(0);
        let dirty = Dirty {
            key: key.to_owned(),
            file: self.staging_file()?,
            size,
            kept: size,
            base,
            attr: Attr { size, ..attr.clone() },
            extra,
            content_type,
            changed: !exists,
            writers: 1,
            unlinked: false,
            staged: 0,
            sequential: !exists,
            stream: None,
            explicit_attrs: false,
        };
        let d = Arc::new(tokio::sync::Mutex::new(dirty));
        // Another task may have started at the same time: keep the first.
        let existing = {
            let mut all = lock(&self.dirty);
            match all.get(&ino) {
                Some(e) => Some(e.clone()),
                None => {
                    all.insert(ino, d.clone());
                    None
                }
            }
        };
        match existing {
            Some(e) => {
                e.lock().await.writers += 1;
                Ok(e)
            }
            None => Ok(d),
        }
    }

    /// Brings bytes `from..kept` of the base object into the staging file, so the staged
    /// part starts at `from`.
    async fn materialize(self: &Arc<Self>, ino: u64, dirty: &mut Dirty, from: u64) -> Result<(), FsError> {
        if from >= dirty.kept {
            return Ok(());
        }
        let Some(base) = dirty.base.clone() else {
            dirty.kept = from;
            return Ok(());
        };
        self.reserve(dirty, dirty.size - from)?;
        let reader = Arc::new(OpenFile::new(ino, base.key.clone(), base.etag.clone(), base.size));
        let mut offset = from;
        while offset < dirty.kept {
            let len = (dirty.kept - offset).min(8 << 20);
            let data = self.read_object(&reader, offset, len).await?;
            let file = dirty.file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
            let at = offset;
            blocking(move || file.write_all_at(&data, at)).await?;
            offset += len;
        }
        dirty.kept = from;
        Ok(())
    }

    /// Writes `data` at `offset` of an open file.
    pub async fn write(self: &Arc<Self>, fh: u64, offset: u64, data: Bytes) -> Result<u32, FsError> {
        let handle = self.open_file(fh)?;
        if !handle.writable {
            return Err(FsError::BadHandle);
        }
        let d = self.dirty_of(handle.ino).ok_or(FsError::BadHandle)?;
        let mut dirty = d.lock().await;
        if offset != dirty.size && dirty.sequential {
            dirty.sequential = false;
            self.abandon_stream(&mut dirty);
        }
        if offset < dirty.kept {
            self.materialize(handle.ino, &mut dirty, offset).await?;
        }
        let end = offset + data.len() as u64;
        let extent = end.max(dirty.size) - dirty.kept;
        self.reserve(&mut dirty, extent)?;
        let file = dirty.file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
        let len = data.len() as u32;
        blocking(move || file.write_all_at(&data, offset)).await?;
        dirty.size = dirty.size.max(end);
        dirty.attr.size = dirty.size;
        let now = SystemTime::now();
        dirty.attr.mtime = now;
        dirty.attr.ctime = now;
        dirty.changed = true;
        if dirty.sequential && dirty.kept == 0 && !dirty.unlinked {
            self.stream_parts(&mut dirty).await?;
        }
        Ok(len)
    }

    /// Sets the size of a file being written.
    pub(super) async fn truncate_dirty(&self, dirty: &mut Dirty, size: u64) -> Result<(), FsError> {
        // Emptying a file starts it afresh; any other size change ends a stream.
        self.abandon_stream(dirty);
        dirty.sequential = size == 0;
        if size < dirty.kept {
            dirty.kept = size;
        }
        let extent = size - dirty.kept;
        self.reserve(dirty, extent)?;
        let file = dirty.file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
        blocking(move || file.set_len(size)).await?;
        dirty.size = size;
        dirty.attr.size = size;
        let now = SystemTime::now();
        dirty.attr.mtime = now;
        dirty.attr.ctime = now;
        dirty.changed = true;
        Ok(())
    }

    /// Reads from a file being written: the kept prefix from the base object, the rest from
    /// the staging file.
    pub(super) async fn read_dirty(
        self: &Arc<Self>,
        ino: u64,
        dirty: &Dirty,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, FsError> {
        let end = (offset + u64::from(size)).min(dirty.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        if offset < dirty.kept {
            let base = dirty
                .base
                .clone()
                .ok_or_else(|| FsError::Io("kept bytes without a base object".into()))?;
            let reader = Arc::new(OpenFile::new(ino, base.key, base.etag, base.size));
            let upto = end.min(dirty.kept);
            out.extend_from_slice(&self.read_object(&reader, offset, upto - offset).await?);
        }
        let from = offset.max(dirty.kept);
        if from < end {
            out.extend_from_slice(&self.read_staged(dirty, from..end).await?);
        }
        Ok(Bytes::from(out))
    }

    pub(super) fn new_object(&self, dirty: &Dirty) -> NewObject {
        let mut metadata = dirty.extra.clone();
        let a = &dirty.attr;
        metadata.extend(attr::to_metadata(a));
        NewObject {
            metadata,
            content_type: dirty.content_type.clone(),
        }
    }

    pub(super) async fn read_staged(&self, dirty: &Dirty, range: std::ops::Range<u64>) -> Result<Bytes, FsError> {
        let file = dirty.file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
        blocking(move || read_range(&file, range)).await
    }

    /// Uploads a changed file: one PutObject when small, else a multipart upload whose parts
    /// (server-side copies of the kept prefix, then staged data) go up in parallel. On any
    /// failure the upload is aborted and the previous object stays as it was.
    pub(super) async fn upload(self: &Arc<Self>, ino: u64, dirty: &mut Dirty) -> Result<(), FsError> {
        if dirty.unlinked {
            self.abandon_stream(dirty);
        }
        if !dirty.changed || dirty.unlinked {
            return Ok(());
        }
        let key = dirty.key.clone();
        if dirty.stream.is_some() {
            if dirty.sequential && dirty.kept == 0 && dirty.stream.as_ref().is_some_and(|s| s.key() == key) {
                let etag = self.finish_stream(dirty).await?;
                dirty.changed = false;
                dirty.explicit_attrs = false;
                let attr = Attr {
                    size: dirty.size,
                    ..dirty.attr.clone()
                };
                self.uploaded(ino, &key, attr, etag);
                return Ok(());
            }
            self.abandon_stream(dirty);
        }
        // A kept prefix too small to be a part is brought over instead.
        if dirty.kept > 0 && dirty.kept < MIN_PART && dirty.size > dirty.kept {
            self.materialize(ino, dirty, 0).await?;
        }
        let new = self.new_object(dirty);
        let part_size = part_size_for(dirty.size, self.cfg.part_size);
        let etag = if dirty.kept == dirty.size && dirty.base.is_some() && dirty.size <= MAX_PART && dirty.size > 0 {
            // Only attributes (or a shrink) changed: a copy onto itself, on the server.
            let base = dirty.base.clone().ok_or(FsError::Invalid)?;
            if dirty.kept == base.size {
                self.store.copy(&base.key, &key, Some(&new), Some(&base.etag)).await?
            } else {
                self.multipart(&key, dirty, &new, part_size).await?
            }
        } else if dirty.kept == 0 && dirty.size <= part_size {
            let body = self.read_staged(dirty, 0..dirty.size).await?;
            self.store.put(&key, body, &new).await?
        } else if dirty.kept == 0 && dirty.size == 0 {
            self.store.put(&key, Bytes::new(), &new).await?
        } else {
            self.multipart(&key, dirty, &new, part_size).await?
        };
        tracing::debug!(%key, size = dirty.size, "uploaded");
        // The new object now holds everything below `kept` as well.
        if dirty.kept > 0 {
            dirty.base = Some(Base {
                key: key.clone(),
                etag: etag.clone(),
                size: dirty.size,
            });
        }
        dirty.changed = false;
        let attr = Attr {
            size: dirty.size,
            ..dirty.attr.clone()
        };
        self.uploaded(ino, &key, attr, etag);
        Ok(())
    }

    async fn multipart(&self, key: &str, dirty: &Dirty, new: &NewObject, part_size: u64) -> Result<String, FsError> {
        let upload_id = self.store.create_multipart(key, new).await?;
        let result = self.upload_parts(key, &upload_id, dirty, part_size).await;
        match result {
            Ok(parts) => match self.store.complete_multipart(key, &upload_id, parts).await {
                Ok(etag) => Ok(etag),
                Err(e) => {
                    let _ = self.store.abort_multipart(key, &upload_id).await;
                    Err(e.into())
                }
            },
            Err(e) => {
                if let Err(abort) = self.store.abort_multipart(key, &upload_id).await {
                    tracing::warn!(%key, "aborting the failed upload failed too: {abort}");
                }
                tracing::error!(%key, "upload failed, the object is unchanged: {e}");
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        dirty: &Dirty,
        part_size: u64,
    ) -> Result<Vec<Part>, FsError> {
        let mut plan: Vec<(i32, Option<std::ops::Range<u64>>, std::ops::Range<u64>)> = Vec::new();
        let mut number = 1;
        for r in split_even(dirty.kept, MAX_PART) {
            plan.push((number, Some(r.clone()), r));
            number += 1;
        }
        let mut offset = dirty.kept;
        while offset < dirty.size {
            let end = (offset + part_size).min(dirty.size);
            plan.push((number, None, offset..end));
            number += 1;
            offset = end;
        }
        if plan.len() as u64 > MAX_PARTS {
            return Err(FsError::Io(format!("{key}: more than 10,000 parts")));
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(self.cfg.upload_concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut parts = Vec::with_capacity(plan.len());
        for (number, copy, range) in plan {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| FsError::Io(e.to_string()))?;
            let store = self.store.clone();
            let (key, upload_id) = (key.to_owned(), upload_id.to_owned());
            match copy {
                Some(r) => {
                    let base = dirty.base.clone().ok_or(FsError::Invalid)?;
                    tasks.spawn(async move {
                        let _permit = permit;
                        store
                            .upload_part_copy(&key, &upload_id, number, &base.key, r, Some(&base.etag))
                            .await
                    });
                }
                None => {
                    let body = self.read_staged(dirty, range).await?;
                    tasks.spawn(async move {
                        let _permit = permit;
                        store.upload_part(&key, &upload_id, number, body).await
                    });
                }
            }
            // Stop early on the first failure.
            while let Some(done) = tasks.try_join_next() {
                match done {
                    Ok(Ok(part)) => parts.push(part),
                    Ok(Err(e)) => return Err(e.into()),
                    Err(e) => return Err(FsError::Io(e.to_string())),
                }
            }
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(part)) => parts.push(part),
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => return Err(FsError::Io(e.to_string())),
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_so_ten_thousand_reach_five_tib() {
        assert_eq!(part_size_for(1 << 30, 8 << 20), 8 << 20);
        let huge = 5u64 << 40;
        let p = part_size_for(huge, 8 << 20);
        assert!(huge.div_ceil(p) <= MAX_PARTS, "{p}");
        assert_eq!(p % (1 << 20), 0);
        assert!(part_size_for(0, 1) >= MIN_PART);
    }

    #[test]
    fn even_splits_cover_everything() {
        let r = split_even(11 << 30, MAX_PART);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, 0);
        assert_eq!(r.last().map(|r| r.end), Some(11 << 30));
        assert!(
            r.iter()
                .all(|r| r.end - r.start <= MAX_PART && r.end - r.start >= MIN_PART)
        );
        assert!(split_even(0, 5).is_empty());
    }
}
