"""Satisfaction indices (criterion, element, overall SIPAS) with design-based standard errors.

Definitions (Phụ lục 5 of Hà Nội plan 143/KH-UBND; DESIGN.md)
-------------------------------------------------------------
* A respondent is *satisfied* with a criterion when the rating is 4 or 5 (``satisfied_min`` of
  the instrument). Criterion index of unit u:
  :math:`p_{uk} = \\sum_{i\\in u} w_i 1[y_{ik}\\ge 4] / \\sum_{i\\in u} w_i 1[y_{ik}\\text{ answered}]`
  (a ratio of two weighted totals; unanswered items, including the structurally missing E5
  criteria of respondents who gave no feedback, are never imputed).
* Element index = the aggregation rule's (weighted) mean of its criterion indices; overall SIPAS
  = the rule's (weighted) mean of element indices, over the elements and criteria the unit has
  data for. The default rule ``"mean"`` is the plain mean of criteria within an element and of
  elements; ``"pooled"`` is the ratio of all satisfied ratings to all answered criteria ratings;
  other rules are registered with :func:`register_rule` (named, never buried in a notebook).
* ``measure="mean_score"`` gives the same indices on the 1-5 scale (weighted mean rating).

Standard errors (Taylor linearization)
--------------------------------------
Every index is a smooth function of domain totals, so its linearized variable (influence score)
for respondent i of unit u is, for a criterion, :math:`z_{ik} = 1[\\text{answered}](x_{ik} -
p_{uk})/\\hat D_{uk}` (:math:`\\hat D_{uk}` the weighted number answering); for an element
:math:`z_{ie} = \\sum_k a_{uek} z_{ik}` and for the overall index :math:`z_i = \\sum_e b_{ue}
z_{ie}` with the rule's weights a, b. The variance of the index is the design variance of the
weighted total :math:`\\sum_i w_i z_i`, computed by ``sipas_lib.estimation.total_covariance``
(strata, clusters, fpc, calibration and replicate weights handled there; this module has no
variance code of its own). Cross-unit covariances of the overall index (for the ranking) come from
the same function. ``deff`` = design variance / variance under simple random sampling of the same
number of respondents drawn without replacement from the domain's estimated size (R ``survey``'s
``deff=TRUE``, as :mod:`sipas_lib.estimation`); CIs are normal, ``estimate +- z se``, clipped to the
scale. Below the publication minimum, or where the SE is zero, :func:`small_sample_intervals`
replaces them by Wilson score intervals on the effective sample size.

Result tables (column names are a contract: the annual report and scorecards read them)
-----------------------------------------------------------------------------------------
``satisfaction_indices`` / ``indices.parquet``:
    ``<by columns>, level (item|element|overall), code, estimate, se, ci_low, ci_high, n, deff,
    n_eff, measure, rule`` (+ ``unit_type`` when grouping by ``unit_id``). For items ``code`` is
    the item code (c01.., lg1..), for elements E1..E5, for the overall index ``SIPAS``. Shares are
    0-1 (``measure == "share"``). ``deff`` compares with simple random sampling *without*
    replacement of the same number of respondents (R ``survey``'s ``deff=TRUE``). Stage 50 adds
    ``ci_method`` (:func:`small_sample_intervals`) and ``publishable`` (the unit has at least
    ``min_n`` respondents, default 30) and drops rows with ``n == 0`` (e.g. lg items of departments).
``city_indices`` / ``city_indices.parquet``: ``scope`` (department|district|all) + the columns above.
``breakdowns`` / ``breakdowns.parquet``: ``variable, group`` + the columns above.
``breakdowns``: ``variable, group`` + the columns above (no ``unit_id``).
``year_on_year`` / ``yoy.parquet``: ``<keys>, estimate_prev, se_prev, estimate, se, change,
    change_se, change_ci_low, change_ci_high, z, p_value, significant, rank_prev, rank,
    rank_change`` (rank_change > 0: moved up).
``track_targets`` / ``targets.parquet``: the input rows + ``year, target_low, target_high,
    target_source, gap, status`` with status ``met`` (CI at or above the target), ``not_met`` (CI
    below), ``not_distinguishable`` (CI covers the target), ``met_point``/``not_met_point`` (no CI)
    or ``no_target``. Stage 50 writes the city rows (``scope`` department|district|all, levels
    overall and element) and the unit overall rows (``scope == "unit"``, ``unit_id, unit_type``).
``city_yoy.parquet`` (stage 50, when an earlier year is given): ``scope, level, code`` + the
    ``year_on_year`` columns.
``key_drivers.parquet``: see :func:`key_drivers`.
``improvement_priorities`` / ``priorities.parquet``: ``unit_id, code, element, estimate, se,
    city_estimate, gap_to_city, rank_in_unit (1 = weakest), gap_rank (1 = furthest below city),
    weakest, largest_gap``.
``key_drivers``: ``element, coef, se, p_value, odds_ratio, std_coef, importance, performance,
    quadrant, model, n`` (fractional logit of each respondent's share of criteria rated 4-5 on
    their element mean ratings; model-based SEs).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib import estimation  # the design-based variance engine (issue 4)

__all__ = [
    "AggregationRule",
    "RULES",
    "register_rule",
    "get_rule",
    "OVERALL_CODE",
    "DEFAULT_TARGETS",
    "satisfaction_indices",
    "city_indices",
    "breakdowns",
    "overall_covariance",
    "year_on_year",
    "score_interval",
    "small_sample_intervals",
    "YOY_REASONS",
    "track_targets",
    "improvement_priorities",
    "key_drivers",
    "respondent_scores",
]

OVERALL_CODE = "SIPAS"
LEVELS = ("item", "element", "overall")


# ----------------------------------------------------------------------------------------------
# aggregation rules
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AggregationRule:
    """How criterion indices are combined into element and overall indices.

    Attributes
    ----------
    name
        Registry key, stored in the ``rule`` column of every result.
    description
        One sentence for reports.
    criterion_weights
        Weight of each criterion within its element (missing codes weigh 1). Weights are
        renormalized over the criteria a unit has answers for.
    element_weights
        Weight of each element in the overall index (missing codes weigh 1), renormalized over
        the elements the unit has data for.
    pooled
        If True the overall index is the pooled ratio of all satisfied criterion ratings to all
        answered criterion ratings (element indices still follow the weights).
    """

    name: str
    description: str
    criterion_weights: Mapping[str, float] = field(default_factory=dict)
    element_weights: Mapping[str, float] = field(default_factory=dict)
    pooled: bool = False

    def __post_init__(self):
        for kind, w in (("criterion", self.criterion_weights), ("element", self.element_weights)):
            bad = {k: v for k, v in w.items() if not (np.isfinite(v) and v >= 0)}
            if bad:
                raise ValueError(f"rule {self.name!r}: {kind} weights must be non-negative numbers, got {bad}")


RULES: dict[str, AggregationRule] = {}


def register_rule(rule: AggregationRule) -> AggregationRule:
    """Add (or replace) a named aggregation rule in the registry :data:`RULES`."""
    if not isinstance(rule, AggregationRule):
        raise ValueError("register_rule expects an AggregationRule")
    RULES[rule.name] = rule
    return rule


register_rule(AggregationRule(
    "mean",
    "Element = mean of its criterion indices; SIPAS = mean of element indices (Phụ lục 5 default).",
))
register_rule(AggregationRule(
    "pooled",
    "Element = mean of its criterion indices; SIPAS = share of all answered criterion ratings that are 4-5.",
    pooled=True,
))
register_rule(AggregationRule(
    "items_weighted",
    "Element = mean of criteria; SIPAS = element means weighted by their number of criteria (mean of all criteria).",
    element_weights={"E1": 5, "E2": 4, "E3": 3, "E4": 2, "E5": 4},
))


def get_rule(rule: str | AggregationRule) -> AggregationRule:
    """Look a rule up by name (or pass an :class:`AggregationRule` through)."""
    if isinstance(rule, AggregationRule):
        return rule
    if rule not in RULES:
        raise ValueError(f"unknown aggregation rule {rule!r}; registered: {', '.join(sorted(RULES))}")
    return RULES[rule]


# ----------------------------------------------------------------------------------------------
# design access (the estimation module owns the design and all variance code)
# ----------------------------------------------------------------------------------------------
def _design_frame(design) -> tuple[pd.DataFrame, np.ndarray]:
    """The design's data and its (calibrated) weights as an array."""
    data = getattr(design, "data", None)
    if not isinstance(data, pd.DataFrame) or not hasattr(design, "w"):
        raise ValueError("design must be a sipas_lib.estimation.SurveyDesign or ReplicateDesign")
    w = np.asarray(design.w, dtype=float)
    if w.shape != (len(data),):
        raise ValueError("design weights do not match the number of rows")
    return data, w


