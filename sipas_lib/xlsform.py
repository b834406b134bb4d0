"""A questionnaire as an XLSForm, for ODK Collect, KoboToolbox and SurveyCTO.

Contracts layer. :func:`xlsform_sheets` turns an :class:`~sipas_lib.instrument.Instrument` into
the three sheets of an XLSForm (``survey``, ``choices``, ``settings``); :func:`write_xlsform`
writes them as ``.xlsx`` and :func:`to_xform` converts them with ``pyxform`` (the reference
converter behind all three tools), which is how a form is checked before it goes to the field.

What the form holds, and why:

* question names are the canonical column names intake reads (``form_id``, ``unit_id``,
  ``channel``, ``field``, ``survey_date``, ``c01`` …, ``gender`` …), so a submission export goes
  through :func:`sipas_lib.intake.read_table` unchanged; group names (``E1``, ``respondent`` …)
  only prefix the export's headers (``E1-c01`` in ODK Central, ``E1/c01`` in KoboToolbox);
* Vietnamese labels first (``label::Vietnamese (vi)``, the default language) and English second;
* every rated item is a ``select_one`` of the instrument's scale with the constraint
  ``min ≤ . ≤ max``; demographics are ``select_one`` of their codes, with the "other" text
  shown only when "other" is chosen;
* each condition of the instrument (``gave_feedback``, ``made_complaint``, ``registered_resident``)
  becomes a yes/no screening question of that name, and the items it governs carry it as a
  ``relevant`` expression (``${gave_feedback} = 'yes'``): section V is shown only to respondents
  who gave feedback, as on paper;
* the form id is a required text field with the check-digit constraint of
  :mod:`sipas_lib.formids`, both formats, in XPath 1.0 (:func:`form_id_constraint`): the shape by
  ``regex()``, the legacy Luhn digit and the current Damm digit by table look-ups with
  ``substring()``, so a mistyped id is refused on the device;
* the unit is a ``select_one`` of the registry's units of the form's unit type.

Personal data (the enumerator's name, phone and address of the paper form) is not asked: ODK
Central and KoboToolbox record who submitted, and intake would drop it anyway.

References
----------
XLSForm specification, https://xlsform.org/en/ ; ODK XForms specification,
https://getodk.github.io/xforms-spec/
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

import pandas as pd
import yaml

from sipas_lib.config import FIELDS, SURVEY_MODES
from sipas_lib import formids
from sipas_lib.instrument import FORM_OF_UNIT_TYPE, Instrument
from sipas_lib.spreadsheet import write_xlsx
from sipas_lib.texts import load_texts

__all__ = [
    "LANGUAGE_COLUMNS",
    "FORM_ID_SHAPE",
    "XLSFormError",
    "form_id_check_xpath",
    "form_id_constraint",
    "form_units",
    "xlsform_sheets",
    "write_xlsform",
    "to_xform",
]

#: XLSForm language suffixes (``label::Vietnamese (vi)``), Vietnamese first: it is the default.
LANGUAGE_COLUMNS: dict[str, str] = {"vi": "Vietnamese (vi)", "en": "English (en)"}
#: The shape of a form id of either format (:data:`sipas_lib.formids.FORMATS`), as an ODK ``regex()``.
FORM_ID_SHAPE = "^(" + "|".join(f"[0-9]{{{fmt.length}}}" for fmt in formids.FORMATS) + ")$"
#: Choice list of the screening questions and the value that makes a condition true.
YES_NO_LIST, YES = "yes_no", "yes"
#: Groups of the questions every record has and of the respondent's own questions.
IDENTIFICATION_GROUP, RESPONDENT_GROUP = "identification", "respondent"



class XLSFormError(ValueError):
    """An instrument cannot be written as an XLSForm; the message says what is missing."""


# --------------------------------------------------------------------------------------------
# The form id's check digit in XPath 1.0
# --------------------------------------------------------------------------------------------

def _digit(position: int) -> str:
    return f"number(substring(., {position}, 1))"


def _table_string(table) -> str:
    """A table of digits written out as one string (row-major): entry ``[i, j]`` at position ``10 i + j + 1``."""
    return "".join(str(int(v)) for v in table.ravel())


def _luhn_xpath(fmt: formids.FormIdFormat) -> str:
    """Ids ``d1..dn c`` with a Luhn digit: the sum with every second payload digit from the right
    doubled (:func:`sipas_lib.formids.luhn_doubled`, read from its table) plus ``c`` ≡ 0 (mod 10)."""
    doubled, n = _table_string(formids.luhn_doubled()), fmt.payload_digits
    terms = [f"number(substring('{doubled}', {_digit(k)} + 1, 1))" if (n - k) % 2 == 0 else _digit(k)
             for k in range(1, n + 1)]
    return f"({' + '.join(terms)} + {_digit(fmt.length)}) mod 10 = 0"


def _damm_xpath(fmt: formids.FormIdFormat) -> str:
    """Ids ``d1..dn c`` with a Damm digit: the interim digit over all the id's digits is 0.

    The interim digit after digit ``j`` is ``T[interim, d_j]`` (:func:`sipas_lib.formids.damm_table`),
    read from the table written out as one string; the look-ups nest ``length`` deep, which stays
    a linear-size expression.
    """
    table, interim = _table_string(formids.damm_table()), "0"
    for k in range(1, fmt.length + 1):
        interim = f"number(substring('{table}', {interim} * 10 + {_digit(k)} + 1, 1))"
    return f"{interim} = 0"


_CHECK_XPATH = {"luhn": _luhn_xpath, "damm": _damm_xpath}


def _format_xpath(fmt: formids.FormIdFormat) -> str:
    """One format's rules: length, unit code ≥ its minimum, serial ≥ 1, check digit."""
    return (f"string-length(.) = {fmt.length}"
            f" and number(substring(., 1, {fmt.unit_digits})) >= {fmt.min_unit_code}"
            f" and number(substring(., {fmt.unit_digits + 1}, {fmt.serial_digits})) >= 1"
            f" and {_CHECK_XPATH[fmt.check](fmt)}")


