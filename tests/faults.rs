//! S3 and STS misbehave between s3role and the server (scripts/testserver/faultproxy.py):
//! throttling and 5xx answers cost nothing, torn connections and short bodies never reach a
//! program, a silent S3 gives EIO within the request timeout and the mount works again
//! after, and a silent STS makes renewal time out and retry until it answers.

mod common;

use common::{
    FaultProxy, Mount, Server, await_recovery, await_renewal, close, pattern, renewal_args, touch_s3, touch_until,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime};

/// File work through a mount, checked against a model of what the mount (and S3) should
/// hold. A failed operation is recorded and the work goes on, so one run counts them all.
struct Workload<'a> {
    m: &'a Mount,
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    ops: u64,
    failed: Vec<String>,
}

impl<'a> Workload<'a> {
    fn new(m: &'a Mount) -> Self {
        Workload {
            m,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            ops: 0,
            failed: Vec::new(),
        }
    }

    fn done<T>(&mut self, what: String, r: std::io::Result<T>) -> Option<T> {
        self.ops += 1;
        r.map_err(|e| self.failed.push(format!("{what}: {e}"))).ok()
    }

    fn mkdir(&mut self, rel: &str) {
        if self
            .done(format!("mkdir {rel}"), std::fs::create_dir(self.m.join(rel)))
            .is_some()
        {
            self.dirs.insert(rel.to_owned());
        }
    }

    fn write(&mut self, rel: &str, data: Vec<u8>) {
        let path = self.m.join(rel);
        let r = std::fs::File::create(path).and_then(|mut f| {
            f.write_all(&data)?;
            close(f)
        });
        if self.done(format!("write {rel} ({} bytes)", data.len()), r).is_some() {
            self.files.insert(rel.to_owned(), data);
        }
    }

    fn append(&mut self, rel: &str, more: &[u8]) {
        let path = self.m.join(rel);
        let r = std::fs::OpenOptions::new().append(true).open(path).and_then(|mut f| {
            f.write_all(more)?;
            close(f)
        });
        if self.done(format!("append to {rel}"), r).is_some()
            && let Some(data) = self.files.get_mut(rel)
        {
            data.extend_from_slice(more);
        }
    }

    /// Renames a file or a directory (with everything under it).
    fn rename(&mut self, from: &str, to: &str) {
        let r = std::fs::rename(self.m.join(from), self.m.join(to));
        if self.done(format!("rename {from} -> {to}"), r).is_none() {
            return;
        }
        let moved = |p: &str| {
            (p == from)
                .then(|| to.to_owned())
                .or_else(|| p.strip_prefix(&format!("{from}/")).map(|rest| format!("{to}/{rest}")))
        };
        self.files = std::mem::take(&mut self.files)
            .into_iter()
            .map(|(k, v)| (moved(&k).unwrap_or(k), v))
            .collect();
        self.dirs = std::mem::take(&mut self.dirs)
            .into_iter()
            .map(|k| moved(&k).unwrap_or(k))
            .collect();
    }

    fn remove(&mut self, rel: &str) {
        if self
            .done(format!("unlink {rel}"), std::fs::remove_file(self.m.join(rel)))
            .is_some()
        {
            self.files.remove(rel);
        }
    }

    /// Reads every file back whole and compares it byte for byte; returns the files that
    /// came back different.
    fn read_all(&mut self) -> Vec<String> {
        let mut wrong = Vec::new();
        for (rel, want) in self.files.clone() {
            if let Some(got) = self.done(format!("read {rel}"), std::fs::read(self.m.join(&rel)))
                && got != want
            {
                wrong.push(format!("{rel}: {} bytes read, {} expected", got.len(), want.len()));
            }
        }
        wrong
    }

    /// What S3 should hold under `prefix`: every file, and a marker for every directory.
    fn expected_objects(&self, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        self.files
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .chain(self.dirs.iter().map(|d| (format!("{prefix}{d}/"), Vec::new())))
            .collect()
    }
}

/// Sizes of one round of writes: empty, tiny, small, just under a block, and multipart
/// uploads of two and three parts (the part size is 8 MiB).
const SIZES: [usize; 7] = [0, 1, 4096, 200_000, 1 << 20, 12 << 20, 17 << 20];

