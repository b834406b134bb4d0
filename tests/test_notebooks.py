"""Notebook tier: the whole report chain on tiny simulated years, checked from the outside.

Two runs (module fixtures) of every stage notebook and every fan-out template: a year of the old
structure (2 departments and 2 districts, a quarter of the real sizes, ``tiny_run``) and a two-tier
year after the 2025 reform (2 departments and 11 wards at the real sizes, its previous year in the old
structure, ``two_tier_run``: year-on-year across the reform, the small-area model); then checks of what
a user and a reviewer get from each: statuses, result files, links of index.html, offline HTML, and no
personal data anywhere. The tiny year carries hostile text from data (``publishing_checks.with_payloads``:
units named ``<script>…`` and ``<img onerror=…>``, a free-text answer ``<script>…``), so the escaping checks
of issue 7 run on this chain too, and the notebooks outside the chain (the explore notebook, the one-unit
scorecard notebook) run on its results in one kernel.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sipas_lib import config, runner, schemas

from conftest import index_links
from publishing_checks import (N_FREE_TEXT_PAYLOADS, PAYLOAD, PAYLOAD_ESCAPED, error_outputs, find_personal_data,
                             live_scripts, personal_strings, public_text, stock_html, with_payloads)

pytestmark = pytest.mark.notebooks

#: every personal column the contracts know (applicants, enumerators, re-checked respondents)
PERSONAL_COLUMNS = set(schemas.PERSONAL_COLUMNS)
# results every run must have once the intake stage (20) ran (docs/CONTRACTS.md, "Run folder")
INTAKE_RESULTS = ("results/responses.parquet", "results/intake_summary.parquet", "results/units.parquet",
                  "quarantine/quarantine.csv")
DATA_URI = re.compile(r"data:[a-z]+/[a-z+.-]+;base64,[A-Za-z0-9+/=\s]+")
STYLE = re.compile(r"<style\b.*?</style>", re.DOTALL | re.IGNORECASE)
#: the stages that compute the result tables, in the chain's order (their notebooks call these ``run`` functions)
COMPUTING_STAGES = ("sampling_design", "intake_quality", "weighting", "reliability", "index_ranking")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@dataclass(frozen=True)
class TinyRun:
    """One run of the whole chain: its summary, the data folder and its files' digests before the run."""

    summary: runner.RunSummary
    data_dir: Path
    before: dict[str, str]


def _run_chain(data_dir: Path, settings, run_dir: Path) -> TinyRun:
    stages = runner.discover_stages(config.NOTEBOOKS_DIR)
    assert stages, "no stage notebooks in notebooks/ (issue 2 needs at least the intake stage)"
    before = _digests(data_dir)
    # Outputs with personal data (the mailing list) go to the throwaway SIPAS_RAW_DIR set in conftest.
    assert config.RAW_DIR != config.DATA_DIR / "raw"
    # As `sipas report` does: last year's indices first, for the year-on-year tables.
    previous = runner.run_previous_year(data_dir / runner.PREVIOUS_YEAR_DIR, run_dir, settings)
    summary = runner.run_report(data_dir, run_dir, settings.replace(index_ranking__previous_results=str(previous)))
    return TinyRun(summary, data_dir, before)


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tiny_settings, tmp_path_factory) -> TinyRun:
    """The chain on the tiny year of the old structure (departments and districts), with S01 named
    ``<script>alert(1)</script>``, D01 ``<img src=x onerror=...>`` and the first as a free-text answer, which
    the intake keeps (``keep_free_text``) so that it reaches the result tables."""
    data_dir = with_payloads(tiny_demo, tmp_path_factory.mktemp("data") / "tiny")
    settings = tiny_settings.replace(intake_quality__keep_free_text=True)
    return _run_chain(data_dir, settings, tmp_path_factory.mktemp("reports") / "tiny")


@pytest.fixture(scope="module")
def two_tier_run(tiny_two_tier_demo, tiny_two_tier_settings, tmp_path_factory) -> TinyRun:
    """The chain on the tiny two-tier year (departments and wards), its previous year of the old structure."""
    return _run_chain(tiny_two_tier_demo, tiny_two_tier_settings, tmp_path_factory.mktemp("reports") / "two_tier")


@pytest.fixture(params=["tiny_run", "two_tier_run"])
def each_run(request) -> TinyRun:
    """Each of the two runs in turn: the checks every run must pass."""
    return request.getfixturevalue(request.param)


