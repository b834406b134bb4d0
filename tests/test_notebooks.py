"""Notebook tier: the whole report chain on a tiny simulated year, checked from the outside.

One run (module fixture) of every stage notebook and every fan-out template on a year with
2 departments and 2 districts at 5 % of the real sizes; then checks of what a user and a reviewer
get: statuses, result files, links of index.html, offline HTML, and no personal data anywhere.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from sipas_lib import config, runner, schemas

from conftest import index_links

pytestmark = pytest.mark.notebooks

PERSONAL_COLUMNS = {
    "applicant_name", "phone", "address", "enumerator_name", "enumerator_phone", "enumerator_address",
}
# results every run must have once the intake stage (20) ran (docs/CONTRACTS.md, "Run folder")
INTAKE_RESULTS = ("results/responses.parquet", "results/intake_summary.parquet", "results/units.parquet",
                  "quarantine/quarantine.csv")
DATA_URI = re.compile(r"data:[a-z]+/[a-z+.-]+;base64,[A-Za-z0-9+/=\s]+")
STYLE = re.compile(r"<style\b.*?</style>", re.DOTALL | re.IGNORECASE)




def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tiny_settings, tmp_path_factory):
    stages = runner.discover_stages(config.NOTEBOOKS_DIR)
    assert stages, "no stage notebooks in notebooks/ (issue 2 needs at least the intake stage)"
    before = _digests(tiny_demo)
    run_dir = tmp_path_factory.mktemp("reports") / "tiny"
    # Outputs with personal data (the mailing list) go to the throwaway SIPAS_RAW_DIR set in conftest.
    assert config.RAW_DIR != config.DATA_DIR / "raw"
    # As `sipas report` does: last year's indices first, for the year-on-year tables.
    previous = runner.run_previous_year(tiny_demo / runner.PREVIOUS_YEAR_DIR, run_dir, tiny_settings)
    summary = runner.run_report(
        tiny_demo, run_dir, tiny_settings.replace(index_ranking__previous_results=str(previous)),
    )
    return summary, before


def test_every_notebook_ran(tiny_run):
    summary, _ = tiny_run
    problems = [f"{nb.label}: {nb.failure.describe() if nb.failure else nb.status}"
                for nb in summary.notebooks if nb.status != runner.OK]
    assert not problems, "notebooks that did not run:\n" + "\n".join(problems)
    assert any(nb.kind == "stage" for nb in summary.notebooks)


def test_raw_data_untouched(tiny_run, tiny_demo):
    _, before = tiny_run
    assert _digests(tiny_demo) == before, "a stage modified the raw data folder"


def test_intake_results_written(tiny_run):
    summary, _ = tiny_run
    if not any(nb.name.startswith("20_") for nb in summary.notebooks):
        pytest.fail("no intake stage notebook 20_*.ipynb")
    for rel in INTAKE_RESULTS:
        assert (summary.run_dir / rel).exists(), f"{rel} was not written"
    responses = pd.read_parquet(summary.run_dir / "results" / "responses.parquet")
    assert len(responses) > 0
    assert responses["form_id"].is_unique


def test_one_report_per_unit_and_template(tiny_run, tiny_demo):
    summary, _ = tiny_run
    # every unit that was issued questionnaires has an index, hence a report
    surveyed = set(pd.read_csv(tiny_demo / "sample.csv", dtype=str)["unit_id"])
    assert surveyed == set(schemas.read_result(summary.run_dir / "results", "ranks")["unit_id"])
    for template in runner.discover_fanout(config.NOTEBOOKS_DIR):
        done = {nb.unit_id for nb in summary.notebooks if nb.kind == "fanout" and nb.name == template.stem}
        assert done == surveyed, f"{template.name}: reports for {sorted(done)}, expected {sorted(surveyed)}"


def test_index_links_all_open(tiny_run):
    summary, _ = tiny_run
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


def test_html_offline_and_without_code(tiny_run):
    summary, _ = tiny_run
    pages = [summary.index] + [nb.html for nb in summary.notebooks if nb.html is not None]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert runner.find_online_references(text) == [], f"{page.name} needs the network or runs a script"
        assert "<script" not in text.lower(), f"{page.name} has a script"
        assert "config.run_paths(" not in text, f"{page.name} shows code"
        body = STYLE.sub("", text)
        assert "jp-InputArea-editor" not in body and "jp-InputPrompt" not in body, f"{page.name} shows code cells"
        assert 'lang="vi"' in text


def test_no_personal_data_in_results_or_reports(tiny_run, tiny_demo):
    summary, _ = tiny_run
    frame = pd.read_parquet(tiny_demo / "frame.parquet")
    districts = pd.read_csv(tiny_demo / "responses_districts.csv", dtype=str)
    values = set()
    for table, cols in ((frame, ("applicant_name", "phone", "address")),
                        (districts, ("enumerator_name", "enumerator_phone", "enumerator_address"))):
        for col in cols:
            values.update(v for v in table[col].dropna().astype(str) if len(v) >= 8)
    assert values
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
            leaked = [v for v in values if v in text]
            assert not leaked, f"{path.relative_to(summary.run_dir)} holds personal data, e.g. {leaked[:1]}"
        elif path.suffix in {".sav", ".dta", ".xlsx", ".pdf"}:
            # the downloads are as public as a page: read each the way its reader would
            from test_publishing import public_text

            text = public_text(path)
            leaked = [v for v in values if v in text]
            assert not leaked, f"{path.relative_to(summary.run_dir)} holds personal data, e.g. {leaked[:1]}"


def test_explore_notebook_runs_on_a_finished_run(tiny_run, tiny_demo, tmp_path):
    """notebooks/00_explore.ipynb is not part of the chain, but must work on a run's results."""
    summary, _ = tiny_run
    source = config.NOTEBOOKS_DIR / "00_explore.ipynb"
    params = runner.notebook_parameters(source, config.RunPaths(tiny_demo, summary.run_dir),
                                        summary.settings.replace(lang="en"))
    assert "run_dir" in params
    status, _, failure = runner.execute_notebook(source, tmp_path / "explore.ipynb", params)
    assert status == runner.OK, failure.describe()


def test_year_on_year_against_the_previous_year(tiny_run):
    summary, _ = tiny_run
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


def test_same_inputs_parameters_and_seed_give_identical_result_tables(tiny_run, tiny_demo, tmp_path):
    """Reproducible: a second run of the computing stages writes the same result tables."""
    summary, _ = tiny_run
    first = Path(summary.run_dir) / "results"
    again = runner.run_report(tiny_demo, tmp_path / "again", summary.settings,
                              stages=[10, 20, 30, 40, 50], fanout=False)
    assert not again.failed
    tables = sorted(p.name for p in (tmp_path / "again" / "results").glob("*.parquet"))
    assert len(tables) >= 15
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(first / name),
                                      pd.read_parquet(tmp_path / "again" / "results" / name), obj=name)


#: A cell a spreadsheet would run: starts with = + - @ tab or CR and is not a plain number.
LIVE_FORMULA = re.compile(r"^[=+\-@\t\r](?![\d.,\s%]*$)")


def test_no_file_for_people_holds_a_live_formula(tiny_run):
    # issue 11, §5: every CSV/XLSX the run writes for people (quarantine list, Excel reports,
    # the mailing list in the private folder) has formula-like cells neutralised
    from openpyxl import load_workbook

    summary, _ = tiny_run
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