/// A quarter of S3's answers are 503 SlowDown or 500 InternalError: writes (single and
/// multipart), read-backs, renames of files and directories, appends and deletes all
/// succeed, and S3 holds exactly the bytes written.
#[test]
fn throttling_and_server_errors_cost_no_operation() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &["--seed", "8"]);
    let m = Mount::start(&s, "alice", "data:/f1", &s.writer_args()).expect("mount");
    s.set_faults(json!({"s3": {"slowdown": 0.15, "internal": 0.10}}));

    let mut w = Workload::new(&m);
    for d in ["a", "b"] {
        w.mkdir(d);
    }
    for (i, size) in SIZES.iter().enumerate() {
        w.write(&format!("a/f{i}"), pattern(*size, i as u64));
        w.write(&format!("b/g{i}"), pattern(*size / 3, 100 + i as u64));
    }
    let mut wrong = w.read_all();
    w.rename("a/f2", "a/f2.renamed");
    w.rename("b/g5", "a/g5.moved");
    w.rename("b", "c");
    w.append("a/f3", b"appended to a small file");
    w.append("a/f5", &pattern(3 << 20, 55));
    w.append("c/g6", b"appended to a multipart file");
    w.remove("a/f1");
    w.remove("c/g0");
    w.write("a/f0", pattern(5000, 77));
    wrong.extend(w.read_all());

    let state = s.fault_state();
    let injected = &state["injected"]["s3"];
    let (slowdowns, internals) = (
        injected["slowdown"].as_u64().unwrap_or(0),
        injected["internal"].as_u64().unwrap_or(0),
    );
    s.set_faults(json!({"s3": {}}));
    let held = s.objects("data", "f1/");
    let want = w.expected_objects("f1/");
    let (ops, failed) = (w.ops, w.failed);
    let log = m.unmount();
    eprintln!(
        "{ops} operations, {slowdowns} SlowDown and {internals} InternalError injected into {} S3 requests",
        state["requests"]["s3"]
    );
    assert!(failed.is_empty(), "failed operations: {failed:#?}\n{log}");
    assert!(wrong.is_empty(), "files read back wrong: {wrong:#?}\n{log}");
    assert!(
        slowdowns >= 20 && internals >= 10,
        "too few faults to mean anything: {state}"
    );
    let differ: Vec<_> = want
        .keys()
        .chain(held.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| want.get(*k) != held.get(*k))
        .map(|k| {
            let len = |m: &BTreeMap<String, Vec<u8>>| m.get(k).map(|v| v.len().to_string()).unwrap_or("-".into());
            format!("{k}: S3 has {}, expected {}", len(&held), len(&want))
        })
        .collect();
    assert!(differ.is_empty(), "S3 does not hold what was written: {differ:#?}");
}

/// Connections reset in the middle of requests and answers, and GET bodies cut short: every
/// read returns exactly the object's bytes, never a short or torn one.
#[test]
fn resets_and_truncated_bodies_never_reach_a_reader() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &["--seed", "9"]);
    let sizes = [1usize, 5000, 300_000, 3 << 20, 20 << 20];
    for (i, size) in sizes.iter().enumerate() {
        s.put("data", &format!("f2/o{i}"), pattern(*size, i as u64), &[]);
    }
    let mut args = s.reader_args();
    args.extend(["--metadata-ttl", "0", "--cache-size", "8M"].map(String::from));
    let m = Mount::start(&s, "alice", "data:/f2", &args).expect("mount");
    s.set_faults(json!({"s3": {"reset_request": 0.05, "reset_response": 0.05, "truncate": 0.10}}));

    let (mut ops, mut failed, mut wrong) = (0u64, Vec::new(), Vec::new());
    let mut rng = 1u64;
    for round in 0..4 {
        for (i, size) in sizes.iter().enumerate() {
            let want = pattern(*size, i as u64);
            let path = m.join(&format!("o{i}"));
            ops += 1;
            match std::fs::read(&path) {
                Ok(got) if got == want => {}
                Ok(got) => wrong.push(format!("round {round} o{i}: {} of {size} bytes", got.len())),
                Err(e) => failed.push(format!("round {round} read o{i}: {e}")),
            }
            // Random ranges of the file: new GETs each time (the cache holds 8 MiB).
            for _ in 0..4 {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let off = (rng >> 33) as usize % *size;
                let len = (64 << 10).min(*size - off);
                ops += 1;
                let r = std::fs::File::open(&path).and_then(|mut f| {
                    f.seek(SeekFrom::Start(off as u64))?;
                    let mut buf = vec![0; len];
                    f.read_exact(&mut buf)?;
                    Ok(buf)
                });
                match r {
                    Ok(got) if got[..] == want[off..off + len] => {}
                    Ok(_) => wrong.push(format!("round {round} o{i} at {off}: bytes differ")),
                    Err(e) => failed.push(format!("round {round} read o{i} at {off}: {e}")),
                }
            }
        }
    }
    let state = s.fault_state();
    let injected = state["injected"]["s3"].clone();
    s.set_faults(json!({"s3": {}}));
    let log = m.unmount();
    eprintln!(
        "{ops} reads; injected into {} S3 requests: {injected}; {} block fetches tried again, {} given up",
        state["requests"]["s3"],
        log.matches("trying again").count(),
        log.matches("times:").count()
    );
    assert!(wrong.is_empty(), "reads returned wrong bytes: {wrong:#?}\n{log}");
    assert!(failed.is_empty(), "reads failed: {failed:#?}\n{log}");
    for kind in ["reset_request", "reset_response", "truncate"] {
        assert!(
            injected[kind].as_u64().unwrap_or(0) >= 3,
            "too few {kind} faults to mean anything: {injected}"
        );
    }
}

