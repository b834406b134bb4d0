"""The seeded demo year: contracts, realism and reproducibility."""

import numpy as np
import pandas as pd
import pytest

from sipas_lib import formids, simulate
from sipas_lib.config import DEMO_DIR
from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib.sampling import check_form_ids
from sipas_lib.units import load_units, survey_tier

COMMITTED = ("units.csv", "frame_counts.csv", "sample.csv", "responses_departments.xlsx",
             "spoiled_records.csv", "procedures.csv")
#: The local units' responses of each committed folder: the demo year (2025) is two-tier, the previous one not.
LOCAL_FILE = {"": "responses_communes.csv", simulate.PREVIOUS_YEAR_DIR: "responses_districts.csv"}


@pytest.fixture(scope="module")
def full_year(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    simulate.write_demo_year(folder, previous_year=True)
    return folder


def _tiny(folder, **kwargs):
    return simulate.write_demo_year(folder, seed=7, scale=0.03, n_departments=2, n_districts=3, previous_year=True,
                                    **kwargs)


@pytest.fixture(scope="module")
def tiny_year(tmp_path_factory) -> dict:
    """One tiny two-tier year with its previous year (:func:`_tiny`), written once for the tests that only read
    it; a test that changes files copies it first."""
    return _tiny(tmp_path_factory.mktemp("tiny_year"))


@pytest.mark.slow
def test_same_seed_same_files_other_seed_other_files(tiny_year, tmp_path):
    # the year alone (no previous year) has the files of its structure, and the same content as the year
    # written with its previous year: the previous year draws from its own (seed, year) generator
    b = simulate.write_demo_year(tmp_path / "b", seed=7, scale=0.03, n_departments=2, n_districts=3)
    c = simulate.write_demo_year(tmp_path / "c", seed=8, scale=0.03, n_departments=2, n_districts=3)
    assert set(b) == set(simulate.TWO_TIER_FILES) == set(simulate.demo_files(2025))
    for name in b:
        assert simulate.content_digest(tiny_year[name]) == simulate.content_digest(b[name]), name
    assert simulate.content_digest(b["sample.csv"]) != simulate.content_digest(c["sample.csv"])


@pytest.mark.slow
def test_writing_the_demo_year_twice_gives_identical_bytes(tiny_year, tmp_path):
    a, b = tiny_year, _tiny(tmp_path / "b")
    assert set(a) == set(b) == set(simulate.TWO_TIER_FILES) | {f"{simulate.PREVIOUS_YEAR_DIR}/{name}"
                                                               for name in simulate.DEMO_FILES}
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), f"{name} differs between two writes"


def test_workbooks_carry_no_clock(tiny_year):
    import zipfile

    path = tiny_year["responses_departments.xlsx"]
    with zipfile.ZipFile(path) as book:
        assert {info.date_time for info in book.infolist()} == {simulate.ZIP_ENTRY_TIME}
        core = book.read("docProps/core.xml").decode()
    assert "2025-01-01T00:00:00Z" in core and core.count("2025-01-01T00:00:00Z") == 2
    assert pd.read_excel(path, dtype=str)["Mã số phiếu"].str.fullmatch(r"\d{10}").mean() > 0.9
    for sub in ("", simulate.PREVIOUS_YEAR_DIR):  # the committed workbooks were written the same way
        with zipfile.ZipFile(DEMO_DIR / sub / "responses_departments.xlsx") as book:
            assert {info.date_time for info in book.infolist()} == {simulate.ZIP_ENTRY_TIME}


