//! The write path on the in-memory store: every operation, what it costs, failures that
//! must leave S3 unchanged, and random operation sequences checked against a model.

use super::test_support::*;
use super::*;
use crate::store::Metadata;
use crate::store::mem::MemStore;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test]
async fn a_new_file_becomes_one_object_with_s3fs_metadata() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (attr, fh) = fs.create(ROOT_INO, "new.txt", 0o640, 1000, 100).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"hello ")).await.unwrap();
    fs.write(fh, 6, Bytes::from_static(b"world")).await.unwrap();
    assert!(store.get("new.txt").is_none(), "nothing is visible before close");
    assert_eq!(
        ls(&fs, "").await,
        BTreeSet::from(["new.txt".to_string()]),
        "but the mount shows it"
    );
    assert_eq!(
        fs.read(fh, 0, 100).await.unwrap(),
        &b"hello world"[..],
        "read-after-write"
    );
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    let (data, meta, _) = store.get("new.txt").unwrap();
    assert_eq!(&data[..], b"hello world");
    assert_eq!(meta.get("mode").map(String::as_str), Some("33184"));
    assert_eq!(
        (meta.get("uid").map(String::as_str), meta.get("gid").map(String::as_str)),
        (Some("1000"), Some("100"))
    );
    assert!(meta.contains_key("mtime"));
    assert_eq!(fs.getattr(attr.ino).await.unwrap().size, 11);
}

#[tokio::test]
async fn overwrite_in_place_append_and_truncate() {
    let store = Arc::new(MemStore::new());
    store.put("f", b"0123456789".to_vec(), Metadata::new());
    let fs = fs_rw(store.clone());
    write_at(&fs, "f", 3, b"abc", false).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"012abc6789");
    write_at(&fs, "f", 10, b"XY", false).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"012abc6789XY");
    write_at(&fs, "f", 14, b"!", false).await.unwrap();
    assert_eq!(
        &store.get("f").unwrap().0[..],
        b"012abc6789XY\0\0!",
        "a gap reads as zeros"
    );
    let a = find(&fs, "f").await.unwrap();
    fs.setattr(
        a.ino,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"012a");
    fs.setattr(
        a.ino,
        SetAttr {
            size: Some(6),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"012a\0\0");
    write_at(&fs, "f", 0, b"new", true).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"new");
}

#[tokio::test]
async fn truncating_an_open_file() {
    let store = Arc::new(MemStore::new());
    store.put("g", b"abcdefgh".to_vec(), Metadata::new());
    let fs = fs_rw(store.clone());
    let a = find(&fs, "g").await.unwrap();
    let (fh, _) = fs.open(a.ino, true, false).await.unwrap();
    fs.setattr(
        a.ino,
        SetAttr {
            size: Some(2),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fs.getattr(a.ino).await.unwrap().size, 2);
    fs.write(fh, 4, Bytes::from_static(b"zz")).await.unwrap();
    assert_eq!(fs.read(fh, 0, 100).await.unwrap(), &b"ab\0\0zz"[..]);
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(&store.get("g").unwrap().0[..], b"ab\0\0zz");
}

#[tokio::test]
async fn appending_to_a_large_object_copies_it_on_the_server() {
    let store = Arc::new(MemStore::new());
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 241) as u8).collect();
    store.put(
        "big",
        big.clone(),
        Metadata::from([
            ("mode".to_string(), "33188".to_string()),
            ("color".to_string(), "blue".to_string()),
        ]),
    );
    let fs = fs_rw(store.clone());
    let read_before = store.counters.bytes_read.load(Ordering::Relaxed);
    write_at(&fs, "big", big.len() as u64, b"tail", false).await.unwrap();
    assert_eq!(
        store.counters.bytes_read.load(Ordering::Relaxed),
        read_before,
        "the object was not downloaded"
    );
    let (data, meta, _) = store.get("big").unwrap();
    assert_eq!(data.len(), big.len() + 4);
    assert_eq!(&data[..big.len()], &big[..]);
    assert_eq!(&data[big.len()..], b"tail");
    assert_eq!(
        meta.get("color").map(String::as_str),
        Some("blue"),
        "other metadata kept"
    );
}

