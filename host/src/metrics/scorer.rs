//! The active wasm scorer's metrics (read from its counters at scrape time).

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::sample;
use crate::pool::EvictionPolicy;
use crate::runtime::WasmScorer;

/// Calls, overruns, restarts, events inherited from the previous version, deliveries of events and the slowest call of `scorer`, labelled with its policy name
/// (`wasm:NAME`). The counters start at zero when a new version of the scorer is deployed.
pub(super) fn encode_scorer(enc: &mut DescriptorEncoder, scorer: &WasmScorer) -> fmt::Result {
    let labels = [("policy", scorer.name())];
    for (name, help, value) in [
        (
            "polymongo_scorer_calls",
            "Eviction decisions asked of the active wasm scorer (score-all calls, and decisions that fell back while a call was still running)",
            scorer.calls(),
        ),
        (
            "polymongo_scorer_overruns",
            "Decisions the active wasm scorer did not answer within scorer_budget_ms (the call went on; the built-in formula decided)",
            scorer.overruns(),
        ),
        (
            "polymongo_scorer_restarts",
            "Times the active wasm scorer trapped or hit scorer_hard_limit_ms and was replaced by a fresh instance",
            scorer.restarts(),
        ),
        (
            "polymongo_scorer_inherited_events",
            "Events the active wasm scorer took over from its previous version when it was deployed (within scorer_replay_events), relearnt before its first decision",
            scorer.inherited(),
        ),
        (
            "polymongo_scorer_deliveries",
            "Calls with no pools that gave the active wasm scorer its waiting events ahead of a decision (one per 4096 events or more)",
            scorer.deliveries(),
        ),
    ] {
        let metric = ConstCounter::new(value);
        let mut family = enc.encode_descriptor(name, help, None, metric.metric_type())?;
        sample(&mut family, &labels, metric)?;
    }
    let slowest = ConstGauge::new(scorer.slowest_call().as_secs_f64());
    let mut family = enc.encode_descriptor(
        "polymongo_scorer_slowest_call_seconds",
        "The longest call of the active wasm scorer since it was deployed (a call still running counts for as long as it has run); compare with scorer_budget_ms",
        None,
        MetricType::Gauge,
    )?;
    sample(&mut family, &labels, slowest)
}
