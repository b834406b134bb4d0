"""Run the report chain: stage notebooks in order, per-unit notebooks in parallel, offline HTML.

``run_report`` is what ``sipas report`` (and ``make report``) calls. It

1. executes the numbered stage notebooks ``notebooks/[1-9][0-9]_*.ipynb`` in order with papermill,
   in this Python process, on the ``python3`` kernel (which resolves to the interpreter running
   the workbench: jupyter_client starts ``python -m ipykernel_launcher`` with ``sys.executable``,
   so nothing is registered globally and no virtual environment needs activating);
2. hands each notebook only the run parameters it declares in its ``parameters`` cell
   (``year, data_dir, run_dir, seed, lang``), so stage-specific parameters keep their defaults;
3. fans every template in ``notebooks/fanout/`` out once per department and district listed in
   ``results/units.parquet`` (parameter ``unit_id``), in parallel: as many worker threads as
   CPU cores, each driving one kernel that it resets between units (imports stay loaded, the
   namespace is emptied), which cuts the per-unit overhead from ~4 s to under 1 s;
4. exports every executed notebook to HTML without code, prompts or cells tagged ``remove-cell``,
   with no script at all (no require.js, MathJax, mermaid or widget loaders from a CDN), so the
   reports open offline;
5. writes ``reports/<run>/index.html`` linking every report with its run time and status, and
   ``reports/<run>/run.json`` with the same information for machines.

When a stage fails the chain stops: the partially executed notebook is still exported (papermill
saves it with the traceback), marked ``failed`` in the index, and the summary names the notebook,
the cell and the error. Later stages and the fan-out are marked ``skipped``. A failing per-unit
notebook does not stop the others. Each stage notebook gets a fresh kernel.

Layout of a run folder (see :mod:`sipas_lib.config`)::

    reports/<run>/index.html            the page reviewers open
    reports/<run>/html/NN_stage.html
    reports/<run>/html/<template>/<unit_id>.html
    reports/<run>/notebooks/...         executed notebooks, same layout
    reports/<run>/results/              tidy tables the stages hand on
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from sipas_lib import config

__all__ = [
    "COMMON_PARAMETERS",
    "FANOUT_UNIT_TYPES",
    "NotebookFailure",
    "NotebookRun",
    "RunSummary",
    "discover_stages",
    "discover_fanout",
    "parse_stages",
    "notebook_title",
    "index_section",
    "select_parameters",
    "execute_notebook",
    "export_html",
    "make_offline",
    "find_online_references",
    "fanout_units",
    "write_index",
    "run_report",
]

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
COMMON_PARAMETERS = ("year", "data_dir", "run_dir", "seed", "lang")
"""Run parameters passed to every notebook that declares them."""
FANOUT_UNIT_TYPES = ("department", "district")
"""Unit types that get one report per template in ``notebooks/fanout/``."""
KERNEL_NAME = "python3"
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
REMOVED_CELL_TAGS = frozenset({"remove-cell", "parameters", "injected-parameters"})
STAGE_PATTERN = re.compile(r"^[1-9][0-9]_[^/]*\.ipynb$")

ProgressCallback = Callable[[str, "NotebookRun | int"], None]
"""``progress(event, payload)``: ``("start", run)`` before a stage, ``("done", run)`` after any
notebook (stage or per-unit; also for skipped ones), ``("fanout", n)`` before n per-unit notebooks
start in parallel."""


# --------------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------------
@dataclass
class NotebookFailure:
    """Where and why a notebook failed.

    ``cell`` is the 1-based position of the failing cell in the *source* notebook (what a
    researcher sees when opening it in JupyterLab); ``execution_count`` is its ``In [n]``.
    """

    ename: str
    evalue: str
    cell: int | None = None
    execution_count: int | None = None
    source: str = ""
    line: str = ""  # the failing line of the cell, e.g. "line 5: alloc = allocate(...)"

    def describe(self) -> str:
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        if self.execution_count is not None:
            where += f" (In [{self.execution_count}])"
        code = self.line or next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")
        return f"{where}: {self.ename}: {self.evalue}" + (f"\n    {code}" if code else "")


@dataclass
class NotebookRun:
    """One executed (or skipped) notebook of a run."""

    kind: str  # "stage" or "fanout"
    name: str  # notebook file stem, e.g. "20_intake" or "scorecard"
    title: str
    source: Path
    executed: Path
    html: Path | None
    status: str = SKIPPED
    seconds: float = 0.0  # kernel start + execution
    export_seconds: float = 0.0
    unit_id: str | None = None
    unit_type: str | None = None
    unit_name: str | None = None
    failure: NotebookFailure | None = None
    note: str = ""
    section: str = ""  # index section: the notebook's (template's) title

    @property
    def label(self) -> str:
        return f"{self.name}/{self.unit_id}" if self.unit_id else self.name


@dataclass
class RunSummary:
    """What ``run_report`` did; ``ok`` is False when any notebook failed."""

    run_dir: Path
    index: Path
    notebooks: list[NotebookRun]
    seconds: float
    parameters: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[NotebookRun]:
        return [nb for nb in self.notebooks if nb.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        out = {OK: 0, FAILED: 0, SKIPPED: 0}
        for nb in self.notebooks:
            out[nb.status] += 1
        return out

    def to_json(self) -> str:
        def conv(obj):
            if isinstance(obj, Path):
                return str(obj)
            raise TypeError(type(obj))

        payload = {
            "run_dir": self.run_dir,
            "index": self.index,
            "seconds": round(self.seconds, 3),
            "parameters": self.parameters,
            "counts": self.counts(),
            "notebooks": [asdict(nb) for nb in self.notebooks],
        }
        return json.dumps(payload, default=conv, ensure_ascii=False, indent=1)


# --------------------------------------------------------------------------------------------
# discovery and parameters
# --------------------------------------------------------------------------------------------
def discover_stages(notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR) -> list[Path]:
    """Stage notebooks ``NN_name.ipynb`` (NN = 10..99) in run order; ``00_explore`` is not one."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and STAGE_PATTERN.match(p.name))