@pytest.mark.slow
def test_if_missing_never_touches_an_existing_file(tiny_year, tmp_path):
    import os
    import shutil

    folder = tmp_path / "demo"
    shutil.copytree(tiny_year["units.csv"].parent, folder)  # a written tiny year, copied: this test changes it
    full = {name: folder / name for name in tiny_year}
    kept = ["responses_departments.xlsx", "sample.csv", f"{simulate.PREVIOUS_YEAR_DIR}/responses_departments.xlsx"]
    before = {}
    for name in kept:  # an old time stamp and content the seed would not give
        full[name].write_bytes(full[name].read_bytes() + b"\n")
        os.utime(full[name], (1_000_000_000, 1_000_000_000))
        before[name] = (full[name].read_bytes(), full[name].stat().st_mtime_ns)
    removed = ["units.csv", "frame.parquet", f"{simulate.PREVIOUS_YEAR_DIR}/responses_districts.csv"]
    reference = {name: full[name].read_bytes() for name in removed}
    for name in removed:
        full[name].unlink()
    written = _tiny(folder, if_missing=True)
    assert set(written) == set(removed)
    for name in kept:
        assert (full[name].read_bytes(), full[name].stat().st_mtime_ns) == before[name], name
    for name in removed:
        assert full[name].read_bytes() == reference[name], f"{name} rewritten differently"
    assert _tiny(folder, if_missing=True) == {}


@pytest.mark.parametrize("sub", ["", simulate.PREVIOUS_YEAR_DIR])
def test_committed_demo_files_are_what_the_seed_gives(full_year, sub):
    for name in COMMITTED + (LOCAL_FILE[sub],):
        committed = DEMO_DIR / sub / name
        assert committed.exists(), f"{committed} is not committed"
        assert simulate.content_digest(committed) == simulate.content_digest(full_year / sub / name), (
            f"{committed} differs from `sipas demo` output: regenerate it")
    assert simulate.demo_is_complete(full_year, previous_year=True)


def test_consecutive_years_keep_the_units_order_with_a_drift():
    now = simulate.unit_effects(50, 5, 18, seed=2025, year=2025)
    before = simulate.unit_effects(50, 5, 18, seed=2025, year=2024)
    assert np.array_equal(now["item"], before["item"])
    change = now["unit_base"] - before["unit_base"]
    assert 0 < change.std() < 0.2 and np.corrcoef(now["unit_base"], before["unit_base"])[0, 1] > 0.8


def _year(folder):
    sample = pd.read_csv(folder / "sample.csv", dtype={"form_id": str})
    units = pd.read_csv(folder / "units.csv", dtype={"code": "Int64"})
    tier = pd.Series(survey_tier(units).to_numpy(), index=units["unit_id"])
    return sample, units, sample["unit_id"].map(tier)


def _check_design(folder, sample, units):
    assert sample["form_id"].is_unique and check_form_ids(sample["form_id"]).all()
    # pi = n_h / N_h inside each unit x field stratum, weights are its inverse.
    assert np.allclose(sample["incl_prob"] * sample["design_weight"], 1.0)
    counts = pd.read_csv(folder / "frame_counts.csv").groupby(["unit_id", "field"])["N"].sum()
    n_h = sample.groupby(["unit_id", "field"]).size()
    first = sample.groupby(["unit_id", "field"])[["N_h", "n_h"]].first()
    assert (first["N_h"] == counts.loc[first.index]).all() and (first["n_h"] == n_h).all()
    code = sample["unit_id"].map(units.set_index("unit_id")["code"])
    assert (formids.unit_code_of(sample["form_id"]) == code.to_numpy()).all()


def test_demo_year_is_two_tier_with_power_allocation_over_126_communes(full_year):
    sample, units, tier = _year(full_year)
    assert units["unit_type"].value_counts().to_dict() == {"commune": 75, "ward": 51, "department": 15,
                                                            "province": 1}
    assert tier.value_counts().to_dict() == {"local": 4800, "department": 1250}  # Hà Nội 2021: 1,250 + 4,800
    assert sample["form_id"].str.fullmatch(r"\d{10}").all()  # 126 communes' codes need the 10-digit ids
    _check_design(full_year, sample, units)
    per_commune = sample.loc[tier == "local"].groupby("unit_id").size()
    sizes = pd.read_csv(full_year / "frame_counts.csv").groupby("unit_id")["N"].sum().loc[per_commune.index]
    assert len(per_commune) == 126 and per_commune.min() >= simulate.LOCAL_ALLOCATION["minimum"]
    # power allocation: bigger communes get more forms, but less than in proportion
    above = per_commune > simulate.LOCAL_ALLOCATION["minimum"]
    assert per_commune.max() > 1.5 * per_commune.min() and np.corrcoef(per_commune[above], sizes[above])[0, 1] > 0.9
    assert (per_commune / sizes).max() > 2 * (per_commune / sizes).min()


