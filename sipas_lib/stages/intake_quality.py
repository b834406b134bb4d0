"""Stage ``intake_quality`` (notebook ``20_intake_quality``): take in the returned questionnaires.

1. Validates the year's other input files up front (:func:`sipas_lib.inputs.validate_year`:
   units, sample, frame counts, procedures, administrative tables), so a wrong file stops the run
   with its file, row and column before any questionnaire is read.
2. Reads and validates the returned questionnaires with :mod:`sipas_lib.intake` against the
   instruments, the units registry and the issued sample; bad records go to
   ``quarantine/quarantine.csv`` with one reason each.
3. Response rates (distinct issued form ids returned and accepted, by unit and survey mode) and
   item non-response of every form taken in.

Writes ``results/responses``, ``intake_summary``, ``units``, ``response_rates`` and
``item_nonresponse``. Unit type comes from the units registry only. Free-text columns
(:data:`sipas_lib.schemas.FREE_TEXT_COLUMNS`, e.g. ``education_other``) are left out of the results
unless ``intake_quality.keep_free_text`` is true, and are then scrubbed of phone numbers and
e-mail addresses (:func:`sipas_lib.privacy.scrub_contacts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sipas_lib import config, inputs, intake, schemas
from sipas_lib.instrument import Instrument, load_instrument
from sipas_lib.privacy import scrub_contacts
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError

STAGE = "intake_quality"


@dataclass(frozen=True)
class IntakeTables:
    """What the intake stage computed: the written tables and what the notebook shows.

    Attributes
    ----------
    responses, intake_summary, units, response_rates, item_nonresponse
        The result tables written (see ``docs/CONTRACTS.md``).
    quarantine
        The records set aside (``quarantine/quarantine.csv``), one reason each.
    quarantine_file
        Path of ``quarantine.csv``.
    quarantine_counts
        Records set aside by rule, with the rule's description (``n, description, description_vi``).
    notes
        File-level remarks that did not stop intake (sheet and header row read, rows that are not
        questionnaires, survey dates set aside).
    input_warnings
        Values of the other input files read with a correction (file, row, column named).
    date_problems
        Records whose survey date was set aside (answers kept), with the reason.
    rates_by_unit
        ``unit_id, unit_type, issued, returned, response_rate``.
    rates_by_type_mode
        ``unit_type, survey_mode, issued, returned, response_rate``.
    rate_overall
        One row: ``issued, returned, response_rate`` over the whole sample.
    forms
        The instruments of the forms taken in (form id -> instrument).
    """

    responses: pd.DataFrame
    intake_summary: pd.DataFrame
    units: pd.DataFrame
    response_rates: pd.DataFrame
    item_nonresponse: pd.DataFrame
    quarantine: pd.DataFrame
    quarantine_file: Path
    quarantine_counts: pd.DataFrame
    notes: tuple[str, ...]
    input_warnings: tuple[str, ...]
    date_problems: pd.DataFrame
    rates_by_unit: pd.DataFrame
    rates_by_type_mode: pd.DataFrame
    rate_overall: pd.DataFrame
    forms: dict[str, Instrument]

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables written (name -> table)."""
        return {name: getattr(self, name) for name in schemas.stage_outputs(STAGE)}


def validate_inputs(data_dir: Path, settings: Settings | None = None) -> list[str]:
    """Check the year's input files other than the questionnaires (:func:`sipas_lib.inputs.validate_year`;
    with ``settings``, dossiers partitioned by month must hold the survey year and are scanned under
    ``common.duckdb_memory_limit``).

    Returns the warnings (values read with a correction), each naming file, row and column.

    Raises
    ------
    StageError
        With the message of :class:`sipas_lib.inputs.InputError` (file, row, column, expected, found).
    """
    try:
        if settings is None:
            return list(inputs.validate_year(data_dir))
        return list(inputs.validate_year(data_dir, year=settings.year,
                                         memory_limit=settings.common["duckdb_memory_limit"] or None))
    except inputs.InputError as err:
        raise StageError(str(err)) from err


