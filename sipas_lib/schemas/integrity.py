"""Contracts of fieldwork integrity (issue 13): the re-check (phúc tra), fabrication screening, self-surveys.

Stage ``integrity`` (between intake and weighting) writes these tables. The vocabularies of the re-check
(who re-checked, the outcomes) are defined here, once, and imported by the core (:mod:`sipas_lib.recheck`).

Every integrity signal is reported in the same shape (:func:`flag_columns`): one row per unit × signal with
the statistic (``value``), what it is compared with (``reference``), a p-value and/or a confidence interval,
whether the unit is ``flagged`` and a plain-language ``reason`` in English and Vietnamese. The signal tables
of the three parts (re-check, screening, self-survey) therefore stack into one per-unit integrity table.

Contact details of the re-checked respondents (``respondent_name``, ``respondent_phone``,
``respondent_address``) may be in the re-check file (the re-checkers need them); they are personal
(:data:`sipas_lib.schemas.PERSONAL_COLUMNS`), dropped at intake and refused in every result table.
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import columns as C
from sipas_lib.schemas import register
from sipas_lib.schemas.inputs import FORM_ID_PATTERN
from sipas_lib.schemas.intake_quality import ITEM_SCALES

#: Who re-checked a form: the Fatherland Front (Mặt trận Tổ quốc), the Veterans' Association (Hội Cựu chiến
#: binh) or the Department of Home Affairs (Sở Nội vụ) — seed 000 names the first two as supervisors.
RECHECKERS = ("MTTQ", "CCB", "SNV")
#: Outcome of a re-check: reached and confirms having answered / reached and denies / reached but does not
#: remember / not reached.
OUTCOMES = ("confirmed", "denied", "not_remember", "unreachable")
#: Outcomes in which the respondent was reached (the base of the confirmation rate).
REACHED_OUTCOMES = ("confirmed", "denied", "not_remember")
#: Rows of the re-check summary and agreement tables: the whole city, one collection route, one unit.
SCOPES = ("city", "survey_mode", "unit")
#: Weights of Cohen's kappa (:func:`sipas_lib.reliability.agreement.cohen_kappa`).
KAPPA_WEIGHTS = ("unweighted", "linear", "quadratic")
#: Contact columns a re-check file may hold (personal; never read past intake).
RECHECK_CONTACT_COLUMNS = ("respondent_name", "respondent_phone", "respondent_address")


def _answer(code: str, *, required: bool = False) -> pa.Column:
    scale = ITEM_SCALES[code]
    return pa.Column(float, pa.Check.isin(scale), nullable=True, required=required,
                     description=f"answer to criterion {code} re-asked at the re-check, {int(scale[0])}–{int(scale[-1])}; "
                                 "empty = not asked or not answered")


def _scope_columns() -> dict[str, pa.Column]:
    return {
        "scope": C.text("`city` (every re-checked form), `survey_mode` (one collection route) or `unit`", SCOPES),
        "unit_id": C.unit_id("unit (scope `unit`); empty otherwise", nullable=True),
        "survey_mode": C.survey_mode("collection route (scope `survey_mode`, from sample.csv); empty otherwise",
                                     nullable=True),
    }


def flag_columns(*, signal: str) -> dict[str, pa.Column]:
    """The columns every integrity signal table has: ``unit_id, signal, value, reference, n, p_value, lower,
    upper, flagged, reason, reason_vi`` (``signal`` documents the signal codes the table may hold)."""
    return {
        "unit_id": C.unit_id(),
        "signal": C.text(f"integrity signal: {signal}"),
        "value": C.number("the unit's statistic for the signal"),
        "reference": C.number("what the statistic is compared with (threshold, city value or null expectation)"),
        "n": C.count("observations the statistic rests on", nullable=True),
        "p_value": C.share("p-value of the signal's test (empty for a signal decided by a confidence interval)"),
        "lower": C.number("lower confidence limit of the statistic at the run's level (empty for a test)"),
        "upper": C.number("upper confidence limit of the statistic at the run's level (empty for a test)"),
        "flagged": C.flag("the unit is flagged on this signal"),
        "reason": C.text("why the unit is (or is not) flagged, in plain English"),
        "reason_vi": C.text("the same reason in Vietnamese"),
    }


register("recheck.csv", "input",
         "One row per re-checked questionnaire (phúc tra; `recheck.csv` or `recheck.xlsx` in the year's folder): "
         "who re-checked it, when, the outcome, and the answers to the re-asked criteria "
         "(`integrity.recheck_criteria`, default c01, c05, c10). Answers must be empty when the respondent was "
         "not reached. Read by sipas_lib.recheck.read_recheck; Vietnamese headers and labels are understood.", {
             "form_id": C.text("form id (Mã số phiếu) as on the questionnaire; in sample.csv and among the accepted "
                               "questionnaires", pattern=FORM_ID_PATTERN),
             "rechecked_by": C.text("MTTQ (Mặt trận Tổ quốc), CCB (Hội Cựu chiến binh) or SNV (Sở Nội vụ)", RECHECKERS),
             "recheck_date": C.date("day of the re-check (2025-11-03 or 03/11/2025)", nullable=False),
             "outcome": C.text("confirmed (reached, answered the questionnaire), denied (reached, did not answer it), "
                               "not_remember (reached, does not remember) or unreachable", OUTCOMES),
             **{code: _answer(code) for code in ITEM_SCALES},
             **{name: pa.Column(str, nullable=True, required=False,
                                description=f"re-checked respondent's {name.split('_')[1]} (personal; dropped at intake)")
                for name in RECHECK_CONTACT_COLUMNS},
         }, keys=("form_id",), personal=True)

register("recheck", "integrity",
         "One row per accepted re-check: the form, its unit and collection route (sample.csv), whether it was in "
         "the planned re-check subsample, who re-checked it, when, the outcome and the re-asked answers. "
         "No contact details.", {
             "form_id": C.text("form id (Mã số phiếu)", pattern=FORM_ID_PATTERN),
             "unit_id": C.unit_id("unit of the form (sample.csv)"),
             "survey_mode": C.survey_mode("collection route of the form (sample.csv)"),
             "planned": C.flag("the form was flagged for the re-check in sample.csv (the random re-check subsample); "
                               "other re-checks are kept but left out of the rates"),
             "rechecked_by": C.text("who re-checked", RECHECKERS),
             "recheck_date": C.date("day of the re-check", nullable=False),
             "outcome": C.text("outcome of the re-check", OUTCOMES),
             "reached": C.flag("the respondent was reached (confirmed, denied or not_remember)"),
             **{code: _answer(code) for code in ITEM_SCALES},
             "source_file": C.text("re-check file the row was read from (file name only)"),
             "source_row": pa.Column("int64", pa.Check.ge(2), description="spreadsheet row (header = row 1)"),
         }, keys=("form_id",),
         checks=[pa.Check(lambda df: df["reached"] == df["outcome"].isin(REACHED_OUTCOMES),
                          error="reached = outcome in confirmed, denied, not_remember")], optional=True)

register("recheck_quarantine", "integrity",
         "One row per re-check row set aside at intake, with the first rule it breaks and the reason "
         "(received = accepted + quarantined). No contact details: values that could identify someone are "
         "described by their kind, never shown.", {
             "source_file": C.text("re-check file (file name only)"),
             "source_row": pa.Column("int64", pa.Check.ge(2), description="spreadsheet row (header = row 1)"),
             "form_id": C.text("form id as written, when it has the shape of a form id; else empty"),
             "unit_id": C.text("unit of the form in sample.csv; empty when the form id is not there"),
             "column": C.text("column at fault (empty for a rule about the whole row)"),
             "rule": C.text("rule broken (sipas_lib.recheck.RULES)"),
             "reason": C.text("what is wrong, in English"),
             "reason_vi": C.text("what is wrong, in Vietnamese"),
         }, optional=True)

register("recheck_summary", "integrity",
         "One row per scope (the city, each collection route, each unit): planned re-checks by outcome, the reach "
         "rate, the confirmation rate among the respondents reached with its Wilson interval, and the denial rate. "
         "Shares of re-checked forms, unweighted (the re-check subsample is a simple random subsample of each "
         "unit's forms).", {
             **_scope_columns(),
             "n_rechecked": C.count("planned re-checks (sample.csv `recheck`) with an accepted result"),
             "n_reached": C.count("respondents reached (confirmed + denied + not_remember)"),
             "n_confirmed": C.count("reached and confirmed having answered"),
             "n_denied": C.count("reached and denied having answered"),
             "n_not_remember": C.count("reached but did not remember"),
             "n_unreachable": C.count("not reached"),
             "n_unplanned": C.count("accepted re-checks of forms outside the planned subsample (not in the rates)"),
             "reach_rate": C.share("n_reached / n_rechecked (empty when nothing was re-checked)"),
             "confirmation_rate": C.share("n_confirmed / n_reached (empty when nobody was reached)"),
             "ci_low": C.share("lower Wilson confidence limit of the confirmation rate at the run's level (Clopper–Pearson when "
                          "every respondent reached confirmed)"),
             "ci_high": C.share("upper Wilson confidence limit of the confirmation rate at the run's level (Clopper–Pearson when "
                           "nobody reached confirmed)"),
             "denial_rate": C.share("n_denied / n_reached (empty when nobody was reached)"),
         }, keys=("scope", "unit_id", "survey_mode"),
         checks=[pa.Check(lambda df: df["n_rechecked"] == df["n_reached"] + df["n_unreachable"],
                          error="n_rechecked = n_reached + n_unreachable"),
                 pa.Check(lambda df: df["n_reached"] == df["n_confirmed"] + df["n_denied"] + df["n_not_remember"],
                          error="n_reached = n_confirmed + n_denied + n_not_remember")], optional=True)

register("recheck_agreement", "integrity",
         "One row per scope × criterion (each re-asked criterion, and `all` of them pooled) × kappa weights: "
         "agreement of the answers re-asked at the re-check with the original answers, among planned re-checks "
         "whose respondent confirmed having answered. Exact agreement, and Cohen's kappa (unweighted, linear, "
         "quadratic weights) with its asymptotic interval (Fleiss, Cohen & Everitt 1969).", {
             **_scope_columns(),
             "criterion": C.text("re-asked criterion (c01…), or `all` (pairs of every re-asked criterion pooled)"),
             "weights": C.text("kappa weights", KAPPA_WEIGHTS),
             "n": C.count("pairs (original answer, re-check answer) with both answers given"),
             "exact_agreement": C.share("share of pairs with the same answer"),
             "kappa": C.number("Cohen's kappa with these weights (empty when chance agreement is 1 or n = 0)"),
             "se": C.number("asymptotic standard error of kappa", min_value=0),
             "ci_low": C.number("lower confidence limit of kappa at the run's level (clipped to -1)"),
             "ci_high": C.number("upper confidence limit of kappa at the run's level (clipped to 1)"),
         }, keys=("scope", "unit_id", "survey_mode", "criterion", "weights"), optional=True)

register("recheck_flags", "integrity",
         "One row per unit with planned re-checks: signal `recheck_confirmation`, the unit's confirmation rate "
         "among respondents reached against `integrity.confirmation_threshold`, with the exact one-sided binomial "
         "p-value and the Clopper–Pearson interval. A unit is flagged when p < (1 − level)/2, i.e. the upper limit "
         "is below the threshold (credibly below it), with the reason.",
         flag_columns(signal="`recheck_confirmation`"), keys=("unit_id", "signal"), optional=True)


# --------------------------------------------------------------------------------------------
# The units' own surveys (Phụ lục 2) beside the independent survey (sipas_lib.self_survey)
# --------------------------------------------------------------------------------------------

#: Items of the own-survey form (Phụ lục 2, hanoi_pl2_self) and their scale.
SELF_SURVEY_ITEMS = {code: scale for code, scale in ITEM_SCALES.items() if code.startswith("s")}
#: Rules of the own-survey intake, in priority order (sipas_lib.self_survey.RULES).
SELF_SURVEY_RULES = ("unit_missing", "unit_unknown", "survey_date_missing", "survey_date_value",
                     "survey_date_ambiguous", "survey_date_outside_year", "item_value", "empty_form")
#: Code of the own-survey composite (mean of the question shares).
SELF_CODE = "SELF"
#: How the independent composite's standard error was obtained.
REFERENCE_SE_METHODS = ("design", "bound")
#: The own survey is a convenience sample: its intervals are computed as if it were a simple random sample.
INTERVAL_BASES = ("as_if_random",)


def _own_answer(code: str) -> pa.Column:
    scale = SELF_SURVEY_ITEMS[code]
    return pa.Column(float, pa.Check.isin(scale), nullable=True,
                     description=f"answer to own-survey question {code}, {int(scale[0])}–{int(scale[-1])}; empty = not answered")


register("self_survey.csv", "input",
         "One row per own-survey form a unit collected at its one-stop counter (Phụ lục 2 of plan 143/KH-UBND; "
         "`self_survey.csv`, `.xlsx` or `.parquet` in the year's folder). Read by sipas_lib.self_survey.read_self_survey "
         "with the intake rules: forms breaking a rule are set aside with a reason; the paper form's headers "
         "(Đơn vị, Ngày khảo sát, Câu 1 … Câu 8) and the scale's labels are understood; other columns (the free-text "
         "procedure, any contact detail) are dropped.", {
             "unit_id": C.unit_id("unit that ran the survey: its id (units.csv), or its Vietnamese or English name"),
             "survey_date": C.date("day the form was filled in (2025-03-14 or 14/03/2025); its month places it",
                                   nullable=False),
             **{code: _own_answer(code) for code in SELF_SURVEY_ITEMS},
         })

register("self_survey_summary", "integrity",
         "One row per own-survey file × unit as written on the forms: forms received, accepted and set aside "
         "(received = accepted + quarantined).", {
             "source_file": C.text("own-survey file (file name only)"),
             "unit_id": C.text("unit as written ('(missing)' when empty, '(unit not shown)' when it could be personal "
                               "data; may be unknown to the registry)"),
             "received": C.count("forms read"),
             "accepted": C.count("forms accepted"),
             "quarantined": C.count("forms set aside, one reason each (self_survey_quarantine)"),
         }, keys=("source_file", "unit_id"),
         checks=[pa.Check(lambda df: df["received"] == df["accepted"] + df["quarantined"],
                          error="received = accepted + quarantined")], optional=True)

register("self_survey_quarantine", "integrity",
         "One row per own-survey form set aside at intake, with the first rule it breaks and the reason. Values "
         "that could identify someone are described by their kind, never shown.", {
             "source_file": C.text("own-survey file (file name only)"),
             "source_row": pa.Column("int64", pa.Check.ge(2), description="spreadsheet row (header = row 1)"),
             "unit_id": C.text("unit id when known, else as written ('(missing)', '(unit not shown)')"),
             "column": C.text("column at fault (empty for a rule about the whole form)", nullable=True),
             "rule": C.text("rule broken (sipas_lib.self_survey.RULES)", SELF_SURVEY_RULES),
             "reason": C.text("what is wrong, in English"),
             "reason_vi": C.text("what is wrong, in Vietnamese"),
         }, optional=True)

register("self_survey_monthly", "integrity",
         "One row per unit × month × own-survey question (and the composite `SELF`, the mean of the question "
         "shares): share of forms rating 4–5. The own survey is a convenience sample of the people at the counter, "
         "so its Wilson intervals are computed as if it were a simple random sample (`interval_basis`).", {
             "unit_id": C.unit_id(),
             "year": C.integer("year of the forms"),
             "month": pa.Column("int64", pa.Check.in_range(1, 12), description="month of the forms (1–12)"),
             "level": C.text("`item` (one question) or `overall` (the composite)", ("item", "overall")),
             "code": C.text(f"question code (s1…s8), or {SELF_CODE} for the composite"),
             "n": C.count("forms answering (the composite: forms answering any question)"),
             "estimate": C.share("share of forms rating 4–5 (the composite: mean of the question shares)",
                                 nullable=False),
             "se": C.number("standard error as if the forms were a simple random sample", min_value=0),
             "ci_low": C.share("lower Wilson limit at the run's level, as if random"),
             "ci_high": C.share("upper Wilson limit at the run's level, as if random"),
             "interval_basis": C.text("what the interval assumes: `as_if_random`", INTERVAL_BASES),
         }, keys=("unit_id", "year", "month", "code"), optional=True)

register("self_survey_gaps", "integrity",
         "One row per unit × shared question (and the composite `SELF`): the unit's own survey beside the "
         "independent survey's design-based index of the Phụ lục 5 criteria the question asks about "
         "(sipas_lib/instruments/pl2_to_pl5.csv), the gap and its interval. Composite rows cover every unit of "
         "either side (one side empty when a unit has no own survey or no independent figure).", {
             "unit_id": C.unit_id(),
             "level": C.text("`item` (one shared question) or `overall` (the composite)", ("item", "overall")),
             "code": C.text(f"question code (s1…s8), or {SELF_CODE} for the composite"),
             "value": C.share("own survey: share of forms rating 4–5"),
             "reference": C.share("independent survey: mean of the design-based indices of the mapped criteria"),
             "gap": C.number("value − reference (share points on the 0–1 scale)"),
             "se_value": C.number("standard error of value, as if the own survey were random", min_value=0),
             "se_reference": C.number("standard error of reference: design-based, or its upper bound "
                                      "(reference_se_method)", min_value=0),
             "se_gap": C.number("√(se_value² + se_reference²): the two samples are independent", min_value=0),
             "lower": C.number("lower limit of gap ± z·se_gap at the run's level"),
             "upper": C.number("upper limit of gap ± z·se_gap at the run's level"),
             "n_self": C.count("own-survey forms answering"),
             "n_reference": C.count("independent respondents answering (most of the mapped criteria)", nullable=True),
             "reference_se_method": C.text("`design` (exact design-based SE) or `bound` (sum of the criteria's "
                                           "weighted SEs, Minkowski's upper bound)", REFERENCE_SE_METHODS,
                                           nullable=True),
             "interval_basis": C.text("what the own survey's interval assumes: `as_if_random`", INTERVAL_BASES),
         }, keys=("unit_id", "code"), optional=True)

register("self_survey_flags", "integrity",
         "One row per unit: signal `self_survey_above_independent`: the gap between the unit's own survey and the "
         "independent survey on the shared questions (value) against the tolerance `integrity.self_survey_gap` "
         "(reference). A unit is flagged when the lower limit of the gap's interval is above the tolerance: its own "
         "survey runs above the independent one beyond the uncertainty of both.", {
             **flag_columns(signal="`self_survey_above_independent`"),
             "own_share": C.share("own survey's composite: mean over the shared questions of the share rating 4–5"),
             "independent_share": C.share("independent survey's figure on the same questions (design-based)"),
             "n_independent": C.count("independent respondents", nullable=True),
             "items": C.count("shared questions compared"),
         }, keys=("unit_id", "signal"), optional=True)


# --------------------------------------------------------------------------------------------
# Screening the returned questionnaires for fabrication (sipas_lib.screening)
# --------------------------------------------------------------------------------------------

#: The screening signals (sipas_lib.screening.SIGNALS), in report order.
SCREENING_SIGNALS = ("near_duplicates", "straight_lining", "satisfied_everywhere", "return_bunching",
                     "collection_point_share", "enumerator_share")

register("screening_flags", "integrity",
         "One row per unit × screening signal of the returned questionnaires (sipas_lib.screening.screen): the "
         "statistic, what it is compared with (its null), the p-value, the p-value adjusted across units "
         "(Benjamini–Hochberg, per signal) and whether the unit is flagged (adjusted p ≤ "
         "`integrity.false_flag_rate`), with the reason in plain words, flagged or not.", {
             **flag_columns(signal=", ".join(f"`{s}`" for s in SCREENING_SIGNALS)),
             "signal": C.text("screening signal (sipas_lib.screening)", SCREENING_SIGNALS),
             "p_adjusted": C.share("Benjamini–Hochberg adjusted p-value across the units, per signal (empty when "
                                   "the signal could not be computed for the unit)"),
         }, keys=("unit_id", "signal"))

register("screening_suspects", "integrity",
         "One row per form behind a screening flag (sipas_lib.screening.suspect_forms): the forms of a flagged unit "
         "that have a near-identical twin (`near_duplicates`) or came back in its bunched batch "
         "(`return_bunching`); the other signals describe a unit as a whole and name no forms. The sensitivity "
         "analysis recomputes the unit's index without them.", {
             "form_id": C.text("form id (Mã số phiếu)", pattern=FORM_ID_PATTERN),
             "unit_id": C.unit_id(),
             "signal": C.text("the signal the form is listed under", ("near_duplicates", "return_bunching")),
         }, keys=("form_id", "signal"), optional=True)


# --------------------------------------------------------------------------------------------
# The stage's combined tables (sipas_lib.stages.integrity)
# --------------------------------------------------------------------------------------------

#: Where an integrity signal comes from: the re-check, the screening of the returned forms, the own survey.
SIGNAL_SOURCES = ("recheck", "screening", "self_survey")
#: Why a form may be set aside: a screening signal that names forms, or a denial at the re-check.
EXCLUSION_SIGNALS = ("near_duplicates", "return_bunching", "recheck_denied")

register("integrity_signals", "integrity",
         "Every integrity signal of every unit in one shape: the re-check (`recheck_flags`), the screening "
         "(`screening_flags`) and the own-survey comparison (`self_survey_flags`) stacked, with the source. One "
         "row per unit × signal, flagged or not, each with its reason.", {
             "source": C.text("where the signal comes from", SIGNAL_SOURCES),
             **flag_columns(signal="the signals of the three sources"),
             "p_adjusted": C.share("p-value adjusted across units (screening only; empty otherwise)"),
         }, keys=("unit_id", "signal"))

register("integrity_units", "integrity",
         "One row per unit with questionnaires: how many signals flag it and which, the forms behind the flags, "
         "and the sensitivity analysis — its overall index with all accepted forms and without its suspect forms "
         "(both from the design weighting builds, re-weighted without them), and its rank confidence set in each "
         "case.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "n_forms": C.count("accepted questionnaires of the unit"),
             "n_flags": C.count("signals that flag the unit"),
             "signals": C.text("the flagging signals, comma-separated (empty = none)"),
             "n_suspect_forms": C.count("forms behind the flags (near-duplicate groups, the bunched batch, denied at "
                                        "re-check)"),
             "excluded": C.flag("the suspect forms were excluded from the estimates (`integrity.exclude_flagged`)"),
             "index_all": C.share("overall index with every accepted form (share 0–1)"),
             "ci_low_all": C.share("its lower confidence limit"),
             "ci_high_all": C.share("its upper confidence limit"),
             "index_without": C.share("overall index without the suspect forms (empty when none)"),
             "ci_low_without": C.share("its lower confidence limit"),
             "ci_high_without": C.share("its upper confidence limit"),
             "rank_all": pa.Column("Int64", nullable=True, description="rank among units of its type, all forms"),
             "rank_ci_low_all": pa.Column("Int64", nullable=True, description="rank confidence set, best end"),
             "rank_ci_high_all": pa.Column("Int64", nullable=True, description="rank confidence set, worst end"),
             "rank_without": pa.Column("Int64", nullable=True, description="rank without the suspect forms"),
             "rank_ci_low_without": pa.Column("Int64", nullable=True, description="its rank confidence set, best end"),
             "rank_ci_high_without": pa.Column("Int64", nullable=True,
                                               description="its rank confidence set, worst end"),
             "rank_set_changed": C.flag("the rank confidence set differs without the suspect forms"),
             "reason": C.text("the reasons of the flags, in plain English (empty = not flagged)"),
             "reason_vi": C.text("the same in Vietnamese"),
         }, keys=("unit_id",))

register("integrity_exclusions", "integrity",
         "The forms set aside before weighting because `integrity.exclude_flagged` is true (empty otherwise): one "
         "row per form with the signal behind it. Weighting drops them and counts them (`weighting_summary."
         "n_set_aside`), so accepted = set aside + weighted + unmatched.", {
             "form_id": C.text("form id (Mã số phiếu)", pattern=FORM_ID_PATTERN),
             "unit_id": C.unit_id(),
             "signal": C.text("why the form was set aside", EXCLUSION_SIGNALS),
             "reason": C.text("the reason in plain English"),
             "reason_vi": C.text("the same in Vietnamese"),
         }, keys=("form_id",), optional=True)
