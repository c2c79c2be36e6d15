//! The S3 implementation of [`ObjectStore`]: the only code that talks to aws-sdk-s3.

use super::{BodyInner, ListPage, Metadata, NewObject, ObjectInfo, ObjectStore, Part, RangeBody, StoreError};
use crate::mount_metrics::Outcome;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    IdentityCache, RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, MetadataDirective};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata as OperationMetadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Says why the credentials cannot be used right now (e.g. the role session expired and
/// renewal keeps failing), so a refused request can be explained in the log.
pub type CredentialsProblem = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Where the bucket lives and how to address it.
#[derive(Clone, Debug, Default)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// S3 endpoint for S3-compatible servers; never used for STS.
    pub endpoint_url: Option<String>,
    /// Use `http://host/bucket/key` addressing (needed by most S3-compatible servers).
    pub path_style: bool,
    /// How long S3 may take to start answering a request, from which every other limit is
    /// derived (see [`Timeouts`]); `None` means [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
}

/// How S3 learns that the body of a PutObject or UploadPart arrived intact, so that it
/// stores nothing but the bytes the client sent. Both ways check every byte; they differ in
/// what the client spends per byte, and in what S3-compatible servers accept.
///
/// The bodies are in memory, so the SDK puts either in a header: it never switches to
/// `aws-chunked` with a trailing checksum, over HTTP or HTTPS. GetObject answers are not
/// checked (`ResponseChecksumValidation::WhenRequired`): a ranged GET carries no checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadChecksum {
    /// The CRC32C of the body in `x-amz-checksum-crc32c`, which S3 checks before it stores
    /// the object or part, and keeps with it. The body is left out of the SigV4 signature
    /// (`x-amz-content-sha256: UNSIGNED-PAYLOAD`), so the client reads it once, for a
    /// CRC32C, instead of for a SHA-256 (about 0.02 s of CPU per GiB instead of 0.54 with
    /// SHA-NI). A multipart upload is created for CRC32C, and CompleteMultipartUpload repeats
    /// each part's CRC32C, which S3 requires. mountpoint-s3 too sends a CRC32C per part.
    #[default]
    Crc32c,
    /// No checksum header: SigV4 signs the SHA-256 of the body (`x-amz-content-sha256`),
    /// which S3 checks. What aws-sdk-s3 sends when no checksum is asked for; for servers
    /// that refuse checksum headers. Some S3-compatible servers do not check this hash.
    SignedPayload,
}

impl UploadChecksum {
    /// Every way, so that `--upload-checksum` can list them.
    pub const ALL: [UploadChecksum; 2] = [UploadChecksum::Crc32c, UploadChecksum::SignedPayload];

    /// The name `--upload-checksum` gives it (and logs and the benchmark print).
    pub fn name(self) -> &'static str {
        match self {
            UploadChecksum::Crc32c => "crc32c",
            UploadChecksum::SignedPayload => "signed-payload",
        }
    }

    /// The base64 CRC32C of `body`, when this way sends one.
    fn crc32c(self, body: &[u8]) -> Option<String> {
        match self {
            UploadChecksum::Crc32c => {
                let mut crc = aws_smithy_checksums::ChecksumAlgorithm::Crc32c.into_impl();
                crc.update(body);
                Some(aws_smithy_types::base64::encode(&crc.finalize()[..]))
            }
            UploadChecksum::SignedPayload => None,
        }
    }

    /// The checksum algorithm of a new multipart upload.
    fn algorithm(self) -> Option<ChecksumAlgorithm> {
        match self {
            UploadChecksum::Crc32c => Some(ChecksumAlgorithm::Crc32C),
            UploadChecksum::SignedPayload => None,
        }
    }
}

/// Reads the names [`UploadChecksum::name`] gives, in any case, so that tools such as
/// `examples/direct_put.rs` take the same values as `--upload-checksum`.
impl std::str::FromStr for UploadChecksum {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let names = || Self::ALL.map(Self::name).join(", ");
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("'{s}' is not one of {}", names()))
    }
}

