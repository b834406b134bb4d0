"""Shared fixtures: throwaway notebooks for the runner tests and a tiny seeded demo year."""

from __future__ import annotations

import os
import tempfile

# Outputs with personal data (the post office mailing list) go under config.RAW_DIR; during the
# tests that is a throwaway folder, never the project's data/raw. Set before sipas_lib is imported
# (config reads it once); notebook kernels inherit the variable.
os.environ["SIPAS_RAW_DIR"] = tempfile.mkdtemp(prefix="sipas-test-raw-")
# Two test workers on two cores: BLAS threads in each would only fight over the cores (one thread each cut the
# reliability tests' CPU by a third). Set before numpy loads; kernels started by the tests inherit it.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import hashlib  # noqa: E402
import inspect  # noqa: E402
import shutil  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

# first: the runner's discovery module leaves out jsonschema's IRI checker, which nbformat would load (2.4 CPU-s a process)
import sipas_lib.runner.discovery  # noqa: E402,F401,I001
import nbformat  # noqa: E402

from sipas_lib.config import DEMO_DIR  # noqa: E402

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# A tiny year: a couple of departments and districts, a few percent of the real sizes.
TINY_YEAR = 2025
TINY_SEED = 7
TINY_SCALE = 0.25  # ~30 department and ~80 district questionnaires: enough for alpha and CIs
# The tiny year keeps the old structure (2 departments, 2 districts; its files and stage tests are those of
# 2020-2024); the two-tier tiny year is TINY_TWO_TIER below.
TINY_UNITS = {"n_departments": 2, "n_districts": 2, "structure": "legacy"}
# The two-tier tiny year (issue 12): 2 of the departments after the 2025 merger and the 11 wards that replaced
# 4 old districts, at the real sizes (~30 respondents a ward, as in the 126-commune demo; ~600 forms); its
# previous year keeps the old structure (2 departments, 4 districts), so year-on-year runs across the reform.
# Enough wards for the small-area model of stage 50 to fit.
TINY_TWO_TIER = {"n_departments": 2, "n_districts": 4, "structure": None, "scale": 1.0}
# Settings for the tiny year (besides the sample totals of the tiny year, see ``tiny_settings``):
# fewer bootstrap replicates and rank draws, a small minimum per unit.
TINY_OVERRIDES = {
    "sampling_design.minimum_per_unit": 5,
    "reliability.n_boot": 100,
    "index_ranking.n_draws": 200,
}


