"""Validation of every input file of a survey year, up front, with the spreadsheet row at fault.

Core layer. A year's folder (``data/demo``, ``data/raw/<year>``) holds files people prepare by hand
or export from other systems: ``units.csv``, ``frame_counts.csv``, ``sample.csv``,
``procedures.csv`` and the administrative tables ``frame.parquet``, ``dossiers.parquet``,
``feedback.parquet``, ``apologies.parquet``, ``opinions.parquet`` (contracts in
:mod:`sipas_lib.schemas.inputs`, rendered in ``docs/CONTRACTS.md``). Wrong input must never become a
published number, so every file is read the same strict way:

1. :func:`read_delimited` reads a CSV as text: UTF-8 with or without BOM (anything else is refused
   with the first row that is not UTF-8), separator ``,`` ``;`` or tab (detected when unambiguous),
   every row with as many cells as the header.
2. :func:`read_input` turns each cell into the type its contract column declares. A value is read
   only where its meaning is unambiguous, and then with a warning: stray spaces around an id are
   stripped; a field, channel or survey-mode label written as the reports print it (``Tư pháp``,
   ``DV BCCI``) or in other letter case maps to its code. Anything else is an :class:`InputError`
   naming file, row (as a spreadsheet shows it: header = row 1), column, what was expected and what
   was found — never a guess. Counts are strict: ``1.234`` is refused (a Vietnamese thousands
   separator would make 1,234 transactions read as 1.234), as are blank, ``NaN``, negative and
   fractional counts. Keys must be unique (both rows are named), unit ids must be in ``units.csv``.
   The typed table is finally validated against its contract.
3. :func:`validate_year` validates every file present (the required ones must be), then checks the
   files against each other, and returns the warnings. Dossiers partitioned by month
   (``dossiers/year=YYYY/month=MM/*.parquet``, a national year's hundreds of millions) are validated
   where they lie by :func:`validate_dossier_partitions` (DuckDB; only the first bad record reaches
   pandas, where the single file's checks name it: partition file, record, column).

Error policy of :func:`validate_year`: each file stops at its first problem (later checks of a
file often depend on earlier ones); the first problem of *every* file is collected, so a person
fixes all files in one round. One problem raises :class:`InputError`, several raise
:class:`InputErrors` (a subclass whose message has one line per file, the first line being the first
problem). Personal values (names, phones, addresses, transaction ids) are never echoed in messages.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from itertools import compress
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa

from sipas_lib import dossier_engine, schemas
from sipas_lib.dossier_engine import DOSSIER_FOLDER
from sipas_lib.schemas.inputs import INPUT_FILES, REQUIRED_FILES
from sipas_lib.texts import load_texts
from sipas_lib.units import UnitsError, validate_units

__all__ = [
    "InputError",
    "InputErrors",
    "SEPARATORS",
    "read_delimited",
    "detect_separator",
    "read_input",
    "validate_year",
    "validate_dossier_partitions",
    "parse_whole_numbers",
]

#: Separators a delimited file may use (Excel writes ``;`` where the decimal mark is a comma).
SEPARATORS = (",", ";", "\t")
_SEPARATOR_NAMES = {",": "comma ','", ";": "semicolon ';'", "\t": "tab"}
_SAVE_AS = "save it from Excel as 'CSV UTF-8 (Comma delimited) (*.csv)'"

_MISSING = object()
_HIDDEN = object()  # a found value that is personal data: say that it is wrong, never what it is


def _show(found: object) -> str:
    if found is _HIDDEN:
        return "a value not shown here (personal data)"
    if found is None or (isinstance(found, float) and np.isnan(found)) or found is pd.NA or found is pd.NaT:
        return "a blank cell"
    text = str(found)
    if not text.strip():
        return "a blank cell" if not text else f"only spaces {text!r}"
    return repr(text if len(text) <= 60 else text[:57] + "…")


class InputError(ValueError):
    """An input file that cannot be used as it is.

    The message reads like ``data/raw/2026/frame_counts.csv, row 14, column 'N': expected a whole
    number of transactions ≥ 0, found '1.234' (Vietnamese thousands separator? write 1234)``.

    Attributes
    ----------
    file
        The file, as the caller named it (``data_dir / name``).
    row
        Row as a spreadsheet shows it (header = row 1, first record = row 2) for delimited files;
        the 1-based record number for Parquet files; ``None`` for a problem of the whole file.
    column
        The column at fault, or ``None``.
    expected
        What was expected, in words.
    """

    def __init__(self, file: str | os.PathLike, expected: str, *, row: int | None = None,
                 column: str | None = None, found: object = _MISSING, hint: str = "", problem: str = "",
                 row_word: str = "row") -> None:
        self.file = str(file)
        self.row = None if row is None else int(row)
        self.column = column
        self.expected = expected
        self.found = None if found is _MISSING or found is _HIDDEN else found
        where = self.file
        if self.row is not None:
            where += f", {row_word} {self.row}"
        if column:
            where += f", column {column!r}"
        if not problem:
            problem = f"expected {expected}" + ("" if found is _MISSING else f", found {_show(found)}")
        self._args = (file, expected, row, column, found if found not in (_MISSING, _HIDDEN) else _MISSING,
                      hint, problem, row_word)
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))

    def __reduce__(self):
        return (_rebuild_input_error, self._args)


def _rebuild_input_error(file, expected, row, column, found, hint, problem, row_word) -> InputError:
    return InputError(file, expected, row=row, column=column, found=found, hint=hint, problem=problem,
                      row_word=row_word)


class InputErrors(InputError):
    """Several input files with problems: one line per file; attributes are the first problem's.

    Attributes
    ----------
    errors
        Every :class:`InputError`, in the order the files were checked.
    """

    def __init__(self, errors: Sequence[InputError]) -> None:
        errors = list(errors)
        first = errors[0]
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.file, self.row, self.column, self.expected, self.found = (first.file, first.row, first.column,
                                                                      first.expected, first.found)
        self.errors = errors

    def __reduce__(self):
        return (InputErrors, (self.errors,))


# --------------------------------------------------------------------------------------------
# Delimited text files
# --------------------------------------------------------------------------------------------

def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "the file", problem="not found")
    if path.is_dir():
        raise InputError(path, "a file", problem="is a folder, expected a file")
    if path.stat().st_size == 0:
        raise InputError(path, "a header row and records", problem="the file is empty (0 bytes); expected a "
                         "header row with the column names and one row per record")


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 text (BOM removed); any other encoding is refused with the first row that is not UTF-8."""
    if raw.startswith(b"PK\x03\x04"):
        raise InputError(path, "CSV text", problem=f"is an Excel workbook, not CSV text; {_SAVE_AS}")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(path, "UTF-8 text", problem=f"is UTF-16 text ('Unicode Text'), not UTF-8; {_SAVE_AS}")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = raw[:exc.start].count(b"\n") + 1
        raise InputError(path, "UTF-8 text", row=row,
                         problem=f"not UTF-8: {_SAVE_AS} so Vietnamese letters are kept (the first character "
                                 f"that is not UTF-8 is byte 0x{raw[exc.start]:02X} in this row; the file is "
                                 "probably in Windows-1258 or another Windows code page)") from None
    if "\x00" in text:
        row = text[:text.index("\x00")].count("\n") + 1
        raise InputError(path, "CSV text", row=row, problem=f"contains binary data (NUL bytes), not CSV text; {_SAVE_AS}")
    return text


