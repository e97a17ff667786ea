//! The few S3 calls anchoring needs, over the project's `reqwest`, signed with AWS's own SigV4
//! signer (`aws-sigv4`).
//!
//! `object_store` cannot send the Object Lock headers of a single PUT (it has no such option,
//! and its default headers are fixed per client, while the retain-until date changes with
//! every object), and it offers neither GetObjectLockConfiguration nor version listing. The
//! full AWS SDK would do, at about three times the build cost; these few calls are short.
//!
//! Addressing: with a custom endpoint (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`; MinIO,
//! Ceph, moto, …) requests are path-style (`ENDPOINT/bucket/key`); without one they go to AWS
//! virtual-hosted style (`https://bucket.s3.REGION.amazonaws.com/key`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::Digest;

use crate::AnchorError;

/// RFC 3986 unreserved characters stay as they are; everything else is escaped, as SigV4's
/// canonical form wants.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where S3 is and who we are there.
#[derive(Clone)]
pub struct S3Config {
    /// Custom endpoint (`http://127.0.0.1:9000`); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Region the requests are signed for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Reads the standard AWS variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN` (optional), `AWS_REGION` or `AWS_DEFAULT_REGION` (default
    /// `us-east-1`), and `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (optional).
    pub fn from_env() -> Result<S3Config, AnchorError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (Some(access_key_id), Some(secret_access_key)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(AnchorError::Config(
                "S3 credentials are missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (and AWS_SESSION_TOKEN for temporary credentials)"
                    .into(),
            ));
        };
        let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(AnchorError::Config(format!(
                    "the S3 endpoint {e:?} must start with http:// or https://"
                )));
            }
        }
        Ok(S3Config {
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}

/// One version of an object, as ListObjectVersions names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Object key.
    pub key: String,
    /// Version id (`null` in a bucket without versioning).
    pub version_id: String,
    /// Whether it is a delete marker rather than data.
    pub delete_marker: bool,
}

/// An object version's Object Lock retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    /// Until when, as S3 wrote it (ISO 8601).
    pub retain_until: String,
}

/// What a conditional write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written (its version id, when S3 says).
    Created(Option<String>),
    /// The key already had an object; nothing was written.
    Exists,
}

/// A small S3 client: cheap to clone.
#[derive(Clone, Debug)]
pub struct S3Client {
    http: reqwest::Client,
    config: Arc<S3Config>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorXml {
    code: String,
    message: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct LockConfigXml {
    object_lock_enabled: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VersionXml {
    key: String,
    version_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListVersionsXml {
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_id_marker: Option<String>,
    version: Vec<VersionXml>,
    delete_marker: Vec<VersionXml>,
}

impl S3Client {
    /// A client for this configuration.
    pub fn new(config: S3Config) -> Result<S3Client, AnchorError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AnchorError::Config(format!("cannot build an HTTP client: {e}")))?;
        Ok(S3Client {
            http,
            config: Arc::new(config),
        })
    }

    /// A client configured from the standard AWS environment variables
    /// ([`S3Config::from_env`]).
    pub fn from_env() -> Result<S3Client, AnchorError> {
        S3Client::new(S3Config::from_env()?)
    }

    /// The configuration in use.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn url(&self, bucket: &str, key: &str, query: &[(&str, &str)]) -> String {
        let mut url = match &self.config.endpoint {
            Some(endpoint) => format!("{endpoint}/{bucket}/{key}"),
            None => format!(
                "https://{bucket}.s3.{}.amazonaws.com/{key}",
                self.config.region
            ),
        };
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            if !value.is_empty() {
                url.push('=');
                url.extend(utf8_percent_encode(value, QUERY_VALUE));
            }
        }
        url
    }

