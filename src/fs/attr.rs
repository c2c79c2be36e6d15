//! POSIX attributes kept in object metadata, read and written the way s3fs does
//! (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`), so a bucket can be shared with s3fs users.

use crate::store::Metadata;
use std::time::{Duration, SystemTime};

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Named pipe.
pub const S_IFIFO: u32 = 0o010000;
/// Unix socket.
pub const S_IFSOCK: u32 = 0o140000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// Set-group-ID bit: on a directory, new entries take its group (and new directories the bit).
pub const S_ISGID: u16 = 0o2000;

/// The kinds of inode the filesystem shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file: one object.
    File,
    /// A directory: a `name/` marker object and/or keys under `name/`.
    Dir,
    /// A symbolic link: an object whose body is the target and whose mode says `S_IFLNK`.
    Symlink,
    /// A named pipe, an empty object whose mode says `S_IFIFO` (the kernel does the rest).
    Fifo,
    /// A Unix socket, likewise with `S_IFSOCK`.
    Socket,
    /// A character device (`S_IFCHR`, with `x-amz-meta-rdev`); mounts are nodev.
    CharDevice,
    /// A block device (`S_IFBLK`, with `x-amz-meta-rdev`); mounts are nodev.
    BlockDevice,
}

impl Kind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::File => S_IFREG,
            Kind::Dir => S_IFDIR,
            Kind::Symlink => S_IFLNK,
            Kind::Fifo => S_IFIFO,
            Kind::Socket => S_IFSOCK,
            Kind::CharDevice => S_IFCHR,
            Kind::BlockDevice => S_IFBLK,
        }
    }

    /// The kind of an `st_mode`, if it is one s3role keeps.
    pub fn of_mode(mode: u32) -> Option<Kind> {
        match mode & S_IFMT {
            S_IFREG => Some(Kind::File),
            S_IFDIR => Some(Kind::Dir),
            S_IFLNK => Some(Kind::Symlink),
            S_IFIFO => Some(Kind::Fifo),
            S_IFSOCK => Some(Kind::Socket),
            S_IFCHR => Some(Kind::CharDevice),
            S_IFBLK => Some(Kind::BlockDevice),
            _ => None,
        }
    }
}

/// Attributes of one inode, as the kernel will see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File type.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` part of the mode).
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: SystemTime,
    /// Access time (set by utimens; reads do not change it: mounts are noatime).
    pub atime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
    /// Device number of a device file.
    pub rdev: u32,
    /// Link count: for a directory 2 plus its subdirectories, 1 for anything else, 0 once
    /// unlinked while open.
    pub nlink: u32,
}

impl Attr {
    /// Attributes of something new: all three times `mtime`, no device number, no inode yet.
    pub fn new(kind: Kind, size: u64, perm: u16, uid: u32, gid: u32, mtime: SystemTime) -> Attr {
        Attr {
            ino: 0,
            kind,
            size,
            perm,
            uid,
            gid,
            mtime,
            atime: mtime,
            ctime: mtime,
            rdev: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
        }
    }
}

/// Mount-wide attributes for objects that carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// Owner of objects without `x-amz-meta-uid`.
    pub uid: u32,
    /// Group of objects without `x-amz-meta-gid`.
    pub gid: u32,
    /// Permission bits of files without `x-amz-meta-mode`.
    pub file_mode: u16,
    /// Permission bits of directories without a marker carrying `x-amz-meta-mode`.
    pub dir_mode: u16,
}

impl Default for Defaults {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Defaults {
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
        }
    }
}

/// The POSIX attributes an object's metadata carries; `None` where it says nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posix {
    /// Type from the mode's `S_IFMT` bits, if it had any.
    pub kind: Option<Kind>,
    /// Permission bits.
    pub perm: Option<u16>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Access time.
    pub atime: Option<SystemTime>,
    /// Status change time.
    pub ctime: Option<SystemTime>,
    /// Device number.
    pub rdev: Option<u32>,
}

/// Parses a mode as s3fs writes it (decimal `st_mode`), also accepting octal with a leading 0.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.len() > 1 && s.starts_with('0') {
        u32::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses a time as seconds since the epoch with an optional fraction (`1700000000.25`), or
/// as nanoseconds with an `ns` suffix (the form AWS DataSync writes).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(ns) = s.strip_suffix("ns") {
        let ns: u64 = ns.parse().ok()?;
        return SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(ns));
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = secs.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Formats a time the way s3fs writes `x-amz-meta-mtime`: whole seconds, or seconds with a
/// nanosecond fraction when there is one.
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
    }
}

fn kind_of_mode(mode: u32) -> Option<Kind> {
    Kind::of_mode(mode)
}

