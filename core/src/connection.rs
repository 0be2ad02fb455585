//! Connection strings (SPEC §1): `memory://bucket/prefix`, `file:///abs/path`, and — with the
//! `s3` feature — `s3://KEY:SECRET@bucket/prefix` and `http(s)://KEY:SECRET@host:port/bucket/prefix`.
//! Errors name the scheme, bucket and endpoint, never a secret.

use crate::error::{Error, ErrorCode, Result};
use crate::store::SharedStore;
use crate::store::memory::MemoryStore;
use url::Url;

/// An opened connection: the store and the key prefix everything lives under.
#[derive(Clone)]
pub struct Connection {
    /// The object store.
    pub store: SharedStore,
    /// Key prefix inside the store (empty, or ends without a slash).
    pub prefix: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A connection string with its password removed (for logs and errors).
pub fn redact(connection_string: &str) -> String {
    // Read as text, not as a URL: a secret holding a raw `/` after digits (`KEY:9/abc@bucket`)
    // parses as a port and a path, which would leave it in plain sight.
    redact_urls(connection_string)
}

/// `text` with the password of every URL in it replaced by `***` (`s3://KEY:***@bucket`):
/// for messages that come from elsewhere (a host database's errors) and may quote a
/// connection string.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i.saturating_add(3));
        out.push_str(head);
        // The URL ends at white space or a quote; its userinfo at the last `@` in it (a
        // secret may hold a raw `/`, so the path cannot tell where the authority ends).
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str("***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidConfig, msg.into())
}

fn trim_prefix(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// Opens the store a connection string names, counting its requests for the metrics.
/// `memory://` buckets are shared process-wide.
pub fn open(connection_string: &str) -> Result<Connection> {
    let c = open_backend(connection_string)?;
    Ok(Connection {
        store: std::sync::Arc::new(crate::store::counting::CountingStore::new(c.store)),
        prefix: c.prefix,
    })
}

fn open_backend(connection_string: &str) -> Result<Connection> {
    let url = Url::parse(connection_string).map_err(|e| {
        invalid(format!(
            "connectionString {} is not a valid URL: {e}",
            redact(connection_string)
        ))
    })?;
    match url.scheme() {
        "memory" => {
            let bucket = url.host_str().unwrap_or_default();
            if bucket.is_empty() {
                return Err(invalid(
                    "connectionString memory:// needs a bucket name (memory://bucket/prefix)",
                ));
            }
            Ok(Connection {
                store: MemoryStore::shared(bucket),
                prefix: trim_prefix(url.path()),
            })
        }
        "file" => open_folder(&url),
        "s3" | "http" | "https" => open_s3(&url),
        other => Err(invalid(format!(
            "connectionString scheme \"{other}:\" is not supported (use memory://, file://, s3:// or http(s)://)"
        ))),
    }
}

#[cfg(feature = "fs")]
fn open_folder(url: &Url) -> Result<Connection> {
    let path = match url.host_str() {
        None | Some("") | Some("localhost") => url.to_file_path().map_err(|_| {
            invalid(format!(
                "connectionString {url} must name an absolute folder (file:///abs/path)"
            ))
        })?,
        Some(host) => {
            return Err(invalid(format!(
                "connectionString file://{host}/… names a host; use an absolute path: file:///abs/path"
            )));
        }
    };
    let store = crate::store::fs::FsStore::open(&path).map_err(|e| {
        Error::new(
            ErrorCode::Storage,
            format!("cannot open folder {}: {e}", path.display()),
        )
    })?;
    Ok(Connection {
        store: std::sync::Arc::new(store),
        prefix: String::new(),
    })
}

#[cfg(not(feature = "fs"))]
fn open_folder(_url: &Url) -> Result<Connection> {
    Err(invalid(
        "file:// connections need tally-core's `fs` feature",
    ))
}

#[cfg(feature = "s3")]
fn open_s3(url: &Url) -> Result<Connection> {
    let (options, prefix) = s3_options(url)?;
    Ok(Connection {
        store: std::sync::Arc::new(crate::store::s3::S3Store::new(options)),
        prefix,
    })
}

/// The S3 options and key prefix an `s3://` or `http(s)://` connection string names.
#[cfg(feature = "s3")]
pub fn s3_options(url: &Url) -> Result<(crate::store::s3::S3Options, String)> {
    use crate::store::s3::{S3Options, StaticCredentials};
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid("connectionString credentials must be valid UTF-8 once decoded"))
    };
    let shown = redact(url.as_str());
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let (bucket, prefix, endpoint) = if url.scheme() == "s3" {
        let bucket = url.host_str().unwrap_or_default().to_string();
        (bucket, segments.join("/"), None)
    } else {
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid(format!("connectionString {shown} needs a host")));
        }
        let endpoint = match url.port() {
            Some(p) => format!("{}://{host}:{p}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let bucket = segments.first().map(|s| s.to_string()).unwrap_or_default();
        let prefix = segments.get(1..).map(|s| s.join("/")).unwrap_or_default();
        (bucket, prefix, Some(endpoint))
    };
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(invalid(format!(
            "connectionString {shown} must name a bucket of 3 to 63 lowercase letters, digits, dots or hyphens ({} / http(s)://host:port/bucket/prefix)",
            "s3://KEY:SECRET@bucket/prefix"
        )));
    }
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (user, Some(pass)) if !user.is_empty() => Some(StaticCredentials {
            access_key: decode(user)?,
            secret_key: decode(pass)?,
        }),
        _ => {
            return Err(invalid(format!(
                "connectionString {shown} must give both an access key and a secret (KEY:SECRET@), or neither to use the default credential chain"
            )));
        }
    };
    let mut options = S3Options::new(bucket);
    options.path_style = endpoint.is_some();
    options.endpoint = endpoint;
    options.credentials = credentials;
    if let Some((_, region)) = url.query_pairs().find(|(k, _)| k == "region") {
        options.region = region.into_owned();
    } else if let Ok(region) = std::env::var("AWS_REGION") {
        options.region = region;
    }
    Ok((options, prefix))
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &Url) -> Result<Connection> {
    Err(Error::new(
        ErrorCode::Storage,
        format!(
            "S3 connections ({}://…) need tally-core's `s3` feature",
            url.scheme()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_urls_hides_every_password_in_a_message() {
        let m = redact_urls(
            "connect s3://AKIA:s3cr%2Bt@bucket/p failed; retry http://u:p@h:9000/b, \"https://x:y@z\"",
        );
        assert_eq!(
            m,
            "connect s3://AKIA:***@bucket/p failed; retry http://u:***@h:9000/b, \"https://x:***@z\""
        );
        assert!(!m.contains("s3cr"));
        let raw = redact_urls("at s3://AKIA:wJal/rXUt+nFE@bucket/prefix: denied");
        assert_eq!(raw, "at s3://AKIA:***@bucket/prefix: denied");
        assert_eq!(redact_urls("no url: a:b@c"), "no url: a:b@c");
        assert_eq!(redact_urls("file:///tmp/x"), "file:///tmp/x");
    }

    #[test]
    fn redact_hides_the_secret_but_keeps_bucket_and_endpoint() {
        let r = redact("http://AKIA:s3cr%2Bt@127.0.0.1:9000/bucket/pre");
        assert!(!r.contains("s3cr"), "{r}");
        assert!(r.contains("127.0.0.1:9000/bucket/pre"), "{r}");
        // A secret that starts with digits and holds a raw `/` is no port.
        let r = redact("s3://AKIAXX:9/SUPERSECRET42@bucket/app");
        assert_eq!(r, "s3://AKIAXX:***@bucket/app");
    }

    #[tokio::test]
    async fn memory_buckets_are_shared_and_prefixes_trimmed() {
        let a = open("memory://shared-bucket/app/one/").unwrap();
        let b = open("memory://shared-bucket/other").unwrap();
        assert_eq!(a.prefix, "app/one");
        assert_eq!(b.prefix, "other");
        a.store
            .put("k", b"1".to_vec(), crate::store::PutMode::Overwrite)
            .await
            .unwrap();
        assert!(b.store.get("k").await.unwrap().is_some());
    }

    #[test]
    fn unknown_schemes_and_relative_folders_are_config_errors() {
        let mut bad = vec![
            "ftp://x/y",
            "file://relative/dir",
            "not a url",
            "memory:///nobucket",
        ];
        if cfg!(feature = "s3") {
            bad.extend([
                "s3://KEY:pw0rd@/prefix",
                "http://KEY:pw0rd@127.0.0.1:9000/",
                "http://KEY:pw0rd@127.0.0.1:9000/Bad_Bucket/p",
                "http://KEY@127.0.0.1:9000/bucket/p",
            ]);
        }
        for s in bad {
            let e = open(s).err().unwrap();
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{s}: {e}");
            assert!(!e.to_string().contains("pw0rd"), "{e}");
        }
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_connection_strings_name_bucket_prefix_and_endpoint() {
        let c = open("http://AK:se%2Fcr%40t@127.0.0.1:9000/my-bucket/app/one?region=eu-west-1")
            .unwrap();
        assert_eq!(c.prefix, "app/one");
        let d = c.store.describe();
        assert!(
            d.contains("my-bucket") && d.contains("http://127.0.0.1:9000"),
            "{d}"
        );
        assert!(!d.contains("se/cr@t") && !d.contains("se%2F"), "{d}");
        let c = open("s3://AK:SK@tally-data/pre/fix?region=eu-west-1").unwrap();
        assert_eq!(c.prefix, "pre/fix");
        let d = c.store.describe();
        assert!(d.contains("tally-data") && d.contains("eu-west-1"), "{d}");
    }
}
