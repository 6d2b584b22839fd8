//! HTTP requests and responses.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raw::exports::polymongo::plugin0_1_0::handler as wit;
use crate::Error;

/// An HTTP request routed to the plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, upper case (`GET`, `POST`, ...).
    pub method: String,
    /// The path below the plugin's prefix, starting with `/` (e.g. `/users/42`).
    pub path: String,
    /// The raw query string without `?` (may be empty).
    pub query: String,
    /// Request headers (names lower case).
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// The tenant this request is for; [`Db::tenant`](crate::Db::tenant) is its database.
    pub tenant: String,
}

impl From<wit::Request> for Request {
    fn from(r: wit::Request) -> Self {
        Request {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            body: r.body,
            tenant: r.tenant,
        }
    }
}

impl Request {
    /// Parses the body as JSON into `T`. On failure returns a ready 400 response
    /// `{"error": "invalid JSON body: ..."}`, so handlers can write
    /// `let x: T = match req.json() { Ok(x) => x, Err(resp) => return resp };`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Response> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Response::error(400, format!("invalid JSON body: {e}")))
    }

    /// The body as UTF-8 text (invalid sequences replaced by U+FFFD).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of the first query parameter called `name`, decoded as
    /// `application/x-www-form-urlencoded` (`+` is a space, `%XX` escapes; malformed
    /// escapes are kept literally, invalid UTF-8 becomes U+FFFD).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every query parameter, decoded, in order (repeated names appear repeatedly; a
    /// parameter without `=` has an empty value; empty pairs are skipped).
    pub fn query_params(&self) -> Vec<(String, String)> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (form_decode(k), form_decode(v)),
                None => (form_decode(pair), String::new()),
            })
            .collect()
    }

    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub(crate) fn form_decode(s: &str) -> String {
    percent_decode(s, true)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); malformed escapes are
/// kept as they are, invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The plugin's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no headers and no body (e.g. `204 No Content`).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response with `status` and `value` serialized as JSON
    /// (`content-type: application/json`). If `value` cannot be serialized, a 500 error
    /// response instead.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            },
            Err(e) => Response::error(500, format!("cannot encode the response as JSON: {e}")),
        }
    }

    /// A response with `status` and a plain-text body
    /// (`content-type: text/plain; charset=utf-8`).
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: text.into().into_bytes(),
        }
    }

    /// A JSON error response: `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `{"error": "<the error's Display>"}` with [`Error::http_status`].
impl From<Error> for Response {
    fn from(e: Error) -> Response {
        Response::error(e.http_status(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str) -> Request {
        Request {
            query: query.into(),
            ..Default::default()
        }
    }

    #[test]
    fn query_decoding() {
        let r = req("name=Ann+Lee&email=a%40b.c&x&=v&&name=second&bad=%zz%4&u=%C3%A9");
        assert_eq!(r.query_param("name").as_deref(), Some("Ann Lee"));
        assert_eq!(r.query_param("email").as_deref(), Some("a@b.c"));
        assert_eq!(r.query_param("x").as_deref(), Some(""));
        assert_eq!(r.query_param("").as_deref(), Some("v"));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz%4"));
        assert_eq!(r.query_param("u").as_deref(), Some("é"));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(req("").query_params(), vec![]);
        assert_eq!(req("a=%FF").query_param("a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(req("a=%").query_param("a").as_deref(), Some("%"));
        assert_eq!(req("a=%4").query_param("a").as_deref(), Some("%4"));
    }

    #[test]
    fn headers_case_insensitive() {
        let r = Request {
            headers: vec![("content-type".into(), "application/json".into())],
            ..Default::default()
        };
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.header("accept"), None);
    }

    #[test]
    fn json_body() {
        #[derive(serde::Deserialize, Debug)]
        struct X {
            a: u32,
        }
        let mut r = Request {
            body: br#"{"a": 3}"#.to_vec(),
            ..Default::default()
        };
        assert_eq!(r.json::<X>().unwrap().a, 3);
        r.body = b"{".to_vec();
        let resp = r.json::<X>().unwrap_err();
        assert_eq!(resp.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert!(v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"));
    }

    #[test]
    fn responses() {
        let r = Response::error(404, "nope");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, br#"{"error":"nope"}"#);
        let r: Response = Error::DuplicateKey("email".into()).into();
        assert_eq!(r.status, 409);
        assert_eq!(Response::empty(204).body, b"");
        assert_eq!(Response::text(200, "ok").body, b"ok");
    }
}
