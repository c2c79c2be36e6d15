//! Telling systemd how a mount run as a `Type=notify` service is doing (sd_notify): READY=1
//! once the mount answers, STATUS= with the role session's expiry (and the last renewal
//! failure), STOPPING=1 when the unmount begins, and STATUS= with the reason a mount failed.
//!
//! Only the process systemd started may notify (the packaged unit says NotifyAccess=main), so
//! this is for `s3role mount --foreground`: the daemon `s3role mount` leaves behind is not
//! that process, and does not inherit NOTIFY_SOCKET. Without NOTIFY_SOCKET nothing is sent.
//! NOTIFY_SOCKET stays in this process's environment (the crate reads it there at each call,
//! and a foreground mount that execs itself again keeps it); the programs s3role runs itself
//! are started without it, and any other would be refused by systemd as not the main process.

use crate::creds::SessionStatus;

/// The environment variable systemd names its notification socket in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Whether a service manager listens: NOTIFY_SOCKET is set.
pub fn wanted() -> bool {
    std::env::var_os(NOTIFY_SOCKET).is_some()
}

fn send(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd ({NOTIFY_SOCKET}): {e}");
    }
}

/// The mount answers: systemd may start what depends on it.
pub fn ready(status: &str) {
    send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
}

/// A new one-line status for `systemctl status`: a renewal, its failure, or why the mount
/// failed.
pub fn status(status: &str) {
    send(&[sd_notify::NotifyState::Status(status)]);
}

/// The unmount has begun; pending uploads are finishing.
pub fn stopping(status: &str) {
    send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status(status)]);
}

/// The status line of a live mount of `what` whose role session is as `session` says: when it
/// expires, and why the last renewal failed, if it did.
pub fn session_line(what: &str, session: &SessionStatus) -> String {
    let expiry = session
        .expiry
        .map(crate::timefmt::rfc3339)
        .unwrap_or_else(|| "never".into());
    match &session.last_error {
        Some(e) => format!("mounted {what}; renewing the role session failed: {e}; session expires {expiry}"),
        None => format!("mounted {what}; session expires {expiry}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_status_line_names_the_expiry_and_the_last_failure() {
        let mut s = SessionStatus {
            expiry: Some(UNIX_EPOCH + Duration::from_secs(1_795_095_570)),
            ..SessionStatus::default()
        };
        assert_eq!(
            session_line("s3://b/p/", &s),
            "mounted s3://b/p/; session expires 2026-11-19T13:39:30Z"
        );
        s.last_error = Some("AssumeRole failed: Throttling: slow down".into());
        assert_eq!(
            session_line("s3://b/p/", &s),
            "mounted s3://b/p/; renewing the role session failed: AssumeRole failed: Throttling: slow down; session expires 2026-11-19T13:39:30Z"
        );
        s.expiry = None;
        assert!(session_line("s3://b/", &s).ends_with("session expires never"));
    }
}
