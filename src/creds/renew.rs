//! The credential slot every S3 request reads, and the background task that keeps it fresh.
//! Requests never wait for STS: they read the slot; only the renewal task talks to STS.

use super::{Chain, CredsError};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError, future};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// What the renewal task has done, for logs and `s3role status`.
#[derive(Clone, Debug, Default)]
pub struct SessionStatus {
    /// The chain, described without secrets.
    pub chain: String,
    /// Session name of the final role.
    pub session_name: Option<String>,
    /// When the current credentials expire (as STS said).
    pub expiry: Option<SystemTime>,
    /// When they were obtained.
    pub last_renewal: Option<SystemTime>,
    /// The last failed attempt's error, cleared by a success.
    pub last_error: Option<String>,
    /// Successful renewals after the first session.
    pub renewals: u64,
}

/// The current credentials and the renewal status.
#[derive(Debug, Default)]
pub struct CredentialSlot {
    current: RwLock<Option<Credentials>>,
    status: Mutex<SessionStatus>,
}

impl CredentialSlot {
    /// A copy of the status.
    pub fn status(&self) -> SessionStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, creds: Credentials) {
        let expiry = creds.expiry();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(creds);
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.last_renewal.is_some() {
            s.renewals += 1;
        }
        s.expiry = expiry;
        s.last_renewal = Some(SystemTime::now());
        s.last_error = None;
    }

    fn failed(&self, e: &CredsError) {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e.to_string());
    }

    /// Why the credentials cannot be used right now, if they cannot.
    pub fn problem(&self) -> Option<String> {
        let s = self.status();
        match s.expiry {
            None if s.last_renewal.is_none() => Some("no credentials have been obtained yet".into()),
            Some(exp) if exp <= SystemTime::now() => Some(format!(
                "the role session ({}) expired at {} and could not be renewed{}",
                s.chain,
                crate::timefmt::rfc3339(exp),
                s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            )),
            _ => None,
        }
    }
}

/// The SDK-facing view of a slot: answers from memory, at once.
#[derive(Clone, Debug)]
pub struct SlotProvider(pub Arc<CredentialSlot>);

impl ProvideCredentials for SlotProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(self.current())
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.current().ok()
    }
}

impl SlotProvider {
    fn current(&self) -> provider::Result {
        if let Some(why) = self.0.problem() {
            return Err(CredentialsError::not_loaded(why));
        }
        self.0
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| CredentialsError::not_loaded("no credentials"))
    }
}

/// Renews the chain's session in the background.
pub struct Renewer {
    chain: Arc<Chain>,
    slot: Arc<CredentialSlot>,
}

/// Time to renew before expiry when no margin is given: a quarter of the session, at least
/// 5 s and at most 15 minutes (an hour-long session renews 15 minutes early).
pub fn auto_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).clamp(Duration::from_secs(5), Duration::from_secs(900))
}

