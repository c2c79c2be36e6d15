//! Helpers for the core's tests: a read-write filesystem over the in-memory store, and
//! path-level operations the way a program would do them.

use super::*;
use crate::store::mem::MemStore;
use bytes::Bytes;
use std::collections::BTreeSet;

pub(super) fn fs_rw(store: Arc<MemStore>) -> Arc<Fs<MemStore>> {
    fs_rw_with(store, |_| {})
}

/// Like [`fs_rw`], with some settings changed.
pub(super) fn fs_rw_with(store: Arc<MemStore>, change: impl FnOnce(&mut FsConfig)) -> Arc<Fs<MemStore>> {
    let mut cfg = FsConfig {
        defaults: Defaults {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
        },
        block_size: 256 << 10,
        max_request: 1 << 20,
        part_size: 5 << 20,
        upload_concurrency: 4,
        metadata_ttl: std::time::Duration::from_secs(60),
        recovery_dir: std::env::temp_dir().join(format!("s3role-test-recovery-{}", std::process::id())),
        ..FsConfig::default()
    };
    change(&mut cfg);
    Fs::new(store, cfg)
}

/// Looks up a path from the root; `Err(ENOENT)` if any part is missing.
pub(super) async fn find(fs: &Arc<Fs<MemStore>>, path: &str) -> Result<Attr, FsError> {
    let mut attr = fs.getattr(ROOT_INO).await?;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        attr = fs.lookup(attr.ino, seg).await?;
    }
    Ok(attr)
}

pub(super) async fn parent_of(fs: &Arc<Fs<MemStore>>, path: &str) -> (u64, String) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (find(fs, dir).await.expect("parent").ino, name.to_owned())
}

/// open (creating if needed), pwrite, close.
pub(super) async fn write_at(
    fs: &Arc<Fs<MemStore>>,
    path: &str,
    offset: u64,
    data: &[u8],
    truncate: bool,
) -> Result<(), FsError> {
    let fh = match find(fs, path).await {
        Ok(a) => fs.open(a.ino, true, truncate).await?.0,
        Err(FsError::NotFound) => {
            let (parent, name) = parent_of(fs, path).await;
            fs.create(parent, &name, 0o644, 1000, 1000).await?.1
        }
        Err(e) => return Err(e),
    };
    let written = fs.write(fh, offset, Bytes::copy_from_slice(data)).await;
    let flushed = fs.flush(fh).await;
    fs.release(fh).await;
    written.map(|_| ())?;
    flushed
}

pub(super) async fn read(fs: &Arc<Fs<MemStore>>, path: &str) -> Result<Vec<u8>, FsError> {
    let a = find(fs, path).await?;
    let (fh, _) = fs.open(a.ino, false, false).await?;
    let mut out = Vec::new();
    loop {
        let d = fs.read(fh, out.len() as u64, 1 << 20).await?;
        if d.is_empty() {
            break;
        }
        out.extend_from_slice(&d);
    }
    fs.release(fh).await;
    Ok(out)
}

pub(super) async fn ls(fs: &Arc<Fs<MemStore>>, path: &str) -> BTreeSet<String> {
    let ino = find(fs, path).await.expect("dir").ino;
    let fh = fs.opendir(ino).await.expect("opendir");
    let items = fs.readdir_all(fh, 0).expect("readdir");
    fs.releasedir(fh);
    items.into_iter().skip(2).map(|i| i.name).collect()
}
