//! Credentials: where the source identity comes from, the chain of roles assumed from it,
//! and the background task that renews the session before it expires. Nothing else in
//! s3role calls STS.

mod chain;
mod error;
mod renew;
pub mod validate;

pub use chain::Chain;
pub use error::CredsError;
pub use renew::{CredentialSlot, Renewer, SessionStatus, SlotProvider};

use std::path::PathBuf;
use std::time::Duration;

/// Where the first credentials come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SourceSpec {
    /// The standard AWS chain: environment, shared profile, web identity from the
    /// environment, ECS/Pod Identity, EC2 instance metadata (IMDSv2).
    #[default]
    DefaultChain,
    /// One named profile of the shared config and credentials files.
    Profile(String),
    /// AssumeRoleWithWebIdentity into the first role, with a token read from this file at
    /// every renewal (Kubernetes rotates it).
    WebIdentity(PathBuf),
    /// AssumeRoleWithSAML into the first role, with a base64 SAML response read from a file
    /// at every renewal (an assertion is only accepted for 5 minutes, so something must keep
    /// the file fresh).
    Saml {
        /// File holding the base64 SAMLResponse.
        assertion_file: PathBuf,
        /// ARN of the IAM SAML provider.
        principal_arn: String,
    },
}

/// One role to assume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    /// Role ARN.
    pub arn: String,
    /// ExternalId the role's trust policy asks for.
    pub external_id: Option<String>,
    /// Session name, shown in CloudTrail and in the assumed-role ARN.
    pub session_name: String,
    /// Session length asked for (STS may grant less).
    pub duration: Duration,
    /// Inline session policy (JSON).
    pub policy: Option<String>,
    /// Managed session policies.
    pub policy_arns: Vec<String>,
}

/// Everything needed to produce the mount's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredsConfig {
    /// Source identity.
    pub source: SourceSpec,
    /// Roles assumed in order, each with the previous one's credentials; empty means the
    /// source credentials are used directly.
    pub roles: Vec<RoleSpec>,
    /// Region for STS when `sts_region` is not given.
    pub region: String,
    /// STS endpoint (never used for S3).
    pub sts_endpoint: Option<String>,
    /// STS region.
    pub sts_region: Option<String>,
    /// Renew this long before expiry; `None` scales with the session length.
    pub refresh_margin: Option<Duration>,
}

