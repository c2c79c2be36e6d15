//! Walks the credential chain: source identity, then each role in order.

use super::error::hint_for;
use super::{CredsConfig, CredsError, RoleSpec, SourceSpec};
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::PolicyDescriptorType;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use std::time::{Duration, SystemTime};

/// How long an STS call may wait for STS to start answering, and one attempt may take. STS
/// answers in milliseconds; a connection that stays silent this long is dead, and waiting
/// on it would keep renewal from trying a fresh one.
pub const STS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one STS call may take with its retries (3 attempts).
pub const STS_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the source identity may take: a `credential_process`, SSO, the instance
/// metadata or container endpoint. Their own clients have shorter limits; this one also
/// bounds a process that never exits.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(60);

/// The limits of every STS client built here, and of the clients the source providers
/// build for themselves (web identity and SSO from a profile, assumed roles in a profile).
pub fn sts_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(STS_ATTEMPT_TIMEOUT)
        .operation_attempt_timeout(STS_ATTEMPT_TIMEOUT)
        .operation_timeout(STS_OPERATION_TIMEOUT)
        .build()
}

fn sts_retries() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(3)
}

/// The configured chain, ready to produce credentials on demand.
pub struct Chain {
    cfg: CredsConfig,
    sdk: aws_types::SdkConfig,
    source: Option<SharedCredentialsProvider>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("chain", &self.cfg.describe()).finish()
    }
}

fn sts_error<E>(
    step: String,
    err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
    assume: bool,
    external_id_set: bool,
) -> CredsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned).or_else(|| match status {
        Some(403) => Some("AccessDenied".to_owned()),
        _ => None,
    });
    let message = match err.message() {
        Some(m) => m.to_owned(),
        None => match status {
            Some(s) => format!("HTTP {s}: {}", DisplayErrorContext(&err)),
            None => format!("no answer from STS: {}", DisplayErrorContext(&err)),
        },
    };
    let hint = hint_for(code.as_deref(), assume, external_id_set);
    CredsError {
        step,
        code,
        message,
        hint,
        request_id: aws_types::request_id::RequestId::request_id(&err).map(str::to_owned),
    }
}

fn from_sts(c: Option<&aws_sdk_sts::types::Credentials>, step: &str) -> Result<Credentials, CredsError> {
    let c = c.ok_or_else(|| CredsError {
        step: step.to_owned(),
        code: None,
        message: "STS answered without credentials".into(),
        hint: None,
        request_id: None,
    })?;
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        SystemTime::try_from(*c.expiration()).ok(),
        "s3role",
    ))
}

async fn read_file(path: &std::path::Path, step: &str) -> Result<String, CredsError> {
    tokio::fs::read_to_string(path)
        .await
        .map(|s| s.trim().to_owned())
        .map_err(|e| CredsError {
            step: step.to_owned(),
            code: None,
            message: format!("cannot read {}: {e}", path.display()),
            hint: None,
            request_id: None,
        })
}

impl Chain {
    /// Prepares the chain; sends nothing.
    pub async fn new(cfg: CredsConfig) -> Self {
        let region = Region::new(cfg.region.clone());
        // The S3 client starts from these settings too, and replaces the limits with its own.
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .no_credentials()
            .timeout_config(sts_timeouts())
            .retry_config(sts_retries())
            .load()
            .await;
        let pc = aws_config::provider_config::ProviderConfig::default()
            .with_region(Some(region.clone()))
            .with_timeout_config(sts_timeouts())
            .with_retry_config(sts_retries());
        let source = match &cfg.source {
            SourceSpec::DefaultChain => Some(SharedCredentialsProvider::new(
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(region)
                    .configure(pc)
                    .build()
                    .await,
            )),
            SourceSpec::Profile(name) => Some(SharedCredentialsProvider::new(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .configure(&pc)
                    .profile_name(name)
                    .build(),
            )),
            SourceSpec::WebIdentity(_) | SourceSpec::Saml { .. } => None,
        };
        Chain { cfg, sdk, source }
    }

    /// The configuration this chain was built from.
    pub fn config(&self) -> &CredsConfig {
        &self.cfg
    }

    /// The SDK settings (region, HTTP client, retries) shared with the S3 client.
    pub fn sdk_config(&self) -> &aws_types::SdkConfig {
        &self.sdk
    }

    fn sts(&self, creds: Option<&Credentials>) -> aws_sdk_sts::Client {
        let mut b = aws_sdk_sts::config::Builder::from(&self.sdk);
        if let Some(r) = self.cfg.sts_region.as_ref() {
            b = b.region(Region::new(r.clone()));
        }
        if let Some(url) = &self.cfg.sts_endpoint {
            b = b.endpoint_url(url);
        }
        if let Some(c) = creds {
            b = b.credentials_provider(c.clone());
        }
        aws_sdk_sts::Client::from_conf(b.build())
    }

