r"""Screening returned questionnaires for fabrication (issue 13 §3): one tested statistic per signal.

Core layer. A unit being rated has every incentive to fill in its own questionnaires; a block of forms
written by staff leaves traces that real respondents do not: forms that copy each other, forms that
give one answer to everything, forms that all say "satisfied", forms that all came back on one day
through one point from one enumerator. Each signal below is a statistic per unit with a stated null
distribution and a p-value; none is a black-box score, and every row carries its reason in plain words
(English and Vietnamese, ``texts/screening.yaml``).

======================  ================================================  ====================================
signal                  statistic (``value``)                             null (``reference``)
======================  ================================================  ====================================
near_duplicates         near-identical pairs of forms in the unit         each form's answers shuffled across
                                                                          its criteria (permutations, NB tail)
straight_lining         share of forms giving one answer to every         the other units' rate and spread
                        criterion                                         (beta-binomial)
satisfied_everywhere    share of forms satisfied (4–5) on every           the other units' rate and spread
                        criterion                                         (beta-binomial)
return_bunching         most forms returned on one day by one source      the source's other days within the
                        (collection point × enumerator)                   window (local uniform, binomial)
collection_point_share  share of the unit's forms through its largest     the other units' top shares
                        collection point                                  (empirical mixture)
enumerator_share        share of the unit's forms taken by its busiest    the other units' top shares
                        enumerator                                        (empirical mixture)
======================  ================================================  ====================================

Typical use (the stage ``integrity``): ``flags = screen(responses, false_flag_rate=..., n_permutations=...,
match=..., window=..., seed=...)`` then ``suspect_forms(responses, flags)`` for the sensitivity analysis.

False flags: multiplicity control across units
----------------------------------------------
For each signal the units' p-values are adjusted with the Benjamini–Hochberg step-up procedure
(Benjamini & Hochberg 1995, *JRSS B* 57:289–300) and a unit is flagged when its adjusted p-value is at
most ``false_flag_rate`` = :math:`q` (setting ``integrity.false_flag_rate``, default 0.01). Where a
signal's null holds and the units are independent samples, this guarantees:

* among the units flagged on a signal, the expected share of false flags is at most :math:`q` (FDR);
* in a year with no fabrication, a signal flags any unit at all with probability at most :math:`q`
  (BH is then Simes' test), so the expected share of clean units it flags is at most :math:`q`
  (:math:`E[R]/m \le P(R > 0)`), in practice about :math:`q/m` for :math:`m` units.

**Nominal per-unit false-flag rate: 1 % (** :math:`q` **) of the clean units flagged on any of the six
signals.** In theory the expected share is far lower: with no fabrication anywhere a signal's flags
number :math:`R` with :math:`E[R] = q\,E[R \mid R > 0]` and BH then rejects one unit at a time
(:math:`E[R \mid R > 0] = 1 + O(q)`), so about :math:`6q/m` over six signals (0.04 % for the demo's
141 units). The margin leaves room for nulls that are only approximately right (the item effects the
near-duplicate null ignores, the beta shape of the units' spread).
``bench/integrity_calibration.py`` measures it on 200 simulated clean years at the demo's unit
sizes, and the detection rate of blocks of 10 % of a unit's forms planted as the demo plants them, each
with its exact binomial interval; the ``simulation`` test in ``tests/test_screening.py`` repeats it on
three years. Measured (200 years × 141 units, the shipped settings):

* clean years: 0 of 28,200 units flagged on any signal (95 % interval 0–0.013 %), no year with a flag;
  every signal's unadjusted p-values are at or above uniform in the tail (share below 0.01: 0.0–0.8 %);
* planted blocks of 10 % of a unit's issued forms (5–8 forms; two units a year): 400 of 400 caught
  (interval 99.1–100 %) — all by ``return_bunching``; ``near_duplicates`` alone catches 45 % (9 % of
  5-form blocks, 78 % of 8-form blocks); the answer-pattern and concentration signals catch none of
  these small blocks (they are there for cruder fabrication). 1 of 27,800 clean units of those years
  was flagged.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib.recheck import _pct, _render
from sipas_lib.schemas.integrity import SCREENING_SIGNALS
from sipas_lib.texts import load_texts

__all__ = ["SIGNALS", "FLAG_COLUMNS", "nearest_match", "near_duplicates", "straight_lining", "satisfied_everywhere",
           "return_bunching", "concentration", "screen", "suspect_forms"]

#: The screening signals, in the order :func:`screen` reports them (vocabulary of the contract).
SIGNALS = SCREENING_SIGNALS
#: Columns of every signal table (the shape shared by the re-check and self-survey flags,
#: :func:`sipas_lib.schemas.integrity.flag_columns`, plus the BH-adjusted p-value).
FLAG_COLUMNS = ["unit_id", "signal", "value", "reference", "n", "p_value", "p_adjusted", "lower", "upper",
                "flagged", "reason", "reason_vi"]
_TEXTS = load_texts("screening")
#: Fewest forms a unit needs for a signal to be computed.
MIN_FORMS = 5


# --------------------------------------------------------------------------------------------
# Shared pieces: criteria, BH adjustment, beta-binomial against the other units, reasons
# --------------------------------------------------------------------------------------------

def _criteria(responses: pd.DataFrame, criteria: Sequence[str] | None) -> list[str]:
    """The satisfaction criteria to screen (default: the Phụ lục 5 criteria present in ``responses``)."""
    if criteria is None:
        criteria = [c for c in instrument_for_unit_type("district").criteria_codes if c in responses.columns]
    missing = [c for c in criteria if c not in responses.columns]
    if missing or not criteria:
        raise ValueError(f"screening: criteria columns {missing or list(criteria)} are not in the responses; "
                         f"it has {list(responses.columns)}")
    return list(criteria)


def _check_rate(false_flag_rate: float) -> None:
    if not 0 < false_flag_rate < 1:
        raise ValueError(f"integrity.false_flag_rate must be a share between 0 and 1; got {false_flag_rate!r}")


def _adjust(p_value: np.ndarray) -> np.ndarray:
    r"""Benjamini–Hochberg adjusted p-values :math:`\tilde p_{(i)} = \min_{j \ge i} \min(1, m\,p_{(j)}/j)`
    over the units with a p-value (empty stays empty)."""
    from statsmodels.stats.multitest import multipletests

    out = np.full(len(p_value), np.nan)
    known = ~np.isnan(p_value)
    if known.any():
        out[known] = multipletests(p_value[known], method="fdr_bh")[1]
    return out


def _beta_binomial_upper(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Upper-tail p-value of each unit's count against the other units, and the other units' rate.

    Each unit's rate is taken as drawn from a beta distribution around the city, so
    :math:`K_u \sim \mathrm{BetaBinomial}(n_u, \mu\,(1/\rho - 1), (1-\mu)(1/\rho - 1))`, with the mean
    :math:`\mu` and the intra-unit correlation :math:`\rho` estimated by moments from the *other* units
    (Kleinman 1973, *JASA* 68:46–54): with :math:`N = \sum n_i`, :math:`S = \sum n_i (\hat p_i - \hat\mu)^2`,

    .. math:: E[S] = \mu(1-\mu)\Big[(m-1) + \rho\Big(N - \frac{\sum n_i^2}{N} - (m-1)\Big)\Big]

    solved for :math:`\rho` (clipped to [0, 0.99]; :math:`\rho = 0` is the binomial). The p-value is
    :math:`P(K \ge k_u)`. Leaving the unit out keeps its own excess from raising its reference.
    """
    k_all = np.asarray(k, dtype=float)
    n_all = np.asarray(n, dtype=float)
    p_value = np.full(len(k_all), np.nan)
    reference = np.full(len(k_all), np.nan)
    tested = n_all > 0  # units without forms take no part in the moments
    k, n = k_all[tested], n_all[tested]
    m = len(k)
    if m < 3:
        return p_value, reference
    N_out = n.sum() - n
    K_out = k.sum() - k
    square = np.where(n > 0, k**2 / np.where(n > 0, n, 1), 0.0)  # n_i p_i^2
    n2_out = (n**2).sum() - n**2
    m_out = m - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = K_out / N_out
        mu = np.clip(mean_out, 0.5 / N_out, 1 - 0.5 / N_out)
        s_out = square.sum() - square - N_out * mean_out**2
        denominator = N_out - n2_out / N_out - (m_out - 1)
        rho = np.clip((s_out / (mu * (1 - mu)) - (m_out - 1)) / denominator, 0.0, 0.99)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    scale = np.where(rho > 0, 1 / np.maximum(rho, 1e-12) - 1, 1.0)
    beta_tail = stats.betabinom.sf(k - 1, n, mu * scale, (1 - mu) * scale)
    binom_tail = stats.binom.sf(k - 1, n, mu)
    p_value[tested] = np.clip(np.where(rho > 0, beta_tail, binom_tail), 0.0, 1.0)
    reference[tested] = mean_out
    return p_value, reference