/// The request timeout when none is given. S3 answers a metadata request in well under a
/// second, so 20 s means it is not answering; an attempt and one retry then give up within
/// 40 s, well inside the minute after which a program or a person assumes a hang.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts per request. A filesystem cannot pass "try again" to the program, so throttling
/// and 5xx answers are retried more than the SDK's default 3 (as mountpoint-s3 does, with 10);
/// the operation timeouts below still bound the total time.
const MAX_ATTEMPTS: u32 = 10;

/// Slowest upload rate (bytes per second) a request body is granted before its attempt is
/// cut: 256 KiB/s, a shared home uplink with several parts in flight.
const MIN_UPLOAD_RATE: u64 = 256 << 10;

/// Slowest server-side copy rate granted to CopyObject and UploadPartCopy (S3 copies at
/// hundreds of MB/s within a region).
const MIN_COPY_RATE: u64 = 64 << 20;

/// Largest object CopyObject accepts: the store is not told a copy's size, so it grants the
/// time this much needs.
const MAX_COPY_BYTES: u64 = 5 << 30;

/// Extra time CompleteMultipartUpload gets per part: S3 assembles the parts while it
/// answers, which takes minutes for uploads of thousands of parts.
const COMPLETE_PER_PART: Duration = Duration::from_millis(50);

/// Every network wait of the S3 client, derived from one setting, the request timeout `T`:
/// nothing waits for a silent server longer than `T`, and every request gives up.
///
/// | request | connect | first byte | one attempt | all attempts |
/// |---|---|---|---|---|
/// | HEAD, LIST, DELETE, Create/Abort multipart, GET (until its head) | min(T, 5 s) | T | T | 2T |
/// | PutObject, UploadPart of `n` bytes | min(T, 5 s) | (counts the upload) | T + n / 256 KiB/s | twice that |
/// | CopyObject, UploadPartCopy of `n` bytes (CopyObject: `n` = 5 GiB) | min(T, 5 s) | T | T + n / 64 MiB/s | that + T |
/// | CompleteMultipartUpload of `p` parts | min(T, 5 s) | T | T + 50 ms × p | that + T |
///
/// A response or request body that makes no progress for `T` fails (the SDK's stalled
/// stream protection), so a GET whose body stops fails after `T` rather than hanging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The request timeout `T`.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl Timeouts {
    fn connect(&self) -> Duration {
        self.request.min(Duration::from_secs(5))
    }

    /// Requests S3 answers at once: HEAD, LIST, DELETE, Create/Abort multipart, and a GET
    /// until its head arrives. The client's default.
    pub fn metadata(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect())
            .read_timeout(self.request)
            .operation_attempt_timeout(self.request)
            .operation_timeout(self.request * 2)
            .build()
    }

    /// A request that sends `bytes` of body (PutObject, UploadPart). Its answer only comes
    /// once the body is sent, so the wait for it is bounded by the attempt, which grows with
    /// the size; a body that stops moving is caught by stall protection after `T`.
    pub fn upload(&self, bytes: u64) -> TimeoutConfig {
        let attempt = self.request + Duration::from_secs(bytes.div_ceil(MIN_UPLOAD_RATE));
        TimeoutConfig::builder()
            .connect_timeout(self.connect())
            .disable_read_timeout()
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * 2)
            .build()
    }

    /// A copy of `bytes` on the server (CopyObject, UploadPartCopy). S3 starts its answer at
    /// once and keeps the connection alive with white space while it copies.
    pub fn copy(&self, bytes: u64) -> TimeoutConfig {
        self.long(Duration::from_secs(bytes.div_ceil(MIN_COPY_RATE)))
    }

    /// CompleteMultipartUpload of `parts` parts.
    pub fn complete(&self, parts: usize) -> TimeoutConfig {
        self.long(COMPLETE_PER_PART * u32::try_from(parts).unwrap_or(u32::MAX))
    }

    fn long(&self, extra: Duration) -> TimeoutConfig {
        let attempt = self.request + extra;
        TimeoutConfig::builder()
            .connect_timeout(self.connect())
            .read_timeout(self.request)
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt + self.request)
            .build()
    }
}

/// When the current attempt started, kept in the request's configuration bag.
#[derive(Clone, Copy, Debug)]
struct AttemptStart(std::time::Instant);

impl Storable for AttemptStart {
    type Storer = StoreReplace<Self>;
}

