"""The run's downloads: SPSS, Stata and Excel files from the results, and (``--pdf``) the annual report
and the scorecards as PDF from their HTML. Everything goes to ``reports/<run>/downloads/``.

Called by :func:`sipas_lib.runner.run_report` after the notebooks and before the index page, which
links every file found in ``downloads/`` (:func:`sipas_lib.exports.list_downloads`). A download
never fails the run: a problem (a missing renderer, a table breaking its contract) is recorded
and shown on the index page and by ``sipas report``, and the HTML reports stay as they are.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from dataclasses import dataclass, field
from pathlib import Path

from sipas_lib import config
from sipas_lib.runner.export import PdfUnavailable, export_pdf, pdf_renderer
from sipas_lib.runner.records import OK, NotebookRun
from sipas_lib.settings import Settings

#: Stages whose HTML is printed to PDF with ``--pdf``: the annual report and every scorecard.
PDF_STAGES = ("annual_report", "unit_scorecard")
PDF_DIR = "pdf"


@dataclass
class Downloads:
    """What the downloads step wrote and what went wrong (shown on the index page)."""

    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pdf_targets(runs: list[NotebookRun], run_dir: Path) -> list[tuple[Path, Path]]:
    """``(html, pdf)`` pairs: each finished report of :data:`PDF_STAGES`, its PDF under
    ``downloads/pdf/`` at the HTML's place (``html/unit_scorecard/S01.html`` ->
    ``downloads/pdf/unit_scorecard/S01.pdf``)."""
    from sipas_lib.exports import DOWNLOADS_DIR  # the exports (pandas, SPSS, Excel writers) load when used

    html_root = run_dir / "html"
    pairs = []
    for run in runs:
        if run.stage in PDF_STAGES and run.status == OK and run.html is not None and Path(run.html).exists():
            relative = Path(run.html).relative_to(html_root)
            pairs.append((Path(run.html), run_dir / DOWNLOADS_DIR / PDF_DIR / relative.with_suffix(".pdf")))
    return pairs


def write_pdfs(pairs: list[tuple[Path, Path]], workers: int | None = None) -> tuple[list[Path], list[str]]:
    """Print each HTML to its PDF, on ``workers`` processes (WeasyPrint is pure Python: threads
    would share one interpreter lock). Returns ``(written, problems)``; a missing renderer is one
    problem naming what to install."""
    if not pairs:
        return [], []
    try:
        pdf_renderer()
    except PdfUnavailable as exc:
        return [], [str(exc)]
    written: list[Path] = []
    problems: list[str] = []
    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs)))
    if workers == 1:
        results = []
        for html, pdf in pairs:
            try:
                export_pdf(html, pdf)
                results.append((pdf, None))
            except Exception as exc:  # one bad page must not lose the others
                results.append((pdf, f"{html.name}: {type(exc).__name__}: {exc}"))
    else:
        with cf.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(export_pdf, html, pdf): (html, pdf) for html, pdf in pairs}
            results = []
            for future in cf.as_completed(futures):
                html, pdf = futures[future]
                try:
                    future.result()
                    results.append((pdf, None))
                except Exception as exc:
                    results.append((pdf, f"{html.name}: {type(exc).__name__}: {exc}"))
    for pdf, problem in sorted(results, key=lambda r: str(r[0])):
        if problem is None:
            written.append(pdf)
        else:
            problems.append(f"PDF {problem}")
    return written, problems


def write_in_kernel(run_dir: str, data_dir: str) -> dict:
    """The SPSS, Stata and Excel downloads of a run with its saved settings, with plain arguments and
    result (``{"files": [...], "problems": [...]}``): what the runner calls in one of its kernels."""
    from sipas_lib.settings import load_run_settings

    written = run_downloads(config.run_paths(data_dir, run_dir), load_run_settings(run_dir), [])
    return {"files": [str(f) for f in written.files], "problems": written.problems}


def run_downloads(paths: config.RunPaths, settings: Settings, runs: list[NotebookRun], *, pdf: bool = False,
                  workers: int | None = None) -> Downloads:
    """Write the SPSS, Stata and Excel downloads, and with ``pdf`` the PDFs of the annual report and the
    scorecards; never raises for a download (problems are returned)."""
    from sipas_lib.exports import write_downloads

    try:
        files, problems = write_downloads(paths, settings)
    except Exception as exc:  # a bug in a download must not cost the run its HTML and index page
        files, problems = [], [f"downloads: {type(exc).__name__}: {exc}"]
    result = Downloads(files, problems)
    if pdf:
        written, pdf_problems = write_pdfs(pdf_targets(runs, Path(paths.run_dir)), workers)
        result.files += written
        result.problems += pdf_problems
    return result