def test_every_notebook_ran(each_run):
    summary = each_run.summary
    problems = [f"{nb.label}: {nb.failure.describe() if nb.failure else nb.status}"
                for nb in summary.notebooks if nb.status != runner.OK]
    assert not problems, "notebooks that did not run:\n" + "\n".join(problems)
    assert any(nb.kind == "stage" for nb in summary.notebooks)


def test_raw_data_untouched(each_run):
    assert _digests(each_run.data_dir) == each_run.before, "a stage modified the raw data folder"


def test_intake_results_written(each_run):
    summary = each_run.summary
    if not any(nb.name.startswith("20_") for nb in summary.notebooks):
        pytest.fail("no intake stage notebook 20_*.ipynb")
    for rel in INTAKE_RESULTS:
        assert (summary.run_dir / rel).exists(), f"{rel} was not written"
    responses = pd.read_parquet(summary.run_dir / "results" / "responses.parquet")
    assert len(responses) > 0
    assert responses["form_id"].is_unique


def test_one_report_per_unit_and_template(each_run):
    summary = each_run.summary
    # every unit that was issued questionnaires has an index, hence a report
    surveyed = set(pd.read_csv(each_run.data_dir / "sample.csv", dtype=str)["unit_id"])
    assert surveyed == set(schemas.read_result(summary.run_dir / "results", "ranks")["unit_id"])
    for template in runner.discover_fanout(config.NOTEBOOKS_DIR):
        done = {nb.unit_id for nb in summary.notebooks if nb.kind == "fanout" and nb.name == template.stem}
        assert done == surveyed, f"{template.name}: reports for {sorted(done)}, expected {sorted(surveyed)}"


def test_index_links_all_open(each_run):
    summary = each_run.summary
    hrefs = index_links(summary.index)
    htmls = [nb.html for nb in summary.notebooks if nb.html is not None]
    assert len(htmls) == len(summary.notebooks)  # every notebook ran and has its page
    linked = {(summary.run_dir / h).resolve() for h in hrefs}
    assert {p.resolve() for p in htmls} <= linked, "a report page is not linked from the index"
    downloads = [h for h in hrefs if h.startswith("downloads/")]
    assert downloads, "the index links no download (SPSS, Stata, Excel)"
    for href in hrefs:
        assert not re.match(r"^[a-z]+:", href), f"index link {href} is not relative"
        assert (summary.run_dir / href).is_file(), f"index links {href}, which does not exist"


def test_html_offline_and_without_code(each_run):
    summary = each_run.summary
    pages = [summary.index] + [nb.html for nb in summary.notebooks if nb.html is not None]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert runner.find_online_references(text) == [], f"{page.name} needs the network or runs a script"
        assert "<script" not in text.lower(), f"{page.name} has a script"
        assert "config.run_paths(" not in text, f"{page.name} shows code"
        body = STYLE.sub("", text)
        assert "jp-InputArea-editor" not in body and "jp-InputPrompt" not in body, f"{page.name} shows code cells"
        assert 'lang="vi"' in text


def test_no_personal_data_in_results_or_reports(each_run):
    summary, data_dir = each_run.summary, each_run.data_dir
    frame = pd.read_parquet(data_dir / "frame.parquet")
    local_file = next(data_dir / name for name in ("responses_districts.csv", "responses_communes.csv")
                      if (data_dir / name).exists())
    local = pd.read_csv(local_file, dtype=str)
    values: set[str] = set()
    for table, cols in ((frame, ("applicant_name", "phone", "address")),
                        (local, ("enumerator_name", "enumerator_phone", "enumerator_address"))):
        for col in cols:
            values.update(v for v in table[col].dropna().astype(str) if len(v) >= 8)
    if (data_dir / "recheck.csv").exists():  # the re-checkers' call list: contact details of respondents
        recheck = pd.read_csv(data_dir / "recheck.csv", dtype=str)
        for col in set(recheck.columns) & PERSONAL_COLUMNS:
            values.update(v for v in recheck[col].dropna() if len(v) >= 8)
    assert values
    occurring = _Occurring(values)
    for path in sorted(summary.run_dir.rglob("*")):
        if path.suffix == ".parquet":
            table = pd.read_parquet(path)
            assert not PERSONAL_COLUMNS & set(table.columns), f"{path.name} has personal columns"
            text_values = set(table.select_dtypes(exclude="number").astype(str).stack())
            leaked = text_values & values
            assert not leaked, f"{path.name} holds personal data, e.g. {sorted(leaked)[:1]}"
        elif path.suffix in {".html", ".csv", ".ipynb", ".json"}:
            # embedded images (base64 may spell any digits) and the stylesheet are not searched
            text = STYLE.sub("", DATA_URI.sub("", path.read_text(encoding="utf-8", errors="replace")))
            leaked = occurring(text)
            assert not leaked, f"{path.relative_to(summary.run_dir)} holds personal data, e.g. {leaked[:1]}"
        elif path.suffix in {".sav", ".dta", ".xlsx", ".pdf"}:
            # the downloads are as public as a page: read each the way its reader would
            text = public_text(path)
            leaked = occurring(text)
            assert not leaked, f"{path.relative_to(summary.run_dir)} holds personal data, e.g. {leaked[:1]}"


