//! A suite of replays: several traces at several capacities, one table.

use std::fmt::Write;

use super::reference::WTINYLFU;
use super::report::{gap_closed, LRU, MIN};

/// One trace at one capacity: the hit ratio of every policy.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteRow {
    /// Trace label.
    pub trace: String,
    /// Capacity K.
    pub capacity: usize,
    /// (policy label, hit ratio in 0..=1), in column order.
    pub hits: Vec<(String, f64)>,
}

impl SuiteRow {
    /// The hit ratio of `policy`.
    pub fn hit(&self, policy: &str) -> Option<f64> {
        self.hits.iter().find(|(p, _)| p == policy).map(|&(_, h)| h)
    }

    /// The share of the LRU→MIN gap `policy` closes on this row.
    pub fn gap(&self, policy: &str) -> Option<f64> {
        gap_closed(self.hit(policy)?, self.hit(LRU)?, self.hit(MIN)?)
    }
}

/// The rows of a suite, and the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Suite {
    /// Rows in the order they were run.
    pub rows: Vec<SuiteRow>,
}

/// How a policy fared against the suite's criteria.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The policy.
    pub policy: String,
    /// Mean share of the LRU→MIN gap closed over the rows that have a gap.
    pub mean_gap: f64,
    /// Rows more than 0.5 points below LRU: (trace, K, points below).
    pub below_lru: Vec<(String, usize, f64)>,
    /// Rows below W-TinyLFU: (trace, K, points below).
    pub below_wtinylfu: Vec<(String, usize, f64)>,
}

fn is_bound(policy: &str) -> bool {
    policy == LRU || policy == MIN
}

impl Suite {
    /// Policies in column order (from the first row).
    pub fn policies(&self) -> Vec<String> {
        self.rows
            .first()
            .map(|r| r.hits.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default()
    }

    /// Mean gap closed, and the rows where `policy` is more than 0.5 points below LRU or
    /// below W-TinyLFU.
    pub fn verdict(&self, policy: &str) -> Verdict {
        let gaps: Vec<f64> = self.rows.iter().filter_map(|r| r.gap(policy)).collect();
        let mean_gap = if gaps.is_empty() {
            0.0
        } else {
            gaps.iter().sum::<f64>() / gaps.len() as f64
        };
        let mut below_lru = Vec::new();
        let mut below_wtinylfu = Vec::new();
        for row in &self.rows {
            let Some(hit) = row.hit(policy) else { continue };
            if let Some(lru) = row.hit(LRU) {
                let points = (lru - hit) * 100.0;
                if points > 0.5 {
                    below_lru.push((row.trace.clone(), row.capacity, points));
                }
            }
            if let Some(w) = row.hit(WTINYLFU) {
                let points = (w - hit) * 100.0;
                if points > 0.0 {
                    below_wtinylfu.push((row.trace.clone(), row.capacity, points));
                }
            }
        }
        Verdict {
            policy: policy.to_string(),
            mean_gap,
            below_lru,
            below_wtinylfu,
        }
    }

    /// The table (hit ratio per policy, the share of the LRU→MIN gap in parentheses), then
    /// one verdict line per policy other than the bounds.
    pub fn markdown(&self) -> String {
        let policies = self.policies();
        let mut out = String::from("| trace | K |");
        for p in &policies {
            let _ = write!(out, " {p} |");
        }
        out.push_str("\n|:---|---:|");
        out.push_str(&"---:|".repeat(policies.len()));
        out.push('\n');
        for row in &self.rows {
            let _ = write!(out, "| {} | {} |", row.trace, row.capacity);
            for p in &policies {
                match (row.hit(p), row.gap(p)) {
                    (Some(h), Some(g)) if !is_bound(p) => {
                        let _ = write!(out, " {:.2} ({:.0}%) |", h * 100.0, g * 100.0);
                    }
                    (Some(h), _) => {
                        let _ = write!(out, " {:.2} |", h * 100.0);
                    }
                    (None, _) => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
        for p in policies.iter().filter(|p| !is_bound(p)) {
            let v = self.verdict(p);
            let list = |rows: &[(String, usize, f64)]| {
                if rows.is_empty() {
                    "none".to_string()
                } else {
                    rows.iter()
                        .map(|(t, k, d)| format!("{t}@{k} (−{d:.2})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            let _ = write!(
                out,
                "- {p}: mean gap closed {:.2}% over {} rows; rows > 0.5 points below LRU: {}",
                v.mean_gap * 100.0,
                self.rows.len(),
                list(&v.below_lru)
            );
            if p != WTINYLFU {
                let _ = write!(out, "; rows below W-TinyLFU: {}", list(&v.below_wtinylfu));
            }
            out.push('\n');
        }
        out
    }
}
