"""Every path the workbench uses, in one place.

Notebooks and the CLI ask this module where things are; nothing else hard-codes a path.
A run folder (``reports/<run>/``) holds the executed notebooks (``notebooks/``), their HTML
(``html/`` and ``index.html``) and the tidy result tables the stages hand on to each other
(``results/*.parquet``).
"""

from __future__ import annotations

import os
import re
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


_RUN_NAME = re.compile(r"[\w.-]+")


def check_run_name(name: str) -> str:
    """Return ``name`` if it is one plain folder name for a run under ``reports/``.

    A run name is made of letters, digits, ``.``, ``_`` and ``-`` (e.g. ``2025-final``); it is not
    ``.`` or ``..`` and holds no ``/`` or ``\\``, so a run is always written into a folder of its own
    and never over the repository, the notebooks or anything outside ``reports/``.

    Raises
    ------
    ValueError
        Saying what is wrong with the name.

    Examples
    --------
    >>> check_run_name("2025-final")
    '2025-final'
    >>> check_run_name("../x")
    Traceback (most recent call last):
    ...
    ValueError: run name '../x' is a path, not a folder name: give one name such as 2025-final (letters, digits, '.', '_', '-'); the run is written under reports/
    """
    hint = "give one name such as 2025-final (letters, digits, '.', '_', '-'); the run is written under reports/"
    if not isinstance(name, str) or not name:
        raise ValueError(f"run name is empty: {hint}")
    if "/" in name or "\\" in name or os.path.isabs(name):
        raise ValueError(f"run name {name!r} is a path, not a folder name: {hint}")
    if name in (".", ".."):
        raise ValueError(f"run name {name!r} is not a folder of its own: {hint}")
    if not _RUN_NAME.fullmatch(name):
        bad = sorted({ch for ch in name if not _RUN_NAME.fullmatch(ch)})
        raise ValueError(f"run name {name!r} has characters {' '.join(repr(c) for c in bad)} that a run name "
                         f"may not hold: {hint}")
    return name
