"""Tests of sipas_lib.runner on tiny throwaway notebooks written to tmp_path.

Kernel start-up dominates the run time (~0.8 s per notebook here), so one successful chain
(module-scoped fixture: one stage + a fan-out over 2 units) serves several assertions. Tests that
start a kernel are marked ``kernel`` (``make test-fast`` leaves them out).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from sipas_lib import config, runner, schemas
from sipas_lib.runner import FAILED, OK, SKIPPED, NotebookFailure, NotebookRun, RunSummary
from sipas_lib.settings import load_run_settings, load_settings

from conftest import build_notebook, contract_table, index_links

HOSTILE_NAME = '<script>alert("x")</script> Sở & "Nội vụ"'
NEW_PARAMETERS = 'run_dir = ""\ndata_dir = ""\ncommon = {}\nstage_settings = {}'

STAGE_CELLS = [
    ("parameters", NEW_PARAMETERS + "\nsize = 3"),
    ("code", "import json, sys, pathlib\nimport pandas as pd\nCODE_MARKER_7f3a = 1"),
    (
        "code",
        "results = pathlib.Path(run_dir) / 'results'\n"
        "(results / 'seen.json').write_text(json.dumps({'common': common, 'stage_settings': stage_settings,\n"
        "    'size': size, 'data_dir': data_dir,\n"
        "    'lang_injected': 'lang' in globals(), 'prefix': sys.prefix}))",
    ),
    ("code", "print('VISIBLE_OUTPUT_' + str(common['year']))"),
    ("code", "print('HIDDEN_OUTPUT')", ["remove-cell"]),
    ("code", "import sys\nprint('STDERR_NOISE', file=sys.stderr)"),
    ("code", "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 1))\nax.plot([1, 2])\nplt.show()"),
    ("markdown", "The line rises <b>&</b> **steadily** from 1 to 2."),
    ("code", "from IPython.display import HTML, Javascript, display\n"
             "display(Javascript('window.LIVE_JS = 1'))\n"
             "display(HTML('<script src=\"https://cdn.example.org/x.js\"></script><b>TABLE_OK</b>'))"),
]

FANOUT_CELLS = [
    ("parameters", 'unit_id = ""\n' + NEW_PARAMETERS),
    ("code", "print('SCORECARD_FOR_' + unit_id + '_' + common['lang'])"),
    ("code", "print('SIZE_SEEN' if 'size' in globals() else 'SIZE_ABSENT')"),
]


def write_units(run_dir: Path, units: dict[str, tuple[str, str, str]], ranked: list[str]) -> None:
    """``results/units.parquet`` (``{unit_id: (unit_type, name_vi, name_en)}``) and a ``ranks`` table
    with a row for each unit in ``ranked``, both through their contracts."""
    ids = list(units)
    schemas.write_result(run_dir / "results", "units", contract_table(
        "units", unit_id=ids, unit_type=[units[u][0] for u in ids], name_vi=[units[u][1] for u in ids],
        name_en=[units[u][2] for u in ids]))
    schemas.write_result(run_dir / "results", "ranks", contract_table(
        "ranks", unit_id=ranked, unit_type=[units[u][0] for u in ranked]))


CHAIN_UNITS = {
    "S01": ("department", "Sở Nội vụ", HOSTILE_NAME),
    "D01": ("district", "Quận Ba Đình", "Ba Dinh"),
    "D01C01": ("commune", "Phường X", "Ward X"),
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One stage notebook + one fan-out template over the 2 ranked units (department, district)."""
    root = tmp_path_factory.mktemp("chain")
    nbdir = root / "notebooks"
    build_notebook(nbdir / "10_first.ipynb", STAGE_CELLS, title="Bước một")
    build_notebook(nbdir / "00_explore.ipynb", [("parameters", 'run_dir = ""'), ("code", "raise SystemExit('not run')")])
    build_notebook(nbdir / "fanout" / "scorecard.ipynb", FANOUT_CELLS, title="Phiếu điểm")
    data = root / "data"
    data.mkdir()
    run_dir = root / "reports" / "r1"
    # the ranks table lists the district before the department: reports follow the units table
    write_units(run_dir, CHAIN_UNITS, ["D01", "S01"])
    settings = load_settings(year=2031, seed=5, lang="en",
                             overrides=["annual_survey_report.publication=<script>alert(2)</script> & co"])
    # one worker (one kernel, reset between the stage and each unit: a stage's variable must not reach a unit's
    # notebook) and no downloads (none of these assertions is about them, see tests/test_exports.py)
    return runner.run_report(data, run_dir, settings, workers=1, notebooks_dir=nbdir, downloads=False)