/// S3 accepts connections and never answers: stat and read of a file the mount has not
/// cached fail with EIO within the request timeout (2 s here, so within a few seconds),
/// and both work again as soon as S3 answers. A GET whose body stops coming fails too.
#[test]
fn a_silent_s3_gives_eio_in_bounded_time_and_the_mount_recovers() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    s.put("data", "f3/file.txt", b"still here".to_vec(), &[]);
    let mut args = s.reader_args();
    args.extend(["--metadata-ttl", "0", "--request-timeout", "2"].map(String::from));
    let m = Mount::start(&s, "alice", "data:/f3", &args).expect("mount");

    s.set_faults(json!({"s3": {"stall": 1}}));
    let limit = Duration::from_secs(15);
    let t = Instant::now();
    let e = std::fs::metadata(m.join("file.txt")).expect_err("stat of a stalled S3 must fail");
    let stat_took = t.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "stat: {e}\n{}", m.log());
    let t = Instant::now();
    let e = std::fs::read(m.join("file.txt")).expect_err("a read of a stalled S3 must fail");
    let read_took = t.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "read: {e}\n{}", m.log());
    assert!(
        stat_took < limit && read_took < limit,
        "stat took {stat_took:?}, read {read_took:?}\n{}",
        m.log()
    );
    assert!(stat_took >= Duration::from_secs(2), "it did wait for S3: {stat_took:?}");
    let stalls = s.injected("s3", "stall");
    assert!(stalls >= 2, "{}", s.fault_state());

    s.set_faults(json!({"s3": {}}));
    let t = Instant::now();
    let back = std::fs::read(m.join("file.txt"));
    assert_eq!(back.as_deref().ok(), Some(&b"still here"[..]), "{back:?}\n{}", m.log());
    assert!(t.elapsed() < Duration::from_secs(5), "recovery took {:?}", t.elapsed());
    touch_s3(&m, "file.txt").unwrap_or_else(|e| panic!("after the stall: {e}\n{}", m.log()));

    // A GET whose body stops half-way fails too, instead of hanging.
    let big = pattern(1 << 20, 3);
    s.put("data", "f3/big.bin", big.clone(), &[]);
    s.set_faults(json!({"s3": {"stall_body": 1, "methods": ["GET"]}}));
    let t = Instant::now();
    let e = std::fs::read(m.join("big.bin")).expect_err("a read whose body stalls must fail");
    let body_took = t.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "read: {e}\n{}", m.log());
    assert!(body_took < Duration::from_secs(20), "took {body_took:?}\n{}", m.log());
    assert!(s.injected("s3", "stall_body") >= 1, "{}", s.fault_state());
    s.set_faults(json!({"s3": {}}));
    assert!(std::fs::read(m.join("big.bin")).is_ok_and(|b| b == big), "{}", m.log());
    eprintln!(
        "stat failed after {stat_took:?}, read after {read_took:?}, a stalled body after {body_took:?}; \
         {stalls} requests stalled"
    );
}