def _split(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def detect_separator(path: str | os.PathLike, text: str, expected_columns: Sequence[str] | None = None) -> str:
    """The separator of a delimited file's ``text`` (its first lines are enough).

    The one of :data:`SEPARATORS` that splits the header into the most ``expected_columns``, else the
    only one that splits the header at all, else the only one that splits every row of the first 200
    into the header's number of cells; a one-column file gets ``","``.

    Raises
    ------
    InputError
        When two separators fit equally well (``path`` names the file in the message).
    """
    path = Path(path)
    first = text.splitlines()[0]
    headers = {sep: [h.strip() for h in _split(first, sep)] for sep in SEPARATORS}
    splitting = [sep for sep in SEPARATORS if len(headers[sep]) > 1]
    if not splitting:
        return ","  # one column: the separator does not matter
    if expected_columns:
        wanted = set(expected_columns)
        score = {sep: len(wanted.intersection(headers[sep])) for sep in splitting}
        best = max(score.values())
        winners = [sep for sep in splitting if score[sep] == best]
        if best > 0 and len(winners) == 1:
            return winners[0]
        if best > 0:
            splitting = winners
    if len(splitting) == 1:
        return splitting[0]
    sample = "\n".join(text.splitlines()[:200])
    consistent = []
    for sep in splitting:
        widths = {len(r) for r in csv.reader(io.StringIO(sample, newline=""), delimiter=sep) if any(c.strip() for c in r)}
        if widths == {len(headers[sep])}:
            consistent.append(sep)
    if len(consistent) == 1:
        return consistent[0]
    names = " and ".join(_SEPARATOR_NAMES[s] for s in (consistent or splitting))
    raise InputError(path, "one separator", row=1,
                     problem=f"cannot tell which separator the file uses: the rows split into columns on both "
                             f"{names}; {_SAVE_AS}")


_detect_separator = detect_separator  # the name sipas_lib.intake used first


def read_delimited(path: str | os.PathLike, *, expected_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a delimited text file (CSV) as text, strictly.

    Parameters
    ----------
    path
        The file. Read-only: it is never modified.
    expected_columns
        Column names the file should have; they settle the separator when more than one would split
        the header (optional).

    Returns
    -------
    DataFrame
        Every cell as text (``string`` dtype; empty cells are ``<NA>``; spaces are kept, so a caller
        can warn about them). The index (named ``row``) is the row number a spreadsheet shows
        (header = row 1, first record = row 2); blank rows are dropped but keep their numbering.
        Header names are stripped of spaces; trailing columns without header and without values are
        dropped. ``attrs``: ``path``, ``separator``, ``warnings`` (list of str).

    Raises
    ------
    InputError
        File missing or empty (0 bytes, or only blank lines); not UTF-8 (e.g. Windows-1258 or
        cp1252: "save it as 'CSV UTF-8'", naming the first bad row), UTF-16 or an Excel workbook
        saved under ``.csv``; separator ambiguous; row 1 blank; a column without a name that holds
        values; two columns with the same name; a row with more or fewer cells than the header.
    """
    path = Path(path)
    _check_file(path)
    text = _decode(path, path.read_bytes())
    if not text.strip():
        raise InputError(path, "a header row and records", problem="the file is empty (only blank lines); "
                         "expected a header row with the column names and one row per record")
    if not text.splitlines()[0].strip():
        raise InputError(path, "the column names in row 1", row=1,
                         problem="row 1 is blank; expected the column names in row 1 (delete the empty rows above them)")
    sep = detect_separator(path, text, expected_columns)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep))
    warnings: list[str] = []
    raw_header = rows[0]
    header = [h.strip() for h in raw_header]
    spaced = [h for h, raw in zip(header, raw_header) if h and h != raw]
    if spaced:
        warnings.append(f"{path}: row 1: spaces around column name(s) {', '.join(repr(h) for h in spaced)} ignored")
    width = len(header)
    records = rows[1:]
    del rows
    # blank rows (every cell spaces or empty) are dropped, their numbers kept; "".join(...).strip() is
    # empty exactly when every cell's strip() is, and map() keeps the per-row work in C
    filled = np.fromiter(map(bool, map(str.strip, map("".join, records))), dtype=bool, count=len(records))
    lengths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    numbers = np.flatnonzero(filled) + 2
    if (lengths[filled] != width).any():  # rare: find the first row of the wrong width, in file order
        for number in numbers[lengths[filled] != width]:
            cells = records[number - 2]
            if len(cells) > width:
                if any(c.strip() for c in cells[width:]):
                    raise InputError(path, f"{width} cells as in the header", row=int(number),
                                     problem=f"has {len(cells)} cells but the header has {width} columns (a "
                                             f"{_SEPARATOR_NAMES[sep]} inside a value that is not in quotes?)")
            else:
                raise InputError(path, f"{width} cells as in the header", row=int(number),
                                 problem=f"has {len(cells)} cells but the header has {width} columns (cells missing "
                                         "at the end of the row, or a line break inside a value?)")
        body = [cells[:width] for cells in compress(records, filled)]
    else:
        body = list(compress(records, filled))
    del records
    columns = list(zip(*body)) if body else [()] * width
    del body
    keep = []
    for j, name in enumerate(header):
        if name:
            keep.append(j)
        else:
            holds = np.fromiter(map(bool, map(str.strip, columns[j])), dtype=bool, count=len(numbers))
            if holds.any():
                raise InputError(path, "a name for every column that holds values", row=1,
                                 problem=f"column number {j + 1} has no name in row 1 but holds values "
                                         f"(from row {numbers[holds.argmax()]}); give it its name or delete it")
    names = [header[j] for j in keep]
    seen: dict[str, int] = {}
    for j in keep:
        if header[j] in seen:
            raise InputError(path, "each column name once", row=1, column=header[j],
                             problem=f"columns number {seen[header[j]] + 1} and {j + 1} are both named "
                                     f"{header[j]!r}; keep only one of them")
        seen[header[j]] = j
    index = pd.Index(numbers, name="row", dtype="int64")
    table = pd.DataFrame({name: _text_cells(columns[j], index) for name, j in zip(names, keep)}, index=index,
                         columns=names)
    table.attrs.update(path=str(path), separator=sep, warnings=warnings)
    return table


def _text_cells(cells: Sequence[str], index: pd.Index) -> pd.Series:
    """One column of a delimited file as ``string`` (empty cells ``<NA>``), built through Arrow
    (a list of rows through pandas' object path costs several times the CPU and memory)."""
    import pyarrow as pa_arrow
    import pyarrow.compute as pc

    array = pa_arrow.array(cells, type=pa_arrow.large_string())
    array = pc.if_else(pc.equal(array, ""), pa_arrow.scalar(None, pa_arrow.large_string()), array)
    return pd.Series(pd.array(array, dtype="string"), index=index)


# --------------------------------------------------------------------------------------------
# Typed reading against the contract
# --------------------------------------------------------------------------------------------

_WHOLE = re.compile(r"^[0-9]+$")
_WHOLE_ZERO_DECIMALS = re.compile(r"^[0-9]+\.0{1,2}$")  # "12.0": not a thousands separator (3 digits)
_GROUPED_DOT = re.compile(r"^[0-9]{1,3}(\.[0-9]{3})+$")
_GROUPED_COMMA = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+$")
_GROUPED_SPACE = re.compile(r"^[0-9]{1,3}([ \u00a0\u202f][0-9]{3})+$")
_DECIMAL = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?[0-9]+,([0-9]{1,2}|[0-9]{4,})$")  # never 3 digits: could be thousands
_BLANK_WORDS = {"nan", "na", "n/a", "null", "none", "-", "—", "#n/a", "#value!", "#ref!"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _whole_problem(value: str) -> tuple[str, str] | None:
    """Why a text is not a whole number ≥ 0: ``(kind, hint)``, or ``None`` when it is one."""
    if _WHOLE.match(value):
        return None
    digits = re.sub(r"\D", "", value)
    if _GROUPED_DOT.match(value):
        return "grouped", f"Vietnamese thousands separator? write {digits}"
    if _GROUPED_COMMA.match(value):
        return "grouped", f"thousands separator? write {digits}"
    if _GROUPED_SPACE.match(value):
        return "grouped", f"thousands separator? write {digits}"
    if value.strip().casefold() in _BLANK_WORDS:
        return "blank", "a count cannot be missing: write 0 if there were none, or delete the row"
    if re.match(r"^-\s*[0-9]", value):
        return "negative", "a count cannot be negative"
    if _DECIMAL.match(value) or _DECIMAL_COMMA.match(value):
        return "fraction", "a count is a whole number"
    return "text", ""


def parse_whole_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Read text as whole numbers ≥ 0, strictly.

    Only digits are read (``"12.0"``/``"12.00"`` are read as 12 too: two decimals can never be a
    thousands separator). ``"1.234"``, ``"1,234"`` and ``"1 234"`` are *not* read: in Vietnamese
    ``1.234`` is one thousand two hundred and thirty-four, in English one point two three four, and
    the file cannot say which was meant.

    Returns
    -------
    (numbers, bad, read_from_decimals)
        ``Int64`` numbers (``<NA>`` where not read), a mask of non-blank texts that are not whole
        numbers, and a mask of values read from ``"12.0"``.
    """
    text = values.astype("string").str.strip()
    plain = text.str.fullmatch(_WHOLE.pattern).fillna(False).astype(bool)
    decimals = text.str.fullmatch(_WHOLE_ZERO_DECIMALS.pattern).fillna(False).astype(bool)
    ok = plain | decimals
    numbers = pd.Series(pd.NA, index=values.index, dtype="Int64")
    if ok.any():
        numbers[ok] = pd.to_numeric(text[ok].str.replace(r"\.0+$", "", regex=True)).astype("Int64")
    bad = text.notna() & ~ok
    return numbers, bad, decimals


@dataclass
class _Reader:
    """Reads one file of a year against its contract (one instance per file and call)."""

    path: Path
    contract: schemas.TableContract
    parquet: bool
    warnings: list

    @property
    def row_word(self) -> str:
        return "record" if self.parquet else "row"

    def error(self, expected: str, *, row: int | None = None, column: str | None = None,
              found: object = _MISSING, hint: str = "", problem: str = "") -> InputError:
        if column in schemas.PERSONAL_COLUMNS and found is not _MISSING and not _is_blank(found):
            found = _HIDDEN
        return InputError(self.path, expected, row=row, column=column, found=found, hint=hint, problem=problem,
                          row_word=self.row_word)

    def warn(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = str(self.path) + (f", {self.row_word} {row}" if row is not None else "")
        where += f", column {column!r}" if column else ""
        self.warnings.append(f"{where}: {message}")


def _is_blank(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))


def _first(mask: pd.Series) -> int:
    """Row label of the first True in ``mask``."""
    return int(mask.index[mask.to_numpy(dtype=bool).argmax()])


def _kind(column: pa.Column) -> str:
    dtype = str(column.dtype)
    if dtype.startswith("datetime"):
        return "date"
    if dtype in ("int64", "Int64"):
        return "whole"
    if dtype.startswith("float"):
        return "decimal"
    if dtype in ("bool", "boolean"):
        return "flag"
    return "text"


def _stat(column: pa.Column, name: str) -> dict:
    for check in column.checks or []:
        if check.name == name:
            return getattr(check, "statistics", None) or {}
    return {}


def _allowed(column: pa.Column) -> list | None:
    stats = _stat(column, "isin")
    return list(stats["allowed_values"]) if "allowed_values" in stats else None


def _pattern(column: pa.Column) -> str | None:
    return _stat(column, "str_matches").get("pattern")


def _minimum(column: pa.Column) -> tuple[float | None, bool]:
    """Lower bound of a numeric column and whether it is strict (``>``)."""
    if "min_value" in _stat(column, "greater_than_or_equal_to"):
        return _stat(column, "greater_than_or_equal_to")["min_value"], False
    if "min_value" in _stat(column, "greater_than"):
        return _stat(column, "greater_than")["min_value"], True
    if "min_value" in _stat(column, "in_range"):
        return _stat(column, "in_range")["min_value"], False
    return None, False


def _maximum(column: pa.Column) -> float | None:
    for name in ("less_than_or_equal_to", "in_range"):
        stats = _stat(column, name)
        if "max_value" in stats:
            return stats["max_value"]
    return None


def _number_text(value: float) -> str:
    return f"{value:g}"


def _expected(column_name: str, column: pa.Column) -> str:
    """What a column expects, in words (from the contract)."""
    kind = _kind(column)
    low, strict = _minimum(column)
    high = _maximum(column)
    if kind == "whole":
        noun = (column.metadata or {}).get("noun")
        text = "a whole number" + (f" of {noun}" if noun else "")
        if low is not None and high is not None:
            return text + f" from {_number_text(low)} to {_number_text(high)}"
        return text + (f" {'>' if strict else '≥'} {_number_text(low)}" if low is not None else "")
    if kind == "decimal":
        text = "a number"
        if low is not None and high is not None:
            return text + f" {'>' if strict else '≥'} {_number_text(low)} and ≤ {_number_text(high)}"
        return text + (f" {'>' if strict else '≥'} {_number_text(low)}" if low is not None else "")
    if kind == "flag":
        return "True or False"
    if kind == "date":
        return "a date"
    allowed = _allowed(column)
    if allowed is not None:
        return "one of " + ", ".join(allowed)
    pattern = _pattern(column)
    if pattern == schemas.inputs.FORM_ID_PATTERN:
        return "a form id of 6 digits (leading zeros kept, e.g. 004512)"
    return "text"


def _norm_label(value: str) -> str:
    return " ".join(unicodedata.normalize("NFC", value).split()).casefold()


#: Prefix of a column's labels in ``texts/reporting.yaml`` (the labels the reports print).
_LABEL_PREFIX = {"field": "field_", "channel": "channel_", "survey_mode": "mode_"}


def _label_map(column_name: str, allowed: Sequence[str]) -> dict[str, str]:
    """Normalised spelling -> code: the codes in any letter case and, for field, channel and survey
    mode, the Vietnamese and English labels the reports print. A label shared by two codes is left out."""
    candidates: dict[str, set[str]] = {}
    for code in allowed:
        candidates.setdefault(_norm_label(code), set()).add(code)
    prefix = _LABEL_PREFIX.get(column_name)
    if prefix:
        texts = load_texts("reporting")
        for code in allowed:
            for label in texts.get(prefix + code, {}).values():
                candidates.setdefault(_norm_label(label), set()).add(code)
    return {key: next(iter(codes)) for key, codes in candidates.items() if len(codes) == 1}


def _read_text(reader: _Reader, name: str, column: pa.Column, values: pd.Series) -> pd.Series:
    """Text, stripped of surrounding spaces (with a warning); codes in other letter case or written
    as their label mapped to the code (with a warning); anything else outside the vocabulary or the
    pattern refused."""
    if reader.parquet and not (pd.api.types.is_string_dtype(values) or values.isna().all()):
        bad = values.notna() & ~values.map(lambda v: isinstance(v, str), na_action="ignore").astype(bool)
        if bad.any():
            row = _first(bad)
            raise reader.error(_expected(name, column) if _kind(column) == "text" else "text", row=row, column=name,
                               found=values[row], hint=f"the column is stored as {values.dtype}, not as text")
    text = values.astype("string")
    stripped = text.str.strip()
    changed = stripped.notna() & (stripped != text)
    if changed.any():
        row = _first(changed)
        reader.warn(f"{int(changed.sum())} value(s) with spaces before or after them were read without the spaces "
                    f"(first: {reader.row_word} {row})", column=name)
    empty = (stripped == "").fillna(False).astype(bool)
    if empty.any():
        stripped = stripped.mask(empty)
    allowed = _allowed(column)
    if allowed is not None:
        off = stripped.notna() & ~stripped.isin(allowed)
        if off.any():
            labels = _label_map(name, allowed)
            mapped = stripped[off].map(lambda v: labels.get(_norm_label(v)))
            unknown = mapped.isna()
            if unknown.any():
                row = int(mapped.index[unknown.to_numpy().argmax()])
                raise reader.error(_expected(name, column), row=row, column=name, found=stripped[row],
                                   hint="codes are listed in docs/CONTRACTS.md")
            pairs = sorted({f"{a!r} → {b!r}" for a, b in zip(stripped[off], mapped)})
            reader.warn(f"{int(off.sum())} value(s) written as a label were read as their code: "
                        f"{', '.join(pairs[:5])}{' …' if len(pairs) > 5 else ''} (first: {reader.row_word} "
                        f"{_first(off)})", column=name)
            stripped = stripped.copy()
            stripped[off] = mapped.astype("string")
    pattern = _pattern(column)
    if pattern is not None:
        off = stripped.notna() & ~stripped.str.fullmatch(pattern.strip("^$")).fillna(False).astype(bool)
        if off.any():
            row = _first(off)
            found = stripped[row]
            hint = ""
            if pattern == schemas.inputs.FORM_ID_PATTERN:
                if re.fullmatch(r"[0-9]{1,5}", found):
                    hint = "a leading zero lost? Excel drops leading zeros from numbers: format the column as Text"
                elif re.fullmatch(r"[0-9]{6}\.0+", found):
                    hint = "saved as a number: format the column as Text"
            raise reader.error(_expected(name, column), row=row, column=name, found=found, hint=hint)
    return stripped


def _read_whole(reader: _Reader, name: str, column: pa.Column, values: pd.Series) -> pd.Series:
    expected = _expected(name, column)
    if reader.parquet and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numeric = values.astype("Float64")
        bad = numeric.notna() & (numeric != numeric.round())
        if bad.any():
            row = _first(bad)
            raise reader.error(expected, row=row, column=name, found=values[row], hint="a count is a whole number")
        numbers = numeric.round().astype("Int64")
    else:
        if column.nullable:  # where a value may be missing, "NaN", "NA", "-" … unambiguously say so
            text = values.astype("string").str.strip()
            missing = text.str.casefold().isin(_BLANK_WORDS).fillna(False).astype(bool)
            if missing.any():
                reader.warn(f"{int(missing.sum())} cell(s) written as {text[missing].iloc[0]!r} were read as empty "
                            f"(first: {reader.row_word} {_first(missing)})", column=name)
                values = values.mask(missing)
        numbers, bad, from_decimals = parse_whole_numbers(values)
        if bad.any():
            row = _first(bad)
            raise reader.error(expected, row=row, column=name, found=values[row],
                               hint=_whole_problem(str(values[row]).strip())[1])
        if from_decimals.any():
            reader.warn(f"{int(from_decimals.sum())} whole number(s) written with zero decimals (e.g. "
                        f"{values[from_decimals].iloc[0]!r}) were read as whole numbers", column=name)
    blank = numbers.isna()
    if blank.any() and not column.nullable:
        row = _first(blank)
        hint = _whole_problem("nan")[1] if (column.metadata or {}).get("noun") else ""
        raise reader.error(expected, row=row, column=name, found=None, hint=hint)
    _check_range(reader, name, column, numbers, values)
    return numbers if column.nullable else numbers.astype("int64")


def _check_range(reader: _Reader, name: str, column: pa.Column, numbers: pd.Series, shown: pd.Series) -> None:
    low, strict = _minimum(column)
    high = _maximum(column)
    present = numbers.notna()
    bad = pd.Series(False, index=numbers.index)
    if low is not None:
        bad |= present & ((numbers <= low) if strict else (numbers < low)).fillna(False).astype(bool)
    if high is not None:
        bad |= present & (numbers > high).fillna(False).astype(bool)
    if bad.any():
        row = _first(bad)
        hint = "a count cannot be negative" if low == 0 and numbers[row] < 0 else ""
        raise reader.error(_expected(name, column), row=row, column=name, found=shown[row], hint=hint)


def _read_decimal(reader: _Reader, name: str, column: pa.Column, values: pd.Series) -> pd.Series:
    expected = _expected(name, column)
    if reader.parquet and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        text = values.astype("string").str.strip()
        dot = text.str.fullmatch(_DECIMAL.pattern).fillna(False).astype(bool)
        comma = ~dot & text.str.fullmatch(_DECIMAL_COMMA.pattern).fillna(False).astype(bool)
        bad = text.notna() & ~dot & ~comma
        if bad.any():
            row = _first(bad)
            found = text[row]
            hint = ""
            if found.casefold() in _BLANK_WORDS:
                hint = "this value cannot be missing"
            elif "," in found or found.count(".") > 1:
                hint = "write decimals with a point, e.g. 0.25, and no thousands separator"
            raise reader.error(expected, row=row, column=name, found=values[row], hint=hint)
        if comma.any():
            reader.warn(f"{int(comma.sum())} number(s) written with a decimal comma (e.g. {text[comma].iloc[0]!r}) "
                        "were read as decimals", column=name)
            text = text.where(~comma, text.str.replace(",", ".", regex=False))
        numbers = pd.to_numeric(text).astype("float64")
    infinite = numbers.notna() & ~np.isfinite(numbers.to_numpy(dtype="float64", na_value=np.nan))
    if infinite.any():
        row = _first(infinite)
        raise reader.error(expected, row=row, column=name, found=values[row])
    blank = numbers.isna()
    if blank.any() and not column.nullable:
        row = _first(blank)
        raise reader.error(expected, row=row, column=name, found=None)
    _check_range(reader, name, column, numbers, values)
    return numbers


def _read_flag(reader: _Reader, name: str, column: pa.Column, values: pd.Series) -> pd.Series:
    expected = _expected(name, column)
    if reader.parquet and pd.api.types.is_bool_dtype(values):
        flags = values.astype("boolean")
    else:
        text = values.astype("string").str.strip().str.casefold()
        flags = pd.Series(pd.NA, index=values.index, dtype="boolean")
        flags[text.isin(_TRUE).fillna(False).astype(bool)] = True
        flags[text.isin(_FALSE).fillna(False).astype(bool)] = False
        bad = text.notna() & flags.isna()
        if bad.any():
            row = _first(bad)
            raise reader.error(expected, row=row, column=name, found=values[row])
    blank = flags.isna()
    if blank.any() and not column.nullable:
        row = _first(blank)
        raise reader.error(expected, row=row, column=name, found=None)
    return flags if column.nullable else flags.astype(bool)


def _read_date(reader: _Reader, name: str, column: pa.Column, values: pd.Series) -> pd.Series:
    expected = _expected(name, column)
    if pd.api.types.is_datetime64_any_dtype(values):
        dates = values
        if getattr(values.dt, "tz", None) is not None:
            dates = values.dt.tz_localize(None)
    elif reader.parquet and not values.notna().any():
        dates = pd.Series(pd.NaT, index=values.index)
    elif reader.parquet:
        row = _first(values.notna())
        raise reader.error(expected, row=row, column=name, found=values[row],
                           hint=f"the column is stored as {values.dtype}; store it as a Parquet date/timestamp")
    else:
        text = values.astype("string").str.strip()
        iso = text.str.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fillna(False).astype(bool)
        dates = pd.to_datetime(text.where(iso), format="%Y-%m-%d", errors="coerce")
        bad = text.notna() & dates.isna()
        if bad.any():
            row = _first(bad)
            raise reader.error(expected, row=row, column=name, found=values[row], hint="write dates as 2025-10-14")
    dates = dates.astype("datetime64[us]")
    blank = dates.isna()
    if blank.any() and not column.nullable:
        row = _first(blank)
        raise reader.error(expected, row=row, column=name, found=None)
    return dates


_READERS = {"text": _read_text, "whole": _read_whole, "decimal": _read_decimal, "flag": _read_flag,
            "date": _read_date}


def _has_repeats(table: pd.DataFrame, keys: Sequence[str]) -> bool:
    if len(keys) == 1:  # Arrow's hash count is several times faster than pandas' duplicated on long id columns
        import pyarrow as pa_arrow
        import pyarrow.compute as pc

        column = table[keys[0]]
        return len(pc.unique(pa_arrow.array(column, from_pandas=True))) < len(column)
    return bool(table.duplicated(list(keys)).any())


def _check_keys(reader: _Reader, table: pd.DataFrame, keys: Sequence[str]) -> None:
    """Each key once; a repeated key names both rows."""
    keys = list(keys)
    if not _has_repeats(table, keys):
        return
    repeated = table.duplicated(keys, keep="first")
    row = _first(repeated)
    values = table.loc[row, keys]
    same = (table[keys] == values).all(axis=1)
    first = _first(same)
    shown = ", ".join(f"{k} {_show(_HIDDEN if k in schemas.PERSONAL_COLUMNS else values[k])}" for k in keys)
    what = keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"
    raise reader.error(f"each {what} once", row=row, column=keys[0] if len(keys) == 1 else None,
                       problem=f"repeats {reader.row_word} {first}: both have {shown}; each {what} may appear only "
                               f"once (merge the two {reader.row_word}s or delete one)")


def _check_units(reader: _Reader, table: pd.DataFrame, column: str, known: pd.Series) -> None:
    """Every id of ``column`` is a unit of ``units.csv``."""
    present = table[column].notna()
    unknown = present & ~table[column].isin(known)
    if unknown.any():
        row = _first(unknown)
        found = table.at[row, column]
        close = [u for u in known if str(u).casefold() == str(found).casefold()]
        hint = f"did you mean {close[0]!r}? unit ids are compared exactly" if close else \
            "add the unit to units.csv or correct the id"
        raise reader.error("a unit id listed in units.csv", row=row, column=column, found=found, hint=hint)


def _check_communes(reader: _Reader, table: pd.DataFrame, units: pd.DataFrame | None) -> None:
    """``commune_id`` is given exactly for ``level == 'commune'`` and names a commune of ``unit_id``
    (the registry part skipped when ``units`` is ``None``: an unusable ``units.csv``)."""
    has = table["commune_id"].notna()
    commune_level = table["level"] == "commune"
    off = commune_level & ~has
    if off.any():
        raise reader.error("a commune id where level is 'commune'", row=_first(off), column="commune_id", found=None)
    off = has & ~commune_level
    if off.any():
        row = _first(off)
        raise reader.error("an empty cell where level is 'unit'", row=row, column="commune_id",
                           found=table.at[row, "commune_id"], hint="or set level to 'commune'")
    if units is None:
        return
    _check_units(reader, table, "commune_id", units["unit_id"])
    # through categories: a few hundred communes, looked up once each instead of once per record
    communes = table["commune_id"].astype("category")
    parent_of = units.set_index("unit_id")["parent_id"]
    lookup = np.append(communes.cat.categories.map(parent_of).to_numpy(dtype=object, na_value=None), None)
    parent = pd.Series(lookup[communes.cat.codes.to_numpy()], index=table.index, dtype="string")  # code -1 -> None
    off = has & (parent != table["unit_id"]).fillna(True).astype(bool)
    if off.any():
        row = _first(off)
        raise reader.error(f"a commune of unit {table.at[row, 'unit_id']!r} (its parent_id in units.csv)", row=row,
                           column="commune_id", found=table.at[row, "commune_id"])


def _check_sample(reader: _Reader, table: pd.DataFrame) -> None:
    """Design weights are 1/π, n_h ≤ N_h, and a stratum has one N_h, one n_h and one unit."""
    ratio = table["design_weight"] * table["incl_prob"]
    off = (ratio - 1.0).abs() > 1e-6
    if off.any():
        row = _first(off)
        raise reader.error("design_weight = 1 / incl_prob", row=row, column="design_weight",
                           found=table.at[row, "design_weight"],
                           hint=f"incl_prob is {float(table.at[row, 'incl_prob']):.6g}, so the weight should be "
                                f"{1.0 / float(table.at[row, 'incl_prob']):.6g}")
    off = table["n_h"] > table["N_h"]
    if off.any():
        row = _first(off)
        raise reader.error(f"n_h ≤ N_h ({table.at[row, 'N_h']})", row=row, column="n_h", found=str(table.at[row, "n_h"]),
                           hint="a stratum cannot have more selected forms than transactions")
    for column in ("N_h", "n_h", "unit_id"):
        varies = table.groupby("stratum", sort=False)[column].transform("nunique") > 1
        if varies.any():
            stratum = table.loc[_first(varies), "stratum"]
            rows = table.index[(table["stratum"] == stratum).to_numpy()]
            values = table.loc[rows, column]
            other = rows[(values != values.iloc[0]).to_numpy()][0]
            raise reader.error(f"one {column} for every form of stratum {stratum!r}", row=int(other), column=column,
                               found=str(table.at[other, column]),
                               hint=f"{reader.row_word} {int(rows[0])} of the same stratum has {values.iloc[0]}")


def _check_order(reader: _Reader, table: pd.DataFrame, earlier: str, later: str) -> None:
    """``later`` is not before ``earlier`` where both are given."""
    off = (table[later] < table[earlier]).fillna(False).astype(bool)
    if off.any():
        row = _first(off)
        raise reader.error(f"a date on or after {earlier} ({table.at[row, earlier]:%Y-%m-%d})", row=row, column=later,
                           found=f"{table.at[row, later]:%Y-%m-%d}")


def _check_dossiers(reader: _Reader, table: pd.DataFrame) -> None:
    """Dates in order, and the status agrees with them: a pending dossier has no resolution day, a
    resolved one has, and it is on time exactly when resolved by its due day (Phụ lục 3 counts statuses)."""
    _check_order(reader, table, "received_on", "due_on")
    _check_order(reader, table, "received_on", "resolved_on")
    pending = table["status"] == "pending"
    resolved = table["resolved_on"].notna()
    off = pending & resolved
    if off.any():
        row = _first(off)
        raise reader.error("an empty cell for a pending dossier", row=row, column="resolved_on",
                           found=f"{table.at[row, 'resolved_on']:%Y-%m-%d}", hint="or set its status")
    off = ~pending & ~resolved
    if off.any():
        row = _first(off)
        raise reader.error(f"the day a dossier with status {table.at[row, 'status']!r} was resolved", row=row,
                           column="resolved_on", found=None, hint="or set its status to 'pending'")
    in_time = table["resolved_on"] <= table["due_on"]
    off = resolved & (in_time != (table["status"] == "on_time")).fillna(False).astype(bool)
    if off.any():
        row = _first(off)
        should = "on_time" if in_time[row] else "overdue"
        raise reader.error(f"status {should!r}: resolved {table.at[row, 'resolved_on']:%Y-%m-%d}, due "
                           f"{table.at[row, 'due_on']:%Y-%m-%d}", row=row, column="status",
                           found=table.at[row, "status"])


def _read_units(reader: _Reader, table: pd.DataFrame) -> None:
    parents = table["parent_id"].notna()
    off = parents & ~table["parent_id"].isin(table["unit_id"])
    if off.any():
        row = _first(off)
        raise reader.error("the unit_id of another unit in units.csv", row=row, column="parent_id",
                           found=table.at[row, "parent_id"])
    try:
        validate_units(table.reset_index(drop=True), source=str(reader.path))
    except UnitsError as exc:
        problem = re.sub(r"^(row \d+, )?(column \w+: )?", "", str(exc).removeprefix(f"{reader.path}: "))
        raise InputError(reader.path, exc.expected or "a valid units registry", problem=problem,
                         row=exc.row, column=exc.column) from None


def _path(data_dir: str | os.PathLike, name: str) -> Path:
    if name not in INPUT_FILES:
        raise ValueError(f"unknown input {name!r}; known inputs: {', '.join(INPUT_FILES)}")
    return Path(data_dir) / INPUT_FILES[name]


def _read_raw(reader: _Reader, personal: bool) -> pd.DataFrame:
    """The file's contract columns as found (text for CSV, stored types for Parquet), indexed by row.

    Personal columns are read only when asked for, or when they are the table's key (which is
    checked unique); the types of the others are checked from the Parquet schema without reading them."""
    contract = reader.contract
    wanted = [c for c in contract.columns
              if personal or c not in schemas.PERSONAL_COLUMNS or c in contract.keys]
    if not reader.parquet:
        table = read_delimited(reader.path, expected_columns=contract.columns)
        reader.warnings.extend(table.attrs.get("warnings", []))
        present = list(table.columns)
        stored = {}
    else:
        stored = _parquet_schema(reader.path)
        present = list(stored)
        table = None
    _check_columns(reader, present)
    if reader.parquet:
        # columns not read (personal data) are checked from the Parquet schema; the others by their readers
        _check_stored_types(reader, {n: t for n, t in stored.items() if n not in wanted}, kinds=("text",))
        try:
            table = pd.read_parquet(reader.path, columns=[c for c in wanted if c in present])
        except Exception as exc:
            raise InputError(reader.path, "a Parquet file",
                             problem=f"not a valid Parquet file ({type(exc).__name__}: {exc})") from None
        table.index = pd.RangeIndex(1, len(table) + 1, name="record")
    if table.empty:
        raise InputError(reader.path, "one row per record", row=2 if not reader.parquet else None,
                         problem="has a header row but no records" if not reader.parquet else "has no records")
    return table[[c for c in wanted if c in table.columns]]


def _parquet_schema(path: Path) -> dict:
    """Column name -> Arrow type of a Parquet file, read from its footer (no rows are read)."""
    import pyarrow.parquet as pq

    _check_file(path)
    try:
        return {f.name: f.type for f in pq.read_schema(path)}
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(path, "a Parquet file",
                         problem=f"not a valid Parquet file ({type(exc).__name__}: {exc})") from None


def _check_columns(reader: _Reader, present: Sequence[str]) -> None:
    """Every required column of the contract is ``present`` (names compared exactly); others are warned about."""
    contract = reader.contract
    required = [c for c, col in contract.schema.columns.items() if col.required]
    missing = [c for c in required if c not in present]
    if missing:
        near = {c: h for c in missing for h in present if h.casefold() == c.casefold()}
        hint = "; ".join(f"found {h!r}: column names are case-sensitive" for h in near.values())
        raise InputError(reader.path, "the columns " + ", ".join(contract.columns), row=None if reader.parquet else 1,
                         column=missing[0],
                         problem=f"missing column(s) {', '.join(repr(c) for c in missing)}; expected the columns "
                                 f"{', '.join(required)} (docs/CONTRACTS.md)", hint=hint)
    extra = [c for c in present if c not in contract.columns]
    if extra:
        reader.warn(f"column(s) {', '.join(repr(c) for c in extra)} are not part of the contract and were not read")


def _stored_as(kind: str, arrow_type, nullable: bool) -> bool:
    """Whether a Parquet column of ``arrow_type`` can hold the contract kind ``kind`` (an all-empty column
    of Arrow type ``null`` only where values may be missing)."""
    import pyarrow as pa_arrow

    t = pa_arrow.types
    if t.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if t.is_null(arrow_type):
        return nullable or kind == "text"  # an all-blank text column is refused later, naming its first record
    return {"text": t.is_string(arrow_type) or t.is_large_string(arrow_type),
            "date": t.is_timestamp(arrow_type) or t.is_date(arrow_type),
            "whole": t.is_integer(arrow_type),
            "decimal": t.is_integer(arrow_type) or t.is_floating(arrow_type),
            "flag": t.is_boolean(arrow_type)}[kind]


_KIND_WORDS = {"text": "text", "date": "a Parquet date or timestamp", "whole": "whole numbers (an integer type)",
               "decimal": "numbers", "flag": "True/False (boolean)"}


def _check_stored_types(reader: _Reader, stored: dict, kinds: Sequence[str] = tuple(_KIND_WORDS)) -> None:
    """The Parquet schema's type of each contract column in ``stored`` (name -> Arrow type) fits its kind."""
    for name, arrow_type in stored.items():
        column = reader.contract.schema.columns.get(name)
        if column is None or _kind(column) not in kinds:
            continue
        if not _stored_as(_kind(column), arrow_type, column.nullable):
            words, expected = _KIND_WORDS[_kind(column)], _expected(name, column)
            raise InputError(reader.path, words, column=name,
                             problem=f"expected {words}{'' if expected == words else f' ({expected})'}, but the "
                                     f"column is stored as {arrow_type}")


_BACKSTOPS: dict[str, pa.DataFrameSchema] = {}


def _backstop(contract: schemas.TableContract, columns: Sequence[str]) -> pa.DataFrameSchema:
    """The contract's schema over ``columns``, without its key check (done already, naming both rows)."""
    key = contract.name + "|" + ",".join(columns)
    if key not in _BACKSTOPS:
        schema = contract.schema.remove_columns([c for c in contract.columns if c not in columns])
        schema.unique = None
        _BACKSTOPS[key] = schema
    return _BACKSTOPS[key]


def optional_year_file(data_dir: str | os.PathLike, stem: str, what: str,
                       suffixes: Sequence[str] = (".csv", ".xlsx", ".parquet")) -> Path | None:
    """The year's optional input file ``<stem><suffix>`` in ``data_dir`` (e.g. ``recheck.csv``), or ``None``.

    Raises
    ------
    InputError
        When two of them exist (which one holds the year's records cannot be guessed).
    """
    found = [Path(data_dir) / f"{stem}{suffix}" for suffix in suffixes if (Path(data_dir) / f"{stem}{suffix}").exists()]
    if len(found) > 1:
        raise InputError(found[1], f"one {what} file",
                         problem=f"{found[0].name} is there too; keep one {what} file per year")
    return found[0] if found else None


def read_input(data_dir: str | os.PathLike, name: str, *, units: pd.DataFrame | None = None,
               personal: bool = False) -> pd.DataFrame:
    """Read one input file of a year, typed and validated against its contract.

    Parameters
    ----------
    data_dir
        The year's folder.
    name
        ``units``, ``frame_counts``, ``sample``, ``procedures``, ``frame``, ``dossiers``,
        ``feedback``, ``apologies`` or ``opinions`` (:data:`sipas_lib.schemas.inputs.INPUT_FILES`).
    units
        The year's units (as returned by ``read_input(data_dir, "units")``) to check unit ids
        against; read from ``data_dir/units.csv`` when not given.
    personal
        Also return the columns that hold personal data (``frame.parquet``'s contact details;
        ``sample.csv``'s ``transaction_id``). Off by default: most stages never need them.

    Returns
    -------
    DataFrame
        The contract's columns in contract order with the contract's dtypes, a fresh ``RangeIndex``;
        ``attrs["warnings"]`` lists what was read with a correction (stray spaces, labels, …);
        ``attrs["rows"]`` holds each row's row number in the file (header = row 1; blank rows skipped),
        so that a later check can still name the row a person sees.

    Raises
    ------
    InputError
        The first problem of the file, with its row and column.
    """
    return _read_input(data_dir, name, units=units, personal=personal, references=True)


def _read_input(data_dir: str | os.PathLike, name: str, *, units: pd.DataFrame | None, personal: bool,
                references: bool) -> pd.DataFrame:
    """:func:`read_input`; ``references=False`` skips the checks against ``units.csv`` (used when
    ``units.csv`` itself is unusable, so that each file's own problems are still reported)."""
    path = _path(data_dir, name)
    contract = schemas.contract(INPUT_FILES[name])
    reader = _Reader(path, contract, path.suffix == ".parquet", [])
    if not path.exists():
        raise InputError(path, contract.description, problem="not found; expected " + _lower_first(contract.description))
    raw = _read_raw(reader, personal)
    typed = pd.DataFrame(index=raw.index)
    for column_name in list(raw.columns):  # each raw column freed once typed: one copy of the table, not two
        column = contract.schema.columns[column_name]
        typed[column_name] = _READERS[_kind(column)](reader, column_name, column, raw.pop(column_name))
    del raw
    keys = [k for k in contract.keys if k in typed.columns]
    if keys:
        _check_keys(reader, typed, keys)
    if name == "units":
        _read_units(reader, typed)
    elif references:
        if units is None:
            units = read_input(data_dir, "units")
        _check_units(reader, typed, "unit_id", units["unit_id"])
        if "commune_id" in typed.columns and "level" in typed.columns:
            _check_communes(reader, typed, units)
    if name == "sample":
        _check_sample(reader, typed)
    elif name == "dossiers":
        _check_dossiers(reader, typed)
    elif name == "frame":
        _check_order(reader, typed, "received_on", "result_on")
    out = typed.reset_index(drop=True)
    try:
        out = _backstop(contract, list(out.columns)).validate(out, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:  # a contract rule the reader does not know
        raise InputError(path, "the file's contract (docs/CONTRACTS.md)",
                         problem=schemas._describe(exc, "the table").split("\n", 1)[-1].strip()) from None
    if not personal:
        out = out.drop(columns=[c for c in out.columns if c in schemas.PERSONAL_COLUMNS])
    out.attrs["warnings"] = list(reader.warnings)
    out.attrs["rows"] = RowNumbers(typed.index.to_numpy())  # row (CSV) or record (Parquet) of each row
    return out


class RowNumbers:
    """Each row's number in its file, carried in ``DataFrame.attrs`` for messages.

    pandas compares and deep-copies ``attrs`` on every operation; a plain array would fail the
    comparison (arrays of other lengths do not broadcast) and cost a copy of a column each time.
    This read-only holder compares by identity and is shared, not copied.
    """

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values)
        self.values.flags.writeable = False

    def __getitem__(self, position: int) -> int:
        return int(self.values[position])

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __deepcopy__(self, memo: dict) -> "RowNumbers":
        return self


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


# --------------------------------------------------------------------------------------------
# Dossiers partitioned by month: validated where they lie (DuckDB), never loaded into pandas
# --------------------------------------------------------------------------------------------

#: A partition file's place under ``dossiers/`` (:func:`sipas_lib.dossier_engine.write_month_partitions`).
_PARTITION_PATH = re.compile(r"year=(?P<year>[0-9]{4})/month=(?P<month>[0-9]{1,2})/[^/]+\.parquet")
_PARTITION_KEYS = ("year", "month")


def _partition_files(folder: Path, year: int | None, warnings: list[str]) -> dict[Path, tuple[int, int]]:
    """Each Parquet file of the partitioned folder with its ``(year, month)`` keys, in path order.

    Raises
    ------
    InputError
        No Parquet file; a file outside ``year=YYYY/month=MM/``; a month key outside 1–12; with
        ``year``: no partition of that year.
    """
    files = dossier_engine.parquet_files(folder)
    shape = f"{folder.name}/year=YYYY/month=MM/part-*.parquet (month 01–12, the month the dossiers were received)"
    if not files:
        raise InputError(folder, shape, problem=f"folder without Parquet files; expected {shape}")
    keys = {}
    for path in files:
        match = _PARTITION_PATH.fullmatch(path.relative_to(folder).as_posix())
        if match is None or not 1 <= int(match["month"]) <= 12:
            raise InputError(path, shape, problem=f"is not in a month folder; expected {shape}",
                             hint="write the dossiers with sipas_lib.dossier_engine.write_month_partitions")
        keys[path] = (int(match["year"]), int(match["month"]))
    years = {y for y, _ in keys.values()}
    if year is not None and int(year) not in years:
        raise InputError(folder, f"dossiers received in {year}", problem=f"has no partition year={year} (found "
                         f"{', '.join(f'year={y}' for y in sorted(years))}); expected the dossiers of the survey year "
                         f"{year} in {folder.name}/year={year}/month=MM/")
    later = sorted(y for y in years if year is not None and y > int(year))
    if later:
        warnings.append(f"{folder}: partitions of {', '.join(map(str, later))} hold dossiers received after {year}; "
                        "no report of this year counts them")
    return keys


def _sql_text(name: str) -> str:
    return f'CAST("{name}" AS VARCHAR)'


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) + ")"


def _dossier_problems_sql(contract: schemas.TableContract, with_units: bool) -> str:
    """SQL condition true for a dossier that breaks a rule of :func:`_check_record` (row-local rules only)."""
    rules = []
    for name, column in contract.schema.columns.items():
        value = _sql_text(name) if _kind(column) == "text" else f'"{name}"'
        if not column.nullable:
            rules.append(f"{value} IS NULL")
        if _allowed(column) is not None:
            rules.append(f"{value} NOT IN {_sql_list(_allowed(column))}")
    if with_units:
        rules += ["unit_id NOT IN (SELECT unit_id FROM known_units)",
                  "commune_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM known_units k "
                  "WHERE k.unit_id = commune_id AND k.parent_id IS NOT DISTINCT FROM d.unit_id)"]
    rules += ["(level = 'commune') <> (commune_id IS NOT NULL)",
              "due_on < received_on", "resolved_on < received_on",
              "(status = 'pending') = (resolved_on IS NOT NULL)",
              "status <> 'pending' AND (resolved_on <= due_on) <> (status = 'on_time')",
              'year(received_on) <> "year" OR month(received_on) <> "month"']
    return " OR ".join(f"({r})" for r in rules)


def _check_record(reader: _Reader, record: pd.DataFrame, units: pd.DataFrame | None, keys: tuple[int, int]) -> None:
    """Raise the problem of one dossier (a one-row table indexed by its record number) that broke a rule.

    The rules are those of a single ``dossiers.parquet`` (:func:`_check_units`, :func:`_check_communes`,
    :func:`_check_dossiers`) except that codes must be stored as codes (a label is not mapped: the
    engines compare codes), plus the partition's own: the day received is in the folder's month."""
    row = int(record.index[0])
    for name, column in reader.contract.schema.columns.items():
        value = record.at[row, name]
        if _is_blank(value) and not column.nullable:
            raise reader.error(_expected(name, column), row=row, column=name, found=None)
        allowed = _allowed(column)
        if allowed is not None and not _is_blank(value) and value not in allowed:
            raise reader.error(_expected(name, column), row=row, column=name, found=value,
                               hint="codes are listed in docs/CONTRACTS.md; a partitioned table is read as stored")
    received = record.at[row, "received_on"]
    if (received.year, received.month) != keys:
        raise reader.error(f"a day received in {keys[1]:02d}/{keys[0]} (the partition's folder "
                           f"year={keys[0]}/month={keys[1]:02d})", row=row, column="received_on",
                           found=f"{received:%Y-%m-%d}", hint="move the record to its month's folder")
    if units is not None:
        _check_units(reader, record, "unit_id", units["unit_id"])
    _check_communes(reader, record, units)
    _check_dossiers(reader, record)


def _first_repeated_id(db, files: str, folder: Path) -> tuple[str, list[tuple[str, int]]] | None:
    """A dossier id held by two records of the partitioned table, and the first two (file, record), or None.

    The year-wide check counts distinct 64-bit hashes of the ids (a hash table of integers, far cheaper
    than one of strings over hundreds of millions of rows); only when it finds fewer hashes than rows are
    the repeated ids looked up exactly (a hash collision alone would not be reported)."""
    rows, hashes = db.execute(f"SELECT count(*), count(DISTINCT hash(dossier_id)) FROM {files}").fetchone()
    if rows == hashes:
        return None
    repeated = db.execute(f"""
        WITH h AS (SELECT hash(dossier_id) AS h FROM {files} GROUP BY 1 HAVING count(*) > 1),
             ids AS (SELECT dossier_id FROM {files} WHERE hash(dossier_id) IN (SELECT h FROM h)
                     GROUP BY 1 HAVING count(*) > 1)
        SELECT filename, file_row_number + 1, dossier_id FROM {files}
        WHERE dossier_id = (SELECT min(dossier_id) FROM ids)
        ORDER BY filename, file_row_number LIMIT 2""").fetchall()
    if len(repeated) < 2:
        return None
    return str(repeated[0][2]), [(Path(f), int(r)) for f, r, _ in repeated]


def validate_dossier_partitions(folder: str | os.PathLike, units: pd.DataFrame | None = None, *,
                                year: int | None = None, memory_limit: str | None = None) -> list[str]:
    """Validate dossiers partitioned by month (``dossiers/year=YYYY/month=MM/*.parquet``) without loading them.

    A national year holds hundreds of millions of dossiers, so the checks of a single
    ``dossiers.parquet`` (:func:`read_input`) are run where the files lie: the footers are read with
    pyarrow, the rows are scanned by DuckDB (out of core, ``memory_limit``), and only the first record
    that breaks a rule is brought into pandas, where the same checks as for one file name its problem.

    1. Layout: every file is ``year=YYYY/month=MM/<name>.parquet`` with a month 01–12; with ``year``,
       a partition of that year exists (later years are warned about: no report of the year counts them).
    2. Each file's schema: the contract's columns (no ``year``/``month`` columns, which would clash with
       the folder keys), each stored with a type of its kind (text, date, …).
    3. Each record: required values present; codes among the contract's (stored as codes, never labels);
       ``unit_id`` (and ``commune_id``, a commune of that unit) in ``units``; dates in order and the
       status agreeing with them; ``received_on`` in the folder's year and month.
    4. ``dossier_id`` once in the whole table (both records are named).

    Parameters
    ----------
    folder
        The partitioned table's root (``<year folder>/dossiers``).
    units
        The year's registry (``read_input(data_dir, "units")``); ``None`` skips the unit checks (a broken
        ``units.csv`` is reported on its own).
    year
        The survey year, when known.
    memory_limit
        DuckDB's memory limit for the scan (setting ``common.duckdb_memory_limit``; ``None``: DuckDB's default).

    Returns
    -------
    list of str
        Warnings (columns outside the contract, partitions after ``year``).

    Raises
    ------
    InputError
        The first problem, naming the partition file, its record (1-based, as in the file), the column
        and what was expected.
    """
    folder = Path(folder)
    contract = schemas.contract(INPUT_FILES["dossiers"])
    warnings: list[str] = []
    keys = _partition_files(folder, year, warnings)
    for path in keys:
        reader = _Reader(path, contract, True, [])
        stored = _parquet_schema(path)
        clash = [k for k in _PARTITION_KEYS if k in stored]
        if clash:
            raise reader.error("no column named year or month", column=clash[0],
                               problem=f"has a column {clash[0]!r}, which would clash with the folder's key "
                                       f"{clash[0]}=…; drop it (the folders say the month)")
        _check_columns(reader, list(stored))
        _check_stored_types(reader, stored)
        if reader.warnings and not any("not part of the contract" in w for w in warnings):
            warnings.append(reader.warnings[0] + " (the first partition file with such columns)")
    names = list(contract.columns)
    listing = _sql_list(str(p) for p in keys)
    files = (f"read_parquet([{listing[1:-1]}], filename = true, file_row_number = true, hive_partitioning = true, "
             "union_by_name = true)")
    with dossier_engine.connect("duckdb", memory_limit=memory_limit) as backend:
        db = backend.con
        if units is not None:
            db.register("known_units", pd.DataFrame({"unit_id": units["unit_id"].astype(str),
                                                     "parent_id": units["parent_id"].astype("string")}))
        selected = ", ".join(f'"{n}"' for n in names)
        as_text = ", ".join(f'{_sql_text(n)} AS "{n}"' for n in names if _kind(contract.schema.columns[n]) == "text")
        bad = db.execute(f"""
            SELECT filename, file_row_number + 1 AS record, {selected}
            FROM (SELECT * REPLACE ({as_text}) FROM {files}) d
            WHERE {_dossier_problems_sql(contract, units is not None)}
            ORDER BY filename, file_row_number LIMIT 1""").fetch_df()
        if len(bad):
            path = Path(bad.at[0, "filename"])
            record = bad.drop(columns=["filename", "record"]).set_axis(pd.Index([int(bad.at[0, "record"])],
                                                                                  name="record"))
            for name in names:
                if _kind(contract.schema.columns[name]) == "date":
                    record[name] = pd.to_datetime(record[name])
            reader = _Reader(path, contract, True, [])
            _check_record(reader, record, units, keys[path])
            raise reader.error("a dossier that follows the contract (docs/CONTRACTS.md)", row=int(record.index[0]))
        repeated = _first_repeated_id(db, files, folder)
    if repeated is not None:
        dossier_id, ((first_file, first_row), (path, row)) = repeated
        where = f"record {first_row}" + ("" if first_file == path else f" of {first_file}")
        raise _Reader(path, contract, True, []).error(
            "each dossier_id once", row=row, column="dossier_id",
            problem=f"repeats {where}: both have dossier_id {dossier_id!r}; each dossier_id may appear only once "
                    "in the year's partitions (a chunk written twice?)")
    return warnings


# --------------------------------------------------------------------------------------------
# A whole year
# --------------------------------------------------------------------------------------------

#: The tables :func:`validate_year` needs after reading them: unit ids for the files read later, and
#: :func:`_cross_check`'s inputs.
_KEPT_FOR_CHECKS = ("units", "sample", "frame_counts")


def _cross_check(data_dir: Path, tables: dict[str, pd.DataFrame], warnings: list[str]) -> list[InputError]:
    """Checks between files: every sampled unit has frame counts."""
    errors: list[InputError] = []
    sample, counts = tables.get("sample"), tables.get("frame_counts")
    if sample is not None and counts is not None:
        path = _path(data_dir, "sample")
        missing = ~sample["unit_id"].isin(counts["unit_id"])
        if missing.any():
            position = int(missing.to_numpy().argmax())
            errors.append(InputError(path, "a unit with rows in frame_counts.csv", row=sample.attrs["rows"][position],
                                     column="unit_id",
                                     found=sample["unit_id"].iloc[position],
                                     hint="calibration needs the unit's frame counts; add them to frame_counts.csv"))
        else:
            cells = pd.MultiIndex.from_frame(counts[["unit_id", "field"]])
            off = ~pd.MultiIndex.from_frame(sample[["unit_id", "field"]]).isin(cells)
            if off.any():
                position = int(off.argmax())
                warnings.append(f"{path}, row {sample.attrs['rows'][position]}: unit {sample['unit_id'].iloc[position]!r} has sampled "
                                f"forms in field {sample['field'].iloc[position]!r} but frame_counts.csv has no row "
                                f"for that field ({int(off.sum())} form(s) in such cells)")
    return errors


def validate_year(data_dir: str | os.PathLike, *, names: Iterable[str] | None = None, year: int | None = None,
                  memory_limit: str | None = None) -> list[str]:
    """Validate every input file of a year before any stage runs.

    Parameters
    ----------
    data_dir
        The year's folder. Its ``previous_year/`` subfolder, if any, is a year of its own: validate
        it with a second call.
    names
        Files to validate (default: every input file; the required ones —
        :data:`sipas_lib.schemas.inputs.REQUIRED_FILES` — must exist, the others are validated
        when present). The dossiers may be partitioned by month instead (``dossiers/year=YYYY/month=MM/``,
        :func:`validate_dossier_partitions`, never loaded into pandas).
    year
        The survey year: the partitioned dossiers must have a partition of it (optional).
    memory_limit
        DuckDB's memory limit while the partitioned dossiers are scanned (``common.duckdb_memory_limit``).

    Returns
    -------
    list of str
        Warnings: values read with a correction (stray spaces stripped, labels mapped to codes,
        columns not read), each naming file, row and column.

    Raises
    ------
    InputError
        One problem (file, row, column, expected, found).
    InputErrors
        Problems in several files: the first problem of each, one line per file.
    """
    data_dir = Path(data_dir)
    names = list(INPUT_FILES) if names is None else list(names)
    warnings: list[str] = []
    errors: list[InputError] = []
    tables: dict[str, pd.DataFrame] = {}
    if not data_dir.is_dir():
        raise InputError(data_dir, "the folder of a year's input files", problem="folder not found")
    ordered = ["units", *[n for n in names if n != "units"]]
    for name in ordered:
        path = _path(data_dir, name)
        partitioned = data_dir / DOSSIER_FOLDER
        if name == "dossiers" and partitioned.is_dir():
            try:
                if path.exists():
                    raise InputError(partitioned, f"the dossiers once: {path.name} or {DOSSIER_FOLDER}/",
                                     problem=f"{path.name} is there too; keep one of them (which one counts cannot "
                                             "be guessed)")
                warnings.extend(validate_dossier_partitions(partitioned, tables.get("units"), year=year,
                                                            memory_limit=memory_limit))
            except InputError as exc:
                errors.append(exc)
            continue
        if not path.exists():
            if name in REQUIRED_FILES:
                errors.append(InputError(path, schemas.contract(INPUT_FILES[name]).description,
                                         problem="not found; every year needs it: "
                                                 + _lower_first(schemas.contract(INPUT_FILES[name]).description)))
            continue
        try:
            table = _read_input(data_dir, name, units=tables.get("units"), personal=False,
                                references="units" in tables)
        except InputError as exc:
            errors.append(exc)
            continue
        warnings.extend(table.attrs.get("warnings", []))
        if name in _KEPT_FOR_CHECKS:  # the rest is freed now: a national frame or dossier table is GBs
            tables[name] = table
        del table
    if not errors:
        errors.extend(_cross_check(data_dir, tables, warnings))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)
    return warnings
