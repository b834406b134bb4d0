"""Contracts of the tables written by stage ``index_ranking`` (:mod:`sipas_lib.stages.index_ranking`).

Shares (indices, their limits, targets) are on the 0–1 scale. Every interval is at the run's
confidence level (``common.level``); rows below the publication minimum, or with a standard error
of zero, carry a Wilson score interval (``ci_method == "wilson"``, :func:`sipas_lib.index.small_sample_intervals`).
``deff`` is R ``survey``'s design effect (simple random sampling without replacement).
"""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

# Vocabularies of sipas_lib.index (the contracts layer does not import the core; a test checks they agree).
OVERALL_CODE = "SIPAS"
#: index.CI_METHODS
CI_METHODS = ("normal", "wilson")
#: index.YOY_REASONS
YOY_REASONS = {
    "below_min_n": "fewer respondents than the publication minimum in one of the two years",
    "se_zero_or_undefined": "a standard error is zero or missing in one of the two years",
}

SCOPES = ("department", "district", "commune", "ward", "province", "all")
TARGET_STATUSES = ("met", "not_met", "not_distinguishable", "met_point", "not_met_point", "no_target")
QUADRANTS = ("concentrate_here", "keep_up", "low_priority", "possible_overkill")
RELATIONS = ("better", "worse", "tied")
POSITIONS = ("above", "below", "within")
#: Why a unit has no rank (``ranks.not_ranked_reason``).
NOT_RANKED_REASONS = ("below_min_n", "no_estimate", "no_responses", "all_blank")
BREAKDOWN_VARIABLES = ("gender", "age_group", "education", "channel", "field")


def _estimate_columns() -> dict[str, pa.Column]:
    cols = C.estimate_columns()
    cols["ci_method"] = C.text("how the interval was computed: normal (design-based, estimate ± z·se) or wilson "
                               "(Wilson score interval on n / deff, below the publication minimum or at SE 0)",
                               CI_METHODS)
    cols["measure"] = C.text("share (of ratings 4–5, 0–1) or mean_score (1–5)", ("share", "mean_score"))
    cols["rule"] = C.text("aggregation rule of criteria into elements and elements into SIPAS "
                          "(sipas_lib.index.RULES)")
    return cols


def _code() -> pa.Column:
    return C.text(f"criterion code (c01…, lg1…) for items, E1…E5 for elements, {OVERALL_CODE} for the overall index")


register("indices", "index_ranking",
         "One row per unit × index (criterion, element, overall SIPAS): design-based satisfaction index of the "
         "unit on the calibrated design of stage 30. Rows with no respondents (e.g. local-governance items of "
         "departments) are left out.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "level": C.index_level(),
             "code": _code(),
             **_estimate_columns(),
             "publishable": C.flag("the unit has at least common.min_publish_n respondents (overall index)"),
         }, keys=("unit_id", "level", "code"))

register("city_indices", "index_ranking",
         "One row per scope × index: city-wide indices for each unit type and for all units together "
         "(design-based, every respondent counts with their weight).", {
             "scope": C.text("unit type, or all for the whole city", SCOPES),
             "level": C.index_level(),
             "code": _code(),
             **_estimate_columns(),
         }, keys=("scope", "level", "code"))

