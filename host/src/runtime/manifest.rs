//! The optional manifest next to a plugin (`NAME.toml` beside `NAME.wasm`): limits and grants.
//!
//! ```toml
//! # users.toml
//! databases = ["shared-catalog"]   # extra databases the plugin may open (besides its tenant's)
//!
//! [limits]
//! memory_mb = 64                   # all linear memories of one instance, summed
//! deadline_ms = 5000               # wall-clock time per request
//! max_result_kb = 4096             # bytes one database call may return
//! max_request_result_kb = 16384    # bytes all database calls of one request may return
//! max_open_cursors = 16            # cursors open at once per request
//! max_concurrent = 64              # instances running at once (more get 503)
//! host_memory_mb = 32              # host-side buffers one request may make the host hold
//! max_document_depth = 100         # nesting of documents the plugin stores (1..=200)
//! max_query_depth = 128            # nesting of filters, updates, pipeline stages (1..=200)
//! max_concurrent_per_tenant = 16   # of those, one tenant's at most (more get 429)
//! ```
//!
//! `allow_server_side_js = true` (top level, default false) lets the plugin send `$where`,
//! `$function`, `$accumulator` and JavaScript code values to the database server.
//!
//! `[[subscriptions]]` entries declare background consumers of change streams (see
//! `subscription`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::bson_scan::MAX_DEPTH_CEILING;
use super::error::LoadError;
use super::subscription::{self, Subscription};

/// A plugin's manifest; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Databases the plugin may open besides its tenant's.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Resource limits (defaults from the host configuration where missing).
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Whether the plugin may send server-side JavaScript (`$where`, `$function`,
    /// `$accumulator`, code values) to the database; denied unless set.
    #[serde(default)]
    pub allow_server_side_js: bool,
    /// Change-stream subscriptions the host consumes in the background (`[[subscriptions]]`).
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// Limits a manifest may set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Memory of one instance, in MiB.
    pub memory_mb: Option<u64>,
    /// Wall-clock deadline per request, in ms.
    pub deadline_ms: Option<u64>,
    /// Bytes one database call may return, in KiB.
    pub max_result_kb: Option<u64>,
    /// Bytes all database calls of one request may return, in KiB.
    pub max_request_result_kb: Option<u64>,
    /// Cursors open at once per request.
    pub max_open_cursors: Option<u32>,
    /// Change streams open at once per database (tenant), over all the plugin's requests.
    pub max_open_streams: Option<u32>,
    /// How long one change stream may stay open (and keep its pool watch-protected), in ms.
    pub stream_lifetime_ms: Option<u64>,
    /// Transactions open at once per request.
    pub max_open_transactions: Option<u32>,
    /// Instances running at once.
    pub max_concurrent: Option<u32>,
    /// Host-side buffers (cursor batches, decoded inputs) one request may hold, in MiB.
    pub host_memory_mb: Option<u64>,
    /// Deepest nesting of a document the plugin stores (insert, replacement).
    pub max_document_depth: Option<u32>,
    /// Deepest nesting of a filter, update, sort, projection, index keys or pipeline stage.
    pub max_query_depth: Option<u32>,
    /// Instances one tenant may run at once (default: a quarter of `max_concurrent`).
    pub max_concurrent_per_tenant: Option<u32>,
    /// Subscriptions (background consumers) one tenant may have running, over all plugins
    /// (default 4). A host setting (`[limits]` of the configuration): a manifest may not set it.
    pub max_subscriptions_per_tenant: Option<u32>,
}

impl LimitOverrides {
    /// Checks the values: none may be zero, depths at most [`MAX_DEPTH_CEILING`].
    pub fn check(&self) -> Result<(), String> {
        if self.memory_mb == Some(0)
            || self.deadline_ms == Some(0)
            || self.stream_lifetime_ms == Some(0)
            || self.max_concurrent == Some(0)
            || self.max_concurrent_per_tenant == Some(0)
            || self.host_memory_mb == Some(0)
            || self.max_document_depth == Some(0)
            || self.max_query_depth == Some(0)
        {
            return Err("limits must be greater than zero".into());
        }
        for (key, depth) in [
            ("max_document_depth", self.max_document_depth),
            ("max_query_depth", self.max_query_depth),
        ] {
            if depth.is_some_and(|d| d > MAX_DEPTH_CEILING) {
                return Err(format!("{key} may be at most {MAX_DEPTH_CEILING}"));
            }
        }
        Ok(())
    }
}

