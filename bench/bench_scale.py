"""Benchmark: the national-scale year end to end — ``make bench-scale`` (issue 16 §1).

1. Writes (once per seed and simulator version; not committed) the national-scale year of
   :mod:`sipas_lib.simulate_scale` under ``bench/.data/scale-<seed>/``: 34 provinces, 578
   departments and all 3,321 communes with their official codes, ~3.7 million frame rows,
   ~510,000 issued and ~400,000 returned forms, ~4.8 million dossiers. In a child process, whose
   wall time and peak memory are printed.
2. Runs the whole pipeline on it through the normal runner, ``sipas report --data-dir … --out
   bench/.data/runs --run scale-<seed>`` (intake, weighting, reliability, indices and rank
   confidence sets for every unit, the annual report, a scorecard for every unit, the index page,
   the downloads), with the sampling plan of the scale year (``-p sampling_design.total_…``) and
   the post office's mailing list written under ``bench/.data/private/`` (``SIPAS_RAW_DIR``).
3. Prints, one ``figure  value  target`` line each: the whole run's wall time (target < 15 min),
   its peak memory (target < 6 GB: the largest single process, from ``os.wait4``'s rusage of the
   run's process tree, and the sum over the tree sampled every 0.5 s), each stage's wall time
   (``run.json``) and the tree's peak memory while it ran, the scorecards (count, wall time of the
   fan-out from the first to the last page written, its average per scorecard: target ≤ 0.2 s),
   the CPU seconds of the tree (what a busy machine does not change) and the load average.
4. Calls ``bench/bench_dossiers_scale.py``'s ``main()`` (100 million dossiers, DuckDB at 2 GiB)
   when that file exists, and prints its lines.

Run: ``.venv/bin/python bench/bench_scale.py [--seed 2025] [--provinces N] [--set SECTION.NAME=VALUE]
[--no-fanout] [--skip-dossiers]``. ``--provinces 2`` is a quick check of the machinery (~20,000
forms). This process imports nothing heavy, so that the peak memory it reports is its children's.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT / "bench" / ".data"
YEAR = 2025
#: Issue 16's targets on the 2-core machine.
TARGET_RUN_SECONDS = 15 * 60
TARGET_PEAK_GB = 6.0
TARGET_SCORECARD_SECONDS = 0.2
#: Sources whose content decides whether the written year is still the one the simulator gives.
SIMULATOR_FILES = ("sipas_lib/simulate.py", "sipas_lib/simulate_scale.py", "sipas_lib/sampling.py",
                   "sipas_lib/official_units.py")
SAMPLE_SECONDS = 0.5
GB = 1e9


def simulator_digest() -> str:
    """Digest of the simulator's sources: a changed simulator writes the year again."""
    h = hashlib.sha256()
    for name in SIMULATOR_FILES:
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()[:16]


def _wait(process: subprocess.Popen) -> tuple[int, float, float]:
    """Wait for ``process``; its exit code, peak RSS of its largest process (bytes) and CPU seconds.

    ``os.wait4`` gives the rusage of that child and of every descendant it waited for, so the
    peak is the largest single process of the tree (kernels, workers), measured by the kernel.
    """
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


