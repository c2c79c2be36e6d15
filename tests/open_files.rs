//! What programs written for local disks do with open files, on real mounts: logrotate's
//! rename of a file held open, `mv` of a directory under an open file, `cp -p` of a large
//! file, and a shell that never checks close(2). Nothing written may be lost or land in the
//! wrong place, and a refusal must reach the program where it looks.

mod common;

use common::{Mount, Server, close, pattern, shared_server};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::process::Command;
use std::sync::OnceLock;

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

/// logrotate: a program holds `app.log` open for appending, the file is renamed, the program
/// writes once more and closes. The last line lands in the renamed file.
fn logrotate_keeps_the_tail(size: usize, dir: &str) {
    let s = server();
    let old = pattern(size, 7);
    s.put("data", &format!("{dir}/app.log"), old.clone(), &[]);
    let m = Mount::start(s, "alice", &format!("data:/{dir}"), &s.writer_args()).expect("mount");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(m.join("app.log"))
        .expect("open for appending");
    let status = Command::new("mv")
        .arg(m.join("app.log"))
        .arg(m.join("app.log.1"))
        .status()
        .expect("mv");
    assert!(status.success(), "mv");
    log.write_all(b"TAIL").expect("write after the rename");
    close(log).expect("close after the rename");
    let mut want = old;
    want.extend_from_slice(b"TAIL");
    let mounted = std::fs::read(m.join("app.log.1")).expect("read the rotated file");
    assert!(mounted == want, "the mount shows the old log and the tail");
    assert!(!m.join("app.log").exists(), "nothing at the old name");
    m.unmount();
    let (body, _) = object(s, &format!("{dir}/app.log.1")).expect("rotated object");
    assert_eq!(body.len(), want.len());
    assert!(body == want, "S3 holds the old log and the tail");
    assert_eq!(keys_under(s, &format!("{dir}/")), vec![format!("{dir}/app.log.1")]);
}

#[test]
fn logrotate_of_a_small_log_keeps_the_last_write() {
    logrotate_keeps_the_tail(100, "lr-small");
}

#[test]
fn logrotate_of_a_6_mib_log_keeps_the_last_write() {
    logrotate_keeps_the_tail(6 << 20, "lr-large");
}

#[test]
fn a_directory_renamed_under_an_open_file_takes_the_file_along() {
    let s = server();
    let m = Mount::start(s, "alice", "data:/dirmv", &s.writer_args()).expect("mount");
    std::fs::create_dir(m.join("dd")).expect("mkdir");
    let mut f = std::fs::File::create(m.join("dd/f")).expect("create");
    f.write_all(b"first").expect("write");
    let status = Command::new("mv")
        .arg(m.join("dd"))
        .arg(m.join("ee"))
        .status()
        .expect("mv");
    assert!(status.success(), "mv dd ee");
    f.write_all(b"second").expect("write after the rename");
    close(f).expect("close");
    assert_eq!(std::fs::read(m.join("ee/f")).expect("read"), b"firstsecond");
    assert!(!m.join("dd").exists(), "dd is gone");
    m.unmount();
    assert_eq!(object(s, "dirmv/ee/f").expect("ee/f").0, b"firstsecond");
    let mut keys = keys_under(s, "dirmv/");
    keys.sort();
    assert_eq!(keys, vec!["dirmv/ee/".to_string(), "dirmv/ee/f".to_string()]);
}

#[test]
fn cp_p_keeps_the_time_of_a_large_file_after_a_remount() {
    let s = server();
    let local = tempfile::tempdir().expect("tempdir");
    let src = local.path().join("big.bin");
    std::fs::write(&src, pattern(16 << 20, 3)).expect("write the source");
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    let f = std::fs::File::options().write(true).open(&src).expect("open");
    f.set_modified(then).expect("set the source's mtime");
    drop(f);
    let m = Mount::start(s, "alice", "data:/cpp", &s.writer_args()).expect("mount");
    let status = Command::new("cp")
        .arg("-p")
        .arg(&src)
        .arg(m.join("big.bin"))
        .status()
        .expect("cp");
    assert!(status.success(), "cp -p");
    assert_eq!(
        std::fs::metadata(m.join("big.bin")).expect("stat").mtime(),
        1_600_000_000
    );
    m.unmount();
    let (body, meta) = object(s, "cpp/big.bin").expect("object");
    assert_eq!(body.len(), 16 << 20);
    assert_eq!(meta.get("mtime").map(String::as_str), Some("1600000000"), "{meta:?}");
    let m = Mount::start(s, "alice", "data:/cpp", &s.writer_args()).expect("remount");
    let st = std::fs::metadata(m.join("big.bin")).expect("stat after the remount");
    assert_eq!(st.mtime(), 1_600_000_000, "the time cp -p set");
    assert_eq!(st.mode() & 0o7777, 0o644);
    m.unmount();
}