def discover_fanout(notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR) -> list[Path]:
    """Per-unit templates in ``notebooks/fanout/``: scorecards first, then the others by name."""
    folder = Path(notebooks_dir) / "fanout"
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.ipynb") if p.is_file()]
    return sorted(found, key=lambda p: ("scorecard" not in p.stem, p.stem))


def parse_stages(text: str | Sequence[int] | None) -> list[int] | None:
    """Parse ``"10,20"`` into ``[10, 20]``; ``None``/empty means every stage.

    Raises
    ------
    ValueError
        If an entry is not a two-digit stage number such as ``10``.
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        token = str(item).strip()
        if not token:
            continue
        if not re.fullmatch(r"[1-9][0-9]", token):
            raise ValueError(
                f"stage {token!r} is not a stage number; give the two-digit prefixes of the stage "
                "notebooks, e.g. --stages 10,20"
            )
        out.append(int(token))
    return out or None


def notebook_title(path: str | os.PathLike, lang: str = config.DEFAULT_LANG) -> str:
    """Title shown in the index: ``metadata.sipas.title.<lang>`` if set, else the first
    Markdown heading, else the file stem."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    meta_title = nb.metadata.get("sipas", {}).get("title")
    if isinstance(meta_title, dict) and meta_title.get(lang):
        return str(meta_title[lang])
    if isinstance(meta_title, str) and meta_title:
        return meta_title
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.lstrip().startswith("#"):
                return line.lstrip().lstrip("#").strip()
    return path.stem


ADMIN_PATTERN = re.compile(r"monthly|survey_report|admin", re.IGNORECASE)


def index_section(path: str | os.PathLike) -> str:
    """``"admin"`` for the administrative reports (monthly report, annual survey-implementation
    report), listed after the scorecards in the index; ``"stage"`` for the others.

    Set ``metadata.sipas.index_section`` in a notebook to choose; otherwise the file name decides
    (``monthly``, ``survey_report`` or ``admin`` in it means administrative).
    """
    import nbformat

    path = Path(path)
    chosen = nbformat.read(path, as_version=4).metadata.get("sipas", {}).get("index_section")
    if chosen in ("admin", "stage"):
        return chosen
    return "admin" if ADMIN_PATTERN.search(path.stem) else "stage"


def select_parameters(notebook: str | os.PathLike, values: dict) -> dict:
    """Keep only the parameters the notebook declares in its ``parameters`` cell.

    Uses :func:`papermill.inspect_notebook`, so stage-specific parameters keep their defaults
    and papermill never injects a variable the notebook does not know.
    """
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {key: value for key, value in values.items() if key in declared}


# --------------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ARROW = re.compile(r"^-+>\s*(\d+)\s(.*)$")


def _failing_line(traceback: Sequence[str] | None) -> str:
    """``"line 5: <code>"`` for the line of the notebook cell the traceback points at."""
    for frame in traceback or ():
        text = _ANSI.sub("", str(frame))
        if not text.startswith("Cell In["):
            continue
        for row in text.splitlines():
            match = _ARROW.match(row.strip())
            if match:
                return f"line {match.group(1)}: {match.group(2).strip()}"
    return ""


def _last_started_cell(executed: Path) -> tuple[int | None, str]:
    """Position (in the source notebook) and code of the last cell papermill started, for
    failures that are not an error inside a cell (dead kernel, timeout)."""
    try:
        import nbformat

        nb = nbformat.read(executed, as_version=4)
    except Exception:
        return None, ""
    number, found, source = 0, None, ""
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags or "papermill-error-cell-tag" in tags:
            continue
        number += 1
        if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("start_time"):
            found, source = number, cell.source
    return found, source