def _number(values: np.ndarray, lang: str, decimals: int = 1) -> np.ndarray:
    """Counts and rates as short text (``6``, ``0.4``; a decimal comma in Vietnamese)."""
    text = pd.Series(np.round(np.asarray(values, dtype=float), decimals)).map(lambda x: f"{x:g}")
    return (text.str.replace(".", ",", regex=False) if lang == "vi" else text).to_numpy(dtype=object)


def _p_text(values: np.ndarray, lang: str) -> np.ndarray:
    """p-values with two significant digits (``0.0031``, ``2.1e-07``; a decimal comma in Vietnamese)."""
    text = pd.Series(np.asarray(values, dtype=float)).map(lambda x: "–" if np.isnan(x) else f"{x:.2g}")
    return (text.str.replace(".", ",", regex=False) if lang == "vi" else text).to_numpy(dtype=object)


def _finish(signal: str, table: pd.DataFrame, false_flag_rate: float,
            fields: dict[str, dict[str, np.ndarray]] | None = None, shares: bool = True) -> pd.DataFrame:
    """Adjust across units, flag, and write the reason of every row (flagged, not flagged, not computed)."""
    out = table.reset_index(drop=True).copy()
    out["signal"] = signal
    out["p_adjusted"] = _adjust(out["p_value"].to_numpy(dtype=float))
    out["flagged"] = np.nan_to_num(out["p_adjusted"].to_numpy(dtype=float), nan=1.0) <= false_flag_rate
    out["lower"] = np.nan
    out["upper"] = np.nan
    known = out["p_value"].notna().to_numpy()
    for lang, column in (("en", "reason"), ("vi", "reason_vi")):
        shown = _pct if shares else (lambda v, lg: _number(v, lg))
        base = {"value": shown(out["value"].to_numpy(dtype=float), lang),
                "reference": shown(out["reference"].to_numpy(dtype=float), lang),
                "n": out["n"].astype("Int64").astype(str).to_numpy(dtype=object),
                "p": _p_text(out["p_value"].to_numpy(dtype=float), lang),
                "q": _p_text(out["p_adjusted"].to_numpy(dtype=float), lang),
                **(fields or {}).get(lang, {})}
        flagged_text = _render(_TEXTS[f"{signal}_flagged"][lang], base, len(out))
        ok_text = _render(_TEXTS[f"{signal}_ok"][lang], base, len(out))
        out[column] = np.where(~known, _TEXTS[f"{signal}_none"][lang],
                               np.where(out["flagged"].to_numpy(), flagged_text, ok_text))
    out["n"] = out["n"].astype("Int64")
    out["unit_id"] = out["unit_id"].astype(str)
    return out[FLAG_COLUMNS]