def _domain_variances(design, z: np.ndarray, by: list[str], groups: pd.DataFrame) -> np.ndarray:
    """Variance of sum_i w_i z_im 1[row i in group j] for every group j and score m -> (G, M).

    ``estimation.total_covariance`` keeps the full design for each domain (domain scores are
    zero outside it) and handles strata, clusters, fpc, calibration and replicate weights.
    """

    kwargs = {}
    if "diag" in inspect.signature(estimation.total_covariance).parameters:
        kwargs["diag"] = True  # variances only, when the engine offers it (4x faster on the demo)
    index, cov = estimation.total_covariance(design, z, by=by or None, **kwargs)
    cov = np.asarray(cov, dtype=float)
    if cov.ndim == 3 or (cov.ndim == 2 and not kwargs):
        var = np.diagonal(cov, axis1=-2, axis2=-1)
    else:
        var = cov
    var = var.reshape(-1, z.shape[1])
    if by:
        _check_domains(index, groups, by)
    return var


def _check_domains(index: pd.DataFrame, groups: pd.DataFrame, by: list[str]) -> None:
    a = index[by].reset_index(drop=True).astype(str)
    b = groups[by].reset_index(drop=True).astype(str)
    if a.shape != b.shape or not (a.to_numpy() == b.to_numpy()).all():
        raise RuntimeError("domain order of estimation.total_covariance differs from the index groups")


# ----------------------------------------------------------------------------------------------
# the core computation
# ----------------------------------------------------------------------------------------------
@dataclass
class _Core:
    groups: pd.DataFrame  # one row per group (by values)
    codes: list[str]  # score column codes
    levels: list[str]
    estimate: np.ndarray  # (G, M)
    n: np.ndarray  # (G, M) respondents contributing
    z: np.ndarray  # (n_rows, M) influence scores (each row for its own group)
    g: np.ndarray  # (n_rows,) group code, -1 = not in any group
    srs_var: np.ndarray  # (G, M)


