//! The S3 backend (feature `s3`): any S3-compatible endpoint through `aws-sdk-s3`.
//!
//! - Create-only puts send `If-None-Match: *`; compare-and-swap sends `If-Match: "<etag>"`.
//!   ETags are stored without quotes (and without a `W/` prefix) and quoted again on the way
//!   out, so servers that quote differently still compare equal.
//! - `412 Precondition Failed` (and `409 ConditionalRequestConflict`, AWS's answer to two
//!   conditional writes in flight at once) is a [`StoreError::Conflict`] and is never retried;
//!   `404` on a compare-and-swap is [`StoreError::NotFound`].
//! - Throttling (`429`, `503 SlowDown`), `5xx`, timeouts and connection failures are retried up
//!   to [`S3Options::max_attempts`] times with jittered exponential backoff, by a
//!   [`RetryingStore`]. A conditional write is never sent again after an attempt whose outcome
//!   is unknown (a timeout, a connection lost, a 5xx other than 503): it is read back instead,
//!   and is done when the stored object is byte for byte what this call wrote; otherwise the
//!   error says the outcome is unknown (see [`super::retry`]).
//! - Listing uses ListObjectsV2 with `start-after`, 1,000 keys a page; delete-many is one
//!   DeleteObjects request of at most 1,000 keys in quiet mode.
//! - Every request has a per-attempt timeout and a connect timeout; a GET's body, read after
//!   the response head, has the attempt timeout again.
//! - Errors name the operation, bucket, key and endpoint, and never the secret key.

use super::retry::RetryingStore;
use super::{ListPage, Object, PAGE_SIZE, PutMode, Store, StoreError, Version, validate_key};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Static credentials taken from a connection string.
#[derive(Clone)]
pub struct StaticCredentials {
    /// The access key id (may appear in logs; it is not secret).
    pub access_key: String,
    /// The secret access key (never logged, never in an error).
    pub secret_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}

/// Where and how to reach a bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1` when nothing else says).
    pub region: String,
    /// A custom endpoint such as `http://127.0.0.1:9000`; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), as S3-compatible servers want.
    pub path_style: bool,
    /// Credentials; `None` uses the SDK's default chain (environment, profile, web identity,
    /// container and instance metadata).
    pub credentials: Option<StaticCredentials>,
    /// Attempts per request, the first included (throttling, 5xx and network failures).
    pub max_attempts: u32,
    /// Time allowed for one attempt of one request.
    pub attempt_timeout: Duration,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
}

impl S3Options {
    /// Options for `bucket` with the defaults: us-east-1, AWS endpoint, 4 attempts, 30 s per
    /// attempt, 5 s to connect.
    pub fn new(bucket: impl Into<String>) -> S3Options {
        S3Options {
            bucket: bucket.into(),
            region: "us-east-1".to_string(),
            endpoint: None,
            path_style: false,
            credentials: None,
            max_attempts: 4,
            attempt_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn endpoint_label(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", self.region))
    }
}

/// One attempt per request on a bucket; [`S3Store`] retries it.
pub struct S3Bucket {
    options: S3Options,
    http: SharedHttpClient,
    client: OnceCell<Client>,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only where it is: the options may hold credentials (redacted) and an endpoint.
        f.debug_struct("S3Bucket")
            .field("bucket", &self.options.bucket)
            .field("region", &self.options.region)
            .finish_non_exhaustive()
    }
}

/// A bucket on S3 or an S3-compatible server (see the module documentation): one attempt per
/// request in [`S3Bucket`], retried by a [`RetryingStore`].
pub struct S3Store {
    retrying: RetryingStore<S3Bucket>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", self.retrying.inner())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Prepares a store; no request is made until the first operation.
    pub fn new(options: S3Options) -> S3Store {
        let attempts = options.max_attempts;
        S3Store {
            retrying: RetryingStore::new(
                S3Bucket::new(options),
                attempts,
                std::sync::Arc::new(crate::clock::TokioSleeper),
            ),
        }
    }

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.retrying.inner().options.bucket
    }

    /// Creates the bucket when it does not exist yet (one request; for set-up and tests).
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let bucket = self.retrying.inner();
        self.retrying.run(|| bucket.ensure_bucket()).await.1
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.retrying.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.retrying.put(key, bytes, mode).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.retrying.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.retrying.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.retrying.delete_many(keys).await
    }
    fn retries(&self) -> u64 {
        self.retrying.retries()
    }
    fn describe(&self) -> String {
        self.retrying.describe()
    }
}

/// What one attempt's failure means.
enum Failure {
    /// The precondition did not hold.
    Conflict,
    /// The key (for a compare-and-swap) does not exist.
    NotFound,
    /// Worth another attempt; `ambiguous` when the request may have taken effect.
    Transient { ambiguous: bool, message: String },
    /// Not worth another attempt.
    Fatal(String),
}

