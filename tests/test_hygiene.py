"""Repository hygiene: notebook conventions, environment.yml in sync, no generated reports in git.

Conventions checked (docs/CONTRACTS.md, "Notebook conventions"): exactly one cell tagged
``parameters`` holding literal assignments only; kernel ``python3``; no outputs or execution
counts committed; stage notebooks declare the run parameters, fan-out templates ``unit_id``.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from sipas_lib import config

ROOT = config.PROJECT_DIR
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]
# What the runner hands every stage notebook (sipas_lib.runner.RUN_PARAMETERS); settings arrive in
# `common` and `stage_settings`, never as loose names.
RUN_PARAMETERS = {"run_dir", "data_dir", "common", "stage_settings"}
# conda-forge names that differ from the PyPI names in pyproject.toml
CONDA_TO_PYPI: dict[str, str] = {}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _parameter_cells(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_rel)
def test_notebook_conventions(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    where = _rel(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{where}: kernelspec name must be python3"
    params = _parameter_cells(nb)
    assert len(params) == 1, f"{where}: {len(params)} cells tagged 'parameters' (need exactly one)"
    assert params[0].cell_type == "code", f"{where}: the parameters cell must be a code cell"
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs"), f"{where}: cell {i} has outputs committed (strip them)"
        assert cell.get("execution_count") is None, f"{where}: cell {i} has an execution count committed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_rel)
def test_parameters_cell_holds_literals_only(path: Path):
    nb = nbformat.read(path, as_version=4)
    (cell,) = _parameter_cells(nb)
    tree = ast.parse(cell.source)
    names = set()
    for node in tree.body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), (
            f"{_rel(path)}: the parameters cell may only assign literals, found {ast.dump(node)[:60]}"
        )
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        assert all(isinstance(t, ast.Name) for t in targets), f"{_rel(path)}: assign plain names only"
        ast.literal_eval(node.value)  # raises ValueError on anything but a literal
        names.update(t.id for t in targets)
    if path.parent.name == "fanout":
        assert "unit_id" in names, f"{_rel(path)}: a fan-out template must declare unit_id"


STAGE_NOTEBOOKS = [p for p in NOTEBOOKS if p.parent.name == "fanout" or re.match(r"^[1-9][0-9]_", p.name)]


@pytest.mark.parametrize("path", STAGE_NOTEBOOKS, ids=_rel)
def test_stage_parameters_are_exactly_the_run_parameters(path: Path):
    """A stage notebook declares run_dir, data_dir, common, stage_settings (a fan-out template also
    unit_id) and nothing else: every setting comes from the run configuration."""
    nb = nbformat.read(path, as_version=4)
    (cell,) = _parameter_cells(nb)
    names = set()
    for node in ast.parse(cell.source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    expected = RUN_PARAMETERS | ({"unit_id"} if path.parent.name == "fanout" else set())
    assert names == expected, (
        f"{_rel(path)}: the parameters cell declares {sorted(names)}; expected exactly {sorted(expected)} "
        f"(extra: {sorted(names - expected)}, missing: {sorted(expected - names)})"
    )


def _requirement(spec: str) -> tuple[str, str | None]:
    """``'pandas>=2.1'`` -> ``('pandas', '2.1')``; names normalised as in PEP 503."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:>=\s*([0-9][0-9A-Za-z.]*))?\s*(?:,.*)?", spec)
    assert match, f"cannot read requirement {spec!r}"
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = dict(_requirement(s) for s in pyproject["dependencies"])
    for extra in ("test", "spark"):  # environment.yml is the whole development environment, Spark included
        wanted.update(_requirement(s) for s in pyproject.get("optional-dependencies", {}).get(extra, []))
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert "conda-forge" in env.get("channels", []), "environment.yml must use conda-forge"
    conda: dict[str, str | None] = {}
    pip_entries: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_entries.extend(dep.get("pip", []))
            continue
        name, bound = _requirement(dep)
        conda[CONDA_TO_PYPI.get(name, name)] = bound
    python_floor = re.search(r">=\s*([0-9.]+)", pyproject["requires-python"]).group(1)
    assert conda.pop("python", None) == python_floor, "environment.yml python bound differs from requires-python"
    conda.pop("pip", None)
    assert "-e ." in [p.strip() for p in pip_entries], "environment.yml must install the package with `pip: -e .`"
    # packages only on PyPI are listed under pip:, with the same bound
    conda.update(_requirement(p) for p in pip_entries if p.strip() != "-e .")
    missing = sorted(set(wanted) - set(conda))
    extra = sorted(set(conda) - set(wanted))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"
    differ = {name: (wanted[name], conda[name]) for name in wanted if wanted[name] != conda[name]}
    assert not differ, f"lower bounds differ (pyproject, environment.yml): {differ}"
    unpinned = sorted(name for name, bound in wanted.items() if bound is None)
    assert not unpinned, f"dependencies without a lower bound: {unpinned}"


def test_no_generated_reports_committed():
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run([git, "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [line for line in listed.stdout.splitlines() if line.strip()]
    assert files in ([], ["reports/.gitkeep"]), f"generated reports are committed: {files[:5]}"


def test_gitignore_keeps_reports_and_private_data_out():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "reports/*" in ignored and "data/raw/" in ignored
