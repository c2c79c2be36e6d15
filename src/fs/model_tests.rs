//! Random sequences of file operations with handles held open across renames, unlinks and
//! renames over, several handles on one file, and a store that is slow and fails (reads at
//! random, and uploads at some last closes), checked against a model of what a local
//! filesystem would hold, and of where the bytes of a close that failed end up.

use super::test_support::*;
use super::*;
use crate::store::mem::MemStore;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const FILES: [&str; 6] = ["a", "b", "d0/a", "d0/b", "d1/a", "d1/b"];
const DIRS: [&str; 2] = ["d0", "d1"];
const SLOTS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Open {
        file: usize,
        slot: usize,
        write: bool,
    },
    Write {
        slot: usize,
        offset: u16,
        len: u16,
    },
    /// Megabytes at the end of the file, so that parts go up while it is written.
    Append {
        slot: usize,
        len: u32,
    },
    Read {
        slot: usize,
    },
    Close {
        slot: usize,
    },
    /// The last close of a file, while S3 refuses every change: the close fails, and the
    /// file waits to be retried at its key until the end of the run.
    FailingClose {
        slot: usize,
    },
    Truncate {
        file: usize,
        size: u16,
    },
    Rename {
        from: usize,
        to: usize,
    },
    RenameDir {
        from: usize,
    },
    Unlink {
        file: usize,
    },
    Mkdir {
        dir: usize,
    },
}

/// Mostly the first two names, so handles often meet on one file.
fn file() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => 0..2usize, 1 => 0..FILES.len()]
}

