"""Year-on-year across the 2025 reform in stage 50 (issue 12 item 5): the stage wiring.

The core (predecessor figure and its SE from a covariance) is tested in tests/test_crosswalk.py;
here: which units are compared across the reform, the hand-computed predecessor figure and SE on
a small example, the legacy district group compared with the new communes city-wide, the
crosswalk setting, and two real tiny run folders whose units differ (``yoy_reform`` written with
its contract, its SE from the previous year's design covariance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import copy_run
from scipy import stats

from sipas_lib import config, schemas
from sipas_lib import index as ix
from sipas_lib.instrument import load_instrument
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, index_ranking, weighting


def _overall(ids, types, est, se, n):
    return pd.DataFrame({"unit_id": ids, "unit_type": types, "level": "overall", "code": "SIPAS",
                         "estimate": est, "se": se, "n": n})


# ------------------------------------------------------------------------------------------------
# pure functions: a small example computed by hand
# ------------------------------------------------------------------------------------------------
OLD = _overall(["D01", "D02", "D03"], "district", [0.80, 0.70, 0.90], [0.02, 0.03, 0.04], [100, 100, 100])
NEW = _overall(["C1", "C2", "C3", "C4"], "commune", [0.85, 0.75, 0.60, 0.9], [0.025, 0.02, 0.05, 0.01],
               [80, 60, 70, 10])
CROSSWALK = pd.DataFrame({
    "old_unit_id": ["D01", "D02", "D01", "D03", "D02"],
    "new_unit_id": ["C1", "C1", "C2", "C3", "C4"],
    "share_of_old": [0.5, 0.5, 0.5, 1.0, 0.5],
    "share_of_new": [0.6, 0.4, 0.9, 0.3, 1.0],
    "basis": "area",
})
COV = pd.DataFrame([[0.02 ** 2, 0.0001, 0.0], [0.0001, 0.03 ** 2, 0.0], [0.0, 0.0, 0.04 ** 2]],
                   index=["D01", "D02", "D03"], columns=["D01", "D02", "D03"])


def test_predecessor_figure_se_and_change_equal_a_hand_computation():
    units = index_ranking.reshaped_units(NEW, OLD, CROSSWALK)
    assert units == {"C1", "C2", "C3", "C4"}
    out = index_ranking.reform_table(NEW, OLD, CROSSWALK, units, COV, level=0.9, min_n=30,
                                     min_coverage=0.5).set_index("unit_id")
    schemas.validate("yoy_reform", out.reset_index())
    # C1 = 0.6 D01 + 0.4 D02 (coverage 1): 0.6*0.80 + 0.4*0.70 = 0.76
    # var = 0.36*0.0004 + 0.16*0.0009 + 2*0.6*0.4*0.0001 = 0.000144 + 0.000144 + 0.000048 = 0.000336
    c1 = out.loc["C1"]
    assert c1["estimate_pred"] == pytest.approx(0.76, abs=1e-12)
    assert c1["se_pred"] == pytest.approx(np.sqrt(0.000336), abs=1e-12)
    assert c1["change"] == pytest.approx(0.85 - 0.76, abs=1e-12)
    se = np.sqrt(0.025 ** 2 + 0.000336)
    z = stats.norm.ppf(0.95)
    assert c1["change_se"] == pytest.approx(se, abs=1e-12)
    assert c1["change_ci_low"] == pytest.approx(0.09 - z * se, abs=1e-12)
    assert c1["change_ci_high"] == pytest.approx(0.09 + z * se, abs=1e-12)
    assert c1["comparison"] == "other_level" and c1["basis"] == "area" and not c1["withheld"]
    assert c1["predecessors"] == "D01,D02" and c1["predecessor_types"] == "district"
    assert c1["se_pred_method"] == "old_design_covariance" and c1["conf_level"] == 0.9
    # C2: only D01 covering 0.9 of it -> D01's figure, its SE
    assert out.loc["C2", "estimate_pred"] == pytest.approx(0.80) and out.loc["C2", "se_pred"] == pytest.approx(0.02)
    assert out.loc["C2", "coverage"] == pytest.approx(0.9)
    # C3: covered 30 % -> withheld, no figure and no change
    assert out.loc["C3", "withheld"] and out.loc["C3", "reason"] == "low_coverage"
    assert np.isnan(out.loc["C3", "estimate_pred"]) and np.isnan(out.loc["C3", "change"])
    # C4: 10 respondents this year -> withheld (no confident claim from a small sample)
    assert out.loc["C4", "withheld"] and out.loc["C4", "reason"] == "below_min_n"
    assert np.isnan(out.loc["C4", "change_ci_low"])


def test_withheld_threshold_follows_the_setting_and_the_diagonal_without_a_covariance():
    units = {"C1", "C3"}
    out = index_ranking.reform_table(NEW, OLD, CROSSWALK, units, None, level=0.95, min_n=0,
                                     min_coverage=0.25).set_index("unit_id")
    assert not out.loc["C3", "withheld"]  # 30 % cover clears a 25 % threshold
    assert out.loc["C3", "min_coverage"] == 0.25
    # without the old design: predecessors independent, SE from the diagonal se²
    assert out.loc["C1", "se_pred"] == pytest.approx(np.sqrt(0.36 * 0.0004 + 0.16 * 0.0009), abs=1e-12)
    assert out.loc["C1", "se_pred_method"] == "independent_units"


def test_unit_missing_from_the_crosswalk_is_listed_without_a_predecessor():
    new = pd.concat([NEW, _overall(["C9"], "commune", [0.5], [0.05], [90])], ignore_index=True)
    out = index_ranking.reform_table(new, OLD, CROSSWALK, {"C1", "C9"}, COV, level=0.95, min_n=30,
                                     min_coverage=0.5).set_index("unit_id")
    assert out.loc["C9", "reason"] == "no_predecessor" and out.loc["C9", "comparison"] == "none"
    assert out.loc["C9", "n_predecessors"] == 0 and out.loc["C9", "predecessors"] == ""


def test_merged_departments_follow_the_same_rule():
    old = _overall(["S01", "S02", "S03"], "department", [0.9, 0.8, 0.7], [0.01, 0.02, 0.02], [50, 50, 50])
    new = _overall(["S01", "S03"], "department", [0.88, 0.72], [0.01, 0.02], [60, 50])
    cw = pd.DataFrame({"old_unit_id": ["S01", "S02", "S03"], "new_unit_id": ["S01", "S01", "S03"],
                       "share_of_old": [1.0, 1.0, 1.0], "share_of_new": [0.75, 0.25, 1.0], "basis": "dossiers"})
    units = index_ranking.reshaped_units(new, old, cw)
    assert units == {"S01"}  # S01 absorbed S02: not last year's S01; S03 unchanged (identity)
    out = index_ranking.reform_table(new, old, cw, units, None, level=0.95, min_n=30, min_coverage=0.5)
    row = out.set_index("unit_id").loc["S01"]
    assert row["comparison"] == "merged" and row["basis"] == "dossiers"
    assert row["estimate_pred"] == pytest.approx(0.75 * 0.9 + 0.25 * 0.8)


def test_same_units_both_years_are_not_reshaped():
    assert index_ranking.reshaped_units(OLD, OLD, None) == set()
    assert index_ranking.reshaped_units(OLD, OLD, CROSSWALK) == set()  # D01..D03 are not new units of it


def test_legacy_district_group_is_compared_with_the_new_local_group():
    prev = pd.DataFrame({"scope": ["department", "district", "all"], "level": "overall", "code": "SIPAS",
                         "estimate": [0.9, 0.8, 0.85], "se": 0.01, "n": 500})
    mapped = index_ranking.legacy_scopes(prev, {"department", "commune", "all"}).set_index("scope")
    assert mapped.loc["commune", "scope_prev"] == "district"
    assert mapped.loc["commune", "estimate"] == 0.8
    assert mapped.loc["department", "scope_prev"] == "department"
    # the same structure both years: nothing is copied
    same = index_ranking.legacy_scopes(prev, {"department", "district", "all"})
    assert len(same) == 3 and (same["scope"] == same["scope_prev"]).all()


def test_crosswalk_setting_default_and_a_bad_user_file(tmp_path):
    paths = config.RunPaths(tmp_path, tmp_path)
    shipped, where = index_ranking.load_crosswalk("", paths)
    assert where == index_ranking.DEFAULT_CROSSWALK and {"D01", "D30"} <= set(shipped["old_unit_id"])
    bad = CROSSWALK.assign(share_of_old=[0.5, 0.5, 0.4, 1.0, 0.5])  # D01 sums to 0.9
    bad.to_csv(tmp_path / "cw.csv", index=False)
    with pytest.raises(StageError, match="D01"):
        index_ranking.load_crosswalk("cw.csv", paths)
    with pytest.raises(StageError, match="no such file"):
        index_ranking.load_crosswalk("missing.csv", paths)
    defaults = load_settings().section("index_ranking")
    assert defaults["crosswalk"] == "" and defaults["min_predecessor_coverage"] == 0.5


# ------------------------------------------------------------------------------------------------
# two tiny run folders: a user crosswalk that reshapes this year's districts
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_years(tiny_previous_ranked_run):
    """Last year's run (stages 20 → 30 → 50 of the tiny previous year: conftest's shared run, read-only)."""
    return tiny_previous_ranked_run.paths


def test_two_runs_whose_units_differ_write_yoy_reform(tiny_weighted_run, two_years, tmp_path):
    prev_paths = two_years
    base = tmp_path
    prev = schemas.read_result(prev_paths, "indices").query("level == 'overall'").set_index("unit_id")
    locals_ = sorted(prev.index[prev["unit_type"] != "department"])
    assert len(locals_) >= 2
    a, b = locals_[:2]
    # this year's `a` took half of last year's `b` (b -> a share_of_old 0.5); this year's `b` kept the other half
    cw = pd.DataFrame({"old_unit_id": [a, b, b], "new_unit_id": [a, a, b], "share_of_old": [1.0, 0.5, 0.5],
                       "share_of_new": [0.7, 0.3, 0.4], "basis": "population"})
    cw.to_csv(base / "cw.csv", index=False)
    plain = tiny_weighted_run.settings.replace(index_ranking__previous_results=str(prev_paths.results))
    settings = plain.replace(index_ranking__crosswalk=str(base / "cw.csv"), min_publish_n=5)
    # this year's stages 20 and 30 (conftest's shared run, copied) do not read these settings
    paths = copy_run(tiny_weighted_run.paths, base / "run")
    settings.save(paths.run_dir)
    tables = index_ranking.run(paths, settings)
    reform = schemas.read_result(paths, "yoy_reform").set_index("unit_id")
    assert set(reform.index) == {a, b}
    # the reshaped units are not compared with their own last-year figure
    yoy = schemas.read_result(paths, "yoy")
    assert not set(yoy["unit_id"]) & {a, b} and len(yoy) > 0
    # predecessor figure and SE by hand from last year's indices and its design covariance
    design = weighting.load_design(prev_paths)
    cov = ix.overall_covariance(design, load_instrument(index_ranking.INSTRUMENT), rule="mean")
    np.testing.assert_allclose(np.diag(cov.loc[[a, b], [a, b]]), prev.loc[[a, b], "se"] ** 2, rtol=1e-10)
    w = np.array([0.7, 0.3])
    theta = prev.loc[[a, b], "estimate"].to_numpy()
    assert reform.loc[a, "estimate_pred"] == pytest.approx(w @ theta, abs=1e-12)
    assert reform.loc[a, "se_pred"] == pytest.approx(np.sqrt(w @ cov.loc[[a, b], [a, b]].to_numpy() @ w), abs=1e-12)
    assert reform.loc[a, "se_pred_method"] == "old_design_covariance" and reform.loc[a, "basis"] == "population"
    now = tables.indices.query("level == 'overall'").set_index("unit_id")
    assert reform.loc[a, "change"] == pytest.approx(now.loc[a, "estimate"] - w @ theta, abs=1e-12)
    # `b` is covered 40 % by its predecessors: withheld
    assert reform.loc[b, "withheld"] and reform.loc[b, "reason"] == "low_coverage"
    assert reform.loc[a, "comparison"] == "merged"  # same unit type both years
    # a later run with the same units and no crosswalk removes the stale table
    again = index_ranking.run(paths, plain)
    assert again.yoy_reform is None and not schemas.result_path(paths, "yoy_reform").exists()
    assert "yoy_reform" in again.skipped


# ------------------------------------------------------------------------------------------------
# the report side: vocabularies, league table, methodology paragraph, chart pages
# ------------------------------------------------------------------------------------------------
def test_contract_vocabularies_follow_the_library():
    from sipas_lib import crosswalk
    from sipas_lib.schemas import index_ranking as contract

    assert contract.CROSSWALK_BASES == crosswalk.BASES


def _reform_rows():
    units = index_ranking.reshaped_units(NEW, OLD, CROSSWALK)
    return index_ranking.reform_table(NEW, OLD, CROSSWALK, units, COV, level=0.9, min_n=30, min_coverage=0.5)


def test_league_table_fills_the_indicative_change_of_reshaped_units():
    from conftest import contract_table

    from sipas_lib.stages import annual_report

    ranks = contract_table("ranks", unit_id=["C1", "C3"], unit_type=["commune", "commune"], publishable=[True, True])
    units = pd.DataFrame({"unit_id": ["C1", "C3"], "name_vi": ["a", "b"], "name_en": ["a", "b"]})
    league = annual_report.league_table(ranks, units, None, _reform_rows()).set_index("unit_id")
    assert league.loc["C1", "change"] == pytest.approx(0.85 - 0.76) and league.loc["C1", "change_indicative"]
    assert np.isnan(league.loc["C3", "change"]) and not league.loc["C3", "change_indicative"]  # withheld
    summary = annual_report.reform_summary(_reform_rows()).set_index("unit_type").loc["commune"]
    assert (summary["n_units"], summary["n_compared"], summary["n_low_coverage"], summary["n_below_min_n"]) == (4, 2, 1, 1)


def test_methodology_states_the_basis_threshold_and_level_of_the_run():
    from sipas_lib import methodology

    settings = load_settings(overrides=["common.level=0.9", "index_ranking.min_predecessor_coverage=0.6"])
    reform = _reform_rows().assign(min_coverage=0.6)
    text = methodology.reform_text(reform, settings, "en")
    assert "by area" in text and "60 %" in text and "90 %" in text and "1.645" in text
    assert "2 units compared, 2 withheld" in text
    vi = methodology.reform_text(reform, settings, "vi")
    assert "diện tích" in vi and "60 %" in vi


def test_caterpillar_pages_split_126_units_with_one_axis():
    from sipas_lib import charts

    rng = np.random.default_rng(1)
    est = rng.uniform(0.6, 0.95, 126)
    df = pd.DataFrame({"unit_id": [f"C{i:03d}" for i in range(126)], "estimate": est, "ci_low": est - 0.05,
                       "ci_high": np.minimum(est + 0.05, 1), "n": 40, "publishable": True})
    figs = charts.caterpillar_pages(df, lang="en", level=0.95)
    assert [len(f.axes[0].get_yticks()) for f in figs] == [32, 31, 31, 32]
    assert len({f.axes[0].get_xlim() for f in figs}) == 1
    assert all(f.get_figheight() < 10 for f in figs)
    assert len(charts.caterpillar_pages(df.head(20), lang="en", level=0.95)) == 1
