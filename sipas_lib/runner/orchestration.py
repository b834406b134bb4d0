"""The run: stages as soon as their inputs are ready, per-unit reports, downloads, the index page.

``run_report`` runs one year. Its steps form a small graph (:mod:`sipas_lib.runner.schedule`):
last year's indices (:mod:`sipas_lib.runner.previous`, computed in a kernel or reused), every stage
notebook, each fan-out template's units and the downloads, run on ``workers`` threads that each keep
one warm kernel. A stage notebook fails when it raises (the notebook's own error, e.g. a
:class:`sipas_lib.stages.StageError` naming file, row and column) or when it did not write its main
result tables (:func:`sipas_lib.schemas.stage_outputs`); every step that needs it is then skipped.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from sipas_lib import config
from sipas_lib.runner.discovery import (
    RUN_PARAMETERS,
    discover_fanout,
    discover_stages,
    index_section,
    notebook_parameters,
    notebook_title,
    sipas_metadata,
    stage_of,
)
from sipas_lib.runner.downloads import Downloads, pdf_targets, write_pdfs
from sipas_lib.runner.execution import execute_notebook
from sipas_lib.runner.export import export_html
from sipas_lib.runner.index_page import write_index
from sipas_lib.runner.kernels import KernelCallError, WarmKernel
from sipas_lib.runner.previous import LABELS as PREVIOUS_LABELS
from sipas_lib.runner.previous import PREVIOUS_YEAR_DIR, compute_previous_year
from sipas_lib.runner.records import (
    FAILED,
    OK,
    SKIPPED,
    NotebookFailure,
    NotebookRun,
    ProgressCallback,
    RunSummary,
)
from sipas_lib.runner.schedule import PREVIOUS_YEAR, KernelStarter, Task, declared_needs, order_unknown, run_tasks
from sipas_lib.settings import Settings, load_settings
from sipas_lib.stages import StageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

OUTPUT_CLOCK_SLACK = 2.0
"""Seconds: a file system stamps modification times with a coarser clock than ``time.time()``."""
UNITS_PER_CALL = 25
"""Fewest pages a bulk renderer writes per call; a fan-out is cut into up to four calls per worker, so a
worker that finishes its stage early takes over scorecards from one still drawing charts."""


# --------------------------------------------------------------------------------------------
# one notebook, start to finish
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
    from sipas_lib import schemas

    missing = []
    for name in schemas.stage_outputs(stage):
        path = schemas.result_path(results, name)
        if not path.is_file() or (since is not None and path.stat().st_mtime < since - OUTPUT_CLOCK_SLACK):
            missing.append(f"results/{name}.parquet")
    return missing


def _run_job(job: _Job, kernel: WarmKernel | None = None, outputs_ready: Callable[[], None] | None = None) -> NotebookRun:
    """Execute a job's notebook, check a stage's main tables, export the HTML. ``outputs_ready`` is called
    once, after the first cell by whose end every main table of the stage has been written."""
    from sipas_lib import schemas

    run = job.run
    since = time.time()
    told: list[bool] = []

    def after_cell() -> None:
        if not told and not missing_outputs(run.stage, job.results, since):
            told.append(True)
            outputs_ready()

    watch = outputs_ready is not None and run.stage and job.results is not None and schemas.stage_outputs(run.stage)
    run.status, run.seconds, run.failure = execute_notebook(
        run.source, run.executed, job.parameters, timeout=job.timeout, kernel=kernel,
        after_cell=after_cell if watch else None,
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
def fanout_units(run_dir: str | os.PathLike, lang: str = config.DEFAULT_LANG) -> "pd.DataFrame":
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
    import pandas as pd

    from sipas_lib import schemas

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


class _Run:
    """What one ``run_report`` call is doing: its paths, settings, records and progress (thread-safe)."""

    def __init__(self, paths: config.RunPaths, settings: Settings, progress: ProgressCallback,
                 timeout: float | None, workers: int) -> None:
        self.paths, self.settings, self.timeout, self.workers = paths, settings, timeout, workers
        self.lang = settings.lang
        self._progress, self._lock = progress, threading.Lock()
        self.history = _history(paths.run_dir)

    def progress(self, event: str, payload) -> None:
        with self._lock:
            self._progress(event, payload)

    def weight(self, name: str, default: float = 1.0) -> float:
        return self.history.get(name, default)


def _history(run_dir: Path) -> dict[str, float]:
    """Seconds each step took in the folder's previous run (``run.json``), to start the longest chain first."""
    try:
        earlier = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    for nb in earlier.get("notebooks", []):
        seconds = float(nb.get("seconds") or 0) + float(nb.get("export_seconds") or 0)
        key = nb["name"] if nb.get("kind") != "fanout" else f"fanout:{nb['name']}"
        out[key] = out.get(key, 0.0) + seconds
    return out


