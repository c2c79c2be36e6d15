//! The credential slot every S3 request reads, and the background task that keeps it fresh.
//! Requests never wait for STS: they read the slot; only the renewal task talks to STS.
//!
//! Renewal is scheduled on the monotonic clock from the moment a session arrived (its
//! lifetime is the Expiration STS sent minus the wall-clock time then), so a wall clock that
//! is stepped does not move it. While it waits, the renewer also compares the wall clock
//! with the Expiration every few seconds: the monotonic clock stops while a host is
//! suspended, and a host that slept past its renewal time renews as soon as it wakes.

use super::{Chain, CredsError};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError, future};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// A renewal never starts sooner than this after the previous attempt started, whatever STS
/// grants or answers: at most 20 walks of the chain a minute, even for a grant of a second.
pub const MIN_ATTEMPT_INTERVAL: Duration = Duration::from_secs(3);

/// How often a waiting renewer compares the wall clock with the expiry.
const WALL_CHECK: Duration = Duration::from_secs(2);

/// The longest one walk of the whole chain may take before it counts as a failed attempt.
/// Each STS call and the source identity have shorter limits of their own
/// ([`super::chain::STS_OPERATION_TIMEOUT`], [`super::chain::SOURCE_TIMEOUT`]); this bounds
/// the walk as a whole.
pub const RENEWAL_TIMEOUT: Duration = Duration::from_secs(120);

/// How often credentials that never expire (static keys) are fetched again, in case the
/// profile or environment behind them changed.
const STATIC_RECHECK: Duration = Duration::from_secs(900);

/// The wall clock the renewer compares expiry times with; tests put a fake one in its place.
pub trait WallClock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

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
    /// Bumped after each renewal and each failed attempt, for whoever reports the session.
    changed: tokio::sync::watch::Sender<()>,
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
        drop(s);
        self.changed.send_replace(());
    }

    fn failed(&self, e: &CredsError) {
        crate::mount_metrics::renewal_failed(e.code.as_deref());
        self.status.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(e.to_string());
        self.changed.send_replace(());
    }

    /// Wakes after each renewal and each failed attempt from now on, so that the session's
    /// state can be reported as it changes (to systemd, say) without polling.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Why the credentials cannot be used right now, if they cannot.
    pub fn problem(&self) -> Option<String> {
        let s = self.status();
        match s.expiry {
            None if s.last_renewal.is_none() => Some("no credentials have been obtained yet".into()),
            Some(exp) if exp <= SystemTime::now() => Some(expired(&s, exp)),
            _ => None,
        }
    }
}

/// Says that the session in `s` expired at `exp` without a renewal, and why.
fn expired(s: &SessionStatus, exp: SystemTime) -> String {
    format!(
        "the role session ({}) expired at {} and could not be renewed{}",
        s.chain,
        crate::timefmt::rfc3339(exp),
        s.last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )
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
    session: Session,
}

/// Time to renew before expiry when no margin is given: a quarter of the session, at least
/// 5 s and at most 15 minutes (an hour-long session renews 15 minutes early).
pub fn auto_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).clamp(Duration::from_secs(5), Duration::from_secs(900))
}

/// How long before expiry to renew: the margin asked for, or [`auto_margin`], but at most
/// half of the session STS granted. A grant shorter than the margin (STS may grant less than
/// asked) then renews halfway through instead of at once, over and over.
pub fn lead_time(margin: Option<Duration>, lifetime: Duration) -> Duration {
    margin.unwrap_or_else(|| auto_margin(lifetime)).min(lifetime / 2)
}

