"""Phụ lục 3 (Mẫu số 1, Mẫu số 2) and Phụ lục 4 as Excel in the template's layout (issue 15): reopening
a workbook gives the numbers of the HTML tables and of the result tables; cells from data never run."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_run
from openpyxl import load_workbook

from sipas_lib import admin_reports as A
from sipas_lib import config, exports, schemas


@pytest.fixture(scope="module")
def admin_run(tiny_previous_admin_run, tmp_path_factory):
    """Stages 20, 70 and 80 on the tiny demo's previous year (departments and districts, before the
    2025 reform: both Phụ lục 3 forms; conftest's shared run, copied), and the workbooks written from them."""
    paths = copy_run(tiny_previous_admin_run.paths, tmp_path_factory.mktemp("xl") / "run")
    settings = tiny_previous_admin_run.settings
    written = {p.name: p for p in exports.admin_workbooks(paths, settings)}
    return paths, settings, written


def _number(text: str) -> float:
    """A Vietnamese-formatted count ``1.200`` or percent ``92,31 %`` as a number."""
    return float(text.replace(".", "").replace(",", ".").replace("%", "").strip())


def _html_value(text: str):
    """What a cell of :func:`admin_reports.monthly_table` says: None, a count, a rate (as a share), or text."""
    if text == "":
        return None
    if re.fullmatch(r"[\d.]+", text):
        return int(_number(text))
    rate = re.fullmatch(r"([\d.,]+ %) \(([\d.]+)/([\d.]+)\)", text)
    if rate:
        return round(_number(rate.group(1)), 2)
    return text


def _sheet_rows(ws, header_row: int) -> list[tuple]:
    return [row for row in ws.iter_rows(min_row=header_row + 1, values_only=True)]


def _header_row(ws, first: str) -> int:
    return next(cell.row for cell in ws["A"] if cell.value == first)


def test_workbooks_are_written_beside_the_html(admin_run):
    paths, _, written = admin_run
    assert set(written) == {"phu_luc_3_mau_so_1.xlsx", "phu_luc_3_mau_so_2.xlsx", "phu_luc_4.xlsx"}
    assert all(p.parent == paths.run_dir / exports.DOWNLOADS_DIR for p in written.values())


def _check_monthly_workbook(book, counts, reasons, form, ids, names) -> None:
    """Every sheet of a Phụ lục 3 workbook holds the rows and numbers of :func:`admin_reports.monthly_table`,
    under the template's merged title block, with the form's adaptations (if any) below the table."""
    assert len(book.sheetnames) == 1 + len(ids) and book.sheetnames[1:] == ids
    template = A.monthly_template(form)
    notes = A.monthly_adaptations(form, "vi")
    for sheet, selection in zip(book.worksheets, [ids] + [[u] for u in ids]):
        html = A.monthly_table(counts, reasons, form, selection, lang="vi")
        header = _header_row(sheet, "STT")
        assert [c.value for c in sheet[header]] == list(html.columns)
        rows = _sheet_rows(sheet, header)
        assert len(rows) == len(html) + (1 + len(notes) if notes else 0)
        for (stt, text, month, ytd), html_row, trow in zip(rows, html.itertuples(index=False), template):
            assert stt == html_row[0] and text == html_row[1]
            for got, shown in ((month, html_row[2]), (ytd, html_row[3])):
                expected = _html_value(shown)
                if trow.kind == "rate" and isinstance(got, (int, float)):
                    assert round(got * 100, 2) == expected
                elif trow.kind == "header":
                    assert got is None and expected is None
                else:
                    assert got == expected or (got == "–" and expected == "–")
        # the template's title block is merged across the table and names the form and the unit
        merged = {str(r) for r in sheet.merged_cells.ranges}
        assert {"A1:D1", "A2:D2", "A3:D3", "A4:D4"} <= merged
        assert sheet["B2"].value is None and sheet["A2"].value == A.label(A.monthly_form(form), "vi")
        if len(selection) == 1:
            assert sheet["A3"].value == names[selection[0]]
        # after a blank row, every change from the template, each line merged across the table
        if notes:
            assert rows[len(html)] == (None,) * 4
            assert [r[0] for r in rows[len(html) + 1:]] == notes
            first = header + len(html) + 2
            assert {f"A{k}:D{k}" for k in range(first, first + len(notes))} <= merged
    # number formats: counts with separators, rates as percent
    formats = {sheet_cell.number_format for row in book.worksheets[0].iter_rows() for sheet_cell in row
               if isinstance(sheet_cell.value, (int, float))}
    assert formats == {A.COUNT_FORMAT, A.RATE_FORMAT}


