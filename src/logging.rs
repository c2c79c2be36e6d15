//! Logging: `RUST_LOG` filters; lines go to stderr, or to syslog (and so the journal) once
//! the process has become a daemon.

use std::ffi::CString;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::fmt::MakeWriter;

static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// The log file, when the daemon writes to one instead of syslog.
static LOG_FILE: std::sync::Mutex<Option<(std::path::PathBuf, std::fs::File)>> = std::sync::Mutex::new(None);

fn open_log(path: &std::path::Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Sends log lines to `path` (appending) from now on.
pub fn use_log_file(path: &std::path::Path) -> io::Result<()> {
    let file = open_log(path)?;
    *LOG_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some((path.to_owned(), file));
    Ok(())
}

/// Reopens the log file (after logrotate moved it); called on SIGHUP.
pub fn reopen_log_file() {
    let mut guard = LOG_FILE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((path, file)) = guard.as_mut() {
        match open_log(path) {
            Ok(f) => *file = f,
            Err(e) => eprintln!("s3role: cannot reopen {}: {e}", path.display()),
        }
    }
}

/// Sends log lines to syslog from now on (after the daemon has detached from the terminal).
pub fn switch_to_syslog() {
    static IDENT: &[u8] = b"s3role\0";
    // SAFETY: IDENT is a NUL-terminated static string that outlives every syslog call.
    unsafe { libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_DAEMON) };
    TO_SYSLOG.store(true, Ordering::SeqCst);
}

/// Installs the subscriber. Without `RUST_LOG`, s3role logs at INFO and its libraries at WARN.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,fuser=error,s3role=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Destination)
        .with_target(false)
        .try_init();
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
