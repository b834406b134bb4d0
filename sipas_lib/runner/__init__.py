"""Run a year: stages as soon as their inputs are ready, per-unit reports in bulk, offline HTML.

``run_report`` is what ``sipas report`` (and ``make report``) calls. It

1. computes last year's indices for the year-on-year tables (``previous_data``), in-process with
   the stage modules' ``run`` functions (no notebooks), or reuses them when last year's data, the
   settings and the code are unchanged (:mod:`~sipas_lib.runner.previous`, a manifest beside them);
2. executes the numbered stage notebooks ``notebooks/[1-9][0-9]_*.ipynb`` with papermill on the
   ``python3`` kernel (which resolves to the interpreter running the workbench: jupyter_client
   starts ``python -m ipykernel_launcher`` with ``sys.executable``, so nothing is registered
   globally and no virtual environment needs activating), each as soon as the stages whose tables
   it reads are done (:mod:`~sipas_lib.runner.schedule`): on ``workers`` threads (default: the CPU
   cores), each keeping one warm kernel from step to step (namespace emptied, imports kept);
3. hands each notebook ``run_dir``, ``data_dir``, ``common`` (the run configuration's common
   section) and ``stage_settings`` (its own section, :mod:`sipas_lib.settings`), as far as its
   ``parameters`` cell declares them; the effective configuration is saved as
   ``reports/<run>/settings.yaml`` and shown on the index page;
4. writes every template of ``notebooks/fanout/`` once per unit with an index
   (``results/ranks.parquet``; type and name from the units registry, ``results/units.parquet``):
   with the template's bulk renderer when its metadata names one (the scorecards:
   :func:`sipas_lib.scorecards.render_scorecards`, the same functions the notebook shows, ~10 ms a
   page), else one notebook per unit (parameter ``unit_id``);
5. exports every executed notebook to HTML without code, prompts or cells tagged ``remove-cell``,
   with no script at all (no require.js, MathJax, mermaid or widget loaders from a CDN), so the
   reports open offline; writes the downloads (SPSS, Stata, Excel; PDF with ``pdf``);
6. writes ``reports/<run>/index.html`` linking every report with its run time and status, and
   ``reports/<run>/run.json`` with the same information for machines.

A stage fails when its notebook raises (e.g. a :class:`sipas_lib.stages.StageError` naming file,
row and column) or when it did not write its main result tables. Then every step that needs it is
skipped: the partially executed notebook is still exported (papermill saves it with the traceback),
marked ``failed`` in the index, and the summary names the notebook, the cell and the error. A
failing per-unit page does not stop the others.

Layout of a run folder (see :mod:`sipas_lib.config`)::

    reports/<run>/index.html            the page reviewers open
    reports/<run>/html/NN_stage.html
    reports/<run>/html/<template>/<unit_id>.html
    reports/<run>/notebooks/...         executed notebooks (stages; per-unit ones without a renderer)
    reports/<run>/results/              tidy tables the stages hand on
    reports/<run>/previous_year/        last year's tables, manifest.json and index.html
    reports/<run>/settings.yaml         the effective configuration
    reports/<run>/run.json              statuses and times, for machines

The package follows the seams of the job: :mod:`~sipas_lib.runner.discovery` (which notebooks,
titles, parameters), :mod:`~sipas_lib.runner.schedule` (which step needs which, the workers),
:mod:`~sipas_lib.runner.execution` (papermill, failure parsing), :mod:`~sipas_lib.runner.kernels`
(the python3 kernel, warm kernels, calling a function in one), :mod:`~sipas_lib.runner.previous`
(last year), :mod:`~sipas_lib.runner.export` (offline HTML), :mod:`~sipas_lib.runner.index_page`
and :mod:`~sipas_lib.runner.orchestration` (``run_report``, ``run_previous_year``, the fan-out).
"""

from __future__ import annotations

from sipas_lib.runner.discovery import (
    RUN_PARAMETERS,
    discover_fanout,
    discover_stages,
    index_section,
    notebook_parameters,
    notebook_title,
    parse_stages,
    select_parameters,
    sipas_metadata,
    stage_of,
)
from sipas_lib.runner.execution import execute_notebook
from sipas_lib.runner.export import export_html, find_online_references, make_offline
from sipas_lib.runner.index_page import settings_tables, write_index
from sipas_lib.runner.kernels import KERNEL_NAME
from sipas_lib.runner.orchestration import (
    check_run_dir,
    fanout_units,
    missing_outputs,
    run_previous_year,
    run_report,
)
from sipas_lib.runner.previous import PREVIOUS_YEAR_DIR, PREVIOUS_YEAR_STAGES, previous_year_settings
from sipas_lib.runner.schedule import STAGE_NEEDS
from sipas_lib.runner.records import (
    FAILED,
    OK,
    SKIPPED,
    NotebookFailure,
    NotebookRun,
    ProgressCallback,
    RunSummary,
)

__all__ = [
    "FAILED",
    "KERNEL_NAME",
    "OK",
    "PREVIOUS_YEAR_DIR",
    "PREVIOUS_YEAR_STAGES",
    "RUN_PARAMETERS",
    "SKIPPED",
    "STAGE_NEEDS",
    "NotebookFailure",
    "NotebookRun",
    "ProgressCallback",
    "RunSummary",
    "check_run_dir",
    "discover_fanout",
    "discover_stages",
    "execute_notebook",
    "export_html",
    "fanout_units",
    "find_online_references",
    "index_section",
    "make_offline",
    "missing_outputs",
    "notebook_parameters",
    "notebook_title",
    "parse_stages",
    "previous_year_settings",
    "run_previous_year",
    "run_report",
    "select_parameters",
    "settings_tables",
    "sipas_metadata",
    "stage_of",
    "write_index",
]
