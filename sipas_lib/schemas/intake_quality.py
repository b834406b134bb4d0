"""Contracts of the tables written by stage ``intake_quality`` (:mod:`sipas_lib.stages.intake_quality`)."""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

register("responses", "intake_quality", "TODO: one row per …", {
    "form_id": C.text("form_id", nullable=False),
    "unit_id": C.text("unit_id", nullable=False),
    "unit_type": C.text("unit_type", nullable=False),
    "form": C.text("form", nullable=False),
    "field": C.text("field", nullable=False),
    "channel": C.text("channel", nullable=False),
    "c01": C.number("c01"),
    "c02": C.number("c02"),
    "c03": C.number("c03"),
    "c04": C.number("c04"),
    "c05": C.number("c05"),
    "c06": C.number("c06"),
    "c07": C.number("c07"),
    "c08": C.number("c08"),
    "c09": C.number("c09"),
    "c10": C.number("c10"),
    "c11": C.number("c11"),
    "c12": C.number("c12"),
    "c13": C.number("c13"),
    "c14": C.number("c14"),
    "c15": C.number("c15"),
    "c16": C.number("c16"),
    "c17": C.number("c17"),
    "c18": C.number("c18"),
    "lg1": C.number("lg1"),
    "lg2": C.number("lg2"),
    "lg3": C.number("lg3"),
    "lg4": C.number("lg4"),
    "lg5": C.number("lg5"),
    "lg6": C.number("lg6"),
    "lg7": C.number("lg7"),
    "lg8": C.number("lg8"),
    "gender": C.number("gender"),
    "age_group": C.number("age_group"),
    "education": C.number("education"),
    "education_other": C.text("education_other", nullable=True),
    "survey_date": C.date("survey_date"),
    "gave_feedback": C.flag("gave_feedback"),
    "source_file": C.text("source_file", nullable=False),
    "source_row": C.integer("source_row"),
})

register("intake_summary", "intake_quality", "TODO: one row per …", {
    "source_file": C.text("source_file", nullable=False),
    "unit_id": C.text("unit_id", nullable=False),
    "received": C.integer("received"),
    "accepted": C.integer("accepted"),
    "quarantined": C.integer("quarantined"),
})

register("units", "intake_quality", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "code": C.integer("code", nullable=True),
    "name_vi": C.text("name_vi", nullable=False),
    "name_en": C.text("name_en", nullable=False),
    "unit_type": C.text("unit_type", nullable=False),
    "parent_id": C.text("parent_id", nullable=True),
})

register("response_rates", "intake_quality", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "survey_mode": C.text("survey_mode", nullable=False),
    "issued": C.integer("issued"),
    "returned": C.integer("returned"),
    "response_rate": C.number("response_rate"),
})

register("item_nonresponse", "intake_quality", "TODO: one row per …", {
    "form": C.text("form", nullable=False),
    "code": C.text("code", nullable=False),
    "block": C.text("block", nullable=False),
    "element": C.text("element", nullable=True),
    "base": C.text("base", nullable=False),
    "n": C.integer("n"),
    "n_missing": C.integer("n_missing"),
    "share_missing": C.number("share_missing"),
})
