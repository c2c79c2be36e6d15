//! `s3role mount`: validate, obtain the first role session, check the bucket, mount, and
//! serve until unmounted.

use crate::cli::{MountArgs, Secrets, Source, parse_source, without_inline_secrets};
use crate::creds::{Chain, Renewer, SlotProvider};
use crate::daemon::{self, Readiness};
use crate::figures::Figures;
use crate::fs::{Defaults, DiskCache, Fs, FsConfig};
use crate::fuse::{FuseAdapter, StatusReaders};
use crate::store::journal::{Journaled, journal_name};
use crate::store::s3::{CredentialsProblem, S3Location, S3Store};
use crate::store::{ObjectStore, StoreError};
use aws_credential_types::provider::SharedCredentialsProvider;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Everything `connect` produces: a ready filesystem and the task renewing its session.
struct Connected {
    fs: Arc<Fs<Journaled<S3Store>>>,
    slot: Arc<crate::creds::CredentialSlot>,
}

/// Unescapes a path as /proc/self/mountinfo writes it (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if bytes[i] == b'\\'
            && let Some(digits) = octal
        {
            out.push(digits.iter().fold(0u8, |n, d| n.wrapping_mul(8).wrapping_add(d - b'0')));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the mount at `path` (absolute) is an s3role mount, from the mount table.
fn is_s3role_mount(path: &std::path::Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    table.lines().any(|line| {
        let mut halves = line.splitn(2, " - ");
        let (Some(head), Some(tail)) = (halves.next(), halves.next()) else {
            return false;
        };
        let at = head.split(' ').nth(4).map(unescape_mountinfo);
        at.as_deref() == Some(&*path.to_string_lossy()) && tail.starts_with("fuse.s3role ")
    })
}

/// A mount point whose s3role daemon died (killed, crashed) answers ENOTCONN to everyone.
/// Such a dead s3role mount is detached, so the new mount takes its place (as a restarted
/// systemd unit expects); a dead mount of another filesystem is left alone.
fn detach_dead_mount(path: &PathBuf) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        _ => return Ok(()),
    }
    let absolute = std::path::absolute(path).map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if !is_s3role_mount(&absolute) {
        return Err(format!(
            "mount point {}: a dead mount of another filesystem is there (Transport endpoint is not connected); unmount it first",
            path.display()
        ));
    }
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(absolute.as_os_str().as_bytes())
        .map_err(|_| format!("mount point {}: a NUL in the path", path.display()))?;
    // SAFETY: c_path is a valid C string.
    let detached = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0
        || std::process::Command::new("fusermount3")
            .env_remove(crate::notify::NOTIFY_SOCKET)
            .arg("-u")
            .arg("-z")
            .arg(&absolute)
            .status()
            .is_ok_and(|s| s.success());
    if !detached {
        return Err(format!(
            "mount point {}: the s3role mount there has died, and it cannot be detached (fusermount3 -u -z failed)",
            path.display()
        ));
    }
    eprintln!(
        "s3role: the s3role mount on {} had died (its daemon was killed or crashed); detached it",
        path.display()
    );
    Ok(())
}

fn check_mountpoint(path: &PathBuf) -> Result<PathBuf, String> {
    detach_dead_mount(path)?;
    let meta = std::fs::metadata(path).map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("mount point {}: not a directory", path.display()));
    }
    std::fs::canonicalize(path).map_err(|e| format!("mount point {}: {e}", path.display()))
}

fn check_staging(args: &MountArgs) -> Result<(), String> {
    if args.files.read_only {
        return Ok(());
    }
    let dir = args.files.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
    tempfile::tempfile_in(&dir)
        .map(drop)
        .map_err(|e| format!("--staging-dir {}: cannot create files there: {e}", dir.display()))
}

/// Explains a failed first listing of the bucket.
pub fn explain_list_error(e: &StoreError, source: &Source, location: &S3Location, region: &str, who: &str) -> String {
    let what = format!("ListObjectsV2 on s3://{}/{}", source.bucket, source.prefix);
    match e {
        StoreError::NotFound { code, .. } => format!(
            "{what} failed: {code}: bucket '{}' does not exist {} (hint: check the bucket name, --region and --endpoint-url)",
            source.bucket,
            location
                .endpoint_url
                .as_deref()
                .map(|u| format!("at {u}"))
                .unwrap_or_else(|| format!("in region {region}"))
        ),
        StoreError::AccessDenied { code, message, .. } => format!(
            "{what} failed for {who}: {code}: {message} (hint: the role's policy, and the bucket policy, must allow s3:ListBucket on arn:aws:s3:::{}; S3 also answers AccessDenied for a bucket that does not exist when the caller may not list it)",
            source.bucket
        ),
        other => format!("{what} failed: {other}"),
    }
}

