//! The command line: `s3role mount`, `s3role check`, and how their options become settings.

use crate::creds::{self, CredsConfig, RoleSpec, SourceSpec, validate::InvalidInput};
use crate::store::s3::UploadChecksum;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Mount an S3 bucket through an assumed IAM role.
#[derive(Parser, Debug)]
#[command(name = "s3role", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
// Parsed once at start: the size of the mount variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a bucket or a prefix of one.
    Mount(MountArgs),
    /// Walk the credential chain and the bucket access one step at a time and report each.
    Check(CheckArgs),
    /// Show a live mount's source, role chain, session expiry, renewals, cache and uploads.
    ///
    /// One line per fact, a name and a value: source, endpoint, role_chain, session_name,
    /// expiry, last_renewal, renewals and last_error for the role session; cache_bytes and
    /// cache_hit_rate for the memory block cache; disk_cache_bytes, disk_cache_hits,
    /// disk_cache_misses and disk_cache_damaged for the disk cache of --cache-dir ("-"
    /// without one; damaged counts cache files found cut short or corrupt, deleted and
    /// fetched again); copy_bytes, copy_fetched_bytes and copy_reads for whole local copies
    /// of files read at random (--fill-limit); uploads_in_flight, uploads_retrying, upload_failures (last closes
    /// that could not upload, since the mount started), oldest_upload_failure,
    /// recovered_files, staged_bytes and upload_buffer_bytes for writes; then open_files,
    /// inodes, cached_attributes, cached_listings and heap_in_use. Only the user who mounted
    /// and root may read them, unless the mount was made with --public-status.
    Status {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// Write man pages and shell completions into DIR (used to build packages).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory.
        dir: PathBuf,
    },
}

/// Options of `s3role mount`.
#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// BUCKET, BUCKET:/PREFIX or s3://BUCKET/PREFIX.
    pub source: String,
    /// Directory to mount on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub files: FileArgs,
    /// Stay in the foreground instead of returning once the mount is live. Under systemd
    /// (NOTIFY_SOCKET set, Type=notify) tell it READY=1 once the mount answers, the session
    /// expiry after each renewal, and STOPPING=1 at unmount.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Log to this file instead of standard error, syslog or the journal (reopened on SIGHUP, for logrotate).
    /// A new file is created 0600; a symbolic link there is refused.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Let every user read the mount's status (DIR/.s3role-status, `s3role status`),
    /// which names the role chain and session; by default only the mounting user and root can.
    #[arg(long)]
    pub public_status: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (HOST an IP address, e.g.
    /// 127.0.0.1:9464 or [::1]:9464): S3 requests by operation and
    /// outcome, their latency, bytes moved, caches, uploads, and the role session's expiry
    /// and renewals. Off by default. Series carry operations and outcomes only, never keys,
    /// user names or secrets; every series is labelled mount="...". Anyone who can reach the
    /// address can read them: bind to 127.0.0.1 or a private address.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The value of the mount="..." label of every metric (default: the mount point), so one
    /// scrape configuration covers many mounts.
    #[arg(long, value_name = "NAME", requires = "metrics_addr")]
    pub metrics_label: Option<String>,
}

/// Options of `s3role check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// BUCKET, BUCKET:/PREFIX or s3://BUCKET/PREFIX.
    pub source: String,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Who we are and where the bucket is: shared by `mount` and `check`.
