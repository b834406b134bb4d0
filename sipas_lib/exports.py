"""Downloads for the tools people around a survey already use: SPSS and Stata files of the weighted
questionnaires, and the administrative reports (Phụ lục 3 and 4) as Excel workbooks.

Report layer. Everything is written into ``reports/<run>/downloads/`` from the run's result
tables (read through their contracts), so a download shows the same figures as the HTML:

* ``sipas_<year>_weighted.sav`` (SPSS) and ``sipas_<year>_weighted.dta`` (Stata 15+): one row per
  weighted questionnaire (``responses_weighted``), with variable labels and value labels in the
  run's language (``common.lang``: Vietnamese by default, English on request), the final weight
  and the design variables (strata, PSU, fpc) named in the file's documentation (SPSS: file
  label and document notes with the Stata/SPSS/R design commands; Stata: the file label and the
  variable labels, since Stata files written by ReadStat carry no notes). No personal data and
  no free text: only the contract's columns, less the free-text answers and where a record was
  read (``source_file`` may carry a name);
* ``phu_luc_3_mau_so_1.xlsx`` / ``phu_luc_3_mau_so_2.xlsx`` (districts) or
  ``phu_luc_3_mau_so_2_xa_phuong.xlsx`` (communes and wards, two-tier years) and ``phu_luc_4.xlsx``:
  the monthly and annual administrative reports in the template's layout (:mod:`sipas_lib.admin_reports`).

Labels longer than a format allows are cut with ``…`` (SPSS: 256 bytes for a variable label, 120
for a value label, 64 for the file label; Stata: 80 characters), and what is written is exactly
what :func:`codebook` returns, so a test can read the files back and compare.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sipas_lib import admin_reports, config, schemas
from sipas_lib.instrument import load_instrument
from sipas_lib.schemas.intake_quality import DEMOGRAPHIC_CODES, INSTRUMENTS, ITEM_SCALES
from sipas_lib.settings import Settings
from sipas_lib.texts import load_texts

DOWNLOADS_DIR = "downloads"
#: Columns of ``responses_weighted`` never written to a download: free text (may hold what a
#: respondent typed about themselves) and where a record was read (a file name may name a person).
EXCLUDED_COLUMNS = frozenset(schemas.FREE_TEXT_COLUMNS | {"source_file", "source_row"})
#: Flag columns written as 0/1 with value labels ``Không``/``Có`` (``No``/``Yes``).
FLAG_COLUMNS = ("gave_feedback",)

# limits of the formats (ReadStat refuses a longer Stata label and cuts SPSS labels silently)
SAV_VARIABLE_LABEL_BYTES = 256
SAV_VALUE_LABEL_BYTES = 120
SAV_FILE_LABEL_BYTES = 64
SAV_NOTE_BYTES = 80  # SPSS document lines are 80 bytes each
DTA_LABEL_CHARS = 80

_TEXT = load_texts("exports")


def _t(key: str, lang: str, **values) -> str:
    text = _TEXT[key][lang]
    return text.format(**values) if values else text


def fit(text: str, *, max_bytes: int | None = None, max_chars: int | None = None) -> str:
    """``text`` cut (with ``…``) to at most ``max_chars`` characters and ``max_bytes`` UTF-8 bytes.

    Examples
    --------
    >>> fit("Rất không hài lòng", max_chars=8)
    'Rất khô…'
    >>> len(fit("ộ" * 50, max_bytes=120).encode())
    120
    """
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars - 1] + "…"
    if max_bytes is not None and len(text.encode("utf-8")) > max_bytes:
        while len(text.encode("utf-8")) + len("…".encode("utf-8")) > max_bytes:
            text = text[:-1]
        text += "…"
    return text


def microdata_columns(weighted: pd.DataFrame) -> list[str]:
    """The columns of ``responses_weighted`` a download carries: the contract's, in its order,
    less :data:`EXCLUDED_COLUMNS` (and never a personal column)."""
    contract = schemas.contract("responses_weighted").columns
    return [c for c in contract if c in weighted.columns and c not in EXCLUDED_COLUMNS
            and c not in schemas.PERSONAL_COLUMNS]


def microdata(weighted: pd.DataFrame) -> pd.DataFrame:
    """The table written to SPSS and Stata: :func:`microdata_columns`, flags as 0/1, text as text.

    Values are not changed otherwise: answers and demographics stay the codes of the form
    (1–5, empty = not answered), weights stay the weighting stage's floats (written as doubles, so
    they round-trip exactly), ``survey_date`` stays a date.
    """
    out = weighted[microdata_columns(weighted)].copy()
    for column in FLAG_COLUMNS:
        if column in out:
            out[column] = out[column].astype(float)
    for column in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_datetime64_any_dtype(out[column])):
            out[column] = out[column].astype(object).where(out[column].notna(), "").astype(str)
    if "survey_date" in out:
        out["survey_date"] = pd.to_datetime(out["survey_date"]).astype("datetime64[ns]")
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Codebook:
    """What a download says about its variables: labels, value labels, the file's documentation."""

    variable_labels: dict[str, str]
    value_labels: dict[str, dict[float, str]]
    file_label: str
    notes: list[str] = field(default_factory=list)

    def for_format(self, fmt: str) -> "Codebook":
        """The same codebook cut to the limits of ``fmt`` (``"sav"`` or ``"dta"``)."""
        if fmt == "sav":
            return Codebook(
                {k: fit(v, max_bytes=SAV_VARIABLE_LABEL_BYTES) for k, v in self.variable_labels.items()},
                {k: {c: fit(t, max_bytes=SAV_VALUE_LABEL_BYTES) for c, t in v.items()}
                 for k, v in self.value_labels.items()},
                fit(self.file_label, max_bytes=SAV_FILE_LABEL_BYTES),
                [line for note in self.notes for line in _note_lines(note)],
            )
        if fmt == "dta":
            return Codebook(
                {k: fit(v, max_chars=DTA_LABEL_CHARS) for k, v in self.variable_labels.items()},
                {k: {c: fit(t, max_chars=DTA_LABEL_CHARS) for c, t in v.items()} for k, v in self.value_labels.items()},
                fit(self.file_label, max_chars=DTA_LABEL_CHARS),
                [],
            )
        raise ValueError(f"format must be 'sav' or 'dta', got {fmt!r}")


