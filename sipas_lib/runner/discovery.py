"""Which notebooks a run has, what they are called, and which parameters each receives."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

from sipas_lib import config
from sipas_lib.settings import Settings
from sipas_lib.stages import STAGE_OF_NOTEBOOK

# nbformat validates notebooks with jsonschema, whose optional IRI format checker (``rfc3987_syntax``,
# installed with JupyterLab) compiles 38 grammars when it is imported: ~3 s before a run's first
# notebook. Notebook validation checks no IRI format, so the runner's process leaves that checker out.
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

STAGE_PATTERN = re.compile(r"^[1-9][0-9]_[^/]*\.ipynb$")
RUN_PARAMETERS = ("run_dir", "data_dir", "common", "stage_settings")
"""What every stage notebook declares in its parameters cell (fan-out templates also ``unit_id``)."""


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


def _read(path: str | os.PathLike):
    """The notebook at ``path`` (read and validated once while the file is unchanged; callers only read it)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _read_cached(path: str, mtime_ns: int, size: int):
    import nbformat

    return nbformat.read(path, as_version=4)


def notebook_title(path: str | os.PathLike, lang: str = config.DEFAULT_LANG) -> str:
    """Title shown in the index: ``metadata.sipas.title.<lang>`` if set, else the first
    Markdown heading, else the file stem."""
    path = Path(path)
    nb = _read(path)
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


def sipas_metadata(path: str | os.PathLike) -> dict:
    """A notebook's ``metadata.sipas`` (``title``, ``index_section``, ``needs``: the stages whose tables it
    reads, ``renderer``: a fan-out template's bulk renderer ``"module:function"``), empty when absent."""
    found = _read(path).metadata.get("sipas", {})
    return dict(found) if isinstance(found, dict) else {}


def index_section(path: str | os.PathLike) -> str:
    """``"admin"`` for the administrative reports (monthly report, annual survey-implementation
    report), listed after the scorecards in the index; ``"stage"`` for the others.

    Set ``metadata.sipas.index_section`` in a notebook to choose; otherwise the file name decides
    (``monthly``, ``survey_report`` or ``admin`` in it means administrative).
    """
    path = Path(path)
    chosen = _read(path).metadata.get("sipas", {}).get("index_section")
    if chosen in ("admin", "stage"):
        return chosen
    return "admin" if ADMIN_PATTERN.search(path.stem) else "stage"


def select_parameters(notebook: str | os.PathLike, values: Mapping[str, object]) -> dict:
    """Keep only the parameters the notebook declares in its ``parameters`` cell.

    Uses :func:`papermill.inspect_notebook`, so stage-specific parameters keep their defaults
    and papermill never injects a variable the notebook does not know.
    """
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {key: value for key, value in values.items() if key in declared}




def stage_of(notebook: str | os.PathLike) -> str | None:
    """The stage (settings section) of a notebook, from :data:`sipas_lib.stages.STAGE_OF_NOTEBOOK`;
    ``None`` for a notebook that is not one of the pipeline's stages (e.g. a user's extra one)."""
    return STAGE_OF_NOTEBOOK.get(Path(notebook).stem)


def notebook_parameters(notebook: str | os.PathLike, paths: config.RunPaths, settings: Settings,
                        unit_id: str | None = None) -> dict:
    """The parameters ``notebook`` receives: ``run_dir``, ``data_dir``, ``common`` (the configuration's
    common section) and ``stage_settings`` (its own section only), plus ``unit_id`` for a fan-out
    template; filtered by :func:`select_parameters` to what its parameters cell declares.

    Transitional: the common values and the stage's own settings are also offered under their
    plain names (``year``, ``trim_ratio``, …) so a notebook that still declares them one by one
    receives the run's values. A notebook never sees another stage's section.
    """
    stage = stage_of(notebook)
    own = dict(settings.section(stage)) if stage else {}
    values: dict[str, object] = {**dict(settings.common), **own}
    values.update(
        run_dir=str(paths.run_dir),
        data_dir=str(paths.data_dir),
        common=dict(settings.common),
        stage_settings=own,
    )
    if unit_id is not None:
        values["unit_id"] = unit_id
    return select_parameters(notebook, values)
