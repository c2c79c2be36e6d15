//! The inode table: the only place that knows where a file lives. Each inode records its
//! parent and its name, never a whole path, so renaming a file or a directory above it is one
//! update here and every open handle, staging state and upload follows it, as open file
//! descriptors follow their inode on a local filesystem.

use super::version::ObjectVersion;
use crate::fs::attr::{Attr, Kind};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// Attributes with the time they were learned, for the metadata TTL.
#[derive(Clone, Debug)]
pub struct Stat {
    /// What the kernel is told.
    pub attr: Attr,
    /// When they were learned from S3, or set here.
    pub fetched: Instant,
    /// S3 was written behind them: ask again at the next look, whatever the TTL says.
    pub expired: bool,
}

/// One file, directory or symlink the kernel knows or a listing showed.
#[derive(Debug)]
pub struct Inode {
    /// Its number, never reused while the mount lives.
    pub ino: u64,
    /// The directory it is in (its last one, once unlinked).
    pub parent: u64,
    /// Its name in `parent`.
    pub name: Arc<str>,
    /// Type; a name that turns from a directory into something else gets a new inode.
    pub kind: Kind,
    /// Outstanding kernel lookups (FUSE `nlookup`).
    pub lookups: u64,
    /// Open handles, and staging states, that need the inode to stay.
    pub opens: u32,
    /// Whether it still has its name (false once unlinked or replaced by a rename).
    pub linked: bool,
    /// Last known attributes.
    pub stat: Option<Stat>,
    /// The object S3 holds for it, as far as this mount knows.
    pub version: Option<Arc<ObjectVersion>>,
    /// What only inodes that were opened or changed here need.
    extra: Option<Box<InodeExtra>>,
    /// When a listing last showed it (inodes nobody looked up expire after the TTL).
    listed: Option<Instant>,
}

/// The facts of an inode that only files opened, and files and directories changed, through
/// this mount have: kept apart so that the many inodes a listing of a large directory makes
/// cost less each.
#[derive(Debug, Default)]
pub struct InodeExtra {
    /// The version the last open saw, to let the kernel keep its page cache when unchanged.
    pub opened_version: Option<u64>,
    /// Times changed here and not stored in S3: a directory's mtime and ctime when entries
    /// come and go, a renamed file's ctime. They win over older stored times.
    pub local_mtime: Option<SystemTime>,
    /// See `local_mtime`.
    pub local_ctime: Option<SystemTime>,
    /// An unlinked file whose object is still in S3 because handles were open on it: the
    /// key it stays at until the last of them closes, then it is deleted.
    pub orphan_key: Option<String>,
}

impl Inode {
    fn new(ino: u64, parent: u64, name: Arc<str>, kind: Kind) -> Inode {
        Inode {
            ino,
            parent,
            name,
            kind,
            lookups: 0,
            opens: 0,
            linked: true,
            stat: None,
            version: None,
            extra: None,
            listed: None,
        }
    }

    /// What was opened or changed here, if anything was.
    pub fn extra(&self) -> Option<&InodeExtra> {
        self.extra.as_deref()
    }

    /// The same, made on first use.
    pub fn extra_mut(&mut self) -> &mut InodeExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The key an unlinked file's object stays at while handles are open on it.
    pub fn orphan_key(&self) -> Option<&str> {
        self.extra()?.orphan_key.as_deref()
    }

    /// Applies the times changed locally to attributes read from S3.
    pub fn overlay(&self, attr: &mut Attr) {
        let Some(extra) = self.extra() else { return };
        if let Some(t) = extra.local_mtime {
            attr.mtime = attr.mtime.max(t);
        }
        if let Some(t) = extra.local_ctime {
            attr.ctime = attr.ctime.max(t);
        }
    }

    fn in_use(&self) -> bool {
        self.ino == ROOT_INO || self.lookups > 0 || self.opens > 0
    }
}

/// All inodes, by number, with each directory's children by name.
#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<u64, Inode>,
    children: HashMap<u64, HashMap<Arc<str>, u64>>,
    /// Inodes created because a listing showed them, oldest first, so those the kernel never
    /// looked up can be dropped once the TTL has passed without scanning the table.
    listed: VecDeque<(Instant, u64)>,
    next: u64,
}

impl InodeTable {
    /// A table holding only the root directory.
    pub fn new() -> Self {
        let root = Inode {
            lookups: 1,
            ..Inode::new(ROOT_INO, ROOT_INO, Arc::from(""), Kind::Dir)
        };
        InodeTable {
            nodes: HashMap::from([(ROOT_INO, root)]),
            children: HashMap::new(),
            listed: VecDeque::new(),
            next: ROOT_INO + 1,
        }
    }

