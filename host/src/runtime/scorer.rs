//! Eviction scoring by a wasm component (world `scorer`), as a connection-manager policy.
//!
//! One long-lived instance per deployed scorer version keeps its state between decisions.
//! Pool events (opened, accessed, closed) are queued by the policy hooks and delivered with
//! the next `score-all` call. Each call runs under an epoch deadline; a trap, a timeout, or a
//! malformed answer makes the manager fall back to the seed formula for that decision, and the
//! next call starts from a fresh instance.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::scorer::exports::polymongo::plugin::scoring::{
    Event, EventKind, PoolStats as WitPoolStats,
};
use super::bindings::scorer::{Scorer, ScorerPre};
use super::content_hash::ContentHash;
use super::error::LoadError;
use super::state::MemoryLimiter;
use crate::pool::{EvictionPolicy, PoolStats};

/// Events kept between two decisions; older ones are dropped (and counted) past this.
const MAX_QUEUED_EVENTS: usize = 1 << 20;

/// Memory a scorer instance may use.
const SCORER_MEMORY_BYTES: usize = 256 << 20;

/// Store data of a scorer instance.
pub(crate) struct ScorerState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for ScorerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled scorer component, ready to instantiate.
pub struct ScorerComponent {
    name: String,
    version: String,
    size: usize,
    engine: Engine,
    pre: ScorerPre<ScorerState>,
}

