//! The thread of a wasm scorer: runs one call at a time on the instance it owns, and after a
//! trap replaces the instance by a fresh one given the events its predecessor had learnt
//! from.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::scorer::exports::polymongo::plugin::scoring::Event;
use super::bindings::scorer::Scorer;
use super::scorer::{failure_cause, ScorerComponent, ScorerCounters, ScorerState};
use super::scorer_jobs::{Control, Job};

/// The scorer thread: owns the instance, re-instantiates it after a trap and replays the
/// events it had learnt from into the fresh one.
pub(super) struct ScorerWorker {
    pub(super) component: Arc<ScorerComponent>,
    pub(super) label: String,
    pub(super) hard_ticks: u64,
    pub(super) replay_events: usize,
    pub(super) stats: Arc<ScorerCounters>,
}

type Instance = (Store<ScorerState>, Scorer);

/// What the scorer thread keeps between calls.
struct WorkerState {
    instance: Option<Instance>,
    /// The latest events delivered to calls that succeeded (at most `replay_events`).
    history: VecDeque<Event>,
    /// Events a fresh instance failed to relearn (at most `replay_events`): never given to
    /// this version again, but handed over, before `history`, to the next one, so that a
    /// broken version in between does not lose what the one before it learnt.
    shelved: VecDeque<Event>,
    /// Events (and drop counts) only a trapped instance saw: reported to the next call as
    /// dropped.
    lost: u64,
}

impl ScorerWorker {
    pub(super) fn run(self, jobs: std::sync::mpsc::Receiver<Job>) {
        // Made before the first decision, so that it does not spend its budget on it.
        let mut state = WorkerState {
            instance: self.component.instantiate().ok(),
            history: VecDeque::new(),
            shelved: VecDeque::new(),
            lost: 0,
        };
        while let Ok(mut job) = jobs.recv() {
            match std::mem::replace(&mut job.control, Control::Call) {
                Control::Call => {}
                Control::Restart => {
                    if state.instance.take().is_some() {
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(scorer = %self.label, "scorer restarted on request; its next call starts a fresh instance");
                    }
                    self.stats.flight.finish();
                    let _ = job.reply.send(None);
                    continue;
                }
                Control::HandOver(successor) => {
                    let mut events: Vec<Event> = state.shelved.drain(..).collect();
                    events.extend(state.history.drain(..));
                    events.extend(job.events);
                    let lost = std::mem::take(&mut state.lost) + job.dropped;
                    // The successor may be gone already (replaced again): nothing to do then.
                    let _ = successor.send((events, lost));
                    continue;
                }
                Control::Inherit(predecessor) => {
                    let started = self.stats.call_times.started();
                    self.inherit(&mut state, &predecessor);
                    self.stats.call_times.finished(started);
                    continue;
                }
            }
            // Timed as the decision waits for it: a fresh instance's replay included.
            let started = self.stats.call_times.started();
            let answer = self.score(&mut state, &job);
            self.stats.call_times.finished(started);
            if answer.is_some() {
                for event in job.events {
                    if state.history.len() >= self.replay_events {
                        state.history.pop_front();
                    }
                    if self.replay_events > 0 {
                        state.history.push_back(event);
                    }
                }
            }
            self.stats.flight.finish();
            // The caller may have stopped waiting (an overrun): the answer is then unused, but
            // the instance, and what this call taught it, stays.
            let _ = job.reply.send(answer);
        }
    }

