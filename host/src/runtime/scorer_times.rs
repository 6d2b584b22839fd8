//! How long a wasm scorer's calls take: the longest so far, and the one running now (read
//! by the replay and the metrics while the scorer's thread may still be in it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest finished call (`score-all`, with a fresh instance's replay when it needed
/// one), whether or not its decision waited for it, and when the running call started; in
/// microseconds after `created` (`running_since_us` plus one, 0 when no call runs).
pub(super) struct CallTimes {
    created: Instant,
    slowest_us: AtomicU64,
    running_since_us: AtomicU64,
}

impl Default for CallTimes {
    fn default() -> Self {
        Self {
            created: Instant::now(),
            slowest_us: AtomicU64::new(0),
            running_since_us: AtomicU64::new(0),
        }
    }
}

impl CallTimes {
    fn now_us(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A call starts; returns its start for [`CallTimes::finished`].
    pub(super) fn started(&self) -> u64 {
        let at = self.now_us();
        self.running_since_us.store(at + 1, Ordering::Relaxed);
        at
    }

    /// The call that started at `at` finished.
    pub(super) fn finished(&self, at: u64) {
        let took = self.now_us().saturating_sub(at);
        self.slowest_us.fetch_max(took, Ordering::Relaxed);
        self.running_since_us.store(0, Ordering::Relaxed);
    }

    /// The longest call, the running one counting for as long as it has run.
    pub(super) fn slowest(&self) -> Duration {
        let finished = self.slowest_us.load(Ordering::Relaxed);
        Duration::from_micros(finished).max(self.running())
    }

    /// How long the running call has run (zero when none runs).
    pub(super) fn running(&self) -> Duration {
        match self.running_since_us.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_micros(self.now_us().saturating_sub(since - 1)),
        }
    }
}
