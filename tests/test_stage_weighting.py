"""Stage ``weighting`` on the tiny year, without a kernel: tables, saved design, exclusions, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_run

from sipas_lib import config, schemas
from sipas_lib import index as ix
from sipas_lib import weighting as wt
from sipas_lib.instrument import load_instrument
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import weighting as stage


@pytest.fixture(scope="module")
def tiny_run(tiny_weighted_run):
    """Stages 20 → 30 of the tiny year with the default weighting (conftest's shared run: read-only)."""
    return tiny_weighted_run


@pytest.fixture(scope="module")
def tiny_run_custom(tiny_custom_weighted_run):
    """Stage 30 with conftest's TINY_CUSTOM: rake, trim_ratio 2.5, min_cell 5, level 0.9 (read-only)."""
    return tiny_custom_weighted_run


def intake_copy(intake_run, tmp_path: Path, data_dir: Path | None = None) -> tuple[config.RunPaths, object]:
    """A private copy of stage 20's run folder (on ``data_dir`` if given) and its settings."""
    paths = copy_run(intake_run.paths, tmp_path / "run")
    return config.RunPaths(Path(data_dir or paths.data_dir), paths.run_dir), intake_run.settings


def test_run_writes_every_table_and_the_design(tiny_run):
    paths, _, result = tiny_run
    for name in stage.TABLES:
        table = schemas.read_result(paths, name)  # validated against its contract
        assert len(table) == len(result[name])
    assert set(schemas.stage_outputs("weighting")) == set(stage.TABLES)
    spec = json.loads(stage.design_path(paths).read_text(encoding="utf-8"))
    assert spec["calibration"] == "poststratify" and spec["trim_ratio"] == 3.5
    weighted = result["responses_weighted"]
    assert spec["n_respondents"] == len(weighted)
    # calibrated weights add up to the frame counts of every unit x calibration cell
    margin = result.spec.calibration_margins[0].table().set_index(["unit_id", "cal_cell"])["N"]
    got = weighted.groupby(["unit_id", "cal_cell"])["w_cal"].sum()
    assert np.allclose(got.to_numpy(), margin.loc[got.index].to_numpy(), rtol=1e-12)


def test_diagnostics_agree_with_the_weights(tiny_run):
    _, settings, result = tiny_run
    data, diag = result["responses_weighted"], result["weight_diagnostics"].set_index("unit_id")
    assert set(diag.index) == set(data["unit_id"])
    for unit, g in data.groupby("unit_id"):
        w = g["w_final"].to_numpy()
        assert diag.loc[unit, "n"] == len(g)
        assert diag.loc[unit, "deff_kish"] == pytest.approx(len(w) * (w**2).sum() / w.sum() ** 2, rel=1e-12)
        assert diag.loc[unit, "n_trimmed"] == int((g["w_final"] != g["w_cal"]).sum())
    # deff_sipas is the library's deff of the unit's SIPAS index (index.satisfaction_indices)
    idx = ix.satisfaction_indices(result.design, load_instrument(stage.INDEX_INSTRUMENT), by="unit_id",
                                  level=settings.level)
    overall = idx[idx["level"] == "overall"].set_index("unit_id")
    assert np.allclose(diag["deff_sipas"], overall.loc[diag.index, "deff"], rtol=1e-12)
    assert np.allclose(diag["sipas_weighted"], overall.loc[diag.index, "estimate"], rtol=1e-12)
    # the non-response cells add up to the unit's issued questionnaires and response rate
    cells = result["nonresponse_cells"].groupby("unit_id")[["n_issued", "n_accepted"]].sum()
    assert (cells.loc[diag.index, "n_issued"] == diag["n_issued"]).all()
    assert np.allclose(cells.loc[diag.index, "n_accepted"] / cells.loc[diag.index, "n_issued"], diag["response_rate"])
    summary = result["weighting_summary"].iloc[0]
    assert summary["n_weighted"] == len(data) and summary["n_trimmed"] == diag["n_trimmed"].sum()
    cal = result["calibration_cells"]
    assert cal["N_frame"].sum() == summary["N_frame"] == diag["N_frame"].sum()


def test_spec_round_trips_through_json(tiny_run_custom):
    _, _, result = tiny_run_custom
    spec = result.spec
    again = wt.DesignSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert spec.calibration == "rake" and spec.trim_ratio == 2.5 and spec.min_cell == 5
    assert [m.columns for m in spec.calibration_margins] == [("unit_id",), ("field",)]
    with pytest.raises(ValueError, match="unknown key"):
        wt.DesignSpec.from_dict({**spec.to_dict(), "strata_by": "x"})
    with pytest.raises(ValueError, match="calibration must be"):
        wt.DesignSpec.from_dict({**spec.to_dict(), "calibration": "greg"})


@pytest.mark.slow
@pytest.mark.parametrize("run_name", ["tiny_run", "tiny_run_custom"])
def test_load_design_rebuilds_the_stage_design(run_name, request):
    """Issue 10 item 3: indices on load_design(paths) equal those on the design stage 30 built."""
    paths, settings, result = request.getfixturevalue(run_name)
    rebuilt = stage.load_design(paths)
    built = result.design
    assert np.array_equal(rebuilt.w, built.w)
    assert rebuilt.weights == built.weights and rebuilt.strata == built.strata and rebuilt.fpc == built.fpc
    assert len(rebuilt.calibration) == len(built.calibration) == 1
    inst = load_instrument(stage.INDEX_INSTRUMENT)
    a = ix.satisfaction_indices(rebuilt, inst, by="unit_id", level=settings.level)
    b = ix.satisfaction_indices(built, inst, by="unit_id", level=settings.level)
    assert list(a["code"]) == list(b["code"]) and list(a["unit_id"]) == list(b["unit_id"])
    for col in ("estimate", "se", "ci_low", "ci_high", "deff"):
        np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-12, atol=1e-12)
    # the SEs use the calibration: they differ from those of the same weights without it
    plain = wt.SurveyDesign(rebuilt.data, weights="w_final", strata="stratum", psu="psu", fpc="N_unit",
                            lonely_psu="adjust")
    c = ix.satisfaction_indices(plain, inst, by="unit_id", level=settings.level)
    assert not np.allclose(a["se"].to_numpy(float), c["se"].to_numpy(float), rtol=1e-6)


