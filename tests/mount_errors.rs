//! What an operator sees when IAM or S3 refuses: `s3role mount` (as a daemon) fails fast
//! with the AWS error code and the ARN, leaves nothing mounted and no process behind, and
//! `s3role check` names the failing step.

mod common;

use common::{Server, is_mounted, run_s3role, shared_server};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    shared_server(&SERVER, &[])
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

struct Failure {
    stderr: String,
    elapsed: Duration,
}

/// Runs `s3role mount` without -f (the daemon path) and expects it to fail.
fn mount_fails(s: &Server, user: &str, source: &str, args: &[String]) -> Failure {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mut all: Vec<String> = vec!["mount".into(), source.into(), mnt.display().to_string()];
    all.extend(s.endpoint_args());
    all.extend(args.iter().cloned());
    let start = Instant::now();
    let out = run_s3role(s, user, &all);
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mount should fail: {stderr}");
    assert!(!is_mounted(&mnt), "nothing may stay mounted");
    std::thread::sleep(Duration::from_millis(200));
    let left = processes_mentioning(&mnt.display().to_string());
    assert!(left.is_empty(), "no daemon may stay behind: {left:?}");
    Failure { stderr, elapsed }
}

#[test]
fn wrong_external_id_fails_with_the_code_and_the_role() {
    let s = server();
    let role = s.world.role("reader").to_owned();
    let f = mount_fails(
        s,
        "alice",
        "data",
        &[
            "--role-arn".into(),
            role.clone(),
            "--external-id".into(),
            "wrong-id".into(),
        ],
    );
    assert!(f.elapsed < Duration::from_secs(10), "took {:?}", f.elapsed);
    assert!(
        f.stderr.contains("AccessDenied") && f.stderr.contains(&role),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("ExternalId"),
        "the hint names the external ID: {}",
        f.stderr
    );
}

#[test]
fn missing_external_id_is_refused_too() {
    let s = server();
    let role = s.world.role("reader").to_owned();
    let f = mount_fails(s, "alice", "data", &["--role-arn".into(), role.clone()]);
    assert!(
        f.stderr.contains("AccessDenied") && f.stderr.contains(&role),
        "{}",
        f.stderr
    );
}

#[test]
fn a_role_that_cannot_be_assumed_fails_with_the_code_and_the_role() {
    let s = server();
    let role = s.world.role("noassume").to_owned();
    let f = mount_fails(s, "alice", "data", &["--role-arn".into(), role.clone()]);
    assert!(f.elapsed < Duration::from_secs(10), "took {:?}", f.elapsed);
    assert!(
        f.stderr.contains("AccessDenied") && f.stderr.contains(&role),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("trust policy"), "{}", f.stderr);
}