/// How long a change stream may stay open unless configured (`limits.stream_lifetime_ms`).
pub const DEFAULT_STREAM_LIFETIME: Duration = Duration::from_secs(300);

/// The limits a plugin runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory per instance (all memories summed).
    pub memory_bytes: usize,
    /// Wall-clock deadline per request.
    pub deadline: Duration,
    /// Bytes one database call may return.
    pub max_result_bytes: usize,
    /// Bytes all database calls of one request may return.
    pub max_request_result_bytes: usize,
    /// Cursors open at once per request.
    pub max_open_cursors: u32,
    /// Change streams open at once per database (tenant), over all the plugin's requests.
    pub max_open_streams: u32,
    /// How long one change stream may stay open; then it ends, its pool's watch protection
    /// with it, and the plugin resumes in a new one from its resume token.
    pub stream_lifetime: Duration,
    /// Transactions open at once per request (0 denies transactions).
    pub max_open_transactions: u32,
    /// Instances running at once.
    pub max_concurrent: u32,
    /// Host-side buffers (cursor batches, decoded inputs) one request may hold, in bytes.
    pub host_memory_bytes: usize,
    /// Deepest nesting of a document the plugin stores (MongoDB's own limit is 100).
    pub max_document_depth: u32,
    /// Deepest nesting of a filter, update, sort, projection, index keys or pipeline stage.
    pub max_query_depth: u32,
    /// Instances one tenant may run at once; `None`: [`Limits::tenant_share`]'s default.
    pub max_concurrent_per_tenant: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(5),
            max_result_bytes: 4 << 20,
            max_request_result_bytes: 16 << 20,
            max_open_cursors: 16,
            max_open_streams: 4,
            stream_lifetime: DEFAULT_STREAM_LIFETIME,
            max_open_transactions: 2,
            max_concurrent: 64,
            host_memory_bytes: 32 << 20,
            max_document_depth: 100,
            max_query_depth: 128,
            max_concurrent_per_tenant: None,
        }
    }
}

