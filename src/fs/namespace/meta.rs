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

/// Most HEADs in flight, however flat their latency stays.
pub const MAX_HEADS: usize = 256;

/// How many HEADs may be in flight. It starts at the configured number; while callers wait
/// for a slot and the latency of the last round stays within twice the lowest seen (S3 is
/// far away, not busy), it doubles, up to [`MAX_HEADS`]; when the latency climbs past four
/// times the lowest (the server is the limit), it halves, down to the start again.
struct HeadLimit {
    slots: Arc<Semaphore>,
    start: usize,
    round: Mutex<Round>,
}

#[derive(Default)]
struct Round {
    limit: usize,
    lowest: Option<Duration>,
    total: Duration,
    done: usize,
    waited: bool,
}

impl HeadLimit {
    fn new(start: usize) -> Self {
        let start = start.max(1);
        HeadLimit {
            slots: Arc::new(Semaphore::new(start)),
            start,
            round: Mutex::new(Round {
                limit: start,
                ..Round::default()
            }),
        }
    }

    async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.slots.available_permits() == 0 {
            lock(&self.round).waited = true;
        }
        self.slots.clone().acquire_owned().await.ok()
    }

    /// One HEAD took `took`: at the end of a round, adapt the limit.
    fn took(&self, took: Duration) {
        let mut r = lock(&self.round);
        r.lowest = Some(r.lowest.map_or(took, |l| l.min(took)));
        r.total += took;
        r.done += 1;
        if r.done < r.limit {
            return;
        }
        let mean = r.total / u32::try_from(r.done).unwrap_or(u32::MAX);
        let lowest = r.lowest.unwrap_or(mean).max(Duration::from_micros(100));
        if r.waited && mean <= lowest * 2 && r.limit < MAX_HEADS {
            let more = r.limit.min(MAX_HEADS - r.limit);
            self.slots.add_permits(more);
            r.limit += more;
        } else if mean > lowest * 4 && r.limit > self.start {
            let fewer = (r.limit / 2).max(self.start);
            r.limit -= self.slots.forget_permits(r.limit - fewer);
        }
        r.total = Duration::ZERO;
        r.done = 0;
        r.waited = false;
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        lock(&self.round).limit
    }
}

/// A HEAD's answer as the cache keeps it: the same facts in a third of the memory (no
/// second copy of the key; user metadata in one allocation, each name and value ended by a
/// NUL, which no HTTP header holds, rather than a B-tree of strings), since `ls -l` of a
/// large directory caches one per entry.
#[derive(Clone)]
enum CachedHead {
    Object {
        size: u64,
        etag: Box<str>,
        last_modified: SystemTime,
        metadata: Option<Box<str>>,
        content_type: Option<Box<str>>,
    },
    Missing,
    Failed(FsError),
}

impl CachedHead {
    fn of(answer: &HeadResult) -> CachedHead {
        match answer {
            Ok(Some(info)) => CachedHead::Object {
                size: info.size,
                etag: info.etag.as_str().into(),
                last_modified: info.last_modified,
                metadata: info.metadata.as_ref().map(|m| {
                    m.iter()
                        .flat_map(|(k, v)| [k.as_str(), "\0", v.as_str(), "\0"])
                        .collect::<String>()
                        .into_boxed_str()
                }),
                content_type: info.content_type.as_deref().map(Into::into),
            },
            Ok(None) => CachedHead::Missing,
            Err(e) => CachedHead::Failed(e.clone()),
        }
    }

