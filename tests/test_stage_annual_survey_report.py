"""Stage ``annual_survey_report`` (Phụ lục 4) on the tiny year, without a kernel."""

from __future__ import annotations

import pandas as pd
import pytest

from sipas_lib import schemas
from sipas_lib.stages import StageError
from sipas_lib.stages import annual_survey_report as stage

from conftest import copy_run


@pytest.fixture(scope="module")
def intake_run(tiny_intake_run):
    """A run folder with stage 20's results of the tiny year (conftest's shared run: read-only)."""
    return tiny_intake_run.paths, tiny_intake_run.settings


def test_counts_come_from_the_intake_results(intake_run, tmp_path):
    paths = copy_run(intake_run[0], tmp_path / "run")
    tables = stage.run(paths, intake_run[1])
    s = schemas.read_result(paths, "annual_survey_summary").iloc[0]
    intake = schemas.read_result(paths, "intake_summary")
    rates = schemas.read_result(paths, "response_rates")
    assert s["received"] == intake["received"].sum() == s["accepted"] + s["quarantined"]
    assert s["returned"] == rates["returned"].sum() and s["issued"] == rates["issued"].sum()
    assert s["return_rate"] == pytest.approx(rates["returned"].sum() / rates["issued"].sum(), abs=1e-15)
    responses = schemas.read_result(paths, "responses")
    assert tables["annual_survey_forms"]["n"].sum() == len(responses)
    u = tables["annual_survey_units"].set_index("unit_type")
    assert u["n_units"].to_dict() == responses.groupby("unit_type")["unit_id"].nunique().to_dict()
    q = tables["annual_survey_quarantine"]
    assert q["n"].sum() == s["quarantined"]


def test_dates_outside_the_year_never_stretch_the_period(intake_run, tmp_path):
    paths = copy_run(intake_run[0], tmp_path / "run")
    responses = schemas.read_result(paths, "responses")
    responses.loc[responses.index[:2], "survey_date"] = pd.to_datetime(["1900-01-01", "2031-01-01"])
    schemas.write_result(paths, "responses", responses)
    inside = responses["survey_date"].iloc[2:].dropna()
    inside = inside[inside.dt.year == 2025]
    s = stage.run(paths, intake_run[1])["annual_survey_summary"].iloc[0]
    assert s["dates_outside_year"] == 2
    assert s["first_survey_date"] == inside.min() and s["last_survey_date"] == inside.max()


def test_quarantine_is_reported_by_rule_only(intake_run, tmp_path):
    paths = copy_run(intake_run[0], tmp_path / "run")
    qfile = paths.quarantine / "quarantine.csv"
    q = pd.read_csv(qfile, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    phone = "0912345678"
    extra = pd.DataFrame([{**{c: "" for c in q.columns}, "rule": "item_value", "column": "c03",
                           "reason": f"answer {phone} outside the scale", "reason_vi": f"câu trả lời {phone}"}])
    pd.concat([q, extra]).to_csv(qfile, index=False, encoding="utf-8-sig")
    summary = schemas.read_result(paths, "intake_summary")
    summary.loc[summary.index[0], ["received", "quarantined"]] += 1
    schemas.write_result(paths, "intake_summary", summary)
    tables = stage.run(paths, intake_run[1])
    for table in tables.values():
        assert not table.astype(str).apply(lambda col: col.str.contains(phone)).any().any()
    assert list(tables["annual_survey_quarantine"].columns) == ["rule", "n", "share_of_received"]


def test_inconsistent_or_missing_inputs_are_stage_errors(intake_run, tmp_path):
    paths = copy_run(intake_run[0], tmp_path / "run")
    (paths.quarantine / "quarantine.csv").rename(paths.quarantine / "moved.csv")
    with pytest.raises(StageError, match="quarantine.csv: not found"):
        stage.run(paths, intake_run[1])
    (paths.quarantine / "moved.csv").rename(paths.quarantine / "quarantine.csv")
    summary = schemas.read_result(paths, "intake_summary")
    summary.loc[summary.index[0], ["received", "accepted"]] += 1
    schemas.write_result(paths, "intake_summary", summary)
    with pytest.raises(StageError, match="accepted, but"):
        stage.run(paths, intake_run[1])


def test_fieldwork_period_rounds():
    d = pd.Series(pd.to_datetime(["2025-03-01", "2025-03-30"]))
    p = stage.fieldwork_period(d, 2025)
    assert (p["span_months"], p["round_months"], p["rounds"]) == (1, 1, 1)
    p = stage.fieldwork_period(pd.Series(pd.to_datetime(["2025-01-01", "2025-12-31"])), 2025)
    assert (p["span_months"], p["round_months"], p["rounds"]) == (12, 12, 1)
    p = stage.fieldwork_period(pd.Series(pd.to_datetime(["2024-12-31", None])), 2025)
    assert pd.isna(p["first_survey_date"]) and p["dates_outside_year"] == 1 and p["dates_missing"] == 1
