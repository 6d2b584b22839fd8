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
    /// How many rows have a gap (MIN above LRU): those the mean is over.
    pub gap_rows: usize,
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
            gap_rows: gaps.len(),
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
            // Rows where LRU already equals MIN have no gap: not in the mean.
            let without_gap = match self.rows.len() - v.gap_rows {
                0 => String::new(),
                n => format!(" ({n} without a gap)"),
            };
            let _ = write!(
                out,
                "- {p}: mean gap closed {:.2}% over {} rows{without_gap}; rows > 0.5 points below LRU: {}",
                v.mean_gap * 100.0,
                v.gap_rows,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trace: &str, lru: f64, min: f64, wtinylfu: f64, policy: f64) -> SuiteRow {
        SuiteRow {
            trace: trace.into(),
            capacity: 100,
            hits: vec![
                (LRU.into(), lru),
                (MIN.into(), min),
                (WTINYLFU.into(), wtinylfu),
                ("p".into(), policy),
            ],
        }
    }

    #[test]
    fn the_verdict_checks_each_criterion_and_averages_the_rows_with_a_gap() {
        let suite = Suite {
            rows: vec![
                // Closes 60% of a 10-point gap, above W-TinyLFU.
                row("a", 0.40, 0.50, 0.44, 0.46),
                // Closes 20%, 0.2 points below W-TinyLFU.
                row("b", 0.40, 0.50, 0.422, 0.42),
                // LRU is MIN: no gap; 0.6 points below LRU and W-TinyLFU.
                row("c", 0.30, 0.30, 0.30, 0.294),
            ],
        };
        let v = suite.verdict("p");
        assert_eq!(v.gap_rows, 2);
        assert!((v.mean_gap - 0.4).abs() < 1e-9, "{}", v.mean_gap);
        let names = |rows: &[(String, usize, f64)]| -> Vec<String> {
            rows.iter().map(|(t, _, _)| t.clone()).collect()
        };
        assert_eq!(names(&v.below_lru), ["c"]);
        assert_eq!(names(&v.below_wtinylfu), ["b", "c"]);
        let line = suite
            .markdown()
            .lines()
            .find(|l| l.starts_with("- p:"))
            .map(String::from)
            .unwrap_or_default();
        assert!(
            line.starts_with("- p: mean gap closed 40.00% over 2 rows (1 without a gap);"),
            "{line}"
        );
    }
}
