//! A real FUSE mount through an assumed role (trust policy requiring an ExternalId) against
//! the local S3+STS server with IAM enforcement: listing, byte-exact reads, POSIX
//! attributes, denials and the read-only mount.

mod common;

use common::{Mount, Server, pattern, shared_server};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn lists_and_reads_byte_exact_through_the_role() {
    let s = server();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("t1/small.txt", b"hello world\n".to_vec()),
        ("t1/empty.txt", Vec::new()),
        ("t1/with space.txt", b"space".to_vec()),
        ("t1/plus+sign.txt", b"plus".to_vec()),
        ("t1/per%20cent.txt", b"percent".to_vec()),
        ("t1/日本語/ファイル.txt", "非ASCII".as_bytes().to_vec()),
        ("t1/l1/l2/l3/deep.bin", pattern(300_000, 3)),
        ("t1/nomarker/inside.txt", b"implied directory".to_vec()),
    ];
    for (k, v) in &files {
        s.put("data", k, v.clone(), &[]);
    }
    s.put("data", "t1/markeronly/", Vec::new(), &[]);
    let big = pattern(100 << 20, 100);
    s.put("data", "t1/big.bin", big.clone(), &[]);

    let m = Mount::start(s, "alice", "data:/t1", &s.reader_args()).expect("mount");
    let root = names(&m.path);
    let want: BTreeSet<String> = [
        "small.txt",
        "empty.txt",
        "with space.txt",
        "plus+sign.txt",
        "per%20cent.txt",
        "日本語",
        "l1",
        "nomarker",
        "markeronly",
        "big.bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(root, want, "{}", m.log());
    for (k, v) in &files {
        let rel = k.strip_prefix("t1/").expect("prefix");
        let got = std::fs::read(m.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}\n{}", m.log()));
        assert_eq!(&got, v, "{rel}");
    }
    assert!(m.join("markeronly").is_dir());
    assert!(names(&m.join("markeronly")).is_empty());
    assert!(m.join("nomarker").is_dir());
    assert_eq!(names(&m.join("l1/l2/l3")), BTreeSet::from(["deep.bin".to_string()]));
    assert_eq!(std::fs::metadata(m.join("big.bin")).expect("stat").len(), 100 << 20);
    let got = std::fs::read(m.join("big.bin")).expect("read big");
    assert!(got == big, "100 MiB file differs");
    // A footer read of the big file, as Parquet readers do.
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(m.join("big.bin")).expect("open");
    f.seek(SeekFrom::End(-8)).expect("seek");
    let mut footer = [0u8; 8];
    f.read_exact(&mut footer).expect("footer");
    assert_eq!(&footer[..], &big[big.len() - 8..]);
    drop(f);
    assert!(std::fs::read(m.join("missing.txt")).is_err());
    m.unmount();
}

#[test]
fn a_footer_read_costs_one_small_ranged_get() {
    let s = server();
    let data = pattern(16 << 20, 9);
    s.put("data", "footer/table.parquet", data.clone(), &[]);
    let m = Mount::start(s, "alice", "data:/footer", &s.reader_args()).expect("mount");
    // What a Parquet reader does first: the last 64 KiB, then the 8-byte trailer.
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(m.join("table.parquet")).expect("open");
    let mut tail = vec![0u8; 64 << 10];
    let tail_at = (data.len() - tail.len()) as u64;
    f.read_exact_at(&mut tail, tail_at).expect("tail");
    assert!(tail[..] == data[data.len() - tail.len()..]);
    let mut trailer = [0u8; 8];
    f.read_exact_at(&mut trailer, data.len() as u64 - 8).expect("trailer");
    assert_eq!(&trailer[..], &data[data.len() - 8..]);
    drop(f);
    let gets = s.gets_of("data", "footer/table.parquet");
    assert_eq!(gets.len(), 1, "one GET for the footer: {gets:?}");
    let range = gets[0].as_deref().expect("a ranged GET, not a download");
    let (from, to) = parse_range(range);
    assert!(to - from < 256 << 10, "{range}: one 256 KiB block at most");
    assert_eq!(to, data.len() as u64 - 1, "{range}");
    m.unmount();
}

/// First and last byte of a `bytes=a-b` Range header.
fn parse_range(range: &str) -> (u64, u64) {
    range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("unexpected Range {range}"))
}

/// The bytes a list of `bytes=a-b` ranges covers.
fn range_bytes(ranges: &[Option<String>]) -> u64 {
    ranges
        .iter()
        .map(|r| {
            let (from, to) = parse_range(r.as_deref().expect("ranged GETs only"));
            to + 1 - from
        })
        .sum()
}

