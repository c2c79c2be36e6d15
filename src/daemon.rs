//! Becoming a daemon so that `s3role mount` (and mount(8)) return only once the mount works:
//! start this program again as the daemon, in a new session, and have the first process exit
//! with the daemon's verdict.
//!
//! The daemon is started with exec, not just forked, so that its command line, which every
//! local user can read in /proc for as long as it runs, is not the one s3role was given: the
//! external ID and session policy are taken out of it and handed over on the daemon's standard
//! input, a socket that later carries the verdict back. An environment variable, not an
//! option, tells it so, which keeps this out of the options users see (help, man pages,
//! completions, `-o`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The child's end of the handshake.
pub struct Readiness {
    pipe: Option<std::fs::File>,
}

/// How long the parent waits for the child to mount before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The environment variable that tells a process s3role started that its standard input is
/// the handover; its value is [`HANDOVER_ON_STDIN`].
const HANDOVER_VARIABLE: &str = "S3ROLE_HANDOVER";

/// The value of [`HANDOVER_VARIABLE`].
const HANDOVER_ON_STDIN: &str = "stdin";

/// Most bytes a handover may hold: the secrets are a few kilobytes at most once checked.
const HANDOVER_LIMIT: usize = 32 << 10;

/// The environment variable clap reads the external ID from; a process s3role starts gets
/// the ID through the handover instead, so it is not left in that process's environment.
const EXTERNAL_ID_VARIABLE: &str = "S3ROLE_EXTERNAL_ID";

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// This program again, with `argv` (an expanded `s3role mount` command line whose secrets
/// were taken out), told to take the handover from its standard input.
fn this_program_again(argv: &[String]) -> std::io::Result<Command> {
    let (arg0, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("the command line is empty"))?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(arg0)
        .args(args)
        .env(HANDOVER_VARIABLE, HANDOVER_ON_STDIN)
        .env_remove(EXTERNAL_ID_VARIABLE);
    Ok(cmd)
}

/// Whether this process was started by s3role with a handover on its standard input (then
/// [`receive_handover`] takes it). Forgets it, so that programs this one starts do not think
/// so too; call it before any thread is started.
pub fn handover_on_stdin() -> bool {
    let handed_over = std::env::var_os(HANDOVER_VARIABLE).is_some_and(|v| v == HANDOVER_ON_STDIN);
    // SAFETY: called before any other thread exists (s3role starts its runtime later), so
    // nothing reads the environment meanwhile.
    unsafe { std::env::remove_var(HANDOVER_VARIABLE) };
    handed_over
}

/// Starts the daemon (this program with `argv`, in a new session), hands it `handover` on
/// its standard input, waits for its verdict and exits with it. Returns only when the daemon
/// could not be started.
pub fn start(argv: &[String], handover: &[u8]) -> std::io::Error {
    let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    // The daemon is not the process a service manager started, so it must not notify it.
    let spawned = this_program_again(argv).and_then(|mut c| {
        c.stdin(Stdio::from(OwnedFd::from(theirs)))
            .env_remove(crate::notify::NOTIFY_SOCKET)
            .spawn()
    });
    let child = match spawned {
        Ok(child) => child,
        Err(e) => return e,
    };
    // The command, and this process's copy of the daemon's end, are gone: if the daemon dies,
    // the socket reads as closed. A daemon that died before reading makes these writes fail;
    // its verdict (none) says so below.
    let _ = (&ours).write_all(handover);
    let _ = ours.shutdown(std::net::Shutdown::Write);
    std::process::exit(wait_for_child(OwnedFd::from(ours), child.id() as libc::pid_t));
}

/// Replaces this process by this program with `argv`, `handover` waiting on its standard
/// input: a foreground mount whose command line held a secret goes on, with the same process
/// id, under a command line without it. Returns only on failure.
pub fn exec_without_secrets(argv: &[String], handover: &[u8]) -> std::io::Error {
    if handover.len() > HANDOVER_LIMIT {
        return std::io::Error::other("the secrets to hand over are too large");
    }
    let (read_end, write_end) = match pipe() {
        Ok(p) => p,
        Err(e) => return e,
    };
    // Far below the pipe's capacity: this write does not wait for a reader.
    if let Err(e) = std::fs::File::from(write_end).write_all(handover) {
        return e;
    }
    match this_program_again(argv) {
        Ok(mut cmd) => cmd.stdin(Stdio::from(read_end)).exec(),
        Err(e) => e,
    }
}

/// For a process started with a handover ([`handover_on_stdin`]): reads what its starter
/// handed over, and replaces standard input with /dev/null. A daemon (`daemon`) also starts
/// its own session and keeps the socket to answer its starter through the returned handshake.
pub fn receive_handover(daemon: bool) -> std::io::Result<(Vec<u8>, Readiness)> {
    // SAFETY: duplicating standard input onto a new descriptor this function then owns.
    let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    let channel = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let kind = channel.metadata()?.file_type();
    let expected = if daemon { kind.is_socket() } else { kind.is_fifo() };
    if !expected {
        return Err(std::io::Error::other(format!(
            "{HANDOVER_VARIABLE} is for s3role's own use: standard input is not what s3role hands over"
        )));
    }
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto this process's standard input.
    unsafe { libc::dup2(null.as_raw_fd(), 0) };
    let mut handover = Vec::new();
    (&channel).take(HANDOVER_LIMIT as u64 + 1).read_to_end(&mut handover)?;
    if handover.len() > HANDOVER_LIMIT {
        return Err(std::io::Error::other("the handover is too large"));
    }
    if !daemon {
        return Ok((handover, Readiness::foreground()));
    }
    // SAFETY: setsid has no memory-safety preconditions; started by Command, this process
    // leads no process group, so it succeeds.
    unsafe { libc::setsid() };
    Ok((handover, Readiness { pipe: Some(channel) }))
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
        crate::notify::status(message);
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
