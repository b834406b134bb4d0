"""Contracts of the input files of a year (``data/demo/`` for the demo, ``data/raw/<year>/`` for a user's year).

Each file a person or another system supplies has one contract here (registered with
``stage="input"``; the contract's name is the file name). :mod:`sipas_lib.inputs` reads a file as
text, turns each cell into the type its contract column declares (naming file, spreadsheet row and
column when it cannot) and finally validates the typed table against the contract below, so the
contract is the one authority on what a valid input is.

Files that may hold personal data (``frame.parquet``: applicants' names, phones, addresses;
``sample.csv``: the frame's ``transaction_id``, which links a form to an applicant's case record) are
marked ``personal``: they are validated where they are and never copied into a run folder.

Column metadata used by the reader (pandera's ``metadata``): ``noun`` names what a count counts
("transactions"), so a message reads "expected a whole number of transactions ≥ 0".
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.config import CHANNELS, FIELDS, SURVEY_MODES
from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

#: Administrative level a record belongs to: the unit itself, or one of its communes.
LEVELS = ("unit", "commune")
DOSSIER_STATUSES = ("on_time", "overdue", "pending")
FEEDBACK_KINDS = ("behaviour", "regulation")
OPINION_MEDIA = ("paper", "electronic")
FORM_ID_PATTERN = r"^([0-9]{6}|[0-9]{10})$"  # legacy 6-digit or current 10-digit ids (sipas_lib.formids)

#: File name (stem) -> contract name, for every input file of a year.
INPUT_FILES: dict[str, str] = {
    "units": "units.csv",
    "frame_counts": "frame_counts.csv",
    "sample": "sample.csv",
    "procedures": "procedures.csv",
    "frame": "frame.parquet",
    "dossiers": "dossiers.parquet",
    "feedback": "feedback.parquet",
    "apologies": "apologies.parquet",
    "opinions": "opinions.parquet",
}
#: Files every year must have (the others are needed only by the stages that use them).
REQUIRED_FILES = ("units", "sample", "frame_counts")


def _identifier(description: str, *, nullable: bool = False) -> pa.Column:
    """An id, compared exactly (the reader strips spaces around it, with a warning); a table's key
    columns are declared with ``keys=`` (checked unique once, over the key)."""
    return C.text(description, nullable=nullable)


def _whole(description: str, noun: str, *, minimum: int = 0) -> pa.Column:
    """A whole number ≥ ``minimum`` counting ``noun`` (never blank)."""
    return pa.Column("int64", pa.Check.ge(minimum), nullable=False, description=description,
                     metadata={"noun": noun})


def _bool(description: str) -> pa.Column:
    return C.flag(description)


def _optional(column: pa.Column) -> pa.Column:
    column.required = False
    return column


def _unit_level_columns() -> dict[str, pa.Column]:
    """``unit_id, level, commune_id`` shared by the administrative tables."""
    return {
        "unit_id": C.unit_id("unit (department or district) the record is counted for; in units.csv"),
        "level": C.text("`unit` for the unit's own one-stop shop, `commune` for one of its communes", LEVELS),
        "commune_id": C.text("commune (units.csv, `parent_id` = unit_id) when level is `commune`, else empty",
                             nullable=True),
    }


register("units.csv", "input",
         "One row per unit: departments (Sở), districts (quận/huyện/thị xã) and their communes; the "
         "registry every other file's `unit_id` must be found in. Unit type comes from here, never from an id.", {
             "unit_id": _identifier("unit id, e.g. S01, D01, D05C03 (compared exactly)"),
             "code": pa.Column("Int64", pa.Check.in_range(1, 99999), nullable=True,
                               description="number every form id of the unit opens with: 10–99 in legacy 6-digit "
                                           "ids (10–29 departments, 30–59 districts), up to 5 digits in current "
                                           "10-digit ids (sipas_lib.formids); empty for units not surveyed",
                               metadata={"noun": "form-id code"}),
             "name_vi": C.text("Vietnamese name"),
             "name_en": C.text("English name"),
             "unit_type": C.unit_type("unit type (registry vocabulary)"),
             "parent_id": C.text("the unit this one belongs to (a commune's district); empty for top-level units",
                                 nullable=True),
             "district_kind": _optional(C.text("kind of district (urban district, rural district, town) — optional",
                                               nullable=True)),
         }, keys=["unit_id"])

register("frame_counts.csv", "input",
         "One row per unit × field of procedure × submission channel: the number of transactions that "
         "received a result in the year. Calibration trusts these counts, so every N is checked strictly.", {
             "unit_id": C.unit_id("surveyed unit; in units.csv"),
             "field": C.field_code(),
             "channel": C.text("how the dossiers were submitted", CHANNELS),
             "N": _whole("transactions that received a result in the cell", "transactions"),
         }, keys=["unit_id", "field", "channel"])

register("sample.csv", "input",
         "One row per selected questionnaire (the fielded sample written by the sampling stage): its form "
         "id, stratum and design weight. `transaction_id` links a form to an applicant's case record, so "
         "the file stays in `data/`.", {
             "form_id": C.text("form id (Mã số phiếu): 6 digits (legacy) or 10 digits, leading zeros kept", pattern=FORM_ID_PATTERN),
             "transaction_id": C.text("the frame's transaction the form was drawn for", nullable=True),
             "unit_id": C.unit_id("surveyed unit; in units.csv"),
             "field": C.field_code(),
             "channel": C.text("how the transaction's dossier was submitted", CHANNELS),
             "survey_mode": C.survey_mode(),
             "stratum": C.text("stratum label (e.g. `<unit_id>|<field>`)"),
             "N_h": _whole("transactions in the stratum's frame", "transactions", minimum=1),
             "n_h": _whole("questionnaires selected in the stratum (n_h ≤ N_h)", "questionnaires", minimum=1),
             "incl_prob": pa.Column(float, [pa.Check.gt(0.0), pa.Check.le(1.0)], nullable=False,
                                    description="inclusion probability π of the form (0 < π ≤ 1)"),
             "design_weight": pa.Column(float, pa.Check.ge(1.0), nullable=False,
                                        description="design weight 1/π (≥ 1)"),
             "recheck": _bool("selected for the re-check subsample (phúc tra)"),
         }, keys=["form_id"], personal=True)

register("procedures.csv", "input",
         "One row per administrative procedure a unit offers (Phụ lục 3), with the channels it is offered on.", {
             "procedure_id": _identifier("procedure id"),
             "unit_id": C.unit_id("unit offering the procedure; in units.csv"),
             "level": C.text("`unit` or `commune` level procedure", LEVELS),
             "commune_id": C.text("commune, for commune-level procedures listed per commune; usually empty",
                                  nullable=True),
             "field": C.field_code(),
             "offers_online_l3": _bool("offered as an online public service, level 3"),
             "offers_online_l4": _bool("offered as an online public service, level 4"),
             "offers_postal": _bool("results can be received through the public postal service (BCCI)"),
         }, keys=["procedure_id"])

register("frame.parquet", "input",
         "One row per transaction that received a result in the year (the sampling frame). Holds applicants' "
         "contact details for the post office's mailing list.", {
             "transaction_id": _identifier("transaction (case) id"),
             "unit_id": C.unit_id("unit that handled the transaction; in units.csv"),
             "field": C.field_code(),
             "procedure": C.text("procedure of the transaction"),
             "received_on": C.date("day the dossier was received", nullable=False),
             "result_on": C.date("day the result was returned", nullable=False),
             "channel": C.text("how the dossier was submitted", CHANNELS),
             "applicant_name": C.text("applicant's name", nullable=True),
             "phone": C.text("applicant's phone", nullable=True),
             "address": C.text("applicant's postal address", nullable=True),
         }, keys=["transaction_id"], personal=True)

register("dossiers.parquet", "input",
         "One row per administrative dossier (hồ sơ) received in the year, with its due and resolution days "
         "and whether it was resolved on time (Phụ lục 3).", {
             "dossier_id": _identifier("dossier id"),
             **_unit_level_columns(),
             "field": C.field_code(),
             "channel": C.text("how the dossier was submitted", CHANNELS),
             "procedure_id": _identifier("procedure (procedures.csv)"),
             "received_on": C.date("day received", nullable=False),
             "due_on": C.date("day the result is due", nullable=False),
             "resolved_on": C.date("day resolved; empty while pending"),
             "status": C.text("on time, overdue or still pending", DOSSIER_STATUSES),
             "overdue_reason": C.text("reason given for an overdue dossier", nullable=True),
         }, keys=["dossier_id"])

register("feedback.parquet", "input",
         "One row per petition or feedback (phản ánh, kiến nghị) on administrative procedures received in the year.", {
             "feedback_id": _identifier("feedback id"),
             **_unit_level_columns(),
             "received_on": C.date("day received", nullable=False),
             "kind": C.text("about civil servants' behaviour or about a regulation", FEEDBACK_KINDS),
             "result_published": _bool("the answer was published"),
         }, keys=["feedback_id"])

register("apologies.parquet", "input",
         "One row per apology letter sent to an applicant (thư xin lỗi), e.g. for an overdue result.", {
             "apology_id": _identifier("apology letter id"),
             **_unit_level_columns(),
             "sent_on": C.date("day sent", nullable=False),
             "reason": C.text("reason for the apology"),
         }, keys=["apology_id"])

register("opinions.parquet", "input",
         "One row per satisfaction opinion collected during a procedure (paper slip or electronic device).", {
             "opinion_id": _identifier("opinion id"),
             **_unit_level_columns(),
             "received_on": C.date("day received", nullable=False),
             "medium": C.text("paper or electronic", OPINION_MEDIA),
             "satisfied": _bool("the applicant said they were satisfied"),
         }, keys=["opinion_id"])
