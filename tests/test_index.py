"""Tests of sipas_lib.index: indices with design-based SEs, aggregation rules, YoY, targets,
priorities, key drivers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import estimation as est
from sipas_lib import index as ix
from sipas_lib.instrument import load_instrument

FIX = Path(__file__).parent / "fixtures" / "index"
CRIT = [f"c{k:02d}" for k in range(1, 19)]
ELEMS = {"E1": CRIT[0:5], "E2": CRIT[5:9], "E3": CRIT[9:12], "E4": CRIT[12:14], "E5": CRIT[14:18]}


def make_small(seed: int = 606) -> pd.DataFrame:
    """SIPAS-shaped stratified sample behind tests/fixtures/index/sipas_small.csv (also read by
    tests/r/index_reference.R): 4 units, strata = unit x channel, fpc = N_h, weights N_h / n_h,
    18 criteria with 5 % item non-response and E5 (c15-c18) only for the ~35 % who gave feedback."""
    rng = np.random.default_rng(seed)
    rows = []
    units = ["D01", "D02", "D03", "S01"]
    for ui, u in enumerate(units):
        for ch, N in (("postal", 900 + 100 * ui), ("one_stop", 400 + 50 * ui)):
            n = 40 + 10 * ui if ch == "postal" else 25
            for _ in range(n):
                rows.append({"unit_id": u, "unit_type": "department" if u.startswith("S") else "district",
                             "channel": ch, "stratum": f"{u}_{ch}", "N_h": N, "n_h": n, "w": N / n})
    d = pd.DataFrame(rows)
    n = len(d)
    quality = d["unit_id"].map({"D01": 0.6, "D02": 0.2, "D03": -0.2, "S01": 0.4}).to_numpy()
    person = rng.normal(0, 0.8, n)
    for k in range(1, 19):
        lat = 3.9 + quality + person + rng.normal(0, 0.9, n) - 0.03 * k
        y = np.clip(np.rint(lat), 1, 5)
        y[rng.random(n) < 0.05] = np.nan
        d[f"c{k:02d}"] = y
    fb = rng.random(n) < 0.35
    for k in range(15, 19):
        d.loc[~fb, f"c{k:02d}"] = np.nan
    d["gave_feedback"] = fb
    d["gender"] = rng.integers(1, 3, n)
    d.insert(0, "form_id", [f"{300000 + i:06d}" for i in range(n)])
    return d


@pytest.fixture(scope="module")
def small():
    return pd.read_csv(FIX / "sipas_small.csv", dtype={"form_id": str})


def test_fixture_is_reproducible(small):
    pd.testing.assert_frame_equal(make_small().reset_index(drop=True), small, check_dtype=False)


@pytest.fixture(scope="module")
def design(small):
    return est.SurveyDesign(small, weights="w", strata="stratum", fpc="N_h")


@pytest.fixture(scope="module")
def inst():
    return load_instrument("hanoi_pl5_department")


@pytest.fixture(scope="module")
def ref():
    # Reference: tests/r/index_reference.R -- R 4.2.2, survey 4.1.1: svyratio(covmat=TRUE) per unit on
    # subset(design, unit_id == u) with linear contrasts for element (mean of criteria) and overall
    # (mean of elements); svyby(svyratio) for the pooled rule and the mean-score index.
    return pd.read_csv(FIX / "index_reference.csv")


@pytest.fixture(scope="module")
def res(design, inst):
    return ix.satisfaction_indices(design, inst)


# ------------------------------------------------------------------------------------------------
# parity with R survey
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["item", "element", "overall"])
def test_indices_match_r_survey(res, ref, level):
    r = ref[ref["level"] == level]
    m = res.merge(r, on=["unit_id", "level", "code"], suffixes=("", "_r"), validate="1:1")
    assert len(m) == len(r) > 0
    np.testing.assert_allclose(m["estimate"], m["estimate_r"], rtol=1e-10)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-8)


def test_pooled_rule_matches_r(design, inst, ref):
    out = ix.satisfaction_indices(design, inst, rule="pooled").query("level == 'overall'")
    r = ref[ref["level"] == "overall_pooled"]
    m = out.merge(r, on=["unit_id", "code"], suffixes=("", "_r"))
    assert len(m) == 4
    np.testing.assert_allclose(m["estimate"], m["estimate_r"], rtol=1e-10)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-8)


def test_mean_score_matches_r(design, inst, ref):
    out = ix.satisfaction_indices(design, inst, measure="mean_score")
    r = ref[ref["level"] == "item_mean_score"].assign(level="item")
    m = out.merge(r, on=["unit_id", "level", "code"], suffixes=("", "_r"))
    assert len(m) == 8
    np.testing.assert_allclose(m["estimate"], m["estimate_r"], rtol=1e-10)
    np.testing.assert_allclose(m["se"], m["se_r"], rtol=1e-8)
    assert out["measure"].eq("mean_score").all()
    assert out["estimate"].between(1, 5).all()


# ------------------------------------------------------------------------------------------------
# definitions (closed forms computed here by hand with pandas)
# ------------------------------------------------------------------------------------------------
def test_point_estimates_by_hand(small, res):
    u = small[small["unit_id"] == "D02"]
    got = res[res["unit_id"] == "D02"].set_index("code")["estimate"]
    crit = {}
    for c in CRIT:
        a = u[c].notna()
        crit[c] = (u.loc[a, "w"] * (u.loc[a, c] >= 4)).sum() / u.loc[a, "w"].sum()
        assert got[c] == pytest.approx(crit[c], rel=1e-12)
    elem = {e: np.mean([crit[c] for c in cs]) for e, cs in ELEMS.items()}
    for e, v in elem.items():
        assert got[e] == pytest.approx(v, rel=1e-12)
    assert got["SIPAS"] == pytest.approx(np.mean(list(elem.values())), rel=1e-12)
    n = res[(res["unit_id"] == "D02")].set_index("code")["n"]
    assert n["c15"] == u["c15"].notna().sum() and n["SIPAS"] == len(u)
    assert n["E5"] == u[ELEMS["E5"]].notna().any(axis=1).sum()


def test_unit_without_feedback_averages_four_elements(small, inst):
    d = small.copy()
    d.loc[d["unit_id"] == "D03", CRIT[14:]] = np.nan
    out = ix.satisfaction_indices(est.SurveyDesign(d, weights="w", strata="stratum", fpc="N_h"), inst)
    g = out[out["unit_id"] == "D03"].set_index("code")
    assert np.isnan(g.loc["E5", "estimate"]) and np.isnan(g.loc["E5", "se"])
    assert g.loc["SIPAS", "estimate"] == pytest.approx(g.loc[["E1", "E2", "E3", "E4"], "estimate"].mean())
    assert g.loc["SIPAS", "se"] > 0


def test_weighted_rule_and_registry(design, inst, res):
    rule = ix.AggregationRule("test_e1_double", "E1 counts twice", element_weights={"E1": 2})
    ix.register_rule(rule)
    out = ix.satisfaction_indices(design, inst, rule="test_e1_double")
    e = res[res["level"] == "element"].pivot(index="unit_id", columns="code", values="estimate")
    expect = (2 * e["E1"] + e[["E2", "E3", "E4", "E5"]].sum(axis=1)) / 6
    got = out[out["level"] == "overall"].set_index("unit_id")["estimate"]
    np.testing.assert_allclose(got.loc[expect.index], expect, rtol=1e-12)
    assert out["rule"].eq("test_e1_double").all()
    with pytest.raises(ValueError, match="unknown aggregation rule"):
        ix.satisfaction_indices(design, inst, rule="nope")
    with pytest.raises(ValueError, match="non-negative"):
        ix.AggregationRule("bad", "x", element_weights={"E1": -1})


def test_overall_covariance_and_city(design, inst, res):
    cov = ix.overall_covariance(design, inst)
    se = res[res["level"] == "overall"].set_index("unit_id")["se"]
    np.testing.assert_allclose(np.sqrt(np.diag(cov.loc[se.index, se.index])), se, rtol=1e-10)
    city = ix.city_indices(design, inst)
    assert set(city["scope"]) == {"department", "district", "all"}
    dep = city[(city["scope"] == "department") & (city["code"] == "SIPAS")].iloc[0]
    s01 = res[(res["unit_id"] == "S01") & (res["code"] == "SIPAS")].iloc[0]
    assert dep["estimate"] == pytest.approx(s01["estimate"]) and dep["se"] == pytest.approx(s01["se"])


def test_breakdowns_by_gender(small, design, inst):
    b = ix.breakdowns(design, inst, variables=["gender"])
    assert set(b["group"]) == {"1", "2"} and set(b["level"]) == {"element", "overall"}
    u = small[small["gender"] == 1]
    a = u["c01"].notna()
    p = (u.loc[a, "w"] * (u.loc[a, "c01"] >= 4)).sum() / u.loc[a, "w"].sum()
    full = ix.satisfaction_indices(design, inst, by="gender")
    assert full.query("gender == 1 and code == 'c01'")["estimate"].iloc[0] == pytest.approx(p)


def test_input_errors(small, inst):
    d = small.copy()
    d.loc[d.index[3], "c02"] = 7
    with pytest.raises(ValueError, match="c02"):
        ix.satisfaction_indices(est.SurveyDesign(d, weights="w", strata="stratum", fpc="N_h"), inst)
    with pytest.raises(ValueError, match="c18"):
        ix.satisfaction_indices(est.SurveyDesign(small.drop(columns="c18"), weights="w", strata="stratum", fpc="N_h"), inst)
    with pytest.raises(ValueError, match="measure"):
        ix.satisfaction_indices(est.SurveyDesign(small, weights="w"), inst, measure="median")


# ------------------------------------------------------------------------------------------------
# year on year, targets, priorities, drivers
# ------------------------------------------------------------------------------------------------
def test_year_on_year_closed_form():
    prev = pd.DataFrame({"unit_id": ["A", "B", "C"], "level": "overall", "code": "SIPAS",
                         "estimate": [0.80, 0.85, 0.90], "se": [0.01, 0.02, 0.01], "rank": [3, 2, 1]})
    cur = pd.DataFrame({"unit_id": ["A", "B", "D"], "level": "overall", "code": "SIPAS",
                        "estimate": [0.84, 0.86, 0.70], "se": [0.01, 0.02, 0.01], "rank": [2, 1, 3]})
    y = ix.year_on_year(cur, prev).set_index("unit_id")
    assert list(y.index) == ["A", "B"]
    assert y.loc["A", "change"] == pytest.approx(0.04)
    assert y.loc["A", "change_se"] == pytest.approx(np.sqrt(2) * 0.01)
    assert y.loc["A", "p_value"] == pytest.approx(2 * stats.norm.sf(0.04 / (np.sqrt(2) * 0.01)))
    assert bool(y.loc["A", "significant"]) and not bool(y.loc["B", "significant"])
    assert y.loc["A", "rank_change"] == 1 and y.loc["B", "rank_change"] == 1
    with pytest.raises(ValueError, match="duplicate"):
        ix.year_on_year(pd.concat([cur, cur]), prev)


def test_track_targets_defaults_from_plan_143():
    df = pd.DataFrame({"unit_id": ["A", "B", "C", "D"], "year": [2023, 2024, 2025, 2021],
                       "estimate": [0.90, 0.88, 0.91, 0.80], "ci_low": [0.87, 0.86, 0.88, 0.78],
                       "ci_high": [0.93, 0.90, 0.94, 0.82]})
    t = ix.track_targets(df).set_index("unit_id")
    assert t.loc["A", "target_low"] == 0.85 and t.loc["A", "status"] == "met"
    assert t.loc["B", "target_low"] == pytest.approx(0.875) and "interpolated" in t.loc["B", "target_source"]
    assert t.loc["C", "target_low"] == 0.90 and t.loc["C", "target_high"] == 0.95
    assert t.loc["C", "status"] == "not_distinguishable"
    assert t.loc["D", "status"] == "no_target"
    t2 = ix.track_targets(df.drop(columns=["year"]), year=2025, targets={2025: (0.92, 0.95)})
    assert (t2["target_low"] == 0.92).all()
    assert t2.set_index("unit_id").loc["D", "status"] == "not_met"
    with pytest.raises(ValueError, match="0.85, not 85"):
        ix.track_targets(df, targets={2025: 90})


def test_improvement_priorities(res, inst, design):
    city = ix.city_indices(design, inst)
    pr = ix.improvement_priorities(res, city[city["scope"] == "all"], instrument=inst, n_weakest=3)
    assert set(pr["code"]) <= set(CRIT)
    for u, g in pr.groupby("unit_id"):
        low3 = g.nsmallest(3, "estimate")["code"].tolist()
        assert sorted(g.loc[g["weakest"], "code"]) == sorted(low3)
        assert (g.loc[g["largest_gap"], "gap_to_city"] < 0).all()
    c01 = city[(city["scope"] == "all") & (city["code"] == "c01")]["estimate"].iloc[0]
    row = pr[(pr["unit_id"] == "D01") & (pr["code"] == "c01")].iloc[0]
    assert row["gap_to_city"] == pytest.approx(row["estimate"] - c01)


def test_key_drivers_find_the_driving_element(inst):
    # a global satisfaction question driven mostly by E2 (procedures): E2 must come out on top
    rng = np.random.default_rng(3)
    n = 3000
    lat = rng.normal(0, 1, (n, 4))
    d = {}
    for j, (el, codes) in enumerate(list(ELEMS.items())[:4]):
        for c in codes:
            d[c] = np.clip(np.rint(3.5 + 0.8 * lat[:, j] + rng.normal(0, 0.6, n)), 1, 5)
    d = pd.DataFrame(d)
    d[CRIT[14:]] = np.nan
    d["w"] = rng.uniform(0.5, 2, n)
    eta = -0.5 + 0.3 * lat[:, 0] + 2.0 * lat[:, 1] + 0.2 * lat[:, 2] + 0.2 * lat[:, 3]
    d["global_sat"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    perf = {"E1": 0.9, "E2": 0.7, "E3": 0.85, "E4": 0.88}
    kd = ix.key_drivers(d, inst, weights="w", outcome="global_sat", performance=perf).set_index("element")
    assert list(kd.index) == ["E1", "E2", "E3", "E4"]
    assert kd["importance"].idxmax() == "E2" and kd["importance"].sum() == pytest.approx(1.0)
    assert kd.loc["E2", "importance"] > 0.5 and kd.loc["E2", "p_value"] < 1e-6
    assert kd.loc["E2", "quadrant"] == "concentrate_here"
    # default outcome: each respondent's share of criteria rated 4-5 (derived importance)
    dflt = ix.key_drivers(d, inst, weights="w")
    assert dflt["n"].iloc[0] == n and (dflt["coef"] > 0).all()
    assert dflt["importance"].sum() == pytest.approx(1.0) and dflt["quadrant"].eq("").all()
    with pytest.raises(ValueError, match="share between 0 and 1"):
        ix.key_drivers(d.assign(bad=2.0), inst, outcome="bad")


def test_respondent_scores(small, inst):
    sc = ix.respondent_scores(small, inst)
    row = small.iloc[0]
    assert sc["E1"].iloc[0] == pytest.approx(row[CRIT[:5]].astype(float).mean())
    ans = row[CRIT].astype(float).dropna()
    assert sc["overall_share"].iloc[0] == pytest.approx((ans >= 4).mean())
    assert sc["overall_satisfied"].iloc[0] == float(ans.mean() >= 4)


# ------------------------------------------------------------------------------------------------
# one deff across the library (issue 10, defect 4): R survey's, SRS without replacement
# ------------------------------------------------------------------------------------------------
def test_item_deff_is_estimation_mean_deff(small, design, res):
    # The index's deff of a criterion is svymean(deff=TRUE) of the 0/1 item in the unit domain,
    # i.e. estimation.mean's deff on the same data (no R reference of deff is stored: derived here).
    data = small.copy()
    for c in CRIT:
        data[f"s_{c}"] = np.where(small[c].isna(), np.nan, (small[c] >= 4).astype(float))
    d2 = est.SurveyDesign(data, weights="w", strata="stratum", fpc="N_h")
    ref = est.mean(d2, [f"s_{c}" for c in CRIT], by="unit_id").assign(code=lambda t: t["variable"].str[2:])
    m = res[res["level"] == "item"].merge(ref, on=["unit_id", "code"], suffixes=("", "_est"), validate="1:1")
    assert len(m) == 4 * len(CRIT)
    np.testing.assert_allclose(m["deff"], m["deff_est"], rtol=1e-12)
    np.testing.assert_allclose(m["n_eff"], m["n_eff_est"], rtol=1e-12)


def test_pooled_overall_deff_is_estimation_ratio_deff(small, design, inst):
    data = small.copy()
    data["s_tot"] = (small[CRIT] >= 4).sum(axis=1).astype(float)
    data["a_tot"] = small[CRIT].notna().sum(axis=1).astype(float)
    d2 = est.SurveyDesign(data, weights="w", strata="stratum", fpc="N_h")
    ref = est.ratio(d2, "s_tot", "a_tot", by="unit_id")
    out = ix.satisfaction_indices(design, inst, rule="pooled").query("level == 'overall'")
    m = out.merge(ref, on="unit_id", suffixes=("", "_est"))
    assert len(m) == 4
    np.testing.assert_allclose(m["deff"], m["deff_est"], rtol=1e-12)
