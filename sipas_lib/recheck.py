r"""The re-check (phúc tra): intake of its results, reach and confirmation rates, answer agreement, flags.

Core layer (issue 13 §1–2). A unit being rated has every reason to fill in or steer its own questionnaires,
so seed 000 has the post office hand the respondents' contacts to the Department of Home Affairs for a
re-check, supervised by the Fatherland Front (MTTQ) and the Veterans' Association (Hội CCB). The sampling
stage flags a random re-check subsample (``sample.csv`` column ``recheck``, ``sampling_design.recheck_share``);
the re-checkers contact those respondents, ask whether they answered the questionnaire, and re-ask a few
criteria (``integrity.recheck_criteria``, default c01, c05, c10). Their results come back as ``recheck.csv``
(or ``.xlsx``; contract in ``docs/CONTRACTS.md``), read by :func:`read_recheck`.

Intake rules (the same as for the questionnaires, :mod:`sipas_lib.intake`)
------------------------------------------------------------------------
* A file that cannot be used — unreadable, no records, a required column missing, a column none of whose
  values has the right type (e.g. dates in the outcome column) — raises :class:`sipas_lib.inputs.InputError`
  naming the file, the row and the column.
* Every other problem sets the row aside in the quarantine table with the first rule it breaks
  (:data:`RULES`, in priority order) and a reason in English and Vietnamese; received = accepted + quarantined.
* Contact columns (``respondent_name/phone/address`` and every column of
  :data:`sipas_lib.schemas.PERSONAL_COLUMNS`) are dropped on reading; a wrong value is quoted only when it
  cannot identify anyone (short numbers, codes, dates), else described by its kind.

Decisions
---------
* **Form id not in ``sample.csv``** (never issued): quarantined (``form_id_not_issued``). **In the sample but
  not among the accepted questionnaires** (not returned, or set aside at intake): quarantined
  (``form_id_not_returned``) — there is no answer to confirm or compare.
* **Form id not flagged for the re-check in ``sample.csv``**: *accepted*, with ``planned = False``. Such a
  re-check is real information (e.g. a re-checker followed up a suspicious form) and is listed, but it is
  left out of every rate and of the agreement: only the random subsample makes the confirmation rate an
  estimate of the unit's share of genuine forms, and forms chosen because they looked odd would bias it.
  The summary counts them (``n_unplanned``), so nothing disappears.
* **Duplicated form id**: as at intake — an exact copy (same re-checker, date, outcome and answers as written)
  is set aside and the first copy kept (``duplicate_exact``); copies that differ are all set aside
  (``duplicate_conflict``): nobody can tell which result is the real one.
* **Re-asked answers** may be given whenever the respondent was reached; a row with answers and outcome
  ``unreachable`` contradicts itself and is set aside (``answers_unreached``). Agreement uses only respondents
  who *confirmed* having answered: the original answers are someone else's otherwise.
* **Re-check date** is required; one before the questionnaire's survey date is set aside (``recheck_date_order``).

Analysis
--------
:func:`recheck_summary` (per city, collection route and unit; shares of *planned* re-checks, unweighted —
the subsample is a simple random subsample of each unit's issued forms):

.. math:: \text{reach} = \frac{n_{reached}}{n_{rechecked}},\qquad
          \text{confirmation} = \frac{n_{confirmed}}{n_{reached}},\qquad
          \text{denial} = \frac{n_{denied}}{n_{reached}}

with a Wilson interval for the confirmation rate (:func:`sipas_lib.estimation.wilson_bounds`; Wilson 1927).
"Reached" = confirmed + denied + not_remember: a respondent who does not remember counts against
confirmation. :func:`recheck_agreement`: exact agreement and Cohen's kappa (unweighted, linear, quadratic)
of the re-asked against the original answers (:func:`sipas_lib.reliability.agreement.cohen_kappa`).
:func:`recheck_flags`: a unit is flagged when its confirmation rate is credibly below
``integrity.confirmation_threshold`` (default 0.90): the exact one-sided binomial test at :math:`(1-\text{level})/2`
(2.5 % at the default 95 %), i.e. the Clopper–Pearson upper limit below the threshold. Exact, not Wilson: the
flag must keep its false-flag rate at the small n of a unit's re-check (see :func:`recheck_flags`).
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib import schemas
from sipas_lib.estimation import wilson_bounds
from sipas_lib.inputs import InputError
from sipas_lib.instrument import Instrument, load_instrument
from sipas_lib.intake import (
    _MIN_VALUES_FOR_COLUMN_ERROR, QUARANTINE_COLUMNS, IntakeError, _code_labels, _norm_array, normalize_label,
    _parse_codes, parse_date_texts, spread_to_rows, safe_value_descriptions, form_id_problems, read_table,
)
from sipas_lib.reliability.agreement import KAPPA_WEIGHTS, cohen_kappa
from sipas_lib.schemas.integrity import OUTCOMES, REACHED_OUTCOMES, RECHECK_CONTACT_COLUMNS, RECHECKERS
from sipas_lib.schemas.intake_quality import INSTRUMENTS, ITEM_SCALES
from sipas_lib.texts import load_texts

__all__ = [
    "DEFAULT_CRITERIA", "RULES", "RECHECK_HEADERS", "RECHECKER_LABELS", "OUTCOME_LABELS", "RecheckIntake",
    "read_recheck", "recheck_summary", "recheck_agreement", "recheck_flags",
]

#: Criteria re-asked at the re-check unless ``integrity.recheck_criteria`` says otherwise.
DEFAULT_CRITERIA = ("c01", "c05", "c10")

#: Quarantine rules, in priority order (a row breaking several gets the first one's reason).
RULES = (
    "form_id_missing", "form_id_format", "form_id_check_digit", "duplicate_conflict", "duplicate_exact",
    "form_id_not_issued", "form_id_not_returned", "rechecked_by_value", "recheck_date_value",
    "recheck_date_order", "outcome_value", "answer_value", "answers_unreached",
)

#: Vietnamese headers of a re-check sheet -> column (on top of intake's questionnaire headers:
#: ``Mã số phiếu`` -> form_id, ``Câu 1`` -> c01 …).
RECHECK_HEADERS: dict[str, str] = {
    "Đơn vị phúc tra": "rechecked_by", "Cơ quan phúc tra": "rechecked_by", "Người phúc tra": "rechecked_by",
    "Ngày phúc tra": "recheck_date", "Thời gian phúc tra": "recheck_date",
    "Kết quả phúc tra": "outcome", "Kết quả": "outcome",
    "Họ tên người trả lời": "respondent_name", "Họ và tên người trả lời": "respondent_name",
    "Số điện thoại người trả lời": "respondent_phone", "Điện thoại người trả lời": "respondent_phone",
    "Địa chỉ người trả lời": "respondent_address",
}
#: Labels accepted for who re-checked, besides the codes (any letter case).
RECHECKER_LABELS: dict[str, str] = {
    "Mặt trận Tổ quốc": "MTTQ", "Ủy ban Mặt trận Tổ quốc": "MTTQ", "UBMTTQ": "MTTQ",
    "Hội Cựu chiến binh": "CCB", "Hội CCB": "CCB",
    "Sở Nội vụ": "SNV",
}
#: Labels accepted for the outcome, besides the codes (any letter case; ``not remember`` = ``not_remember``).
OUTCOME_LABELS: dict[str, str] = {
    "xác nhận": "confirmed", "xác nhận đã trả lời": "confirmed", "đã trả lời": "confirmed",
    "phủ nhận": "denied", "không tham gia": "denied", "không trả lời phiếu": "denied",
    "không nhớ": "not_remember",
    "không liên lạc được": "unreachable", "không liên hệ được": "unreachable", "không gặp được": "unreachable",
}

_TEXTS = load_texts("recheck")
_REQUIRED = ("form_id", "rechecked_by", "recheck_date", "outcome")


class RecheckIntake(NamedTuple):
    """What :func:`read_recheck` returns (unpacks as ``accepted, quarantine``).

    ``accepted`` meets the contract ``recheck``, ``quarantine`` the contract ``recheck_quarantine``
    (``docs/CONTRACTS.md``); ``accepted.attrs["notes"]`` lists what was read with a remark (columns dropped).
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _render(template: str, fields: Mapping[str, object], n: int) -> np.ndarray:
    """``template`` with ``{name}`` filled from per-row arrays (or scalars), for ``n`` rows, vectorized."""
    out = np.full(n, "", dtype=object)
    for literal, name, _, _ in string.Formatter().parse(template):
        out = out + literal  # element-wise str concatenation on object arrays
        if name is not None:
            value = fields[name]
            out = out + (np.asarray(value, dtype=object).astype(str).astype(object) if np.ndim(value) else str(value))
    return out