#[test]
fn a_column_chunk_read_fetches_little_beyond_it() {
    let s = server();
    let data = pattern(24 << 20, 10);
    s.put("data", "chunk/table.parquet", data.clone(), &[]);
    let m = Mount::start(s, "alice", "data:/chunk", &s.reader_args()).expect("mount");
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(m.join("table.parquet")).expect("open");
    // One 2 MiB column chunk in the middle of the file, read with one pread.
    let at = (8 << 20) + (100 << 10);
    let mut chunk = vec![0u8; 2 << 20];
    f.read_exact_at(&mut chunk, at as u64).expect("chunk");
    assert!(chunk[..] == data[at..at + chunk.len()]);
    drop(f);
    // Let any prefetch still under way reach the server's log.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let gets = s.gets_of("data", "chunk/table.parquet");
    let fetched = range_bytes(&gets);
    // The chunk (2 MiB), what the kernel reads ahead on its own (up to the size of the
    // request, 2 MiB) and s3role's window (half of what the run has read) at most: about
    // 6 MiB. Fetching ahead to the next 8 MiB boundary, as a stream does, would be 8.
    assert!(fetched <= 13 << 19, "{fetched} bytes in {} GETs: {gets:?}", gets.len());
    m.unmount();
}

#[test]
fn stat_shows_stored_posix_attributes_and_defaults() {
    let s = server();
    s.put(
        "data",
        "t2/meta.sh",
        b"#!/bin/sh\n".to_vec(),
        &[
            ("mode", "33261"),
            ("uid", "1234"),
            ("gid", "5678"),
            ("mtime", "1700000000"),
        ],
    );
    s.put(
        "data",
        "t2/octal.txt",
        b"x".to_vec(),
        &[("mode", "0100600"), ("mtime", "1600000000.5")],
    );
    s.put("data", "t2/plain.txt", b"plain".to_vec(), &[]);
    s.put(
        "data",
        "t2/dir/",
        Vec::new(),
        &[("mode", "16872"), ("uid", "42"), ("gid", "43"), ("mtime", "1500000000")],
    );
    s.put("data", "t2/dir/f", b"f".to_vec(), &[]);
    s.put("data", "t2/implied/f", b"f".to_vec(), &[]);
    s.put("data", "t2/link", b"plain.txt".to_vec(), &[("mode", "41471")]);
    let mut args = s.reader_args();
    args.extend(
        [
            "--uid",
            "4321",
            "--gid",
            "8765",
            "--file-mode",
            "0640",
            "--dir-mode",
            "0710",
        ]
        .map(String::from),
    );
    let m = Mount::start(s, "alice", "data:/t2", &args).expect("mount");

    let meta = std::fs::metadata(m.join("meta.sh")).expect("stat meta.sh");
    assert_eq!(
        (meta.mode(), meta.uid(), meta.gid(), meta.mtime()),
        (0o100755, 1234, 5678, 1_700_000_000),
        "{}",
        m.log()
    );
    let octal = std::fs::metadata(m.join("octal.txt")).expect("stat octal");
    assert_eq!(
        (octal.mode(), octal.uid(), octal.mtime(), octal.mtime_nsec()),
        (0o100600, 4321, 1_600_000_000, 500_000_000)
    );
    let plain = std::fs::metadata(m.join("plain.txt")).expect("stat plain");
    assert_eq!(
        (plain.mode(), plain.uid(), plain.gid(), plain.len()),
        (0o100640, 4321, 8765, 5)
    );
    let dir = std::fs::metadata(m.join("dir")).expect("stat dir");
    assert_eq!(
        (dir.mode(), dir.uid(), dir.gid(), dir.mtime()),
        (0o40750, 42, 43, 1_500_000_000)
    );
    let implied = std::fs::metadata(m.join("implied")).expect("stat implied");
    assert_eq!((implied.mode(), implied.uid(), implied.gid()), (0o40710, 4321, 8765));
    let link = std::fs::symlink_metadata(m.join("link")).expect("lstat link");
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(m.join("link")).expect("readlink").to_str(),
        Some("plain.txt")
    );
    assert_eq!(std::fs::read(m.join("link")).expect("read through link"), b"plain");
    m.unmount();
}