def _group_codes(data: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group code per row (-1 = missing group value) and the sorted table of groups."""
    if not by:
        return np.zeros(len(data), dtype=np.int64), pd.DataFrame(index=[0])
    missing = [c for c in by if c not in data.columns]
    if missing:
        raise ValueError(f"grouping column(s) {missing} not in the data; available: {list(data.columns)}")
    grp = data.groupby(list(by), sort=True, dropna=True, observed=True)
    ng = grp.ngroup().to_numpy(dtype=float, na_value=np.nan)
    codes = np.where(np.isnan(ng), -1, ng).astype(np.int64)
    groups = grp.size().index.to_frame(index=False)[list(by)]
    return codes, groups


def _core(data, w, instrument, by, rule, measure, items) -> _Core:
    rule = get_rule(rule)
    if measure not in ("share", "mean_score"):
        raise ValueError(f"measure must be 'share' or 'mean_score', got {measure!r}")
    elem_items = instrument.element_items()
    criteria = [c for e in elem_items.values() for c in e]
    item_codes = list(items) if items is not None else instrument.item_codes
    for c in criteria:
        if c not in item_codes:
            item_codes.append(c)
    missing = [c for c in item_codes if c not in data.columns]
    if missing:
        raise ValueError(f"item column(s) {missing} of instrument {instrument.id} not in the responses")
    y = data[item_codes].to_numpy(dtype=float)
    lo, hi = instrument.scale_min, instrument.scale_max
    bad = ~np.isnan(y) & ((y < lo) | (y > hi))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"rating {y[r, c]} outside {lo}-{hi} in column {item_codes[c]!r} (row {data.index[r]})")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("design weights must be finite and non-negative")
    answered = ~np.isnan(y)
    x = (y >= instrument.satisfied_min).astype(float) if measure == "share" else np.nan_to_num(y)
    x[~answered] = 0.0

    g, groups = _group_codes(data, by)
    ok = g >= 0
    G, K = len(groups), len(item_codes)
    gg = np.where(ok, g, 0)
    wa = np.where(ok, w, 0.0)[:, None] * answered
    # grouped sums by bincount (estimation.group_sum)
    den = estimation.group_sum(gg, wa, G)
    num = estimation.group_sum(gg, wa * x, G)
    cnt = estimation.group_sum(gg, answered & ok[:, None], G)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = num / den
    has = den > 0
    p[~has] = np.nan
    inv_den = np.divide(1.0, den, out=np.zeros_like(den), where=has)
    z_item = answered * ok[:, None] * (x - np.nan_to_num(p)[gg]) * inv_den[gg]

    # element weights a[g, e, k] over available criteria, overall weights b[g, e]
    elems = list(elem_items)
    E = len(elems)
    pos = {c: i for i, c in enumerate(item_codes)}
    a_base = np.zeros((E, K))
    for e, codes in enumerate(elem_items.values()):
        for c in codes:
            a_base[e, pos[c]] = rule.criterion_weights.get(c, 1.0)
    a = a_base[None, :, :] * has[:, None, :]
    a_sum = a.sum(axis=2, keepdims=True)
    a = np.divide(a, a_sum, out=np.zeros_like(a), where=a_sum > 0)
    has_e = a_sum[:, :, 0] > 0
    p0 = np.nan_to_num(p)
    p_elem = np.einsum("gek,gk->ge", a, p0)
    p_elem[~has_e] = np.nan
    z_elem = np.einsum("rek,rk->re", a[gg], z_item)
    b = np.array([rule.element_weights.get(e, 1.0) for e in elems])[None, :] * has_e
    b_sum = b.sum(axis=1, keepdims=True)
    b = np.divide(b, b_sum, out=np.zeros_like(b), where=b_sum > 0)
    crit_idx = [pos[c] for c in criteria]
    if rule.pooled:
        dtot = den[:, crit_idx].sum(axis=1)
        ntot = num[:, crit_idx].sum(axis=1)
        p_over = np.divide(ntot, dtot, out=np.full(G, np.nan), where=dtot > 0)
        inv = np.divide(1.0, dtot, out=np.zeros_like(dtot), where=dtot > 0)
        xa = answered[:, crit_idx] * ok[:, None]
        z_over = (xa * (x[:, crit_idx] - np.nan_to_num(p_over)[gg][:, None])).sum(axis=1) * inv[gg]
    else:
        p_over = np.einsum("ge,ge->g", b, np.nan_to_num(p_elem))
        p_over[b_sum[:, 0] == 0] = np.nan
        z_over = np.einsum("re,re->r", b[gg], z_elem)
    z_elem = z_elem * ok[:, None]
    z_over = z_over * ok

    # respondents contributing: answered the item / any criterion of the element / any criterion
    ans_e = np.stack([answered[:, [pos[c] for c in codes]].any(axis=1) for codes in elem_items.values()], axis=1)
    n_e = estimation.group_sum(gg, ans_e & ok[:, None], G)
    ans_any = answered[:, crit_idx].any(axis=1)
    n_o = np.bincount(gg, weights=(ans_any & ok).astype(float), minlength=G)

    z = np.column_stack([z_item, z_elem, z_over])
    est = np.column_stack([p, p_elem, p_over])
    n_all = np.column_stack([cnt, n_e, n_o])
    support = np.column_stack([answered, ans_e, ans_any]) & ok[:, None]

    srs = _srs_variance(z, w, support, gg, n_all)

    return _Core(
        groups=groups,
        codes=item_codes + elems + [OVERALL_CODE],
        levels=["item"] * K + ["element"] * E + ["overall"],
        estimate=est,
        n=n_all,
        z=z,
        g=np.where(ok, g, -1),
        srs_var=srs,
    )


def _srs_variance(z: np.ndarray, w: np.ndarray, support: np.ndarray, gg: np.ndarray,
                  n: np.ndarray) -> np.ndarray:
    r"""Variance of each index under simple random sampling WITHOUT replacement (R ``survey``'s deff).

    With :math:`u_i = W z_i` the linearized variable on the scale of the index (:math:`x_i - p`
    for a criterion; weighted sums of :math:`z` over the support are zero, so :math:`u` is
    centred), :math:`W = \sum_{i \in s} w_i` the estimated domain size and n the respondents:

    .. math:: s^2 = \frac{\sum_s w_i u_i^2}{W}\,\frac{n}{n-1},\qquad
              V_{srs} = \frac{s^2}{n}\Big(1 - \frac{n}{W}\Big) = \frac{W-n}{n-1}\sum_s w_i z_i^2 .

    This is ``svymean(..., deff=TRUE)`` for a criterion (the same number as
    :func:`sipas_lib.estimation.mean` on the 0/1 item) and ``svyratio``'s deff of the linearized
    variable for element and overall indices (as :func:`sipas_lib.estimation.ratio`): one
    definition of ``deff`` across the library. NaN when :math:`W < n` (weights below 1, no
    population to sample from without replacement) or n < 2.
    """
    G = n.shape[0]
    wsup = estimation.group_sum(gg, support * w[:, None], G)
    wz2 = estimation.group_sum(gg, support * w[:, None] * z**2, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        srs = (wsup - n) / (n - 1) * wz2
    return np.where((n > 1) & (wsup >= n), srs, np.nan)


def _tidy(core: _Core, var: np.ndarray, by: Sequence[str], level: float, measure: str, rule: str,
          scale: tuple[float, float]) -> pd.DataFrame:
    G, M = core.estimate.shape
    zq = stats.norm.ppf((1 + level) / 2)
    se = np.sqrt(np.clip(var, 0, None))
    se[np.isnan(core.estimate)] = np.nan
    out = core.groups.loc[core.groups.index.repeat(M)].reset_index(drop=True) if by else pd.DataFrame(index=range(G * M))
    out["level"] = np.tile(core.levels, G)
    out["code"] = np.tile(core.codes, G)
    est = core.estimate.ravel()
    out["estimate"] = est
    out["se"] = se.ravel()
    out["ci_low"] = np.clip(est - zq * se.ravel(), *scale)
    out["ci_high"] = np.clip(est + zq * se.ravel(), *scale)
    out["n"] = core.n.ravel().astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        deff = np.where(core.srs_var.ravel() > 0, var.ravel() / core.srs_var.ravel(), np.nan)
    out["deff"] = deff
    out["n_eff"] = np.where(deff > 0, out["n"] / deff, np.nan)
    out["measure"] = measure
    out["rule"] = rule
    return out


def satisfaction_indices(
    design,
    instrument,
    by: str | Sequence[str] | None = "unit_id",
    rule: str | AggregationRule = "mean",
    *,
    measure: str = "share",
    items: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Criterion, element and overall satisfaction indices per group with design-based SEs.

    Parameters
    ----------
    design
        ``sipas_lib.estimation.SurveyDesign`` of the responses (calibrated weights).
    instrument
        ``sipas_lib.instrument.Instrument`` (or its id): item codes, elements, satisfied threshold.
    by
        Grouping column(s) (default ``unit_id``); ``None`` for one city-wide figure.
    rule
        Aggregation rule name in :data:`RULES` or an :class:`AggregationRule`.
    measure
        ``share`` (share rating >= 4, 0-1) or ``mean_score`` (weighted mean rating, 1-5).
    items
        Item columns to report (default: every rated item of the instrument).
    level
        Confidence level of the normal CIs.

    Returns
    -------
    Tidy DataFrame ``<by>, level, code, estimate, se, ci_low, ci_high, n, deff, n_eff, measure,
    rule`` (+ ``unit_type`` when ``by == "unit_id"`` and the data has it). See the module
    docstring for definitions and the linearization.

    Examples
    --------
    >>> # idx = satisfaction_indices(design, load_instrument("hanoi_pl5_district"))
    >>> # idx.query("level == 'overall'")[["unit_id", "estimate", "ci_low", "ci_high"]]
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if isinstance(instrument, str):
        from sipas_lib.instrument import load_instrument

        instrument = load_instrument(instrument)
    by_list = [by] if isinstance(by, str) else list(by or [])
    data, w = _design_frame(design)
    rule_obj = get_rule(rule)
    core = _core(data, w, instrument, by_list, rule_obj, measure, items)
    var = _domain_variances(design, core.z, by_list, core.groups)
    scale = (0.0, 1.0) if measure == "share" else (float(instrument.scale_min), float(instrument.scale_max))
    out = _tidy(core, var, by_list, level, measure, rule_obj.name, scale)
    if by_list == ["unit_id"] and "unit_type" in data.columns:
        types = data.groupby("unit_id", sort=False)["unit_type"].first()
        out.insert(1, "unit_type", out["unit_id"].map(types).to_numpy())
    return out


def overall_covariance(
    design,
    instrument,
    by: str = "unit_id",
    rule: str | AggregationRule = "mean",
    *,
    measure: str = "share",
    code: str = OVERALL_CODE,
) -> pd.DataFrame:
    """Design covariance matrix of one index (default the overall SIPAS) across groups.

    The covariance of the linearized domain totals, from ``estimation.total_covariance``; pass it
    to ``ranking.rank_confidence_sets`` when calibration or shared clusters make unit estimates
    dependent. Returns a square DataFrame indexed by the group values. The engine works on sparse PSU
    totals: a national year (3,900 units, 400,000 forms, post-strata within units) takes ~5 CPU-s and
    ~1 GB (tests/test_estimation_sparse.py, bench/bench_estimation.py ``--cov-only``).
    """
    if isinstance(instrument, str):
        from sipas_lib.instrument import load_instrument

        instrument = load_instrument(instrument)
    data, w = _design_frame(design)
    core = _core(data, w, instrument, [by], get_rule(rule), measure, None)
    if code not in core.codes:
        raise ValueError(f"code {code!r} is not an index of instrument {instrument.id}")
    m = core.codes.index(code)

    index, cov = estimation.total_covariance(design, core.z[:, [m]], by=[by], full=True)
    _check_domains(index, core.groups, [by])
    labels = core.groups[by].to_numpy()
    return pd.DataFrame(np.asarray(cov), index=labels, columns=labels)


def city_indices(
    design,
    instrument,
    rule: str | AggregationRule = "mean",
    *,
    type_column: str = "unit_type",
    measure: str = "share",
    level: float = 0.95,
) -> pd.DataFrame:
    """City-wide indices for departments, districts (each ``unit_type``) and all units together.

    Population-weighted (design-based) city figures: every respondent counts with their weight,
    so a unit counts in proportion to the transactions it served. Returns ``scope`` + the
    :func:`satisfaction_indices` columns (``scope`` = the unit type or ``all``).
    """
    by_type = satisfaction_indices(design, instrument, by=type_column, rule=rule, measure=measure, level=level)
    by_type = by_type.rename(columns={type_column: "scope"})
    together = satisfaction_indices(design, instrument, by=None, rule=rule, measure=measure, level=level)
    together.insert(0, "scope", "all")
    return pd.concat([by_type, together], ignore_index=True)


def breakdowns(
    design,
    instrument,
    variables: Sequence[str] = ("gender", "age_group", "education", "channel", "field"),
    rule: str | AggregationRule = "mean",
    *,
    levels: Sequence[str] = ("element", "overall"),
    measure: str = "share",
    level: float = 0.95,
) -> pd.DataFrame:
    """Indices by respondent group (gender, age, education, channel, field), city-wide.

    Rows with a missing group value are left out of that breakdown (their scores are zero in every
    domain; the full design is kept for the variance). Returns ``variable, group`` + the
    :func:`satisfaction_indices` columns, restricted to ``levels``.
    """
    data, _ = _design_frame(design)
    out = []
    for var in variables:
        if var not in data.columns:
            raise ValueError(f"breakdown variable {var!r} not in the data; available: {list(data.columns)}")
        res = satisfaction_indices(design, instrument, by=var, rule=rule, measure=measure, level=level)
        res = res[res[var].notna() & res["level"].isin(levels)]
        res = res.rename(columns={var: "group"})
        res.insert(0, "variable", var)
        res["group"] = res["group"].astype(str)
        out.append(res)
    return pd.concat(out, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# year on year, targets, priorities
# ----------------------------------------------------------------------------------------------
#: Why ``year_on_year`` gives no significance verdict for a row (``reason`` column).
YOY_REASONS = {
    "below_min_n": "fewer respondents than the publication minimum in one of the two years",
    "se_zero_or_undefined": "a standard error is zero or missing in one of the two years",
}

#: How the interval of an index row was computed (``ci_method`` column).
CI_METHODS = ("normal", "wilson")


def _effective_n(n: np.ndarray, deff: np.ndarray | None) -> np.ndarray:
    """n / deff where the design effect is a positive number, else n (deff undefined at SE 0)."""
    n = np.asarray(n, dtype=float)
    if deff is None:
        return n
    deff = np.asarray(deff, dtype=float)
    ok = np.isfinite(deff) & (deff > 0)
    return np.where(ok, n / np.where(ok, deff, 1.0), n)


def score_interval(estimate, n_eff, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval of a share on an effective sample size (vectorized).

    .. math:: \frac{\hat p + \frac{z^2}{2n^*} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n^*} +
              \frac{z^2}{4n^{*2}}}}{1 + z^2/n^*},\qquad z = \Phi^{-1}\big(\tfrac{1+\text{level}}{2}\big)

    the formula of :func:`sipas_lib.estimation.proportion` (``method="wilson"``) with the normal
    quantile. Unlike the normal interval it stays inside [0, 1] and keeps a positive width when
    :math:`\hat p` is 0 or 1: at :math:`\hat p = 1` the lower limit is :math:`n^*/(n^* + z^2)`
    (0.34 for two respondents at 95 %). NaN where the estimate or :math:`n^* > 0` is missing.

    Reference: Wilson, E. B. (1927). Probable inference, the law of succession, and statistical
    inference. *JASA* 22, 209-212; Kish (1965) for the effective sample size n / deff.

    Examples
    --------
    >>> lo, hi = score_interval([1.0], [2.0])
    >>> round(float(lo[0]), 3), float(hi[0])
    (0.342, 1.0)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    p = np.asarray(estimate, dtype=float)
    n = np.asarray(n_eff, dtype=float)
    z = stats.norm.ppf((1 + level) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(n > 0, n, np.nan)
        lo, hi = estimation.wilson_bounds(p, n, z)
    return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)


def small_sample_intervals(table: pd.DataFrame, *, level: float = 0.95, min_n: int = 30) -> pd.DataFrame:
    """Replace normal intervals that claim too much by Wilson score intervals.

    A normal interval ``estimate +- z se`` of a share collapses to a point when everybody (or
    nobody) is satisfied: one respondent would read "100 % (95 % CI 100-100 %)". For every share
    row with fewer than ``min_n`` respondents (the publication minimum) or a standard error that
    is zero or missing, ``ci_low``/``ci_high`` become the Wilson score interval
    (:func:`score_interval`) on the effective sample size ``n / deff`` (``n`` where the design
    effect is undefined, i.e. SE 0). Other rows keep their design-based normal interval. Adds
    ``ci_method`` (``normal`` | ``wilson``). Mean-score rows (``measure == "mean_score"``) are
    left as they are.

    Parameters
    ----------
    table
        A :func:`satisfaction_indices`-shaped table: ``estimate, se, ci_low, ci_high, n``
        (``deff`` and ``measure`` used when present).
    level
        Confidence level of the intervals.
    min_n
        Publication minimum (``common.min_publish_n``).
    """
    need = [c for c in ("estimate", "se", "ci_low", "ci_high", "n") if c not in table.columns]
    if need:
        raise ValueError(f"index table lacks column(s) {need}")
    out = table.copy()
    se = out["se"].to_numpy(float)
    share = out["measure"].eq("share").to_numpy() if "measure" in out.columns else np.ones(len(out), bool)
    weak = share & out["estimate"].notna().to_numpy() & (
        (out["n"].to_numpy(float) < min_n) | ~(np.nan_to_num(se, nan=0.0) > 0))
    deff = out["deff"].to_numpy(float) if "deff" in out.columns else None
    lo, hi = score_interval(out["estimate"].to_numpy(float), _effective_n(out["n"].to_numpy(float), deff), level)
    out["ci_low"] = np.where(weak, lo, out["ci_low"].to_numpy(float))
    out["ci_high"] = np.where(weak, hi, out["ci_high"].to_numpy(float))
    out["ci_method"] = np.where(weak, "wilson", "normal")
    return out


def year_on_year(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    *,
    keys: Sequence[str] = ("unit_id", "level", "code"),
    estimate: str = "estimate",
    se: str = "se",
    rank: str | None = "rank",
    level: float = 0.95,
    min_n: int = 0,
) -> pd.DataFrame:
    r"""Changes from an earlier year's result table, with CIs and significance.

    :math:`\Delta = \hat p_t - \hat p_{t-1}`, :math:`se(\Delta) = \sqrt{se_t^2 + se_{t-1}^2}` (the
    two years are independent samples), normal CI and two-sided p-value; ``significant`` when
    the CI excludes 0. If both tables carry ``rank``, ``rank_change = rank_prev - rank``
    (positive = moved up, as the press reports "+19 bậc"). Only keys present in both years are
    returned (inner join).

    Small samples never produce a confident claim. ``significant`` is missing (``<NA>``), with
    ``reason`` saying why (:data:`YOY_REASONS`), when

    * ``below_min_n``: both tables carry ``n`` and either year has fewer than ``min_n``
      respondents (``common.min_publish_n``); or
    * ``se_zero_or_undefined``: either year's SE is zero or missing (everybody satisfied, one
      respondent, or published figures without SEs).

    For those rows ``z`` and ``p_value`` are missing too, and when both tables carry ``n`` the
    interval of the change is Newcombe's hybrid score interval (method 10) built from each
    year's Wilson interval on its effective sample size ``n / deff`` (``n`` where deff is
    undefined; :func:`score_interval`), so it keeps a sensible width at 0 % and 100 %:
    :math:`[\Delta - \sqrt{(\hat p_t - l_t)^2 + (u_{t-1} - \hat p_{t-1})^2},\;
    \Delta + \sqrt{(u_t - \hat p_t)^2 + (\hat p_{t-1} - l_{t-1})^2}]`. Without ``n`` it is the
    normal interval (missing when an SE is). ``n_prev``/``n`` are returned when both tables
    carry ``n``.

    Reference: Newcombe, R. G. (1998). Interval estimation for the difference between independent
    proportions: comparison of eleven methods. *Statistics in Medicine* 17, 873-890.
    """
    keys = list(keys)
    for name, df in (("current", current), ("previous", previous)):
        missing = [c for c in keys + [estimate] if c not in df.columns]
        if missing:
            raise ValueError(f"{name} year's table lacks column(s) {missing}")
        if df.duplicated(keys).any():
            raise ValueError(f"{name} year's table has duplicate rows for keys {keys}")
    cols = keys + [estimate] + ([se] if se in current.columns else [])
    pcols = keys + [estimate] + ([se] if se in previous.columns else [])
    use_rank = rank is not None and rank in current.columns and rank in previous.columns
    if use_rank:
        cols.append(rank)
        pcols.append(rank)
    use_n = "n" in current.columns and "n" in previous.columns
    if use_n:
        cols += ["n"] + (["deff"] if "deff" in current.columns else [])
        pcols += ["n"] + (["deff"] if "deff" in previous.columns else [])
    m = current[cols].merge(previous[pcols], on=keys, how="inner", suffixes=("", "_prev"))
    if se not in m.columns:
        m[se] = np.nan
    if f"{se}_prev" not in m.columns:
        m[f"{se}_prev"] = np.nan
    zq = stats.norm.ppf((1 + level) / 2)
    cur = m[estimate].to_numpy(float)
    prev = m[f"{estimate}_prev"].to_numpy(float)
    change = cur - prev
    cse = np.sqrt(m[se].to_numpy(float) ** 2 + m[f"{se}_prev"].to_numpy(float) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        zval = change / cse
    pval = 2 * stats.norm.sf(np.abs(zval))
    out = m[keys].copy()
    out["estimate_prev"] = prev
    out["se_prev"] = m[f"{se}_prev"].to_numpy(float)
    out["estimate"] = cur
    out["se"] = m[se].to_numpy(float)
    out["change"] = change
    out["change_se"] = cse
    out["change_ci_low"] = change - zq * cse
    out["change_ci_high"] = change + zq * cse
    out["z"] = zval
    out["p_value"] = pval
    se_bad = ~(np.nan_to_num(out["se"].to_numpy(float), nan=0.0) > 0) | \
        ~(np.nan_to_num(out["se_prev"].to_numpy(float), nan=0.0) > 0)
    small = np.zeros(len(out), dtype=bool)
    if use_n:
        n_cur, n_prev = m["n"].to_numpy(float), m["n_prev"].to_numpy(float)
        out.insert(len(keys), "n_prev", m["n_prev"].to_numpy())
        out.insert(len(keys) + 3, "n", m["n"].to_numpy())
        small = (n_cur < min_n) | (n_prev < min_n)
        weak = small | se_bad
        if weak.any():
            # Newcombe's hybrid score interval from the two years' Wilson intervals
            l1, u1 = score_interval(cur, _effective_n(n_cur, m["deff"].to_numpy(float) if "deff" in m else None), level)
            l0, u0 = score_interval(prev, _effective_n(n_prev, m["deff_prev"].to_numpy(float) if "deff_prev" in m else None), level)
            lo = change - np.sqrt((cur - l1) ** 2 + (u0 - prev) ** 2)
            hi = change + np.sqrt((u1 - cur) ** 2 + (prev - l0) ** 2)
            out["change_ci_low"] = np.where(weak, lo, out["change_ci_low"])
            out["change_ci_high"] = np.where(weak, hi, out["change_ci_high"])
    no_verdict = small | se_bad
    out.loc[no_verdict, ["z", "p_value"]] = np.nan
    sig = pd.array(np.abs(zval) > zq, dtype="boolean")
    sig[no_verdict | np.isnan(zval)] = pd.NA
    out["significant"] = sig
    reason = np.where(small, "below_min_n", np.where(se_bad, "se_zero_or_undefined", None))
    out["reason"] = pd.array(reason, dtype="string")
    if use_rank:
        r_prev = pd.to_numeric(m[f"{rank}_prev"], errors="coerce").astype("Float64")
        r_cur = pd.to_numeric(m[rank], errors="coerce").astype("Float64")
        out["rank_prev"] = r_prev.astype("Int64")
        out["rank"] = r_cur.astype("Int64")
        out["rank_change"] = (r_prev - r_cur).astype("Int64")
    return out.reset_index(drop=True)


DEFAULT_TARGETS = pd.DataFrame(
    {
        "year": [2023, 2025],
        "target_low": [0.85, 0.90],
        "target_high": [np.nan, 0.95],
        "target_source": [
            "Kế hoạch 143/KH-UBND ngày 11/6/2021 (Hà Nội): năm 2023 đạt trên 85%",
            "Kế hoạch 143/KH-UBND ngày 11/6/2021 (Hà Nội): năm 2025 đạt từ 90% đến 95%",
        ],
    }
)
"""Hà Nội plan 143/KH-UBND: SIPAS above 85 % in 2023, 90-95 % in 2025 (shares 0-1)."""


def _target_for(year: int, targets: pd.DataFrame, interpolate: bool) -> tuple[float, float, str]:
    t = targets.sort_values("year")
    hit = t[t["year"] == year]
    if len(hit):
        r = hit.iloc[0]
        return float(r["target_low"]), float(r["target_high"]), str(r["target_source"])
    if interpolate and t["year"].min() < year < t["year"].max():
        lo = float(np.interp(year, t["year"], t["target_low"]))
        return lo, np.nan, f"interpolated between {', '.join(map(str, t['year']))} targets"
    return np.nan, np.nan, ""


def track_targets(
    df: pd.DataFrame,
    year: int | str = "year",
    targets: pd.DataFrame | Mapping[int, float | tuple[float, float]] | None = None,
    *,
    estimate: str = "estimate",
    ci_columns: tuple[str, str] = ("ci_low", "ci_high"),
    interpolate: bool = True,
) -> pd.DataFrame:
    """Compare indices with targets (default: plan 143/KH-UBND, :data:`DEFAULT_TARGETS`).

    ``year`` is a column name of ``df`` or one year for all rows. ``targets``: a DataFrame like
    :data:`DEFAULT_TARGETS` or a mapping ``{year: low}`` / ``{year: (low, high)}``. Years between
    two target years get a linearly interpolated lower target when ``interpolate``. Status:
    ``met`` when the CI lies entirely at or above the lower target, ``not_met`` when it lies below,
    ``not_distinguishable`` otherwise (or, without CIs, by the point estimate: ``met_point`` /
    ``not_met_point``); ``no_target`` for years without one. ``gap = estimate - target_low``.
    """
    if targets is None:
        tdf = DEFAULT_TARGETS
    elif isinstance(targets, pd.DataFrame):
        need = {"year", "target_low"}
        if not need <= set(targets.columns):
            raise ValueError(f"targets table needs columns {sorted(need)}")
        tdf = targets.assign(
            target_high=targets.get("target_high", np.nan), target_source=targets.get("target_source", "user"))
    else:
        rows = []
        for y, v in targets.items():
            lo, hi = (v if isinstance(v, (tuple, list)) else (v, np.nan))
            rows.append({"year": int(y), "target_low": float(lo), "target_high": float(hi) if hi is not None else np.nan,
                         "target_source": "user"})
        tdf = pd.DataFrame(rows)
    if ((tdf["target_low"] <= 0) | (tdf["target_low"] > 1)).any():
        raise ValueError("targets must be shares between 0 and 1 (0.85, not 85)")
    if estimate not in df.columns:
        raise ValueError(f"column {estimate!r} not found")
    out = df.copy()
    years = out[year].astype(int).to_numpy() if isinstance(year, str) and year in df.columns else np.full(len(df), int(year))
    if isinstance(year, str) and year not in df.columns:
        raise ValueError(f"year column {year!r} not found; pass a year number instead")
    out["year"] = years
    tv = {y: _target_for(int(y), tdf, interpolate) for y in np.unique(years)}
    out["target_low"] = [tv[y][0] for y in years]
    out["target_high"] = [tv[y][1] for y in years]
    out["target_source"] = [tv[y][2] for y in years]
    out["gap"] = out[estimate] - out["target_low"]
    has_ci = all(c in out.columns for c in ci_columns) and out[list(ci_columns)].notna().all(axis=None)
    lo_t = out["target_low"].to_numpy(float)
    est = out[estimate].to_numpy(float)
    if has_ci:
        status = np.where(out[ci_columns[0]].to_numpy(float) >= lo_t, "met",
                          np.where(out[ci_columns[1]].to_numpy(float) < lo_t, "not_met", "not_distinguishable"))
    else:
        status = np.where(est >= lo_t, "met_point", "not_met_point")
    out["status"] = np.where(np.isnan(lo_t), "no_target", status)
    return out


def improvement_priorities(
    indices: pd.DataFrame,
    city: pd.DataFrame | None = None,
    *,
    instrument=None,
    n_weakest: int = 3,
    unit: str = "unit_id",
    min_n: int = 0,
) -> pd.DataFrame:
    """Per unit, the criteria to improve: the lowest indices and the largest gaps to the city.

    ``indices`` is the :func:`satisfaction_indices` table (share measure); ``city`` a table with
    ``code, estimate`` for the city (e.g. ``city_indices`` rows of one scope, level item) matched
    to each unit by ``scope``/``unit_type`` when both have it; without ``city`` the gap is taken
    to the unweighted mean of the units. Only criteria (items that belong to an element) are
    ranked when ``instrument`` is given; items with fewer than ``min_n`` answers are left out.
    """
    items = indices[indices["level"] == "item"].copy()
    if instrument is not None:
        crit = dict(zip(instrument.items["code"], instrument.items["element"]))
        items = items[items["code"].map(crit).notna()]
        items["element"] = items["code"].map(crit)
    items = items[items["estimate"].notna() & (items["n"] >= min_n)]
    if items.empty:
        raise ValueError("no item-level indices to rank (check level == 'item' rows and min_n)")
    if city is not None:
        c = city[city["level"] == "item"] if "level" in city.columns else city
        if "scope" in c.columns and "unit_type" in items.columns and c["scope"].isin(items["unit_type"]).any():
            ref = c.rename(columns={"scope": "unit_type", "estimate": "city_estimate"})[["unit_type", "code", "city_estimate"]]
            items = items.merge(ref, on=["unit_type", "code"], how="left")
        else:
            ref = c.rename(columns={"estimate": "city_estimate"})[["code", "city_estimate"]]
            if ref["code"].duplicated().any():
                raise ValueError("city table has several rows per code: pass one scope (e.g. scope == 'all')")
            items = items.merge(ref, on="code", how="left")
    else:
        items["city_estimate"] = items.groupby("code")["estimate"].transform("mean")
    items["gap_to_city"] = items["estimate"] - items["city_estimate"]
    items["rank_in_unit"] = items.groupby(unit)["estimate"].rank(method="first").astype(int)
    items["gap_rank"] = items.groupby(unit)["gap_to_city"].rank(method="first").astype(int)
    items["weakest"] = items["rank_in_unit"] <= n_weakest
    items["largest_gap"] = (items["gap_rank"] <= n_weakest) & (items["gap_to_city"] < 0)
    keep = [unit] + (["unit_type"] if "unit_type" in items.columns else []) + \
        ["code"] + (["element"] if "element" in items.columns else []) + \
        ["estimate", "se", "n", "city_estimate", "gap_to_city", "rank_in_unit", "gap_rank", "weakest", "largest_gap"]
    return items[[k for k in keep if k in items.columns]].sort_values([unit, "rank_in_unit"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# respondent-level scores and key-driver analysis
# ----------------------------------------------------------------------------------------------
def respondent_scores(data: pd.DataFrame, instrument) -> pd.DataFrame:
    """Each respondent's mean rating per element (E1..E5) and over all answered criteria.

    Returns a DataFrame aligned with ``data`` with columns ``E1..E5``, ``overall_mean``,
    ``overall_share`` (share of the answered criteria rated 4-5: the respondent-level analogue of
    the pooled SIPAS) and ``overall_satisfied`` (overall mean >= the satisfied threshold); NaN
    when no criterion was answered.
    """
    out = pd.DataFrame(index=data.index)
    crit = []
    for e, codes in instrument.element_items().items():
        missing = [c for c in codes if c not in data.columns]
        if missing:
            raise ValueError(f"criterion column(s) {missing} not in the data")
        out[e] = data[codes].mean(axis=1, skipna=True)
        crit += codes
    vals = data[crit]
    out["overall_mean"] = vals.mean(axis=1, skipna=True)
    n_ans = vals.notna().sum(axis=1)
    share = (vals >= instrument.satisfied_min).sum(axis=1) / n_ans.where(n_ans > 0)
    out["overall_share"] = share
    sat = (out["overall_mean"] >= instrument.satisfied_min).astype(float)
    out["overall_satisfied"] = sat.where(out["overall_mean"].notna())
    return out


def key_drivers(
    data: pd.DataFrame,
    instrument,
    *,
    weights: str | None = None,
    outcome: str | None = None,
    elements: Sequence[str] | None = None,
    performance: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Key-driver analysis: which elements move overall satisfaction (weighted GLM, statsmodels).

    Model (fractional logit, Papke & Wooldridge 1996): ``E[s_i] = logistic(b0 + sum_e b_e x_ie)``
    where ``s_i`` is respondent i's overall satisfaction -- by default the share of the criteria
    they answered that they rated 4-5 (``overall_share``) -- and ``x_ie`` their mean rating of
    element e. Fitted with statsmodels GLM (binomial family, logit link) and the survey weights
    normalized to mean 1 (``var_weights``); coefficient SEs are model-based, not design-based: a
    descriptive tool. Caveat: the Phụ lục 5 forms have no separate global satisfaction question,
    so the default outcome is built from the same ratings as the predictors (derived importance);
    pass ``outcome`` (a 0/1 or 0-1 column, e.g. a global question of another form) when there is
    one. E5 is left out by default (asked only of respondents who gave feedback).
    ``importance`` = |standardized coefficient| / sum of them; ``performance`` (e.g. the city's
    element indices) gives the importance-performance quadrant, split at the means:
    ``concentrate_here`` (important, low), ``keep_up`` (important, high), ``low_priority``,
    ``possible_overkill``.
    """
    # the GLM module alone: statsmodels.api loads every model (0.35 s more in each kernel)
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.tools import add_constant

    sc = respondent_scores(data, instrument)
    elems = list(elements) if elements is not None else [e for e in instrument.element_items() if e != "E5"]
    y = data[outcome].astype(float) if outcome is not None else sc["overall_share"]
    w = data[weights].to_numpy(float) if weights is not None else np.ones(len(data))
    X = sc[elems]
    ok = X.notna().all(axis=1).to_numpy() & y.notna().to_numpy() & np.isfinite(w) & (w > 0)
    if ok.sum() < len(elems) + 10:
        raise ValueError(f"only {int(ok.sum())} complete respondents for the driver model; need more")
    yv = y.to_numpy()[ok]
    if np.any((yv < 0) | (yv > 1)):
        raise ValueError(f"outcome {outcome!r} must be 0/1 or a share between 0 and 1")
    if len(np.unique(yv)) < 2:
        raise ValueError("the outcome does not vary (everyone satisfied or no one): no driver model")
    Xv = add_constant(X.to_numpy(float)[ok], has_constant="add")
    wv = w[ok] / w[ok].mean()
    fit = GLM(yv, Xv, family=families.Binomial(), var_weights=wv).fit()
    coef = fit.params[1:]
    se = fit.bse[1:]
    sd = np.sqrt(np.cov(Xv[:, 1:], rowvar=False, aweights=wv).diagonal())
    std = coef * sd
    imp = np.abs(std) / np.abs(std).sum()
    out = pd.DataFrame({
        "element": elems,
        "coef": coef,
        "se": se,
        "p_value": fit.pvalues[1:],
        "odds_ratio": np.exp(coef),
        "std_coef": std,
        "importance": imp,
    })
    if performance is not None:
        out["performance"] = out["element"].map(performance).astype(float)
        hi_i = out["importance"] >= out["importance"].mean()
        hi_p = out["performance"] >= out["performance"].mean()
        out["quadrant"] = np.select(
            [hi_i & ~hi_p, hi_i & hi_p, ~hi_i & ~hi_p], ["concentrate_here", "keep_up", "low_priority"],
            default="possible_overkill")
    else:
        out["performance"] = np.nan
        out["quadrant"] = ""
    out["model"] = "fractional logit (GLM binomial, survey weights as var_weights)"
    out["n"] = int(ok.sum())
    return out
