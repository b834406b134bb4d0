"""Contracts of the tables written by stage ``weighting`` (:mod:`sipas_lib.stages.weighting`).

The stage also writes ``results/design.json``, the design specification
(:class:`sipas_lib.weighting.DesignSpec`); it is data for :func:`sipas_lib.stages.weighting.load_design`,
not a table, and is checked by ``DesignSpec.from_dict``.

Two design effects appear, named for what they are: ``deff_kish*`` is Kish's design effect *due to
unequal weighting* (a property of the weights alone), ``deff_sipas`` the design effect of the unit's
SIPAS index (the library's ``deff``: R survey's, against simple random sampling without replacement).
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.config import FIELDS
from sipas_lib.schemas import REGISTRY, register
from sipas_lib.schemas import columns as C
from sipas_lib.schemas import intake_quality  # noqa: F401  (registers "responses", whose columns we extend)

EXCLUSION_REASONS = ("no_responses", "all_blank")  # = sipas_lib.weighting.EXCLUSION_REASONS (core may not be imported here)
CALIBRATION_KINDS = ("poststratify", "rake", "none")


def _weight(description: str) -> pa.Column:
    return pa.Column(float, pa.Check.ge(0.0), nullable=False, description=description)


def _positive(description: str, *, nullable: bool = False) -> pa.Column:
    return pa.Column(float, pa.Check.gt(0.0), nullable=nullable, description=description)


_responses = REGISTRY["responses"]

register("responses_weighted", "weighting",
         "One row per weighted questionnaire: the accepted responses (columns of `responses`) of the units that "
         "were weighted, plus the weight after each weighting step and the design columns. Rebuild the design "
         "with `sipas_lib.stages.weighting.load_design` (it adds `results/design.json`), never by hand.", {
             **dict(_responses.schema.columns),
             "w_base": _positive("base (design) weight 1/π of the questionnaire (sample.csv `incl_prob`)"),
             "w_nr": _positive("weight after the non-response adjustment within unit × survey-mode cells"),
             "nr_cell": C.text("non-response adjustment cell, `<unit_id>|<survey_mode>`"),
             "survey_mode": C.survey_mode("how the questionnaire was delivered and returned (sample.csv)"),
             "stratum": C.text("variance stratum (the unit)"),
             "psu": C.text("primary sampling unit of the city design (the questionnaire); the national design's "
                              "PSU is `commune_id` (design.json says which)", unique=True),
             "N_unit": _positive("finite-population correction: the unit's transactions in frame_counts.csv"),
             # the national design only (weighting.design: national); design.json names them as PSU and fpc
             "commune_id": pa.Column(str, nullable=False, required=False,
                                     description="national design: the commune the questionnaire was drawn in, the "
                                                 "primary sampling unit of the variance (design.json `psu`)"),
             "N_psu": pa.Column(float, pa.Check.gt(0.0), nullable=False, required=False,
                                description="national design: communes in the province, the first-stage "
                                            "finite-population correction (design.json `fpc`)"),
             "cal_cell": C.text("calibration cell within the unit: the field, or the unit's largest field cell "
                                "when the field had fewer than `min_cell` respondents", FIELDS),
             "w_cal": _positive("weight after calibration to the frame (equal to `w_nr` when calibration is none)"),
             "w_final": _positive("final weight after trimming: the weight every estimate uses"),
         },
         keys=("form_id",), checks=list(_responses.schema.checks))

register("weight_diagnostics", "weighting",
         "One row per weighted unit: summaries of its final weights, Kish's design effect of weighting after each "
         "step, response rate, frame count, trimmed weights, and the unit's SIPAS index with and without weights.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "n": C.count("weighted questionnaires"),
             "sum": _positive("sum of the final weights (= the unit's frame count after calibration)"),
             "min": _positive("smallest final weight"),
             "median": _positive("median final weight"),
             "max": _positive("largest final weight"),
             "ratio_max_min": pa.Column(float, pa.Check.ge(1.0), description="largest / smallest final weight"),
             "cv": C.number("coefficient of variation of the final weights", nullable=False, min_value=0),
             "deff_kish": pa.Column(float, pa.Check.ge(1.0 - 1e-12),
                                    description="Kish's design effect due to unequal final weights, n·Σw²/(Σw)² "
                                                "(a property of the weights, not the deff of an estimate)"),
             "n_eff": _positive("Kish's effective sample size (Σw)²/Σw² of the final weights"),
             "deff_kish_base": pa.Column(float, pa.Check.ge(1.0 - 1e-12), description="Kish's deff of the base weights"),
             "deff_kish_nr": pa.Column(float, pa.Check.ge(1.0 - 1e-12),
                                       description="Kish's deff after the non-response adjustment"),
             "deff_kish_cal": pa.Column(float, pa.Check.ge(1.0 - 1e-12), description="Kish's deff after calibration"),
             "n_issued": pa.Column("int64", pa.Check.gt(0), description="questionnaires issued to the unit (sample.csv)"),
             "response_rate": C.share("weighted (accepted) questionnaires / issued", nullable=False),
             "N_frame": pa.Column("int64", pa.Check.gt(0), description="the unit's transactions with a result "
                                                                       "(frame_counts.csv)"),
             "n_trimmed": C.count("final weights changed by trimming"),
             "sipas_weighted": C.share("the unit's SIPAS index with the final weights (stage 50's definition)"),
             "sipas_unweighted": C.share("the unit's SIPAS index with every questionnaire counted once"),
             "se_sipas": C.number("design-based standard error of the weighted SIPAS index (accounts for the "
                                  "calibration)", min_value=0),
             "deff_sipas": C.number("design effect of the weighted SIPAS index: the library's deff (R survey's, "
                                    "against simple random sampling without replacement)"),
             "year": C.integer("survey year"),
         },
         keys=("unit_id",))

register("nonresponse_cells", "weighting",
         "One row per weighted unit × survey mode of the issued sample: the cells of the non-response adjustment.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "survey_mode": C.survey_mode(),
             "n_issued": pa.Column("int64", pa.Check.gt(0), description="questionnaires issued in the cell"),
             "n_accepted": C.count("issued questionnaires of the cell that came back accepted"),
             "response_rate": C.share("n_accepted / n_issued", nullable=False),
             "nr_factor": pa.Column(float, pa.Check.ge(1.0 - 1e-12), nullable=True,
                                    description="non-response adjustment factor w_nr / w_base of the cell's "
                                                "respondents; empty when the cell has none"),
             "pooled_in_unit": C.flag("the cell has no respondent: its issued weight is spread over the unit's "
                                      "other respondents"),
         },
         keys=("unit_id", "survey_mode"),
         checks=[pa.Check(lambda df: df["n_accepted"] <= df["n_issued"], error="n_accepted ≤ n_issued")])

register("calibration_cells", "weighting",
         "One row per weighted unit × field of the frame: the frame count and the sums of the weights before and "
         "after calibration (the calibration comparison).", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "field": C.field_code(),
             "cal_cell": C.text("calibration cell the field belongs to (itself, or the unit's largest field cell)",
                                FIELDS),
             "merged": C.flag("post-stratification only: the field had fewer than `min_cell` respondents and was "
                              "merged into `cal_cell` (raking calibrates to the unit and field margins instead)"),
             "N_frame": C.count("transactions with a result in the unit × field (frame_counts.csv, all channels)"),
             "n": C.count("weighted questionnaires in the unit × field"),
             "weight_nr": C.number("sum of the weights before calibration (w_nr)", nullable=False, min_value=0),
             "weight_cal": C.number("sum of the weights after calibration (w_cal)", nullable=False, min_value=0),
         },
         keys=("unit_id", "field"))

register("units_excluded", "weighting",
         "One row per unit of the issued sample left out of weighting — and so of the indices and ranks — because "
         "it has no usable questionnaire; empty when every unit was weighted.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "reason": C.text("`no_responses`: no questionnaire came back accepted; `all_blank`: every accepted "
                              "questionnaire has no answered item", EXCLUSION_REASONS),
             "n_issued": C.count("questionnaires issued to the unit"),
             "n_accepted": C.count("questionnaires accepted at intake"),
             "N_frame": C.count("the unit's transactions with a result (frame_counts.csv)"),
         },
         keys=("unit_id",))

register("weighting_summary", "weighting",
         "One row: the year's weighting in numbers (issued, accepted and weighted questionnaires, settings used, "
         "adjustment factors, calibration gap, merged cells, trimmed weights).", {
             "year": C.integer("survey year"),
             "n_issued": C.count("questionnaires issued (sample.csv)"),
             "n_accepted": C.count("questionnaires accepted at intake"),
             "n_set_aside": C.count("accepted questionnaires the integrity stage excluded before weighting "
                                    "(`integrity.exclude_flagged`; listed in `integrity_exclusions` with their reason)"),
             "n_unmatched": C.count("accepted questionnaires whose form id is not in sample.csv (not weighted)"),
             "n_weighted": C.count("questionnaires weighted"),
             "n_units": C.count("units weighted"),
             "n_units_excluded": C.count("units left out of weighting (table units_excluded)"),
             "N_frame": C.count("transactions with a result in the weighted units (frame_counts.csv)"),
             "calibration": C.text("calibration kind", CALIBRATION_KINDS),
             "trim_ratio": pa.Column(float, pa.Check.gt(1.0), nullable=True,
                                     description="weights capped at this multiple of the unit median; empty = no "
                                                 "trimming"),
             "min_cell": pa.Column("int64", pa.Check.ge(1), description="fewest respondents in a calibration cell "
                                                                         "before it is merged"),
             "lonely_psu": C.text("rule for a stratum with a single PSU (R survey.lonely.psu)"),
             "nr_factor_min": C.number("smallest non-response adjustment factor", nullable=False, min_value=0),
             "nr_factor_median": C.number("median non-response adjustment factor", nullable=False, min_value=0),
             "nr_factor_max": C.number("largest non-response adjustment factor", nullable=False, min_value=0),
             "calibration_gap_mean": C.number("mean |sum of w_nr / frame count − 1| over unit × field cells with "
                                              "respondents, before calibration", min_value=0),
             "n_merged": C.count("questionnaires whose field cell was merged into the unit's largest cell "
                                  "(post-stratification only)"),
             "n_trimmed": C.count("final weights changed by trimming"),
             "n_units_trimmed": C.count("units with at least one trimmed weight"),
         })
