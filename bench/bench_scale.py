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
3. Measures the whole run's wall time (target < 15 min) and the peak memory of its whole process
   tree (target < 6 GB): the runner and every kernel, worker and exporter it starts are its
   descendants, so :class:`TreeMemory` sums the resident memory of the ``sipas`` process and all its
   descendants every 0.5 s (``psutil``; shared pages counted in each process, so on the high side),
   and beside it a high estimate that a spike between two samples does not escape: the sum, over the
   processes alive at a sample, of each one's own peak so far (``VmHWM``). PASS needs both under the
   target. ``os.wait4``'s rusage gives the largest single process of the tree (kernels included),
   shown for reference.
4. Calls ``bench/bench_dossiers_scale.py``'s ``main()`` (100 million dossiers, DuckDB at 2 GiB:
   target < 60 s, with DuckDB's reported memory limit and the aggregating process's peak memory).
5. Prints one table at the end: each figure, its value, its target and PASS or MISS (``-`` for a
   figure without a target: each stage's wall time and the tree's peak while it ran, the CPU seconds
   of the tree, what a busy machine does not change, and the load average).

Run: ``.venv/bin/python bench/bench_scale.py [--seed 2025] [--provinces N] [--set SECTION.NAME=VALUE]
[--no-fanout] [--skip-dossiers] [--data-root DIR]``. ``--provinces 2`` is a quick check of the machinery
(~20,000 forms); ``--data-root`` writes the year and the run elsewhere than ``bench/.data``. This process
imports nothing heavy, so that the peak memory it reports is its children's.
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
SIMULATOR_FILES = ("sipas_lib/simulate.py", "sipas_lib/simulate_scale.py", "sipas_lib/simulate_integrity.py",
                   "sipas_lib/sampling.py", "sipas_lib/official_units.py")
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


def _own_peak(pid: int) -> int:
    """A process's own peak resident memory so far (``VmHWM`` of ``/proc/<pid>/status``), bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the resident memory summed over a process and all its descendants (psutil).

    Each sample holds the sum of the processes' current RSS and the sum of their own peaks so far
    (``VmHWM``, a high estimate: each process's peak counted as if all peaked together); a process born
    and gone between two samples is seen by neither."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, float, float, int]] = []  # (time.time(), RSS sum, VmHWM sum, processes)
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            total = own_peaks = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                    own_peaks += _own_peak(p.pid)
                except psutil.Error:
                    pass
            self.samples.append((time.time(), total, own_peaks, len(procs)))
            self.stop.wait(SAMPLE_SECONDS)

    def _inside(self, start: float | None, end: float | None) -> list[tuple[float, float, float, int]]:
        return [x for x in self.samples if (start is None or x[0] >= start - SAMPLE_SECONDS)
                and (end is None or x[0] <= end + SAMPLE_SECONDS)]

    def peak(self, start: float | None = None, end: float | None = None) -> float:
        """Largest sampled RSS sum between ``start`` and ``end`` (``time.time()``), in bytes."""
        return max((x[1] for x in self._inside(start, end)), default=float("nan"))

    def peak_bound(self) -> float:
        """Largest sampled sum of the live processes' own peaks (``VmHWM``), bytes: the high estimate."""
        return max((x[2] for x in self.samples), default=float("nan"))

    def most_processes(self) -> int:
        """Most processes of the tree seen at once (the runner, its kernels and workers)."""
        return max((x[3] for x in self.samples), default=0)


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
               stages: str | None = None, data_root: Path = DATA_ROOT) -> dict:
    """Run ``sipas report`` on ``data`` as a child process; its lines with times, wall, peak memory, CPU."""
    sipas = Path(sys.executable).with_name("sipas")
    cmd = [str(sipas), "report", "--data-dir", str(data), "--out", str(out), "--run", run, "--year", str(YEAR),
           *(a for p in params for a in ("-p", p)), *([] if fanout else ["--no-fanout"]),
           *(["--workers", str(workers)] if workers else []), *(["--stages", stages] if stages else [])]
    env = {**os.environ, "SIPAS_RAW_DIR": str(data_root / "private"), "COLUMNS": "200"}
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

#: One line of the closing table: figure, value, target, verdict (PASS | MISS | - when the figure has no target).
Line = tuple[str, str, str, str]


def verdict(ok: bool | None) -> str:
    """``PASS``/``MISS`` for a figure with a target, ``-`` for one without."""
    return "-" if ok is None else ("PASS" if ok else "MISS")


def stage_rows(run_dir: Path, report: dict) -> list[Line]:
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
        memory = f", tree peak {peak:.2f} GB" if peak == peak else ""
        rows.append((f"stage {label}", f"{nb['status']}: {seconds:.1f} s{memory}", "-", verdict(None)))
    return rows


def scorecard_rows(run_dir: Path, fanout: bool = True) -> list[Line]:
    """Scorecards: how many, the fan-out's wall time (first to last page written) and its average."""
    summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    cards = [nb for nb in summary["notebooks"] if nb["kind"] == "fanout" and nb["status"] != "skipped"]
    ok = [nb for nb in cards if nb["status"] == "ok"]
    pages = [Path(nb["html"]) for nb in ok if nb.get("html")]
    stamps = sorted(p.stat().st_mtime for p in pages if p.exists())
    target = f"≤ {TARGET_SCORECARD_SECONDS} s each"
    if not cards:
        why = "none written: " + ("no unit ranked, or the stages they need were not run" if fanout else "--no-fanout")
        return [("scorecards: average per scorecard", why, target, "MISS" if fanout else "-")]
    rows = [("scorecards written (ok / all)", f"{len(ok):,} / {len(cards):,}", "all ok", verdict(len(ok) == len(cards)))]
    if len(stamps) >= 2:
        # n pages over the span first..last: the span holds n - 1 steady-state intervals
        each = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        wall = stamps[-1] - stamps[0] + each
        rows.append(("scorecards: fan-out wall (first to last page)", f"{wall:.0f} s", "-", verdict(None)))
        rows.append(("scorecards: average per scorecard (wall / n)", f"{each:.3f} s", target,
                     verdict(each <= TARGET_SCORECARD_SECONDS)))
    per_card = sum(nb["seconds"] + nb.get("export_seconds", 0.0) for nb in ok) / max(len(ok), 1)
    rows.append(("scorecards: average time recorded per scorecard (run.json)", f"{per_card:.3f} s", "-", verdict(None)))
    return rows


