"""Administrative SIPAS reports of plan 143/KH-UBND: the monthly report (Phụ lục 3) and the
annual survey-implementation report (Phụ lục 4).

Monthly report (Phụ lục 3)
--------------------------
Mẫu số 1 (departments) and Mẫu số 2 (districts, block A at the district's one-stop shop and
block B at its communes) are filled from the administrative records of a year
(``dossiers.parquet``, ``procedures.csv``, ``feedback.parquet``, ``apologies.parquet``,
``opinions.parquet``; schemas in docs/CONTRACTS.md) for the reporting month and for the year
to date. The dossier table can hold millions of rows, so it is aggregated by DuckDB directly
over the Parquet file (one scan with conditional aggregates, one for procedure coverage).

Definitions, for a period P = [start, end] (the month, or 1 January to the month's end):

* *hồ sơ cần giải quyết* (dossiers to resolve) = dossiers received on or before ``end`` that were
  not resolved before ``start``: carried over from earlier periods + newly received in P;
  broken down by reception channel and by field;
* *tỷ lệ TTHC cung cấp DVC TT mức độ 3 có phát sinh hồ sơ* = procedures of the unit (and level)
  offering online level 3 that received at least one level-3 dossier in P / procedures offering
  it (likewise level 4 and the public postal service, DV BCCI);
* *tỷ lệ hồ sơ giải quyết đúng hạn* = dossiers resolved in P with ``resolved_on <= due_on`` /
  dossiers resolved in P (overall and per channel); the overdue rate is its complement, and the
  overdue reasons are counted over the dossiers resolved late in P;
* feedback (*phản ánh, kiến nghị*), apology letters and satisfaction opinions are counted by
  their date (``received_on`` / ``sent_on``) within P.

Counts are kept as numerators and denominators in a tidy table
(``unit_id, level, period, metric, value``) so units add up to the city before rates are taken.

Annual survey-implementation report (Phụ lục 4)
-----------------------------------------------
:func:`annual_survey_rows` fills the template's ten rows from the run's accepted responses and
intake counts (received = accepted + quarantined).

Reference: Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND thành phố Hà Nội, Phụ lục 3 and 4.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from sipas_lib.reporting import LABELS, fmt_num, fmt_pct, label
from sipas_lib.texts import load_texts

CHANNELS = ("direct", "online_l3", "online_l4", "postal")
FIELDS = ("justice", "labour_social", "land_environment", "construction_urban", "other")
PERIODS = ("month", "ytd")
#: Channels whose procedures declare an offer flag in ``procedures.csv``.
OFFER_FLAGS = {"online_l3": "offers_online_l3", "online_l4": "offers_online_l4", "postal": "offers_postal"}

DOSSIER_COLUMNS = ("dossier_id", "unit_id", "level", "commune_id", "field", "channel", "procedure_id",
                   "received_on", "due_on", "resolved_on", "status", "overdue_reason")
PROCEDURE_COLUMNS = ("procedure_id", "unit_id", "level", "field", "offers_online_l3", "offers_online_l4",
                     "offers_postal")
FEEDBACK_COLUMNS = ("feedback_id", "unit_id", "level", "received_on", "kind", "result_published")
APOLOGY_COLUMNS = ("apology_id", "unit_id", "level", "sent_on")
OPINION_COLUMNS = ("opinion_id", "unit_id", "level", "received_on", "medium", "satisfied")


# --------------------------------------------------------------------------------------------
# periods and inputs
# --------------------------------------------------------------------------------------------


def report_periods(year: int, month: int) -> dict[str, tuple[dt.date, dt.date]]:
    """The reporting month and the year to date as ``{"month": (start, end), "ytd": (start, end)}``.

    >>> report_periods(2025, 2)["ytd"]
    (datetime.date(2025, 1, 1), datetime.date(2025, 2, 28))
    """
    if not isinstance(month, (int,)) or isinstance(month, bool) or not 1 <= int(month) <= 12:
        raise ValueError(f"month must be an integer 1-12, got {month!r}")
    if not 1900 <= int(year) <= 2200:
        raise ValueError(f"year must be a calendar year such as 2025, got {year!r}")
    end = dt.date(int(year), int(month), calendar.monthrange(int(year), int(month))[1])
    return {"month": (dt.date(int(year), int(month), 1), end), "ytd": (dt.date(int(year), 1, 1), end)}


@dataclass(frozen=True)
class AdminFiles:
    """Where a year's administrative records are (``data_dir`` of a run)."""

    dossiers: Path
    procedures: Path
    feedback: Path
    apologies: Path
    opinions: Path

    @classmethod
    def in_folder(cls, folder: str | os.PathLike) -> "AdminFiles":
        f = Path(folder)
        return cls(f / "dossiers.parquet", f / "procedures.csv", f / "feedback.parquet",
                   f / "apologies.parquet", f / "opinions.parquet")

    def missing(self) -> list[str]:
        """Names of the files that do not exist."""
        return [p.name for p in (self.dossiers, self.procedures, self.feedback, self.apologies,
                                 self.opinions) if not p.exists()]