def test_previous_year_keeps_the_old_structure(full_year):
    folder = full_year / simulate.PREVIOUS_YEAR_DIR
    sample, units, tier = _year(folder)
    assert units["unit_type"].value_counts().to_dict() == {"commune": 120, "district": 30, "department": 20,
                                                            "province": 1}
    assert tier.value_counts().to_dict() == {"local": 4800, "department": 1250}
    assert sample["form_id"].str.fullmatch(r"\d{6}").all()  # the legacy ids while every code fits
    _check_design(folder, sample, units)
    assert sample.groupby("unit_id").size().groupby(tier.groupby(sample["unit_id"]).first()).nunique().max() <= 2
    assert (folder / "responses_districts.csv").exists() and not (folder / "responses_communes.csv").exists()


def test_commune_effects_follow_their_predecessor_districts():
    registry = load_units()
    crosswalk = simulate._crosswalk()
    old = registry[registry["unit_id"].isin(crosswalk["old_unit_id"])]
    new = registry[registry["unit_id"].isin(crosswalk["new_unit_id"])]
    before = simulate.demo_effects(old, 5, 18, seed=2025, year=2025, registry=registry)
    after = simulate.demo_effects(new, 5, 18, seed=2025, year=2025, registry=registry)
    w = crosswalk.pivot_table(index="new_unit_id", columns="old_unit_id", values="share_of_new", fill_value=0)
    w = w.reindex(index=new["unit_id"], columns=old["unit_id"], fill_value=0)
    expected = (w.to_numpy() / w.to_numpy().sum(axis=1, keepdims=True)) @ before["unit_base"]
    own = after["unit_base"] - expected
    assert 0.02 < own.std() < 0.1 and abs(own.mean()) < 0.03  # a small own effect around the inherited one
    assert np.corrcoef(after["unit_base"], expected)[0, 1] > 0.9
    # a department that only changed its name keeps its effect
    i, j = list(new["unit_id"]).index("S90102"), list(old["unit_id"]).index("S02")
    assert abs(after["unit_base"][i] - before["unit_base"][j]) < 0.3


def test_tiny_two_tier_year_covers_the_ground_of_its_tiny_previous_year(tiny_year):
    now = pd.read_csv(tiny_year["units.csv"])
    before = pd.read_csv(tiny_year[f"{simulate.PREVIOUS_YEAR_DIR}/units.csv"])
    crosswalk = simulate._crosswalk()
    local = now.loc[now["unit_type"].isin(["commune", "ward"]), "unit_id"]
    main = crosswalk.sort_values("share_of_new").drop_duplicates("new_unit_id", keep="last").set_index("new_unit_id")
    assert len(local) >= 2 and set(main.loc[local, "old_unit_id"]) <= set(before["unit_id"])
    assert now["unit_type"].value_counts()["department"] == 2


def test_a_year_can_keep_the_old_structure(tmp_path):
    written = _tiny(tmp_path, structure="legacy")
    assert set(written) == set(simulate.DEMO_FILES) | {f"{simulate.PREVIOUS_YEAR_DIR}/{n}" for n in simulate.DEMO_FILES}
    units = pd.read_csv(tmp_path / "units.csv")
    assert units["unit_type"].value_counts().to_dict() == {"commune": 12, "district": 3, "department": 2, "province": 1}
    assert pd.read_csv(tmp_path / "sample.csv", dtype={"form_id": str})["form_id"].str.fullmatch(r"\d{6}").all()
    with pytest.raises(ValueError, match="structure must be one of"):
        simulate.write_demo_year(tmp_path / "x", structure="three_tier")


