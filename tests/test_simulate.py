"""The seeded demo year: contracts, realism and reproducibility."""

import numpy as np
import pandas as pd
import pytest

from sipas_lib import simulate
from sipas_lib.config import DEMO_DIR
from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib.sampling import check_form_ids

COMMITTED = ("units.csv", "frame_counts.csv", "sample.csv", "responses_departments.xlsx",
             "responses_districts.csv", "spoiled_records.csv", "procedures.csv")


@pytest.fixture(scope="module")
def full_year(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    simulate.write_demo_year(folder, previous_year=True)
    return folder


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = simulate.write_demo_year(tmp_path / "a", seed=7, scale=0.03, n_departments=2, n_districts=3)
    b = simulate.write_demo_year(tmp_path / "b", seed=7, scale=0.03, n_departments=2, n_districts=3)
    c = simulate.write_demo_year(tmp_path / "c", seed=8, scale=0.03, n_departments=2, n_districts=3)
    assert set(a) == set(simulate.DEMO_FILES)
    for name in a:
        assert simulate.content_digest(a[name]) == simulate.content_digest(b[name]), name
    assert simulate.content_digest(a["sample.csv"]) != simulate.content_digest(c["sample.csv"])


def _tiny(folder, **kwargs):
    return simulate.write_demo_year(folder, seed=7, scale=0.03, n_departments=2, n_districts=3, previous_year=True,
                                    **kwargs)


def test_writing_the_demo_year_twice_gives_identical_bytes(tmp_path):
    a, b = _tiny(tmp_path / "a"), _tiny(tmp_path / "b")
    assert set(a) == set(b) and len(a) == 2 * len(simulate.DEMO_FILES)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), f"{name} differs between two writes"


def test_workbooks_carry_no_clock(tmp_path):
    import zipfile

    path = _tiny(tmp_path)["responses_departments.xlsx"]
    with zipfile.ZipFile(path) as book:
        assert {info.date_time for info in book.infolist()} == {simulate.ZIP_ENTRY_TIME}
        core = book.read("docProps/core.xml").decode()
    assert "2025-01-01T00:00:00Z" in core and core.count("2025-01-01T00:00:00Z") == 2
    assert pd.read_excel(path, dtype=str)["Mã số phiếu"].str.fullmatch(r"\d{6}").mean() > 0.9
    for sub in ("", simulate.PREVIOUS_YEAR_DIR):  # the committed workbooks were written the same way
        with zipfile.ZipFile(DEMO_DIR / sub / "responses_departments.xlsx") as book:
            assert {info.date_time for info in book.infolist()} == {simulate.ZIP_ENTRY_TIME}


def test_if_missing_never_touches_an_existing_file(tmp_path):
    import os

    folder = tmp_path / "demo"
    full = _tiny(folder)
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
    for name in COMMITTED:
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


def test_sample_follows_the_hanoi_plan(full_year):
    sample = pd.read_csv(full_year / "sample.csv", dtype={"form_id": str})
    by_type = sample["unit_id"].str[0].value_counts().to_dict()
    assert by_type == {"D": 4800, "S": 1250}  # Hà Nội 2021 (seed 002): 1,250 + 4,800 questionnaires
    assert sample["form_id"].is_unique and sample["form_id"].str.fullmatch(r"\d{6}").all()
    # pi = n_h / N_h inside each unit x field stratum, weights are its inverse.
    assert np.allclose(sample["incl_prob"] * sample["design_weight"], 1.0)
    counts = pd.read_csv(full_year / "frame_counts.csv").groupby(["unit_id", "field"])["N"].sum()
    n_h = sample.groupby(["unit_id", "field"]).size()
    first = sample.groupby(["unit_id", "field"])[["N_h", "n_h"]].first()
    assert (first["N_h"] == counts.loc[first.index]).all() and (first["n_h"] == n_h).all()
    units = pd.read_csv(full_year / "units.csv", dtype={"code": "Int64"})
    code = sample["unit_id"].map(units.set_index("unit_id")["code"])
    assert (sample["form_id"].str[:2].astype(int) == code).all()
    assert check_form_ids(sample["form_id"]).all()