def _fail(run: NotebookRun, reason: str, ename: str = "RunnerError") -> None:
    run.status, run.html = FAILED, None
    run.failure = NotebookFailure(ename=ename, evalue=reason)


def _fanout_task(template: Path, needs: set[str], ctx: _Run, records: dict[Path, list[NotebookRun]]) -> Task:
    """The task that lists a template's units once its needs ran, and hands back one task per batch of units."""
    title = notebook_title(template, ctx.lang)
    placeholder = records[template][0]
    meta = sipas_metadata(template)
    renderer = meta.get("renderer")

    def plan(_kernel) -> tuple[bool, list[Task]]:
        try:
            units = fanout_units(ctx.paths.run_dir, ctx.lang)
        except (FileNotFoundError, ValueError) as exc:  # ContractError is a ValueError
            _fail(placeholder, str(exc), type(exc).__name__)
            ctx.progress("done", placeholder)
            return False, []
        runs = [NotebookRun(
            kind="fanout", name=template.stem, title=f"{title} — {unit.name}", source=template,
            executed=ctx.paths.notebooks / template.stem / f"{_safe_name(unit.unit_id)}.ipynb",
            html=ctx.paths.html / template.stem / f"{_safe_name(unit.unit_id)}.html",
            unit_id=unit.unit_id, unit_type=unit.unit_type, unit_name=unit.name, section=title, stage=stage_of(template),
        ) for unit in units.itertuples(index=False)]
        records[template] = runs
        ctx.progress("fanout", len(runs))
        base = notebook_parameters(template, ctx.paths, ctx.settings, unit_id="")
        per_unit = ctx.weight(f"fanout:{template.stem}", 0.5 * len(runs)) / max(len(runs), 1)
        if renderer:
            size = max(UNITS_PER_CALL, math.ceil(len(runs) / (4 * ctx.workers)))
            batches = [runs[i:i + size] for i in range(0, len(runs), size)]
            return True, [_render_task(f"fanout:{template.stem}#{k}", renderer, batch, base, template, ctx, per_unit)
                          for k, batch in enumerate(batches)]
        tasks = []
        for run in runs:  # a template without a bulk renderer: one notebook per unit
            run.executed.parent.mkdir(parents=True, exist_ok=True)
            params = {**base, "unit_id": run.unit_id} if "unit_id" in base else dict(base)
            tasks.append(_notebook_task(f"fanout:{template.stem}:{run.unit_id}", run, _Job(run, params, ctx.lang, ctx.timeout),
                                        set(), ctx, weight=per_unit, announce=False))
        return True, tasks

    def skip(reason: str) -> None:
        placeholder.status, placeholder.html = SKIPPED, None
        ctx.progress("done", placeholder)

    # planning takes no time, but the weight of the pages it releases decides when it is picked
    return Task(f"fanout:{template.stem}", frozenset(needs), plan, skip=skip, fail=lambda r: _fail(placeholder, r),
                kernel=False, weight=ctx.weight(f"fanout:{template.stem}", 1.0))


def _render_task(name: str, renderer: str, batch: list[NotebookRun], base: dict, template: Path, ctx: _Run,
                 per_unit: float) -> Task:
    """Write a batch of a template's pages with its bulk renderer (``metadata.sipas.renderer``), in a kernel."""
    arguments = {key: base[key] for key in RUN_PARAMETERS if key in base}

    def work(kernel: WarmKernel) -> tuple[bool, list[Task]]:
        pages = [{"unit_id": r.unit_id, "html": str(r.html), "title": r.title} for r in batch]
        try:
            outcome = {rec["unit_id"]: rec for rec in kernel.call(renderer, {**arguments, "pages": pages})}
        except KernelCallError as exc:
            outcome = {r.unit_id: {"status": FAILED, "ename": exc.ename, "evalue": exc.evalue, "seconds": 0.0} for r in batch}
        for run in batch:
            rec = outcome.get(run.unit_id, {"status": FAILED, "ename": "RunnerError", "evalue": f"{renderer} wrote no page"})
            run.executed = run.html  # the page is the output: there is no executed notebook
            run.seconds = float(rec.get("seconds", 0.0))
            if rec["status"] == OK:
                run.status = OK
            else:
                _fail(run, rec.get("evalue", ""), rec.get("ename", "Error"))
            ctx.progress("done", run)
        return True, []

    def fail(reason: str) -> None:
        for run in batch:
            _fail(run, reason)
            ctx.progress("done", run)

    return Task(name, frozenset(), work, fail=fail, cwd=template.parent, weight=per_unit * len(batch))


