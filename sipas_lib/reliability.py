"""Reliability and validity of the questionnaire (stage 40), matching R's ``psych`` and ``lavaan``.

Every function takes a DataFrame and item column names and returns tidy results. The numbers
follow the conventions of ``psych`` 2.2.9 (``alpha``, ``polychoric``, ``omega``, ``KMO``,
``cortest.bartlett``, ``fa``, ``fa.parallel``), ``GPArotation`` 2022.10 (``oblimin``) and
``lavaan`` 0.6 (``cfa`` with ML, ``fitMeasures``); the test-suite checks them against reference
values produced by ``tests/r/psych_reference.R``.

Missing-data policy
-------------------
* Item non-response ("no answer") is treated as missing at random and handled **pairwise**,
  as ``psych`` does (``use = "pairwise"``): covariances, Pearson and polychoric correlations
  use every respondent who answered both items. Rows with no answer to any of the analysed
  items are dropped (they carry no information).
* Section V (element E5, criteria c15-c18) is asked only of respondents who gave feedback: for
  everybody else it is *structurally* missing, not missing at random, and never imputed.
  :func:`analysis_rows` therefore analyses E5 on respondents with ``gave_feedback`` only, and
  any analysis that mixes E5 with other items (overall alpha, EFA, the five-element CFA) is run
  on the respondents who gave feedback. The CFA (:func:`cfa`) uses the complete cases of
  those respondents (listwise deletion, lavaan's default ``missing = "listwise"``).
* Survey weights are optional where the method allows (alpha, item statistics, Pearson and
  polychoric correlations and everything computed from them). They are treated as
  reliability weights: a weight of 2 counts like a duplicated row in point estimates; the
  unweighted case reproduces ``psych`` exactly. The CFA is unweighted (ML on the sample
  covariance, as lavaan without ``sampling.weights``).

References
----------
Cronbach (1951) Psychometrika 16:297; Feldt, Woodruff & Salih (1987) Appl. Psych. Meas. 11:93;
Olsson (1979) Psychometrika 44:443 (two-step polychoric); Zumbo, Gadermann & Zeisser (2007)
J. Mod. Appl. Stat. Methods 6:21 (ordinal alpha); McDonald (1999) Test theory;
Schmid & Leiman (1957) Psychometrika 22:53; Revelle (2024) psych; Jennrich (2002) Psychometrika
67:7 (gradient projection rotation); Horn (1965) Psychometrika 30:179 (parallel analysis);
Kaiser (1970) Psychometrika 35:401 (KMO); Bartlett (1951) JRSS-B 13:1; Bollen (1989)
Structural equations with latent variables; Hu & Bentler (1999) SEM 6:1 (fit cut-offs);
Fornell & Larcker (1981) J. Marketing Res. 18:39 (AVE, composite reliability).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special, stats
from sipas_lib.texts import load_texts

__all__ = [
    "FIT_THRESHOLDS", "ALPHA_THRESHOLDS", "SATISFIED_MIN",
    "analysis_rows", "element_model", "parse_model",
    "pairwise_cov", "pairwise_cor", "cronbach_alpha", "item_statistics",
    "polychoric", "polychoric_thresholds", "ordinal_alpha", "omega", "schmid_leiman",
    "kmo", "bartlett_sphericity", "efa", "EFAResult", "parallel_analysis", "cfa", "CFAResult",
    "bvn_cdf", "alpha_verdict", "cfa_verdict", "element_verdict", "stage_tables", "REPORT_LABELS",
]

SATISFIED_MIN = 4
"""A rating of 4 ("satisfied") or 5 ("very satisfied") counts as satisfied (DESIGN.md)."""

ALPHA_THRESHOLDS = {"good": 0.80, "acceptable": 0.70, "questionable": 0.60}
"""Conventional reading of alpha/omega (Nunnally & Bernstein 1994; George & Mallery 2003)."""

FIT_THRESHOLDS = {"cfi": 0.95, "tli": 0.95, "rmsea": 0.06, "srmr": 0.08,
                  "cfi_acceptable": 0.90, "tli_acceptable": 0.90, "rmsea_acceptable": 0.08,
                  "srmr_acceptable": 0.10, "cr": 0.70, "ave": 0.50}
"""Cut-offs for a good CFA fit (Hu & Bentler 1999: CFI, TLI >= .95, RMSEA <= .06, SRMR <= .08),
acceptable fit (CFI, TLI >= .90, RMSEA <= .08; Browne & Cudeck 1993; Marsh, Hau & Wen 2004) and
convergent validity (composite reliability >= .70, AVE >= .50; Fornell & Larcker 1981)."""

_MIN_ROWS = 10


# --------------------------------------------------------------------------- input checks
def _as_items(items: Iterable[str] | str) -> list[str]:
    if isinstance(items, str):
        items = [items]
    items = list(items)
    if len(set(items)) != len(items):
        dup = sorted({c for c in items if items.count(c) > 1})
        raise ValueError(f"items are listed twice: {', '.join(dup)}")
    return items


def _matrix(df: pd.DataFrame, items: Iterable[str] | str, weights: str | None = None, *,
            min_items: int = 2, min_rows: int = _MIN_ROWS, what: str = "this analysis",
            drop_empty: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Validate and return (X with NaN for missing, weights or None, items).

    Rows where every item is missing are dropped (they carry no information).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    items = _as_items(items)
    if len(items) < min_items:
        raise ValueError(f"{what} needs at least {min_items} items; got {len(items)} "
                         f"({', '.join(items) or 'none'})")
    missing = [c for c in items if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) not in the data: {', '.join(missing)}")
    for c in items:
        s = df[c]
        if s.dtype == bool or not (pd.api.types.is_numeric_dtype(s)):
            raise ValueError(f"item column {c!r} is not numeric (dtype {s.dtype}); ratings must be "
                             "numbers 1-5 with empty cells for no answer")
    X = df[items].to_numpy(dtype=float, na_value=np.nan)
    w = None
    if weights is not None:
        if weights not in df.columns:
            raise ValueError(f"weight column {weights!r} not in the data")
        if not pd.api.types.is_numeric_dtype(df[weights]):
            raise ValueError(f"weight column {weights!r} is not numeric")
        w = df[weights].to_numpy(dtype=float, na_value=np.nan)
        if np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weight column {weights!r} has missing, infinite or negative values")
    if drop_empty:
        keep = ~np.all(np.isnan(X), axis=1)
        if w is not None:
            keep &= w > 0
        X = X[keep]
        w = None if w is None else w[keep]
    if np.any(np.isinf(X)):
        bad = [c for c, j in zip(items, np.any(np.isinf(X), axis=0)) if j]
        raise ValueError(f"item column(s) {', '.join(bad)} contain infinite values")
    n_obs = (~np.isnan(X)).sum(axis=0)
    too_few = [f"{c} ({k})" for c, k in zip(items, n_obs) if k < min_rows]
    if too_few:
        raise ValueError(f"{what} needs at least {min_rows} answers per item; too few for "
                         f"{', '.join(too_few)}")
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    const = [f"{c} (always {lo[j]:g})" for j, c in enumerate(items) if lo[j] == hi[j]]
    if const:
        raise ValueError(f"constant item(s) carry no information about reliability: {', '.join(const)}")
    return X, w, items


def analysis_rows(df: pd.DataFrame, items: Sequence[str], conditional_items: Sequence[str] = (
        "c15", "c16", "c17", "c18"), feedback_column: str = "gave_feedback") -> pd.DataFrame:
    """The respondents on whom a set of items is analysed (the missing-data policy).

    Section V (c15-c18, element E5) is asked only of respondents who gave feedback; for the
    others those items are structurally missing. If any of ``items`` is conditional, only rows
    with ``feedback_column`` true are kept; otherwise every row is kept.

    Examples
    --------
    >>> d = pd.DataFrame({"c01": [4, 5], "c15": [np.nan, 3], "gave_feedback": [False, True]})
    >>> len(analysis_rows(d, ["c01", "c15"]))
    1
    """
    if any(c in set(conditional_items) for c in items):
        if feedback_column not in df.columns:
            raise ValueError(f"items {', '.join(c for c in items if c in conditional_items)} are asked only "
                             f"of respondents who gave feedback, but column {feedback_column!r} is missing")
        return df.loc[df[feedback_column].fillna(False).astype(bool)]
    return df


def element_model(instrument: str = "hanoi_pl5_district") -> dict[str, list[str]]:
    """The five-element measurement model of Phụ lục 5 from the instrument YAML.

    Returns ``{"E1": ["c01", ..., "c05"], ..., "E5": ["c15", ..., "c18"]}``.
    """
    from sipas_lib.instrument import load_instrument

    return load_instrument(instrument).element_items()


# --------------------------------------------------------------------------- covariances
def _weighted_moments(X: np.ndarray, w: np.ndarray | None):
    """Pairwise sums needed for pairwise covariances/correlations (centred for accuracy)."""
    M = (~np.isnan(X)).astype(float)
    centre = np.nanmean(X, axis=0)
    Xc = np.where(M > 0, X - centre, 0.0)
    Mw = M if w is None else M * w[:, None]
    Xw = Xc if w is None else Xc * w[:, None]
    N = Mw.T @ M                     # sum of weights over rows answering i and j
    Sx = Xw.T @ M                    # Sx[i, j] = sum w x_i over rows answering i and j
    Sxy = Xw.T @ Xc                  # sum w x_i x_j
    Sxx = (Xw * Xc).T @ M            # Sxx[i, j] = sum w x_i^2 over rows answering i and j
    V2 = M.T @ M if w is None else (M * (w ** 2)[:, None]).T @ M
    return N, Sx, Sxy, Sxx, V2


def _pairwise(X: np.ndarray, w: np.ndarray | None, kind: str) -> np.ndarray:
    N, Sx, Sxy, Sxx, V2 = _weighted_moments(X, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_i = Sx / N              # mean of item i over rows answering i and j
        mean_j = mean_i.T
        denom = N - V2 / N           # n - 1 without weights
        cov = (Sxy - N * mean_i * mean_j) / denom
        if kind == "cov":
            return cov
        var_i = (Sxx - N * mean_i ** 2) / denom
        return cov / np.sqrt(var_i * var_i.T)


def pairwise_cov(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Covariance matrix with pairwise deletion, as R's ``cov(x, use = "pairwise")``.

    .. math:: c_{ij} = \\frac{\\sum w (x_i-\\bar x_i^{(ij)})(x_j-\\bar x_j^{(ij)})}{V_1 - V_2/V_1}

    over the rows answering both items, with :math:`V_1=\\sum w`, :math:`V_2=\\sum w^2`
    (:math:`n-1` without weights).
    """
    X, w, items = _matrix(df, items, weights, what="a covariance matrix")
    return pd.DataFrame(_pairwise(X, w, "cov"), index=items, columns=items)


