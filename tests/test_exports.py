"""SPSS and Stata downloads (issue 15): read back, values, labels and weights round-trip exactly;
no personal data or free text in any download; the index page links every download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from sipas_lib import config, exports, schemas
from sipas_lib.stages.weighting import load_design_spec

from conftest import copy_run


@pytest.fixture(scope="module")
def weighted_run(tiny_previous_admin_run):
    """A run folder with intake, weighting, monthly and Phụ lục 4 results (read-only) of the tiny
    demo's previous year: a year before the 2025 reform, with departments and districts, so that
    both Phụ lục 3 forms (Mẫu số 1 and Mẫu số 2) are written (conftest's shared run)."""
    return tiny_previous_admin_run.paths, tiny_previous_admin_run.settings


READERS = {".sav": pyreadstat.read_sav, ".dta": pyreadstat.read_dta}


def _read(path: Path):
    return READERS[path.suffix](str(path))


def _expected(paths, settings):
    weighted = schemas.read_result(paths, "responses_weighted")
    spec = load_design_spec(paths)
    data = exports.microdata(weighted)
    book = exports.codebook(list(data.columns), spec, year=settings.year, n=len(data), lang=settings.lang,
                            forms=list(weighted["form"]))
    return weighted, spec, data, book


@pytest.mark.parametrize("suffix", [".sav", ".dta"])
def test_values_labels_and_weights_round_trip(weighted_run, tmp_path, suffix):
    paths = copy_run(*weighted_run[:1], tmp_path / "run")
    settings = weighted_run[1]
    written = exports.microdata_files(paths, settings)
    path = next(p for p in written if p.suffix == suffix)
    assert path.parent == paths.run_dir / exports.DOWNLOADS_DIR
    weighted, spec, data, book = _expected(paths, settings)
    back, meta = _read(path)
    assert list(back.columns) == list(data.columns) and len(back) == len(weighted) > 50
    # weights and every number exactly (doubles, NaN where not answered)
    for column in data.columns:
        if pd.api.types.is_float_dtype(data[column]):
            assert np.array_equal(back[column].to_numpy(float), data[column].to_numpy(float), equal_nan=True), column
    for column in ("w_base", "w_nr", "w_cal", "w_final", "N_unit"):
        assert np.array_equal(back[column].to_numpy(), weighted[column].to_numpy()), column
    # text and dates as they are
    for column in ("form_id", "unit_id", "unit_type", "form", "field", "channel", "stratum", "psu", "cal_cell"):
        assert back[column].astype(str).tolist() == weighted[column].astype(str).tolist(), column
    dates = pd.to_datetime(back["survey_date"])
    assert dates.dt.date.tolist() == pd.to_datetime(weighted["survey_date"]).dt.date.tolist()
    assert back["gave_feedback"].tolist() == weighted["gave_feedback"].astype(float).tolist()
    # labels exactly as the codebook says (cut to the format's limits)
    cut = book.for_format("sav") if suffix == ".sav" else exports.stata_codebook(book, spec, settings.year,
                                                                                 settings.lang)
    assert meta.column_names_to_labels == cut.variable_labels
    assert {k: {float(c): t for c, t in v.items()} for k, v in meta.variable_value_labels.items()} == cut.value_labels
    assert meta.file_label == cut.file_label
    assert meta.variable_value_labels["c01"][5] == "Rất hài lòng"
    assert meta.column_names_to_labels["w_final"].startswith("TRỌNG SỐ CUỐI CÙNG")
    # the final weight and the design variables are named in the file's documentation
    documentation = " ".join(meta.notes or []) + " " + meta.file_label
    for name in (spec.weights, spec.strata, spec.psu, spec.fpc):
        assert name in documentation, name
    if suffix == ".sav":
        assert meta.notes == cut.notes and any("svyset psu [pweight=w_final]" in n for n in cut.notes)


def test_english_labels_on_request(weighted_run, tmp_path):
    paths = copy_run(weighted_run[0], tmp_path / "run")
    settings = weighted_run[1].replace(lang="en")
    sav, dta = exports.microdata_files(paths, settings)
    assert sav.name == f"sipas_{settings.year}_weighted_en.sav" and dta.suffix == ".dta"
    _, meta = _read(sav)
    assert meta.variable_value_labels["c01"][5] == "Very satisfied"
    assert meta.variable_value_labels["gender"] == {1: "Male", 2: "Female"}
    assert meta.column_names_to_labels["w_final"] == "FINAL WEIGHT (use for every estimate)"
    assert "Final weight: w_final" in " ".join(meta.notes)


def test_no_personal_data_and_no_free_text(weighted_run, tmp_path):
    """A free-text answer that reached the results (keep_free_text) never reaches a download."""
    paths = copy_run(weighted_run[0], tmp_path / "run")
    weighted = schemas.read_result(paths, "responses_weighted")
    secret = "Nguyễn Văn Bímật 0912345678"
    weighted["education_other"] = pd.Series([secret] * len(weighted), dtype="str")
    schemas.write_result(paths, "responses_weighted", weighted)
    for path in exports.microdata_files(paths, weighted_run[1]):
        back, meta = _read(path)
        forbidden = schemas.PERSONAL_COLUMNS | schemas.FREE_TEXT_COLUMNS | {"source_file", "source_row"}
        assert not forbidden & set(back.columns), path.name
        assert "Bímật" not in back.astype(str).to_csv(), path.name


def test_every_download_type_is_checked_for_personal_data(weighted_run, tmp_path):
    """The personal-data check of the publishing tests reads SPSS, Stata, Excel and PDF files: it
    finds a name planted in each, and none in the tiny run's real downloads."""
    from publishing_checks import find_personal_data, personal_strings

    from sipas_lib.runner.export import export_pdf

    paths = copy_run(weighted_run[0], tmp_path / "run")
    written, problems = exports.write_downloads(paths, weighted_run[1])
    assert problems == []
    assert {p.suffix for p in written} == {".sav", ".dta", ".xlsx"}
    page = paths.run_dir / "html" / "page.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("<html><body><p>Báo cáo</p></body></html>", encoding="utf-8")
    export_pdf(page, paths.run_dir / exports.DOWNLOADS_DIR / "pdf" / "page.pdf")
    secrets = personal_strings(paths.data_dir)
    assert len(secrets) > 20
    assert find_personal_data(paths.run_dir, secrets) == []
    # plant one name in a file of each type: each must be found
    name = sorted(s for s in secrets if not s.isdigit())[0]
    leak = tmp_path / "leak"
    leak.mkdir()
    frame = pd.DataFrame({"x": [name], "y": [1.0]})
    pyreadstat.write_sav(frame, str(leak / "a.sav"))
    pyreadstat.write_dta(frame.assign(x="ok"), str(leak / "b.dta"), column_labels={"x": name})
    from sipas_lib.spreadsheet import write_xlsx

    write_xlsx(frame, leak / "c.xlsx")
    (leak / "d.html").write_text(f"<p>{name}</p>", encoding="utf-8")
    export_pdf(leak / "d.html", leak / "e.pdf")
    (leak / "d.html").unlink()
    found = sorted(hit.split(":")[0] for hit in find_personal_data(leak, {name}))
    assert found == ["a.sav", "b.dta", "c.xlsx", "e.pdf"]


def test_fit_cuts_to_characters_and_bytes():
    assert exports.fit("abc", max_chars=3) == "abc"
    assert exports.fit("abcd", max_chars=3) == "ab…"
    cut = exports.fit("ộ" * 100, max_bytes=120)
    assert len(cut.encode()) <= 120 and cut.endswith("…")
    assert all(len(line.encode()) <= exports.SAV_NOTE_BYTES for line in exports._note_lines("từ " * 100))


def test_missing_weighting_is_no_problem_and_no_file(tmp_path, tiny_settings):
    paths = config.RunPaths(tmp_path / "data", tmp_path / "run").ensure()
    assert exports.write_downloads(paths, tiny_settings) == ([], [])
    assert exports.list_downloads(paths.run_dir) == []


def test_index_page_links_every_download(weighted_run, tmp_path):
    from conftest import index_links

    from sipas_lib.runner import RunSummary, write_index

    paths = copy_run(weighted_run[0], tmp_path / "run")
    written, _ = exports.write_downloads(paths, weighted_run[1])
    pdf = paths.run_dir / exports.DOWNLOADS_DIR / "pdf" / "unit_scorecard" / "S01.pdf"
    pdf.parent.mkdir(parents=True)
    pdf.write_bytes(b"%PDF-1.7\n")
    forms = paths.run_dir / exports.DOWNLOADS_DIR / "forms"
    forms.mkdir()
    (forms / "hanoi_pl5_district.xlsx").write_bytes(b"x")
    summary = RunSummary(paths.run_dir, paths.run_dir / "index.html", [], 1.0, weighted_run[1])
    write_index(summary, download_problems=["PDF export needs WeasyPrint <b>"])
    links = set(index_links(summary.index))
    files = {p.relative_to(paths.run_dir).as_posix() for p in (paths.run_dir / "downloads").rglob("*") if p.is_file()}
    assert files == {p.relative_to(paths.run_dir).as_posix() for p in written} | {
        "downloads/pdf/unit_scorecard/S01.pdf", "downloads/forms/hanoi_pl5_district.xlsx"}
    assert files <= links
    page = summary.index.read_text(encoding="utf-8")
    for title in ("SPSS (.sav)", "Stata (.dta)", "Phụ lục 3", "Phụ lục 4", "XLSForm", "phiếu điểm"):
        assert title in page, title
    assert "PDF export needs WeasyPrint &lt;b&gt;" in page
    kinds = [g["kind"] for g in exports.list_downloads(paths.run_dir)]
    assert kinds == ["sav", "dta", "pl3", "pl4", "pdf_scorecards", "xlsform"]