def test_discover_stages_orders_and_ignores_explore(tmp_path, write_notebook):
    for name in ("20_b.ipynb", "10_a.ipynb", "00_explore.ipynb", "x_10.ipynb", "100_c.ipynb"):
        write_notebook(tmp_path / name, [("parameters", "year = 1")])
    write_notebook(tmp_path / "fanout" / "monthly.ipynb", [("parameters", 'unit_id = ""')])
    write_notebook(tmp_path / "fanout" / "scorecard.ipynb", [("parameters", 'unit_id = ""')])
    assert [p.name for p in runner.discover_stages(tmp_path)] == ["10_a.ipynb", "20_b.ipynb"]
    assert [p.stem for p in runner.discover_fanout(tmp_path)] == ["scorecard", "monthly"]
    assert runner.discover_stages(tmp_path / "missing") == []


def test_parse_stages():
    assert runner.parse_stages("10, 20") == [10, 20]
    assert runner.parse_stages(None) is None
    assert runner.parse_stages("") is None
    assert runner.parse_stages([30]) == [30]
    with pytest.raises(ValueError, match="'1x' is not a stage number"):
        runner.parse_stages("10,1x")
    with pytest.raises(ValueError, match="two-digit"):
        runner.parse_stages("5")


def test_select_parameters_keeps_only_declared(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "10_x.ipynb", [("parameters", 'year = 2025\nrun_dir = ""\nthreshold = 0.5')])
    values = {"year": 2030, "data_dir": "/d", "run_dir": "/r", "seed": 1, "lang": "en"}
    assert runner.select_parameters(nb, values) == {"year": 2030, "run_dir": "/r"}


def test_notebook_parameters_give_common_and_only_the_own_section(tmp_path, write_notebook):
    nbdir = tmp_path / "notebooks"
    weighting = write_notebook(nbdir / "30_weighting.ipynb", [("parameters", NEW_PARAMETERS)])
    card = write_notebook(nbdir / "fanout" / "unit_scorecard.ipynb", [("parameters", 'unit_id = ""\n' + NEW_PARAMETERS)])
    other = write_notebook(nbdir / "10_first.ipynb", [("parameters", NEW_PARAMETERS)])
    legacy = write_notebook(nbdir / "40_reliability.ipynb",
                            [("parameters", 'year = 2025\nrun_dir = ""\nn_boot = 1000\ntrim_ratio = 1.0')])
    settings = load_settings(year=2030, overrides=["weighting.trim_ratio=2.5", "reliability.n_boot=7"])
    paths = config.RunPaths(tmp_path / "data", tmp_path / "run")  # nothing is created
    common = dict(settings.common)
    assert runner.notebook_parameters(weighting, paths, settings) == {
        "run_dir": str(paths.run_dir), "data_dir": str(paths.data_dir), "common": common,
        "stage_settings": dict(settings.section("weighting")),
    }
    assert runner.notebook_parameters(weighting, paths, settings)["stage_settings"]["trim_ratio"] == 2.5
    assert runner.notebook_parameters(card, paths, settings, unit_id="X7") == {
        "unit_id": "X7", "run_dir": str(paths.run_dir), "data_dir": str(paths.data_dir), "common": common,
        "stage_settings": dict(settings.section("unit_scorecard")),
    }
    assert runner.notebook_parameters(other, paths, settings)["stage_settings"] == {}  # not a pipeline stage
    # an old-style parameters cell still gets the run's values, and never another stage's setting
    assert runner.notebook_parameters(legacy, paths, settings) == {"year": 2030, "run_dir": str(paths.run_dir),
                                                                   "n_boot": 7}
    assert not (tmp_path / "run").exists()


def test_notebook_title_sources(tmp_path, write_notebook):
    plain = write_notebook(tmp_path / "a.ipynb", [("markdown", "Intro\n## Tiếp nhận phiếu"), ("code", "x = 1")])
    assert runner.notebook_title(plain) == "Tiếp nhận phiếu"
    bare = write_notebook(tmp_path / "20_intake.ipynb", [("code", "x = 1")])
    assert runner.notebook_title(bare) == "20_intake"
    import nbformat

    nb = nbformat.read(bare, as_version=4)
    nb.metadata["sipas"] = {"title": {"vi": "Tiếp nhận", "en": "Intake"}}
    nbformat.write(nb, bare)
    assert runner.notebook_title(bare, "en") == "Intake"
    assert runner.notebook_title(bare, "vi") == "Tiếp nhận"