async fn connect(args: &MountArgs, source: &Source, mountpoint: &std::path::Path) -> Result<Connected, String> {
    // First, so a directory another mount holds is refused before any request is made.
    let disk_cache = match &args.files.cache_dir {
        Some(dir) => {
            let holder = format!(
                "the mount of s3://{}/{} at {} (pid {})",
                source.bucket,
                source.prefix,
                mountpoint.display(),
                std::process::id()
            );
            let (dir, size) = (dir.clone(), args.files.cache_dir_size);
            let opened = tokio::task::spawn_blocking(move || DiskCache::open(&dir, size, &holder))
                .await
                .map_err(|e| e.to_string())??;
            Some(Arc::new(opened))
        }
        None => None,
    };
    let region = args.access.resolve_region().await;
    let cfg = args.access.creds_config(region.clone()).map_err(|e| e.to_string())?;
    let who = cfg
        .roles
        .last()
        .map(|r| r.arn.clone())
        .unwrap_or_else(|| cfg.describe());
    let chain = Arc::new(Chain::new(cfg).await);
    let renewer = Renewer::start(chain.clone()).await.map_err(|e| e.to_string())?;
    let slot = renewer.slot();
    let status_slot = slot.clone();
    let problem_slot = slot.clone();
    let problem: CredentialsProblem = Arc::new(move || problem_slot.problem());
    let location = S3Location {
        bucket: source.bucket.clone(),
        endpoint_url: args.access.endpoint_url.clone(),
        path_style: args.access.path_style,
        request_timeout: Some(Duration::from_secs(args.access.request_timeout)),
    };
    let store = S3Store::new(
        chain.sdk_config(),
        SharedCredentialsProvider::new(SlotProvider(slot)),
        &location,
        Some(problem),
    )
    .with_upload_checksum(args.files.upload_checksum);
    store
        .list_page(&source.prefix, Some("/"), None, Some(1))
        .await
        .map_err(|e| explain_list_error(&e, source, &location, &region, &who))?;
    renewer.spawn();
    let mut defaults = Defaults::default();
    if let Some(uid) = args.files.uid {
        defaults.uid = uid;
    }
    if let Some(gid) = args.files.gid {
        defaults.gid = gid;
    }
    defaults.file_mode = args.files.file_mode;
    defaults.dir_mode = args.files.dir_mode;
    let staging_dir = args.files.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
    let state_dir = args
        .files
        .state_dir
        .clone()
        .unwrap_or_else(crate::fs::default_state_dir);
    // The journal of this source on this mount point: uploads a killed daemon left open
    // there are aborted now, in the background.
    let identity = format!(
        "{}|{}|{}|{}",
        args.access.endpoint_url.as_deref().unwrap_or("aws"),
        source.bucket,
        source.prefix,
        mountpoint.display()
    );
    let journal_path = state_dir.join("uploads").join(journal_name(&source.bucket, &identity));
    let (store, leftovers) = Journaled::open(Arc::new(store), &journal_path);
    let store = Arc::new(store);
    match leftovers {
        Ok(leftovers) if !leftovers.is_empty() => {
            let store = store.clone();
            tokio::spawn(async move {
                store.abort_leftovers(leftovers).await;
            });
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "no journal of multipart uploads for this mount ({e}); uploads a killed daemon leaves open are not cleaned up"
        ),
    }
    let fs_cfg = FsConfig {
        prefix: source.prefix.clone(),
        defaults,
        read_only: args.files.read_only,
        posix_metadata: !args.files.no_posix_metadata,
        staging_dir,
        staging_limit: args.files.staging_limit,
        fill_limit: args.files.fill_limit,
        metadata_ttl: Duration::from_secs(args.files.metadata_ttl),
        cache_bytes: args.files.cache_size.max(8 << 20),
        disk_cache,
        retry_time: Duration::from_secs(args.files.upload_retry_time),
        recovery_dir: args
            .files
            .recovery_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("recovery")),
        ..FsConfig::default()
    };
    Ok(Connected {
        fs: Fs::new(store, fs_cfg),
        slot: status_slot,
    })
}

