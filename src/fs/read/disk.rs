//! The disk cache (`--cache-dir`): blocks read from S3 kept on local disk across remounts
//! and reboots, so data read yesterday comes from local disk today. It sits behind the
//! memory block cache, is bounded in bytes, and evicts the least recently used block first.
//!
//! A block is filed under the identity of the object it came from (key, ETag and size), so
//! an object changed in S3 by anyone has a new identity and is never served from old blocks.
//! Each file carries a header with that identity, the block's index and length and a CRC32C
//! of its bytes: a file cut short or damaged on disk is found out, deleted and fetched again,
//! never returned. Files are written under a temporary name and renamed into place, so a
//! crash leaves either a whole file or a temporary one that the next mount deletes.
//!
//! One mount at a time: the directory is locked (flock) for the life of the daemon, and a
//! second mount on it is refused with a message naming the first. The directory is made 0700
//! and the files 0600, since they hold object contents; a directory that belongs to another
//! user is refused.
//!
//! Every call here touches the disk: call them off the async workers.

use bytes::Bytes;
use lru::LruCache;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The first bytes of every cache file, with the format's version.
const MAGIC: &[u8; 8] = b"S3ROLEC1";
/// Magic, identity, block index, length, CRC32C.
const HEADER: usize = 8 + 16 + 8 + 4 + 4;

/// Which bytes a block holds: one object, at one ETag and size.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ObjectIdentity([u8; 16]);

impl ObjectIdentity {
    /// The identity of the object at `key` with `etag` and `size`: the first 16 bytes of a
    /// SHA-256 of the three, so names on disk say nothing of the key.
    pub fn of(key: &str, etag: &str, size: u64) -> Self {
        let mut hash = aws_smithy_checksums::ChecksumAlgorithm::Sha256.into_impl();
        hash.update(key.as_bytes());
        hash.update(&[0]);
        hash.update(etag.as_bytes());
        hash.update(&[0]);
        hash.update(&size.to_le_bytes());
        let digest = hash.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ObjectIdentity(id)
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ObjectIdentity(id))
    }
}

/// What the disk cache has done since the mount started, for `s3role status`.
#[derive(Debug, Default)]
pub struct DiskStats {
    /// Blocks read from disk instead of S3.
    pub hits: AtomicU64,
    /// Blocks looked for and not there.
    pub misses: AtomicU64,
    /// Files found damaged or cut short, deleted and fetched again.
    pub corrupt: AtomicU64,
    /// Blocks written.
    pub written: AtomicU64,
}

/// The blocks on disk, least recently used first, with their sizes on disk.
struct Index {
    blocks: LruCache<(ObjectIdentity, u64), u64>,
    bytes: u64,
}