def test_index_section(tmp_path, write_notebook):
    import nbformat

    assert runner.index_section(write_notebook(tmp_path / "70_monthly_report.ipynb", [])) == "admin"
    assert runner.index_section(write_notebook(tmp_path / "80_annual_survey_report.ipynb", [])) == "admin"
    chosen = write_notebook(tmp_path / "60_annual_report.ipynb", [])
    assert runner.index_section(chosen) == "stage"
    nb = nbformat.read(chosen, as_version=4)
    nb.metadata["sipas"] = {"index_section": "admin"}
    nbformat.write(nb, chosen)
    assert runner.index_section(chosen) == "admin"


@pytest.mark.kernel
def test_chain_success_statuses_and_files(chain):
    assert chain.ok
    assert chain.counts() == {OK: 3, FAILED: 0, SKIPPED: 0}
    stage, *cards = chain.notebooks
    assert stage.name == "10_first" and stage.kind == "stage"
    assert stage.executed.exists() and stage.html.exists()
    assert stage.seconds > 0 and stage.export_seconds > 0
    assert [(c.unit_id, c.unit_type) for c in cards] == [("S01", "department"), ("D01", "district")]
    for card in cards:
        assert card.status == OK and card.html.exists()
        page = card.html.read_text(encoding="utf-8")
        assert f"SCORECARD_FOR_{card.unit_id}_en" in page
        assert runner.find_online_references(page) == []  # the hostile unit name in <title> is escaped
    payload = json.loads((chain.run_dir / "run.json").read_text(encoding="utf-8"))
    assert payload["counts"] == chain.counts()
    assert payload["settings"]["common"]["year"] == 2031
    assert "00_explore" not in {nb.name for nb in chain.notebooks}
    # the effective configuration is saved in the run folder
    assert load_run_settings(chain.run_dir).to_dict() == chain.settings.to_dict()


@pytest.mark.kernel
def test_chain_passes_only_declared_parameters_and_uses_this_interpreter(chain):
    seen = json.loads((chain.run_dir / "results" / "seen.json").read_text())
    assert seen["common"] == dict(chain.settings.common) and seen["common"]["year"] == 2031
    assert seen["stage_settings"] == {}  # 10_first is no pipeline stage: no section of its own
    assert seen["size"] == 3  # the notebook's own default kept
    card = chain.notebooks[1].html.read_text(encoding="utf-8")
    assert "SIZE_ABSENT" in card  # a stage's variable never reaches the per-unit notebook
    assert seen["lang_injected"] is False  # not declared -> not injected
    assert Path(seen["data_dir"]).name == "data"
    # the python3 kernel is this interpreter's environment, not a globally registered one
    assert Path(seen["prefix"]).resolve() == Path(sys.prefix).resolve()


@pytest.mark.kernel
def test_chain_html_hides_code_and_is_offline(chain):
    html = chain.notebooks[0].html.read_text(encoding="utf-8")
    assert "VISIBLE_OUTPUT_2031" in html
    assert "TABLE_OK" in html
    assert "CODE_MARKER_7f3a" not in html  # code is never shown
    assert "HIDDEN_OUTPUT" not in html  # remove-cell
    assert "STDERR_NOISE" not in html  # warnings stay in the executed notebook only
    assert "LIVE_JS" not in html
    assert runner.find_online_references(html) == []
    assert "<script" not in html.lower()
    assert "cdn" not in html.lower()
    assert 'lang="en"' in html
    # the chart gets the sentence that follows it as alt text, escaped
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == 1 and "data:image/png;base64," in images[0]
    assert 'alt="The line rises &amp; steadily from 1 to 2."' in images[0]
    # the executed notebook keeps everything for the analyst
    executed = chain.notebooks[0].executed.read_text(encoding="utf-8")
    assert "STDERR_NOISE" in executed and "HIDDEN_OUTPUT" in executed