def _failure_from_papermill(exc, executed: Path) -> NotebookFailure:
    """Translate papermill's cell index (which counts the injected-parameters cell) into the
    position of the cell in the source notebook."""
    cell_index = getattr(exc, "cell_index", None)
    cell_number = None
    if cell_index is not None:
        injected_before = 0
        try:
            import nbformat

            nb = nbformat.read(executed, as_version=4)
            cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
            injected_before = sum(
                "injected-parameters" in c.metadata.get("tags", []) for c in cells[:cell_index]
            )
        except Exception:  # the notebook could not be read back; report papermill's index
            pass
        cell_number = cell_index - injected_before + 1
    return NotebookFailure(
        ename=str(getattr(exc, "ename", type(exc).__name__)),
        evalue=str(getattr(exc, "evalue", exc)),
        cell=cell_number,
        execution_count=getattr(exc, "exec_count", None),
        source=str(getattr(exc, "source", "")),
        line=_failing_line(getattr(exc, "traceback", None)),
    )


_KERNEL_NOISE = (
    "KeyboardInterrupt caught in kernel",  # jupyter_client interrupts every kernel it shuts down
    "Kernel is running over TCP without encryption",
)


def _kernel_manager_class():
    """A kernel manager that writes the kernel's own stdout/stderr to a log file.

    Otherwise every kernel prints start-up and shut-down chatter into the terminal of
    ``sipas report``. The log sits next to the executed notebook (``<name>.kernel.log``) and is
    deleted when it holds nothing but that chatter.
    """
    global _KM_CLASS
    if _KM_CLASS is None:
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import Unicode

        class RunnerKernelManager(AsyncKernelManager):
            kernel_log = Unicode("", config=True, help="file receiving the kernel's stdout/stderr")

            def client(self, **kwargs):
                # remember the clients: nbclient leaves the channels of a kernel it does not own
                # open, so a reused kernel's clients are stopped by the runner (release_clients)
                made = super().client(**kwargs)
                self.__dict__.setdefault("_sipas_clients", []).append(made)
                return made

            def release_clients(self) -> None:
                for made in self.__dict__.pop("_sipas_clients", []):
                    if made.channels_running:
                        made.stop_channels()

            async def _async_launch_kernel(self, kernel_cmd, **kw):
                if self.kernel_log:
                    handle = open(self.kernel_log, "ab")  # the child keeps its own copy of the fd
                    try:
                        kw["stdout"] = handle
                        kw["stderr"] = handle
                        return await super()._async_launch_kernel(kernel_cmd, **kw)
                    finally:
                        handle.close()
                return await super()._async_launch_kernel(kernel_cmd, **kw)

        _KM_CLASS = RunnerKernelManager
    return _KM_CLASS


_KM_CLASS = None


def _kernel_config(kernel_log: Path | None = None):
    """Kernel manager settings for the runner's kernels.

    CurveZMQ keys are provisioned when pyzmq supports them (the kernels listen on localhost).
    """
    import zmq
    from traitlets.config import Config

    cfg = Config()
    if zmq.has("curve"):
        cfg.KernelManager.transport_encryption = "auto"
    if kernel_log is not None:
        cfg.RunnerKernelManager.kernel_log = str(kernel_log)
    return cfg


def _read_kernel_log(path: Path, delete: bool = True) -> str:
    """The kernel log without the known chatter; deletes the file if nothing else is in it."""
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    useful = [ln for ln in lines if ln.strip() and not any(noise in ln for noise in _KERNEL_NOISE)]
    if not useful and delete:
        path.unlink()
    return "\n".join(useful)


_RESET_CODE = """\
import sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
get_ipython().reset(new_session=True)  # empties the namespace, In [1] again; modules stay loaded
__import__("gc").collect()
"""


class _WarmKernel:
    """A kernel kept alive across the notebooks of one fan-out thread.

    Before each notebook the namespace is emptied (``InteractiveShell.reset``, execution count
    back to 1) and figures closed; imported modules stay loaded, which is what saves the time.
    Notebooks must therefore not rely on module-level state they changed themselves (they do
    not: parameters arrive through the parameters cell, results through files).
    """

    def __init__(self, cwd: Path, log: Path) -> None:
        from jupyter_core.utils import run_sync

        self._run_sync = run_sync
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.km = _kernel_manager_class()(kernel_name=KERNEL_NAME, config=_kernel_config(log))
        run_sync(self.km.start_kernel)(cwd=str(cwd))
        self.broken = False

    def reset(self) -> None:
        """Empty the namespace before the next notebook."""

        async def _reset():
            kc = self.km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=60)
                reply = await kc.execute_interactive(
                    _RESET_CODE, silent=True, store_history=False, timeout=60, output_hook=lambda msg: None
                )
                if reply["content"]["status"] != "ok":
                    raise RuntimeError(f"could not reset the kernel: {reply['content'].get('evalue')}")
            finally:
                kc.stop_channels()

        self._run_sync(_reset)()

    def alive(self) -> bool:
        try:
            return not self.broken and bool(self._run_sync(self.km.is_alive)())
        except Exception:
            return False

    def shutdown(self) -> None:
        try:
            self._run_sync(self.km.shutdown_kernel)(now=False)
        except Exception:  # already gone
            pass
        _read_kernel_log(self.log)


