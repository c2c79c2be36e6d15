//! The write path on real mounts, through role `writer` (and `reader` for denials): every
//! operation lands in S3 in s3fs's format and is there after a remount.

mod common;

use common::{Mount, Server, close, pattern, shared_server};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

fn object(s: &Server, key: &str) -> Option<(Vec<u8>, std::collections::HashMap<String, String>)> {
    s.object("data", key)
}

fn keys_under(s: &Server, prefix: &str) -> Vec<String> {
    s.keys_under("data", prefix)
}

#[test]
fn every_operation_lands_in_s3_and_survives_a_remount() {
    let s = server();
    s.put("data", "w1/existing.txt", b"0123456789".to_vec(), &[]);
    let m = Mount::start(s, "alice", "data:/w1", &s.writer_args()).expect("mount");
    let p = |rel: &str| m.join(rel);

    // create + write + close, read-after-write
    let mut f = std::fs::File::create(p("new.txt")).expect("create");
    f.write_all(b"hello world").expect("write");
    assert_eq!(std::fs::read(p("new.txt")).expect("read back"), b"hello world");
    close(f).expect("close uploads");
    let (body, meta) = object(s, "w1/new.txt").expect("uploaded");
    assert_eq!(body, b"hello world");
    assert_eq!(meta.get("uid").map(String::as_str), Some("0"));
    let mode: u32 = meta.get("mode").and_then(|m| m.parse().ok()).expect("mode");
    assert_eq!(mode & 0o170000, 0o100000, "regular file");

    // overwrite in place and append
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(p("existing.txt"))
        .expect("open");
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(2)).expect("seek");
    f.write_all(b"ab").expect("write");
    close(f).expect("close");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p("existing.txt"))
        .expect("open append");
    f.write_all(b"++").expect("append");
    close(f).expect("close");
    assert_eq!(object(s, "w1/existing.txt").expect("object").0, b"01ab456789++");

    // truncate an open file, then write past the end
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p("new.txt"))
        .expect("open");
    f.set_len(5).expect("truncate while open");
    f.seek(SeekFrom::Start(7)).expect("seek");
    f.write_all(b"!").expect("write");
    close(f).expect("close");
    assert_eq!(object(s, "w1/new.txt").expect("object").0, b"hello\0\0!");

    // directories, nested content, symlinks
    std::fs::create_dir_all(p("dir/sub")).expect("mkdir -p");
    std::fs::write(p("dir/sub/deep.txt"), b"deep").expect("write deep");
    std::fs::write(p("dir/top.txt"), b"top").expect("write top");
    std::os::unix::fs::symlink("../new.txt", p("dir/link")).expect("symlink");
    assert_eq!(std::fs::read(p("dir/link")).expect("through link"), b"hello\0\0!");
    assert!(
        keys_under(s, "w1/dir/").contains(&"w1/dir/sub/".to_string()),
        "mkdir writes a marker"
    );
    let err = std::fs::remove_dir(p("dir")).expect_err("not empty");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));

    // chmod, chown, utimens
    std::fs::set_permissions(p("existing.txt"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(p("existing.txt"), Some(1234), Some(5678)).expect("chown");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(p("existing.txt"))
        .and_then(|f| f.set_modified(when))
        .expect("utimens");
    std::fs::set_permissions(p("dir/sub"), std::fs::Permissions::from_mode(0o700)).expect("chmod dir");

    // rename a file onto another, and a directory with nested content
    std::fs::write(p("victim.txt"), b"replaced").expect("write victim");
    std::fs::rename(p("new.txt"), p("victim.txt")).expect("rename onto");
    std::fs::rename(p("dir"), p("moved")).expect("rename dir");
    std::fs::write(p("gone.txt"), b"x").expect("write gone");
    std::fs::remove_file(p("gone.txt")).expect("unlink");
    std::fs::create_dir(p("emptydir")).expect("mkdir");
    std::fs::remove_dir(p("emptydir")).expect("rmdir");
    m.unmount();

    // A fresh mount sees all of it.
    let m = Mount::start(s, "alice", "data:/w1", &s.writer_args()).expect("remount");
    let p = |rel: &str| m.join(rel);
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(&m.path)
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["existing.txt", "moved", "victim.txt"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let st = std::fs::metadata(p("existing.txt")).expect("stat");
    assert_eq!(
        (st.mode() & 0o7777, st.uid(), st.gid(), st.mtime()),
        (0o600, 1234, 5678, 1_600_000_000)
    );
    assert_eq!(std::fs::read(p("existing.txt")).expect("read"), b"01ab456789++");
    assert_eq!(std::fs::read(p("victim.txt")).expect("read"), b"hello\0\0!");
    assert_eq!(std::fs::read(p("moved/sub/deep.txt")).expect("read"), b"deep");
    assert_eq!(std::fs::read(p("moved/top.txt")).expect("read"), b"top");
    assert_eq!(
        std::fs::read_link(p("moved/link")).expect("readlink").to_str(),
        Some("../new.txt")
    );
    assert_eq!(
        std::fs::metadata(p("moved/sub")).expect("stat dir").mode() & 0o7777,
        0o700
    );
    assert!(keys_under(s, "w1/dir").is_empty(), "nothing left at the old name");
    m.unmount();
}

#[test]
fn append_to_a_100_mib_object() {
    let s = server();
    let big = pattern(100 << 20, 7);
    s.put(
        "data",
        "w2/big.bin",
        big.clone(),
        &[("mode", "33188"), ("color", "blue")],
    );
    let m = Mount::start(s, "alice", "data:/w2", &s.writer_args()).expect("mount");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("big.bin"))
        .expect("open append");
    f.write_all(b"the end").expect("append");
    close(f).unwrap_or_else(|e| panic!("close: {e}\n{}", m.log()));
    m.unmount();
    let (body, meta) = object(s, "w2/big.bin").expect("object");
    assert_eq!(body.len(), big.len() + 7);
    assert!(body[..big.len()] == big[..], "the first 100 MiB are unchanged");
    assert_eq!(&body[big.len()..], b"the end");
    assert_eq!(
        meta.get("color").map(String::as_str),
        Some("blue"),
        "other metadata kept"
    );
}

#[test]
fn a_read_only_role_on_a_read_write_mount_gets_eacces() {
    let s = server();
    s.put("data", "w3/existing.txt", b"original".to_vec(), &[]);
    let m = Mount::start(s, "alice", "data:/w3", &s.reader_args()).expect("mount");
    let eacces = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{what}: {e}");
    };
    // Refused where the program looks: at open, not at a close it may never check.
    eacces(std::fs::File::create(m.join("new.txt")).map(drop), "create");
    eacces(
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.join("existing.txt"))
            .map(drop),
        "open of an existing file for writing",
    );
    eacces(std::fs::remove_file(m.join("existing.txt")), "unlink");
    eacces(
        std::fs::set_permissions(m.join("existing.txt"), std::fs::Permissions::from_mode(0o600)),
        "chmod",
    );
    eacces(std::fs::create_dir(m.join("d")), "mkdir");
    eacces(std::os::unix::fs::symlink("existing.txt", m.join("link")), "symlink");
    let fifo = std::ffi::CString::new(m.join("fifo").display().to_string()).expect("path");
    // SAFETY: fifo is a valid C string.
    let made = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
    eacces(
        if made == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        },
        "mknod",
    );
    m.unmount();
    assert_eq!(keys_under(s, "w3/"), vec!["w3/existing.txt".to_string()]);
    assert_eq!(object(s, "w3/existing.txt").expect("object").0, b"original");
}

