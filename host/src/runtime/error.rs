//! Errors of loading and invoking plugins.

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin file: {0}")]
    Io(String),
    /// The bytes are not a valid component (corrupt, truncated, a core module, ...).
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    /// The component does not fit the `tenant-plugin` world (wrong exports or imports).
    #[error("component does not implement the polymongo:plugin/tenant-plugin world: {0}")]
    WrongWorld(String),
    /// The manifest beside it is invalid.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The plugin name (from the file name) is not usable in a URL path.
    #[error("invalid plugin name {0:?}: use letters, digits, '-' and '_'")]
    InvalidName(String),
    /// The plugin name is a route of the gateway (`admin`, `healthz`, `metrics`).
    #[error("plugin name {0:?} is taken by a route of the gateway; rename the file")]
    ReservedName(String),
}

/// Why a request to a plugin failed (the plugin itself never answered).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    /// The plugin trapped (panic, `unreachable`, out-of-bounds access, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin exceeded its deadline.
    #[error("plugin exceeded its deadline of {0} ms")]
    Timeout(u64),
    /// The plugin tried to use more memory than its limit.
    #[error("plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// Too many instances of the plugin are running.
    #[error("plugin is at its concurrency limit of {0} instances; retry later")]
    Busy(u32),
    /// The tenant already runs its share of the plugin's instances.
    #[error("this tenant already runs its share of {0} instances of the plugin; retry later")]
    TenantBusy(u32),
}

impl InvokeError {
    /// The HTTP status that best describes the failure.
    pub fn http_status(&self) -> u16 {
        match self {
            InvokeError::Trap(_) => 500,
            InvokeError::MemoryLimit(_) => 500,
            InvokeError::Timeout(_) => 504,
            InvokeError::Busy(_) => 503,
            InvokeError::TenantBusy(_) => 429,
        }
    }

    /// A short, stable name of the failure (for JSON bodies and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Trap(_) => "trap",
            InvokeError::Timeout(_) => "timeout",
            InvokeError::MemoryLimit(_) => "memory_limit",
            InvokeError::Busy(_) => "busy",
            InvokeError::TenantBusy(_) => "tenant_busy",
        }
    }
}

/// What a failed guest call's error says, in one line: the trap (`unreachable`, out of
/// bounds, ...) or the error's first line (the wasm backtrace after it is of no use in a
/// reply or a log).
pub(crate) fn trap_detail(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}
