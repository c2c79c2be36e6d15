//! What listing a large directory costs, in requests and in kernel lookups: `ls -l` as the
//! kernel runs it with READDIRPLUS, on the in-memory store.

use super::test_support::fs_rw_with;
use super::*;
use crate::store::Metadata;
use crate::store::mem::MemStore;
use std::collections::HashSet;

const ENTRIES: usize = 10_000;

/// A store with `n` objects under `big/`, each with s3fs-style POSIX metadata.
fn big_dir(n: usize) -> Arc<MemStore> {
    let store = Arc::new(MemStore::new());
    let meta: Metadata = [
        ("mode", "33216"),
        ("uid", "1234"),
        ("gid", "5678"),
        ("mtime", "1000000000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for i in 0..n {
        store.put(&format!("big/f{i:06}"), vec![b'x'; i % 7], meta.clone());
    }
    store
}

fn requests(store: &MemStore) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (store.counters.lists.load(Relaxed), store.counters.heads.load(Relaxed))
}

/// What the kernel and `ls -l` do with READDIRPLUS: opendir, then READDIRPLUS requests of
/// `batch` entries each until one comes back empty, and a stat of every entry after each
/// batch: an entry that came with the listing's attributes only is revalidated by a LOOKUP
/// (whose count the kernel then drops again, as the entry is the same). Returns every
/// entry with its attributes. The entry that did not fit a batch is refused, as a full
/// buffer refuses it.
async fn readdirplus_all(fs: &Arc<Fs<MemStore>>, dir: u64, batch: usize) -> Vec<(DirItem, Attr)> {
    let fh = fs.opendir(dir).await.expect("opendir");
    let mut out: Vec<(DirItem, Attr)> = Vec::new();
    let mut offset = 0;
    loop {
        let mut got = Vec::new();
        fs.readdirplus(fh, offset, |item, attr, complete| {
            if got.len() == batch {
                return true;
            }
            got.push((item.clone(), attr.clone(), complete));
            false
        })
        .await
        .expect("readdirplus");
        let Some((last, _, _)) = got.last() else { break };
        offset = last.next_offset;
        for (item, attr, complete) in got {
            if complete {
                out.push((item, attr));
            } else {
                let looked = fs.lookup(dir, &item.name).await.expect("lookup");
                assert_eq!(looked.ino, attr.ino, "{}", item.name);
                fs.forget(looked.ino, 1);
                out.push((item, looked));
            }
        }
    }
    fs.releasedir(fh);
    out
}

/// What `find` does: READDIRPLUS requests until one comes back empty, and no stat. Returns
/// the names and whether each came with complete attributes.
async fn names_only(fs: &Arc<Fs<MemStore>>, dir: u64) -> Vec<(String, bool)> {
    let fh = fs.opendir(dir).await.expect("opendir");
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let mut got = Vec::new();
        fs.readdirplus(fh, offset, |item, _, complete| {
            if got.len() == 100 {
                return true;
            }
            got.push((item.clone(), complete));
            false
        })
        .await
        .expect("readdirplus");
        let Some((last, _)) = got.last() else { break };
        offset = last.next_offset;
        out.extend(got.into_iter().map(|(i, c)| (i.name, c)));
    }
    fs.releasedir(fh);
    out
}

#[tokio::test]
async fn find_reads_names_and_types_without_a_head() {
    let store = big_dir(1500);
    let fs = fs_rw_with(store.clone(), |_| {});
    let dir = fs.lookup(ROOT_INO, "big").await.expect("big");
    let before = requests(&store).1;
    let names = names_only(&fs, dir.ino).await;
    assert_eq!(names.len(), 1502);
    assert!(
        names
            .iter()
            .filter(|(n, _)| !n.starts_with('.'))
            .all(|(_, complete)| !complete)
    );
    // Give a filler time to run, were one started.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(requests(&store).1, before, "no HEAD");
    // The first stat asks S3, and shows the object's own attributes.
    let f = fs.lookup(dir.ino, "f000007").await.expect("lookup");
    assert_eq!((f.perm, f.uid, f.gid), (0o700, 1234, 5678));
    assert_eq!(fs.getattr(f.ino).await.expect("stat").perm, 0o700);
}

