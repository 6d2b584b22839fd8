#!/usr/bin/env python3
"""Writes six held-out traces of classic access patterns (LIRS text format, gzipped) into
the folder given (default: ./patterns), for `polymongo replay --suite`. Deterministic: fixed
seeds, Python's Mersenne Twister. See docs/EVICTION.md, *Held-out check: classic access
patterns*.

    python3 docs/eviction/patterns.py /tmp/patterns
"""

import bisect
import gzip
import itertools
import os
import random
import sys


def zipf_sampler(n, exponent, rng):
    """Keys 0..n-1 with Zipf popularity, the ranks shuffled over the keys."""
    weights = [1 / (i + 1) ** exponent for i in range(n)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    ranks = list(range(n))
    rng.shuffle(ranks)
    return lambda: ranks[bisect.bisect_left(cumulative, rng.random() * total)]


def write(folder, name, keys):
    with gzip.open(os.path.join(folder, name + ".trace.gz"), "wt") as f:
        f.write("\n".join(map(str, keys)) + "\n")


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "patterns"
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(101)
    # A loop over 1,500 keys, 30 times (LRU never hits once K < 1,500).
    write(folder, "loop1500", [i for _ in range(30) for i in range(1500)])
    # A zigzag over 1,200 keys, 20 sweeps (LRU is optimal: it equals MIN).
    zigzag = []
    for sweep in range(20):
        zigzag += list(range(1200)) if sweep % 2 == 0 else list(range(1199, -1, -1))
    write(folder, "zigzag1200", zigzag)
    # Independent requests, Zipf 0.8 over 5,000 keys.
    zipf = zipf_sampler(5000, 0.8, rng)
    write(folder, "irm-z0.8", [zipf() for _ in range(60000)])
    # Half the requests a loop over 800 keys, half Zipf 1.0 over 3,000 others, interleaved.
    zipf = zipf_sampler(3000, 1.0, rng)
    keys, at = [], 0
    for _ in range(60000):
        if rng.random() < 0.5:
            keys.append(100000 + at % 800)
            at += 1
        else:
            keys.append(zipf())
    write(folder, "loop-zipf", keys)
    # Zipf 0.9 over 4,000 keys, a scan of 3,000 new keys after every 10,000 requests.
    zipf = zipf_sampler(4000, 0.9, rng)
    keys, fresh = [], 1_000_000
    for i in range(80000):
        keys.append(zipf())
        if i % 10000 == 9999:
            keys += list(range(fresh, fresh + 3000))
            fresh += 3000
    write(folder, "zipf-scans", keys)
    # Four phases of 20,000 requests, Zipf 1.0 over 3,000 keys each, no key shared.
    keys = []
    for phase in range(4):
        zipf = zipf_sampler(3000, 1.0, random.Random(200 + phase))
        keys += [phase * 3000 + zipf() for _ in range(20000)]
    write(folder, "phases", keys)


if __name__ == "__main__":
    main()