/// Counts every attempt at an S3 request, with its operation, outcome and time to the
/// answer, for the metrics (`--metrics-addr`). Attempts, not calls: a retried 503 shows as
/// throttling even when the retry succeeds.
#[derive(Debug)]
struct CountAttempts;

impl Intercept for CountAttempts {
    fn name(&self) -> &'static str {
        "s3role-count-attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStart(std::time::Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(start) = cfg.load::<AttemptStart>().copied() else {
            // The attempt failed before it was sent (signing, say): nothing reached S3.
            return Ok(());
        };
        let operation = cfg.load::<OperationMetadata>().map_or("other", |m| m.name());
        let outcome = match (context.response(), context.output_or_error()) {
            (Some(response), _) => Outcome::of_status(response.status().as_u16()),
            (None, Some(Err(e))) if e.is_timeout_error() => Outcome::Timeout,
            (None, _) => Outcome::NetworkError,
        };
        crate::mount_metrics::s3_attempt(operation, outcome, start.0.elapsed());
        Ok(())
    }
}

/// A per-request configuration that only changes the timeouts.
fn with_timeouts(t: TimeoutConfig) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(t)
}

/// An [`ObjectStore`] backed by one shared S3 client.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    credentials_problem: Option<CredentialsProblem>,
    timeouts: Timeouts,
    upload_checksum: UploadChecksum,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.bucket).finish()
    }
}

impl S3Store {
    /// Builds the one S3 client of a mount. Credentials are read from `credentials` on every
    /// request (no SDK identity cache): the provider answers from memory, kept fresh by the
    /// renewal task, so no request ever waits for STS.
    pub fn new(
        sdk: &aws_types::SdkConfig,
        credentials: SharedCredentialsProvider,
        location: &S3Location,
        credentials_problem: Option<CredentialsProblem>,
    ) -> Self {
        let timeouts = Timeouts {
            request: location.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        };
        let mut conf = aws_sdk_s3::config::Builder::from(sdk)
            .credentials_provider(credentials)
            .identity_cache(IdentityCache::no_cache())
            .force_path_style(location.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(timeouts.metadata())
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(timeouts.request)
                    .build(),
            );
        if let Some(url) = &location.endpoint_url {
            conf = conf.endpoint_url(url);
        }
        conf = conf.interceptor(CountAttempts);
        S3Store {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            bucket: location.bucket.clone(),
            credentials_problem,
            timeouts,
            upload_checksum: UploadChecksum::default(),
        }
    }

    /// The same store, protecting uploads with `checksum` instead of the default CRC32C: a
    /// mount passes `--upload-checksum` here, for S3-compatible servers that refuse checksums.
    pub fn with_upload_checksum(mut self, checksum: UploadChecksum) -> Self {
        self.upload_checksum = checksum;
        self
    }

    /// The bucket this store reads.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn classify<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let message = err
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
        classify(op, key, status, code, message, self.credentials_problem.as_ref())
            .with_request_id(aws_types::request_id::RequestId::request_id(&err))
    }
}

/// Sorts an S3 answer into the cases the filesystem treats differently. The SDK reads no
/// error code from some S3-compatible servers (and never from HEAD), so the HTTP status is
/// the fallback.
fn classify(
    op: &'static str,
    key: &str,
    status: Option<u16>,
    code: Option<String>,
    message: String,
    credentials_problem: Option<&CredentialsProblem>,
) -> StoreError {
    let key = key.to_owned();
    match (code.as_deref(), status) {
        (Some("NoSuchKey" | "NoSuchBucket" | "NotFound"), _) | (None, Some(404)) => StoreError::NotFound {
            op,
            key,
            code: code.unwrap_or_else(|| "404 Not Found".into()),
        },
        (
            Some(
                "AccessDenied"
                | "Forbidden"
                | "InvalidAccessKeyId"
                | "ExpiredToken"
                | "InvalidToken"
                | "SignatureDoesNotMatch"
                | "AllAccessDisabled"
                | "TokenRefreshRequired"
                | "AccountProblem",
            ),
            _,
        )
        | (None, Some(401 | 403)) => StoreError::AccessDenied {
            op,
            key,
            code: code.unwrap_or_else(|| format!("HTTP {}", status.unwrap_or(403))),
            message,
            request_id: None,
        },
        (Some("PreconditionFailed"), _) | (_, Some(412)) => StoreError::PreconditionFailed { op, key },
        _ => {
            // No answer from the server at all, or a 400 without a body (HEAD never has one;
            // it is how S3 answers an expired token there): if our credentials are unusable
            // by now, that is a denial, and the log must say why. Right at expiry the request
            // was signed while the session was valid and judged after it ran out.
            if (status.is_none() || (status == Some(400) && code.is_none()))
                && let Some(why) = credentials_problem.and_then(|p| p())
            {
                return StoreError::AccessDenied {
                    op,
                    key,
                    code: "NoValidCredentials".into(),
                    message: why,
                    request_id: None,
                };
            }
            let message = match status {
                Some(s) => format!("HTTP {s}: {message}"),
                None => message,
            };
            StoreError::Other {
                op,
                key,
                code,
                message,
                request_id: None,
            }
        }
    }
}