@pytest.mark.kernel
def test_chain_index_links_exist_and_names_are_escaped(chain):
    index = chain.index
    text = index.read_text(encoding="utf-8")
    links = index_links(index)
    assert links == ["html/10_first.html", "html/scorecard/S01.html", "html/scorecard/D01.html"]
    for link in links:
        assert (index.parent / link).exists()
    assert "<script" not in text.lower()
    assert HOSTILE_NAME not in text
    assert "&lt;script&gt;alert(" in text  # the English name, escaped
    assert "Sở Nội vụ" not in text and "Ba Dinh" in text  # names in the run's language
    assert text.index("Bước một") < text.index("Departments") < text.index("&lt;script&gt;") < text.index("Districts")
    assert "Ward X" not in text  # only ranked units get a report
    assert runner.find_online_references(text) == []
    # the configuration, one table per section, escaped
    assert "Configuration of this run" in text and "settings.yaml" in text
    assert ">trim_ratio<" in text and ">annual_survey_report<" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt; &amp; co" in text


def test_index_escapes_unit_names_and_errors(tmp_path):
    run_dir = tmp_path / "run"
    html = run_dir / "html" / "card" / "S01.html"
    html.parent.mkdir(parents=True)
    html.write_text("<html></html>")
    monthly = run_dir / "html" / "70_monthly_report.html"
    monthly.write_text("<html></html>")
    rows = [
        NotebookRun("stage", "10_a", "A & B", tmp_path / "10_a.ipynb", run_dir / "notebooks/10_a.ipynb", None,
                    FAILED, 1.0, failure=NotebookFailure("ValueError", "column <c07> & more", cell=3)),
        NotebookRun("stage", "70_monthly_report", "Monthly", tmp_path / "70.ipynb", run_dir / "n70.ipynb", monthly,
                    OK, 1.0, section="admin"),
        NotebookRun("fanout", "card", "Card — x", tmp_path / "card.ipynb", run_dir / "n.ipynb", html, OK, 2.0,
                    unit_id="S01", unit_type="department", unit_name=HOSTILE_NAME, section="Card"),
    ]
    summary = RunSummary(run_dir, run_dir / "index.html", rows, 3.0, load_settings(year=2025, lang="vi"))
    text = runner.write_index(summary, "vi").read_text(encoding="utf-8")
    assert HOSTILE_NAME not in text
    assert "&lt;script&gt;alert(" in text and "Sở &amp; " in text
    assert "column &lt;c07&gt; &amp; more" in text and "cell 3" in text
    assert "A &amp; B" in text
    assert "Báo cáo SIPAS 2025" in text and "Cấu hình của lượt chạy" in text
    assert "<script" not in text.lower()
    assert "lỗi" in text and "hoàn thành" in text and "Sở, ban, ngành" in text
    assert "1,0 s" in text  # Vietnamese decimal comma
    # stages, then scorecards, then the administrative reports
    assert index_links(summary.index) == ["html/card/S01.html", "html/70_monthly_report.html"]
    assert text.index("Các bước phân tích") < text.index("Card") < text.index("Báo cáo hành chính")


@pytest.mark.kernel
def test_stage_failure_stops_exports_and_reports_cell(tmp_path, write_notebook):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "10_ok.ipynb", [("parameters", 'run_dir = ""'), ("code", "x = 1")], title="OK stage")
    write_notebook(
        nbdir / "20_bad.ipynb",
        [("parameters", 'run_dir = ""'), ("code", "y = 2"),
         ("code", "z = 1\nif z:\n    raise ValueError('no column <c07> in responses')")],
        title="Bad stage",
    )
    write_notebook(nbdir / "30_never.ipynb", [("parameters", 'run_dir = ""'), ("code", "z = 3")])
    write_notebook(nbdir / "fanout" / "scorecard.ipynb", [("parameters", 'unit_id = ""')])
    summary = runner.run_report(tmp_path / "data", tmp_path / "run", notebooks_dir=nbdir, workers=1, downloads=False)
    assert not summary.ok
    statuses = {nb.name: nb.status for nb in summary.notebooks}
    assert statuses == {"10_ok": OK, "20_bad": FAILED, "30_never": SKIPPED, "scorecard": SKIPPED}
    bad = summary.failed[0]
    # cell 4 of the source notebook: title, parameters, y = 2, raise (papermill's injected cell not counted)
    assert bad.failure.cell == 4
    assert bad.failure.ename == "ValueError"
    assert "no column <c07>" in bad.failure.evalue
    assert bad.failure.line == "line 3: raise ValueError('no column <c07> in responses')"
    assert bad.failure.line in bad.failure.describe()
    assert bad.failure.cause() == "ValueError: no column <c07> in responses"
    assert bad.html.exists()  # the failed notebook is still exported, with its traceback
    page = bad.html.read_text(encoding="utf-8")
    assert "no column &lt;c07&gt; in responses" in page
    assert runner.find_online_references(page) == []
    index = summary.index.read_text(encoding="utf-8")
    assert "status-failed" in index and "cell 4" in index
    assert index_links(summary.index) == ["html/10_ok.html", "html/20_bad.html"]
    assert not (tmp_path / "run" / "notebooks" / "30_never.ipynb").exists()


