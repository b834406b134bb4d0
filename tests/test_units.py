"""The units registry: both sides of the 2025 reform, validation, selection by date, the official list."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from sipas_lib import official_units
from sipas_lib.config import PACKAGE_DIR
from sipas_lib.crosswalk import validate_crosswalk
from sipas_lib.units import (UnitsError, load_units, survey_tier, surveyed_units, units_on, validate_units)


def test_hanoi_registry_before_the_reform_has_20_departments_and_30_districts():
    units = load_units(on="2024-10-01")
    assert units["unit_type"].value_counts().to_dict() == {"district": 30, "department": 20, "province": 1}
    surveyed = surveyed_units(units)
    assert len(surveyed) == 50 and surveyed["code"].between(10, 59).all() and surveyed["code"].is_unique
    assert "Sở Tư pháp" in set(units["name_vi"]) and "Thị xã Sơn Tây" in set(units["name_vi"])
    assert (units.loc[units["unit_type"] == "district", "valid_to"] == pd.Timestamp("2025-06-30")).all()


def test_hanoi_registry_after_the_reform_has_15_departments_and_126_communes():
    units = load_units(on="2025-10-01")
    assert units["unit_type"].value_counts().to_dict() == {"commune": 75, "ward": 51, "department": 15,
                                                            "province": 1}
    official_units.check_official(units)  # official names and codes
    local = units[units["unit_type"].isin(["commune", "ward"])]
    assert (local["unit_id"] == "C" + local["code"].astype(int).astype(str).str.zfill(5)).all()
    assert (local["parent_id"] == "P01").all()
    departments = units[units["unit_type"] == "department"]
    assert departments["code"].tolist() == [official_units.department_code(1, n) for n in range(1, 16)]
    assert {"Sở Nông nghiệp và Môi trường", "Sở Tài chính", "Sở Xây dựng"} <= set(departments["name_vi"])
    assert len(surveyed_units(units)) == 141 and set(survey_tier(surveyed_units(units))) == {"department", "local"}


def test_between_the_two_mergers_the_new_departments_and_the_old_districts_coexist():
    units = load_units(on="2025-04-01")  # departments merged on 1 March 2025, districts abolished 1 July 2025
    assert units["unit_type"].value_counts().to_dict() == {"district": 30, "department": 15, "province": 1}
    assert len(load_units()) == 1 + 20 + 30 + 15 + 126


def test_validity_dates_are_inclusive():
    units = load_units()
    assert "D01" in set(units_on(units, "2025-06-30")["unit_id"])
    assert "D01" not in set(units_on(units, "2025-07-01")["unit_id"])
    assert "C00004" in set(units_on(units, "2025-07-01")["unit_id"])
    assert "P01" in set(units_on(units, "2000-01-01")["unit_id"])  # open dates: always valid


def test_a_legacy_code_may_come_back_in_another_period():
    units = load_units()
    # Sở Y tế had form-id code 25 until 2025; commune C00025 (official code 25) has it since July 2025
    assert units.set_index("unit_id").loc[["S16", "C00025"], "code"].tolist() == [25, 25]


def test_every_old_department_goes_whole_to_one_new_department():
    crosswalk = validate_crosswalk(pd.read_csv(PACKAGE_DIR / "registry" / "hanoi_crosswalk_2025.csv"))
    before, after = load_units(on="2024-10-01"), load_units(on="2025-10-01")
    old = before.loc[before["unit_type"] == "department", "unit_id"]
    new = after.loc[after["unit_type"] == "department", "unit_id"]
    rows = crosswalk[crosswalk["old_unit_id"].isin(old)]
    assert set(rows["old_unit_id"]) == set(old) and set(rows["new_unit_id"]) == set(new)
    assert rows["old_unit_id"].is_unique and (rows["share_of_old"] == 1).all() and (rows["basis"] == "dossiers").all()
    assert rows.groupby("new_unit_id")["share_of_new"].sum().sub(1).abs().max() < 1e-9
    merged = rows.groupby("new_unit_id")["old_unit_id"].apply(set)
    assert merged["S90103"] == {"S03", "S04"}  # Finance = Planning and Investment + Finance


def _table():
    return pd.DataFrame({"unit_id": ["P01", "S01", "D01", "D01C01", "C00004"],
                         "code": [90100, 10, 30, None, 4],
                         "name_vi": list("abcde"), "name_en": list("abcde"),
                         "unit_type": ["province", "department", "district", "commune", "ward"],
                         "parent_id": [None, "P01", "P01", "D01", "P01"],
                         "valid_from": [None, None, None, None, "2025-07-01"],
                         "valid_to": [None, "2025-02-28", "2025-06-30", "2025-06-30", None]})


def test_a_valid_table_gets_clean_types():
    out = validate_units(_table())
    assert str(out["code"].dtype) == "Int64" and out["valid_to"].dtype.kind == "M"
    assert units_on(out, "2025-10-01")["unit_id"].tolist() == ["P01", "C00004"]


@pytest.mark.parametrize("mutate, row, column, message", [
    (lambda t: t.drop(columns="code"), 1, "code", r"missing column\(s\) \['code'\]"),
    (lambda t: t.assign(unit_type=["province", "department", "county", "commune", "ward"]), 4, "unit_type",
     "'county' is not one of"),
    (lambda t: t.assign(unit_id=["P01", "S01", "S01", "D01C01", "C00004"]), 4, "unit_id", "'S01' appears twice"),
    (lambda t: t.assign(code=[90100, 10, 7, None, 4]), 4, "code", "two-digit number 10-99 for a district, got 7"),
    (lambda t: t.assign(code=[90100, 10, 30, None, 123456]), 6, "code", "expected a whole number 1-99,999"),
    (lambda t: t.assign(code=[90100, 10, 30, None, None]), 6, "code", "expected a whole number"),
    (lambda t: t.assign(code=[90100, 30, 30, None, 4]), 4, "code", r"D01 and S01 share a form-id code \(30\)"),
    (lambda t: t.assign(parent_id=[None, "P01", "P01", "D99", "P01"]), 5, "parent_id", "'D99' is not a unit"),
    (lambda t: t.assign(parent_id=[None, "D01", "P01", "D01", "P01"]), 3, "parent_id", "department S01 names D01"),
    (lambda t: t.assign(parent_id=[None, "P01", "P01", "D01", None]), 6, "parent_id", "ward C00004 names no parent"),
    (lambda t: t.assign(valid_from=[None, None, "1.7.2025", None, None]), 4, "valid_from", "not a date: '1.7.2025'"),
    (lambda t: t.assign(valid_from=[None, "2025-03-01", None, None, None]), 3, "valid_to",
     "2025-02-28 is before valid_from"),
])
def test_bad_registry_rows_are_named(mutate, row, column, message):
    with pytest.raises(UnitsError, match=message) as err:
        validate_units(mutate(_table()), source="units.csv")
    assert (err.value.row, err.value.column) == (row, column) and err.value.expected
    assert str(err.value).startswith("units.csv")


def test_a_code_is_reused_only_outside_the_old_units_period():
    later = _table().assign(code=[90100, 10, 30, None, 30])  # C00004 takes D01's code after D01 ended: fine
    validate_units(later)
    with pytest.raises(UnitsError, match=r"C00004 and D01 share a form-id code \(30\)"):
        validate_units(later.assign(valid_from=[None, None, None, None, "2025-06-30"]))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="units registry not found"):
        load_units(tmp_path / "none.csv")


def test_all_3321_official_communes_load_and_an_unknown_code_is_named():
    country = validate_units(pd.concat([official_units.provinces(), official_units.communes()], ignore_index=True),
                             source="Vietnam")
    assert len(country) == 34 + 3321 and country["code"].is_unique
    official_units.check_official(country)
    wrong = country.copy()
    wrong.loc[wrong["unit_id"] == "C00004", "code"] = 99998
    with pytest.raises(ValueError, match=r"not in the official post-2025 list: C00004 \(code 99998\)"):
        official_units.check_official(wrong)


def test_units_command_writes_a_starting_registry(tmp_path):
    from sipas_lib.cli import app

    out = tmp_path / "hn.csv"
    result = CliRunner().invoke(app, ["units", "--province", "ha noi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "51 wards, 75 communes" in result.output and "90101" in result.output
    registry = load_units(out)
    assert registry["unit_type"].value_counts().to_dict() == {"commune": 75, "ward": 51, "province": 1}
    official_units.check_official(registry)
    # the user adds a department: the registry still validates
    dept = pd.DataFrame([{"unit_id": "S90101", "code": 90101, "name_vi": "Sở Nội vụ", "name_en": "Home Affairs",
                          "unit_type": "department", "parent_id": "P01", "valid_from": "2025-03-01"}])
    validate_units(pd.concat([pd.read_csv(out, dtype=str, encoding="utf-8-sig"), dept], ignore_index=True))
    again = CliRunner().invoke(app, ["units", "--province", "Hà Nội", "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
    unknown = CliRunner().invoke(app, ["units", "--province", "Atlantis", "--out", str(tmp_path / "x.csv")])
    assert unknown.exit_code == 2 and "unknown province 'Atlantis'" in unknown.output
    assert not (tmp_path / "x.csv").exists()
