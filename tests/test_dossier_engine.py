"""The Phụ lục 3 aggregation on DuckDB and Spark (sipas_lib.dossier_engine, sipas_lib.admin_records).

References:

* the DuckDB SQL of ``admin_records.monthly_aggregates`` before it was rewritten with Ibis (commit
  667609b), frozen below as :func:`reference_aggregates`: the Ibis version must return *identical*
  tables (values, rows, order, dtypes) on random years and on the demo year;
* the same expressions on PySpark in local mode (marker ``spark``, skipped without ``java``): identical
  tables again;
* the partitioned layout (``dossiers/year=YYYY/month=MM/part-*.parquet``) against the single file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from sipas_lib import admin_records as ar
from sipas_lib import config
from sipas_lib import dossier_engine as de
from sipas_lib.settings import load_settings
from sipas_lib.stages import StageError
from sipas_lib.stages import monthly_report as stage

YEAR = 2025


# ----------------------------------------------------------------------------------------------
# the frozen pre-Ibis implementation (DuckDB SQL, commit 667609b), single-file layout only
# ----------------------------------------------------------------------------------------------

def _sql_reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    if path.suffix == ".csv":
        return f"read_csv_auto('{quoted}', header=true, all_varchar=false)"
    return f"read_parquet('{quoted}')"


def _sql_dossiers(where: str) -> str:
    aggs = []
    for per, start in {"month": "$2", "ytd": "$1"}.items():
        todo, resolved = f"(res IS NULL OR res >= {start})", f"(res >= {start} AND res <= $3)"
        aggs.append(f"count(*) FILTER (WHERE {todo}) AS {per}__total")
        aggs += [f"count(*) FILTER (WHERE {todo} AND channel = '{ch}') AS {per}__ch_{ch}" for ch in ar.CHANNELS]
        aggs += [f"count(*) FILTER (WHERE {todo} AND field = '{fd}') AS {per}__field_{fd}" for fd in ar.FIELDS]
        aggs.append(f"count(*) FILTER (WHERE {todo} AND rec >= {start}) AS {per}__received_new")
        aggs.append(f"count(*) FILTER (WHERE {resolved}) AS {per}__resolved")
        aggs.append(f"count(*) FILTER (WHERE {resolved} AND res <= due) AS {per}__on_time")
        aggs.append(f"count(*) FILTER (WHERE {resolved} AND res > due) AS {per}__late")
        for ch in ar.CHANNELS:
            aggs.append(f"count(*) FILTER (WHERE {resolved} AND channel = '{ch}') AS {per}__resolved_{ch}")
            aggs.append(f"count(*) FILTER (WHERE {resolved} AND channel = '{ch}' AND res <= due) AS {per}__on_time_{ch}")
    return f"""WITH d AS (SELECT unit_id, level, channel, field, CAST(received_on AS DATE) AS rec,
                      CAST(due_on AS DATE) AS due, CAST(resolved_on AS DATE) AS res FROM {{src}}
                      WHERE CAST(received_on AS DATE) <= $3
                        AND (resolved_on IS NULL OR CAST(resolved_on AS DATE) >= $1){where})
               SELECT unit_id, level, {', '.join(aggs)} FROM d GROUP BY unit_id, level"""


def _sql_coverage(where: str) -> str:
    flags = [f"bool_or(channel = '{ch}' AND rec >= $2) AS month_{ch}, bool_or(channel = '{ch}') AS ytd_{ch}"
             for ch in ar.OFFER_FLAGS]
    aggs = []
    for ch, offer in ar.OFFER_FLAGS.items():
        aggs.append(f"count(*) FILTER (WHERE p.{offer}) AS offered_{ch}")
        aggs += [f"count(*) FILTER (WHERE p.{offer} AND coalesce(a.{per}_{ch}, false)) AS {per}__active_{ch}"
                 for per in ar.PERIODS]
    return f"""WITH a AS (SELECT unit_id, level, procedure_id, {', '.join(flags)}
                      FROM (SELECT unit_id, level, procedure_id, channel, CAST(received_on AS DATE) AS rec
                            FROM {{src}} WHERE CAST(received_on AS DATE) BETWEEN $1 AND $3{where})
                      GROUP BY unit_id, level, procedure_id),
                    p AS (SELECT CAST(unit_id AS VARCHAR) AS unit_id, CAST(level AS VARCHAR) AS level,
                      CAST(procedure_id AS VARCHAR) AS procedure_id,
                      CAST(offers_online_l3 AS BOOLEAN) AS offers_online_l3,
                      CAST(offers_online_l4 AS BOOLEAN) AS offers_online_l4,
                      CAST(offers_postal AS BOOLEAN) AS offers_postal FROM {{proc}} WHERE true{where})
               SELECT p.unit_id, p.level, {', '.join(aggs)} FROM p LEFT JOIN a
                 ON a.unit_id = p.unit_id AND a.level = p.level AND CAST(a.procedure_id AS VARCHAR) = p.procedure_id
               GROUP BY p.unit_id, p.level"""


def _sql_dated(kind: str, date_col: str, extra: dict[str, str], where: str) -> str:
    aggs = []
    for per, start in (("month", "$2"), ("ytd", "$1")):
        aggs.append(f"count(*) FILTER (WHERE d >= {start}) AS {per}__{kind}")
        aggs += [f"count(*) FILTER (WHERE d >= {start} AND {cond}) AS {per}__{name}" for name, cond in extra.items()]
    return f"""SELECT unit_id, level, {', '.join(aggs)}
               FROM (SELECT *, CAST({date_col} AS DATE) AS d FROM {{src}}
                     WHERE CAST({date_col} AS DATE) BETWEEN $1 AND $3{where}) GROUP BY unit_id, level"""


def _sql_long(wide: pd.DataFrame) -> pd.DataFrame:
    if wide.empty:
        return pd.DataFrame(columns=["unit_id", "level", "period", "metric", "value"])
    long = wide.melt(id_vars=["unit_id", "level"], var_name="key", value_name="value")
    split = long["key"].str.split("__", n=1, expand=True)
    return long.assign(period=split[0], metric=split[1])[["unit_id", "level", "period", "metric", "value"]]


def reference_aggregates(folder: Path, year: int, month: int, unit_ids=None):
    """``admin_records.monthly_aggregates`` as it was before Ibis (DuckDB SQL over ``dossiers.parquet``)."""
    periods = ar.report_periods(year, month)
    src = {name: _sql_reader(folder / name) for name in
           ("dossiers.parquet", "procedures.csv", "feedback.parquet", "apologies.parquet", "opinions.parquet")}
    where = "" if unit_ids is None else " AND unit_id IN (SELECT UNNEST($4::VARCHAR[]))"
    params = [periods["ytd"][0], periods["month"][0], periods["ytd"][1]] + ([] if unit_ids is None else [list(unit_ids)])
    con = duckdb.connect()
    run = lambda sql: con.execute(sql, params).df()  # noqa: E731
    dossiers = run(_sql_dossiers(where).replace("{src}", src["dossiers.parquet"]))
    coverage = run(_sql_coverage(where).replace("{src}", src["dossiers.parquet"]).replace("{proc}", src["procedures.csv"]))
    feedback = run(_sql_dated("fb_total", "received_on", {
        "fb_behaviour": "kind = 'behaviour'", "fb_regulation": "kind = 'regulation'",
        "fb_published": "CAST(result_published AS BOOLEAN)"}, where).replace("{src}", src["feedback.parquet"]))
    apologies = run(_sql_dated("apologies", "sent_on", {}, where).replace("{src}", src["apologies.parquet"]))
    opinions = run(_sql_dated("opinions", "received_on", {
        "opinions_satisfied": "CAST(satisfied AS BOOLEAN)", "opinions_paper": "medium = 'paper'",
        "opinions_electronic": "medium = 'electronic'"}, where).replace("{src}", src["opinions.parquet"]))
    offered = [f"offered_{ch}" for ch in ar.OFFER_FLAGS]
    for per in ar.PERIODS:
        for col in offered:
            coverage[f"{per}__{col}"] = coverage[col]
    coverage = coverage.drop(columns=offered)
    frames = [_sql_long(t) for t in (dossiers, coverage, feedback, apologies, opinions)]
    counts = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    counts = counts.astype({"unit_id": str, "level": str})
    counts["value"] = counts["value"].fillna(0).astype("int64")
    counts = counts.sort_values(["unit_id", "level", "period", "metric"], kind="stable").reset_index(drop=True)
    reasons = run(f"""
        SELECT unit_id, level, period, coalesce(NULLIF(trim(CAST(overdue_reason AS VARCHAR)), ''), '?') AS reason,
               count(*) AS n
        FROM (SELECT unit_id, level, overdue_reason, CAST(resolved_on AS DATE) AS res, CAST(due_on AS DATE) AS due
              FROM {src['dossiers.parquet']} WHERE CAST(resolved_on AS DATE) BETWEEN $1 AND $3{where}) d,
             (SELECT 'ytd' AS period UNION ALL SELECT 'month') p
        WHERE res > due AND (p.period = 'ytd' OR res >= $2)
        GROUP BY ALL ORDER BY unit_id, level, period, n DESC, reason""")
    reasons["n"] = reasons["n"].astype("int64")
    con.close()
    return counts, reasons


# ----------------------------------------------------------------------------------------------
# a random year with every awkward case
# ----------------------------------------------------------------------------------------------

def random_year(folder: Path, n: int = 4000, seed: int = 7, partitioned: bool = False) -> Path:
    """Records of 6 units at two levels: carried over from 2024, pending, late with blank/missing
    reasons, procedures never used and dossiers of procedures not in the catalogue, events outside
    the year, and a unit with procedures but no dossier."""
    rng = np.random.default_rng(seed)
    units = np.array(["S01", "S02", "D01", "D02", "W01", "C07"])
    unit = rng.choice(units[:5], n)
    level = np.where(np.isin(unit, ["D01", "D02"]) & (rng.random(n) < 0.5), "commune", "unit")
    received = pd.Timestamp("2024-11-15") + pd.to_timedelta(rng.integers(0, 420, n), unit="D")
    due = received + pd.to_timedelta(rng.choice([3, 7, 15], n), unit="D")
    took = rng.integers(0, 30, n)
    resolved = pd.Series(received + pd.to_timedelta(took, unit="D")).where(rng.random(n) > 0.08)
    late = resolved.to_numpy() > due.to_numpy()
    reason = np.where(late, rng.choice(["Thiếu nhân lực", "Lỗi phần mềm", "", "  "], n), None)
    reason[late & (rng.random(n) < 0.1)] = None
    dossiers = pd.DataFrame({
        "dossier_id": [f"HS{i:07d}" for i in range(n)], "unit_id": unit, "level": level,
        "commune_id": np.where(level == "commune", np.char.add(unit.astype(str), "C1"), None),
        "field": rng.choice(list(ar.FIELDS), n), "channel": rng.choice(list(ar.CHANNELS), n),
        "procedure_id": np.char.add(np.char.add(unit.astype(str), level.astype(str)),
                                    rng.integers(0, 14, n).astype(str)),
        "received_on": received, "due_on": due, "resolved_on": resolved,
        "status": np.where(resolved.isna(), "pending", np.where(late, "overdue", "on_time")),
        "overdue_reason": reason})
    procedures = pd.DataFrame([(f"{u}{lv}{k}", u, lv, "other", bool(rng.random() < .6), bool(rng.random() < .4),
                                bool(rng.random() < .5)) for u in units for lv in ("unit", "commune") for k in range(12)],
                              columns=list(ar.PROCEDURE_COLUMNS))

    def events(prefix: str, date_col: str, m: int, **cols) -> pd.DataFrame:
        u = rng.choice(units[:5], m)
        return pd.DataFrame({f"{prefix}_id": [f"{prefix}{i}" for i in range(m)], "unit_id": u,
                             "level": np.where(rng.random(m) < 0.2, "commune", "unit"), "commune_id": None,
                             date_col: pd.Timestamp("2024-12-01") + pd.to_timedelta(rng.integers(0, 420, m), unit="D"),
                             **{k: v(m) for k, v in cols.items()}})

    folder.mkdir(parents=True, exist_ok=True)
    if partitioned:
        half = n // 2  # two chunks, as a monthly export would append them
        de.write_month_partitions(dossiers.iloc[:half], folder / "dossiers", part=0)
        de.write_month_partitions(dossiers.iloc[half:], folder / "dossiers", part=1)
    else:
        dossiers.to_parquet(folder / "dossiers.parquet", index=False)
    procedures.to_csv(folder / "procedures.csv", index=False)
    events("feedback", "received_on", 300, kind=lambda m: rng.choice(["behaviour", "regulation"], m),
           result_published=lambda m: rng.random(m) < 0.7).to_parquet(folder / "feedback.parquet", index=False)
    events("apology", "sent_on", 200, reason=lambda m: np.full(m, "Giải quyết quá hạn")).to_parquet(
        folder / "apologies.parquet", index=False)
    events("opinion", "received_on", 500, medium=lambda m: rng.choice(["paper", "electronic"], m),
           satisfied=lambda m: rng.random(m) < 0.8).to_parquet(folder / "opinions.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def year_single(tmp_path_factory) -> Path:
    return random_year(tmp_path_factory.mktemp("single"))


@pytest.fixture(scope="module")
def year_partitioned(tmp_path_factory) -> Path:
    return random_year(tmp_path_factory.mktemp("partitioned"), partitioned=True)


CASES = [(3, None), (12, None), (1, ["S01", "D02"]), (7, "W01")]


def assert_same(got, want):
    for g, w in zip(got, want):
        pd.testing.assert_frame_equal(g, w, check_dtype=True, check_exact=True)


# ----------------------------------------------------------------------------------------------
# DuckDB (always)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("month, units", CASES)
def test_ibis_on_duckdb_is_identical_to_the_pre_ibis_sql(year_single, month, units):
    got = ar.monthly_aggregates(year_single, YEAR, month, units)
    assert_same(got, reference_aggregates(year_single, YEAR, month, [units] if isinstance(units, str) else units))
    if units is None:  # the random year reaches the awkward cases: blank reasons, a unit without dossiers
        assert "?" in set(got[1]["reason"]) and "C07" in set(got[0]["unit_id"])


@pytest.mark.slow
def test_identical_to_the_pre_ibis_sql_on_the_demo_year():
    demo = config.DEMO_DIR
    if not (demo / "dossiers.parquet").exists():
        pytest.skip(f"no demo year in {demo} (make demo writes it)")
    for month in (1, 6, 12):
        assert_same(ar.monthly_aggregates(demo, YEAR, month), reference_aggregates(demo, YEAR, month))


@pytest.mark.parametrize("month, units", CASES[:2])
def test_partitioned_folder_gives_the_same_tables_as_the_single_file(year_single, year_partitioned, month, units):
    assert_same(ar.monthly_aggregates(year_partitioned, YEAR, month, units),
                ar.monthly_aggregates(year_single, YEAR, month, units))
    assert ar.latest_month(year_partitioned, YEAR) == ar.latest_month(year_single, YEAR) == 12
    assert ar.latest_month(year_partitioned, 2024) == 12 and ar.latest_month(year_partitioned, 2031) == 12


def test_month_partitions_layout(year_partitioned):
    files = sorted(p.relative_to(year_partitioned / "dossiers").as_posix()
                   for p in (year_partitioned / "dossiers").rglob("*.parquet"))
    # 2024-11 .. 2026-01 (420 days from 15 Nov 2024), two chunks each
    assert files[:2] == ["year=2024/month=11/part-0.parquet", "year=2024/month=11/part-1.parquet"]
    assert files[-1] == "year=2026/month=01/part-1.parquet" and len(files) == 2 * 15
    one = pd.read_parquet(year_partitioned / "dossiers" / "year=2025" / "month=02" / "part-0.parquet")
    assert one["received_on"].dt.month.eq(2).all() and one["received_on"].dt.year.eq(2025).all()
    assert ar.AdminFiles.in_folder(year_partitioned).dossiers.name == "dossiers"
    assert ar.AdminFiles.in_folder(year_partitioned).missing() == []
    with pytest.raises(ValueError, match="without received_on"):
        de.write_month_partitions(pd.DataFrame({"received_on": [pd.NaT]}), year_partitioned / "x")


def test_layout_errors_are_named(year_single, year_partitioned, tmp_path):
    both = shutil.copytree(year_partitioned, tmp_path / "both")
    shutil.copy(year_single / "dossiers.parquet", both / "dossiers.parquet")
    with pytest.raises(ValueError, match="both dossiers.parquet and dossiers/"):
        ar.monthly_aggregates(both, YEAR, 3)
    empty = shutil.copytree(year_single, tmp_path / "empty")
    (empty / "dossiers.parquet").unlink()
    (empty / "dossiers").mkdir()
    with pytest.raises(FileNotFoundError, match="folder without Parquet files"):
        ar.monthly_aggregates(empty, YEAR, 3)
    bad = shutil.copytree(year_single, tmp_path / "bad")
    (bad / "dossiers.parquet").unlink()
    de.write_month_partitions(pd.read_parquet(year_single / "dossiers.parquet").drop(columns="due_on"),
                              bad / "dossiers")
    with pytest.raises(ValueError, match=r"dossiers: missing column\(s\) due_on"):
        ar.monthly_aggregates(bad, YEAR, 3)


def test_engine_settings_reach_duckdb_and_bad_ones_are_refused():
    with de.connect("duckdb", memory_limit="2GiB", threads=1) as con:
        assert de.engine_setting(con, "memory_limit") == "2.0 GiB"
        assert de.engine_setting(con, "threads") == "1"
    with pytest.raises(de.EngineError, match="engine must be one of duckdb, spark; got 'polars'"):
        with de.connect("polars"):
            pass
    with pytest.raises(de.EngineError, match="DuckDB refused"):
        with de.connect("duckdb", memory_limit="lots"):
            pass


def test_stage_passes_the_engine_settings(year_single, tmp_path):
    paths = config.RunPaths(year_single, tmp_path / "run")
    for override, message in (("common.dossier_engine=polars", "engine must be one of"),
                              ("common.duckdb_memory_limit=lots", "DuckDB refused")):
        with pytest.raises(StageError, match=message):
            stage.compute(paths, load_settings(overrides=[override]))
    defaults = load_settings().common
    assert defaults["dossier_engine"] == "duckdb" and defaults["duckdb_memory_limit"] == ""
    assert "engine" not in load_settings().section("monthly_report")


def test_former_engine_keys_are_read_with_a_warning(tmp_path):
    config_file = tmp_path / "old.yaml"
    config_file.write_text("monthly_report:\n  engine: spark\n  duckdb_memory_limit: 1GB\n", encoding="utf-8")
    with pytest.warns(FutureWarning) as caught:
        settings = load_settings(config_file)
    assert [str(w.message).split(" (")[0] for w in caught] == [
        f"{config_file}: monthly_report.engine: this setting is now common.dossier_engine",
        f"{config_file}: monthly_report.duckdb_memory_limit: this setting is now common.duckdb_memory_limit"]
    assert ar.engine_options(settings) == {"engine": "spark", "memory_limit": "1GB"}
    with pytest.warns(FutureWarning, match=r"-p monthly_report.duckdb_memory_limit: this setting is now common.duckdb_memory_limit"):
        assert load_settings(overrides=["monthly_report.duckdb_memory_limit=3GB"]).common["duckdb_memory_limit"] == "3GB"


class _Called(Exception):
    """Raised by the stand-in aggregation: carries the keywords it was called with."""


def test_every_stage_that_aggregates_dossiers_uses_the_one_setting(year_single, tmp_path, monkeypatch):
    """Stage 70 (month and latest month) and stage 50's small-area covariates reach the engine the same way."""
    from sipas_lib.stages import index_ranking

    seen = []

    def connect(engine="duckdb", *, memory_limit=None, threads=None, spark_conf=None):
        seen.append((engine, memory_limit))
        raise _Called()

    monkeypatch.setattr(de, "connect", connect)
    # no tables are given to stage 50's step: let it go on as on a year with enough areas to model
    monkeypatch.setattr(index_ranking, "_too_few_areas", lambda *args, **kwargs: None)
    settings = load_settings(overrides=["common.duckdb_memory_limit=1GiB"])
    paths = config.RunPaths(year_single, tmp_path / "run")
    with pytest.raises(_Called):
        stage.compute(paths, settings)                      # 70: the latest month first
    with pytest.raises(_Called):
        stage.compute(paths, settings.replace(monthly_report__month=3))
    with pytest.raises(_Called):
        index_ranking._small_area(paths, settings, None, None, None, None, None, {})  # 50: covariates first
    assert seen == [("duckdb", "1GiB")] * 3


