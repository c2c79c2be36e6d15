//! The filesystem core: async, unaware of FUSE, generic over the object store. Each kernel
//! request maps to one method here, which routes it to the part that owns the state:
//!
//! - [`namespace`]: which inode is at which name, its attributes, and the object version
//!   holding its bytes; the only code that turns an inode into a key.
//! - [`read`]: the block cache and the GETs that fill it, for one object version at a time.
//! - [`write`]: staging states of files being written, and their uploads.
//!
//! Open handles hold an inode number (and, for a reader, the version it opened), never a
//! key, so a rename moves everything that is open with it.

pub mod attr;
mod bufpool;
mod error;
mod namespace;
mod ops;
mod read;
mod singleflight;
mod write;

pub use attr::{Attr, Defaults, Kind};
pub use error::FsError;
pub use namespace::{DirItem, Listed, ROOT_INO, invalid_name};
pub use ops::SetAttr;
pub use read::{CacheStats, DiskCache};
pub use write::{PendingStatus, part_size_for, split_even, streamed_part_size};

use crate::store::ObjectStore;
use bytes::Bytes;
use namespace::{DirFill, Namespace, NamespaceConfig, ObjectVersion};
use read::{FillConfig, ReadConfig, ReadStream, Reads, Source};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use write::{WriteConfig, Writes};

/// How a mount behaves.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// Key prefix of the mount root: "" or ending with `/`.
    pub prefix: String,
    /// Attributes for objects without POSIX metadata.
    pub defaults: Defaults,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// How long listings and attributes are trusted.
    pub metadata_ttl: Duration,
    /// Byte budget of the block cache.
    pub cache_bytes: u64,
    /// Size of a cache block, and of the GET a random read costs.
    pub block_size: u64,
    /// Most bytes fetched ahead of a sequential reader.
    pub max_prefetch: u64,
    /// Largest single GET issued when prefetching.
    pub max_request: u64,
    /// HEAD requests in flight when filling attributes of a listed directory, at first.
    pub head_concurrency: usize,
    /// Whether objects carry POSIX attributes in their user metadata (`false`: attributes
    /// come from listings and the mount defaults, and files cost no HEAD).
    pub posix_metadata: bool,
    /// Where files being written are staged (unnamed files, gone when closed or on crash).
    pub staging_dir: std::path::PathBuf,
    /// Most bytes staged at once; writes past it get ENOSPC.
    pub staging_limit: u64,
    /// Smallest multipart part; grows with the file so 10,000 parts suffice.
    pub part_size: u64,
    /// Parts uploaded in parallel per file.
    pub upload_concurrency: usize,
    /// Most bytes of upload parts held in memory at once, over all files.
    pub upload_memory: u64,
    /// How long a file whose last close could not upload it is retried in the background.
    pub retry_time: Duration,
    /// The first wait between those retries; it doubles up to a minute.
    pub retry_backoff: Duration,
    /// Where the bytes of files that could not be uploaded are left.
    pub recovery_dir: std::path::PathBuf,
    /// Blocks kept on local disk across remounts (`--cache-dir`), if any.
    pub disk_cache: Option<Arc<DiskCache>>,
    /// Most bytes of whole local copies of files read at random (in `staging_dir`); 0: none.
    pub fill_limit: u64,
}

/// Where a mount keeps what must outlive it (the bytes of files that could not be
/// uploaded, the journal of its multipart uploads) unless told otherwise: root's in
/// `/var/lib/s3role`, another user's in `$XDG_STATE_HOME/s3role`.
pub fn default_state_dir() -> std::path::PathBuf {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return "/var/lib/s3role".into();
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state")));
    match state {
        Some(dir) => dir.join("s3role"),
        None => std::env::temp_dir().join("s3role-state"),
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            prefix: String::new(),
            defaults: Defaults::default(),
            read_only: false,
            metadata_ttl: Duration::from_secs(10),
            cache_bytes: 512 << 20,
            block_size: 64 << 10,
            max_prefetch: 128 << 20,
            max_request: 8 << 20,
            head_concurrency: 64,
            posix_metadata: true,
            staging_dir: std::env::temp_dir(),
            staging_limit: 10 << 30,
            part_size: 8 << 20,
            upload_concurrency: 8,
            upload_memory: 256 << 20,
            retry_time: Duration::from_secs(900),
            retry_backoff: Duration::from_secs(1),
            recovery_dir: default_state_dir().join("recovery"),
            disk_cache: None,
            fill_limit: 4 << 30,
        }
    }
}

