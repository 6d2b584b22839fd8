//! `polymongo replay`: eviction policies replayed on a trace, against LRU and Bélády's MIN.
//! No database needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use polymongo::pool::{builtin_policy, EvictionPolicy};
use polymongo::replay::{
    belady_recording, generate, held_out_lfu, read_trace, simulate, write_trace, DisruptedAt,
    Disruption, LeaderRule, Report, Row, ScorerLoader, SimConfig, Suite, SuiteRow, Trace,
    TraceSpec, WTinyLfuPolicy, WTINYLFU,
};
use polymongo::runtime::{ScorerComponent, ScorerLimits};

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
    /// Policies, comma-separated: `seed`, `lru`, `min`, `wtinylfu` (W-TinyLFU with
    /// Caffeine's adaptive window), `follow:SPEC` (the scorer-hybrid follower natively, an
    /// experiment), `heldout-lfu` (an analysis aid: A0 with probabilities from the other
    /// half of the trace), or `wasm:PATH` (a scorer component). LRU and MIN are always
    /// replayed as bounds; with `--suite`, W-TinyLFU too.
    #[arg(long, value_delimiter = ',', default_value = "seed,lru,min")]
    pub policies: Vec<String>,
    /// Replay this trace file (one key per line, LIRS format; `*` lines and blanks ignored;
    /// `.gz` accepted) instead of a synthetic one.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Replay every trace file in this folder (sorted by name) at every `--capacity`, plus
    /// the `--synthetic` traces, and print one table: hit ratio per policy and the share of
    /// the LRU→MIN gap closed.
    #[arg(long)]
    pub suite: Option<PathBuf>,
    /// With `--suite`: synthetic traces to add, as `SEED:ZIPF` pairs, comma-separated (the
    /// other synthetic options apply to all of them).
    #[arg(long, value_delimiter = ',')]
    pub synthetic: Vec<String>,
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
    /// Restart each wasm scorer once, as after a trap, at this request (from 0): its next call
    /// starts a fresh instance given the latest `--replay-events` events, as in the host.
    #[arg(long, conflicts_with = "reload_at")]
    pub restart_at: Option<u64>,
    /// Replace each wasm scorer once, at this request (from 0), by a new instance of it that
    /// takes over the latest `--replay-events` events, as a host does when a new version of
    /// the active scorer is deployed (`--replay-events 0`: it starts empty).
    #[arg(long)]
    pub reload_at: Option<u64>,
    /// Events a restarted or redeployed wasm scorer is given again (the host's
    /// `scorer_replay_events`).
    #[arg(long, default_value_t = 1 << 16)]
    pub replay_events: usize,
    /// With `--suite` (analysis): also print the share of the LRU→MIN gap each policy closes
    /// in each phase of every trace, the phases cut at these fractions of the trace,
    /// comma-separated (for the synthetic traces e.g. `0.15,0.25,0.28,0.5,0.65`: warm-up,
    /// steady state, scan, steady state, after the shift, the rest).
    #[arg(long, value_delimiter = ',')]
    pub phases: Vec<f64>,
}

enum Policy {
    Builtin(String),
    Reference,
    Follow(String),
    Min,
    /// `heldout-lfu`: an analysis aid, the ceiling of online policies on IRM traces.
    HeldOutLfu,
    Wasm(String, Arc<ScorerComponent>),
}

impl ReplayArgs {
    fn spec(&self, seed: u64, zipf: f64) -> Result<TraceSpec> {
        let spec = TraceSpec {
            tenants: self.tenants,
            requests: self.requests,
            seed,
            zipf_exponent: zipf,
            pinned: self.pinned,
            concurrent_sessions: self.sessions,
            mean_session_ops: self.session_ops,
            scan_at: self.scan_at,
            shift_at: self.shift_at,
            bursts: self.bursts,
            ..TraceSpec::default()
        };
        if spec.tenants == 0 || spec.pinned > spec.tenants {
            bail!("--tenants must be at least 1 and at least --pinned");
        }
        Ok(spec)
    }
}

fn parse_policies(names: &[String], loader: &ScorerLoader, suite: bool) -> Result<Vec<Policy>> {
    let mut policies = vec![Policy::Builtin("lru".into()), Policy::Min];
    if suite {
        policies.push(Policy::Reference);
    }
    for name in names {
        let name = name.trim();
        if let Some(path) = name.strip_prefix("wasm:") {
            let component = loader.load_file(std::path::Path::new(path))?;
            policies.push(Policy::Wasm(name.to_string(), component));
        } else if name == "min" || name == "lru" || (suite && name == WTINYLFU) {
            // Always replayed.
        } else if name == WTINYLFU {
            policies.push(Policy::Reference);
        } else if name == "heldout-lfu" {
            policies.push(Policy::HeldOutLfu);
        } else if name.starts_with("follow:") {
            follow_policy(name)?;
            policies.push(Policy::Follow(name.to_string()));
        } else if builtin_policy(name).is_some() {
            policies.push(Policy::Builtin(name.to_string()));
        } else {
            bail!("unknown policy {name:?}: expected seed, lru, min, wtinylfu, heldout-lfu, follow:SPEC or wasm:PATH");
        }
    }
    Ok(policies)
}

