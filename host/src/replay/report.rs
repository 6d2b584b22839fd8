//! Replay results as a markdown table.

use std::fmt::Write;

use super::sim::SimResult;

/// Label of the LRU bound in a report.
pub const LRU: &str = "lru";
/// Label of the MIN bound in a report.
pub const MIN: &str = "min";

/// One policy replayed at one capacity.
#[derive(Debug, Clone)]
pub struct Row {
    /// Capacity K.
    pub capacity: usize,
    /// Policy label (`lru` and `min` are the bounds).
    pub policy: String,
    /// What happened.
    pub result: SimResult,
    /// For wasm scorers: calls that trapped or timed out.
    pub scorer_failures: Option<u64>,
    /// For wasm scorers: the longest `score-all` call.
    pub scorer_slowest: Option<std::time::Duration>,
}

/// Share of the LRU→MIN hit-ratio gap that `hit` closes: `(hit - lru) / (min - lru)`
/// (`None` when MIN does no better than LRU).
pub fn gap_closed(hit: f64, lru: f64, min: f64) -> Option<f64> {
    let gap = min - lru;
    (gap > 1e-12).then(|| (hit - lru) / gap)
}

/// All rows of a replay run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The rows, in the order they were run.
    pub rows: Vec<Row>,
}

impl Report {
    /// The row of `policy` at `capacity`.
    pub fn get(&self, capacity: usize, policy: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.capacity == capacity && r.policy == policy)
    }

    /// The share of the LRU→MIN gap `row` closes, if both bounds were run at its capacity.
    pub fn gap(&self, row: &Row) -> Option<f64> {
        let lru = self.get(row.capacity, LRU)?.result.hit_ratio();
        let min = self.get(row.capacity, MIN)?.result.hit_ratio();
        gap_closed(row.result.hit_ratio(), lru, min)
    }

    /// The table: one line per capacity and policy.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| K | policy | pool hit ratio | opens | closes | LRU→MIN gap closed | fallbacks | time (s) |\n",
        );
        out.push_str("|---:|:---|---:|---:|---:|---:|---:|---:|\n");
        for row in &self.rows {
            let r = &row.result;
            let gap = match self.gap(row) {
                Some(g) => format!("{:.1}%", g * 100.0),
                None => "–".into(),
            };
            let fallbacks = match row.scorer_failures {
                Some(failures) if failures > 0 => {
                    format!("{} ({failures} failed calls)", r.policy_fallbacks)
                }
                _ => r.policy_fallbacks.to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.2}% | {} | {} | {} | {} | {:.1} |",
                row.capacity,
                row.policy,
                r.hit_ratio() * 100.0,
                r.opens,
                r.closes,
                gap,
                fallbacks,
                r.elapsed.as_secs_f64(),
            );
        }
        self.slowest_line(&mut out, "Slowest scorer call", |row| {
            row.scorer_slowest.map(|took| (took, String::new()))
        });
        self.slowest_line(&mut out, "Slowest request", |row| {
            let (took, at) = row.result.slowest_request;
            (!took.is_zero()).then(|| (took, format!(" (request {at})")))
        });
        out
    }

    /// Appends `title: POLICY at K = K: T ms…; …` for the rows `of` gives a time (and a
    /// suffix) for; nothing when it gives none.
    fn slowest_line(
        &self,
        out: &mut String,
        title: &str,
        of: impl Fn(&Row) -> Option<(std::time::Duration, String)>,
    ) {
        let parts: Vec<String> = self
            .rows
            .iter()
            .filter_map(|row| {
                let (took, suffix) = of(row)?;
                Some(format!(
                    "{} at K = {}: {:.1} ms{suffix}",
                    row.policy,
                    row.capacity,
                    took.as_secs_f64() * 1e3
                ))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(out, "\n{title}: {}", parts.join("; "));
        }
    }
}
