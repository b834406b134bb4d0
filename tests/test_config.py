"""Paths live in one place."""

from pathlib import Path

from sipas_lib import config


def test_defaults_point_at_the_demo_and_an_interactive_run(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "REPORTS_DIR", tmp_path / "reports")
    paths = config.run_paths("", "")
    assert paths.data_dir == config.DEMO_DIR.resolve()
    assert paths.run_dir == (tmp_path / "reports" / "interactive").resolve()
    for folder in (paths.results, paths.quarantine, paths.notebooks, paths.html):
        assert folder.is_dir() and paths.run_dir in folder.parents


def test_explicit_folders_and_private_outputs_stay_out_of_reports(tmp_path):
    paths = config.run_paths(tmp_path / "data", tmp_path / "reports" / "2026")
    assert paths.data_dir == (tmp_path / "data").resolve()
    assert paths.results == (tmp_path / "reports" / "2026" / "results").resolve()
    # Personal data (the post office mailing list) goes under data/raw, never under reports/.
    assert config.RAW_DIR in paths.private.parents
    assert config.REPORTS_DIR not in paths.private.parents
    assert paths.private.name == "2026"


def test_project_layout_matches_the_design_card():
    for name in ("notebooks", "sipas_lib", "data", "reports", "tests"):
        assert (config.PROJECT_DIR / name).is_dir(), name
    assert (config.PROJECT_DIR / "environment.yml").is_file()
    assert config.INSTRUMENTS_DIR == Path(config.__file__).parent / "instruments"
