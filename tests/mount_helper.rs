//! mount(8) integration: with the binary installed as /sbin/mount.s3role, `mount -t s3role`
//! and fstab lines mount through a role and return once the mount works; `umount` ends the
//! daemon; a refusal fails mount(8) with the AWS error and leaves nothing behind.

mod common;

use common::{Server, is_mounted, shared_server};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

const HELPER: &str = "/sbin/mount.s3role";

/// Installs the binary as the mount helper (a symlink), unless a real one is installed.
fn install_helper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_BIN_EXE_s3role"));
        match std::fs::symlink_metadata(HELPER) {
            Ok(m) if !m.file_type().is_symlink() => {} // a packaged helper: use it as it is
            _ => {
                let _ = std::fs::remove_file(HELPER);
                std::os::unix::fs::symlink(&target, HELPER).expect("install /sbin/mount.s3role (tests run as root)");
            }
        }
    });
}

fn server() -> &'static Server {
    let s = shared_server(&SERVER, &[]);
    install_helper();
    s
}

fn options(s: &Server, external_id: &str) -> String {
    format!(
        "role_arn={},external_id={external_id},endpoint_url={ep},sts_endpoint={ep},path_style,region={},allow_other",
        s.world.role("reader"),
        s.world.region,
        ep = s.world.endpoint
    )
}

fn run(s: &Server, cmd: &mut Command) -> Output {
    cmd.envs(s.env_for("alice")).output().expect("run mount(8)")
}

fn daemons_for(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle) && !c.starts_with("umount") && !c.starts_with("mount "))
        .collect()
}

fn umount_and_wait(dir: &Path) {
    let st = Command::new("umount").arg(dir).status().expect("umount");
    assert!(st.success(), "umount failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemons_for(dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit after umount: {:?}",
            daemons_for(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mount_t_s3role_returns_once_the_mount_works() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    s.put("data", "h1/ready.txt", b"readable at once".to_vec(), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        s,
        Command::new("mount")
            .args(["-t", "s3role", "data:/h1"])
            .arg(dir.path())
            .args(["-o", &options(s, &s.world.external_id)]),
    );
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dir.path().join("ready.txt")).expect("readable the moment mount returns"),
        b"readable at once"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&dir.path().display().to_string()) && l.contains("fuse.s3role")),
        "{mounts}"
    );
    umount_and_wait(dir.path());
}

#[test]
fn an_fstab_line_mounts_the_same_way() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    s.put("data", "h2/from-fstab.txt", b"fstab".to_vec(), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let fstab = dir.path().join("fstab");
    let line = format!(
        "data:/h2 {} s3role _netdev,nofail,noauto,x-systemd.automount,{} 0 0\n",
        mnt.display(),
        options(s, &s.world.external_id)
    );
    std::fs::write(&fstab, line).expect("fstab");
    let out = run(s, Command::new("mount").arg("-T").arg(&fstab).arg(&mnt));
    assert!(
        out.status.success(),
        "mount -T failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(mnt.join("from-fstab.txt")).expect("read"), b"fstab");
    umount_and_wait(&mnt);
}

#[test]
fn a_wrong_external_id_fails_mount_and_leaves_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        s,
        Command::new("mount")
            .args(["-t", "s3role", "data:/h1"])
            .arg(dir.path())
            .args(["-o", &options(s, "wrong-id")]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("AccessDenied") && stderr.contains(s.world.role("reader")),
        "{stderr}"
    );
    assert!(!is_mounted(dir.path()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(daemons_for(dir.path()).is_empty(), "{:?}", daemons_for(dir.path()));
}

#[test]
fn fake_mounts_check_and_mount_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        s,
        Command::new("mount")
            .args(["-f", "-t", "s3role", "data:/h1"])
            .arg(dir.path())
            .args(["-o", &options(s, &s.world.external_id)]),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(dir.path()));
    let out = run(
        s,
        Command::new("mount")
            .args(["-f", "-t", "s3role", "data:/h1"])
            .arg(dir.path())
            .args(["-o", "role_arn=not-an-arn"]),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role-arn"));
}