def _notebook_task(name: str, run: NotebookRun, job: _Job, needs: set[str], ctx: _Run, *, weight: float,
                   announce: bool = True) -> Task:
    """Execute one notebook (a stage, or a template for one unit) in the worker's kernel and export it."""

    def work(kernel: WarmKernel) -> tuple[bool, list[Task]]:
        if run.kind == "stage" and run.stage:  # asked in the kernel, which imports the stage module anyway
            reason = kernel.call("sipas_lib.runner.orchestration:not_applicable_in",
                                 {"stage": run.stage, "data_dir": str(ctx.paths.data_dir), "run_dir": str(ctx.paths.run_dir)})
            if reason:  # nothing to do for this year's data (e.g. no administrative records): say why
                run.status, run.note, run.html = SKIPPED, reason, None
                ctx.progress("done", run)
                return True, []
        if announce:
            ctx.progress("start", run)
        _run_job(job, kernel, outputs_ready=lambda: task.release())
        ctx.progress("done", run)
        return run.status == OK, []

    def skip(reason: str) -> None:
        _mark_skipped(run, earlier_ok=False)
        ctx.progress("done", run)

    def fail(reason: str) -> None:
        _fail(run, reason)
        ctx.progress("done", run)

    task = Task(name, frozenset(needs), work, skip=skip, fail=fail, cwd=run.source.parent, weight=weight)
    return task


def _previous_task(previous_data: Path, ctx: _Run) -> tuple[NotebookRun, Task]:
    """Last year's result tables, computed (or reused) in a kernel: the record and the task."""
    folder = ctx.paths.run_dir / PREVIOUS_YEAR_DIR
    labels = PREVIOUS_LABELS.get(ctx.lang, PREVIOUS_LABELS["en"])
    run = NotebookRun(kind="previous", name=PREVIOUS_YEAR, title=labels["title"].format(year=ctx.settings.year - 1),
                      source=previous_data, executed=folder / "manifest.json", html=folder / "index.html", section="stage")

    def work(kernel: WarmKernel) -> tuple[bool, list[Task]]:
        ctx.progress("start", run)
        started = time.perf_counter()
        try:
            outcome = kernel.call("sipas_lib.runner.previous:run_in_kernel",
                                  {"previous_data_dir": str(previous_data), "run_dir": str(ctx.paths.run_dir)})
            run.status, run.note = OK, ("reused" if outcome["reused"] else "")
        except KernelCallError as exc:
            _fail(run, exc.evalue, exc.ename)
        run.seconds = time.perf_counter() - started
        ctx.progress("done", run)
        return run.status == OK, []

    def fail(reason: str) -> None:
        _fail(run, reason)
        ctx.progress("done", run)

    return run, Task(PREVIOUS_YEAR, frozenset(), work, fail=fail, weight=ctx.weight(PREVIOUS_YEAR, 1.0))


def _downloads_task(needs: set[str], ctx: _Run, written: Downloads) -> Task:
    """The SPSS, Stata and Excel downloads, in a kernel, once every stage that writes tables has finished."""

    def work(kernel: WarmKernel) -> tuple[bool, list[Task]]:
        try:
            outcome = kernel.call("sipas_lib.runner.downloads:write_in_kernel",
                                  {"run_dir": str(ctx.paths.run_dir), "data_dir": str(ctx.paths.data_dir)})
            written.files += [Path(f) for f in outcome["files"]]
            written.problems += outcome["problems"]
        except KernelCallError as exc:  # a download never fails the run: it is a problem on the index page
            written.problems.append(f"downloads: {exc.ename}: {exc.evalue}")
        return True, []

    return Task("downloads", frozenset(needs), work, fail=lambda r: written.problems.append(f"downloads: {r}"),
                always=True, weight=ctx.weight("downloads", 1.0))


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
def not_applicable(stage: str | None, paths: config.RunPaths) -> str | None:
    """A stage module's own reason to have nothing to do for this run (``not_applicable(paths)``), if any."""
    if stage is None:
        return None
    module = importlib.import_module(f"sipas_lib.stages.{stage}")
    check = getattr(module, "not_applicable", None)
    return check(paths) if check else None


