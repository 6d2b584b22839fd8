//! The wasmtime engine and the per-request invocation of tenant plugins.
//!
//! One `Engine` (component model, epoch interruption, pooling allocator) and one `Linker`
//! (WASI p2 without filesystem or network, plus the `polymongo:plugin` imports). Each plugin
//! version is compiled once into an `InstancePre`; each request gets a fresh `Store`, so no
//! state leaks between requests or tenants.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::tenant::exports::polymongo::plugin0_1_0::handler::{Request, Response};
use super::bindings::{TenantPlugin, TenantPluginPre};
use super::compile_cache::CompileCache;
use super::content_hash::{ContentHash, Probe};
use super::error::{InvokeError, LoadError};
use super::fairness::TenantShares;
use super::log_limit::{LogLimiter, LogLimits};
use super::manifest::{Limits, Manifest};
use super::recent::RecentComponents;
use super::scorer::{ScorerComponent, ScorerLimits};
use super::state::{MemoryLimiter, PluginScope, RequestState, OUTPUT_CAPTURE_BYTES};
use super::streams::StreamSlots;
use super::warm::{ReadyInstance, ReadySlot};
use crate::pool::PolyMongo;

/// What [`Runtime::invoke_timed`] measured of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvokeTimings {
    /// Time the request waited for the component to be instantiated in a fresh store (`None`
    /// if it took an instance made ahead, or failed before or during instantiation).
    pub instantiate: Option<Duration>,
    /// Whether the request took an instance made ahead of it (see `ready_instances`).
    pub ready: bool,
}

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
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<RequestState>,
    manager: PolyMongo,
    config: RuntimeConfig,
    instances: Arc<Semaphore>,
    /// The reserve of instances made ahead of requests (`ready_instances` permits).
    ready_reserve: Arc<Semaphore>,
    recent: RecentComponents,
    cache: Option<CompileCache>,
    stop_ticker: Arc<AtomicBool>,
    logs: Arc<LogLimiter>,
    streams: Arc<StreamSlots>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::SeqCst);
    }
}

/// One compiled version of a tenant plugin, ready to instantiate.
pub struct Plugin {
    name: Arc<str>,
    version: String,
    size: usize,
    loaded_at: SystemTime,
    scope: Arc<PluginScope>,
    pre: TenantPluginPre<RequestState>,
    permits: Arc<Semaphore>,
    /// Per-tenant shares of `permits` (`max_concurrent_per_tenant`).
    tenant_shares: Arc<TenantShares>,
    ready: Arc<ReadySlot>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin name (its file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version: hex BLAKE3 of the component bytes.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Size of the component in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The limits it runs under.
    pub fn limits(&self) -> Limits {
        self.scope.limits
    }

    /// Databases its manifest grants besides the tenant's.
    pub fn grants(&self) -> &[String] {
        &self.scope.grants
    }

    /// Requests running in it now.
    pub fn in_flight(&self) -> u32 {
        self.scope.limits.max_concurrent - self.permits.available_permits() as u32
    }

    /// Instances database `tenant_db` runs now (its share is [`Limits::tenant_share`]).
    pub fn tenant_in_flight(&self, tenant_db: &str) -> u32 {
        self.tenant_shares.running(tenant_db)
    }

    /// Whether an instance made ahead of the next request is ready.
    pub fn has_ready_instance(&self) -> bool {
        self.ready.is_ready()
    }
}

/// Where the bytes of a component to load come from.
enum Source<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file the caller already hashed.
    File {
        path: &'a Path,
        file: &'a HashedFile,
    },
}

/// A component file hashed by [`Runtime::hash_file`]: its content hash and size, and the
/// compiled component if a compile-cache hint let it be loaded meanwhile.
pub struct HashedFile {
    /// Hash of the bytes.
    pub hash: ContentHash,
    /// Size in bytes.
    pub size: u64,
    probe: Option<Probe>,
    preloaded: Option<Component>,
}

