//! The one call a wasm scorer's thread runs at a time, and whether it is a decision or a
//! delivery of events ahead of one: a decision waits (within its budget) for a delivery to
//! finish, but never queues behind another decision's call.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the scorer's thread is doing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Running {
    /// Nothing: a call may start.
    #[default]
    Idle,
    /// A decision's call (it may have overrun its budget and be finishing).
    Decision,
    /// Events delivered ahead of the next decision (a call with no pools).
    Delivery,
}

/// How a decision got (or did not get) the scorer's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// The thread is the decision's; this much of its budget is left.
    Started(Duration),
    /// A decision's call that overran is still running: fall back at once.
    Busy,
    /// A delivery ran past the decision's whole budget: fall back (an overrun).
    WaitedOut,
}

/// Whether a call runs on the scorer's thread, and which kind; the thread signals when it
/// is done.
#[derive(Default)]
pub(super) struct Flight {
    running: Mutex<Running>,
    done: Condvar,
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call is running.
    pub(super) fn busy(&self) -> bool {
        *self.lock() != Running::Idle
    }

    /// Takes the thread for a delivery of events if nothing runs; `false` otherwise (the
    /// events then wait for a later call).
    pub(super) fn start_delivery(&self) -> bool {
        let mut running = self.lock();
        if *running != Running::Idle {
            return false;
        }
        *running = Running::Delivery;
        true
    }

    /// Takes the thread, waiting as long as a call runs (for a restart on request, which no
    /// decision waits for).
    pub(super) fn start_when_idle(&self) {
        let mut running = self.lock();
        while *running != Running::Idle {
            running = self.done.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running = Running::Delivery;
    }

    /// Takes the thread for a decision with `budget`: at once if idle; after the running
    /// delivery if it ends within the budget (`delivery_ran`: how long it has run, so that a
    /// delivery already past a budget does not make each decision wait a whole one).
    pub(super) fn start_decision(
        &self,
        budget: Duration,
        delivery_ran: impl Fn() -> Duration,
    ) -> Start {
        let started = Instant::now();
        let mut running = self.lock();
        loop {
            match *running {
                Running::Idle => {
                    *running = Running::Decision;
                    return Start::Started(budget.saturating_sub(started.elapsed()));
                }
                Running::Decision => return Start::Busy,
                Running::Delivery => {
                    if delivery_ran() >= budget {
                        return Start::Busy;
                    }
                    let waited = started.elapsed();
                    if waited >= budget {
                        return Start::WaitedOut;
                    }
                    running = self
                        .done
                        .wait_timeout(running, budget - waited)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// The running call is over (or could not be sent).
    pub(super) fn finish(&self) {
        *self.lock() = Running::Idle;
        self.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_decision_starts_at_once_when_idle_and_falls_back_behind_a_decision() {
        let flight = Flight::default();
        let budget = Duration::from_secs(10);
        assert!(matches!(
            flight.start_decision(budget, || Duration::ZERO),
            Start::Started(_)
        ));
        assert!(flight.busy());
        assert!(!flight.start_delivery(), "one call at a time");
        assert_eq!(
            flight.start_decision(budget, || Duration::ZERO),
            Start::Busy
        );
        flight.finish();
        assert!(!flight.busy());
    }

    #[test]
    fn a_decision_waits_for_a_delivery_that_ends_within_its_budget() {
        let flight = Arc::new(Flight::default());
        assert!(flight.start_delivery());
        let thread = {
            let flight = flight.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                flight.finish();
            })
        };
        // A budget far above the delivery: the decision gets the thread once it is done.
        let start = flight.start_decision(Duration::from_secs(60), || Duration::ZERO);
        assert!(matches!(start, Start::Started(left) if left < Duration::from_secs(60)));
        thread.join().expect("the delivery thread");
    }

    #[test]
    fn a_delivery_past_the_budget_makes_decisions_fall_back_without_waiting() {
        let flight = Flight::default();
        assert!(flight.start_delivery());
        // The delivery has run longer than the budget: no wait at all.
        assert_eq!(
            flight.start_decision(Duration::from_millis(20), || Duration::from_secs(1)),
            Start::Busy
        );
        // A delivery that does not end within the budget: the decision waited it out.
        assert_eq!(
            flight.start_decision(Duration::from_millis(20), || Duration::ZERO),
            Start::WaitedOut
        );
        flight.finish();
    }
}
