"""Tests of sipas_lib.screening (issue 13 §3) and of the fieldwork columns intake keeps for it.

Every statistic is checked on a constructed case whose answer is worked out by hand (or by the closed
form written beside it); the calibration on simulated years (share of clean units flagged, detection of
planted blocks) is the ``simulation`` test at the end and ``bench/integrity_calibration.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import schemas, screening
from sipas_lib.intake import validate_responses
from sipas_lib.sampling import make_form_ids
from sipas_lib.schemas import PERSONAL_COLUMNS

CRITERIA = [f"c{k:02d}" for k in range(1, 19)]
FIX = Path(__file__).parent / "fixtures" / "intake"
BENCH = Path(__file__).parents[1] / "bench" / "integrity_calibration.py"


def _forms(n: int, unit: str = "U1", seed: int = 0, low: int = 1, high: int = 5) -> pd.DataFrame:
    """``n`` forms of independent answers uniform on low…high over the 18 criteria."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(rng.integers(low, high + 1, (n, len(CRITERIA))).astype(float), columns=CRITERIA)
    out.insert(0, "unit_id", unit)
    out.insert(0, "form_id", [f"{unit}-{k:03d}" for k in range(n)])
    return out


def _city(n_units: int = 8, n: int = 30, seed: int = 0) -> pd.DataFrame:
    return pd.concat([_forms(n, f"U{u}", seed + u) for u in range(n_units)], ignore_index=True)


# ----------------------------------------------------------------------------- near-duplicates

def test_nearest_match_is_the_largest_share_of_criteria_answered_alike():
    df = pd.DataFrame({"form_id": ["a", "b", "c", "d"], "unit_id": ["U", "U", "U", "V"],
                       "c01": [5, 5, 1, 5], "c02": [4, 4, 2, 4], "c03": [5, np.nan, 3, 5], "c04": [1, 2, 3, 1]})
    out = screening.nearest_match(df, ["c01", "c02", "c03", "c04"], min_common=2)
    # a~b: 2 of the 3 criteria both answered (c01, c02 equal; c04 differs) -> 2/3; c matches nothing;
    # d is alone in its unit (a's copy in another unit does not count)
    assert out["match_share"].round(6).tolist() == [round(2 / 3, 6), round(2 / 3, 6), 0.0, 0.0]
    assert out["twin"].fillna("").tolist() == ["b", "a", "", ""]


def test_shuffling_within_forms_keeps_each_forms_answers_and_its_empty_cells():
    x = _forms(12, seed=3)[CRITERIA].to_numpy().copy()
    x[::3, 14:] = np.nan  # no feedback: section V empty
    shuffled = screening._shuffle_within_forms(x, 50, np.random.default_rng(1))
    assert shuffled.shape == (50, 12, 18)
    assert (np.isnan(shuffled) == np.isnan(x)[None]).all()
    assert (np.sort(np.nan_to_num(shuffled), axis=-1) == np.sort(np.nan_to_num(x), axis=-1)[None]).all()
    assert not (np.nan_to_num(shuffled) == np.nan_to_num(x)[None]).all()


@pytest.mark.parametrize("match", [0.5, 0.7, 0.85, 1.0])
def test_the_fast_null_counts_the_same_pairs_as_shuffling_and_comparing_every_form(match):
    # _null_pairs (bit strings, no shuffled copy) must equal the reference shuffle + _twins draw for draw,
    # so a seed gives the same p-values as before; empty cells, narrow and wide answer ranges included
    rng = np.random.default_rng(8)
    drawn = 0
    for trial in range(6):
        n = int(rng.integers(2, 40))
        x = rng.integers(3 if trial % 2 else 1, 6, (n, 18)).astype(float)
        x[rng.random((n, 18)) < 0.1] = np.nan
        x[::4, 14:] = np.nan  # no feedback: section V empty
        answered = (~np.isnan(x)).astype(np.float32)
        common = answered @ answered.T
        reference = screening._twins(screening._shuffle_within_forms(x, 37, np.random.default_rng(trial)),
                                     match, 10, common)[3]
        fast = screening._null_pairs(x, screening._pair_thresholds(common, match, 10), 37,
                                     np.random.default_rng(trial))
        np.testing.assert_array_equal(fast, reference)
        drawn += reference.sum()
    assert drawn > 0 or match == 1.0  # the comparison is not vacuous (pairs at 0.85: 2 in these draws)


