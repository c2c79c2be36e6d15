//! Logging: `RUST_LOG` filters; lines go to stderr, or to syslog (and so the journal) once
//! the process has become a daemon.

use std::ffi::CString;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::fmt::MakeWriter;

static TO_SYSLOG: AtomicBool = AtomicBool::new(false);

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
        if TO_SYSLOG.load(Ordering::Relaxed) {
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
            LineWriter::Syslog(line, _) => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stderr(e) => e.flush(),
            LineWriter::Syslog(..) => Ok(()),
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if let LineWriter::Syslog(line, priority) = self {
            let text: Vec<u8> = line.iter().copied().filter(|&b| b != 0 && b != b'\n').collect();
            if let Ok(c) = CString::new(text) {
                // SAFETY: the format is a static "%s" and the argument a valid C string.
                unsafe { libc::syslog(*priority, c"%s".as_ptr(), c.as_ptr()) };
            }
        }
    }
}
