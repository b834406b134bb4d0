"""Where administrative records are aggregated: DuckDB (embedded, the default) or Spark, through Ibis.

Core layer, no statistics. A year of a whole country's dossiers (hundreds of millions of rows) does
not fit in memory, so nothing here loads records into pandas: a table is *registered* with an engine
(:func:`read_records`) and the caller builds one Ibis expression on it (:mod:`sipas_lib.admin_records`
writes the Phụ lục 3 aggregation that way); the engine executes it where the data lies and only the
aggregated table comes back (:func:`to_frame`). The same expression runs unchanged on

* ``duckdb`` — in process, out of core over Parquet, with a memory limit
  (``SET memory_limit``; DuckDB spills to a temporary folder beyond it);
* ``spark`` — PySpark: local mode on this machine, or a cluster when the environment points at one
  (``SPARK_REMOTE`` for Spark Connect, ``spark.master`` in ``spark-defaults.conf`` /
  ``PYSPARK_SUBMIT_ARGS``); Ibis' PySpark backend takes any ``SparkSession``.

Dossier storage, in a year's data folder, either layout (:func:`dossier_path`):

* ``dossiers.parquet`` — one file (the demo's layout);
* ``dossiers/year=YYYY/month=MM/part-*.parquet`` — Hive layout, one folder per month of
  ``received_on`` (:func:`write_month_partitions`), read directly by the engine; the partition
  columns ``year`` and ``month`` come along but the aggregation never relies on them.

Small reference tables in CSV (``procedures.csv``) are read by DuckDB (the one CSV reader, so both
engines see the same types) and handed to the engine as an in-memory table.

Reference: Ibis, https://ibis-project.org (DuckDB and PySpark backends).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:  # ibis is imported on first use: importing the library stays quick
    import ibis.expr.types as ir
    from ibis.backends import BaseBackend

#: Engines that run the aggregation (setting ``common.dossier_engine``).
ENGINES = ("duckdb", "spark")
#: Name of the partitioned dossier folder inside a year's data folder.
DOSSIER_FOLDER = "dossiers"
#: Name of the single-file dossier table inside a year's data folder.
DOSSIER_FILE = "dossiers.parquet"
#: The column whose month partitions the dossiers (Hive keys ``year``, ``month``).
PARTITION_DATE = "received_on"


class EngineError(ValueError):
    """An engine that cannot be used here (unknown name, package or Java runtime missing, bad limit)."""


# --------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------


def _duckdb(memory_limit: str | None, threads: int | None) -> "BaseBackend":
    import ibis

    # Spilling goes to the system's temporary folder, never to a `.tmp` in the working directory.
    config: dict[str, object] = {"temp_directory": str(Path(tempfile.gettempdir()) / "sipas-duckdb")}
    if memory_limit:
        config["memory_limit"] = str(memory_limit)
    if threads:
        config["threads"] = int(threads)
    try:
        return ibis.duckdb.connect(**config)
    except Exception as exc:  # duckdb's own errors (e.g. "2 GB" unreadable) are not ValueErrors
        raise EngineError(f"DuckDB refused its settings {config}: {exc}") from None


def _spark(spark_conf: Mapping[str, str] | None) -> "BaseBackend":
    try:
        import ibis
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineError("engine 'spark' needs PySpark and Ibis' PySpark backend: "
                          "pip install 'sipas-workbench[spark]' (and a Java runtime, e.g. default-jre-headless) "
                          f"({exc})") from None
    builder = SparkSession.builder.appName("sipas-workbench")
    for key, value in (spark_conf or {}).items():
        builder = builder.config(key, value)
    try:
        # SPARK_REMOTE set -> a Spark Connect session on that server; else classic PySpark, whose
        # master is spark.master from the environment (spark-defaults.conf, PYSPARK_SUBMIT_ARGS) or local[*].
        session = builder.getOrCreate()
    except Exception as exc:  # PySparkRuntimeError (no Java), connection errors, …
        raise EngineError(f"engine 'spark': no Spark session could be started ({type(exc).__name__}: {exc}); "
                          "is a Java runtime on PATH (java -version), or SPARK_REMOTE a reachable server?") from None
    return ibis.pyspark.connect(session)


@contextlib.contextmanager
def connect(engine: str = "duckdb", *, memory_limit: str | None = None, threads: int | None = None,
            spark_conf: Mapping[str, str] | None = None) -> Iterator["BaseBackend"]:
    """An Ibis backend for ``engine``, closed (DuckDB) or left running (Spark) on exit.

    Parameters
    ----------
    engine
        ``"duckdb"`` (embedded, in memory, out of core over Parquet) or ``"spark"`` (PySpark).
    memory_limit
        DuckDB's ``memory_limit`` (``"2GB"``, ``"4GiB"``; ``None`` = DuckDB's default, 80 % of RAM).
        Ignored by Spark, whose memory is the cluster's (``spark.driver.memory``, ``spark.executor.memory``).
    threads
        DuckDB worker threads (``None`` = one per core).
    spark_conf
        Extra Spark settings for a new session (e.g. ``{"spark.master": "local[2]"}``); a session
        that already runs in this process is reused as it is (``SparkSession.builder.getOrCreate``).

    Yields
    ------
    ibis.backends.BaseBackend

    Raises
    ------
    EngineError
        Unknown engine, PySpark or Java missing, or a memory limit DuckDB cannot read.

    Examples
    --------
    >>> with connect("duckdb", memory_limit="1GiB") as con:
    ...     con.raw_sql("SELECT current_setting('memory_limit')").fetchall()
    [('1.0 GiB',)]
    """
    if engine not in ENGINES:
        raise EngineError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    con = _duckdb(memory_limit, threads) if engine == "duckdb" else _spark(spark_conf)
    try:
        yield con
    finally:
        if engine == "duckdb":
            con.disconnect()


def engine_setting(con: "BaseBackend", name: str) -> str:
    """A DuckDB setting as DuckDB reports it (``current_setting``), e.g. ``memory_limit`` -> ``'2.0 GiB'``."""
    if con.name != "duckdb":
        raise EngineError(f"current_setting is a DuckDB function; this backend is {con.name}")
    return str(con.raw_sql("SELECT current_setting(?)", parameters=[name]).fetchall()[0][0])


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def dossier_path(folder: str | os.PathLike) -> Path:
    """The dossier table of a year's folder: ``dossiers/`` (partitioned) when it exists, else ``dossiers.parquet``.

    >>> dossier_path("data/demo").name
    'dossiers.parquet'
    """
    partitioned = Path(folder) / DOSSIER_FOLDER
    return partitioned if partitioned.is_dir() else Path(folder) / DOSSIER_FILE


def check_single_layout(folder: str | os.PathLike) -> None:
    """Refuse a folder holding the dossiers twice (``dossiers.parquet`` and ``dossiers/``): which counts is unclear."""
    folder = Path(folder)
    if (folder / DOSSIER_FOLDER).is_dir() and (folder / DOSSIER_FILE).exists():
        raise ValueError(f"{folder}: both {DOSSIER_FILE} and {DOSSIER_FOLDER}/ (partitioned by month) hold dossiers; "
                         "keep one of them")


@contextlib.contextmanager
def _quiet_ibis() -> Iterator[None]:
    """Silence the engines' own deprecation notices (ibis 12 calls DuckDB's ``fetch_arrow_table()`` and reads
    pandas' ``future.infer_string``; PySpark 4.0 passes pandas 3 a ``copy`` keyword): theirs to fix, nothing a
    user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fetch_arrow_table", DeprecationWarning)
        warnings.filterwarnings("ignore", "The 'future.infer_string' option is deprecated")
        warnings.filterwarnings("ignore", module=r"pyspark\.")
        yield


