//! Baseline for `scripts/bench-read.sh`: downloads one object with parallel ranged GETs
//! through s3role's own store layer (`S3Store::get_range`, the same client settings a mount
//! uses), discards the bytes and prints the throughput. Comparing a mount's sequential read
//! with this number shows what the FUSE path costs on top of the S3 client.
//!
//! ```text
//! AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. \
//!   cargo run --release --example direct_get -- ENDPOINT BUCKET KEY \
//!     [--part-size 8M] [--concurrency 8] [--region us-east-1] [--repeat 1] [--no-if-match]
//!     [--probe] [--random N [--read-size 4K] [--seed 1]]
//! ```
//!
//! Each run prints one line of `name=value` pairs (`mib_per_s=...` is the figure to compare).
//! Like a mount, every GET carries `If-Match: <ETag from HEAD>` unless `--no-if-match`.
//! `--probe` instead checks that the server honours ranges and If-Match (exit 1 if not).
//! `--random N` instead sends N ranged GETs of `--read-size` bytes at random aligned offsets,
//! one after another (like a single reader doing `pread`), and prints the rate and latency:
//! the floor for a mount's random-read figure.

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use s3role::store::s3::{S3Location, S3Store};
use s3role::store::{ObjectStore, StoreError};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const USAGE: &str = "usage: direct_get ENDPOINT BUCKET KEY [--part-size BYTES] [--concurrency N] \
[--region REGION] [--repeat N] [--no-if-match] [--probe] [--random N [--read-size BYTES] [--seed S]]
credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set)";

struct Opts {
    endpoint: String,
    bucket: String,
    key: String,
    part_size: u64,
    concurrency: usize,
    region: String,
    repeat: u32,
    if_match: bool,
    probe: bool,
    random: u64,
    read_size: u64,
    seed: u64,
}

fn parse_args() -> Result<Opts, String> {
    let mut positional = Vec::new();
    let mut o = Opts {
        endpoint: String::new(),
        bucket: String::new(),
        key: String::new(),
        part_size: 8 << 20,
        concurrency: 8,
        region: "us-east-1".into(),
        repeat: 1,
        if_match: true,
        probe: false,
        random: 0,
        read_size: 4096,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--part-size" => o.part_size = s3role::cli::parse_size(&value()?)?,
            "--concurrency" => o.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?,
            "--region" => o.region = value()?,
            "--repeat" => o.repeat = value()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            "--no-if-match" => o.if_match = false,
            "--probe" => o.probe = true,
            "--random" => o.random = value()?.parse().map_err(|e| format!("--random: {e}"))?,
            "--read-size" => o.read_size = s3role::cli::parse_size(&value()?)?,
            "--seed" => o.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(a),
        }
    }
    let [endpoint, bucket, key]: [String; 3] = positional
        .try_into()
        .map_err(|p: Vec<String>| format!("expected ENDPOINT BUCKET KEY, got {} arguments", p.len()))?;
    if o.part_size == 0 || o.concurrency == 0 || o.repeat == 0 || o.read_size == 0 {
        return Err("--part-size, --concurrency, --repeat and --read-size must be positive".into());
    }
    (o.endpoint, o.bucket, o.key) = (endpoint, bucket, key);
    Ok(o)
}

/// Drains one ranged GET, returning how many bytes its body had.
async fn fetch(store: &S3Store, key: &str, range: std::ops::Range<u64>, etag: Option<&str>) -> Result<u64, StoreError> {
    let mut body = store.get_range(key, range, etag).await?;
    let mut n = 0u64;
    while let Some(chunk) = body.next_chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

/// `fetch`, failing unless the whole range came back.
async fn fetch_exact(
    store: &S3Store,
    key: &str,
    range: std::ops::Range<u64>,
    etag: Option<&str>,
) -> Result<u64, String> {
    let (first, last, want) = (range.start, range.end - 1, range.end - range.start);
    let n = fetch(store, key, range, etag)
        .await
        .map_err(|e| format!("GET {first}-{last}: {e}"))?;
    if n != want {
        return Err(format!("GET {first}-{last}: {n} bytes instead of {want}"));
    }
    Ok(n)
}

/// One full download: `concurrency` workers take the next part until none is left.
async fn download(store: &Arc<S3Store>, o: &Arc<Opts>, size: u64, etag: &Arc<String>) -> Result<(u64, u64), String> {
    let parts = size.div_ceil(o.part_size);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..o.concurrency.min(parts.max(1) as usize) {
        let (store, o, etag, next) = (store.clone(), o.clone(), etag.clone(), next.clone());
        workers.spawn(async move {
            let mut got = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= parts {
                    return Ok::<u64, String>(got);
                }
                let range = i * o.part_size..((i + 1) * o.part_size).min(size);
                let m = if o.if_match { Some(etag.as_str()) } else { None };
                got += fetch_exact(&store, &o.key, range, m).await?;
            }
        });
    }
    let mut total = 0;
    while let Some(r) = workers.join_next().await {
        total += r.map_err(|e| format!("worker panicked: {e}"))??;
    }
    Ok((total, parts))
}

