"""Tests of the ``sipas`` command line (typer app ``sipas_lib.cli:app``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sipas_lib import cli, config
from sipas_lib.settings import load_run_settings

runner = CliRunner()

NEW_PARAMETERS = 'run_dir = ""\ndata_dir = ""\ncommon = {}\nstage_settings = {}'
# stands in for the annual survey report stage: touches that stage's main result tables (the runner
# checks only that they were written) and prints the settings it received
OK_STAGE = [("parameters", NEW_PARAMETERS),
            ("code", "import pathlib\nfrom sipas_lib import schemas\n"
                     "for name in schemas.stage_outputs('annual_survey_report'):\n"
                     "    (pathlib.Path(run_dir) / 'results' / f'{name}.parquet').touch()"),
            ("code", "print('year', common['year'], common['lang'], 'level', common['level'], 'seed', common['seed'],\n"
                     "      'min_n', common['min_publish_n'], 'pub', stage_settings['publication'],\n"
                     "      'impl', stage_settings['implementer'], 'other', 'trim_ratio' in stage_settings)")]


def _invoke(*args: str):
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def _failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAILED")]


def test_default_run_name():
    assert cli._default_run_name(2025, config.DEMO_DIR) == "2025-demo"
    assert cli._default_run_name(2024, Path("/data/raw/2024")) == "2024"
    assert cli._default_run_name(2024, Path("/somewhere/hanoi")) == "2024-hanoi"
    assert cli._default_run_name(2024, Path("/somewhere/Hà Nội (final)")) == "2024-Hà-Nội-final"
    assert config.check_run_name(cli._default_run_name(2024, Path("/somewhere/Hà Nội (final)")))


@pytest.mark.kernel
def test_report_settings_reach_the_notebook_and_the_run_folder(tmp_path, write_notebook):
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "80_annual_survey_report.ipynb", OK_STAGE, title="Ok")
    (tmp_path / "data").mkdir()
    conf = tmp_path / "hanoi.yaml"
    conf.write_text("common:\n  seed: 11\nannual_survey_report:\n  implementer: Viện X\n", encoding="utf-8")
    result = _invoke(
        "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports"), "--run", "r",
        "--config", str(conf), "--year", "2030", "--lang", "en", "--level", "0.9", "--notebooks-dir", str(nbdir),
        "--no-fanout", "--workers", "1", "-p", "min_publish_n=5", "-p", "annual_survey_report.publication=Số 7/BC",
        "-p", "weighting.trim_ratio=2.5",
    )
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "reports" / "r"
    index = run_dir / "index.html"
    assert f"index: {index}" in result.output
    assert "80_annual_survey_report" in result.output and "1 ok, 0 failed" in result.output
    page = (run_dir / "html" / "80_annual_survey_report.html").read_text(encoding="utf-8")
    assert "year 2030 en level 0.9 seed 11 min_n 5 pub Số 7/BC impl Viện X other False" in page
    saved = load_run_settings(run_dir)
    assert (saved.year, saved.seed, saved.level) == (2030, 11, 0.9)
    assert saved.section("weighting")["trim_ratio"] == 2.5  # kept for the record, not sent to this stage
    assert "Số 7/BC" in index.read_text(encoding="utf-8")


@pytest.mark.kernel
def test_report_failure_prints_one_line_with_the_cause(tmp_path, write_notebook):
    nbdir = tmp_path / "nb"
    write_notebook(
        nbdir / "20_bad.ipynb",
        [("parameters", 'run_dir = ""'),
         ("code", "from sipas_lib.stages import StageError\n"
                  "raise StageError('responses.csv: row 7, column c03: expected 1-5, found 9')")],
    )
    write_notebook(nbdir / "30_after.ipynb", [("parameters", 'run_dir = ""'), ("code", "x = 1")])
    (tmp_path / "data").mkdir()
    result = _invoke(
        "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports"), "--run", "r",
        "--notebooks-dir", str(nbdir), "--workers", "1",
    )
    assert result.exit_code == 1
    assert _failed_lines(result.output) == [
        "FAILED 20_bad.ipynb cell 2: StageError: responses.csv: row 7, column c03: expected 1-5, found 9"]
    assert "1 failed, 1 skipped" in result.output
    assert (tmp_path / "reports" / "r" / "html" / "20_bad.html").exists()
    assert "status-failed" in (tmp_path / "reports" / "r" / "index.html").read_text(encoding="utf-8")


@pytest.mark.kernel
def test_report_stage_without_its_main_tables_exits_non_zero(tmp_path, write_notebook):
    from sipas_lib import schemas

    nbdir = tmp_path / "nb"
    # any stage with main tables; the runner imports the stage's module in its kernel: this one's is cheap
    write_notebook(nbdir / "80_annual_survey_report.ipynb", [("parameters", NEW_PARAMETERS),
                                                             ("code", "print('forms not available')")])
    (tmp_path / "data").mkdir()
    result = _invoke("report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--run", "r",
                     "--notebooks-dir", str(nbdir), "--workers", "1")
    assert result.exit_code == 1
    missing = ", ".join(f"results/{name}.parquet" for name in schemas.stage_outputs("annual_survey_report"))
    assert _failed_lines(result.output) == [
        f"FAILED 80_annual_survey_report.ipynb: StageError: stage annual_survey_report did not write {missing}"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stages", "10,x"], "not a stage number"),
        (["--lang", "fr"], "common.lang must be one of vi, en"),
        (["--level", "1.5"], "common.level must be a confidence level"),
        (["--stages", "90"], "no stage notebook numbered 90"),
        (["-p", "oops"], "expected SECTION.NAME=VALUE"),
        (["-p", "trim_ratio=2.5"], "trim_ratio is a setting of weighting: write weighting.trim_ratio"),
        (["-p", "weighting.trim=2.5"], "unknown setting weighting.trim"),
        (["-p", "weighting.trim_ratio=high"], "expected float"),
        (["--config", "missing.yaml"], "missing.yaml: configuration file not found"),
    ],
)
def test_report_bad_options_exit_2_before_writing(tmp_path, write_notebook, args, message):
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "10_ok.ipynb", OK_STAGE)
    (tmp_path / "data").mkdir()
    result = _invoke("report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                     "--notebooks-dir", str(nbdir), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["..", "../x", "/tmp/x", "a/b", ".", "a\\b", "x y"])
def test_report_refuses_a_run_name_that_is_not_one_folder(tmp_path, write_notebook, name):
    """Issue 11: --run .. would write into the repository root and overwrite the source notebooks."""
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "10_ok.ipynb", OK_STAGE)
    (tmp_path / "data").mkdir()
    out = tmp_path / "reports" / "inner"
    out.mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    outside = Path(name)
    existed = outside.is_absolute() and outside.exists()
    result = _invoke("report", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--run", name,
                     "--notebooks-dir", str(nbdir))
    assert result.exit_code == 2
    assert "--run: run name" in " ".join(result.output.split())
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    if outside.is_absolute():
        assert outside.exists() == existed


def test_report_missing_data_dir(tmp_path):
    result = _invoke("report", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_demo_if_missing_and_arguments(tmp_path, monkeypatch):
    from sipas_lib import simulate

    calls = []

    def fake_write(folder, year, seed, scale, previous_year, if_missing=False):
        assert previous_year, "the demo must include the previous year (year-on-year tables)"
        calls.append((Path(folder), year, seed, scale))
        Path(folder).mkdir(parents=True, exist_ok=True)
        return {"units.csv": Path(folder) / "units.csv"}

    monkeypatch.setattr(simulate, "write_demo_year", fake_write)
    monkeypatch.setattr(simulate, "demo_is_complete", lambda folder, previous_year: Path(folder).name == "complete")
    result = _invoke("demo", "--out", str(tmp_path / "complete"), "--if-missing")
    assert result.exit_code == 0 and calls == []
    assert "already" in result.output
    result = _invoke("demo", "--out", str(tmp_path / "new"), "--if-missing", "--year", "2024", "--seed", "9")
    assert result.exit_code == 0, result.output
    assert calls == [(tmp_path / "new", 2024, 9, 1.0)]
    result = _invoke("demo", "--out", str(tmp_path / "complete"), "--scale", "0.1")  # no --if-missing: rewrite
    assert calls[-1] == (tmp_path / "complete", 2025, 2025, 0.1)


@pytest.mark.kernel
def test_console_script_uses_the_venv_kernel_without_activation(tmp_path, write_notebook):
    """``.venv/bin/sipas`` with a bare PATH: the python3 kernel must still be this environment's."""
    script = Path(sys.executable).parent / "sipas"
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    nbdir = tmp_path / "nb"
    write_notebook(
        nbdir / "10_env.ipynb",
        [("parameters", 'run_dir = ""'), ("code", "import sys, pathlib\n"
                                                    "(pathlib.Path(run_dir) / 'prefix.txt').write_text(sys.prefix)")],
    )
    (tmp_path / "data").mkdir()
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(script), "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--run", "r",
         "--notebooks-dir", str(nbdir), "--workers", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = (tmp_path / "o" / "r" / "prefix.txt").read_text()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr  # kernel chatter goes to a log
