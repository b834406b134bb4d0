r"""Agreement of two ratings of the same cases: Cohen's kappa, unweighted and weighted, with its interval.

Core layer. Used by the re-check (phúc tra, :mod:`sipas_lib.recheck`): the answers a respondent gives
when re-asked a few criteria are the second rating of the original answers.

Definitions (:math:`p_{ij}` the share of pairs rated :math:`i` first and :math:`j` second, :math:`p_{i\cdot}`,
:math:`p_{\cdot j}` the margins, :math:`w_{ij}` agreement weights with :math:`w_{ii} = 1`):

.. math::

    p_o = \sum_{ij} w_{ij} p_{ij},\qquad p_c = \sum_{ij} w_{ij} p_{i\cdot} p_{\cdot j},\qquad
    \kappa_w = \frac{p_o - p_c}{1 - p_c}

Unweighted kappa is :math:`w = I` (Cohen 1960). On the :math:`K` ordered categories of a rating scale,
linear weights :math:`w_{ij} = 1 - |i-j|/(K-1)` (Cicchetti & Allison 1971) and quadratic weights
:math:`w_{ij} = 1 - (i-j)^2/(K-1)^2` (Fleiss & Cohen 1973; psych's default).

Large-sample variance (Fleiss, Cohen & Everitt 1969, *Psychological Bulletin* 72:323, their eq. 13; Fleiss,
Levin & Paik 2003, *Statistical Methods for Rates and Proportions*, §18.1):

.. math::

    \operatorname{Var}(\hat\kappa_w) = \frac{\sum_{ij} p_{ij}\,(a_{ij} - \bar a)^2}{n\,(1-p_c)^4},\quad
    a_{ij} = w_{ij}(1-p_c) - (\bar w_{i\cdot} + \bar w_{\cdot j})(1-p_o),\quad
    \bar w_{i\cdot} = \sum_j p_{\cdot j} w_{ij},\ \bar w_{\cdot j} = \sum_i p_{i\cdot} w_{ij}

with :math:`\bar a = \sum_{ij} p_{ij} a_{ij} = p_o - 2p_c + p_o p_c`. The interval is
:math:`\hat\kappa \pm z_{(1+\text{level})/2}\sqrt{\operatorname{Var}}`, clipped to :math:`[-1, 1]` as psych does.

Agreement with R: kappa, weighted kappa and the interval of unweighted kappa equal ``psych::cohen.kappa``
(psych 2.2.9) to 1e-12; the standard error of weighted kappa equals ``vcd::Kappa`` (1.4-11), which implements
the formula above. ``psych::cohen.kappa`` does not: for the column term it uses :math:`p_{j\cdot}\sum_k w_{jk}`
instead of :math:`\bar w_{\cdot j}`, which leaves unweighted kappa exact but makes the variance of weighted
kappa too small, or negative (then psych reports 0). ``tests/r/kappa.R`` shows it with a Monte Carlo check
(sampling variance 0.000868 against 0.000825 here and vcd, 0 in psych).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["KAPPA_WEIGHTS", "kappa_weights", "cohen_kappa", "kappa_from_counts"]

#: Names of the weights (one row of :func:`cohen_kappa`'s result each).
KAPPA_WEIGHTS = ("unweighted", "linear", "quadratic")

RESULT_COLUMNS = ["weights", "n", "exact_agreement", "observed_agreement", "chance_agreement", "kappa", "se",
                  "ci_low", "ci_high"]


def kappa_weights(n_categories: int, weights: str) -> np.ndarray:
    r"""Agreement weights :math:`w_{ij}` of ``n_categories`` equally spaced ordered categories.

    ``unweighted``: :math:`I`; ``linear``: :math:`1 - |i-j|/(K-1)`; ``quadratic``: :math:`1 - (i-j)^2/(K-1)^2`.

    Examples
    --------
    >>> kappa_weights(3, "linear").tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]
    """
    if weights not in KAPPA_WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(KAPPA_WEIGHTS)}; got {weights!r}")
    k = int(n_categories)
    if k < 1:
        raise ValueError(f"kappa needs at least one category; got {n_categories!r}")
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / max(k - 1, 1)
    if weights == "unweighted":
        return np.eye(k)
    return 1.0 - (distance if weights == "linear" else distance**2)


def kappa_from_counts(counts: np.ndarray, weights: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    r"""Kappa, its standard error and interval for a stack of square agreement tables (vectorized).

    Parameters
    ----------
    counts
        ``(G, K, K)`` counts (or a single ``(K, K)`` table): rows = first rating, columns = second.
    weights
        ``(K, K)`` agreement weights (:func:`kappa_weights`), 1 on the diagonal.
    level
        Confidence level of the interval.

    Returns
    -------
    dict of arrays (length G)
        ``n, exact_agreement`` (:math:`\sum_i p_{ii}`), ``observed_agreement`` (:math:`p_o`),
        ``chance_agreement`` (:math:`p_c`), ``kappa, se, ci_low, ci_high`` — the formulas of the module
        docstring (Fleiss, Cohen & Everitt 1969). NaN where ``n = 0``, and kappa's columns NaN where
        :math:`p_c = 1` (both ratings always the same single category: kappa undefined).
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 2:
        counts = counts[None]
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2]:
        raise ValueError(f"counts must be square tables (G, K, K); got shape {counts.shape}")
    w = np.asarray(weights, dtype=float)
    if w.shape != counts.shape[1:]:
        raise ValueError(f"weights {w.shape} do not fit tables of {counts.shape[1]} categories")
    if not 0.5 <= level < 1:
        raise ValueError(f"level must be a confidence level between 0.5 and 1; got {level!r}")
    n = counts.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / n[:, None, None]
        rows, cols = p.sum(axis=2), p.sum(axis=1)
        po = np.einsum("ij,gij->g", w, p)
        pc = np.einsum("ij,gi,gj->g", w, rows, cols)
        kappa = (po - pc) / (1 - pc)
        w_row = np.einsum("ij,gj->gi", w, cols)      # \bar w_{i.}
        w_col = np.einsum("ij,gi->gj", w, rows)      # \bar w_{.j}
        a = w[None] * (1 - pc)[:, None, None] - (w_row[:, :, None] + w_col[:, None, :]) * (1 - po)[:, None, None]
        a_bar = np.einsum("gij,gij->g", p, a)
        var = np.einsum("gij,gij->g", p, (a - a_bar[:, None, None]) ** 2) / (n * (1 - pc) ** 4)
    undefined = (n == 0) | ~(pc < 1 - 1e-12)
    kappa = np.where(undefined, np.nan, kappa)
    se = np.where(undefined, np.nan, np.sqrt(np.maximum(var, 0.0)))
    z = stats.norm.ppf(0.5 + level / 2)
    return {
        "n": n.astype(np.int64),
        "exact_agreement": np.where(n > 0, np.einsum("gii->g", p), np.nan),
        "observed_agreement": np.where(n > 0, po, np.nan),
        "chance_agreement": np.where(n > 0, pc, np.nan),
        "kappa": kappa,
        "se": se,
        "ci_low": np.clip(kappa - z * se, -1.0, 1.0),
        "ci_high": np.clip(kappa + z * se, -1.0, 1.0),
    }