@pytest.mark.kernel
def test_stage_selection(tmp_path, write_notebook):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "10_a.ipynb", [("parameters", 'run_dir = ""'), ("code", "a = 1")])
    write_notebook(nbdir / "20_b.ipynb", [("parameters", 'run_dir = ""'), ("code", "b = 1")])
    summary = runner.run_report(tmp_path / "d", tmp_path / "run", stages=[20], notebooks_dir=nbdir, workers=1,
                                downloads=False)
    assert [(nb.name, nb.status) for nb in summary.notebooks] == [("10_a", SKIPPED), ("20_b", OK)]
    assert summary.ok


def test_refused_before_anything_is_written(tmp_path, write_notebook):
    """An unknown stage, or a run folder holding the notebooks or the data: refused, nothing written."""
    nbdir = tmp_path / "project" / "notebooks"
    write_notebook(nbdir / "10_a.ipynb", [("parameters", 'run_dir = ""'), ("code", "a = 1")])
    data = tmp_path / "project" / "data"
    data.mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="no stage notebook numbered 40"):
        runner.run_report(data, tmp_path / "run", stages=[40], notebooks_dir=nbdir)
    for folder in (nbdir, tmp_path / "project", tmp_path):
        with pytest.raises(ValueError, match="holds the source notebooks"):
            runner.run_report(data, folder, notebooks_dir=nbdir)
    with pytest.raises(ValueError, match="holds the input data"):
        runner.run_report(data, data, notebooks_dir=nbdir)
    with pytest.raises(ValueError, match="holds the source notebooks"):
        runner.check_run_dir(config.PROJECT_DIR, nbdir)  # the repository's own notebooks are protected too
    assert sorted(tmp_path.rglob("*")) == before


def test_missing_outputs_counts_only_tables_written_since_the_stage_started(tmp_path):
    results = tmp_path / "results"
    names = schemas.stage_outputs("weighting")
    assert names, "the weighting stage has main outputs"
    expected = [f"results/{name}.parquet" for name in names]
    assert runner.missing_outputs("weighting", results) == expected
    results.mkdir()
    for name in names:
        (results / f"{name}.parquet").write_bytes(b"")
    assert runner.missing_outputs("weighting", results) == []
    started = time.time()
    old = started - 3600
    os.utime(results / f"{names[0]}.parquet", (old, old))  # left over from an earlier run
    assert runner.missing_outputs("weighting", results, since=started) == [expected[0]]
    assert runner.missing_outputs("annual_report", results) == []  # a stage without result tables


@pytest.mark.kernel
def test_stage_that_did_not_write_its_main_tables_fails(tmp_path, write_notebook):
    """Issue 11: a stage notebook that ran without error but wrote no (fresh) main table is failed."""
    nbdir = tmp_path / "notebooks"
    names = schemas.stage_outputs("intake_quality")
    run_dir = tmp_path / "run"
    results = run_dir / "results"
    results.mkdir(parents=True)
    old = time.time() - 3600
    for name in names:  # an earlier run's tables
        (results / f"{name}.parquet").write_bytes(b"")
        os.utime(results / f"{name}.parquet", (old, old))
    fresh = names[1:]  # the notebook rewrites all but the first
    write_notebook(nbdir / "20_intake_quality.ipynb", [
        ("parameters", NEW_PARAMETERS),
        ("code", f"import os, pathlib\nfor name in {fresh!r}:\n"
                 "    os.utime(pathlib.Path(run_dir) / 'results' / f'{name}.parquet')\nprint('caught and printed')"),
    ])
    write_notebook(nbdir / "30_later.ipynb", [("parameters", 'run_dir = ""'), ("code", "x = 1")])
    summary = runner.run_report(tmp_path / "d", run_dir, notebooks_dir=nbdir, workers=1, downloads=False)
    assert [(nb.name, nb.status) for nb in summary.notebooks] == [("20_intake_quality", FAILED), ("30_later", SKIPPED)]
    failure = summary.notebooks[0].failure
    assert failure.cause() == f"StageError: stage intake_quality did not write results/{names[0]}.parquet"
    assert summary.notebooks[0].html.exists()  # what it printed is still there to read
    index = summary.index.read_text(encoding="utf-8")
    assert "status-failed" in index and f"did not write results/{names[0]}.parquet" in index


