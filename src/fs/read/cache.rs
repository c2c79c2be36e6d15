//! A byte-bounded LRU of object blocks. Entries are keyed by object version, never by key:
//! a block of an object that was replaced is never served for the new version, and a rename
//! by this mount (which moves the version to a new key) keeps its blocks.

use bytes::Bytes;
use lru::LruCache;
use std::sync::atomic::{AtomicU64, Ordering};

/// One block of one version of one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// The object version's id.
    pub version: u64,
    /// Block number (offset / block size).
    pub index: u64,
}

/// A cached block: a range of the buffer one GET filled for it and its neighbours, so that a
/// read across neighbouring blocks is one slice of that buffer instead of a copy. The
/// budget counts blocks; a group buffer is freed with its last block, which in the worst
/// case (one block of a group kept, its neighbours evicted) holds 1 MiB for one block's
/// worth counted. Neighbours are fetched and read together, so they usually leave together.
#[derive(Clone, Debug)]
pub struct Block {
    /// The buffer shared with the neighbours fetched together (a group of at most 1 MiB).
    pub group: Bytes,
    /// Where this block lies in `group`.
    pub start: usize,
    /// Its length.
    pub len: usize,
}

impl Block {
    /// A block that is its own group (one read from the disk cache).
    pub fn alone(data: Bytes) -> Self {
        Block {
            len: data.len(),
            group: data,
            start: 0,
        }
    }

    /// Bytes `from..to` of this block.
    pub fn slice(&self, from: usize, to: usize) -> Bytes {
        self.group.slice(self.start + from..self.start + to)
    }

    /// Whether `next` directly follows this block in the same group buffer.
    pub fn followed_by(&self, next: &Block) -> bool {
        self.group.as_ptr() == next.group.as_ptr()
            && self.group.len() == next.group.len()
            && self.start + self.len == next.start
    }
}

/// Hit and miss counters, for status and benchmarks.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Blocks served from memory.
    pub hits: AtomicU64,
    /// Blocks that had to be fetched (or waited for).
    pub misses: AtomicU64,
}

/// The LRU itself; callers wrap it in a mutex and never hold that across an await.
#[derive(Debug)]
pub struct BlockCache {
    blocks: LruCache<BlockId, Block>,
    bytes: u64,
    budget: u64,
}

impl BlockCache {
    /// A cache holding at most `budget` bytes of block data.
    pub fn new(budget: u64) -> Self {
        BlockCache {
            blocks: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    /// A block, marking it recently used.
    pub fn get(&mut self, id: &BlockId) -> Option<Block> {
        self.blocks.get(id).cloned()
    }

    /// Whether a block is present, without touching its recency.
    pub fn contains(&self, id: &BlockId) -> bool {
        self.blocks.contains(id)
    }

    /// Adds a block, evicting the least recently used ones beyond the budget.
    pub fn insert(&mut self, id: BlockId, block: Block) {
        self.bytes += block.len as u64;
        if let Some((_, old)) = self.blocks.push(id, block) {
            self.bytes -= old.len as u64;
        }
        while self.bytes > self.budget {
            match self.blocks.pop_lru() {
                Some((_, old)) => self.bytes -= old.len as u64,
                None => break,
            }
        }
    }

    /// Drops a block that will not be read again soon, so its buffer can be reused.
    pub fn remove(&mut self, id: &BlockId) {
        if let Some(old) = self.blocks.pop(id) {
            self.bytes -= old.len as u64;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts a hit or a miss.
    pub fn count(stats: &CacheStats, hit: bool) {
        if hit {
            stats.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.misses.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> BlockId {
        BlockId { version: 1, index: n }
    }

    #[test]
    fn stays_within_its_byte_budget_and_evicts_least_recent() {
        let mut c = BlockCache::new(10);
        let block = |n| Block::alone(Bytes::from(vec![0; n]));
        c.insert(id(0), block(4));
        c.insert(id(1), block(4));
        assert!(c.get(&id(0)).is_some());
        c.insert(id(2), block(4));
        assert!(c.bytes() <= 10);
        assert!(c.contains(&id(0)) && !c.contains(&id(1)) && c.contains(&id(2)));
        c.insert(id(2), block(2));
        assert_eq!(c.bytes(), 6);
    }

    #[test]
    fn neighbours_in_one_buffer_are_recognised() {
        let group = Bytes::from(vec![1u8; 8]);
        let a = Block {
            group: group.clone(),
            start: 0,
            len: 4,
        };
        let b = Block {
            group: group.clone(),
            start: 4,
            len: 4,
        };
        assert!(a.followed_by(&b) && !b.followed_by(&a));
        assert!(!a.followed_by(&Block::alone(Bytes::from(vec![1u8; 4]))));
        assert_eq!(b.slice(1, 3).as_ptr(), group[5..].as_ptr());
    }

    #[test]
    fn a_new_version_is_a_different_block() {
        let mut c = BlockCache::new(100);
        c.insert(id(0), Block::alone(Bytes::from_static(b"old")));
        let other = BlockId { version: 2, index: 0 };
        assert!(c.get(&other).is_none());
    }
}