/// Runs the replay (or the suite) and prints the report (markdown) on stdout.
pub fn run(args: ReplayArgs) -> Result<()> {
    if args.capacity.is_empty() || args.capacity.contains(&0) {
        bail!("--capacity needs capacities of at least 1");
    }
    if let Some(dir) = &args.suite {
        return run_suite(&args, dir);
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
            let spec = args.spec(args.seed, args.zipf)?;
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
    let policies = parse_policies(&args.policies, &loader, false)?;

    println!("Trace: {description}");
    println!(
        "Distinct keys requested: {}; pinned: {pinned}; one request every {} ms.",
        trace.distinct_requested(),
        args.step_ms
    );
    println!();
    let wasm = WasmRun::new(&loader, &args);
    let mut report = Report::default();
    for &capacity in &args.capacity {
        for policy in &policies {
            let row = replay_one(&trace, capacity, policy, &wasm, args.step_ms, false);
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

/// How wasm scorers are run: their engine, limits, and the request a restart or a reload
/// comes at.
struct WasmRun<'a> {
    loader: &'a ScorerLoader,
    limits: ScorerLimits,
    restart_at: Option<u64>,
    reload_at: Option<u64>,
}

impl<'a> WasmRun<'a> {
    /// The wasm settings `args` ask for (`--budget-ms`, `--replay-events`, `--restart-at`,
    /// `--reload-at`).
    fn new(loader: &'a ScorerLoader, args: &ReplayArgs) -> Self {
        Self {
            loader,
            limits: ScorerLimits {
                budget: Duration::from_millis(args.budget_ms),
                replay_events: args.replay_events,
                ..ScorerLimits::default()
            },
            restart_at: args.restart_at,
            reload_at: args.reload_at,
        }
    }
}

fn replay_one(
    trace: &Trace,
    capacity: usize,
    policy: &Policy,
    wasm: &WasmRun<'_>,
    step_ms: u64,
    record_hits: bool,
) -> Row {
    let mut config = SimConfig::new(capacity);
    config.step_ms = step_ms;
    config.record_hits = record_hits;
    let mut scorer_slowest = None;
    let (label, result, scorer_failures) = match policy {
        Policy::Min => (
            "min".to_string(),
            belady_recording(trace, capacity, record_hits),
            None,
        ),
        Policy::HeldOutLfu => (
            "heldout-lfu".to_string(),
            held_out_lfu(trace, capacity),
            None,
        ),
        Policy::Reference => {
            let p = WTinyLfuPolicy::new();
            (WTINYLFU.to_string(), simulate(trace, &p, &config), None)
        }
        Policy::Follow(name) => {
            let p = follow_policy(name).expect("checked");
            (name.clone(), simulate(trace, &p, &config), None)
        }
        Policy::Builtin(name) => {
            let p: Arc<dyn EvictionPolicy> = builtin_policy(name).expect("checked");
            (name.clone(), simulate(trace, p.as_ref(), &config), None)
        }
        Policy::Wasm(label, component) => {
            let scorer = Arc::new(wasm.loader.policy_with_limits(component, wasm.limits));
            let disruption = match (wasm.restart_at, wasm.reload_at) {
                (Some(at), _) => Some((Disruption::Restart, at)),
                (None, Some(at)) => {
                    let (component, limits, tick) =
                        (component.clone(), wasm.limits, wasm.loader.tick());
                    let make = move || component.policy_with_limits(limits, tick);
                    Some((Disruption::Reload(Box::new(make)), at))
                }
                (None, None) => None,
            };
            let (result, failures) = match disruption {
                Some((disruption, at)) => {
                    let disrupted = DisruptedAt::new(scorer, disruption, at);
                    let result = simulate(trace, &disrupted, &config);
                    scorer_slowest = Some(disrupted.slowest_call());
                    (result, disrupted.failures())
                }
                None => {
                    let result = simulate(trace, scorer.as_ref(), &config);
                    scorer_slowest = Some(scorer.slowest_call());
                    (result, scorer.failures())
                }
            };
            (label.clone(), result, Some(failures))
        }
    };
    Row {
        capacity,
        policy: label,
        result,
        scorer_failures,
        scorer_slowest,
    }
}

/// `follow:E1+E2…[@HALF_LIFE/MARGIN[~RELATIVE][/CONFIDENCE[/SWITCH_COST[/SUPPORT[/CUSUM_COST[/lazy|eager[/LEARNT_COST[/COST_PRIOR]]]]]]]]`: the follower of `scorer-hybrid`,
/// natively, with experts among `wtinylfu`, `lru`, `arc`, `visits`, `lirs` (and, for experiments,
/// `hyperbolic`, `density`, `s3fifo`, `lfu`, `visits2[:switch[=value]…]`; the scorer
/// is what ships).
fn follow_policy(spec: &str) -> Result<WTinyLfuPolicy> {
    let body = spec.trim_start_matches("follow:");
    let (names, rule) = match body.split_once('@') {
        Some((names, rule)) => (names, Some(rule)),
        None => (body, None),
    };
    let mut experts = Vec::new();
    for name in names.split('+') {
        experts.push(
            WTinyLfuPolicy::expert(name)
                .with_context(|| format!("{spec}: unknown expert {name:?}"))?,
        );
    }
    let mut leader = LeaderRule::default();
    if let Some(rule) = rule {
        let (h, m) = rule
            .split_once('/')
            .with_context(|| format!("{spec}: expected @HALF_LIFE/MARGIN"))?;
        let mut rest = m.split('/');
        let m = rest.next().unwrap_or_default();
        let z = rest.next();
        let cost = rest.next();
        let support = rest.next();
        let cusum = rest.next();
        let lazy = rest.next();
        let learnt = rest.next();
        let prior = rest.next();
        let vote = rest.next();
        let blend = rest.next();
        leader.half_life_per_slot = h.parse().context("half-life")?;
        match m.split_once('~') {
            Some((absolute, relative)) => {
                leader.margin = absolute.parse().context("margin")?;
                leader.relative_margin = relative.parse().context("relative margin")?;
            }
            None => leader.margin = m.parse().context("margin")?,
        }
        if let Some(z) = z {
            leader.confidence = z.parse().context("confidence")?;
        }
        if let Some(cost) = cost {
            leader.switch_cost = cost.parse().context("switch cost")?;
        }
        if let Some(support) = support {
            leader.support_scale = support.parse().context("support scale")?;
        }
        if let Some(cusum) = cusum {
            leader.cusum_cost = cusum.parse().context("CUSUM cost")?;
        }
        if let Some(lazy) = lazy {
            leader.lazy = match lazy {
                "lazy" => true,
                "eager" => false,
                other => bail!("{spec}: expected lazy or eager, not {other:?}"),
            };
        }
        if let Some(learnt) = learnt {
            leader.learnt_cost = learnt.parse().context("learnt cost")?;
        }
        if let Some(prior) = prior {
            leader.cost_prior = prior.parse().context("cost prior")?;
        }
        if let Some(vote) = vote {
            let (tight, vote) = match vote.strip_prefix("tight") {
                Some(scale) => (true, scale),
                None => (false, vote),
            };
            leader.vote_fallback_margin = tight.then_some(0.0);
            let (fallback, vote) = match vote.strip_prefix("until") {
                Some(scale) => (true, scale),
                None => (false, vote),
            };
            leader.vote_fallback = fallback;
            let (within, scale) = match vote.strip_prefix("leader") {
                Some(scale) => (true, scale),
                None => (false, vote),
            };
            leader.vote_within = within;
            leader.vote = scale.parse().context("vote scale")?;
        }
        if let Some(blend) = blend {
            leader.blend = blend.parse().context("blend scale")?;
        }
    }
    Ok(WTinyLfuPolicy::following(experts, leader))
}

/// A labelled trace of the suite.
struct Entry {
    label: String,
    trace: Trace,
}

fn suite_traces(args: &ReplayArgs, dir: &Path) -> Result<Vec<Entry>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && !n.ends_with(".md"))
        })
        .collect();
    files.sort();
    let mut entries = Vec::new();
    for path in files {
        let trace = read_trace(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let label = name
            .trim_end_matches(".gz")
            .trim_end_matches(".trace")
            .trim_end_matches(".lirs")
            .to_string();
        entries.push(Entry { label, trace });
    }
    for pair in &args.synthetic {
        let (seed, zipf) = pair
            .split_once(':')
            .with_context(|| format!("--synthetic {pair:?}: expected SEED:ZIPF"))?;
        let seed: u64 = seed.trim().parse().context("--synthetic: seed")?;
        let zipf: f64 = zipf.trim().parse().context("--synthetic: Zipf exponent")?;
        let spec = args.spec(seed, zipf)?;
        entries.push(Entry {
            label: format!("synthetic s{seed} z{zipf}"),
            trace: generate(&spec),
        });
    }
    if entries.is_empty() {
        bail!("no traces in {} and no --synthetic", dir.display());
    }
    Ok(entries)
}