def _as_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def cohen_kappa(df: pd.DataFrame, first: str, second: str, *, categories: Sequence[float] | None = None,
                weights: str | Iterable[str] = KAPPA_WEIGHTS, by: str | Sequence[str] | None = None,
                level: float = 0.95) -> pd.DataFrame:
    r"""Cohen's kappa of two ratings, unweighted and weighted, with asymptotic intervals (psych ``cohen.kappa``).

    .. math:: \kappa_w = \frac{p_o - p_c}{1 - p_c},\qquad
              \hat\kappa_w \pm z\,\sqrt{\operatorname{Var}(\hat\kappa_w)}

    (definitions and the variance of Fleiss, Cohen & Everitt 1969 in the module docstring). Pairs with either
    rating missing are dropped. Categories are equally spaced in the order of ``categories``.

    Parameters
    ----------
    df
        One row per rated case.
    first, second
        Columns of the two ratings (numbers or codes).
    categories
        The rating scale, e.g. ``[1, 2, 3, 4, 5]`` (default: the values seen in either column, sorted). Give
        the scale: weights depend on the number of categories, and a category nobody used still counts
        (``levels`` of psych).
    weights
        One or several of ``unweighted``, ``linear``, ``quadratic`` (default: all three).
    by
        Column(s) of groups: one kappa per group (a group with no complete pair is left out).
    level
        Confidence level of the interval.

    Returns
    -------
    DataFrame
        One row per group × weights: the ``by`` columns, ``weights, n`` (complete pairs),
        ``exact_agreement`` (share of identical ratings), ``observed_agreement`` (:math:`p_o`),
        ``chance_agreement`` (:math:`p_c`), ``kappa, se, ci_low, ci_high``. Kappa is NaN when :math:`p_c = 1`.

    Raises
    ------
    ValueError
        A rating outside ``categories``, a missing column, unknown weights.

    References
    ----------
    Cohen (1960) Educ. Psychol. Meas. 20:37; Cohen (1968) Psychol. Bull. 70:213; Fleiss, Cohen & Everitt
    (1969) Psychol. Bull. 72:323; Revelle, psych ``cohen.kappa``; Meyer, Zeileis & Hornik, vcd ``Kappa``.

    Examples
    --------
    >>> d = pd.DataFrame({"a": [1, 2, 3, 4, 5, 5], "b": [1, 2, 3, 4, 5, 4]})
    >>> round(float(cohen_kappa(d, "a", "b", weights="unweighted")["kappa"].iloc[0]), 4)
    0.7931
    """
    missing = [c for c in (first, second, *_as_list(by)) if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) not in the data: {', '.join(missing)}")
    names = _as_list(weights)
    for name in names:
        kappa_weights(1, name)  # validates the name
    keys = _as_list(by)
    complete = df[first].notna() & df[second].notna()
    data = df.loc[complete, [first, second, *keys]]
    if categories is None:
        categories = np.unique(np.concatenate([data[first].to_numpy(), data[second].to_numpy()]))
    cats = pd.Index(list(categories))
    if cats.has_duplicates:
        raise ValueError(f"categories are listed twice: {list(cats[cats.duplicated()])}")
    i = cats.get_indexer(data[first])
    j = cats.get_indexer(data[second])
    for column, idx in ((first, i), (second, j)):
        if (idx < 0).any():
            value = data[column][idx < 0].tolist()[0]
            raise ValueError(f"column {column!r}: value {value!r} is not one of the categories {list(cats)}")
    k = len(cats)
    if keys:
        grouped = data.groupby(keys, sort=True, observed=True)
        group = grouped.ngroup().fillna(-1).to_numpy(dtype=np.int64)  # a missing key: the row is in no group
        labels = grouped.size().index.to_frame(index=False)
        i, j, group = i[group >= 0], j[group >= 0], group[group >= 0]
    else:
        group = np.zeros(len(data), dtype=np.int64)
        labels = pd.DataFrame(index=range(1))
    n_groups = len(labels)
    counts = np.bincount(group * k * k + i * k + j, minlength=n_groups * k * k).reshape(n_groups, k, k)
    parts = []
    for name in names:
        result = kappa_from_counts(counts, kappa_weights(k, name), level=level)
        parts.append(labels.assign(weights=name, **result))
    out = pd.concat(parts, ignore_index=True)
    return out[[*keys, *RESULT_COLUMNS]]
