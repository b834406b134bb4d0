"""Contracts of the tables written by stage ``index_ranking`` (:mod:`sipas_lib.stages.index_ranking`)."""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

register("indices", "index_ranking", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "unit_type": C.text("unit_type", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "ci_low": C.number("ci_low"),
    "ci_high": C.number("ci_high"),
    "n": C.integer("n"),
    "deff": C.number("deff"),
    "n_eff": C.number("n_eff"),
    "measure": C.text("measure", nullable=False),
    "rule": C.text("rule", nullable=False),
    "publishable": C.flag("publishable"),
})

register("city_indices", "index_ranking", "TODO: one row per …", {
    "scope": C.text("scope", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "ci_low": C.number("ci_low"),
    "ci_high": C.number("ci_high"),
    "n": C.integer("n"),
    "deff": C.number("deff"),
    "n_eff": C.number("n_eff"),
    "measure": C.text("measure", nullable=False),
    "rule": C.text("rule", nullable=False),
})

register("ranks", "index_ranking", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "unit_type": C.text("unit_type", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "rank": C.integer("rank", nullable=True),
    "rank_ci_low": C.integer("rank_ci_low", nullable=True),
    "rank_ci_high": C.integer("rank_ci_high", nullable=True),
    "n_better": C.integer("n_better", nullable=True),
    "n_worse": C.integer("n_worse", nullable=True),
    "n_tied": C.integer("n_tied", nullable=True),
    "rank_ci_low_marginal": C.integer("rank_ci_low_marginal", nullable=True),
    "rank_ci_high_marginal": C.integer("rank_ci_high_marginal", nullable=True),
    "in_top_k": C.flag("in_top_k", nullable=True),
    "in_bottom_k": C.flag("in_bottom_k", nullable=True),
    "k_top": C.integer("k_top", nullable=True),
    "eb_estimate": C.number("eb_estimate"),
    "eb_se": C.number("eb_se"),
    "expected_rank": C.number("expected_rank"),
    "n_units": C.integer("n_units", nullable=True),
    "n": C.integer("n"),
    "publishable": C.flag("publishable"),
    "conf_level": C.number("conf_level"),
})

register("priorities", "index_ranking", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "unit_type": C.text("unit_type", nullable=False),
    "code": C.text("code", nullable=False),
    "element": C.text("element", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "n": C.integer("n"),
    "city_estimate": C.number("city_estimate"),
    "gap_to_city": C.number("gap_to_city"),
    "rank_in_unit": C.integer("rank_in_unit"),
    "gap_rank": C.integer("gap_rank"),
    "weakest": C.flag("weakest"),
    "largest_gap": C.flag("largest_gap"),
})

register("targets", "index_ranking", "TODO: one row per …", {
    "scope": C.text("scope", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "ci_low": C.number("ci_low"),
    "ci_high": C.number("ci_high"),
    "n": C.integer("n"),
    "deff": C.number("deff"),
    "n_eff": C.number("n_eff"),
    "measure": C.text("measure", nullable=False),
    "rule": C.text("rule", nullable=False),
    "year": C.integer("year"),
    "target_low": C.number("target_low"),
    "target_high": C.number("target_high"),
    "target_source": C.text("target_source", nullable=False),
    "gap": C.number("gap"),
    "status": C.text("status", nullable=False),
    "unit_id": C.text("unit_id", nullable=True),
    "unit_type": C.text("unit_type", nullable=True),
    "publishable": pa.Column(None, nullable=True, description="publishable"),
})

register("breakdowns", "index_ranking", "TODO: one row per …", {
    "variable": C.text("variable", nullable=False),
    "group": C.text("group", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "ci_low": C.number("ci_low"),
    "ci_high": C.number("ci_high"),
    "n": C.integer("n"),
    "deff": C.number("deff"),
    "n_eff": C.number("n_eff"),
    "measure": C.text("measure", nullable=False),
    "rule": C.text("rule", nullable=False),
})

register("key_drivers", "index_ranking", "TODO: one row per …", {
    "element": C.text("element", nullable=False),
    "coef": C.number("coef"),
    "se": C.number("se"),
    "p_value": C.number("p_value"),
    "odds_ratio": C.number("odds_ratio"),
    "std_coef": C.number("std_coef"),
    "importance": C.number("importance"),
    "performance": C.number("performance"),
    "quadrant": C.text("quadrant", nullable=False),
    "model": C.text("model", nullable=False),
    "n": C.integer("n"),
})

register("yoy", "index_ranking", "TODO: one row per …", {
    "unit_id": C.text("unit_id", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate_prev": C.number("estimate_prev"),
    "se_prev": C.number("se_prev"),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "change": C.number("change"),
    "change_se": C.number("change_se"),
    "change_ci_low": C.number("change_ci_low"),
    "change_ci_high": C.number("change_ci_high"),
    "z": C.number("z"),
    "p_value": C.number("p_value"),
    "significant": C.flag("significant", nullable=True),
    "rank_prev": C.integer("rank_prev", nullable=True),
    "rank": C.integer("rank", nullable=True),
    "rank_change": C.integer("rank_change", nullable=True),
    "unit_type": C.text("unit_type", nullable=False),
})

register("city_yoy", "index_ranking", "TODO: one row per …", {
    "scope": C.text("scope", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "estimate_prev": C.number("estimate_prev"),
    "se_prev": C.number("se_prev"),
    "estimate": C.number("estimate"),
    "se": C.number("se"),
    "change": C.number("change"),
    "change_se": C.number("change_se"),
    "change_ci_low": C.number("change_ci_low"),
    "change_ci_high": C.number("change_ci_high"),
    "z": C.number("z"),
    "p_value": C.number("p_value"),
    "significant": C.flag("significant", nullable=True),
})
