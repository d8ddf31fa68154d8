//! Configuration of [`crate::S3BlobStore`]: the struct, its checks, and the URL form.

use object_store::path::Path;
use std::fmt;
use std::time::Duration;
use url::Url;

/// Smallest part size S3 accepts for every part but the last of a multipart upload.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part size S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Default part size.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// Default region, used when neither the configuration nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default time a writer's claim on an upload lasts without being renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// Where and how an [`crate::S3BlobStore`] keeps blobs.
///
/// Build one with [`S3Config::new`] and adjust the public fields, or parse the URL form
/// with [`S3Config::from_url`]. [`S3Config::validate`] (called by
/// [`crate::S3BlobStore::new`]) checks it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible service (`http://127.0.0.1:9000`); `None` for
    /// AWS S3 itself, whose endpoint follows from the region.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Region the requests are signed for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Key prefix inside the bucket, without leading or trailing `/` (`""`: the bucket's
    /// root). Blobs live under `<prefix>/blobs/`, uploads under `<prefix>/_uploads/`.
    pub prefix: String,
    /// Allows a plain `http://` endpoint.
    pub allow_http: bool,
    /// Addresses the bucket as `<bucket>.<endpoint host>` (virtual-hosted style) rather
    /// than as `<endpoint>/<bucket>` (path style).
    pub virtual_hosted_style: bool,
    /// Size in bytes of the parts an upload is cut into: at least [`MIN_PART_SIZE`] and
    /// at most [`MAX_PART_SIZE`]. An append holds at most two parts in memory (one
    /// being received, one being sent). An upload keeps the part size it started with.
    pub part_size: u64,
    /// Whether [`wharf_blob::BlobStore::download_url`] hands out pre-signed URLs, so
    /// that clients download blobs from the bucket rather than through Wharf.
    pub redirect_downloads: bool,
    /// How long a writer's claim on an upload lasts without renewal before another
    /// process may take the upload over (the writer renews it while it works). It bounds
    /// how long the next request for an upload waits after its writer died; a part
    /// upload must finish within half of it. At least 10 seconds.
    pub lease: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("part_size", &self.part_size)
            .field("redirect_downloads", &self.redirect_downloads)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Why an S3 configuration is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3ConfigError {
    /// The URL form does not parse or is not `s3://...`.
    #[error("S3 storage URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting has a value outside what it accepts.
    #[error("S3 storage setting {setting}: {reason}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A required credential is missing from the environment.
    #[error("S3 storage credentials: environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// The S3 client could not be built from the configuration.
    #[error("S3 storage client for bucket {bucket}: {reason}")]
    Client {
        /// The bucket.
        bucket: String,
        /// The client's complaint.
        reason: String,
    },
}

impl S3Config {
    /// A configuration for `bucket` on AWS S3 in `region` with static credentials and
    /// the defaults: no prefix, HTTPS only, path-style addressing, 8 MiB parts, no
    /// download redirects.
    pub fn new(
        bucket: impl Into<String>,
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        S3Config {
            endpoint: None,
            bucket: bucket.into(),
            region: region.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            prefix: String::new(),
            allow_http: false,
            virtual_hosted_style: false,
            part_size: DEFAULT_PART_SIZE,
            redirect_downloads: false,
            lease: DEFAULT_LEASE,
        }
    }

