//! Streaming uploads: while a new (or truncated) file is written strictly sequentially,
//! every full part starts uploading at once, a bounded number at a time, so close only has
//! to send the tail. A write anywhere else abandons the stream; the staged file still holds
//! everything, and close uploads it the ordinary way. A stream is bound to the key S3
//! started it at; if a rename moved the file since, it is abandoned and the file is uploaded
//! at its new name.

use super::upload::{MAX_PART, Target};
use super::{Dirty, Staged, Writes, part_error, read_range};
use crate::fs::attr::{self, Attr};
use crate::fs::error::FsError;
use crate::store::{NewObject, ObjectStore, Part, StoreError};
use std::collections::VecDeque;
use tokio::task::JoinHandle;

/// Size of part `number` (from 1) of a stream whose final size is unknown: `min` for the
/// first 1,000 parts, doubling every 1,000, so 10,000 parts always reach 5 TiB (with 8 MiB:
/// about 8 TiB, the last parts 4 GiB).
pub fn streamed_part_size(number: i32, min: u64) -> u64 {
    let doublings = ((number.max(1) - 1) / 1000).min(20) as u32;
    (min << doublings).min(MAX_PART)
}

/// A multipart upload that follows a sequential writer.
pub(super) struct Stream {
    upload_id: String,
    /// The key S3 started the upload at.
    key: String,
    /// Headers sent when the upload was created.
    created: NewObject,
    next_start: u64,
    next_number: i32,
    inflight: VecDeque<JoinHandle<Result<Part, StoreError>>>,
    done: Vec<Part>,
}