fn op() -> impl Strategy<Value = Op> {
    let file = file();
    let slot = 0..SLOTS;
    prop_oneof![
        6 => (file.clone(), slot.clone(), any::<bool>()).prop_map(|(file, slot, write)| Op::Open { file, slot, write }),
        4 => (slot.clone(), 0u16..6000, 1u16..3000).prop_map(|(slot, offset, len)| Op::Write { slot, offset, len }),
        3 => (slot.clone(), (1u32 << 20)..(6 << 20)).prop_map(|(slot, len)| Op::Append { slot, len }),
        4 => slot.clone().prop_map(|slot| Op::Read { slot }),
        4 => slot.clone().prop_map(|slot| Op::Close { slot }),
        1 => slot.prop_map(|slot| Op::FailingClose { slot }),
        1 => (file.clone(), 0u16..6000).prop_map(|(file, size)| Op::Truncate { file, size }),
        2 => (file.clone(), file.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (0..DIRS.len()).prop_map(|from| Op::RenameDir { from }),
        1 => file.prop_map(|file| Op::Unlink { file }),
        1 => (0..DIRS.len()).prop_map(|dir| Op::Mkdir { dir }),
    ]
}

/// A file as a local filesystem would hold it.
#[derive(Debug, Default)]
struct Inode {
    /// What the file holds now.
    data: Vec<u8>,
    /// What its last upload held (what a handle that does not see staged bytes reads).
    committed: Option<Vec<u8>>,
    writers: usize,
    /// Written since its last upload (the next close of a writer uploads it).
    changed: bool,
    linked: bool,
    /// The name it has, or had last.
    name: String,
}

/// The bytes of a close that failed, waiting to be retried at the key the file had.
#[derive(Debug)]
struct Retried {
    key: String,
    data: Vec<u8>,
    /// When it failed, on the model's clock of writes.
    at: u64,
}

#[derive(Debug)]
enum View {
    /// Reads what the file holds (a writer, or a reader opened while it was being written).
    Current,
    /// Reads the bytes the file held at open, or gets ESTALE once they are gone.
    Pinned(Vec<u8>),
}

#[derive(Debug)]
struct Handle {
    fh: u64,
    inode: usize,
    write: bool,
    view: View,
    /// Its file was replaced by a rename: the object it read from is gone, so its reads may
    /// give ESTALE (what it writes is discarded).
    replaced: bool,
}

#[derive(Debug, Default)]
struct Model {
    names: BTreeMap<String, usize>,
    inodes: Vec<Inode>,
    dirs: BTreeSet<String>,
    handles: BTreeMap<usize, Handle>,
    /// A clock that ticks at every object written and every close that failed.
    clock: u64,
    /// When an object was last written at each key by something the mount showed.
    written: BTreeMap<String, u64>,
    retried: Vec<Retried>,
}

fn parent(f: &str) -> &str {
    f.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

impl Model {
    /// An object was written at `key` (an upload, a rename's copy): a retried close of older
    /// bytes at that key must not overwrite it.
    fn wrote(&mut self, key: &str) {
        self.clock += 1;
        self.written.insert(key.to_owned(), self.clock);
    }

    /// Files with bytes not uploaded yet, with their names, their uploads so far and what
    /// they hold, before an operation that might upload them without the model knowing.
    fn unaccounted_uploads_before(&self, store: &MemStore) -> Vec<(usize, String, u64, Vec<u8>)> {
        self.inodes
            .iter()
            .enumerate()
            .filter(|(_, i)| i.linked && i.changed)
            .map(|(id, i)| (id, i.name.clone(), store.uploads_at(&i.name), i.data.clone()))
            .collect()
    }

    /// A file whose bytes an operation needed back from S3 (a read, or a write below what a
    /// stream from memory had sent) has its stream completed first: an upload at its name
    /// of what it held before the operation, which a later failed close's old object is.
    fn account_uploads(&mut self, store: &MemStore, before: Vec<(usize, String, u64, Vec<u8>)>, op: &Op) {
        let writes = matches!(op, Op::Write { .. } | Op::Append { .. } | Op::Truncate { .. });
        for (id, name, uploads, data) in before {
            if !self.inodes[id].changed || store.uploads_at(&name) == uploads {
                continue;
            }
            let inode = &mut self.inodes[id];
            inode.committed = Some(data);
            inode.changed = writes;
            self.wrote(&name);
        }
    }

    /// Whether a close that failed at `at` was followed by a write at its key.
    fn superseded(&self, r: &Retried) -> bool {
        self.written.get(&r.key).is_some_and(|w| *w > r.at)
    }

    /// After the retries: each key holds the newest failed close no write followed, if any.
    /// Returns the bytes that must be in the recovery directory, and those that may be.
    fn land_retries(&mut self) -> (Vec<Retried>, Vec<Retried>) {
        let (mut must, mut may) = (Vec::new(), Vec::new());
        let mut newest: BTreeMap<String, Retried> = BTreeMap::new();
        for r in std::mem::take(&mut self.retried) {
            if self.superseded(&r) {
                must.push(r);
                continue;
            }
            if let Some(older) = newest.insert(r.key.clone(), r) {
                may.push(older);
            }
        }
        for (key, Retried { data, .. }) in newest {
            match self.names.get(&key) {
                Some(id) => self.inodes[*id].data = data,
                None => {
                    self.inodes.push(Inode {
                        data,
                        linked: true,
                        name: key.clone(),
                        ..Inode::default()
                    });
                    self.names.insert(key, self.inodes.len() - 1);
                }
            }
        }
        (must, may)
    }

    /// A file now takes `name`: files unlinked while open that had it may find their old
    /// object overwritten, so their handles may get ESTALE from now on.
    fn name_taken(&mut self, name: &str) {
        let gone: Vec<usize> = (0..self.inodes.len())
            .filter(|i| !self.inodes[*i].linked && self.inodes[*i].name == name)
            .collect();
        for h in self.handles.values_mut().filter(|h| gone.contains(&h.inode)) {
            h.replaced = true;
        }
    }

    fn dir_exists(&self, d: &str) -> bool {
        d.is_empty() || self.dirs.contains(d) || self.names.keys().any(|f| f.starts_with(&format!("{d}/")))
    }

    /// What a read through handle `h` may return.
    fn expected(&self, h: &Handle) -> (Vec<u8>, bool) {
        let inode = &self.inodes[h.inode];
        match &h.view {
            View::Pinned(data) => (data.clone(), true),
            View::Current if h.write || inode.writers > 0 => (inode.data.clone(), h.replaced),
            View::Current => (inode.committed.clone().unwrap_or_default(), h.replaced),
        }
    }
}

fn bytes_for(offset: u16, len: u16, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(offset as u8) ^ salt)
        .collect()
}

/// Reads everything through `fh`; `None` if the read failed with ESTALE or EIO (allowed when
/// `stale_ok`, or when the store fails reads).
async fn read_all(fs: &Arc<Fs<MemStore>>, fh: u64) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    loop {
        let data = fs.read(fh, out.len() as u64, 65536).await?;
        if data.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&data);
    }
}