@pytest.mark.parametrize("form,unit_type", [(1, "department"), (2, "district")])
def test_monthly_workbook_has_the_numbers_of_the_html_tables(admin_run, form, unit_type):
    paths, settings, written = admin_run
    counts = schemas.read_result(paths, "monthly_counts")
    reasons = schemas.read_result(paths, "monthly_overdue_reasons")
    units = schemas.read_result(paths, "units")
    ids = sorted(set(counts.loc[counts["unit_type"] == unit_type, "unit_id"]))
    assert ids
    book = load_workbook(written[f"phu_luc_3_mau_so_{form}.xlsx"])
    _check_monthly_workbook(book, counts, reasons, form, ids, dict(zip(units["unit_id"], units["name_vi"])))


def test_monthly_workbook_sums_the_result_table(admin_run):
    """The combined sheet's 'total dossiers' equals the sum over units of monthly_counts."""
    paths, _, written = admin_run
    counts = schemas.read_result(paths, "monthly_counts")
    sel = counts[(counts["unit_type"] == "department") & (counts["level"] == "unit") & (counts["metric"] == "total")]
    expected = sel.groupby("period")["value"].sum()
    ws = load_workbook(written["phu_luc_3_mau_so_1.xlsx"]).worksheets[0]
    total = next(r for r in _sheet_rows(ws, _header_row(ws, "STT")) if r[0] == "1")
    assert (total[2], total[3]) == (int(expected["month"]), int(expected["ytd"]))


def test_annual_workbook_has_the_rows_and_the_result_tables(admin_run):
    paths, settings, written = admin_run
    tables = {n: schemas.read_result(paths, n) for n in
              ("annual_survey_summary", "annual_survey_forms", "annual_survey_units", "annual_survey_quarantine")}
    options = settings.section("annual_survey_report")
    rows = A.annual_survey_rows(tables["annual_survey_summary"], tables["annual_survey_forms"],
                                tables["annual_survey_units"], lang="vi", plan_reference=options["plan_reference"],
                                implementer=options["implementer"], publication=options["publication"] or None)
    book = load_workbook(written["phu_luc_4.xlsx"])
    ws = book.worksheets[0]
    header = _header_row(ws, "STT")
    body = _sheet_rows(ws, header)[:len(rows)]
    assert [tuple(r[:3]) for r in body] == [tuple(r) for r in rows.itertuples(index=False)]
    assert [r[0] for r in body] == [f"{k}." for k in range(1, 11)]
    # forms by field x mode: the numbers of annual_survey_forms
    forms = tables["annual_survey_forms"]
    start = next(c.row for c in ws["A"] if c.row > header + len(rows) and c.value)
    modes = [c.value for c in ws[start]][1:]
    got = {}
    for r in ws.iter_rows(min_row=start + 1, values_only=True):
        for mode, value in zip(modes, r[1:]):
            if mode is not None:
                got[(r[0], mode)] = value
    assert sum(got.values()) == forms["n"].sum()
    assert sorted(v for v in got.values() if v) == sorted(forms["n"].tolist())
    # part 2: records set aside by rule
    q = tables["annual_survey_quarantine"]
    ws2 = book.worksheets[1]
    rows2 = [r for r in _sheet_rows(ws2, _header_row(ws2, ws2.cell(row=3, column=1).value)) if r[0]]
    assert [r[1] for r in rows2] == q["n"].tolist()
    assert [r[2] for r in rows2] == pytest.approx(q["share_of_received"].tolist(), abs=1e-15)