def _pct(values: np.ndarray, lang: str) -> np.ndarray:
    """Shares as percentages with one decimal: ``85.2%`` (en), ``85,2 %`` (vi)."""
    text = pd.Series(np.round(np.asarray(values, dtype=float) * 100, 1)).astype(str)
    return (text + "%" if lang == "en" else text.str.replace(".", ",", regex=False) + " %").to_numpy(dtype=object)


def _shown(column: pd.Series, *, issued: pd.Index | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the cell as quoted in a reason (en, vi) — the value when harmless, else its kind.

    A form id has the shape of a phone number (10 digits) and sits beside the respondent's phone in a re-check
    file, so in the form id column only ids of ``issued`` forms (sample.csv) are shown.
    """
    cats = column.cat.categories.to_numpy(dtype=object)
    codes = column.cat.codes.to_numpy()
    shown, kind_en, kind_vi = safe_value_descriptions(cats)
    if issued is not None:
        known = pd.Index(cats).isin(issued)
        kind_en[~known & (shown != "")] = _TEXTS["form_id_not_shown"]["en"]
        kind_vi[~known & (shown != "")] = _TEXTS["form_id_not_shown"]["vi"]
        quoted = np.array([f"'{v}'" for v in cats[known]], dtype=object)
        kind_en[known], kind_vi[known] = quoted, quoted
    return (spread_to_rows(kind_en, codes, _TEXTS["empty_value"]["en"]),
            spread_to_rows(kind_vi, codes, _TEXTS["empty_value"]["vi"]))


def _scale(criteria: Sequence[str], instrument: Instrument | None) -> tuple[int, int, dict[str, float]]:
    """(lowest, highest answer, answer labels) of the re-asked criteria."""
    if instrument is not None:
        unknown = [c for c in criteria if c not in instrument.item_codes]
        if unknown:
            raise ValueError(f"integrity.recheck_criteria: {', '.join(unknown)} not on form {instrument.id}")
        return int(instrument.scale_min), int(instrument.scale_max), _code_labels(instrument.scale_labels)
    unknown = [c for c in criteria if c not in ITEM_SCALES]
    if unknown:
        raise ValueError(f"integrity.recheck_criteria: {', '.join(unknown)} is not a criterion of any shipped form "
                         f"(e.g. {', '.join(DEFAULT_CRITERIA)})")
    scales = {(ITEM_SCALES[c][0], ITEM_SCALES[c][-1]) for c in criteria}
    if len(scales) > 1:
        raise ValueError(f"integrity.recheck_criteria: {', '.join(criteria)} are on different scales {sorted(scales)}")
    labels: dict[str, float] = {}
    for inst in INSTRUMENTS.values():
        if set(criteria) <= set(inst.item_codes):
            labels.update(_code_labels(inst.scale_labels))
    lo, hi = scales.pop()
    return int(lo), int(hi), labels


def _column_error(path: Path, rows: np.ndarray, column: str, bad: np.ndarray, present: np.ndarray,
                  values: pd.Series, expected: str) -> None:
    """Raise when a column's values are all of the wrong type (a shifted or mislabelled column)."""
    if present.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and (bad & present).sum() == present.sum():
        first = int(np.flatnonzero(bad & present)[0])
        example = _shown(values.iloc[[first]])[0][0]
        raise InputError(path, expected, row=int(rows[first]), column=column,
                         problem=f"no value in this column is {expected} (e.g. {example}); expected {expected}")


# --------------------------------------------------------------------------------------------
# Intake
# --------------------------------------------------------------------------------------------

def read_recheck(path: str | os.PathLike, sample: pd.DataFrame, responses: pd.DataFrame | None = None, *,
                 criteria: Sequence[str] = DEFAULT_CRITERIA, instrument: Instrument | str | None = None,
                 column_map: Mapping[str, str] | None = None) -> RecheckIntake:
    """Read a re-check results file (``recheck.csv`` / ``.xlsx``), validate it, set bad rows aside.

    Parameters
    ----------
    path
        The file (CSV UTF-8, XLSX or Parquet), read-only. Canonical headers (``form_id, rechecked_by,
        recheck_date, outcome, c01 …``) or Vietnamese ones (:data:`RECHECK_HEADERS`, ``Mã số phiếu``, ``Câu 1``).
    sample
        The year's ``sample.csv`` (``form_id, unit_id, survey_mode, recheck``; read with
        ``sipas_lib.inputs.read_input(data_dir, "sample")``): where each form belongs and whether it was
        drawn for the re-check.
    responses
        The accepted questionnaires (``form_id`` and ``survey_date`` if known; stage ``intake_quality``'s
        ``responses``). ``None`` skips the checks against them (``form_id_not_returned``, ``recheck_date_order``).
    criteria
        The re-asked criteria (``integrity.recheck_criteria``): required columns, answers on their scale.
    instrument
        The form the criteria's scale and answer labels come from (default: the shipped Phụ lục 5 forms).
    column_map
        Extra header -> column mapping.

    Returns
    -------
    RecheckIntake
        ``accepted`` (contract ``recheck``: ``form_id, unit_id, survey_mode, planned, rechecked_by,
        recheck_date, outcome, reached``, the criteria, ``source_file, source_row``; no contact details) and
        ``quarantine`` (contract ``recheck_quarantine``, one reason per row); received = accepted + quarantined.

    Raises
    ------
    InputError
        The file cannot be used (unreadable, empty, a required column missing, a column of the wrong type),
        naming file, row and column.
    """
    path = Path(path)
    criteria = list(criteria)
    inst = load_instrument(instrument) if isinstance(instrument, (str, os.PathLike)) else instrument
    lo, hi, answer_labels = _scale(criteria, inst)
    needed = [c for c in ("form_id", "unit_id", "survey_mode", "recheck") if c not in sample.columns]
    if needed:
        raise ValueError(f"sample needs the column(s) {', '.join(needed)} (sample.csv)")
    try:
        raw = read_table(path, column_map={**{c: c for c in (*_REQUIRED, *RECHECK_CONTACT_COLUMNS)},
                                           **RECHECK_HEADERS, **dict(column_map or {})})
    except IntakeError as exc:
        raise InputError(path, "a re-check file (CSV UTF-8 or XLSX) with a header row and one row per re-checked "
                               "form", problem=str(exc).removeprefix(f"{path}: ")) from None
    header_row = int(raw.attrs.get("header_row", 1))
    headers = raw.attrs.get("headers", {})
    required = [*_REQUIRED, *criteria]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        found = [headers.get(c, c) for c in raw.columns if c not in ("source_file", "source_row")]
        raise InputError(path, "the columns " + ", ".join(required), row=header_row, column=missing[0],
                         problem=f"missing column(s) {', '.join(repr(c) for c in missing)}; expected the columns "
                                 f"form_id, rechecked_by, recheck_date, outcome and the re-asked criteria "
                                 f"{', '.join(criteria)} (docs/CONTRACTS.md, recheck.csv); found {found}")
    contact = [c for c in raw.columns if c in schemas.PERSONAL_COLUMNS or c in RECHECK_CONTACT_COLUMNS]
    unused = [c for c in raw.columns if c not in (*required, *contact, "source_file", "source_row")]
    notes = []
    if contact:
        notes.append(f"{path.name}: contact column(s) {', '.join(headers.get(c, c) for c in contact)} dropped "
                     "(personal data)")
    if unused:
        notes.append(f"{path.name}: column(s) not used and dropped: {', '.join(headers.get(c, c) for c in unused)}")
    raw = raw[["source_file", "source_row", *required]].reset_index(drop=True)  # contacts go no further
    n = len(raw)
    rows = raw["source_row"].to_numpy(dtype=np.int64)

    # Form id and duplicates
    form_id = raw["form_id"].astype(object).where(raw["form_id"].notna(), None)
    problem = form_id_problems(form_id).to_numpy(dtype=object)
    valid = pd.isna(problem)
    compare = raw[["rechecked_by", "recheck_date", "outcome", *criteria]].astype(str)
    signature = pd.util.hash_pandas_object(compare, index=False).to_numpy()
    key = pd.Series(np.where(valid, form_id, None), dtype=object)
    copies = key.map(key.value_counts()).fillna(0).to_numpy()
    versions = pd.Series(signature).groupby(key).transform("nunique").fillna(0).to_numpy()
    conflict = valid & (copies > 1) & (versions > 1)
    exact = valid & (copies > 1) & (versions == 1) & key.duplicated().to_numpy()

    # The form in the sample and among the accepted questionnaires
    sample_ids = sample["form_id"].astype(str).str.strip()
    by_id = sample.assign(form_id=sample_ids).set_index("form_id")
    fid = form_id.astype(str).str.strip()
    in_sample = valid & fid.isin(by_id.index).to_numpy()
    unit_id = fid.map(by_id["unit_id"]).to_numpy(dtype=object)
    survey_mode = fid.map(by_id["survey_mode"]).to_numpy(dtype=object)
    planned = fid.map(by_id["recheck"]).fillna(False).astype(bool).to_numpy()
    not_returned = np.zeros(n, dtype=bool)
    survey_date = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    if responses is not None:
        returned = responses.assign(form_id=responses["form_id"].astype(str).str.strip()).set_index("form_id")
        not_returned = in_sample & ~fid.isin(returned.index).to_numpy()
        if "survey_date" in returned.columns:
            survey_date = pd.to_datetime(fid.map(returned["survey_date"]))

    # Who re-checked and the outcome: codes or labels, any letter case
    def coded(column: str, labels: Mapping[str, str], codes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lookup = {**{normalize_label(k): v for k, v in labels.items()}, **{normalize_label(c): c for c in codes}}
        cats = raw[column].cat.categories.to_numpy(dtype=object)
        per_value = pd.Series(_norm_array(cats), dtype=object).map(lookup).to_numpy(dtype=object)
        value = spread_to_rows(per_value, raw[column].cat.codes.to_numpy(), None)
        bad = pd.isna(value)
        _column_error(path, rows, column, bad, raw[column].notna().to_numpy(), raw[column],
                      "one of " + ", ".join(codes))
        return value, bad

    rechecked_by, by_bad = coded("rechecked_by", RECHECKER_LABELS, RECHECKERS)
    outcome, outcome_bad = coded("outcome", OUTCOME_LABELS, OUTCOMES)

    # Re-check date
    date_cats = raw["recheck_date"].cat.categories.to_numpy(dtype=object)
    dates, _ = parse_date_texts(date_cats)  # an ambiguous day/month comes back missing: not readable with certainty
    recheck_date = pd.Series(spread_to_rows(dates, raw["recheck_date"].cat.codes.to_numpy(), np.datetime64("NaT")))
    date_bad = recheck_date.isna().to_numpy()
    _column_error(path, rows, "recheck_date", date_bad, raw["recheck_date"].notna().to_numpy(), raw["recheck_date"],
                  "a date (2025-11-03 or 03/11/2025)")
    date_order = ~date_bad & (recheck_date < survey_date).to_numpy()

    # Re-asked answers
    answers = {}
    answer_bad = np.zeros(n, dtype=bool)
    answer_col = np.full(n, "", dtype=object)
    answered_col = np.full(n, "", dtype=object)
    for c in criteria:
        cats = raw[c].cat.categories.to_numpy(dtype=object)
        codes = raw[c].cat.codes.to_numpy()
        number, unreadable = _parse_codes(cats, answer_labels)
        wrong = unreadable | (number < lo) | (number > hi) | (number != np.floor(number))
        bad = spread_to_rows(wrong, codes, False)
        _column_error(path, rows, c, spread_to_rows(unreadable, codes, False), codes >= 0, raw[c],
                      f"an answer {lo}-{hi}")
        answer_col[bad & (answer_col == "")] = c
        answered_col[(codes >= 0) & (answered_col == "")] = c
        answer_bad |= bad
        answers[c] = spread_to_rows(np.where(wrong, np.nan, number), codes, np.nan).astype(float)
    unreached = (outcome == "unreachable") & (answered_col != "")

    # First rule broken, its column and the value shown in the reason
    fid_en, fid_vi = _shown(raw["form_id"], issued=by_id.index)
    shown = {c: _shown(raw[c]) for c in ("rechecked_by", "recheck_date", "outcome", *criteria)}
    answer_en = np.full(n, "", dtype=object)
    answer_vi = np.full(n, "", dtype=object)
    for c in criteria:
        at = answer_col == c
        answer_en[at] = c + " " + shown[c][0][at]
        answer_vi[at] = c + " " + shown[c][1][at]
    checks = [  # rule, rows, column, value (en, vi)
        ("form_id_missing", problem == "form_id_missing", "form_id", (fid_en, fid_vi)),
        ("form_id_format", problem == "form_id_format", "form_id", (fid_en, fid_vi)),
        ("form_id_check_digit", problem == "form_id_check_digit", "form_id", (fid_en, fid_vi)),
        ("duplicate_conflict", conflict, "form_id", (fid_en, fid_vi)),
        ("duplicate_exact", exact, "form_id", (fid_en, fid_vi)),
        ("form_id_not_issued", valid & ~in_sample, "form_id", (fid_en, fid_vi)),
        ("form_id_not_returned", not_returned, "form_id", (fid_en, fid_vi)),
        ("rechecked_by_value", by_bad, "rechecked_by", shown["rechecked_by"]),
        ("recheck_date_value", date_bad, "recheck_date", shown["recheck_date"]),
        ("recheck_date_order", date_order, "recheck_date", shown["recheck_date"]),
        ("outcome_value", outcome_bad, "outcome", shown["outcome"]),
        ("answer_value", answer_bad, answer_col, (answer_en, answer_vi)),
        ("answers_unreached", unreached, answered_col, (answered_col, answered_col)),
    ]
    assert [c[0] for c in checks] == list(RULES)
    rule = np.full(n, None, dtype=object)
    column = np.full(n, "", dtype=object)
    reason = np.full(n, None, dtype=object)
    reason_vi = np.full(n, None, dtype=object)
    for name, mask, col, (value_en, value_vi) in checks:
        hit = np.flatnonzero(np.asarray(mask, dtype=bool) & pd.isna(rule))
        if not len(hit):
            continue
        rule[hit] = name
        column[hit] = col[hit] if isinstance(col, np.ndarray) else col
        reason[hit] = _render(_TEXTS[f"rule_{name}"]["en"], {"value": value_en[hit]}, len(hit))
        reason_vi[hit] = _render(_TEXTS[f"rule_{name}"]["vi"], {"value": value_vi[hit]}, len(hit))

    good = pd.isna(rule)
    accepted = pd.DataFrame({
        "form_id": fid[good].to_numpy(dtype=object),
        "unit_id": unit_id[good], "survey_mode": survey_mode[good], "planned": planned[good],
        "rechecked_by": rechecked_by[good],
        "recheck_date": recheck_date[good].to_numpy().astype("datetime64[us]"),
        "outcome": outcome[good],
        "reached": np.isin(outcome[good], REACHED_OUTCOMES),
        **{c: answers[c][good] for c in criteria},
        "source_file": raw["source_file"].astype(str).to_numpy(dtype=object)[good],
        "source_row": rows[good],
    }).astype({c: "str" for c in ("form_id", "unit_id", "survey_mode", "rechecked_by", "outcome", "source_file")})
    quarantine = pd.DataFrame({
        "source_file": raw["source_file"].astype(str).to_numpy(dtype=object)[~good],
        "source_row": rows[~good],
        "form_id": np.where(in_sample, fid.to_numpy(dtype=object), "")[~good],
        "unit_id": pd.Series(unit_id, dtype=object).fillna("").to_numpy(dtype=object)[~good],
        "column": column[~good], "rule": rule[~good], "reason": reason[~good], "reason_vi": reason_vi[~good],
    }, columns=QUARANTINE_COLUMNS).astype({c: "str" for c in QUARANTINE_COLUMNS if c != "source_row"})
    if len(accepted) + len(quarantine) != n:
        raise AssertionError("re-check intake lost or double-counted rows: received != accepted + quarantined")
    accepted = schemas.validate("recheck", accepted, where=f"{path}: accepted re-checks")
    quarantine = schemas.validate("recheck_quarantine", quarantine, where=f"{path}: quarantine")
    accepted.attrs["notes"] = notes
    return RecheckIntake(accepted, quarantine)


# --------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------

#: (scope, grouping column) of the summary and agreement tables.
_SCOPES = (("city", None), ("survey_mode", "survey_mode"), ("unit", "unit_id"))
_SCOPE_COLUMNS = ["scope", "unit_id", "survey_mode"]


def _with_scope(table: pd.DataFrame, scope: str, key: str | None) -> pd.DataFrame:
    """Put the scope columns in front: ``scope``, and ``unit_id``/``survey_mode`` (empty unless grouped by it)."""
    out = table.drop(columns=[c for c in ("_city",) if c in table.columns])
    for column in ("unit_id", "survey_mode"):
        if column != key:
            out[column] = None
    out.insert(0, "scope", scope)
    return out


def recheck_summary(recheck: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    r"""Re-check outcomes, reach, confirmation (Wilson interval) and denial rates per city, route and unit.

    .. math:: \text{reach} = \frac{n_{reached}}{n_{rechecked}},\quad
              \text{confirmation} = \frac{n_{confirmed}}{n_{reached}}\ \text{(Wilson interval)},\quad
              \text{denial} = \frac{n_{denied}}{n_{reached}}

    Counts and shares are of *planned* re-checks (``planned``: the random subsample of ``sample.csv``),
    unweighted; re-checks of other forms are counted in ``n_unplanned`` only. Wilson (1927) *JASA* 22:209;
    when none or all of the respondents reached confirmed, the limit at 0 or 1 is the exact Clopper–Pearson
    one, as in :func:`sipas_lib.estimation.proportion`. The flag (:func:`recheck_flags`) uses the exact test.

    Parameters
    ----------
    recheck
        Accepted re-checks (contract ``recheck``, from :func:`read_recheck`).
    level
        Confidence level of the interval.

    Returns
    -------
    DataFrame
        Contract ``recheck_summary``: one row for the city, one per collection route (``survey_mode``) and one
        per unit with re-checks; shares empty where their base is 0.
    """
    if not 0.5 <= level < 1:
        raise ValueError(f"level must be a confidence level between 0.5 and 1; got {level!r}")
    data = recheck.assign(_city="city")
    z = float(stats.norm.ppf(0.5 + level / 2))
    planned = data[data["planned"]]
    parts = []
    for scope, key in _SCOPES:
        group = key or "_city"
        counts = (pd.crosstab(planned[group], planned["outcome"]).reindex(columns=list(OUTCOMES), fill_value=0)
                  if len(planned) else pd.DataFrame(columns=list(OUTCOMES), dtype=np.int64))
        counts.columns = [f"n_{c}" for c in OUTCOMES]
        unplanned = data.loc[~data["planned"], group].value_counts().rename("n_unplanned")
        table = counts.join(unplanned, how="outer").fillna(0).astype(np.int64)
        table.index.name = group
        table = table.reset_index()
        parts.append(_with_scope(table, scope, key))
    out = pd.concat(parts, ignore_index=True)
    out["n_reached"] = out[[f"n_{c}" for c in REACHED_OUTCOMES]].sum(axis=1).astype(np.int64)
    out["n_rechecked"] = out["n_reached"] + out["n_unreachable"]
    rechecked = out["n_rechecked"].to_numpy(dtype=float)
    reached = out["n_reached"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["reach_rate"] = np.where(rechecked > 0, reached / rechecked, np.nan)
        confirmation = np.where(reached > 0, out["n_confirmed"] / reached, np.nan)
        low, high = wilson_bounds(confirmation, reached, z)
        # 0 or all confirmed: the exact Clopper-Pearson limit, as sipas_lib.estimation.proportion does
        alpha = (1 - level) / 2
        low = np.where(confirmation == 1, stats.beta.ppf(alpha, reached, 1), low)
        high = np.where(confirmation == 0, stats.beta.ppf(1 - alpha, 1, reached), high)
        out["denial_rate"] = np.where(reached > 0, out["n_denied"] / reached, np.nan)
    out["confirmation_rate"] = confirmation
    out["ci_low"] = np.clip(low, 0.0, 1.0)
    out["ci_high"] = np.clip(high, 0.0, 1.0)
    return schemas.validate("recheck_summary", out, where="re-check summary")


def recheck_agreement(recheck: pd.DataFrame, responses: pd.DataFrame, *,
                      criteria: Sequence[str] = DEFAULT_CRITERIA, level: float = 0.95) -> pd.DataFrame:
    r"""Agreement of the re-asked answers with the original ones: exact agreement and Cohen's kappa.

    .. math:: \kappa_w = \frac{p_o - p_c}{1 - p_c}

    (unweighted, linear and quadratic weights on the criteria's scale, interval of Fleiss, Cohen & Everitt
    1969; :func:`sipas_lib.reliability.agreement.cohen_kappa`). Pairs come from planned re-checks whose
    respondent *confirmed* having answered, where both the original and the re-asked answer are given. Each
    criterion alone, and all of them pooled (``criterion = "all"``), per city, collection route and unit.

    Parameters
    ----------
    recheck
        Accepted re-checks (contract ``recheck``).
    responses
        The accepted questionnaires (``form_id`` and the criteria columns).
    criteria
        The re-asked criteria (``integrity.recheck_criteria``); they must share one scale.
    level
        Confidence level of kappa's interval.

    Returns
    -------
    DataFrame
        Contract ``recheck_agreement``: ``scope, unit_id, survey_mode, criterion, weights, n,
        exact_agreement, kappa, se, ci_low, ci_high``; scopes without a pair are left out.
    """
    criteria = list(criteria)
    lo, hi, _ = _scale(criteria, None)
    missing = [c for c in ("form_id", *criteria) if c not in responses.columns]
    if missing:
        raise ValueError(f"responses need the column(s) {', '.join(missing)}")
    confirmed = recheck[recheck["planned"] & (recheck["outcome"] == "confirmed")]
    original = responses[["form_id", *criteria]].assign(form_id=responses["form_id"].astype(str).str.strip())
    pairs = confirmed[["form_id", "unit_id", "survey_mode", *criteria]].merge(
        original, on="form_id", how="inner", suffixes=("", "_original"))
    long = pd.concat([
        pairs[["unit_id", "survey_mode"]].assign(criterion=c, original=pairs[f"{c}_original"].to_numpy(dtype=float),
                                                 rechecked=pairs[c].to_numpy(dtype=float))
        for c in criteria], ignore_index=True)
    long = pd.concat([long, long.assign(criterion="all")], ignore_index=True).assign(_city="city")
    columns = schemas.contract("recheck_agreement").columns
    long = long.dropna(subset=["original", "rechecked"])
    if long.empty:
        return schemas.validate("recheck_agreement", pd.DataFrame(columns=columns).astype(
            {"n": np.int64, **{c: float for c in ("exact_agreement", "kappa", "se", "ci_low", "ci_high")}}))
    parts = []
    for scope, key in _SCOPES:
        kappa = cohen_kappa(long, "original", "rechecked", categories=list(range(lo, hi + 1)),
                            weights=KAPPA_WEIGHTS, by=[key or "_city", "criterion"], level=level)
        parts.append(_with_scope(kappa, scope, key))
    out = pd.concat(parts, ignore_index=True)[columns]
    return schemas.validate("recheck_agreement", out, where="re-check agreement")


def recheck_flags(summary: pd.DataFrame, *, threshold: float = 0.90, level: float = 0.95) -> pd.DataFrame:
    r"""Flag units whose confirmation rate is credibly below ``threshold``: exact one-sided binomial test.

    With :math:`x` confirmations among :math:`n` respondents reached and :math:`\alpha = (1-\text{level})/2`:

    .. math:: p = P(X \le x \mid X \sim \mathrm{Bin}(n, \text{threshold})),\qquad
              \text{flagged} \iff p < \alpha \iff \text{upper}_{CP} < \text{threshold}

    where :math:`\text{upper}_{CP} = B_{1-\alpha}(x+1, n-x)` is the Clopper–Pearson upper limit at the run's
    level (Clopper & Pearson 1934, *Biometrika* 26:404). A unit whose true confirmation rate is at the threshold
    is flagged with probability at most :math:`\alpha` (2.5 % at the default level) *whatever n*; a unit with a
    higher true rate, less. The exact limit is used here rather than the summary's Wilson limit because the
    Wilson test exceeds its size at small n, which is the re-check's usual n (5–10 % of a unit's forms): with
    the true rate at 0.90 it flags up to 8 % of units (n = 5), and a unit with one respondent reached who did
    not confirm has a Wilson upper limit of 79 % (Clopper–Pearson: 97.5 %). No correction across units:
    the rate is per unit.

    Parameters
    ----------
    summary
        :func:`recheck_summary` (its ``unit`` rows are used).
    threshold
        ``integrity.confirmation_threshold`` (default 0.90), a share.
    level
        Confidence level of the two-sided Clopper–Pearson interval reported (the run's ``common.level``).

    Returns
    -------
    DataFrame
        Contract ``recheck_flags`` (:func:`sipas_lib.schemas.integrity.flag_columns`): one row per unit with
        ``signal = "recheck_confirmation"``, ``value`` (confirmation rate), ``reference`` (threshold), ``n``
        (respondents reached), ``p_value``, ``lower``/``upper`` (Clopper–Pearson), ``flagged`` and the reason in
        English and Vietnamese. A unit where nobody was reached is not flagged (empty value and limits).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"integrity.confirmation_threshold must be a share between 0 and 1; got {threshold!r}")
    if not 0.5 <= level < 1:
        raise ValueError(f"level must be a confidence level between 0.5 and 1; got {level!r}")
    units = summary[summary["scope"] == "unit"].reset_index(drop=True)
    x = units["n_confirmed"].to_numpy(dtype=float)
    n = units["n_reached"].to_numpy(dtype=float)
    known = n > 0
    alpha = (1 - level) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = np.where(known, stats.binom.cdf(x, n, threshold), np.nan)
        lower = np.where(x > 0, stats.beta.ppf(alpha, x, n - x + 1), 0.0)
        upper = np.where(x < n, stats.beta.ppf(1 - alpha, x + 1, n - x), 1.0)
    flagged = known & (np.nan_to_num(p_value, nan=1.0) < alpha)
    out = pd.DataFrame({
        "unit_id": units["unit_id"].astype(str), "signal": "recheck_confirmation",
        "value": np.where(known, x / np.where(known, n, 1), np.nan), "reference": float(threshold),
        "n": units["n_reached"].astype("Int64"), "p_value": p_value,
        "lower": np.where(known, lower, np.nan), "upper": np.where(known, upper, np.nan), "flagged": flagged,
    })
    for lang, column in (("en", "reason"), ("vi", "reason_vi")):
        fields = {"rate": _pct(out["value"], lang), "low": _pct(out["lower"], lang), "high": _pct(out["upper"], lang),
                  "threshold": _pct(np.full(len(out), threshold), lang), "n": out["n"].astype(str).to_numpy()}
        low_text = _render(_TEXTS["flag_low"][lang], fields, len(out))
        ok_text = _render(_TEXTS["flag_ok"][lang], fields, len(out))
        out[column] = np.where(~known, _TEXTS["flag_none"][lang], np.where(flagged, low_text, ok_text))
    return schemas.validate("recheck_flags", out, where="re-check flags")
