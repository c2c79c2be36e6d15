//! Tests of the core on the in-memory store: what the kernel would see, and what each
//! operation costs in requests.

use super::*;
use crate::store::Metadata;
use crate::store::mem::MemStore;
use proptest::prelude::*;

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn fs_over(store: Arc<MemStore>, prefix: &str) -> Arc<Fs<MemStore>> {
    let cfg = FsConfig {
        prefix: prefix.into(),
        defaults: Defaults {
            uid: 11,
            gid: 22,
            file_mode: 0o640,
            dir_mode: 0o750,
        },
        cache_bytes: 64 << 20,
        block_size: 64 << 10,
        max_request: 256 << 10,
        max_prefetch: 1 << 20,
        ..FsConfig::default()
    };
    Fs::new(store, cfg)
}

/// Opens the file at `path` for reading.
async fn open_for_reading(fs: &Arc<Fs<MemStore>>, path: &str) -> u64 {
    let attr = path_attr(fs, path).await.unwrap();
    fs.open(attr.ino, false, false).await.unwrap().0
}

async fn path_attr(fs: &Arc<Fs<MemStore>>, path: &str) -> Result<Attr, FsError> {
    let mut ino = ROOT_INO;
    let mut attr = fs.getattr(ino).await?;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        attr = fs.lookup(ino, seg).await?;
        ino = attr.ino;
    }
    Ok(attr)
}

async fn read_all(fs: &Arc<Fs<MemStore>>, path: &str, chunk: u32) -> Result<Vec<u8>, FsError> {
    let attr = path_attr(fs, path).await?;
    let (fh, _) = fs.open(attr.ino, false, false).await?;
    let mut out = Vec::new();
    loop {
        let data = fs.read(fh, out.len() as u64, chunk).await?;
        if data.is_empty() {
            break;
        }
        out.extend_from_slice(&data);
    }
    fs.release(fh).await;
    Ok(out)
}

async fn names(fs: &Arc<Fs<MemStore>>, path: &str) -> Vec<(String, Kind)> {
    let ino = path_attr(fs, path).await.unwrap().ino;
    let fh = fs.opendir(ino).await.unwrap();
    let items = fs.readdir_all(fh, 0).unwrap();
    fs.releasedir(fh);
    items.into_iter().skip(2).map(|i| (i.name, i.kind)).collect()
}

