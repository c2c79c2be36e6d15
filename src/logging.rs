//! Logging: `RUST_LOG` filters; lines go to stderr, or to syslog (and so the journal) once
//! the process has become a daemon. When standard error is the journal (a systemd service),
//! entries go to the journal itself, with their fields (ROLE_ARN, KEY, AWS_ERROR_CODE, ...)
//! as journal fields that `journalctl` can match.

use std::ffi::CString;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Set by systemd for a process whose standard output or error is a stream to the journal:
/// `DEVICE:INODE` of that stream (systemd.exec(5)).
const JOURNAL_STREAM: &str = "JOURNAL_STREAM";

/// Whether `journal_stream` (a JOURNAL_STREAM value) names the file open on `fd`. systemd
/// documents this comparison: the variable is inherited by processes whose standard error
/// was redirected elsewhere (a `2>file` in a script a service runs), and for those it fails.
fn names_stream(journal_stream: &str, fd: BorrowedFd<'_>) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the duration of the borrow, and st is a valid stat to fill.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Whether this process's standard error goes to the journal (JOURNAL_STREAM names it).
pub fn stderr_is_journal() -> bool {
    std::env::var(JOURNAL_STREAM).is_ok_and(|v| names_stream(&v, io::stderr().as_fd()))
}

static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The log file, when the daemon writes to one instead of syslog.
static LOG_FILE: std::sync::Mutex<Option<(std::path::PathBuf, std::fs::File)>> = std::sync::Mutex::new(None);

/// Opens the log file for appending: created 0600 (it names roles, sessions and keys), and
/// never through a symbolic link, which another user able to write to its directory could
/// have put there to make the daemon write wherever it points. An existing file of ours that
/// every user could read or write loses that; its group permissions stay (logrotate's
/// `create 0640 root adm` is a choice).
fn open_log(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let is_symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if e.raw_os_error() == Some(libc::ELOOP) && is_symlink {
                io::Error::other(
                    "is a symbolic link, which s3role does not follow for its log: give the path of the file itself",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions.
    let ours = meta.uid() == unsafe { libc::geteuid() };
    let mode = meta.permissions().mode() & 0o7777;
    if ours && meta.is_file() && mode & 0o007 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & !0o007))?;
    }
    Ok(file)
}

/// Sends log lines to `path` (appending) from now on. A relative path is taken from the
/// current directory now, not at a later reopen, when a daemon's is `/`.
pub fn use_log_file(path: &Path) -> io::Result<()> {
    let path = std::path::absolute(path)?;
    let file = open_log(&path)?;
    *LOG_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some((path, file));
    Ok(())
}

/// Reopens the log file (after logrotate moved it); called on SIGHUP. Whether there is one;
/// if its path cannot be opened, lines keep going to the file open so far, and the error
/// says why.
pub fn reopen_log_file() -> io::Result<bool> {
    let mut guard = LOG_FILE.lock().unwrap_or_else(|p| p.into_inner());
    let Some((path, file)) = guard.as_mut() else {
        return Ok(false);
    };
    *file = open_log(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(true)
}

/// Sends log lines to syslog from now on (after the daemon has detached from the terminal).
pub fn switch_to_syslog() {
    static IDENT: &[u8] = b"s3role\0";
    // SAFETY: IDENT is a NUL-terminated static string that outlives every syslog call.
    unsafe { libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_DAEMON) };
    TO_SYSLOG.store(true, Ordering::SeqCst);
}

/// Installs the subscriber. Without `RUST_LOG`, s3role logs at INFO and its libraries at WARN.
/// Lines are coloured when standard error is a terminal; entries go to the journal when
/// standard error is the journal.
pub fn init() {
    init_with(io::stderr().is_terminal(), stderr_is_journal());
}

/// [`init`], with ANSI colours or not (only for a terminal, never for a log file or syslog,
/// where they would show as escape codes), and to the journal or not. Without a journal
/// socket to send to, lines go to standard error after a warning that says why.
pub fn init_with(colours: bool, journal: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error,s3role=info"));
    let (journald, no_journal) = match journal.then(tracing_journald::layer) {
        // Field names as they are (ROLE_ARN, not F_ROLE_ARN), for `journalctl ROLE_ARN=...`.
        Some(Ok(layer)) => (
            Some(layer.with_field_prefix(None).with_syslog_identifier("s3role".into())),
            None,
        ),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let lines = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(Destination)
            .with_target(false)
            .with_ansi(colours)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(lines)
        .try_init();
    if let Some(e) = no_journal {
        tracing::warn!("cannot log to the journal ({e}); logging to standard error");
    }
}

struct Destination;

/// One log line on its way out.
pub enum LineWriter {
    /// To standard error, as it is written.
    Stderr(io::Stderr),
    /// Collected, then appended to the log file in one write.
    File(Vec<u8>),
    /// Collected, then sent to syslog with this priority.
    Syslog(Vec<u8>, libc::c_int),
}

impl<'a> MakeWriter<'a> for Destination {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer(libc::LOG_INFO)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            tracing::Level::ERROR => libc::LOG_ERR,
            tracing::Level::WARN => libc::LOG_WARNING,
            tracing::Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        self.writer(priority)
    }
}

impl Destination {
    fn writer(&self, priority: libc::c_int) -> LineWriter {
        if LOG_FILE.lock().map(|g| g.is_some()).unwrap_or(false) {
            LineWriter::File(Vec::new())
        } else if TO_SYSLOG.load(Ordering::Relaxed) {
            LineWriter::Syslog(Vec::new(), priority)
        } else {
            LineWriter::Stderr(io::stderr())
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Stderr(e) => e.write(buf),
            LineWriter::Syslog(line, _) | LineWriter::File(line) => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stderr(e) => e.flush(),
            LineWriter::Syslog(..) | LineWriter::File(_) => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if let LineWriter::File(line) = self {
            let mut guard = LOG_FILE.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, file)) = guard.as_mut() {
                let _ = file.write_all(line);
            }
            return;
        }
        if let LineWriter::Syslog(line, priority) = self {
            let text: Vec<u8> = line.iter().copied().filter(|&b| b != 0 && b != b'\n').collect();
            if let Ok(c) = CString::new(text) {
                // SAFETY: the format is a static "%s" and the argument a valid C string.
                unsafe { libc::syslog(*priority, c"%s".as_ptr(), c.as_ptr()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_is_recognised_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let (dev, ino) = (meta.dev(), meta.ino());
        assert!(names_stream(&format!("{dev}:{ino}"), file.as_fd()));
        assert!(
            !names_stream(&format!("{dev}:{}", ino + 1), file.as_fd()),
            "another file"
        );
        assert!(
            !names_stream(&format!("{}:{ino}", dev + 1), file.as_fd()),
            "another device"
        );
        let other = tempfile::tempfile().unwrap();
        assert!(!names_stream(&format!("{dev}:{ino}"), other.as_fd()), "redirected");
        for garbage in ["", "12", "a:b", ":", "1:2:3"] {
            assert!(!names_stream(garbage, file.as_fd()), "{garbage:?}");
        }
    }
}
