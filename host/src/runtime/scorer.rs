//! Eviction scoring by a wasm component (world `scorer`), as a connection-manager policy.
//!
//! One long-lived instance per deployed scorer version keeps its state between decisions.
//! Pool events (opened, accessed, closed) are queued by the policy hooks and delivered with
//! the next `score-all` call; once [`DELIVER_AHEAD_EVENTS`] are waiting and the scorer is
//! idle, they are delivered at once in a call with no pools, so that a decision carries a
//! bounded backlog (a decision waits, within its budget, for such a delivery to finish).
//!
//! A decision waits for the scorer at most its budget (`scorer_budget_ms`): past it, the
//! manager falls back to the seed formula for that decision, but the call is not stopped. It
//! goes on, on its own thread, up to a hard limit (`scorer_hard_limit_ms`, counted in epoch
//! ticks); if it finishes, the instance and everything it learnt (including the events of
//! that call) are kept. Decisions made while it is still running fall back too, and their
//! events wait in the queue for the next call. A trap (or the hard limit) costs the instance:
//! the next call starts from a fresh one, which is first given the latest events that earlier
//! calls delivered (`scorer_replay_events`), so it relearns what its predecessor knew; the
//! failed call's events count as dropped. A malformed answer also falls back.
//!
//! A new version of the active scorer takes over the old one's events the same way
//! ([`WasmScorer::inherit_from`]): the old version's thread hands them to the new one's,
//! which relearns them in a fresh instance before its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
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
use super::error::{trap_detail, LoadError};
use super::scorer_flight::{Flight, Start};
use super::scorer_jobs::{Control, EventQueue, Job};
use super::scorer_times::CallTimes;
use super::scorer_worker::ScorerWorker;
use super::state::MemoryLimiter;
use crate::pool::{EvictionPolicy, PoolStats};

/// Events waiting that are delivered ahead of the next decision, in a call with no pools,
/// when the scorer is idle.
pub const DELIVER_AHEAD_EVENTS: usize = 4096;

/// Time limits of a wasm scorer's calls, and how much it can relearn after a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScorerLimits {
    /// Time a decision waits for the scorer before it falls back (`scorer_budget_ms`).
    pub budget: Duration,
    /// Time an overrunning call may go on before it is stopped (`scorer_hard_limit_ms`; at
    /// least `budget`).
    pub hard_limit: Duration,
    /// Latest events kept to replay into a fresh instance after a trap
    /// (`scorer_replay_events`; 0: a fresh instance starts empty).
    pub replay_events: usize,
}

