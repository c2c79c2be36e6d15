//! The namespace: which inode stands at which name, what its attributes are, and which
//! version of which object holds its bytes. It is the only code that turns an inode into a
//! key: read handles, staging states and uploads hold inode numbers (and versions) and ask
//! here at each request, so a rename is one update in the table and everything follows it.

pub mod fill;
pub mod inodes;
pub mod listing;
pub mod meta;
pub mod version;

pub use fill::DirFill;
pub use inodes::{InodeTable, ROOT_INO, Stat};
pub use listing::invalid_name;
pub use version::ObjectVersion;

use crate::fs::attr::{self, Attr, Defaults, Kind};
use crate::fs::error::FsError;
use crate::fs::lock;
use crate::store::{ObjectInfo, ObjectStore};
use listing::{DirEntry, Listing};
use meta::MetaCache;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use version::Versions;

/// The longest key S3 stores.
pub const MAX_KEY_LEN: usize = 1024;

/// The size of an inode whose contents this mount is changing right now (it has a staging
/// state): then its attributes here are the truth, not what S3 says. The write path owns
/// that fact and the size; the namespace asks.
pub type IsLocal<'a> = &'a (dyn Fn(u64) -> Option<u64> + Sync);

/// One entry returned by a directory read.
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
    /// What the listing said of it (an object's size, ETag and Last-Modified), if it came
    /// from one.
    pub listed: Option<Listed>,
}

/// What a listing says of an object: all a mount without POSIX metadata needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Size in bytes.
    pub size: u64,
    /// ETag.
    pub etag: String,
    /// Last-Modified.
    pub mtime: SystemTime,
}

impl From<&DirEntry> for Listed {
    fn from(e: &DirEntry) -> Self {
        Listed {
            size: e.size,
            etag: e.etag.clone(),
            mtime: e.mtime,
        }
    }
}

/// What the namespace needs to know of the mount.
#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// Key prefix of the mount root: "" or ending with `/`.
    pub prefix: String,
    /// Attributes for objects without POSIX metadata.
    pub defaults: Defaults,
    /// Refuse every change with EROFS.
    pub read_only: bool,
    /// How long listings and attributes are trusted.
    pub metadata_ttl: Duration,
    /// HEAD requests in flight when filling attributes of a listed directory, at first:
    /// more while the latency stays flat.
    pub head_concurrency: usize,
    /// Whether objects carry POSIX attributes in their user metadata. Without, attributes
    /// come from listings and the mount defaults, and files cost no HEAD.
    pub posix_metadata: bool,
}

/// What a name resolved to.
#[derive(Clone, Debug)]
struct Found {
    attr: Attr,
    /// ETag and size of the object behind it (files only).
    object: Option<(String, u64)>,
    /// Attributes from this mount's own staging state, not from S3.
    local: bool,
}

/// The namespace of one mount.
pub struct Namespace<S: ObjectStore> {
    store: Arc<S>,
    cfg: NamespaceConfig,
    table: Mutex<InodeTable>,
    versions: Versions,
    meta: Arc<MetaCache<S>>,
    /// Keys of files unlinked while open: still in S3 until their last handle closes, but
    /// gone from the mount.
    hidden: Mutex<HashSet<String>>,
    /// Held shared while an object is written at an inode's key, exclusively while keys
    /// move (rename, a deferred delete), so no upload lands at a name that just went away.
    commits: tokio::sync::RwLock<()>,
    mounted_at: SystemTime,
}