impl std::fmt::Debug for ScorerComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScorerComponent")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ScorerComponent {
    /// Compiles `bytes` on `engine` (see [`new_engine`](super::new_engine)) and checks that
    /// it implements the `scorer` world: for tools that score without a host (trace replay).
    pub fn from_bytes(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Self, LoadError> {
        let component = Component::from_binary(engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        Self::new(
            engine,
            name,
            ContentHash::of(bytes),
            bytes.len(),
            &component,
        )
    }

    /// Checks that `component` implements the `scorer` world.
    pub(crate) fn new(
        engine: &Engine,
        name: &str,
        hash: ContentHash,
        size: usize,
        component: &Component,
    ) -> Result<Self, LoadError> {
        let mut linker: Linker<ScorerState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Compile(format!("linking WASI: {e:#}")))?;
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre =
            ScorerPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        Ok(Self {
            name: name.to_string(),
            version: hash.to_hex(),
            size,
            engine: engine.clone(),
            pre,
        })
    }

    /// The scorer's name (its file name without `.wasm`).
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

    /// A policy backed by a fresh instance of this scorer (on its own thread), each call
    /// bounded by `budget` (counted in epoch ticks of `epoch_tick`).
    pub fn policy(self: &Arc<Self>, budget: Duration, epoch_tick: Duration) -> WasmScorer {
        let budget_ticks = (budget.as_micros() / epoch_tick.as_micros().max(1)).max(1) as u64 + 1;
        WasmScorer::start(self.clone(), budget_ticks)
    }

    fn instantiate(&self) -> wasmtime::Result<(Store<ScorerState>, Scorer)> {
        let state = ScorerState {
            wasi: WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(SCORER_MEMORY_BYTES),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(u64::MAX / 2);
        store.epoch_deadline_trap();
        let scorer = self.pre.instantiate(&mut store)?;
        Ok((store, scorer))
    }
}

#[derive(Default)]
struct EventQueue {
    events: VecDeque<Event>,
    dropped: u64,
}

impl EventQueue {
    fn push(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// One `score-all` call, sent to the scorer's thread.
struct Job {
    events: Vec<Event>,
    dropped: u64,
    pools: Vec<WitPoolStats>,
    now_ms: u64,
    reply: std::sync::mpsc::SyncSender<Option<Vec<f64>>>,
}

/// An eviction policy that asks a wasm scorer.
///
/// The instance lives on a thread of its own: scorer calls are synchronous (the manager
/// decides under its lock), and WASI's synchronous bindings must not run on an async
/// runtime's thread. The thread ends when the policy is dropped.
pub struct WasmScorer {
    component: Arc<ScorerComponent>,
    label: String,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    queue: Mutex<EventQueue>,
    stats: Arc<ScorerCounters>,
}

#[derive(Default)]
struct ScorerCounters {
    failures: AtomicU64,
    calls: AtomicU64,
}

impl std::fmt::Debug for WasmScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmScorer")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl WasmScorer {
    fn start(component: Arc<ScorerComponent>, budget_ticks: u64) -> Self {
        let label = format!("wasm:{}", component.name);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let stats = Arc::new(ScorerCounters::default());
        let worker = ScorerWorker {
            component: component.clone(),
            label: label.clone(),
            budget_ticks,
            stats: stats.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("polymongo-scorer-{}", component.name))
            .spawn(move || worker.run(rx));
        if let Err(e) = spawned {
            tracing::error!(scorer = %label, "cannot start the scorer thread ({e}); the seed formula will decide");
        }
        Self {
            component,
            label,
            jobs: Mutex::new(tx),
            queue: Mutex::new(EventQueue::default()),
            stats,
        }
    }

    /// Decisions in which the scorer failed (trap, timeout) since it was created.
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// `score-all` calls made.
    pub fn calls(&self) -> u64 {
        self.stats.calls.load(Ordering::Relaxed)
    }

    /// The scorer component this policy runs.
    pub fn component(&self) -> &Arc<ScorerComponent> {
        &self.component
    }

    fn push(&self, pool_id: u64, at_ms: u64, kind: EventKind) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push(Event {
            pool_id,
            at_ms,
            kind,
        });
    }

    /// Calls the scorer; `None` when it failed (the manager then falls back).
    fn call(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Option<Vec<f64>> {
        let (events, dropped) = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let dropped = std::mem::take(&mut queue.dropped);
            (Vec::from(std::mem::take(&mut queue.events)), dropped)
        };
        let pools = pools
            .iter()
            .map(|p| WitPoolStats {
                pool_id: p.pool_id,
                priority: p.priority,
                use_count: p.use_count,
                avg_interval_ms: p.avg_interval_ms,
                last_used_ms: p.last_used_ms,
                idle_ms: p.idle_ms(now_ms),
                opened_at_ms: p.opened_at_ms,
            })
            .collect();
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job = Job {
            events,
            dropped,
            pools,
            now_ms,
            reply,
        };
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        answer.recv().ok().flatten()
    }
}

/// The scorer thread: owns the instance, re-instantiates it after a failure.
struct ScorerWorker {
    component: Arc<ScorerComponent>,
    label: String,
    budget_ticks: u64,
    stats: Arc<ScorerCounters>,
}

impl ScorerWorker {
    fn run(self, jobs: std::sync::mpsc::Receiver<Job>) {
        let mut instance: Option<(Store<ScorerState>, Scorer)> = None;
        while let Ok(job) = jobs.recv() {
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let answer = self.score(&mut instance, &job);
            if answer.is_none() {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            let _ = job.reply.send(answer);
        }
    }

    fn score(
        &self,
        instance: &mut Option<(Store<ScorerState>, Scorer)>,
        job: &Job,
    ) -> Option<Vec<f64>> {
        if instance.is_none() {
            match self.component.instantiate() {
                Ok(fresh) => *instance = Some(fresh),
                Err(e) => {
                    tracing::error!(scorer = %self.label, error = %format!("{e:#}"), "cannot instantiate the scorer");
                    return None;
                }
            }
        }
        let (store, scorer) = instance.as_mut()?;
        store.set_epoch_deadline(self.budget_ticks);
        let result = scorer.polymongo_plugin_scoring().call_score_all(
            &mut *store,
            &job.events,
            job.dropped,
            &job.pools,
            job.now_ms,
        );
        store.set_epoch_deadline(u64::MAX / 2);
        match result {
            Ok(scores) => Some(scores),
            Err(e) => {
                // A trapped instance is poisoned: the next decision starts from a fresh one.
                *instance = None;
                tracing::warn!(scorer = %self.label, error = %format!("{e:#}"),
                    "scorer failed; the built-in policy decides this eviction");
                None
            }
        }
    }
}

impl EvictionPolicy for WasmScorer {
    fn name(&self) -> &str {
        &self.label
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        self.call(std::slice::from_ref(pool), now_ms)
            .and_then(|s| s.first().copied())
            .unwrap_or(f64::NAN)
    }

    fn score_all(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Vec<f64> {
        // An empty answer has the wrong length: the manager falls back and counts it.
        self.call(pools, now_ms).unwrap_or_default()
    }

    fn on_access(&self, pool_id: u64, _db: &str, now_ms: u64) {
        self.push(pool_id, now_ms, EventKind::Accessed);
    }

    fn on_open(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.push(pool_id, now_ms, EventKind::Opened(db.to_string()));
    }

    fn on_close(&self, pool_id: u64, _db: &str, now_ms: u64) {
        self.push(pool_id, now_ms, EventKind::Closed);
    }
}
