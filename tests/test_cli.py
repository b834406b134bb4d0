"""Tests of the ``sipas`` command line (typer app ``sipas_lib.cli:app``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sipas_lib import cli, config

runner = CliRunner()

OK_STAGE = [("parameters", 'year = 2025\nrun_dir = ""\nlang = "vi"\nmin_n = 30'),
            ("code", "print('year', year, lang, 'min_n', min_n)")]


def _invoke(*args: str):
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def test_default_run_name():
    assert cli._default_run_name(2025, config.DEMO_DIR) == "2025-demo"
    assert cli._default_run_name(2024, Path("/data/raw/2024")) == "2024"
    assert cli._default_run_name(2024, Path("/somewhere/hanoi")) == "2024-hanoi"


def test_parse_params():
    assert cli._parse_params(["n=5", "share=0.2", "name=Hà Nội", "flag=True", "ids=['S01']"]) == {
        "n": 5, "share": 0.2, "name": "Hà Nội", "flag": True, "ids": ["S01"],
    }
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        cli._parse_params(["5"])
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        cli._parse_params(["bad name=1"])


def test_report_success_prints_index(tmp_path, write_notebook):
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "10_ok.ipynb", OK_STAGE, title="Ok")
    (tmp_path / "data").mkdir()
    result = _invoke(
        "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports"), "--run", "r",
        "--year", "2030", "--lang", "en", "--notebooks-dir", str(nbdir), "--no-fanout", "-p", "min_n=5",
    )
    assert result.exit_code == 0, result.output
    index = tmp_path / "reports" / "r" / "index.html"
    assert index.exists()
    assert f"index: {index}" in result.output
    assert "10_ok" in result.output and "1 ok, 0 failed" in result.output
    assert "year 2030 en min_n 5" in (tmp_path / "reports" / "r" / "html" / "10_ok.html").read_text(encoding="utf-8")


def test_report_failure_names_notebook_cell_and_error(tmp_path, write_notebook):
    nbdir = tmp_path / "nb"
    write_notebook(
        nbdir / "20_bad.ipynb",
        [("parameters", 'run_dir = ""'), ("code", "raise KeyError('unit S99 is not in the registry')")],
    )
    (tmp_path / "data").mkdir()
    result = _invoke(
        "report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "reports"), "--run", "r",
        "--notebooks-dir", str(nbdir),
    )
    assert result.exit_code == 1
    out = " ".join(result.output.split())  # rich may wrap long lines
    assert "FAILED notebook" in out and "20_bad.ipynb" in out
    assert "cell 2" in out and "KeyError" in out and "unit S99 is not in the registry" in out
    assert (tmp_path / "reports" / "r" / "html" / "20_bad.html").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stages", "10,x"], "not a stage number"),
        (["--lang", "fr"], "--lang must be one of vi, en"),
        (["--stages", "90"], "no stage notebook numbered 90"),
        (["-p", "oops"], "expected NAME=VALUE"),
        (["-p", "year=2020"], "set by the runner itself"),
    ],
)
def test_report_bad_options_exit_2(tmp_path, write_notebook, args, message):
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "10_ok.ipynb", OK_STAGE)
    (tmp_path / "data").mkdir()
    result = _invoke("report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                     "--notebooks-dir", str(nbdir), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_report_missing_data_dir(tmp_path):
    result = _invoke("report", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_demo_if_missing_and_arguments(tmp_path, monkeypatch):
    from sipas_lib import simulate

    calls = []

    def fake_write(folder, year, seed, scale, previous_year):
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
         "--notebooks-dir", str(nbdir)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = (tmp_path / "o" / "r" / "prefix.txt").read_text()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr  # kernel chatter goes to a log
