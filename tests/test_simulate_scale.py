"""The national-scale benchmark year (issue 16 §1) on a small scale: structure, official codes, seeding."""

import numpy as np
import pandas as pd
import pytest

from sipas_lib import formids, intake, official_units, simulate, simulate_scale
from sipas_lib.units import survey_tier, surveyed_units, validate_units

#: Two provinces with few forms: the full year's code paths in about a second.
SMALL = {"provinces": 2, "forms_per_unit": {"department": 20, "local": 20}, "frame_scale": 0.05}


@pytest.fixture(scope="module")
def small_year():
    return simulate_scale.scale_year(seed=7, **SMALL)


#: One province with few forms: a written year that intake and stage 25 read.
TINY = {"provinces": 1, "forms_per_unit": {"department": 20, "local": 20}, "frame_scale": 0.05}


@pytest.fixture(scope="module")
def written_year(tmp_path_factory) -> dict:
    """A :data:`TINY` scale year written to disk once (file name -> path); the tests only read it."""
    return simulate_scale.write_scale_year(tmp_path_factory.mktemp("scale_year"), seed=7, **TINY)


def test_units_are_the_official_provinces_and_communes_with_17_departments_each():
    units = simulate_scale.scale_units()
    counts = units["unit_type"].value_counts()
    official = official_units.communes()
    # the official post-2025 list: 34 provinces, 3,321 commune-level units (vietnam-provinces)
    assert counts["province"] == 34
    assert counts["commune"] + counts["ward"] == len(official) == 3321
    assert counts["department"] == 34 * len(simulate_scale.DEPARTMENTS) == 578
    local = units.loc[units["unit_type"].isin(["commune", "ward"])]
    pd.testing.assert_frame_equal(local[["unit_id", "code", "name_vi", "parent_id"]].reset_index(drop=True)
                                  .astype({"code": "int64", "unit_id": str, "parent_id": str}),
                                  official[["unit_id", "code", "name_vi", "parent_id"]].reset_index(drop=True)
                                  .astype({"code": "int64", "unit_id": str, "parent_id": str}))
    official_units.check_official(units)
    assert units["code"].is_unique and units["unit_id"].is_unique
    assert units["valid_from"].eq(pd.Timestamp(official_units.REFORM_DATE)).all()


def test_departments_carry_their_province_in_code_and_name():
    units = simulate_scale.scale_units(2)
    dept = units.loc[units["unit_type"] == "department"].reset_index(drop=True)
    province = dept["parent_id"].str[1:].astype(int)
    number = np.tile(np.arange(1, 18), 2)
    expected = [official_units.department_code(p, k) for p, k in zip(province, number)]
    assert dept["code"].astype(int).tolist() == expected
    assert (dept["unit_id"] == "S" + dept["code"].astype(str)).all()
    # Hà Nội (P01) comes first in the official list
    assert dept["name_vi"].iloc[1] == "Sở Tư pháp thành phố Hà Nội"
    assert dept["name_en"].iloc[1] == "Department of Justice, Ha Noi City"
    assert dept["name_vi"].iloc[17 + 12] == "Thanh tra tỉnh Cao Bằng"
    validate_units(units)  # parents exist and have the allowed type


def test_small_year_has_every_file_and_forms_for_every_unit(small_year):
    assert set(small_year) == set(simulate_scale.SCALE_FILES)
    units = small_year["units.csv"]
    surveyed = surveyed_units(units)
    sample = small_year["sample.csv"]
    assert set(sample["unit_id"]) == set(surveyed["unit_id"])
    assert sample["form_id"].str.len().eq(formids.CURRENT_LENGTH).all()
    assert formids.check_form_ids(sample["form_id"]).all()
    # issued: 20 per department (equal), 20 per commune on average (power allocation, minimum per commune)
    tier = survey_tier(surveyed).set_axis(surveyed["unit_id"])
    per_tier = sample["unit_id"].map(tier).value_counts()
    assert per_tier["department"] == 20 * (tier == "department").sum()
    assert per_tier["local"] == 20 * (tier == "local").sum()


def test_each_response_file_holds_its_tier_and_the_spoiled_records_are_logged(small_year):
    units = small_year["units.csv"].set_index("unit_id")["unit_type"]
    departments = small_year[simulate.RESPONSE_FILES["department"]]
    communes = small_year[simulate.RESPONSE_FILES["commune"]]
    assert set(departments["Đơn vị"].map(units).dropna()) == {"department"}
    assert set(communes["unit_id"].map(units).dropna()) <= {"commune", "ward"}
    assert not any(c.startswith("lg") for c in departments.columns)
    spoiled = small_year["spoiled_records.csv"]
    assert len(spoiled) == 8
    # the "unknown unit" record keeps the look of its tier's ids but is in no registry
    unknown = pd.concat([departments["Đơn vị"], communes["unit_id"]])
    assert set(unknown[~unknown.isin(units.index)]) <= {"S90199", "C99999"}
    returned = len(departments) + len(communes) - 2  # spoil() appends two duplicated copies
    assert 0.6 < returned / len(small_year["sample.csv"]) < 0.95


