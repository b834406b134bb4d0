"""Administrative SIPAS reports of plan 143/KH-UBND laid out as their templates: the monthly report
(Phụ lục 3) and the annual survey-implementation report (Phụ lục 4).

Report layer. The numbers come from the stages: the monthly counts from
:mod:`sipas_lib.stages.monthly_report` (aggregated by :mod:`sipas_lib.admin_records`, DuckDB over
Parquet; its names are re-exported here), the facts of the year's survey from
:mod:`sipas_lib.stages.annual_survey_report`. This module only fills the templates' rows, in
the reader's language, with the wording of ``texts/admin_reports.yaml``.

Monthly report (Phụ lục 3)
--------------------------
Three forms (:data:`MONTHLY_FORMS`): Mẫu số 1 (departments), Mẫu số 2 as printed (districts,
block A at the district's one-stop shop and block B at its communes) and Mẫu số 2 for the commune
People's Committees of the two-tier local government (from 1 July 2025: communes and wards report
themselves; its wording adaptations are data, :func:`monthly_adaptations`). Which form a unit
reports on is read from the year's units registry — its type and its parent's type
(:func:`monthly_form_of`), never from its id; definitions of every count in
:mod:`sipas_lib.admin_records`.

Annual survey-implementation report (Phụ lục 4)
-----------------------------------------------
:func:`annual_survey_rows` fills the template's ten rows from the stage's summary (received =
accepted + quarantined; return rate = distinct issued form ids that came back / issued).

Excel
-----
:func:`monthly_workbook` and :func:`annual_survey_workbook` write the same reports as ``.xlsx`` in
the template's layout (title lines in merged cells, the template's numbering and headers, counts
and rates as numbers with formats), from the same values as the HTML tables
(:func:`monthly_values`, :func:`annual_survey_rows`); :mod:`sipas_lib.exports` puts them in the
run's ``downloads/``.

Reference: Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND thành phố Hà Nội, Phụ lục 3 and 4.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from sipas_lib.admin_records import (  # noqa: F401  (re-exported: the monthly aggregation's public names)
    APOLOGY_COLUMNS, CHANNELS, DOSSIER_COLUMNS, FEEDBACK_COLUMNS, FIELDS, OFFER_FLAGS, OPINION_COLUMNS, PERIODS,
    PROCEDURE_COLUMNS, AdminFiles, latest_month, monthly_aggregates, monthly_overview, report_periods,
)
from sipas_lib.reporting import LABELS, esc, fmt_num, fmt_pct, html_table, label
from sipas_lib.spreadsheet import neutralise
from sipas_lib.texts import load_texts
from sipas_lib.units import COMMUNE_TYPES, parent_types

# --------------------------------------------------------------------------------------------
# the template (rows exactly as in Phụ lục 3)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateRow:
    """One row of a report template: STT, text (vi/en) and what fills it.

    ``kind`` is ``header`` (no value), ``count`` (metric), ``rate`` (numerator/denominator
    metrics), ``reasons`` (overdue reasons). ``adapted_from`` is the template's own wording where
    a form adapts it (the commune Mẫu số 2), else ``None``.
    """

    stt: str
    text_vi: str
    text_en: str
    kind: str = "header"
    metric: str = ""
    denominator: str = ""
    level: str = "unit"
    adapted_from: str | None = None


def _block_rows(level: str, with_fields: bool, commune: bool = False) -> list[TemplateRow]:
    R = TemplateRow
    total_vi = "Tổng số hồ sơ cần giải quyết:" if commune else "Tổng số hồ sơ cần giải quyết"
    rows = [
        R("I", "Kết quả giải quyết TTHC theo cơ chế một cửa, một cửa liên thông",
          "Results of handling administrative procedures through the one-stop mechanism"),
        R("1", total_vi, "Total dossiers to resolve", "count", "total"),
        R("-", "Số hồ sơ tiếp nhận trực tiếp tại Bộ phận Một cửa", "received in person at the one-stop shop",
          "count", "ch_direct"),
        R("-", "Số hồ sơ tiếp nhận qua DVC TT mức độ 3", "received through online public services, level 3",
          "count", "ch_online_l3"),
        R("-", "Số hồ sơ tiếp nhận qua DVC TT mức độ 4", "received through online public services, level 4",
          "count", "ch_online_l4"),
        R("-", "Số hồ sơ tiếp nhận qua DV BCCI", "received through the public postal service",
          "count", "ch_postal"),
    ]
    n = 2
    if with_fields:
        if commune:
            rows.append(R("2", "Tổng số hồ sơ phân loại theo lĩnh vực", "Dossiers by field"))
            names = [("justice", "Lĩnh vực tư pháp", "Justice"),
                     ("labour_social", "Lĩnh vực lao động, thương binh và xã hội", "Labour, invalids and social affairs"),
                     ("land_environment", "Lĩnh vực đất đai", "Land"),
                     ("construction_urban", "Lĩnh vực xây dựng, đô thị", "Construction and urban affairs"),
                     ("other", "Lĩnh vực khác", "Other fields")]
        else:
            rows.append(R("2", "Tổng số hồ sơ cần giải quyết phân loại theo lĩnh vực",
                          "Dossiers to resolve by field"))
            names = [("justice", "Lĩnh vực tư pháp", "Justice"),
                     ("labour_social", "Lĩnh vực lao động, thương binh và xã hội", "Labour, invalids and social affairs"),
                     ("land_environment", "Lĩnh vực tài nguyên và môi trường", "Natural resources and environment"),
                     ("construction_urban", "Lĩnh vực xây dựng, quản lý đô thị", "Construction and urban management"),
                     ("other", "Lĩnh vực khác", "Other fields")]
        rows += [R("-", vi, en, "count", f"field_{code}") for code, vi, en in names]
        n = 3
    for ch, vi, en in (("online_l3", "DVC TT mức độ 3", "online public services level 3"),
                       ("online_l4", "DVC TT mức độ 4", "online public services level 4"),
                       ("postal", "DV BCCI", "the public postal service")):
        rows.append(R(str(n), f"Tỷ lệ TTHC cung cấp {vi} có phát sinh hồ sơ",
                      f"Share of procedures offered through {en} that received dossiers",
                      "rate", f"active_{ch}", f"offered_{ch}"))
        n += 1
    rows += [
        R(str(n), "Tỷ lệ hồ sơ giải quyết đúng hạn", "Share of dossiers resolved on time"),
        R("-", "Tỷ lệ hồ sơ giải quyết đúng hạn", "all dossiers resolved", "rate", "on_time", "resolved"),
        R("-", "Tỷ lệ hồ sơ DVC TT mức độ 3 giải quyết đúng hạn", "online level 3 dossiers", "rate",
          "on_time_online_l3", "resolved_online_l3"),
        R("-", "Tỷ lệ hồ sơ DVC TT mức độ 4 giải quyết đúng hạn", "online level 4 dossiers", "rate",
          "on_time_online_l4", "resolved_online_l4"),
        R("-", "Tỷ lệ hồ sơ DV BCCI giải quyết đúng hạn", "postal service dossiers", "rate",
          "on_time_postal", "resolved_postal"),
        R(str(n + 1), "Tỷ lệ giải quyết hồ sơ quá hạn", "Share of dossiers resolved late"),
        R("-", "Tỷ lệ giải quyết hồ sơ quá hạn" if commune else "Tỷ lệ hồ sơ giải quyết quá hạn",
          "all dossiers resolved", "rate", "late", "resolved"),
        R("-", "Lý do quá hạn", "Reasons for delay", "reasons"),
        R("II", "Tổng số phản ánh, kiến nghị về giải quyết TTHC",
          "Feedback and petitions on administrative procedures", "count", "fb_total"),
        R("1", "Số phản ánh, kiến nghị về hành vi hành chính", "on administrative behaviour", "count",
          "fb_behaviour"),
        R("2", "Số phản ánh, kiến nghị về quy định hành chính", "on administrative regulations", "count",
          "fb_regulation"),
        R("3", "Số phản ánh kiến nghị được đăng tải công khai kết quả xử lý",
          "with the handling result published", "count", "fb_published"),
        R("III", "Tổng số văn bản xin lỗi trong quá trình giải quyết TTHC (chậm muộn, sai sót,...)",
          "Apology letters sent (delays, errors, ...)", "count", "apologies"),
        R("IV", "Tổng số ý kiến đánh giá hài lòng của người dân, tổ chức trong quá trình giải quyết TTHC "
          "(dạng bản giấy hoặc điện tử)",
          "Satisfaction opinions received from citizens and organisations (paper or electronic)",
          "count", "opinions"),
    ]
    return [replace(r, level=level) for r in rows]


#: The Phụ lục 3 forms: key -> the template's number (Mẫu số). ``form2`` is Mẫu số 2 as printed (the
#: districts); ``form2_commune`` is Mẫu số 2 for the communes and wards of the two-tier local government
#: (from 1 July 2025). The keys are also the label keys of the forms' titles (``texts/reporting.yaml``).
MONTHLY_FORMS: dict[str, int] = {"form1": 1, "form2": 2, "form2_commune": 2}
#: Label key (``texts/reporting.yaml``) of the combined table of each form's units.
MONTHLY_ALL_UNITS: dict[str, str] = {"form1": "monthly_all_depts", "form2": "monthly_all_districts",
                                     "form2_commune": "monthly_all_communes"}
#: The template's own wording that the commune form adapts (Phụ lục 3, Mẫu số 2, seed 003).
_DISTRICT_BLOCK_A = "TẠI UBND QUẬN/HUYỆN/THỊ XÃ"
_DISTRICT_BLOCK_B = "TẠI UBND CÁC XÃ/PHƯỜNG/THỊ TRẤN"


def monthly_form(form: int | str) -> str:
    """The key of a Phụ lục 3 form in :data:`MONTHLY_FORMS`; ``1`` and ``2`` are the template's numbers.

    Examples
    --------
    >>> monthly_form(2), monthly_form("form2_commune")
    ('form2', 'form2_commune')
    """
    key = f"form{form}" if isinstance(form, int) and not isinstance(form, bool) else form
    if key not in MONTHLY_FORMS:
        raise ValueError(f"form must be 1 (Mẫu số 1, departments), 2 (Mẫu số 2, districts) or one of "
                         f"{', '.join(repr(k) for k in MONTHLY_FORMS)}, got {form!r}")
    return key


def monthly_template(form: int | str) -> list[TemplateRow]:
    """The rows of a Phụ lục 3 form (:data:`MONTHLY_FORMS`), with the template's numbering.

    * ``1`` / ``"form1"``: Mẫu số 1 (departments);
    * ``2`` / ``"form2"``: Mẫu số 2 as printed: block A at the district People's Committee
      (``level="unit"``, with the breakdown by field) and block B at its communes (``level="commune"``);
    * ``"form2_commune"``: Mẫu số 2 for a commune or ward People's Committee (two-tier local
      government). One block ``A`` at the commune's own one-stop shop (``level="unit"``) with the rows
      and wording the template gives the communes (its block B); its header names UBND xã/phường
      (``adapted_from`` holds the template's wording); the template's block B is left out, since a
      commune has no level below it. :func:`monthly_adaptations` states every change.
    """
    key = monthly_form(form)
    if key == "form1":
        return _block_rows("unit", with_fields=False)
    if key == "form2":
        return ([TemplateRow("A", _DISTRICT_BLOCK_A, "AT THE DISTRICT PEOPLE'S COMMITTEE")]
                + _block_rows("unit", with_fields=True)
                + [TemplateRow("B", _DISTRICT_BLOCK_B, "AT THE COMMUNE PEOPLE'S COMMITTEES", level="commune")]
                + _block_rows("commune", with_fields=True, commune=True))
    return ([TemplateRow("A", "TẠI UBND XÃ/PHƯỜNG", "AT THE COMMUNE/WARD PEOPLE'S COMMITTEE",
                         adapted_from=_DISTRICT_BLOCK_A)]
            + _block_rows("unit", with_fields=True, commune=True))


def monthly_adaptations(form: int | str, lang: str = "vi") -> list[str]:
    """Every change a form makes to the template's wording and rows, as sentences (empty for the
    forms as printed): the form's title, each row with ``adapted_from``, and what is left out.

    Shown under the form's table in the HTML report and the workbook, so a reader of the commune
    Mẫu số 2 sees exactly where it departs from Phụ lục 3 of plan 143/KH-UBND.
    """
    key = monthly_form(form)
    if key != "form2_commune":
        return []
    text = {k: v[lang] for k, v in _ANNUAL_TEXT.items() if k.startswith("pl3_adapt")}
    out = [text["pl3_adapt_title"].format(text=label(key, lang), seed=label("form2", lang))]
    out += [text["pl3_adapt_row"].format(stt=r.stt, text=r.text_vi, seed=r.adapted_from)
            for r in monthly_template(key) if r.adapted_from]
    out += [text["pl3_adapt_wording"], text["pl3_adapt_block_b"].format(seed=_DISTRICT_BLOCK_B)]
    return out


def _forms_of(unit_type: pd.Series, parent_type: pd.Series) -> np.ndarray:
    """The rule of :func:`form_for_unit_type`, over arrays (``None`` where a unit has no form)."""
    unit_type, parent_type = unit_type.astype(str), parent_type.astype(str)
    return np.select([unit_type.eq("department"), unit_type.eq("district"),
                      unit_type.isin(COMMUNE_TYPES) & parent_type.ne("district")],
                     ["form1", "form2", "form2_commune"], default=None).astype(object)


def form_for_unit_type(unit_type: str, parent_type: str = "") -> str:
    """The Phụ lục 3 form of a unit, from its registry type and its parent's type.

    Departments report on Mẫu số 1, districts on Mẫu số 2; a commune or ward reports on the commune
    Mẫu số 2 when it is a local unit itself (two-tier government: its parent is the province, or
    none), while a legacy district's commune (``parent_type="district"``) is block B of its
    district's report and has no form of its own.

    Examples
    --------
    >>> form_for_unit_type("department"), form_for_unit_type("ward", "province")
    ('form1', 'form2_commune')
    """
    form = _forms_of(pd.Series([unit_type]), pd.Series([parent_type]))[0]
    if form is None:
        where = f" under a {parent_type}" if parent_type else ""
        raise ValueError(f"no Phụ lục 3 form for unit type {unit_type!r}{where} (expected department, district, "
                         "or a commune or ward of the two-tier local government)")
    return form


def monthly_form_of(units: pd.DataFrame) -> pd.Series:
    """The Phụ lục 3 form of each unit of a registry (:func:`form_for_unit_type`), indexed by ``unit_id``;
    missing for units that report on none (the province, a legacy district's communes)."""
    forms = _forms_of(units["unit_type"], parent_types(units))
    return pd.Series(forms, index=pd.Index(units["unit_id"].astype(str), name="unit_id"), name="form", dtype=object)


def units_by_monthly_form(units: pd.DataFrame, unit_ids: Iterable[str]) -> dict[str, list[str]]:
    """Form key -> the given units that report on it (sorted), forms in :data:`MONTHLY_FORMS` order.

    Units that report on no form, or that the registry does not know, are left out.
    """
    form = monthly_form_of(units)
    ids = pd.Series(sorted({str(u) for u in unit_ids}), dtype=object)
    of = ids.map(form)
    return {key: ids[of == key].tolist() for key in MONTHLY_FORMS if (of == key).any()}


def _fmt_reasons(reasons: pd.DataFrame, lang: str, top: int) -> str:
    if reasons.empty:
        return "–"
    # a unit's few reasons: sorted as Python pairs (a DataFrame sort costs ~1 ms, 4 per form, 3,900 units)
    ordered = sorted(zip(reasons["reason"].tolist(), reasons["n"].tolist()), key=lambda rn: (-rn[1], rn[0]))
    parts = [f"{r} ({fmt_num(n, lang=lang)})" for r, n in ordered[:top]]
    rest = int(sum(n for _, n in ordered[top:]))
    if rest:
        parts.append(("khác" if lang == "vi" else "other") + f" ({fmt_num(rest, lang=lang)})")
    return "; ".join(parts)


class _UnitSums:
    """The sums of :func:`monthly_values` for every unit at once: one grouping of each table.

    A national year's report shows a Phụ lục 3 form for each of ~3,900 units; selecting and
    grouping a unit's rows in the whole tables took ~30 ms a unit (2 minutes), a slice of these
    sorted sums takes well under 1 ms.
    """

    def __init__(self, counts: pd.DataFrame, reasons: pd.DataFrame) -> None:
        sums = counts.groupby(["unit_id", "level", "period", "metric"], observed=True, sort=True)["value"].sum()
        self._count_rows = self._bounds(sums.index.get_level_values(0))
        self._keys = list(zip(*(sums.index.get_level_values(k).tolist() for k in (1, 2, 3))))
        self._values = sums.tolist()
        per_reason = reasons.groupby(["unit_id", "level", "period", "reason"], observed=True, sort=True)["n"].sum()
        self._reason_rows = self._bounds(per_reason.index.get_level_values(0))
        self._reason_keys = list(zip(*(per_reason.index.get_level_values(k).tolist() for k in (1, 2, 3))))
        self._reason_n = per_reason.tolist()
        self._reason_dtypes = {"reason": reasons["reason"].dtype, "n": per_reason.dtype}

    @staticmethod
    def _bounds(unit_of_row: pd.Index) -> dict[str, slice]:
        """unit -> the slice of its rows (the rows are sorted by unit)."""
        units, starts = np.unique(np.asarray(unit_of_row, dtype=object), return_index=True)
        ends = np.append(starts[1:], len(unit_of_row))
        return {u: slice(a, b) for u, a, b in zip(units.tolist(), starts.tolist(), ends.tolist())}

    def of(self, unit: str):
        """``(lookup, reasons_of)`` of one unit, as :func:`monthly_values` computes them from its rows."""
        rows = self._count_rows.get(unit, slice(0, 0))
        lookup = dict(zip(self._keys[rows], self._values[rows]))
        rows = self._reason_rows.get(unit, slice(0, 0))
        keys, n = self._reason_keys[rows], self._reason_n[rows]

        def reasons_of(level: str, period: str) -> pd.DataFrame:
            picked = [(reason, k) for (lv, per, reason), k in zip(keys, n) if lv == level and per == period]
            return pd.DataFrame({"reason": pd.Series([r for r, _ in picked], dtype=self._reason_dtypes["reason"]),
                                 "n": pd.Series([k for _, k in picked], dtype=self._reason_dtypes["n"])})
        return lookup, reasons_of


#: The last tables split by :class:`_UnitSums` (weak references: the cache never keeps a table alive).
_LAST_UNIT_SUMS: list = [None, None, None]


def _unit_sums(counts: pd.DataFrame, reasons: pd.DataFrame) -> _UnitSums:
    """:class:`_UnitSums` of these two tables, built again whenever other tables (or other lengths) come.

    The result tables are not modified after they are read; the notebook passes the same two
    tables for every unit, so they are grouped once.
    """
    import weakref

    c_ref, r_ref, sums = _LAST_UNIT_SUMS
    sizes = (len(counts), len(reasons))
    if c_ref is None or c_ref() is not counts or r_ref() is not reasons or sums.sizes != sizes:
        sums = _UnitSums(counts, reasons)
        sums.sizes = sizes
        _LAST_UNIT_SUMS[:] = [weakref.ref(counts), weakref.ref(reasons), sums]
    return sums


def monthly_values(counts: pd.DataFrame, reasons: pd.DataFrame, form: int | str,
                   unit_ids: Iterable[str] | str | None = None) -> list[tuple[TemplateRow, list]]:
    """The Phụ lục 3 rows with their values as numbers, for the month and the year to date.

    One ``(row, [month, year_to_date])`` per template row; a value is ``None`` (header row),
    an ``int`` (count), a ``(numerator, denominator)`` pair of ints (rate) or a DataFrame
    ``reason, n`` (overdue reasons). :func:`monthly_table` formats them as text for HTML,
    :func:`monthly_workbook` writes them as numbers to Excel, so both show the same figures.

    Parameters
    ----------
    counts, reasons
        Output of :func:`monthly_aggregates`.
    form
        A key of :data:`MONTHLY_FORMS` (1 and 2 are the template's Mẫu số 1 and 2).
    unit_ids
        Units to add up (one id, several, or ``None`` = every unit in ``counts``).
    """
    rows = monthly_template(form)
    ids = None if unit_ids is None else [unit_ids] if isinstance(unit_ids, str) else [str(u) for u in unit_ids]
    if ids is not None and len(ids) == 1:
        lookup, reasons_of = _unit_sums(counts, reasons).of(ids[0])
    else:
        sel_counts = counts if ids is None else counts[counts["unit_id"].isin(ids)]
        sel_reasons = reasons if ids is None else reasons[reasons["unit_id"].isin(ids)]
        lookup = sel_counts.groupby(["level", "period", "metric"], observed=True)["value"].sum().to_dict()

        def reasons_of(level: str, period: str) -> pd.DataFrame:
            r = sel_reasons[(sel_reasons["level"] == level) & (sel_reasons["period"] == period)]
            return r.groupby("reason", as_index=False)["n"].sum()
    out = []
    for row in rows:
        values: list = []
        for per in PERIODS:
            if row.kind == "header":
                values.append(None)
            elif row.kind == "count":
                values.append(int(lookup.get((row.level, per, row.metric), 0)))
            elif row.kind == "rate":
                values.append((int(lookup.get((row.level, per, row.metric), 0)),
                               int(lookup.get((row.level, per, row.denominator), 0))))
            elif row.kind == "reasons":
                values.append(reasons_of(row.level, per))
        out.append((row, values))
    return out


def monthly_table(counts: pd.DataFrame, reasons: pd.DataFrame, form: int | str,
                  unit_ids: Iterable[str] | str | None = None, lang: str = "vi",
                  top_reasons: int = 3) -> pd.DataFrame:
    """Lay the aggregated counts out as the Phụ lục 3 table.

    Parameters
    ----------
    counts, reasons
        Output of :func:`monthly_aggregates`.
    form
        A key of :data:`MONTHLY_FORMS` (1 and 2 are the template's Mẫu số 1 and 2).
    unit_ids
        Units to add up (one id, several, or ``None`` = every unit in ``counts``).
    lang
        Language of the row texts and number formats.

    Returns
    -------
    DataFrame with the template's columns ``STT, Nội dung, Kết quả trong tháng báo cáo,
    Kết quả từ đầu năm đến tháng báo cáo`` (English headers with ``lang="en"``), values already
    formatted as text (rates as ``92,31 % (1.200/1.300)``; ``–`` when nothing to divide by).
    Overdue reasons are data: escape the table when rendering (``reporting.html_table``).
    """
    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, tuple):
            num, den = value
            return "–" if den == 0 else (f"{fmt_pct(num / den, 2, lang)} "
                                         f"({fmt_num(num, lang=lang)}/{fmt_num(den, lang=lang)})")
        if isinstance(value, pd.DataFrame):
            return _fmt_reasons(value, lang, top_reasons)
        return fmt_num(value, lang=lang)

    out = [(row.stt, row.text_vi if lang == "vi" else row.text_en, text(values[0]), text(values[1]))
           for row, values in monthly_values(counts, reasons, form, unit_ids)]
    return pd.DataFrame(out, columns=[label("stt", lang), label("content", lang),
                                      label("month_result", lang), label("ytd_result", lang)])