async fn close(fs: &Arc<Fs<MemStore>>, m: &mut Model, slot: usize) -> Result<(), TestCaseError> {
    let Some(h) = m.handles.remove(&slot) else {
        return Ok(());
    };
    let flushed = fs.flush(h.fh).await;
    fs.release(h.fh).await;
    prop_assert!(flushed.is_ok(), "close: {:?}", flushed);
    let inode = &mut m.inodes[h.inode];
    if h.write {
        inode.writers -= 1;
        // Unlinked or not, what was written is what the handles still open read.
        inode.committed = Some(inode.data.clone());
        let uploaded = std::mem::take(&mut inode.changed) && inode.linked;
        if uploaded {
            let name = inode.name.clone();
            m.wrote(&name);
        }
    }
    Ok(())
}

/// The last close of a writer while S3 refuses changes. Only a writer alone on a file that
/// still has its name, so what the mount shows after is clear: the object S3 had, or no
/// file at all.
async fn failing_close(
    fs: &Arc<Fs<MemStore>>,
    store: &MemStore,
    m: &mut Model,
    slot: usize,
) -> Result<(), TestCaseError> {
    let Some(h) = m.handles.get(&slot) else {
        return Ok(());
    };
    let alone = m.handles.values().filter(|o| o.inode == h.inode).count() == 1;
    if !h.write || !alone || !m.inodes[h.inode].linked {
        return Ok(());
    }
    let h = m.handles.remove(&slot).expect("handle");
    store.fail_writes(true);
    let flushed = fs.flush(h.fh).await;
    fs.release(h.fh).await;
    store.fail_writes(false);
    let inode = &mut m.inodes[h.inode];
    inode.writers -= 1;
    prop_assert_eq!(
        flushed.is_err(),
        inode.changed,
        "a close fails if and only if it had to upload"
    );
    if !std::mem::take(&mut inode.changed) {
        return Ok(());
    }
    m.clock += 1;
    m.retried.push(Retried {
        key: inode.name.clone(),
        data: std::mem::take(&mut inode.data),
        at: m.clock,
    });
    match inode.committed.clone() {
        Some(old) => inode.data = old,
        None => {
            inode.linked = false;
            let name = inode.name.clone();
            m.names.remove(&name);
        }
    }
    Ok(())
}

async fn run(ops: Vec<Op>, seed: u64) -> Result<(), TestCaseError> {
    let store = Arc::new(MemStore::new());
    store.delay_randomly(Duration::from_micros(300));
    let recovery = tempfile::tempdir().expect("recovery dir");
    let fs = fs_rw_with(store.clone(), |c| {
        // Failed closes are retried only at the end of the run, when S3 answers again.
        c.retry_backoff = Duration::from_secs(600);
        c.recovery_dir = recovery.path().to_owned();
        c.block_size = 4096;
        c.max_request = 16384;
        c.cache_bytes = 64 << 10;
        // Room for two files' parts in memory: more spill to staging files.
        c.upload_memory = 20 << 20;
    });
    let mut m = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        // Reads fail now and then, as S3 does after the SDK's retries: a read may give EIO,
        // never wrong bytes.
        store.fail_randomly(if step % 2 == 0 { 30 } else { 0 }, seed ^ step as u64);
        let before = m.unaccounted_uploads_before(&store);
        apply(&fs, &store, &mut m, step, op.clone()).await?;
        m.account_uploads(&store, before, &op);
    }
    store.fail_randomly(0, 0);
    let slots: Vec<usize> = m.handles.keys().copied().collect();
    for slot in slots {
        close(&fs, &mut m, slot).await?;
    }
    fs.finish_all().await;
    prop_assert_eq!(fs.pending_files(), 0);
    let (must, may) = m.land_retries();
    let mut recovered: Vec<Vec<u8>> = std::fs::read_dir(recovery.path())
        .map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect())
        .unwrap_or_default();
    // Bytes a superseded file had sent as parts are only in its multipart upload, which
    // stays open for whoever completes it (S3 lets nobody read a part).
    let mut uploads_kept = 0;
    for r in must {
        let parts = store.open_upload_parts(&r.key);
        let Some((i, used_parts)) = recovered
            .iter()
            .enumerate()
            .find_map(|(i, file)| kept_in(file, &r.data, &parts).map(|u| (i, u)))
        else {
            return Err(TestCaseError::fail(format!(
                "the {} bytes of a failed close at {} that a newer change superseded are not in the recovery directory",
                r.data.len(),
                r.key
            )));
        };
        uploads_kept += usize::from(used_parts);
        recovered.swap_remove(i);
    }
    for file in recovered {
        let Some(used_parts) = may
            .iter()
            .find_map(|r| kept_in(&file, &r.data, &store.open_upload_parts(&r.key)))
        else {
            return Err(TestCaseError::fail(format!(
                "a recovery file of {} bytes nobody lost",
                file.len()
            )));
        };
        uploads_kept += usize::from(used_parts);
    }
    for view in [fs.clone(), fs_rw(store.clone())] {
        for f in FILES {
            match m.names.get(f) {
                Some(id) => {
                    let got = read(&view, f).await.expect("read back");
                    prop_assert!(
                        got == m.inodes[*id].data,
                        "{}: {} bytes, want {}",
                        f,
                        got.len(),
                        m.inodes[*id].data.len()
                    );
                }
                None => prop_assert!(find(&view, f).await.is_err(), "{} should not exist", f),
            }
        }
        for d in DIRS {
            prop_assert_eq!(find(&view, d).await.is_ok(), m.dir_exists(d), "{}", d);
        }
    }
    let expected: BTreeSet<String> = m
        .names
        .keys()
        .cloned()
        .chain(m.dirs.iter().map(|d| format!("{d}/")))
        .collect();
    let keys: BTreeSet<String> = store.keys().into_iter().collect();
    prop_assert_eq!(keys, expected, "S3 holds exactly the model's names");
    prop_assert_eq!(
        store.open_uploads(),
        uploads_kept,
        "no multipart upload left behind but those that hold bytes"
    );
    Ok(())
}

