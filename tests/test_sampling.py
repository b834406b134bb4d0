"""Tests of sipas_lib.sampling: sample sizes, allocation, selection, form ids, mailing list.

Reference values:
* closed forms (Cochran 1977 eq. 4.2 / §5.5; Bankier 1988) computed by hand and written beside each test;
* R ``sampling::inclusionprobabilities`` (package sampling 2.9, R 4.2.2), stored in
  tests/fixtures/sampling/inclusionprobabilities.csv by tests/r/sampling_reference.R;
* simulation: empirical selection rates over many seeded draws against the inclusion probabilities.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import config
from sipas_lib import sampling as sp

FIXTURES = Path(__file__).parent / "fixtures" / "sampling"
FIELDS = ["justice", "labour_social", "land_environment", "construction_urban", "other"]


# ------------------------------------------------------------------------------------------------
# synthetic inputs
# ------------------------------------------------------------------------------------------------
def make_frame(n_units: int = 6, seed: int = 0, n_min: int = 40, n_max: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_min, n_max, n_units)
    unit = np.repeat([f"S{i + 1:02d}" for i in range(n_units)], sizes)
    n = unit.size
    return pd.DataFrame(
        {
            "transaction_id": [f"T{i:07d}" for i in range(n)],
            "unit_id": unit,
            "field": rng.choice(FIELDS, n, p=[0.3, 0.2, 0.25, 0.15, 0.1]),
            "procedure": "p",
            "received_on": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "result_on": pd.Timestamp("2025-02-01"),
            "channel": rng.choice(["direct", "online_l3", "online_l4", "postal"], n),
            "applicant_name": [f"Nguyễn Văn {i}" for i in range(n)],
            "phone": [f"09{i:08d}" for i in range(n)],
            "address": [f"{i} Phố Huế, Hà Nội" for i in range(n)],
        }
    )


def small_design():
    """80-row frame, 2 units x 2 fields, with a size measure that forces a capped unit."""
    rng = np.random.default_rng(7)
    n = 80
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "unit_id": np.repeat(["A", "B"], 40),
            "field": np.tile(np.repeat(["x", "y"], 20), 2),
            "received_on": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "channel": "direct",
            "size": rng.integers(1, 20, n).astype(float),
        }
    )
    frame.loc[3, "size"] = 400.0  # pi = 1 after capping
    frame.loc[45, "size"] = 0.0  # never selected by PPS
    alloc = pd.DataFrame({"unit_id": ["A", "A", "B", "B"], "field": ["x", "y", "x", "y"], "n_h": [5, 3, 7, 2]})
    return frame, alloc


# ------------------------------------------------------------------------------------------------
# sample size and margin of error
# ------------------------------------------------------------------------------------------------
def test_sample_size_closed_forms():
    # z = 1.959964; n0 = z^2 * 0.25 / 0.05^2 = 384.146 -> 385 (Cochran 1977, eq. 4.1)
    assert sample_size_is_int(sp.sample_size(0.05)) == 385
    # FPC (Cochran eq. 4.2): 384.146 / (1 + 383.146/1000) = 277.70 -> 278
    assert sp.sample_size(0.05, population=1000) == 278
    # response-rate inflation: 277.70 / 0.8 = 347.1 -> 348
    assert sp.sample_size(0.05, population=1000, response_rate=0.8) == 348
    # deff 2 doubles n0: 768.29 -> 769; 99 %: z = 2.575829, n0 = 663.49 -> 664
    assert sp.sample_size(0.05, deff=2.0) == 769
    assert sp.sample_size(0.05, level=0.99) == 664
    # p = 0.85: n0 = 1.959964^2 * 0.1275 / 0.0025 = 195.91 -> 196
    assert sp.sample_size(0.05, p=0.85) == 196
    # capped at the population when the response inflation would exceed it
    assert sp.sample_size(0.05, population=50, response_rate=0.5) == 50


def sample_size_is_int(value):
    assert isinstance(value, int)
    return value


def test_sample_size_and_margin_are_inverse():
    margins = np.array([0.02, 0.03, 0.05, 0.07, 0.1])[:, None]
    pops = np.array([60, 200, 1500, 20000, 10**6])[None, :]
    n = sp.sample_size(margins, population=pops, response_rate=0.9, deff=1.3)
    assert n.shape == (5, 5) and n.dtype.kind == "i"
    e = sp.margin_of_error(n, population=pops, response_rate=0.9, deff=1.3)
    below = (n > 1) & (n < pops)  # at n = N the target may be out of reach (response < 1)
    assert np.all(e[below] <= np.broadcast_to(margins, n.shape)[below] + 1e-12)
    e_less = sp.margin_of_error(np.maximum(n - 1, 1), population=pops, response_rate=0.9, deff=1.3)
    assert np.all(e_less[below] > np.broadcast_to(margins, n.shape)[below])


def test_margin_of_error_closed_form_and_census():
    # 1.959964 * sqrt(0.25 / 400) = 0.048999; with N = 1000: * sqrt(600/999) = 0.037974
    assert sp.margin_of_error(400) == pytest.approx(0.0489991, abs=1e-6)
    assert sp.margin_of_error(400, population=1000) == pytest.approx(0.0379737, abs=1e-6)
    assert sp.margin_of_error(50, population=50) == 0.0
    assert isinstance(sp.margin_of_error(100), float)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin": 0},
        {"margin": 1.2},
        {"margin": 0.05, "p": 0},
        {"margin": 0.05, "level": 1.0},
        {"margin": 0.05, "response_rate": 0},
        {"margin": 0.05, "deff": -1},
        {"margin": 0.05, "population": 0},
        {"margin": 0.05, "population": float("nan")},
    ],
)
def test_sample_size_bad_input(kwargs):
    with pytest.raises(ValueError):
        sp.sample_size(**kwargs)


def test_margin_of_error_bad_input():
    with pytest.raises(ValueError, match="exceeds the population"):
        sp.margin_of_error(20, population=10)
    with pytest.raises(ValueError, match="positive"):
        sp.margin_of_error(0)


# ------------------------------------------------------------------------------------------------
# allocation
# ------------------------------------------------------------------------------------------------
def fc_of(N, sd=None):
    df = pd.DataFrame({"unit_id": [f"U{i:02d}" for i in range(len(N))], "N": N})
    if sd is not None:
        df["sd"] = sd
    return df


def test_allocate_closed_forms():
    # proportional: 100 * N / 1000
    assert sp.allocate(fc_of([100, 300, 600]), 100, "proportional")["n"].tolist() == [10, 30, 60]
    # Neyman: w = N S = (100, 600) -> 70 * w / 700
    assert sp.allocate(fc_of([100, 200], sd=[1, 3]), 70, "neyman", sd="sd")["n"].tolist() == [10, 60]
    # power a = 0.5: sqrt(N) = (10, 20, 40) -> 70 * sqrt(N)/70
    assert sp.allocate(fc_of([100, 400, 1600]), 70, "power", exponent=0.5)["n"].tolist() == [10, 20, 40]
    # power a = 0 is equal, a = 1 proportional
    fc = fc_of([120, 340, 910, 77])
    assert sp.allocate(fc, 200, "power", exponent=0)["n"].tolist() == sp.allocate(fc, 200, "equal")["n"].tolist()
    assert (
        sp.allocate(fc, 200, "power", exponent=1)["n"].tolist()
        == sp.allocate(fc, 200, "proportional")["n"].tolist()
    )
    # equal 1250 over 20 units = 62.5 each: the 10 largest units get 63 (ties to the larger frame)
    N = np.arange(1000, 3000, 100)
    eq = sp.allocate(fc_of(N), 1250, "equal")
    assert eq["n"].sum() == 1250
    assert eq.loc[eq["N"] >= 2000, "n"].eq(63).all() and eq.loc[eq["N"] < 2000, "n"].eq(62).all()


def test_allocate_largest_remainder_and_bounds():
    # 10 in proportion 40:35:25 -> 4, 3.5, 2.5: one extra unit, tie broken to the larger frame -> 4, 4, 2
    assert sp.allocate(fc_of([40, 35, 25]), 10, "proportional")["n"].tolist() == [4, 4, 2]
    # minimum: unit of 50 would get 5, is raised to 30; the other gets the remaining 70
    assert sp.allocate(fc_of([50, 950]), 100, "proportional", minimum=30)["n"].tolist() == [30, 70]
    # a frame smaller than the minimum is taken whole (census)
    assert sp.allocate(fc_of([12, 2000, 3000]), 300, "proportional", minimum=30)["n"].tolist() == [12, 115, 173]
    # maximum: the big unit is capped at 100, the rest shared 1:1
    assert sp.allocate(fc_of([100, 100, 5000]), 200, "proportional", maximum=100)["n"].tolist() == [50, 50, 100]


@pytest.mark.parametrize("method", ["equal", "proportional", "neyman", "power"])
def test_allocations_sum_exactly_within_bounds(method):
    rng = np.random.default_rng(11)
    for _ in range(60):
        H = int(rng.integers(2, 40))
        N = rng.integers(5, 5000, H)
        minimum = int(rng.integers(0, 20))
        maximum = None if rng.random() < 0.5 else int(rng.integers(max(minimum, 1) + 40, 400))
        cap = np.minimum(N, maximum if maximum is not None else N).sum()
        total = int(rng.integers(H * minimum, min(cap, 8000) + 1))
        if total == 0:
            continue
        fc = fc_of(N, sd=rng.uniform(0.2, 2.0, H))
        out = sp.allocate(
            fc, total, method, minimum=minimum, maximum=maximum, exponent=float(rng.uniform(0, 1)), sd="sd"
        )
        n = out["n"].to_numpy()
        assert n.sum() == total
        assert np.all(n >= np.minimum(minimum, N)) and np.all(n <= N)
        if maximum is not None:
            assert np.all(n <= maximum)
        assert np.allclose(out["sampling_fraction"], n / N)


def test_allocate_output_columns_and_moe():
    fc = pd.DataFrame(
        {"unit_id": ["B", "A", "A", "B"], "field": ["x", "x", "y", "y"], "N": [300, 100, 100, 500]}
    )
    out = sp.allocate(fc, 100, "proportional", response_rate=0.8, deff=1.5)
    assert list(out.columns) == ["unit_id", "N", "n", "sampling_fraction", "moe", "method"]
    assert out["unit_id"].tolist() == ["A", "B"] and out["N"].tolist() == [200, 800]
    expected = sp.margin_of_error(out["n"].to_numpy(), population=out["N"].to_numpy(), response_rate=0.8, deff=1.5)
    assert np.allclose(out["moe"], expected)


@pytest.mark.parametrize(
    "fc, kwargs, message",
    [
        (fc_of([100, 200, 300]), dict(total=50, method="equal", minimum=30), "smaller than 3 units x minimum 30"),
        (fc_of([100, 0, 300]), dict(total=50, method="equal"), "empty frame"),
        (fc_of([100, 200]), dict(total=50, method="equal", units=["U00", "U01", "U09"]), "empty frame.*U09"),
        (fc_of([100, -5, 300]), dict(total=50, method="equal"), "negative"),
        (fc_of([100, np.nan, 300]), dict(total=50, method="equal"), "missing"),
        (fc_of([100, 200]), dict(total=50, method="optimal"), "unknown allocation method"),
        (fc_of([100, 200]), dict(total=50, method="neyman"), "standard deviation"),
        (fc_of([100, 200]), dict(total=50, method="power", exponent=2), "exponent"),
        (fc_of([10, 20]), dict(total=50, method="equal"), "exceeds what the frames allow"),
        (fc_of([100, 200]), dict(total=-3, method="equal"), "positive whole number"),
        (fc_of([100, 200]), dict(total=50, method="equal", minimum=20, maximum=10), "below the minimum"),
        (fc_of([100, 200], sd=[0.0, 1.0]), dict(total=250, method="neyman", sd="sd"), "cannot be reached"),
    ],
)
def test_allocate_bad_input(fc, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sp.allocate(fc, **kwargs)


def test_allocate_by_type_and_within():
    frame = make_frame(n_units=8, seed=3)
    frame.loc[frame["unit_id"].isin(["S05", "S06", "S07", "S08"]), "unit_id"] = frame["unit_id"].str.replace("S", "D")
    units = pd.DataFrame(
        {
            "unit_id": ["S01", "S02", "S03", "S04", "D05", "D06", "D07", "D08"],
            "unit_type": ["department"] * 4 + ["district"] * 4,
        }
    )
    fc = sp.count_frame(frame)
    assert list(fc.columns) == ["unit_id", "field", "channel", "N"] and fc["N"].sum() == len(frame)
    alloc = sp.allocate_by_type(fc, units, {"department": 100, "district": 160}, "power", minimum=10)
    assert alloc.groupby("unit_type")["n"].sum().to_dict() == {"department": 100, "district": 160}
    strata = sp.allocate_within(fc, alloc, minimum=1)
    assert list(strata.columns) == ["unit_id", "field", "stratum", "N_h", "n_h", "f_h"]
    per_unit = strata.groupby("unit_id")["n_h"].sum()
    assert per_unit.to_dict() == alloc.set_index("unit_id")["n"].to_dict()
    assert (strata["n_h"] <= strata["N_h"]).all() and (strata["n_h"] >= 1).all()
    assert strata["stratum"].iloc[0] == f"{strata['unit_id'].iloc[0]}|{strata['field'].iloc[0]}"
    # proportional within: n_hk = n_h * N_hk / N_h up to rounding (< 1)
    share = strata["N_h"] / strata.groupby("unit_id")["N_h"].transform("sum") * strata["unit_id"].map(per_unit)
    assert (strata["n_h"] - share).abs().max() < 1
    with pytest.raises(ValueError, match="not found"):
        sp.allocate_by_type(fc, units, {"commune": 10})
    with pytest.raises(ValueError, match="minimum per field"):
        sp.allocate_within(fc, alloc.assign(n=np.where(alloc["unit_id"] == "S01", 3, alloc["n"])), minimum=1)


def test_city_margin_of_error_closed_form_and_comparison():
    alloc = pd.DataFrame({"unit_id": ["a", "b"], "N": [1000, 3000], "n": [100, 300]})
    # W = (0.25, 0.75); e_h = 1.959964 * sqrt(0.25/n_h * (N_h - n_h)/(N_h - 1))
    e1 = 1.959964 * math.sqrt(0.25 / 100 * 900 / 999)
    e2 = 1.959964 * math.sqrt(0.25 / 300 * 2700 / 2999)
    assert sp.city_margin_of_error(alloc) == pytest.approx(math.sqrt(0.0625 * e1**2 + 0.5625 * e2**2), rel=1e-6)
    assert sp.city_margin_of_error(alloc, weights="equal") == pytest.approx(math.sqrt(0.25 * (e1**2 + e2**2)), rel=1e-6)
    fc = fc_of([300, 800, 2500, 9000, 30000])
    cmp = sp.compare_allocations(fc, 1000, minimum=30)
    by = cmp.set_index("label")
    # equal allocation protects the smallest unit; proportional is best for the city-wide figure
    assert by.loc["equal", "moe_unit_max"] < by.loc["proportional", "moe_unit_max"]
    assert by.loc["proportional", "moe_city"] < by.loc["equal", "moe_city"]
    assert by.loc["equal", "moe_city"] > by.loc["power (a = 0.5)", "moe_city"] > by.loc["proportional", "moe_city"]


# ------------------------------------------------------------------------------------------------
# inclusion probabilities
# ------------------------------------------------------------------------------------------------
def test_inclusion_probabilities_match_r_sampling():
    # Source: R sampling::inclusionprobabilities(a, n), sampling 2.9 on R 4.2.2 (tests/r/sampling_reference.R)
    meta = json.loads((FIXTURES / "r_versions.json").read_text())
    assert meta["function"].startswith("sampling::inclusionprobabilities")
    ref = pd.read_csv(FIXTURES / "inclusionprobabilities.csv")
    assert ref["example"].nunique() == 5
    for name, ex in ref.groupby("example", sort=False):
        pik = sp.inclusion_probabilities(ex["a"].to_numpy(), int(ex["n"].iloc[0]))
        np.testing.assert_allclose(pik, ex["pik"].to_numpy(), rtol=0, atol=1e-12, err_msg=name)
    # the same examples at once, as strata of one grouped call
    n_by = ref.groupby("example")["n"].first()
    pik = sp.inclusion_probabilities(ref["a"], n_by, by=ref["example"])
    np.testing.assert_allclose(pik, ref["pik"], atol=1e-12)


def test_inclusion_probabilities_closed_forms():
    a = np.arange(1, 21, dtype=float)
    np.testing.assert_allclose(sp.inclusion_probabilities(a, 5), 5 * a / a.sum())  # no capping
    # capping: sizes 1, 2, 3, 30 with n = 2 -> 30 is certain; the rest share 1: (1, 2, 3)/6
    np.testing.assert_allclose(sp.inclusion_probabilities([1, 2, 3, 30], 2), [1 / 6, 2 / 6, 3 / 6, 1])
    rng = np.random.default_rng(5)
    a = rng.lognormal(2, 1.5, 500)
    pik = sp.inclusion_probabilities(a, 60)
    assert pik.sum() == pytest.approx(60) and pik.max() <= 1
    free = pik < 1
    assert np.ptp(pik[free] / a[free]) < 1e-12  # proportional to size among the uncapped
    with pytest.raises(ValueError, match="negative"):
        sp.inclusion_probabilities([1, -2, 3], 1)
    with pytest.raises(ValueError, match="exceeds"):
        sp.inclusion_probabilities([1, 0, 3], 3)


# ------------------------------------------------------------------------------------------------
# selection
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def design():
    frame = make_frame(n_units=6, seed=1)
    fc = sp.count_frame(frame)
    alloc = sp.allocate(fc, 300, "power", minimum=20)
    strata = sp.allocate_within(fc, alloc)
    return frame, fc, alloc, strata


@pytest.mark.parametrize("method", ["systematic", "srs", "pps"])
def test_select_sizes_probabilities_reserves(design, method):
    frame, fc, alloc, strata = design
    frame = frame.assign(size=np.random.default_rng(2).integers(1, 10, len(frame)).astype(float))
    kw = {"size_col": "size"} if method == "pps" else {}
    s = sp.select(frame, strata, method, seed=42, reserve=0.3, recheck=0.1, **kw)
    expected_cols = [
        "transaction_id", "unit_id", "field", "channel", "stratum", "N_h", "n_h",
        "incl_prob", "design_weight", "role", "reserve_rank", "recheck",
    ]
    assert list(s.columns) == expected_cols
    assert not set(sp.PERSONAL_COLUMNS) & set(s.columns)
    assert s["transaction_id"].is_unique
    main = s[s["role"] == "main"]
    got = main.groupby("stratum").size()
    want = strata.set_index("stratum")["n_h"]
    assert got.reindex(want.index, fill_value=0).tolist() == want.tolist()
    res = s[s["role"] == "reserve"]
    r_want = np.minimum(np.ceil(0.3 * want), strata.set_index("stratum")["N_h"] - want)
    assert res.groupby("stratum").size().reindex(want.index, fill_value=0).tolist() == r_want.astype(int).tolist()
    # replacement order 1, 2, ..., r_h in each stratum
    for _, g in res.groupby("stratum"):
        assert g["reserve_rank"].tolist() == list(range(1, len(g) + 1))
    assert (main["reserve_rank"] == 0).all()
    # inclusion probabilities and weights
    if method == "pps":
        joined = frame.merge(strata[["unit_id", "field", "n_h"]], on=["unit_id", "field"])
        ref = pd.concat(  # stratum by stratum with the (R-checked) ungrouped function
            pd.Series(sp.inclusion_probabilities(g["size"], g["n_h"].iloc[0]), index=g["transaction_id"])
            for _, g in joined.groupby(["unit_id", "field"])
        )
        np.testing.assert_allclose(s["incl_prob"], ref.reindex(s["transaction_id"]).to_numpy(), atol=1e-12)
    else:
        np.testing.assert_allclose(s["incl_prob"], s["n_h"] / s["N_h"])
    np.testing.assert_allclose(s["design_weight"], 1 / s["incl_prob"])
    # weights of the main sample add up to the frame size of each stratum (exactly for equal probabilities)
    if method != "pps":
        np.testing.assert_allclose(main.groupby("stratum")["design_weight"].sum(), main.groupby("stratum")["N_h"].first())
    # re-check: ceil(10 % of the unit's main sample), main rows only
    rc = s[s["recheck"]]
    assert (rc["role"] == "main").all()
    want_rc = np.ceil(0.1 * main.groupby("unit_id").size()).astype(int)
    assert rc.groupby("unit_id").size().reindex(want_rc.index, fill_value=0).tolist() == want_rc.tolist()


def test_select_is_reproducible(design):
    frame, _, _, strata = design
    for method in ("systematic", "srs"):
        a = sp.select(frame, strata, method, seed=2025, reserve=0.2, recheck=0.05)
        b = sp.select(frame, strata, method, seed=2025, reserve=0.2, recheck=0.05)
        pd.testing.assert_frame_equal(a, b)
        c = sp.select(frame, strata, method, seed=2026, reserve=0.2, recheck=0.05)
        assert set(c["transaction_id"]) != set(a["transaction_id"])


def test_systematic_spreads_over_dates():
    # one stratum of 100 rows, n = 10: the interval is exactly 10 in date order
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(100),
            "unit_id": "A",
            "field": "x",
            "received_on": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.permutation(100), unit="D"),
            "channel": "direct",
        }
    )
    alloc = pd.DataFrame({"unit_id": ["A"], "field": ["x"], "n_h": [10]})
    for seed in range(5):
        s = sp.select(frame, alloc, "systematic", seed=seed, keep=("received_on",))
        days = np.sort((s["received_on"] - pd.Timestamp("2025-01-01")).dt.days.to_numpy())
        assert np.all(np.diff(days) == 10)


@pytest.mark.parametrize("method", ["systematic", "srs", "pps"])
def test_empirical_selection_rates_match_inclusion_probabilities(method):
    # 1,200 independent draws of the small design: 100 copies of it (each copy its own strata, drawn
    # independently inside one call) x 12 seeds
    frame, alloc = small_design()
    copies, seeds = 100, 12
    big = pd.concat(
        [frame.assign(unit_id=frame["unit_id"] + f"#{c}", transaction_id=frame["transaction_id"] + 1000 * c)
         for c in range(copies)],
        ignore_index=True,
    )
    big_alloc = pd.concat([alloc.assign(unit_id=alloc["unit_id"] + f"#{c}") for c in range(copies)], ignore_index=True)
    kw = {"size_col": "size"} if method == "pps" else {}
    R = copies * seeds
    hits = np.zeros(len(frame))
    pik_reported = np.zeros(len(frame))
    for seed in range(seeds):
        s = sp.select(big, big_alloc, method, seed=seed, **kw)
        row = s["transaction_id"].to_numpy() % 1000
        np.add.at(hits, row, 1)
        pik_reported[row] = s["incl_prob"].to_numpy()
    if method == "pps":
        g = frame.groupby(["unit_id", "field"]).ngroup()
        n_g = dict(enumerate(frame.assign(g=g).merge(alloc).groupby("g")["n_h"].first()))
        pik = sp.inclusion_probabilities(frame["size"], n_g, by=g)
        assert pik[3] == 1.0 and pik[45] == 0.0
        assert hits[3] == R and hits[45] == 0
    else:
        pik = frame.merge(alloc, how="left")["n_h"].to_numpy() / 20  # n_h / N_h, N_h = 20
    seen = pik_reported > 0
    np.testing.assert_allclose(pik_reported[seen], pik[seen])
    rate = hits / R
    se = np.sqrt(pik * (1 - pik) / R)
    inner = (pik > 0) & (pik < 1)
    z = (rate[inner] - pik[inner]) / se[inner]
    assert np.abs(z).max() < 4.5, f"max |z| = {np.abs(z).max():.2f}"
    assert np.sum(z**2) < inner.sum() + 5 * math.sqrt(2 * inner.sum())  # chi-square, df = rows


def test_select_excludes_units_outside_allocation_and_personal_columns():
    frame = make_frame(n_units=3, seed=9)
    fc = sp.count_frame(frame, by=("unit_id", "field"))
    strata = sp.allocate_within(fc, pd.DataFrame({"unit_id": ["S01", "S02"], "n": [20, 30]}))
    s = sp.select(frame, strata, "srs", seed=1)
    assert set(s["unit_id"]) == {"S01", "S02"} and len(s) == 50
    with pytest.raises(ValueError, match="personal"):
        sp.select(frame, strata, "srs", seed=1, keep=("channel", "phone"))
    # stratification by unit only
    by_unit = sp.select(frame, pd.DataFrame({"unit_id": ["S03"], "n_h": [7]}), "systematic", seed=1, field_col=None)
    assert len(by_unit) == 7 and (by_unit["stratum"] == "S03").all()


@pytest.mark.parametrize(
    "alloc, kwargs, message",
    [
        (None, dict(method="cluster"), "unknown selection method"),
        (None, dict(method="pps"), "size measure"),
        (pd.DataFrame({"unit_id": ["S01", "S99"], "field": ["justice", "justice"], "n_h": [2, 3]}), {}, "empty frame"),
        (pd.DataFrame({"unit_id": ["S01"], "field": ["justice"], "n_h": [10**6]}), {}, "frame has"),
        (pd.DataFrame({"unit_id": ["S01"], "field": ["justice"], "n_h": [-1]}), {}, "non-negative"),
        (pd.DataFrame({"unit_id": ["S01"], "n_h": [1]}), {}, "lacks column"),
        (None, dict(reserve=-0.1), "reserve share"),
    ],
)
def test_select_bad_input(alloc, kwargs, message):
    frame = make_frame(n_units=2, seed=5)
    if alloc is None:
        alloc = pd.DataFrame({"unit_id": ["S01"], "field": ["justice"], "n_h": [2]})
    with pytest.raises(ValueError, match=message):
        sp.select(frame, alloc, **{"seed": 1, **kwargs})


def test_select_bad_size_measure():
    frame, alloc = small_design()
    with pytest.raises(ValueError, match="negative"):
        sp.select(frame.assign(size=-frame["size"]), alloc, "pps", seed=1, size_col="size")
    with pytest.raises(ValueError, match="positive"):
        zero = frame["size"].where(frame["unit_id"] != "B", 0.0)
        sp.select(frame.assign(size=zero), alloc, "pps", seed=1, size_col="size")
    with pytest.raises(ValueError, match="missing"):
        frame2 = frame.copy()
        frame2.loc[0, "unit_id"] = None
        sp.select(frame2, alloc, "srs", seed=1)


# ------------------------------------------------------------------------------------------------
# form ids
# ------------------------------------------------------------------------------------------------
def luhn_valid(number: str) -> bool:
    """Textbook Luhn validation (ISO/IEC 7812-1 Annex B), written independently of the module."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def all_ids():
    codes = np.repeat(np.arange(10, 60), 999)
    serials = np.tile(np.arange(1, 1000), 50)
    return codes, serials, sp.make_form_ids(codes, serials)


