"""The sparse variance route gives the dense route's covariances (issue 16: national scale).

``estimation.total_covariance(..., full=True)`` and the calibrated ``diag=True`` build the PSU (and SSU)
totals as a sparse matrix (:func:`sipas_lib.estimation._sparse_cov`) instead of a dense PSU x domain x
score matrix. Setting ``_SPARSE_BUDGET`` below zero forces every call back onto the dense route, which
centres the dense matrix exactly as R's ``svyrecvar`` (its R parity is in test_estimation.py and
test_weighting.py); both routes must agree to 1e-10 relative on designs with strata, clusters that span
domains, two stages with fpcs, lonely PSUs, post-strata (nested in the domains or across them), raking
and linear calibration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sipas_lib import estimation as est
from sipas_lib import weighting as wt


def _sample(seed: int, n_strata: int = 7) -> pd.DataFrame:
    """Strata of 1-5 clusters (stratum 0: one, a lonely PSU) of 1-4 SSUs of 1-4 rows; a cluster's rows
    fall in different domains; fpc per stratum (population PSUs) and per PSU (population SSUs)."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_strata):
        for c in range(1 if h == 0 else rng.integers(2, 6)):
            n_ssu = rng.integers(1, 5)
            for s in range(n_ssu):
                for _ in range(rng.integers(1, 5)):
                    rows.append({"h": f"h{h}", "psu": f"h{h}c{c}", "ssu": f"h{h}c{c}s{s}", "N2": 3.0 * n_ssu,
                                 "dom": f"d{rng.integers(0, 6)}", "sex": rng.choice(["m", "f"]),
                                 "age": rng.choice(["y", "o", "x"]), "x": rng.gamma(2.0),
                                 "y1": rng.normal(2.0), "y2": rng.binomial(1, 0.6), "w": rng.uniform(5, 30)})
    df = pd.DataFrame(rows)
    df["N"] = df.groupby("h")["psu"].transform("nunique") * 4.0
    return df


def _calibrated(design: est.SurveyDesign, df: pd.DataFrame, how: str) -> est.SurveyDesign:
    w = df["w"]
    if how == "none":
        return design
    if how == "post_nested":  # cells within the domains, as the annual design's unit x field cells
        return wt.poststratify(design, ["dom", "sex"], w.groupby([df["dom"], df["sex"]]).sum() * 1.1)
    if how == "post_across":
        return wt.poststratify(design, "sex", w.groupby(df["sex"]).sum() * 0.9)
    if how == "rake":  # margins moved apart so that the sweeps have work to do
        by_dom, by_age = w.groupby(df["dom"]).sum(), w.groupby(df["age"]).sum()
        by_dom = by_dom * np.linspace(0.9, 1.1, len(by_dom))
        return wt.rake(design, {"dom": by_dom / by_dom.sum() * w.sum(), "age": by_age * (by_age.sum() / w.sum())})
    if how == "greg":
        return wt.calibrate(design, margins={"sex": w.groupby(df["sex"]).sum() * 1.05},
                            totals={"x": float((w * df["x"]).sum()) * 0.95})
    raise ValueError(how)


def _scores(df: pd.DataFrame) -> np.ndarray:
    return df[["y1", "y2"]].to_numpy() - df[["y1", "y2"]].mean().to_numpy() + 0.3


def _both_routes(design, z, monkeypatch):
    _, full = est.total_covariance(design, z, by="dom", full=True)
    _, diag = est.total_covariance(design, z, by="dom", diag=True)
    with monkeypatch.context() as m:
        m.setattr(est, "_SPARSE_BUDGET", -1)
        _, dense = est.total_covariance(design, z, by="dom", full=True)
    return full, diag, dense


def _assert_same(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(b).max())


STAGES = {
    "strata+clusters": dict(strata="h", psu="psu"),
    "fpc": dict(strata="h", psu="psu", fpc="N"),
    "two_stage": dict(strata="h", psu="psu", ssu="ssu", fpc="N", fpc2="N2"),
    "rows_as_psus": dict(strata="h"),
}


