"""Stage 50 (sipas_lib.stages.index_ranking) on the tiny year, without a kernel.

The run folders are built by calling the earlier stages' ``run`` functions (intake, weighting).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import config, schemas
from sipas_lib import index as ix
from sipas_lib.instrument import load_instrument
from sipas_lib.notebook import open_stage
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, index_ranking, intake_quality, weighting
from sipas_lib.texts import load_texts

ROOT = Path(__file__).resolve().parents[1]
FAST = ["index_ranking.n_draws=200"]


def _run_folder(data_dir: Path, run_dir: Path, settings, *, drop_unit: str | None = None) -> config.RunPaths:
    """Stages 20 and 30 into ``run_dir`` (optionally with every response of one unit removed)."""
    paths = config.RunPaths(Path(data_dir).resolve(), Path(run_dir).resolve()).ensure()
    intake_quality.run(paths, settings)
    if drop_unit:
        responses = schemas.read_result(paths, "responses")
        schemas.write_result(paths, "responses", responses[responses["unit_id"] != drop_unit])
    weighting.run(paths, settings)
    return paths


@pytest.fixture(scope="module")
def default_run(tiny_demo, tmp_path_factory):
    settings = load_settings(overrides=FAST)
    paths = _run_folder(tiny_demo, tmp_path_factory.mktemp("run50"), settings)
    return paths, settings, index_ranking.run(paths, settings)


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
def test_non_default_weighting_reaches_stage_50(tiny_demo, tmp_path, default_run):
    settings = load_settings(overrides=FAST + ["weighting.trim_ratio=1.5", "weighting.calibration=rake",
                                               "weighting.min_cell=4"])
    paths = _run_folder(tiny_demo, tmp_path / "run", settings)
    tables = index_ranking.run(paths, settings)
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
def test_level_changes_interval_widths_rank_sets_and_labels(tiny_demo, tmp_path, default_run):
    settings = load_settings(overrides=FAST + ["common.level=0.9"])
    paths = _run_folder(tiny_demo, tmp_path / "run", settings)
    t90, t95 = index_ranking.run(paths, settings), default_run[2]
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


def test_year_on_year_tables_from_the_previous_run(tiny_demo, tmp_path):
    prev_settings = load_settings(overrides=FAST + ["common.year=2024"])
    prev_paths = _run_folder(tiny_demo / "previous_year", tmp_path / "prev", prev_settings)
    index_ranking.run(prev_paths, prev_settings)
    settings = load_settings(overrides=FAST + [f"index_ranking.previous_results={prev_paths.results}"])
    paths = _run_folder(tiny_demo, tmp_path / "run", settings)
    tables = index_ranking.run(paths, settings)
    yoy = schemas.read_result(paths, "yoy")
    city_yoy = schemas.read_result(paths, "city_yoy")
    assert len(yoy) > 0 and len(city_yoy) > 0
    small = (yoy["n"] < settings.min_publish_n) | (yoy["n_prev"] < settings.min_publish_n)
    assert small.any()
    assert yoy.loc[small, "significant"].isna().all() and (yoy.loc[small, "reason"] == "below_min_n").all()
    assert yoy["significant"].isna().equals(yoy["reason"].notna())
    # a later run without a previous year removes the stale optional tables
    index_ranking.run(paths, load_settings(overrides=FAST))
    assert not schemas.result_path(paths, "yoy").exists() and not schemas.result_path(paths, "city_yoy").exists()
    assert tables.yoy is not None


# ------------------------------------------------------------------------------------------------
# issue 11 item 1: a unit without usable forms is left out of ranking, with its reason
# ------------------------------------------------------------------------------------------------
def test_unit_without_responses_is_listed_unranked_with_its_reason(tiny_demo, tmp_path):
    settings = load_settings(overrides=FAST + ["common.min_publish_n=5"])
    paths = _run_folder(tiny_demo, tmp_path / "run", settings, drop_unit="D02")
    tables = index_ranking.run(paths, settings)
    row = tables.ranks.set_index("unit_id").loc["D02"]
    assert pd.isna(row["rank"]) and row["not_ranked_reason"] == "no_responses" and row["n"] == 0
    assert "D02" not in set(tables.indices["unit_id"])
    others = tables.ranks[tables.ranks["unit_id"] != "D02"]
    assert others["rank"].notna().all()  # the other units are still ranked
