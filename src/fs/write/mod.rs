//! The write path. Every file open for writing has one staging state shared by all its
//! handles: a local, unnamed staging file holding the bytes that changed, over the object
//! version it started from. Bytes below `kept` are still that version's, so appending to a
//! large object never downloads it: the upload copies that prefix on the server
//! (UploadPartCopy). A staging state knows its inode, never its key: the key (and the
//! attributes) are asked of the namespace when the upload runs, so a rename of the file or of
//! a directory above it while it is open moves what is written with it.

mod memory;
mod retry;
mod stream;
mod upload;

pub use retry::PendingStatus;
pub use stream::streamed_part_size;
pub use upload::{MAX_PART, part_size_for, split_even};

use crate::fs::attr::Attr;
use crate::fs::error::FsError;
use crate::fs::lock;
use crate::fs::namespace::{Namespace, ObjectVersion};
use crate::fs::read::{ReadStream, Reads, Source};
use crate::store::{Metadata, NewObject, ObjectStore, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedMutexGuard;
use upload::Target;

/// How the write path behaves.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Where files being written are staged (unnamed files, gone when closed or on crash).
    pub staging_dir: std::path::PathBuf,
    /// Most bytes staged at once; writes past it get ENOSPC.
    pub staging_limit: u64,
    /// Smallest multipart part; grows with the file so 10,000 parts suffice.
    pub part_size: u64,
    /// Parts uploaded in parallel per file.
    pub upload_concurrency: usize,
    /// Most bytes of parts held in memory for uploads at once, over all files.
    pub upload_memory: u64,
    /// How long a directory the role was seen to write to is trusted to take more writes
    /// without asking S3 again.
    pub probe_ttl: Duration,
    /// How long a file whose last close could not upload it is retried in the background.
    pub retry_time: Duration,
    /// The first wait between retries; it doubles up to a minute.
    pub retry_backoff: Duration,
    /// Where the bytes of files that could not be uploaded are left.
    pub recovery_dir: std::path::PathBuf,
}

/// A file being written: shared by its handles, owned by the write path.
pub struct Staged {
    /// Open handles that may write; changed only under the write path's map lock, so a
    /// new open never joins a state that is being dropped.
    writers: AtomicUsize,
    /// The file's current size.
    size: AtomicU64,
    state: Arc<tokio::sync::Mutex<Dirty>>,
}

impl Staged {
    /// The file's current size, without waiting for an upload in progress.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
}

/// The staged contents of one file.
pub struct Dirty {
    /// Where the staged bytes are: in memory or in a staging file.
    body: memory::Body,
    /// Bytes `0..streamed_only` went up as parts of `stream` from memory and are nowhere
    /// else until it completes (then it is 0 again).
    streamed_only: u64,
    /// The object version whose bytes `0..kept` are still current.
    base: Option<Arc<ObjectVersion>>,
    kept: u64,
    /// User metadata of the base that is not POSIX, kept on upload; and its content type.
    extra: Metadata,
    content_type: Option<String>,
    /// Differs from S3.
    changed: bool,
    /// Unlinked or replaced while open: never uploaded.
    discarded: bool,
    /// Bytes counted against the staging limit.
    reserved: u64,
    /// Every write so far appended at the end (a stream may follow it).
    sequential: bool,
    /// The upload following a sequential writer, if one is under way.
    stream: Option<stream::Stream>,
    /// chmod, chown or utimens happened while the file was open.
    explicit_attrs: bool,
    /// The last upload failed (a close or fsync returned its error): the last close hands
    /// the file to the background retries without trying again at once.
    upload_failed: bool,
}

/// Staging states held still while keys move under them (a rename): no upload runs
/// meanwhile, and streams bound to the old key are dropped after.
pub struct MoveGuard<S: ObjectStore> {
    writes: Arc<Writes<S>>,
    held: Vec<(u64, OwnedMutexGuard<Dirty>)>,
}

