//! The inode table: numbers for paths, stable while the kernel remembers them.

use super::attr::{Attr, Kind};
use std::collections::HashMap;
use std::time::Instant;

/// The root directory's inode number.
pub const ROOT_INO: u64 = 1;

/// Attributes with the time they were learned, for the metadata TTL.
#[derive(Clone, Debug)]
pub struct Stat {
    /// What the kernel is told.
    pub attr: Attr,
    /// ETag of the object the attributes came from ("" for directories without a marker).
    pub etag: String,
    /// When they were fetched.
    pub fetched: Instant,
}

/// One file, directory or symlink the kernel knows.
#[derive(Clone, Debug)]
pub struct Inode {
    /// Its number.
    pub ino: u64,
    /// Parent directory's number.
    pub parent: u64,
    /// Path relative to the mount root, `/`-separated, "" for the root.
    pub path: String,
    /// Type; a path that changes type gets a new inode.
    pub kind: Kind,
    /// Outstanding kernel lookups (FUSE `nlookup`).
    pub lookups: u64,
    /// Last known attributes.
    pub stat: Option<Stat>,
    /// ETag seen by the last open, to let the kernel keep its page cache when unchanged.
    pub opened_etag: Option<String>,
    /// Times changed here and not stored in S3: a directory's mtime and ctime when entries
    /// come and go, a renamed file's ctime. They win over older stored times.
    pub local_mtime: Option<std::time::SystemTime>,
    /// See `local_mtime`.
    pub local_ctime: Option<std::time::SystemTime>,
}

impl Inode {
    /// Applies the times changed locally to attributes read from S3.
    pub fn overlay(&self, attr: &mut Attr) {
        if let Some(t) = self.local_mtime {
            attr.mtime = attr.mtime.max(t);
        }
        if let Some(t) = self.local_ctime {
            attr.ctime = attr.ctime.max(t);
        }
    }
}

/// All inodes, by number and by path.
#[derive(Debug)]
pub struct InodeTable {
    by_ino: HashMap<u64, Inode>,
    by_path: HashMap<String, u64>,
    next: u64,
}

