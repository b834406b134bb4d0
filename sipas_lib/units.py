"""The units registry: the province, its departments (Sở) and local units, across the 2025 reform.

Contract: ``unit_id, code, name_vi, name_en, unit_type, parent_id`` and, optionally,
``valid_from, valid_to`` (ISO dates; empty = open) and free columns (``district_kind``, ``note``).

``unit_type`` comes from the vocabulary held here (:data:`UNIT_TYPES`): ``province``,
``department``, ``commune`` and ``ward`` (the commune-level units since 1 July 2025) and the legacy
``district`` (quận/huyện/thị xã, abolished on 1 July 2025). ``code`` is the number every form id
of the unit opens with (:mod:`sipas_lib.formids`): 10–99 in the legacy 6-digit ids (departments
10–29, districts 30–59 before 2025), the official commune code (≤ 5 digits) for communes and
wards, and :func:`sipas_lib.official_units.department_code` for current departments. Two units
may share a code only when their validity periods do not overlap. Communes of the legacy
districts (dossier records only) have no code and name their district in ``parent_id``.

A registry holds every unit that ever existed with its dates (``sipas_lib/registry/hanoi_units.csv``
keeps Hà Nội's 20 departments and 30 districts until 2025 and the 15 departments and 126
communes/wards after); :func:`load_units` with ``on=`` gives the units of one day. A year's own
``units.csv`` is that selection.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pandas as pd

from sipas_lib.config import PACKAGE_DIR

HANOI_REGISTRY = PACKAGE_DIR / "registry" / "hanoi_units.csv"
#: The registry's unit types, top-level first; ``district`` is legacy (before 1 July 2025).
UNIT_TYPES = ("province", "department", "district", "commune", "ward")
#: Commune-level units (the local units of the two-tier government, and a legacy district's communes).
COMMUNE_TYPES = ("commune", "ward")
#: Unit types each type may name in ``parent_id`` (empty parent always allowed, except for communes).
PARENT_TYPES = {
    "province": (),
    "department": ("province",),
    "district": ("province",),
    "commune": ("province", "district"),
    "ward": ("province", "district"),
}
#: Each surveyed unit type's questionnaire tier (:func:`survey_tier`).
TIER_OF_TYPE = {"department": "department", "district": "local", "commune": "local", "ward": "local"}
REQUIRED_COLUMNS = ("unit_id", "code", "name_vi", "name_en", "unit_type", "parent_id")
DATE_COLUMNS = ("valid_from", "valid_to")
LEGACY_CODE_RANGE = (10, 99)
MAX_CODE = 99_999  # the 5 code digits of a 10-digit form id (sipas_lib.formids.CURRENT_MAX_UNIT_CODE)


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


def _fail(source: str, mask: pd.Series, column: str, what: str, expected: str,
          values: pd.Series | None = None) -> None:
    """Raise for the first row where ``mask`` holds; ``{value!r}`` in ``what`` is that row's value."""
    mask = mask.fillna(False).astype(bool)
    if not mask.any():
        return
    i = int(mask.to_numpy().argmax())
    value = (values if values is not None else pd.Series(pd.NA, index=mask.index)).iloc[i]
    raise UnitsError(f"{source}: row {i + 2}, column {column}: {what.format(value=value)}", row=i + 2,
                     column=column, expected=expected)


