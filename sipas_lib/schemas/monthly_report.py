"""Contracts of the tables written by stage ``monthly_report`` (:mod:`sipas_lib.stages.monthly_report`)."""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

register("monthly_counts", "monthly_report", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "level": C.text("level", nullable=False),
    "period": C.text("period", nullable=False),
    "metric": C.text("metric", nullable=False),
    "value": C.integer("value"),
})

register("monthly_overdue_reasons", "monthly_report", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "level": C.text("level", nullable=False),
    "period": C.text("period", nullable=False),
    "reason": C.text("reason", nullable=False),
    "n": C.integer("n"),
})
