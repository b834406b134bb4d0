"""Benchmark: stratified sample (unit x field) from a 5,000,000-transaction frame.

Run: ``.venv/bin/python bench/bench_sampling.py [--rows 5000000] [--repeat 5]``

Design as in Hà Nội's 2021 plan: 1,250 questionnaires over 20 departments and 4,800 over 30
districts (power allocation a = 0.5, at least 30 per unit), proportional over 5 fields inside a
unit, 20 % reserves and a 5 % re-check subsample. Prints the median wall time of
``sampling.select`` per method, and ratios against two references measured in the same run:
``np.argsort`` of 5M int64 keys (the floor: one sort of the frame) and the usual pandas idiom
``frame.groupby(stratum).sample`` looped over strata (SRS only, no reserves). Target: under 5 s.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from sipas_lib import sampling as sp
from timing import median_time as timed  # bench/timing.py (bench/ is on sys.path when run as a script)

FIELDS = ["justice", "labour_social", "land_environment", "construction_urban", "other"]


def build_frame(rows: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    unit_ids = [f"S{i:02d}" for i in range(1, 21)] + [f"D{i:02d}" for i in range(1, 31)]
    share = rng.gamma(2.0, 1.0, len(unit_ids))
    u = rng.choice(len(unit_ids), rows, p=share / share.sum())
    f = rng.choice(len(FIELDS), rows, p=[0.3, 0.2, 0.25, 0.15, 0.1])
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(rows, dtype=np.int64),
            "unit_id": pd.Categorical.from_codes(u, unit_ids).astype(str),
            "field": pd.Categorical.from_codes(f, FIELDS).astype(str),
            "received_on": np.datetime64("2025-01-01") + rng.integers(0, 365, rows).astype("timedelta64[D]"),
            "channel": pd.Categorical.from_codes(rng.integers(0, 4, rows), ["direct", "online_l3", "online_l4", "postal"]).astype(str),
            "size": rng.integers(1, 6, rows).astype(float),
        }
    )
    units = pd.DataFrame({"unit_id": unit_ids, "unit_type": ["department"] * 20 + ["district"] * 30})
    return frame, units




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    frame, units = build_frame(args.rows)
    fc = sp.count_frame(frame)
    t_alloc, alloc = timed(
        lambda: sp.allocate_by_type(fc, units, {"department": 1250, "district": 4800}, "power", minimum=30),
        args.repeat,
    )
    strata = sp.allocate_within(fc, alloc)
    print(f"frame: {len(frame):,} rows, {len(strata)} strata, n = {int(strata['n_h'].sum()):,}")
    print(f"allocate_by_type + power:            median {t_alloc * 1000:8.1f} ms")

    key = np.random.default_rng(0).integers(0, 2**40, len(frame))
    t_sort, _ = timed(lambda: np.argsort(key), args.repeat)
    print(f"reference np.argsort(5M int64):       median {t_sort:8.3f} s")

    results = {}
    for method, kw in (("systematic", {}), ("srs", {}), ("pps", {"size_col": "size"})):
        t, sample = timed(
            lambda: sp.select(frame, strata, method, seed=2025, reserve=0.2, recheck=0.05, **kw), args.repeat
        )
        results[method] = t
        print(
            f"select({method:10s}) + reserves + recheck: median {t:6.3f} s  "
            f"({t / t_sort:4.1f} x argsort; {len(sample):,} rows)"
        )

    n_by = strata.set_index(["unit_id", "field"])["n_h"]

    def pandas_reference():
        parts = [
            g.sample(n=int(n_by[k]), random_state=1)
            for k, g in frame.groupby(["unit_id", "field"], sort=False)
            if k in n_by.index
        ]
        return pd.concat(parts)

    t_pd, _ = timed(pandas_reference, max(1, args.repeat // 2))
    print(f"reference pandas groupby + sample loop (SRS): median {t_pd:6.3f} s")
    print(f"ratio select(srs) / pandas loop: {results['srs'] / t_pd:4.2f}")
    verdict = "OK" if max(results.values()) < 5 else "SLOWER THAN TARGET"
    print(f"target < 5 s for every method: {verdict}")


if __name__ == "__main__":
    main()