#[tokio::test]
async fn a_large_file_goes_up_in_parallel_parts() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let data: Vec<u8> = (0..23u32 << 20).map(|i| (i % 239) as u8).collect();
    let (_, fh) = fs.create(ROOT_INO, "large", 0o644, 0, 0).await.unwrap();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (i as u64) << 20, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(&store.get("large").unwrap().0[..], &data[..]);
    assert_eq!(store.counters.parts.load(Ordering::Relaxed), 5);
    assert_eq!(fs.staged_bytes(), 0, "staging is freed on close");
}

#[tokio::test]
async fn past_the_staging_limit_writes_get_enospc_and_nothing_written_is_lost() {
    let store = Arc::new(MemStore::new());
    let cfg = FsConfig {
        staging_limit: 2 << 20,
        ..fs_rw(store.clone()).cfg.clone()
    };
    // Files opened for writing over existing objects are staged on disk (a new file
    // written front to back is kept in memory instead: that one costs no staging).
    store.put("a", Vec::new(), Metadata::new());
    store.put("b", Vec::new(), Metadata::new());
    let fs = Fs::new(store.clone(), cfg);
    let (_, fresh) = fs.create(ROOT_INO, "fresh", 0o644, 0, 0).await.unwrap();
    fs.write(fresh, 0, Bytes::from(vec![9u8; 4 << 20])).await.unwrap();
    assert_eq!(fs.staged_bytes(), 0, "a new file written in order is not staged");
    fs.release(fresh).await;
    let first = vec![1u8; 3 << 19];
    let a = find(&fs, "a").await.unwrap();
    let (a, _) = fs.open(a.ino, true, false).await.unwrap();
    fs.write(a, 0, Bytes::from(first.clone())).await.unwrap();
    // The limit is shared by every file being written.
    let b = find(&fs, "b").await.unwrap();
    let (b, _) = fs.open(b.ino, true, false).await.unwrap();
    let refused = fs.write(b, 0, Bytes::from(vec![2u8; 1 << 20])).await.unwrap_err();
    assert_eq!(refused.errno(), libc::ENOSPC);
    let refused = fs.write(a, 3 << 19, Bytes::from(vec![3u8; 1 << 20])).await.unwrap_err();
    assert_eq!(refused.errno(), libc::ENOSPC);
    fs.flush(a).await.unwrap();
    fs.release(a).await;
    assert_eq!(store.get("a").unwrap().0, first, "what was accepted is uploaded");
    // Closing frees the room.
    fs.write(b, 0, Bytes::from(vec![2u8; 1 << 20])).await.unwrap();
    fs.flush(b).await.unwrap();
    fs.release(b).await;
    assert_eq!(store.get("b").unwrap().0.len(), 1 << 20);
    assert_eq!(fs.staged_bytes(), 0);
}

#[tokio::test]
async fn a_failed_upload_fails_close_and_changes_nothing() {
    let store = Arc::new(MemStore::new());
    store.put("keep", b"original".to_vec(), Metadata::new());
    let fs = fs_rw(store.clone());
    store.fail_parts(true);
    let a = find(&fs, "keep").await.unwrap();
    let (fh, _) = fs.open(a.ino, true, true).await.unwrap();
    fs.write(fh, 0, Bytes::from(vec![7u8; 12 << 20])).await.unwrap();
    assert_eq!(fs.flush(fh).await.unwrap_err().errno(), libc::EIO);
    assert_eq!(&store.get("keep").unwrap().0[..], b"original", "no partial object");
    // The file was kept in memory: its upload stays open, with the parts S3 refused held
    // to be sent again.
    assert_eq!(store.open_uploads(), 1);
    store.fail_parts(false);
    fs.flush(fh).await.expect("a retry succeeds");
    fs.release(fh).await;
    assert!(store.get("keep").unwrap().0 == vec![7u8; 12 << 20]);
    assert_eq!(store.open_uploads(), 0, "nothing left open");
}

