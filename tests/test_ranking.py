"""Tests of sipas_lib.ranking: confidence sets for ranks, tied pairs, top/bottom sets, EB, funnel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sipas_lib import ranking as rk

FIX = Path(__file__).parent / "fixtures" / "ranking"


# ------------------------------------------------------------------------------------------------
# worked example published with the method
# Source: csranks vignette "Inference for Ranks" (csranks 1.2.2, pkgdown article
# articles/Inference-for-Ranks.html in github.com/danielwilhelm/R-CS-ranks), PISA 2018 math scores
# of the 37 OECD countries (csranks data-raw/pisa.csv, identical to data(pisa2018)), diagonal
# covariance diag(math_se^2).
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pisa():
    d = pd.read_csv(FIX / "pisa2018_math.csv")
    return pd.Series(d["math_score"].to_numpy(), index=d["jurisdiction"]), d["math_se"].to_numpy()


def test_pisa_top5_sets_match_vignette(pisa):
    est, se = pisa
    # cstaubest(math_score, diag(se^2), tau=5, coverage=0.95) prints these 12 countries
    top95 = rk.top_k_set(est, se=se, k=5, level=0.95, n_boot=4000)
    assert sorted(top95.loc[top95["in_set"], "unit"]) == [
        "Belgium", "Canada", "Denmark", "Estonia", "Finland", "Japan", "Korea", "Netherlands",
        "Poland", "Slovenia", "Sweden", "Switzerland",
    ]
    # ... and at coverage=0.9 "we can now exclude Sweden"
    top90 = rk.top_k_set(est, se=se, k=5, level=0.90, n_boot=4000)
    assert sorted(top90.loc[top90["in_set"], "unit"]) == [
        "Belgium", "Canada", "Denmark", "Estonia", "Finland", "Japan", "Korea", "Netherlands",
        "Poland", "Slovenia", "Switzerland",
    ]


def test_pisa_marginal_uk_matches_vignette(pisa):
    est, se = pisa
    # csranks(..., simul=FALSE, indices=uk_i): $L 8, $rank 13, $U 23 (printed); the vignette's
    # prose says "between 7 and 23": the lower bound hinges on Canada vs UK, t = 2.94, which sits
    # on the bootstrap critical value, so 7 and 8 are both Monte-Carlo outcomes of the method.
    out = rk.rank_confidence_sets(est, se=se, simultaneous=False, n_boot=4000).set_index("unit")
    uk = out.loc["United Kingdom"]
    assert uk["rank"] == 13
    assert uk["rank_ci_high"] == 23
    assert uk["rank_ci_low"] in (7, 8)
    t_canada = (est["Canada"] - est["United Kingdom"]) / np.hypot(se[3], se[35])
    assert t_canada == pytest.approx(2.9417, abs=1e-4)


def test_pisa_simultaneous_statements_of_vignette(pisa):
    est, se = pisa
    sim = rk.rank_confidence_sets(est, se=se, n_boot=4000).set_index("unit")
    # "Chile, Mexico and Colombia have confidence sets for the ranks that do not overlap with the
    # confidence sets of the other countries"
    bottom3 = ["Chile", "Mexico", "Colombia"]
    others_high = sim.drop(index=bottom3)["rank_ci_high"].max()
    assert sim.loc[bottom3, "rank_ci_low"].min() > others_high
    # "Germany ... Korea (their confidence sets both contain rank 7)"
    for c in ("Germany", "Korea"):
        assert sim.loc[c, "rank_ci_low"] <= 7 <= sim.loc[c, "rank_ci_high"]
    # "at lower levels of confidence [0.75], Germany's and Korea's confidence sets do not overlap"
    s75 = rk.rank_confidence_sets(est, se=se, level=0.75, n_boot=4000).set_index("unit")
    assert s75.loc["Korea", "rank_ci_high"] < s75.loc["Germany", "rank_ci_low"]


# ------------------------------------------------------------------------------------------------
# closed-form cases
# ------------------------------------------------------------------------------------------------
def test_two_units_far_apart_get_singleton_sets():
    out = rk.rank_confidence_sets(pd.Series([0.95, 0.60], index=["A", "B"]), se=[0.01, 0.01], n_boot=1000)
    assert out[["rank", "rank_ci_low", "rank_ci_high"]].to_numpy().tolist() == [[1, 1, 1], [2, 2, 2]]


@pytest.mark.parametrize("simultaneous", [True, False])
def test_all_units_equal_gives_full_sets(simultaneous):
    p = 8
    out = rk.rank_confidence_sets(np.full(p, 0.85), se=np.full(p, 0.02), simultaneous=simultaneous, n_boot=1000)
    assert (out["rank"] == 1).all()  # ties share the best rank
    assert (out["rank_ci_low"] == 1).all() and (out["rank_ci_high"] == p).all()
    assert (out["n_tied"] == p - 1).all()


def test_two_units_threshold_is_two_sided_normal_quantile():
    # p = 2: the family {H_12, H_21} has max-t = |Z1 - Z2| / sd, so the critical value is
    # z_{0.975} = 1.95996: t = 2.06 separates the units, t = 1.86 does not (margins ~8 MC s.e.).
    sd = np.hypot(0.02, 0.02)
    sep = rk.rank_confidence_sets([0.80 + 2.06 * sd, 0.80], se=[0.02, 0.02], n_boot=20_000)
    tie = rk.rank_confidence_sets([0.80 + 1.86 * sd, 0.80], se=[0.02, 0.02], n_boot=20_000)
    assert sep["rank_ci_high"].tolist() == [1, 2] and sep["rank_ci_low"].tolist() == [1, 2]
    assert tie["rank_ci_low"].tolist() == [1, 1] and tie["rank_ci_high"].tolist() == [2, 2]


def test_zero_variance_ranks_are_exact():
    out = rk.rank_confidence_sets([0.7, 0.9, 0.8], se=[0.0, 0.0, 0.0], n_boot=200)
    assert out["rank_ci_low"].tolist() == [3, 1, 2] and out["rank_ci_high"].tolist() == [3, 1, 2]


def test_lower_is_better_reverses_ranks():
    out = rk.rank_confidence_sets([10.0, 50.0, 30.0], se=[0.1, 0.1, 0.1], higher_is_better=False, n_boot=500)
    assert out["rank"].tolist() == [1, 3, 2]
    assert out["rank_ci_low"].tolist() == [1, 3, 2]
    assert out["estimate"].tolist() == [10.0, 50.0, 30.0]


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spread():
    rng = np.random.default_rng(7)
    theta = np.sort(rng.uniform(0.75, 0.95, 15))[::-1]
    se = rng.uniform(0.01, 0.03, 15)
    return pd.Series(theta, index=[f"D{i:02d}" for i in range(1, 16)]), se


def test_seeded_and_covariance_equivalent_to_se(spread):
    est, se = spread
    a = rk.rank_confidence_sets(est, se=se, seed=11, n_boot=2000)
    b = rk.rank_confidence_sets(est, se=se, seed=11, n_boot=2000)
    c = rk.rank_confidence_sets(est, pd.DataFrame(np.diag(se**2), index=est.index, columns=est.index), seed=11, n_boot=2000)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_stepdown_never_wider_and_simultaneous_never_narrower(spread):
    est, se = spread
    kw = dict(se=se, seed=3, n_boot=3000)
    sd = rk.rank_confidence_sets(est, **kw)
    ss = rk.rank_confidence_sets(est, stepdown=False, **kw)
    mg = rk.rank_confidence_sets(est, simultaneous=False, **kw)
    width = lambda x: x["rank_ci_high"] - x["rank_ci_low"]  # noqa: E731
    assert (width(sd) <= width(ss)).all() and width(sd).sum() < width(ss).sum() + 1
    assert (width(mg) <= width(sd)).all()
    for x in (sd, ss, mg):  # the estimated rank is always inside its set
        assert ((x["rank_ci_low"] <= x["rank"]) & (x["rank"] <= x["rank_ci_high"])).all()


def test_tied_pairs_consistent_with_rank_sets(spread):
    est, se = spread
    sets = rk.rank_confidence_sets(est, se=se, seed=5, n_boot=2000).set_index("unit")
    ties = rk.tied_pairs(est, se=se, seed=5, n_boot=2000)
    assert len(ties) == 15 * 14
    counts = ties.pivot_table(index="unit", columns="relation", aggfunc="size", fill_value=0)
    counts = counts.reindex(columns=["better", "worse", "tied"], fill_value=0)
    assert (counts["worse"] == sets.loc[counts.index, "n_better"]).all()
    assert (counts["better"] == sets.loc[counts.index, "n_worse"]).all()
    assert (counts["tied"] == sets.loc[counts.index, "n_tied"]).all()
    # antisymmetry: A better than B  <=>  B worse than A
    m = ties.set_index(["unit", "other"])["relation"]
    flipped = m.copy()
    flipped.index = flipped.index.swaplevel()
    mapping = {"better": "worse", "worse": "better", "tied": "tied"}
    assert (m.sort_index() == flipped.sort_index().map(mapping)).all()


def test_top_and_bottom_sets_agree_with_simultaneous_bounds(spread):
    est, se = spread
    sets = rk.rank_confidence_sets(est, se=se, seed=9, n_boot=2000)
    top = rk.top_k_set(est, se=se, k=3, seed=9, n_boot=2000)
    bot = rk.bottom_k_set(est, se=se, k=3, seed=9, n_boot=2000)
    assert (top["in_set"].to_numpy() == (sets["rank_ci_low"] <= 3).to_numpy()).all()
    assert (bot["in_set"].to_numpy() == (sets["rank_ci_high"] >= 15 - 3 + 1).to_numpy()).all()
    assert top.loc[top["rank"] <= 3, "in_set"].all() and bot.loc[bot["rank"] >= 13, "in_set"].all()


@pytest.mark.simulation
def test_simultaneous_sets_cover_all_true_ranks():
    """Simulation from known true indices: all true ranks covered jointly in >= 95 % of replicates."""
    theta = np.array([0.93, 0.91, 0.90, 0.88, 0.88, 0.86, 0.83, 0.82, 0.80, 0.76])
    true_rank = rk.estimated_ranks(theta)
    se = np.array([0.012, 0.015, 0.02, 0.01, 0.018, 0.014, 0.02, 0.016, 0.012, 0.02])
    rng = np.random.default_rng(2025)
    reps = 300
    joint = 0
    marginal = np.zeros(theta.size)
    for r in range(reps):
        est = theta + rng.standard_normal(theta.size) * se
        s = rk.rank_confidence_sets(est, se=se, n_boot=1000, seed=r)
        cov_j = (s["rank_ci_low"].to_numpy() <= true_rank) & (true_rank <= s["rank_ci_high"].to_numpy())
        joint += cov_j.all()
        if r < 100:
            m = rk.rank_confidence_sets(est, se=se, n_boot=1000, seed=r, simultaneous=False)
            marginal += (m["rank_ci_low"].to_numpy() <= true_rank) & (true_rank <= m["rank_ci_high"].to_numpy())
    assert joint / reps >= 0.95
    # marginal sets: each unit's own coverage near or above nominal (100 replicates, MC s.e. ~2.2 %)
    assert (marginal / 100 >= 0.90).all()


def test_input_errors_name_the_problem():
    with pytest.raises(ValueError, match="D02"):
        rk.rank_confidence_sets(pd.Series([0.8, np.nan], index=["D01", "D02"]), se=[0.01, 0.01])
    with pytest.raises(ValueError, match="exactly one of cov"):
        rk.rank_confidence_sets([0.8, 0.7], np.eye(2), se=[0.1, 0.1])
    with pytest.raises(ValueError, match="positive semi-definite"):
        rk.rank_confidence_sets([0.8, 0.7], np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="level"):
        rk.rank_confidence_sets([0.8, 0.7], se=[0.1, 0.1], level=95)
    with pytest.raises(ValueError, match="k must be"):
        rk.top_k_set([0.8, 0.7], se=[0.1, 0.1], k=2)


# ------------------------------------------------------------------------------------------------
# empirical Bayes (model-based companion)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["reml", "dl"])
def test_empirical_bayes_matches_metafor(method):
    # Reference: tests/r/ranking_eb_reference.R, metafor 3.8.1 rma(method="REML"/"DL",
    # control=list(threshold=1e-12)) and blup(), R 4.2.2.
    ref = pd.read_csv(FIX / "eb_reference.csv").query("method == @method")
    eb = rk.empirical_bayes(ref["estimate"].to_numpy(), se=ref["se"].to_numpy(), method=method)
    assert eb["tau2"].iloc[0] == pytest.approx(ref["tau2"].iloc[0], rel=1e-6)
    assert eb["mu"].iloc[0] == pytest.approx(ref["mu"].iloc[0], abs=1e-9)
    np.testing.assert_allclose(eb["eb_estimate"], ref["eb_estimate"], atol=1e-8)


def test_expected_ranks_closed_form():
    # tau2 estimated 0 (identical estimates): everything shrinks to mu, expected ranks (p+1)/2
    eb = rk.empirical_bayes([0.8, 0.8, 0.8, 0.8], se=[0.02, 0.03, 0.02, 0.01])
    assert eb["tau2"].iloc[0] == 0
    np.testing.assert_allclose(eb["eb_estimate"], 0.8)
    np.testing.assert_allclose(eb["expected_rank"], 2.5)
    # two units: E[r_1] = 1 + Phi((m2 - m1) / sqrt(v1 + v2)), ranks sum to p(p+1)/2
    eb = rk.empirical_bayes([0.9, 0.7, 0.8], se=[0.05, 0.05, 0.05], k=1)
    m, v = eb["eb_estimate"].to_numpy(), eb["eb_se"].to_numpy() ** 2
    er0 = 1 + stats.norm.cdf((m[1] - m[0]) / np.sqrt(v[0] + v[1])) + stats.norm.cdf((m[2] - m[0]) / np.sqrt(v[0] + v[2]))
    assert eb["expected_rank"].iloc[0] == pytest.approx(er0)
    assert eb["expected_rank"].sum() == pytest.approx(6.0)
    assert eb["prob_top_k"].sum() == pytest.approx(1.0)
    assert eb["prob_top_k"].iloc[0] > eb["prob_top_k"].iloc[2] > eb["prob_top_k"].iloc[1]


# ------------------------------------------------------------------------------------------------
# funnel plot and the league table
# ------------------------------------------------------------------------------------------------
def test_funnel_limits_closed_form():
    lim = rk.funnel_limits(0.8, 1000, n_min=100, levels=(0.95,))
    row = lim.loc[lim["n"] == 100].iloc[0]
    half = stats.norm.ppf(0.975) * np.sqrt(0.8 * 0.2 / 100)
    assert row["lower"] == pytest.approx(0.8 - half) and row["upper"] == pytest.approx(0.8 + half)
    lim2 = rk.funnel_limits(0.8, 1000, n_min=100, levels=(0.95,), deff=2.0)
    assert lim2.loc[lim2["n"] == 100, "upper"].iloc[0] == pytest.approx(0.8 + half * np.sqrt(2))


def test_funnel_points_flags():
    df = pd.DataFrame({"unit_id": ["A", "B", "C"], "estimate": [0.95, 0.80, 0.70], "n": [400, 400, 100]})
    pts = rk.funnel_points(df, centre=0.8).set_index("unit")
    assert pts.loc["A", "z"] == pytest.approx(0.15 / np.sqrt(0.16 / 400))
    assert pts["position"].tolist() == ["above", "within", "below"]
    assert bool(pts.loc["C", "outside_95"]) and not bool(pts.loc["C", "outside_998"])


def test_rank_table_groups_and_flags(spread):
    est, se = spread
    df = pd.DataFrame({
        "unit_id": list(est.index) + ["S01", "S02", "S03"],
        "unit_type": ["district"] * 15 + ["department"] * 3,
        "estimate": list(est.to_numpy()) + [0.9, 0.6, 0.85],
        "se": list(se) + [0.01, 0.01, 0.05],
        "n": [200] * 14 + [12] + [150, 150, 150],
    })
    tab = rk.rank_table(df, k_top=3, n_boot=1000)
    for col in ["unit_id", "unit_type", "estimate", "se", "n", "rank", "rank_ci_low", "rank_ci_high",
                "rank_ci_low_marginal", "rank_ci_high_marginal", "in_top_k", "in_bottom_k",
                "publishable", "eb_estimate", "expected_rank", "n_units"]:
        assert col in tab.columns
    dep = tab[tab["unit_type"] == "department"].set_index("unit_id")
    assert dep["n_units"].eq(3).all() and dep.loc["S01", "rank"] == 1 and dep.loc["S02", "rank"] == 3
    assert dep.loc["S01", "rank_ci_high"] <= 2  # far above S02
    t = tab.set_index("unit_id")
    assert not t.loc["D15", "publishable"] and t.loc["D01", "publishable"]
    # units with too few respondents are not ranked: ranks run 1..14 over the published districts
    assert pd.isna(t.loc["D15", "rank"]) and pd.isna(t.loc["D15", "rank_ci_low"])
    dist = tab[(tab["unit_type"] == "district") & tab["publishable"]]
    assert sorted(dist["rank"].tolist()) == list(range(1, 15)) and dist["n_units"].eq(14).all()
    assert tab.iloc[-1]["unit_id"] == "D15"  # unranked last
    everyone = rk.rank_table(df, k_top=3, n_boot=1000, rank_unpublishable=True).set_index("unit_id")
    assert everyone.loc["D15", "rank"] >= 1
    # marginal sets are never wider than simultaneous ones
    r = tab.dropna(subset=["rank"])
    assert (r["rank_ci_low_marginal"] >= r["rank_ci_low"]).all()
    assert (r["rank_ci_high_marginal"] <= r["rank_ci_high"]).all()


def test_covariance_is_used_for_differences():
    # sd(theta1 - theta2) = sqrt(s1^2 + s2^2 - 2 cov): with correlation 0.95 a 3-point gap is clear
    # (t = 0.03 / 0.00632 = 4.7), independently it is not (t = 0.03 / 0.0283 = 1.06).
    est = pd.Series([0.88, 0.85], index=["A", "B"])
    s2 = 0.02**2
    corr = rk.rank_confidence_sets(est, np.array([[s2, 0.95 * s2], [0.95 * s2, s2]]), n_boot=2000)
    ind = rk.rank_confidence_sets(est, se=[0.02, 0.02], n_boot=2000)
    assert corr["rank_ci_high"].tolist() == [1, 2] and ind["rank_ci_high"].tolist() == [2, 2]
    rej = rk.pairwise_rejections(est, np.array([[s2, 0.95 * s2], [0.95 * s2, s2]]), n_boot=2000)
    assert rej.loc["A", "B"] and not rej.loc["B", "A"]
    assert rk.estimated_ranks([0.5, 0.9, 0.9, 0.1]).tolist() == [3, 1, 1, 4]


# ------------------------------------------------------------------------------------------------
# issue 16: leagues, pairs from the same rejections, cost independent of the block size
# ------------------------------------------------------------------------------------------------
def test_rank_table_pairs_are_the_tied_pairs_of_each_group(spread):
    est, se = spread
    df = pd.DataFrame({"unit_id": est.index, "estimate": est.to_numpy(), "se": se, "n": 200,
                       "league": ["P01:commune"] * 8 + ["P02:commune"] * 7})
    table, pairs = rk.rank_table(df, by="league", n_boot=1000, seed=4, pairs=True)
    assert table.equals(rk.rank_table(df, by="league", n_boot=1000, seed=4))  # same table with or without pairs
    for league, g in df.groupby("league"):
        alone = rk.rank_table(g, by=None, n_boot=1000, seed=4)  # the league ranked on its own
        mine = table[table["league"] == league].drop(columns="league").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone)
        ties = rk.tied_pairs(pd.Series(g["estimate"].to_numpy(), index=g["unit_id"]), se=g["se"].to_numpy(),
                             n_boot=1000, seed=4)
        got = pairs[pairs["league"] == league].drop(columns="league").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, ties)
        # a unit's n_better is its count of "worse" verdicts (one rejection matrix behind both)
        worse = got[got["relation"] == "worse"].groupby("unit").size()
        n_better = mine.set_index("unit_id")["n_better"]
        assert (worse.reindex(n_better.index, fill_value=0).to_numpy() == n_better.to_numpy()).all()
    assert len(pairs) == 8 * 7 + 7 * 6  # ordered pairs within leagues only


@pytest.mark.parametrize("simultaneous", [True, False])
def test_block_size_changes_nothing(monkeypatch, simultaneous):
    # the bootstrap max is computed in cache-sized blocks; any block size gives the same sets
    rng = np.random.default_rng(16)
    theta, se = rng.uniform(0.7, 0.95, 40), rng.uniform(0.005, 0.04, 40)
    theta[:6] = theta[0]  # ties
    a = rk.rank_confidence_sets(theta, se=se, n_boot=700, seed=9, simultaneous=simultaneous)
    monkeypatch.setattr(rk, "_CHUNK_ELEMENTS", 1)  # one draw per block
    b = rk.rank_confidence_sets(theta, se=se, n_boot=700, seed=9, simultaneous=simultaneous)
    monkeypatch.setattr(rk, "_CHUNK_ELEMENTS", 10**9)  # every draw in one block
    c = rk.rank_confidence_sets(theta, se=se, n_boot=700, seed=9, simultaneous=simultaneous)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    assert (a["rank_ci_high"] > a["rank_ci_low"]).any() and (a["n_better"] > 0).any()  # not a degenerate case
