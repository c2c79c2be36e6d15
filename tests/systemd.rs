//! systemd's side of a mount run as a `Type=notify` service (`s3role mount --foreground`),
//! seen through a stand-in for systemd's notification socket: READY=1 comes from the process
//! systemd started, and only once the mount answers; STATUS= says when the role session
//! expires, again after each renewal; STOPPING=1 comes when the unmount begins; a mount that fails says why in STATUS=
//! with the sentence it prints, and never READY=1. The daemon `s3role mount` leaves behind
//! is not the process systemd started: it neither notifies nor inherits NOTIFY_SOCKET.
//! Logs reach the journal with their fields when standard error is the journal.

mod common;

use common::{DaemonMount, FaultProxy, Server, is_mounted, s3role};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Unix datagram socket where systemd would listen (NOTIFY_SOCKET), which, as systemd
/// does, learns the process id of each message's sender from the kernel.
struct NotifyListener {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// One notification: the sending process and its `NAME=value` lines.
#[derive(Debug)]
struct Notification {
    pid: libc::pid_t,
    lines: Vec<String>,
}

impl Notification {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn status(&self) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix("STATUS="))
    }
}

impl NotifyListener {
    fn bind() -> NotifyListener {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        let on: libc::c_int = 1;
        // SAFETY: setting an int option on a socket this function owns.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "SO_PASSCRED: {}", std::io::Error::last_os_error());
        NotifyListener {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next notification, waiting for it if `wait`; `None` if none is queued (or none
    /// came within a minute, when waiting: the caller's assertion says what was missing).
    fn next(&self, wait: bool) -> Option<Notification> {
        let mut data = [0u8; 4096];
        // Room for one SCM_CREDENTIALS message.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, if wait { 60_000 } else { 0 }) } <= 0 {
            return None;
        }
        // SAFETY: msg describes buffers owned by this frame.
        let n = unsafe { libc::recvmsg(self.socket.as_raw_fd(), &mut msg, 0) };
        assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
        let mut pid = 0;
        // SAFETY: walking the control messages the kernel wrote into `control`.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points at a control message header inside `control`.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_CREDENTIALS {
                // SAFETY: an SCM_CREDENTIALS message carries one ucred.
                let cred = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::ucred>()) };
                pid = cred.pid;
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        let text = String::from_utf8_lossy(&data[..n as usize]).into_owned();
        Some(Notification {
            pid,
            lines: text.lines().map(str::to_owned).collect(),
        })
    }

    /// Every notification queued now, without waiting.
    fn queued(&self) -> Vec<Notification> {
        std::iter::from_fn(|| self.next(false)).collect()
    }

    /// Waits for the notification holding `line`; every one received, up to and with it.
    fn until(&self, line: &str) -> Vec<Notification> {
        let mut seen = Vec::new();
        loop {
            match self.next(true) {
                Some(n) if n.has(line) => {
                    seen.push(n);
                    return seen;
                }
                Some(n) => seen.push(n),
                None => panic!("no {line} within a minute; received {seen:?}"),
            }
        }
    }
}

/// `s3role mount --foreground SOURCE DIR` against the server, as the packaged unit runs it.
fn service(s: &Server, source: &str, dir: &Path, args: &[String]) -> Command {
    let mut cmd = s3role();
    cmd.arg("mount")
        .arg("--foreground")
        .arg(source)
        .arg(dir)
        .args(s.endpoint_args())
        .args(args)
        .envs(s.env_for("alice"))
        .stdin(Stdio::null());
    cmd
}

/// The service as a `Type=notify` unit starts it, with NOTIFY_SOCKET naming `listener`; its
/// output goes to `log`.
fn start_service(
    s: &Server,
    listener: &NotifyListener,
    source: &str,
    dir: &Path,
    args: &[String],
    log: &Path,
) -> Child {
    let out = std::fs::File::create(log).expect("log");
    service(s, source, dir, args)
        .env("NOTIFY_SOCKET", &listener.path)
        .env("RUST_LOG", "s3role=debug,warn")
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("start s3role")
}