fn fuse_config(args: &MountArgs, source: &Source) -> fuser::Config {
    use fuser::MountOption;
    let mut cfg = fuser::Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(format!("{}:/{}", source.bucket, source.prefix.trim_end_matches('/'))),
        MountOption::CUSTOM("subtype=s3role".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        // The kernel checks mode, uid and gid against the caller, as on a local disk.
        MountOption::DefaultPermissions,
    ];
    if args.files.read_only {
        cfg.mount_options.push(MountOption::RO);
    }
    if args.files.allow_other {
        cfg.acl = fuser::SessionACL::All;
    }
    cfg.n_threads = Some(2);
    cfg
}

/// The signals a mount answers, registered as soon as its runtime exists: one that arrives
/// before the task handling it runs (say right after `s3role mount` returns) waits for that
/// task, instead of taking its default action, which ends the process and leaves a dead mount.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn register(rt: &tokio::runtime::Runtime) -> std::io::Result<Signals> {
        let _context = rt.enter();
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// On SIGTERM or SIGINT, detaches the mount. Files still open keep working until closed;
/// when the last one is closed the kernel ends the session, and pending uploads finish
/// before the process exits.
async fn unmount_on_signal(mountpoint: PathBuf, mut terminate: Signal, mut interrupt: Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("signal received: unmounting once open files are closed and uploads are done");
    let _ = tokio::task::spawn_blocking(|| crate::notify::stopping(STOPPING)).await;
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: path is a valid C string.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        // Not root: fusermount3 may do it for the mounting user.
        let status = tokio::process::Command::new("fusermount3")
            .env_remove(crate::notify::NOTIFY_SOCKET)
            .arg("-u")
            .arg("-z")
            .arg(&mountpoint)
            .status()
            .await;
        if !status.map(|s| s.success()).unwrap_or(false) {
            tracing::error!("could not unmount {}", mountpoint.display());
        }
    }
}

/// What systemd is told when the unmount begins.
const STOPPING: &str = "unmounting; pending uploads finish first";

/// Tells systemd the session's state after each renewal and each failed attempt, as long as
/// the mount lives.
async fn report_session(what: String, slot: Arc<crate::creds::CredentialSlot>) {
    let mut changes = slot.changes();
    while changes.changed().await.is_ok() {
        let line = crate::notify::session_line(&what, &slot.status());
        let _ = tokio::task::spawn_blocking(move || crate::notify::status(&line)).await;
    }
}

/// On every SIGHUP, reopens the log file (after logrotate moved it).
async fn reopen_log_on_hangup(mut hangup: Signal) {
    while hangup.recv().await.is_some() {
        match crate::logging::reopen_log_file() {
            Ok(true) => tracing::info!("log file reopened"),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot reopen the log file, still writing to the one open so far: {e}"),
        }
    }
}

/// This process's mount table as (device number `major:minor`, mount point as the table
/// writes it) pairs, oldest first. Read from /proc, not with stat(2): this process serves
/// the mount and may not be answering requests.
fn mount_table() -> Option<Vec<(String, String)>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let entries = table
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ').skip(2);
            let device = f.next()?;
            let mountpoint = f.nth(1)?;
            Some((device.to_owned(), mountpoint.to_owned()))
        })
        .collect();
    Some(entries)
}

/// The device number of the mount on `mountpoint` (the newest, if several are stacked).
fn mounted_device(mountpoint: &std::path::Path) -> Option<String> {
    // The table escapes these four characters in octal.
    let want: String = mountpoint
        .display()
        .to_string()
        .chars()
        .map(|c| match c {
            ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", c as u32),
            c => c.to_string(),
        })
        .collect();
    mount_table()?
        .into_iter()
        .rev()
        .find(|(_, m)| *m == want)
        .map(|(d, _)| d)
}

/// Whether the mount of `device` is gone from the mount table (unknown counts as no).
fn left_the_table(device: &str) -> bool {
    mount_table().is_some_and(|table| table.iter().all(|(d, _)| d != device))
}

