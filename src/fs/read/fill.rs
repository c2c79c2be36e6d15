//! Whole-object copies for files read at random all over. One small GET per read is the
//! best a random reader can get from S3; a program that keeps reading small pieces from
//! everywhere in a file (a database file, an index, a fio job) does better with the whole
//! object on local disk. After [`SCATTERED_READS`] small reads that start in different
//! places, the object is fetched front to back in the background, a few large GETs at a
//! time, into an unlinked scratch file in the staging directory. Reads the copy already
//! holds are served from it; the others keep costing one small GET, so nothing waits for
//! the copy.
//!
//! Bounded: a copy is made only of an object no larger than the budget (`--fill-limit`),
//! all copies together stay within it, and only when the disk has twice the object's size
//! free. A copy lives as long as a handle that reads the version is open: the file is
//! unlinked from the start, so its space returns when the last reader closes, and a killed
//! daemon leaves nothing behind. The file is 0600 and has no name, so no other user can
//! open it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// How many reads that start a new, short run (see [`ReadStream`](super::ReadStream)) make
/// a handle a random reader worth a whole copy. Low enough that a random reader gets its
/// copy early; high enough that a Parquet reader's footer and a few column chunks do not.
pub const SCATTERED_READS: u32 = 16;

/// Objects smaller than this are never copied: the block cache holds them after a few GETs.
pub const MIN_FILL: u64 = 4 << 20;

/// The unit in which a copy records what it holds.
const UNIT: u64 = 1 << 20;

/// Where copies go and how many bytes they may take together.
#[derive(Clone, Debug)]
pub struct FillConfig {
    /// The directory of the scratch files (the staging directory).
    pub dir: PathBuf,
    /// Most bytes of all copies together; 0 turns copies off.
    pub limit: u64,
}

/// A local copy of one object version, filled in the background.
pub struct Copy {
    file: File,
    size: u64,
    /// One bit per [`UNIT`]: set once those bytes are in the file.
    present: Vec<AtomicU64>,
    /// The fill task, stopped when the last reader lets go of the copy.
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Whether a reader has taken on starting the fill task.
    claimed: std::sync::atomic::AtomicBool,
    /// The budget this copy counts against.
    used: Arc<AtomicU64>,
}

impl std::fmt::Debug for Copy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copy").field("size", &self.size).finish_non_exhaustive()
    }
}

impl Copy {
    /// Whether bytes `from..to` are in the copy.
    pub fn covers(&self, from: u64, to: u64) -> bool {
        if to <= from {
            return true;
        }
        (from / UNIT..=(to - 1) / UNIT).all(|unit| {
            let word = self.present[(unit / 64) as usize].load(Ordering::Acquire);
            word & (1 << (unit % 64)) != 0
        })
    }