def test_cells_from_data_are_neutralised(tmp_path):
    """A unit name or an overdue reason that a spreadsheet would run as a formula is stored as text."""
    counts = pd.DataFrame({"unit_id": ["S01"] * 2, "unit_type": ["department"] * 2, "level": ["unit"] * 2,
                           "period": ["month", "ytd"], "metric": ["total"] * 2, "value": [5, 9]})
    reasons = pd.DataFrame({"unit_id": ["S01"], "level": ["unit"], "period": ["month"],
                            "reason": ["=HYPERLINK(\"http://x\")"], "n": [2]})
    path = A.monthly_workbook(counts, reasons, 1, ["S01"], {"S01": "=cmd|' /C calc'!A0"}, tmp_path / "x.xlsx",
                              year=2025, month=3)
    book = load_workbook(path)
    values = [c.value for ws in book.worksheets for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert "'=cmd|' /C calc'!A0" in values
    assert any(v.startswith("'=HYPERLINK") for v in values)
    # only the template's own row markers ("-") begin with a formula character
    assert {v for v in values if v.startswith(("=", "+", "-", "@"))} == {"-"}
    assert all(c.data_type != "f" for ws in book.worksheets for row in ws.iter_rows() for c in row)


# --------------------------------------------------------------------------------------------
# The two-tier year: the communes and wards report on the commune Mẫu số 2
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_tier_run(tiny_two_tier_demo, tiny_two_tier_settings, tmp_path_factory):
    """Stage 70 on the tiny two-tier year (departments, wards after the 2025 reform) and its workbooks."""
    from sipas_lib.stages import monthly_report

    paths = config.RunPaths(Path(tiny_two_tier_demo), tmp_path_factory.mktemp("xl2") / "run").ensure()
    report = monthly_report.run(paths, tiny_two_tier_settings)
    written = {p.name: p for p in exports.admin_workbooks(paths, tiny_two_tier_settings)}
    return paths, report, written


def test_two_tier_year_writes_the_commune_form2_chosen_by_the_registry(two_tier_run):
    paths, report, written = two_tier_run
    assert set(written) == {"phu_luc_3_mau_so_1.xlsx", "phu_luc_3_mau_so_2_xa_phuong.xlsx"}
    local = report.units.loc[report.units["unit_type"].isin(["commune", "ward"])]
    assert len(local) and local["parent_id"].map(report.units.set_index("unit_id")["unit_type"]).eq("province").all()
    counts = schemas.read_result(paths, "monthly_counts")
    reasons = schemas.read_result(paths, "monthly_overdue_reasons")
    ids = sorted(set(counts.loc[counts["unit_type"].isin(["commune", "ward"]), "unit_id"]))
    assert ids and A.units_by_monthly_form(report.units, counts["unit_id"])["form2_commune"] == ids
    names = dict(zip(report.units["unit_id"], report.units["name_vi"]))
    book = load_workbook(written["phu_luc_3_mau_so_2_xa_phuong.xlsx"])
    _check_monthly_workbook(book, counts, reasons, "form2_commune", ids, names)
    ws = book.worksheets[0]
    assert [r[:2] for r in _sheet_rows(ws, _header_row(ws, "STT"))[:2]] == [("A", "TẠI UBND XÃ/PHƯỜNG"),
                                                                           ("I", A.monthly_template(2)[1].text_vi)]


def test_commune_workbook_sums_the_result_table(two_tier_run):
    """The combined sheet's counts (total, by field) are the sums over the communes and wards of monthly_counts."""
    paths, _, written = two_tier_run
    counts = schemas.read_result(paths, "monthly_counts")
    local = counts[counts["unit_type"].isin(["commune", "ward"]) & (counts["level"] == "unit")]
    expected = local.groupby(["metric", "period"])["value"].sum()
    ws = load_workbook(written["phu_luc_3_mau_so_2_xa_phuong.xlsx"]).worksheets[0]
    rows = _sheet_rows(ws, _header_row(ws, "STT"))
    by_text = {r[1]: r for r in rows if r[0] in ("1", "-")}
    for text, metric in (("Tổng số hồ sơ cần giải quyết:", "total"), ("Lĩnh vực đất đai", "field_land_environment"),
                         ("Lĩnh vực xây dựng, đô thị", "field_construction_urban")):
        assert by_text[text][2:4] == (int(expected[(metric, "month")]), int(expected[(metric, "ytd")])), text
    assert int(expected[("total", "ytd")]) > 0
