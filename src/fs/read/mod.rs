//! The read path: ranged GETs into the block cache, with a prefetch window that grows while
//! a handle reads sequentially. A random read costs one GET of the blocks it touches. Reads
//! are of one object version; the key is asked of the namespace when each GET starts, so a
//! rename by this mount never breaks a reader.

mod cache;
mod disk;
mod fill;

pub use cache::CacheStats;
pub use disk::DiskCache;
use disk::ObjectIdentity;
pub use fill::FillConfig;
#[cfg(test)]
pub use fill::SCATTERED_READS;
use fill::{Copy, Fills};

use crate::fs::bufpool::BufferPool;
use crate::fs::error::FsError;
use crate::fs::lock;
use crate::fs::namespace::{Namespace, ObjectVersion};
use crate::store::ObjectStore;
use bytes::{Bytes, BytesMut};
use cache::{Block, BlockCache, BlockId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

type BlockResult = Option<Result<Block, FsError>>;

/// Blocks fetched together are filled into one buffer of up to this size and handed over
/// when it is full. Kernel reads are at most 1 MiB, so a read across blocks of one group is
/// served as one slice, without copying, while small blocks keep random reads cheap.
const GROUP_BYTES: u64 = 1 << 20;

/// The size of a full group buffer: whole blocks, [`GROUP_BYTES`] or one block if larger.
fn group_buffer_size(block_size: u64) -> usize {
    ((GROUP_BYTES / block_size).max(1) * block_size) as usize
}

/// How far the kernel's reads of one sequential stream arrive out of order: it sends several
/// at once (readahead of up to 1 MiB each), so a read may land this far past the last one
/// seen, or this far behind it, and still be part of the stream. In bytes, not blocks, so
/// it holds whatever the block size.
const SEQUENTIAL_SLACK: u64 = 4 << 20;

/// What a read that continues the previous one fetches ahead at least: enough that a small
/// file streams in a few GETs, little enough that a short run (a Parquet column chunk) does
/// not fetch much it will not read.
const FIRST_WINDOW: u64 = 1 << 20;

/// How many times a block whose GET failed is fetched again before the read fails.
const BLOCK_RETRIES: u32 = 3;

/// The first wait before a block is fetched again; it doubles each time.
const BLOCK_BACKOFF: std::time::Duration = std::time::Duration::from_millis(25);

/// How the read path behaves.
#[derive(Clone, Debug)]
pub struct ReadConfig {
    /// Byte budget of the block cache.
    pub cache_bytes: u64,
    /// Size of a cache block, and of the GET a random read costs.
    pub block_size: u64,
    /// Most bytes fetched ahead of a sequential reader.
    pub max_prefetch: u64,
    /// Largest single GET issued when prefetching.
    pub max_request: u64,
    /// Blocks kept on local disk across remounts (`--cache-dir`), behind the memory cache.
    pub disk: Option<Arc<DiskCache>>,
    /// Where whole copies of files read at random go, and their budget.
    pub fill: FillConfig,
}

/// GETs in flight for one whole copy: enough to fetch at the link's speed, few enough to
/// leave room for the reader's own small GETs.
const FILL_PARALLEL: usize = 4;

/// Bytes waiting to be written to the disk cache at most: past this, a block fetched from
/// S3 is not kept on disk, so a disk slower than the network never holds up reads, and the
/// memory waiting for it stays bounded.
const MAX_DISK_WRITE_BYTES: usize = 32 << 20;

/// Cached blocks and blocks being fetched, under one lock so a block is fetched once.
struct BlockState {
    cache: BlockCache,
    inflight: HashMap<BlockId, watch::Receiver<BlockResult>>,
}

/// The block cache and the GETs that fill it.
pub struct Reads<S: ObjectStore> {
    store: Arc<S>,
    ns: Arc<Namespace<S>>,
    cfg: ReadConfig,
    blocks: Mutex<BlockState>,
    buffers: Arc<BufferPool>,
    /// Bytes being written to the disk cache now.
    disk_writes: Arc<AtomicUsize>,
    /// Whole copies of files read at random.
    fills: Fills,
    /// Hits and misses.
    pub stats: CacheStats,
}

/// Where a handle's reads have been going.
#[derive(Debug, Default)]
struct Sequence {
    /// Where the current sequential run began.
    run_start: u64,
    /// End of the last read.
    next: u64,
    /// Bytes to keep fetched ahead of the reader.
    window: u64,
    /// Reads that started a new run right after a short one: small reads all over the file.
    scattered: u32,
}

/// The access pattern of one open handle, so a sequential reader gets a prefetch window.
#[derive(Debug)]
pub struct ReadStream {
    sequence: Mutex<Sequence>,
    /// Highest block whose fetch this handle has started, so a sequential reader does not
    /// rescan its whole prefetch window on every request (`u64::MAX`: none yet).
    requested_until: AtomicU64,
    /// Blocks below this one were read through by this handle and released from the cache.
    released_until: AtomicU64,
    /// The whole copy of the version this handle reads, kept while the handle is open.
    copy: Mutex<Option<Arc<Copy>>>,
}

impl Default for ReadStream {
    fn default() -> Self {
        ReadStream {
            sequence: Mutex::new(Sequence::default()),
            requested_until: AtomicU64::new(u64::MAX),
            released_until: AtomicU64::new(0),
            copy: Mutex::new(None),
        }
    }
}

impl ReadStream {
    /// Updates the access pattern with a read of `offset..end` and returns how many bytes
    /// past `end` to fetch ahead: nothing for a random read; for one that continues a run,
    /// half of what the run has read so far, at least [`FIRST_WINDOW`]. Growing with the
    /// bytes read, not the number of reads (the kernel may split one read into many), keeps
    /// what a short run fetches beyond its end small, while a long run ramps up to `max`.
    /// Reads that arrive slightly out of order (the kernel sends several at once) still
    /// count as sequential.
    /// Also returns how many reads so far were scattered: each started a new run right
    /// after a short one.
    fn read_ahead(&self, offset: u64, end: u64, block: u64, max: u64) -> (u64, u32) {
        let mut s = lock(&self.sequence);
        let sequential = offset <= s.next + SEQUENTIAL_SLACK / 4 && offset + SEQUENTIAL_SLACK >= s.next;
        if sequential {
            s.next = s.next.max(end);
            s.window = ((s.next - s.run_start) / 2).max(FIRST_WINDOW).max(block).min(max);
        } else {
            tracing::debug!(offset, next = s.next, run = s.next - s.run_start, "read run restarts");
            if s.next - s.run_start < FIRST_WINDOW {
                s.scattered = s.scattered.saturating_add(1);
            }
            s.run_start = offset;
            s.next = end;
            s.window = 0;
        }
        (s.window, s.scattered)
    }

    /// The whole copy this handle keeps alive, if any.
    fn copy(&self) -> Option<Arc<Copy>> {
        lock(&self.copy).clone()
    }

    /// Keeps `copy` alive while this handle is open.
    fn keep(&self, copy: &Arc<Copy>) {
        let mut mine = lock(&self.copy);
        if mine.is_none() {
            *mine = Some(copy.clone());
        }
    }
}

/// One object version being read, with the inode whose key it lies at.
#[derive(Clone)]
pub struct Source {
    /// The inode (its key is asked at each GET).
    pub ino: u64,
    /// The version read.
    pub version: Arc<ObjectVersion>,
}

/// Puts the blocks that lie wholly in `data` (the bytes at `start` of an object of `size`)
/// into the disk cache. Blocking.
fn keep_whole_blocks(disk: &DiskCache, identity: ObjectIdentity, bs: u64, start: u64, data: &[u8], size: u64) {
    let end = start + data.len() as u64;
    for index in start.div_ceil(bs)..end.div_ceil(bs) {
        let (from, to) = (index * bs, ((index + 1) * bs).min(size));
        if to <= end {
            disk.put(identity, index, &data[(from - start) as usize..(to - start) as usize]);
        }
    }
}

impl<S: ObjectStore> Reads<S> {
    /// A block cache of `cfg.cache_bytes` over `store`, finding keys through `ns`.
    pub fn new(store: Arc<S>, ns: Arc<Namespace<S>>, cfg: ReadConfig) -> Self {
        Reads {
            store,
            ns,
            blocks: Mutex::new(BlockState {
                cache: BlockCache::new(cfg.cache_bytes),
                inflight: HashMap::new(),
            }),
            buffers: BufferPool::new(group_buffer_size(cfg.block_size), 64),
            disk_writes: Arc::new(AtomicUsize::new(0)),
            fills: Fills::new(cfg.fill.clone()),
            cfg,
            stats: CacheStats::default(),
        }
    }

    /// Reads `len` bytes at `offset` of one version of an object through the block cache.
    pub async fn read(
        self: &Arc<Self>,
        source: &Source,
        stream: &ReadStream,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, FsError> {
        let size = source.version.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len).min(size);
        let bs = self.cfg.block_size;
        let (first, last) = (offset / bs, (end - 1) / bs);
        let max_ahead = self.cfg.max_prefetch.min(self.cfg.cache_bytes / 2);
        let (ahead, scattered) = stream.read_ahead(offset, end, bs, max_ahead);
        if let Some(data) = self.read_from_copy(source, stream, offset, end).await {
            return Ok(data);
        }
        // A random reader whose reads the caches answer (a re-read after a remount, with a
        // disk cache) needs no copy: only one that keeps going to S3 gets it.
        if scattered >= fill::SCATTERED_READS
            && stream.copy().is_none()
            && self.fills.worth_copying(size)
            && !self.all_cached(source, offset / bs, (end - 1) / bs)
        {
            self.start_copy(source, stream).await;
        }
        let last_of_file = (size - 1) / bs;
        // While the window is small (a short run, such as one Parquet column chunk), fetch
        // just the window ahead, so a stream that stops soon has fetched little beyond it.
        // Once it is a whole request or more, round the target up to a request boundary,
        // so the window advances one large GET at a time instead of one block at a time.
        let per_request = (self.cfg.max_request / bs).max(1);
        let target = if ahead == 0 {
            last
        } else if ahead < self.cfg.max_request {
            last + (ahead / bs).max(1)
        } else {
            ((last + ahead / bs) / per_request + 1) * per_request - 1
        };
        let target = target.min(last_of_file);
        // The blocks asked for now, then whatever part of the window is new.
        self.start_fetches(source, first, last, per_request);
        if ahead == 0 {
            stream.requested_until.store(last, Ordering::Relaxed);
        } else {
            let done = stream.requested_until.load(Ordering::Relaxed);
            let from = if done == u64::MAX {
                last + 1
            } else {
                (last + 1).max(done + 1)
            };
            if from <= target {
                self.start_fetches(source, from, target, per_request);
            }
            stream.requested_until.fetch_max(target, Ordering::Relaxed);
        }

        if ahead > 0 {
            self.release_read_blocks(source, stream, first);
        }
        let mut blocks = Vec::with_capacity((last - first + 1) as usize);
        for index in first..=last {
            blocks.push(self.block(source, index).await?);
        }
        let from = (offset - first * bs) as usize;
        let to_in_last = ((end - last * bs) as usize).min(blocks[blocks.len() - 1].len);
        // Neighbours fetched into one buffer: one slice of it.
        if blocks.windows(2).all(|w| w[0].followed_by(&w[1])) {
            let head = &blocks[0];
            let span = (last - first) as usize * bs as usize + to_in_last;
            return Ok(head.group.slice(head.start + from..head.start + span.max(from)));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (i, block) in blocks.iter().enumerate() {
            let from = if i == 0 { from } else { 0 };
            let to = if i == blocks.len() - 1 { to_in_last } else { block.len };
            if from < to {
                out.extend_from_slice(&block.slice(from, to));
            }
        }
        Ok(out.freeze())
    }

    /// Whether blocks `first..=last` are in the memory cache or on disk.
    fn all_cached(&self, source: &Source, first: u64, last: u64) -> bool {
        let identity = self.identity(source);
        let state = lock(&self.blocks);
        (first..=last).all(|index| {
            let id = BlockId {
                version: source.version.id,
                index,
            };
            state.cache.contains(&id)
                || matches!((&self.cfg.disk, identity), (Some(disk), Some(identity)) if disk.contains(identity, index))
        })
    }

    /// Bytes `offset..end` from the whole copy of the version, if it holds them already.
    async fn read_from_copy(&self, source: &Source, stream: &ReadStream, offset: u64, end: u64) -> Option<Bytes> {
        let copy = stream.copy().or_else(|| self.fills.find(source.version.id))?;
        stream.keep(&copy);
        if !copy.covers(offset, end) {
            return None;
        }
        match tokio::task::spawn_blocking(move || copy.read_at(offset, end)).await {
            Ok(Ok(data)) => {
                self.fills.served.fetch_add(1, Ordering::Relaxed);
                Some(Bytes::from(data))
            }
            Ok(Err(e)) => {
                tracing::warn!(ino = source.ino, "reading the local copy failed ({e}); reading from S3");
                None
            }
            Err(_) => None,
        }
    }

    /// Makes a whole copy of the version `stream` reads at random, kept by that handle,
    /// and starts fetching the object into it in the background.
    async fn start_copy(self: &Arc<Self>, source: &Source, stream: &ReadStream) {
        let me = self.clone();
        let (version, size) = (source.version.id, source.version.size);
        let made = tokio::task::spawn_blocking(move || me.fills.make(version, size)).await;
        let Ok(Some(copy)) = made else {
            return;
        };
        stream.keep(&copy);
        if !copy.claim_fill() {
            return;
        }
        tracing::info!(
            ino = source.ino,
            size,
            "a file read at random all over: fetching the whole object to local disk in the background"
        );
        let me = self.clone();
        let (source, weak) = (source.clone(), Arc::downgrade(&copy));
        let task = tokio::spawn(async move { me.fill(source, weak).await });
        copy.set_task(task.abort_handle());
    }

    /// Fetches the whole object into `copy`, [`FILL_PARALLEL`] GETs of `max_request` at a
    /// time, front to back. Stops when the copy is dropped, or when a GET fails a few times
    /// over (the reads it did not cover keep going to S3).
    async fn fill(self: Arc<Self>, source: Source, copy: Weak<Copy>) {
        let chunk = self.cfg.max_request.max(Copy::unit()) / Copy::unit() * Copy::unit();
        let chunks = source.version.size.div_ceil(chunk);
        let mut running = tokio::task::JoinSet::new();
        let mut next = 0;
        loop {
            while running.len() < FILL_PARALLEL && next < chunks {
                let (me, source, copy) = (self.clone(), source.clone(), copy.clone());
                let from = next * chunk;
                running.spawn(async move {
                    let mut failures = 0;
                    loop {
                        match me.fill_range(&source, &copy, from, from + chunk).await {
                            Err(FsError::Io(e)) if failures < BLOCK_RETRIES && copy.strong_count() > 0 => {
                                failures += 1;
                                tracing::debug!("filling the local copy failed ({e}); trying again");
                                tokio::time::sleep(BLOCK_BACKOFF * (1 << failures)).await;
                            }
                            other => return other,
                        }
                    }
                });
                next += 1;
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    tracing::info!(ino = source.ino, "the local copy stops short: {e}");
                    return;
                }
                Some(Err(_)) => return,
            }
        }
        tracing::debug!(ino = source.ino, "the local copy is whole");
    }

    /// Fetches bytes `from..to` of the object into `copy`, one unit at a time.
    async fn fill_range(&self, source: &Source, copy: &Weak<Copy>, from: u64, to: u64) -> Result<(), FsError> {
        let gone = || FsError::Io("the copy is no longer wanted".into());
        let size = source.version.size;
        let to = to.min(size);
        if copy.upgrade().ok_or_else(gone)?.covers(from, to) {
            return Ok(());
        }
        let key = self.ns.key_of(source.ino)?;
        let etag = source.version.etag();
        // With a disk cache, what the copy gets is kept there too, so that reads served
        // from the copy today come from the disk after a remount, as every read does; and
        // what the disk holds already is not fetched again (reads find it there).
        let disk = self
            .cfg
            .disk
            .clone()
            .map(|disk| (disk, ObjectIdentity::of(&key, &etag, size), self.cfg.block_size));
        if let Some((disk, identity, bs)) = &disk
            && (from / bs..to.div_ceil(*bs)).all(|index| disk.contains(*identity, index))
        {
            return Ok(());
        }
        let mut body = self.store.get_range(&key, from..to, Some(&etag)).await?;
        let unit = Copy::unit();
        let mut at = from;
        let mut buf = Vec::with_capacity(unit.min(to - from) as usize);
        while let Some(mut piece) = body.next_chunk().await? {
            while !piece.is_empty() && at < to {
                // `buf` holds the bytes from `at` up to the end of at's unit.
                let unit_len = (((at / unit + 1) * unit).min(to) - at) as usize;
                let take = (unit_len - buf.len()).min(piece.len());
                buf.extend_from_slice(&piece.split_to(take));
                if buf.len() == unit_len {
                    let next_len = unit.min(to - at - unit_len as u64) as usize;
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(next_len));
                    let target = copy.upgrade().ok_or_else(gone)?;
                    let index = at / unit;
                    let disk = disk.clone();
                    let start = at;
                    tokio::task::spawn_blocking(move || {
                        target.write_unit(index, &full)?;
                        if let Some((disk, identity, bs)) = disk {
                            keep_whole_blocks(&disk, identity, bs, start, &full, size);
                        }
                        Ok::<(), std::io::Error>(())
                    })
                    .await
                    .map_err(|e| FsError::Io(e.to_string()))?
                    .map_err(|e| FsError::Io(format!("writing the local copy: {e}")))?;
                    self.fills.fetched.fetch_add(unit_len as u64, Ordering::Relaxed);
                    at += unit_len as u64;
                }
            }
        }
        if at < to {
            return Err(FsError::Io(format!("GetObject {key}: the body ended early")));
        }
        Ok(())
    }

    /// A sequential reader has gone past the blocks well behind `first`: the kernel keeps
    /// what it read in its page cache, so holding a second copy would only make a long read
    /// fill the cache with fresh memory (page faults on every block) and push out blocks that
    /// random readers come back to. Releasing them returns their buffers to the pool at once.
    /// The lag covers the kernel's reads arriving a little out of order.
    fn release_read_blocks(&self, source: &Source, stream: &ReadStream, first: u64) {
        let until = first.saturating_sub(SEQUENTIAL_SLACK.div_ceil(self.cfg.block_size));
        let from = stream.released_until.fetch_max(until, Ordering::Relaxed);
        if from >= until {
            return;
        }
        let mut state = lock(&self.blocks);
        for index in from..until {
            state.cache.remove(&BlockId {
                version: source.version.id,
                index,
            });
        }
    }

    /// Starts GETs for the blocks in `first..=last` that are neither cached nor already being
    /// fetched, at most `per_request` blocks per GET and never across a request boundary.
    /// Blocks the disk cache holds are read from there instead, in one task.
    fn start_fetches(self: &Arc<Self>, source: &Source, first: u64, last: u64, per_request: u64) {
        let mut runs: Vec<(u64, Vec<watch::Sender<BlockResult>>)> = Vec::new();
        let mut from_disk: Vec<(u64, watch::Sender<BlockResult>)> = Vec::new();
        let identity = self.identity(source);
        {
            let mut state = lock(&self.blocks);
            let mut run: Option<(u64, Vec<watch::Sender<BlockResult>>)> = None;
            for index in first..=last {
                let id = BlockId {
                    version: source.version.id,
                    index,
                };
                let missing = !state.cache.contains(&id) && !state.inflight.contains_key(&id);
                let on_disk = missing
                    && match (&self.cfg.disk, identity) {
                        (Some(disk), Some(identity)) => disk.contains(identity, index),
                        _ => false,
                    };
                let boundary = index % per_request == 0;
                if !missing || on_disk || boundary {
                    runs.extend(run.take());
                }
                if missing {
                    let (tx, rx) = watch::channel(None);
                    state.inflight.insert(id, rx);
                    if on_disk {
                        from_disk.push((index, tx));
                    } else {
                        run.get_or_insert_with(|| (index, Vec::new())).1.push(tx);
                    }
                }
            }
            runs.extend(run);
        }
        if let (Some(identity), false) = (identity, from_disk.is_empty()) {
            let me = self.clone();
            let source = source.clone();
            tokio::spawn(async move { me.load_from_disk(source, identity, from_disk).await });
        }
        for (start, senders) in runs {
            let me = self.clone();
            let source = source.clone();
            tokio::spawn(async move { me.fetch_run(source, start, senders).await });
        }
    }

    /// Which object `source` is, for the disk cache (`None` without one).
    fn identity(&self, source: &Source) -> Option<ObjectIdentity> {
        self.cfg.disk.as_ref()?;
        let key = self.ns.key_of(source.ino).ok()?;
        Some(ObjectIdentity::of(&key, &source.version.etag(), source.version.size))
    }

    /// Reads blocks from the disk cache, each handed over as soon as it is read; any the
    /// disk no longer has intact are fetched from S3.
    async fn load_from_disk(
        self: Arc<Self>,
        source: Source,
        identity: ObjectIdentity,
        blocks: Vec<(u64, watch::Sender<BlockResult>)>,
    ) {
        let Some(disk) = self.cfg.disk.clone() else {
            return;
        };
        let (me, from) = (self.clone(), source.clone());
        let missing = tokio::task::spawn_blocking(move || {
            let mut missing = Vec::new();
            for (index, tx) in blocks {
                match disk.get(identity, index) {
                    Some(data) => me.finish_block(&from, index, &tx, Ok(Block::alone(data))),
                    None => missing.push((index, tx)),
                }
            }
            missing
        })
        .await
        .unwrap_or_default();
        for (index, tx) in missing {
            let me = self.clone();
            let source = source.clone();
            tokio::spawn(async move { me.fetch_run(source, index, vec![tx]).await });
        }
    }

    /// Keeps blocks just fetched from S3 on disk, in the background; none if too many
    /// writes are waiting already.
    fn keep_on_disk(&self, identity: Option<ObjectIdentity>, blocks: Vec<(u64, Bytes)>) {
        let (Some(disk), Some(identity)) = (self.cfg.disk.clone(), identity) else {
            return;
        };
        let n: usize = blocks.iter().map(|(_, b)| b.len()).sum();
        if self.disk_writes.fetch_add(n, Ordering::AcqRel) + n > MAX_DISK_WRITE_BYTES {
            self.disk_writes.fetch_sub(n, Ordering::AcqRel);
            tracing::debug!("the disk cache is behind: {n} bytes just read are not kept on disk");
            return;
        }
        let writes = self.disk_writes.clone();
        tokio::task::spawn_blocking(move || {
            for (index, data) in blocks {
                disk.put(identity, index, &data);
            }
            writes.fetch_sub(n, Ordering::AcqRel);
        });
    }

    /// One GET covering consecutive blocks. They are filled into group buffers of up to
    /// [`GROUP_BYTES`] (aligned, so a sequential reader's 1 MiB reads fall in one), and each
    /// group's blocks are handed over as soon as its last byte arrives.
    async fn fetch_run(self: Arc<Self>, source: Source, first: u64, senders: Vec<watch::Sender<BlockResult>>) {
        let bs = self.cfg.block_size;
        let per_group = group_buffer_size(bs) as u64 / bs;
        let start = first * bs;
        let end = ((first + senders.len() as u64) * bs).min(source.version.size);
        // Block i of the run covers bytes block_start(i)..block_end(i) of the run.
        let block_end = |i: usize| ((start + (i as u64 + 1) * bs).min(end) - start) as usize;
        let block_start = |i: usize| if i == 0 { 0 } else { block_end(i - 1) };
        // The run's blocks from `i` to the end of i's group.
        let group_last = |i: usize| {
            let index = first + i as u64;
            let last = (index / per_group + 1) * per_group - 1 - first;
            (last as usize).min(senders.len() - 1)
        };
        let mut done = 0usize;
        let result: Result<(), FsError> = async {
            // A version whose file lost its name and its object is gone for good.
            let key = self.ns.key_of(source.ino).map_err(|e| match e {
                FsError::NotFound => FsError::Stale(format!("inode {}: its object is gone", source.ino)),
                other => other,
            })?;
            let etag = source.version.etag();
            let identity = self
                .cfg
                .disk
                .as_ref()
                .map(|_| ObjectIdentity::of(&key, &etag, source.version.size));
            let mut body = self.store.get_range(&key, start..end, Some(&etag)).await?;
            // The bytes of the group that starts with block i.
            let group_len = |i: usize| block_end(group_last(i)) - block_start(i);
            let mut buf = self.buffers.take(group_len(0));
            while let Some(mut chunk) = body.next_chunk().await? {
                while !chunk.is_empty() && done < senders.len() {
                    let want = group_len(done);
                    let take = (want - buf.len()).min(chunk.len());
                    buf.extend_from_slice(&chunk.split_to(take));
                    if buf.len() == want {
                        let last = group_last(done);
                        let next = if last + 1 < senders.len() {
                            group_len(last + 1)
                        } else {
                            0
                        };
                        let group = self
                            .buffers
                            .freeze(std::mem::replace(&mut buf, self.buffers.take(next)));
                        let base = block_start(done);
                        let mut keep = Vec::new();
                        for (i, tx) in senders.iter().enumerate().take(last + 1).skip(done) {
                            let block = Block {
                                group: group.clone(),
                                start: block_start(i) - base,
                                len: block_end(i) - block_start(i),
                            };
                            if identity.is_some() {
                                keep.push((first + i as u64, block.slice(0, block.len)));
                            }
                            self.finish_block(&source, first + i as u64, tx, Ok(block));
                        }
                        self.keep_on_disk(identity, keep);
                        done = last + 1;
                    }
                }
            }
            self.buffers.give_back(buf);
            if done < senders.len() {
                let e = format!(
                    "GetObject {key}: the body ended early ({done} of {} blocks)",
                    senders.len()
                );
                tracing::error!("{e}");
                return Err(FsError::Io(e));
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for (i, tx) in senders.iter().enumerate().skip(done) {
                self.finish_block(&source, first + i as u64, tx, Err(e.clone()));
            }
        }
    }

    fn finish_block(
        &self,
        source: &Source,
        index: u64,
        tx: &watch::Sender<BlockResult>,
        result: Result<Block, FsError>,
    ) {
        let id = BlockId {
            version: source.version.id,
            index,
        };
        {
            let mut state = lock(&self.blocks);
            state.inflight.remove(&id);
            if let Ok(data) = &result {
                state.cache.insert(id, data.clone());
            }
        }
        tx.send_replace(Some(result));
    }

    /// Block `index` of an open file: from the cache, from a GET already under way, or from a
    /// new GET. A failed GET is tried once more before the read fails.
    async fn block(self: &Arc<Self>, source: &Source, index: u64) -> Result<Block, FsError> {
        let mut failures = 0;
        let mut counted = false;
        loop {
            let id = BlockId {
                version: source.version.id,
                index,
            };
            let waiting = {
                let mut state = lock(&self.blocks);
                if let Some(data) = state.cache.get(&id) {
                    if !counted {
                        BlockCache::count(&self.stats, true);
                    }
                    return Ok(data);
                }
                state.inflight.get(&id).cloned()
            };
            if !counted {
                BlockCache::count(&self.stats, false);
                counted = true;
            }
            let Some(mut rx) = waiting else {
                self.start_fetches(source, index, index, 1);
                continue;
            };
            let result = match rx.wait_for(|r| r.is_some()).await {
                Ok(r) => r.clone().unwrap_or_else(|| Err(FsError::Io("fetch abandoned".into()))),
                Err(_) => Err(FsError::Io("fetch abandoned".into())),
            };
            match result {
                // A GET that failed after the SDK's retries (a body cut short, a reset) is
                // tried again a few times, with backoff, before a program sees EIO.
                Err(FsError::Io(e)) if failures < BLOCK_RETRIES => {
                    failures += 1;
                    tracing::debug!("block {index} of inode {} failed ({e}); trying again", source.ino);
                    tokio::time::sleep(BLOCK_BACKOFF * (1 << failures)).await;
                }
                // Nothing there: a rename may have moved the object as the GET started, so
                // once more, at the key the inode has now.
                Err(FsError::NotFound) if failures == 0 => failures += 1,
                // The version this handle reads is gone from S3: its handle is stale.
                Err(FsError::NotFound) => {
                    return Err(FsError::Stale(format!("inode {}: its object is gone", source.ino)));
                }
                Err(FsError::Io(e)) => {
                    tracing::error!(
                        "reading block {index} of inode {} failed {} times: {e}",
                        source.ino,
                        failures + 1
                    );
                    return Err(FsError::Io(e));
                }
                other => return other,
            }
        }
    }

    /// Whole copies of files read at random: bytes they hold on disk, bytes fetched into
    /// them, and reads they served.
    pub fn copy_figures(&self) -> (u64, u64, u64) {
        (
            self.fills.bytes(),
            self.fills.fetched.load(Ordering::Relaxed),
            self.fills.served.load(Ordering::Relaxed),
        )
    }

    /// Bytes held by the block cache.
    pub fn cached_bytes(&self) -> u64 {
        lock(&self.blocks).cache.bytes()
    }
}