/// A progress bar on stderr: `[#####.....] done/total label`.
fn progress(done: usize, total: usize, label: &str) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    eprint!(
        "\r[{}{}] {done}/{total} {label:<60.60}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    if done == total {
        eprintln!();
    }
}

fn run_suite(args: &ReplayArgs, dir: &Path) -> Result<()> {
    if args.trace.is_some() || args.save_trace.is_some() {
        bail!("--suite replays a folder: --trace and --save-trace do not apply");
    }
    let entries = suite_traces(args, dir)?;
    let loader = ScorerLoader::new(Duration::from_millis(1))?;
    let policies = parse_policies(&args.policies, &loader, true)?;
    let wasm = WasmRun::new(&loader, args);
    println!(
        "Suite: {} traces ({}), capacities {:?}; one request every {} ms.",
        entries.len(),
        entries
            .iter()
            .map(|e| format!("{}: {} requests", e.label, e.trace.requests.len()))
            .collect::<Vec<_>>()
            .join("; "),
        args.capacity,
        args.step_ms
    );
    println!();
    let total = entries.len() * args.capacity.len() * policies.len();
    let mut done = 0;
    let mut suite = Suite::default();
    let mut phase_rows = Vec::new();
    for entry in &entries {
        for &capacity in &args.capacity {
            if capacity <= entry.trace.pinned() {
                bail!("capacity {capacity} leaves no room beside the pinned tenants");
            }
            let mut row = SuiteRow {
                trace: entry.label.clone(),
                capacity,
                hits: Vec::new(),
            };
            let mut flags = Vec::new();
            for policy in &policies {
                let r = replay_one(
                    &entry.trace,
                    capacity,
                    policy,
                    &wasm,
                    args.step_ms,
                    !args.phases.is_empty(),
                );
                done += 1;
                progress(
                    done,
                    total,
                    &format!(
                        "{} K={capacity} {}: {:.2}%",
                        entry.label,
                        r.policy,
                        r.result.hit_ratio() * 100.0
                    ),
                );
                if r.result.policy_fallbacks > 0 {
                    eprintln!(
                        "\n{} K={capacity} {}: {} decisions fell back",
                        entry.label, r.policy, r.result.policy_fallbacks
                    );
                }
                let ratio = r.result.hit_ratio();
                flags.push((r.policy.clone(), r.result.hit_flags));
                row.hits.push((r.policy, ratio));
            }
            if !args.phases.is_empty() {
                phase_rows.push(phase_row(&row, &flags, &args.phases));
            }
            suite.rows.push(row);
        }
    }
    print!("{}", suite.markdown());
    if !args.phases.is_empty() {
        println!();
        println!(
            "Gap closed by phase: the share of each phase's LRU→MIN gap a policy closes (in \
             brackets, the phase's share of the row's gap)."
        );
        println!();
        phase_rows.iter().for_each(|r| print!("{r}"));
    }
    Ok(())
}