#[tokio::test]
async fn a_role_that_may_not_write_gets_eacces_and_s3_is_unchanged() {
    let store = Arc::new(MemStore::new());
    store.put("ro/file", b"data".to_vec(), Metadata::new());
    store.deny_writes("ro/");
    let fs = fs_rw(store.clone());
    assert_eq!(
        write_at(&fs, "ro/new", 0, b"x", false).await.unwrap_err().errno(),
        libc::EACCES
    );
    assert_eq!(
        write_at(&fs, "ro/file", 0, b"x", false).await.unwrap_err().errno(),
        libc::EACCES
    );
    let d = find(&fs, "ro").await.unwrap();
    assert_eq!(fs.unlink(d.ino, "file").await.unwrap_err().errno(), libc::EACCES);
    assert_eq!(
        fs.mkdir(d.ino, "sub", 0o755, 0, 0).await.unwrap_err().errno(),
        libc::EACCES
    );
    let f = find(&fs, "ro/file").await.unwrap();
    assert_eq!(
        fs.setattr(
            f.ino,
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            }
        )
        .await
        .unwrap_err()
        .errno(),
        libc::EACCES
    );
    assert_eq!(store.keys(), vec!["ro/file".to_string()]);
    assert_eq!(&store.get("ro/file").unwrap().0[..], b"data");
}

#[tokio::test]
async fn directories_symlinks_and_renames() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let d = fs.mkdir(ROOT_INO, "d", 0o750, 7, 8).await.unwrap();
    assert_eq!(
        store.get("d/").unwrap().1.get("mode").map(String::as_str),
        Some("16872")
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap_err().errno(),
        libc::EEXIST
    );
    write_at(&fs, "d/a", 0, b"A", false).await.unwrap();
    fs.mkdir(d.ino, "sub", 0o755, 0, 0).await.unwrap();
    write_at(&fs, "d/sub/b", 0, b"B", false).await.unwrap();
    assert_eq!(fs.rmdir(ROOT_INO, "d").await.unwrap_err().errno(), libc::ENOTEMPTY);
    fs.symlink(d.ino, "link", "a", 5, 6).await.unwrap();
    let l = find(&fs, "d/link").await.unwrap();
    assert_eq!((l.kind, l.uid), (Kind::Symlink, 5));
    assert_eq!(fs.readlink(l.ino).await.unwrap(), b"a");
    assert_eq!(
        store.get("d/link").unwrap().1.get("mode").map(String::as_str),
        Some("41471")
    );

    // A file renamed onto another replaces it, metadata and all.
    write_at(&fs, "d/c", 0, b"C", false).await.unwrap();
    fs.rename(d.ino, "a", d.ino, "c", false).await.unwrap();
    assert_eq!(read(&fs, "d/c").await.unwrap(), b"A");
    assert_eq!(find(&fs, "d/a").await.unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        fs.rename(d.ino, "c", d.ino, "link", true).await.unwrap_err().errno(),
        libc::EEXIST
    );

    // A directory rename moves every key under it.
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false).await.unwrap();
    let mut keys = store.keys();
    keys.sort();
    assert_eq!(keys, vec!["e/", "e/c", "e/link", "e/sub/", "e/sub/b"]);
    assert_eq!(read(&fs, "e/sub/b").await.unwrap(), b"B");
    assert_eq!(
        ls(&fs, "e").await,
        BTreeSet::from(["c".into(), "link".into(), "sub".into()])
    );

    let e = find(&fs, "e").await.unwrap();
    let sub = find(&fs, "e/sub").await.unwrap();
    fs.unlink(sub.ino, "b").await.unwrap();
    assert_eq!(fs.unlink(e.ino, "sub").await.unwrap_err().errno(), libc::EISDIR);
    fs.rmdir(e.ino, "sub").await.unwrap();
    assert!(store.get("e/sub/").is_none());
    assert_eq!(fs.rmdir(e.ino, "c").await.unwrap_err().errno(), libc::ENOTDIR);
}

