"""Stage 50: satisfaction indices, league tables with rank confidence sets, targets, priorities.

Stages layer. :func:`run` rebuilds the year's design from what the weighting stage saved
(:func:`sipas_lib.stages.weighting.load_design`: the same weights, strata, PSUs, fpc and
calibration as stage 30, whatever ``-p weighting.*`` settings the run used) and computes
everything notebook ``50_index_ranking`` shows:

* criterion, element and overall indices per unit (``indices``) and for the city (``city_indices``),
  aggregated with the named rule ``index_ranking.rule`` (:mod:`sipas_lib.index`), with the
  ``publishable`` flag (``common.min_publish_n`` respondents);
* league tables per unit type with simultaneous and marginal rank confidence sets, top/bottom-k
  sets (``index_ranking.k_top``) and the empirical-Bayes companion (``ranks``); pairwise
  better/worse/tied verdicts (``rank_pairs``); funnel-plot positions and control limits
  (``funnel_points``, ``funnel_limits``);
* the plan 143/KH-UBND targets (``targets``), each unit's weakest criteria (``priorities``),
  the index by respondent group (``breakdowns``), the key-driver model (``key_drivers``);
* with ``index_ranking.previous_results`` (last year's ``results/`` folder), year-on-year
  changes for units (``yoy``) and the city (``city_yoy``).

Every interval is at ``common.level`` (no fixed 95 %). Small samples never produce confident
claims: rows below ``common.min_publish_n`` or with a standard error of zero carry Wilson score
intervals on the effective sample size (:func:`sipas_lib.index.small_sample_intervals`), and the
year-on-year tables give no significance verdict for them (``reason`` says why). Units that
weighting left out (no usable questionnaire) are listed in ``ranks`` without a rank, with their
reason. The random draws of the rank confidence sets use ``common.seed`` and
``index_ranking.n_draws``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from sipas_lib import index as ix
from sipas_lib import published as pb
from sipas_lib import ranking as rk
from sipas_lib import schemas
from sipas_lib.config import RunPaths
from sipas_lib.instrument import Instrument, load_instrument
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError

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
#: Control limits of the funnel plot besides the run's level (Spiegelhalter's "3 sigma").
FUNNEL_OUTER_LEVEL = 0.998


@dataclass(frozen=True)
class IndexRankingTables:
    """The result tables of stage 50 (each also written to ``results/<name>.parquet``).

    ``yoy``/``city_yoy`` are ``None`` without a previous year, ``key_drivers`` when the model
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


def league_tables(indices: pd.DataFrame, cov: pd.DataFrame, excluded: pd.DataFrame, *, level: float,
                  min_n: int, k_top: int, n_draws: int, seed: int | None) -> pd.DataFrame:
    """Ranks per unit type with confidence sets (``ranks``), from the units' overall indices.

    :func:`sipas_lib.ranking.rank_table` with the design covariance ``cov`` of the overall
    indices; adds each unit's interval at ``level`` (``ci_low``, ``ci_high``, ``ci_method`` from
    ``indices``) and ``not_ranked_reason``: ``below_min_n``, ``no_estimate``, or for the units
    weighting left out (``excluded``: ``unit_id, unit_type, reason``) their reason there
    (``no_responses``, ``all_blank``).
    """
    overall = indices.loc[indices["level"] == "overall"].reset_index(drop=True)
    ranks = rk.rank_table(overall, by="unit_type", cov=cov, level=level, k_top=k_top, min_n=min_n,
                          n_boot=n_draws, seed=seed)
    ranks = ranks.merge(overall[["unit_id", "ci_low", "ci_high", "ci_method"]], on="unit_id", how="left")
    no_estimate = ranks["estimate"].isna() | ranks["se"].isna()
    ranks["not_ranked_reason"] = pd.array(
        np.where(ranks["rank"].notna(), None, np.where(no_estimate, "no_estimate", "below_min_n")), dtype="string")
    left_out = excluded.loc[~excluded["unit_id"].isin(ranks["unit_id"])]
    if len(left_out):
        rows = pd.DataFrame({"unit_id": left_out["unit_id"].to_numpy(), "unit_type": left_out["unit_type"].to_numpy(),
                             "n": 0, "publishable": False, "not_ranked_reason": left_out["reason"].to_numpy(),
                             "conf_level": level})
        ranks = pd.concat([ranks, rows], ignore_index=True)
        ranks["not_ranked_reason"] = ranks["not_ranked_reason"].astype("string")
    for col in ("in_top_k", "in_bottom_k"):
        ranks[col] = ranks[col].astype("boolean")
    for col in ("rank", "rank_ci_low", "rank_ci_high", "n_better", "n_worse", "n_tied", "rank_ci_low_marginal",
                "rank_ci_high_marginal", "k_top", "n_units"):
        ranks[col] = ranks[col].astype("Int64")
    ranks["n"] = ranks["n"].astype("int64")
    ranks["publishable"] = ranks["publishable"].astype(bool)
    return ranks.sort_values(["unit_type", "rank", "unit_id"], kind="stable", na_position="last").reset_index(drop=True)