#[derive(Args, Debug, Clone)]
pub struct AccessArgs {
    /// Role to assume; repeat for a chain, assumed in order, each with the previous one's credentials.
    #[arg(long = "role-arn", value_name = "ARN")]
    pub role_arn: Vec<String>,
    /// ExternalId for the last role of the chain (the one whose trust policy asks for it), or
    /// @FILE to read it from FILE. The daemon never shows it, but a command line holding it
    /// shows it to every local user while it runs: prefer @FILE, --external-id-file or
    /// S3ROLE_EXTERNAL_ID.
    #[arg(long, value_name = "ID|@FILE", env = "S3ROLE_EXTERNAL_ID", hide_env_values = true)]
    pub external_id: Option<SecretText>,
    /// Read the ExternalId from this file (its trailing newline removed), so that it shows in
    /// no command line. Wins over S3ROLE_EXTERNAL_ID.
    #[arg(long, value_name = "PATH")]
    pub external_id_file: Option<PathBuf>,
    /// Session name shown in CloudTrail [default: s3role-HOST-PID].
    #[arg(long, value_name = "NAME")]
    pub role_session_name: Option<String>,
    /// Session length to ask STS for (900-43200).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub duration_seconds: u64,
    /// Inline session policy for the last role: JSON text, or @FILE (which keeps it out of
    /// every command line).
    #[arg(long, value_name = "JSON|@FILE")]
    pub session_policy: Option<SecretText>,
    /// Managed session policy for the last role (repeatable, at most 10).
    #[arg(long = "policy-arn", value_name = "ARN")]
    pub policy_arn: Vec<String>,
    /// STS endpoint URL (S3 never uses it).
    #[arg(long, value_name = "URL")]
    pub sts_endpoint: Option<String>,
    /// STS region [default: --region].
    #[arg(long, value_name = "REGION")]
    pub sts_region: Option<String>,
    /// Source identity from this profile of the shared AWS config instead of the default chain.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["web_identity_token_file", "saml_assertion_file"])]
    pub profile: Option<String>,
    /// Assume the first role with AssumeRoleWithWebIdentity, using the token in this file (re-read at every renewal).
    /// Without it or --profile, AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (set on Kubernetes
    /// for a service account's role, IRSA) do the same for their role, before any --role-arn.
    #[arg(long, value_name = "PATH", conflicts_with = "saml_assertion_file")]
    pub web_identity_token_file: Option<PathBuf>,
    /// Assume the first role with AssumeRoleWithSAML, using the base64 SAML response in this file (re-read at every renewal).
    #[arg(long, value_name = "PATH", requires = "saml_principal_arn")]
    pub saml_assertion_file: Option<PathBuf>,
    /// ARN of the IAM SAML provider, with --saml-assertion-file.
    #[arg(long, value_name = "ARN")]
    pub saml_principal_arn: Option<String>,
    /// Region of the bucket [default: from the environment or profile, else us-east-1].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// S3 endpoint URL, for S3-compatible servers (STS is not affected).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Path-style addressing (http://host/bucket/key), needed by most S3-compatible servers.
    #[arg(long)]
    pub path_style: bool,
    /// Renew the role session this long before it expires [default: a quarter of the session, 5 s to 15 min].
    #[arg(long, value_name = "SECONDS")]
    pub refresh_margin: Option<u64>,
    /// Give up on an S3 request S3 has not started answering after this long; retries and transfers get limits derived from it.
    #[arg(long, value_name = "SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Secrets already resolved, by this process or by the one that started it: when set,
    /// the secret options above are not read again.
    #[arg(skip)]
    pub resolved_secrets: Option<Secrets>,
}

/// An option value that must not be printed: a `{:?}` of the options shows only "(set)".
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl From<String> for SecretText {
    fn from(text: String) -> Self {
        SecretText(text)
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(set)")
    }
}

/// The inputs of a mount that other local users must not see (the external ID and the
/// session policy), resolved from their options, files or environment. Never printed: its
/// `{:?}` says only which are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// ExternalId for the last role.
    pub external_id: Option<String>,
    /// Inline session policy (JSON) for the last role.
    pub session_policy: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "not set" };
        f.debug_struct("Secrets")
            .field("external_id", &set(&self.external_id))
            .field("session_policy", &set(&self.session_policy))
            .finish()
    }
}

impl Secrets {
    /// The bytes that carry these secrets from one s3role process to the next (never argv).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::json!({
            "external_id": self.external_id,
            "session_policy": self.session_policy,
        })
        .to_string()
        .into_bytes()
    }

    /// Reads what [`Secrets::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Secrets, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the secrets handed over are not JSON: {e}"))?;
        let text = |key: &str| v[key].as_str().map(str::to_owned);
        Ok(Secrets {
            external_id: text("external_id"),
            session_policy: text("session_policy"),
        })
    }
}

/// Options whose value is a secret unless it starts with `@` (then it names a file).
const SECRET_OPTIONS: &[&str] = &["--external-id", "--session-policy"];

