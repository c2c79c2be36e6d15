//! What S3 says about keys, cached for the metadata TTL: directory listings and HEADs, each
//! fetched once however many callers ask at the same time. Keyed by S3 key, because that is
//! what S3 answers for; this mount's own writes and deletes patch the cache so the next
//! lookups need no request, and a rename of a directory drops it all.

use super::listing::{self, DirEntry, Listing};
use crate::fs::attr::Kind;
use crate::fs::error::FsError;
use crate::fs::lock;
use crate::fs::singleflight::SingleFlight;
use crate::store::{ObjectInfo, ObjectStore, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// A HEAD's answer: the object, or `None` if there is none.
pub type HeadResult = Result<Option<ObjectInfo>, FsError>;

/// Requests this cache has sent, for `s3role status` and tests.
#[derive(Debug, Default)]
pub struct MetaStats {
    /// HEAD requests sent.
    pub heads: AtomicU64,
    /// Listing pages requested.
    pub lists: AtomicU64,
}

/// Cached listings and HEADs.
pub struct MetaCache<S: ObjectStore> {
    store: Arc<S>,
    ttl: Duration,
    listings: Mutex<HashMap<String, Arc<Listing>>>,
    /// Changes this mount has made (writes, deletes); a listing fetched while one happened
    /// is not cached.
    changes: AtomicU64,
    list_flight: SingleFlight<String, Result<Arc<Listing>, FsError>>,
    heads: Mutex<lru::LruCache<String, (HeadResult, Instant)>>,
    head_flight: SingleFlight<String, HeadResult>,
    head_limit: Arc<Semaphore>,
    /// Requests sent.
    pub stats: MetaStats,
}

/// The listing prefix of the directory holding `key` ("" for the bucket's root), and the
/// name `key` has in it (a `dir/` marker's name has no slash).
pub fn split_key(key: &str) -> (&str, &str) {
    let base = key.trim_end_matches('/');
    match base.rfind('/') {
        Some(i) => (&key[..=i], &base[i + 1..]),
        None => ("", base),
    }
}

impl<S: ObjectStore> MetaCache<S> {
    /// An empty cache trusting answers for `ttl`, with at most `head_concurrency` HEADs in
    /// flight.
    pub fn new(store: Arc<S>, ttl: Duration, head_concurrency: usize) -> Self {
        let heads = lru::LruCache::new(std::num::NonZeroUsize::new(200_000).unwrap_or(std::num::NonZeroUsize::MIN));
        MetaCache {
            store,
            ttl,
            listings: Mutex::new(HashMap::new()),
            changes: AtomicU64::new(0),
            list_flight: SingleFlight::default(),
            heads: Mutex::new(heads),
            head_flight: SingleFlight::default(),
            head_limit: Arc::new(Semaphore::new(head_concurrency.max(1))),
            stats: MetaStats::default(),
        }
    }

    /// Whether something learned at `at` is still trusted.
    pub fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The listing of the directory whose keys start with `prefix`, from cache while fresh.
    pub async fn listing(self: &Arc<Self>, prefix: &str) -> Result<Arc<Listing>, FsError> {
        if let Some(l) = self.cached_listing(prefix) {
            return Ok(l);
        }
        let me = self.clone();
        let p = prefix.to_owned();
        self.list_flight
            .run(prefix.to_owned(), || async move {
                me.stats.lists.fetch_add(1, Ordering::Relaxed);
                let changes = me.changes.load(Ordering::Relaxed);
                let listing = Arc::new(listing::list_dir(me.store.as_ref(), &p).await?);
                // A listing that raced with a change made here may lack it: use it once,
                // do not keep it.
                if me.changes.load(Ordering::Relaxed) == changes {
                    let mut all = lock(&me.listings);
                    all.retain(|_, l| me.fresh(l.fetched));
                    all.insert(p, listing.clone());
                }
                Ok(listing)
            })
            .await
    }

    /// The cached listing of `prefix`, if fresh.
    pub fn cached_listing(&self, prefix: &str) -> Option<Arc<Listing>> {
        let l = lock(&self.listings).get(prefix).cloned()?;
        self.fresh(l.fetched).then_some(l)
    }

    /// Records the listing of a directory this mount has just made: empty.
    pub fn new_empty_dir(&self, prefix: &str, mtime: SystemTime) {
        lock(&self.listings).insert(prefix.to_owned(), Arc::new(Listing::new_dir(prefix.to_owned(), mtime)));
    }

    /// Drops the cached listing of `prefix`.
    pub fn drop_listing(&self, prefix: &str) {
        lock(&self.listings).remove(prefix);
    }

    /// HEAD of `key`, `None` if it does not exist; cached for the metadata TTL and shared by
    /// concurrent callers.
    pub async fn head(self: &Arc<Self>, key: &str) -> HeadResult {
        if let Some((r, at)) = lock(&self.heads).get(key)
            && self.fresh(*at)
        {
            return r.clone();
        }
        let me = self.clone();
        let k = key.to_owned();
        self.head_flight
            .run(key.to_owned(), || async move {
                let _permit = me.head_limit.clone().acquire_owned().await;
                me.stats.heads.fetch_add(1, Ordering::Relaxed);
                let r = match me.store.head(&k).await {
                    Ok(info) => Ok(Some(info)),
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(FsError::from(e)),
                };
                if !matches!(r, Err(FsError::Io(_))) {
                    let mut heads = lock(&me.heads);
                    heads.put(k, (r.clone(), Instant::now()));
                    // Expired answers are never served again: drop them from the cold end,
                    // so the cache holds the recent working set, not every key ever seen.
                    while heads.peek_lru().is_some_and(|(_, (_, at))| !me.fresh(*at)) {
                        heads.pop_lru();
                    }
                }
                r
            })
            .await
    }

    /// Forgets the cached HEAD of `key` (the listing is newer).
    pub fn drop_head(&self, key: &str) {
        lock(&self.heads).pop(key);
    }

    /// Records that this mount wrote `key` (a `dir/` key is a directory marker): its cached
    /// HEAD is dropped and the cached listing of its directory gains the entry, so the next
    /// lookups and creates in that directory need no request.
    pub fn wrote_key(&self, key: &str, size: u64, etag: &str, mtime: SystemTime) {
        let dir = key.ends_with('/');
        let entry = DirEntry {
            name: split_key(key).1.to_owned(),
            kind: if dir { Kind::Dir } else { Kind::File },
            size: if dir { 0 } else { size },
            etag: if dir { String::new() } else { etag.to_owned() },
            mtime,
        };
        self.patch_listing(key, |listing| listing.upsert(entry));
    }

    /// Records that this mount deleted `key` (which was the only thing at its name).
    pub fn deleted_key(&self, key: &str) {
        self.patch_listing(key, |listing| listing.remove(split_key(key).1, key.ends_with('/')));
    }

    /// Drops every cached listing and HEAD (after a directory rename).
    pub fn forget_all(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        lock(&self.listings).clear();
        lock(&self.heads).clear();
    }

    fn local_change(&self, key: &str) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        let base = key.trim_end_matches('/');
        let mut heads = lock(&self.heads);
        heads.pop(base);
        heads.pop(&format!("{base}/"));
    }

    /// Records a change this mount made at `key` and applies it to the cached listing of
    /// `key`'s directory, if there is a fresh one.
    fn patch_listing(&self, key: &str, change: impl FnOnce(&mut Listing)) {
        self.local_change(key);
        let parent = split_key(key).0;
        let mut listings = lock(&self.listings);
        let Some(listing) = listings.get_mut(parent) else {
            return;
        };
        if !self.fresh(listing.fetched) {
            listings.remove(parent);
            return;
        }
        change(Arc::make_mut(listing));
    }

    /// Objects whose HEAD is cached, and directories whose listing is.
    pub fn sizes(&self) -> (usize, usize) {
        (lock(&self.heads).len(), lock(&self.listings).len())
    }
}
