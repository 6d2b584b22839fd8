//! The switches of [`Visits2Expert`](super::Visits2Expert): the variant's defaults and the
//! experiments tried with it (`visits2:NAME[=VALUE]:…`).

use super::VISIT_MODEL_RATE;

/// The switches of the variant (the default is `visits2`) and of the experiments tried
/// with it; `visits2:name[=value]:…` sets them ([`Config::parse`]; a switch without a value
/// is on, `=0` is off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// `pos`: learn the continuation chance by position (else one slow average, as
    /// `visits`).
    pub by_position: bool,
    /// `rate`: decay of the position counts per request (their memory is about `1 / rate`).
    pub position_rate: f64,
    /// `weigh`: count a new visit with weight `min(1, q(1)/q(2))`, topped up at its second
    /// operation.
    pub weigh_visits: bool,
    /// `wdet`: the shift detector weighs each visit's evidence by its weight.
    pub weighted_detector: bool,
    /// `reopen`: a reopened key within the visit span of its last use continues its visit
    /// (else, as in `visits`, every miss starts a visit).
    pub reopen_continues: bool,
    /// `wrate`: visits per request in the popularity term from the weighted visit counts
    /// (else from the unweighted share of requests that start a visit).
    pub weighted_visit_rate: bool,
    /// `shift`: evidence (nats) deemed a popularity shift.
    pub shift_evidence: f64,
    /// `short`: half-life of the short memory, in requests per unit of capacity.
    pub short_half_life: f64,
    /// `minshort`: ... and at least this many requests.
    pub min_short_half_life: f64,
    /// `minvisits`: ... and at least this many visits (this over the share of requests that
    /// start a visit, in requests).
    pub min_short_visits: f64,
    /// `near`: a visit whose key was used within this many visit spans gives no evidence of
    /// a shift (it may be the rest of a session split by a long gap; 0: every visit counts).
    pub near: f64,
    /// `hold`: no evidence is gathered for this many short half-lives after a reset.
    pub hold: f64,
    /// `mix`: the short memory's prediction is mixed with the long one's, with this weight
    /// on the long (0: the short memory alone).
    pub mix: f64,
    /// `oracle`: analysis only — no detector; the long memory is replaced once, at the
    /// first visit from this request on (0: never; `u64::MAX`: the detector decides).
    pub oracle: u64,
    /// `hazard`: the chance that a visit is still going on after an idle time, and the rate
    /// of its next operation, from the learnt distribution of gaps within visits (else:
    /// exponential with the mean gap).
    pub learnt_gaps: bool,
    /// `perkey`: when above 0, the chance that a key's new visit goes on past its first
    /// operation is the key's own record (its visits that went on, of its visits), shrunk
    /// towards the global `q(1)` with this weight in visits.
    pub per_key: f64,
    /// `gaprate`: weight of one gap in the running mean gap within a visit.
    pub gap_rate: f64,
    /// `young`: the popularity term is scaled by `n / (n + young)`, `n` the visits in the
    /// long memory (a young memory's shares are noisy; 0: no scaling).
    pub young: f64,
    /// `bayes`: the chance that a key's new visit is a real session is `w·π / (w·π +
    /// (1 − w)·u)`, with `w = min(1, q(1)/q(2))`, `π` the key's share of the long memory (at
    /// least `u`) and `u` one over the keys seen (one-off visits taken as spread evenly): it
    /// weighs the visit and, times `q(2)`, protects the key after its first operation.
    pub bayes: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            by_position: true,
            position_rate: 1e-3,
            weigh_visits: true,
            weighted_detector: false,
            reopen_continues: false,
            weighted_visit_rate: false,
            shift_evidence: 12.0,
            short_half_life: 3.0,
            min_short_half_life: 0.0,
            min_short_visits: 300.0,
            near: 4.0,
            hold: 0.0,
            mix: 0.0,
            oracle: u64::MAX,
            learnt_gaps: false,
            per_key: 0.0,
            gap_rate: VISIT_MODEL_RATE,
            young: 0.0,
            bayes: false,
        }
    }
}

impl Config {
    /// The settings of the expert `visits`, the model before `visits2`
    /// (`visits2:pos=0:weigh=0:shift=30:minvisits=0:near=0`; until `visits.rs` was removed a
    /// unit test checked, request by request, that they make exactly its decisions).
    pub fn as_visits() -> Self {
        Self {
            by_position: false,
            weigh_visits: false,
            shift_evidence: 30.0,
            min_short_visits: 0.0,
            near: 0.0,
            ..Self::default()
        }
    }

    /// The first port, continuation by position and weighted visits with the detector of
    /// `visits` (`visits2:shift=30:minvisits=0:near=0`).
    pub fn port() -> Self {
        Self {
            shift_evidence: 30.0,
            min_short_visits: 0.0,
            near: 0.0,
            ..Self::default()
        }
    }

    /// Parses `visits2[:switch[=value]…]` (an experiment name; `None` for other names).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("visits2")?;
        let mut config = Self::default();
        let rest = match rest.strip_prefix(':') {
            Some(r) => r,
            None if rest.is_empty() => return Some(config),
            None => return None,
        };
        for item in rest.split(':').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').unwrap_or((item, "1"));
            let on = v != "0";
            match k {
                "port" => config = Self::port(),
                "asvisits" => config = Self::as_visits(),
                "pos" => config.by_position = on,
                "rate" => config.position_rate = v.parse().ok()?,
                "weigh" => config.weigh_visits = on,
                "wdet" => config.weighted_detector = on,
                "reopen" => config.reopen_continues = on,
                "wrate" => config.weighted_visit_rate = on,
                "shift" => config.shift_evidence = v.parse().ok()?,
                "short" => config.short_half_life = v.parse().ok()?,
                "minshort" => config.min_short_half_life = v.parse().ok()?,
                "hold" => config.hold = v.parse().ok()?,
                "mix" => config.mix = v.parse().ok()?,
                "oracle" => config.oracle = v.parse().ok()?,
                "near" => config.near = v.parse().ok()?,
                "minvisits" => config.min_short_visits = v.parse().ok()?,
                "hazard" => config.learnt_gaps = on,
                "perkey" => config.per_key = v.parse().ok()?,
                "gaprate" => config.gap_rate = v.parse().ok()?,
                "young" => config.young = v.parse().ok()?,
                "bayes" => config.bayes = on,
                _ => return None,
            }
        }
        Some(config)
    }
}
