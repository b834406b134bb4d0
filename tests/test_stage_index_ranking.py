"""Stage 50 (sipas_lib.stages.index_ranking) on the tiny year, without a kernel.

The run folders are conftest's shared runs of the tiny year (stages 20 → 30 → 50 called through their
``run`` functions); a test that changes a setting or an input reruns the stages it concerns on a copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import copy_run
from scipy import stats

from sipas_lib import config, schemas
from sipas_lib import index as ix
from sipas_lib.instrument import load_instrument
from sipas_lib.notebook import open_stage
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, index_ranking, weighting
from sipas_lib.texts import load_texts

ROOT = Path(__file__).resolve().parents[1]
FAST = ["index_ranking.n_draws=200"]


def _rerun(run, tmp_path: Path, settings, *stages) -> config.RunPaths:
    """A private copy of a shared run folder of conftest, with ``stages`` run again with ``settings``."""
    paths = copy_run(run.paths, tmp_path / "run")
    settings.save(paths.run_dir)
    for stage in stages:
        stage.run(paths, settings)
    return paths


@pytest.fixture(scope="module")
def default_run(tiny_ranked_run):
    """Stages 20 → 30 → 50 of the tiny year with its settings (conftest's shared run: read-only)."""
    return tiny_ranked_run


# ------------------------------------------------------------------------------------------------
# tables and contracts
# ------------------------------------------------------------------------------------------------
def test_writes_every_main_table_meeting_its_contract(default_run):
    paths, _, tables = default_run
    for name in schemas.stage_outputs("index_ranking"):
        back = schemas.read_result(paths, name)  # validates against the contract
        assert len(back) == len(getattr(tables, name)), name
    assert len(tables.indices) > 0 and len(tables.ranks) == tables.indices["unit_id"].nunique()
    assert not schemas.result_path(paths, "yoy").exists()  # no previous year given
    assert "yoy" in tables.skipped


def test_schema_vocabularies_follow_the_library():
    from sipas_lib.schemas import index_ranking as contract

    assert contract.CI_METHODS == ix.CI_METHODS
    assert set(contract.YOY_REASONS) == set(ix.YOY_REASONS)
    assert contract.OVERALL_CODE == ix.OVERALL_CODE
    bad = pd.DataFrame({"unit_id": ["X"], "unit_type": ["district"], "level": ["overall"], "code": ["SIPAS"],
                        "estimate": [85.0]})  # a 0-100 share is refused
    with pytest.raises(schemas.ContractError):
        schemas.validate("indices", bad)


def test_stage_without_the_weighting_design_fails_loudly(tmp_path):
    paths = config.RunPaths(tmp_path, tmp_path / "run").ensure()
    with pytest.raises(StageError, match="design.json"):
        index_ranking.run(paths, load_settings(overrides=FAST))


# ------------------------------------------------------------------------------------------------
# issue 10 defect 1: the design of stage 30, with its settings
# ------------------------------------------------------------------------------------------------
def test_non_default_weighting_reaches_stage_50(tiny_custom_ranked_run, default_run):
    # conftest's TINY_CUSTOM weighting (rake, trim_ratio 2.5, min_cell 5) through stages 30 and 50
    paths, settings, tables = tiny_custom_ranked_run
    assert weighting.load_design_spec(paths).calibration == "rake"
    design = weighting.load_design(paths)
    expected = ix.satisfaction_indices(design, load_instrument(index_ranking.INSTRUMENT), by="unit_id",
                                       rule=settings.section("index_ranking")["rule"], level=settings.level)
    got = schemas.read_result(paths, "indices")
    m = got.merge(expected, on=["unit_id", "level", "code"], suffixes=("", "_30"), validate="1:1")
    assert len(m) == len(got) > 0
    np.testing.assert_allclose(m["estimate"], m["estimate_30"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["se"], m["se_30"], rtol=0, atol=1e-12)
    normal = m["ci_method"] == "normal"
    np.testing.assert_allclose(m.loc[normal, "ci_low"], m.loc[normal, "ci_low_30"], rtol=0, atol=1e-12)
    # ... and they are not the default weighting's indices (what stage 50 used to compute)
    default = default_run[2].indices.merge(got, on=["unit_id", "level", "code"], suffixes=("_default", ""))
    assert np.abs(default["estimate"] - default["estimate_default"]).max() > 1e-6
    assert tables.indices["estimate"].equals(got["estimate"])


# ------------------------------------------------------------------------------------------------
# issue 10 defect 2: the run's level everywhere
# ------------------------------------------------------------------------------------------------
def test_level_changes_interval_widths_rank_sets_and_labels(tiny_weighted_run, tmp_path, default_run):
    # the default weighting, so that the standard errors are those of the default run
    settings = tiny_weighted_run.settings.replace(level=0.9)
    paths = _rerun(tiny_weighted_run, tmp_path, settings, weighting)
    t90, t95 = index_ranking.run(paths, settings), default_run.result
    m = t90.indices.merge(t95.indices, on=["unit_id", "level", "code"], suffixes=("_90", "_95"))
    normal = (m["ci_method_90"] == "normal") & (m["ci_method_95"] == "normal") & \
        (m["ci_low_95"] > 0) & (m["ci_high_95"] < 1)
    assert normal.any()
    ratio = (m["ci_high_90"] - m["ci_low_90"]) / (m["ci_high_95"] - m["ci_low_95"])
    np.testing.assert_allclose(ratio[normal], stats.norm.ppf(0.95) / stats.norm.ppf(0.975), rtol=1e-9)
    wilson = m["ci_method_90"] == "wilson"
    assert ((m["ci_high_90"] - m["ci_low_90"])[wilson] < (m["ci_high_95"] - m["ci_low_95"])[wilson]).all()
    # ranks carry the index interval at the run's level, and say which level
    assert (t90.ranks["conf_level"] == 0.9).all()
    r = t90.ranks.merge(t90.indices.query("level == 'overall'"), on="unit_id", suffixes=("", "_idx"))
    np.testing.assert_array_equal(r["ci_low"], r["ci_low_idx"])
    assert set(t90.funnel_limits["level"]) == {0.9, index_ranking.FUNNEL_OUTER_LEVEL}
    # labels: the notebook context says "90 %", and no text hard-codes a 95 % level
    ctx = open_stage("index_ranking", str(paths.run_dir), str(paths.data_dir), dict(settings.common),
                     dict(settings.section("index_ranking")))
    assert ctx.level_label == "90 %"
    fixed = re.compile(r"(KTC|CI|khoảng tin cậy|interval|tin cậy)\W{0,3}\d|\d\s?%\W{0,3}(CI|KTC|confidence|tin cậy)")
    for key, entry in load_texts("index_ranking").items():
        for lang in ("vi", "en"):
            assert not fixed.search(entry[lang]), (key, lang)  # interval labels use {level}


def test_no_fixed_normal_quantile_in_stage_50():
    nb = nbformat.read(ROOT / "notebooks" / "50_index_ranking.ipynb", as_version=4)
    sources = [c.source for c in nb.cells] + [(ROOT / "sipas_lib" / "stages" / "index_ranking.py").read_text()]
    assert not any("1.959" in s or "1.96" in s for s in sources)


# ------------------------------------------------------------------------------------------------
# issue 11 item 4: small samples never produce confident claims
# ------------------------------------------------------------------------------------------------
def test_small_area_step_stops_before_the_records_when_no_type_can_be_modelled(default_run, monkeypatch):
    """Two departments and two districts cannot fit intercept + covariates (m <= p): stage 50 says so per
    type without aggregating the administrative records; with one more unit with a sample a model may be fitted."""
    from sipas_lib import small_area as sa

    tables = default_run.result
    terms = default_run.settings.section("index_ranking")["small_area_covariates"]
    assert tables.small_area is None and tables.small_area_model is None
    for kind in ("department", "district"):
        assert f"cannot fit {1 + len(terms)} coefficients" in tables.skipped[f"small_area:{kind}"]
    assert tables.skipped["small_area"].startswith("no unit type could be modelled: department: at most 2 areas")
    monkeypatch.setattr(sa, "admin_covariates", lambda *a, **k: (_ for _ in ()).throw(AssertionError("aggregated")))
    skipped = {}
    excluded = schemas.read_result(default_run.paths, "units_excluded")
    assert index_ranking._small_area(default_run.paths, default_run.settings, None, tables.indices,
                                     tables.city_indices, excluded, None, skipped) == (None, None)
    assert skipped == {k: v for k, v in tables.skipped.items() if k.startswith("small_area")}
    monkeypatch.undo()
    # without the shortcut the whole step (records aggregated, a fit tried per type) refuses the same types
    monkeypatch.setattr(index_ranking, "_too_few_areas", lambda *a, **k: None)
    full: dict[str, str] = {}
    design = index_ranking._load_design(default_run.paths)
    assert index_ranking._small_area(default_run.paths, default_run.settings, design, tables.indices,
                                     tables.city_indices, excluded, None, full) == (None, None)
    assert {k for k in full if k.startswith("small_area:")} == {k for k in skipped if k.startswith("small_area:")}
    assert all("cannot fit" in full[k] for k in full if k.startswith("small_area:"))
    monkeypatch.undo()
    overall = pd.DataFrame({"unit_id": list("ABCD"), "unit_type": "ward", "level": "overall", "estimate": 0.8,
                            "n": [40, 40, 40, 0]})
    left_out = pd.DataFrame({"unit_id": ["E"], "unit_type": ["commune"], "reason": ["no_responses"]})
    assert index_ranking._too_few_areas(overall, left_out, n_coefficients=3) == {
        "commune": "at most 0 areas with a sample cannot fit 3 coefficients",
        "ward": "at most 3 areas with a sample cannot fit 3 coefficients"}
    assert index_ranking._too_few_areas(overall.assign(n=40), left_out, n_coefficients=3) is None


def test_small_units_get_wilson_intervals_never_a_point(default_run):
    _, settings, tables = default_run
    idx = tables.indices
    small = idx["n"] < settings.min_publish_n
    assert small.any(), "the tiny year should have units below the publication minimum"
    assert (idx.loc[small, "ci_method"] == "wilson").all()
    assert (idx["ci_high"] - idx["ci_low"] > 0).all()  # never "100 % (CI 100-100 %)"
    assert idx["ci_low"].between(0, 1).all() and idx["ci_high"].between(0, 1).all()
    assert (idx["ci_low"] <= idx["estimate"] + 1e-15).all() and (idx["estimate"] <= idx["ci_high"] + 1e-15).all()
    ranked = tables.ranks
    assert ranked.loc[~ranked["publishable"], "rank"].isna().all()
    assert (ranked.loc[~ranked["publishable"], "not_ranked_reason"] == "below_min_n").all()


def test_one_or_two_respondents_all_satisfied():
    # the scorecard case of issue 11: 2 respondents, everybody satisfied, SE 0
    table = pd.DataFrame({"estimate": [1.0, 1.0], "se": [0.0, 0.0], "ci_low": [1.0, 1.0], "ci_high": [1.0, 1.0],
                          "n": [2, 200], "deff": [np.nan, np.nan], "measure": "share"})
    out = ix.small_sample_intervals(table, level=0.95, min_n=30)
    z2 = stats.norm.ppf(0.975) ** 2
    np.testing.assert_allclose(out["ci_low"], [2 / (2 + z2), 200 / (200 + z2)], rtol=1e-12)
    assert (out["ci_high"] == 1).all() and (out["ci_method"] == "wilson").all()


def test_year_on_year_gives_no_verdict_for_small_or_zero_se_rows():
    prev = pd.DataFrame({"unit_id": ["A", "B", "C"], "level": "overall", "code": "SIPAS",
                         "estimate": [0.875, 0.80, 0.80], "se": [0.05, 0.0, 0.01], "n": [8, 50, 400]})
    cur = pd.DataFrame({"unit_id": ["A", "B", "C"], "level": "overall", "code": "SIPAS",
                        "estimate": [1.0, 0.90, 0.85], "se": [0.0, 0.02, 0.01], "n": [2, 50, 400]})
    y = ix.year_on_year(cur, prev, min_n=30).set_index("unit_id")
    assert pd.isna(y.loc["A", "significant"]) and y.loc["A", "reason"] == "below_min_n"
    assert pd.isna(y.loc["B", "significant"]) and y.loc["B", "reason"] == "se_zero_or_undefined"
    assert bool(y.loc["C", "significant"]) and pd.isna(y.loc["C", "reason"])
    assert np.isnan(y.loc["A", "z"]) and np.isnan(y.loc["A", "p_value"])
    # Newcombe's interval: wide and containing 0 for 2 respondents against 8
    assert y.loc["A", "change_ci_low"] < 0 < y.loc["A", "change_ci_high"]
    assert y.loc["A", "change_ci_high"] - y.loc["A", "change_ci_low"] > 0.3


def test_year_on_year_tables_from_the_previous_run(tiny_weighted_run, tiny_previous_ranked_run, tmp_path):
    prev_paths = tiny_previous_ranked_run.paths
    settings = tiny_weighted_run.settings.replace(index_ranking__previous_results=str(prev_paths.results))
    paths = _rerun(tiny_weighted_run, tmp_path, settings)
    tables = index_ranking.run(paths, settings)
    yoy = schemas.read_result(paths, "yoy")
    city_yoy = schemas.read_result(paths, "city_yoy")
    assert len(yoy) > 0 and len(city_yoy) > 0
    small = (yoy["n"] < settings.min_publish_n) | (yoy["n_prev"] < settings.min_publish_n)
    assert small.any()
    assert yoy.loc[small, "significant"].isna().all() and (yoy.loc[small, "reason"] == "below_min_n").all()
    assert yoy["significant"].isna().equals(yoy["reason"].notna())
    # a later run without a previous year removes the stale optional tables
    index_ranking.run(paths, tiny_weighted_run.settings)
    assert not schemas.result_path(paths, "yoy").exists() and not schemas.result_path(paths, "city_yoy").exists()
    assert tables.yoy is not None


# ------------------------------------------------------------------------------------------------
# issue 11 item 1: a unit without usable forms is left out of ranking, with its reason
# ------------------------------------------------------------------------------------------------
def test_unit_without_responses_is_listed_unranked_with_its_reason(tiny_intake_run, tmp_path):
    settings = tiny_intake_run.settings.replace(min_publish_n=5)
    paths = _rerun(tiny_intake_run, tmp_path, settings)
    responses = schemas.read_result(paths, "responses")
    schemas.write_result(paths, "responses", responses[responses["unit_id"] != "D02"])
    weighting.run(paths, settings)
    tables = index_ranking.run(paths, settings)
    row = tables.ranks.set_index("unit_id").loc["D02"]
    assert pd.isna(row["rank"]) and row["not_ranked_reason"] == "no_responses" and row["n"] == 0
    assert "D02" not in set(tables.indices["unit_id"])
    others = tables.ranks[tables.ranks["unit_id"] != "D02"]
    assert others["rank"].notna().all()  # the other units are still ranked


# ------------------------------------------------------------------------------------------------
# issue 16: leagues by province at national scale
# ------------------------------------------------------------------------------------------------
def _overall(spec: dict[str, tuple[str, int]], seed: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overall indices of units {unit_id: (unit_type, n)} and their (diagonal) covariance."""
    rng = np.random.default_rng(seed)
    ids = list(spec)
    est, se = rng.uniform(0.7, 0.95, len(ids)), rng.uniform(0.01, 0.04, len(ids))
    indices = pd.DataFrame({"unit_id": ids, "unit_type": [spec[u][0] for u in ids], "level": "overall",
                            "code": "SIPAS", "estimate": est, "se": se, "n": [spec[u][1] for u in ids],
                            "ci_low": est - 2 * se, "ci_high": est + 2 * se, "ci_method": "normal"})
    return indices, pd.DataFrame(np.diag(se**2), index=ids, columns=ids)


NO_EXCLUSIONS = pd.DataFrame({"unit_id": pd.Series(dtype=str), "unit_type": pd.Series(dtype=str),
                              "reason": pd.Series(dtype=str)})
LEAGUE_KW = dict(level=0.95, min_n=30, k_top=2, n_draws=300, seed=5)


def _registry(provinces: dict[str, list[str]], indices: pd.DataFrame) -> pd.DataFrame:
    """A units registry: the provinces and each unit under its province."""
    kind = indices.set_index("unit_id")["unit_type"]
    rows = [{"unit_id": p, "unit_type": "province", "parent_id": None} for p in provinces]
    rows += [{"unit_id": u, "unit_type": kind[u], "parent_id": p} for p, us in provinces.items() for u in us]
    return pd.DataFrame(rows)


def test_units_of_two_provinces_are_ranked_within_their_province():
    from sipas_lib.units import province_of

    spec = {f"A{i}": ("commune", 100) for i in range(6)} | {f"B{i}": ("commune", 100) for i in range(5)} | \
        {"SA1": ("department", 80), "SA2": ("department", 80), "SB1": ("department", 80), "A9": ("commune", 10)}
    indices, cov = _overall(spec)
    in_a = [u for u in spec if u.startswith(("A", "SA"))]
    registry = _registry({"P01": in_a, "P02": [u for u in spec if u not in in_a]}, indices)
    province = province_of(registry)
    ranks, pairs = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, pairs=True, **LEAGUE_KW)
    assert set(ranks["league"]) == {"P01:commune", "P02:commune", "P01:department", "P02:department"}
    assert ranks.set_index("unit_id").loc["A9", "league"] == "P01:commune"  # unranked, still in its league
    assert ranks.groupby("league")["n_units"].max().to_dict() == {"P01:commune": 6, "P02:commune": 5,
                                                                  "P01:department": 2, "P02:department": 1}
    # each province's numbers are exactly those of running that province alone
    for pid in ("P01", "P02"):
        mine = indices[indices["unit_id"].map(province) == pid]
        alone, alone_pairs = index_ranking.league_tables(mine, cov, NO_EXCLUSIONS, province=province, pairs=True,
                                                         **LEAGUE_KW)
        assert set(alone["league"]) <= {"commune", "department"}  # one province alone: leagues by type
        got = ranks[ranks["province_id"] == pid].drop(columns="league").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone.drop(columns="league"))
        got_pairs = pairs[pairs["unit_id"].map(province) == pid].drop(columns="league").reset_index(drop=True)
        pd.testing.assert_frame_equal(got_pairs, alone_pairs.drop(columns="league").reset_index(drop=True))
    # pairs never cross a league
    league = ranks.set_index("unit_id")["league"]
    assert (pairs["unit_id"].map(league) == pairs["other"].map(league)).all()
    assert (pairs["league"] == pairs["unit_id"].map(league)).all()
    schemas.validate("ranks", ranks)
    schemas.validate("rank_pairs", pairs)
    # league_by = unit_type puts the two provinces' communes in one league again
    national = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, league_by="unit_type",
                                           **LEAGUE_KW)
    assert national.loc[national["unit_type"] == "commune", "n_units"].max() == 11


def test_one_province_keeps_one_league_per_unit_type():
    spec = {f"C{i}": ("commune", 60) for i in range(7)} | {f"S{i}": ("department", 60) for i in range(4)}
    indices, cov = _overall(spec, seed=3)
    province = pd.Series("P01", index=list(spec))  # Hà Nội's demo: every unit under P01
    auto = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, **LEAGUE_KW)
    by_type = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=None, league_by="unit_type",
                                          **LEAGUE_KW)
    assert (auto["league"] == auto["unit_type"]).all() and (auto["province_id"] == "P01").all()
    pd.testing.assert_frame_equal(auto.drop(columns="province_id"), by_type.drop(columns="province_id"))
    forced = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province,
                                         league_by="province_unit_type", **LEAGUE_KW)
    assert set(forced["league"]) == {"P01:commune", "P01:department"}
    cols = ["unit_id", "rank", "rank_ci_low", "rank_ci_high", "rank_ci_low_marginal", "eb_estimate"]
    pd.testing.assert_frame_equal(forced[cols], auto[cols])  # same units, same numbers


def test_a_league_too_large_fails_naming_the_setting(monkeypatch):
    spec = {f"C{i}": ("commune", 60) for i in range(8)}
    indices, cov = _overall(spec)
    province = pd.Series(["P01"] * 4 + ["P02"] * 4, index=list(spec))
    monkeypatch.setattr(index_ranking, "MAX_LEAGUE_UNITS", 5)
    with pytest.raises(StageError, match=r"index_ranking.league_by = 'unit_type': league 'commune' has 8 ranked "
                                         r"units.*at most 5 .*province_unit_type"):
        index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, league_by="unit_type", **LEAGUE_KW)
    ranks = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, **LEAGUE_KW)  # auto: 4 + 4
    assert ranks["n_units"].max() == 4
    with pytest.raises(StageError, match="index_ranking.league_by = 'country'"):
        index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, league_by="country", **LEAGUE_KW)
    with pytest.raises(StageError, match="needs the units registry"):
        index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, league_by="province_unit_type", **LEAGUE_KW)


def test_province_of_follows_the_registry():
    from sipas_lib.units import province_of

    registry = pd.DataFrame({"unit_id": ["P01", "P02", "S1", "C1", "D1", "X1"],
                             "unit_type": ["province", "province", "department", "commune", "district", "commune"],
                             "parent_id": [None, None, "P01", "P02", "P01", "D1"]})
    # a province has none; a legacy district's commune is in its district's province
    assert province_of(registry).fillna("-").to_dict() == {"P01": "-", "P02": "-", "S1": "P01", "C1": "P02",
                                                           "D1": "P01", "X1": "P01"}


def test_views_of_many_units_are_cut_and_summarised():
    spec = {f"A{i:03d}": ("commune", 100) for i in range(9)} | {f"B{i:03d}": ("commune", 100) for i in range(4)}
    indices, cov = _overall(spec, seed=8)
    province = pd.Series(["P01"] * 9 + ["P02"] * 4, index=list(spec))
    ranks, pairs = index_ranking.league_tables(indices, cov, NO_EXCLUSIONS, province=province, pairs=True, **LEAGUE_KW)
    # a chart of at most `limit` units: the best and the worst halves by index
    shown = index_ranking.chart_units(ranks, limit=6)
    by_index = ranks.sort_values("estimate", ascending=False)["unit_id"].tolist()
    assert shown["unit_id"].tolist() == by_index[:3] + by_index[-3:]
    assert index_ranking.chart_units(ranks, limit=13) is ranks
    summary = index_ranking.league_summary(ranks, pairs).set_index("league")
    assert summary["n_units"].to_dict() == {"P01:commune": 9, "P02:commune": 4}
    for league, g in ranks.groupby("league"):
        row = summary.loc[league]
        assert row["first"] == g.loc[g["rank"] == 1, "unit_id"].iloc[0]
        assert row["median_width"] == (g["rank_ci_high"] - g["rank_ci_low"] + 1).median()
        mine = pairs[pairs["league"] == league]
        assert row["tied_share"] == (mine["relation"] == "tied").mean() and len(mine) == len(g) * (len(g) - 1)
        assert row["n_top"] == g["in_top_k"].sum()
