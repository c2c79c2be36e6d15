//! Namespace and attribute changes: mkdir, rmdir, unlink, symlink, rename and setattr, each
//! made of S3 requests that leave the bucket in a state s3fs reads the same way.

use super::attr::{self, Attr, Kind};
use super::dir::Listing;
use super::write::{MAX_PART, split_even};
use super::{Fs, FsError, ROOT_INO, lock};
use crate::store::{NewObject, ObjectStore, StoreError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::SystemTime;

/// The attribute changes of one setattr call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (the type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate).
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
    /// New access time.
    pub atime: Option<SystemTime>,
}

impl SetAttr {
    fn apply(&self, a: &mut Attr) {
        if let Some(m) = self.mode {
            a.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = self.uid {
            a.uid = u;
        }
        if let Some(g) = self.gid {
            a.gid = g;
        }
        if let Some(t) = self.mtime {
            a.mtime = t;
        }
        if let Some(t) = self.atime {
            a.atime = t;
        }
        if *self != SetAttr::default() {
            a.ctime = SystemTime::now();
        }
    }

    fn changes_metadata(&self) -> bool {
        self.mode.is_some() || self.uid.is_some() || self.gid.is_some() || self.mtime.is_some() || self.atime.is_some()
    }
}

impl<S: ObjectStore> Fs<S> {
    /// Writes the object `key` that stands for new entry `path` of `parent` (a marker,
    /// symlink or special file), with `attr` as its metadata, and records it.
    async fn put_node(
        self: &Arc<Self>,
        parent: u64,
        path: &str,
        key: &str,
        attr: Attr,
        body: Bytes,
    ) -> Result<Attr, FsError> {
        let new = NewObject {
            metadata: attr::to_metadata(&attr),
            content_type: None,
        };
        let size = body.len() as u64;
        let etag = self.store.put(key, body, &new).await?;
        self.wrote_key(key, size, &etag, attr.mtime);
        self.touch(parent, true);
        Ok(self.remember(parent, path, attr, etag, true))
    }