def form_id_check_xpath() -> str:
    """XPath 1.0 test that a form id (the context node ``.``) passes its format's rules.

    For a 6-digit id: Luhn check digit, unit code ≥ 10, serial ≥ 1; for a 10-digit id: Damm check
    digit, unit code ≥ 1, serial ≥ 1 — the rules of :func:`sipas_lib.formids.check_form_ids`. Only
    standard XPath 1.0 functions are used (``substring``, ``number``, ``string-length``, ``mod``),
    so it is evaluated the same by ODK's JavaRosa, Enketo and any XPath 1.0 engine. It assumes
    the shape :data:`FORM_ID_SHAPE` (checked first by :func:`form_id_constraint`). Layouts and
    tables come from :mod:`sipas_lib.formids` (:data:`~sipas_lib.formids.FORMATS`,
    :func:`~sipas_lib.formids.damm_table`, :func:`~sipas_lib.formids.luhn_doubled`).
    """
    return " or ".join(f"({_format_xpath(fmt)})" for fmt in formids.FORMATS)


def form_id_constraint() -> str:
    """The XLSForm constraint of the form id: shape by ``regex()``, then the check digit."""
    return f"regex(., '{FORM_ID_SHAPE}') and ({form_id_check_xpath()})"


# --------------------------------------------------------------------------------------------
# Sheets
# --------------------------------------------------------------------------------------------

def _lang(prefix: str, texts: Mapping[str, str]) -> dict[str, str]:
    return {f"{prefix}::{LANGUAGE_COLUMNS[lang]}": texts[lang] for lang in LANGUAGE_COLUMNS}


def _raw(instrument: Instrument) -> dict:
    """The instrument's YAML as written: condition wording, block conditions, prompt, free text."""
    return yaml.safe_load(Path(instrument.path).read_text(encoding="utf-8")) or {}


def form_units(instrument: Instrument, units: pd.DataFrame) -> pd.DataFrame:
    """The registry's units that answer this form (``unit_id, name_vi, name_en``), in registry order.

    A form written for a unit type serves the unit types mapped to it by
    :data:`sipas_lib.instrument.FORM_OF_UNIT_TYPE` (wards answer the commune form); a form with no
    unit type (the self-survey) serves every unit that answers any form.
    """
    kinds = units["unit_type"].map(FORM_OF_UNIT_TYPE)
    keep = kinds.notna() if instrument.unit_type is None else kinds.eq(instrument.unit_type)
    out = units.loc[keep.fillna(False).to_numpy(dtype=bool), ["unit_id", "name_vi", "name_en"]]
    if out.empty:
        raise XLSFormError(f"instrument {instrument.id}: the units registry has no unit of type "
                           f"{instrument.unit_type!r} to choose from (give a registry that has them)")
    return out.reset_index(drop=True)