class _Occurring:
    """Which of many ``values`` (each at least ``k`` characters) occur in a text, as substrings.

    ``[v for v in values if v in text]`` scans the text once per value: tens of thousands of names and
    phones times every page took minutes. A value can only occur if each of its ``k``-character pieces
    (from its start every ``k`` characters, and its last ``k``) is one of the text's ``k``-character
    windows, so only the values whose pieces all pass that lookup are searched. Pieces and windows are
    compared by a polynomial hash mod 2**64 computed for all windows at once with numpy (a collision only
    adds a candidate, which the final ``v in text`` rejects), not as a Python set of every window."""

    BASE = np.uint64(1_000_003)

    def __init__(self, values: set[str], k: int = 8) -> None:
        self.k, self.values = k, sorted(values)
        assert min(map(len, self.values)) >= k
        offsets = np.cumsum([0] + [len(v) + 1 for v in self.values[:-1]])
        starts = [[o + i for i in (*range(0, len(v) - k + 1, k), len(v) - k)] for o, v in zip(offsets, self.values)]
        self.first_piece = np.cumsum([0] + [len(s) for s in starts[:-1]])  # each value's first piece
        self.pieces = self.hashes("\0".join(self.values))[np.concatenate(starts)]

    def hashes(self, text: str) -> np.ndarray:
        """The hash of every ``k``-character window of ``text``: sum of code point * BASE**(k-1-j)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        n = max(len(codes) - self.k + 1, 0)
        out = np.zeros(n, dtype=np.uint64)
        for j in range(self.k):  # k vectorised steps over all windows (uint64 arithmetic wraps mod 2**64)
            out = out * self.BASE + codes[j:j + n]
        return out

    def __call__(self, text: str) -> list[str]:
        present = np.isin(self.pieces, self.hashes(text))
        candidates = np.flatnonzero(np.logical_and.reduceat(present, self.first_piece))
        return [self.values[i] for i in candidates if self.values[i] in text]


def test_occurring_finds_exactly_the_values_in_a_text():
    find = _Occurring({"Nguyễn Văn Thành", "0912345678", "Trần Thị Bích Ngọc", "87654321", "Lê Văn Tám 1"})
    text = "<td>x0912345678</td> Trần Thị Bích Ngọ Nguyễn Văn Thành, 8765432 Lê Văn Tám 1"
    assert sorted(find(text)) == ["0912345678", "Lê Văn Tám 1", "Nguyễn Văn Thành"]
    assert find("") == [] and find("Nguyễn Văn") == []


@pytest.fixture(scope="module")
def outside_notebooks(tiny_run, tmp_path_factory) -> dict[str, tuple[str, Path, runner.NotebookFailure | None]]:
    """The notebooks a researcher opens on a finished run, executed in English on ``tiny_run``'s results in one
    kernel (as the runner does, namespace emptied in between): ``explore`` (notebooks/00_explore.ipynb) and
    ``scorecard`` (notebooks/fanout/unit_scorecard.ipynb for S01, the unit named ``<script>…``; the runner
    renders the same blocks in bulk, this is the notebook's own page). Name -> (status, executed, failure)."""
    from sipas_lib.runner.kernels import WarmKernel, ready_kernel

    summary = tiny_run.summary
    paths, settings = config.RunPaths(tiny_run.data_dir, summary.run_dir), summary.settings.replace(lang="en")
    out = tmp_path_factory.mktemp("outside")
    jobs = {"explore": (config.NOTEBOOKS_DIR / "00_explore.ipynb", None),
            "scorecard": (config.FANOUT_DIR / "unit_scorecard.ipynb", "S01")}
    kernel = WarmKernel(config.NOTEBOOKS_DIR, out / "kernel.log")
    done = {}
    try:
        for name, (source, unit_id) in jobs.items():
            params = runner.notebook_parameters(source, paths, settings, unit_id)
            assert "run_dir" in params and (unit_id is None or params["unit_id"] == unit_id)
            kernel = ready_kernel(kernel, config.NOTEBOOKS_DIR, out / "kernel.log")
            status, _, failure = runner.execute_notebook(source, out / f"{name}.ipynb", params, kernel=kernel)
            done[name] = (status, out / f"{name}.ipynb", failure)
    finally:
        kernel.shutdown()
    return done


def test_explore_notebook_runs_on_a_finished_run(outside_notebooks):
    """notebooks/00_explore.ipynb is not part of the chain, but must work on a run's results."""
    status, _, failure = outside_notebooks["explore"]
    assert status == runner.OK, failure.describe()


def test_year_on_year_against_the_previous_year(tiny_run):
    summary = tiny_run.summary
    results = Path(summary.run_dir) / "results"
    yoy = pd.read_parquet(results / "yoy.parquet")
    previous = pd.read_parquet(Path(summary.run_dir) / runner.PREVIOUS_YEAR_DIR / "results" / "indices.parquet")
    now = pd.read_parquet(results / "indices.parquet")
    merged = yoy.merge(previous, on=["unit_id", "level", "code"], suffixes=("", "_p")).merge(
        now, on=["unit_id", "level", "code"], suffixes=("", "_n"))
    assert len(merged) == len(yoy) > 0
    # change = this year's estimate - last year's, each from its own run
    assert (merged["change"] - (merged["estimate_n"] - merged["estimate_p"])).abs().max() < 1e-12
    assert (pd.read_parquet(results / "city_yoy.parquet")["estimate_prev"].notna()).all()


def test_same_inputs_parameters_and_seed_give_identical_result_tables(tiny_run, tmp_path):
    """Reproducible: the computing stages run again on the same inputs with the run's settings (in this
    process: the ``run`` functions the stage notebooks call) write the same result tables as the chain's
    kernels did."""
    import importlib

    summary = tiny_run.summary
    first = summary.run_dir / "results"
    paths = config.RunPaths(tiny_run.data_dir, tmp_path / "again").ensure()
    summary.settings.save(paths.run_dir)
    for stage in COMPUTING_STAGES:
        importlib.import_module(f"sipas_lib.stages.{stage}").run(paths, summary.settings)
    tables = sorted(p.name for p in paths.results.glob("*.parquet"))
    expected = {f"{name}.parquet" for stage in COMPUTING_STAGES for name in schemas.stage_outputs(stage)}
    assert expected <= set(tables) and len(tables) >= 15, sorted(expected - set(tables))
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(first / name), pd.read_parquet(paths.results / name), obj=name)


