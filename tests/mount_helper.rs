//! mount(8) integration: with the binary installed as /sbin/mount.s3role, `mount -t s3role`
//! and fstab lines mount through a role and return once the mount works; `umount` ends the
//! daemon; a refusal fails mount(8) with the AWS error and leaves nothing behind; systemd's
//! fstab generator makes units of an `x-systemd.automount` line whose mount command works.

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

/// An fstab line, in a new directory: `data:/PREFIX` (where `file` holds `body`) on the
/// directory's `mnt`, with `systemd_options` then the role's options, written to its `fstab`.
struct FstabLine {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    fstab: PathBuf,
    options: String,
}

fn fstab_line(s: &Server, prefix: &str, file: &str, body: &[u8], systemd_options: &str) -> FstabLine {
    s.put("data", &format!("{prefix}/{file}"), body.to_vec(), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let fstab = dir.path().join("fstab");
    let options = format!("{systemd_options},{}", options(s, &s.world.external_id));
    let line = format!("data:/{prefix} {} s3role {options} 0 0\n", mnt.display());
    std::fs::write(&fstab, line).expect("fstab");
    FstabLine {
        dir,
        mnt,
        fstab,
        options,
    }
}

#[test]
fn an_fstab_line_mounts_the_same_way() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    let FstabLine {
        dir: _dir, mnt, fstab, ..
    } = fstab_line(
        s,
        "h2",
        "from-fstab.txt",
        b"fstab",
        "_netdev,nofail,noauto,x-systemd.automount",
    );
    let mut mount = Command::new("mount");
    mount.arg("-T").arg(&fstab).arg(&mnt);
    mount_read_unmount(s, mount, &mnt, "from-fstab.txt", b"fstab");
}

/// Runs `mount`, checks that `mnt/file` holds `body` once it returns, and unmounts.
fn mount_read_unmount(s: &Server, mut mount: Command, mnt: &Path, file: &str, body: &[u8]) {
    let out = run(s, &mut mount);
    assert!(
        out.status.success(),
        "{mount:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(mnt.join(file)).expect("read"), body);
    umount_and_wait(mnt);
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

/// systemd's fstab generator: what turns fstab lines into .mount and .automount units.
const FSTAB_GENERATOR: &str = "/usr/lib/systemd/system-generators/systemd-fstab-generator";

/// The one file in `dir` whose name ends with `suffix`, and its text.
fn the_unit(dir: &Path, suffix: &str) -> (String, String) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("generator output")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    assert_eq!(names.len(), 1, "one {suffix} unit: {names:?}");
    let text = std::fs::read_to_string(dir.join(&names[0])).expect("unit");
    (names[0].clone(), text)
}

/// The value of `key=` in a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in\n{unit}"))
        .to_owned()
}

#[test]
fn an_x_systemd_automount_line_becomes_units_whose_mount_works() {
    if !Path::new(FSTAB_GENERATOR).exists() {
        eprintln!("skipped: no {FSTAB_GENERATOR} here");
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = server();
    let FstabLine {
        dir,
        mnt,
        fstab,
        options,
    } = fstab_line(
        s,
        "h3",
        "auto.txt",
        b"automounted",
        "_netdev,nofail,noauto,x-systemd.automount,x-systemd.idle-timeout=600",
    );
    let units = dir.path().join("units");
    for d in ["units", "early", "late"] {
        std::fs::create_dir(dir.path().join(d)).expect("mkdir");
    }
    let out = Command::new(FSTAB_GENERATOR)
        .arg(&units)
        .arg(dir.path().join("early"))
        .arg(dir.path().join("late"))
        .env("SYSTEMD_FSTAB", &fstab)
        .output()
        .expect("run the fstab generator");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Mounted on first access, once the network is up.
    let (automount_name, automount) = the_unit(&units, ".automount");
    assert_eq!(unit_value(&automount, "Where"), mnt.display().to_string());
    assert!(
        units.join("remote-fs.target.wants").join(&automount_name).exists(),
        "_netdev: wanted by remote-fs.target"
    );
    let (_, mount) = the_unit(&units, ".mount");
    assert_eq!(unit_value(&mount, "Where"), mnt.display().to_string());
    assert_eq!(unit_value(&mount, "Type"), "s3role");

    // What systemd runs to start the .mount unit: mount(8) with the unit's source, mount
    // point, type and options, less nofail, noauto and auto, which are systemd's own.
    let passed: Vec<&str> = options
        .split(',')
        .filter(|o| !["nofail", "noauto", "auto"].contains(o))
        .collect();
    let given = unit_value(&mount, "Options");
    assert_eq!(given, options);
    let mut command = Command::new("mount");
    command
        .arg(unit_value(&mount, "What"))
        .arg(unit_value(&mount, "Where"))
        .args(["-t", &unit_value(&mount, "Type"), "-o", &passed.join(",")]);
    mount_read_unmount(s, command, &mnt, "auto.txt", b"automounted");
}
