//! What a mount shows the other users of the machine. The external ID and the session policy
//! reach STS but no process's command line, whichever way they are given (option, file,
//! environment, `mount -t` options); the log file is private and never reached through a
//! symbolic link; the status attributes are for the mounting user and root unless
//! --public-status says otherwise.

mod common;

use common::{DaemonMount, Mount, Server, distinctive, processes_with, shared_server};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

/// Options assuming role `imds`, which alice may assume and whose trust policy has no
/// ExternalId condition: any external ID is accepted, so each test can use one no other
/// process on the machine holds, and the server records the one it received.
fn imds_role(s: &Server, session_name: &str) -> Vec<String> {
    vec![
        "--role-arn".into(),
        s.world.role("imds").into(),
        "--role-session-name".into(),
        session_name.into(),
    ]
}

/// A session policy allowing everything, which the server can recognise by its Sid.
fn policy_with_sid(sid: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{sid}","Effect":"Allow","Action":"s3:*","Resource":"*"}}]}}"#
    )
}

/// A file holding `text` and a newline, as `echo` writes it.
fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write the secret file");
    path.display().to_string()
}

/// Fails if `secret` is in the command line of any process on the machine.
fn assert_in_no_command_line(secret: &str) {
    let holders: Vec<String> = processes_with("cmdline", secret)
        .into_iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect();
    assert!(holders.is_empty(), "{secret} is in these command lines: {holders:#?}");
}

/// Checks a mount given external ID `id`: a file is readable through it, STS received `id`
/// for `session`, and no command line holds it.
fn assert_used_and_hidden(s: &Server, file: &Path, session: &str, id: &str) {
    assert_eq!(std::fs::read(file).expect("read through the mount"), b"hello");
    let inputs = s.session_inputs(session);
    assert_eq!(
        inputs.first().and_then(|(external_id, _)| external_id.as_deref()),
        Some(id),
        "the external ID STS received for {session}: {inputs:?}"
    );
    assert_in_no_command_line(id);
}

/// Mounts prefix `prefix` with the daemon, `args` added to the role options, and checks it.
fn mount_with_external_id(prefix: &str, args: &[String], env: &[(&str, &str)], id: &str) {
    let s = server();
    s.put("data", &format!("{prefix}/hello.txt"), b"hello".to_vec(), &[]);
    let session = distinctive(prefix);
    let mut all = imds_role(s, &session);
    all.extend(args.iter().cloned());
    let m = DaemonMount::start(s, "alice", &format!("data:/{prefix}"), &all, env).expect("mount");
    assert_used_and_hidden(s, &m.join("hello.txt"), &session, id);
    let daemons = m.daemon_pids();
    assert_eq!(daemons.len(), 1, "one daemon: {daemons:?}");
    let environment = std::fs::read(format!("/proc/{}/environ", daemons[0])).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&environment).contains(id),
        "the daemon's environment holds the external ID"
    );
}

/// Checks that STS received the session policy with Sid `sid` for `session`, and that no
/// command line holds it.
fn assert_policy_used_and_hidden(s: &Server, session: &str, sid: &str) {
    let inputs = s.session_inputs(session);
    assert!(
        inputs
            .first()
            .and_then(|(_, p)| p.as_deref())
            .is_some_and(|p| p.contains(sid)),
        "STS received the session policy: {inputs:?}"
    );
    assert_in_no_command_line(sid);
}

#[test]
fn an_external_id_option_stays_out_of_the_daemons_command_line() {
    let id = distinctive("option");
    mount_with_external_id("x1", &["--external-id".into(), id.clone()], &[], &id);
    let id = distinctive("inline");
    mount_with_external_id("x2", &[format!("--external-id={id}")], &[], &id);
}

#[test]
fn an_external_id_from_a_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = distinctive("file");
    let path = secret_file(dir.path(), "external-id", &id);
    mount_with_external_id("x3", &["--external-id-file".into(), path], &[], &id);
    let id = distinctive("at-file");
    let path = secret_file(dir.path(), "at-external-id", &id);
    mount_with_external_id("x4", &["--external-id".into(), format!("@{path}")], &[], &id);
}

#[test]
fn an_external_id_from_the_environment_is_used_and_not_passed_on() {
    let id = distinctive("env");
    mount_with_external_id("x5", &[], &[("S3ROLE_EXTERNAL_ID", &id)], &id);
}

