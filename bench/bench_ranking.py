"""Benchmark: simultaneous (and marginal) rank confidence sets for 63 units from 10,000 draws.

Run: .venv/bin/python bench/bench_ranking.py
Target (issue 6): simultaneous sets for 63 units from 10,000 bootstrap draws under 1 s.
Reference measured in the same run: a direct implementation of the same max-t step-down test
that materializes every ordered pair for every draw (the textbook formulation, as csranks does
in R), so the ratio shows what the unordered-pair / additive-mask formulation buys.
"""

from __future__ import annotations


import numpy as np

from sipas_lib import ranking as rk
from timing import median_time  # bench/timing.py (bench/ is on sys.path when run as a script)

P, B, REPEAT = 63, 10_000, 5


def reference_simultaneous(theta, se, level=0.95, n_boot=B, seed=2025):
    """Direct formulation: all ordered pairs, (n_boot x p x p) per step."""
    p = theta.size
    sd = np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)
    t = (theta[:, None] - theta[None, :]) / sd
    z = np.random.default_rng(seed).standard_normal((n_boot, p)) * se
    active = ~np.eye(p, dtype=bool)
    reject = np.zeros((p, p), bool)
    while active.any():
        mx = np.empty(n_boot)
        for s in range(0, n_boot, 1000):
            d = (z[s:s + 1000, :, None] - z[s:s + 1000, None, :]) / sd
            mx[s:s + 1000] = np.where(active, d, -np.inf).reshape(d.shape[0], -1).max(axis=1)
        q = np.quantile(mx, level)
        new = active & (t > q)
        if not new.any():
            break
        reject |= new
        active &= ~new
    return reject


def timeit(fn, repeat=REPEAT) -> float:
    return median_time(fn, repeat)[0]


def main() -> None:
    rng = np.random.default_rng(63)
    theta = rng.uniform(0.75, 0.95, P)  # SIPAS-like provincial indices
    se = rng.uniform(0.008, 0.02, P)
    ours = timeit(lambda: rk.rank_confidence_sets(theta, se=se, n_boot=B))
    marg = timeit(lambda: rk.rank_confidence_sets(theta, se=se, n_boot=B, simultaneous=False))
    ref = timeit(lambda: reference_simultaneous(theta, se), repeat=3)
    # same rejections as the direct formulation (same seed and draws)
    same = (rk.pairwise_rejections(theta, se=se, n_boot=B).to_numpy() == reference_simultaneous(theta, se)).all()
    print(f"rank confidence sets, {P} units, {B:,} draws (median of {REPEAT})")
    print(f"  simultaneous (step-down): {ours:.3f} s   target < 1 s: {'OK' if ours < 1 else 'MISSED'}")
    print(f"  marginal (step-down):     {marg:.3f} s")
    print(f"  direct reference:         {ref:.3f} s   ratio reference/ours = {ref / ours:.1f}x; identical sets: {same}")


if __name__ == "__main__":
    main()
