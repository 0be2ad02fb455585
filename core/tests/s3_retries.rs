//! The S3 store's retry rules against a scripted fake endpoint on loopback (no real server
//! needed): throttling and 5xx are retried, a 412 never is, and a conditional write whose
//! attempt may have landed is never sent again: it is read back, and is done only when the
//! stored bytes are ours, otherwise its outcome is unknown (never a conflict).
#![cfg(feature = "s3")]

use std::sync::{Arc, Mutex};
use tally_core::store::s3::{S3Options, S3Store, StaticCredentials};
use tally_core::store::{PutMode, Store, StoreError, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// Serves `script` in order, one answer per request (closing each connection), and records
/// each request's method.
async fn fake(script: Vec<Answer>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for (status, headers, body) in script {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Read the head, then as much body as Content-Length or chunked framing says.
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_ascii_lowercase();
                    let body_len = buf.len() - end - 4;
                    let want = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    let chunked = head.contains("transfer-encoding: chunked");
                    let done = match want {
                        Some(w) if !chunked => body_len >= w,
                        _ if chunked => {
                            text[end + 4..].contains("0\r\n") && text.ends_with("\r\n\r\n")
                        }
                        _ => true,
                    };
                    if done {
                        break;
                    }
                }
            }
            let method = String::from_utf8_lossy(&buf)
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push(method);
            let reason = match status {
                200 => "OK",
                412 => "Precondition Failed",
                500 => "Internal Server Error",
                503 => "Slow Down",
                _ => "Status",
            };
            let mut resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                resp += &format!("{k}: {v}\r\n");
            }
            resp += "\r\n";
            resp += body;
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), seen)
}

fn store(endpoint: String) -> S3Store {
    let mut o = S3Options::new("fake-bucket");
    o.endpoint = Some(endpoint);
    o.path_style = true;
    o.credentials = Some(StaticCredentials {
        access_key: "k".into(),
        secret_key: "fake-secret-key".into(),
    });
    S3Store::new(o)
}

const ERR_412: &str = "<Error><Code>PreconditionFailed</Code><Message>no</Message></Error>";
const ERR_503: &str = "<Error><Code>SlowDown</Code><Message>slow down</Message></Error>";
const ERR_500: &str = "<Error><Code>InternalError</Code><Message>oops</Message></Error>";

#[tokio::test]
async fn a_412_is_a_conflict_and_is_never_retried() {
    let (endpoint, seen) = fake(vec![(412, vec![], ERR_412)]).await;
    let err = store(endpoint)
        .put("a/b", b"x".to_vec(), PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "one request, no retry");
}

#[tokio::test]
async fn throttling_and_5xx_are_retried_until_success() {
    let (endpoint, seen) = fake(vec![
        (503, vec![], ERR_503),
        (500, vec![], ERR_500),
        (200, vec![("ETag", "\"v1\"")], ""),
    ])
    .await;
    let s = store(endpoint);
    let v = s
        .put("a/b", b"x".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(v, Version("v1".into()));
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(s.retries(), 2, "the metrics count both retries");
}

#[tokio::test]
async fn a_conditional_write_that_may_have_landed_is_read_back_not_sent_again() {
    let (endpoint, seen) = fake(vec![
        (500, vec![], ERR_500),                     // may have landed
        (200, vec![("ETag", "\"v9\"")], "payload"), // it did: the key holds our bytes
    ])
    .await;
    let v = store(endpoint)
        .put("a/b", b"payload".to_vec(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(v, Version("v9".into()));
    assert_eq!(*seen.lock().unwrap(), vec!["PUT", "GET"]);
}

#[tokio::test]
async fn a_503_before_any_effect_is_retried_for_a_conditional_write() {
    let (endpoint, seen) = fake(vec![
        (503, vec![], ERR_503),
        (200, vec![("ETag", "\"v2\"")], ""),
    ])
    .await;
    let v = store(endpoint)
        .put("a/b", b"x".to_vec(), PutMode::Update(Version("v1".into())))
        .await
        .unwrap();
    assert_eq!(v, Version("v2".into()));
    assert_eq!(*seen.lock().unwrap(), vec!["PUT", "PUT"]);
}

#[tokio::test]
async fn a_compare_and_swap_that_may_have_landed_under_other_bytes_is_unknown_not_a_conflict() {
    // Our write may have landed and been overwritten by another consolidator: reporting a
    // conflict would make the caller drop a committed batch's journal (review finding 2).
    for mode in [PutMode::Update(Version("v1".into())), PutMode::Create] {
        let (endpoint, seen) = fake(vec![
            (500, vec![], ERR_500),
            (200, vec![("ETag", "\"v9\"")], "someone else"),
        ])
        .await;
        let err = store(endpoint)
            .put("a/b", b"payload".to_vec(), mode)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Backend(m) if m.contains("outcome unknown")),
            "{err:?}"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["PUT", "GET"],
            "never sent twice"
        );
    }
}

#[tokio::test]
async fn a_create_that_may_have_landed_and_is_absent_is_unknown() {
    // Absent: it may still land (a late write) or may have been consumed already.
    let (endpoint, _) = fake(vec![
        (500, vec![], ERR_500),
        (
            404,
            vec![],
            "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>",
        ),
    ])
    .await;
    let err = store(endpoint)
        .put("a/b", b"payload".to_vec(), PutMode::Create)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("outcome unknown")),
        "{err:?}"
    );
}

#[tokio::test]
async fn attempts_are_bounded() {
    let (endpoint, seen) = fake(vec![(503, vec![], ERR_503); 4]).await;
    let err = store(endpoint).get("a/b").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("gave up after 4 attempts")),
        "{err:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_body_that_stops_arriving_times_out_instead_of_hanging() {
    // Every answer: the head and 2 of 10 promised bytes, then nothing (the socket stays open).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut chunk = [0u8; 8192];
            let _ = sock.read(&mut chunk).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"e\"\r\n\r\nab";
            let _ = sock.write_all(head.as_bytes()).await;
            open.push(sock);
        }
    });
    let mut o = S3Options::new("fake-bucket");
    o.endpoint = Some(format!("http://{addr}"));
    o.path_style = true;
    o.attempt_timeout = std::time::Duration::from_millis(300);
    o.credentials = Some(StaticCredentials {
        access_key: "k".into(),
        secret_key: "fake-secret-key".into(),
    });
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        S3Store::new(o).get("a/b"),
    )
    .await
    .expect("the GET gave up by itself");
    let err = got.unwrap_err();
    assert!(err.to_string().contains("body"), "{err}");
}