#[tokio::test]
async fn chmod_chown_utimens_keep_content_type_and_other_metadata() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let new = crate::store::NewObject {
        metadata: Metadata::from([("project".to_string(), "x".to_string())]),
        content_type: Some("text/csv".into()),
    };
    crate::store::ObjectStore::put(fs.store().as_ref(), "t.csv", Bytes::from_static(b"a,b\n"), &new)
        .await
        .unwrap();
    let a = find(&fs, "t.csv").await.unwrap();
    let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let set = SetAttr {
        mode: Some(0o600),
        uid: Some(42),
        gid: Some(43),
        mtime: Some(when),
        atime: Some(when - std::time::Duration::from_secs(5)),
        size: None,
    };
    let before = SystemTime::now();
    let after = fs.setattr(a.ino, set).await.unwrap();
    assert_eq!((after.perm, after.uid, after.gid, after.mtime), (0o600, 42, 43, when));
    assert_eq!(after.atime, when - std::time::Duration::from_secs(5));
    assert!(after.ctime >= before, "a change sets ctime");
    let (data, meta, ct) = store.get("t.csv").unwrap();
    assert_eq!(&data[..], b"a,b\n");
    assert_eq!(ct.as_deref(), Some("text/csv"));
    assert_eq!(meta.get("project").map(String::as_str), Some("x"));
    assert_eq!(meta.get("mode").map(String::as_str), Some("33152"));
    assert_eq!(meta.get("mtime").map(String::as_str), Some("1600000000"));
    // A fresh mount sees the same.
    let again = fs_rw(store.clone());
    let b = find(&again, "t.csv").await.unwrap();
    assert_eq!(
        (b.perm, b.uid, b.gid, b.mtime, b.atime, b.ctime),
        (0o600, 42, 43, when, after.atime, after.ctime)
    );
}

#[tokio::test]
async fn special_files_and_directory_times() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let root_before = fs.getattr(ROOT_INO).await.unwrap();
    let d = fs.mkdir(ROOT_INO, "dev", 0o755, 0, 0).await.unwrap();
    let fifo = fs.mknod(d.ino, "pipe", Kind::Fifo, 0o640, 0, (7, 8)).await.unwrap();
    let blk = fs
        .mknod(d.ino, "disk", Kind::BlockDevice, 0o660, 0x0801, (0, 6))
        .await
        .unwrap();
    assert_eq!(
        fs.mknod(d.ino, "pipe", Kind::Socket, 0o600, 0, (0, 0))
            .await
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    assert_eq!(
        store.get("dev/pipe").unwrap().1.get("mode").map(String::as_str),
        Some("4512")
    );
    assert_eq!(
        store.get("dev/disk").unwrap().1.get("rdev").map(String::as_str),
        Some("2049")
    );
    let again = fs_rw(store.clone());
    let f = find(&again, "dev/pipe").await.unwrap();
    assert_eq!((f.kind, f.perm, f.uid, f.gid), (Kind::Fifo, 0o640, 7, 8));
    let b = find(&again, "dev/disk").await.unwrap();
    assert_eq!((b.kind, b.rdev), (Kind::BlockDevice, 0x0801));
    assert_eq!((fifo.kind, blk.rdev), (Kind::Fifo, 0x0801));
    let after_d = fs.getattr(d.ino).await.unwrap();
    assert!(
        after_d.mtime > d.mtime && after_d.ctime > d.ctime,
        "entries change a directory's times"
    );
    assert!(fs.getattr(ROOT_INO).await.unwrap().mtime > root_before.mtime);
    fs.unlink(d.ino, "pipe").await.unwrap();
    assert!(find(&fs, "dev/pipe").await.is_err());
}

#[tokio::test]
async fn a_file_unlinked_while_open_is_not_uploaded() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "tmp", 0o600, 0, 0).await.unwrap();
    let tmp = find(&fs, "tmp").await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"scratch")).await.unwrap();
    fs.unlink(ROOT_INO, "tmp").await.unwrap();
    assert_eq!(
        fs.getattr(tmp.ino).await.unwrap().nlink,
        0,
        "fstat after unlink shows no links"
    );
    assert_eq!(
        fs.read(fh, 0, 10).await.unwrap(),
        &b"scratch"[..],
        "still readable through the handle"
    );
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert!(store.keys().is_empty());
}

