"""The ``sipas`` command line: ``sipas demo`` writes the demo year, ``sipas report`` runs the chain.

Examples
--------
::

    sipas demo --if-missing                 # data/demo/, seeded, only if not there yet
    sipas report                            # every stage + per-unit reports -> reports/2025-demo/
    sipas report --stages 20,30 --no-fanout # re-run two stages on the results of an earlier run
    sipas report --data-dir data/raw/2025 --run 2025-final --lang en
    sipas report --config hanoi.yaml -p weighting.trim_ratio=2.5 --level 0.9
    sipas report --pdf                      # also the annual report and scorecards as PDF
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
                reused = " (reused: same data, settings and software)" if run.note == "reused" else ""
                self.console.print(f"[green]✓[/] {escape(run.label)}  {seconds:.1f} s{reused}")
            elif run.status == FAILED:
                self.console.print(f"[bold red]✗ {escape(run.label)} failed[/]  {seconds:.1f} s")
            else:
                self.console.print(f"[dim]– {escape(run.label)} skipped[/]")
        elif event == "downloads":
            if payload.files:
                self.console.print(f"[green]✓[/] downloads: {len(payload.files)} file(s) (SPSS, Stata, Excel, PDF) "
                                   "in downloads/")
            for problem in payload.problems:
                self.console.print(f"[bold yellow]![/] {escape(problem)}")

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
        None, "--workers", min=1, help="Steps (stages, batches of per-unit reports) run at the same time (default: CPU cores)."
    ),
    notebooks_dir: Path = typer.Option(
        config.NOTEBOOKS_DIR, "--notebooks-dir", help="Folder with the stage notebooks and fanout/ templates."
    ),
    fresh_kernels: bool = typer.Option(
        False, "--fresh-kernels", help="Start a new kernel for every step (slower; default: each worker keeps one kernel)."
    ),
    pdf: bool = typer.Option(
        False, "--pdf", help="Also write the annual report and the scorecards as PDF (downloads/pdf/; needs WeasyPrint).",
    ),
    previous_data: Optional[Path] = typer.Option(
        None, "--previous-data",
        help="Last year's input folder, for year-on-year changes (default: <data-dir>/previous_year if it exists).",
    ),
    previous_results: Optional[Path] = typer.Option(
        None, "--previous-results", help="Last year's results/ folder from an earlier run (used as it is).",
    ),
    profile: Optional[str] = typer.Option(
        None, "--profile",
        help="A run profile (sipas_lib/profiles/NAME.yaml), e.g. national: the ministry's survey of the 34 provinces "
             "(its data folder, stages and settings; --data-dir, --stages, --config and -p still apply).",
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
        chosen_profile = _load_profile(profile)
        selected = runner.parse_stages(stages)
        profile_overrides = chosen_profile.overrides() if chosen_profile else []
        settings = load_settings(config_file, overrides=[*profile_overrides, *param], year=year, seed=seed,
                                 lang=lang, level=level)
    except (SettingsError, ValueError) as exc:
        raise _fail(str(exc))
    if chosen_profile is not None and data_dir == config.DEMO_DIR:
        data_dir = chosen_profile.data_dir
    if not data_dir.is_dir():
        hint = " Run `sipas demo` (or `make report`) to write it." if data_dir.resolve() == config.DEMO_DIR else ""
        raise _fail(f"data folder {data_dir} does not exist.{hint}")
    try:
        default_name = (chosen_profile.run_name(settings.year) if chosen_profile is not None
                        and data_dir == chosen_profile.data_dir else _default_run_name(settings.year, data_dir))
        run_name = config.check_run_name(run if run is not None else default_name)
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
    compute_previous = previous_results is None and previous_data is not None and wants_yoy
    if compute_previous:  # computed beside this year's first stages, or reused when nothing changed
        console.print(f"Previous year {settings.year - 1}: data [bold]{escape(str(previous_data))}[/]")
    elif previous_results is not None:
        settings = settings.replace(index_ranking__previous_results=str(previous_results.resolve()))
    try:
        summary = runner.run_report(
            data_dir, run_dir, settings, stages=selected, fanout=fanout, workers=workers,
            notebooks_dir=notebooks_dir, reuse_kernels=not fresh_kernels, progress=progress, pdf=pdf,
            applicable=chosen_profile.stages if chosen_profile is not None else None,
            previous_data=previous_data if compute_previous else None,
        )
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


def _load_profile(name: Optional[str]):
    """The profile named by ``--profile`` (``None`` without one); a ``ValueError`` lists the known ones."""
    if name is None:
        return None
    from sipas_lib.profiles import load_profile

    return load_profile(name)


def _failure_lines(summary) -> list[str]:
    """One line per failed stage (notebook, cell, cause) and one per fan-out template with failures."""
    lines = []
    for failed in summary.failed:
        if failed.kind == "previous":  # last year's stages, run without notebooks
            lines.append(f"previous year ({failed.source}): {failed.failure.cause() if failed.failure else 'failed'}")
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
    profile: Optional[str] = typer.Option(
        None, "--profile", help="Write the demo year of a run profile instead, e.g. national (data/demo_national/)."),
) -> None:
    """Write the seeded demo year (units, frame, sample, returned questionnaires, dossiers)."""
    from sipas_lib import simulate

    try:
        chosen_profile = _load_profile(profile)
    except ValueError as exc:
        raise _fail(str(exc))
    if chosen_profile is not None:
        _national_demo(chosen_profile, out, year, seed, scale, if_missing)
        return

    if if_missing and simulate.demo_is_complete(out, previous_year=True):
        console.print(f"demo data already in {escape(str(out))} (delete it to regenerate)")
        return
    with console.status(f"simulating the {year} demo year (seed {seed}) …"):
        written = simulate.write_demo_year(out, year=year, seed=seed, scale=scale, previous_year=True,
                                           if_missing=if_missing)
    console.print(f"wrote {len(written)} files to [bold]{escape(str(out))}[/]")


@app.command()
def units(
    province: str = typer.Option(..., "--province", help="Province (name with or without diacritics, or its code)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write; default units_<province code>.csv here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a starting units registry: the province and its official communes and wards (after 1 July 2025).

    Edit it: add the province's departments (unit_type department, parent_id the province, codes
    90000 + 100 x province code + 1..99) and keep pre-2025 units with their valid_to date.
    """
    from sipas_lib import official_units
    from sipas_lib.spreadsheet import write_csv
    from sipas_lib.units import validate_units

    try:
        registry = official_units.starting_registry(province)
    except ValueError as err:
        console.print(f"[red]{escape(str(err))}[/]")
        raise typer.Exit(2) from None
    validate_units(registry, source="the starting registry")
    path = out or Path(f"units_{registry['unit_id'].iloc[0]}.csv")
    if path.exists() and not force:
        console.print(f"[red]{escape(str(path))} exists; use --force to overwrite it[/]")
        raise typer.Exit(1)
    write_csv(registry, path)
    counts = registry["unit_type"].value_counts()
    console.print(f"wrote {escape(str(path))}: {registry['name_vi'].iloc[0]}, "
                  f"{int(counts.get('ward', 0))} wards, {int(counts.get('commune', 0))} communes; "
                  "add the departments (unit_type department, parent_id "
                  f"{registry['unit_id'].iloc[0]}, codes from "
                  f"{official_units.department_code(official_units.province_code(province), 1)})")