#[tokio::test]
async fn attributes_come_from_metadata_or_defaults() {
    let store = Arc::new(MemStore::new());
    store.put(
        "p/with",
        "abc",
        meta(&[
            ("mode", "33261"),
            ("uid", "1000"),
            ("gid", "100"),
            ("mtime", "1700000000.5"),
        ]),
    );
    store.put("p/without", "abcd", Metadata::new());
    store.put("p/dir/", "", meta(&[("mode", "16832"), ("uid", "5")]));
    store.put("p/dir/x", "1", Metadata::new());
    store.put("p/implied/y", "1", Metadata::new());
    let fs = fs_over(store, "p/");
    let a = path_attr(&fs, "with").await.unwrap();
    assert_eq!(
        (a.kind, a.perm, a.uid, a.gid, a.size),
        (Kind::File, 0o755, 1000, 100, 3)
    );
    assert_eq!(a.mtime, attr::parse_time("1700000000.5").unwrap());
    let b = path_attr(&fs, "without").await.unwrap();
    assert_eq!((b.perm, b.uid, b.gid, b.size), (0o640, 11, 22, 4));
    let d = path_attr(&fs, "dir").await.unwrap();
    assert_eq!((d.kind, d.perm, d.uid, d.gid), (Kind::Dir, 0o700, 5, 22));
    let i = path_attr(&fs, "implied").await.unwrap();
    assert_eq!((i.kind, i.perm, i.uid), (Kind::Dir, 0o750, 11));
    assert_eq!(path_attr(&fs, "nothing").await.unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        path_attr(&fs, &"n".repeat(256)).await.unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
}

#[tokio::test]
async fn listings_show_markers_implied_dirs_and_odd_names() {
    let store = Arc::new(MemStore::new());
    for k in [
        "a b",
        "c+d",
        "e%20f",
        "日本語.txt",
        "d1/d2/d3/deep",
        "marker/",
        "both",
        "both/inner",
    ] {
        store.put(k, k.as_bytes().to_vec(), Metadata::new());
    }
    let fs = fs_over(store, "");
    let got = names(&fs, "").await;
    let want: Vec<(String, Kind)> = [
        ("a b", Kind::File),
        ("both", Kind::Dir),
        ("c+d", Kind::File),
        ("d1", Kind::Dir),
        ("e%20f", Kind::File),
        ("marker", Kind::Dir),
        ("日本語.txt", Kind::File),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(got, want);
    assert!(names(&fs, "marker").await.is_empty());
    assert_eq!(names(&fs, "d1/d2/d3").await, vec![("deep".to_string(), Kind::File)]);
    assert_eq!(read_all(&fs, "d1/d2/d3/deep", 4096).await.unwrap(), b"d1/d2/d3/deep");
    assert_eq!(
        read_all(&fs, "日本語.txt", 4096).await.unwrap(),
        "日本語.txt".as_bytes()
    );
}

#[tokio::test]
async fn a_large_directory_pages_through_every_entry() {
    let store = Arc::new(MemStore::new());
    for i in 0..2500 {
        store.put(&format!("big/f{i:05}"), "", Metadata::new());
    }
    let fs = fs_over(store.clone(), "");
    assert_eq!(names(&fs, "big").await.len(), 2500);
    assert!(store.counters.lists.load(Ordering::Relaxed) >= 3);
}

#[tokio::test]
async fn a_random_small_read_costs_one_block_sized_get() {
    let store = Arc::new(MemStore::new());
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    store.put("big", data.clone(), Metadata::new());
    let fs = fs_over(store.clone(), "");
    let fh = open_for_reading(&fs, "big").await;
    let before = store.counters.gets.load(Ordering::Relaxed);
    let off = 3_000_000u64;
    let got = fs.read(fh, off, 4096).await.unwrap();
    assert_eq!(&got[..], &data[off as usize..off as usize + 4096]);
    assert_eq!(store.counters.gets.load(Ordering::Relaxed) - before, 1);
    assert_eq!(store.counters.bytes_read.load(Ordering::Relaxed), 64 << 10);
    // The same block again comes from the cache.
    fs.read(fh, off + 4096, 4096).await.unwrap();
    assert_eq!(store.counters.gets.load(Ordering::Relaxed) - before, 1);
}

/// Waits until the whole copies hold `bytes` fetched bytes.
async fn copy_fetched(fs: &Arc<Fs<MemStore>>, bytes: u64) {
    for _ in 0..1000 {
        if fs.copy_figures().1 >= bytes {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the copy never filled: {:?}", fs.copy_figures());
}

#[tokio::test]
async fn a_file_read_at_random_all_over_is_copied_whole_then_reads_cost_no_get() {
    let store = Arc::new(MemStore::new());
    let size = 16u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 247) as u8).collect();
    store.put("db", data.clone(), Metadata::new());
    let fs = fs_over(store.clone(), "");
    let fh = open_for_reading(&fs, "db").await;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut check = |fs: Arc<Fs<MemStore>>| {
        let off = rng.u64(0..size - 4096);
        let data = &data;
        async move {
            let got = fs.read(fh, off, 4096).await.unwrap();
            assert!(got[..] == data[off as usize..off as usize + 4096], "bytes at {off}");
        }
    };
    // Some random reads land near the last one and count as a sequential run: read more.
    for _ in 0..3 * read::SCATTERED_READS {
        check(fs.clone()).await;
    }
    copy_fetched(&fs, size).await;
    assert_eq!(fs.copy_figures().0, size, "the copy counts against the budget");
    let gets = store.counters.gets.load(Ordering::Relaxed);
    for _ in 0..300 {
        check(fs.clone()).await;
    }
    assert_eq!(
        store.counters.gets.load(Ordering::Relaxed),
        gets,
        "no GET once the copy is whole"
    );
    assert!(fs.copy_figures().2 >= 300, "{:?}", fs.copy_figures());
    // Another reader of the same version uses the same copy.
    let other = open_for_reading(&fs, "db").await;
    let got = fs.read(other, 1234, 100).await.unwrap();
    assert!(got[..] == data[1234..1334]);
    assert_eq!(store.counters.gets.load(Ordering::Relaxed), gets);
    fs.release(fh).await;
    fs.release(other).await;
    assert_eq!(fs.copy_figures().0, 0, "the copy goes with its last reader");
}

#[tokio::test]
async fn a_reader_of_a_few_long_runs_makes_no_copy() {
    let store = Arc::new(MemStore::new());
    let size = 32u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
    store.put("table.parquet", data.clone(), Metadata::new());
    let fs = fs_over(store.clone(), "");
    let fh = open_for_reading(&fs, "table.parquet").await;
    // A footer, then 20 column chunks of 1 MiB read through in 128 KiB reads.
    fs.read(fh, size - 8, 8).await.unwrap();
    fs.read(fh, size - 65536, 65536).await.unwrap();
    for chunk in 0..20u64 {
        let start = (chunk * 37 % 30) << 20;
        for piece in 0..8 {
            let off = start + piece * (128 << 10);
            let got = fs.read(fh, off, 128 << 10).await.unwrap();
            assert!(got[..] == data[off as usize..(off + (128 << 10)) as usize]);
        }
    }
    assert_eq!(fs.copy_figures(), (0, 0, 0), "long runs are no random reader");
    fs.release(fh).await;
}

#[tokio::test]
async fn sequential_reads_fetch_ahead_in_large_requests() {
    let store = Arc::new(MemStore::new());
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 253) as u8).collect();
    store.put("seq", data.clone(), Metadata::new());
    let fs = fs_over(store.clone(), "");
    assert_eq!(read_all(&fs, "seq", 128 << 10).await.unwrap(), data);
    let gets = store.counters.gets.load(Ordering::Relaxed);
    // 32 MiB in 256 KiB requests is 128; block-by-block it would be 512.
    assert!(gets <= 160, "{gets} GETs");
    assert_eq!(
        store.counters.bytes_read.load(Ordering::Relaxed),
        32 << 20,
        "every byte fetched once"
    );
    // The blocks read through were released as the reader went on (the kernel's page cache
    // has them): the cache holds the last 4 MiB the kernel may still ask for out of order,
    // and the prefetch window (1 MiB here), not all 32 MiB.
    let held = fs.cached_bytes();
    assert!(held <= 6 << 20, "{held} bytes still cached after a sequential read");
}

