//! `s3role status DIR`: reads the live mount's `user.s3role.*` extended attributes, so
//! asking a daemon needs no socket. They are for the mounting user and root, or for every
//! user who can see the mount when it was mounted with `--public-status`.

use crate::fuse::STATUS_XATTR_PREFIX;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

fn xattr_list(path: &CString) -> std::io::Result<Vec<String>> {
    // SAFETY: a null buffer with size 0 asks for the size only.
    let n = unsafe { libc::listxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

fn xattr_get(path: &CString, name: &str) -> std::io::Result<String> {
    let name = CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are valid and buf is writable for its length.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The status pairs of the mount at `dir`.
pub fn read(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let names = xattr_list(&path).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut pairs = Vec::new();
    for name in names.iter().filter(|n| n.starts_with(STATUS_XATTR_PREFIX)) {
        let value = xattr_get(&path, name).map_err(|e| format!("{}: {name}: {e}", dir.display()))?;
        pairs.push((name[STATUS_XATTR_PREFIX.len()..].to_owned(), value));
    }
    if pairs.is_empty() {
        // The names are not listed for a user who may not read them; asking for one says so.
        let probe = format!("{STATUS_XATTR_PREFIX}source");
        return Err(match xattr_get(&path, &probe) {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => format!(
                "{}: only the user who mounted it and root may read its status ({e}); mount with --public-status to let every user",
                dir.display()
            ),
            _ => format!("{} is not the root of an s3role mount", dir.display()),
        });
    }
    Ok(pairs)
}

/// Runs `s3role status`.
pub fn run(dir: &Path) -> ExitCode {
    match read(dir) {
        Ok(pairs) => {
            let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            let mut out = std::io::stdout().lock();
            for (k, v) in pairs {
                match writeln!(out, "{k:width$}  {v}") {
                    Ok(()) => {}
                    // `s3role status DIR | grep -q ...`: the reader has what it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("s3role: writing the status: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("s3role: {e}");
            ExitCode::FAILURE
        }
    }
}