/// The link count of the directory `listing` shows: 2 and one per subdirectory.
fn subdir_nlink(listing: &Listing) -> u32 {
    let subdirs = listing.entries.iter().filter(|e| e.kind == Kind::Dir).count();
    2u32.saturating_add(u32::try_from(subdirs).unwrap_or(u32::MAX))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

impl<S: ObjectStore> Namespace<S> {
    /// The namespace of a mount over `store`.
    pub fn new(store: Arc<S>, cfg: NamespaceConfig) -> Self {
        Namespace {
            meta: Arc::new(MetaCache::new(store.clone(), cfg.metadata_ttl, cfg.head_concurrency)),
            store,
            cfg,
            table: Mutex::new(InodeTable::new()),
            versions: Versions::default(),
            hidden: Mutex::new(HashSet::new()),
            commits: tokio::sync::RwLock::new(()),
            mounted_at: SystemTime::now(),
        }
    }

    /// The cached listings and HEADs.
    pub fn meta(&self) -> &Arc<MetaCache<S>> {
        &self.meta
    }

    /// The inode table, for a short look or change (never held across an await).
    pub fn table(&self) -> MutexGuard<'_, InodeTable> {
        lock(&self.table)
    }

    /// Held while an object is written at an inode's key: keys do not move meanwhile.
    pub async fn commit_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.commits.read().await
    }

    /// Held while keys move: no upload lands meanwhile.
    pub async fn move_guard(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.commits.write().await
    }

    fn key_for(&self, path: &str) -> String {
        format!("{}{}", self.cfg.prefix, path)
    }

    fn prefix_for(&self, path: &str) -> String {
        if path.is_empty() {
            self.cfg.prefix.clone()
        } else {
            format!("{}{}/", self.cfg.prefix, path)
        }
    }

    /// Where `ino`'s object is now: its key (a directory's is its `name/` marker), or, for a
    /// file unlinked while open, the key its object stays at until the last close.
    pub fn key_of(&self, ino: u64) -> Result<String, FsError> {
        let t = self.table();
        let node = t.get(ino).ok_or(FsError::BadHandle)?;
        if let Some(orphan) = node.orphan_key() {
            return Ok(orphan.to_owned());
        }
        let path = t.path(ino).ok_or(FsError::NotFound)?;
        Ok(if node.kind == Kind::Dir {
            self.prefix_for(&path)
        } else {
            self.key_for(&path)
        })
    }

    /// The key a new entry `name` in `parent` would have, after checking the name: EROFS on
    /// a read-only mount, ENAMETOOLONG past 255 bytes or past S3's 1,024-byte keys.
    pub fn new_key(&self, parent: u64, name: &str, kind: Kind) -> Result<String, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::Invalid);
        }
        let t = self.table();
        let dir = t.get(parent).ok_or(FsError::BadHandle)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let path = join(&t.path(parent).ok_or(FsError::NotFound)?, name);
        let key = if kind == Kind::Dir {
            self.prefix_for(&path)
        } else {
            self.key_for(&path)
        };
        if key.len() > MAX_KEY_LEN {
            return Err(FsError::NameTooLong);
        }
        Ok(key)
    }

    /// The prefix of the directory holding `key` (where a write probe is cached).
    pub fn dir_prefix_of_key(key: &str) -> &str {
        meta::split_key(key).0
    }

    // ---- attributes from S3 ------------------------------------------------------------------

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
    async fn dir_attr(self: &Arc<Self>, path: &str) -> Result<Found, FsError> {
        let attr = if (path.is_empty() && self.cfg.prefix.is_empty()) || !self.cfg.posix_metadata {
            self.default_dir_attr()
        } else {
            match self.meta.head(&self.prefix_for(path)).await? {
                Some(marker) => self.attr_of_object(&marker, Kind::Dir),
                None => self.default_dir_attr(),
            }
        };
        Ok(Found {
            attr,
            object: None,
            local: false,
        })
    }

    /// The object at `key`, `None` if there is none. Where objects carry POSIX metadata,
    /// a HEAD (cached); else a listing of one key from `key` on, which is `key` itself if it
    /// exists, and says all such a mount shows.
    async fn object(self: &Arc<Self>, key: &str) -> Result<Option<ObjectInfo>, FsError> {
        if self.cfg.posix_metadata {
            return self.meta.head(key).await;
        }
        self.meta.stats.lists.fetch_add(1, Ordering::Relaxed);
        let page = self.store.list_page(key, None, None, Some(1)).await?;
        Ok(page.objects.into_iter().find(|o| o.key == key))
    }

    /// What a listing says of the object at `key`: its attributes on a mount without POSIX
    /// metadata.
    fn listed_found(&self, key: &str, listed: &Listed) -> Found {
        let info = ObjectInfo {
            key: key.to_owned(),
            size: listed.size,
            etag: listed.etag.clone(),
            last_modified: listed.mtime,
            metadata: None,
            content_type: None,
        };
        Found {
            attr: self.attr_of_object(&info, Kind::File),
            object: Some((listed.etag.clone(), listed.size)),
            local: false,
        }
    }

    async fn file_attr(self: &Arc<Self>, key: &str, listed: Option<&Listed>) -> Result<Option<Found>, FsError> {
        if !self.cfg.posix_metadata {
            if let Some(listed) = listed {
                return Ok(Some(self.listed_found(key, listed)));
            }
            return Ok(self.object(key).await?.map(|i| Found {
                attr: self.attr_of_object(&i, Kind::File),
                object: Some((i.etag.clone(), i.size)),
                local: false,
            }));
        }
        let mut info = self.meta.head(key).await?;
        // The listing is newer than a cached HEAD of another version: ask again.
        if let (Some(i), Some(e)) = (&info, listed)
            && i.etag != e.etag
            && !e.etag.is_empty()
        {
            self.meta.drop_head(key);
            info = self.meta.head(key).await?;
        }
        Ok(info.map(|i| Found {
            attr: self.attr_of_object(&i, Kind::File),
            object: Some((i.etag.clone(), i.size)),
            local: false,
        }))
    }

    /// What `name` in `parent` is now, or `None` if nothing is there.
    async fn find(self: &Arc<Self>, parent: u64, name: &str, local: IsLocal<'_>) -> Result<Option<Found>, FsError> {
        let found = self.find_in_s3(parent, name, local).await?;
        Ok(found.map(|f| self.keep_known_kind(parent, name, f)))
    }

    /// Without POSIX metadata S3 cannot tell a symlink or a special file this mount made
    /// from a file: keep the type the table knows.
    fn keep_known_kind(&self, parent: u64, name: &str, mut found: Found) -> Found {
        if !self.cfg.posix_metadata && !found.local && found.attr.kind == Kind::File {
            let t = self.table();
            if let Some(known) = t.child(parent, name).and_then(|c| t.get(c))
                && known.kind != Kind::Dir
            {
                found.attr.kind = known.kind;
            }
        }
        found
    }

    async fn find_in_s3(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        local: IsLocal<'_>,
    ) -> Result<Option<Found>, FsError> {
        let (parent_path, local_child) = {
            let t = self.table();
            let parent_path = t.path(parent).ok_or(FsError::NotFound)?;
            let child = t
                .child(parent, name)
                .and_then(|c| local(c).map(|size| (c, size)))
                .and_then(|(c, size)| t.get(c).and_then(|n| n.stat.clone()).map(|s| (s, size)));
            (parent_path, child)
        };
        if let Some((stat, size)) = local_child {
            return Ok(Some(Found {
                attr: Attr { size, ..stat.attr },
                object: None,
                local: true,
            }));
        }
        let path = join(&parent_path, name);
        let key = self.key_for(&path);
        if lock(&self.hidden).contains(&key) {
            return Ok(None);
        }
        if let Some(listing) = self.meta.cached_listing(&self.prefix_for(&parent_path)) {
            let Some(entry) = listing.find(name).cloned() else {
                return Ok(None);
            };
            return match entry.kind {
                Kind::Dir => self.dir_attr(&path).await.map(Some),
                _ => self.file_attr(&key, Some(&Listed::from(&entry))).await,
            };
        }
        // No fresh listing of the parent: ask for the object and for anything under
        // `path/` at once. A directory wins over an object of the same name.
        let prefix = self.prefix_for(&path);
        let (head, under) = tokio::join!(
            self.object(&key),
            self.store.list_page(&prefix, Some("/"), None, Some(1))
        );
        let under = under.map_err(FsError::from)?;
        if !under.objects.is_empty() || !under.prefixes.is_empty() {
            return self.dir_attr(&path).await.map(Some);
        }
        Ok(head?.map(|info| Found {
            attr: self.attr_of_object(&info, Kind::File),
            object: Some((info.etag.clone(), info.size)),
            local: false,
        }))
    }

    /// Starts fetching the attributes of the entries of open directory `dir` (`items`, as
    /// [`read_dir`](Self::read_dir) listed them) for READDIRPLUS, in order, ahead of the
    /// kernel. Where objects carry no POSIX metadata the listing says everything: nothing is
    /// fetched.
    pub fn dir_fill(self: &Arc<Self>, dir: u64, items: Arc<Vec<DirItem>>) -> Arc<DirFill> {
        let path = self.table().path(dir);
        let (fill, mut cursor) = DirFill::new(dir, path.clone(), items.clone());
        let fill = Arc::new(fill);
        let (Some(path), true) = (path, self.cfg.posix_metadata) else {
            return fill;
        };
        let slots = fill.slots.clone();
        let me = self.clone();
        tokio::spawn(async move {
            let path: Arc<str> = Arc::from(path);
            let mut tasks = tokio::task::JoinSet::new();
            for (index, item) in items.iter().enumerate() {
                // `.`, `..` and files this mount is writing need nothing from S3.
                if item.name == "." || item.name == ".." || (item.kind != Kind::Dir && item.listed.is_none()) {
                    continue;
                }
                if !fill::wait_for_window(&mut cursor, index).await {
                    return; // closed: dropping `tasks` cancels what is still queued
                }
                let (me, slots, items, path) = (me.clone(), slots.clone(), items.clone(), path.clone());
                tasks.spawn(async move {
                    let _ = slots[index]
                        .get_or_init(|| me.resolve_listed(&path, &items[index]))
                        .await;
                });
                fill::throttle(&mut tasks).await;
            }
            while tasks.join_next().await.is_some() {}
        });
        fill
    }

    /// Entry `index` of an open directory for READDIRPLUS without waiting for S3, while
    /// nobody has asked for its attributes (`find` needs names and types only): a file
    /// whose POSIX attributes would take a HEAD comes with what the listing says, recorded
    /// as expired so that the first stat asks S3; the caller hands it over to be revalidated
    /// at once. `None`: it needs nothing from S3 (or is already known), so
    /// [`Namespace::plus_entry`] answers it without waiting on a HEAD. Counted as a lookup.
    pub fn plus_entry_unresolved(&self, fill: &DirFill, index: usize, local: IsLocal<'_>) -> Option<Attr> {
        let item = &fill.items[index];
        let listed = item.listed.as_ref()?;
        if !self.cfg.posix_metadata || item.kind == Kind::Dir || fill.slots[index].initialized() {
            return None;
        }
        let dir_path = fill.path.as_ref()?;
        let key = self.key_for(&join(dir_path, &item.name));
        if self.is_hidden(&key) {
            return None;
        }
        let mut t = self.table();
        if let Some(child) = t.child(fill.dir, &item.name)
            && (local(child).is_some()
                || t.get(child)
                    .and_then(|n| n.stat.as_ref())
                    .is_some_and(|s| !s.expired && self.meta.fresh(s.fetched)))
        {
            return None;
        }
        let ino = t.upsert(fill.dir, &item.name, Kind::File);
        let attr = self.record(&mut t, ino, self.listed_found(&key, listed));
        if let Some(stat) = t.get_mut(ino).and_then(|n| n.stat.as_mut()) {
            stat.expired = true;
        }
        t.add_lookup(ino);
        Some(attr)
    }

    /// Starts resolving the subdirectories among entries `from..from + count` of an open
    /// directory, all at once: a directory's attributes come from its marker object, and
    /// asking for them one by one as READDIRPLUS reaches them would cost `find` a round
    /// trip per directory.
    pub fn prefetch_dirs(self: &Arc<Self>, fill: &DirFill, from: usize, count: usize) {
        let Some(path) = fill.path.as_ref() else {
            return;
        };
        let end = from.saturating_add(count).min(fill.items.len());
        for index in from..end {
            let item = &fill.items[index];
            if item.kind != Kind::Dir || item.name == "." || item.name == ".." || fill.slots[index].initialized() {
                continue;
            }
            let (me, slots, items, path) = (self.clone(), fill.slots.clone(), fill.items.clone(), path.clone());
            tokio::spawn(async move {
                let _ = slots[index]
                    .get_or_init(|| me.resolve_listed(&path, &items[index]))
                    .await;
            });
        }
    }

    /// What entry `item` of the directory at `dir_path` is, asking S3 as a lookup would.
    async fn resolve_listed(self: &Arc<Self>, dir_path: &str, item: &DirItem) -> Result<Option<Found>, FsError> {
        let path = join(dir_path, &item.name);
        match item.kind {
            Kind::Dir => self.dir_attr(&path).await.map(Some),
            _ => self.file_attr(&self.key_for(&path), item.listed.as_ref()).await,
        }
    }

    /// The attributes of entry `index` of an open directory, for READDIRPLUS: what a lookup
    /// would answer, and, but for `.` and `..`, counted as one (the kernel counts each
    /// entry it gets so). `None`: the entry is gone.
    pub async fn plus_entry(
        self: &Arc<Self>,
        fill: &DirFill,
        index: usize,
        local: IsLocal<'_>,
    ) -> Result<Option<Attr>, FsError> {
        let item = &fill.items[index];
        if item.name == "." || item.name == ".." {
            let attr = self.attr(item.ino).unwrap_or_else(|| self.default_dir_attr());
            return Ok(Some(Attr { ino: item.ino, ..attr }));
        }
        let (dir, name) = (fill.dir, item.name.as_str());
        let Some(dir_path) = &fill.path else {
            return Ok(None);
        };
        let path = join(dir_path, name);
        let key = self.key_for(&path);
        let local_child = {
            let t = self.table();
            t.child(dir, name)
                .and_then(|c| local(c).map(|size| (c, size)))
                .and_then(|(c, size)| t.get(c).and_then(|n| n.stat.clone()).map(|s| (s, size)))
        };
        let found = if let Some((stat, size)) = local_child {
            Some(Found {
                attr: Attr { size, ..stat.attr },
                object: None,
                local: true,
            })
        } else if item.kind != Kind::Dir && self.is_hidden(&key) {
            None
        } else if item.kind != Kind::Dir && item.listed.is_none() {
            // Made here after the listing; ask as a lookup would.
            self.find(dir, name, local).await?
        } else if !self.cfg.posix_metadata {
            match &item.listed {
                Some(listed) => Some(self.keep_known_kind(dir, name, self.listed_found(&key, listed))),
                None => Some(self.dir_attr(&path).await?),
            }
        } else {
            fill.slots[index]
                .get_or_init(|| self.resolve_listed(dir_path, item))
                .await
                .clone()?
        };
        Ok(found.map(|f| self.remember(dir, name, f, true)))
    }

    /// The version for an object with `etag` and `size`: the inode's own if it is that one
    /// (so cached blocks stay valid), else a new one.
    fn version_for(&self, current: Option<&Arc<ObjectVersion>>, etag: &str, size: u64) -> Arc<ObjectVersion> {
        match current {
            Some(v) if &*v.etag() == etag && v.size == size => v.clone(),
            _ => self.versions.make(etag, size),
        }
    }

    /// A directory's link count: 2, plus one for each subdirectory (its `..`). It comes from
    /// a fresh listing of the directory when there is one, else it is the count last known
    /// here, which this mount's own mkdir, rmdir and rename keep up to date; 2 for a
    /// directory never listed. Counting costs no request.
    fn dir_nlink(&self, t: &InodeTable, ino: u64) -> u32 {
        let listing = t
            .path(ino)
            .and_then(|path| self.meta.cached_listing(&self.prefix_for(&path)));
        match listing {
            Some(l) => subdir_nlink(&l),
            None => t
                .get(ino)
                .and_then(|n| n.stat.as_ref())
                .map_or(2, |s| s.attr.nlink.max(2)),
        }
    }

    /// A subdirectory of `dir` came (`added`) or went, through this mount: its link count.
    pub fn subdir_changed(&self, dir: u64, added: bool) {
        if let Some(stat) = self.table().get_mut(dir).and_then(|n| n.stat.as_mut()) {
            let n = stat.attr.nlink;
            stat.attr.nlink = if added {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1).max(2)
            };
        }
    }

    /// Records what S3 said about inode `ino` in its table entry; returns its attributes.
    fn record(&self, t: &mut InodeTable, ino: u64, found: Found) -> Attr {
        let mut attr = Attr { ino, ..found.attr };
        if attr.kind == Kind::Dir {
            attr.nlink = self.dir_nlink(t, ino);
        }
        if let Some(node) = t.get_mut(ino)
            && !found.local
        {
            node.overlay(&mut attr);
            node.kind = attr.kind;
            node.version = found
                .object
                .map(|(etag, size)| self.version_for(node.version.as_ref(), &etag, size));
            node.stat = Some(Stat {
                attr: attr.clone(),
                fetched: Instant::now(),
                expired: false,
            });
        }
        attr
    }

    /// Records what `name` in `parent` turned out to be.
    fn remember(&self, parent: u64, name: &str, found: Found, lookup: bool) -> Attr {
        let mut t = self.table();
        let ino = t.upsert(parent, name, found.attr.kind);
        let attr = self.record(&mut t, ino, found);
        if lookup {
            t.add_lookup(ino);
        }
        attr
    }

    /// Finds `name` in directory `parent`; counts a kernel lookup on success.
    pub async fn lookup(self: &Arc<Self>, parent: u64, name: &str, local: IsLocal<'_>) -> Result<Attr, FsError> {
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::NotFound);
        }
        if self.table().get(parent).ok_or(FsError::BadHandle)?.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        match self.find(parent, name, local).await? {
            Some(found) => Ok(self.remember(parent, name, found, true)),
            None => Err(FsError::NotFound),
        }
    }

    /// The inode at `name` in `parent` and its attributes, without counting a kernel lookup
    /// (for rename, unlink and rmdir, which must know what they act on).
    pub async fn entry(self: &Arc<Self>, parent: u64, name: &str, local: IsLocal<'_>) -> Result<Option<Attr>, FsError> {
        Ok(self
            .find(parent, name, local)
            .await?
            .map(|found| self.remember(parent, name, found, false)))
    }

    /// Attributes of `ino`, refreshed once the metadata TTL has passed, unless this mount is
    /// changing it (then they are what this mount says) or it lost its name.
    pub async fn getattr(self: &Arc<Self>, ino: u64, local: IsLocal<'_>) -> Result<Attr, FsError> {
        let (stat, parent, name, linked, kind) = {
            let t = self.table();
            let node = t.get(ino).ok_or(FsError::BadHandle)?;
            (
                node.stat.clone(),
                node.parent,
                node.name.clone(),
                node.linked,
                node.kind,
            )
        };
        let local_size = local(ino);
        if let Some(stat) = &stat
            && (!linked || local_size.is_some() || (!stat.expired && self.meta.fresh(stat.fetched)))
        {
            let nlink = if linked { stat.attr.nlink } else { 0 };
            return Ok(Attr {
                ino,
                nlink,
                size: local_size.unwrap_or(stat.attr.size),
                ..stat.attr.clone()
            });
        }
        if !linked {
            return Err(FsError::NotFound);
        }
        let found = if ino == ROOT_INO {
            match (self.dir_attr("").await, &stat) {
                (Ok(found), _) => Some(found),
                // The mount point answers a stat with what was known last while S3 refuses
                // or is away (a session that could not be renewed, an outage): every path
                // lookup starts there, `s3role status` and umount among them.
                (Err(e), Some(stat)) => {
                    tracing::debug!("the root's attributes could not be refreshed, the last known serve: {e}");
                    return Ok(Attr {
                        ino,
                        ..stat.attr.clone()
                    });
                }
                (Err(e), None) => return Err(e),
            }
        } else {
            self.find(parent, &name, local).await?
        };
        match found {
            Some(found) if found.attr.kind == kind || (kind == Kind::File && found.attr.kind == Kind::Symlink) => {
                Ok(self.record(&mut self.table(), ino, found))
            }
            _ => Err(FsError::NotFound),
        }
    }

    /// The entries of directory `ino`: its listing, without files unlinked here, plus files
    /// created here and not uploaded yet. Inodes that only a listing showed are dropped
    /// again after the TTL unless the kernel looks them up.
    pub async fn read_dir(self: &Arc<Self>, ino: u64, local: IsLocal<'_>) -> Result<Vec<DirItem>, FsError> {
        let (path, parent) = {
            let t = self.table();
            let node = t.get(ino).ok_or(FsError::BadHandle)?;
            if node.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            (t.path(ino).ok_or(FsError::NotFound)?, node.parent)
        };
        let listing = self.meta.listing(&self.prefix_for(&path)).await?;
        let now = Instant::now();
        let mut t = self.table();
        let hidden = lock(&self.hidden);
        if let Some(stat) = t.get_mut(ino).and_then(|n| n.stat.as_mut()) {
            stat.attr.nlink = subdir_nlink(&listing);
        }
        let _ = t.expire_listed(now, self.cfg.metadata_ttl);
        let local_children: Vec<(u64, Arc<str>, Kind)> = t
            .children_of(ino)
            .into_iter()
            .filter(|c| local(*c).is_some())
            .filter_map(|c| t.get(c).map(|n| (c, n.name.clone(), n.kind)))
            .collect();
        if ino != ROOT_INO && !listing.exists() && local_children.is_empty() {
            return Err(FsError::NotFound);
        }
        let mut items = Vec::with_capacity(listing.entries.len() + 2);
        items.push(DirItem {
            ino,
            next_offset: 1,
            kind: Kind::Dir,
            name: ".".into(),
            listed: None,
        });
        items.push(DirItem {
            ino: parent,
            next_offset: 2,
            kind: Kind::Dir,
            name: "..".into(),
            listed: None,
        });
        let mut shown = HashSet::new();
        for e in &listing.entries {
            if e.kind != Kind::Dir && !hidden.is_empty() && hidden.contains(&self.key_for(&join(&path, &e.name))) {
                continue;
            }
            shown.insert(e.name.as_str());
            // Symlinks and special files list as files; keep the type learned from metadata.
            let kind = match t.child(ino, &e.name).and_then(|c| t.get(c)) {
                Some(known) if known.kind != Kind::Dir && e.kind == Kind::File => known.kind,
                _ => e.kind,
            };
            let child = t.upsert_listed(ino, &e.name, kind, now);
            items.push(DirItem {
                ino: child,
                next_offset: items.len() as u64 + 1,
                kind,
                name: e.name.clone(),
                listed: (e.kind != Kind::Dir).then(|| Listed {
                    size: e.size,
                    etag: e.etag.clone(),
                    mtime: e.mtime,
                }),
            });
        }
        drop(hidden);
        for (child, name, kind) in local_children {
            if !shown.contains(&*name) {
                items.push(DirItem {
                    ino: child,
                    next_offset: items.len() as u64 + 1,
                    kind,
                    name: name.to_string(),
                    listed: None,
                });
            }
        }
        Ok(items)
    }

    /// Whether anything but its own marker lies under directory `ino`, in S3 or being written
    /// here.
    pub async fn has_children(&self, ino: u64, local: IsLocal<'_>) -> Result<bool, FsError> {
        let prefix = self.key_of(ino)?;
        let page = self.store.list_page(&prefix, None, None, Some(2)).await?;
        if page.objects.iter().any(|o| o.key != prefix) || !page.prefixes.is_empty() {
            return Ok(true);
        }
        let t = self.table();
        Ok(t.children_of(ino).into_iter().any(|c| local(c).is_some()))
    }

    // ---- what this mount changes ---------------------------------------------------------------

    /// Cached attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Option<Attr> {
        self.table()
            .get(ino)
            .and_then(|n| n.stat.as_ref())
            .map(|s| Attr { ino, ..s.attr.clone() })
    }

    /// Changes the attributes of `ino` here (they are this mount's until uploaded).
    pub fn update_attr(&self, ino: u64, change: impl FnOnce(&mut Attr)) -> Option<Attr> {
        let mut t = self.table();
        let node = t.get_mut(ino)?;
        let stat = node.stat.as_mut()?;
        change(&mut stat.attr);
        stat.fetched = Instant::now();
        Some(Attr {
            ino,
            ..stat.attr.clone()
        })
    }

    /// Makes the next look at `ino`'s attributes ask S3, whatever the TTL says (after a
    /// failed upload the mount shows what S3 has). A file being written keeps its own.
    pub fn expire_attrs(&self, ino: u64) {
        if let Some(stat) = self.table().get_mut(ino).and_then(|n| n.stat.as_mut()) {
            stat.expired = true;
        }
    }

    /// Records that an object was written at `key` by a retried upload, outside any inode:
    /// listings show it, and an inode at that name asks S3 again.
    pub fn written_elsewhere(&self, key: &str, attr: &Attr, etag: &str) {
        self.meta.wrote_key(key, attr.size, etag, attr.mtime);
        if let Some(ino) = key
            .strip_prefix(self.cfg.prefix.as_str())
            .and_then(|path| self.find_path(path))
        {
            self.expire_attrs(ino);
        }
    }

    /// The version of `ino`'s contents that S3 holds, as far as this mount knows.
    pub fn version(&self, ino: u64) -> Option<Arc<ObjectVersion>> {
        self.table().get(ino).and_then(|n| n.version.clone())
    }

    /// The version of `ino` whose object S3 now says has `etag` and `size`: the one this
    /// mount knew if it is that, else a new one, which becomes the inode's.
    pub fn object_version(&self, ino: u64, etag: &str, size: u64) -> Arc<ObjectVersion> {
        let mut t = self.table();
        let current = t.get(ino).and_then(|n| n.version.clone());
        let version = self.version_for(current.as_ref(), etag, size);
        if let Some(node) = t.get_mut(ino) {
            node.version = Some(version.clone());
        }
        version
    }

    /// The version an open sees, and whether the kernel may keep its page cache (the same
    /// version as at the last open).
    pub fn open_version(&self, ino: u64) -> (Option<Arc<ObjectVersion>>, bool) {
        let mut t = self.table();
        let Some(node) = t.get_mut(ino) else {
            return (None, false);
        };
        let version = node.version.clone();
        let id = version.as_ref().map(|v| v.id);
        let keep = id.is_some() && node.extra().and_then(|e| e.opened_version) == id;
        if id.is_some() || node.extra().is_some() {
            node.extra_mut().opened_version = id;
        }
        (version, keep)
    }

    /// Records that `ino`'s object at `key` was just written, with `attr`, `etag` and `size`;
    /// returns the new version.
    pub fn committed(&self, ino: u64, key: &str, attr: &Attr, etag: &str, size: u64) -> Arc<ObjectVersion> {
        let version = self.versions.make(etag, size);
        self.meta.wrote_key(key, size, etag, attr.mtime);
        lock(&self.hidden).remove(key);
        let mut t = self.table();
        if let Some(node) = t.get_mut(ino) {
            node.version = Some(version.clone());
            node.stat = Some(Stat {
                attr: Attr {
                    ino,
                    size,
                    ..attr.clone()
                },
                fetched: Instant::now(),
                expired: false,
            });
        }
        version
    }

    /// A new, empty file `name` in `parent` with `attr`, not in S3 yet; counts a lookup.
    pub fn link_new(&self, parent: u64, name: &str, attr: Attr) -> Attr {
        self.link(parent, name, attr, None, false)
    }

    /// A new entry `name` in `parent` whose object (`etag`, `size`) this mount just wrote
    /// at `key`; counts a lookup.
    pub fn link_written(&self, parent: u64, name: &str, key: &str, attr: Attr, etag: &str) -> Attr {
        self.meta.wrote_key(key, attr.size, etag, attr.mtime);
        let version = (attr.kind != Kind::Dir).then(|| self.versions.make(etag, attr.size));
        self.link(parent, name, attr, version, true)
    }

    fn link(&self, parent: u64, name: &str, attr: Attr, version: Option<Arc<ObjectVersion>>, written: bool) -> Attr {
        let mut t = self.table();
        let ino = t.link_new(parent, name, attr.kind);
        let attr = Attr { ino, ..attr };
        if let Some(node) = t.get_mut(ino) {
            node.version = version;
            node.stat = Some(Stat {
                attr: attr.clone(),
                fetched: Instant::now(),
                expired: false,
            });
        }
        t.add_lookup(ino);
        // An object written at a name hidden for a file unlinked while open is the new
        // file's now; a file not uploaded yet leaves the old object hidden.
        if written && let Some(path) = t.path(ino) {
            lock(&self.hidden).remove(&self.key_for(&path));
        }
        attr
    }

    /// Takes `name` away from its inode after its object was deleted, or, with
    /// `keep_object`, while the object stays for handles still open on it: then it is hidden
    /// from the mount and deleted when the last of them closes. Returns the inode.
    pub fn unlink(&self, parent: u64, name: &str, keep_object: Option<String>) -> Option<u64> {
        let ino = self.table().child(parent, name)?;
        if let Some(key) = keep_object {
            self.orphan(ino, key);
        }
        self.table().unlink(parent, name)
    }

    /// `ino` lost its name but its object stays at `key` for the handles open on it: hidden
    /// from the mount, deleted when the last of them closes (unless a newer file has
    /// written that key by then).
    pub fn orphan(&self, ino: u64, key: String) {
        lock(&self.hidden).insert(key.clone());
        if let Some(node) = self.table().get_mut(ino) {
            node.extra_mut().orphan_key = Some(key);
        }
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent` in the table (the objects have
    /// moved already). Returns the inode that had the new name, which loses it.
    pub fn rename(&self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Option<u64> {
        self.table().rename(parent, name, new_parent, new_name)
    }

    /// An object was just written at `key`: whatever hid it (a file unlinked while open
    /// that had the name) no longer does.
    pub fn unhide(&self, key: &str) {
        lock(&self.hidden).remove(key);
    }

    /// Whether `key` holds the object of a file unlinked while open, kept for its handles.
    pub fn is_hidden(&self, key: &str) -> bool {
        lock(&self.hidden).contains(key)
    }

    /// Marks `ino` (a directory whose entries changed, or a file) as changed now: its mtime
    /// (with `mtime_too`) and ctime. Kept in memory: a marker rewrite per entry would cost a
    /// request for every create and unlink.
    pub fn touch(&self, ino: u64, mtime_too: bool) {
        let now = SystemTime::now();
        if let Some(node) = self.table().get_mut(ino) {
            let extra = node.extra_mut();
            extra.local_ctime = Some(now);
            if mtime_too {
                extra.local_mtime = Some(now);
            }
            if let Some(stat) = node.stat.as_mut() {
                stat.attr.ctime = now;
                if mtime_too {
                    stat.attr.mtime = now;
                }
            }
        }
    }

    /// The contents of `ino` changed now: its mtime and ctime, which its next upload
    /// stores (a later utimens may still set others, as `cp -p` does).
    pub fn modified_now(&self, ino: u64) {
        let now = SystemTime::now();
        self.update_attr(ino, |a| {
            a.mtime = now;
            a.ctime = now;
        });
    }

    /// A handle starts to hold `ino`.
    pub fn hold(&self, ino: u64) {
        self.table().hold(ino);
    }

    /// A handle let go of `ino`; if it was unlinked while open and this was the last one, its
    /// object is deleted now.
    pub async fn let_go(&self, ino: u64) {
        let orphan = self.table().let_go(ino);
        if let Some(key) = orphan {
            self.delete_orphan(&key).await;
        }
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.table().forget(ino, n);
    }

    /// Deletes the object of a file that was unlinked while open, unless a newer file has
    /// taken its name and been written since.
    async fn delete_orphan(&self, key: &str) {
        let _moving = self.move_guard().await;
        let taken = key
            .strip_prefix(self.cfg.prefix.as_str())
            .and_then(|path| self.find_path(path))
            .is_some_and(|ino| self.version(ino).is_some());
        if !taken {
            match self.store.delete(key).await {
                Ok(()) => self.meta.deleted_key(key),
                Err(e) => tracing::warn!(%key, "deleting a file unlinked while open failed: {e}"),
            }
        }
        lock(&self.hidden).remove(key);
    }

    /// The linked inode at `path`, if the table holds it.
    fn find_path(&self, path: &str) -> Option<u64> {
        let t = self.table();
        let mut at = ROOT_INO;
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            at = t.child(at, segment)?;
        }
        Some(at)
    }
}
