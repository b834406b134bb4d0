"""Administrative records of a year aggregated for the monthly SIPAS report (Phụ lục 3).

Core layer, no presentation. The dossier table can hold hundreds of millions of rows, so it is
aggregated where it lies, never loaded into pandas: the aggregation is written once as Ibis
expressions (one scan with conditional counts, one for procedure coverage, one for overdue
reasons) that run unchanged on DuckDB over Parquet (the default, out of core) or on Spark when one
machine is no longer enough (:mod:`sipas_lib.dossier_engine`; setting ``common.dossier_engine``, read by
:func:`engine_options` for every stage that aggregates dossiers). The
report layer (:mod:`sipas_lib.admin_reports`) lays the counts out as the
template; the stage (:mod:`sipas_lib.stages.monthly_report`) writes them as result tables.

Inputs: ``dossiers.parquet`` (or the same table partitioned by month of reception,
``dossiers/year=YYYY/month=MM/part-*.parquet``), ``procedures.csv``, ``feedback.parquet``, ``apologies.parquet``,
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
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pandas as pd

from sipas_lib import dossier_engine
from sipas_lib.config import CHANNELS, FIELDS
from sipas_lib.settings import Settings

if TYPE_CHECKING:
    import ibis.expr.types as ir

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
        """The files of ``folder``; the dossiers are its ``dossiers/`` folder (partitioned by month) when
        there is one, else ``dossiers.parquet`` (:func:`sipas_lib.dossier_engine.dossier_path`)."""
        f = Path(folder)
        return cls(dossier_engine.dossier_path(f), f / "procedures.csv", f / "feedback.parquet",
                   f / "apologies.parquet", f / "opinions.parquet")

    def missing(self) -> list[str]:
        """Names of the files that do not exist."""
        return [p.name for p in (self.dossiers, self.procedures, self.feedback, self.apologies,
                                 self.opinions) if not p.exists()]


def engine_options(settings: Settings) -> dict[str, Any]:
    """The run's engine settings as keywords of :func:`monthly_aggregates` / :func:`latest_month`.

    One setting for every place that aggregates dossiers (stage 50's small-area covariates, stage 70):
    ``common.dossier_engine`` (``duckdb`` | ``spark``) and ``common.duckdb_memory_limit`` ("" = DuckDB's default).

    >>> from sipas_lib.settings import load_settings
    >>> engine_options(load_settings(overrides=["common.duckdb_memory_limit=2GB"]))
    {'engine': 'duckdb', 'memory_limit': '2GB'}
    """
    return {"engine": settings.common["dossier_engine"], "memory_limit": settings.common["duckdb_memory_limit"] or None}


def _unit_ids(unit_ids: Iterable[str] | str | None) -> list[str] | None:
    if unit_ids is None:
        return None
    ids = [unit_ids] if isinstance(unit_ids, str) else list(unit_ids)
    if not ids:
        raise ValueError("unit_ids is empty; pass None for all units")
    return [str(i) for i in ids]


def _of_units(table: "ir.Table", ids: list[str] | None) -> "ir.Table":
    return table if ids is None else table.filter(table.unit_id.cast("string").isin(ids))


# --------------------------------------------------------------------------------------------
# monthly aggregation: Ibis expressions, the same on DuckDB and Spark (sipas_lib.dossier_engine)
# --------------------------------------------------------------------------------------------


def _count_if(condition: "ir.BooleanValue", weight: "ir.IntegerValue | None" = None) -> "ir.IntegerScalar":
    """Rows where ``condition`` holds (a null condition counts as false), or the sum of their ``weight``:
    SUM(CASE WHEN … THEN weight ELSE 0 END), the same on every engine."""
    import ibis

    return ibis.ifelse(condition, 1 if weight is None else weight, 0).cast("int64").sum()


def _starts(periods: dict[str, tuple[dt.date, dt.date]]) -> dict[str, dt.date]:
    return {per: periods[per][0] for per in PERIODS}


def _dossier_cells(dossiers: "ir.Table", periods: dict[str, tuple[dt.date, dt.date]]) -> "ir.Table":
    """Dossiers to resolve in the year to date, counted (``n``) by unit, level, channel, field and the
    position of their dates relative to the periods.

    The one pass over all the dossiers: grouping by a few keys (a few hundred cells per unit, however
    many dossiers) costs the engine far less than some forty conditional sums per row, and every
    count of Phụ lục 3 is then a sum over these cells (:func:`_dossier_counts`).
    """
    ytd0, end = periods["ytd"]
    d = dossiers.select("unit_id", "level", "channel", "field", rec=dossiers.received_on.cast("date"),
                        due=dossiers.due_on.cast("date"), res=dossiers.resolved_on.cast("date"))
    d = d.filter(d.rec <= end, d.res.isnull() | (d.res >= ytd0))
    keys = {"resolved_by_end": d.res <= end, "on_time": d.res <= d.due}  # null while pending
    for per, start in _starts(periods).items():
        keys[f"received_from_{per}"] = d.rec >= start
        keys[f"resolved_from_{per}"] = d.res >= start                   # null while pending
    return d.group_by(["unit_id", "level", "channel", "field"], **keys).aggregate(n=d.count())


def _dossier_counts(dossiers: "ir.Table", periods: dict[str, tuple[dt.date, dt.date]]) -> "ir.Table":
    """Every dossier count of Phụ lục 3, for both periods, per ``unit_id, level`` (definitions: module docstring)."""
    c = _dossier_cells(dossiers, periods)
    metrics = {}
    for per in PERIODS:
        todo = c[f"resolved_from_{per}"].fill_null(True)      # pending, or resolved on or after the start
        resolved = c[f"resolved_from_{per}"] & c.resolved_by_end
        metrics[f"{per}__total"] = _count_if(todo, c.n)
        for ch in CHANNELS:
            metrics[f"{per}__ch_{ch}"] = _count_if(todo & (c.channel == ch), c.n)
        for fd in FIELDS:
            metrics[f"{per}__field_{fd}"] = _count_if(todo & (c.field == fd), c.n)
        metrics[f"{per}__received_new"] = _count_if(todo & c[f"received_from_{per}"], c.n)
        metrics[f"{per}__resolved"] = _count_if(resolved, c.n)
        metrics[f"{per}__on_time"] = _count_if(resolved & c.on_time, c.n)
        metrics[f"{per}__late"] = _count_if(resolved & ~c.on_time, c.n)
        for ch in CHANNELS:
            metrics[f"{per}__resolved_{ch}"] = _count_if(resolved & (c.channel == ch), c.n)
            metrics[f"{per}__on_time_{ch}"] = _count_if(resolved & (c.channel == ch) & c.on_time, c.n)
    return c.group_by(["unit_id", "level"]).aggregate(**metrics)


def _coverage(dossiers: "ir.Table", procedures: "ir.Table",
              periods: dict[str, tuple[dt.date, dt.date]]) -> "ir.Table":
    """Procedures offering a channel, and those with at least one dossier by it in the period.

    One pass keeps, per procedure and offered channel, the last day a dossier arrived in the year to
    date: a dossier arrived in the year iff there is a row, in the month iff that day is in the month.
    """
    ytd0, end = periods["ytd"]
    d = dossiers.select("unit_id", "level", "channel", procedure_id=dossiers.procedure_id.cast("string"),
                        rec=dossiers.received_on.cast("date"))
    d = d.filter((d.rec >= ytd0) & (d.rec <= end), d.channel.isin(list(OFFER_FLAGS)))
    last = d.group_by(["unit_id", "level", "procedure_id", "channel"]).aggregate(last=d.rec.max())
    flags = {}
    for ch in OFFER_FLAGS:
        flags[f"month_{ch}"] = ((last.channel == ch) & (last["last"] >= periods["month"][0])).any()
        flags[f"ytd_{ch}"] = (last.channel == ch).any()
    active = last.group_by(["unit_id", "level", "procedure_id"]).aggregate(**flags)
    p = procedures.select(unit_id=procedures.unit_id.cast("string"), level=procedures.level.cast("string"),
                          procedure_id=procedures.procedure_id.cast("string"),
                          **{offer: procedures[offer].cast("boolean") for offer in OFFER_FLAGS.values()})
    joined = p.left_join(active, ["unit_id", "level", "procedure_id"], rname="{name}_active")
    metrics = {}
    for ch, offer in OFFER_FLAGS.items():
        metrics[f"offered_{ch}"] = _count_if(joined[offer])
        for per in PERIODS:
            metrics[f"{per}__active_{ch}"] = _count_if(joined[offer] & joined[f"{per}_{ch}"].fill_null(False))
    return joined.group_by(["unit_id", "level"]).aggregate(**metrics)


def _dated_counts(table: "ir.Table", date_column: str, name: str, periods: dict[str, tuple[dt.date, dt.date]],
                  breakdown: dict[str, Callable[["ir.Table"], "ir.BooleanValue"]]) -> "ir.Table":
    """Records dated (``date_column``) in each period, in all and by each ``breakdown`` condition."""
    ytd0, end = periods["ytd"]
    t = table.mutate(day=table[date_column].cast("date"))
    t = t.filter((t.day >= ytd0) & (t.day <= end))
    metrics = {}
    for per, start in _starts(periods).items():
        inside = t.day >= start
        metrics[f"{per}__{name}"] = _count_if(inside)
        for metric, condition in breakdown.items():
            metrics[f"{per}__{metric}"] = _count_if(inside & condition(t))
    return t.group_by(["unit_id", "level"]).aggregate(**metrics)


def _overdue_reasons(dossiers: "ir.Table", periods: dict[str, tuple[dt.date, dt.date]]) -> "ir.Table":
    """Dossiers resolved late in the year to date, and in the month, by ``unit_id, level, reason``."""
    ytd0, end = periods["ytd"]
    d = dossiers.select("unit_id", "level", res=dossiers.resolved_on.cast("date"), due=dossiers.due_on.cast("date"),
                        reason=dossiers.overdue_reason.cast("string").strip().nullif("").fill_null("?"))
    d = d.filter((d.res >= ytd0) & (d.res <= end) & (d.res > d.due))
    return d.group_by(["unit_id", "level", "reason"]).aggregate(
        ytd=d.count(), month=_count_if(d.res >= periods["month"][0]))


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
                       threads: int | None = None, engine: str = "duckdb",
                       memory_limit: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregate a year's administrative records for the Phụ lục 3 monthly report.

    The aggregation is one set of Ibis expressions executed where the records lie
    (:mod:`sipas_lib.dossier_engine`): only the aggregated tables come back to pandas, so the
    dossiers may be far larger than memory.

    Parameters
    ----------
    data_dir
        Folder with the dossiers (``dossiers.parquet``, or ``dossiers/year=YYYY/month=MM/*.parquet``),
        ``procedures.csv``, ``feedback.parquet``, ``apologies.parquet`` and ``opinions.parquet``.
    year, month
        The reporting month; the year-to-date period runs from 1 January to the month's end.
    unit_ids
        One unit id, a list of them, or ``None`` for every unit.
    threads
        DuckDB worker threads (default: all cores).
    engine
        ``"duckdb"`` (embedded, default) or ``"spark"`` (PySpark; local, or the cluster the
        environment names): the tables are identical.
    memory_limit
        DuckDB's memory limit, e.g. ``"2GB"`` (default: DuckDB's, 80 % of RAM).

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
    ids = _unit_ids(unit_ids)
    dossier_engine.check_single_layout(data_dir)
    with dossier_engine.connect(engine, memory_limit=memory_limit, threads=threads) as con:
        dossiers, procedures, feedback, apologies, opinions = (
            _of_units(dossier_engine.read_records(con, path, required), ids)
            for path, required in ((files.dossiers, DOSSIER_COLUMNS), (files.procedures, PROCEDURE_COLUMNS),
                                   (files.feedback, FEEDBACK_COLUMNS), (files.apologies, APOLOGY_COLUMNS),
                                   (files.opinions, OPINION_COLUMNS)))
        wide = [dossier_engine.to_frame(con, expr) for expr in (
            _dossier_counts(dossiers, periods),
            _coverage(dossiers, procedures, periods),
            _dated_counts(feedback, "received_on", "fb_total", periods,
                          {"fb_behaviour": lambda t: t.kind == "behaviour",
                           "fb_regulation": lambda t: t.kind == "regulation",
                           "fb_published": lambda t: t.result_published.cast("boolean")}),
            _dated_counts(apologies, "sent_on", "apologies", periods, {}),
            _dated_counts(opinions, "received_on", "opinions", periods,
                          {"opinions_satisfied": lambda t: t.satisfied.cast("boolean"),
                           "opinions_paper": lambda t: t.medium == "paper",
                           "opinions_electronic": lambda t: t.medium == "electronic"}),
            _overdue_reasons(dossiers, periods))]
    dossier_counts, coverage, feedback_counts, apology_counts, opinion_counts, late = wide

    # a procedure's offer does not depend on the period: the same denominator in both
    offered = [f"offered_{ch}" for ch in OFFER_FLAGS]
    coverage = coverage.drop(columns=offered).assign(
        **{f"{per}__{col}": coverage[col] for per in PERIODS for col in offered})
    frames = [_long(t) for t in (dossier_counts, coverage, feedback_counts, apology_counts, opinion_counts)]
    counts = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    counts["unit_id"] = counts["unit_id"].astype(str)
    counts["level"] = counts["level"].astype(str)
    counts["value"] = counts["value"].fillna(0).astype("int64")
    counts = counts.sort_values(["unit_id", "level", "period", "metric"], kind="stable").reset_index(drop=True)

    reasons = late.melt(id_vars=["unit_id", "level", "reason"], value_vars=list(PERIODS),
                        var_name="period", value_name="n")
    reasons = reasons[reasons["n"] > 0].astype({"unit_id": str, "level": str, "period": str, "reason": str,
                                                "n": "int64"})
    reasons = (reasons.sort_values(["unit_id", "level", "period", "n", "reason"],
                                   ascending=[True, True, True, False, True], kind="stable")
               [["unit_id", "level", "period", "reason", "n"]].reset_index(drop=True))
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


def latest_month(data_dir: str | os.PathLike, year: int, *, engine: str = "duckdb",
                 memory_limit: str | None = None) -> int:
    """The last month of ``year`` with any dossier received (12 when there is none); engines as :func:`monthly_aggregates`."""
    dossier_engine.check_single_layout(data_dir)
    with dossier_engine.connect(engine, memory_limit=memory_limit) as con:
        dossiers = dossier_engine.read_records(con, AdminFiles.in_folder(data_dir).dossiers, ("received_on",))
        received = dossiers.received_on.cast("date")
        latest = dossiers.filter(received.year() == int(year)).aggregate(month=received.month().max())
        value = dossier_engine.to_frame(con, latest)["month"].iloc[0]
    return 12 if pd.isna(value) else int(value)
