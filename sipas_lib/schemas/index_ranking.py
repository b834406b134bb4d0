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
LEAGUE_DESCRIPTION = ("who the unit is ranked against: its unit type (e.g. commune), or province:unit type "
                      "(e.g. P01:commune) when ranked within its province")


def _added(column: pa.Column) -> pa.Column:
    """A column stage 50 always writes that earlier runs' tables lack (read as last year's results)."""
    column.required = False
    return column


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
         "One row per unit: its overall SIPAS index and rank within its league (its unit type, or its unit type "
         "within its province when the units span several provinces: index_ranking.league_by), with simultaneous and "
         "marginal confidence sets for the rank (Mogstad, Romano, Shaikh & Wilhelm 2024) and the empirical-Bayes "
         "companion. Units below the publication minimum or without usable forms are listed without a rank, with the "
         "reason.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "province_id": _added(C.unit_id("the unit's province (units registry; empty for a province itself)",
                                             nullable=True)),
             "league": _added(C.text(LEAGUE_DESCRIPTION)),
             "estimate": C.share("overall SIPAS index"),
             "se": C.number("design-based standard error", min_value=0),
             "ci_low": C.share("lower limit of the index at the run's level"),
             "ci_high": C.share("upper limit of the index at the run's level"),
             "ci_method": C.text("normal or wilson (see indices)", CI_METHODS, nullable=True),
             "rank": C.integer("estimated rank in the league, 1 = best", nullable=True),
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
             "n_units": C.count("units ranked in the league", nullable=True),
             "n": C.count("respondents of the unit"),
             "publishable": C.flag("the unit has at least common.min_publish_n respondents"),
             "not_ranked_reason": C.text("why the unit has no rank: below_min_n (fewer respondents than the "
                                         "publication minimum), no_estimate, or the reason weighting left it out "
                                         "(no_responses, all_blank; see units_excluded)", NOT_RANKED_REASONS,
                                         nullable=True),
             "conf_level": C.share("confidence level of the intervals and rank sets"),
         }, keys=("unit_id",))

register("rank_pairs", "index_ranking",
         "One row per ordered pair of ranked units of the same league: whether the first is significantly better, "
         "worse, or cannot be told apart (simultaneous max-t tests at the run's level).", {
             "league": _added(C.text(LEAGUE_DESCRIPTION)),
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
         "previous year. Across the 2025 reform the legacy district group of the previous year is compared "
         "with each new local group (commune, ward): scope_prev says so.", {
             "scope": C.text("unit type, or all for the whole city", SCOPES),
             "level": C.index_level(),
             "code": _code(),
             "scope_prev": C.text("the previous year's scope compared with: the same scope, or district for the "
                                  "new local groups (commune, ward) after the 2025 reform", SCOPES),
             **_yoy_columns(),
         }, keys=("scope", "level", "code"), optional=True)

#: Unit bases of a crosswalk's shares (crosswalk.BASES).
CROSSWALK_BASES = ("population", "dossiers", "area")
#: yoy_reform.comparison: what the predecessor figure stands for.
REFORM_COMPARISONS = {
    "other_level": "the predecessors are units of another level of government (old districts for a new commune)",
    "merged": "the predecessors are units of the same type (departments merged into a new one)",
    "none": "no predecessor in the crosswalk has an index",
}
#: yoy_reform.reason: why the comparison is withheld.
REFORM_REASONS = {
    "no_predecessor": "no predecessor with an index in the previous year (or the unit is not in the crosswalk)",
    "low_coverage": "the predecessors with an index cover less than index_ranking.min_predecessor_coverage "
                    "of the new unit",
    "below_min_n": "fewer respondents this year than the publication minimum",
}
SE_PRED_METHODS = {
    "old_design_covariance": "w' Σ w with Σ the previous year's design covariance of the unit indices",
    "independent_units": "the previous year's design could not be rebuilt: predecessors taken as independent "
                         "(diagonal of se_prev²)",
}

register("yoy_reform", "index_ranking",
         "One row per unit of this year that did not exist (with the same id and extent) in the previous year: "
         "an indicative comparison of its overall SIPAS index with a predecessor figure, the crosswalk-weighted "
         "combination of its old units' overall indices (sipas_lib.crosswalk.predecessor_estimates, "
         "cross_reform_change), withheld where the predecessors cover too little of it. Never a significance "
         "verdict: the two figures measure different units.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "n": C.count("respondents this year"),
             "estimate": C.share("this year's overall index"),
             "se": C.number("this year's standard error", min_value=0),
             "predecessors": C.text("old unit ids of the crosswalk with an index, comma-separated (empty: none)"),
             "predecessor_types": C.text("unit types of the predecessors, comma-separated (empty: none)"),
             "n_predecessors": C.count("number of predecessors with an index"),
             "coverage": C.number("share of the new unit its predecessors with an index cover (sum of share_of_new)",
                                  min_value=0),
             "basis": C.text("what the crosswalk's shares measure", CROSSWALK_BASES, nullable=True),
             "estimate_pred": C.share("predecessor figure: Σ w·index of the old units, w = share_of_new / coverage"),
             "se_pred": C.number("standard error of the predecessor figure", min_value=0),
             "se_pred_method": C.text("; ".join(f"{k} = {v}" for k, v in SE_PRED_METHODS.items()),
                                      tuple(SE_PRED_METHODS), nullable=True),
             "change": C.number("estimate − estimate_pred (indicative; empty when withheld)"),
             "change_se": C.number("√(se² + se_pred²), independent years", min_value=0),
             "change_ci_low": C.number("lower limit of the change at the run's level"),
             "change_ci_high": C.number("upper limit of the change at the run's level"),
             "comparison": C.text("; ".join(f"{k} = {v}" for k, v in REFORM_COMPARISONS.items()),
                                  tuple(REFORM_COMPARISONS)),
             "withheld": C.flag("no change is published for the unit (reason says why)"),
             "reason": C.text("why withheld: " + "; ".join(f"{k} = {v}" for k, v in REFORM_REASONS.items()),
                              tuple(REFORM_REASONS), nullable=True),
             "min_coverage": C.share("index_ranking.min_predecessor_coverage of the run"),
             "conf_level": C.share("confidence level of the interval"),
         }, keys=("unit_id",), optional=True)