def monthly_html(counts: pd.DataFrame, reasons: pd.DataFrame, form: int | str,
                 unit_ids: Iterable[str] | str | None = None, lang: str = "vi", *, title: str = "",
                 with_adaptations: bool = True, top_reasons: int = 3) -> str:
    """A Phụ lục 3 form as HTML: the form's title (and ``title``, e.g. the unit's name), the table of
    :func:`monthly_table` with its section rows in bold, and the form's changes from the template
    (:func:`monthly_adaptations`, when ``with_adaptations``). Everything is escaped."""
    form = monthly_form(form)
    table = monthly_table(counts, reasons, form, unit_ids, lang=lang, top_reasons=top_reasons)
    head = f"<strong>{esc(title)}</strong><br>" if title else ""
    notes = monthly_adaptations(form, lang) if with_adaptations else []
    note = (f"<p><em>{esc(label('monthly_adapted', lang))}</em></p><ul>"
            + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>") if notes else ""
    sections = ["section" if s.isalpha() else "" for s in table.iloc[:, 0]]
    return f"<p>{head}{esc(label(form, lang))}</p>" + html_table(table, row_classes=sections) + note


# --------------------------------------------------------------------------------------------
# Phụ lục 4: annual survey-implementation report
# --------------------------------------------------------------------------------------------

#: Row texts of Phụ lục 4 (part 1, "Kết quả triển khai"), exactly as in the template.
ANNUAL_ROWS = (
    ("1.", "Đơn vị triển khai khảo sát", "Unit carrying out the survey"),
    ("2.", "Thời gian triển khai trong năm", "Survey period in the year"),
    ("3.", "Hình thức khảo sát", "Survey method"),
    ("4.", "Kỳ lấy phiếu", "Collection period"),
    ("5.", "Đơn vị được giao chủ trì tham mưu triển khai thực hiện", "Unit in charge of carrying it out"),
    ("6.", "Lĩnh vực/TTHC có số phiếu khảo sát nhiều nhất", "Field/procedure with the most questionnaires"),
    ("7.", "Tổng số phiếu khảo sát thu về trong năm", "Questionnaires returned in the year"),
    ("8.", "Hình thức công khai kết quả khảo sát", "How the results are published"),
    ("9.", "Số đơn vị trực thuộc triển khai khảo sát", "Subordinate units surveyed"),
    ("10.", "Tổng số phiếu khảo sát tại các đơn vị trực thuộc", "Questionnaires at the subordinate units"),
)

_ANNUAL_TEXT = load_texts("admin_reports")  # key -> {"vi": ..., "en": ...}

_MODE_KEYS = {"postal": "mode_postal", "one_stop": "mode_one_stop", "online": "mode_online"}


def _fmt_date(d: dt.date, lang: str) -> str:
    return d.strftime("%d/%m/%Y") if lang == "vi" else d.strftime("%d %b %Y")


def _type_parts(counts: Mapping[str, int], key: str, text: Mapping[str, str], lang: str) -> str:
    """``"3 sở, ban, ngành; 5 quận, huyện, thị xã"``: one phrase per unit type (wording from YAML)."""
    parts = []
    for unit_type, k in counts.items():
        template = text.get(f"{key}_{unit_type}", text[f"{key}_other"])
        parts.append(template.format(k=fmt_num(int(k), lang=lang), t=unit_type))
    return "; ".join(parts) or text["none"]


def annual_survey_rows(summary: pd.DataFrame | Mapping, forms: pd.DataFrame, units: pd.DataFrame, *,
                       lang: str = "vi",
                       plan_reference: str = "Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND Thành phố",
                       implementer: str = "Viện Nghiên cứu phát triển kinh tế - xã hội Hà Nội",
                       publication: str | None = None) -> pd.DataFrame:
    """Fill the ten rows of Phụ lục 4 ("Kết quả triển khai") from the annual survey stage's tables.

    Parameters
    ----------
    summary
        The one-row ``annual_survey_summary`` table (or its row): intake counts (received =
        accepted + quarantined), the return rate, the fieldwork period from valid survey dates.
    forms
        ``annual_survey_forms``: accepted questionnaires by ``field`` × ``survey_mode``.
    units
        ``annual_survey_units``: units and accepted questionnaires by ``unit_type`` (registry).
    plan_reference, implementer, publication
        The texts the template asks for that no data file holds (row 1's document, row 5's
        unit, row 8's publication channels).

    Returns
    -------
    DataFrame ``STT, Nội dung, Kết quả thực hiện`` (English headers with ``lang="en"``). The
    values are data: escape when rendering. No value from a questionnaire is echoed: only counts,
    dates, codes of fields and modes.
    """
    row = summary.iloc[0] if isinstance(summary, pd.DataFrame) else summary
    text = {key: value[lang] for key, value in _ANNUAL_TEXT.items()}
    if publication is None:
        publication = text["publication_default"]
    modes = forms.groupby("survey_mode", sort=False)["n"].sum().sort_values(ascending=False, kind="stable")
    mode_text = "; ".join(
        f"{label(_MODE_KEYS[m], lang) if m in _MODE_KEYS else m}: {text['forms'].format(n=fmt_num(c, lang=lang))}"
        for m, c in modes.items() if c > 0) or text["none"]
    values: list[str] = [text["yes"].format(plan=plan_reference)]
    if pd.isna(row["first_survey_date"]):
        values += [text["none"], mode_text, text["none"]]
    else:
        a, b = pd.Timestamp(row["first_survey_date"]).date(), pd.Timestamp(row["last_survey_date"]).date()
        period = text["from_to"].format(a=_fmt_date(a, lang), b=_fmt_date(b, lang))
        if row["dates_outside_year"]:
            period += " " + text["dates_left_out"].format(k=fmt_num(row["dates_outside_year"], lang=lang),
                                                          year=int(row["year"]))
        values += [period, mode_text,
                   text["period"].format(k=f"{int(row['rounds']):02d}", m=int(row["round_months"]),
                                         a=f"{a.month:02d}/{a.year}", b=f"{b.month:02d}/{b.year}")]
    values.append(implementer)
    if pd.isna(row["top_field"]):
        values.append(text["none"])
    else:
        key = f"field_{row['top_field']}"
        name = label(key, lang) if key in LABELS else str(row["top_field"])
        values.append(text["field"].format(f=name, n=fmt_num(row["top_field_n"], lang=lang),
                                           p=fmt_pct(row["top_field_n"] / row["accepted"], 1, lang)))
    returned = text["returned"].format(r=fmt_num(row["received"], lang=lang), a=fmt_num(row["accepted"], lang=lang),
                                       q=fmt_num(row["quarantined"], lang=lang))
    if not pd.isna(row["return_rate"]):
        returned += "; " + text["return_rate"].format(rate=fmt_pct(row["return_rate"], 1, lang),
                                                      ret=fmt_num(row["returned"], lang=lang),
                                                      iss=fmt_num(row["issued"], lang=lang))
    values += [returned, publication]
    by_type = units.set_index("unit_type")
    values.append(text["units"].format(n=fmt_num(int(by_type["n_units"].sum()), lang=lang),
                                       parts=_type_parts(by_type["n_units"], "units_type", text, lang)))
    values.append(text["unit_forms"].format(n=fmt_num(int(by_type["n_forms"].sum()), lang=lang),
                                            parts=_type_parts(by_type["n_forms"], "forms_type", text, lang)))
    rows = [(stt, vi if lang == "vi" else en, v) for (stt, vi, en), v in zip(ANNUAL_ROWS, values)]
    return pd.DataFrame(rows, columns=[label("stt", lang), label("content", lang),
                                       label("implementation_result", lang)])


# --------------------------------------------------------------------------------------------
# the same reports as Excel workbooks in the template's layout
# --------------------------------------------------------------------------------------------

#: Excel number formats: counts with a thousands separator, rates as percent with two decimals
#: (Excel shows the separators of the reader's locale, so ``1.200`` and ``92,31 %`` in Vietnamese).
COUNT_FORMAT = "#,##0"
RATE_FORMAT = "0.00%"
_EXPORT_TEXT = load_texts("exports")


def _xl_text(key: str, lang: str, **values) -> str:
    text = _EXPORT_TEXT[key][lang]
    return text.format(**values) if values else text


def _xl_sheet_title(text: str, taken: set[str]) -> str:
    """A sheet name Excel accepts (≤ 31 characters, none of ``[]:*?/\\``), unique in the workbook."""
    import re

    base = re.sub(r"[\[\]:*?/\\]", "_", text).strip("'") or "Sheet"
    base = base[:31]
    title, k = base, 2
    while title in taken:
        suffix = f" ({k})"
        title, k = base[:31 - len(suffix)] + suffix, k + 1
    taken.add(title)
    return title


@lru_cache(maxsize=None)
def _xl_styles():
    """openpyxl style objects, built once (openpyxl shares equal styles between cells)."""
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    thin = Side(style="thin")
    return {"bold": Font(bold=True), "border": Border(left=thin, right=thin, top=thin, bottom=thin),
            "fill": PatternFill("solid", fgColor="EEEEEE"),
            "align": {h: Alignment(wrap_text=True, vertical="top", horizontal=h)
                      for h in (None, "left", "center", "right")}}


def _xl_put(ws, row: int, col: int, value, *, number_format: str | None = None, bold: bool = False,
            align: str | None = None, border: bool = False, template: bool = False):
    """Write one cell. Text is neutralised (:func:`sipas_lib.spreadsheet.neutralise`) unless it is the
    template's own wording (``template=True``: row numbers such as ``-``, row texts, headers)."""
    styles = _xl_styles()
    if isinstance(value, str) and not template:
        value = neutralise(value)
    cell = ws.cell(row=row, column=col, value=value)
    if number_format:
        cell.number_format = number_format
    if bold:
        cell.font = styles["bold"]
    cell.alignment = styles["align"][align]
    if border:
        cell.border = styles["border"]
    return cell


def _xl_title_block(ws, lines: list[tuple[str, bool, str]], width: int) -> int:
    """Merged title lines across ``width`` columns (text, bold, alignment); returns the next free row."""
    row = 1
    for text, bold, align in lines:
        _xl_put(ws, row, 1, text, bold=bold, align=align)
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=width)
        row += 1
    return row + 1


