"""Stage ``intake_quality`` on the tiny year, without a kernel."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from sipas_lib import config, schemas
from sipas_lib.privacy import EMAIL_MARK, PHONE_MARK
from sipas_lib.stages import StageError
from sipas_lib.stages import intake_quality as stage

PHONE = "0912 345 678"
EMAIL = "hoa.nguyen@gmail.com"


def _paths(data_dir, tmp_path, name=""):
    return config.run_paths(data_dir, tmp_path / f"{tmp_path.name}{name}")


def _copy(tiny_demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year"))
    return data


@pytest.fixture(scope="module")
def taken_in(tiny_intake_run):
    """Stage 20 of the tiny year with its settings (conftest's shared run: read-only)."""
    return tiny_intake_run.paths, tiny_intake_run.result


@pytest.fixture(scope="module")
def with_contacts(tiny_demo, tmp_path_factory):
    """The tiny year with a name, phone and e-mail typed into education_other of one district form."""
    data = _copy(tiny_demo, tmp_path_factory.mktemp("contacts"))
    table = pd.read_csv(data / "responses_districts.csv", dtype=str, keep_default_na=False)
    row = table.index[table["form_id"].str.fullmatch(r"\d{6}") & (table["c01"] != "")][0]
    table.loc[row, ["education", "education_other"]] = ["7", f"Nguyễn Thị Hoa, ĐT {PHONE}, {EMAIL}"]
    table.to_csv(data / "responses_districts.csv", index=False)
    return data, table.loc[row, "form_id"]


def test_writes_every_main_table_meeting_its_contract(taken_in):
    paths, out = taken_in
    assert set(out.tables) == set(schemas.stage_outputs("intake_quality")) == {
        "responses", "intake_summary", "units", "response_rates", "item_nonresponse"}
    for name, table in out.tables.items():
        assert len(schemas.read_result(paths, name)) == len(table) > 0, name
    assert out.quarantine_file.exists() and out.quarantine_file.is_relative_to(paths.run_dir)


def test_received_is_accepted_plus_quarantined(taken_in, tiny_demo):
    _, out = taken_in
    summary = out.intake_summary
    assert (summary["received"] == summary["accepted"] + summary["quarantined"]).all()
    assert summary["accepted"].sum() == len(out.responses)
    assert summary["quarantined"].sum() == len(out.quarantine) == out.quarantine_counts["n"].sum()
    spoiled = pd.read_csv(tiny_demo / "spoiled_records.csv", dtype=str)
    assert len(out.quarantine) >= len(spoiled) - 1  # the exact duplicate's first copy is kept


def test_unit_type_from_the_registry_and_no_personal_or_free_text_columns(taken_in, tiny_demo):
    paths, out = taken_in
    registry = pd.read_csv(tiny_demo / "units.csv", dtype=str).set_index("unit_id")["unit_type"]
    assert (out.responses["unit_type"] == out.responses["unit_id"].map(registry)).all()
    assert (out.rates_by_unit["unit_type"] == out.rates_by_unit["unit_id"].map(registry)).all()
    written = pd.read_parquet(schemas.result_path(paths, "responses"))
    assert not set(written.columns) & (schemas.PERSONAL_COLUMNS | schemas.FREE_TEXT_COLUMNS)
    assert not {"enumerator_name", "enumerator_phone", "enumerator_address"} & set(written.columns)


def test_response_rates_count_distinct_issued_forms(taken_in, tiny_demo):
    _, out = taken_in
    sample = pd.read_csv(tiny_demo / "sample.csv", dtype={"form_id": str})
    overall = out.rate_overall.iloc[0]
    assert overall["issued"] == sample["form_id"].nunique()
    assert overall["returned"] == sample["form_id"].isin(out.responses["form_id"]).sum()
    fine = out.response_rates
    assert fine["issued"].sum() == overall["issued"] and fine["returned"].sum() == overall["returned"]
    assert (fine["returned"] <= fine["issued"]).all()
    by_type = out.rates_by_type_mode.groupby("unit_type")["issued"].sum()
    assert by_type.sum() == overall["issued"] and set(by_type.index) == {"department", "district"}


def test_item_nonresponse_covers_every_form_taken_in(taken_in):
    _, out = taken_in
    assert set(out.item_nonresponse["form"]) == set(out.responses["form"]) == set(out.forms)
    for form, instrument in out.forms.items():
        rows = out.item_nonresponse.loc[(out.item_nonresponse["form"] == form) & (out.item_nonresponse["base"] == "all")]
        assert rows["code"].tolist() == instrument.item_codes
        n_form = (out.responses["form"] == form).sum()
        assert (rows["n"] == n_form).all()


def test_free_text_is_dropped_by_default(with_contacts, tiny_settings, tmp_path):
    data, _ = with_contacts
    paths = _paths(data, tmp_path)
    stage.run(paths, tiny_settings)
    for name in schemas.stage_outputs("intake_quality"):
        table = schemas.read_result(paths, name)
        text = table.select_dtypes(exclude="number").astype(str)
        assert not text.apply(lambda col: col.str.contains(PHONE) | col.str.contains("Thị Hoa")).any().any(), name
    assert "education_other" not in schemas.read_result(paths, "responses").columns


def test_free_text_kept_on_request_is_scrubbed(with_contacts, tiny_settings, tmp_path):
    data, form_id = with_contacts
    paths = _paths(data, tmp_path)
    out = stage.run(paths, tiny_settings.replace(intake_quality__keep_free_text=True))
    written = schemas.read_result(paths, "responses").set_index("form_id")
    text = written.loc[form_id, "education_other"]
    assert text == f"Nguyễn Thị Hoa, ĐT {PHONE_MARK}, {EMAIL_MARK}"
    assert out.responses.set_index("form_id").loc[form_id, "education_other"] == text
    other = written["education_other"].dropna()
    assert len(other) > 1 and not other.str.contains(r"\d{3}[ .-]?\d{3}[ .-]?\d{3}").any()


def test_missing_sample_fails_the_stage_naming_the_file(tiny_demo, tiny_settings, tmp_path):
    data = _copy(tiny_demo, tmp_path)
    (data / "sample.csv").unlink()
    with pytest.raises(StageError, match="sample.csv"):
        stage.run(_paths(data, tmp_path), tiny_settings)


def test_sample_unit_unknown_to_the_registry_fails_naming_row_and_column(tiny_demo, tiny_settings, tmp_path):
    data = _copy(tiny_demo, tmp_path)
    sample = pd.read_csv(data / "sample.csv", dtype=str)
    sample.loc[3, "unit_id"] = "X99"
    sample.to_csv(data / "sample.csv", index=False)
    with pytest.raises(StageError, match=r"row 5.*unit_id|unit_id.*row 5|X99"):
        stage.run(_paths(data, tmp_path), tiny_settings)


def test_no_accepted_questionnaire_fails_the_stage(tiny_demo, tiny_settings, tmp_path):
    data = _copy(tiny_demo, tmp_path)
    for name in ("responses_districts.csv",):
        table = pd.read_csv(data / name, dtype=str)
        table["unit_id"] = "X99"
        table.to_csv(data / name, index=False)
    dept = pd.read_excel(data / "responses_departments.xlsx", dtype=str)
    dept["Đơn vị"] = "X99"
    dept.to_excel(data / "responses_departments.xlsx", index=False)
    with pytest.raises(StageError, match="no questionnaire was accepted"):
        stage.run(_paths(data, tmp_path), tiny_settings)