/// Lets the kernel read ahead 1 MiB at a time on this mount instead of its default 128 KiB,
/// so a sequential reader sends a quarter as many requests per byte. The FUSE handshake can
/// only lower the readahead; the mount's backing device setting can raise it (as root).
fn raise_readahead(device: &str) {
    let setting = format!("/sys/class/bdi/{device}/read_ahead_kb");
    match std::fs::write(&setting, "1024") {
        Ok(()) => tracing::debug!("{setting} = 1024"),
        Err(e) => tracing::debug!("kernel readahead left as it is ({setting}: {e})"),
    }
}

/// What `s3role status` shows, read live from the renewal task and the filesystem.
fn status_source(
    args: &MountArgs,
    source: &Source,
    slot: Arc<crate::creds::CredentialSlot>,
    fs: Arc<Fs<Journaled<S3Store>>>,
) -> crate::fuse::StatusSource {
    let what = format!("s3://{}/{}", source.bucket, source.prefix);
    let endpoint = args.access.endpoint_url.clone().unwrap_or_else(|| "AWS".into());
    Arc::new(move || {
        let mut pairs = vec![("source".into(), what.clone()), ("endpoint".into(), endpoint.clone())];
        pairs.extend(Figures::read(&fs, &slot).status_pairs());
        pairs
    })
}

/// How long the daemon waits, once the session has ended, for the requests still being
/// answered: longer than any single S3 request may take.
const REQUESTS_AT_EXIT: Duration = Duration::from_secs(60);

/// Checks everything that can be checked without the network: the source, every
/// credential input, the mount point and the staging directory.
pub fn validate(args: &MountArgs) -> Result<(Source, PathBuf), String> {
    parse_source(&args.source)
        .map_err(|e| e.to_string())
        .and_then(|s| {
            args.access
                .creds_config("us-east-1".into())
                .map(|_| s)
                .map_err(|e| e.to_string())
        })
        .and_then(|s| check_mountpoint(&args.mountpoint).map(|m| (s, m)))
        .and_then(|p| check_staging(args).map(|()| p))
}

/// Runs `s3role mount` as given on this process's command line.
pub fn run(args: MountArgs) -> ExitCode {
    let argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    run_with_argv(args, &crate::mount_opts::expand_args(argv))
}

/// Takes the secrets handed over by the s3role process that started this one, and the
/// handshake to answer it with when this is the daemon.
fn receive_handover(args: &mut MountArgs) -> Result<Readiness, String> {
    let (bytes, readiness) =
        daemon::receive_handover(!args.foreground).map_err(|e| format!("s3role: cannot take over the mount: {e}"))?;
    let secrets = Secrets::decode(&bytes).map_err(|e| format!("s3role: {e}"))?;
    args.access.resolved_secrets = Some(secrets);
    Ok(readiness)
}

