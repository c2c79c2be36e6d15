//! Attributes of an open directory's entries, fetched ahead of the kernel's READDIRPLUS
//! requests. A listing carries no user metadata, so where objects keep POSIX attributes
//! there, each entry costs a HEAD. They are sent in the order the kernel reads the entries,
//! many at a time, but never more than [`WINDOW`] entries past the last one it asked for: so
//! an answer is seconds old at most when it is returned, however large the directory, and
//! a program that stops reading early costs no more than that.

use super::{DirItem, Found};
use crate::fs::FsError;
use std::sync::Arc;
use tokio::sync::{OnceCell, watch};

/// How many entries past the kernel's position attributes are fetched.
pub const WINDOW: usize = 4096;

/// Fetches that may wait for a HEAD slot at once (the HEADs in flight are bounded by the
/// metadata cache).
const QUEUED: usize = 1024;

/// One entry's attributes: fetched once, by the filler or by the reader that needs them
/// first, whichever comes first. `None`: nothing is there any more.
pub(super) type Slot = OnceCell<Result<Option<Found>, FsError>>;

/// The cursor of a directory nobody has asked attributes of yet: the filler waits.
const NOT_STARTED: usize = usize::MAX;

/// The entries of one open directory and their attributes, as they arrive.
pub struct DirFill {
    /// The directory.
    pub(super) dir: u64,
    /// Its path when it was opened (`None`: it has no name any more).
    pub(super) path: Option<String>,
    /// Its entries, as `opendir` listed them.
    pub(super) items: Arc<Vec<DirItem>>,
    /// Their attributes, by index.
    pub(super) slots: Arc<Vec<Slot>>,
    /// The first entry the kernel has not had yet; closing the directory drops it, which
    /// stops the filler.
    cursor: watch::Sender<usize>,
}

impl DirFill {
    pub(super) fn new(dir: u64, path: Option<String>, items: Arc<Vec<DirItem>>) -> (Self, watch::Receiver<usize>) {
        let (cursor, rx) = watch::channel(NOT_STARTED);
        let slots = Arc::new((0..items.len()).map(|_| Slot::new()).collect());
        (
            DirFill {
                dir,
                path,
                items,
                slots,
                cursor,
            },
            rx,
        )
    }

    /// The kernel asks for the entries from `offset` on with their attributes: fetch ahead
    /// of it (the first call starts the filler).
    pub fn advance(&self, offset: usize) {
        self.cursor.send_if_modified(|at| {
            let moved = *at == NOT_STARTED || offset > *at;
            if moved {
                *at = offset;
            }
            moved
        });
    }

    /// Whether attributes were asked for (the filler runs).
    pub fn started(&self) -> bool {
        *self.cursor.borrow() != NOT_STARTED
    }

    /// The entries.
    pub fn items(&self) -> &Arc<Vec<DirItem>> {
        &self.items
    }
}

/// Waits until attributes are asked for and entry `index` is within the window ahead of the
/// kernel's position; `false` once the directory is closed.
pub(super) async fn wait_for_window(rx: &mut watch::Receiver<usize>, index: usize) -> bool {
    loop {
        if rx.has_changed().is_err() {
            return false;
        }
        let at = *rx.borrow_and_update();
        if at != NOT_STARTED && index < at.saturating_add(WINDOW) {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Whether the filler keeps enough fetches queued: wait for one when it has too many.
pub(super) async fn throttle(tasks: &mut tokio::task::JoinSet<()>) {
    while tasks.len() >= QUEUED {
        tasks.join_next().await;
    }
}