#[test]
fn denied_keys_give_eacces_and_writes_erofs() {
    let s = server();
    s.put("data", "secret/hidden.txt", b"no".to_vec(), &[]);
    s.put("data", "t3/open.txt", b"yes".to_vec(), &[]);
    let mut args = s.reader_args();
    args.push("--read-only".into());
    let m = Mount::start(s, "alice", "data", &args).expect("mount");
    let err = std::fs::read(m.join("secret/hidden.txt")).expect_err("the role may not read secret/");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}\n{}", m.log());
    assert_eq!(std::fs::read(m.join("t3/open.txt")).expect("read open"), b"yes");
    let err = std::fs::write(m.join("t3/new.txt"), b"x").expect_err("read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::write(m.join("t3/open.txt"), b"x").expect_err("read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::create_dir(m.join("t3/newdir")).expect_err("read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(m.join("t3/open.txt")).expect_err("read-only mount");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    m.unmount();
}

#[test]
fn a_random_4_kib_read_costs_one_get_of_at_most_64_kib() {
    let s = server();
    let data = pattern(8 << 20, 13);
    s.put("data", "random/big.bin", data.clone(), &[]);
    let m = Mount::start(s, "alice", "data:/random", &s.reader_args()).expect("mount");
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(m.join("big.bin")).expect("open");
    let at = 5_000_000u64;
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, at).expect("pread");
    assert!(buf[..] == data[at as usize..at as usize + 4096]);
    drop(f);
    let gets = s.gets_of("data", "random/big.bin");
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(range_bytes(&gets) <= 64 << 10, "{gets:?}");
    m.unmount();
}

