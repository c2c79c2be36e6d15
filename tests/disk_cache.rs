//! The disk cache (`--cache-dir`) on a real mount against the local S3 server: a re-read
//! after a remount costs no GET (the server's request log says so), an object changed by
//! another client is read fresh, a damaged cache file is fetched again and never returned,
//! a second mount on the same directory is refused with a message naming the first, and the
//! size bound holds after reading more than it.

mod common;

use common::{Mount, Server, pattern, shared_server, status};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

fn cache_args(s: &Server, dir: &Path, size: &str) -> Vec<String> {
    let mut args = s.reader_args();
    args.extend([
        "--cache-dir".into(),
        dir.display().to_string(),
        "--cache-dir-size".into(),
        size.into(),
    ]);
    args
}

fn status_number(m: &Mount, name: &str) -> u64 {
    let all = status(&m.path);
    all.get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status {name}: {all:?}"))
}

/// Waits until the disk cache holds at least `bytes` (blocks are written in the background).
fn wait_for_disk_bytes(m: &Mount, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_number(m, "disk_cache_bytes") < bytes {
        assert!(Instant::now() < deadline, "the disk cache never reached {bytes} bytes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every block file in a cache directory.
fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir.join("blocks")).expect("blocks dir").flatten() {
        for f in std::fs::read_dir(sub.path()).expect("subdir").flatten() {
            out.push(f.path());
        }
    }
    out
}

/// Puts `data` at `dir/f.bin`, reads it through a mount with a fresh disk cache and waits
/// until the cache holds it all; returns the cache directory and the mount's arguments.
fn read_once_with_a_cache(s: &Server, dir: &str, data: &[u8]) -> (tempfile::TempDir, Vec<String>) {
    s.put("data", &format!("{dir}/f.bin"), data.to_vec(), &[]);
    let cache = tempfile::tempdir().expect("tempdir");
    let args = cache_args(s, cache.path(), "1G");
    let m = Mount::start(s, "alice", &format!("data:/{dir}"), &args).expect("mount");
    assert!(std::fs::read(m.join("f.bin")).expect("read") == data);
    wait_for_disk_bytes(&m, data.len() as u64);
    m.unmount();
    (cache, args)
}

#[test]
fn reads_served_from_a_whole_copy_come_from_the_disk_after_a_remount() {
    // A file read at random all over gets a whole local copy; with a disk cache, what the
    // copy fetched is kept there too, so the same reads tomorrow cost no GET.
    let s = server();
    let size = 24usize << 20;
    let data = pattern(size, 5);
    s.put("data", "dc6/db.bin", data.clone(), &[]);
    let cache = tempfile::tempdir().expect("tempdir");
    let args = cache_args(s, cache.path(), "1G");
    let offsets: Vec<u64> = (0..200u64).map(|i| i * 7919 % (size as u64 / 4096) * 4096).collect();
    let read_all = |m: &Mount| {
        let f = std::fs::File::open(m.join("db.bin")).expect("open");
        for &at in &offsets {
            let mut buf = vec![0u8; 4096];
            f.read_exact_at(&mut buf, at).expect("pread");
            assert!(buf[..] == data[at as usize..at as usize + 4096], "bytes at {at}");
        }
    };
    let m = Mount::start(s, "alice", "data:/dc6", &args).expect("mount");
    read_all(&m);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_number(&m, "copy_fetched_bytes") < size as u64 {
        assert!(Instant::now() < deadline, "the copy never filled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(status_number(&m, "copy_reads") > 0, "some reads came from the copy");
    wait_for_disk_bytes(&m, size as u64);
    m.unmount();
    let gets = s.gets_of("data", "dc6/db.bin").len();
    let m = Mount::start(s, "alice", "data:/dc6", &args).expect("remount");
    read_all(&m);
    assert_eq!(
        s.gets_of("data", "dc6/db.bin").len(),
        gets,
        "the same reads cost no GET"
    );
    assert_eq!(
        status_number(&m, "copy_bytes"),
        0,
        "reads the disk answers make no copy"
    );
    m.unmount();
}

#[test]
fn a_re_read_after_a_remount_costs_no_get() {
    let s = server();
    let data = pattern(3 << 20, 1);
    let (cache, args) = read_once_with_a_cache(s, "dc1", &data);
    let gets = s.gets_of("data", "dc1/f.bin").len();
    let m = Mount::start(s, "alice", "data:/dc1", &args).expect("remount");
    assert!(std::fs::read(m.join("f.bin")).expect("read again") == data);
    // A footer read, as a Parquet reader does first.
    let f = std::fs::File::open(m.join("f.bin")).expect("open");
    let mut footer = vec![0u8; 8];
    f.read_exact_at(&mut footer, data.len() as u64 - 8).expect("pread");
    assert!(footer[..] == data[data.len() - 8..]);
    assert_eq!(
        s.gets_of("data", "dc1/f.bin").len(),
        gets,
        "no GET: every block came from disk"
    );
    assert!(status_number(&m, "disk_cache_hits") >= (3 << 20) / (64 << 10));
    // The directory and its files are the mounting user's only.
    let mode =
        |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("stat").permissions()) & 0o777;
    assert_eq!(mode(cache.path()), 0o700);
    for f in block_files(cache.path()) {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    m.unmount();
}

#[test]
fn an_object_changed_by_another_client_is_read_fresh() {
    let s = server();
    let (v1, v2) = (pattern(1 << 20, 2), pattern(1 << 20, 3));
    let (_cache, args) = read_once_with_a_cache(s, "dc2", &v1);
    // Same key, same size, other bytes.
    s.put("data", "dc2/f.bin", v2.clone(), &[]);
    let m = Mount::start(s, "alice", "data:/dc2", &args).expect("remount");
    assert!(
        std::fs::read(m.join("f.bin")).expect("read again") == v2,
        "the new bytes, never the cached ones"
    );
    m.unmount();
}

#[test]
fn a_damaged_or_cut_cache_file_is_fetched_again_never_returned() {
    let s = server();
    let data = pattern(1 << 20, 4);
    let (cache, args) = read_once_with_a_cache(s, "dc3", &data);
    // One bit flipped in every other file, the rest cut short by a byte.
    let files = block_files(cache.path());
    assert_eq!(files.len(), 16, "{files:?}");
    for (i, path) in files.iter().enumerate() {
        let mut bytes = std::fs::read(path).expect("read cache file");
        if i % 2 == 0 {
            let at = bytes.len() - 1000;
            bytes[at] ^= 0x10;
        } else {
            bytes.pop();
        }
        std::fs::write(path, &bytes).expect("damage");
    }
    let gets = s.gets_of("data", "dc3/f.bin").len();
    let m = Mount::start(s, "alice", "data:/dc3", &args).expect("remount");
    assert!(
        std::fs::read(m.join("f.bin")).expect("read again") == data,
        "never a damaged byte"
    );
    assert!(s.gets_of("data", "dc3/f.bin").len() > gets, "fetched again from S3");
    assert_eq!(status_number(&m, "disk_cache_damaged"), 16);
    m.unmount();
}

#[test]
fn a_second_mount_on_the_same_cache_directory_is_refused_naming_the_first() {
    let s = server();
    s.put("data", "dc4/f.bin", b"x".to_vec(), &[]);
    let cache = tempfile::tempdir().expect("tempdir");
    let args = cache_args(s, cache.path(), "1G");
    let first = Mount::start(s, "alice", "data:/dc4", &args).expect("mount");
    let err = match Mount::start(s, "alice", "data:/dc4", &args) {
        Ok(second) => {
            second.unmount();
            panic!("a second mount on the same cache directory was let in");
        }
        Err(e) => e,
    };
    assert!(err.contains("is in use by the mount of s3://data/dc4"), "{err}");
    assert!(err.contains(&first.path.display().to_string()), "{err}");
    first.unmount();
    // Free again once the first is gone.
    Mount::start(s, "alice", "data:/dc4", &args)
        .expect("mount again")
        .unmount();
}

#[test]
fn the_size_bound_holds_after_reading_more_than_it() {
    let s = server();
    let data = pattern(6 << 20, 5);
    s.put("data", "dc5/f.bin", data.clone(), &[]);
    let cache = tempfile::tempdir().expect("tempdir");
    let args = cache_args(s, cache.path(), "2M");
    let m = Mount::start(s, "alice", "data:/dc5", &args).expect("mount");
    assert!(std::fs::read(m.join("f.bin")).expect("read") == data);
    wait_for_disk_bytes(&m, 1 << 20);
    assert!(status_number(&m, "disk_cache_bytes") <= 2 << 20);
    m.unmount();
    let on_disk: u64 = block_files(cache.path())
        .iter()
        .map(|f| std::fs::metadata(f).expect("stat").len())
        .sum();
    assert!(on_disk > 0 && on_disk <= 2 << 20, "{on_disk} bytes on disk");
}
