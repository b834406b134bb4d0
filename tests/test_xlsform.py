"""XLSForm export (sipas_lib.xlsform): the form converts with pyxform and matches the instrument.

The form id's check-digit constraint is evaluated by a real XPath 1.0 engine (elementpath) and
compared with sipas_lib.formids on valid ids, every single-digit error, every adjacent swap and
random digit strings.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import elementpath
import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from sipas_lib import formids, xlsform
from sipas_lib.cli import app
from sipas_lib.instrument import FORM_OF_UNIT_TYPE, list_instruments, load_instrument
from sipas_lib.units import load_units, units_on

NS = {"xf": "http://www.w3.org/2002/xforms", "h": "http://www.w3.org/1999/xhtml",
      "jr": "http://openrosa.org/javarosa"}
VI, EN = xlsform.LANGUAGE_COLUMNS["vi"], xlsform.LANGUAGE_COLUMNS["en"]
FIXED_FIELDS = ["form_id", "unit_id", "channel", "field", "survey_date"]


def _unit_types_of(form_unit_type):
    """Registry unit types that answer a form (the instrument module's vocabulary); None = any form."""
    return [t for t, form in FORM_OF_UNIT_TYPE.items() if form_unit_type is None or form == form_unit_type]


def _units_for(instrument):
    return load_units()  # the bundled registry holds departments, districts, communes and wards


@pytest.fixture(scope="module", params=list_instruments())
def exported(request, tmp_path_factory):
    """(instrument, its sheets, the written file, the parsed XForm)."""
    instrument = load_instrument(request.param)
    units = _units_for(instrument)
    path = xlsform.write_xlsform(instrument, units, tmp_path_factory.mktemp("xlsform") / f"{instrument.id}.xlsx")
    from pyxform.xls2xform import convert

    result = convert(xlsform=str(path), validate=False)
    assert result.warnings == [], result.warnings
    return instrument, units, xlsform.xlsform_sheets(instrument, units), path, ET.fromstring(result.xform)


def _binds(xform) -> dict[str, dict]:
    return {b.get("nodeset"): b.attrib for b in xform.iter(f"{{{NS['xf']}}}bind")}


def _leaf_paths(xform) -> dict[str, str]:
    """Question name -> its path in the instance (/data/group/name): body controls that take an answer."""
    out = {}
    body = xform.find("h:body", NS)
    binds = _binds(xform)
    for tag in ("input", "select1", "select"):
        for control in body.iter(f"{{{NS['xf']}}}{tag}"):
            ref = control.get("ref")
            if binds.get(ref, {}).get("readonly") == "true()":
                continue  # a note: text shown, nothing answered
            name = ref.rsplit("/", 1)[1]
            assert name not in out, f"question {name} appears twice"
            out[name] = ref
    return out


def _itext(xform, lang: str) -> dict[str, str]:
    trans = xform.find(f".//xf:itext/xf:translation[@lang='{lang}']", NS)
    assert trans is not None, f"no {lang} translation"
    return {t.get("id"): "".join(v.itertext()) for t in trans.findall("xf:text", NS)
            for v in t.findall("xf:value", NS) if v.get("form") is None}


def _conditions(instrument) -> set[str]:
    import yaml

    raw = yaml.safe_load(open(instrument.path, encoding="utf-8"))
    return set(instrument.items["condition"].dropna()) | {b["condition"] for b in raw.get("blocks") or []
                                                          if b.get("condition")}


def test_questions_match_the_instrument_one_to_one(exported):
    instrument, _, _, _, xform = exported
    leaves = _leaf_paths(xform)
    import yaml

    raw = yaml.safe_load(open(instrument.path, encoding="utf-8"))
    demographics = instrument.demographics
    others = [c for c in demographics["other_column"] if isinstance(c, str)]
    expected = (FIXED_FIELDS + instrument.item_codes + demographics["code"].tolist() + others
                + [q["code"] for q in raw.get("free_text") or []] + sorted(_conditions(instrument)))
    assert sorted(leaves) == sorted(expected)
    vi, en = _itext(xform, VI), _itext(xform, EN)
    for item in instrument.items.itertuples():
        select = xform.find(f"h:body//xf:select1[@ref='{leaves[item.code]}']", NS)
        assert select is not None, f"{item.code} is not a select_one"
        assert vi[f"{leaves[item.code]}:label"] == item.text_vi
        assert en[f"{leaves[item.code]}:label"] == item.text_en
    for d in demographics.itertuples():
        assert vi[f"{leaves[d.code]}:label"] == d.text_vi


def test_scale_choices_and_constraints(exported):
    instrument, _, sheets, _, xform = exported
    binds, leaves = _binds(xform), _leaf_paths(xform)
    scale = sheets["choices"].loc[sheets["choices"]["list_name"] == "scale"]
    assert scale["name"].tolist() == [str(v) for v in range(instrument.scale_min, instrument.scale_max + 1)]
    labels = {int(k): v for k, v in instrument.scale_labels.items()}
    assert scale[f"label::{VI}"].tolist() == [labels[v]["vi"] for v in range(1, 6)]
    for code in instrument.item_codes:
        assert binds[leaves[code]]["constraint"] == ". >= 1 and . <= 5"
        assert binds[leaves[code]].get("required", "false()") == "false()"  # item non-response is allowed
    for d in instrument.demographics.itertuples():
        listed = sheets["choices"].loc[sheets["choices"]["list_name"] == d.code, "name"].tolist()
        assert listed == [str(v) for v in instrument.demographic_values(d.code)]


def test_conditions_become_relevant_expressions(exported):
    instrument, _, _, _, xform = exported
    binds, leaves = _binds(xform), _leaf_paths(xform)
    for item in instrument.items.itertuples():
        path = leaves[item.code]
        ancestors = ["/".join(path.split("/")[:k]) for k in range(3, path.count("/") + 2)]
        relevant = " ".join(binds.get(a, {}).get("relevant", "") for a in ancestors)
        if isinstance(item.condition, str):
            assert re.search(rf"/{item.condition}\s+= 'yes'", relevant), (item.code, relevant)
        if item.element is not None and isinstance(item.element, str) and item.condition != "gave_feedback":
            assert "gave_feedback" not in relevant
    if "gave_feedback" in _conditions(instrument):
        # section V is shown only to respondents who gave feedback
        e5 = instrument.elements.loc[instrument.elements["condition"] == "gave_feedback", "code"].tolist()
        assert e5 and all("gave_feedback" in binds[f"/data/{code}"]["relevant"] for code in e5)


def test_form_id_is_required_with_its_check_digit(exported):
    _, _, _, _, xform = exported
    bind = _binds(xform)[_leaf_paths(xform)["form_id"]]
    assert bind["required"] == "true()"
    assert bind["constraint"] == xlsform.form_id_constraint()
    assert bind["type"] == "string"  # text keeps leading zeros of current ids


def test_units_choice_list_comes_from_the_registry(exported):
    instrument, units, sheets, _, _ = exported
    listed = sheets["choices"].loc[sheets["choices"]["list_name"] == "units"]
    kinds = _unit_types_of(instrument.unit_type)
    assert listed["name"].tolist() == units.loc[units["unit_type"].isin(kinds), "unit_id"].tolist()
    assert listed[f"label::{VI}"].tolist() == units.loc[units["unit_type"].isin(kinds), "name_vi"].tolist()


def test_written_file_is_not_altered(exported):
    """write_xlsx neutralises formula-like cells; no XLSForm cell may be touched by it."""
    _, _, sheets, path, _ = exported
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["survey", "choices", "settings"]
    for name, frame in sheets.items():
        rows = list(wb[name].iter_rows(values_only=True))
        assert list(rows[0]) == list(frame.columns)
        body = pd.DataFrame(rows[1:], columns=rows[0]).fillna("").astype(str)
        pd.testing.assert_frame_equal(body, frame.astype(str), check_dtype=False)
    settings = sheets["settings"].iloc[0]
    assert settings["default_language"] == VI and settings["form_id"] == exported[0].id


def test_version_changes_only_with_the_form():
    inst = load_instrument("hanoi_pl5_district")
    units = load_units()
    first = xlsform.xlsform_sheets(inst, units)["settings"]["version"].iloc[0]
    assert xlsform.xlsform_sheets(inst, units)["settings"]["version"].iloc[0] == first
    fewer = units.loc[units["unit_id"] != units.loc[units["unit_type"] == "district", "unit_id"].iloc[0]]
    assert xlsform.xlsform_sheets(inst, fewer)["settings"]["version"].iloc[0] != first


def test_no_unit_of_the_form_type_is_an_error():
    units = load_units()
    no_communes = units.loc[units["unit_type"].isin(["department", "district"])]
    with pytest.raises(xlsform.XLSFormError, match="no unit of type 'commune'"):
        xlsform.xlsform_sheets(load_instrument("hanoi_pl5_commune"), no_communes)


# --------------------------------------------------------------------------------------------
# The check digit in XPath, against sipas_lib.formids
# --------------------------------------------------------------------------------------------

def _xpath_accepts(ids: list[str]) -> np.ndarray:
    token = elementpath.XPath1Parser().parse(xlsform.form_id_check_xpath())
    out = []
    for value in ids:
        node = ET.Element("form_id")
        node.text = value
        out.append(bool(token.evaluate(elementpath.XPathContext(node))))
    return np.array(out)


def _mutations(form_id: str) -> list[str]:
    out = [form_id[:k] + d + form_id[k + 1:] for k in range(len(form_id)) for d in "0123456789" if d != form_id[k]]
    out += [form_id[:k] + form_id[k + 1] + form_id[k] + form_id[k + 2:] for k in range(len(form_id) - 1)
            if form_id[k] != form_id[k + 1]]
    return out


def test_check_digit_xpath_agrees_with_formids():
    rng = np.random.default_rng(20251129)
    legacy = formids.make_form_ids(rng.integers(10, 100, 40), rng.integers(1, 1000, 40), legacy=True).tolist()
    current = formids.make_form_ids(rng.integers(1, 100_000, 40), rng.integers(1, 10_000, 40)).tolist()
    edge = formids.make_form_ids([1, 99999], [1, 9999]).tolist() + ["0000000000", "000000", "090000", "100000"]
    ids = legacy + current + edge + [m for i in legacy[:4] + current[:4] for m in _mutations(i)]
    ids += ["".join(rng.choice(list("0123456789"), n)) for n in (6, 10) for _ in range(200)]
    expected = formids.check_form_ids(ids)
    assert expected.sum() > 80 and (~expected).sum() > 300  # both outcomes well represented
    np.testing.assert_array_equal(_xpath_accepts(ids), expected)


def test_constraint_is_built_from_the_public_formids_api():
    """xlsform reads no private name of formids (issue 15): the tables in the XPath are the public ones."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(xlsform))
    private = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and isinstance(node.value, ast.Name) and node.value.id == "formids" and node.attr.startswith("_")]
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "sipas_lib.formids" for a in node.names if a.name.startswith("_")]
    assert private == [] and imported == []
    xpath = xlsform.form_id_check_xpath()
    damm = "".join(str(v) for v in formids.damm_table().ravel())
    luhn = "".join(str(v) for v in formids.luhn_doubled())
    assert xpath.count(f"'{damm}'") == formids.CURRENT.length
    assert xpath.count(f"'{luhn}'") == (formids.LEGACY.payload_digits + 1) // 2  # d1, d3, d5 doubled
    for fmt in formids.FORMATS:
        assert f"string-length(.) = {fmt.length}" in xpath


def test_form_id_shape():
    shape = re.compile(xlsform.FORM_ID_SHAPE)
    assert [bool(shape.search(v)) for v in ["100016", "0007000019", "10001", "1000166", "10001a", " 100016"]] == [
        True, True, False, False, False, False]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def test_cli_form_export(tmp_path):
    out = tmp_path / "district.xlsx"
    result = CliRunner().invoke(app, ["form", "export", "--instrument", "hanoi_pl5_district", "--to", "xlsform",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert xlsform.to_xform(out).count("<select1 ") >= len(load_instrument("hanoi_pl5_district").item_codes)
    current = tmp_path / "commune.xlsx"
    result = CliRunner().invoke(app, ["form", "export", "--instrument", "hanoi_pl5_commune", "--on", "2025-10-01",
                                      "--out", str(current)])
    assert result.exit_code == 0, result.output
    listed = pd.read_excel(current, sheet_name="choices", dtype=str)
    on_day = units_on(load_units(), "2025-10-01")
    assert set(listed.loc[listed["list_name"] == "units", "name"]) == set(
        on_day.loc[on_day["unit_type"].isin(_unit_types_of("commune")), "unit_id"])
    bad = CliRunner().invoke(app, ["form", "export", "--instrument", "hanoi_pl5_district", "--to", "pdf",
                                   "--out", str(tmp_path / "x.xlsx")])
    assert bad.exit_code == 2 and "xlsform" in bad.output
