"""Questionnaires as data: load and validate the YAML instrument files.

Each form lives in ``sipas_lib/instruments/<id>.yaml`` (or any path a user gives). A new year's
form is added by adding a YAML file; :func:`load_instrument` checks it and says what is wrong,
naming the file and the key.

The YAML keys: ``id``, ``source``, ``unit_type`` (one of :data:`FORM_UNIT_TYPES` or null),
``title_vi``/``title_en``, ``scale`` (``min``, ``max``, ``satisfied_min``, ``labels``),
``elements`` (``code``, ``name_vi``, ``name_en``, optional ``condition``), ``items`` (``code``,
``number``, ``block``, ``element``, ``text_vi``, ``text_en``, optional ``condition`` and
``adapted_from`` — the seed's wording where a form adapts it, e.g. the commune form of 2025),
``demographics`` (``code``, ``text_vi``, ``text_en``, ``values``) and ``personal_columns``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sipas_lib.config import INSTRUMENTS_DIR

_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_REQUIRED_TOP = ("id", "source", "title_vi", "title_en", "scale", "items")
_REQUIRED_ITEM = ("code", "number", "block", "text_vi", "text_en")
#: Unit types a form can be written for; a form for communes also serves wards.
FORM_UNIT_TYPES = ("department", "district", "commune")
#: Which form a unit type answers (units registry vocabulary -> form unit type).
FORM_OF_UNIT_TYPE = {"department": "department", "district": "district", "commune": "commune", "ward": "commune",
                     # the ministry's national survey (profile national) draws its respondents in communes and
                     # asks them the commune form (the commune one-stop shop resolves most procedures since 2025)
                     "province": "commune"}


class InstrumentError(ValueError):
    """An instrument YAML file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Instrument:
    """One questionnaire form.

    Attributes
    ----------
    id
        Identifier such as ``hanoi_pl5_district``.
    unit_type
        ``district``, ``department`` or ``None`` (a form any unit may use).
    items
        One row per rated item: ``code, number, block, element, text_vi, text_en, scale_min,
        scale_max, condition``.
    elements
        One row per element: ``code, name_vi, name_en, condition, items`` (list of item codes).
    demographics
        One row per respondent question: ``code, text_vi, text_en, values`` (dict code -> labels).
    """

    id: str
    source: str
    unit_type: str | None
    title_vi: str
    title_en: str
    scale_min: int
    scale_max: int
    satisfied_min: int
    scale_labels: dict
    items: pd.DataFrame
    elements: pd.DataFrame
    demographics: pd.DataFrame
    personal_columns: tuple[str, ...]
    path: str

    @property
    def item_codes(self) -> list[str]:
        """Every rated item (criteria and any other rated block)."""
        return self.items["code"].tolist()

    @property
    def criteria_codes(self) -> list[str]:
        """The items that belong to an element (the satisfaction criteria)."""
        return self.items.loc[self.items["element"].notna(), "code"].tolist()

    def element_items(self) -> dict[str, list[str]]:
        """Element code -> its item codes, in questionnaire order."""
        return {row.code: list(row.items) for row in self.elements.itertuples()}

    def label(self, code: str, lang: str = "vi") -> str:
        """The text of an item or element in the given language."""
        col = "text_vi" if lang == "vi" else "text_en"
        hit = self.items.loc[self.items["code"] == code, col]
        if len(hit):
            return str(hit.iloc[0])
        col = "name_vi" if lang == "vi" else "name_en"
        hit = self.elements.loc[self.elements["code"] == code, col]
        if len(hit):
            return str(hit.iloc[0])
        raise KeyError(f"{code!r} is neither an item nor an element of instrument {self.id}")

    def demographic_values(self, code: str) -> list[int]:
        """The allowed answer codes of a demographic question."""
        row = self.demographics.loc[self.demographics["code"] == code]
        if row.empty:
            raise KeyError(f"instrument {self.id} has no demographic question {code!r}")
        return sorted(int(k) for k in row["values"].iloc[0])


def _fail(path: Path, where: str, what: str) -> InstrumentError:
    return InstrumentError(f"{path}: {where}: {what}")