def test_fanout_without_units_table_is_failed_not_crashed(tmp_path, write_notebook):
    """Starts no kernel: listing the template's units fails before any unit's notebook would run (no downloads;
    fresh kernels per step, so none is booted ahead for units that might come)."""
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "fanout" / "scorecard.ipynb", [("parameters", 'unit_id = ""')])
    summary = runner.run_report(tmp_path / "d", tmp_path / "run", notebooks_dir=nbdir, fanout=True, downloads=False,
                                reuse_kernels=False)
    assert [nb.status for nb in summary.notebooks] == [FAILED]
    assert "units.parquet" in summary.notebooks[0].failure.evalue
    skipped = runner.run_report(tmp_path / "d", tmp_path / "run2", notebooks_dir=nbdir, fanout=False, downloads=False)
    assert [nb.status for nb in skipped.notebooks] == [SKIPPED] and skipped.ok


def test_fanout_units_come_from_the_ranks_with_the_registry_type(tmp_path):
    with pytest.raises(schemas.ContractError, match="units.parquet: not found"):
        runner.fanout_units(tmp_path)
    units = {
        "HN-01": ("department", "Sở Nội vụ", "Home Affairs"),
        "S99": ("district", "Quận Ba Đình", "Ba Dinh"),  # an id that looks like a department's: the type decides
        "W7": ("commune", "Phường Bảy", "Ward Seven"),
        "X2": ("department", "Sở Y tế", "Health"),
    }
    write_units(tmp_path, units, ["X2", "S99", "HN-01"])
    vi = runner.fanout_units(tmp_path, "vi")
    assert vi.to_dict("list") == {
        "unit_id": ["HN-01", "S99", "X2"],  # in the order of the units table; W7 has no rank row
        "unit_type": ["department", "district", "department"],
        "name": ["Sở Nội vụ", "Quận Ba Đình", "Sở Y tế"],
    }
    assert runner.fanout_units(tmp_path, "en")["name"].tolist() == ["Home Affairs", "Ba Dinh", "Health"]
    # a commune with a rank row gets its report too: the types are the registry's vocabulary
    write_units(tmp_path, units, ["W7"])
    assert runner.fanout_units(tmp_path, "en").to_dict("list") == {
        "unit_id": ["W7"], "unit_type": ["commune"], "name": ["Ward Seven"]}
    schemas.write_result(tmp_path / "results", "ranks", contract_table("ranks", unit_id=["Q1"],
                                                                       unit_type=["district"]))
    with pytest.raises(ValueError, match="names unit.s. Q1 that are not in"):
        runner.fanout_units(tmp_path)
    (tmp_path / "results" / "ranks.parquet").unlink()
    with pytest.raises(schemas.ContractError, match="ranks.parquet: not found; it is written by stage 'index_ranking'"):
        runner.fanout_units(tmp_path)


def test_make_offline_and_find_online_references():
    page = (
        '<html><head><script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>'
        '<script type="text/x-mathjax-config">MathJax.Hub.Config({})</script>'
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/x.css">'
        "<style>@import url('https://fonts.googleapis.com/css?family=Roboto');</style>"
        '<script src="//cdn.example.org/a.js"/></head>'
        '<body><a href="https://example.org">source</a><svg xmlns="http://www.w3.org/2000/svg"></svg>'
        '<img src="data:image/png;base64,AAAA"></body></html>'
    )
    found = runner.find_online_references(page)
    assert len(found) >= 4
    clean = runner.make_offline(page)
    assert runner.find_online_references(clean) == []
    assert "<script" not in clean and "cdnjs" not in clean and "googleapis" not in clean
    # what loads nothing stays: hyperlinks, SVG namespaces, embedded images
    assert '<a href="https://example.org">source</a>' in clean
    assert 'xmlns="http://www.w3.org/2000/svg"' in clean and "data:image/png" in clean
    assert runner.find_online_references('<iframe src="https://x.org/"></iframe>')