def parquet_files(folder: Path) -> list[Path]:
    """The Parquet files under ``folder`` (recursively, in path order), without hidden and ``_``-files (``_SUCCESS``)."""
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(("_", ".")))


def _read_csv_small(path: Path) -> pa.Table:
    """A small CSV table read by DuckDB's reader (types detected once, the same for every engine)."""
    import duckdb

    with duckdb.connect() as con:
        return con.sql("SELECT * FROM read_csv_auto($path, header = true, all_varchar = false)",
                       params={"path": str(path)}).to_arrow_table()


def read_records(con: "BaseBackend", path: str | os.PathLike, required: Sequence[str] = (), *,
                 purpose: str = "the monthly SIPAS report") -> "ir.Table":
    """Register a table of records with the engine, without reading its rows.

    Parameters
    ----------
    con
        The backend of :func:`connect`.
    path
        A Parquet file, a Hive-partitioned folder of Parquet files (``key=value/…/*.parquet``) or a
        small CSV file (read by DuckDB, handed over as an in-memory table).
    required
        Columns that must be present.
    purpose
        What the table is needed for (said when the file is missing).

    Returns
    -------
    ibis.Table
        A lazy table: expressions on it run on the engine.

    Raises
    ------
    FileNotFoundError
        The file, or every Parquet file of the folder, is missing.
    ValueError
        A required column is missing (the message names the file, the columns and the contract).
    """
    import ibis

    path = Path(path)
    if path.is_dir():
        if not parquet_files(path):
            raise FileNotFoundError(f"{path}: folder without Parquet files (expected {path.name}/year=YYYY/"
                                    f"month=MM/part-*.parquet, needed for {purpose})")
        # DuckDB globs the Hive folders; Spark discovers them from the root.
        with _quiet_ibis():
            table = (con.read_parquet(str(path / "**" / "*.parquet"), hive_partitioning=True)
                     if con.name == "duckdb" else con.read_parquet(str(path)))
    elif not path.exists():
        raise FileNotFoundError(f"{path}: file not found (needed for {purpose})")
    elif path.suffix.lower() == ".csv":
        table = ibis.memtable(_read_csv_small(path))
    else:
        with _quiet_ibis():
            table = con.read_parquet(str(path))
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}; "
                         f"expected {', '.join(required)} (see docs/CONTRACTS.md)")
    return table


