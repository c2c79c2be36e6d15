//! Man pages and shell completions, generated from the command-line definitions so they
//! never disagree with the program. Used by `packaging/build-deb.sh` through the hidden
//! `s3role generate-docs DIR` command.

use crate::cli::Cli;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

const FSTAB_EXAMPLES: &str = r#".SH EXAMPLES
An EC2 host whose instance profile assumes a role in another account, with the external ID
that account gave, kept in a file only root can read:
.PP
.nf
analytics\-bucket:/raw /data s3role _netdev,nofail,allow_other,role_arn=arn:aws:iam::444455556666:role/Reader,external_id_file=/etc/s3role/reader.external\-id,region=eu\-west\-1 0 0
.fi
.PP
A prefix mounted read\-only, with a session policy from a file:
.PP
.nf
logs:/app /srv/logs s3role _netdev,ro,role_arn=arn:aws:iam::111122223333:role/LogReader,session_policy=@/etc/s3role/logs\-policy.json 0 0
.fi
.PP
Mounted on first access by systemd:
.PP
.nf
datasets:/ /mnt/datasets s3role _netdev,noauto,x\-systemd.automount,x\-systemd.idle\-timeout=600,role_arn=arn:aws:iam::111122223333:role/Data 0 0
.fi
.PP
mount(8) runs /sbin/mount.s3role for these lines. Every \fBs3role mount\fR option is written
\fIname\fR=\fIvalue\fR or \fIname\fR, with \- or _ in names; a comma inside a value is
written \e, or the value is read from a file with @. Options of mount(8) and systemd
(_netdev, nofail, auto, noauto, user, users, nouser, defaults, rw, dev, nodev, suid, nosuid,
exec, noexec, x\-*, comment=*) are accepted and ignored; ro is \-\-read\-only.
.SH SECRETS
The external ID and the session policy never appear in the command line of the daemon that
stays behind, which every local user can read in /proc: s3role hands them to it on its
standard input. The command that mounts is another matter. mount(8) keeps its options in
its command line until the mount answers, and so does \fBs3role mount \-\-external\-id\fR
\fIID\fR; give the ID as external_id_file=\fIPATH\fR (\fB\-\-external\-id\-file\fR),
external_id=@\fIPATH\fR, or in the environment variable S3ROLE_EXTERNAL_ID, and a session
policy as session_policy=@\fIPATH\fR. Logs say only whether they are set.
.SH STATUS
\fBs3role status\fR \fIDIR\fR shows a live mount's role chain, session expiry, renewals,
cache and uploads, and what it holds in memory (inodes, cached attributes and listings,
heap in use). It prints \fIDIR\fR/.s3role\-status, a file the daemon makes up and no
listing shows (cat(1) reads it as well). It is 0400 and belongs to the user who mounted, so
only that user and root may read it (others get EACCES), unless the mount was made with
\fB\-\-public\-status\fR (0444). The mount has no extended attributes (ENOTSUP).
.SH METRICS
.nh
\fB\-\-metrics\-addr\fR \fIHOST:PORT\fR (metrics_addr=\fIHOST:PORT\fR in fstab; off by
default) serves Prometheus text format at http://\fIHOST:PORT\fR/metrics. Every series carries
the label mount="\fIDIR\fR", or the name given with \fB\-\-metrics\-label\fR \fINAME\fR
(metrics_label=\fINAME\fR), so one scrape configuration covers many mounts. Series carry
operations and outcomes only, never keys, user names, ARNs or secrets. Among them:
.PP
.nf
s3role_s3_requests_total{operation,outcome}   outcome: ok, not_found, denied, throttled,
                                              server_error, client_error, timeout, network_error
