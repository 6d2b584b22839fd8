//! Turning a plugin's response into an HTTP response: the host owns the framing.
//!
//! A plugin chooses its status, headers and body, but never how the response is delimited on
//! the connection: a forged `content-length: 0` followed by a body that is itself an HTTP
//! response would otherwise be read by the client as the answer to its NEXT request on the
//! same keep-alive connection, and a too-large `content-length` would swallow that answer.
//! So every hop-by-hop and framing header the plugin sets is dropped (the server writes its
//! own `content-length` from the real body), and statuses outside `200..=599` (a `101` would
//! switch protocols, a `1xx` is not a final answer, `600..` is not HTTP) become a 502.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::reply;

/// Headers that describe the connection or the message's framing, never the content: only
/// the host sets them (RFC 9110 §7.6.1 hop-by-hop fields, plus `content-length` and the
/// upgrade-related ones).
pub const HOST_OWNED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a plugin may set the response header `name` (compared case-insensitively).
pub fn plugin_may_set(name: &str) -> bool {
    !HOST_OWNED_HEADERS
        .iter()
        .any(|owned| owned.eq_ignore_ascii_case(name))
}

/// Whether `status` may be a plugin's final answer: `200..=599`.
pub fn is_final_status(status: u16) -> bool {
    (200..=599).contains(&status)
}

/// The HTTP response for a plugin's `response`: a 502 when its status is not a final one;
/// otherwise its status, the headers it may set (invalid names or values, e.g. with CR/LF,
/// are dropped and logged) and its body, framed by the host.
pub fn plugin_response(plugin: &str, response: crate::runtime::Response) -> Response {
    let status = match StatusCode::from_u16(response.status) {
        Ok(status) if is_final_status(response.status) => status,
        _ => {
            return reply::error(
                StatusCode::BAD_GATEWAY,
                "invalid_response",
                format!(
                    "plugin {plugin} answered with invalid status {}",
                    response.status
                ),
            )
        }
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &response.headers {
        if !plugin_may_set(k) {
            tracing::warn!(plugin, header = %k, "dropping a framing header set by the plugin");
            continue;
        }
        match (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(k), Ok(v)) => {
                headers.append(k, v);
            }
            _ => {
                tracing::warn!(plugin, header = %k, "dropping an invalid response header from the plugin")
            }
        }
    }
    // A plain body: the plugin's own headers decide the content type (a `Vec<u8>` would add
    // `application/octet-stream`, even to a 204).
    (status, headers, axum::body::Body::from(response.body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Response as PluginResponse;

    fn respond(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
        plugin_response(
            "t",
            PluginResponse {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: body.to_vec(),
            },
        )
    }

    #[test]
    fn framing_headers_of_any_case_are_dropped_and_others_kept() {
        let r = respond(
            200,
            &[
                ("Content-Length", "0"),
                ("TRANSFER-ENCODING", "chunked"),
                ("connection", "keep-alive, upgrade"),
                ("Upgrade", "websocket"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
                ("content-type", "text/plain"),
            ],
            b"hello",
        );
        assert_eq!(r.status(), StatusCode::OK);
        for owned in HOST_OWNED_HEADERS {
            assert!(r.headers().get(*owned).is_none(), "{owned} kept");
        }
        assert_eq!(r.headers()["x-kept"], "yes");
        assert_eq!(r.headers()["content-type"], "text/plain");
    }

    #[test]
    fn statuses_outside_200_to_599_become_502() {
        for status in [0, 100, 101, 103, 199, 600, 999, 1000, u16::MAX] {
            assert_eq!(
                respond(status, &[], b"x").status(),
                StatusCode::BAD_GATEWAY,
                "{status}"
            );
        }
        for status in [200, 204, 302, 404, 599] {
            assert_eq!(respond(status, &[], b"").status().as_u16(), status);
        }
    }
}