/// Filesystem-wide numbers for `statfs`.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    /// Total blocks (of `block_size`).
    pub blocks: u64,
    /// Free blocks.
    pub free: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub free_files: u64,
    /// Block size.
    pub block_size: u32,
    /// Longest name.
    pub name_max: u32,
}

/// How the kernel may cache the pages of an open file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caching {
    /// Keep the pages it has: the object has not changed since the last open.
    pub keep: bool,
    /// Bypass the page cache for this handle: a writer while readers of the old version
    /// are open.
    pub direct: bool,
}

/// What an open file handle reads.
#[derive(Debug)]
enum View {
    /// The file's staging state (a handle that may write).
    Staged,
    /// The version it opened: a reader opened before a rewrite keeps reading the old bytes,
    /// or gets ESTALE once they are gone, never a mix of old and new.
    Pinned(Option<Arc<ObjectVersion>>),
    /// Whatever the file holds now (a reader opened while the file was being written sees
    /// what is staged, as on a local disk).
    Live,
}

/// One open file handle.
#[derive(Debug)]
struct Handle {
    ino: u64,
    writable: bool,
    /// The process that opened it (0: not known): closes from other processes that share
    /// the descriptor (a child's exec closing what fork gave it) do not upload.
    opener: AtomicU32,
    view: View,
    stream: ReadStream,
}

/// Entries from which closing a directory returns the freed heap to the system.
const LARGE_DIRECTORY: usize = 10_000;

/// One open directory: its entries as `opendir` listed them, so offsets stay valid while
/// the caller pages through them, and, once READDIRPLUS asks, their attributes.
struct DirHandle {
    ino: u64,
    items: Arc<Vec<DirItem>>,
    fill: std::sync::OnceLock<Arc<DirFill>>,
    /// A program asked for the attributes of one of its entries while it was open.
    attributes_wanted: std::sync::atomic::AtomicBool,
}

/// A mounted bucket (or prefix).
pub struct Fs<S: ObjectStore> {
    store: Arc<S>,
    cfg: FsConfig,
    ns: Arc<Namespace<S>>,
    reads: Arc<Reads<S>>,
    writes: Arc<Writes<S>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    next_handle: AtomicU64,
}

