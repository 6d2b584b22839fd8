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

    /// The epoch tick the loader's policies count their hard limit in.
    pub fn tick(&self) -> Duration {
        self.tick
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
