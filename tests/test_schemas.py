"""The executable data contracts: every table that crosses a stage has one, validated on write and read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from sipas_lib import config, schemas
from sipas_lib.stages import STAGE_OF_NOTEBOOK

ROOT = config.PROJECT_DIR
LIBRARY = ROOT / "sipas_lib"


def test_contracts_md_is_generated_from_the_schemas():
    current = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    assert current == schemas.contracts_markdown(), (
        "docs/CONTRACTS.md is stale: run `.venv/bin/python -m sipas_lib.schemas > docs/CONTRACTS.md`")


def test_every_contract_is_described_and_every_column_too():
    schemas.contract("indices")  # loads every stage's contracts
    for contract in schemas.REGISTRY.values():
        assert "TODO" not in contract.description and len(contract.description) > 15, contract.name
        for name, column in contract.schema.columns.items():
            assert column.description and column.description.strip() != name, f"{contract.name}.{name}: no description"


def test_result_tables_hold_no_personal_column():
    schemas.contract("indices")
    for contract in schemas.REGISTRY.values():
        if not contract.personal:
            assert not schemas.PERSONAL_COLUMNS & set(contract.columns), contract.name
    with pytest.raises(ValueError, match="personal columns"):
        schemas.register("leaky", "weighting", "one row per leak", {"phone": schemas.columns.text("a phone")})


def _written_tables() -> set[str]:
    """Table names passed as literals to write_result anywhere in the library."""
    names = set()
    for path in LIBRARY.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "write_result":
                if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                    names.add(node.args[1].value)
    return names


def test_every_table_a_stage_writes_has_a_contract_and_stages_exist():
    schemas.contract("indices")
    assert _written_tables() <= set(schemas.REGISTRY)
    stages = set(STAGE_OF_NOTEBOOK.values())
    for contract in schemas.REGISTRY.values():
        assert contract.stage == "input" or contract.stage in stages, contract.name


def test_nothing_writes_or_reads_a_result_table_around_the_contracts():
    # Result tables are written with schemas.write_result and read with schemas.read_result only.
    pattern = re.compile(r"(read|to)_parquet\([^)\n]*(results|paths\.results|run_dir)")
    offenders = []
    for path in list(LIBRARY.rglob("*.py")) + list((ROOT / "notebooks").rglob("*.ipynb")):
        if path.is_relative_to(LIBRARY / "schemas"):
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not offenders, offenders


def test_write_and_read_validate_and_name_row_and_column(tmp_path):
    good = pd.DataFrame({"unit_id": ["S01"], "survey_mode": ["postal"], "issued": [10], "returned": [8],
                         "response_rate": [0.8]})
    contract = schemas.contract("response_rates")
    good = good[[c for c in contract.columns if c in good.columns]]
    if set(good.columns) != set(contract.columns):
        pytest.skip("response_rates contract has other columns; covered by the stage tests")
    schemas.write_result(tmp_path, "response_rates", good)
    assert schemas.read_result(tmp_path, "response_rates").equals(good)
    bad = good.assign(response_rate=[1.8])
    with pytest.raises(schemas.ContractError, match=r"row 1, column 'response_rate'"):
        schemas.write_result(tmp_path, "response_rates", bad)
    bad.to_parquet(tmp_path / "response_rates.parquet", index=False)  # written around the contract
    with pytest.raises(schemas.ContractError, match="response_rates.parquet does not meet its contract"):
        schemas.read_result(tmp_path, "response_rates")
    with pytest.raises(schemas.ContractError, match="run that stage first"):
        schemas.read_result(tmp_path, "indices")
    assert schemas.read_result(tmp_path, "yoy", required=False) is None
    (tmp_path / "indices.parquet").write_bytes(b"")  # a stage that died while writing
    with pytest.raises(schemas.ContractError, match="indices.parquet: not a readable Parquet table"):
        schemas.read_result(tmp_path, "indices")


def test_no_schema_guessing_or_id_prefix_rules_are_left():
    # issue 10 defect 6: report code guessed the schema of tables its own stages wrote, and read
    # the unit type from an id prefix. Contracts and the registry say what a column is.
    banned = re.compile(r"first_column\(|share_scale\(|startswith\(\s*[\"'][SD][\"']\s*\)|rename if needed")
    offenders = []
    for path in list(LIBRARY.rglob("*.py")) + list((ROOT / "notebooks").rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in banned.finditer(text)]
    assert not offenders, offenders