/// Runs `s3role mount`; `argv` is its command line with `-o` lists expanded, from which the
/// daemon's own command line is made.
pub fn run_with_argv(mut args: MountArgs, argv: &[String]) -> ExitCode {
    let handed_over = if daemon::handover_on_stdin() {
        match receive_handover(&mut args) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // Mistakes are reported straight to the terminal (or, by a daemon, to the process
    // waiting for it), before anything is started.
    let checked = args
        .access
        .resolve_secrets()
        .map_err(|e| e.to_string())
        .and_then(|secrets| validate(&args).map(|(source, mountpoint)| (source, mountpoint, secrets)));
    let (source, mountpoint, secrets) = match checked {
        Ok(c) => c,
        Err(e) => {
            // Readiness::fail writes to the terminal when there is no process to answer.
            let mut readiness = handed_over.unwrap_or_else(Readiness::foreground);
            readiness.fail(&format!("s3role: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let without_secrets = without_inline_secrets(argv);
    let mut readiness = match handed_over {
        Some(readiness) => readiness,
        None if args.foreground && without_secrets.len() == argv.len() => Readiness::foreground(),
        None if args.foreground => {
            let e = daemon::exec_without_secrets(&without_secrets, &secrets.encode());
            eprintln!("s3role: cannot restart without the secrets in the command line: {e}");
            return ExitCode::FAILURE;
        }
        None => {
            let e = daemon::start(&without_secrets, &secrets.encode());
            eprintln!("s3role: cannot start the daemon: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A daemon's lines end up in syslog or a file, a foreground mount's may too.
    let on_terminal = args.foreground && args.log_file.is_none() && std::io::stderr().is_terminal();
    let journal = args.log_file.is_none() && crate::logging::stderr_is_journal();
    crate::logging::init_with(on_terminal, journal);
    if let Some(path) = &args.log_file
        && let Err(e) = crate::logging::use_log_file(path)
    {
        readiness.fail(&format!("s3role: --log-file {}: {e}", path.display()));
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3role")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            readiness.fail(&format!("s3role: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let signals = match Signals::register(&rt) {
        Ok(s) => s,
        Err(e) => {
            readiness.fail(&format!("s3role: cannot handle signals: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = args.metrics_addr {
        let label = args
            .metrics_label
            .clone()
            .unwrap_or_else(|| mountpoint.display().to_string());
        let _runtime = rt.enter();
        if let Err(e) = crate::mount_metrics::serve(addr, &label) {
            readiness.fail(&format!("s3role: {e}"));
            return ExitCode::FAILURE;
        }
    }
    let connected = match rt.block_on(connect(&args, &source, &mountpoint)) {
        Ok(c) => c,
        Err(e) => {
            readiness.fail(&format!("s3role: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let fs = connected.fs.clone();
    {
        let _runtime = rt.enter();
        crate::heap::spawn_trimmer();
        if args.metrics_addr.is_some() {
            let (fs, slot) = (fs.clone(), connected.slot.clone());
            crate::mount_metrics::spawn_sampler(Arc::new(move || Figures::read(&fs, &slot)));
        }
    }
    let status_readers = if args.public_status {
        StatusReaders::Everyone
    } else {
        // SAFETY: geteuid has no preconditions.
        StatusReaders::MounterAndRoot(unsafe { libc::geteuid() })
    };
    let slot = connected.slot.clone();
    let adapter = FuseAdapter::new(connected.fs, rt.handle().clone()).with_status(
        status_source(&args, &source, connected.slot, fs.clone()),
        status_readers,
    );
    let in_flight = adapter.in_flight();
    let session = match fuser::Session::new(adapter, &mountpoint, &fuse_config(&args, &source)) {
        Ok(s) => s,
        Err(e) => {
            readiness.fail(&format!("s3role: mounting on {} failed: {e}", mountpoint.display()));
            return ExitCode::FAILURE;
        }
    };
    let device = mounted_device(&mountpoint);
    if let Some(device) = &device {
        raise_readahead(device);
    }
    let set = |v: &Option<String>| if v.is_some() { "set" } else { "none" };
    tracing::info!(
        source = %args.source,
        mountpoint = %mountpoint.display(),
        external_id = %set(&secrets.external_id),
        session_policy = %set(&secrets.session_policy),
        "mounted"
    );
    readiness.ready();
    let what = format!("s3://{}/{} on {}", source.bucket, source.prefix, mountpoint.display());
    crate::notify::ready(&crate::notify::session_line(&what, &slot.status()));
    if crate::notify::wanted() {
        rt.spawn(report_session(what, slot));
    }
    rt.spawn(unmount_on_signal(
        mountpoint.clone(),
        signals.terminate,
        signals.interrupt,
    ));
    rt.spawn(reopen_log_on_hangup(signals.hangup));
    let result = session.run();
    crate::notify::stopping(STOPPING);
    // The kernel has let go. Requests it sent last (a release, say) finish first; then
    // whatever is still pending is uploaded before exiting.
    if !rt.block_on(in_flight.settle(REQUESTS_AT_EXIT)) {
        tracing::warn!("requests still unanswered after {REQUESTS_AT_EXIT:?} at exit");
    }
    rt.block_on(fs.finish_all());
    tracing::info!("unmounted");
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // After an unmount (umount, `fusermount3 -u -z`, or ours on SIGTERM), the kernel
        // ends the session with ENODEV or, depending on timing, ECONNABORTED: a clean end
        // once the mount has left the table. An abort through fusectl leaves it there.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) && device.as_deref().is_some_and(left_the_table) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("the FUSE session ended with an error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/x\\134y\\011"), "/x\\y\t");
        assert_eq!(unescape_mountinfo("/t\\09"), "/t\\09", "not three octal digits");
        assert_eq!(unescape_mountinfo("/é\\"), "/é\\");
    }
}
