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

/// A connection string with its password removed (for logs and errors).
pub fn redact(connection_string: &str) -> String {
    match Url::parse(connection_string) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable connection string>".to_string(),
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidConfig, msg.into())
}

fn trim_prefix(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// Opens the store a connection string names. `memory://` buckets are shared process-wide.
pub fn open(connection_string: &str) -> Result<Connection> {
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

fn open_s3(url: &Url) -> Result<Connection> {
    Err(Error::new(
        ErrorCode::Storage,
        format!(
            "S3 connections ({}://…) are not available in this build yet",
            url.scheme()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_secret_but_keeps_bucket_and_endpoint() {
        let r = redact("http://AKIA:s3cr%2Bt@127.0.0.1:9000/bucket/pre");
        assert!(!r.contains("s3cr"), "{r}");
        assert!(r.contains("127.0.0.1:9000/bucket/pre"), "{r}");
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
        for s in [
            "ftp://x/y",
            "file://relative/dir",
            "not a url",
            "memory:///nobucket",
        ] {
            let e = open(s).err().unwrap();
            assert_eq!(e.code(), ErrorCode::InvalidConfig, "{s}: {e}");
        }
    }
}
