//! The rules of open files, on the in-memory store: a handle belongs to its inode, not to
//! its name; what a program wrote is never lost nor lands in the wrong place; a failed last
//! close is retried, then recovered.

use super::test_support::*;
use super::*;
use crate::store::Metadata;
use crate::store::mem::MemStore;
use bytes::Bytes;
use std::time::Duration;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// Everything a handle reads from `offset` to the end, in reads of `chunk` bytes.
async fn read_from(fs: &Arc<Fs<MemStore>>, fh: u64, offset: u64, chunk: u32) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    loop {
        let data = fs.read(fh, offset + out.len() as u64, chunk).await?;
        if data.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&data);
    }
}

async fn open_path(fs: &Arc<Fs<MemStore>>, path: &str, write: bool) -> u64 {
    let a = find(fs, path).await.expect("exists");
    fs.open(a.ino, write, false).await.expect("open").0
}

async fn close(fs: &Arc<Fs<MemStore>>, fh: u64) -> Result<(), FsError> {
    let r = fs.flush(fh).await;
    fs.release(fh).await;
    r
}

/// Waits until nothing waits to be uploaded.
async fn settled(fs: &Arc<Fs<MemStore>>) {
    for _ in 0..500 {
        if fs.pending_status().files == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("uploads still waiting: {:?}", fs.pending_status());
}

#[tokio::test]
async fn a_file_being_written_follows_its_own_rename() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "a", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"first")).await.unwrap();
    fs.rename(ROOT_INO, "a", ROOT_INO, "b", false).await.unwrap();
    fs.write(fh, 5, Bytes::from_static(b"second")).await.unwrap();
    close(&fs, fh).await.unwrap();
    assert_eq!(store.keys(), vec!["b".to_string()]);
    assert_eq!(&store.get("b").unwrap().0[..], b"firstsecond");
}

#[tokio::test]
async fn a_file_being_written_follows_a_rename_of_a_directory_above_it() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let d = fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap();
    let sub = fs.mkdir(d.ino, "sub", 0o755, 0, 0).await.unwrap();
    let (_, fh) = fs.create(sub.ino, "f", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"first")).await.unwrap();
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false).await.unwrap();
    fs.write(fh, 5, Bytes::from_static(b"second")).await.unwrap();
    close(&fs, fh).await.unwrap();
    assert_eq!(store.keys(), vec!["e/", "e/sub/", "e/sub/f"]);
    assert_eq!(&store.get("e/sub/f").unwrap().0[..], b"firstsecond");
    assert_eq!(read(&fs, "e/sub/f").await.unwrap(), b"firstsecond");
    assert!(find(&fs, "d").await.is_err());
}

#[tokio::test]
async fn an_append_after_a_rename_copies_the_old_bytes_from_the_new_name() {
    let store = Arc::new(MemStore::new());
    let old = pattern(6 << 20, 1);
    store.put("log", old.clone(), Metadata::new());
    let fs = fs_rw(store.clone());
    let fh = open_path(&fs, "log", true).await;
    fs.rename(ROOT_INO, "log", ROOT_INO, "log.1", false).await.unwrap();
    fs.write(fh, old.len() as u64, Bytes::from_static(b"TAIL"))
        .await
        .unwrap();
    close(&fs, fh).await.unwrap();
    let mut want = old;
    want.extend_from_slice(b"TAIL");
    assert_eq!(store.keys(), vec!["log.1".to_string()]);
    assert!(store.get("log.1").unwrap().0 == want);
    assert_eq!(
        store.counters.bytes_read.load(Ordering::Relaxed),
        0,
        "the 6 MiB were copied on the server, not downloaded"
    );
}

