//! Files written front to back never touch the disk. Their bytes stay in memory until a
//! part is full, then go up as a part of a multipart upload, from that memory; a file smaller
//! than a part goes up in one PutObject at close. The memory comes from the one budget for
//! upload parts. When it is spent, the file's tail moves to a staging file and the stream goes
//! on from there, instead of waiting (so no writer holds memory while waiting for more).
//!
//! Bytes that went up as parts are only in S3's multipart upload until it completes. A
//! write anywhere but the end, a read of those bytes, or a truncate therefore first completes
//! what was written so far as the object, as an fsync would, and the staging file goes on on
//! top of it.

use super::upload::Target;
use super::{Dirty, Staged, Writes, blocking};
use crate::fs::bufpool::BufferPool;
use crate::fs::error::FsError;
use crate::store::ObjectStore;
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where the staged bytes of a file are.
pub(crate) enum Body {
    /// In memory (a file written front to back from empty): the bytes from `streamed_only`
    /// on.
    Memory(MemoryBody),
    /// In an unnamed staging file on local disk, made when first needed, at their offsets.
    File(Option<std::fs::File>),
}

/// The bytes of a file kept in memory.
pub(crate) struct MemoryBody {
    /// The bytes from the staging state's `streamed_only` to the end of the file, in a
    /// buffer from the pool of part buffers once it holds any.
    pub(crate) tail: Vec<u8>,
    /// The memory `tail` holds, from the budget for upload parts (in KiB).
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBody {
    /// An empty file.
    pub(crate) fn empty() -> Body {
        Body::Memory(MemoryBody {
            tail: Vec::new(),
            permit: None,
        })
    }

    /// Bytes `range` of the file, if they are in memory (the tail starts at `from`).
    pub(crate) fn slice(&self, from: u64, range: std::ops::Range<u64>) -> Option<Bytes> {
        let end = from + self.tail.len() as u64;
        if range.start < from || range.end > end {
            return None;
        }
        let (a, b) = ((range.start - from) as usize, (range.end - from) as usize);
        Some(Bytes::copy_from_slice(&self.tail[a..b]))
    }

    /// Takes the first `len` bytes of the tail as a part, with the memory they hold. The
    /// part keeps the tail's buffer, which goes back to `pool` once the part is sent; what
    /// is left of the tail (less than a write) starts the next buffer.
    pub(crate) fn cut(&mut self, len: usize, pool: &Arc<BufferPool>) -> (Bytes, Option<OwnedSemaphorePermit>) {
        let rest = &self.tail[len.min(self.tail.len())..];
        let next = match rest.is_empty() {
            true => Vec::new(),
            false => {
                let mut next = pool.take(pool.size());
                next.extend_from_slice(rest);
                next
            }
        };
        let mut part = std::mem::replace(&mut self.tail, next);
        part.truncate(len);
        let part = pool.freeze(part);
        let kib = len.div_ceil(1024);
        let permit = match self.permit.as_mut() {
            Some(p) if p.num_permits() > kib => p.split(kib),
            _ => self.permit.take(),
        };
        (part, permit)
    }
}

impl<S: ObjectStore> Writes<S> {
    /// Appends `data` at the end of a file kept in memory. Returns false, with nothing
    /// written, if the file is not (or no longer) in memory: the caller writes it to the
    /// staging file.
    pub(super) async fn append_in_memory(&self, dirty: &mut Dirty, size: u64, data: &Bytes) -> Result<bool, FsError> {
        let Body::Memory(m) = &mut dirty.body else {
            return Ok(false);
        };
        let held = m.permit.as_ref().map_or(0, |p| p.num_permits());
        let wanted = (m.tail.len() + data.len()).div_ceil(1024);
        if wanted > held {
            match self.memory.try_tail(wanted - held) {
                Some(more) => match m.permit.as_mut() {
                    Some(p) => p.merge(more),
                    None => m.permit = Some(more),
                },
                None => {
                    tracing::debug!(key = ?dirty.stream.as_ref().map(|s| &s.key), "no memory left for a file being written: its tail goes to a staging file");
                    self.spill(dirty, size).await?;
                    return Ok(false);
                }
            }
        }
        // A file that grows past a write's length moves to a part buffer; a small one never
        // holds one.
        let pool = &self.memory.buffers;
        if m.tail.len() + data.len() > MAX_WRITE && m.tail.capacity() < pool.size() {
            let mut buffer = pool.take(pool.size());
            buffer.extend_from_slice(&m.tail);
            m.tail = buffer;
        }
        m.tail.extend_from_slice(data);
        Ok(true)
    }