#[tokio::test]
async fn ls_l_of_a_large_directory_costs_its_listing_and_one_head_per_entry() {
    let store = big_dir(ENTRIES);
    let fs = fs_rw_with(store.clone(), |_| {});
    let dir = fs.lookup(ROOT_INO, "big").await.expect("big");
    let before = requests(&store);
    let entries = readdirplus_all(&fs, dir.ino, 150).await;
    let (lists, heads) = requests(&store);
    let (lists, heads) = (lists - before.0, heads - before.1);
    let files: Vec<&(DirItem, Attr)> = entries.iter().filter(|(i, _)| !i.name.starts_with('.')).collect();
    assert_eq!(files.len(), ENTRIES);
    assert_eq!(lists, ENTRIES.div_ceil(1000) as u64, "one listing of 1,000-key pages");
    assert_eq!(heads, ENTRIES as u64, "one HEAD per entry, none twice");
    for (item, attr) in &files {
        assert_eq!((attr.perm, attr.uid, attr.gid), (0o700, 1234, 5678), "{}", item.name);
        assert_eq!(attr.kind, Kind::File);
    }
    // Every entry handed to the kernel counts one lookup, exactly; . and .. none.
    let inos: HashSet<u64> = files.iter().map(|(_, a)| a.ino).collect();
    assert_eq!(inos.len(), ENTRIES, "one inode per name");
    for ino in &inos {
        assert_eq!(fs.lookups(*ino), Some(1), "inode {ino}");
    }
    assert_eq!(
        fs.lookups(dir.ino),
        Some(1),
        "the directory itself: its own lookup only"
    );
    // Listing again counts again (the kernel counts each entry it gets), on the same inodes.
    let again = readdirplus_all(&fs, dir.ino, 1000).await;
    let (lists2, heads2) = requests(&store);
    assert_eq!((lists2 - before.0, heads2 - before.1), (lists, heads), "all cached");
    for (item, attr) in again.iter().filter(|(i, _)| !i.name.starts_with('.')) {
        assert!(inos.contains(&attr.ino), "{} got a new inode", item.name);
        assert_eq!(fs.lookups(attr.ino), Some(2));
    }
    // And the kernel's forgets take them all away.
    let held = fs.inode_count();
    for ino in &inos {
        fs.forget(*ino, 2);
    }
    assert_eq!(fs.inode_count(), held - ENTRIES);
    // A stat after `ls -l` needs no request.
    let a = fs.lookup(dir.ino, "f000123").await.expect("lookup");
    assert_eq!(a.size, 123 % 7);
    assert_eq!(requests(&store), (lists2, heads2));
}

#[tokio::test]
async fn without_posix_metadata_ls_l_costs_only_the_listing() {
    let store = big_dir(ENTRIES);
    let fs = fs_rw_with(store.clone(), |c| c.posix_metadata = false);
    let dir = fs.lookup(ROOT_INO, "big").await.expect("big");
    let before = requests(&store);
    let entries = readdirplus_all(&fs, dir.ino, 150).await;
    let (lists, heads) = requests(&store);
    assert_eq!(heads, 0, "no HEAD at all");
    assert_eq!(lists - before.0, ENTRIES.div_ceil(1000) as u64);
    let files: Vec<&(DirItem, Attr)> = entries.iter().filter(|(i, _)| !i.name.starts_with('.')).collect();
    assert_eq!(files.len(), ENTRIES);
    let listed = store.get("big/f000005").map(|(d, _, _)| d.len() as u64);
    for (item, attr) in &files {
        // What the listing says, and the mount defaults: the metadata is not read.
        assert_eq!((attr.perm, attr.uid, attr.gid), (0o644, 0, 0), "{}", item.name);
        assert_eq!(Some(attr.mtime), item.listed.as_ref().map(|l| l.mtime));
        assert_eq!(fs.lookups(attr.ino), Some(1));
    }
    assert_eq!(files[5].1.size, listed.unwrap_or_default());
    // Lookups and stats cost no HEAD either, with or without a cached listing.
    let fresh = fs_rw_with(store.clone(), |c| c.posix_metadata = false);
    let d = fresh.lookup(ROOT_INO, "big").await.expect("big");
    let f = fresh.lookup(d.ino, "f000006").await.expect("f000006");
    assert_eq!((f.size, f.perm), (6, 0o644));
    assert_eq!(fresh.lookup(d.ino, "nothing").await.unwrap_err().errno(), libc::ENOENT);
    assert_eq!(fresh.getattr(f.ino).await.expect("stat").size, 6);
    assert_eq!(requests(&store).1, 0, "no HEAD at all");
}

#[tokio::test]
async fn a_readdirplus_entry_made_here_after_opendir_or_gone_since_is_right() {
    let store = big_dir(3);
    let fs = fs_rw_with(store.clone(), |_| {});
    let dir = fs.lookup(ROOT_INO, "big").await.expect("big");
    let fh = fs.opendir(dir.ino).await.expect("opendir");
    // Removed behind the mount's back after the listing: left out, and not counted.
    store.remove("big/f000001");
    fs.ns.meta().drop_head("big/f000001");
    // A program has asked for an entry's attributes: the entries come with theirs.
    let first = fs.lookup(dir.ino, "f000000").await.expect("lookup");
    fs.forget(first.ino, 1);
    let mut names = Vec::new();
    fs.readdirplus(fh, 0, |item, attr, complete| {
        assert!(complete, "{}", item.name);
        names.push((item.name.clone(), attr.ino));
        false
    })
    .await
    .expect("readdirplus");
    fs.releasedir(fh);
    let shown: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(shown, [".", "..", "f000000", "f000002"]);
    for (name, ino) in &names[2..] {
        assert_eq!(fs.lookups(*ino), Some(1), "{name}");
    }
}