def not_applicable_in(stage: str, data_dir: str, run_dir: str) -> str | None:
    """:func:`not_applicable` with plain arguments: what a stage task asks in its kernel before the notebook."""
    return not_applicable(stage, config.run_paths(data_dir, run_dir))


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


def _writes_tables(stage: str | None) -> bool:
    """Whether a stage writes result tables (an unknown stage is assumed to)."""
    from sipas_lib import schemas

    return stage is None or bool(schemas.stage_outputs(stage, main_only=False))


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
    previous_data: str | os.PathLike | None = None,
) -> RunSummary:
    """Run the stage notebooks, write the per-unit reports and the downloads, export HTML and write the index.

    Steps start as soon as what they read is there (:mod:`sipas_lib.runner.schedule`), on ``workers``
    threads that each keep one kernel from step to step.

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
        Write the per-unit reports of every template in ``notebooks/fanout/`` for every unit with an
        index (``results/ranks.parquet``, names from ``results/units.parquet``): with the template's
        bulk renderer when its metadata names one (``sipas.renderer``, e.g. the scorecards:
        :func:`sipas_lib.scorecards.render_scorecards`), else one notebook per unit.
    workers
        Steps run at the same time (default: the number of CPU cores).
    notebooks_dir
        Where the stage notebooks are (default: the project's ``notebooks/``).
    reuse_kernels
        Keep one kernel per worker and reset it between steps (namespace emptied, modules kept) instead
        of starting a fresh kernel for each (saves the kernel start and the imports of every step).
    timeout
        Seconds a single cell may run before it is stopped (default: no limit).
    progress
        Called as ``progress(event, payload)``: ``("start", run)`` before a stage (or the previous
        year) runs, ``("done", run)`` after every notebook or page, ``("fanout", n)`` before a template's
        n per-unit reports, ``("downloads", Downloads)`` after the downloads were written. Calls come
        from several threads, one at a time.
    pdf
        Also print the annual report and every scorecard to PDF (``downloads/pdf/``); the SPSS,
        Stata and Excel downloads are written unless ``downloads`` is False
        (:mod:`sipas_lib.runner.downloads`).
    applicable
        The stages a run profile applies (``sipas report --profile``; e.g. the national survey has no
        city allocation and no monthly records): the other stage notebooks are left out of the run
        and of its index altogether, not listed as skipped. ``None``: every stage notebook.
    previous_data
        Last year's input folder: its indices are computed (:data:`PREVIOUS_YEAR_STAGES`, in a kernel,
        beside this year's first stages) into ``<run_dir>/previous_year/``, or reused when its inputs,
        the settings and the code are unchanged (:func:`sipas_lib.runner.previous.compute_previous_year`),
        and the index stage reads them (``index_ranking.previous_results``).

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
    n_workers = workers or os.cpu_count() or 1
    templates = discover_fanout(notebooks_dir)
    # the kernels boot while the run is planned (their start is the first thing every chain waits for), but no
    # more than the steps that run in one (a template's units are not known yet: they may keep every worker busy)
    selected = [p for p in stage_paths if stages is None or int(p.name[:2]) in stages]
    kernel_steps = (len(selected) + (previous_data is not None) + bool(downloads)
                    + (n_workers * len(templates) if fanout else 0))
    n_kernels = min(n_workers, kernel_steps)
    starter = KernelStarter(n_kernels, notebooks_dir, paths.notebooks) if reuse_kernels and n_kernels else None
    try:
        if previous_data is not None:
            previous_data = Path(previous_data).resolve()
            settings = settings.replace(index_ranking__previous_results=str(run_dir / PREVIOUS_YEAR_DIR / "results"))
        settings.save(run_dir)
        ctx = _Run(paths, settings, progress or _noop, timeout, n_workers)

        tasks: list[Task] = []
        previous_run = None
        if previous_data is not None:
            previous_run, task = _previous_task(previous_data, ctx)
            tasks.append(task)

        # stage notebooks: a task each, needing what STAGE_NEEDS (or the notebook's metadata) says
        numbers = [int(p.name[:2]) for p in stage_paths]
        task_names = {int(p.name[:2]): stage_of(p) or p.stem for p in stage_paths}
        declared = {int(p.name[:2]): declared_needs(stage_of(p), sipas_metadata(p).get("needs")) for p in stage_paths}
        needs = order_unknown(numbers, declared, task_names)
        for number, known in declared.items():
            if known is None:  # a stage nobody described may read anything, last year's tables too
                needs[number].add(PREVIOUS_YEAR)
        stage_runs: list[NotebookRun] = []
        stage_tasks: dict[str, str | None] = {}  # task name -> stage
        for source in stage_paths:
            number = int(source.name[:2])
            run = NotebookRun(kind="stage", name=source.stem, title=notebook_title(source, ctx.lang), source=source,
                              executed=paths.notebooks / source.name, html=paths.html / f"{source.stem}.html",
                              section=index_section(source), stage=stage_of(source))
            stage_runs.append(run)
            if source not in selected:
                _mark_skipped(run)
                ctx.progress("done", run)
                continue
            job = _Job(run, notebook_parameters(source, paths, settings), ctx.lang, timeout, paths.results)
            tasks.append(_notebook_task(task_names[number], run, job, needs[number], ctx, weight=ctx.weight(source.stem)))
            stage_tasks[task_names[number]] = run.stage

        # per-unit reports: planned once their template's needs ran (the units are known then)
        records: dict[Path, list[NotebookRun]] = {}
        for template in templates:
            title = notebook_title(template, ctx.lang)
            records[template] = [NotebookRun("fanout", template.stem, title, template, paths.notebooks / template.stem,
                                             None, SKIPPED, section=title, stage=stage_of(template))]
            if not fanout:
                ctx.progress("done", records[template][0])
                continue
            wanted = declared_needs(stage_of(template), sipas_metadata(template).get("needs"))
            tasks.append(_fanout_task(template, set(stage_tasks) if wanted is None else wanted, ctx, records))

        written = Downloads()
        if downloads:
            tasks.append(_downloads_task({name for name, stage in stage_tasks.items() if _writes_tables(stage)}, ctx, written))
        run_tasks(tasks, ctx.workers, log_dir=paths.notebooks, cwd=notebooks_dir, reuse_kernels=reuse_kernels,
                  starter=starter)
    finally:
        if starter is not None:
            starter.close()

    runs = ([previous_run] if previous_run is not None else []) + stage_runs
    runs += [run for template in templates for run in records[template]]
    if pdf:
        files, problems = write_pdfs(pdf_targets(runs, run_dir), workers)
        written.files += files
        written.problems += problems
    ctx.progress("downloads", written)
    summary = RunSummary(run_dir=run_dir, index=run_dir / "index.html", notebooks=runs,
                         seconds=time.perf_counter() - started, settings=settings)
    write_index(summary, download_problems=written.problems)
    (run_dir / "run.json").write_text(summary.to_json(), encoding="utf-8")
    return summary


def run_previous_year(
    previous_data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    settings: Settings | None = None,
) -> Path:
    """Compute (or reuse) the previous year's indices for year-on-year comparisons in this process;
    return its results folder, what this year's ``index_ranking.previous_results`` setting expects.
    The settings used are :func:`~sipas_lib.runner.previous.previous_year_settings` of ``settings``.

    :func:`sipas_lib.runner.previous.compute_previous_year` on ``previous_data_dir`` into
    ``run_dir/previous_year/`` with the same settings as this year's run except ``year - 1``
    (:func:`previous_year_settings`), so both years' figures come from one method. ``run_report(...,
    previous_data=...)`` does the same in one of its kernels, beside this year's first stages.

    Raises
    ------
    RuntimeError
        When a stage of the previous year fails (the stage and its cause are in the message).
    """
    settings = settings if settings is not None else load_settings()
    try:
        outcome = compute_previous_year(previous_data_dir, run_dir, settings)
    except StageError as err:
        raise RuntimeError(f"the previous year ({settings.year - 1}, {previous_data_dir}) failed: {err}") from None
    return Path(outcome["results"])


def _mark_skipped(run: NotebookRun, earlier_ok: bool = True) -> None:
    """A skipped notebook keeps a link to the HTML of an earlier run, if there is one."""
    run.status = SKIPPED
    if earlier_ok and run.html is not None and run.html.exists():
        run.note = "earlier"
    else:
        run.html = None