def to_frame(con: "BaseBackend", expr: "ir.Table") -> pd.DataFrame:
    """Execute ``expr`` on the engine and bring back its (aggregated) rows as pandas.

    Integer columns come back as ``int64`` and text as ``str`` on every engine, so the tables of two
    engines compare equal.
    """
    with _quiet_ibis():
        out = con.to_pyarrow(expr).to_pandas()
    for name, dtype in expr.schema().items():
        if dtype.is_integer() and not out[name].isna().any():
            out[name] = out[name].astype("int64")
        elif dtype.is_string():
            out[name] = out[name].astype("str")
    return out


# --------------------------------------------------------------------------------------------
# writing the partitioned layout
# --------------------------------------------------------------------------------------------


def write_month_partitions(records: pd.DataFrame | pa.Table, folder: str | os.PathLike, *, part: int | str = 0,
                           date_column: str = PARTITION_DATE) -> list[Path]:
    """Write records into ``folder/year=YYYY/month=MM/part-<part>.parquet``, one file per month present.

    Call it once per chunk with a new ``part`` to add a chunk (an existing file of the same name is
    replaced); every file holds rows of one month of ``date_column``. Rows without a date are refused.

    Parameters
    ----------
    records
        Dossiers (any columns, with ``date_column`` a date or timestamp).
    folder
        The partitioned table's root, e.g. ``data/raw/2026/dossiers``.
    part
        Name of this chunk's file inside each month folder.
    date_column
        The date that partitions (``received_on``: when the dossier arrived).

    Returns
    -------
    list of Path
        The files written, by month.

    Examples
    --------
    >>> import tempfile
    >>> df = pd.DataFrame({"dossier_id": ["a", "b"], "received_on": pd.to_datetime(["2025-01-31", "2025-02-01"])})
    >>> [p.parent.name for p in write_month_partitions(df, tempfile.mkdtemp())]
    ['month=01', 'month=02']
    """
    table = records if isinstance(records, pa.Table) else pa.Table.from_pandas(records, preserve_index=False)
    if date_column not in table.column_names:
        raise ValueError(f"records have no {date_column!r} column to partition by")
    dates = table.column(date_column)
    if dates.null_count:
        raise ValueError(f"{dates.null_count} record(s) without {date_column}: they belong to no month")
    key = (pc.year(dates).to_numpy(zero_copy_only=False).astype(np.int64) * 100
           + pc.month(dates).to_numpy(zero_copy_only=False).astype(np.int64))
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    bounds = np.append(starts, len(order))
    written = []
    root = Path(folder)
    for k, lo, hi in zip(keys, bounds[:-1], bounds[1:]):  # one iteration per month, not per row
        target = root / f"year={k // 100:04d}" / f"month={k % 100:02d}" / f"part-{part}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        # a chunk of one month (the usual monthly export) is written as it is, without a copy
        pq.write_table(table if len(keys) == 1 else table.take(order[lo:hi]), target)
        written.append(target)
    return written
