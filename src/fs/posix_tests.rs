//! The POSIX rules the kernel leaves to the filesystem, which users sharing a mount
//! (`--allow-other`) depend on: the group of new entries, and the link count of directories.

use super::test_support::fs_rw as fs_over;
use super::*;
use crate::store::Metadata;
use crate::store::mem::MemStore;

fn stored_gid(store: &MemStore, key: &str) -> Option<String> {
    store.get(key).and_then(|(_, m, _)| m.get("gid").cloned())
}

async fn nlink(fs: &Arc<Fs<MemStore>>, ino: u64) -> u32 {
    fs.getattr(ino).await.map(|a| a.nlink).unwrap_or(0)
}

#[tokio::test]
async fn in_a_setgid_directory_new_entries_take_its_group() {
    let store = Arc::new(MemStore::new());
    let fs = fs_over(store.clone());
    // Root makes a directory for group 50, setgid; user 1000 (group 1000) works in it.
    let shared = fs.mkdir(ROOT_INO, "shared", 0o2775, 0, 50).await.unwrap();
    assert_eq!(shared.perm, 0o2775);
    let me = (1000, 1000);

    let (file, fh) = fs.create(shared.ino, "f", 0o644, me.0, me.1).await.unwrap();
    fs.release(fh).await;
    assert_eq!((file.uid, file.gid, file.perm), (1000, 50, 0o644));
    assert_eq!(stored_gid(&store, "shared/f").as_deref(), Some("50"));

    let sub = fs.mkdir(shared.ino, "sub", 0o755, me.0, me.1).await.unwrap();
    assert_eq!((sub.gid, sub.perm), (50, 0o2755), "a new directory stays setgid");
    let deeper = fs.mkdir(sub.ino, "deeper", 0o700, me.0, me.1).await.unwrap();
    assert_eq!((deeper.gid, deeper.perm), (50, 0o2700), "and so on down the tree");

    let link = fs.symlink(shared.ino, "l", "f", me.0, me.1).await.unwrap();
    assert_eq!(link.gid, 50);
    let fifo = fs.mknod(shared.ino, "p", Kind::Fifo, 0o600, 0, me).await.unwrap();
    assert_eq!((fifo.gid, fifo.perm), (50, 0o600));

    // Elsewhere the caller's own group, and no setgid bit from nowhere.
    let plain = fs.mkdir(ROOT_INO, "plain", 0o755, me.0, me.1).await.unwrap();
    assert_eq!((plain.gid, plain.perm), (1000, 0o755));
    let (own, fh) = fs.create(plain.ino, "g", 0o600, me.0, me.1).await.unwrap();
    fs.release(fh).await;
    assert_eq!(own.gid, 1000);
}

#[tokio::test]
async fn a_setgid_directory_from_s3_passes_its_group_on() {
    let store = Arc::new(MemStore::new());
    let marker: Metadata = [("mode", "17917"), ("uid", "0"), ("gid", "77")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    store.put("team/", "", marker);
    let fs = fs_over(store);
    let team = fs.lookup(ROOT_INO, "team").await.unwrap();
    assert_eq!(team.perm, 0o2775);
    let d = fs.mkdir(team.ino, "d", 0o750, 1000, 1000).await.unwrap();
    assert_eq!((d.gid, d.perm), (77, 0o2750));
}

#[tokio::test]
async fn a_directory_counts_its_subdirectories_in_its_links() {
    let store = Arc::new(MemStore::new());
    let fs = fs_over(store.clone());
    let a = fs.mkdir(ROOT_INO, "a", 0o755, 0, 0).await.unwrap();
    let b = fs.mkdir(ROOT_INO, "b", 0o755, 0, 0).await.unwrap();
    assert_eq!(a.nlink, 2);
    fs.mkdir(a.ino, "s", 0o755, 0, 0).await.unwrap();
    fs.mkdir(a.ino, "t", 0o755, 0, 0).await.unwrap();
    let (_, fh) = fs.create(a.ino, "file", 0o644, 0, 0).await.unwrap();
    fs.release(fh).await;
    assert_eq!((nlink(&fs, a.ino).await, nlink(&fs, b.ino).await), (4, 2));

    // A rename moves the subdirectory's `..` from one parent to the other.
    fs.rename(a.ino, "s", b.ino, "s", false).await.unwrap();
    assert_eq!((nlink(&fs, a.ino).await, nlink(&fs, b.ino).await), (3, 3));
    // Within one parent nothing changes; onto an empty directory the parent loses one.
    fs.rename(a.ino, "t", a.ino, "u", false).await.unwrap();
    assert_eq!(nlink(&fs, a.ino).await, 3);
    fs.mkdir(b.ino, "v", 0o755, 0, 0).await.unwrap();
    assert_eq!(nlink(&fs, b.ino).await, 4);
    fs.rename(b.ino, "v", b.ino, "s", false).await.unwrap();
    assert_eq!(nlink(&fs, b.ino).await, 3);
    fs.rmdir(b.ino, "s").await.unwrap();
    assert_eq!(nlink(&fs, b.ino).await, 2);
    // A directory renamed onto an empty one elsewhere: the old parent loses one, the new
    // one keeps its count.
    fs.mkdir(b.ino, "w", 0o755, 0, 0).await.unwrap();
    fs.rename(a.ino, "u", b.ino, "w", false).await.unwrap();
    assert_eq!((nlink(&fs, a.ino).await, nlink(&fs, b.ino).await), (2, 3));

    // Subdirectories another client made are counted once the directory is listed, and
    // the count stays after the listing's time.
    store.put("b/x/", "", Metadata::new());
    store.put("b/y/z", "z", Metadata::new());
    let fresh = fs_over(store);
    let b2 = fresh.lookup(ROOT_INO, "b").await.unwrap();
    let fh = fresh.opendir(b2.ino).await.unwrap();
    fresh.releasedir(fh);
    assert_eq!(nlink(&fresh, b2.ino).await, 5, "w, x and y");
    assert_eq!(fresh.lookup(ROOT_INO, "b").await.unwrap().nlink, 5);
}