register("ranks", "index_ranking",
         "One row per unit: its overall SIPAS index and rank within its unit type, with simultaneous and marginal "
         "confidence sets for the rank (Mogstad, Romano, Shaikh & Wilhelm 2024) and the empirical-Bayes companion. "
         "Units below the publication minimum or without usable forms are listed without a rank, with the reason.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "estimate": C.share("overall SIPAS index"),
             "se": C.number("design-based standard error", min_value=0),
             "ci_low": C.share("lower limit of the index at the run's level"),
             "ci_high": C.share("upper limit of the index at the run's level"),
             "ci_method": C.text("normal or wilson (see indices)", CI_METHODS, nullable=True),
             "rank": C.integer("estimated rank in the unit type, 1 = best", nullable=True),
             "rank_ci_low": C.integer("best rank of the simultaneous confidence set", nullable=True),
             "rank_ci_high": C.integer("worst rank of the simultaneous confidence set", nullable=True),
             "n_better": C.count("units significantly better (simultaneous tests)", nullable=True),
             "n_worse": C.count("units significantly worse (simultaneous tests)", nullable=True),
             "n_tied": C.count("units that cannot be told apart", nullable=True),
             "rank_ci_low_marginal": C.integer("best rank of the marginal confidence set", nullable=True),
             "rank_ci_high_marginal": C.integer("worst rank of the marginal confidence set", nullable=True),
             "in_top_k": C.flag("in the confidence set of the k best units", nullable=True),
             "in_bottom_k": C.flag("in the confidence set of the k worst units", nullable=True),
             "k_top": C.count("k of the top/bottom-k sets (index_ranking.k_top, at most units − 1)", nullable=True),
             "eb_estimate": C.share("empirical-Bayes shrunken index (model-based)"),
             "eb_se": C.number("posterior standard deviation of the shrunken index", min_value=0),
             "expected_rank": C.number("expected rank under the empirical-Bayes model (Laird & Louis 1989)"),
             "n_units": C.count("units ranked in the unit type", nullable=True),
             "n": C.count("respondents of the unit"),
             "publishable": C.flag("the unit has at least common.min_publish_n respondents"),
             "not_ranked_reason": C.text("why the unit has no rank: below_min_n (fewer respondents than the "
                                         "publication minimum), no_estimate, or the reason weighting left it out "
                                         "(no_responses, all_blank; see units_excluded)", NOT_RANKED_REASONS,
                                         nullable=True),
             "conf_level": C.share("confidence level of the intervals and rank sets"),
         }, keys=("unit_id",))

register("rank_pairs", "index_ranking",
         "One row per ordered pair of ranked units of the same type: whether the first is significantly better, "
         "worse, or cannot be told apart (simultaneous max-t tests at the run's level).", {
             "unit_type": C.unit_type(),
             "unit_id": C.unit_id("unit (row)"),
             "other": C.unit_id("unit compared with"),
             "relation": C.text("better, worse or tied (unit vs other)", RELATIONS),
         }, keys=("unit_id", "other"))

register("funnel_points", "index_ranking",
         "One row per ranked-type unit with an index: its place on the funnel plot around the city index of its "
         "unit type (Spiegelhalter 2005), the binomial variance inflated by the type's median design effect.", {
             "unit_type": C.unit_type(),
             "unit_id": C.unit_id(),
             "estimate": C.share("overall SIPAS index"),
             "n": C.count("respondents"),
             "centre": C.share("city index of the unit type"),
             "deff": C.number("design effect used for the limits", min_value=0),
             "z": C.number("standardized distance from the centre"),
             "outside_level": C.flag("outside the limits at the run's level"),
             "outside_998": C.flag("outside the 99.8 % limits"),
             "position": C.text("above, below or within the limits at the run's level", POSITIONS),
         }, keys=("unit_id",))

register("funnel_limits", "index_ranking",
         "One row per unit type × sample size × level: the funnel plot's control limits (at the run's level and "
         "at 99.8 %).", {
             "unit_type": C.unit_type(),
             "n": C.count("number of respondents"),
             "level": C.share("level of the control limits"),
             "centre": C.share("city index of the unit type"),
             "lower": C.share("lower control limit"),
             "upper": C.share("upper control limit"),
         }, keys=("unit_type", "n", "level"))

register("priorities", "index_ranking",
         "One row per publishable unit × criterion with enough answers: the criterion's index, its gap to the city "
         "index of the unit's type, and whether it is among the unit's weakest or furthest below the city.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "code": C.text("criterion code"),
             "element": C.text("element of the criterion (E1…E5)"),
             "estimate": C.share("criterion index of the unit"),
             "se": C.number("design-based standard error", min_value=0),
             "n": C.count("respondents who answered the criterion"),
             "city_estimate": C.share("city index of the criterion for the unit's type"),
             "gap_to_city": C.number("estimate − city_estimate (share points, 0–1 scale)"),
             "rank_in_unit": C.count("rank of the criterion in the unit, 1 = weakest"),
             "gap_rank": C.count("rank of the gap in the unit, 1 = furthest below the city"),
             "weakest": C.flag("among the unit's weakest criteria"),
             "largest_gap": C.flag("among the criteria furthest below the city (and below it)"),
         }, keys=("unit_id", "code"))

