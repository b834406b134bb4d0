"""CPU cost of the fabrication screening (stage 25, issue 16) on a year of responses, and a check that the
fast near-duplicate null gives the very numbers of the reference shuffle-and-compare path.

Usage::

    .venv/bin/python bench/bench_screening.py bench/.data/runs/scale-2025-p2/results/responses.parquet
    .venv/bin/python bench/bench_screening.py RESPONSES.parquet --reference   # also time the reference path

Prints the CPU seconds of ``screening.screen`` (process time: the machine is shared) and the flags per
signal; with ``--reference`` the reference null (``_twins`` of ``_shuffle_within_forms``) is run too and
the two tables must be identical.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from sipas_lib import screening


def _reference_null(values, threshold, size, rng):
    """The null pair counts the way they were first computed: shuffled copies, then every pair compared."""
    answered = (~np.isnan(values)).astype(np.float32)
    match, min_common = _reference_null.match, _reference_null.min_common
    return screening._twins(screening._shuffle_within_forms(values, size, rng), match, min_common,
                            answered @ answered.T)[3]


def _timed(responses: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, float]:
    start = time.process_time()
    flags = screening.screen(responses, n_permutations=200, match=0.85, window=14, seed=seed)
    return flags, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("responses", help="a stage-20 results/responses.parquet")
    parser.add_argument("--seed", type=int, default=20251)
    parser.add_argument("--reference", action="store_true", help="also run the reference null and compare")
    args = parser.parse_args()
    responses = pd.read_parquet(args.responses)
    flags, cpu = _timed(responses, args.seed)
    print(f"{responses['unit_id'].nunique()} units, {len(responses)} forms: screen {cpu:.1f} CPU-s")
    print(flags.groupby("signal")["flagged"].sum().to_string())
    if args.reference:
        _reference_null.match, _reference_null.min_common = 0.85, 10  # screen()'s defaults
        fast = screening._null_pairs
        screening._null_pairs = _reference_null
        try:
            reference, cpu_ref = _timed(responses, args.seed)
        finally:
            screening._null_pairs = fast
        pd.testing.assert_frame_equal(flags, reference, check_exact=True)
        print(f"reference path {cpu_ref:.1f} CPU-s; tables identical")


if __name__ == "__main__":
    main()