def test_a_copied_block_is_flagged_with_all_its_pairs_and_honest_units_are_not():
    city = _city()
    block = city.index[city["unit_id"] == "U3"][:6]
    city.loc[block, CRITERIA] = np.tile(np.where(np.arange(18) % 3 == 0, 4.0, 5.0), (6, 1))
    out = screening.near_duplicates(city, CRITERIA, seed=7)
    row = out.set_index("unit_id").loc["U3"]
    # 6 identical forms make C(6, 2) = 15 pairs; honest uniform answers on 18 criteria agree on 85 % by
    # chance with probability P(Bin(18, 1/5) >= 16) ~ 1e-9, so nothing else pairs up
    assert row["value"] == 15 and bool(row["flagged"])
    assert row["p_value"] < 1e-6 and row["p_adjusted"] <= 0.01
    assert not out.loc[out["unit_id"] != "U3", "flagged"].any()
    assert (out.loc[out["unit_id"] != "U3", "value"] == 0).all()
    assert "15 pairs of forms are near-identical (6 forms" in row["reason"]
    assert "15 cặp phiếu" in row["reason_vi"]


def test_uniform_forms_are_left_to_the_pattern_signals_and_results_repeat_with_the_seed():
    city = _city()
    city.loc[city["unit_id"] == "U1", CRITERIA] = 5.0  # every form straight-lined: agreement without copying
    out = screening.near_duplicates(city, CRITERIA, seed=3)
    u1 = out.set_index("unit_id").loc["U1"]
    assert u1["n"] == 0 and np.isnan(u1["p_value"]) and not u1["flagged"]
    assert u1["reason"].startswith("Too few forms with varied answers")
    pd.testing.assert_frame_equal(out, screening.near_duplicates(city, CRITERIA, seed=3))


def test_near_duplicate_tail_is_the_negative_binomial_of_the_shuffles():
    # two honest forms share most answers (D = 1 pair); the p-value is NB(mean, var) of the shuffled D,
    # with mean >= 1/B and var >= 2 * mean
    rng = np.random.default_rng(5)
    x = rng.integers(3, 6, (10, 18)).astype(float)
    x[1] = x[0]
    x[1, :2] = np.where(x[0, :2] == 5, 4, 5)  # 16 of 18 equal: 0.89 >= 0.85
    df = pd.DataFrame(x, columns=CRITERIA).assign(unit_id="U")
    row = screening.near_duplicates(df, CRITERIA, n_permutations=300, seed=11).iloc[0]
    assert row["value"] >= 1
    shuffled = screening._shuffle_within_forms(x, 300, np.random.default_rng(11))
    null = screening._twins(shuffled, 0.85, 10)[3]
    lam = max(null.mean(), 1 / 300)
    var = max(null.var(ddof=1), 2 * lam)
    expected = stats.nbinom.sf(row["value"] - 1, lam**2 / (var - lam), lam / var)
    assert row["reference"] == pytest.approx(lam)
    assert row["p_value"] == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------- pattern signals against the city

def test_straight_lining_without_heterogeneity_is_the_binomial_tail_against_the_other_units():
    city = _city(6, 20, seed=1)
    # two straight-lined forms in each of U0..U4 (rate 0.1 everywhere: no spread, rho = 0), ten in U5
    for u, k in [(f"U{u}", 2) for u in range(5)] + [("U5", 10)]:
        rows = city.index[city["unit_id"] == u][:k]
        city.loc[rows, CRITERIA] = 3.0
    out = screening.straight_lining(city, CRITERIA).set_index("unit_id")
    # U5 against the others: mu = 10/100, rho = 0 -> P(Bin(20, 0.1) >= 10)
    assert out.loc["U5", "value"] == 0.5 and out.loc["U5", "reference"] == pytest.approx(0.1)
    assert out.loc["U5", "p_value"] == pytest.approx(stats.binom.sf(9, 20, 0.1), rel=1e-9)
    assert bool(out.loc["U5", "flagged"]) and not out.drop(index="U5")["flagged"].any()