/// Polls the mount's status until `name` satisfies `ok`, for up to 60 s.
fn wait_for_status(m: &Mount, name: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let mut last = 0;
    for _ in 0..600 {
        last = m.status(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        if ok(last) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{name} stayed at {last}\n{}", m.log());
}

#[test]
fn a_file_read_at_random_all_over_is_fetched_whole_once_then_read_locally() {
    let s = server();
    let size = 24usize << 20;
    let data = pattern(size, 29);
    s.put("data", "scattered/db.bin", data.clone(), &[]);
    let staging = tempfile::tempdir().expect("staging dir");
    let mut args = s.reader_args();
    args.push("--staging-dir".into());
    args.push(staging.path().display().to_string());
    let m = Mount::start(s, "alice", "data:/scattered", &args).expect("mount");
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(m.join("db.bin")).expect("open");
    // Distinct 4 KiB pieces all over the file, so none is in the kernel's page cache yet.
    let mut pieces = (0..(size / 4096) as u64).map(|i| i * 7919 % (size as u64 / 4096) * 4096);
    let mut read_some = |n: usize| {
        for at in pieces.by_ref().take(n) {
            let mut buf = vec![0u8; 4096];
            f.read_exact_at(&mut buf, at).expect("pread");
            assert!(buf[..] == data[at as usize..at as usize + 4096], "bytes at {at}");
        }
    };
    read_some(64);
    wait_for_status(&m, "copy_fetched_bytes", |b| b >= size as u64);
    assert_eq!(m.status("copy_bytes").as_deref(), Some(size.to_string().as_str()));
    let gets = s.gets_of("data", "scattered/db.bin");
    read_some(300);
    assert_eq!(
        s.gets_of("data", "scattered/db.bin").len(),
        gets.len(),
        "no GET once the local copy is whole"
    );
    assert!(wait_for_status(&m, "copy_reads", |r| r >= 300) >= 300);
    let names: Vec<_> = std::fs::read_dir(staging.path()).expect("staging").collect();
    assert!(
        names.is_empty(),
        "the copy has no name another user could open: {names:?}"
    );
    drop(f);
    wait_for_status(&m, "copy_bytes", |b| b == 0);
    m.unmount();
}

#[test]
fn the_mount_has_no_extended_attributes_so_ls_l_asks_for_none() {
    let s = server();
    s.put("data", "noxattr/f.txt", b"x".to_vec(), &[]);
    let m = Mount::start(s, "alice", "data:/noxattr", &s.reader_args()).expect("mount");
    let path = std::ffi::CString::new(m.join("f.txt").display().to_string()).expect("path");
    let mut value = [0u8; 64];
    // ENOTSUP, not ENODATA: the kernel was told once that there are none, and answers
    // `ls -l`'s questions per file itself from then on (an ACL: there is none).
    for (name, want) in [
        (c"security.selinux", libc::ENOTSUP),
        (c"user.anything", libc::ENOTSUP),
        (c"security.selinux", libc::ENOTSUP),
        (c"system.posix_acl_access", libc::ENODATA),
    ] {
        // SAFETY: valid C strings and a writable buffer of its length.
        let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!((n, errno), (-1, Some(want)), "{name:?}");
    }
    assert_eq!(std::fs::read(m.join("f.txt")).expect("read"), b"x");
    m.unmount();
}

fn inodes(dir: &std::path::Path) -> usize {
    common::status(dir)["inodes"].parse().expect("inodes is a number")
}

/// `ls -l DIR`: its file lines.
fn ls_l(dir: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("ls")
        .arg("-l")
        .arg(dir)
        .output()
        .expect("ls -l");
    assert!(out.status.success(), "ls -l: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn without_posix_metadata_ls_l_costs_only_listings() {
    let s = server();
    for i in 0..120 {
        s.put(
            "data",
            &format!("nometa/d/f{i:03}"),
            vec![b'x'; i],
            &[("mode", "33216")],
        );
    }
    let mut args = s.reader_args();
    args.push("--no-posix-metadata".into());
    let m = Mount::start(s, "alice", "data:/nometa", &args).expect("mount");
    let lines = ls_l(&m.join("d"));
    assert_eq!(lines.len(), 120, "{lines:?}");
    // The metadata says 0700; without reading it, the mount shows its default 0644.
    assert!(lines.iter().all(|l| l.starts_with("-rw-r--r--")), "{lines:?}");
    let meta = std::fs::metadata(m.join("d/f077")).expect("stat");
    assert_eq!(meta.len(), 77);
    let requests = s.s3_requests_under("data", "nometa/");
    let heads: Vec<_> = requests.iter().filter(|(method, ..)| method == "HEAD").collect();
    assert!(heads.is_empty(), "no HEAD at all: {heads:?}");
    assert!(
        requests.iter().any(|(method, ..)| method == "GET"),
        "listings: {requests:?}"
    );
    m.unmount();
}

/// `count` objects `DIR/f000`… of `i` bytes each, with POSIX metadata: mode 0700, uid 4321.
fn put_files_with_metadata(s: &Server, dir: &str, count: usize) {
    for i in 0..count {
        s.put(
            "data",
            &format!("{dir}/f{i:03}"),
            vec![b'y'; i],
            &[("mode", "33216"), ("uid", "4321")],
        );
    }
}

/// `ls -l DIR` shows `count` files, each with the mode and owner of its metadata.
fn assert_ls_l_shows_the_metadata(dir: &std::path::Path, count: usize) {
    let lines = ls_l(dir);
    assert_eq!(lines.len(), count, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("-rwx------") && l.contains(" 4321 ")),
        "attributes from the metadata: {lines:?}"
    );
}

#[test]
fn ls_l_gets_attributes_with_the_entries_and_counts_their_lookups_exactly() {
    let s = server();
    const FILES: usize = 150;
    put_files_with_metadata(s, "plus/d", FILES);
    let m = Mount::start(s, "alice", "data:/plus", &s.reader_args()).expect("mount");
    let dir = m.join("d");
    assert_ls_l_shows_the_metadata(&dir, FILES);
    let heads = |key: &str| {
        s.s3_requests_under("data", key)
            .iter()
            .filter(|(method, ..)| method == "HEAD")
            .count()
    };
    assert_eq!(heads("plus/d/f"), FILES, "one HEAD per entry");
    // stat after ls -l: the kernel has the attributes already.
    let before = s.s3_requests_under("data", "plus/").len();
    let meta = std::fs::symlink_metadata(dir.join("f042")).expect("stat");
    assert_eq!((meta.len(), meta.mode() & 0o7777, meta.uid()), (42, 0o700, 4321));
    assert_eq!(
        s.s3_requests_under("data", "plus/").len(),
        before,
        "stat needed no request"
    );
    // Every listing hands the kernel every entry again, each counted as a lookup: the
    // same inodes, not new ones.
    let held = inodes(&m.path);
    assert!((FILES..=FILES + 4).contains(&held), "{held} inodes after one ls -l");
    for _ in 0..20 {
        assert_eq!(ls_l(&dir).len(), FILES);
    }
    assert_eq!(inodes(&m.path), held, "inodes grew with listings");
    // When the kernel lets them go, its forgets match the counts exactly: they all go.
    std::fs::write("/proc/sys/vm/drop_caches", "2").expect("drop the kernel's dentries");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left = inodes(&m.path);
    while left > 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = inodes(&m.path);
    }
    assert!(left <= 4, "{left} inodes left after the kernel forgot the entries");
    // And the names still work.
    assert_eq!(std::fs::metadata(dir.join("f149")).expect("stat").len(), 149);
    m.unmount();
}

#[test]
fn find_costs_no_head_and_a_later_ls_l_shows_the_objects_own_attributes() {
    let s = server();
    const FILES: usize = 60;
    put_files_with_metadata(s, "findx/a", FILES);
    put_files_with_metadata(s, "findx/b", FILES);
    let m = Mount::start(s, "alice", "data:/findx", &s.reader_args()).expect("mount");
    let out = std::process::Command::new("find").arg(&m.path).output().expect("find");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1 + 2 + 2 * FILES);
    // HEADs of the files (a directory may cost one for its marker object).
    let heads = || {
        s.s3_requests_under("data", "findx/")
            .iter()
            .filter(|(method, path, _)| method == "HEAD" && path.contains("/f0"))
            .count()
    };
    assert_eq!(
        heads(),
        0,
        "find needs names and types only: {:?}",
        s.s3_requests_under("data", "findx/")
    );
    // What find left in the kernel's cache came from the listing: ls -l must not show it.
    assert_ls_l_shows_the_metadata(&m.join("a"), FILES);
    assert_eq!(heads(), FILES, "one HEAD per entry listed long");
    m.unmount();
}