impl S3Bucket {
    fn new(options: S3Options) -> S3Bucket {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        S3Bucket {
            options,
            http,
            client: OnceCell::new(),
        }
    }

    /// Creates the bucket when it does not exist yet (one request; for set-up and tests).
    async fn ensure_bucket(&self) -> Result<(), StoreError> {
        let client = self.client().await;
        let bucket = &self.options.bucket;
        self.attempt("CREATE-BUCKET", bucket, async {
            match client.create_bucket().bucket(bucket).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                    if matches!(code, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                        Ok(())
                    } else {
                        Err(self.classify(e))
                    }
                }
            }
        })
        .await
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let o = &self.options;
                let mut b = match &o.credentials {
                    Some(c) => aws_sdk_s3::Config::builder()
                        .behavior_version(BehaviorVersion::latest())
                        .credentials_provider(Credentials::new(
                            &c.access_key,
                            &c.secret_key,
                            None,
                            None,
                            "connection-string",
                        )),
                    None => {
                        let shared = aws_config::defaults(BehaviorVersion::latest())
                            .http_client(self.http.clone())
                            .region(Region::new(o.region.clone()))
                            .load()
                            .await;
                        aws_sdk_s3::config::Builder::from(&shared)
                    }
                };
                b = b
                    .http_client(self.http.clone())
                    .region(Region::new(o.region.clone()))
                    .force_path_style(o.path_style)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(o.connect_timeout)
                            .operation_attempt_timeout(o.attempt_timeout)
                            .build(),
                    );
                if let Some(e) = &o.endpoint {
                    b = b.endpoint_url(e);
                }
                Client::from_conf(b.build())
            })
            .await
    }

    /// Runs one attempt and maps its failure into a [`StoreError`] (a transient one is
    /// retried by the [`RetryingStore`] around this bucket).
    async fn attempt<T, Fut>(&self, what: &str, key: &str, attempt: Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        match attempt.await {
            Ok(v) => Ok(v),
            Err(Failure::Conflict) => Err(StoreError::Conflict {
                key: key.to_string(),
            }),
            Err(Failure::NotFound) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Err(Failure::Fatal(m)) => Err(self.backend(what, key, &m)),
            Err(Failure::Transient { ambiguous, message }) => {
                let message = match self.backend(what, key, &message) {
                    StoreError::Backend(m) => m,
                    other => other.to_string(),
                };
                Err(StoreError::Transient { message, ambiguous })
            }
        }
    }

    fn backend(&self, what: &str, key: &str, message: &str) -> StoreError {
        let mut m = format!(
            "S3 {what} of \"{key}\" in bucket \"{}\" at {} failed: {message}",
            self.options.bucket,
            self.options.endpoint_label()
        );
        // Belt and braces (no message here is built from the secret): scrub it if it shows up,
        // unless it is so short that scrubbing would mangle ordinary words.
        if let Some(c) = &self.options.credentials
            && c.secret_key.len() >= 8
        {
            m = m.replace(&c.secret_key, "***");
        }
        StoreError::Backend(m)
    }

    fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure {
        use aws_sdk_s3::error::DisplayErrorContext;
        match &e {
            SdkError::TimeoutError(_) => Failure::Transient {
                ambiguous: true,
                message: "request timed out".into(),
            },
            SdkError::DispatchFailure(d) => {
                // A connection lost while the request was being sent or answered cannot be
                // told from one refused before it: assume it may have taken effect.
                let ambiguous = !d.is_user();
                let message = if d.is_io() {
                    format!("cannot reach the endpoint ({})", DisplayErrorContext(&e))
                } else {
                    format!("{}", DisplayErrorContext(&e))
                };
                Failure::Transient { ambiguous, message }
            }
            SdkError::ResponseError(_) => Failure::Transient {
                ambiguous: true,
                message: format!("unreadable response ({})", DisplayErrorContext(&e)),
            },
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code().unwrap_or("").to_string();
                let detail = s.err().message().unwrap_or("").to_string();
                let message = format!("HTTP {status} {code} {detail}").trim().to_string();
                match (status, code.as_str()) {
                    (412, _) | (409, "ConditionalRequestConflict") => Failure::Conflict,
                    (404, "NoSuchBucket") => Failure::Fatal(format!(
                        "the bucket \"{}\" does not exist ({message})",
                        self.options.bucket
                    )),
                    (404, _) => Failure::NotFound,
                    (401 | 403, _) => {
                        Failure::Fatal(format!("access denied: check the credentials ({message})"))
                    }
                    (301 | 307, _) => Failure::Fatal(format!(
                        "the bucket is in another region or endpoint than \"{}\" ({message})",
                        self.options.region
                    )),
                    // 503 Slow Down and 429 are refusals before any effect; other 5xx may hide
                    // a write that landed.
                    (429 | 500..=599, _) => Failure::Transient {
                        ambiguous: status >= 500 && status != 503,
                        message,
                    },
                    (_, "SlowDown" | "Throttling" | "RequestTimeout") => Failure::Transient {
                        ambiguous: false,
                        message,
                    },
                    _ => Failure::Fatal(message),
                }
            }
            _ => Failure::Fatal(format!("{}", DisplayErrorContext(&e))),
        }
    }

    /// [`S3Bucket::classify`] for requests on the bucket rather than one key (LIST,
    /// DeleteObjects): there a 404 can only mean something is wrong, never "no such key".
    fn classify_bucket_request<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> Failure {
        match self.classify(e) {
            Failure::NotFound => Failure::Fatal("HTTP 404".into()),
            f => f,
        }
    }
}