def test_export_html_of_lab_template_has_no_cdn(tmp_path, write_notebook):
    """The stock lab template links require.js and MathJax from a CDN: ours must not."""
    import nbformat

    nb = write_notebook(tmp_path / "n.ipynb", [("markdown", "Formula $x^2$"), ("code", "1")])
    out = tmp_path / "n.html"
    seconds = runner.export_html(nb, out, title="T <&>", lang="vi")
    page = out.read_text(encoding="utf-8")
    assert seconds > 0
    assert runner.find_online_references(page) == []
    assert not re.search(r"cdnjs|jsdelivr|unpkg|mathjax", page, re.IGNORECASE)
    assert "<title>T &lt;&amp;&gt;</title>" in page and 'lang="vi"' in page
    # sanity: the stock exporter would have needed the network
    from nbconvert import HTMLExporter

    stock, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(nb, as_version=4))
    assert runner.find_online_references(stock)


@pytest.mark.kernel
def test_kernel_death_is_reported(tmp_path, write_notebook):
    nb = write_notebook(tmp_path / "die.ipynb", [("code", "x = 1"), ("code", "import os\nos._exit(3)"), ("code", "y = 2")])
    status, seconds, failure = runner.execute_notebook(nb, tmp_path / "out" / "die.ipynb", {})
    assert status == FAILED and seconds > 0
    assert failure.ename == "DeadKernelError"
    assert failure.cell == 2 and "os._exit(3)" in failure.source
    assert failure.describe().startswith("cell 2: DeadKernelError")
    assert (tmp_path / "out" / "die.ipynb").exists()  # partial output kept


@pytest.mark.kernel
def test_fanout_reuses_kernels_with_a_clean_namespace(tmp_path, write_notebook):
    """One worker, one kernel reset between units; an error or a dead kernel spoils only its unit."""
    import nbformat

    nbdir = tmp_path / "notebooks"
    write_notebook(
        nbdir / "fanout" / "card.ipynb",
        [
            ("parameters", 'unit_id = ""'),
            ("code", "import os\nprint('LEFTOVER' if 'leftover' in globals() else 'CLEAN', f'PID={os.getpid()}.')\n"
                     "leftover = 1"),
            ("code", "if unit_id == 'D01':\n    raise ValueError('bad unit D01')"),
            ("code", "if unit_id == 'D02':\n    import os\n    os._exit(1)"),
        ],
    )
    run_dir = tmp_path / "run"
    types = {"S01": "department", "D01": "district", "S02": "department", "D02": "district", "S03": "department"}
    write_units(run_dir, {u: (kind, u, u) for u, kind in types.items()}, list(types))
    summary = runner.run_report(tmp_path / "d", run_dir, notebooks_dir=nbdir, workers=1, reuse_kernels=True,
                                downloads=False)
    by_unit = {nb.unit_id: nb for nb in summary.notebooks}
    assert {u: nb.status for u, nb in by_unit.items()} == {
        "S01": OK, "D01": FAILED, "S02": OK, "D02": FAILED, "S03": OK
    }
    assert by_unit["D01"].failure.evalue == "bad unit D01"
    assert by_unit["D02"].failure.ename == "DeadKernelError"
    pids = {}
    for unit, nb in by_unit.items():
        page = nb.html.read_text(encoding="utf-8")
        assert "CLEAN" in page and "LEFTOVER" not in page
        pids[unit] = re.search(r"PID=(\d+)\.", page).group(1)
    # one kernel until it died, then a fresh one
    assert pids["S01"] == pids["D01"] == pids["S02"] == pids["D02"] != pids["S03"]
    # the reset kernel numbers cells from 1 again
    d01 = nbformat.read(summary.notebooks[1].executed, as_version=4)
    counts = [c.execution_count for c in d01.cells if c.cell_type == "code"]
    assert counts[:3] == [1, 2, 3]
    assert summary.notebooks[1].failure.execution_count == 4


