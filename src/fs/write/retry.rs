//! A last close that could not upload its file never drops the bytes. The staging state
//! leaves the namespace (the mount shows what S3 has: the old object, or no file at all) and
//! is retried in the background with backoff, at the key and with the attributes it had,
//! for a configurable time. Whatever this mount does at that key meanwhile (a newer
//! version, a rename onto or from it, an unlink) supersedes it: the user could not see it
//! waiting, so what they did stands. If it still cannot be uploaded, or is superseded, its
//! bytes go to a file in the recovery directory (mode 0600, named in an ERROR log line).
//! `s3role status` shows what waits.

use super::memory::Body;
use super::stream::held_parts;
use super::upload::Target;
use super::{Dirty, Staged, Writes, blocking, staging_error};
use crate::fs::attr::Attr;
use crate::fs::error::FsError;
use crate::fs::lock;
use crate::store::ObjectStore;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A file whose last close could not upload it.
pub(crate) struct Pending {
    /// Its inode, held so the unchanged prefix of its old object can still be found.
    pub(crate) ino: u64,
    /// Where it goes.
    pub(crate) key: String,
    /// The attributes it goes up with.
    pub(crate) attr: Attr,
    staged: Arc<Staged>,
    /// When its upload first failed.
    since: SystemTime,
    /// When its bytes were last written (a newer version at the key supersedes them).
    written: Instant,
    superseded: AtomicBool,
    attempts: AtomicU32,
    last_error: Mutex<String>,
}

impl Pending {
    /// Whether a newer version was written at its key since.
    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}

/// What waits to be uploaded, for `s3role status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingStatus {
    /// Files whose last close could not upload them, being retried.
    pub files: usize,
    /// When the oldest of them first failed.
    pub oldest_failure: Option<SystemTime>,
    /// Files written to the recovery directory since the mount started.
    pub recovered: u64,
    /// Last closes that could not upload their file since the mount started (each went to
    /// the retry queue): what an alert on failing uploads counts.
    pub failed_closes: u64,
}

/// A name for a recovery file: the key, percent-encoded so it is one file name, cut to
/// keep the name under 255 bytes, with the time and a number that make it unique.
fn recovery_name(key: &str, seq: u64) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    let mut encoded: String = percent_encoding::utf8_percent_encode(key, KEEP).to_string();
    if encoded.len() > 200 {
        let mut cut = 200;
        while !encoded.is_char_boundary(cut) {
            cut -= 1;
        }
        encoded.truncate(cut);
    }
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{encoded}.{secs}.{seq}")
}

/// What a recovery file is made of: bytes `0..size` of a staging file (holes read as
/// zeros), then pieces held in memory, by where they start.
struct RecoverySource {
    file: Option<std::fs::File>,
    pieces: Vec<(u64, bytes::Bytes)>,
}

/// Writes `size` bytes from `source` to a new file `name` in `dir` (made 0700 if missing),
/// created 0600 and never through an existing name or a symbolic link.
fn write_recovery_file(dir: &Path, name: &str, source: &RecoverySource, size: u64) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(name);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    out.set_len(size)?;
    if let Some(staging) = &source.file {
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < size {
            let want = ((size - offset) as usize).min(buf.len());
            let n = staging.read_at(&mut buf[..want], offset)?;
            if n == 0 {
                break; // a hole at the end (a truncate that grew the file) reads as zeros
            }
            out.write_all_at(&buf[..n], offset)?;
            offset += n as u64;
        }
    }
    for (at, bytes) in &source.pieces {
        out.write_all_at(bytes, *at)?;
    }
    out.sync_all()?;
    Ok(path)
}

