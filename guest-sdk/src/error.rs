//! The SDK's error type.

use std::fmt;

use crate::raw::polymongo::plugin0_1_0::types as wit;

/// The result of a database operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation failed: the WIT `error` variant, plus failures to encode or decode
/// BSON and JSON on the plugin's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A malformed document, filter, pipeline, name or option.
    InvalidArgument(String),
    /// The plugin is not allowed to do this (another tenant's database, a forbidden stage).
    Denied(String),
    /// Something named does not exist (e.g. a closed cursor).
    NotFound(String),
    /// A unique index rejected a write.
    DuplicateKey(String),
    /// A cap was reached (open pools, open cursors).
    LimitReached(String),
    /// The request's deadline passed during the operation.
    Timeout(String),
    /// A result or argument exceeded the size cap; the payload is the cap in bytes.
    TooLarge(u64),
    /// The server cannot do this (e.g. change streams on a standalone server).
    Unsupported(String),
    /// The database server is unreachable.
    Unavailable(String),
    /// Any other server error.
    Server {
        /// The server's numeric code.
        code: i32,
        /// The server's symbolic name for the code, when it sent one.
        code_name: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A value could not be encoded to BSON, or a document returned by the host could not
    /// be decoded into the requested type.
    Bson(String),
    /// A value could not be encoded to or decoded from JSON.
    Json(String),
}

impl Error {
    /// The kebab-case name of the variant, as in the WIT (`"invalid-argument"`,
    /// `"duplicate-key"`, ...); `"bson"` and `"json"` for the SDK's own variants.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid-argument",
            Error::Denied(_) => "denied",
            Error::NotFound(_) => "not-found",
            Error::DuplicateKey(_) => "duplicate-key",
            Error::LimitReached(_) => "limit-reached",
            Error::Timeout(_) => "timeout",
            Error::TooLarge(_) => "too-large",
            Error::Unsupported(_) => "unsupported",
            Error::Unavailable(_) => "unavailable",
            Error::Server { .. } => "server",
            Error::Bson(_) => "bson",
            Error::Json(_) => "json",
        }
    }

    /// The HTTP status that fits the error: invalid-argument 400, denied 403, not-found
    /// 404, duplicate-key 409, too-large 413, limit-reached 429, unsupported 501,
    /// unavailable 503, timeout 504; server, bson and json 500.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::InvalidArgument(_) => 400,
            Error::Denied(_) => 403,
            Error::NotFound(_) => 404,
            Error::DuplicateKey(_) => 409,
            Error::TooLarge(_) => 413,
            Error::LimitReached(_) => 429,
            Error::Unsupported(_) => 501,
            Error::Unavailable(_) => 503,
            Error::Timeout(_) => 504,
            Error::Server { .. } | Error::Bson(_) | Error::Json(_) => 500,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::DuplicateKey(m) => write!(f, "duplicate key: {m}"),
            Error::LimitReached(m) => write!(f, "limit reached: {m}"),
            Error::Timeout(m) => write!(f, "timeout: {m}"),
            Error::TooLarge(cap) => write!(f, "too large: the cap is {cap} bytes"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Unavailable(m) => write!(f, "database unavailable: {m}"),
            Error::Server {
                code,
                code_name: Some(name),
                message,
            } => write!(f, "server error {code} ({name}): {message}"),
            Error::Server {
                code,
                code_name: None,
                message,
            } => write!(f, "server error {code}: {message}"),
            Error::Bson(m) => write!(f, "BSON: {m}"),
            Error::Json(m) => write!(f, "JSON: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::InvalidArgument(m) => Error::InvalidArgument(m),
            wit::Error::Denied(m) => Error::Denied(m),
            wit::Error::NotFound(m) => Error::NotFound(m),
            wit::Error::DuplicateKey(m) => Error::DuplicateKey(m),
            wit::Error::LimitReached(m) => Error::LimitReached(m),
            wit::Error::Timeout(m) => Error::Timeout(m),
            wit::Error::TooLarge(cap) => Error::TooLarge(cap),
            wit::Error::Unsupported(m) => Error::Unsupported(m),
            wit::Error::Unavailable(m) => Error::Unavailable(m),
            wit::Error::Server(s) => Error::Server {
                code: s.code,
                code_name: s.code_name,
                message: s.message,
            },
        }
    }
}

impl From<bson::ser::Error> for Error {
    fn from(e: bson::ser::Error) -> Self {
        Error::Bson(e.to_string())
    }
}

impl From<bson::de::Error> for Error {
    fn from(e: bson::de::Error) -> Self {
        Error::Bson(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_kinds() {
        let cases = [
            (Error::InvalidArgument("x".into()), 400, "invalid-argument"),
            (Error::Denied("x".into()), 403, "denied"),
            (Error::NotFound("x".into()), 404, "not-found"),
            (Error::DuplicateKey("x".into()), 409, "duplicate-key"),
            (Error::LimitReached("x".into()), 429, "limit-reached"),
            (Error::Timeout("x".into()), 504, "timeout"),
            (Error::TooLarge(10), 413, "too-large"),
            (Error::Unsupported("x".into()), 501, "unsupported"),
            (Error::Unavailable("x".into()), 503, "unavailable"),
            (
                Error::Server {
                    code: 2,
                    code_name: Some("BadValue".into()),
                    message: "m".into(),
                },
                500,
                "server",
            ),
            (Error::Bson("x".into()), 500, "bson"),
            (Error::Json("x".into()), 500, "json"),
        ];
        for (e, status, kind) in cases {
            assert_eq!(e.http_status(), status, "{e}");
            assert_eq!(e.kind(), kind);
        }
    }

    #[test]
    fn from_wit() {
        let e: Error = wit::Error::Server(wit::ServerError {
            code: 11000,
            code_name: None,
            message: "dup".into(),
        })
        .into();
        assert_eq!(e.to_string(), "server error 11000: dup");
        let e: Error = wit::Error::TooLarge(16).into();
        assert_eq!(e, Error::TooLarge(16));
    }
}