def _parse(doc: Any, path: Path) -> Instrument:
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected a mapping of keys (id, source, items, ...)")
    for key in _REQUIRED_TOP:
        if key not in doc:
            raise _fail(path, key, "missing required key")
    scale = doc["scale"]
    if not isinstance(scale, dict) or not {"min", "max"} <= set(scale):
        raise _fail(path, "scale", "expected a mapping with min and max")
    smin, smax = scale["min"], scale["max"]
    if not (isinstance(smin, int) and isinstance(smax, int) and smin < smax):
        raise _fail(path, "scale", f"min and max must be integers with min < max, got {smin!r}, {smax!r}")
    satisfied_min = scale.get("satisfied_min", smax - 1)
    if not (isinstance(satisfied_min, int) and smin < satisfied_min <= smax):
        raise _fail(path, "scale.satisfied_min", f"must be an integer in ({smin}, {smax}], got {satisfied_min!r}")

    elements = doc.get("elements") or []
    element_codes = []
    for k, el in enumerate(elements):
        for key in ("code", "name_vi", "name_en"):
            if not isinstance(el, dict) or not el.get(key):
                raise _fail(path, f"elements[{k}].{key}", "missing or empty")
        element_codes.append(el["code"])
    if len(set(element_codes)) != len(element_codes):
        raise _fail(path, "elements", f"duplicated element codes in {element_codes}")

    rows = []
    for k, item in enumerate(doc["items"] or []):
        if not isinstance(item, dict):
            raise _fail(path, f"items[{k}]", "expected a mapping")
        for key in _REQUIRED_ITEM:
            if item.get(key) in (None, ""):
                raise _fail(path, f"items[{k}].{key}", "missing or empty")
        if not _CODE.match(str(item["code"])):
            raise _fail(path, f"items[{k}].code", f"{item['code']!r} is not a valid column name (lower case, digits, _)")
        element = item.get("element")
        if element is not None and element not in element_codes:
            raise _fail(path, f"items[{k}].element", f"{element!r} is not one of the elements {element_codes}")
        rows.append({
            "code": item["code"], "number": int(item["number"]), "block": item["block"], "element": element,
            "text_vi": item["text_vi"], "text_en": item["text_en"], "adapted_from": item.get("adapted_from") or None,
            "scale_min": int(item.get("scale_min", smin)), "scale_max": int(item.get("scale_max", smax)),
            "condition": item.get("condition") or (
                next((e.get("condition") for e in elements if e["code"] == element), None)),
        })
    if not rows:
        raise _fail(path, "items", "the form has no items")
    items = pd.DataFrame(rows)
    dup = items["code"][items["code"].duplicated()].tolist()
    if dup:
        raise _fail(path, "items", f"duplicated item codes {dup}")
    el_rows = []
    for el in elements:
        codes = items.loc[items["element"] == el["code"], "code"].tolist()
        if not codes:
            raise _fail(path, f"elements.{el['code']}", "no item belongs to this element")
        el_rows.append({"code": el["code"], "name_vi": el["name_vi"], "name_en": el["name_en"],
                        "condition": el.get("condition"), "items": codes})
    demo_rows = []
    for k, d in enumerate(doc.get("demographics") or []):
        if not isinstance(d, dict) or not d.get("code") or not isinstance(d.get("values"), dict) or not d["values"]:
            raise _fail(path, f"demographics[{k}]", "needs a code and a non-empty mapping of values")
        demo_rows.append({"code": d["code"], "text_vi": d.get("text_vi", ""), "text_en": d.get("text_en", ""),
                          "values": {int(v): lab for v, lab in d["values"].items()},
                          "other_code": d.get("other_code"), "other_column": d.get("other_column")})
    unit_type = doc.get("unit_type")
    if unit_type not in (None, *FORM_UNIT_TYPES):
        raise _fail(path, "unit_type", f"expected {', '.join(FORM_UNIT_TYPES)} or null, got {unit_type!r}")
    return Instrument(
        id=str(doc["id"]), source=str(doc["source"]), unit_type=unit_type,
        title_vi=doc["title_vi"], title_en=doc["title_en"], scale_min=smin, scale_max=smax,
        satisfied_min=satisfied_min, scale_labels=scale.get("labels", {}), items=items,
        elements=pd.DataFrame(el_rows, columns=["code", "name_vi", "name_en", "condition", "items"]),
        demographics=pd.DataFrame(demo_rows, columns=["code", "text_vi", "text_en", "values", "other_code", "other_column"]),
        personal_columns=tuple(doc.get("personal_columns") or ()), path=str(path),
    )


@lru_cache(maxsize=32)
def _load_cached(path: str) -> Instrument:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InstrumentError(f"{p}: not valid YAML: {exc}") from exc
    return _parse(doc, p)


def list_instruments(folder: str | os.PathLike = INSTRUMENTS_DIR) -> list[str]:
    """Ids of the instruments shipped in ``folder``."""
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def load_instrument(name_or_path: str | os.PathLike) -> Instrument:
    """Load and validate an instrument by id (shipped forms) or by path to a YAML file.

    Raises
    ------
    InstrumentError
        When the file is missing or malformed; the message names the file and the key.
    """
    candidate = Path(name_or_path)
    if candidate.suffix not in (".yaml", ".yml"):
        candidate = INSTRUMENTS_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        raise InstrumentError(
            f"{candidate}: no such instrument file; shipped instruments are {', '.join(list_instruments())}")
    return _load_cached(str(candidate.resolve()))


def instrument_for_unit_type(unit_type: str) -> Instrument:
    """The shipped Phụ lục 5 form a unit of ``unit_type`` is rated with (wards use the commune form)."""
    if unit_type not in FORM_OF_UNIT_TYPE:
        raise ValueError(f"no survey form for unit type {unit_type!r}; expected one of {', '.join(FORM_OF_UNIT_TYPE)}")
    return load_instrument(f"hanoi_pl5_{FORM_OF_UNIT_TYPE[unit_type]}")