def _note_lines(note: str) -> list[str]:
    """A note split into SPSS document lines of at most :data:`SAV_NOTE_BYTES` bytes, at spaces."""
    lines, line = [], ""
    for word in note.split(" "):
        candidate = f"{line} {word}" if line else word
        if len(candidate.encode("utf-8")) <= SAV_NOTE_BYTES:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = fit(word, max_bytes=SAV_NOTE_BYTES)
    if line:
        lines.append(line)
    return lines


def _instrument_order(forms: list[str]) -> list:
    """Instruments in the order of the forms in the data, then the other shipped ones."""
    ordered = [f for f in dict.fromkeys(forms) if f in INSTRUMENTS] + [f for f in INSTRUMENTS if f not in forms]
    return [load_instrument(f) for f in ordered]


def codebook(columns: list[str], spec, *, year: int, n: int, lang: str = config.DEFAULT_LANG,
             forms: list[str] | None = None) -> Codebook:
    """Variable labels, value labels and the documentation of a download.

    Items take the text of the first form in ``forms`` (the data's) that asks them, prefixed
    with their code (``c01. Trụ sở cơ quan …``), and that form's scale labels; demographics their
    question and answer labels; the other columns the wording of ``texts/exports.yaml``. The notes
    name the final weight, the weighting steps and the design (strata, PSU, fpc, lonely-PSU rule,
    calibration) as saved in ``results/design.json`` (``spec``: a
    :class:`sipas_lib.weighting.DesignSpec`), with the Stata, SPSS and R commands that declare it.
    """
    instruments = _instrument_order(list(forms or []))
    variable_labels: dict[str, str] = {}
    value_labels: dict[str, dict[float, str]] = {}
    for column in columns:
        if column in ITEM_SCALES:
            inst = next(i for i in instruments if column in i.item_codes)
            variable_labels[column] = f"{column}. {inst.label(column, lang)}"
            value_labels[column] = {float(k): v[lang] for k, v in sorted(inst.scale_labels.items())}
        elif column in DEMOGRAPHIC_CODES:
            inst = next(i for i in instruments if column in set(i.demographics["code"]))
            row = inst.demographics.set_index("code").loc[column]
            variable_labels[column] = str(row[f"text_{lang}"]) or column
            value_labels[column] = {float(k): v[lang] for k, v in sorted(row["values"].items())}
        elif f"var_{column}" in _TEXT:
            variable_labels[column] = _t(f"var_{column}", lang)
        else:
            variable_labels[column] = column
    for column in FLAG_COLUMNS:
        if column in columns:
            value_labels[column] = {0.0: _t("no", lang), 1.0: _t("yes", lang)}
    names = {"weights": spec.weights, "strata": spec.strata, "psu": spec.psu, "fpc": spec.fpc or "—"}
    steps = " → ".join(c for c in (spec.base_weight, spec.nonresponse_weight, spec.calibration_weight, spec.weights)
                       if c in columns)
    notes = [
        _t("note_what", lang, year=year, n=n),
        _t("note_weight", lang, steps=steps, **names),
        _t("note_design", lang, lonely=spec.lonely_psu, calibration=spec.calibration, **names),
        _t("note_stata", lang, **names),
        _t("note_spss", lang, **names),
        _t("note_r", lang, **names),
    ]
    file_label = _t("file_label", lang, year=year, weights=spec.weights)
    return Codebook(variable_labels, value_labels, file_label, notes)