def execute_notebook(
    source: str | os.PathLike,
    executed: str | os.PathLike,
    parameters: dict,
    *,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    kernel: "_WarmKernel | None" = None,
) -> tuple[str, float, NotebookFailure | None]:
    """Execute one notebook with papermill on the ``python3`` kernel of this interpreter.

    Returns ``(status, seconds, failure)``; never raises for an error inside the notebook, and
    the partially executed notebook is written to ``executed`` either way. ``kernel`` (internal)
    is a running kernel to reuse after resetting it; by default a fresh kernel is started.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, executed = Path(source), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    if kernel is not None:
        kernel_log = kernel.log
        kernel_kwargs = {"km": kernel.km}
    else:
        kernel_log = executed.with_suffix(".kernel.log")
        kernel_log.unlink(missing_ok=True)
        kernel_kwargs = {"kernel_manager_class": _kernel_manager_class(), "config": _kernel_config(kernel_log)}
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=True,  # also keeps partial output if the kernel dies
            cwd=str(cwd if cwd is not None else source.parent),
            execution_timeout=timeout,
            **kernel_kwargs,
        )
    except PapermillExecutionError as exc:
        seconds = time.perf_counter() - started
        if kernel is not None:
            kernel.km.release_clients()
        else:
            _read_kernel_log(kernel_log)
        return FAILED, seconds, _failure_from_papermill(exc, executed)
    except Exception as exc:  # kernel died, timeout, unreadable notebook ...
        seconds = time.perf_counter() - started
        message = str(exc).strip() or repr(exc)
        if kernel is not None:
            kernel.km.release_clients()
            kernel.broken = True  # start a fresh one for the next notebook
        log = _read_kernel_log(kernel_log, delete=kernel is None)
        if log:
            message += "\nkernel log (" + kernel_log.name + "):\n" + "\n".join(log.splitlines()[-15:])
        cell, cell_source = _last_started_cell(executed)
        return FAILED, seconds, NotebookFailure(
            ename=type(exc).__name__, evalue=message, cell=cell, source=cell_source
        )
    seconds = time.perf_counter() - started
    if kernel is not None:
        kernel.km.release_clients()
    else:
        _read_kernel_log(kernel_log)
    return OK, seconds, None


# --------------------------------------------------------------------------------------------
# HTML export
# --------------------------------------------------------------------------------------------
_SCRIPT_BLOCK = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_SCRIPT_OPEN = re.compile(r"<script\b[^>]*/?>", re.IGNORECASE)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?\s*(?:https?:)?//[^>]*>", re.IGNORECASE)
_REMOTE_IMPORT = re.compile(r"@import\s+(?:url\()?\s*[\"']?\s*(?:https?:)?//[^;]*;?", re.IGNORECASE)
_REMOTE_SRC = re.compile(
    r"<(?:script|iframe|img|embed|object|source|audio|video)\b[^>]*\b(?:src|data)\s*=\s*[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)


def make_offline(html: str) -> str:
    """Remove everything that would run or fetch code from the network.

    Every ``<script>`` element (external loaders such as require.js, MathJax or mermaid from a
    CDN, and inline JavaScript outputs) and every ``<link>``/``@import`` of a remote stylesheet
    is removed. Reports are static documents: tables are HTML, charts are embedded PNG.
    """
    html = _SCRIPT_BLOCK.sub("", html)
    html = _SCRIPT_OPEN.sub("", html)
    html = _REMOTE_LINK.sub("", html)
    html = _REMOTE_IMPORT.sub("", html)
    return html


def find_online_references(html: str) -> list[str]:
    """What in an HTML page would run a script or need the network (empty list = offline).

    Checks for any ``<script`` tag, remote ``<link href>``, CSS ``@import`` of a remote URL and
    remote ``src`` attributes (scripts, frames, images, media). Plain hyperlinks
    (``<a href="https://...">``) and XML namespaces are allowed: they load nothing.
    """
    problems: list[str] = []
    for pattern in (_SCRIPT_OPEN, _REMOTE_LINK, _REMOTE_IMPORT, _REMOTE_SRC):
        problems.extend(m.group(0)[:120] for m in pattern.finditer(html))
    return problems


def _markdown_text(node) -> str:
    """Plain first sentence-ish text of a Markdown cell or a ``text/markdown`` output."""
    if getattr(node, "cell_type", None) == "markdown":
        text = node.source
    elif getattr(node, "cell_type", None) is None and "data" in node:
        text = node["data"].get("text/markdown", "")
    else:
        return ""
    text = "".join(text) if isinstance(text, list) else str(text)
    text = re.sub(r"<[^>]+>|[#*_`>|]|\$", " ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return " ".join(text.split())


def _exporter(lang: str):
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import Preprocessor, TagRemovePreprocessor

    class ReviewerPreprocessor(Preprocessor):
        """Prepare an executed notebook for reviewers.

        * Drop warnings printed to stderr: they are for the analyst (kept in the executed
          notebook). Tracebacks of failed cells are ``error`` outputs and stay.
        * Give every chart (PNG) an alt text: the notebook's own (``metadata["image/png"]["alt"]``),
          else the sentence that follows the chart (the conventions ask for one), else "chart".
        """

        def preprocess(self, nb, resources):
            fallback = "Biểu đồ" if lang == "vi" else "Chart"
            cells = nb.cells
            for i, cell in enumerate(cells):
                if cell.cell_type != "code" or not cell.get("outputs"):
                    continue
                outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.get("name") == "stderr")]
                following = _markdown_text(cells[i + 1]) if i + 1 < len(cells) else ""
                for k, out in enumerate(outputs):
                    if "image/png" not in out.get("data", {}):
                        continue
                    meta = out.setdefault("metadata", {}).setdefault("image/png", {})
                    if not meta.get("alt"):
                        printed = next(
                            (_markdown_text(o) for o in outputs[k + 1:] if "text/markdown" in o.get("data", {})), ""
                        )
                        meta["alt"] = (printed or following or fallback)[:300]
                cell.outputs = outputs
            return nb, resources

    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(TEMPLATES_DIR)],
        template_file="sipas_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_output_stdin=True,
        language_code=lang,
        # belt and braces: the template does not emit them, but never point at a CDN
        require_js_url="",
        mathjax_url="",
        mermaid_js_url="",
        mermaid_layout_elk_js_url="",
        jquery_url="",
        widget_renderer_url="",
        jupyter_widgets_base_url="",
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags=set(REMOVED_CELL_TAGS),
            remove_all_outputs_tags={"remove-output"},
            enabled=True,
        ),
        enabled=True,
    )
    exporter.register_preprocessor(ReviewerPreprocessor(), enabled=True)
    return exporter


def export_html(
    executed: str | os.PathLike,
    html_path: str | os.PathLike,
    *,
    title: str | None = None,
    lang: str = config.DEFAULT_LANG,
) -> float:
    """Export an executed notebook to an offline HTML page without code; returns seconds taken."""
    import nbformat

    started = time.perf_counter()
    executed, html_path = Path(executed), Path(html_path)
    nb = nbformat.read(executed, as_version=4)
    if title:
        nb.metadata["title"] = title
    body, _ = _exporter(lang).from_notebook_node(nb, resources={"metadata": {"name": title or executed.stem}})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(make_offline(body), encoding="utf-8")
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# one notebook, start to finish (also the worker function of the fan-out)
# --------------------------------------------------------------------------------------------
@dataclass
class _Job:
    run: NotebookRun
    parameters: dict
    lang: str
    timeout: float | None = None


def _run_job(job: _Job, kernel: _WarmKernel | None = None) -> NotebookRun:
    run = job.run
    run.status, run.seconds, run.failure = execute_notebook(
        run.source, run.executed, job.parameters, timeout=job.timeout, kernel=kernel
    )
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
def fanout_units(run_dir: str | os.PathLike, lang: str = config.DEFAULT_LANG):
    """Departments and districts listed in ``<run>/results/units.parquet``, in file order.

    Returns a DataFrame with ``unit_id, unit_type, name`` (name in ``lang``, falling back to
    the other language and then the id).

    Raises
    ------
    FileNotFoundError
        If the intake stage has not written ``units.parquet``.
    ValueError
        If the table lacks ``unit_id`` or ``unit_type``.
    """
    import pandas as pd

    path = Path(run_dir) / "results" / "units.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the per-unit reports need the units table written by the intake stage"
        )
    units = pd.read_parquet(path)
    missing = [c for c in ("unit_id", "unit_type") if c not in units.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}")
    units = units[units["unit_type"].isin(FANOUT_UNIT_TYPES)].copy()
    other = "en" if lang == "vi" else "vi"
    name = pd.Series(pd.NA, index=units.index, dtype="object")
    for col in (f"name_{lang}", f"name_{other}", "name"):
        if col in units.columns:
            name = name.fillna(units[col].astype("object").where(units[col].notna()))
    units["name"] = name.fillna(units["unit_id"]).astype(str)
    units["unit_id"] = units["unit_id"].astype(str)
    return units[["unit_id", "unit_type", "name"]].reset_index(drop=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _run_parallel(
    jobs: list[_Job], workers: int, progress: ProgressCallback, reuse_kernels: bool = True
) -> list[NotebookRun]:
    """Run the per-unit notebooks on ``workers`` threads, each driving its own kernel.

    Threads, not processes: the work happens in the kernel subprocesses; a thread only drives
    its kernel and renders HTML (measured here, 6 notebooks on 2 cores: threads 4.1 s, spawned
    processes 11.4 s, serial 14.2 s). With ``reuse_kernels`` each thread keeps one kernel for
    all its notebooks and resets it in between (see :class:`_WarmKernel`), which saves the
    kernel start and the imports of every notebook after the first.
    """
    if not jobs:
        return []
    import queue
    import threading

    _kernel_manager_class()  # build the class once, before the threads need it
    todo: queue.Queue = queue.Queue()
    for i, job in enumerate(jobs):
        todo.put((i, job))
    results: dict[int, NotebookRun] = {}
    lock = threading.Lock()
    log_dir = jobs[0].run.executed.parent

    def worker(number: int) -> None:
        kernel: _WarmKernel | None = None
        try:
            while True:
                try:
                    i, job = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    if reuse_kernels:
                        kernel = _ready_kernel(kernel, job.run.source.parent, log_dir / f"kernel-{number}.log")
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


def _ready_kernel(kernel: _WarmKernel | None, cwd: Path, log: Path) -> _WarmKernel:
    """The thread's kernel, reset for the next notebook; a fresh one if it died or will not reset."""
    if kernel is not None and kernel.alive():
        try:
            kernel.reset()
            return kernel
        except Exception:
            pass
    if kernel is not None:
        kernel.shutdown()
    return _WarmKernel(cwd, log)


