"""Fieldwork intake: read returned questionnaires, validate them, quarantine bad records.

Returned questionnaires arrive as CSV (UTF-8, with or without BOM), Excel (``.xlsx``) or Parquet,
with canonical headers (``form_id, unit_id, c01 ...``) or the Vietnamese headers of the paper
form (``Mã số phiếu, Đơn vị, Câu 1 ...``; see :data:`VIETNAMESE_HEADERS`). Submission exports of
ODK Central (CSV) and KoboToolbox (CSV, XLSX) of the XLSForm that ``sipas form export`` writes are
read the same way: group-prefixed headers (``E1-c01``, ``E1/c01``) map to their question's name,
choice values are the codes, the tools' metadata columns are dropped — except the reviewers'
decision (ODK Central ``ReviewState``, KoboToolbox ``_validation_status``; see *Review states*
below). Intake works in five steps:

1. :func:`read_table` reads a file *read-only* (raw files are never modified) and maps its
   headers to canonical names. Every cell stays text, stored once per distinct value (a
   categorical column), so a file of a million rows takes little more memory than the file; each
   row keeps its ``source_file`` and ``source_row`` (the row number a spreadsheet user sees). In
   an Excel workbook the data sheet and the header row are found (an instructions sheet first,
   title rows above the header) unless ``sheet``/``header_row`` are given; which were read is
   reported. CSV goes through the one strict reader of the year's files
   (:func:`sipas_lib.inputs.read_delimited`), or a streaming path with the same rules for large
   well-formed files.
2. File-level problems raise :class:`IntakeError`, whose message names the file, the row and the
   column and says what was expected: unknown extension, empty file, unreadable Excel, answer
   cells holding formulas without saved values, missing required column, a column of dates none
   of which can be read, two headers mapping to one column.
3. Rows that are not questionnaires — a total row ("Tổng cộng", "Total"), or a row with neither
   form id nor answer (an empty, pre-numbered template row) — are set aside in
   ``IntakeResult.ignored`` and never counted as received.
4. Record-level problems never stop intake: the record goes to the quarantine table with one
   reason (the first rule it breaks, in the order of :data:`RULES`), everything else is accepted.
   The rules run once per distinct cell value and are spread to the rows with integer codes.
5. Problems of the survey date only (outside the survey's ``year``, or ambiguous day/month in a
   file that mixes day-first and month-first dates) keep the answers: the date is set to missing
   and listed in ``IntakeResult.date_problems``, so it never stretches the fieldwork period.

Wrong values are reported by kind ("text where a whole number 1-5 was expected", "what looks
like a phone number (not shown)"); a value is quoted only when it cannot identify anyone (a
short number, a short code, a date). The quarantine file is written with
:func:`sipas_lib.spreadsheet.write_csv` (formula cells neutralised).

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

Review states of ODK Central and KoboToolbox
--------------------------------------------
Both tools let a reviewer mark each submission; the export carries the mark (:data:`REVIEW_STATES`).
Documented decision:

* *rejected* (ODK Central ``rejected``; KoboToolbox ``validation_status_not_approved`` / "Not
  Approved") is a decision that the record is not valid data: it is quarantined
  (``review_rejected``, before every other rule) and is not a copy in the duplicate check, so a
  corrected re-submission of the same form id is accepted rather than set aside as a conflict;
* *flagged* (ODK Central ``hasIssues``; KoboToolbox ``validation_status_on_hold`` / "On Hold")
  is a question still open, not a decision: the record is accepted and counted in a note naming
  its rows. Dropping it would make the results depend on how far the review has got and would
  silently lose real respondents of the units whose reviewers flag most; the note tells the
  team what to settle before the final run (a later export carries the decision);
* not reviewed (empty, ``received``), ``approved`` and ``edited`` (the export holds the edited
  values) are accepted;
* any other value is quarantined (``review_state_value``): nobody can tell whether it was rejected.

Item-level missing values are allowed (scattered missing items are not a reason to quarantine);
a form with no rated item answered at all is quarantined (``empty_form``). Section V (c15-c18) is
answered only by respondents who gave feedback: ``gave_feedback`` = any of those items answered.

Personal data (``enumerator_name``, ``enumerator_phone``, ``enumerator_address``) and columns
intake does not know are dropped; they never appear in the accepted or quarantine tables. The
enumerator is kept only as a code, ``enumerator_code`` (E001, E002 … by first appearance among the
accepted forms of the run; names compared ignoring case, spacing and Unicode form), beside the optional
``collection_point`` and ``return_date`` (:data:`FIELDWORK_COLUMNS`), for the fabrication screening
(:mod:`sipas_lib.screening`). An unreadable return date is left empty and listed in ``date_problems``.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import os
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sipas_lib.instrument import FORM_OF_UNIT_TYPE, Instrument, instrument_for_unit_type, load_instrument
from sipas_lib.formids import check_form_ids, unit_code_of
from sipas_lib.config import FIELDS, SURVEY_MODES
from sipas_lib.spreadsheet import write_csv
from sipas_lib.texts import load_texts
from sipas_lib.units import load_units, validate_units

__all__ = [
    "VIETNAMESE_HEADERS",
    "HEADER_ALIASES",
    "PERSONAL_COLUMNS",
    "RULES",
    "REVIEW_STATES",
    "REVIEW_RULES",
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
    "parse_date_texts",
    "safe_value_descriptions",
    "spread_to_rows",
    "normalize_label",
    "is_in",
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
    "Điểm thu phiếu": "collection_point",
    "Ngày thu phiếu": "return_date",
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
    # the reviewers' decision in a form tool's submission export (see REVIEW_STATES)
    "ReviewState": "review_state",  # ODK Central
    "_validation_status": "review_state",  # KoboToolbox
}

PERSONAL_COLUMNS: tuple[str, ...] = ("enumerator_name", "enumerator_phone", "enumerator_address")
#: Every canonical column name a header can map to.
_CANONICAL = frozenset(VIETNAMESE_HEADERS.values()) | frozenset(HEADER_ALIASES.values())
DEMOGRAPHIC_COLUMNS: tuple[str, ...] = ("gender", "age_group", "education")
REQUIRED_COLUMNS: tuple[str, ...] = ("form_id", "unit_id", "channel")
OPTIONAL_COLUMNS: tuple[str, ...] = ("field", *DEMOGRAPHIC_COLUMNS, "education_other", "survey_date", "review_state",
                                     *("collection_point", "return_date"))
#: Fieldwork columns kept for the integrity screening (sipas_lib.screening): where and when the form came
#: back (not personal) and the enumerator as a code (E001… by first appearance among the accepted forms of
#: the run, from ``enumerator_name``; the name itself never leaves intake).
FIELDWORK_COLUMNS: tuple[str, ...] = ("collection_point", "return_date", "enumerator_code")

#: Review states of form-tool exports (normalized like any label: case, ``_`` and spaces ignored) ->
#: what intake does: ``rejected`` (quarantined), ``flagged`` (accepted, counted in a note), ``accepted``.
#: ODK Central ``ReviewState``: received (or empty), hasIssues, edited, approved, rejected;
#: KoboToolbox ``_validation_status``: its uid (``validation_status_approved`` …) or its label.
REVIEW_STATES: dict[str, str] = {
    "received": "accepted", "approved": "accepted", "edited": "accepted",
    "hasIssues": "flagged", "has issues": "flagged", "rejected": "rejected",
    "validation_status_approved": "accepted", "validation_status_not_approved": "rejected",
    "validation_status_on_hold": "flagged", "not approved": "rejected", "on hold": "flagged",
}
#: Rules of the reviewers' decision (checked first; see the module's *Review states*).
REVIEW_RULES: tuple[str, ...] = ("review_rejected", "review_state_value")

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
    "review_rejected": ("rejected by the reviewers in the form tool (ODK Central 'rejected', KoboToolbox "
                        "'not approved')",
                        "bị người duyệt từ chối trên công cụ thu phiếu (ODK Central 'rejected', KoboToolbox "
                        "'not approved')"),
    "review_state_value": ("review state of the form tool not recognised", "trạng thái duyệt phiếu không xác định"),
    "form_id_missing": ("form id is empty", "thiếu mã số phiếu"),
    "form_id_format": ("form id is not 6 or 10 digits", "mã số phiếu không gồm 6 hoặc 10 chữ số"),
    "form_id_check_digit": ("form id fails its check digit (mistyped?)", "mã số phiếu sai chữ số kiểm tra"),
    "duplicate_conflict": ("form id appears more than once with different answers; all copies set aside",
                           "mã số phiếu trùng, nội dung khác nhau"),
    "duplicate_exact": ("exact duplicate of an earlier record", "phiếu trùng lặp hoàn toàn"),
    "unit_missing": ("unit is empty", "thiếu đơn vị"),
    "unit_unknown": ("unit is not in the units registry", "đơn vị không có trong danh mục"),
    "form_unit_type": ("questionnaire form does not fit the unit type", "mẫu phiếu không phù hợp loại đơn vị"),
    "form_id_unit": ("form id does not belong to the unit (its unit code)",
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
    "responses_communes.csv": "hanoi_pl5_commune",  # years after the July 2025 reform (no districts)
}
#: Of the local-government files, a year has at least one (districts before the reform, communes after).
_LOCAL_FILES = ("responses_districts.csv", "responses_communes.csv")
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
        File-level remarks that did not stop intake (columns dropped because unknown, rows that
        are not questionnaires, survey dates set aside, which sheet and header row were read).
    ignored
        One row per spreadsheet row that is not a questionnaire and was not counted as received:
        ``source_file, source_row, rule, reason, reason_vi`` (rules in :data:`IGNORED_RULES`: a
        total row, or a row with no form id and no answer, e.g. a pre-numbered empty template).
    date_problems
        One row per record whose survey date was set to missing while its answers were kept:
        ``source_file, source_row, form_id, unit_id, rule, reason, reason_vi`` (rules in
        :data:`DATE_RULES`: outside the survey's year, or ambiguous day/month). These records are
        in ``accepted`` (or in ``quarantine`` for another reason) with ``survey_date`` missing, so
        they never stretch the fieldwork period.
    sources
        One row per file read: ``source_file, sheet, header_row, rows_read, ignored_rows,
        received`` (``sheet`` is empty for CSV/Parquet; ``rows_read`` = ``ignored_rows`` + ``received``).
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    summary: pd.DataFrame
    notes: tuple[str, ...] = field(default=())
    ignored: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=IGNORED_COLUMNS))
    date_problems: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DATE_PROBLEM_COLUMNS))
    sources: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SOURCE_COLUMNS))


# --------------------------------------------------------------------------------------------
# Text columns as codes: every check runs once per distinct value, then is spread to the rows
# --------------------------------------------------------------------------------------------

#: A whole number as Excel may write it in a text cell ('3.0', '-2.00'): read as the number ('3', '-2').
_EXCEL_WHOLE = re.compile(r"^(-?\d+)\.0+$")


def _normalize_codes(codes: np.ndarray, values: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Normalize the distinct values of a coded text column (strip; '' -> missing; Excel's '3.0' -> '3').

    ``codes`` index ``values`` (-1 = missing). Returns new codes (the same array when nothing
    changes) and distinct values, still coded.

    The few distinct values are worked on in Arrow and Python directly: pandas' string methods cost
    about a millisecond each whatever the length, and intake calls this for every column of every
    file. The result is what ``Series.map(str).str.strip().str.replace(r"^(-?\\d+)\\.0+$", r"\\1")``
    gives: Arrow's whitespace trim, and Python's ``re`` for the pattern (pandas' own guarantee).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = np.asarray(values, dtype=object)
    present = ~pd.isna(values)
    trimmed = pc.utf8_trim_whitespace(pa.array([str(v) for v in values[present]], type=pa.large_string()))
    # only a text ending in '0' with a '.' can be an Excel whole number written '3.0'
    maybe_whole = pc.and_(pc.ends_with(trimmed, "0"), pc.match_substring(trimmed, ".")).to_numpy(zero_copy_only=False)
    texts = np.asarray(trimmed.to_pylist(), dtype=object)
    texts[maybe_whole] = [_EXCEL_WHOLE.sub(r"\1", t) for t in texts[maybe_whole]]
    text = np.full(len(values), None, dtype=object)
    text[present] = texts
    text[text == ""] = None
    if present.all() and (text == values).all() and len(set(text)) == len(text):
        return codes, values  # already normalized (e.g. read by read_table): no copy of the codes
    new_codes, uniques = pd.factorize(text, use_na_sentinel=True)
    remap = np.append(new_codes, -1).astype(np.int32)  # old code -1 (missing) indexes the appended -1
    return remap[codes], np.asarray(uniques, dtype=object)


def _coded(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A text column as (codes, distinct normalized values); works on categorical and plain columns."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _normalize_codes(series.cat.codes.to_numpy(), series.cat.categories.to_numpy(dtype=object))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return _normalize_codes(codes.astype(np.int32), np.asarray(uniques, dtype=object))


def is_in(values: pd.Series | np.ndarray, allowed: pd.Series | np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is among ``allowed``: ``Series.isin`` through Arrow's hash lookup.

    pandas' ``isin`` on a string column turns every allowed value into an Arrow scalar in Python
    (about 4 s for 600,000 form ids); ``pyarrow.compute.is_in`` hashes them in C (about 0.2 s).
    Missing matches missing, as in pandas. Columns that are not text take pandas' ``isin``.

    Examples
    --------
    >>> is_in(pd.Series(["1000160", "1000178", None]), pd.Series(["1000178", None])).tolist()
    [False, True, True]
    """
    left, right = pd.Series(values), pd.Series(allowed)
    if not (pd.api.types.is_string_dtype(left) and pd.api.types.is_string_dtype(right)):
        return left.isin(right).to_numpy(dtype=bool)
    import pyarrow as pa
    import pyarrow.compute as pc

    left_a = pa.array(left, from_pandas=True).cast(pa.large_string())
    right_a = pa.array(right, from_pandas=True).cast(pa.large_string())
    return pc.is_in(left_a, value_set=right_a).to_numpy(zero_copy_only=False)


