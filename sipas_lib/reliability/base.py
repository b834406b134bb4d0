"""Shared input checks, the missing-data policy and pairwise (weighted) covariances.

Core layer. Every method of the package turns a DataFrame and item names into a numeric matrix
with :func:`_matrix` (whole-number ratings, NaN = no answer, optional reliability weights) and
uses the pairwise covariances/correlations of :func:`_pairwise`, as ``psych`` does with
``use = "pairwise"``.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import linalg

SATISFIED_MIN = 4
"""A rating of 4 ("satisfied") or 5 ("very satisfied") counts as satisfied (DESIGN.md)."""

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