# --------------------------------------------------------------------------------------------
# index page
# --------------------------------------------------------------------------------------------
_LABELS = {
    "vi": {
        "title": "Báo cáo SIPAS {year} — lượt chạy {run}",
        "stages": "Các bước phân tích",
        "scorecards": "Phiếu điểm theo đơn vị",
        "admin": "Báo cáo hành chính (tháng, năm)",
        "department": "Sở, ban, ngành",
        "district": "Quận, huyện, thị xã",
        "report": "Báo cáo",
        "unit": "Đơn vị",
        "status": "Trạng thái",
        "time": "Thời gian chạy",
        OK: "hoàn thành",
        FAILED: "lỗi",
        SKIPPED: "bỏ qua",
        "generated": "Tạo lúc",
        "total": "Tổng thời gian",
        "parameters": "Tham số",
        "summary": "{ok} hoàn thành, {failed} lỗi, {skipped} bỏ qua",
        "earlier": "bản của lượt chạy trước",
        "none": "Không có báo cáo nào.",
    },
    "en": {
        "title": "SIPAS {year} reports — run {run}",
        "stages": "Analysis stages",
        "scorecards": "Unit scorecards",
        "admin": "Administrative reports (monthly, annual)",
        "department": "Departments",
        "district": "Districts",
        "report": "Report",
        "unit": "Unit",
        "status": "Status",
        "time": "Run time",
        OK: "ok",
        FAILED: "failed",
        SKIPPED: "skipped",
        "generated": "Generated",
        "total": "Total time",
        "parameters": "Parameters",
        "summary": "{ok} ok, {failed} failed, {skipped} skipped",
        "earlier": "from an earlier run",
        "none": "No reports.",
    },
}