def _categorical(codes: np.ndarray, values: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.Index(values, dtype=object).astype("str"))


def spread_to_rows(per_value: np.ndarray, codes: np.ndarray, fill: object) -> np.ndarray:
    """Values per row from values per distinct value (``fill`` where the cell is missing)."""
    per_value = np.asarray(per_value)
    out = np.empty(len(per_value) + 1, dtype=per_value.dtype)
    out[:-1] = per_value
    out[-1] = fill
    return out[codes]


@dataclass(frozen=True)
class _Coded:
    """A typed column kept as codes into its distinct values (one value per distinct cell text).

    Intake never spreads a column to one value per row before it must: the accepted table is built
    from the rows it keeps, duplicates are compared through hashes of the distinct values.
    """

    codes: np.ndarray   # per row, -1 = missing
    values: np.ndarray  # per distinct cell text: the typed value (NaN/NaT/None where not usable)
    fill: object

    def take(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return spread_to_rows(self.values, self.codes[rows], self.fill)

    def present(self) -> np.ndarray:
        """Rows whose typed value is not missing."""
        return spread_to_rows(~pd.isna(self.values), self.codes, False)

    def hashes(self, rows: np.ndarray) -> np.ndarray:
        """64-bit hash of each row's value (equal values hash equally in every file)."""
        per_value = pd.util.hash_array(pd.Series(self.values).to_numpy()) if len(self.values) else \
            np.zeros(0, dtype=np.uint64)
        return spread_to_rows(per_value, self.codes[rows], np.uint64(0))


# --------------------------------------------------------------------------------------------
# Personal data: a wrong value is described by its kind; only values that cannot identify anyone
# (short numbers, short codes, dates) are shown
# --------------------------------------------------------------------------------------------

_SHORT_NUMBER = re.compile(r"[+-]?\d{1,4}(?:[.,]\d{1,3})?")
_SHORT_CODE = re.compile(r"[A-Za-z]{0,3}\d{1,8}[A-Za-z0-9]{0,4}")
_DATE_SHAPE = re.compile(r"\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")

#: Kind of a value that is not shown: (en, vi).
VALUE_KINDS: dict[str, tuple[str, str]] = {
    "phone": ("what looks like a phone number (not shown)", "giá trị giống số điện thoại (không hiển thị)"),
    "email": ("what looks like an e-mail address (not shown)", "giá trị giống địa chỉ thư điện tử (không hiển thị)"),
    "long_number": ("a long number (not shown)", "một số dài (không hiển thị)"),
    "text": ("text (not shown)", "chữ (không hiển thị)"),
    "formula": ("a spreadsheet formula (not shown)", "một công thức bảng tính (không hiển thị)"),
}


def safe_value_descriptions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct value: ``shown`` (the value quoted, or ``""``), its kind in English and Vietnamese.

    A value is shown only when it cannot identify a person: a short number (``'7'``, ``'3.5'``),
    a short code (``'S99'``, ``'1000160'``) or a date. Anything else is described by its kind
    (phone number, e-mail address, long number, text) and never echoed, because a wrong value in
    an answer cell is often personal data typed into the wrong column.
    """
    from sipas_lib.privacy import EMAIL_PATTERN, PHONE_PATTERN

    shown = np.empty(len(values), dtype=object)
    kind_en = np.empty(len(values), dtype=object)
    kind_vi = np.empty(len(values), dtype=object)
    for k, raw in enumerate(values):
        v = str(raw)
        if EMAIL_PATTERN.search(v):
            kind = "email"
        elif PHONE_PATTERN.search(v):
            kind = "phone"
        elif v.startswith(("=", "+", "-", "@")) and not _SHORT_NUMBER.fullmatch(v):
            kind = "formula"
        elif (_SHORT_NUMBER.fullmatch(v) or _SHORT_CODE.fullmatch(v) or _DATE_SHAPE.fullmatch(v)) \
                and sum(c.isdigit() for c in v) <= 8:
            shown[k], kind_en[k], kind_vi[k] = f"'{v}'", f"'{v}'", f"'{v}'"
            continue
        elif re.fullmatch(r"[\d .,\-+()]+", v):
            kind = "long_number"
        else:
            kind = "text"
        shown[k] = ""
        kind_en[k], kind_vi[k] = VALUE_KINDS[kind]
    return shown, kind_en, kind_vi


def _example(values: pd.Series | np.ndarray) -> str:
    """One offending value for a file-level message: the value if harmless, else its kind."""
    first = np.asarray([str(np.asarray(values, dtype=object)[0])], dtype=object)
    return safe_value_descriptions(first)[1][0]


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


def normalize_label(text: str) -> str:
    """Scalar version of :func:`_norm_values`."""
    t = unicodedata.normalize("NFC", str(text)).casefold()
    return re.sub(r"\s+", " ", re.sub(r"[\-–—,/;_.()]", " ", t)).strip()


def _norm_array(values: np.ndarray) -> np.ndarray:
    """:func:`normalize_label` over distinct values (object array)."""
    return np.array([normalize_label(v) for v in values], dtype=object)


#: Group separators in the headers of form-tool exports: ODK Central writes ``E1-c01``,
#: KoboToolbox ``E1/c01`` (for a question ``c01`` in a group ``E1``; see :mod:`sipas_lib.xlsform`).
_GROUP_PATH = re.compile(r"[/-]")


def _canonical_header(header: object, lookup: Mapping[str, str]) -> str | None:
    """The canonical column a header means, or ``None``.

    A header is looked up whole first (Vietnamese headers may hold ``-`` or ``/``); failing that,
    the last part of a group path counts when it is itself a canonical column name, so an ODK
    Central or KoboToolbox submission export of the XLSForm maps question by question. Their
    metadata columns (``meta-instanceID``, ``KEY``, ``SubmitterName``, ``_uuid``,
    ``_submission_time``, ``_submitted_by`` …) map to nothing and are dropped like any unknown
    column: none of them reaches the results (``SubmitterName``/``_submitted_by`` are personal).
    """
    key = normalize_header(header)
    if key in lookup:
        return lookup[key]
    last = _GROUP_PATH.split(key)[-1]
    if last != key and lookup.get(last) in _CANONICAL and normalize_header(lookup[last]) == last:
        return lookup[last]
    return None


def _header_lookup(column_map: Mapping[str, str] | None = None) -> dict[str, str]:
    canonical = set(VIETNAMESE_HEADERS.values()) | set(HEADER_ALIASES.values())
    lookup = {normalize_header(c): c for c in canonical}
    for table in (HEADER_ALIASES, VIETNAMESE_HEADERS, dict(column_map or {})):
        lookup.update({normalize_header(k): v for k, v in table.items()})
    return lookup


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
    lookup = _header_lookup(column_map)
    return {col: _canonical_header(col, lookup) or str(col) for col in columns}


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


class _StrictReaderNeeded(Exception):
    """The fast CSV path met something only the strict reader (:func:`sipas_lib.inputs.read_delimited`) handles."""


_CHUNK = 1 << 20


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a response CSV: (columns as coded text, spreadsheet row number of each record).

    One reader for every CSV of a year: :func:`sipas_lib.inputs.read_delimited` (UTF-8 only,
    separator detection, a message naming the row for every problem). Because that reader holds
    every cell as a Python string (about 20x the file), a large well-formed file takes a fast path
    with the same rules: the file is checked to be UTF-8 in 1 MB pieces, the separator detected by
    the strict reader's own function, then parsed by Arrow in 1 MB blocks, each column stored as a
    dictionary of distinct values (peak about 3x the file). Anything the fast path does not handle
    exactly (a header with spaces, blanks or repeats; a line break inside a quoted value; a ragged
    row; not UTF-8) goes to the strict reader, whose message is the one raised.
    """
    from sipas_lib import inputs

    try:
        return _read_csv_fast(path, inputs)
    except _StrictReaderNeeded:
        pass
    try:
        table = inputs.read_delimited(path)
    except inputs.InputError as exc:
        raise IntakeError(str(exc)) from None
    rows = table.index.to_numpy(dtype=np.int64)
    return table.reset_index(drop=True), rows


def _read_csv_fast(path: Path, inputs) -> tuple[pd.DataFrame, np.ndarray]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines, head, last = 0, b"", b""
    with open(path, "rb") as fh:  # read-only; checks UTF-8 and counts lines without holding the file
        while chunk := fh.read(_CHUNK):
            if len(head) < 65536:
                head += chunk[:65536]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                raise _StrictReaderNeeded from None
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _StrictReaderNeeded from None
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    if b"\x00" in head or not head.strip():
        raise _StrictReaderNeeded
    text = head.decode("utf-8", errors="ignore")
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the piece may stop inside a line
    if not lines or not lines[0].strip():
        raise _StrictReaderNeeded
    sep = inputs._detect_separator(path, "\n".join(lines), None)
    header = next(csv.reader([lines[0]], delimiter=sep))
    if any(h != h.strip() or not h for h in header) or len(set(header)) != len(header):
        raise _StrictReaderNeeded
    records = 0
    columns: dict[str, list] = {h: [] for h in header}

    def ragged(row) -> str:
        return "error"  # the strict reader names the row (the parser's message would echo its content)

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_CHUNK, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep, ignore_empty_lines=False, newlines_in_values=True,
                                             invalid_row_handler=ragged),
            convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
        for batch in reader:
            records += batch.num_rows
            for name, column in zip(batch.schema.names, batch.columns):
                columns[name].append(column.dictionary_encode())
    except (pa.ArrowInvalid, _StrictReaderNeeded):
        raise _StrictReaderNeeded from None
    lines_in_file = newlines + (0 if last in (b"\n", b"") else 1)
    if records + 1 != lines_in_file:  # a quoted value spans lines: record != line, let the strict reader count
        raise _StrictReaderNeeded
    out = {}
    for name in header:
        chunked = pa.chunked_array(columns.pop(name), type=pa.dictionary(pa.int32(), pa.string()))
        frame_col = chunked.unify_dictionaries().combine_chunks() if chunked.num_chunks else None
        if frame_col is None:
            out[name] = pd.Categorical.from_codes(np.zeros(0, dtype=np.int8), categories=pd.Index([], dtype="str"))
            continue
        codes = frame_col.indices.to_numpy(zero_copy_only=False)
        cats = np.asarray(frame_col.dictionary.to_pylist(), dtype=object)
        out[name] = _categorical(*_normalize_codes(codes, cats))
    table = pd.DataFrame(out)
    pa.default_memory_pool().release_unused()  # the parser's blocks: give them back before validation
    return table, np.arange(2, records + 2, dtype=np.int64)


