//! `polymongo replay`: eviction policies replayed on a trace, against LRU and Bélády's MIN.
//! No database needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use polymongo::pool::{builtin_policy, EvictionPolicy};
use polymongo::replay::{
    belady, generate, read_trace, simulate, write_trace, Report, Row, ScorerLoader, SimConfig,
    Trace, TraceSpec,
};
use polymongo::runtime::ScorerComponent;

/// Options of the replay.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Tenants in the synthetic trace.
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    /// Capacities (most pools open at once) to replay, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub capacity: Vec<usize>,
    /// Requests in the synthetic trace.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: usize,
    /// Seed of the synthetic trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Policies, comma-separated: `seed`, `lru`, `min`, or `wasm:PATH` (a scorer component).
    /// LRU and MIN are always replayed as bounds.
    #[arg(long, value_delimiter = ',', default_value = "seed,lru,min")]
    pub policies: Vec<String>,
    /// Replay this trace file (one key per line, LIRS format; `*` lines and blanks ignored;
    /// `.gz` accepted) instead of a synthetic one.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Also write the (synthetic) trace to this file, one database name per line (`.gz` to
    /// compress).
    #[arg(long)]
    pub save_trace: Option<PathBuf>,
    /// Zipf exponent of tenant popularity in the synthetic trace.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Tenants pinned (priority -1) in the synthetic trace.
    #[arg(long, default_value_t = 10)]
    pub pinned: usize,
    /// Sessions running at once in the synthetic trace.
    #[arg(long, default_value_t = 32)]
    pub sessions: usize,
    /// Mean operations per session in the synthetic trace.
    #[arg(long, default_value_t = 6.0)]
    pub session_ops: f64,
    /// Where the full scan starts, as a fraction of the synthetic trace (> 1: no scan).
    #[arg(long, default_value_t = 0.25)]
    pub scan_at: f64,
    /// Where popularity is reshuffled, as a fraction of the synthetic trace (> 1: never).
    #[arg(long, default_value_t = 0.5)]
    pub shift_at: f64,
    /// Bursts of cold tenants in the synthetic trace.
    #[arg(long, default_value_t = 10)]
    pub bursts: usize,
    /// Milliseconds between requests.
    #[arg(long, default_value_t = 10)]
    pub step_ms: u64,
    /// Time one wasm scoring call may take before the decision falls back, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub budget_ms: u64,
}

enum Policy {
    Builtin(String),
    Min,
    Wasm(String, Arc<ScorerComponent>),
}

/// Runs the replay and prints the report (markdown) on stdout.
pub fn run(args: ReplayArgs) -> Result<()> {
    if args.capacity.is_empty() || args.capacity.contains(&0) {
        bail!("--capacity needs capacities of at least 1");
    }
    let (trace, description) = match &args.trace {
        Some(path) => {
            let trace = read_trace(path).with_context(|| format!("reading {}", path.display()))?;
            let description = format!(
                "external trace {}: {} requests, {} distinct keys",
                path.display(),
                trace.requests.len(),
                trace.keys()
            );
            (trace, description)
        }
        None => {
            let spec = TraceSpec {
                tenants: args.tenants,
                requests: args.requests,
                seed: args.seed,
                zipf_exponent: args.zipf,
                pinned: args.pinned,
                concurrent_sessions: args.sessions,
                mean_session_ops: args.session_ops,
                scan_at: args.scan_at,
                shift_at: args.shift_at,
                bursts: args.bursts,
                ..TraceSpec::default()
            };
            if spec.tenants == 0 || spec.pinned > spec.tenants {
                bail!("--tenants must be at least 1 and at least --pinned");
            }
            let trace = generate(&spec);
            (trace, spec.describe())
        }
    };
    if let Some(path) = &args.save_trace {
        write_trace(&trace, path).with_context(|| format!("writing {}", path.display()))?;
    }
    let pinned = trace.pinned();
    if let Some(&k) = args.capacity.iter().find(|&&k| k <= pinned) {
        bail!("capacity {k} leaves no room beside the {pinned} pinned tenants");
    }

    let loader = ScorerLoader::new(Duration::from_millis(1))?;
    let mut policies = vec![Policy::Builtin("lru".into()), Policy::Min];
    for name in &args.policies {
        let name = name.trim();
        if let Some(path) = name.strip_prefix("wasm:") {
            let component = loader.load_file(std::path::Path::new(path))?;
            policies.push(Policy::Wasm(name.to_string(), component));
        } else if name == "min" || name == "lru" {
            // Always replayed as bounds.
        } else if builtin_policy(name).is_some() {
            policies.push(Policy::Builtin(name.to_string()));
        } else {
            bail!("unknown policy {name:?}: expected seed, lru, min or wasm:PATH");
        }
    }

    println!("Trace: {description}");
    println!(
        "Distinct keys requested: {}; pinned: {pinned}; one request every {} ms.",
        trace.distinct_requested(),
        args.step_ms
    );
    println!();
    let budget = Duration::from_millis(args.budget_ms);
    let mut report = Report::default();
    for &capacity in &args.capacity {
        for policy in &policies {
            let row = replay_one(&trace, capacity, policy, &loader, budget, args.step_ms);
            eprintln!(
                "K={capacity} {}: hit ratio {:.2}% in {:.1} s",
                row.policy,
                row.result.hit_ratio() * 100.0,
                row.result.elapsed.as_secs_f64()
            );
            report.rows.push(row);
        }
    }
    print!("{}", report.markdown());
    Ok(())
}

fn replay_one(
    trace: &Trace,
    capacity: usize,
    policy: &Policy,
    loader: &ScorerLoader,
    budget: Duration,
    step_ms: u64,
) -> Row {
    let mut config = SimConfig::new(capacity);
    config.step_ms = step_ms;
    let (label, result, scorer_failures) = match policy {
        Policy::Min => ("min".to_string(), belady(trace, capacity), None),
        Policy::Builtin(name) => {
            let p: Arc<dyn EvictionPolicy> = builtin_policy(name).expect("checked");
            (name.clone(), simulate(trace, p.as_ref(), &config), None)
        }
        Policy::Wasm(label, component) => {
            let scorer = loader.policy(component, budget);
            let result = simulate(trace, &scorer, &config);
            (label.clone(), result, Some(scorer.failures()))
        }
    };
    Row {
        capacity,
        policy: label,
        result,
        scorer_failures,
    }
}