def _seconds(value: float, lang: str) -> str:
    from sipas_lib.reporting import fmt_num

    return f"{fmt_num(value, 1, lang=lang)} s"


def _index_sections(notebooks: Iterable[NotebookRun], labels: dict) -> list[dict]:
    """Stages, then each fan-out template (scorecards first) grouped by unit type, then the
    administrative reports."""
    notebooks = list(notebooks)
    stage_rows = [n for n in notebooks if n.kind == "stage" and n.section != "admin"]
    admin_rows = [n for n in notebooks if n.kind == "stage" and n.section == "admin"]
    sections = [{"title": labels["stages"], "groups": [{"title": None, "rows": stage_rows}]}]
    templates: list[str] = []
    for nb in notebooks:
        if nb.kind == "fanout" and nb.name not in templates:
            templates.append(nb.name)
    for name in templates:
        rows = [n for n in notebooks if n.kind == "fanout" and n.name == name]
        title = rows[0].section or rows[0].title
        groups = []
        types = [t for t in FANOUT_UNIT_TYPES if any(r.unit_type == t for r in rows)]
        types += sorted({r.unit_type for r in rows if r.unit_type not in FANOUT_UNIT_TYPES and r.unit_type})
        for unit_type in types:
            groups.append(
                {"title": labels.get(unit_type, unit_type), "rows": [r for r in rows if r.unit_type == unit_type]}
            )
        unassigned = [r for r in rows if not r.unit_type]
        if unassigned:
            groups.append({"title": None, "rows": unassigned})
        sections.append({"title": title, "groups": groups})
    if admin_rows:
        sections.append({"title": labels["admin"], "groups": [{"title": None, "rows": admin_rows}]})
    return sections


