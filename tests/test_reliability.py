"""Tests of sipas_lib.reliability.

Reference values come from ``tests/r/psych_reference.R`` (R 4.2.2, psych 2.2.9, lavaan 0.6-14,
GPArotation 2022.10-2), stored in ``tests/fixtures/reliability/psych_reference.json`` together
with the two data sets it used: psych's ``bfi`` items (``bfi_items.csv``) and a simulated
five-element SIPAS set with missing values (``sipas_sim.csv``). The R function behind each
reference is named in each test. Tests never call R.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import reliability as rl

FIX = Path(__file__).parent / "fixtures" / "reliability"
REF = json.loads((FIX / "psych_reference.json").read_text())
ALPHA_TOL = 1e-10      # issue 5: alpha family
POLY_TOL = 1e-4        # polychoric
FA_TOL = 1e-4          # omega and loadings
CFA_TOL = 1e-4         # CFA fit indices


@pytest.fixture(scope="module")
def bfi() -> pd.DataFrame:
    return pd.read_csv(FIX / "bfi_items.csv")


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    return pd.read_csv(FIX / "sipas_sim.csv")


@pytest.fixture(scope="module")
def feedback(sim) -> pd.DataFrame:
    return sim[sim["gave_feedback"]]


def _data(name, bfi, sim):
    if name.startswith("bfi"):
        return bfi
    if name.endswith("E5") or name.endswith("feedback"):
        return sim[sim["gave_feedback"]]
    return sim


ALPHA_KEYS = ["bfi_alpha_A", "bfi_alpha_C", "bfi_alpha_all", "sipas_alpha_E1", "sipas_alpha_E2",
              "sipas_alpha_E3", "sipas_alpha_E4", "sipas_alpha_E5", "sipas_alpha_all_feedback"]


# ----------------------------------------------------------------------------- alpha (psych::alpha)
@pytest.mark.parametrize("key", ALPHA_KEYS)
def test_alpha_matches_psych(key, bfi, sim):
    """psych::alpha(x)$total and $feldt (psych 2.2.9)."""
    ref = REF[key]
    out = rl.cronbach_alpha(_data(key, bfi, sim), ref["items"], n_boot=0).iloc[0]
    assert out["n"] == ref["n_rows"]
    for mine, theirs in [("raw_alpha", "raw_alpha"), ("std_alpha", "std_alpha"), ("g6", "G6"),
                         ("average_r", "average_r"), ("ase", "ase"), ("feldt_low", "feldt_lower"),
                         ("feldt_high", "feldt_upper")]:
        assert out[mine] == pytest.approx(ref[theirs], abs=ALPHA_TOL), mine


@pytest.mark.parametrize("key", ALPHA_KEYS)
def test_item_statistics_match_psych(key, bfi, sim):
    """psych::alpha(x)$item.stats (raw.r, std.r, r.cor, r.drop, mean, sd, n) and $alpha.drop."""
    ref = REF[key]
    out = rl.item_statistics(_data(key, bfi, sim), ref["items"])
    assert out["item"].tolist() == ref["items"]
    for mine, theirs in [("raw_r", "raw_r"), ("std_r", "std_r"), ("r_cor", "r_cor"), ("r_drop", "r_drop"),
                         ("mean", "mean"), ("sd", "sd"), ("alpha_if_deleted", "alpha_drop_raw"),
                         ("std_alpha_if_deleted", "alpha_drop_std"), ("n", "n")]:
        np.testing.assert_allclose(out[mine].to_numpy(float), ref[theirs], rtol=0, atol=ALPHA_TOL, err_msg=mine)


def test_item_statistics_shares_and_weak_flag():
    # share satisfied = share of answers 4-5 among answered; missing share over all rows (closed form)
    d = pd.DataFrame({"a": [5, 4, 3, 2, 1, np.nan, 4, 5, 3, 4, 2, 5],
                      "b": [4, 4, 3, 2, 2, 3, 5, 5, 3, 4, 1, 4],
                      "c": [5, 5, 2, 1, 1, 3, 4, 4, 3, 5, 2, 5],
                      "noise": [1, 5, 2, 4, 3, 1, 5, 2, 4, 1, 3, 5]})
    out = rl.item_statistics(d, ["a", "b", "c", "noise"]).set_index("item")
    assert out.loc["a", "share_satisfied"] == pytest.approx(6 / 11)
    assert out.loc["a", "missing_share"] == pytest.approx(1 / 12)
    assert out.loc["a", "n"] == 11
    assert out.loc["noise", "weak"] and not out.loc["b", "weak"]


def test_item_statistics_two_items_follow_psych_convention():
    d = pd.DataFrame({"a": [1, 2, 3, 4, 5, 3, 2, 4, 5, 1], "b": [2, 2, 3, 5, 4, 3, 1, 4, 5, 2]})
    out = rl.item_statistics(d, ["a", "b"])
    c = d.cov().to_numpy()
    # psych::alpha with two items: alpha.drop raw = C[1,2]/C[2,2] and C[1,2]/C[1,1]
    np.testing.assert_allclose(out["alpha_if_deleted"], [c[0, 1] / c[1, 1], c[0, 1] / c[0, 0]])


def test_alpha_closed_form_and_example():
    # raw alpha from the variance of the total: k/(k-1) (1 - sum var_i / var_total) (Cronbach 1951)
    rng = np.random.default_rng(3)
    X = rng.integers(1, 6, (200, 4)) + rng.integers(0, 3, (200, 1))
    d = pd.DataFrame(X, columns=list("abcd"))
    expect = 4 / 3 * (1 - d.var().sum() / d.sum(axis=1).var())
    assert rl.cronbach_alpha(d, list("abcd"), n_boot=0)["raw_alpha"].iloc[0] == pytest.approx(expect, abs=1e-12)


def test_pairwise_matrices_equal_pandas(sim):
    items = [f"c{i:02d}" for i in range(1, 19)]
    np.testing.assert_allclose(rl.pairwise_cov(sim, items).to_numpy(), sim[items].cov().to_numpy(), atol=1e-12)
    np.testing.assert_allclose(rl.pairwise_cor(sim, items).to_numpy(), sim[items].corr().to_numpy(), atol=1e-12)


def test_weights_are_scale_free_and_act_like_duplicated_rows(sim):
    items = ["c01", "c02", "c03", "c04", "c05"]
    d = sim.head(300).copy()
    d["w"] = np.tile([1.0, 2.0, 3.0], 100)
    d["w7"] = d["w"] * 7.3
    # reliability weights: multiplying every weight by a constant changes nothing
    pd.testing.assert_frame_equal(rl.cronbach_alpha(d, items, weights="w", n_boot=0),
                                  rl.cronbach_alpha(d, items, weights="w7", n_boot=0), atol=1e-12)
    pd.testing.assert_frame_equal(rl.item_statistics(d, items, weights="w"),
                                  rl.item_statistics(d, items, weights="w7"), atol=1e-12)
    # on complete rows, integer weights give the alpha of the data with rows duplicated
    c = d.dropna(subset=items)
    dup = c.loc[c.index.repeat(c["w"].astype(int))]
    a_w = rl.cronbach_alpha(c, items, weights="w", n_boot=0).iloc[0]
    a_d = rl.cronbach_alpha(dup, items, n_boot=0).iloc[0]
    for col in ("raw_alpha", "std_alpha", "g6"):
        assert a_w[col] == pytest.approx(a_d[col], abs=1e-12)
    s_w = rl.item_statistics(c, items, weights="w")
    s_d = rl.item_statistics(dup, items)
    for col in ("mean", "share_satisfied", "raw_r", "std_r", "r_drop", "alpha_if_deleted"):
        np.testing.assert_allclose(s_w[col], s_d[col], atol=1e-12, err_msg=col)
    dup_all = d.loc[d.index.repeat(d["w"].astype(int))]
    np.testing.assert_allclose(rl.polychoric(d, items, weights="w").to_numpy(),
                               rl.polychoric(dup_all, items).to_numpy(), atol=1e-10)


def test_bootstrap_equals_explicit_resampling_and_is_seeded():
    rng = np.random.default_rng(11)
    X = rng.integers(1, 6, (250, 4)).astype(float) + rng.integers(0, 2, (250, 1))
    X[rng.random(X.shape) < 0.08] = np.nan
    w = rng.uniform(0.5, 2.0, 250)
    for weights in (None, w):
        fast = rl._boot_alpha(X, weights, 25, seed=7)
        rng2 = np.random.default_rng(7)
        counts = rl._boot_counts(rng2, 250, 25)
        slow = []
        for c in counts:       # resample rows and compute psych's alpha on them
            idx = np.repeat(np.arange(250), c.astype(int))
            C = rl._pairwise(X[idx], None if weights is None else weights[idx], "cov")
            slow.append((1 - np.trace(C) / C.sum()) * 4 / 3)
        np.testing.assert_allclose(fast, slow, atol=1e-12)
    d = pd.DataFrame(X, columns=list("abcd"))
    a1 = rl.cronbach_alpha(d, list("abcd"), n_boot=200, seed=5)
    a2 = rl.cronbach_alpha(d, list("abcd"), n_boot=200, seed=5)
    pd.testing.assert_frame_equal(a1, a2)
    row = a1.iloc[0]
    assert row["boot_low"] < row["raw_alpha"] < row["boot_high"]
    assert rl.cronbach_alpha(d, list("abcd"), n_boot=200, seed=6)["boot_low"].iloc[0] != row["boot_low"]


def test_several_scales_share_resamples_and_equal_separate_calls(sim):
    d = sim.dropna(subset=[f"c{i:02d}" for i in range(1, 15)]).copy()
    d["w"] = np.linspace(0.5, 2.0, len(d))
    scales = {"E1": ["c01", "c02", "c03", "c04", "c05"], "E3": ["c10", "c11", "c12"], "E4": ["c13", "c14"]}
    both = rl.cronbach_alpha(d, scales, weights="w", n_boot=100, seed=3).set_index("scale")
    for name, its in scales.items():   # every row answers every scale: identical to one call per scale
        one = rl.cronbach_alpha(d, its, weights="w", n_boot=100, seed=3, label=name).set_index("scale")
        pd.testing.assert_frame_equal(both.loc[[name]], one, atol=1e-12)
    # with missing answers the point estimates and Feldt intervals still equal separate calls
    mixed = rl.cronbach_alpha(sim, scales, n_boot=0).set_index("scale")
    for name, its in scales.items():
        one = rl.cronbach_alpha(sim, its, n_boot=0).iloc[0]
        assert mixed.loc[name, "raw_alpha"] == pytest.approx(one["raw_alpha"], abs=1e-14)
        assert mixed.loc[name, "feldt_low"] == pytest.approx(one["feldt_low"], abs=1e-14)


def test_bootstrap_interval_covers_like_feldt(sim):
    # complete data: the bootstrap and Feldt intervals should be of similar width
    d = sim[["c10", "c11", "c12"]].dropna()
    row = rl.cronbach_alpha(d, ["c10", "c11", "c12"], n_boot=400, seed=1).iloc[0]
    w_boot, w_feldt = row["boot_high"] - row["boot_low"], row["feldt_high"] - row["feldt_low"]
    assert 0.6 < w_boot / w_feldt < 1.6


# ----------------------------------------------------------------------------- polychoric
def test_bvn_cdf_closed_forms():
    r = np.array([-0.95, -0.8, -0.5, -0.1, 0.0, 0.2, 0.6, 0.8, 0.93, 0.99])
    # P(X<=0, Y<=0) = 1/4 + asin(r)/(2 pi) (Sheppard 1899)
    np.testing.assert_allclose(rl.bvn_cdf(0.0, 0.0, r), 0.25 + np.arcsin(r) / (2 * np.pi), atol=1e-14)
    h, k = np.array([-1.3, 0.4, 2.0]), np.array([0.7, -0.2, 1.1])
    np.testing.assert_allclose(rl.bvn_cdf(h, k, 0.0), stats.norm.cdf(h) * stats.norm.cdf(k), atol=1e-15)
    for rr in (-0.85, -0.4, 0.1, 0.5, 0.8, 0.95):
        mvn = stats.multivariate_normal(mean=[0, 0], cov=[[1, rr], [rr, 1]])
        for hh, kk in zip(h, k):
            assert rl.bvn_cdf(hh, kk, rr) == pytest.approx(mvn.cdf([hh, kk]), abs=1e-6)
    assert rl.bvn_cdf(np.inf, 0.3, 0.5) == pytest.approx(stats.norm.cdf(0.3))
    assert rl.bvn_cdf(-np.inf, 0.3, 0.5) == 0.0


def test_brent_matches_known_minimum():
    # R: optimize(function(x) (x - 0.3)^2 + 1, c(-1, 1))$minimum = 0.3 (within tol)
    x = rl._brent_fmin(lambda x, act: (x - np.array([0.3, -0.7])) ** 2 + 1, -np.ones(2), np.ones(2), 1e-10)
    np.testing.assert_allclose(x, [0.3, -0.7], atol=1e-8)


@pytest.mark.parametrize("key", ["bfi_polychoric", "sipas_polychoric", "sipas_polychoric_E1",
                                 "sipas_polychoric_local"])
def test_polychoric_matches_psych(key, bfi, sim):
    """psych::polychoric(x)$rho (global thresholds, pairwise missing values; "local": an item with
    fewer categories, so psych switches to per-pair thresholds with the 0.5 zero-cell correction)."""
    ref = REF[key]
    d = bfi if key.startswith("bfi") else sim
    if key.endswith("local"):
        d = sim.assign(c01=sim["c01"].where(sim["c01"] != 5, 4))
    out = rl.polychoric(d, ref["items"])
    np.testing.assert_allclose(out.to_numpy(), np.array(ref["rho"]), atol=POLY_TOL / 100)


@pytest.mark.parametrize("key", ["bfi_polychoric", "sipas_polychoric"])
def test_polychoric_thresholds_match_psych(key, bfi, sim):
    """psych::polychoric(x)$tau."""
    ref = REF[key]
    d = bfi if key.startswith("bfi") else sim
    np.testing.assert_allclose(rl.polychoric_thresholds(d, ref["items"]).to_numpy(), np.array(ref["tau"]),
                               atol=1e-12)


def test_polychoric_recovers_latent_correlation():
    rng = np.random.default_rng(8)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.6, 0.3], [0.6, 1, 0.45], [0.3, 0.45, 1]], 20000)
    d = pd.DataFrame(np.digitize(z, [-1.5, -0.5, 0.4, 1.2]) + 1.0, columns=list("abc"))
    R = rl.polychoric(d, list("abc")).to_numpy()
    np.testing.assert_allclose(R[np.triu_indices(3, 1)], [0.6, 0.3, 0.45], atol=0.03)


def test_polychoric_local_thresholds_when_categories_differ():
    rng = np.random.default_rng(2)
    z = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], 3000)
    d = pd.DataFrame({"a": np.digitize(z[:, 0], [-1.5, -0.5, 0.4, 1.2]) + 1.0,
                      "b": np.digitize(z[:, 1], [-0.5, 0.4, 1.2]) + 2.0})   # b never answers 1
    R = rl.polychoric(d, ["a", "b"])
    assert R.iloc[0, 1] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("key,elem", [("sipas_polychoric_E1", None)])
def test_ordinal_alpha_is_alpha_of_polychoric_matrix(key, elem, sim):
    """Ordinal alpha = psych::alpha(polychoric(x)$rho)$total$raw_alpha = k/(k-1)(1 - k/sum(R))."""
    ref = REF[key]
    R = np.array(ref["rho"])
    k = R.shape[0]
    expect = k / (k - 1) * (1 - k / R.sum())
    out = rl.ordinal_alpha(sim, ref["items"]).iloc[0]
    assert out["ordinal_alpha"] == pytest.approx(expect, abs=1e-6)
    assert out["feldt_low"] < out["ordinal_alpha"] < out["feldt_high"]
    boot = rl.ordinal_alpha(sim.head(300), ref["items"], n_boot=20, seed=3).iloc[0]
    assert boot["boot_low"] < boot["boot_high"]


# ----------------------------------------------------------------------------- KMO, Bartlett
@pytest.mark.parametrize("prefix", ["bfi", "sipas"])
def test_kmo_matches_psych(prefix, bfi, feedback):
    """psych::KMO(x)$MSA and $MSAi."""
    ref = REF[f"{prefix}_kmo"]
    d = bfi if prefix == "bfi" else feedback
    out = rl.kmo(d, ref["items"])
    np.testing.assert_allclose(out["msa"].to_numpy(), ref["MSAi"] + [ref["MSA"]], atol=1e-10)
    assert out["item"].iloc[-1] == "overall"


@pytest.mark.parametrize("prefix", ["bfi", "sipas"])
def test_bartlett_matches_psych(prefix, bfi, feedback):
    """psych::cortest.bartlett(cor(x, use = "pairwise"), n = nrow(x))."""
    ref = REF[f"{prefix}_bartlett"]
    d = bfi if prefix == "bfi" else feedback
    out = rl.bartlett_sphericity(d, REF[f"{prefix}_kmo"]["items"]).iloc[0]
    assert out["n"] == ref["n"]
    assert out["chisq"] == pytest.approx(ref["chisq"], rel=1e-10)
    assert out["df"] == ref["df"]
    assert out["p_value"] == pytest.approx(ref["p_value"], abs=1e-12)


# ----------------------------------------------------------------------------- EFA (psych::fa)
@pytest.mark.parametrize("key", ["bfi_fa_minres_oblimin", "bfi_fa_ml_varimax", "bfi_fa_minres_varimax",
                                 "sipas_fa_minres_oblimin", "sipas_fa_ml_oblimin"])
def test_efa_matches_psych(key, bfi, feedback):
    """psych::fa(x, nfactors, fm, rotate): loadings (sorted and signed as psych), Phi, h2, values."""
    ref = REF[key]
    d = bfi if key.startswith("bfi") else feedback
    out = rl.efa(d, ref["items"], ref["nfactors"], ref["fm"], ref["rotate"])
    nf = ref["nfactors"]
    L = out.loadings.iloc[:, 1:1 + nf].to_numpy()
    np.testing.assert_allclose(L, np.array(ref["loadings"]), atol=FA_TOL)
    np.testing.assert_allclose(out.loadings["communality"], ref["communality"], atol=FA_TOL)
    np.testing.assert_allclose(out.loadings["uniqueness"], ref["uniquenesses"], atol=FA_TOL)
    np.testing.assert_allclose(out.eigenvalues, ref["values"], atol=FA_TOL)
    if ref.get("Phi"):
        np.testing.assert_allclose(out.phi.to_numpy(), np.array(ref["Phi"]), atol=FA_TOL)
    else:
        assert out.phi is None
    long = out.long()
    assert len(long) == len(ref["items"]) * nf and set(long.columns) == {"item", "factor", "loading"}


def test_efa_on_polychoric_runs(feedback):
    out = rl.efa(feedback, [f"c{i:02d}" for i in range(1, 19)], 5, corr="polychoric")
    assert out.loadings.shape == (18, 8)
    assert np.all(out.loadings["communality"].between(0, 1.01))


# ----------------------------------------------------------------------------- omega (psych::omega)
@pytest.mark.parametrize("key", ["bfi_omega", "sipas_omega"])
def test_omega_matches_psych(key, bfi, feedback):
    """psych::omega(x, nfactors): omega_h, omega.tot, omega.lim, alpha, G6 and the g loadings."""
    ref = REF[key]
    d = bfi if key.startswith("bfi") else feedback
    out = rl.omega(d, ref["items"], ref["nfactors"]).iloc[0]
    for mine, theirs in [("omega_h", "omega_h"), ("omega_total", "omega_tot"), ("omega_lim", "omega_lim"),
                         ("alpha", "alpha"), ("g6", "G6")]:
        assert out[mine] == pytest.approx(ref[theirs], abs=FA_TOL), mine
    R = rl.pairwise_cor(d, ref["items"])
    sl = rl.schmid_leiman(R, ref["nfactors"])
    # psych flips items with negative general loadings in omega's output
    np.testing.assert_allclose(np.abs(sl["g"]), np.abs(ref["g_loadings"]), atol=FA_TOL)
    np.testing.assert_allclose(sl["h2"], ref["h2"], atol=FA_TOL)


def test_omega_single_factor_is_mcdonald_omega_total(sim):
    items = ["c01", "c02", "c03", "c04", "c05"]
    out = rl.omega(sim, items, n_factors=1).iloc[0]
    L = rl.efa(sim, items, 1).loadings["MR1"].to_numpy()
    expect = L.sum() ** 2 / (L.sum() ** 2 + (1 - L ** 2).sum())   # McDonald (1999) with unit variances
    assert out["omega_total"] == pytest.approx(expect, abs=1e-3)
    assert out["omega_h"] == pytest.approx(out["omega_total"], abs=1e-3)


def test_omega_two_factors_equal_option(sim):
    out = rl.omega(sim, [f"c{i:02d}" for i in range(1, 10)], n_factors=2).iloc[0]
    assert 0 < out["omega_h"] <= out["omega_total"] <= 1


# ----------------------------------------------------------------------------- parallel analysis
@pytest.mark.parametrize("prefix", ["bfi", "sipas"])
def test_parallel_analysis_observed_values_match_psych(prefix, bfi, feedback):
    """psych::fa.parallel(x)$pc.values and $fa.values (the deterministic part)."""
    ref = REF[f"{prefix}_parallel"]
    d = bfi if prefix == "bfi" else feedback
    out = rl.parallel_analysis(d, REF[f"{prefix}_kmo"]["items"], n_iter=5, seed=1)
    np.testing.assert_allclose(out["pc_observed"], ref["pc_values"], atol=1e-10)
    np.testing.assert_allclose(out["fa_observed"], ref["fa_values"], atol=FA_TOL)


def test_parallel_analysis_seeded_and_sensible(feedback):
    items = [f"c{i:02d}" for i in range(1, 19)]
    a = rl.parallel_analysis(feedback, items, n_iter=6, seed=4)
    b = rl.parallel_analysis(feedback, items, n_iter=6, seed=4)
    pd.testing.assert_frame_equal(a, b)
    # random-data eigenvalues of a correlation matrix average about 1 and decrease
    assert a["pc_sim_mean"].mean() == pytest.approx(1.0, abs=1e-9)     # trace of a correlation matrix / p
    assert np.all(np.diff(a["pc_sim_mean"]) < 0)
    assert 1 <= a["retain_fa"].sum() <= 6
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.integers(1, 6, (400, 8)).astype(float), columns=list("abcdefgh"))
    pa = rl.parallel_analysis(noise, list("abcdefgh"), n_iter=25, seed=1)
    assert (pa["pc_observed"] > pa["pc_sim_q"]).sum() <= 1      # noise: nothing beyond the 95th percentile


# ----------------------------------------------------------------------------- CFA (lavaan)
BFI_MODEL = """A =~ A1 + A2 + A3 + A4 + A5
C =~ C1 + C2 + C3 + C4 + C5
E =~ E1 + E2 + E3 + E4 + E5
N =~ N1 + N2 + N3 + N4 + N5
O =~ O1 + O2 + O3 + O4 + O5"""

FIT_MAP = [("npar", "npar"), ("chisq", "chisq"), ("df", "df"), ("pvalue", "pvalue"),
           ("baseline_chisq", "baseline.chisq"), ("baseline_df", "baseline.df"), ("cfi", "cfi"), ("tli", "tli"),
           ("rmsea", "rmsea"), ("rmsea_ci_low", "rmsea.ci.lower"), ("rmsea_ci_high", "rmsea.ci.upper"),
           ("rmsea_pvalue", "rmsea.pvalue"), ("srmr", "srmr")]


@pytest.mark.parametrize("key", ["bfi_cfa", "sipas_cfa"])
def test_cfa_matches_lavaan(key, bfi, sim):
    """lavaan::cfa(model, data) (ML, listwise) and fitMeasures / standardizedSolution."""
    ref = REF[key]
    if key == "bfi_cfa":
        out = rl.cfa(bfi, BFI_MODEL)
    else:   # the five-element model on the full data: E5 forces the respondents who gave feedback
        out = rl.cfa(sim, ref["model"])
    fit = out.fit.iloc[0]
    assert fit["n"] == ref["nobs"]
    assert fit["converged"]
    for mine, theirs in FIT_MAP:
        tol = CFA_TOL * max(1.0, abs(ref["fit"][theirs])) if mine in ("chisq", "baseline_chisq") else CFA_TOL
        assert fit[mine] == pytest.approx(ref["fit"][theirs], abs=tol), mine
    assert fit["aic"] == pytest.approx(ref["fit"]["aic"], rel=1e-8)
    assert fit["bic"] == pytest.approx(ref["fit"]["bic"], rel=1e-8)
    std = pd.DataFrame(ref["std_loadings"])
    np.testing.assert_allclose(out.loadings["std"], std["est"], atol=FA_TOL)
    raw = pd.DataFrame(ref["raw_loadings"])
    np.testing.assert_allclose(out.loadings["est"], raw["est"], atol=FA_TOL)
    rel = out.reliability.set_index("factor")
    for f, v in ref["cr"].items():
        assert rel.loc[f, "cr"] == pytest.approx(v, abs=FA_TOL)
        assert rel.loc[f, "ave"] == pytest.approx(ref["ave"][f], abs=FA_TOL)


def test_cfa_accepts_dict_model_and_uses_feedback_rows(sim):
    model = {"E1": ["c01", "c02", "c03", "c04", "c05"], "E5": ["c15", "c16", "c17", "c18"]}
    out = rl.cfa(sim, model)
    fb = sim[sim["gave_feedback"]]
    assert out.fit["n"].iloc[0] == len(fb[sum(model.values(), [])].dropna())
    # without section V items every complete row counts
    out1 = rl.cfa(sim, {"E1": model["E1"], "E2": ["c06", "c07", "c08", "c09"]})
    assert out1.fit["n"].iloc[0] == len(sim[model["E1"] + ["c06", "c07", "c08", "c09"]].dropna())
    assert out.phi.shape == (2, 2) and out.phi.iloc[0, 0] == pytest.approx(1.0)


def _ml_problem(df: pd.DataFrame, model: dict):
    """The ML discrepancy of ``model`` on the complete rows of ``df`` (as :func:`rl.cfa` builds it)."""
    from sipas_lib.reliability.cfa import _MLProblem

    X = df[[c for its in model.values() for c in its]].dropna().to_numpy(float)
    S = np.cov(X, rowvar=False, bias=True)
    return _MLProblem(S, np.linalg.slogdet(S)[1], np.repeat(np.arange(len(model)), [len(v) for v in model.values()]))


def test_cfa_observed_information_is_the_derivative_of_the_gradient(feedback):
    """Closed form of the observed Hessian against central differences of the analytic gradient, at the
    start values (far from the minimum, where the second-derivative term tr(G d2Sigma) matters)."""
    problem = _ml_problem(feedback, rl.element_model())
    th = problem.start()
    h = 1e-6
    numeric = np.array([(problem.objective(th + h * e)[1] - problem.objective(th - h * e)[1]) / (2 * h)
                        for e in np.eye(len(th))])
    observed = problem.information(th, observed=True)
    scale = np.max(np.abs(numeric))
    assert np.max(np.abs(observed - numeric)) < 1e-6 * scale
    assert np.max(np.abs(problem.information(th) - numeric)) > 1e-2 * scale   # expected != observed here


def test_cfa_of_a_badly_fitting_model_reaches_the_minimum_in_few_steps(feedback):
    """22 complete respondents, 46 parameters, chi2/N = 11: Fisher scoring alone converges linearly and then
    stalls with the gradient ~1e-8 (11,336 evaluations of F in 500 iterations); the Newton finish with
    the observed Hessian reaches the minimum (gradient ~1e-14) in about 300."""
    from scipy import optimize

    from sipas_lib.reliability.cfa import _fisher_scoring

    model = rl.element_model()
    bad = feedback.sample(25, random_state=0)
    problem = _ml_problem(bad, model)
    objective, calls = problem.objective, []
    problem.objective = lambda th: (calls.append(1), objective(th))[1]
    th, converged = _fisher_scoring(problem, problem.start())
    f, g = objective(th)
    assert converged and np.max(np.abs(g)) < 1e-9
    assert len(calls) < 1000
    # the same minimum as BFGS (analytic gradient) from the same start, which stops at gradient ~4e-8
    ref = optimize.minimize(objective, problem.start(), jac=True, method="BFGS", options={"gtol": 1e-10})
    assert f <= ref.fun + 1e-12 and f == pytest.approx(ref.fun, abs=1e-12)
    np.testing.assert_allclose(th, ref.x, atol=1e-6)
    fit = rl.cfa(bad, model).fit.iloc[0]
    assert fit["converged"] and fit["chisq"] == pytest.approx(fit["n"] * f, rel=1e-12)
    assert fit["chisq"] / fit["n"] > 10          # the model does fit badly


def test_parse_model_and_element_model():
    assert rl.parse_model("F =~ a + b + c  # comment\nG =~ d+e") == {"F": ["a", "b", "c"], "G": ["d", "e"]}
    with pytest.raises(ValueError, match="cannot read model line"):
        rl.parse_model("F ~ a + b")
    with pytest.raises(ValueError, match="loads on both"):
        rl.parse_model({"F": ["a", "b"], "G": ["b", "c"]})
    with pytest.raises(ValueError, match="at least 2"):
        rl.parse_model({"F": ["a"]})
    m = rl.element_model()
    assert list(m) == ["E1", "E2", "E3", "E4", "E5"]
    assert m["E5"] == ["c15", "c16", "c17", "c18"] and sum(len(v) for v in m.values()) == 18


# ----------------------------------------------------------------------------- missing-data policy
def test_analysis_rows_structural_missingness(sim):
    assert len(rl.analysis_rows(sim, ["c15", "c16"])) == int(sim["gave_feedback"].sum())
    assert len(rl.analysis_rows(sim, ["c01", "c02"])) == len(sim)
    with pytest.raises(ValueError, match="gave_feedback"):
        rl.analysis_rows(sim.drop(columns="gave_feedback"), ["c15"])


def test_rows_without_any_answer_are_dropped(sim):
    e5 = ["c15", "c16", "c17", "c18"]
    a_all = rl.cronbach_alpha(sim, e5, n_boot=0).iloc[0]
    a_fb = rl.cronbach_alpha(sim[sim["gave_feedback"]], e5, n_boot=0).iloc[0]
    assert a_all["raw_alpha"] == pytest.approx(a_fb["raw_alpha"], abs=1e-12)
    assert a_all["n"] <= a_fb["n"]


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors(sim):
    with pytest.raises(ValueError, match="at least 2 items"):
        rl.cronbach_alpha(sim, ["c01"])
    d = sim.copy()
    d["const"] = 3.0
    with pytest.raises(ValueError, match="constant item.*const"):
        rl.cronbach_alpha(d, ["c01", "const"])
    with pytest.raises(ValueError, match="at least 10 answers"):
        rl.cronbach_alpha(sim.head(5), ["c01", "c02"])
    d["text"] = "tốt"
    with pytest.raises(ValueError, match="'text' is not numeric"):
        rl.item_statistics(d, ["c01", "text"])
    with pytest.raises(ValueError, match="not in the data: zz"):
        rl.kmo(sim, ["c01", "zz"])
    with pytest.raises(ValueError, match="listed twice"):
        rl.omega(sim, ["c01", "c01", "c02"])
    d["half"] = sim["c01"] / 2
    with pytest.raises(ValueError, match="whole-number"):
        rl.polychoric(d, ["c01", "half"])
    with pytest.raises(ValueError, match="complete rows"):
        rl.cfa(sim.head(25), {"E1": ["c01", "c02", "c03", "c04", "c05"],
                              "E2": ["c06", "c07", "c08", "c09"], "E5": ["c15", "c16", "c17", "c18"]})
    with pytest.raises(ValueError, match="too many"):
        rl.efa(sim, ["c01", "c02", "c03"], 3)
    with pytest.raises(ValueError, match="weight column"):
        rl.cronbach_alpha(sim, ["c01", "c02"], weights="nope")


# ----------------------------------------------------------------------------- verdicts
def test_verdicts_follow_stated_thresholds():
    assert rl.alpha_verdict(0.85).startswith("good")
    assert rl.alpha_verdict(0.72).startswith("acceptable")
    assert rl.alpha_verdict(0.65).startswith("questionable")
    assert rl.alpha_verdict(0.4).startswith("poor")
    assert rl.alpha_verdict(0.85, lang="vi").startswith("tốt")
    good = {"cfi": 0.97, "tli": 0.96, "rmsea": 0.04, "srmr": 0.03}
    ok = {"cfi": 0.93, "tli": 0.92, "rmsea": 0.07, "srmr": 0.06}
    bad = {"cfi": 0.78, "tli": 0.75, "rmsea": 0.078, "srmr": 0.075}
    assert "fits the data well" in rl.cfa_verdict(good)
    assert "acceptably" in rl.cfa_verdict(ok)
    assert "does not fit" in rl.cfa_verdict(bad)
    assert "0,970" in rl.cfa_verdict(good, lang="vi")
    # numpy scalars from a result table (not Python bools) must count the same
    row = pd.DataFrame([{k: np.float64(v) for k, v in good.items()}])
    assert "fits the data well" in rl.cfa_verdict(row)
    assert "not supported" in rl.element_verdict(0.71, cr=0.69, ave=0.53)
    assert "supported (CR" in rl.element_verdict(0.85, cr=0.86, ave=0.56)
    assert "not assessed" in rl.element_verdict(0.85)


# ----------------------------------------------------------------------------- stage tables
def test_stage_tables_schema_policy_and_verdicts(sim):
    model = rl.element_model()
    out = rl.stage_tables(sim, model, by="unit_type", n_boot=50, seed=1, lang="en")
    a, it, c = out["alpha"], out["items"], out["cfa"]
    assert set(a["unit_type"]) == {"all", "department", "district"}
    assert set(a["scale"]) == {"E1", "E2", "E3", "E4", "E5", "overall"}
    # E5 and the whole questionnaire are analysed on respondents who gave feedback
    row = a.set_index(["unit_type", "scale"])
    assert row.loc[("all", "E5"), "population"] == "gave_feedback"
    assert row.loc[("all", "E1"), "population"] == "all"
    assert row.loc[("all", "E5"), "n"] == int(sim["gave_feedback"].sum())
    ref = REF["sipas_alpha_E5"]
    assert row.loc[("all", "E5"), "raw_alpha"] == pytest.approx(ref["raw_alpha"], abs=ALPHA_TOL)
    assert row.loc[("all", "overall"), "omega_h"] <= row.loc[("all", "overall"), "omega_total"]
    assert a["verdict"].str.len().gt(0).all() and (a["verdict"] == a["verdict_en"]).all()
    assert len(it) == 3 * (18 + 18) and it["weak"].dtype == bool
    m = c.loc[(c["level"] == "model") & (c["unit_type"] == "all")].iloc[0]
    assert m["cfi"] == pytest.approx(REF["sipas_cfa"]["fit"]["cfi"], abs=CFA_TOL)
    assert m["verdict"].startswith("The model fits the data well")
    assert (c.loc[c["level"] == "element", "code"].value_counts() == 3).all()


def test_a_single_unit_type_has_the_results_of_all_respondents(sim):
    """One unit type (the national survey's provinces): its group is every respondent, so its rows are
    those of ``all`` (computed once, relabelled), in every table."""
    one = sim.head(400).assign(unit_type="province")
    out = rl.reliability_tables(one, rl.element_model(), n_boot=20, seed=3)
    for name, table in out.items():
        assert set(table["unit_type"]) == {"all", "province"}, name
        rows = {g: t.drop(columns="unit_type").reset_index(drop=True) for g, t in table.groupby("unit_type")}
        pd.testing.assert_frame_equal(rows["province"], rows["all"], check_exact=True)
    cfa = out["cfa"]
    assert out["alpha"]["boot_low"].notna().all() and cfa.loc[cfa["level"] == "model", "cfi"].notna().all()


def test_stage_tables_small_groups_get_notes_not_errors(sim):
    tiny = sim.head(30).copy()
    out = rl.stage_tables(tiny, rl.element_model(), n_boot=20)
    a, c = out["alpha"], out["cfa"]
    assert list(a.columns[:5]) == ["unit_type", "scale", "n_items", "population", "n"]
    assert a.loc[a["raw_alpha"].isna(), "note"].str.contains("at least 10 answers").all()
    assert c.loc[c["level"] == "model", "note"].str.len().gt(0).all()
    assert (c["level"] == "element").sum() == 5 * c["unit_type"].nunique()
    assert c["verdict"].str.len().gt(0).all()
