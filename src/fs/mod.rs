//! The filesystem core: async, unaware of FUSE, generic over the object store. Each kernel
//! request maps to one method here.

pub mod attr;
mod bufpool;
mod cache;
mod dir;
mod error;
mod inode;
mod ops;
mod read;
mod singleflight;
mod stream;
mod write;

pub use attr::{Attr, Defaults, Kind};
pub use cache::CacheStats;
pub use dir::invalid_name;
pub use error::FsError;
pub use inode::ROOT_INO;
pub use ops::SetAttr;
pub use write::{part_size_for, split_even};

use crate::store::{ObjectInfo, ObjectStore};
use cache::BlockCache;
use dir::{DirEntry, Listing};
use inode::{InodeTable, Stat};
use read::{BlockState, OpenFile};
use singleflight::SingleFlight;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

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
    /// HEAD requests in flight when filling attributes of a listed directory.
    pub head_concurrency: usize,
    /// Where files being written are staged (unnamed files, gone when closed or on crash).
    pub staging_dir: std::path::PathBuf,
    /// Most bytes staged at once; writes past it get ENOSPC.
    pub staging_limit: u64,
    /// Smallest multipart part; grows with the file so 10,000 parts suffice.
    pub part_size: u64,
    /// Parts uploaded in parallel per file.
    pub upload_concurrency: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            prefix: String::new(),
            defaults: Defaults::default(),
            read_only: false,
            metadata_ttl: Duration::from_secs(10),
            cache_bytes: 512 << 20,
            block_size: 256 << 10,
            max_prefetch: 128 << 20,
            max_request: 8 << 20,
            head_concurrency: 64,
            staging_dir: std::env::temp_dir(),
            staging_limit: 10 << 30,
            part_size: 8 << 20,
            upload_concurrency: 8,
        }
    }
}

/// One entry returned by [`Fs::readdir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirItem {
    /// Inode number.
    pub ino: u64,
    /// Offset to resume after this entry.
    pub next_offset: u64,
    /// Type.
    pub kind: Kind,
    /// Name.
    pub name: String,
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

/// Counters for `s3role status` and benchmarks.
#[derive(Debug, Default)]
pub struct FsStats {
    /// Block cache hits and misses.
    pub cache: CacheStats,
    /// HEAD requests sent.
    pub heads: AtomicU64,
    /// Listing pages requested.
    pub lists: AtomicU64,
}

type HeadResult = Result<Option<ObjectInfo>, FsError>;

