"""Last year's indices (sipas_lib.runner.previous): computed in-process, reused while nothing changed.

The cache must never hand back tables computed from other inputs: a changed data file, another
setting, tampered or missing tables and a changed package each force a recomputation.

A computation costs seconds, so last year is computed once for the module (:func:`computed`); a test
that starts from "already computed" works on a copy of that run folder (:func:`computed_run`) and first
checks that the copy is reused as it is, so that each recomputation it then sees is the change's doing.
"""

from __future__ import annotations

import importlib
import json
import shutil

import pandas as pd
import pytest

from sipas_lib import runner, schemas
from sipas_lib.runner import previous
from sipas_lib.settings import load_settings

SETTINGS = ["index_ranking.n_draws=200"]


@pytest.fixture()
def last_year(tiny_demo, tmp_path):
    """A copy of the tiny year's previous-year folder (the tests change its files)."""
    folder = tmp_path / "data_prev"
    shutil.copytree(tiny_demo / runner.PREVIOUS_YEAR_DIR, folder)
    return folder


def record_stage_runs(monkeypatch) -> list[tuple]:
    """From now on the previous year's stages only record their calls, ``(stage, data folder, run folder, year,
    level)``, instead of computing (seconds each).

    For the tests of *when* last year is recomputed, which need only that the stages ran again and with what;
    what a computation writes is checked on :func:`computed`, and where a table was deleted (the recomputation
    must write it again).
    """
    calls: list[tuple] = []
    for stage in previous.PREVIOUS_YEAR_STAGES:
        def record(paths, settings, stage=stage):
            calls.append((stage, paths.data_dir, paths.run_dir, settings.year, settings.level))

        monkeypatch.setattr(importlib.import_module(f"sipas_lib.stages.{stage}"), "run", record)
    return calls


def recomputed(last_year, run_dir, settings, level=None) -> list[tuple]:
    """The calls :func:`record_stage_runs` expects for one recomputation of last year into ``run_dir``."""
    return [(stage, last_year.resolve(), (run_dir / runner.PREVIOUS_YEAR_DIR).resolve(), settings.year - 1,
             settings.level if level is None else level) for stage in previous.PREVIOUS_YEAR_STAGES]


@pytest.fixture(scope="module")
def computed(tiny_demo, tmp_path_factory):
    """Last year computed once with :data:`SETTINGS` from a copy of the tiny year's previous-year folder:
    ``(data folder, run folder, outcome of the computation)``. Read-only: tests copy the run folder."""
    root = tmp_path_factory.mktemp("previous_computed")
    data = root / "data_prev"
    shutil.copytree(tiny_demo / runner.PREVIOUS_YEAR_DIR, data)
    run_dir = root / "run"
    return data, run_dir, previous.compute_previous_year(data, run_dir, load_settings(overrides=SETTINGS))


@pytest.fixture()
def computed_run(computed, last_year, tmp_path):
    """A copy of :func:`computed`'s run folder, for :func:`last_year` (same files as the data it was computed from):
    checked to be reused as it is, before the test changes anything."""
    run_dir = tmp_path / "run"
    shutil.copytree(computed[1], run_dir)
    assert previous.compute_previous_year(last_year, run_dir, load_settings(overrides=SETTINGS))["reused"] is True
    return run_dir


def test_computed_once_then_reused_until_an_input_or_setting_changes(computed, last_year, computed_run, monkeypatch):
    settings = load_settings(overrides=SETTINGS)
    data, first_run, first = computed
    assert first["reused"] is False and first["year"] == settings.year - 1
    indices = schemas.read_result(first_run / runner.PREVIOUS_YEAR_DIR / "results", "indices")
    assert len(indices) > 0 and (first_run / runner.PREVIOUS_YEAR_DIR / "results" / "design.json").exists()
    manifest = json.loads((first_run / runner.PREVIOUS_YEAR_DIR / previous.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["settings"]["common"]["year"] == settings.year - 1
    assert manifest["settings"]["index_ranking"]["previous_results"] == ""  # last year has no year-on-year of its own
    assert set(manifest["inputs"]) == {p.name for p in data.iterdir()}

    # a later run (here: a copy of that run folder, see computed_run) reuses the tables as they are
    run_dir = computed_run
    results = run_dir / runner.PREVIOUS_YEAR_DIR / "results"
    again = previous.compute_previous_year(last_year, run_dir, settings)
    assert again["reused"] is True
    pd.testing.assert_frame_equal(schemas.read_result(results, "indices"), indices)
    page = (run_dir / runner.PREVIOUS_YEAR_DIR / previous.PAGE).read_text(encoding="utf-8")
    assert "Dùng lại kết quả đã tính" in page and "results/indices.parquet" in page and "<script" not in page

    # another setting of the method: recomputed, with that setting
    calls = record_stage_runs(monkeypatch)
    assert previous.compute_previous_year(last_year, run_dir, settings.replace(level=0.9))["reused"] is False
    assert calls == recomputed(last_year, run_dir, settings, level=0.9)
    assert previous.compute_previous_year(last_year, run_dir, settings.replace(level=0.9))["reused"] is True
    assert len(calls) == len(previous.PREVIOUS_YEAR_STAGES)  # not run again
    # this year's language or year-on-year source does not change last year's method, the year does
    assert previous.previous_year_settings(settings.replace(index_ranking__previous_results="x")).to_dict() == \
        previous.previous_year_settings(settings).to_dict()


def test_a_changed_input_file_or_tampered_tables_are_recomputed(last_year, computed_run, monkeypatch):
    settings = load_settings(overrides=SETTINGS)
    run_dir = computed_run  # computed, and reused as it is
    results = run_dir / runner.PREVIOUS_YEAR_DIR / "results"
    (results / "ranks.parquet").unlink()  # a table gone
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False
    assert (results / "ranks.parquet").exists()
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is True  # whole again
    calls = record_stage_runs(monkeypatch)
    units = last_year / "units.csv"
    units.write_text(units.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # one byte more
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False
    assert calls == recomputed(last_year, run_dir, settings)
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is True  # for the new file
    assert previous.compute_previous_year(last_year, run_dir, settings, reuse=False)["reused"] is False
    assert calls == 2 * recomputed(last_year, run_dir, settings)


def test_a_changed_package_is_recomputed(last_year, computed_run, monkeypatch):
    settings = load_settings(overrides=SETTINGS)
    run_dir = computed_run  # computed, and reused as it is
    calls = record_stage_runs(monkeypatch)
    monkeypatch.setattr(previous, "code_digest", lambda: "another version of the estimators")
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False
    assert calls == recomputed(last_year, run_dir, settings)


def test_a_failing_stage_names_the_year_and_the_stage(last_year, tmp_path):
    (last_year / "sample.csv").unlink()
    with pytest.raises(RuntimeError, match=r"previous year .*failed: .*stage weighting|previous year .*stage intake"):
        runner.run_previous_year(last_year, tmp_path / "run", load_settings(overrides=SETTINGS))
    # nothing half-written is taken for a finished previous year
    assert not (tmp_path / "run" / runner.PREVIOUS_YEAR_DIR / previous.MANIFEST).exists()
