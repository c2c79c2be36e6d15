//! The command line: `s3role mount`, `s3role check`, and how their options become settings.

use crate::creds::{self, CredsConfig, RoleSpec, SourceSpec, validate::InvalidInput};
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
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount a bucket or a prefix of one.
    Mount(MountArgs),
    /// Walk the credential chain and the bucket access one step at a time and report each.
    Check(CheckArgs),
    /// Show a live mount's source, role chain, session expiry, renewals, cache and uploads.
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
    /// Stay in the foreground instead of returning once the mount is live.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// Log to this file instead of syslog once detached (reopened on SIGHUP, for logrotate).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
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
    /// ExternalId for the last role of the chain (the one whose trust policy asks for it).
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Session name shown in CloudTrail [default: s3role-HOST-PID].
    #[arg(long, value_name = "NAME")]
    pub role_session_name: Option<String>,
    /// Session length to ask STS for (900-43200).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub duration_seconds: u64,
    /// Inline session policy for the last role: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub session_policy: Option<String>,
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
    /// Let other users use the mount; the kernel then checks mode, uid and gid.
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for cached file blocks, e.g. 512M or 2G.
    #[arg(long, value_name = "BYTES", default_value = "512M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Seconds listings and attributes are trusted before S3 is asked again.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub metadata_ttl: u64,
    /// Directory for files being written (staged there until close or fsync) [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Most bytes staged at once; writes beyond get ENOSPC.
    #[arg(long, value_name = "BYTES", default_value = "10G", value_parser = parse_size)]
    pub staging_limit: u64,
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

    /// The credential chain these options describe, validated.
    pub fn creds_config(&self, region: String) -> Result<CredsConfig, InvalidInput> {
        if self.external_id.is_some() && self.role_arn.is_empty() {
            return Err(InvalidInput {
                option: "--external-id",
                problem: "needs --role-arn: an external ID is only sent when assuming a role".into(),
            });
        }
        if (self.session_policy.is_some() || !self.policy_arn.is_empty()) && self.role_arn.is_empty() {
            return Err(InvalidInput {
                option: "--session-policy",
                problem: "session policies need --role-arn".into(),
            });
        }
        let policy = match &self.session_policy {
            Some(p) if p.starts_with('@') => Some(std::fs::read_to_string(&p[1..]).map_err(|e| InvalidInput {
                option: "--session-policy",
                problem: format!("cannot read {}: {e}", &p[1..]),
            })?),
            other => other.clone(),
        };
        let session_name = self
            .role_session_name
            .clone()
            .unwrap_or_else(creds::default_session_name);
        let last = self.role_arn.len().saturating_sub(1);
        let roles = self
            .role_arn
            .iter()
            .enumerate()
            .map(|(i, arn)| RoleSpec {
                arn: arn.clone(),
                external_id: if i == last { self.external_id.clone() } else { None },
                session_name: session_name.clone(),
                duration: Duration::from_secs(if i == 0 {
                    self.duration_seconds
                } else {
                    self.duration_seconds.min(3600)
                }),
                policy: if i == last { policy.clone() } else { None },
                policy_arns: if i == last { self.policy_arn.clone() } else { vec![] },
            })
            .collect();
        let source = if let Some(p) = &self.profile {
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