impl<S: ObjectStore> MoveGuard<S> {
    /// `ino` lost its name to a rename: what is staged for it is never uploaded.
    pub fn discard(&mut self, ino: u64) {
        for (i, dirty) in &mut self.held {
            if *i == ino {
                dirty.discarded = true;
            }
        }
    }

    /// The keys moved: uploads streaming to the old keys are abandoned (the staged files
    /// still hold everything, and the next upload goes to the new key).
    pub fn moved(mut self) {
        for (_, dirty) in &mut self.held {
            self.writes.abandon_stream(dirty);
        }
    }
}

/// Bytes `range` of a staging file; past its end (a hole left by truncate) they read as zeros.
pub(crate) fn read_range(file: &std::fs::File, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
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

/// Maps a staging file error: a full disk or quota reaches the program as ENOSPC.
fn staging_error(e: std::io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => FsError::NoSpace,
        _ => FsError::Io(format!("staging file: {e}")),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> Result<T, FsError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(staging_error(e)),
        Err(e) => Err(FsError::Io(format!("staging task: {e}"))),
    }
}

/// The write path of one mount.
pub struct Writes<S: ObjectStore> {
    store: Arc<S>,
    ns: Arc<Namespace<S>>,
    reads: Arc<Reads<S>>,
    cfg: WriteConfig,
    files: Mutex<HashMap<u64, Arc<Staged>>>,
    staged_bytes: AtomicU64,
    /// Memory for files kept in memory and for upload parts.
    memory: memory::UploadMemory,
    /// Staging files made since the mount started.
    staging_files_made: AtomicU64,
    /// Directory prefixes the role was seen to write to, and when.
    writable: Mutex<HashMap<String, Instant>>,
    /// Files whose last close could not upload them, retried in the background.
    pending: Mutex<HashMap<u64, Arc<retry::Pending>>>,
    next_pending: AtomicU64,
    /// Files written to the recovery directory.
    recovered: AtomicU64,
    /// Last closes that could not upload their file.
    failed_closes: AtomicU64,
}

impl<S: ObjectStore> Writes<S> {
    /// The write path over `store`, asking `ns` for keys and attributes and reading base
    /// objects through `reads`.
    pub fn new(store: Arc<S>, ns: Arc<Namespace<S>>, reads: Arc<Reads<S>>, cfg: WriteConfig) -> Self {
        Writes {
            store,
            ns,
            reads,
            files: Mutex::new(HashMap::new()),
            staged_bytes: AtomicU64::new(0),
            memory: memory::UploadMemory::new(cfg.upload_memory, cfg.part_size),
            staging_files_made: AtomicU64::new(0),
            writable: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_pending: AtomicU64::new(1),
            recovered: AtomicU64::new(0),
            failed_closes: AtomicU64::new(0),
            cfg,
        }
    }

    /// The staging state of `ino`, if it is being written.
    pub fn staged(&self, ino: u64) -> Option<Arc<Staged>> {
        lock(&self.files).get(&ino).cloned()
    }

    /// The current size of `ino` if this mount is writing it (its attributes are then this
    /// mount's, not S3's).
    pub fn local_size(&self, ino: u64) -> Option<u64> {
        lock(&self.files).get(&ino).map(|s| s.size())
    }

    /// Files being written or waiting to be uploaded.
    pub fn pending_files(&self) -> usize {
        lock(&self.files).len() + lock(&self.pending).len()
    }

    /// Bytes held in staging files now.
    pub fn staged_bytes(&self) -> u64 {
        self.staged_bytes.load(Ordering::Relaxed)
    }

    /// Staging files made since the mount started (a file written front to back needs none).
    pub fn staging_files_made(&self) -> u64 {
        self.staging_files_made.load(Ordering::Relaxed)
    }