    /// Reads bytes `from..to`, which must be covered. Blocking: call it off the async workers.
    pub fn read_at(&self, from: u64, to: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; (to - from) as usize];
        self.file.read_exact_at(&mut buf, from)?;
        Ok(buf)
    }

    /// Writes one whole unit (or the object's last, shorter one) and marks it present.
    /// Blocking: call it off the async workers.
    pub fn write_unit(&self, unit: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, unit * UNIT)?;
        self.present[(unit / 64) as usize].fetch_or(1 << (unit % 64), Ordering::Release);
        Ok(())
    }

    /// True for the one caller that is to start the fill task.
    pub fn claim_fill(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Sets the task filling the copy, stopped when the copy is dropped.
    pub fn set_task(&self, task: tokio::task::AbortHandle) {
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// The size of a unit, for the task that fills the copy.
    pub const fn unit() -> u64 {
        UNIT
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        self.used.fetch_sub(self.size, Ordering::AcqRel);
    }
}

/// The copies of one mount, found by object version.
#[derive(Debug)]
pub struct Fills {
    cfg: FillConfig,
    used: Arc<AtomicU64>,
    copies: Mutex<HashMap<u64, Weak<Copy>>>,
    /// Bytes fetched into copies.
    pub fetched: AtomicU64,
    /// Reads served from copies.
    pub served: AtomicU64,
}

impl Fills {
    /// No copies yet, within `cfg`.
    pub fn new(cfg: FillConfig) -> Self {
        Fills {
            cfg,
            used: Arc::new(AtomicU64::new(0)),
            copies: Mutex::new(HashMap::new()),
            fetched: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    fn copies(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<Copy>>> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The copy of version `version`, if one is alive.
    pub fn find(&self, version: u64) -> Option<Arc<Copy>> {
        let copies = self.copies();
        if copies.is_empty() {
            return None;
        }
        copies.get(&version)?.upgrade()
    }

    /// Whether an object of `size` may be copied at all.
    pub fn worth_copying(&self, size: u64) -> bool {
        size >= MIN_FILL && size <= self.cfg.limit
    }

    /// The copy of version `version` of `size` bytes: the one alive, or a new, empty one if
    /// the budget and the disk allow it. Blocking (it makes a file): call it off the async
    /// workers.
    pub fn make(&self, version: u64, size: u64) -> Option<Arc<Copy>> {
        if !self.worth_copying(size) {
            return None;
        }
        if let Some(alive) = self.find(version) {
            return Some(alive);
        }
        let taken = self.used.fetch_add(size, Ordering::AcqRel);
        if taken + size > self.cfg.limit {
            self.used.fetch_sub(size, Ordering::AcqRel);
            tracing::debug!(size, taken, "no whole copy: the fill budget is taken");
            return None;
        }
        let file = match tempfile::tempfile_in(&self.cfg.dir) {
            Ok(file) => file,
            Err(e) => {
                self.used.fetch_sub(size, Ordering::AcqRel);
                tracing::debug!(dir = %self.cfg.dir.display(), "no whole copy: {e}");
                return None;
            }
        };
        if free_bytes(&file) < size.saturating_mul(2) {
            self.used.fetch_sub(size, Ordering::AcqRel);
            tracing::debug!(dir = %self.cfg.dir.display(), size, "no whole copy: the disk has less than twice its size free");
            return None;
        }
        let units = size.div_ceil(UNIT);
        let copy = Arc::new(Copy {
            file,
            size,
            present: (0..units.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            task: Mutex::new(None),
            claimed: std::sync::atomic::AtomicBool::new(false),
            used: self.used.clone(),
        });
        let mut copies = self.copies();
        copies.retain(|_, c| c.strong_count() > 0);
        // Another reader made one meanwhile: use that (this one's budget returns as it drops).
        if let Some(alive) = copies.get(&version).and_then(Weak::upgrade) {
            return Some(alive);
        }
        copies.insert(version, Arc::downgrade(&copy));
        Some(copy)
    }

    /// Bytes held by live copies (their full size, counted when they are made).
    pub fn bytes(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes free for an unprivileged user on the filesystem of `file`.
fn free_bytes(file: &File) -> u64 {
    use std::os::fd::AsRawFd;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs writes a statvfs for a descriptor this function borrows.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: fstatvfs succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    st.f_bavail.saturating_mul(st.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fills(limit: u64) -> (tempfile::TempDir, Fills) {
        let dir = tempfile::tempdir().unwrap();
        let fills = Fills::new(FillConfig {
            dir: dir.path().to_owned(),
            limit,
        });
        (dir, fills)
    }

    #[test]
    fn a_copy_covers_only_what_was_written_and_leaves_no_file() {
        let (dir, fills) = fills(64 << 20);
        let copy = fills.make(7, 5 * UNIT + 10).expect("a copy");
        assert!(!copy.covers(0, 1));
        copy.write_unit(1, &vec![1u8; UNIT as usize]).unwrap();
        copy.write_unit(5, &[5u8; 10]).unwrap();
        assert!(copy.covers(UNIT, 2 * UNIT));
        assert!(!copy.covers(UNIT, 2 * UNIT + 1));
        assert!(copy.covers(5 * UNIT + 3, 5 * UNIT + 10));
        assert_eq!(copy.read_at(UNIT + 5, UNIT + 8).unwrap(), vec![1u8; 3]);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the scratch file has no name"
        );
        assert!(fills.find(7).is_some());
        drop(copy);
        assert!(fills.find(7).is_none(), "gone with its last reader");
        assert_eq!(fills.bytes(), 0, "and its budget returned");
    }

    #[test]
    fn copies_stay_within_the_budget() {
        let (_dir, fills) = fills(20 << 20);
        assert!(fills.make(1, 1 << 20).is_none(), "too small to be worth it");
        assert!(fills.make(1, 21 << 20).is_none(), "larger than the budget");
        let first = fills.make(1, 12 << 20).expect("within the budget");
        assert!(fills.make(2, 12 << 20).is_none(), "the budget is taken");
        drop(first);
        assert!(fills.make(2, 12 << 20).is_some(), "free again once the first is gone");
        let (_dir, off) = self::fills(0);
        assert!(off.make(1, 8 << 20).is_none(), "0 turns copies off");
    }
}