def test_straight_lining_spread_between_units_uses_the_beta_binomial_moments():
    k = np.array([0.0, 4.0, 0.0, 4.0, 6.0])
    n = np.full(5, 20.0)
    p, reference = screening._beta_binomial_upper(k, n)
    # by hand for the last unit: others have rates 0 .2 0 .2 (mu = 8/80 = .1), S = sum n (p - mu)^2 = 4 * 20 * .01
    # = 0.8, E[S] = mu(1-mu)[(m-1) + rho (N - sum n^2 / N - (m-1))] with m = 4, N = 80 -> rho = (0.8/0.09 - 3) / 57
    rho = (0.8 / 0.09 - 3) / (80 - 1600 / 80 - 3)
    a, b = 0.1 * (1 / rho - 1), 0.9 * (1 / rho - 1)
    assert reference[-1] == pytest.approx(0.1)
    assert p[-1] == pytest.approx(stats.betabinom.sf(5, 20, a, b), rel=1e-9)
    assert p[-1] > stats.binom.sf(5, 20, 0.1)  # the spread between units makes the unit less surprising


def test_satisfied_everywhere_counts_forms_with_no_answer_below_four():
    city = _city(6, 20, seed=2)
    rows = city.index[city["unit_id"] == "U2"][:15]
    city.loc[rows, CRITERIA] = np.where(np.arange(18) % 2 == 0, 4.0, 5.0)
    city.loc[rows[:5], "c18"] = np.nan  # an empty answer does not count against
    out = screening.satisfied_everywhere(city, CRITERIA).set_index("unit_id")
    assert out.loc["U2", "value"] == 15 / 20 and bool(out.loc["U2", "flagged"])
    assert (out.drop(index="U2")["value"] == 0).all() and not out.drop(index="U2")["flagged"].any()
    assert "75.0% of the forms are satisfied (4–5) on every criterion" in out.loc["U2", "reason"]


# ----------------------------------------------------------------------------- fieldwork traces

def _dated(days, points, unit="U"):
    return pd.DataFrame({"unit_id": unit, "form_id": [f"{unit}{k:03d}" for k in range(len(days))],
                         "return_date": pd.Timestamp("2025-10-01") + pd.to_timedelta(days, unit="D"),
                         "collection_point": points})


def test_return_bunching_is_the_binomial_of_a_sources_day_within_its_window_times_the_cells():
    # point A returns one form a day on days 0..19; point B returns 6 forms on day 10 and nothing else
    df = _dated(list(range(20)) + [10] * 6, ["A"] * 20 + ["B"] * 6)
    row = screening.return_bunching(df, streams=["collection_point"], window=14).iloc[0]
    # cell (B, day 10): N = 6 forms within ±14 days, L = min(24, 19) - max(-4, 0) + 1 = 20 days of fieldwork;
    # M = 21 occupied source-days -> p = 21 * P(Bin(6, 1/20) >= 6) = 21 / 20**6
    assert row["value"] == 6 and row["reference"] == pytest.approx(6 / 20)
    assert row["p_value"] == pytest.approx(21 / 20**6, rel=1e-9)
    assert bool(row["flagged"]) and "6 forms came back on 2025-10-11 through point B" in row["reason"]


def test_return_bunching_of_a_source_busy_every_day_is_not_flagged_and_falls_back_to_survey_dates():
    days = np.repeat(np.arange(30), 3)  # three forms a day, every day, through one point
    df = _dated(days, "A").rename(columns={"return_date": "survey_date"})
    row = screening.return_bunching(df).iloc[0]
    assert not row["flagged"] and row["p_value"] == 1.0
    empty = screening.return_bunching(df.assign(survey_date=pd.NaT)).iloc[0]
    assert np.isnan(empty["p_value"]) and empty["reason"] == "No return (or survey) dates to judge."