/// Runs one operation on the filesystem and on the model.
async fn apply(
    fs: &Arc<Fs<MemStore>>,
    store: &Arc<MemStore>,
    m: &mut Model,
    step: usize,
    op: Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Open { file, slot, write } => {
            store.fail_randomly(0, 0);
            close(fs, m, slot).await?;
            let f = FILES[file];
            if !m.dir_exists(parent(f)) {
                return Ok(());
            }
            let handle = match m.names.get(f).copied() {
                Some(id) => {
                    let a = find(fs, f).await.expect("exists");
                    let (fh, _) = fs.open(a.ino, write, false).await.expect("open");
                    let inode = &mut m.inodes[id];
                    let view = if write || inode.writers > 0 {
                        View::Current
                    } else {
                        View::Pinned(inode.committed.clone().unwrap_or_default())
                    };
                    if write {
                        inode.writers += 1;
                    }
                    Handle {
                        fh,
                        inode: id,
                        write,
                        view,
                        replaced: false,
                    }
                }
                None if write => {
                    let (p, name) = parent_of(fs, f).await;
                    let (_, fh) = fs.create(p, &name, 0o644, 0, 0).await.expect("create");
                    m.name_taken(f);
                    m.inodes.push(Inode {
                        writers: 1,
                        changed: true,
                        linked: true,
                        name: f.to_string(),
                        ..Inode::default()
                    });
                    let id = m.inodes.len() - 1;
                    m.names.insert(f.to_string(), id);
                    Handle {
                        fh,
                        inode: id,
                        write,
                        view: View::Current,
                        replaced: false,
                    }
                }
                None => return Ok(()),
            };
            m.handles.insert(slot, handle);
        }
        Op::Write { slot, offset, len } => {
            let Some(h) = m.handles.get(&slot) else { return Ok(()) };
            if !h.write {
                return Ok(());
            }
            let data = bytes_for(offset, len, step as u8);
            store.fail_randomly(0, 0);
            match fs.write(h.fh, offset.into(), Bytes::from(data.clone())).await {
                Ok(_) => {}
                // Writing below the unchanged prefix needs the old object, which a newer
                // file at the name may have overwritten.
                Err(e) if h.replaced && e.errno() == libc::ESTALE => return Ok(()),
                Err(e) => return Err(TestCaseError::fail(format!("step {step}: write: {e}"))),
            }
            let inode = &mut m.inodes[h.inode];
            inode.changed = true;
            let end = offset as usize + data.len();
            if inode.data.len() < end {
                inode.data.resize(end, 0);
            }
            inode.data[offset as usize..end].copy_from_slice(&data);
        }
        Op::Append { slot, len } => {
            let Some(h) = m.handles.get(&slot) else { return Ok(()) };
            if !h.write {
                return Ok(());
            }
            let inode = &mut m.inodes[h.inode];
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ step as u8).collect();
            store.fail_randomly(0, 0);
            let mut at = inode.data.len();
            for chunk in data.chunks(128 << 10) {
                if let Err(e) = fs.write(h.fh, at as u64, Bytes::copy_from_slice(chunk)).await {
                    return Err(TestCaseError::fail(format!("step {step}: append: {e}")));
                }
                at += chunk.len();
            }
            inode.data.extend_from_slice(&data);
            inode.changed = true;
        }
        Op::Read { slot } => {
            let Some(h) = m.handles.get(&slot) else { return Ok(()) };
            let (want, stale_ok) = m.expected(h);
            match read_all(fs, h.fh).await {
                Ok(got) => prop_assert!(
                    got == want,
                    "step {}: read {} bytes, want {}",
                    step,
                    got.len(),
                    want.len()
                ),
                Err(e) if e.errno() == libc::EIO => {}
                Err(e) => prop_assert!(stale_ok && e.errno() == libc::ESTALE, "step {}: {}", step, e),
            }
        }
        Op::Close { slot } => {
            store.fail_randomly(0, 0);
            close(fs, m, slot).await?;
        }
        Op::FailingClose { slot } => {
            store.fail_randomly(0, 0);
            failing_close(fs, store, m, slot).await?;
        }
        Op::Truncate { file, size } => {
            let f = FILES[file];
            let Some(id) = m.names.get(f).copied() else {
                return Ok(());
            };
            store.fail_randomly(0, 0);
            let a = find(fs, f).await.expect("exists");
            fs.setattr(
                a.ino,
                SetAttr {
                    size: Some(size.into()),
                    ..SetAttr::default()
                },
            )
            .await
            .expect("truncate");
            let inode = &mut m.inodes[id];
            inode.data.resize(size as usize, 0);
            if inode.writers == 0 {
                inode.committed = Some(inode.data.clone());
                m.wrote(f);
            } else {
                inode.changed = true;
            }
        }
        Op::Rename { from, to } => {
            let (f, t) = (FILES[from], FILES[to]);
            if !m.names.contains_key(f) || !m.dir_exists(parent(t)) || f == t {
                return Ok(());
            }
            store.fail_randomly(0, 0);
            let (p1, n1) = parent_of(fs, f).await;
            let (p2, n2) = parent_of(fs, t).await;
            fs.rename(p1, &n1, p2, &n2, false).await.expect("rename");
            let moved = m.names.remove(f).expect("source");
            m.wrote(f);
            m.wrote(t);
            m.inodes[moved].name = t.to_string();
            m.name_taken(t);
            if let Some(replaced) = m.names.insert(t.to_string(), moved) {
                m.inodes[replaced].linked = false;
                for h in m.handles.values_mut().filter(|h| h.inode == replaced) {
                    h.replaced = true;
                }
            }
        }
        Op::RenameDir { from } => {
            let (d, other) = (DIRS[from], DIRS[1 - from]);
            if !m.dir_exists(d) || m.dir_exists(other) {
                return Ok(());
            }
            store.fail_randomly(0, 0);
            fs.rename(ROOT_INO, d, ROOT_INO, other, false)
                .await
                .expect("rename dir");
            // Failed closes waiting under either path go to the recovery directory.
            let moved: Vec<String> = m
                .retried
                .iter()
                .map(|r| r.key.clone())
                .filter(|k| k.starts_with(&format!("{d}/")) || k.starts_with(&format!("{other}/")))
                .collect();
            for k in moved {
                m.wrote(&k);
            }
            let under: Vec<String> = m
                .names
                .keys()
                .filter(|n| n.starts_with(&format!("{d}/")))
                .cloned()
                .collect();
            for n in under {
                let id = m.names.remove(&n).expect("name");
                let new_name = format!("{other}{}", &n[d.len()..]);
                m.inodes[id].name = new_name.clone();
                m.name_taken(&new_name);
                m.names.insert(new_name, id);
            }
            if m.dirs.remove(d) {
                m.dirs.insert(other.to_string());
            }
        }
        Op::Unlink { file } => {
            let f = FILES[file];
            let Some(id) = m.names.remove(f) else { return Ok(()) };
            store.fail_randomly(0, 0);
            let (p, name) = parent_of(fs, f).await;
            fs.unlink(p, &name).await.expect("unlink");
            m.inodes[id].linked = false;
            m.wrote(f);
        }
        Op::Mkdir { dir } => {
            let d = DIRS[dir];
            store.fail_randomly(0, 0);
            let r = fs.mkdir(ROOT_INO, d, 0o755, 0, 0).await;
            prop_assert_eq!(r.is_ok(), !m.dir_exists(d), "mkdir {}", d);
            m.dirs.insert(d.to_string());
        }
    }
    Ok(())
}

