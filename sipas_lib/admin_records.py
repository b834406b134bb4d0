"""Administrative records of a year aggregated for the monthly SIPAS report (Phụ lục 3).

Core layer: DuckDB over Parquet, no presentation. The dossier table can hold millions of rows, so
it is aggregated by DuckDB directly over the Parquet file (one scan with conditional aggregates,
one for procedure coverage); the same SQL runs on a distributed engine when one machine is no
longer enough. The report layer (:mod:`sipas_lib.admin_reports`) lays the counts out as the
template; the stage (:mod:`sipas_lib.stages.monthly_report`) writes them as result tables.

Inputs: ``dossiers.parquet``, ``procedures.csv``, ``feedback.parquet``, ``apologies.parquet``,
``opinions.parquet`` (schemas in docs/CONTRACTS.md).

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

Reference: Kế hoạch số 143/KH-UBND ngày 11/6/2021 của UBND thành phố Hà Nội, Phụ lục 3.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

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


def monthly_overview(counts: pd.DataFrame, record_level: str = "unit", period: str = "month") -> pd.DataFrame:
    """One row per unit with the headline figures of the month (or year to date).

    Returns ``unit_id, total, received_new, resolved, on_time_rate, late_rate, fb_total,
    apologies, opinions`` (rates as shares, NaN when nothing was resolved).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    sub = counts[(counts["level"] == record_level) & (counts["period"] == period)]
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