def pairwise_table(ranks: pd.DataFrame, cov: pd.DataFrame, *, level: float, n_draws: int,
                   seed: int | None) -> pd.DataFrame:
    """Better / worse / tied for every ordered pair of ranked units of one type (``rank_pairs``).

    :func:`sipas_lib.ranking.tied_pairs` with the same draws and seed as the rank sets.
    """
    parts = []
    for unit_type, g in ranks.loc[ranks["rank"].notna()].groupby("unit_type", sort=True):
        if len(g) < 2:
            continue
        g = g.sort_values("rank")
        est = pd.Series(g["estimate"].to_numpy(float), index=g["unit_id"].to_numpy())
        pairs = rk.tied_pairs(est, cov.loc[est.index, est.index], level=level, n_boot=n_draws, seed=seed)
        parts.append(pairs.rename(columns={"unit": "unit_id"}).assign(unit_type=unit_type))
    if not parts:
        return _empty("rank_pairs")
    out = pd.concat(parts, ignore_index=True)
    return out[["unit_type", "unit_id", "other", "relation"]].astype({"unit_id": str, "other": str})


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
                  level: float, min_n: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Year-on-year changes of the units (``yoy``) and the city (``city_yoy``, when last year has it).

    Last year's tables are read with their contracts from ``previous`` (a ``results/`` folder);
    no verdict below ``min_n`` or at SE 0 (:func:`sipas_lib.index.year_on_year`).
    """
    try:
        prev = schemas.read_result(previous, "indices")
        prev_ranks = schemas.read_result(previous, "ranks", required=False)
        prev_city = schemas.read_result(previous, "city_indices", required=False)
    except schemas.ContractError as err:
        raise StageError(f"index_ranking.previous_results = {previous}: {err}") from None
    cur = indices.merge(ranks[["unit_id", "rank"]], on="unit_id", how="left")
    if prev_ranks is not None:
        prev = prev.merge(prev_ranks[["unit_id", "rank"]], on="unit_id", how="left")
    yoy = ix.year_on_year(cur, prev, level=level, min_n=min_n)
    yoy = yoy.merge(indices[["unit_id", "unit_type"]].drop_duplicates(), on="unit_id", how="left")
    city_yoy = None
    if prev_city is not None:
        city_yoy = ix.year_on_year(city, prev_city, keys=["scope", "level", "code"], rank=None, level=level,
                                   min_n=min_n)
    return yoy, city_yoy


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


def _previous_dir(option: str, paths: RunPaths) -> Path | None:
    if not option:
        return None
    folder = Path(option)
    if not folder.is_absolute():
        folder = (paths.run_dir / folder) if (paths.run_dir / folder).exists() else folder.resolve()
    if not folder.is_dir():
        raise StageError(f"index_ranking.previous_results = {option!r}: no such folder")
    return folder


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
    ranks = league_tables(indices, cov, excluded, level=level, min_n=min_n, k_top=k_top, n_draws=n_draws, seed=seed)
    pairs = pairwise_table(ranks, cov, level=level, n_draws=n_draws, seed=seed)
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
    yoy = city_yoy = None
    if previous is None:
        skipped["yoy"] = "index_ranking.previous_results is empty"
    else:
        yoy, city_yoy = change_tables(indices, ranks, city, previous, level=level, min_n=min_n)
        if city_yoy is None:
            skipped["city_yoy"] = f"{previous} has no city_indices table"
    tables = IndexRankingTables(
        indices=indices, city_indices=city, ranks=ranks, rank_pairs=pairs, funnel_points=points,
        funnel_limits=limits, targets=targets, priorities=priorities, breakdowns=breakdowns,
        key_drivers=drivers, yoy=yoy, city_yoy=city_yoy, n_respondents=int(design.n), skipped=skipped)
    for name in schemas.stage_outputs(STAGE, main_only=False):
        table = getattr(tables, name)
        if table is None:
            schemas.result_path(paths, name).unlink(missing_ok=True)  # no stale optional table
        else:
            schemas.write_result(paths, name, table)
    return tables