#: small_area.estimate_type (sipas_lib.small_area.ESTIMATE_TYPES).
SMALL_AREA_TYPES = {
    "eblup": "Fay–Herriot EBLUP: γ·direct + (1 − γ)·synthetic",
    "synthetic_no_sample": "the unit has no sample: the regression (synthetic) estimate from its records alone",
    "synthetic_zero_area_variance": "the estimated area variance is 0: every estimate of the type is synthetic",
}
#: sipas_lib.small_area.METHODS / TRANSFORMS
SMALL_AREA_METHODS = ("REML", "ML")
SMALL_AREA_TRANSFORMS = ("identity", "arcsine", "logit")
SMALL_AREA_VARIANCES = ("smoothed", "direct")

register("small_area", "index_ranking",
         "One row per unit of a modelled type: its direct overall SIPAS index and the MODEL-BASED (Fay–Herriot, "
         "sipas_lib.small_area) index that borrows strength from the units' administrative records (on-time "
         "resolution, online share, complaints, apologies, opinions), with the MSE, the shrinkage, diagnostics and "
         "rank confidence sets from the model-based estimates. Written only when the year's administrative tables "
         "are there. The published index is the direct one unless `official` says model.", {
             "unit_id": C.unit_id(),
             "unit_type": C.unit_type(),
             "n": C.count("respondents of the unit (0: no sample)"),
             "direct": C.share("direct (design-based) overall index; empty without sample"),
             "direct_se": C.number("design-based standard error of the direct index", min_value=0),
             "direct_ci_low": C.share("lower limit of the direct index at the run's level (normal)"),
             "direct_ci_high": C.share("upper limit of the direct index at the run's level (normal)"),
             "sampling_variance": C.number("sampling variance D used by the model, on the model scale (smoothed where "
                                           "variance_smoothed)", min_value=0),
             "sampling_variance_direct": C.number("the unit's own design variance on the model scale (delta method); "
                                                  "empty when zero, missing or from too few respondents", min_value=0),
             "variance_smoothed": C.flag("D is a generalized variance function: every unit with a sample when variance "
                                         "= smoothed (pooled deff/(4n) on the arcsine scale); with variance = direct only "
                                         "units whose design variance was zero, missing or from too few respondents "
                                         "(s²/n)"),
             "synthetic": C.number("regression (synthetic) estimate x'β on the model scale"),
             "shrinkage": C.share("γ = A/(A + D): weight of the direct estimate in the model-based one (0: synthetic)"),
             "model_estimate": C.share("model-based (EBLUP) index, back-transformed to the share scale"),
             "model_se": C.number("root MSE of the model-based index on the share scale (delta method)", min_value=0),
             "model_ci_low": C.share("lower limit of the model-based index at the run's level"),
             "model_ci_high": C.share("upper limit of the model-based index at the run's level"),
             "mse": C.number("analytic MSE on the model scale (Datta–Lahiri for REML, with the ML bias term for ML)",
                             min_value=0),
             "mse_bootstrap": C.number("parametric-bootstrap MSE on the model scale, a check of mse (empty: not "
                                       "computed or no sample)", min_value=0),
             "backtransform_bias": C.number("½·h''·mse: approximate bias of the back-transformed estimate as a mean "
                                            "(0 on the identity scale)"),
             "std_residual": C.number("(direct − synthetic)/√(A + D) on the model scale; N(0,1) if the model holds"),
             "estimate_type": C.text("; ".join(f"{k} = {v}" for k, v in SMALL_AREA_TYPES.items()),
                                     tuple(SMALL_AREA_TYPES)),
             "model_estimate_benchmarked": C.share("model-based index × the type's benchmark ratio (ratio "
                                                   "benchmarking to the direct city figure)"),
             "model_rank": C.integer("rank of the model-based index in the unit type (MODEL-BASED)", nullable=True),
             "model_rank_ci_low": C.integer("best rank of the simultaneous confidence set from the model-based "
                                            "estimates and their MSE matrix", nullable=True),
             "model_rank_ci_high": C.integer("worst rank of that set", nullable=True),
             "direct_rank": C.integer("rank of the direct index among the same units (every unit with a sample, "
                                      "below the publication minimum too), for comparison", nullable=True),
             "direct_rank_ci_low": C.integer("best rank of the simultaneous set from the direct indices and their "
                                             "design covariance, same units", nullable=True),
             "direct_rank_ci_high": C.integer("worst rank of that set", nullable=True),
             "method": C.text("estimator of the area variance", SMALL_AREA_METHODS),
             "transform": C.text("scale of the model", SMALL_AREA_TRANSFORMS),
             "variance": C.text("sampling variances of the model (index_ranking.small_area_variance)",
                                SMALL_AREA_VARIANCES),
             "official": C.text("which index the run publishes (index_ranking.use_model_for_ranks)",
                                ("direct", "model")),
             "conf_level": C.share("confidence level of the intervals and rank sets"),
         }, keys=("unit_id",), optional=True)

