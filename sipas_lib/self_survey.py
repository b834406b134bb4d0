"""The units' own surveys (Phụ lục 2) beside the independent SIPAS survey (Phụ lục 5).

Core layer. Hà Nội's plan 143/KH-UBND (shared/seeds/003) has every department and local unit survey
the people it serves at its one-stop counter, every month, with the eight-question form of
Phụ lục 2 (``sipas_lib/instruments/hanoi_pl2_self.yaml``). A unit that runs its own survey has
every reason to find itself well liked; set beside the independent survey on the questions both
forms ask, a unit whose own figure runs far above the independent one is a second fieldwork
integrity signal, and a useful warning for the unit itself.

1. :func:`read_self_survey` takes a year's ``self_survey.csv`` (or ``.xlsx``/``.parquet``) in with the
   rules of questionnaire intake (:mod:`sipas_lib.intake`, whose readers it uses): a file that cannot
   be used raises :class:`sipas_lib.inputs.InputError` naming file, row and column; a record that
   breaks a rule is set aside with one reason (:data:`RULES`, first rule broken) and never lost:
   received = accepted + quarantined for every unit. Wrong values are described by kind and never
   echoed when they could be personal data. Columns the contract does not know (the free-text
   "which procedure", any contact detail) are dropped.
2. :func:`monthly_self_satisfaction` gives each unit's own-survey satisfaction by month.
3. :func:`load_mapping` reads which Phụ lục 5 criteria each Phụ lục 2 question asks about
   (``sipas_lib/instruments/pl2_to_pl5.csv``, each pair with the seed's wording quoted);
   :func:`shared_criteria_rule` turns it into an :class:`sipas_lib.index.AggregationRule`, so a
   caller holding the survey design can compute the independent figure on the shared criteria
   with its exact design-based standard error.
4. :func:`self_survey_gaps` sets the two side by side per unit and question, and
   :func:`self_survey_flags` flags a unit whose own survey runs above the independent one beyond
   the uncertainty of both.

Definitions
-----------
* Satisfied = rating 4 or 5 (the instrument's ``satisfied_min``), as in :mod:`sipas_lib.index`.
* Own-survey share of question k in a group g (a unit, or a unit-month):
  :math:`p_{gk} = \\sum_{i \\in g} 1[y_{ik} \\ge 4] / n_{gk}` with :math:`n_{gk}` the forms answering it;
  every form counts once (the own survey has no design weights).
* Composite = the plain mean of the question shares compared, :math:`\\bar p_g = K_g^{-1}\\sum_k p_{gk}`.
* *As if random.* The own survey is a convenience sample of the people at the counter, so no
  interval can claim design-based coverage. Intervals are computed as if the forms were a simple
  random sample with replacement: the delta-method (Taylor) variance
  :math:`V = \\sum_{i \\in g} z_i^2` with :math:`z_i = K_g^{-1}\\sum_k 1[i \\text{ answered } k]
  (x_{ik} - p_{gk}) / n_{gk}`, which for one question is the binomial :math:`p(1-p)/n` (Wolter 2007,
  *Introduction to Variance Estimation*, 2nd ed., ch. 6). Monthly intervals are Wilson score
  intervals (:func:`sipas_lib.index.score_interval`) on :math:`n^* = \\bar p(1-\\bar p)/V` (= n for
  one question), labelled ``interval_basis = "as_if_random"``.
* Independent figure of question k for unit u: the mean of the design-based indices
  :math:`p_{uj}` of its mapped criteria j (stage ``index_ranking``'s ``indices`` table, item rows);
  the composite is the mean over the questions compared. Its standard error is either exact (rows
  ``level == "overall"`` computed with :func:`shared_criteria_rule`) or, from item rows alone, the
  upper bound :math:`\\mathrm{SD}(\\sum_j a_j \\hat p_j) \\le \\sum_j a_j \\mathrm{SE}(\\hat p_j)`
  (Minkowski's inequality; exact when the criteria are perfectly correlated), so the comparison
  never overstates its certainty (``reference_se_method`` says which was used).
* Gap = own − independent; the two samples are independent, so
  :math:`\\mathrm{SE}(\\text{gap})^2 = V + \\mathrm{SE}_{ref}^2` and the interval is gap ± z·SE.
  A unit is flagged when the lower limit exceeds the tolerance ``integrity.self_survey_gap``
  (default 0.05: five points a counter survey may run high from courtesy alone), i.e. when its own
  survey is above the independent one by more than the tolerance beyond both uncertainties. The
  one-sided p-value of "gap ≤ tolerance" is reported beside it. Units with fewer than ``min_n``
  own-survey forms (or ``min_n_independent`` independent respondents) are not compared.

Error rates (``tests/test_self_survey.py``, 2,000 simulated units, 40 independent respondents and
150 own-survey forms each, exact design-based SE): the nominal false-flag rate of a clean unit is
(1 − level)/2 = 2.5 % per unit at the default level, reached only when its own survey runs exactly
the tolerance above the truth (measured 1.0 %); with the simulator's courtesy bias of about two
points, 0.0 %. An inflating unit (own survey ≈ 99 %) is flagged 46 % of the time overall and 92 % of
the time when its true figure is at most 85 %: a unit near 100 % cannot run far above it, and 40
respondents bound the precision. With the upper bound instead of the exact SE, fewer units are
flagged (never more): on the 2025 demo the bound finds one of the two inflating units, the exact SE both.

Result tables (contracts in :mod:`sipas_lib.schemas.integrity`): ``self_survey_monthly``,
``self_survey_gaps``, ``self_survey_flags``; the intake's ``quarantine`` and ``summary``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib import estimation, index
from sipas_lib.config import PACKAGE_DIR
from sipas_lib.inputs import InputError, optional_year_file
from sipas_lib.instrument import Instrument, load_instrument
from sipas_lib.intake import (  # the questionnaires' readers: one reading of codes, dates and wrong values
    _MIN_VALUES_FOR_COLUMN_ERROR,
    IntakeError,
    _code_labels,
    _coded,
    _norm_array,
    _norm_values,
    _parse_codes,
    parse_date_texts,
    spread_to_rows,
    safe_value_descriptions,
    _value_messages,
    read_table,
)
from sipas_lib.schemas.integrity import INTERVAL_BASES, SELF_CODE, SELF_SURVEY_RULES
from sipas_lib.texts import load_texts

__all__ = [
    "INSTRUMENT",
    "MAPPING_FILE",
    "FILE_NAMES",
    "RULES",
    "SELF_CODE",
    "SHARED_RULE_NAME",
    "SIGNAL",
    "SelfSurveyIntake",
    "self_survey_path",
    "read_self_survey",
    "monthly_self_satisfaction",
    "load_mapping",
    "shared_criteria_rule",
    "shared_index",
    "self_survey_gaps",
    "self_survey_flags",
]

#: The self-survey form of plan 143 (Phụ lục 2).
INSTRUMENT = "hanoi_pl2_self"
#: Phụ lục 2 question -> Phụ lục 5 criteria, with the seed's wording quoted for each pair.
MAPPING_FILE = PACKAGE_DIR / "instruments" / "pl2_to_pl5.csv"
#: Names a year's self-survey file may have in its folder (one of them).
FILE_NAMES = ("self_survey.csv", "self_survey.xlsx", "self_survey.parquet")
#: Name of the aggregation rule of :func:`shared_criteria_rule` (the ``rule`` column of its index rows).
SHARED_RULE_NAME = "pl2_shared"
#: The integrity signal's name in ``self_survey_flags.signal``.
SIGNAL = "self_survey_above_independent"
#: Record rules in priority order (a record breaking several gets the first one's reason).
RULES = SELF_SURVEY_RULES
INTERVAL_BASIS = INTERVAL_BASES[0]  # "as_if_random": the own survey is a convenience sample
REQUIRED_COLUMNS = ("unit_id", "survey_date")
QUARANTINE_COLUMNS = ["source_file", "source_row", "unit_id", "column", "rule", "reason", "reason_vi"]
SUMMARY_COLUMNS = ["source_file", "unit_id", "received", "accepted", "quarantined"]
_TEXT = load_texts("self_survey")


def _instrument(instrument: Instrument | str) -> Instrument:
    return load_instrument(instrument) if not isinstance(instrument, Instrument) else instrument


def _headers(instrument: Instrument) -> dict[str, str]:
    """Vietnamese headers of the paper form -> canonical columns ("Câu 1" is s1 here, not Phụ lục 5's c01)."""
    numbers = instrument.items.set_index("code")["number"]
    return {"Đơn vị": "unit_id", "Ngày khảo sát": "survey_date",
            **{f"Câu {int(numbers[code])}": code for code in instrument.item_codes}}


# --------------------------------------------------------------------------------------------
# Intake
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SelfSurveyIntake:
    """What :func:`read_self_survey` returns.

    Attributes
    ----------
    accepted
        One row per accepted form: ``unit_id, survey_date, year, month``, the item columns (1–5 or
        NaN), ``source_file, source_row``. No free text, no personal data.
    quarantine
        One row per form set aside: ``source_file, source_row, unit_id, column, rule, reason, reason_vi``.
    summary
        ``source_file, unit_id, received, accepted, quarantined`` with received = accepted + quarantined.
    notes
        File-level remarks that did not stop intake (columns dropped).
    """

    accepted: pd.DataFrame
    quarantine: pd.DataFrame
    summary: pd.DataFrame
    notes: tuple[str, ...] = field(default=())


def self_survey_path(data_dir: str | os.PathLike) -> Path | None:
    """The year's self-survey file in ``data_dir`` (one of :data:`FILE_NAMES`), or ``None`` when there is none.

    Raises
    ------
    InputError
        When two of them exist (which one holds the year's forms cannot be guessed).
    """
    return optional_year_file(data_dir, "self_survey", "self-survey",
                              suffixes=tuple(Path(name).suffix for name in FILE_NAMES))


def _as_input_error(exc: IntakeError, path: Path) -> InputError:
    """intake's file-level error as an InputError (row and column kept as attributes)."""
    text = re.sub(rf"^{re.escape(str(path))}[:,] ", "", str(exc))
    where = re.match(r"row (\d+)(?: \(header\))?(?: of sheet '[^']*')?(?:, column '([^']*)')?: ", text)
    if where:
        return InputError(path, "a self-survey file (docs/CONTRACTS.md)", row=int(where.group(1)),
                          column=where.group(2), problem=text[where.end():])
    return InputError(path, "a self-survey file (docs/CONTRACTS.md)", problem=text)


def _unit_lookup(units: pd.DataFrame) -> pd.Series:
    """Normalized unit id, Vietnamese or English name -> unit_id (as intake reads a unit cell)."""
    keys = pd.concat([pd.Series(units["unit_id"].to_numpy(), index=_norm_values(units[column].astype("string")))
                      for column in ("unit_id", "name_vi", "name_en") if column in units.columns])
    return keys[~keys.index.duplicated()]


def _shown(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``" 'value'"`` when the value cannot identify anyone, else ``" (its kind)"`` (en, vi)."""
    shown, kind_en, kind_vi = (pd.Series(a, dtype=object).astype(str) for a in safe_value_descriptions(values))
    return tuple(spread_to_rows(np.where(shown != "", " " + shown, " (" + kind + ")").astype(object), codes, "")
                 for kind in (kind_en, kind_vi))


def read_self_survey(path: str | os.PathLike, units: pd.DataFrame, *, year: int | None = None,
                     instrument: Instrument | str = INSTRUMENT) -> SelfSurveyIntake:
    """Read and validate a year's self-survey file (Phụ lục 2): one row per form a unit collected.

    Parameters
    ----------
    path
        ``self_survey.csv`` (UTF-8, ``,`` ``;`` or tab separated), ``.xlsx`` or ``.parquet``, read-only.
        Columns: ``unit_id`` (id, or the unit's Vietnamese or English name), ``survey_date`` (ISO
        ``2025-03-14``, ``14/03/2025`` or an Excel date) and the form's item codes ``s1`` … ``s8``
        (1–5, the scale's labels such as "Hài lòng" also read, or empty). The paper form's headers
        (``Đơn vị``, ``Ngày khảo sát``, ``Câu 1`` … ``Câu 8``) are understood.
    units
        The year's units registry (``unit_id, name_vi, name_en``).
    year
        The survey year: a form dated in another year is set aside (its month is unknown to the
        year). ``None`` skips the check.
    instrument
        The self-survey form (id or :class:`~sipas_lib.instrument.Instrument`).

    Returns
    -------
    SelfSurveyIntake
        Accepted forms, quarantine (one reason per form, rules in :data:`RULES` order) and the
        counts by unit (received = accepted + quarantined).

    Raises
    ------
    InputError
        The file cannot be used: missing, unreadable, a required column missing, or a whole column
        none of whose values can be read (file, row and column named).

    Examples
    --------
    >>> # intake = read_self_survey("data/demo/self_survey.csv", units, year=2025)
    >>> # intake.summary.groupby("unit_id")[["received", "accepted", "quarantined"]].sum()
    """
    path = Path(path)
    inst = _instrument(instrument)
    items = list(inst.item_codes)
    try:
        raw = read_table(path, column_map=_headers(inst))
    except IntakeError as exc:
        raise _as_input_error(exc, path) from None
    headers = dict(raw.attrs.get("headers", {}))
    head_row = int(raw.attrs.get("header_row") or 1)
    raw.attrs = {}
    missing = [c for c in (*REQUIRED_COLUMNS, *items) if c not in raw.columns]
    if missing:
        inverse = {v: k for k, v in _headers(inst).items()}
        expected = ", ".join((*REQUIRED_COLUMNS, *items))
        raise InputError(path, "the columns " + expected, row=head_row, column=missing[0],
                         problem="missing column(s) " + ", ".join(f"{c!r} (header {inverse[c]!r})" for c in missing)
                                 + f"; expected the columns {expected} (docs/CONTRACTS.md)")
    notes = []
    known = ("source_file", "source_row", *REQUIRED_COLUMNS, *items)
    dropped = [headers.get(c, c) for c in raw.columns if c not in known]
    if dropped:
        notes.append(f"{path}: columns not part of the self-survey contract, dropped: {dropped}")
    n = len(raw)
    source_file = raw["source_file"].astype(str).to_numpy(dtype=object)
    source_row = raw["source_row"].to_numpy(dtype=np.int64)

    def column_error(col: str, codes: np.ndarray, values: np.ndarray, unreadable: np.ndarray, expected: str) -> None:
        """A column none of whose (≥ 3) values can be read is a problem of the file, not of each record."""
        rows = spread_to_rows(unreadable, codes, False)
        if rows.sum() >= _MIN_VALUES_FOR_COLUMN_ERROR and rows.sum() == (codes >= 0).sum():
            example = safe_value_descriptions(values[unreadable][:1])[1][0]  # the value if harmless, else its kind
            raise InputError(path, expected, row=int(source_row[np.flatnonzero(rows)[0]]), column=headers.get(col, col),
                             problem=f"no value in this column can be read (e.g. {example}); expected {expected}")

    # Unit: id or name
    u_codes, u_values = _coded(raw["unit_id"])
    uid_of_value = pd.Series(_norm_array(u_values), dtype=object).map(_unit_lookup(units)).to_numpy(dtype=object)
    unit = spread_to_rows(uid_of_value, u_codes, None)
    unit_missing = u_codes < 0
    unit_unknown = ~unit_missing & pd.isna(unit)
    unit_en, unit_vi = _shown(u_values, u_codes)

    # Survey date: needed for the month
    d_codes, d_values = _coded(raw["survey_date"])
    date_of_value, ambiguous_value = parse_date_texts(d_values)
    unreadable_value = np.isnat(date_of_value) & ~ambiguous_value
    column_error("survey_date", d_codes, d_values, unreadable_value, "dates like 2025-10-14 or 14/10/2025")
    date_missing = d_codes < 0
    date_bad = spread_to_rows(unreadable_value, d_codes, False)
    date_ambiguous = spread_to_rows(ambiguous_value, d_codes, False)
    survey_date = spread_to_rows(date_of_value, d_codes, np.datetime64("NaT")).astype("datetime64[ns]")
    outside = np.zeros(n, dtype=bool)
    if year is not None:
        outside = ~np.isnat(survey_date) & (pd.DatetimeIndex(survey_date).year.to_numpy() != int(year))
    date_en, date_vi = _shown(d_values, d_codes)

    # Items: codes 1-5 or the scale's labels; the first wrong item of a form names its reason
    labels = _code_labels(inst.scale_labels)
    lo, hi = inst.scale_min, inst.scale_max
    answers = np.full((n, len(items)), np.nan)
    item_bad = np.zeros(n, dtype=bool)
    item_col = np.full(n, None, dtype=object)
    item_en = np.full(n, None, dtype=object)
    item_vi = np.full(n, None, dtype=object)
    for k, col in enumerate(items):
        codes, values = _coded(raw[col])
        value, unreadable = _parse_codes(values, labels)
        column_error(col, codes, values, unreadable, f"whole numbers {lo}-{hi} or empty")
        out_range = ~unreadable & ((value < lo) | (value > hi))
        bad_value = unreadable | out_range | (~unreadable & ~out_range & (value != np.floor(value)))
        en, vi = _value_messages(values, unreadable, out_range, col, lo, hi)
        bad = spread_to_rows(bad_value, codes, False)
        first = bad & ~item_bad
        item_col[first], item_en[first], item_vi[first] = col, en[codes[first]], vi[codes[first]]
        item_bad |= bad
        answers[:, k] = spread_to_rows(np.where(bad_value, np.nan, value), codes, np.nan)
    empty = ~item_bad & np.isnan(answers).all(axis=1)

    masks = {
        "unit_missing": (unit_missing, "unit_id"),
        "unit_unknown": (unit_unknown, "unit_id"),
        "survey_date_missing": (date_missing, "survey_date"),
        "survey_date_value": (date_bad, "survey_date"),
        "survey_date_ambiguous": (date_ambiguous, "survey_date"),
        "survey_date_outside_year": (outside, "survey_date"),
        "item_value": (item_bad, item_col),
        "empty_form": (empty, ""),
    }
    rule = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)
    for name in RULES:
        mask, col = masks[name]
        hit = mask & (rule == None)  # noqa: E711  (element-wise on an object array)
        rule[hit] = name
        column[hit] = col[hit] if isinstance(col, np.ndarray) else col
    bad_rows = np.flatnonzero(rule != None)  # noqa: E711
    reason, reason_vi = _reasons(rule[bad_rows], bad_rows, {"unit": (unit_en, unit_vi), "date": (date_en, date_vi),
                                                           "item": (item_en, item_vi)}, year)
    # the unit as written where it is unknown: quoted only when it cannot identify anyone
    written = spread_to_rows(np.where(safe_value_descriptions(u_values)[0] != "", u_values,
                                      "(unit not shown)").astype(object), u_codes, "(missing)")
    unit_shown = np.where(pd.isna(unit), written, unit).astype(object)
    quarantine = pd.DataFrame({"source_file": source_file[bad_rows], "source_row": source_row[bad_rows],
                               "unit_id": unit_shown[bad_rows], "column": column[bad_rows], "rule": rule[bad_rows],
                               "reason": reason, "reason_vi": reason_vi}, columns=QUARANTINE_COLUMNS)

    good = np.flatnonzero(rule == None)  # noqa: E711
    dates = pd.DatetimeIndex(survey_date[good])
    accepted = pd.DataFrame({"unit_id": unit[good].astype(str), "survey_date": dates.astype("datetime64[us]"),
                             "year": dates.year.astype("int64"), "month": dates.month.astype("int64")})
    for k, col in enumerate(items):
        accepted[col] = answers[good, k]
    accepted["source_file"] = source_file[good].astype(str)
    accepted["source_row"] = source_row[good]

    counts = pd.DataFrame({"source_file": source_file, "unit_id": unit_shown, "accepted": rule == None})  # noqa: E711
    summary = (counts.groupby(["source_file", "unit_id"], sort=True)["accepted"]
               .agg(received="size", accepted="sum").reset_index())
    summary["accepted"] = summary["accepted"].astype("int64")
    summary["quarantined"] = summary["received"] - summary["accepted"]
    if int(summary["received"].sum()) != len(accepted) + len(quarantine):  # pragma: no cover - invariant
        raise AssertionError("self-survey intake lost records: received != accepted + quarantined")
    return SelfSurveyIntake(accepted.reset_index(drop=True), quarantine, summary[SUMMARY_COLUMNS], tuple(notes))


def _reasons(rules: np.ndarray, rows: np.ndarray, shown: Mapping[str, tuple[np.ndarray, np.ndarray]],
             year: int | None) -> tuple[np.ndarray, np.ndarray]:
    """English and Vietnamese reason of each quarantined record (templates of texts/self_survey.yaml).

    A template has at most one per-record placeholder (``{found}``, the value as shown, or
    ``{message}``, the item's message), so each reason is prefix + value + suffix, built column-wise.
    """
    reason = np.empty(len(rows), dtype=object)
    reason_vi = np.empty(len(rows), dtype=object)
    source = {"unit_unknown": "unit", "survey_date_value": "date", "survey_date_ambiguous": "date",
              "survey_date_outside_year": "date", "item_value": "item"}
    for name in pd.unique(rules):  # at most len(RULES) rules
        at = np.flatnonzero(rules == name)
        for which, (lang, out) in enumerate((("en", reason), ("vi", reason_vi))):
            prefix, _, suffix = _TEXT[f"rule_{name}"][lang].format(found="\0", message="\0", year=year).partition("\0")
            values = shown[source[name]][which][rows[at]] if name in source else np.full(len(at), "", dtype=object)
            out[at] = (prefix + pd.Series(values, dtype=object).astype(str) + suffix).to_numpy(dtype=object)
    return reason, reason_vi


# --------------------------------------------------------------------------------------------
# Own-survey satisfaction
# --------------------------------------------------------------------------------------------

def _shares(data: pd.DataFrame, by: Sequence[str], items: Sequence[str], satisfied_min: float,
            use: np.ndarray | None = None) -> pd.DataFrame:
    """Share satisfied per group and question, and their composite, with the as-if-random variance.

    ``use`` (rows × items, optional) leaves answers out of the computation (questions not compared).
    Returns ``<by>, level (item|overall), code, n, estimate, variance`` (see the module docstring).
    """
    y = data[list(items)].to_numpy(dtype=float)
    answered = ~np.isnan(y) if use is None else ~np.isnan(y) & use
    x = (y >= satisfied_min) & answered
    grouped = data.groupby(list(by), sort=True, observed=True)
    g = grouped.ngroup().to_numpy()
    groups = grouped.size().index.to_frame(index=False)
    G, K = len(groups), len(items)
    n_k = estimation.group_sum(g, answered, G)
    sat = estimation.group_sum(g, x, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_k > 0, sat / n_k, np.nan)
        item_var = p * (1 - p) / n_k
    n_items = (n_k > 0).sum(axis=1)
    z = np.where(answered, (x - np.nan_to_num(p)[g]) / np.where(n_k > 0, n_k, 1.0)[g], 0.0).sum(axis=1)
    z = z / np.maximum(n_items, 1)[g]
    with np.errstate(invalid="ignore"):
        composite = np.where(n_items > 0, np.nansum(p, axis=1) / np.maximum(n_items, 1), np.nan)
    overall = groups.assign(level="overall", code=SELF_CODE,
                            n=np.bincount(g, weights=answered.any(axis=1), minlength=G).astype("int64"),
                            estimate=composite,
                            variance=np.where(n_items > 0, np.bincount(g, weights=z**2, minlength=G), np.nan))
    per_item = groups.loc[groups.index.repeat(K)].reset_index(drop=True).assign(
        level="item", code=np.tile(list(items), G), n=n_k.ravel().astype("int64"), estimate=p.ravel(),
        variance=item_var.ravel())
    return pd.concat([per_item, overall], ignore_index=True)


def monthly_self_satisfaction(accepted: pd.DataFrame, instrument: Instrument | str = INSTRUMENT, *,
                              level: float = 0.95) -> pd.DataFrame:
    """Each unit's own-survey satisfaction by month: per question and the composite.

    Parameters
    ----------
    accepted
        Accepted forms (:attr:`SelfSurveyIntake.accepted`): ``unit_id, year, month`` and the item columns.
    instrument
        The self-survey form (its item codes and satisfied threshold).
    level
        Confidence level of the intervals.

    Returns
    -------
    DataFrame
        ``unit_id, year, month, level (item|overall), code (s1…, SELF), n, estimate, se, ci_low,
        ci_high, interval_basis``. ``estimate`` = share rating 4–5 (0–1); the composite is the mean
        of the question shares. Intervals are Wilson score intervals *as if* the forms were a simple
        random sample (``interval_basis == "as_if_random"``): the own survey is a convenience sample of
        the people at the counter, so the interval describes sampling noise only, never coverage.

    Examples
    --------
    >>> forms = pd.DataFrame({"unit_id": ["S01"] * 4, "year": 2025, "month": [1, 1, 2, 2],
    ...                       **{f"s{k}": [5.0, 3.0, 4.0, 4.0] for k in range(1, 9)}})
    >>> table = monthly_self_satisfaction(forms)
    >>> table.query("code == 'SELF'")[["month", "n", "estimate"]].to_numpy().tolist()
    [[1.0, 2.0, 0.5], [2.0, 2.0, 1.0]]
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    inst = _instrument(instrument)
    need = [c for c in ("unit_id", "year", "month", *inst.item_codes) if c not in accepted.columns]
    if need:
        raise ValueError(f"accepted self-survey forms lack column(s) {need}")
    table = _shares(accepted, ["unit_id", "year", "month"], inst.item_codes, inst.satisfied_min)
    table = table.loc[table["n"] > 0].sort_values(["unit_id", "year", "month", "level", "code"], kind="stable")
    return _with_intervals(table.reset_index(drop=True), level)


def _with_intervals(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """``se``, Wilson ``ci_low``/``ci_high`` on n* = p(1-p)/V (n when V is 0) and the interval's basis."""
    estimate = table["estimate"].to_numpy(dtype=float)
    variance = table.pop("variance").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(variance > 0, estimate * (1 - estimate) / variance, table["n"].to_numpy(dtype=float))
    table["se"] = np.sqrt(variance)
    table["ci_low"], table["ci_high"] = index.score_interval(estimate, n_eff, level)
    table["interval_basis"] = INTERVAL_BASIS
    return table


# --------------------------------------------------------------------------------------------
# The shared criteria
# --------------------------------------------------------------------------------------------

MAPPING_COLUMNS = ("pl2_item", "pl5_criterion", "match", "pl2_quote", "pl5_quote", "justification")
MATCHES = ("same", "part", "none")


def load_mapping(path: str | os.PathLike = MAPPING_FILE) -> pd.DataFrame:
    """The Phụ lục 2 → Phụ lục 5 mapping: which criteria each own-survey question asks about.

    One row per pair ``pl2_item, pl5_criterion`` with ``match`` (``same`` wording or ``part`` of a
    joined question), the seed's wording quoted on each side (``pl2_quote``, ``pl5_quote``) and a
    ``justification``; a Phụ lục 5 criterion no own-survey question asks about has one row with
    ``match == "none"`` and no ``pl2_item``, so every criterion's place is a reviewed decision.

    Raises
    ------
    ValueError
        A column missing, a ``match`` outside ``same|part|none``, or a pair given twice.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MAPPING_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(MAPPING_COLUMNS)}")
    table = table.replace("", pd.NA)
    wrong = ~table["match"].isin(MATCHES)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0]) + 2
        raise ValueError(f"{path}, row {row}, column 'match': expected one of {', '.join(MATCHES)}, "
                         f"found {table['match'].iloc[row - 2]!r}")
    twice = table.duplicated(["pl2_item", "pl5_criterion"], keep="first")
    if twice.any():
        raise ValueError(f"{path}, row {int(np.flatnonzero(twice)[0]) + 2}: pair given twice")
    return table[list(MAPPING_COLUMNS)]


def _pairs(mapping: pd.DataFrame) -> pd.DataFrame:
    return mapping.loc[mapping["match"] != "none", ["pl2_item", "pl5_criterion"]].dropna().reset_index(drop=True)


def shared_criteria_rule(mapping: pd.DataFrame | None = None,
                         instrument: Instrument | str = "hanoi_pl5_district") -> index.AggregationRule:
    r"""The independent index on the shared criteria, as an aggregation rule of :mod:`sipas_lib.index`.

    The own-survey composite is the mean over the K questions of each question's share; its
    independent counterpart is :math:`\sum_j a_j p_j` with :math:`a_j = \sum_{k \ni j} 1/(K |M_k|)`
    (:math:`M_k` the criteria of question k). As a rule: criterion weight :math:`a_j` (0 for the
    criteria no question asks about), element weight :math:`\sum_{j \in e} a_j`, so
    ``index.satisfaction_indices(design, form, rule=shared_criteria_rule())`` gives, in its overall
    rows (``rule == "pl2_shared"``), the independent figure with its exact design-based SE, which
    :func:`self_survey_gaps` then uses instead of the upper bound.
    """
    mapping = load_mapping() if mapping is None else mapping
    inst = _instrument(instrument)
    pairs = _pairs(mapping)
    per_item = pairs.groupby("pl2_item")["pl5_criterion"].transform("size")
    weights = (1.0 / (pairs["pl2_item"].nunique() * per_item)).groupby(pairs["pl5_criterion"]).sum()
    criterion = {code: float(weights.get(code, 0.0)) for code in inst.criteria_codes}
    elements = {e: float(sum(criterion[c] for c in codes)) for e, codes in inst.element_items().items()}
    return index.AggregationRule(SHARED_RULE_NAME, "Mean over the Phụ lục 2 questions of the mean of the Phụ lục 5 "
                                 "criteria each asks about (the own survey's shared criteria).",
                                 criterion_weights=criterion, element_weights=elements)


def shared_index(design, mapping: pd.DataFrame | None = None, instrument: Instrument | str = "hanoi_pl5_district", *,
                 level: float = 0.95) -> pd.DataFrame:
    """The independent survey's figure on the shared criteria per unit, with its exact design-based SE.

    The overall rows of ``index.satisfaction_indices(design, instrument, by="unit_id",
    rule=shared_criteria_rule(mapping, instrument))`` (``code == "SIPAS"``, ``rule == "pl2_shared"``):
    pass them, with the ``indices`` table's item rows, to :func:`self_survey_gaps` as ``independent``
    so the composite's standard error is exact rather than its upper bound.
    """
    inst = _instrument(instrument)
    rule = shared_criteria_rule(mapping, inst)
    out = index.satisfaction_indices(design, inst, by="unit_id", rule=rule, items=inst.criteria_codes, level=level)
    return out.loc[(out["level"] == "overall") & (out["n"] > 0)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Comparison with the independent survey
# --------------------------------------------------------------------------------------------

GAP_COLUMNS = ["unit_id", "level", "code", "value", "reference", "gap", "se_value", "se_reference", "se_gap",
               "lower", "upper", "n_self", "n_reference", "reference_se_method", "interval_basis"]


def self_survey_gaps(accepted: pd.DataFrame, independent: pd.DataFrame, mapping: pd.DataFrame | None = None, *,
                     instrument: Instrument | str = INSTRUMENT, level: float = 0.95) -> pd.DataFrame:
    """Own survey beside the independent survey, per unit: each shared question and their composite.

    Parameters
    ----------
    accepted
        Accepted own-survey forms (:attr:`SelfSurveyIntake.accepted`; filter the months first to
        compare a period, e.g. the independent survey's fieldwork months).
    independent
        Design-based indices of the independent survey: ``unit_id, level, code, estimate, se`` (``n``,
        ``measure``, ``rule`` used when present), e.g. stage ``index_ranking``'s ``indices`` table.
        Item rows of the mapped criteria are used; overall rows with ``rule == "pl2_shared"``
        (:func:`shared_criteria_rule`) replace the composite's bound by the exact SE.
    mapping
        :func:`load_mapping` (default: the shipped ``pl2_to_pl5.csv``).
    instrument
        The self-survey form.
    level
        Confidence level of the gap's interval.

    Returns
    -------
    DataFrame
        ``unit_id, level (item|overall), code (s1…, SELF), value (own share), reference (independent),
        gap (value − reference), se_value (as if random), se_reference, se_gap, lower, upper, n_self,
        n_reference, reference_se_method (design|bound), interval_basis``. Questions are compared where
        both sides have answers; the composite over those. Overall rows cover every unit of either
        side (value or reference empty where a side has none), so a unit without an own survey shows.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    inst = _instrument(instrument)
    pairs = _pairs(load_mapping() if mapping is None else mapping)
    items = [k for k in inst.item_codes if k in set(pairs["pl2_item"])]
    need = [c for c in ("unit_id", "level", "code", "estimate", "se") if c not in independent.columns]
    if need:
        raise ValueError(f"the independent indices lack column(s) {need}")
    ind = independent.loc[independent["measure"].eq("share")] if "measure" in independent.columns else independent
    crit = ind.loc[ind["level"].eq("item") & ind["estimate"].notna()]
    n_col = crit["n"] if "n" in crit.columns else pd.Series(np.nan, index=crit.index)
    crit = crit.assign(n=n_col)[["unit_id", "code", "estimate", "se", "n"]]
    reference = (pairs.merge(crit, left_on="pl5_criterion", right_on="code")
                 .groupby(["unit_id", "pl2_item"], sort=True)
                 .agg(reference=("estimate", "mean"), se_reference=("se", "mean"), n_reference=("n", "max"))
                 .reset_index().rename(columns={"pl2_item": "code"}))
    reference = reference.loc[reference["code"].isin(items)]

    # the own survey over the questions the unit also has an independent figure for
    compared = (reference.assign(on=True).pivot(index="unit_id", columns="code", values="on")
                .reindex(columns=items).fillna(False).astype(bool))
    rows = accepted.loc[accepted["unit_id"].isin(compared.index)]
    use = compared.reindex(rows["unit_id"]).to_numpy(dtype=bool)
    own = _shares(rows, ["unit_id"], items, inst.satisfied_min, use=use) if len(rows) else \
        pd.DataFrame(columns=["unit_id", "level", "code", "n", "estimate", "variance"])
    own = own.loc[own["n"] > 0].rename(columns={"estimate": "value", "n": "n_self"})
    own["se_value"] = np.sqrt(own.pop("variance").astype(float))

    item_rows = own.loc[own["level"] == "item"].merge(reference, on=["unit_id", "code"], how="inner")
    item_rows["reference_se_method"] = np.where(item_rows["code"].map(pairs.groupby("pl2_item").size()) > 1,
                                                "bound", "design")
    compared_items = item_rows.groupby("unit_id")
    overall_ref = compared_items.agg(reference=("reference", "mean"), se_reference=("se_reference", "mean"),
                                     n_reference=("n_reference", "max")).reset_index()
    overall_ref["reference_se_method"] = "bound"
    exact = ind.loc[ind["level"].eq("overall") & ind.get("rule", pd.Series("", index=ind.index)).eq(SHARED_RULE_NAME)]
    if len(exact):
        exact = exact.set_index("unit_id")
        hit = overall_ref["unit_id"].isin(exact.index)
        overall_ref.loc[hit, "reference"] = exact.loc[overall_ref.loc[hit, "unit_id"], "estimate"].to_numpy()
        overall_ref.loc[hit, "se_reference"] = exact.loc[overall_ref.loc[hit, "unit_id"], "se"].to_numpy()
        overall_ref.loc[hit, "reference_se_method"] = "design"
    # units with only one side: their own-survey composite over every question, or the reference alone
    alone = accepted.loc[~accepted["unit_id"].isin(overall_ref["unit_id"])]
    own_alone = _shares(alone, ["unit_id"], items, inst.satisfied_min) if len(alone) else own.iloc[:0]
    if len(alone):
        own_alone = own_alone.rename(columns={"estimate": "value", "n": "n_self"})
        own_alone["se_value"] = np.sqrt(own_alone.pop("variance").astype(float))
    ref_only = reference.groupby("unit_id").agg(n_reference=("n_reference", "max")).reset_index()
    ref_only = ref_only.loc[~ref_only["unit_id"].isin(overall_ref["unit_id"]) & ~ref_only["unit_id"].isin(alone["unit_id"])]
    overall = pd.concat([
        own.loc[own["level"] == "overall"].merge(overall_ref, on="unit_id", how="inner"),
        own_alone.loc[own_alone["level"] == "overall"] if len(own_alone) else None,
        ref_only.assign(level="overall", code=SELF_CODE) if len(ref_only) else None,
    ], ignore_index=True)
    out = pd.concat([item_rows, overall], ignore_index=True)
    zq = stats.norm.ppf((1 + level) / 2)
    out["gap"] = out["value"] - out["reference"]
    out["se_gap"] = np.sqrt(out["se_value"].astype(float) ** 2 + out["se_reference"].astype(float) ** 2)
    out["lower"] = out["gap"] - zq * out["se_gap"]
    out["upper"] = out["gap"] + zq * out["se_gap"]
    out["n_self"] = out["n_self"].fillna(0).astype("int64")
    out["n_reference"] = out["n_reference"].astype("Float64").round().astype("Int64")
    out["interval_basis"] = INTERVAL_BASIS
    numeric = ["value", "reference", "gap", "se_value", "se_reference", "se_gap", "lower", "upper"]
    out[numeric] = out[numeric].astype(float)  # a concat with all-missing rows leaves object columns
    return out.sort_values(["unit_id", "level", "code"], kind="stable")[GAP_COLUMNS].reset_index(drop=True)


#: The integrity signal shape shared with the re-check and the screening (schemas.integrity.flag_columns), then
#: what was compared.
FLAG_COLUMNS = ["unit_id", "signal", "value", "reference", "n", "p_value", "lower", "upper", "flagged", "reason",
                "reason_vi", "own_share", "independent_share", "n_independent", "items"]


def _points(x: float, lang: str) -> str:
    text = f"{100 * x:.1f}"
    return text.replace(".", ",") if lang == "vi" else text


def _percent(x: float, lang: str) -> str:
    return _points(x, lang) + (" %" if lang == "vi" else "%")


def self_survey_flags(gaps: pd.DataFrame, *, tolerance: float = 0.05, level: float = 0.95,
                      min_n: int = 30, min_n_independent: int = 10) -> pd.DataFrame:
    """Flag units whose own survey runs above the independent one beyond both uncertainties.

    Parameters
    ----------
    gaps
        :func:`self_survey_gaps` (its overall rows are used).
    tolerance
        How far an own survey may run above the independent one before it is flagged (share, 0–1;
        setting ``integrity.self_survey_gap``, default 0.05: five points of counter courtesy).
    level
        Confidence level of the gap's interval (the same as in :func:`self_survey_gaps`).
    min_n
        Fewest own-survey forms for a comparison (setting ``integrity.self_survey_min_n``).
    min_n_independent
        Fewest independent respondents for a comparison (``common.min_publish_n_item``): below it
        the independent figure is not shown, so it is not compared either; above it its design-based
        standard error carries its uncertainty.

    Returns
    -------
    DataFrame
        One row per unit in the shape of every integrity signal: ``unit_id, signal``
        (:data:`SIGNAL`), ``value`` = the gap own − independent, ``reference`` = the tolerance,
        ``n`` = own-survey forms, ``p_value`` = one-sided p of "gap ≤ tolerance",
        :math:`1 - \\Phi((\\text{gap} - \\text{tolerance})/\\text{se}_{gap})`, ``lower, upper`` = the
        gap's interval ``gap ± z·se_gap``, ``flagged`` = ``lower > tolerance`` (⇔ p < (1 − level)/2),
        ``reason, reason_vi`` in plain words (for every unit, flagged or not); then ``own_share,
        independent_share, n_independent, items`` (shared questions compared).

    Examples
    --------
    >>> gaps = pd.DataFrame({"unit_id": ["A", "B"], "level": "overall", "code": "SELF", "value": [0.97, 0.86],
    ...                      "reference": [0.82, 0.85], "se_value": [0.01, 0.02], "se_reference": [0.03, 0.03],
    ...                      "n_self": [300, 300], "n_reference": [60, 60]})
    >>> self_survey_flags(gaps)["flagged"].tolist()
    [True, False]
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance is a share between 0 and 1, got {tolerance}")
    over = gaps.loc[gaps["level"] == "overall"].reset_index(drop=True)
    items = gaps.loc[gaps["level"] == "item"].groupby("unit_id").size()
    zq = stats.norm.ppf((1 + level) / 2)
    own, independent = over["value"].astype(float), over["reference"].astype(float)
    gap = own - independent
    se = np.sqrt(over["se_value"].astype(float) ** 2 + over["se_reference"].astype(float) ** 2)
    n_own = over["n_self"].fillna(0).astype("int64")
    n_independent = pd.to_numeric(over["n_reference"], errors="coerce").astype(float)
    enough = (n_own >= min_n) & ~(n_independent < min_n_independent)  # no respondent count: not held back
    out = pd.DataFrame({"unit_id": over["unit_id"].astype(str), "signal": SIGNAL, "value": gap,
                        "reference": float(tolerance), "n": n_own.astype("Int64")})
    with np.errstate(invalid="ignore", divide="ignore"):
        p_value = np.where(se > 0, stats.norm.sf((gap - tolerance) / se), np.where(gap > tolerance, 0.0, 1.0))
    out["p_value"] = pd.Series(p_value, index=out.index).where(gap.notna())
    out["lower"], out["upper"] = gap - zq * se, gap + zq * se
    out["flagged"] = (enough & (out["lower"] > tolerance)).fillna(False).astype(bool)
    case = np.select([own.isna(), independent.isna(), ~enough, out["flagged"]],
                     ["no_self_survey", "no_reference", "too_few", "flagged"], "within")
    for lang, column in (("en", "reason"), ("vi", "reason_vi")):
        def shown(x: float, as_percent: bool = False) -> str:
            return "" if pd.isna(x) else (_percent(x, lang) if as_percent else _points(x, lang))

        out[column] = [  # one sentence per unit
            _TEXT[f"reason_{kind}"][lang].format(
                value=shown(v, True), reference=shown(r, True), gap=shown(g), lower=shown(lo), upper=shown(hi),
                tolerance=shown(tolerance), level=f"{100 * level:g}" + (" %" if lang == "vi" else "%"),
                items=int(items.get(unit, 0)), n_self=int(n), n_reference=0 if pd.isna(m) else int(m),
                min_n=min_n, min_n_reference=min_n_independent)
            for unit, kind, v, r, g, lo, hi, n, m in zip(out["unit_id"], case, own, independent, gap, out["lower"],
                                                         out["upper"], n_own, n_independent)]
    out["own_share"], out["independent_share"] = own, independent
    out["n_independent"] = over["n_reference"].astype("Int64")
    out["items"] = out["unit_id"].map(items).fillna(0).astype("int64")
    return out[FLAG_COLUMNS]