def pairwise_cor(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Pearson correlations with pairwise deletion, as R's ``cor(x, use = "pairwise")``
    (means and standard deviations of each pair computed on the rows answering both)."""
    X, w, items = _matrix(df, items, weights, what="a correlation matrix")
    return pd.DataFrame(_pairwise(X, w, "cor"), index=items, columns=items)


def _cov2cor(C: np.ndarray) -> np.ndarray:
    d = 1.0 / np.sqrt(np.diag(C))
    return C * d[:, None] * d[None, :]


def _smc(R: np.ndarray) -> np.ndarray:
    """Squared multiple correlations ``1 - 1/diag(R^-1)`` (psych::smc, bounded to [0, 1])."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            inv = linalg.inv(R)
        except (linalg.LinAlgError, linalg.LinAlgWarning):
            inv = linalg.pinv(R)          # psych uses its Pinv for singular matrices
    s = 1.0 - 1.0 / np.diag(inv)
    return np.clip(s, 0.0, 1.0)


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
    """How often each of ``n`` rows is drawn in each of ``b`` resamples of size ``n`` (b x n, float)."""
    idx = rng.integers(0, n, size=(b, n), dtype=np.int64)
    idx += (np.arange(b) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)


def _sym_from_upper(vals: np.ndarray, k: int, iu) -> np.ndarray:
    out = np.zeros((vals.shape[0], k, k))
    out[:, iu[0], iu[1]] = vals
    return out + np.triu(out, 1).transpose(0, 2, 1)


def _boot_alpha(X: np.ndarray, w: np.ndarray | None, n_boot: int, seed: int,
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
            for r0 in range(0, n, row_chunk):
                r = slice(r0, min(n, r0 + row_chunk))
                acc += c[:, r] @ features(r)
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
                   weights: str | None = None, ci: float = 0.95, n_boot: int = 1000, seed: int = 2025,
                   label: str | None = None) -> pd.DataFrame:
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
    ci
        Confidence level of both intervals.
    n_boot
        Bootstrap replicates (0 = no bootstrap interval).
    seed
        Seed of the bootstrap; the same seed gives the same interval.
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
        lo, hi = _feldt(a["raw_alpha"], n, k, ci)
        rows.append({"scale": name, "n_items": k, "n": n, "n_complete": int((~np.isnan(X)).all(axis=1).sum()),
                     "raw_alpha": a["raw_alpha"], "std_alpha": a["std_alpha"], "g6": a["g6"],
                     "average_r": a["average_r"], "ase": math.sqrt(a["Q"] / n),
                     "feldt_low": lo, "feldt_high": hi, "boot_low": np.nan, "boot_high": np.nan,
                     "ci_level": ci, "n_boot": int(n_boot or 0)})
    if n_boot and n_boot > 0:
        union = list(dict.fromkeys(c for its in scales.values() for c in its))
        XU, wU, union = _matrix(df, union, weights, what="Cronbach's alpha")
        pos = {c: j for j, c in enumerate(union)}
        boots = _boot_alpha(XU, wU, int(n_boot), seed,
                            scales=[np.array([pos[c] for c in its]) for its in scales.values()])
        for m, row in enumerate(rows):
            row["boot_low"], row["boot_high"] = (float(v) for v in np.nanquantile(
                boots[:, m], [(1 - ci) / 2, 1 - (1 - ci) / 2]))
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


# --------------------------------------------------------------------------- bivariate normal
_GL = {
    6: (np.array([0.1713244923791705, 0.3607615730481384, 0.4679139345726904]),
        np.array([0.9324695142031522, 0.6612093864662647, 0.2386191860831970])),
    12: (np.array([0.04717533638651177, 0.1069393259953183, 0.1600783285433464,
                   0.2031674267230659, 0.2334925365383547, 0.2491470458134029]),
         np.array([0.9815606342467191, 0.9041172563704750, 0.7699026741943050,
                   0.5873179542866171, 0.3678314989981802, 0.1252334085114692])),
    20: (np.array([0.01761400713915212, 0.04060142980038694, 0.06267204833410906,
                   0.08327674157670475, 0.1019301198172404, 0.1181945319615184,
                   0.1316886384491766, 0.1420961093183821, 0.1491729864726037,
                   0.1527533871307259]),
         np.array([0.9931285991850949, 0.9639719272779138, 0.9122344282513259,
                   0.8391169718222188, 0.7463319064601508, 0.6360536807265150,
                   0.5108670019508271, 0.3737060887154196, 0.2277858511416451,
                   0.07652652113349733])),
}


def _bvnu(h: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(X > h, Y > k) for a standard bivariate normal with correlation r (finite h, k).

    Genz (2004) "Numerical computation of rectangular bivariate and trivariate normal and t
    probabilities", Statistics and Computing 14:251 — the algorithm R's mnormt/mvtnorm use.
    """
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(r, float))
    out = np.empty(h.shape)
    ar = np.abs(r)
    tp = 2 * np.pi
    Phi = special.ndtr
    for ng, sel in ((6, ar < 0.3), (12, (ar >= 0.3) & (ar < 0.75)), (20, ar >= 0.75)):
        if not sel.any():
            continue
        wg, xg = _GL[ng]
        w2 = np.concatenate([wg, wg])
        x2 = np.concatenate([1 - xg, 1 + xg])
        hh, kk, rr = h[sel], k[sel], r[sel]
        hk = hh * kk
        res = np.empty(hh.shape)
        small = np.abs(rr) < 0.925
        if small.any():
            hs = (hh[small] ** 2 + kk[small] ** 2) / 2
            asr = np.arcsin(rr[small]) / 2
            sn = np.sin(asr[:, None] * x2[None, :])
            bvn = np.exp((sn * hk[small, None] - hs[:, None]) / (1 - sn ** 2)) @ w2
            res[small] = bvn * asr / tp + Phi(-hh[small]) * Phi(-kk[small])
        big = ~small
        if big.any():
            H, K, R_ = hh[big], kk[big].copy(), rr[big]
            HK = hk[big].copy()
            neg = R_ < 0
            K[neg] = -K[neg]
            HK[neg] = -HK[neg]
            bvn = np.zeros(H.shape)
            lt1 = np.abs(R_) < 1
            if lt1.any():
                Hh, Kk, hkk = H[lt1], K[lt1], HK[lt1]
                as_ = 1 - R_[lt1] ** 2
                a = np.sqrt(as_)
                bs = (Hh - Kk) ** 2
                asr = -(bs / as_ + hkk) / 2
                c = (4 - hkk) / 8
                d = (12 - hkk) / 80
                v = np.where(asr > -100, a * np.exp(asr) * (1 - c * (bs - as_) * (1 - d * bs) / 3 + c * d * as_ ** 2), 0.0)
                b = np.sqrt(bs)
                with np.errstate(divide="ignore", invalid="ignore"):
                    sp = math.sqrt(tp) * Phi(-b / a)
                    v = np.where(hkk > -100, v - np.exp(-hkk / 2) * sp * b * (1 - c * bs * (1 - d * bs) / 3), v)
                a2 = a / 2
                xs = (a2[:, None] * x2[None, :]) ** 2
                asr2 = -(bs[:, None] / xs + hkk[:, None]) / 2
                ok = asr2 > -100
                spp = 1 + c[:, None] * xs * (1 + 5 * d[:, None] * xs)
                rs = np.sqrt(1 - xs)
                ep = np.exp(-(hkk[:, None] / 2) * xs / (1 + rs) ** 2) / rs
                term = np.where(ok, np.exp(np.where(ok, asr2, 0.0)) * (spp - ep), 0.0) @ w2
                bvn[lt1] = (a2 * term - v) / tp
            pos = R_ > 0
            mx = np.maximum(H, K)
            L = np.where(H < 0, Phi(K) - Phi(H), Phi(-H) - Phi(-K))
            bvn = np.where(pos, bvn + Phi(-mx), np.where(H >= K, -bvn, L - bvn))
            res[big] = bvn
        out[sel] = res
    return np.clip(out, 0.0, 1.0)


def bvn_cdf(h, k, r) -> np.ndarray:
    """Standard bivariate normal CDF :math:`\\Phi_2(h, k; r) = P(X \\le h, Y \\le k)`.

    Vectorized; accepts infinite limits. Accurate to about 1e-15 (Genz 2004).
    """
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(r, float))
    out = np.zeros(h.shape)
    fin = np.isfinite(h) & np.isfinite(k)
    if fin.any():
        out[fin] = _bvnu(-h[fin], -k[fin], r[fin])
    hi_h, hi_k = np.isposinf(h), np.isposinf(k)
    out[hi_h & np.isfinite(k)] = special.ndtr(k[hi_h & np.isfinite(k)])
    out[hi_k & np.isfinite(h)] = special.ndtr(h[hi_k & np.isfinite(h)])
    out[hi_h & hi_k] = 1.0
    out[np.isneginf(h) | np.isneginf(k)] = 0.0
    return out


# --------------------------------------------------------------------------- polychoric
_BRENT_C = (3.0 - math.sqrt(5.0)) * 0.5
_SQRT_EPS = math.sqrt(np.finfo(float).eps)


def _brent_fmin(f, a: np.ndarray, b: np.ndarray, tol: float, maxiter: int = 200) -> np.ndarray:
    """R's ``optimize`` (Brent 1973 ``fmin`` as in R's ``Brent_fmin``), vectorized over problems.

    ``f`` maps a vector of abscissae (one per problem) to objective values; every problem
    follows exactly the path R's scalar code would take.
    """
    a, b = a.astype(float).copy(), b.astype(float).copy()
    v = a + _BRENT_C * (b - a)
    w, x = v.copy(), v.copy()
    d = np.zeros_like(a)
    e = np.zeros_like(a)
    fx = f(x, np.ones(a.shape, bool))
    fv, fw = fx.copy(), fx.copy()
    tol3 = tol / 3.0
    active = np.ones(a.shape, bool)
    for _ in range(maxiter):
        xm = (a + b) * 0.5
        tol1 = _SQRT_EPS * np.abs(x) + tol3
        t2 = tol1 * 2.0
        active &= ~(np.abs(x - xm) <= t2 - (b - a) * 0.5)
        if not active.any():
            break
        p = np.zeros_like(a)
        q = np.zeros_like(a)
        r = np.zeros_like(a)
        par = active & (np.abs(e) > tol1)
        r_ = (x - w) * (fx - fv)
        q_ = (x - v) * (fx - fw)
        p_ = (x - v) * q_ - (x - w) * r_
        q_ = (q_ - r_) * 2.0
        p_ = np.where(q_ > 0, -p_, p_)
        q_ = np.abs(q_)
        p = np.where(par, p_, p)
        q = np.where(par, q_, q)
        r = np.where(par, e, r)
        e = np.where(par, d, e)
        golden = (np.abs(p) >= np.abs(q * 0.5 * r)) | (p <= q * (a - x)) | (p >= q * (b - x))
        e_g = np.where(x < xm, b - x, a - x)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_p = p / q
        u_p = x + d_p
        near = (u_p - a < t2) | (b - u_p < t2)
        d_p = np.where(near, np.where(x >= xm, -tol1, tol1), d_p)
        e = np.where(active & golden, e_g, e)
        d = np.where(active, np.where(golden, _BRENT_C * e_g, d_p), d)
        u = np.where(np.abs(d) >= tol1, x + d, np.where(d > 0, x + tol1, x - tol1))
        u = np.where(active, u, x)
        fu = f(u, active)
        better = active & (fu <= fx)
        worse = active & ~(fu <= fx)
        # fu <= fx
        b = np.where(better & (u < x), x, b)
        a = np.where(better & ~(u < x), x, a)
        # fu > fx
        a = np.where(worse & (u < x), u, a)
        b = np.where(worse & ~(u < x), u, b)
        c1 = worse & ((fu <= fw) | (w == x))
        c2 = worse & ~c1 & ((fu <= fv) | (v == x) | (v == w))
        nv = np.where(better, w, np.where(c1, w, np.where(c2, u, v)))
        nfv = np.where(better, fw, np.where(c1, fw, np.where(c2, fu, fv)))
        nw = np.where(better, x, np.where(c1, u, w))
        nfw = np.where(better, fx, np.where(c1, fu, fw))
        x = np.where(better, u, x)
        fx = np.where(better, fu, fx)
        v, fv, w, fw = nv, nfv, nw, nfw
    return x


def _codes(X: np.ndarray, items: list[str], max_cat: int = 8) -> tuple[np.ndarray, int]:
    """Integer category codes 0..K-1 (-1 = missing), shifted by the global minimum as psych."""
    obs = ~np.isnan(X)
    vals = X[obs]
    if np.any(vals != np.round(vals)):
        bad = [c for j, c in enumerate(items) if np.any(X[obs[:, j], j] != np.round(X[obs[:, j], j]))]
        raise ValueError(f"polychoric correlations need whole-number ratings; {', '.join(bad)} "
                         "has fractional values")
    lo, hi = vals.min(), vals.max()
    K = int(hi - lo + 1)
    if K > max_cat:
        raise ValueError(f"the items have {K} categories (more than {max_cat}); polychoric "
                         "correlations are meant for ordinal ratings")
    codes = np.where(obs, X - lo, -1).astype(np.int64)
    return codes, K


def _thresholds_from_freq(freq: np.ndarray) -> np.ndarray:
    """qnorm of cumulative proportions (K-1 thresholds per column)."""
    cum = np.cumsum(freq / freq.sum(axis=0), axis=0)[:-1]
    return special.ndtri(np.clip(cum, 0.0, 1.0))


def _cell_probs(rho: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Cell probabilities (P, K, K) of the discretized bivariate normal."""
    P = rho.shape[0]
    K1 = tx.shape[1]
    H = np.broadcast_to(tx[:, :, None], (P, K1, K1))
    Kk = np.broadcast_to(ty[:, None, :], (P, K1, K1))
    F = np.zeros((P, K1 + 2, K1 + 2))
    F[:, 1:-1, 1:-1] = bvn_cdf(H, Kk, np.broadcast_to(rho[:, None, None], (P, K1, K1)))
    F[:, -1, 1:-1] = special.ndtr(ty)
    F[:, 1:-1, -1] = special.ndtr(tx)
    F[:, -1, -1] = 1.0
    return F[:, 1:, 1:] - F[:, :-1, 1:] - F[:, 1:, :-1] + F[:, :-1, :-1]


def _poly_objective(tabs: np.ndarray, tx: np.ndarray, ty: np.ndarray):
    def f(rho: np.ndarray, active: np.ndarray) -> np.ndarray:
        out = np.zeros(rho.shape)
        if active.any():
            Pc = _cell_probs(rho[active], tx[active], ty[active])
            with np.errstate(divide="ignore", invalid="ignore"):
                lP = np.where(Pc > 0, np.log(np.where(Pc > 0, Pc, 1.0)), 0.0)
            out[active] = -(tabs[active] * lP).sum(axis=(1, 2))
        return out
    return f


def _cor_smooth(R: np.ndarray, eig_tol: float = 1e-12) -> np.ndarray:
    """psych::cor.smooth: make a non-positive-definite correlation matrix positive definite."""
    vals, vecs = linalg.eigh(R)
    if vals.min() >= np.finfo(float).eps:
        return R
    vals = np.where(vals < eig_tol, 100 * eig_tol, vals)
    vals = vals * R.shape[0] / vals.sum()
    return _cov2cor((vecs * vals) @ vecs.T)


def _pair_tables(codes: np.ndarray, K: int, w: np.ndarray | None, I: np.ndarray, J: np.ndarray) -> np.ndarray:
    """Weighted K x K contingency tables of all item pairs (rows with both answered)."""
    n, p = codes.shape
    tabs = np.empty((len(I), K, K))
    ww = np.ones(n) if w is None else w
    for i in range(p):                        # loop over items, vectorized over partners
        js = np.nonzero(I == i)[0]
        if js.size == 0:
            continue
        ci = codes[:, i]
        okc = ci >= 0
        partners = J[js]
        cj = codes[okc][:, partners]                       # (n_i, m)
        ok = cj >= 0
        idx = ci[okc][:, None] * K + np.where(ok, cj, 0) + (np.arange(js.size) * K * K)[None, :]
        wt = np.broadcast_to(ww[okc][:, None], cj.shape)
        t = np.bincount(idx[ok], weights=wt[ok], minlength=js.size * K * K)
        tabs[js] = t.reshape(js.size, K, K)
    return tabs


def _polychoric_matrix(X: np.ndarray, w: np.ndarray | None, items: list[str], correct: float = 0.5,
                       global_thresholds: bool | None = None, smooth: bool = True,
                       tol: float = np.finfo(float).eps ** 0.25):
    codes, K = _codes(X, items)
    p = codes.shape[1]
    ww = np.ones(codes.shape[0]) if w is None else w
    freq = np.stack([np.bincount(codes[codes[:, j] >= 0, j], weights=ww[codes[:, j] >= 0], minlength=K)
                     for j in range(p)], axis=1)
    tau = _thresholds_from_freq(freq)                          # (K-1, p)
    top = np.array([np.max(np.nonzero(freq[:, j])[0]) for j in range(p)])
    if global_thresholds is None:
        global_thresholds = bool(np.all(top == top[0]))       # psych: equal number of categories
    I, J = np.tril_indices(p, -1)
    tabs = _pair_tables(codes, K, w, I, J)
    tot = tabs.sum(axis=(1, 2))
    if np.any(tot == 0):
        bad = [f"{items[i]}-{items[j]}" for i, j, t in zip(I, J, tot) if t == 0]
        raise ValueError(f"no respondent answered both items of pair(s) {', '.join(bad[:5])}")
    tabs = tabs / tot[:, None, None]
    if global_thresholds:
        tx, ty = tau[:, I].T, tau[:, J].T
        rho = _brent_fmin(_poly_objective(tabs, tx, ty), -np.ones(len(I)), np.ones(len(I)), tol)
    else:   # psych's local thresholds: drop empty rows/columns, replace zero cells by correct/n
        K1 = K - 1
        tx = np.full((len(I), K1), np.inf)
        ty = np.full((len(I), K1), np.inf)
        tp = np.zeros((len(I), K, K))
        usable = np.ones(len(I), bool)
        for m in range(len(I)):
            t = tabs[m]
            t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
            if correct > 0 and np.any(t == 0):
                t = np.where(t == 0, correct / tot[m], t)
            if min(t.shape) < 2:
                usable[m] = False
                continue
            kx, ky = t.shape
            tx[m, :kx - 1] = special.ndtri(np.cumsum(t.sum(axis=1))[:-1])
            ty[m, :ky - 1] = special.ndtri(np.cumsum(t.sum(axis=0))[:-1])
            tp[m, :kx, :ky] = t
        rho = np.full(len(I), np.nan)
        if usable.any():
            rho[usable] = _brent_fmin(_poly_objective(tp[usable], tx[usable], ty[usable]),
                                      -np.ones(usable.sum()), np.ones(usable.sum()), tol)
    Rm = np.eye(p)
    Rm[I, J] = rho
    Rm[J, I] = rho
    if smooth and np.all(np.isfinite(Rm)):
        Rm = _cor_smooth(Rm)
    return Rm, tau, global_thresholds


def polychoric(df: pd.DataFrame, items: Sequence[str], weights: str | None = None,
               correct: float = 0.5, global_thresholds: bool | None = None,
               smooth: bool = True) -> pd.DataFrame:
    """Polychoric correlation matrix of ordinal items (two-step estimator, as ``psych::polychoric``).

    Step 1: each item's thresholds are the normal quantiles of its cumulative answer shares,
    :math:`\\tau_c = \\Phi^{-1}(\\sum_{m\\le c} p_m)`, from all respondents who answered it
    ("global" thresholds, psych's default when all items have the same number of
    categories; otherwise per-pair thresholds with zero cells replaced by ``correct``/n).
    Step 2: for each pair, the correlation :math:`\\rho` maximizes the multinomial
    log-likelihood :math:`\\sum_{ab} p_{ab}\\log\\pi_{ab}(\\rho)` of the pair's contingency table,
    where :math:`\\pi_{ab}` are rectangle probabilities of the standard bivariate normal
    (Olsson 1979). The one-dimensional search is R's ``optimize`` (Brent, tolerance
    ``.Machine$double.eps^0.25``), vectorized over all pairs. Missing values are handled
    pairwise. A matrix that is not positive definite is smoothed as ``psych::cor.smooth``.

    Returns
    -------
    pandas.DataFrame
        Square matrix, items on both axes.
    """
    X, w, items = _matrix(df, items, weights, what="polychoric correlations")
    R, _, _ = _polychoric_matrix(X, w, items, correct, global_thresholds, smooth)
    return pd.DataFrame(R, index=items, columns=items)


def polychoric_thresholds(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Item thresholds :math:`\\tau` of the polychoric model (one row per item, psych's ``tau``)."""
    X, w, items = _matrix(df, items, weights, min_items=1, what="polychoric thresholds")
    codes, K = _codes(X, items)
    ww = np.ones(codes.shape[0]) if w is None else w
    freq = np.stack([np.bincount(codes[codes[:, j] >= 0, j], weights=ww[codes[:, j] >= 0], minlength=K)
                     for j in range(codes.shape[1])], axis=1)
    tau = _thresholds_from_freq(freq)
    return pd.DataFrame(tau.T, index=items, columns=[f"t{c + 1}" for c in range(K - 1)])


def _ordinal_alpha_from_R(R: np.ndarray) -> float:
    k = R.shape[0]
    return float((1.0 - k / R.sum()) * k / (k - 1))


def ordinal_alpha(df: pd.DataFrame, items: Sequence[str], weights: str | None = None,
                  ci: float = 0.95, n_boot: int = 0, seed: int = 2025,
                  label: str | None = None) -> pd.DataFrame:
    """Ordinal alpha (Zumbo, Gadermann & Zeisser 2007): standardized alpha of the polychoric matrix.

    .. math:: \\alpha_{ord} = \\frac{k}{k-1}\\Big(1-\\frac{k}{\\mathbf 1'R_{poly}\\mathbf 1}\\Big)

    This is what ``psych::alpha(polychoric(x)$rho)`` reports. The Feldt interval is applied to
    ordinal alpha as an approximation (it assumes the F distribution of raw alpha); with
    ``n_boot > 0`` a percentile bootstrap interval (rows resampled, polychoric matrix
    re-estimated each time) is added.

    Returns
    -------
    pandas.DataFrame
        One row: ``scale, n_items, n, ordinal_alpha, feldt_low, feldt_high, boot_low,
        boot_high, ci_level, n_boot``.
    """
    X, w, items = _matrix(df, items, weights, what="ordinal alpha")
    n, k = X.shape
    R, _, _ = _polychoric_matrix(X, w, items)
    a = _ordinal_alpha_from_R(R)
    lo, hi = _feldt(a, n, k, ci)
    b_lo = b_hi = np.nan
    if n_boot and n_boot > 0:
        rng = np.random.default_rng(seed)
        vals = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                Rb, _, _ = _polychoric_matrix(X[idx], None if w is None else w[idx], items)
                vals[b] = _ordinal_alpha_from_R(Rb)
            except ValueError:
                vals[b] = np.nan
        b_lo, b_hi = np.nanquantile(vals, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return pd.DataFrame([{
        "scale": label if label is not None else f"{items[0]}..{items[-1]}", "n_items": k, "n": n,
        "ordinal_alpha": a, "feldt_low": lo, "feldt_high": hi, "boot_low": float(b_lo),
        "boot_high": float(b_hi), "ci_level": ci, "n_boot": int(n_boot or 0)}])


# --------------------------------------------------------------------------- factor analysis
def _eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = linalg.eigh(S)
    return vals[::-1], vecs[:, ::-1]


def _minres_obj(psi: np.ndarray, S: np.ndarray, nf: int) -> float:
    Sr = S.copy()
    np.fill_diagonal(Sr, 1.0 - psi)    # psych: diag(S) <- 1 - Psi (S a correlation matrix)
    vals, vecs = _eigh_desc(Sr)
    vals = np.where(vals < np.finfo(float).eps, 100 * np.finfo(float).eps, vals)
    L = vecs[:, :nf] * np.sqrt(vals[:nf])
    res = S - L @ L.T
    iu = np.tril_indices(S.shape[0], -1)
    return float((res[iu] ** 2).sum())


def _minres_grad(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    vals, vecs = _eigh_desc(S - np.diag(psi))
    L = vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf], 0))
    return np.diag(L @ L.T) + psi - np.diag(S)


def _ml_obj(psi: np.ndarray, S: np.ndarray, nf: int) -> float:
    sc = 1 / np.sqrt(psi)
    vals = linalg.eigvalsh(S * sc[:, None] * sc[None, :])[::-1]
    e = vals[nf:]
    return float(-(np.sum(np.log(e) - e) - nf + S.shape[0]))


def _ml_loadings(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    sc = 1 / np.sqrt(psi)
    vals, vecs = _eigh_desc(S * sc[:, None] * sc[None, :])
    return np.sqrt(psi)[:, None] * (vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf] - 1, 0)))


