//! A mount's figures at one moment, asked of their owners (the renewal task, the caches,
//! the uploads): what `s3role status` prints and what the metrics exporter publishes, read
//! in one place so the two never disagree.

use crate::creds::{CredentialSlot, SessionStatus};
use crate::fs::{Fs, PendingStatus};
use crate::store::ObjectStore;
use std::time::SystemTime;

/// The disk cache's figures, when the mount has one.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskCacheFigures {
    /// Bytes held on disk.
    pub bytes: u64,
    /// Blocks served from disk.
    pub hits: u64,
    /// Blocks the disk lacked.
    pub misses: u64,
    /// Damaged files found (and fetched again).
    pub damaged: u64,
}

/// Everything a mount reports about itself, read once.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// The role session, as the renewal task sees it.
    pub session: SessionStatus,
    /// Bytes in the in-memory block cache.
    pub cache_bytes: u64,
    /// Blocks served from the block cache.
    pub cache_hits: u64,
    /// Blocks fetched.
    pub cache_misses: u64,
    /// The disk cache, if there is one.
    pub disk_cache: Option<DiskCacheFigures>,
    /// Bytes on disk in whole copies of files read at random (`--fill-limit`).
    pub copy_bytes: u64,
    /// Bytes fetched into those copies.
    pub copy_fetched_bytes: u64,
    /// Reads served from them.
    pub copy_reads: u64,
    /// Files with changes not yet uploaded, and files open for writing.
    pub uploads_in_flight: usize,
    /// Failed uploads retried in the background, and files recovered.
    pub pending: PendingStatus,
    /// Last closes that could not upload their file.
    pub upload_failures: u64,
    /// Bytes in staging files.
    pub staged_bytes: u64,
    /// Bytes of upload parts in memory.
    pub upload_buffer_bytes: u64,
    /// Files open through the mount.
    pub open_files: usize,
    /// Inodes the mount knows.
    pub inodes: usize,
    /// Objects whose attributes are cached.
    pub cached_attributes: usize,
    /// Directories whose listings are cached.
    pub cached_listings: usize,
    /// Heap bytes in use, where the allocator says.
    pub heap_in_use: Option<u64>,
}

impl Figures {
    /// Asks every owner of `fs` and `slot` for its figures now.
    pub fn read<S: ObjectStore>(fs: &Fs<S>, slot: &CredentialSlot) -> Figures {
        let (cache_hits, cache_misses) = fs.cache_hits_misses();
        let (cached_attributes, cached_listings) = fs.metadata_cache_sizes();
        let pending = fs.pending_status();
        let (copy_bytes, copy_fetched_bytes, copy_reads) = fs.copy_figures();
        Figures {
            copy_bytes,
            copy_fetched_bytes,
            copy_reads,
            session: slot.status(),
            cache_bytes: fs.cached_bytes(),
            cache_hits,
            cache_misses,
            disk_cache: fs
                .disk_cache_stats()
                .map(|(bytes, hits, misses, damaged)| DiskCacheFigures {
                    bytes,
                    hits,
                    misses,
                    damaged,
                }),
            uploads_in_flight: fs.pending_files(),
            upload_failures: pending.failed_closes,
            pending,
            staged_bytes: fs.staged_bytes(),
            upload_buffer_bytes: fs.upload_memory().0,
            open_files: fs.open_files(),
            inodes: fs.inode_count(),
            cached_attributes,
            cached_listings,
            heap_in_use: crate::heap::in_use(),
        }
    }

    /// The lines of `s3role status` that come from these figures, in its order (the mount's
    /// fixed facts, source and endpoint, come before them).
    pub fn status_pairs(&self) -> Vec<(String, String)> {
        let time = |t: Option<SystemTime>| t.map(crate::timefmt::rfc3339).unwrap_or_else(|| "-".into());
        let s = &self.session;
        let rate = if self.cache_hits + self.cache_misses == 0 {
            "-".to_owned()
        } else {
            format!(
                "{:.3}",
                self.cache_hits as f64 / (self.cache_hits + self.cache_misses) as f64
            )
        };
        let disk = |f: fn(&DiskCacheFigures) -> u64| self.disk_cache.as_ref().map_or("-".into(), |d| f(d).to_string());
        vec![
            ("role_chain".into(), s.chain.clone()),
            (
                "session_name".into(),
                s.session_name.clone().unwrap_or_else(|| "-".into()),
            ),
            ("expiry".into(), time(s.expiry)),
            ("last_renewal".into(), time(s.last_renewal)),
            ("renewals".into(), s.renewals.to_string()),
            ("last_error".into(), s.last_error.clone().unwrap_or_else(|| "-".into())),
            ("cache_bytes".into(), self.cache_bytes.to_string()),
            ("cache_hit_rate".into(), rate),
            ("disk_cache_bytes".into(), disk(|d| d.bytes)),
            ("disk_cache_hits".into(), disk(|d| d.hits)),
            ("disk_cache_misses".into(), disk(|d| d.misses)),
            ("disk_cache_damaged".into(), disk(|d| d.damaged)),
            ("copy_bytes".into(), self.copy_bytes.to_string()),
            ("copy_fetched_bytes".into(), self.copy_fetched_bytes.to_string()),
            ("copy_reads".into(), self.copy_reads.to_string()),
            ("uploads_in_flight".into(), self.uploads_in_flight.to_string()),
            ("uploads_retrying".into(), self.pending.files.to_string()),
            ("upload_failures".into(), self.upload_failures.to_string()),
            ("oldest_upload_failure".into(), time(self.pending.oldest_failure)),
            ("recovered_files".into(), self.pending.recovered.to_string()),
            ("staged_bytes".into(), self.staged_bytes.to_string()),
            ("upload_buffer_bytes".into(), self.upload_buffer_bytes.to_string()),
            ("open_files".into(), self.open_files.to_string()),
            ("inodes".into(), self.inodes.to_string()),
            ("cached_attributes".into(), self.cached_attributes.to_string()),
            ("cached_listings".into(), self.cached_listings.to_string()),
            (
                "heap_in_use".into(),
                self.heap_in_use.map_or_else(|| "-".into(), |b| b.to_string()),
            ),
        ]
    }
}
