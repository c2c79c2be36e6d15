//! A live mount answers `s3role status`, whose session expiry moves forward as the role
//! session renews; SIGTERM during a large write lets the write finish and upload before the
//! daemon exits, never leaving half an object.

mod common;

use common::{Mount, Server, is_mounted, pattern, s3role};
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::time::{Duration, Instant};

fn status(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let out = s3role().arg("status").arg(dir).output().expect("s3role status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(char::is_whitespace)
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

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
    m.unmount();
}

#[test]
fn sigterm_during_a_large_write_finishes_the_upload_before_exiting() {
    let s = Server::start(&[]);
    let args = vec![
        "--role-arn".into(),
        s.world.role("writer").to_owned(),
        "--external-id".into(),
        s.world.external_id.clone(),
    ];
    let mut m = Mount::start(&s, "alice", "data:/term", &args).expect("mount");
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
            let fd = f.into_raw_fd();
            // SAFETY: fd came from a File that owned it; its close result is the upload's.
            if unsafe { libc::close(fd) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the writer got going");
    let pid = m.pid().expect("daemon pid") as libc::pid_t;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
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
            .key("term/large.bin")
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