def _xl_header(ws, row: int, headers: list[str]) -> None:
    for col, text in enumerate(headers, 1):
        _xl_put(ws, row, col, text, bold=True, align="center", border=True, template=True).fill = _xl_styles()["fill"]


def _monthly_sheet(ws, values: list[tuple[TemplateRow, list]], lines: list[tuple[str, bool, str]],
                   lang: str, top_reasons: int, notes: list[str] = ()) -> None:
    row = _xl_title_block(ws, lines, 4)
    _xl_header(ws, row, [label("stt", lang), label("content", lang), label("month_result", lang),
                         label("ytd_result", lang)])
    for template_row, cells in values:
        row += 1
        section = template_row.stt.isalpha()
        _xl_put(ws, row, 1, template_row.stt, bold=section, align="center", border=True, template=True)
        _xl_put(ws, row, 2, template_row.text_vi if lang == "vi" else template_row.text_en, bold=section,
                border=True, template=True)
        for col, value in enumerate(cells, 3):
            if value is None:
                _xl_put(ws, row, col, None, border=True)
            elif isinstance(value, tuple):
                num, den = value
                _xl_put(ws, row, col, num / den if den else "–", number_format=RATE_FORMAT, align="right",
                        border=True, template=True)
            elif isinstance(value, pd.DataFrame):
                _xl_put(ws, row, col, _fmt_reasons(value, lang, top_reasons), border=True)
            else:
                _xl_put(ws, row, col, int(value), number_format=COUNT_FORMAT, align="right", border=True)
    row += 1  # a blank row, then the notes (the form's adaptations of the template), each merged across the table
    for note in notes:
        row += 1
        _xl_put(ws, row, 1, note, align="left", template=True)
        ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=4)
    for col, width in zip("ABCD", (7, 70, 22, 22)):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = ws.cell(row=len(lines) + 3, column=1)