def _units(responses: pd.DataFrame) -> pd.Index:
    if "unit_id" not in responses.columns:
        raise ValueError(f"screening: responses need a unit_id column; they have {list(responses.columns)}")
    return pd.Index(pd.unique(responses["unit_id"].astype(str)), name="unit_id")


# --------------------------------------------------------------------------------------------
# Near-duplicate answer vectors
# --------------------------------------------------------------------------------------------

def _one_hot(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """``(…, n, J)`` answers (NaN = empty) -> ``(…, n, J·K)`` float32 indicators of each answer category."""
    return (values[..., None] == categories).astype(np.float32).reshape(*values.shape[:-1], -1)


def _twins(values: np.ndarray, match: float, min_common: int,
           common: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per form of ``(…, n, J)``: its number of near-identical partners, its best match share and the closest
    form's position; and the number of near-identical pairs (``(…)``).

    ``M = X X^T`` counts equal answers (one-hot indicators), ``C = A A^T`` the criteria both answered; a
    pair is near-identical when :math:`C \\ge` ``min_common`` and :math:`M \\ge` ``match`` · C. ``common``
    (``C``) may be given: shuffling answers within forms leaves it unchanged.
    """
    categories = np.unique(values[~np.isnan(values)])
    onehot = _one_hot(values, categories)
    if common is None:
        answered = (~np.isnan(values)).astype(np.float32)
        common = answered @ np.swapaxes(answered, -1, -2)
    same = onehot @ np.swapaxes(onehot, -1, -2)
    share = np.where(common >= min_common, same / np.maximum(common, 1), 0.0)
    n = values.shape[-2]
    share[..., np.arange(n), np.arange(n)] = -1.0
    near = share >= match - 1e-9
    return near.sum(axis=-1), share.max(axis=-1), share.argmax(axis=-1), near.sum(axis=(-1, -2)) // 2


def _shuffle_within_forms(values: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``n_permutations`` copies of ``(n, J)`` with each form's answers permuted among its answered criteria."""
    n, J = values.shape
    empty = np.isnan(values)
    keys = rng.random((n_permutations, n, J)) + empty[None] * 2.0  # empty cells sort last, stay empty
    shuffled = np.take_along_axis(np.broadcast_to(values, keys.shape), np.argsort(keys, axis=-1), axis=-1)
    positions = np.broadcast_to(np.argsort(empty, axis=-1, kind="stable"), keys.shape)
    out = np.empty(keys.shape)
    np.put_along_axis(out, positions, shuffled, axis=-1)
    return out


def _pair_thresholds(common: np.ndarray, match: float, min_common: int) -> np.ndarray:
    """Fewest equal answers ``M`` that make each pair near-identical given ``C`` = ``common`` (``(n, n)``
    float32); one more than the criteria where no count does (too few criteria in common).

    Evaluates the test of :func:`_twins` (float32 share :math:`M/C \\ge` ``match``) for every possible
    count :math:`M = 0, …, J`, so counting ``M >= threshold`` decides exactly as :func:`_twins` does.
    """
    counts = np.arange(int(common.max(initial=0)) + 1, dtype=np.float32)[:, None, None]
    share = np.where(common >= min_common, counts / np.maximum(common, 1), 0.0)
    near = share >= match - 1e-9
    never = len(counts)  # more equal answers than criteria in common
    return np.where(near.any(axis=0), near.argmax(axis=0), never).astype(np.int16)


def _null_pairs(values: np.ndarray, threshold: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Near-identical pairs of ``size`` shuffles of ``(n, J)``: ``_twins(_shuffle_within_forms(...))[3]``, cheaper.

    Draws the same keys from ``rng`` and sorts them as :func:`_shuffle_within_forms` does (so the same
    seed gives the same shuffles), but never builds the shuffled answers: the answer of rank :math:`t`
    goes to the form's :math:`t`-th answered criterion, and its one-hot indicator (criterion × answer
    category) is set as one bit of the form's bit string. Equal answers of two forms are then the
    popcount of the AND of their bit strings — integer work, no BLAS call (threaded BLAS on many small
    matrices spends several times the CPU it saves) — for each pair ``i < j`` once, counted against the
    precomputed ``threshold`` (:func:`_pair_thresholds`).
    """
    n, J = values.shape
    empty = np.isnan(values)
    keys = rng.random((size, n, J)) + empty[None] * 2.0  # as _shuffle_within_forms: empty cells sort last
    order = np.argsort(keys, axis=-1)
    # the criterion each answer moves to: the answered criteria in order, then the empty ones
    target = np.empty(keys.shape, dtype=np.intp)
    np.put_along_axis(target, order, np.broadcast_to(np.argsort(empty, axis=-1, kind="stable"), keys.shape), axis=-1)
    categories = np.unique(values[~empty])  # the forms compared are varied: never all empty
    code = np.searchsorted(categories, np.where(empty, categories[0], values))
    cell = target * len(categories) + code  # bit of (criterion, answer category) in the form's bit string
    bit = np.left_shift(np.uint64(1), (cell & 63).astype(np.uint64))
    bit[np.broadcast_to(empty, keys.shape)] = 0  # empty cells set no bit
    word = cell >> 6
    first, second = np.triu_indices(n, 1)
    same = np.zeros((size, len(first)), dtype=np.uint8 if J < 255 else np.int16)
    for w in range(-(-J * len(categories) // 64)):
        words = np.bitwise_or.reduce(np.where(word == w, bit, np.uint64(0)), axis=-1)  # (size, n)
        same += np.bitwise_count(np.take(words, first, axis=1) & np.take(words, second, axis=1))
    return (same >= threshold[first, second]).sum(axis=-1)


def _varied(values: np.ndarray, min_common: int, min_spread: int) -> np.ndarray:
    """Forms answering at least ``min_common`` criteria with at least ``min_spread`` answers off their own mode."""
    answered = (~np.isnan(values)).sum(axis=1)
    categories = np.unique(values[~np.isnan(values)])
    mode_count = (values[..., None] == categories).sum(axis=1).max(axis=1) if len(categories) else answered
    return (answered >= min_common) & (answered - mode_count >= min_spread)


def nearest_match(responses: pd.DataFrame, criteria: Sequence[str] | None = None, *,
                  min_common: int = 10) -> pd.DataFrame:
    """Each form's closest other form of its unit: the largest share of criteria answered alike.

    .. math:: s_i = \\max_{j \\ne i,\\ u(j) = u(i),\\ C_{ij} \\ge c_0} \\frac{M_{ij}}{C_{ij}}

    with :math:`M_{ij}` the criteria both forms answered the same way and :math:`C_{ij}` those both
    answered (at least ``min_common`` = :math:`c_0`). The *maximum percent match* of Kuriakose & Robbins
    (2016, "Don't get duped: fraud through duplication in public opinion surveys", *Statistical Journal
    of the IAOS* 32:283–291), taken within the unit.

    Returns
    -------
    DataFrame
        ``form_id`` (when present), ``unit_id, match_share`` (0 when no other form shares enough
        criteria) and ``twin`` (the form id of the closest form; empty when none).

    Examples
    --------
    >>> df = pd.DataFrame({"form_id": ["a", "b", "c"], "unit_id": "U",
    ...                    "c01": [5, 5, 1], "c02": [4, 4, 2], "c03": [5, 4, 3]})
    >>> nearest_match(df, ["c01", "c02", "c03"], min_common=3)["match_share"].round(3).tolist()
    [0.667, 0.667, 0.0]
    """
    criteria = _criteria(responses, criteria)
    ids = responses["form_id"].astype(str).to_numpy() if "form_id" in responses.columns else \
        responses.index.astype(str).to_numpy()
    values = responses[criteria].to_numpy(dtype=float)
    share = np.zeros(len(responses))
    twin = np.full(len(responses), None, dtype=object)
    for rows in responses.groupby(responses["unit_id"].astype(str), sort=False).indices.values():
        if len(rows) < 2:
            continue
        _, best, position, _ = _twins(values[rows], 1.0, min_common)
        share[rows] = np.maximum(best, 0.0)
        twin[rows] = np.where(best > 0, ids[rows][position], None)
    out = pd.DataFrame({"unit_id": responses["unit_id"].astype(str).to_numpy(), "match_share": share, "twin": twin})
    if "form_id" in responses.columns:
        out.insert(0, "form_id", ids)
    return out


def near_duplicates(responses: pd.DataFrame, criteria: Sequence[str] | None = None, *, match: float = 0.85,
                    min_common: int = 10, min_spread: int = 3, n_permutations: int = 200,
                    false_flag_rate: float = 0.01, seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    r"""Forms of a unit that copy each other, beyond what the unit's own answers make likely.

    **Statistic.** Among the unit's *varied* forms (at least ``min_common`` criteria answered, at least
    ``min_spread`` answers away from the form's own most frequent answer), :math:`D` = the number of
    near-identical pairs: two forms with the same answer on at least ``match`` of the criteria both
    answered (the 85 % *percent match* of Kuriakose & Robbins 2016). A copied block of :math:`b` forms
    makes up to :math:`b(b-1)/2` pairs. Forms that give (almost) one answer throughout are left to
    :func:`straight_lining` and :func:`satisfied_everywhere`: two uniformly satisfied respondents agree
    without copying.

    **Null.** Each form's answers are exchangeable across the criteria it answered: the forms keep
    their own answer distribution (their level and spread, so a very satisfied unit is not suspect
    for agreeing) but not their pattern over the criteria, which is what a copied form shares. The
    null distribution of :math:`D` is drawn by ``n_permutations`` = :math:`B` seeded shuffles of each
    form's answers within the form (missing answers stay where they are). Its tail is extrapolated with
    a negative binomial of the permutation mean :math:`\hat\lambda` and variance :math:`\hat v`, floored
    at :math:`\hat\lambda \ge 1/B` and :math:`\hat v \ge 2\hat\lambda` (pairs come in clusters):

    .. math:: p = P(D^* \ge D),\qquad D^* \sim \mathrm{NB}\Big(r = \frac{\hat\lambda^2}{\hat v - \hat\lambda},
              \ \pi = \frac{\hat\lambda}{\hat v}\Big)

    so p-values below :math:`1/B` (which the adjustment across units needs) are not limited by the
    number of shuffles. A unit without any near-identical pair has :math:`p = 1` and is not shuffled.
    The null ignores that some criteria are harder to satisfy than others everywhere (shared patterns
    that are no copy); ``bench/integrity_calibration.py`` measures what that costs on clean years.

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, signal ``near_duplicates``: ``value`` = :math:`D`, ``reference`` =
        :math:`\hat\lambda` (empty when :math:`D = 0`), ``n`` = varied forms compared.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> block = np.tile([5, 4, 5, 5, 4, 4, 5, 4, 5, 5, 4, 5], (6, 1))
    >>> honest = rng.integers(2, 6, (30, 12))
    >>> df = pd.DataFrame(np.vstack([block, honest]), columns=[f"c{k:02d}" for k in range(1, 13)])
    >>> df["unit_id"] = "U"
    >>> row = near_duplicates(df, list(df.columns[:12]), seed=1).iloc[0]
    >>> int(row["value"]), bool(row["flagged"])
    (15, True)
    """
    _check_rate(false_flag_rate)
    if not 0 < match <= 1:
        raise ValueError(f"screening: match must be a share in (0, 1]; got {match!r}")
    criteria = _criteria(responses, criteria)
    rng = np.random.default_rng(seed)
    values = responses[criteria].to_numpy(dtype=float)
    groups = responses.groupby(responses["unit_id"].astype(str), sort=False).indices
    rows_out = []
    for unit, rows in groups.items():
        x = values[rows]
        x = x[_varied(x, min_common, min_spread)]
        if len(x) < 2:
            rows_out.append((unit, 0.0, np.nan, len(x), np.nan, 0))
            continue
        answered = (~np.isnan(x)).astype(np.float32)
        common = answered @ answered.T
        partners, _, _, pairs = _twins(x, match, min_common, common)
        observed = int(pairs)
        if observed == 0:  # p = 1 whatever the null: no shuffles needed
            rows_out.append((unit, 0.0, np.nan, len(x), 1.0, 0))
            continue
        threshold = _pair_thresholds(common, match, min_common)
        null = np.concatenate([_null_pairs(x, threshold, size, rng) for size in _chunks(n_permutations)])
        lam = max(float(null.mean()), 1.0 / n_permutations)
        var = max(float(null.var(ddof=1)) if len(null) > 1 else 0.0, 2.0 * lam)
        size, prob = lam**2 / (var - lam), lam / var
        p = float(stats.nbinom.sf(observed - 1, size, prob))
        rows_out.append((unit, float(observed), lam, len(x), p, int((partners > 0).sum())))
    table = pd.DataFrame(rows_out, columns=["unit_id", "value", "reference", "n", "p_value", "forms"])
    fields = {lang: {"match": _pct(np.full(len(table), match), lang),
                     "forms": table["forms"].astype(str).to_numpy(dtype=object)} for lang in ("en", "vi")}
    out = _finish("near_duplicates", table, false_flag_rate, fields, shares=False)
    none = ((out["value"] == 0) & out["p_value"].notna()).to_numpy()  # no twin: say so, no null was drawn
    for lang, column in (("en", "reason"), ("vi", "reason_vi")):
        zero = _render(_TEXTS["near_duplicates_zero"][lang], {"n": out["n"].astype(str).to_numpy(dtype=object)},
                       len(out))
        out[column] = np.where(none, zero, out[column].to_numpy(dtype=object))
    return out


def _chunks(total: int, size: int = 100) -> list[int]:
    """Split ``total`` permutations into batches (bounded memory: batch × pairs of forms × ~20 bytes)."""
    if total < 1:
        raise ValueError(f"screening: n_permutations must be at least 1; got {total!r}")
    return [size] * (total // size) + ([total % size] if total % size else [])


# --------------------------------------------------------------------------------------------
# Answer patterns against the other units: straight-lining, satisfied on every criterion
# --------------------------------------------------------------------------------------------

def _form_pattern_test(responses: pd.DataFrame, criteria: Sequence[str] | None, pattern: str, min_answered: int,
                       false_flag_rate: float) -> pd.DataFrame:
    """Forms matching ``pattern`` (one answer throughout, or no answer below 4) per unit, tested against the
    other units (:func:`_beta_binomial_upper`); units with fewer than :data:`MIN_FORMS` counted forms untested."""
    criteria = _criteria(responses, criteria)
    values = responses[criteria].to_numpy(dtype=float)
    answered = (~np.isnan(values)).sum(axis=1)
    counted = answered >= min_answered
    if pattern == "straight_lining":
        table = pd.DataFrame(values)
        hit = (table.min(axis=1) == table.max(axis=1)).to_numpy()
    else:
        hit = ~(values < 4).any(axis=1)  # empty answers do not count against
    frame = pd.DataFrame({"unit_id": responses["unit_id"].astype(str).to_numpy(), "counted": counted,
                          "hit": hit & counted})
    per_unit = frame.groupby("unit_id", sort=False).agg(n=("counted", "sum"), k=("hit", "sum")).reset_index()
    n = per_unit["n"].to_numpy(dtype=float)
    k = per_unit["k"].to_numpy(dtype=float)
    tested = n >= MIN_FORMS
    p_value, reference = _beta_binomial_upper(np.where(tested, k, 0), np.where(tested, n, 0))
    table = pd.DataFrame({"unit_id": per_unit["unit_id"],
                          "value": np.where(n > 0, k / np.where(n > 0, n, 1), np.nan),
                          "reference": reference, "n": per_unit["n"].astype("int64"),
                          "p_value": np.where(tested, p_value, np.nan)})
    return _finish(pattern, table, false_flag_rate)


def straight_lining(responses: pd.DataFrame, criteria: Sequence[str] | None = None, *, min_answered: int = 10,
                    false_flag_rate: float = 0.01) -> pd.DataFrame:
    r"""Share of a unit's forms that give one and the same answer to every criterion, against the city.

    A form is straight-lined when every criterion it answered (at least ``min_answered``) has the same
    answer — the simplest sign of a form filled without reading it (Blasius & Thiessen 2012, *Assessing
    the Quality of Survey Data*, ch. 4, "simplified response behaviour"). With :math:`k_u` such forms
    among the :math:`n_u` counted, the unit is tested against the other units'
    rate and spread (beta-binomial, :func:`_beta_binomial_upper`):

    .. math:: p_u = P(K \ge k_u),\quad K \sim \mathrm{BetaBinomial}(n_u, \hat\mu_{-u}, \hat\rho_{-u})

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, signal ``straight_lining``: ``value`` = :math:`k_u/n_u`, ``reference`` =
        the other units' pooled share :math:`\hat\mu_{-u}`, ``n`` = :math:`n_u`.
    """
    _check_rate(false_flag_rate)
    return _form_pattern_test(responses, criteria, "straight_lining", min_answered, false_flag_rate)


def satisfied_everywhere(responses: pd.DataFrame, criteria: Sequence[str] | None = None, *,
                         min_answered: int = 10, false_flag_rate: float = 0.01) -> pd.DataFrame:
    r"""Share of a unit's forms satisfied (4–5) on every criterion answered, against the other units.

    "Almost no answer below satisfied anywhere" is what a block of forms filled in by the unit's staff
    looks like. With :math:`k_u` of the :math:`n_u` counted forms (at least ``min_answered`` criteria
    answered) satisfied on every criterion, the test is the beta-binomial upper tail of
    :func:`straight_lining`: extreme against the spread of the other units, so a unit that is simply
    well liked is compared with how much units differ, not with the city mean alone.

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, signal ``satisfied_everywhere``: ``value`` = :math:`k_u/n_u`,
        ``reference`` = the other units' pooled share, ``n`` = :math:`n_u`.
    """
    _check_rate(false_flag_rate)
    return _form_pattern_test(responses, criteria, "satisfied_everywhere", min_answered, false_flag_rate)


# --------------------------------------------------------------------------------------------
# Fieldwork traces: bunching of return dates, concentration on one point or enumerator
# --------------------------------------------------------------------------------------------

_STREAM_COLUMNS = ("collection_point", "enumerator_code")


def _day_numbers(responses: pd.DataFrame, date: str | None) -> np.ndarray:
    """Return day of each form as whole days (NaN when unknown): ``date``, else ``return_date`` falling back
    to ``survey_date`` form by form."""
    if date is not None:
        when = pd.to_datetime(responses[date], errors="coerce")
    else:
        when = pd.Series(pd.NaT, index=responses.index, dtype="datetime64[ns]")
        for column in ("return_date", "survey_date"):
            if column in responses.columns:
                when = when.fillna(pd.to_datetime(responses[column], errors="coerce"))
    days = when.to_numpy(dtype="datetime64[D]").astype("int64").astype(float)
    days[when.isna().to_numpy()] = np.nan
    return days


def return_bunching(responses: pd.DataFrame, *, date: str | None = None,
                    streams: Sequence[str] = _STREAM_COLUMNS, window: int = 14,
                    false_flag_rate: float = 0.01) -> pd.DataFrame:
    r"""The most forms a unit got back on one day from one source, against that source's other days.

    A *source* is a collection point × enumerator (the ``streams`` columns present; the whole unit when
    none is). For source :math:`s` and day :math:`d` with :math:`c_{sd}` forms, let :math:`N_{sd}` be the
    source's forms returned within :math:`\pm` ``window`` days and :math:`L_d` the number of those days
    inside the unit's fieldwork (first to last return date). If the source's forms are spread evenly over
    nearby days — the local uniform null of scan statistics (Naus 1965, *JASA* 60:532–538) — then
    :math:`c_{sd} \mid N_{sd} \sim \mathrm{Bin}(N_{sd}, 1/L_d)`, and

    .. math:: p_u = \min\Big(1,\ M_u \min_{s,d} P\big(\mathrm{Bin}(N_{sd}, 1/L_d) \ge c_{sd}\big)\Big)

    Bonferroni over the :math:`M_u` occupied source-days of the unit. A batch of forms filled in by staff
    and handed in together is many forms on one day from a source that is quiet on the days around it.
    The return day is ``date`` if given, else ``return_date`` with ``survey_date`` where it is empty.

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, signal ``return_bunching``: ``value`` = :math:`c` of the unit's most
        significant source-day, ``reference`` = :math:`N/L` (forms a day that source would be expected to
        return), ``n`` = forms with a return day.

    Examples
    --------
    >>> days = pd.to_datetime("2025-10-01") + pd.to_timedelta(np.r_[np.arange(0, 40, 2), [20] * 6], unit="D")
    >>> df = pd.DataFrame({"unit_id": "U", "return_date": days,
    ...                    "collection_point": ["BC1"] * 20 + ["BC2"] * 6})
    >>> row = return_bunching(df, streams=["collection_point"]).iloc[0]
    >>> int(row["value"]), bool(row["flagged"])
    (6, True)
    """
    _check_rate(false_flag_rate)
    units = _units(responses)
    present = [c for c in streams if c in responses.columns]
    forms, cells = _bunching_cells(responses, date, present, window)
    best = cells.sort_values(["p", "c"], ascending=[True, False], kind="stable").drop_duplicates("unit_id")
    best = best.set_index("unit_id").reindex(units)
    n_dated = forms.groupby("unit_id").size().reindex(units, fill_value=0)
    tested = (n_dated >= MIN_FORMS).to_numpy() & best["p"].notna().to_numpy()
    table = pd.DataFrame({"unit_id": units, "value": best["c"].to_numpy(dtype=float),
                          "reference": best["expected"].to_numpy(dtype=float), "n": n_dated.to_numpy(),
                          "p_value": np.where(tested, np.minimum(1.0, best["M"].to_numpy(dtype=float)
                                                                 * best["p"].to_numpy(dtype=float)), np.nan)})
    # the source and day of each unit's most significant source-day, in words
    source = forms.drop_duplicates("stream").set_index("stream")
    at = best["stream"].to_numpy()
    fields = {}
    for lang in ("en", "vi"):
        parts = [_render(_TEXTS[f"stream_{name}"][lang], {name: source[column].reindex(at).fillna("")
                                                          .to_numpy(dtype=object)}, len(at))
                 for column, name in (("collection_point", "point"), ("enumerator_code", "enumerator"))
                 if column in present]
        text = parts[0] if parts else np.full(len(at), _TEXTS["stream_unit"][lang], dtype=object)
        for more in parts[1:]:
            text = text + _TEXTS["stream_joiner"][lang] + more
        day_text = pd.to_datetime(best["day"].to_numpy(), unit="D", errors="coerce").strftime(
            "%Y-%m-%d" if lang == "en" else "%d/%m/%Y")
        fields[lang] = {"day": np.asarray(day_text, dtype=object), "stream": text, "window": str(window)}
    return _finish("return_bunching", table, false_flag_rate, fields, shares=False)


def _bunching_cells(responses: pd.DataFrame, date: str | None, present: Sequence[str],
                    window: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forms with a return day (``position`` in ``responses``, ``unit_id``, the ``present`` source columns,
    ``day``, ``stream`` id) and their source-day cells with ``c, N, L, p, expected, M`` (see
    :func:`return_bunching`)."""
    day = _day_numbers(responses, date)
    forms = pd.DataFrame({"position": np.arange(len(responses)),
                          "unit_id": responses["unit_id"].astype(str).to_numpy(), "day": day})
    for column in present:
        forms[column] = responses[column].astype(object).where(responses[column].notna(), "").astype(str).to_numpy()
    forms = forms.loc[~np.isnan(day)].reset_index(drop=True)
    forms["stream"] = forms.groupby(["unit_id", *present], sort=False).ngroup().to_numpy()
    cells = forms.groupby(["unit_id", "stream", "day"], sort=False).size().rename("c").reset_index()
    span = forms.groupby("unit_id")["day"].agg(["min", "max"])
    first = cells["unit_id"].map(span["min"]).to_numpy(dtype=float)
    last = cells["unit_id"].map(span["max"]).to_numpy(dtype=float)
    # forms of the same source within ±window days: sorted (source, day) keys and two binary searches
    stride = 4 * (window + 1) + float(np.nanmax(day) - np.nanmin(day) if len(forms) else 0)
    keys = np.sort(forms["stream"].to_numpy() * stride + forms["day"].to_numpy())
    centre = cells["stream"].to_numpy() * stride + cells["day"].to_numpy()
    N = np.searchsorted(keys, centre + window, side="right") - np.searchsorted(keys, centre - window, side="left")
    d = cells["day"].to_numpy(dtype=float)
    L = np.minimum(d + window, last) - np.maximum(d - window, first) + 1
    c = cells["c"].to_numpy()
    cells["p"] = np.where(L > 1, stats.binom.sf(c - 1, N, 1.0 / np.maximum(L, 1)), 1.0)
    cells["expected"] = N / np.maximum(L, 1)
    cells["M"] = cells.groupby("unit_id")["c"].transform("size")
    return forms, cells


def concentration(responses: pd.DataFrame, column: str, *, false_flag_rate: float = 0.01) -> pd.DataFrame:
    r"""Share of a unit's forms that came through its largest collection point (or its busiest enumerator).

    With :math:`k_u = \max_g \#\{i \in u : g_i = g\}` the forms of the unit's largest category of
    ``column`` (``collection_point`` or ``enumerator_code``) among its :math:`n_u` forms where it is known,
    the reference is the other units themselves: the chance of so large a top share if the unit's forms
    were spread like those of another unit :math:`j`, averaged over the other units,

    .. math:: p_u = \frac{1}{m-1}\sum_{j \ne u} P\big(\mathrm{Bin}(n_u, k_j/n_j) \ge k_u\big)

    (an empirical null, Efron 2004, *JASA* 99:96–104). A top share is the largest of a few category
    counts, not a binomial count, and units differ genuinely (a unit whose forms mostly come through its
    own one-stop desk, or one dominant post office); the mixture over the other units' observed top
    shares carries both, and is conservative (small units' top shares are inflated by chance). A unit is
    flagged only when its concentration is out of reach of what other units show.

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, signal ``collection_point_share`` or ``enumerator_share``: ``value`` =
        :math:`k_u/n_u`, ``reference`` = the other units' mean top share, ``n`` = :math:`n_u`.

    Examples
    --------
    >>> df = pd.DataFrame({"unit_id": np.repeat([f"U{u}" for u in range(8)], 20),
    ...                    "enumerator_code": [f"E{k % 10}" for k in range(140)] + ["E99"] * 20})
    >>> flags = concentration(df, "enumerator_code")
    >>> flags.loc[flags["flagged"], "unit_id"].tolist(), float(flags["value"].iloc[-1])
    (['U7'], 1.0)
    """
    _check_rate(false_flag_rate)
    signals = {"collection_point": "collection_point_share", "enumerator_code": "enumerator_share"}
    if column not in signals:
        raise ValueError(f"screening: concentration is computed on {list(signals)}; got {column!r}")
    units = _units(responses)
    if column in responses.columns:
        known = responses.loc[responses[column].notna(), ["unit_id", column]].astype(str)
    else:
        known = pd.DataFrame(columns=["unit_id", column])
    counts = known.groupby(["unit_id", column], sort=False).size().rename("k").reset_index()
    top = counts.sort_values(["k", column], ascending=[False, True], kind="stable").drop_duplicates("unit_id")
    top = top.set_index("unit_id").reindex(units)
    n = known.groupby("unit_id").size().reindex(units, fill_value=0).to_numpy(dtype=float)
    k = top["k"].fillna(0).to_numpy(dtype=float)
    tested = n >= MIN_FORMS
    share = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
    others = share[tested]
    # tail of the unit's count under each other unit's top share (rows: units; columns: the other units)
    tail = stats.binom.sf(k[:, None] - 1, n[:, None], others[None, :])
    own = np.flatnonzero(tested)
    tail[own, np.arange(len(own))] = np.nan  # a unit is not its own reference
    with np.errstate(invalid="ignore"):
        p_value = np.where(tested & (len(others) >= 3), np.nanmean(tail, axis=1) if len(others) else np.nan, np.nan)
        reference = np.where(tested, (others.sum() - np.where(tested, share, 0)) / max(len(others) - 1, 1), np.nan)
    table = pd.DataFrame({"unit_id": units, "value": share, "reference": reference, "n": n.astype("int64"),
                          "p_value": p_value})
    names = top[column].fillna("").to_numpy(dtype=object)
    return _finish(signals[column], table, false_flag_rate, {lang: {"top": names} for lang in ("en", "vi")})


# --------------------------------------------------------------------------------------------
# The per-unit integrity table and the forms behind a flag
# --------------------------------------------------------------------------------------------

def screen(responses: pd.DataFrame, criteria: Sequence[str] | None = None, *, false_flag_rate: float = 0.01,
           n_permutations: int = 200, match: float = 0.85, window: int = 14,
           seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """Every screening signal for every unit: the per-unit integrity table of the returned questionnaires.

    Runs :func:`near_duplicates`, :func:`straight_lining`, :func:`satisfied_everywhere`,
    :func:`return_bunching` and :func:`concentration` (collection point, enumerator) — the fieldwork
    signals only when their columns are in ``responses`` — each adjusted across units with
    Benjamini–Hochberg at ``false_flag_rate`` (see the module docstring for what that guarantees).

    Parameters
    ----------
    responses
        Accepted questionnaires (``results/responses``): ``unit_id``, the criteria and, when recorded,
        ``return_date``/``survey_date``, ``collection_point``, ``enumerator_code``.
    criteria
        Criteria columns (default: the Phụ lục 5 criteria present).
    false_flag_rate
        ``integrity.false_flag_rate``: BH level per signal, the nominal per-unit false-flag rate.
    n_permutations, match, window
        ``integrity.n_permutations``, ``integrity.near_duplicate_match`` (:func:`near_duplicates`),
        ``integrity.bunching_window`` (:func:`return_bunching`).
    seed
        Seed of the permutations (the run's ``common.seed``).

    Returns
    -------
    DataFrame
        :data:`FLAG_COLUMNS`, one row per unit × signal (signals in :data:`SIGNALS` order), every row
        with its reason in English and Vietnamese, flagged or not.
    """
    _check_rate(false_flag_rate)
    parts = [near_duplicates(responses, criteria, match=match, n_permutations=n_permutations,
                             false_flag_rate=false_flag_rate, seed=seed),
             straight_lining(responses, criteria, false_flag_rate=false_flag_rate),
             satisfied_everywhere(responses, criteria, false_flag_rate=false_flag_rate)]
    if {"return_date", "survey_date"} & set(responses.columns):
        parts.append(return_bunching(responses, window=window, false_flag_rate=false_flag_rate))
    parts += [concentration(responses, column, false_flag_rate=false_flag_rate)
              for column in _STREAM_COLUMNS if column in responses.columns]
    out = pd.concat(parts, ignore_index=True)
    out["signal"] = pd.Categorical(out["signal"], categories=list(SIGNALS), ordered=True)
    out = out.sort_values(["signal", "unit_id"], kind="stable").reset_index(drop=True)
    out["signal"] = out["signal"].astype(str)
    return out


def suspect_forms(responses: pd.DataFrame, flags: pd.DataFrame, criteria: Sequence[str] | None = None, *,
                  match: float = 0.85, min_common: int = 10, min_spread: int = 3, window: int = 14,
                  min_partners: int = 2) -> pd.DataFrame:
    """The forms behind the flags of :func:`screen`, for the sensitivity analysis (index with and without them).

    For a unit flagged on ``near_duplicates``: its varied forms with at least ``min_partners``
    near-identical partners (by default members of a group of three or more near-identical forms: chance
    makes isolated pairs, copying makes groups); on ``return_bunching``: the forms of its most significant
    source-day. The other signals describe the unit as a whole and name no forms.

    Returns
    -------
    DataFrame
        ``form_id, unit_id, signal`` (a form may be listed under both signals).
    """
    criteria = _criteria(responses, criteria)
    flagged = flags.loc[flags["flagged"].astype(bool), ["unit_id", "signal"]]
    parts = []
    units = set(flagged.loc[flagged["signal"] == "near_duplicates", "unit_id"])
    if units:
        sub = responses.loc[responses["unit_id"].astype(str).isin(units)]
        values = sub[criteria].to_numpy(dtype=float)
        for unit, rows in sub.groupby(sub["unit_id"].astype(str), sort=False).indices.items():
            varied = rows[_varied(values[rows], min_common, min_spread)]
            if len(varied) >= 2:
                copied = _twins(values[varied], match, min_common)[0] >= min_partners
                parts.append(pd.DataFrame({"form_id": sub["form_id"].iloc[varied[copied]].astype(str).to_numpy(),
                                           "unit_id": unit, "signal": "near_duplicates"}))
    units = set(flagged.loc[flagged["signal"] == "return_bunching", "unit_id"])
    if units:
        sub = responses.loc[responses["unit_id"].astype(str).isin(units)].reset_index(drop=True)
        forms, cells = _bunching_cells(sub, None, [c for c in _STREAM_COLUMNS if c in sub.columns], window)
        best = cells.sort_values(["p", "c"], ascending=[True, False], kind="stable").drop_duplicates("unit_id")
        batch = forms.merge(best[["stream", "day"]], on=["stream", "day"])
        parts.append(pd.DataFrame({"form_id": sub["form_id"].astype(str).to_numpy()[batch["position"].to_numpy()],
                                   "unit_id": batch["unit_id"].to_numpy(), "signal": "return_bunching"}))
    if not parts:
        return pd.DataFrame(columns=["form_id", "unit_id", "signal"])
    return pd.concat(parts, ignore_index=True)
