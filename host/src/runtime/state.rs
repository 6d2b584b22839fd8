//! Per-request store data: WASI context, resource table, limits and the tenant binding.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::host_log::truncate_message;
use super::log_limit::{LogBucket, LogLimiter};
use super::manifest::Limits;
use super::streams::StreamSlots;
use super::tx_options::OpenTransactions;
use crate::pool::{Db, PolyMongo};

/// Bytes of stdout/stderr kept per request (the rest is dropped).
pub(crate) const OUTPUT_CAPTURE_BYTES: usize = 64 << 10;

/// What one plugin invocation may touch: fixed for the plugin version, shared by its requests.
#[derive(Debug)]
pub(crate) struct PluginScope {
    /// Plugin name, for logs.
    pub plugin: Arc<str>,
    /// Databases granted by the manifest besides the tenant's.
    pub grants: Vec<String>,
    /// The plugin's limits.
    pub limits: Limits,
    /// Whether the manifest allows server-side JavaScript (`allow_server_side_js`).
    pub allow_server_side_js: bool,
}

/// Sums the linear memories of one instance and refuses growth past the limit.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    used: usize,
    /// Set when a growth was refused, to report the failure precisely.
    pub exceeded: bool,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if self.used.saturating_add(growth) > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.used += growth;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of one request's `Store`.
pub(crate) struct RequestState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub scope: Arc<PluginScope>,
    pub manager: PolyMongo,
    /// The tenant's database: bound when a request takes the instance (an instance made
    /// ahead of its request has none while it is being instantiated).
    pub tenant: Option<Db>,
    /// The tenant's canonical name (what the plugin sees as `request.tenant`), for logs.
    pub tenant_name: Option<Arc<str>>,
    pub deadline: Instant,
    pub timed_out: bool,
    pub open_cursors: u32,
    pub result_bytes: usize,
    /// Host-side bytes held for the request now (cursor batches), against
    /// `limits.host_memory_bytes`.
    pub host_bytes: usize,
    /// The largest document the request has read from a cursor so far: how big the next
    /// cursor's batches are assumed to be when its batch size is derived from the budget.
    pub doc_size_hint: usize,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// Rate limits of plugin log lines (shared by the runtime's requests).
    pub logs: Arc<LogLimiter>,
    /// This instance's bucket of `logs`, found on its first log line (per tenant binding).
    pub log_bucket: Option<Arc<LogBucket>>,
    /// Open change streams per (plugin, database) (shared by the runtime's requests).
    pub streams: Arc<StreamSlots>,
    /// The request's open transactions (aborted when it ends).
    pub transactions: OpenTransactions,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl RequestState {
    /// The tenant's database, or an error for an import called during instantiation of an
    /// instance made ahead of its request.
    pub fn tenant_db(&self) -> wasmtime::Result<&Db> {
        self.tenant.as_ref().ok_or_else(|| {
            wasmtime::Error::msg(
                "the tenant database is bound when a request starts; it cannot be used while the plugin is being instantiated",
            )
        })
    }

    /// The tenant's name for logs (`-` before a request binds it).
    pub fn tenant_name(&self) -> &str {
        self.tenant_name.as_deref().unwrap_or("-")
    }

    /// Binds the instance to its request: the tenant's database and canonical name, and the
    /// request's deadline.
    pub fn bind(&mut self, tenant: Db, tenant_name: &str, deadline: Instant) {
        self.tenant = Some(tenant);
        self.tenant_name = Some(Arc::from(tenant_name));
        self.deadline = deadline;
        self.log_bucket = None;
    }

    /// Whether a plugin log line of `bytes` fits its (plugin, tenant) rate limit; a dropped
    /// line is counted. One map lookup per instance, then one short lock per line.
    pub fn admit_log_line(&mut self, bytes: usize) -> bool {
        if self.log_bucket.is_none() {
            let bucket = self.logs.bucket(&self.scope.plugin, self.tenant_name());
            self.log_bucket = Some(bucket);
        }
        match &self.log_bucket {
            Some(bucket) => self.logs.admit(bucket, bytes),
            None => false,
        }
    }

    /// Logs what the plugin wrote to stdout and stderr, tagged with plugin and tenant, under
    /// the same rate limit as the `log` import; then reports the drops of this instance's
    /// bucket (a summary line, at most one a second).
    pub fn flush_output(&mut self) {
        for (stream, bytes) in [
            ("stdout", self.stdout.contents()),
            ("stderr", self.stderr.contents()),
        ] {
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                let mut line = line.to_string();
                truncate_message(&mut line);
                if self.admit_log_line(line.len()) {
                    tracing::info!(plugin = %self.scope.plugin, tenant = self.tenant_name(), stream, "{line}");
                }
            }
        }
        if let Some(bucket) = &self.log_bucket {
            self.logs.report(bucket);
        }
    }
}