#[test]
fn a_shell_redirect_on_a_read_only_role_fails_where_the_shell_sees_it() {
    let s = server();
    s.put("data", "ro/existing.txt", b"original".to_vec(), &[]);
    let m = Mount::start(s, "alice", "data:/ro", &s.reader_args()).expect("mount");
    let f = m.join("f").display().to_string();
    let out = Command::new("sh")
        .args(["-c", &format!("echo x > {f}")])
        .output()
        .expect("sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the shell must see the refusal");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    let names: Vec<String> = std::fs::read_dir(&m.path)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["existing.txt".to_string()], "no ghost of f");
    assert!(std::fs::metadata(m.join("f")).is_err(), "no ghost of f");
    // O_TRUNC on an existing file is refused at open too, and the object keeps its bytes.
    let err = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(0)
        .open(m.join("existing.txt"))
        .expect_err("O_TRUNC is a change");
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    assert_eq!(std::fs::read(m.join("existing.txt")).expect("read"), b"original");
    m.unmount();
    assert_eq!(keys_under(s, "ro/"), vec!["ro/existing.txt".to_string()]);
}

#[test]
fn a_full_staging_disk_gives_enospc_and_files_written_front_to_back_need_none() {
    use std::os::unix::fs::FileExt;
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs for the staging directory needs root");
        return;
    }
    let s = server();
    let staging = tempfile::tempdir().expect("tempdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(staging.path())
        .status()
        .expect("mount")
        .success();
    assert!(ok, "mount a 1 MiB tmpfs");
    let mut args = s.writer_args();
    args.extend(["--staging-dir".into(), staging.path().display().to_string()]);
    let m = Mount::start(s, "alice", "data:/enospc", &args).expect("mount");
    // Written front to back, a file far larger than the staging disk goes up from memory,
    // even when a program starts another midway: the child's exec closes the descriptor it
    // inherited, and that close must not end the upload (it would go on in a staging file).
    let big = pattern(64 << 20, 9);
    let mut f = std::fs::File::create(m.join("big")).expect("create");
    f.write_all(&big[..32 << 20]).expect("the first half");
    assert!(Command::new("true").status().expect("run true").success());
    assert!(object(s, "enospc/big").is_none(), "a child's close does not upload");
    if let Err(e) = f.write_all(&big[32 << 20..]) {
        panic!("a file written front to back needs no staging: {e}\n{}", m.log());
    }
    drop(f);
    // Written out of order, a file is staged on disk, and the full disk says so.
    let f = std::fs::File::create(m.join("scattered")).expect("create");
    f.write_all_at(b"end", 4 << 20).expect("a write past the end");
    let err = f
        .write_all_at(&big[..4 << 20], 0)
        .expect_err("the staging disk is full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(f);
    std::fs::write(m.join("small"), b"fits").expect("a small file still fits");
    m.unmount();
    let _ = Command::new("umount").arg(staging.path()).status();
    assert_eq!(object(s, "enospc/small").expect("small").0, b"fits");
    assert!(object(s, "enospc/big").expect("big").0 == big, "big, byte for byte");
}

#[test]
fn a_reader_opened_before_a_rewrite_never_reads_a_mix_of_old_and_new() {
    use std::io::Read;
    let s = server();
    let (v1, v2) = (pattern(4 << 20, 11), pattern(4 << 20, 12));
    s.put("data", "mix/f", v1.clone(), &[]);
    let m = Mount::start(s, "alice", "data:/mix", &s.writer_args()).expect("mount");
    let mut reader = std::fs::File::open(m.join("f")).expect("open for reading");
    let mut head = vec![0u8; 65536];
    reader.read_exact(&mut head).expect("read the start");
    assert!(head[..] == v1[..65536]);
    std::fs::write(m.join("f"), &v2).expect("rewrite through another descriptor");
    let mut offset = 65536;
    let mut buf = vec![0u8; 131072];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                assert!(
                    buf[..n] == v1[offset..offset + n],
                    "old bytes at {offset}, never new ones"
                );
                offset += n;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
                break;
            }
        }
    }
    drop(reader);
    assert!(
        std::fs::read(m.join("f")).expect("read again") == v2,
        "a new reader reads the new bytes"
    );
    m.unmount();
}

/// A scratch file (what `tmpfile(3)`-style programs and sort's spill files do): written,
/// unlinked while open so nothing is left behind, then read back through the same
/// descriptor. The kernel's copy is dropped first, so the bytes come from the daemon.
#[test]
fn a_scratch_file_unlinked_while_open_reads_back_whole_and_leaves_nothing() {
    use std::io::{Read, Seek};
    use std::os::fd::AsRawFd;
    let s = server();
    let m = Mount::start(s, "alice", "data:/scratch", &s.writer_args()).expect("mount");
    let data = pattern(20 << 20, 31);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("spill.tmp"))
        .expect("create");
    f.write_all(&data).expect("write");
    std::fs::remove_file(m.join("spill.tmp")).expect("unlink while open");
    assert!(!m.join("spill.tmp").exists(), "gone from the directory");
    // SAFETY: f is an open descriptor; the advice only drops clean cached pages.
    let advised = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(advised, 0);
    f.seek(std::io::SeekFrom::Start(0)).expect("seek");
    let mut back = Vec::new();
    f.read_to_end(&mut back).expect("read back");
    assert!(
        back == data,
        "read back {} bytes, not what was written\n{}",
        back.len(),
        m.log()
    );
    close(f).expect("close");
    let log = m.unmount();
    assert!(keys_under(s, "scratch/").is_empty(), "nothing left in S3\n{log}");
}
