//! `s3role status DIR`: prints the live mount's status file, `DIR/.s3role-status`, so
//! asking a daemon needs no socket. It is for the mounting user and root, or for every user
//! who can see the mount when it was mounted with `--public-status`.

use crate::status_file::STATUS_FILE;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The status text of the mount at `dir`, as the daemon renders it.
pub fn read_text(dir: &Path) -> Result<String, String> {
    let path = dir.join(STATUS_FILE);
    std::fs::read_to_string(&path).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "{}: only the user who mounted it and root may read its status ({e}); mount with --public-status to let every user",
            dir.display()
        ),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => format!("{} is not the root of an s3role mount", dir.display()),
        _ => format!("{}: {e}", path.display()),
    })
}

/// Runs `s3role status`.
pub fn run(dir: &Path) -> ExitCode {
    match read_text(dir) {
        Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            // `s3role status DIR | grep -q ...`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("s3role: writing the status: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("s3role: {e}");
            ExitCode::FAILURE
        }
    }
}