impl<S: ObjectStore> Writes<S> {
    /// The last close of `ino` could not upload it: its staging state leaves the namespace
    /// and is retried in the background. Returns false (nothing done) if a writer came back
    /// meanwhile; that writer's close uploads it.
    pub(super) fn detach(self: &Arc<Self>, ino: u64, staged: &Arc<Staged>, attr: Attr, error: &FsError) -> bool {
        let key = match self.ns.key_of(ino) {
            Ok(key) => key,
            Err(_) => return false,
        };
        {
            let mut files = lock(&self.files);
            let idle =
                staged.writers.load(Ordering::Acquire) == 0 && files.get(&ino).is_some_and(|s| Arc::ptr_eq(s, staged));
            if !idle {
                return false;
            }
            files.remove(&ino);
        }
        self.failed_closes.fetch_add(1, Ordering::Relaxed);
        // The mount now shows what S3 has; the staging state still holds the inode.
        self.ns.expire_attrs(ino);
        let pending = Arc::new(Pending {
            ino,
            key,
            attr,
            staged: staged.clone(),
            since: SystemTime::now(),
            written: Instant::now(),
            superseded: AtomicBool::new(false),
            attempts: AtomicU32::new(1),
            last_error: Mutex::new(error.to_string()),
        });
        tracing::warn!(key = %pending.key, "could not upload the file at its last close; retrying in the background: {error}");
        let id = self.next_pending.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, pending.clone());
        let me = self.clone();
        tokio::spawn(async move { me.retry(id, pending).await });
        true
    }

    /// Retries a pending upload with backoff until it succeeds, is superseded, or the retry
    /// time is over; then it leaves the queue (to the recovery directory if not uploaded).
    async fn retry(self: Arc<Self>, id: u64, p: Arc<Pending>) {
        let mut delay = self.cfg.retry_backoff;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
            if !lock(&self.pending).contains_key(&id) {
                return; // finished by the shutdown
            }
            let mut dirty = p.staged.state.clone().lock_owned().await;
            if !lock(&self.pending).contains_key(&id) {
                return;
            }
            match self.attempt(&p, &mut dirty).await {
                Ok(()) => {
                    self.finish_pending(id, &p, &mut dirty).await;
                    return;
                }
                Err(why) if p.is_superseded() || p.since.elapsed().unwrap_or_default() >= self.cfg.retry_time => {
                    self.recover(id, &p, &mut dirty, &why).await;
                    return;
                }
                Err(_) => {}
            }
        }
    }

    /// One attempt at a pending upload.
    async fn attempt(&self, p: &Pending, dirty: &mut Dirty) -> Result<(), String> {
        if p.is_superseded() {
            return Err("a newer version was written at its key".into());
        }
        match self.upload(Target::Detached(p), &p.staged, dirty).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let n = p.attempts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(key = %p.key, attempts = n, "upload retry failed: {e}");
                *lock(&p.last_error) = e.to_string();
                Err(e.to_string())
            }
        }
    }

    async fn finish_pending(&self, id: u64, p: &Pending, dirty: &mut Dirty) {
        tracing::info!(
            key = %p.key,
            attempts = p.attempts.load(Ordering::Relaxed),
            "uploaded after its last close had failed"
        );
        self.leave_queue(id, p, dirty).await;
    }

    async fn leave_queue(&self, id: u64, p: &Pending, dirty: &mut Dirty) {
        lock(&self.pending).remove(&id);
        self.unreserve(dirty);
        self.ns.let_go(p.ino).await;
    }

    /// Writes a pending upload's bytes to the recovery directory and drops it.
    async fn recover(&self, id: u64, p: &Pending, dirty: &mut Dirty, why: &str) {
        let size = p.staged.size();
        // The unchanged prefix is still the old object's: bring it over if S3 lets us.
        let missing_prefix = if dirty.kept > 0 {
            match self.materialize(p.ino, dirty, size, 0).await {
                Ok(()) => None,
                Err(e) => Some((dirty.kept, e)),
            }
        } else {
            None
        };
        let name = recovery_name(&p.key, self.next_pending.fetch_add(1, Ordering::Relaxed));
        // A file kept in memory: its tail, and parts S3 refused; the parts S3 took wait in
        // its multipart upload, which is left for whoever completes it by hand.
        let mut missing_parts = None;
        let mut pieces = Vec::new();
        if let Some(stream) = &dirty.stream
            && dirty.streamed_only > 0
        {
            let (held, upload_id) = held_parts(stream);
            let held_bytes: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
            pieces.extend(held);
            if held_bytes < dirty.streamed_only {
                missing_parts = Some(upload_id.to_owned());
            }
        }
        let source = match &dirty.body {
            Body::Memory(m) => {
                pieces.push((dirty.streamed_only, bytes::Bytes::copy_from_slice(&m.tail)));
                Ok(RecoverySource { file: None, pieces })
            }
            Body::File(None) => Ok(RecoverySource { file: None, pieces }),
            Body::File(Some(file)) => file
                .try_clone()
                .map(|f| RecoverySource { file: Some(f), pieces })
                .map_err(staging_error),
        };
        let written = match source {
            Ok(source) => {
                let dir = self.cfg.recovery_dir.clone();
                blocking(move || write_recovery_file(&dir, &name, &source, size)).await
            }
            Err(e) => Err(e),
        };
        if let Some(upload_id) = &missing_parts {
            tracing::error!(
                key = %p.key,
                upload_id = %upload_id,
                "bytes of this file that went up as parts are only in multipart upload {upload_id} at {}; the recovery file has zeros there",
                p.key
            );
        }
        match written {
            Ok(path) => {
                self.recovered.fetch_add(1, Ordering::Relaxed);
                // Every byte is in the recovery file: the upload that held some of them goes.
                if missing_parts.is_none() {
                    self.abandon_stream(dirty);
                }
                match missing_prefix {
                    None => tracing::error!(
                        key = %p.key,
                        file = %path.display(),
                        "could not upload the file ({why}); its {size} bytes are in {}",
                        path.display()
                    ),
                    Some((kept, e)) => tracing::error!(
                        key = %p.key,
                        file = %path.display(),
                        "could not upload the file ({why}); its bytes are in {}, except bytes 0..{kept}, which are those of the object it replaced and could not be read ({e})",
                        path.display()
                    ),
                }
            }
            Err(e) => tracing::error!(
                key = %p.key,
                dir = %self.cfg.recovery_dir.display(),
                "could not upload the file ({why}) nor write it to the recovery directory ({e}); its changes are lost"
            ),
        }
        self.leave_queue(id, p, dirty).await;
    }

    /// A newer version of `key` was just written by `target`: retried uploads of older bytes
    /// at that key must not overwrite it.
    pub(super) fn supersede_older(&self, key: &str, target: Target<'_>) {
        let newer_than = match target {
            Target::Inode(_) => Instant::now(),
            Target::Detached(p) => p.written,
        };
        self.supersede(newer_than, |at| at == key);
    }

    /// This mount just changed what is at `key` by other means than an upload: put or
    /// copied an object there (a symlink, a rename onto it), or deleted or moved away the
    /// one there (an unlink, a rename from it). A file whose close failed does not show in
    /// the namespace while it waits, so whoever did this could not see it: what they did
    /// stands, and the older bytes go to the recovery directory instead of over it (or,
    /// after an unlink, instead of being deleted with the object they replaced).
    pub fn changed_at(&self, key: &str) {
        self.supersede(Instant::now(), |at| at == key);
    }

    /// The same for every key under `prefix`: a directory renamed from or onto it.
    pub fn changed_under(&self, prefix: &str) {
        self.supersede(Instant::now(), |at| at.starts_with(prefix));
    }

    /// Whether a file whose close failed waits to be uploaded at `key`.
    pub fn retried_at(&self, key: &str) -> bool {
        lock(&self.pending).values().any(|p| p.key == key)
    }

    /// Marks superseded the retried uploads at the keys `at` accepts whose bytes were
    /// written before `newer_than`.
    fn supersede(&self, newer_than: Instant, at: impl Fn(&str) -> bool) {
        for p in lock(&self.pending).values() {
            if at(&p.key) && p.written < newer_than {
                p.superseded.store(true, Ordering::Release);
            }
        }
    }

    /// Files waiting for a retried upload, the oldest failure, and files recovered.
    pub fn pending_status(&self) -> PendingStatus {
        let pending = lock(&self.pending);
        PendingStatus {
            files: pending.len(),
            oldest_failure: pending.values().map(|p| p.since).min(),
            recovered: self.recovered.load(Ordering::Relaxed),
            failed_closes: self.failed_closes.load(Ordering::Relaxed),
        }
    }

    /// At unmount: each pending upload gets attempts until `deadline`, then goes to the
    /// recovery directory.
    pub(super) async fn drain_pending(&self, deadline: Instant) {
        loop {
            let all: Vec<(u64, Arc<Pending>)> = lock(&self.pending).iter().map(|(i, p)| (*i, p.clone())).collect();
            if all.is_empty() {
                return;
            }
            let last_round = Instant::now() >= deadline;
            for (id, p) in all {
                let mut dirty = p.staged.state.clone().lock_owned().await;
                if !lock(&self.pending).contains_key(&id) {
                    continue;
                }
                match self.attempt(&p, &mut dirty).await {
                    Ok(()) => self.finish_pending(id, &p, &mut dirty).await,
                    Err(why) if last_round || p.is_superseded() => {
                        self.recover(id, &p, &mut dirty, &format!("{why}; the mount is stopping"))
                            .await
                    }
                    Err(_) => {}
                }
            }
            if !last_round && !lock(&self.pending).is_empty() {
                tokio::time::sleep(
                    self.cfg
                        .retry_backoff
                        .min(deadline.saturating_duration_since(Instant::now())),
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_names_are_one_file_name_under_255_bytes() {
        let name = recovery_name("logs/app/2026/x y.log", 7);
        assert!(name.starts_with("logs%2Fapp%2F2026%2Fx%20y.log."), "{name}");
        assert!(name.ends_with(".7"));
        let long = "d/".repeat(400);
        let name = recovery_name(&long, 1);
        assert!(name.len() < 255 && !name.contains('/'), "{name}");
    }

    #[test]
    fn a_recovery_file_is_private_and_never_follows_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let staging = tempfile::tempfile().unwrap();
        staging.write_all_at(b"hello", 0).unwrap();
        let out = dir.path().join("rec");
        let source = RecoverySource {
            file: Some(staging.try_clone().unwrap()),
            pieces: vec![(6, bytes::Bytes::from_static(b"!"))],
        };
        let path = write_recovery_file(&out, "k.1.1", &source, 8).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\0!\0");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
        std::os::unix::fs::symlink("/etc/passwd", out.join("link")).unwrap();
        assert!(write_recovery_file(&out, "link", &source, 5).is_err());
    }
}