impl<S: ObjectStore> Writes<S> {
    /// Starts uploads for every full part the writer has produced. A refused
    /// CreateMultipartUpload fails the write (so a role that may not write learns it at
    /// once); a failed part only ends the stream.
    pub(super) async fn stream_parts(&self, ino: u64, staged: &Staged, dirty: &mut Dirty) -> Result<(), FsError> {
        loop {
            let (start, number) = dirty
                .stream
                .as_ref()
                .map(|s| (s.next_start, s.next_number))
                .unwrap_or((0, 1));
            let size = streamed_part_size(number, self.cfg.part_size);
            if staged.size() < start + size {
                return Ok(());
            }
            if dirty.stream.is_none() {
                let attr = self.ns.attr(ino).ok_or(FsError::BadHandle)?;
                let created = self.new_object(dirty, &attr);
                let key = self.ns.key_of(ino)?;
                let upload_id = self.store.create_multipart(&key, &created).await?;
                // The headers it was created with carry every attribute set so far.
                dirty.explicit_attrs = false;
                dirty.stream = Some(Stream {
                    upload_id,
                    key,
                    created,
                    next_start: 0,
                    next_number: 1,
                    inflight: VecDeque::new(),
                    done: Vec::new(),
                });
            }
            let file = dirty.file.try_clone().map_err(super::staging_error)?;
            let memory = self.part_memory(size).await?;
            let Some(stream) = dirty.stream.as_mut() else {
                return Ok(());
            };
            let store = self.store.clone();
            let (key, upload_id) = (stream.key.clone(), stream.upload_id.clone());
            stream.inflight.push_back(tokio::spawn(async move {
                let _memory = memory;
                let staged = tokio::task::spawn_blocking(move || read_range(&file, start..start + size)).await;
                let body = match staged {
                    Ok(Ok(body)) => body,
                    Ok(Err(e)) => return Err(part_error(&key, e.to_string())),
                    Err(e) => return Err(part_error(&key, e.to_string())),
                };
                store.upload_part(&key, &upload_id, number, body).await
            }));
            stream.next_start = start + size;
            stream.next_number = number + 1;
            // Bounded: the writer waits while too many parts are in flight.
            while stream.inflight.len() > self.cfg.upload_concurrency.max(1) {
                let Some(oldest) = stream.inflight.pop_front() else {
                    break;
                };
                let failed = match oldest.await {
                    Ok(Ok(part)) => {
                        stream.done.push(part);
                        continue;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(key = %stream.key, "a streamed part failed; the file will be uploaded whole on close: {failed}");
                dirty.sequential = false;
                self.abandon_stream(dirty);
                return Ok(());
            }
        }
    }

    /// Ends a stream without completing it: its parts are discarded on the server.
    pub(super) fn abandon_stream(&self, dirty: &mut Dirty) {
        if let Some(stream) = dirty.stream.take() {
            let store = self.store.clone();
            tokio::spawn(async move {
                for task in &stream.inflight {
                    task.abort();
                }
                if let Err(e) = store.abort_multipart(&stream.key, &stream.upload_id).await {
                    tracing::warn!(key = %stream.key, "aborting an abandoned upload failed: {e}");
                }
            });
        }
    }

    /// Sends the tail and completes the stream, if the file still has the key the stream
    /// started at; returns false (the stream given back) if it was renamed since. Attributes
    /// set explicitly while writing (chmod, chown, utimens: `cp -p`, `rsync -a`) are then
    /// stored with a copy onto itself; otherwise the object keeps the times it was created
    /// with, and the mount shows those.
    pub(super) async fn finish_stream(
        &self,
        ino: u64,
        size: u64,
        dirty: &mut Dirty,
        attr: &Attr,
    ) -> Result<bool, FsError> {
        let Some(mut stream) = dirty.stream.take() else {
            return Ok(false);
        };
        let sent: Result<Vec<Part>, FsError> = async {
            let mut parts = std::mem::take(&mut stream.done);
            while let Some(task) = stream.inflight.pop_front() {
                parts.push(task.await.map_err(|e| FsError::Io(e.to_string()))??);
            }
            if size > stream.next_start {
                let _memory = self.part_memory(size - stream.next_start).await?;
                let body = self.read_staged(dirty, stream.next_start..size).await?;
                parts.push(
                    self.store
                        .upload_part(&stream.key, &stream.upload_id, stream.next_number, body)
                        .await?,
                );
            }
            parts.sort_by_key(|p| p.number);
            Ok(parts)
        }
        .await;
        let parts = match sent {
            Ok(parts) => parts,
            Err(e) => {
                self.abort(&stream.key, &stream.upload_id).await;
                tracing::error!(key = %stream.key, "upload failed, the object is unchanged: {e}");
                return Err(e);
            }
        };
        let _commit = self.ns.commit_guard().await;
        if self.ns.key_of(ino)? != stream.key {
            self.abort(&stream.key, &stream.upload_id).await;
            return Ok(false);
        }
        let etag = match self
            .store
            .complete_multipart(&stream.key, &stream.upload_id, parts)
            .await
        {
            Ok(etag) => etag,
            Err(e) => {
                self.abort(&stream.key, &stream.upload_id).await;
                tracing::error!(key = %stream.key, "upload failed, the object is unchanged: {e}");
                return Err(e.into());
            }
        };
        let wanted = self.new_object(dirty, attr);
        let explicit = dirty.explicit_attrs;
        let (etag, stored) = if explicit && size <= MAX_PART && wanted != stream.created {
            let etag = self
                .store
                .copy(&stream.key, &stream.key, size, Some(&wanted), Some(&etag))
                .await?;
            (etag, attr.clone())
        } else {
            if explicit && wanted != stream.created {
                tracing::warn!(key = %stream.key, "attributes set while writing a file over 5 GiB are not stored");
            }
            // What S3 holds: the times the upload was created with.
            let times = attr::parse_metadata(&stream.created.metadata);
            let stored = Attr {
                mtime: times.mtime.unwrap_or(attr.mtime),
                ctime: times.ctime.unwrap_or(attr.ctime),
                atime: times.atime.unwrap_or(attr.atime),
                perm: times.perm.unwrap_or(attr.perm),
                uid: times.uid.unwrap_or(attr.uid),
                gid: times.gid.unwrap_or(attr.gid),
                ..attr.clone()
            };
            (etag, stored)
        };
        self.committed(Target::Inode(ino), dirty, &stream.key, &stored, &etag);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_parts_reach_five_tib_within_ten_thousand() {
        let min = 8 << 20;
        let total: u64 = (1..=10_000).map(|n| streamed_part_size(n, min)).sum();
        assert!(total >= 5 << 40, "{total}");
        assert!((1..=10_000).all(|n| streamed_part_size(n, min) <= MAX_PART));
        assert_eq!(streamed_part_size(1, min), min);
        assert_eq!(streamed_part_size(1001, min), 2 * min);
    }
}
