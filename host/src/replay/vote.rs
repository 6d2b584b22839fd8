//! Deciding each eviction by a weighted vote of the experts (an experiment switch of the
//! [`Follower`](super::follow::Follower), `LeaderRule::vote`), instead of following one
//! leader.
//!
//! Every expert `e` has a weight `w_e = e^(−(best − r_e) / scale)` from its decayed hit
//! ratio `r_e` (the best counts 1, one `scale` behind ≈ 0.37). Evicting a real pool `c`
//! costs expert `e` nothing when `e` does not hold `c` (to `e` it is a stray) or when `c` is
//! `e`'s own next victim, and `w_e` otherwise; the pool the experts, so weighted, mind least
//! goes (ties to the least recently used). When one expert is clearly best and the real pools
//! are its cache, that is exactly its own victim; when two are close, what both would drop
//! goes first, so the real pools become a blend of the close experts instead of migrating
//! from one to the other at each change of leader.
//!
//! No dependency beyond std, so that a scorer component can include this file.

use super::experts::Expert;

/// The index in `keys` (the real evictable pools) of the pool the weighted experts mind
/// least. `ratios`: each expert's decayed hit ratio; `last_use`: each key's last request.
pub fn least_minded(
    experts: &mut [Box<dyn Expert + Send>],
    ratios: &[f64],
    scale: f64,
    keys: &[u32],
    last_use: &[u64],
) -> Option<usize> {
    let best = ratios.iter().copied().fold(0.0, f64::max);
    let weights: Vec<f64> = ratios
        .iter()
        .map(|&r| (-(best - r) / scale).exp())
        .collect();
    let victims: Vec<Option<u32>> = experts.iter_mut().map(|e| e.next_victim()).collect();
    let mut chosen: Option<(f64, u64, usize)> = None;
    for (i, &k) in keys.iter().enumerate() {
        let mut cost = 0.0;
        for ((expert, &w), &victim) in experts.iter().zip(&weights).zip(&victims) {
            if victim != Some(k) && expert.contains(k) {
                cost += w;
            }
        }
        let used = last_use[k as usize];
        if chosen.is_none_or(|(c, u, _)| (cost, used) < (c, u)) {
            chosen = Some((cost, used, i));
        }
    }
    chosen.map(|(_, _, i)| i)
}
