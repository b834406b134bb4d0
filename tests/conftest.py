"""Shared fixtures: throwaway notebooks for the runner tests and a tiny seeded demo year."""

from __future__ import annotations

import os
import tempfile

# Outputs with personal data (the post office mailing list) go under config.RAW_DIR; during the
# tests that is a throwaway folder, never the project's data/raw. Set before sipas_lib is imported
# (config reads it once); notebook kernels inherit the variable.
os.environ["SIPAS_RAW_DIR"] = tempfile.mkdtemp(prefix="sipas-test-raw-")

import inspect  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from pathlib import Path
from typing import Callable

import nbformat
import pytest

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# A tiny year: a couple of departments and districts, a few percent of the real sizes.
TINY_YEAR = 2025
TINY_SEED = 7
TINY_SCALE = 0.25  # ~30 department and ~80 district questionnaires: enough for alpha and CIs
TINY_UNITS = {"n_departments": 2, "n_districts": 2}
# Stage parameters for the tiny year, handed only to notebooks that declare them: fewer bootstrap
# replicates, and the sample totals of the tiny year instead of the city's 1,250 + 4,800.
TINY_STAGE_PARAMETERS = {"minimum_per_unit": 5, "n_boot": 100}


def build_notebook(path: Path, cells: list[tuple], title: str | None = None) -> Path:
    """Write a notebook made of ``(kind, source)`` or ``(kind, source, tags)`` tuples.

    ``kind`` is ``"code"``, ``"markdown"`` or ``"parameters"`` (a code cell tagged parameters).
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if title:
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    for cell in cells:
        kind, source, *rest = cell
        tags = list(rest[0]) if rest else []
        if kind == "parameters":
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters", *tags]}))
        elif kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
        elif kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source, metadata={"tags": tags} if tags else {}))
        else:  # pragma: no cover - test helper misuse
            raise ValueError(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def write_notebook() -> Callable[..., Path]:
    """``write_notebook(path, cells, title=None)``: see :func:`build_notebook`."""
    return build_notebook


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A tiny demo year written by the simulator (2 departments, 2 districts, 5 % of the sizes).

    Skips (with the reason) only while ``sipas_lib.simulate`` is not there yet.
    """
    try:
        from sipas_lib import simulate
    except ImportError as exc:  # pragma: no cover - only before the simulator exists
        pytest.skip(f"sipas_lib.simulate is not available yet ({exc}); the notebook tier needs its tiny year")
    folder = tmp_path_factory.mktemp("tiny_demo")
    kwargs = {"year": TINY_YEAR, "seed": TINY_SEED}
    accepted = inspect.signature(simulate.write_demo_year).parameters
    if "scale" in accepted:
        kwargs["scale"] = TINY_SCALE
    kwargs.update({k: v for k, v in TINY_UNITS.items() if k in accepted})
    simulate.write_demo_year(folder, previous_year=True, **kwargs)
    return folder


@pytest.fixture(scope="session")
def tiny_parameters(tiny_demo) -> dict:
    """Stage parameters fitting :func:`tiny_demo` (see ``TINY_STAGE_PARAMETERS``)."""
    import pandas as pd

    sample = pd.read_csv(tiny_demo / "sample.csv", dtype=str)
    units = pd.read_csv(tiny_demo / "units.csv", dtype=str)
    per_type = sample.merge(units[["unit_id", "unit_type"]], on="unit_id")["unit_type"].value_counts()
    return {
        **TINY_STAGE_PARAMETERS,
        "total_departments": int(per_type.get("department", 0)),
        "total_districts": int(per_type.get("district", 0)),
    }


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def index_links(index: Path) -> list[str]:
    """The ``href`` of every link on an HTML page, in order."""
    parser = _Links()
    parser.feed(Path(index).read_text(encoding="utf-8"))
    return parser.hrefs
