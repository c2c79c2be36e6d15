//! Namespace and attribute changes: mkdir, rmdir, unlink, symlink, mknod, rename and
//! setattr, each made of S3 requests that leave the bucket in a state s3fs reads the same
//! way, then one update of the inode table that every open handle follows.

use super::attr::{self, Attr, Kind};
use super::write::{MAX_PART, split_even};
use super::{Fs, FsError, ROOT_INO};
use crate::store::{NewObject, ObjectStore, StoreError};
use bytes::Bytes;
use std::collections::HashMap;
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
    /// The permission bits and group of a new entry of `kind` that a caller whose group is
    /// `gid` makes in `parent`, as on a local disk: in a setgid directory it takes the
    /// directory's group, and a new directory there is setgid too, so a tree shared by a
    /// group stays the group's whoever writes in it. The kernel leaves this to the
    /// filesystem.
    pub(super) async fn inherit(
        self: &Arc<Self>,
        parent: u64,
        kind: Kind,
        perm: u16,
        gid: u32,
    ) -> Result<(u16, u32), FsError> {
        let dir = match self.ns.attr(parent) {
            Some(a) => a,
            None => self.getattr(parent).await?,
        };
        if dir.perm & attr::S_ISGID == 0 {
            return Ok((perm, gid));
        }
        let perm = if kind == Kind::Dir { perm | attr::S_ISGID } else { perm };
        Ok((perm, dir.gid))
    }

    /// Writes the object `key` that stands for new entry `name` of `parent` (a marker,
    /// symlink or special file), with `attr` as its metadata, and records it.
    async fn put_node(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        key: &str,
        attr: Attr,
        body: Bytes,
    ) -> Result<Attr, FsError> {
        if self.ns.entry(parent, name, &self.local()).await?.is_some() {
            return Err(FsError::Exists);
        }
        let new = NewObject {
            metadata: attr::to_metadata(&attr),
            content_type: None,
        };
        let etag = self.store.put(key, body, &new).await?;
        self.writes.changed_at(key);
        self.writes.wrote_in(key);
        self.ns.touch(parent, true);
        Ok(self.ns.link_written(parent, name, key, attr, &etag))
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
        let marker = self.ns.new_key(parent, name, Kind::Dir)?;
        let (perm, gid) = self.inherit(parent, Kind::Dir, (mode & 0o7777) as u16, gid).await?;
        let attr = Attr::new(Kind::Dir, 0, perm, uid, gid, SystemTime::now());
        let attr = self.put_node(parent, name, &marker, attr, Bytes::new()).await?;
        // Nothing was under the name (put_node made sure): the new directory is empty, so
        // the lookups and creates that usually follow a mkdir need no listing, and the role
        // may write in it.
        self.ns.meta().new_empty_dir(&marker, attr.mtime);
        self.writes.wrote_in(&format!("{marker}."));
        self.ns.subdir_changed(parent, true);
        Ok(attr)
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
        let key = self.ns.new_key(parent, name, Kind::Symlink)?;
        let (perm, gid) = self.inherit(parent, Kind::Symlink, 0o777, gid).await?;
        let attr = Attr::new(Kind::Symlink, target.len() as u64, perm, uid, gid, SystemTime::now());
        self.put_node(parent, name, &key, attr, Bytes::copy_from_slice(target.as_bytes()))
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
        let key = self.ns.new_key(parent, name, kind)?;
        let (perm, gid) = self.inherit(parent, kind, perm, gid).await?;
        let attr = Attr {
            rdev,
            ..Attr::new(kind, 0, perm, uid, gid, SystemTime::now())
        };
        self.put_node(parent, name, &key, attr, Bytes::new()).await
    }

    /// The entry `name` in `parent` that an operation acts on, checked like a new name
    /// (EROFS on a read-only mount); ENOENT if there is none.
    async fn existing(self: &Arc<Self>, parent: u64, name: &str) -> Result<Attr, FsError> {
        self.ns.new_key(parent, name, Kind::File)?;
        self.ns
            .entry(parent, name, &self.local())
            .await?
            .ok_or(FsError::NotFound)
    }

    /// Removes empty directory `name`.
    pub async fn rmdir(self: &Arc<Self>, parent: u64, name: &str) -> Result<(), FsError> {
        let attr = self.existing(parent, name).await?;
        if attr.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if self.ns.has_children(attr.ino, &self.local()).await? {
            return Err(FsError::NotEmpty);
        }
        let marker = self.ns.key_of(attr.ino)?;
        self.store.delete(&marker).await?;
        self.ns.meta().deleted_key(&marker);
        self.ns.meta().drop_listing(&marker);
        self.ns.unlink(parent, name, None);
        self.ns.touch(parent, true);
        self.ns.subdir_changed(parent, false);
        Ok(())
    }

    /// Removes file or symlink `name`. What is staged for it is never uploaded; handles open
    /// on it go on reading to the end (its object is deleted when the last one closes).
    pub async fn unlink(self: &Arc<Self>, parent: u64, name: &str) -> Result<(), FsError> {
        let attr = self.existing(parent, name).await?;
        if attr.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let ino = attr.ino;
        // Waits for an upload of it in progress, then keeps it from ever being uploaded.
        self.writes.discard_for_unlink(ino).await?;
        let key = self.ns.key_of(ino)?;
        // A file whose close failed waits to be uploaded at this key: it goes to the
        // recovery directory instead. A retry under way lands first (it holds the guard),
        // and every later one finds itself superseded.
        let retry_landing = match self.writes.retried_at(&key) {
            true => Some(self.ns.move_guard().await),
            false => None,
        };
        self.writes.changed_at(&key);
        drop(retry_landing);
        let open = self.ns.table().get(ino).is_some_and(|n| n.opens > 0);
        if self.ns.version(ino).is_some() {
            if open {
                self.ns.unlink(parent, name, Some(key));
            } else {
                self.store.delete(&key).await?;
                self.ns.meta().deleted_key(&key);
                self.ns.unlink(parent, name, None);
            }
        } else {
            self.ns.unlink(parent, name, None);
        }
        self.ns.touch(ino, false);
        self.ns.touch(parent, true);
        Ok(())
    }

    /// Copies an object of any size on the server, keeping its headers; returns the copy's
    /// ETag. With `if_match`, fails with ESTALE if the source is no longer that version.
    async fn copy_any(&self, source: &str, dest: &str, size: u64, if_match: Option<&str>) -> Result<String, FsError> {
        if size <= MAX_PART {
            return Ok(self.store.copy(source, dest, size, None, if_match).await?);
        }
        let info = self.store.head(source).await?;
        if if_match.is_some_and(|e| e != info.etag) {
            return Err(FsError::Stale(format!("{source} changed")));
        }
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
        match self.store.complete_multipart(dest, &upload_id, parts).await {
            Ok(etag) => Ok(etag),
            Err(e) => {
                let _ = self.store.abort_multipart(dest, &upload_id).await;
                Err(e.into())
            }
        }
    }

    /// Renames `name` in `parent` to `newname` in `newparent`, replacing a file (or an empty
    /// directory) there. A file's object is copied with its metadata then deleted; a
    /// directory is moved key by key, which is not atomic: a failure part-way leaves some
    /// keys moved. Files open or being written under it move with it: their handles, staged
    /// bytes and pending uploads belong to the inode, which now has the new name.
    pub async fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let from = self.existing(parent, name).await?;
        let dst_key = self.ns.new_key(newparent, newname, from.kind)?;
        let to = self.ns.entry(newparent, newname, &self.local()).await?;
        if to.as_ref().is_some_and(|t| t.ino == from.ino) {
            return Ok(());
        }
        if no_replace && to.is_some() {
            return Err(FsError::Exists);
        }
        if from.kind == Kind::Dir {
            if self.ns.table().is_within(newparent, from.ino) {
                return Err(FsError::Invalid);
            }
            if let Some(t) = &to {
                if t.kind != Kind::Dir {
                    return Err(FsError::NotDir);
                }
                if self.ns.has_children(t.ino, &self.local()).await? {
                    return Err(FsError::NotEmpty);
                }
            }
            self.rename_dir(&from, (parent, name), (newparent, newname), &dst_key)
                .await?;
            // The old parent loses a subdirectory unless it only changed its name; the new
            // one gains it unless it replaced one.
            if to.is_some() || parent != newparent {
                self.ns.subdir_changed(parent, false);
            }
            if to.is_none() && parent != newparent {
                self.ns.subdir_changed(newparent, true);
            }
        } else {
            if to.as_ref().is_some_and(|t| t.kind == Kind::Dir) {
                return Err(FsError::IsDir);
            }
            let replaced = to.map(|t| t.ino);
            self.rename_file(from.ino, replaced, (parent, name), (newparent, newname), &dst_key)
                .await?;
        }
        self.ns.touch(from.ino, false);
        self.ns.touch(parent, true);
        self.ns.touch(newparent, true);
        Ok(())
    }

    async fn rename_file(
        self: &Arc<Self>,
        ino: u64,
        replaced: Option<u64>,
        (parent, name): (u64, &str),
        (newparent, newname): (u64, &str),
        dst_key: &str,
    ) -> Result<(), FsError> {
        let inodes: Vec<u64> = [Some(ino), replaced].into_iter().flatten().collect();
        let mut held = self.writes.hold_for_move(&inodes).await?;
        let _moving = self.ns.move_guard().await;
        let src_key = self.ns.key_of(ino)?;
        self.writes.changed_at(&src_key);
        self.writes.changed_at(dst_key);
        // A file replaced while handles are open on it keeps its object for them until the
        // last one closes, unless the renamed file's object takes its key now.
        let replaced_object_stays = self.ns.version(ino).is_none()
            && replaced
                .is_some_and(|r| self.ns.version(r).is_some() && self.ns.table().get(r).is_some_and(|n| n.opens > 0));
        if let Some(version) = self.ns.version(ino) {
            let etag = match self
                .copy_any(&src_key, dst_key, version.size, Some(&version.etag()))
                .await
            {
                Ok(etag) => etag,
                // Another client replaced the object since this mount saw it: move what is
                // there now, as a rename of the name must.
                Err(FsError::Stale(_)) => {
                    let info = self.store.head(&src_key).await?;
                    self.copy_any(&src_key, dst_key, info.size, None).await?
                }
                Err(e) => return Err(e),
            };
            version.set_etag(&etag);
            self.ns.unhide(dst_key);
            self.store.delete(&src_key).await?;
            self.ns.meta().deleted_key(&src_key);
            self.ns
                .meta()
                .wrote_key(dst_key, version.size, &etag, SystemTime::now());
        } else if let Some(r) = replaced
            && self.ns.version(r).is_some()
            && !replaced_object_stays
        {
            // A file not in S3 yet takes the name of one that is: the old object goes now,
            // the new one appears when the file is uploaded.
            self.store.delete(dst_key).await?;
            self.ns.meta().deleted_key(dst_key);
        }
        if let Some(r) = self.ns.rename(parent, name, newparent, newname) {
            held.discard(r);
            if replaced_object_stays {
                self.ns.orphan(r, dst_key.to_owned());
            }
        }
        held.moved();
        Ok(())
    }

    async fn rename_dir(
        self: &Arc<Self>,
        from: &Attr,
        (parent, name): (u64, &str),
        (newparent, newname): (u64, &str),
        dst_prefix: &str,
    ) -> Result<(), FsError> {
        let inside: Vec<u64> = {
            let t = self.ns.table();
            self.writes
                .staged_inodes()
                .into_iter()
                .filter(|i| t.is_within(*i, from.ino))
                .collect()
        };
        let held = self.writes.hold_for_move(&inside).await?;
        let _moving = self.ns.move_guard().await;
        let src_prefix = self.ns.key_of(from.ino)?;
        self.writes.changed_under(&src_prefix);
        self.writes.changed_under(dst_prefix);
        let etags = self.move_tree(&src_prefix, dst_prefix).await?;
        self.ns.rename(parent, name, newparent, newname);
        // Objects copied by the move may carry new ETags: the versions that handles and
        // staging states hold follow them.
        let moved = self.ns.table().descendants(from.ino);
        for ino in moved {
            if let (Some(v), Ok(key)) = (self.ns.version(ino), self.ns.key_of(ino))
                && let Some(etag) = etags.get(&key)
            {
                v.set_etag(etag);
            }
        }
        self.ns.meta().forget_all();
        held.moved();
        Ok(())
    }

    /// Copies every key under `src` to `dst` (both `dir/` prefixes), then deletes the
    /// originals. Returns the new keys with their ETags.
    async fn move_tree(self: &Arc<Self>, src: &str, dst: &str) -> Result<HashMap<String, String>, FsError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.store.list_page(src, None, token, None).await?;
            // Objects of files unlinked while open stay where they are, for their handles.
            keys.extend(
                page.objects
                    .into_iter()
                    .filter(|o| !self.ns.is_hidden(&o.key))
                    .map(|o| (o.key, o.size, o.etag)),
            );
            token = page.next;
            if token.is_none() {
                break;
            }
        }
        if keys
            .iter()
            .any(|(k, _, _)| k.len() - src.len() + dst.len() > super::namespace::MAX_KEY_LEN)
        {
            return Err(FsError::NameTooLong);
        }
        let mut tasks = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        for (key, size, etag) in keys.clone() {
            let permit = limit
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| FsError::Io(e.to_string()))?;
            let me = self.clone();
            let dest = format!("{dst}{}", &key[src.len()..]);
            tasks.spawn(async move {
                let _permit = permit;
                let pin = (!etag.is_empty()).then_some(etag);
                let copied = match me.copy_any(&key, &dest, size, pin.as_deref()).await {
                    Err(FsError::Stale(_)) => {
                        let info = me.store.head(&key).await?;
                        me.copy_any(&key, &dest, info.size, None).await
                    }
                    other => other,
                };
                copied.map(|etag| (dest, etag))
            });
        }
        let mut etags = HashMap::new();
        while let Some(r) = tasks.join_next().await {
            let (dest, etag) = r.map_err(|e| FsError::Io(e.to_string()))??;
            etags.insert(dest, etag);
        }
        for (key, _, _) in keys {
            self.store.delete(&key).await?;
        }
        Ok(etags)
    }

    /// chmod, chown, utimens and truncate. On a file being written they go up with it;
    /// otherwise a metadata change rewrites the object's metadata in place on the server
    /// (CopyObject with REPLACE, keeping the content type and every other metadata key).
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
        if let Some(staged) = self.writes.staged(ino) {
            if let Some(size) = set.size {
                self.writes.truncate(ino, &staged, size).await?;
            }
            self.ns.update_attr(ino, |a| set.apply(a));
            self.writes.attrs_changed(ino, set.changes_metadata()).await;
            return self.getattr(ino).await;
        }
        if set.size.is_some() {
            self.writes.check_writable(&self.ns.key_of(ino)?).await?;
        }
        let staged = self.writes.begin(ino, true).await?;
        let result = async {
            if let Some(size) = set.size {
                self.writes.truncate(ino, &staged, size).await?;
            }
            self.ns.update_attr(ino, |a| set.apply(a));
            self.writes.attrs_changed(ino, set.changes_metadata()).await;
            self.writes.flush(ino).await?;
            self.getattr(ino).await
        }
        .await;
        if result.is_err() {
            // S3 did not take it: the mount shows what S3 has.
            self.writes.discard(ino).await;
            self.ns.update_attr(ino, |a| *a = Attr { ino, ..current.clone() });
        }
        self.writes.end(ino, false).await;
        result
    }

    async fn set_dir_attr(self: &Arc<Self>, ino: u64, current: Attr, set: SetAttr) -> Result<Attr, FsError> {
        if !set.changes_metadata() {
            return Ok(current);
        }
        if ino == ROOT_INO && self.cfg.prefix.is_empty() {
            return Err(FsError::NotPermitted);
        }
        let marker = self.ns.key_of(ino)?;
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
        self.ns.committed(ino, &marker, &attr, &etag, 0);
        Ok(attr)
    }
}