def test_make_form_ids_scheme():
    # hand computation: payload 1,0,0,0,1 -> doubled from the right 2,0,0,0,2 -> sum 4 -> check 6
    assert sp.make_form_ids([10], [1]).tolist() == ["100016"]
    # payload 5,9,9,9,9 -> 10->1, 9, 18->9, 9, 18->9 -> sum 37 -> check 3
    assert sp.make_form_ids(59, 999).tolist() == ["599993"]
    codes, serials, ids = all_ids()
    assert len(set(ids)) == ids.size and all(len(x) == 6 for x in ids[:100])
    assert all(luhn_valid(x) for x in ids[::97])
    assert sp.check_form_ids(ids).all()
    assert np.array_equal(sp.unit_code_of(ids), codes)
    assert np.array_equal(np.char.ljust(ids, 6).astype("U5").astype(int) % 1000, serials)


def test_form_ids_detect_single_digit_errors_and_adjacent_transpositions():
    _, _, ids = all_ids()
    rng = np.random.default_rng(3)
    picked = rng.choice(ids, 1500, replace=False)
    digits = np.array([list(x) for x in picked]).astype(int)
    variants = []
    for pos in range(6):  # every position, every other digit: 1500 x 6 x 9 variants
        for delta in range(1, 10):
            d = digits.copy()
            d[:, pos] = (d[:, pos] + delta) % 10
            variants.append(d)
    single = np.concatenate(variants)
    single_ids = np.array(["".join(map(str, r)) for r in single])
    assert not sp.check_form_ids(single_ids).any()
    swaps, must_fail = [], []
    for pos in range(5):
        d = digits.copy()
        d[:, [pos, pos + 1]] = d[:, [pos + 1, pos]]
        a, b = digits[:, pos], digits[:, pos + 1]
        swaps.append(d)
        must_fail.append((a != b) & ~(((a == 0) & (b == 9)) | ((a == 9) & (b == 0))))
    swapped = np.array(["".join(map(str, r)) for r in np.concatenate(swaps)])
    must_fail = np.concatenate(must_fail)
    assert must_fail.sum() > 5000
    assert not sp.check_form_ids(swapped[must_fail]).any()


