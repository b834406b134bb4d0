"""The ``sipas`` command line: ``sipas demo`` writes the demo year, ``sipas report`` runs the chain.

Examples
--------
::

    sipas demo --if-missing                 # data/demo/, seeded, only if not there yet
    sipas report                            # every stage + per-unit reports -> reports/2025-demo/
    sipas report --stages 20,30 --no-fanout # re-run two stages on the results of an earlier run
    sipas report --data-dir data/raw/2025 --run 2025-final --lang en
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from sipas_lib import config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="SIPAS Workbench: simulate the demo year and produce the HTML reports of a survey year.",
)
# soft_wrap: never break a path or an error message across lines (they get copied and pasted)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _default_run_name(year: int, data_dir: Path) -> str:
    """``<year>-demo`` for the bundled demo, ``<year>-<folder>`` for a user's data folder."""
    if data_dir.resolve() == config.DEMO_DIR.resolve():
        return f"{year}-demo"
    name = data_dir.resolve().name
    return name if name.startswith(str(year)) else f"{year}-{name}"


def _parse_params(items: list[str]) -> dict[str, object]:
    """``["n=5", "name=Hà Nội"]`` -> ``{"n": 5, "name": "Hà Nội"}`` (Python literals, else text)."""
    import ast

    out: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE, e.g. -p total_districts=4800")
        try:
            out[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[name] = text.strip()
    return out


class _RichProgress:
    """Prints one line per stage and a progress bar for the per-unit reports."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = None
        self.task = None

    def __call__(self, event: str, payload) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from sipas_lib.runner import FAILED, OK

        if event == "start":
            self.console.print(f"[bold]▶[/] {escape(payload.label)} …")
        elif event == "fanout":
            self.bar = Progress(
                TextColumn("per-unit reports"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("fanout", total=payload)
        elif event == "done":
            run = payload
            if run.kind == "fanout" and self.bar is not None:
                self.bar.advance(self.task)
                if run.status == FAILED:
                    self.bar.console.print(f"[bold red]✗[/] {escape(run.label)} failed")
                if self.bar.finished:
                    self.bar.stop()
                    self.bar = None
                return
            seconds = run.seconds + run.export_seconds
            if run.status == OK:
                self.console.print(f"[green]✓[/] {escape(run.label)}  {seconds:.1f} s")
            elif run.status == FAILED:
                self.console.print(f"[bold red]✗ {escape(run.label)} failed[/]  {seconds:.1f} s")
            else:
                self.console.print(f"[dim]– {escape(run.label)} skipped[/]")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@app.command()
def report(
    data_dir: Path = typer.Option(config.DEMO_DIR, "--data-dir", help="Folder with the year's input files."),
    out: Path = typer.Option(config.REPORTS_DIR, "--out", help="Folder that holds the run folders."),
    run: Optional[str] = typer.Option(
        None, "--run", help="Name of the run folder under --out (default: <year>-demo for the demo data)."
    ),
    year: int = typer.Option(config.DEFAULT_YEAR, "--year", help="Survey year."),
    seed: int = typer.Option(config.DEFAULT_SEED, "--seed", help="Seed for anything random (bootstrap, draws)."),
    lang: str = typer.Option(config.DEFAULT_LANG, "--lang", help="Report language: vi or en."),
    fanout: bool = typer.Option(True, "--fanout/--no-fanout", help="Also write one report per unit."),
    stages: Optional[str] = typer.Option(
        None, "--stages", help="Only these stages, e.g. 10,20 (the others are listed as skipped)."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=1, help="Per-unit reports run at the same time (default: CPU cores)."
    ),
    notebooks_dir: Path = typer.Option(
        config.NOTEBOOKS_DIR, "--notebooks-dir", help="Folder with the stage notebooks and fanout/ templates."
    ),
    fresh_kernels: bool = typer.Option(
        False, "--fresh-kernels", help="Start a new kernel for every per-unit report (slower; default reuses one per worker)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p",
        help="Stage parameter NAME=VALUE for every notebook that declares it, e.g. -p total_districts=4800.",
    ),
    previous_data: Optional[Path] = typer.Option(
        None, "--previous-data",
        help="Last year's input folder, for year-on-year changes (default: <data-dir>/previous_year if it exists).",
    ),
    previous_results: Optional[Path] = typer.Option(
        None, "--previous-results", help="Last year's results/ folder from an earlier run (skips recomputing it).",
    ),
) -> None:
    """Run the stage notebooks, write the HTML reports and reports/<run>/index.html."""
    import logging

    from sipas_lib import runner

    # papermill/nbclient log "Kernel died ..." etc. themselves; the summary below says it better
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    logging.getLogger("traitlets").setLevel(logging.ERROR)

    if lang not in config.LANGUAGES:
        err_console.print(f"[red]--lang must be one of {', '.join(config.LANGUAGES)}, not {escape(lang)!s}[/]")
        raise typer.Exit(2)
    try:
        selected = runner.parse_stages(stages)
    except ValueError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    try:
        extra = _parse_params(param)
    except ValueError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    if not data_dir.is_dir():
        hint = " Run `sipas demo` (or `make report`) to write it." if data_dir.resolve() == config.DEMO_DIR else ""
        err_console.print(f"[red]data folder {escape(str(data_dir))} does not exist.{hint}[/]")
        raise typer.Exit(2)
    run_dir = out / (run or _default_run_name(year, data_dir))
    console.print(f"SIPAS report {year}: data [bold]{escape(str(data_dir))}[/] → [bold]{escape(str(run_dir))}[/]")
    progress = _RichProgress(console)
    wants_yoy = selected is None or any(stage >= 50 for stage in selected)
    if previous_data is None and (data_dir / runner.PREVIOUS_YEAR_DIR).is_dir():
        previous_data = data_dir / runner.PREVIOUS_YEAR_DIR
    if previous_results is None and previous_data is not None and wants_yoy:
        console.print(f"Previous year {year - 1}: data [bold]{escape(str(previous_data))}[/]")
        try:
            previous_results = runner.run_previous_year(
                previous_data, run_dir, year, seed=seed, lang=lang, notebooks_dir=notebooks_dir,
                parameters=extra, progress=progress)
        except (RuntimeError, ValueError) as exc:
            progress.close()
            err_console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(1)
    if previous_results is not None:
        if not previous_results.is_dir():
            err_console.print(f"[red]--previous-results {escape(str(previous_results))} is not a folder[/]")
            raise typer.Exit(2)
        extra.setdefault("previous_results", str(previous_results.resolve()))
    try:
        summary = runner.run_report(
            data_dir, run_dir, year=year, seed=seed, lang=lang, stages=selected, fanout=fanout,
            workers=workers, notebooks_dir=notebooks_dir, parameters=extra, reuse_kernels=not fresh_kernels,
            progress=progress,
        )
    except ValueError as exc:
        progress.close()
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2)
    progress.close()
    counts = summary.counts()
    console.print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in {summary.seconds:.1f} s"
    )
    for failed in summary.failed:
        err_console.print(f"[bold red]FAILED[/] notebook {escape(str(failed.source))}"
                          + (f" (unit {escape(failed.unit_id)})" if failed.unit_id else ""))
        if failed.failure is not None:
            err_console.print("  " + escape(failed.failure.describe()).replace("\n", "\n  "))
        if failed.html is not None:
            err_console.print(f"  executed part, with the error: {escape(str(failed.html))}")
    console.print(f"index: [bold]{escape(str(summary.index))}[/]")
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Path = typer.Option(config.DEMO_DIR, "--out", help="Folder to write the demo year into."),
    seed: int = typer.Option(config.DEFAULT_SEED, "--seed", help="Seed; the same seed gives identical files."),
    year: int = typer.Option(config.DEFAULT_YEAR, "--year", help="Survey year."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, help="Multiplies frame, sample and dossier sizes."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when the demo files are already there."),
) -> None:
    """Write the seeded demo year (units, frame, sample, returned questionnaires, dossiers)."""
    from sipas_lib import simulate

    if if_missing and simulate.demo_is_complete(out, previous_year=True):
        console.print(f"demo data already in {escape(str(out))} (delete it to regenerate)")
        return
    with console.status(f"simulating the {year} demo year (seed {seed}) …"):
        written = simulate.write_demo_year(out, year=year, seed=seed, scale=scale, previous_year=True)
    console.print(f"wrote {len(written)} files to [bold]{escape(str(out))}[/]")


@app.command()
def bench() -> None:
    """Run every benchmark script bench/bench_*.py and print their medians."""
    scripts = sorted((config.PROJECT_DIR / "bench").glob("bench_*.py"))
    if not scripts:
        console.print("no benchmark scripts in bench/")
        return
    failed = []
    for script in scripts:
        console.rule(script.name)
        if subprocess.run([sys.executable, str(script)], cwd=config.PROJECT_DIR).returncode != 0:
            failed.append(script.name)
    if failed:
        err_console.print(f"[red]failed: {', '.join(failed)}[/]")
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
