//! The mount's status as a file, `DIR/.s3role-status`, that no listing shows: what
//! `s3role status DIR` prints, for the user who mounted and root (mode 0400), or for every
//! user with `--public-status` (0444). The daemon makes it up; S3 never sees it.
//!
//! A file rather than extended attributes: the kernel asks a FUSE daemon for two extended
//! attributes of every file `ls -l` shows (`security.selinux` and
//! `system.posix_acl_access`) until the daemon says it has none at all (ENOSYS). With no
//! attribute to serve, the mount answers that once and those round trips stop: `ls -l` of
//! a large directory takes half the time.

use bytes::Bytes;
use fuser::{Errno, FileAttr, FileType, INodeNo};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The name of the status file in the mount's root.
pub const STATUS_FILE: &str = ".s3role-status";

/// Its inode number, far above any the filesystem core hands out.
pub const STATUS_INO: u64 = u64::MAX - 1;

/// Handles of the status file are numbered from here, apart from the core's.
const FIRST_HANDLE: u64 = 1 << 62;

/// Name/value pairs describing the live mount.
pub type StatusSource = Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Who may read the status, which names the role chain and the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusReaders {
    /// The user who mounted (this uid) and root: the default.
    MounterAndRoot(u32),
    /// Every user the kernel lets into the mount (`--public-status`).
    Everyone,
}

impl StatusReaders {
    /// Whether the user `uid` may read the status.
    pub fn admit(self, uid: u32) -> bool {
        match self {
            StatusReaders::Everyone => true,
            StatusReaders::MounterAndRoot(mounter) => uid == 0 || uid == mounter,
        }
    }
}

/// The pairs as `s3role status` prints them: one per line, values aligned.
pub fn render(pairs: &[(String, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:width$}  {v}\n")).collect()
}

/// The status file of one mount, and what each open handle of it read.
pub struct StatusFile {
    source: StatusSource,
    readers: StatusReaders,
    /// Owner and group of the file: the user who mounted.
    owner: (u32, u32),
    /// When the mount started (the file's times).
    since: SystemTime,
    /// Each open handle's snapshot, so a reader paging through it sees one moment.
    open: Mutex<HashMap<u64, Bytes>>,
    next_handle: AtomicU64,
}

impl StatusFile {
    /// The status file of a mount made by `owner` (uid, gid).
    pub fn new(source: StatusSource, readers: StatusReaders, owner: (u32, u32)) -> Self {
        StatusFile {
            source,
            readers,
            owner,
            since: SystemTime::now(),
            open: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(FIRST_HANDLE),
        }
    }

    /// Whether `name` in `parent` is the status file.
    pub fn is_named(parent: INodeNo, name: &std::ffi::OsStr) -> bool {
        parent.0 == crate::fs::ROOT_INO && name == STATUS_FILE
    }

    /// Whether `fh` is a handle of the status file.
    pub fn is_handle(fh: u64) -> bool {
        fh >= FIRST_HANDLE
    }

    fn text(&self) -> Bytes {
        Bytes::from(render(&(self.source)()))
    }

    fn open_handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Bytes>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its attributes now (the size is that of the status at this moment).
    pub fn attr(&self) -> FileAttr {
        let size = self.text().len() as u64;
        FileAttr {
            ino: INodeNo(STATUS_INO),
            size,
            blocks: size.div_ceil(512),
            atime: self.since,
            mtime: self.since,
            ctime: self.since,
            crtime: self.since,
            kind: FileType::RegularFile,
            perm: if self.readers == StatusReaders::Everyone {
                0o444
            } else {
                0o400
            },
            nlink: 1,
            uid: self.owner.0,
            gid: self.owner.1,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Opens it for user `uid`: read only, and only for those who may read the status.
    pub fn open(&self, uid: u32, write: bool) -> Result<u64, Errno> {
        if !self.readers.admit(uid) {
            return Err(Errno::EACCES);
        }
        if write {
            return Err(Errno::EACCES);
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.open_handles().insert(fh, self.text());
        Ok(fh)
    }

    /// Bytes `offset..offset + size` of handle `fh`'s snapshot.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let handles = self.open_handles();
        let text = handles.get(&fh).ok_or(Errno::EBADF)?;
        let from = (offset as usize).min(text.len());
        let to = from.saturating_add(size as usize).min(text.len());
        Ok(text.slice(from..to))
    }

    /// Forgets handle `fh`.
    pub fn release(&self, fh: u64) {
        self.open_handles().remove(&fh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(readers: StatusReaders) -> StatusFile {
        let source: StatusSource =
            Arc::new(|| vec![("source".into(), "s3://b/p/".into()), ("inodes".into(), "12".into())]);
        StatusFile::new(source, readers, (1000, 1000))
    }

    #[test]
    fn reads_what_status_prints_and_only_for_its_readers() {
        let f = file(StatusReaders::MounterAndRoot(1000));
        assert_eq!(f.attr().perm, 0o400);
        assert_eq!(f.attr().size as usize, "source  s3://b/p/\ninodes  12\n".len());
        assert_eq!(f.open(1001, false), Err(Errno::EACCES));
        assert_eq!(f.open(1000, true), Err(Errno::EACCES));
        let fh = f.open(1000, false).expect("the mounter reads it");
        assert!(StatusFile::is_handle(fh));
        assert_eq!(&f.read(fh, 0, 8).unwrap()[..], b"source  ");
        assert_eq!(&f.read(fh, 8, 4096).unwrap()[..], b"s3://b/p/\ninodes  12\n");
        assert!(f.read(fh, 4096, 10).unwrap().is_empty());
        f.release(fh);
        assert_eq!(f.read(fh, 0, 8), Err(Errno::EBADF));
        assert!(f.open(0, false).is_ok(), "root reads it");
        let public = file(StatusReaders::Everyone);
        assert_eq!(public.attr().perm, 0o444);
        assert!(public.open(4242, false).is_ok());
    }
}
