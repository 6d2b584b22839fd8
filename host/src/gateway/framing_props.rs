//! Property test of [`super::framing::plugin_response`]: whatever a plugin answers (any status,
//! header names and values with CR/LF, framing headers in any case, bodies that look like HTTP
//! responses), the conversion never panics and the bytes hyper writes hold exactly one
//! response, framed by the host: the next response on the keep-alive connection is the real
//! one.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::framing::{plugin_response, HOST_OWNED_HEADERS};
use crate::runtime::Response as PluginResponse;

const SENTINEL: &str = "the-real-second-response";
const FORGED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // Framing headers, in random case.
        (
            prop::sample::select(HOST_OWNED_HEADERS.to_vec()),
            any::<u64>()
        )
            .prop_map(|(name, bits)| name
                .chars()
                .enumerate()
                .map(|(i, c)| if bits >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                })
                .collect()),
        "[a-z][a-z0-9-]{0,12}",
        // Anything, CR/LF, colons and spaces included.
        "[ -~\r\n\t:]{0,16}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("chunked".to_string()),
        Just("close".to_string()),
        Just("keep-alive, upgrade".to_string()),
        "[0-9]{1,7}",
        "[ -~\r\n\t]{0,24}",
        any::<String>(),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(FORGED.as_bytes().to_vec()),
        Just(b"0\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![0u16, 100, 101, 103, 199, 200, 204, 304, 599, 600, 999]),
        any::<u16>(),
        200u16..600,
    ]
}

fn plugin_responses() -> impl Strategy<Value = PluginResponse> {
    (
        status(),
        prop::collection::vec((header_name(), header_value()), 0..8),
        body(),
    )
        .prop_map(|(status, headers, body)| PluginResponse {
            status,
            headers,
            body,
        })
}

/// Serves two pipelined GETs on one in-memory HTTP/1.1 connection: the first answered with
/// `response` converted, the second with [`SENTINEL`]; returns every byte written back.
fn wire_bytes(response: PluginResponse) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let calls = Arc::new(AtomicUsize::new(0));
        let first = Arc::new(std::sync::Mutex::new(Some(response)));
        let service = hyper::service::service_fn(move |_request| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let first = first.lock().unwrap().take();
            async move {
                let reply = match (n, first) {
                    (0, Some(r)) => plugin_response("p", r),
                    _ => axum::response::IntoResponse::into_response(SENTINEL),
                };
                Ok::<_, Infallible>(reply)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        let served = tokio::spawn(conn);
        client
            .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // Read until two responses are complete (the connection stays open: keep-alive).
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        while !two_responses(&out) {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut chunk));
            match read.await {
                Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        drop(client);
        let _ = served.await;
        out
    })
}

/// Whether `bytes` hold two whole responses.
fn two_responses(bytes: &[u8]) -> bool {
    parse_one(bytes)
        .ok()
        .is_some_and(|(_, _, _, rest)| parse_one(rest).is_ok())
}

/// One response parsed off the front of `bytes`: (status, headers, body, rest).
type Parsed<'a> = (u16, Vec<(String, String)>, &'a [u8], &'a [u8]);

fn parse_one(bytes: &[u8]) -> Result<Parsed<'_>, String> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err("a transfer-encoding on the wire".into());
    }
    let length = match lengths.as_slice() {
        [] if status == 204 || status == 304 => 0,
        [one] => one.parse::<usize>().map_err(|e| e.to_string())?,
        other => return Err(format!("content-length headers: {other:?}")),
    };
    let rest = &bytes[end + 4..];
    if rest.len() < length {
        return Err("body shorter than its content-length".into());
    }
    Ok((status, headers, &rest[..length], &rest[length..]))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 160,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_plugin_response_never_panics_nor_forges_a_frame(response in plugin_responses()) {
        let status = response.status;
        let body = response.body.clone();
        let converted = plugin_response("p", response.clone());
        let is_final = (200..=599).contains(&status);
        if is_final {
            prop_assert_eq!(converted.status().as_u16(), status);
        } else {
            prop_assert_eq!(converted.status(), StatusCode::BAD_GATEWAY);
        }
        for owned in HOST_OWNED_HEADERS {
            prop_assert!(converted.headers().get(*owned).is_none(), "{} kept", owned);
        }

        let wire = wire_bytes(response);
        let (first_status, headers, first_body, rest) = parse_one(&wire)
            .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(first_status, converted.status().as_u16());
        prop_assert!(!headers.iter().any(|(k, _)| k == "connection" || k == "upgrade"));
        if is_final && status != 204 && status != 304 {
            prop_assert_eq!(first_body, &body[..]);
        }
        let (second_status, _, second_body, rest) = parse_one(rest)
            .map_err(|e| TestCaseError::fail(format!("second response: {e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(second_status, 200);
        prop_assert_eq!(second_body, SENTINEL.as_bytes());
        prop_assert!(rest.is_empty(), "bytes after the second response: {:?}", rest);
    }
}
