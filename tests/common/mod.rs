//! Integration-test harness: a real S3+STS+IAM server (moto with IAM enforcement, through
//! scripts/testserver/s3role_moto.py) on a free loopback port, and real FUSE mounts of the
//! s3role binary.
#![allow(dead_code)]

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What the test server built, read from its world file.
#[derive(Debug, Clone)]
pub struct World {
    pub endpoint: String,
    pub region: String,
    pub account: String,
    pub external_id: String,
    pub imds_endpoint: Option<String>,
    /// The container credentials endpoint (ECS, EKS Pod Identity) and the token it wants.
    pub container_credentials: Option<(String, String)>,
    pub users: HashMap<String, (String, String)>,
    pub roles: HashMap<String, String>,
    pub policies: HashMap<String, String>,
}

impl World {
    fn parse(text: &str) -> World {
        let v: serde_json::Value = serde_json::from_str(text).expect("world file is JSON");
        let map = |k: &str| -> HashMap<String, String> {
            v[k].as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        World {
            endpoint: v["endpoint"].as_str().expect("endpoint").to_owned(),
            region: v["region"].as_str().unwrap_or("us-east-1").to_owned(),
            account: v["account"].as_str().unwrap_or_default().to_owned(),
            external_id: v["external_id"].as_str().unwrap_or_default().to_owned(),
            imds_endpoint: v["imds_endpoint"].as_str().map(str::to_owned),
            container_credentials: v["container_credentials_uri"]
                .as_str()
                .zip(v["container_auth_token"].as_str())
                .map(|(u, t)| (u.to_owned(), t.to_owned())),
            users: v["users"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(name, k)| {
                            let ak = k["access_key_id"].as_str().unwrap_or_default().to_owned();
                            let sk = k["secret_access_key"].as_str().unwrap_or_default().to_owned();
                            (name.clone(), (ak, sk))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            roles: map("roles"),
            policies: map("policies"),
        }
    }

    pub fn role(&self, name: &str) -> &str {
        self.roles
            .get(name)
            .unwrap_or_else(|| panic!("no role {name} in the world"))
    }

    pub fn keys(&self, user: &str) -> &(String, String) {
        self.users
            .get(user)
            .unwrap_or_else(|| panic!("no user {user} in the world"))
    }
}

/// A running test server; stopped when dropped (and by itself if this process dies).
pub struct Server {
    child: Child,
    pub world: World,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    admin: aws_sdk_s3::Client,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Server {
    /// Starts the server with the standard fixture and `extra` launcher options.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let world_file = dir.path().join("world.json");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new("python3")
            .arg(repo().join("scripts/testserver/s3role_moto.py"))
            .args(["--port", "0", "--quiet", "--world-out"])
            .arg(&world_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("python3 runs the test server (pip install 'moto[server]==5.2.1')");
        let deadline = Instant::now() + Duration::from_secs(60);
        let world = loop {
            if let Ok(text) = std::fs::read_to_string(&world_file) {
                break World::parse(&text);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("the test server did not start within 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (ak, sk) = world.keys("admin").clone();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(world.region.clone()))
            .endpoint_url(&world.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(ak, sk, None, None, "test-admin"))
            // The tests compare bodies themselves. moto 5.2.1 gives the copy of a multipart
            // object the source's composite CRC32C without its part count, so the SDK's
            // default check takes it for a full-object CRC32C and calls a right body wrong.
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .build();
        let admin = aws_sdk_s3::Client::from_conf(conf);
        Server {
            child,
            world,
            _dir: dir,
            rt,
            admin,
        }
    }

    /// Puts an object as the admin user, with user metadata.
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>, meta: &[(&str, &str)]) {
        let body = body.into();
        let mut req = self
            .admin
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body));
        for (k, v) in meta {
            req = req.metadata(*k, *v);
        }
        self.rt
            .block_on(req.send())
            .unwrap_or_else(|e| panic!("admin PutObject {key}: {e:?}"));
    }

    /// The admin's S3 client, for tests that need more.
    pub fn admin(&self) -> &aws_sdk_s3::Client {
        &self.admin
    }

    /// Runs a future on the harness runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let hostport = self.world.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(hostport).expect("connect to the test server");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok();
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Sets STS to `up`, `down` (503) or `drop` (connections closed).
    pub fn set_sts(&self, mode: &str) {
        let (status, body) = self.http("POST", "/s3role-test/sts", mode);
        assert_eq!(status, 200, "setting STS {mode}: {body}");
    }

    /// The S3 GETs the server has seen for `bucket/key` so far, as their Range headers
    /// (`None` for a whole-object GET).
    pub fn gets_of(&self, bucket: &str, key: &str) -> Vec<Option<String>> {
        let (status, body) = self.http("GET", "/s3role-test/s3-requests", "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("request log is JSON");
        let path = format!("/{bucket}/{key}");
        v.as_array()
            .expect("a list")
            .iter()
            .filter(|r| r["method"] == "GET" && r["path"] == path.as_str())
            .map(|r| r["range"].as_str().map(str::to_owned))
            .collect()
    }

    /// The S3 requests the server has seen so far whose path starts with `path_prefix`
    /// (`/bucket/key…`) or, for listings, whose `prefix=` starts with `key_prefix`: as
    /// (method, path, query), oldest first.
    pub fn s3_requests_under(&self, bucket: &str, key_prefix: &str) -> Vec<(String, String, String)> {
        let (status, body) = self.http("GET", "/s3role-test/s3-requests", "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("request log is JSON");
        let path_prefix = format!("/{bucket}/{key_prefix}");
        let list_prefix = format!("prefix={}", key_prefix.replace('/', "%2F"));
        v.as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (field("method"), field("path"), field("query"))
            })
            .filter(|(_, path, query)| {
                path.starts_with(&path_prefix)
                    || ((path == &format!("/{bucket}") || path == &format!("/{bucket}/"))
                        && query.split('&').any(|q| q.starts_with(&list_prefix)))
            })
            .collect()
    }

    /// STS sessions issued so far, as (role ARN, session name).
    pub fn sessions(&self) -> Vec<(String, String)> {
        let (_, body) = self.http("GET", "/s3role-test/sessions", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["role_arn"].as_str().unwrap_or_default().to_owned(),
                            s["session_name"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The environment a process acting as `user` gets: its keys, no profile files, no
    /// instance metadata.
    pub fn env_for(&self, user: &str) -> Vec<(String, String)> {
        let (ak, sk) = self.world.keys(user).clone();
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ak),
            ("AWS_SECRET_ACCESS_KEY".into(), sk),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ]
    }

    /// The options every s3role command against this server needs.
    pub fn endpoint_args(&self) -> Vec<String> {
        vec![
            "--endpoint-url".into(),
            self.world.endpoint.clone(),
            "--sts-endpoint".into(),
            self.world.endpoint.clone(),
            "--region".into(),
            self.world.region.clone(),
            "--path-style".into(),
        ]
    }

    /// Options to assume role `name` with the right external ID.
    fn role_args(&self, name: &str) -> Vec<String> {
        vec![
            "--role-arn".into(),
            self.world.role(name).into(),
            "--external-id".into(),
            self.world.external_id.clone(),
        ]
    }

    /// Options to assume the `writer` role (s3:* on bucket data) with the right external ID.
    pub fn writer_args(&self) -> Vec<String> {
        self.role_args("writer")
    }

    /// Options to assume the `reader` role with the right external ID.
    pub fn reader_args(&self) -> Vec<String> {
        self.role_args("reader")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3role status DIR` as name/value pairs.
pub fn status(dir: &Path) -> std::collections::BTreeMap<String, String> {
    let out = s3role().arg("status").arg(dir).output().expect("s3role status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(char::is_whitespace)
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The s3role binary under test.
pub fn s3role() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3role"));
    c.env_remove("AWS_PROFILE")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_SESSION_TOKEN");
    c
}

/// `cmd` without the AWS identity of this process's environment (no keys, no profile files,
/// no instance metadata), with debug logs, and its output appended to `log`; environment
/// set on it afterwards wins.
pub fn without_identity<'a>(cmd: &'a mut Command, log: &Path) -> &'a mut Command {
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "s3role=debug,warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).expect("log"))
        .stderr(std::fs::OpenOptions::new().append(true).open(log).expect("log"))
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(' ')
                .nth(4)
                .map(|m| Path::new(&m.replace("\\040", " ")) == want)
                .unwrap_or(false)
        })
}

/// A live s3role mount, unmounted when dropped.
pub struct Mount {
    pub path: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    /// Mounts `source` in the foreground (logs kept for the test) and waits until it is live.
    pub fn start(server: &Server, user: &str, source: &str, args: &[String]) -> Result<Mount, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mount dir");
        Mount::start_in(server, user, source, args, path, dir)
    }

    /// Mounts `source` on `path`, a directory the caller owns (for a mount point used again
    /// after a daemon died there), and waits until the mount answers.
    pub fn start_at(server: &Server, user: &str, source: &str, args: &[String], path: &Path) -> Result<Mount, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        Mount::start_in(server, user, source, args, path.to_owned(), dir)
    }

    fn start_in(
        server: &Server,
        user: &str,
        source: &str,
        args: &[String],
        path: PathBuf,
        dir: tempfile::TempDir,
    ) -> Result<Mount, String> {
        let log = dir.path().join("s3role.log");
        let child = s3role()
            .arg("mount")
            .arg(source)
            .arg(&path)
            .arg("-f")
            .args(server.endpoint_args())
            .args(args)
            .envs(server.env_for(user))
            .env(
                "RUST_LOG",
                std::env::var("S3ROLE_TEST_LOG").unwrap_or_else(|_| "s3role=debug,warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).expect("log"))
            .spawn()
            .expect("start s3role");
        let mut m = Mount {
            path,
            child: Some(child),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if is_mounted(&m.path) && std::fs::metadata(&m.path).is_ok() {
                return Ok(m);
            }
            if let Some(c) = m.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                m.child = None;
                return Err(format!("s3role exited with {status}:\n{}", m.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("not mounted after 30 s:\n{}", m.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Process id of the s3role daemon.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits up to `limit` for the daemon to exit by itself; its exit status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The mount's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Unmounts and waits for the daemon to exit; returns its log.
    pub fn unmount(mut self) -> String {
        self.stop();
        self.log()
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            unmount_and_wait(c, &self.path);
        } else {
            unmount_dir(&self.path);
        }
    }
}

/// Unmounts `path` as a user would. Right after a close the kernel may still hold the
/// file for a moment (EBUSY): try again, then detach it lazily.
pub fn unmount_dir(path: &Path) {
    for _ in 0..20 {
        if !is_mounted(path) {
            return;
        }
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("umount").arg("-l").arg(path).status();
}

/// Unmounts `path` and waits (bounded) for the daemon `child` serving it to exit.
pub fn unmount_and_wait(mut child: Child, path: &Path) {
    unmount_dir(path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs s3role with the server's endpoints and `user`'s identity; returns its output.
pub fn run_s3role(server: &Server, user: &str, args: &[String]) -> Output {
    s3role()
        .args(args)
        .envs(server.env_for(user))
        .stdin(Stdio::null())
        .output()
        .expect("run s3role")
}

/// close(2) of `file`, with its result: std's drop ignores it, and that is where upload
/// errors arrive.
pub fn close(file: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: fd was just released by a File that owned it.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A deterministic pseudo-random byte pattern, so large files need no storage.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One server shared by the tests of a binary.
pub fn shared_server(cell: &'static OnceLock<Server>, extra: &'static [&'static str]) -> &'static Server {
    cell.get_or_init(|| Server::start(extra))
}

/// One STS session the server issued.
#[derive(Debug, Clone)]
pub struct Session {
    pub role_arn: String,
    pub session_name: String,
    pub expiration: std::time::SystemTime,
}

/// Parses `2026-11-23T14:57:49Z` (fraction allowed) as UTC.
pub fn parse_iso(s: &str) -> Option<std::time::SystemTime> {
    let s = s.trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.split(['+', '.']).next()?;
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

impl Server {
    /// Sessions issued for `session_name`, oldest first.
    pub fn sessions_named(&self, session_name: &str) -> Vec<Session> {
        let (_, body) = self.http("GET", "/s3role-test/sessions", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut out: Vec<Session> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(Session {
                            role_arn: s["role_arn"].as_str()?.to_owned(),
                            session_name: s["session_name"].as_str()?.to_owned(),
                            expiration: parse_iso(s["expiration"].as_str()?)?,
                        })
                    })
                    .filter(|s| s.session_name == session_name)
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|s| s.expiration);
        out
    }
}

/// One round of filesystem work that reaches S3 when the metadata TTL is 0: a stat, a
/// directory listing and a read. Returns the first error.
pub fn touch_s3(m: &Mount, file: &str) -> std::io::Result<()> {
    std::fs::metadata(m.join(file))?;
    std::fs::read_dir(&m.path)?.count();
    std::fs::read(m.join(file)).map(|_| ())
}

#[test]
fn iso_dates_parse() {
    let t = parse_iso("2026-11-19T13:39:30Z").expect("parse");
    assert_eq!(
        t.duration_since(std::time::UNIX_EPOCH).expect("after epoch").as_secs(),
        1_795_095_570
    );
    assert!(parse_iso("2000-02-29T00:00:00.123Z").is_some());
}

impl Server {
    /// The body and user metadata of `bucket/key`, read as the admin user; `None` if absent.
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, HashMap<String, String>)> {
        self.block_on(async {
            let out = self.admin.get_object().bucket(bucket).key(key).send().await.ok()?;
            let meta = out.metadata().cloned().unwrap_or_default();
            let body = out.body.collect().await.ok()?.into_bytes().to_vec();
            Some((body, meta))
        })
    }

    /// Every key under `prefix` in `bucket`, as the admin user sees them.
    pub fn keys_under(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.block_on(async {
            let out = self
                .admin
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list");
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect()
        })
    }
}

/// Process ids, among every process on the machine, whose `/proc/PID/FILE` (`cmdline` or
/// `environ`) contains `needle`.
pub fn processes_with(file: &str, needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read(e.path().join(file)).ok()?;
            String::from_utf8_lossy(&text).contains(needle).then_some(pid)
        })
        .collect()
}

/// A string no other process on the machine is likely to hold, valid as an external ID.
pub fn distinctive(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("s3role-{tag}-{}-{nanos}", std::process::id())
}

impl Server {
    /// What STS received for each session named `session_name`, oldest first: the external
    /// ID and the inline session policy.
    pub fn session_inputs(&self, session_name: &str) -> Vec<(Option<String>, Option<String>)> {
        let (_, body) = self.http("GET", "/s3role-test/sessions", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["session_name"] == session_name)
                    .map(|s| {
                        let text = |k: &str| s[k].as_str().map(str::to_owned);
                        (text("external_id"), text("policy"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A mount made the way an operator makes one: `s3role mount` without -f, which returns once
/// the daemon it leaves behind serves the mount. Unmounted when dropped.
pub struct DaemonMount {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl DaemonMount {
    /// Runs `s3role mount SOURCE DIR` with the server's endpoints, `args`, `user`'s identity
    /// and `env`; the mount, or what s3role wrote to stderr when it failed.
    pub fn start(
        server: &Server,
        user: &str,
        source: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<DaemonMount, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mount dir");
        let out = s3role()
            .arg("mount")
            .arg(source)
            .arg(&path)
            .args(server.endpoint_args())
            .args(args)
            .envs(server.env_for(user))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run s3role mount");
        let m = DaemonMount { path, _dir: dir };
        if out.status.success() {
            Ok(m)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The daemon serving the mount (every process whose command line names its directory).
    pub fn daemon_pids(&self) -> Vec<u32> {
        processes_with("cmdline", &self.path.display().to_string())
    }

    /// A path inside the mount.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if is_mounted(&self.path) {
            let _ = Command::new("umount").arg(&self.path).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.daemon_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Mount {
    /// Kills the daemon with SIGKILL, as a crash or the OOM killer would: the mount stays in
    /// the table, dead (ENOTCONN), and nothing is cleaned up.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Server {
    /// Multipart uploads open in `bucket` under `prefix`, as (key, upload id).
    pub fn open_uploads(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        self.block_on(async {
            let out = self
                .admin
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("ListMultipartUploads");
            out.uploads()
                .iter()
                .map(|u| {
                    (
                        u.key().unwrap_or_default().to_owned(),
                        u.upload_id().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
    }
}

/// The fault-injecting proxy (scripts/testserver/faultproxy.py) in front of a test server;
/// stopped when dropped (drop it after the mounts that use it).
pub struct FaultProxy {
    child: Child,
    /// Where the proxy listens.
    pub endpoint: String,
    /// The server behind it.
    pub upstream: String,
    dir: tempfile::TempDir,
}

impl FaultProxy {
    /// Starts the proxy in front of `server` (with `extra` proxy options) and sends the
    /// server's endpoint through it: mounts started from now on (their `--endpoint-url` and
    /// `--sts-endpoint`) and the server's control requests reach the server through the
    /// proxy, and [`Server::set_faults`] reaches the proxy. The admin client still talks to
    /// the server directly, so checks of what S3 holds never see a fault.
    pub fn in_front_of(server: &mut Server, extra: &[&str]) -> FaultProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port.json");
        let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log file");
        let upstream = server.world.endpoint.clone();
        let child = Command::new("python3")
            .arg(repo().join("scripts/testserver/faultproxy.py"))
            .args(["--upstream", &upstream, "--port", "0", "--port-file"])
            .arg(&port_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("python3 runs the fault proxy");
        let deadline = Instant::now() + Duration::from_secs(20);
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(e) = v["endpoint"].as_str()
            {
                break e.to_owned();
            }
            assert!(Instant::now() < deadline, "the fault proxy did not start within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        server.world.endpoint = endpoint.clone();
        FaultProxy {
            child,
            endpoint,
            upstream,
            dir,
        }
    }

    /// The proxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Sets the faults of the proxy in front of this server ([`FaultProxy::in_front_of`]):
    /// `{"s3": {"slowdown": 0.2, "internal": 0.1}, "sts": {"stall": 1}}` (kinds and their
    /// fractions per class, as scripts/testserver/faultproxy.py describes); a class given as
    /// `{}` has no faults any more, and its stalled connections are let go.
    pub fn set_faults(&self, faults: serde_json::Value) {
        let (status, body) = self.http("POST", "/faultproxy/faults", &faults.to_string());
        assert_eq!(status, 200, "setting faults {faults}: {body}");
    }

    /// The proxy's state: faults, `injected` counts by class and kind, `requests` by class.
    pub fn fault_state(&self) -> serde_json::Value {
        let (status, body) = self.http("GET", "/faultproxy/state", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("the proxy's state is JSON")
    }

    /// Faults of `kind` the proxy has injected into requests of `class` (`s3`, `sts`).
    pub fn injected(&self, class: &str, kind: &str) -> u64 {
        self.fault_state()["injected"][class][kind].as_u64().unwrap_or(0)
    }

    /// Every object under `prefix` with its bytes, as the admin sees them (never through
    /// the proxy).
    pub fn objects(&self, bucket: &str, prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.block_on(async {
            let mut out = std::collections::BTreeMap::new();
            let mut token = None;
            loop {
                let page = self
                    .admin
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("admin ListObjectsV2 {prefix}: {e:?}"));
                for o in page.contents() {
                    let key = o.key().unwrap_or_default().to_owned();
                    let body = self
                        .admin
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("admin GetObject {key}: {e:?}"))
                        .body
                        .collect()
                        .await
                        .unwrap_or_else(|e| panic!("admin GetObject {key} body: {e:?}"))
                        .to_vec();
                    out.insert(key, body);
                }
                token = page.next_continuation_token().map(str::to_owned);
                if token.is_none() {
                    break out;
                }
            }
        })
    }
}

/// Options to mount as `reader` with role session `name` and no metadata caching, so every
/// file operation reaches S3 with the current session.
pub fn renewal_args(s: &Server, name: &str) -> Vec<String> {
    let mut args = s.reader_args();
    args.extend(["--role-session-name", name, "--metadata-ttl", "0"].map(String::from));
    args
}

/// Waits up to 30 s for a new session named `name` (a renewal) and returns when it
/// expires: right after a renewal, a whole session is left to live on.
pub fn await_renewal(s: &Server, m: &Mount, name: &str) -> std::time::SystemTime {
    let have = s.sessions_named(name).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(new) = s.sessions_named(name).get(have) {
            return new.expiration;
        }
        assert!(Instant::now() < deadline, "no renewal within 30 s\n{}", m.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reaches S3 through `file` ([`touch_s3`]) every 100 ms until a second before `expiry`;
/// every round must work.
pub fn touch_until(m: &Mount, file: &str, expiry: std::time::SystemTime) {
    while std::time::SystemTime::now() + Duration::from_secs(1) < expiry {
        touch_s3(m, file).unwrap_or_else(|e| panic!("failed before expiry: {e}\n{}", m.log()));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After STS answers again: waits up to 20 s for [`touch_s3`] on `file` to work (EACCES
/// meanwhile, as the session has expired, and never another error), checks that it goes on
/// working for a few rounds, and returns how long recovery took.
pub fn await_recovery(m: &Mount, file: &str) -> Duration {
    let back = Instant::now();
    loop {
        match touch_s3(m, file) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
            Err(e) => panic!("unexpected error while recovering: {e}\n{}", m.log()),
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "not recovered 20 s after STS answered again\n{}",
            m.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = back.elapsed();
    for _ in 0..20 {
        touch_s3(m, file).unwrap_or_else(|e| panic!("failed after recovery: {e}\n{}", m.log()));
        std::thread::sleep(Duration::from_millis(100));
    }
    took
}

impl Mount {
    /// One line of `s3role status`: the value of NAME in the root's `.s3role-status`.
    pub fn status(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.path.join(".s3role-status")).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().to_owned())
        })
    }

    /// Waits up to `within` for status line NAME to read `value`; fails with the log if it
    /// does not.
    pub fn await_status(&self, name: &str, value: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.status(name).as_deref() != Some(value) {
            assert!(Instant::now() < deadline, "{name} is not {value}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
