//! Becoming a daemon so that `s3role mount` (and mount(8)) return only once the mount works:
//! fork before any thread exists, let the child mount, and have the parent exit with the
//! child's verdict.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The child's end of the handshake.
pub struct Readiness {
    pipe: Option<std::fs::File>,
}

/// How long the parent waits for the child to mount before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks. The parent waits for the child's verdict and exits with it (never returning);
/// the child returns its end of the handshake. Must be called before any thread starts.
pub fn daemonize() -> std::io::Result<Readiness> {
    let (read_end, write_end) = pipe()?;
    // SAFETY: no other thread exists yet (the runtime is built after this), so the child
    // is a faithful copy of a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no memory-safety preconditions.
            unsafe { libc::setsid() };
            Ok(Readiness {
                pipe: Some(std::fs::File::from(write_end)),
            })
        }
        child => {
            drop(write_end);
            std::process::exit(wait_for_child(read_end, child));
        }
    }
}

fn wait_for_child(read_end: OwnedFd, child: libc::pid_t) -> i32 {
    let mut pfd = libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, READY_TIMEOUT.as_millis() as i32) };
    if ready <= 0 {
        eprintln!(
            "s3role: the mount did not become ready within {} s",
            READY_TIMEOUT.as_secs()
        );
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child, libc::SIGTERM) };
        return 1;
    }
    let mut verdict = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut verdict);
    if verdict == "OK" {
        return 0;
    }
    if verdict.is_empty() {
        eprintln!("s3role: the daemon exited before the mount was ready");
    } else {
        eprintln!("{verdict}");
    }
    let mut status = 0;
    // SAFETY: reaping our own child; it has exited or is exiting.
    unsafe { libc::waitpid(child, &mut status, 0) };
    1
}

impl Readiness {
    /// A handshake for a process that stays in the foreground: does nothing.
    pub fn foreground() -> Self {
        Readiness { pipe: None }
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.pipe.is_some()
    }

    /// Tells the parent the mount is live; detaches from the terminal.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"OK");
            drop(p);
            crate::logging::switch_to_syslog(); // unless a log file was chosen
            detach_stdio();
        }
    }

    /// Tells the parent (or the terminal) why the mount failed.
    pub fn fail(&mut self, message: &str) {
        match self.pipe.take() {
            Some(mut p) => {
                let _ = p.write_all(message.as_bytes());
            }
            None => eprintln!("{message}"),
        }
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = std::env::set_current_dir("/");
}
