"""Ranking units with honest uncertainty: confidence sets for ranks, tied pairs, top/bottom sets.

A league table that sorts point estimates pretends that rank 12 and rank 14 differ. This module
publishes each unit's rank together with a *confidence set for its rank*, built by the method of
Mogstad, Romano, Shaikh & Wilhelm (2024), "Inference for Ranks with Applications to Mobility across
Neighborhoods and Academic Achievements across Countries", *Review of Economic Studies* 91(1),
476-518, doi:10.1093/restud/rdad006 (R package ``csranks``), and a clearly labelled model-based
companion (empirical-Bayes shrinkage and expected ranks) plus funnel-plot data.

Conventions
-----------
* Rank 1 is the best unit (highest estimate, since a higher satisfaction index is better; pass
  ``higher_is_better=False`` for "lower is better" measures). The *true* rank of unit j is
  ``r_j = 1 + #{k : theta_k > theta_j}`` (ties share the best rank, as in ``csranks::irank``);
  the estimated rank uses the same rule on the estimates.
* Every bootstrap is a seeded parametric bootstrap from ``N(0, Sigma)``: the same input and seed
  give identical output.

Result tables (column names are a contract; the annual report and scorecards read them)
-----------------------------------------------------------------------------------------
``rank_confidence_sets`` -> one row per unit:
    ``unit`` (label), ``estimate``, ``se``, ``rank`` (estimated rank, 1 = best),
    ``rank_ci_low``, ``rank_ci_high`` (bounds of the rank confidence set),
    ``n_better`` (units significantly better), ``n_worse`` (units significantly worse),
    ``n_tied`` (units not distinguishable), ``set_type`` (simultaneous|marginal), ``conf_level``.
``rank_table`` -> the ``ranks.parquet`` contract: one row per unit, ranked within its group:
    ``unit_id, unit_type, estimate, se, rank, rank_ci_low, rank_ci_high`` (simultaneous set),
    ``n_better, n_worse, n_tied``, ``rank_ci_low_marginal, rank_ci_high_marginal``,
    ``in_top_k, in_bottom_k`` (top/bottom-k confidence sets, k = ``k_top``), ``k_top``,
    ``eb_estimate, eb_se, expected_rank`` (model-based companion), ``n_units`` (units ranked in
    the group), ``n``, ``publishable`` (n >= min_n), ``conf_level``. Rank columns are nullable
    integers: units with too few respondents are listed last with missing ranks.
``tied_pairs`` -> ``unit, other, relation`` with relation in ``better|worse|tied`` (unit vs other).
``top_k_set`` / ``bottom_k_set`` -> ``unit, estimate, rank, in_set``.
``empirical_bayes`` -> ``unit, estimate, se, eb_estimate, eb_se, shrinkage, expected_rank,
    prob_top_k``; the hyper-parameters ``mu``, ``tau2`` and ``method`` are in every row too.
``funnel_limits`` -> ``n, level, centre, lower, upper``; ``funnel_points`` -> ``unit, estimate,
    n, centre, z, outside_95, outside_998, outside_level, position`` (above|below|within at ``level``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "rank_confidence_sets",
    "pairwise_rejections",
    "tied_pairs",
    "top_k_set",
    "bottom_k_set",
    "rank_table",
    "empirical_bayes",
    "funnel_limits",
    "funnel_points",
    "estimated_ranks",
]

#: Bootstrap draws x pairs processed at once: 2 MB of float64, reused, so a block stays in the CPU cache and
#: memory is O(chunk) whatever the number of units (4M-element blocks spent as long on fresh pages as on arithmetic).
_CHUNK_ELEMENTS = 262_144


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _prepare(
    estimates, cov=None, se=None, labels: Sequence | None = None, higher_is_better: bool = True
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Return (theta oriented so that larger is better, Sigma, labels)."""
    if isinstance(estimates, pd.DataFrame):
        raise ValueError("estimates must be a Series or a 1-d array; for a DataFrame use rank_table()")
    if isinstance(estimates, pd.Series):
        idx = pd.Index(estimates.index if labels is None else labels)
        theta = estimates.to_numpy(dtype=float)
    else:
        theta = np.asarray(estimates, dtype=float).ravel()
        idx = pd.Index(range(1, theta.size + 1) if labels is None else labels)
    p = theta.size
    if len(idx) != p:
        raise ValueError(f"{len(idx)} labels given for {p} estimates")
    if p < 2:
        raise ValueError(f"ranking needs at least 2 units, got {p}")
    if idx.has_duplicates:
        raise ValueError(f"duplicate unit labels: {sorted(map(str, idx[idx.duplicated()]))}")
    bad = ~np.isfinite(theta)
    if bad.any():
        raise ValueError(f"estimate missing or not finite for unit(s) {list(map(str, idx[bad]))}")
    if (cov is None) == (se is None):
        raise ValueError("give exactly one of cov (covariance matrix of the estimates) or se")
    if se is not None:
        if isinstance(se, pd.Series) and isinstance(estimates, pd.Series):
            missing = estimates.index.difference(se.index)
            if len(missing):
                raise ValueError(f"se missing for unit(s) {list(map(str, missing))}")
            se = se.reindex(estimates.index)
        s = np.asarray(se, dtype=float).ravel()
        if s.size != p:
            raise ValueError(f"se has {s.size} values for {p} estimates")
        badse = ~np.isfinite(s) | (s < 0)
        if badse.any():
            raise ValueError(f"standard error missing or negative for unit(s) {list(map(str, idx[badse]))}")
        sigma = np.diag(s**2)
    else:
        if isinstance(cov, pd.DataFrame) and isinstance(estimates, pd.Series):
            missing = estimates.index.difference(cov.index)
            if len(missing):
                raise ValueError(f"covariance matrix has no row for unit(s) {list(map(str, missing))}")
            cov = cov.loc[estimates.index, estimates.index]
        sigma = np.asarray(cov, dtype=float)
        if sigma.shape != (p, p):
            raise ValueError(f"cov must be {p} x {p} to match the estimates, got {sigma.shape}")
        if not np.all(np.isfinite(sigma)):
            raise ValueError("covariance matrix contains missing or infinite values")
        if not np.allclose(sigma, sigma.T, rtol=1e-8, atol=1e-12 * max(1.0, np.abs(sigma).max())):
            raise ValueError("covariance matrix is not symmetric")
        sigma = (sigma + sigma.T) / 2
        w = np.linalg.eigvalsh(sigma)
        if w.min() < -1e-8 * max(1.0, abs(w.max())):
            raise ValueError(f"covariance matrix is not positive semi-definite (smallest eigenvalue {w.min():.3g})")
    if not higher_is_better:
        theta = -theta
    return theta, sigma, idx


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")
    return float(level)


