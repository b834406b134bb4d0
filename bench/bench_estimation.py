"""Benchmark: design-based estimation at national scale, beside R's survey package.

Simulates 1,000,000 respondents in 63 provinces (strata) with ~10 districts each (PSUs) and 26
Likert items, then times

1. the share satisfied (item >= 4) of the 26 items by province with Taylor SEs
   (``estimation.proportion``; R: ``svyby(~s01+...+s26, ~prov, design, svymean)``);
2. raking on two margins, province (63) and sex x age group (10)
   (``weighting.rake``; R: ``rake(design, list(~prov, ~agesex), ...)``, both with R's defaults);
3. the 26 shares by province after raking, with calibration-aware SEs
   (R: ``svyby`` on the raked design). R needs the whole file per domain here, so its time is
   measured on ``--r-domains`` provinces (default 1) and scaled by 63 / that number.

4. the full design covariance of one linearized score across units (the overall index's
   ``index.overall_covariance``, stage 25 and 50), national shape: strata = units = domains, a PSU per
   respondent, post-strata nested in units; sparse route beside the dense one at a size the dense one
   can still do (``--cov-units``, default 400 units x ~100 forms), then the national size alone
   (3,900 units, ~400,000 forms; the dense route would need an 11.7 GiB PSU x unit matrix).

Run: ``.venv/bin/python bench/bench_estimation.py`` (``--no-r`` to skip R, ``--n`` to change the
size, ``--cov-only`` for task 4 alone). Prints medians (Python: 5 runs; R: 3 runs for tasks 1-2, 1 run for task 3) and ratios, and
checks that Python's and R's estimates and SEs agree on the same file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sipas_lib import estimation as est  # noqa: E402
from sipas_lib import weighting as wt  # noqa: E402
from timing import median_time as timeit  # bench/timing.py (bench/ is on sys.path when run as a script)

HERE = Path(__file__).resolve().parent
ITEMS = [f"c{j:02d}" for j in range(1, 27)]
SATS = [f"s{j:02d}" for j in range(1, 27)]
TARGETS = {"taylor_by_province": 1.5, "rake_two_margins": 0.2, "calibrated_by_province": 10.0}


def simulate(n: int = 1_000_000, provinces: int = 63, seed: int = 2025) -> tuple[pd.DataFrame, dict]:
    """National-scale file: province strata, district PSUs, 26 Likert items, two raking margins."""
    rng = np.random.default_rng(seed)
    n_dist = rng.integers(8, 13, provinces)
    dist_prov = np.repeat(np.arange(provinces), n_dist)
    size = rng.gamma(4.0, 1.0, dist_prov.size)
    dist = rng.choice(dist_prov.size, n, p=size / size.sum())
    prov = dist_prov[dist]
    w = np.exp(rng.normal(4.0, 0.4, dist_prov.size))[dist] * rng.uniform(0.8, 1.25, n)
    sex = rng.integers(0, 2, n)
    age = rng.choice(5, n, p=[0.15, 0.25, 0.25, 0.2, 0.15])
    agesex = sex * 5 + age
    level = rng.normal(0, 0.4, provinces)[prov] + rng.normal(0, 0.25, dist_prov.size)[dist] + 0.05 * age
    person = rng.normal(0, 0.8, n)
    items = np.empty((n, 26), np.int8)
    cuts = np.array([-1.6, -0.9, 0.0, 1.1])
    for j in range(26):
        lat = level + person + rng.normal(0, 0.9, n) + 0.03 * j
        items[:, j] = 1 + np.searchsorted(cuts, lat)
    df = pd.DataFrame({"prov": prov + 1, "dist": dist + 1, "w": w, "agesex": agesex + 1})
    for j, c in enumerate(ITEMS):
        df[c] = items[:, j]
    for c, s in zip(ITEMS, SATS):
        df[s] = (df[c] >= 4).astype(np.float64)
    # population margins: the weighted totals perturbed, on a common total
    tot = df.w.sum()
    pm = df.groupby("prov").w.sum() * rng.uniform(0.9, 1.1, provinces)
    pm = pm / pm.sum() * tot
    am = df.groupby("agesex").w.sum() * rng.uniform(0.9, 1.1, 10)
    am = am / am.sum() * tot
    return df, {"prov": pm, "agesex": am}




def run_python(df: pd.DataFrame, margins: dict, reps: int = 5) -> tuple[dict, dict]:
    design = est.SurveyDesign(df, weights="w", strata="prov", psu="dist")
    t1, p1 = timeit(lambda: est.proportion(design, SATS, by="prov"), reps)
    t2, raked = timeit(lambda: wt.rake(design, margins), reps)
    t3, p3 = timeit(lambda: est.proportion(raked, SATS, by="prov"), reps)
    return ({"taylor_by_province": t1, "rake_two_margins": t2, "calibrated_by_province": t3},
            {"p1": p1, "p3": p3, "raked": raked})


def simulate_units(units: int, forms_per_unit: float = 103.0, seed: int = 16) -> tuple[est.SurveyDesign, np.ndarray]:
    """National-shaped design: units as strata and domains, PSU = form, fpc, 5 post-strata per unit."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(units), rng.poisson(forms_per_unit - 30, units) + 30)
    n = unit.size
    df = pd.DataFrame({"unit": unit, "cell": rng.integers(0, 5, n), "w": rng.gamma(4.0, 2.5, n)})
    df["N"] = np.ceil(df.groupby("unit")["w"].transform("sum")) + 1
    design = est.SurveyDesign(df, weights="w", strata="unit", fpc="N", lonely_psu="adjust")
    cells = df.groupby(["unit", "cell"])["w"].sum() * rng.uniform(0.9, 1.1, df.groupby(["unit", "cell"]).ngroups)
    design = wt.poststratify(design, ["unit", "cell"], cells)
    y = (rng.random(n) < 0.85).astype(float)
    p = pd.Series(y * design.w).groupby(unit).sum() / pd.Series(design.w).groupby(unit).sum()
    return design, (y - p.to_numpy()[unit])[:, None]  # the linearized share of each unit (up to 1/N_d)