def stata_codebook(book: Codebook, spec, year: int, lang: str) -> Codebook:
    """The Stata cut of ``book``: Stata files written by ReadStat carry no notes, so the file
    label itself names the weight and the design variables."""
    cut = book.for_format("dta")
    label = fit(_t("stata_label", lang, year=year, weights=spec.weights, strata=spec.strata, psu=spec.psu,
                   fpc=spec.fpc or "—"), max_chars=DTA_LABEL_CHARS)
    return Codebook(cut.variable_labels, cut.value_labels, label, [])


def write_spss(data: pd.DataFrame, book: Codebook, path: str | os.PathLike) -> Path:
    """Write ``data`` (:func:`microdata`) as an SPSS ``.sav`` with ``book`` cut to SPSS's limits."""
    import pyreadstat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut = book.for_format("sav")
    pyreadstat.write_sav(data, str(path), file_label=cut.file_label, column_labels=cut.variable_labels,
                         variable_value_labels=cut.value_labels, note=cut.notes or None,
                         variable_measure={c: "nominal" for c in cut.value_labels})
    return path


def write_stata(data: pd.DataFrame, book: Codebook, path: str | os.PathLike) -> Path:
    """Write ``data`` (:func:`microdata`) as a Stata 15 ``.dta`` with ``book`` (already cut, see
    :func:`stata_codebook`)."""
    import pyreadstat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pyreadstat.write_dta(data, str(path), file_label=book.file_label, column_labels=book.variable_labels,
                         variable_value_labels=book.value_labels, version=15)
    return path


def microdata_files(paths: config.RunPaths, settings: Settings) -> list[Path]:
    """Write the weighted questionnaires as ``.sav`` and ``.dta`` into ``downloads/``.

    Reads ``responses_weighted`` and ``results/design.json`` (written by the weighting stage).

    Raises
    ------
    ContractError, StageError
        When the weighting stage's outputs are missing or break their contract.
    """
    from sipas_lib.stages.weighting import load_design_spec

    weighted = schemas.read_result(paths, "responses_weighted")
    spec = load_design_spec(paths)
    data = microdata(weighted)
    lang, year = settings.lang, settings.year
    book = codebook(list(data.columns), spec, year=year, n=len(data), lang=lang,
                    forms=list(weighted["form"].astype(str)))
    folder = Path(paths.run_dir) / DOWNLOADS_DIR
    stem = f"sipas_{year}_weighted" + ("" if lang == config.DEFAULT_LANG else f"_{lang}")
    return [write_spss(data, book, folder / f"{stem}.sav"),
            write_stata(data, stata_codebook(book, spec, year, lang), folder / f"{stem}.dta")]


#: The workbook of each Phụ lục 3 form (:data:`sipas_lib.admin_reports.MONTHLY_FORMS`).
MONTHLY_WORKBOOKS = {"form1": "phu_luc_3_mau_so_1.xlsx", "form2": "phu_luc_3_mau_so_2.xlsx",
                     "form2_commune": "phu_luc_3_mau_so_2_xa_phuong.xlsx"}


