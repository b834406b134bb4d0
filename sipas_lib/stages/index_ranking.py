"""Stage 50: satisfaction indices, league tables with rank confidence sets, targets, priorities.

Stages layer. :func:`run` rebuilds the year's design from what the weighting stage saved
(:func:`sipas_lib.stages.weighting.load_design`: the same weights, strata, PSUs, fpc and
calibration as stage 30, whatever ``-p weighting.*`` settings the run used) and computes
everything notebook ``50_index_ranking`` shows:

* criterion, element and overall indices per unit (``indices``) and for the city (``city_indices``),
  aggregated with the named rule ``index_ranking.rule`` (:mod:`sipas_lib.index`), with the
  ``publishable`` flag (``common.min_publish_n`` respondents);
* league tables with simultaneous and marginal rank confidence sets, top/bottom-k sets
  (``index_ranking.k_top``) and the empirical-Bayes companion (``ranks``); pairwise
  better/worse/tied verdicts (``rank_pairs``). A league is a unit type, or a unit type within a
  province when the units span several provinces (``index_ranking.league_by``, :func:`unit_leagues`:
  the communes of the whole country are ranked within their province); funnel-plot positions and control limits
  (``funnel_points``, ``funnel_limits``);
* the plan 143/KH-UBND targets (``targets``), each unit's weakest criteria (``priorities``),
  the index by respondent group (``breakdowns``), the key-driver model (``key_drivers``);
* with ``index_ranking.previous_results`` (last year's ``results/`` folder), year-on-year
  changes for units (``yoy``) and the city (``city_yoy``);
* with the year's administrative tables, model-based (Fay–Herriot) indices next to the direct
  ones, borrowing strength from each unit's records (``small_area``, ``small_area_model``,
  :func:`small_area_table`; the ``index_ranking.small_area_*`` settings). The published index
  stays the direct one unless ``index_ranking.use_model_for_ranks``.

Every interval is at ``common.level`` (no fixed 95 %). Small samples never produce confident
claims: rows below ``common.min_publish_n`` or with a standard error of zero carry Wilson score
intervals on the effective sample size (:func:`sipas_lib.index.small_sample_intervals`), and the
year-on-year tables give no significance verdict for them (``reason`` says why). Units that
weighting left out (no usable questionnaire) are listed in ``ranks`` without a rank, with their
reason. The random draws of the rank confidence sets use ``common.seed`` and
``index_ranking.n_draws``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sipas_lib import crosswalk as xw
from sipas_lib import index as ix
from sipas_lib import published as pb
from sipas_lib import ranking as rk
from sipas_lib import schemas
from sipas_lib.config import PACKAGE_DIR, RunPaths
from sipas_lib.instrument import Instrument, load_instrument
from sipas_lib.settings import Settings, load_run_settings
from sipas_lib.stages import StageError
from sipas_lib.units import province_of

STAGE = "index_ranking"
#: The district form holds every criterion of both forms (c01-c18) and the local-governance items
#: (lg1-lg8) of the districts; department rows simply have no lg answers (their rows are dropped).
INSTRUMENT = "hanoi_pl5_district"
#: Criteria named per unit as the ones to improve.
N_WEAKEST = 3
#: Respondent variables of the breakdowns (those present in the data are used).
BREAKDOWN_VARIABLES = ("gender", "age_group", "education", "channel", "field")
#: Unit types that are ranked against each other (each type separately).
RANKED_TYPES = ("department", "district", "commune", "ward", "province")
#: ``index_ranking.league_by``: who is ranked against whom (:func:`unit_leagues`).
LEAGUE_BY = ("auto", "unit_type", "province_unit_type")
#: Most ranked units in one league. The simultaneous and marginal sets cost n_draws x units^2 per
#: step-down pass (bench/bench_ranking.py: about 2.3 CPU-s for a league of 170 units and 10,000 draws, so
#: about 30 CPU-s at 600); one league of the country's 2,634 communes would cost 240 times that of 170 units,
#: 10 CPU-minutes or more, with a pairs table of 7 million rows, and a commune is rated against its own
#: province's communes anyway.
MAX_LEAGUE_UNITS = 600
#: Most units a one-row-per-unit chart or table of notebook 50 shows (:func:`chart_units`). A row is about
#: 0.2 in, so 150 rows are two printed pages, the most a reader scans; the demo's largest such chart (all 141
#: units against the plan's target) stays whole, the country's 2,634 communes do not.
MAX_CHART_UNITS = 150
#: Control limits of the funnel plot besides the run's level (Spiegelhalter's "3 sigma").
FUNNEL_OUTER_LEVEL = 0.998
#: Local unit types after the 2025 reform, and the legacy local type (pre-2025 districts) they replaced.
LOCAL_TYPES = ("commune", "ward")
LEGACY_LOCAL_TYPE = "district"
#: The crosswalk across the reform when ``index_ranking.crosswalk`` is empty: Hà Nội's 30 districts ->
#: 126 communes (area shares) and the merged departments.
DEFAULT_CROSSWALK = PACKAGE_DIR / "registry" / "hanoi_crosswalk_2025.csv"


@dataclass(frozen=True)
class IndexRankingTables:
    """The result tables of stage 50 (each also written to ``results/<name>.parquet``).

    ``yoy``/``city_yoy`` are ``None`` without a previous year, ``yoy_reform`` also when the units
    are the same both years (otherwise it compares the reshaped units with their predecessors), ``key_drivers`` when the model
    cannot be fitted; ``skipped`` says why (table name -> message), ``national`` is the
    province's path in the published national SIPAS (not a run result: published figures).
    """

    indices: pd.DataFrame
    city_indices: pd.DataFrame
    ranks: pd.DataFrame
    rank_pairs: pd.DataFrame
    funnel_points: pd.DataFrame
    funnel_limits: pd.DataFrame
    targets: pd.DataFrame
    priorities: pd.DataFrame
    breakdowns: pd.DataFrame
    key_drivers: pd.DataFrame | None
    yoy: pd.DataFrame | None
    city_yoy: pd.DataFrame | None
    n_respondents: int
    small_area: pd.DataFrame | None = None
    small_area_model: pd.DataFrame | None = None
    yoy_reform: pd.DataFrame | None = None
    published_context: pd.DataFrame | None = None  # national profile: predecessors' published SIPAS
    skipped: Mapping[str, str] = field(default_factory=dict)

    def written(self) -> dict[str, pd.DataFrame]:
        """Name -> table of every result this run wrote."""
        names = schemas.stage_outputs(STAGE, main_only=False)
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# ------------------------------------------------------------------------------------------------
# the steps (pure functions of tables; run() strings them together)
# ------------------------------------------------------------------------------------------------
def unit_indices(design, instrument: Instrument, *, rule: str, level: float, min_n: int) -> pd.DataFrame:
    """Indices per unit (``indices``): :func:`sipas_lib.index.satisfaction_indices` by ``unit_id``.

    Rows without respondents are dropped (lg items of departments); ``publishable`` = the unit's
    overall index has at least ``min_n`` respondents; small-sample rows get Wilson intervals.
    """
    out = ix.satisfaction_indices(design, instrument, by="unit_id", rule=rule, level=level)
    out = out[out["n"] > 0].reset_index(drop=True)
    unit_n = out.loc[out["level"] == "overall"].set_index("unit_id")["n"]
    out = ix.small_sample_intervals(out, level=level, min_n=min_n)
    out["publishable"] = out["unit_id"].map(unit_n).fillna(0).to_numpy() >= min_n
    return out


def city_figures(design, instrument: Instrument, *, rule: str, level: float, min_n: int) -> pd.DataFrame:
    """City-wide indices per unit type and for all units (``city_indices``)."""
    out = ix.city_indices(design, instrument, rule=rule, level=level)
    out = out[out["n"] > 0].reset_index(drop=True)
    return ix.small_sample_intervals(out, level=level, min_n=min_n)


def unit_leagues(units: pd.DataFrame, province: pd.Series | None, league_by: str = "auto") -> pd.DataFrame:
    """The league each unit is ranked in: ``unit_id, province_id, league``.

    ``units`` has ``unit_id, unit_type``; ``province`` maps unit id -> province id
    (:func:`sipas_lib.units.province_of` of the run's registry; ``None`` without one). With
    ``league_by = "unit_type"`` a league is a unit type (``league`` = the type, e.g. ``commune``);
    with ``"province_unit_type"`` it is a unit type within a province (``P01:commune``; a unit with
    no province, e.g. a province itself, stays in its type's league); ``"auto"`` chooses the
    latter when the units span more than one province, so a city's survey keeps one league per type.
    """
    if league_by not in LEAGUE_BY:
        raise StageError(f"index_ranking.league_by = {league_by!r}: choose one of {list(LEAGUE_BY)}")
    ids = units["unit_id"].astype(str)
    where = ids.map(province) if province is not None else pd.Series(np.nan, index=units.index, dtype=object)
    if league_by == "province_unit_type" and province is None:
        raise StageError("index_ranking.league_by = 'province_unit_type' needs the units registry (results/units "
                         "of stage 20), which this run does not have")
    by_province = league_by == "province_unit_type" or (league_by == "auto" and where.dropna().nunique() > 1)
    kind = units["unit_type"].astype(str)
    league = (where.astype(object) + ":" + kind).where(where.notna() & by_province, kind) if by_province else kind
    return pd.DataFrame({"unit_id": ids.to_numpy(), "province_id": pd.array(where.to_numpy(), dtype="string"),
                         "league": league.to_numpy(dtype=str)})


def league_tables(indices: pd.DataFrame, cov: pd.DataFrame, excluded: pd.DataFrame, *, level: float,
                  min_n: int, k_top: int, n_draws: int, seed: int | None, province: pd.Series | None = None,
                  league_by: str = "auto", pairs: bool = False) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Ranks per league with confidence sets (``ranks``), from the units' overall indices.

    :func:`sipas_lib.ranking.rank_table` by league (:func:`unit_leagues` with ``province`` and
    ``league_by``), each league with its block of the design covariance ``cov`` of the overall
    indices; adds each unit's interval at ``level`` (``ci_low``, ``ci_high``, ``ci_method`` from
    ``indices``) and ``not_ranked_reason``: ``below_min_n``, ``no_estimate``, or for the units
    weighting left out (``excluded``: ``unit_id, unit_type, reason``) their reason there
    (``no_responses``, ``all_blank``). With ``pairs`` also the better/worse/tied verdict of every
    ordered pair of a league (``rank_pairs``), from the same rejections as the simultaneous sets.

    Raises :class:`StageError` naming ``index_ranking.league_by`` when a league would have more
    than :data:`MAX_LEAGUE_UNITS` ranked units.
    """
    overall = indices.loc[indices["level"] == "overall"].reset_index(drop=True)
    left_out = excluded.loc[~excluded["unit_id"].isin(overall["unit_id"])]
    leagues = unit_leagues(pd.concat([overall[["unit_id", "unit_type"]], left_out[["unit_id", "unit_type"]]],
                                     ignore_index=True),
                           province, league_by)
    overall = overall.merge(leagues, on="unit_id", how="left", validate="1:1")
    ranked = overall.loc[(overall["n"] >= min_n) & overall["estimate"].notna() & overall["se"].notna(), "league"]
    sizes = ranked.value_counts()
    if len(sizes) and sizes.iloc[0] > MAX_LEAGUE_UNITS:
        raise StageError(
            f"index_ranking.league_by = {league_by!r}: league {sizes.index[0]!r} has {sizes.iloc[0]:,} ranked units; "
            f"rank confidence sets cost index_ranking.n_draws x units² per step, so at most {MAX_LEAGUE_UNITS} units "
            "are ranked in one league. Set index_ranking.league_by to province_unit_type (or auto) to rank each unit "
            "within its province.")
    ranks, verdicts = rk.rank_table(overall, by="league", cov=cov, level=level, k_top=k_top, min_n=min_n,
                                    n_boot=n_draws, seed=seed, pairs=True)
    ranks = ranks.merge(overall[["unit_id", "unit_type", "province_id", "ci_low", "ci_high", "ci_method"]],
                        on="unit_id", how="left")
    no_estimate = ranks["estimate"].isna() | ranks["se"].isna()
    ranks["not_ranked_reason"] = pd.array(
        np.where(ranks["rank"].notna(), None, np.where(no_estimate, "no_estimate", "below_min_n")), dtype="string")
    if len(left_out):
        rows = pd.DataFrame({"unit_id": left_out["unit_id"].to_numpy(), "unit_type": left_out["unit_type"].to_numpy(),
                             "n": 0, "publishable": False, "not_ranked_reason": left_out["reason"].to_numpy(),
                             "conf_level": level})
        rows = rows.merge(leagues, on="unit_id", how="left")
        ranks = pd.concat([ranks, rows], ignore_index=True)
        ranks["not_ranked_reason"] = ranks["not_ranked_reason"].astype("string")
    for col in ("in_top_k", "in_bottom_k"):
        ranks[col] = ranks[col].astype("boolean")
    for col in ("rank", "rank_ci_low", "rank_ci_high", "n_better", "n_worse", "n_tied", "rank_ci_low_marginal",
                "rank_ci_high_marginal", "k_top", "n_units"):
        ranks[col] = ranks[col].astype("Int64")
    ranks["n"] = ranks["n"].astype("int64")
    ranks["publishable"] = ranks["publishable"].astype(bool)
    ranks["province_id"] = ranks["province_id"].astype("string")
    ranks["league"] = ranks["league"].astype(str)
    ranks = ranks.sort_values(["unit_type", "league", "rank", "unit_id"], kind="stable",
                              na_position="last").reset_index(drop=True)
    return (ranks, pair_table(verdicts, ranks)) if pairs else ranks


def chart_units(table: pd.DataFrame, limit: int = MAX_CHART_UNITS) -> pd.DataFrame:
    """The rows a one-row-per-unit chart or table shows: all of ``table`` up to ``limit`` rows, else the
    ``limit // 2`` with the highest and the ``limit // 2`` with the lowest ``estimate`` (best first)."""
    if len(table) <= limit:
        return table
    order = table.sort_values("estimate", ascending=False, kind="stable")
    return pd.concat([order.head(limit // 2), order.tail(limit // 2)])


def league_summary(ranks: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per league with ranked units, in the league table's order: ``league, unit_type, province_id,
    n_units, first`` (the unit ranked first), ``median_width`` (median of ``rank_ci_high - rank_ci_low + 1``
    over the simultaneous sets), ``tied_share`` (share of the league's ordered pairs that are ``tied``;
    NaN for a league of one), ``n_top`` (units in the top-``k_top`` set) and ``k_top``.

    The notebook's view of a run with many leagues, instead of one pair-by-pair matrix per league.
    """
    ranked = ranks.loc[ranks["rank"].notna()]
    width = (ranked["rank_ci_high"] - ranked["rank_ci_low"] + 1).astype(float)
    out = ranked.assign(width=width, top=ranked["in_top_k"].astype(bool)).groupby("league", sort=False).agg(
        unit_type=("unit_type", "first"), province_id=("province_id", "first"), n_units=("unit_id", "size"),
        first=("unit_id", "first"), median_width=("width", "median"), n_top=("top", "sum"), k_top=("k_top", "first"))
    out["tied_share"] = pairs["relation"].eq("tied").groupby(pairs["league"]).mean().reindex(out.index)
    return out.reset_index()


def pair_table(verdicts: pd.DataFrame, ranks: pd.DataFrame) -> pd.DataFrame:
    """``rank_pairs`` from :func:`sipas_lib.ranking.rank_table`'s verdicts (``league, unit, other, relation``):
    with each unit's type, rows in the league table's order (unit, then the unit compared with)."""
    if verdicts.empty:
        return _empty("rank_pairs")
    position = pd.Series(np.arange(len(ranks)), index=ranks["unit_id"].to_numpy())
    out = verdicts.rename(columns={"unit": "unit_id"}).astype({"unit_id": str, "other": str})
    out["unit_type"] = out["unit_id"].map(ranks.set_index("unit_id")["unit_type"])
    order = np.lexsort((out["other"].map(position).to_numpy(), out["unit_id"].map(position).to_numpy()))
    return out.iloc[order][list(schemas.contract("rank_pairs").columns)].reset_index(drop=True)


def funnel_tables(ranks: pd.DataFrame, indices: pd.DataFrame, city: pd.DataFrame, *,
                  level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Funnel-plot positions and control limits per unit type (``funnel_points``, ``funnel_limits``).

    Centre: the city index of the unit type; the binomial variance is inflated by the median
    design effect of the type's overall indices (at least 1). Limits at the run's ``level`` and at
    99.8 % (:func:`sipas_lib.ranking.funnel_limits`), positions by
    :func:`sipas_lib.ranking.funnel_points` at the run's level.
    """
    points, limits = [], []
    for unit_type, g in ranks.loc[ranks["estimate"].notna() & (ranks["n"] > 0)].groupby("unit_type", sort=True):
        hit = city.loc[(city["scope"] == unit_type) & (city["level"] == "overall")]
        if hit.empty:
            continue
        centre = float(hit["estimate"].iloc[0])
        if not 0 < centre < 1:
            continue  # everybody (or nobody) satisfied: no binomial funnel
        deffs = indices.loc[(indices["level"] == "overall") & (indices["unit_type"] == unit_type), "deff"]
        deff = float(max(1.0, np.nan_to_num(deffs.median(), nan=1.0)))
        n_hi = max(int(g["n"].max() * 1.3), 10)
        n_lo = min(max(5, int(g["n"].min() * 0.7)), n_hi - 1)
        lim = rk.funnel_limits(centre, n_hi, n_min=n_lo, levels=(level, FUNNEL_OUTER_LEVEL), deff=deff)
        limits.append(lim.assign(unit_type=unit_type))
        pts = rk.funnel_points(g, centre=centre, deff=deff, level=level)
        points.append(pts.rename(columns={"unit": "unit_id"}).assign(unit_type=unit_type, deff=deff))
    if not points:
        return _empty("funnel_points"), _empty("funnel_limits")
    pts = pd.concat(points, ignore_index=True)
    pts["n"] = pts["n"].astype("int64")
    lim = pd.concat(limits, ignore_index=True)
    lim["n"] = lim["n"].astype("int64")
    return (pts[schemas.contract("funnel_points").columns], lim[schemas.contract("funnel_limits").columns])


def target_table(indices: pd.DataFrame, city: pd.DataFrame, year: int) -> pd.DataFrame:
    """City (overall and element) and unit (overall) indices against the plan 143/KH-UBND target."""
    city_rows = city.loc[city["level"].isin(["overall", "element"])].copy()
    unit_rows = indices.loc[indices["level"] == "overall"].copy()
    unit_rows.insert(0, "scope", "unit")
    out = pd.concat([ix.track_targets(city_rows, year), ix.track_targets(unit_rows, year)], ignore_index=True)
    out["publishable"] = out["publishable"].astype("boolean")
    out["year"] = out["year"].astype("int64")
    return out


def priority_table(indices: pd.DataFrame, city: pd.DataFrame, instrument: Instrument, *,
                   min_n_item: int) -> pd.DataFrame:
    """Each publishable unit's weakest criteria and largest gaps to the city index of its type."""
    published = indices.loc[indices["publishable"]]
    items = published.loc[(published["level"] == "item") & (published["n"] >= min_n_item)]
    if items.empty:
        return _empty("priorities")
    return ix.improvement_priorities(published, city.loc[city["level"] == "item"], instrument=instrument,
                                     n_weakest=N_WEAKEST, min_n=min_n_item)


def breakdown_table(design, instrument: Instrument, *, rule: str, level: float, min_n: int) -> pd.DataFrame:
    """City-wide overall index by respondent group (gender, age, education, channel, field)."""
    present = [v for v in BREAKDOWN_VARIABLES if v in design.data.columns]
    if not present:
        return _empty("breakdowns")
    out = ix.breakdowns(design, instrument, variables=present, rule=rule, levels=("overall",), level=level)
    out = out[out["n"] > 0].reset_index(drop=True)
    return ix.small_sample_intervals(out, level=level, min_n=min_n)


def driver_table(design, instrument: Instrument, city: pd.DataFrame) -> pd.DataFrame:
    """Key-driver model (:func:`sipas_lib.index.key_drivers`) with the city's element indices as performance.

    Raises ``ValueError`` when the model cannot be fitted (too few complete respondents, or an
    outcome that does not vary).
    """
    perf = city.loc[(city["scope"] == "all") & (city["level"] == "element")].set_index("code")["estimate"].to_dict()
    data = design.data.assign(_w=np.asarray(design.w, dtype=float))
    return ix.key_drivers(data, instrument, weights="_w", performance=perf)


def change_tables(indices: pd.DataFrame, ranks: pd.DataFrame, city: pd.DataFrame, previous: Path, *,
                  level: float, min_n: int, same_units: set[str] | None = None
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Year-on-year changes of the units (``yoy``) and the city (``city_yoy``, when last year has it).

    Last year's tables are read with their contracts from ``previous`` (a ``results/`` folder);
    no verdict below ``min_n`` or at SE 0 (:func:`sipas_lib.index.year_on_year`). ``same_units``
    (default: every unit) are the units compared with their own last-year figure; the others were
    created or reshaped by the reform and are compared in ``yoy_reform`` (:func:`reform_table`).
    Across the reform the previous year's ``district`` group is compared with each new local group
    (:func:`legacy_scopes`), and ``scope_prev`` says so.
    """
    prev, prev_ranks, prev_city = _read_previous(previous)
    cur = indices.merge(ranks[["unit_id", "rank"]], on="unit_id", how="left")
    if same_units is not None:
        cur = cur[cur["unit_id"].isin(same_units)]
    if prev_ranks is not None:
        prev = prev.merge(prev_ranks[["unit_id", "rank"]], on="unit_id", how="left")
    yoy = ix.year_on_year(cur, prev, level=level, min_n=min_n)
    yoy = yoy.merge(indices[["unit_id", "unit_type"]].drop_duplicates(), on="unit_id", how="left")
    city_yoy = None
    if prev_city is not None:
        mapped = legacy_scopes(prev_city, set(city["scope"]))
        city_yoy = ix.year_on_year(city, mapped.drop(columns="scope_prev"), keys=["scope", "level", "code"], rank=None,
                                   level=level, min_n=min_n)
        city_yoy = city_yoy.merge(mapped[["scope", "level", "code", "scope_prev"]], on=["scope", "level", "code"],
                                  how="left", validate="one_to_one")
    return yoy, city_yoy


def _read_previous(previous: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Last year's ``indices``, ``ranks`` and ``city_indices`` (the last two optional), through their contracts."""
    try:
        return (schemas.read_result(previous, "indices"), schemas.read_result(previous, "ranks", required=False),
                schemas.read_result(previous, "city_indices", required=False))
    except schemas.ContractError as err:
        raise StageError(f"index_ranking.previous_results = {previous}: {err}") from None


def legacy_scopes(prev_city: pd.DataFrame, scopes: set[str]) -> pd.DataFrame:
    """Last year's city rows with a ``scope_prev`` column; across the reform, the legacy local group
    (:data:`LEGACY_LOCAL_TYPE`, ``district``) is copied to each new local group of this year
    (:data:`LOCAL_TYPES`) that last year did not have, so the by-type comparison goes on.

    The districts and the communes are different levels of government covering the same city:
    the comparison is of the city's local level as a whole, and the report says so.
    """
    out = prev_city.assign(scope_prev=prev_city["scope"])
    prev_scopes = set(prev_city["scope"])
    if LEGACY_LOCAL_TYPE in prev_scopes and LEGACY_LOCAL_TYPE not in scopes:
        legacy = out[out["scope"] == LEGACY_LOCAL_TYPE]
        copies = [legacy.assign(scope=t) for t in LOCAL_TYPES if t in scopes and t not in prev_scopes]
        out = pd.concat([out, *copies], ignore_index=True)
    return out


def load_crosswalk(option: str, paths: RunPaths) -> tuple[pd.DataFrame, Path]:
    """The crosswalk of ``index_ranking.crosswalk`` (a CSV; empty: the shipped Hà Nội file
    :data:`DEFAULT_CROSSWALK`), checked by :func:`sipas_lib.crosswalk.validate_crosswalk`.

    A new unit's rows must share one ``basis``. Raises :class:`StageError` naming the file.
    """
    path = DEFAULT_CROSSWALK if not option else _resolve(option, paths)
    if not path.is_file():
        raise StageError(f"index_ranking.crosswalk = {option!r}: no such file")
    try:
        table = pd.read_csv(path, dtype={"old_unit_id": str, "new_unit_id": str, "basis": str})
        xw.validate_crosswalk(table, where=str(path))
    except (ValueError, pd.errors.ParserError) as err:
        raise StageError(str(err)) from None
    mixed = table.groupby("new_unit_id")["basis"].nunique()
    if (mixed > 1).any():
        raise StageError(f"{path}: the rows of new unit {mixed[mixed > 1].index[0]!r} mix bases; one basis per unit")
    return table[xw.CROSSWALK_COLUMNS].reset_index(drop=True), path


def reshaped_units(current: pd.DataFrame, previous: pd.DataFrame, crosswalk: pd.DataFrame | None) -> set[str]:
    """Units of this year compared across the reform, not with their own last-year figure.

    A unit is reshaped when last year had no unit with its id, or when the crosswalk gives it
    another predecessor than itself (a department that absorbed another keeps its id but not
    its extent). ``current``/``previous``: ``unit_id`` columns of the two years.
    """
    now, before = set(current["unit_id"]), set(previous["unit_id"])
    out = now - before
    if crosswalk is not None:
        rows = crosswalk[crosswalk["new_unit_id"].isin(now & before)]
        identity = (rows["old_unit_id"] == rows["new_unit_id"]) & (rows["share_of_new"] > 1 - 1e-9)
        grown = set(rows.loc[~identity, "new_unit_id"])
        out |= grown
    return out


def previous_covariance(previous: Path, *, rule: str) -> pd.DataFrame | None:
    """Last year's design covariance of the units' overall indices
    (:func:`sipas_lib.index.overall_covariance` on the design its weighting stage saved, rebuilt by
    :func:`sipas_lib.stages.weighting.load_design` from the run folder around ``previous``).

    ``None`` when that design cannot be rebuilt (no ``design.json``, or ``previous`` is not a
    run's ``results/`` folder): the predecessors are then taken as independent.
    """
    from sipas_lib.stages import weighting as weighting_stage

    if previous.name != "results":
        return None
    prev_paths = RunPaths(previous.parent, previous.parent)
    if not weighting_stage.design_path(prev_paths).exists():
        return None
    try:
        design = weighting_stage.load_design(prev_paths)
        return ix.overall_covariance(design, load_instrument(INSTRUMENT), rule=rule)
    except (StageError, ValueError, schemas.ContractError):
        return None


def reform_table(indices: pd.DataFrame, previous: pd.DataFrame, crosswalk: pd.DataFrame, units: set[str],
                 covariance: pd.DataFrame | None, *, level: float, min_n: int, min_coverage: float) -> pd.DataFrame:
    r"""Indicative comparison of each reshaped unit with its predecessors (``yoy_reform``).

    For new unit :math:`c` with old units :math:`d` covering shares :math:`a_{dc}` of it (the
    crosswalk's ``share_of_new``), over the old units with an overall index last year:
    :math:`\hat\theta^{pred}_c = \sum_d w_{dc}\hat\theta_d`, :math:`w_{dc} = a_{dc}/\sum_{d'} a_{d'c}`,
    :math:`SE_{pred} = \sqrt{w_c^\top\Sigma w_c}` with :math:`\Sigma` last year's design covariance
    (``covariance``; its diagonal ``se**2`` when ``None``), and the change
    :math:`\Delta = \hat\theta_c - \hat\theta^{pred}_c` with :math:`SE = \sqrt{SE_c^2 + SE_{pred}^2}` and a
    normal interval at ``level`` (:func:`sipas_lib.crosswalk.predecessor_estimates`,
    :func:`sipas_lib.crosswalk.cross_reform_change`). Withheld (``reason``) when the predecessors
    cover less than ``min_coverage`` of the unit, when it has none, or when the unit has fewer
    than ``min_n`` respondents this year. No significance verdict is ever given.

    Parameters
    ----------
    indices, previous
        This year's and last year's ``indices`` tables.
    crosswalk
        Validated crosswalk (:func:`load_crosswalk`).
    units
        The reshaped units (:func:`reshaped_units`).
    """
    cur = indices.loc[(indices["level"] == "overall") & indices["unit_id"].isin(units),
                      ["unit_id", "unit_type", "n", "estimate", "se"]].drop_duplicates("unit_id")
    old = previous.loc[previous["level"] == "overall", ["unit_id", "unit_type", "estimate", "se"]]
    old = old[np.isfinite(old["estimate"].to_numpy(float)) & np.isfinite(old["se"].to_numpy(float))]
    if covariance is not None:
        old = old[old["unit_id"].isin(covariance.index)]
    cw = crosswalk[crosswalk["new_unit_id"].isin(cur["unit_id"])]
    pred = xw.predecessor_estimates(cw, old[["unit_id", "estimate", "se"]], covariance, min_coverage=min_coverage)
    if pred.empty:
        pred = pd.DataFrame({"new_unit_id": pd.Series(dtype=str), "estimate_pred": pd.Series(dtype=float),
                             "se_pred": pd.Series(dtype=float), "coverage": pd.Series(dtype=float),
                             "n_predecessors": pd.Series(dtype="int64"), "predecessors": pd.Series(dtype=str),
                             "withheld": pd.Series(dtype=bool)})
    out = xw.cross_reform_change(cur[["unit_id", "estimate", "se"]], pred, level=level)
    out = out.merge(cur[["unit_id", "unit_type", "n"]], on="unit_id", how="left", validate="one_to_one")
    out["predecessors"] = out["predecessors"].fillna("")
    out["n_predecessors"] = out["n_predecessors"].fillna(0).astype("int64")
    out["coverage"] = out["coverage"].fillna(0.0).astype(float)
    old_type = dict(zip(old["unit_id"], old["unit_type"]))
    pred_types = [sorted({old_type[d] for d in p.split(",") if d}) for p in out["predecessors"]]
    out["predecessor_types"] = [",".join(t) for t in pred_types]
    out["comparison"] = [("none" if not t else "merged" if t == [u] else "other_level")
                         for t, u in zip(pred_types, out["unit_type"])]
    basis = cw.drop_duplicates("new_unit_id").set_index("new_unit_id")["basis"]
    out["basis"] = pd.array(out["unit_id"].map(basis), dtype="string")
    reason = np.select([out["n_predecessors"] == 0, out["coverage"] < min_coverage, out["n"] < min_n],
                       ["no_predecessor", "low_coverage", "below_min_n"], default="")
    out["reason"] = pd.array([r or None for r in reason], dtype="string")
    out["withheld"] = out["reason"].notna().to_numpy()
    for col in ("change", "change_se", "change_ci_low", "change_ci_high"):
        out.loc[out["withheld"], col] = np.nan
    out["se_pred_method"] = pd.array(
        np.where(out["estimate_pred"].isna(), None,
                 "old_design_covariance" if covariance is not None else "independent_units"), dtype="string")
    out["min_coverage"] = float(min_coverage)
    out["conf_level"] = float(level)
    cols = list(schemas.contract("yoy_reform").columns)
    return out[cols].sort_values(["unit_type", "unit_id"], kind="stable").reset_index(drop=True)


def national_path(province: str = "Ha Noi") -> pd.DataFrame:
    """The province in the published national SIPAS: index, change, rank, rank change and target per year.

    From ``data/published`` (:mod:`sipas_lib.published`); a rank change is computed only between
    two consecutive published years. Columns ``year, sipas_pct, change, rank, rank_change,
    target_low, source_url`` (``sipas_pct`` and ``change`` in percent / points as published,
    ``target_low`` a share).
    """
    path = pb.province_path(province)
    tracked = ix.track_targets(path.assign(estimate=path["sipas_pct"] / 100), year="year")
    changes = []
    years = path["year"].tolist()
    for y0, y1 in zip(years[:-1], years[1:]):
        if y1 == y0 + 1:
            yy = ix.year_on_year(pb.published_year_table(y1), pb.published_year_table(y0), keys=["unit_id"])
            changes.append(yy.loc[yy["unit_id"] == province, ["change", "rank_change"]].assign(year=y1))
    change = (pd.concat(changes, ignore_index=True) if changes
              else pd.DataFrame({"year": pd.Series(dtype=int), "change": pd.Series(dtype=float),
                                 "rank_change": pd.Series(dtype="Int64")}))
    out = tracked.drop(columns=[c for c in ("rank_change", "change") if c in tracked.columns])
    out = out.merge(change, on="year", how="left")
    return out[["year", "sipas_pct", "change", "rank", "rank_change", "target_low", "source_url"]]


# ------------------------------------------------------------------------------------------------
# small-area estimates (issue 14): Fay–Herriot with the units' administrative records
# ------------------------------------------------------------------------------------------------
def _sets_by_league(estimates: pd.Series, cov: pd.DataFrame, league: np.ndarray, *, level: float, n_draws: int,
                    seed: int | None) -> pd.DataFrame:
    """Simultaneous rank confidence sets within each league (``league`` aligned with ``estimates``)."""
    parts = []
    for name in pd.unique(league):
        ids = estimates.index[league == name]
        parts.append(rk.rank_confidence_sets(estimates.loc[ids], cov.loc[ids, ids], level=level, n_boot=n_draws,
                                             seed=seed))
    return pd.concat(parts, ignore_index=True)


def small_area_table(indices: pd.DataFrame, city: pd.DataFrame, excluded: pd.DataFrame,
                     covariates: pd.DataFrame, frame_weights: pd.Series, *, terms: list[str], method: str,
                     transform: str, ratio_benchmark: bool, level: float, n_boot: int, n_draws: int,
                     seed: int | None, official: str = "direct", direct_cov: pd.DataFrame | None = None,
                     variance: str = "smoothed", leagues: pd.Series | None = None,
                     ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Model-based (Fay–Herriot) indices per unit next to the direct ones (``small_area``, ``small_area_model``).

    One model per ranked unit type (:func:`sipas_lib.small_area.fay_herriot`): the direct overall
    index and its design variance (``variance``: ``"smoothed"`` every unit's sampling variance from
    the pooled-design-effect GVF, ``"direct"`` each unit's own; :data:`sipas_lib.small_area.VARIANCES`),
    the covariates ``terms`` from ``covariates``
    (:func:`sipas_lib.small_area.admin_covariates`). Units weighting left out (``excluded``) get
    the synthetic estimate. Adds the parametric-bootstrap MSE (``n_boot`` draws, 0 = none), the
    benchmarking check against the city's direct index of the type (aggregated with
    ``frame_weights``, the units' weighted population; ``ratio_benchmark`` multiplies the
    estimates by the ratio) and rank confidence sets from the model-based estimates and their MSE
    matrix (MODEL-BASED; the league table ``ranks`` stays direct), and for comparison the direct
    rank sets over the same units (those with a sample, below the publication minimum too; the design
    covariance ``direct_cov`` of the overall indices, or independent units without it). Rank sets,
    model-based and direct, are taken within each league of the league table (``leagues``: unit id ->
    league, as ``ranks.league``; one league per unit type without it), so a national run ranks a commune
    among its province's communes, as ``ranks`` does. Returns the two tables and the unit types that
    could not be modelled (type -> reason).
    """
    from sipas_lib import small_area as sa

    overall = indices.loc[indices["level"] == "overall", ["unit_id", "unit_type", "estimate", "se", "n"]]
    left_out = excluded.loc[~excluded["unit_id"].isin(overall["unit_id"]), ["unit_id", "unit_type"]]
    areas = pd.concat([overall, left_out.assign(estimate=np.nan, se=np.nan, n=0)], ignore_index=True)
    areas = areas.merge(covariates, on="unit_id", how="left")
    rows, models, skipped = [], [], {}
    rng = np.random.default_rng(seed)
    for unit_type, g in areas.loc[areas["unit_type"].isin(RANKED_TYPES)].groupby("unit_type", sort=True):
        g = g.loc[g[terms].notna().all(axis=1)].reset_index(drop=True)
        try:
            fit = sa.fay_herriot(g, terms, method=method, transform=transform, level=level, variance=variance)
        except ValueError as err:
            skipped[str(unit_type)] = str(err)
            continue
        t = fit.table.assign(unit_type=unit_type)
        sampled = (t["estimate_type"] != "synthetic_no_sample").to_numpy()
        t["mse_bootstrap"] = np.nan
        if n_boot > 0:
            X = sa.design_matrix(g.loc[sampled], terms)
            t.loc[sampled, "mse_bootstrap"] = sa.bootstrap_mse(fit, X, n_boot=n_boot, seed=rng)
        hit = city.loc[(city["scope"] == unit_type) & (city["level"] == "overall"), "estimate"]
        city_direct = float(hit.iloc[0]) if len(hit) else float("nan")
        aggregate, ratio = sa.benchmark(t, frame_weights, city_direct)
        t["model_estimate_benchmarked"] = np.clip(t["model_estimate"] * ratio, 0, 1) if np.isfinite(ratio) \
            else np.nan
        if ratio_benchmark and np.isfinite(ratio):
            for col in ("model_estimate", "model_ci_low", "model_ci_high"):
                t[col] = np.clip(t[col] * ratio, 0, 1)
            t["model_se"] = t["model_se"] * ratio
        # rank sets from the model-based estimates: the MSE matrix carried to the share scale (delta method)
        scale = (t["model_se"] / np.sqrt(t["mse"])).to_numpy(float)
        cov_share = fit.mse_cov.to_numpy() * np.outer(scale, scale)
        ids = t["unit_id"].to_numpy()
        league = (t["unit_id"].map(leagues) if leagues is not None else pd.Series(unit_type, index=t.index))
        league = league.fillna(str(unit_type)).to_numpy(str)
        ranked_in = dict(level=level, n_draws=n_draws, seed=seed)
        sets = _sets_by_league(pd.Series(t["model_estimate"].to_numpy(float), index=ids),
                               pd.DataFrame(cov_share, index=ids, columns=ids), league, **ranked_in)
        t = t.merge(sets[["unit", "rank", "rank_ci_low", "rank_ci_high"]].rename(columns={
            "unit": "unit_id", "rank": "model_rank", "rank_ci_low": "model_rank_ci_low",
            "rank_ci_high": "model_rank_ci_high"}), on="unit_id", how="left")
        s = t.loc[sampled]
        est = pd.Series(s["direct"].to_numpy(float), index=s["unit_id"].to_numpy())
        cov_d = (direct_cov.loc[est.index, est.index] if direct_cov is not None
                 else pd.DataFrame(np.diag(s["direct_se"].to_numpy(float) ** 2), index=est.index, columns=est.index))
        direct_sets = _sets_by_league(est, cov_d, league[sampled], **ranked_in)
        t = t.merge(direct_sets[["unit", "rank", "rank_ci_low", "rank_ci_high"]].rename(columns={
            "unit": "unit_id", "rank": "direct_rank", "rank_ci_low": "direct_rank_ci_low",
            "rank_ci_high": "direct_rank_ci_high"}), on="unit_id", how="left")
        rows.append(t)
        models.append(fit.coefficients.assign(
            unit_type=unit_type, area_variance=fit.area_variance, n_areas=fit.n_areas,
            n_synthetic=int((t["estimate_type"] != "eblup").sum()),
            # units whose own design variance was unusable (zero, missing, too few respondents): smoothed either way
            n_smoothed=int((sampled & t["sampling_variance_direct"].isna()).sum()), gvf_deff=fit.gvf_deff,
            city_direct=city_direct,
            city_model=aggregate, benchmark_ratio=ratio, ratio_benchmarked=bool(ratio_benchmark),
            mse_bootstrap_ratio=float(np.nanmedian(t["mse_bootstrap"] / t["mse"])) if n_boot > 0 else np.nan))
    if not rows:
        return _empty("small_area"), _empty("small_area_model"), skipped
    out = pd.concat(rows, ignore_index=True).assign(method=method, transform=transform, official=official,
                                                    conf_level=level, variance=variance)
    for col in ("model_rank", "model_rank_ci_low", "model_rank_ci_high", "direct_rank", "direct_rank_ci_low",
                "direct_rank_ci_high"):
        out[col] = out[col].astype("Int64")
    out["n"] = out["n"].astype("int64")
    model = pd.concat(models, ignore_index=True).assign(method=method, transform=transform, variance=variance)
    model["n_areas"] = model["n_areas"].astype("int64")
    return (out[schemas.contract("small_area").columns].sort_values(["unit_type", "unit_id"]).reset_index(drop=True),
            model[schemas.contract("small_area_model").columns], skipped)


def _too_few_areas(indices: pd.DataFrame, excluded: pd.DataFrame, *, n_coefficients: int) -> dict[str, str] | None:
    """Why no ranked unit type can be modelled, when none has more units with a sample than the model's
    ``n_coefficients`` (intercept + covariates; :func:`sipas_lib.small_area.too_few_areas`); ``None`` when one
    may be. Units with a sample: an overall index; left out by weighting: none.

    The count is taken before units without covariates are dropped, so it is an upper bound of the model's m:
    this only skips what :func:`small_area_table` would refuse, and it does so before the administrative
    records are aggregated (seconds a run). On such a year a broken administrative file is therefore not
    reported by stage 50. The types are those :func:`small_area_table` would try (overall indices and left-out
    units of :data:`RANKED_TYPES`), in its order.
    """
    overall = indices.loc[indices["level"].eq("overall") & indices["estimate"].notna() & indices["n"].gt(0),
                          ["unit_id", "unit_type"]]
    kinds = pd.concat([indices.loc[indices["level"].eq("overall"), "unit_type"], excluded["unit_type"]])
    kinds = sorted(set(kinds[kinds.isin(RANKED_TYPES)].astype(str)))
    sampled = overall.groupby(overall["unit_type"].astype(str))["unit_id"].nunique()
    counts = {kind: int(sampled.get(kind, 0)) for kind in kinds}
    from sipas_lib import small_area as sa

    reasons = {kind: sa.too_few_areas(m, n_coefficients) for kind, m in counts.items()}
    if any(reason is None for reason in reasons.values()):
        return None
    return {kind: f"at most {reason}" for kind, reason in reasons.items()}


def _small_area(paths: RunPaths, settings: Settings, design, indices: pd.DataFrame, city: pd.DataFrame,
                excluded: pd.DataFrame, cov: pd.DataFrame, skipped: dict[str, str], *,
                leagues: pd.Series | None = None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Stage 50's small-area step: covariates from the year's administrative tables, then :func:`small_area_table`.

    Optional: without the administrative tables (or no unit type that can be modelled) nothing
    is written and ``skipped["small_area"]`` says why.
    """
    from sipas_lib import admin_records as ar
    from sipas_lib import small_area as sa

    opts = settings.section(STAGE)
    if not opts.get("small_area", True):
        skipped["small_area"] = "index_ranking.small_area is false"
        return None, None
    missing = ar.AdminFiles.in_folder(paths.data_dir).missing()
    if missing:
        skipped["small_area"] = f"no administrative tables in {paths.data_dir}: {', '.join(missing)}"
        return None, None
    terms = list(opts["small_area_covariates"])
    unknown = [t for t in terms if t not in sa.COVARIATES]
    if unknown:
        raise StageError(f"index_ranking.small_area_covariates: unknown {unknown}; choose from {list(sa.COVARIATES)}")
    for key, allowed in (("small_area_method", sa.METHODS), ("small_area_transform", sa.TRANSFORMS),
                         ("small_area_variance", sa.VARIANCES)):
        if opts[key] not in allowed:
            raise StageError(f"index_ranking.{key} = {opts[key]!r}: choose one of {list(allowed)}")
    too_few = _too_few_areas(indices, excluded, n_coefficients=1 + len(terms))
    if too_few is not None:  # no model whatever the covariates: the records are not aggregated (seconds a run)
        skipped.update({f"small_area:{unit_type}": reason for unit_type, reason in too_few.items()})
        skipped["small_area"] = "no unit type could be modelled: " + "; ".join(f"{k}: {v}" for k, v in too_few.items())
        return None, None
    try:
        covariates = sa.admin_covariates(paths.data_dir, settings.year, **ar.engine_options(settings))
    except (ValueError, FileNotFoundError) as err:
        skipped["small_area"] = f"administrative tables of {paths.data_dir}: {err}"
        return None, None
    weights = pd.Series(np.asarray(design.w, float), index=design.data.index).groupby(
        design.data["unit_id"].astype(str).to_numpy()).sum()
    table, model, failed = small_area_table(
        indices, city, excluded, covariates, weights, terms=terms, method=opts["small_area_method"],
        transform=opts["small_area_transform"], ratio_benchmark=bool(opts["small_area_ratio_benchmark"]),
        level=settings.level, n_boot=int(opts["small_area_bootstrap"]), n_draws=int(opts["n_draws"]),
        seed=settings.seed, official="model" if opts["use_model_for_ranks"] else "direct", direct_cov=cov,
        variance=opts["small_area_variance"], leagues=leagues)
    for unit_type, reason in failed.items():
        skipped[f"small_area:{unit_type}"] = reason
    if table.empty:
        skipped["small_area"] = "no unit type could be modelled: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
        return None, None
    return table, model


# ------------------------------------------------------------------------------------------------
# plumbing
# ------------------------------------------------------------------------------------------------
def _empty(name: str) -> pd.DataFrame:
    """An empty table with the contract's columns and dtypes."""
    cols = schemas.contract(name).schema.columns
    return pd.DataFrame({c: pd.Series(dtype=str(col.dtype) if col.dtype is not None else object)
                         for c, col in cols.items()})


def _load_design(paths: RunPaths):
    """The design stage 30 used (weights, strata, PSUs, fpc, calibration), rebuilt from its saved spec."""
    from sipas_lib.stages import weighting as weighting_stage

    return weighting_stage.load_design(paths)


def _excluded_units(paths: RunPaths) -> pd.DataFrame:
    """Units weighting left out, no usable questionnaire (``units_excluded``: ``unit_id, unit_type, reason``)."""
    return schemas.read_result(paths, "units_excluded")[["unit_id", "unit_type", "reason"]]


def _resolve(option: str, paths: RunPaths) -> Path:
    """A path setting: absolute, else relative to the run folder when it exists there, else to the working folder."""
    path = Path(option)
    if not path.is_absolute():
        path = (paths.run_dir / path) if (paths.run_dir / path).exists() else path.resolve()
    return path


def _previous_dir(option: str, paths: RunPaths) -> Path | None:
    if not option:
        return None
    folder = _resolve(option, paths)
    if not folder.is_dir():
        raise StageError(f"index_ranking.previous_results = {option!r}: no such folder")
    return folder


def _changes(indices: pd.DataFrame, ranks: pd.DataFrame, city: pd.DataFrame, previous: Path, paths: RunPaths,
             opts: Mapping, *, level: float, min_n: int, skipped: dict[str, str]):
    """``yoy``, ``city_yoy`` and, when this year's units are not last year's, ``yoy_reform``."""
    prev, _, _ = _read_previous(previous)
    cur_units = indices[["unit_id"]].drop_duplicates()
    crosswalk = None
    if not set(cur_units["unit_id"]) <= set(prev["unit_id"]) or opts.get("crosswalk"):
        crosswalk, _ = load_crosswalk(str(opts.get("crosswalk", "") or ""), paths)
    reshaped = reshaped_units(cur_units, prev, crosswalk)
    same = set(cur_units["unit_id"]) - reshaped
    yoy, city_yoy = change_tables(indices, ranks, city, previous, level=level, min_n=min_n, same_units=same)
    if city_yoy is None:
        skipped["city_yoy"] = f"{previous} has no city_indices table"
    if yoy.empty:
        yoy, skipped["yoy"] = None, "no unit of this year has the same id and extent as last year"
    reform = None
    if reshaped:
        rule = load_run_settings(previous.parent).section(STAGE).get("rule", opts["rule"])
        cov = previous_covariance(previous, rule=rule)
        if cov is None:
            skipped["yoy_reform_covariance"] = (f"the design of {previous.parent} could not be rebuilt: predecessors "
                                                "taken as independent")
        reform = reform_table(indices, prev, crosswalk, reshaped, cov, level=level, min_n=min_n,
                              min_coverage=float(opts.get("min_predecessor_coverage", 0.5)))
    else:
        skipped["yoy_reform"] = "the units are the same both years"
    return yoy, city_yoy, reform


def published_context(opts, year: int, ranks: pd.DataFrame, skipped: dict) -> pd.DataFrame | None:
    """National profile (``index_ranking.published_context``): the predecessors' published SIPAS
    beside each province of ``ranks`` (:func:`sipas_lib.published.predecessor_published` through
    :func:`sipas_lib.crosswalk.province_crosswalk`, figures up to ``year - 1``); ``None`` otherwise."""
    if not opts.get("published_context", False):
        skipped["published_context"] = "index_ranking.published_context is off (the national profile turns it on)"
        return None
    from sipas_lib import crosswalk as cw
    from sipas_lib import published

    mapping = cw.province_crosswalk()
    mapping = mapping[mapping["new_unit_id"].isin(set(ranks["unit_id"]))]
    if mapping.empty:
        skipped["published_context"] = "no ranked unit is a province of the 2025 reform"
        return None
    return published.predecessor_published(mapping, up_to_year=int(year) - 1)


def run(paths: RunPaths, settings: Settings) -> IndexRankingTables:
    """Compute, validate and write stage 50's result tables; return them.

    Parameters
    ----------
    paths
        The run's folders (``results/`` of stages 20 and 30 are read).
    settings
        The run configuration: ``common`` (level, seed, min_publish_n, min_publish_n_item, year)
        and the ``index_ranking`` section (rule, n_draws, k_top, previous_results).

    Raises
    ------
    StageError
        The design of stage 30 cannot be rebuilt, or the previous year's results do not meet
        their contracts (the message names the file and column).
    """
    opts = settings.section(STAGE)
    level, min_n, seed = settings.level, settings.min_publish_n, settings.seed
    rule, n_draws, k_top = opts["rule"], int(opts["n_draws"]), int(opts["k_top"])
    min_n_item = int(settings.common.get("min_publish_n_item", min_n))
    instrument = load_instrument(INSTRUMENT)
    try:
        design = _load_design(paths)
    except (schemas.ContractError, ValueError, FileNotFoundError) as err:
        raise StageError(f"stage 50 needs the design saved by stage 30 (weighting): {err}") from None
    try:
        indices = unit_indices(design, instrument, rule=rule, level=level, min_n=min_n)
        city = city_figures(design, instrument, rule=rule, level=level, min_n=min_n)
        cov = ix.overall_covariance(design, instrument, rule=rule)
    except ValueError as err:
        raise StageError(f"{schemas.result_path(paths, 'responses_weighted')}: {err}") from None
    excluded = _excluded_units(paths)
    units = schemas.read_result(paths, "units", required=False)
    ranks, pairs = league_tables(indices, cov, excluded, level=level, min_n=min_n, k_top=k_top, n_draws=n_draws,
                                 seed=seed, province=None if units is None else province_of(units),
                                 league_by=str(opts.get("league_by", "auto")), pairs=True)
    points, limits = funnel_tables(ranks, indices, city, level=level)
    targets = target_table(indices, city, settings.year)
    priorities = priority_table(indices, city, instrument, min_n_item=min_n_item)
    breakdowns = breakdown_table(design, instrument, rule=rule, level=level, min_n=min_n)
    skipped: dict[str, str] = {}
    try:
        drivers = driver_table(design, instrument, city)
    except ValueError as err:
        drivers, skipped["key_drivers"] = None, str(err)
    previous = _previous_dir(opts["previous_results"], paths)
    yoy = city_yoy = reform = None
    if previous is None:
        skipped["yoy"] = "index_ranking.previous_results is empty"
    else:
        yoy, city_yoy, reform = _changes(indices, ranks, city, previous, paths, opts, level=level, min_n=min_n,
                                         skipped=skipped)
    tables = IndexRankingTables(
        indices=indices, city_indices=city, ranks=ranks, rank_pairs=pairs, funnel_points=points,
        funnel_limits=limits, targets=targets, priorities=priorities, breakdowns=breakdowns,
        key_drivers=drivers, yoy=yoy, city_yoy=city_yoy, n_respondents=int(design.n), yoy_reform=reform,
        skipped=skipped)
    small_area, small_area_model = _small_area(paths, settings, design, indices, city, excluded, cov, skipped,
                                               leagues=ranks.set_index("unit_id")["league"])
    tables = replace(tables, small_area=small_area, small_area_model=small_area_model)
    tables = replace(tables, published_context=published_context(opts, settings.year, ranks, skipped))
    for name in schemas.stage_outputs(STAGE, main_only=False):
        table = getattr(tables, name)
        if table is None:
            schemas.result_path(paths, name).unlink(missing_ok=True)  # no stale optional table
        else:
            schemas.write_result(paths, name, table)
    return tables
