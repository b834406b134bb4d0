"""Executable data contracts: one schema per table that crosses a stage boundary.

Contracts layer. Every input file of a year and every ``results/*.parquet`` table has one
:class:`TableContract` here (columns, dtypes, allowed values, keys, whether a column may hold
personal data). Stages write tables with :func:`write_result` and read them with
:func:`read_result`; both validate, so a consumer never guesses a column name or a scale.
``docs/CONTRACTS.md`` is generated from these contracts (``python -m sipas_lib.schemas``) and a
test checks that it is current.

Validation uses pandera (a well-kept schema library for pandas: typed columns, checks, lazy
error collection with the failing rows), so that the messages name the table, column, row and the
expected value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrors

#: Columns that hold personal data of applicants or enumerators. They may appear only in input
#: contracts marked ``personal``; a result table that carries one is refused on write.
PERSONAL_COLUMNS = frozenset({
    "applicant_name", "phone", "address", "email",
    "enumerator_name", "enumerator_phone", "enumerator_address",
    "transaction_id",  # links an answer to an applicant's case record
    "respondent_name", "respondent_phone", "respondent_address",  # the re-check (phúc tra) file's contacts
})

#: Free-text columns: written only when the configuration asks for them, scrubbed of phones/e-mails.
FREE_TEXT_COLUMNS = frozenset({"education_other"})


class ContractError(ValueError):
    """A table that does not meet its contract; the message names table, column, rows and what was expected."""


@dataclass(frozen=True)
class TableContract:
    """The contract of one table.

    Attributes
    ----------
    name
        Table name (``results/<name>.parquet`` for results).
    stage
        Stage module that writes it (``"input"`` for the year's input files).
    description
        One row per …, and what the table is for.
    schema
        The pandera schema (columns, dtypes, checks, ``unique`` keys).
    keys
        Columns that identify a row (checked unique).
    personal
        True for an input file that may hold personal data (it never leaves ``data/``).
    optional
        A result the stage writes only when its inputs allow (e.g. year-on-year without a previous
        year); every other result is a main output, and a stage that did not write it has failed.
    """

    name: str
    stage: str
    description: str
    schema: pa.DataFrameSchema
    keys: tuple[str, ...] = ()
    personal: bool = False
    optional: bool = False

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)


REGISTRY: dict[str, TableContract] = {}


def register(name: str, stage: str, description: str, columns: Mapping[str, pa.Column], *,
             keys: Iterable[str] = (), personal: bool = False, optional: bool = False,
             strict: bool = True, checks: Iterable[pa.Check] = ()) -> TableContract:
    """Declare a table's contract (called at import by the per-stage schema modules)."""
    keys = tuple(keys)
    if not personal:
        leaked = PERSONAL_COLUMNS.intersection(columns)
        if leaked:
            raise ValueError(f"contract {name!r}: result tables may not hold personal columns {sorted(leaked)}")
    schema = pa.DataFrameSchema(dict(columns), strict=strict, unique=list(keys) or None, name=name,
                                checks=list(checks), coerce=False)
    contract = TableContract(name, stage, description, schema, keys, personal, optional)
    if name in REGISTRY and REGISTRY[name] != contract:
        raise ValueError(f"contract {name!r} declared twice")
    REGISTRY[name] = contract
    return contract


def contract(name: str) -> TableContract:
    """The contract of table ``name``."""
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise ContractError(f"no contract for table {name!r}; known tables: {', '.join(sorted(REGISTRY))}") from None


def _describe(err: SchemaErrors | SchemaError, where: str, limit: int = 8) -> str:
    cases = getattr(err, "failure_cases", None)
    if cases is None or len(cases) == 0:
        return f"{where}: {err}"
    lines = []
    for _, row in cases.head(limit).iterrows():
        column = row.get("column")
        index = row.get("index")
        at = f"row {int(index) + 1}" if isinstance(index, (int, float)) and pd.notna(index) else "table"
        col = f"column {column!r}" if isinstance(column, str) and column else "table"
        lines.append(f"  {at}, {col}: {row.get('check')} (found {row.get('failure_case')!r})")
    more = f"\n  … and {len(cases) - limit} more" if len(cases) > limit else ""
    return f"{where} does not meet its contract:\n" + "\n".join(lines) + more


def validate(name: str, df: pd.DataFrame, where: str | None = None) -> pd.DataFrame:
    """Validate ``df`` against the contract of ``name``; return it (columns in contract order).

    Raises
    ------
    ContractError
        Listing up to eight failures as ``row N, column 'c': <check> (found <value>)``.
    """
    c = contract(name)
    where = where or f"table {name!r}"
    try:
        out = c.schema.validate(df, lazy=True)
    except (SchemaErrors, SchemaError) as err:
        raise ContractError(_describe(err, where)) from None
    return out[[col for col in c.columns if col in out.columns]]


def _results_dir(paths_or_dir: Any) -> Path:
    return Path(getattr(paths_or_dir, "results", paths_or_dir))


def result_path(paths_or_dir: Any, name: str) -> Path:
    return _results_dir(paths_or_dir) / f"{name}.parquet"


def write_result(paths_or_dir: Any, name: str, df: pd.DataFrame) -> Path:
    """Validate a result table and write it to ``results/<name>.parquet``."""
    c = contract(name)
    if c.personal or c.stage == "input":
        raise ContractError(f"{name!r} is an input contract, not a result table")
    table = validate(name, df.reset_index(drop=True), where=f"result table {name!r} (being written)")
    path = result_path(paths_or_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.attrs = {}  # pandas would write attrs into the file's metadata; the contract is the columns
    for column_name, column in c.schema.columns.items():  # one text dtype whatever the producer used,
        if column.dtype is not None and str(column.dtype).startswith("str") and column_name in table:  # so
            table[column_name] = table[column_name].astype("str")  # two runs write identical files
    table.to_parquet(path, index=False)
    return path


def read_result(paths_or_dir: Any, name: str, *, required: bool = True) -> pd.DataFrame | None:
    """Read and validate ``results/<name>.parquet``.

    A missing table is a :class:`ContractError` naming the file and the stage that writes it
    (``required=False`` returns ``None`` instead, for optional tables such as year-on-year).
    """
    c = contract(name)
    path = result_path(paths_or_dir, name)
    if not path.exists():
        if not required:
            return None
        raise ContractError(f"{path}: not found; it is written by stage {c.stage!r} — run that stage first")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError: empty or truncated file
        raise ContractError(f"{path}: not a readable Parquet table ({err}); it is written by stage {c.stage!r} "
                            "— run that stage again") from None
    return validate(name, table, where=str(path))


def stage_outputs(stage: str, *, main_only: bool = True) -> list[str]:
    """Names of the result tables a stage writes (its main outputs only, by default)."""
    _load_all()
    return [c.name for c in REGISTRY.values() if c.stage == stage and not (main_only and c.optional)]


def _load_all() -> None:
    # importing the per-stage modules registers their contracts
    from sipas_lib.schemas import (  # noqa: F401
        annual_survey_report, index_ranking, inputs, intake_quality, integrity, monthly_report, reliability,
        sampling_design, weighting,
    )


def _dtype_text(column: pa.Column) -> str:
    return str(column.dtype) if column.dtype is not None else "any"


def _checks_text(column: pa.Column) -> str:
    parts = []
    for check in column.checks or []:
        stats = getattr(check, "statistics", None) or {}
        if check.name == "isin":
            parts.append("one of " + ", ".join(f"`{v}`" for v in stats.get("allowed_values", [])))
        elif check.name == "in_range":
            parts.append(f"{stats.get('min_value')} to {stats.get('max_value')}")
        elif check.name == "greater_than_or_equal_to":
            parts.append(f"≥ {stats.get('min_value')}")
        elif check.name == "greater_than":
            parts.append(f"> {stats.get('min_value')}")
        elif check.name == "str_matches":
            parts.append(f"matches `{stats.get('pattern')}`")
        else:
            parts.append(check.error or check.name or "custom check")
    if column.unique:
        parts.append("unique")
    return "; ".join(parts)


def contracts_markdown() -> str:
    """``docs/CONTRACTS.md``, generated from the registered contracts."""
    _load_all()
    head = Path(__file__).with_name("CONTRACTS_HEAD.md").read_text(encoding="utf-8")
    out = [head.rstrip(), ""]
    by_stage: dict[str, list[TableContract]] = {}
    for c in REGISTRY.values():
        by_stage.setdefault(c.stage, []).append(c)
    order = ["input", "sampling_design", "intake_quality", "integrity", "weighting", "reliability", "index_ranking",
             "monthly_report", "annual_survey_report"]
    for stage in sorted(by_stage, key=lambda s: order.index(s) if s in order else len(order)):
        title = "Input files of a year" if stage == "input" else f"Results of stage `{stage}`"
        out += [f"## {title}", ""]
        for c in sorted(by_stage[stage], key=lambda c: c.name):
            file = f"`{c.name}`" if stage == "input" else f"`results/{c.name}.parquet`"
            flags = " **May hold personal data: never leaves `data/`.**" if c.personal else ""
            keys = f" Key: {', '.join(f'`{k}`' for k in c.keys)}." if c.keys else ""
            out += [f"### {file}", "", f"{c.description}{keys}{flags}", "",
                    "| column | dtype | nullable | allowed | meaning |", "|---|---|---|---|---|"]
            for col_name, col in c.schema.columns.items():
                personal = " (personal)" if col_name in PERSONAL_COLUMNS else ""
                desc = (col.description or "").replace("|", "\\|")
                out.append(f"| `{col_name}`{personal} | {_dtype_text(col)} | {'yes' if col.nullable else 'no'} | "
                           f"{_checks_text(col)} | {desc} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
