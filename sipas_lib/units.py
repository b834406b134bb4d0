"""The units registry: departments (Sở), districts (quận/huyện/thị xã) and their communes.

Contract: ``unit_id, code, name_vi, name_en, unit_type (department|district|commune), parent_id``.
``code`` is the two-digit number printed in the first two digits of every form id of the unit
(10-29 departments, 30-59 districts); communes have none and name their district in ``parent_id``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from sipas_lib.config import PACKAGE_DIR

HANOI_REGISTRY = PACKAGE_DIR / "registry" / "hanoi_units.csv"
UNIT_TYPES = ("department", "district", "commune")
REQUIRED_COLUMNS = ("unit_id", "code", "name_vi", "name_en", "unit_type", "parent_id")


def validate_units(units: pd.DataFrame, source: str = "units table") -> pd.DataFrame:
    """Check a units table against the contract and return it with clean dtypes.

    Raises
    ------
    ValueError
        Naming the file, the row (1-based, header = row 1) and the column that is wrong.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in units.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")
    out = units.copy()
    out["unit_id"] = out["unit_id"].astype("string").str.strip()
    bad_type = ~out["unit_type"].isin(UNIT_TYPES)
    if bad_type.any():
        row = int(bad_type.to_numpy().argmax())
        raise ValueError(f"{source}: row {row + 2}, column unit_type: {out['unit_type'].iloc[row]!r} "
                         f"is not one of {UNIT_TYPES}")
    dup = out["unit_id"].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise ValueError(f"{source}: row {row + 2}, column unit_id: {out['unit_id'].iloc[row]!r} appears twice")
    code = pd.to_numeric(out["code"], errors="coerce")
    surveyed = out["unit_type"] != "commune"
    bad_code = surveyed & ~code.between(10, 99)
    if bad_code.any():
        row = int(bad_code.to_numpy().argmax())
        raise ValueError(f"{source}: row {row + 2}, column code: expected a two-digit number 10-99 for "
                         f"{out['unit_id'].iloc[row]}, got {out['code'].iloc[row]!r}")
    if code[surveyed].duplicated().any():
        raise ValueError(f"{source}: column code: two units share a form-id code "
                         f"{sorted(code[surveyed][code[surveyed].duplicated()].astype(int).tolist())}")
    out["code"] = code.astype("Int64")
    communes = out["unit_type"] == "commune"
    orphan = communes & ~out["parent_id"].isin(out.loc[out["unit_type"] == "district", "unit_id"])
    if orphan.any():
        row = int(orphan.to_numpy().argmax())
        raise ValueError(f"{source}: row {row + 2}, column parent_id: commune {out['unit_id'].iloc[row]} "
                         f"names no known district ({out['parent_id'].iloc[row]!r})")
    return out


def load_units(path: str | os.PathLike = HANOI_REGISTRY) -> pd.DataFrame:
    """Read and validate a units CSV (default: Hà Nội's 20 departments and 30 districts)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: units registry not found")
    table = pd.read_csv(path, dtype={"unit_id": "string", "parent_id": "string"}, encoding="utf-8-sig")
    return validate_units(table, source=str(path))


def surveyed_units(units: pd.DataFrame) -> pd.DataFrame:
    """Departments and districts (the units that are surveyed and ranked)."""
    return units.loc[units["unit_type"].isin(("department", "district"))].reset_index(drop=True)
