//! Reused buffers. A block fetched from S3, or a part of a file written front to back, lives
//! in a buffer from a pool; when the cache and every reader (or the upload) lets go of it,
//! the buffer comes back instead of being freed, so a long sequential read or write does
//! not fault in fresh memory for every block or part.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Free buffers of one size.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    size: usize,
    keep: usize,
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl BufferPool {
    /// A pool of `size`-byte buffers keeping at most `keep` free ones.
    pub fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            size,
            keep,
        })
    }

    /// The size of the buffers it keeps.
    pub fn size(&self) -> usize {
        self.size
    }

    /// An empty buffer with room for `len` bytes: a reused one when `len` is the pool's size,
    /// else one of exactly `len`, so a short fetch does not hold a full-size buffer.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if len != self.size {
            return Vec::with_capacity(len);
        }
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(self.size),
        }
    }

    /// Freezes a filled buffer; it returns to the pool when the last `Bytes` is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Returns a buffer that was taken but not used.
    pub fn give_back(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.keep && buf.capacity() == self.size {
            free.push(buf);
        }
    }

    /// Free buffers held now.
    #[cfg(test)]
    pub fn free_count(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_reader_lets_go() {
        let pool = BufferPool::new(16, 2);
        assert_eq!(pool.take(4).capacity(), 4, "a short buffer is not pooled");
        let mut b = pool.take(16);
        b.extend_from_slice(b"hello");
        let bytes = pool.freeze(b);
        let slice = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(pool.free_count(), 0);
        assert_eq!(&slice[..], b"el");
        drop(slice);
        assert_eq!(pool.free_count(), 1);
        assert!(pool.take(16).is_empty());
    }
}
