"""Contracts of the tables written by stage ``annual_survey_report`` (:mod:`sipas_lib.stages.annual_survey_report`).

The facts of Phụ lục 4 (annual survey-implementation report of plan 143/KH-UBND), taken from the
intake stage's results. No table holds a value typed into a questionnaire: quarantined records are
counted by rule only (the reasons in ``quarantine.csv`` may quote what was typed).
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import columns as C
from sipas_lib.schemas import register

RULE_PATTERN = r"^[a-z0-9_]+$"


def _intake_balance(df) -> "pa.typing.Series[bool]":
    return df["received"] == df["accepted"] + df["quarantined"]


register("annual_survey_summary", "annual_survey_report",
         "One row: the year's intake counts, the return rate and the fieldwork period of Phụ lục 4.", {
             "year": C.integer("survey year (common.year)"),
             "received": C.count("questionnaire records received (accepted + quarantined, from intake_summary)"),
             "accepted": C.count("questionnaires accepted by the intake checks"),
             "quarantined": C.count("records set aside by the intake checks"),
             "issued": C.count("form ids issued in the sample (response_rates)"),
             "returned": C.count("distinct issued form ids that came back accepted (response_rates)"),
             "return_rate": C.share("returned / issued (empty when nothing was issued)"),
             "first_survey_date": C.date("first valid survey date within the year (empty when none)"),
             "last_survey_date": C.date("last valid survey date within the year (empty when none)"),
             "dated": C.count("accepted questionnaires with a survey date within the year"),
             "dates_outside_year": C.count("accepted questionnaires whose survey date falls outside the year; "
                                           "left out of the fieldwork period"),
             "dates_missing": C.count("accepted questionnaires without a survey date"),
             "span_months": C.count("calendar months from the first to the last survey date", nullable=True),
             "round_months": C.count("length of one collection round: the span rounded up to 1, 3, 6 or 12 "
                                     "months (kỳ lấy phiếu)", nullable=True),
             "rounds": C.count("collection rounds in the span", nullable=True),
             "top_field": C.field_code("field with the most accepted questionnaires (empty when none)",
                                       nullable=True),
             "top_field_n": C.count("accepted questionnaires in that field"),
         }, checks=[pa.Check(_intake_balance, element_wise=False, error="received = accepted + quarantined")])

register("annual_survey_forms", "annual_survey_report",
         "One row per field × survey mode: accepted questionnaires (Phụ lục 4 rows 3 and 6, and its chart).", {
             "field": C.field_code(),
             "survey_mode": C.survey_mode(),
             "n": C.count("accepted questionnaires"),
         }, keys=("field", "survey_mode"))

register("annual_survey_units", "annual_survey_report",
         "One row per unit type (units registry): units with accepted questionnaires and their questionnaires "
         "(Phụ lục 4 rows 9 and 10).", {
             "unit_type": C.unit_type(),
             "n_units": C.count("units of the type with at least one accepted questionnaire"),
             "n_forms": C.count("accepted questionnaires at units of the type"),
         }, keys=("unit_type",))

register("annual_survey_quarantine", "annual_survey_report",
         "One row per intake rule that set records aside: how many, and their share of the records received "
         "(never an example of the values).", {
             "rule": C.text("intake rule (sipas_lib.intake.RULES)", pattern=RULE_PATTERN),
             "n": pa.Column("int64", pa.Check.gt(0), description="records set aside by the rule"),
             "share_of_received": C.share("n / records received", nullable=False),
         }, keys=("rule",))