def _header_score(row: Sequence[object], lookup: Mapping[str, str]) -> int:
    """How many cells of a row are known headers (Vietnamese, alias or canonical)."""
    return sum(1 for v in row if v is not None and _canonical_header(v, lookup) is not None)


#: A header row has at least this many known headers.
_MIN_HEADER_HITS = 3
#: Rows searched for the header at the top of each sheet.
_HEADER_SEARCH_ROWS = 30


def _read_xlsx(path: Path, sheet: str | int | None, header_row: int | None,
               column_map: Mapping[str, str] | None) -> tuple[pd.DataFrame, np.ndarray, str, int]:
    """Read the data sheet of a workbook: (table, row numbers, sheet name, header row).

    Without ``sheet`` the data sheet is the one whose top rows hold the most known headers (an
    instructions sheet first in the workbook is skipped); without ``header_row`` the header is the
    first of the top :data:`_HEADER_SEARCH_ROWS` rows with the most known headers (title rows above
    it are skipped). Answer cells that hold a formula whose value was never calculated and saved
    raise :class:`IntakeError` naming the cells: they are not blank answers.
    """
    wb = _Workbook(path)
    lookup = _header_lookup(column_map)
    try:
        names = wb.names
        if sheet is None:
            candidates = list(range(len(names)))
        elif isinstance(sheet, int):
            if not 0 <= sheet < len(names):
                raise IntakeError(f"{path}: has no sheet number {sheet}; sheets are {names}")
            candidates = [sheet]
        else:
            if sheet not in names:
                raise IntakeError(f"{path}: has no sheet {sheet!r}; sheets are {names}")
            candidates = [names.index(sheet)]
        best = None  # (score, -sheet position, -row, sheet position, header row)
        for k in candidates:
            top = wb.rows(k, _HEADER_SEARCH_ROWS)
            if header_row:
                score = _header_score(top[header_row - 1], lookup) if len(top) >= header_row else 0
                found = (score, -k, -header_row, k, header_row)
            else:
                scores = [_header_score(r, lookup) for r in top] or [0]
                r = int(np.argmax(scores))
                found = (scores[r], -k, -(r + 1), k, r + 1)
            if best is None or found[:3] > best[:3]:
                best = found
        position = best[3]
        head_row = best[4] if best[0] >= _MIN_HEADER_HITS or header_row else (header_row or 1)
        if best[0] < _MIN_HEADER_HITS and sheet is None and not header_row:
            position = 0  # nothing looks like a header: read the first sheet from row 1, the column check says why
        rows = wb.rows(position)[head_row - 1:]
        title = names[position]
    finally:
        wb.close()
    if not rows or all(all(v is None for v in r) for r in rows):
        raise IntakeError(f"{path}: the sheet {title!r} is empty from row {head_row}; expected a header row and records")
    width = max(len(r) for r in rows)
    header = list(rows[0]) + [None] * (width - len(rows[0]))
    body = [tuple(r) + (None,) * (width - len(r)) for r in rows[1:]]
    # Trailing columns with neither header nor data are formatting leftovers.
    keep = [j for j in range(width) if header[j] is not None or any(r[j] is not None for r in body)]
    cols = [header[j] if header[j] is not None else f"(column {_excel_letter(j)} without header)" for j in keep]
    table = pd.DataFrame([[r[j] for j in keep] for r in body], columns=cols, dtype=object)
    known = [j for j, c in zip(keep, cols) if normalize_header(c) in lookup]
    _check_formulas(path, title, head_row, known, body)
    return table, np.arange(head_row + 1, head_row + 1 + len(body), dtype=np.int64), title, head_row


