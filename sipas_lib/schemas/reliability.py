"""Contracts of the tables written by stage ``reliability`` (:mod:`sipas_lib.stages.reliability`).

Verdict columns hold codes decided against stated thresholds (:mod:`sipas_lib.reliability.verdicts`);
readers' wording lives in ``sipas_lib/texts/reliability.yaml``. The vocabularies of the codes are
defined here, once, and imported by the core.
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import columns as C
from sipas_lib.schemas import register

#: Verdict codes of an alpha/omega value (≥ .80 good, ≥ .70 acceptable, ≥ .60 questionable).
ALPHA_VERDICTS = ("good", "acceptable", "questionable", "poor", "not_computable")
#: Verdict codes of a CFA fit (Hu & Bentler 1999 cut-offs; looser ones for acceptable).
FIT_VERDICTS = ("good", "acceptable", "poor", "not_estimable")
#: Verdict codes of an element's convergent validity (CR ≥ .70 and AVE ≥ .50).
VALIDITY_VERDICTS = ("supported", "not_supported", "not_assessed")
#: ``unit_type`` of a reliability table: every respondent (``all``) or one unit type of the registry.
GROUPS = ("all",) + C.UNIT_TYPES
SCALE_PATTERN = r"^(E[0-9]+|overall)$"


def _group() -> pa.Column:
    return C.text("respondents analysed: `all`, or the unit type (units registry) of their unit", GROUPS)


def _verdict_fits_level(df) -> "pa.typing.Series[bool]":
    model = df["level"] == "model"
    return (model & df["verdict"].isin(FIT_VERDICTS)) | (~model & df["verdict"].isin(VALIDITY_VERDICTS))


register("reliability_alpha", "reliability",
         "One row per group of respondents (all, or a unit type) × scale (each element of Phụ lục 5 and the "
         "whole questionnaire `overall`): Cronbach's alpha with Feldt and bootstrap intervals, ordinal alpha "
         "and omega, as R's psych. A scale a group cannot support has only `n` and a `note`.", {
             "unit_type": _group(),
             "scale": C.text("element code (E1…E5) or `overall` (all criteria)", pattern=SCALE_PATTERN),
             "n_items": C.count("criteria in the scale"),
             "population": C.text("respondents the scale is analysed on: `all`, or only those who gave feedback "
                                  "(section V, criteria 15–18, is asked only of them)", ("all", "gave_feedback")),
             "n": C.count("respondents analysed (with an answer to at least one criterion of the scale)"),
             "n_complete": C.count("respondents who answered every criterion of the scale", nullable=True),
             "raw_alpha": C.number("Cronbach's alpha from the pairwise covariances (psych raw_alpha)"),
             "std_alpha": C.number("standardized alpha from the pairwise correlations"),
             "g6": C.number("Guttman's lambda 6"),
             "average_r": C.number("mean inter-item correlation"),
             "ase": C.number("asymptotic standard error of alpha (Duhachek & Iacobucci, as psych)", min_value=0),
             "feldt_low": C.number("lower Feldt confidence limit of raw alpha at `ci_level`"),
             "feldt_high": C.number("upper Feldt confidence limit of raw alpha at `ci_level`"),
             "boot_low": C.number("lower percentile-bootstrap confidence limit of raw alpha (NaN when n_boot = 0)"),
             "boot_high": C.number("upper percentile-bootstrap confidence limit of raw alpha"),
             "ci_level": pa.Column(float, pa.Check.in_range(0.5, 1.0), nullable=True,
                                   description="confidence level of the intervals (the run's common.level)"),
             "n_boot": C.count("bootstrap replicates of alpha's interval (reliability.n_boot)", nullable=True),
             "ordinal_alpha": C.number("ordinal alpha: standardized alpha of the polychoric correlations"),
             "ordinal_feldt_low": C.number("lower Feldt limit applied to ordinal alpha (approximation)"),
             "ordinal_feldt_high": C.number("upper Feldt limit applied to ordinal alpha (approximation)"),
             "omega_total": C.number("McDonald's omega total (one factor; Schmid–Leiman for `overall`)"),
             "omega_h": C.number("omega hierarchical (`overall` only)"),
             "note": C.text("why a method could not be computed for this group and scale; empty when it was"),
             "verdict": C.text("reading of raw alpha against ≥ .80 / .70 / .60", ALPHA_VERDICTS),
         }, keys=("unit_type", "scale"))

register("reliability_items", "reliability",
         "One row per group of respondents × scale × criterion: item statistics as psych::alpha's item.stats "
         "and alpha.drop.", {
             "unit_type": _group(),
             "scale": C.text("element code (E1…E5) or `overall`", pattern=SCALE_PATTERN),
             "item": C.text("criterion code of the instrument (c01…c18)", pattern=r"^c[0-9]{2}$"),
             "n": C.count("respondents who answered the criterion"),
             "missing_share": C.share("share of the scale's respondents with no answer to the criterion",
                                      nullable=False),
             "mean": C.number("mean rating (1–5)"),
             "sd": C.number("standard deviation of the rating", min_value=0),
             "share_satisfied": C.share("share rating 4 or 5"),
             "raw_r": C.number("item–total correlation (psych raw.r)"),
             "std_r": C.number("item–total correlation of standardized items (psych std.r)"),
             "r_cor": C.number("item–total correlation corrected for overlap (psych r.cor)"),
             "r_drop": C.number("corrected item–total correlation: the item against the rest (psych r.drop)"),
             "alpha_if_deleted": C.number("raw alpha of the scale without the criterion"),
             "std_alpha_if_deleted": C.number("standardized alpha of the scale without the criterion"),
             "weak": C.flag("weak criterion: r_drop below reliability.weak_r_drop, or alpha rises without it"),
         }, keys=("unit_type", "scale", "item"))

register("reliability_cfa", "reliability",
         "Per group of respondents: one `model` row with the fit of the five-element CFA (ML, as lavaan) and "
         "one `element` row per element with its composite reliability and AVE. A group the CFA cannot be "
         "estimated on has the rows with only a `note`.", {
             "unit_type": _group(),
             "level": C.text("`model` (fit of the whole model) or `element` (one factor)", ("model", "element")),
             "code": C.text("`five_element` for the model row, the element code for an element row",
                            pattern=r"^(five_element|E[0-9]+)$"),
             "n": C.count("complete cases the CFA used (respondents who gave feedback and answered all criteria)",
                          nullable=True),
             "n_items": C.count("criteria in the model or element", nullable=True),
             "n_factors": C.number("factors in the model"),
             "npar": C.number("free parameters"),
             "chisq": C.number("ML chi-square", min_value=0),
             "df": C.number("degrees of freedom"),
             "pvalue": C.share("p-value of the chi-square test"),
             "baseline_chisq": C.number("chi-square of the independence model"),
             "baseline_df": C.number("degrees of freedom of the independence model"),
             "cfi": C.number("comparative fit index"),
             "tli": C.number("Tucker–Lewis index"),
             "rmsea": C.number("root mean square error of approximation", min_value=0),
             "rmsea_ci_low": C.number("lower limit of RMSEA's 90 % interval (lavaan's fixed level)"),
             "rmsea_ci_high": C.number("upper limit of RMSEA's 90 % interval"),
             "rmsea_pvalue": C.share("p-value of the close-fit test (RMSEA ≤ .05)"),
             "srmr": C.number("standardized root mean square residual", min_value=0),
             "aic": C.number("Akaike information criterion"),
             "bic": C.number("Bayesian information criterion"),
             "converged": C.flag("the optimiser converged (model rows)", nullable=True),
             "cr": C.number("composite reliability of the element (element rows)"),
             "ave": C.number("average variance extracted by the element (element rows)"),
             "note": C.text("why the CFA could not be estimated for this group; empty when it was"),
             "verdict": C.text("model rows: fit code; element rows: convergent validity code",
                               FIT_VERDICTS + VALIDITY_VERDICTS),
         }, keys=("unit_type", "level", "code"),
         checks=[pa.Check(_verdict_fits_level, element_wise=False,
                          error="verdict must be a fit code on model rows and a validity code on element rows")])