def _local_answers(folder):
    """The year's clean local answers (codes 1-5 or empty) and each unit's unweighted SIPAS with its n.

    Unweighted is unbiased here: answers do not depend on the field a unit's strata are drawn by."""
    dist = pd.read_csv(folder / "responses_communes.csv", dtype={"form_id": str})
    instrument = instrument_for_unit_type("commune")
    crit = instrument.criteria_codes
    clean = dist.loc[dist[crit].isin([1, 2, 3, 4, 5]).where(dist[crit].notna(), True).all(axis=1)]
    sat = (clean[crit] >= 4).astype(float).where(clean[crit].notna())
    by_unit = sat.groupby(clean["unit_id"]).mean()
    sipas = pd.concat({e: by_unit[c].mean(axis=1) for e, c in instrument.element_items().items()}, axis=1).mean(axis=1)
    units = pd.read_csv(folder / "units.csv")
    sipas = sipas.loc[sipas.index.isin(units["unit_id"])]
    return clean, sipas, clean.groupby("unit_id").size().loc[sipas.index]


def test_answers_are_realistic(full_year):
    dept = simulate.to_vietnamese_headers(pd.DataFrame())  # the mapping exists
    assert dept.empty
    clean, sipas, n = _local_answers(full_year)
    elements = instrument_for_unit_type("commune").element_items()
    big = sipas[n >= 25]
    assert 0.65 < big.min() and 0.78 < big.median() < 0.94 and big.max() - big.min() > 0.08
    assert len(big) > 60  # most communes return enough forms to be compared
    # Section V only for the ~25 % who gave feedback: all four answered-or-not together, mostly.
    answered_v = clean[["c15", "c16", "c17", "c18"]].notna().any(axis=1)
    assert 0.18 < answered_v.mean() < 0.32
    # Items correlate (one latent satisfaction): every pair of E1 items positively.
    corr = clean[elements["E1"]].corr().to_numpy()
    assert (corr[np.triu_indices(5, 1)] > 0.2).all()
    # Local governance: only some answer, lg8 rarely.
    assert 0.5 < clean["lg1"].notna().mean() < 0.8 and clean["lg8"].notna().mean() < 0.15


@pytest.mark.parametrize("sub", ["", simulate.PREVIOUS_YEAR_DIR])
def test_response_rates_vary_by_mode_and_unit(full_year, sub):
    sample, _, tier = _year(full_year / sub)
    local = pd.read_csv(full_year / sub / LOCAL_FILE[sub], dtype={"form_id": str})
    returned = sample["form_id"].isin(local["form_id"])
    is_local = (tier == "local").to_numpy()
    by_mode = returned[is_local].groupby(sample.loc[is_local, "survey_mode"]).mean()
    assert by_mode["one_stop"] > by_mode["postal"] > by_mode["online"]
    by_unit = returned[is_local].groupby(sample.loc[is_local, "unit_id"]).mean()
    assert by_unit.max() - by_unit.min() > 0.15


def test_spoiled_records_are_logged(full_year):
    log = pd.read_csv(full_year / "spoiled_records.csv", dtype=str)
    assert sorted(log["defect"].str.split(":").str[0]) == sorted(
        ["out_of_range"] * 4 + ["bad_check_digit", "unknown_unit", "duplicate_exact", "duplicate_conflicting"])


def test_dossiers_of_the_two_tier_year_are_the_units_own(full_year):
    d = pd.read_parquet(full_year / "dossiers.parquet")
    units = pd.read_csv(full_year / "units.csv")
    assert set(d["level"]) == {"unit"} and d["commune_id"].isna().all()
    assert set(d["unit_id"]) == set(units.loc[units["unit_type"] != "province", "unit_id"])


