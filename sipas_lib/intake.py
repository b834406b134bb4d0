"""Fieldwork intake: read returned questionnaires, validate them, quarantine bad records.

Returned questionnaires arrive as CSV (UTF-8, with or without BOM), Excel (``.xlsx``) or Parquet,
with canonical headers (``form_id, unit_id, c01 ...``) or the Vietnamese headers of the paper
form (``Mã số phiếu, Đơn vị, Câu 1 ...``; see :data:`VIETNAMESE_HEADERS`). Intake works in three
steps:

1. :func:`read_table` reads a file *read-only* (raw files are never modified) and maps its
   headers to canonical names. Every cell stays text; each row keeps its ``source_file`` and
   ``source_row`` (the row number a spreadsheet user sees: header = row 1, first record = row 2).
2. File-level problems raise :class:`IntakeError`, whose message names the file, the row and the
   column and says what was expected: unknown extension, empty file, unreadable Excel, missing
   required column, a column of dates none of which can be read, two headers mapping to one column.
3. Record-level problems never stop intake: the record goes to the quarantine table with one
   reason (the first rule it breaks, in the order of :data:`RULES`), everything else is accepted.
   The rules are vectorized boolean masks over all records.

Duplicated form ids
-------------------
A form id that appears more than once is handled this way (documented decision):

* *exact duplicates* (every answer identical, e.g. the same paper keyed twice): the first copy in
  reading order is kept, the other copies are quarantined (``duplicate_exact``);
* *conflicting duplicates* (same id, answers differ): nobody can tell which copy is the real one,
  so **all** copies are quarantined (``duplicate_conflict``) and the fieldwork team re-checks the
  paper forms.

Invariant: ``received = accepted + quarantined`` for every file and unit; it is checked in code
(:func:`validate_responses` raises ``AssertionError`` if it ever failed) and in the tests.

Item-level missing values are allowed (scattered missing items are not a reason to quarantine);
a form with no rated item answered at all is quarantined (``empty_form``). Section V (c15-c18) is
answered only by respondents who gave feedback: ``gave_feedback`` = any of those items answered.

Personal data (``enumerator_name``, ``enumerator_phone``, ``enumerator_address``) and columns
intake does not know are dropped; they never appear in the accepted or quarantine tables.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sipas_lib.instrument import Instrument, instrument_for_unit_type, load_instrument
from sipas_lib.sampling import check_form_ids
from sipas_lib.config import FIELDS, SURVEY_MODES
from sipas_lib.texts import load_texts
from sipas_lib.units import load_units, validate_units

__all__ = [
    "VIETNAMESE_HEADERS",
    "HEADER_ALIASES",
    "PERSONAL_COLUMNS",
    "RULES",
    "IntakeError",
    "IntakeResult",
    "normalize_header",
    "map_columns",
    "read_table",
    "form_id_problems",
    "validate_responses",
    "intake_files",
    "intake_year",
    "write_quarantine",
    "response_rates",
    "item_nonresponse",
    "quarantine_counts",
    "CHANNEL_LABELS",
    "FIELD_LABELS",
    "DEFAULT_FILES",
    "REPORT_LABELS",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

#: Vietnamese header of the paper form -> canonical column (one header per column; the demo
#: simulator writes the department file with exactly these headers).
VIETNAMESE_HEADERS: dict[str, str] = {
    "Mã số phiếu": "form_id",
    "Đơn vị": "unit_id",
    "Lĩnh vực": "field",
    "Hình thức khảo sát": "channel",
    **{f"Câu {k}": f"c{k:02d}" for k in range(1, 19)},
    **{f"Câu 2.{k}": f"lg{k}" for k in range(1, 9)},
    "Giới tính": "gender",
    "Độ tuổi": "age_group",
    "Trình độ": "education",
    "Trình độ khác": "education_other",
    "Ngày khảo sát": "survey_date",
    "Họ tên điều tra viên": "enumerator_name",
    "Số điện thoại điều tra viên": "enumerator_phone",
    "Địa chỉ điều tra viên": "enumerator_address",
}

#: Other spellings met in practice (also understood; not used when writing files).
HEADER_ALIASES: dict[str, str] = {
    "Mã phiếu": "form_id",
    "Số phiếu": "form_id",
    "Mã đơn vị": "unit_id",
    "Tên đơn vị": "unit_id",
    "Kênh khảo sát": "channel",
    "Hình thức": "channel",
    "Thời gian khảo sát": "survey_date",
    "Ngày điều tra": "survey_date",
    "Họ và tên điều tra viên": "enumerator_name",
    "Điện thoại điều tra viên": "enumerator_phone",
    **{f"Câu 1.{k}": f"c{k:02d}" for k in range(1, 19)},
}

PERSONAL_COLUMNS: tuple[str, ...] = ("enumerator_name", "enumerator_phone", "enumerator_address")
DEMOGRAPHIC_COLUMNS: tuple[str, ...] = ("gender", "age_group", "education")
REQUIRED_COLUMNS: tuple[str, ...] = ("form_id", "unit_id", "channel")
OPTIONAL_COLUMNS: tuple[str, ...] = ("field", *DEMOGRAPHIC_COLUMNS, "education_other", "survey_date")

#: Vietnamese labels accepted for the survey mode (``channel``), besides the codes themselves.
CHANNEL_LABELS: dict[str, str] = {
    "bưu điện": "postal", "qua bưu điện": "postal", "bưu chính": "postal",
    "một cửa": "one_stop", "bộ phận một cửa": "one_stop", "tại bộ phận một cửa": "one_stop",
    "trực tiếp": "one_stop", "one stop": "one_stop",
    "trực tuyến": "online", "qua mạng": "online",
}
#: Vietnamese labels accepted for the field of procedure, besides the codes themselves.
FIELD_LABELS: dict[str, str] = {
    "tư pháp": "justice", "tư pháp hộ tịch": "justice",
    "lao động xã hội": "labour_social", "lao động thương binh và xã hội": "labour_social",
    "đất đai môi trường": "land_environment", "tài nguyên và môi trường": "land_environment",
    "đất đai": "land_environment",
    "xây dựng đô thị": "construction_urban", "xây dựng": "construction_urban",
    "khác": "other",
}

#: Record rules in priority order: a record that breaks several gets the first one's reason.
RULES: dict[str, tuple[str, str]] = {
    "form_id_missing": ("form id is empty", "thiếu mã số phiếu"),
    "form_id_format": ("form id is not 6 digits", "mã số phiếu không gồm 6 chữ số"),
    "form_id_check_digit": ("form id fails its check digit (mistyped?)", "mã số phiếu sai chữ số kiểm tra"),
    "duplicate_conflict": ("form id appears more than once with different answers; all copies set aside",
                           "mã số phiếu trùng, nội dung khác nhau"),
    "duplicate_exact": ("exact duplicate of an earlier record", "phiếu trùng lặp hoàn toàn"),
    "unit_missing": ("unit is empty", "thiếu đơn vị"),
    "unit_unknown": ("unit is not in the units registry", "đơn vị không có trong danh mục"),
    "form_unit_type": ("questionnaire form does not fit the unit type", "mẫu phiếu không phù hợp loại đơn vị"),
    "form_id_unit": ("form id does not belong to the unit (first two digits)",
                     "mã số phiếu không thuộc đơn vị"),
    "form_id_not_issued": ("form id was not issued in the sample", "mã số phiếu không có trong mẫu đã phát"),
    "item_value": ("answer outside the scale", "câu trả lời ngoài thang đo"),
    "demographic_value": ("respondent information outside the allowed codes",
                          "thông tin người trả lời ngoài mã cho phép"),
    "channel_value": ("survey mode missing or unknown", "hình thức khảo sát trống hoặc không hợp lệ"),
    "field_value": ("field of procedure unknown", "lĩnh vực không hợp lệ"),
    "survey_date_value": ("survey date cannot be read", "ngày khảo sát không đọc được"),
    "empty_form": ("no question answered", "không trả lời câu nào"),
}
_FORM_ID_RULES = ("form_id_missing", "form_id_format", "form_id_check_digit")

QUARANTINE_COLUMNS = ["source_file", "source_row", "form_id", "unit_id", "column", "rule", "reason", "reason_vi"]
SUMMARY_COLUMNS = ["source_file", "unit_id", "received", "accepted", "quarantined"]
DEFAULT_FILES: dict[str, str] = {
    "responses_departments.xlsx": "hanoi_pl5_department",
    "responses_districts.csv": "hanoi_pl5_district",
}
_SUFFIXES = (".csv", ".xlsx", ".xlsm", ".parquet", ".pq")
_MIN_VALUES_FOR_COLUMN_ERROR = 3


class IntakeError(ValueError):
    """A response file cannot be taken in; the message names the file, row, column and expectation."""


@dataclass(frozen=True)
class IntakeResult:
    """What intake returns.

    Attributes
    ----------
    accepted
        One row per accepted questionnaire, canonical columns plus ``unit_type``, ``form``,
        ``gave_feedback``, ``source_file``, ``source_row``; no personal data.
    quarantine
        One row per rejected record: ``source_file, source_row, form_id, unit_id, column, rule,
        reason, reason_vi`` (no personal data).
    summary
        ``source_file, unit_id, received, accepted, quarantined`` with received = accepted + quarantined.
    notes
        File-level remarks that did not stop intake (e.g. columns dropped because unknown).
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    summary: pd.DataFrame
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def normalize_header(text: object) -> str:
    """Normalize a header for matching: Unicode NFC, case-folded, whitespace collapsed.

    Trailing ``:`` / ``.`` are dropped and leading zeros of numbers removed, so ``"CÂU 01:"``,
    ``"câu 1"`` and the NFD spelling of ``"Câu 1"`` all become ``"câu 1"``.
    """
    t = unicodedata.normalize("NFC", str(text)).replace("\u00a0", " ")
    t = re.sub(r"\s+", " ", t).strip().strip(":.").strip().casefold()
    return re.sub(r"(?<![\d.])0+(\d)", r"\1", t)