def monthly_workbook(counts: pd.DataFrame, reasons: pd.DataFrame, form: int | str, unit_ids: Iterable[str],
                     unit_names: Mapping[str, str], path, *, year: int, month: int, lang: str = "vi",
                     top_reasons: int = 3):
    """Write a Phụ lục 3 form (:data:`MONTHLY_FORMS`) as an Excel workbook in the template's layout.

    The first sheet adds up ``unit_ids``; then one sheet per unit (named by its id). Each sheet
    has the template's title lines (merged cells), the header ``STT | Nội dung | Kết quả trong
    tháng báo cáo | Kết quả từ đầu năm đến tháng báo cáo`` and its rows with their numbering;
    counts are numbers (format ``#,##0``), rates are numbers (``0.00%``; ``–`` when nothing to
    divide by), overdue reasons text. The figures are those of :func:`monthly_table` (both come
    from :func:`monthly_values`). Below the table, after a blank row, the form's adaptations of the
    template (:func:`monthly_adaptations`; none for the forms as printed). Text from data (unit
    names, reasons) is neutralised so that no cell runs as a formula. Returns the path.
    """
    from openpyxl import Workbook

    ids = [str(u) for u in unit_ids]
    form = monthly_form(form)
    form_title = label(form, lang)
    notes = monthly_adaptations(form, lang)
    heading = _xl_text("pl3_heading", lang, month=f"{month:02d}", year=year)
    wb = Workbook()
    taken: set[str] = set()
    ws = wb.active
    ws.title = _xl_sheet_title(_xl_text("pl3_all_sheet", lang), taken)
    lines = [(_xl_text("pl3_annex", lang), False, "left"), (form_title, True, "left"),
             (_xl_text("pl3_all_units", lang, k=len(ids)), False, "left"), (heading, True, "center")]
    _monthly_sheet(ws, monthly_values(counts, reasons, form, ids), lines, lang, top_reasons, notes)
    for unit in ids:
        ws = wb.create_sheet(_xl_sheet_title(unit, taken))
        lines = [(_xl_text("pl3_annex", lang), False, "left"), (form_title, True, "left"),
                 (str(unit_names.get(unit, unit)), True, "left"), (heading, True, "center")]
        _monthly_sheet(ws, monthly_values(counts, reasons, form, [unit]), lines, lang, top_reasons, notes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def annual_survey_workbook(summary: pd.DataFrame, forms: pd.DataFrame, units: pd.DataFrame,
                           quarantine: pd.DataFrame, path, *, year: int, lang: str = "vi",
                           plan_reference: str = "Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND Thành phố",
                           implementer: str = "Viện Nghiên cứu phát triển kinh tế - xã hội Hà Nội",
                           publication: str | None = None):
    """Write Phụ lục 4 as an Excel workbook in the template's layout.

    Sheet 1: the title (merged), part 1 "Kết quả triển khai" with the template's ten numbered
    rows (:func:`annual_survey_rows`, the same text as the HTML), then the accepted
    questionnaires by field × survey mode as numbers (``annual_survey_forms``). Sheet 2: part 2,
    the records set aside at intake by rule with their share of the records received
    (``annual_survey_quarantine``; counts ``#,##0``, shares ``0.00%``). Returns the path.
    """
    from openpyxl import Workbook

    rows = annual_survey_rows(summary, forms, units, lang=lang, plan_reference=plan_reference,
                              implementer=implementer, publication=publication)
    wb = Workbook()
    taken: set[str] = set()
    ws = wb.active
    ws.title = _xl_sheet_title(_xl_text("pl4_sheet", lang), taken)
    row = _xl_title_block(ws, [(_xl_text("pl4_annex", lang), False, "left"),
                               (label("pl4_title", lang, year=year), True, "center"),
                               (label("pl4_part1", lang), True, "left")], 3)
    _xl_header(ws, row, list(rows.columns))
    for values in rows.itertuples(index=False):
        row += 1
        _xl_put(ws, row, 1, values[0], align="center", border=True, template=True)
        _xl_put(ws, row, 2, values[1], border=True, template=True)
        _xl_put(ws, row, 3, values[2], border=True)
    row += 2
    modes = [m for m in ("postal", "one_stop", "online") if m in set(forms["survey_mode"])]
    modes += sorted(set(forms["survey_mode"]) - set(modes))
    table = forms.pivot_table(index="field", columns="survey_mode", values="n", aggfunc="sum", fill_value=0)
    _xl_header(ws, row, [label("field", lang)] + [label(f"mode_{m}", lang) if f"mode_{m}" in LABELS else m
                                                   for m in modes])
    for field in table.index:
        row += 1
        key = f"field_{field}"
        _xl_put(ws, row, 1, label(key, lang) if key in LABELS else str(field), border=True)
        for col, mode in enumerate(modes, 2):
            value = int(table.loc[field, mode]) if mode in table.columns else 0
            _xl_put(ws, row, col, value, number_format=COUNT_FORMAT, align="right", border=True)
    for col, width in zip("ABCD", (26, 55, 70, 14)):
        ws.column_dimensions[col].width = width

    from sipas_lib.intake import RULES

    ws = wb.create_sheet(_xl_sheet_title(_xl_text("pl4_quarantine_sheet", lang), taken))
    row = _xl_title_block(ws, [(label("pl4_part2", lang), True, "left")], 3)
    share = load_texts("annual_survey_report")["pl4_share"][lang]
    _xl_header(ws, row, [label("pl4_rule", lang), label("n_resp", lang), share])
    for rule, n, share in quarantine[["rule", "n", "share_of_received"]].itertuples(index=False):
        row += 1
        text = RULES.get(rule, (rule, rule))[0 if lang == "en" else 1]
        _xl_put(ws, row, 1, text, border=True)
        _xl_put(ws, row, 2, int(n), number_format=COUNT_FORMAT, align="right", border=True)
        _xl_put(ws, row, 3, None if pd.isna(share) else float(share), number_format=RATE_FORMAT, align="right",
                border=True)
    for col, width in zip("ABC", (70, 14, 14)):
        ws.column_dimensions[col].width = width
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path
