//! Baseline for `ls -l` in `scripts/bench-peers.sh`: lists a prefix through s3role's own
//! store layer (`S3Store`, the same client settings a mount uses), then sends a HEAD for
//! every key with `--concurrency` in flight, and prints both rates. What a mount that shows
//! POSIX metadata must do per entry is that HEAD, so `heads_per_s` is the ceiling for its
//! `ls -l` on this server.
//!
//! ```text
//! AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. \
//!   cargo run --release --example direct_list -- ENDPOINT BUCKET PREFIX [--concurrency 32]
//! ```

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use s3role::store::ObjectStore;
use s3role::store::s3::{S3Location, S3Store};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const USAGE: &str = "usage: direct_list ENDPOINT BUCKET PREFIX [--concurrency N] [--region REGION]
credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set)";

async fn run(
    endpoint: String,
    bucket: String,
    prefix: String,
    concurrency: usize,
    region: String,
) -> Result<(), String> {
    let (Ok(ak), Ok(sk)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        return Err("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
    };
    let token = std::env::var("AWS_SESSION_TOKEN").ok();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .no_credentials()
        .load()
        .await;
    let creds = SharedCredentialsProvider::new(Credentials::new(ak, sk, token, None, "direct_list"));
    let location = S3Location {
        bucket,
        endpoint_url: Some(endpoint),
        path_style: true,
        ..S3Location::default()
    };
    let store = Arc::new(S3Store::new(&sdk, creds, &location, None));
    let start = Instant::now();
    let mut keys = Vec::new();
    let mut continuation = None;
    loop {
        let page = store
            .list_page(&prefix, Some("/"), continuation, None)
            .await
            .map_err(|e| format!("ListObjectsV2: {e}"))?;
        keys.extend(page.objects.into_iter().map(|o| o.key));
        continuation = page.next;
        if continuation.is_none() {
            break;
        }
    }
    let listed = start.elapsed().as_secs_f64();
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (store, keys, next) = (store.clone(), keys.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i) else {
                    return Ok::<(), String>(());
                };
                store.head(key).await.map_err(|e| format!("HEAD {key}: {e}"))?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let total = start.elapsed().as_secs_f64();
    let n = keys.len() as f64;
    println!(
        "entries={} list_secs={listed:.3} list_entries_per_s={:.1} total_secs={total:.3} entries_per_s={:.1} heads_per_s={:.1} concurrency={concurrency}",
        keys.len(),
        n / listed,
        n / total,
        n / (total - listed)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut positional = Vec::new();
    let (mut concurrency, mut region) = (32usize, "us-east-1".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--concurrency" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => concurrency = n,
                _ => {
                    eprintln!("--concurrency needs a positive number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--region" => region = args.next().unwrap_or(region),
            _ => positional.push(a),
        }
    }
    let Ok([endpoint, bucket, prefix]) = <[String; 3]>::try_from(positional) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(endpoint, bucket, prefix, concurrency, region).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("direct_list: {e}");
            ExitCode::FAILURE
        }
    }
}
