//! Prometheus metrics of one mount (`--metrics-addr`), so the tools an ops team already runs
//! see every mount's health and its role session's expiry, and can page before the session
//! runs out rather than after the first EACCES.
//!
//! Events are counted where they happen (an S3 request attempt, bytes moved, a failed
//! renewal); everything else has an owner (the renewal task, the caches, the uploads), which
//! is asked once a second by [`spawn_sampler`] and copied into the exporter. Series carry
//! operations and outcomes only: never a key, a user name, an ARN or a secret.

use crate::figures::Figures;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the owners are asked for their figures.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Latency buckets for S3 requests, in seconds: from a cached HEAD on loopback to an upload
/// of a large part over a slow link.
const LATENCY_BUCKETS: &[f64] = &[
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The name of the S3 requests counter (by operation and outcome).
pub const S3_REQUESTS: &str = "s3role_s3_requests_total";
/// The name of the S3 request latency histogram (by operation).
pub const S3_REQUEST_SECONDS: &str = "s3role_s3_request_duration_seconds";

/// How one attempt at an S3 request ended: a label with a handful of values, so a dashboard
/// can tell throttling from denials from an unreachable endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx or 304.
    Ok,
    /// 404: routine for HEAD of a name that is not an object.
    NotFound,
    /// 401 or 403: IAM or a bucket policy refused.
    Denied,
    /// 429, or 503 (S3's SlowDown).
    Throttled,
    /// Any other 5xx.
    ServerError,
    /// Any other 4xx (412 of a changed object among them).
    ClientError,
    /// No answer within the timeout.
    Timeout,
    /// No answer: the connection failed.
    NetworkError,
}

impl Outcome {
    /// The outcome of an answer with HTTP status `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 | 304 => Outcome::Ok,
            404 => Outcome::NotFound,
            401 | 403 => Outcome::Denied,
            429 | 503 => Outcome::Throttled,
            500..=599 => Outcome::ServerError,
            _ => Outcome::ClientError,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Denied => "denied",
            Outcome::Throttled => "throttled",
            Outcome::ServerError => "server_error",
            Outcome::ClientError => "client_error",
            Outcome::Timeout => "timeout",
            Outcome::NetworkError => "network_error",
        }
    }
}

/// Counts one attempt at S3 operation `operation` (the API name, e.g. `GetObject`).
pub fn s3_attempt(operation: &str, outcome: Outcome, took: Duration) {
    let operation = operation_label(operation);
    counter!(S3_REQUESTS, "operation" => operation, "outcome" => outcome.label()).increment(1);
    histogram!(S3_REQUEST_SECONDS, "operation" => operation).record(took.as_secs_f64());
}

/// The operations s3role sends; anything else (which it does not send) is `other`, so the
/// label's values stay few whatever a server or a future SDK does.
fn operation_label(operation: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "ListObjectsV2",
        "HeadObject",
        "GetObject",
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "CopyObject",
        "DeleteObject",
    ];
    KNOWN.iter().copied().find(|k| *k == operation).unwrap_or("other")
}

/// Counts body bytes received from S3.
pub fn s3_bytes_read(n: usize) {
    counter!("s3role_s3_read_bytes_total").increment(n as u64);
}

/// Counts body bytes S3 accepted (objects and parts).
pub fn s3_bytes_written(n: u64) {
    counter!("s3role_s3_written_bytes_total").increment(n);
}

/// Counts a failed renewal of the role session, by the AWS error code (`none` when STS did
/// not answer with one, e.g. unreachable).
pub fn renewal_failed(code: Option<&str>) {
    counter!("s3role_session_renewal_failures_total", "code" => code_label(code)).increment(1);
}

/// An AWS error code as a label value: codes are short identifiers; anything else (which a
/// misbehaving endpoint could send) is `other`, so no free text reaches the series.
fn code_label(code: Option<&str>) -> String {
    match code {
        None => "none".into(),
        Some(c) if !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') => {
            c.to_owned()
        }
        Some(_) => "other".into(),
    }
}

