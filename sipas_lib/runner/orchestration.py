"""The chain: stage notebooks in order, per-unit notebooks in parallel, HTML, the index page.

``run_report`` runs one year; ``run_previous_year`` runs last year's computing stages with the same
settings for the year-on-year tables. A stage notebook fails when it raises (the notebook's own
error, e.g. a :class:`sipas_lib.stages.StageError` naming file, row and column) or when it did not
write its main result tables (:func:`sipas_lib.schemas.stage_outputs`); the chain then stops.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from sipas_lib import config, schemas
from sipas_lib.runner.discovery import (
    discover_fanout,
    discover_stages,
    index_section,
    notebook_parameters,
    notebook_title,
    stage_of,
)
from sipas_lib.runner.downloads import Downloads, run_downloads
from sipas_lib.runner.execution import execute_notebook
from sipas_lib.runner.export import export_html
from sipas_lib.runner.index_page import write_index
from sipas_lib.runner.kernels import WarmKernel, kernel_manager_class, ready_kernel
from sipas_lib.runner.records import (
    FAILED,
    OK,
    SKIPPED,
    NotebookFailure,
    NotebookRun,
    ProgressCallback,
    RunSummary,
)
from sipas_lib.settings import Settings, load_settings

PREVIOUS_YEAR_STAGES = (20, 30, 50)
"""Stages that give a year's indices and ranks: intake, weighting, index/ranking."""
PREVIOUS_YEAR_DIR = "previous_year"
OUTPUT_CLOCK_SLACK = 2.0
"""Seconds: a file system stamps modification times with a coarser clock than ``time.time()``."""


# --------------------------------------------------------------------------------------------
# one notebook, start to finish (also the worker function of the fan-out)
# --------------------------------------------------------------------------------------------
@dataclass
class _Job:
    run: NotebookRun
    parameters: dict
    lang: str
    timeout: float | None = None
    results: Path | None = None  # where a stage's main outputs must appear (None: not checked)


def missing_outputs(stage: str, results: str | os.PathLike, since: float | None = None) -> list[str]:
    """The main result tables of ``stage`` (``schemas.stage_outputs``) missing from ``results``,
    as ``results/<name>.parquet``; with ``since`` (a ``time.time()``), also those not written since then
    (a table left over from an earlier run does not count)."""
    missing = []
    for name in schemas.stage_outputs(stage):
        path = schemas.result_path(results, name)
        if not path.is_file() or (since is not None and path.stat().st_mtime < since - OUTPUT_CLOCK_SLACK):
            missing.append(f"results/{name}.parquet")
    return missing


def _run_job(job: _Job, kernel: WarmKernel | None = None) -> NotebookRun:
    run = job.run
    since = time.time()
    run.status, run.seconds, run.failure = execute_notebook(
        run.source, run.executed, job.parameters, timeout=job.timeout, kernel=kernel
    )
    if run.status == OK and run.stage and job.results is not None:
        missing = missing_outputs(run.stage, job.results, since)
        if missing:
            run.status = FAILED
            run.failure = NotebookFailure(ename="StageError",
                                          evalue=f"stage {run.stage} did not write {', '.join(missing)}")
    if run.executed.exists() and run.html is not None:
        try:
            run.export_seconds = export_html(run.executed, run.html, title=run.title, lang=job.lang)
        except Exception as exc:  # an export problem must not hide the execution result
            run.note = f"HTML export failed: {type(exc).__name__}: {exc}"
            run.html = None
            if run.status == OK:
                run.status = FAILED
                run.failure = NotebookFailure(ename=type(exc).__name__, evalue=f"HTML export failed: {exc}")
    else:
        run.html = None
    return run