def test_units_differ_and_departments_differ_from_communes(small_year):
    answers = small_year[simulate.RESPONSE_FILES["commune"]]
    criteria = [f"c{k:02d}" for k in range(1, 19)]
    satisfied = (answers[criteria] >= 4).where(answers[criteria].notna())
    by_unit = satisfied.groupby(answers["unit_id"]).mean().mean(axis=1)
    # each unit has its own effect (drawn for every registry unit), not one shared value
    assert by_unit.std() > 0.03
    assert 0.7 < by_unit.median() < 0.95


def test_same_seed_same_tables_other_seed_other_tables():
    tiny = {"provinces": 1, "forms_per_unit": {"department": 10, "local": 10}, "frame_scale": 0.02}
    first, again = simulate_scale.scale_year(seed=7, **tiny), simulate_scale.scale_year(seed=7, **tiny)
    for name, table in first.items():
        pd.testing.assert_frame_equal(table, again[name], obj=name)
    other = simulate_scale.scale_year(seed=8, **tiny)
    # form ids follow the allocation (same either way); which transactions were drawn follows the seed
    assert other["sample.csv"]["form_id"].equals(first["sample.csv"]["form_id"])
    assert not other["sample.csv"]["transaction_id"].equals(first["sample.csv"]["transaction_id"])


@pytest.mark.slow
def test_intake_quarantines_exactly_the_spoiled_records(written_year):
    written = written_year
    assert set(written) == set(simulate_scale.SCALE_FILES)
    result = intake.intake_year(written["units.csv"].parent, year=2025)
    spoiled = pd.read_csv(written["spoiled_records.csv"], dtype=str)
    assert len(spoiled) > 0  # the year has spoiled records to find
    assert set(spoiled["form_id"]) <= set(result.quarantine["form_id"].astype(str))
    received = len(result.accepted) + len(result.quarantine)
    assert received == (len(pd.read_excel(written["responses_departments.xlsx"]))
                        + len(pd.read_csv(written["responses_communes.csv"])))


def test_integrity_files_are_drawn_for_every_unit(small_year):
    """Stage 25's inputs at scale: own surveys of every unit, the re-check of the flagged returned forms, the log."""
    sample = small_year["sample.csv"]
    surveyed = set(surveyed_units(small_year["units.csv"])["unit_id"])
    own = small_year["self_survey.csv"]
    # every unit asks 10-30 people a month from July (the reform): ~6 months x 20 forms on average
    per_unit = own.loc[own["unit_id"].isin(surveyed)].groupby("unit_id").size()
    assert set(per_unit.index) == surveyed and per_unit.between(6 * 5, 6 * 45).all()
    assert own["survey_date"].str[:7].loc[own["survey_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}")].min() >= "2025-07"
    recheck = small_year["recheck.csv"]
    flagged = set(sample.loc[sample["recheck"], "form_id"])
    assert len(recheck) > 0 and set(recheck["form_id"]) <= flagged
    log = small_year["planted_cases.csv"]
    fabricated = log.loc[log["case"] == "fabrication"]
    tiers = survey_tier(surveyed_units(small_year["units.csv"])).set_axis(surveyed_units(small_year["units.csv"])["unit_id"])
    assert sorted(fabricated.groupby("unit_id").size().index.map(tiers)) == ["department", "local"]  # one block of each form
    answers = pd.concat([small_year[simulate.RESPONSE_FILES["commune"]]["form_id"].astype(str),
                         small_year[simulate.RESPONSE_FILES["department"]]["Mã số phiếu"].astype(str)])
    assert set(fabricated["form_id"].astype(str)) <= set(answers)
    communes = small_year[simulate.RESPONSE_FILES["commune"]]
    assert communes["collection_point"].notna().all() and communes["return_date"].notna().all()


@pytest.mark.slow
def test_stage_25_runs_on_a_written_scale_year(written_year, tmp_path):
    from sipas_lib import config
    from sipas_lib.settings import load_settings
    from sipas_lib.stages import integrity, intake_quality

    written = written_year
    paths = config.run_paths(written["units.csv"].parent, tmp_path / "run")
    settings = load_settings()
    intake_quality.run(paths, settings)
    out = integrity.run(paths, settings)
    surveyed = set(surveyed_units(pd.read_csv(written["units.csv"]))["unit_id"])
    assert set(out["integrity_units"]["unit_id"]) == surveyed
    received = len(pd.read_csv(written["recheck.csv"]))
    assert len(out["recheck"]) + len(out["recheck_quarantine"]) == received > 0
    own = pd.read_csv(written["self_survey.csv"])
    summary = out["self_survey_summary"]
    assert summary["received"].sum() == len(own) and (summary["accepted"] + summary["quarantined"]).sum() == len(own)
    assert len(out["self_survey_quarantine"]) == 3  # the three spoiled own-survey records (planted_cases.csv)