#[test]
fn an_unreadable_external_id_file_is_refused_without_showing_the_id() {
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = imds_role(s, "unused");
    args.extend([
        "--external-id-file".into(),
        dir.path().join("missing").display().to_string(),
    ]);
    let err = DaemonMount::start(s, "alice", "data:/x6", &args, &[])
        .err()
        .expect("refused");
    assert!(err.contains("--external-id-file") && err.contains("missing"), "{err}");
    let path = secret_file(dir.path(), "bad", "has space");
    let mut args = imds_role(s, "unused");
    args.extend(["--external-id-file".into(), path]);
    let err = DaemonMount::start(s, "alice", "data:/x6", &args, &[])
        .err()
        .expect("refused");
    assert!(
        err.contains("--external-id-file") && !err.contains("has space"),
        "{err}"
    );
}

#[test]
fn a_foreground_mount_drops_its_secrets_from_its_command_line() {
    let s = server();
    s.put("data", "x7/hello.txt", b"hello".to_vec(), &[]);
    let session = distinctive("fg");
    let id = distinctive("foreground");
    let sid = distinctive("Sid").replace('-', "");
    let mut args = imds_role(s, &session);
    args.extend([
        "--external-id".into(),
        id.clone(),
        "--session-policy".into(),
        policy_with_sid(&sid),
    ]);
    let m = Mount::start(s, "alice", "data:/x7", &args).expect("mount");
    assert_used_and_hidden(s, &m.join("hello.txt"), &session, &id);
    assert_policy_used_and_hidden(s, &session, &sid);
    let pid = m.pid().expect("the mount's process");
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the mount's process is running");
    assert!(
        String::from_utf8_lossy(&cmd).contains(&m.path.display().to_string()),
        "the same process serves the mount"
    );
    m.unmount();
}

/// Installs this build as mount(8)'s helper for a file system type of its own, so that other
/// builds installing /sbin/mount.s3role at the same time do not get in the way. Returns the type.
fn install_private_helper() -> String {
    use std::hash::{Hash, Hasher};
    let binary = env!("CARGO_BIN_EXE_s3role");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    binary.hash(&mut hasher);
    let fstype = format!("s3role{:08x}", hasher.finish() as u32);
    let helper = format!("/sbin/mount.{fstype}");
    let _ = std::fs::remove_file(&helper);
    std::os::unix::fs::symlink(binary, &helper).expect("install the helper (tests run as root)");
    fstype
}

