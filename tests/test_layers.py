"""The layers of DESIGN.md are kept: import-linter checks the contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sipas_lib import config

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(*args: str) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"import-linter is not installed next to {sys.executable} (it is a test dependency)")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=config.PROJECT_DIR,
                          capture_output=True, text=True, timeout=120)


def test_every_module_is_in_a_layer():
    """A module outside every layer would escape the check."""
    layers = tomllib.loads((config.PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    listed = " ".join(layers["tool"]["importlinter"]["contracts"][0]["layers"])
    names = {p.stem for p in config.PACKAGE_DIR.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name for p in config.PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}
    missing = sorted(n for n in names if f"sipas_lib.{n}" not in listed)
    assert not missing, f"modules in no layer of pyproject.toml: {missing}"


def test_import_linter_contracts_are_kept():
    proc = _lint()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "0 broken" in proc.stdout


def test_import_linter_sees_a_broken_layer(tmp_path):
    """The check can fail: the runner imports config, so config above the runner is broken."""
    inverted = tmp_path / "inverted.toml"
    inverted.write_text(
        '[tool.importlinter]\nroot_package = "sipas_lib"\n\n[[tool.importlinter.contracts]]\n'
        'name = "inverted"\ntype = "layers"\nlayers = ["sipas_lib.config", "sipas_lib.runner"]\n',
        encoding="utf-8",
    )
    proc = _lint(str(inverted))
    assert proc.returncode != 0 and "BROKEN" in proc.stdout
    assert "sipas_lib.runner" in proc.stdout
