"""Benchmark: all satisfaction indices with design-based SEs on the demo year (50 units x 26 items).

Run: .venv/bin/python bench/bench_index.py
Target (issue 6): all indices with SEs (26 items + 5 elements + overall, for each of the 50 units,
calibrated demo-year design) under 1 s. Reference measured in the same run: the item-level shares
alone through ``estimation.ratio`` (26 ratios by unit), i.e. what the composites add on top.
The demo year is read with the intake and weighting stages (``data/demo``); without it a synthetic
year of the same shape is used.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from sipas_lib import estimation, index as ix
from sipas_lib.config import DEMO_DIR
from sipas_lib.instrument import load_instrument
from timing import median_time  # bench/timing.py (bench/ is on sys.path when run as a script)

REPEAT = 5


def demo_design():
    from sipas_lib import intake, weighting
    from sipas_lib.units import load_units

    units = load_units(DEMO_DIR / "units.csv")
    responses = intake.intake_year(DEMO_DIR, units).accepted
    sample = pd.read_csv(DEMO_DIR / "sample.csv", dtype={"form_id": str})
    frame_counts = pd.read_csv(DEMO_DIR / "frame_counts.csv")
    return weighting.annual_design(responses, sample, frame_counts), "demo year (calibrated, data/demo)"


def synthetic_design(seed: int = 2025):
    rng = np.random.default_rng(seed)
    units = [f"S{i:02d}" for i in range(1, 21)] + [f"D{i:02d}" for i in range(1, 31)]
    n_u = rng.integers(60, 150, len(units))
    uid = np.repeat(units, n_u)
    n = uid.size
    d = pd.DataFrame({"unit_id": uid, "unit_type": np.where(pd.Series(uid).str.startswith("S"), "department", "district")})
    q = pd.Series(rng.normal(0, 0.5, len(units)), index=units)[uid].to_numpy()
    for k in [f"c{i:02d}" for i in range(1, 19)] + [f"lg{i}" for i in range(1, 9)]:
        y = np.clip(np.rint(4.1 + q + rng.normal(0, 0.9, n)), 1, 5)
        y[rng.random(n) < 0.04] = np.nan
        d[k] = y
    d.loc[rng.random(n) > 0.3, [f"c{i}" for i in range(15, 19)]] = np.nan
    d.loc[d["unit_type"] == "department", [f"lg{i}" for i in range(1, 9)]] = np.nan
    d["N"] = pd.Series(rng.integers(2000, 20000, len(units)), index=units)[uid].to_numpy()
    d["w"] = d["N"] / d.groupby("unit_id")["unit_id"].transform("size")
    return estimation.SurveyDesign(d, weights="w", strata="unit_id", fpc="N"), "synthetic year shaped like the demo"


def timeit(fn, repeat=REPEAT) -> float:
    return median_time(fn, repeat)[0]


def main() -> None:
    try:
        design, what = demo_design()
    except Exception as exc:  # demo not generated yet / an earlier stage not ready
        print(f"(demo year unavailable: {exc}; using synthetic data)")
        design, what = synthetic_design()
    inst = load_instrument("hanoi_pl5_district")
    res = ix.satisfaction_indices(design, inst)
    n_units = res["unit_id"].nunique()
    items = inst.item_codes
    d = design.data.copy()
    for c in items:  # numerator / denominator columns for the item-only reference
        d[f"s_{c}"] = (d[c] >= 4).astype(float).where(d[c].notna(), 0.0)
        d[f"a_{c}"] = d[c].notna().astype(float)
    # same design (rows, strata, calibration) with the extra columns; dataclasses.replace keeps it
    ref_design = dataclasses.replace(design, data=d)

    ours = timeit(lambda: ix.satisfaction_indices(design, inst))
    cov = timeit(lambda: ix.overall_covariance(design, inst))
    ref = timeit(lambda: estimation.ratio(ref_design, [f"s_{c}" for c in items], [f"a_{c}" for c in items], by="unit_id"))
    print(f"satisfaction indices with SEs: {what}; {design.n:,} respondents, {n_units} units, {len(items)} items, "
          f"{len(res):,} index rows (median of {REPEAT})")
    print(f"  all indices (item + element + overall): {ours:.3f} s   target < 1 s: {'OK' if ours < 1 else 'MISSED'}")
    print(f"  overall-index covariance across units:  {cov:.3f} s")
    print(f"  reference estimation.ratio, items only: {ref:.3f} s   ratio ours/reference = {ours / ref:.2f}")


if __name__ == "__main__":
    main()
