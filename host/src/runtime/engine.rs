//! The wasmtime engine and the plugin runtime: one `Engine` (component model, epoch
//! interruption, pooling allocator) and one `Linker` (WASI p2 without filesystem or network,
//! plus the `polymongo:plugin` imports), shared by every plugin. Loading components is in
//! `load`, running requests in `invoke`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::TenantPlugin;
use super::compile_cache::CompileCache;
use super::error::LoadError;
use super::log_limit::{LogLimiter, LogLimits};
use super::manifest::Limits;
use super::recent::RecentComponents;
use super::scorer::ScorerLimits;
use super::state::RequestState;
use super::streams::StreamSlots;
use crate::pool::PolyMongo;

/// Settings of the plugin runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Limits of plugins without a manifest (and defaults for the keys a manifest leaves out).
    pub default_limits: Limits,
    /// Instances that may exist at once across all plugins (the pooling allocator's size).
    pub max_instances: u32,
    /// Largest linear memory any plugin may have, in bytes (a manifest may not exceed it).
    pub max_memory_bytes: usize,
    /// Epoch tick: the granularity of deadlines and of yielding to other tasks.
    pub epoch_tick: Duration,
    /// Folder for compiled components, keyed by content hash and engine compatibility, so a
    /// restart or a re-deploy of a known file skips compilation. `None` disables the cache.
    /// Must be writable only by the host (artifacts are loaded as trusted native code).
    pub cache_dir: Option<PathBuf>,
    /// Time one eviction-scoring call may take before the decision falls back.
    pub scorer_budget: Duration,
    /// Time an overrunning scoring call may go on (its decision already fell back) before it
    /// is stopped; a call that finishes within it keeps the scorer's learnt state.
    pub scorer_hard_limit: Duration,
    /// Latest events a scorer is given again after a trap, in a fresh instance.
    pub scorer_replay_events: usize,
    /// Rate limits of plugin log lines, per plugin and tenant.
    pub log_limits: LogLimits,
    /// Compiled components kept in memory by content hash after they were loaded, so that
    /// redeploying a version loaded a moment ago (a rollback) skips even the compile cache.
    /// 0 disables it.
    pub recent_components: usize,
    /// Plugins that may keep one fresh instance made ahead of their next request (each in
    /// its own never-used store), so requests skip instantiation. These instances occupy
    /// slots of the pooling allocator beyond `max_instances` and keep their memory resident.
    /// 0 disables it.
    pub ready_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            default_limits: Limits::default(),
            max_instances: 256,
            max_memory_bytes: 1 << 30,
            epoch_tick: Duration::from_millis(5),
            cache_dir: None,
            scorer_budget: Duration::from_millis(20),
            scorer_hard_limit: ScorerLimits::default().hard_limit,
            scorer_replay_events: ScorerLimits::default().replay_events,
            log_limits: LogLimits::default(),
            recent_components: 8,
            ready_instances: 16,
        }
    }
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(super) inner: Arc<RuntimeInner>,
}

/// What the clones of a [`Runtime`] share.
pub(super) struct RuntimeInner {
    pub(super) engine: Engine,
    pub(super) linker: Linker<RequestState>,
    pub(super) manager: PolyMongo,
    pub(super) config: RuntimeConfig,
    pub(super) instances: Arc<Semaphore>,
    /// The reserve of instances made ahead of requests (`ready_instances` permits).
    pub(super) ready_reserve: Arc<Semaphore>,
    pub(super) recent: RecentComponents,
    pub(super) cache: Option<CompileCache>,
    pub(super) stop_ticker: Arc<AtomicBool>,
    pub(super) logs: Arc<LogLimiter>,
    pub(super) streams: Arc<StreamSlots>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::SeqCst);
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(manager: PolyMongo, config: RuntimeConfig) -> Result<Self, LoadError> {
        let engine = new_engine(&config)?;
        let n = config.max_instances;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Compile(format!("linking WASI: {e:#}")))?;
        TenantPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| LoadError::Compile(format!("linking polymongo imports: {e:#}")))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), config.epoch_tick, stop_ticker.clone());
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                instances: Arc::new(Semaphore::new(n as usize)),
                ready_reserve: Arc::new(Semaphore::new(ready_reserve(&config))),
                recent: RecentComponents::new(config.recent_components),
                cache: config
                    .cache_dir
                    .clone()
                    .map(|dir| CompileCache::new(dir, &engine)),
                logs: Arc::new(LogLimiter::new(config.log_limits)),
                streams: Arc::default(),
                engine,
                linker,
                manager,
                config,
                stop_ticker,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The connection manager plugins run on.
    pub fn manager(&self) -> &PolyMongo {
        &self.inner.manager
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The limits of the active wasm scorer's calls.
    pub fn scorer_limits(&self) -> ScorerLimits {
        let c = &self.inner.config;
        ScorerLimits {
            budget: c.scorer_budget,
            hard_limit: c.scorer_hard_limit,
            replay_events: c.scorer_replay_events,
        }
    }

    /// The rate limiter of plugin log lines (drop counts per plugin).
    pub fn log_limiter(&self) -> &LogLimiter {
        &self.inner.logs
    }
}

/// Stores kept beyond requests' own: one ready instance per plugin that makes them ahead.
fn ready_reserve(config: &RuntimeConfig) -> usize {
    config.ready_instances as usize
}

/// The wasmtime engine polymongo runs components on (component model, epoch interruption,
/// pooling allocator sized by `config`). Components compiled by one engine load in another
/// built with the same settings; the compile cache relies on that.
pub fn new_engine(config: &RuntimeConfig) -> Result<Engine, LoadError> {
    let mut pooling = PoolingAllocationConfig::default();
    // Requests' instances plus the reserve of instances made ahead of them.
    let n = config
        .max_instances
        .saturating_add(ready_reserve(config) as u32);
    pooling
        .total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(8))
        .max_memory_size(config.max_memory_bytes)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_core_instances_per_component(32)
        // A fresh instance per request makes slot reuse the hot path. Resetting the pages a
        // request dirtied in place (found with Linux's PAGEMAP_SCAN where available, 6.7+)
        // instead of unmapping them avoids a page fault per touched page on the next request:
        // a small Rust plugin's instantiation drops from ~26 µs to ~8 µs. The cost is that a
        // used slot keeps up to 1 MiB of memory (64 KiB of tables) resident.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut wasm = wasmtime::Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        // Host calls of a plugin run on its fiber: the stack holds the guest's wasm frames
        // (at most `max_wasm_stack`) and then the host's, whose deepest part is the decoding
        // and encoding of plugin-sent BSON (one set of frames per nesting level, bounded by
        // `bson_scan::MAX_DEPTH_CEILING` before anything recurses).
        .max_wasm_stack(WASM_STACK_BYTES)
        .async_stack_size(WASM_STACK_BYTES + HOST_STACK_BYTES)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&wasm).map_err(|e| LoadError::Compile(format!("engine: {e:#}")))
}

/// Stack the guest's own frames may use (wasmtime's default).
const WASM_STACK_BYTES: usize = 512 << 10;
/// Stack left for the host's frames on a plugin's fiber, above the guest's: a document at the
/// depth ceiling (200 levels) decodes and encodes in well under half of it, even in a debug
/// build (the hostile_input tests run there at the ceiling).
const HOST_STACK_BYTES: usize = 2 << 20;

/// Starts a thread that advances `engine`'s epoch every `tick` until `stop` is set: deadlines
/// of tenant plugins and scorers are counted in these ticks.
pub fn spawn_epoch_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("polymongo-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the epoch ticker; plugin deadlines will not be enforced: {e}"
        );
    }
}