/// `argv` without the secret values given inline, for the command line of a process s3role
/// starts itself: `--external-id X`, `--external-id=X`, `--session-policy JSON` and
/// `--session-policy=JSON` go; the `@FILE` forms stay, since they name only a file. Expects
/// `-o` lists already expanded ([`crate::mount_opts::expand_args`]).
pub fn without_inline_secrets(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(it.by_ref().cloned());
            break;
        }
        if SECRET_OPTIONS.contains(&arg.as_str()) {
            match it.next() {
                Some(value) if value.starts_with('@') => out.extend([arg.clone(), value.clone()]),
                _ => {}
            }
            continue;
        }
        let inline_secret = arg
            .split_once('=')
            .is_some_and(|(name, value)| SECRET_OPTIONS.contains(&name) && !value.starts_with('@'));
        if !inline_secret {
            out.push(arg.clone());
        }
    }
    out
}

/// The contents of a file holding a secret, without trailing white space (a file written
/// with `echo` ends with a newline).
fn read_secret_file(option: &'static str, path: &std::path::Path) -> Result<String, InvalidInput> {
    let text = std::fs::read_to_string(path).map_err(|e| InvalidInput {
        option,
        problem: format!("cannot read {}: {e}", path.display()),
    })?;
    let text = text.trim_end();
    if text.is_empty() {
        return Err(InvalidInput {
            option,
            problem: format!("{} is empty", path.display()),
        });
    }
    Ok(text.to_owned())
}

/// The external ID read from `path` for `option`, checked, so that a mistake in the file is
/// reported against the option that named it (the ID itself is never shown).
fn external_id_from_file(option: &'static str, path: &std::path::Path) -> Result<String, InvalidInput> {
    let id = read_secret_file(option, path)?;
    creds::validate::external_id(&id).map_err(|e| InvalidInput {
        option,
        problem: format!("the external ID in {}: {}", path.display(), e.problem),
    })?;
    Ok(id)
}

/// How files look and how much is cached.
#[derive(Args, Debug, Clone)]
pub struct FileArgs {
    /// Owner of objects without x-amz-meta-uid [default: the mounting user].
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of objects without x-amz-meta-gid [default: the mounting user's group].
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permissions (octal) of files without x-amz-meta-mode.
    #[arg(long, value_name = "OCTAL", default_value = "0644", value_parser = parse_mode)]
    pub file_mode: u16,
    /// Permissions (octal) of directories without x-amz-meta-mode.
    #[arg(long, value_name = "OCTAL", default_value = "0755", value_parser = parse_mode)]
    pub dir_mode: u16,
    /// Refuse every change (EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// The objects carry no POSIX attributes (x-amz-meta-mode, -uid, -gid, -mtime), as with
    /// data other S3 clients wrote: a file's size and mtime come from the listing, its owner
    /// and mode from --uid, --gid, --file-mode and --dir-mode, and no HEAD is ever sent for
    /// an attribute, so `ls -l` costs only the listing requests. What this mount sets itself
    /// (chmod, chown, utimens) is still stored, but shown only until the metadata TTL
    /// passes; symlinks and special files made by other clients show as files.
    #[arg(long)]
    pub no_posix_metadata: bool,
    /// Let other users use the mount; the kernel then checks mode, uid and gid.
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for cached file blocks, e.g. 512M or 2G.
    #[arg(long, value_name = "BYTES", default_value = "512M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Keep blocks read from S3 on local disk in DIR too, so they are read from there after a
    /// remount or reboot (blocks are tied to the object's ETag and size, and checksummed).
    /// One mount per directory; it is made 0700 and must belong to the user mounting.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the disk cache holds; the least recently used blocks go first.
    #[arg(long, value_name = "BYTES", default_value = "10G", value_parser = parse_size)]
    pub cache_dir_size: u64,
    /// Seconds listings and attributes are trusted before S3 is asked again.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub metadata_ttl: u64,
    /// Directory for files written out of order (staged there until close or fsync; a file written front to back stays in memory) [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Most bytes staged at once; writes beyond get ENOSPC.
    #[arg(long, value_name = "BYTES", default_value = "10G", value_parser = parse_size)]
    pub staging_limit: u64,
    /// A file read at random all over (many small reads in different places) is fetched
    /// whole in the background into an unnamed file in the staging directory, so the rest of
    /// its reads cost no request; the copy goes when the file's last reader closes it. This
    /// bounds all such copies together; a larger object is never copied, nor one the disk
    /// has less than twice its size free for. 0 turns copies off.
    #[arg(long, value_name = "BYTES", default_value = "4G", value_parser = parse_size)]
    pub fill_limit: u64,
    /// Seconds a file whose last close could not upload it is retried in the background
    /// before its bytes go to the recovery directory.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub upload_retry_time: u64,
    /// How S3 checks that each upload arrived intact: crc32c sends the CRC32C of every object
    /// and part and leaves the body out of the signature; signed-payload signs the SHA-256 of
    /// the body instead (more CPU per byte), for S3-compatible servers that refuse checksums.
    #[arg(long, value_name = "HOW", value_enum, default_value = "crc32c")]
    pub upload_checksum: UploadChecksum,
    /// Where the bytes of files that could not be uploaded are left, one file each, mode
    /// 0600 [default: STATE_DIR/recovery].
    #[arg(long, value_name = "DIR")]
    pub recovery_dir: Option<PathBuf>,
    /// Where the mount keeps what must outlive it: the recovery directory, and a journal of
    /// its multipart uploads, so the next mount aborts those a killed daemon left open
    /// [default: /var/lib/s3role for root, else $XDG_STATE_HOME/s3role].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Parses an octal permission like `0644` or `755`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal mode like 0644"))
}

/// Parses a size like `1024`, `64K`, `512M`, `2G` (powers of 1024; `KiB`, `MB` also accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size like 512M"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("'{s}' has an unknown unit; use K, M, G or T")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// Bucket and key prefix of a mount source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix: "" or ending with `/`.
    pub prefix: String,
}

