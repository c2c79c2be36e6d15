//! Role sessions renew in the background: the server grants 20-second sessions whatever is
//! asked for and rejects expired ones, and 90 s of continuous filesystem work sees no error.

mod common;

use common::{Mount, Server, touch_s3};
use std::time::{Duration, Instant};

#[test]
fn ninety_seconds_of_reads_across_renewals() {
    let s = Server::start(&["--force-session-seconds", "20"]);
    for i in 0..8 {
        s.put(
            "data",
            &format!("r1/file{i}.txt"),
            format!("contents {i}").into_bytes(),
            &[],
        );
    }
    let mut args = s.reader_args();
    args.extend(
        [
            "--role-session-name",
            "renewal-reads",
            "--metadata-ttl",
            "0",
            "--duration-seconds",
            "3600",
        ]
        .map(String::from),
    );
    let m = Mount::start(&s, "alice", "data:/r1", &args).expect("mount");
    let start = Instant::now();
    let (mut rounds, mut errors) = (0u64, Vec::new());
    while start.elapsed() < Duration::from_secs(90) {
        let i = rounds % 8;
        match touch_s3(&m, &format!("file{i}.txt")) {
            Ok(()) => {}
            Err(e) => errors.push(format!("{:?}: {e}", start.elapsed())),
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let sessions = s.sessions_named("renewal-reads");
    let log = m.unmount();
    assert!(
        errors.is_empty(),
        "{} of {rounds} rounds failed: {:?}\n{log}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(
        sessions.len() >= 4,
        "expected the first session and at least 3 renewals, got {}\n{log}",
        sessions.len()
    );
    let renewed = log.matches("role session renewed").count();
    assert!(renewed >= 3, "{renewed} renewals logged\n{log}");
    assert!(
        !log.contains(&s.world.keys("alice").1),
        "a secret key appeared in the log"
    );
    eprintln!(
        "{rounds} rounds, {} sessions, {renewed} renewals logged",
        sessions.len()
    );
}