# --------------------------------------------------------------------------------------------
# fan-out
# --------------------------------------------------------------------------------------------
def fanout_units(run_dir: str | os.PathLike, lang: str = config.DEFAULT_LANG) -> pd.DataFrame:
    """The units that get one report per fan-out template, in the order of the units table.

    Every unit of ``results/ranks.parquet`` (one row per unit with an index) gets a report; its
    type and name come from ``results/units.parquet`` (the year's units registry, written by the
    intake stage), never from the form of its id. Both tables are read through their contracts.

    Returns
    -------
    DataFrame
        ``unit_id, unit_type, name`` (name in ``lang``).

    Raises
    ------
    ContractError
        If a table is missing (naming the stage that writes it) or breaks its contract.
    ValueError
        If ``ranks`` names a unit that is not in ``units``.
    """
    results = Path(run_dir) / "results"
    units = schemas.read_result(results, "units")
    ranked = schemas.read_result(results, "ranks")
    unknown = sorted(set(ranked["unit_id"]) - set(units["unit_id"]))
    if unknown:
        raise ValueError(f"{results / 'ranks.parquet'} names unit(s) {', '.join(unknown)} that are not in "
                         f"{results / 'units.parquet'}")
    chosen = units.loc[units["unit_id"].isin(set(ranked["unit_id"]))]
    return pd.DataFrame({
        "unit_id": chosen["unit_id"].astype(str),
        "unit_type": chosen["unit_type"].astype(str),
        "name": chosen[f"name_{lang}"].astype(str),
    }).reset_index(drop=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _run_parallel(
    jobs: list[_Job], workers: int, progress: ProgressCallback, reuse_kernels: bool = True
) -> list[NotebookRun]:
    """Run the per-unit notebooks on ``workers`` threads, each driving its own kernel.

    Threads, not processes: the work happens in the kernel subprocesses; a thread only drives
    its kernel and renders HTML (measured here, 6 notebooks on 2 cores: threads 4.1 s, spawned
    processes 11.4 s, serial 14.2 s). With ``reuse_kernels`` each thread keeps one kernel for
    all its notebooks and resets it in between (see :class:`WarmKernel`), which saves the
    kernel start and the imports of every notebook after the first.
    """
    if not jobs:
        return []
    import queue
    import threading

    kernel_manager_class()  # build the class once, before the threads need it
    todo: queue.Queue = queue.Queue()
    for i, job in enumerate(jobs):
        todo.put((i, job))
    results: dict[int, NotebookRun] = {}
    lock = threading.Lock()
    log_dir = jobs[0].run.executed.parent

    def worker(number: int) -> None:
        kernel: WarmKernel | None = None
        try:
            while True:
                try:
                    i, job = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    if reuse_kernels:
                        kernel = ready_kernel(kernel, job.run.source.parent, log_dir / f"kernel-{number}.log")
                    run = _run_job(job, kernel)
                except Exception as exc:  # a bug in the runner itself: report it on this notebook
                    run = job.run
                    run.status, run.html = FAILED, None
                    run.failure = NotebookFailure(ename=type(exc).__name__, evalue=str(exc))
                    if kernel is not None:
                        kernel.broken = True
                with lock:
                    results[i] = run
                    progress("done", run)
        finally:
            if kernel is not None:
                kernel.shutdown()

    workers = max(1, min(workers, len(jobs)))
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sipas-fanout") as pool:
        for future in [pool.submit(worker, n) for n in range(workers)]:
            future.result()
    return [results[i] for i in range(len(jobs))]


def _fanout(
    templates: list[Path],
    paths: config.RunPaths,
    settings: Settings,
    timeout: float | None,
    enabled: bool,
    workers: int | None,
    progress: ProgressCallback,
    reuse_kernels: bool = True,
) -> list[NotebookRun]:
    lang = settings.lang
    titles = {t: notebook_title(t, lang) for t in templates}

    def template_run(t: Path, status: str) -> NotebookRun:
        return NotebookRun("fanout", t.stem, titles[t], t, paths.notebooks / t.stem, None, status,
                           section=titles[t], stage=stage_of(t))

    if not enabled:
        runs = [template_run(t, SKIPPED) for t in templates]
        for run in runs:
            progress("done", run)
        return runs
    try:
        units = fanout_units(paths.run_dir, lang)
    except (FileNotFoundError, ValueError) as exc:  # ContractError is a ValueError
        runs = []
        for t in templates:
            run = template_run(t, FAILED)
            run.failure = NotebookFailure(ename=type(exc).__name__, evalue=str(exc))
            runs.append(run)
            progress("done", run)
        return runs
    jobs: list[_Job] = []
    for template in templates:
        # what the template declares is read once; only unit_id changes from unit to unit
        base = notebook_parameters(template, paths, settings, unit_id="")
        for unit in units.itertuples(index=False):
            params = {**base, "unit_id": unit.unit_id} if "unit_id" in base else dict(base)
            safe = _safe_name(unit.unit_id)
            run = NotebookRun(
                kind="fanout",
                name=template.stem,
                title=f"{titles[template]} — {unit.name}",
                source=template,
                executed=paths.notebooks / template.stem / f"{safe}.ipynb",
                html=paths.html / template.stem / f"{safe}.html",
                unit_id=unit.unit_id,
                unit_type=unit.unit_type,
                unit_name=unit.name,
                section=titles[template],
                stage=stage_of(template),
            )
            jobs.append(_Job(run, params, lang, timeout))
    workers = workers or os.cpu_count() or 1
    progress("fanout", len(jobs))
    return _run_parallel(jobs, workers, progress, reuse_kernels)


# --------------------------------------------------------------------------------------------
# the chain
# --------------------------------------------------------------------------------------------
def not_applicable(stage: str | None, paths: config.RunPaths) -> str | None:
    """A stage module's own reason to have nothing to do for this run (``not_applicable(paths)``), if any."""
    if stage is None:
        return None
    module = importlib.import_module(f"sipas_lib.stages.{stage}")
    check = getattr(module, "not_applicable", None)
    return check(paths) if check else None


def _noop(event: str, payload) -> None:  # pragma: no cover - trivial
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_run_dir(run_dir: str | os.PathLike, notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR,
                  data_dir: str | os.PathLike | None = None) -> Path:
    """Refuse a run folder that would overwrite what a run reads: the source notebooks or the input data.

    A run writes ``notebooks/``, ``html/``, ``results/`` … into its folder, so a run folder that is
    (or contains) the notebooks folder would replace the source notebooks by executed copies.

    Raises
    ------
    ValueError
        Naming the folder and what it would overwrite; nothing has been written.
    """
    folder = Path(run_dir).resolve()
    protected = {
        "the source notebooks": [Path(notebooks_dir).resolve(), config.NOTEBOOKS_DIR.resolve()],
        "the input data": [Path(data_dir).resolve()] if data_dir else [],
    }
    for what, places in protected.items():
        for place in places:
            if _inside(place, folder):
                raise ValueError(f"run folder {folder} holds {what} ({place}); a run writes its notebooks, "
                                 "HTML and results into its own folder: choose one under reports/")
    return folder


def run_report(
    data_dir: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    settings: Settings | None = None,
    stages: Sequence[int] | None = None,
    fanout: bool = True,
    workers: int | None = None,
    *,
    notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR,
    reuse_kernels: bool = True,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
    pdf: bool = False,
    downloads: bool = True,
    applicable: Sequence[int] | None = None,
) -> RunSummary:
    """Run the stage notebooks, fan out the per-unit reports, export HTML and write the index.

    Parameters
    ----------
    data_dir
        Folder with the year's input files (``None``/empty: the bundled demo, ``data/demo``).
    run_dir
        The run folder, e.g. ``reports/2025-demo``; created if needed. Earlier results in it are
        kept, so ``stages=[30]`` re-runs weighting on the intake of an earlier run.
    settings
        The run configuration (:func:`sipas_lib.settings.load_settings`; default: the shipped
        defaults). It is saved as ``<run_dir>/settings.yaml`` and shown on the index page. Every
        notebook receives ``run_dir``, ``data_dir``, ``common`` and ``stage_settings`` (its own
        section), as far as its parameters cell declares them.
    stages
        Two-digit prefixes of the stage notebooks to run (default: all); the others are listed
        as skipped.
    fanout
        Run the per-unit templates of ``notebooks/fanout/`` for every unit with an index
        (``results/ranks.parquet``, names from ``results/units.parquet``).
    workers
        Notebooks run at the same time in the fan-out (default: the number of CPU cores).
    notebooks_dir
        Where the stage notebooks are (default: the project's ``notebooks/``).
    reuse_kernels
        In the fan-out, keep one kernel per worker and reset it between notebooks instead of
        starting a fresh kernel for each (saves kernel start + imports per unit). Stage notebooks
        always get a fresh kernel.
    timeout
        Seconds a single cell may run before it is stopped (default: no limit).
    progress
        Called as ``progress(event, payload)``: ``("start", run)`` before a stage runs,
        ``("done", run)`` after every notebook, ``("fanout", n)`` before the per-unit reports,
        ``("downloads", Downloads)`` after the downloads were written.
    pdf
        Also print the annual report and every scorecard to PDF (``downloads/pdf/``); the SPSS,
        Stata and Excel downloads are written unless ``downloads`` is False
        (:mod:`sipas_lib.runner.downloads`; the previous year's run writes none).
    applicable
        The stages a run profile applies (``sipas report --profile``; e.g. the national survey has no
        city allocation and no monthly records): the other stage notebooks are left out of the run
        and of its index altogether, not listed as skipped. ``None``: every stage notebook.

    Returns
    -------
    RunSummary
        Every notebook with status, times and failure; ``summary.ok`` is False if any failed.

    Raises
    ------
    ValueError
        Before anything is written: an unknown stage number, or a run folder that holds the
        notebooks or the input data.
    """
    settings = settings if settings is not None else load_settings()
    progress = progress or _noop
    started = time.perf_counter()
    notebooks_dir = Path(notebooks_dir)
    check_run_dir(run_dir, notebooks_dir, data_dir or config.DEMO_DIR)
    stage_paths = discover_stages(notebooks_dir)
    if applicable is not None:
        stage_paths = [p for p in stage_paths if int(p.name[:2]) in set(applicable)]
    if stages is not None:
        known = {int(p.name[:2]) for p in stage_paths}
        unknown = sorted(set(stages) - known)
        if unknown:
            raise ValueError(
                f"no stage notebook numbered {', '.join(map(str, unknown))} in {notebooks_dir}; "
                f"stages are {', '.join(str(k) for k in sorted(known)) or 'none'}"
            )
    paths = config.run_paths(data_dir, run_dir)
    run_dir = paths.run_dir
    settings.save(run_dir)
    lang = settings.lang

    runs: list[NotebookRun] = []
    stopped = False
    for source in stage_paths:
        run = NotebookRun(
            kind="stage",
            name=source.stem,
            title=notebook_title(source, lang),
            source=source,
            executed=paths.notebooks / source.name,
            html=paths.html / f"{source.stem}.html",
            section=index_section(source),
            stage=stage_of(source),
        )
        runs.append(run)
        if stopped or (stages is not None and int(source.name[:2]) not in stages):
            _mark_skipped(run, earlier_ok=not stopped)
            progress("done", run)
            continue
        reason = not_applicable(run.stage, paths)
        if reason:  # nothing to do for this year's data (e.g. no administrative records): say why
            run.status, run.note, run.html = SKIPPED, reason, None
            progress("done", run)
            continue
        progress("start", run)
        _run_job(_Job(run, notebook_parameters(source, paths, settings), lang, timeout, paths.results))
        progress("done", run)
        if run.status == FAILED:
            stopped = True

    templates = discover_fanout(notebooks_dir)
    if templates:
        runs.extend(
            _fanout(templates, paths, settings, timeout, fanout and not stopped, workers, progress, reuse_kernels)
        )

    written = run_downloads(paths, settings, runs, pdf=pdf, workers=workers) if downloads else Downloads()
    progress("downloads", written)
    summary = RunSummary(
        run_dir=run_dir,
        index=run_dir / "index.html",
        notebooks=runs,
        seconds=time.perf_counter() - started,
        settings=settings,
    )
    write_index(summary, download_problems=written.problems)
    (run_dir / "run.json").write_text(summary.to_json(), encoding="utf-8")
    return summary


def previous_year_settings(settings: Settings) -> Settings:
    """This year's settings for last year's run: ``year - 1`` and no year-on-year of its own."""
    return settings.replace(year=settings.year - 1, index_ranking__previous_results="")


def run_previous_year(
    previous_data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    settings: Settings | None = None,
    *,
    notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR,
    progress: ProgressCallback | None = None,
) -> Path:
    """Compute the previous year's indices for year-on-year comparisons; return its results folder.

    Runs :data:`PREVIOUS_YEAR_STAGES` on ``previous_data_dir`` into ``run_dir/previous_year/``
    (no per-unit reports) with the same settings as this year's run, except ``year - 1``
    (:func:`previous_year_settings`), so both years' figures come from one method. The folder is
    what this year's ``index_ranking.previous_results`` setting expects.

    Raises
    ------
    RuntimeError
        When a stage of the previous year fails (its notebook and cause are in the message).
    """
    settings = settings if settings is not None else load_settings()
    sub = Path(run_dir) / PREVIOUS_YEAR_DIR
    summary = run_report(previous_data_dir, sub, previous_year_settings(settings),
                         stages=list(PREVIOUS_YEAR_STAGES), fanout=False, notebooks_dir=notebooks_dir,
                         progress=progress, downloads=False)
    if summary.failed:
        details = "; ".join(f"{f.name}: {f.failure.cause()}" if f.failure else f.name for f in summary.failed)
        raise RuntimeError(f"the previous year ({settings.year - 1}, {previous_data_dir}) failed: {details}")
    return sub / "results"


def _mark_skipped(run: NotebookRun, earlier_ok: bool = True) -> None:
    """A skipped notebook keeps a link to the HTML of an earlier run, if there is one."""
    run.status = SKIPPED
    if earlier_ok and run.html is not None and run.html.exists():
        run.note = "earlier"
    else:
        run.html = None