/// An ETag without quotes or weak prefix.
fn normalize_etag(etag: Option<&str>) -> Version {
    let e = etag.unwrap_or("");
    let e = e.strip_prefix("W/").unwrap_or(e);
    Version(e.trim_matches('"').to_string())
}

#[async_trait]
impl Store for S3Bucket {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        validate_key(key)?;
        let client = self.client().await;
        self.attempt("GET", key, async {
            let out = match client
                .get_object()
                .bucket(&self.options.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    return match self.classify(e) {
                        Failure::NotFound => Ok(None),
                        f => Err(f),
                    };
                }
            };
            let version = normalize_etag(out.e_tag());
            // The attempt timeout ends with the response head; the body gets its own.
            let limit = self.options.attempt_timeout;
            let bytes = match tokio::time::timeout(limit, out.body.collect()).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    return Err(Failure::Transient {
                        ambiguous: false,
                        message: format!("body interrupted: {e}"),
                    });
                }
                Err(_) => {
                    return Err(Failure::Transient {
                        ambiguous: false,
                        message: format!("body not received within {} ms", limit.as_millis()),
                    });
                }
            };
            Ok(Some(Object {
                bytes: bytes.into_bytes().to_vec(),
                version,
            }))
        })
        .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        validate_key(key)?;
        let client = self.client().await;
        self.attempt("PUT", key, async {
            let mut req = client
                .put_object()
                .bucket(&self.options.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.clone()));
            req = match &mode {
                PutMode::Overwrite => req,
                PutMode::Create => req.if_none_match("*"),
                PutMode::Update(v) => req.if_match(format!("\"{}\"", v.0)),
            };
            match req.send().await {
                Ok(out) => Ok(normalize_etag(out.e_tag())),
                Err(e) => Err(self.classify(e)),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        let client = self.client().await;
        self.attempt("LIST", prefix, async {
            let out = client
                .list_objects_v2()
                .bucket(&self.options.bucket)
                .prefix(prefix)
                .set_start_after(start_after.map(str::to_string))
                .max_keys(PAGE_SIZE as i32)
                .send()
                .await
                .map_err(|e| self.classify_bucket_request(e))?;
            let keys: Vec<String> = out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string))
                .collect();
            Ok(ListPage {
                truncated: out.is_truncated().unwrap_or(false) && !keys.is_empty(),
                keys,
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        let client = self.client().await;
        self.attempt("DELETE", key, async {
            match client
                .delete_object()
                .bucket(&self.options.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match self.classify(e) {
                    Failure::NotFound => Ok(()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        if keys.len() > PAGE_SIZE {
            return Err(StoreError::Backend(format!(
                "delete_many takes at most {PAGE_SIZE} keys, got {}",
                keys.len()
            )));
        }
        for k in keys {
            validate_key(k)?;
        }
        let objects: Vec<ObjectIdentifier> = keys
            .iter()
            .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
            .collect();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build DeleteObjects: {e}")))?;
        let client = self.client().await;
        let first = keys[0].as_str();
        self.attempt("DELETE-MANY", first, async {
            let out = client
                .delete_objects()
                .bucket(&self.options.bucket)
                .delete(delete.clone())
                .send()
                .await
                .map_err(|e| self.classify_bucket_request(e))?;
            let failed: Vec<String> = out
                .errors()
                .iter()
                .filter(|e| e.code() != Some("NoSuchKey"))
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.key().unwrap_or("?"),
                        e.code().unwrap_or("error")
                    )
                })
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Failure::Transient {
                    ambiguous: false,
                    message: format!("some keys were not deleted: {}", failed.join(", ")),
                })
            }
        })
        .await
    }

    fn describe(&self) -> String {
        format!(
            "s3 bucket \"{}\" at {}",
            self.options.bucket,
            self.options.endpoint_label()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes_or_weak_prefix() {
        assert_eq!(normalize_etag(Some("\"abc\"")), Version("abc".into()));
        assert_eq!(normalize_etag(Some("W/\"abc\"")), Version("abc".into()));
        assert_eq!(normalize_etag(Some("abc")), Version("abc".into()));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let c = StaticCredentials {
            access_key: "AKIA".into(),
            secret_key: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