def _norm_values(s: pd.Series) -> pd.Series:
    """Normalize cell text for label matching (NFC, case-folded, punctuation to spaces)."""
    t = s.astype("string").str.normalize("NFC").str.casefold()
    t = t.str.replace(r"[\-–—,/;_.()]", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    return t


def _norm_key(text: str) -> str:
    """Scalar version of :func:`_norm_values`."""
    t = unicodedata.normalize("NFC", str(text)).casefold()
    return re.sub(r"\s+", " ", re.sub(r"[\-–—,/;_.()]", " ", t)).strip()


def map_columns(columns: Iterable[object], column_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map file headers to canonical column names.

    Canonical names (``form_id``, ``c01`` ...) map to themselves; Vietnamese headers via
    :data:`VIETNAMESE_HEADERS` and :data:`HEADER_ALIASES`, then ``column_map`` (which wins).
    Matching ignores case, surrounding whitespace and Unicode NFC/NFD differences. Headers not
    recognised keep their own name.

    Returns
    -------
    dict
        original header -> canonical name.
    """
    canonical = set(VIETNAMESE_HEADERS.values()) | set(HEADER_ALIASES.values())
    lookup = {normalize_header(c): c for c in canonical}
    for table in (HEADER_ALIASES, VIETNAMESE_HEADERS, dict(column_map or {})):
        lookup.update({normalize_header(k): v for k, v in table.items()})
    return {col: lookup.get(normalize_header(col), str(col)) for col in columns}


def _check_path(path: Path) -> None:
    if not path.exists():
        raise IntakeError(f"{path}: file not found")
    if path.is_dir():
        raise IntakeError(f"{path}: is a folder, expected a response file ({', '.join(_SUFFIXES)})")
    if path.suffix.lower() not in _SUFFIXES:
        hint = " (old Excel format: save it as .xlsx)" if path.suffix.lower() == ".xls" else ""
        raise IntakeError(f"{path}: unknown file type {path.suffix or '(no extension)'!r}{hint}; "
                          f"expected one of {', '.join(_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise IntakeError(f"{path}: the file is empty (0 bytes); expected a header row and one row per questionnaire")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:  # read-only
            text = fh.read()
    except UnicodeDecodeError as exc:
        with open(path, "rb") as fh:
            line = fh.read(exc.start).count(b"\n") + 1
        raise IntakeError(f"{path}: row {line}: not UTF-8 text (byte {exc.start}); save the file as "
                          "'CSV UTF-8' so Vietnamese letters are kept") from exc
    if not text.strip():
        raise IntakeError(f"{path}: the file is empty (only blank lines); expected a header row and records")
    first = text.splitlines()[0]
    sep = max((",", ";", "\t"), key=first.count)
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                            skip_blank_lines=False, quoting=csv.QUOTE_MINIMAL)
    except pd.errors.ParserError as exc:
        hit = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if hit:
            raise IntakeError(f"{path}: row {hit.group(2)}: has {hit.group(3)} cells but the header has "
                              f"{hit.group(1)} columns (separator {sep!r} inside a value without quotes?)") from exc
        raise IntakeError(f"{path}: cannot be read as CSV: {exc}") from exc
    return table


def _read_xlsx(path: Path, sheet: str | int | None) -> pd.DataFrame:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise IntakeError(f"{path}: not a valid .xlsx file ({type(exc).__name__}: {exc}); open it in Excel "
                          "and save it again as 'Excel Workbook (.xlsx)' or as 'CSV UTF-8'") from exc
    try:
        names = wb.sheetnames
        if sheet is None:
            ws = wb.worksheets[0]
        elif isinstance(sheet, int):
            if not 0 <= sheet < len(names):
                raise IntakeError(f"{path}: has no sheet number {sheet}; sheets are {names}")
            ws = wb.worksheets[sheet]
        else:
            if sheet not in names:
                raise IntakeError(f"{path}: has no sheet {sheet!r}; sheets are {names}")
            ws = wb[sheet]
        rows = list(ws.iter_rows(values_only=True))
    finally:
        wb.close()
    if not rows or all(all(v is None for v in r) for r in rows):
        raise IntakeError(f"{path}: the sheet {ws.title!r} is empty; expected a header row and records")
    width = max(len(r) for r in rows)
    header = list(rows[0]) + [None] * (width - len(rows[0]))
    body = [tuple(r) + (None,) * (width - len(r)) for r in rows[1:]]
    # Trailing columns with neither header nor data are formatting leftovers.
    keep = [j for j in range(width) if header[j] is not None or any(r[j] is not None for r in body)]
    cols = [header[j] if header[j] is not None else f"(column {_excel_letter(j)} without header)" for j in keep]
    table = pd.DataFrame([[r[j] for j in keep] for r in body], columns=cols, dtype=object)
    return table


def _excel_letter(j: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(j + 1)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise IntakeError(f"{path}: not a valid Parquet file ({type(exc).__name__}: {exc})") from exc


def read_table(path: str | os.PathLike, column_map: Mapping[str, str] | None = None,
               sheet: str | int | None = None) -> pd.DataFrame:
    """Read a response file (CSV, XLSX or Parquet) read-only, as text, with canonical headers.

    Parameters
    ----------
    path
        ``.csv`` (UTF-8 with or without BOM; ``,`` ``;`` or tab separated), ``.xlsx`` or ``.parquet``.
    column_map
        Extra header -> canonical column mapping, on top of :data:`VIETNAMESE_HEADERS`.
    sheet
        Excel sheet name or 0-based number (default: the first sheet).

    Returns
    -------
    DataFrame
        Every cell as text (``string`` dtype; empty cells are ``<NA>``), canonical headers, plus
        ``source_file`` (file name) and ``source_row`` (row as a spreadsheet user sees it: header =
        row 1, so the first record is row 2). Blank rows are dropped but keep their numbering.
        ``attrs["headers"]`` maps canonical name -> the file's own header.

    Raises
    ------
    IntakeError
        Unknown extension, empty file, unreadable Excel/Parquet, non-UTF-8 CSV, header row only,
        or two headers that map to the same column.
    """
    path = Path(path)
    _check_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = _read_csv(path)
    elif suffix in (".xlsx", ".xlsm"):
        table = _read_xlsx(path, sheet)
    else:
        table = _read_parquet(path)
    # Intake adds its own source_file/source_row; a file's own columns of that name are not used.
    table = table.rename(columns={c: f"{c} (in file)" for c in ("source_file", "source_row")})
    mapping = map_columns(table.columns, column_map)
    targets = pd.Series(list(mapping.values()), index=list(mapping.keys()))
    clash = targets[targets.duplicated(keep=False)]
    if len(clash):
        col = clash.iloc[0]
        heads = [str(h) for h in clash.index[clash == col]]
        raise IntakeError(f"{path}: row 1 (header): columns {heads} all mean {col!r}; keep only one of them")
    table = table.rename(columns=mapping)
    text = table.astype("string")
    text = text.apply(lambda s: s.str.strip())
    text = text.mask(text == "")
    text = text.apply(lambda s: s.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True))  # 3.0 -> 3 (Excel)
    text.insert(0, "source_row", np.arange(2, len(text) + 2, dtype=np.int64))
    text.insert(0, "source_file", path.name)
    data_cols = [c for c in text.columns if c not in ("source_file", "source_row")]
    blank = text[data_cols].isna().all(axis=1)
    text = text.loc[~blank].reset_index(drop=True)
    if text.empty:
        raise IntakeError(f"{path}: has a header row but no records (row 2 onwards is empty); "
                          "expected one row per returned questionnaire")
    text.attrs["headers"] = {v: str(k) for k, v in mapping.items()}
    text.attrs["path"] = str(path)
    return text


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------

def form_id_problems(form_ids: pd.Series) -> pd.Series:
    """Classify form ids: ``None`` if valid, else ``form_id_missing/format/check_digit``.

    Scheme (fixed): 6 digits; digits 1-2 the unit code, 3-5 the serial, 6 the Luhn check digit
    computed over the first five (Luhn 1954; ISO/IEC 7812-1 Annex B). The check itself is
    :func:`sipas_lib.sampling.check_form_ids` (which also rejects unit code < 10 and serial 000;
    those ids are reported as ``form_id_check_digit`` too).
    """
    s = form_ids.astype("string").str.strip()
    out = pd.Series(np.full(len(s), None, dtype=object), index=s.index, dtype=object)
    missing = (s.isna() | (s == "")).astype(bool)
    fmt = ~missing & ~s.str.fullmatch(r"\d{6}").fillna(False).astype(bool)
    ok_fmt = ~missing & ~fmt
    bad_check = ok_fmt & ~pd.Series(check_form_ids(s.astype(object).where(ok_fmt, None).to_numpy()), index=s.index)
    out[missing] = "form_id_missing"
    out[fmt] = "form_id_format"
    out[bad_check] = "form_id_check_digit"
    return out


def _code_labels(values: Mapping) -> dict[str, float]:
    """Label text (vi/en, normalized) -> numeric code."""
    out: dict[str, float] = {}
    for code, lab in values.items():
        labs = lab.values() if isinstance(lab, dict) else [lab]
        for text in labs:
            out[_norm_key(str(text))] = float(code)
    return out


def _parse_codes(text: pd.Series, labels: Mapping[str, float]) -> tuple[pd.Series, pd.Series]:
    """Text -> float codes (numbers or labels); second value: non-empty but unreadable mask."""
    num = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce").astype(float)
    other = text.notna() & num.isna()
    if labels and other.any():
        num = num.fillna(_norm_values(text[other]).map(labels).astype(float))
    return num, text.notna() & num.isna()


def _parse_dates(text: pd.Series) -> pd.Series:
    """ISO dates, day-first ``dd/mm/yyyy`` or ``dd-mm-yyyy``, or Excel serial day numbers."""
    iso = pd.to_datetime(text, format="ISO8601", errors="coerce")
    dmy = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce")
    dmy2 = pd.to_datetime(text, format="%d-%m-%Y", errors="coerce")
    serial = pd.to_numeric(text, errors="coerce")
    serial = serial.where(serial.between(20000, 80000))
    excel = pd.to_datetime(serial, unit="D", origin="1899-12-30", errors="coerce")
    out = iso.fillna(dmy).fillna(dmy2).fillna(excel)
    return out.dt.normalize()


def _where_first(mask: pd.Series, frame: pd.DataFrame) -> tuple[str, int]:
    pos = int(np.flatnonzero(mask.to_numpy())[0])
    return str(frame["source_file"].iloc[pos]), int(frame["source_row"].iloc[pos])


def _header_name(headers: Mapping[str, str], col: str) -> str:
    orig = headers.get(col, col)
    return f"{col!r}" if orig == col else f"{orig!r} ({col})"


def _as_instrument(inst: Instrument | str | os.PathLike | None) -> Instrument | None:
    if inst is None or isinstance(inst, Instrument):
        return inst
    return load_instrument(inst)


def _str_of(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


@dataclass
class _Checked:
    typed: pd.DataFrame
    raw_form_id: pd.Series
    raw_unit_id: pd.Series
    rule: pd.Series
    column: pd.Series
    reason: pd.Series
    reason_vi: pd.Series
    item_codes: list[str]
    notes: list[str]


def _check_records(raw: pd.DataFrame, units: pd.DataFrame, instrument: Instrument | None,
                   sample: pd.DataFrame | None) -> _Checked:
    """File-level checks (raise) and record-level masks (first failing rule per record)."""
    if "source_file" not in raw.columns:
        raw = raw.assign(source_file="(data frame)")
    if "source_row" not in raw.columns:
        raw = raw.assign(source_row=np.arange(2, len(raw) + 2, dtype=np.int64))
    headers = dict(raw.attrs.get("headers", {}))
    full_path = raw.attrs.get("path")  # name the whole path in file-level errors when known
    raw = raw.reset_index(drop=True)
    raw.attrs = {}  # pandas deep-copies attrs on every operation; keep the header names aside
    src = full_path or (str(raw["source_file"].iloc[0]) if len(raw) else "(data frame)")
    forms = [instrument] if instrument is not None else [instrument_for_unit_type(t) for t in ("department", "district")]
    item_table = pd.concat([f.items for f in forms]).drop_duplicates("code")
    item_codes = item_table["code"].tolist()
    if instrument is not None:
        required_items = list(instrument.item_codes)
    else:
        required_items = [c for c in item_codes if all(c in f.item_codes for f in forms)]
    missing = [c for c in (*REQUIRED_COLUMNS, *required_items) if c not in raw.columns]
    if missing:
        inverse = {v: k for k, v in VIETNAMESE_HEADERS.items()}
        named = ", ".join(f"{c!r} (Vietnamese header {inverse[c]!r})" if c in inverse else repr(c) for c in missing)
        found = [headers.get(c, c) for c in raw.columns if c not in ("source_file", "source_row")]
        form_txt = f" for form {instrument.id}" if instrument is not None else ""
        raise IntakeError(f"{src}: row 1 (header): missing required column(s) {named}{form_txt}; "
                          f"found columns {found}")
    known = {"source_file", "source_row", *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *PERSONAL_COLUMNS, *item_codes}
    notes = []
    unknown = [c for c in raw.columns if c not in known]
    if unknown:
        notes.append(f"{src}: columns not used and dropped: {[headers.get(c, c) for c in unknown]}")
    text = raw.copy()
    for col in (*OPTIONAL_COLUMNS, *item_codes):
        if col not in text.columns:
            text[col] = pd.Series(pd.NA, index=text.index, dtype="string")
    for col in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *item_codes):
        text[col] = text[col].astype("string").str.strip().replace("", pd.NA)
    n = len(text)
    typed = pd.DataFrame(index=text.index)

    # Form id
    fid = text["form_id"].str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    fid_rule = form_id_problems(fid)
    typed["form_id"] = fid

    # Units: id, or Vietnamese/English name
    units = validate_units(units)
    keys = pd.concat([
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["unit_id"]).to_numpy()),
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["name_vi"].astype("string")).to_numpy()),
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["name_en"].astype("string")).to_numpy()),
    ])
    keys = keys[~keys.index.duplicated()]
    uid = _norm_values(text["unit_id"]).map(keys)
    unit_missing = text["unit_id"].isna()
    unit_unknown = ~unit_missing & uid.isna()
    typed["unit_id"] = uid.astype("string")
    utype = uid.map(units.set_index("unit_id")["unit_type"])
    ucode = uid.map(units.set_index("unit_id")["code"].astype(float))

    # Form of each record and the unit-type check
    if instrument is not None:
        form = pd.Series(instrument.id, index=text.index, dtype=object)
        wrong_type = uid.notna() & ((utype != instrument.unit_type) if instrument.unit_type else (utype == "commune"))
        off_form = pd.Series(False, index=text.index)
        off_col = pd.Series(None, index=text.index, dtype=object)
        type_expected = instrument.unit_type or "department or district"
    else:
        ids = {t: instrument_for_unit_type(t).id for t in ("department", "district")}
        form = utype.map(ids)
        wrong_type = uid.notna() & form.isna()
        on_form = {f.id: set(f.item_codes) for f in forms}
        answered = text[item_codes].notna().to_numpy()
        allowed = np.stack([(form.isin([f for f, codes in on_form.items() if c in codes]) | form.isna())
                            .to_numpy(dtype=bool) for c in item_codes], axis=1)
        off = answered & ~allowed
        off_form = pd.Series(off.any(axis=1), index=text.index)
        off_col = pd.Series(np.array(item_codes, dtype=object)[off.argmax(axis=1)], index=text.index)
        type_expected = "department or district"
    typed["unit_type"] = utype.astype("string")
    typed["form"] = form.astype("string")

    code_in_id = pd.to_numeric(fid.str[:2].where(fid_rule.isna()), errors="coerce")
    id_unit = fid_rule.isna() & uid.notna() & (code_in_id != ucode)

    not_issued = pd.Series(False, index=text.index)
    if sample is not None:
        issued = set(sample["form_id"].astype("string").str.strip())
        not_issued = fid_rule.isna() & ~fid.isin(issued)

    # Items
    scale_labels = {}
    for f in forms:
        scale_labels.update(_code_labels({k: v for k, v in f.scale_labels.items()}))
    bad_items = np.zeros((n, len(item_codes)), dtype=bool)
    lows = item_table.set_index("code")["scale_min"]
    highs = item_table.set_index("code")["scale_max"]
    for j, col in enumerate(item_codes):
        val, unreadable = _parse_codes(text[col], scale_labels)
        if unreadable.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and unreadable.sum() == text[col].notna().sum():
            f, r = _where_first(unreadable, text)
            raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, col)}: no value in this column is an "
                              f"answer code (e.g. {text[col][unreadable].iloc[0]!r}); expected whole numbers "
                              f"{int(lows[col])}-{int(highs[col])} or empty")
        out = val.notna() & ((val != np.floor(val)) | (val < lows[col]) | (val > highs[col]))
        bad_items[:, j] = (unreadable | out).to_numpy()
        typed[col] = val.where(~out)
    item_bad = pd.Series(bad_items.any(axis=1), index=text.index)
    item_col = pd.Series(np.array(item_codes, dtype=object)[bad_items.argmax(axis=1)], index=text.index)
    n_bad_items = bad_items.sum(axis=1)

    # Demographics (allowed codes from the instrument; labels such as "Nam"/"Nữ" accepted)
    demo_table = pd.concat([f.demographics for f in forms]).drop_duplicates("code").set_index("code")
    demo_cols = [c for c in DEMOGRAPHIC_COLUMNS if c in demo_table.index]
    bad_demo = np.zeros((n, max(len(demo_cols), 1)), dtype=bool)
    allowed_txt = {}
    for j, col in enumerate(demo_cols):
        values = demo_table.loc[col, "values"]
        val, unreadable = _parse_codes(text[col], _code_labels(values))
        if unreadable.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and unreadable.sum() == text[col].notna().sum():
            f, r = _where_first(unreadable, text)
            raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, col)}: no value in this column is a code "
                              f"(e.g. {text[col][unreadable].iloc[0]!r}); expected one of {sorted(values)} or empty")
        out = val.notna() & ~val.isin([float(v) for v in values])
        bad_demo[:, j] = (unreadable | out).to_numpy()
        typed[col] = val.where(~out)
        allowed_txt[col] = ", ".join(str(v) for v in sorted(values))
    for col in DEMOGRAPHIC_COLUMNS:
        if col not in typed.columns:
            typed[col] = np.nan
    demo_bad = pd.Series(bad_demo.any(axis=1), index=text.index)
    demo_col = pd.Series(np.array(demo_cols or [""], dtype=object)[bad_demo.argmax(axis=1)], index=text.index)
    typed["education_other"] = text["education_other"]

    # Channel (survey mode) and field
    chan_keys = {**{_norm_key(k): v for k, v in CHANNEL_LABELS.items()}, **{_norm_key(m): m for m in SURVEY_MODES}}
    chan = _norm_values(text["channel"]).map(chan_keys)
    chan_bad = chan.isna()
    typed["channel"] = chan.astype("string")
    field_keys = {**{_norm_key(k): v for k, v in FIELD_LABELS.items()}, **{_norm_key(m): m for m in FIELDS}}
    fld = _norm_values(text["field"]).map(field_keys)
    field_bad = text["field"].notna() & fld.isna()
    typed["field"] = fld.astype("string")

    # Survey date
    date = _parse_dates(text["survey_date"])
    date_bad = text["survey_date"].notna() & date.isna()
    if date_bad.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and date_bad.sum() == text["survey_date"].notna().sum():
        f, r = _where_first(date_bad, text)
        raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, 'survey_date')}: none of the "
                          f"{int(date_bad.sum())} dates can be read (e.g. {text['survey_date'][date_bad].iloc[0]!r}); "
                          "expected dates like 2025-10-14 or 14/10/2025")
    typed["survey_date"] = date

    # Empty form: no rated item of its own form answered
    own_items = (instrument.item_codes if instrument is not None else item_codes)
    empty = typed[own_items].isna().all(axis=1) & ~item_bad

    # Personal columns are kept only for the duplicate comparison, then dropped.
    typed["source_file"] = text["source_file"].astype("string")
    typed["source_row"] = text["source_row"].astype(np.int64)

    # Reasons (vectorized string building per rule)
    fid_txt, uid_txt = _str_of(text["form_id"]), _str_of(text["unit_id"])
    code_txt = _str_of(code_in_id.astype("Int64"))
    item_val = pd.Series(text[item_codes].to_numpy(dtype=object)[np.arange(n), bad_items.argmax(axis=1)]
                         if n else [], index=text.index, dtype="string").fillna("")
    demo_val = pd.Series(text[demo_cols].to_numpy(dtype=object)[np.arange(n), bad_demo.argmax(axis=1)]
                         if n and demo_cols else [""] * n, index=text.index, dtype="string").fillna("")
    low_of = item_col.map(lows).astype("Int64").astype("string").fillna("")
    high_of = item_col.map(highs).astype("Int64").astype("string").fillna("")
    more = pd.Series(np.where(n_bad_items > 1, " (+" + pd.Series(n_bad_items - 1).astype(str) + " more)", ""),
                     index=text.index)
    expected_code = _str_of(ucode.astype("Int64"))
    checks = [
        ("form_id_missing", fid_rule.eq("form_id_missing"), "form_id", "form id is empty", "thiếu mã số phiếu"),
        ("form_id_format", fid_rule.eq("form_id_format"), "form_id",
         "form id '" + fid_txt + "' is not 6 digits", "mã số phiếu '" + fid_txt + "' không gồm 6 chữ số"),
        ("form_id_check_digit", fid_rule.eq("form_id_check_digit"), "form_id",
         "form id '" + fid_txt + "' fails its check digit (mistyped?)",
         "mã số phiếu '" + fid_txt + "' sai chữ số kiểm tra (nhập nhầm?)"),
        ("unit_missing", unit_missing, "unit_id", "unit is empty", "thiếu đơn vị"),
        ("unit_unknown", unit_unknown, "unit_id",
         "unit '" + uid_txt + "' is not in the units registry", "đơn vị '" + uid_txt + "' không có trong danh mục"),
        ("form_unit_type", wrong_type, "unit_id",
         "unit " + _str_of(uid) + " is a " + _str_of(utype) + "; form " + _str_of(form).replace("", "(none)")
         + " is for a " + type_expected,
         "đơn vị " + _str_of(uid) + " là " + _str_of(utype) + "; mẫu phiếu không dành cho loại đơn vị này"),
        ("form_unit_type", off_form, off_col,
         "answers " + off_col.astype("string") + ", which is not on the " + _str_of(utype) + " form",
         "trả lời " + off_col.astype("string") + ", câu không có trong mẫu phiếu của " + _str_of(utype)),
        ("form_id_unit", id_unit, "form_id",
         "form id '" + fid_txt + "' starts with " + code_txt + " but unit " + _str_of(uid) + " has code "
         + expected_code,
         "mã số phiếu '" + fid_txt + "' bắt đầu bằng " + code_txt + " nhưng đơn vị " + _str_of(uid)
         + " có mã " + expected_code),
        ("form_id_not_issued", not_issued, "form_id",
         "form id '" + fid_txt + "' was not issued in the sample", "mã số phiếu '" + fid_txt + "' không có trong mẫu"),
        ("item_value", item_bad, item_col,
         item_col.astype("string") + " = '" + item_val + "': expected a whole number " + low_of + "-" + high_of
         + " or empty" + more,
         item_col.astype("string") + " = '" + item_val + "': phải là số nguyên " + low_of + "-" + high_of
         + " hoặc để trống" + more),
        ("demographic_value", demo_bad, demo_col,
         demo_col.astype("string") + " = '" + demo_val + "': expected one of "
         + demo_col.map(allowed_txt).astype("string").fillna("") + " or empty",
         demo_col.astype("string") + " = '" + demo_val + "': phải là một trong "
         + demo_col.map(allowed_txt).astype("string").fillna("") + " hoặc để trống"),
        ("channel_value", chan_bad, "channel",
         "survey mode '" + _str_of(text["channel"]) + "' is empty or unknown; expected " + ", ".join(SURVEY_MODES),
         "hình thức khảo sát '" + _str_of(text["channel"]) + "' trống hoặc không hợp lệ"),
        ("field_value", field_bad, "field",
         "field '" + _str_of(text["field"]) + "' is unknown; expected " + ", ".join(FIELDS),
         "lĩnh vực '" + _str_of(text["field"]) + "' không hợp lệ"),
        ("survey_date_value", date_bad, "survey_date",
         "survey date '" + _str_of(text["survey_date"]) + "' cannot be read; expected e.g. 2025-10-14 or 14/10/2025",
         "ngày khảo sát '" + _str_of(text["survey_date"]) + "' không đọc được"),
        ("empty_form", empty, "", "no rated question answered", "không trả lời câu hỏi nào"),
    ]
    rule = pd.Series(None, index=text.index, dtype=object)
    column = pd.Series(None, index=text.index, dtype=object)
    reason = pd.Series(None, index=text.index, dtype=object)
    reason_vi = pd.Series(None, index=text.index, dtype=object)
    for name, mask, col, en, vi in checks:
        hit = mask.fillna(False).astype(bool) & rule.isna()
        if not hit.any():
            continue
        rule[hit] = name
        column[hit] = col[hit] if isinstance(col, pd.Series) else col
        reason[hit] = en[hit] if isinstance(en, pd.Series) else en
        reason_vi[hit] = vi[hit] if isinstance(vi, pd.Series) else vi
    return _Checked(typed=typed, raw_form_id=fid, raw_unit_id=text["unit_id"], rule=rule, column=column,
                    reason=reason, reason_vi=reason_vi, item_codes=item_codes, notes=notes)


def _finalize(parts: Sequence[_Checked], feedback_items: Sequence[str]) -> IntakeResult:
    """Concatenate checked files, flag duplicated form ids, split accepted/quarantine, summarize."""
    item_codes = list(dict.fromkeys(c for p in parts for c in p.item_codes))
    typed = pd.concat([p.typed for p in parts], ignore_index=True)
    for col in item_codes:
        if col not in typed.columns:
            typed[col] = np.nan
    rule = pd.concat([p.rule for p in parts], ignore_index=True)
    column = pd.concat([p.column for p in parts], ignore_index=True)
    reason = pd.concat([p.reason for p in parts], ignore_index=True)
    reason_vi = pd.concat([p.reason_vi for p in parts], ignore_index=True)
    raw_fid = pd.concat([p.raw_form_id for p in parts], ignore_index=True)
    raw_uid = pd.concat([p.raw_unit_id for p in parts], ignore_index=True)

    # Duplicated form ids (among ids that are well formed)
    id_ok = ~rule.isin(_FORM_ID_RULES)
    key = typed["form_id"].where(id_ok)
    compare = ["form_id", "unit_id", "field", "channel", *item_codes, *DEMOGRAPHIC_COLUMNS, "education_other",
               "survey_date"]
    digest = pd.Series(pd.util.hash_pandas_object(typed[compare].astype("string"), index=False).to_numpy(),
                       index=typed.index)
    grouped = digest.groupby(key)
    copies = key.map(key.value_counts()).fillna(0)
    versions = grouped.transform("nunique").reindex(typed.index)
    conflict = id_ok & (copies > 1) & (versions > 1)
    exact_later = id_ok & (copies > 1) & (versions == 1) & key.duplicated(keep="first") & key.notna()
    first_file = typed["source_file"].groupby(key).transform("first").reindex(typed.index)
    first_row = typed["source_row"].groupby(key).transform("first").reindex(typed.index)
    fid = _str_of(typed["form_id"])
    where_first = _str_of(first_file) + " row " + _str_of(first_row.astype("Int64"))
    n_copies = _str_of(copies.astype("Int64"))
    dup_rule = pd.Series(None, index=typed.index, dtype=object)
    dup_rule[conflict] = "duplicate_conflict"
    dup_rule[exact_later] = "duplicate_exact"
    take = dup_rule.notna()
    rule = rule.where(~take, dup_rule)
    column = column.where(~take, "form_id")
    located = _str_of(typed["source_file"]) + " row " + _str_of(typed["source_row"])
    all_rows = key.map(located[conflict].groupby(key[conflict]).agg("; ".join)) if conflict.any() else key
    all_rows = _str_of(all_rows.where(conflict))
    en = pd.Series(np.where(conflict, "form id '" + fid + "' appears " + n_copies
                            + " times with different answers (" + all_rows + "); all copies set aside",
                            "exact duplicate of " + where_first + " (form id '" + fid + "')"), index=typed.index)
    vi = pd.Series(np.where(conflict, "mã số phiếu '" + fid + "' xuất hiện " + n_copies
                            + " lần với nội dung khác nhau (" + all_rows + "); loại tất cả các bản",
                            "trùng lặp hoàn toàn với " + where_first + " (mã số phiếu '" + fid + "')"),
                   index=typed.index)
    reason = reason.where(~take, en)
    reason_vi = reason_vi.where(~take, vi)

    bad = rule.notna()
    gave = typed[[c for c in feedback_items if c in typed.columns]].notna().any(axis=1)
    typed["gave_feedback"] = gave.astype(bool)
    order = ["form_id", "unit_id", "unit_type", "form", "field", "channel", *item_codes, *DEMOGRAPHIC_COLUMNS,
             "education_other", "survey_date", "gave_feedback", "source_file", "source_row"]
    accepted = typed.loc[~bad, order].reset_index(drop=True)
    for col in ("form_id", "unit_id", "unit_type", "form", "field", "channel", "education_other", "source_file"):
        accepted[col] = accepted[col].astype("str")
    for col in (*item_codes, *DEMOGRAPHIC_COLUMNS):
        accepted[col] = accepted[col].astype(float)

    unit_reported = typed["unit_id"].fillna(raw_uid).fillna("(missing)").astype(str)
    quarantine = pd.DataFrame({
        "source_file": typed["source_file"].astype(str), "source_row": typed["source_row"],
        "form_id": raw_fid.fillna("").astype(str), "unit_id": unit_reported,
        "column": column.fillna("").astype(str), "rule": rule, "reason": reason, "reason_vi": reason_vi,
    }).loc[bad, QUARANTINE_COLUMNS].reset_index(drop=True)

    summary = (pd.DataFrame({"source_file": typed["source_file"].astype(str), "unit_id": unit_reported,
                             "accepted": ~bad, "quarantined": bad})
               .groupby(["source_file", "unit_id"], sort=True)
               .agg(received=("accepted", "size"), accepted=("accepted", "sum"), quarantined=("quarantined", "sum"))
               .reset_index())
    summary[["received", "accepted", "quarantined"]] = summary[["received", "accepted", "quarantined"]].astype(np.int64)
    summary = summary[SUMMARY_COLUMNS]
    if not ((summary["received"] == summary["accepted"] + summary["quarantined"]).all()
            and len(accepted) + len(quarantine) == len(typed) == int(summary["received"].sum())):
        raise AssertionError("intake lost or double-counted records: received != accepted + quarantined")
    notes = tuple(n for p in parts for n in p.notes)
    return IntakeResult(accepted=accepted, quarantine=quarantine, summary=summary, notes=notes)


def _feedback_items(instruments: Iterable[Instrument | None]) -> list[str]:
    forms = [f for f in instruments if f is not None] or [instrument_for_unit_type("district")]
    return list(dict.fromkeys(c for f in forms
                              for c in f.items.loc[f.items["condition"] == "gave_feedback", "code"]))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------

def validate_responses(responses: pd.DataFrame, units: pd.DataFrame,
                       instrument: Instrument | str | None = None,
                       sample: pd.DataFrame | None = None) -> IntakeResult:
    """Validate returned questionnaires against the instrument and the units registry.

    Parameters
    ----------
    responses
        Output of :func:`read_table` (text cells, canonical headers, ``source_file``/``source_row``),
        or any DataFrame with canonical columns.
    units
        Units registry (``unit_id, code, name_vi, name_en, unit_type, parent_id``).
    instrument
        The form all records were filled on (id or :class:`Instrument`); ``None`` chooses the
        Phụ lục 5 form of each record's unit type (department or district).
    sample
        Optional fielded sample (``form_id``): records whose form id was never issued are
        quarantined (``form_id_not_issued``).

    Returns
    -------
    IntakeResult
        ``accepted``, ``quarantine`` (one reason per record, rules in :data:`RULES` order) and
        ``summary`` (received = accepted + quarantined by file and unit).

    Raises
    ------
    IntakeError
        File-level problems: a required column is missing, or a whole column cannot be read.
    """
    inst = _as_instrument(instrument)
    checked = _check_records(responses, units, inst, sample)
    return _finalize([checked], _feedback_items([inst]))


def intake_files(files: Mapping[str | os.PathLike, Instrument | str | None] | Sequence[str | os.PathLike],
                 units: pd.DataFrame, sample: pd.DataFrame | None = None,
                 column_map: Mapping[str, str] | None = None) -> IntakeResult:
    """Read and validate several response files together (duplicates are found across files).

    ``files`` maps each path to its form (id, :class:`Instrument` or ``None`` = by unit type),
    or is a list of paths (form chosen by unit type).
    """
    spec = dict(files) if isinstance(files, Mapping) else {f: None for f in files}
    if not spec:
        raise IntakeError("no response files given")
    parts, insts = [], []
    for path, form in spec.items():
        inst = _as_instrument(form)
        insts.append(inst)
        parts.append(_check_records(read_table(path, column_map=column_map), units, inst, sample))
    return _finalize(parts, _feedback_items(insts))


def intake_year(data_dir: str | os.PathLike, units: pd.DataFrame | None = None,
                files: Mapping[str, Instrument | str | None] | Sequence[str] | None = None,
                check_sample: bool = True) -> IntakeResult:
    """Take in a year's returned questionnaires from ``data_dir``.

    Parameters
    ----------
    data_dir
        The year's folder (``data/demo`` or ``data/raw/<year>``).
    units
        Units registry; default ``data_dir/units.csv``.
    files
        File name (relative to ``data_dir``) -> form; default :data:`DEFAULT_FILES`
        (``responses_departments.xlsx`` on the department form, ``responses_districts.csv`` on the
        district form).
    check_sample
        When ``data_dir/sample.csv`` exists, quarantine form ids that were never issued.
    """
    data_dir = Path(data_dir)
    if units is None:
        units = load_units(data_dir / "units.csv")
    files = DEFAULT_FILES if files is None else files
    spec = dict(files) if isinstance(files, Mapping) else {f: None for f in files}
    spec = {(data_dir / p if not Path(p).is_absolute() else Path(p)): f for p, f in spec.items()}
    sample = None
    if check_sample and (data_dir / "sample.csv").exists():
        sample = pd.read_csv(data_dir / "sample.csv", dtype={"form_id": str}, usecols=["form_id"])
    return intake_files(spec, units, sample=sample)


def write_quarantine(result: IntakeResult, paths) -> Path:
    """Write ``quarantine/quarantine.csv`` (UTF-8 with BOM so Excel shows Vietnamese) and return its path.

    ``paths`` is a :class:`sipas_lib.config.RunPaths` (or anything with a ``quarantine`` folder).
    """
    folder = Path(paths.quarantine)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "quarantine.csv"
    leak = set(result.quarantine.columns) & set(PERSONAL_COLUMNS)
    if leak:
        raise ValueError(f"quarantine table carries personal columns {sorted(leak)}")
    result.quarantine.to_csv(target, index=False, encoding="utf-8-sig")
    return target


def quarantine_counts(quarantine: pd.DataFrame, by: Sequence[str] = ("rule",)) -> pd.DataFrame:
    """Number of quarantined records by rule (and any other columns), with the rule's description."""
    by = list(by)
    if quarantine.empty:
        return pd.DataFrame(columns=[*by, "n", "description", "description_vi"])
    out = quarantine.groupby(by, sort=False).size().rename("n").reset_index()
    if "rule" in by:
        out["description"] = out["rule"].map({k: v[0] for k, v in RULES.items()})
        out["description_vi"] = out["rule"].map({k: v[1] for k, v in RULES.items()})
    return out.sort_values("n", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Response rates and item non-response
# --------------------------------------------------------------------------------------------

def response_rates(sample: pd.DataFrame, accepted: pd.DataFrame, by: Sequence[str] = ("unit_id",),
                   units: pd.DataFrame | None = None) -> pd.DataFrame:
    """Issued versus returned-and-accepted questionnaires.

    .. math:: RR_g = \\frac{\\#\\{i \\in S_g : i \\text{ returned and accepted}\\}}{\\#S_g}

    where :math:`S_g` are the issued forms (``sample.csv``) of group *g* (AAPOR RR1 with
    eligibility assumed for every issued form; AAPOR Standard Definitions, 2023).

    Parameters
    ----------
    sample
        Issued forms: ``form_id`` and the grouping columns (``unit_id``, ``survey_mode``, ``field`` ...).
    accepted
        Accepted responses (``form_id``).
    by
        Grouping columns of ``sample`` (empty for one overall row). ``unit_type`` is looked up in
        ``units`` when the sample lacks it.

    Returns
    -------
    DataFrame
        ``by..., issued, returned, response_rate``.
    """
    by = list(by)
    if "form_id" not in sample.columns or "form_id" not in accepted.columns:
        raise ValueError("response_rates: both sample and accepted need a form_id column")
    issued = sample.drop_duplicates("form_id").copy()
    if "unit_type" in by and "unit_type" not in issued.columns:
        if units is None:
            raise ValueError("response_rates: by unit_type needs the units table (units=...)")
        issued["unit_type"] = issued["unit_id"].map(units.set_index("unit_id")["unit_type"])
    missing = [c for c in by if c not in issued.columns]
    if missing:
        raise ValueError(f"response_rates: sample has no column(s) {missing}; it has {list(sample.columns)}")
    issued["returned"] = issued["form_id"].astype(str).isin(set(accepted["form_id"].astype(str)))
    if by:
        out = issued.groupby(by, sort=True, dropna=False).agg(issued=("form_id", "size"),
                                                              returned=("returned", "sum")).reset_index()
    else:
        out = pd.DataFrame({"issued": [len(issued)], "returned": [int(issued["returned"].sum())]})
    out["issued"] = out["issued"].astype(np.int64)
    out["returned"] = out["returned"].astype(np.int64)
    out["response_rate"] = out["returned"] / out["issued"]
    return out


def item_nonresponse(accepted: pd.DataFrame, instrument: Instrument | str | Sequence[Instrument | str],
                     by: Sequence[str] | None = None) -> pd.DataFrame:
    """Share of accepted questionnaires that left each item empty.

    .. math:: m_j = \\frac{\\#\\{i \\in B_j : y_{ij} \\text{ missing}\\}}{\\#B_j}

    The base :math:`B_j` is every respondent on the form (``base = "all"``); items answered only
    under a condition of feedback (section V, c15-c18) get a second row over those who gave
    feedback (``base = "gave_feedback"``), where missing means a true item non-response.

    Parameters
    ----------
    accepted
        Accepted responses; when a ``form`` column exists only that form's records count.
    instrument
        One instrument (or id), or several (results stacked).
    by
        Optional grouping columns (e.g. ``["unit_id"]``).

    Returns
    -------
    DataFrame
        ``by..., form, code, block, element, base, n, n_missing, share_missing``.
    """
    if isinstance(instrument, (list, tuple)):
        parts = [item_nonresponse(accepted, i, by) for i in instrument]
        return pd.concat(parts, ignore_index=True)
    inst = _as_instrument(instrument)
    by = list(by or [])
    rows = accepted.loc[accepted["form"] == inst.id] if "form" in accepted.columns else accepted
    codes = [c for c in inst.item_codes if c in rows.columns]
    if not codes:
        raise ValueError(f"item_nonresponse: none of the items of {inst.id} ({inst.item_codes[:3]}...) is a column")
    meta = inst.items.set_index("code").loc[codes, ["block", "element", "condition"]]
    feedback_codes = meta.index[meta["condition"] == "gave_feedback"].tolist()
    if "gave_feedback" in rows.columns:
        gave = rows["gave_feedback"].astype(bool)
    else:
        gave = rows[feedback_codes].notna().any(axis=1) if feedback_codes else pd.Series(False, index=rows.index)
    pieces = []
    for base, frame, cols in (("all", rows, codes), ("gave_feedback", rows.loc[gave], feedback_codes)):
        if not cols:
            continue
        miss = frame[cols].isna()
        if by:
            keys = [frame[b] for b in by]
            n_missing = miss.groupby(keys).sum()
            n = miss.groupby(keys).size()
            long = n_missing.stack().rename("n_missing").reset_index()
            long.columns = [*by, "code", "n_missing"]
            long = long.merge(n.rename("n").reset_index(), on=by)
        else:
            long = pd.DataFrame({"code": cols, "n_missing": miss.sum().to_numpy(), "n": len(frame)})
        long["base"] = base
        pieces.append(long)
    out = pd.concat(pieces, ignore_index=True)
    out["form"] = inst.id
    out = out.merge(meta[["block", "element"]].reset_index(), on="code", how="left")
    out["n"] = out["n"].astype(np.int64)
    out["n_missing"] = out["n_missing"].astype(np.int64)
    out["share_missing"] = np.where(out["n"] > 0, out["n_missing"] / out["n"].where(out["n"] > 0, 1), np.nan)
    return out[[*by, "form", "code", "block", "element", "base", "n", "n_missing", "share_missing"]]


# --------------------------------------------------------------------------------------------
# Report texts of the intake / data-quality notebook (registered with sipas_lib.reporting)
# --------------------------------------------------------------------------------------------

#: Texts of ``notebooks/20_intake_quality.ipynb``; register with
#: ``reporting.register_labels(REPORT_LABELS)``. Placeholders are filled by ``reporting.narrate``.
REPORT_LABELS: dict[str, dict[str, str]] = load_texts("intake")
