"""Benchmark: peak memory and wall time of questionnaire intake on a large responses CSV.

Run: ``.venv/bin/python bench/bench_intake.py [--mb 75] [--repeat 1] [--seed 2025]``

A small demo year is simulated (seeded) in a temporary folder; its ``responses_districts.csv``
is then repeated until the file reaches ``--mb`` megabytes (the issue's 209 MB / 1.05 million
rows file is the demo's 754 KB file about 278 times). Form ids have 6 digits (unit code,
serial, check digit), so no file of a million rows can hold a million distinct ids: the
repeated copies are exact duplicates, which intake quarantines (``duplicate_exact``) — the
heaviest path, since every copy gets a quarantine row and a reason.

Each repetition runs :func:`sipas_lib.intake.intake_year` in a fresh subprocess and reads the
subprocess's peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The file is
built in a subprocess of its own and this process imports nothing heavy, because Linux carries
``ru_maxrss`` over from the parent through fork and exec. Printed: the
medians of wall time, of the whole process's peak, and of the peak above the process's memory
after imports (what intake itself adds), each also as a multiple of the file size. Target
(issue 11, item 6): peak under 5x the file size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs in the subprocess: imports first (their memory is the baseline), then intake alone.
CHILD = r"""
import json, resource, sys, time
import inspect
from sipas_lib import intake
kib = 1024 if sys.platform != "darwin" else 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib
kwargs = {"year": int(sys.argv[2])} if "year" in inspect.signature(intake.intake_year).parameters else {}
t0 = time.perf_counter()
res = intake.intake_year(sys.argv[1], **kwargs)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib
print(json.dumps({"seconds": seconds, "peak": peak, "before": before, "accepted": len(res.accepted),
                  "quarantined": len(res.quarantine), "received": int(res.summary["received"].sum())}))
"""


def build_year(folder: Path, megabytes: float, seed: int, year: int) -> tuple[Path, int]:
    """Simulate a small year in ``folder`` and blow its district responses up to ``megabytes``."""
    from sipas_lib.simulate import write_demo_year

    write_demo_year(folder, year=year, seed=seed, scale=0.3)
    path = folder / "responses_districts.csv"
    header, *body = path.read_text(encoding="utf-8").splitlines(keepends=True)
    block = "".join(body)
    copies = max(1, round(megabytes * 1e6 / len(block.encode("utf-8"))))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header)
        for _ in range(copies):
            fh.write(block)
    (folder / "sample.csv").unlink()  # the sample check is not what is measured here
    return path, copies * len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=75.0, help="size of the responses CSV in MB")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--year", type=int, default=2024,
                        help="survey year (before July 2025 the demo has districts: responses_districts.csv)")
    parser.add_argument("--build", default="", help=argparse.SUPPRESS)  # internal: only write the year
    args = parser.parse_args()

    if args.build:
        _, rows = build_year(Path(args.build), args.mb, args.seed, args.year)
        print(rows)
        return
    folder = Path(tempfile.mkdtemp(prefix="bench_intake_"))
    try:
        built = subprocess.run([sys.executable, __file__, "--build", str(folder), "--mb", str(args.mb),
                                "--seed", str(args.seed), "--year", str(args.year)], cwd=ROOT,
                               capture_output=True, text=True, check=True)
        rows = int(built.stdout.split()[-1])
        path = folder / "responses_districts.csv"
        size = path.stat().st_size
        print(f"responses file: {size / 1e6:.1f} MB, {rows:,} rows")
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(args.year)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak"] for r in runs)
        added = statistics.median(r["peak"] - r["before"] for r in runs)
        last = runs[-1]
        print(f"received {last['received']:,} = accepted {last['accepted']:,} + quarantined {last['quarantined']:,}")
        print(f"wall time (median of {len(runs)}): {seconds:.1f} s")
        print(f"peak RSS of the process: {peak / 1e6:.0f} MB = {peak / size:.1f}x the file")
        print(f"peak RSS added by intake (above imports): {added / 1e6:.0f} MB = {added / size:.1f}x the file")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