form_app = typer.Typer(no_args_is_help=True, help="Questionnaire forms for other tools (ODK, KoboToolbox, SurveyCTO).")
app.add_typer(form_app, name="form")


@form_app.command("export")
def form_export(
    instrument: str = typer.Option(..., "--instrument", help="Instrument id (e.g. hanoi_pl5_district) or a YAML file."),
    to: str = typer.Option("xlsform", "--to", help="Output format: xlsform."),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write; default <instrument id>.xlsx here."),
    units_file: Optional[Path] = typer.Option(None, "--units", help="Units registry CSV whose units of the form's "
                                              "type the form offers; default: the bundled Hà Nội registry."),
    on: Optional[str] = typer.Option(None, "--on", help="Offer only the units valid on this day (YYYY-MM-DD), "
                                     "e.g. the round's first day; default: every unit of the registry."),
) -> None:
    """Write a questionnaire as an XLSForm (survey/choices/settings) and check it converts with pyxform."""
    from sipas_lib import xlsform
    from sipas_lib.instrument import InstrumentError, load_instrument
    from sipas_lib.units import UnitsError, load_units

    if to != "xlsform":
        raise _fail(f"--to {to}: unknown format; the only one is xlsform")
    try:
        form = load_instrument(instrument)
    except InstrumentError as exc:
        raise _fail(str(exc)) from None
    try:
        units = load_units(units_file, on=on)
    except (UnitsError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    path = out or Path(f"{form.id}.xlsx")
    try:
        xlsform.write_xlsform(form, units, path)
        xlsform.to_xform(path)
    except xlsform.XLSFormError as exc:
        raise _fail(str(exc)) from None
    console.print(f"wrote [bold]{escape(str(path))}[/] (XLSForm of {escape(form.id)}; converts with pyxform)")


def _national_demo(profile, out: Path, year: int, seed: int, scale: float, if_missing: bool) -> None:
    """``sipas demo --profile national``: the national demo year (:mod:`sipas_lib.simulate_national`)."""
    from sipas_lib import simulate_national

    if profile.demo != "national":
        raise _fail(f"profile {profile.name!r} has no demo writer of its own (demo: {profile.demo!r})")
    folder = profile.data_dir if out == config.DEMO_DIR else out
    if if_missing and simulate_national.national_is_complete(folder):
        console.print(f"national demo data already in {escape(str(folder))} (delete it to regenerate)")
        return
    with console.status(f"simulating the national {year} demo year (seed {seed}) …"):
        written = simulate_national.write_national_year(folder, year=year, seed=seed, scale=scale,
                                                        if_missing=if_missing)
    console.print(f"wrote {len(written)} files to [bold]{escape(str(folder))}[/]")


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
