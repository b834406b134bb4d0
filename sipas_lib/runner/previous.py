"""The previous year's indices for the year-on-year tables: computed in-process, reused while unchanged.

Year-on-year needs only last year's result tables (indices, ranks, the design), so its stages'
``run(paths, settings)`` functions are called directly (:data:`PREVIOUS_YEAR_STAGES`): no notebook,
no kernel start, no HTML. The folder ``<run>/previous_year/`` holds the tables and a manifest
(:data:`MANIFEST`) with what they were computed from: a content digest of every input file of the
previous year, the effective settings, the package version and a digest of the package's code and data.
When a later run finds the same manifest (and its tables unchanged) the tables are reused, which is
what a year's second and later runs do: ``make report`` recomputes last year only when its data,
the settings or the workbench changed. The folder gets a small page (``previous_year/index.html``)
saying what was used, linked from the run's index.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sipas_lib import __version__, config
from sipas_lib.settings import Settings, load_run_settings
from sipas_lib.stages import StageError

PREVIOUS_YEAR_STAGES = ("intake_quality", "weighting", "index_ranking")
"""Stages that give a year's indices and ranks: intake, weighting, index/ranking (in this order)."""
PREVIOUS_YEAR_DIR = "previous_year"
MANIFEST = "manifest.json"
PAGE = "index.html"
#: Package files whose content decides the previous year's tables (code, instruments, registries, settings).
_CODE_SUFFIXES = (".py", ".yaml", ".csv", ".json")


def previous_year_settings(settings: Settings) -> Settings:
    """This year's settings for last year's run: ``year - 1`` and no year-on-year of its own."""
    return settings.replace(year=settings.year - 1, index_ranking__previous_results="")


def _digest_files(files: list[Path], root: Path) -> dict[str, str]:
    out = {}
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        out[path.relative_to(root).as_posix()] = h.hexdigest()
    return out


