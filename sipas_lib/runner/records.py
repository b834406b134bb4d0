"""What a run did: one record per notebook, and the run's summary (``run.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from sipas_lib.settings import Settings

OK, FAILED, SKIPPED = "ok", "failed", "skipped"

ProgressCallback = Callable[[str, "NotebookRun | int"], None]
"""``progress(event, payload)``: ``("start", run)`` before a stage, ``("done", run)`` after any
notebook (stage or per-unit; also for skipped ones), ``("fanout", n)`` before n per-unit notebooks
start in parallel."""


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
        """Cell, exception and the failing line of code (for the index page)."""
        where = f"cell {self.cell}" if self.cell is not None else "notebook"
        if self.execution_count is not None:
            where += f" (In [{self.execution_count}])"
        code = self.line or next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")
        return f"{where}: {self.ename}: {self.evalue}" + (f"\n    {code}" if code else "")

    def cause(self) -> str:
        """The cause on one line: the notebook's last exception line, e.g.
        ``StageError: responses.csv: row 7, column c03: …`` (a message over several lines is joined)."""
        lines = [ln.strip() for ln in self.evalue.splitlines() if ln.strip()]
        message = ""
        for ln in lines:
            message += ("" if not message else " " if message.endswith(":") else "; ") + ln
        return f"{self.ename}: {message}" if self.ename else message


@dataclass
class NotebookRun:
    """One executed (or skipped) notebook of a run."""

    kind: str  # "stage", "fanout" or "previous" (last year's results, sipas_lib.runner.previous)
    name: str  # notebook file stem, e.g. "20_intake_quality" or "unit_scorecard"
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
    note: str = ""  # "earlier" (an earlier run's page), "reused" (last year's results), or a problem
    section: str = ""  # index section: the notebook's (template's) title
    stage: str | None = None  # settings section / stage module (sipas_lib.stages.STAGE_OF_NOTEBOOK)

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
    settings: Settings | None = None

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
            "settings": self.settings.to_dict() if self.settings is not None else {},
            "counts": self.counts(),
            "notebooks": [asdict(nb) for nb in self.notebooks],
        }
        return json.dumps(payload, default=conv, ensure_ascii=False, indent=1)