#[tokio::test]
async fn denied_keys_give_eacces_and_writes_erofs() {
    let store = Arc::new(MemStore::new());
    store.put("secret/x", "s", Metadata::new());
    store.put("open", "o", Metadata::new());
    store.deny("secret/x");
    let cfg = FsConfig {
        read_only: true,
        ..FsConfig::default()
    };
    let fs = Fs::new(store, cfg);
    assert_eq!(read_all(&fs, "secret/x", 10).await.unwrap_err().errno(), libc::EACCES);
    let a = path_attr(&fs, "open").await.unwrap();
    assert_eq!(fs.open(a.ino, true, false).await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(
        fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap_err().errno(),
        libc::EROFS
    );
    assert_eq!(fs.unlink(ROOT_INO, "open").await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(fs.refuse_write().errno(), libc::EROFS);
}

#[tokio::test]
async fn a_replaced_object_is_not_served_from_the_old_blocks() {
    let store = Arc::new(MemStore::new());
    store.put("f", "old contents", Metadata::new());
    let cfg = FsConfig {
        metadata_ttl: std::time::Duration::ZERO,
        ..FsConfig::default()
    };
    let fs = Fs::new(store.clone(), cfg);
    assert_eq!(read_all(&fs, "f", 100).await.unwrap(), b"old contents");
    store.put("f", "new!", Metadata::new());
    assert_eq!(read_all(&fs, "f", 100).await.unwrap(), b"new!");
}

#[tokio::test]
async fn symlinks_read_their_target() {
    let store = Arc::new(MemStore::new());
    store.put("link", "target/file", meta(&[("mode", "41471")]));
    store.put("geese", "", meta(&[("--symlink-target", "../x")]));
    let fs = fs_over(store, "");
    let a = path_attr(&fs, "link").await.unwrap();
    assert_eq!(a.kind, Kind::Symlink);
    assert_eq!(fs.readlink(a.ino).await.unwrap(), b"target/file");
    let g = path_attr(&fs, "geese").await.unwrap();
    assert_eq!(fs.readlink(g.ino).await.unwrap(), b"../x");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of reads of any sizes at any offsets returns exactly the object's bytes.
    /// Any reads of any object return its bytes: with runs shorter than a group buffer, and
    /// with runs of several groups (1 MiB) through a cache too small to keep them whole.
    #[test]
    fn reads_match_the_object(
        size in 0usize..3_300_000,
        reads in proptest::collection::vec((0u64..3_400_000, 1u32..300_000), 1..40),
        (block_size, max_request) in prop_oneof![Just((16u64 << 10, 64u64 << 10)), Just((64 << 10, 2 << 20))],
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let store = Arc::new(MemStore::new());
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
            store.put("obj", data.clone(), Metadata::new());
            let cfg = FsConfig { cache_bytes: 512 << 10, block_size, max_request, max_prefetch: 2 << 20, ..FsConfig::default() };
            let fs = Fs::new(store, cfg);
            let fh = open_for_reading(&fs, "obj").await;
            for (off, len) in reads {
                let got = fs.read(fh, off, len).await.unwrap();
                let start = (off as usize).min(size);
                let end = (off as usize + len as usize).min(size);
                prop_assert_eq!(&got[..], &data[start..end]);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_short_sequential_read_fetches_little_beyond_it() {
    // A Parquet column chunk: 2 MiB read in two requests in the middle of a large file.
    let store = Arc::new(MemStore::new());
    let data: Vec<u8> = (0..32u32 << 20).map(|i| (i % 241) as u8).collect();
    store.put("table", data.clone(), Metadata::new());
    let cfg = FsConfig {
        block_size: 256 << 10,
        max_request: 8 << 20,
        max_prefetch: 128 << 20,
        ..FsConfig::default()
    };
    let fs = Fs::new(store.clone(), cfg);
    let fh = open_for_reading(&fs, "table").await;
    for off in [8u64 << 20, 9 << 20] {
        let got = fs.read(fh, off, 1 << 20).await.unwrap();
        assert_eq!(&got[..], &data[off as usize..off as usize + (1 << 20)]);
    }
    // Give prefetches time to finish, then count what was fetched.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fetched = store.counters.bytes_read.load(Ordering::Relaxed);
    // The 2 MiB and 1 MiB ahead (half the run, at least 1 MiB); not up to the next 8 MiB
    // boundary.
    assert!(fetched <= 3 << 20, "{fetched} bytes fetched for a 2 MiB read");
}

#[tokio::test]
async fn expired_attributes_do_not_pile_up() {
    let store = Arc::new(MemStore::new());
    for i in 0..50 {
        store.put(&format!("a{i}/f"), "x", Metadata::new());
    }
    store.put("z/f", "x", Metadata::new());
    let cfg = FsConfig {
        metadata_ttl: std::time::Duration::from_millis(200),
        ..FsConfig::default()
    };
    let fs = Fs::new(store, cfg);
    for i in 0..50 {
        path_attr(&fs, &format!("a{i}/f")).await.unwrap();
    }
    let (before, _) = fs.metadata_cache_sizes();
    assert!(before >= 50, "{before} attributes cached");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    path_attr(&fs, "z/f").await.unwrap();
    let (after, _) = fs.metadata_cache_sizes();
    assert!(after <= 3, "{after} attributes still cached after they all expired");
}

#[tokio::test]
async fn a_read_across_blocks_fetched_together_is_not_copied() {
    let store = Arc::new(MemStore::new());
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 249) as u8).collect();
    store.put("grouped", data.clone(), Metadata::new());
    let fs = fs_over(store.clone(), "");
    let fh = open_for_reading(&fs, "grouped").await;
    // One read of four 64 KiB blocks: one GET, one buffer.
    fs.read(fh, 0, 256 << 10).await.unwrap();
    // Each of these spans two blocks of that GET.
    let a = fs.read(fh, 32 << 10, 64 << 10).await.unwrap();
    let b = fs.read(fh, 96 << 10, 64 << 10).await.unwrap();
    assert_eq!(&a[..], &data[32 << 10..96 << 10]);
    assert_eq!(&b[..], &data[96 << 10..160 << 10]);
    // Both are slices of the one buffer the GET filled, so they lie side by side in memory.
    assert_eq!(b.as_ptr(), a.as_ptr().wrapping_add(64 << 10));
}

#[tokio::test]
async fn creating_files_in_a_listed_directory_costs_one_put_each() {
    let store = Arc::new(MemStore::new());
    store.put("d/", "", Metadata::new());
    store.put("d/old", "o", Metadata::new());
    let fs = fs_over(store.clone(), "");
    let d = path_attr(&fs, "d").await.unwrap();
    let fh = fs.opendir(d.ino).await.unwrap();
    fs.releasedir(fh);
    let c = &store.counters;
    let requests = || {
        [
            &c.lists,
            &c.heads,
            &c.gets,
            &c.writes,
            &c.deletes,
            &c.uploads_started,
            &c.aborts,
        ]
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum::<u64>()
    };
    for i in 0..5 {
        let before = requests();
        let name = format!("f{i}");
        // What the kernel does: a lookup that finds nothing, then create, write, close.
        assert_eq!(fs.lookup(d.ino, &name).await.unwrap_err().errno(), libc::ENOENT);
        let (_, fh) = fs.create(d.ino, &name, 0o644, 0, 0).await.unwrap();
        fs.write(fh, 0, bytes::Bytes::from(vec![i as u8; 4096])).await.unwrap();
        fs.flush(fh).await.unwrap();
        fs.release(fh).await;
        // The first create in a directory asks S3 whether the role may write there (a
        // multipart upload started and aborted); the role's answer holds for the rest.
        let probe = if i == 0 { 2 } else { 0 };
        assert_eq!(requests() - before, 1 + probe, "file {i}: only its PutObject");
    }
    // A new directory starts with a listing of its own: files go in at one PUT each.
    let sub = fs.mkdir(d.ino, "sub", 0o755, 0, 0).await.unwrap();
    let before = requests();
    assert_eq!(fs.lookup(sub.ino, "x").await.unwrap_err().errno(), libc::ENOENT);
    let (_, fh) = fs.create(sub.ino, "x", 0o644, 0, 0).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(requests() - before, 1, "a file in a new directory: only its PutObject");
    // The directory shows what was written, without listing again.
    let listed = |fs: Arc<Fs<MemStore>>| async move {
        let fh = fs.opendir(d.ino).await.unwrap();
        let items = fs.readdir_all(fh, 0).unwrap();
        fs.releasedir(fh);
        items
            .into_iter()
            .map(|i| i.name)
            .filter(|n| !n.starts_with('.'))
            .collect::<Vec<_>>()
    };
    let before = requests();
    assert_eq!(listed(fs.clone()).await, ["f0", "f1", "f2", "f3", "f4", "old", "sub"]);
    assert_eq!(requests(), before, "readdir from the updated listing");
    assert_eq!(path_attr(&fs, "d/f3").await.unwrap().size, 4096);
    // An unlink takes the name out of the cached listing too.
    fs.unlink(d.ino, "f2").await.unwrap();
    assert_eq!(fs.lookup(d.ino, "f2").await.unwrap_err().errno(), libc::ENOENT);
    assert_eq!(listed(fs.clone()).await, ["f0", "f1", "f3", "f4", "old", "sub"]);
    // And S3 agrees.
    assert_eq!(store.get("d/f3").map(|(b, _, _)| b.len()), Some(4096));
    assert!(store.get("d/f2").is_none());
    assert_eq!(path_attr(&fs, "d/sub/x").await.unwrap().size, 0);
}