/// Runs `argv` as uid/gid 2000 and returns whether it succeeded, with its stderr.
fn as_other_user(argv: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=2000", "--regid=2000", "--clear-groups", "--"])
        .args(argv)
        .output()
        .expect("setpriv (util-linux) runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn with_allow_other_the_kernel_enforces_modes_between_users() {
    let s = server();
    s.put(
        "data",
        "w4/private.txt",
        b"mine".to_vec(),
        &[("mode", "33152"), ("uid", "1000"), ("gid", "1000")],
    );
    s.put(
        "data",
        "w4/public.txt",
        b"everyone".to_vec(),
        &[("mode", "33188"), ("uid", "1000"), ("gid", "1000")],
    );
    let mut args = s.writer_args();
    args.push("--allow-other".into());
    let m = Mount::start(s, "alice", "data:/w4", &args).expect("mount");
    let private = m.join("private.txt").display().to_string();
    let public = m.join("public.txt").display().to_string();
    let (ok, err) = as_other_user(&["cat", &public]);
    assert!(ok, "a 0644 file is readable by others: {err}");
    let (ok, err) = as_other_user(&["cat", &private]);
    assert!(
        !ok && err.contains("Permission denied"),
        "a 0600 file of uid 1000 is not readable by uid 2000: {err}"
    );
    let (ok, _) = as_other_user(&["sh", "-c", &format!("echo x >> {public}")]);
    assert!(!ok, "nor writable");
    m.unmount();
}

#[test]
fn statfs_answers_and_hard_links_are_refused() {
    let s = server();
    let m = Mount::start(s, "alice", "data:/w5", &s.writer_args()).expect("mount");
    std::fs::write(m.join("a"), b"a").expect("write");
    let err = std::fs::hard_link(m.join("a"), m.join("b")).expect_err("no hard links on S3");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let path = std::ffi::CString::new(m.path.display().to_string()).expect("path");
    // SAFETY: path is a valid C string and st a writable statvfs.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    assert!(st.f_bavail > 1 << 30 && st.f_ffree > 1 << 30, "large free counts");
    assert_eq!(st.f_namemax, 255);
    m.unmount();
}
