#!/usr/bin/env python3
"""A/B of the runtime bench between two builds, alternating (docs/BENCHMARKS.md).

usage: POLYMONGO_TEST_URI=mongodb://... runtime_ab.py OLD_BENCH_BIN NEW_BENCH_BIN ROUNDS
The binaries come from `cargo bench --no-run -p polymongo-host --bench runtime` in each checkout.
"""
import os, re, statistics, subprocess, sys
OLD, NEW, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = dict(os.environ)  # POLYMONGO_TEST_URI: one server for both builds
UNIT = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3}
res = {"old": {"paired": [], "ping": [], "ping_res": []}, "new": {"paired": [], "ping": [], "ping_res": []}}
log = open(os.environ.get("AB_LOG", "runtime_ab.log"), "a")
def run(binary, args):
    out = subprocess.run([binary, "--bench", *args], env=env, capture_output=True, text=True, timeout=900).stdout
    log.write(out); log.flush()
    return out
def crit(out, name):
    m = re.search(re.escape(name) + r"\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", out)
    return float(m.group(1)) * UNIT[m.group(2)] if m else None
for i in range(ROUNDS):
    order = [("old", OLD), ("new", NEW)] if i % 2 == 0 else [("new", NEW), ("old", OLD)]
    for label, binary in order:
        out = run(binary, ["find_one/paired"])
        m = re.search(r"plugin_request\s+p50.*?ratio p50 ([0-9.]+)", out)
        if m: res[label]["paired"].append(float(m.group(1)))
        out = run(binary, ["request/ping_(polymongo|bare)", "--warm-up-time", "2", "--measurement-time", "4", "--noplot"])
        p, b = crit(out, "request/ping_polymongo"), crit(out, "request/ping_bare_wasmtime")
        r = crit(out, "request/ping_polymongo_resolving")
        if p and b: res[label]["ping"].append(p / b)
        if r and b: res[label]["ping_res"].append(r / b)
        print(i, label, {k: (v[-1] if v else None) for k, v in res[label].items()}, flush=True)
for label in ("old", "new"):
    for k, v in res[label].items():
        if v:
            print(f"{label} {k}: n={len(v)} median={statistics.median(v):.4f} min={min(v):.4f} max={max(v):.4f} all={[round(x,3) for x in v]}")