    /// Parses the URL form of a configuration, taking credentials (and the region, if
    /// the URL has none) from the standard AWS environment variables.
    ///
    /// ```text
    /// s3://<bucket>[/<prefix>][?<option>=<value>&...]
    /// ```
    ///
    /// Options:
    ///
    /// | option | value | default |
    /// |---|---|---|
    /// | `endpoint` | URL of an S3-compatible service | AWS S3 |
    /// | `region` | signing region | `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1` |
    /// | `addressing` | `path` or `virtual` (virtual-hosted style) | `path` with an endpoint, `virtual` without |
    /// | `allow_http` | `true` or `false` | `true` when the endpoint is `http://` |
    /// | `part_size` | bytes, or with a `KiB`, `MiB` or `GiB` suffix (5 MiB to 5 GiB) | `8MiB` |
    /// | `redirect` | `true` or `false`: hand out pre-signed download URLs | `false` |
    /// | `lease` | seconds a writer's claim on an upload lasts unrenewed (at least 10) | `120` |
    ///
    /// Credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (required), and
    /// `AWS_SESSION_TOKEN` for temporary credentials. Example:
    /// `s3://registry/wharf?endpoint=http://127.0.0.1:9000&region=us-east-1`.
    pub fn from_url(url: &str) -> Result<S3Config, S3ConfigError> {
        S3Config::from_url_with_env(url, |name| std::env::var(name).ok())
    }