/// Reads the POSIX attributes from object metadata: the s3fs keys first, then the keys AWS
/// FSx and DataSync write (`file-permissions`, `file-owner`, `file-group`, `file-mtime`).
pub fn parse_metadata(m: &Metadata) -> Posix {
    let mode = m.get("mode").and_then(|v| parse_mode(v)).or_else(|| {
        m.get("file-permissions")
            .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches('0'), 8).ok())
    });
    let number = |a: &str, b: &str| m.get(a).or_else(|| m.get(b)).and_then(|v| v.trim().parse::<u32>().ok());
    let mut kind = mode.and_then(kind_of_mode);
    if m.contains_key("--symlink-target") {
        kind = Some(Kind::Symlink);
    }
    Posix {
        kind,
        perm: mode.map(|mo| (mo & 0o7777) as u16),
        uid: number("uid", "file-owner"),
        gid: number("gid", "file-group"),
        mtime: m
            .get("mtime")
            .or_else(|| m.get("file-mtime"))
            .and_then(|v| parse_time(v)),
        atime: m
            .get("atime")
            .or_else(|| m.get("file-atime"))
            .and_then(|v| parse_time(v)),
        ctime: m
            .get("ctime")
            .or_else(|| m.get("file-ctime"))
            .and_then(|v| parse_time(v)),
        rdev: m.get("rdev").and_then(|v| v.trim().parse().ok()),
    }
}

/// The metadata s3role writes on every object it creates, in s3fs's format: mode, uid,
/// gid, mtime, and (as s3fs does) atime and ctime; rdev for devices.
pub fn to_metadata(a: &Attr) -> Metadata {
    let mut m = Metadata::new();
    m.insert(
        "mode".into(),
        (a.kind.mode_bits() | u32::from(a.perm & 0o7777)).to_string(),
    );
    m.insert("uid".into(), a.uid.to_string());
    m.insert("gid".into(), a.gid.to_string());
    m.insert("mtime".into(), format_time(a.mtime));
    m.insert("atime".into(), format_time(a.atime));
    m.insert("ctime".into(), format_time(a.ctime));
    if a.rdev != 0 {
        m.insert("rdev".into(), a.rdev.to_string());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn s3fs_mode_is_decimal_st_mode() {
        let p = parse_metadata(&meta(&[("mode", "33188"), ("uid", "1000"), ("gid", "100")]));
        assert_eq!(p.kind, Some(Kind::File));
        assert_eq!(p.perm, Some(0o644));
        assert_eq!((p.uid, p.gid), (Some(1000), Some(100)));
        assert_eq!(parse_metadata(&meta(&[("mode", "16877")])).kind, Some(Kind::Dir));
        assert_eq!(parse_metadata(&meta(&[("mode", "41471")])).kind, Some(Kind::Symlink));
    }

    #[test]
    fn octal_mode_with_leading_zero() {
        assert_eq!(parse_mode("0100600"), Some(0o100600));
        assert_eq!(parse_mode("0"), Some(0));
        assert_eq!(parse_mode("x"), None);
    }

    #[test]
    fn mtime_with_fraction_and_nanoseconds() {
        let t = parse_time("1700000000.5").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 500_000_000)
        );
        let t = parse_time("1700000000000000001ns").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 1)
        );
        assert_eq!(parse_time("12.x"), None);
        assert_eq!(format_time(parse_time("1700000000").unwrap()), "1700000000");
        assert_eq!(
            format_time(parse_time("1700000000.25").unwrap()),
            "1700000000.250000000"
        );
    }

    #[test]
    fn written_metadata_reads_back() {
        let t = parse_time("1700000000.123").unwrap();
        let m = to_metadata(&Attr::new(Kind::Symlink, 3, 0o777, 5, 6, t));
        assert_eq!(m.get("mode").map(String::as_str), Some("41471"));
        let p = parse_metadata(&m);
        let want = Posix {
            kind: Some(Kind::Symlink),
            perm: Some(0o777),
            uid: Some(5),
            gid: Some(6),
            mtime: Some(t),
            atime: Some(t),
            ctime: Some(t),
            rdev: None,
        };
        assert_eq!(p, want);
        let dev = Attr {
            rdev: 0x0801,
            ..Attr::new(Kind::BlockDevice, 0, 0o660, 0, 6, t)
        };
        let p = parse_metadata(&to_metadata(&dev));
        assert_eq!((p.kind, p.rdev), (Some(Kind::BlockDevice), Some(0x0801)));
        assert_eq!(
            parse_metadata(&to_metadata(&Attr::new(Kind::Fifo, 0, 0o644, 0, 0, t))).kind,
            Some(Kind::Fifo)
        );
    }

    #[test]
    fn fsx_keys_are_a_fallback() {
        let p = parse_metadata(&meta(&[
            ("file-permissions", "0100640"),
            ("file-owner", "7"),
            ("file-mtime", "5ns"),
        ]));
        assert_eq!(p.perm, Some(0o640));
        assert_eq!(p.uid, Some(7));
        assert!(p.mtime.is_some());
    }
}