    fn score(&self, state: &mut WorkerState, job: &Job) -> Option<Vec<f64>> {
        let dropped = job.dropped + std::mem::take(&mut state.lost);
        if state.instance.is_none() {
            state.instance = self.fresh(state);
        }
        let Some((store, scorer)) = state.instance.as_mut() else {
            state.lost = dropped + job.events.len() as u64;
            return None;
        };
        store.set_epoch_deadline(self.hard_ticks);
        let result = scorer.polymongo_plugin_scoring().call_score_all(
            &mut *store,
            &job.events,
            dropped,
            &job.pools,
            job.now_ms,
        );
        store.set_epoch_deadline(u64::MAX / 2);
        match result {
            Ok(scores) => Some(scores),
            Err(e) => {
                let cause = failure_cause(store, &e);
                // A trapped instance (or one stopped at the hard limit) is poisoned: the next
                // decision starts from a fresh one, rebuilt from the history. This call's
                // events are not replayed (they may be what made it trap): they count as
                // dropped.
                state.instance = None;
                state.lost = dropped + job.events.len() as u64;
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                if job.pools.is_empty() {
                    tracing::warn!(scorer = %self.label, %cause,
                        "scorer failed taking events ahead of a decision; its next call starts a fresh instance");
                } else {
                    tracing::warn!(scorer = %self.label, %cause,
                        "scorer failed; the built-in policy decides this eviction");
                }
                None
            }
        }
    }

    /// Puts the events a predecessor hands over (it waits for them) before the ones this
    /// scorer delivered since it started, keeps the latest `replay_events` of them, and
    /// relearns them now in a fresh instance: the first decision then finds it ready. A
    /// predecessor gone before it answered hands over nothing.
    fn inherit(
        &self,
        state: &mut WorkerState,
        predecessor: &std::sync::mpsc::Receiver<(Vec<Event>, u64)>,
    ) {
        let Ok((inherited, lost)) = predecessor.recv() else {
            tracing::warn!(scorer = %self.label, "the previous version handed over no events; this one starts with what it has seen");
            return;
        };
        state.lost += lost;
        if self.replay_events == 0 || inherited.is_empty() {
            // Nothing to put before what the instance has seen: it goes on as it is.
            return;
        }
        let count = inherited.len();
        let own = std::mem::take(&mut state.history);
        let keep = (count + own.len()).saturating_sub(self.replay_events);
        state.history = inherited.into_iter().chain(own).skip(keep).collect();
        tracing::info!(scorer = %self.label, events = count, kept = state.history.len(),
            "scorer takes over the events its previous version had learnt from");
        state.instance = self.fresh(state);
        // A failed relearning shelved them: only those relearnt count.
        if !state.history.is_empty() {
            self.stats
                .inherited
                .fetch_add(count.saturating_sub(keep) as u64, Ordering::Relaxed);
        }
    }

    /// A fresh instance that has been given the history (in one call, with no pools, under
    /// the hard limit). If that fails, the history is shelved (kept only for a next version)
    /// and the instance starts empty.
    fn fresh(&self, state: &mut WorkerState) -> Option<Instance> {
        let instantiate = || match self.component.instantiate() {
            Ok(fresh) => Some(fresh),
            Err(e) => {
                tracing::error!(scorer = %self.label, error = %format!("{e:#}"), "cannot instantiate the scorer");
                None
            }
        };
        let (mut store, scorer) = instantiate()?;
        if state.history.is_empty() {
            return Some((store, scorer));
        }
        // In place: the history is lent to the call, not copied.
        let events = state.history.make_contiguous();
        let (count, now_ms) = (events.len(), events.last().map_or(0, |e| e.at_ms));
        store.set_epoch_deadline(self.hard_ticks);
        let replayed =
            scorer
                .polymongo_plugin_scoring()
                .call_score_all(&mut store, events, 0, &[], now_ms);
        store.set_epoch_deadline(u64::MAX / 2);
        match replayed {
            Ok(_) => {
                self.stats.replays.fetch_add(1, Ordering::Relaxed);
                tracing::info!(scorer = %self.label, events = count,
                    "scorer restarted with the events it had learnt from");
                Some((store, scorer))
            }
            Err(e) => {
                state.shelved.extend(state.history.drain(..));
                let over = state.shelved.len().saturating_sub(self.replay_events);
                state.shelved.drain(..over);
                tracing::warn!(scorer = %self.label, cause = %failure_cause(&store, &e),
                    "replaying its events into a fresh scorer failed; it starts empty (the events are kept for its next version)");
                instantiate()
            }
        }
    }
}