    fn staging_file(&self) -> Result<std::fs::File, FsError> {
        self.staging_files_made.fetch_add(1, Ordering::Relaxed);
        tempfile::tempfile_in(&self.cfg.staging_dir).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => FsError::NoSpace,
            _ => FsError::Io(format!(
                "cannot create a staging file in {}: {e}",
                self.cfg.staging_dir.display()
            )),
        })
    }

    /// The staging file of a file that is not kept in memory, made when first needed.
    fn staging_file_of(&self, dirty: &mut Dirty) -> Result<std::fs::File, FsError> {
        match &mut dirty.body {
            memory::Body::File(Some(file)) => file.try_clone().map_err(staging_error),
            memory::Body::File(slot) => {
                let file = self.staging_file()?;
                let copy = file.try_clone().map_err(staging_error)?;
                *slot = Some(file);
                Ok(copy)
            }
            memory::Body::Memory(_) => Err(FsError::Io("the file is kept in memory".into())),
        }
    }

    /// Accounts bytes `0..extent` past `kept` as staged, refusing with ENOSPC past the limit.
    fn reserve(&self, dirty: &mut Dirty, extent: u64) -> Result<(), FsError> {
        if extent <= dirty.reserved {
            return Ok(());
        }
        let delta = extent - dirty.reserved;
        let total = self.staged_bytes.fetch_add(delta, Ordering::SeqCst) + delta;
        if total > self.cfg.staging_limit {
            self.staged_bytes.fetch_sub(delta, Ordering::SeqCst);
            tracing::warn!("staging limit of {} bytes reached", self.cfg.staging_limit);
            return Err(FsError::NoSpace);
        }
        dirty.reserved = extent;
        Ok(())
    }

    fn unreserve(&self, dirty: &mut Dirty) {
        self.staged_bytes.fetch_sub(dirty.reserved, Ordering::SeqCst);
        dirty.reserved = 0;
    }

    // ---- may the role write here? -------------------------------------------------------------

    /// Makes sure the role may write `key` before a program starts writing it, so a refusal
    /// reaches the program at open(2), not at a close(2) it may never check. A directory the
    /// role was seen to write to is trusted for a while; otherwise S3 is asked with a
    /// multipart upload that is started and aborted at once: it needs the same permission as
    /// the upload that will follow, shows nothing to anyone, and sends no event.
    pub async fn check_writable(&self, key: &str) -> Result<(), FsError> {
        let dir = Namespace::<S>::dir_prefix_of_key(key).to_owned();
        if lock(&self.writable)
            .get(&dir)
            .is_some_and(|at| at.elapsed() < self.cfg.probe_ttl)
        {
            return Ok(());
        }
        let upload_id = self
            .store
            .create_multipart(key, &NewObject::default())
            .await
            .map_err(FsError::from)?;
        if let Err(e) = self.store.abort_multipart(key, &upload_id).await {
            tracing::warn!(%key, "aborting the upload that checked write access failed: {e}");
        }
        self.wrote_in(key);
        Ok(())
    }

    /// Records that the role just wrote `key`, so its directory needs no probe for a while.
    pub fn wrote_in(&self, key: &str) {
        let dir = Namespace::<S>::dir_prefix_of_key(key).to_owned();
        let mut writable = lock(&self.writable);
        if writable.len() > 10_000 {
            writable.retain(|_, at| at.elapsed() < self.cfg.probe_ttl);
        }
        writable.insert(dir, Instant::now());
    }

    // ---- staging states -------------------------------------------------------------------

    /// Starts (or joins) writing `ino`. A new staging state starts from the object S3 holds
    /// (bytes kept on the server) with `from_object`, else empty.
    pub async fn begin(&self, ino: u64, from_object: bool) -> Result<Arc<Staged>, FsError> {
        if let Some(s) = self.join(ino) {
            return Ok(s);
        }
        let (base, extra, content_type) = if from_object {
            let key = self.ns.key_of(ino)?;
            let info = self.ns.meta().head(&key).await?.ok_or(FsError::NotFound)?;
            let mut extra = info.metadata.clone().unwrap_or_default();
            for k in ["mode", "uid", "gid", "mtime", "atime", "ctime", "rdev"] {
                extra.remove(k);
            }
            // The object as S3 holds it now: if another client replaced it since this mount
            // last looked, the new one is what the file starts from.
            let version = self.ns.object_version(ino, &info.etag, info.size);
            (Some(version), extra, info.content_type.clone())
        } else {
            (None, Metadata::new(), None)
        };
        let size = base.as_ref().map(|b| b.size).unwrap_or(0);
        let dirty = Dirty {
            // A new file is kept in memory while it is written front to back.
            body: if from_object {
                memory::Body::File(None)
            } else {
                memory::MemoryBody::empty()
            },
            streamed_only: 0,
            kept: size,
            base,
            extra,
            content_type,
            changed: !from_object,
            discarded: false,
            reserved: 0,
            sequential: !from_object,
            stream: None,
            explicit_attrs: false,
            upload_failed: false,
        };
        let staged = Arc::new(Staged {
            writers: AtomicUsize::new(1),
            size: AtomicU64::new(size),
            state: Arc::new(tokio::sync::Mutex::new(dirty)),
        });
        // Another task may have started at the same time: keep the first.
        {
            let mut files = lock(&self.files);
            if let Some(existing) = files.get(&ino) {
                existing.writers.fetch_add(1, Ordering::AcqRel);
                return Ok(existing.clone());
            }
            files.insert(ino, staged.clone());
        }
        // Lock order: the inode table may be held while the map is taken, never the reverse.
        self.ns.hold(ino);
        Ok(staged)
    }

    /// Joins the staging state of `ino` as one more writer, if there is one.
    fn join(&self, ino: u64) -> Option<Arc<Staged>> {
        let files = lock(&self.files);
        let s = files.get(&ino)?;
        s.writers.fetch_add(1, Ordering::AcqRel);
        Some(s.clone())
    }

    /// One writer of `ino` is done. The last one uploads what is left; the staging state is
    /// dropped once no writer has come back meanwhile. With `readers_left` (other handles
    /// still open on `ino`), a state that is never to be uploaded (the file was unlinked or
    /// replaced) stays: it holds the only copy of what those handles must still read, as on
    /// a local disk. [`Writes::readers_done`] drops it.
    pub async fn end(self: &Arc<Self>, ino: u64, readers_left: bool) {
        let Some(staged) = self.staged(ino) else { return };
        let last = {
            let _files = lock(&self.files);
            staged.writers.fetch_sub(1, Ordering::AcqRel) == 1
        };
        if !last {
            return;
        }
        let mut dirty = staged.state.clone().lock_owned().await;
        let uploaded = if dirty.upload_failed && dirty.changed && !dirty.discarded {
            // The close just before this release already waited for S3 and failed.
            Err(FsError::Io("the last upload failed".into()))
        } else {
            self.upload(Target::Inode(ino), &staged, &mut dirty).await
        };
        if let Err(e) = uploaded
            && self.detach_failed(ino, &staged, &e)
        {
            return;
        }
        if readers_left && dirty.discarded {
            return;
        }
        self.drop_if_idle(ino, &staged, &mut dirty).await;
    }

    /// The last handle of `ino` is closed: a staging state kept for its readers goes.
    pub async fn readers_done(&self, ino: u64) {
        let Some(staged) = self.staged(ino) else { return };
        let mut dirty = staged.state.lock().await;
        if dirty.discarded {
            self.drop_if_idle(ino, &staged, &mut dirty).await;
        }
    }

    /// The last close of `ino` failed to upload it with `e`: hands it to the background
    /// retries. Returns false if it stays (a writer came back, or it has no name left).
    fn detach_failed(self: &Arc<Self>, ino: u64, staged: &Arc<Staged>, e: &FsError) -> bool {
        let attr = self.ns.attr(ino).map(|a| Attr {
            size: staged.size(),
            ..a
        });
        attr.is_some_and(|attr| self.detach(ino, staged, attr, e))
    }

    /// Drops the staging state of `ino` if nobody writes it and it has nothing left to upload.
    async fn drop_if_idle(&self, ino: u64, staged: &Arc<Staged>, dirty: &mut Dirty) {
        let dropped = {
            let mut files = lock(&self.files);
            let idle = staged.writers.load(Ordering::Acquire) == 0
                && (!dirty.changed || dirty.discarded)
                && files.get(&ino).is_some_and(|s| Arc::ptr_eq(s, staged));
            if idle {
                files.remove(&ino);
            }
            idle
        };
        if dropped {
            self.abandon_stream(dirty);
            self.unreserve(dirty);
            self.ns.let_go(ino).await;
        }
    }

    /// Uploads `ino` now if it has changes (close, fsync).
    pub async fn flush(&self, ino: u64) -> Result<(), FsError> {
        let Some(staged) = self.staged(ino) else {
            return Ok(());
        };
        let mut dirty = staged.state.lock().await;
        let result = self.upload(Target::Inode(ino), &staged, &mut dirty).await;
        dirty.upload_failed = result.is_err();
        result
    }

    /// `ino` is being unlinked: what is staged is never uploaded, but handles still open on
    /// it must read what was written. Bytes that went up only as parts of an upload under
    /// way (and left memory) are completed as its object first, which then stays until the
    /// last close, as an unlinked file's object does. If that fails, nothing changes and the
    /// unlink fails with the error.
    pub async fn discard_for_unlink(&self, ino: u64) -> Result<(), FsError> {
        if let Some(staged) = self.staged(ino) {
            let mut dirty = staged.state.lock().await;
            if dirty.streamed_only > 0 && !dirty.discarded {
                self.settle_for_change(ino, &staged, &mut dirty).await?;
            }
            self.never_upload(&mut dirty);
        }
        Ok(())
    }

    /// `ino` was replaced (or its change refused): what is staged is never uploaded.
    pub async fn discard(&self, ino: u64) {
        if let Some(staged) = self.staged(ino) {
            self.never_upload(&mut *staged.state.lock().await);
        }
    }

    /// Marks a staging state as never to be uploaded, and ends its upload under way.
    fn never_upload(&self, dirty: &mut Dirty) {
        dirty.discarded = true;
        self.abandon_stream(dirty);
    }

    /// Attributes of `ino` changed while it is being written: they go up with it. With
    /// `explicit` (chmod, chown, utimens), a streamed upload rewrites them after it completes.
    pub async fn attrs_changed(&self, ino: u64, explicit: bool) {
        if let Some(staged) = self.staged(ino) {
            let mut dirty = staged.state.lock().await;
            dirty.changed = true;
            dirty.explicit_attrs |= explicit;
        }
    }

    /// Holds still the staging states of `inos` (in a fixed order, so two renames cannot
    /// wait for each other) until the keys under them have moved. A file kept in memory
    /// whose parts went up under its current key is completed there first: an upload in
    /// progress cannot move.
    pub async fn hold_for_move(self: &Arc<Self>, inos: &[u64]) -> Result<MoveGuard<S>, FsError> {
        let mut states: Vec<(u64, Arc<Staged>)> = {
            let files = lock(&self.files);
            inos.iter()
                .filter_map(|i| files.get(i).map(|s| (*i, s.clone())))
                .collect()
        };
        states.sort_by_key(|(i, _)| *i);
        states.dedup_by_key(|(i, _)| *i);
        let mut held = Vec::with_capacity(states.len());
        for (ino, staged) in states {
            let mut dirty = staged.state.clone().lock_owned().await;
            if dirty.streamed_only > 0 && dirty.stream.is_some() && !dirty.discarded {
                tracing::debug!(ino, "a rename of a file kept in memory");
                self.settle_for_change(ino, &staged, &mut dirty).await?;
            }
            held.push((ino, dirty));
        }
        Ok(MoveGuard {
            writes: self.clone(),
            held,
        })
    }

    /// Inodes being written, for renames that must hold those under a directory.
    pub fn staged_inodes(&self) -> Vec<u64> {
        lock(&self.files).keys().copied().collect()
    }

    // ---- data -----------------------------------------------------------------------------

    /// Brings bytes `from..kept` of the base object into the staging file, so the staged
    /// part starts at `from`.
    async fn materialize(&self, ino: u64, dirty: &mut Dirty, size: u64, from: u64) -> Result<(), FsError> {
        if from >= dirty.kept {
            return Ok(());
        }
        let Some(base) = dirty.base.clone() else {
            dirty.kept = from;
            return Ok(());
        };
        self.reserve(dirty, size - from)?;
        let source = Source { ino, version: base };
        let stream = ReadStream::default();
        let mut offset = from;
        while offset < dirty.kept {
            let len = (dirty.kept - offset).min(8 << 20);
            let data = self.reads.read(&source, &stream, offset, len).await?;
            let file = self.staging_file_of(dirty)?;
            let at = offset;
            blocking(move || file.write_all_at(&data, at)).await?;
            offset += len;
        }
        dirty.kept = from;
        Ok(())
    }

    /// Writes `data` at `offset` of a file being written.
    pub async fn write(&self, ino: u64, staged: &Staged, offset: u64, data: Bytes) -> Result<u32, FsError> {
        let mut dirty = staged.state.lock().await;
        let size = staged.size();
        let len = data.len() as u32;
        let end = offset + data.len() as u64;
        let appends = offset == size && dirty.sequential;
        if appends && self.append_in_memory(&mut dirty, size, &data).await? {
            staged.size.store(end, Ordering::Release);
            self.ns.modified_now(ino);
            dirty.changed = true;
            if !dirty.discarded {
                self.send_memory_parts(ino, &mut dirty).await?;
            }
            return Ok(len);
        }
        if !appends && (matches!(dirty.body, memory::Body::Memory(_)) || dirty.streamed_only > 0) {
            tracing::debug!(
                ino,
                offset,
                size,
                sequential = dirty.sequential,
                "a write off the end of a file kept in memory"
            );
            self.settle_for_change(ino, staged, &mut dirty).await?;
        }
        if offset != size && dirty.sequential {
            dirty.sequential = false;
            self.abandon_stream(&mut dirty);
        }
        if offset < dirty.kept {
            self.materialize(ino, &mut dirty, size, offset).await?;
        }
        let extent = end.max(size) - dirty.kept.max(dirty.streamed_only);
        self.reserve(&mut dirty, extent)?;
        let file = self.staging_file_of(&mut dirty)?;
        blocking(move || file.write_all_at(&data, offset)).await?;
        let new_size = size.max(end);
        staged.size.store(new_size, Ordering::Release);
        self.ns.modified_now(ino);
        dirty.changed = true;
        if dirty.sequential && dirty.kept == 0 && !dirty.discarded {
            self.stream_parts(ino, staged, &mut dirty).await?;
        }
        Ok(len)
    }

    /// Sets the size of a file being written.
    pub async fn truncate(&self, ino: u64, staged: &Staged, size: u64) -> Result<(), FsError> {
        let mut dirty = staged.state.lock().await;
        if size == 0 {
            // Emptying a file starts it afresh, in memory: what went up is abandoned.
            self.abandon_stream(&mut dirty);
            self.unreserve(&mut dirty);
            dirty.body = memory::MemoryBody::empty();
            dirty.base = None;
            dirty.kept = 0;
            dirty.streamed_only = 0;
            dirty.sequential = true;
            staged.size.store(0, Ordering::Release);
            self.ns.modified_now(ino);
            dirty.changed = true;
            return Ok(());
        }
        if size == staged.size() {
            self.ns.modified_now(ino);
            dirty.changed = true;
            return Ok(());
        }
        if matches!(dirty.body, memory::Body::Memory(_)) || dirty.streamed_only > 0 {
            self.settle_for_change(ino, staged, &mut dirty).await?;
        }
        // Any other size change ends a stream.
        self.abandon_stream(&mut dirty);
        dirty.sequential = false;
        if size < dirty.kept {
            dirty.kept = size;
        }
        let extent = size - dirty.kept;
        self.reserve(&mut dirty, extent)?;
        let file = self.staging_file_of(&mut dirty)?;
        blocking(move || file.set_len(size)).await?;
        staged.size.store(size, Ordering::Release);
        self.ns.modified_now(ino);
        dirty.changed = true;
        Ok(())
    }

    /// Reads from a file being written: the kept prefix from the base object, the rest from
    /// the staging file.
    pub async fn read(&self, ino: u64, staged: &Staged, offset: u64, len: u32) -> Result<Bytes, FsError> {
        let mut dirty = staged.state.lock().await;
        let end = (offset + u64::from(len)).min(staged.size());
        if offset >= end {
            return Ok(Bytes::new());
        }
        if let memory::Body::Memory(m) = &dirty.body
            && let Some(bytes) = m.slice(dirty.streamed_only, offset..end)
        {
            return Ok(bytes);
        }
        if offset < dirty.streamed_only {
            // Bytes that went up only as parts: the upload is completed first, then read.
            tracing::debug!(ino, offset, "a read of bytes that went up only as parts");
            self.settle_for_change(ino, staged, &mut dirty).await?;
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        if offset < dirty.kept {
            let base = dirty
                .base
                .clone()
                .ok_or_else(|| FsError::Io("kept bytes without a base object".into()))?;
            let source = Source { ino, version: base };
            let upto = end.min(dirty.kept);
            let stream = ReadStream::default();
            out.extend_from_slice(&self.reads.read(&source, &stream, offset, upto - offset).await?);
        }
        let from = offset.max(dirty.kept);
        if from < end {
            out.extend_from_slice(&self.read_staged(&dirty, from..end).await?);
        }
        Ok(Bytes::from(out))
    }

    /// Bytes `range` of what is staged: from memory, or the staging file (a hole, or a
    /// staging file not made yet, reads as zeros).
    async fn read_staged(&self, dirty: &Dirty, range: std::ops::Range<u64>) -> Result<Bytes, FsError> {
        match &dirty.body {
            memory::Body::Memory(m) => m
                .slice(dirty.streamed_only, range.clone())
                .ok_or_else(|| FsError::Io(format!("bytes {range:?} are not in memory"))),
            memory::Body::File(None) => Ok(Bytes::from(vec![0u8; (range.end - range.start) as usize])),
            memory::Body::File(Some(file)) => {
                let file = file.try_clone().map_err(staging_error)?;
                blocking(move || read_range(&file, range)).await
            }
        }
    }

    /// The headers of the object to upload: the attributes the namespace has for `ino`,
    /// over the base object's other metadata and content type.
    fn new_object(&self, dirty: &Dirty, attr: &Attr) -> NewObject {
        let mut metadata = dirty.extra.clone();
        metadata.extend(crate::fs::attr::to_metadata(attr));
        NewObject {
            metadata,
            content_type: dirty.content_type.clone(),
        }
    }

    /// Uploads every file that still has changes, as a last close would: used when the
    /// daemon stops, so nothing written is lost. Files that cannot be uploaded get retries
    /// until `patience` is over, then go to the recovery directory.
    pub async fn finish_all(self: &Arc<Self>, patience: Duration) {
        let deadline = Instant::now() + patience;
        let all: Vec<(u64, Arc<Staged>)> = lock(&self.files).iter().map(|(i, s)| (*i, s.clone())).collect();
        let waiting = all.len() + lock(&self.pending).len();
        if waiting > 0 {
            tracing::info!("uploading {waiting} files before exiting");
        }
        for (ino, staged) in all {
            let mut dirty = staged.state.clone().lock_owned().await;
            staged.writers.store(0, Ordering::Release);
            if let Err(e) = self.upload(Target::Inode(ino), &staged, &mut dirty).await
                && self.detach_failed(ino, &staged, &e)
            {
                continue;
            }
            self.unreserve(&mut dirty);
            lock(&self.files).remove(&ino);
        }
        self.drain_pending(deadline).await;
    }
}

/// A store error for a part that could not be read from the staging file.
fn part_error(key: &str, message: String) -> StoreError {
    StoreError::Other {
        op: "UploadPart",
        key: key.to_owned(),
        code: None,
        message: format!("staging file: {message}"),
        request_id: None,
    }
}
