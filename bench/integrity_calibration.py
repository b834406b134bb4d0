"""Calibration of the fabrication screening (issue 13, "Done when"): false flags on clean years, detection of planted blocks.

Run: ``.venv/bin/python bench/integrity_calibration.py [--years 200] [--workers 2]`` (about 15 minutes on two
cores for 200 years).

(a) **Clean years.** Each replicate is a city at the demo's unit sizes: the two-tier Hà Nội demo year's units
and fielded sample (15 departments, 126 communes and wards; drawn once, as ``sipas demo`` draws them), with
fresh answers from :func:`sipas_lib.simulate.simulate_answers` under a new seed (so new unit effects, a new
"city" each year) and collection points and return dates from
:func:`sipas_lib.simulate_integrity.add_collection_points`. :func:`sipas_lib.screening.screen` runs with the
shipped settings (``integrity.false_flag_rate``, ``n_permutations``, ``near_duplicate_match``,
``bunching_window``). Measured: the share of units flagged on any signal (every unit is clean), per signal,
and the share of years with any flag, each with its exact (Clopper–Pearson) 95 % interval.

(b) **Planted years.** The same years with a block of 10 % of the issued forms of two units (one department,
one commune or ward, drawn at random) replaced by forms filled in by staff, as the demo plants them
(:func:`sipas_lib.simulate_integrity.plant_fabrication`: near-identical answers, every criterion
satisfied, one day, one post office, one enumerator) — at least 5 forms (its floor), so in units with
fewer than 45 issued forms the block is larger than 10 %; detection is reported for all planted units and
for those whose block is exactly 10 % (round(0.1 × issued) ≥ 5). Measured: the share of planted units
flagged on any signal, per signal, and the false-flag rate of the clean units of those years.

Result of ``--years 200`` (30 minutes on two busy cores; quoted in :mod:`sipas_lib.screening`)::

    (a) clean years: 200, units screened: 28200
        share of clean units flagged (any signal), nominal <= 0.01: 0/28200 = 0.0000 [0.0000, 0.0001]
        share of clean years with any flag: 0/200 = 0.0000 [0.0000, 0.0183]
    (b) planted units: 400 (block of 10 % of the issued forms, at least 5; median block 8 forms)
        detected (any signal): 400/400 = 1.0000 [0.9908, 1.0000]
        detected, units whose block is exactly 10 % (>= 45 issued): 244/244 = 1.0000 [0.9850, 1.0000]
        near_duplicates          180/400 = 0.4500 [0.4005, 0.5002]
        return_bunching          400/400 = 1.0000 [0.9908, 1.0000]
        (straight_lining, satisfied_everywhere, collection_point_share, enumerator_share: 0/400)
        clean units of the planted years flagged: 1/27800 = 0.0000 [0.0000, 0.0002]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib import screening
from sipas_lib import simulate as sim
from sipas_lib import simulate_integrity as integrity
from sipas_lib.settings import load_settings
from sipas_lib.units import load_units, survey_tier, surveyed_units

YEAR = 2025
#: Share of a planted unit's issued forms filled in by staff.
BLOCK_SHARE = 0.10


def demo_layout(year: int = YEAR, seed: int = 2025,
                scale: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The demo year's surveyed units, fielded sample and registry (the calls of ``simulate.write_demo_year``).

    ``scale`` shrinks the frame only (the sample totals stay the demo's): the power allocation over the
    units' frame sizes is then the same up to rounding, and the layout takes a quarter of the time at 0.25.
    """
    registry = load_units()
    units = sim.year_units(registry, year)
    surveyed = surveyed_units(units)
    created = registry.set_index("unit_id").loc[surveyed["unit_id"], "valid_from"].max()
    since = created.strftime("%Y-%m-%d") if pd.notna(created) and created.year == year else None
    rng = np.random.default_rng([seed, year])
    frame = sim.simulate_frame(surveyed, year, rng, scale, since)
    totals = {t: int(v) for t, v in sim.TOTALS.items()}
    sample = sim.draw_sample(frame, surveyed, rng, totals,
                             local=sim.LOCAL_ALLOCATION if sim.is_two_tier(year, registry) else None)
    return surveyed, sample, registry


def as_accepted(answers: pd.DataFrame) -> pd.DataFrame:
    """What intake hands the screening: dates as dates, the enumerator as a code (E001… by first appearance)."""
    out = answers.drop(columns=[c for c in ("enumerator_phone", "enumerator_address") if c in answers])
    out["survey_date"] = pd.to_datetime(out["survey_date"], errors="coerce")
    out["return_date"] = pd.to_datetime(out["return_date"], errors="coerce")
    codes = pd.factorize(out.pop("enumerator_name"))[0] + 1
    out["enumerator_code"] = "E" + pd.Series(codes, index=out.index).astype(str).str.zfill(3)
    return out.drop_duplicates("form_id").reset_index(drop=True)


def screening_options(settings=None) -> dict:
    """The screening's settings (``integrity`` section) as keyword arguments of :func:`screening.screen`."""
    section = (settings or load_settings()).section("integrity")
    return {"false_flag_rate": float(section["false_flag_rate"]), "n_permutations": int(section["n_permutations"]),
            "match": float(section["near_duplicate_match"]), "window": int(section["bunching_window"])}


