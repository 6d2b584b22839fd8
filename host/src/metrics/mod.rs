//! Prometheus metrics: what the connection manager, the plugin registry and the gateway are
//! doing, in the Prometheus text exposition format (served at `/metrics`).
//!
//! Two sources:
//! - **Read at scrape time** (a [`Collector`]): the manager's counters
//!   ([`PolyMongo::summary`], [`PolyMongo::policy_fallbacks`]) and the registry's
//!   ([`PluginRegistry::reload_counts`], [`PluginRegistry::list`]). Nothing is counted twice:
//!   the exposition is the same numbers `/admin/stats` shows.
//! - **Recorded as it happens**: plugin invocations by outcome and their latency, recorded by
//!   the gateway; evictions by policy and pool open times, from the manager's event stream
//!   ([`PolyMongo::subscribe`]).
//!
//! Labels are bounded: plugin names (deployed files), eviction policy names, fixed outcome
//! and status words. Tenant and database names are never labels (there can be thousands),
//! and no URI or credential appears anywhere.

mod scorer;
mod trace;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;

use crate::consumers::ConsumerBoard;
use crate::plugins::{ComponentKind, PluginRegistry, PluginStatus};
use crate::pool::{PolyMongo, PoolEventKind};
use crate::runtime::InvokeTimings;

/// The content type of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of plugin request latency, in seconds (0.5 ms .. 10 s).
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of instantiation time, in seconds (10 µs .. 100 ms): Rust guests take ~20 µs,
/// Python ones ~1 ms.
const INSTANTIATE_BUCKETS: [f64; 12] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];
/// Buckets of pool open time (connect + verification ping), in seconds (1 ms .. 10 s).
const OPEN_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// How one plugin request ended, as the `outcome` label of
/// `polymongo_plugin_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin answered (whatever its HTTP status).
    Ok,
    /// The plugin answered with an invalid HTTP status.
    InvalidResponse,
    /// The invocation failed: `InvokeError::kind()` (`trap`, `timeout`, `memory_limit`,
    /// `busy`, `tenant_busy`).
    Failed(&'static str),
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::InvalidResponse => "invalid_response",
            Outcome::Failed(kind) => kind,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    plugin: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

type HistogramFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// The host's metrics. Create one per served gateway ([`Metrics::new`]); it subscribes to the
/// manager's events until dropped.
pub struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    request_seconds: HistogramFamily,
    instantiate_seconds: HistogramFamily,
    ready_instance_requests: Family<PluginLabels, Counter>,
    listener: Option<tokio::task::AbortHandle>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl Metrics {
    /// Metrics over `manager` and `plugins`. Inside a Tokio runtime, also starts a task that
    /// reads the manager's events (evictions by policy, pool open times); outside one, those
    /// two are reported without the event detail (evictions under the current policy).
    pub fn new(manager: PolyMongo, plugins: Arc<PluginRegistry>) -> Self {
        Self::with_trace(manager, plugins, None)
    }

    /// [`Self::new`], plus the request trace's counts when one is being recorded
    /// (`polymongo_trace_records_total`, `polymongo_trace_dropped_total`).
    pub fn with_trace(
        manager: PolyMongo,
        plugins: Arc<PluginRegistry>,
        trace: Option<Arc<crate::recording::TraceRecorder>>,
    ) -> Self {
        let mut registry = Registry::default();
        if let Some(trace) = trace {
            registry.register_collector(Box::new(trace::TraceCollector(trace)));
        }
        let events = Arc::new(EventCounts::default());
        let open_seconds = Histogram::new(OPEN_BUCKETS);
        registry.register(
            "polymongo_pool_open_duration_seconds",
            "Time to open a database pool (connect and verify), from the manager's events",
            open_seconds.clone(),
        );
        let listener = tokio::runtime::Handle::try_current().ok().map(|handle| {
            let mut rx = manager.subscribe();
            let events = events.clone();
            handle
                .spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(event) => match event.kind {
                                PoolEventKind::Opened { took } => {
                                    open_seconds.observe(took.as_secs_f64())
                                }
                                PoolEventKind::Evicted { policy, .. } => {
                                    let mut by_policy = events
                                        .evictions
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner);
                                    *by_policy.entry(policy).or_default() += 1;
                                }
                                _ => {}
                            },
                            // Missed evictions are reconciled with the manager's total at
                            // scrape time.
                            Err(RecvError::Lagged(_)) => continue,
                            Err(RecvError::Closed) => break,
                        }
                    }
                })
                .abort_handle()
        });

        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "polymongo_plugin_invocations",
            "Tenant plugin requests by plugin and outcome (ok = the plugin answered)",
            invocations.clone(),
        );
        let request_seconds: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        registry.register(
            "polymongo_plugin_request_duration_seconds",
            "Wall-clock time of tenant plugin requests, by plugin (instantiation included)",
            request_seconds.clone(),
        );
        let instantiate_seconds: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(INSTANTIATE_BUCKETS));
        registry.register(
            "polymongo_plugin_instantiation_duration_seconds",
            "Time requests waited for a plugin component to be instantiated in a fresh store, by plugin (requests served by an instance made ahead are not counted)",
            instantiate_seconds.clone(),
        );
        let ready_instance_requests = Family::<PluginLabels, Counter>::default();
        registry.register(
            "polymongo_plugin_ready_instance_requests",
            "Tenant plugin requests served by a fresh instance made ahead of them (no instantiation on their path), by plugin",
            ready_instance_requests.clone(),
        );
        registry.register_collector(Box::new(StateCollector {
            manager,
            plugins,
            events,
        }));
        Self {
            registry,
            invocations,
            request_seconds,
            instantiate_seconds,
            ready_instance_requests,
            listener,
        }
    }

    /// Records one request to `plugin` (a deployed plugin's name: never a name taken from an
    /// unmatched URL, which would make the label set unbounded).
    pub fn record_invocation(
        &self,
        plugin: &str,
        outcome: Outcome,
        took: Duration,
        timings: InvokeTimings,
    ) {
        self.invocations
            .get_or_create(&InvocationLabels {
                plugin: plugin.to_string(),
                outcome: outcome.label(),
            })
            .inc();
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(t) = timings.instantiate {
            self.instantiate_seconds
                .get_or_create(&labels)
                .observe(t.as_secs_f64());
        }
        if timings.ready {
            self.ready_instance_requests.get_or_create(&labels).inc();
        }
    }

    /// The exposition, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