def write_index(summary: RunSummary, lang: str = config.DEFAULT_LANG) -> Path:
    """Render ``index.html`` for a run: every report with its status and run time.

    Links are relative to the run folder, so the folder can be zipped and opened anywhere.
    All text (unit names, titles, error messages) is HTML-escaped by the template engine.
    """
    import jinja2

    labels = _LABELS.get(lang, _LABELS["en"])
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("index.html.j2")
    run_dir = Path(summary.run_dir)

    def href(nb: NotebookRun) -> str | None:
        if nb.html is None or not Path(nb.html).exists():
            return None
        return Path(os.path.relpath(nb.html, run_dir)).as_posix()

    counts = summary.counts()
    params = summary.parameters
    page = template.render(
        lang=lang,
        labels=labels,
        title=labels["title"].format(year=params.get("year", ""), run=run_dir.name),
        sections=_index_sections(summary.notebooks, labels),
        href=href,
        seconds=lambda s: _seconds(s, lang),
        summary_line=labels["summary"].format(**counts),
        total=_seconds(summary.seconds, lang),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        parameters={k: params[k] for k in ("year", "seed", "lang") if k in params},
        statuses=(OK, FAILED, SKIPPED),
    )
    summary.index.parent.mkdir(parents=True, exist_ok=True)
    summary.index.write_text(page, encoding="utf-8")
    return summary.index


# --------------------------------------------------------------------------------------------
# the chain
# --------------------------------------------------------------------------------------------
def _noop(event: str, payload) -> None:  # pragma: no cover - trivial
    return None


def run_report(
    data_dir: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    year: int = config.DEFAULT_YEAR,
    seed: int = config.DEFAULT_SEED,
    lang: str = config.DEFAULT_LANG,
    stages: Sequence[int] | None = None,
    fanout: bool = True,
    workers: int | None = None,
    *,
    notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR,
    parameters: Mapping[str, object] | None = None,
    reuse_kernels: bool = True,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
) -> RunSummary:
    """Run the stage notebooks, fan out the per-unit reports, export HTML and write the index.

    Parameters
    ----------
    data_dir
        Folder with the year's input files (``None``/empty: the bundled demo, ``data/demo``).
    run_dir
        The run folder, e.g. ``reports/2025-demo``; created if needed. Earlier results in it are
        kept, so ``stages=[30]`` re-runs weighting on the intake of an earlier run.
    year, seed, lang
        Run parameters handed to every notebook that declares them (``lang``: ``vi`` or ``en``).
    stages
        Two-digit prefixes of the stage notebooks to run (default: all); the others are listed
        as skipped.
    fanout
        Run the per-unit templates of ``notebooks/fanout/`` (needs ``results/units.parquet``).
    workers
        Notebooks run at the same time in the fan-out (default: the number of CPU cores).
    notebooks_dir
        Where the stage notebooks are (default: the project's ``notebooks/``).
    parameters
        Further parameters, e.g. ``{"total_districts": 64}``, handed to every notebook whose
        parameters cell declares them (the others never see them).
    reuse_kernels
        In the fan-out, keep one kernel per worker and reset it between notebooks instead of
        starting a fresh kernel for each (saves kernel start + imports per unit). Stage notebooks
        always get a fresh kernel.
    timeout
        Seconds a single cell may run before it is stopped (default: no limit).
    progress
        Called as ``progress(event, payload)``: ``("start", run)`` before a stage runs,
        ``("done", run)`` after every notebook, ``("fanout", n)`` before the per-unit reports.

    Returns
    -------
    RunSummary
        Every notebook with status, times and failure; ``summary.ok`` is False if any failed.
    """
    if lang not in config.LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(config.LANGUAGES)}")
    progress = progress or _noop
    started = time.perf_counter()
    paths = config.run_paths(data_dir, run_dir)
    run_dir = paths.run_dir
    notebooks_dir = Path(notebooks_dir)
    values = {
        "year": int(year),
        "data_dir": str(paths.data_dir),
        "run_dir": str(run_dir),
        "seed": int(seed),
        "lang": lang,
    }
    reserved = sorted(set(parameters or {}) & {*COMMON_PARAMETERS, "unit_id"})
    if reserved:
        raise ValueError(f"parameter(s) {', '.join(reserved)} are set by the runner itself; use the arguments")
    values.update(parameters or {})

    stage_paths = discover_stages(notebooks_dir)
    if stages is not None:
        known = {int(p.name[:2]) for p in stage_paths}
        unknown = sorted(set(stages) - known)
        if unknown:
            raise ValueError(
                f"no stage notebook numbered {', '.join(map(str, unknown))} in {notebooks_dir}; "
                f"stages are {', '.join(str(k) for k in sorted(known)) or 'none'}"
            )
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
        )
        runs.append(run)
        if stopped or (stages is not None and int(source.name[:2]) not in stages):
            _mark_skipped(run, earlier_ok=not stopped)
            progress("done", run)
            continue
        progress("start", run)
        _run_job(_Job(run, select_parameters(source, values), lang, timeout))
        progress("done", run)
        if run.status == FAILED:
            stopped = True

    templates = discover_fanout(notebooks_dir)
    if templates:
        runs.extend(
            _fanout(templates, paths, values, lang, timeout, fanout and not stopped, workers, progress, reuse_kernels)
        )

    summary = RunSummary(
        run_dir=run_dir,
        index=run_dir / "index.html",
        notebooks=runs,
        seconds=time.perf_counter() - started,
        parameters=values,
    )
    write_index(summary, lang)
    (run_dir / "run.json").write_text(summary.to_json(), encoding="utf-8")
    return summary