CALIBRATIONS = ["none", "post_nested", "post_across", "rake", "greg"]
LONELY = ["adjust", "average", "certainty"]


@pytest.mark.parametrize("calibration", CALIBRATIONS)
@pytest.mark.parametrize("stages", list(STAGES))
def test_sparse_route_equals_dense_route(calibration, stages, monkeypatch):
    """Every calibration x stage structure, the lonely-PSU rules taken in turn (each rule meets each
    calibration and each structure)."""
    i, j = CALIBRATIONS.index(calibration), list(STAGES).index(stages)
    lonely = LONELY[(i + j) % len(LONELY)]
    df = _sample(seed=10 * i + j)
    design = _calibrated(est.SurveyDesign(df, weights="w", lonely_psu=lonely, **STAGES[stages]), df, calibration)
    full, diag, dense = _both_routes(design, _scores(df), monkeypatch)
    _assert_same(full, dense)
    _assert_same(diag.ravel(), np.diagonal(dense))
    assert np.all(np.diagonal(dense) >= 0) and np.diagonal(dense).max() > 0


def test_remove_rule_and_a_lonely_ssu(monkeypatch):
    """lonely_psu='remove' with a stratum of one PSU and PSUs of one sampled SSU (stage-2 lonely units)."""
    df = _sample(seed=5)
    design = est.SurveyDesign(df, weights="w", strata="h", psu="psu", ssu="ssu", fpc="N", fpc2="N2",
                              lonely_psu="remove")
    assert (df.groupby("psu")["ssu"].nunique() == 1).any()
    full, diag, dense = _both_routes(_calibrated(design, df, "post_nested"), _scores(df), monkeypatch)
    _assert_same(full, dense)
    _assert_same(diag.ravel(), np.diagonal(dense))


def test_full_covariance_of_the_national_shape_never_goes_dense(monkeypatch):
    """Strata = units = domains, a PSU per respondent, post-strata within units (the annual design at
    national scale): the full covariance comes from sparse totals; the dense route is not touched."""
    rng = np.random.default_rng(16)
    n_units = 300
    unit = np.repeat(np.arange(n_units), rng.integers(2, 12, n_units))
    df = pd.DataFrame({"unit": unit, "cell": rng.integers(0, 3, unit.size), "w": rng.uniform(1, 9, unit.size),
                       "z": rng.normal(size=unit.size)})
    df["N"] = df.groupby("unit")["w"].transform("sum").round() + 20
    design = est.SurveyDesign(df, weights="w", strata="unit", fpc="N", lonely_psu="adjust")
    design = wt.poststratify(design, ["unit", "cell"], df.groupby(["unit", "cell"])["w"].sum() * 1.2)
    with monkeypatch.context() as m:
        m.setattr(est, "_combine", lambda *a: pytest.fail("dense PSU x domain matrix built"))
        _, full = est.total_covariance(design, df[["z"]], by="unit", full=True)
        _, diag = est.total_covariance(design, df[["z"]], by="unit", diag=True)
    with monkeypatch.context() as m:
        m.setattr(est, "_SPARSE_BUDGET", -1)
        _, dense = est.total_covariance(design, df[["z"]], by="unit", full=True)
    _assert_same(full, dense)
    _assert_same(diag.ravel(), np.diagonal(dense))
    # cells nested in units: the units' estimates are independent
    assert np.count_nonzero(full - np.diag(np.diagonal(full))) == 0


def test_margin_across_domains_falls_back_or_says_why(monkeypatch):
    """Raking on a margin that cuts across the domains fills the totals in: past the sparse budget the
    dense route takes over, and past the dense budget a clear error names the cause, never a crash."""
    df = _sample(seed=9)
    design = _calibrated(est.SurveyDesign(df, weights="w", strata="h", psu="psu", lonely_psu="adjust"), df, "rake")
    z = _scores(df)
    _, sparse_full = est.total_covariance(design, z, by="dom", full=True)
    monkeypatch.setattr(est, "_SPARSE_BUDGET", 50)
    _, fallback = est.total_covariance(design, z, by="dom", full=True)
    _assert_same(sparse_full, fallback)
    C = sparse_full.shape[0]  # 6 domains x 2 scores
    assert design._structure.n_psu * C > C**2 + 1
    monkeypatch.setattr(est, "_DENSE_BUDGET", C**2 + 1)  # the answer fits, the dense PSU totals do not
    with pytest.raises(ValueError, match="cut across the domains, so the totals are not sparse"):
        est.total_covariance(design, z, by="dom", full=True)
    monkeypatch.setattr(est, "_DENSE_BUDGET", C**2 - 1)  # the (C x C) answer itself is over budget
    with pytest.raises(ValueError, match="12 x 12 matrix"):
        est.total_covariance(design, z, by="dom", full=True)