#[tokio::test]
async fn the_last_close_wins_between_two_writers() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (a, fh1) = fs.create(ROOT_INO, "shared", 0o644, 0, 0).await.unwrap();
    let (fh2, _) = fs.open(a.ino, true, false).await.unwrap();
    fs.write(fh1, 0, Bytes::from_static(b"first")).await.unwrap();
    fs.write(fh2, 0, Bytes::from_static(b"SECOND")).await.unwrap();
    fs.flush(fh1).await.unwrap();
    fs.release(fh1).await;
    fs.flush(fh2).await.unwrap();
    fs.release(fh2).await;
    assert_eq!(&store.get("shared").unwrap().0[..], b"SECOND");
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        file: usize,
        offset: u16,
        len: u16,
        truncate: bool,
    },
    Truncate {
        file: usize,
        size: u16,
    },
    Unlink {
        file: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Chmod {
        file: usize,
        mode: u16,
    },
    Mkdir {
        dir: usize,
    },
    Rmdir {
        dir: usize,
    },
}

const FILES: [&str; 5] = ["a", "b", "d0/c", "d0/e", "d1/f"];
const DIRS: [&str; 2] = ["d0", "d1"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..FILES.len(), 0u16..3000, 1u16..3000, any::<bool>()).prop_map(|(file, offset, len, truncate)| Op::Write { file, offset, len, truncate }),
        1 => (0..FILES.len(), 0u16..4000).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => (0..FILES.len()).prop_map(|file| Op::Unlink { file }),
        1 => (0..FILES.len(), 0..FILES.len()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (0..FILES.len(), 0u16..0o777).prop_map(|(file, mode)| Op::Chmod { file, mode }),
        1 => (0..DIRS.len()).prop_map(|dir| Op::Mkdir { dir }),
        1 => (0..DIRS.len()).prop_map(|dir| Op::Rmdir { dir }),
    ]
}

/// What the filesystem should hold: files with contents and modes, and explicit directories.
#[derive(Default, Debug)]
struct Model {
    files: BTreeMap<String, (Vec<u8>, u16)>,
    dirs: BTreeSet<String>,
}