impl InodeTable {
    /// A table holding only the root directory.
    pub fn new() -> Self {
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            path: String::new(),
            kind: Kind::Dir,
            lookups: 1,
            stat: None,
            opened_etag: None,
            local_mtime: None,
            local_ctime: None,
        };
        InodeTable {
            by_ino: HashMap::from([(ROOT_INO, root)]),
            by_path: HashMap::from([(String::new(), ROOT_INO)]),
            next: ROOT_INO + 1,
        }
    }

    /// An inode by number.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.by_ino.get(&ino)
    }

    /// An inode by number, to update it.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.by_ino.get_mut(&ino)
    }

    /// The inode currently standing for `path`, if any.
    pub fn by_path(&self, path: &str) -> Option<&Inode> {
        self.by_path.get(path).and_then(|i| self.by_ino.get(i))
    }

    /// The inode for `path`, created if new. A path that turned from a directory into
    /// something else (or back) gets a fresh number; the old one lives on until the kernel
    /// forgets it. Other kinds share the number (a listing cannot tell a symlink from a file).
    pub fn upsert(&mut self, parent: u64, path: &str, kind: Kind) -> u64 {
        if let Some(&ino) = self.by_path.get(path)
            && let Some(node) = self.by_ino.get_mut(&ino)
            && (node.kind == Kind::Dir) == (kind == Kind::Dir)
        {
            node.kind = kind;
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Inode {
                ino,
                parent,
                path: path.to_owned(),
                kind,
                lookups: 0,
                stat: None,
                opened_etag: None,
                local_mtime: None,
                local_ctime: None,
            },
        );
        self.by_path.insert(path.to_owned(), ino);
        ino
    }

    /// Counts one kernel lookup of `ino`.
    pub fn add_lookup(&mut self, ino: u64) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups += 1;
        }
    }

    /// The kernel forgot `n` lookups; drop the inode when none remain and it is not open.
    pub fn forget(&mut self, ino: u64, n: u64, open: bool) {
        if ino == ROOT_INO {
            return;
        }
        let Some(i) = self.by_ino.get_mut(&ino) else { return };
        i.lookups = i.lookups.saturating_sub(n);
        if i.lookups == 0 && !open {
            self.remove(ino);
        }
    }

    /// Drops inodes under `dir_path` that the kernel does not hold and that are gone from
    /// the directory, so listing big directories does not grow the table forever.
    pub fn prune_children(&mut self, parent: u64, keep: &dyn Fn(&str) -> bool, open: &dyn Fn(u64) -> bool) {
        let gone: Vec<u64> = self
            .by_ino
            .values()
            .filter(|i| i.parent == parent && i.ino != ROOT_INO && i.lookups == 0 && !keep(&i.path) && !open(i.ino))
            .map(|i| i.ino)
            .collect();
        for ino in gone {
            self.remove(ino);
        }
    }

    fn remove(&mut self, ino: u64) {
        if let Some(i) = self.by_ino.remove(&ino)
            && self.by_path.get(&i.path) == Some(&ino)
        {
            self.by_path.remove(&i.path);
        }
    }

    /// Takes `path` away from its inode (after unlink or rmdir); the inode lives on until
    /// the kernel forgets it.
    pub fn detach(&mut self, path: &str) -> Option<u64> {
        self.by_path.remove(path)
    }

    /// Moves `old` (and, for a directory, everything under it) to `new` in `new_parent`.
    /// Whatever stood at `new` loses its path.
    pub fn rename(&mut self, old: &str, new: &str, new_parent: u64) {
        self.by_path.remove(new);
        let under = format!("{old}/");
        let moved: Vec<u64> = self
            .by_ino
            .values()
            .filter(|i| i.ino != ROOT_INO && (i.path == old || i.path.starts_with(&under)))
            .map(|i| i.ino)
            .collect();
        for ino in moved {
            let Some(i) = self.by_ino.get_mut(&ino) else { continue };
            let rest = i.path[old.len()..].to_owned();
            if self.by_path.get(&i.path) == Some(&ino) {
                self.by_path.remove(&i.path);
            }
            i.path = format!("{new}{rest}");
            if rest.is_empty() {
                i.parent = new_parent;
            }
            self.by_path.insert(i.path.clone(), ino);
        }
    }

    /// Inodes whose path is under `dir` (for renames and rmdir checks).
    pub fn under(&self, dir: &str) -> Vec<u64> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.by_ino
            .values()
            .filter(|i| i.ino != ROOT_INO && i.path.starts_with(&prefix))
            .map(|i| i.ino)
            .collect()
    }

    /// Number of inodes held.
    pub fn count(&self) -> usize {
        self.by_ino.len()
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

    #[test]
    fn numbers_are_stable_and_never_reused() {
        let mut t = InodeTable::new();
        let a = t.upsert(ROOT_INO, "a", Kind::File);
        assert_eq!(t.upsert(ROOT_INO, "a", Kind::File), a);
        t.add_lookup(a);
        t.forget(a, 1, false);
        assert!(t.get(a).is_none());
        let a2 = t.upsert(ROOT_INO, "a", Kind::File);
        assert_ne!(a, a2);
        let d = t.upsert(ROOT_INO, "a", Kind::Dir);
        assert_ne!(d, a2);
        assert_eq!(t.by_path("a").map(|i| i.ino), Some(d));
    }

    #[test]
    fn renaming_a_directory_moves_everything_under_it() {
        let mut t = InodeTable::new();
        let d = t.upsert(ROOT_INO, "d", Kind::Dir);
        let f = t.upsert(d, "d/f", Kind::File);
        let other = t.upsert(ROOT_INO, "dx", Kind::File);
        let e = t.upsert(ROOT_INO, "e", Kind::Dir);
        t.rename("d", "e/d2", e);
        assert_eq!(t.by_path("e/d2").map(|i| (i.ino, i.parent)), Some((d, e)));
        assert_eq!(t.by_path("e/d2/f").map(|i| i.ino), Some(f));
        assert!(t.by_path("d/f").is_none());
        assert_eq!(t.by_path("dx").map(|i| i.ino), Some(other));
    }
}