def test_dossiers_cover_units_and_communes(full_year):
    full_year = full_year / simulate.PREVIOUS_YEAR_DIR
    d = pd.read_parquet(full_year / "dossiers.parquet")
    assert set(d["level"]) == {"unit", "commune"}
    assert set(d["channel"]) == {"direct", "online_l3", "online_l4", "postal"}
    assert set(d["status"]) <= {"on_time", "overdue", "pending"}
    assert d.loc[d["status"] == "overdue", "overdue_reason"].notna().all()
    assert d.loc[d["status"] != "overdue", "overdue_reason"].isna().all()
    assert (d["due_on"] > d["received_on"]).all()
    units = pd.read_csv(full_year / "units.csv").set_index("unit_id")
    communes = d.loc[d["level"] == "commune"]
    assert (units.loc[communes["commune_id"], "parent_id"].to_numpy() == communes["unit_id"].to_numpy()).all()
    proc = pd.read_csv(full_year / "procedures.csv")
    assert d["procedure_id"].isin(proc["procedure_id"]).all()


def test_personal_data_only_in_the_frame_and_raw_responses(full_year):
    frame = pd.read_parquet(full_year / "frame.parquet")
    assert {"applicant_name", "phone", "address"} <= set(frame.columns)
    for name in ("sample.csv", "frame_counts.csv", "units.csv", "procedures.csv"):
        cols = set(pd.read_csv(full_year / name, nrows=1).columns)
        assert not cols & {"applicant_name", "phone", "address", "enumerator_name", "enumerator_phone"}, name


# ------------------------------------------------------------------------------------------------
# administrative records that follow satisfaction (issue 14)
# ------------------------------------------------------------------------------------------------
def _r_squared(y: np.ndarray, X: np.ndarray) -> float:
    """R² of the OLS fit of ``y`` on ``X`` with an intercept."""
    X = np.column_stack([np.ones(len(y)), X])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return 1 - np.var(y - X @ beta) / np.var(y)


def test_true_index_is_what_the_answers_estimate(full_year):
    _, sipas, n = _local_answers(full_year)
    units = pd.read_csv(full_year / "units.csv", dtype={"code": "Int64"})
    truth = simulate.true_unit_index(units, seed=simulate.DEFAULT_SEED, year=simulate.DEFAULT_YEAR).loc[sipas.index]
    error = sipas - truth
    # unbiased: the mean error over 126 units is within 3 of its standard errors of 0 (sd of a share / sqrt(n))
    assert abs(error.mean()) < 3 * error.std() / np.sqrt(len(error))
    # and the error has the sampling variance of ~30 respondents, not more: E[n * error^2] is about
    # p(1-p) x (average correlation of the criteria), below p(1-p) = 0.1 at p = 0.89
    assert 0.02 < (n * error**2).mean() < 0.1
    assert np.corrcoef(sipas, truth)[0, 1] > 0.5


def test_admin_quality_is_the_units_own_whichever_units_a_year_keeps():
    registry = load_units()
    full = simulate.year_units(registry, 2025)
    tiny = simulate.year_units(registry, 2025, n_departments=2, n_local=4)
    q_full = simulate.admin_quality(full, seed=7, year=2025, registry=registry)
    q_tiny = simulate.admin_quality(tiny, seed=7, year=2025, registry=registry)
    pd.testing.assert_frame_equal(q_tiny, q_full.loc[q_tiny.index])
    assert list(q_full.columns) == ["quality", *simulate.ADMIN_LINKS]
    # each record kind moves with the quality in the direction of its link (slope b, own noise SD 0.3)
    for kind, slope in simulate.ADMIN_LINKS.items():
        assert np.sign(np.corrcoef(q_full["quality"], q_full[kind])[0, 1]) == np.sign(slope)
    # m = rho z + sqrt(1 - rho^2) zeta: its correlation with the true index is about rho times that of z
    truth = simulate.true_unit_index(full, seed=7, year=2025, registry=registry).loc[q_full.index]
    r = np.corrcoef(q_full["quality"], truth)[0, 1]
    assert 0.6 < r < simulate.QUALITY_CORRELATION + 0.05
    other_seed = simulate.admin_quality(tiny, seed=8, year=2025, registry=registry)
    assert not np.allclose(other_seed["quality"], q_tiny["quality"])