def _timed(fn, reps: int) -> tuple[float, float, object]:
    """Median wall seconds, mean CPU seconds (this process; the machine may be shared) and the result."""
    cpu = time.process_time()
    wall, out = timeit(fn, reps)
    return wall, (time.process_time() - cpu) / reps, out


def run_covariance(units: int, reps: int) -> dict:
    """Task 4: full covariance across units, sparse route vs dense route, then the national size."""
    design, z = simulate_units(units)
    full = lambda d, z_: est.total_covariance(d, z_, by="unit", full=True)[1]  # noqa: E731
    sparse = _timed(lambda: full(design, z), reps)
    budget, est._SPARSE_BUDGET = est._SPARSE_BUDGET, -1  # force the dense route
    try:
        dense = _timed(lambda: full(design, z), max(1, reps // 2))
    finally:
        est._SPARSE_BUDGET = budget
    diff = np.max(np.abs(sparse[2] - dense[2])) / np.max(np.abs(np.diagonal(dense[2])))
    national, zn = simulate_units(3900)
    nat = _timed(lambda: full(national, zn), max(1, reps // 2))
    return {"units": units, "n": design.n, "sparse": sparse[:2], "dense": dense[:2], "diff": diff,
            "national_n": national.n, "national": nat[:2], "national_shape": nat[2].shape}


def print_covariance(r: dict) -> None:
    (sw, sc), (dw, dc), (nw, nc) = r["sparse"], r["dense"], r["national"]
    print(f"full covariance across units ({r['units']} units, {r['n']:,} forms): sparse {sw:.3f} s ({sc:.3f} CPU-s), "
          f"dense {dw:.3f} s ({dc:.3f} CPU-s), dense/sparse {dw / sw:.1f} (CPU {dc / sc:.1f}), "
          f"max diff {r['diff']:.1e} of the largest variance")
    print(f"full covariance across units, national (3,900 units, {r['national_n']:,} forms): sparse {nw:.2f} s "
          f"({nc:.2f} CPU-s) -> {r['national_shape'][0]:,} x {r['national_shape'][1]:,}; dense route not run "
          f"(a {r['national_n'] * 3900 * 8 / 2**30:.1f} GiB PSU x unit matrix)")


def run_r(df: pd.DataFrame, margins: dict, r_domains: int, workdir: Path) -> dict | None:
    if shutil.which("Rscript") is None:
        print("Rscript not found: R timings skipped")
        return None
    csv = workdir / "bench.csv"
    df[["prov", "dist", "w", "agesex"] + SATS].to_csv(csv, index=False)
    pd.DataFrame({"prov": margins["prov"].index, "Freq": margins["prov"].to_numpy()}).to_csv(workdir / "m_prov.csv", index=False)
    pd.DataFrame({"agesex": margins["agesex"].index, "Freq": margins["agesex"].to_numpy()}).to_csv(workdir / "m_agesex.csv", index=False)
    out = workdir / "r_result.json"
    cmd = ["Rscript", str(HERE / "r" / "bench_estimation.R"), str(workdir), str(r_domains)]
    print("running R:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--r-domains", type=int, default=1)
    ap.add_argument("--cov-units", type=int, default=400)
    ap.add_argument("--cov-only", action="store_true")
    args = ap.parse_args()

    if args.cov_only:
        print_covariance(run_covariance(args.cov_units, args.reps))
        return

    t0 = time.perf_counter()
    df, margins = simulate(args.n)
    print(f"simulated {len(df):,} respondents, {df.prov.nunique()} provinces, {df.dist.nunique()} districts, "
          f"26 items in {time.perf_counter() - t0:.1f} s")
    py, res = run_python(df, margins, args.reps)
    rr = None
    if not args.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            rr = run_r(df, margins, args.r_domains, Path(tmp))
            if rr is not None:
                rse = pd.read_csv(Path(tmp) / "r_se1.csv")
                rse3 = pd.read_csv(Path(tmp) / "r_se3.csv")
    print()
    print(f"{'task':<28}{'python (s)':>12}{'target':>9}{'R (s)':>12}{'R/python':>10}")
    for k, v in py.items():
        rt = rr.get(k) if rr else None
        ratio = f"{rt / v:10.1f}" if rt else f"{'-':>10}"
        rts = f"{rt:12.2f}" if rt else f"{'-':>12}"
        ok = "ok" if v < TARGETS[k] else "MISSED"
        print(f"{k:<28}{v:12.3f}{TARGETS[k]:>7.1f}{ok:>3}{rts}{ratio}")
    if rr:
        print(f"(R task 3 measured on {rr['r_domains']} province(s): {rr['calibrated_subset']:.2f} s, "
              f"scaled x{63 / rr['r_domains']:.0f})")
        p1 = res["p1"]
        m = rse.merge(p1, left_on=["variable", "prov"], right_on=["variable", "prov"])
        d_est = np.max(np.abs(m.estimate - m.r_estimate) / np.abs(m.r_estimate))
        d_se = np.max(np.abs(m.se - m.r_se) / m.r_se)
        print(f"parity task 1 (Python vs R, {len(m)} estimates): max rel diff estimate {d_est:.1e}, SE {d_se:.1e}")
        p3 = res["p3"]
        m3 = rse3.merge(p3, on=["variable", "prov"])
        d3e = np.max(np.abs(m3.estimate - m3.r_estimate) / np.abs(m3.r_estimate))
        d3 = np.max(np.abs(m3.se - m3.r_se) / m3.r_se)
        print(f"parity task 3 (after raking, {len(m3)} estimates): max rel diff estimate {d3e:.1e}, SE {d3:.1e}")
        w_r = rr.get("raked_weight_sum")
        if w_r:
            print(f"raked weight total: python {res['raked'].w.sum():.6f}, R {w_r:.6f}")
    print()
    print_covariance(run_covariance(args.cov_units, args.reps))


if __name__ == "__main__":
    main()