def test_non_default_settings_change_the_design(tiny_run, tiny_run_custom):
    default, custom = tiny_run[2], tiny_run_custom[2]
    assert not np.allclose(default.design.w, custom.design.w)
    assert custom["weighting_summary"]["calibration"].iloc[0] == "rake"
    ratio = custom.design.data.groupby("unit_id")["w_cal"].transform("median") * 2.5
    assert (custom.design.w <= ratio.to_numpy() * (1 + 1e-12)).all()


def test_load_design_refuses_a_table_from_another_run(tiny_run, tiny_run_custom, tmp_path):
    paths, _, _ = tiny_run
    other = tiny_run_custom[0]
    mixed = config.RunPaths(paths.data_dir, tmp_path / "mixed")
    mixed.results.mkdir(parents=True)
    shutil.copy(schemas.result_path(paths, "responses_weighted"), mixed.results)
    shutil.copy(stage.design_path(other), mixed.results)
    with pytest.raises(StageError, match="do not belong to the same run|differs"):
        stage.load_design(mixed)
    (mixed.results / stage.DESIGN_FILE).unlink()
    with pytest.raises(StageError, match="design.json: not found"):
        stage.load_design(mixed)


def copy_year(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("previous_year"))
    return dst


def test_a_unit_without_usable_forms_is_left_out(tiny_intake_run, tmp_path):
    """Issue 11 item 1: one unit with no responses, one with only blank forms -> the others are weighted."""
    paths, settings = intake_copy(tiny_intake_run, tmp_path)
    responses = schemas.read_result(paths, "responses")
    units = sorted(responses["unit_id"].unique())
    assert len(units) >= 3
    gone, blank = units[0], units[1]
    items = sorted({c for f in responses["form"].unique() for c in load_instrument(f).item_codes})
    responses = responses[responses["unit_id"] != gone].copy()
    responses.loc[responses["unit_id"] == blank, items] = np.nan
    schemas.write_result(paths, "responses", responses)
    result = stage.run(paths, settings)
    excluded = result["units_excluded"].set_index("unit_id")
    assert excluded.loc[gone, "reason"] == "no_responses" and excluded.loc[blank, "reason"] == "all_blank"
    assert excluded.loc[blank, "n_accepted"] > 0 and excluded.loc[gone, "n_accepted"] == 0
    assert set(result["responses_weighted"]["unit_id"]) == set(units) - {gone, blank}
    assert dict(result.spec.excluded_units) == {gone: "no_responses", blank: "all_blank"}
    assert result["weighting_summary"]["n_units_excluded"].iloc[0] == 2
    assert np.array_equal(stage.load_design(paths).w, result.design.w)


@pytest.mark.parametrize("name", ["sample.csv", "frame_counts.csv"])
def test_missing_input_is_a_stage_error_naming_the_file(tiny_demo, tiny_intake_run, tmp_path, name):
    data_dir = copy_year(tiny_demo, tmp_path / "year")
    paths, settings = intake_copy(tiny_intake_run, tmp_path, data_dir)
    (data_dir / name).unlink()
    with pytest.raises(StageError, match=name):
        stage.run(paths, settings)


def test_missing_responses_is_a_stage_error(tiny_demo, tmp_path):
    paths = config.RunPaths(Path(tiny_demo), tmp_path / "run")
    with pytest.raises(StageError, match="responses.parquet"):
        stage.run(paths, load_settings())