/// Parses `BUCKET`, `BUCKET:/PREFIX` or `s3://BUCKET/PREFIX`.
pub fn parse_source(s: &str) -> Result<Source, InvalidInput> {
    let (bucket, prefix) = if let Some(rest) = s.strip_prefix("s3://") {
        rest.split_once('/').unwrap_or((rest, ""))
    } else {
        s.split_once(':').unwrap_or((s, ""))
    };
    creds::validate::bucket(bucket)?;
    let trimmed = prefix.trim_matches('/');
    if trimmed.split('/').any(|seg| seg == "." || seg == "..") || trimmed.contains("//") {
        return Err(InvalidInput {
            option: "SOURCE",
            problem: format!("prefix '{prefix}' has an empty, '.' or '..' segment"),
        });
    }
    let prefix = if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    };
    Ok(Source {
        bucket: bucket.to_owned(),
        prefix,
    })
}

/// `--upload-checksum` takes the names [`UploadChecksum::name`] gives, and the help and man
/// page list them with what each costs, so that nobody has to read the README to choose.
impl clap::ValueEnum for UploadChecksum {
    fn value_variants<'a>() -> &'a [Self] {
        &UploadChecksum::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            UploadChecksum::Crc32c => "a CRC32C of each object and part; the body is not signed",
            UploadChecksum::SignedPayload => "no checksum header; the SHA-256 of the body is signed",
        };
        Some(clap::builder::PossibleValue::new(self.name()).help(help))
    }
}