class _Workbook:
    """The sheets of an ``.xlsx`` read-only: names, and rows from cell A1 with each cell as openpyxl reads it.

    Read with calamine (Rust): ~20x faster than openpyxl's read-only mode (~0.1 s against ~1.9 s
    for 3,000 rows x 30 columns). Its cells are mapped to openpyxl's values so that every later
    step sees the same cells: an empty cell (``""``) is ``None``, a whole number an ``int``
    (calamine gives every number as a float; beyond 2**53, where a spreadsheet holds no exact whole
    number, it stays a float), a date cell a ``datetime`` at midnight. A workbook
    with error cells (``#N/A``, which calamine reads as empty, openpyxl as the text that intake
    reports) is read with openpyxl.
    """

    def __init__(self, path: Path) -> None:
        from openpyxl.utils.exceptions import InvalidFileException
        from python_calamine import CalamineError, CalamineWorkbook

        try:
            if _has_error_cells(path):
                from openpyxl import load_workbook

                self._openpyxl = load_workbook(path, read_only=True, data_only=True)
                self.names = self._openpyxl.sheetnames
            else:
                self._openpyxl = None
                self._calamine = CalamineWorkbook.from_path(str(path))
                self._sheets: dict = {}
                self.names = self._calamine.sheet_names
        except (CalamineError, zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
            raise IntakeError(f"{path}: not a valid .xlsx file ({type(exc).__name__}: {exc}); open it in Excel "
                              "and save it again as 'Excel Workbook (.xlsx)' or as 'CSV UTF-8'") from exc

    def rows(self, position: int, nrows: int | None = None) -> list[tuple]:
        """The first ``nrows`` rows (all without it) of the sheet at ``position``."""
        if self._openpyxl is not None:
            return list(self._openpyxl.worksheets[position].iter_rows(max_row=nrows, values_only=True))
        if position not in self._sheets:  # calamine parses a whole sheet when it is opened: once
            self._sheets[position] = self._calamine.get_sheet_by_index(position)
        rows = self._sheets[position].to_python(skip_empty_area=False, nrows=nrows)
        return [tuple(_OPENPYXL_CELL.get(type(v), _same)(v) for v in row) for row in rows]

    def close(self) -> None:
        (self._openpyxl or self._calamine).close()


def _same(value: object) -> object:
    return value


def _whole_as_int(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < 2 ** 53 else value


#: calamine cell type -> the conversion to the value openpyxl reads for the same cell.
_OPENPYXL_CELL = {
    str: lambda v: v if v != "" else None,
    float: _whole_as_int,
    datetime.date: lambda v: datetime.datetime(v.year, v.month, v.day),
}


def _check_formulas(path: Path, title: str, head_row: int, known: Sequence[int], body: Sequence[tuple]) -> None:
    """Raise when answer cells hold formulas without a saved value (openpyxl reads them as empty)."""
    from openpyxl import load_workbook

    empty = np.array([[r[j] is None for j in known] for r in body], dtype=bool).reshape(len(body), len(known))
    if not empty.any() or not _has_formula_cells(path):
        return
    wb = load_workbook(path, read_only=True, data_only=False)
    try:
        ws = wb[title]
        cells = []
        for i, row in enumerate(ws.iter_rows(min_row=head_row + 1, max_row=head_row + len(body), values_only=True)):
            if not empty[i].any():
                continue
            for jj, j in enumerate(known):
                if empty[i, jj] and j < len(row) and isinstance(row[j], str) and row[j].startswith("="):
                    cells.append((head_row + 1 + i, j))
    finally:
        wb.close()
    if cells:
        r0, r1 = min(c[0] for c in cells), max(c[0] for c in cells)
        c0, c1 = min(c[1] for c in cells), max(c[1] for c in cells)
        span = f"{_excel_letter(c0)}{r0}:{_excel_letter(c1)}{r1}"
        raise IntakeError(f"{path}: sheet {title!r}, cells {span}: {len(cells)} answer cell(s) hold formulas whose "
                          "values were never calculated and saved (the workbook was written by a program, not "
                          "saved by Excel); they are not blank answers. Open the file in Excel and save it, or "
                          "paste the answers as values")


#: A formula cell of a worksheet part (SpreadsheetML ``<f>``, with or without a namespace prefix).
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


def _has_formula_cells(path: Path) -> bool:
    """True when some worksheet of the workbook holds a formula (an ``<f>`` element in its XML).

    A cheap scan of the zipped sheet parts (~0.5 s for 55,000 rows x 30 columns) that spares the
    second, formula-mode pass of openpyxl over the whole sheet (~30 s) when no cell has a formula,
    as in every workbook exported from a survey tool; a workbook with formulas gets the full check.
    """
    return _sheets_match(path, _FORMULA_TAG)


#: An error cell of a worksheet part (``<c ... t="e">``: ``#N/A``, ``#DIV/0!``, ...).
_ERROR_CELL = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?c\s[^>]*\bt=[\"']e[\"']")


def _has_error_cells(path: Path) -> bool:
    """True when some worksheet of the workbook holds an error cell (``#N/A``): a scan as :func:`_has_formula_cells`."""
    return _sheets_match(path, _ERROR_CELL)


def _sheets_match(path: Path, pattern: re.Pattern) -> bool:
    """True when ``pattern`` occurs in a worksheet part of the zipped workbook (read in 1 MiB chunks)."""
    if not zipfile.is_zipfile(path):
        return False  # not a workbook: the reader says so
    with zipfile.ZipFile(path) as book:
        for name in book.namelist():
            if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                continue
            with book.open(name) as part:
                tail = b""
                while chunk := part.read(1 << 20):
                    if pattern.search(tail + chunk):
                        return True
                    tail = chunk[-256:]  # a tag cut between two chunks
    return False


def _excel_letter(j: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(j + 1)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise IntakeError(f"{path}: not a valid Parquet file ({type(exc).__name__}: {exc})") from exc


def read_table(path: str | os.PathLike, column_map: Mapping[str, str] | None = None,
               sheet: str | int | None = None, header_row: int | None = None) -> pd.DataFrame:
    """Read a response file (CSV, XLSX or Parquet) read-only, as text, with canonical headers.

    Parameters
    ----------
    path
        ``.csv`` (UTF-8 with or without BOM; ``,`` ``;`` or tab separated), ``.xlsx`` or ``.parquet``.
    column_map
        Extra header -> canonical column mapping, on top of :data:`VIETNAMESE_HEADERS`.
    sheet
        Excel sheet name or 0-based number; ``None`` (or ``""``) finds the data sheet: the one whose
        top rows hold the most known headers (an instructions sheet first is skipped).
    header_row
        Excel row (1-based, as Excel shows it) holding the header; ``None`` (or 0) finds it among
        the top 30 rows (title rows above the header are skipped).

    Returns
    -------
    DataFrame
        Every cell as text (``category`` dtype of text: one copy of each distinct value; empty
        cells are missing), canonical headers, plus ``source_file`` (file name) and
        ``source_row`` (row as a spreadsheet user sees it: header = row 1 in a CSV). Blank rows
        are dropped but keep their numbering. ``attrs``: ``headers`` (canonical name -> the
        file's own header), ``path``, ``sheet`` and ``header_row`` (which sheet and row were read).

    Raises
    ------
    IntakeError
        Unknown extension, empty file, unreadable Excel/Parquet, non-UTF-8 CSV, header row only,
        two headers that map to the same column, or answer cells holding unsaved formulas.
    """
    path = Path(path)
    _check_path(path)
    suffix = path.suffix.lower()
    sheet = None if sheet == "" else sheet
    header_row = int(header_row) if header_row else None
    sheet_name, head = None, 1
    if suffix == ".csv":
        table, rows = _read_csv(path)
    elif suffix in (".xlsx", ".xlsm"):
        table, rows, sheet_name, head = _read_xlsx(path, sheet, header_row, column_map)
    else:
        table = _read_parquet(path)
        rows = np.arange(2, len(table) + 2, dtype=np.int64)
    # Intake adds its own source_file/source_row; a file's own columns of that name are not used.
    table = table.rename(columns={c: f"{c} (in file)" for c in ("source_file", "source_row")})
    mapping = map_columns(table.columns, column_map)
    targets = pd.Series(list(mapping.values()), index=list(mapping.keys()))
    clash = targets[targets.duplicated(keep=False)]
    if len(clash):
        col = clash.iloc[0]
        heads = [str(h) for h in clash.index[clash == col]]
        raise IntakeError(f"{path}: row {head} (header): columns {heads} all mean {col!r}; keep only one of them")
    names = [mapping[c] for c in table.columns]
    blank = np.ones(len(table), dtype=bool)
    out = {}
    for position, name in enumerate(names):
        codes, values = _coded(table.iloc[:, position])
        blank &= codes < 0
        out[name] = _categorical(codes, values)
    del table
    text = pd.DataFrame(out, copy=False)
    text.insert(0, "source_row", rows)
    text.insert(0, "source_file", pd.Categorical.from_codes(np.zeros(len(text), dtype=np.int8),
                                                            categories=pd.Index([path.name], dtype="str")))
    if blank.any():
        text = text.loc[~blank].reset_index(drop=True)
    if text.empty:
        raise IntakeError(f"{path}: has a header row but no records (row {head + 1} onwards is empty); "
                          "expected one row per returned questionnaire")
    text.attrs["headers"] = {v: str(k) for k, v in mapping.items()}
    text.attrs["path"] = str(path)
    text.attrs["sheet"] = sheet_name
    text.attrs["header_row"] = head
    return text


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------

def form_id_problems(form_ids: pd.Series) -> pd.Series:
    """Classify form ids: ``None`` if valid, else ``form_id_missing/format/check_digit``.

    Two formats, both read (:mod:`sipas_lib.formids`): legacy 6 digits (2-digit unit code,
    3-digit serial, Luhn check digit; Hà Nội 2020–2024) and current 10 digits (5-digit unit code,
    4-digit serial, Damm check digit; from 2025). The check itself is
    :func:`sipas_lib.formids.check_form_ids` (which also rejects unit code and serial 0; those ids
    are reported as ``form_id_check_digit`` too).
    """
    s = form_ids.astype("string").str.strip()
    out = pd.Series(np.full(len(s), None, dtype=object), index=s.index, dtype=object)
    missing = (s.isna() | (s == "")).astype(bool)
    fmt = ~missing & ~s.str.fullmatch(r"\d{6}|\d{10}").fillna(False).astype(bool)
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
            out[normalize_label(str(text))] = float(code)
    return out


def _parse_codes(values: np.ndarray, labels: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct text values -> float codes (numbers or labels) and the mask of unreadable ones."""
    text = pd.Series(values, dtype=object)
    num = np.array(pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce"), dtype=float)
    other = np.isnan(num)
    if labels and other.any():
        num[other] = pd.Series(_norm_array(values[other])).map(labels).astype(float).to_numpy()
    return num, np.isnan(num)


_SLASH_DATE = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})")


def parse_date_texts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct date texts -> (dates, ambiguous mask).

    Read: ISO dates (``2025-10-14``, also with a time), day-first ``dd/mm/yyyy`` ``dd-mm-yyyy``
    ``dd.mm.yyyy`` (the Vietnamese convention) and Excel serial day numbers. When the values
    (one file's) include month-first dates (``10/25/2025``: the second part above 12), the file
    mixes conventions: a date whose day and month are both ≤ 12 and differ (``05/06/2025``)
    cannot be read with certainty and is marked ambiguous (its date is left missing). Words are
    never dates (``"today"``, ``"now"``: pandas would read them as the clock's date).

    Parameters
    ----------
    values
        Distinct cell texts of one file's date column (object array).

    Returns
    -------
    dates, ambiguous
        ``datetime64[ns]`` per value (NaT where not a date or ambiguous) and the ambiguous mask.

    Examples
    --------
    >>> dates, ambiguous = parse_date_texts(np.array(["14/10/2025", "2025-10-14", "45944", "today"], dtype=object))
    >>> [str(d)[:10] for d in dates], ambiguous.tolist()
    (['2025-10-14', '2025-10-14', '2025-10-14', 'NaT'], [False, False, False, False])
    """
    text = pd.Series(values, dtype=object)
    # pandas reads the words "today" and "now" as the clock's date: an ISO date starts with its year.
    iso = pd.to_datetime(text.where(text.astype(str).str.match(r"\s*\d")), format="ISO8601", errors="coerce")
    parts = text.str.fullmatch(_SLASH_DATE.pattern)
    pieces = text.str.extract(_SLASH_DATE.pattern).astype(float)
    first, second, year = pieces[0], pieces[1], pieces[2]
    month_first = parts & (first <= 12) & (second > 12)
    both_small = parts & (first <= 12) & (second <= 12) & (first != second)
    day, month = first.where(~month_first, second), second.where(~month_first, first)
    dmy = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": day}).where(parts),
                         errors="coerce")
    serial = pd.to_numeric(text, errors="coerce")
    serial = serial.where(serial.between(20000, 80000))
    excel = pd.to_datetime(serial, unit="D", origin="1899-12-30", errors="coerce")
    out = iso.fillna(dmy).fillna(excel).dt.normalize()
    ambiguous = (both_small & bool(month_first.any())).to_numpy(dtype=bool)
    out = out.where(~ambiguous)
    return out.to_numpy(dtype="datetime64[ns]"), ambiguous


def _where_first(mask: np.ndarray, source_file: pd.Series, source_row: np.ndarray) -> tuple[str, int]:
    pos = int(np.flatnonzero(mask)[0])
    return str(source_file.iloc[pos]), int(source_row[pos])


def _header_name(headers: Mapping[str, str], col: str) -> str:
    orig = headers.get(col, col)
    return f"{col!r}" if orig == col else f"{orig!r} ({col})"


def _as_instrument(inst: Instrument | str | os.PathLike | None) -> Instrument | None:
    if inst is None or isinstance(inst, Instrument):
        return inst
    return load_instrument(inst)


#: Labels of a total row at the bottom of a spreadsheet (normalized).
TOTAL_LABELS = frozenset({"tổng cộng", "tổng", "cộng", "tổng số", "tong cong", "tong", "cong", "total",
                          "grand total", "sum", "totals"})

#: Rows that are not questionnaires (ignored, never received): (en, vi).
IGNORED_RULES: dict[str, tuple[str, str]] = {
    "total_row": ("a total row ('Tổng cộng', 'Total'), not a questionnaire",
                  "dòng tổng cộng, không phải phiếu"),
    "no_form_id_no_answers": ("no form id and no answer: an empty template row, not a questionnaire",
                              "không có mã số phiếu và không trả lời câu nào: dòng mẫu trống, không phải phiếu"),
}

#: Problems of the survey date only: the answers are kept, the date is set to missing: (en, vi).
DATE_RULES: dict[str, tuple[str, str]] = {
    "date_outside_year": ("survey date outside the survey's year; date left missing",
                          "ngày khảo sát không thuộc năm khảo sát; bỏ trống ngày"),
    "date_ambiguous": ("survey date ambiguous (day and month both ≤ 12 in a file that mixes day-first and "
                       "month-first dates); date left missing",
                       "ngày khảo sát không rõ (ngày và tháng đều ≤ 12 trong tệp lẫn hai cách ghi ngày); "
                       "bỏ trống ngày"),
    "return_date_unreadable": ("return date cannot be read (or day and month are ambiguous); date left missing",
                               "ngày thu phiếu không đọc được (hoặc không rõ ngày/tháng); bỏ trống ngày"),
}

IGNORED_COLUMNS = ["source_file", "source_row", "rule", "reason", "reason_vi"]
DATE_PROBLEM_COLUMNS = ["source_file", "source_row", "form_id", "unit_id", "rule", "reason", "reason_vi"]
SOURCE_COLUMNS = ["source_file", "sheet", "header_row", "rows_read", "ignored_rows", "received"]


@dataclass
class _Checked:
    """One file after the record checks: typed columns and the first rule each row breaks."""

    typed: dict[str, object]       # column -> per-row array (categoricals for text)
    n: int
    form_id_ok: np.ndarray         # well-formed form id (duplicates are looked for among these)
    rule: np.ndarray               # object: rule name or None
    column: np.ndarray
    reason: np.ndarray
    reason_vi: np.ndarray
    form_id_shown: np.ndarray      # form id as reported in the quarantine ("" when not shown)
    unit_shown: np.ndarray         # unit as reported in summary/quarantine
    item_codes: list[str]
    notes: list[str]
    ignored: pd.DataFrame
    date_problems: pd.DataFrame
    source: dict


def _check_records(raw: pd.DataFrame, units: pd.DataFrame, instrument: Instrument | None,
                   sample: pd.DataFrame | None, year: int | None = None) -> _Checked:
    """File-level checks (raise) and record-level masks (first failing rule per record)."""
    if "source_file" not in raw.columns:
        raw = raw.assign(source_file="(data frame)")
    if "source_row" not in raw.columns:
        raw = raw.assign(source_row=np.arange(2, len(raw) + 2, dtype=np.int64))
    headers = dict(raw.attrs.get("headers", {}))
    full_path = raw.attrs.get("path")  # name the whole path in file-level errors when known
    sheet_name, head_row = raw.attrs.get("sheet"), raw.attrs.get("header_row", 1)
    raw = raw.reset_index(drop=True)
    raw.attrs = {}  # pandas deep-copies attrs on every operation; keep the header names aside
    source_file = raw["source_file"].astype("str")
    source_row = raw["source_row"].to_numpy(dtype=np.int64)
    src = full_path or (str(source_file.iloc[0]) if len(raw) else "(data frame)")
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
        where = f"row {head_row} (header)" + (f" of sheet {sheet_name!r}" if sheet_name else "")
        raise IntakeError(f"{src}: {where}: missing required column(s) {named}{form_txt}; found columns {found}")
    known = {"source_file", "source_row", *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *PERSONAL_COLUMNS, *item_codes}
    notes = []
    unknown = [c for c in raw.columns if c not in known]
    if unknown:
        notes.append(f"{src}: columns not used and dropped: {[headers.get(c, c) for c in unknown]}")
    n_read = len(raw)
    empty_col = (np.full(n_read, -1, dtype=np.intp), np.zeros(0, dtype=object))
    cols = {c: (_coded(raw[c]) if c in raw.columns else empty_col)
            for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "enumerator_name", *item_codes)}

    # Rows that are not questionnaires: a total row, or no form id and no answer at all.
    answer_cols = [*item_codes, *DEMOGRAPHIC_COLUMNS, "education_other"]
    no_answer = np.ones(n_read, dtype=bool)
    for c in answer_cols:
        no_answer &= cols[c][0] < 0
    total = np.zeros(n_read, dtype=bool)
    for c in ("form_id", "unit_id", "field", "channel", *unknown):
        codes, values = cols[c] if c in cols else _coded(raw[c])
        # a total label has letters: the 400,000 digit-only form ids of a national year are not normalized
        has_letter = pd.Series(values, dtype=object).str.contains(r"[^\W\d_]").fillna(False).to_numpy(dtype=bool)
        is_total = np.zeros(len(values), dtype=bool)
        is_total[has_letter] = np.isin(_norm_array(values[has_letter]), list(TOTAL_LABELS))
        total |= spread_to_rows(is_total, codes, False)
    ignore_rule = np.where(total, "total_row",
                           np.where(no_answer & (cols["form_id"][0] < 0), "no_form_id_no_answers", None))
    ignore = ignore_rule != None  # noqa: E711  (element-wise on an object array)
    ignored = pd.DataFrame({"source_file": source_file[ignore].to_numpy(), "source_row": source_row[ignore],
                            "rule": ignore_rule[ignore]})
    ignored["reason"] = ignored["rule"].map({k: v[0] for k, v in IGNORED_RULES.items()})
    ignored["reason_vi"] = ignored["rule"].map({k: v[1] for k, v in IGNORED_RULES.items()})
    if ignore.any():
        counts = ignored["rule"].value_counts()
        rows_txt = _row_ranges(source_row[ignore])
        notes.append(f"{src}: {int(ignore.sum())} row(s) are not questionnaires and were not counted as received "
                     f"({', '.join(f'{IGNORED_RULES[r][0]}: {k}' for r, k in counts.items())}; rows {rows_txt})")
        keep = ~ignore
        cols = {c: (codes[keep], values) for c, (codes, values) in cols.items()}
        source_file = source_file[keep].reset_index(drop=True)
        source_row = source_row[keep]
    n = len(source_row)
    typed: dict[str, object] = {}

    # Form id
    fid_codes, fid_values = cols["form_id"]
    fid_problem_values = form_id_problems(pd.Series(fid_values, dtype=object)).to_numpy(dtype=object)
    fid_rule = spread_to_rows(fid_problem_values, fid_codes, "form_id_missing")
    # in the form id column, 6 or 10 digits is the shape of a form id (the 10-digit format looks like a
    # mobile number): shown, so the paper form can be found; only the other values are described
    id_shaped = pd.Series(fid_values, dtype=object).str.fullmatch(r"\d{6}|\d{10}").fillna(False).to_numpy(dtype=bool)
    quoted = np.array([f"'{v}'" for v in fid_values[id_shaped]], dtype=object)
    fid_shown_v, fid_kind_en, fid_kind_vi = (np.empty(len(fid_values), dtype=object) for _ in range(3))
    fid_shown_v[~id_shaped], fid_kind_en[~id_shaped], fid_kind_vi[~id_shaped] = \
        safe_value_descriptions(fid_values[~id_shaped])
    fid_shown_v[id_shaped], fid_kind_en[id_shaped], fid_kind_vi[id_shaped] = quoted, quoted, quoted
    typed["form_id"] = _Coded(fid_codes, fid_values, None)

    # Units: id, or Vietnamese/English name
    units = validate_units(units)
    keys = pd.concat([
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["unit_id"]).to_numpy()),
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["name_vi"].astype("string")).to_numpy()),
        pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units["name_en"].astype("string")).to_numpy()),
    ])
    keys = keys[~keys.index.duplicated()]
    u_codes, u_values = cols["unit_id"]
    uid_of_value = pd.Series(_norm_array(u_values), dtype=object).map(keys).to_numpy(dtype=object)
    uid = pd.Series(spread_to_rows(uid_of_value, u_codes, None), dtype=object)
    unit_missing = u_codes < 0
    unit_unknown = ~unit_missing & uid.isna().to_numpy()
    utype = uid.map(units.set_index("unit_id")["unit_type"])
    ucode = uid.map(units.set_index("unit_id")["code"].astype(float)).to_numpy(dtype=float)
    u_shown_v, u_kind_en, u_kind_vi = safe_value_descriptions(u_values)
    raw_unit_shown = spread_to_rows(np.where(u_shown_v != "", u_values, "(unit not shown)"), u_codes, "(missing)")
    unit_shown = np.where(uid.notna(), uid.to_numpy(dtype=object), raw_unit_shown)
    typed["unit_id"] = _Coded(u_codes, uid_of_value, None)

    # Form of each record and the unit-type check
    if instrument is not None:
        form = pd.Series(instrument.id, index=range(n), dtype=object)
        if instrument.unit_type:  # the unit's type must be rated on this form (wards on the commune form)
            wrong_type = (uid.notna() & (utype.map(FORM_OF_UNIT_TYPE) != FORM_OF_UNIT_TYPE[instrument.unit_type]))
        else:
            wrong_type = uid.notna() & (utype == "commune")
        wrong_type = wrong_type.to_numpy(dtype=bool)
        off_form = np.zeros(n, dtype=bool)
        off_col = np.full(n, None, dtype=object)
        type_expected = instrument.unit_type or "department or district"
    else:
        ids = {t: instrument_for_unit_type(t).id for t in ("department", "district")}
        form = utype.map(ids)
        wrong_type = (uid.notna() & form.isna()).to_numpy(dtype=bool)
        on_form = {f.id: set(f.item_codes) for f in forms}
        off_form = np.zeros(n, dtype=bool)
        off_col = np.full(n, None, dtype=object)
        for c in item_codes:
            allowed = (form.isin([f for f, codes in on_form.items() if c in codes]) | form.isna()).to_numpy(dtype=bool)
            hit = (cols[c][0] >= 0) & ~allowed & ~off_form
            off_col[hit] = c
            off_form |= hit
        type_expected = "department or district"
    type_of_value = pd.Series(uid_of_value, dtype=object).map(units.set_index("unit_id")["unit_type"])
    typed["unit_type"] = _Coded(u_codes, type_of_value.to_numpy(dtype=object), None)
    if instrument is not None:
        typed["form"] = _Coded(np.zeros(n, dtype=np.int8), np.array([instrument.id], dtype=object), None)
    else:
        typed["form"] = _Coded(u_codes, type_of_value.map(ids).to_numpy(dtype=object), None)

    fid_ok = fid_rule == None  # noqa: E711
    code_of_value = np.full(len(fid_values), np.nan)
    valid_value = fid_problem_values == None  # noqa: E711
    if valid_value.any():
        code_of_value[valid_value] = unit_code_of(fid_values[valid_value])
    code_in_id = spread_to_rows(code_of_value, fid_codes, np.nan)
    id_unit = fid_ok & uid.notna().to_numpy() & (code_in_id != ucode)

    not_issued = np.zeros(n, dtype=bool)
    if sample is not None:
        issued = set(sample["form_id"].astype("string").str.strip().dropna())
        issued_value = np.array([v in issued for v in fid_values], dtype=bool)
        not_issued = fid_ok & ~spread_to_rows(issued_value, fid_codes, False)

    # Items: parsed once per distinct value, spread to the rows; stored as float32 (codes 1-5 are exact)
    scale_labels = {}
    for f in forms:
        scale_labels.update(_code_labels({k: v for k, v in f.scale_labels.items()}))
    lows = item_table.set_index("code")["scale_min"]
    highs = item_table.set_index("code")["scale_max"]
    item_bad = np.zeros(n, dtype=bool)
    item_col = np.full(n, None, dtype=object)
    item_msg = np.full(n, None, dtype=object)
    item_msg_vi = np.full(n, None, dtype=object)
    n_bad_items = np.zeros(n, dtype=np.int16)
    for col in item_codes:
        codes, values = cols[col]
        val, unreadable = _parse_codes(values, scale_labels)
        lo, hi = int(lows[col]), int(highs[col])
        n_unreadable = int(spread_to_rows(unreadable, codes, False).sum())
        if n_unreadable >= _MIN_VALUES_FOR_COLUMN_ERROR and n_unreadable == int((codes >= 0).sum()):
            bad_rows = spread_to_rows(unreadable, codes, False)
            f, r = _where_first(bad_rows, source_file, source_row)
            raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, col)}: no value in this column "
                              f"is an answer code (e.g. {_example(values[unreadable])}); expected whole numbers "
                              f"{lo}-{hi} or empty")
        out_range = ~unreadable & ((val < lo) | (val > hi))
        not_whole = ~unreadable & ~out_range & (val != np.floor(val))
        bad_value = unreadable | out_range | not_whole
        en, vi = _value_messages(values, unreadable, out_range, col, lo, hi)
        bad_rows = spread_to_rows(bad_value, codes, False)
        first_bad = bad_rows & ~item_bad
        item_col[first_bad] = col
        item_msg[first_bad] = en[codes[first_bad]]
        item_msg_vi[first_bad] = vi[codes[first_bad]]
        item_bad |= bad_rows
        n_bad_items += bad_rows
        typed[col] = _Coded(codes, np.where(bad_value, np.nan, val), np.nan)

    # Demographics (allowed codes from the instrument; labels such as "Nam"/"Nữ" accepted)
    demo_table = pd.concat([f.demographics for f in forms]).drop_duplicates("code").set_index("code")
    demo_cols = [c for c in DEMOGRAPHIC_COLUMNS if c in demo_table.index]
    demo_bad = np.zeros(n, dtype=bool)
    demo_msg = np.full(n, None, dtype=object)
    demo_msg_vi = np.full(n, None, dtype=object)
    demo_col = np.full(n, None, dtype=object)
    for col in demo_cols:
        allowed_codes = demo_table.loc[col, "values"]
        codes, values = cols[col]
        val, unreadable = _parse_codes(values, _code_labels(allowed_codes))
        n_unreadable = int(spread_to_rows(unreadable, codes, False).sum())
        if n_unreadable >= _MIN_VALUES_FOR_COLUMN_ERROR and n_unreadable == int((codes >= 0).sum()):
            f, r = _where_first(spread_to_rows(unreadable, codes, False), source_file, source_row)
            raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, col)}: no value in this column "
                              f"is a code (e.g. {_example(values[unreadable])}); expected one of "
                              f"{sorted(allowed_codes)} or empty")
        outside = ~unreadable & ~np.isin(val, [float(v) for v in allowed_codes])
        bad_value = unreadable | outside
        allowed_txt = ", ".join(str(v) for v in sorted(allowed_codes))
        en, vi = _value_messages(values, unreadable, outside, col, None, None, allowed_txt)
        bad_rows = spread_to_rows(bad_value, codes, False)
        first_bad = bad_rows & ~demo_bad
        demo_col[first_bad] = col
        demo_msg[first_bad] = en[codes[first_bad]]
        demo_msg_vi[first_bad] = vi[codes[first_bad]]
        demo_bad |= bad_rows
        typed[col] = _Coded(codes, np.where(bad_value, np.nan, val), np.nan)
    for col in DEMOGRAPHIC_COLUMNS:
        if col not in typed:
            typed[col] = _Coded(np.full(n, -1, dtype=np.int8), np.zeros(0), np.nan)
    typed["education_other"] = _Coded(*cols["education_other"], None)

    # Channel (survey mode) and field
    chan_keys = {**{normalize_label(k): v for k, v in CHANNEL_LABELS.items()},
                 **{normalize_label(m): m for m in SURVEY_MODES}}
    c_codes, c_values = cols["channel"]
    chan_of_value = pd.Series(_norm_array(c_values), dtype=object).map(chan_keys).to_numpy(dtype=object)
    chan = spread_to_rows(chan_of_value, c_codes, None)
    chan_bad = pd.isna(chan)
    c_shown, c_kind_en, c_kind_vi = safe_value_descriptions(c_values)
    typed["channel"] = _Coded(c_codes, chan_of_value, None)
    field_keys = {**{normalize_label(k): v for k, v in FIELD_LABELS.items()},
                  **{normalize_label(m): m for m in FIELDS}}
    f_codes, f_values = cols["field"]
    field_of_value = pd.Series(_norm_array(f_values), dtype=object).map(field_keys).to_numpy(dtype=object)
    fld = spread_to_rows(field_of_value, f_codes, None)
    field_bad = (f_codes >= 0) & pd.isna(fld)
    f_shown, f_kind_en, f_kind_vi = safe_value_descriptions(f_values)
    typed["field"] = _Coded(f_codes, field_of_value, None)

    # Survey date: unreadable -> quarantine; outside the year or ambiguous -> a problem of the date only
    d_codes, d_values = cols["survey_date"]
    date_of_value, ambiguous_value = parse_date_texts(d_values)
    unreadable_value = np.isnat(date_of_value) & ~ambiguous_value
    date_bad = spread_to_rows(unreadable_value, d_codes, False)
    if date_bad.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and date_bad.sum() == (d_codes >= 0).sum():
        f, r = _where_first(date_bad, source_file, source_row)
        raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, 'survey_date')}: none of the "
                          f"{int(date_bad.sum())} dates can be read (e.g. {_example(d_values[unreadable_value])}); "
                          "expected dates like 2025-10-14 or 14/10/2025")
    outside_value = np.zeros(len(d_values), dtype=bool)
    if year is not None:
        years = pd.DatetimeIndex(date_of_value).year.to_numpy()
        outside_value = ~np.isnat(date_of_value) & (years != int(year))
    typed["survey_date"] = _Coded(d_codes, np.where(outside_value, np.datetime64("NaT"), date_of_value)
                                  .astype("datetime64[ns]"), np.datetime64("NaT"))
    d_shown, d_kind_en, d_kind_vi = safe_value_descriptions(d_values)

    # Fieldwork columns of the integrity screening. A return date that cannot be read (or is ambiguous) is
    # left empty and listed in date_problems, the answers kept; a collection point is a code (post office,
    # desk, "online"), and one that looks like a phone number or e-mail address is personal data: left empty.
    from sipas_lib.privacy import EMAIL_PATTERN, PHONE_PATTERN

    p_codes, p_values = cols["collection_point"]
    looks_personal = np.array([bool(PHONE_PATTERN.search(str(v)) or EMAIL_PATTERN.search(str(v)))
                               for v in p_values], dtype=bool)
    typed["collection_point"] = _Coded(p_codes, np.where(looks_personal, None, p_values), None)
    rd_codes, rd_values = cols["return_date"]
    return_of_value, _ = parse_date_texts(rd_values)
    return_bad = spread_to_rows(np.isnat(return_of_value), rd_codes, False)
    if return_bad.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and return_bad.sum() == (rd_codes >= 0).sum():
        f, r = _where_first(return_bad, source_file, source_row)
        raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, 'return_date')}: none of the "
                          f"{int(return_bad.sum())} return dates can be read (e.g. "
                          f"{_example(rd_values[np.isnat(return_of_value)])}); expected dates like 2025-10-14 or "
                          "14/10/2025")
    typed["return_date"] = _Coded(rd_codes, return_of_value.astype("datetime64[ns]"), np.datetime64("NaT"))
    rd_shown, rd_kind_en, rd_kind_vi = safe_value_descriptions(rd_values)
    # the enumerator, by a normalized name (case, spacing, NFC) that is turned into a code in _finalize
    e_codes, e_values = cols["enumerator_name"]
    typed["enumerator_key"] = _Coded(e_codes, _norm_array(e_values), None)

    # Empty form: no rated item of its own form answered
    own_items = (instrument.item_codes if instrument is not None else item_codes)
    empty = ~item_bad
    for c in own_items:
        empty &= ~typed[c].present()

    # Reviewers' decision (form-tool exports): rejected -> quarantined, flagged -> accepted and noted
    r_codes, r_values = cols["review_state"]
    review_keys = {normalize_label(k): v for k, v in REVIEW_STATES.items()}
    decision_of_value = pd.Series(_norm_array(r_values), dtype=object).map(review_keys).to_numpy(dtype=object)
    unknown_value = pd.isna(decision_of_value)
    review_unknown = spread_to_rows(unknown_value, r_codes, False)
    if review_unknown.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and review_unknown.sum() == (r_codes >= 0).sum():
        f, r = _where_first(review_unknown, source_file, source_row)
        raise IntakeError(f"{full_path or f}: row {r}, column {_header_name(headers, 'review_state')}: no value "
                          f"in this column is a review state (e.g. {_example(r_values[unknown_value])}); expected ODK "
                          "Central's received, hasIssues, edited, approved, rejected or KoboToolbox's validation "
                          "statuses (approved, not approved, on hold), or empty")
    review_rejected = spread_to_rows(decision_of_value == "rejected", r_codes, False)
    review_flagged = spread_to_rows(decision_of_value == "flagged", r_codes, False)
    r_shown, r_kind_en, r_kind_vi = safe_value_descriptions(r_values)
    # a known review state is the tool's vocabulary, never personal: quoted; an unknown one by its kind
    r_shown = np.where(unknown_value, r_shown, np.array([f"'{v}'" for v in r_values], dtype=object))

    sf_codes, sf_values = pd.factorize(source_file.to_numpy(dtype=object))
    typed["source_file"] = _Coded(sf_codes.astype(np.int32), np.asarray(sf_values, dtype=object), None)
    typed["source_row"] = source_row

    # Reasons, built only for the rows a rule hits (values shown only when they cannot be personal)
    def shown_or_kind(shown, kind, codes, sep=" "):
        per_value = np.where(shown != "", np.char.add(sep, shown.astype(str)), np.char.add(" (", np.char.add(
            kind.astype(str), ")"))) if len(shown) else shown
        return lambda rows: spread_to_rows(per_value, codes, "")[rows]

    fid_txt = shown_or_kind(fid_shown_v, fid_kind_en, fid_codes)
    fid_txt_vi = shown_or_kind(fid_shown_v, fid_kind_vi, fid_codes)
    unit_txt = shown_or_kind(u_shown_v, u_kind_en, u_codes)
    unit_txt_vi = shown_or_kind(u_shown_v, u_kind_vi, u_codes)
    chan_txt = shown_or_kind(c_shown, c_kind_en, c_codes)
    chan_txt_vi = shown_or_kind(c_shown, c_kind_vi, c_codes)
    field_txt = shown_or_kind(f_shown, f_kind_en, f_codes)
    field_txt_vi = shown_or_kind(f_shown, f_kind_vi, f_codes)
    date_txt = shown_or_kind(d_shown, d_kind_en, d_codes)
    date_txt_vi = shown_or_kind(d_shown, d_kind_vi, d_codes)
    review_txt = shown_or_kind(r_shown, r_kind_en, r_codes)
    review_txt_vi = shown_or_kind(r_shown, r_kind_vi, r_codes)
    uid_obj = uid.to_numpy(dtype=object)
    utype_obj = utype.to_numpy(dtype=object)
    form_obj = form.to_numpy(dtype=object)
    uid_s = lambda rows: pd.Series(uid_obj[rows], dtype=object).fillna("").astype(str).to_numpy(dtype=object)  # noqa: E731
    utype_s = lambda rows: pd.Series(utype_obj[rows], dtype=object).fillna("").astype(str).to_numpy(dtype=object)  # noqa: E731
    form_s = lambda rows: pd.Series(form_obj[rows], dtype=object).fillna("(none)").astype(str).to_numpy(dtype=object)  # noqa: E731
    code_s = np.array(["" if np.isnan(v) else str(int(v)) for v in code_of_value], dtype=object)
    code_txt = lambda rows: spread_to_rows(code_s, fid_codes, "")[rows]  # noqa: E731
    ucode_s = lambda rows: np.array(["" if np.isnan(v) else str(int(v)) for v in ucode[rows]], dtype=object)  # noqa: E731
    more = lambda rows: np.where(n_bad_items[rows] > 1, np.char.add(np.char.add(" (+", (n_bad_items[rows] - 1).astype(str)), " more)"), "")  # noqa: E731
    checks = [
        ("review_rejected", review_rejected, "review_state",
         lambda r: "rejected by the reviewers in the form tool (review state" + review_txt(r) + ")",
         lambda r: "bị người duyệt từ chối trên công cụ thu phiếu (trạng thái" + review_txt_vi(r) + ")"),
        ("review_state_value", review_unknown, "review_state",
         lambda r: "review state" + review_txt(r) + " is not known; expected ODK Central's received, hasIssues, "
         "edited, approved, rejected or KoboToolbox's approved, not approved, on hold",
         lambda r: "trạng thái duyệt" + review_txt_vi(r) + " không xác định"),
        ("form_id_missing", fid_rule == "form_id_missing", "form_id",
         lambda r: "form id is empty", lambda r: "thiếu mã số phiếu"),
        ("form_id_format", fid_rule == "form_id_format", "form_id",
         lambda r: "form id" + fid_txt(r) + " is not 6 or 10 digits",
         lambda r: "mã số phiếu" + fid_txt_vi(r) + " không gồm 6 hoặc 10 chữ số"),
        ("form_id_check_digit", fid_rule == "form_id_check_digit", "form_id",
         lambda r: "form id" + fid_txt(r) + " fails its check digit (mistyped?)",
         lambda r: "mã số phiếu" + fid_txt_vi(r) + " sai chữ số kiểm tra (nhập nhầm?)"),
        ("unit_missing", unit_missing, "unit_id", lambda r: "unit is empty", lambda r: "thiếu đơn vị"),
        ("unit_unknown", unit_unknown, "unit_id",
         lambda r: "unit" + unit_txt(r) + " is not in the units registry",
         lambda r: "đơn vị" + unit_txt_vi(r) + " không có trong danh mục"),
        ("form_unit_type", wrong_type, "unit_id",
         lambda r: "unit " + uid_s(r) + " is a " + utype_s(r) + "; form " + form_s(r) + " is for a " + type_expected,
         lambda r: "đơn vị " + uid_s(r) + " là " + utype_s(r) + "; mẫu phiếu không dành cho loại đơn vị này"),
        ("form_unit_type", off_form, off_col,
         lambda r: "answers " + off_col[r].astype(str) + ", which is not on the " + utype_s(r) + " form",
         lambda r: "trả lời " + off_col[r].astype(str) + ", câu không có trong mẫu phiếu của " + utype_s(r)),
        ("form_id_unit", id_unit, "form_id",
         lambda r: "form id" + fid_txt(r) + " starts with " + code_txt(r) + " but unit " + uid_s(r) + " has code "
         + ucode_s(r),
         lambda r: "mã số phiếu" + fid_txt_vi(r) + " bắt đầu bằng " + code_txt(r) + " nhưng đơn vị " + uid_s(r)
         + " có mã " + ucode_s(r)),
        ("form_id_not_issued", not_issued, "form_id",
         lambda r: "form id" + fid_txt(r) + " was not issued in the sample",
         lambda r: "mã số phiếu" + fid_txt_vi(r) + " không có trong mẫu"),
        ("item_value", item_bad, item_col, lambda r: item_msg[r] + more(r), lambda r: item_msg_vi[r] + more(r)),
        ("demographic_value", demo_bad, demo_col, lambda r: demo_msg[r], lambda r: demo_msg_vi[r]),
        ("channel_value", chan_bad, "channel",
         lambda r: np.where(c_codes[r] < 0, "survey mode is empty", "survey mode" + chan_txt(r) + " is unknown")
         + "; expected " + ", ".join(SURVEY_MODES),
         lambda r: "hình thức khảo sát" + chan_txt_vi(r) + " trống hoặc không hợp lệ"),
        ("field_value", field_bad, "field",
         lambda r: "field" + field_txt(r) + " is unknown; expected " + ", ".join(FIELDS),
         lambda r: "lĩnh vực" + field_txt_vi(r) + " không hợp lệ"),
        ("survey_date_value", date_bad, "survey_date",
         lambda r: "survey date" + date_txt(r) + " cannot be read; expected e.g. 2025-10-14 or 14/10/2025",
         lambda r: "ngày khảo sát" + date_txt_vi(r) + " không đọc được"),
        ("empty_form", empty, "", lambda r: "no rated question answered", lambda r: "không trả lời câu hỏi nào"),
    ]
    rule = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)
    reason = np.full(n, None, dtype=object)
    reason_vi = np.full(n, None, dtype=object)
    for name, mask, col, en, vi in checks:
        hit = np.asarray(mask, dtype=bool) & (rule == None)  # noqa: E711
        if not hit.any():
            continue
        rows = np.flatnonzero(hit)
        rule[rows] = name
        column[rows] = col[rows] if isinstance(col, np.ndarray) else col
        reason[rows] = np.asarray(en(rows), dtype=object)
        reason_vi[rows] = np.asarray(vi(rows), dtype=object)

    flagged = review_flagged & (rule == None)  # noqa: E711
    if review_rejected.any() or flagged.any():
        notes.append(f"{src}: review states of the form tool: {int(review_rejected.sum())} submission(s) rejected by "
                     f"the reviewers set aside (review_rejected); {int(flagged.sum())} flagged but not decided "
                     "(ODK Central 'hasIssues', KoboToolbox 'on hold') kept, not set aside for the flag"
                     + (f" (rows {_row_ranges(source_row[flagged])}): settle them before the final run"
                        if flagged.any() else ""))

    # Date problems of records that are otherwise fine or not: the record keeps its answers
    outside_rows = spread_to_rows(outside_value, d_codes, False)
    ambiguous_rows = spread_to_rows(ambiguous_value, d_codes, False)
    problem = outside_rows | ambiguous_rows
    rows = np.flatnonzero(problem)
    date_rule = np.where(outside_rows[rows], "date_outside_year", "date_ambiguous")
    date_problems = pd.DataFrame({
        "source_file": source_file.to_numpy(dtype=object)[rows], "source_row": source_row[rows],
        "form_id": spread_to_rows(np.where(fid_shown_v != "", fid_values, ""), fid_codes, "")[rows],
        "unit_id": unit_shown[rows], "rule": date_rule,
        "reason": np.where(outside_rows[rows], "survey date" + date_txt(rows) + f" is not in {year}; date left missing",
                           "survey date" + date_txt(rows) + " is ambiguous (day and month both ≤ 12 in a file that "
                           "mixes day-first and month-first dates); date left missing"),
        "reason_vi": np.where(outside_rows[rows], "ngày khảo sát" + date_txt_vi(rows) + f" không thuộc năm {year}; "
                              "bỏ trống ngày", "ngày khảo sát" + date_txt_vi(rows) + " không rõ ngày/tháng (tệp lẫn "
                              "hai cách ghi ngày); bỏ trống ngày"),
    }, columns=DATE_PROBLEM_COLUMNS)
    rows = np.flatnonzero(return_bad)
    if len(rows):
        return_txt = shown_or_kind(rd_shown, rd_kind_en, rd_codes)(rows)
        return_txt_vi = shown_or_kind(rd_shown, rd_kind_vi, rd_codes)(rows)
        date_problems = pd.concat([date_problems, pd.DataFrame({
            "source_file": source_file.to_numpy(dtype=object)[rows], "source_row": source_row[rows],
            "form_id": spread_to_rows(np.where(fid_shown_v != "", fid_values, ""), fid_codes, "")[rows],
            "unit_id": unit_shown[rows], "rule": "return_date_unreadable",
            "reason": "return date" + return_txt + " cannot be read (or day and month are ambiguous); date left missing",
            "reason_vi": "ngày thu phiếu" + return_txt_vi + " không đọc được (hoặc không rõ ngày/tháng); bỏ trống ngày",
        }, columns=DATE_PROBLEM_COLUMNS)], ignore_index=True)
    if len(date_problems):
        counts = date_problems["rule"].value_counts()
        kinds = ", ".join(f"{DATE_RULES[r][0].split(';')[0]}: {k}" for r, k in counts.items())
        notes.append(f"{src}: {len(date_problems)} survey or return date(s) set to missing, answers kept ({kinds})")
    where = f"sheet {sheet_name!r}, header in row {head_row}" if sheet_name else f"header in row {head_row}"
    if sheet_name:
        notes.append(f"{src}: read {where}")
    source = {"source_file": str(source_file.iloc[0]) if len(source_file) else Path(src).name,
              "sheet": sheet_name or "", "header_row": int(head_row or 1), "rows_read": int(n_read),
              "ignored_rows": int(ignore.sum()), "received": int(n)}
    # a rejected submission (or one of unknown review state) is not a copy: a corrected re-submission stays
    return _Checked(typed=typed, n=n, form_id_ok=fid_ok & ~review_rejected & ~review_unknown, rule=rule,
                    column=column, reason=reason, reason_vi=reason_vi,
                    form_id_shown=spread_to_rows(np.where(fid_shown_v != "", fid_values, ""), fid_codes, ""),
                    unit_shown=unit_shown, item_codes=item_codes, notes=notes, ignored=ignored,
                    date_problems=date_problems, source=source)


