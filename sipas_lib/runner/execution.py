"""Executing one notebook with papermill, and translating a failure into cell, line and message."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

from sipas_lib.runner.kernels import (
    KERNEL_NAME,
    WarmKernel,
    kernel_config,
    kernel_manager_class,
    read_kernel_log,
)
from sipas_lib.runner.records import FAILED, OK, NotebookFailure

ENGINE = "sipas"
"""The papermill engine the runner executes with (:func:`_register_engine`)."""
SAVE_EVERY = 60.0
"""Seconds between saves of a notebook while it runs (papermill writes it when it ends)."""


def _register_engine() -> None:
    """Register :data:`ENGINE`: papermill's nbclient engine, saving the executed notebook at most every
    :data:`SAVE_EVERY` seconds while it runs instead of at the start and end of every cell.

    Papermill's default writes the whole notebook twice per cell; a stage notebook with twenty charts
    is megabytes, and each write is a pure-Python JSON encoding, so those writes cost seconds between
    cells while the kernel waits. Papermill still writes the notebook when it ends (with the error
    cell when one failed), and this engine saves it when execution stops for any other reason (a dead
    kernel, a timeout), so a failed notebook keeps its partial output.
    """
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    if ENGINE in papermill_engines._engines:
        return

    class ThrottledSaves(NotebookExecutionManager):
        final = False
        after_cell = None  # called after every cell (the runner's check for a stage's finished tables)

        def cell_complete(self, cell, cell_index=None, **kwargs):
            super().cell_complete(cell, cell_index=cell_index, **kwargs)
            if self.after_cell is not None:
                self.after_cell()

        def save(self, **kwargs):
            if self.final or (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY:
                super().save(**kwargs)

    class SipasEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False,
                             autosave_cell_every=30, after_cell=None, **kwargs):
            nb_man = ThrottledSaves(nb, output_path=output_path, progress_bar=progress_bar, log_output=log_output,
                                    autosave_cell_every=autosave_cell_every)
            nb_man.after_cell = after_cell
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            except BaseException:
                nb_man.final = True  # execution stopped (dead kernel, timeout): keep what ran
                raise
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(ENGINE, SipasEngine)


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


def execute_notebook(
    source: str | os.PathLike,
    executed: str | os.PathLike,
    parameters: dict,
    *,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
    kernel: WarmKernel | None = None,
    after_cell: Callable[[], None] | None = None,
) -> tuple[str, float, NotebookFailure | None]:
    """Execute one notebook with papermill on the ``python3`` kernel of this interpreter.

    Returns ``(status, seconds, failure)``; never raises for an error inside the notebook, and
    the partially executed notebook is written to ``executed`` either way. ``kernel`` (internal)
    is a running kernel to reuse after resetting it; by default a fresh kernel is started.
    ``after_cell`` (internal) is called after each cell has run.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _register_engine()
    source, executed = Path(source), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    if kernel is not None:  # a running kernel, already in the notebook's folder (WarmKernel.reset)
        kernel_log = kernel.log
        kernel_kwargs = {"km": kernel.km}
        cwd = None  # papermill would chdir this whole process, which other runner threads share
    else:
        kernel_log = executed.with_suffix(".kernel.log")
        kernel_log.unlink(missing_ok=True)
        kernel_kwargs = {"kernel_manager_class": kernel_manager_class(), "config": kernel_config(kernel_log)}
    started = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=True,  # saved while it runs (every SAVE_EVERY s) and at the end
            engine_name=ENGINE,
            after_cell=after_cell,
            cwd=None if kernel is not None else str(cwd if cwd is not None else source.parent),
            execution_timeout=timeout,
            **kernel_kwargs,
        )
    except PapermillExecutionError as exc:
        seconds = time.perf_counter() - started
        if kernel is not None:
            kernel.km.release_clients()
        else:
            read_kernel_log(kernel_log)
        return FAILED, seconds, _failure_from_papermill(exc, executed)
    except Exception as exc:  # kernel died, timeout, unreadable notebook ...
        seconds = time.perf_counter() - started
        message = str(exc).strip() or repr(exc)
        if kernel is not None:
            kernel.km.release_clients()
            kernel.broken = True  # start a fresh one for the next notebook
        log = read_kernel_log(kernel_log, delete=kernel is None)
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
        read_kernel_log(kernel_log)
    return OK, seconds, None