@pytest.mark.kernel
def test_a_stage_releases_the_next_once_its_tables_are_written(tmp_path, write_notebook):
    """Stage 80 starts while stage 20 (whose main tables are written by its first cell) still draws.

    (80, which needs only 20, rather than 30: the runner imports a stage's module in its kernel, 80's is cheaper.)
    """
    nbdir = tmp_path / "notebooks"
    touch = ("import pathlib, time\nfor name in {names!r}:\n"
             "    (pathlib.Path(run_dir) / 'results' / f'{{name}}.parquet').write_bytes(b'')\n")
    stamp = "(pathlib.Path(run_dir) / 'results' / '{what}.txt').write_text(repr(time.time()))"
    write_notebook(nbdir / "20_intake_quality.ipynb", [
        ("parameters", NEW_PARAMETERS),
        ("code", touch.format(names=schemas.stage_outputs("intake_quality"))),
        # still "drawing" until stage 80 has started (or a minute has passed: then 80 waited, wrongly)
        ("code", "started = pathlib.Path(run_dir) / 'results' / 'later_start.txt'\n"
                 "for _ in range(600):\n    if started.exists():\n        break\n    time.sleep(0.1)\n"
                 + stamp.format(what="intake_end")),
    ])
    write_notebook(nbdir / "80_annual_survey_report.ipynb", [
        ("parameters", NEW_PARAMETERS),
        ("code", touch.format(names=schemas.stage_outputs("annual_survey_report")) + stamp.format(what="later_start")),
    ])
    run_dir = tmp_path / "run"
    (run_dir / "results").mkdir(parents=True)
    summary = runner.run_report(tmp_path / "d", run_dir, notebooks_dir=nbdir, workers=2, downloads=False)
    assert summary.ok, [f.failure.describe() for f in summary.failed if f.failure]
    results = run_dir / "results"
    assert float((results / "later_start.txt").read_text()) < float((results / "intake_end.txt").read_text())


@pytest.mark.kernel
def test_the_previous_year_is_computed_in_the_run_then_reused(tiny_demo, tiny_settings, tmp_path, write_notebook):
    nbdir = tmp_path / "notebooks"
    write_notebook(nbdir / "55_check.ipynb", [  # a stage nobody described: it waits for last year too
        ("parameters", NEW_PARAMETERS),
        ("code", "import pathlib\nprint('LAST_YEAR_INDICES', (pathlib.Path(run_dir) / 'previous_year' / 'results' / "
                 "'indices.parquet').exists())"),
    ])
    run_dir = tmp_path / "run"
    first = runner.run_report(tiny_demo, run_dir, tiny_settings, notebooks_dir=nbdir, fanout=False, downloads=False,
                              previous_data=tiny_demo / runner.PREVIOUS_YEAR_DIR, workers=2)
    assert first.ok, [f.failure.describe() for f in first.failed if f.failure]
    previous, check = first.notebooks
    assert (previous.kind, previous.status, previous.note) == ("previous", OK, "")
    assert "LAST_YEAR_INDICES True" in check.html.read_text(encoding="utf-8")
    assert first.settings.section("index_ranking")["previous_results"] == str(run_dir.resolve() / "previous_year" / "results")
    assert "previous_year/index.html" in index_links(first.index)
    # one worker is enough to see the reuse (the wait for last year was checked above, on two)
    again = runner.run_report(tiny_demo, run_dir, tiny_settings, notebooks_dir=nbdir, fanout=False, downloads=False,
                              previous_data=tiny_demo / runner.PREVIOUS_YEAR_DIR, workers=1)
    assert again.notebooks[0].note == "reused"
    assert "dùng lại kết quả" in again.index.read_text(encoding="utf-8")
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["notebooks"][0]["note"] == "reused"


@pytest.mark.kernel
def test_stage_notebooks_share_the_workers_kernel(tmp_path, write_notebook, monkeypatch):
    """One worker, two stage notebooks: the second runs in the first one's kernel (reset), even when the
    notebooks folder is given as a relative path."""
    nbdir = tmp_path / "notebooks"
    for name in ("10_a", "20_b"):
        write_notebook(nbdir / f"{name}.ipynb", [("parameters", NEW_PARAMETERS),
                                                 ("code", "import os\nprint(f'PID={os.getpid()}.')")])
    monkeypatch.chdir(tmp_path)
    summary = runner.run_report(tmp_path / "d", tmp_path / "run", notebooks_dir="notebooks", workers=1, downloads=False)
    pids = {re.search(r"PID=(\d+)\.", nb.html.read_text(encoding="utf-8")).group(1) for nb in summary.notebooks}
    assert summary.ok and len(pids) == 1
