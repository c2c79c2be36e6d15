//! Streaming uploads: while a new (or truncated) file is written strictly sequentially,
//! every full part starts uploading at once, a bounded number at a time, so close only has
//! to send the tail. A write anywhere else abandons the stream; the staged file still holds
//! everything, and close uploads it the ordinary way.

use super::write::{Dirty, MAX_PART, read_range};
use super::{Fs, FsError};
use crate::store::{NewObject, ObjectStore, Part, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
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
    key: String,
    /// Headers sent when the upload was created.
    created: NewObject,
    next_start: u64,
    next_number: i32,
    inflight: VecDeque<JoinHandle<Result<Part, StoreError>>>,
    done: Vec<Part>,
}

fn staging_error(key: &str, message: String) -> StoreError {
    StoreError::Other {
        op: "UploadPart",
        key: key.to_owned(),
        code: None,
        message: format!("staging file: {message}"),
    }
}

impl Stream {
    /// The key being uploaded (a rename while open abandons the stream).
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

impl<S: ObjectStore> Fs<S> {
    /// Starts uploads for every full part the writer has produced. A refused
    /// CreateMultipartUpload fails the write (so a role that may not write learns it at
    /// once); a failed part only ends the stream.
    pub(super) async fn stream_parts(self: &Arc<Self>, dirty: &mut Dirty) -> Result<(), FsError> {
        loop {
            let (start, number) = dirty
                .stream
                .as_ref()
                .map(|s| (s.next_start, s.next_number))
                .unwrap_or((0, 1));
            let size = streamed_part_size(number, self.cfg.part_size);
            if dirty.size < start + size {
                return Ok(());
            }
            if dirty.stream.is_none() {
                let created = self.new_object(dirty);
                let upload_id = self.store.create_multipart(&dirty.key, &created).await?;
                dirty.stream = Some(Stream {
                    upload_id,
                    key: dirty.key.clone(),
                    created,
                    next_start: 0,
                    next_number: 1,
                    inflight: VecDeque::new(),
                    done: Vec::new(),
                });
            }
            let file = dirty.file.try_clone().map_err(|e| FsError::Io(e.to_string()))?;
            let Some(stream) = dirty.stream.as_mut() else {
                return Ok(());
            };
            let store = self.store.clone();
            let (key, upload_id) = (stream.key.clone(), stream.upload_id.clone());
            stream.inflight.push_back(tokio::spawn(async move {
                let staged = tokio::task::spawn_blocking(move || read_range(&file, start..start + size)).await;
                let body = match staged {
                    Ok(Ok(body)) => body,
                    Ok(Err(e)) => return Err(staging_error(&key, e.to_string())),
                    Err(e) => return Err(staging_error(&key, e.to_string())),
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
                match oldest.await {
                    Ok(Ok(part)) => stream.done.push(part),
                    Ok(Err(e)) => {
                        tracing::warn!(key = %stream.key, "a streamed part failed; the file will be uploaded whole on close: {e}");
                        dirty.sequential = false;
                        self.abandon_stream(dirty);
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::warn!("a streamed part task failed: {e}");
                        dirty.sequential = false;
                        self.abandon_stream(dirty);
                        return Ok(());
                    }
                }
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

    /// Sends the tail and completes the stream. Returns the new ETag. Attributes changed
    /// explicitly while writing (chmod, chown, utimens) are then set with a copy onto itself;
    /// otherwise the object keeps the modification time of the moment the stream started.
    pub(super) async fn finish_stream(self: &Arc<Self>, dirty: &mut Dirty) -> Result<String, FsError> {
        let Some(mut stream) = dirty.stream.take() else {
            return Err(FsError::Invalid);
        };
        let result: Result<String, FsError> = async {
            let mut parts = std::mem::take(&mut stream.done);
            while let Some(task) = stream.inflight.pop_front() {
                parts.push(task.await.map_err(|e| FsError::Io(e.to_string()))??);
            }
            if dirty.size > stream.next_start {
                let body = self.read_staged(dirty, stream.next_start..dirty.size).await?;
                parts.push(
                    self.store
                        .upload_part(&stream.key, &stream.upload_id, stream.next_number, body)
                        .await?,
                );
            }
            parts.sort_by_key(|p| p.number);
            Ok(self
                .store
                .complete_multipart(&stream.key, &stream.upload_id, parts)
                .await?)
        }
        .await;
        let etag = match result {
            Ok(etag) => etag,
            Err(e) => {
                if let Err(abort) = self.store.abort_multipart(&stream.key, &stream.upload_id).await {
                    tracing::warn!(key = %stream.key, "aborting the failed upload failed too: {abort}");
                }
                tracing::error!(key = %stream.key, "upload failed, the object is unchanged: {e}");
                return Err(e);
            }
        };
        let wanted = self.new_object(dirty);
        if dirty.explicit_attrs {
            if dirty.size <= MAX_PART {
                return Ok(self
                    .store
                    .copy(&stream.key, &stream.key, Some(&wanted), Some(&etag))
                    .await?);
            }
            tracing::warn!(key = %stream.key, "attributes set while writing a file over 5 GiB are not stored");
        }
        if let Some(t) = stream
            .created
            .metadata
            .get("mtime")
            .and_then(|t| super::attr::parse_time(t))
        {
            dirty.attr.mtime = t;
        }
        Ok(etag)
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