def _draws(sigma: np.ndarray, n_boot: int, seed: int | None) -> np.ndarray:
    """Parametric bootstrap draws Z ~ N(0, Sigma), shape (n_boot, p), seeded."""
    if n_boot < 100:
        raise ValueError(f"n_boot must be at least 100, got {n_boot}")
    rng = np.random.default_rng(seed)
    p = sigma.shape[0]
    z = rng.standard_normal((n_boot, p))
    if np.count_nonzero(sigma - np.diag(np.diag(sigma))) == 0:
        return z * np.sqrt(np.diag(sigma))
    w, v = np.linalg.eigh(sigma)
    root = v * np.sqrt(np.clip(w, 0, None))
    return z @ root.T


def _diff_sd(sigma: np.ndarray) -> np.ndarray:
    """sd(theta_j - theta_k) = sqrt(S_jj + S_kk - 2 S_jk)."""
    d = np.diag(sigma)
    v = d[:, None] + d[None, :] - 2 * sigma
    return np.sqrt(np.clip(v, 0, None))


def _tstats(theta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """t_jk = (theta_j - theta_k) / sd_jk; +-inf when sd is 0 and the estimates differ."""
    diff = theta[:, None] - theta[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / sd
    zero = sd == 0
    t[zero] = np.where(diff[zero] > 0, np.inf, np.where(diff[zero] < 0, -np.inf, 0.0))
    np.fill_diagonal(t, 0.0)
    return t


def estimated_ranks(theta: np.ndarray) -> np.ndarray:
    """Rank 1 = largest value; ties share the best rank (``1 + #{k: x_k > x_j}``)."""
    theta = np.asarray(theta, dtype=float)
    return 1 + (theta[None, :] > theta[:, None]).sum(axis=1)


# ----------------------------------------------------------------------------------------------
# the max-t step-down tests for pairwise differences (MRSW 2024, sections 3-4)
# ----------------------------------------------------------------------------------------------
def _inv_sd(sd: np.ndarray) -> np.ndarray:
    return np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 0)


def _simultaneous_rejections(theta, sigma, level, stepdown, n_boot, seed) -> np.ndarray:
    """Reject[j, k] = True when H_jk: theta_j <= theta_k is rejected (j is significantly better).

    Family: all ordered pairs j != k (both directions), so the first step is the two-sided max-|t|.
    Step-down bookkeeping: the family only shrinks, so a draw's maximum changes only when the pair
    attaining it was rejected; only those draws are recomputed (same result as recomputing all).
    """
    p = theta.size
    sd = _diff_sd(sigma)
    t = _tstats(theta, sd)
    z = _draws(sigma, n_boot, seed)
    inv = _inv_sd(sd)
    active = ~np.eye(p, dtype=bool)  # active[j, k]: H_jk still in the family
    add = np.where(active, 0.0, -np.inf)  # 0 while active, -inf once rejected
    reject = np.zeros((p, p), dtype=bool)
    chunk = max(1, _CHUNK_ELEMENTS // (p * p))
    buffer = np.empty((min(chunk, n_boot), p, p))

    def block_max(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mx = np.empty(draws.size)
        arg = np.empty(draws.size, dtype=np.int64)
        for s0 in range(0, draws.size, chunk):
            zc = z[draws[s0:s0 + chunk]]
            d = buffer[:zc.shape[0]]
            np.subtract(zc[:, :, None], zc[:, None, :], out=d)
            d *= inv  # d[r, j, k] = (Z_j - Z_k) / sd_jk
            d += add
            flat = d.reshape(zc.shape[0], p * p)
            a = flat.argmax(axis=1)
            arg[s0:s0 + chunk] = a
            mx[s0:s0 + chunk] = flat[np.arange(a.size), a]
        return mx, arg

    mx, arg = block_max(np.arange(n_boot))
    while True:
        q = np.quantile(mx, level)
        new = active & (t > q)
        if not new.any():
            break
        reject |= new
        active &= ~new
        add[new] = -np.inf
        if not stepdown or not active.any():
            break
        redo = np.flatnonzero(new.ravel()[arg])
        if redo.size:
            mx[redo], arg[redo] = block_max(redo)
    return reject


def _marginal_rejections(theta, sigma, level, stepdown, n_boot, seed) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit families {(i,k), (k,i): k != i}.

    Returns (better, worse): better[i, k] = True when unit i's own family rejects H_ik (i is
    significantly better than k); worse[i, k] = True when it rejects H_ki (k better than i).
    Entry e < p of family i is H_ie (statistic +d_ie), entry p + k is H_ki (statistic -d_ik).
    """
    p = theta.size
    sd = _diff_sd(sigma)
    t = _tstats(theta, sd)
    z = _draws(sigma, n_boot, seed)
    inv = _inv_sd(sd)
    offdiag = ~np.eye(p, dtype=bool)
    active = np.concatenate([offdiag, offdiag], axis=1)  # (p, 2p)
    add = np.where(active, 0.0, -np.inf)
    tt = np.concatenate([t, -t], axis=1)
    chunk = max(1, _CHUNK_ELEMENTS // (2 * p * p))

    def fam_max(r_idx: np.ndarray, i_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Max over family i_idx[m] for draw r_idx[m]."""
        mx = np.empty(r_idx.size)
        arg = np.empty(r_idx.size, dtype=np.int64)
        step = max(1, chunk * p)
        for s0 in range(0, r_idx.size, step):
            r, i = r_idx[s0:s0 + step], i_idx[s0:s0 + step]
            d = (z[r, i][:, None] - z[r]) * inv[i]  # (m, p): (Z_i - Z_k) / sd_ik
            vals = np.concatenate([d, -d], axis=1) + add[i]
            a = vals.argmax(axis=1)
            arg[s0:s0 + step] = a
            mx[s0:s0 + step] = vals[np.arange(a.size), a]
        return mx, arg

    mx, arg = _all_families_max(z, inv, add)
    rejected = np.zeros((p, 2 * p), dtype=bool)
    while True:
        q = np.quantile(mx, level, axis=0)  # one critical value per family
        new = active & (tt > q[:, None])
        if not new.any():
            break
        rejected |= new
        active &= ~new
        add[new] = -np.inf
        if not stepdown:
            break
        redo_r, redo_i = np.nonzero(new[np.arange(p)[None, :], arg])
        if redo_r.size:
            m2, a2 = fam_max(redo_r, redo_i)
            mx[redo_r, redo_i] = m2
            arg[redo_r, redo_i] = a2
    return rejected[:, :p], rejected[:, p:]


def _all_families_max(z: np.ndarray, inv: np.ndarray, add: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First step of the marginal tests: max and argmax of every family i for every draw r.

    Family i's entries are ``(Z_i - Z_k)/sd_ik + add[i, k]`` then ``-(Z_i - Z_k)/sd_ik + add[i, p + k]``;
    computed from the (draws, p, p) block of differences in cache-sized chunks (no gathers), the
    argmax is the first maximum of the concatenation, exactly as ``fam_max`` returns it.
    """
    n_boot, p = z.shape
    chunk = max(1, _CHUNK_ELEMENTS // (p * p))
    up, down = np.empty((min(chunk, n_boot), p, p)), np.empty((min(chunk, n_boot), p, p))
    mx, arg = np.empty((n_boot, p)), np.empty((n_boot, p), dtype=np.int64)
    for s0 in range(0, n_boot, chunk):
        zc = z[s0:s0 + chunk]
        m = zc.shape[0]
        d, e = up[:m], down[:m]
        np.subtract(zc[:, :, None], zc[:, None, :], out=d)
        d *= inv  # d[r, i, k] = (Z_i - Z_k) / sd_ik
        np.negative(d, out=e)
        d += add[:, :p]
        e += add[:, p:]
        a1, a2 = d.argmax(axis=2), e.argmax(axis=2)
        m1 = np.take_along_axis(d, a1[:, :, None], axis=2)[:, :, 0]
        m2 = np.take_along_axis(e, a2[:, :, None], axis=2)[:, :, 0]
        second = m2 > m1  # on a tie the first half wins, as argmax over the concatenation does
        mx[s0:s0 + m] = np.where(second, m2, m1)
        arg[s0:s0 + m] = np.where(second, a2 + p, a1)
    return mx, arg


def pairwise_rejections(
    estimates,
    cov=None,
    *,
    se=None,
    level: float = 0.95,
    stepdown: bool = True,
    n_boot: int = 10_000,
    seed: int | np.random.Generator | None = None,
    labels: Sequence | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Simultaneous pairwise comparisons: which unit is significantly better than which.

    Returns a square boolean DataFrame ``R`` with ``R.loc[j, k] = True`` when the family-wise
    test (all ordered pairs, max-t step-down, level ``level``) concludes that unit ``j`` is
    better than unit ``k``. These are exactly the rejections behind the simultaneous rank
    confidence sets of :func:`rank_confidence_sets`, so tables built from them agree with it.
    """
    level = _check_level(level)
    theta, sigma, idx = _prepare(estimates, cov, se, labels, higher_is_better)
    rej = _simultaneous_rejections(theta, sigma, level, stepdown, n_boot, seed)
    return pd.DataFrame(rej, index=idx, columns=idx)


def rank_confidence_sets(
    estimates,
    cov=None,
    *,
    se=None,
    level: float = 0.95,
    simultaneous: bool = True,
    stepdown: bool = True,
    n_boot: int = 10_000,
    seed: int | np.random.Generator | None = None,
    labels: Sequence | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    r"""Confidence sets for the ranks of units (Mogstad, Romano, Shaikh & Wilhelm 2024).

    Method
    ------
    Let :math:`\hat\theta` estimate :math:`\theta` (e.g. unit satisfaction indices) with
    :math:`\hat\theta - \theta \approx N(0, \Sigma)`. The rank of unit :math:`j` is
    :math:`r_j = 1 + \#\{k: \theta_k > \theta_j\}`. Consider the one-sided hypotheses
    :math:`H_{jk}: \theta_j \le \theta_k` for ordered pairs in a family :math:`I` and the
    studentized statistics :math:`t_{jk} = (\hat\theta_j - \hat\theta_k)/\hat s_{jk}`,
    :math:`\hat s_{jk}^2 = \Sigma_{jj} + \Sigma_{kk} - 2\Sigma_{jk}`.

    1. Draw :math:`Z^{(1)},\dots,Z^{(B)} \sim N(0,\hat\Sigma)` (parametric bootstrap, seeded) and
       take the critical value :math:`\hat c(I)` = the ``level`` quantile of
       :math:`\max_{(j,k)\in I} (Z_j - Z_k)/\hat s_{jk}` (the max-t statistic).
    2. Reject every :math:`H_{jk}, (j,k)\in I` with :math:`t_{jk} > \hat c(I)`.
    3. Step-down (Romano & Wolf 2005): remove the rejected pairs from :math:`I`, recompute
       :math:`\hat c(I)` and repeat until nothing new is rejected (``stepdown=False``: one step).

    With :math:`N^-_j` the number of :math:`k` with :math:`H_{kj}` rejected (units significantly
    better than :math:`j`) and :math:`N^+_j` the number with :math:`H_{jk}` rejected, the
    confidence set is :math:`\{N^-_j + 1, \dots, p - N^+_j\}`.

    * **Simultaneous** (default): one family of all ordered pairs :math:`j \ne k`; the sets
      cover *all* true ranks at once with probability approximately ``level``.
    * **Marginal**: for each unit :math:`j` its own family :math:`\{(j,k),(k,j): k\ne j\}`; each
      set covers that unit's true rank with probability approximately ``level``.

    The first step of both is the two-sided max-|t| test; the step-down refinement is the
    "two-sided, stepdown" variant of ``csranks::csranks`` (family initialised with both
    directions, one-sided rejections). Unlike the R package, the same seeded draws are reused in
    every step (common random numbers), which makes the result exactly reproducible.

    Parameters
    ----------
    estimates
        Unit estimates: a Series indexed by unit id, or an array with ``labels``.
    cov
        Covariance matrix of the estimates (DataFrame indexed by unit id, or array), e.g. from
        ``estimation.total_covariance`` through the linearization in ``index``. Give this or
        ``se`` (then the estimates are treated as independent: diagonal covariance).
    se
        Standard errors (independent units).
    level
        Nominal coverage, default 0.95.
    simultaneous
        Simultaneous (True) or marginal (False) confidence sets.
    stepdown
        Use the step-down refinement (default True; never wider than single-step).
    n_boot
        Number of bootstrap draws (default 10 000).
    seed
        Seed of the bootstrap (same seed, same sets).
    higher_is_better
        Rank 1 = highest estimate (default) or lowest.

    Returns
    -------
    DataFrame with columns ``unit, estimate, se, rank, rank_ci_low, rank_ci_high, n_better,
    n_worse, n_tied, set_type, conf_level`` in the input order.

    References
    ----------
    Mogstad, M., Romano, J. P., Shaikh, A. M., & Wilhelm, D. (2024). Inference for ranks with
    applications to mobility across neighbourhoods and academic achievement across countries.
    *Review of Economic Studies*, 91(1), 476-518. R package ``csranks`` (Wilhelm & Morgen).

    Examples
    --------
    >>> import pandas as pd
    >>> est = pd.Series([0.90, 0.70, 0.50], index=["S01", "S02", "S03"])
    >>> out = rank_confidence_sets(est, se=[0.01, 0.01, 0.01], n_boot=1000)
    >>> out[["unit", "rank", "rank_ci_low", "rank_ci_high"]].to_numpy().tolist()
    [['S01', 1, 1, 1], ['S02', 2, 2, 2], ['S03', 3, 3, 3]]
    """
    return _rank_sets(estimates, cov, se, level, simultaneous, stepdown, n_boot, seed, labels, higher_is_better)[0]


def _rank_sets(estimates, cov, se, level, simultaneous, stepdown, n_boot, seed, labels,
               higher_is_better) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`rank_confidence_sets` and, for simultaneous sets, the rejection matrix behind them."""
    level = _check_level(level)
    theta, sigma, idx = _prepare(estimates, cov, se, labels, higher_is_better)
    p = theta.size
    rej = None
    if simultaneous:
        rej = _simultaneous_rejections(theta, sigma, level, stepdown, n_boot, seed)
        n_better = rej.sum(axis=0)  # k significantly better than j: H_kj rejected
        n_worse = rej.sum(axis=1)
    else:
        better, worse = _marginal_rejections(theta, sigma, level, stepdown, n_boot, seed)
        n_better = worse.sum(axis=1)
        n_worse = better.sum(axis=1)
    est = theta if higher_is_better else -theta
    return pd.DataFrame(
        {
            "unit": idx,
            "estimate": est,
            "se": np.sqrt(np.diag(sigma)),
            "rank": estimated_ranks(theta),
            "rank_ci_low": (n_better + 1).astype(int),
            "rank_ci_high": (p - n_worse).astype(int),
            "n_better": n_better.astype(int),
            "n_worse": n_worse.astype(int),
            "n_tied": (p - 1 - n_better - n_worse).astype(int),
            "set_type": "simultaneous" if simultaneous else "marginal",
            "conf_level": level,
        }
    ), rej


def tied_pairs(
    estimates,
    cov=None,
    *,
    se=None,
    level: float = 0.95,
    stepdown: bool = True,
    n_boot: int = 10_000,
    seed: int | np.random.Generator | None = None,
    labels: Sequence | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """The "statistically tied" table: for every ordered pair of units, better / worse / tied.

    Built from the same simultaneous step-down tests as :func:`rank_confidence_sets` (same
    arguments, same seed give the same rejections), so a unit's ``n_better``/``n_worse`` there
    equals its count of ``worse``/``better`` rows here. "Tied" means the data cannot tell the
    two apart at family-wise level ``level``; it is not transitive.

    Returns
    -------
    DataFrame ``unit, other, relation`` (``better``: unit is significantly better than other),
    one row per ordered pair, in input order.
    """
    rej = pairwise_rejections(
        estimates, cov, se=se, level=level, stepdown=stepdown, n_boot=n_boot, seed=seed,
        labels=labels, higher_is_better=higher_is_better,
    )
    return _pairs_frame(rej.to_numpy(), rej.index)


def _pairs_frame(reject: np.ndarray, idx: pd.Index) -> pd.DataFrame:
    """``unit, other, relation`` for every ordered pair, from ``reject[j, k]`` = j significantly better than k."""
    j, k = np.nonzero(~np.eye(len(idx), dtype=bool))
    relation = np.where(reject[j, k], "better", np.where(reject[k, j], "worse", "tied"))
    return pd.DataFrame({"unit": idx[j], "other": idx[k], "relation": relation})


def _tau_set(estimates, cov, se, tau, level, stepdown, n_boot, seed, labels, best: bool) -> pd.DataFrame:
    level = _check_level(level)
    theta, sigma, idx = _prepare(estimates, cov, se, labels, higher_is_better=True)
    p = theta.size
    if not 1 <= int(tau) <= p - 1 or int(tau) != tau:
        raise ValueError(f"k must be an integer between 1 and {p - 1} (number of units - 1), got {tau}")
    rej = _simultaneous_rejections(theta if best else -theta, sigma, level, stepdown, n_boot, seed)
    lower = rej.sum(axis=0) + 1  # lower bound of the rank (of theta, or of -theta for worst)
    in_set = lower <= tau
    return pd.DataFrame(
        {
            "unit": idx,
            "estimate": theta,
            "rank": estimated_ranks(theta),
            "in_set": in_set,
        }
    )


def top_k_set(
    estimates, cov=None, *, se=None, k: int = 5, level: float = 0.95, stepdown: bool = True,
    n_boot: int = 10_000, seed: int | np.random.Generator | None = None, labels: Sequence | None = None,
) -> pd.DataFrame:
    """Confidence set for the identities of the k best units (``csranks::cstaubest``).

    The set ``{j : lower rank bound_j <= k}`` built from the simultaneous lower confidence
    bounds for all ranks contains every truly top-k unit with probability approximately
    ``level`` (MRSW 2024, section 4.3, "projection" confidence set for the tau-best).
    Returns ``unit, estimate, rank, in_set``.
    """
    return _tau_set(estimates, cov, se, k, level, stepdown, n_boot, seed, labels, best=True)


def bottom_k_set(
    estimates, cov=None, *, se=None, k: int = 5, level: float = 0.95, stepdown: bool = True,
    n_boot: int = 10_000, seed: int | np.random.Generator | None = None, labels: Sequence | None = None,
) -> pd.DataFrame:
    """Confidence set for the identities of the k worst units (``csranks::cstauworst``).

    The top-k set of the negated estimates. ``estimate`` and ``rank`` are reported on the
    original scale (rank 1 = best). Returns ``unit, estimate, rank, in_set``.
    """
    return _tau_set(estimates, cov, se, k, level, stepdown, n_boot, seed, labels, best=False)


# ----------------------------------------------------------------------------------------------
# model-based companion: empirical Bayes
# ----------------------------------------------------------------------------------------------
def _tau2_reml(y: np.ndarray, v: np.ndarray, tol: float = 1e-10, max_iter: int = 200) -> float:
    """REML estimate of the between-unit variance in y_j ~ N(mu, tau2 + v_j) (Fisher scoring)."""
    tau2 = max(0.0, np.var(y, ddof=1) - v.mean())
    for _ in range(max_iter):
        w = 1.0 / (v + tau2)
        sw = w.sum()
        mu = (w * y).sum() / sw
        r = y - mu
        # P = W - w w^T / sum(w); score and Fisher information of the REML log-likelihood
        trp = sw - (w**2).sum() / sw
        pr = w * r  # P r  (since sum(w r) = 0)
        score = 0.5 * ((pr**2).sum() - trp)
        w2 = w**2
        trpp = (w2).sum() - 2 * (w2 * w).sum() / sw + (w2.sum() / sw) ** 2
        info = 0.5 * trpp
        step = score / info
        new = max(0.0, tau2 + step)
        if abs(new - tau2) < tol * max(1.0, tau2):
            tau2 = new
            break
        tau2 = new
    return float(tau2)


def _tau2_dl(y: np.ndarray, v: np.ndarray) -> float:
    """DerSimonian-Laird moment estimator of tau2."""
    w = 1.0 / v
    mu = (w * y).sum() / w.sum()
    q = (w * (y - mu) ** 2).sum()
    c = w.sum() - (w**2).sum() / w.sum()
    return float(max(0.0, (q - (y.size - 1)) / c))


def empirical_bayes(
    estimates, se, *, method: str = "reml", k: int | None = None, labels: Sequence | None = None,
) -> pd.DataFrame:
    r"""Empirical-Bayes shrunken estimates and expected ranks (MODEL-BASED companion).

    Normal-normal model: :math:`\hat\theta_j \mid \theta_j \sim N(\theta_j, s_j^2)`,
    :math:`\theta_j \sim N(\mu, \tau^2)`. With :math:`\hat\mu, \hat\tau^2` estimated by REML
    (default) or DerSimonian-Laird (``method="dl"``), the posterior is
    :math:`\theta_j \mid \hat\theta \sim N(m_j, v_j)`, :math:`B_j = s_j^2/(s_j^2+\hat\tau^2)`,
    :math:`m_j = \hat\mu + (1-B_j)(\hat\theta_j - \hat\mu)`, :math:`v_j = (1-B_j)s_j^2` (the
    plug-in variance, ignoring the uncertainty of :math:`\hat\mu, \hat\tau^2`). Expected rank
    (Laird & Louis 1989) :math:`E[r_j] = 1 + \sum_{k\ne j}\Phi\big((m_k-m_j)/\sqrt{v_k+v_j}\big)`
    and, if ``k`` is given, the posterior probability of being among the k best (from 20 000
    posterior draws with a fixed seed).

    This is a model-based, *labelled* companion to the design-based confidence sets: it assumes
    the units are exchangeable draws from one normal distribution, which the survey design does
    not guarantee. Publish the design-based ranks; use this for context.

    Returns
    -------
    DataFrame ``unit, estimate, se, eb_estimate, eb_se, shrinkage, expected_rank, prob_top_k``
    (``prob_top_k`` NaN when ``k`` is None) plus ``mu, tau2, method`` repeated on every row.

    References
    ----------
    Morris, C. N. (1983). Parametric empirical Bayes inference. *JASA* 78, 47-55.
    Laird, N. M. & Louis, T. A. (1989). Empirical Bayes ranking methods. *J. Educ. Stat.* 14, 29-46.
    Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators. *JEBS* 30, 261-293.
    """
    theta, sigma, idx = _prepare(estimates, None, se, labels)
    s2 = np.diag(sigma)
    if np.any(s2 <= 0):
        raise ValueError(f"empirical Bayes needs positive standard errors; zero for {list(map(str, idx[s2 <= 0]))}")
    if method == "reml":
        tau2 = _tau2_reml(theta, s2)
    elif method == "dl":
        tau2 = _tau2_dl(theta, s2)
    else:
        raise ValueError(f"unknown method {method!r}; use 'reml' or 'dl'")
    w = 1.0 / (s2 + tau2)
    mu = float((w * theta).sum() / w.sum())
    b = s2 / (s2 + tau2)
    m = mu + (1 - b) * (theta - mu)
    v = (1 - b) * s2
    sd = np.sqrt(v[:, None] + v[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (m[None, :] - m[:, None]) / sd
    probs = np.where(sd > 0, stats.norm.cdf(z), (m[None, :] > m[:, None]).astype(float) + 0.5 * (m[None, :] == m[:, None]))
    np.fill_diagonal(probs, 0.0)
    expected_rank = 1 + probs.sum(axis=1)
    prob_top = np.full(theta.size, np.nan)
    if k is not None:
        if not 1 <= k < theta.size:
            raise ValueError(f"k must be between 1 and {theta.size - 1}, got {k}")
        rng = np.random.default_rng(0)
        draws = m + rng.standard_normal((20_000, theta.size)) * np.sqrt(v)
        order = np.argsort(-draws, axis=1)[:, :k]  # the k best units of each posterior draw
        prob_top = np.bincount(order.ravel(), minlength=theta.size) / draws.shape[0]
    return pd.DataFrame(
        {
            "unit": idx,
            "estimate": theta,
            "se": np.sqrt(s2),
            "eb_estimate": m,
            "eb_se": np.sqrt(v),
            "shrinkage": b,
            "expected_rank": expected_rank,
            "prob_top_k": prob_top,
            "mu": mu,
            "tau2": tau2,
            "method": method,
        }
    )


# ----------------------------------------------------------------------------------------------
# funnel plot
# ----------------------------------------------------------------------------------------------
def funnel_limits(
    centre: float,
    n_max: int,
    *,
    n_min: int = 10,
    levels: Sequence[float] = (0.95, 0.998),
    deff: float = 1.0,
    n_points: int = 200,
) -> pd.DataFrame:
    r"""Control limits of a funnel plot for a proportion (Spiegelhalter 2005).

    Limits :math:`p_0 \pm z_{(1+\ell)/2}\sqrt{\text{deff}\,p_0(1-p_0)/n}` around the centre
    :math:`p_0` (e.g. the city index or the target) for sample sizes ``n_min..n_max``, clipped
    to [0, 1]. ``deff`` inflates the binomial variance for the survey design effect.

    Returns ``n, level, centre, lower, upper`` (one row per n and level).

    Reference: Spiegelhalter, D. J. (2005). Funnel plots for comparing institutional
    performance. *Statistics in Medicine* 24, 1185-1202.
    """
    if not 0 < centre < 1:
        raise ValueError(f"funnel centre must be a share between 0 and 1, got {centre}")
    if n_max <= n_min or n_min < 1:
        raise ValueError(f"need 1 <= n_min < n_max, got n_min={n_min}, n_max={n_max}")
    if deff <= 0:
        raise ValueError(f"deff must be positive, got {deff}")
    n = np.unique(np.geomspace(n_min, n_max, n_points).round().astype(int))
    rows = []
    for lv in levels:
        _check_level(lv)
        z = stats.norm.ppf((1 + lv) / 2)
        half = z * np.sqrt(deff * centre * (1 - centre) / n)
        rows.append(pd.DataFrame({"n": n, "level": lv, "centre": centre,
                                  "lower": np.clip(centre - half, 0, 1), "upper": np.clip(centre + half, 0, 1)}))
    return pd.concat(rows, ignore_index=True)


def funnel_points(
    df: pd.DataFrame,
    *,
    unit: str = "unit_id",
    estimate: str = "estimate",
    n: str = "n",
    centre: float | None = None,
    deff: float = 1.0,
    level: float = 0.95,
) -> pd.DataFrame:
    r"""Position of each unit on the funnel plot: ``z = (p_j - p_0)/\sqrt{deff\,p_0(1-p_0)/n_j}``.

    ``centre`` defaults to the n-weighted mean of the estimates. Flags units outside the 95 %
    and 99.8 % limits (``outside_95``, ``outside_998``) and outside the limits at ``level``
    (``outside_level``; ``position`` above|below|within at ``level``). Returns ``unit, estimate,
    n, centre, z, outside_95, outside_998, outside_level, position``.
    """
    level = _check_level(level)
    for col in (unit, estimate, n):
        if col not in df.columns:
            raise ValueError(f"column {col!r} not found; available: {list(df.columns)}")
    p = df[estimate].to_numpy(float)
    nn = df[n].to_numpy(float)
    if np.any(nn <= 0) or np.any(~np.isfinite(nn)):
        raise ValueError(f"sample sizes in column {n!r} must be positive")
    if centre is None:
        centre = float((p * nn).sum() / nn.sum())
    if not 0 < centre < 1:
        raise ValueError(f"funnel centre must be a share between 0 and 1, got {centre}")
    z = (p - centre) / np.sqrt(deff * centre * (1 - centre) / nn)
    z95, z998 = stats.norm.ppf(0.975), stats.norm.ppf(0.999)
    z_level = stats.norm.ppf((1 + level) / 2)
    return pd.DataFrame(
        {
            "unit": df[unit].to_numpy(),
            "estimate": p,
            "n": nn,
            "centre": centre,
            "z": z,
            "outside_95": np.abs(z) > z95,
            "outside_998": np.abs(z) > z998,
            "outside_level": np.abs(z) > z_level,
            "position": np.where(z > z_level, "above", np.where(z < -z_level, "below", "within")),
        }
    )


# ----------------------------------------------------------------------------------------------
# the stage's league table
# ----------------------------------------------------------------------------------------------
def rank_table(
    df: pd.DataFrame,
    *,
    unit: str = "unit_id",
    estimate: str = "estimate",
    se: str = "se",
    n: str | None = "n",
    by: str | None = "unit_type",
    cov: pd.DataFrame | None = None,
    level: float = 0.95,
    k_top: int = 3,
    min_n: int = 30,
    rank_unpublishable: bool = False,
    n_boot: int = 10_000,
    seed: int | np.random.Generator | None = None,
    pairs: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """League table with rank confidence sets, one ranking per group (e.g. departments, districts).

    For each group in ``by``: estimated rank, simultaneous and marginal confidence sets for the
    ranks (:func:`rank_confidence_sets`), top-/bottom-``k_top`` confidence sets, and the
    empirical-Bayes companion (model-based, labelled). Units with ``n < min_n`` are flagged
    ``publishable=False`` and, unless ``rank_unpublishable``, left out of the ranking (rank
    columns missing), so ranks run 1..p over the units that are published. ``cov`` (indexed by
    unit id, e.g. :func:`sipas_lib.index.overall_covariance`) replaces the diagonal covariance
    built from ``se`` when the design makes unit estimates dependent.

    Each group is ranked on its own, with its own block of ``cov`` and the same ``seed``: a group's
    rows are the ones :func:`rank_table` gives for that group alone (an integer ``seed``).

    Returns the ``ranks.parquet`` table described in the module docstring, sorted by group and
    rank (unranked units last); with ``pairs=True`` also the better/worse/tied verdict of every
    ordered pair of ranked units of a group (``by`` when given, ``unit, other, relation``: the
    :func:`tied_pairs` table), from the same rejections as the simultaneous sets.
    """
    need = [unit, estimate, se] + ([n] if n else []) + ([by] if by else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found; available: {list(df.columns)}")
    if df[unit].duplicated().any():
        raise ValueError(f"unit ids repeat in column {unit!r}: {sorted(df.loc[df[unit].duplicated(), unit].astype(str))}")
    work = df.copy()
    work["publishable"] = (work[n].to_numpy() >= min_n) if n else True
    usable = work[estimate].notna() & work[se].notna()
    ranked_mask = usable & (work["publishable"] | rank_unpublishable)
    int_cols = ["rank", "rank_ci_low", "rank_ci_high", "n_better", "n_worse", "n_tied",
                "rank_ci_low_marginal", "rank_ci_high_marginal", "n_units", "k_top"]
    groups = [(None, work)] if by is None else list(work.groupby(by, sort=True))
    out, verdicts = [], []
    for key, g in groups:
        key = key[0] if isinstance(key, tuple) else key
        r = g[ranked_mask.loc[g.index]].reset_index(drop=True)
        p = len(r)
        res = pd.DataFrame({unit: r[unit].to_numpy(), "estimate": r[estimate].to_numpy(float), "se": r[se].to_numpy(float)})
        if p >= 2:
            est = pd.Series(res["estimate"].to_numpy(), index=res[unit].to_numpy())
            kw = dict(level=level, n_boot=n_boot, seed=seed)
            spread = dict(cov=cov.loc[est.index, est.index], se=None) if cov is not None else \
                dict(cov=None, se=res["se"].to_numpy())
            sim, reject = _rank_sets(est, **spread, simultaneous=True, stepdown=True, labels=None,
                                     higher_is_better=True, **kw)
            mar = rank_confidence_sets(est, **spread, simultaneous=False, **kw)
            if pairs:
                verdicts.append(_pairs_frame(reject, pd.Index(sim["unit"])).assign(**({by: key} if by else {})))
            for col in ("rank", "rank_ci_low", "rank_ci_high", "n_better", "n_worse", "n_tied"):
                res[col] = sim[col].to_numpy()
            res["rank_ci_low_marginal"] = mar["rank_ci_low"].to_numpy()
            res["rank_ci_high_marginal"] = mar["rank_ci_high"].to_numpy()
            kk = min(k_top, p - 1)
            # top/bottom-k sets from the simultaneous bounds (identical to cstaubest/cstauworst)
            res["in_top_k"] = res["rank_ci_low"].to_numpy() <= kk
            res["in_bottom_k"] = res["rank_ci_high"].to_numpy() >= p - kk + 1
            res["k_top"] = kk
            if (res["se"] > 0).all():
                eb = empirical_bayes(est, se=res["se"].to_numpy())
                res["eb_estimate"] = eb["eb_estimate"].to_numpy()
                res["eb_se"] = eb["eb_se"].to_numpy()
                res["expected_rank"] = eb["expected_rank"].to_numpy()
        elif p == 1:
            for col in ("rank", "rank_ci_low", "rank_ci_high", "rank_ci_low_marginal", "rank_ci_high_marginal"):
                res[col] = 1
            res["n_better"] = res["n_worse"] = res["n_tied"] = 0
            res["in_top_k"] = res["in_bottom_k"] = True
            res["k_top"] = 1
        res["n_units"] = p
        # units not ranked (too few respondents or no estimate): same columns, ranks missing
        rest = g[~g[unit].isin(res[unit])]
        if len(rest):
            res = pd.concat([res, pd.DataFrame({unit: rest[unit].to_numpy(), "estimate": rest[estimate].to_numpy(float),
                                                "se": rest[se].to_numpy(float)})], ignore_index=True)
        if by is not None:
            res.insert(1, by, key)
        out.append(res)
    table = pd.concat(out, ignore_index=True)
    for col in int_cols:
        table[col] = pd.array(table[col] if col in table.columns else [pd.NA] * len(table), dtype="Float64").astype("Int64")
    for col in ("in_top_k", "in_bottom_k"):
        table[col] = pd.array(table[col] if col in table.columns else [pd.NA] * len(table), dtype="boolean")
    for col in ("eb_estimate", "eb_se", "expected_rank"):
        if col not in table.columns:
            table[col] = np.nan
    meta = work.set_index(unit)
    if n:
        table["n"] = table[unit].map(meta[n]).to_numpy()
    table["publishable"] = table[unit].map(meta["publishable"]).astype(bool).to_numpy()
    table["conf_level"] = level
    sort = ([by] if by else []) + ["rank", unit]
    table = table.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)
    if not pairs:
        return table
    columns = ([by] if by else []) + ["unit", "other", "relation"]
    verdict = pd.concat(verdicts, ignore_index=True) if verdicts else pd.DataFrame(columns=columns)
    return table, verdict[columns]
