//! The daemon's heap: what it holds, and giving back what it no longer does. The allocator
//! is jemalloc rather than glibc's: `ls -l` of a large directory interleaves the short-lived
//! allocations of a hundred thousand HEADs with the long-lived inodes and attributes they
//! leave, and glibc's heap, which can only give back pages at its top, then stays at twice
//! what is in use for as long as the mount lives. jemalloc gives back any page left empty.
//! It does so as it allocates; a purge now and then, when much more is resident than in
//! use, covers a mount that has gone quiet.

use std::time::Duration;

/// The allocator of every binary and test that links this crate.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How often the trimmer looks.
const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Resident bytes beyond those in use that make a purge worth its cost (it walks every
/// arena, briefly holding its locks).
const TRIM_SLACK: u64 = 64 << 20;

/// Bytes the allocator has handed out and not had back: unlike the resident size, it does
/// not include freed memory the allocator keeps, so a leak shows here and fragmentation
/// does not.
pub fn in_use() -> Option<u64> {
    // The statistics are a snapshot taken at each new epoch.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read().ok().map(|b| b as u64)
}

/// This process's resident bytes, from /proc.
fn resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// Whether resident memory exceeds what is in use by enough to trim.
fn worth_trimming(resident: u64, in_use: u64) -> bool {
    resident > in_use.saturating_add(TRIM_SLACK)
}

/// Wakes the trimmer before its next tick.
static TRIM_NOW: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Asks the trimmer to look now: much was just freed (a large directory listed and closed).
pub fn trim_soon() {
    TRIM_NOW.notify_one();
}

/// Checks every ten seconds, and when asked, for as long as the runtime runs, and gives
/// freed memory back when much more is resident than in use.
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = TRIM_NOW.notified() => {}
            }
            let (Some(resident), Some(in_use)) = (resident(), in_use()) else {
                return;
            };
            if worth_trimming(resident, in_use) {
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    });
}

/// The control that purges every arena: 4096 is `MALLCTL_ARENAS_ALL` in jemalloc's headers.
const PURGE_ALL_ARENAS: &[u8] = b"arena.4096.purge\0";

/// Gives every page no allocation uses back to the system, in every arena. Returns whether
/// jemalloc did.
fn trim() -> bool {
    // SAFETY: the name is NUL-terminated, and this control takes no old or new value.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL_ARENAS.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    tracing::debug!(rc, resident = ?resident(), "heap purged");
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_large_slack_is_trimmed() {
        assert!(!worth_trimming(100 << 20, 90 << 20));
        assert!(worth_trimming(400 << 20, 100 << 20));
        assert!(!worth_trimming(0, u64::MAX));
    }

    #[test]
    fn the_process_knows_its_memory_and_gives_back_what_it_freed() {
        let resident = resident().expect("VmRSS");
        assert!(resident > 0);
        let held = vec![1u8; 64 << 20];
        let during = in_use().expect("jemalloc's statistics");
        assert!(during >= 64 << 20, "{during} bytes in use while 64 MiB are held");
        drop(held);
        assert!(trim(), "the purge of every arena");
    }
}