fn to_system_time(t: Option<&aws_smithy_types::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn metadata_of(m: Option<&std::collections::HashMap<String, String>>) -> Metadata {
    m.map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
        .unwrap_or_default()
}

impl ObjectStore for S3Store {
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: Option<i32>,
    ) -> Result<ListPage, StoreError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_owned))
            .set_continuation_token(continuation)
            .set_max_keys(max_keys)
            .send()
            .await
            .map_err(|e| self.classify("ListObjectsV2", prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().to_owned(),
                    last_modified: to_system_time(o.last_modified()),
                    metadata: None,
                    content_type: None,
                })
            })
            .collect();
        let prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            prefixes,
            next,
        })
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("HeadObject", key, e))?;
        Ok(ObjectInfo {
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().unwrap_or_default().to_owned(),
            last_modified: to_system_time(out.last_modified()),
            metadata: Some(metadata_of(out.metadata())),
            content_type: out.content_type().map(str::to_owned),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>, if_match: Option<&str>) -> Result<RangeBody, StoreError> {
        if range.start >= range.end {
            return Ok(RangeBody::from_bytes(bytes::Bytes::new()));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.filter(|e| !e.is_empty()).map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.classify("GetObject", key, e))?;
        Ok(RangeBody {
            inner: BodyInner::Sdk(out.body, key.to_owned()),
        })
    }

    async fn put(&self, key: &str, body: Bytes, new: &NewObject) -> Result<String, StoreError> {
        let len = body.len() as u64;
        let crc32c = self.upload_checksum.crc32c(&body);
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_checksum_algorithm(crc32c.as_ref().map(|_| ChecksumAlgorithm::Crc32C))
            .set_checksum_crc32_c(crc32c.clone())
            .body(ByteStream::from(body))
            .set_metadata(Some(hash_map(&new.metadata)))
            .set_content_type(new.content_type.clone())
            .customize()
            .config_override(with_timeouts(self.timeouts.upload(len)));
        if crc32c.is_some() {
            req = req.disable_payload_signing();
        }
        let out = req.send().await.map_err(|e| self.classify("PutObject", key, e))?;
        crate::mount_metrics::s3_bytes_written(len);
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn create_multipart(&self, key: &str, new: &NewObject) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(hash_map(&new.metadata)))
            .set_content_type(new.content_type.clone())
            .set_checksum_algorithm(self.upload_checksum.algorithm())
            .send()
            .await
            .map_err(|e| self.classify("CreateMultipartUpload", key, e))?;
        out.upload_id().map(str::to_owned).ok_or_else(|| StoreError::Other {
            op: "CreateMultipartUpload",
            key: key.to_owned(),
            code: None,
            message: "no upload id in the answer".into(),
            request_id: None,
        })
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: i32, body: Bytes) -> Result<Part, StoreError> {
        let len = body.len() as u64;
        let crc32c = self.upload_checksum.crc32c(&body);
        let mut req = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .set_checksum_algorithm(crc32c.as_ref().map(|_| ChecksumAlgorithm::Crc32C))
            .set_checksum_crc32_c(crc32c.clone())
            .body(ByteStream::from(body))
            .customize()
            .config_override(with_timeouts(self.timeouts.upload(len)));
        if crc32c.is_some() {
            req = req.disable_payload_signing();
        }
        let out = req.send().await.map_err(|e| self.classify("UploadPart", key, e))?;
        crate::mount_metrics::s3_bytes_written(len);
        Ok(Part {
            number,
            etag: out.e_tag().unwrap_or_default().to_owned(),
            checksum: crc32c,
        })
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source: &str,
        range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<Part, StoreError> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(&self.bucket, source))
            .copy_source_range(format!("bytes={}-{}", range.start, range.end.saturating_sub(1)))
            .set_copy_source_if_match(source_etag.map(str::to_owned))
            .customize()
            .config_override(with_timeouts(self.timeouts.copy(range.end.saturating_sub(range.start))))
            .send()
            .await
            .map_err(|e| self.classify("UploadPartCopy", key, e))?;
        let result = out.copy_part_result();
        let etag = result.and_then(|r| r.e_tag()).unwrap_or_default().to_owned();
        // In an upload created for CRC32C, S3 computes the CRC32C of the copied range itself.
        let checksum = result
            .and_then(|r| r.checksum_crc32_c())
            .filter(|_| self.upload_checksum == UploadChecksum::Crc32c)
            .map(str::to_owned);
        Ok(Part { number, etag, checksum })
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: Vec<Part>) -> Result<String, StoreError> {
        let timeouts = with_timeouts(self.timeouts.complete(parts.len()));
        let parts = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .e_tag(p.etag)
                    .set_checksum_crc32_c(p.checksum)
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .customize()
            .config_override(timeouts)
            .send()
            .await
            .map_err(|e| self.classify("CompleteMultipartUpload", key, e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.classify("AbortMultipartUpload", key, e))?;
        Ok(())
    }

    async fn copy(
        &self,
        source: &str,
        dest: &str,
        size: u64,
        replace: Option<&NewObject>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(dest)
            .copy_source(copy_source(&self.bucket, source))
            .set_copy_source_if_match(source_etag.map(str::to_owned));
        if let Some(new) = replace {
            req = req
                .metadata_directive(MetadataDirective::Replace)
                .set_metadata(Some(hash_map(&new.metadata)))
                .set_content_type(new.content_type.clone());
        }
        let out = req
            .customize()
            .config_override(with_timeouts(self.timeouts.copy(size.min(MAX_COPY_BYTES))))
            .send()
            .await
            .map_err(|e| self.classify("CopyObject", dest, e))?;
        Ok(out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_default()
            .to_owned())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.classify("DeleteObject", key, e))?;
        Ok(())
    }
}

