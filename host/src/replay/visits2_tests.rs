//! Unit tests of `visits2.rs`.
use super::*;

/// A small deterministic generator (xorshift64*), uniform in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

/// `requests` requests of 8 concurrent sessions of 1–8 operations on keys drawn with a
/// skew (key = 2000^u, shuffled by `offset` after `shift`); from `scan` on, every other
/// request goes to the next of keys 0–4,999, once each (a scan of every key).
fn trace(requests: usize, scan: usize, shift: usize, offset: u32) -> Vec<u32> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut sessions = [(0u32, 0u32); 8];
    let mut scanned = 0u32;
    let mut out = Vec::with_capacity(requests);
    for i in 0..requests {
        if i >= scan && scanned < 5000 && i % 2 == 0 {
            out.push(scanned);
            scanned += 1;
            continue;
        }
        let s = (uniform(&mut state) * 8.0) as usize;
        if sessions[s].1 == 0 {
            let key = 2000f64.powf(uniform(&mut state)) as u32;
            let key = if i >= shift {
                (key * 7919 + offset) % 2000
            } else {
                key
            };
            sessions[s] = (key, 1 + (uniform(&mut state) * 8.0) as u32);
        }
        sessions[s].1 -= 1;
        out.push(sessions[s].0);
    }
    out
}

fn hits(expert: &mut dyn Expert, requests: &[u32]) -> u32 {
    requests
        .iter()
        .map(|&k| u32::from(expert.request(k, 0)))
        .sum()
}

#[test]
fn switches_parse() {
    assert_eq!(Config::parse("visits2"), Some(Config::default()));
    assert_eq!(Config::parse("visits"), None);
    assert_eq!(Config::parse("visits2x"), None);
    assert_eq!(Config::parse("visits2:nope"), None);
    assert_eq!(Config::parse("visits2:port"), Some(Config::port()));
    let c = Config::parse("visits2:asvisits:near=2:shift=15:hazard:pos=0").unwrap();
    assert_eq!(c.near, 2.0);
    assert_eq!(c.shift_evidence, 15.0);
    assert!(c.learnt_gaps && !c.by_position && !c.weigh_visits);
}

#[test]
fn sessions_on_skewed_keys_beat_lru() {
    // 8 sessions at once, each a few operations on one key, keys drawn with a skew: the
    // session model (`visits2`, and `visits`, its settings before) keeps the popular keys
    // and the sessions in progress, LRU mixes them up.
    let requests = trace(100_000, usize::MAX, usize::MAX, 0);
    for config in [Config::default(), Config::as_visits()] {
        let mut visits = Visits2Expert::new(config);
        let mut lru = super::super::experts::Lru::new();
        visits.resize(50);
        lru.resize(50);
        let (v, l) = (hits(&mut visits, &requests), hits(&mut lru, &requests));
        assert!(v > l + 1000, "{} {v} hits, lru {l}", visits.name());
        assert!(visits.cached() <= 50);
    }
}

#[test]
fn a_scan_costs_less_than_with_visits() {
    // The synthetic trace with nothing but sessions and a scan of every key: during the
    // scan q(1) collapses, its keys lose their protection after one operation and their
    // visits hardly count, so the cache is less disturbed than with `visits`.
    let spec = super::super::trace::TraceSpec {
        tenants: 10_000,
        requests: 100_000,
        scan_at: 0.5,
        shift_at: 2.0,
        bursts: 0,
        pinned: 0,
        ..Default::default()
    };
    let requests = super::super::trace::generate(&spec).requests;
    let mut old = Visits2Expert::new(Config::as_visits());
    let mut new = Visits2Expert::default();
    old.resize(100);
    new.resize(100);
    let (mut old_hits, mut new_hits) = (0, 0);
    for (i, &k) in requests.iter().enumerate() {
        let (o, n) = (old.request(k, 0), new.request(k, 0));
        // The scan takes about 20,000 requests from 50,000 on.
        if (50_000..70_000).contains(&i) {
            old_hits += u32::from(o);
            new_hits += u32::from(n);
        }
    }
    assert!(
        new_hits > old_hits + 200,
        "visits2 {new_hits}, visits {old_hits}"
    );
    // The weight of a new visit, after the scan, is back near 1.
    assert!(new.visits.weight() > 0.8, "{}", new.visits.weight());
}

#[test]
fn the_detector_fires_on_the_shift_only() {
    let requests = trace(80_000, usize::MAX, 40_000, 977);
    let mut expert = Visits2Expert::default();
    expert.resize(60);
    let mut resets = Vec::new();
    for &k in &requests {
        let before = expert.history.reset_at;
        expert.request(k, 0);
        if expert.history.reset_at != before {
            resets.push(expert.history.reset_at);
        }
    }
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert!((40_000..50_000).contains(&resets[0]), "{resets:?}");
}