    /// The source identity's credentials; `None` for sources that have none of their own
    /// (web identity and SAML go straight to the first role).
    pub async fn source_credentials(&self) -> Result<Option<Credentials>, CredsError> {
        let Some(p) = &self.source else { return Ok(None) };
        let step = match &self.cfg.source {
            SourceSpec::Profile(n) => format!("source credentials (profile {n})"),
            _ => "source credentials (default chain: environment, profile, web identity, container, instance metadata)"
                .into(),
        };
        match tokio::time::timeout(SOURCE_TIMEOUT, p.provide_credentials()).await {
            Ok(Ok(creds)) => Ok(Some(creds)),
            Ok(Err(e)) => {
                let message = DisplayErrorContext(&e).to_string();
                Err(CredsError {
                    step,
                    code: None,
                    hint: Some(source_failure_hint(&message)),
                    message,
                    request_id: None,
                })
            }
            Err(_) => Err(CredsError {
                step,
                code: None,
                message: format!("no answer within {} s", SOURCE_TIMEOUT.as_secs()),
                hint: Some(source_failure_hint("")),
                request_id: None,
            }),
        }
    }

    /// The ARN behind a set of credentials (GetCallerIdentity).
    pub async fn caller_arn(&self, creds: &Credentials) -> Result<String, CredsError> {
        let out = self
            .sts(Some(creds))
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| sts_error("GetCallerIdentity".into(), e, false, false))?;
        Ok(out.arn().unwrap_or("unknown").to_owned())
    }

    /// Assumes role `index` of the chain with `with` (the previous step's credentials).
    pub async fn assume(&self, index: usize, with: Option<&Credentials>) -> Result<Credentials, CredsError> {
        let role: &RoleSpec = &self.cfg.roles[index];
        let duration = i32::try_from(role.duration.as_secs()).unwrap_or(3600);
        let arns = (!role.policy_arns.is_empty()).then(|| {
            role.policy_arns
                .iter()
                .map(|a| PolicyDescriptorType::builder().arn(a).build())
                .collect::<Vec<_>>()
        });
        if index == 0 {
            match &self.cfg.source {
                SourceSpec::WebIdentity(file) => {
                    let step = format!("AssumeRoleWithWebIdentity {}", role.arn);
                    let token = read_file(file, &step).await?;
                    let out = self
                        .sts(None)
                        .assume_role_with_web_identity()
                        .role_arn(&role.arn)
                        .role_session_name(&role.session_name)
                        .web_identity_token(token)
                        .duration_seconds(duration)
                        .set_policy(role.policy.clone())
                        .set_policy_arns(arns)
                        .send()
                        .await
                        .map_err(|e| sts_error(step.clone(), e, true, false))?;
                    return from_sts(out.credentials(), &step);
                }
                SourceSpec::Saml {
                    assertion_file,
                    principal_arn,
                } => {
                    let step = format!("AssumeRoleWithSAML {}", role.arn);
                    let assertion = read_file(assertion_file, &step).await?;
                    let out = self
                        .sts(None)
                        .assume_role_with_saml()
                        .role_arn(&role.arn)
                        .principal_arn(principal_arn)
                        .saml_assertion(assertion)
                        .duration_seconds(duration)
                        .set_policy(role.policy.clone())
                        .set_policy_arns(arns)
                        .send()
                        .await
                        .map_err(|e| sts_error(step.clone(), e, true, false))?;
                    return from_sts(out.credentials(), &step);
                }
                _ => {}
            }
        }
        let step = format!("AssumeRole {}", role.arn);
        let out = self
            .sts(with)
            .assume_role()
            .role_arn(&role.arn)
            .role_session_name(&role.session_name)
            .duration_seconds(duration)
            .set_external_id(role.external_id.clone())
            .set_policy(role.policy.clone())
            .set_policy_arns(arns)
            .send()
            .await
            .map_err(|e| sts_error(step.clone(), e, true, role.external_id.is_some()))?;
        from_sts(out.credentials(), &step)
    }

    /// Walks the whole chain and returns the final credentials.
    pub async fn resolve(&self) -> Result<Credentials, CredsError> {
        let mut current = self.source_credentials().await?;
        for index in 0..self.cfg.roles.len() {
            current = Some(self.assume(index, current.as_ref()).await?);
        }
        current.ok_or_else(|| CredsError {
            step: "credentials".into(),
            code: None,
            message: "the chain produced no credentials".into(),
            hint: None,
            request_id: None,
        })
    }
}

/// What to check when the source identity could not be had: the container endpoint (ECS,
/// EKS Pod Identity) answers for itself when it is configured; otherwise nothing was found.
fn source_failure_hint(message: &str) -> &'static str {
    if message.contains("HTTP credential provider") {
        "the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI) refused or failed: check it is reachable and that AWS_CONTAINER_AUTHORIZATION_TOKEN or the token file is current"
    } else {
        "no usable credentials were found: set AWS_PROFILE or --profile, export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a host with an instance profile"
    }
}
