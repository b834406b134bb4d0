"""Stage ``integrity`` (notebook 25) without a kernel: tables, exclusion setting, errors, planted cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_run

from sipas_lib import config, schemas
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, intake_quality, weighting
from sipas_lib.stages import integrity as stage


def _run(tmp_path: Path, data_dir: Path, settings) -> tuple[config.RunPaths, stage.IntegrityTables]:
    paths = config.run_paths(data_dir, tmp_path / "run").ensure()
    intake_quality.run(paths, settings)
    return paths, stage.run(paths, settings)


def _after_intake(intake_run, tmp_path: Path, settings) -> tuple[config.RunPaths, stage.IntegrityTables]:
    """Stage 25 with ``settings`` on a private copy of the shared stage 20 run (stage 20 does not read
    the integrity settings)."""
    paths = copy_run(intake_run.paths, tmp_path / "run")
    return paths, stage.run(paths, settings)


@pytest.fixture(scope="module")
def tiny_run(tiny_intake_run, tmp_path_factory):
    return _after_intake(tiny_intake_run, tmp_path_factory.mktemp("integrity"), tiny_intake_run.settings)


def test_every_main_table_is_written_and_meets_its_contract(tiny_run):
    paths, result = tiny_run
    for name in schemas.stage_outputs("integrity"):
        assert schemas.read_result(paths, name) is not None
    # the tiny year has re-check and self-survey files: their tables are there too
    for name in ("recheck_summary", "recheck_flags", "self_survey_flags"):
        assert name in result.tables


def test_one_row_per_unit_with_forms_and_counts_that_add_up(tiny_run):
    paths, result = tiny_run
    responses = schemas.read_result(paths, "responses")
    units = result["integrity_units"].set_index("unit_id")
    per_unit = responses.groupby(responses["unit_id"].astype(str)).size()
    assert units["n_forms"].sort_index().equals(per_unit.sort_index().astype("int64").rename("n_forms"))
    signals = result["integrity_signals"]
    flagged = signals.loc[signals["flagged"]].groupby("unit_id").size()
    assert units["n_flags"].sum() == int(flagged.sum())
    # a unit is never flagged without a reason, and an unflagged unit carries none
    assert (units.loc[units["n_flags"] > 0, "reason"].str.len() > 0).all()
    assert (units.loc[units["n_flags"] == 0, "reason"] == "").all()


def test_no_contact_detail_of_the_recheck_reaches_a_result(tiny_run, tiny_demo):
    paths, _ = tiny_run
    recheck = pd.read_csv(tiny_demo / "recheck.csv", dtype=str)
    contacts = [c for c in recheck.columns if c in schemas.PERSONAL_COLUMNS]
    assert contacts, "the simulator writes contact columns the intake must drop"
    values = {v for c in contacts for v in recheck[c].dropna() if len(v) > 5}
    for file in (paths.results).glob("*.parquet"):
        table = pd.read_parquet(file)
        assert not (set(table.columns) & schemas.PERSONAL_COLUMNS), file.name
        text = table.astype(str).to_csv()
        assert not [v for v in values if v in text], file.name


def test_exclusion_setting_drops_the_suspects_in_weighting_and_counts_them(tiny_intake_run, tiny_settings, tmp_path):
    settings = tiny_settings.replace(integrity__exclude_flagged=True)
    paths, result = _after_intake(tiny_intake_run, tmp_path, settings)
    weighting.run(paths, settings)
    summary = schemas.read_result(paths, "weighting_summary").iloc[0]
    excluded = schemas.read_result(paths, "integrity_exclusions", required=False)
    n_excluded = 0 if excluded is None else len(excluded)
    assert summary["n_set_aside"] == n_excluded
    weighted = schemas.read_result(paths, "responses_weighted")
    if n_excluded:
        assert not set(excluded["form_id"]) & set(weighted["form_id"].astype(str))
        assert (excluded["reason"].str.len() > 0).all()
    # switching the setting off again removes the earlier exclusions, so weighting keeps every form
    stage.run(paths, tiny_settings)
    assert schemas.read_result(paths, "integrity_exclusions", required=False) is None


def test_a_broken_recheck_file_stops_the_stage_naming_file_and_column(tiny_demo, tiny_settings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year"))
    recheck = pd.read_csv(data / "recheck.csv", dtype=str).drop(columns=["outcome"])
    recheck.to_csv(data / "recheck.csv", index=False)
    with pytest.raises(StageError, match=r"recheck\.csv.*outcome|outcome.*recheck\.csv"):
        _run(tmp_path, data, tiny_settings)


def test_without_recheck_and_self_survey_files_the_stage_screens_and_says_so(tiny_demo, tiny_settings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year", "recheck.csv", "self_survey.csv"))
    _, result = _run(tmp_path, data, tiny_settings)
    assert "recheck_summary" not in result.tables and "self_survey_flags" not in result.tables
    assert len(result.notes) == 2
    assert set(result["integrity_signals"]["source"]) == {"screening"}


@pytest.mark.slow
def test_the_demo_years_planted_units_are_flagged_with_their_reasons(tmp_path):
    """The committed demo year plants fabrication in two units and inflated own surveys in two others
    (``planted_cases.csv``, written by :mod:`sipas_lib.simulate_integrity`)."""
    if not (config.DEMO_DIR / "planted_cases.csv").exists():
        pytest.skip("the demo year has no planted cases (run `make demo`)")
    _, result = _run(tmp_path, config.DEMO_DIR, load_settings())
    planted = pd.read_csv(config.DEMO_DIR / "planted_cases.csv", dtype=str)
    signals = result["integrity_signals"]
    flagged = signals.loc[signals["flagged"]]
    fabricated = set(planted.loc[planted["case"] == "fabrication", "unit_id"])
    inflated = set(planted.loc[planted["case"] == "inflated_self_survey", "unit_id"])
    assert fabricated <= set(flagged.loc[flagged["source"] == "screening", "unit_id"])
    assert inflated <= set(flagged.loc[flagged["source"] == "self_survey", "unit_id"])
    clean = set(result["integrity_units"]["unit_id"]) - fabricated - inflated
    # at the nominal rates (screening BH 1 % per signal, exact tests at 2.5 %) a clean unit is rarely flagged
    assert len(set(flagged["unit_id"]) & clean) <= 0.03 * len(clean)
    units = result["integrity_units"].set_index("unit_id")
    assert (units.loc[sorted(fabricated), "n_suspect_forms"] > 0).all()
    assert units.loc[sorted(fabricated), "index_without"].notna().all()