def _ml_grad(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    L = _ml_loadings(psi, S, nf)
    g = L @ L.T + np.diag(psi) - S
    return np.diag(g) / psi ** 2


def _fit_factors(S: np.ndarray, nf: int, fm: str) -> tuple[np.ndarray, np.ndarray]:
    """Unrotated loadings and uniquenesses (psych::fa's ``fit``), solved to tight tolerance."""
    smc = _smc(S)
    upper = max(smc.max(), 1.0)
    start = np.diag(S) - smc
    if fm == "minres":
        fun, jac = _minres_obj, _minres_grad
    else:
        fun, jac = _ml_obj, _ml_grad
    # R's optim(method = "L-BFGS-B", control = list(parscale = rep(0.01, p))) with its defaults
    # (factr = 1e7, pgtol = 0, lmm = 5): same scaling and stopping rule, so the solution lands
    # where psych's does (the exact optimum differs by ~1e-4 in flat directions).
    scale = 0.01
    res = optimize.minimize(lambda y: fun(y * scale, S, nf), start / scale,
                            jac=lambda y: jac(y * scale, S, nf) * scale, method="L-BFGS-B",
                            bounds=[(0.005 / scale, upper / scale)] * len(start),
                            options={"ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxcor": 5,
                                     "maxiter": 100})
    psi = res.x * scale
    if fm == "minres":
        vals, vecs = _eigh_desc(S - np.diag(psi))
        L = vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf], 0))
    else:
        L = _ml_loadings(psi, S, nf)
    return L, psi


