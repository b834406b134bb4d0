"""Every path the workbench uses, in one place.

Notebooks and the CLI ask this module where things are; nothing else hard-codes a path.
A run folder (``reports/<run>/``) holds the executed notebooks (``notebooks/``), their HTML
(``html/`` and ``index.html``) and the tidy result tables the stages hand on to each other
(``results/*.parquet``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
FANOUT_DIR = NOTEBOOKS_DIR / "fanout"
DATA_DIR = PROJECT_DIR / "data"
DEMO_DIR = DATA_DIR / "demo"
PUBLISHED_DIR = DATA_DIR / "published"
# Personal data (e.g. the post office mailing list) is written under RAW_DIR; tests point it elsewhere.
RAW_DIR = Path(os.environ.get("SIPAS_RAW_DIR") or DATA_DIR / "raw")
INTERIM_DIR = DATA_DIR / "interim"
REPORTS_DIR = PROJECT_DIR / "reports"
INSTRUMENTS_DIR = PACKAGE_DIR / "instruments"

DEFAULT_YEAR = 2025
DEFAULT_SEED = 2025
DEFAULT_LANG = "vi"
LANGUAGES = ("vi", "en")

# Vocabularies shared by the data contracts (docs/CONTRACTS.md).
FIELDS = ("justice", "labour_social", "land_environment", "construction_urban", "other")
"""Fields of procedure (lĩnh vực), as in the Phụ lục 3 monthly report."""
CHANNELS = ("direct", "online_l3", "online_l4", "postal")
"""How a dossier was submitted: one-stop shop, online service level 3 or 4, public postal service (BCCI)."""
SURVEY_MODES = ("postal", "one_stop", "online")
"""How a questionnaire was delivered and returned."""


@dataclass(frozen=True)
class RunPaths:
    """Where one run reads its inputs and writes its outputs.

    Parameters
    ----------
    data_dir
        Folder with the year's input files (units, frame, sample, responses, dossiers).
    run_dir
        The run folder under ``reports/``.
    """

    data_dir: Path
    run_dir: Path

    @property
    def results(self) -> Path:
        """Tidy result tables handed from stage to stage (Parquet/CSV)."""
        return self.run_dir / "results"

    @property
    def quarantine(self) -> Path:
        """Records set aside at intake, one reason each (no personal data)."""
        return self.run_dir / "quarantine"

    @property
    def notebooks(self) -> Path:
        return self.run_dir / "notebooks"

    @property
    def html(self) -> Path:
        return self.run_dir / "html"

    @property
    def private(self) -> Path:
        """Outputs that carry personal data (e.g. the post office mailing list).

        They go under ``data/raw/`` next to the inputs, never under ``reports/``.
        """
        return RAW_DIR / "private" / self.run_dir.name

    def ensure(self) -> "RunPaths":
        for folder in (self.results, self.quarantine, self.notebooks, self.html):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def run_paths(data_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None) -> RunPaths:
    """Resolve a notebook's ``data_dir``/``run_dir`` parameters.

    Empty values fall back to the bundled demo data and ``reports/interactive`` so every stage
    notebook also runs interactively with its defaults.
    """
    data = Path(data_dir) if data_dir else DEMO_DIR
    run = Path(run_dir) if run_dir else REPORTS_DIR / "interactive"
    return RunPaths(data_dir=data.resolve(), run_dir=run.resolve()).ensure()