def _connect(threads: int | None = None):
    import duckdb

    con = duckdb.connect(database=":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def _reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    if path.suffix.lower() == ".csv":
        return f"read_csv_auto('{quoted}', header=true, all_varchar=false)"
    return f"read_parquet('{quoted}')"


def _check_columns(con, path: Path, required: Sequence[str]) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (needed for the monthly SIPAS report)")
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_reader(path)}").fetchall()]
    missing = [c for c in required if c not in cols]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}; "
                         f"expected {', '.join(required)} (see docs/CONTRACTS.md)")


def _unit_filter(unit_ids: Iterable[str] | str | None) -> tuple[str, list]:
    if unit_ids is None:
        return "", []
    ids = [unit_ids] if isinstance(unit_ids, str) else list(unit_ids)
    if not ids:
        raise ValueError("unit_ids is empty; pass None for all units")
    return " AND unit_id IN (SELECT UNNEST(?::VARCHAR[]))", [[str(i) for i in ids]]


# --------------------------------------------------------------------------------------------
# monthly aggregation (DuckDB over Parquet)
# --------------------------------------------------------------------------------------------


def _dossier_sql(where_units: str) -> str:
    """One scan over the dossiers: every count of Phụ lục 3, for both periods."""
    # $1 = ytd start, $2 = month start, $3 = end
    period_start = {"month": "$2", "ytd": "$1"}
    aggs: list[str] = []
    for per, start in period_start.items():
        todo = f"(res IS NULL OR res >= {start})"
        resolved = f"(res >= {start} AND res <= $3)"
        aggs.append(f"count(*) FILTER (WHERE {todo}) AS {per}__total")
        for ch in CHANNELS:
            aggs.append(f"count(*) FILTER (WHERE {todo} AND channel = '{ch}') AS {per}__ch_{ch}")
        for fd in FIELDS:
            aggs.append(f"count(*) FILTER (WHERE {todo} AND field = '{fd}') AS {per}__field_{fd}")
        aggs.append(f"count(*) FILTER (WHERE {todo} AND rec >= {start}) AS {per}__received_new")
        aggs.append(f"count(*) FILTER (WHERE {resolved}) AS {per}__resolved")
        aggs.append(f"count(*) FILTER (WHERE {resolved} AND res <= due) AS {per}__on_time")
        aggs.append(f"count(*) FILTER (WHERE {resolved} AND res > due) AS {per}__late")
        for ch in CHANNELS:
            aggs.append(f"count(*) FILTER (WHERE {resolved} AND channel = '{ch}') AS {per}__resolved_{ch}")
            aggs.append(f"count(*) FILTER (WHERE {resolved} AND channel = '{ch}' AND res <= due) "
                        f"AS {per}__on_time_{ch}")
    return f"""
        WITH d AS (
            SELECT unit_id, level, channel, field,
                   CAST(received_on AS DATE) AS rec, CAST(due_on AS DATE) AS due,
                   CAST(resolved_on AS DATE) AS res
            FROM {{src}}
            WHERE CAST(received_on AS DATE) <= $3
              AND (resolved_on IS NULL OR CAST(resolved_on AS DATE) >= $1){where_units}
        )
        SELECT unit_id, level, {', '.join(aggs)}
        FROM d GROUP BY unit_id, level
    """