/// Whether recovery file `file` keeps `data`: byte for byte (`Some(false)`), or with the
/// bytes one of `uploads` holds as parts (of the configured part size) left as zeros
/// (`Some(true)`).
fn kept_in(file: &[u8], data: &[u8], uploads: &[BTreeMap<i32, Bytes>]) -> Option<bool> {
    const PART: usize = 5 << 20;
    if file == data {
        return Some(false);
    }
    if file.len() != data.len() {
        return None;
    }
    uploads.iter().find_map(|parts| {
        let mut at = 0;
        for (n, body) in parts {
            let start = (*n as usize - 1) * PART;
            let end = start + body.len();
            if end > data.len() || data[start..end] != body[..] || start < at || file[at..start] != data[at..start] {
                return None;
            }
            at = end;
        }
        (file[at..] == data[at..]).then_some(true)
    })
}

/// One whole-file rewrite: a name, and the byte it is filled with.
#[derive(Clone, Debug)]
struct Rewrite {
    file: usize,
    fill: u8,
    fails: bool,
}

fn rewrite() -> impl Strategy<Value = Rewrite> {
    (0..3usize, any::<u8>(), prop::bool::weighted(0.4)).prop_map(|(file, fill, fails)| Rewrite { file, fill, fails })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Handles held across renames, unlinks and renames over; several handles on a file; a
    /// slow store whose reads fail now and then: every read gives the right bytes (or an
    /// error, never a mix), and S3 ends up holding exactly what the model says.
    #[test]
    fn open_handles_match_the_model(ops in proptest::collection::vec(op(), 1..60), seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run(ops, seed))?;
    }

    /// Whole-file rewrites whose uploads fail at random: after S3 answers again, each name
    /// holds its last version, and every older version that could not be uploaded is in the
    /// recovery directory, none lost, none overwriting a newer one.
    #[test]
    fn failed_uploads_end_with_the_newest_version_and_lose_nothing(writes in proptest::collection::vec(rewrite(), 1..12)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let store = Arc::new(MemStore::new());
            let recovery = tempfile::tempdir().unwrap();
            let fs = fs_rw_with(store.clone(), |c| {
                c.retry_backoff = Duration::from_millis(5);
                c.retry_time = Duration::from_secs(600);
                c.recovery_dir = recovery.path().to_owned();
            });
            write_at(&fs, "warm", 0, b"x", false).await.unwrap();
            let mut last: BTreeMap<usize, u8> = BTreeMap::new();
            let mut failed = 0;
            for w in &writes {
                store.fail_writes(w.fails);
                let name = format!("f{}", w.file);
                let data = vec![w.fill; 100 + w.file * 7];
                match write_at(&fs, &name, 0, &data, true).await {
                    Ok(()) => prop_assert!(!w.fails),
                    Err(e) => {
                        prop_assert!(w.fails, "{}", e);
                        failed += 1;
                    }
                }
                last.insert(w.file, w.fill);
            }
            store.fail_writes(false);
            fs.finish_all().await;
            for (file, fill) in &last {
                let got = store.get(&format!("f{file}")).map(|(b, _, _)| b.to_vec());
                prop_assert_eq!(got, Some(vec![*fill; 100 + file * 7]), "f{} holds its last version", file);
            }
            let status = fs.pending_status();
            prop_assert_eq!(status.files, 0);
            let recovered = std::fs::read_dir(recovery.path()).map(|d| d.count()).unwrap_or(0);
            prop_assert_eq!(recovered as u64, status.recovered);
            prop_assert!(recovered <= failed, "only failed versions are recovered");
            Ok(())
        })?;
    }
}

/// The case the generator must be able to reach: a reader opened before a writer rewrote
/// the file reads what it opened.
#[test]
fn a_pinned_reader_after_a_rewrite() {
    let ops = vec![
        Op::Open {
            file: 0,
            slot: 0,
            write: true,
        },
        Op::Write {
            slot: 0,
            offset: 0,
            len: 100,
        },
        Op::Close { slot: 0 },
        Op::Open {
            file: 0,
            slot: 1,
            write: false,
        },
        Op::Open {
            file: 0,
            slot: 2,
            write: true,
        },
        Op::Write {
            slot: 2,
            offset: 0,
            len: 100,
        },
        Op::Close { slot: 2 },
        Op::Read { slot: 1 },
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(ops, 1)).unwrap();
}
