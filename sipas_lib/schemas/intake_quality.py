"""Contracts of the tables written by stage ``intake_quality`` (:mod:`sipas_lib.stages.intake_quality`).

The item columns of ``responses`` come from the shipped instruments (``sipas_lib/instruments``):
every instrument's item codes are allowed (``c01``…``c18`` and ``lg1``…``lg8`` of the Phụ lục 5
forms, ``s1``…``s8`` of the self-survey form), each on its instrument's scale or empty; a table
must carry every item column of each form it holds. Personal data (enumerator details) never
reaches these tables; free text (``education_other``) only when the configuration keeps it, then
scrubbed of phone numbers and e-mail addresses (:mod:`sipas_lib.privacy`).
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from sipas_lib.instrument import list_instruments, load_instrument
from sipas_lib.schemas import FREE_TEXT_COLUMNS, register
from sipas_lib.schemas import columns as C

#: 6-digit legacy (``UUSSSC``) or 10-digit current (``UUUUUSSSSC``) form ids, see sipas_lib.formids.
FORM_ID_PATTERN = r"^([0-9]{6}|[0-9]{10})$"
INSTRUMENTS = {name: load_instrument(name) for name in list_instruments()}
FORMS = tuple(INSTRUMENTS)
#: Item code -> allowed answers (its instrument's scale; an item in several forms has the same scale).
ITEM_SCALES: dict[str, list[float]] = {
    code: [float(v) for v in range(inst.scale_min, inst.scale_max + 1)]
    for inst in INSTRUMENTS.values() for code in inst.item_codes
}
#: Respondent question -> allowed codes (union over the forms that ask it).
DEMOGRAPHIC_CODES: dict[str, list[float]] = {}
for _inst in INSTRUMENTS.values():
    for _code in _inst.demographics["code"] if len(_inst.demographics) else []:
        DEMOGRAPHIC_CODES[_code] = sorted(set(DEMOGRAPHIC_CODES.get(_code, [])) |
                                          {float(v) for v in _inst.demographic_values(_code)})
BASES = ("all", "gave_feedback")


def _item(code: str) -> pa.Column:
    forms = ", ".join(name for name, inst in INSTRUMENTS.items() if code in inst.item_codes)
    scale = ITEM_SCALES[code]
    return pa.Column(float, pa.Check.isin(scale), nullable=True, required=False,
                     description=f"answer to item {code} ({forms}), {int(scale[0])}–{int(scale[-1])}; "
                                 "empty = not answered")


def _fieldwork_columns() -> dict[str, pa.Column]:
    """Where, when and by whom a form came back (screening for fabrication, sipas_lib.screening); optional so
    that tables written before these columns existed still validate."""
    columns = {
        "collection_point": C.text("where the form came back: post office code, one-stop desk or `online` "
                                   "(empty when not recorded)", nullable=True),
        "return_date": C.date("date the form came back (empty when not recorded or unreadable)"),
        "enumerator_code": C.text("enumerator as a code, E001… by first appearance in the run (the name never "
                                  "leaves intake; empty when not recorded)", nullable=True, pattern=r"^E[0-9]{3,}$"),
    }
    for column in columns.values():
        column.required = False
    return columns


def _every_item_of_its_form(df: pd.DataFrame) -> bool:
    """Each form present in the table brings all of its item columns."""
    return all(set(INSTRUMENTS[form].item_codes) <= set(df.columns)
               for form in pd.unique(df["form"]) if form in INSTRUMENTS)


register("responses", "intake_quality",
         "One row per accepted questionnaire (validated at intake): form id, unit, form, field, survey mode, "
         "the answers on the form's scale, respondent information and where the record was read. "
         "No personal data.", {
             "form_id": C.text("form id (Mã số phiếu), 6 or 10 digits", pattern=FORM_ID_PATTERN, unique=True),
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "form": C.text("instrument (questionnaire form) the answers were given on", FORMS),
             "field": C.field_code(),
             "channel": C.survey_mode("how the questionnaire was delivered and returned"),
             **{code: _item(code) for code in ITEM_SCALES},
             **{code: pa.Column(float, pa.Check.isin(values), nullable=True,
                                description=f"respondent's {code.replace('_', ' ')} (code "
                                            f"{int(values[0])}–{int(values[-1])}); empty = not given")
                for code, values in DEMOGRAPHIC_CODES.items()},
             **{column: pa.Column(str, nullable=True, required=False,
                                  description="free text ('other, please specify'): written only when "
                                              "intake_quality.keep_free_text is true, then scrubbed of phone "
                                              "numbers and e-mail addresses")
                for column in sorted(FREE_TEXT_COLUMNS)},
             "survey_date": C.date("date the questionnaire was filled in (empty when missing or set aside)"),
             **_fieldwork_columns(),
             "gave_feedback": C.flag("answered section V (c15–c18: the respondent gave feedback)"),
             "source_file": C.text("response file the record was read from (file name only)"),
             "source_row": pa.Column("int64", pa.Check.ge(2),
                                     description="spreadsheet row of the record (header = row 1)"),
         },
         keys=("form_id",),
         checks=[pa.Check(_every_item_of_its_form, error="every item column of each form in the table")])

register("intake_summary", "intake_quality",
         "One row per response file × unit as written on the records: questionnaires received, accepted and "
         "quarantined (received = accepted + quarantined).", {
             "source_file": C.text("response file (file name only)"),
             "unit_id": C.text("unit as written on the records ('(missing)' when empty; may be unknown to the "
                               "registry)"),
             "received": C.count("records read"),
             "accepted": C.count("records accepted"),
             "quarantined": C.count("records set aside, one reason each (quarantine/quarantine.csv)"),
         },
         keys=("source_file", "unit_id"),
         checks=[pa.Check(lambda df: df["received"] == df["accepted"] + df["quarantined"],
                          error="received = accepted + quarantined")])

register("units", "intake_quality",
         "One row per unit of the year's units registry (departments, districts, communes…): the names and "
         "the unit type every later stage uses.", {
             "unit_id": C.unit_id(),
             "code": pa.Column("Int64", pa.Check.in_range(1, 99999), nullable=True,
                               description="code opening the unit's form ids (10–99 in 6-digit ids) (empty for units not "
                                           "surveyed, e.g. communes)"),
             "name_vi": C.text("name in Vietnamese"),
             "name_en": C.text("name in English"),
             "unit_type": C.unit_type(),
             "parent_id": C.text("unit this one belongs to (a commune's district); empty for top-level units",
                                 nullable=True),
         },
         keys=("unit_id",))

register("response_rates", "intake_quality",
         "One row per unit × survey mode of the issued sample: forms issued, distinct issued forms returned and "
         "accepted, and the response rate (AAPOR RR1).", {
             "unit_id": C.unit_id(),
             "survey_mode": C.survey_mode(),
             "issued": pa.Column("int64", pa.Check.gt(0), description="distinct form ids issued (sample.csv)"),
             "returned": C.count("distinct issued form ids returned and accepted"),
             "response_rate": C.share("returned / issued", nullable=False),
         },
         keys=("unit_id", "survey_mode"),
         checks=[pa.Check(lambda df: df["returned"] <= df["issued"], error="returned ≤ issued")])

register("item_nonresponse", "intake_quality",
         "One row per form × item × base: how many accepted questionnaires left the item empty. Base 'all' is "
         "every respondent on the form; base 'gave_feedback' (section V items) only those who gave feedback.", {
             "form": C.text("instrument", FORMS),
             "code": C.text("item code", list(ITEM_SCALES)),
             "block": C.text("block of the questionnaire the item belongs to"),
             "element": C.text("element (E1–E5) of a satisfaction criterion; empty for other items", nullable=True),
             "base": C.text("respondents the share is taken over", BASES),
             "n": C.count("respondents in the base"),
             "n_missing": C.count("respondents in the base who left the item empty"),
             "share_missing": C.share("n_missing / n (empty when the base is empty)"),
         },
         keys=("form", "code", "base"),
         checks=[pa.Check(lambda df: df["n_missing"] <= df["n"], error="n_missing ≤ n")])
