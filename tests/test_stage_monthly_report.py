"""Stage ``monthly_report`` on the tiny year, without a kernel: counts by unit type from the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from sipas_lib import admin_records, config, schemas
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import monthly_report as stage


def make_paths(tmp_path: Path, data_dir: Path) -> config.RunPaths:
    paths = config.RunPaths(Path(data_dir), tmp_path / "run")
    paths.results.mkdir(parents=True, exist_ok=True)
    return paths


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tmp_path_factory):
    paths = make_paths(tmp_path_factory.mktemp("monthly"), tiny_demo)
    settings = load_settings(overrides=["monthly_report.month=3"])
    return paths, settings, stage.run(paths, settings)


def test_run_writes_the_three_tables(tiny_run):
    paths, _, report = tiny_run
    assert report.month == 3 and report.year == 2025
    for name in ("monthly_counts", "monthly_overdue_reasons", "monthly_overview"):
        assert schemas.read_result(paths, name) is not None
    counts = schemas.read_result(paths, "monthly_counts")
    # the same numbers as the DuckDB aggregation, plus the registry's unit type
    raw, _ = admin_records.monthly_aggregates(paths.data_dir, 2025, 3)
    pd.testing.assert_frame_equal(counts.drop(columns="unit_type").reset_index(drop=True),
                                  raw.reset_index(drop=True), check_dtype=False)


def test_unit_type_comes_from_the_registry(tiny_run):
    paths, _, report = tiny_run
    units = pd.read_csv(paths.data_dir / "units.csv", dtype=str)
    expected = dict(zip(units["unit_id"], units["unit_type"]))
    assert (report.counts["unit_type"] == report.counts["unit_id"].map(expected)).all()
    assert set(report.unit_types) <= set(units["unit_type"])


def test_registry_not_id_prefix_decides_the_type(tiny_demo, tmp_path):
    """A department whose id does not start with "S" is still a department."""
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year"))
    units = pd.read_csv(data / "units.csv", dtype=str)
    dept = units.loc[units["unit_type"] == "department", "unit_id"].iloc[0]
    units.loc[units["unit_id"] == dept, "unit_id"] = "X" + dept
    units.to_csv(data / "units.csv", index=False)
    for name in ("dossiers", "feedback", "apologies", "opinions"):
        t = pd.read_parquet(data / f"{name}.parquet")
        t.loc[t["unit_id"] == dept, "unit_id"] = "X" + dept
        t.to_parquet(data / f"{name}.parquet", index=False)
    proc = pd.read_csv(data / "procedures.csv", dtype=str)
    proc.loc[proc["unit_id"] == dept, "unit_id"] = "X" + dept
    proc.to_csv(data / "procedures.csv", index=False)
    report = stage.run(make_paths(tmp_path, data), load_settings(overrides=["monthly_report.month=3"]))
    assert "X" + dept in report.unit_ids("department")


def test_city_on_time_rate_adds_units_before_dividing(tiny_run):
    _, _, report = tiny_run
    month = report.overview.loc[report.overview["period"] == "month"]
    expected = (month["on_time_rate"] * month["resolved"]).sum() / month["resolved"].sum()
    assert report.city_on_time_rate("month") == pytest.approx(expected, abs=1e-12)


def test_latest_month_by_default_and_errors(tiny_demo, tmp_path):
    paths = make_paths(tmp_path, tiny_demo)
    report = stage.compute(paths, load_settings())
    assert report.month == admin_records.latest_month(tiny_demo, 2025)
    with pytest.raises(StageError, match="not in the units registry"):
        stage.compute(paths, load_settings(overrides=["monthly_report.unit_id=NOPE"]))
    with pytest.raises(StageError, match="month"):
        stage.compute(paths, load_settings(overrides=["monthly_report.month=13"]))
    empty = make_paths(tmp_path / "other", tmp_path / "nothing")
    with pytest.raises(StageError, match="dossiers.parquet"):
        stage.compute(empty, load_settings())


def test_unknown_unit_in_the_records_is_named(tiny_demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data, ignore=shutil.ignore_patterns("previous_year"))
    d = pd.read_parquet(data / "dossiers.parquet")
    march = pd.to_datetime(d["received_on"]).dt.month.eq(3) & pd.to_datetime(d["received_on"]).dt.year.eq(2025)
    d.loc[d.index[march][0], "unit_id"] = "Z99"
    d.to_parquet(data / "dossiers.parquet", index=False)
    with pytest.raises(StageError, match="dossiers.parquet, column 'unit_id': unit\\(s\\) Z99"):
        stage.compute(make_paths(tmp_path, data), load_settings(overrides=["monthly_report.month=3"]))


def test_a_year_without_administrative_records_is_not_applicable(tmp_path):
    # survey files only: the runner skips the monthly report with this reason instead of failing
    from sipas_lib import config

    (tmp_path / "data").mkdir()
    paths = config.run_paths(tmp_path / "data", tmp_path / "run")
    assert "no administrative records" in stage.not_applicable(paths)
    (tmp_path / "data" / "dossiers.parquet").write_bytes(b"")  # some files but not all: compute() says which
    assert stage.not_applicable(paths) is None
