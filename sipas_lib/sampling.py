"""Sampling design (*chọn mẫu điều tra xã hội học*): sample sizes, allocation, selection, form ids.

The survey sample is drawn from each unit's list of people and organisations that received a result
at its one-stop shop (the *frame*). The stage runs in four steps, each a pure function:

1. :func:`sample_size` / :func:`margin_of_error` — how many questionnaires a target precision needs.
2. :func:`allocate` (over units, optionally by unit type with :func:`allocate_by_type`) and
   :func:`allocate_within` (inside a unit, over fields of procedure) — integer sample sizes that
   always sum exactly to the planned total, within a minimum and maximum per unit.
3. :func:`select` — stratified selection (stratum = unit x field) by simple random sampling (SRS),
   systematic sampling from the list sorted by date (implicit stratification), or systematic
   probability-proportional-to-size (PPS) sampling. Every selected row carries its inclusion
   probability and design weight; a reserve list is drawn in replacement order and a re-check
   (*phúc tra*) subsample is flagged.
4. :func:`assign_form_ids` — the 6-digit form id (*Mã số phiếu*), see :func:`make_form_ids`.

Personal data (name, phone, address) stays in the frame. :func:`select` never returns it; only
:func:`write_mailing_list` joins it back, and only into the private raw-data folder
(:attr:`sipas_lib.config.RunPaths.private`).

Form id scheme (Mã số phiếu, 6 digits ``UUSSSC``)
-------------------------------------------------
* digits 1-2 ``UU``: the unit's 2-digit ``code`` from ``units.csv`` (10-29 departments,
  30-59 districts);
* digits 3-5 ``SSS``: serial 001-999 within the unit (main sample first, then reserves in
  replacement order);
* digit 6 ``C``: Luhn check digit over the first five digits. Luhn detects every single mistyped
  digit and every transposition of adjacent digits except ``0 <-> 9``.

References
----------
Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley (sample size with finite-population
correction: §4.4; Neyman allocation: §5.5; systematic sampling: ch. 8).
Bankier, M. D. (1988). Power allocations: determining sample sizes for subnational areas.
*The American Statistician* 42(3), 174-177.
Madow, W. G. (1949). On the theory of systematic sampling, II. *Ann. Math. Stat.* 20, 333-354.
Tillé, Y. & Matei, A. R package ``sampling``: ``inclusionprobabilities``, ``UPsystematic``.
Efraimidis, P. S. & Spirakis, P. G. (2006). Weighted random sampling with a reservoir.
*Information Processing Letters* 97(5), 181-185 (reserve order for unequal probabilities).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib import config, formids

ALLOCATION_METHODS = ("equal", "proportional", "neyman", "power")
SELECTION_METHODS = ("systematic", "srs", "pps")
PERSONAL_COLUMNS = ("applicant_name", "phone", "address")
FRAME_COLUMNS = ("transaction_id", "unit_id", "field", "received_on", "channel")
STRATUM_SEPARATOR = "|"
MAX_SERIAL = 999

__all__ = [
    "ALLOCATION_METHODS",
    "SELECTION_METHODS",
    "PERSONAL_COLUMNS",
    "sample_size",
    "margin_of_error",
    "count_frame",
    "allocate",
    "allocate_by_type",
    "allocate_within",
    "city_margin_of_error",
    "compare_allocations",
    "inclusion_probabilities",
    "select",
    "stratum_label",
    "make_form_ids",
    "check_form_ids",
    "unit_code_of",
    "assign_form_ids",
    "achieved_distribution",
    "design_summary",
    "write_mailing_list",
]


# --------------------------------------------------------------------------------------------
# Sample size and margin of error
# --------------------------------------------------------------------------------------------
def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(stats.norm.ppf(0.5 + level / 2))


def _check_common(p, deff, response_rate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    deff = np.asarray(deff, dtype=float)
    response_rate = np.asarray(response_rate, dtype=float)
    if np.any(~np.isfinite(p)) or np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"p (the expected proportion satisfied) must lie strictly between 0 and 1, got {p!r}")
    if np.any(~np.isfinite(deff)) or np.any(deff <= 0):
        raise ValueError(f"deff (design effect) must be a positive number, got {deff!r}")
    if np.any(~np.isfinite(response_rate)) or np.any((response_rate <= 0) | (response_rate > 1)):
        raise ValueError(f"response_rate must lie in (0, 1], got {response_rate!r}")
    return p, deff, response_rate


def _check_population(population) -> np.ndarray | None:
    if population is None:
        return None
    pop = np.asarray(population, dtype=float)
    if np.any(np.isnan(pop)):
        raise ValueError("population (frame size N) has missing values")
    if np.any(pop < 1):
        raise ValueError(f"population (frame size N) must be at least 1, got {pop[pop < 1][:5]!r}")
    return pop


def _scalar_or_array(x: np.ndarray, kind: type):
    if x.ndim == 0:
        return kind(x)
    return x


def sample_size(
    margin: float | np.ndarray,
    level: float = 0.95,
    p: float = 0.5,
    deff: float = 1.0,
    population: float | np.ndarray | None = None,
    response_rate: float = 1.0,
) -> int | np.ndarray:
    r"""Number of questionnaires to issue so that a proportion is estimated within ``± margin``.

    .. math::

        n_0 = \frac{z^2\,p(1-p)\,\mathrm{deff}}{e^2}, \qquad
        n_{\mathrm{resp}} = \frac{n_0}{1 + (n_0 - 1)/N}, \qquad
        n = \left\lceil \frac{n_{\mathrm{resp}}}{r} \right\rceil

    with :math:`z` the normal quantile for ``level``, :math:`e` the ``margin`` (on the 0-1
    scale: 0.05 = 5 percentage points), :math:`N` the ``population`` (finite-population correction
    of Cochran 1977, eq. 4.2; omitted when ``population`` is None) and :math:`r` the expected
    ``response_rate`` (questionnaires are issued so that :math:`n r` are expected back). The result
    is capped at :math:`N`. :func:`margin_of_error` is the inverse.

    Parameters
    ----------
    margin
        Half-width of the confidence interval for a proportion, 0-1 scale. Scalar or array.
    level
        Confidence level, e.g. 0.95.
    p
        Expected proportion; 0.5 is the conservative choice.
    deff
        Design effect (1 for simple random sampling).
    population
        Frame size N (scalar or array broadcast against ``margin``).
    response_rate
        Expected share of issued questionnaires that come back.

    Returns
    -------
    int or numpy.ndarray of int
        Questionnaires to issue.

    Examples
    --------
    >>> sample_size(0.05)
    385
    >>> sample_size(0.05, population=1000)
    278
    """
    e = np.asarray(margin, dtype=float)
    if np.any(~np.isfinite(e)) or np.any((e <= 0) | (e >= 1)):
        raise ValueError(f"margin must lie strictly between 0 and 1 (0.05 = ±5 points), got {margin!r}")
    p, deff, r = _check_common(p, deff, response_rate)
    z = _z(level)
    n0 = z**2 * p * (1 - p) * deff / e**2
    pop = _check_population(population)
    n_resp = n0 if pop is None else n0 / (1 + (n0 - 1) / pop)
    n = np.ceil(n_resp / r - 1e-9)
    if pop is not None:
        n = np.minimum(n, pop)
    return _scalar_or_array(n.astype(np.int64), int)


def margin_of_error(
    n: float | np.ndarray,
    level: float = 0.95,
    p: float = 0.5,
    deff: float = 1.0,
    population: float | np.ndarray | None = None,
    response_rate: float = 1.0,
) -> float | np.ndarray:
    r"""Expected half-width of the confidence interval of a proportion for ``n`` questionnaires issued.

    .. math::

        e = z \sqrt{\frac{\mathrm{deff}\;p(1-p)}{m}\cdot\frac{N - m}{N - 1}}, \qquad m = n\,r

    (Cochran 1977, §3.4 with the finite-population correction; the factor is 1 when ``population``
    is None; :math:`e = 0` for a census, :math:`m \ge N`). The inverse of :func:`sample_size`.

    Examples
    --------
    >>> round(margin_of_error(385), 4)
    0.0499
    """
    n = np.asarray(n, dtype=float)
    if np.any(np.isnan(n)) or np.any(n <= 0):
        raise ValueError(f"sample size n must be positive, got {n!r}")
    p, deff, r = _check_common(p, deff, response_rate)
    z = _z(level)
    m = n * r
    pop = _check_population(population)
    if pop is None:
        fpc = np.ones_like(m)
    else:
        if np.any(n > pop):
            raise ValueError("sample size n exceeds the population (frame size N)")
        with np.errstate(divide="ignore", invalid="ignore"):
            fpc = np.where(m >= pop, 0.0, (pop - m) / np.where(pop > 1, pop - 1, 1.0))
    e = z * np.sqrt(deff * p * (1 - p) / m * fpc)
    return _scalar_or_array(e, float)


# --------------------------------------------------------------------------------------------
# Allocation
# --------------------------------------------------------------------------------------------
def _check_sizes(df: pd.DataFrame, size_col: str, label_col: str) -> np.ndarray:
    if size_col not in df.columns:
        raise ValueError(f"frame counts have no column {size_col!r} (the frame size N)")
    sizes = pd.to_numeric(df[size_col], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(sizes)
    if bad.any():
        who = ", ".join(map(str, df.loc[bad, label_col].astype(str).unique()[:5]))
        raise ValueError(f"column {size_col!r} has missing or non-numeric sizes (units: {who})")
    neg = sizes < 0
    if neg.any():
        who = ", ".join(map(str, df.loc[neg, label_col].astype(str).unique()[:5]))
        raise ValueError(f"column {size_col!r} has negative sizes (units: {who})")
    if np.any(np.abs(sizes - np.round(sizes)) > 1e-9):
        raise ValueError(f"column {size_col!r} must hold whole numbers of transactions")
    return np.round(sizes)


def _check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(map(repr, missing))}; it has {list(df.columns)}")


def _method_weights(
    method: str, N: np.ndarray, sd: np.ndarray | None, exponent: float
) -> np.ndarray:
    if method not in ALLOCATION_METHODS:
        raise ValueError(f"unknown allocation method {method!r}; choose one of {', '.join(ALLOCATION_METHODS)}")
    if method == "equal":
        return np.ones_like(N)
    if method == "proportional":
        return N.astype(float)
    if method == "neyman":
        if sd is None:
            raise ValueError("Neyman allocation needs the standard deviation of each unit (argument sd)")
        return N * sd
    if not 0 <= exponent <= 1:
        raise ValueError(f"power allocation exponent must lie in [0, 1], got {exponent!r}")
    w = np.power(N.astype(float), exponent)
    return w if sd is None else w * sd


def _sd_values(sd, table: pd.DataFrame, key_col: str) -> np.ndarray | None:
    if sd is None:
        return None
    if isinstance(sd, str):
        if sd not in table.columns:
            raise ValueError(f"frame counts have no column {sd!r} for the standard deviations")
        values = pd.to_numeric(table[sd], errors="coerce")
    else:
        values = pd.Series(sd).reindex(table[key_col].to_numpy())
        values = pd.to_numeric(values, errors="coerce")
    values = values.to_numpy(dtype=float)
    if np.any(~np.isfinite(values)) or np.any(values < 0):
        raise ValueError("standard deviations (sd) must be given, finite and non-negative for every unit")
    return values


def _grouped_rank(groups: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """0-based rank of each element within its group, ordered by ``keys`` (first key = primary)."""
    order = np.lexsort(tuple(reversed(keys)) + (groups,))
    g_sorted = groups[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    run_len = np.diff(np.r_[starts, g_sorted.size])
    pos = np.arange(g_sorted.size) - np.repeat(starts, run_len)
    rank = np.empty_like(pos)
    rank[order] = pos
    return rank


def _bounded_integer_allocation(
    groups: np.ndarray,
    weights: np.ndarray,
    totals: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    tiebreak: np.ndarray,
) -> np.ndarray:
    r"""Integer :math:`n_i` with :math:`\sum_{i \in g} n_i = T_g` and :math:`L_i \le n_i \le U_i`.

    The continuous solution is :math:`x_i = \min(U_i, \max(L_i, \lambda_g w_i))` with
    :math:`\lambda_g` chosen so each group sums to its total (found by bisection, then made exact on
    the active set); integers are the floors plus one for the largest remainders (Hamilton's
    method), ties going to the larger ``tiebreak`` value, then to the earlier element. Because
    :math:`L \le x \le U` with integer bounds, every element that receives the extra one has
    :math:`\lfloor x_i\rfloor < U_i`, so the bounds hold. Vectorized over groups.
    """
    G = totals.size
    w = weights.astype(float)
    reach = np.bincount(groups, weights=np.where(w > 0, upper, lower), minlength=G)
    if np.any(reach < totals):
        raise ValueError(
            "the total cannot be reached: units with a zero weight (e.g. a standard deviation of 0) "
            "stay at their minimum and the others at their maximum"
        )
    lam_lo = np.zeros(G)
    ratio = np.where(w > 0, upper / np.where(w > 0, w, 1), 0.0)
    lam_hi = np.zeros(G)
    np.maximum.at(lam_hi, groups, ratio)
    lam_hi = lam_hi + 1.0
    for _ in range(120):
        lam = (lam_lo + lam_hi) / 2
        x = np.clip(lam[groups] * w, lower, upper)
        s = np.bincount(groups, weights=x, minlength=G)
        too_big = s > totals
        lam_hi = np.where(too_big, lam, lam_hi)
        lam_lo = np.where(too_big, lam_lo, lam)
    lam = (lam_lo + lam_hi) / 2
    raw = lam[groups] * w
    at_low = raw <= lower
    at_high = raw >= upper
    free = ~(at_low | at_high)
    fixed = np.where(at_low, lower, np.where(at_high, upper, 0.0))
    rest = totals - np.bincount(groups, weights=fixed, minlength=G)
    wfree = np.bincount(groups, weights=np.where(free, w, 0.0), minlength=G)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam_exact = np.where(wfree > 0, rest / wfree, 0.0)
    x = np.where(free, lam_exact[groups] * w, fixed)
    x = np.clip(x, lower, upper)

    base = np.clip(np.floor(x + 1e-9), lower, upper)
    short = totals - np.bincount(groups, weights=base, minlength=G).round().astype(np.int64)
    frac = x - base
    n = base.astype(np.int64)
    # add one to the largest remainders where a group is short
    if np.any(short > 0):
        eligible = (n < upper) & (short[groups] > 0)
        key = np.where(eligible, frac, -np.inf)
        rank = _grouped_rank(groups, -key, -tiebreak, np.arange(n.size))
        n = n + (eligible & (rank < short[groups])).astype(np.int64)
    if np.any(short < 0):  # only from floating-point slack
        eligible = (n > lower) & (short[groups] < 0)
        key = np.where(eligible, frac, np.inf)
        rank = _grouped_rank(groups, key, tiebreak, np.arange(n.size))
        n = n - (eligible & (rank < -short[groups])).astype(np.int64)
    reached = np.bincount(groups, weights=n, minlength=G).round().astype(np.int64)
    if not np.array_equal(reached, totals.astype(np.int64)):
        raise RuntimeError("allocation rounding failed to reach the total; please report this input")
    return n


def count_frame(
    frame: pd.DataFrame, by: Sequence[str] = ("unit_id", "field", "channel"), size_col: str = "N"
) -> pd.DataFrame:
    """Count frame rows by ``by`` (the contract's ``frame_counts.csv``: ``unit_id, field, channel, N``).

    No personal data is kept: only the grouping columns and the count.
    """
    by = list(by)
    _check_columns(frame, by, "frame")
    out = frame.groupby(by, observed=True, sort=True, dropna=False).size().rename(size_col).reset_index()
    return out


def allocate(
    frame_counts: pd.DataFrame,
    total: int,
    method: str = "proportional",
    *,
    minimum: int = 0,
    maximum: int | None = None,
    exponent: float = 0.5,
    sd: str | Mapping | pd.Series | None = None,
    units: Sequence[str] | None = None,
    unit_col: str = "unit_id",
    size_col: str = "N",
    level: float = 0.95,
    p: float = 0.5,
    deff: float = 1.0,
    response_rate: float = 1.0,
) -> pd.DataFrame:
    r"""Share ``total`` questionnaires among units, in whole numbers that sum exactly to ``total``.

    Target (continuous) sizes :math:`x_h = \min(U_h, \max(L_h, \lambda w_h))`, :math:`\sum x_h = T`,
    with weights

    * ``equal``: :math:`w_h = 1`;
    * ``proportional``: :math:`w_h = N_h`;
    * ``neyman``: :math:`w_h = N_h S_h` (Cochran 1977, §5.5; ``sd`` gives :math:`S_h`);
    * ``power``: :math:`w_h = S_h N_h^{a}` (Bankier 1988 with the coefficient of variation
      :math:`S_h` taken as 1 unless ``sd`` is given; ``a = exponent``; ``a = 0`` is equal,
      ``a = 1`` proportional allocation, ``a = 0.5`` the usual compromise between unit-level and
      city-level precision);

    bounds :math:`L_h = \min(\mathrm{minimum}, N_h)` and :math:`U_h = \min(\mathrm{maximum}, N_h)`
    (a unit whose frame is smaller than the minimum is taken whole). Whole numbers by the largest
    remainder method, which keeps the bounds and the exact total.

    Parameters
    ----------
    frame_counts
        Frame sizes; several rows per unit (e.g. unit x field x channel) are summed.
    total
        Questionnaires to issue over these units (e.g. 1250 departments, 4800 districts).
    method
        ``equal``, ``proportional``, ``neyman`` or ``power``.
    minimum, maximum
        Bounds per unit (``maximum`` None = no bound beyond the frame size).
    exponent
        Power-allocation exponent :math:`a`.
    sd
        Standard deviation (Neyman) or coefficient of variation (power) per unit: a column name of
        ``frame_counts`` (constant within a unit) or a mapping unit -> value.
    units
        Units that must be covered; a unit listed here without frame rows raises ``ValueError``.
    level, p, deff, response_rate
        Assumptions for the expected margin of error (see :func:`margin_of_error`).

    Returns
    -------
    pandas.DataFrame
        One row per unit: ``unit_id, N, n, sampling_fraction, moe, method``.

    Examples
    --------
    >>> fc = pd.DataFrame({"unit_id": ["A", "B", "C"], "N": [100, 300, 600]})
    >>> allocate(fc, 100, "proportional")["n"].tolist()
    [10, 30, 60]
    """
    _check_columns(frame_counts, [unit_col], "frame counts")
    if method not in ALLOCATION_METHODS:
        raise ValueError(f"unknown allocation method {method!r}; choose one of {', '.join(ALLOCATION_METHODS)}")
    if frame_counts[unit_col].isna().any():
        raise ValueError(f"frame counts have rows with a missing {unit_col!r}")
    sizes = _check_sizes(frame_counts, size_col, unit_col)
    table = (
        frame_counts.assign(**{size_col: sizes})
        .groupby(unit_col, sort=True)[size_col]
        .sum()
        .reset_index()
    )
    if units is not None:
        listed = pd.Index(pd.unique(np.asarray(list(units), dtype=object)))
        absent = listed.difference(pd.Index(table[unit_col]))
        if len(absent):
            raise ValueError(f"unit(s) with an empty frame (no transactions): {', '.join(map(str, absent[:10]))}")
        table = table[table[unit_col].isin(listed)].reset_index(drop=True)
    N = table[size_col].to_numpy(dtype=float)
    if table.empty:
        raise ValueError("frame counts have no units to allocate to")
    empty = N == 0
    if empty.any():
        raise ValueError(
            "unit(s) with an empty frame (N = 0): " + ", ".join(map(str, table.loc[empty, unit_col][:10]))
        )
    total_f = float(total)
    if not math.isfinite(total_f) or total_f != round(total_f) or total_f <= 0:
        raise ValueError(f"total must be a positive whole number of questionnaires, got {total!r}")
    total = int(round(total_f))
    minimum = int(minimum)
    if minimum < 0:
        raise ValueError(f"minimum per unit must be >= 0, got {minimum}")
    H = len(table)
    if H * minimum > total:
        raise ValueError(
            f"total {total} is smaller than {H} units x minimum {minimum} = {H * minimum}; "
            "lower the minimum or raise the total"
        )
    if maximum is not None:
        maximum = int(maximum)
        if maximum < minimum:
            raise ValueError(f"maximum per unit ({maximum}) is below the minimum ({minimum})")
    upper = N.copy() if maximum is None else np.minimum(N, maximum)
    lower = np.minimum(N, minimum).astype(float)
    if upper.sum() < total:
        raise ValueError(
            f"total {total} exceeds what the frames allow ({int(upper.sum())} = sum over units of "
            "min(frame size, maximum)); lower the total or raise the maximum"
        )
    # Neyman/power read the unit's sd; a column must be constant within a unit
    sd_vals = None
    if sd is not None:
        if isinstance(sd, str):
            _check_columns(frame_counts, [sd], "frame counts")
            per_unit = frame_counts.groupby(unit_col, sort=True)[sd].agg(["min", "max"])
            if (per_unit["min"] != per_unit["max"]).any():
                raise ValueError(f"column {sd!r} must be constant within each unit")
            sd_vals = _sd_values(per_unit["min"].reindex(table[unit_col]), table, unit_col)
        else:
            sd_vals = _sd_values(sd, table, unit_col)
    w = _method_weights(method, N, sd_vals, exponent)
    n = _bounded_integer_allocation(
        np.zeros(H, dtype=np.int64), w, np.array([total]), lower, upper, tiebreak=N
    )
    out = pd.DataFrame(
        {
            unit_col: table[unit_col].to_numpy(),
            "N": N.astype(np.int64),
            "n": n,
            "sampling_fraction": n / N,
        }
    )
    moe = np.full(H, np.nan)
    has = n > 0
    if has.any():
        moe[has] = margin_of_error(
            n[has], level=level, p=p, deff=deff, population=N[has], response_rate=response_rate
        )
    out["moe"] = moe
    out["method"] = method if method != "power" else f"power({exponent:g})"
    return out


def allocate_by_type(
    frame_counts: pd.DataFrame,
    units: pd.DataFrame,
    totals: Mapping[str, int],
    method: str = "proportional",
    *,
    unit_col: str = "unit_id",
    type_col: str = "unit_type",
    **kwargs,
) -> pd.DataFrame:
    """:func:`allocate` separately for each unit type with its own total.

    ``totals`` maps a unit type to its questionnaires, e.g. ``{"department": 1250,
    "district": 4800}`` (Hà Nội plan 236/KH-UBND, 2021). Every unit of a listed type in ``units``
    must have frame rows. Returns the :func:`allocate` table with a ``unit_type`` column.
    """
    _check_columns(units, [unit_col, type_col], "units table")
    if not totals:
        raise ValueError("totals is empty: give questionnaires per unit type, e.g. {'department': 1250}")
    unknown = set(totals) - set(units[type_col].dropna().unique())
    if unknown:
        raise ValueError(f"unit type(s) {sorted(unknown)} not found in column {type_col!r} of the units table")
    parts = []
    for unit_type, total in totals.items():  # one block per unit type (a handful)
        ids = units.loc[units[type_col] == unit_type, unit_col]
        part = allocate(
            frame_counts[frame_counts[unit_col].isin(ids)], total, method, units=ids, unit_col=unit_col, **kwargs
        )
        part.insert(1, type_col, unit_type)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def stratum_label(units, fields) -> np.ndarray:
    """Stratum label ``"<unit_id>|<field>"`` (e.g. ``"S01|justice"``, as in ``sample.csv``), the ``stratum`` column."""
    u = pd.Series(np.asarray(units, dtype=object)).astype(str)
    f = pd.Series(np.asarray(fields, dtype=object)).astype(str)
    return (u + STRATUM_SEPARATOR + f).to_numpy(dtype=object)


def allocate_within(
    frame_counts: pd.DataFrame,
    allocation: pd.DataFrame,
    *,
    by: str = "field",
    method: str = "proportional",
    minimum: int = 0,
    exponent: float = 0.5,
    sd: str | None = None,
    unit_col: str = "unit_id",
    size_col: str = "N",
    n_col: str = "n",
) -> pd.DataFrame:
    r"""Share each unit's ``n`` over its fields of procedure (the strata of :func:`select`).

    The same rule as :func:`allocate`, applied inside every unit at once: continuous target
    :math:`x_{hk} = \min(N_{hk}, \max(L, \lambda_h w_{hk}))` with :math:`\sum_k x_{hk} = n_h`,
    then largest-remainder rounding, so :math:`\sum_k n_{hk} = n_h` exactly.

    Returns
    -------
    pandas.DataFrame
        One row per stratum with frame rows: ``unit_id, field, stratum, N_h, n_h, f_h``.
    """
    _check_columns(frame_counts, [unit_col, by], "frame counts")
    _check_columns(allocation, [unit_col, n_col], "allocation")
    if method not in ALLOCATION_METHODS:
        raise ValueError(f"unknown allocation method {method!r}; choose one of {', '.join(ALLOCATION_METHODS)}")
    if allocation[unit_col].duplicated().any():
        twice = allocation.loc[allocation[unit_col].duplicated(), unit_col].iloc[0]
        raise ValueError(f"allocation lists unit {twice} twice")
    n_unit = pd.to_numeric(allocation[n_col], errors="coerce")
    if n_unit.isna().any() or (n_unit < 0).any():
        raise ValueError(f"allocation column {n_col!r} must hold non-negative whole numbers")
    if frame_counts[by].isna().any():
        raise ValueError(f"frame counts have rows with a missing {by!r}")
    sizes = _check_sizes(frame_counts, size_col, unit_col)
    agg = {size_col: "sum"}
    fc = frame_counts.assign(**{size_col: sizes})
    if sd is not None:
        _check_columns(frame_counts, [sd], "frame counts")
        agg[sd] = "first"
    strata = fc.groupby([unit_col, by], sort=True, observed=True).agg(agg).reset_index()
    strata = strata[strata[size_col] > 0]
    strata = strata[strata[unit_col].isin(allocation[unit_col])].reset_index(drop=True)
    units_idx = pd.Index(allocation[unit_col])
    g = units_idx.get_indexer(strata[unit_col])
    totals = n_unit.to_numpy(dtype=np.int64)
    N_unit = np.bincount(g, weights=strata[size_col].to_numpy(dtype=float), minlength=len(units_idx))
    empty = (N_unit == 0) & (totals > 0)
    if empty.any():
        raise ValueError("unit(s) with an empty frame (no transactions): " + ", ".join(map(str, units_idx[empty][:10])))
    too_many = totals > N_unit
    if too_many.any():
        u = units_idx[too_many][0]
        raise ValueError(f"unit {u}: allocation asks for more questionnaires than the frame holds")
    N_h = strata[size_col].to_numpy(dtype=float)
    sd_vals = None if sd is None else _sd_values(sd, strata, unit_col)
    w = _method_weights(method, N_h, sd_vals, exponent)
    lower = np.minimum(N_h, int(minimum)).astype(float)
    low_sum = np.bincount(g, weights=lower, minlength=len(units_idx))
    short = low_sum > totals
    if short.any():
        u = units_idx[short][0]
        raise ValueError(
            f"unit {u}: its n ({totals[short][0]}) is smaller than its fields x minimum per field ({minimum})"
        )
    n_h = _bounded_integer_allocation(g, w, totals, lower, N_h, tiebreak=N_h)
    out = pd.DataFrame(
        {
            unit_col: strata[unit_col].to_numpy(),
            by: strata[by].to_numpy(),
            "stratum": stratum_label(strata[unit_col], strata[by]),
            "N_h": N_h.astype(np.int64),
            "n_h": n_h,
        }
    )
    out["f_h"] = out["n_h"] / out["N_h"]
    return out


def city_margin_of_error(
    allocation: pd.DataFrame,
    *,
    weights: str = "population",
    n_col: str = "n",
    size_col: str = "N",
    level: float = 0.95,
    p: float = 0.5,
    deff: float = 1.0,
    response_rate: float = 1.0,
) -> float:
    r"""Expected margin of error of a city-wide proportion estimated from a stratified sample.

    .. math::

        e = z\sqrt{\sum_h W_h^2 \,\frac{\mathrm{deff}\,p(1-p)}{m_h}\,\frac{N_h - m_h}{N_h - 1}},
        \qquad m_h = n_h r

    (Cochran 1977, eq. 5.27), with :math:`W_h = N_h / N` for ``weights="population"`` (all users
    of the city's services) or :math:`W_h = 1/H` for ``"equal"`` (the average of the units).
    """
    _check_columns(allocation, [n_col, size_col], "allocation")
    n = allocation[n_col].to_numpy(dtype=float)
    N = allocation[size_col].to_numpy(dtype=float)
    if np.any(n <= 0):
        raise ValueError("every unit needs at least one questionnaire for a city-level margin of error")
    if weights == "population":
        W = N / N.sum()
    elif weights == "equal":
        W = np.full(N.size, 1 / N.size)
    else:
        raise ValueError(f"weights must be 'population' or 'equal', got {weights!r}")
    e_h = margin_of_error(n, level=level, p=p, deff=deff, population=N, response_rate=response_rate)
    return float(np.sqrt(np.sum(W**2 * np.square(e_h))))


def compare_allocations(
    frame_counts: pd.DataFrame,
    total: int,
    methods: Mapping[str, Mapping] | None = None,
    *,
    level: float = 0.95,
    p: float = 0.5,
    deff: float = 1.0,
    response_rate: float = 1.0,
    **kwargs,
) -> pd.DataFrame:
    """Precision of unit-level against city-level estimates under several allocations.

    ``methods`` maps a label to keyword arguments of :func:`allocate` (default: equal,
    proportional, power 0.5). Other keyword arguments (``minimum``, ``maximum``, ``unit_col``...)
    apply to all. Returns one row per method: ``label, n_min, n_max, moe_unit_median,
    moe_unit_max, moe_city`` (population-weighted) and ``moe_city_equal`` (mean of units).
    """
    if methods is None:
        methods = {
            "equal": {"method": "equal"},
            "proportional": {"method": "proportional"},
            "power (a = 0.5)": {"method": "power", "exponent": 0.5},
        }
    common = dict(level=level, p=p, deff=deff, response_rate=response_rate)
    rows = []
    for label, spec in methods.items():  # a handful of methods
        alloc = allocate(frame_counts, total, **{**kwargs, **dict(spec)}, **common)
        rows.append(
            {
                "label": label,
                "n_min": int(alloc["n"].min()),
                "n_max": int(alloc["n"].max()),
                "moe_unit_median": float(alloc["moe"].median()),
                "moe_unit_max": float(alloc["moe"].max()),
                "moe_city": city_margin_of_error(alloc, weights="population", **common),
                "moe_city_equal": city_margin_of_error(alloc, weights="equal", **common),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Inclusion probabilities and selection
# --------------------------------------------------------------------------------------------
def _grouped_inclusion(a: np.ndarray, g: np.ndarray, n_g: np.ndarray) -> np.ndarray:
    """``sampling::inclusionprobabilities`` applied within each group ``g`` (vectorized)."""
    G = n_g.size
    positive = a > 0
    capped = np.zeros(a.size, dtype=bool)
    n_capped_prev = -1
    while True:
        free = positive & ~capped
        sum_free = np.bincount(g, weights=np.where(free, a, 0.0), minlength=G)
        left = n_g - np.bincount(g, weights=capped.astype(float), minlength=G)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(sum_free > 0, left / sum_free, 0.0)
        pik = np.where(capped, 1.0, np.where(free, a * scale[g], 0.0))
        capped = capped | (pik >= 1)
        n_capped = int(capped.sum())
        if n_capped == n_capped_prev:
            break
        n_capped_prev = n_capped
    return np.where(capped, 1.0, pik)


def inclusion_probabilities(sizes, n, by=None) -> np.ndarray:
    r"""First-order inclusion probabilities of a PPS design of fixed size ``n``.

    :math:`\pi_k = n\,a_k / \sum_j a_j`; units with :math:`\pi_k \ge 1` are set to 1 and the
    others recomputed with :math:`n` minus the number of such units, repeated until no
    :math:`\pi_k` exceeds 1 — exactly R ``sampling::inclusionprobabilities(a, n)`` (Tillé & Matei),
    except that negative or missing sizes raise ``ValueError`` instead of a warning.

    Parameters
    ----------
    sizes
        Size measure :math:`a_k \ge 0` (zero: never selected).
    n
        Sample size; with ``by``, a mapping/Series group -> n (or one number for all groups).
    by
        Optional labels; probabilities are then computed within each group (stratum).

    Examples
    --------
    >>> inclusion_probabilities([1, 2, 3, 30], 2).round(4).tolist()
    [0.1667, 0.3333, 0.5, 1.0]
    """
    a = np.asarray(sizes, dtype=float)
    if np.any(np.isnan(a)):
        raise ValueError("size measure has missing values")
    if np.any(a < 0):
        raise ValueError("size measure has negative values")
    if by is None:
        g = np.zeros(a.size, dtype=np.int64)
        n_g = np.array([float(n)])
        labels = pd.Index([None])
    else:
        g, labels = pd.factorize(np.asarray(by, dtype=object))
        if np.any(g < 0):
            raise ValueError("by has missing values")
        if isinstance(n, (Mapping, pd.Series)):
            n_g = pd.Series(n).reindex(labels).to_numpy(dtype=float)
        else:
            n_g = np.full(len(labels), float(n))
    if np.any(np.isnan(n_g)) or np.any(n_g < 0) or np.any(n_g != np.round(n_g)):
        raise ValueError("sample size n must be a non-negative whole number for every group")
    n_pos = np.bincount(g, weights=(a > 0).astype(float), minlength=n_g.size)
    over = n_g > n_pos
    if over.any():
        raise ValueError(
            f"group {labels[np.flatnonzero(over)[0]]!r}: n = {int(n_g[over][0])} exceeds the "
            f"{int(n_pos[over][0])} units with a positive size"
        )
    return _grouped_inclusion(a, g, n_g)


def _time_key(series: pd.Series) -> np.ndarray:
    """Dates as int64 seconds from the earliest (missing dates sort last)."""
    s = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series, errors="coerce")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_localize(None)
    v = s.to_numpy(dtype="datetime64[s]").astype(np.int64)
    nat = np.datetime64("NaT").astype("datetime64[s]").astype(np.int64)
    missing = v == nat
    if missing.all():
        return np.zeros(v.size, dtype=np.int64)
    lo = v[~missing].min()
    v = v - lo
    v[missing] = v[~missing].max() + 1
    return v


def _order_by(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Row order by stratum code ``s``, then ``t``, then position (one int64 sort of unique keys)."""
    n = s.size
    span = int(t.max()) + 1 if n else 1
    if n and (int(s.max()) + 1) * span * n < 2**62:
        return np.argsort((s * span + t) * n + np.arange(n))
    return np.lexsort((np.arange(n), t, s))


def _smallest_per_group(
    key: np.ndarray, g: np.ndarray, k: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``k[g]`` smallest finite keys of each group and their 0-based rank.

    Exact, without sorting every row: only keys below a per-group threshold are sorted; the
    threshold starts near the expected k-th smallest key (keys roughly uniform on
    ``[0, 1/scale)``, as U(0,1) or Exp(rate) keys are) and is raised for groups that come up short.
    """
    G = k.size
    need = k.astype(np.int64)
    finite = np.isfinite(key)
    avail = np.bincount(g[finite], minlength=G)
    need = np.minimum(need, avail)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(need > 0, (need + 4 * np.sqrt(need) + 16) / np.where(scale > 0, scale, 1.0), -np.inf)
    for _ in range(200):
        cand = np.flatnonzero(key < t[g])
        cnt = np.bincount(g[cand], minlength=G)
        short = cnt < need
        if not short.any():
            break
        t = np.where(short, np.where(t * 4 > 1e300, np.inf, t * 4), t)
    gc = g[cand]
    order = np.lexsort((key[cand], gc))
    gs = gc[order]
    starts = np.r_[0, np.cumsum(np.bincount(gs, minlength=G))[:-1]]
    rank = np.arange(order.size) - starts[gs]
    keep = rank < need[gs]
    return cand[order[keep]], rank[keep]


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def select(
    frame: pd.DataFrame,
    allocation: pd.DataFrame,
    method: str = "systematic",
    seed: int | np.random.Generator | None = None,
    *,
    size_col: str | None = None,
    sort_by: str | None = "received_on",
    reserve: float = 0.0,
    recheck: float = 0.0,
    unit_col: str = "unit_id",
    field_col: str | None = "field",
    id_col: str = "transaction_id",
    n_col: str = "n_h",
    keep: Sequence[str] = ("channel",),
) -> pd.DataFrame:
    r"""Draw the stratified sample (stratum = unit x field), its reserves and the re-check flags.

    Methods, inside each stratum :math:`h` with frame size :math:`N_h` and sample size :math:`n_h`:

    * ``srs``: simple random sampling without replacement, :math:`\pi_k = n_h / N_h`;
    * ``systematic``: the stratum's list sorted by ``sort_by`` (date received: implicit
      stratification by time), interval :math:`N_h/n_h` (fractional, so exactly :math:`n_h` are
      drawn) and a random start; :math:`\pi_k = n_h / N_h` (Madow 1949);
    * ``pps``: systematic PPS on the same sorted list with size measure ``size_col``;
      :math:`\pi_k` from :func:`inclusion_probabilities` (capped at 1 iteratively); row :math:`k`
      is selected when the cumulated :math:`\pi` crosses :math:`u + j`, :math:`u \sim U[0,1)`
      (R ``sampling::UPsystematic``).

    Design weight :math:`d_k = 1/\pi_k`. Reserves: :math:`r_h = \lceil \mathrm{reserve}\cdot
    n_h\rceil` (at most :math:`N_h - n_h`) rows not selected, in random replacement order (for PPS
    weighted by size: Efraimidis-Spirakis keys :math:`u^{1/a_k}`); a reserve that replaces a
    non-respondent takes its place, so it carries the main design's :math:`\pi_k`. Re-check
    (*phúc tra*): :math:`\lceil \mathrm{recheck}\cdot n_{\mathrm{unit}}\rceil` main-sample rows
    per unit, by simple random sampling, flagged ``recheck``.

    Everything is vectorized over rows (grouped NumPy); the same ``seed`` and frame give the
    same sample. Ties in ``sort_by`` keep the frame's row order.

    Parameters
    ----------
    frame
        The frame: ``transaction_id, unit_id, field, received_on, channel`` (+ personal columns,
        never copied to the result).
    allocation
        Sample size per stratum, e.g. from :func:`allocate_within`: ``unit_id, field, n_h``.
        Frame rows of units/fields not in it are not sampled.
    method
        ``systematic`` (default), ``srs`` or ``pps``.
    seed
        Seed or ``numpy.random.Generator``.
    size_col
        Size measure for ``pps``.
    sort_by
        Column sorting the list for ``systematic``/``pps`` (None: frame order).
    reserve
        Reserve list size as a share of :math:`n_h`.
    recheck
        Share of each unit's main sample flagged for re-check.
    field_col
        Second stratification column; None stratifies by unit only.
    keep
        Extra non-personal frame columns to carry into the result.

    Returns
    -------
    pandas.DataFrame
        One row per selected transaction (main sample, then reserves): ``transaction_id,
        unit_id, field, <keep>, stratum, N_h, n_h, incl_prob, design_weight, role
        (main/reserve), reserve_rank (0 for the main sample, 1, 2, ... replacement order),
        recheck``.
    """
    if method not in SELECTION_METHODS:
        raise ValueError(f"unknown selection method {method!r}; choose one of {', '.join(SELECTION_METHODS)}")
    keep = [c for c in keep if c not in (id_col, unit_col, field_col)]
    personal = [c for c in keep if c in PERSONAL_COLUMNS]
    if personal:
        raise ValueError(f"personal column(s) {personal} cannot be kept in the sample table")
    strata_cols = [unit_col] if field_col is None else [unit_col, field_col]
    _check_columns(frame, [id_col, *strata_cols, *keep], "frame")
    _check_columns(allocation, [*strata_cols, n_col], "allocation")
    if method == "pps" and size_col is None:
        raise ValueError("PPS selection needs a size measure: pass size_col")
    if method != "pps" and size_col is not None:
        raise ValueError(f"size_col is only used by method='pps' (got method={method!r})")
    if method in ("systematic", "pps") and sort_by is not None:
        _check_columns(frame, [sort_by], "frame")
    for name, share in (("reserve", reserve), ("recheck", recheck)):
        if not (np.isfinite(share) and share >= 0) or (name == "recheck" and share > 1):
            raise ValueError(f"{name} share must be a number >= 0 (recheck at most 1), got {share!r}")
    rng = _rng(seed)

    # stratum codes of frame rows and of the allocation
    for c in strata_cols:
        if frame[c].isna().any():
            raise ValueError(f"frame has {int(frame[c].isna().sum())} rows with a missing {c!r}")
    fu, u_labels = pd.factorize(frame[unit_col])
    if field_col is None:
        ff, f_labels = np.zeros(len(frame), dtype=np.int64), pd.Index(["_"])
    else:
        ff, f_labels = pd.factorize(frame[field_col])
    nf = max(len(f_labels), 1)
    s_all = fu.astype(np.int64) * nf + ff
    S = len(u_labels) * nf
    if allocation.duplicated(strata_cols).any():
        raise ValueError(f"allocation lists a stratum twice ({', '.join(strata_cols)})")
    n_alloc = pd.to_numeric(allocation[n_col], errors="coerce").to_numpy(dtype=float)
    if np.any(np.isnan(n_alloc)) or np.any(n_alloc < 0) or np.any(n_alloc != np.round(n_alloc)):
        raise ValueError(f"allocation column {n_col!r} must hold non-negative whole numbers")
    au = pd.Index(u_labels).get_indexer(allocation[unit_col])
    if field_col is None:
        af = np.zeros(len(allocation), dtype=np.int64)
    else:
        af = pd.Index(f_labels).get_indexer(allocation[field_col])
    absent = ((au < 0) | (af < 0)) & (n_alloc > 0)
    if absent.any():
        row = allocation[absent].iloc[0]
        raise ValueError(
            "stratum with an empty frame: " + ", ".join(f"{c}={row[c]}" for c in strata_cols)
            + f" is allocated {int(row[n_col])} questionnaires but has no frame rows"
        )
    ok = (au >= 0) & (af >= 0)
    n_lookup = np.zeros(S, dtype=np.int64)
    n_lookup[au[ok] * nf + af[ok]] = n_alloc[ok].astype(np.int64)
    N_lookup = np.bincount(s_all, minlength=S)
    over = n_lookup > N_lookup
    if over.any():
        k = np.flatnonzero(over)[0]
        raise ValueError(
            f"stratum {u_labels[k // nf]}{'' if field_col is None else STRATUM_SEPARATOR + str(f_labels[k % nf])}: "
            f"allocation asks for {n_lookup[k]} but the frame has {N_lookup[k]} rows"
        )

    all_rows = bool(np.all(n_lookup[s_all] > 0))
    elig = np.arange(len(frame)) if all_rows else np.flatnonzero(n_lookup[s_all] > 0)
    s = s_all if all_rows else s_all[elig]
    r_lookup = np.minimum(np.ceil(reserve * n_lookup - 1e-9).astype(np.int64), N_lookup - n_lookup)

    if method == "pps":
        size = pd.to_numeric(frame[size_col], errors="coerce").to_numpy(dtype=float)
        size = size if all_rows else size[elig]
        if np.any(np.isnan(size)):
            raise ValueError(f"size measure {size_col!r} has missing values")
        if np.any(size < 0):
            raise ValueError(f"size measure {size_col!r} has negative values")
        n_pos = np.bincount(s, weights=(size > 0).astype(float), minlength=S)
        short = n_lookup > n_pos
        if short.any():
            k = np.flatnonzero(short)[0]
            raise ValueError(
                f"stratum {u_labels[k // nf]}: n = {n_lookup[k]} exceeds its {int(n_pos[k])} rows "
                f"with a positive {size_col!r}"
            )
    else:
        size = None

    reserve_pos = np.empty(0, dtype=np.int64)
    reserve_rk = np.empty(0, dtype=np.int64)
    if method == "srs":
        # the n_h + r_h smallest uniform keys per stratum, in key order: a random order, so the first
        # n_h are a simple random sample and the next r_h the reserves in replacement order
        u = rng.random(s.size)
        pos, rank = _smallest_per_group(u, s, n_lookup + r_lookup, N_lookup.astype(float))
        main_pos = pos[rank < n_lookup[s[pos]]]
        is_res = rank >= n_lookup[s[pos]]
        reserve_pos, reserve_rk = pos[is_res], rank[is_res] - n_lookup[s[pos[is_res]]] + 1
        list_pos = np.zeros(s.size, dtype=np.int64)
        list_pos[pos] = rank
        pik_of = None
    else:
        if method == "pps":
            pik_all = _grouped_inclusion(size, s, n_lookup.astype(float))
        if sort_by is not None:
            t = _time_key(frame[sort_by] if all_rows else frame[sort_by].iloc[elig])
        else:
            t = np.zeros(s.size, dtype=np.int64)
        order = _order_by(s, t)
        s_sorted = s[order]
        S_counts = np.bincount(s_sorted, minlength=S)
        starts = np.r_[0, np.cumsum(S_counts)[:-1]]
        if method == "systematic":
            rank1 = np.arange(1, order.size + 1) - starts[s_sorted]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(N_lookup > 0, n_lookup / np.maximum(N_lookup, 1), 0.0)
            cum = rank1 * ratio[s_sorted]
        else:
            cs = np.cumsum(pik_all[order])
            before = np.r_[0.0, cs][starts]  # cumulative total before each stratum
            last = np.r_[0.0, cs][starts + S_counts] - before
            with np.errstate(divide="ignore", invalid="ignore"):
                fix = np.where(last > 0, n_lookup / last, 0.0)
            cum = (cs - before[s_sorted]) * fix[s_sorted]  # within-stratum cumulated pi, ends at n_h
        ends = starts[S_counts > 0] + S_counts[S_counts > 0] - 1
        cum[ends] = n_lookup[S_counts > 0]  # exact end of each stratum: exactly n_h crossings
        start = rng.random(S)[s_sorted]
        prev = np.empty_like(cum)
        prev[0:1] = 0.0
        prev[1:] = cum[:-1]
        prev[starts[S_counts > 0]] = 0.0
        sel = np.floor(cum - start) > np.floor(prev - start)
        main_pos = order[sel]
        list_pos = np.empty(s.size, dtype=np.int64)
        list_pos[order] = np.arange(order.size)
        pik_of = None if method == "systematic" else pik_all
        # reserves: random order among rows not selected, weighted by size for PPS
        # (Efraimidis-Spirakis: the smallest Exp(rate = size) keys first)
        if np.any(r_lookup > 0):
            u = rng.random(s.size)
            if size is None:
                key, scale = u, (N_lookup - n_lookup).astype(float)
            else:
                with np.errstate(divide="ignore"):
                    key = -np.log1p(-u) / size
                scale = np.bincount(s, weights=size, minlength=S)
            key[main_pos] = np.inf
            reserve_pos, reserve_rk = _smallest_per_group(key, s, r_lookup, scale)
            reserve_rk = reserve_rk + 1

    chosen = np.r_[main_pos, reserve_pos]
    rank_r = np.r_[np.zeros(main_pos.size, dtype=np.int64), reserve_rk]
    is_main = np.r_[np.ones(main_pos.size, dtype=bool), np.zeros(reserve_pos.size, dtype=bool)]
    rows = elig[chosen]
    s_ch = s[chosen]
    cols = [id_col, unit_col, *([] if field_col is None else [field_col]), *keep]
    out = frame.iloc[rows, frame.columns.get_indexer(cols)].reset_index(drop=True)
    out["stratum"] = (
        out[unit_col].astype(str).to_numpy(dtype=object)
        if field_col is None
        else stratum_label(out[unit_col], out[field_col])
    )
    out["N_h"] = N_lookup[s_ch]
    out["n_h"] = n_lookup[s_ch]
    out["incl_prob"] = out["n_h"] / out["N_h"] if pik_of is None else pik_of[chosen]
    out["design_weight"] = 1.0 / out["incl_prob"]
    out["role"] = np.where(is_main, "main", "reserve")
    out["reserve_rank"] = rank_r

    # re-check subsample: ceil(share x n_unit) main rows per unit, simple random
    unit_code = fu[rows]
    n_unit_main = np.bincount(unit_code[is_main], minlength=len(u_labels))
    k_unit = np.ceil(recheck * n_unit_main - 1e-9).astype(np.int64)
    keys = rng.random(rows.size)
    grp = np.where(is_main, unit_code, len(u_labels) + unit_code)  # reserves in their own groups
    rk = _grouped_rank(grp, keys)
    out["recheck"] = is_main & (rk < k_unit[unit_code])

    # order: stratum, main before reserves, main in list order, reserves in replacement order
    out["_o"] = list_pos[chosen]
    out = out.sort_values(["stratum", "reserve_rank", "_o"], kind="stable").drop(columns="_o")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Form ids (Mã số phiếu)
# --------------------------------------------------------------------------------------------
def make_form_ids(unit_codes, serials) -> np.ndarray:
    """6-digit legacy form ids ``UUSSSC`` (unit code 10-99, serial, Luhn check digit).

    The 2020–2024 format; :func:`sipas_lib.formids.make_form_ids` writes the current 10-digit
    format too, and :func:`check_form_ids` / :func:`unit_code_of` read both.

    Examples
    --------
    >>> make_form_ids([10, 31], [1, 25]).tolist()
    ['100016', '310250']
    """
    return formids.make_form_ids(unit_codes, serials, legacy=True)


check_form_ids = formids.check_form_ids
unit_code_of = formids.unit_code_of


def assign_form_ids(
    sample: pd.DataFrame,
    units: pd.DataFrame,
    *,
    unit_col: str = "unit_id",
    code_col: str = "code",
    legacy: bool | None = None,
) -> pd.DataFrame:
    """Add ``form_id`` (first column) to the output of :func:`select`.

    ``legacy=None`` writes the 6-digit format while every unit code is 10–99 and no unit needs more
    than 999 ids, else the current 10-digit format (:mod:`sipas_lib.formids`); both are read
    everywhere.

    Serials run 001, 002, ... within each unit: the main sample first, in the sample's order,
    then the reserves in replacement order (rank 1 of every field, then rank 2, ...).
    """
    _check_columns(sample, [unit_col], "sample")
    _check_columns(units, [unit_col, code_col], "units table")
    codes = units.drop_duplicates(unit_col).set_index(unit_col)[code_col]
    codes = pd.to_numeric(codes, errors="coerce")
    used = codes.reindex(pd.unique(sample[unit_col]))
    if used.isna().any():
        who = ", ".join(map(str, used[used.isna()].index[:10]))
        raise ValueError(f"unit(s) without a code in units.csv: {who}")
    dup = used.duplicated(keep=False)
    if dup.any():
        who = ", ".join(map(str, used[dup].index[:10]))
        raise ValueError(f"units share a code, so their form ids would clash: {who}")
    if "reserve_rank" in sample.columns:
        rank_col = sample["reserve_rank"].to_numpy()
    else:
        rank_col = np.zeros(len(sample), dtype=np.int64)
    g, g_labels = pd.factorize(sample[unit_col])
    serial = _grouped_rank(g, rank_col, np.arange(len(sample))) + 1
    counts = np.bincount(g, minlength=len(g_labels))
    if legacy is None:  # the 6-digit format while every unit fits it, as in the 2020–2024 rounds
        legacy = bool(used.between(10, 99).all() and counts.max(initial=0) <= MAX_SERIAL)
    max_serial = MAX_SERIAL if legacy else formids.CURRENT_MAX_SERIAL
    too_many = counts > max_serial
    if too_many.any():
        raise ValueError(
            f"unit {g_labels[np.flatnonzero(too_many)[0]]} needs more than {max_serial} form ids "
            "(the serial's digits); lower its sample or reserve"
        )
    ids = formids.make_form_ids(used.reindex(sample[unit_col]).to_numpy(), serial, legacy=legacy)
    out = sample.copy()
    out.insert(0, "form_id", ids.astype(object))
    return out


# --------------------------------------------------------------------------------------------
# Summaries and the private mailing list
# --------------------------------------------------------------------------------------------
def achieved_distribution(
    sample: pd.DataFrame,
    frame_counts: pd.DataFrame,
    column: str = "field",
    *,
    by: Sequence[str] = (),
    size_col: str = "N",
) -> pd.DataFrame:
    """Share of the main sample in each category of ``column`` against the frame's share.

    Returns ``<by>, <column>, N, frame_share, n, sample_share, weighted_share`` where
    ``weighted_share`` uses the design weights (it reproduces the frame share when the design is
    stratified by ``column``).
    """
    by = list(by)
    _check_columns(sample, [*by, column], "sample")
    _check_columns(frame_counts, [*by, column, size_col], "frame counts")
    main = sample[sample["role"] == "main"] if "role" in sample.columns else sample
    keys = [*by, column]
    fr = frame_counts.groupby(keys, observed=True)[size_col].sum().rename("N")
    sm = main.groupby(keys, observed=True).agg(n=(column, "size"), w=("design_weight", "sum"))
    out = pd.concat([fr, sm], axis=1).fillna({"N": 0, "n": 0, "w": 0.0}).reset_index()
    out = out[out["N"] > 0].reset_index(drop=True)
    out["N"] = out["N"].astype(np.int64)
    out["n"] = out["n"].astype(np.int64)
    if by:
        grp = out.groupby(by, observed=True)
        out["frame_share"] = out["N"] / grp["N"].transform("sum")
        out["sample_share"] = out["n"] / grp["n"].transform("sum")
        out["weighted_share"] = out["w"] / grp["w"].transform("sum")
    else:
        out["frame_share"] = out["N"] / out["N"].sum()
        out["sample_share"] = out["n"] / out["n"].sum()
        out["weighted_share"] = out["w"] / out["w"].sum()
    return out[[*keys, "N", "frame_share", "n", "sample_share", "weighted_share"]]


def design_summary(sample: pd.DataFrame, *, unit_col: str = "unit_id") -> pd.DataFrame:
    """Per unit: ``n_main, n_reserve, n_recheck, N`` (frame size) and the range of design weights."""
    _check_columns(sample, [unit_col, "role", "recheck", "design_weight", "stratum", "N_h"], "sample")
    main = sample["role"] == "main"
    frame_sizes = sample.drop_duplicates("stratum").groupby(unit_col)["N_h"].sum()
    out = (
        sample.assign(_main=main, _res=~main, _rc=sample["recheck"] & main)
        .groupby(unit_col, sort=True)
        .agg(n_main=("_main", "sum"), n_reserve=("_res", "sum"), n_recheck=("_rc", "sum"))
    )
    w = sample[main].groupby(unit_col)["design_weight"].agg(weight_min="min", weight_max="max")
    out = out.join(frame_sizes.rename("N")).join(w).reset_index()
    for c in ("n_main", "n_reserve", "n_recheck", "N"):
        out[c] = out[c].astype(np.int64)
    return out


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def write_mailing_list(
    sample: pd.DataFrame,
    frame: pd.DataFrame | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    id_col: str = "transaction_id",
    personal_cols: Sequence[str] = ("applicant_name", "address", "phone"),
    filename: str = "mailing_list.csv",
) -> Path:
    """Write the post office's mailing list (form id, name, address, phone) to the private folder.

    The list joins the selected rows (main and reserve, with ``role``, ``reserve_rank`` and
    ``recheck``) to the frame's personal columns. It is written only under
    ``data/raw/private/`` (:attr:`sipas_lib.config.RunPaths.private`); any other folder — in
    particular one under ``reports/`` — raises ``ValueError``. ``frame`` may be the frame
    DataFrame or the path of ``frame.parquet`` (only the id and personal columns are read).
    UTF-8 with BOM so Excel shows Vietnamese names correctly.
    """
    folder = Path(folder)
    private_root = Path(config.RAW_DIR) / "private"
    if _is_within(folder, Path(config.REPORTS_DIR)) or not _is_within(folder, private_root):
        raise ValueError(
            f"the mailing list holds personal data and may only be written under {private_root} "
            f"(config.RunPaths.private), not to {folder}"
        )
    personal_cols = list(personal_cols)
    if isinstance(frame, (str, os.PathLike)):
        frame = pd.read_parquet(frame, columns=[id_col, *personal_cols])
    _check_columns(frame, [id_col, *personal_cols], "frame")
    _check_columns(sample, [id_col], "sample")
    front = [c for c in ("form_id", id_col, "unit_id", "role", "reserve_rank", "recheck") if c in sample.columns]
    contacts = frame[[id_col, *personal_cols]].drop_duplicates(id_col)
    out = sample[front].merge(contacts, on=id_col, how="left", validate="many_to_one")
    missing = out[personal_cols].isna().all(axis=1)
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} selected transaction(s) have no contact details in the frame, e.g. "
            f"{out.loc[missing, id_col].iloc[0]}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    out.to_csv(path, index=False, encoding="utf-8-sig")
    return path