    /// Moves the tail of a file kept in memory to a staging file, at its offsets; the stream
    /// (if parts went up) goes on from there.
    async fn spill(&self, dirty: &mut Dirty, size: u64) -> Result<(), FsError> {
        let Body::Memory(m) = &mut dirty.body else {
            return Ok(());
        };
        let tail = Bytes::from(std::mem::take(&mut m.tail));
        let at = dirty.streamed_only;
        let file = self.staging_file()?;
        self.reserve(dirty, size - at)?;
        let copy = file.try_clone().map_err(super::staging_error)?;
        blocking(move || copy.write_all_at(&tail, at)).await?;
        dirty.body = Body::File(Some(file));
        Ok(())
    }

    /// Brings every byte of the file where a write anywhere, a read or a truncate can reach
    /// it: out of memory, and, if some went up only as parts, completed as the object first.
    pub(super) async fn settle_for_change(&self, ino: u64, staged: &Staged, dirty: &mut Dirty) -> Result<(), FsError> {
        if dirty.streamed_only > 0 && dirty.stream.is_some() {
            let size = staged.size();
            let attr = crate::fs::attr::Attr {
                size,
                ..self.ns.attr(ino).ok_or(FsError::BadHandle)?
            };
            if !self.finish_stream(Target::Inode(ino), size, dirty, &attr).await? {
                return Err(FsError::Io(format!(
                    "inode {ino}: its upload could not be completed before it changed course"
                )));
            }
            return Ok(());
        }
        self.spill(dirty, staged.size()).await
    }

    /// After an upload that completed bytes only the stream held: they are the object now,
    /// and anything written next goes to a staging file on top of it.
    pub(super) fn stream_committed(&self, target: Target<'_>, dirty: &mut Dirty, size: u64) {
        if let Target::Inode(ino) = target {
            dirty.base = self.ns.version(ino);
            dirty.kept = size;
        }
        dirty.streamed_only = 0;
        self.unreserve(dirty);
        dirty.body = Body::File(None);
        dirty.sequential = false;
    }
}

/// The largest write the kernel sends (FUSE max_write).
const MAX_WRITE: usize = 1 << 20;

/// Free part buffers kept for reuse: what a few files written at once cycle through.
const FREE_PART_BUFFERS: usize = 4;

/// The memory for upload parts, over all files, in two shares so that no writer can wait
/// forever. What files keep in memory while their writers may pause (tails not yet a full
/// part, parts S3 refused) only ever takes what is free now, from the first share, and a
/// file spills to a staging file when it is spent; parts in flight (from memory or read
/// from staging files) wait for the second share, which only parts in flight hold, and
/// those end. Were it one pool, idle files could hold all of it while another file waited
/// for a part, for as long as their writers pause.
pub(super) struct UploadMemory {
    /// Buffers for the tails of files kept in memory, each a part and one write long, so a
    /// tail never outgrows its buffer before it is cut. A few are kept free: a file written
    /// front to back reuses them instead of faulting in fresh memory for every part.
    pub(super) buffers: Arc<BufferPool>,
    tails: Arc<Semaphore>,
    parts: Arc<Semaphore>,
    /// KiB in each share.
    tails_total: u64,
    parts_total: u64,
    /// The most bytes held at once.
    peak: AtomicU64,
}

impl UploadMemory {
    /// A budget of `bytes`, half for each share, for parts of `part_size` bytes.
    pub(super) fn new(bytes: u64, part_size: u64) -> Self {
        let total = (bytes >> 10).clamp(2, u64::from(u32::MAX));
        let tails_total = total / 2;
        let parts_total = total - tails_total;
        let buffer = usize::try_from(part_size)
            .unwrap_or(usize::MAX)
            .saturating_add(MAX_WRITE);
        UploadMemory {
            buffers: BufferPool::new(buffer, FREE_PART_BUFFERS),
            tails: Arc::new(Semaphore::new(tails_total as usize)),
            parts: Arc::new(Semaphore::new(parts_total as usize)),
            tails_total,
            parts_total,
            peak: AtomicU64::new(0),
        }
    }

    /// `kib` more KiB for a file kept in memory, if they are free now.
    pub(super) fn try_tail(&self, kib: usize) -> Option<OwnedSemaphorePermit> {
        let permit = self
            .tails
            .clone()
            .try_acquire_many_owned(u32::try_from(kib).ok()?)
            .ok()?;
        self.note();
        Some(permit)
    }

    /// Waits until `len` bytes of a part in flight may be held (a part larger than the
    /// share counts as the whole share).
    pub(super) async fn part(&self, len: u64) -> Result<OwnedSemaphorePermit, FsError> {
        let kib = len.div_ceil(1024).clamp(1, self.parts_total) as u32;
        let permit = self
            .parts
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|e| FsError::Io(e.to_string()))?;
        self.note();
        Ok(permit)
    }

    /// Bytes held now.
    pub(super) fn in_use(&self) -> u64 {
        let free = (self.tails.available_permits() + self.parts.available_permits()) as u64;
        (self.tails_total + self.parts_total - free) << 10
    }

    /// The most bytes held at once so far.
    pub(super) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    fn note(&self) {
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
    }
}
