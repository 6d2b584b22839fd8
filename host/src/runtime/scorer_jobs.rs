//! What the policy hands to a wasm scorer's thread: the events waiting for the next call,
//! and the jobs (a call, a restart, a handover between two versions).

use std::collections::VecDeque;

use super::bindings::scorer::exports::polymongo::plugin::scoring::{
    Event, PoolStats as WitPoolStats,
};

/// Events kept between two decisions; older ones are dropped (and counted) past this.
const MAX_QUEUED_EVENTS: usize = 1 << 20;

/// The events the hooks queued for the next call, and how many overflowed.
#[derive(Default)]
pub(super) struct EventQueue {
    pub(super) events: VecDeque<Event>,
    pub(super) dropped: u64,
}

impl EventQueue {
    pub(super) fn push(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Takes every waiting event and the count of those dropped, leaving the queue empty.
    pub(super) fn take_all(&mut self) -> (Vec<Event>, u64) {
        (
            Vec::from(std::mem::take(&mut self.events)),
            std::mem::take(&mut self.dropped),
        )
    }
}

/// One `score-all` call, sent to the scorer's thread.
pub(super) struct Job {
    pub(super) events: Vec<Event>,
    pub(super) dropped: u64,
    pub(super) pools: Vec<WitPoolStats>,
    pub(super) now_ms: u64,
    pub(super) reply: std::sync::mpsc::SyncSender<Option<Vec<f64>>>,
    /// A call, or what the thread does instead of one.
    pub(super) control: Control,
}

impl Job {
    /// A job that is not a call (`control`), carrying `events` and a count of `dropped` ones;
    /// its answer goes to `reply`.
    pub(super) fn instead_of_call(
        control: Control,
        events: Vec<Event>,
        dropped: u64,
        reply: std::sync::mpsc::SyncSender<Option<Vec<f64>>>,
    ) -> Self {
        Self {
            events,
            dropped,
            pools: Vec::new(),
            now_ms: 0,
            reply,
            control,
        }
    }
}

/// What a job asks of the scorer's thread.
pub(super) enum Control {
    /// A `score-all` call with the job's events and pools.
    Call,
    /// Instead of a call: drop the instance, as a trap does
    /// ([`WasmScorer::restart`](super::WasmScorer::restart)).
    Restart,
    /// Give this (replaced) scorer's shelved and delivered events, then the job's events
    /// (those still queued), and the count of events lost, to its successor
    /// ([`WasmScorer::inherit_from`](super::WasmScorer::inherit_from)). The flight is not
    /// taken for it.
    HandOver(std::sync::mpsc::SyncSender<(Vec<Event>, u64)>),
    /// Put the events the predecessor hands over before this scorer's own, and relearn them
    /// in a fresh instance now
    /// ([`WasmScorer::inherit_from`](super::WasmScorer::inherit_from)). The flight is not
    /// taken for it.
    Inherit(std::sync::mpsc::Receiver<(Vec<Event>, u64)>),
}
