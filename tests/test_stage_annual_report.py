"""Stages ``annual_report`` and ``unit_scorecard`` on the tiny year, without a kernel.

The run folders are conftest's shared runs of the tiny year (intake, weighting, index & ranking
through their ``run`` functions), with reliability added; the report stages only select, merge and
order their tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_run

from sipas_lib import config, methodology, schemas
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, annual_report, index_ranking, intake_quality, reliability, unit_scorecard
from sipas_lib.stages import weighting as weighting_stage


@pytest.fixture(scope="module")
def tiny_run(tiny_ranked_run, tmp_path_factory):
    """Stages 20 → 30 → 50 (conftest's shared run, copied) and stage 40 with 20 bootstrap replicates
    (the reliability table is only passed through), with the effective configuration saved as the runner does."""
    paths = copy_run(tiny_ranked_run.paths, tmp_path_factory.mktemp("run60") / "run")
    settings = tiny_ranked_run.settings.replace(reliability__n_boot=20)
    settings.save(paths.run_dir)
    reliability.run(paths, settings)
    return paths, settings


def test_annual_report_assembles_the_stages_tables(tiny_run):
    paths, settings = tiny_run
    report = annual_report.run(paths, settings)
    ranks = schemas.read_result(paths, "ranks")
    units = schemas.read_result(paths, "units")
    # one league row per ranked-table unit, values the stage's own (nothing recomputed)
    assert sorted(report.league["unit_id"]) == sorted(ranks["unit_id"])
    merged = report.league.merge(ranks, on="unit_id", suffixes=("", "_ranks"))
    for col in ("estimate", "ci_low", "ci_high", "rank_ci_low", "rank_ci_high_marginal"):
        assert merged[col].equals(merged[f"{col}_ranks"]), col
    assert report.league["name_vi"].tolist() == report.league["unit_id"].map(units.set_index("unit_id")["name_vi"]).tolist()
    for g in report.groups:  # ranked units first, by rank
        ranked = report.league.loc[(report.league["unit_type"] == g) & report.league["rank"].notna(), "rank"]
        assert ranked.is_monotonic_increasing
    city = schemas.read_result(paths, "city_indices")
    all_overall = city.loc[(city["scope"] == "all") & (city["level"] == "overall"), "estimate"].iloc[0]
    assert report.city.set_index("scope").loc["all", "estimate"] == all_overall
    total = report.sample.set_index("unit_type").loc["total"]
    intake = schemas.read_result(paths, "intake_summary")
    assert total["received"] == intake["received"].sum() and total["accepted"] == intake["accepted"].sum()
    assert report.criteria_city["estimate"].is_monotonic_increasing
    assert report.criteria_city["code"].str.fullmatch(r"c\d\d").all()
    assert report.weakest_units["weakest"].all()
    assert report.reliability is not None and (report.reliability["unit_type"] == "all").all()
    assert report.design.calibration == settings.section("weighting")["calibration"]


def test_group_facts_follow_the_stages_intervals(tiny_run):
    paths, settings = tiny_run
    report = annual_report.run(paths, settings)
    for f in report.group_facts.itertuples():
        pub = report.league.loc[(report.league["unit_type"] == f.unit_type) & report.league["publishable"]]
        assert f.n_above == int((pub["ci_low"] > f.group_estimate).sum())
        assert f.n_above + f.n_below + f.n_between == len(pub)
        if len(pub):
            assert f.best == pub.loc[pub["estimate"].idxmax(), "unit_id"]


def test_methodology_follows_the_runs_calibration_and_level(tiny_custom_ranked_run, tmp_path):
    # stages 20 → 30 → 50 with conftest's TINY_CUSTOM: raking, level 0.9 (shared run, copied)
    paths = copy_run(tiny_custom_ranked_run.paths, tmp_path / "run")
    settings = tiny_custom_ranked_run.settings
    report = annual_report.run(paths, settings)
    assert report.design.calibration == "rake"
    text = methodology.appendix(report.design, report.run_settings, "en", deff_range=report.deff_range)
    assert "Raking" in text and "Post-stratification" not in text
    assert "90 % confidence interval" in text and "95 %" not in text.replace("90 % to 95 %", "")
    assert "deff<sub>w</sub> ranges from" in text


# ------------------------------------------------------------------------------------------------
# the model-based (Fay–Herriot) index beside the direct one (issue 14)
# ------------------------------------------------------------------------------------------------
def _league_inputs(official: str):
    """Three wards and a department; stage 50 modelled the wards only (``official`` from its table)."""
    from conftest import contract_table

    ids = ["W1", "W2", "W3", "S1"]
    kinds = ["ward", "ward", "ward", "department"]
    ranks = contract_table("ranks", unit_id=ids, unit_type=kinds, estimate=[0.80, 0.90, 0.85, 0.70],
                           rank=[3, 1, 2, 1], publishable=[True] * 4)
    units = contract_table("units", unit_id=ids, unit_type=kinds, name_vi=ids, name_en=ids)
    small_area = contract_table("small_area", unit_id=ids[:3], unit_type=kinds[:3], n=[30, 30, 30],
                                direct=[0.80, 0.90, 0.85], model_estimate=[0.86, 0.84, 0.85],
                                model_ci_low=[0.80, 0.79, 0.80], model_ci_high=[0.91, 0.89, 0.90],
                                model_rank=[1, 3, 2], model_rank_ci_low=[1, 1, 1], model_rank_ci_high=[3, 3, 3],
                                estimate_type=["eblup"] * 3, official=[official] * 3)
    return ranks, units, small_area


def test_league_shows_the_model_based_index_beside_the_official_direct_one():
    ranks, units, small_area = _league_inputs("direct")
    league = annual_report.league_table(ranks, units, small_area=small_area).set_index("unit_id")
    sa = small_area.set_index("unit_id")
    for col in annual_report.MODEL_COLUMNS:  # the stage's values, nothing recomputed
        assert league.loc[sa.index, col].tolist() == sa[col].tolist(), col
    assert league.loc["S1", ["model_estimate", "model_ci_low"]].isna().all()  # a type stage 50 did not model
    assert pd.isna(league.loc["S1", "model_rank"]) and (league["official"] == "direct").all()
    wards = league.loc[league["unit_type"] == "ward"]
    assert wards.index.tolist() == ["W2", "W3", "W1"]  # the direct ranks order the table
    assert league["estimate"].tolist() == [0.70, 0.90, 0.85, 0.80]  # the direct index is kept as it was


def test_league_follows_the_model_based_ranks_when_the_run_publishes_them():
    ranks, units, small_area = _league_inputs("model")  # index_ranking.use_model_for_ranks: true
    league = annual_report.league_table(ranks, units, small_area=small_area)
    wards = league.loc[league["unit_type"] == "ward"]
    assert wards["unit_id"].tolist() == ["W1", "W3", "W2"] and (wards["official"] == "model").all()
    assert (league.loc[league["unit_type"] == "department", "official"] == "direct").all()


def test_league_without_small_area_has_empty_model_columns():
    ranks, units, _ = _league_inputs("direct")
    league = annual_report.league_table(ranks, units)
    assert set(annual_report.MODEL_COLUMNS) <= set(league.columns)
    assert league["model_estimate"].isna().all() and (league["official"] == "direct").all()
    assert str(league["model_rank"].dtype) == "Int64"


def _formats(lang: str):
    """The notebook's context in ``lang``: what :func:`annual_report.league_rows` prints with."""
    from sipas_lib.notebook import NotebookContext
    from sipas_lib.settings import stage_settings

    here = Path(".").resolve()
    return NotebookContext("annual_report", config.RunPaths(here, here), stage_settings("annual_report", {"lang": lang}))


def _printed_league(official: str) -> pd.DataFrame:
    """The wards of :func:`_league_inputs` with intervals, rank sets (one at national size), a unit
    below the publication minimum and an indicative change across the reform."""
    from conftest import contract_table

    ids, kinds = ["W1", "W2", "W3"], ["ward"] * 3
    ranks = contract_table("ranks", unit_id=ids, unit_type=kinds, estimate=[0.80, 0.90, 0.6],
                           ci_low=[0.74, 0.84, 0.3], ci_high=[0.86, 0.96, 0.9], n=[60, 55, 4],
                           publishable=[True, True, False], rank=[1204, 1, None], rank_ci_low=[1150, 1, None],
                           rank_ci_high=[1310, 2, None], rank_ci_low_marginal=[1180, 1, None],
                           rank_ci_high_marginal=[1250, 1, None])
    units = contract_table("units", unit_id=ids, unit_type=kinds, name_vi=ids, name_en=ids)
    _, _, small_area = _league_inputs(official)
    league = annual_report.league_table(ranks, units, small_area=small_area)
    return league.assign(change=league["unit_id"].map({"W1": 0.015, "W2": -0.02}),
                         change_indicative=league["unit_id"].eq("W1"))


def test_league_rows_print_the_stages_values_in_the_readers_language():
    league = _printed_league("direct")  # order: W2 (rank 1), W1 (rank 1,204), then W3 (not ranked)
    en = annual_report.league_rows(league, _formats("en"), {"W1": "Ward <one>"}, min_n=30)
    assert list(en.columns) == ["Rank", "Unit", "Direct index — official", "95 % CI", "Model-based (95 % CI)",
                                "95 % rank set (simultaneous)", "95 % rank set (this unit)", "Responses",
                                "Change from last year", "Note", "_flag"]
    assert en["Unit"].tolist() == ["W2", "Ward <one>", "W3"]  # names as given (the table escapes them)
    assert en["Rank"].tolist() == ["1", "1,204", "–"]
    assert en["Direct index — official"].tolist() == ["90.00 %", "80.00 %", "60.00 %"]
    assert en["95 % CI"].tolist() == ["84.0–96.0 %", "74.0–86.0 %", "30.0–90.0 %"]
    assert en["Model-based (95 % CI)"].tolist() == ["84.00 % (79.0–89.0 %)", "86.00 % (80.0–91.0 %)",
                                                    "85.00 % (80.0–90.0 %)"]
    assert en["95 % rank set (simultaneous)"].tolist() == ["1–2", "1,150–1,310", "–"]
    assert en["95 % rank set (this unit)"].tolist() == ["1–1", "1,180–1,250", "–"]
    assert en["Responses"].tolist() == ["55", "60", "4"]
    assert en["Change from last year"].tolist() == ["−2.0 pp", "+1.5 pp †", "–"]  # † an indicative change
    assert en["Note"].tolist() == ["", "", "fewer than 30 responses – not ranked"]
    assert en["_flag"].tolist() == [False, False, True]
    vi = annual_report.league_rows(league, _formats("vi"), {}, min_n=30)
    assert vi.iloc[1, [0, 2, 5]].tolist() == ["1.204", "80,00 %", "1.150–1.310"]


def test_league_rows_follow_the_model_based_ranks_when_they_are_official():
    league = _printed_league("model")
    rows = annual_report.league_rows(league, _formats("en"), {}, min_n=30)
    assert "Model-based (95 % CI) — official" in rows.columns and "Direct index" in rows.columns
    sets = [c for c in rows.columns if "set" in c]
    assert len(sets) == 1  # the model-based rank set replaces the direct ones
    assert rows["Rank"].tolist() == ["1", "2", "3"] and rows[sets[0]].tolist() == ["1–3"] * 3
    assert rows["Unit"].tolist() == ["W1", "W3", "W2"]  # the model-based order of the league table
    without_model = annual_report.league_rows(_printed_league("direct").assign(model_estimate=float("nan")),
                                              _formats("en"), {}, min_n=30)
    assert "Satisfaction index" in without_model.columns
    assert not [c for c in without_model.columns if "Model-based" in c]


@pytest.fixture(scope="module")
def two_tier_run(tiny_two_tier_demo, tiny_two_tier_settings, tmp_path_factory):
    """Stages 20, 30 and 50 on the tiny two-tier year (11 wards: stage 50 fits the small-area model)."""
    settings = tiny_two_tier_settings.replace(index_ranking__small_area_bootstrap=0)
    paths = config.RunPaths(tiny_two_tier_demo.resolve(), tmp_path_factory.mktemp("run60_two_tier").resolve()).ensure()
    settings.save(paths.run_dir)
    for stage in (intake_quality, weighting_stage, index_ranking):
        stage.run(paths, settings)
    return paths, settings


def test_annual_report_of_a_two_tier_year_carries_the_model_based_index(two_tier_run):
    paths, settings = two_tier_run
    report = annual_report.run(paths, settings)
    small_area = schemas.read_result(paths, "small_area").set_index("unit_id")
    assert report.groups == ("department", "ward")
    wards = report.league.loc[report.league["unit_type"] == "ward"].set_index("unit_id")
    assert len(wards) == 11 and wards["model_estimate"].notna().all()
    np.testing.assert_array_equal(wards["model_ci_high"], small_area.loc[wards.index, "model_ci_high"])
    assert report.model_covariates == tuple(settings.section("index_ranking")["small_area_covariates"])
    # two departments cannot fit the model: stage 50 said so, and the league shows their direct index only
    assert report.league.loc[report.league["unit_type"] == "department", "model_estimate"].isna().all()


def test_model_based_intervals_at_another_level_are_refused(two_tier_run, tmp_path):
    import shutil

    paths, settings = two_tier_run
    other = config.RunPaths(paths.data_dir, tmp_path / "run").ensure()
    shutil.copytree(paths.run_dir, other.run_dir, dirs_exist_ok=True)
    small_area = schemas.read_result(other, "small_area")
    schemas.write_result(other, "small_area", small_area.assign(conf_level=0.9))
    with pytest.raises(StageError, match="small_area"):
        annual_report.run(other, settings)


def test_unit_type_comes_from_the_registry_not_the_id():
    units = pd.DataFrame({"unit_id": ["S01", "X02"], "name_vi": ["a", "b"], "name_en": ["a", "b"],
                          "unit_type": ["district", "department"]})
    intake = pd.DataFrame({"source_file": "f", "unit_id": ["S01", "X02", "??"], "received": [5, 7, 1],
                           "accepted": [5, 6, 0], "quarantined": [0, 1, 1]})
    rates = pd.DataFrame({"unit_id": ["S01", "X02"], "survey_mode": "postal", "issued": [10, 10],
                          "returned": [5, 6], "response_rate": [0.5, 0.6]})
    table = annual_report.sample_table(intake, rates, units, ("department", "district")).set_index("unit_type")
    assert table.loc["district", "received"] == 5 and table.loc["department", "received"] == 7
    assert table.loc["total", "received"] == 13  # the unknown unit counts only in the total
    assert table.loc["department", "response_rate"] == pytest.approx(0.6)


def test_missing_result_table_is_a_stage_error_naming_the_file(tmp_path):
    paths = config.RunPaths(Path("data/demo").resolve(), tmp_path).ensure()
    with pytest.raises(StageError, match="units.parquet"):
        annual_report.run(paths, load_settings())
    with pytest.raises(StageError, match="units.parquet"):
        unit_scorecard.run(paths, load_settings(), "S01")


# ------------------------------------------------------------------------------------------------
# unit scorecard
# ------------------------------------------------------------------------------------------------


def test_scorecard_selects_the_units_rows(tiny_run):
    paths, settings = tiny_run
    ranks = schemas.read_result(paths, "ranks")
    unit = ranks.loc[ranks["publishable"], "unit_id"].iloc[0]
    card = unit_scorecard.run(paths, settings, unit)
    row = ranks.set_index("unit_id").loc[unit]
    assert card.overall["estimate"] == row["estimate"] and card.overall["rank"] == row["rank"]
    assert card.unit["unit_type"] == row["unit_type"]
    city = schemas.read_result(paths, "city_indices")
    peer = city.loc[(city["scope"] == row["unit_type"]) & (city["level"] == "element")].set_index("code")["estimate"]
    assert np.allclose(card.elements["peer_estimate"], card.elements["code"].map(peer))
    assert card.criteria["code"].str.fullmatch(r"c\d\d").all()
    assert card.weakest["rank_in_unit"].is_monotonic_increasing and card.weakest["weakest"].all()
    rates = schemas.read_result(paths, "response_rates")
    assert card.sample["issued"] == rates.loc[rates["unit_id"] == unit, "issued"].sum()
    with pytest.raises(StageError, match="not in the units registry"):
        unit_scorecard.run(paths, settings, "NOPE")


def test_scorecards_read_each_table_once_until_it_changes(tiny_run, monkeypatch):
    paths, settings = tiny_run
    calls = []
    original = schemas.read_result
    monkeypatch.setattr(schemas, "read_result", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    unit_scorecard._CACHE.clear()
    ranks = original(paths, "ranks")
    unit_scorecard.run(paths, settings, ranks["unit_id"].iloc[0])
    first = len(calls)
    assert first >= 6
    for unit in ranks["unit_id"]:
        unit_scorecard.run(paths, settings, unit)
    assert len(calls) == first  # the other scorecards read nothing again
    schemas.write_result(paths, "ranks", ranks)  # a rewritten table is read again
    path = schemas.result_path(paths, "ranks")
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    unit_scorecard.run(paths, settings, ranks["unit_id"].iloc[0])
    assert calls[first:] == ["ranks"]


def test_a_report_at_another_level_than_the_results_is_refused(tiny_run):
    paths, settings = tiny_run
    other = settings.replace(level=0.9)
    with pytest.raises(StageError, match="level"):
        annual_report.run(paths, other)
    with pytest.raises(StageError, match="level"):
        unit_scorecard.run(paths, other, schemas.read_result(paths, "ranks")["unit_id"].iloc[0])


def _registry_and_league(n_provinces: int, communes_per_province: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A registry of provinces and their communes, and league rows (type, id, index) for all of them."""
    provinces = [f"P{p:02d}" for p in range(n_provinces)]
    communes = [f"{p}C{c:03d}" for p in provinces for c in range(communes_per_province)]
    units = pd.DataFrame({"unit_id": provinces + communes,
                          "unit_type": ["province"] * len(provinces) + ["commune"] * len(communes),
                          "parent_id": [None] * len(provinces) + [c[:3] for c in communes]})
    units = units.assign(name_vi=units["unit_id"], name_en=units["unit_id"])
    rng = np.random.default_rng(16)
    league = units[["unit_id", "unit_type"]].assign(estimate=rng.uniform(0.6, 0.95, len(units)))
    return units, league


def test_chart_sections_keep_every_unit_of_a_citys_survey():
    units, league = _registry_and_league(1, 126)  # Hà Nội's 126 communes: drawn whole, as before
    parts = annual_report.chart_sections(league, units, "vi", ("commune", "province"))
    assert [(p.unit_type, p.province, p.n_units, p.ranks_comparable) for p in parts] == [
        ("commune", None, 126, True), ("province", None, 1, True)]
    pd.testing.assert_frame_equal(parts[0].rows, league.loc[league["unit_type"] == "commune"])


def test_chart_sections_draw_the_best_and_worst_of_the_country_once_per_type():
    units, league = _registry_and_league(34, 80)  # 2,720 communes in 34 provinces: one chart, not 34
    parts = annual_report.chart_sections(league, units, "vi", ("province", "commune"))
    assert annual_report.MAX_CHART_UNITS is index_ranking.MAX_CHART_UNITS == 150  # notebook 50's limit
    province, commune = parts
    assert (province.n_units, len(province.rows), province.ranks_comparable) == (34, 34, True)  # one national league
    assert (commune.province, commune.n_units, len(commune.rows), commune.ranks_comparable) == (None, 2720, 150, False)
    ranked = league.loc[league["unit_type"] == "commune"].sort_values("estimate", ascending=False)
    assert commune.rows["unit_id"].tolist() == ranked["unit_id"].head(75).tolist() + ranked["unit_id"].tail(75).tolist()
    small = annual_report.chart_sections(league, units, "vi", ("commune",), limit=3000)[0]  # under the limit: all
    assert len(small.rows) == 2720 and not small.ranks_comparable
