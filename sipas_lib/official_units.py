"""The official administrative units after the 1 July 2025 reform, as a units registry.

Contracts layer. Since 1 July 2025 Vietnam has 34 provinces and two levels of local government:
province and commune (*xã*, *phường*, *đặc khu*); the district level is gone. The
`vietnam-provinces` package carries the official list with the statistical office's codes
(34 provinces, 3,321 communes); this module turns it into rows of the units registry
(``unit_id, code, name_vi, name_en, unit_type, parent_id, valid_from, valid_to``) so that a
province's registry starts from the official list and a user only adds its departments
(``sipas units --province "Hà Nội"``).

Unit ids: ``P01`` for province 01, ``C00070`` for the commune with official code 00070 (Phường
Hoàn Kiếm). ``code`` is the number the current form ids carry (:mod:`sipas_lib.formids`):
communes keep their official code (≤ 5 digits), provinces get ``90000 + 100 × province code``
and a province's departments ``90000 + 100 × province code + 1 … 99`` (see :func:`department_code`).
"""

from __future__ import annotations

import unicodedata
from datetime import date

import pandas as pd

REFORM_DATE = date(2025, 7, 1)
#: Division types of the package -> the registry's unit_type vocabulary.
UNIT_TYPE_OF_DIVISION = {
    "tỉnh": "province",
    "thành phố trung ương": "province",
    "xã": "commune",
    "phường": "ward",
    "đặc khu": "commune",  # special zones (island districts) are commune-level units
}
_EN_SUFFIX = {"xã": "Commune", "phường": "Ward", "đặc khu": "Special Zone"}
_PREFIXES = ("Thành phố ", "Tỉnh ", "Phường ", "Xã ", "Đặc khu ")
REGISTRY_COLUMNS = ["unit_id", "code", "name_vi", "name_en", "unit_type", "parent_id", "valid_from", "valid_to"]


def ascii_name(text: str) -> str:
    """Vietnamese text without diacritics (``"Hoàn Kiếm"`` -> ``"Hoan Kiem"``).

    Examples
    --------
    >>> ascii_name("Đống Đa")
    'Dong Da'
    """
    text = text.replace("Đ", "D").replace("đ", "d")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _bare(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def department_code(province_code: int, number: int) -> int:
    """The form-id code of a province's ``number``-th department (1–99).

    Examples
    --------
    >>> department_code(1, 5)
    90105
    """
    if not 1 <= number <= 99:
        raise ValueError(f"a province has departments 1-99 in the code space, got {number}")
    return 90_000 + 100 * int(province_code) + int(number)


def provinces() -> pd.DataFrame:
    """The 34 provinces (registry rows)."""
    from vietnam_provinces import Province

    rows = []
    for p in Province.iter_all():
        code = int(p.code)
        name_en = ascii_name(_bare(p.name)) + (" City" if p.name.startswith("Thành phố") else " Province")
        rows.append({"unit_id": f"P{code:02d}", "code": 90_000 + 100 * code, "name_vi": p.name, "name_en": name_en,
                     "unit_type": "province", "parent_id": pd.NA})
    return _finish(pd.DataFrame(rows))


def communes(province: str | int | None = None) -> pd.DataFrame:
    """The commune-level units (registry rows), of one province or of the whole country.

    Parameters
    ----------
    province
        A province's official code (``1``), its name with or without diacritics or prefix
        (``"Hà Nội"``, ``"Thành phố Hà Nội"``, ``"ha noi"``), or ``None`` for all 3,321.

    Raises
    ------
    ValueError
        An unknown province, with the list of valid names.
    """
    from vietnam_provinces.lookup import WARD_MAPPING

    wanted = None if province is None else province_code(province)
    rows = []
    for w in WARD_MAPPING.values():
        pcode = int(w.province_code)
        if wanted is not None and pcode != wanted:
            continue
        kind = w.division_type.value
        code = int(w.code)
        rows.append({"unit_id": f"C{code:05d}", "code": code, "name_vi": w.name,
                     "name_en": f"{ascii_name(_bare(w.name))} {_EN_SUFFIX[kind]}",
                     "unit_type": UNIT_TYPE_OF_DIVISION[kind], "parent_id": f"P{pcode:02d}"})
    return _finish(pd.DataFrame(rows).sort_values("code", kind="stable"))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(valid_from=REFORM_DATE.isoformat(), valid_to=pd.NA)
    return df[REGISTRY_COLUMNS].reset_index(drop=True)


def _key(text: str) -> str:
    key = ascii_name(str(text).strip()).lower().replace(" ", "").replace("-", "")
    for prefix in ("thanhpho", "tinh", "tp."):
        if key.startswith(prefix) and len(key) > len(prefix) + 2:
            return key[len(prefix):]
    return key


def province_code(province: str | int) -> int:
    """The official code of a province given by code or name (see :func:`communes`).

    Examples
    --------
    >>> province_code("Hà Nội"), province_code("thanh pho ho chi minh"), province_code(1)
    (1, 79, 1)
    """
    from vietnam_provinces import Province

    known = {int(p.code): p.name for p in Province.iter_all()}
    if isinstance(province, int) or str(province).strip().isdigit():
        code = int(province)
        if code in known:
            return code
    else:
        by_key = {_key(name): code for code, name in known.items()}
        if _key(province) in by_key:
            return by_key[_key(province)]
    raise ValueError(f"unknown province {province!r}; the 34 provinces are: " + ", ".join(sorted(known.values())))


def starting_registry(province: str | int) -> pd.DataFrame:
    """A province's starting units registry: the province and its communes, official names and codes.

    The user adds the province's departments (``unit_type`` ``department``, ``parent_id`` the
    province, codes from :func:`department_code`) and keeps the pre-2025 units with their end date.
    """
    code = province_code(province)
    prov = provinces()
    return pd.concat([prov[prov["unit_id"] == f"P{code:02d}"], communes(code)], ignore_index=True)


def check_official(registry: pd.DataFrame) -> pd.DataFrame:
    """Check a registry's current communes against the official list (codes and names).

    Returns the registry unchanged; raises ``ValueError`` naming the first rows whose official
    code is unknown or whose name differs from the official one.
    """
    official = communes().set_index("code")["name_vi"]
    local = registry[registry["unit_type"].isin(["commune", "ward"]) & registry["valid_to"].isna()]
    codes = pd.to_numeric(local["code"], errors="coerce")
    unknown = local[~codes.isin(official.index)]
    if len(unknown):
        rows = ", ".join(f"{u} (code {c})" for u, c in zip(unknown["unit_id"].head(5), unknown["code"].head(5)))
        raise ValueError(f"units registry: commune codes not in the official post-2025 list: {rows}")
    named = local.assign(_official=codes.map(official))
    wrong = named[named["name_vi"] != named["_official"]]
    if len(wrong):
        r = wrong.iloc[0]
        raise ValueError(f"units registry: {r['unit_id']} (code {r['code']}) is named {r['name_vi']!r}; "
                         f"the official name is {r['_official']!r}")
    return registry
