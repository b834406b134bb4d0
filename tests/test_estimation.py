"""Tests of sipas_lib.estimation against R's survey package.

Reference values: tests/fixtures/survey/reference.csv, produced by ``Rscript tests/r/survey_reference.R``
with R 4.2.2 and survey 4.1.1 (see reference_meta.csv) on R's ``data(api)`` (apistrat, apiclus1,
apiclus2) and a SIPAS-shaped simulated set. Functions: svymean, svytotal, svyby, svyratio,
svyciprop (logit, beta), deff, degf, vcov(svytotal), as.svrepdesign (JK1, JKn).
Tolerance: relative difference <= 1e-8 (R's svyciprop(logit) estimate comes from an iterated glm
fit, accurate to ~1e-10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import estimation as est

FIX = Path(__file__).parent / "fixtures" / "survey"
RTOL = 1e-8


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    r = pd.read_csv(FIX / "reference.csv", keep_default_na=False, na_values=["NA"])
    r["domain"] = r["domain"].astype(str)
    return r


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / f"{name}.csv")


def designs() -> dict:
    strat = load("apistrat")
    clus1 = load("apiclus1")
    clus2 = load("apiclus2")
    sim = load("sipas_sim")
    return {
        "strat": est.SurveyDesign(strat, weights="pw", strata="stype", fpc="fpc"),
        "clus1": est.SurveyDesign(clus1, weights="pw", psu="dnum", fpc="fpc"),
        "clus2": est.SurveyDesign(clus2, psu="dnum", ssu="snum", fpc="fpc1", fpc2="fpc2"),
        "clus2_w": est.SurveyDesign(clus2, weights="pw", psu="dnum", ssu="snum"),
        "sim": est.SurveyDesign(sim, weights="w", strata="unit_id", fpc="N_h"),
    }


def rel(a, b) -> np.ndarray:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-300)


def compare(ours: pd.DataFrame, theirs: pd.DataFrame, by: str | None, cols=("estimate", "se", "ci_low", "ci_high", "deff"),
            rtol: float = RTOL) -> int:
    """Match rows on variable/domain and compare the given columns; returns the number compared."""
    o = ours.copy()
    o["domain"] = o[by].astype(str) if by else ""
    m = theirs.merge(o, on=["variable", "domain"], suffixes=("_r", ""))
    assert len(m) == len(theirs), f"unmatched reference rows: {theirs[['variable', 'domain']].values.tolist()}"
    count = 0
    for c in cols:
        rv = m[f"{c}_r"].to_numpy(float)
        ok = np.isfinite(rv) & (m["se_r"].to_numpy(float) > 0 if c.startswith("ci") else True)
        if not ok.any():
            continue
        d = rel(m[c].to_numpy(float)[ok], rv[ok])
        assert d.max() <= rtol, f"{c}: max rel diff {d.max():.2e}\n{m.loc[ok, ['variable', 'domain', c, c + '_r']]}"
        count += int(ok.sum())
    return count


def check_case(ref, case, design, bys=None):
    """Compare every reference row of ``case``; domain rows are matched to the first column of
    ``bys`` whose values contain the reference domains."""
    if isinstance(bys, str):
        bys = [bys]
    bys = bys or []
    r = ref[ref["case"] == case]
    assert len(r), case
    n = 0
    for (estimator, variable), g in r.groupby(["estimator", "variable"]):
        if estimator in ("degf", "vcov_total"):
            continue
        parts = [(None, g[g.domain == ""])]
        rest = g[g.domain != ""]
        for b in bys:
            values = set(design.data[b].astype(str))
            sel = rest[rest.domain.isin(values)]
            if len(sel):
                parts.append((b, sel))
                rest = rest.drop(sel.index)
        assert rest.empty, f"no by column for domains {rest.domain.tolist()}"
        for by, gv in parts:
            if gv.empty:
                continue
            if estimator == "mean":
                o = est.mean(design, variable, by=by)
            elif estimator == "total":
                o = est.total(design, variable, by=by)
            elif estimator == "ratio":
                num, den = variable.split("/")
                o = est.ratio(design, num, den, by=by)
            elif estimator.startswith("prop_"):
                o = est.proportion(design, variable, by=by, method=estimator[5:])
            else:
                raise AssertionError(estimator)
            cols = ("estimate", "se", "ci_low", "ci_high") if estimator.startswith("prop_") else (
                "estimate", "se", "ci_low", "ci_high", "deff")
            n += compare(o, gv, by, cols=cols)
    return n


@pytest.mark.parametrize("case,by", [("strat", "awards"), ("clus1", "stype"), ("clus2", "stype"),
                                     ("clus2_w", "stype"), ("sim", "unit_id")])
def test_taylor_parity_with_r(ref, case, by):
    n = check_case(ref, case, designs()[case], by)
    assert n >= 5


def test_vectorized_many_columns_equal_single_calls(ref):
    d = designs()["sim"]
    items = [f"c0{j}" for j in range(1, 7)]
    many = est.mean(d, items, by="unit_id")
    for v in items:
        one = est.mean(d, v, by="unit_id")
        pd.testing.assert_frame_equal(many[many.variable == v].reset_index(drop=True), one)
    r = ref[(ref.case == "sim") & (ref.estimator == "mean") & (ref.domain != "")]
    compare(many, r, "unit_id")


def test_assign_keeps_design_and_calibration():
    d = designs()["sim"]
    d2 = d.assign(hi=(d.data.c01 >= 4).astype(float))
    assert d2._structure is d._structure and np.array_equal(d2.w, d.w)
    assert np.allclose(est.mean(d2, "hi").se, est.mean(d, "s01").se)
    with pytest.raises(ValueError, match="design column"):
        d.assign(w=1.0)


def test_degf_matches_r(ref):
    ds = designs()
    for case in ("strat", "clus1", "clus2"):
        want = ref[(ref.case == case) & (ref.estimator == "degf")]["estimate"].iloc[0]
        assert ds[case].degf() == want


def test_total_covariance_matches_vcov_svytotal(ref):
    d = designs()["strat"]
    _, v = est.total_covariance(d, d.data[["api00", "enroll"]])
    r = ref[(ref.case == "strat") & (ref.estimator == "vcov_total")].set_index("variable")["estimate"]
    assert rel(v[0, 0], r["api00,api00"]) < RTOL
    assert rel(v[0, 1], r["api00,enroll"]) < RTOL
    assert rel(v[1, 1], r["enroll,enroll"]) < RTOL
    assert np.allclose(v, v.T)


def test_total_covariance_by_domain_blocks_match_totals():
    d = designs()["clus1"]
    idx, cov = est.total_covariance(d, d.data[["api00", "enroll"]], by="stype")
    assert list(idx["stype"]) == ["E", "H", "M"] and cov.shape == (3, 2, 2)
    t = est.total(d, ["api00", "enroll"], by="stype")
    se = t.set_index(["variable", "stype"])["se"]
    for i, s in enumerate(idx["stype"]):
        assert rel(np.sqrt(cov[i, 0, 0]), se[("api00", s)]) < 1e-12
        assert rel(np.sqrt(cov[i, 1, 1]), se[("enroll", s)]) < 1e-12
    _, var = est.total_covariance(d, d.data[["api00", "enroll"]], by="stype", diag=True)
    assert np.allclose(var, np.diagonal(cov, axis1=1, axis2=2), rtol=1e-12)
    _, full = est.total_covariance(d, d.data[["api00", "enroll"]], by="stype", full=True)
    assert full.shape == (6, 6)
    assert np.allclose(full[2:4, 2:4], cov[1])
    # one-stage cluster sample: domains share PSUs, so cross-domain covariances are not zero
    assert abs(full[0, 2]) > 0


def test_total_covariance_of_linearized_mean_equals_mean_se():
    d = designs()["sim"]
    y = d.data["c01"].to_numpy(float)
    m = est.mean(d, "c01", by="unit_id")
    dom = d.data["unit_id"]
    ybar = dom.map(m.set_index("unit_id")["estimate"]).to_numpy()
    wsum = dom.map(pd.Series(d.w).groupby(dom.to_numpy()).sum()).to_numpy()
    z = (y - ybar) / wsum
    idx, cov = est.total_covariance(d, z, by="unit_id")
    assert np.allclose(np.sqrt(cov[:, 0, 0]), m["se"].to_numpy(), rtol=1e-12)


def test_lonely_psu_rules_match_r(ref):
    data = load("sipas_sim_lonely")
    with pytest.raises(ValueError, match="only one PSU"):
        est.SurveyDesign(data, weights="w", strata="unit_id")
    for rule in ("adjust", "average", "certainty", "remove"):
        d = est.SurveyDesign(data, weights="w", strata="unit_id", lonely_psu=rule)
        n = check_case(ref, f"lonely_{rule}", d)
        assert n >= 6


def test_replicate_parity_with_r(ref):
    ds = designs()
    jkn = est.as_replicate(ds["strat"], "JKn")
    assert check_case(ref, "strat_jkn", jkn, "awards") > 5
    jk1 = est.as_replicate(ds["clus1"], "JK1")
    assert check_case(ref, "clus1_jk1", jk1, "stype") > 5


def test_replicate_estimate_any_statistic():
    ds = designs()
    jkn = est.as_replicate(ds["strat"], "JKn")
    y = ds["strat"].data["api00"].to_numpy()
    r = est.replicate_estimate(jkn, lambda w: np.sum(w * y) / np.sum(w))
    m = est.mean(jkn, "api00")
    assert rel(r["se"].iloc[0], m["se"].iloc[0]) < 1e-12
    rv = est.replicate_estimate(jkn, lambda W: (W.T @ y) / W.sum(0), vectorized=True)
    assert rel(rv["se"].iloc[0], m["se"].iloc[0]) < 1e-12
    # the replicate total covariance equals the replicate SE of the total
    _, cov = est.total_covariance(jkn, y)
    assert rel(np.sqrt(cov[0, 0]), est.total(jkn, "api00")["se"].iloc[0]) < 1e-12


def test_bootstrap_is_reproducible_and_close_to_taylor():
    d = designs()["strat"]
    b1 = est.as_replicate(d, "bootstrap", replicates=400, seed=7)
    b2 = est.as_replicate(d, "bootstrap", replicates=400, seed=7)
    assert np.array_equal(b1.repweights, b2.repweights)
    # R: degf = rank of the replicate weights - 1 (degf(as.svrepdesign(dstrat, "subbootstrap", 50)) = 49)
    assert est.as_replicate(d, "bootstrap", replicates=50, seed=1).degf() == 49 and b1.degf() == 197
    assert est.as_replicate(d, "JKn").degf() == 197 and est.as_replicate(designs()["clus1"], "JK1").degf() == 14
    # Rao-Wu replicate weights sum, in expectation, to the full weights
    assert abs(b1.repweights.sum(0).mean() / d.w.sum() - 1) < 0.01
    se_b = est.mean(b1, "api00")["se"].iloc[0]
    se_t = est.mean(d, "api00")["se"].iloc[0]
    assert 0.85 < se_b / se_t < 1.15


def test_design_validation_messages():
    df = pd.DataFrame({"y": [1.0, 2, 3, 4], "w": [1.0, -1, 1, 1], "h": ["a", "a", "b", "b"],
                       "N": [10, 10, 1, 1], "f": [0.5, 0.5, 2, 2]})
    with pytest.raises(ValueError, match="negative"):
        est.SurveyDesign(df, weights="w")
    with pytest.raises(ValueError, match="not in the data"):
        est.SurveyDesign(df, weights="weight")
    with pytest.raises(ValueError, match="smaller than the sample"):
        est.SurveyDesign(df, strata="h", fpc="N")
    with pytest.raises(ValueError, match="mixes"):
        est.SurveyDesign(df, strata="h", fpc="f")
    with pytest.raises(ValueError, match="lonely_psu"):
        est.SurveyDesign(df, lonely_psu="drop")
    with pytest.raises(ValueError, match="missing"):
        est.SurveyDesign(df.assign(w=[1.0, np.nan, 1, 1]), weights="w")
    with pytest.raises(ValueError, match="varies within stratum"):
        est.SurveyDesign(df.assign(N=[10, 11, 10, 10]), strata="h", fpc="N")
    with pytest.raises(ValueError, match="0/1"):
        est.proportion(est.SurveyDesign(df.assign(w=1.0), weights="w"), "y")
    with pytest.raises(ValueError, match="needs psu"):
        est.SurveyDesign(df, ssu="y")


def test_fpc_as_fraction_equals_population_size():
    d = designs()["strat"]
    data = d.data.assign(frac=d.data.groupby("stype")["stype"].transform("size") / d.data["fpc"])
    d2 = est.SurveyDesign(data, weights="pw", strata="stype", fpc="frac")
    a = est.mean(d, ["api00", "enroll"], by="awards")
    b = est.mean(d2, ["api00", "enroll"], by="awards")
    assert np.allclose(a["se"], b["se"], rtol=1e-12)


def test_domain_keeps_full_design_not_subset():
    """A domain estimate's SE differs from the naive subset's SE when PSUs lack domain members."""
    d = designs()["clus1"]
    dom = est.mean(d, "api00", by="stype").set_index("stype")
    sub = d.data[d.data.stype == "H"]
    naive = est.mean(est.SurveyDesign(sub, weights="pw", psu="dnum", fpc="fpc"), "api00")
    assert rel(dom.loc["H", "estimate"], naive["estimate"].iloc[0]) < 1e-12
    assert rel(dom.loc["H", "se"], naive["se"].iloc[0]) > 1e-3


def test_proportion_methods_and_degenerate_cells():
    d = designs()["sim"]
    out = {m: est.proportion(d, "s01", by="unit_id", method=m) for m in est.PROPORTION_METHODS}
    for m, o in out.items():
        assert (o.ci_low <= o.estimate + 1e-12).all() and (o.ci_high >= o.estimate - 1e-12).all(), m
        assert np.allclose(o.estimate, out["logit"].estimate)
    wald = out["wald"]
    assert np.allclose(wald.ci_high - wald.estimate, wald.estimate - wald.ci_low)
    data = d.data.assign(all1=1.0)
    o = est.proportion(est.SurveyDesign(data, weights="w", strata="unit_id"), "all1")
    assert o.estimate.iloc[0] == 1 and o.ci_high.iloc[0] == 1 and 0.9 < o.ci_low.iloc[0] < 1


def test_missing_values_per_variable_and_na_rm_false():
    d = designs()["sim"]
    with pytest.raises(ValueError, match="na_rm"):
        est.mean(d, "c06", na_rm=False)
    o = est.mean(d, ["c01", "c06"])
    assert o.n.tolist() == [d.data.c01.notna().sum(), d.data.c06.notna().sum()]
    assert np.allclose(o.n_eff, o.n / o.deff)


@pytest.mark.simulation
def test_coverage_of_95pct_intervals_over_repeated_stratified_samples():
    """Simulation: 600 repeated stratified SRS (fpc) from a fixed population; normal intervals for a
    mean and logit intervals for a share must cover 93-97 % of the time. Vectorized: the samples are
    stacked, (sample, stratum) are the strata and the sample is the domain, which gives exactly
    each sample's own design-based estimate and SE in one call."""
    rng = np.random.default_rng(11)
    H, Nh, nh, reps = 12, 2000, 40, 600
    stratum = np.repeat(np.arange(H), Nh)
    y = rng.normal(3 + 0.1 * stratum, 1 + 0.05 * stratum)
    s = (y > 3.4).astype(float)
    keys = rng.random((reps, H, Nh))
    # the nh smallest keys of each stratum in key order (= argsort(keys)[..., :nh], a tenth of the time)
    part = np.argpartition(keys, nh - 1, axis=2)[:, :, :nh]
    first = np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, axis=2), axis=2), axis=2)
    pick = (first + (np.arange(H) * Nh)[None, :, None]).reshape(reps, -1)
    rep = np.repeat(np.arange(reps), H * nh)
    idx = pick.ravel()
    df = pd.DataFrame({"rep": rep, "h": rep * H + stratum[idx], "y": y[idx], "s": s[idx], "N": Nh})
    d = est.SurveyDesign(df, strata="h", fpc="N")
    m = est.mean(d, "y", by="rep")
    p = est.proportion(d, "s", by="rep")
    assert (p.df == H * nh - H).all()
    # spot check: one replicate alone gives the same numbers
    one = est.mean(est.SurveyDesign(df[df.rep == 7], strata="h", fpc="N"), "y")
    assert rel(one.se.iloc[0], m.se.iloc[7]) < 1e-12
    cov_m = ((m.ci_low <= y.mean()) & (y.mean() <= m.ci_high)).mean()
    cov_p = ((p.ci_low <= s.mean()) & (s.mean() <= p.ci_high)).mean()
    assert 0.93 <= cov_m <= 0.97, cov_m
    assert 0.93 <= cov_p <= 0.97, cov_p


def test_sparse_pair_path_equals_dense_path():
    """Many domains with one row per PSU use (PSU, domain) pairs; the full (dense) path agrees."""
    for d, by in ((designs()["sim"], "unit_id"), (designs()["clus2"], "stype")):
        z = d.data[["api00", "api99"] if "api00" in d.data else ["c01", "c02"]].fillna(0)
        idx, blocks = est.total_covariance(d, z, by=by)
        _, full = est.total_covariance(d, z, by=by, full=True)
        k = z.shape[1]
        for i in range(len(idx)):
            assert np.allclose(blocks[i], full[i * k:(i + 1) * k, i * k:(i + 1) * k], rtol=1e-10)
        _, var = est.total_covariance(d, z, by=by, diag=True)
        assert np.allclose(var, np.diagonal(blocks, axis1=1, axis2=2), rtol=1e-10)