def test_answers_are_realistic(full_year):
    dist = pd.read_csv(full_year / "responses_districts.csv", dtype={"form_id": str})
    dept = simulate.to_vietnamese_headers(pd.DataFrame())  # the mapping exists
    assert dept.empty
    crit = instrument_for_unit_type("district").criteria_codes
    clean = dist.loc[dist[crit].isin([1, 2, 3, 4, 5]).where(dist[crit].notna(), True).all(axis=1)]
    sat = (clean[crit] >= 4).astype(float).where(clean[crit].notna())
    elements = instrument_for_unit_type("district").element_items()
    by_unit = sat.groupby(clean["unit_id"]).mean()
    sipas = pd.concat({e: by_unit[c].mean(axis=1) for e, c in elements.items()}, axis=1).mean(axis=1)
    sipas = sipas.loc[sipas.index.str.fullmatch(r"D(0[1-9]|[12]\d|30)")]
    assert 0.70 < sipas.min() and sipas.max() < 0.98 and sipas.max() - sipas.min() > 0.08
    # Section V only for the ~25 % who gave feedback: all four answered-or-not together, mostly.
    answered_v = clean[["c15", "c16", "c17", "c18"]].notna().any(axis=1)
    assert 0.18 < answered_v.mean() < 0.32
    # Items correlate (one latent satisfaction): every pair of E1 items positively.
    corr = clean[elements["E1"]].corr().to_numpy()
    assert (corr[np.triu_indices(5, 1)] > 0.2).all()
    # Local governance: only some answer, lg8 rarely.
    assert 0.5 < clean["lg1"].notna().mean() < 0.8 and clean["lg8"].notna().mean() < 0.15


def test_response_rates_vary_by_mode_and_unit(full_year):
    sample = pd.read_csv(full_year / "sample.csv", dtype={"form_id": str})
    dist = pd.read_csv(full_year / "responses_districts.csv", dtype={"form_id": str})
    returned = sample["form_id"].isin(dist["form_id"])
    districts = sample["unit_id"].str.startswith("D")
    by_mode = returned[districts].groupby(sample.loc[districts, "survey_mode"]).mean()
    assert by_mode["one_stop"] > by_mode["postal"] > by_mode["online"]
    by_unit = returned[districts].groupby(sample.loc[districts, "unit_id"]).mean()
    assert by_unit.max() - by_unit.min() > 0.15


def test_spoiled_records_are_logged(full_year):
    log = pd.read_csv(full_year / "spoiled_records.csv", dtype=str)
    assert sorted(log["defect"].str.split(":").str[0]) == sorted(
        ["out_of_range"] * 4 + ["bad_check_digit", "unknown_unit", "duplicate_exact", "duplicate_conflicting"])


def test_dossiers_cover_units_and_communes(full_year):
    d = pd.read_parquet(full_year / "dossiers.parquet")
    assert set(d["level"]) == {"unit", "commune"}
    assert set(d["channel"]) == {"direct", "online_l3", "online_l4", "postal"}
    assert set(d["status"]) <= {"on_time", "overdue", "pending"}
    assert d.loc[d["status"] == "overdue", "overdue_reason"].notna().all()
    assert d.loc[d["status"] != "overdue", "overdue_reason"].isna().all()
    assert (d["due_on"] > d["received_on"]).all()
    assert d.loc[d["level"] == "commune", "commune_id"].str.fullmatch(r"D\d\dC\d\d").all()
    proc = pd.read_csv(full_year / "procedures.csv")
    assert d["procedure_id"].isin(proc["procedure_id"]).all()


def test_personal_data_only_in_the_frame_and_raw_responses(full_year):
    frame = pd.read_parquet(full_year / "frame.parquet")
    assert {"applicant_name", "phone", "address"} <= set(frame.columns)
    for name in ("sample.csv", "frame_counts.csv", "units.csv", "procedures.csv"):
        cols = set(pd.read_csv(full_year / name, nrows=1).columns)
        assert not cols & {"applicant_name", "phone", "address", "enumerator_name", "enumerator_phone"}, name
