"""The units registry."""

import pandas as pd
import pytest

from sipas_lib.units import load_units, surveyed_units, validate_units


def test_hanoi_registry_has_20_departments_and_30_districts():
    units = load_units()
    assert units["unit_type"].value_counts().to_dict() == {"district": 30, "department": 20}
    assert units["code"].between(10, 59).all() and units["code"].is_unique
    assert "Sở Tư pháp" in set(units["name_vi"]) and "Thị xã Sơn Tây" in set(units["name_vi"])
    assert len(surveyed_units(units)) == 50


def _table():
    return pd.DataFrame({"unit_id": ["S01", "D01", "D01C01"], "code": [10, 30, None],
                         "name_vi": ["a", "b", "c"], "name_en": ["a", "b", "c"],
                         "unit_type": ["department", "district", "commune"], "parent_id": [None, None, "D01"]})


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.drop(columns="code"), r"missing column\(s\) \['code'\]"),
    (lambda t: t.assign(unit_type=["department", "province", "commune"]), "row 3, column unit_type: 'province'"),
    (lambda t: t.assign(unit_id=["S01", "S01", "D01C01"]), "row 3, column unit_id: 'S01' appears twice"),
    (lambda t: t.assign(code=[10, 7, None]), "row 3, column code: expected a two-digit number"),
    (lambda t: t.assign(code=[30, 30, None]), "share a form-id code"),
    (lambda t: t.assign(parent_id=[None, None, "D99"]), "row 4, column parent_id: commune D01C01"),
])
def test_bad_registry_rows_are_named(mutate, message):
    with pytest.raises(ValueError, match=message):
        validate_units(mutate(_table()), source="units.csv")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="units registry not found"):
        load_units(tmp_path / "none.csv")