def input_digests(data_dir: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of every file under the previous year's data folder (relative name -> hex digest)."""
    root = Path(data_dir).resolve()
    return _digest_files(sorted(p for p in root.rglob("*") if p.is_file()), root)


def code_digest() -> str:
    """One SHA-256 over the package's code and data files (a changed estimator invalidates the cache)."""
    root = config.PACKAGE_DIR
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _manifest_key(data_dir: Path, settings: Settings) -> dict[str, Any]:
    """What the previous year's tables depend on (compared field by field with a saved manifest)."""
    return {"inputs": input_digests(data_dir), "settings": settings.to_dict(), "version": __version__,
            "code": code_digest(), "stages": list(PREVIOUS_YEAR_STAGES)}


def _tables(results: Path) -> dict[str, str]:
    return _digest_files(sorted(results.glob("*.parquet")) + sorted(results.glob("*.json")), results)


def _reusable(folder: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The saved manifest when it matches ``key`` and its tables are there unchanged, else ``None``."""
    try:
        saved = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(saved.get(name) != value for name, value in key.items()):
        return None
    results = folder / "results"
    if not results.is_dir() or _tables(results) != saved.get("tables"):
        return None
    return saved


def compute_previous_year(previous_data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                          settings: Settings, *, reuse: bool = True) -> dict[str, Any]:
    """Last year's result tables in ``<run_dir>/previous_year/results``, computed or reused.

    Runs :data:`PREVIOUS_YEAR_STAGES` in this process on ``previous_data_dir`` with
    :func:`previous_year_settings` (so both years' figures come from one method), unless the folder
    already holds tables computed from the same inputs, settings and code (see the module docstring).

    Returns
    -------
    dict
        ``results`` (folder), ``reused`` (bool), ``seconds`` (this call), ``computed_at`` and the manifest's
        ``inputs``; also written to ``previous_year/manifest.json`` and shown on ``previous_year/index.html``.

    Raises
    ------
    StageError
        A stage of the previous year failed (the message names the year and the stage, then its cause).
    """
    started = time.perf_counter()
    data_dir = Path(previous_data_dir).resolve()
    folder = Path(run_dir).resolve() / PREVIOUS_YEAR_DIR
    last = previous_year_settings(settings)
    key = _manifest_key(data_dir, last)
    saved = _reusable(folder, key) if reuse else None
    if saved is None:
        (folder / MANIFEST).unlink(missing_ok=True)  # a half-written folder is never taken for a finished one
        paths = config.run_paths(data_dir, folder).ensure()
        last.save(folder)
        for stage in PREVIOUS_YEAR_STAGES:
            try:
                importlib.import_module(f"sipas_lib.stages.{stage}").run(paths, last)
            except StageError as err:
                raise StageError(f"previous year {last.year} ({data_dir}), stage {stage}: {err}") from None
            except Exception as err:  # an input error or a bug: still say which year and stage
                raise StageError(f"previous year {last.year} ({data_dir}), stage {stage}: "
                                 f"{type(err).__name__}: {err}") from err
        saved = {**key, "data_dir": str(data_dir), "tables": _tables(paths.results),
                 "computed_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "compute_seconds": round(time.perf_counter() - started, 3)}
        (folder / MANIFEST).write_text(json.dumps(saved, ensure_ascii=False, indent=1), encoding="utf-8")
        reused = False
    else:
        reused = True
    outcome = {"results": str(folder / "results"), "reused": reused, "seconds": time.perf_counter() - started,
               "computed_at": saved["computed_at"], "year": last.year}
    write_page(folder, saved, outcome, settings.lang)
    return outcome


def run_in_kernel(previous_data_dir: str, run_dir: str) -> dict[str, Any]:
    """:func:`compute_previous_year` with the run's saved settings (``<run_dir>/settings.yaml``): what the
    runner calls in one of its kernels, with plain arguments."""
    return compute_previous_year(previous_data_dir, run_dir, load_run_settings(run_dir))


LABELS = {
    "vi": {"title": "Năm trước ({year}): kết quả để so sánh với năm nay", "reused": "Dùng lại kết quả đã tính",
           "computed": "Tính lại trong lượt chạy này", "when": "Tính lúc", "inputs": "Tệp đầu vào (SHA-256)",
           "tables": "Bảng kết quả", "rows": "Số dòng", "file": "Tệp", "folder": "Thư mục dữ liệu",
           "why": "Kết quả chỉ được dùng lại khi dữ liệu năm trước, cấu hình và phiên bản phần mềm không đổi."},
    "en": {"title": "Previous year ({year}): results for the year-on-year comparison", "reused": "Reused the results computed earlier",
           "computed": "Computed in this run", "when": "Computed at", "inputs": "Input files (SHA-256)",
           "tables": "Result tables", "rows": "Rows", "file": "File", "folder": "Data folder",
           "why": "The results are reused only while last year's data, the settings and the software are unchanged."},
}


def write_page(folder: Path, manifest: dict[str, Any], outcome: dict[str, Any], lang: str) -> Path:
    """``previous_year/index.html``: where last year's figures came from (inputs, tables, computed or reused)."""
    import jinja2
    import pyarrow.parquet as pq

    from sipas_lib.runner.export import TEMPLATES_DIR

    labels = LABELS.get(lang, LABELS["en"])
    tables = []
    for name in sorted(manifest.get("tables", {})):
        path = folder / "results" / name
        rows = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" and path.exists() else None
        tables.append((name, rows))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True)
    page = env.get_template("previous_year.html.j2").render(
        lang=lang, labels=labels, title=labels["title"].format(year=outcome["year"]),
        status=labels["reused" if outcome["reused"] else "computed"], computed_at=manifest.get("computed_at", ""),
        data_dir=manifest.get("data_dir", ""), inputs=sorted(manifest.get("inputs", {}).items()), tables=tables)
    target = folder / PAGE
    target.write_text(page, encoding="utf-8")
    return target