#[tokio::test]
async fn a_reader_follows_a_rename_of_its_file_and_of_its_directory() {
    let store = Arc::new(MemStore::new());
    let data = pattern(1 << 20, 2);
    store.put("d/r", data.clone(), Metadata::new());
    let fs = fs_rw(store.clone());
    let fh = open_path(&fs, "d/r", false).await;
    let first = fs.read(fh, 0, 100_000).await.unwrap();
    let d = find(&fs, "d").await.unwrap();
    fs.rename(d.ino, "r", d.ino, "s", false).await.unwrap();
    let mut got = first.to_vec();
    got.extend(read_from(&fs, fh, 100_000, 300_000).await.unwrap());
    assert!(got == data, "the rest read after the file's rename");
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", false).await.unwrap();
    assert!(
        read_from(&fs, fh, 0, 1 << 20).await.unwrap() == data,
        "and after its directory's"
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn an_unlinked_open_file_reads_to_the_end_and_what_is_written_to_it_is_discarded() {
    let store = Arc::new(MemStore::new());
    let data = pattern(1 << 20, 3);
    store.put("u", data.clone(), Metadata::new());
    let fs = fs_rw(store.clone());
    let reader = open_path(&fs, "u", false).await;
    assert_eq!(fs.read(reader, 0, 4096).await.unwrap(), &data[..4096]);
    let writer = open_path(&fs, "u", true).await;
    fs.write(writer, 0, Bytes::from_static(b"X")).await.unwrap();
    let writes = store.counters.writes.load(Ordering::Relaxed);
    fs.unlink(ROOT_INO, "u").await.unwrap();
    assert_eq!(find(&fs, "u").await.unwrap_err().errno(), libc::ENOENT);
    assert!(ls(&fs, "").await.is_empty(), "gone from the directory");
    assert!(
        read_from(&fs, reader, 4096, 128 << 10).await.unwrap() == data[4096..],
        "the reader goes on to the end"
    );
    let through_writer = read_from(&fs, writer, 0, 1 << 20).await.unwrap();
    assert_eq!(&through_writer[..1], b"X");
    assert!(through_writer[1..] == data[1..], "the writer sees its own write");
    close(&fs, writer).await.unwrap();
    assert_eq!(
        store.counters.writes.load(Ordering::Relaxed),
        writes,
        "nothing uploaded"
    );
    assert!(store.get("u").is_some(), "the object stays while a handle is open");
    fs.release(reader).await;
    assert!(store.keys().is_empty(), "and goes with the last close");
}

#[tokio::test]
async fn a_rename_over_a_file_being_written_wins_over_its_writer() {
    let store = Arc::new(MemStore::new());
    store.put("new", b"renamed".to_vec(), Metadata::new());
    let fs = fs_rw(store.clone());
    let (_, old_writer) = fs.create(ROOT_INO, "dst", 0o644, 0, 0).await.unwrap();
    fs.write(old_writer, 0, Bytes::from_static(b"the old writer's bytes"))
        .await
        .unwrap();
    fs.rename(ROOT_INO, "new", ROOT_INO, "dst", false).await.unwrap();
    fs.write(old_writer, 0, Bytes::from_static(b"more")).await.unwrap();
    close(&fs, old_writer)
        .await
        .expect("the old writer's close is no error");
    assert_eq!(store.keys(), vec!["dst".to_string()]);
    assert_eq!(&store.get("dst").unwrap().0[..], b"renamed");
    assert_eq!(read(&fs, "dst").await.unwrap(), b"renamed");
}

#[tokio::test]
async fn a_reader_opened_before_a_rewrite_never_mixes_old_and_new_bytes() {
    let store = Arc::new(MemStore::new());
    let (v1, v2) = (pattern(3 << 20, 4), pattern(3 << 20, 5));
    store.put("f", v1.clone(), Metadata::new());
    let fs = fs_rw(store.clone());
    let reader = open_path(&fs, "f", false).await;
    assert_eq!(fs.read(reader, 0, 65536).await.unwrap(), &v1[..65536]);
    write_at(&fs, "f", 0, &v2, true).await.unwrap();
    assert!(store.get("f").unwrap().0 == v2);
    let mut offset = 65536u64;
    while offset < v1.len() as u64 {
        match fs.read(reader, offset, 131_072).await {
            Ok(data) => {
                let at = offset as usize;
                assert!(data[..] == v1[at..at + data.len()], "old bytes at {offset}");
                offset += data.len() as u64;
            }
            Err(e) => {
                assert_eq!(e.errno(), libc::ESTALE, "{e}");
                offset += 131_072;
            }
        }
    }
    fs.release(reader).await;
    assert!(read(&fs, "f").await.unwrap() == v2, "a new reader reads the new bytes");
}

#[tokio::test]
async fn an_open_racing_the_last_close_gets_a_handle_that_works() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, Bytes::from(vec![1u8; 1024])).await.unwrap();
    store.pause_writes();
    let closing = {
        let fs = fs.clone();
        tokio::spawn(async move { fs.release(fh).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let f = find(&fs, "f").await.unwrap();
    let (again, _) = fs.open(f.ino, true, false).await.unwrap();
    store.resume_writes();
    fs.write(again, 1024, Bytes::from(vec![2u8; 1024]))
        .await
        .expect("the new handle writes");
    closing.await.unwrap();
    close(&fs, again).await.unwrap();
    let (body, _, _) = store.get("f").unwrap();
    assert_eq!(body.len(), 2048);
    assert!(body[..1024].iter().all(|b| *b == 1) && body[1024..].iter().all(|b| *b == 2));
}

#[tokio::test]
async fn attributes_set_through_an_open_file_are_stored_whichever_way_it_goes_up() {
    let store = Arc::new(MemStore::new());
    store.put("copied", pattern(6 << 20, 6), Metadata::new());
    store.put("shrunk", pattern(1000, 7), Metadata::new());
    let fs = fs_rw(store.clone());
    let then = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let set = SetAttr {
        mode: Some(0o600),
        mtime: Some(then),
        ..SetAttr::default()
    };
    // Streamed parts: a large file written in order, then chmod and utimens (cp -p).
    let (s, fh) = fs.create(ROOT_INO, "streamed", 0o644, 0, 0).await.unwrap();
    for i in 0..12u64 {
        fs.write(fh, i << 20, Bytes::from(pattern(1 << 20, i as u8)))
            .await
            .unwrap();
    }
    assert_eq!(store.open_uploads(), 1, "parts go up while it is written");
    fs.setattr(s.ino, set).await.unwrap();
    close(&fs, fh).await.unwrap();
    // The staging file: a small file written out of order.
    let (t, fh) = fs.create(ROOT_INO, "staged", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 10, Bytes::from_static(b"world")).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"hello")).await.unwrap();
    fs.setattr(t.ino, set).await.unwrap();
    close(&fs, fh).await.unwrap();
    // A server-side copy: opened for writing, only attributes changed.
    let fh = open_path(&fs, "copied", true).await;
    let c = find(&fs, "copied").await.unwrap();
    fs.setattr(c.ino, set).await.unwrap();
    close(&fs, fh).await.unwrap();
    // ftruncate through an open file.
    let fh = open_path(&fs, "shrunk", true).await;
    let k = find(&fs, "shrunk").await.unwrap();
    fs.setattr(k.ino, SetAttr { size: Some(10), ..set }).await.unwrap();
    close(&fs, fh).await.unwrap();
    assert_eq!(
        store.counters.bytes_read.load(Ordering::Relaxed),
        0,
        "nothing downloaded"
    );
    assert_eq!(store.get("shrunk").unwrap().0.len(), 10);
    assert_eq!(store.get("copied").unwrap().0.len(), 6 << 20);
    let fresh = fs_rw(store.clone());
    for name in ["streamed", "staged", "copied", "shrunk"] {
        let meta = store.get(name).unwrap().1;
        assert_eq!(meta.get("mode").map(String::as_str), Some("33152"), "{name}: {meta:?}");
        assert_eq!(meta.get("mtime").map(String::as_str), Some("1600000000"), "{name}");
        let a = find(&fresh, name).await.unwrap();
        assert_eq!((a.perm, a.mtime), (0o600, then), "{name} after a remount");
    }
}

#[tokio::test]
async fn fsync_on_any_descriptor_uploads_what_the_file_holds() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, writer) = fs.create(ROOT_INO, "f", 0o644, 0, 0).await.unwrap();
    fs.write(writer, 0, Bytes::from_static(b"abc")).await.unwrap();
    let reader = open_path(&fs, "f", false).await;
    fs.fsync(reader).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"abc");
    fs.release(reader).await;
    fs.release(writer).await;
}