def dossier_rows(argv: list[str]) -> list[Line]:
    """``bench/bench_dossiers_scale.py``'s lines (100 million dossiers, DuckDB at 2 GiB)."""
    path = ROOT / "bench" / "bench_dossiers_scale.py"
    if not path.exists():
        return [("dossiers (bench/bench_dossiers_scale.py)", "not present", "< 60 s", "MISS")]
    spec = importlib.util.spec_from_file_location("bench_dossiers_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv, show=False)


def print_lines(lines: list[Line]) -> None:
    """The closing table: figure, value, target, PASS/MISS; then the count of each."""
    widths = [max(len(line[k]) for line in lines + [("figure", "value", "target", "")]) for k in range(3)]
    print(f"\n{'figure':<{widths[0]}}  {'value':<{widths[1]}}  {'target':<{widths[2]}}  result")
    for figure, value, target, result in lines:
        print(f"{figure:<{widths[0]}}  {value:<{widths[1]}}  {target:<{widths[2]}}  {result}")
    judged = [r for *_, r in lines if r != "-"]
    print(f"{judged.count('PASS')} PASS, {judged.count('MISS')} MISS of {len(judged)} figures with a target")


def main(argv: list[str] | None = None) -> list[Line]:
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
    parser.add_argument("--dossier-args", default="", metavar="ARGS",
                        help="arguments for bench_dossiers_scale.py, e.g. '--repeats 1'")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT,
                        help=f"folder of the written year and of runs/ (default {DATA_ROOT})")
    args = parser.parse_args(argv)

    tag = f"scale-{args.seed}" + (f"-p{args.provinces}" if args.provinces else "")
    folder, out = args.data_root / tag, args.data_root / "runs"
    load_before = os.getloadavg()
    made = generate(folder, args.seed, args.provinces)
    facts = year_facts(folder)
    # the sampling stage plans the scale year's questionnaires, not Hà Nội's (settings.yaml defaults)
    plan = _planned_forms(folder)
    params = [f"sampling_design.total_departments={plan['department']}",
              f"sampling_design.total_districts={plan['local']}", *args.params]
    report = run_report(folder, out, tag, params, args.fanout, args.workers, args.stages, args.data_root)
    run_dir = out / tag
    load_after = os.getloadavg()

    sampler = report["sampler"]
    tree_peak, tree_bound = sampler.peak() / GB, sampler.peak_bound() / GB
    single_peak = report["peak_bytes"] / GB
    whole = not args.stages and args.provinces is None  # the targets are about the whole national run
    scope = "" if whole else " [partial run: targets are for the whole national year]"
    lines: list[Line] = [
        ("year: provinces / departments / communes", f"{facts['provinces']} / {facts['departments']} / "
         f"{facts['communes']:,}", "34 / ~580 / 3,321",
         verdict((facts["provinces"], facts["communes"]) == (34, 3321)) if args.provinces is None else "-"),
        ("year: forms issued / returned (commune file)", f"{facts['issued']:,} / {facts['returned_local']:,} "
         "(+ departments' workbook)", "~400,000 returned", "-"),
        ("year: written in" + (" (reused: same seed and simulator)" if made["reused"] else ""),
         f"{made['seconds']:.0f} s, peak {made['peak_bytes'] / GB:.2f} GB, CPU {made['cpu_seconds']:.0f} s", "-", "-"),
        ("run: sipas report" + scope, "ok" if report["code"] == 0 else f"FAILED (exit {report['code']})", "ok",
         verdict(report["code"] == 0)),
        ("run: whole run wall time", f"{report['seconds']:.0f} s ({report['seconds'] / 60:.1f} min)",
         f"< {TARGET_RUN_SECONDS // 60} min", verdict(report["seconds"] < TARGET_RUN_SECONDS)),
        ("run: peak memory of the process tree (RSS summed over runner + kernels + workers, every 0.5 s)",
         f"{tree_peak:.2f} GB ({sampler.most_processes()} processes at most)", f"< {TARGET_PEAK_GB:.0f} GB",
         verdict(tree_peak < TARGET_PEAK_GB)),
        ("run: peak memory, high estimate (sum of the live processes' own peaks, VmHWM)", f"{tree_bound:.2f} GB",
         f"< {TARGET_PEAK_GB:.0f} GB", verdict(tree_bound < TARGET_PEAK_GB)),
        ("run: largest single process of the tree (wait4 rusage)", f"{single_peak:.2f} GB", "-", "-"),
        ("run: CPU seconds of the process tree", f"{report['cpu_seconds']:.0f} s", "-", "-"),
    ]
    if (run_dir / "run.json").exists():
        lines += stage_rows(run_dir, report) + scorecard_rows(run_dir, args.fanout)
    if not args.skip_dossiers:
        lines += dossier_rows(args.dossier_args.split())
    lines += [("machine: cores / load average before -> after the run (1 min)",
               f"{os.cpu_count()} / {load_before[0]:.1f} -> {load_after[0]:.1f}", "-", "-"),
              ("run folder", str(run_dir), "-", "-")]
    print_lines(lines)
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
