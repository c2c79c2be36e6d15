//! STS goes away during a renewal: the still-valid session keeps serving until it expires,
//! then requests fail with EACCES; when STS answers again, I/O recovers without a remount.

mod common;

use common::{Mount, Server, touch_s3};
use std::time::{Duration, Instant, SystemTime};

#[test]
fn reads_survive_an_sts_outage_until_expiry_and_recover_after() {
    let s = Server::start(&["--force-session-seconds", "20"]);
    s.put("data", "o1/file.txt", b"still here".to_vec(), &[]);
    let name = "outage-test";
    let mut args = s.reader_args();
    args.extend(["--role-session-name", name, "--metadata-ttl", "0"].map(String::from));
    let m = Mount::start(&s, "alice", "data:/o1", &args).expect("mount");
    touch_s3(&m, "file.txt").expect("first read");

    // Take STS down right after a renewal, so a whole session is left to live on.
    let have = s.sessions_named(name).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.sessions_named(name).len() == have {
        assert!(Instant::now() < deadline, "no renewal within 30 s\n{}", m.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    s.set_sts("down");
    let expiry = s.sessions_named(name).last().expect("a session").expiration;

    // Until the session expires, everything works.
    while SystemTime::now() + Duration::from_secs(1) < expiry {
        touch_s3(&m, "file.txt").unwrap_or_else(|e| panic!("failed before expiry: {e}\n{}", m.log()));
        std::thread::sleep(Duration::from_millis(100));
    }
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

    // STS answers again: the same mount recovers on its own.
    s.set_sts("up");
    let back = Instant::now();
    loop {
        match touch_s3(&m, "file.txt") {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
            Err(e) => panic!("unexpected error while recovering: {e}\n{}", m.log()),
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "not recovered 20 s after STS came back\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("recovered {:?} after STS came back", back.elapsed());
    for _ in 0..20 {
        touch_s3(&m, "file.txt").unwrap_or_else(|e| panic!("failed after recovery: {e}\n{}", m.log()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read(m.join("file.txt")).expect("read"), b"still here");
    let log = m.unmount();
    assert!(log.contains("renewing the role session failed"), "{log}");
    assert!(
        log.contains("expired at") && log.contains("could not be renewed"),
        "the refusals say why\n{log}"
    );
}
