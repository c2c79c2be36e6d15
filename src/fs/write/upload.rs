//! Uploading a staged file: one PutObject when it is small; a multipart upload whose parts
//! (server-side copies of the kept prefix, then staged data) go up in parallel; or a copy
//! onto itself when only attributes changed. The key and the attributes are asked of the
//! namespace when the upload runs, and the object is committed under the namespace's commit
//! guard after checking the key is still the inode's: a rename never leaves an upload behind
//! at the old name. On any failure the multipart upload is aborted and the previous object
//! stays as it was.

use super::retry::Pending;
use super::{Dirty, Staged, Writes};
use crate::fs::attr::Attr;
use crate::fs::error::FsError;
use crate::store::{NewObject, ObjectStore, Part};
use std::sync::Arc;
use tokio::sync::{RwLockReadGuard, RwLockWriteGuard};

/// Where an upload goes, and who says where.
#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    /// A file in the namespace: its key and attributes are asked of the namespace now.
    Inode(u64),
    /// A file whose last close could not upload it, retried in the background at the key
    /// and with the attributes it had then.
    Detached(&'a Pending),
}

impl Target<'_> {
    fn ino(&self) -> u64 {
        match self {
            Target::Inode(ino) => *ino,
            Target::Detached(p) => p.ino,
        }
    }
}

/// Held while an object is committed: shared for a file in the namespace; exclusive for a
/// retried upload, which must also find that nothing newer was written at its key.
pub(super) enum CommitGuard<'a> {
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

/// Smallest part S3 accepts (except the last).
pub const MIN_PART: u64 = 5 << 20;
/// Largest part, and largest single copy.
pub const MAX_PART: u64 = 5 << 30;
/// Most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// How many times an upload starts again because a rename moved the file under it.
const MOVED_RETRIES: usize = 3;

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

impl<S: ObjectStore> Writes<S> {
    /// The key an upload for `target` writes now.
    pub(super) fn target_key(&self, target: Target<'_>) -> Result<String, FsError> {
        match target {
            Target::Inode(ino) => self.ns.key_of(ino),
            Target::Detached(p) => Ok(p.key.clone()),
        }
    }