def build_notebook(path: Path, cells: list[tuple], title: str | None = None) -> Path:
    """Write a notebook made of ``(kind, source)`` or ``(kind, source, tags)`` tuples.

    ``kind`` is ``"code"``, ``"markdown"`` or ``"parameters"`` (a code cell tagged parameters).
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    if title:
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}"))
    for cell in cells:
        kind, source, *rest = cell
        tags = list(rest[0]) if rest else []
        if kind == "parameters":
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters", *tags]}))
        elif kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
        elif kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source, metadata={"tags": tags} if tags else {}))
        else:  # pragma: no cover - test helper misuse
            raise ValueError(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def write_notebook() -> Callable[..., Path]:
    """``write_notebook(path, cells, title=None)``: see :func:`build_notebook`."""
    return build_notebook


def write_tiny_year(tmp_path_factory, name: str, units: dict) -> Path:
    """A tiny demo year (and its previous year) written by the simulator into a fresh folder ``name``:
    :data:`TINY_YEAR`, :data:`TINY_SEED`, :data:`TINY_SCALE` of the sizes, the units (and any other
    ``write_demo_year`` argument) in ``units``.

    Skips (with the reason) only while ``sipas_lib.simulate`` is not there yet.
    """
    try:
        from sipas_lib import simulate
    except ImportError as exc:  # pragma: no cover - only before the simulator exists
        pytest.skip(f"sipas_lib.simulate is not available yet ({exc}); the notebook tier needs its tiny year")
    folder = tmp_path_factory.mktemp(name)
    kwargs = {"year": TINY_YEAR, "seed": TINY_SEED}
    accepted = inspect.signature(simulate.write_demo_year).parameters
    if "scale" in accepted:
        kwargs["scale"] = TINY_SCALE
    kwargs.update({k: v for k, v in units.items() if k in accepted})
    simulate.write_demo_year(folder, previous_year=True, **kwargs)
    return folder


def settings_for_tiny_year(folder: Path):
    """The run configuration fitting a tiny year in ``folder``: its year and seed, the sample totals of
    the tiny year instead of the city's 1,250 + 4,800 (departments; local units of any type), and
    :data:`TINY_OVERRIDES`."""
    import pandas as pd

    from sipas_lib.settings import load_settings

    sample = pd.read_csv(folder / "sample.csv", dtype=str)
    units = pd.read_csv(folder / "units.csv", dtype=str)
    per_type = sample.merge(units[["unit_id", "unit_type"]], on="unit_id")["unit_type"].value_counts()
    overrides = {
        **TINY_OVERRIDES,
        "sampling_design.total_departments": int(per_type.get("department", 0)),
        "sampling_design.total_districts": int(per_type.drop("department", errors="ignore").sum()),
    }
    return load_settings(year=TINY_YEAR, seed=TINY_SEED, overrides=list(overrides.items()))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A tiny demo year of the old structure (2 departments, 2 districts, :data:`TINY_SCALE` of the sizes)."""
    return write_tiny_year(tmp_path_factory, "tiny_demo", TINY_UNITS)


@pytest.fixture(scope="session")
def tiny_settings(tiny_demo):
    """The run configuration fitting :func:`tiny_demo` (:func:`settings_for_tiny_year`)."""
    return settings_for_tiny_year(tiny_demo)


@pytest.fixture(scope="session")
def tiny_two_tier_demo(tmp_path_factory) -> Path:
    """A tiny two-tier year (:data:`TINY_TWO_TIER`: 2 departments, 11 wards; previous year legacy)."""
    return write_tiny_year(tmp_path_factory, "tiny_two_tier_demo", TINY_TWO_TIER)


@pytest.fixture(scope="session")
def tiny_two_tier_settings(tiny_two_tier_demo):
    """The run configuration fitting :func:`tiny_two_tier_demo` (:func:`settings_for_tiny_year`)."""
    return settings_for_tiny_year(tiny_two_tier_demo)


def contract_table(name: str, **given: list):
    """A table that meets the contract of result ``name``: the ``given`` columns, and every other
    column of the contract filled with missing values (nullable) or a value that passes its checks.

    For tests that need a real ``units`` or ``ranks`` table but only care about a few columns.
    """
    import pandas as pd

    from sipas_lib import schemas

    contract = schemas.contract(name)
    rows = len(next(iter(given.values())))
    data = {}
    for column, spec in contract.schema.columns.items():
        dtype = str(spec.dtype)
        if column in given:
            values = list(given[column])
        elif spec.nullable:
            values = [None] * rows
        else:
            values = [_filler(spec, dtype)] * rows
        series = pd.Series(values, dtype="object")
        if dtype not in ("str", "object"):
            series = series.astype(dtype)
        data[column] = series
    return schemas.validate(name, pd.DataFrame(data))


def _filler(spec, dtype: str):
    """A value of ``dtype`` that passes the column's checks (first allowed value, lower bound, …)."""
    for check in spec.checks or []:
        stats = getattr(check, "statistics", None) or {}
        if "allowed_values" in stats:
            return list(stats["allowed_values"])[0]
        if "min_value" in stats and stats["min_value"] is not None:
            low = stats["min_value"]
            return low + 1 if check.name == "greater_than" else low
    if dtype.startswith("datetime"):
        import pandas as pd

        return pd.Timestamp("2025-01-01")
    return {"bool": False, "boolean": False, "int64": 1, "Int64": 1, "float64": 0.5}.get(dtype, "x")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def index_links(index: Path) -> list[str]:
    """The ``href`` of every link on an HTML page, in order."""
    parser = _Links()
    parser.feed(Path(index).read_text(encoding="utf-8"))
    return parser.hrefs


