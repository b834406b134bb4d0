"""Files that people open in a spreadsheet (CSV, XLSX): written so that no cell runs as a formula.

Contracts layer. A value typed into a questionnaire or an input file can reach a file that staff
open in Excel (the quarantine list, the post office's mailing list, exported tables). Excel and
LibreOffice run a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
as a formula (``=HYPERLINK(…)``, ``=cmd|' /C calc'!A0``). Following OWASP's rule for CSV
injection, such text cells are prefixed with a single quote, which spreadsheets show as text and
never evaluate. Numbers stay numbers: ``-3`` stored as a number is not text and is left alone.

Every CSV or XLSX the product writes for people goes through :func:`write_csv` or
:func:`write_xlsx`; a test walks all of them.

References
----------
OWASP, "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

#: First characters that make a spreadsheet cell a formula (OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> object:
    """Prefix a text value that a spreadsheet would run as a formula with ``'``.

    Examples
    --------
    >>> neutralise("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise("Phường 1"), neutralise(-3)
    ('Phường 1', -3)
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _neutralise_column(values: pd.Series) -> pd.Series:
    """:func:`neutralise` over a column: vectorized for a string dtype (every value text), per cell otherwise.

    A mailing list of 600,000 forms has ~2 million text cells: the per-cell path takes ~20 s there.
    """
    if not isinstance(values.dtype, pd.StringDtype):  # object (mixed types) and categorical (categories only)
        return values.map(neutralise, na_action="ignore")
    formula = values.str.startswith(FORMULA_PREFIXES).fillna(False).to_numpy(dtype=bool)
    out = values.copy()
    if formula.any():
        out[formula] = "'" + values[formula]
    return out


def neutralise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every text cell (and text header) neutralised; other columns untouched."""
    out = df.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_string_dtype(values) or values.dtype == object:
            out[column] = _neutralise_column(values)
    out.columns = [neutralise(c) for c in out.columns]
    return out


def write_csv(df: pd.DataFrame, path: str | os.PathLike, *, bom: bool = True) -> Path:
    """Write ``df`` as CSV for people: formula cells neutralised, UTF-8 with a BOM so Excel reads Vietnamese."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralise_frame(df).to_csv(path, index=False, encoding="utf-8-sig" if bom else "utf-8")
    return path


def write_xlsx(sheets: dict[str, pd.DataFrame] | pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write one or more sheets as XLSX for people, formula cells neutralised and stored as text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(sheets, pd.DataFrame):
        sheets = {"Sheet1": sheets}
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            neutralise_frame(frame).to_excel(writer, sheet_name=name[:31], index=False)
    return path