impl Limits {
    /// These limits with a manifest's overrides applied.
    pub fn with_overrides(self, o: &LimitOverrides) -> Self {
        let kb = |v: u64| usize::try_from(v.saturating_mul(1024)).unwrap_or(usize::MAX);
        Self {
            memory_bytes: o
                .memory_mb
                .map(|v| usize::try_from(v.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
                .unwrap_or(self.memory_bytes),
            deadline: o
                .deadline_ms
                .map(Duration::from_millis)
                .unwrap_or(self.deadline),
            max_result_bytes: o.max_result_kb.map(kb).unwrap_or(self.max_result_bytes),
            max_request_result_bytes: o
                .max_request_result_kb
                .map(kb)
                .unwrap_or(self.max_request_result_bytes),
            max_open_cursors: o.max_open_cursors.unwrap_or(self.max_open_cursors),
            max_open_streams: o.max_open_streams.unwrap_or(self.max_open_streams),
            stream_lifetime: o
                .stream_lifetime_ms
                .map(Duration::from_millis)
                .unwrap_or(self.stream_lifetime),
            max_open_transactions: o
                .max_open_transactions
                .unwrap_or(self.max_open_transactions),
            max_concurrent: o.max_concurrent.unwrap_or(self.max_concurrent),
            host_memory_bytes: o
                .host_memory_mb
                .map(|v| usize::try_from(v.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
                .unwrap_or(self.host_memory_bytes),
            max_document_depth: o
                .max_document_depth
                .map_or(self.max_document_depth, |d| d.min(MAX_DEPTH_CEILING)),
            max_query_depth: o
                .max_query_depth
                .map_or(self.max_query_depth, |d| d.min(MAX_DEPTH_CEILING)),
            max_concurrent_per_tenant: o
                .max_concurrent_per_tenant
                .or(self.max_concurrent_per_tenant),
        }
    }

    /// Instances of the plugin one tenant may run at once: `max_concurrent_per_tenant`, or
    /// by default a quarter of `max_concurrent` (rounded up), never more than
    /// `max_concurrent` nor less than 1. With the default, at least four tenants can always
    /// run side by side however many requests one of them sends.
    pub fn tenant_share(&self) -> u32 {
        self.max_concurrent_per_tenant
            .unwrap_or_else(|| self.max_concurrent.div_ceil(4))
            .clamp(1, self.max_concurrent.max(1))
    }
}

impl Manifest {
    /// Reads `NAME.toml` beside `wasm_path`, if present.
    pub fn load_beside(wasm_path: &Path) -> Result<Option<Self>, LoadError> {
        let path = wasm_path.with_extension("toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .map_err(|e| LoadError::Manifest(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LoadError::Manifest(format!("{}: {e}", path.display()))),
        }
    }

    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        for db in &manifest.databases {
            crate::pool::name::validate_syntax(db).map_err(|e| e.to_string())?;
        }
        manifest.limits.check()?;
        if manifest.limits.max_subscriptions_per_tenant.is_some() {
            return Err(
                "limits.max_subscriptions_per_tenant is a host setting (it caps a tenant's \
                 subscriptions over all plugins); set it in the host configuration"
                    .into(),
            );
        }
        subscription::check_all(&manifest.subscriptions)?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grants_and_overrides() {
        let m = Manifest::parse(
            "databases = [\"catalog\"]\n[limits]\nmemory_mb = 8\ndeadline_ms = 250\nmax_open_cursors = 2\n",
        )
        .unwrap();
        assert_eq!(m.databases, ["catalog"]);
        let limits = Limits::default().with_overrides(&m.limits);
        assert_eq!(limits.memory_bytes, 8 << 20);
        assert_eq!(limits.deadline, Duration::from_millis(250));
        assert_eq!(limits.max_open_cursors, 2);
        assert_eq!(limits.stream_lifetime, DEFAULT_STREAM_LIFETIME);
        let m = Manifest::parse("[limits]\nstream_lifetime_ms = 1500\n").unwrap();
        let limits = Limits::default().with_overrides(&m.limits);
        assert_eq!(limits.stream_lifetime, Duration::from_millis(1500));
        assert_eq!(limits.max_result_bytes, Limits::default().max_result_bytes);
    }

    #[test]
    fn rejects_unknown_keys_bad_names_and_zero_limits() {
        assert!(Manifest::parse("colour = 1").is_err());
        assert!(Manifest::parse("databases = [\"a/b\"]").is_err());
        assert!(Manifest::parse("[limits]\ndeadline_ms = 0").is_err());
        assert!(Manifest::parse("[limits]\nstream_lifetime_ms = 0").is_err());
        assert!(Manifest::parse("[limits]\nmax_query_depth = 201").is_err());
        assert!(Manifest::parse("[limits]\nhost_memory_mb = 0").is_err());
        assert!(Manifest::parse("[limits]\nmax_concurrent_per_tenant = 0").is_err());
    }

    #[test]
    fn server_side_js_is_denied_unless_granted() {
        assert!(!Manifest::parse("").unwrap().allow_server_side_js);
        assert!(
            Manifest::parse("allow_server_side_js = true")
                .unwrap()
                .allow_server_side_js
        );
        let m = Manifest::parse("[limits]\nhost_memory_mb = 4\nmax_query_depth = 20\n").unwrap();
        let limits = Limits::default().with_overrides(&m.limits);
        assert_eq!(limits.host_memory_bytes, 4 << 20);
        assert_eq!(limits.max_query_depth, 20);
        assert_eq!(limits.max_document_depth, 100);
    }

    #[test]
    fn a_tenant_gets_a_quarter_of_the_concurrency_by_default() {
        let with = |max: u32, per: Option<u32>| Limits {
            max_concurrent: max,
            max_concurrent_per_tenant: per,
            ..Limits::default()
        };
        assert_eq!(Limits::default().tenant_share(), 16);
        assert_eq!(with(4, None).tenant_share(), 1);
        assert_eq!(with(6, None).tenant_share(), 2);
        assert_eq!(with(1, None).tenant_share(), 1);
        assert_eq!(with(8, Some(3)).tenant_share(), 3);
        assert_eq!(with(8, Some(100)).tenant_share(), 8);
    }
}