PREVIOUS_YEAR_STAGES = (20, 30, 50)
"""Stages that give a year's indices and ranks: intake, weighting, index/ranking."""
PREVIOUS_YEAR_DIR = "previous_year"


def run_previous_year(
    previous_data_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    year: int,
    seed: int = config.DEFAULT_SEED,
    lang: str = config.DEFAULT_LANG,
    *,
    notebooks_dir: str | os.PathLike = config.NOTEBOOKS_DIR,
    parameters: Mapping[str, object] | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Compute the previous year's indices for year-on-year comparisons; return its results folder.

    Runs :data:`PREVIOUS_YEAR_STAGES` on ``previous_data_dir`` for ``year - 1`` into
    ``run_dir/previous_year/`` (no per-unit reports), with the same code as this year's run, so
    both years' figures come from one method. The folder is what stage 50's ``previous_results``
    parameter expects.

    Raises
    ------
    RuntimeError
        When a stage of the previous year fails (its notebook and cell are in the message).
    """
    sub = Path(run_dir) / PREVIOUS_YEAR_DIR
    summary = run_report(previous_data_dir, sub, year=year - 1, seed=seed, lang=lang,
                         stages=list(PREVIOUS_YEAR_STAGES), fanout=False, notebooks_dir=notebooks_dir,
                         parameters=parameters, progress=progress)
    if summary.failed:
        details = "; ".join(f.failure.describe() if f.failure else str(f.source) for f in summary.failed)
        raise RuntimeError(f"the previous year ({year - 1}, {previous_data_dir}) failed: {details}")
    return sub / "results"


def _mark_skipped(run: NotebookRun, earlier_ok: bool = True) -> None:
    """A skipped notebook keeps a link to the HTML of an earlier run, if there is one."""
    run.status = SKIPPED
    if earlier_ok and run.html is not None and run.html.exists():
        run.note = "earlier"
    else:
        run.html = None


def _fanout(
    templates: list[Path],
    paths: config.RunPaths,
    values: dict,
    lang: str,
    timeout: float | None,
    enabled: bool,
    workers: int | None,
    progress: ProgressCallback,
    reuse_kernels: bool = True,
) -> list[NotebookRun]:
    titles = {t: notebook_title(t, lang) for t in templates}
    if not enabled:
        runs = [
            NotebookRun("fanout", t.stem, titles[t], t, paths.notebooks / t.stem, None, SKIPPED, section=titles[t])
            for t in templates
        ]
        for run in runs:
            progress("done", run)
        return runs
    try:
        units = fanout_units(paths.run_dir, lang)
    except (FileNotFoundError, ValueError) as exc:
        runs = []
        for t in templates:
            run = NotebookRun("fanout", t.stem, titles[t], t, paths.notebooks / t.stem, None, FAILED, section=titles[t])
            run.failure = NotebookFailure(ename=type(exc).__name__, evalue=str(exc))
            runs.append(run)
            progress("done", run)
        return runs
    jobs: list[_Job] = []
    for template in templates:
        declared = select_parameters(template, {**values, "unit_id": ""})
        for unit in units.itertuples(index=False):
            params = {k: v for k, v in {**values, "unit_id": unit.unit_id}.items() if k in declared}
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
            )
            jobs.append(_Job(run, params, lang, timeout))
    workers = workers or os.cpu_count() or 1
    progress("fanout", len(jobs))
    return _run_parallel(jobs, workers, progress, reuse_kernels)