def test_records_of_a_better_unit_are_better_and_the_catalogue_does_not_move():
    units = simulate.year_units(load_units(), 2025, n_departments=2, n_local=1)
    surveyed = units.loc[units["unit_type"] != "province", "unit_id"]
    sizes = pd.Series(8_000, index=surveyed)
    good_bad = pd.DataFrame({"quality": 0.0, **{k: 0.0 for k in simulate.ADMIN_LINKS}}, index=surveyed)
    good, bad = surveyed.iloc[0], surveyed.iloc[1]
    for kind, slope in simulate.ADMIN_LINKS.items():  # two SDs of quality apart
        good_bad.loc[good, kind], good_bad.loc[bad, kind] = slope, -slope
    plain = simulate.simulate_dossiers(units, sizes, 2025, np.random.default_rng(1))
    moved = simulate.simulate_dossiers(units, sizes, 2025, np.random.default_rng(1), quality=good_bad)
    pd.testing.assert_frame_equal(plain["procedures"], moved["procedures"])
    assert len(plain["dossiers"]) == len(moved["dossiers"])
    d = moved["dossiers"]
    late = d.loc[d["status"] != "pending"].groupby("unit_id")["status"].apply(lambda s: (s == "overdue").mean())
    online = d.groupby("unit_id")["channel"].apply(lambda s: s.str.startswith("online").mean())
    per_1000 = {name: 1000 * moved[name].groupby("unit_id").size() / d.groupby("unit_id").size()
                for name in ("feedback", "opinions")}
    # late odds x e^(-0.6) vs x e^(0.6) around 3 %: about 1.7 % against 5.3 % (10,400 dossiers each)
    assert late[good] < 0.025 < 0.04 < late[bad]
    assert online[good] > online[bad] + 0.05
    assert per_1000["feedback"][good] < 4 < per_1000["feedback"][bad]
    assert per_1000["opinions"][good] > 200 > per_1000["opinions"][bad]


def test_admin_covariates_explain_the_true_index_as_documented(full_year):
    """The documented strength: the true index on the model's default covariates, R² about 0.6 (0.45-0.75)."""
    from sipas_lib import small_area
    from sipas_lib.settings import load_settings

    terms = list(load_settings().section("index_ranking")["small_area_covariates"])
    units = pd.read_csv(full_year / "units.csv", dtype={"code": "Int64"})
    truth = simulate.true_unit_index(units, seed=simulate.DEFAULT_SEED, year=simulate.DEFAULT_YEAR)
    cov = small_area.admin_covariates(full_year, simulate.DEFAULT_YEAR).merge(
        truth.rename("true").reset_index(), on="unit_id").merge(units[["unit_id", "unit_type"]], on="unit_id")
    for unit_type in ("commune", "ward"):
        g = cov.loc[cov["unit_type"] == unit_type]
        assert 0.45 < _r_squared(g["true"].to_numpy(), g[terms].to_numpy(float)) < 0.75, unit_type
    rates = cov.loc[cov["unit_type"].isin(["commune", "ward"])]
    assert 0.9 < rates["on_time_rate"].min() and rates["on_time_rate"].max() < 1  # plausible rates
    assert np.corrcoef(rates["on_time_rate"], rates["true"])[0, 1] > 0.3
    assert np.corrcoef(rates["complaints_per_1000"], rates["true"])[0, 1] < 0
