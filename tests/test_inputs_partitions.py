"""Validation of dossiers partitioned by month (issue 16 §2): ``dossiers/year=YYYY/month=MM/*.parquet``.

The year is the demo's previous year (2024: ids such as S01, D01) with a sample of its dossiers written by
:func:`sipas_lib.dossier_engine.write_month_partitions`. Each test breaks one partition file in one way and
asserts the file, record and column the error names; the table is scanned by DuckDB, never read into pandas.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sipas_lib import dossier_engine
from sipas_lib.config import DEMO_DIR
from sipas_lib.inputs import InputError, read_input, validate_dossier_partitions, validate_year

SOURCE_DIR = DEMO_DIR / "previous_year"
YEAR = 2024
CSV_FILES = ("units.csv", "frame_counts.csv", "sample.csv")


@pytest.fixture(scope="module")
def dossiers() -> pd.DataFrame:
    """3,000 of the demo's 2024 dossiers (units and communes, every month), in their stored order."""
    table = pd.read_parquet(SOURCE_DIR / "dossiers.parquet")
    return table.iloc[:: len(table) // 3000].reset_index(drop=True)


@pytest.fixture(scope="module")
def units() -> pd.DataFrame:
    return read_input(SOURCE_DIR, "units")


@pytest.fixture
def year(input_copies, dossiers) -> Path:
    """The year's required CSV files and its dossiers partitioned by month, in two chunks."""
    folder = input_copies(CSV_FILES)
    half = len(dossiers) // 2
    dossier_engine.write_month_partitions(dossiers.iloc[:half], folder / "dossiers", part=0)
    dossier_engine.write_month_partitions(dossiers.iloc[half:], folder / "dossiers", part=1)
    return folder


def part(folder: Path, month: int, chunk: int = 0) -> Path:
    return folder / "dossiers" / f"year={YEAR}" / f"month={month:02d}" / f"part-{chunk}.parquet"


def rewrite(path: Path, change) -> pd.DataFrame:
    """Read one partition file, apply ``change`` (a function of the DataFrame), write it back."""
    table = change(pd.read_parquet(path))
    table.to_parquet(path, index=False)
    return table


def raises_at(folder: Path, *, file: Path, record: int | None, column: str | None, match: str) -> InputError:
    """The error of the year's partitioned dossiers (checked against the year's units, as validate_year does)."""
    with pytest.raises(InputError, match=match) as caught:
        validate_dossier_partitions(folder / "dossiers", read_input(folder, "units"), year=YEAR)
    err = caught.value
    assert Path(err.file) == file, str(err)
    assert err.row == record and err.column == column, str(err)
    assert str(err).startswith(str(file)), str(err)  # the message starts with the partition file
    return err


@pytest.mark.slow  # two whole years validated (their sample.csv, frame_counts.csv …): a few seconds
def test_clean_partitioned_year_validates_and_is_scanned_not_loaded(year, dossiers):
    assert validate_year(year, year=YEAR) == []
    files = dossier_engine.parquet_files(year / "dossiers")
    assert len(files) == 24  # 12 months x 2 chunks
    # the same dossiers as one file validate alike (the rules are the single file's)
    single = year.parent / "single"
    shutil.copytree(year, single, ignore=shutil.ignore_patterns("dossiers"))
    dossiers.to_parquet(single / "dossiers.parquet", index=False)
    assert validate_year(single, year=YEAR) == []


def test_wrong_type_in_one_partition_is_named(year):
    path = part(year, 5, 1)
    rewrite(path, lambda t: t.assign(received_on=t["received_on"].dt.strftime("%d/%m/%Y")))
    err = raises_at(year, file=path, record=None, column="received_on",
                    match=r"expected a Parquet date or timestamp \(a date\), but the column is stored as (large_)?string")
    path = part(year, 7, 0)
    shutil.copy(part(year, 5, 0), part(year, 5, 1))  # the first problem fixed, another one left
    rewrite(path, lambda t: t.assign(unit_id=range(len(t))))
    raises_at(year, file=path, record=None, column="unit_id", match=r"expected text, but the column is stored as int64")
    assert "record" not in str(err)


def test_wrong_month_folder_is_named_with_the_record(year):
    # a June chunk saved into the July folder
    wrong = part(year, 7, 5)
    shutil.copy(part(year, 6, 0), wrong)
    err = raises_at(year, file=wrong, record=1, column="received_on",
                    match=r"expected a day received in 07/2024 \(the partition's folder year=2024/month=07\)")
    assert "found '2024-06-" in str(err) and "move the record to its month's folder" in str(err)


@pytest.mark.parametrize("relative, message", [
    ("year=2024/month=13/part-0.parquet", "is not in a month folder"),
    ("year=2024/part-0.parquet", "is not in a month folder"),
    ("month=03/part-0.parquet", "is not in a month folder"),
    ("year=24/month=03/part-0.parquet", "is not in a month folder"),
])
def test_files_outside_month_folders_are_refused(year, relative, message):
    stray = year / "dossiers" / relative
    stray.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(part(year, 3), stray)
    raises_at(year, file=stray, record=None, column=None, match=message)


def test_unknown_unit_and_commune_of_another_unit_are_named(year):
    path = part(year, 4, 1)
    table = pd.read_parquet(path)
    rewrite(path, lambda t: t.assign(unit_id=t["unit_id"].where(t.index != 9, "D99")))
    err = raises_at(year, file=path, record=10, column="unit_id", match=r"expected a unit id listed in units.csv")
    assert "found 'D99'" in str(err) and "add the unit to units.csv" in str(err)
    table.to_parquet(path, index=False)  # repaired; now a commune of another unit
    commune_rows = table.index[table["level"] == "commune"]
    first = int(commune_rows[0])
    other = table.loc[(table["level"] == "commune") & (table["unit_id"] != table.at[first, "unit_id"]), "commune_id"].iloc[0]
    rewrite(path, lambda t: t.assign(commune_id=t["commune_id"].where(t.index != first, other)))
    raises_at(year, file=path, record=first + 1, column="commune_id",
              match=rf"expected a commune of unit '{table.at[first, 'unit_id']}' \(its parent_id in units.csv\)")


def test_missing_column_in_one_partition_is_named(year):
    path = part(year, 11, 0)
    rewrite(path, lambda t: t.drop(columns="due_on"))
    raises_at(year, file=path, record=None, column="due_on", match=r"missing column\(s\) 'due_on'")


def test_codes_and_rules_of_a_single_file_apply_to_each_record(year):
    path = part(year, 2, 0)
    rewrite(path, lambda t: t.assign(channel=t["channel"].where(t.index != 3, "Trực tuyến")))
    raises_at(year, file=path, record=4, column="channel", match=r"expected one of direct, .*found 'Trực tuyến'")
    rewrite(path, lambda t: t.assign(channel="direct"))
    pending = pd.read_parquet(path)["status"].ne("pending").idxmax()
    rewrite(path, lambda t: t.assign(resolved_on=t["resolved_on"].where(t.index != pending, pd.NaT)))
    raises_at(year, file=path, record=int(pending) + 1, column="resolved_on", match=r"the day a dossier with status")


def test_repeated_dossier_id_across_partitions_names_both_records(year):
    first = pd.read_parquet(part(year, 1, 0))["dossier_id"].iloc[2]
    path = part(year, 9, 1)
    rewrite(path, lambda t: t.assign(dossier_id=t["dossier_id"].where(t.index != 4, first)))
    err = raises_at(year, file=path, record=5, column="dossier_id", match="repeats record 3 of")
    assert str(part(year, 1, 0)) in str(err) and repr(first) in str(err)


@pytest.mark.slow
def test_year_and_layout_of_the_folder(year, units):
    with pytest.raises(InputError, match=r"has no partition year=2025 \(found year=2024\)"):
        validate_year(year, year=2025)
    later = year / "dossiers" / "year=2025" / "month=01" / "part-0.parquet"
    later.parent.mkdir(parents=True)
    rewrite_to = pd.read_parquet(part(year, 1, 0))
    shifted = rewrite_to.assign(**{c: rewrite_to[c] + pd.DateOffset(years=1) for c in ("received_on", "due_on",
                                                                                         "resolved_on")},
                                dossier_id=rewrite_to["dossier_id"] + "-2025")
    shifted.to_parquet(later, index=False)
    warnings = validate_dossier_partitions(year / "dossiers", units, year=YEAR)
    assert warnings == [f"{year / 'dossiers'}: partitions of 2025 hold dossiers received after 2024; no report of "
                        "this year counts them"]
    shutil.copy(SOURCE_DIR / "dossiers.parquet", year / "dossiers.parquet")
    with pytest.raises(InputError, match=r"dossiers.parquet is there too; keep one of them"):
        validate_year(year)


def test_without_units_the_other_rules_still_apply(year):
    path = part(year, 8, 0)
    rewrite(path, lambda t: t.assign(unit_id="NOWHERE"))
    assert validate_dossier_partitions(year / "dossiers", None, year=YEAR) == []
    rewrite(path, lambda t: t.assign(status=t["status"].where(t.index != 0, "late")))
    with pytest.raises(InputError, match=r"record 1, column 'status': expected one of on_time, overdue, pending"):
        validate_dossier_partitions(year / "dossiers", None)


def test_dictionary_and_null_columns_as_the_bench_writes_them(year, units):
    """Codes stored dictionary-encoded and an all-empty commune_id of Arrow type null are read as text."""
    path = part(year, 10, 0)
    table = pa.Table.from_pandas(pd.read_parquet(path), preserve_index=False)
    table = table.set_column(table.schema.get_field_index("status"), "status", pc.dictionary_encode(table["status"]))
    only_units = table.filter(pc.equal(table["level"], "unit"))
    only_units = only_units.set_column(only_units.schema.get_field_index("commune_id"), "commune_id",
                                       pa.nulls(len(only_units)))
    pq.write_table(only_units, path)
    assert validate_dossier_partitions(year / "dossiers", units, year=YEAR) == []