fn wait_exit(child: &mut Child, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "s3role did not exit within 60 s\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ready_comes_from_the_main_process_once_the_mount_answers_and_stopping_at_unmount() {
    let mut s = Server::start(&["--force-session-seconds", "20"]);
    s.put("data", "sd/ready.txt", b"answered".to_vec(), &[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    // The bucket check, the last step before the mount, hangs until released below.
    s.set_faults(serde_json::json!({"s3": {"stall": 1}}));
    let listener = NotifyListener::bind();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mnt, log) = (dir.path().join("mnt"), dir.path().join("s3role.log"));
    std::fs::create_dir(&mnt).expect("mkdir");
    // The external ID on the command line makes s3role exec itself again without it.
    let mut child = start_service(&s, &listener, "data:/sd", &mnt, &s.reader_args(), &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.injected("s3", "stall") == 0 {
        assert!(
            Instant::now() < deadline,
            "the bucket check never reached S3\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let early = listener.queued();
    assert!(
        !early.iter().any(|n| n.has("READY=1")),
        "READY=1 before the mount: {early:?}"
    );
    assert!(!is_mounted(&mnt));

    s.set_faults(serde_json::json!({"s3": {}}));
    let seen = listener.until("READY=1");
    assert_eq!(
        std::fs::read(mnt.join("ready.txt")).expect("the mount answers at READY=1"),
        b"answered"
    );
    let ready = seen.last().expect("READY=1");
    assert_eq!(
        ready.pid,
        child.id() as libc::pid_t,
        "from the process systemd started (NotifyAccess=main)"
    );
    let expiry = |n: &Notification| {
        n.status()
            .and_then(|s| s.split_once("; session expires "))
            .map(|(_, e)| e.to_owned())
    };
    let first = expiry(ready).unwrap_or_else(|| panic!("{ready:?}"));
    assert!(ready.status().is_some_and(|s| s.contains("s3://data/sd/")), "{ready:?}");
    // The 20 s session renews within seconds; systemd hears of it.
    let renewed = listener.next(true).expect("a STATUS= after the renewal");
    let later = expiry(&renewed).unwrap_or_else(|| panic!("{renewed:?}"));
    assert!(later > first, "{first} then {later}");

    // SAFETY: signalling the child this test started, as `systemctl stop` does.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let stopping = listener.until("STOPPING=1");
    assert_eq!(stopping.last().map(|n| n.pid), Some(child.id() as libc::pid_t));
    let exit = wait_exit(&mut child, &log);
    assert!(
        exit.success(),
        "{exit}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_failed_mount_says_why_in_its_status_and_is_never_ready() {
    let s = Server::start(&[]);
    let listener = NotifyListener::bind();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mnt, log) = (dir.path().join("mnt"), dir.path().join("s3role.log"));
    std::fs::create_dir(&mnt).expect("mkdir");
    let args = ["--role-arn", s.world.role("reader"), "--external-id", "wrong-id"].map(String::from);
    let mut child = start_service(&s, &listener, "data:/sd", &mnt, &args, &log);
    let exit = wait_exit(&mut child, &log);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!exit.success(), "{output}");
    let sentence = output
        .lines()
        .rfind(|l| l.starts_with("s3role: "))
        .unwrap_or_else(|| panic!("no reason given: {output}"));
    assert!(sentence.contains("AccessDenied"), "{sentence}");
    let told = listener.queued();
    assert!(!told.iter().any(|n| n.has("READY=1")), "{told:?}");
    assert!(
        told.iter().any(|n| n.status() == Some(sentence)),
        "STATUS= is the sentence printed ({sentence}): {told:?}"
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn the_daemon_left_behind_neither_notifies_nor_inherits_the_notification_socket() {
    let s = Server::start(&[]);
    let listener = NotifyListener::bind();
    let socket = listener.path.display().to_string();
    let m = DaemonMount::start(&s, "alice", "data:/", &s.reader_args(), &[("NOTIFY_SOCKET", &socket)])
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(is_mounted(&m.path));
    let pids = m.daemon_pids();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let environ = std::fs::read(format!("/proc/{}/environ", pids[0])).expect("environ");
    assert!(
        !String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET="),
        "the daemon's environment names the socket"
    );
    let told = listener.queued();
    assert!(told.is_empty(), "{told:?}");
}

/// Where the journal listens for entries (the path tracing-journald sends to).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// One journal entry in the native protocol: `NAME=value` lines, or `NAME`, a 64-bit
/// little-endian length and the value, for values that may hold a newline.
fn journal_fields(mut datagram: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while let Some(end) = datagram.iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&datagram[..end]).into_owned();
        datagram = &datagram[end + 1..];
        if let Some((name, value)) = line.split_once('=') {
            fields.insert(name.to_owned(), value.to_owned());
            continue;
        }
        let Some((len, rest)) = datagram.split_first_chunk::<8>() else {
            break;
        };
        let len = (u64::from_le_bytes(*len) as usize).min(rest.len());
        fields.insert(line, String::from_utf8_lossy(&rest[..len]).into_owned());
        datagram = rest.get(len + 1..).unwrap_or_default();
    }
    fields
}

/// Removes the stand-in journal socket.
struct RemoveOnDrop(&'static str);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Runs `s3role mount --foreground` with JOURNAL_STREAM naming its standard error (a file
/// here, a stream to the journal under systemd), as systemd starts a service.
fn start_with_journal_stream(s: &Server, source: &str, dir: &Path, args: &[String], log: &Path) -> Child {
    use std::os::unix::fs::MetadataExt;
    let err = std::fs::File::create(log).expect("log");
    let meta = err.metadata().expect("stat");
    service(s, source, dir, args)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "s3role=info,warn")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("start s3role")
}

#[test]
fn under_systemd_logs_reach_the_journal_with_the_role_key_error_code_and_request_id() {
    if Path::new(JOURNAL_SOCKET).exists() {
        eprintln!("skipped: a journal listens on {JOURNAL_SOCKET} here; this test stands in for one");
        return;
    }
    let s = Server::start(&["--force-session-seconds", "20"]);
    s.put("data", "jr/f", b"x".to_vec(), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mnt, log) = (dir.path().join("mnt"), dir.path().join("stderr.log"));
    std::fs::create_dir(&mnt).expect("mkdir");

    // No journal to send to: lines go to standard error, after a warning.
    let args = ["--role-arn", s.world.role("reader"), "--external-id", "wrong-id"].map(String::from);
    let mut child = start_with_journal_stream(&s, "data:/jr", &mnt, &args, &log);
    assert!(!wait_exit(&mut child, &log).success());
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stderr.contains("cannot log to the journal") && stderr.contains("AccessDenied"),
        "{stderr}"
    );

    std::fs::create_dir_all("/run/systemd/journal").expect("mkdir /run/systemd/journal");
    let journal = UnixDatagram::bind(JOURNAL_SOCKET).expect("bind the journal socket");
    let _remove = RemoveOnDrop(JOURNAL_SOCKET);
    let mut child = start_with_journal_stream(&s, "data:/jr", &mnt, &s.reader_args(), &log);
    journal
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let entries = std::cell::RefCell::new(Vec::new());
    let entry_where = |what: &str, wanted: &dyn Fn(&std::collections::HashMap<String, String>) -> bool| loop {
        let mut buf = vec![0u8; 65536];
        let n = journal.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no journal entry {what}: {e}\n{:#?}\nstderr: {}",
                entries.borrow(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let fields = journal_fields(&buf[..n]);
        if wanted(&fields) {
            return fields;
        }
        entries.borrow_mut().push(fields);
    };
    let field = |f: &std::collections::HashMap<String, String>, name: &str| f.get(name).cloned().unwrap_or_default();
    let role = s.world.role("reader").to_owned();
    let assumed = entry_where("for the first session", &|f| {
        field(f, "MESSAGE").contains("role session assumed")
    });
    assert_eq!(field(&assumed, "ROLE_ARN"), role, "{assumed:?}");
    assert_eq!(field(&assumed, "SYSLOG_IDENTIFIER"), "s3role");
    assert_eq!(field(&assumed, "PRIORITY"), "5", "INFO is notice");
    entry_where("for the mount", &|f| field(f, "MESSAGE") == "mounted");

    // S3 refuses a write to the reader: a warning that names the key and the error code.
    assert!(std::fs::write(mnt.join("denied.txt"), b"no").is_err());
    let denied = entry_where("for the refused write", &|f| field(f, "KEY") == "jr/denied.txt");
    assert_eq!(field(&denied, "PRIORITY"), "4", "{denied:?}");
    assert_eq!(field(&denied, "AWS_ERROR_CODE"), "AccessDenied", "{denied:?}");
    assert!(!field(&denied, "REQUEST_ID").is_empty(), "{denied:?}");

    // STS goes down: the renewal fails, in a warning with the role, the code and the request.
    s.set_sts("down");
    let failed = entry_where("for the failed renewal", &|f| {
        field(f, "MESSAGE").contains("renewing the role session failed")
    });
    s.set_sts("up");
    assert_eq!(field(&failed, "PRIORITY"), "4", "{failed:?}");
    assert_eq!(field(&failed, "ROLE_ARN"), role, "{failed:?}");
    assert_eq!(field(&failed, "AWS_ERROR_CODE"), "ServiceUnavailable", "{failed:?}");
    assert!(!field(&failed, "REQUEST_ID").is_empty(), "{failed:?}");

    // SAFETY: signalling the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    assert!(wait_exit(&mut child, &log).success());
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !stderr.contains("renewing the role session failed"),
        "the journal has them, not standard error: {stderr}"
    );
}