/// The gap closed by each policy of `row` in each phase (cut at `cuts`, fractions of the
/// trace), as markdown lines: one per policy, LRU and MIN left out.
fn phase_row(row: &SuiteRow, flags: &[(String, Vec<bool>)], cuts: &[f64]) -> String {
    let find = |p: &str| flags.iter().find(|(q, _)| q == p).map(|(_, f)| f);
    let (Some(lru), Some(min)) = (find("lru"), find("min")) else {
        return String::new();
    };
    let n = lru.len();
    let mut bounds = vec![0];
    bounds.extend(
        cuts.iter()
            .map(|&c| ((c.clamp(0.0, 1.0) * n as f64) as usize).min(n)),
    );
    bounds.push(n);
    let hits = |f: &[bool], a: usize, b: usize| f[a..b].iter().filter(|&&h| h).count() as f64;
    let total = hits(min, 0, n) - hits(lru, 0, n);
    let mut out = String::new();
    for (policy, f) in flags {
        if policy == "lru" || policy == "min" || f.len() != n {
            continue;
        }
        out.push_str(&format!("| {} | {} | {policy} |", row.trace, row.capacity));
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (l, m) = (hits(lru, a, b), hits(min, a, b));
            let closed = if m > l {
                (hits(f, a, b) - l) / (m - l) * 100.0
            } else {
                0.0
            };
            let share = if total > 0.0 {
                (m - l) / total * 100.0
            } else {
                0.0
            };
            out.push_str(&format!(
                " {:.0}–{:.0}%: {closed:.1}% [{share:.0}%] |",
                a as f64 / n as f64 * 100.0,
                b as f64 / n as f64 * 100.0
            ));
        }
        out.push('\n');
    }
    out
}
