//! What the filesystem core itself costs per byte, without FUSE, a network or a server: a
//! sequential read and a sequential write of SIZE_MIB through `Fs` on the in-memory store, in
//! the kernel's 1 MiB requests. Run it under `valgrind --tool=callgrind` (instruction counts
//! are repeatable whatever else the machine does) to compare two builds or settings:
//!
//!   cargo build --release --example core_cost
//!   BLOCK_KIB=64 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!       target/release/examples/core_cost read
//!
//! Settings (environment): SIZE_MIB=256, BLOCK_KIB (the cache block size), PART_MIB=8.

use bytes::Bytes;
use s3role::fs::{Fs, FsConfig, ROOT_INO};
use s3role::store::mem::MemStore;
use std::sync::Arc;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let what = std::env::args().nth(1).unwrap_or_else(|| "read".into());
    let size = setting("SIZE_MIB", 256) << 20;
    let mut cfg = FsConfig {
        part_size: setting("PART_MIB", 8) << 20,
        recovery_dir: std::env::temp_dir().join("s3role-core-cost"),
        ..FsConfig::default()
    };
    if let Some(kib) = std::env::var("BLOCK_KIB").ok().and_then(|v| v.parse::<u64>().ok()) {
        cfg.block_size = kib << 10;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = Arc::new(MemStore::new());
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        match what.as_str() {
            "read" => {
                store.put("object", vec![7u8; size as usize], Default::default());
                let fs = Fs::new(store, cfg);
                let attr = fs.lookup(ROOT_INO, "object").await?;
                let (fh, _) = fs.open(attr.ino, false, false).await?;
                let mut offset = 0;
                while offset < size {
                    let got = fs.read(fh, offset, 1 << 20).await?;
                    offset += got.len() as u64;
                }
                fs.release(fh).await;
                println!("read {} MiB, block {} KiB", size >> 20, fs.config().block_size >> 10);
            }
            "write" => {
                let fs = Fs::new(store, cfg);
                let (_, fh) = fs.create(ROOT_INO, "object", 0o644, 0, 0).await?;
                let mut offset = 0;
                while offset < size {
                    fs.write(fh, offset, chunk.clone()).await?;
                    offset += chunk.len() as u64;
                }
                fs.flush(fh).await?;
                fs.release(fh).await;
                println!("wrote {} MiB", size >> 20);
            }
            other => return Err(format!("unknown workload {other}: read or write").into()),
        }
        Ok(())
    })
}
