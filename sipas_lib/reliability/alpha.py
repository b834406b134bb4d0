"""Cronbach's alpha family: raw and standardized alpha, Guttman's lambda 6, Feldt and bootstrap
intervals, and item statistics (``psych::alpha``).

Core layer. References: Cronbach (1951) Psychometrika 16:297; Feldt, Woodruff & Salih (1987)
Appl. Psych. Meas. 11:93; Duhachek & Iacobucci (2004) J. Appl. Psych. 89:792 (ASE).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib.reliability.base import SATISFIED_MIN, _as_items, _cov2cor, _matrix, _pairwise, _smc

# --------------------------------------------------------------------------- alpha
def _alpha_from_cov(C: np.ndarray) -> dict:
    """psych's ``alpha.1``: raw and standardized alpha, Guttman's lambda 6, mean r, ASE term."""
    k = C.shape[0]
    R = _cov2cor(C)
    sC, trC = C.sum(), np.trace(C)
    sR = R.sum()
    raw = (1.0 - trC / sC) * k / (k - 1)
    std = (1.0 - k / sR) * k / (k - 1)
    g6 = 1.0 - (k - _smc(R).sum()) / sR
    av_r = (sR - k) / (k * (k - 1))
    CC = C @ C
    Q = (2 * k ** 2 / ((k - 1) ** 2 * sC ** 3)) * (sC * (np.trace(CC) + trC ** 2) - 2 * trC * CC.sum())
    return {"raw_alpha": raw, "std_alpha": std, "g6": g6, "average_r": av_r, "Q": Q}


def _feldt(alpha: float, n: int, k: int, level: float) -> tuple[float, float]:
    """Feldt, Woodruff & Salih (1987) interval, as ``psych::alpha.ci``."""
    p = 1.0 - level
    lo = 1.0 - (1.0 - alpha) * stats.f.ppf(1 - p / 2, n - 1, (n - 1) * (k - 1))
    hi = 1.0 - (1.0 - alpha) * stats.f.ppf(p / 2, n - 1, (n - 1) * (k - 1))
    return float(lo), float(hi)


def _boot_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """How often each of ``n`` rows is drawn in each of ``b`` resamples of size ``n`` (b x n, float).

    One resample at a time: the same draws as ``rng.integers(0, n, size=(b, n))`` (64-bit integers
    are drawn one by one, in row order), counted into the float matrix without the b x n index
    and integer-count temporaries (4x faster at n = 400,000).
    """
    out = np.empty((b, n))
    for i in range(b):
        out[i] = np.bincount(rng.integers(0, n, size=n, dtype=np.int64), minlength=n)
    return out


def _sym_from_upper(vals: np.ndarray, k: int, iu) -> np.ndarray:
    out = np.zeros((vals.shape[0], k, k))
    out[:, iu[0], iu[1]] = vals
    return out + np.triu(out, 1).transpose(0, 2, 1)


def _boot_alpha(X: np.ndarray, w: np.ndarray | None, n_boot: int, seed: int | np.random.Generator | None,
                scales: Sequence[np.ndarray] | None = None, chunk: int = 100,
                max_feature_bytes: int = 64 * 2 ** 20) -> np.ndarray:
    """Raw alpha of ``n_boot`` row resamples (pairwise covariances, as psych's bootstrap).

    A resample is a vector of counts ``c`` (how often each row was drawn). Every sum a
    pairwise covariance needs is linear in ``c``: the cross-products
    :math:`\\sum c w x_i x_j` (missing values are zero after centring), the item sums
    :math:`\\sum c w x_i` and the weight totals come from one matrix product of the counts
    with row features; the pairwise means and counts are the full sums minus corrections
    over the (few) rows where an item is missing. The result equals resampling the rows and
    calling psych's ``cov(use = "pairwise")`` on them.

    ``scales`` (column-index arrays) evaluates several scales on the same resamples (one pass
    over the counts); the default is one scale of all columns. Returns ``n_boot x n_scales``
    (or a vector for the default).
    """
    single = scales is None
    scales = [np.arange(X.shape[1])] if single else [np.asarray(s_) for s_ in scales]
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    M = ~np.isnan(X)
    Xc = np.where(M, X - np.nanmean(X, axis=0), 0.0)
    base_w = np.ones(n) if w is None else w
    tri = [np.triu_indices(len(cols)) for cols in scales]
    widths = [len(t[0]) + len(cols) for t, cols in zip(tri, scales)]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    n_feat = int(offsets[-1]) + 2

    def features(r: slice) -> np.ndarray:
        ww = base_w[r]
        parts = []
        for cols, (i0, i1) in zip(scales, tri):
            x = Xc[r][:, cols]
            parts += [(x[:, i0] * x[:, i1]) * ww[:, None], x * ww[:, None]]
        return np.column_stack(parts + [ww, ww ** 2])

    row_chunk = n if n * n_feat * 8 <= max_feature_bytes else max(1024, max_feature_bytes // (n_feat * 8))
    F_all = features(slice(0, n)) if row_chunk >= n else None
    blocks = [slice(r0, min(n, r0 + row_chunk)) for r0 in range(0, n, row_chunk)]
    # the row blocks' features, computed once for all bootstrap chunks when they fit in 8 blocks'
    # memory (400,000 rows: ~190 MB), else again for each chunk; summed in the same order either way
    kept = F_all is None and n * n_feat * 8 <= 8 * max_feature_bytes
    F_rows = [features(r) for r in blocks] if kept else None
    miss_rows = [np.nonzero(~M[:, j])[0] for j in range(X.shape[1])]
    Uf = (~M).astype(float)
    out = np.empty((n_boot, len(scales)))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        c = _boot_counts(rng, n, b)
        if F_all is not None:
            acc = c @ F_all
        else:
            acc = np.zeros((b, n_feat))
            for j, r in enumerate(blocks):
                acc += c[:, r] @ (F_rows[j] if kept else features(r))
        s0, s0w2 = acc[:, -2], acc[:, -1]
        # corrections over rows where an item is missing, for every item at once
        kk = X.shape[1]
        Sx_corr = np.zeros((b, kk, kk))    # [b, i, j] = sum over rows missing j of c w x_i
        miss = np.zeros((b, kk))
        both = np.zeros((b, kk, kk))
        miss2 = np.zeros((b, kk))
        both2 = np.zeros((b, kk, kk))
        for j, rows in enumerate(miss_rows):
            if rows.size:
                cr = c[:, rows]
                cw = cr * base_w[rows]
                Sx_corr[:, :, j] = cw @ Xc[rows]
                miss[:, j] = cw.sum(axis=1)
                both[:, :, j] = cw @ Uf[rows]
                if w is not None:
                    cw2 = cr * base_w[rows] ** 2
                    miss2[:, j] = cw2.sum(axis=1)
                    both2[:, :, j] = cw2 @ Uf[rows]
        for m, (cols, iu) in enumerate(zip(scales, tri)):
            k = len(cols)
            o = offsets[m]
            nt = len(iu[0])
            Sxy = _sym_from_upper(acc[:, o:o + nt], k, iu)
            s1 = acc[:, o + nt:o + nt + k]
            ix = np.ix_(np.arange(b), cols, cols)
            Sx = s1[:, :, None] - Sx_corr[ix]
            mi = miss[:, cols]
            N = s0[:, None, None] - mi[:, :, None] - mi[:, None, :] + both[ix]
            if w is None:
                V2 = N
            else:
                mi2 = miss2[:, cols]
                V2 = s0w2[:, None, None] - mi2[:, :, None] - mi2[:, None, :] + both2[ix]
            with np.errstate(invalid="ignore", divide="ignore"):
                C = (Sxy - Sx * Sx.transpose(0, 2, 1) / N) / (N - V2 / N)
            tr = np.trace(C, axis1=1, axis2=2)
            out[start:start + b, m] = (1 - tr / C.sum(axis=(1, 2))) * k / (k - 1)
    return out[:, 0] if single else out


def cronbach_alpha(df: pd.DataFrame, items: Sequence[str] | Mapping[str, Sequence[str]],
                   weights: str | None = None, level: float = 0.95, n_boot: int = 1000,
                   seed: int | np.random.Generator | None = None, label: str | None = None) -> pd.DataFrame:
    """Cronbach's alpha, raw and standardized, with Feldt and bootstrap confidence intervals.

    Computed as ``psych::alpha``: with :math:`C` the pairwise covariance matrix of the
    :math:`k` items and :math:`R` its correlation form,

    .. math:: \\alpha_{raw} = \\frac{k}{k-1}\\Big(1-\\frac{\\operatorname{tr} C}{\\mathbf 1'C\\mathbf 1}\\Big),
              \\qquad \\alpha_{std} = \\frac{k}{k-1}\\Big(1-\\frac{k}{\\mathbf 1'R\\mathbf 1}\\Big).

    Also Guttman's :math:`\\lambda_6` (``g6``), the mean inter-item correlation, the asymptotic
    standard error of Duhachek & Iacobucci (``ase``, as psych), the Feldt interval
    :math:`1-(1-\\alpha)F_{1-p/2}(n-1,(n-1)(k-1))` .. :math:`1-(1-\\alpha)F_{p/2}(\\cdot)` and a
    percentile bootstrap interval of raw alpha (rows resampled, ``n_boot`` replicates, seeded).

    Parameters
    ----------
    df, items
        Data and the item columns (numeric ratings, NaN = no answer; handled pairwise). A dict
        ``{scale: [items]}`` computes several scales at once, one row each; their bootstrap
        replicates share the same resamples of the respondents (rows with an answer to any
        of the scales), which is faster and gives each scale the interval a separate call
        would give when every row answers every scale.
    weights
        Optional survey weight column (reliability weights).
    level
        Confidence level of both intervals.
    n_boot
        Bootstrap replicates (0 = no bootstrap interval).
    seed
        Seed (int) or Generator of the bootstrap; the same seed gives the same interval.
    label
        Name of the scale, copied to the ``scale`` column.

    Returns
    -------
    pandas.DataFrame
        One row: ``scale, n_items, n, n_complete, raw_alpha, std_alpha, g6, average_r, ase,
        feldt_low, feldt_high, boot_low, boot_high, ci_level, n_boot``.

    Examples
    --------
    >>> d = pd.DataFrame({"a": [1, 2, 3, 4, 5, 3, 2, 4, 5, 1], "b": [2, 2, 3, 5, 4, 3, 1, 4, 5, 2]})
    >>> round(float(cronbach_alpha(d, ["a", "b"], n_boot=0)["raw_alpha"].iloc[0]), 3)
    0.929
    """
    if isinstance(items, Mapping):
        scales = {str(k_): _as_items(v) for k_, v in items.items()}
        if not scales:
            raise ValueError("no scale given")
    else:
        its = _as_items(items)
        name = label if label is not None else "+".join(its) if len(its) <= 4 else f"{its[0]}..{its[-1]}"
        scales = {name: its}
    rows = []
    for name, its in scales.items():        # point estimates and validation, scale by scale
        X, w, its = _matrix(df, its, weights, what=f"Cronbach's alpha ({name})")
        n, k = X.shape
        C = _pairwise(X, w, "cov")
        if not np.all(np.isfinite(C)):
            raise ValueError(f"{name}: some pairs of items were never answered together; alpha needs every pair")
        a = _alpha_from_cov(C)
        lo, hi = _feldt(a["raw_alpha"], n, k, level)
        rows.append({"scale": name, "n_items": k, "n": n, "n_complete": int((~np.isnan(X)).all(axis=1).sum()),
                     "raw_alpha": a["raw_alpha"], "std_alpha": a["std_alpha"], "g6": a["g6"],
                     "average_r": a["average_r"], "ase": math.sqrt(a["Q"] / n),
                     "feldt_low": lo, "feldt_high": hi, "boot_low": np.nan, "boot_high": np.nan,
                     "ci_level": level, "n_boot": int(n_boot or 0)})
    if n_boot and n_boot > 0:
        union = list(dict.fromkeys(c for its in scales.values() for c in its))
        XU, wU, union = _matrix(df, union, weights, what="Cronbach's alpha")
        pos = {c: j for j, c in enumerate(union)}
        boots = _boot_alpha(XU, wU, int(n_boot), seed,
                            scales=[np.array([pos[c] for c in its]) for its in scales.values()])
        for m, row in enumerate(rows):
            row["boot_low"], row["boot_high"] = (float(v) for v in np.nanquantile(
                boots[:, m], [(1 - level) / 2, 1 - (1 - level) / 2]))
    return pd.DataFrame(rows)


def _wcor_vec(t: np.ndarray, X: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Pairwise-complete (weighted) correlation of a vector ``t`` with each column of ``X``."""
    Y = np.column_stack([t, X])
    R = _pairwise(Y, w, "cor")
    return R[0, 1:]


def item_statistics(df: pd.DataFrame, items: Sequence[str], weights: str | None = None,
                    satisfied_min: int = SATISFIED_MIN, weak_r_drop: float = 0.30) -> pd.DataFrame:
    """Item statistics of a scale, as ``psych::alpha``'s ``item.stats`` and ``alpha.drop``.

    For each item: ``n`` answers, ``missing_share`` (share of the rows with no answer),
    ``mean``, ``sd``, ``share_satisfied`` (weighted share of answers >= ``satisfied_min``),
    ``raw_r`` (correlation of the item with the scale mean score), ``std_r``
    (:math:`\\sum_j r_{ij}/\\sqrt{\\mathbf 1'R\\mathbf 1}`), ``r_cor`` (the same with the diagonal of
    :math:`R` replaced by the squared multiple correlations, correcting for item overlap and
    reliability), ``r_drop`` (corrected item-total correlation: the item against the sum of
    the other items, :math:`(\\sum_j c_{ij}-c_{ii})/\\sqrt{c_{ii}\\,\\mathbf 1'C_{-i}\\mathbf 1}`),
    ``alpha_if_deleted`` and ``std_alpha_if_deleted``.

    An item is flagged ``weak`` when its corrected item-total correlation is below
    ``weak_r_drop`` (0.30, Nunnally & Bernstein 1994) or alpha rises when it is deleted.
    """
    X, w, items = _matrix(df, items, weights, what="item statistics")
    n, k = X.shape
    C = _pairwise(X, w, "cov")
    R = _cov2cor(C)
    a_all = _alpha_from_cov(C)["raw_alpha"]
    answered = ~np.isnan(X)
    ww = np.ones(n) if w is None else w
    sw = (answered * ww[:, None]).sum(axis=0)
    Xz = np.where(answered, X, 0.0)
    mean = (Xz * ww[:, None]).sum(axis=0) / sw
    sd = np.sqrt(np.diag(C))
    sat = ((Xz >= satisfied_min) * answered * ww[:, None]).sum(axis=0) / sw
    total = np.nanmean(X, axis=1)
    raw_r = _wcor_vec(total, X, w)
    std_r = R.sum(axis=0) / math.sqrt(R.sum())
    RC = R.copy()
    np.fill_diagonal(RC, _smc(R))
    r_cor = RC.sum(axis=0) / math.sqrt(RC.sum())
    colsum = C.sum(axis=0)
    tot = C.sum()
    diag = np.diag(C)
    v_drop = tot - 2 * colsum + diag
    r_drop = (colsum - diag) / np.sqrt(diag * v_drop)
    a_drop = np.full(k, np.nan)
    s_drop = np.full(k, np.nan)
    if k > 2:
        for i in range(k):
            keep = np.arange(k) != i
            d = _alpha_from_cov(C[np.ix_(keep, keep)])
            a_drop[i], s_drop[i] = d["raw_alpha"], d["std_alpha"]
    else:  # psych: with two items "alpha if deleted" is the regression slope / correlation
        a_drop[:] = [C[0, 1] / C[1, 1], C[0, 1] / C[0, 0]]
        s_drop[:] = R[0, 1]
    out = pd.DataFrame({
        "item": items, "n": answered.sum(axis=0), "missing_share": 1 - answered.mean(axis=0),
        "mean": mean, "sd": sd, "share_satisfied": sat, "raw_r": raw_r, "std_r": std_r,
        "r_cor": r_cor, "r_drop": r_drop, "alpha_if_deleted": a_drop, "std_alpha_if_deleted": s_drop,
    })
    out["weak"] = (out["r_drop"] < weak_r_drop) | ((out["alpha_if_deleted"] > a_all) & (k > 2))
    return out