s3role_s3_request_duration_seconds{operation} histogram, to the answer of each attempt
s3role_s3_read_bytes_total, s3role_s3_written_bytes_total
s3role_session_expiry_timestamp_seconds, s3role_session_expires_in_seconds
s3role_session_renewals_total, s3role_session_renewal_failures_total{code}
s3role_session_renewal_failing, s3role_session_last_renewal_timestamp_seconds
s3role_cache_{hits,misses}_total, s3role_cache_bytes, s3role_disk_cache_*
s3role_copy_bytes, s3role_copy_fetched_bytes_total, s3role_copy_reads_total
s3role_uploads_pending, s3role_uploads_retrying, s3role_upload_failures_total,
s3role_uploads_recovered_total, s3role_staged_bytes, s3role_open_files, s3role_inodes
.fi
.PP
Alerting rules for them (a session about to expire while renewal fails, failing uploads,
throttling, denials) are in /usr/share/doc/s3role/examples/s3role\-alerts.yml.
.SH SYSTEMD AND LOGS
The package installs the unit template s3role@.service: \fBsystemctl enable \-\-now
s3role@\fR\fINAME\fR mounts what /etc/s3role/\fINAME\fR.env says. It runs \fBs3role mount
\-\-foreground\fR as a Type=notify service. With NOTIFY_SOCKET set, s3role tells systemd
READY=1 once the mount answers, STATUS= with the role session's expiry (and the last failed
renewal) after every renewal, shown by \fBsystemctl status\fR, and STOPPING=1 when the unmount
begins. A mount that fails exits non\-zero, and the sentence it prints is its STATUS= too.
\fBsystemctl stop\fR sends SIGTERM: the mount is detached, files still open keep working
until closed, and pending uploads finish before s3role exits.
.PP
When standard error is the journal (JOURNAL_STREAM names it, as systemd sets it for a
service), entries go to the journal with their fields: ROLE_ARN, SESSION_NAME and EXPIRES
for sessions; ROLE_ARN, STEP, AWS_ERROR_CODE and REQUEST_ID for a failed renewal; OP, KEY,
AWS_ERROR_CODE and REQUEST_ID for a failed S3 request. RUST_LOG filters them as anywhere
else; \fB\-\-log\-file\fR wins over the journal. For example:
.PP
.nf
journalctl \-u s3role@data \-p warning
journalctl \-u s3role@data AWS_ERROR_CODE=AccessDenied
.fi
.PP
The daemon that \fBs3role mount\fR without \-\-foreground, mount(8) and fstab lines
(x\-systemd.automount among them) leave behind logs to syslog once the mount answers,
unless its standard error was the journal.
.SH SEE ALSO
mount(8), fstab(5), fusermount3(1), systemd.service(5), journalctl(1)
"#;

fn write_page(dir: &Path, name: &str, section: &str, cmd: clap::Command, extra: &str) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).section(section).render(&mut out)?;
    out.write_all(extra.as_bytes())?;
    std::fs::write(dir.join(format!("{name}.{section}")), out)
}

/// Writes `man/` (s3role.1, s3role-mount.1, s3role-check.1, s3role-status.1,
/// mount.s3role.8) and `completions/` (bash, zsh, fish) under `dir`.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = Cli::command();
    write_page(&man, "s3role", "1", cmd.clone(), FSTAB_EXAMPLES)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("s3role-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        let extra = if sub.get_name() == "mount" { FSTAB_EXAMPLES } else { "" };
        write_page(&man, &name, "1", page, extra)?;
    }
    write_page(&man, "mount.s3role", "8", crate::helper::command(), FSTAB_EXAMPLES)?;
    let mut cmd = Cli::command();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "s3role", &completions)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_and_completions_are_generated() {
        let dir = tempfile::tempdir().unwrap();
        super::generate(dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("man/s3role-mount.1")).unwrap();
        assert!(
            page.contains("role\\-arn") && page.contains("x\\-systemd.automount"),
            "{page}"
        );
        assert!(
            page.contains("Type=notify") && page.contains("AWS_ERROR_CODE"),
            "systemd and the journal: {page}"
        );
        assert!(dir.path().join("man/mount.s3role.8").exists());
        assert!(dir.path().join("completions/s3role.bash").exists());
    }
}