#: Fixtures that build a year of data (seconds each): tests using them are marked ``slow`` and left
#: out of ``make test-fast`` (tests that execute notebooks are marked ``kernel`` or ``notebooks`` in their files).
SLOW_FIXTURES = frozenset({"tiny_demo", "tiny_two_tier_demo", "full_year", "tiny_national_run"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if set(getattr(item, "fixturenames", ())) & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def input_copies(tmp_path):
    """A function that copies the named input files of the demo's previous year into a new folder."""
    def copy(names) -> Path:
        folder = tmp_path / "year"
        folder.mkdir()
        for name in names:
            shutil.copy(DEMO_DIR / "previous_year" / name, folder / name)
        return folder
    return copy


# ------------------------------------------------------------------------------------------------
# Run folders of the tiny years, built once per worker by calling the stages' ``run`` functions.
# They are READ-ONLY: a test that writes into a run folder works on a copy (:func:`copy_run`).
# ------------------------------------------------------------------------------------------------
#: The non-default weighting of :func:`tiny_custom_weighted_run` (raking, tighter trimming, merged
#: cells) at another level than the default, so that both reach every later stage.
TINY_CUSTOM = {"weighting__calibration": "rake", "weighting__trim_ratio": 2.5, "weighting__min_cell": 5,
               "level": 0.9}


class StageRun(NamedTuple):
    """A run folder, the settings its stages ran with (saved in it) and what the last stage returned."""

    paths: object  # config.RunPaths
    settings: object  # settings.Settings
    result: object


def copy_run(paths, folder: Path):
    """A private copy of the run folder of ``paths`` in ``folder`` (same data folder): a test may change it."""
    from sipas_lib import config

    shutil.copytree(paths.run_dir, folder)
    return config.RunPaths(paths.data_dir, Path(folder).resolve())


def _stage_run(tmp_path_factory, name: str, settings, stage, *, data_dir: Path | None = None,
               after: StageRun | None = None) -> StageRun:
    """``stage`` run with ``settings`` into a new run folder ``name``: a copy of ``after``'s run folder,
    or an empty one on ``data_dir``; the settings are saved in it as the runner does."""
    from sipas_lib import config

    folder = tmp_path_factory.mktemp(name) / "run"
    if after is None:
        paths = config.RunPaths(Path(data_dir).resolve(), folder.resolve()).ensure()
    else:
        paths = copy_run(after.paths, folder)
    settings.save(paths.run_dir)
    run = StageRun(paths, settings, stage.run(paths, settings))
    _SHARED_RUNS[paths.run_dir] = _folder_digest(paths.run_dir)
    return run


#: the shared run folders and their digests when built: checked again when the worker's session ends
_SHARED_RUNS: dict[Path, str] = {}


def _folder_digest(folder: Path) -> str:
    """One SHA-256 over every file's relative path and bytes, in order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def shared_runs_stay_read_only():
    """Fails the session when a test wrote into a shared run folder (it must work on :func:`copy_run`):
    the files that share the worker would otherwise read what that test left."""
    yield
    changed = [str(folder) for folder, digest in _SHARED_RUNS.items() if _folder_digest(folder) != digest]
    assert not changed, f"shared run folders changed by a test: {changed}"


@pytest.fixture(scope="session")
def tiny_intake_run(tiny_demo, tiny_settings, tmp_path_factory) -> StageRun:
    """Stage 20 (intake_quality) of :func:`tiny_demo` with :func:`tiny_settings` (read-only)."""
    from sipas_lib.stages import intake_quality

    return _stage_run(tmp_path_factory, "tiny_20", tiny_settings, intake_quality, data_dir=tiny_demo)


@pytest.fixture(scope="session")
def tiny_weighted_run(tiny_intake_run, tmp_path_factory) -> StageRun:
    """Stages 20 → 30 (weighting) of the tiny year with :func:`tiny_settings` (read-only)."""
    from sipas_lib.stages import weighting

    return _stage_run(tmp_path_factory, "tiny_30", tiny_intake_run.settings, weighting, after=tiny_intake_run)


@pytest.fixture(scope="session")
def tiny_ranked_run(tiny_weighted_run, tmp_path_factory) -> StageRun:
    """Stages 20 → 30 → 50 (index_ranking) of the tiny year with :func:`tiny_settings` (read-only)."""
    from sipas_lib.stages import index_ranking

    return _stage_run(tmp_path_factory, "tiny_50", tiny_weighted_run.settings, index_ranking, after=tiny_weighted_run)


@pytest.fixture(scope="session")
def tiny_custom_weighted_run(tiny_intake_run, tmp_path_factory) -> StageRun:
    """Stage 30 with the non-default weighting and level :data:`TINY_CUSTOM`, after the shared stage 20
    (stage 20 does not read these settings); read-only."""
    from sipas_lib.stages import weighting

    settings = tiny_intake_run.settings.replace(**TINY_CUSTOM)
    return _stage_run(tmp_path_factory, "tiny_30_custom", settings, weighting, after=tiny_intake_run)


@pytest.fixture(scope="session")
def tiny_custom_ranked_run(tiny_custom_weighted_run, tmp_path_factory) -> StageRun:
    """Stage 50 after :func:`tiny_custom_weighted_run`, same settings (read-only)."""
    from sipas_lib.stages import index_ranking

    return _stage_run(tmp_path_factory, "tiny_50_custom", tiny_custom_weighted_run.settings, index_ranking,
                      after=tiny_custom_weighted_run)


@pytest.fixture(scope="session")
def tiny_previous_weighted_run(tiny_demo, tiny_settings, tmp_path_factory) -> StageRun:
    """Stages 20 → 30 of the tiny demo's previous year (departments and districts before the 2025
    reform) with :func:`tiny_settings` of that year (read-only)."""
    from sipas_lib.stages import intake_quality, weighting

    settings = tiny_settings.replace(year=tiny_settings.year - 1)
    intake = _stage_run(tmp_path_factory, "tiny_prev_20", settings, intake_quality,
                        data_dir=Path(tiny_demo) / "previous_year")
    return _stage_run(tmp_path_factory, "tiny_prev_30", settings, weighting, after=intake)


@pytest.fixture(scope="session")
def tiny_previous_ranked_run(tiny_previous_weighted_run, tmp_path_factory) -> StageRun:
    """Stages 20 → 30 → 50 of the tiny demo's previous year (read-only): last year's results of a
    year-on-year run."""
    from sipas_lib.stages import index_ranking

    return _stage_run(tmp_path_factory, "tiny_prev_50", tiny_previous_weighted_run.settings, index_ranking,
                      after=tiny_previous_weighted_run)


@pytest.fixture(scope="session")
def tiny_previous_admin_run(tiny_previous_weighted_run, tmp_path_factory) -> StageRun:
    """Stages 70 (monthly_report) and 80 (annual_survey_report) after :func:`tiny_previous_weighted_run`,
    same settings (read-only): both Phụ lục 3 forms (Mẫu số 1 and Mẫu số 2) and Phụ lục 4 of a year
    before the 2025 reform."""
    from sipas_lib.stages import annual_survey_report, monthly_report

    monthly = _stage_run(tmp_path_factory, "tiny_prev_70", tiny_previous_weighted_run.settings, monthly_report,
                         after=tiny_previous_weighted_run)
    return _stage_run(tmp_path_factory, "tiny_prev_80", monthly.settings, annual_survey_report, after=monthly)
