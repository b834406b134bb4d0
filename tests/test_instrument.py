"""The instruments (questionnaires as data) and their loader."""

import re
from pathlib import Path

import pytest
import yaml

from sipas_lib.instrument import InstrumentError, instrument_for_unit_type, list_instruments, load_instrument

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "003_6cdf3fdf8cbf5796.txt"


def test_shipped_forms_have_the_seed_structure():
    assert list_instruments() == ["hanoi_pl2_self", "hanoi_pl5_commune", "hanoi_pl5_department", "hanoi_pl5_district"]
    district = load_instrument("hanoi_pl5_district")
    assert district.criteria_codes == [f"c{i:02d}" for i in range(1, 19)]
    assert district.element_items() == {
        "E1": ["c01", "c02", "c03", "c04", "c05"], "E2": ["c06", "c07", "c08", "c09"],
        "E3": ["c10", "c11", "c12"], "E4": ["c13", "c14"], "E5": ["c15", "c16", "c17", "c18"]}
    assert [c for c in district.item_codes if c.startswith("lg")] == [f"lg{i}" for i in range(1, 9)]
    assert district.items.set_index("code").loc["c15", "condition"] == "gave_feedback"
    assert district.items.set_index("code").loc["lg8", "condition"] == "made_complaint"
    assert list(district.demographics["code"]) == ["gender", "age_group", "education"]
    assert district.demographic_values("education") == [1, 2, 3, 4, 5, 6, 7]
    department = instrument_for_unit_type("department")
    assert department.item_codes == district.criteria_codes
    assert department.unit_type == "department"
    assert len(load_instrument("hanoi_pl2_self").item_codes) == 8
    assert (district.scale_min, district.scale_max, district.satisfied_min) == (1, 5, 4)


@pytest.mark.skipif(not SEED.exists(), reason="shared/seeds not beside the clone")
def test_vietnamese_text_is_exactly_the_seed():
    # The seed marks one condition in italics (<i>…</i>); the form's words are what must match.
    seed = re.sub(r"</?i>", "", SEED.read_text(encoding="utf-8"))
    for name in list_instruments():
        inst = load_instrument(name)
        for text, adapted_from in zip(inst.items["text_vi"], inst.items["adapted_from"]):
            # Phụ lục 2 questions are stored as "Câu N. text" exactly as printed; a text adapted for
            # the 2025 reform names the seed's wording it replaces, and that wording must be the seed's.
            if isinstance(adapted_from, str):
                assert adapted_from in seed and text != adapted_from, f"{name}: adapted {text!r}"
            else:
                assert text in seed, f"{name}: {text!r} is not in the seed"


def test_commune_form_is_the_district_form_with_every_change_marked():
    district, commune = load_instrument("hanoi_pl5_district"), load_instrument("hanoi_pl5_commune")
    assert commune.unit_type == "commune"
    assert instrument_for_unit_type("ward").id == instrument_for_unit_type("commune").id == "hanoi_pl5_commune"
    assert commune.item_codes == district.item_codes and commune.element_items() == district.element_items()
    merged = district.items.merge(commune.items, on="code", suffixes=("_d", "_c"))
    changed = merged[merged["text_vi_d"] != merged["text_vi_c"]]
    assert changed["code"].tolist() == ["lg2"]
    assert (changed["adapted_from_c"] == changed["text_vi_d"]).all()
    assert "quận" not in commune.title_vi.lower() and "xã, phường" in commune.title_vi


def test_labels_in_both_languages():
    inst = load_instrument("hanoi_pl5_district")
    assert inst.label("c10", "vi") == "Công chức có thái độ giao tiếp lịch sự với Ông/Bà"
    assert inst.label("E3", "en") == "Civil servants"
    with pytest.raises(KeyError, match="neither an item nor an element"):
        inst.label("zz")


def _write(tmp_path, doc):
    path = tmp_path / "form.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _minimal():
    return {"id": "t", "source": "test", "title_vi": "t", "title_en": "t", "scale": {"min": 1, "max": 5},
            "elements": [{"code": "E1", "name_vi": "a", "name_en": "a"}],
            "items": [{"code": "q1", "number": 1, "block": "criteria", "element": "E1", "text_vi": "a", "text_en": "a"}]}


def test_a_user_form_loads_by_path(tmp_path):
    inst = load_instrument(_write(tmp_path, _minimal()))
    assert inst.criteria_codes == ["q1"] and inst.satisfied_min == 4


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("items"), "items: missing required key"),
    (lambda d: d["items"][0].pop("text_vi"), r"items\[0\].text_vi: missing or empty"),
    (lambda d: d["items"][0].update(element="E9"), r"items\[0\].element: 'E9' is not one of the elements"),
    (lambda d: d["items"].append(dict(d["items"][0])), "duplicated item codes"),
    (lambda d: d["items"][0].update(code="Q 1"), "not a valid column name"),
    (lambda d: d.update(scale={"min": 5, "max": 1}), "min < max"),
    (lambda d: d.update(unit_type="ministry"), "expected department, district, commune or null"),
    (lambda d: d["elements"].append({"code": "E2", "name_vi": "b", "name_en": "b"}), "E2: no item belongs"),
])
def test_malformed_forms_say_what_is_wrong(tmp_path, mutate, message):
    doc = _minimal()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(InstrumentError, match=message) as err:
        load_instrument(path)
    assert str(path) in str(err.value)


def test_broken_yaml_and_unknown_names(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(InstrumentError, match="not valid YAML"):
        load_instrument(path)
    with pytest.raises(InstrumentError, match="shipped instruments are"):
        load_instrument("no_such_form")
    with pytest.raises(ValueError, match="no survey form for unit type .ministry."):
        instrument_for_unit_type("ministry")