def _value_messages(values: np.ndarray, unreadable: np.ndarray, outside: np.ndarray, col: str,
                    lo: int | None, hi: int | None, allowed_txt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reason per distinct wrong value of a coded column, by kind; the value is shown only if harmless."""
    shown, kind_en, kind_vi = safe_value_descriptions(values)
    expected = f"a whole number {lo}-{hi}" if allowed_txt is None else f"one of {allowed_txt}"
    expected_vi = f"số nguyên {lo}-{hi}" if allowed_txt is None else f"một trong {allowed_txt}"
    en = np.empty(len(values), dtype=object)
    vi = np.empty(len(values), dtype=object)
    for k in range(len(values)):
        if unreadable[k]:
            what = "text" if shown[k] else kind_en[k]
            what_vi = "chữ" if shown[k] else kind_vi[k]
            en[k] = f"{col}: {what} where {expected} was expected"
            vi[k] = f"{col}: {what_vi} ở chỗ cần {expected_vi}"
        elif outside[k]:
            en[k] = f"{col} = {shown[k] or kind_en[k]}: number out of range; expected {expected} or empty"
            vi[k] = f"{col} = {shown[k] or kind_vi[k]}: số ngoài khoảng; phải là {expected_vi} hoặc để trống"
        else:
            en[k] = f"{col} = {shown[k] or kind_en[k]}: not a whole number; expected {expected} or empty"
            vi[k] = f"{col} = {shown[k] or kind_vi[k]}: không phải số nguyên; phải là {expected_vi} hoặc để trống"
    return en, vi


def _row_ranges(rows: np.ndarray, limit: int = 6) -> str:
    """``[5, 6, 7, 9]`` -> ``"5-7, 9"`` (at most ``limit`` ranges, then "…")."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if not len(rows):
        return ""
    breaks = np.flatnonzero(np.diff(rows) != 1)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    ends = np.concatenate([rows[breaks], [rows[-1]]])
    parts = [f"{a}-{b}" if a != b else f"{a}" for a, b in zip(starts[:limit], ends[:limit])]
    return ", ".join(parts) + (", …" if len(starts) > limit else "")


def _finalize(parts: Sequence[_Checked], feedback_items: Sequence[str]) -> IntakeResult:
    """Concatenate checked files, flag duplicated form ids, split accepted/quarantine, summarize."""
    item_codes = list(dict.fromkeys(c for p in parts for c in p.item_codes))
    n = sum(p.n for p in parts)

    rule = np.concatenate([p.rule for p in parts])
    column = np.concatenate([p.column for p in parts])
    reason = np.concatenate([p.reason for p in parts])
    reason_vi = np.concatenate([p.reason_vi for p in parts])
    fid_ok = np.concatenate([p.form_id_ok for p in parts])
    fid_shown = np.concatenate([p.form_id_shown for p in parts])
    unit_shown = np.concatenate([p.unit_shown for p in parts])
    source_file = np.concatenate([p.typed["source_file"].take() for p in parts])
    source_row = np.concatenate([p.typed["source_row"] for p in parts]).astype(np.int64)
    form_id = np.concatenate([p.typed["form_id"].take() for p in parts])

    # Duplicated form ids (among ids that are well formed): compare only rows whose id repeats
    key_codes, _ = pd.factorize(np.where(fid_ok, form_id, None), use_na_sentinel=True)
    copies = np.bincount(key_codes[key_codes >= 0], minlength=max(int(key_codes.max(initial=-1)) + 1, 1))
    n_copies = np.where(key_codes >= 0, copies[np.maximum(key_codes, 0)], 0)
    dup = np.flatnonzero(n_copies > 1)
    if len(dup):
        compare = ["unit_id", "field", "channel", *item_codes, *DEMOGRAPHIC_COLUMNS, "education_other", "survey_date"]
        digest = _row_digest(parts, compare, dup)
        sub = pd.DataFrame({"key": key_codes[dup], "digest": digest, "pos": dup})
        versions = sub.groupby("key")["digest"].transform("nunique").to_numpy()
        first_pos = sub.groupby("key")["pos"].transform("first").to_numpy()
        conflict = versions > 1
        exact_later = ~conflict & (dup != first_pos)
        take = conflict | exact_later
        dup_rows = dup[take]
        del digest
        en, vi = _duplicate_reasons(source_file, source_row, form_id, n_copies, sub["key"].to_numpy(), dup,
                                    first_pos, conflict)
        reason[dup_rows] = en[take]
        reason_vi[dup_rows] = vi[take]
        names = np.array(["duplicate_exact", "duplicate_conflict"], dtype=object)
        rule[dup_rows] = names[conflict[take].astype(np.intp)]
        column[dup_rows] = "form_id"

    bad = rule != None  # noqa: E711
    good = np.flatnonzero(~bad)
    accepted = pd.DataFrame(index=range(len(good)))
    for col in ("form_id", "unit_id", "unit_type", "form", "field", "channel"):
        accepted[col] = _take_column(parts, col, good).astype("str")
    gave = np.zeros(len(good), dtype=bool)
    for col in item_codes:
        values = _take_column(parts, col, good).astype(np.float64)
        accepted[col] = values
        if col in feedback_items:
            gave |= ~np.isnan(values)
    for col in DEMOGRAPHIC_COLUMNS:
        accepted[col] = _take_column(parts, col, good).astype(np.float64)
    other = _take_column(parts, "education_other", good)
    accepted["education_other"] = pd.Series(other, dtype="str").where(pd.notna(other), None).astype(object)
    accepted["survey_date"] = pd.to_datetime(_take_column(parts, "survey_date", good))
    point = pd.Series(_take_column(parts, "collection_point", good), dtype=object)
    accepted["collection_point"] = point.where(point.notna(), None).astype(object)
    accepted["return_date"] = pd.to_datetime(_take_column(parts, "return_date", good))
    # E001, E002 … by first appearance among the accepted forms (codes are per run; the name stays here)
    enumerator, _ = pd.factorize(pd.Series(_take_column(parts, "enumerator_key", good), dtype=object),
                                 use_na_sentinel=True)
    width = max(3, len(str(int(enumerator.max(initial=-1)) + 1)))
    code = pd.Series(enumerator + 1, dtype="int64").astype(str).str.zfill(width)
    accepted["enumerator_code"] = ("E" + code).where(enumerator >= 0, None).astype(object)
    accepted["gave_feedback"] = gave
    accepted["source_file"] = pd.Series(source_file[good], dtype="str")
    accepted["source_row"] = source_row[good]

    quarantine = pd.DataFrame({
        "source_file": source_file[bad], "source_row": source_row[bad],
        "form_id": fid_shown[bad], "unit_id": unit_shown[bad],
        "column": np.where(column[bad] == None, "", column[bad]),  # noqa: E711
        "rule": rule[bad], "reason": reason[bad], "reason_vi": reason_vi[bad]},
        columns=QUARANTINE_COLUMNS, dtype=object)  # object: rows share their texts (one per value, rule, id)
    quarantine["source_row"] = quarantine["source_row"].astype(np.int64)

    summary = (pd.DataFrame({"source_file": source_file, "unit_id": unit_shown, "accepted": ~bad, "quarantined": bad})
               .groupby(["source_file", "unit_id"], sort=True)
               .agg(received=("accepted", "size"), accepted=("accepted", "sum"), quarantined=("quarantined", "sum"))
               .reset_index())
    summary[["received", "accepted", "quarantined"]] = summary[["received", "accepted", "quarantined"]].astype(np.int64)
    summary = summary[SUMMARY_COLUMNS]
    summary["source_file"] = summary["source_file"].astype(object)
    summary["unit_id"] = summary["unit_id"].astype(object)
    if not ((summary["received"] == summary["accepted"] + summary["quarantined"]).all()
            and len(accepted) + len(quarantine) == n == int(summary["received"].sum())):
        raise AssertionError("intake lost or double-counted records: received != accepted + quarantined")
    notes = tuple(note for p in parts for note in p.notes)
    ignored = pd.concat([p.ignored for p in parts], ignore_index=True) if parts else pd.DataFrame(columns=IGNORED_COLUMNS)
    date_problems = pd.concat([p.date_problems for p in parts], ignore_index=True)
    sources = pd.DataFrame([p.source for p in parts], columns=SOURCE_COLUMNS)
    return IntakeResult(accepted=accepted, quarantine=quarantine, summary=summary, notes=notes,
                        ignored=ignored[IGNORED_COLUMNS], date_problems=date_problems[DATE_PROBLEM_COLUMNS],
                        sources=sources)


def _duplicate_reasons(source_file: np.ndarray, source_row: np.ndarray, form_id: np.ndarray,
                       copies: np.ndarray, key: np.ndarray, dup: np.ndarray, first_pos: np.ndarray,
                       conflict: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reasons (en, vi) for the rows ``dup``: one text per duplicated form id, shared by its copies.

    A later exact copy points to the first copy (kept); conflicting copies list where the copies
    are (the first five). Every copy of one id gets the same Python string object, so a file
    pasted many times over costs a pointer per row, not a sentence per row.
    """
    keys, first_of_key = np.unique(key, return_index=True)
    first_rows = first_pos[first_of_key]
    conflicted = conflict[first_of_key]
    listing = {}
    if conflicted.any():
        rows = dup[np.isin(key, keys[conflicted])]
        where = pd.Series([f"{source_file[r]} row {source_row[r]}" for r in rows], dtype=object)
        listing = where.groupby(key[np.isin(key, keys[conflicted])]).agg(
            lambda s: "; ".join(s.iloc[:5]) + ("; …" if len(s) > 5 else "")).to_dict()
    en = np.empty(len(keys), dtype=object)
    vi = np.empty(len(keys), dtype=object)
    for k, (kk, first, both) in enumerate(zip(keys, first_rows, conflicted)):
        fid = form_id[first]
        if both:
            n = copies[first]
            en[k] = f"form id '{fid}' appears {n} times with different answers ({listing[kk]}); all copies set aside"
            vi[k] = f"mã số phiếu '{fid}' xuất hiện {n} lần với nội dung khác nhau ({listing[kk]}); loại tất cả các bản"
        else:
            where = f"{source_file[first]} row {source_row[first]}"
            en[k] = f"exact duplicate of {where} (form id '{fid}')"
            vi[k] = f"trùng lặp hoàn toàn với {where} (mã số phiếu '{fid}')"
    position = np.searchsorted(keys, key)
    return en[position], vi[position]


def _row_digest(parts: Sequence[_Checked], columns: Sequence[str], positions: np.ndarray) -> np.ndarray:
    """A 64-bit digest of the typed values of rows ``positions`` (over all parts), one column at a time.

    Each distinct value is hashed once (:meth:`_Coded.hashes`), so no row is ever turned into
    strings; two rows with the same typed answers get the same digest (a collision is possible in
    principle, at about 2**-64 per pair of rows).
    """
    digest = np.zeros(len(positions), dtype=np.uint64)
    for name in columns:
        pieces, offset = [], 0
        for p in parts:
            local = positions[(positions >= offset) & (positions < offset + p.n)] - offset
            values = p.typed.get(name)
            pieces.append(values.hashes(local) if values is not None else np.zeros(len(local), dtype=np.uint64))
            offset += p.n
        with np.errstate(over="ignore"):
            digest = (digest * np.uint64(1_000_003)) ^ np.concatenate(pieces)
    return digest


def _take_column(parts: Sequence[_Checked], name: str, positions: np.ndarray) -> np.ndarray:
    """Rows ``positions`` (over all parts, in order) of one typed column, as a plain array."""
    pieces, offset = [], 0
    for p in parts:
        local = positions[(positions >= offset) & (positions < offset + p.n)] - offset
        values = p.typed.get(name)
        pieces.append(np.full(len(local), np.nan) if values is None else values.take(local))
        offset += p.n
    if len({x.dtype for x in pieces}) > 1:
        pieces = [x.astype(object) for x in pieces]
    return np.concatenate(pieces) if pieces else np.zeros(0)


def _feedback_items(instruments: Iterable[Instrument | None]) -> list[str]:
    forms = [f for f in instruments if f is not None] or [instrument_for_unit_type("district")]
    return list(dict.fromkeys(c for f in forms
                              for c in f.items.loc[f.items["condition"] == "gave_feedback", "code"]))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------

def validate_responses(responses: pd.DataFrame, units: pd.DataFrame,
                       instrument: Instrument | str | None = None,
                       sample: pd.DataFrame | None = None, year: int | None = None) -> IntakeResult:
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
    year
        The survey's year: a survey date in another year is set to missing (answers kept) and
        listed in ``date_problems``. ``None`` skips that check.

    Returns
    -------
    IntakeResult
        ``accepted``, ``quarantine`` (one reason per record, rules in :data:`RULES` order),
        ``summary`` (received = accepted + quarantined by file and unit), ``ignored`` (rows that
        are not questionnaires), ``date_problems`` and ``sources``.

    Raises
    ------
    IntakeError
        File-level problems: a required column is missing, or a whole column cannot be read.
    """
    inst = _as_instrument(instrument)
    checked = _check_records(responses, units, inst, sample, year)
    return _finalize([checked], _feedback_items([inst]))


def intake_files(files: Mapping[str | os.PathLike, Instrument | str | None] | Sequence[str | os.PathLike],
                 units: pd.DataFrame, sample: pd.DataFrame | None = None,
                 column_map: Mapping[str, str] | None = None, year: int | None = None,
                 sheet: str | int | None = None, header_row: int | None = None) -> IntakeResult:
    """Read and validate several response files together (duplicates are found across files).

    ``files`` maps each path to its form (id, :class:`Instrument` or ``None`` = by unit type),
    or is a list of paths (form chosen by unit type). ``year``: see :func:`validate_responses`;
    ``sheet``, ``header_row``: see :func:`read_table` (used for Excel files; ``""``/0 = find).
    """
    spec = dict(files) if isinstance(files, Mapping) else {f: None for f in files}
    if not spec:
        raise IntakeError("no response files given")
    parts, insts = [], []
    for path, form in spec.items():
        inst = _as_instrument(form)
        insts.append(inst)
        table = read_table(path, column_map=column_map, sheet=sheet, header_row=header_row)
        parts.append(_check_records(table, units, inst, sample, year))
        del table
    return _finalize(parts, _feedback_items(insts))


def intake_year(data_dir: str | os.PathLike, units: pd.DataFrame | None = None,
                files: Mapping[str, Instrument | str | None] | Sequence[str] | None = None,
                check_sample: bool = True, year: int | None = None, sheet: str | int | None = None,
                header_row: int | None = None) -> IntakeResult:
    """Take in a year's returned questionnaires from ``data_dir``.

    Parameters
    ----------
    data_dir
        The year's folder (``data/demo`` or ``data/raw/<year>``).
    units
        Units registry; default ``data_dir/units.csv``.
    files
        File name (relative to ``data_dir``) -> form; default :data:`DEFAULT_FILES`:
        ``responses_departments.xlsx`` on the department form (required) and whichever of
        ``responses_districts.csv`` (district form) and ``responses_communes.csv`` (commune form,
        after the July 2025 reform) exist — at least one.
    check_sample
        When ``data_dir/sample.csv`` exists, quarantine form ids that were never issued.
    year
        The survey's year (settings ``common.year``): survey dates outside it are set to missing,
        answers kept (``date_problems``). ``None`` skips the check.
    sheet, header_row
        Excel sheet and header row (settings ``intake_quality.sheet`` / ``header_row``; ``""`` and
        0 mean: find them). See :func:`read_table`.
    """
    data_dir = Path(data_dir)
    if units is None:
        units = load_units(data_dir / "units.csv")
    if files is None:
        # neither present: ask for the first (its "file not found" names it, after the departments' file)
        local = [f for f in _LOCAL_FILES if (data_dir / f).exists()] or [_LOCAL_FILES[0]]
        files = {f: form for f, form in DEFAULT_FILES.items() if f not in _LOCAL_FILES or f in local}
    spec = dict(files) if isinstance(files, Mapping) else {f: None for f in files}
    spec = {(data_dir / p if not Path(p).is_absolute() else Path(p)): f for p, f in spec.items()}
    sample = None
    if check_sample and (data_dir / "sample.csv").exists():
        sample = pd.read_csv(data_dir / "sample.csv", dtype={"form_id": str}, usecols=["form_id"])
    return intake_files(spec, units, sample=sample, year=year, sheet=sheet, header_row=header_row)


def write_quarantine(result: IntakeResult, paths) -> Path:
    """Write ``quarantine/quarantine.csv`` for people to open in Excel and return its path.

    Written with :func:`sipas_lib.spreadsheet.write_csv` (UTF-8 with BOM so Excel shows Vietnamese;
    a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR is neutralised so it never runs as
    a formula). ``paths`` is a :class:`sipas_lib.config.RunPaths` (or anything with a
    ``quarantine`` folder). The table holds no personal columns and no personal values: wrong
    values are described by kind (see :func:`validate_responses`).
    """
    folder = Path(paths.quarantine)
    target = folder / "quarantine.csv"
    leak = set(result.quarantine.columns) & set(PERSONAL_COLUMNS)
    if leak:
        raise ValueError(f"quarantine table carries personal columns {sorted(leak)}")
    return write_csv(result.quarantine, target)


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
                   units: pd.DataFrame | None = None,
                   received: pd.DataFrame | pd.Series | None = None) -> pd.DataFrame:
    """Issued versus returned questionnaires, counted as distinct issued form ids.

    .. math:: RR_g = \\frac{\\#\\{i \\in S_g : i \\text{ returned and accepted}\\}}{\\#S_g}
              \\qquad
              R_g = \\frac{\\#\\{i \\in S_g : i \\text{ came back (accepted or set aside)}\\}}{\\#S_g}

    where :math:`S_g` are the distinct issued form ids (``sample.csv``) of group *g* (AAPOR RR1
    with eligibility assumed for every issued form; AAPOR Standard Definitions, 2023). Both count
    *issued form ids*, not records: a form keyed twice, a copy in two files, a total row or a
    record whose id was never issued adds nothing, so neither rate can pass 100 %.

    Parameters
    ----------
    sample
        Issued forms: ``form_id`` and the grouping columns (``unit_id``, ``survey_mode``, ``field`` ...).
    accepted
        Accepted responses (``form_id``).
    by
        Grouping columns of ``sample`` (empty for one overall row). ``unit_type`` is looked up in
        ``units`` when the sample lacks it.
    received
        Optional: every record that came back (``form_id`` column, or the form ids themselves),
        accepted and quarantined alike — e.g. ``pd.concat([result.accepted["form_id"],
        result.quarantine["form_id"]])``. Adds ``received`` and ``return_rate`` (:math:`R_g`).

    Returns
    -------
    DataFrame
        ``by..., issued, returned, response_rate`` (+ ``received, return_rate`` with ``received``).
    """
    by = list(by)
    if "form_id" not in sample.columns or "form_id" not in accepted.columns:
        raise ValueError("response_rates: both sample and accepted need a form_id column")
    issued = sample.assign(form_id=sample["form_id"].astype("string").str.strip())
    issued = issued.loc[issued["form_id"].notna()].drop_duplicates("form_id").copy()
    if "unit_type" in by and "unit_type" not in issued.columns:
        if units is None:
            raise ValueError("response_rates: by unit_type needs the units table (units=...)")
        issued["unit_type"] = issued["unit_id"].map(units.set_index("unit_id")["unit_type"])
    missing = [c for c in by if c not in issued.columns]
    if missing:
        raise ValueError(f"response_rates: sample has no column(s) {missing}; it has {list(sample.columns)}")

    def came_back(records: pd.DataFrame | pd.Series) -> pd.Series:
        ids = records["form_id"] if isinstance(records, pd.DataFrame) else records
        back = pd.unique(ids.astype("string").str.strip().dropna().to_numpy(dtype=object))
        return pd.Series(is_in(issued["form_id"], back), index=issued.index, name="form_id")

    issued["returned"] = came_back(accepted)
    agg = {"issued": ("form_id", "size"), "returned": ("returned", "sum")}
    if received is not None:
        issued["received"] = came_back(received)
        agg["received"] = ("received", "sum")
    if by:
        out = issued.groupby(by, sort=True, dropna=False).agg(**agg).reset_index()
    else:
        out = pd.DataFrame({name: [issued[col].size if how == "size" else int(issued[col].sum())]
                            for name, (col, how) in agg.items()})
    counts = list(agg)
    out[counts] = out[counts].astype(np.int64)
    out["response_rate"] = out["returned"] / out["issued"]
    if received is not None:
        out["return_rate"] = out["received"] / out["issued"]
        out = out[[*by, "issued", "returned", "response_rate", "received", "return_rate"]]
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