def _condition_texts(instrument: Instrument, raw: dict) -> dict[str, dict[str, str]]:
    """Condition name -> question wording: from texts/xlsform.yaml, else the instrument's own."""
    shared = load_texts("xlsform")
    own = {}
    for part in (raw.get("elements") or []) + (raw.get("blocks") or []):
        if part.get("condition") and part.get("condition_vi") and part.get("condition_en"):
            own[part["condition"]] = {"vi": part["condition_vi"], "en": part["condition_en"]}
    conditions = set(instrument.items["condition"].dropna()) | {
        b["condition"] for b in raw.get("blocks") or [] if b.get("condition")}
    out = {}
    for name in conditions:
        found = shared.get(f"condition_{name}") or own.get(name)
        if found is None:
            raise XLSFormError(f"{instrument.path}: condition {name!r} has no question wording: add "
                               f"condition_vi/condition_en to its element or block, or condition_{name} "
                               "to sipas_lib/texts/xlsform.yaml")
        out[name] = found
    return out


def _relevant(conditions: list[str]) -> str | None:
    return " and ".join(f"${{{c}}} = '{YES}'" for c in conditions) or None


def _row(type_: str, name: str, labels: Mapping[str, str] | None = None, **more) -> dict:
    row = {"type": type_, "name": name}
    if labels is not None:
        row.update(_lang("label", labels))
    row.update({k: v for k, v in more.items() if v is not None})
    return row


def _choices(list_name: str, values: Mapping[object, Mapping[str, str]]) -> list[dict]:
    """Choice rows of one list: code -> ``{"vi": …, "en": …}``."""
    return [{"list_name": list_name, "name": str(code), **_lang("label", label)} for code, label in values.items()]


