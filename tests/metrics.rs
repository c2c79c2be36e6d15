//! `--metrics-addr`: a Prometheus scrape of a live mount on 20-second sessions, through a
//! proxy that throttles S3 and STS for a while. The counters move with reads and writes,
//! throttling and failed renewals show by outcome and code, the session's expiry moves
//! forward with each renewal, the text parses with the Prometheus client library's parser,
//! and no key, user name, ARN or secret appears in it.

mod common;

use common::{FaultProxy, Mount, Server, await_renewal, distinctive, pattern};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One sample: its name, labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The scrape's text and its samples, parsed by `prometheus_client.parser` (PyPI's
/// prometheus-client), which fails on anything that is not valid text format.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include every pair of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The value of the one sample `name` (unlabelled but for `mount`), if present.
    fn get(&self, name: &str) -> Option<f64> {
        self.samples.iter().find(|s| s.name == name).map(|s| s.value)
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics address");
    conn.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/plain"),
        "not Prometheus text format: {head}"
    );
    body.to_owned()
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
"#;

fn scrape(port: u16) -> Scrape {
    let text = http_get(port, "/metrics");
    let mut py = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed the parser");
    let out = py.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape (pip install prometheus-client if it is missing): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let samples = parsed
        .iter()
        .map(|v| Sample {
            name: v["name"].as_str().unwrap_or_default().to_owned(),
            labels: v["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            value: v["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect();
    Scrape { text, samples }
}

/// Scrapes until `ready` holds of a scrape, for up to `limit`.
fn scrape_until(port: u16, limit: Duration, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + limit;
    loop {
        let s = scrape(port);
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {limit:?}\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn a_scrape_follows_reads_writes_throttling_and_renewals_and_names_nothing_private() {
    let mut s = Server::start(&["--force-session-seconds", "20"]);
    let _proxy = FaultProxy::in_front_of(&mut s, &["--seed", "11"]);
    let secret_name = distinctive("private-report");
    let input = pattern(3 << 20, 7);
    s.put("data", &format!("m/{secret_name}.csv"), input.clone(), &[]);
    let port = free_port();
    let mut args = s.writer_args();
    args.extend(
        [
            "--role-session-name",
            "metrics-session",
            "--metadata-ttl",
            "0",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-label",
            "analytics",
        ]
        .map(String::from),
    );
    let m = Mount::start(&s, "alice", "data:/m", &args).expect("mount");

    let first = scrape_until(port, Duration::from_secs(10), "the session's expiry", |s| {
        s.get("s3role_session_expiry_timestamp_seconds").is_some()
    });
    let first_expiry = first.get("s3role_session_expiry_timestamp_seconds").unwrap_or_default();
    let left = first.get("s3role_session_expires_in_seconds").unwrap_or_default();
    assert!(
        left > 0.0 && left <= 20.0,
        "seconds to expiry of a 20 s session: {left}"
    );
    assert!(
        first
            .samples
            .iter()
            .all(|s| s.labels.get("mount").map(String::as_str) == Some("analytics")),
        "every series carries mount=\"analytics\"\n{}",
        first.text
    );
    let gets_before = first.sum(
        "s3role_s3_requests_total",
        &[("operation", "GetObject"), ("outcome", "ok")],
    );

    // Reads and writes move the request, byte and cache counters.
    assert_eq!(
        std::fs::read(m.join(&format!("{secret_name}.csv"))).expect("read"),
        input
    );
    let output = pattern(6 << 20, 8);
    std::fs::write(m.join(&format!("{secret_name}-out.bin")), &output).expect("write");
    let moved = scrape_until(
        port,
        Duration::from_secs(10),
        "the counters of a read and a write",
        |s| {
            s.sum("s3role_s3_read_bytes_total", &[]) >= input.len() as f64
                && s.sum("s3role_s3_written_bytes_total", &[]) >= output.len() as f64
                && s.sum("s3role_cache_misses_total", &[]) > 0.0
        },
    );
    assert!(
        moved.sum(
            "s3role_s3_requests_total",
            &[("operation", "GetObject"), ("outcome", "ok")]
        ) > gets_before,
        "{}",
        moved.text
    );
    let uploads = moved.sum(
        "s3role_s3_requests_total",
        &[("operation", "PutObject"), ("outcome", "ok")],
    ) + moved.sum(
        "s3role_s3_requests_total",
        &[("operation", "UploadPart"), ("outcome", "ok")],
    );
    assert!(uploads > 0.0, "no upload counted\n{}", moved.text);
    assert!(
        moved.sum(
            "s3role_s3_request_duration_seconds_count",
            &[("operation", "GetObject")]
        ) > 0.0,
        "no GetObject latency\n{}",
        moved.text
    );
    assert!(moved.get("s3role_inodes").unwrap_or_default() >= 1.0);
    assert!(moved.get("s3role_open_files").is_some());

    // Throttling, by outcome; a renewal refused, by code.
    s.set_faults(json!({"s3": {"slowdown": 0.5}, "sts": {"slowdown": 1.0}}));
    for _ in 0..4 {
        let _ = std::fs::metadata(m.join(&format!("{secret_name}.csv")));
    }
    let throttled = scrape_until(port, Duration::from_secs(30), "throttling and a failed renewal", |s| {
        s.sum("s3role_s3_requests_total", &[("outcome", "throttled")]) > 0.0
            && s.sum("s3role_session_renewal_failures_total", &[("code", "Throttling")]) > 0.0
            && s.get("s3role_session_renewal_failing") == Some(1.0)
    });
    s.set_faults(json!({"s3": {}, "sts": {}}));

    // A renewal moves the expiry forward.
    await_renewal(&s, &m, "metrics-session");
    let renewed = scrape_until(port, Duration::from_secs(30), "the renewed session", |s| {
        s.get("s3role_session_expiry_timestamp_seconds").unwrap_or_default() > first_expiry
            && s.get("s3role_session_renewal_failing") == Some(0.0)
    });
    assert!(
        renewed.sum("s3role_session_renewals_total", &[]) >= 1.0,
        "{}",
        renewed.text
    );
    assert!(
        renewed
            .get("s3role_session_last_renewal_timestamp_seconds")
            .unwrap_or_default()
            > first_expiry - 20.0,
        "{}",
        renewed.text
    );

    // Every series the packaged alert rules use is one the mount exports.
    for name in alert_rule_series() {
        assert!(
            renewed.samples.iter().any(|s| s.name == name),
            "packaging/prometheus/s3role-alerts.yml uses {name}, which the mount does not export\n{}",
            renewed.text
        );
    }

    let log = m.unmount();
    // Nothing private in any scrape: no key or part of one, no user or role, no secret.
    let (access_key, secret_key) = s.world.keys("alice").clone();
    for scrape in [&first, &moved, &throttled, &renewed] {
        for needle in [
            secret_name.as_str(),
            "private-report",
            "alice",
            access_key.as_str(),
            secret_key.as_str(),
            s.world.role("writer"),
            s.world.external_id.as_str(),
            "metrics-session",
        ] {
            assert!(
                !scrape.text.contains(needle),
                "the scrape names {needle:?}\n{}\n{log}",
                scrape.text
            );
        }
    }
}

#[test]
fn an_address_that_cannot_be_bound_fails_the_mount_with_the_reason() {
    let s = Server::start(&[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut args = s.reader_args();
    args.extend(["--metrics-addr".to_owned(), format!("127.0.0.1:{port}")]);
    let err = Mount::start(&s, "alice", "data:/m", &args)
        .err()
        .expect("the mount fails");
    assert!(
        err.contains(&format!("--metrics-addr 127.0.0.1:{port}")),
        "the reason names the option: {err}"
    );
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The s3role series named in the packaged alert rules' expressions.
fn alert_rule_series() -> std::collections::BTreeSet<String> {
    let rules = std::fs::read_to_string(repo().join("packaging/prometheus/s3role-alerts.yml")).expect("rules file");
    let mut names = std::collections::BTreeSet::new();
    for line in rules.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("s3role_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // Metric names only: not the words of a description ("s3role_session_… by code").
            if !line.trim_start().starts_with("summary") && !line.trim_start().starts_with("description") {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    assert!(names.len() >= 5, "too few series found in the rules: {names:?}");
    names
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(repo().join("packaging/prometheus"))
        .output()
        .expect("promtool is installed (Debian: apt-get install prometheus)")
}

#[test]
fn the_packaged_alert_rules_are_valid_and_fire_when_they_should() {
    // promtool's check of the rules, then the cases of s3role-alerts.test.yml: which alerts
    // fire, and when, on series shaped like a mount's.
    for args in [
        ["check", "rules", "s3role-alerts.yml"],
        ["test", "rules", "s3role-alerts.test.yml"],
    ] {
        let out = promtool(&args);
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