#[tokio::test]
async fn names_whose_key_s3_cannot_store_are_refused_where_they_are_made() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let mut dir = ROOT_INO;
    for c in ['a', 'b', 'c', 'd'] {
        dir = fs
            .mkdir(dir, &c.to_string().repeat(250), 0o755, 0, 0)
            .await
            .unwrap()
            .ino;
    }
    // 4 × 251 bytes of directories: a name of 20 fits in 1,024, one of 21 does not.
    let long = "f".repeat(21);
    assert_eq!(
        fs.create(dir, &long, 0o644, 0, 0).await.unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        fs.mkdir(dir, &"g".repeat(20), 0o755, 0, 0).await.unwrap_err().errno(),
        libc::ENAMETOOLONG,
        "a directory's marker has one more byte"
    );
    assert_eq!(
        fs.symlink(dir, &long, "t", 0, 0).await.unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    let (_, fh) = fs.create(dir, &"f".repeat(20), 0o644, 0, 0).await.unwrap();
    close(&fs, fh).await.unwrap();
    assert_eq!(
        fs.rename(dir, &"f".repeat(20), dir, &long, false)
            .await
            .unwrap_err()
            .errno(),
        libc::ENAMETOOLONG
    );
    assert!(store.keys().iter().all(|k| k.len() <= 1024));
}

