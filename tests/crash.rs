//! A daemon killed with -9 in the middle of a large write: no partial object is ever
//! visible, the dead mount point is taken over by the next mount, and that mount aborts the
//! multipart upload the killed one left open.

mod common;

use common::{Mount, Server, shared_server};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

#[test]
fn a_daemon_killed_during_a_large_write_leaves_nothing_partial_and_the_next_mount_cleans_up() {
    let s = server();
    let state = tempfile::tempdir().expect("state dir");
    let place = tempfile::tempdir().expect("mount dir");
    let mountpoint = place.path().join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    let mut args = s.writer_args();
    args.extend(["--state-dir".into(), state.path().display().to_string()]);
    let mut first = Mount::start_at(s, "alice", "data:/crash", &args, &mountpoint).expect("mount");
    // Write until parts are on their way, then kill the daemon as the OOM killer would.
    // (Past the first MiBs: the upload that checks write access at create is open for a
    // moment too, at the same key.)
    let path = first.join("big.bin");
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&path).expect("create");
        let chunk = vec![5u8; 1 << 20];
        for _ in 0..256 {
            if f.write_all(&chunk).is_err() {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while written.load(std::sync::atomic::Ordering::Relaxed) < 24 || s.open_uploads("data", "crash/").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no multipart upload started:\n{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill_daemon();
    let _ = writer.join();
    assert!(
        s.object("data", "crash/big.bin").is_none(),
        "no partial object is visible"
    );
    assert!(
        !s.open_uploads("data", "crash/").is_empty(),
        "the killed daemon left its upload open"
    );
    let err = std::fs::metadata(&mountpoint).expect_err("the mount is dead");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");

    // The next mount of the same source takes the dead mount point over and aborts the upload.
    let second = Mount::start_at(s, "alice", "data:/crash", &args, &mountpoint).expect("mount again");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.open_uploads("data", "crash/").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the upload was not aborted:\n{}",
            second.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        second.log().contains("aborted an incomplete multipart upload"),
        "{}",
        second.log()
    );
    std::fs::write(second.join("after.txt"), b"works").expect("the new mount works");
    let log = second.unmount();
    assert!(log.contains("detached it") || log.contains("had died"), "{log}");
    assert_eq!(s.object("data", "crash/after.txt").expect("written").0, b"works");
    drop(first);
}