/// What the event task counted.
#[derive(Debug, Default)]
struct EventCounts {
    evictions: Mutex<BTreeMap<String, u64>>,
}

/// Reads the manager's and the registry's state at scrape time.
struct StateCollector {
    manager: PolyMongo,
    plugins: Arc<PluginRegistry>,
    events: Arc<EventCounts>,
}

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge<N>(enc: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One sample of a labelled family.
fn sample<M: EncodeMetric>(
    family: &mut MetricEncoder,
    labels: &[(&str, &str)],
    metric: M,
) -> fmt::Result {
    metric.encode(family.encode_family(&labels)?)
}

/// The background consumers' metrics (read from their board at scrape time).
fn encode_consumers(enc: &mut DescriptorEncoder, board: &ConsumerBoard) -> fmt::Result {
    let totals = board.deliveries();
    {
        let mut family = enc.encode_descriptor(
            "polymongo_consumer_deliveries",
            "Deliveries of change events to plugins' subscriber export by outcome (ok: acknowledged and the resume token stored after it; failed: delivered again after a back-off)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, n) in [("ok", totals.ok), ("failed", totals.failed)] {
            sample(&mut family, &[("outcome", outcome)], ConstCounter::new(n))?;
        }
    }
    counter(
        enc,
        "polymongo_consumer_events_delivered",
        "Change events in acknowledged deliveries to plugins' subscriber export",
        totals.events,
    )?;
    let mut family = enc.encode_descriptor(
        "polymongo_consumers",
        "Background consumers (plugin, subscription, tenant) by state",
        None,
        MetricType::Gauge,
    )?;
    for (state, n) in board.states() {
        sample(
            &mut family,
            &[("state", state.as_str())],
            ConstGauge::new(n as i64),
        )?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.manager.summary();
        gauge(
            &mut enc,
            "polymongo_pools_open",
            "Database pools open now (including ones being closed)",
            s.open_pools as i64,
        )?;
        if let Some(max) = s.max_connections {
            gauge(
                &mut enc,
                "polymongo_pools_max",
                "The configured cap on open database pools (max_connections)",
                max as i64,
            )?;
        }
        counter(
            &mut enc,
            "polymongo_pool_opens",
            "Database pools opened",
            s.opens,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_open_failures",
            "Database pool opens that failed",
            s.open_failures,
        )?;

        // Evictions by the policy that chose them. The event task may have missed some (a
        // lagging subscriber, or ones before it started): the manager's total is the truth,
        // and the difference is attributed to the active policy.
        let mut by_policy = self
            .events
            .evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let seen: u64 = by_policy.values().sum();
        if s.evictions > seen {
            *by_policy.entry(s.policy.clone()).or_default() += s.evictions - seen;
        }
        by_policy.entry(s.policy.clone()).or_default();
        {
            let mut family = enc.encode_descriptor(
                "polymongo_pool_evictions",
                "Database pools closed to make room for another, by eviction policy",
                None,
                MetricType::Counter,
            )?;
            for (policy, n) in &by_policy {
                sample(&mut family, &[("policy", policy)], ConstCounter::new(*n))?;
            }
        }
        {
            let mut family = enc.encode_descriptor(
                "polymongo_eviction_policy",
                "The active eviction policy (value 1)",
                None,
                MetricType::Gauge,
            )?;
            sample(&mut family, &[("policy", &s.policy)], ConstGauge::new(1i64))?;
        }
        counter(
            &mut enc,
            "polymongo_pool_idle_closes",
            "Database pools closed after sitting idle",
            s.idle_closes,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_closes",
            "Database pools closed on request (close_connection, admin API)",
            s.closes,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_limit_reached",
            "Requests that failed with LimitReached (every pool protected for acquire_timeout)",
            s.limit_reached,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_slot_waits",
            "Requests that had to wait for a pool slot",
            s.slot_waits,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_hits",
            "Operations that found their database pool open",
            s.hits,
        )?;
        counter(
            &mut enc,
            "polymongo_pool_misses",
            "Operations that had to open (or wait for) their database pool",
            s.misses,
        )?;
        let ops = s.hits + s.misses;
        if ops > 0 {
            gauge(
                &mut enc,
                "polymongo_pool_hit_ratio",
                "hits / (hits + misses) since start (for a windowed ratio use rate() of the counters)",
                s.hits as f64 / ops as f64,
            )?;
        }
        gauge(
            &mut enc,
            "polymongo_operations_in_flight",
            "Database operations running now, across all pools",
            s.in_flight as i64,
        )?;
        counter(
            &mut enc,
            "polymongo_scorer_fallbacks",
            "Eviction decisions where the policy's scores were unusable and the seed formula decided",
            self.manager.policy_fallbacks(),
        )?;
        if let Some(scorer) = self.plugins.active_wasm_scorer() {
            scorer::encode_scorer(&mut enc, &scorer)?;
        }
        {
            let mut family = enc.encode_descriptor(
                "polymongo_plugin_log_lines_dropped",
                "Plugin log lines (log import, stdout, stderr) dropped by the per plugin and tenant rate limit, by plugin",
                None,
                MetricType::Counter,
            )?;
            for (plugin, n) in self.plugins.runtime().log_limiter().dropped_by_plugin() {
                sample(
                    &mut family,
                    &[("plugin", plugin.as_str())],
                    ConstCounter::new(n),
                )?;
            }
        }
        counter(
            &mut enc,
            "polymongo_log_lines_dropped",
            "Log lines dropped because stderr did not keep up (the log queue was full)",
            crate::logging::dropped_lines(),
        )?;

        let reloads = self.plugins.reload_counts();
        {
            let mut family = enc.encode_descriptor(
                "polymongo_plugin_reloads",
                "Plugin folder changes by outcome (loaded, failed: the last good version kept serving, unloaded)",
                None,
                MetricType::Counter,
            )?;
            for (outcome, n) in [
                ("loaded", reloads.loaded),
                ("failed", reloads.failed),
                ("unloaded", reloads.unloaded),
            ] {
                sample(&mut family, &[("outcome", outcome)], ConstCounter::new(n))?;
            }
        }

        encode_consumers(&mut enc, self.plugins.consumer_board())?;

        let list = self.plugins.list();
        // Every possible series, so that alerts see zeros rather than absent series. A file
        // with no serving version (it never loaded) has kind `unknown` and status `error`.
        let mut by_state: BTreeMap<(&str, &str), i64> = [
            ("tenant", "ok"),
            ("tenant", "error"),
            ("scorer", "ok"),
            ("scorer", "error"),
            ("unknown", "error"),
        ]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
        for p in &list {
            let kind = match p.kind {
                Some(ComponentKind::Tenant) => "tenant",
                Some(ComponentKind::Scorer) => "scorer",
                None => "unknown",
            };
            let status = match p.status {
                PluginStatus::Ok => "ok",
                PluginStatus::Error => "error",
            };
            *by_state.entry((kind, status)).or_default() += 1;
        }
        {
            let mut family = enc.encode_descriptor(
                "polymongo_plugins",
                "Deployed components by kind and status (error = the latest file failed to load)",
                None,
                MetricType::Gauge,
            )?;
            for ((kind, status), n) in &by_state {
                sample(
                    &mut family,
                    &[("kind", kind), ("status", status)],
                    ConstGauge::new(*n),
                )?;
            }
        }
        {
            let mut family = enc.encode_descriptor(
                "polymongo_plugin_in_flight",
                "Requests running now, by tenant plugin",
                None,
                MetricType::Gauge,
            )?;
            for p in list
                .iter()
                .filter(|p| p.kind == Some(ComponentKind::Tenant))
            {
                sample(
                    &mut family,
                    &[("plugin", &p.name)],
                    ConstGauge::new(i64::from(p.in_flight)),
                )?;
            }
        }
        Ok(())
    }
}