/// A mounted bucket (or prefix).
pub struct Fs<S: ObjectStore> {
    store: Arc<S>,
    cfg: FsConfig,
    inodes: Mutex<InodeTable>,
    listings: Mutex<HashMap<String, Arc<Listing>>>,
    /// Changes this mount has made (writes, deletes); a listing fetched while one happened
    /// is not cached.
    changes: AtomicU64,
    list_flight: SingleFlight<String, Result<Arc<Listing>, FsError>>,
    heads: Mutex<lru::LruCache<String, (HeadResult, Instant)>>,
    head_flight: SingleFlight<String, HeadResult>,
    head_limit: Arc<Semaphore>,
    blocks: Mutex<BlockState>,
    buffers: Arc<bufpool::BufferPool>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirty: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<write::Dirty>>>>,
    staged: AtomicU64,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirItem>>>>,
    next_handle: AtomicU64,
    mounted_at: SystemTime,
    /// Counters.
    pub stats: FsStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

impl<S: ObjectStore> Fs<S> {
    /// A filesystem over `store` rooted at `cfg.prefix`.
    pub fn new(store: Arc<S>, cfg: FsConfig) -> Arc<Self> {
        let heads = lru::LruCache::new(std::num::NonZeroUsize::new(200_000).unwrap_or(std::num::NonZeroUsize::MIN));
        Arc::new(Fs {
            store,
            head_limit: Arc::new(Semaphore::new(cfg.head_concurrency.max(1))),
            blocks: Mutex::new(BlockState::new(BlockCache::new(cfg.cache_bytes))),
            buffers: bufpool::BufferPool::new(read::group_buffer_size(cfg.block_size), 64),
            cfg,
            inodes: Mutex::new(InodeTable::new()),
            listings: Mutex::new(HashMap::new()),
            changes: AtomicU64::new(0),
            list_flight: SingleFlight::default(),
            heads: Mutex::new(heads),
            head_flight: SingleFlight::default(),
            files: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashMap::new()),
            staged: AtomicU64::new(0),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
            stats: FsStats::default(),
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

    fn key_of(&self, path: &str) -> String {
        format!("{}{}", self.cfg.prefix, path)
    }

    fn dir_prefix(&self, path: &str) -> String {
        if path.is_empty() {
            self.cfg.prefix.clone()
        } else {
            format!("{}{}/", self.cfg.prefix, path)
        }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.cfg.metadata_ttl
    }

    fn inode(&self, ino: u64) -> Result<inode::Inode, FsError> {
        lock(&self.inodes).get(ino).cloned().ok_or(FsError::BadHandle)
    }

    // ---- metadata -------------------------------------------------------------------------

    /// The listing of the directory at `path`, from cache while fresh.
    async fn listing(self: &Arc<Self>, path: &str) -> Result<Arc<Listing>, FsError> {
        let prefix = self.dir_prefix(path);
        if let Some(l) = lock(&self.listings).get(&prefix)
            && self.fresh(l.fetched)
        {
            return Ok(l.clone());
        }
        let me = self.clone();
        let p = prefix.clone();
        self.list_flight
            .run(prefix, || async move {
                me.stats.lists.fetch_add(1, Ordering::Relaxed);
                let changes = me.changes.load(Ordering::Relaxed);
                let listing = Arc::new(dir::list_dir(me.store.as_ref(), &p).await?);
                // A listing that raced with a change made here may lack it: use it once,
                // do not keep it.
                if me.changes.load(Ordering::Relaxed) == changes {
                    let mut all = lock(&me.listings);
                    all.retain(|_, l| me.fresh(l.fetched));
                    all.insert(p, listing.clone());
                }
                Ok(listing)
            })
            .await
    }

    fn cached_listing(&self, path: &str) -> Option<Arc<Listing>> {
        let l = lock(&self.listings).get(&self.dir_prefix(path)).cloned()?;
        self.fresh(l.fetched).then_some(l)
    }

    /// HEAD of `key`, `None` if it does not exist; cached for the metadata TTL and shared by
    /// concurrent callers.
    async fn head(self: &Arc<Self>, key: &str) -> HeadResult {
        if let Some((r, at)) = lock(&self.heads).get(key)
            && self.fresh(*at)
        {
            return r.clone();
        }
        let me = self.clone();
        let k = key.to_owned();
        self.head_flight
            .run(key.to_owned(), || async move {
                let _permit = me.head_limit.clone().acquire_owned().await;
                me.stats.heads.fetch_add(1, Ordering::Relaxed);
                let r = match me.store.head(&k).await {
                    Ok(info) => Ok(Some(info)),
                    Err(crate::store::StoreError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(FsError::from(e)),
                };
                if !matches!(r, Err(FsError::Io(_))) {
                    let mut heads = lock(&me.heads);
                    heads.put(k, (r.clone(), Instant::now()));
                    // Expired answers are never served again: drop them from the cold end,
                    // so the cache holds the recent working set, not every key ever seen.
                    while heads.peek_lru().is_some_and(|(_, (_, at))| !me.fresh(*at)) {
                        heads.pop_lru();
                    }
                }
                r
            })
            .await
    }

    fn attr_of_object(&self, info: &ObjectInfo, kind_hint: Kind) -> Attr {
        let posix = info.metadata.as_ref().map(attr::parse_metadata).unwrap_or_default();
        let kind = match (kind_hint, posix.kind) {
            (Kind::Dir, _) => Kind::Dir,
            (_, Some(k)) => k,
            (k, None) => k,
        };
        let d = self.cfg.defaults;
        let mtime = posix.mtime.unwrap_or(info.last_modified);
        Attr {
            ino: 0,
            kind,
            size: if kind == Kind::Dir { 0 } else { info.size },
            perm: posix
                .perm
                .unwrap_or(if kind == Kind::Dir { d.dir_mode } else { d.file_mode }),
            uid: posix.uid.unwrap_or(d.uid),
            gid: posix.gid.unwrap_or(d.gid),
            mtime,
            atime: posix.atime.unwrap_or(mtime),
            ctime: posix.ctime.unwrap_or(mtime),
            rdev: posix.rdev.unwrap_or(0),
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        }
    }

    fn default_dir_attr(&self) -> Attr {
        let d = self.cfg.defaults;
        Attr::new(Kind::Dir, 0, d.dir_mode, d.uid, d.gid, self.mounted_at)
    }

    /// Attributes of the directory at `path`: from its marker object's metadata, or the
    /// mount defaults when it has none.
    async fn dir_attr(self: &Arc<Self>, path: &str) -> Result<(Attr, String), FsError> {
        if path.is_empty() && self.cfg.prefix.is_empty() {
            return Ok((self.default_dir_attr(), String::new()));
        }
        match self.head(&self.dir_prefix(path)).await? {
            Some(marker) => Ok((self.attr_of_object(&marker, Kind::Dir), marker.etag)),
            None => Ok((self.default_dir_attr(), String::new())),
        }
    }

    /// What `path` is now, with its attributes, or `None` if nothing is there.
    async fn resolve(self: &Arc<Self>, parent_path: &str, path: &str) -> Result<Option<(Attr, String)>, FsError> {
        let written = lock(&self.inodes)
            .by_path(path)
            .map(|i| i.ino)
            .and_then(|ino| self.dirty_of(ino));
        if let Some(d) = written {
            let dirty = d.lock().await;
            if !dirty.unlinked {
                return Ok(Some((dirty.attr.clone(), String::new())));
            }
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if let Some(listing) = self.cached_listing(parent_path) {
            let Some(entry) = listing.find(name).cloned() else {
                return Ok(None);
            };
            self.start_fill(parent_path, &listing);
            return match entry.kind {
                Kind::Dir => self.dir_attr(path).await.map(Some),
                _ => self.file_attr(path, Some(&entry)).await,
            };
        }
        // No fresh listing of the parent: ask for the object and for anything under
        // `path/` at once. A directory wins over an object of the same name.
        let prefix = self.dir_prefix(path);
        let key = self.key_of(path);
        let (head, under) = tokio::join!(self.head(&key), self.store.list_page(&prefix, Some("/"), None, Some(1)));
        let under = under.map_err(FsError::from)?;
        if !under.objects.is_empty() || !under.prefixes.is_empty() {
            return self.dir_attr(path).await.map(Some);
        }
        match head? {
            Some(info) => {
                let attr = self.attr_of_object(&info, Kind::File);
                Ok(Some((attr, info.etag)))
            }
            None => Ok(None),
        }
    }

    async fn file_attr(
        self: &Arc<Self>,
        path: &str,
        listed: Option<&DirEntry>,
    ) -> Result<Option<(Attr, String)>, FsError> {
        let key = self.key_of(path);
        let mut info = self.head(&key).await?;
        // The listing is newer than a cached HEAD of another version: ask again.
        if let (Some(i), Some(e)) = (&info, listed)
            && i.etag != e.etag
            && !e.etag.is_empty()
        {
            lock(&self.heads).pop(&key);
            info = self.head(&key).await?;
        }
        Ok(info.map(|i| {
            let attr = self.attr_of_object(&i, Kind::File);
            (attr, i.etag)
        }))
    }

    /// Fetches the attributes of every entry of a listed directory ahead of the kernel's
    /// lookups, a bounded number of HEADs at a time. Started by the first lookup in the
    /// directory, so a plain `ls` costs one listing while `ls -l` does not wait for one HEAD
    /// after another.
    fn start_fill(self: &Arc<Self>, parent_path: &str, listing: &Arc<Listing>) {
        if listing.fill_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let me = self.clone();
        let listing = listing.clone();
        let parent_path = parent_path.to_owned();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for entry in &listing.entries {
                let path = join(&parent_path, &entry.name);
                let key = match entry.kind {
                    Kind::Dir => me.dir_prefix(&path),
                    _ => me.key_of(&path),
                };
                let filler = me.clone();
                tasks.spawn(async move {
                    let _ = filler.head(&key).await;
                });
                while tasks.len() >= me.cfg.head_concurrency {
                    tasks.join_next().await;
                }
            }
            while tasks.join_next().await.is_some() {}
        });
    }

    fn remember(&self, parent: u64, path: &str, attr: Attr, etag: String, lookup: bool) -> Attr {
        let mut inodes = lock(&self.inodes);
        let ino = inodes.upsert(parent, path, attr.kind);
        let mut attr = Attr { ino, ..attr };
        if let Some(i) = inodes.get_mut(ino) {
            i.overlay(&mut attr);
            i.stat = Some(Stat {
                attr: attr.clone(),
                etag,
                fetched: Instant::now(),
            });
        }
        if lookup {
            inodes.add_lookup(ino);
        }
        attr
    }

    /// Finds `name` in directory `parent`; counts a kernel lookup on success.
    pub async fn lookup(self: &Arc<Self>, parent: u64, name: &str) -> Result<Attr, FsError> {
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::NotFound);
        }
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let path = join(&dir.path, name);
        match self.resolve(&dir.path, &path).await? {
            Some((attr, etag)) => Ok(self.remember(parent, &path, attr, etag, true)),
            None => Err(FsError::NotFound),
        }
    }

