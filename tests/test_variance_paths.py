"""The variance engine's shortcut for calibrated designs gives the same variances as the dense route.

``estimation.total_covariance(..., diag=True)`` of a calibrated one-stage design with one-hot atoms
(post-strata, raking margins) takes :func:`sipas_lib.estimation._calibrated_diag_cov` (stratum sums
and p x p products instead of a PSU x domain x score matrix); ``diag=False`` still centres the dense
matrix. Both must agree to rounding on designs with clusters that span domains, strata of one PSU,
finite-population corrections and several raking margins. (The R parity of the calibrated variances
themselves is in test_weighting.py and test_estimation.py.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sipas_lib import estimation as est
from sipas_lib import weighting as wt


def _sample(seed: int = 3, n_strata: int = 6) -> pd.DataFrame:
    """Strata of 1-5 clusters, 1-6 rows each; rows of a cluster fall in different domains."""
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_strata):
        for c in range(1 if h == 0 else rng.integers(2, 6)):  # stratum 0: a single (lonely) cluster
            for _ in range(rng.integers(1, 7)):
                rows.append({"h": f"h{h}", "psu": f"h{h}c{c}", "dom": f"d{rng.integers(0, 9)}",
                             "sex": rng.choice(["m", "f"]), "age": rng.choice(["y", "o", "x"]),
                             "y1": rng.normal(), "y2": rng.binomial(1, 0.6), "w": rng.uniform(5, 30)})
    df = pd.DataFrame(rows)
    df["N"] = df.groupby("h")["psu"].transform("nunique") * 4.0
    return df


def _diag_both_ways(design, df):
    z = df[["y1", "y2"]].to_numpy() - df[["y1", "y2"]].mean().to_numpy()
    index, fast = est.total_covariance(design, z, by="dom", diag=True)
    index2, blocks = est.total_covariance(design, z, by="dom")
    pd.testing.assert_frame_equal(index, index2)
    return fast, np.diagonal(blocks, axis1=1, axis2=2)


@pytest.mark.parametrize("lonely", ["adjust", "average", "certainty"])
def test_post_stratified_clustered_design(lonely):
    df = _sample()
    design = est.SurveyDesign(df, weights="w", strata="h", psu="psu", fpc="N", lonely_psu=lonely)
    cells = df.groupby("sex")["w"].sum() * 1.1
    fast, dense = _diag_both_ways(wt.poststratify(design, "sex", cells), df)
    np.testing.assert_allclose(fast, dense, rtol=1e-10, atol=1e-12)
    assert (fast > 0).any()


def test_raked_design_with_two_margins_and_one_cell_per_unit():
    df = _sample(seed=11, n_strata=8).assign(psu=lambda d: d.index.astype(str))  # one row per PSU, as the city survey
    design = est.SurveyDesign(df, weights="w", strata="h", psu="psu", lonely_psu="adjust")
    total = df["w"].sum()
    margins = {"sex": df.groupby("sex")["w"].sum() / total * 1000, "age": df.groupby("age")["w"].sum() / total * 1000}
    fast, dense = _diag_both_ways(wt.rake(design, margins), df)
    np.testing.assert_allclose(fast, dense, rtol=1e-10, atol=1e-12)


def test_the_shortcut_is_taken_for_calibrated_one_hot_designs(monkeypatch):
    df = _sample()
    design = wt.poststratify(est.SurveyDesign(df, weights="w", strata="h", psu="psu", lonely_psu="adjust"),
                             "sex", df.groupby("sex")["w"].sum())
    calls = []
    original = est._calibrated_diag_cov
    monkeypatch.setattr(est, "_calibrated_diag_cov", lambda *a: calls.append(1) or original(*a))
    est.total_covariance(design, df[["y1"]].to_numpy(), by="dom", diag=True)
    est.total_covariance(design, df[["y1"]].to_numpy(), by="dom")  # blocks: the dense route
    assert calls == [1]
