"""Cohen's kappa (sipas_lib.reliability.agreement): parity with R, closed forms, conventions.

Reference values: ``tests/r/kappa.R`` (R 4.2.2, psych 2.2.9, vcd 1.4-11) on the committed fixture
``tests/fixtures/agreement/kappa_pairs.csv`` (160 pairs on the 1–5 scale, groups A and B, four pairs with
one answer missing). Kappa, weighted kappa and the interval of unweighted kappa come from
``psych::cohen.kappa(d, levels = 1:5)`` (quadratic weights by default, ``w = 1 - |i-j|/4`` for linear);
the standard error of weighted kappa from ``vcd::Kappa`` (Fleiss, Cohen & Everitt 1969), because psych's
variance of weighted kappa departs from that formula (module docstring; the R script's Monte Carlo check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib.reliability.agreement import KAPPA_WEIGHTS, cohen_kappa, kappa_from_counts, kappa_weights

FIXTURE = Path(__file__).parent / "fixtures" / "agreement" / "kappa_pairs.csv"
SCALE = [1, 2, 3, 4, 5]
TOL = 1e-8

# Rscript tests/r/kappa.R, printed with 15 significant digits.
R_REFERENCE = {
    "all": {
        "n": 156,
        "exact_agreement": 0.58974358974359,                    # mean(first == second)
        "unweighted": (0.445672089278774,                       # psych kappa
                       0.0539856312365476,                      # vcd Unweighted ASE (= sqrt(psych var.kappa))
                       0.33986219637248, 0.551481982185068),    # psych confid[1, c(1, 3)]
        "linear": (0.653799596503026, 0.0410770936958759),      # psych weighted.kappa (w linear); vcd ASE
        "quadratic": (0.82051282051282, 0.0287261631862559),    # psych weighted.kappa; vcd Fleiss-Cohen ASE
        "quadratic_ci": (0.764210575253738, 0.876815065771902),  # vcd value -/+ qnorm(.975) * ASE
        "psych_var_weighted": {"linear": 0.000893131337570762, "quadratic": 0.0},  # psych's (departing) variance
    },
    "A": {
        "n": 107,
        "exact_agreement": 0.626168224299065,
        "unweighted": (0.498535442296426, 0.0632294101211687, 0.374608075695223, 0.62246280889763),
        "linear": (0.710771725908906, 0.0434237071191587),
        "quadratic": (0.866683279342138, 0.0249751140799304),
    },
    "B": {  # group B never uses category 1: the scale (levels = 1:5) still has five categories
        "n": 49,
        "exact_agreement": 0.510204081632653,
        "unweighted": (0.321407963069821, 0.100572210168053, 0.124290053294844, 0.518525872844798),
        "linear": (0.497634069400631, 0.0895343426139299),
        "quadratic": (0.664995442114858, 0.0823972191588217),
    },
}


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


def _row(table: pd.DataFrame, weights: str, **keys) -> pd.Series:
    mask = table["weights"] == weights
    for column, value in keys.items():
        mask &= table[column] == value
    assert mask.sum() == 1
    return table[mask].iloc[0]


def _check(row: pd.Series, ref: dict, weights: str) -> None:
    assert row["n"] == ref["n"]
    assert row["exact_agreement"] == pytest.approx(ref["exact_agreement"], abs=TOL)
    kappa, se, *ci = ref[weights]
    assert row["kappa"] == pytest.approx(kappa, abs=TOL)
    assert row["se"] == pytest.approx(se, abs=TOL)
    if ci:
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ci), abs=TOL)


@pytest.mark.parametrize("weights", KAPPA_WEIGHTS)
def test_kappa_and_interval_agree_with_r_on_the_fixture(pairs, weights):
    table = cohen_kappa(pairs, "first", "second", categories=SCALE, level=0.95)
    _check(_row(table, weights), R_REFERENCE["all"], weights)
    if weights == "quadratic":
        row = _row(table, weights)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(R_REFERENCE["all"]["quadratic_ci"], abs=TOL)


@pytest.mark.parametrize("weights", KAPPA_WEIGHTS)
def test_kappa_by_group_agrees_with_r(pairs, weights):
    table = cohen_kappa(pairs, "first", "second", categories=SCALE, by="group")
    assert list(table.columns[:2]) == ["group", "weights"]
    for group in ("A", "B"):
        _check(_row(table, weights, group=group), R_REFERENCE[group], weights)


def test_weighted_variance_is_fleiss_cohen_everitt_not_psychs(pairs):
    # psych::cohen.kappa's var.weighted (0.000893 linear, 0 quadratic: negative, set to 0) is not the
    # variance of Fleiss, Cohen & Everitt (1969); the R script's Monte Carlo variance of quadratic kappa
    # (0.000868) sits by vcd's 0.000825, which this function reproduces.
    table = cohen_kappa(pairs, "first", "second", categories=SCALE)
    for weights, psych_var in R_REFERENCE["all"]["psych_var_weighted"].items():
        se = _row(table, weights)["se"]
        assert se == pytest.approx(R_REFERENCE["all"][weights][1], abs=TOL)
        assert abs(se**2 - psych_var) > 5e-4


@pytest.mark.parametrize("weights", KAPPA_WEIGHTS)
def test_perfect_agreement_is_one_with_no_spread(weights):
    d = pd.DataFrame({"a": [1, 2, 3, 4, 5, 5, 4, 2], "b": [1, 2, 3, 4, 5, 5, 4, 2]})
    row = cohen_kappa(d, "a", "b", categories=SCALE, weights=weights).iloc[0]
    assert row["kappa"] == pytest.approx(1.0, abs=1e-12)
    assert row["se"] == pytest.approx(0.0, abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((1.0, 1.0), abs=1e-12)
    assert row["exact_agreement"] == 1.0


@pytest.mark.parametrize("weights", KAPPA_WEIGHTS)
def test_independence_table_gives_kappa_zero(weights):
    # counts = n * outer(row margins, column margins): observed agreement equals chance agreement
    counts = 1000 * np.outer([0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.2, 0.3])
    result = kappa_from_counts(counts, kappa_weights(4, weights))
    assert result["kappa"][0] == pytest.approx(0.0, abs=1e-12)
    assert result["observed_agreement"][0] == pytest.approx(result["chance_agreement"][0], abs=1e-12)
    assert result["se"][0] > 0


def test_two_by_two_closed_form():
    # [[20, 5], [10, 15]]: p_o = 0.7, p_c = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4 (Cohen 1960).
    # Variance (Fleiss, Cohen & Everitt 1969) written out for the 2 x 2 case:
    p = np.array([[20, 5], [10, 15]]) / 50
    r, c, po, pc = p.sum(1), p.sum(0), 0.7, 0.5
    diag = sum(p[i, i] * ((1 - pc) - (r[i] + c[i]) * (1 - po)) ** 2 for i in range(2))
    off = (1 - po) ** 2 * (p[0, 1] * (c[0] + r[1]) ** 2 + p[1, 0] * (c[1] + r[0]) ** 2)
    var = (diag + off - (po * pc - 2 * pc + po) ** 2) / (50 * (1 - pc) ** 4)
    result = kappa_from_counts(np.array([[20, 5], [10, 15]]), kappa_weights(2, "unweighted"), level=0.90)
    assert result["kappa"][0] == pytest.approx(0.4, abs=1e-12)
    assert result["se"][0] == pytest.approx(np.sqrt(var), abs=1e-12)
    z = stats.norm.ppf(0.95)
    assert result["ci_low"][0] == pytest.approx(0.4 - z * np.sqrt(var), abs=1e-12)


def test_kappa_is_symmetric_in_the_two_ratings(pairs):
    forward = cohen_kappa(pairs, "first", "second", categories=SCALE)
    backward = cohen_kappa(pairs, "second", "first", categories=SCALE)
    pd.testing.assert_frame_equal(forward, backward, atol=1e-12, rtol=0)


def test_weights_matrices():
    assert kappa_weights(5, "unweighted").tolist() == np.eye(5).tolist()
    assert kappa_weights(5, "linear")[0].tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert kappa_weights(5, "quadratic")[0].tolist() == [1.0, 0.9375, 0.75, 0.4375, 0.0]
    with pytest.raises(ValueError, match="weights must be one of"):
        kappa_weights(5, "cubic")


def test_undefined_kappa_and_bad_input():
    same = pd.DataFrame({"a": [3, 3, 3], "b": [3, 3, 3]})
    row = cohen_kappa(same, "a", "b", categories=SCALE, weights="unweighted").iloc[0]
    assert np.isnan(row["kappa"]) and np.isnan(row["se"]) and row["exact_agreement"] == 1.0 and row["n"] == 3
    with pytest.raises(ValueError, match=r"column 'b': value 7 is not one of the categories"):
        cohen_kappa(pd.DataFrame({"a": [1, 2], "b": [2, 7]}), "a", "b", categories=SCALE)
    with pytest.raises(ValueError, match="column\\(s\\) not in the data: c"):
        cohen_kappa(same, "a", "c")
    with pytest.raises(ValueError, match="level"):
        kappa_from_counts(np.eye(2), np.eye(2), level=95)


def test_missing_ratings_and_group_keys_are_left_out(pairs):
    with_missing_group = pairs.assign(group=pairs["group"].where(pairs.index != 0))
    table = cohen_kappa(with_missing_group, "first", "second", categories=SCALE, by="group", weights="linear")
    assert set(table["group"]) == {"A", "B"}
    assert int(table.loc[table["group"] == "A", "n"].iloc[0]) == R_REFERENCE["A"]["n"] - 1