    /// The kernel drops `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        let open = lock(&self.files).values().any(|f| f.ino == ino);
        lock(&self.inodes).forget(ino, n, open);
    }

    /// Attributes of `ino`, refreshed once the metadata TTL has passed.
    pub async fn getattr(self: &Arc<Self>, ino: u64) -> Result<Attr, FsError> {
        if let Some(d) = self.dirty_of(ino) {
            let dirty = d.lock().await;
            let nlink = if dirty.unlinked { 0 } else { 1 };
            return Ok(Attr {
                ino,
                nlink,
                ..dirty.attr.clone()
            });
        }
        let node = self.inode(ino)?;
        if let Some(stat) = &node.stat
            && self.fresh(stat.fetched)
        {
            return Ok(stat.attr.clone());
        }
        let resolved = if ino == ROOT_INO {
            Some(self.dir_attr("").await?)
        } else {
            let parent_path = node.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            self.resolve(parent_path, &node.path).await?
        };
        match resolved {
            Some((attr, etag)) if attr.kind == node.kind || (node.kind == Kind::File && attr.kind == Kind::Symlink) => {
                let mut attr = Attr { ino, ..attr };
                if let Some(i) = lock(&self.inodes).get_mut(ino) {
                    i.overlay(&mut attr);
                    i.kind = attr.kind;
                    i.stat = Some(Stat {
                        attr: attr.clone(),
                        etag,
                        fetched: Instant::now(),
                    });
                }
                Ok(attr)
            }
            _ => Err(FsError::NotFound),
        }
    }

