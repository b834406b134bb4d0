"""Benchmark: the Phụ lục 3 monthly aggregation over a national-scale year of dossiers.

Writes a synthetic year of administrative records (default 10,000,000 dossiers over 50 units and
their communes, plus procedures/feedback/apologies/opinions) to a temporary folder, then times
``sipas_lib.admin_reports.monthly_aggregates`` (DuckDB over Parquet, every unit, month + year to
date). Reference measured in the same run: loading the same file into pandas without computing
anything, the floor of any pandas route.

Target (issue 7): 10,000,000 dossiers aggregated in under 10 s on a 2-core machine.

Run: ``.venv/bin/python bench/bench_monthly.py [n_dossiers] [repeats]``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sipas_lib.admin_reports import CHANNELS, FIELDS, monthly_aggregates

YEAR = 2025
MONTH = 6


def _dict_array(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values))


def write_synthetic_year(folder: Path, n: int, seed: int = 7) -> None:
    """A seeded synthetic year of records with the contract's columns (docs/CONTRACTS.md)."""
    rng = np.random.default_rng(seed)
    units = [f"S{i:02d}" for i in range(1, 21)] + [f"D{i:02d}" for i in range(1, 31)]
    unit = rng.integers(0, len(units), n)
    is_district = unit >= 20
    commune_level = is_district & (rng.random(n) < 0.4)
    commune_no = rng.integers(1, 16, n)
    n_proc = 150
    proc = rng.integers(0, n_proc, n)
    proc_ids = [f"P{u}{'C' if lvl else 'U'}{p:03d}" for u in range(len(units)) for lvl in (0, 1)
                for p in range(n_proc)]
    proc_code = unit * 2 * n_proc + commune_level * n_proc + proc
    day0 = np.datetime64(f"{YEAR}-01-01")
    received = day0 + rng.integers(0, 365, n).astype("timedelta64[D]")
    due = received + rng.integers(1, 21, n).astype("timedelta64[D]")
    delay = rng.integers(-5, 3, n)
    resolved = due + delay.astype("timedelta64[D]")
    pending = rng.random(n) < 0.02
    late = (delay > 0) & ~pending
    status = np.where(pending, 2, np.where(late, 1, 0))
    reasons = ["Thiếu nhân lực", "Hồ sơ phức tạp, cần xác minh", "Phối hợp liên thông chậm",
               "Lỗi phần mềm một cửa"]
    reason_code = rng.integers(0, len(reasons), n)
    commune_ids = [f"{u}C{c:02d}" for u in units for c in range(1, 16)]
    commune_code = unit * 15 + commune_no - 1
    table = pa.table({
        "dossier_id": pa.array(np.char.add("HS", np.arange(n).astype(str))),
        "unit_id": _dict_array(unit, units),
        "level": _dict_array(commune_level.astype(int), ["unit", "commune"]),
        "commune_id": pa.DictionaryArray.from_arrays(
            pa.array(commune_code.astype(np.int32), mask=~commune_level), pa.array(commune_ids)),
        "field": _dict_array(rng.integers(0, len(FIELDS), n), list(FIELDS)),
        "channel": _dict_array(rng.choice(4, n, p=[0.7, 0.1, 0.15, 0.05]), list(CHANNELS)),
        "procedure_id": _dict_array(proc_code, proc_ids),
        "received_on": pa.array(received.astype("datetime64[D]")),
        "due_on": pa.array(due.astype("datetime64[D]")),
        "resolved_on": pa.array(resolved.astype("datetime64[D]"), mask=pending),
        "status": _dict_array(status, ["on_time", "overdue", "pending"]),
        "overdue_reason": pa.DictionaryArray.from_arrays(pa.array(reason_code.astype(np.int32), mask=~late),
                                                         pa.array(reasons)),
    })
    pq.write_table(table, folder / "dossiers.parquet", row_group_size=1_000_000)
    procs = pd.DataFrame({
        "procedure_id": proc_ids,
        "unit_id": [units[i // (2 * n_proc)] for i in range(len(proc_ids))],
        "level": ["commune" if (i // n_proc) % 2 else "unit" for i in range(len(proc_ids))],
        "commune_id": "",
        "field": [FIELDS[i % 5] for i in range(len(proc_ids))],
        "offers_online_l3": rng.random(len(proc_ids)) < 0.6,
        "offers_online_l4": rng.random(len(proc_ids)) < 0.4,
        "offers_postal": rng.random(len(proc_ids)) < 0.5,
    })
    procs.to_csv(folder / "procedures.csv", index=False)
    m = max(n // 100, 10)
    small = pd.DataFrame({"unit_id": rng.choice(units, m), "level": "unit", "commune_id": None,
                          "received_on": day0 + rng.integers(0, 365, m).astype("timedelta64[D]")})
    small.assign(feedback_id=np.arange(m).astype(str), kind=rng.choice(["behaviour", "regulation"], m),
                 result_published=rng.random(m) < 0.7).to_parquet(folder / "feedback.parquet")
    small.rename(columns={"received_on": "sent_on"}).assign(
        apology_id=np.arange(m).astype(str), reason="Giải quyết quá hạn").to_parquet(folder / "apologies.parquet")
    small.assign(opinion_id=np.arange(m).astype(str), medium=rng.choice(["paper", "electronic"], m),
                 satisfied=rng.random(m) < 0.9).to_parquet(folder / "opinions.parquet")


def pandas_load(path: Path) -> float:
    """Reference: only loading the dossier file into pandas (what any pandas route pays first)."""
    t0 = time.perf_counter()
    pq.read_table(path, columns=["unit_id", "level", "channel", "field", "procedure_id", "received_on",
                                 "due_on", "resolved_on", "overdue_reason"]).to_pandas(date_as_object=False)
    return time.perf_counter() - t0


def time_it(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(n: int = 10_000_000, repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_monthly_") as tmp:
        big = Path(tmp) / "big"
        big.mkdir()
        t0 = time.perf_counter()
        write_synthetic_year(big, n)
        size_mb = (big / "dossiers.parquet").stat().st_size / 1e6
        print(f"synthetic data: {n:,} dossiers ({size_mb:.0f} MB Parquet) written in "
              f"{time.perf_counter() - t0:.1f} s")
        t_load = statistics.median(pandas_load(big / "dossiers.parquet") for _ in range(repeats))
        t_db = time_it(lambda: monthly_aggregates(big, YEAR, MONTH), repeats)
        t_unit = time_it(lambda: monthly_aggregates(big, YEAR, MONTH, "D05"), repeats)
        print(f"reference: load {n:,} dossiers into pandas (no computing) : median {t_load:6.2f} s")
        print(f"DuckDB full Phụ lục 3 aggregation, all units, {n:,} rows : median {t_db:6.2f} s "
              f"(ratio to the pandas load {t_db / t_load:.2f}; target < 10 s: {'OK' if t_db < 10 else 'MISSED'})")
        print(f"DuckDB one unit (D05), {n:,} rows                         : median {t_unit:6.2f} s "
              f"(ratio {t_unit / t_load:.2f})")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
