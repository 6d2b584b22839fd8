//! Per-request store data: WASI context, resource table, limits and the tenant binding.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::manifest::Limits;
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
    pub tenant: Db,
    pub deadline: Instant,
    pub timed_out: bool,
    pub open_cursors: u32,
    pub result_bytes: usize,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
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
    /// Logs what the plugin wrote to stdout and stderr, tagged with plugin and tenant.
    pub fn flush_output(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::info!(plugin = %self.scope.plugin, tenant = self.tenant.name(), stream, "{line}");
            }
        }
    }
}