def _varimax(L: np.ndarray, normalize: bool = True, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """R's ``stats::varimax`` (Kaiser normalization, same stopping rule)."""
    nc = L.shape[1]
    if nc < 2:
        return L, np.eye(nc)
    x = L.copy()
    if normalize:
        sc = np.sqrt((x ** 2).sum(axis=1))
        x = x / sc[:, None]
    p = x.shape[0]
    TT = np.eye(nc)
    d = 0.0
    for _ in range(1000):
        z = x @ TT
        B = x.T @ (z ** 3 - z @ np.diag((z ** 2).sum(axis=0)) / p)
        u, s, vt = linalg.svd(B)
        TT = u @ vt
        dpast, d = d, s.sum()
        if d < dpast * (1 + eps):
            break
    z = x @ TT
    if normalize:
        z = z * sc[:, None]
    return z, TT


def _oblimin(A: np.ndarray, gam: float = 0.0, eps: float = 1e-5, maxit: int = 1000
             ) -> tuple[np.ndarray, np.ndarray]:
    """GPArotation::oblimin (gradient projection, Jennrich 2002), unnormalized, same stopping rule.

    Returns pattern loadings and the factor correlation matrix :math:`\\Phi = T'T`.
    """
    p, m = A.shape
    off = 1.0 - np.eye(m)

    def vgq(L):
        X = (L ** 2) @ off
        if gam != 0:
            X = (np.eye(p) - gam / p) @ X
        return L * X, float(np.sum(L ** 2 * X) / 4)

    Tm = np.eye(m)
    al = 1.0
    L = A @ linalg.inv(Tm).T
    Gq, f = vgq(L)
    G = -(L.T @ Gq @ linalg.inv(Tm)).T
    for _ in range(maxit + 1):
        Gp = G - Tm @ np.diag((Tm * G).sum(axis=0))
        s = math.sqrt(float(np.sum(Gp ** 2)))
        if s < eps:
            break
        al = 2 * al
        for _i in range(11):
            Xm = Tm - al * Gp
            v = 1 / np.sqrt((Xm ** 2).sum(axis=0))
            Tt = Xm * v[None, :]
            L = A @ linalg.inv(Tt).T
            Gqt, ft = vgq(L)
            if f - ft > 0.5 * s ** 2 * al:
                break
            al = al / 2
        Tm = Tt
        f = ft
        G = -(L.T @ Gqt @ linalg.inv(Tt)).T
    return L, Tm.T @ Tm


def _fa(S: np.ndarray, nf: int, fm: str = "minres", rotate: str = "oblimin"):
    """psych::fa on a correlation matrix: loadings, Phi, communalities, uniquenesses, values."""
    if fm not in ("minres", "ml"):
        raise ValueError(f"unknown factoring method {fm!r}; use 'minres' or 'ml'")
    if rotate not in ("oblimin", "varimax", "none"):
        raise ValueError(f"unknown rotation {rotate!r}; use 'oblimin', 'varimax' or 'none'")
    L, psi = _fit_factors(S, nf, fm)
    sgn = np.sign(L.sum(axis=0))
    sgn[sgn == 0] = 1
    L = L * sgn
    L[L == 0] = 1e-15
    model = L @ L.T
    Phi = None
    if nf > 1 and rotate == "varimax":
        L, _ = _varimax(L)
    elif nf > 1 and rotate == "oblimin":
        L, Phi = _oblimin(L)
    sgn = np.sign(L.sum(axis=0))
    sgn[sgn == 0] = 1
    L = L * sgn
    if Phi is not None:
        Phi = Phi * sgn[:, None] * sgn[None, :]
    if nf > 1:
        ev = np.diag(L.T @ L) if Phi is None else np.diag(Phi @ L.T @ L)
        order = np.argsort(-ev, kind="stable")
        L = L[:, order]
        if Phi is not None:
            Phi = Phi[np.ix_(order, order)]
    Sm = S.copy()
    np.fill_diagonal(Sm, np.diag(model))
    values = np.sort(linalg.eigvalsh(Sm))[::-1]
    return {"loadings": L, "Phi": Phi, "communality": np.diag(model),
            "uniquenesses": np.diag(S - model), "values": values, "psi": psi}


def _corr(df, items, weights, corr: str, what: str):
    X, w, items = _matrix(df, items, weights, what=what)
    if corr == "pearson":
        R = _pairwise(X, w, "cor")
    elif corr == "polychoric":
        R, _, _ = _polychoric_matrix(X, w, items)
    else:
        raise ValueError(f"unknown correlation {corr!r}; use 'pearson' or 'polychoric'")
    if not np.all(np.isfinite(R)):
        raise ValueError("some pairs of items were never answered together; the correlation matrix is incomplete")
    return R, X, items


@dataclass(frozen=True)
class EFAResult:
    """An exploratory factor solution (``psych::fa``).

    Attributes
    ----------
    loadings
        Tidy: one row per item with the factor columns (``MR1``.. or ``ML1``..),
        ``communality`` (h2) and ``uniqueness`` (u2).
    phi
        Factor correlations (oblique rotations), else ``None``.
    eigenvalues
        Eigenvalues of the reduced correlation matrix (psych's ``values``).
    """

    loadings: pd.DataFrame
    phi: pd.DataFrame | None
    eigenvalues: np.ndarray
    method: str
    rotation: str
    n: int

    def long(self) -> pd.DataFrame:
        """Loadings in long form: ``item, factor, loading``."""
        fac = [c for c in self.loadings.columns if c not in ("item", "communality", "uniqueness")]
        return self.loadings.melt(id_vars="item", value_vars=fac, var_name="factor", value_name="loading")


def efa(df: pd.DataFrame, items: Sequence[str], n_factors: int, method: str = "minres",
        rotation: str = "oblimin", corr: str = "pearson", weights: str | None = None) -> EFAResult:
    """Exploratory factor analysis, as ``psych::fa``.

    ``method="minres"`` minimizes the sum of squared off-diagonal residuals
    :math:`\\sum_{i<j}(r_{ij}-\\lambda_i'\\lambda_j)^2`; ``method="ml"`` maximizes the normal
    likelihood (the discrepancy :math:`\\log|\\Sigma|+\\operatorname{tr}(R\\Sigma^{-1})-\\log|R|-p`
    with :math:`\\Sigma=\\Lambda\\Lambda'+\\Psi`). Both start from :math:`1-SMC` and bound the
    uniquenesses to [0.005, 1]. ``rotation`` is ``"oblimin"`` (GPArotation::oblimin, gamma 0,
    unnormalized), ``"varimax"`` (stats::varimax, Kaiser-normalized) or ``"none"``. Factors are
    signed to positive column sums and ordered by explained variance, as psych does.
    ``corr="polychoric"`` factors the polychoric matrix instead of Pearson correlations.
    """
    if not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ValueError(f"n_factors must be a positive integer, got {n_factors!r}")
    R, X, items = _corr(df, items, weights, corr, "factor analysis")
    p = len(items)
    dof = ((p - n_factors) ** 2 - (p + n_factors)) / 2
    if n_factors >= p or dof < 0:
        raise ValueError(f"{n_factors} factors are too many for {p} items")
    out = _fa(R, n_factors, method, rotation)
    prefix = "MR" if method == "minres" else "ML"
    cols = [f"{prefix}{j + 1}" for j in range(n_factors)]
    lt = pd.DataFrame(out["loadings"], columns=cols)
    lt.insert(0, "item", items)
    lt["communality"] = out["communality"]
    lt["uniqueness"] = out["uniquenesses"]
    phi = None if out["Phi"] is None else pd.DataFrame(out["Phi"], index=cols, columns=cols)
    return EFAResult(loadings=lt, phi=phi, eigenvalues=out["values"], method=method,
                     rotation=rotation, n=X.shape[0])


def schmid_leiman(R: np.ndarray | pd.DataFrame, n_factors: int = 3, fm: str = "minres") -> pd.DataFrame:
    """Schmid-Leiman transformation of an oblimin solution (``psych::schmid``).

    Steps: ``fa(R, n_factors, fm, rotate="varimax")``; oblimin rotation of those loadings
    (pattern :math:`F`, factor correlations :math:`\\Phi`); general-factor loadings of the
    group factors :math:`g` from a one-factor ``fa`` of :math:`\\Phi` (two factors:
    :math:`g_1=g_2=\\sqrt{|\\phi_{12}|}`); item loadings on the general factor :math:`Fg` and on
    the residualized group factors :math:`\\operatorname{sign}(F)\\sqrt{F^2(1-g^2)}`.

    Returns
    -------
    pandas.DataFrame
        One row per item: ``item, g, F1*, .., h2, u2, p2`` (p2 = g^2/h2).
    """
    names = list(R.columns) if isinstance(R, pd.DataFrame) else [f"V{i + 1}" for i in range(len(R))]
    R = np.asarray(R, float)
    orth = _fa(R, n_factors, fm, "varimax")["loadings"]
    h2 = (orth ** 2).sum(axis=1)
    if n_factors == 1:
        fload, gload = orth, np.array([1.0])
    else:
        fload, Phi = _oblimin(orth)
        if n_factors > 2:
            gload = _fa(Phi, 1, fm, "none")["loadings"][:, 0]
        else:
            g = math.sqrt(abs(Phi[0, 1]))
            gload = np.array([g, math.copysign(g, Phi[0, 1])])
    g = fload @ gload
    diagm = np.diag(R)
    uniq2 = np.clip(diagm[:, None] - (diagm[:, None] - fload ** 2) - (fload * gload) ** 2, 0, None)
    sm = np.sign(fload) * np.sqrt(uniq2)
    out = pd.DataFrame(sm, columns=[f"F{j + 1}*" for j in range(n_factors)])
    out.insert(0, "g", g)
    out.insert(0, "item", names)
    out["h2"] = h2
    out["u2"] = diagm - h2
    out["p2"] = g ** 2 / h2
    return out


def omega(df: pd.DataFrame, items: Sequence[str], n_factors: int = 3, fm: str = "minres",
          corr: str = "pearson", weights: str | None = None, label: str | None = None) -> pd.DataFrame:
    """McDonald's omega total and omega hierarchical via Schmid-Leiman, as ``psych::omega``.

    With :math:`R` the (pairwise) correlation matrix, items reversed where their general
    loading is negative (psych's ``flip``), :math:`V_t=\\mathbf 1'R\\mathbf 1`, general loadings
    :math:`g` and communalities :math:`h^2` from :func:`schmid_leiman`:

    .. math:: \\omega_h = \\frac{(\\sum g)^2}{V_t}, \\qquad
              \\omega_t = \\frac{V_t-\\sum(1-h^2)}{V_t}, \\qquad
              \\omega_{lim} = \\frac{(\\sum g)^2}{V_t-\\sum(1-h^2)}.

    ``alpha`` (standardized) and Guttman's :math:`\\lambda_6` (``g6``) of the same matrix are
    reported alongside. With ``n_factors=1`` omega_h equals omega_t (one common factor).

    Returns
    -------
    pandas.DataFrame
        One row: ``scale, n_items, n, n_factors, omega_h, omega_total, omega_lim, alpha, g6, ecv``.
    """
    if not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ValueError(f"n_factors must be a positive integer, got {n_factors!r}")
    R, X, items = _corr(df, items, weights, corr, "omega")
    p = len(items)
    if n_factors >= p:
        raise ValueError(f"omega with {n_factors} group factors needs more than {n_factors} items; got {p}")
    sl = schmid_leiman(pd.DataFrame(R, index=items, columns=items), n_factors, fm)
    key = np.sign(sl["g"].to_numpy())
    key[key == 0] = 1
    m = R * key[:, None] * key[None, :]
    g = sl["g"].to_numpy() * key
    Vt = m.sum()
    u2 = sl["u2"].sum()
    gsq = g.sum() ** 2
    ev = (sl[["g"] + [f"F{j + 1}*" for j in range(n_factors)]] ** 2).sum(axis=0).to_numpy()
    return pd.DataFrame([{
        "scale": label if label is not None else f"{items[0]}..{items[-1]}", "n_items": p,
        "n": X.shape[0], "n_factors": n_factors, "omega_h": gsq / Vt, "omega_total": (Vt - u2) / Vt,
        "omega_lim": gsq / (Vt - u2), "alpha": (Vt - np.trace(m)) / Vt * p / (p - 1),
        "g6": (Vt + _smc(m).sum() - np.trace(m)) / Vt, "ecv": ev[0] / ev.sum()}])


def kmo(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Kaiser-Meyer-Olkin measure of sampling adequacy, overall and per item (``psych::KMO``).

    With :math:`r_{ij}` the correlations and :math:`q_{ij}` the partial (anti-image)
    correlations from :math:`R^{-1}`,
    :math:`MSA=\\sum_{i\\ne j}r_{ij}^2/(\\sum_{i\\ne j}r_{ij}^2+\\sum_{i\\ne j}q_{ij}^2)`; the
    item MSA sums over column :math:`i` only. Kaiser (1974): >= .80 meritorious, >= .60 mediocre,
    < .50 unacceptable.

    Returns
    -------
    pandas.DataFrame
        One row per item plus a row ``item="overall"``: ``item, msa``.
    """
    R, _, items = _corr(df, items, weights, "pearson", "KMO")
    try:
        Q = linalg.inv(R)
    except linalg.LinAlgError as exc:
        raise ValueError("the correlation matrix is singular (an item is a linear combination of others); "
                         "KMO is undefined") from exc
    Q = _cov2cor(Q)
    np.fill_diagonal(Q, 0)
    r = R.copy()
    np.fill_diagonal(r, 0)
    r2, q2 = (r ** 2), (Q ** 2)
    msa = r2.sum() / (r2.sum() + q2.sum())
    msai = r2.sum(axis=0) / (r2.sum(axis=0) + q2.sum(axis=0))
    return pd.DataFrame({"item": items + ["overall"], "msa": np.append(msai, msa)})


def bartlett_sphericity(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Bartlett's test that the correlation matrix is an identity (``psych::cortest.bartlett``).

    .. math:: \\chi^2 = -\\log|R|\\,\\big(n-1-(2p+5)/6\\big), \\quad df = p(p-1)/2,

    with :math:`n` the number of respondents (rows with at least one answer) and :math:`R` the
    pairwise correlation matrix.
    """
    R, X, items = _corr(df, items, weights, "pearson", "Bartlett's test")
    n, p = X.shape
    sign, logdet = np.linalg.slogdet(R)
    if sign <= 0:
        raise ValueError("the correlation matrix is not positive definite; Bartlett's test is undefined")
    chisq = -logdet * (n - 1 - (2 * p + 5) / 6)
    dfree = p * (p - 1) / 2
    return pd.DataFrame([{"chisq": chisq, "df": dfree, "p_value": float(stats.chi2.sf(chisq, dfree)),
                          "n": n, "n_items": p}])


def parallel_analysis(df: pd.DataFrame, items: Sequence[str], n_iter: int = 20, seed: int = 2025,
                      quantile: float = 0.95, fm: str = "minres", weights: str | None = None) -> pd.DataFrame:
    """Horn's parallel analysis with simulated normal data, as ``psych::fa.parallel(sim=TRUE)``.

    The simulated correlation matrices are those of ``n`` independent standard normal
    variables; they are drawn from their exact (Wishart) distribution rather than by
    generating the raw data, which gives the same distribution at a fraction of the cost.

    Observed eigenvalues of the correlation matrix (components, ``pc_observed``) and of the
    reduced matrix with one-factor ``fm`` communalities on the diagonal (factors,
    ``fa_observed``) are compared with the mean and the ``quantile`` of the same eigenvalues
    from ``n_iter`` data sets of independent normal variables of the same size (seeded). A
    component/factor is retained while the observed eigenvalue exceeds the simulated mean
    (psych's rule); the quantile is reported for the stricter reading.

    Returns
    -------
    pandas.DataFrame
        One row per position: ``number, pc_observed, pc_sim_mean, pc_sim_q, fa_observed,
        fa_sim_mean, fa_sim_q, retain_pc, retain_fa``. ``attrs`` is not used; the numbers of
        components and factors to retain are ``retain_pc.sum()`` and ``retain_fa.sum()``.
    """
    R, X, items = _corr(df, items, weights, "pearson", "parallel analysis")
    n, p = X.shape
    pc = np.sort(linalg.eigvalsh(R))[::-1]
    fa_obs = _fa(R, 1, fm, "none")["values"]
    rng = np.random.default_rng(seed)
    pcs = np.empty((n_iter, p))
    fas = np.empty((n_iter, p))
    lower = np.tril_indices(p, -1)
    for b in range(n_iter):
        # The correlation matrix of n independent normal p-vectors, drawn directly: the
        # scatter matrix is Wishart(n - 1, I) (Bartlett decomposition W = A A').
        A = np.zeros((p, p))
        A[np.diag_indices(p)] = np.sqrt(rng.chisquare(n - 1 - np.arange(p)))
        A[lower] = rng.standard_normal(len(lower[0]))
        C = A @ A.T
        d = 1 / np.sqrt(np.diag(C))
        Rs = C * d[:, None] * d[None, :]
        pcs[b] = np.sort(linalg.eigvalsh(Rs))[::-1]
        fas[b] = _fa(Rs, 1, fm, "none")["values"]
    out = pd.DataFrame({"number": np.arange(1, p + 1), "pc_observed": pc, "pc_sim_mean": pcs.mean(axis=0),
                        "pc_sim_q": np.quantile(pcs, quantile, axis=0), "fa_observed": fa_obs,
                        "fa_sim_mean": fas.mean(axis=0), "fa_sim_q": np.quantile(fas, quantile, axis=0)})
    out["retain_pc"] = np.cumprod(out["pc_observed"] > out["pc_sim_mean"]).astype(bool)
    out["retain_fa"] = np.cumprod(out["fa_observed"] > out["fa_sim_mean"]).astype(bool)
    return out


# --------------------------------------------------------------------------- CFA
_MODEL_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=~\s*(.+?)\s*$")


def parse_model(model: str | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A measurement model as ``{factor: [items]}``; accepts lavaan syntax (``F =~ a + b + c``)."""
    if isinstance(model, Mapping):
        out = {str(k): list(v) for k, v in model.items()}
    elif isinstance(model, str):
        out = {}
        for raw in re.split(r"[\n;]", model):
            line = raw.split("#")[0].strip()
            if not line:
                continue
            m = _MODEL_LINE.match(line)
            if not m:
                raise ValueError(f"cannot read model line {line!r}; expected 'factor =~ item1 + item2 + ...'")
            out.setdefault(m.group(1), []).extend(t.strip() for t in m.group(2).split("+"))
    else:
        raise ValueError("model must be a dict {factor: [items]} or lavaan syntax 'F =~ a + b'")
    if not out:
        raise ValueError("the model has no factor")
    seen: dict[str, str] = {}
    for f, its in out.items():
        if len(its) < 2:
            raise ValueError(f"factor {f} has {len(its)} item(s); a CFA factor needs at least 2")
        for it in its:
            if it in seen:
                raise ValueError(f"item {it} loads on both {seen[it]} and {f}; cross-loadings are not supported")
            seen[it] = f
    return out


@dataclass(frozen=True)
class CFAResult:
    """A confirmatory factor analysis fitted by maximum likelihood (lavaan conventions).

    Attributes
    ----------
    fit
        One row: ``n, npar, chisq, df, pvalue, baseline_chisq, baseline_df, cfi, tli, rmsea,
        rmsea_ci_low, rmsea_ci_high, rmsea_pvalue, srmr, aic, bic, converged``.
    loadings
        One row per item: ``factor, item, est`` (first loading fixed to 1), ``std``
        (completely standardized, lavaan's ``std.all``).
    reliability
        One row per factor: ``factor, n_items, cr`` (composite reliability) and ``ave``.
    phi
        Factor correlations.
    """

    fit: pd.DataFrame
    loadings: pd.DataFrame
    reliability: pd.DataFrame
    phi: pd.DataFrame


def _rmsea_ci(X2: float, dfree: float, N: int, level: float = 0.90) -> tuple[float, float]:
    """lavaan's RMSEA interval: non-centrality bounds of the non-central chi-square."""
    up, lo = 1 - (1 - level) / 2, (1 - level) / 2

    def cdf(lam):
        return stats.ncx2.cdf(X2, dfree, lam) if lam > 0 else stats.chi2.cdf(X2, dfree)

    if dfree < 1 or cdf(0) - up < 0:
        ci_lo = 0.0
    else:
        lam = optimize.brentq(lambda L: cdf(L) - up, 0, X2, xtol=1e-12)
        ci_lo = math.sqrt(lam / (N * dfree))
    n_rmsea = max(N, X2 * 4)
    if dfree < 1 or cdf(n_rmsea) - lo > 0 or cdf(0) - lo < 0:
        ci_hi = 0.0
    else:
        lam = optimize.brentq(lambda L: cdf(L) - lo, 0, n_rmsea, xtol=1e-12)
        ci_hi = math.sqrt(lam / (N * dfree))
    return ci_lo, ci_hi


def _fisher_scoring(th: np.ndarray, obj, unpack, fac_of, free_l, tri, p: int, nf: int,
                    maxit: int = 500, tol: float = 1e-9) -> tuple[np.ndarray, bool]:
    """Minimize the ML discrepancy by Fisher scoring with step halving.

    The expected Hessian of :math:`F=\\log|\\Sigma|+\\operatorname{tr}(S\\Sigma^{-1})` is
    :math:`H_{ab}=\\operatorname{tr}(\\Sigma^{-1}\\dot\\Sigma_a\\Sigma^{-1}\\dot\\Sigma_b)`
    with :math:`\\dot\\Sigma_a=\\partial\\Sigma/\\partial\\theta_a` (Jöreskog 1969). Unbounded,
    like lavaan (a Heywood case shows up as a negative residual variance).
    """
    f, g = obj(th)
    for it in range(maxit):
        Lam, Phi, theta = unpack(th)
        Sig = Lam @ Phi @ Lam.T + np.diag(theta)
        W = linalg.inv(Sig)
        LP = Lam @ Phi
        D = []
        for i in free_l:                                   # loadings
            d = np.zeros((p, p))
            d[i, :] = LP[:, fac_of[i]]
            D.append(d + d.T)
        for a, b in zip(*tri):                              # factor (co)variances
            o = np.outer(Lam[:, a], Lam[:, b])
            D.append(o + o.T if a != b else o)
        for i in range(p):                                  # residual variances
            d = np.zeros((p, p))
            d[i, i] = 1.0
            D.append(d)
        M = np.einsum("ij,ajk->aik", W, np.array(D))        # W dSigma_a
        H = np.einsum("aij,bji->ab", M, M)
        with warnings.catch_warnings():
            warnings.simplefilter("error", linalg.LinAlgWarning)
            try:
                step = linalg.solve(H, g, assume_a="sym")
            except (linalg.LinAlgError, linalg.LinAlgWarning):
                step = np.linalg.lstsq(H, g, rcond=None)[0]   # (nearly) unidentified model
        t = 1.0
        while t > 1e-8:
            cand = th - t * step
            fc, gc = obj(cand)
            if fc <= f + 1e-15:
                break
            t /= 2
        else:
            return th, bool(np.max(np.abs(g)) < 1e-6)
        done = f - fc < 1e-15 and np.max(np.abs(gc)) < tol
        th, f, g = cand, fc, gc
        if done or np.max(np.abs(g)) < tol * 1e-2:
            return th, True
    return th, bool(np.max(np.abs(g)) < 1e-6)


def cfa(df: pd.DataFrame, model: str | Mapping[str, Sequence[str]], conditional_items: Sequence[str] = (
        "c15", "c16", "c17", "c18"), feedback_column: str = "gave_feedback") -> CFAResult:
    """Confirmatory factor analysis by maximum likelihood, reproducing ``lavaan::cfa`` defaults.

    Model: :math:`\\Sigma(\\theta)=\\Lambda\\Phi\\Lambda'+\\Theta` with simple structure, the first
    loading of each factor fixed to 1, free factor covariances and diagonal residual
    variances. Estimation minimizes
    :math:`F_{ML}=\\log|\\Sigma|+\\operatorname{tr}(S\\Sigma^{-1})-\\log|S|-p` with :math:`S` the
    covariance matrix with divisor :math:`N` (lavaan's ``likelihood = "normal"``). Missing
    data: complete cases (lavaan's default listwise deletion); if the model contains the
    section V items, only respondents with ``feedback_column`` true are used (structural
    missingness, see the module notes).

    Fit: :math:`\\chi^2=N F_{ML}`, df = p(p+1)/2 - npar; baseline = independence model;
    :math:`CFI=1-\\max(\\chi^2-df,0)/\\max(\\chi^2_b-df_b,\\chi^2-df,0)`;
    :math:`TLI=(\\chi^2_b/df_b-\\chi^2/df)/(\\chi^2_b/df_b-1)`;
    :math:`RMSEA=\\sqrt{\\max(\\chi^2-df,0)/(N\\,df)}` with the 90 % interval from the
    non-central :math:`\\chi^2` and the p-value of close fit (RMSEA <= .05);
    SRMR (Bentler) :math:`=\\sqrt{\\sum_{i\\le j}((s_{ij}-\\hat\\sigma_{ij})/\\sqrt{s_{ii}s_{jj}})^2/(p(p+1)/2)}`;
    AIC and BIC from the normal log-likelihood. Composite reliability
    :math:`CR=(\\sum\\lambda^*)^2/((\\sum\\lambda^*)^2+\\sum(1-\\lambda^{*2}))` and
    :math:`AVE=\\overline{\\lambda^{*2}}` use the standardized loadings :math:`\\lambda^*`.
    """
    spec = parse_model(model)
    items = [it for its in spec.values() for it in its]
    data = analysis_rows(df, items, conditional_items, feedback_column) if feedback_column in df.columns \
        else df
    X, _, items = _matrix(data, items, None, what="a CFA", min_rows=_MIN_ROWS)
    X = X[~np.isnan(X).any(axis=1)]
    N, p = X.shape
    nf = len(spec)
    if N < max(p + 2, _MIN_ROWS):
        raise ValueError(f"a CFA of {p} items needs more than {p + 1} complete rows; only {N} respondents "
                         "answered every item")
    S = np.cov(X, rowvar=False, bias=True)
    sign, logdet_S = np.linalg.slogdet(S)
    if sign <= 0:
        raise ValueError("the covariance matrix of the complete cases is singular; check for items that are "
                         "exact copies or sums of others")
    fac_of = np.repeat(np.arange(nf), [len(v) for v in spec.values()])
    first = np.r_[True, fac_of[1:] != fac_of[:-1]]
    free_l = np.nonzero(~first)[0]
    tri = np.triu_indices(nf)
    n_l, n_phi = len(free_l), len(tri[0])

    def unpack(th):
        lam = np.ones(p)
        lam[free_l] = th[:n_l]
        Phi = np.zeros((nf, nf))
        Phi[tri] = th[n_l:n_l + n_phi]
        Phi = Phi + np.triu(Phi, 1).T
        theta = th[n_l + n_phi:]
        Lam = np.zeros((p, nf))
        Lam[np.arange(p), fac_of] = lam
        return Lam, Phi, theta

    def obj(th):
        Lam, Phi, theta = unpack(th)
        Sig = Lam @ Phi @ Lam.T + np.diag(theta)
        try:
            c = linalg.cho_factor(Sig)
        except linalg.LinAlgError:
            return 1e10, np.zeros_like(th)
        logdet = 2 * np.log(np.diag(c[0])).sum()
        Si = linalg.cho_solve(c, np.eye(p))
        SiS = Si @ S
        f = logdet + np.trace(SiS) - logdet_S - p
        G = Si - SiS @ Si                               # dF/dSigma
        gL = 2 * (G @ Lam @ Phi)
        gPhi = Lam.T @ G @ Lam
        gPhi = 2 * gPhi - np.diag(np.diag(gPhi))
        grad = np.concatenate([gL[free_l, fac_of[free_l]], gPhi[tri], np.diag(G)])
        return f, grad

    # start values: loadings from the covariances with each factor's marker item
    var = np.diag(S)
    lam0 = np.ones(p)
    phi0 = np.zeros((nf, nf))
    markers = np.nonzero(first)[0]
    for f_, mk in enumerate(markers):
        its = np.nonzero(fac_of == f_)[0]
        others = its[its != mk]
        phi_ff = max(np.mean(S[mk, others]) if len(others) else 0.5 * var[mk], 0.05 * var[mk])
        phi0[f_, f_] = phi_ff
        lam0[others] = S[mk, others] / phi_ff
    # factor covariances start at 0 (lavaan's "simple" start), which keeps Sigma positive definite
    theta0 = np.maximum(var - lam0 ** 2 * phi0[fac_of, fac_of], 0.1 * var)
    th0 = np.concatenate([lam0[free_l], phi0[tri], theta0])
    th, converged = _fisher_scoring(th0, obj, unpack, fac_of, free_l, tri, p, nf)
    f_min = obj(th)[0]
    Lam, Phi, theta = unpack(th)
    Sig = Lam @ Phi @ Lam.T + np.diag(theta)
    npar = len(th)
    dfree = p * (p + 1) // 2 - npar
    chisq = N * f_min
    base = N * (np.log(var).sum() - logdet_S)
    base_df = p * (p - 1) // 2
    cfi_den = max(base - base_df, chisq - dfree, 0.0)
    cfi_v = 1.0 - max(chisq - dfree, 0.0) / cfi_den if cfi_den > 0 else 1.0
    tli_v = ((base / base_df) - (chisq / dfree)) / ((base / base_df) - 1) if dfree > 0 else np.nan
    rmsea = math.sqrt(max(chisq - dfree, 0.0) / (N * dfree)) if dfree > 0 else 0.0
    lo, hi = _rmsea_ci(chisq, dfree, N) if dfree > 0 else (np.nan, np.nan)
    rmsea_p = float(stats.ncx2.sf(chisq, dfree, N * dfree * 0.05 ** 2)) if dfree > 0 else np.nan
    sd = np.sqrt(var)
    resid = (S - Sig) / np.outer(sd, sd)
    iu = np.triu_indices(p)
    srmr = math.sqrt(np.mean(resid[iu] ** 2))
    loglik = -N / 2 * (p * math.log(2 * math.pi) + np.linalg.slogdet(Sig)[1]
                       + np.trace(linalg.solve(Sig, S, assume_a="pos")))
    fit = pd.DataFrame([{
        "n": N, "n_items": p, "n_factors": nf, "npar": npar, "chisq": chisq, "df": dfree,
        "pvalue": float(stats.chi2.sf(chisq, dfree)) if dfree > 0 else np.nan,
        "baseline_chisq": base, "baseline_df": base_df, "cfi": cfi_v, "tli": tli_v, "rmsea": rmsea,
        "rmsea_ci_low": lo, "rmsea_ci_high": hi, "rmsea_pvalue": rmsea_p, "srmr": srmr,
        "aic": -2 * loglik + 2 * npar, "bic": -2 * loglik + npar * math.log(N),
        "converged": converged}])
    lam = Lam[np.arange(p), fac_of]
    std = lam * np.sqrt(np.diag(Phi)[fac_of]) / np.sqrt(np.diag(Sig))
    names = list(spec)
    loadings = pd.DataFrame({"factor": [names[f_] for f_ in fac_of], "item": items, "est": lam, "std": std,
                             "residual_var": theta})
    rel = []
    for f_, nm in enumerate(names):
        s = std[fac_of == f_]
        rel.append({"factor": nm, "n_items": len(s),
                    "cr": s.sum() ** 2 / (s.sum() ** 2 + (1 - s ** 2).sum()), "ave": float(np.mean(s ** 2))})
    d = 1 / np.sqrt(np.diag(Phi))
    phi = pd.DataFrame(Phi * d[:, None] * d[None, :], index=names, columns=names)
    return CFAResult(fit=fit, loadings=loadings, reliability=pd.DataFrame(rel), phi=phi)


# --------------------------------------------------------------------------- verdicts
def alpha_verdict(value: float, lang: str = "en") -> str:
    """Plain-language reading of an alpha/omega value against :data:`ALPHA_THRESHOLDS`."""
    if value is None or not np.isfinite(value):
        return "không tính được" if lang == "vi" else "not computable"
    t = ALPHA_THRESHOLDS
    if value >= t["good"]:
        return "tốt (≥ 0,80)" if lang == "vi" else "good (≥ 0.80)"
    if value >= t["acceptable"]:
        return "chấp nhận được (≥ 0,70)" if lang == "vi" else "acceptable (≥ 0.70)"
    if value >= t["questionable"]:
        return "đáng ngờ (0,60–0,70)" if lang == "vi" else "questionable (0.60–0.70)"
    return "kém (< 0,60)" if lang == "vi" else "poor (< 0.60)"


def cfa_verdict(fit: pd.DataFrame | Mapping, lang: str = "en") -> str:
    """One-line verdict on a CFA fit against :data:`FIT_THRESHOLDS` (Hu & Bentler 1999)."""
    row = fit.iloc[0] if isinstance(fit, pd.DataFrame) else fit
    t = FIT_THRESHOLDS
    good = sum(bool(c) for c in (row["cfi"] >= t["cfi"], row["tli"] >= t["tli"], row["rmsea"] <= t["rmsea"],
                                  row["srmr"] <= t["srmr"]))
    ok = sum(bool(c) for c in (row["cfi"] >= t["cfi_acceptable"], row["tli"] >= t["tli_acceptable"],
                                row["rmsea"] <= t["rmsea_acceptable"], row["srmr"] <= t["srmr_acceptable"]))
    nums = (f"CFI {row['cfi']:.3f}, TLI {row['tli']:.3f}, RMSEA {row['rmsea']:.3f}, SRMR {row['srmr']:.3f}")
    if lang == "vi":
        nums = nums.replace(".", ",")
        if good == 4:
            return f"Mô hình năm yếu tố phù hợp tốt với dữ liệu ({nums})."
        if ok == 4:
            return f"Mô hình năm yếu tố phù hợp ở mức chấp nhận được ({nums})."
        return f"Mô hình năm yếu tố chưa phù hợp với dữ liệu ({nums})."
    if good == 4:
        return f"The model fits the data well ({nums}; all four within Hu & Bentler's cut-offs)."
    if ok == 4:
        return f"The model fits acceptably ({nums}; within the looser cut-offs CFI/TLI ≥ .90, RMSEA ≤ .08, SRMR ≤ .10)."
    return f"The model does not fit the data ({nums}; outside the acceptable cut-offs)."


def element_verdict(alpha: float, cr: float | None = None, ave: float | None = None, lang: str = "en") -> str:
    """One-line verdict on an element: internal consistency (alpha) and convergent validity (CR, AVE).

    Thresholds: :data:`ALPHA_THRESHOLDS` for alpha; CR >= .70 and AVE >= .50 (Fornell & Larcker
    1981) for convergent validity.
    """
    rel = alpha_verdict(alpha, lang)
    dec = (lambda v: f"{v:.2f}".replace(".", ",")) if lang == "vi" else (lambda v: f"{v:.2f}")
    a_txt = "α = " + (dec(alpha) if alpha is not None and np.isfinite(alpha) else "–")
    if cr is None or ave is None or not (np.isfinite(cr) and np.isfinite(ave)):
        return (f"Độ tin cậy {rel} ({a_txt}); chưa đánh giá được giá trị hội tụ." if lang == "vi"
                else f"Reliability {rel} ({a_txt}); convergent validity not assessed.")
    t = FIT_THRESHOLDS
    ok = cr >= t["cr"] and ave >= t["ave"]
    nums = f"{a_txt}; CR = {dec(cr)}; AVE = {dec(ave)}"
    if lang == "vi":
        conv = "giá trị hội tụ đạt (CR ≥ 0,70; AVE ≥ 0,50)" if ok else "giá trị hội tụ chưa đạt (cần CR ≥ 0,70 và AVE ≥ 0,50)"
        return f"Độ tin cậy {rel}, {conv} ({nums})."
    conv = "convergent validity supported (CR ≥ .70, AVE ≥ .50)" if ok else \
        "convergent validity not supported (needs CR ≥ .70 and AVE ≥ .50)"
    return f"Reliability {rel}, {conv} ({nums})."


_ALPHA_COLUMNS = ["unit_type", "scale", "n_items", "population", "n", "n_complete", "raw_alpha", "std_alpha", "g6",
                  "average_r", "ase", "feldt_low", "feldt_high", "boot_low", "boot_high", "ci_level", "n_boot",
                  "ordinal_alpha", "ordinal_feldt_low", "ordinal_feldt_high", "omega_total", "omega_h", "note"]
_CFA_COLUMNS = ["unit_type", "level", "code", "n", "n_items", "n_factors", "npar", "chisq", "df", "pvalue",
                "baseline_chisq", "baseline_df", "cfi", "tli", "rmsea", "rmsea_ci_low", "rmsea_ci_high",
                "rmsea_pvalue", "srmr", "aic", "bic", "converged", "cr", "ave", "note"]
_ITEM_COLUMNS = {"unit_type": object, "scale": object, "item": object, "n": "int64", "missing_share": float,
                 "mean": float, "sd": float, "share_satisfied": float, "raw_r": float, "std_r": float,
                 "r_cor": float, "r_drop": float, "alpha_if_deleted": float, "std_alpha_if_deleted": float,
                 "weak": bool}


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), ""
    except ValueError as exc:
        return None, str(exc)


def stage_tables(df: pd.DataFrame, model: Mapping[str, Sequence[str]], weights: str | None = None,
                 by: str | None = "unit_type", n_boot: int = 1000, seed: int = 2025, lang: str = "vi",
                 feedback_column: str = "gave_feedback", n_group_factors: int | None = None
                 ) -> dict[str, pd.DataFrame]:
    """The three stage-40 result tables, for all respondents and by ``by`` (unit type).

    For each group (``all`` plus each value of ``by``) and each element of ``model`` plus the
    whole questionnaire (``overall``): alpha with Feldt and bootstrap intervals, ordinal alpha,
    omega (one factor for an element; ``n_group_factors`` = number of elements for
    ``overall``), item statistics, and the CFA of ``model`` with composite reliability and AVE.
    Each element is analysed on :func:`analysis_rows` (E5 on respondents who gave feedback);
    ``overall`` and the CFA mix E5 with the other items, so they use respondents who gave
    feedback. A group too small for a method gets a row with ``note`` saying why instead of an
    error.

    Returns
    -------
    dict
        ``alpha`` (``reliability_alpha.parquet``), ``items`` (``reliability_items.parquet``) and
        ``cfa`` (``reliability_cfa.parquet``). ``alpha`` and ``cfa`` carry a ``verdict`` in
        ``lang`` plus ``verdict_vi``/``verdict_en``.
    """
    model = parse_model(model)
    criteria = [c for its in model.values() for c in its]
    scales = list(model.items()) + [("overall", criteria)]
    nf = n_group_factors or len(model)
    groups: list[tuple[str, pd.DataFrame]] = [("all", df)]
    if by is not None and by in df.columns:
        groups += [(str(g), d) for g, d in df.groupby(by, sort=True)]
    alpha_rows, item_rows, cfa_rows = [], [], []
    for g, d in groups:
        pop_rows = {code: (analysis_rows(d, its, feedback_column=feedback_column)
                           if feedback_column in d.columns else d) for code, its in scales}
        # alpha of the scales analysed on the same respondents in one call (shared bootstrap resamples)
        alphas: dict[str, pd.Series] = {}
        notes: dict[str, str] = {}
        for size in sorted({len(r) for r in pop_rows.values()}):
            same = {code: its for code, its in scales if len(pop_rows[code]) == size}
            rows_ = pop_rows[next(iter(same))]
            a, note = _try(cronbach_alpha, rows_, same, weights=weights, n_boot=n_boot, seed=seed)
            if a is None:        # one scale is not computable: do them one by one to say which
                for code, its in same.items():
                    a1, note1 = _try(cronbach_alpha, rows_, {code: its}, weights=weights, n_boot=n_boot, seed=seed)
                    if a1 is None:
                        notes[code] = note1
                    else:
                        alphas[code] = a1.iloc[0]
            else:
                alphas.update({r["scale"]: r for _, r in a.iterrows()})
        for code, its in scales:
            rows = pop_rows[code]
            base = {"unit_type": g, "scale": code, "n_items": len(its),
                    "population": "gave_feedback" if len(rows) < len(d) else "all"}
            if code not in alphas:
                alpha_rows.append({**base, "n": len(rows), "note": notes.get(code, "")})
                continue
            row = {**base, **alphas[code].drop(["scale", "n_items"]).to_dict(), "note": ""}
            o, _ = _try(ordinal_alpha, rows, its, weights=weights)
            if o is not None:
                row.update(ordinal_alpha=o["ordinal_alpha"].iloc[0], ordinal_feldt_low=o["feldt_low"].iloc[0],
                           ordinal_feldt_high=o["feldt_high"].iloc[0])
            om, _ = _try(omega, rows, its, n_factors=1 if code != "overall" else nf, weights=weights)
            if om is not None:
                row.update(omega_total=om["omega_total"].iloc[0],
                           omega_h=om["omega_h"].iloc[0] if code == "overall" else np.nan)
            alpha_rows.append(row)
            s, _ = _try(item_statistics, rows, its, weights=weights)
            if s is not None:
                s.insert(0, "scale", code)
                s.insert(0, "unit_type", g)
                item_rows.append(s)
        res, note = _try(cfa, d, model, feedback_column=feedback_column)
        if res is None:
            cfa_rows.append({"unit_type": g, "level": "model", "code": "five_element", "note": note})
            cfa_rows += [{"unit_type": g, "level": "element", "code": e, "n_items": len(v), "note": note}
                         for e, v in model.items()]
            continue
        f = res.fit.iloc[0].to_dict()
        cfa_rows.append({"unit_type": g, "level": "model", "code": "five_element", **f, "note": ""})
        for r in res.reliability.itertuples():
            cfa_rows.append({"unit_type": g, "level": "element", "code": r.factor, "n": f["n"],
                             "n_items": r.n_items, "cr": r.cr, "ave": r.ave, "note": ""})
    alpha_t = pd.DataFrame(alpha_rows)
    alpha_t = alpha_t.reindex(columns=list(dict.fromkeys(_ALPHA_COLUMNS + list(alpha_t.columns))))
    for lg in ("vi", "en"):
        alpha_t[f"verdict_{lg}"] = [alpha_verdict(v, lg) for v in alpha_t["raw_alpha"]]
    alpha_t["verdict"] = alpha_t[f"verdict_{lang}"]
    items_t = pd.concat(item_rows, ignore_index=True) if item_rows else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in _ITEM_COLUMNS.items()})
    cfa_t = pd.DataFrame(cfa_rows)
    cfa_t = cfa_t.reindex(columns=list(dict.fromkeys(_CFA_COLUMNS + list(cfa_t.columns))))
    a_idx = alpha_t.set_index(["unit_type", "scale"])["raw_alpha"]
    for lg in ("vi", "en"):
        out = []
        for r in cfa_t.itertuples():
            if r.level == "model":
                out.append(cfa_verdict(cfa_t.loc[[r.Index]], lg) if np.isfinite(getattr(r, "cfi", np.nan)) else
                           ("Không ước lượng được mô hình: " if lg == "vi" else "Model not estimable: ") + str(r.note))
            else:
                out.append(element_verdict(a_idx.get((r.unit_type, r.code), np.nan), r.cr, r.ave, lg))
        cfa_t[f"verdict_{lg}"] = out
    cfa_t["verdict"] = cfa_t[f"verdict_{lang}"]
    return {"alpha": alpha_t, "items": items_t, "cfa": cfa_t}


#: Report texts of the stage-40 notebook (register with ``reporting.register_labels``).
#: Placeholders are filled by ``reporting.narrate`` (values escaped).
REPORT_LABELS: dict[str, dict[str, str]] = load_texts("reliability")