    // ---- directories -----------------------------------------------------------------------

    /// Opens directory `ino`: takes a snapshot of its listing so offsets stay valid while
    /// the caller pages through it.
    pub async fn opendir(self: &Arc<Self>, ino: u64) -> Result<u64, FsError> {
        let node = self.inode(ino)?;
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&node.path).await?;
        if ino != ROOT_INO && !listing.exists() {
            return Err(FsError::NotFound);
        }
        let mut items = Vec::with_capacity(listing.entries.len() + 2);
        items.push(DirItem {
            ino,
            next_offset: 1,
            kind: Kind::Dir,
            name: ".".into(),
        });
        items.push(DirItem {
            ino: node.parent,
            next_offset: 2,
            kind: Kind::Dir,
            name: "..".into(),
        });
        {
            let mut inodes = lock(&self.inodes);
            for (i, e) in listing.entries.iter().enumerate() {
                let path = join(&node.path, &e.name);
                // Symlinks and special files list as files; keep the type learned from metadata.
                let kind = match inodes.by_path(&path) {
                    Some(known) if known.kind != Kind::Dir && e.kind == Kind::File => known.kind,
                    _ => e.kind,
                };
                let child = inodes.upsert(ino, &path, kind);
                items.push(DirItem {
                    ino: child,
                    next_offset: i as u64 + 3,
                    kind,
                    name: e.name.clone(),
                });
            }
            // Files created here and not uploaded yet are shown too.
            let written: Vec<u64> = lock(&self.dirty).keys().copied().collect();
            for w in written {
                let Some(child) = inodes.get(w) else { continue };
                let name = child.path.rsplit('/').next().unwrap_or_default().to_owned();
                let here = child.parent == ino && inodes.by_path(&child.path).map(|i| i.ino) == Some(w);
                if here && listing.find(&name).is_none() {
                    let kind = child.kind;
                    items.push(DirItem {
                        ino: w,
                        next_offset: items.len() as u64 + 1,
                        kind,
                        name,
                    });
                }
            }
            let names: std::collections::HashSet<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
            let base = node.path.clone();
            let files = lock(&self.files);
            inodes.prune_children(
                ino,
                &|p: &str| names.contains(p.strip_prefix(&base).unwrap_or(p).trim_start_matches('/')),
                &|i: u64| files.values().any(|f| f.ino == i),
            );
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, Arc::new(items));
        Ok(fh)
    }

    /// Entries of an open directory from `offset` on.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<DirItem>, FsError> {
        let items = lock(&self.dirs).get(&fh).cloned().ok_or(FsError::BadHandle)?;
        Ok(items.iter().skip(offset as usize).cloned().collect())
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }

    // ---- files -----------------------------------------------------------------------------

    /// Opens file `ino`. Returns the handle and whether the kernel may keep its page cache
    /// (the object has not changed since the last open).
    pub async fn open(self: &Arc<Self>, ino: u64, write: bool, truncate: bool) -> Result<(u64, bool), FsError> {
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
        let (path, etag, keep) = {
            let mut inodes = lock(&self.inodes);
            let node = inodes.get_mut(ino).ok_or(FsError::BadHandle)?;
            let etag = node.stat.as_ref().map(|s| s.etag.clone()).unwrap_or_default();
            let keep = !write && node.opened_etag.as_deref() == Some(etag.as_str()) && !etag.is_empty();
            node.opened_etag = Some(etag.clone());
            (node.path.clone(), etag, keep)
        };
        let key = self.key_of(&path);
        let mut file = OpenFile::new(ino, key.clone(), etag, attr.size);
        if write {
            let d = self.begin_write(ino, &attr, &key, true).await?;
            if truncate {
                let mut dirty = d.lock().await;
                if let Err(e) = self.truncate_dirty(&mut dirty, 0).await {
                    drop(dirty);
                    self.finish_write(ino).await;
                    return Err(e);
                }
            }
            file = file.writable();
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, Arc::new(file));
        Ok((fh, keep))
    }

    /// Creates file `name` in `parent` and opens it for writing. It becomes an object when
    /// it is first flushed, fsynced or closed.
    pub async fn create(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(Attr, u64), FsError> {
        let path = self.free_name(parent, name).await?;
        let attr = Attr::new(Kind::File, 0, (mode & 0o7777) as u16, uid, gid, SystemTime::now());
        let attr = self.remember(parent, &path, attr, String::new(), true);
        let key = self.key_of(&path);
        self.begin_write(attr.ino, &attr, &key, false).await?;
        self.touch(parent, true);
        let file = OpenFile::new(attr.ino, key, String::new(), 0).writable();
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, Arc::new(file));
        Ok((attr, fh))
    }

    /// close(2) of one descriptor: uploads the file if it changed, so the error reaches the
    /// program.
    pub async fn flush(self: &Arc<Self>, fh: u64) -> Result<(), FsError> {
        let file = self.open_file(fh)?;
        if !file.writable {
            return Ok(());
        }
        match self.dirty_of(file.ino) {
            Some(d) => {
                let mut dirty = d.lock().await;
                self.upload(file.ino, &mut dirty).await
            }
            None => Ok(()),
        }
    }

    /// fsync(2): the same as a flush.
    pub async fn fsync(self: &Arc<Self>, fh: u64) -> Result<(), FsError> {
        self.flush(fh).await
    }

    /// Drops one writer of `ino`; the last one uploads what is left and frees the staging.
    pub(super) async fn finish_write(self: &Arc<Self>, ino: u64) {
        let Some(d) = self.dirty_of(ino) else { return };
        let mut dirty = d.lock().await;
        dirty.writers = dirty.writers.saturating_sub(1);
        if dirty.writers > 0 {
            return;
        }
        if let Err(e) = self.upload(ino, &mut dirty).await {
            tracing::error!(key = %dirty.key, "the last close could not upload the file; its changes are lost: {e}");
        }
        self.unreserve(&mut dirty);
        lock(&self.dirty).remove(&ino);
    }

    /// Closes a file handle.
    pub async fn release(self: &Arc<Self>, fh: u64) {
        let file = lock(&self.files).remove(&fh);
        if let Some(f) = file {
            if f.writable {
                self.finish_write(f.ino).await;
            }
            let open = lock(&self.files).values().any(|o| o.ino == f.ino);
            let mut inodes = lock(&self.inodes);
            if inodes.get(f.ino).is_some_and(|i| i.lookups == 0) {
                inodes.forget(f.ino, 0, open);
            }
        }
    }

    /// Records a new version of `key`: attributes for the kernel, caches dropped.
    pub(super) fn uploaded(&self, ino: u64, key: &str, attr: Attr, etag: String) {
        self.wrote_key(key, attr.size, &etag, attr.mtime);
        if let Some(node) = lock(&self.inodes).get_mut(ino) {
            node.stat = Some(Stat {
                attr: Attr { ino, ..attr },
                etag,
                fetched: Instant::now(),
            });
        }
    }

    /// Marks directory `ino` (or file) as changed now: its mtime (for a directory whose
    /// entries changed) and ctime. Kept in memory: a marker rewrite per entry would cost a
    /// request for every create and unlink.
    pub(super) fn touch(&self, ino: u64, mtime_too: bool) {
        let now = SystemTime::now();
        if let Some(node) = lock(&self.inodes).get_mut(ino) {
            node.local_ctime = Some(now);
            if mtime_too {
                node.local_mtime = Some(now);
            }
            if let Some(stat) = node.stat.as_mut() {
                stat.attr.ctime = now;
                if mtime_too {
                    stat.attr.mtime = now;
                }
            }
        }
    }

    /// Drops what is cached about `key` and the listing of its directory.
    pub(super) fn forget_key(&self, key: &str) {
        self.local_change(key);
        lock(&self.listings).remove(split_key(key).0);
    }

    /// Records that this mount wrote `key` (a `dir/` key is a directory marker): its cached
    /// HEAD is dropped and the cached listing of its directory gains the entry, so the next
    /// lookups and creates in that directory need no request.
    pub(super) fn wrote_key(&self, key: &str, size: u64, etag: &str, mtime: SystemTime) {
        let dir = key.ends_with('/');
        let entry = DirEntry {
            name: split_key(key).1.to_owned(),
            kind: if dir { Kind::Dir } else { Kind::File },
            size: if dir { 0 } else { size },
            etag: if dir { String::new() } else { etag.to_owned() },
            mtime,
        };
        self.patch_listing(key, |listing| listing.upsert(entry));
    }

    /// Records that this mount deleted `key` (which was the only thing at its name).
    pub(super) fn deleted_key(&self, key: &str) {
        self.patch_listing(key, |listing| listing.remove(split_key(key).1, key.ends_with('/')));
    }

    fn local_change(&self, key: &str) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        let base = key.trim_end_matches('/');
        let mut heads = lock(&self.heads);
        heads.pop(base);
        heads.pop(&format!("{base}/"));
    }

    /// Records a change this mount made at `key` and applies it to the cached listing of
    /// `key`'s directory, if there is a fresh one.
    fn patch_listing(&self, key: &str, change: impl FnOnce(&mut Listing)) {
        self.local_change(key);
        let parent = split_key(key).0;
        let mut listings = lock(&self.listings);
        let Some(listing) = listings.get_mut(parent) else {
            return;
        };
        if !self.fresh(listing.fetched) {
            listings.remove(parent);
            return;
        }
        change(Arc::make_mut(listing));
    }

    /// Drops every cached listing and HEAD (after a directory rename).
    pub(super) fn forget_all(&self) {
        lock(&self.listings).clear();
        lock(&self.heads).clear();
    }

    /// The path of a new entry `name` in `parent`; EEXIST if the name is taken.
    pub(super) async fn free_name(self: &Arc<Self>, parent: u64, name: &str) -> Result<String, FsError> {
        let (dir, path) = self.child_path(parent, name)?;
        if self.resolve(&dir.path, &path).await?.is_some() {
            return Err(FsError::Exists);
        }
        Ok(path)
    }

    /// The directory `parent` and the path of `name` in it, checked.
    pub(super) fn child_path(&self, parent: u64, name: &str) -> Result<(inode::Inode, String), FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::Invalid);
        }
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let path = join(&dir.path, name);
        Ok((dir, path))
    }

    /// The target of symlink `ino`.
    pub async fn readlink(self: &Arc<Self>, ino: u64) -> Result<Vec<u8>, FsError> {
        let attr = self.getattr(ino).await?;
        if attr.kind != Kind::Symlink {
            return Err(FsError::Invalid);
        }
        let node = self.inode(ino)?;
        let key = self.key_of(&node.path);
        let info = self.head(&key).await?.ok_or(FsError::NotFound)?;
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

    /// Files with changes not yet uploaded, and files open for writing.
    pub fn pending_files(&self) -> usize {
        lock(&self.dirty).len()
    }

    /// Uploads every file that still has changes, as a last close would: used when the
    /// daemon stops, so nothing written is lost.
    pub async fn finish_all(self: &Arc<Self>) {
        let all: Vec<(u64, Arc<tokio::sync::Mutex<write::Dirty>>)> =
            lock(&self.dirty).iter().map(|(i, d)| (*i, d.clone())).collect();
        if !all.is_empty() {
            tracing::info!("uploading {} files before exiting", all.len());
        }
        for (ino, d) in all {
            let mut dirty = d.lock().await;
            if let Err(e) = self.upload(ino, &mut dirty).await {
                tracing::error!(key = %dirty.key, "could not upload before exiting; the changes are lost: {e}");
            }
            self.unreserve(&mut dirty);
            drop(dirty);
            lock(&self.dirty).remove(&ino);
        }
    }

    /// Bytes held in staging files now.
    pub fn staged_bytes(&self) -> u64 {
        self.staged.load(Ordering::Relaxed)
    }

    /// Inodes currently known (for tests and status).
    pub fn inode_count(&self) -> usize {
        lock(&self.inodes).count()
    }

    /// Objects whose attributes are cached, and directories whose listings are: with the
    /// inode count, what a long-running mount holds in memory besides blocks.
    pub fn metadata_cache_sizes(&self) -> (usize, usize) {
        (lock(&self.heads).len(), lock(&self.listings).len())
    }
}

/// The listing prefix of the directory holding `key` ("" for the bucket's root), and the
/// name `key` has in it (a `dir/` marker's name has no slash).
fn split_key(key: &str) -> (&str, &str) {
    let base = key.trim_end_matches('/');
    match base.rfind('/') {
        Some(i) => (&key[..=i], &base[i + 1..]),
        None => ("", base),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod write_tests;
