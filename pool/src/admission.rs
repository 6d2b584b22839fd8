//! Storm control for new pools: token buckets that bound how fast requests may make the
//! manager open pools for databases that are not open, per client and overall.
//!
//! A client cycling made-up tenant names would otherwise make every request open a pool (and
//! evict an established one once the cap is reached). The gateway asks [`OpenAdmission`]
//! before running a request whose tenant has no open pool; a refusal becomes a 429 with
//! `retry-after`, and requests for tenants whose pools are open are never refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked at once; beyond this, new clients share one bucket.
const MAX_TRACKED_CLIENTS: usize = 4096;

/// Rates and bursts of pool opens. A burst of 0 disables that limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenRateLimits {
    /// Pools one client may make the host open per second, sustained.
    pub per_client_per_sec: f64,
    /// Pools one client may make the host open at once (bucket size).
    pub per_client_burst: u32,
    /// Pools all clients together may make the host open per second, sustained.
    pub global_per_sec: f64,
    /// Pools all clients together may make the host open at once (bucket size).
    pub global_burst: u32,
}

impl Default for OpenRateLimits {
    fn default() -> Self {
        Self {
            per_client_per_sec: 5.0,
            per_client_burst: 32,
            global_per_sec: 50.0,
            global_burst: 128,
        }
    }
}

/// Which limit refused an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenScope {
    /// The client's own rate.
    Client,
    /// The host-wide rate.
    Global,
}

impl std::fmt::Display for OpenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpenScope::Client => "for this client",
            OpenScope::Global => "on this host",
        })
    }
}

/// A refused pool open: which limit, and when a token will be available again.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRefused {
    /// The limit that refused.
    pub scope: OpenScope,
    /// How long until the next open would be admitted.
    pub retry_after: Duration,
}

impl std::fmt::Display for OpenRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many new tenant databases opened {}; retry in {}s",
            self.scope,
            self.retry_after_secs()
        )
    }
}

impl std::error::Error for OpenRefused {}

impl OpenRefused {
    /// `retry_after` in whole seconds, at least 1 (for a `retry-after` header).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant, per_sec: f64, burst: u32) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec.max(0.0)).min(f64::from(burst));
        self.updated = now;
    }

    /// Returns one token taken earlier, never beyond `burst`.
    fn give_back(&mut self, burst: u32) {
        self.tokens = (self.tokens + 1.0).min(f64::from(burst));
    }

    /// Time until one token is available (zero if one is).
    fn wait(&self, per_sec: f64) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        if per_sec <= 0.0 {
            return Duration::from_secs(3600);
        }
        Duration::from_secs_f64(((1.0 - self.tokens) / per_sec).min(3600.0))
    }
}

struct Buckets {
    global: Bucket,
    clients: HashMap<Option<IpAddr>, Bucket>,
}

/// The per-client and global token buckets of pool opens.
pub struct OpenAdmission {
    limits: OpenRateLimits,
    buckets: Mutex<Buckets>,
}

impl std::fmt::Debug for OpenAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAdmission")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The bucket key of a client: its IPv4 address, or the /64 network of an IPv6 address (a
/// single host usually owns a whole /64). `None` for a client of unknown address.
fn client_key(client: Option<IpAddr>) -> Option<IpAddr> {
    client.map(|ip| match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    })
}