    /// Takes the guard under which `target` may be committed. A retried upload finds out
    /// there whether something newer was written at its key since (then it is superseded).
    pub(super) async fn commit_guard(&self, target: Target<'_>) -> Result<CommitGuard<'_>, FsError> {
        match target {
            Target::Inode(_) => Ok(CommitGuard::Shared(self.ns.commit_guard().await)),
            Target::Detached(p) => {
                let guard = self.ns.move_guard().await;
                if p.is_superseded() {
                    return Err(FsError::Stale(format!("{}: a newer version was written since", p.key)));
                }
                Ok(CommitGuard::Exclusive(guard))
            }
        }
    }

    /// Uploads `target` if it changed, so S3 holds exactly what the mount shows.
    pub(super) async fn upload(&self, target: Target<'_>, staged: &Staged, dirty: &mut Dirty) -> Result<(), FsError> {
        if dirty.discarded {
            self.abandon_stream(dirty);
            return Ok(());
        }
        if !dirty.changed {
            return Ok(());
        }
        let ino = target.ino();
        let size = staged.size();
        let attr = match target {
            Target::Inode(ino) => Attr {
                size,
                ..self.ns.attr(ino).ok_or(FsError::BadHandle)?
            },
            Target::Detached(p) => p.attr.clone(),
        };
        if dirty.stream.is_some() {
            if dirty.sequential && dirty.kept == 0 && self.finish_stream(target, size, dirty, &attr).await? {
                return Ok(());
            }
            self.abandon_stream(dirty);
        }
        // A kept prefix too small to be a part is brought over instead.
        if dirty.kept > 0 && dirty.kept < MIN_PART && size > dirty.kept {
            self.materialize(ino, dirty, size, 0).await?;
        }
        let new = self.new_object(dirty, &attr);
        let part_size = part_size_for(size, self.cfg.part_size);
        for _ in 0..MOVED_RETRIES {
            let only_attrs = dirty.kept == size
                && size > 0
                && size <= MAX_PART
                && dirty.base.as_ref().is_some_and(|b| b.size == size);
            if only_attrs {
                // Only attributes changed: a copy onto itself, on the server.
                let base_etag = dirty.base.as_ref().map(|b| b.etag()).ok_or(FsError::Invalid)?;
                let _commit = self.commit_guard(target).await?;
                let key = self.target_key(target)?;
                let source = self.ns.key_of(ino)?;
                let etag = self
                    .store
                    .copy(&source, &key, size, Some(&new), Some(&base_etag))
                    .await?;
                self.committed(target, dirty, &key, &attr, &etag);
                return Ok(());
            }
            if dirty.kept == 0 && size <= part_size {
                // A file kept in memory holds the memory for its bytes already.
                let _memory = match dirty.body {
                    super::memory::Body::Memory(_) => None,
                    super::memory::Body::File(_) => Some(self.memory.part(size).await?),
                };
                let body = self.read_staged(dirty, 0..size).await?;
                let _commit = self.commit_guard(target).await?;
                let key = self.target_key(target)?;
                let etag = self.store.put(&key, body, &new).await?;
                self.committed(target, dirty, &key, &attr, &etag);
                return Ok(());
            }
            if self.multipart(target, dirty, &new, &attr, size, part_size).await? {
                return Ok(());
            }
            tracing::debug!(ino, "the file moved during its upload; uploading again at its new name");
        }
        Err(FsError::Io(format!(
            "inode {ino}: renamed again and again during its upload"
        )))
    }

    /// Records a finished upload: the namespace gets the new version and attributes (or,
    /// for a retried upload, learns that the key changed), older retried uploads of the same
    /// key are superseded, and the staging state is even with S3.
    pub(super) fn committed(&self, target: Target<'_>, dirty: &mut Dirty, key: &str, attr: &Attr, etag: &str) {
        tracing::debug!(%key, size = attr.size, "uploaded");
        let version = match target {
            Target::Inode(ino) => Some(self.ns.committed(ino, key, attr, etag, attr.size)),
            Target::Detached(_) => {
                self.ns.written_elsewhere(key, attr, etag);
                None
            }
        };
        self.supersede_older(key, target);
        // The new object now holds everything below `kept` as well.
        if dirty.kept > 0
            && let Some(version) = version
        {
            dirty.base = Some(version);
        }
        dirty.changed = false;
        dirty.explicit_attrs = false;
        dirty.upload_failed = false;
        self.wrote_in(key);
    }

    /// A multipart upload of the whole file at the inode's key. Returns false, with nothing
    /// changed in S3, if the file was renamed before it could be completed.
    async fn multipart(
        &self,
        target: Target<'_>,
        dirty: &mut Dirty,
        new: &NewObject,
        attr: &Attr,
        size: u64,
        part_size: u64,
    ) -> Result<bool, FsError> {
        let key = self.target_key(target)?;
        let upload_id = self.store.create_multipart(&key, new).await?;
        let parts = match self
            .upload_parts(target.ino(), &key, &upload_id, dirty, size, part_size)
            .await
        {
            Ok(parts) => parts,
            Err(e) => {
                self.abort(&key, &upload_id).await;
                tracing::error!(%key, "upload failed, the object is unchanged: {e}");
                return Err(e);
            }
        };
        let commit = match self.commit_guard(target).await {
            Ok(guard) => guard,
            Err(e) => {
                self.abort(&key, &upload_id).await;
                return Err(e);
            }
        };
        if self.target_key(target)? != key {
            drop(commit);
            self.abort(&key, &upload_id).await;
            return Ok(false);
        }
        match self.store.complete_multipart(&key, &upload_id, parts).await {
            Ok(etag) => {
                self.committed(target, dirty, &key, attr, &etag);
                Ok(true)
            }
            Err(e) => {
                self.abort(&key, &upload_id).await;
                Err(e.into())
            }
        }
    }

    pub(super) async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self.store.abort_multipart(key, upload_id).await {
            tracing::warn!(%key, "aborting a failed upload failed too: {e}");
        }
    }

    async fn upload_parts(
        &self,
        ino: u64,
        key: &str,
        upload_id: &str,
        dirty: &Dirty,
        size: u64,
        part_size: u64,
    ) -> Result<Vec<Part>, FsError> {
        let mut plan: Vec<(i32, Option<std::ops::Range<u64>>, std::ops::Range<u64>)> = Vec::new();
        let mut number = 1;
        for r in split_even(dirty.kept, MAX_PART) {
            plan.push((number, Some(r.clone()), r));
            number += 1;
        }
        let mut offset = dirty.kept;
        while offset < size {
            let end = (offset + part_size).min(size);
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
                    // The kept prefix lies in the base version, at the inode's key now.
                    let base = dirty.base.clone().ok_or(FsError::Invalid)?;
                    let source = self.ns.key_of(ino)?;
                    tasks.spawn(async move {
                        let _permit = permit;
                        store
                            .upload_part_copy(&key, &upload_id, number, &source, r, Some(&base.etag()))
                            .await
                    });
                }
                None => {
                    let memory = self.memory.part(range.end - range.start).await?;
                    let body = self.read_staged(dirty, range).await?;
                    tasks.spawn(async move {
                        let _permit = permit;
                        let _memory = memory;
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

    /// Bytes of upload parts held in memory now, and the most held at once so far.
    pub fn upload_memory(&self) -> (u64, u64) {
        (self.memory.in_use(), self.memory.peak())
    }

    /// Part buffers free for the next file written front to back.
    #[cfg(test)]
    pub(crate) fn free_part_buffers(&self) -> usize {
        self.memory.buffers.free_count()
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
