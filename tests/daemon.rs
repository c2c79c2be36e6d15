//! A live mount answers `s3role status`, whose session expiry moves forward as the role
//! session renews; SIGTERM during a large write lets the write finish and upload before the
//! daemon exits, never leaving half an object, and so does a lazy `fusermount3 -u -z`.

mod common;

use common::{Mount, Server, is_mounted, pattern, s3role, status};
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn status_shows_the_session_and_its_expiry_moves_forward() {
    let s = Server::start(&["--force-session-seconds", "20"]);
    s.put("data", "st/file", b"x".to_vec(), &[]);
    let mut args = s.reader_args();
    args.extend(["--role-session-name", "status-test"].map(String::from));
    let m = Mount::start(&s, "alice", "data:/st", &args).expect("mount");
    let first = status(&m.path);
    assert_eq!(first.get("source").map(String::as_str), Some("s3://data/st/"));
    assert_eq!(first.get("session_name").map(String::as_str), Some("status-test"));
    assert!(
        first
            .get("role_chain")
            .is_some_and(|c| c.contains(s.world.role("reader"))),
        "{first:?}"
    );
    for count in ["inodes", "cached_attributes", "cached_listings", "uploads_in_flight"] {
        assert!(
            first.get(count).is_some_and(|v| v.parse::<u64>().is_ok()),
            "{count}: {first:?}"
        );
    }
    let expiry = first.get("expiry").cloned().expect("expiry");
    let deadline = Instant::now() + Duration::from_secs(40);
    let later = loop {
        let now = status(&m.path);
        if now.get("expiry") != Some(&expiry) {
            break now;
        }
        assert!(Instant::now() < deadline, "the expiry did not move in 40 s: {now:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(later["expiry"] > expiry, "{} then {}", expiry, later["expiry"]);
    assert!(later["renewals"].parse::<u64>().expect("renewals") >= 1);
    assert_eq!(later["last_error"], "-");
    let out = s3role()
        .arg("status")
        .arg("/tmp")
        .output()
        .expect("status of a plain directory");
    assert!(!out.status.success());
    // `s3role status DIR | grep -q expiry`: the reader goes away after the first lines.
    let mut piped = s3role()
        .arg("status")
        .arg(&m.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("status runs");
    drop(piped.stdout.take());
    let out = piped.wait_with_output().expect("status ends");
    assert!(
        out.status.success(),
        "status into a closed pipe: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    m.unmount();
}

/// Writes 48 MiB slowly, calls `stop` once 16 MiB are written, and checks that the write
/// completes, the daemon exits cleanly and the object is whole.
fn a_large_write_outlives(prefix: &str, stop: impl FnOnce(&Mount)) {
    let s = Server::start(&[]);
    let mut m = Mount::start(&s, "alice", &format!("data:/{prefix}"), &s.writer_args()).expect("mount");
    let data = pattern(48 << 20, 11);
    let path = m.join("large.bin");
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            for (i, chunk) in data.chunks(1 << 20).enumerate() {
                f.write_all(chunk)?;
                if i == 16 {
                    let _ = tx.send(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // The close result is the upload's.
            common::close(f)
        })
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the writer got going");
    stop(&m);
    writer
        .join()
        .expect("writer thread")
        .unwrap_or_else(|e| panic!("the write must complete: {e}\n{}", m.log()));
    let status = m
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the daemon did not exit\n{}", m.log()));
    assert!(status.success(), "{status}\n{}", m.log());
    assert!(!is_mounted(&m.path));
    let body = s.block_on(async {
        let out = s
            .admin()
            .get_object()
            .bucket("data")
            .key(format!("{prefix}/large.bin"))
            .send()
            .await
            .expect("the object exists");
        out.body.collect().await.expect("body").into_bytes()
    });
    assert!(
        body.len() == data.len() && body[..] == data[..],
        "the object is whole ({} of {} bytes)",
        body.len(),
        data.len()
    );
}

#[test]
fn sigterm_during_a_large_write_finishes_the_upload_before_exiting() {
    a_large_write_outlives("term", |m| {
        let pid = m.pid().expect("daemon pid") as libc::pid_t;
        // SAFETY: signalling our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    });
}

#[test]
fn a_lazy_fusermount_unmount_during_a_large_write_finishes_the_upload_before_exiting() {
    a_large_write_outlives("lazy", |m| {
        let st = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&m.path)
            .status()
            .expect("fusermount3");
        assert!(st.success(), "fusermount3 -u -z");
    });
}

/// Process ids whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid: libc::pid_t = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd).contains(needle).then_some(pid)
        })
        .collect()
}

#[test]
fn a_daemon_logs_to_its_file_reopens_it_on_sighup_and_exits_on_umount() {
    let s = Server::start(&[]);
    s.put("data", "lg/f", b"x".to_vec(), &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mnt, log) = (dir.path().join("mnt"), dir.path().join("s3role.log"));
    std::fs::create_dir(&mnt).expect("mkdir");
    let mut args: Vec<String> = vec![
        "mount".into(),
        "data:/lg".into(),
        mnt.display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
    ];
    args.extend(s.endpoint_args());
    args.extend(s.reader_args());
    let out = common::run_s3role(&s, "alice", &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(&mnt), "mounted when s3role returns");
    assert_eq!(std::fs::read(mnt.join("f")).expect("read"), b"x");
    let text = std::fs::read_to_string(&log).expect("log file");
    assert!(
        text.contains("mounted") && text.contains("role session assumed"),
        "{text}"
    );
    assert!(!text.contains(&s.world.keys("alice").1), "no secret in the log");

    let pids = pids_mentioning(&mnt.display().to_string());
    assert_eq!(pids.len(), 1, "one daemon: {pids:?}");
    std::fs::rename(&log, dir.path().join("s3role.log.1")).expect("rotate");
    // SAFETY: signalling the daemon this test started.
    assert_eq!(unsafe { libc::kill(pids[0], libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("log file reopened")
    {
        assert!(Instant::now() < deadline, "no new log file after SIGHUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = std::process::Command::new("umount").arg(&mnt).status().expect("umount");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_mentioning(&mnt.display().to_string()).is_empty() {
        assert!(Instant::now() < deadline, "the daemon did not exit after umount");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::fs::read_to_string(&log).expect("log").contains("unmounted"));
}
