//! Baseline for `scripts/bench-write.sh`: uploads N MiB as one object with a parallel
//! multipart upload through s3role's own store layer (the client settings a mount uses),
//! from memory, and prints the throughput. Comparing a sequential write through a mount
//! with this shows what the FUSE and staging path costs on top of the S3 client. Its parts
//! carry the same checksum as a mount's (`--upload-checksum`, default crc32c).
//!
//! ```text
//! AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. \
//!   cargo run --release --example direct_put -- ENDPOINT BUCKET KEY MIB [--part-size 8M] [--concurrency 8] \
//!     [--upload-checksum crc32c|signed-payload]
//! ```
//! Prints one line of `name=value` pairs; `mib_per_s=...` is the figure to compare, and
//! `cpu_s_per_gib=...` (user + system CPU of this process during the upload, per GiB) what
//! the client spends, which unlike throughput does not depend on what else the machine runs.

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use s3role::store::s3::{S3Location, S3Store, UploadChecksum};
use s3role::store::{NewObject, ObjectStore};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

fn arg_after(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// User + system CPU seconds this process has used so far (every thread).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!(
            "usage: direct_put ENDPOINT BUCKET KEY MIB [--part-size BYTES] [--concurrency N] [--upload-checksum crc32c|signed-payload]"
        );
        return ExitCode::FAILURE;
    }
    let (endpoint, bucket, key) = (args[0].clone(), args[1].clone(), args[2].clone());
    let Ok(mib) = args[3].parse::<u64>() else {
        eprintln!("MIB must be a number");
        return ExitCode::FAILURE;
    };
    let part_size = arg_after(&args, "--part-size")
        .and_then(|s| s3role::cli::parse_size(&s).ok())
        .unwrap_or(8 << 20);
    let concurrency = arg_after(&args, "--concurrency")
        .and_then(|s| s.parse().ok())
        .unwrap_or(8usize);
    let checksum = match arg_after(&args, "--upload-checksum").map(|s| s.parse::<UploadChecksum>()) {
        None => UploadChecksum::default(),
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("--upload-checksum: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(ak), Ok(sk)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        eprintln!("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        return ExitCode::FAILURE;
    };
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .no_credentials()
        .load()
        .await;
    let location = S3Location {
        bucket,
        endpoint_url: Some(endpoint),
        path_style: true,
        ..S3Location::default()
    };
    let creds = SharedCredentialsProvider::new(Credentials::new(ak, sk, None, None, "bench"));
    let store = Arc::new(S3Store::new(&sdk, creds, &location, None).with_upload_checksum(checksum));

    // The data, made before the clock starts (the mount's source is a file in tmpfs).
    let total = mib << 20;
    let part: Vec<u8> = (0..part_size).map(|i| (i % 251) as u8).collect();
    let part = Bytes::from(part);
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let result: Result<(), String> = async {
        let upload_id = store
            .create_multipart(&key, &NewObject::default())
            .await
            .map_err(|e| e.to_string())?;
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let parts_n = total.div_ceil(part_size);
        for n in 0..parts_n {
            let len = (total - n * part_size).min(part_size) as usize;
            let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            let (store, key, upload_id, body) = (store.clone(), key.clone(), upload_id.clone(), part.slice(..len));
            tasks.spawn(async move {
                let _permit = permit;
                store.upload_part(&key, &upload_id, n as i32 + 1, body).await
            });
        }
        let mut parts = Vec::new();
        while let Some(r) = tasks.join_next().await {
            parts.push(r.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?);
        }
        parts.sort_by_key(|p| p.number);
        store
            .complete_multipart(&key, &upload_id, parts)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("direct_put: {e}");
        return ExitCode::FAILURE;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    println!(
        "bytes={total} seconds={secs:.3} mib_per_s={:.1} cpu_s={cpu:.3} cpu_s_per_gib={:.3} part_size={part_size} concurrency={concurrency} upload_checksum={}",
        mib as f64 / secs,
        cpu / (total as f64 / f64::from(1u32 << 30)),
        checksum.name()
    );
    ExitCode::SUCCESS
}
