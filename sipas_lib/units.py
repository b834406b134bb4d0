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


class UnitsError(ValueError):
    """A units table that breaks the registry's rules.

    Attributes
    ----------
    row
        Spreadsheet row of the first offending unit (header = row 1), or ``None`` for the whole table.
    column
        The column at fault, or ``None``.
    expected
        What the registry expects there, in words.
    """

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None,
                 expected: str = "") -> None:
        super().__init__(message)
        self.row, self.column, self.expected = row, column, expected

    def __reduce__(self):
        return (_rebuild_units_error, (str(self), self.row, self.column, self.expected))


def _rebuild_units_error(message: str, row: int | None, column: str | None, expected: str) -> "UnitsError":
    return UnitsError(message, row=row, column=column, expected=expected)


def validate_units(units: pd.DataFrame, source: str = "units table") -> pd.DataFrame:
    """Check a units table against the contract and return it with clean dtypes.

    Raises
    ------
    UnitsError
        (a ``ValueError``) naming the file, the row (1-based, header = row 1) and the column that
        is wrong; its ``row``, ``column`` and ``expected`` attributes say the same for callers.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in units.columns]
    if missing:
        raise UnitsError(f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}",
                         row=1, column=missing[0], expected=f"the columns {', '.join(REQUIRED_COLUMNS)}")
    out = units.copy()
    out["unit_id"] = out["unit_id"].astype("string").str.strip()
    bad_type = ~out["unit_type"].isin(UNIT_TYPES)
    if bad_type.any():
        row = int(bad_type.to_numpy().argmax())
        raise UnitsError(f"{source}: row {row + 2}, column unit_type: {out['unit_type'].iloc[row]!r} "
                         f"is not one of {UNIT_TYPES}", row=row + 2, column="unit_type",
                         expected=f"one of {', '.join(UNIT_TYPES)}")
    dup = out["unit_id"].duplicated()
    if dup.any():
        row = int(dup.to_numpy().argmax())
        raise UnitsError(f"{source}: row {row + 2}, column unit_id: {out['unit_id'].iloc[row]!r} appears twice",
                         row=row + 2, column="unit_id", expected="each unit id once")
    code = pd.to_numeric(out["code"], errors="coerce")
    surveyed = out["unit_type"] != "commune"
    bad_code = surveyed & ~code.between(10, 99)
    if bad_code.any():
        row = int(bad_code.to_numpy().argmax())
        raise UnitsError(f"{source}: row {row + 2}, column code: expected a two-digit number 10-99 for "
                         f"{out['unit_id'].iloc[row]}, got {out['code'].iloc[row]!r}", row=row + 2, column="code",
                         expected="a two-digit number 10-99 for a department or district")
    if code[surveyed].duplicated().any():
        row = int((surveyed & code.duplicated() & code.notna()).to_numpy().argmax())
        raise UnitsError(f"{source}: column code: two units share a form-id code "
                         f"{sorted(code[surveyed][code[surveyed].duplicated()].astype(int).tolist())}",
                         row=row + 2, column="code", expected="a different form-id code for every surveyed unit")
    out["code"] = code.astype("Int64")
    communes = out["unit_type"] == "commune"
    orphan = communes & ~out["parent_id"].isin(out.loc[out["unit_type"] == "district", "unit_id"])
    if orphan.any():
        row = int(orphan.to_numpy().argmax())
        raise UnitsError(f"{source}: row {row + 2}, column parent_id: commune {out['unit_id'].iloc[row]} "
                         f"names no known district ({out['parent_id'].iloc[row]!r})", row=row + 2,
                         column="parent_id", expected="the unit_id of a district in this table")
    return out


def load_units(path: str | os.PathLike = HANOI_REGISTRY) -> pd.DataFrame:
    """Read and validate a units CSV (default: Hà Nội's 20 departments and 30 districts).

    A year's own ``units.csv`` is better read with :func:`sipas_lib.inputs.read_input`, which also
    detects the separator and names the row of every problem; this reader is for the bundled registry.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: units registry not found")
    try:
        table = pd.read_csv(path, dtype={"unit_id": "string", "parent_id": "string"}, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8-sig")
            bad = 0
        except UnicodeDecodeError as exc:  # the first byte that is not UTF-8, located in the file itself
            bad = exc.start
        row = raw[:bad].count(b"\n") + 1
        raise UnitsError(f"{path}, row {row}: not UTF-8: save it as 'CSV UTF-8' so Vietnamese letters are kept "
                         "(probably Windows-1258 or another Windows code page)", row=row,
                         expected="UTF-8 text") from None
    return validate_units(table, source=str(path))


def surveyed_units(units: pd.DataFrame) -> pd.DataFrame:
    """Departments and districts (the units that are surveyed and ranked)."""
    return units.loc[units["unit_type"].isin(("department", "district"))].reset_index(drop=True)
