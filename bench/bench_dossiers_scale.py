"""Benchmark: a national year of dossiers past memory — the Phụ lục 3 aggregation with DuckDB at 2 GiB.

Issue 16 §2. Writes (once; seeded; not committed) a synthetic national year of administrative records
under ``bench/.data/dossiers_scale/``: 100,000,000 dossiers with the demo's columns over 3,901 units
(580 departments, 3,321 communes; a lognormal spread of sizes, 20–60 procedures each), partitioned by
month of reception (``dossiers/year=2025/month=MM/part-K.parquet``, written chunk by chunk, never
the whole year in memory), with the catalogue of procedures and the feedback, apology and opinion tables.

Then, in a fresh process so that its peak memory is the aggregation's own, it runs
:func:`sipas_lib.admin_records.monthly_aggregates` for December (the month and the year to date: the
whole year) on DuckDB with ``memory_limit = 2GiB``: one warm-up, then the median of 3. Printed, one
``figure  value  target`` line each: the wall time (target < 60 s on the 2-core machine), DuckDB's
own report of its memory limit (``SELECT current_setting('memory_limit')``), the process's peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), and a check that the year-to-date
dossier count equals the rows written.

Run: ``.venv/bin/python bench/bench_dossiers_scale.py [--rows N] [--memory-limit 2GiB] [--repeats 3]``;
``make bench-scale`` calls :func:`main`.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from sipas_lib import admin_records, dossier_engine
from sipas_lib.config import CHANNELS, FIELDS

YEAR = 2025
ROWS = 100_000_000
DEPARTMENTS, COMMUNES = 580, 3_321
#: Rows generated and written at a time (about 0.5 GB of columns in memory).
CHUNK = 4_200_000
DATA_ROOT = Path(__file__).resolve().parent / ".data" / "dossiers_scale"
TARGET_SECONDS = 60.0
#: Issue 16: the year aggregated with DuckDB's memory limit set to 2 GB; the process's peak under the machine's 6 GB.
MEMORY_LIMIT = "2GiB"
TARGET_PEAK_GB = 6.0
REASONS = ["Thiếu nhân lực", "Hồ sơ phức tạp, cần xác minh", "Phối hợp liên thông chậm", "Lỗi phần mềm một cửa"]


# --------------------------------------------------------------------------------------------
# the synthetic national year
# --------------------------------------------------------------------------------------------

def _categories(codes: np.ndarray, values) -> pa.DictionaryArray:
    """Text column as codes into its few values (Parquet stores it dictionary-encoded)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(list(values), pa.string()))


def _catalogue(seed: int) -> dict[str, np.ndarray]:
    """Units (ids, sampling weights) and their procedures (owner, field, offers), seeded."""
    rng = np.random.default_rng([seed, 0])
    unit_ids = np.array([f"S{i:05d}" for i in range(1, DEPARTMENTS + 1)]
                        + [f"C{i:05d}" for i in range(1, COMMUNES + 1)])
    weight = rng.lognormal(0.0, 0.8, len(unit_ids))
    n_proc = rng.integers(20, 61, len(unit_ids))
    owner = np.repeat(np.arange(len(unit_ids)), n_proc)
    return {"unit_ids": unit_ids, "cdf": np.cumsum(weight) / weight.sum(), "n_proc": n_proc,
            "proc_ids": pa.array([f"P{i:07d}" for i in range(len(owner))]),
            "first_proc": np.concatenate([[0], np.cumsum(n_proc)[:-1]]), "proc_owner": owner,
            "proc_field": rng.integers(0, len(FIELDS), len(owner)),
            "offers_online_l3": rng.random(len(owner)) < 0.55, "offers_online_l4": rng.random(len(owner)) < 0.35,
            "offers_postal": rng.random(len(owner)) < 0.60}