impl AccessArgs {
    /// The region of the bucket, from the option, the environment or the profile.
    pub async fn resolve_region(&self) -> String {
        if let Some(r) = &self.region {
            return r.clone();
        }
        let mut chain = aws_config::meta::region::RegionProviderChain::first_try(None::<aws_types::region::Region>);
        if let Some(p) = &self.profile {
            chain = chain.or_else(
                aws_config::profile::ProfileFileRegionProvider::builder()
                    .profile_name(p)
                    .build(),
            );
        }
        chain
            .or_default_provider()
            .region()
            .await
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_owned())
    }

    /// The external ID and session policy, from the resolved secrets if there are some, else
    /// from their options: `--external-id-file PATH`, `--external-id ID|@FILE` (or
    /// S3ROLE_EXTERNAL_ID), `--session-policy JSON|@FILE`.
    pub fn secrets(&self) -> Result<Secrets, InvalidInput> {
        if let Some(s) = &self.resolved_secrets {
            return Ok(s.clone());
        }
        // clap merges S3ROLE_EXTERNAL_ID into --external-id; a file given on the command line
        // wins over the environment, but not over --external-id given there too.
        let from_environment = |id: &SecretText| std::env::var("S3ROLE_EXTERNAL_ID").is_ok_and(|e| e == id.0);
        let external_id = match (&self.external_id_file, &self.external_id) {
            (Some(_), Some(id)) if !from_environment(id) => {
                return Err(InvalidInput {
                    option: "--external-id-file",
                    problem: "give either --external-id or --external-id-file, not both".into(),
                });
            }
            (Some(path), _) => Some(external_id_from_file("--external-id-file", path)?),
            (None, Some(id)) => match id.0.strip_prefix('@') {
                Some(path) => Some(external_id_from_file("--external-id", path.as_ref())?),
                None => Some(id.0.clone()),
            },
            (None, None) => None,
        };
        let session_policy = match &self.session_policy {
            Some(p) => match p.0.strip_prefix('@') {
                Some(path) => Some(read_secret_file("--session-policy", path.as_ref())?),
                None => Some(p.0.clone()),
            },
            None => None,
        };
        Ok(Secrets {
            external_id,
            session_policy,
        })
    }

    /// Reads the secrets once and keeps them, so that files are not read again and what
    /// was checked is what is used.
    pub fn resolve_secrets(&mut self) -> Result<Secrets, InvalidInput> {
        let secrets = self.secrets()?;
        self.resolved_secrets = Some(secrets.clone());
        Ok(secrets)
    }

    /// With no source option, the role a Kubernetes pod's service account gives it through
    /// the environment (IRSA: [`creds::web_identity_from`]), as its token file and the first
    /// role of the chain, assumed with this session name unless AWS_ROLE_SESSION_NAME names
    /// one. s3role assumes it itself rather than leave it to the SDK's default chain, so that
    /// --sts-endpoint and --sts-region apply and failures name the role.
    fn pod_role(
        &self,
        session_name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(PathBuf, RoleSpec)>, InvalidInput> {
        if self.profile.is_some() || self.web_identity_token_file.is_some() || self.saml_assertion_file.is_some() {
            return Ok(None);
        }
        let Some(pod) = creds::web_identity_from(env) else {
            return Ok(None);
        };
        let from_env = |option: &'static str| move |e: InvalidInput| InvalidInput { option, ..e };
        creds::validate::role_arn(&pod.role_arn).map_err(from_env("AWS_ROLE_ARN"))?;
        let session_name = match (&self.role_session_name, pod.session_name) {
            (None, Some(name)) => {
                creds::validate::session_name(&name).map_err(from_env("AWS_ROLE_SESSION_NAME"))?;
                name
            }
            _ => session_name.to_owned(),
        };
        let role = RoleSpec {
            arn: pod.role_arn,
            external_id: None,
            session_name,
            duration: Duration::from_secs(self.duration_seconds),
            policy: None,
            policy_arns: vec![],
        };
        Ok(Some((pod.token_file, role)))
    }

    /// The credential chain these options describe, validated.
    pub fn creds_config(&self, region: String) -> Result<CredsConfig, InvalidInput> {
        self.creds_config_in(region, |k| std::env::var(k).ok())
    }

    /// [`AccessArgs::creds_config`] with the environment read through `env`.
    fn creds_config_in(
        &self,
        region: String,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<CredsConfig, InvalidInput> {
        let secrets = self.secrets()?;
        if secrets.external_id.is_some() && self.role_arn.is_empty() {
            return Err(InvalidInput {
                option: "--external-id",
                problem: "needs --role-arn: an external ID is only sent when assuming a role".into(),
            });
        }
        if (secrets.session_policy.is_some() || !self.policy_arn.is_empty()) && self.role_arn.is_empty() {
            return Err(InvalidInput {
                option: "--session-policy",
                problem: "session policies need --role-arn".into(),
            });
        }
        let policy = secrets.session_policy;
        let session_name = self
            .role_session_name
            .clone()
            .unwrap_or_else(creds::default_session_name);
        let pod_role = self.pod_role(&session_name, env)?;
        let last = self.role_arn.len().saturating_sub(1);
        let roles: Vec<RoleSpec> = pod_role
            .as_ref()
            .map(|(_, role)| role.clone())
            .into_iter()
            .chain(self.role_arn.iter().enumerate().map(|(i, arn)| RoleSpec {
                arn: arn.clone(),
                external_id: if i == last { secrets.external_id.clone() } else { None },
                session_name: session_name.clone(),
                duration: Duration::from_secs(if i == 0 && pod_role.is_none() {
                    self.duration_seconds
                } else {
                    self.duration_seconds.min(3600)
                }),
                policy: if i == last { policy.clone() } else { None },
                policy_arns: if i == last { self.policy_arn.clone() } else { vec![] },
            }))
            .collect();
        let source = if let Some((token_file, _)) = pod_role {
            SourceSpec::WebIdentity(token_file)
        } else if let Some(p) = &self.profile {
            SourceSpec::Profile(p.clone())
        } else if let Some(f) = &self.web_identity_token_file {
            SourceSpec::WebIdentity(f.clone())
        } else if let Some(f) = &self.saml_assertion_file {
            SourceSpec::Saml {
                assertion_file: f.clone(),
                principal_arn: self.saml_principal_arn.clone().unwrap_or_default(),
            }
        } else {
            SourceSpec::DefaultChain
        };
        for (opt, url) in [
            ("--sts-endpoint", &self.sts_endpoint),
            ("--endpoint-url", &self.endpoint_url),
        ] {
            if let Some(u) = url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(InvalidInput {
                    option: opt,
                    problem: format!("'{u}' is not an http:// or https:// URL"),
                });
            }
        }
        let cfg = CredsConfig {
            source,
            roles,
            region,
            sts_endpoint: self.sts_endpoint.clone(),
            sts_region: self.sts_region.clone(),
            refresh_margin: self.refresh_margin.map(Duration::from_secs),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(
            parse_source("bkt").unwrap(),
            Source {
                bucket: "bkt".into(),
                prefix: "".into()
            }
        );
        assert_eq!(parse_source("bkt:/raw").unwrap().prefix, "raw/");
        assert_eq!(parse_source("bkt:/raw/x/").unwrap().prefix, "raw/x/");
        assert_eq!(
            parse_source("s3://bkt/a/b").unwrap(),
            Source {
                bucket: "bkt".into(),
                prefix: "a/b/".into()
            }
        );
        assert!(parse_source("s3://bkt/a//b").is_err());
        assert!(parse_source("Bad_Bucket").is_err());
    }

    #[test]
    fn sizes_and_modes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("5X").is_err());
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert!(parse_mode("999").is_err());
    }

    fn access(args: &[&str]) -> AccessArgs {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: AccessArgs,
        }
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn fstab_metrics_options_reach_the_mount() {
        let argv = crate::mount_opts::expand_args(
            [
                "s3role",
                "mount",
                "b",
                "/m",
                "-o",
                "metrics_addr=127.0.0.1:9464,metrics_label=raw",
            ]
            .map(String::from)
            .to_vec(),
        );
        let Command::Mount(m) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not a mount")
        };
        assert_eq!(m.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(m.metrics_label.as_deref(), Some("raw"));
        assert!(Cli::try_parse_from(["s3role", "mount", "b", "/m", "--metrics-addr", "localhost"]).is_err());
        assert!(
            Cli::try_parse_from(["s3role", "mount", "b", "/m", "--metrics-label", "x"]).is_err(),
            "a label without an address"
        );
    }

    #[test]
    fn external_id_needs_a_role() {
        let e = access(&["--external-id", "abc"])
            .creds_config("us-east-1".into())
            .unwrap_err();
        assert_eq!(e.option, "--external-id");
    }

    #[test]
    fn chain_options_go_to_the_last_role() {
        let c = access(&[
            "--role-arn",
            "arn:aws:iam::123456789012:role/a",
            "--role-arn",
            "arn:aws:iam::123456789012:role/b",
            "--external-id",
            "ext-1",
            "--role-session-name",
            "ops",
        ])
        .creds_config("us-east-1".into())
        .unwrap();
        assert_eq!(c.roles.len(), 2);
        assert_eq!(c.roles[0].external_id, None);
        assert_eq!(c.roles[1].external_id.as_deref(), Some("ext-1"));
        assert_eq!(c.roles[1].session_name, "ops");
    }

    #[test]
    fn a_pods_irsa_role_comes_first_and_roles_given_are_assumed_from_it() {
        let pod = |k: &str| match k {
            "AWS_WEB_IDENTITY_TOKEN_FILE" => Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token".to_owned()),
            "AWS_ROLE_ARN" => Some("arn:aws:iam::111122223333:role/pod".to_owned()),
            "AWS_ROLE_SESSION_NAME" => Some("pod-1".to_owned()),
            _ => None,
        };
        let partner = "arn:aws:iam::444455556666:role/partner";
        let c = access(&[
            "--role-arn",
            partner,
            "--external-id",
            "ext-1",
            "--duration-seconds",
            "7200",
        ])
        .creds_config_in("us-east-1".into(), pod)
        .unwrap();
        let durations: Vec<u64> = c.roles.iter().map(|r| r.duration.as_secs()).collect();
        assert_eq!(
            durations,
            [7200, 3600],
            "a role assumed through another gets an hour at most"
        );
        assert_eq!(
            c.source,
            SourceSpec::WebIdentity("/var/run/secrets/eks.amazonaws.com/serviceaccount/token".into())
        );
        let arns: Vec<&str> = c.roles.iter().map(|r| r.arn.as_str()).collect();
        assert_eq!(arns, ["arn:aws:iam::111122223333:role/pod", partner]);
        assert_eq!(c.roles[0].session_name, "pod-1");
        assert_eq!(c.roles[0].external_id, None);
        assert_eq!(c.roles[1].external_id.as_deref(), Some("ext-1"));
        let alone = access(&["--role-session-name", "mine"])
            .creds_config_in("us-east-1".into(), pod)
            .unwrap();
        assert_eq!(alone.roles.len(), 1);
        assert_eq!(alone.roles[0].session_name, "mine");
        // An explicit source wins over the environment.
        let token = access(&["--web-identity-token-file", "/t", "--role-arn", partner])
            .creds_config_in("us-east-1".into(), pod)
            .unwrap();
        assert_eq!(token.source, SourceSpec::WebIdentity("/t".into()));
        assert_eq!(token.roles.len(), 1);
        let bad = |k: &str| match k {
            "AWS_ROLE_ARN" => Some("not-an-arn".to_owned()),
            _ => pod(k),
        };
        let e = access(&[]).creds_config_in("us-east-1".into(), bad).unwrap_err();
        assert_eq!(e.option, "AWS_ROLE_ARN");
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn inline_secrets_leave_the_command_line_and_file_names_stay() {
        let kept = strings(&[
            "s3role",
            "mount",
            "b",
            "/m",
            "--external-id=@/etc/id",
            "--session-policy",
            "@/etc/p.json",
            "--external-id-file=/etc/id",
            "--role-session-name",
            "n1",
            "--",
            "--external-id=x",
        ]);
        let mut argv = kept.clone();
        argv.splice(4..4, strings(&["--external-id", "abc", "--session-policy={}"]));
        assert_eq!(without_inline_secrets(&argv), kept);
    }

    #[test]
    fn external_ids_come_from_files_trimmed_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let role = "arn:aws:iam::123456789012:role/a";
        let path = file.display().to_string();
        for args in [
            vec!["--role-arn", role, "--external-id-file", &path],
            vec!["--role-arn", role, "--external-id", &format!("@{path}")],
        ] {
            let a = access(&args);
            let c = a.creds_config("us-east-1".into()).unwrap();
            assert_eq!(c.roles[0].external_id.as_deref(), Some("from-a-file"), "{args:?}");
            assert!(!format!("{a:?}").contains("from-a-file"));
            assert!(!format!("{:?}", a.secrets().unwrap()).contains("from-a-file"));
        }
        let both = access(&["--role-arn", role, "--external-id", "x1", "--external-id-file", &path]);
        assert_eq!(both.secrets().unwrap_err().option, "--external-id-file");
        std::fs::write(&file, "not valid!\n").unwrap();
        let e = access(&["--role-arn", role, "--external-id-file", &path])
            .secrets()
            .unwrap_err();
        assert_eq!(e.option, "--external-id-file");
        assert!(!e.to_string().contains("not valid"), "{e}");
    }

    #[test]
    fn secrets_survive_the_handover() {
        let s = Secrets {
            external_id: Some("e-1".into()),
            session_policy: None,
        };
        assert_eq!(Secrets::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn bad_inputs_name_their_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--role-arn", "nope"], "--role-arn"),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/a",
                    "--duration-seconds",
                    "60",
                ],
                "--duration-seconds",
            ),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/a",
                    "--role-session-name",
                    "bad name",
                ],
                "--role-session-name",
            ),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/a",
                    "--session-policy",
                    "{not json",
                ],
                "--session-policy",
            ),
            (
                &[
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/a",
                    "--sts-endpoint",
                    "localhost:1",
                ],
                "--sts-endpoint",
            ),
        ];
        for (args, option) in cases {
            assert_eq!(
                access(args).creds_config("us-east-1".into()).unwrap_err().option,
                *option,
                "{args:?}"
            );
        }
    }
}