/// Installs the exporter: `/metrics` in Prometheus text format on `addr`, every series
/// labelled `mount="label"`. Call within the mount's runtime. The error is a sentence for
/// the user.
pub fn serve(addr: SocketAddr, label: &str) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .add_global_label("mount", label)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(S3_REQUEST_SECONDS.into()),
            LATENCY_BUCKETS,
        )
        .and_then(|b| b.install())
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    describe();
    gauge!("s3role_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

fn describe() {
    describe_counter!(S3_REQUESTS, "S3 request attempts, by operation and outcome");
    describe_histogram!(
        S3_REQUEST_SECONDS,
        Unit::Seconds,
        "Time to the answer of an S3 request attempt, by operation"
    );
    describe_counter!("s3role_s3_read_bytes_total", Unit::Bytes, "Body bytes received from S3");
    describe_counter!(
        "s3role_s3_written_bytes_total",
        Unit::Bytes,
        "Body bytes of objects and parts S3 accepted"
    );
    describe_counter!(
        "s3role_session_renewal_failures_total",
        "Failed renewals of the role session, by AWS error code"
    );
    describe_counter!(
        "s3role_session_renewals_total",
        "Successful renewals of the role session"
    );
    describe_gauge!(
        "s3role_session_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the current role session expires (Unix time)"
    );
    describe_gauge!(
        "s3role_session_expires_in_seconds",
        Unit::Seconds,
        "Seconds until the current role session expires"
    );
    describe_gauge!(
        "s3role_session_last_renewal_timestamp_seconds",
        Unit::Seconds,
        "When the role session was last obtained (Unix time)"
    );
    describe_gauge!(
        "s3role_session_renewal_failing",
        "1 while the last attempt to renew the role session failed"
    );
    describe_counter!("s3role_cache_hits_total", "Blocks read from the in-memory block cache");
    describe_counter!(
        "s3role_cache_misses_total",
        "Blocks fetched because the block cache lacked them"
    );
    describe_gauge!(
        "s3role_cache_bytes",
        Unit::Bytes,
        "Bytes held by the in-memory block cache"
    );
    describe_counter!("s3role_disk_cache_hits_total", "Blocks read from the disk cache");
    describe_counter!("s3role_disk_cache_misses_total", "Blocks the disk cache lacked");
    describe_counter!(
        "s3role_disk_cache_damaged_total",
        "Disk cache files found damaged and fetched again"
    );
    describe_gauge!("s3role_disk_cache_bytes", Unit::Bytes, "Bytes held by the disk cache");
    describe_gauge!(
        "s3role_copy_bytes",
        Unit::Bytes,
        "Bytes on disk in whole copies of files read at random"
    );
    describe_counter!(
        "s3role_copy_fetched_bytes_total",
        Unit::Bytes,
        "Bytes fetched into whole copies of files read at random"
    );
    describe_counter!("s3role_copy_reads_total", "Reads served from whole copies");
    describe_gauge!(
        "s3role_uploads_pending",
        "Files with changes not yet uploaded, or open for writing"
    );
    describe_gauge!(
        "s3role_uploads_retrying",
        "Files whose last close could not upload them, retried in the background"
    );
    describe_counter!(
        "s3role_upload_failures_total",
        "Closes that could not upload their file (retried in the background)"
    );
    describe_counter!(
        "s3role_uploads_recovered_total",
        "Files given up on and written to the recovery directory"
    );
    describe_gauge!("s3role_staged_bytes", Unit::Bytes, "Bytes held in staging files");
    describe_gauge!(
        "s3role_upload_buffer_bytes",
        Unit::Bytes,
        "Bytes of upload parts held in memory"
    );
    describe_gauge!("s3role_open_files", "Files open through the mount");
    describe_gauge!("s3role_inodes", "Inodes the mount knows");
}

/// Copies the owners' figures into the exporter once a second, for as long as the runtime
/// runs.
pub fn spawn_sampler(read: Arc<dyn Fn() -> Figures + Send + Sync>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            publish(&read());
        }
    });
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Sets every sampled series from `f`.
fn publish(f: &Figures) {
    let s = &f.session;
    if let Some(expiry) = s.expiry {
        gauge!("s3role_session_expiry_timestamp_seconds").set(unix_seconds(expiry));
        let left = expiry
            .duration_since(SystemTime::now())
            .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64());
        gauge!("s3role_session_expires_in_seconds").set(left);
    }
    if let Some(last) = s.last_renewal {
        gauge!("s3role_session_last_renewal_timestamp_seconds").set(unix_seconds(last));
    }
    counter!("s3role_session_renewals_total").absolute(s.renewals);
    gauge!("s3role_session_renewal_failing").set(if s.last_error.is_some() { 1.0 } else { 0.0 });
    counter!("s3role_cache_hits_total").absolute(f.cache_hits);
    counter!("s3role_cache_misses_total").absolute(f.cache_misses);
    gauge!("s3role_cache_bytes").set(f.cache_bytes as f64);
    if let Some(d) = &f.disk_cache {
        counter!("s3role_disk_cache_hits_total").absolute(d.hits);
        counter!("s3role_disk_cache_misses_total").absolute(d.misses);
        counter!("s3role_disk_cache_damaged_total").absolute(d.damaged);
        gauge!("s3role_disk_cache_bytes").set(d.bytes as f64);
    }
    gauge!("s3role_copy_bytes").set(f.copy_bytes as f64);
    counter!("s3role_copy_fetched_bytes_total").absolute(f.copy_fetched_bytes);
    counter!("s3role_copy_reads_total").absolute(f.copy_reads);
    gauge!("s3role_uploads_pending").set(f.uploads_in_flight as f64);
    gauge!("s3role_uploads_retrying").set(f.pending.files as f64);
    counter!("s3role_upload_failures_total").absolute(f.upload_failures);
    counter!("s3role_uploads_recovered_total").absolute(f.pending.recovered);
    gauge!("s3role_staged_bytes").set(f.staged_bytes as f64);
    gauge!("s3role_upload_buffer_bytes").set(f.upload_buffer_bytes as f64);
    gauge!("s3role_open_files").set(f.open_files as f64);
    gauge!("s3role_inodes").set(f.inodes as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_tell_throttling_from_denial_from_failure() {
        assert_eq!(Outcome::of_status(200), Outcome::Ok);
        assert_eq!(Outcome::of_status(206), Outcome::Ok);
        assert_eq!(Outcome::of_status(304), Outcome::Ok);
        assert_eq!(Outcome::of_status(403), Outcome::Denied);
        assert_eq!(Outcome::of_status(404), Outcome::NotFound);
        assert_eq!(Outcome::of_status(412), Outcome::ClientError);
        assert_eq!(Outcome::of_status(503), Outcome::Throttled);
        assert_eq!(Outcome::of_status(429), Outcome::Throttled);
        assert_eq!(Outcome::of_status(500), Outcome::ServerError);
    }

    #[test]
    fn labels_are_few_and_never_free_text() {
        assert_eq!(operation_label("GetObject"), "GetObject");
        assert_eq!(operation_label("logs/2026/secret-key.csv"), "other");
        assert_eq!(code_label(Some("AccessDenied")), "AccessDenied");
        assert_eq!(
            code_label(Some("User arn:aws:iam::1:user/x is not authorized")),
            "other"
        );
        assert_eq!(code_label(None), "none");
    }
}