class TreeMemory(threading.Thread):
    """Samples the resident memory summed over a process and all its descendants (psutil)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []  # (time.time(), bytes)
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.samples.append((time.time(), total))
            self.stop.wait(SAMPLE_SECONDS)

    def peak(self, start: float | None = None, end: float | None = None) -> float:
        """Largest sampled sum between ``start`` and ``end`` (``time.time()``), in bytes."""
        inside = [b for t, b in self.samples if (start is None or t >= start - SAMPLE_SECONDS)
                  and (end is None or t <= end + SAMPLE_SECONDS)]
        return max(inside, default=float("nan"))


def generate(folder: Path, seed: int, provinces: int | None) -> dict:
    """Write the scale year into ``folder`` (child process) unless it is there for this seed and simulator."""
    done = folder / "DONE.json"
    wanted = {"seed": seed, "year": YEAR, "provinces": provinces, "simulator": simulator_digest()}
    if done.exists():
        made = json.loads(done.read_text())
        if {k: made.get(k) for k in wanted} == wanted:
            return {**made, "reused": True}
    print(f"writing the national-scale year to {folder} (seed {seed}) ...", flush=True)
    cmd = [sys.executable, "-m", "sipas_lib.simulate_scale", "--out", str(folder), "--seed", str(seed),
           "--year", str(YEAR)] + (["--provinces", str(provinces)] if provinces else [])
    t0 = time.time()
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    code, peak, cpu = _wait(process)
    if code:
        raise SystemExit(f"generating the scale year failed (exit {code}): {' '.join(cmd)}")
    made = {**wanted, "seconds": time.time() - t0, "peak_bytes": peak, "cpu_seconds": cpu}
    done.write_text(json.dumps(made, indent=1))
    return {**made, "reused": False}


def _read_csv(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def year_facts(folder: Path) -> dict[str, int]:
    """Units, issued and returned forms of the written year (counted with the csv module, not pandas)."""
    types: dict[str, int] = {}
    for row in _read_csv(folder / "units.csv"):
        types[row["unit_type"]] = types.get(row["unit_type"], 0) + 1
    return {"provinces": types.get("province", 0), "departments": types.get("department", 0),
            "communes": types.get("commune", 0) + types.get("ward", 0),
            "issued": sum(1 for _ in _read_csv(folder / "sample.csv")),
            "returned_local": sum(1 for _ in _read_csv(folder / "responses_communes.csv"))}


def run_report(data: Path, out: Path, run: str, params: list[str], fanout: bool, workers: int | None,
               stages: str | None = None) -> dict:
    """Run ``sipas report`` on ``data`` as a child process; its lines with times, wall, peak memory, CPU."""
    sipas = Path(sys.executable).with_name("sipas")
    cmd = [str(sipas), "report", "--data-dir", str(data), "--out", str(out), "--run", run, "--year", str(YEAR),
           *(a for p in params for a in ("-p", p)), *([] if fanout else ["--no-fanout"]),
           *(["--workers", str(workers)] if workers else []), *(["--stages", stages] if stages else [])]
    env = {**os.environ, "SIPAS_RAW_DIR": str(DATA_ROOT / "private"), "COLUMNS": "200"}
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    sampler = TreeMemory(process.pid)
    sampler.start()
    lines: list[tuple[float, str]] = []
    for line in process.stdout:
        lines.append((time.time(), line.rstrip("\n")))
        print("  | " + line.rstrip("\n"), flush=True)
    code, peak, cpu = _wait(process)
    sampler.stop.set()
    sampler.join()
    return {"code": code, "seconds": time.time() - t0, "start": t0, "peak_bytes": peak, "cpu_seconds": cpu,
            "lines": lines, "sampler": sampler}


_DONE = re.compile(r"^[✓✗]\s+(?P<label>\S+)(?: failed)?\s+(?P<seconds>[\d.]+) s")


def stage_rows(run_dir: Path, report: dict) -> list[tuple[str, str, str]]:
    """One line per stage notebook (and last year's steps): wall time and the tree's peak memory while it ran."""
    summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    finished = {}
    for t, line in report["lines"]:
        m = _DONE.match(line.strip())
        if m:
            finished[m["label"]] = (t - float(m["seconds"]), t)
    rows = []
    for nb in summary["notebooks"]:
        if nb["kind"] == "fanout":
            continue
        label = f"{nb['name']}/{nb['unit_id']}" if nb.get("unit_id") else nb["name"]
        seconds = nb["seconds"] + nb.get("export_seconds", 0.0)
        window = finished.get(label)
        peak = report["sampler"].peak(*window) / GB if window else float("nan")
        memory = f", peak {peak:.2f} GB" if peak == peak else ""
        rows.append((f"stage {label}", f"{nb['status']}: {seconds:.1f} s{memory}", "-"))
    return rows


def scorecard_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    """Scorecards: how many, the fan-out's wall time (first to last page written) and its average."""
    summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    cards = [nb for nb in summary["notebooks"] if nb["kind"] == "fanout"]
    ok = [nb for nb in cards if nb["status"] == "ok"]
    pages = [Path(nb["html"]) for nb in ok if nb.get("html")]
    stamps = sorted(p.stat().st_mtime for p in pages if p.exists())
    if not cards:
        return [("scorecards", "none (fan-out off or no unit ranked)", f"≤ {TARGET_SCORECARD_SECONDS} s each")]
    rows = [("scorecards written (ok / all)", f"{len(ok):,} / {len(cards):,}", "one per ranked unit")]
    if len(stamps) >= 2:
        # n pages over the span first..last: the span holds n - 1 steady-state intervals
        each = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        wall = stamps[-1] - stamps[0] + each
        ok_mark = "ok" if each <= TARGET_SCORECARD_SECONDS else "MISSED"
        rows.append(("scorecards: fan-out wall (first to last page)", f"{wall:.0f} s", "-"))
        rows.append(("scorecards: average per scorecard (wall / n)", f"{each:.3f} s ({ok_mark})",
                     f"≤ {TARGET_SCORECARD_SECONDS} s"))
    per_card = sum(nb["seconds"] + nb.get("export_seconds", 0.0) for nb in ok) / max(len(ok), 1)
    rows.append(("scorecards: average time recorded per scorecard (run.json)", f"{per_card:.3f} s", "-"))
    return rows


def dossier_rows() -> list[tuple[str, str, str]]:
    """``bench/bench_dossiers_scale.py``'s lines (100 million dossiers), when that benchmark exists."""
    path = ROOT / "bench" / "bench_dossiers_scale.py"
    if not path.exists():
        return [("dossiers (bench/bench_dossiers_scale.py)", "not present", "< 60 s")]
    spec = importlib.util.spec_from_file_location("bench_dossiers_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [tuple(map(str, line)) for line in (module.main([]) or [])]


def print_lines(lines: list[tuple[str, str, str]]) -> None:
    width = max(len(f) for f, _, _ in lines)
    print(f"\n{'figure':<{width}}  value  target")
    for figure, value, target in lines:
        print(f"{figure:<{width}}  {value}  {target}")


def main(argv: list[str] | None = None) -> list[tuple[str, str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=YEAR)
    parser.add_argument("--provinces", type=int, default=None, help="only the first few provinces (quick check)")
    parser.add_argument("--set", dest="params", action="append", default=[], metavar="SECTION.NAME=VALUE",
                        help="one more run setting, as sipas report -p (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="sipas report --workers (default: CPU cores)")
    parser.add_argument("--no-fanout", dest="fanout", action="store_false", help="no per-unit scorecards")
    parser.add_argument("--stages", default=None,
                        help="sipas report --stages, e.g. 30,40,50,60 (re-run those on the run folder's earlier results)")
    parser.add_argument("--skip-dossiers", action="store_true", help="do not run bench_dossiers_scale.py")
    args = parser.parse_args(argv)

    tag = f"scale-{args.seed}" + (f"-p{args.provinces}" if args.provinces else "")
    folder, out = DATA_ROOT / tag, DATA_ROOT / "runs"
    load_before = os.getloadavg()
    made = generate(folder, args.seed, args.provinces)
    facts = year_facts(folder)
    # the sampling stage plans the scale year's questionnaires, not Hà Nội's (settings.yaml defaults)
    plan = _planned_forms(folder)
    params = [f"sampling_design.total_departments={plan['department']}",
              f"sampling_design.total_districts={plan['local']}", *args.params]
    report = run_report(folder, out, tag, params, args.fanout, args.workers, args.stages)
    run_dir = out / tag
    load_after = os.getloadavg()

    tree_peak = report["sampler"].peak() / GB
    single_peak = report["peak_bytes"] / GB
    status = "ok" if report["code"] == 0 else f"FAILED (exit {report['code']})"
    lines = [
        ("year: provinces / departments / communes", f"{facts['provinces']} / {facts['departments']} / "
         f"{facts['communes']:,}", "34 / ~580 / 3,321"),
        ("year: forms issued / returned (commune file)", f"{facts['issued']:,} / {facts['returned_local']:,} "
         "(+ departments' workbook)", "~400,000 returned"),
        ("year: written in" + (" (reused: same seed and simulator)" if made["reused"] else ""),
         f"{made['seconds']:.0f} s, peak {made['peak_bytes'] / GB:.2f} GB, CPU {made['cpu_seconds']:.0f} s", "-"),
        ("run: sipas report", status, "ok"),
        ("run: whole run wall time", f"{report['seconds']:.0f} s ({report['seconds'] / 60:.1f} min)"
         f" ({'ok' if report['seconds'] < TARGET_RUN_SECONDS else 'MISSED'})", f"< {TARGET_RUN_SECONDS // 60} min"),
        ("run: peak memory, largest process (wait4 rusage)",
         f"{single_peak:.2f} GB ({'ok' if single_peak < TARGET_PEAK_GB else 'MISSED'})", f"< {TARGET_PEAK_GB:.0f} GB"),
        ("run: peak memory, sum over the process tree (sampled)",
         f"{tree_peak:.2f} GB ({'ok' if tree_peak < TARGET_PEAK_GB else 'MISSED'})", f"< {TARGET_PEAK_GB:.0f} GB"),
        ("run: CPU seconds of the process tree", f"{report['cpu_seconds']:.0f} s", "-"),
    ]
    if (run_dir / "run.json").exists():
        lines += stage_rows(run_dir, report) + scorecard_rows(run_dir)
    lines += [("machine: cores / load average before -> after (1 min)",
               f"{os.cpu_count()} / {load_before[0]:.1f} -> {load_after[0]:.1f}", "-"),
              ("run folder", str(run_dir), "-")]
    print_lines(lines)
    if not args.skip_dossiers:
        lines += dossier_rows()
    return lines


def _planned_forms(folder: Path) -> dict[str, int]:
    """Issued forms per survey tier of the written sample: departments, and the local units (communes, wards)."""
    types = {row["unit_id"]: row["unit_type"] for row in _read_csv(folder / "units.csv")}
    plan = {"department": 0, "local": 0}
    for row in _read_csv(folder / "sample.csv"):
        plan["department" if types.get(row["unit_id"]) == "department" else "local"] += 1
    return plan


if __name__ == "__main__":
    main()