/// Locks a std mutex, going on after a panic elsewhere (the data is still consistent: no
/// critical section here can panic half-way).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: ObjectStore> Fs<S> {
    /// A filesystem over `store` rooted at `cfg.prefix`.
    pub fn new(store: Arc<S>, cfg: FsConfig) -> Arc<Self> {
        let ns = Arc::new(Namespace::new(
            store.clone(),
            NamespaceConfig {
                prefix: cfg.prefix.clone(),
                defaults: cfg.defaults,
                read_only: cfg.read_only,
                metadata_ttl: cfg.metadata_ttl,
                head_concurrency: cfg.head_concurrency,
                posix_metadata: cfg.posix_metadata,
            },
        ));
        let reads = Arc::new(Reads::new(
            store.clone(),
            ns.clone(),
            ReadConfig {
                cache_bytes: cfg.cache_bytes,
                block_size: cfg.block_size,
                max_prefetch: cfg.max_prefetch,
                max_request: cfg.max_request,
                disk: cfg.disk_cache.clone(),
                fill: FillConfig {
                    dir: cfg.staging_dir.clone(),
                    limit: cfg.fill_limit,
                },
            },
        ));
        let writes = Arc::new(Writes::new(
            store.clone(),
            ns.clone(),
            reads.clone(),
            WriteConfig {
                staging_dir: cfg.staging_dir.clone(),
                staging_limit: cfg.staging_limit,
                part_size: cfg.part_size,
                upload_concurrency: cfg.upload_concurrency,
                upload_memory: cfg.upload_memory,
                probe_ttl: cfg.metadata_ttl.max(Duration::from_secs(60)),
                retry_time: cfg.retry_time,
                retry_backoff: cfg.retry_backoff,
                recovery_dir: cfg.recovery_dir.clone(),
            },
        ));
        Arc::new(Fs {
            store,
            cfg,
            ns,
            reads,
            writes,
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        })
    }

    /// The mount's settings.
    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// The store behind the mount.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The size of `ino` if this mount is writing it: then its attributes are this mount's.
    fn local(&self) -> impl Fn(u64) -> Option<u64> + Sync + '_ {
        |ino| self.writes.local_size(ino)
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>, FsError> {
        lock(&self.handles).get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.ns.hold(handle.ino);
        lock(&self.handles).insert(fh, Arc::new(handle));
        fh
    }

    // ---- metadata -------------------------------------------------------------------------

    /// Finds `name` in directory `parent`; counts a kernel lookup on success.
    pub async fn lookup(self: &Arc<Self>, parent: u64, name: &str) -> Result<Attr, FsError> {
        self.attributes_wanted(parent);
        self.ns.lookup(parent, name, &self.local()).await
    }

    /// The kernel drops `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.ns.forget(ino, n);
    }

    /// Attributes of `ino`, refreshed once the metadata TTL has passed.
    pub async fn getattr(self: &Arc<Self>, ino: u64) -> Result<Attr, FsError> {
        // Every stat comes here: the inode table is asked for the parent only while some
        // open directory still hands out names first.
        let names_first = lock(&self.dirs)
            .values()
            .any(|h| !h.attributes_wanted.load(Ordering::Relaxed));
        if names_first && let Some(parent) = self.ns.table().get(ino).map(|n| n.parent) {
            self.attributes_wanted(parent);
        }
        self.ns.getattr(ino, &self.local()).await
    }

    /// Opens directory `ino`: takes a snapshot of its listing so offsets stay valid while
    /// the caller pages through it.
    pub async fn opendir(self: &Arc<Self>, ino: u64) -> Result<u64, FsError> {
        let items = Arc::new(self.ns.read_dir(ino, &self.local()).await?);
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle {
            ino,
            items,
            fill: std::sync::OnceLock::new(),
            attributes_wanted: std::sync::atomic::AtomicBool::new(false),
        };
        lock(&self.dirs).insert(fh, Arc::new(handle));
        Ok(fh)
    }

    fn dir_handle(&self, fh: u64) -> Result<Arc<DirHandle>, FsError> {
        lock(&self.dirs).get(&fh).cloned().ok_or(FsError::BadHandle)
    }

    /// Hands the entries of an open directory from `offset` on to `add`, until it returns
    /// `true` (its buffer is full: that entry was not taken).
    pub fn readdir(&self, fh: u64, offset: u64, mut add: impl FnMut(&DirItem) -> bool) -> Result<(), FsError> {
        let dir = self.dir_handle(fh)?;
        for item in dir.items.iter().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if add(item) {
                break;
            }
        }
        Ok(())
    }

    /// Every entry of an open directory from `offset` on.
    #[cfg(test)]
    pub(crate) fn readdir_all(&self, fh: u64, offset: u64) -> Result<Vec<DirItem>, FsError> {
        let mut items = Vec::new();
        self.readdir(fh, offset, |item| {
            items.push(item.clone());
            false
        })?;
        Ok(items)
    }

    /// Like [`readdir`](Self::readdir), with each entry's attributes, as READDIRPLUS answers:
    /// every entry `add` takes, but `.` and `..`, counts as a kernel lookup of its inode.
    /// Entries gone since `opendir` are left out. An error is returned only when no entry
    /// could be handed over.
    pub async fn readdirplus(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(&DirItem, &Attr, bool) -> bool + Send,
    ) -> Result<(), FsError> {
        let dir = self.dir_handle(fh)?;
        let fill = dir
            .fill
            .get_or_init(|| self.ns.dir_fill(dir.ino, dir.items.clone()))
            .clone();
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        // Until a program asks for an entry's attributes (a stat, after which the kernel
        // looks it up), entries go out at once with what the listing says, to be revalidated
        // at their first use: `find` costs no HEAD. From then on, each batch waits for its
        // entries' HEADs, sent a window ahead.
        let waiting = fill.started() || dir.attributes_wanted.load(Ordering::Relaxed);
        if waiting {
            fill.advance(from);
        } else if self.cfg.posix_metadata {
            // More than a batch holds, so the next batches find theirs done too.
            self.ns.prefetch_dirs(&fill, from, 512);
        }
        let mut added = 0;
        for (index, item) in fill.items().iter().enumerate().skip(from) {
            let unresolved = if waiting {
                None
            } else {
                self.ns.plus_entry_unresolved(&fill, index, &self.local())
            };
            let (attr, complete) = match unresolved {
                Some(attr) => (attr, false),
                None => match self.ns.plus_entry(&fill, index, &self.local()).await {
                    Ok(Some(attr)) => (attr, true),
                    Ok(None) => continue,
                    Err(e) if added == 0 => return Err(e),
                    Err(_) => break, // the kernel asks again from here
                },
            };
            if add(item, &attr, complete) {
                // Not taken: the kernel never counts it.
                if item.name != "." && item.name != ".." {
                    self.ns.forget(attr.ino, 1);
                }
                break;
            }
            added += 1;
        }
        Ok(())
    }

    /// A program asked for the attributes of an entry of directory `dir`: its open handles
    /// fetch attributes ahead from now on.
    fn attributes_wanted(&self, dir: u64) {
        for handle in lock(&self.dirs).values().filter(|h| h.ino == dir) {
            handle.attributes_wanted.store(true, Ordering::Relaxed);
            if let Some(fill) = handle.fill.get() {
                fill.advance(0);
            }
        }
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        let closed = lock(&self.dirs).remove(&fh);
        // What listing a large directory took (pages, answers, the entries' attributes on
        // their way to the kernel) is freed now: give it back to the system at once.
        if closed.is_some_and(|d| d.items.len() >= LARGE_DIRECTORY) {
            crate::heap::trim_soon();
        }
    }

    // ---- files -----------------------------------------------------------------------------

    /// Opens file `ino`. Returns the handle and how the kernel may cache its pages. Opening
    /// for writing checks that the role may write the file, so a refusal comes now, not at
    /// close.
    pub async fn open(self: &Arc<Self>, ino: u64, write: bool, truncate: bool) -> Result<(u64, Caching), FsError> {
        if write && self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let attr = self.getattr(ino).await?;
        match attr.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::File => {}
            // The kernel opens FIFOs and sockets itself, and devices not at all (nodev).
            _ => return Err(FsError::Invalid),
        }
        if !write {
            let (view, keep) = if self.writes.staged(ino).is_some() {
                (View::Live, false)
            } else {
                let (version, keep) = self.ns.open_version(ino);
                (View::Pinned(version), keep)
            };
            let fh = self.add_handle(Handle {
                ino,
                opener: AtomicU32::new(0),
                writable: false,
                view,
                stream: ReadStream::default(),
            });
            return Ok((fh, Caching { keep, direct: false }));
        }
        // The kernel's page cache is the file's, not a handle's: a writer's pages would show
        // through to readers that opened the old version. Past them, it writes directly.
        let readers = lock(&self.handles)
            .values()
            .any(|h| h.ino == ino && matches!(h.view, View::Pinned(_)));
        if self.writes.staged(ino).is_none() {
            self.writes.check_writable(&self.ns.key_of(ino)?).await?;
        }
        let staged = self.writes.begin(ino, true).await?;
        if truncate && let Err(e) = self.writes.truncate(ino, &staged, 0).await {
            self.writes.end(ino, false).await;
            return Err(e);
        }
        let fh = self.add_handle(Handle {
            ino,
            opener: AtomicU32::new(0),
            writable: true,
            view: View::Staged,
            stream: ReadStream::default(),
        });
        Ok((
            fh,
            Caching {
                keep: false,
                direct: readers,
            },
        ))
    }

    /// Creates file `name` in `parent` and opens it for writing. The role's permission to
    /// write there is checked now; the object appears when the file is first flushed,
    /// fsynced or closed.
    pub async fn create(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(Attr, u64), FsError> {
        let key = self.ns.new_key(parent, name, Kind::File)?;
        if self.ns.entry(parent, name, &self.local()).await?.is_some() {
            return Err(FsError::Exists);
        }
        self.writes.check_writable(&key).await?;
        let (perm, gid) = self.inherit(parent, Kind::File, (mode & 0o7777) as u16, gid).await?;
        let attr = Attr::new(Kind::File, 0, perm, uid, gid, SystemTime::now());
        let attr = self.ns.link_new(parent, name, attr);
        if let Err(e) = self.writes.begin(attr.ino, false).await {
            self.ns.unlink(parent, name, None);
            return Err(e);
        }
        self.ns.touch(parent, true);
        let fh = self.add_handle(Handle {
            ino: attr.ino,
            opener: AtomicU32::new(0),
            writable: true,
            view: View::Staged,
            stream: ReadStream::default(),
        });
        Ok((attr, fh))
    }

    /// Reads up to `size` bytes at `offset` from an open file.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let h = self.handle(fh)?;
        let version = match &h.view {
            View::Pinned(v) => v.clone(),
            View::Staged | View::Live => {
                if let Some(staged) = self.writes.staged(h.ino) {
                    return self.writes.read(h.ino, &staged, offset, size).await;
                }
                self.ns.version(h.ino)
            }
        };
        let Some(version) = version else {
            return Ok(Bytes::new());
        };
        let source = Source { ino: h.ino, version };
        self.reads.read(&source, &h.stream, offset, u64::from(size)).await
    }

    /// Writes `data` at `offset` of an open file.
    pub async fn write(self: &Arc<Self>, fh: u64, offset: u64, data: Bytes) -> Result<u32, FsError> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(FsError::BadHandle);
        }
        let staged = self.writes.staged(h.ino).ok_or(FsError::BadHandle)?;
        self.writes.write(h.ino, &staged, offset, data).await
    }

    /// close(2) of one descriptor: uploads the file if it changed, so the error reaches the
    /// program.
    pub async fn flush(self: &Arc<Self>, fh: u64) -> Result<(), FsError> {
        self.flush_by(fh, None).await
    }

    /// close(2) by process `closer`: uploads only if it is the process that opened the
    /// handle (or either is unknown). Every fork gives the child the parent's descriptors,
    /// and the child's exec or exit closes them; uploading then would end a stream midway
    /// through the parent's writing. The parent's own close, and the last release, upload.
    pub async fn flush_by(self: &Arc<Self>, fh: u64, closer: Option<u32>) -> Result<(), FsError> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Ok(());
        }
        let opener = h.opener.load(Ordering::Relaxed);
        if let Some(closer) = closer
            && opener != 0
            && opener != closer
        {
            return Ok(());
        }
        self.writes.flush(h.ino).await
    }

    /// Records which process opened `fh`, for [`Fs::flush_by`].
    pub fn opened_by(&self, fh: u64, opener: u32) {
        if let Some(h) = lock(&self.handles).get(&fh) {
            h.opener.store(opener, Ordering::Relaxed);
        }
    }

    /// fsync(2): returns once S3 holds what the file holds, whichever descriptor it is
    /// called on.
    pub async fn fsync(self: &Arc<Self>, fh: u64) -> Result<(), FsError> {
        let h = self.handle(fh)?;
        self.writes.flush(h.ino).await
    }

    /// Closes a file handle; the last writer uploads what is left.
    pub async fn release(self: &Arc<Self>, fh: u64) {
        let Some(h) = lock(&self.handles).remove(&fh) else {
            return;
        };
        let readers_left = lock(&self.handles).values().any(|other| other.ino == h.ino);
        if h.writable {
            self.writes.end(h.ino, readers_left).await;
        } else if !readers_left {
            self.writes.readers_done(h.ino).await;
        }
        self.ns.let_go(h.ino).await;
    }

    /// The target of symlink `ino`.
    pub async fn readlink(self: &Arc<Self>, ino: u64) -> Result<Vec<u8>, FsError> {
        let attr = self.getattr(ino).await?;
        if attr.kind != Kind::Symlink {
            return Err(FsError::Invalid);
        }
        let key = self.ns.key_of(ino)?;
        let info = self.ns.meta().head(&key).await?.ok_or(FsError::NotFound)?;
        if let Some(target) = info.metadata.as_ref().and_then(|m| m.get("--symlink-target")) {
            return Ok(target.clone().into_bytes());
        }
        let body = self.store.get_range(&key, 0..info.size.min(4096), None).await?;
        Ok(body.collect().await?.to_vec())
    }

    /// Filesystem totals: S3 has no limits worth reporting, so large free counts.
    pub fn statfs(&self) -> StatFs {
        StatFs {
            blocks: 1 << 40,
            free: 1 << 40,
            files: 1 << 40,
            free_files: 1 << 40,
            block_size: 4096,
            name_max: 255,
        }
    }

    /// Refuses a change on a read-only mount; on a writable one the operation is not built yet.
    pub fn refuse_write(&self) -> FsError {
        if self.cfg.read_only {
            FsError::ReadOnly
        } else {
            FsError::NotPermitted
        }
    }

    // ---- status ------------------------------------------------------------------------------

    /// Files with changes not yet uploaded, and files open for writing.
    pub fn pending_files(&self) -> usize {
        self.writes.pending_files()
    }

    /// Uploads every file that still has changes, as a last close would: used when the
    /// daemon stops, so nothing written is lost. What cannot be uploaded within a minute (or
    /// the retry time, if shorter) goes to the recovery directory.
    pub async fn finish_all(self: &Arc<Self>) {
        self.writes
            .finish_all(self.cfg.retry_time.min(Duration::from_secs(60)))
            .await;
    }

    /// Bytes of upload parts held in memory now, and the most held at once since the mount
    /// started (bounded by `upload_memory` over all files).
    pub fn upload_memory(&self) -> (u64, u64) {
        self.writes.upload_memory()
    }

    /// Files whose last close could not upload them, retried in the background.
    pub fn pending_status(&self) -> PendingStatus {
        self.writes.pending_status()
    }

    /// Bytes held in staging files now.
    pub fn staged_bytes(&self) -> u64 {
        self.writes.staged_bytes()
    }

    /// Staging files made since the mount started: a file written front to back needs none.
    pub fn staging_files_made(&self) -> u64 {
        self.writes.staging_files_made()
    }

    /// Bytes held by the block cache.
    pub fn cached_bytes(&self) -> u64 {
        self.reads.cached_bytes()
    }

    /// Whole local copies of files read at random: bytes on disk, bytes fetched, reads served.
    pub fn copy_figures(&self) -> (u64, u64, u64) {
        self.reads.copy_figures()
    }

    /// The disk cache's bytes, hits, misses and damaged files found, if there is one.
    pub fn disk_cache_stats(&self) -> Option<(u64, u64, u64, u64)> {
        let disk = self.cfg.disk_cache.as_ref()?;
        Some((
            disk.bytes(),
            disk.stats.hits.load(Ordering::Relaxed),
            disk.stats.misses.load(Ordering::Relaxed),
            disk.stats.corrupt.load(Ordering::Relaxed),
        ))
    }

    /// Blocks served from the cache and blocks fetched, since the mount started.
    pub fn cache_hits_misses(&self) -> (u64, u64) {
        (
            self.reads.stats.hits.load(Ordering::Relaxed),
            self.reads.stats.misses.load(Ordering::Relaxed),
        )
    }

    /// Outstanding kernel lookups of `ino`, if the table holds it.
    #[cfg(test)]
    pub(crate) fn lookups(&self, ino: u64) -> Option<u64> {
        self.ns.table().get(ino).map(|n| n.lookups)
    }

    /// Files open through the mount now.
    pub fn open_files(&self) -> usize {
        lock(&self.handles).len()
    }

    /// Inodes currently known (for tests and status).
    pub fn inode_count(&self) -> usize {
        self.ns.table().count()
    }

    /// Objects whose attributes are cached, and directories whose listings are: with the
    /// inode count, what a long-running mount holds in memory besides blocks.
    pub fn metadata_cache_sizes(&self) -> (usize, usize) {
        self.ns.meta().sizes()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod write_tests;

#[cfg(test)]
mod open_tests;

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod resource_tests;

#[cfg(test)]
mod test_support;

#[cfg(test)]
mod posix_tests;

#[cfg(test)]
mod listing_tests;