# ------------------------------------------------------------------------------------------------
# escaping of text from data (issue 7) on the tiny year's payloads
# ------------------------------------------------------------------------------------------------
def test_text_from_data_reaches_the_pages_escaped(tiny_run):
    """No live script or handler on any page of the run, nor in any stage notebook exported with nbconvert's
    stock exporter (which keeps scripts, so the runner's script stripping cannot hide a missing escape); the
    escaped name is shown (the check is not vacuous), and no notebook printed a warning or traceback."""
    summary = tiny_run.summary
    responses = schemas.read_result(summary.run_dir / "results", "responses")
    assert (responses["education_other"] == PAYLOAD).sum() == N_FREE_TEXT_PAYLOADS  # the free text got through
    run_dir = summary.run_dir
    pages = {str(p.relative_to(run_dir)): p.read_text(encoding="utf-8") for p in run_dir.rglob("*.html")}
    assert len(pages) >= 10, "the chain exported too few HTML pages"
    stages = [nb for nb in summary.notebooks if nb.kind == "stage" and nb.status == runner.OK]
    stock = {f"stock export of {nb.executed.name}": stock_html(nb.executed) for nb in stages}
    for name, page in {**pages, **stock}.items():
        assert live_scripts(page) == [], name
    assert PAYLOAD_ESCAPED in pages[str(Path("html", "unit_scorecard", "S01.html"))]
    assert PAYLOAD_ESCAPED in stock["stock export of 60_annual_report.ipynb"]
    printed = {nb.executed.name: error_outputs(nb.executed) for nb in stages}
    assert not any(printed.values()), {name: lines for name, lines in printed.items() if lines}


