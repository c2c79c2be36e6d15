//! The FUSE adapter: each kernel request becomes one call on the filesystem core, run on a
//! tokio task, and one reply. The fuser thread never waits for the network.

use crate::fs::{Attr, DirItem, Fs, FsError, Kind, SetAttr};
use crate::store::ObjectStore;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

use crate::status_file::{STATUS_INO, StatusFile};
pub use crate::status_file::{StatusReaders, StatusSource};

/// The kernel's requests still being answered. The session can end while some are (a
/// release that deletes the object of a file unlinked while open, say, right before an
/// unmount): the daemon lets them finish before it exits instead of cutting them off.
#[derive(Clone, Default)]
pub struct InFlight(Arc<InFlightCount>);

#[derive(Default)]
struct InFlightCount {
    requests: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request in flight, until dropped.
struct InFlightGuard(InFlight);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.0.requests.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// Waits until no request is in flight, for at most `limit`. Whether none is.
    pub async fn settle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.0.idle.notified();
            if self.0.requests.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.0.requests.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// The fuser-facing side of a mount.
pub struct FuseAdapter<S: ObjectStore> {
    fs: Arc<Fs<S>>,
    rt: Handle,
    ttl: Duration,
    status: Option<Arc<StatusFile>>,
    in_flight: InFlight,
}

impl<S: ObjectStore> FuseAdapter<S> {
    /// An adapter running the core's work on `rt`.
    pub fn new(fs: Arc<Fs<S>>, rt: Handle) -> Self {
        let ttl = fs.config().metadata_ttl;
        FuseAdapter {
            fs,
            rt,
            ttl,
            status: None,
            in_flight: InFlight::default(),
        }
    }

    /// The requests this adapter is answering, to wait for once the session ends.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }

    /// Answers a request on the runtime, counted in [`Self::in_flight`] until it is done.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let guard = self.in_flight.enter();
        self.rt.spawn(async move {
            work.await;
            drop(guard);
        });
    }

    /// Publishes the mount's status as the file `.s3role-status` of its root, to `readers`.
    pub fn with_status(mut self, status: StatusSource, readers: StatusReaders) -> Self {
        // SAFETY: geteuid and getegid have no preconditions.
        let owner = unsafe { (libc::geteuid(), libc::getegid()) };
        self.status = Some(Arc::new(StatusFile::new(status, readers, owner)));
        self
    }

    /// The status file, when `ino` is it.
    fn status_file(&self, ino: INodeNo) -> Option<&StatusFile> {
        self.status.as_deref().filter(|_| ino.0 == STATUS_INO)
    }

