"""The pipeline's stages: one module per stage notebook.

Stages layer (above the statistical core, below reporting). Each module has one entry point,
``run(paths, settings)``, that reads its inputs (validated by :mod:`sipas_lib.schemas`), calls the
core, and writes and returns its result tables; it computes everything its notebook shows, so the
notebook only narrates and plots. Stage functions need no kernel and are tested on the tiny year.

A reader sees the pipeline three times in the names:
``notebooks/NN_<stage>.ipynb`` ↔ ``sipas_lib/stages/<stage>.py`` ↔ ``tests/test_stage_<stage>.py``.
"""

from __future__ import annotations

#: Notebook (without ``.ipynb``) -> stage module / settings section.
STAGE_OF_NOTEBOOK: dict[str, str] = {
    "10_sampling_design": "sampling_design",
    "20_intake_quality": "intake_quality",
    "25_integrity": "integrity",
    "30_weighting": "weighting",
    "40_reliability": "reliability",
    "50_index_ranking": "index_ranking",
    "60_annual_report": "annual_report",
    "70_monthly_report": "monthly_report",
    "80_annual_survey_report": "annual_survey_report",
    "unit_scorecard": "unit_scorecard",
}


class StageError(RuntimeError):
    """A stage cannot produce its main tables. The message names the file, row and column at fault.

    Raised, never caught in a notebook: the runner marks the stage failed and the run exits non-zero.
    """