/// Delay before retry number `failures` (1, 2, ...): exponential from 1 s with ±20% jitter,
/// capped at an eighth of the session (between 1 s and 60 s) so a short session still gets
/// several tries before it expires. [`MIN_ATTEMPT_INTERVAL`] applies on top.
pub fn backoff(failures: u32, lifetime: Duration) -> Duration {
    let cap = (lifetime / 8).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let base = Duration::from_secs(1)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(cap);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// One session as the renewer sees it: when it arrived on the monotonic clock, how long STS
/// granted, and its Expiration.
#[derive(Clone, Copy, Debug)]
struct Session {
    issued: Instant,
    lifetime: Duration,
    expiry: Option<SystemTime>,
}

impl Session {
    /// A session that arrived just now.
    fn arrived(expiry: Option<SystemTime>, clock: &dyn WallClock) -> Self {
        let now = clock.now();
        Session {
            issued: Instant::now(),
            lifetime: expiry.and_then(|e| e.duration_since(now).ok()).unwrap_or_default(),
            expiry,
        }
    }

    /// When to renew it, on the monotonic clock and on the wall clock.
    fn due(&self, margin: Option<Duration>) -> (Instant, Option<SystemTime>) {
        let Some(expiry) = self.expiry else {
            return (self.issued + STATIC_RECHECK, None);
        };
        let lead = lead_time(margin, self.lifetime);
        let lead = lead + lead.mul_f64(0.1 * fastrand::f64());
        (
            self.issued + self.lifetime.saturating_sub(lead),
            Some(expiry.checked_sub(lead).unwrap_or(expiry)),
        )
    }
}

/// Where renewed credentials come from: the chain, or a stand-in in tests.
trait Refresh: Send + Sync + 'static {
    /// Walks the chain once more.
    fn refresh(&self) -> impl Future<Output = Result<Credentials, CredsError>> + Send;
    /// The refresh margin asked for, if any.
    fn refresh_margin(&self) -> Option<Duration>;
    /// Logs a new session.
    fn renewed(&self, creds: &Credentials);
    /// The role whose session this renews, for logs.
    fn role_arn(&self) -> Option<String> {
        None
    }
}

impl Refresh for Chain {
    fn refresh(&self) -> impl Future<Output = Result<Credentials, CredsError>> + Send {
        self.resolve()
    }

    fn refresh_margin(&self) -> Option<Duration> {
        self.config().refresh_margin
    }

    fn renewed(&self, creds: &Credentials) {
        log_session(self, creds, true);
    }

    fn role_arn(&self) -> Option<String> {
        self.config().roles.last().map(|r| r.arn.clone())
    }
}

/// One walk of the chain, given up after [`RENEWAL_TIMEOUT`].
async fn attempt(source: &impl Refresh) -> Result<Credentials, CredsError> {
    tokio::time::timeout(RENEWAL_TIMEOUT, source.refresh())
        .await
        .unwrap_or_else(|_| {
            Err(CredsError {
                step: "renewal".into(),
                code: None,
                message: format!("no answer within {} s", RENEWAL_TIMEOUT.as_secs()),
                hint: None,
                request_id: None,
            })
        })
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
        let creds = attempt(chain.as_ref()).await?;
        log_session(&chain, &creds, false);
        let session = Session::arrived(creds.expiry(), &SystemClock);
        slot.set(creds);
        Ok(Renewer { chain, slot, session })
    }

    /// The slot requests read.
    pub fn slot(&self) -> Arc<CredentialSlot> {
        self.slot.clone()
    }

    /// Runs the renewal loop forever on the current runtime.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { renew_loop(self.chain.as_ref(), &self.slot, &SystemClock, self.session).await })
    }
}