    /// [`S3Config::from_url`] with the environment variables looked up by `env`.
    pub fn from_url_with_env(
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config, S3ConfigError> {
        let bad = |reason: String| S3ConfigError::Url {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme() != "s3" {
            return Err(bad(format!(
                "scheme is {:?}; expected s3://<bucket>[/<prefix>]",
                parsed.scheme()
            )));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket name after s3://".to_string()))?;
        if parsed.username() != "" || parsed.password().is_some() || parsed.port().is_some() {
            return Err(bad(
                "credentials and ports do not belong in the URL (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                    .to_string(),
            ));
        }
        let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
        let access_key_id =
            non_empty("AWS_ACCESS_KEY_ID").ok_or(S3ConfigError::MissingEnv("AWS_ACCESS_KEY_ID"))?;
        let secret = non_empty("AWS_SECRET_ACCESS_KEY")
            .ok_or(S3ConfigError::MissingEnv("AWS_SECRET_ACCESS_KEY"))?;
        let region = non_empty("AWS_REGION")
            .or_else(|| non_empty("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let mut config = S3Config::new(bucket, region, access_key_id, secret);
        config.session_token = non_empty("AWS_SESSION_TOKEN");
        config.prefix = parsed.path().trim_matches('/').to_string();

        let (mut addressing, mut allow_http) = (None, None);
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "endpoint" => config.endpoint = Some(value.into_owned()),
                "region" => config.region = value.into_owned(),
                "addressing" => {
                    addressing = Some(match value.as_ref() {
                        "path" => false,
                        "virtual" => true,
                        v => return Err(bad(format!("addressing={v}: expected path or virtual"))),
                    })
                }
                "allow_http" => allow_http = Some(parse_bool("allow_http", &value, &bad)?),
                "redirect" => config.redirect_downloads = parse_bool("redirect", &value, &bad)?,
                "part_size" => {
                    config.part_size = parse_size(&value)
                        .ok_or_else(|| bad(format!("part_size={value}: expected bytes, or a number with KiB, MiB or GiB")))?
                }
                "lease" => {
                    let secs: u64 = value
                        .parse()
                        .map_err(|_| bad(format!("lease={value}: expected seconds")))?;
                    config.lease = Duration::from_secs(secs);
                }
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?} (known: endpoint, region, addressing, allow_http, part_size, redirect, lease)"
                    )))
                }
            }
        }
        let http_endpoint = config
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        config.allow_http = allow_http.unwrap_or(http_endpoint);
        config.virtual_hosted_style = addressing.unwrap_or(config.endpoint.is_none());
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), S3ConfigError> {
        let invalid =
            |setting: &'static str, reason: String| S3ConfigError::Invalid { setting, reason };
        if self.bucket.is_empty() {
            return Err(invalid("bucket", "is empty".to_string()));
        }
        if self.region.is_empty() {
            return Err(invalid("region", "is empty".to_string()));
        }
        if self.access_key_id.is_empty() || self.secret_access_key.is_empty() {
            return Err(invalid(
                "credentials",
                "access key id and secret access key are both required".to_string(),
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(invalid(
                "part_size",
                format!(
                    "{} bytes is outside {MIN_PART_SIZE}..={MAX_PART_SIZE} (S3 needs parts of 5 MiB to 5 GiB)",
                    self.part_size
                ),
            ));
        }
        if self.lease < Duration::from_secs(10) {
            return Err(invalid(
                "lease",
                format!("{:?} is shorter than 10 seconds", self.lease),
            ));
        }
        if !self.prefix.is_empty() {
            if self.prefix.starts_with('/') || self.prefix.ends_with('/') {
                return Err(invalid(
                    "prefix",
                    format!("{:?} must not start or end with /", self.prefix),
                ));
            }
            Path::parse(&self.prefix)
                .map_err(|e| invalid("prefix", format!("{:?}: {e}", self.prefix)))?;
        }
        if let Some(endpoint) = &self.endpoint {
            let url = Url::parse(endpoint)
                .map_err(|e| invalid("endpoint", format!("{endpoint:?}: {e}")))?;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(invalid(
                        "endpoint",
                        format!("{endpoint:?} is plain http, which needs allow_http"),
                    ))
                }
                other => {
                    return Err(invalid(
                        "endpoint",
                        format!("{endpoint:?} has scheme {other:?}; expected http or https"),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn parse_bool<E>(name: &str, value: &str, bad: &impl Fn(String) -> E) -> Result<bool, E> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        v => Err(bad(format!("{name}={v}: expected true or false"))),
    }
}

/// Parses `123`, `64KiB`, `8MiB` or `1GiB`.
fn parse_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            _ => None,
        }
    }

    #[test]
    fn url_form() {
        let c = S3Config::from_url_with_env(
            "s3://my-bucket/some/prefix/?endpoint=http://127.0.0.1:9000&region=eu-west-3&part_size=16MiB&redirect=true&lease=30",
            env,
        )
        .unwrap();
        assert_eq!(c.bucket, "my-bucket");
        assert_eq!(c.prefix, "some/prefix");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.region, "eu-west-3");
        assert!(c.allow_http, "implied by an http endpoint");
        assert!(!c.virtual_hosted_style, "path style with an endpoint");
        assert_eq!(c.part_size, 16 << 20);
        assert!(c.redirect_downloads);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.access_key_id, "AKIDEXAMPLE");
        assert!(!format!("{c:?}").contains("secret\""), "secret redacted");

        let c = S3Config::from_url_with_env("s3://b", env).unwrap();
        assert_eq!((c.prefix.as_str(), c.region.as_str()), ("", DEFAULT_REGION));
        assert!(c.virtual_hosted_style && !c.allow_http && c.endpoint.is_none());
        assert_eq!(c.part_size, DEFAULT_PART_SIZE);

        let with_region = |name: &str| match name {
            "AWS_DEFAULT_REGION" => Some("ap-south-1".to_string()),
            "AWS_SESSION_TOKEN" => Some("tok".to_string()),
            other => env(other),
        };
        let c = S3Config::from_url_with_env("s3://b?addressing=virtual", with_region).unwrap();
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.session_token.as_deref(), Some("tok"));
    }

    #[test]
    fn url_form_errors() {
        for bad in [
            "http://b/x",
            "s3:///x",
            "s3://b?part_size=1MiB",
            "s3://b?part_size=8MB",
            "s3://b?colour=blue",
            "s3://b?endpoint=http://h:1&allow_http=false",
            "s3://b?endpoint=ftp://h",
            "s3://b?addressing=sideways",
            "s3://b?lease=2",
            "s3://user:pw@b",
            "s3://b/a//b",
        ] {
            assert!(S3Config::from_url_with_env(bad, env).is_err(), "{bad}");
        }
        assert_eq!(
            S3Config::from_url_with_env("s3://b", |_| None),
            Err(S3ConfigError::MissingEnv("AWS_ACCESS_KEY_ID"))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5242880"), Some(5 << 20));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("8 MiB"), None);
    }
}