def one_year(replicate: int, layout, options: dict, planted: bool) -> pd.DataFrame:
    """Screen one simulated year; one row per unit × signal with ``planted`` (the unit was planted)."""
    surveyed, sample, registry = layout
    rng = np.random.default_rng([2025, replicate, 13])
    answers = sim.simulate_answers(sample, surveyed, rng, YEAR, seed=10_000 + replicate, registry=registry)
    answers = integrity.add_collection_points(answers, seed=rng)
    planted_units: list[str] = []
    block = pd.DataFrame(columns=["unit_id", "form_id"])
    if planted:
        tier = pd.Series(survey_tier(surveyed).to_numpy(), index=surveyed["unit_id"])
        planted_units = [str(rng.choice(tier.index[tier == t])) for t in ("department", "local")]
        answers, block = integrity.plant_fabrication(answers, sample, planted_units, YEAR, share=BLOCK_SHARE,
                                                     seed=rng)
    flags = screening.screen(as_accepted(answers), seed=rng, **options)
    flags["replicate"] = replicate
    flags["planted"] = flags["unit_id"].isin(planted_units)
    issued = sample.groupby("unit_id").size()
    flags["block"] = flags["unit_id"].map(block.groupby("unit_id").size()).fillna(0).astype(int)
    flags["exact_share"] = flags["planted"] & (np.round(BLOCK_SHARE * flags["unit_id"].map(issued)) >= 5)
    return flags


def _run(args):
    return one_year(*args)


def rate(hits: int, total: int, level: float = 0.95) -> str:
    """``share [lower, upper]`` with the exact (Clopper–Pearson) interval."""
    alpha = 1 - level
    lower = stats.beta.ppf(alpha / 2, hits, total - hits + 1) if hits > 0 else 0.0
    upper = stats.beta.ppf(1 - alpha / 2, hits + 1, total - hits) if hits < total else 1.0
    return f"{hits}/{total} = {hits / max(total, 1):.4f} [{lower:.4f}, {upper:.4f}]"


def summarize(clean: pd.DataFrame, planted: pd.DataFrame, options: dict) -> str:
    lines = [f"settings: {options}"]
    per_unit = clean.groupby(["replicate", "unit_id"])["flagged"].any()
    lines.append(f"(a) clean years: {clean['replicate'].nunique()}, units screened: {len(per_unit)}")
    lines.append(f"    share of clean units flagged (any signal), nominal <= {options['false_flag_rate']}: "
                 f"{rate(int(per_unit.sum()), len(per_unit))}")
    per_year = per_unit.groupby("replicate").any()
    lines.append(f"    share of clean years with any flag: {rate(int(per_year.sum()), len(per_year))}")
    for signal, part in clean.groupby("signal", sort=False):
        lines.append(f"    {signal:24s} {rate(int(part['flagged'].sum()), len(part))}")
    if len(planted):
        hit = planted.loc[planted["planted"]].groupby(["replicate", "unit_id"]).agg(
            flagged=("flagged", "any"), exact=("exact_share", "first"), block=("block", "first"))
        lines.append(f"(b) planted units: {len(hit)} (block of 10 % of the issued forms, at least 5; median block "
                     f"{hit['block'].median():.0f} forms)")
        lines.append(f"    detected (any signal): {rate(int(hit['flagged'].sum()), len(hit))}")
        exact = hit.loc[hit["exact"]]
        lines.append(f"    detected, units whose block is exactly 10 % (>= 45 issued): "
                     f"{rate(int(exact['flagged'].sum()), len(exact))}")
        for signal, part in planted.loc[planted["planted"]].groupby("signal", sort=False):
            lines.append(f"    {signal:24s} {rate(int(part['flagged'].sum()), len(part))}")
        others = planted.loc[~planted["planted"]].groupby(["replicate", "unit_id"])["flagged"].any()
        lines.append(f"    clean units of the planted years flagged: {rate(int(others.sum()), len(others))}")
    return "\n".join(lines)


def calibrate(years: int, workers: int = 1, planted: bool = True, options: dict | None = None,
              layout=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Screen ``years`` clean years (and the same years with planted blocks); return both flag tables."""
    options = options or screening_options()
    layout = layout or demo_layout()
    jobs = [(r, layout, options, False) for r in range(years)]
    jobs += [(r, layout, options, True) for r in range(years)] if planted else []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_run, jobs))
    else:
        results = [_run(job) for job in jobs]
    clean = pd.concat(results[:years], ignore_index=True)
    with_blocks = pd.concat(results[years:], ignore_index=True) if planted else clean.iloc[:0]
    return clean, with_blocks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--save", default="", help="folder to write the flag tables to (clean/planted .parquet)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    options = screening_options()
    clean, planted = calibrate(args.years, args.workers, options=options)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        clean.to_parquet(Path(args.save) / "clean.parquet")
        planted.to_parquet(Path(args.save) / "planted.parquet")
    print(summarize(clean, planted, options))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
