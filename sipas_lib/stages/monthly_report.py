"""Stage 70: the monthly SIPAS report, Phụ lục 3 of plan 143/KH-UBND (notebook ``70_monthly_report``).

Aggregates the year's administrative records (``dossiers.parquet``, ``procedures.csv``,
``feedback.parquet``, ``apologies.parquet``, ``opinions.parquet`` in the data folder) with DuckDB or Spark
(:func:`sipas_lib.admin_records.monthly_aggregates`) for the reporting month and the year to
date, attaches each unit's type from the units registry, and writes ``monthly_counts``,
``monthly_overdue_reasons`` and ``monthly_overview``. The notebook lays the counts out as Mẫu số 1
(departments) and Mẫu số 2 with :mod:`sipas_lib.admin_reports`: as printed for districts, adapted for the
communes and wards of a two-tier year; the form of each unit comes from the registry (its type and its
parent's type, :func:`sipas_lib.admin_reports.monthly_form_of`), never from its id.

Settings: ``monthly_report.month`` (0 = the latest month with dossiers), ``monthly_report.unit_id``
("" = the whole city; a unit id = the report of that unit; the tables always cover every unit),
and, shared with every stage that aggregates dossiers, ``common.dossier_engine`` (``duckdb`` | ``spark``,
:mod:`sipas_lib.dossier_engine`) and ``common.duckdb_memory_limit``
(:func:`sipas_lib.admin_records.engine_options`).
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

import pandas as pd

from sipas_lib import admin_records, config, schemas
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError
from sipas_lib.units import load_units


@dataclass(frozen=True)
class MonthlyReport:
    """The tables of one monthly report and what it is about."""

    year: int
    month: int
    unit_id: str              # "" = the whole city
    counts: pd.DataFrame      # monthly_counts
    reasons: pd.DataFrame     # monthly_overdue_reasons
    overview: pd.DataFrame    # monthly_overview
    units: pd.DataFrame       # the registry (unit_id, unit_type, names)

    def unit_ids(self, unit_type: str) -> list[str]:
        """Units of ``unit_type`` (registry) that have records this year, sorted."""
        sel = self.counts.loc[self.counts["unit_type"] == unit_type, "unit_id"]
        return sorted(set(sel))

    @property
    def unit_types(self) -> list[str]:
        """Unit types with records, in the registry's order of first appearance."""
        present = set(self.counts["unit_type"])
        return [t for t in dict.fromkeys(self.units["unit_type"]) if t in present]

    def city_on_time_rate(self, period: str = "month") -> float:
        """Dossiers resolved on time / dossiers resolved, all units' own one-stop shops together."""
        sub = self.counts[(self.counts["level"] == "unit") & (self.counts["period"] == period)]
        totals = sub.groupby("metric")["value"].sum()
        resolved = int(totals.get("resolved", 0))
        return float(totals.get("on_time", 0)) / resolved if resolved else float("nan")


def registry(paths: config.RunPaths) -> pd.DataFrame:
    """The year's units registry (``units.csv`` of the data folder; the bundled one when absent)."""
    path = paths.data_dir / "units.csv"
    return load_units(path) if path.exists() else load_units()


def with_unit_type(table: pd.DataFrame, units: pd.DataFrame, source: str) -> pd.DataFrame:
    """``table`` with ``unit_type`` from the registry inserted after ``unit_id``.

    Raises
    ------
    StageError
        Naming the unit ids of ``source`` that the registry does not know.

    Examples
    --------
    >>> units = pd.DataFrame({"unit_id": ["S01", "D01"], "unit_type": ["department", "district"]})
    >>> with_unit_type(pd.DataFrame({"unit_id": ["D01"], "n": [3]}), units, "x")["unit_type"].tolist()
    ['district']
    """
    types = units.assign(unit_id=units["unit_id"].astype(str)).set_index("unit_id")["unit_type"].astype(str)
    unknown = sorted(set(table["unit_id"]) - set(types.index))
    if unknown:
        raise StageError(f"{source}, column 'unit_id': unit(s) {', '.join(unknown[:10])} are not in the units "
                         "registry (units.csv)")
    out = table.copy()
    out.insert(out.columns.get_loc("unit_id") + 1, "unit_type", out["unit_id"].map(types).astype(str))
    return out


def reporting_month(setting: int, data_dir, year: int, **engine) -> int:
    """The month of the report: the setting, or (0) the latest month of ``year`` with a dossier (``engine``: as
    :func:`sipas_lib.admin_records.latest_month`)."""
    if not 0 <= int(setting) <= 12:
        raise StageError(f"monthly_report.month must be 0 (latest) or 1–12, got {setting!r}")
    return int(setting) or admin_records.latest_month(data_dir, year, **engine)


def not_applicable(paths: config.RunPaths) -> str | None:
    """Why the monthly report has nothing to report for this year: no administrative record file at all.

    A year's folder with survey files only is a normal use of the workbench; the runner then skips
    this stage with this reason (shown on the index page) instead of failing the run. A folder with
    some of the five files but not all is an error of :func:`compute`, naming the missing ones.
    """
    files = admin_records.AdminFiles.in_folder(paths.data_dir)
    if len(files.missing()) == len(dataclasses.fields(files)):
        return (f"no administrative records (dossiers.parquet, procedures.csv, …) in {paths.data_dir}: "
                "the monthly Phụ lục 3 report is not produced")
    return None


def compute(paths: config.RunPaths, settings: Settings) -> MonthlyReport:
    """Aggregate the records and attach unit types; nothing is written."""
    options = settings.section("monthly_report")
    files = admin_records.AdminFiles.in_folder(paths.data_dir)
    missing = files.missing()
    if missing:
        raise StageError(f"{paths.data_dir}: administrative record file(s) {', '.join(missing)} not found; "
                         "the monthly report needs all five (see docs/CONTRACTS.md)")
    units = registry(paths)
    unit_id = str(options["unit_id"]).strip()
    if unit_id and unit_id not in set(units["unit_id"].astype(str)):
        raise StageError(f"monthly_report.unit_id = {unit_id!r} is not in the units registry (units.csv)")
    year = settings.year
    try:
        engine = admin_records.engine_options(settings)
        month = reporting_month(options["month"], paths.data_dir, year, **engine)
        counts, reasons = admin_records.monthly_aggregates(paths.data_dir, year, month, **engine)
    except (ValueError, FileNotFoundError) as exc:
        raise StageError(str(exc)) from None
    source = str(files.dossiers)
    counts = with_unit_type(counts, units, source)
    reasons = with_unit_type(reasons, units, source)
    overview = pd.concat([admin_records.monthly_overview(counts, "unit", period).assign(period=period)
                          for period in admin_records.PERIODS], ignore_index=True)
    overview = with_unit_type(overview, units, source)
    overview.insert(2, "year", int(year))
    overview.insert(3, "month", int(month))
    for col in ("total", "received_new", "resolved", "fb_total", "apologies", "opinions"):
        overview[col] = overview[col].astype("int64")
    overview = overview.sort_values(["period", "unit_type", "unit_id"], kind="stable").reset_index(drop=True)
    return MonthlyReport(int(year), int(month), unit_id, counts, reasons, overview, units)


def run(paths: config.RunPaths, settings: Settings) -> MonthlyReport:
    """Compute, validate and write ``monthly_counts``, ``monthly_overdue_reasons`` and ``monthly_overview``."""
    report = compute(paths, settings)
    schemas.write_result(paths, "monthly_counts", report.counts)
    schemas.write_result(paths, "monthly_overdue_reasons", report.reasons)
    schemas.write_result(paths, "monthly_overview", report.overview)
    return report