def test_check_form_ids_rejects_malformed():
    ok = sp.make_form_ids([23], [45])[0]
    assert sp.check_form_ids([ok, int(ok)]).tolist() == [True, True]
    bad = [None, np.nan, "", "12345", "1234567", "10001a", " " + ok[1:], "100005", "050019", ok[:5] + "x"]
    assert not sp.check_form_ids(bad).any()
    # serial 000 with a correct Luhn digit is still rejected: payload 1,0,0,0,0 -> 2,0,0,0,0 -> check 8
    assert not sp.check_form_ids(["100008"])[0]
    assert luhn_valid("100008")
    with pytest.raises(ValueError, match="invalid form id"):
        sp.unit_code_of([ok, "100015"])
    for codes, serials, msg in [([9], [1], "2-digit"), ([100], [1], "2-digit"), ([10], [0], "1-999"), ([10], [1000], "1-999"), ([np.nan], [1], "missing")]:
        with pytest.raises(ValueError, match=msg):
            sp.make_form_ids(codes, serials)


def test_assign_form_ids(design):
    frame, _, _, strata = design
    s = sp.select(frame, strata, "systematic", seed=1, reserve=0.2)
    units = pd.DataFrame({"unit_id": [f"S{i:02d}" for i in range(1, 7)], "code": [10 + i for i in range(6)]})
    out = sp.assign_form_ids(s, units)
    assert out.columns[0] == "form_id" and out["form_id"].is_unique
    assert sp.check_form_ids(out["form_id"]).all()
    assert (sp.unit_code_of(out["form_id"]) == out["unit_id"].map(units.set_index("unit_id")["code"])).all()
    serial = out["form_id"].str.slice(2, 5).astype(int)
    for _, g in out.assign(serial=serial).groupby("unit_id"):
        assert sorted(g["serial"]) == list(range(1, len(g) + 1))
        main_max = g.loc[g["role"] == "main", "serial"].max()
        res = g[g["role"] == "reserve"].sort_values("serial")
        assert (res["serial"] > main_max).all()
        assert res["reserve_rank"].is_monotonic_increasing
    with pytest.raises(ValueError, match="without a code"):
        sp.assign_form_ids(s, units.assign(code=[10, 11, 12, 13, 14, np.nan]))
    with pytest.raises(ValueError, match="share a code"):
        sp.assign_form_ids(s, units.assign(code=10))
    big = pd.DataFrame({"unit_id": ["S01"] * 1000, "reserve_rank": 0})
    with pytest.raises(ValueError, match="more than 999"):
        sp.assign_form_ids(big, units, legacy=True)
    # a unit needing more than 999 ids gets the current 10-digit format (sipas_lib.formids)
    wide = sp.assign_form_ids(big, units)
    assert (wide["form_id"].str.len() == 10).all() and sp.check_form_ids(wide["form_id"]).all()
    assert (sp.unit_code_of(wide["form_id"]) == 10).all()