    /// Signs and sends one request; any HTTP status is returned to the caller.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, AnchorError> {
        let target = url.to_string();
        let protocol = |detail: String| AnchorError::Protocol {
            op,
            target: target.clone(),
            detail,
        };
        let identity = Credentials::new(
            &self.config.access_key_id,
            &self.config.secret_access_key,
            self.config.session_token.clone(),
            None,
            "environment",
        )
        .into();
        let mut settings = SigningSettings::default();
        // S3 canonicalises paths as sent: no double escaping, no dot-segment removal.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| protocol(format!("signing parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| protocol(format!("cannot sign: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| protocol(format!("cannot sign: {e}")))?
            .into_parts();
        let mut request = self.http.request(method, url);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        for (k, v) in instructions.headers() {
            request = request.header(k, v);
        }
        request
            .body(body)
            .send()
            .await
            .map_err(|source| AnchorError::Unreachable { op, target, source })
    }

    /// Turns a non-success answer into an error carrying S3's code and message.
    async fn error(op: &'static str, target: String, response: reqwest::Response) -> AnchorError {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let parsed: ErrorXml = quick_xml::de::from_str(&text).unwrap_or_default();
        AnchorError::S3 {
            op,
            target,
            status,
            code: parsed.code,
            message: if parsed.message.is_empty() {
                text.chars().take(200).collect()
            } else {
                parsed.message
            },
        }
    }

    async fn text(
        op: &'static str,
        target: String,
        response: reqwest::Response,
    ) -> Result<String, AnchorError> {
        response.text().await.map_err(|e| AnchorError::Protocol {
            op,
            target,
            detail: e.to_string(),
        })
    }

    fn xml<T: serde::de::DeserializeOwned>(
        op: &'static str,
        target: &str,
        text: &str,
    ) -> Result<T, AnchorError> {
        quick_xml::de::from_str(text).map_err(|e| AnchorError::Protocol {
            op,
            target: target.to_string(),
            detail: format!("{e}: {}", text.chars().take(200).collect::<String>()),
        })
    }

    /// Whether the bucket has Object Lock enabled (GetObjectLockConfiguration). A bucket
    /// without any lock configuration answers `Ok(false)`.
    pub async fn object_lock_enabled(&self, bucket: &str) -> Result<bool, AnchorError> {
        const OP: &str = "GetObjectLockConfiguration";
        let url = self.url(bucket, "", &[("object-lock", "")]);
        let response = self.send(OP, Method::GET, &url, &[], Vec::new()).await?;
        let target = format!("s3://{bucket}");
        if response.status() == StatusCode::NOT_FOUND {
            let e = Self::error(OP, target, response).await;
            return match e.s3_code() {
                Some("ObjectLockConfigurationNotFoundError") => Ok(false),
                _ => Err(e),
            };
        }
        if !response.status().is_success() {
            return Err(Self::error(OP, target, response).await);
        }
        let text = Self::text(OP, target.clone(), response).await?;
        let config: LockConfigXml = Self::xml(OP, &target, &text)?;
        Ok(config.object_lock_enabled == "Enabled")
    }

    /// Writes `body` under `key` only if the key holds nothing yet (`If-None-Match: *`),
    /// locked in COMPLIANCE mode until `retain_until`. Sends Content-MD5 and a SHA-256
    /// checksum, which S3 requires of writes with a retention period.
    pub async fn put_locked_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        retain_until: time::OffsetDateTime,
    ) -> Result<PutOutcome, AnchorError> {
        const OP: &str = "PutObject";
        let b64 = base64::engine::general_purpose::STANDARD;
        let until = retain_until
            .replace_nanosecond(0)
            .unwrap_or(retain_until)
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| AnchorError::Config(format!("retention date: {e}")))?;
        let headers = [
            ("content-type", content_type.to_string()),
            ("content-md5", b64.encode(md5::Md5::digest(&body))),
            ("x-amz-sdk-checksum-algorithm", "SHA256".to_string()),
            (
                "x-amz-checksum-sha256",
                b64.encode(sha2::Sha256::digest(&body)),
            ),
            ("if-none-match", "*".to_string()),
            ("x-amz-object-lock-mode", "COMPLIANCE".to_string()),
            ("x-amz-object-lock-retain-until-date", until),
        ];
        let url = self.url(bucket, key, &[]);
        let response = self.send(OP, Method::PUT, &url, &headers, body).await?;
        let target = format!("s3://{bucket}/{key}");
        match response.status() {
            s if s.is_success() => Ok(PutOutcome::Created(
                response
                    .headers()
                    .get("x-amz-version-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            )),
            StatusCode::PRECONDITION_FAILED => Ok(PutOutcome::Exists),
            _ => Err(Self::error(OP, target, response).await),
        }
    }

    /// The bytes of an object (its latest version, or `version_id`); `None` if absent.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Vec<u8>>, AnchorError> {
        const OP: &str = "GetObject";
        let query: Vec<(&str, &str)> = version_id.map(|v| ("versionId", v)).into_iter().collect();
        let url = self.url(bucket, key, &query);
        let response = self.send(OP, Method::GET, &url, &[], Vec::new()).await?;
        let target = format!("s3://{bucket}/{key}");
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Self::error(OP, target, response).await);
        }
        response
            .bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|source| AnchorError::Unreachable {
                op: OP,
                target,
                source,
            })
    }

    /// Every version (and delete marker) of every object under `prefix`, following
    /// ListObjectVersions' pages. Versions, not only the latest objects: a later version or
    /// a delete marker can hide an object from a plain listing, never remove a locked one.
    pub async fn list_object_versions(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<ObjectVersion>, AnchorError> {
        const OP: &str = "ListObjectVersions";
        let target = format!("s3://{bucket}/{prefix}");
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("versions", ""), ("prefix", prefix)];
            if let Some((key, version)) = &markers {
                query.push(("key-marker", key));
                query.push(("version-id-marker", version));
            }
            query.sort();
            let url = self.url(bucket, "", &query);
            let response = self.send(OP, Method::GET, &url, &[], Vec::new()).await?;
            if !response.status().is_success() {
                return Err(Self::error(OP, target, response).await);
            }
            let text = Self::text(OP, target.clone(), response).await?;
            let page: ListVersionsXml = Self::xml(OP, &target, &text)?;
            let before = out.len();
            out.extend(page.version.into_iter().map(|v| ObjectVersion {
                key: v.key,
                version_id: v.version_id,
                delete_marker: false,
            }));
            out.extend(page.delete_marker.into_iter().map(|v| ObjectVersion {
                key: v.key,
                version_id: v.version_id,
                delete_marker: true,
            }));
            if !page.is_truncated {
                return Ok(out);
            }
            let next = match (page.next_key_marker, page.next_version_id_marker) {
                (Some(k), Some(v)) => (k, v),
                (Some(k), None) => (k, String::new()),
                _ => {
                    return Err(AnchorError::Protocol {
                        op: OP,
                        target,
                        detail: "a truncated page without a next marker".into(),
                    })
                }
            };
            // A page that adds nothing and repeats the markers would loop forever.
            if out.len() == before && markers.as_ref() == Some(&next) {
                return Err(AnchorError::Protocol {
                    op: OP,
                    target,
                    detail: "the listing does not advance".into(),
                });
            }
            markers = Some(next);
        }
    }

    /// The Object Lock retention of one object version, from the lock headers of a
    /// HeadObject answer (S3 sends them to callers allowed s3:GetObjectRetention); `None` if
    /// the version has no retention.
    pub async fn object_retention(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<Retention>, AnchorError> {
        const OP: &str = "HeadObject";
        let url = self.url(bucket, key, &[("versionId", version_id)]);
        let response = self.send(OP, Method::HEAD, &url, &[], Vec::new()).await?;
        let target = format!("s3://{bucket}/{key}");
        if !response.status().is_success() {
            return Err(Self::error(OP, target, response).await);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(
            match (
                header("x-amz-object-lock-mode"),
                header("x-amz-object-lock-retain-until-date"),
            ) {
                (Some(mode), Some(retain_until)) => Some(Retention { mode, retain_until }),
                _ => None,
            },
        )
    }

    /// Deletes one object version (DeleteObject with a version id). A locked version makes
    /// S3 refuse it with `AccessDenied`.
    pub async fn delete_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<(), AnchorError> {
        const OP: &str = "DeleteObject";
        let url = self.url(bucket, key, &[("versionId", version_id)]);
        let response = self.send(OP, Method::DELETE, &url, &[], Vec::new()).await?;
        if !response.status().is_success() {
            return Err(Self::error(OP, format!("s3://{bucket}/{key}"), response).await);
        }
        Ok(())
    }

    /// Creates a bucket, with Object Lock (and so versioning) enabled if `object_lock`.
    /// Object Lock can be turned on only when a bucket is created.
    pub async fn create_bucket(&self, bucket: &str, object_lock: bool) -> Result<(), AnchorError> {
        const OP: &str = "CreateBucket";
        let mut headers = Vec::new();
        if object_lock {
            headers.push(("x-amz-bucket-object-lock-enabled", "true".to_string()));
        }
        let body = if self.config.region == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.config.region
            )
            .into_bytes()
        };
        let url = self.url(bucket, "", &[]);
        let response = self.send(OP, Method::PUT, &url, &headers, body).await?;
        if !response.status().is_success() {
            return Err(Self::error(OP, format!("s3://{bucket}"), response).await);
        }
        Ok(())
    }
}