impl Default for ScorerLimits {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(20),
            hard_limit: Duration::from_secs(1),
            replay_events: 1 << 16,
        }
    }
}

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

    /// A policy backed by a fresh instance of this scorer (on its own thread): each decision
    /// waits for it at most `budget`; the other limits are [`ScorerLimits`]' defaults.
    pub fn policy(self: &Arc<Self>, budget: Duration, epoch_tick: Duration) -> WasmScorer {
        self.policy_with_limits(
            ScorerLimits {
                budget,
                ..ScorerLimits::default()
            },
            epoch_tick,
        )
    }

    /// A policy backed by a fresh instance of this scorer, under `limits` (the hard limit is
    /// counted in epoch ticks of `epoch_tick`).
    pub fn policy_with_limits(
        self: &Arc<Self>,
        limits: ScorerLimits,
        epoch_tick: Duration,
    ) -> WasmScorer {
        let hard_limit = limits.hard_limit.max(limits.budget);
        let hard_ticks = (hard_limit.as_micros() / epoch_tick.as_micros().max(1)).max(1) as u64 + 1;
        WasmScorer::start(self.clone(), limits, hard_ticks)
    }

    pub(super) fn instantiate(&self) -> wasmtime::Result<(Store<ScorerState>, Scorer)> {
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

/// An eviction policy that asks a wasm scorer.
///
/// The instance lives on a thread of its own: scorer calls are synchronous (the manager
/// decides under its lock), and WASI's synchronous bindings must not run on an async
/// runtime's thread. The thread ends when the policy is dropped.
pub struct WasmScorer {
    component: Arc<ScorerComponent>,
    label: String,
    budget: Duration,
    replay_events: usize,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    queue: Mutex<EventQueue>,
    stats: Arc<ScorerCounters>,
}

/// What a scorer's policy and its thread count and share.
#[derive(Default)]
pub(super) struct ScorerCounters {
    failures: AtomicU64,
    calls: AtomicU64,
    overruns: AtomicU64,
    pub(super) restarts: AtomicU64,
    pub(super) replays: AtomicU64,
    /// Events taken over from the previous version of the scorer (and kept).
    pub(super) inherited: AtomicU64,
    /// Calls with no pools that delivered events ahead of a decision.
    deliveries: AtomicU64,
    /// How long the calls took.
    pub(super) call_times: CallTimes,
    /// The call running on the scorer's thread (taken by the caller before sending it,
    /// released by the thread before answering).
    pub(super) flight: Flight,
}

impl std::fmt::Debug for WasmScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmScorer")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl WasmScorer {
    fn start(component: Arc<ScorerComponent>, limits: ScorerLimits, hard_ticks: u64) -> Self {
        let label = format!("wasm:{}", component.name);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let stats = Arc::new(ScorerCounters::default());
        let worker = ScorerWorker {
            component: component.clone(),
            label: label.clone(),
            hard_ticks,
            replay_events: limits.replay_events,
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
            budget: limits.budget,
            replay_events: limits.replay_events,
            jobs: Mutex::new(tx),
            queue: Mutex::new(EventQueue::default()),
            stats,
        }
    }

    /// Decisions in which the scorer gave no answer (trap, overrun, still busy with an
    /// overrunning call) since it was created.
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Decisions asked of the scorer (`score-all` calls, or fallbacks while it was busy).
    pub fn calls(&self) -> u64 {
        self.stats.calls.load(Ordering::Relaxed)
    }

    /// Decisions that fell back because the call ran past its budget (the call went on).
    pub fn overruns(&self) -> u64 {
        self.stats.overruns.load(Ordering::Relaxed)
    }

    /// Times the instance failed (trap, hard limit) and was replaced by a fresh one.
    pub fn restarts(&self) -> u64 {
        self.stats.restarts.load(Ordering::Relaxed)
    }

    /// Times a fresh instance was given the events its predecessor had learnt from.
    pub fn replays(&self) -> u64 {
        self.stats.replays.load(Ordering::Relaxed)
    }

    /// The longest call so far (`score-all`, with a fresh instance's replay of its
    /// predecessor's events when it needed one), whether or not its decision waited for it;
    /// a call still running counts for as long as it has run.
    pub fn slowest_call(&self) -> Duration {
        self.stats.call_times.slowest()
    }

    /// Whether a call (one that overran its decision's budget, or a delivery of events
    /// ahead of a decision) is still running.
    pub fn busy(&self) -> bool {
        self.stats.flight.busy()
    }

    /// Calls with no pools made to deliver events ahead of a decision (at most one per
    /// [`DELIVER_AHEAD_EVENTS`] events).
    pub fn deliveries(&self) -> u64 {
        self.stats.deliveries.load(Ordering::Relaxed)
    }

    /// Events waiting for the next call.
    pub fn queued_events(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .len()
    }

    /// Drops the scorer's instance, as a trap does: its next call starts a fresh instance,
    /// first given the latest events earlier calls delivered (`scorer_replay_events`); events
    /// still queued go to that call as usual. Waits for a call in progress to end. Counted in
    /// [`Self::restarts`]. `polymongo replay --restart-at` measures what a restart costs.
    pub fn restart(&self) {
        self.stats.flight.start_when_idle();
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let job = Job::instead_of_call(Control::Restart, Vec::new(), 0, reply);
        if self.send(job) {
            let _ = answer.recv();
        }
    }

    /// Events this scorer took over from its previous version ([`Self::inherit_from`]),
    /// within `scorer_replay_events`.
    pub fn inherited(&self) -> u64 {
        self.stats.inherited.load(Ordering::Relaxed)
    }

    /// Continues from `previous`, the scorer this one replaces (a new version deployed under
    /// the active scorer's name): its delivered events (the latest `scorer_replay_events`),
    /// then those still queued for it, go before this scorer's own, and this scorer's thread
    /// relearns them in a fresh instance before its next call, as after a trap. Call it once
    /// `previous` gets no more events (the manager has this scorer); it does not wait: the
    /// two threads pass the events between them, each after the call it is running, so a
    /// decision made meanwhile waits within its budget and then falls back. Nothing is
    /// handed over when `scorer_replay_events` is 0.
    pub fn inherit_from(&self, previous: &WasmScorer) {
        if self.replay_events == 0 {
            return;
        }
        let (queued, dropped) = previous
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_all();
        let (give, take) = std::sync::mpsc::sync_channel(1);
        let (reply, _) = std::sync::mpsc::sync_channel(1);
        let hand_over =
            Job::instead_of_call(Control::HandOver(give), queued, dropped, reply.clone());
        let inherit = Job::instead_of_call(Control::Inherit(take), Vec::new(), 0, reply);
        // Neither job takes the flight, so neither goes through `send` (which would release it
        // when the thread is gone).
        let _ = previous
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(hand_over);
        let _ = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(inherit);
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
        if queue.events.len() >= DELIVER_AHEAD_EVENTS && self.stats.flight.start_delivery() {
            let (events, dropped) = queue.take_all();
            drop(queue);
            self.deliver(events, dropped, at_ms);
        }
    }

    /// Sends `job` to the scorer's thread, whose flight the caller has taken; if the thread
    /// is gone, releases the flight and returns `false`.
    fn send(&self, job: Job) -> bool {
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            self.stats.flight.finish();
        }
        sent.is_ok()
    }

    /// Sends `events` to the scorer's thread in a call with no pools (the thread is taken);
    /// nothing waits for its answer.
    fn deliver(&self, events: Vec<Event>, dropped: u64, now_ms: u64) {
        let (reply, _) = std::sync::mpsc::sync_channel(1);
        let job = Job {
            events,
            dropped,
            pools: Vec::new(),
            now_ms,
            reply,
            control: Control::Call,
        };
        if self.send(job) {
            self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls the scorer; `None` when it failed or did not answer within the budget (the
    /// manager then falls back).
    fn call(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Option<Vec<f64>> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self.ask(pools, now_ms);
        if answer.is_none() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    fn ask(&self, pools: &[PoolStats<'_>], now_ms: u64) -> Option<Vec<f64>> {
        // An overrunning call is still running: this decision falls back and its events
        // wait. A delivery of events is waited for, within the budget.
        let budget = match self
            .stats
            .flight
            .start_decision(self.budget, || self.stats.call_times.running())
        {
            Start::Started(left) => left,
            Start::Busy => return None,
            Start::WaitedOut => {
                self.overran();
                return None;
            }
        };
        let (events, dropped) = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_all();
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
            control: Control::Call,
        };
        if !self.send(job) {
            return None;
        }
        match answer.recv_timeout(budget) {
            Ok(scores) => scores,
            Err(RecvTimeoutError::Timeout) => {
                self.overran();
                None
            }
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    fn overran(&self) {
        self.stats.overruns.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(scorer = %self.label, budget_ms = self.budget.as_millis() as u64,
            "scorer overran its budget; the built-in policy decides this eviction while the call finishes");
    }
}

/// Why a scorer call failed, in one line: its memory limit, or [`trap_detail`].
pub(super) fn failure_cause(store: &Store<ScorerState>, error: &wasmtime::Error) -> String {
    if store.data().limiter.exceeded {
        return format!(
            "exceeded its memory limit of {} MiB",
            SCORER_MEMORY_BYTES >> 20
        );
    }
    trap_detail(error)
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
