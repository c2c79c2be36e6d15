//! A renamed object whose ETag changes on the copy (a multipart upload's ETag is not the MD5
//! CopyObject gives the copy) must stay readable under its new name, at once. Found by
//! scripts/faults.sh, which renames files and directories; no fault is needed.

mod common;

use common::{Mount, Server, pattern};
use std::os::fd::AsRawFd;

/// Drops the kernel's cached pages of `path`, so the next read goes to the mount.
fn drop_pages(path: &std::path::Path) {
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: a valid descriptor; fadvise only drops clean cached pages.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[test]
fn a_renamed_multipart_file_reads_back_at_once() {
    let s = Server::start(&[]);
    let m = Mount::start(&s, "alice", "data:/rm", &s.writer_args()).expect("mount");
    let data = pattern(9 << 20, 5); // more than the 8 MiB part size: a multipart upload
    for (from, to, read) in [("f", "g", "g"), ("dir", "dir2", "dir2/f")] {
        let file = if from == "dir" {
            std::fs::create_dir(m.join("dir")).expect("mkdir");
            "dir/f"
        } else {
            from
        };
        std::fs::write(m.join(file), &data).expect("write");
        drop_pages(&m.join(file));
        std::fs::rename(m.join(from), m.join(to)).expect("rename");
        let got = std::fs::read(m.join(read));
        assert!(
            got.as_ref().is_ok_and(|g| *g == data),
            "reading {read} after renaming {from} to {to}: {:?}\n{}",
            got.map(|g| g.len()),
            m.log()
        );
    }
}