def test_concentration_is_the_mixture_of_the_other_units_top_shares():
    top = {"U0": 4, "U1": 6, "U2": 5, "U3": 8, "U4": 16}  # forms (of 20) through each unit's busiest enumerator
    rows = []
    for unit, k in top.items():
        rows += [(unit, "E-top")] * k + [(unit, f"E{unit}-{j}") for j in range(20 - k)]
    df = pd.DataFrame(rows, columns=["unit_id", "enumerator_code"])
    out = screening.concentration(df, "enumerator_code").set_index("unit_id")
    others = np.array([4, 6, 5, 8]) / 20
    expected = stats.binom.sf(15, 20, others).mean()  # (1/(m-1)) sum_j P(Bin(20, k_j/20) >= 16)
    assert out.loc["U4", "value"] == 0.8 and out.loc["U4", "reference"] == pytest.approx(others.mean())
    assert out.loc["U4", "p_value"] == pytest.approx(expected, rel=1e-9)
    assert bool(out.loc["U4", "flagged"]) and "(E-top)" in out.loc["U4", "reason"]
    with pytest.raises(ValueError, match="concentration is computed on"):
        screening.concentration(df, "enumerator_name")


# ----------------------------------------------------------------------------- the integrity table

def test_screen_gives_every_unit_every_signal_in_the_contract_with_reasons_in_both_languages():
    city = _city(6, 25, seed=4)
    city["survey_date"] = pd.Timestamp("2025-10-01") + pd.to_timedelta(np.arange(len(city)) % 40, unit="D")
    city["collection_point"] = np.where(np.arange(len(city)) % 2 == 0, "BC10023", "online")
    city["enumerator_code"] = "E" + pd.Series(np.arange(len(city)) % 9 + 1).astype(str).str.zfill(3)
    out = screening.screen(city, seed=1)
    schemas.validate("screening_flags", out)
    assert out["signal"].unique().tolist() == list(screening.SIGNALS)
    assert len(out) == 6 * len(screening.SIGNALS)
    assert out["reason"].str.len().gt(20).all() and out["reason_vi"].str.len().gt(20).all()
    assert (out["flagged"] == (out["p_adjusted"] <= 0.01)).all()
    bare = screening.screen(city[["unit_id", "form_id", *CRITERIA]], seed=1)  # no fieldwork columns recorded
    assert bare["signal"].unique().tolist() == ["near_duplicates", "straight_lining", "satisfied_everywhere"]
    with pytest.raises(ValueError, match="false_flag_rate"):
        screening.screen(city, false_flag_rate=1.5)


def test_bh_adjustment_keeps_the_false_discovery_rate_across_units():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.9])
    # Benjamini & Hochberg (1995): p_(i) * m / i, then the running minimum from the top
    assert screening._adjust(p) == pytest.approx([0.005, 0.02, 0.05125, 0.05125, 0.9])


def test_suspect_forms_name_the_copied_and_bunched_forms():
    city = _city(6, 25, seed=6)
    city["return_date"] = pd.Timestamp("2025-10-01") + pd.to_timedelta(np.arange(len(city)) % 40, unit="D")
    city["collection_point"] = "BC" + pd.Series(np.arange(len(city)) % 3).astype(str)
    block = city.index[city["unit_id"] == "U2"][:7]
    city.loc[block, CRITERIA] = np.tile(np.where(np.arange(18) % 4 == 0, 4.0, 5.0), (7, 1))
    city.loc[block, "return_date"] = pd.Timestamp("2025-10-20")
    city.loc[block, "collection_point"] = "BC9"
    flags = screening.screen(city, seed=2)
    assert set(flags.loc[flags["flagged"], "signal"]) >= {"near_duplicates", "return_bunching"}
    suspects = screening.suspect_forms(city, flags)
    expected = set(city.loc[block, "form_id"])
    for signal in ("near_duplicates", "return_bunching"):
        assert set(suspects.loc[suspects["signal"] == signal, "form_id"]) == expected


