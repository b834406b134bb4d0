"""The ministry's national survey (issue 12 item 7): sampler, design parity with R, profile, a tiny run.

Parity: ``tests/r/national_reference.R`` builds the national design in R ``survey`` from the
fixture's inputs (``tests/fixtures/national/``) and writes ``reference.csv``; the test does not
need R.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import config, estimation, schemas, simulate_national, weighting
from sipas_lib.profiles import ProfileError, load_profile
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError, index_ranking, intake_quality
from sipas_lib.stages import weighting as weighting_stage

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "national"
TOL = 1e-8


# ------------------------------------------------------------------------------------------------
# the sampler
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_year():
    return simulate_national.national_year(year=2025, seed=11, provinces=6, per_province=5, per_commune=20)


def test_two_stage_sample_has_the_planned_shape(small_year):
    frame, sample = small_year["psu_frame.csv"], small_year["sample.csv"]
    units = small_year["units.csv"]
    assert set(units["unit_type"]) == {"province"} and len(units) == 6
    # every commune of the six provinces is in the first-stage frame, exactly 5 drawn per province
    assert frame["commune_id"].is_unique
    assert (frame.groupby("unit_id")["selected"].sum() == 5).all()
    # 20 forms in every selected commune, none elsewhere; the stratum is the commune
    per_commune = sample.groupby("stratum").size()
    assert set(per_commune.index) == set(frame.loc[frame["selected"], "commune_id"])
    assert (per_commune == 20).all()
    assert len(sample) == 6 * 5 * 20 and sample["form_id"].is_unique


def test_inclusion_probabilities_are_the_product_of_the_two_stages(small_year):
    frame, sample = small_year["psu_frame.csv"], small_year["sample.csv"]
    # first stage: PPS within province, pi = n a / sum a (none capped here), sums to n per province
    sums = frame.groupby("unit_id")["incl_prob_psu"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 5.0, rtol=1e-12)
    share = frame["size"] / frame.groupby("unit_id")["size"].transform("sum")
    np.testing.assert_allclose(frame["incl_prob_psu"], np.minimum(5 * share, 1.0), rtol=1e-12)
    pi1 = sample["stratum"].map(frame.set_index("commune_id")["incl_prob_psu"])
    np.testing.assert_allclose(sample["incl_prob"], pi1 * 20 / sample["N_h"], rtol=1e-12)
    np.testing.assert_allclose(sample["design_weight"] * sample["incl_prob"], 1.0, rtol=1e-12)
    # the base weights estimate every province's transactions without bias: check the order of magnitude
    n_hat = sample.groupby("unit_id")["design_weight"].sum()
    n_true = frame.groupby("unit_id")["size"].sum()
    assert ((n_hat / n_true).between(0.5, 2.0)).all()


def test_same_seed_same_bytes(tmp_path):
    sizes = {"provinces": 3, "per_province": 3, "per_commune": 10}
    a = simulate_national.write_national_year(tmp_path / "a", seed=5, **sizes)
    b = simulate_national.write_national_year(tmp_path / "b", seed=5, **sizes)
    assert set(a) == set(simulate_national.NATIONAL_FILES)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    c = simulate_national.write_national_year(tmp_path / "c", seed=6, **sizes)
    assert c["sample.csv"].read_bytes() != a["sample.csv"].read_bytes()


# ------------------------------------------------------------------------------------------------
# the design: parity with R survey (tests/r/national_reference.R)
# ------------------------------------------------------------------------------------------------
def _fixture_inputs():
    sample = pd.read_csv(FIXTURE / "sample.csv", dtype={"form_id": str})
    responses = pd.read_csv(FIXTURE / "responses.csv", dtype={"form_id": str})
    for v in ("c01", "c03", "c15"):
        responses["sat_" + v] = np.where(responses[v].isna(), np.nan, (responses[v] >= 4).astype(float))
        responses["ans_" + v] = responses[v].notna().astype(float)
        responses["sat0_" + v] = responses["sat_" + v].fillna(0.0)
    return responses, sample, pd.read_csv(FIXTURE / "psu_frame.csv"), pd.read_csv(FIXTURE / "frame_counts.csv")


@pytest.fixture(scope="module")
def reference():
    return pd.read_csv(FIXTURE / "reference.csv", keep_default_na=False, na_values=["NA"])


@pytest.mark.parametrize("calibration", ["none", "poststratify"])
def test_national_design_standard_errors_match_r_survey(calibration, reference):
    responses, sample, frame, counts = _fixture_inputs()
    design = weighting.build_national_design(responses, sample, frame, counts, calibration=calibration).design
    ref = reference[reference["case"] == calibration]
    checked = 0
    for v in ("c01", "c03", "c15"):
        by_province = {
            ("mean", f"sat_{v}"): estimation.mean(design, f"sat_{v}", by="unit_id"),
            ("ratio", f"sat0_{v}/ans_{v}"): estimation.ratio(design, f"sat0_{v}", f"ans_{v}", by="unit_id"),
        }
        for (estimator, variable), got in by_province.items():
            want = ref[(ref["estimator"] == estimator) & (ref["variable"] == variable) & (ref["domain"] != "")]
            mine = got.set_index("unit_id").loc[want["domain"]]
            np.testing.assert_allclose(mine["estimate"], want["estimate"], rtol=0, atol=TOL)
            np.testing.assert_allclose(mine["se"], want["se"], rtol=0, atol=TOL)
            checked += len(want)
        overall = estimation.mean(design, f"sat_{v}")
        want = ref[(ref["estimator"] == "mean") & (ref["variable"] == f"sat_{v}") & (ref["domain"] == "")]
        np.testing.assert_allclose(overall["se"].to_numpy(), want["se"].to_numpy(), rtol=0, atol=TOL)
    assert checked == 24  # 4 provinces x 3 items x 2 estimators


def test_national_weights_match_r_and_the_design_is_multistage():
    responses, sample, frame, counts = _fixture_inputs()
    built = weighting.build_national_design(responses, sample, frame, counts, calibration="poststratify")
    weights = pd.read_csv(FIXTURE / "reference_weights.csv", dtype={"form_id": str}).set_index("form_id")
    data = built.design.data.set_index("form_id")
    np.testing.assert_allclose(data["w_nr"], weights.loc[data.index, "w_nr"], rtol=1e-12)
    np.testing.assert_allclose(data["w_cal"], weights.loc[data.index, "w_cal"], rtol=1e-12)
    spec = built.spec
    assert (spec.strata, spec.psu, spec.fpc) == ("stratum", "commune_id", "N_psu")
    # the PSU is the commune: far fewer PSUs than questionnaires, and fpc = communes per province
    assert built.design.data["commune_id"].nunique() == 16 < len(data)
    assert (built.design.data.groupby("stratum")["N_psu"].first() == frame.groupby("unit_id").size()).all()
    # post-stratified to the provinces' frame totals
    totals = counts.groupby("unit_id")["N"].sum()
    np.testing.assert_allclose(data.groupby("unit_id")["w_cal"].sum(), totals.loc[sorted(totals.index)], rtol=1e-10)
    # the saved specification rebuilds the same design
    rebuilt = weighting.design_from_spec(built.design.data, weighting.DesignSpec.from_dict(spec.to_dict()))
    assert rebuilt.psu == "commune_id"


def test_a_form_from_an_unselected_commune_is_an_error():
    responses, sample, frame, counts = _fixture_inputs()
    unselected = frame.loc[~frame["selected"] & (frame["unit_id"] == sample["unit_id"].iloc[0]), "commune_id"].iloc[0]
    sample.loc[0, "stratum"] = unselected
    with pytest.raises(ValueError, match=f"commune '{unselected}' is not a selected commune"):
        weighting.build_national_design(responses, sample, frame, counts)


# ------------------------------------------------------------------------------------------------
# the profile
# ------------------------------------------------------------------------------------------------
def test_national_profile_loads_its_settings():
    profile = load_profile("national")
    settings = load_settings(overrides=profile.overrides())
    assert settings.section("weighting")["design"] == "national"
    assert settings.section("index_ranking")["published_context"] is True
    assert profile.data_dir == config.PROJECT_DIR / "data" / "demo_national"
    assert 10 not in profile.stages and 70 not in profile.stages and 50 in profile.stages
    assert profile.run_name(2025) == "2025-national"
    # -p given after the profile wins
    later = load_settings(overrides=[*profile.overrides(), "weighting.calibration=none"])
    assert later.section("weighting")["calibration"] == "none"
    with pytest.raises(ProfileError, match="no profile 'regional'"):
        load_profile("regional")


# ------------------------------------------------------------------------------------------------
# a tiny national run, stages 20-50 without a kernel
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_national_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("national_year")
    simulate_national.write_national_year(data, year=2025, seed=3, provinces=5, per_province=4, per_commune=25)
    paths = config.RunPaths(data.resolve(), tmp_path_factory.mktemp("national_run").resolve()).ensure()
    settings = load_settings(overrides=[*load_profile("national").overrides(), "index_ranking.n_draws=300"])
    intake = intake_quality.run(paths, settings)
    weighted = weighting_stage.run(paths, settings)
    indices = index_ranking.run(paths, settings)
    return paths, settings, intake, weighted, indices


@pytest.mark.slow
def test_tiny_national_run_takes_in_weights_and_ranks_the_provinces(tiny_national_run):
    paths, settings, intake, weighted, indices = tiny_national_run
    units = schemas.read_result(paths, "units")
    assert set(units["unit_type"]) == {"province"}
    responses = schemas.read_result(paths, "responses")
    assert set(responses["form"]) == {simulate_national.INSTRUMENT} and len(responses) > 300
    # stage 30 saved the national design; stage 50 rebuilt it with load_design
    spec = weighting_stage.load_design_spec(paths)
    assert spec.psu == "commune_id" and spec.fpc == "N_psu" and spec.strata_from == ("unit_id",)
    design = weighting_stage.load_design(paths)
    assert design.data["commune_id"].nunique() == 5 * 4
    ranks = indices.ranks
    assert sorted(ranks["unit_id"]) == sorted(units["unit_id"]) and set(ranks["unit_type"]) == {"province"}
    overall = indices.indices[indices.indices["level"] == "overall"].set_index("unit_id")
    # the index SE is the multistage one: recomputing it from the saved design gives the same number
    diag = weighted["weight_diagnostics"].set_index("unit_id")
    np.testing.assert_allclose(overall.loc[diag.index, "se"], diag["se_sipas"], rtol=1e-10)
    assert (overall["ci_low"] < overall["estimate"]).all() and (overall["estimate"] < overall["ci_high"]).all()


def test_tiny_national_run_puts_the_published_predecessors_beside_each_province(tiny_national_run):
    paths, *_ , indices = tiny_national_run
    context = schemas.read_result(paths, "published_context")
    assert set(context["unit_id"]) == set(indices.ranks["unit_id"])
    predecessors = context[context["row_kind"] == "predecessor"]
    assert (predecessors.groupby("unit_id").size() == predecessors.groupby("unit_id")["n_predecessors"].first()).all()
    assert (context.loc[context["row_kind"] == "combined", "weight"] == "equal").all()
    assert (predecessors["year"].dropna() <= 2024).all()


def test_a_national_year_without_its_commune_frame_stops_weighting(tiny_national_run, tmp_path):
    paths, settings, *_ = tiny_national_run
    import shutil

    data = tmp_path / "data"
    shutil.copytree(paths.data_dir, data)
    (data / weighting_stage.PSU_FRAME_FILE).unlink()
    other = config.RunPaths(data, tmp_path / "run").ensure()
    shutil.copytree(paths.results, other.results, dirs_exist_ok=True)
    with pytest.raises(StageError, match="psu_frame.csv"):
        weighting_stage.run(other, settings)


@pytest.mark.slow
def test_committed_national_demo_files_are_what_the_seed_writes(tmp_path):
    """data/demo_national/: the small files are committed, the large ones regenerated (--if-missing)."""
    folder = config.PROJECT_DIR / "data" / "demo_national"
    committed = [name for name in ("units.csv", "psu_frame.csv", "frame_counts.csv") if (folder / name).exists()]
    if not committed:
        pytest.skip("data/demo_national/ is not there (sipas demo --profile national writes it)")
    written = simulate_national.write_national_year(tmp_path)
    for name in committed:
        assert written[name].read_bytes() == (folder / name).read_bytes(), name
    sample = pd.read_csv(written["sample.csv"], dtype={"form_id": str})
    assert len(sample) == 34 * simulate_national.COMMUNES_PER_PROVINCE * simulate_national.FORMS_PER_COMMUNE
