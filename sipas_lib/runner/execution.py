"""Executing one notebook with papermill, and translating a failure into cell, line and message."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Sequence

from sipas_lib.runner.kernels import (
    KERNEL_NAME,
    WarmKernel,
    kernel_config,
    kernel_manager_class,
    read_kernel_log,
)
from sipas_lib.runner.records import FAILED, OK, NotebookFailure

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