register("small_area_model", "index_ranking",
         "One row per modelled unit type × model term: the Fay–Herriot regression coefficients with their standard "
         "errors, the area variance, and the benchmarking check (model-based indices aggregated with the units' "
         "weighted populations against the direct city index of the type).", {
             "unit_type": C.unit_type(),
             "term": C.text("intercept or covariate (sipas_lib.small_area.COVARIATES)"),
             "estimate": C.number("coefficient on the model scale"),
             "se": C.number("standard error of the coefficient", min_value=0),
             "z": C.number("estimate / se"),
             "p_value": C.share("two-sided p-value (normal)"),
             "area_variance": C.number("REML/ML variance A of the area effects (0: all estimates synthetic)",
                                       min_value=0),
             "n_areas": C.count("units with a sample in the model"),
             "n_synthetic": C.count("units with a synthetic estimate"),
             "n_smoothed": C.count("units whose own design variance was zero, missing or from too few respondents "
                                   "(smoothed under either variance option)"),
             "gvf_deff": C.number("pooled (median) design effect of the smoothed variances deff/(4n) (empty: "
                                  "variance = direct)", min_value=0, nullable=True),
             "city_direct": C.share("direct city index of the unit type"),
             "city_model": C.share("model-based indices aggregated with the units' weighted populations"),
             "benchmark_ratio": C.number("city_direct / city_model", min_value=0),
             "ratio_benchmarked": C.flag("the model-based estimates were multiplied by benchmark_ratio"),
             "mse_bootstrap_ratio": C.number("median over units of bootstrap MSE / analytic MSE", min_value=0),
             "method": C.text("estimator of the area variance", SMALL_AREA_METHODS),
             "transform": C.text("scale of the model", SMALL_AREA_TRANSFORMS),
             "variance": C.text("sampling variances of the model", SMALL_AREA_VARIANCES),
         }, keys=("unit_type", "term"), optional=True)

register("published_context", "index_ranking",
         "National profile only (index_ranking.published_context): one row per new province × predecessor old "
         "province (the 63 provinces merged whole into 34 on 1 July 2025) with the predecessor's latest "
         "published SIPAS up to 2024 (data/published), side by side; plus one `combined` row for a merged "
         "province whose predecessors all have a published value in one common year, with its stated weight.", {
             "unit_id": C.unit_id("new province (units registry)"),
             "row_kind": C.text("`predecessor`: one old province's own figure; `combined`: the predecessors "
                                "combined with `weight`", ("predecessor", "combined")),
             "old_province": C.text("old province as spelled in data/published (combined: the names joined by +)"),
             "n_predecessors": pa.Column("int64", pa.Check.ge(1), description="old provinces merged into the new one"),
             "year": pa.Column("Int64", nullable=True, description="year of the published figure (empty: nothing "
                                                                    "published for this old province up to 2024)"),
             "published": C.share("published SIPAS, share 0–1 (empty when only a rank, or nothing, is published)"),
             "rank": pa.Column("Int64", pa.Check.ge(1), nullable=True,
                               description="published rank among the 63 old provinces (never combined)"),
             "rank_basis": C.text("how the rank is known (data/published/README.md)", nullable=True),
             "weight": C.text("weight of a combined figure (`equal`: no population figures of the old provinces "
                              "are bundled); empty for predecessor rows", ("equal",), nullable=True),
             "source_url": C.text("where the figure was published", nullable=True),
         }, keys=("unit_id", "row_kind", "old_province"), optional=True)
