//! Loading scorer components for replay, without a connection manager.
//!
//! [`Runtime`](crate::runtime::Runtime) needs a [`PolyMongo`](crate::pool::PolyMongo), whose
//! builder loads priorities from a live server; replay has none. [`ScorerLoader`] builds a
//! wasmtime engine with the runtime's settings (component model, epoch interruption, pooling
//! allocator), runs its own epoch ticker, and compiles scorers through the same
//! [`ScorerComponent`] the runtime uses, so the policies are the ones the manager would run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::pool::{EvictionPolicy, PoolStats};
use crate::runtime::{ScorerComponent, ScorerLimits, WasmScorer};

/// Compiles scorer components and keeps their deadlines ticking.
///
/// Policies made from its components are interrupted at their budget only while the loader
/// is alive (dropping it stops the epoch ticker).
pub struct ScorerLoader {
    engine: Engine,
    tick: Duration,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for ScorerLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScorerLoader")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl ScorerLoader {
    /// An engine with the runtime's settings, its epoch advanced every `tick`.
    pub fn new(tick: Duration) -> Result<Self> {
        let mut pooling = PoolingAllocationConfig::default();
        let n = 16u32;
        pooling
            .total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 8)
            .max_memory_size(1 << 30)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(32);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("engine: {e:#}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("replay-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticker_engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Self { engine, tick, stop })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` as scorer `name` and checks it implements the `scorer` world.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Arc<ScorerComponent>> {
        let scorer = ScorerComponent::from_bytes(&self.engine, name, bytes)
            .map_err(|e| anyhow::anyhow!("loading scorer {name}: {e}"))?;
        Ok(Arc::new(scorer))
    }

    /// Compiles the scorer in `path` (named after the file).
    pub fn load_file(&self, path: &Path) -> Result<Arc<ScorerComponent>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scorer");
        self.load_bytes(name, &bytes)
    }

    /// A fresh policy (new instance, empty state) of `component`, each call bounded by
    /// `budget`.
    pub fn policy(&self, component: &Arc<ScorerComponent>, budget: Duration) -> WasmScorer {
        component.policy(budget, self.tick)
    }

    /// [`Self::policy`] with every limit given (`scorer_replay_events` too).
    pub fn policy_with_limits(
        &self,
        component: &Arc<ScorerComponent>,
        limits: ScorerLimits,
    ) -> WasmScorer {
        component.policy_with_limits(limits, self.tick)
    }
}

impl Drop for ScorerLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A wasm scorer that is restarted ([`WasmScorer::restart`], as after a trap) once, when the
/// replay reaches request `at` (counted from 0): what a restart costs a scorer's decisions,
/// for `polymongo replay --restart-at`.
pub struct RestartAt {
    scorer: Arc<WasmScorer>,
    at: u64,
    requests: std::sync::atomic::AtomicU64,
}

impl RestartAt {
    /// `scorer`, restarted at request `at`.
    pub fn new(scorer: Arc<WasmScorer>, at: u64) -> Self {
        Self {
            scorer,
            at,
            requests: Default::default(),
        }
    }

    /// Counts a request (a hit's `on_access` or a miss's `on_open`); restarts at the `at`-th.
    fn request(&self) {
        if self.requests.fetch_add(1, Ordering::Relaxed) == self.at {
            self.scorer.restart();
        }
    }
}

impl EvictionPolicy for RestartAt {
    fn name(&self) -> &str {
        self.scorer.name()
    }

    fn score(&self, pool: &PoolStats<'_>, now_ms: u64) -> f64 {
        self.scorer.score(pool, now_ms)
    }

    fn stable_key(&self, pool: &PoolStats<'_>) -> Option<f64> {
        self.scorer.stable_key(pool)
    }

    fn score_all(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Vec<f64> {
        self.scorer.score_all(pools, now_ms)
    }

    fn on_access(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.scorer.on_access(pool_id, db, now_ms);
        self.request();
    }

    fn on_open(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.scorer.on_open(pool_id, db, now_ms);
        self.request();
    }

    fn on_close(&self, pool_id: u64, db: &str, now_ms: u64) {
        self.scorer.on_close(pool_id, db, now_ms);
    }
}