/// `bucket/key` for the x-amz-copy-source header: every byte of the key outside the
/// unreserved set and `/` is percent-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!("{bucket}/{}", percent_encoding::utf8_percent_encode(key, KEEP))
}

fn hash_map(m: &Metadata) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_fallback_when_no_code_is_sent() {
        let e = classify("HeadObject", "k", Some(404), None, "x".into(), None);
        assert!(matches!(e, StoreError::NotFound { .. }));
        let e = classify("HeadObject", "k", Some(403), None, "x".into(), None);
        assert!(matches!(e, StoreError::AccessDenied { .. }));
        let e = classify("GetObject", "k", Some(500), None, "x".into(), None);
        assert!(matches!(e, StoreError::Other { .. }));
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(copy_source("b", "a b/c+d%e/日"), "b/a%20b/c%2Bd%25e/%E6%97%A5");
    }

    #[test]
    fn expired_token_is_a_denial() {
        let e = classify(
            "GetObject",
            "k",
            Some(400),
            Some("ExpiredToken".into()),
            "m".into(),
            None,
        );
        assert!(matches!(e, StoreError::AccessDenied { ref code, .. } if code == "ExpiredToken"));
    }

    #[test]
    fn missing_credentials_are_a_denial_that_says_why() {
        let why: CredentialsProblem = Arc::new(|| Some("session expired".into()));
        let e = classify("GetObject", "k", None, None, "dispatch failure".into(), Some(&why));
        assert!(matches!(e, StoreError::AccessDenied { ref message, .. } if message == "session expired"));
        let e = classify("HeadObject", "k", Some(400), None, "400".into(), Some(&why));
        assert!(
            matches!(e, StoreError::AccessDenied { ref message, .. } if message == "session expired"),
            "a body-less 400 at expiry is the server's ExpiredToken"
        );
        let fine: CredentialsProblem = Arc::new(|| None);
        let e = classify("HeadObject", "k", Some(400), None, "400".into(), Some(&fine));
        assert!(matches!(e, StoreError::Other { .. }));
        let e = classify("GetObject", "k", None, None, "timeout".into(), Some(&fine));
        assert!(matches!(e, StoreError::Other { .. }));
    }

    #[test]
    fn every_wait_is_bounded_and_metadata_gives_up_within_a_minute() {
        let t = Timeouts::default();
        let m = t.metadata();
        assert_eq!(m.read_timeout(), Some(Duration::from_secs(20)));
        assert!(m.operation_timeout().is_some_and(|d| d < Duration::from_secs(60)));
        assert_eq!(m.connect_timeout(), Some(Duration::from_secs(5)));
        let small = Timeouts {
            request: Duration::from_secs(2),
        };
        assert_eq!(small.metadata().connect_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(small.metadata().operation_timeout(), Some(Duration::from_secs(4)));
        for c in [t.upload(8 << 20), t.copy(MAX_COPY_BYTES), t.complete(10_000)] {
            assert!(c.connect_timeout().is_some());
            assert!(c.operation_attempt_timeout().is_some());
            assert!(c.operation_timeout() > c.operation_attempt_timeout());
        }
    }

    /// A request as the client was about to send it, signed.
    struct Sent {
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Sent {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }

        fn checksum_headers(&self) -> Vec<&str> {
            let names = self.headers.iter().map(|(k, _)| k.as_str());
            names.filter(|k| k.starts_with("x-amz-checksum-")).collect()
        }
    }

    /// Records each request at the last moment before it would be sent, then stops it there.
    #[derive(Clone, Debug, Default)]
    struct Capture(Arc<std::sync::Mutex<Vec<Sent>>>);

    impl std::fmt::Debug for Sent {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Sent").field("headers", &self.headers).finish()
        }
    }

    impl aws_sdk_s3::config::Intercept for Capture {
        fn name(&self) -> &'static str {
            "Capture"
        }

        fn read_before_transmit(
            &self,
            context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
            _: &aws_sdk_s3::config::RuntimeComponents,
            _: &mut aws_sdk_s3::config::ConfigBag,
        ) -> Result<(), aws_sdk_s3::error::BoxError> {
            let request = context.request();
            let headers = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect();
            let body = request.body().bytes().unwrap_or_default().to_vec();
            self.0.lock().unwrap().push(Sent { headers, body });
            Err("captured, not sent".into())
        }
    }

    impl Capture {
        /// The first request sent since the last call.
        fn first(&self) -> Sent {
            let mut sent = std::mem::take(&mut *self.0.lock().unwrap());
            assert!(!sent.is_empty(), "no request was sent");
            sent.swap_remove(0)
        }
    }

    fn capturing_store(endpoint: &str, checksum: UploadChecksum) -> (S3Store, Capture) {
        let sdk = aws_types::SdkConfig::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .build();
        let credentials = aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let location = S3Location {
            bucket: "b".into(),
            endpoint_url: Some(endpoint.into()),
            path_style: true,
            request_timeout: None,
        };
        let mut store = S3Store::new(&sdk, SharedCredentialsProvider::new(credentials), &location, None)
            .with_upload_checksum(checksum);
        let capture = Capture::default();
        let conf = store.client.config().to_builder().interceptor(capture.clone()).build();
        store.client = aws_sdk_s3::Client::from_conf(conf);
        (store, capture)
    }

    /// CRC32C("123456789") = 0xe3069283, the standard check value.
    const CHECK_CRC32C: &str = "4waSgw==";

    /// What a PutObject and an UploadPart of "123456789" send to `endpoint` with `checksum`,
    /// and the store, to send more.
    async fn uploads_sent(endpoint: &str, checksum: UploadChecksum) -> (S3Store, Capture, [Sent; 2]) {
        let (store, sent) = capturing_store(endpoint, checksum);
        let body = Bytes::from_static(b"123456789");
        let _ = store.put("k", body.clone(), &NewObject::default()).await;
        let put = sent.first();
        let _ = store.upload_part("k", "u", 1, body).await;
        let upload_part = sent.first();
        (store, sent, [put, upload_part])
    }

    /// The checksum algorithm a CreateMultipartUpload asks for, and the body of a
    /// CompleteMultipartUpload of one part with `checksum`.
    async fn multipart_sent(store: &S3Store, sent: &Capture, checksum: Option<&str>) -> (Option<String>, String) {
        let _ = store.create_multipart("k", &NewObject::default()).await;
        let algorithm = sent.first().header("x-amz-checksum-algorithm").map(str::to_owned);
        let part = Part {
            number: 1,
            etag: "\"e1\"".into(),
            checksum: checksum.map(str::to_owned),
        };
        let _ = store.complete_multipart("k", "u", vec![part]).await;
        let complete = String::from_utf8(sent.first().body).unwrap();
        (algorithm, complete)
    }

    #[tokio::test]
    async fn uploads_carry_a_crc32c_and_an_unsigned_body_over_http_and_https() {
        for endpoint in ["http://127.0.0.1:9", "https://127.0.0.1:9"] {
            let (store, sent, uploads) = uploads_sent(endpoint, UploadChecksum::default()).await;
            for r in &uploads {
                assert_eq!(
                    r.header("x-amz-content-sha256"),
                    Some("UNSIGNED-PAYLOAD"),
                    "{endpoint}: {r:?}"
                );
                assert_eq!(
                    r.header("x-amz-checksum-crc32c"),
                    Some(CHECK_CRC32C),
                    "{endpoint}: {r:?}"
                );
                assert_eq!(r.checksum_headers(), ["x-amz-checksum-crc32c"], "{endpoint}: {r:?}");
                let auth = r.header("authorization").unwrap_or_default();
                assert!(auth.contains(";x-amz-checksum-crc32c;"), "the CRC32C is signed: {auth}");
                assert_eq!(r.header("content-encoding"), None, "never aws-chunked: {r:?}");
                assert_eq!(r.header("x-amz-trailer"), None, "no trailer: {r:?}");
                assert_eq!(r.body, b"123456789");
            }
            let (algorithm, complete) = multipart_sent(&store, &sent, Some(CHECK_CRC32C)).await;
            assert_eq!(algorithm.as_deref(), Some("CRC32C"));
            assert!(
                complete.contains("<ChecksumCRC32C>4waSgw==</ChecksumCRC32C>"),
                "{complete}"
            );
        }
    }

    #[tokio::test]
    async fn signed_payload_signs_the_sha256_of_the_body_and_sends_no_checksum() {
        const SHA256: &str = "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225";
        for endpoint in ["http://127.0.0.1:9", "https://127.0.0.1:9"] {
            let (store, sent, uploads) = uploads_sent(endpoint, UploadChecksum::SignedPayload).await;
            for r in &uploads {
                assert_eq!(r.header("x-amz-content-sha256"), Some(SHA256), "{endpoint}: {r:?}");
                assert!(r.checksum_headers().is_empty(), "{endpoint}: {r:?}");
                assert_eq!(r.header("x-amz-sdk-checksum-algorithm"), None, "{endpoint}: {r:?}");
            }
            let (algorithm, complete) = multipart_sent(&store, &sent, None).await;
            assert_eq!(algorithm, None);
            assert!(!complete.contains("Checksum"), "{complete}");
        }
    }

    #[test]
    fn upload_checksums_are_named() {
        for c in UploadChecksum::ALL {
            assert_eq!(c.name().parse::<UploadChecksum>(), Ok(c));
        }
        assert_eq!(UploadChecksum::default().name(), "crc32c");
        assert!("sha256".parse::<UploadChecksum>().is_err());
    }

    #[test]
    fn transfers_get_time_in_proportion_to_their_size() {
        let t = Timeouts::default();
        let attempt = |c: TimeoutConfig| c.operation_attempt_timeout().unwrap_or_default();
        assert_eq!(attempt(t.upload(0)), Duration::from_secs(20));
        assert_eq!(attempt(t.upload(8 << 20)), Duration::from_secs(20 + 32));
        assert_eq!(attempt(t.upload(512 << 20)), Duration::from_secs(20 + 2048));
        assert_eq!(
            t.upload(1).read_timeout(),
            None,
            "the wait for the answer includes the upload"
        );
        assert_eq!(attempt(t.copy(5 << 30)), Duration::from_secs(20 + 80));
        assert_eq!(attempt(t.complete(3)), Duration::from_millis(20_150));
    }
}