/// STS accepts connections and never answers, past the end of a 20-second session: reads
/// go on with the current session until it expires, then are refused (EACCES, never a
/// hang); renewal attempts time out, are logged, and are tried again; once STS answers,
/// the session renews and reads work, without a remount.
#[test]
fn a_silent_sts_times_out_renewal_which_recovers_once_sts_answers() {
    let mut s = Server::start(&["--force-session-seconds", "20"]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    s.put("data", "f4/file.txt", b"still here".to_vec(), &[]);
    let name = "sts-stall-test";
    let m = Mount::start(&s, "alice", "data:/f4", &renewal_args(&s, name)).expect("mount");
    touch_s3(&m, "file.txt").expect("first read");

    // Stall STS right after a renewal, so a whole session is left to live on.
    let expiry = await_renewal(&s, &m, name);
    s.set_faults(json!({"sts": {"stall": 1}}));
    let stalled = Instant::now();
    touch_until(&m, "file.txt", expiry);
    // Past expiry every request is refused at once, and renewal keeps trying: wait until an
    // attempt has timed out (an STS call gives up after 30 s: 3 attempts of 10 s, each on a
    // new connection the proxy stalls) and the next one has started.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = Instant::now();
        match touch_s3(&m, "file.txt") {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
            Err(e) => panic!("expected EACCES after expiry, got {e}\n{}", m.log()),
            Ok(()) if SystemTime::now() < expiry + Duration::from_secs(2) => {}
            Ok(()) => panic!("a read worked with STS stalled and the session expired\n{}", m.log()),
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a refused read took {:?}",
            t.elapsed()
        );
        if s.injected("sts", "stall") >= 4 && m.log().contains("timed out") {
            break;
        }
        assert!(Instant::now() < deadline, "no renewal attempt timed out\n{}", m.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = m.log();
    assert!(
        log.contains("AssumeRole") && log.contains("no answer from STS") && log.contains("operation timeout"),
        "the log says renewal timed out\n{log}"
    );

    let stall = stalled.elapsed();
    s.set_faults(json!({"sts": {}}));
    let recovered = await_recovery(&m, "file.txt");
    assert_eq!(std::fs::read(m.join("file.txt")).expect("read"), b"still here");
    let stalls = s.injected("sts", "stall");
    let log = m.unmount();
    assert!(log.contains("role session renewed"), "{log}");
    eprintln!("STS stalled {stall:?} ({stalls} calls stalled); recovered {recovered:?} after it answered");
}

/// S3 stops taking writes while a program closes a file: close fails, the file is retried
/// in the background (status says so), and when the retry time is over its bytes are in the
/// recovery directory, named in the log. Meanwhile the mount shows no file S3 never got.
#[test]
fn a_close_that_cannot_upload_is_retried_then_recovered_and_status_says_so() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    let state = tempfile::tempdir().expect("state dir");
    let mut args = s.writer_args();
    args.extend(
        [
            "--request-timeout",
            "2",
            "--upload-retry-time",
            "3",
            "--metadata-ttl",
            "0",
        ]
        .map(String::from),
    );
    args.extend(["--state-dir".to_string(), state.path().display().to_string()]);
    let m = Mount::start(&s, "alice", "data:/f9", &args).expect("mount");
    std::fs::write(m.join("warm"), b"the role may write here").expect("a first write");
    s.set_faults(json!({"s3": {"stall": 1, "methods": ["PUT", "POST"]}}));
    let mut f = std::fs::File::create(m.join("precious")).expect("create");
    f.write_all(b"precious bytes").expect("write");
    let e = close(f).expect_err("S3 takes no writes");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The release that follows close(2) hands the file to the background retries.
    m.await_status("uploads_retrying", "1", Duration::from_secs(10));
    assert_ne!(m.status("oldest_upload_failure").as_deref(), Some("-"));
    let names: Vec<String> = std::fs::read_dir(&m.path)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["warm".to_string()], "no file S3 never got");
    m.await_status("recovered_files", "1", Duration::from_secs(60));
    assert_eq!(m.status("uploads_retrying").as_deref(), Some("0"));
    s.set_faults(json!({"s3": {}}));
    let recovered: Vec<std::path::PathBuf> = std::fs::read_dir(state.path().join("recovery"))
        .expect("the recovery directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(std::fs::read(&recovered[0]).expect("recovery file"), b"precious bytes");
    let mode = std::fs::metadata(&recovered[0]).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let log = m.unmount();
    let named = recovered[0].display().to_string();
    assert!(
        log.lines().any(|l| l.contains("ERROR") && l.contains(&named)),
        "an ERROR line names {named}:\n{log}"
    );
    assert!(s.object("data", "f9/precious").is_none());
}

/// A writer's mount with a state directory of its own (where recovered files go), every request
/// bounded by 2 s and attributes never cached, so a test sees each change at once.
fn mount_keeping_state(s: &Server, source: &str) -> (Mount, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("state dir");
    let mut args = s.writer_args();
    args.extend(["--request-timeout", "2", "--metadata-ttl", "0"].map(String::from));
    args.extend(["--state-dir".to_string(), state.path().display().to_string()]);
    let m = Mount::start(s, "alice", source, &args).expect("mount");
    (m, state)
}

/// Rewrites `name` with `bytes` while S3 takes no uploads: close fails with EIO, and the file
/// waits in the mount's retry queue.
fn rewrite_with_failing_close(m: &Mount, name: &str, bytes: &[u8]) {
    let mut f = std::fs::File::create(m.join(name)).expect("open with O_TRUNC");
    f.write_all(bytes).expect("write");
    let e = close(f).expect_err("S3 takes no uploads");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    m.await_status("uploads_retrying", "1", Duration::from_secs(10));
}

/// What each file in the recovery directory of STATE holds.
fn recovered_contents(state: &std::path::Path) -> Vec<Vec<u8>> {
    std::fs::read_dir(state.join("recovery"))
        .expect("the recovery directory")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("recovery file"))
        .collect()
}

