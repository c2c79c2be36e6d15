//! Streaming uploads: while a new (or emptied) file is written strictly front to back, every
//! full part starts uploading at once, a bounded number at a time, so close only has to send
//! the tail. Parts come from memory (a file kept in memory: its parts are the only copy of
//! those bytes, so a part that fails is kept and sent again, and the stream is never given
//! up while the file is to be uploaded) or from the staging file (a write anywhere else
//! abandons the stream: the staging file still holds everything, and close uploads it the
//! ordinary way). A stream is bound to the key S3 started it at.

use super::memory::Body;
use super::upload::{MAX_PART, Target};
use super::{Dirty, Staged, Writes, part_error, read_range};
use crate::fs::attr::{self, Attr};
use crate::fs::error::FsError;
use crate::store::{NewObject, ObjectStore, Part, StoreError};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

/// How many times a part sent from memory is tried again at once when S3 refuses it.
const MEMORY_PART_RETRIES: u32 = 2;

/// Size of part `number` (from 1) of a stream whose final size is unknown: `min` for the
/// first 1,000 parts, doubling every 1,000, so 10,000 parts always reach 5 TiB (with 8 MiB:
/// about 8 TiB, the last parts 4 GiB).
pub fn streamed_part_size(number: i32, min: u64) -> u64 {
    let doublings = ((number.max(1) - 1) / 1000).min(20) as u32;
    (min << doublings).min(MAX_PART)
}

/// A part S3 has not taken yet, to be sent again.
pub(super) struct HeldPart {
    number: i32,
    /// Where its bytes start in the file.
    start: u64,
    len: u64,
    /// Its bytes, if they came from memory; a part read from the staging file is read
    /// again from there, so that it holds no memory that other writers may be waiting for.
    body: Option<Bytes>,
    _memory: Option<OwnedSemaphorePermit>,
}

/// Why a part did not go up, and its bytes if they must not be lost.
pub(super) struct PartFailure {
    error: StoreError,
    held: Option<HeldPart>,
}

type PartTask = JoinHandle<Result<Part, PartFailure>>;

/// A multipart upload that follows a sequential writer.
pub(super) struct Stream {
    upload_id: String,
    /// The key S3 started the upload at.
    pub(super) key: String,
    /// Headers sent when the upload was created.
    created: NewObject,
    next_start: u64,
    next_number: i32,
    inflight: VecDeque<PartTask>,
    done: Vec<Part>,
    /// Parts from memory that failed, to be sent again before the upload completes.
    failed: Vec<HeldPart>,
    /// Its parts come from memory: they are the only copy of those bytes.
    from_memory: bool,
}

