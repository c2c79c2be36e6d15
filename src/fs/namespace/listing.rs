//! Directory listings: one delimited, paginated ListObjectsV2 turned into entries.

use crate::fs::attr::Kind;
use crate::store::{ObjectInfo, ObjectStore, StoreError};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// One name in a directory, as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (one path segment).
    pub name: String,
    /// File or directory; a symlink shows as a file until its metadata is read.
    pub kind: Kind,
    /// Size from the listing (0 for directories).
    pub size: u64,
    /// ETag from the listing ("" for directories).
    pub etag: String,
    /// Last-Modified from the listing.
    pub mtime: SystemTime,
}

/// A directory's contents at one moment.
#[derive(Clone, Debug)]
pub struct Listing {
    /// Entries, sorted by name.
    pub entries: Vec<DirEntry>,
    /// The directory's own `name/` marker object, if it has one.
    pub marker: Option<ObjectInfo>,
    /// When it was listed.
    pub fetched: Instant,
}

impl Listing {
    /// The listing of a directory this mount has just made: its marker and nothing else.
    pub fn new_dir(marker_key: String, mtime: SystemTime) -> Listing {
        Listing {
            entries: Vec::new(),
            marker: Some(ObjectInfo {
                key: marker_key,
                size: 0,
                etag: String::new(),
                last_modified: mtime,
                metadata: None,
                content_type: None,
            }),
            fetched: Instant::now(),
        }
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.name.as_str().cmp(name))
    }

    /// The entry called `name`.
    pub fn find(&self, name: &str) -> Option<&DirEntry> {
        self.position(name).ok().map(|i| &self.entries[i])
    }

    /// Adds or replaces an entry, as a fresh listing would show it: a directory hides an
    /// object of the same name.
    pub fn upsert(&mut self, entry: DirEntry) {
        match self.position(&entry.name) {
            Ok(i) if self.entries[i].kind == Kind::Dir && entry.kind != Kind::Dir => {}
            Ok(i) => self.entries[i] = entry,
            Err(i) => self.entries.insert(i, entry),
        }
    }

    /// Removes `name` if it is a directory (`dir`) or an object (`!dir`).
    pub fn remove(&mut self, name: &str, dir: bool) {
        if let Ok(i) = self.position(name)
            && (self.entries[i].kind == Kind::Dir) == dir
        {
            self.entries.remove(i);
        }
    }

    /// Whether the directory exists at all (it has a marker or anything under it).
    pub fn exists(&self) -> bool {
        self.marker.is_some() || !self.entries.is_empty()
    }
}

/// Why a key cannot be shown as a name, if it cannot.
pub fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path segment")
    } else if name == "." || name == ".." {
        Some("'.' or '..' segment")
    } else if name.len() > 255 {
        Some("segment longer than 255 bytes")
    } else if name.contains('\0') {
        Some("NUL in name")
    } else {
        None
    }
}

/// Lists everything directly under `prefix` (which ends with `/`, or is empty for the bucket
/// root), following continuation tokens to the end.
pub async fn list_dir<S: ObjectStore>(store: &S, prefix: &str) -> Result<Listing, StoreError> {
    let mut entries: BTreeMap<String, DirEntry> = BTreeMap::new();
    let mut marker = None;
    let mut token = None;
    loop {
        let page = store.list_page(prefix, Some("/"), token, None).await?;
        for obj in page.objects {
            let name = &obj.key[prefix.len()..];
            if name.is_empty() {
                marker = Some(obj);
                continue;
            }
            if name.ends_with("_$folder$") {
                continue; // legacy directory marker of old s3fs and Hadoop
            }
            if let Some(why) = invalid_name(name) {
                tracing::warn!(key = %obj.key, "skipping key that cannot be a file name: {why}");
                continue;
            }
            if entries.get(name).is_some_and(|e| e.kind == Kind::Dir) {
                tracing::warn!(key = %obj.key, "a directory of the same name hides this object");
                continue;
            }
            entries.insert(
                name.to_owned(),
                DirEntry {
                    name: name.to_owned(),
                    kind: Kind::File,
                    size: obj.size,
                    etag: obj.etag,
                    mtime: obj.last_modified,
                },
            );
        }
        for p in page.prefixes {
            let name = p[prefix.len()..].trim_end_matches('/');
            if let Some(why) = invalid_name(name) {
                tracing::warn!(prefix = %p, "skipping prefix that cannot be a directory name: {why}");
                continue;
            }
            if entries.get(name).is_some_and(|e| e.kind == Kind::File) {
                tracing::warn!(key = %format!("{prefix}{name}"), "a directory of the same name hides this object");
            }
            entries.insert(
                name.to_owned(),
                DirEntry {
                    name: name.to_owned(),
                    kind: Kind::Dir,
                    size: 0,
                    etag: String::new(),
                    mtime: SystemTime::UNIX_EPOCH,
                },
            );
        }
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    Ok(Listing {
        entries: entries.into_values().collect(),
        marker,
        fetched: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Metadata, mem::MemStore};

    #[tokio::test]
    async fn markers_prefixes_and_odd_keys() {
        let s = MemStore::new();
        for k in [
            "d/",
            "d/a",
            "d/b/c",
            "d/b/",
            "d/e/f",
            "d//x",
            "d/./y",
            "d/z",
            "d/z/q",
            "d/old_$folder$",
        ] {
            s.put(k, "x", Metadata::new());
        }
        let l = list_dir(&s, "d/").await.unwrap();
        let names: Vec<_> = l.entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            vec![("a", Kind::File), ("b", Kind::Dir), ("e", Kind::Dir), ("z", Kind::Dir)]
        );
        assert!(l.marker.is_some());
        assert!(l.find("b").is_some() && l.find("q").is_none());
    }
}