def test_sparse_calibration_coefficients_match_the_dense_ones():
    """B_a of the raking residuals: sparse (p x D*k) from sparse scores = the dense chunk's coefficients."""
    df = _sample(seed=4)
    design = _calibrated(est.SurveyDesign(df, weights="w", strata="h", psu="psu", lonely_psu="adjust"), df, "rake")
    z = _scores(df)
    dom, index = est._domains(df, "dom")
    D, k = len(index), z.shape[1]
    coefs = [np.ones((D, k))]
    X = est._row_scores(design.w, [np.asfortranarray(z)], coefs, dom, D, k)
    sparse_B = est._sparse_calibration_coefficients(design, X)
    keep = dom >= 0
    dense_B = est._calibration_coefficients(design, [np.asfortranarray(z)], coefs, np.where(keep, design.w, 0.0),
                                            np.where(keep, dom, 0), D, k)
    assert len(sparse_B) == len(dense_B) == 2
    for s, d in zip(sparse_B, dense_B):
        _assert_same(s.toarray(), d)


@pytest.mark.parametrize("calibration", ["none", "post_across"])
def test_uncentred_form_when_the_stratum_means_would_fill_in(calibration, monkeypatch):
    """One stratum across all domains: centring would make every PSU dense. With a budget that holds the
    totals but not their centred form, T'ST - sum_h s_h R_h R_h'/n_h gives the same covariance."""
    df = _sample(seed=21).assign(N=lambda d: d["psu"].nunique() * 3.0)
    design = _calibrated(est.SurveyDesign(df, weights="w", psu="psu", fpc="N", lonely_psu="adjust"), df, calibration)
    z = _scores(df)
    _, centred = est.total_covariance(design, z, by="dom", full=True)
    st = design._structure
    budget = st.n_psu * 6 * 2  # PSUs x domains x scores: any T fits, T plus its centring does not
    dom, index = est._domains(df, "dom")
    X = est._row_scores(design.w, [z], [np.ones((6, 2))], dom, 6, 2)
    B = est._sparse_calibration_coefficients(design, X) if calibration != "none" else []
    T = est._sparse_unit_totals(design, X, B, 1)
    assert len(index) == 6 and 0 < T.nnz <= budget < T.nnz + st.n_psu * 12
    monkeypatch.setattr(est, "_SPARSE_BUDGET", budget)
    _, uncentred = est.total_covariance(design, z, by="dom", full=True)
    _, diag = est.total_covariance(design, z, by="dom", diag=True)
    monkeypatch.setattr(est, "_SPARSE_BUDGET", -1)
    _, dense = est.total_covariance(design, z, by="dom", full=True)
    _assert_same(centred, dense)
    _assert_same(uncentred, dense)
    _assert_same(diag.ravel(), np.diagonal(dense))


def test_rows_without_a_domain_stay_in_the_design(monkeypatch):
    """Rows with a missing domain value add nothing to any domain's totals but keep their PSUs and cells."""
    df = _sample(seed=13)
    df.loc[df.index[::5], "dom"] = None
    design = _calibrated(est.SurveyDesign(df, weights="w", strata="h", psu="psu", fpc="N", lonely_psu="adjust"),
                         df, "post_across")
    full, diag, dense = _both_routes(design, _scores(df), monkeypatch)
    _assert_same(full, dense)
    _assert_same(diag.ravel(), np.diagonal(dense))
