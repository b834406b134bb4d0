"""Stage ``reliability`` on the tiny year, without a kernel: tables, settings, verdict codes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sipas_lib import config, schemas
from sipas_lib import reliability as rl
from sipas_lib.reliability.alpha import _feldt
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import reliability as stage


def make_run(folder: Path, data_dir: Path, overrides=(), weighted: bool = True):
    """A run folder with stage 20's (and, when ``weighted``, stage 30's) results of the tiny year."""
    from sipas_lib.stages import intake_quality

    paths = config.RunPaths(Path(data_dir), folder / "run")
    paths.results.mkdir(parents=True, exist_ok=True)
    settings = load_settings(overrides=["reliability.n_boot=40", *overrides])
    intake_quality.run(paths, settings)
    if weighted:
        from sipas_lib.stages import weighting

        weighting.run(paths, settings)
    return paths, settings


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tmp_path_factory):
    paths, settings = make_run(tmp_path_factory.mktemp("rel"), tiny_demo, ["common.level=0.9"])
    return paths, settings, stage.run(paths, settings)


def test_run_writes_valid_tables_with_codes(tiny_run):
    paths, settings, out = tiny_run
    assert set(out) == set(schemas.stage_outputs("reliability"))
    for name in out:
        back = schemas.read_result(paths, name)
        assert len(back) == len(out[name]) > 0
    a = out["reliability_alpha"]
    units = schemas.read_result(paths, "units")
    assert set(a["unit_type"]) == {"all"} | set(units["unit_type"]) & set(schemas.read_result(paths, "responses")["unit_type"])
    assert set(a["verdict"]) <= set(rl.ALPHA_VERDICTS)
    # verdicts are codes, never sentences
    c = out["reliability_cfa"]
    assert c["verdict"].str.fullmatch(r"[a-z_]+").all()
    assert set(c.loc[c["level"] == "model", "verdict"]) <= set(rl.FIT_VERDICTS)


def test_settings_drive_level_and_bootstrap(tiny_run):
    _, settings, out = tiny_run
    a = out["reliability_alpha"]
    computed = a["raw_alpha"].notna()
    assert computed.any()
    assert (a.loc[computed, "ci_level"] == 0.9).all()
    assert (a.loc[computed, "n_boot"] == 40).all()
    # the Feldt interval is at the run's level, not 95 %
    row = a.loc[computed].iloc[0]
    k, n = int(row["n_items"]), int(row["n"])
    lo, hi = _feldt(row["raw_alpha"], n, k, 0.9)
    assert row["feldt_low"] == pytest.approx(lo, abs=1e-12) and row["feldt_high"] == pytest.approx(hi, abs=1e-12)


def test_alpha_matches_the_core_on_the_weighted_responses(tiny_run):
    paths, _, out = tiny_run
    data = schemas.read_result(paths, "responses_weighted")
    data = data.loc[data[stage.WEIGHT] > 0]
    items = rl.element_model(stage.INSTRUMENT)["E1"]
    direct = rl.cronbach_alpha(data, items, weights=stage.WEIGHT, n_boot=0)["raw_alpha"].iloc[0]
    a = out["reliability_alpha"].set_index(["unit_type", "scale"])
    assert a.loc[("all", "E1"), "raw_alpha"] == pytest.approx(direct, abs=1e-12)


def test_weak_r_drop_setting_flags_items(tiny_run, tmp_path):
    paths, _, out = tiny_run
    strict = load_settings(overrides=["reliability.n_boot=0", "reliability.weak_r_drop=0.99"])
    items = stage.compute(stage.load_input(paths), strict)["items"]
    assert items["weak"].all()
    default = out["reliability_items"]
    assert not default["weak"].all()


def test_unweighted_fallback_and_seed(tiny_demo, tmp_path):
    paths, settings = make_run(tmp_path, tiny_demo, weighted=False)
    data = stage.load_input(paths)
    assert data.source == "responses" and data.weights is None
    first = stage.compute(data, settings)["alpha"]
    again = stage.compute(data, settings)["alpha"]
    assert np.array_equal(first["boot_low"].to_numpy(float), again["boot_low"].to_numpy(float), equal_nan=True)


def test_missing_responses_is_a_stage_error(tmp_path):
    paths = config.RunPaths(tmp_path / "data", tmp_path / "run")
    paths.results.mkdir(parents=True)
    with pytest.raises(StageError, match="responses.parquet: not found"):
        stage.run(paths, load_settings())


def test_diagnostics_on_the_feedback_respondents(tiny_run):
    paths, settings, _ = tiny_run
    data = stage.load_input(paths)
    diag = stage.diagnostics(data, settings)
    assert set(diag) >= {"polychoric", "kmo", "bartlett", "parallel", "efa", "efa_elements", "notes"}
    for name in ("polychoric", "kmo", "bartlett", "parallel", "efa"):
        assert (diag[name] is None) == (name in diag["notes"])
    if diag["polychoric"] is not None:
        assert diag["polychoric"].shape == (18, 18)