# ------------------------------------------------------------------------------------------------
# summaries and the mailing list
# ------------------------------------------------------------------------------------------------
def test_achieved_distribution_and_design_summary(design):
    frame, fc, alloc, strata = design
    s = sp.select(frame, strata, "systematic", seed=3, reserve=0.2, recheck=0.1)
    dist = sp.achieved_distribution(s, fc, "field")
    assert dist["N"].sum() == len(frame) and dist["n"].sum() == alloc["n"].sum()
    # stratified by field: weighted shares reproduce the frame exactly
    np.testing.assert_allclose(dist["weighted_share"], dist["frame_share"])
    np.testing.assert_allclose(dist["sample_share"].sum(), 1.0)
    by_unit = sp.achieved_distribution(s, fc, "field", by=["unit_id"])
    np.testing.assert_allclose(by_unit.groupby("unit_id")["frame_share"].sum(), 1.0)
    summ = sp.design_summary(s)
    assert summ.set_index("unit_id")["n_main"].to_dict() == alloc.set_index("unit_id")["n"].to_dict()
    assert summ.set_index("unit_id")["N"].to_dict() == alloc.set_index("unit_id")["N"].to_dict()
    assert (summ["n_recheck"] == np.ceil(0.1 * summ["n_main"])).all()


def test_mailing_list_only_in_private_folder(design, tmp_path, monkeypatch):
    frame, _, _, strata = design
    monkeypatch.setattr(config, "RAW_DIR", tmp_path / "data" / "raw")
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    paths = config.RunPaths(data_dir=tmp_path / "data" / "demo", run_dir=tmp_path / "reports" / "run1")
    units = pd.DataFrame({"unit_id": [f"S{i:02d}" for i in range(1, 7)], "code": range(10, 16)})
    s = sp.assign_form_ids(sp.select(frame, strata, "systematic", seed=1, reserve=0.1, recheck=0.1), units)
    path = sp.write_mailing_list(s, frame, paths.private)
    assert path.parent == tmp_path / "data" / "raw" / "private" / "run1"
    ml = pd.read_csv(path, encoding="utf-8-sig", dtype={"form_id": str, "phone": str})
    assert len(ml) == len(s) and {"applicant_name", "address", "phone", "form_id"} <= set(ml.columns)
    tid = s["transaction_id"].iloc[0]
    assert ml.loc[ml["transaction_id"] == tid, "phone"].iloc[0] == frame.set_index("transaction_id").loc[tid, "phone"]
    # from the parquet file, reading only the needed columns
    pq = tmp_path / "frame.parquet"
    frame.to_parquet(pq)
    sp.write_mailing_list(s, pq, paths.private, filename="from_parquet.csv")
    assert (paths.private / "from_parquet.csv").exists()
    for bad in (paths.results, tmp_path / "elsewhere", tmp_path / "data" / "raw"):
        with pytest.raises(ValueError, match="personal data"):
            sp.write_mailing_list(s, frame, bad)
    with pytest.raises(ValueError, match="no contact details"):
        sp.write_mailing_list(s, frame[~frame["transaction_id"].isin(s["transaction_id"][:3])], paths.private)
    # nothing personal anywhere under reports/
    assert not any(p.suffix == ".csv" for p in (tmp_path / "reports").rglob("*"))


