"""Contracts of the tables written by stage ``sampling_design`` (:mod:`sipas_lib.stages.sampling_design`)."""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

register("sampling_allocation", "sampling_design", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "field": C.text("field", nullable=False),
    "stratum": C.text("stratum", nullable=False),
    "N_h": C.integer("N_h"),
    "n_h": C.integer("n_h"),
    "f_h": C.number("f_h"),
    "unit_type": C.text("unit_type", nullable=False),
    "N_unit": C.integer("N_unit"),
    "n_unit": C.integer("n_unit"),
    "f_unit": C.number("f_unit"),
    "moe_unit": C.number("moe_unit"),
    "n_needed": C.integer("n_needed"),
    "meets_target": C.flag("meets_target"),
    "method": C.text("method", nullable=False),
})

register("sample_design", "sampling_design", "TODO: one row per …", {
    "form_id": C.text("form_id", nullable=False),
    "unit_id": C.text("unit_id", nullable=False),
    "field": C.text("field", nullable=False),
    "channel": C.text("channel", nullable=False),
    "stratum": C.text("stratum", nullable=False),
    "N_h": C.integer("N_h"),
    "n_h": C.integer("n_h"),
    "incl_prob": C.number("incl_prob"),
    "design_weight": C.number("design_weight"),
    "role": C.text("role", nullable=False),
    "reserve_rank": C.integer("reserve_rank"),
    "recheck": C.flag("recheck"),
    "unit_type": C.text("unit_type", nullable=False),
})