/// Delay before retry number `failures` (1, 2, ...): exponential from 1 s with ±20% jitter,
/// capped at an eighth of the session (between 1 s and 60 s) so a short session still gets
/// several tries before it expires.
pub fn backoff(failures: u32, lifetime: Duration) -> Duration {
    let cap = (lifetime / 8).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(cap);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// Sleeps until the wall clock reaches `when`, in steps of at most 10 s, so a host that was
/// suspended (when monotonic timers stop) renews promptly after it wakes.
async fn sleep_until(when: SystemTime) {
    loop {
        let Ok(left) = when.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
    }
}

impl Renewer {
    /// Obtains the first session (so a refusal fails the mount at once) and returns the
    /// renewer, not yet running.
    pub async fn start(chain: Arc<Chain>) -> Result<Self, CredsError> {
        let slot = Arc::new(CredentialSlot::default());
        {
            let mut s = slot.status.lock().unwrap_or_else(|p| p.into_inner());
            s.chain = chain.config().describe();
            s.session_name = chain.config().roles.last().map(|r| r.session_name.clone());
        }
        let creds = chain.resolve().await?;
        log_session(&chain, &creds, false);
        slot.set(creds);
        Ok(Renewer { chain, slot })
    }

    /// The slot requests read.
    pub fn slot(&self) -> Arc<CredentialSlot> {
        self.slot.clone()
    }

    /// Runs the renewal loop forever on the current runtime.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut issued = SystemTime::now();
        let mut failures = 0u32;
        let mut expired_logged = false;
        loop {
            let expiry = self.slot.status().expiry;
            let lifetime = expiry
                .and_then(|e| e.duration_since(issued).ok())
                .unwrap_or(Duration::from_secs(3600));
            let next = if failures > 0 {
                SystemTime::now() + backoff(failures, lifetime)
            } else {
                match expiry {
                    Some(exp) => {
                        let margin = self
                            .chain
                            .config()
                            .refresh_margin
                            .unwrap_or_else(|| auto_margin(lifetime));
                        let jitter = margin.mul_f64(0.1 * fastrand::f64());
                        exp.checked_sub(margin + jitter).unwrap_or(exp)
                    }
                    // Credentials that never expire (static keys): look again now and then
                    // in case the profile or environment behind them changed.
                    None => SystemTime::now() + Duration::from_secs(900),
                }
            };
            // While renewal is failing, wake at the moment the session expires to say so
            // once, loudly: from then on requests are refused.
            if failures > 0
                && !expired_logged
                && let Some(exp) = expiry.filter(|e| *e < next && *e > SystemTime::now())
            {
                sleep_until(exp).await;
                if let Some(why) = self.slot.problem() {
                    expired_logged = true;
                    tracing::error!("{why}; S3 requests fail with EACCES until STS answers");
                }
            }
            sleep_until(next).await;
            match self.chain.resolve().await {
                Ok(creds) => {
                    log_session(&self.chain, &creds, true);
                    issued = SystemTime::now();
                    self.slot.set(creds);
                    failures = 0;
                    expired_logged = false;
                }
                Err(e) => {
                    failures += 1;
                    self.slot.failed(&e);
                    let left = expiry.and_then(|x| x.duration_since(SystemTime::now()).ok());
                    match left {
                        Some(left) => tracing::warn!(
                            attempt = failures,
                            "renewing the role session failed, current session still valid for {} s: {e}",
                            left.as_secs()
                        ),
                        None if !expired_logged => {
                            expired_logged = true;
                            tracing::error!(
                                "the role session has expired and renewal keeps failing; S3 requests fail with EACCES until STS answers: {e}"
                            );
                        }
                        None => tracing::warn!(attempt = failures, "renewing the expired role session failed: {e}"),
                    }
                }
            }
        }
    }
}

fn log_session(chain: &Chain, creds: &Credentials, renewal: bool) {
    let cfg = chain.config();
    let expiry = creds
        .expiry()
        .map(crate::timefmt::rfc3339)
        .unwrap_or_else(|| "never".into());
    let what = if renewal { "renewed" } else { "assumed" };
    match cfg.roles.last() {
        Some(role) => {
            tracing::info!(role_arn = %role.arn, session_name = %role.session_name, expires = %expiry, "role session {what}")
        }
        None if renewal && creds.expiry().is_none() => tracing::debug!("source credentials refreshed"),
        None => tracing::info!(source = %cfg.describe(), expires = %expiry, "source credentials {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_scale_with_the_session() {
        assert_eq!(auto_margin(Duration::from_secs(3600)), Duration::from_secs(900));
        assert_eq!(auto_margin(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(auto_margin(Duration::from_secs(43200)), Duration::from_secs(900));
        assert_eq!(auto_margin(Duration::from_secs(1200)), Duration::from_secs(300));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let life = Duration::from_secs(3600);
        assert!(backoff(1, life) <= Duration::from_millis(1200));
        assert!(backoff(20, life) <= Duration::from_secs(72));
        assert!(backoff(20, life) >= Duration::from_secs(48));
        assert!(backoff(20, Duration::from_secs(20)) <= Duration::from_millis(3000));
    }

    #[test]
    fn an_expired_slot_explains_itself() {
        let slot = CredentialSlot::default();
        assert!(slot.problem().is_some());
        slot.set(Credentials::new(
            "AKIA",
            "secret",
            None,
            Some(SystemTime::now() + Duration::from_secs(60)),
            "t",
        ));
        assert!(slot.problem().is_none());
        slot.set(Credentials::new(
            "AKIA",
            "secret",
            None,
            Some(SystemTime::now() - Duration::from_secs(1)),
            "t",
        ));
        slot.failed(&CredsError {
            step: "AssumeRole x".into(),
            code: Some("ServiceUnavailable".into()),
            message: "down".into(),
            hint: None,
        });
        let why = slot.problem().unwrap();
        assert!(why.contains("expired") && why.contains("ServiceUnavailable"), "{why}");
        assert!(!why.contains("secret"));
        assert!(SlotProvider(Arc::new(slot)).current().is_err());
    }
}
