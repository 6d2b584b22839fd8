#!/usr/bin/env python3
"""A/B of the runtime bench between two builds, alternating (docs/BENCHMARKS.md).

usage: POLYMONGO_TEST_URI=mongodb://... runtime_ab.py OLD_BENCH_BIN NEW_BENCH_BIN ROUNDS
The binaries come from `cargo bench --no-run -p polymongo-host --bench runtime` in each
checkout (one CARGO_TARGET_DIR). Per round and build: `find_one/paired` (and, for NEW, again
with POLYMONGO_BENCH_DRIVER_MAX_TIME=1: the driver sends the same maxTimeMS as the host) and
the `/ping` rows; the order of the builds alternates every round. Prints each ratio's median.
A build without the `ping_polymongo_instantiating` row simply reports no value for it.
"""
import os, re, statistics, subprocess, sys
OLD, NEW, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = dict(os.environ)  # POLYMONGO_TEST_URI: one server for both builds
UNIT = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}
log = open(os.environ.get("AB_LOG", "runtime_ab.log"), "a")
def run(b, args, extra={}):
    out = subprocess.run([b, "--bench", *args], env=dict(base, **extra), capture_output=True, text=True, timeout=900).stdout
    log.write(out); log.flush(); return out
def crit(out, name):
    m = re.search(re.escape(name) + r"\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out)
    return float(m.group(1)) * UNIT[m.group(2)] if m else None
def paired(out, row):
    m = re.search(row + r"\s+p50.*?ratio p50 ([0-9.]+)", out); return float(m.group(1)) if m else None
R = {}
def put(k, v):
    if v is not None: R.setdefault(k, []).append(v)
jobs = [("old", OLD, {}), ("new", NEW, {}), ("new_fair", NEW, {"POLYMONGO_BENCH_DRIVER_MAX_TIME": "1"})]
for i in range(ROUNDS):
    order = jobs if i % 2 == 0 else jobs[::-1]
    for lab, b, extra in order:
        out = run(b, ["find_one/paired"], extra)
        put(lab + " find_one", paired(out, "plugin_request")); put(lab + " find_one_inst", paired(out, "plugin_request_instantiating"))
        if lab == "new_fair": continue
        out = run(b, ["request/ping_(polymongo|bare)", "--warm-up-time", "3", "--measurement-time", "8", "--noplot"])
        p, c, bb = crit(out, "request/ping_polymongo"), crit(out, "request/ping_polymongo_instantiating"), crit(out, "request/ping_bare_wasmtime")
        if p and bb: put(lab + " ping", p / bb)
        if c and bb: put(lab + " ping_inst", c / bb)
    print(i, {k: v[-1] for k, v in R.items()}, flush=True)
for k in sorted(R):
    v = R[k]; print(f"{k}: n={len(v)} median={statistics.median(v):.4f} min={min(v):.4f} max={max(v):.4f} all={[round(x,3) for x in v]}")