#[test]
fn mount_t_with_an_external_id_file_and_an_inline_policy_shows_neither() {
    let s = server();
    s.put("data", "x8/hello.txt", b"hello".to_vec(), &[]);
    let fstype = install_private_helper();
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let session = distinctive("helper");
    let id = distinctive("helper-id");
    let sid = distinctive("HelperSid").replace('-', "");
    let options = format!(
        "role_arn={},role_session_name={session},external_id=@{},session_policy={},endpoint_url={ep},sts_endpoint={ep},path_style,region={}",
        s.world.role("imds"),
        secret_file(dir.path(), "external-id", &id),
        policy_with_sid(&sid).replace(',', "\\,"),
        s.world.region,
        ep = s.world.endpoint,
    );
    let out = Command::new("mount")
        .args(["-t", &fstype, "data:/x8"])
        .arg(&mnt)
        .args(["-o", &options])
        .envs(s.env_for("alice"))
        .output()
        .expect("run mount(8)");
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_used_and_hidden(s, &mnt.join("hello.txt"), &session, &id);
    assert_policy_used_and_hidden(s, &session, &sid);
    let st = Command::new("umount").arg(&mnt).status().expect("umount");
    assert!(st.success(), "umount failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with("cmdline", &mnt.display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "the daemon did not exit after umount");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Options for a daemon mount of role `reader` logging to `log`.
fn logging_to(s: &Server, log: &Path) -> Vec<String> {
    let mut args = s.reader_args();
    args.extend(["--log-file".into(), log.display().to_string()]);
    args
}

#[test]
fn a_new_log_file_is_private_and_an_existing_public_one_loses_that() {
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("s3role.log");
    let m = DaemonMount::start(s, "alice", "data:/l1", &logging_to(s, &log), &[]).expect("mount");
    assert_eq!(mode_of(&log), 0o600, "a new log file is created 0600");
    drop(m);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("external_id=set") && !text.contains(&s.world.external_id),
        "the log says the external ID is set, never what it is: {text}"
    );

    let shared = dir.path().join("shared.log");
    std::fs::write(&shared, "kept\n").expect("write");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let m = DaemonMount::start(s, "alice", "data:/l1", &logging_to(s, &shared), &[]).expect("mount");
    assert_eq!(mode_of(&shared), 0o640, "others lose access to an existing log of ours");
    drop(m);
    let text = std::fs::read_to_string(&shared).expect("log");
    assert!(
        text.starts_with("kept\n") && text.contains("mounted"),
        "appended: {text}"
    );
}

/// Puts at `at` a symbolic link to a new empty file next to it, which it returns: what
/// another user who can write to the log's directory might do.
fn plant_symlink(at: &Path) -> std::path::PathBuf {
    let target = at.with_file_name("elsewhere");
    std::fs::write(&target, "").expect("target");
    std::os::unix::fs::symlink(&target, at).expect("symlink");
    target
}

/// Fails if anything was written to `target` (through a link to it).
fn assert_untouched(target: &Path) {
    let written = std::fs::read(target).expect("target");
    assert!(
        written.is_empty(),
        "written through the link: {}",
        String::from_utf8_lossy(&written)
    );
}

#[test]
fn a_symlink_at_the_log_path_is_refused() {
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("s3role.log");
    let target = plant_symlink(&link);
    let err = DaemonMount::start(s, "alice", "data:/l2", &logging_to(s, &link), &[])
        .err()
        .expect("a symlinked log path is refused");
    assert!(err.contains("--log-file") && err.contains("symbolic link"), "{err}");
    assert_untouched(&target);
}

#[test]
fn sighup_does_not_follow_a_symlink_put_at_the_log_path() {
    let s = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("s3role.log");
    let m = DaemonMount::start(s, "alice", "data:/l3", &logging_to(s, &log), &[]).expect("mount");
    let rotated = dir.path().join("s3role.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    let target = plant_symlink(&log);
    let daemons = m.daemon_pids();
    assert_eq!(daemons.len(), 1, "one daemon: {daemons:?}");
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(daemons[0] as libc::pid_t, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&rotated)
        .unwrap_or_default()
        .contains("cannot reopen the log file")
    {
        assert!(Instant::now() < deadline, "no warning in the open log after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::symlink_metadata(&log).expect("link").file_type().is_symlink());
    drop(m);
    assert_untouched(&target);
    assert!(std::fs::read_to_string(&rotated).expect("log").contains("unmounted"));
}

/// Runs `argv` as user nobody; its success, stdout and stderr.
fn as_nobody(argv: &[&str]) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .output()
        .expect("setpriv (util-linux) runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// What user nobody gets from opening and reading `dir/.s3role-status`: success, or the
/// errno. Asked by a forked child that makes only system calls, so no other program is
/// needed.
fn status_file_as_nobody(dir: &Path) -> Result<(), i32> {
    let path = std::ffi::CString::new(dir.join(".s3role-status").display().to_string()).expect("path");
    let mut value = [0u8; 4096];
    // SAFETY: the child makes only system calls on memory prepared before the fork, then
    // _exit()s; the parent waits for it.
    unsafe {
        let child = libc::fork();
        assert!(child >= 0, "fork");
        if child == 0 {
            let nobody: libc::c_long = 65534;
            let dropped = libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, nobody, nobody, nobody) == 0
                && libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) == 0;
            if !dropped {
                libc::_exit(255);
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                libc::_exit(*libc::__errno_location() & 0x7f);
            }
            let got = libc::read(fd, value.as_mut_ptr().cast(), value.len());
            libc::_exit(if got > 0 { 0 } else { 0x7e });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(child, &mut status, 0), child);
        assert!(libc::WIFEXITED(status), "the probe was killed");
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 255, "the probe could not become nobody");
        if code == 0 { Ok(()) } else { Err(code) }
    }
}

#[test]
fn status_is_for_the_mounting_user_and_root_unless_public() {
    let s = server();
    let mut args = s.reader_args();
    args.push("--allow-other".into());
    let m = Mount::start(s, "alice", "data:/st1", &args).expect("mount");
    let status = common::s3role()
        .arg("status")
        .arg(&m.path)
        .output()
        .expect("s3role status");
    assert!(
        status.status.success(),
        "root reads the status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("role_chain"));
    let file = m.path.join(".s3role-status");
    let meta = std::fs::metadata(&file).expect("the status file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o400, "for its owner only");
    let listed: Vec<_> = std::fs::read_dir(&m.path)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        !listed.iter().any(|n| n == ".s3role-status"),
        "no listing shows it: {listed:?}"
    );
    assert_eq!(
        status_file_as_nobody(&m.path),
        Err(libc::EACCES),
        "nobody may not read the status"
    );
    let binary = env!("CARGO_BIN_EXE_s3role");
    let (ok, _, err) = as_nobody(&[binary, "status", &m.path.display().to_string()]);
    assert!(!ok && err.contains("--public-status"), "{err}");
    m.unmount();

    args.push("--public-status".into());
    let m = Mount::start(s, "alice", "data:/st1", &args).expect("mount");
    assert_eq!(
        status_file_as_nobody(&m.path),
        Ok(()),
        "with --public-status nobody may"
    );
    let (ok, out, err) = as_nobody(&[binary, "status", &m.path.display().to_string()]);
    assert!(ok && out.contains("role_chain"), "{err}");
    m.unmount();
}