def _coverage_sql(where_units: str) -> str:
    """Procedures offering a channel, and those with at least one dossier by it in the period."""
    flags = []
    for ch in OFFER_FLAGS:
        flags.append(f"bool_or(channel = '{ch}' AND rec >= $2) AS month_{ch}")
        flags.append(f"bool_or(channel = '{ch}') AS ytd_{ch}")
    aggs = []
    for ch, offer in OFFER_FLAGS.items():
        aggs.append(f"count(*) FILTER (WHERE p.{offer}) AS offered_{ch}")
        for per in PERIODS:
            aggs.append(f"count(*) FILTER (WHERE p.{offer} AND coalesce(a.{per}_{ch}, false)) "
                        f"AS {per}__active_{ch}")
    return f"""
        WITH a AS (
            SELECT unit_id, level, procedure_id, {', '.join(flags)}
            FROM (SELECT unit_id, level, procedure_id, channel, CAST(received_on AS DATE) AS rec
                  FROM {{src}}
                  WHERE CAST(received_on AS DATE) BETWEEN $1 AND $3{where_units})
            GROUP BY unit_id, level, procedure_id
        ),
        p AS (
            SELECT CAST(unit_id AS VARCHAR) AS unit_id, CAST(level AS VARCHAR) AS level,
                   CAST(procedure_id AS VARCHAR) AS procedure_id,
                   CAST(offers_online_l3 AS BOOLEAN) AS offers_online_l3,
                   CAST(offers_online_l4 AS BOOLEAN) AS offers_online_l4,
                   CAST(offers_postal AS BOOLEAN) AS offers_postal
            FROM {{proc}}
            WHERE true{where_units}
        )
        SELECT p.unit_id, p.level, {', '.join(aggs)}
        FROM p LEFT JOIN a
          ON a.unit_id = p.unit_id AND a.level = p.level
         AND CAST(a.procedure_id AS VARCHAR) = p.procedure_id
        GROUP BY p.unit_id, p.level
    """


def _small_table_sql(kind: str, date_col: str, extra: dict[str, str], where_units: str) -> str:
    aggs = []
    for per, start in (("month", "$2"), ("ytd", "$1")):
        inside = f"d >= {start}"
        aggs.append(f"count(*) FILTER (WHERE {inside}) AS {per}__{kind}")
        for name, cond in extra.items():
            aggs.append(f"count(*) FILTER (WHERE {inside} AND {cond}) AS {per}__{name}")
    return f"""
        SELECT unit_id, level, {', '.join(aggs)}
        FROM (SELECT *, CAST({date_col} AS DATE) AS d FROM {{src}}
              WHERE CAST({date_col} AS DATE) BETWEEN $1 AND $3{where_units})
        GROUP BY unit_id, level
    """


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    if wide.empty:
        return pd.DataFrame(columns=["unit_id", "level", "period", "metric", "value"])
    value_cols = [c for c in wide.columns if c not in ("unit_id", "level")]
    long = wide.melt(id_vars=["unit_id", "level"], value_vars=value_cols, var_name="key", value_name="value")
    split = long["key"].str.split("__", n=1, expand=True)
    long["period"] = split[0]
    long["metric"] = split[1]
    return long[["unit_id", "level", "period", "metric", "value"]]