impl CredsConfig {
    /// Checks every input before anything is sent.
    pub fn validate(&self) -> Result<(), validate::InvalidInput> {
        for role in &self.roles {
            validate::role_arn(&role.arn)?;
            validate::session_name(&role.session_name)?;
            validate::duration(role.duration)?;
            if let Some(id) = &role.external_id {
                validate::external_id(id)?;
            }
            if let Some(p) = &role.policy {
                validate::session_policy(p)?;
            }
            if role.policy_arns.len() > 10 {
                return Err(validate::InvalidInput {
                    option: "--policy-arn",
                    problem: "at most 10 policy ARNs are allowed".into(),
                });
            }
            for arn in &role.policy_arns {
                validate::policy_arn(arn)?;
            }
        }
        if self.roles.len() > 1
            && self
                .roles
                .iter()
                .skip(1)
                .any(|r| r.duration > Duration::from_secs(3600))
        {
            return Err(validate::InvalidInput {
                option: "--duration-seconds",
                problem: "a role assumed through another role (role chaining) is limited to 3600 seconds".into(),
            });
        }
        match &self.source {
            SourceSpec::WebIdentity(_) if self.roles.is_empty() => {
                return Err(validate::InvalidInput {
                    option: "--web-identity-token-file",
                    problem: "needs --role-arn: the token is exchanged for that role's credentials".into(),
                });
            }
            SourceSpec::Saml { principal_arn, .. } => {
                if self.roles.is_empty() {
                    return Err(validate::InvalidInput {
                        option: "--saml-assertion-file",
                        problem: "needs --role-arn".into(),
                    });
                }
                if !principal_arn.starts_with("arn:") || !principal_arn.contains(":saml-provider/") {
                    return Err(validate::InvalidInput {
                        option: "--saml-principal-arn",
                        problem: format!(
                            "'{principal_arn}' is not a SAML provider ARN (arn:aws:iam::ACCOUNT:saml-provider/NAME)"
                        ),
                    });
                }
            }
            _ => {}
        }
        if let Some(m) = self.refresh_margin
            && let Some(short) = self.roles.iter().map(|r| r.duration).min()
            && m >= short
        {
            return Err(validate::InvalidInput {
                option: "--refresh-margin",
                problem: format!(
                    "{} s is not shorter than the session ({} s)",
                    m.as_secs(),
                    short.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// What the chain is, for logs and status: never a secret.
    pub fn describe(&self) -> String {
        let source = match &self.source {
            SourceSpec::DefaultChain => "default credential chain".to_owned(),
            SourceSpec::Profile(p) => format!("profile {p}"),
            SourceSpec::WebIdentity(f) => format!("web identity token {}", f.display()),
            SourceSpec::Saml { principal_arn, .. } => format!("SAML via {principal_arn}"),
        };
        let mut parts = vec![source];
        parts.extend(self.roles.iter().map(|r| r.arn.clone()));
        parts.join(" -> ")
    }
}

/// The role of a Kubernetes pod's service account (IRSA), as the environment names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvWebIdentity {
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`: the token the kubelet keeps fresh.
    pub token_file: PathBuf,
    /// `AWS_ROLE_ARN`: the role the token is exchanged for.
    pub role_arn: String,
    /// `AWS_ROLE_SESSION_NAME`, if set.
    pub session_name: Option<String>,
}

/// The web identity that `env` (a variable lookup) gives: `AWS_WEB_IDENTITY_TOKEN_FILE` and
/// `AWS_ROLE_ARN`, which the EKS pod identity webhook (or the pod spec) sets for IRSA.
/// `None` if either is missing or empty, and, as in the SDK's default chain, when keys
/// (`AWS_ACCESS_KEY_ID`) or a profile (`AWS_PROFILE`) in the environment come first.
pub fn web_identity_from(env: impl Fn(&str) -> Option<String>) -> Option<EnvWebIdentity> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID").is_some() || set("AWS_PROFILE").is_some() {
        return None;
    }
    Some(EnvWebIdentity {
        token_file: set("AWS_WEB_IDENTITY_TOKEN_FILE")?.into(),
        role_arn: set("AWS_ROLE_ARN")?,
        session_name: set("AWS_ROLE_SESSION_NAME"),
    })
}

/// The session name used when none is given: host name and process id, made valid.
pub fn default_session_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL or the end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let host = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "host".to_owned()
    };
    validate::sanitize_session_name(&format!("s3role-{host}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(arn: &str) -> RoleSpec {
        RoleSpec {
            arn: arn.into(),
            external_id: None,
            session_name: "s3role-test".into(),
            duration: Duration::from_secs(3600),
            policy: None,
            policy_arns: vec![],
        }
    }

    #[test]
    fn chained_roles_are_limited_to_an_hour() {
        let mut c = CredsConfig {
            source: SourceSpec::DefaultChain,
            roles: vec![
                role("arn:aws:iam::123456789012:role/a"),
                role("arn:aws:iam::123456789012:role/b"),
            ],
            region: "us-east-1".into(),
            sts_endpoint: None,
            sts_region: None,
            refresh_margin: None,
        };
        assert!(c.validate().is_ok());
        c.roles[1].duration = Duration::from_secs(7200);
        assert_eq!(c.validate().unwrap_err().option, "--duration-seconds");
    }

    #[test]
    fn web_identity_needs_a_role() {
        let c = CredsConfig {
            source: SourceSpec::WebIdentity("/t".into()),
            roles: vec![],
            region: "us-east-1".into(),
            sts_endpoint: None,
            sts_region: None,
            refresh_margin: None,
        };
        assert_eq!(c.validate().unwrap_err().option, "--web-identity-token-file");
    }

    #[test]
    fn irsa_variables_name_a_web_identity_unless_keys_or_a_profile_come_first() {
        let irsa = [
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/pod"),
        ];
        let lookup = |vars: Vec<(&'static str, &'static str)>| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let found = web_identity_from(lookup(irsa.to_vec())).expect("IRSA variables");
        assert_eq!(found.role_arn, "arn:aws:iam::111122223333:role/pod");
        assert_eq!(found.session_name, None);
        let named = [irsa.as_slice(), &[("AWS_ROLE_SESSION_NAME", "pod-1")]].concat();
        assert_eq!(
            web_identity_from(lookup(named)).and_then(|w| w.session_name).as_deref(),
            Some("pod-1")
        );
        assert_eq!(web_identity_from(lookup(irsa[..1].to_vec())), None);
        assert_eq!(web_identity_from(lookup(vec![("AWS_ROLE_ARN", ""), irsa[0]])), None);
        for first in [("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"), ("AWS_PROFILE", "work")] {
            assert_eq!(web_identity_from(lookup([irsa.as_slice(), &[first]].concat())), None);
        }
    }

    #[test]
    fn default_session_name_is_valid() {
        assert!(validate::session_name(&default_session_name()).is_ok());
    }
}