# ------------------------------------------------------------------------------------------------
# the stage notebook, end to end on a tiny synthetic year
# ------------------------------------------------------------------------------------------------
@pytest.mark.notebooks
def test_notebook_runs_and_keeps_personal_data_private(tmp_path):
    import shutil

    papermill = pytest.importorskip("papermill")
    data = tmp_path / "data"
    data.mkdir()
    ids = ["S01", "S02", "S03", "D01", "D02", "D03"]
    pd.DataFrame(
        {
            "unit_id": ids + ["D01C01"],
            "code": [10, 11, 12, 30, 31, 32, None],
            "name_vi": [f"Đơn vị {u}" for u in ids] + ["Xã 1"],
            "name_en": [f"Unit {u}" for u in ids] + ["Commune 1"],
            "unit_type": ["department"] * 3 + ["district"] * 3 + ["commune"],
            "parent_id": [None] * 6 + ["D01"],
        }
    ).to_csv(data / "units.csv", index=False)
    frame = make_frame(n_units=6, seed=21, n_min=150, n_max=900)
    frame["unit_id"] = frame["unit_id"].map(dict(zip([f"S{i:02d}" for i in range(1, 7)], ids)))
    frame.to_parquet(data / "frame.parquet", index=False)
    run = tmp_path / f"run_sampling_test_{tmp_path.name}"
    (run / "results").mkdir(parents=True)
    private = config.RAW_DIR / "private" / run.name
    try:
        papermill.execute_notebook(
            str(config.NOTEBOOKS_DIR / "10_sampling_design.ipynb"),
            str(run / "out.ipynb"),
            parameters=dict(data_dir=str(data), run_dir=str(run), common={"lang": "en"},
                            stage_settings={"total_departments": 120, "total_districts": 150,
                                            "minimum_per_unit": 20}),
            kernel_name="python3",
            progress_bar=False,
        )
        design = pd.read_parquet(run / "results" / "sample_design.parquet")
        alloc = pd.read_parquet(run / "results" / "sampling_allocation.parquet")
        assert not set(sp.PERSONAL_COLUMNS) & set(design.columns) and not set(sp.PERSONAL_COLUMNS) & set(alloc.columns)
        assert (design["role"] == "main").sum() == 270 and sp.check_form_ids(design["form_id"]).all()
        assert alloc.groupby("unit_type")["n_h"].sum().to_dict() == {"department": 120, "district": 150}
        assert (private / "mailing_list.csv").exists()
        text = json.dumps(json.loads((run / "out.ipynb").read_text(encoding="utf-8")), ensure_ascii=False)
        assert "Unit S01" in text  # the check below would see names if they were shown
        assert "Nguyễn Văn" not in text and "Phố Huế" not in text
        assert not any("mailing" in p.name for p in run.rglob("*"))
    finally:
        shutil.rmtree(private, ignore_errors=True)