# ----------------------------------------------------------------------------------------------
# Spark in local mode (when java is on PATH)
# ----------------------------------------------------------------------------------------------

#: Small local session: 2 cores, few shuffle partitions (the tables are tiny), no UI or progress bars.
SPARK_TEST_CONF = {"spark.master": "local[2]", "spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
                   "spark.ui.showConsoleProgress": "false", "spark.driver.host": "127.0.0.1",
                   "spark.driver.bindAddress": "127.0.0.1"}


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        pytest.skip("no java on PATH: PySpark needs a Java 17+ runtime (apt-get install default-jre-headless)")
    pytest.importorskip("pyspark", reason="PySpark not installed (pip install 'sipas-workbench[spark]')")
    if os.environ.get("SPARK_REMOTE"):
        pytest.skip("SPARK_REMOTE is set: these tests start their own local session")
    from pyspark.sql import SparkSession

    with de.connect("spark", spark_conf=SPARK_TEST_CONF) as con:
        session = SparkSession.getActiveSession()
        session.sparkContext.setLogLevel("ERROR")
        yield con
    session.stop()


@pytest.mark.spark
def test_spark_and_duckdb_tables_are_identical(spark, year_single, year_partitioned):
    # each call is six Spark jobs (seconds each in local mode): one case per layout
    for folder, month, units in ((year_single, 3, None), (year_partitioned, 12, ["S01", "D02"])):
        assert_same(ar.monthly_aggregates(folder, YEAR, month, units, engine="spark"),
                    ar.monthly_aggregates(folder, YEAR, month, units, engine="duckdb"))
    assert ar.latest_month(year_partitioned, YEAR, engine="spark") == 12