/// Blocks kept on local disk, shared by every reader of one mount.
pub struct DiskCache {
    /// Where the block files are (`DIR/blocks`).
    blocks_dir: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    /// Held open, and locked, for the life of the mount.
    _lock: File,
    /// Hits, misses, damaged files, writes.
    pub stats: DiskStats,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("blocks_dir", &self.blocks_dir)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn lock_index(m: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn crc32c(data: &[u8]) -> [u8; 4] {
    let mut crc = aws_smithy_checksums::ChecksumAlgorithm::Crc32c.into_impl();
    crc.update(data);
    let sum = crc.finalize();
    let mut out = [0u8; 4];
    out.copy_from_slice(&sum[..4]);
    out
}

impl DiskCache {
    /// Opens (or makes) the cache in `dir`, at most `limit` bytes, for the mount `holder`
    /// describes (named to a second mount that tries the same directory). Fails with a
    /// sentence for the user if the directory cannot be used.
    pub fn open(dir: &Path, limit: u64, holder: &str) -> Result<DiskCache, String> {
        let shown = dir.display();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot make the cache directory {shown}: {e}"))?;
        let meta = std::fs::metadata(dir).map_err(|e| format!("cannot use the cache directory {shown}: {e}"))?;
        if !meta.is_dir() {
            return Err(format!("the cache directory {shown} is not a directory"));
        }
        // SAFETY: geteuid cannot fail and touches no memory.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "the cache directory {shown} belongs to uid {}, not to the user mounting (uid {me}); cached objects must be readable by this user only, so give a directory of your own",
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            tracing::warn!(dir = %shown, "the cache directory was open to other users; it is now 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot make the cache directory {shown} private: {e}"))?;
        }
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join("lock"))
            .map_err(|e| format!("cannot lock the cache directory {shown}: {e}"))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut first = String::new();
            let _ = lock.read_to_string(&mut first);
            let first = if first.trim().is_empty() {
                "another mount".to_owned()
            } else {
                first.trim().to_owned()
            };
            return Err(format!(
                "the cache directory {shown} is in use by {first}; each mount needs a --cache-dir of its own"
            ));
        }
        lock.set_len(0)
            .and_then(|()| lock.write_all_at(holder.as_bytes(), 0))
            .map_err(|e| format!("cannot write to the cache directory {shown}: {e}"))?;
        let blocks_dir = dir.join("blocks");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&blocks_dir)
            .map_err(|e| format!("cannot make {}: {e}", blocks_dir.display()))?;
        let cache = DiskCache {
            blocks_dir,
            limit,
            index: Mutex::new(Index {
                blocks: LruCache::unbounded(),
                bytes: 0,
            }),
            _lock: lock,
            stats: DiskStats::default(),
        };
        cache.load_index();
        Ok(cache)
    }

    /// Reads what the disk holds into the index, oldest use first, deletes temporary files
    /// a crash left, and evicts down to the limit (it may have been lowered).
    fn load_index(&self) {
        let mut found: Vec<(SystemTime, ObjectIdentity, u64, u64)> = Vec::new();
        let Ok(subdirs) = std::fs::read_dir(&self.blocks_dir) else {
            return;
        };
        for sub in subdirs.flatten() {
            let Ok(files) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let parsed = name.to_str().and_then(|n| {
                    let (id, index) = n.split_once('.')?;
                    Some((ObjectIdentity::from_hex(id)?, index.parse::<u64>().ok()?))
                });
                let meta = file.metadata();
                match (parsed, meta) {
                    (Some((id, index)), Ok(meta)) if meta.is_file() => {
                        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        found.push((used, id, index, meta.len()));
                    }
                    _ => {
                        let _ = std::fs::remove_file(file.path());
                    }
                }
            }
        }
        found.sort_by_key(|f| f.0);
        {
            let mut index = lock_index(&self.index);
            for (_, id, block, len) in found {
                index.blocks.put((id, block), len);
                index.bytes += len;
            }
        }
        self.evict();
    }

    fn path(&self, id: ObjectIdentity, index: u64) -> PathBuf {
        let hex = id.hex();
        self.blocks_dir.join(&hex[..2]).join(format!("{hex}.{index}"))
    }

    /// Whether block `index` of `id` is on disk (as far as the index knows).
    pub fn contains(&self, id: ObjectIdentity, index: u64) -> bool {
        lock_index(&self.index).blocks.contains(&(id, index))
    }

    /// Block `index` of `id`, if the disk holds it intact. A damaged file is deleted.
    pub fn get(&self, id: ObjectIdentity, index: u64) -> Option<Bytes> {
        if lock_index(&self.index).blocks.get(&(id, index)).is_none() {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match self.read_file(id, index) {
            Ok(data) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(data)
            }
            Err(why) => {
                self.stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %self.path(id, index).display(), "a disk cache file is damaged ({why}); it is deleted and the block fetched again");
                self.forget(id, index);
                None
            }
        }
    }

    fn read_file(&self, id: ObjectIdentity, index: u64) -> Result<Bytes, String> {
        let mut file = File::open(self.path(id, index)).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        if buf.len() < HEADER || &buf[..8] != MAGIC {
            return Err("no header".into());
        }
        if buf[8..24] != id.0 || buf[24..32] != index.to_le_bytes() {
            return Err("it holds another block".into());
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&buf[32..36]);
        if u32::from_le_bytes(len) as usize != buf.len() - HEADER {
            return Err(format!(
                "{} bytes where the header says {}",
                buf.len() - HEADER,
                u32::from_le_bytes(len)
            ));
        }
        if buf[36..40] != crc32c(&buf[HEADER..]) {
            return Err("its CRC32C does not match".into());
        }
        // Its time of last use, for the order of eviction after a remount.
        let _ = file.set_modified(SystemTime::now());
        Ok(Bytes::from(buf).slice(HEADER..))
    }

    /// Keeps block `index` of `id`, evicting the least recently used blocks past the limit.
    /// A failure to write costs only the cache: it is logged and forgotten.
    pub fn put(&self, id: ObjectIdentity, index: u64, data: &[u8]) {
        let size = (HEADER + data.len()) as u64;
        if size > self.limit || self.contains(id, index) {
            return;
        }
        if let Err(e) = self.write_file(id, index, data) {
            tracing::warn!(dir = %self.blocks_dir.display(), "could not write to the disk cache: {e}");
            return;
        }
        self.stats.written.fetch_add(1, Ordering::Relaxed);
        {
            let mut idx = lock_index(&self.index);
            if idx.blocks.put((id, index), size).is_none() {
                idx.bytes += size;
            }
        }
        self.evict();
    }

    fn write_file(&self, id: ObjectIdentity, index: u64, data: &[u8]) -> std::io::Result<()> {
        let path = self.path(id, index);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        let tmp = path.with_extension(format!("{index}-{:016x}.tmp", fastrand::u64(..)));
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&id.0);
        header.extend_from_slice(&index.to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        header.extend_from_slice(&crc32c(data));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&header)?;
                f.write_all(data)
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Drops a block from the index and the disk.
    fn forget(&self, id: ObjectIdentity, index: u64) {
        {
            let mut idx = lock_index(&self.index);
            if let Some(size) = idx.blocks.pop(&(id, index)) {
                idx.bytes -= size;
            }
        }
        let _ = std::fs::remove_file(self.path(id, index));
    }

    /// Deletes least recently used blocks until the cache is within its limit.
    fn evict(&self) {
        let victims: Vec<(ObjectIdentity, u64)> = {
            let mut idx = lock_index(&self.index);
            let mut out = Vec::new();
            while idx.bytes > self.limit {
                let Some(((id, index), size)) = idx.blocks.pop_lru() else {
                    break;
                };
                idx.bytes -= size;
                out.push((id, index));
            }
            out
        };
        for (id, index) in victims {
            let _ = std::fs::remove_file(self.path(id, index));
        }
    }

    /// Bytes the cache holds on disk (headers included).
    pub fn bytes(&self) -> u64 {
        lock_index(&self.index).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectIdentity {
        ObjectIdentity::of(&format!("key{n}"), "\"etag\"", 100)
    }

    #[test]
    fn blocks_survive_a_reopen_and_stay_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let block = vec![7u8; 1000];
        {
            let cache = DiskCache::open(dir.path(), 10 * (HEADER as u64 + 1000), "test").unwrap();
            for n in 0..15u64 {
                cache.put(id(1), n, &block);
            }
            assert!(cache.bytes() <= 10 * (HEADER as u64 + 1000));
            assert!(cache.get(id(1), 0).is_none(), "the oldest went first");
            assert_eq!(cache.get(id(1), 14).as_deref(), Some(&block[..]));
        }
        let cache = DiskCache::open(dir.path(), 5 * (HEADER as u64 + 1000), "test").unwrap();
        assert!(
            cache.bytes() <= 5 * (HEADER as u64 + 1000),
            "a lower limit evicts at once"
        );
        assert_eq!(
            cache.get(id(1), 14).as_deref(),
            Some(&block[..]),
            "still there after a reopen"
        );
        assert!(
            cache.get(id(2), 14).is_none(),
            "another object's block is another block"
        );
    }

    #[test]
    fn a_damaged_or_cut_file_is_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 1 << 20, "test").unwrap();
        let block: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        cache.put(id(1), 0, &block);
        cache.put(id(1), 1, &block);
        let flip = cache.path(id(1), 0);
        let mut bytes = std::fs::read(&flip).unwrap();
        bytes[HEADER + 100] ^= 1;
        std::fs::write(&flip, &bytes).unwrap();
        let cut = cache.path(id(1), 1);
        let bytes = std::fs::read(&cut).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
        assert!(cache.get(id(1), 0).is_none());
        assert!(cache.get(id(1), 1).is_none());
        assert_eq!(cache.stats.corrupt.load(Ordering::Relaxed), 2);
        assert!(!flip.exists() && !cut.exists(), "damaged files are deleted");
        cache.put(id(1), 0, &block);
        assert_eq!(cache.get(id(1), 0).as_deref(), Some(&block[..]), "and fetched again");
    }

    #[test]
    fn a_second_mount_on_the_directory_is_refused_and_told_who_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DiskCache::open(dir.path(), 1 << 20, "the mount at /data (pid 42)").unwrap();
        let err = DiskCache::open(dir.path(), 1 << 20, "the mount at /other").unwrap_err();
        assert!(err.contains("in use by the mount at /data (pid 42)"), "{err}");
        drop(first);
        DiskCache::open(dir.path(), 1 << 20, "the mount at /other").expect("free once the first is gone");
    }

    #[test]
    fn the_directory_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = DiskCache::open(&path, 1 << 20, "test").unwrap();
        cache.put(id(1), 0, b"secret");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&cache.path(id(1), 0)), 0o600);
        assert_eq!(mode(&path.join("lock")), 0o600);
    }
}
