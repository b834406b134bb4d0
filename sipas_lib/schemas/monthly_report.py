"""Contracts of the tables written by stage ``monthly_report`` (:mod:`sipas_lib.stages.monthly_report`).

Counts of the year's administrative records for the monthly SIPAS report (Phụ lục 3 of plan
143/KH-UBND), aggregated by :mod:`sipas_lib.admin_records`; definitions of every metric there.
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import columns as C
from sipas_lib.schemas import register

#: ``level`` of a count: at the unit's own one-stop shop, or at the communes of a district.
ADMIN_LEVELS = ("unit", "commune")
#: The reporting month, or 1 January to the month's end.
PERIODS = ("month", "ytd")
METRIC_PATTERN = r"^[a-z0-9_]+$"

register("monthly_counts", "monthly_report",
         "One row per unit × level × period × metric: a count behind the Phụ lục 3 template (numerators and "
         "denominators, so that units add up to the city before rates are taken).", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "level": C.text("where the dossiers were handled: `unit` (its one-stop shop) or `commune`",
                             ADMIN_LEVELS),
             "period": C.text("`month` (the reporting month) or `ytd` (1 January to the month's end)", PERIODS),
             "metric": C.text("what is counted, e.g. `total`, `ch_online_l3`, `resolved`, `on_time`, "
                              "`offered_postal` (see sipas_lib.admin_records)", pattern=METRIC_PATTERN),
             "value": C.count("the count"),
         }, keys=("unit_id", "level", "period", "metric"))

register("monthly_overdue_reasons", "monthly_report",
         "One row per unit × level × period × overdue reason: dossiers resolved late in the period, by the "
         "reason recorded in the dossier system (`?` when none was recorded).", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "level": C.text("`unit` or `commune`", ADMIN_LEVELS),
             "period": C.text("`month` or `ytd`", PERIODS),
             "reason": C.text("overdue reason as recorded by the unit's dossier system"),
             "n": pa.Column("int64", pa.Check.gt(0), description="dossiers resolved late for this reason"),
         }, keys=("unit_id", "level", "period", "reason"))

register("monthly_overview", "monthly_report",
         "One row per unit × period: the headline figures of the month (or year to date) at the unit's own "
         "one-stop shop.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "year": C.integer("year of the report"),
             "month": pa.Column("int64", pa.Check.in_range(1, 12), description="reporting month (1–12)"),
             "period": C.text("`month` or `ytd`", PERIODS),
             "total": C.count("dossiers to resolve (carried over + newly received)"),
             "received_new": C.count("dossiers received in the period"),
             "resolved": C.count("dossiers resolved in the period"),
             "on_time_rate": C.share("share of the resolved dossiers resolved on time (empty when none resolved)"),
             "late_rate": C.share("share of the resolved dossiers resolved late (empty when none resolved)"),
             "fb_total": C.count("feedback and petitions received"),
             "apologies": C.count("apology letters sent"),
             "opinions": C.count("satisfaction opinions received"),
         }, keys=("unit_id", "period"))