def test_scorecard_notebook_in_english_escapes_the_unit_name(outside_notebooks):
    status, executed, failure = outside_notebooks["scorecard"]
    assert status == runner.OK, failure.describe()
    page = stock_html(executed)
    assert live_scripts(page) == [] and PAYLOAD_ESCAPED in page
    assert error_outputs(executed) == []


def test_no_personal_word_in_any_file_of_the_run(tiny_run, outside_notebooks):
    """Whole-word search (publishing_checks.find_personal_data) for the applicants' and enumerators' names and
    phones, the departments' paper forms included, in every file of the run and of the notebooks outside it."""
    secrets = personal_strings(tiny_run.data_dir)
    assert len(secrets) > 50  # the tiny year has names and phones to find
    for folder in (tiny_run.summary.run_dir, outside_notebooks["explore"][1].parent):
        assert find_personal_data(folder, secrets) == []


#: A cell a spreadsheet would run: starts with = + - @ tab or CR and is not a plain number.
LIVE_FORMULA = re.compile(r"^[=+\-@\t\r](?![\d.,\s%]*$)")


def test_no_file_for_people_holds_a_live_formula(each_run):
    # issue 11, §5: every CSV/XLSX the run writes for people (quarantine list, Excel reports,
    # the mailing list in the private folder) has formula-like cells neutralised
    from openpyxl import load_workbook

    summary = each_run.summary
    folders = [summary.run_dir, config.RAW_DIR / "private" / summary.run_dir.name]
    files = [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.suffix in (".csv", ".xlsx")]
    assert any(p.suffix == ".csv" for p in files) and any(p.suffix == ".xlsx" for p in files)
    for path in files:
        if path.suffix == ".csv":
            cells = pd.read_csv(path, dtype=str, keep_default_na=False).to_numpy().ravel().tolist()
            live = [c for c in cells if LIVE_FORMULA.match(c)]
        else:  # in a workbook only a formula cell runs (openpyxl stores text starting with "=" as one)
            book = load_workbook(path, read_only=True)
            cells = [c for sheet in book.worksheets for row in sheet.iter_rows(values_only=True) for c in row]
            live = [c for c in cells if isinstance(c, str) and c.startswith("=")]
        assert not live, f"{path.name}: cells a spreadsheet would run: {live[:3]}"


# ------------------------------------------------------------------------------------------------
# the two-tier year (issue 12): year-on-year across the reform, the small-area model (issue 14)
# ------------------------------------------------------------------------------------------------
def _page(summary, name: str, unit_id: str | None = None) -> str:
    (nb,) = [nb for nb in summary.notebooks if nb.name == name and (unit_id is None or nb.unit_id == unit_id)]
    return nb.html.read_text(encoding="utf-8")


def test_two_tier_year_reports_its_wards_across_the_reform(two_tier_run):
    from sipas_lib.texts import load_texts

    summary = two_tier_run.summary
    results = Path(summary.run_dir) / "results"
    units = schemas.read_result(results, "units")
    wards = set(units.loc[units["unit_type"] == "ward", "unit_id"])
    assert len(wards) == 11
    # every ward is compared with the old districts it replaced (indicative, area-based) or says why not
    reform = schemas.read_result(results, "yoy_reform")
    assert wards <= set(reform["unit_id"]) and (~reform.loc[reform["unit_id"].isin(wards), "withheld"]).any()
    # the small-area model borrows from the wards' records; the league table shows it beside the direct index
    small_area = schemas.read_result(results, "small_area")
    assert set(small_area["unit_id"]) == wards and (small_area["official"] == "direct").all()
    texts = load_texts("annual_report")
    annual = _page(summary, "60_annual_report")
    assert texts["index_model"]["vi"].split(" (")[0] in annual  # "Dựa trên mô hình"
    assert texts["league_model_meaning"]["vi"].split(" nghĩa là")[0].strip('"') in annual
    ward = sorted(wards)[0]
    assert load_texts("unit_scorecard")["sc_model_title"]["vi"] in _page(summary, "unit_scorecard", ward)
