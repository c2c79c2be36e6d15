//! Interoperability with s3fs (Debian's `s3fs`): a file or symlink written through s3role
//! looks the same through an s3fs mount of the same bucket (mode, uid, gid, mtime, bytes),
//! and the other way round.

mod common;

use common::{Mount, Server, is_mounted, shared_server};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

/// An s3fs mount of `data:/PREFIX` as the admin user; unmounted when dropped.
struct S3fs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3fs {
    fn mount(s: &Server, prefix: &str) -> S3fs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s3fs");
        std::fs::create_dir(&path).expect("mkdir");
        let passwd = dir.path().join("passwd");
        let (ak, sk) = s.world.keys("admin");
        std::fs::write(&passwd, format!("{ak}:{sk}\n")).expect("passwd");
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).expect("chmod passwd");
        let status = Command::new("s3fs")
            .arg(format!("data:/{prefix}"))
            .arg(&path)
            .args(["-o", &format!("url={}", s.world.endpoint)])
            .args([
                "-o",
                "use_path_request_style",
                "-o",
                "endpoint=us-east-1",
                "-o",
                "stat_cache_expire=1",
            ])
            .args(["-o", &format!("passwd_file={}", passwd.display())])
            .status()
            .expect("s3fs is installed (apt-get install s3fs)");
        assert!(status.success(), "s3fs mount failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_mounted(&path) {
            assert!(Instant::now() < deadline, "s3fs did not mount");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3fs { path, _dir: dir }
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for S3fs {
    fn drop(&mut self) {
        common::unmount_dir(&self.path);
    }
}

/// utimensat(2) on a path, as `touch -d` does. (s3fs 1.90 stamps the time of the close onto
/// a file whose time was set through a descriptor opened for writing.)
fn set_mtime(path: &Path, t: SystemTime) {
    use std::os::unix::ffi::OsStrExt;
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).expect("epoch").as_secs() as libc::time_t;
    let times = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: c is a valid C string and times points at two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(
        rc,
        0,
        "utimensat {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Writes a file with chosen attributes and a symlink to it.
fn write_tree(dir: &Path, name: &str, body: &[u8], mode: u32, owner: (u32, u32), mtime: SystemTime) {
    let file = dir.join(name);
    std::fs::write(&file, body).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    std::os::unix::fs::chown(&file, Some(owner.0), Some(owner.1)).expect("chown");
    set_mtime(&file, mtime);
    std::os::unix::fs::symlink(name, dir.join(format!("{name}.link"))).expect("symlink");
}

/// Checks what the other side shows.
fn check_tree(dir: &Path, name: &str, body: &[u8], mode: u32, owner: (u32, u32), mtime: SystemTime) {
    let file = dir.join(name);
    let st = std::fs::metadata(&file).unwrap_or_else(|e| panic!("stat {}: {e}", file.display()));
    let secs = mtime.duration_since(SystemTime::UNIX_EPOCH).expect("epoch").as_secs() as i64;
    assert_eq!(
        (st.mode(), st.uid(), st.gid(), st.mtime()),
        (0o100000 | mode, owner.0, owner.1, secs),
        "{}",
        file.display()
    );
    assert_eq!(std::fs::read(&file).expect("read"), body);
    let link = dir.join(format!("{name}.link"));
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink(),
        "{}",
        link.display()
    );
    assert_eq!(std::fs::read_link(&link).expect("readlink"), Path::new(name));
    assert_eq!(std::fs::read(&link).expect("read through link"), body);
}

#[test]
fn s3role_and_s3fs_see_the_same_files_both_ways() {
    let s = server();
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_650_000_000);

    // s3role writes, s3fs reads.
    let m = Mount::start(s, "alice", "data:/interop", &s.writer_args()).expect("s3role mount");
    write_tree(
        &m.path,
        "from-s3role.txt",
        b"written by s3role\n",
        0o640,
        (1234, 5678),
        when,
    );
    std::fs::create_dir(m.join("dir-s3role")).expect("mkdir");
    std::fs::set_permissions(m.join("dir-s3role"), std::fs::Permissions::from_mode(0o750)).expect("chmod dir");
    m.unmount();
    let fs3 = S3fs::mount(s, "interop");
    check_tree(
        &fs3.path,
        "from-s3role.txt",
        b"written by s3role\n",
        0o640,
        (1234, 5678),
        when,
    );
    assert_eq!(
        std::fs::metadata(fs3.join("dir-s3role")).expect("stat dir").mode(),
        0o40750
    );

    // s3fs writes, s3role reads.
    write_tree(
        &fs3.path,
        "from-s3fs.txt",
        b"written by s3fs\n",
        0o604,
        (4321, 8765),
        when,
    );
    std::fs::create_dir(fs3.join("dir-s3fs")).expect("s3fs mkdir");
    std::fs::set_permissions(fs3.join("dir-s3fs"), std::fs::Permissions::from_mode(0o711)).expect("s3fs chmod dir");
    drop(fs3);
    let m = Mount::start(s, "alice", "data:/interop", &s.writer_args()).expect("s3role remount");
    check_tree(
        &m.path,
        "from-s3fs.txt",
        b"written by s3fs\n",
        0o604,
        (4321, 8765),
        when,
    );
    assert_eq!(std::fs::metadata(m.join("dir-s3fs")).expect("stat dir").mode(), 0o40711);
    m.unmount();
}