def validate_units(units: pd.DataFrame, source: str = "units table") -> pd.DataFrame:
    """Check a units table against the contract and return it with clean dtypes.

    Rules: the required columns; ``unit_id`` unique; ``unit_type`` in :data:`UNIT_TYPES`;
    ``valid_from``/``valid_to`` ISO dates (``YYYY-MM-DD``) with ``valid_from <= valid_to``;
    ``code`` a whole number 1–99,999 for every unit but a legacy district's communes (10–99 for a
    district), never shared by two units whose periods overlap; ``parent_id`` naming a unit of
    the table of a type allowed by :data:`PARENT_TYPES` (a commune or ward always has one).

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
    out = units.reset_index(drop=True).copy()
    out["unit_id"] = out["unit_id"].astype("string").str.strip()
    out["parent_id"] = out["parent_id"].astype("string").str.strip().replace("", pd.NA)
    utype = out["unit_type"].astype("string").str.strip()
    _fail(source, ~utype.isin(UNIT_TYPES), "unit_type", "{value!r} is not one of " + str(UNIT_TYPES),
          f"one of {', '.join(UNIT_TYPES)}", out["unit_type"])
    out["unit_type"] = utype
    _fail(source, out["unit_id"].isna() | out["unit_id"].duplicated(), "unit_id", "{value!r} appears twice",
          "each unit id once", out["unit_id"])
    for column in DATE_COLUMNS:
        raw = out[column] if column in out.columns else pd.Series(pd.NA, index=out.index, dtype="object")
        text = raw.astype("string").str.strip().replace("", pd.NA)
        parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        _fail(source, text.notna() & parsed.isna(), column, "not a date: {value!r}",
              "a date written YYYY-MM-DD, or empty", text)
        out[column] = parsed
    _fail(source, out["valid_from"] > out["valid_to"], "valid_to", "{value} is before valid_from",
          "a date on or after valid_from", out["valid_to"].dt.strftime("%Y-%m-%d"))
    parent_type = out["parent_id"].map(out.set_index("unit_id")["unit_type"])
    _fail(source, out["parent_id"].notna() & parent_type.isna(), "parent_id",
          "{value!r} is not a unit of this table", "the unit_id of another unit in this table", out["parent_id"])
    allowed = pd.Series([pt in PARENT_TYPES[t] if isinstance(pt, str) else t not in COMMUNE_TYPES
                         for t, pt in zip(out["unit_type"], parent_type)], index=out.index)
    described = out["unit_type"] + " " + out["unit_id"] + " names " + out["parent_id"].fillna("no parent") + " (" \
        + parent_type.fillna("-") + ")"
    _fail(source, ~allowed, "parent_id", "{value}: a department or district belongs to the province (or none), "
          "a commune or ward to its province or (before 2025) its district",
          "the unit_id of the province, or of a commune's district", described)
    code = pd.to_numeric(out["code"], errors="coerce")
    written = out["code"].astype("string").str.strip().replace("", pd.NA).notna()
    legacy_commune = out["unit_type"].isin(COMMUNE_TYPES) & (parent_type == "district")
    is_district = out["unit_type"] == "district"
    whole = code.notna() & (code == code.round())
    shown = out["code"].astype("string").str.removesuffix(".0")
    _fail(source, written & ~whole, "code", "not a whole number: {value!r}", "a whole number", shown)
    _fail(source, is_district & ~code.between(*LEGACY_CODE_RANGE), "code",
          "expected a two-digit number 10-99 for a district, got {value}", "a two-digit number 10-99 for a district",
          shown)
    _fail(source, ~legacy_commune & ~code.between(1, MAX_CODE), "code",
          f"expected a whole number 1-{MAX_CODE:,} (the unit's form-id code), got {{value}}",
          f"a whole number 1-{MAX_CODE:,}", shown)
    out["code"] = code.astype("Int64")
    _check_code_overlaps(out, source)
    return out


def _check_code_overlaps(units: pd.DataFrame, source: str) -> None:
    """Raise when two units whose validity periods overlap share a code (their form ids would clash)."""
    coded = units.loc[units["code"].notna()]
    shared = coded.loc[coded["code"].duplicated(keep=False)]
    lo, hi = pd.Timestamp("1900-01-01"), pd.Timestamp("2200-12-31")  # open dates, inside every datetime unit
    for _, same in shared.groupby("code", sort=True):
        starts = same["valid_from"].fillna(lo).to_numpy()
        ends = same["valid_to"].fillna(hi).to_numpy()
        for a in range(len(same)):
            for b in range(a):
                if starts[a] <= ends[b] and starts[b] <= ends[a]:
                    row = int(same.index[a]) + 2
                    raise UnitsError(
                        f"{source}: row {row}, column code: {same['unit_id'].iloc[a]} and {same['unit_id'].iloc[b]} "
                        f"share a form-id code ({int(same['code'].iloc[a])}) in the same period",
                        row=row, column="code", expected="a different form-id code for every unit of the same period")


def units_on(units: pd.DataFrame, on: str | date | pd.Timestamp) -> pd.DataFrame:
    """The units valid on day ``on`` (``valid_from <= on <= valid_to``, empty dates open).

    Examples
    --------
    >>> reg = load_units()
    >>> units_on(reg, "2024-10-01")["unit_type"].value_counts().to_dict()
    {'district': 30, 'department': 20, 'province': 1}
    >>> units_on(reg, "2025-10-01")["unit_type"].value_counts().to_dict()
    {'commune': 75, 'ward': 51, 'department': 15, 'province': 1}
    """
    day = pd.Timestamp(on)
    valid = (units["valid_from"].isna() | (units["valid_from"] <= day)) & (
        units["valid_to"].isna() | (units["valid_to"] >= day))
    return units.loc[valid.to_numpy()].reset_index(drop=True)


def load_units(path: str | os.PathLike | None = None, on: str | date | pd.Timestamp | None = None) -> pd.DataFrame:
    """Read and validate a units CSV (default: Hà Nội's registry, before and after the 2025 reform).

    Parameters
    ----------
    path
        The CSV; ``None`` = :data:`HANOI_REGISTRY`.
    on
        A day: only the units valid that day (:func:`units_on`). ``None`` = every unit.

    A year's own ``units.csv`` is better read with :func:`sipas_lib.inputs.read_input`, which also
    detects the separator and names the row of every problem; this reader is for registries.
    """
    path = Path(HANOI_REGISTRY if path is None else path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: units registry not found")
    try:
        table = pd.read_csv(path, dtype={"unit_id": "string", "parent_id": "string", "valid_from": "string",
                                         "valid_to": "string"}, encoding="utf-8-sig", keep_default_na=False,
                            na_values=[""])
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
    units = validate_units(table, source=str(path))
    return units if on is None else units_on(units, on)


def surveyed_units(units: pd.DataFrame) -> pd.DataFrame:
    """The units that are surveyed and ranked: departments, districts, and communes/wards of a province.

    A legacy district's communes (``parent_id`` a district) only carry dossier records.
    """
    keep = units["unit_type"].isin(("department", "district")) | (
        units["unit_type"].isin(COMMUNE_TYPES) & parent_types(units).ne("district"))
    return units.loc[keep.to_numpy(dtype=bool)].reset_index(drop=True)


def parent_types(units: pd.DataFrame) -> pd.Series:
    """The unit type of each unit's parent (``""`` when it has none or the parent is not in ``units``)."""
    types = units.assign(unit_id=units["unit_id"].astype(str)).set_index("unit_id")["unit_type"].astype(str)
    return units["parent_id"].map(types).astype(object).fillna("")


def province_of(units: pd.DataFrame) -> pd.Series:
    """Each unit's province (``unit_id`` of a ``province`` unit), indexed by ``unit_id``.

    The parent when it is a province (departments, communes and wards, pre-2025 districts); the
    district's province for a legacy district's commune; missing for a province itself and for a
    unit without one. The one rule for "which province is this unit in" (league tables by
    province, the annual report's sections).
    """
    ids = units["unit_id"].astype(str).to_numpy()
    parent = pd.Series(units["parent_id"].astype(object).to_numpy(), index=ids)
    kind = pd.Series(units["unit_type"].astype(str).to_numpy(), index=ids)
    via_district = parent.map(parent).where(parent.map(kind).eq("district"))
    province = parent.where(parent.map(kind).eq("province")).fillna(via_district)
    return province.where(province.map(kind).eq("province")).rename("province_id")


def survey_tier(units: pd.DataFrame) -> pd.Series:
    """``department`` or ``local`` for each unit: the two questionnaire totals of a year's plan.

    The local tier is the districts before the reform and the communes and wards after it
    (settings ``sampling_design.total_districts``, "questionnaires for the local units").
    """
    return units["unit_type"].astype(object).map(TIER_OF_TYPE).rename("tier")
