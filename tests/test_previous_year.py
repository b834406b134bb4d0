"""Last year's indices (sipas_lib.runner.previous): computed in-process, reused while nothing changed.

The cache must never hand back tables computed from other inputs: a changed data file, another
setting, tampered or missing tables and a changed package each force a recomputation.
"""

from __future__ import annotations

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


def test_computed_once_then_reused_until_an_input_or_setting_changes(last_year, tmp_path):
    settings = load_settings(overrides=SETTINGS)
    run_dir = tmp_path / "run"
    first = previous.compute_previous_year(last_year, run_dir, settings)
    assert first["reused"] is False and first["year"] == settings.year - 1
    results = run_dir / runner.PREVIOUS_YEAR_DIR / "results"
    indices = schemas.read_result(results, "indices")
    assert len(indices) > 0 and (results / "design.json").exists()
    manifest = json.loads((run_dir / runner.PREVIOUS_YEAR_DIR / previous.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["settings"]["common"]["year"] == settings.year - 1
    assert manifest["settings"]["index_ranking"]["previous_results"] == ""  # last year has no year-on-year of its own
    assert set(manifest["inputs"]) == {p.name for p in last_year.iterdir()}

    again = previous.compute_previous_year(last_year, run_dir, settings)
    assert again["reused"] is True
    pd.testing.assert_frame_equal(schemas.read_result(results, "indices"), indices)
    page = (run_dir / runner.PREVIOUS_YEAR_DIR / previous.PAGE).read_text(encoding="utf-8")
    assert "Dùng lại kết quả đã tính" in page and "results/indices.parquet" in page and "<script" not in page

    # another setting of the method: recomputed
    assert previous.compute_previous_year(last_year, run_dir, settings.replace(level=0.9))["reused"] is False
    assert previous.compute_previous_year(last_year, run_dir, settings.replace(level=0.9))["reused"] is True
    # this year's language or year-on-year source does not change last year's method, the year does
    assert previous.previous_year_settings(settings.replace(index_ranking__previous_results="x")).to_dict() == \
        previous.previous_year_settings(settings).to_dict()


def test_a_changed_input_file_or_tampered_tables_are_recomputed(last_year, tmp_path):
    settings = load_settings(overrides=SETTINGS)
    run_dir = tmp_path / "run"
    previous.compute_previous_year(last_year, run_dir, settings)
    results = run_dir / runner.PREVIOUS_YEAR_DIR / "results"
    (results / "ranks.parquet").unlink()  # a table gone
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False
    assert (results / "ranks.parquet").exists()
    units = last_year / "units.csv"
    units.write_text(units.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # one byte more
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False
    assert previous.compute_previous_year(last_year, run_dir, settings, reuse=False)["reused"] is False


def test_a_changed_package_is_recomputed(last_year, tmp_path, monkeypatch):
    settings = load_settings(overrides=SETTINGS)
    run_dir = tmp_path / "run"
    previous.compute_previous_year(last_year, run_dir, settings)
    monkeypatch.setattr(previous, "code_digest", lambda: "another version of the estimators")
    assert previous.compute_previous_year(last_year, run_dir, settings)["reused"] is False


def test_a_failing_stage_names_the_year_and_the_stage(last_year, tmp_path):
    (last_year / "sample.csv").unlink()
    with pytest.raises(RuntimeError, match=r"previous year .*failed: .*stage weighting|previous year .*stage intake"):
        runner.run_previous_year(last_year, tmp_path / "run", load_settings(overrides=SETTINGS))
    # nothing half-written is taken for a finished previous year
    assert not (tmp_path / "run" / runner.PREVIOUS_YEAR_DIR / previous.MANIFEST).exists()