def _chunks(rows: int) -> list[tuple[int, int, int, int]]:
    """(month, part, first row, rows) of every chunk: rows spread evenly over the 12 months."""
    per_month = np.diff(np.linspace(0, rows, 13).round().astype(np.int64))
    out, first = [], 0
    for month, n_month in enumerate(per_month, start=1):
        sizes = np.diff(np.linspace(0, n_month, -(-int(n_month) // CHUNK) + 1).round().astype(np.int64))
        for part, size in enumerate(sizes):
            out.append((month, part, first, int(size)))
            first += int(size)
    return out


def _dossier_chunk(cat: dict, seed: int, month: int, part: int, first: int, n: int) -> pa.Table:
    """``n`` dossiers received in ``month`` (seeded by month and part, so any chunk can be rewritten alone)."""
    rng = np.random.default_rng([seed, month, part])
    unit = np.minimum(np.searchsorted(cat["cdf"], rng.random(n)), len(cat["unit_ids"]) - 1)
    pick = np.minimum((rng.pareto(1.2, n) * 3).astype(np.int64), cat["n_proc"][unit] - 1)
    proc = cat["first_proc"][unit] + pick
    r = rng.random(n)
    channel = np.where(cat["offers_online_l4"][proc] & (r < 0.35), 2,
                       np.where(cat["offers_online_l3"][proc] & (r < 0.60), 1,
                                np.where(cat["offers_postal"][proc] & (r < 0.66), 3, 0)))
    start = np.datetime64(f"{YEAR}-{month:02d}-01")
    days = calendar.monthrange(YEAR, month)[1]
    received = start + rng.integers(0, days, n).astype("timedelta64[D]")
    allowed = rng.choice(np.array([3, 5, 7, 10, 15, 20]), n)
    late = rng.random(n) < 0.04
    took = np.where(late, allowed + rng.integers(1, 15, n), np.maximum(allowed - rng.integers(0, 5, n), 1))
    resolved = received + took.astype("timedelta64[D]")
    pending = resolved > np.datetime64(f"{YEAR}-12-31")
    status = np.where(pending, 2, np.where(late, 1, 0))
    reason = np.where(status == 1, rng.integers(0, len(REASONS), n), -1)
    ids = pc.binary_join_element_wise(f"HS{YEAR}", pc.utf8_lpad(pc.cast(pa.array(np.arange(first, first + n) + 1),
                                                                        pa.string()), 9, "0"), "")
    ms = "datetime64[ms]"
    return pa.table({
        "dossier_id": ids,
        "unit_id": _categories(unit, cat["unit_ids"]),
        "level": _categories(np.zeros(n, np.int32), ["unit"]),
        "commune_id": pa.nulls(n),
        "field": _categories(cat["proc_field"][proc], FIELDS),
        "channel": _categories(channel, CHANNELS),
        "procedure_id": pa.DictionaryArray.from_arrays(pa.array(proc.astype(np.int32)), cat["proc_ids"]),
        "received_on": pa.array(received.astype(ms)), "due_on": pa.array((received + allowed.astype("timedelta64[D]")).astype(ms)),
        "resolved_on": pa.array(resolved.astype(ms), mask=pending),
        "status": _categories(status, ["on_time", "overdue", "pending"]),
        "overdue_reason": pa.DictionaryArray.from_arrays(pa.array(reason.astype(np.int32), mask=reason < 0),
                                                         pa.array(REASONS)),
    })


def _events(cat: dict, seed: int, key: int, n: int, id_col: str, id_prefix: str, date_col: str, extra) -> pa.Table:
    """``n`` dated records (feedback, apologies, opinions) over the year, by unit size."""
    rng = np.random.default_rng([seed, 100 + key])
    unit = np.minimum(np.searchsorted(cat["cdf"], rng.random(n)), len(cat["unit_ids"]) - 1)
    day = np.datetime64(f"{YEAR}-01-01") + rng.integers(0, 365, n).astype("timedelta64[D]")
    ids = pc.binary_join_element_wise(id_prefix, pc.cast(pa.array(np.arange(1, n + 1)), pa.string()), "")
    return pa.table({id_col: ids, "unit_id": _categories(unit, cat["unit_ids"]),
                     "level": _categories(np.zeros(n, np.int32), ["unit"]), "commune_id": pa.nulls(n),
                     date_col: pa.array(day.astype("datetime64[ms]")), **extra(rng, n)})


def generate(folder: Path, rows: int, seed: int) -> None:
    """Write the synthetic year to ``folder`` (replacing only its own files); ``DONE.json`` is written last."""
    for name in (dossier_engine.DOSSIER_FOLDER, "DONE.json"):
        shutil.rmtree(folder / name, ignore_errors=True) if name == dossier_engine.DOSSIER_FOLDER \
            else (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    cat = _catalogue(seed)
    t0 = time.perf_counter()
    for month, part, first, n in _chunks(rows):
        dossier_engine.write_month_partitions(_dossier_chunk(cat, seed, month, part, first, n),
                                              folder / dossier_engine.DOSSIER_FOLDER, part=part)
    pa_csv.write_csv(pa.table({
        "procedure_id": cat["proc_ids"], "unit_id": cat["unit_ids"][cat["proc_owner"]],
        "level": np.full(len(cat["proc_owner"]), "unit"), "field": np.array(FIELDS)[cat["proc_field"]],
        **{flag: cat[flag] for flag in ("offers_online_l3", "offers_online_l4", "offers_postal")}}),
        folder / "procedures.csv")
    scale = rows / 100_000_000
    pq.write_table(_events(cat, seed, 1, int(400_000 * scale), "feedback_id", "FE", "received_on", lambda rng, n: {
        "kind": _categories(rng.integers(0, 2, n), ["behaviour", "regulation"]),
        "result_published": pa.array(rng.random(n) < 0.8)}), folder / "feedback.parquet")
    pq.write_table(_events(cat, seed, 2, int(2_400_000 * scale), "apology_id", "XL", "sent_on", lambda rng, n: {
        "reason": _categories(np.zeros(n, np.int32), ["Giải quyết quá hạn"])}), folder / "apologies.parquet")
    pq.write_table(_events(cat, seed, 3, int(2_000_000 * scale), "opinion_id", "OP", "received_on", lambda rng, n: {
        "medium": _categories(rng.integers(0, 2, n), ["paper", "electronic"]),
        "satisfied": pa.array(rng.random(n) < 0.85)}), folder / "opinions.parquet")
    (folder / "DONE.json").write_text(json.dumps({"rows": rows, "seed": seed, "units": len(cat["unit_ids"]),
                                                  "seconds": round(time.perf_counter() - t0, 1)}))


# --------------------------------------------------------------------------------------------
# the measurement (a child process: its peak memory is the aggregation's alone)
# --------------------------------------------------------------------------------------------

def measure(folder: Path, memory_limit: str, repeats: int, threads: int | None) -> dict:
    """Warm-up + ``repeats`` timed runs of the year's aggregation; DuckDB's memory limit; peak RSS."""
    def run():
        return admin_records.monthly_aggregates(folder, YEAR, 12, engine="duckdb", memory_limit=memory_limit,
                                                threads=threads)
    t0 = time.perf_counter()
    counts, _ = run()
    warm = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # every thread of the process: what an idle machine needs
    with dossier_engine.connect("duckdb", memory_limit=memory_limit, threads=threads) as con:
        reported = dossier_engine.engine_setting(con, "memory_limit")
    ytd_total = int(counts.loc[(counts["period"] == "ytd") & (counts["metric"] == "total"), "value"].sum())
    return {"warm_up_s": warm, "times_s": times, "median_s": statistics.median(times),
            "cpu_s": statistics.median(cpu), "threads": int(dossier_engine_threads(memory_limit, threads)),
            "memory_limit": reported,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
            "ytd_total": ytd_total, "units": int(counts["unit_id"].nunique())}


def dossier_engine_threads(memory_limit: str, threads: int | None) -> str:
    """DuckDB's worker threads as it reports them."""
    with dossier_engine.connect("duckdb", memory_limit=memory_limit, threads=threads) as con:
        return dossier_engine.engine_setting(con, "threads")


def _child(*args: str) -> str:
    """Run this file in a fresh Python with ``args``; its stdout."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], check=True,
                          stdout=subprocess.PIPE, text=True)
    return done.stdout


def main(argv: list[str] | None = None, *, show: bool = True) -> list[tuple[str, str, str, str]]:
    """Generate the year if missing, measure, print (``show``) and return the lines
    ``(figure, value, target, PASS | MISS | -)`` (``bench/bench_scale.py`` prints them in its closing table)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="dossiers in the year (default 100,000,000)")
    parser.add_argument("--seed", type=int, default=YEAR)
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT, help=f"DuckDB's memory_limit (default {MEMORY_LIMIT})")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: one per core)")
    parser.add_argument("--data", type=Path, default=None, help=f"folder of the year (default {DATA_ROOT}/<rows>)")
    parser.add_argument("--mode", choices=["all", "generate", "measure"], default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = args.data or DATA_ROOT / f"rows{args.rows}_seed{args.seed}"
    if args.mode == "generate":
        generate(folder, args.rows, args.seed)
        return []
    if args.mode == "measure":
        print(json.dumps(measure(folder, args.memory_limit, args.repeats, args.threads)))
        return []

    common = ["--rows", str(args.rows), "--seed", str(args.seed), "--data", str(folder)]
    done = folder / "DONE.json"
    if not done.exists() or json.loads(done.read_text())["rows"] != args.rows:
        print(f"writing {args.rows:,} dossiers to {folder} (once; seeded) ...", flush=True)
        _child(*common, "--mode", "generate")
    made = json.loads(done.read_text())
    size_gib = sum(p.stat().st_size for p in (folder / "dossiers").rglob("*.parquet")) / 2**30
    threads = ["--threads", str(args.threads)] if args.threads else []
    m = json.loads(_child(*common, "--mode", "measure", "--memory-limit", args.memory_limit,
                          "--repeats", str(args.repeats), *threads).strip().splitlines()[-1])
    load = os.getloadavg()[0]
    wanted_limit = _reported_limit(args.memory_limit)
    lines = [
        ("dossiers: rows on disk (Parquet by month)", f"{made['rows']:,} ({size_gib:.1f} GiB, {made['units']:,} units)",
         f"{ROWS:,}", "PASS" if made["rows"] >= ROWS else "MISS"),
        ("dossiers: write time (once, not timed below)", f"{made['seconds']:.0f} s", "-", "-"),
        (f"dossiers: Phụ lục 3 of a year, DuckDB (median of {args.repeats} after 1 warm-up)",
         f"{m['median_s']:.1f} s (runs {', '.join(f'{t:.1f}' for t in m['times_s'])}; warm-up {m['warm_up_s']:.1f})",
         f"< {TARGET_SECONDS:.0f} s", "PASS" if m["median_s"] < TARGET_SECONDS else "MISS"),
        ("dossiers: CPU time of one run, all threads (median)",
         f"{m['cpu_s']:.1f} s on {m['threads']} threads (wall on an idle machine ~ CPU / threads)", "-", "-"),
        ("dossiers: DuckDB memory_limit (SELECT current_setting('memory_limit'))", m["memory_limit"],
         wanted_limit, "PASS" if m["memory_limit"] == wanted_limit else "MISS"),
        ("dossiers: peak RSS of the aggregating process (getrusage, whole process)", f"{m['peak_rss_gib']:.2f} GiB",
         f"< {TARGET_PEAK_GB:.0f} GB", "PASS" if m["peak_rss_gib"] * 2**30 / 1e9 < TARGET_PEAK_GB else "MISS"),
        ("dossiers: year-to-date dossiers counted = rows", f"{m['ytd_total']:,} ({m['units']:,} units)",
         f"{made['rows']:,}", "PASS" if m["ytd_total"] == made["rows"] else "MISS"),
        ("dossiers: load average while measured (1 min)", f"{load:.1f}", "-", "-"),
    ]
    if show:
        width = max(len(f) for f, *_ in lines)
        print(f"{'figure':<{width}}  value  target  result")
        for figure, value, target, result in lines:
            print(f"{figure:<{width}}  {value}  {target}  {result}")
    return lines


def _reported_limit(memory_limit: str) -> str:
    """DuckDB's own spelling of ``memory_limit`` (``2GiB`` -> ``2.0 GiB``), asked of DuckDB."""
    with dossier_engine.connect("duckdb", memory_limit=memory_limit) as con:
        return dossier_engine.engine_setting(con, "memory_limit")


if __name__ == "__main__":
    main()