    /// Whether `name` in `parent` is the status file, which cannot be made, removed or renamed.
    fn is_status_name(&self, parent: INodeNo, name: &OsStr) -> bool {
        self.status.is_some() && StatusFile::is_named(parent, name)
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let kind = file_type(a.kind);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind,
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// The process (thread group) of the thread the kernel names in a request, from
/// `/proc/PID/status`; `None` if it is not known (0: a thread outside this daemon's PID
/// namespace, or one that has exited). Threads of one program open and close a file from
/// different threads, so handles are matched by process, not thread. procfs answers from
/// memory, so this read does not wait on a disk.
fn process_of(thread: u32) -> Option<u32> {
    if thread == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{thread}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn name_of(name: &OsStr) -> Option<String> {
    name.to_str().map(str::to_owned)
}

impl<S: ObjectStore> fuser::Filesystem for FuseAdapter<S> {
    fn init(&mut self, _req: &Request, cfg: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC comes with the open, so a rewrite is staged, not an empty upload first.
        // READDIRPLUS always (not "auto"): `ls -l` then gets entries with their attributes
        // instead of sending one LOOKUP per entry (once it has asked for the first ones).
        let want = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        let _ = cfg.add_capabilities(want & cfg.capabilities());
        let _ = cfg.set_max_background(128);
        let _ = cfg.set_congestion_threshold(96);
        if let Err(nearest) = cfg.set_max_readahead(1 << 20) {
            let _ = cfg.set_max_readahead(nearest);
        }
        let _ = cfg.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if let (true, Some(status)) = (StatusFile::is_named(parent, name), &self.status) {
            // Not cached: its size changes with every figure in it.
            return reply.entry(&Duration::ZERO, &status.attr(), Generation(0));
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::ENOENT);
        };
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino.0 != STATUS_INO {
            self.fs.forget(ino.0, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(status) = self.status_file(ino) {
            return reply.attr(&Duration::ZERO, &status.attr());
        }
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if self.status_file(ino).is_some() {
            return reply.error(Errno::EPERM);
        }
        let when = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(when),
            atime: atime.map(when),
        };
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            match fs.setattr(ino.0, set).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        if self.is_status_name(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::EINVAL);
        };
        let (fs, ttl, uid, gid) = (self.fs.clone(), self.ttl, req.uid(), req.gid());
        let kind = Kind::of_mode(mode);
        if !matches!(kind, None | Some(Kind::File)) {
            let (Some(kind), perm) = (kind, ((mode & !umask) & 0o7777) as u16) else {
                return reply.error(Errno::EINVAL);
            };
            if kind == Kind::Dir || kind == Kind::Symlink {
                return reply.error(Errno::EINVAL);
            }
            self.spawn(async move {
                match fs.mknod(parent.0, &name, kind, perm, rdev, (uid, gid)).await {
                    Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                    Err(e) => reply.error(errno(&e)),
                }
            });
            return;
        }
        self.spawn(async move {
            match fs.create(parent.0, &name, mode & !umask, uid, gid).await {
                Ok((a, fh)) => {
                    let flushed = fs.flush(fh).await;
                    fs.release(fh).await;
                    match flushed {
                        Ok(()) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                        Err(e) => reply.error(errno(&e)),
                    }
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        if self.is_status_name(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::EINVAL);
        };
        let (fs, ttl, uid, gid) = (self.fs.clone(), self.ttl, req.uid(), req.gid());
        self.spawn(async move {
            match fs.mkdir(parent.0, &name, mode & !umask, uid, gid).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.is_status_name(parent, name) {
            return reply.error(Errno::EPERM);
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::ENOENT);
        };
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.is_status_name(parent, name) {
            return reply.error(Errno::ENOTDIR);
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::ENOENT);
        };
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        if self.is_status_name(parent, link_name) {
            return reply.error(Errno::EEXIST);
        }
        let (Some(name), Some(target)) = (name_of(link_name), target.to_str().map(str::to_owned)) else {
            return reply.error(Errno::EINVAL);
        };
        let (fs, ttl, uid, gid) = (self.fs.clone(), self.ttl, req.uid(), req.gid());
        self.spawn(async move {
            match fs.symlink(parent.0, &name, &target, uid, gid).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if self.is_status_name(parent, name) || self.is_status_name(newparent, newname) {
            return reply.error(Errno::EPERM);
        }
        let (Some(name), Some(newname)) = (name_of(name), name_of(newname)) else {
            return reply.error(Errno::EINVAL);
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.rename(parent.0, &name, newparent.0, &newname, no_replace).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        // S3 has no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let truncate = flags.0 & libc::O_TRUNC != 0;
        if let Some(status) = self.status_file(ino) {
            return match status.open(req.uid(), write || truncate) {
                // Read through to the snapshot, whatever size the last stat said.
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(e),
            };
        }
        let fs = self.fs.clone();
        let opener = write.then(|| process_of(req.pid())).flatten();
        self.spawn(async move {
            match fs.open(ino.0, write || truncate, truncate).await {
                Ok((fh, caching)) => {
                    if let Some(opener) = opener {
                        fs.opened_by(fh, opener);
                    }
                    let mut flags = FopenFlags::empty();
                    if caching.keep {
                        flags |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    if caching.direct {
                        flags |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    reply.opened(FileHandle(fh), flags)
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Some(status) = self.status_file(ino) {
            return match status.read(fh.0, offset, size) {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            };
        }
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = self.fs.clone();
        let data = bytes::Bytes::copy_from_slice(data);
        self.spawn(async move {
            match fs.write(fh.0, offset, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock: LockOwner, reply: ReplyEmpty) {
        if self.status_file(ino).is_some() {
            return reply.ok();
        }
        let fs = self.fs.clone();
        let closer = process_of(req.pid());
        self.spawn(async move {
            match fs.flush_by(fh.0, closer).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _f: OpenFlags,
        _l: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(status) = self.status_file(ino) {
            status.release(fh.0);
            return reply.ok();
        }
        // Nobody waits for a release (close(2) returned at the flush before it): the kernel
        // is answered at once, so an unmount right after a close never leaves an answer owed
        // to a connection that is gone. The work goes on, counted in flight until done.
        reply.ok();
        let fs = self.fs.clone();
        self.spawn(async move {
            fs.release(fh.0).await;
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        if self.status_file(ino).is_some() {
            return reply.ok();
        }
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let added = self.fs.readdir(fh.0, offset, |item: &DirItem| {
            reply.add(INodeNo(item.ino), item.next_offset, file_type(item.kind), &item.name)
        });
        match added {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            let added = fs
                .readdirplus(fh.0, offset, |item: &DirItem, attr: &Attr, complete: bool| {
                    // Attributes from the listing alone are revalidated at first use.
                    let ttl = if complete { ttl } else { Duration::ZERO };
                    reply.add(
                        INodeNo(attr.ino),
                        item.next_offset,
                        &item.name,
                        &ttl,
                        &file_attr(attr),
                        Generation(0),
                    )
                })
                .await;
            match added {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks,
            s.free,
            s.free,
            s.files,
            s.free_files,
            s.block_size,
            s.name_max,
            s.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        // No extended attributes at all. ENOSYS, unlike ENODATA, makes the kernel stop
        // asking: `ls -l` asks two of every file it shows otherwise.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if self.is_status_name(parent, name) {
            return reply.error(Errno::EEXIST);
        }
        let Some(name) = name_of(name) else {
            return reply.error(Errno::EINVAL);
        };
        let (fs, ttl, uid, gid) = (self.fs.clone(), self.ttl, req.uid(), req.gid());
        let opener = process_of(req.pid());
        self.spawn(async move {
            match fs.create(parent.0, &name, mode & !umask, uid, gid).await {
                Ok((a, fh)) => {
                    if let Some(opener) = opener {
                        fs.opened_by(fh, opener);
                    }
                    reply.created(&ttl, &file_attr(&a), Generation(0), FileHandle(fh), FopenFlags::empty())
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}