def monthly_aggregates(data_dir: str | os.PathLike, year: int, month: int,
                       unit_ids: Iterable[str] | str | None = None, *,
                       threads: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregate a year's administrative records for the Phụ lục 3 monthly report.

    Parameters
    ----------
    data_dir
        Folder with ``dossiers.parquet``, ``procedures.csv``, ``feedback.parquet``,
        ``apologies.parquet`` and ``opinions.parquet``.
    year, month
        The reporting month; the year-to-date period runs from 1 January to the month's end.
    unit_ids
        One unit id, a list of them, or ``None`` for every unit.
    threads
        DuckDB worker threads (default: all cores).

    Returns
    -------
    counts
        Tidy ``unit_id, level, period (month|ytd), metric, value``: every count behind the
        template (see the module docstring for the definitions); rates are taken later from
        these numerators and denominators (:func:`monthly_table`), so units sum to the city.
    reasons
        ``unit_id, level, period, reason, n``: overdue reasons of dossiers resolved late in the
        period.

    Examples
    --------
    >>> counts, reasons = monthly_aggregates("data/demo", 2025, 6)   # doctest: +SKIP
    """
    periods = report_periods(year, month)
    files = AdminFiles.in_folder(data_dir)
    con = _connect(threads)
    _check_columns(con, files.dossiers, DOSSIER_COLUMNS)
    _check_columns(con, files.procedures, PROCEDURE_COLUMNS)
    _check_columns(con, files.feedback, FEEDBACK_COLUMNS)
    _check_columns(con, files.apologies, APOLOGY_COLUMNS)
    _check_columns(con, files.opinions, OPINION_COLUMNS)
    where, uparams = _unit_filter(unit_ids)
    ytd0, end = periods["ytd"]
    m0 = periods["month"][0]

    def run(sql: str, n_unit_params: int = 1) -> pd.DataFrame:
        params = [ytd0, m0, end]
        if uparams:
            # every {where} occurrence binds the unit list once more, after the dates
            sql_q = sql.replace("?::VARCHAR[]", "$4::VARCHAR[]")
            return con.execute(sql_q, params + uparams).df()
        return con.execute(sql, params).df()

    dossiers = run(_dossier_sql(where).replace("{src}", _reader(files.dossiers)))
    coverage = run(_coverage_sql(where).replace("{src}", _reader(files.dossiers))
                   .replace("{proc}", _reader(files.procedures)))
    feedback = run(_small_table_sql(
        "fb_total", "received_on",
        {"fb_behaviour": "kind = 'behaviour'", "fb_regulation": "kind = 'regulation'",
         "fb_published": "CAST(result_published AS BOOLEAN)"}, where).replace("{src}", _reader(files.feedback)))
    apologies = run(_small_table_sql("apologies", "sent_on", {}, where)
                    .replace("{src}", _reader(files.apologies)))
    opinions = run(_small_table_sql(
        "opinions", "received_on",
        {"opinions_satisfied": "CAST(satisfied AS BOOLEAN)", "opinions_paper": "medium = 'paper'",
         "opinions_electronic": "medium = 'electronic'"}, where).replace("{src}", _reader(files.opinions)))

    offered = coverage[["unit_id", "level"] + [f"offered_{ch}" for ch in OFFER_FLAGS]]
    coverage = coverage.drop(columns=[f"offered_{ch}" for ch in OFFER_FLAGS])
    for per in PERIODS:
        for ch in OFFER_FLAGS:
            coverage[f"{per}__offered_{ch}"] = offered[f"offered_{ch}"]
    frames = [_long(t) for t in (dossiers, coverage, feedback, apologies, opinions)]
    counts = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    counts["unit_id"] = counts["unit_id"].astype(str)
    counts["level"] = counts["level"].astype(str)
    counts["value"] = counts["value"].fillna(0).astype("int64")
    counts = counts.sort_values(["unit_id", "level", "period", "metric"], kind="stable").reset_index(drop=True)

    reason_sql = f"""
        SELECT unit_id, level, period, coalesce(NULLIF(trim(CAST(overdue_reason AS VARCHAR)), ''), '?') AS reason,
               count(*) AS n
        FROM (SELECT unit_id, level, overdue_reason, CAST(resolved_on AS DATE) AS res, CAST(due_on AS DATE) AS due
              FROM {_reader(files.dossiers)}
              WHERE CAST(resolved_on AS DATE) BETWEEN $1 AND $3{where}) d,
             (SELECT 'ytd' AS period UNION ALL SELECT 'month') p
        WHERE res > due AND (p.period = 'ytd' OR res >= $2)
        GROUP BY ALL ORDER BY unit_id, level, period, n DESC, reason
    """
    reasons = run(reason_sql)
    reasons["n"] = reasons["n"].astype("int64")
    con.close()
    return counts, reasons


# --------------------------------------------------------------------------------------------
# the template (rows exactly as in Phụ lục 3)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateRow:
    """One row of a report template: STT, text (vi/en) and what fills it.

    ``kind`` is ``header`` (no value), ``count`` (metric), ``rate`` (numerator/denominator
    metrics), ``reasons`` (overdue reasons).
    """

    stt: str
    text_vi: str
    text_en: str
    kind: str = "header"
    metric: str = ""
    denominator: str = ""
    level: str = "unit"


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
    return [TemplateRow(r.stt, r.text_vi, r.text_en, r.kind, r.metric, r.denominator, level) for r in rows]


def monthly_template(form: int) -> list[TemplateRow]:
    """The rows of Phụ lục 3: ``form=1`` Mẫu số 1 (departments), ``form=2`` Mẫu số 2 (districts).

    Mẫu số 2 has block A (at the district People's Committee, ``level="unit"``, with the
    breakdown by field) and block B (at its communes, ``level="commune"``).
    """
    if form == 1:
        return _block_rows("unit", with_fields=False)
    if form == 2:
        return ([TemplateRow("A", "TẠI UBND QUẬN/HUYỆN/THỊ XÃ", "AT THE DISTRICT PEOPLE'S COMMITTEE")]
                + _block_rows("unit", with_fields=True)
                + [TemplateRow("B", "TẠI UBND CÁC XÃ/PHƯỜNG/THỊ TRẤN", "AT THE COMMUNE PEOPLE'S COMMITTEES",
                               level="commune")]
                + _block_rows("commune", with_fields=True, commune=True))
    raise ValueError(f"form must be 1 (Mẫu số 1, departments) or 2 (Mẫu số 2, districts), got {form!r}")


def form_for_unit_type(unit_type: str) -> int:
    """Mẫu số 1 for departments, Mẫu số 2 for districts."""
    if unit_type == "department":
        return 1
    if unit_type == "district":
        return 2
    raise ValueError(f"no Phụ lục 3 form for unit type {unit_type!r} (expected department or district)")


def _fmt_reasons(reasons: pd.DataFrame, lang: str, top: int) -> str:
    if reasons.empty:
        return "–"
    ordered = reasons.sort_values(["n", "reason"], ascending=[False, True], kind="stable")
    parts = [f"{r} ({fmt_num(n, lang=lang)})" for r, n in zip(ordered["reason"].head(top), ordered["n"].head(top))]
    rest = int(ordered["n"].iloc[top:].sum())
    if rest:
        parts.append(("khác" if lang == "vi" else "other") + f" ({fmt_num(rest, lang=lang)})")
    return "; ".join(parts)


def monthly_table(counts: pd.DataFrame, reasons: pd.DataFrame, form: int,
                  unit_ids: Iterable[str] | str | None = None, lang: str = "vi",
                  top_reasons: int = 3) -> pd.DataFrame:
    """Lay the aggregated counts out as the Phụ lục 3 table.

    Parameters
    ----------
    counts, reasons
        Output of :func:`monthly_aggregates`.
    form
        1 (Mẫu số 1, departments) or 2 (Mẫu số 2, districts with the commune block B).
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
    rows = monthly_template(form)
    sel_counts, sel_reasons = counts, reasons
    if unit_ids is not None:
        ids = [unit_ids] if isinstance(unit_ids, str) else [str(u) for u in unit_ids]
        sel_counts = counts[counts["unit_id"].isin(ids)]
        sel_reasons = reasons[reasons["unit_id"].isin(ids)]
    totals = sel_counts.groupby(["level", "period", "metric"], observed=True)["value"].sum()
    lookup = totals.to_dict()
    out = []
    for row in rows:
        values = []
        for per in PERIODS:
            if row.kind == "header":
                values.append("")
            elif row.kind == "count":
                values.append(fmt_num(lookup.get((row.level, per, row.metric), 0), lang=lang))
            elif row.kind == "rate":
                num = lookup.get((row.level, per, row.metric), 0)
                den = lookup.get((row.level, per, row.denominator), 0)
                values.append("–" if den == 0 else
                              f"{fmt_pct(num / den, 2, lang)} ({fmt_num(num, lang=lang)}/{fmt_num(den, lang=lang)})")
            elif row.kind == "reasons":
                r = sel_reasons[(sel_reasons["level"] == row.level) & (sel_reasons["period"] == per)]
                r = r.groupby("reason", as_index=False)["n"].sum()
                values.append(_fmt_reasons(r, lang, top_reasons))
        out.append((row.stt, row.text_vi if lang == "vi" else row.text_en, values[0], values[1]))
    return pd.DataFrame(out, columns=[label("stt", lang), label("content", lang),
                                      label("month_result", lang), label("ytd_result", lang)])


def monthly_overview(counts: pd.DataFrame, level: str = "unit", period: str = "month") -> pd.DataFrame:
    """One row per unit with the headline figures of the month (or year to date).

    Returns ``unit_id, total, received_new, resolved, on_time_rate, late_rate, fb_total,
    apologies, opinions`` (rates as shares, NaN when nothing was resolved).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    sub = counts[(counts["level"] == level) & (counts["period"] == period)]
    wide = sub.pivot_table(index="unit_id", columns="metric", values="value", aggfunc="sum", fill_value=0)
    for col in ("total", "received_new", "resolved", "on_time", "late", "fb_total", "apologies", "opinions"):
        if col not in wide.columns:
            wide[col] = 0
    resolved = wide["resolved"].where(wide["resolved"] > 0)
    out = pd.DataFrame({
        "unit_id": wide.index.astype(str),
        "total": wide["total"].to_numpy(),
        "received_new": wide["received_new"].to_numpy(),
        "resolved": wide["resolved"].to_numpy(),
        "on_time_rate": (wide["on_time"] / resolved).to_numpy(),
        "late_rate": (wide["late"] / resolved).to_numpy(),
        "fb_total": wide["fb_total"].to_numpy(),
        "apologies": wide["apologies"].to_numpy(),
        "opinions": wide["opinions"].to_numpy(),
    })
    return out.reset_index(drop=True)


def latest_month(data_dir: str | os.PathLike, year: int) -> int:
    """The last month of ``year`` with any dossier received (12 when the file has none)."""
    files = AdminFiles.in_folder(data_dir)
    con = _connect()
    _check_columns(con, files.dossiers, ("received_on",))
    row = con.execute(
        f"SELECT max(month(CAST(received_on AS DATE))) FROM {_reader(files.dossiers)} "
        f"WHERE year(CAST(received_on AS DATE)) = ?", [int(year)]).fetchone()
    con.close()
    return int(row[0]) if row and row[0] is not None else 12


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


def annual_survey_rows(responses: pd.DataFrame, *, year: int, received: int | None = None,
                       quarantined: int | None = None, lang: str = "vi",
                       plan_reference: str = "Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND Thành phố",
                       implementer: str = "Viện Nghiên cứu phát triển kinh tế - xã hội Hà Nội",
                       publication: str | None = None) -> pd.DataFrame:
    """Fill the ten rows of Phụ lục 4 ("Kết quả triển khai") from a run.

    Parameters
    ----------
    responses
        Accepted responses with ``unit_id``, ``unit_type``, ``field``, ``channel`` (survey mode
        postal/one_stop/online) and ``survey_date``.
    year
        The survey year.
    received, quarantined
        Intake counts; returned forms = accepted + quarantined (``received`` defaults to that sum).
    plan_reference, implementer, publication
        The texts the template asks for that no data file holds (row 1's document, row 5's
        unit, row 8's publication channels).

    Returns
    -------
    DataFrame ``STT, Nội dung, Kết quả thực hiện`` (English headers with ``lang="en"``). The
    values are data: escape when rendering.

    Notes
    -----
    Row 4 (*kỳ lấy phiếu*: 01/3/6 months) is the calendar span of the survey dates rounded up to
    1, 3, 6 or 12 months; row 6 is the field with the most accepted questionnaires; rows 9-10
    count the departments and districts with accepted questionnaires.
    """
    need = ("unit_id", "unit_type", "field", "channel", "survey_date")
    missing = [c for c in need if c not in responses.columns]
    if missing:
        raise ValueError(f"annual_survey_rows: responses lack column(s) {', '.join(missing)}")
    text = {key: value[lang] for key, value in _ANNUAL_TEXT.items()}
    accepted = len(responses)
    quarantined = int(quarantined or 0)
    received = accepted + quarantined if received is None else int(received)
    if received != accepted + quarantined and quarantined:
        raise ValueError(f"annual_survey_rows: received ({received}) must equal accepted ({accepted}) "
                         f"+ quarantined ({quarantined})")
    if publication is None:
        publication = ("Báo cáo HTML công bố chỉ số của Thành phố và phiếu điểm của từng đơn vị"
                       if lang == "vi" else "HTML reports with the city's index and a scorecard per unit")
    dates = pd.to_datetime(responses["survey_date"], errors="coerce").dropna()
    modes = responses["channel"].value_counts()
    mode_text = "; ".join(
        f"{label(_MODE_KEYS[m], lang) if m in _MODE_KEYS else m}: {text['forms'].format(n=fmt_num(c, lang=lang))}"
        for m, c in modes.items()) or text["none"]
    values: list[str] = [text["yes"].format(plan=plan_reference)]
    if dates.empty:
        values += [text["none"], mode_text, text["none"]]
    else:
        a, b = dates.min().date(), dates.max().date()
        span = (b.year - a.year) * 12 + b.month - a.month + 1
        months = next(m for m in (1, 3, 6, 12, span) if span <= m)
        rounds = -(-span // months)
        values += [text["from_to"].format(a=_fmt_date(a, lang), b=_fmt_date(b, lang)), mode_text,
                   text["period"].format(k=f"{rounds:02d}", m=months, a=f"{a.month:02d}/{a.year}",
                                         b=f"{b.month:02d}/{b.year}")]
    values.append(implementer)
    fields = responses["field"].value_counts()
    if fields.empty:
        values.append(text["none"])
    else:
        top = str(fields.index[0])
        key = f"field_{top}"
        name = label(key, lang) if key in LABELS else top
        values.append(text["field"].format(f=name, n=fmt_num(fields.iloc[0], lang=lang),
                                           p=fmt_pct(fields.iloc[0] / accepted, 1, lang)))
    values.append(text["returned"].format(r=fmt_num(received, lang=lang), a=fmt_num(accepted, lang=lang),
                                          q=fmt_num(quarantined, lang=lang)))
    values.append(publication)
    per_type = responses.groupby("unit_type")["unit_id"].nunique()
    forms_type = responses["unit_type"].value_counts()
    values.append(text["units"].format(n=fmt_num(int(per_type.sum()), lang=lang),
                                       d=fmt_num(int(per_type.get("department", 0)), lang=lang),
                                       t=fmt_num(int(per_type.get("district", 0)), lang=lang)))
    values.append(text["unit_forms"].format(n=fmt_num(accepted, lang=lang),
                                            d=fmt_num(int(forms_type.get("department", 0)), lang=lang),
                                            t=fmt_num(int(forms_type.get("district", 0)), lang=lang)))
    rows = [(stt, vi if lang == "vi" else en, v) for (stt, vi, en), v in zip(ANNUAL_ROWS, values)]
    return pd.DataFrame(rows, columns=[label("stt", lang), label("content", lang),
                                       label("implementation_result", lang)])