register("targets", "index_ranking",
         "One row per city scope × index (overall and elements) and per unit (overall): the index against the "
         "year's target of plan 143/KH-UBND; met / not_met only when the whole interval is above / below it.", {
             "scope": C.text("unit type or all (city rows), unit (one unit's row)", SCOPES + ("unit",)),
             "unit_id": C.unit_id("unit id (unit rows only)", nullable=True),
             "unit_type": C.unit_type("unit type (unit rows only)", nullable=True),
             "level": C.index_level(),
             "code": _code(),
             **_estimate_columns(),
             "year": C.integer("survey year"),
             "target_low": C.share("lower target (NaN: no target for the year)"),
             "target_high": C.share("upper target (NaN: none)"),
             "target_source": C.text("where the target comes from"),
             "gap": C.number("estimate − target_low"),
             "status": C.text("met, not_met, not_distinguishable (interval covers the target), no_target",
                              TARGET_STATUSES),
             "publishable": C.flag("unit rows: the unit has at least common.min_publish_n respondents; "
                                   "empty for city rows", nullable=True),
         }, keys=("scope", "unit_id", "level", "code"))

register("breakdowns", "index_ranking",
         "One row per respondent variable × group: the city-wide overall SIPAS index of that group of respondents "
         "(design-based).", {
             "variable": C.text("respondent variable", BREAKDOWN_VARIABLES),
             "group": C.text("the group's value as text (answer code of the form, survey mode or field code)"),
             "level": C.index_level(),
             "code": _code(),
             **_estimate_columns(),
         }, keys=("variable", "group", "level", "code"))

register("key_drivers", "index_ranking",
         "One row per element (E5 left out): its derived importance for overall satisfaction (weighted fractional "
         "logit, model-based SEs) and the city's index, with the importance–performance quadrant.", {
             "element": C.text("element code (E1…E4)"),
             "coef": C.number("logit coefficient of the element's mean rating"),
             "se": C.number("model-based standard error", min_value=0),
             "p_value": C.share("model-based p-value"),
             "odds_ratio": C.number("exp(coef)", min_value=0),
             "std_coef": C.number("coefficient × standard deviation of the element's mean rating"),
             "importance": C.share("|std_coef| / sum over elements"),
             "performance": C.share("city index of the element"),
             "quadrant": C.text("importance–performance quadrant (split at the means)", QUADRANTS),
             "model": C.text("model description"),
             "n": C.count("respondents in the model"),
         }, keys=("element",), optional=True)


def _yoy_columns() -> dict[str, pa.Column]:
    return {
        "n_prev": C.count("respondents in the previous year"),
        "estimate_prev": C.share("previous year's index"),
        "se_prev": C.number("previous year's standard error", min_value=0),
        "n": C.count("respondents this year"),
        "estimate": C.share("this year's index"),
        "se": C.number("this year's standard error", min_value=0),
        "change": C.number("estimate − estimate_prev (−1 to 1)"),
        "change_se": C.number("standard error of the change (independent years)", min_value=0),
        "change_ci_low": C.number("lower limit of the change at the run's level (Newcombe's score interval "
                                  "where reason is given)"),
        "change_ci_high": C.number("upper limit of the change at the run's level"),
        "z": C.number("change / change_se (empty where reason is given)"),
        "p_value": C.share("two-sided p-value (empty where reason is given)"),
        "significant": C.flag("the interval excludes 0; empty (no verdict) where reason is given", nullable=True),
        "reason": C.text("why no verdict: " + "; ".join(f"{k} = {v}" for k, v in YOY_REASONS.items()),
                         tuple(YOY_REASONS), nullable=True),
    }


register("yoy", "index_ranking",
         "One row per unit × index present in both years: the change from the previous year's results "
         "(index_ranking.previous_results), with its interval and a significance verdict only where the samples "
         "allow one.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "level": C.index_level(),
             "code": _code(),
             **_yoy_columns(),
             "rank_prev": C.integer("previous year's rank", nullable=True),
             "rank": C.integer("this year's rank", nullable=True),
             "rank_change": C.integer("rank_prev − rank (positive = moved up)", nullable=True),
         }, keys=("unit_id", "level", "code"), optional=True)

register("city_yoy", "index_ranking",
         "One row per city scope × index present in both years: the change of the city-wide index from the "
         "previous year.", {
             "scope": C.text("unit type, or all for the whole city", SCOPES),
             "level": C.index_level(),
             "code": _code(),
             **_yoy_columns(),
         }, keys=("scope", "level", "code"), optional=True)
