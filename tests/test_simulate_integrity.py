"""The demo year's integrity cases (sipas_lib.simulate_integrity): what is planted, and that it is found.

The year is written into a temporary folder (never data/demo): four departments and the communes of four old
districts at full scale, so a unit has enough forms for its own survey to be compared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sipas_lib import intake, schemas, simulate
from sipas_lib import self_survey as ss
from sipas_lib import simulate_integrity as si
from sipas_lib import weighting as wt
from sipas_lib.index import satisfaction_indices
from sipas_lib.inputs import read_input
from sipas_lib.instrument import load_instrument
from sipas_lib.units import load_units

YEAR, SEED = 2025, 7
CRITERIA = [f"c{k:02d}" for k in range(1, 19)]


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrity_year")
    simulate.write_demo_year(folder, year=YEAR, seed=SEED, scale=1.0, n_departments=4, n_districts=4)
    return folder


@pytest.fixture(scope="module")
def responses(year) -> pd.DataFrame:
    departments = pd.read_excel(year / "responses_departments.xlsx", dtype={"Mã số phiếu": str})
    local = pd.read_csv(year / "responses_communes.csv", dtype={"form_id": str})
    return pd.concat([departments.rename(columns=intake.VIETNAMESE_HEADERS), local], ignore_index=True)


@pytest.fixture(scope="module")
def planted(year) -> pd.DataFrame:
    return pd.read_csv(year / "planted_cases.csv", dtype=str, keep_default_na=False)


@pytest.mark.slow
def test_the_integrity_files_are_written_beside_the_responses(year):
    assert set(si.FILES) <= set(simulate.COMMON_FILES)
    for name in si.FILES:
        assert (year / name).exists(), name
    own = pd.read_csv(year / "self_survey.csv", nrows=1)
    assert list(own.columns) == schemas.contract("self_survey.csv").columns
    recheck = pd.read_csv(year / "recheck.csv", nrows=1)
    contract = schemas.contract("recheck.csv").columns
    assert [c for c in contract if c in recheck.columns] == list(recheck.columns)  # the re-check contract's columns
    assert {"form_id", "rechecked_by", "recheck_date", "outcome", *si.RECHECK_CRITERIA} <= set(recheck.columns)


@pytest.mark.slow
def test_every_response_has_a_collection_point_and_a_return_date(responses, planted):
    assert responses["collection_point"].notna().all() and responses["return_date"].notna().all()
    real = responses[~responses["form_id"].isin(planted["form_id"])]  # the block all went through one post office
    point, channel = real["collection_point"], real["channel"]
    assert point[channel == "postal"].str.fullmatch(r"BC\d{5}").all()
    assert (point[channel == "one_stop"] == "MC-" + real.loc[channel == "one_stop", "unit_id"]).all()
    assert (point[channel == "online"] == "online").all()
    filled, back = pd.to_datetime(real["survey_date"]), pd.to_datetime(real["return_date"])
    delay = (back - filled).dt.days
    assert delay.between(0, 12).all() and (delay[channel != "postal"] == 0).all() and delay[channel == "postal"].min() >= 2
    offices = real.loc[channel == "postal"].groupby("unit_id")["collection_point"].nunique()
    assert offices.between(1, 5).all() and offices.max() >= 3


@pytest.mark.slow
def test_the_planted_block_looks_like_staff_filled_it(year, responses, planted):
    sample = pd.read_csv(year / "sample.csv", dtype={"form_id": str})
    fabricated = planted[planted["case"] == "fabrication"]
    assert fabricated["unit_id"].nunique() == 2  # a department and a local unit
    spoiled = set(pd.read_csv(year / "spoiled_records.csv", dtype=str)["form_id"])
    assert not set(fabricated["form_id"]) & spoiled
    for unit, block in fabricated.groupby("unit_id"):
        forms = responses[responses["form_id"].isin(block["form_id"])]
        assert len(forms) == len(block)  # each planted form is in the responses once
        issued = int((sample["unit_id"] == unit).sum())
        assert len(block) == max(round(si.FABRICATION_SHARE * issued), 5)
        answers = forms[CRITERIA].to_numpy()
        assert np.isin(answers, [4.0, 5.0]).all()  # every criterion satisfied, section V filled in too
        template = pd.DataFrame(answers).mode().iloc[0].to_numpy()
        assert (answers == template).mean() > 0.9  # near-identical
        assert forms["return_date"].nunique() == forms["survey_date"].nunique() == 1
        assert forms["collection_point"].nunique() == 1 and forms["collection_point"].iloc[0].startswith("BC")
        assert forms["enumerator_phone"].nunique() == 1
        others = responses[(responses["unit_id"] == unit) & ~responses["form_id"].isin(block["form_id"])]
        assert not (others["enumerator_phone"] == forms["enumerator_phone"].iloc[0]).any()  # not a real enumerator


@pytest.mark.slow
def test_intake_accepts_the_planted_forms_and_still_sets_aside_exactly_the_spoiled_ones(year, planted):
    result = intake.intake_year(year, year=YEAR)
    fabricated = set(planted.loc[planted["case"] == "fabrication", "form_id"])
    assert fabricated <= set(result.accepted["form_id"])
    spoiled = pd.read_csv(year / "spoiled_records.csv", dtype=str)
    assert set(result.quarantine["form_id"]) == set(spoiled["form_id"])


@pytest.mark.slow
def test_recheck_covers_the_returned_forms_flagged_in_the_sample(year, responses, planted):
    recheck = pd.read_csv(year / "recheck.csv", dtype={"form_id": str})
    sample = pd.read_csv(year / "sample.csv", dtype={"form_id": str})
    spoiled = set(pd.read_csv(year / "spoiled_records.csv", dtype=str)["form_id"])
    expected = set(sample.loc[sample["recheck"], "form_id"]) & set(responses["form_id"]) - spoiled
    assert set(recheck["form_id"]) == expected and recheck["form_id"].is_unique
    assert set(recheck["rechecked_by"]) <= {"MTTQ", "CCB", "SNV"}
    asked = recheck[list(si.RECHECK_CRITERIA)]
    assert asked[recheck["outcome"] != "confirmed"].isna().all().all()
    assert asked[recheck["outcome"] == "confirmed"].notna().to_numpy().mean() > 0.95  # unless left empty originally
    filled = responses.drop_duplicates("form_id").set_index("form_id").loc[recheck["form_id"], "survey_date"]
    assert (pd.to_datetime(recheck["recheck_date"]).to_numpy() >= pd.to_datetime(filled).to_numpy()).all()
    assert recheck["respondent_phone"].astype(str).str.fullmatch(r"\d{9,10}").all()  # fake contacts, to be dropped


def test_recheck_outcomes_of_real_and_planted_forms():
    """Outcome shares of 1,000 real and 1,000 planted forms against :data:`RECHECK_OUTCOMES` (binomial ± 4 SE)."""
    n = 2000
    ids = [f"{k:06d}" for k in range(n)]
    answers = pd.DataFrame({"form_id": ids, "unit_id": np.repeat(["A", "B"], n // 2), "return_date": "2025-10-20",
                            **{c: 4.0 for c in si.RECHECK_CRITERIA}})
    sample = answers[["form_id", "unit_id"]].assign(recheck=True)
    planted = set(ids[1::2])
    out = si.simulate_recheck(answers, sample, planted, seed=3)
    for kind, forms in (("real", ~out["form_id"].isin(planted)), ("planted", out["form_id"].isin(planted))):
        shares = out.loc[forms, "outcome"].value_counts(normalize=True)
        for outcome, p in si.RECHECK_OUTCOMES[kind].items():
            assert abs(shares.get(outcome, 0.0) - p) < 4 * np.sqrt(p * (1 - p) / forms.sum()), (kind, outcome)
    confirmed = out[out["outcome"] == "confirmed"]
    step = (confirmed[list(si.RECHECK_CRITERIA)] - 4.0).abs()
    assert set(np.unique(step.to_numpy())) <= {0.0, 1.0}


@pytest.mark.slow
def test_own_surveys_cover_every_unit_monthly_and_intake_sets_aside_exactly_the_spoiled_rows(year, planted):
    units = read_input(year, "units")
    surveyed = units.loc[units["unit_type"] != "province", "unit_id"]
    result = ss.read_self_survey(year / "self_survey.csv", units, year=YEAR)
    assert set(result.accepted["unit_id"]) == set(surveyed)
    spoiled = planted[planted["case"] == "self_survey_spoiled"]
    rows = spoiled["detail"].str.extract(r"row (\d+)")[0].astype(int)
    assert sorted(result.quarantine["source_row"]) == sorted(rows)
    assert set(result.quarantine["rule"]) == {"item_value", "unit_unknown", "survey_date_value"}
    registry = load_units().set_index("unit_id")
    per_unit = result.accepted.groupby("unit_id").agg(first=("month", "min"), forms=("month", "size"),
                                                      months=("month", "nunique"))
    start = registry.loc[per_unit.index, "valid_from"]
    expected_first = np.where(start.dt.year == YEAR, start.dt.month, 1)
    assert (per_unit["first"].to_numpy() == expected_first).all()  # from the month the unit came into being
    per_month = per_unit["forms"] / (13 - per_unit["first"])
    assert per_month.between(si.FORMS_PER_MONTH[0] - 5, si.FORMS_PER_MONTH[1] + 5).all()
    assert (per_unit["months"] == 13 - per_unit["first"]).all()


@pytest.mark.slow
def test_the_inflating_units_are_flagged_and_the_clean_units_are_not(year, planted):
    """End to end: intake, the year's design, the indices on the shared criteria, the comparison."""
    units = read_input(year, "units")
    accepted = intake.intake_year(year, year=YEAR).accepted
    sample = pd.read_csv(year / "sample.csv", dtype={"form_id": str})
    counts = pd.read_csv(year / "frame_counts.csv")
    form = load_instrument("hanoi_pl5_district")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calibration notes of the small year
        design = wt.build_annual_design(accepted, sample, counts, items=form.item_codes).design
    independent = pd.concat([satisfaction_indices(design, form, by="unit_id"), ss.shared_index(design)])
    own = ss.read_self_survey(year / "self_survey.csv", units, year=YEAR).accepted
    flags = ss.self_survey_flags(ss.self_survey_gaps(own, independent)).set_index("unit_id")
    inflating = set(planted.loc[planted["case"] == "inflated_self_survey", "unit_id"])
    assert len(inflating) == 2 and flags.loc[sorted(inflating), "flagged"].all()
    for unit in inflating:
        assert "beyond the 5.0-point tolerance" in flags.loc[unit, "reason"]
        assert flags.loc[unit, "own_share"] > 0.97
    clean = flags.drop(index=sorted(inflating))
    # one-sided 2.5 % per unit at most (measured 1 % in test_self_survey's simulation): one of 13 is chance
    assert clean["flagged"].sum() <= 1, clean.loc[clean["flagged"], "reason"].tolist()
    assert (clean["value"].abs() < 0.25).all()
    schemas.validate("self_survey_flags", flags.reset_index())