impl Model {
    fn dir_exists(&self, d: &str) -> bool {
        d.is_empty() || self.dirs.contains(d) || self.files.keys().any(|f| f.starts_with(&format!("{d}/")))
    }
    fn parent(f: &str) -> &str {
        f.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random sequences of writes, truncates, unlinks, renames, chmods, mkdirs and rmdirs
    /// leave the filesystem (and a fresh mount of the same bucket) as the model says.
    #[test]
    fn operations_match_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let store = Arc::new(MemStore::new());
            let fs = fs_rw(store.clone());
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Write { file, offset, len, truncate } => {
                        let f = FILES[file];
                        if !m.dir_exists(Model::parent(f)) { continue; }
                        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_add(offset as u8)).collect();
                        write_at(&fs, f, offset.into(), &data, truncate).await.unwrap();
                        let entry = m.files.entry(f.to_string()).or_insert((Vec::new(), 0o644));
                        if truncate { entry.0.clear(); }
                        let end = offset as usize + len as usize;
                        if entry.0.len() < end { entry.0.resize(end, 0); }
                        entry.0[offset as usize..end].copy_from_slice(&data);
                    }
                    Op::Truncate { file, size } => {
                        let f = FILES[file];
                        let Some(entry) = m.files.get_mut(f) else { continue };
                        let a = find(&fs, f).await.unwrap();
                        fs.setattr(a.ino, SetAttr { size: Some(size.into()), ..SetAttr::default() }).await.unwrap();
                        entry.0.resize(size as usize, 0);
                    }
                    Op::Unlink { file } => {
                        let f = FILES[file];
                        if m.files.remove(f).is_none() { continue; }
                        let (parent, name) = parent_of(&fs, f).await;
                        fs.unlink(parent, &name).await.unwrap();
                    }
                    Op::Rename { from, to } => {
                        let (f, t) = (FILES[from], FILES[to]);
                        if !m.files.contains_key(f) || !m.dir_exists(Model::parent(t)) || f == t { continue; }
                        let (p1, n1) = parent_of(&fs, f).await;
                        let (p2, n2) = parent_of(&fs, t).await;
                        fs.rename(p1, &n1, p2, &n2, false).await.unwrap();
                        // The source's directory stays if it had a marker.
                        let moved = m.files.remove(f).unwrap();
                        m.files.insert(t.to_string(), moved);
                    }
                    Op::Chmod { file, mode } => {
                        let f = FILES[file];
                        let Some(entry) = m.files.get_mut(f) else { continue };
                        let a = find(&fs, f).await.unwrap();
                        fs.setattr(a.ino, SetAttr { mode: Some(mode.into()), ..SetAttr::default() }).await.unwrap();
                        entry.1 = mode;
                    }
                    Op::Mkdir { dir } => {
                        let d = DIRS[dir];
                        let r = fs.mkdir(ROOT_INO, d, 0o755, 0, 0).await;
                        prop_assert_eq!(r.is_ok(), !m.dir_exists(d));
                        m.dirs.insert(d.to_string());
                    }
                    Op::Rmdir { dir } => {
                        let d = DIRS[dir];
                        let r = fs.rmdir(ROOT_INO, d).await;
                        let empty = !m.files.keys().any(|f| f.starts_with(&format!("{d}/")));
                        match (m.dir_exists(d), empty) {
                            (false, _) => prop_assert_eq!(r.unwrap_err().errno(), libc::ENOENT),
                            (true, false) => prop_assert_eq!(r.unwrap_err().errno(), libc::ENOTEMPTY),
                            (true, true) => { r.unwrap(); m.dirs.remove(d); }
                        }
                    }
                }
            }
            for view in [fs.clone(), fs_rw(store.clone())] {
                for f in FILES {
                    match m.files.get(f) {
                        Some((data, mode)) => {
                            prop_assert_eq!(&read(&view, f).await.unwrap(), data, "{}", f);
                            prop_assert_eq!(find(&view, f).await.unwrap().perm, *mode, "{}", f);
                        }
                        None => prop_assert!(find(&view, f).await.is_err(), "{} should not exist", f),
                    }
                }
                for d in DIRS {
                    prop_assert_eq!(find(&view, d).await.is_ok(), m.dir_exists(d), "{}", d);
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn sequential_writers_upload_parts_before_close() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "stream", 0o644, 0, 0).await.unwrap();
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i % 233) as u8).collect();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (i as u64) << 20, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        store.counters.parts.load(Ordering::Relaxed) >= 2,
        "parts went up while writing"
    );
    assert!(store.get("stream").is_none(), "but nothing is visible before close");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(&store.get("stream").unwrap().0[..], &data[..]);
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn a_seek_back_during_a_stream_falls_back_to_the_staged_upload() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "mixed", 0o644, 0, 0).await.unwrap();
    let mut data: Vec<u8> = (0..12u32 << 20).map(|i| (i % 229) as u8).collect();
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (i as u64) << 20, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    fs.write(fh, 10, Bytes::from_static(b"HEADER")).await.unwrap();
    data[10..16].copy_from_slice(b"HEADER");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(&store.get("mixed").unwrap().0[..], &data[..]);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(store.open_uploads(), 0, "the abandoned stream was aborted");
}

/// A file written front to back sends its parts from buffers that come back when each part
/// is sent, and the next parts reuse them: a long write faults in no fresh memory per part.
#[tokio::test]
async fn parts_written_front_to_back_reuse_their_buffers() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "big", 0o644, 0, 0).await.unwrap();
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    for i in 0..23u64 {
        fs.write(fh, i << 20, chunk.clone()).await.unwrap();
    }
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(store.get("big").unwrap().0.len(), 23 << 20);
    assert!(
        store.counters.parts.load(std::sync::atomic::Ordering::Relaxed) >= 4,
        "went up in parts"
    );
    let free = fs.writes.free_part_buffers();
    assert!(free >= 1, "the part buffers came back");
    let (_, fh) = fs.create(ROOT_INO, "next", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, chunk.clone()).await.unwrap();
    assert_eq!(
        fs.writes.free_part_buffers(),
        free,
        "a file of one write holds no part buffer"
    );
    fs.write(fh, 1 << 20, chunk).await.unwrap();
    assert_eq!(
        fs.writes.free_part_buffers(),
        free - 1,
        "a growing one reuses a free one"
    );
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
}