#[test]
fn a_missing_bucket_fails_with_the_code() {
    let s = server();
    // The admin may list any bucket, so the server tells it the bucket is missing (to a
    // caller without s3:ListBucket, S3 answers AccessDenied instead).
    let f = mount_fails(s, "admin", "no-such-bucket-here", &[]);
    assert!(f.elapsed < Duration::from_secs(10), "took {:?}", f.elapsed);
    assert!(
        f.stderr.contains("NoSuchBucket") || f.stderr.contains("does not exist"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("no-such-bucket-here"), "{}", f.stderr);
}

#[test]
fn a_bucket_the_role_may_not_list_fails_with_the_code_and_the_role() {
    let s = server();
    let f = mount_fails(s, "alice", "other", &s.reader_args());
    assert!(
        f.stderr.contains("AccessDenied") && f.stderr.contains(s.world.role("reader")),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("s3:ListBucket"), "{}", f.stderr);
}

#[test]
fn bad_inputs_are_refused_before_any_request() {
    let s = server();
    let reader = s.world.role("reader").to_owned();
    let name = "validation-only";
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--role-arn".into(), "arn:aws:iam::123:role/x".into()],
            "--role-arn",
        ),
        (vec!["--external-id".into(), "ext-123".into()], "--external-id"),
        (
            vec![
                "--role-arn".into(),
                reader.clone(),
                "--duration-seconds".into(),
                "100".into(),
            ],
            "--duration-seconds",
        ),
        (
            vec![
                "--role-arn".into(),
                reader.clone(),
                "--session-policy".into(),
                "{nope".into(),
            ],
            "--session-policy",
        ),
        (
            vec!["--role-arn".into(), reader.clone(), "--external-id".into(), "x".into()],
            "--external-id",
        ),
    ];
    for (mut args, option) in cases {
        args.extend(["--role-session-name".to_string(), name.to_string()]);
        let f = mount_fails(s, "alice", "data", &args);
        assert!(f.stderr.contains(option), "{args:?}: {}", f.stderr);
    }
    let bad_name = [
        "--role-arn".to_string(),
        reader.clone(),
        "--role-session-name".into(),
        "has space".into(),
    ];
    assert!(
        mount_fails(s, "alice", "data", &bad_name)
            .stderr
            .contains("--role-session-name")
    );
    let f = mount_fails(
        s,
        "alice",
        "Not_A_Bucket",
        &[
            "--role-arn".into(),
            reader.clone(),
            "--role-session-name".into(),
            name.into(),
        ],
    );
    assert!(f.stderr.contains("bucket name"), "{}", f.stderr);
    let reached = s
        .sessions()
        .into_iter()
        .filter(|(_, n)| n == name || n == "has space")
        .count();
    assert_eq!(reached, 0, "validation must not reach STS");
    let out = run_s3role(s, "alice", &["mount".into(), "data".into(), "/nonexistent/mnt".into()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/mnt"));
}

fn check(s: &Server, user: &str, source: &str, args: &[String]) -> (bool, String) {
    let mut all: Vec<String> = vec!["check".into(), source.into()];
    all.extend(s.endpoint_args());
    all.extend(args.iter().cloned());
    let out = run_s3role(s, user, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_walks_every_step() {
    let s = server();
    s.put(
        "data",
        "c1/file.txt",
        b"check me".to_vec(),
        &[("mode", "33188"), ("uid", "7")],
    );
    let (ok, out) = check(s, "alice", "data:/c1", &s.reader_args());
    assert!(ok, "{out}");
    let reader = s.world.role("reader");
    for step in [
        "OK      source identity (GetCallerIdentity): arn:aws:iam::",
        "OK      AssumeRole ",
        "OK      ListObjectsV2 s3://data/c1/",
        "OK      HeadObject s3://data/c1/file.txt",
        "OK      GetObject s3://data/c1/file.txt bytes=0-0",
    ] {
        assert!(out.contains(step), "missing '{step}' in:\n{out}");
    }
    assert!(out.contains(reader) && out.contains("assumed-role/reader/"), "{out}");
    assert!(out.contains("mode=33188"), "{out}");
}

#[test]
fn check_names_the_failing_step() {
    let s = server();
    let reader = s.world.role("reader").to_owned();
    let (ok, out) = check(
        s,
        "alice",
        "data",
        &[
            "--role-arn".into(),
            reader.clone(),
            "--external-id".into(),
            "wrong".into(),
        ],
    );
    assert!(!ok);
    assert!(out.contains("OK      source identity"), "{out}");
    assert!(
        out.contains(&format!("FAILED  AssumeRole {reader} failed: AccessDenied")),
        "{out}"
    );

    let (ok, out) = check(s, "alice", "other", &s.reader_args());
    assert!(!ok);
    assert!(
        out.contains("FAILED  ListObjectsV2 s3://other/") && out.contains("AccessDenied"),
        "{out}"
    );

    s.put("data", "secret/only.txt", b"s".to_vec(), &[]);
    let (ok, out) = check(s, "alice", "data:/secret", &s.reader_args());
    assert!(!ok);
    assert!(
        out.contains("OK      ListObjectsV2") && out.contains("FAILED  HeadObject s3://data/secret/only.txt"),
        "{out}"
    );

    let (ok, out) = check(s, "bob", "data", &s.reader_args());
    assert!(!ok);
    assert!(
        out.contains("arn:aws:iam::") && out.contains("user/bob") && out.contains("FAILED  AssumeRole"),
        "{out}"
    );
}