#[tokio::test]
async fn a_close_that_cannot_upload_is_retried_and_shows_what_s3_has_meanwhile() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw_with(store.clone(), |c| c.retry_backoff = Duration::from_millis(20));
    write_at(&fs, "warm", 0, b"the role may write here", false)
        .await
        .unwrap();
    store.fail_writes(true);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"data")).await.unwrap();
    assert_eq!(fs.flush(fh).await.unwrap_err().errno(), libc::EIO);
    fs.release(fh).await;
    let waiting = fs.pending_status();
    assert_eq!(waiting.files, 1);
    assert!(waiting.oldest_failure.is_some());
    assert_eq!(find(&fs, "f").await.unwrap_err().errno(), libc::ENOENT, "no ghost");
    assert_eq!(ls(&fs, "").await, ["warm".to_string()].into());
    store.fail_writes(false);
    settled(&fs).await;
    assert_eq!(&store.get("f").unwrap().0[..], b"data");
    assert_eq!(read(&fs, "f").await.unwrap(), b"data");
    assert_eq!(fs.pending_status().recovered, 0);
}

#[tokio::test]
async fn what_cannot_be_uploaded_in_time_goes_to_the_recovery_directory() {
    use std::os::unix::fs::PermissionsExt;
    let store = Arc::new(MemStore::new());
    let recovery = tempfile::tempdir().unwrap();
    let fs = fs_rw_with(store.clone(), |c| {
        c.retry_backoff = Duration::from_millis(20);
        c.retry_time = Duration::from_millis(200);
        c.recovery_dir = recovery.path().join("rec");
    });
    write_at(&fs, "warm", 0, b"x", false).await.unwrap();
    store.fail_writes(true);
    let (_, fh) = fs.create(ROOT_INO, "precious", 0o644, 0, 0).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"precious bytes")).await.unwrap();
    assert!(close(&fs, fh).await.is_err());
    settled(&fs).await;
    assert_eq!(fs.pending_status().recovered, 1);
    let files: Vec<_> = std::fs::read_dir(recovery.path().join("rec"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("precious."));
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"precious bytes");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(store.get("precious").is_none());
}

#[tokio::test]
async fn a_newer_version_supersedes_a_retried_upload_of_older_bytes() {
    let (store, fs, recovery) = retried_at_unmount();
    write_at(&fs, "warm", 0, b"x", false).await.unwrap();
    store.fail_writes(true);
    assert!(write_at(&fs, "f", 0, b"old", false).await.is_err());
    store.fail_writes(false);
    write_at(&fs, "f", 0, b"new", false).await.unwrap();
    fs.finish_all().await;
    assert_eq!(
        &store.get("f").unwrap().0[..],
        b"new",
        "the older bytes never overwrite"
    );
    let kept = recovered(&recovery);
    assert_eq!(kept, vec![b"old".to_vec()], "nor are they lost");
}

#[tokio::test]
async fn unmount_uploads_what_waits_once_s3_answers() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw_with(store.clone(), |c| c.retry_backoff = Duration::from_secs(600));
    write_at(&fs, "warm", 0, b"x", false).await.unwrap();
    store.fail_writes(true);
    assert!(write_at(&fs, "f", 0, b"late", false).await.is_err());
    store.fail_writes(false);
    fs.finish_all().await;
    assert_eq!(&store.get("f").unwrap().0[..], b"late");
    assert_eq!(
        fs.pending_status(),
        PendingStatus {
            failed_closes: 1,
            ..PendingStatus::default()
        }
    );
}