impl OpenAdmission {
    /// Buckets for `limits`, all full.
    pub fn new(limits: OpenRateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(Buckets {
                global: Bucket::full(limits.global_burst, Instant::now()),
                clients: HashMap::new(),
            }),
        }
    }

    /// Takes one open token for `client` (and one from the global bucket), or says which
    /// limit refused and for how long.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), OpenRefused> {
        self.admit_at(client, Instant::now())
    }

    fn admit_at(&self, client: Option<IpAddr>, now: Instant) -> Result<(), OpenRefused> {
        let l = self.limits;
        let mut guard = self.lock();
        let buckets = &mut *guard;
        let global_on = l.global_burst > 0;
        let client_on = l.per_client_burst > 0;
        if global_on {
            buckets.global.refill(now, l.global_per_sec, l.global_burst);
        }
        let mut key = client_key(client);
        if client_on && !buckets.clients.contains_key(&key) {
            if buckets.clients.len() >= MAX_TRACKED_CLIENTS {
                // Forget clients whose bucket is full again: they owe nothing.
                buckets.clients.retain(|_, b| {
                    b.refill(now, l.per_client_per_sec, l.per_client_burst);
                    b.tokens < f64::from(l.per_client_burst)
                });
            }
            if buckets.clients.len() >= MAX_TRACKED_CLIENTS {
                // Too many indebted clients: the newcomers share the unknown client's bucket.
                key = None;
            }
        }
        let client_bucket = client_on.then(|| {
            let b = buckets
                .clients
                .entry(key)
                .or_insert_with(|| Bucket::full(l.per_client_burst, now));
            b.refill(now, l.per_client_per_sec, l.per_client_burst);
            b
        });
        if let Some(b) = &client_bucket {
            let wait = b.wait(l.per_client_per_sec);
            if !wait.is_zero() {
                return Err(OpenRefused {
                    scope: OpenScope::Client,
                    retry_after: wait,
                });
            }
        }
        if global_on {
            let wait = buckets.global.wait(l.global_per_sec);
            if !wait.is_zero() {
                return Err(OpenRefused {
                    scope: OpenScope::Global,
                    retry_after: wait,
                });
            }
            buckets.global.tokens -= 1.0;
        }
        if let Some(b) = client_bucket {
            b.tokens -= 1.0;
        }
        Ok(())
    }

    /// Gives back the token [`admit`](Self::admit) took for `client` (and the global one),
    /// for a request that did not open a pool after all (its plugin never used the
    /// database): only opens count against the rates.
    pub fn refund(&self, client: Option<IpAddr>) {
        let l = self.limits;
        let mut guard = self.lock();
        let buckets = &mut *guard;
        if l.global_burst > 0 {
            buckets.global.give_back(l.global_burst);
        }
        if l.per_client_burst > 0 {
            // A client that was not tracked shared the unknown client's bucket.
            let key = client_key(client);
            let key = if buckets.clients.contains_key(&key) {
                key
            } else {
                None
            };
            if let Some(b) = buckets.clients.get_mut(&key) {
                b.give_back(l.per_client_burst);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limits(client: u32, global: u32) -> OpenRateLimits {
        OpenRateLimits {
            per_client_per_sec: 1.0,
            per_client_burst: client,
            global_per_sec: 10.0,
            global_burst: global,
        }
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let a = OpenAdmission::new(limits(3, 100));
        let ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let t0 = Instant::now();
        for _ in 0..3 {
            a.admit_at(ip, t0).unwrap();
        }
        let refused = a.admit_at(ip, t0).unwrap_err();
        assert_eq!(refused.scope, OpenScope::Client);
        assert_eq!(refused.retry_after_secs(), 1);
        // Another client is not affected.
        a.admit_at(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))), t0)
            .unwrap();
        // One second later, one more.
        let t1 = t0 + Duration::from_secs(1);
        a.admit_at(ip, t1).unwrap();
        assert!(a.admit_at(ip, t1).is_err());
    }

    #[test]
    fn a_refunded_token_can_be_taken_again() {
        let a = OpenAdmission::new(limits(2, 3));
        let ip = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let t0 = Instant::now();
        a.admit_at(ip, t0).unwrap();
        a.admit_at(ip, t0).unwrap();
        assert_eq!(a.admit_at(ip, t0).unwrap_err().scope, OpenScope::Client);
        a.refund(ip);
        a.admit_at(ip, t0).unwrap();
        // Refunds never fill a bucket past its burst.
        for _ in 0..10 {
            a.refund(ip);
        }
        a.admit_at(ip, t0).unwrap();
        a.admit_at(ip, t0).unwrap();
        assert!(a.admit_at(ip, t0).is_err());
    }

    #[test]
    fn the_global_bucket_bounds_all_clients_together() {
        let a = OpenAdmission::new(limits(100, 5));
        let t0 = Instant::now();
        for i in 0..5u8 {
            a.admit_at(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 1, i))), t0)
                .unwrap();
        }
        let refused = a
            .admit_at(Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))), t0)
            .unwrap_err();
        assert_eq!(refused.scope, OpenScope::Global);
    }

    #[test]
    fn an_ipv6_client_is_one_client_per_64_network() {
        let a = OpenAdmission::new(limits(2, 100));
        let t0 = Instant::now();
        let ip = |last: u16| {
            Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 1, 0, 0, 0, last,
            )))
        };
        a.admit_at(ip(1), t0).unwrap();
        a.admit_at(ip(2), t0).unwrap();
        assert!(a.admit_at(ip(3), t0).is_err(), "same /64, same bucket");
    }

    #[test]
    fn a_zero_burst_disables_a_limit() {
        let a = OpenAdmission::new(limits(0, 0));
        let t0 = Instant::now();
        for _ in 0..1000 {
            a.admit_at(None, t0).unwrap();
        }
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let a = OpenAdmission::new(OpenRateLimits {
            per_client_per_sec: 0.0,
            per_client_burst: 1,
            global_per_sec: 0.0,
            global_burst: 0,
        });
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CLIENTS as u32 + 100) {
            let _ = a.admit_at(Some(IpAddr::V4(Ipv4Addr::from(i))), t0);
        }
        let tracked = a.buckets.lock().unwrap().clients.len();
        assert!(tracked <= MAX_TRACKED_CLIENTS + 1, "{tracked}");
    }
}
