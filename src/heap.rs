//! The daemon's heap: what it holds, and giving back what it no longer does. After `ls -l`
//! of a large directory the allocator keeps the pages of everything freed since (expired
//! attribute answers, listing pages, request buffers) for reuse, and the resident size stays
//! at its peak for as long as the mount lives. A trim now and then, when much more is
//! resident than in use, hands those pages back to the system.

use std::time::Duration;

/// How often the trimmer looks.
const TRIM_PERIOD: Duration = Duration::from_secs(10);

/// Resident bytes beyond those in use that make a trim worth its cost (it walks the
/// allocator's free lists, briefly holding its locks).
const TRIM_SLACK: u64 = 64 << 20;

/// Bytes the allocator has handed out and not had back: unlike the resident size, it does
/// not include freed memory the allocator keeps, so a leak shows here and fragmentation
/// does not.
pub fn in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own statistics.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
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

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free pages of the allocator's own to the system.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released, resident = ?resident(), "heap trimmed");
    }
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
    fn the_process_knows_its_memory() {
        let resident = resident().expect("VmRSS");
        assert!(resident > 0);
        if let Some(in_use) = in_use() {
            assert!(in_use > 0);
        }
    }
}
