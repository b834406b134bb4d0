"""Benchmark: simultaneous (and marginal) rank confidence sets for 63 units from 10,000 draws.

Run: .venv/bin/python bench/bench_ranking.py
Target (issue 6): simultaneous sets for 63 units from 10,000 bootstrap draws under 1 s.
Issue 16: one league at national scale is a province's communes, at most about 170 (the largest
province's commune count in the 2025 registry); the same three calls stage 50 makes per league
(simultaneous sets + pairs from one rejection matrix, marginal sets) are timed at 170 units, in CPU
seconds, with the process's peak memory: the cost stays O(chunk) in memory and n_draws x p^2 in time.
Reference measured in the same run: a direct implementation of the same max-t step-down test
that materializes every ordered pair for every draw (the textbook formulation, as csranks does
in R), so the ratio shows what the unordered-pair / additive-mask formulation buys.
"""

from __future__ import annotations


import numpy as np

import resource
import time

import pandas as pd

from sipas_lib import ranking as rk
from timing import median_time  # bench/timing.py (bench/ is on sys.path when run as a script)

P, B, REPEAT = 63, 10_000, 5
P_LEAGUE = 170  # the largest province's communes (national scale, one league per province and unit type)


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
    ours_rejections = rk.pairwise_rejections(theta, se=se, n_boot=B, seed=2025).to_numpy()  # the reference's seed
    same = (ours_rejections == reference_simultaneous(theta, se)).all()
    print(f"rank confidence sets, {P} units, {B:,} draws (median of {REPEAT})")
    print(f"  simultaneous (step-down): {ours:.3f} s   target < 1 s: {'OK' if ours < 1 else 'MISSED'}")
    print(f"  marginal (step-down):     {marg:.3f} s")
    print(f"  direct reference:         {ref:.3f} s   ratio reference/ours = {ref / ours:.1f}x; identical sets: {same}")
    league_bench()


def cpu_seconds(fn) -> tuple[float, object]:
    """CPU seconds (user + sys of this process, all threads) of one call, and its result."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def league_bench() -> None:
    """One national-scale league: 170 units, 10,000 draws, as stage 50 ranks it (rank_table, pairs=True)."""
    rng = np.random.default_rng(170)
    df = pd.DataFrame({"unit_id": [f"C{i:05d}" for i in range(P_LEAGUE)], "estimate": rng.uniform(0.75, 0.95, P_LEAGUE),
                       "se": rng.uniform(0.02, 0.06, P_LEAGUE), "n": 120})  # ~120 forms per commune
    theta, se = df["estimate"].to_numpy(), df["se"].to_numpy()
    sim, _ = cpu_seconds(lambda: rk.rank_confidence_sets(theta, se=se, n_boot=B, seed=1))
    marg, _ = cpu_seconds(lambda: rk.rank_confidence_sets(theta, se=se, n_boot=B, seed=1, simultaneous=False))
    ties, _ = cpu_seconds(lambda: rk.tied_pairs(theta, se=se, n_boot=B, seed=1))
    league, (table, pairs) = cpu_seconds(lambda: rk.rank_table(df, by=None, n_boot=B, seed=1, pairs=True))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"one league of {P_LEAGUE} units, {B:,} draws (CPU seconds, one call each)")
    print(f"  rank_confidence_sets simultaneous: {sim:.2f}   marginal: {marg:.2f}   tied_pairs: {ties:.2f}")
    print(f"  rank_table(pairs=True), what stage 50 runs per league: {league:.2f} "
          f"({len(pairs):,} pairs, {int(table['rank'].notna().sum())} ranked); peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