#[tokio::test]
async fn a_file_written_front_to_back_is_never_staged_on_disk() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "big", 0o644, 0, 0).await.unwrap();
    let data = pattern(64 << 20, 21);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (i as u64) << 20, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
        assert_eq!(fs.staged_bytes(), 0);
    }
    close(&fs, fh).await.unwrap();
    let (_, small) = fs.create(ROOT_INO, "small", 0o644, 0, 0).await.unwrap();
    fs.write(small, 0, Bytes::from_static(b"one put")).await.unwrap();
    close(&fs, small).await.unwrap();
    assert_eq!(fs.staging_files_made(), 0, "no staging file at all");
    assert!(store.get("big").unwrap().0 == data);
    assert_eq!(&store.get("small").unwrap().0[..], b"one put");
    let (now, peak) = fs.upload_memory();
    assert_eq!(now, 0, "the memory goes back");
    assert!(peak <= FsConfig::default().upload_memory);
}

#[tokio::test]
async fn a_file_kept_in_memory_changes_course_without_losing_a_byte() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let mut want = pattern(12 << 20, 22);
    // Parts went up (5 MiB each here); then the writer reads back the start, patches a
    // header, and appends again.
    let (f, fh) = fs.create(ROOT_INO, "f", 0o644, 0, 0).await.unwrap();
    write_front_to_back(&fs, fh, &want).await;
    assert_eq!(store.open_uploads(), 1, "parts are on their way");
    assert_eq!(
        fs.read(fh, 100, 50).await.unwrap(),
        &want[100..150],
        "bytes already sent read back"
    );
    fs.write(fh, 10, Bytes::from_static(b"HEADER")).await.unwrap();
    want[10..16].copy_from_slice(b"HEADER");
    let more = pattern(3 << 20, 23);
    fs.write(fh, want.len() as u64, Bytes::from(more.clone()))
        .await
        .unwrap();
    want.extend_from_slice(&more);
    assert_eq!(fs.getattr(f.ino).await.unwrap().size, want.len() as u64);
    close(&fs, fh).await.unwrap();
    assert!(store.get("f").unwrap().0 == want, "the object is what was written");
    assert_eq!(store.open_uploads(), 0);
    // Truncated to a smaller size after parts went up.
    let (_, fh) = fs.create(ROOT_INO, "t", 0o644, 0, 0).await.unwrap();
    let data = pattern(11 << 20, 24);
    fs.write(fh, 0, Bytes::from(data.clone())).await.unwrap();
    let t = find(&fs, "t").await.unwrap();
    fs.setattr(
        t.ino,
        SetAttr {
            size: Some(7 << 20),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    close(&fs, fh).await.unwrap();
    assert!(store.get("t").unwrap().0 == data[..7 << 20]);
    // Renamed while parts are on their way: everything lands at the new name.
    let (_, fh) = fs.create(ROOT_INO, "r", 0o644, 0, 0).await.unwrap();
    let data = pattern(11 << 20, 25);
    fs.write(fh, 0, Bytes::from(data.clone())).await.unwrap();
    fs.rename(ROOT_INO, "r", ROOT_INO, "r2", false).await.unwrap();
    fs.write(fh, data.len() as u64, Bytes::from_static(b"end"))
        .await
        .unwrap();
    close(&fs, fh).await.unwrap();
    let mut want = data;
    want.extend_from_slice(b"end");
    assert!(store.get("r").is_none());
    assert!(store.get("r2").unwrap().0 == want);
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn writers_past_the_memory_budget_spill_to_staging_and_lose_nothing() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw_with(store.clone(), |c| c.upload_memory = 12 << 20);
    let datas: Vec<Vec<u8>> = (0..4).map(|i| pattern(9 << 20, 30 + i)).collect();
    let mut handles = Vec::new();
    for i in 0..4 {
        handles.push(fs.create(ROOT_INO, &format!("w{i}"), 0o644, 0, 0).await.unwrap().1);
    }
    // Interleaved, so every file holds memory while the others want more.
    for n in 0..9usize {
        for (i, fh) in handles.iter().enumerate() {
            let chunk = &datas[i][n << 20..(n + 1) << 20];
            fs.write(*fh, (n as u64) << 20, Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
    }
    for fh in handles {
        close(&fs, fh).await.unwrap();
    }
    for (i, data) in datas.iter().enumerate() {
        assert!(store.get(&format!("w{i}")).unwrap().0 == *data, "w{i}");
    }
    assert!(fs.staging_files_made() > 0, "some spilled to staging");
    assert!(fs.upload_memory().1 <= 12 << 20);
    assert_eq!(fs.staged_bytes(), 0);
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn only_the_opening_process_uploads_at_close() {
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, 0, 0).await.unwrap();
    fs.opened_by(fh, 100);
    fs.write(fh, 0, Bytes::from_static(b"first")).await.unwrap();
    // A child that inherited the descriptor closes it: nothing goes up yet.
    fs.flush_by(fh, Some(200)).await.unwrap();
    assert!(store.get("f").is_none(), "a child's close does not upload");
    fs.write(fh, 5, Bytes::from_static(b" second")).await.unwrap();
    // The opener's close, from any of its threads, does.
    fs.flush_by(fh, Some(100)).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"first second");
    // A close whose process the kernel did not name uploads too.
    fs.write(fh, 12, Bytes::from_static(b"!")).await.unwrap();
    fs.flush_by(fh, None).await.unwrap();
    assert_eq!(&store.get("f").unwrap().0[..], b"first second!");
    fs.release(fh).await;
}

#[tokio::test]
async fn a_file_unlinked_after_its_parts_went_up_reads_back_whole_until_closed() {
    // A program writes a large scratch file, unlinks it while it is open (so nothing is
    // left behind), then reads it back: the bytes that went up only as parts and left
    // memory must still be there.
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let data = pattern(12 << 20, 24);
    let (_, fh) = fs.create(ROOT_INO, "scratch", 0o644, 0, 0).await.unwrap();
    write_front_to_back(&fs, fh, &data).await;
    assert_eq!(store.open_uploads(), 1, "parts went up from memory");
    fs.unlink(ROOT_INO, "scratch").await.unwrap();
    assert_eq!(find(&fs, "scratch").await.unwrap_err().errno(), libc::ENOENT);
    assert!(ls(&fs, "").await.is_empty(), "gone from the directory");
    let back = read_from(&fs, fh, 0, 16 << 20).await.unwrap();
    assert!(back == data, "read back {} bytes, not what was written", back.len());
    close(&fs, fh).await.unwrap();
    assert!(store.keys().is_empty(), "nothing left in S3 after the last close");
    assert_eq!(store.open_uploads(), 0, "no upload left open");
}

#[tokio::test]
async fn a_reader_of_an_unlinked_file_still_reads_what_its_writer_wrote_after_the_writer_closes() {
    // As on a local disk: a writer and a reader share a scratch file, it is unlinked, the
    // writer closes, and the reader still reads every byte until it closes too.
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let (attr, writer) = fs.create(ROOT_INO, "shared", 0o644, 0, 0).await.unwrap();
    fs.write(writer, 0, Bytes::from_static(b"written, never uploaded"))
        .await
        .unwrap();
    let reader = fs.open(attr.ino, false, false).await.unwrap().0;
    fs.unlink(ROOT_INO, "shared").await.unwrap();
    close(&fs, writer).await.unwrap();
    assert_eq!(
        read_from(&fs, reader, 0, 4096).await.unwrap(),
        b"written, never uploaded"
    );
    close(&fs, reader).await.unwrap();
    assert!(store.keys().is_empty(), "nothing in S3");
    assert_eq!(fs.staged_bytes(), 0, "and nothing left staged once the reader is gone");
    assert_eq!(fs.pending_files(), 0);
}

/// Writes `data` from offset 0 in 1 MiB writes, as the kernel passes a program's writes on.
async fn write_front_to_back(fs: &Arc<Fs<MemStore>>, fh: u64, data: &[u8]) {
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (i as u64) << 20, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_unlink_that_cannot_complete_the_upload_fails_and_loses_nothing() {
    // S3 refuses the completion the unlink needs: the unlink fails, the name stays, every
    // byte still reads back through the open handle, and a later unlink (S3 back) goes on.
    let store = Arc::new(MemStore::new());
    let fs = fs_rw(store.clone());
    let data = pattern(12 << 20, 25);
    let (_, fh) = fs.create(ROOT_INO, "scratch", 0o644, 0, 0).await.unwrap();
    write_front_to_back(&fs, fh, &data).await;
    store.fail_writes(true);
    let refused = fs.unlink(ROOT_INO, "scratch").await;
    assert_eq!(refused.map_err(|e| e.errno()), Err(libc::EIO));
    store.fail_writes(false);
    assert!(find(&fs, "scratch").await.is_ok(), "the name stays");
    assert!(read_from(&fs, fh, 0, 16 << 20).await.unwrap() == data, "nothing lost");
    fs.unlink(ROOT_INO, "scratch").await.unwrap();
    assert!(
        read_from(&fs, fh, 0, 16 << 20).await.unwrap() == data,
        "read back after the unlink"
    );
    close(&fs, fh).await.unwrap();
    assert!(store.keys().is_empty(), "nothing left in S3");
    assert_eq!(store.open_uploads(), 0, "no upload left open");
}

/// A file whose last close failed waits to be retried at its key; a rename onto that key
/// since is a newer version there: the rename's bytes stay, the older ones go to recovery.
#[tokio::test]
async fn a_rename_onto_a_key_supersedes_a_retried_upload_of_older_bytes() {
    let (store, fs, recovery) = retried_at_unmount();
    write_at(&fs, "f", 0, b"first", false).await.unwrap();
    store.fail_writes(true);
    assert!(write_at(&fs, "f", 0, b"retried", true).await.is_err());
    store.fail_writes(false);
    write_at(&fs, "g", 0, b"renamed over", false).await.unwrap();
    fs.rename(ROOT_INO, "g", ROOT_INO, "f", false).await.unwrap();
    fs.finish_all().await;
    assert_eq!(
        &store.get("f").unwrap().0[..],
        b"renamed over",
        "what the rename put there stays"
    );
    let kept = recovered(&recovery);
    assert_eq!(kept, vec![b"retried".to_vec()], "and the older bytes are not lost");
}

/// The same for a directory renamed over the place where a retried file would go.
#[tokio::test]
async fn a_directory_renamed_onto_a_retried_key_supersedes_it() {
    let (store, fs, recovery) = retried_at_unmount();
    fs.mkdir(ROOT_INO, "d1", 0o755, 0, 0).await.unwrap();
    store.fail_writes(true);
    assert!(write_at(&fs, "d1/a", 0, b"retried", false).await.is_err());
    store.fail_writes(false);
    fs.rmdir(ROOT_INO, "d1").await.unwrap();
    fs.mkdir(ROOT_INO, "d0", 0o755, 0, 0).await.unwrap();
    write_at(&fs, "d0/a", 0, b"moved here", false).await.unwrap();
    fs.rename(ROOT_INO, "d0", ROOT_INO, "d1", false).await.unwrap();
    fs.finish_all().await;
    assert_eq!(
        &store.get("d1/a").unwrap().0[..],
        b"moved here",
        "what the rename put there stays"
    );
    let kept = recovered(&recovery);
    assert_eq!(kept, vec![b"retried".to_vec()], "and the older bytes are not lost");
}

/// A file whose close failed is unlinked (the mount showed its older object, which the
/// unlink deletes) before S3 takes the retried upload: the bytes go to the recovery
/// directory, neither deleted with the old object nor bringing back the name.
#[tokio::test]
async fn an_unlink_after_a_failed_close_sends_the_bytes_to_recovery() {
    let (store, fs, recovery) = retried_at_unmount();
    write_at(&fs, "a", 0, b"", false).await.unwrap();
    store.fail_writes(true);
    assert!(write_at(&fs, "a", 0, &[7u8; 1 << 20], false).await.is_err());
    store.fail_writes(false);
    fs.unlink(ROOT_INO, "a").await.unwrap();
    fs.finish_all().await;
    assert!(store.keys().is_empty(), "the name stays gone: {:?}", store.keys());
    assert!(find(&fs, "a").await.is_err());
    let kept = recovered(&recovery);
    assert_eq!(kept, vec![vec![7u8; 1 << 20]], "and the bytes are not lost");
    assert_eq!(fs.pending_status().recovered, 1);
}

/// A filesystem whose failed closes are retried only at unmount (`finish_all`), with its
/// store and recovery directory.
fn retried_at_unmount() -> (Arc<MemStore>, Arc<Fs<MemStore>>, tempfile::TempDir) {
    let store = Arc::new(MemStore::new());
    let recovery = tempfile::tempdir().unwrap();
    let fs = fs_rw_with(store.clone(), |c| {
        c.retry_backoff = Duration::from_secs(600);
        c.recovery_dir = recovery.path().to_owned();
    });
    (store, fs, recovery)
}

/// The contents of every file in the recovery directory.
fn recovered(recovery: &tempfile::TempDir) -> Vec<Vec<u8>> {
    std::fs::read_dir(recovery.path())
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}