# ----------------------------------------------------------------------------- intake keeps the fieldwork columns

def test_intake_keeps_collection_point_and_return_date_and_codes_the_enumerator():
    units = pd.read_csv(FIX / "units.csv")
    n = 6
    rng = np.random.default_rng(0)
    raw = pd.DataFrame({"form_id": make_form_ids(np.full(n, 30), np.arange(1, n + 1)), "unit_id": "D01",
                        "field": "justice", "channel": "postal"})
    for c in CRITERIA + [f"lg{k}" for k in range(1, 9)]:
        raw[c] = rng.integers(1, 6, n).astype(str)
    raw["survey_date"] = "2025-10-14"
    raw["collection_point"] = ["BC10023", "BC10023", "MC-D01", "0912 345 678", None, "online"]
    raw["return_date"] = ["2025-10-20", "20/10/2025", "2025-10-14", "not a date", None, "2025-10-15"]
    raw["enumerator_name"] = ["Trần Thị Hoa", "Lê Văn Nam", "  trần  thị HOA ", "Lê Văn Nam", None, "Phạm Minh"]
    raw["enumerator_phone"] = "0912345678"
    res = validate_responses(raw.astype("string"), units)
    acc = res.accepted
    assert len(acc) == n and not PERSONAL_COLUMNS & set(acc.columns)
    assert acc["enumerator_code"].fillna("").tolist() == ["E001", "E002", "E001", "E002", "", "E003"]
    # a collection point that looks like a phone number is personal data: left empty
    assert acc["collection_point"].fillna("").tolist() == ["BC10023", "BC10023", "MC-D01", "", "", "online"]
    assert acc["return_date"].dt.strftime("%Y-%m-%d").fillna("").tolist() == [
        "2025-10-20", "2025-10-20", "2025-10-14", "", "", "2025-10-15"]
    problem = res.date_problems
    assert problem["rule"].tolist() == ["return_date_unreadable"] and problem["source_row"].tolist() == [5]
    values = set(acc.astype(str).to_numpy().ravel())
    assert not {"Trần Thị Hoa", "Lê Văn Nam", "0912 345 678", "0912345678"} & values


# ----------------------------------------------------------------------------- calibration (issue 13, "Done when")

def _bench():
    spec = importlib.util.spec_from_file_location("integrity_calibration", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.simulation
def test_clean_years_stay_under_the_nominal_false_flag_rate_and_planted_blocks_are_caught():
    """Two clean years and the same years with two planted 10 % blocks (the script runs 200; see its docstring).

    At the demo's unit sizes (the frame drawn at a quarter of its size: the same power allocation) the
    share of clean units flagged on any signal must stay at or below ``integrity.false_flag_rate`` and the
    planted units must be caught (the script measures the rates with their intervals: 0/28200 clean units
    flagged, 400/400 planted units caught).

    Power of two years against three (binomial, the counts being discrete): the 282 clean units pass with at
    most 2 flags (1 %), the 423 of three years with at most 4; a screening flagging 3 % of clean units (three
    times the nominal rate) passes with probability 0.009 against 0.004, one flagging 2 % with 0.08 against
    0.07. All 4 planted units must be caught (>= 5 of 6 before): a screening catching 90 % of them passes with
    probability 0.66 against 0.89 — stricter.
    """
    bench = _bench()
    options = bench.screening_options()
    clean, planted = bench.calibrate(2, 1, options=options, layout=bench.demo_layout(scale=0.25))
    per_unit = clean.groupby(["replicate", "unit_id"])["flagged"].any()
    assert len(per_unit) > 280
    assert per_unit.mean() <= options["false_flag_rate"]
    caught = planted.loc[planted["planted"]].groupby(["replicate", "unit_id"])["flagged"].any()
    assert len(caught) == 4 and caught.all()
    others = planted.loc[~planted["planted"]].groupby(["replicate", "unit_id"])["flagged"].any()
    assert others.mean() <= options["false_flag_rate"]