    /// The answer for `key` again.
    fn answer(&self, key: &str) -> HeadResult {
        match self {
            CachedHead::Object {
                size,
                etag,
                last_modified,
                metadata,
                content_type,
            } => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: *size,
                etag: etag.to_string(),
                last_modified: *last_modified,
                metadata: metadata.as_deref().map(|m| {
                    let mut fields = m.split('\0');
                    std::iter::from_fn(|| Some((fields.next()?, fields.next()?)))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect()
                }),
                content_type: content_type.as_deref().map(str::to_owned),
            })),
            CachedHead::Missing => Ok(None),
            CachedHead::Failed(e) => Err(e.clone()),
        }
    }
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
    heads: Mutex<lru::LruCache<Box<str>, (CachedHead, Instant)>>,
    head_flight: SingleFlight<String, HeadResult>,
    head_limit: HeadLimit,
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
            head_limit: HeadLimit::new(head_concurrency),
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
            return r.answer(key);
        }
        let me = self.clone();
        let k = key.to_owned();
        self.head_flight
            .run(key.to_owned(), || async move {
                let _permit = me.head_limit.acquire().await;
                me.stats.heads.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let r = me.store.head(&k).await;
                me.head_limit.took(sent.elapsed());
                let r = match r {
                    Ok(info) => Ok(Some(info)),
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(FsError::from(e)),
                };
                if !matches!(r, Err(FsError::Io(_))) {
                    let mut heads = lock(&me.heads);
                    heads.put(k.into_boxed_str(), (CachedHead::of(&r), Instant::now()));
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
        heads.pop(format!("{base}/").as_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_head_answers_what_s3_said() {
        let metadata: crate::store::Metadata = [("mode", "33188"), ("empty", ""), ("note", "a b=c")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let info = ObjectInfo {
            key: "dir/f".into(),
            size: 7,
            etag: "\"abc\"".into(),
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            metadata: Some(metadata),
            content_type: Some("text/csv".into()),
        };
        for info in [
            info.clone(),
            ObjectInfo {
                metadata: Some(crate::store::Metadata::new()),
                content_type: None,
                ..info.clone()
            },
            ObjectInfo {
                metadata: None,
                ..info.clone()
            },
        ] {
            let answer = CachedHead::of(&Ok(Some(info.clone()))).answer("dir/f");
            assert_eq!(answer.ok().flatten(), Some(info));
        }
        assert!(matches!(CachedHead::of(&Ok(None)).answer("k"), Ok(None)));
        assert!(matches!(
            CachedHead::of(&Err(FsError::AccessDenied("no".into()))).answer("k"),
            Err(FsError::AccessDenied(_))
        ));
    }

    /// Runs one round of HEADs that each take `took`, with callers waiting for a slot.
    async fn round(limit: &HeadLimit, took: Duration) {
        let n = limit.limit();
        let mut permits = Vec::new();
        for _ in 0..n {
            permits.push(limit.acquire().await);
        }
        assert_eq!(limit.slots.available_permits(), 0);
        lock(&limit.round).waited = true;
        drop(permits);
        for _ in 0..n {
            limit.took(took);
        }
    }

    #[tokio::test]
    async fn more_heads_in_flight_while_latency_stays_flat_fewer_when_it_climbs() {
        let limit = HeadLimit::new(64);
        round(&limit, Duration::from_millis(20)).await;
        assert_eq!(limit.limit(), 128, "flat latency, callers waiting: double");
        round(&limit, Duration::from_millis(21)).await;
        round(&limit, Duration::from_millis(22)).await;
        assert_eq!(limit.limit(), MAX_HEADS, "never past the most");
        round(&limit, Duration::from_millis(20)).await;
        assert_eq!(limit.limit(), MAX_HEADS);
        round(&limit, Duration::from_millis(100)).await;
        assert_eq!(limit.limit(), 128, "the server is the limit: halve");
        assert_eq!(limit.slots.available_permits(), 128);
        round(&limit, Duration::from_millis(100)).await;
        round(&limit, Duration::from_millis(100)).await;
        assert_eq!(limit.limit(), 64, "never below the start");
        assert_eq!(limit.slots.available_permits(), 64);
    }

    #[test]
    fn nobody_waiting_means_no_more() {
        let limit = HeadLimit::new(8);
        for _ in 0..8 {
            limit.took(Duration::from_millis(20));
        }
        assert_eq!(limit.limit(), 8);
    }
}
