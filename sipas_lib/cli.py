"""The ``sipas`` command line: ``sipas demo`` writes the demo year, ``sipas report`` runs the chain.

Examples
--------
::

    sipas demo --if-missing                 # data/demo/, seeded, only if not there yet
    sipas report                            # every stage + per-unit reports -> reports/2025-demo/
    sipas report --stages 20,30 --no-fanout # re-run two stages on the results of an earlier run
    sipas report --data-dir data/raw/2025 --run 2025-final --lang en
    sipas report --config hanoi.yaml -p weighting.trim_ratio=2.5 --level 0.9
"""

from __future__ import annotations

import re
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
    """``<year>-demo`` for the bundled demo, ``<year>-<folder>`` for a user's data folder (made a
    plain folder name: characters a run name may not hold become ``-``)."""
    if data_dir.resolve() == config.DEMO_DIR.resolve():
        return f"{year}-demo"
    name = re.sub(r"[^\w.-]+", "-", data_dir.resolve().name).strip("-.")
    if not name:
        return str(year)
    return name if name.startswith(str(year)) else f"{year}-{name}"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]{escape(message)}[/]")
    return typer.Exit(code)


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
        None, "--run",
        help="Name of the run folder under --out: one plain folder name (default: <year>-demo for the demo data).",
    ),
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="YAML file with settings (any subset of sipas_lib/settings.yaml) over the defaults.",
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p",
        help="One setting SECTION.NAME=VALUE, e.g. -p weighting.trim_ratio=2.5 (a bare NAME means common.NAME).",
    ),
    year: Optional[int] = typer.Option(None, "--year", help="Survey year (common.year)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of anything random: bootstrap, draws (common.seed)."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Report language: vi or en (common.lang)."),
    level: Optional[float] = typer.Option(None, "--level", help="Confidence level of every interval (common.level)."),
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
    previous_data: Optional[Path] = typer.Option(
        None, "--previous-data",
        help="Last year's input folder, for year-on-year changes (default: <data-dir>/previous_year if it exists).",
    ),
    previous_results: Optional[Path] = typer.Option(
        None, "--previous-results", help="Last year's results/ folder from an earlier run (skips recomputing it).",
    ),
) -> None:
    """Run the stage notebooks, write the HTML reports and reports/<run>/index.html.

    Settings: the shipped defaults (sipas_lib/settings.yaml), then --config, then --year/--seed/--lang/--level, then each -p; the result is saved as reports/<run>/settings.yaml.
    """  # noqa: E501 - one paragraph, so that --help does not break it mid-sentence
    import logging

    from sipas_lib import runner
    from sipas_lib.settings import SettingsError, load_settings

    # papermill/nbclient log "Kernel died ..." etc. themselves; the summary below says it better
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    logging.getLogger("traitlets").setLevel(logging.ERROR)

    # everything the user typed is checked before anything is written
    try:
        selected = runner.parse_stages(stages)
        settings = load_settings(config_file, overrides=param, year=year, seed=seed, lang=lang, level=level)
    except (SettingsError, ValueError) as exc:
        raise _fail(str(exc))
    if not data_dir.is_dir():
        hint = " Run `sipas demo` (or `make report`) to write it." if data_dir.resolve() == config.DEMO_DIR else ""
        raise _fail(f"data folder {data_dir} does not exist.{hint}")
    try:
        run_name = config.check_run_name(run if run is not None else _default_run_name(settings.year, data_dir))
    except ValueError as exc:
        raise _fail(f"--run: {exc}")
    run_dir = out / run_name
    try:
        runner.check_run_dir(run_dir, notebooks_dir, data_dir)
    except ValueError as exc:
        raise _fail(str(exc))
    if previous_results is not None and not previous_results.is_dir():
        raise _fail(f"--previous-results {previous_results} is not a folder")

    console.print(f"SIPAS report {settings.year}: data [bold]{escape(str(data_dir))}[/] → [bold]{escape(str(run_dir))}[/]")
    progress = _RichProgress(console)
    wants_yoy = selected is None or any(stage >= 50 for stage in selected)
    chosen_previous = settings.section("index_ranking")["previous_results"]
    if previous_results is None and chosen_previous:
        previous_results = Path(chosen_previous)
    if previous_data is None and (data_dir / runner.PREVIOUS_YEAR_DIR).is_dir():
        previous_data = data_dir / runner.PREVIOUS_YEAR_DIR
    try:
        if previous_results is None and previous_data is not None and wants_yoy:
            console.print(f"Previous year {settings.year - 1}: data [bold]{escape(str(previous_data))}[/]")
            previous_results = runner.run_previous_year(
                previous_data, run_dir, settings, notebooks_dir=notebooks_dir, progress=progress)
        if previous_results is not None:
            settings = settings.replace(index_ranking__previous_results=str(previous_results.resolve()))
        summary = runner.run_report(
            data_dir, run_dir, settings, stages=selected, fanout=fanout, workers=workers,
            notebooks_dir=notebooks_dir, reuse_kernels=not fresh_kernels, progress=progress,
        )
    except RuntimeError as exc:  # the previous year failed
        progress.close()
        raise _fail(str(exc), 1)
    except ValueError as exc:
        progress.close()
        raise _fail(str(exc))
    progress.close()
    counts = summary.counts()
    console.print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in {summary.seconds:.1f} s"
    )
    for line in _failure_lines(summary):
        err_console.print(f"[bold red]FAILED[/] {escape(line)}")
    console.print(f"index: [bold]{escape(str(summary.index))}[/]")
    if not summary.ok:
        raise typer.Exit(1)


def _failure_lines(summary) -> list[str]:
    """One line per failed stage (notebook, cell, cause) and one per fan-out template with failures."""
    lines = []
    for failed in summary.failed:
        if failed.kind != "stage":
            continue
        cell = f" cell {failed.failure.cell}" if failed.failure and failed.failure.cell is not None else ""
        cause = failed.failure.cause() if failed.failure else "failed"
        lines.append(f"{failed.source.name}{cell}: {cause}")
    templates: dict[str, list] = {}
    for failed in summary.failed:
        if failed.kind == "fanout":
            templates.setdefault(failed.name, []).append(failed)
    for name, runs in templates.items():
        units = [r.unit_id for r in runs if r.unit_id]
        first = runs[0]
        which = ""
        if units:
            shown = ", ".join(units[:5]) + (", …" if len(units) > 5 else "")
            which = f" for {len(units)} unit(s) ({shown})"
        cause = first.failure.cause() if first.failure else "failed"
        lines.append(f"{first.source.name}{which}: {cause}")
    return lines


@app.command()
def demo(
    out: Path = typer.Option(config.DEMO_DIR, "--out", help="Folder to write the demo year into."),
    seed: int = typer.Option(config.DEFAULT_SEED, "--seed", help="Seed; the same seed gives identical files."),
    year: int = typer.Option(config.DEFAULT_YEAR, "--year", help="Survey year."),
    scale: float = typer.Option(1.0, "--scale", min=0.001, help="Multiplies frame, sample and dossier sizes."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Write only the demo files that are missing; existing files are never touched."),
) -> None:
    """Write the seeded demo year (units, frame, sample, returned questionnaires, dossiers)."""
    from sipas_lib import simulate

    if if_missing and simulate.demo_is_complete(out, previous_year=True):
        console.print(f"demo data already in {escape(str(out))} (delete it to regenerate)")
        return
    with console.status(f"simulating the {year} demo year (seed {seed}) …"):
        written = simulate.write_demo_year(out, year=year, seed=seed, scale=scale, previous_year=True,
                                           if_missing=if_missing)
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