/// A program rewrites a file while S3 takes no uploads: close fails with EIO, and the mount
/// shows the file's older object again. The user removes the file (S3 still deletes). When
/// S3 takes uploads again, the name stays gone, and the bytes of the failed close are in
/// the recovery directory: not deleted with the older object, not brought back as the file.
#[test]
fn a_file_removed_after_its_close_failed_goes_to_the_recovery_directory() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    let (m, state) = mount_keeping_state(&s, "data:/f10");
    std::fs::write(m.join("report.csv"), b"yesterday's report").expect("a first write");
    s.set_faults(json!({"s3": {"slowdown": 1, "methods": ["PUT", "POST"]}}));
    rewrite_with_failing_close(&m, "report.csv", b"today's report, never uploaded");
    assert_eq!(
        std::fs::read(m.join("report.csv")).expect("the older object"),
        b"yesterday's report"
    );
    std::fs::remove_file(m.join("report.csv")).expect("rm");
    s.set_faults(json!({"s3": {}}));
    m.await_status("recovered_files", "1", Duration::from_secs(60));
    assert_eq!(m.status("uploads_retrying").as_deref(), Some("0"));
    let recovered = recovered_contents(state.path());
    assert_eq!(recovered, vec![b"today's report, never uploaded".to_vec()]);
    assert!(
        std::fs::metadata(m.join("report.csv")).is_err(),
        "the removed name stays gone"
    );
    m.unmount();
    assert!(s.object("data", "f10/report.csv").is_none(), "nor is it in S3");
}

/// An editor saves with a temp file and a rename, after an earlier save of the same name failed
/// at close: the rename is what the user did last, so it stays at the name, and the failed
/// save's bytes go to the recovery directory instead of landing over it when S3 answers again.
#[test]
fn a_rename_onto_a_name_whose_close_failed_keeps_the_renamed_file() {
    let mut s = Server::start(&[]);
    let _proxy = FaultProxy::in_front_of(&mut s, &[]);
    let (m, state) = mount_keeping_state(&s, "data:/f11");
    std::fs::write(m.join("notes.txt"), b"first draft").expect("a first save");
    std::fs::write(m.join(".notes.txt.swp"), b"final draft, saved by rename").expect("the temp file");
    // New bytes cannot be uploaded; server-side copies (what a rename sends) still go through.
    s.set_faults(json!({"s3": {"slowdown": 1, "methods": ["PUT", "POST"], "copies": false}}));
    rewrite_with_failing_close(&m, "notes.txt", b"second draft, never uploaded");
    std::fs::rename(m.join(".notes.txt.swp"), m.join("notes.txt")).expect("mv onto the name");
    assert_eq!(
        std::fs::read(m.join("notes.txt")).expect("the renamed file"),
        b"final draft, saved by rename"
    );
    s.set_faults(json!({"s3": {}}));
    m.await_status("recovered_files", "1", Duration::from_secs(60));
    assert_eq!(m.status("uploads_retrying").as_deref(), Some("0"));
    assert_eq!(
        std::fs::read(m.join("notes.txt")).expect("the name after the retry"),
        b"final draft, saved by rename"
    );
    let recovered = recovered_contents(state.path());
    assert_eq!(recovered, vec![b"second draft, never uploaded".to_vec()]);
    m.unmount();
    assert_eq!(
        s.object("data", "f11/notes.txt").map(|(body, _)| body).as_deref(),
        Some(&b"final draft, saved by rename"[..])
    );
    assert!(s.object("data", "f11/.notes.txt.swp").is_none());
}