impl HashedFile {
    /// Whether a compile-cache hint let the component be loaded while the file was hashed.
    pub fn preloaded(&self) -> bool {
        self.preloaded.is_some()
    }
}

impl std::fmt::Debug for HashedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedFile")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("preloaded", &self.preloaded.is_some())
            .finish_non_exhaustive()
    }
}

/// A compiled component with the hash and size of the bytes it was compiled from.
struct Compiled {
    component: Component,
    hash: ContentHash,
    size: usize,
}

/// A component loaded from the plugins folder: its kind is told by its exports.
#[derive(Debug)]
pub enum Loaded {
    /// Exports `handler`: a tenant plugin.
    Tenant(Plugin),
    /// Exports `scoring`: an eviction scorer.
    Scorer(ScorerComponent),
}

/// Whether `name` can be a plugin name (it becomes the first URL path segment).
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name != "admin"
        && name != "healthz"
        && name != "metrics"
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

    /// Loads `path` (and the manifest beside it) as component `name`, hashing and compiling
    /// off the async runtime.
    pub async fn load_file(&self, name: &str, path: &Path) -> Result<Loaded, LoadError> {
        let manifest = Manifest::load_beside(path)?;
        let this = self.clone();
        let name = name.to_string();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let file = this
                .hash_file(&path)
                .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
            this.load_file_hashed(&name, &path, &file, manifest)
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compile task failed: {e}")))?
    }

    /// Compiles `bytes` (or takes it from the compile cache) as component `name` and checks
    /// it implements the `tenant-plugin` or the `scorer` world. CPU-heavy on a cache miss:
    /// call from a blocking context.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        self.load(name, Source::Bytes(bytes), manifest)
    }

    /// Hashes the component file at `path` (see [`ContentHash::of_file`]). When the compile
    /// cache has a hint for it (a file of the same size, head and tail loaded before), the
    /// artifact it names is mapped on another thread meanwhile, and kept if the hash agrees.
    /// Blocking.
    pub fn hash_file(&self, path: &Path) -> std::io::Result<HashedFile> {
        let Some(cache) = &self.inner.cache else {
            let (hash, size) = ContentHash::of_file(path)?;
            return Ok(HashedFile {
                hash,
                size,
                probe: None,
                preloaded: None,
            });
        };
        let probe = Probe::of_file(path)?;
        let candidate = cache
            .hint(&probe)
            .filter(|hash| self.inner.recent.get(hash).is_none());
        let ((hash, size), preloaded) = match candidate {
            None => (ContentHash::of_file(path)?, None),
            Some(candidate) => std::thread::scope(|scope| {
                // Without a thread to spare, the hint is simply not used.
                let loading = std::thread::Builder::new()
                    .name("polymongo-preload".into())
                    .spawn_scoped(scope, || cache.load(&candidate));
                let hashed = ContentHash::of_file(path);
                let preloaded = loading.ok().and_then(|l| l.join().ok().flatten());
                hashed.map(|(hash, size)| ((hash, size), preloaded.filter(|_| hash == candidate)))
            })?,
        };
        Ok(HashedFile {
            hash,
            size,
            probe: Some(probe),
            preloaded,
        })
    }

    /// Loads the component file at `path`, hashed by [`hash_file`](Self::hash_file), as
    /// component `name`. When the component is known (preloaded, recently loaded or in the
    /// compile cache) the file is not read again; otherwise it is read, re-hashed (the version
    /// is what was compiled, even if the file changed since it was hashed) and compiled.
    /// Blocking.
    pub fn load_file_hashed(
        &self,
        name: &str,
        path: &Path,
        file: &HashedFile,
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        self.load(name, Source::File { path, file }, manifest)
    }

    fn load(
        &self,
        name: &str,
        source: Source<'_>,
        manifest: Option<Manifest>,
    ) -> Result<Loaded, LoadError> {
        if !valid_plugin_name(name) {
            return Err(LoadError::InvalidName(name.to_string()));
        }
        let manifest = manifest.unwrap_or_default();
        for grant in &manifest.databases {
            self.inner
                .manager
                .namespace()
                .check_outside("granted database", grant)
                .map_err(|e| LoadError::Manifest(e.to_string()))?;
        }
        let limits = self
            .inner
            .config
            .default_limits
            .with_overrides(&manifest.limits);
        if limits.memory_bytes > self.inner.config.max_memory_bytes {
            return Err(LoadError::Manifest(format!(
                "memory limit {} MiB exceeds the host's maximum of {} MiB",
                limits.memory_bytes >> 20,
                self.inner.config.max_memory_bytes >> 20
            )));
        }
        let Compiled {
            component,
            hash,
            size,
        } = self.compile(source)?;
        let as_tenant = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{e:#}"))
            .and_then(|pre| TenantPluginPre::new(pre).map_err(|e| format!("{e:#}")));
        let tenant_error = match as_tenant {
            Ok(pre) => {
                return Ok(Loaded::Tenant(Plugin {
                    name: Arc::from(name),
                    version: hash.to_hex(),
                    size,
                    loaded_at: SystemTime::now(),
                    scope: Arc::new(PluginScope {
                        plugin: Arc::from(name),
                        grants: manifest.databases,
                        limits,
                        allow_server_side_js: manifest.allow_server_side_js,
                    }),
                    pre,
                    permits: Arc::new(Semaphore::new(limits.max_concurrent as usize)),
                    tenant_shares: Arc::default(),
                    ready: Arc::default(),
                }))
            }
            Err(e) => e,
        };
        match ScorerComponent::new(&self.inner.engine, name, hash, size, &component) {
            Ok(scorer) => Ok(Loaded::Scorer(scorer)),
            Err(scorer_error) => Err(LoadError::WrongWorld(format!(
                "neither a tenant plugin ({tenant_error}) nor a scorer ({scorer_error})"
            ))),
        }
    }

    /// Compiles a component, or takes the one compiled earlier from the same bytes, and
    /// records it as the most recently loaded.
    fn compile(&self, source: Source<'_>) -> Result<Compiled, LoadError> {
        let compiled = self.find_or_compile(source)?;
        self.inner.recent.insert(compiled.hash, &compiled.component);
        Ok(compiled)
    }

    fn find_or_compile(&self, source: Source<'_>) -> Result<Compiled, LoadError> {
        if let Source::File { file, .. } = source {
            let known = file.preloaded.clone().or_else(|| self.known(&file.hash));
            if let Some(component) = known {
                self.remember_hint(file);
                return Ok(Compiled {
                    component,
                    hash: file.hash,
                    size: file.size as usize,
                });
            }
        }
        let read;
        let (bytes, hash) = match source {
            Source::Bytes(bytes) => (bytes, ContentHash::of(bytes)),
            Source::File { path, file } => {
                read = std::fs::read(path)
                    .map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
                let hash = ContentHash::of(&read);
                // The file may have changed since it was hashed: the hint is only true of
                // the bytes hashed then.
                if hash == file.hash {
                    self.remember_hint(file);
                }
                (&read[..], hash)
            }
        };
        if let Some(component) = self.known(&hash) {
            return Ok(Compiled {
                component,
                hash,
                size: bytes.len(),
            });
        }
        let component = Component::from_binary(&self.inner.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.inner.cache {
            cache.store(&hash, &component);
        }
        Ok(Compiled {
            component,
            hash,
            size: bytes.len(),
        })
    }

    /// Records in the compile cache which content a file with `file`'s probe has.
    fn remember_hint(&self, file: &HashedFile) {
        if let (Some(cache), Some(probe)) = (&self.inner.cache, &file.probe) {
            cache.set_hint(probe, &file.hash);
        }
    }

    /// A component compiled earlier from bytes with `hash`: one of the recently loaded, or
    /// an artifact of the compile cache.
    fn known(&self, hash: &ContentHash) -> Option<Component> {
        self.inner
            .recent
            .get(hash)
            .or_else(|| self.inner.cache.as_ref()?.load(hash))
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

    /// Runs one request in a fresh instance of `plugin`, with the database scoped to
    /// `request.tenant`. The tenant name must already be validated.
    pub async fn invoke(&self, plugin: &Plugin, request: Request) -> Result<Response, InvokeError> {
        self.invoke_timed(plugin, request).await.0
    }

    /// [`invoke`](Self::invoke), also reporting how long instantiation took (for metrics).
    /// Behaves exactly like `invoke`; the timings are only observed.
    pub async fn invoke_timed(
        &self,
        plugin: &Plugin,
        request: Request,
    ) -> (Result<Response, InvokeError>, InvokeTimings) {
        let mut timings = InvokeTimings::default();
        let result = self.invoke_inner(plugin, request, &mut timings).await;
        (result, timings)
    }

    async fn invoke_inner(
        &self,
        plugin: &Plugin,
        request: Request,
        timings: &mut InvokeTimings,
    ) -> Result<Response, InvokeError> {
        let limits = plugin.scope.limits;
        let tenant =
            self.inner.manager.tenant_db(&request.tenant).map_err(|e| {
                InvokeError::Instantiate(format!("tenant {:?}: {e}", request.tenant))
            })?;
        // The tenant's share first: a tenant over its share does not take a plugin slot.
        let share = limits.tenant_share();
        let _tenant_slot = plugin
            .tenant_shares
            .try_acquire(tenant.name(), share)
            .ok_or(InvokeError::TenantBusy(share))?;
        let _plugin_permit = plugin
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Busy(limits.max_concurrent))?;
        let instance_permit = self
            .inner
            .instances
            .clone()
            .try_acquire_owned()
            .map_err(|_| InvokeError::Busy(self.inner.config.max_instances))?;
        let deadline = Instant::now() + limits.deadline;
        // The epoch callback stops guest code at the deadline; the timeout bounds the rest
        // (instantiation, host calls) with a little grace.
        let bound = limits.deadline + HOST_GRACE;

        let ready = plugin.ready.take();
        let (reserve, mut store, outcome) = match ready {
            Some(ReadyInstance {
                mut store,
                instance,
                reserve,
            }) => {
                timings.ready = true;
                store.data_mut().bind(tenant, &request.tenant, deadline);
                store.set_epoch_deadline(1);
                let call = instance
                    .polymongo_plugin_handler()
                    .call_handle(&mut store, &request);
                let outcome = tokio::time::timeout(bound, call).await;
                (Some(reserve), store, outcome)
            }
            None => {
                let mut store = self.new_store(&plugin.scope, deadline);
                store.data_mut().bind(tenant, &request.tenant, deadline);
                let run = async {
                    // Timing hook for metrics: measures instantiation only, changes nothing.
                    let started = Instant::now();
                    let instance = plugin.pre.instantiate_async(&mut store).await?;
                    timings.instantiate = Some(started.elapsed());
                    instance
                        .polymongo_plugin_handler()
                        .call_handle(&mut store, &request)
                        .await
                };
                let outcome = tokio::time::timeout(bound, run).await;
                (None, store, outcome)
            }
        };
        store.data_mut().flush_output();
        let state = store.data();
        let result = Self::outcome(plugin, &request, state, outcome);
        // What the plugin held (cursors, database handles and their leases) is released with
        // the request, whatever happens to the store.
        store.data_mut().table = ResourceTable::new();
        // The store goes before the permits that account for its pooling slot: in the task
        // making the next instance if there is one (off the request's path), or here.
        let used = UsedStore {
            _store: store,
            _reserve: reserve,
            _instance: instance_permit,
        };
        if plugin.ready.worth_making() {
            self.make_ready(plugin, used);
        }
        result
    }

    fn outcome(
        plugin: &Plugin,
        request: &Request,
        state: &RequestState,
        outcome: Result<wasmtime::Result<Response>, tokio::time::error::Elapsed>,
    ) -> Result<Response, InvokeError> {
        let limits = plugin.scope.limits;
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Err(_) => Err(InvokeError::Timeout(limits.deadline.as_millis() as u64)),
            Ok(Err(_)) if state.timed_out => {
                Err(InvokeError::Timeout(limits.deadline.as_millis() as u64))
            }
            Ok(Err(_)) if state.limiter.exceeded => {
                Err(InvokeError::MemoryLimit(limits.memory_bytes))
            }
            Ok(Err(e)) => {
                let detail = match e.downcast_ref::<Trap>() {
                    Some(trap) => trap.to_string(),
                    None => format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                };
                tracing::warn!(plugin = %plugin.name, tenant = %request.tenant, error = %format!("{e:#}"), "plugin failed");
                Err(InvokeError::Trap(detail))
            }
        }
    }

    /// A fresh store for one instance of a plugin with `scope`: WASI without filesystem or
    /// network, output captured, memory limiter, and the epoch callback that stops guest
    /// code at `deadline`.
    fn new_store(&self, scope: &Arc<PluginScope>, deadline: Instant) -> Store<RequestState> {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPTURE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = RequestState {
            wasi,
            table: Default::default(),
            limiter: MemoryLimiter::new(scope.limits.memory_bytes),
            scope: scope.clone(),
            manager: self.inner.manager.clone(),
            tenant: None,
            tenant_name: None,
            deadline,
            timed_out: false,
            open_cursors: 0,
            result_bytes: 0,
            host_bytes: 0,
            doc_size_hint: 0,
            stdout,
            stderr,
            logs: self.inner.logs.clone(),
            log_bucket: None,
            streams: self.inner.streams.clone(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Starts a task making `plugin`'s next ready instance, unless one is ready or being
    /// made, the reserve is full, or making one failed before. The task first tears down
    /// `used`, the store of the request just done (dropped here if no task starts).
    fn make_ready(&self, plugin: &Plugin, used: UsedStore) {
        let Some(claim) = plugin.ready.claim() else {
            return;
        };
        let Ok(reserve) = self.inner.ready_reserve.clone().try_acquire_owned() else {
            return;
        };
        let (this, pre, scope) = (self.clone(), plugin.pre.clone(), plugin.scope.clone());
        tokio::spawn(async move {
            drop(used);
            let limits = scope.limits;
            let mut store = this.new_store(&scope, Instant::now() + limits.deadline);
            let made = tokio::time::timeout(
                limits.deadline + HOST_GRACE,
                pre.instantiate_async(&mut store),
            )
            .await;
            store.data_mut().flush_output();
            match made {
                Ok(Ok(instance)) => claim.fill(ReadyInstance {
                    store,
                    instance,
                    reserve,
                }),
                Ok(Err(e)) => {
                    tracing::info!(plugin = %scope.plugin, error = %format!("{e:#}"), "cannot make an instance ahead of requests; its requests instantiate their own");
                    claim.fail();
                }
                Err(_) => {
                    tracing::info!(plugin = %scope.plugin, "making an instance ahead of requests timed out; its requests instantiate their own");
                    claim.fail();
                }
            }
        });
    }
}

/// Stores kept beyond requests' own: one ready instance per plugin that makes them ahead.
fn ready_reserve(config: &RuntimeConfig) -> usize {
    config.ready_instances as usize
}

/// The store of a finished request, with the permits that account for its pooling slot
/// (released after it, in field order).
struct UsedStore {
    _store: Store<RequestState>,
    _reserve: Option<tokio::sync::OwnedSemaphorePermit>,
    _instance: tokio::sync::OwnedSemaphorePermit,
}

/// Time host work of a request (instantiation, database calls) may run past its deadline.
const HOST_GRACE: Duration = Duration::from_millis(250);

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
