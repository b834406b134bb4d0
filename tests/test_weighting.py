"""Tests of sipas_lib.weighting against R's survey package (tests/r/survey_reference.R; R 4.2.2,
survey 4.1.1): postStratify, rake (maxit 10 / epsilon 1 and tight), calibrate (linear),
trimWeights -- weights and the estimates/SEs of svymean, svytotal, svyby, svyratio and
svyciprop on the calibrated designs, for Taylor and JK1 replicate designs.
Tolerance: relative difference <= 1e-8 (weights <= 1e-10).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sipas_lib import estimation as est
from sipas_lib import weighting as wt
from test_estimation import FIX, RTOL, check_case, compare, load, ref, rel  # noqa: F401

POP_TYPES = pd.Series({"E": 4421, "H": 755, "M": 1018})
POP_SCHWIDE = pd.Series({"No": 1072, "Yes": 5122})


@pytest.fixture(scope="module")
def rweights() -> pd.DataFrame:
    return pd.read_csv(FIX / "reference_weights.csv")


def clus1() -> est.SurveyDesign:
    return est.SurveyDesign(load("apiclus1"), weights="pw", psu="dnum", fpc="fpc")


def sim() -> est.SurveyDesign:
    return est.SurveyDesign(load("sipas_sim"), weights="w", strata="unit_id", fpc="N_h")


def check_weights(rweights, case, design, tol=1e-10):
    want = rweights[rweights.case == case].sort_values("row")["w"].to_numpy()
    assert len(want) == design.n
    assert rel(design.w, want).max() < tol


def test_poststratify_matches_r(ref, rweights):
    d = wt.poststratify(clus1(), "stype", POP_TYPES)
    check_weights(rweights, "clus1_ps", d)
    assert check_case(ref, "clus1_ps", d, ["awards", "stype"]) >= 10
    # vcov of svytotal on the post-stratified design
    _, v = est.total_covariance(d, d.data[["api00", "enroll"]])
    rv = ref[(ref.case == "clus1_ps") & (ref.estimator == "vcov_total")].set_index("variable")["estimate"]
    assert rel(v[0, 1], rv["api00,enroll"]) < RTOL and rel(v[1, 1], rv["enroll,enroll"]) < RTOL


def test_rake_matches_r_default_and_tight(ref, rweights):
    d = wt.rake(clus1(), {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE})
    check_weights(rweights, "clus1_rake", d)
    assert check_case(ref, "clus1_rake", d, "awards") >= 10
    _, v = est.total_covariance(d, d.data[["api00", "enroll"]])
    rv = ref[(ref.case == "clus1_rake") & (ref.estimator == "vcov_total")]["estimate"].iloc[0]
    assert rel(v[0, 1], rv) < RTOL
    d2 = wt.rake(clus1(), {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE}, maxit=100, epsilon=1e-10)
    check_weights(rweights, "clus1_rake_tight", d2)
    check_case(ref, "clus1_rake_tight", d2, None)
    # margins are met
    assert np.allclose(d2.data.assign(w=d2.w).groupby("stype")["w"].sum().to_numpy(), POP_TYPES.to_numpy())


def test_calibrate_linear_matches_r(ref, rweights):
    d = wt.calibrate(clus1(), margins={"stype": POP_TYPES}, totals={"api99": 3914069})
    check_weights(rweights, "clus1_cal", d)
    assert check_case(ref, "clus1_cal", d, "awards") >= 10
    # calibration after post-stratification: two steps chained, as R's postStrata list
    d2 = wt.calibrate(wt.poststratify(clus1(), "stype", POP_TYPES), totals={"api99": 3914069}, population=6194)
    check_weights(rweights, "clus1_ps_cal", d2)
    check_case(ref, "clus1_ps_cal", d2, None)
    # a calibrated total of a calibration variable is exact, with zero SE
    t = est.total(d, "api99")
    assert rel(t.estimate.iloc[0], 3914069) < 1e-12 and t.se.iloc[0] < 1e-6 * 3914069


def test_trim_matches_r(ref, rweights):
    d = wt.calibrate(clus1(), margins={"stype": POP_TYPES}, totals={"api99": 3914069})
    t = wt.trim(d, lower=30, upper=38)
    check_weights(rweights, "clus1_cal_trim", t)
    check_case(ref, "clus1_cal_trim", t, None)
    ts = wt.trim(d, lower=30, upper=38, strict=True)
    check_weights(rweights, "clus1_cal_trim_strict", ts)
    assert ts.w.max() <= 38 + 1e-9 and ts.w.min() >= 30 - 1e-9
    assert rel(ts.w.sum(), d.w.sum()) < 1e-12
    # within-group trimming keeps group totals
    g = wt.trim(d, upper=58, by="stype", strict=True)
    assert g.w.max() <= 58 + 1e-9 and d.w.max() > 58
    assert np.allclose(g.data.assign(w=g.w).groupby("stype").w.sum(), d.data.assign(w=d.w).groupby("stype").w.sum())
    with pytest.raises(ValueError, match="exceeds"):
        wt.trim(d, lower=40, upper=30)


def test_replicate_designs_are_recalibrated_like_r(ref):
    r = est.as_replicate(clus1(), "JK1")
    assert check_case(ref, "clus1_jk1_ps", wt.poststratify(r, "stype", POP_TYPES), "awards") >= 4
    assert check_case(ref, "clus1_jk1_rake", wt.rake(r, {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE}),
                      None) >= 4
    cal = wt.calibrate(r, margins={"stype": POP_TYPES}, totals={"api99": 3914069})
    assert check_case(ref, "clus1_jk1_cal", cal, "awards") >= 4


def test_sipas_shaped_poststratify_and_rake_match_r(ref, rweights):
    frame = pd.read_csv(FIX / "sipas_sim_frame.csv")
    d = wt.poststratify(sim(), ["unit_id", "field"], frame)
    check_weights(rweights, "sim_ps", d)
    assert check_case(ref, "sim_ps", d, "unit_id") >= 50
    margins = {"unit_id": frame.groupby("unit_id").N.sum(), "field": frame.groupby("field").N.sum()}
    r = wt.rake(sim(), margins, maxit=50, epsilon=1e-9)
    check_weights(rweights, "sim_rake", r)
    rr = ref[ref.case == "sim_rake"]
    items = [f"c0{j}" for j in range(1, 7)]
    sats = [f"s0{j}" for j in range(1, 7)]
    compare(est.mean(r, items, by="unit_id"), rr[(rr.variable.isin(items)) & (rr.domain != "")], "unit_id")
    compare(est.mean(r, sats, by="field"), rr[(rr.variable.isin(sats)) & (rr.domain != "")], "field")
    compare(est.mean(r, sats), rr[(rr.variable.isin(sats)) & (rr.domain == "")], None)


def test_calibration_errors_are_clear():
    d = clus1()
    with pytest.raises(ValueError, match="disagree"):
        wt.rake(d, {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE * 2})
    with pytest.raises(ValueError, match="no respondents"):
        wt.poststratify(d, "stype", pd.Series({"E": 4421, "H": 755, "M": 1018, "X": 5}))
    with pytest.raises(ValueError, match="no such cell"):
        wt.poststratify(d, "stype", pd.Series({"E": 4421, "H": 755}))
    with pytest.raises(ValueError, match="population size"):
        wt.calibrate(d, totals={"api99": 1.0})
    with pytest.raises(RuntimeWarning, match="did not converge"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            wt.rake(d, {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE}, maxit=1, epsilon=1e-12)
    with pytest.raises(ValueError, match="did not converge"):
        wt.rake(d, {"stype": POP_TYPES, "sch.wide": POP_SCHWIDE}, maxit=1, epsilon=1e-12, strict=True)
    # partial=True ignores a population cell without respondents (R partial=TRUE)
    p = wt.poststratify(d, "stype", pd.Series({"E": 4421, "H": 755, "M": 1018, "X": 5}), partial=True)
    assert rel(p.w.sum(), 6194) < 1e-12


def test_base_weights_and_nonresponse_adjustment():
    s = pd.DataFrame({"unit": ["a"] * 4 + ["b"] * 4, "mode": ["p", "p", "o", "o"] * 2,
                      "pi": [0.1, 0.1, 0.2, 0.2, 0.5, 0.5, 0.25, 0.25],
                      "resp": [True, False, True, True, True, True, False, False]})
    b = wt.base_weights(s, "pi")
    assert b.w_base.tolist() == [10, 10, 5, 5, 2, 2, 4, 4]
    with pytest.raises(ValueError, match="outside"):
        wt.base_weights(s.assign(pi=1.5), "pi")
    with pytest.raises(ValueError, match="no respondents"):
        wt.nonresponse_adjust(b, "resp", ["unit", "mode"])
    nr = wt.nonresponse_adjust(b, "resp", ["unit", "mode"], fallback="unit")
    # cell (a, p): 20 issued, 10 responding -> factor 2; (a, o): factor 1
    assert nr.w_nr.tolist()[:4] == [20, 0, 5, 5]
    # unit b: cell (b, o) has no respondent: its 8 units of weight go to b's respondents
    assert nr.w_nr.tolist()[4:] == [6, 6, 0, 0]
    # totals per unit are kept
    assert np.allclose(nr.groupby("unit").w_nr.sum(), b.groupby("unit").w_base.sum())


def test_diagnostics_kish():
    w = np.array([1.0, 1, 2, 4])
    assert wt.kish_deff(w) == pytest.approx(4 * 22 / 64)
    assert wt.effective_n(w) == pytest.approx(64 / 22)
    df = pd.DataFrame({"u": ["a", "a", "b", "b"], "w1": w, "w2": [1.0, 1, 1, 1]})
    dg = wt.weight_diagnostics(df, ["w1", "w2"], by="u")
    assert list(dg.columns[:2]) == ["u", "weight"] and len(dg) == 4
    row = dg[(dg.u == "b") & (dg.weight == "w1")].iloc[0]
    assert row.deff_kish == pytest.approx(2 * 20 / 36) and row.n_eff == pytest.approx(36 / 20)
    assert dg[dg.weight == "w2"].deff_kish.eq(1).all()


def _toy_year(seed=3):
    """A small synthetic year in the shape of data/demo: sample.csv, frame_counts.csv, responses."""
    rng = np.random.default_rng(seed)
    units = [f"D{i:02d}" for i in range(1, 7)]
    fields = ["justice", "labour_social", "land_environment", "other"]
    fc = pd.DataFrame([(u, f, c, int(rng.integers(50, 900))) for u in units for f in fields
                       for c in ("direct", "online_l3")], columns=["unit_id", "field", "channel", "N"])
    Nh = fc.groupby(["unit_id", "field"]).N.sum()
    rows = []
    fid = 300000
    for (u, f), N in Nh.items():
        n = 25
        for _ in range(n):
            fid += 1
            rows.append((str(fid), u, f, rng.choice(["postal", "one_stop", "online"], p=[.5, .35, .15]), N, n, n / N))
    smp = pd.DataFrame(rows, columns=["form_id", "unit_id", "field", "survey_mode", "N_h", "n_h", "incl_prob"])
    p_resp = smp.survey_mode.map({"postal": 0.55, "one_stop": 0.9, "online": 0.7})
    resp = smp[rng.random(len(smp)) < p_resp][["form_id", "unit_id", "field"]].copy()
    resp["channel"] = smp.set_index("form_id").loc[resp.form_id, "survey_mode"].to_numpy()
    for j in range(1, 5):
        resp[f"c{j:02d}"] = rng.integers(1, 6, len(resp)).astype(float)
    return resp.reset_index(drop=True), smp, fc


def test_annual_design_builds_calibrated_design():
    resp, smp, fc = _toy_year()
    d = wt.annual_design(resp, smp, fc)
    data = d.data
    assert {"w_base", "w_nr", "w_cal", "w_final", "stratum", "psu"} <= set(data.columns)
    assert d.weights == "w_final" and d.strata == "stratum" and d.fpc == "N_unit"
    # post-stratified weights reproduce the unit x field frame counts
    cal = data.groupby(["unit_id", "field"]).w_cal.sum()
    want = fc.groupby(["unit_id", "field"]).N.sum()
    assert np.allclose(cal.to_numpy(), want.loc[cal.index].to_numpy())
    # non-response adjustment keeps unit totals of the base weights
    smp_w = (1 / smp.incl_prob).groupby(smp.unit_id).sum()
    assert np.allclose(data.groupby("unit_id").w_nr.sum(), smp_w)
    # trimming keeps unit totals and caps at 3.5 x the unit median
    assert np.allclose(data.groupby("unit_id").w_final.sum(), data.groupby("unit_id").w_cal.sum())
    assert (data.w_final <= 3.5 * data.groupby("unit_id").w_cal.transform("median") + 1e-9).all()
    # same inputs -> same design
    d2 = wt.annual_design(resp, smp, fc)
    assert np.array_equal(d.w, d2.w)
    # calibration-aware SEs are no larger than the uncalibrated ones for the unit means here
    p = est.mean(d, ["c01"], by="unit_id")
    assert p.se.notna().all() and (p.se > 0).all()
    r = wt.annual_design(resp, smp, fc, calibration="rake", trim_ratio=None)
    assert np.allclose(r.data.groupby("unit_id").w_cal.sum(), want.groupby(level=0).sum())
    extra = pd.concat([resp, resp.iloc[[0]].assign(form_id="999999")])
    with pytest.raises(ValueError, match="not in the sample"):
        wt.annual_design(extra, smp, fc, unmatched="error")
    with pytest.warns(RuntimeWarning, match="left out"):
        dropped = wt.annual_design(extra, smp, fc)
    assert np.array_equal(dropped.w, d.w)


def test_annual_design_collapses_empty_field_cells():
    resp, smp, fc = _toy_year()
    drop = (resp.unit_id == "D01") & (resp.field == "justice")
    d = wt.annual_design(resp[~drop], smp, fc)
    assert (d.data.loc[d.data.unit_id == "D01", "w_cal"].sum()
            == pytest.approx(fc[fc.unit_id == "D01"].N.sum()))


@pytest.mark.simulation
def test_calibrated_se_simulation_coverage():
    """Post-stratified designs: 95 % intervals for a mean cover 93-97 % over 600 repeated samples.

    The 600 samples are stacked into one design, each sample a stratum (its own fpc N) post-stratified
    to its own cells (sample x cell): one estimator call by sample gives every sample's interval. This
    is the per-sample computation exactly (a domain that is a whole stratum has the stratum's variance
    and the normal quantile does not depend on the degrees of freedom); the first samples are checked
    against separate designs.
    """
    rng = np.random.default_rng(5)
    N, n, reps = 20000, 300, 600
    cell = rng.integers(0, 4, N)
    y = rng.normal(2 + cell, 1.0)
    popc = pd.Series(np.bincount(cell, minlength=4), index=range(4))
    idx = np.concatenate([rng.choice(N, n, replace=False) for _ in range(reps)])  # the same draws as one by one
    df = pd.DataFrame({"sample": np.repeat(np.arange(reps), n), "c": cell[idx], "y": y[idx], "N": N})
    pop = pd.Series(np.tile(popc.to_numpy(), reps),
                    index=pd.MultiIndex.from_product([range(reps), popc.index], names=["sample", "c"]))
    stacked = wt.poststratify(est.SurveyDesign(df, strata="sample", fpc="N"), ["sample", "c"], pop)
    m = est.mean(stacked, "y", by="sample").sort_values("sample")
    for s in (0, 1, reps - 1):
        one = est.mean(wt.poststratify(est.SurveyDesign(df[df["sample"] == s], fpc="N"), "c", popc), "y")
        row = m.loc[m["sample"] == s]
        np.testing.assert_allclose(row[["estimate", "se", "ci_low", "ci_high"]].to_numpy(),
                                   one[["estimate", "se", "ci_low", "ci_high"]].to_numpy(), rtol=1e-10)
    hits = ((m["ci_low"] <= y.mean()) & (y.mean() <= m["ci_high"])).sum()
    assert len(m) == reps
    assert 0.93 <= hits / reps <= 0.97, hits / reps


def test_chunked_variance_equals_single_pass(monkeypatch):
    """Domains processed in chunks (large designs) give the same SEs as one pass."""
    frame = pd.read_csv(FIX / "sipas_sim_frame.csv")
    margins = {"unit_id": frame.groupby("unit_id").N.sum(), "field": frame.groupby("field").N.sum()}
    d = wt.rake(sim(), margins, maxit=50, epsilon=1e-9)
    items = [f"c0{j}" for j in range(1, 7)]
    a = est.mean(d, items, by="unit_id")
    _, ca = est.total_covariance(d, d.data[items].fillna(0), by="unit_id")
    monkeypatch.setattr(est, "_CHUNK_BUDGET", 3000)
    b = est.mean(d, items, by="unit_id")
    _, cb = est.total_covariance(d, d.data[items].fillna(0), by="unit_id")
    assert np.allclose(a.se, b.se, rtol=1e-10) and np.allclose(ca, cb, rtol=1e-10)


def test_bootstrap_design_is_recalibrated_in_every_replicate():
    b = est.as_replicate(clus1(), "bootstrap", replicates=50, seed=1)
    p = wt.poststratify(b, "stype", POP_TYPES)
    p2 = p.assign(isE=(p.data.stype == "E").astype(float))
    data = p2.data
    t = est.total(p2, "isE")
    assert rel(t.estimate.iloc[0], 4421) < 1e-12 and t.se.iloc[0] < 1e-6
    assert np.allclose(np.bincount(data.stype.map({"E": 0, "H": 1, "M": 2}), weights=p.repweights[:, 7]),
                       POP_TYPES.to_numpy())


@pytest.mark.parametrize("calibration", ["poststratify", "rake", "none"])
def test_design_from_spec_rebuilds_the_annual_design(calibration):
    """The saved design (DesignSpec as JSON) rebuilds the same weights and calibration-aware SEs."""
    import json

    resp, smp, fc = _toy_year()
    built = wt.build_annual_design(resp, smp, fc, calibration=calibration, trim_ratio=2.0, min_cell=3)
    assert np.array_equal(built.design.w, wt.annual_design(resp, smp, fc, calibration=calibration,
                                                           trim_ratio=2.0, min_cell=3).w)
    spec = wt.DesignSpec.from_dict(json.loads(json.dumps(built.spec.to_dict())))
    assert spec == built.spec and spec.calibration == calibration
    stored = built.design.data.reset_index(drop=True)
    rebuilt = wt.design_from_spec(stored, spec)
    assert np.array_equal(rebuilt.w, built.design.w)
    assert len(rebuilt.calibration) == (0 if calibration == "none" else 1)
    a, b = est.mean(rebuilt, ["c01", "c02"], by="unit_id"), est.mean(built.design, ["c01", "c02"], by="unit_id")
    np.testing.assert_allclose(a[["estimate", "se"]].to_numpy(), b[["estimate", "se"]].to_numpy(), rtol=1e-12)
    # a table whose weights were changed does not pass as this design
    tampered = stored.assign(w_final=stored["w_final"] * 1.01)
    with pytest.raises(ValueError, match="do not belong"):
        wt.design_from_spec(tampered, spec)


def test_units_without_usable_forms_are_left_out_with_their_reason():
    resp, smp, fc = _toy_year()
    units = sorted(resp.unit_id.unique())
    items = [f"c{j:02d}" for j in range(1, 5)]
    blank = resp.copy()
    blank.loc[blank.unit_id == units[0], items] = np.nan
    blank = blank[blank.unit_id != units[1]]
    with pytest.raises(ValueError):
        wt.annual_design(blank, smp, fc)  # without items: a unit with no respondents stops the weighting
    built = wt.build_annual_design(blank, smp, fc, items=items)
    assert dict(built.spec.excluded_units) == {units[0]: "all_blank", units[1]: "no_responses"}
    assert set(built.design.data.unit_id) == set(units) - {units[0], units[1]}
    table = wt.units_without_usable_forms(blank, smp, items).set_index("unit_id")
    assert table.loc[units[1], "n_accepted"] == 0 and table.loc[units[0], "n_accepted"] > 0
