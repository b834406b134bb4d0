"""Benchmark of sipas_lib.reliability on 40,000 respondents x 26 items (issue 5; target < 10 s).

Run: ``.venv/bin/python bench/bench_reliability.py [--repeats 3]``

The data: 18 criteria in the five elements of Phụ lục 5 plus the 8 local-governance items of the
district form, 5-point ratings from a correlated factor model, 2 % item non-response and
section V (c15-c18) structurally missing for the 55 % who gave no feedback. "All of the above"
is the full stage-40 workload: alpha with Feldt and 1,000-replicate bootstrap intervals and
item statistics for every element and overall, the 26 x 26 polychoric matrix, ordinal alpha
per element, omega (5 group factors), KMO, Bartlett, EFA (minres/oblimin and ML/varimax),
parallel analysis (20 simulated data sets) and the five-element CFA. The reference measured in
the same run is pandas' pairwise Pearson ``DataFrame.corr()`` of the same 26 columns.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from sipas_lib import reliability as rl

ELEMENTS = {"E1": [f"c{i:02d}" for i in range(1, 6)], "E2": [f"c{i:02d}" for i in range(6, 10)],
            "E3": [f"c{i:02d}" for i in range(10, 13)], "E4": ["c13", "c14"],
            "E5": [f"c{i:02d}" for i in range(15, 19)]}
CRITERIA = [c for its in ELEMENTS.values() for c in its]
LOCAL = [f"lg{i}" for i in range(1, 9)]
ITEMS = CRITERIA + LOCAL


def make_data(n: int = 40_000, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    nf = 6                                         # five elements + local governance
    phi = np.full((nf, nf), 0.55) + 0.45 * np.eye(nf)
    F = rng.standard_normal((n, nf)) @ np.linalg.cholesky(phi).T
    fac = np.repeat(np.arange(nf), [5, 4, 3, 2, 4, 8])
    lam = rng.uniform(0.6, 0.85, len(ITEMS))
    latent = F[:, fac] * lam + rng.standard_normal((n, len(ITEMS))) * np.sqrt(1 - lam ** 2)
    X = np.digitize(latent, [-1.9, -1.2, -0.3, 0.8]).astype(float) + 1
    X[rng.random(X.shape) < 0.02] = np.nan
    df = pd.DataFrame(X, columns=ITEMS)
    gave = rng.random(n) < 0.45
    df.loc[~gave, ELEMENTS["E5"]] = np.nan
    df["gave_feedback"] = gave
    df["w"] = rng.uniform(0.5, 2.0, n)
    return df


def workload(df: pd.DataFrame) -> dict[str, float]:
    times: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t

    fb = rl.analysis_rows(df, ITEMS)
    # scales analysed on the same respondents share their bootstrap resamples (one call each)
    everyone = {e: its for e, its in ELEMENTS.items() if e != "E5"}
    timed("alpha (Feldt + 1000 bootstrap), 6 scales", lambda: (
        rl.cronbach_alpha(df, everyone, weights="w", n_boot=1000),
        rl.cronbach_alpha(fb, {"E5": ELEMENTS["E5"], "all": ITEMS}, weights="w", n_boot=1000)))
    for e, its in ELEMENTS.items():
        d = rl.analysis_rows(df, its)
        timed("item statistics, 6 scales", lambda: rl.item_statistics(d, its, weights="w"))
        timed("ordinal alpha (polychoric), 5 elements", lambda: rl.ordinal_alpha(d, its))
    timed("item statistics, 6 scales", lambda: rl.item_statistics(fb, ITEMS, weights="w"))
    timed("polychoric 26 x 26 (all rows, pairwise)", lambda: rl.polychoric(df, ITEMS))
    timed("omega (5 group factors)", lambda: rl.omega(fb, ITEMS, n_factors=5))
    timed("KMO + Bartlett", lambda: (rl.kmo(fb, ITEMS), rl.bartlett_sphericity(fb, ITEMS)))
    timed("EFA minres/oblimin + ML/varimax", lambda: (rl.efa(fb, ITEMS, 6, "minres", "oblimin"),
                                                      rl.efa(fb, ITEMS, 6, "ml", "varimax")))
    timed("parallel analysis (20 sims)", lambda: rl.parallel_analysis(fb, ITEMS, n_iter=20))
    timed("CFA five-element model", lambda: rl.cfa(df, ELEMENTS))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=40_000)
    args = ap.parse_args()
    df = make_data(args.n)
    print(f"data: {len(df):,} respondents x {len(ITEMS)} items; {int(df['gave_feedback'].sum()):,} gave feedback")
    workload(df.head(2000))                       # warm-up (imports, BLAS threads)
    runs, refs, gflops = [], [], []
    A = np.random.default_rng(0).random((100, 18_000))
    B = np.random.default_rng(1).random((18_000, 400))
    for _ in range(args.repeats):
        t = time.perf_counter()
        df[ITEMS].corr()
        refs.append(time.perf_counter() - t)
        t = time.perf_counter()
        A @ B                                     # machine speed now (others may share the cores)
        gflops.append(2 * A.shape[0] * A.shape[1] * B.shape[1] / (time.perf_counter() - t) / 1e9)
        t = time.perf_counter()
        parts = workload(df)
        parts["TOTAL"] = time.perf_counter() - t
        runs.append(parts)
    ref = statistics.median(refs)
    print(f"reference pandas DataFrame.corr() 26 cols: median {ref:.3f} s; "
          f"float64 matrix product: median {statistics.median(gflops):.1f} GFLOP/s")
    print(f"{'step':45s} {'median s':>9s} {'x ref':>8s}")
    for name in runs[0]:
        med = statistics.median(r[name] for r in runs)
        print(f"{name:45s} {med:9.3f} {med / ref:8.1f}")
    total = statistics.median(r["TOTAL"] for r in runs)
    print(f"target < 10 s: {'met' if total < 10 else 'NOT met'} ({total:.2f} s, median of {args.repeats})")


if __name__ == "__main__":
    main()