    /// Creates directory `name`: a `name/` marker object carrying its mode, owner and time.
    pub async fn mkdir(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, FsError> {
        let path = self.free_name(parent, name).await?;
        let attr = Attr::new(Kind::Dir, 0, (mode & 0o7777) as u16, uid, gid, SystemTime::now());
        let marker = self.dir_prefix(&path);
        let attr = self.put_node(parent, &path, &marker, attr, Bytes::new()).await?;
        // Nothing was under the name (free_name made sure): the new directory is empty, so
        // the lookups and creates that usually follow a mkdir need no listing.
        lock(&self.listings).insert(marker.clone(), Arc::new(Listing::new_dir(marker, attr.mtime)));
        Ok(attr)
    }

    /// Whether anything but its own marker lies under directory `path`, in S3 or staged.
    async fn has_children(&self, path: &str) -> Result<bool, FsError> {
        let prefix = self.dir_prefix(path);
        let page = self.store.list_page(&prefix, None, None, Some(2)).await?;
        if page.objects.iter().any(|o| o.key != prefix) || !page.prefixes.is_empty() {
            return Ok(true);
        }
        let inodes = lock(&self.inodes);
        let under = inodes.under(path);
        let dirty = lock(&self.dirty);
        Ok(under.iter().any(|i| {
            dirty.contains_key(i)
                && inodes
                    .get(*i)
                    .is_some_and(|n| inodes.by_path(&n.path).map(|x| x.ino) == Some(*i))
        }))
    }

    /// Removes empty directory `name`.
    pub async fn rmdir(self: &Arc<Self>, parent: u64, name: &str) -> Result<(), FsError> {
        let (dir, path) = self.child_path(parent, name)?;
        let (attr, _) = self.resolve(&dir.path, &path).await?.ok_or(FsError::NotFound)?;
        if attr.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if self.has_children(&path).await? {
            return Err(FsError::NotEmpty);
        }
        let marker = self.dir_prefix(&path);
        self.store.delete(&marker).await?;
        self.deleted_key(&marker);
        lock(&self.listings).remove(&marker);
        lock(&self.inodes).detach(&path);
        self.touch(parent, true);
        Ok(())
    }

    /// Removes file or symlink `name`. A file still open for writing is not uploaded after.
    pub async fn unlink(self: &Arc<Self>, parent: u64, name: &str) -> Result<(), FsError> {
        let (dir, path) = self.child_path(parent, name)?;
        let (attr, _) = self.resolve(&dir.path, &path).await?.ok_or(FsError::NotFound)?;
        if attr.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let key = self.key_of(&path);
        self.store.delete(&key).await?;
        let ino = lock(&self.inodes).by_path(&path).map(|i| i.ino);
        if let Some(d) = ino.and_then(|i| self.dirty_of(i)) {
            d.lock().await.unlinked = true;
        }
        self.deleted_key(&key);
        if let Some(i) = ino {
            self.touch(i, false);
        }
        lock(&self.inodes).detach(&path);
        self.touch(parent, true);
        Ok(())
    }

    /// Creates symlink `name` pointing at `target`, stored as s3fs stores it: the target as
    /// the body, `S_IFLNK` in the mode.
    pub async fn symlink(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        target: &str,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, FsError> {
        let path = self.free_name(parent, name).await?;
        let attr = Attr::new(Kind::Symlink, target.len() as u64, 0o777, uid, gid, SystemTime::now());
        let key = self.key_of(&path);
        self.put_node(parent, &path, &key, attr, Bytes::copy_from_slice(target.as_bytes()))
            .await
    }

    /// Creates a named pipe, socket or device node: an empty object whose mode carries the
    /// type (and `x-amz-meta-rdev` the device number), as s3fs stores them.
    pub async fn mknod(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        kind: Kind,
        perm: u16,
        rdev: u32,
        (uid, gid): (u32, u32),
    ) -> Result<Attr, FsError> {
        let path = self.free_name(parent, name).await?;
        let attr = Attr {
            rdev,
            ..Attr::new(kind, 0, perm, uid, gid, SystemTime::now())
        };
        let key = self.key_of(&path);
        self.put_node(parent, &path, &key, attr, Bytes::new()).await
    }

    /// Copies an object of any size on the server, keeping its headers.
    async fn copy_any(&self, source: &str, dest: &str, size: u64) -> Result<(), FsError> {
        if size <= MAX_PART {
            self.store.copy(source, dest, None, None).await?;
            return Ok(());
        }
        let info = self.store.head(source).await?;
        let new = NewObject {
            metadata: info.metadata.unwrap_or_default(),
            content_type: info.content_type,
        };
        let upload_id = self.store.create_multipart(dest, &new).await?;
        let mut parts = Vec::new();
        for (i, r) in split_even(size, MAX_PART).into_iter().enumerate() {
            match self
                .store
                .upload_part_copy(dest, &upload_id, i as i32 + 1, source, r, Some(&info.etag))
                .await
            {
                Ok(p) => parts.push(p),
                Err(e) => {
                    let _ = self.store.abort_multipart(dest, &upload_id).await;
                    return Err(e.into());
                }
            }
        }
        if let Err(e) = self.store.complete_multipart(dest, &upload_id, parts).await {
            let _ = self.store.abort_multipart(dest, &upload_id).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Uploads any staged changes of files at or under `path`, so a rename moves them.
    async fn flush_under(self: &Arc<Self>, path: &str) -> Result<(), FsError> {
        let mut inos = lock(&self.inodes).under(path);
        if let Some(i) = lock(&self.inodes).by_path(path).map(|i| i.ino) {
            inos.push(i);
        }
        for ino in inos {
            if let Some(d) = self.dirty_of(ino) {
                let mut dirty = d.lock().await;
                self.upload(ino, &mut dirty).await?;
            }
        }
        Ok(())
    }

    /// Renames `name` in `parent` to `newname` in `newparent`, replacing a file (or an empty
    /// directory) there. A file is copied with its metadata then deleted; a directory is
    /// moved key by key, which is not atomic: a failure part-way leaves some keys moved.
    pub async fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let (src_dir, src) = self.child_path(parent, name)?;
        let (dst_dir, dst) = self.child_path(newparent, newname)?;
        let (from, _) = self.resolve(&src_dir.path, &src).await?.ok_or(FsError::NotFound)?;
        let to = self.resolve(&dst_dir.path, &dst).await?;
        if src == dst {
            return Ok(());
        }
        if no_replace && to.is_some() {
            return Err(FsError::Exists);
        }
        if from.kind == Kind::Dir {
            if dst.starts_with(&format!("{src}/")) {
                return Err(FsError::Invalid);
            }
            if let Some((t, _)) = &to {
                if t.kind != Kind::Dir {
                    return Err(FsError::NotDir);
                }
                if self.has_children(&dst).await? {
                    return Err(FsError::NotEmpty);
                }
            }
            self.flush_under(&src).await?;
            self.move_tree(&src, &dst).await?;
            self.forget_all();
        } else {
            if to.as_ref().is_some_and(|(t, _)| t.kind == Kind::Dir) {
                return Err(FsError::IsDir);
            }
            self.flush_under(&src).await?;
            let (src_key, dst_key) = (self.key_of(&src), self.key_of(&dst));
            self.copy_any(&src_key, &dst_key, from.size).await?;
            self.store.delete(&src_key).await?;
            let ino = lock(&self.inodes).by_path(&src).map(|i| i.ino);
            if let Some(d) = ino.and_then(|i| self.dirty_of(i)) {
                d.lock().await.key = dst_key.clone();
            }
            self.deleted_key(&src_key);
            self.forget_key(&dst_key);
        }
        lock(&self.inodes).rename(&src, &dst, newparent);
        let moved = lock(&self.inodes).by_path(&dst).map(|i| i.ino);
        if let Some(moved) = moved {
            self.touch(moved, false);
        }
        self.touch(parent, true);
        self.touch(newparent, true);
        Ok(())
    }

    /// Copies every key under `src/` to `dst/`, then deletes the originals.
    async fn move_tree(self: &Arc<Self>, src: &str, dst: &str) -> Result<(), FsError> {
        let (from, to) = (self.dir_prefix(src), self.dir_prefix(dst));
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.store.list_page(&from, None, token, None).await?;
            keys.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
            token = page.next;
            if token.is_none() {
                break;
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        for (key, size) in keys.clone() {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| FsError::Io(e.to_string()))?;
            let me = self.clone();
            let dest = format!("{to}{}", &key[from.len()..]);
            tasks.spawn(async move {
                let _permit = permit;
                me.copy_any(&key, &dest, size).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| FsError::Io(e.to_string()))??;
        }
        for (key, _) in keys {
            self.store.delete(&key).await?;
        }
        Ok(())
    }

    /// chmod, chown, utimens and truncate. Metadata changes rewrite the object's metadata in
    /// place on the server (CopyObject with REPLACE, keeping the content type and every other
    /// metadata key); a file open for writing takes them with its next upload.
    pub async fn setattr(self: &Arc<Self>, ino: u64, set: SetAttr) -> Result<Attr, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let current = self.getattr(ino).await?;
        if set.size.is_some() && current.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if set.size.is_some() && current.kind == Kind::Symlink {
            return Err(FsError::Invalid);
        }
        if set == SetAttr::default() {
            return Ok(current);
        }
        if current.kind == Kind::Dir {
            return self.set_dir_attr(ino, current, set).await;
        }
        if let Some(d) = self.dirty_of(ino) {
            let mut dirty = d.lock().await;
            if let Some(size) = set.size {
                self.truncate_dirty(&mut dirty, size).await?;
            }
            set.apply(&mut dirty.attr);
            dirty.changed = true;
            return Ok(Attr {
                ino,
                ..dirty.attr.clone()
            });
        }
        let path = self.inode(ino)?.path;
        let key = self.key_of(&path);
        let d = self.begin_write(ino, &current, &key, true).await?;
        let result = async {
            let mut dirty = d.lock().await;
            if let Some(size) = set.size {
                self.truncate_dirty(&mut dirty, size).await?;
            }
            set.apply(&mut dirty.attr);
            dirty.changed = true;
            self.upload(ino, &mut dirty).await?;
            Ok(Attr {
                ino,
                ..dirty.attr.clone()
            })
        }
        .await;
        self.finish_write(ino).await;
        result
    }

    async fn set_dir_attr(self: &Arc<Self>, ino: u64, current: Attr, set: SetAttr) -> Result<Attr, FsError> {
        if !set.changes_metadata() {
            return Ok(current);
        }
        if ino == ROOT_INO && self.cfg.prefix.is_empty() {
            return Err(FsError::NotPermitted);
        }
        let path = self.inode(ino)?.path;
        let marker = self.dir_prefix(&path);
        let mut attr = current;
        set.apply(&mut attr);
        let mut metadata = match self.store.head(&marker).await {
            Ok(info) => info.metadata.unwrap_or_default(),
            Err(StoreError::NotFound { .. }) => Default::default(),
            Err(e) => return Err(e.into()),
        };
        metadata.extend(attr::to_metadata(&attr));
        let new = NewObject {
            metadata,
            content_type: None,
        };
        let etag = self.store.put(&marker, Bytes::new(), &new).await?;
        self.uploaded(ino, &marker, attr.clone(), etag);
        Ok(attr)
    }
}
