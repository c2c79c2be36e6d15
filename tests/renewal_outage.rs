//! STS goes away during a renewal: the still-valid session keeps serving until it expires,
//! then requests fail with EACCES; when STS answers again, I/O recovers without a remount.

mod common;

use common::{Mount, Server, await_recovery, await_renewal, renewal_args, touch_s3, touch_until};
use std::time::{Duration, Instant};

#[test]
fn reads_survive_an_sts_outage_until_expiry_and_recover_after() {
    let s = Server::start(&["--force-session-seconds", "20"]);
    s.put("data", "o1/file.txt", b"still here".to_vec(), &[]);
    let name = "outage-test";
    let m = Mount::start(&s, "alice", "data:/o1", &renewal_args(&s, name)).expect("mount");
    touch_s3(&m, "file.txt").expect("first read");

    // Take STS down right after a renewal, so a whole session is left to live on.
    let expiry = await_renewal(&s, &m, name);
    s.set_sts("down");

    // Until the session expires, everything works.
    touch_until(&m, "file.txt", expiry);
    // After it, requests are refused with EACCES (never another error).
    let deadline = Instant::now() + Duration::from_secs(15);
    let denied = loop {
        match touch_s3(&m, "file.txt") {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => break e,
            Err(e) => panic!("expected EACCES after expiry, got {e}\n{}", m.log()),
            Ok(()) => assert!(
                Instant::now() < deadline,
                "still working 15 s after expiry\n{}",
                m.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("after expiry: {denied}");
    // Just when the operator needs it, `s3role status` answers: the mount point itself
    // still resolves, and the status says what went wrong.
    let status = common::s3role()
        .arg("status")
        .arg(&m.path)
        .output()
        .expect("s3role status runs");
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "s3role status failed after expiry: {}\n{}",
        String::from_utf8_lossy(&status.stderr),
        m.log()
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("last_error") && !l.trim_end().ends_with(" -")),
        "the status names the renewal error:\n{shown}"
    );

    // STS answers again: the same mount recovers on its own.
    s.set_sts("up");
    let recovered = await_recovery(&m, "file.txt");
    eprintln!("recovered {recovered:?} after STS came back");
    assert_eq!(std::fs::read(m.join("file.txt")).expect("read"), b"still here");
    let log = m.unmount();
    assert!(log.contains("renewing the role session failed"), "{log}");
    assert!(
        log.contains("expired at") && log.contains("could not be renewed"),
        "the refusals say why\n{log}"
    );
}