impl<S: ObjectStore> Writes<S> {
    /// Starts the stream of `ino` at its key, with the attributes it has now.
    async fn start_stream(&self, ino: u64, dirty: &mut Dirty, from_memory: bool) -> Result<(), FsError> {
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
            failed: Vec::new(),
            from_memory,
        });
        Ok(())
    }

    /// Sends every full part of a file kept in memory. A refused CreateMultipartUpload
    /// fails the write (a role that may not write learns it at once); a part S3 does not
    /// take is kept, to be sent again at close.
    pub(super) async fn send_memory_parts(&self, ino: u64, dirty: &mut Dirty) -> Result<(), FsError> {
        loop {
            let number = dirty.stream.as_ref().map_or(1, |s| s.next_number);
            let size = streamed_part_size(number, self.cfg.part_size) as usize;
            let Body::Memory(m) = &dirty.body else {
                return Ok(());
            };
            if m.tail.len() < size {
                return Ok(());
            }
            if dirty.stream.is_none() {
                self.start_stream(ino, dirty, true).await?;
            }
            let (Body::Memory(m), Some(stream)) = (&mut dirty.body, dirty.stream.as_mut()) else {
                return Ok(());
            };
            let start = dirty.streamed_only;
            // In flight, the part's memory counts in the share that only parts in flight
            // hold (those end), and the tail's memory is free for the next bytes.
            let (body, tail) = m.cut(size, &self.memory.buffers);
            let memory = self.memory.part(size as u64).await?;
            drop(tail);
            let memory = Some(memory);
            dirty.streamed_only += size as u64;
            let store = self.store.clone();
            let (key, upload_id) = (stream.key.clone(), stream.upload_id.clone());
            stream.inflight.push_back(tokio::spawn(async move {
                let mut tries = 0;
                loop {
                    match store.upload_part(&key, &upload_id, number, body.clone()).await {
                        Ok(part) => return Ok(part),
                        Err(error) if tries >= MEMORY_PART_RETRIES => {
                            return Err(PartFailure {
                                error,
                                held: Some(HeldPart {
                                    number,
                                    start,
                                    len: body.len() as u64,
                                    body: Some(body),
                                    _memory: memory,
                                }),
                            });
                        }
                        Err(_) => {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                        }
                    }
                }
            }));
            stream.next_start = start + size as u64;
            stream.next_number = number + 1;
            self.settle_parts(stream, self.cfg.upload_concurrency.max(1)).await;
        }
    }

    /// Waits for the oldest parts until at most `keep` are in flight. Returns the first
    /// failure of a part from the staging file (those are not kept: the stream is given up).
    async fn settle_parts(&self, stream: &mut Stream, keep: usize) -> Option<String> {
        while stream.inflight.len() > keep {
            let oldest = stream.inflight.pop_front()?;
            match oldest.await {
                Ok(Ok(part)) => stream.done.push(part),
                Ok(Err(PartFailure {
                    error,
                    held: Some(mut held),
                })) => {
                    tracing::warn!(key = %stream.key, part = held.number, "a part failed; it is kept and sent again: {error}");
                    // Held until close, its memory counts among what files keep, if there
                    // is room, so that parts in flight do not wait for this file's close.
                    if held.body.is_some()
                        && let Some(idle) = self.memory.try_tail(held.len.div_ceil(1024) as usize)
                    {
                        held._memory = Some(idle);
                    }
                    stream.failed.push(held);
                }
                Ok(Err(PartFailure { error, held: None })) => return Some(error.to_string()),
                Err(e) => return Some(e.to_string()),
            }
        }
        None
    }

    /// Starts uploads for every full part a sequential writer has put in the staging file.
    /// A refused CreateMultipartUpload fails the write; a failed part only ends the stream.
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
                self.start_stream(ino, dirty, false).await?;
            }
            let file = self.staging_file_of(dirty)?;
            let memory = self.memory.part(size).await?;
            let Some(stream) = dirty.stream.as_mut() else {
                return Ok(());
            };
            let store = self.store.clone();
            let (key, upload_id) = (stream.key.clone(), stream.upload_id.clone());
            stream.inflight.push_back(tokio::spawn(async move {
                let staged = tokio::task::spawn_blocking(move || read_range(&file, start..start + size)).await;
                let body = match staged {
                    Ok(Ok(body)) => body,
                    Ok(Err(e)) => return Err(part_failure(part_error(&key, e.to_string()))),
                    Err(e) => return Err(part_failure(part_error(&key, e.to_string()))),
                };
                let sent = store.upload_part(&key, &upload_id, number, body).await;
                drop(memory);
                match sent {
                    Ok(part) => Ok(part),
                    // Sent again at close, from the staging file: the stream may hold parts
                    // from memory that exist nowhere else, so it is not given up.
                    Err(error) => Err(PartFailure {
                        error,
                        held: Some(HeldPart {
                            number,
                            start,
                            len: size,
                            body: None,
                            _memory: None,
                        }),
                    }),
                }
            }));
            stream.next_start = start + size;
            stream.next_number = number + 1;
            // Bounded: the writer waits while too many parts are in flight.
            if let Some(failed) = self.settle_parts(stream, self.cfg.upload_concurrency.max(1)).await {
                if stream.from_memory {
                    return Err(FsError::Io(failed));
                }
                tracing::warn!(key = %stream.key, "a streamed part failed; the file will be uploaded whole on close: {failed}");
                dirty.sequential = false;
                self.abandon_stream(dirty);
                return Ok(());
            }
        }
    }

    /// Ends a stream without completing it: its parts are discarded on the server. Only for
    /// bytes that are not to be uploaded (discarded, emptied) or that are also staged.
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

    /// Sends what is left and completes the stream. Returns false (the stream given up, the
    /// object unchanged) if the file of a staged stream was renamed since it started, so the
    /// caller uploads it whole. A stream from memory is never given up: on any failure it
    /// stays, with every byte S3 has not taken, for the next try.
    ///
    /// Attributes set explicitly while writing (chmod, chown, utimens: `cp -p`, `rsync -a`)
    /// are then stored with a copy onto itself; otherwise the object keeps the times it was
    /// created with, and the mount shows those.
    pub(super) async fn finish_stream(
        &self,
        target: Target<'_>,
        size: u64,
        dirty: &mut Dirty,
        attr: &Attr,
    ) -> Result<bool, FsError> {
        let Some(mut stream) = dirty.stream.take() else {
            return Ok(false);
        };
        let sent = self.send_rest(&mut stream, size, dirty).await;
        let parts = match sent {
            Ok(parts) => parts,
            Err(e) => return Err(self.stream_failed(dirty, stream, e).await),
        };
        let commit = match self.commit_guard(target).await {
            Ok(guard) => guard,
            Err(e) => return Err(self.stream_failed(dirty, stream, e).await),
        };
        if self.target_key(target)? != stream.key {
            drop(commit);
            if stream.from_memory {
                dirty.stream = Some(stream);
                return Err(FsError::Io("the file moved while its upload was under way".into()));
            }
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
                drop(commit);
                return Err(self.stream_failed(dirty, stream, e.into()).await);
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
        self.committed(target, dirty, &stream.key, &stored, &etag);
        if stream.from_memory {
            self.stream_committed(target, dirty, size);
        }
        Ok(true)
    }

    /// Waits for the parts in flight, sends again those kept after a failure, then sends the
    /// tail (from memory or the staging file). Returns every part, in order.
    async fn send_rest(&self, stream: &mut Stream, size: u64, dirty: &mut Dirty) -> Result<Vec<Part>, FsError> {
        if let Some(failed) = self.settle_parts(stream, 0).await {
            return Err(FsError::Io(failed));
        }
        while let Some(held) = stream.failed.pop() {
            let (body, _memory) = match &held.body {
                Some(body) => (body.clone(), None),
                None => {
                    let memory = self.memory.part(held.len).await?;
                    let body = self.read_staged(dirty, held.start..held.start + held.len).await?;
                    (body, Some(memory))
                }
            };
            match self
                .store
                .upload_part(&stream.key, &stream.upload_id, held.number, body)
                .await
            {
                Ok(part) => stream.done.push(part),
                Err(e) => {
                    stream.failed.push(held);
                    return Err(e.into());
                }
            }
        }
        let mut parts = stream.done.clone();
        if size > stream.next_start {
            // A file kept in memory holds the memory for its tail already.
            let _memory = match dirty.body {
                Body::Memory(_) => None,
                Body::File(_) => Some(self.memory.part(size - stream.next_start).await?),
            };
            // The tail is the last part: sent again whole at every try, replacing the last
            // one sent, so more bytes written after a failed try still end the object.
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

    /// A stream could not be completed: one from the staging file is given up (the file is
    /// uploaded whole next time); one from memory stays, with what S3 has not taken.
    async fn stream_failed(&self, dirty: &mut Dirty, stream: Stream, e: FsError) -> FsError {
        if stream.from_memory {
            tracing::warn!(key = %stream.key, "the upload could not be completed; it is kept and tried again: {e}");
            dirty.stream = Some(stream);
        } else {
            self.abort(&stream.key, &stream.upload_id).await;
            tracing::error!(key = %stream.key, "upload failed, the object is unchanged: {e}");
        }
        e
    }
}

fn part_failure(error: StoreError) -> PartFailure {
    PartFailure { error, held: None }
}

/// What a stream from memory holds locally after failures (parts S3 did not take, by
/// where they start), and the id of its upload, where the parts S3 took wait: for a
/// recovery file and its log line.
pub(super) fn held_parts(stream: &Stream) -> (Vec<(u64, Bytes)>, &str) {
    let held = stream
        .failed
        .iter()
        .filter_map(|h| Some((h.start, h.body.clone()?)))
        .collect();
    (held, &stream.upload_id)
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
