"""Stage ``reliability`` on the tiny year, without a kernel: tables, settings, verdict codes, errors."""

from __future__ import annotations

import pytest

from sipas_lib import config, schemas
from sipas_lib import reliability as rl
from sipas_lib.reliability.alpha import _feldt
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import reliability as stage
from conftest import copy_run


#: Bootstrap replicates of the stage runs here: enough for a percentile interval, the tests check wiring.
N_BOOT = 40


@pytest.fixture(scope="module")
def tiny_run(tiny_weighted_run, tmp_path_factory):
    """Stage 40 on a copy of the shared stage 20 → 30 run of the tiny year, at level 0.9 and 40 replicates."""
    paths = copy_run(tiny_weighted_run.paths, tmp_path_factory.mktemp("rel") / "run")
    settings = tiny_weighted_run.settings.replace(level=0.9, reliability__n_boot=N_BOOT)
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


def test_unweighted_fallback_seed_and_weak_r_drop(tiny_intake_run, tiny_run):
    """Without stage 30 the stage reads ``responses`` unweighted. The same run checks that the bootstrap
    is seeded with ``common.seed`` (equal to the core's call with that seed) and that
    ``reliability.weak_r_drop`` reaches the item statistics (0.99 flags every item, the default does not)."""
    paths = tiny_intake_run.paths                 # read-only: compute() writes nothing
    strict = tiny_intake_run.settings.replace(reliability__n_boot=N_BOOT, reliability__weak_r_drop=0.99)
    data = stage.load_input(paths)
    assert data.source == "responses" and data.weights is None
    tables = stage.compute(data, strict)
    assert tables["items"]["weak"].all()
    assert not tiny_run[2]["reliability_items"]["weak"].all()
    # scales answered by every respondent share one bootstrap call (reliability_tables)
    everyone = {e: items for e, items in data.model.items() if e != "E5"}
    direct = rl.cronbach_alpha(data.responses, everyone, n_boot=N_BOOT, seed=strict.seed, level=strict.level)
    a = tables["alpha"].set_index(["unit_type", "scale"])
    for row in direct.itertuples():
        assert a.loc[("all", row.scale), "boot_low"] == row.boot_low
        assert a.loc[("all", row.scale), "boot_high"] == row.boot_high


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