/// Keeps `slot` fresh from `source`, starting with `session`, the one in the slot now.
async fn renew_loop(source: &impl Refresh, slot: &CredentialSlot, clock: &dyn WallClock, mut session: Session) {
    // The first session was obtained just before `session.issued`.
    let mut last_attempt = session.issued;
    let mut failures = 0u32;
    let mut expired_logged = false;
    loop {
        let (due, due_wall) = if failures > 0 {
            let lifetime = if session.expiry.is_some() {
                session.lifetime
            } else {
                Duration::from_secs(3600)
            };
            (Instant::now() + backoff(failures, lifetime), None)
        } else {
            session.due(source.refresh_margin())
        };
        let not_before = last_attempt + MIN_ATTEMPT_INTERVAL;
        loop {
            let (now, wall) = (Instant::now(), clock.now());
            // While renewal is failing, say once, loudly, when the session runs out: from
            // then on requests are refused.
            if failures > 0
                && !expired_logged
                && let Some(exp) = session.expiry.filter(|e| *e <= wall)
            {
                expired_logged = true;
                tracing::error!(
                    role_arn = source.role_arn(),
                    "{}; S3 requests fail with EACCES until STS answers",
                    expired(&slot.status(), exp)
                );
            }
            if now >= not_before && (now >= due || due_wall.is_some_and(|w| wall >= w)) {
                break;
            }
            let wait = due.max(not_before).saturating_duration_since(now).min(WALL_CHECK);
            tokio::time::sleep(wait).await;
        }
        last_attempt = Instant::now();
        match attempt(source).await {
            Ok(creds) => {
                source.renewed(&creds);
                session = Session::arrived(creds.expiry(), clock);
                slot.set(creds);
                failures = 0;
                expired_logged = false;
            }
            Err(e) => {
                failures += 1;
                slot.failed(&e);
                let role_arn = source.role_arn();
                // Fields the journal can be searched by (ROLE_ARN=, AWS_ERROR_CODE=, ...).
                macro_rules! log {
                    ($level:ident, $($message:tt)+) => {
                        tracing::$level!(
                            attempt = failures,
                            role_arn = role_arn.as_deref(),
                            step = %e.step,
                            aws_error_code = e.code.as_deref(),
                            request_id = e.request_id.as_deref(),
                            $($message)+
                        )
                    };
                }
                match session.expiry.map(|x| x.duration_since(clock.now()).ok()) {
                    None => log!(
                        warn,
                        "refreshing the source credentials failed; the current ones do not expire: {e}"
                    ),
                    Some(Some(left)) => log!(
                        warn,
                        "renewing the role session failed, current session still valid for {} s: {e}",
                        left.as_secs()
                    ),
                    Some(None) if !expired_logged => {
                        expired_logged = true;
                        log!(
                            error,
                            "the role session has expired and renewal keeps failing; S3 requests fail with EACCES until STS answers: {e}"
                        );
                    }
                    Some(None) => log!(warn, "renewing the expired role session failed: {e}"),
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
            request_id: None,
        });
        let why = slot.problem().unwrap();
        assert!(why.contains("expired") && why.contains("ServiceUnavailable"), "{why}");
        assert!(!why.contains("secret"));
        assert!(SlotProvider(Arc::new(slot)).current().is_err());
    }

    /// A wall clock that follows tokio's (paused) clock, and can be stepped, as NTP does, or
    /// jump ahead while the monotonic clock stands still, as across a suspend.
    struct FakeClock {
        origin: (Instant, SystemTime),
        step: Mutex<(Duration, bool)>,
    }

    impl FakeClock {
        fn new() -> Arc<Self> {
            Arc::new(FakeClock {
                origin: (
                    Instant::now(),
                    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                ),
                step: Mutex::new((Duration::ZERO, true)),
            })
        }

        /// Moves the wall clock by `d`, forward or back.
        fn jump(&self, d: Duration, forward: bool) {
            let now = self.now();
            let target = if forward { now + d } else { now - d };
            *self.step.lock().unwrap() = match target.duration_since(self.base()) {
                Ok(ahead) => (ahead, true),
                Err(behind) => (behind.duration(), false),
            };
        }

        /// The wall-clock time without steps.
        fn base(&self) -> SystemTime {
            self.origin.1 + (Instant::now() - self.origin.0)
        }
    }

    impl WallClock for FakeClock {
        fn now(&self) -> SystemTime {
            let (d, forward) = *self.step.lock().unwrap_or_else(|p| p.into_inner());
            if forward { self.base() + d } else { self.base() - d }
        }
    }

    /// A stand-in for STS: grants sessions of `grant`, or fails, or never answers, and
    /// records when it was called (on the monotonic clock).
    struct FakeSts {
        clock: Arc<FakeClock>,
        grant: Mutex<Duration>,
        mode: Mutex<&'static str>,
        calls: Mutex<Vec<Instant>>,
        margin: Option<Duration>,
    }

    impl FakeSts {
        fn new(clock: &Arc<FakeClock>, grant: Duration, margin: Option<Duration>) -> Arc<Self> {
            Arc::new(FakeSts {
                clock: clock.clone(),
                grant: Mutex::new(grant),
                mode: Mutex::new("up"),
                calls: Mutex::new(Vec::new()),
                margin,
            })
        }

        fn creds(&self) -> Credentials {
            let expiry = self.clock.now() + *self.grant.lock().unwrap();
            Credentials::new("AKIA", "secret", None, Some(expiry), "fake")
        }

        fn set(&self, mode: &'static str) {
            *self.mode.lock().unwrap() = mode;
        }

        fn calls(&self) -> Vec<Duration> {
            let start = self.clock.origin.0;
            self.calls.lock().unwrap().iter().map(|t| *t - start).collect()
        }
    }

    impl Refresh for Arc<FakeSts> {
        fn refresh(&self) -> impl Future<Output = Result<Credentials, CredsError>> + Send {
            let me = self.clone();
            async move {
                me.calls.lock().unwrap().push(Instant::now());
                let mode = *me.mode.lock().unwrap();
                match mode {
                    "up" => Ok(me.creds()),
                    "hang" => std::future::pending().await,
                    _ => Err(CredsError {
                        step: "AssumeRole fake".into(),
                        code: Some("ServiceUnavailable".into()),
                        message: "down".into(),
                        hint: None,
                        request_id: None,
                    }),
                }
            }
        }

        fn refresh_margin(&self) -> Option<Duration> {
            self.margin
        }

        fn renewed(&self, _: &Credentials) {}
    }

    /// Starts a renewer on `sts`'s first session; returns its slot.
    fn run(sts: &Arc<FakeSts>, clock: &Arc<FakeClock>) -> Arc<CredentialSlot> {
        let slot = Arc::new(CredentialSlot::default());
        let creds = sts.creds();
        let session = Session::arrived(creds.expiry(), clock.as_ref());
        slot.set(creds);
        let (sts, clock, s) = (sts.clone(), clock.clone(), slot.clone());
        tokio::spawn(async move { renew_loop(&sts, &s, clock.as_ref(), session).await });
        slot
    }

    /// A fake clock and STS granting `grant`, and a renewer running on them.
    fn started(grant: u64, margin: Option<u64>) -> (Arc<FakeClock>, Arc<FakeSts>, Arc<CredentialSlot>) {
        let clock = FakeClock::new();
        let sts = FakeSts::new(&clock, Duration::from_secs(grant), margin.map(Duration::from_secs));
        let slot = run(&sts, &clock);
        (clock, sts, slot)
    }

    async fn advance(d: Duration) {
        tokio::time::sleep(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn renews_a_margin_before_expiry_and_follows_each_new_session() {
        let (_, sts, slot) = started(60, None);
        advance(Duration::from_secs(200)).await;
        let calls = sts.calls();
        // A 60 s session renews 15 s (plus up to 10% jitter) before it ends.
        assert!(calls.len() >= 4, "{calls:?}");
        for (i, t) in calls.iter().enumerate() {
            let previous = if i == 0 { Duration::ZERO } else { calls[i - 1] };
            let gap = *t - previous;
            assert!(
                gap >= Duration::from_millis(43_500) && gap <= Duration::from_secs(45),
                "renewal {i} came {gap:?} after the session before: {calls:?}"
            );
        }
        assert_eq!(slot.status().renewals, calls.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stepped_wall_clock_does_not_move_the_schedule() {
        let (clock, sts, _) = started(60, None);
        advance(Duration::from_secs(10)).await;
        // The clock is set back an hour: renewal still comes 45 s after the session arrived.
        clock.jump(Duration::from_secs(3600), false);
        advance(Duration::from_secs(40)).await;
        let calls = sts.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0] <= Duration::from_secs(45), "{calls:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_suspended_past_expiry_renews_as_it_wakes() {
        let (clock, sts, _) = started(3600, None);
        advance(Duration::from_secs(100)).await;
        assert!(sts.calls().is_empty());
        // Two hours asleep: the wall clock moves on, the monotonic clock did not.
        clock.jump(Duration::from_secs(7200), true);
        advance(WALL_CHECK + Duration::from_millis(10)).await;
        let calls = sts.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0] <= Duration::from_secs(100) + WALL_CHECK, "{calls:?}");
        // And the new session is scheduled normally: nothing more for a while.
        advance(Duration::from_secs(600)).await;
        assert_eq!(sts.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_shorter_than_the_margin_does_not_spin() {
        let clock = FakeClock::new();
        // A 15-minute margin, and STS grants one second.
        let sts = FakeSts::new(&clock, Duration::from_secs(1), Some(Duration::from_secs(900)));
        run(&sts, &clock);
        advance(Duration::from_secs(60)).await;
        let calls = sts.calls();
        assert!(calls.len() <= 20, "{} calls in a minute: {calls:?}", calls.len());
        assert!(calls.len() >= 15, "it still renews: {calls:?}");
        for w in calls.windows(2) {
            assert!(w[1] - w[0] >= MIN_ATTEMPT_INTERVAL, "{calls:?}");
        }
        // A longer grant halfway through: renewed at half of it, not at once.
        let sts = FakeSts::new(&clock, Duration::from_secs(600), Some(Duration::from_secs(900)));
        let start = Instant::now() - clock.origin.0;
        run(&sts, &clock);
        advance(Duration::from_secs(265)).await;
        assert!(sts.calls().is_empty(), "{:?}", sts.calls());
        advance(Duration::from_secs(40)).await;
        let calls = sts.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let at = calls[0] - start;
        assert!(
            at >= Duration::from_secs(270) && at <= Duration::from_secs(300),
            "{calls:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_the_session_renews_once_sts_answers() {
        let (_, sts, slot) = started(60, None);
        sts.set("down");
        advance(Duration::from_secs(120)).await;
        let calls = sts.calls();
        // First attempt at about 45 s; then retries no closer than MIN_ATTEMPT_INTERVAL,
        // backing off to an eighth of the session (7.5 s).
        assert!(calls.len() >= 8 && calls.len() <= 26, "{calls:?}");
        for w in calls.windows(2) {
            assert!(w[1] - w[0] >= MIN_ATTEMPT_INTERVAL, "{calls:?}");
            assert!(w[1] - w[0] <= Duration::from_secs(10), "{calls:?}");
        }
        assert!(
            slot.status()
                .last_error
                .is_some_and(|e| e.contains("ServiceUnavailable"))
        );
        assert_eq!(slot.status().renewals, 0);
        sts.set("up");
        advance(Duration::from_secs(10)).await;
        let s = slot.status();
        assert_eq!(s.renewals, 1, "{:?}", sts.calls());
        assert!(s.last_error.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_sts_that_never_answers_times_out_and_is_tried_again() {
        let (_, sts, slot) = started(600, None);
        sts.set("hang");
        // Renewal is due 150 s before the end (450 s); the attempt hangs until the timeout.
        advance(Duration::from_secs(455)).await;
        assert_eq!(sts.calls().len(), 1);
        assert!(slot.status().last_error.is_none());
        advance(RENEWAL_TIMEOUT).await;
        let e = slot.status().last_error.unwrap_or_default();
        assert!(e.contains("no answer within"), "{e}");
        assert!(
            sts.calls().len() >= 2,
            "tried again after the timeout: {:?}",
            sts.calls()
        );
        sts.set("up");
        advance(RENEWAL_TIMEOUT + Duration::from_secs(10)).await;
        assert_eq!(slot.status().renewals, 1, "{:?}", sts.calls());
    }
}