def free_text_for_results(responses: pd.DataFrame, keep: bool) -> pd.DataFrame:
    """Free-text columns dropped (``keep`` false) or scrubbed of phone numbers and e-mails (``keep`` true).

    A respondent may write a name and phone number into "other, please specify"; result tables are
    read by many people, so such text never reaches them unscrubbed.
    """
    present = [c for c in sorted(schemas.FREE_TEXT_COLUMNS) if c in responses.columns]
    if not keep:
        return responses.drop(columns=present)
    out = responses.copy()
    for column in present:
        out[column] = scrub_contacts(out[column].where(out[column].str.strip() != "")).astype(object)
    return out


def rates(sample: pd.DataFrame, responses: pd.DataFrame, units: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Response rates by unit × survey mode (written), by unit, by unit type × mode and overall (one row)."""
    issued = sample.merge(units[["unit_id", "unit_type"]], on="unit_id", how="left", validate="many_to_one")
    return {
        "fine": intake.response_rates(issued, responses, by=["unit_id", "survey_mode"]),
        "unit": intake.response_rates(issued, responses, by=["unit_id", "unit_type"]),
        "type_mode": intake.response_rates(issued, responses, by=["unit_type", "survey_mode"]),
        "overall": intake.response_rates(issued, responses, by=[]),
    }


def run(paths: config.RunPaths, settings: Settings) -> IntakeTables:
    """Take in the year's questionnaires; write responses, intake summary, units, response rates, item non-response.

    Raises
    ------
    StageError
        An input file that cannot be taken in (file, row and column named), or no questionnaire accepted.
    """
    options = settings.section(STAGE)
    data_dir = paths.data_dir
    warnings = validate_inputs(data_dir, settings)
    try:
        units = inputs.read_input(data_dir, "units")
        sample = inputs.read_input(data_dir, "sample", units=units)
        result = intake.intake_year(data_dir, units, files=national_response_files(data_dir), year=settings.year,
                                    sheet=options["sheet"], header_row=options["header_row"])
    except (inputs.InputError, intake.IntakeError) as err:
        raise StageError(str(err)) from err
    if result.accepted.empty:
        raise StageError(f"{data_dir}: no questionnaire was accepted ({len(result.quarantine)} set aside, see "
                         f"{paths.quarantine / 'quarantine.csv'})")
    quarantine_file = intake.write_quarantine(result, paths)

    responses = free_text_for_results(result.accepted, bool(options["keep_free_text"]))
    schemas.write_result(paths, "responses", responses)
    schemas.write_result(paths, "intake_summary", result.summary)
    schemas.write_result(paths, "units", units)
    rr = rates(sample, result.accepted, units)
    schemas.write_result(paths, "response_rates", rr["fine"])
    forms = {form: load_instrument(form) for form in pd.unique(result.accepted["form"])}
    nonresponse = intake.item_nonresponse(result.accepted, list(forms.values()))
    schemas.write_result(paths, "item_nonresponse", nonresponse)
    return IntakeTables(
        responses=responses, intake_summary=result.summary, units=units, response_rates=rr["fine"],
        item_nonresponse=nonresponse, quarantine=result.quarantine, quarantine_file=quarantine_file,
        quarantine_counts=intake.quarantine_counts(result.quarantine), notes=tuple(result.notes),
        input_warnings=tuple(warnings), date_problems=result.date_problems,
        rates_by_unit=rr["unit"], rates_by_type_mode=rr["type_mode"], rate_overall=rr["overall"], forms=forms,
    )


#: The response file of the ministry's national survey (``sipas demo --profile national``).
NATIONAL_RESPONSES = "responses_national.csv"


def national_response_files(data_dir: str | Path) -> dict[str, Instrument] | None:
    """The national survey's response file when ``data_dir`` is a national year (it holds
    :data:`NATIONAL_RESPONSES`), else ``None`` (the city's files, :data:`sipas_lib.intake.DEFAULT_FILES`).

    The national survey draws its respondents in communes and asks them the commune form
    (:data:`sipas_lib.instrument.FORM_OF_UNIT_TYPE` maps ``province`` to it); the form is taken in
    for the unit type the registry gives the reporting units (provinces), so intake does not set
    the records aside as the wrong form.
    """
    import dataclasses

    from sipas_lib.instrument import instrument_for_unit_type

    if not (Path(data_dir) / NATIONAL_RESPONSES).exists():
        return None
    return {NATIONAL_RESPONSES: dataclasses.replace(instrument_for_unit_type("province"), unit_type=None)}