def admin_workbooks(paths: config.RunPaths, settings: Settings) -> list[Path]:
    """Write Phụ lục 3 (one workbook per form with units) and Phụ lục 4 as ``.xlsx`` into ``downloads/``,
    from the tables of stages 70 and 80 (each only when that stage's tables are there).

    Which form each unit reports on comes from the year's units registry, as in notebook 70
    (:func:`sipas_lib.admin_reports.units_by_monthly_form`): departments Mẫu số 1, districts Mẫu số 2,
    the communes and wards of a two-tier year the commune Mẫu số 2.
    """
    from sipas_lib.stages.monthly_report import registry

    folder = Path(paths.run_dir) / DOWNLOADS_DIR
    lang = settings.lang
    written: list[Path] = []
    counts = schemas.read_result(paths, "monthly_counts", required=False)
    reasons = schemas.read_result(paths, "monthly_overdue_reasons", required=False)
    overview = schemas.read_result(paths, "monthly_overview", required=False)
    if counts is not None and reasons is not None and overview is not None and len(overview):
        units = registry(paths)
        names = dict(zip(units["unit_id"].astype(str), units[f"name_{lang}"].astype(str)))
        month = int(overview["month"].iloc[0])
        for form, ids in admin_reports.units_by_monthly_form(units, counts["unit_id"]).items():
            written.append(admin_reports.monthly_workbook(
                counts, reasons, form, ids, names, folder / MONTHLY_WORKBOOKS[form],
                year=settings.year, month=month, lang=lang))
    tables = {name: schemas.read_result(paths, name, required=False)
              for name in ("annual_survey_summary", "annual_survey_forms", "annual_survey_units",
                           "annual_survey_quarantine")}
    if all(t is not None for t in tables.values()):
        options = settings.section("annual_survey_report")
        written.append(admin_reports.annual_survey_workbook(
            tables["annual_survey_summary"], tables["annual_survey_forms"], tables["annual_survey_units"],
            tables["annual_survey_quarantine"], folder / "phu_luc_4.xlsx", year=settings.year, lang=lang,
            plan_reference=options["plan_reference"], implementer=options["implementer"],
            publication=options["publication"] or None))
    return written


def write_downloads(paths: config.RunPaths, settings: Settings) -> tuple[list[Path], list[str]]:
    """Every download this run's results allow; returns ``(files written, problems)``.

    A download whose tables are missing (a stage not run) is left out without a problem; a
    download that fails (a table breaking its contract) is reported in ``problems`` and the
    others are still written, so a run never loses its HTML over a download.
    """
    from sipas_lib.stages import StageError

    written: list[Path] = []
    problems: list[str] = []
    if schemas.result_path(paths, "responses_weighted").exists():
        try:
            written += microdata_files(paths, settings)
        except (ValueError, StageError, OSError) as exc:
            problems.append(f"SPSS/Stata: {type(exc).__name__}: {exc}")
    try:
        written += admin_workbooks(paths, settings)
    except (ValueError, KeyError, OSError) as exc:
        problems.append(f"Excel: {type(exc).__name__}: {exc}")
    return written, problems


# --------------------------------------------------------------------------------------------
# what the index page links
# --------------------------------------------------------------------------------------------

#: Groups of downloads in the order the index page shows them: key, how a file is recognised.
DOWNLOAD_KINDS = ("sav", "dta", "pl3", "pl4", "pdf", "pdf_scorecards", "xlsform", "other")


def download_kind(relative: Path) -> str:
    """The group of a file under the run folder (a path relative to it), one of :data:`DOWNLOAD_KINDS`.

    Examples
    --------
    >>> download_kind(Path("downloads/pdf/unit_scorecard/S01.pdf")), download_kind(Path("downloads/phu_luc_4.xlsx"))
    ('pdf_scorecards', 'pl4')
    """
    parts, name = relative.parts, relative.name.lower()
    if relative.suffix == ".sav":
        return "sav"
    if relative.suffix == ".dta":
        return "dta"
    if relative.suffix == ".pdf":
        return "pdf_scorecards" if "unit_scorecard" in parts else "pdf"
    if "xlsform" in name or "forms" in parts or "xlsform" in parts or (
            relative.suffix == ".xlsx" and relative.stem in INSTRUMENTS):
        return "xlsform"
    if name.startswith("phu_luc_3"):
        return "pl3"
    if name.startswith("phu_luc_4"):
        return "pl4"
    return "other"


def list_downloads(run_dir: str | os.PathLike, lang: str = config.DEFAULT_LANG) -> list[dict]:
    """The downloads of a run, grouped for the index page.

    Every file under ``downloads/`` (and the XLSForm files of ``sipas form export`` under
    ``forms/``, if any) as ``[{"kind", "title", "files": [{"href", "name", "bytes"}]}]`` in the
    order of :data:`DOWNLOAD_KINDS`; links relative to the run folder. Empty when nothing was written.
    """
    run_dir = Path(run_dir)
    found: dict[str, list[dict]] = {}
    for folder in (run_dir / DOWNLOADS_DIR, run_dir / "forms"):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            relative = path.relative_to(run_dir)
            entry = {"href": relative.as_posix(), "name": path.stem if relative.suffix == ".pdf" and
                     "unit_scorecard" in relative.parts else path.name, "bytes": path.stat().st_size}
            found.setdefault(download_kind(relative), []).append(entry)
    return [{"kind": kind, "title": _t(f"dl_{kind}", lang), "files": found[kind]}
            for kind in DOWNLOAD_KINDS if kind in found]