def xlsform_sheets(instrument: Instrument, units: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The XLSForm of an instrument: ``{"survey": …, "choices": …, "settings": …}``.

    Parameters
    ----------
    instrument
        The questionnaire (:func:`sipas_lib.instrument.load_instrument`).
    units
        A units registry (``unit_id, name_vi, name_en, unit_type``); its units of the form's type
        become the choice list of ``unit_id`` (:func:`form_units`).

    Returns
    -------
    dict of DataFrame
        One row per XLSForm row; ``survey`` names every question after the column intake reads.
    """
    texts = load_texts("xlsform")
    shared = load_texts("reporting")
    raw = _raw(instrument)
    condition_texts = _condition_texts(instrument, raw)
    survey: list[dict] = []
    choices: list[dict] = []

    # The fields every record has.
    survey.append(_row("begin_group", IDENTIFICATION_GROUP, texts[IDENTIFICATION_GROUP]))
    survey.append(_row("text", "form_id", texts["form_id"], required="yes", appearance="numbers",
                       constraint=form_id_constraint(), **_lang("hint", texts["form_id_hint"]),
                       **_lang("constraint_message", texts["form_id_constraint"])))
    survey.append(_row("select_one units", "unit_id", texts["unit_id"], required="yes",
                       appearance="minimal"))
    survey.append(_row("select_one survey_mode", "channel", texts["channel"], required="yes"))
    survey.append(_row("select_one field", "field", texts["field"]))
    survey.append(_row("date", "survey_date", texts["survey_date"], default="today()",
                       constraint=". <= today()", **_lang("constraint_message", texts["survey_date_constraint"])))
    survey.append(_row("end_group", ""))
    for unit in form_units(instrument, units).itertuples():
        choices.append({"list_name": "units", "name": unit.unit_id,
                        **_lang("label", {"vi": unit.name_vi, "en": unit.name_en})})
    choices += _choices("survey_mode", {m: shared[f"mode_{m}"] for m in SURVEY_MODES})
    choices += _choices("field", {f: shared[f"field_{f}"] for f in FIELDS})
    choices += _choices(YES_NO_LIST, {YES: texts["answer_yes"], "no": texts["answer_no"]})

    # Rated items: one group per element (or per block for items outside elements).
    scale_lists: dict[tuple[int, int], str] = {}

    def scale_list(lo: int, hi: int) -> str:
        if (lo, hi) not in scale_lists:
            name = "scale" if (lo, hi) == (instrument.scale_min, instrument.scale_max) else f"scale_{lo}_{hi}"
            scale_lists[(lo, hi)] = name
            labels = {int(k): v for k, v in instrument.scale_labels.items()} if name == "scale" else {}
            choices.extend(_choices(name, {v: labels.get(v, {"vi": str(v), "en": str(v)})
                                           for v in range(lo, hi + 1)}))
        return scale_lists[(lo, hi)]

    block_conditions = {b["code"]: b["condition"] for b in raw.get("blocks") or [] if b.get("condition")}
    block_labels = {b["code"]: {"vi": b["text_vi"], "en": b["text_en"]}
                    for b in raw.get("blocks") or [] if b.get("text_vi") and b.get("text_en")}
    element_conditions = {code: (cond if isinstance(cond, str) else None)
                          for code, cond in zip(instrument.elements["code"], instrument.elements["condition"])}
    asked: set[str] = set()

    def screening(names: list[str]) -> None:
        for name in names:
            if name not in asked:
                asked.add(name)
                survey.append(_row(f"select_one {YES_NO_LIST}", name, condition_texts[name]))

    if raw.get("question_vi") and raw.get("question_en"):
        survey.append(_row("note", "rating_prompt", {"vi": raw["question_vi"], "en": raw["question_en"]}))
    items = instrument.items
    group_keys = items["element"].where(items["element"].notna(), items["block"])
    for key in dict.fromkeys(group_keys):
        rows = items.loc[group_keys == key]
        is_element = key in element_conditions
        group_condition = [c for c in [element_conditions.get(key) if is_element else None,
                                       block_conditions.get(rows["block"].iloc[0])] if c]
        screening(group_condition)
        if is_element:
            el = instrument.elements.loc[instrument.elements["code"] == key].iloc[0]
            label = {"vi": el.name_vi, "en": el.name_en}
        else:
            label = block_labels.get(key)
        survey.append(_row("begin_group", key, label, relevant=_relevant(group_condition)))
        for item in rows.itertuples():
            own = [item.condition] if isinstance(item.condition, str) and item.condition not in group_condition else []
            screening(own)  # inside the group: asked only of those the group is asked of
            lo, hi = int(item.scale_min), int(item.scale_max)
            survey.append(_row(
                f"select_one {scale_list(lo, hi)}", item.code, {"vi": item.text_vi, "en": item.text_en},
                appearance="likert", relevant=_relevant(own), constraint=f". >= {lo} and . <= {hi}",
                **_lang("constraint_message", {k: v.format(min=lo, max=hi)
                                               for k, v in texts["rating_constraint"].items()})))
        survey.append(_row("end_group", ""))

    # Free-text questions and the respondent's own questions.
    free = raw.get("free_text") or []
    demographics = instrument.demographics
    if free or len(demographics):
        survey.append(_row("begin_group", RESPONDENT_GROUP, texts[RESPONDENT_GROUP]))
        for q in free:
            survey.append(_row("text", q["code"], {"vi": q["text_vi"], "en": q["text_en"]}))
        for d in demographics.itertuples():
            survey.append(_row(f"select_one {d.code}", d.code, {"vi": d.text_vi, "en": d.text_en}))
            choices += _choices(d.code, d.values)
            if isinstance(d.other_column, str) and d.other_column and pd.notna(d.other_code):
                survey.append(_row("text", d.other_column, texts["other_specify"],
                                   relevant=f"${{{d.code}}} = '{int(d.other_code)}'"))
        survey.append(_row("end_group", ""))

    survey_df = pd.DataFrame(survey).fillna("")
    choices_df = pd.DataFrame(choices).fillna("")
    digest = hashlib.sha256((survey_df.to_csv(index=False) + choices_df.to_csv(index=False)).encode()).hexdigest()
    settings = pd.DataFrame([{
        "form_title": instrument.title_vi, "form_id": instrument.id,
        "version": f"{raw.get('version', 1)}.{digest[:8]}", "default_language": LANGUAGE_COLUMNS["vi"],
        "instance_name": "concat(${unit_id}, '-', ${form_id})",
    }])
    return {"survey": survey_df, "choices": choices_df, "settings": settings}


def write_xlsform(instrument: Instrument, units: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the instrument's XLSForm (:func:`xlsform_sheets`) as ``.xlsx``; returns the path.

    Written through :func:`sipas_lib.spreadsheet.write_xlsx` like every spreadsheet for people.
    No XLSForm cell starts with a formula character (expressions start with ``.``, ``$``, a name
    or a parenthesis), so nothing is altered; :func:`to_xform` on the written file proves it.
    """
    return write_xlsx(xlsform_sheets(instrument, units), path)


def to_xform(path: str | os.PathLike) -> str:
    """Convert an XLSForm file with ``pyxform`` and return the XForm XML.

    Raises
    ------
    XLSFormError
        With pyxform's message when the form does not convert.
    """
    from pyxform.errors import PyXFormError
    from pyxform.xls2xform import convert

    try:
        result = convert(xlsform=str(path), validate=False, pretty_print=True)
    except PyXFormError as exc:
        raise XLSFormError(f"{path}: pyxform cannot convert the form: {exc}") from exc
    return result.xform