/// `--random`: one small ranged GET after another at random offsets aligned to the read size.
async fn random_reads(store: &S3Store, o: &Opts, size: u64, etag: &str) -> Result<(), String> {
    let slots = (size / o.read_size).max(1);
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let mut lat = Vec::with_capacity(o.random as usize);
    let t = Instant::now();
    for _ in 0..o.random {
        let start = rng.u64(..slots) * o.read_size;
        let range = start..(start + o.read_size).min(size);
        let t1 = Instant::now();
        let m = if o.if_match { Some(etag) } else { None };
        fetch_exact(store, &o.key, range, m).await?;
        lat.push(t1.elapsed().as_secs_f64() * 1000.0);
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "random_reads={} read_size={} secs={secs:.3} reads_per_s={:.1} p50_ms={:.3} p99_ms={:.3}",
        o.random,
        o.read_size,
        o.random as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

/// Checks what a mount relies on: a ranged GET returns exactly the range, a GET with the
/// current ETag in If-Match succeeds, and one with another ETag fails with 412.
async fn probe(store: &S3Store, key: &str, size: u64, etag: &str) -> Result<(), String> {
    let (a, b) = (size / 3, (size / 3 + 4096).min(size));
    let n = fetch(store, key, a..b, None)
        .await
        .map_err(|e| format!("ranged GET: {e}"))?;
    if n != b - a {
        return Err(format!(
            "ranged GET {a}-{} returned {n} bytes instead of {}",
            b - 1,
            b - a
        ));
    }
    println!("probe: ranged GET bytes={a}-{}: {n} bytes, ok", b - 1);
    let n = fetch(store, key, a..b, Some(etag))
        .await
        .map_err(|e| format!("GET with If-Match: {etag} (the current ETag) failed: {e}"))?;
    if n != b - a {
        return Err(format!(
            "ranged GET with If-Match returned {n} bytes instead of {}",
            b - a
        ));
    }
    println!("probe: ranged GET with If-Match: {etag}: {n} bytes, ok");
    match fetch(store, key, a..b, Some("\"00000000000000000000000000000000\"")).await {
        Err(StoreError::PreconditionFailed { .. }) => {
            println!("probe: GET with a stale If-Match: PreconditionFailed, ok");
            Ok(())
        }
        Err(e) => Err(format!("GET with a stale If-Match failed, but not with 412: {e}")),
        Ok(n) => Err(format!(
            "GET with a stale If-Match returned {n} bytes: the server ignores If-Match"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(e) => {
            if !e.is_empty() {
                eprintln!("direct_get: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (Ok(ak), Ok(sk)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        eprintln!("direct_get: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n{USAGE}");
        return ExitCode::from(2);
    };
    let token = std::env::var("AWS_SESSION_TOKEN").ok();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(o.region.clone()))
        .no_credentials()
        .load()
        .await;
    let creds = SharedCredentialsProvider::new(Credentials::new(ak, sk, token, None, "direct_get"));
    let location = S3Location {
        bucket: o.bucket.clone(),
        endpoint_url: Some(o.endpoint.clone()),
        path_style: true,
        ..S3Location::default()
    };
    let store = Arc::new(S3Store::new(&sdk, creds, &location, None));

    let info = match store.head(&o.key).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("direct_get: HEAD {}: {e}", o.key);
            return ExitCode::FAILURE;
        }
    };
    if o.probe {
        return match probe(&store, &o.key, info.size, &info.etag).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("probe: FAILED: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if o.random > 0 {
        return match random_reads(&store, &o, info.size, &info.etag).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("direct_get: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let etag = Arc::new(info.etag.clone());
    let mut best = 0f64;
    for run in 1..=o.repeat {
        let t = Instant::now();
        let (total, gets) = match download(&store, &o, info.size, &etag).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("direct_get: {e}");
                return ExitCode::FAILURE;
            }
        };
        let secs = t.elapsed().as_secs_f64();
        if total != info.size {
            eprintln!("direct_get: got {total} bytes, HEAD said {}", info.size);
            return ExitCode::FAILURE;
        }
        let mibps = total as f64 / (1 << 20) as f64 / secs;
        best = best.max(mibps);
        println!(
            "run={run} bytes={total} secs={secs:.3} mib_per_s={mibps:.1} gets={gets} part_size={} concurrency={} if_match={}",
            o.part_size, o.concurrency, o.if_match
        );
    }
    if o.repeat > 1 {
        println!("best_mib_per_s={best:.1}");
    }
    ExitCode::SUCCESS
}