    /// An inode by number.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.nodes.get(&ino)
    }

    /// An inode by number, to update it.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.nodes.get_mut(&ino)
    }

    /// The inode called `name` in directory `parent`, if the table has one.
    pub fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.children.get(&parent).and_then(|c| c.get(name)).copied()
    }

    /// The children of `dir` the table holds.
    pub fn children_of(&self, dir: u64) -> Vec<u64> {
        self.children
            .get(&dir)
            .map(|c| c.values().copied().collect())
            .unwrap_or_default()
    }

    /// Path of a linked inode relative to the mount root ("" for the root), built from the
    /// names up to the root; `None` once it or a directory above it was unlinked.
    pub fn path(&self, ino: u64) -> Option<String> {
        let mut names = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let node = self.nodes.get(&at)?;
            if !node.linked {
                return None;
            }
            names.push(node.name.clone());
            at = node.parent;
        }
        let mut path = String::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for name in names.iter().rev() {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(name);
        }
        Some(path)
    }

    /// Whether `ino` is `dir` or lies anywhere under it.
    pub fn is_within(&self, ino: u64, dir: u64) -> bool {
        let mut at = ino;
        loop {
            if at == dir {
                return true;
            }
            if at == ROOT_INO {
                return false;
            }
            match self.nodes.get(&at) {
                Some(n) if n.linked => at = n.parent,
                _ => return false,
            }
        }
    }

    /// Every inode under directory `dir` that the table holds (not `dir` itself).
    pub fn descendants(&self, dir: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for c in self.children_of(d) {
                out.push(c);
                stack.push(c);
            }
        }
        out
    }

    fn insert(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        let ino = self.next;
        self.next += 1;
        let name: Arc<str> = Arc::from(name);
        self.nodes.insert(ino, Inode::new(ino, parent, name.clone(), kind));
        self.children.entry(parent).or_default().insert(name, ino);
        ino
    }

    /// The inode for `name` in `parent`, created if new. A name that turned from a directory
    /// into something else (or back) gets a fresh number, and the old inode loses its name.
    /// Other kinds share the number (a listing cannot tell a symlink from a file).
    pub fn upsert(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        if let Some(ino) = self.child(parent, name)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            if (node.kind == Kind::Dir) == (kind == Kind::Dir) {
                node.kind = kind;
                return ino;
            }
            self.unlink(parent, name);
        }
        self.insert(parent, name, kind)
    }

    /// Like [`upsert`](Self::upsert), for a name a listing showed: an inode created now is
    /// dropped after `ttl` unless the kernel looks it up or opens it.
    pub fn upsert_listed(&mut self, parent: u64, name: &str, kind: Kind, now: Instant) -> u64 {
        let ino = self.upsert(parent, name, kind);
        if let Some(node) = self.nodes.get_mut(&ino)
            && !node.in_use()
        {
            if node.listed.is_none() {
                self.listed.push_back((now, ino));
            }
            node.listed = Some(now);
        }
        ino
    }

    /// A new inode for `name` in `parent`; whatever had the name loses it.
    pub fn link_new(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        self.unlink(parent, name);
        self.insert(parent, name, kind)
    }

    /// Takes `name` away from its inode (unlink, rmdir, or replaced by a rename); the inode
    /// lives on while the kernel or a handle holds it. Returns it.
    pub fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.children.get_mut(&parent)?.remove(name)?;
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.linked = false;
        }
        self.drop_if_unused(ino);
        Some(ino)
    }

    /// Moves the inode called `name` in `parent` to `new_name` in `new_parent`, with
    /// everything under it. Whatever had the new name loses it and is returned.
    pub fn rename(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) -> Option<u64> {
        let ino = self.children.get_mut(&parent)?.remove(name)?;
        let replaced = self.unlink(new_parent, new_name);
        let new_name: Arc<str> = Arc::from(new_name);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.clone();
        }
        self.children.entry(new_parent).or_default().insert(new_name, ino);
        replaced
    }

    /// Counts one kernel lookup of `ino`.
    pub fn add_lookup(&mut self, ino: u64) {
        if let Some(i) = self.nodes.get_mut(&ino) {
            i.lookups += 1;
            i.listed = None;
        }
    }

    /// The kernel forgot `n` lookups.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(i) = self.nodes.get_mut(&ino) {
            i.lookups = i.lookups.saturating_sub(n);
        }
        self.drop_if_unused(ino);
    }

    /// A handle (or staging state) starts to hold `ino`.
    pub fn hold(&mut self, ino: u64) {
        if let Some(i) = self.nodes.get_mut(&ino) {
            i.opens += 1;
            i.listed = None;
        }
    }

    /// A handle let go of `ino`. Returns the key of its object if that must be deleted now:
    /// it was unlinked while open, and this was the last handle.
    pub fn let_go(&mut self, ino: u64) -> Option<String> {
        let node = self.nodes.get_mut(&ino)?;
        node.opens = node.opens.saturating_sub(1);
        let orphan = match node.extra.as_mut() {
            Some(extra) if node.opens == 0 => extra.orphan_key.take(),
            _ => None,
        };
        self.drop_if_unused(ino);
        orphan
    }

    /// Drops inodes that listings showed and nobody used within `ttl`, oldest first. Looks
    /// only at those that are due (and one more): returns how many it looked at.
    pub fn expire_listed(&mut self, now: Instant, ttl: std::time::Duration) -> usize {
        let mut looked = 0;
        while let Some(&(at, ino)) = self.listed.front() {
            looked += 1;
            if now.duration_since(at) < ttl {
                break;
            }
            self.listed.pop_front();
            let Some(node) = self.nodes.get(&ino) else { continue };
            match node.listed {
                Some(seen) if now.duration_since(seen) < ttl => self.listed.push_back((seen, ino)),
                Some(_) => self.drop_if_unused(ino),
                None => {}
            }
        }
        looked
    }

    /// Removes `ino` if nothing holds it, with whatever is under it that nothing holds
    /// either; then its parent if that was only waiting for it.
    fn drop_if_unused(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else { return };
        if node.in_use() || !self.subtree_unused(ino) {
            return;
        }
        let (parent, name, linked) = (node.parent, node.name.clone(), node.linked);
        for d in self.descendants(ino) {
            self.nodes.remove(&d);
            self.children.remove(&d);
        }
        self.nodes.remove(&ino);
        self.children.remove(&ino);
        if linked
            && let Some(siblings) = self.children.get_mut(&parent)
            && siblings.get(&name) == Some(&ino)
        {
            siblings.remove(&name);
            if siblings.is_empty() {
                self.children.remove(&parent);
            }
            if self.nodes.get(&parent).is_some_and(|p| p.listed.is_some()) {
                self.drop_if_unused(parent);
            }
        }
    }

    fn subtree_unused(&self, dir: u64) -> bool {
        self.descendants(dir)
            .iter()
            .all(|d| self.nodes.get(d).is_none_or(|n| !n.in_use()))
    }

    /// Number of inodes held.
    pub fn count(&self) -> usize {
        self.nodes.len()
    }
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbers_are_stable_and_never_reused() {
        let mut t = InodeTable::new();
        let a = t.upsert(ROOT_INO, "a", Kind::File);
        assert_eq!(t.upsert(ROOT_INO, "a", Kind::File), a);
        t.add_lookup(a);
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        let a2 = t.upsert(ROOT_INO, "a", Kind::File);
        assert_ne!(a, a2);
        let d = t.upsert(ROOT_INO, "a", Kind::Dir);
        assert_ne!(d, a2);
        assert_eq!(t.child(ROOT_INO, "a"), Some(d));
    }

    #[test]
    fn renaming_a_directory_is_one_update_that_everything_under_it_follows() {
        let mut t = InodeTable::new();
        let d = t.upsert(ROOT_INO, "d", Kind::Dir);
        let f = t.upsert(d, "f", Kind::File);
        t.add_lookup(f);
        let e = t.upsert(ROOT_INO, "e", Kind::Dir);
        t.add_lookup(e);
        assert_eq!(t.rename(ROOT_INO, "d", e, "d2"), None);
        assert_eq!(t.path(f).as_deref(), Some("e/d2/f"));
        assert_eq!(t.path(d).as_deref(), Some("e/d2"));
        assert_eq!(t.child(ROOT_INO, "d"), None);
        assert!(t.is_within(f, e) && !t.is_within(e, f));
    }

    #[test]
    fn a_rename_onto_a_name_unlinks_what_had_it() {
        let mut t = InodeTable::new();
        let a = t.upsert(ROOT_INO, "a", Kind::File);
        let b = t.upsert(ROOT_INO, "b", Kind::File);
        t.hold(b);
        assert_eq!(t.rename(ROOT_INO, "a", ROOT_INO, "b"), Some(b));
        assert_eq!(t.child(ROOT_INO, "b"), Some(a));
        assert_eq!(t.path(b), None, "the replaced file has no name");
        assert!(t.get(b).is_some(), "but lives while it is open");
        assert_eq!(t.let_go(b), None);
        assert!(t.get(b).is_none());
    }

    #[test]
    fn inodes_only_listed_expire_without_a_scan() {
        let mut t = InodeTable::new();
        let start = Instant::now();
        let d = t.upsert(ROOT_INO, "d", Kind::Dir);
        t.add_lookup(d);
        let listed: Vec<u64> = (0..1000)
            .map(|i| t.upsert_listed(d, &format!("f{i}"), Kind::File, start))
            .collect();
        t.add_lookup(listed[3]);
        t.hold(listed[4]);
        let looked = t.expire_listed(start + Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(looked, 1, "nothing is due: one look, not a scan of the table");
        assert_eq!(t.count(), 1002);
        t.expire_listed(start + Duration::from_secs(11), Duration::from_secs(10));
        assert_eq!(t.count(), 4, "root, d, the looked-up and the open one");
        assert_eq!(t.child(d, "f3"), Some(listed[3]));
    }

    #[test]
    fn an_unlinked_open_file_names_its_object_for_deletion_at_the_last_close() {
        let mut t = InodeTable::new();
        let a = t.upsert(ROOT_INO, "a", Kind::File);
        t.hold(a);
        t.hold(a);
        t.unlink(ROOT_INO, "a");
        if let Some(n) = t.get_mut(a) {
            n.extra_mut().orphan_key = Some("a".into());
        }
        assert_eq!(t.let_go(a), None);
        assert_eq!(t.let_go(a).as_deref(), Some("a"));
    }
}
