"""Comparisons across the 2025 reform: old units -> new units with shares, and the indices that follow.

Core layer. On 1 July 2025 Hà Nội's 30 districts (and their 526 communes and wards) were replaced
by 126 commune-level units; departments were merged. A year-on-year comparison for a new unit
needs a *predecessor figure*: a combination of the old units' indices, weighted by how much of the
new unit each old unit covers. The crosswalk is data — one row per (old unit, new unit) with
``share_of_old`` (the part of the old unit that went to the new one; sums to 1 over each old unit)
and ``share_of_new`` (the part of the new unit that came from the old one) and the ``basis`` of the
shares (population, dossiers or area) — built here from the `vietnamadminunits` package's
legacy-to-2025 ward mapping, or supplied by the user as a CSV.

Area shares from the ward mapping (:func:`area_crosswalk`). The package lists, for every new
commune, the old wards merged into it, and for each old ward divided between several new
communes, those communes with their official areas. Old wards' areas are not published, so each
old ward's piece of a new commune is approximated by the old ward's bounding-box area (split
between the new communes of a divided ward in proportion to their areas) and the pieces of each new
commune are scaled to its official area. Pieces are summed by old district. These are area
shares, not population shares: the report says so, and a user with population or dossier counts
supplies those instead.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

BASES = ("population", "dossiers", "area")
CROSSWALK_COLUMNS = ["old_unit_id", "new_unit_id", "share_of_old", "share_of_new", "basis"]
#: The label every per-unit comparison across the reform carries.
INDICATIVE = "indicative (area-based, different level of government)"


def _vau_data() -> Path:
    import vietnamadminunits

    return Path(vietnamadminunits.__file__).parent / "data"


def _key(text: str) -> str:
    from sipas_lib.official_units import ascii_name

    return ascii_name(str(text)).lower().replace(" ", "").replace("-", "").replace(".", "")


def _bbox_km2(bounds: str | None) -> float:
    """Area (km²) of a ``"lat1,lon1 – lat2,lon2"`` bounding box on a sphere (small-area approximation)."""
    if not bounds or "–" not in bounds:
        return float("nan")
    (lat1, lon1), (lat2, lon2) = ([float(v) for v in part.split(",")] for part in bounds.split("–"))
    km_per_deg = 111.32
    return abs(lat2 - lat1) * km_per_deg * abs(lon2 - lon1) * km_per_deg * math.cos(math.radians((lat1 + lat2) / 2))


def area_crosswalk(province: str) -> pd.DataFrame:
    """Old district -> new commune area shares for one province, from the ward mapping.

    Parameters
    ----------
    province
        The province as named in the package's data (``"Hà Nội"``; matched without diacritics).

    Returns
    -------
    DataFrame
        ``old_district, old_district_code, new_commune, new_code, area_km2, share_of_old,
        share_of_new`` — ``old_district_code`` the statistical office's 3-digit district code,
        ``new_code`` the official commune code; ``share_of_old`` sums to 1 over each old district.
    """
    data = _vau_data()
    mapping = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
    pkey = "thanhpho" + _key(province) if ("thanhpho" + _key(province)) in mapping["DICT_PROVINCE"] else "tinh" + _key(province)
    if pkey not in mapping["DICT_PROVINCE"]:
        raise ValueError(f"province {province!r} is not in the vietnamadminunits ward mapping")
    con = sqlite3.connect(data / "dataset.db")
    try:
        old = pd.read_sql_query(
            "select provinceKey, districtKey, district, districtCode, wardKey, wardBounds from admin_units_legacy "
            "where provinceKey in (%s)" % ",".join("?" * len(mapping["DICT_PROVINCE"][pkey])),
            con, params=mapping["DICT_PROVINCE"][pkey])
        new = pd.read_sql_query("select wardKey, ward, wardCode, wardAreaKm2 from admin_units where provinceKey = ?",
                                con, params=[pkey])
    finally:
        con.close()
    old["old_key"] = old["provinceKey"] + "_" + old["districtKey"] + "_" + old["wardKey"].fillna("")
    old["bbox_km2"] = old["wardBounds"].map(_bbox_km2)
    new_area = new.set_index("wardKey")["wardAreaKm2"].astype(float)
    links = [(o, n, 1.0) for n, olds in mapping["DICT_PROVINCE_WARD_NO_DIVIDED"].get(pkey, {}).items() for o in olds]
    for o, parts in mapping["DICT_PROVINCE_WARD_DIVIDED"].get(pkey, {}).items():
        areas = np.array([p["newWardAreaKm2"] for p in parts], dtype=float)
        links += [(o, p["newWardKey"], a / areas.sum()) for p, a in zip(parts, areas)]
    pieces = pd.DataFrame(links, columns=["old_key", "new_key", "fraction"]).merge(
        old[["old_key", "district", "districtCode", "bbox_km2"]], on="old_key", how="inner")
    # an old ward without bounds takes the median piece, so it is not dropped
    pieces["bbox_km2"] = pieces["bbox_km2"].fillna(pieces["bbox_km2"].median())
    pieces["piece"] = pieces["bbox_km2"] * pieces["fraction"]
    pieces["new_area"] = pieces["new_key"].map(new_area)
    pieces["area_km2"] = pieces["piece"] * pieces["new_area"] / pieces.groupby("new_key")["piece"].transform("sum")
    out = (pieces.groupby(["district", "districtCode", "new_key"], as_index=False)["area_km2"].sum()
           .merge(new.rename(columns={"wardKey": "new_key", "ward": "new_commune", "wardCode": "new_code"}),
                  on="new_key"))
    out["share_of_old"] = out["area_km2"] / out.groupby("district")["area_km2"].transform("sum")
    out["share_of_new"] = out["area_km2"] / out["wardAreaKm2"].astype(float)
    out = out.rename(columns={"district": "old_district", "districtCode": "old_district_code"})
    out["new_code"] = out["new_code"].astype(int)
    cols = ["old_district", "old_district_code", "new_commune", "new_code", "area_km2", "share_of_old", "share_of_new"]
    return out[cols].sort_values(["old_district_code", "new_code"]).reset_index(drop=True)


def validate_crosswalk(crosswalk: pd.DataFrame, where: str = "crosswalk") -> pd.DataFrame:
    """Check a crosswalk: columns, one basis, shares in [0, 1], ``share_of_old`` summing to 1 per old unit.

    Raises ``ValueError`` naming the first offending old unit (or row).
    """
    missing = [c for c in CROSSWALK_COLUMNS if c not in crosswalk.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(CROSSWALK_COLUMNS)}")
    bad_basis = sorted(set(crosswalk["basis"]) - set(BASES))
    if bad_basis:
        raise ValueError(f"{where}: basis must be one of {', '.join(BASES)}, found {bad_basis}")
    for column in ("share_of_old", "share_of_new"):
        values = pd.to_numeric(crosswalk[column], errors="coerce")
        bad = values.isna() | (values < 0) | (values > 1 + 1e-9)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{where}, row {row + 2}, column {column!r}: expected a share in [0, 1], "
                             f"found {crosswalk[column].iloc[row]!r}")
    totals = crosswalk.groupby("old_unit_id")["share_of_old"].sum()
    off = totals[(totals - 1).abs() > 1e-6]
    if len(off):
        raise ValueError(f"{where}: share_of_old of old unit {off.index[0]!r} sums to {off.iloc[0]:.6f}, not 1")
    if crosswalk.duplicated(["old_unit_id", "new_unit_id"]).any():
        dup = crosswalk[crosswalk.duplicated(["old_unit_id", "new_unit_id"])].iloc[0]
        raise ValueError(f"{where}: pair {dup['old_unit_id']} -> {dup['new_unit_id']} appears twice")
    return crosswalk


def predecessor_estimates(crosswalk: pd.DataFrame, old: pd.DataFrame, covariance: pd.DataFrame | None = None,
                          *, min_coverage: float = 0.5) -> pd.DataFrame:
    r"""The predecessor figure of every new unit: its old units' indices weighted by coverage.

    For new unit :math:`c` with predecessors :math:`d` covering shares :math:`a_{dc}` of it
    (``share_of_new``), over the predecessors with an estimate:

    .. math:: \hat\theta^{pred}_c = \sum_d w_{dc}\,\hat\theta_d,\quad
              w_{dc} = a_{dc} / \sum_{d'} a_{d'c},\quad
              \operatorname{Var}(\hat\theta^{pred}_c) = w_c^\top \Sigma\, w_c

    with :math:`\Sigma` the old year's covariance of the old units' indices (``covariance``, as
    written by :func:`sipas_lib.index.overall_covariance`; the diagonal ``se**2`` when not given:
    old units are separate strata, so their indices are independent under the old design).
    ``coverage`` = :math:`\sum_d a_{dc}`; a new unit whose predecessors with estimates cover less
    than ``min_coverage`` of it gets no figure (``withheld`` True).

    Parameters
    ----------
    crosswalk
        Validated crosswalk (:func:`validate_crosswalk`).
    old
        The old year's ``unit_id, estimate, se``.
    covariance
        Optional square DataFrame indexed and labelled by old ``unit_id``.
    min_coverage
        Least share of a new unit its predecessors must cover.
    """
    est = old.set_index("unit_id")[["estimate", "se"]]
    cw = crosswalk[crosswalk["old_unit_id"].isin(est.index)]
    rows = []
    for new_id, g in cw.groupby("new_unit_id", sort=True):  # one small group per new unit (≤ ~4,000)
        ids = g["old_unit_id"].to_numpy()
        a = g["share_of_new"].to_numpy(dtype=float)
        coverage = float(a.sum())
        w = a / coverage if coverage > 0 else a
        theta = est.loc[ids, "estimate"].to_numpy(dtype=float)
        if covariance is not None:
            sigma = covariance.loc[ids, ids].to_numpy(dtype=float)
        else:
            sigma = np.diag(est.loc[ids, "se"].to_numpy(dtype=float) ** 2)
        withheld = coverage < min_coverage
        rows.append({"new_unit_id": new_id, "estimate_pred": np.nan if withheld else float(w @ theta),
                     "se_pred": np.nan if withheld else float(np.sqrt(w @ sigma @ w)),
                     "coverage": coverage, "n_predecessors": len(ids), "predecessors": ",".join(map(str, ids)),
                     "withheld": withheld})
    return pd.DataFrame(rows)


def cross_reform_change(new: pd.DataFrame, predecessors: pd.DataFrame, *, level: float = 0.95,
                        basis: str = "area") -> pd.DataFrame:
    r"""Change of each new unit's index against its predecessor figure, with a CI at ``level``.

    :math:`\Delta = \hat\theta_c - \hat\theta^{pred}_c`, :math:`SE = \sqrt{SE_c^2 + SE_{pred}^2}`
    (independent samples in the two years). No significance verdict is given: the two figures
    measure different levels of government, so the change is labelled indicative.
    """
    z = stats.norm.ppf(0.5 + level / 2)
    out = new[["unit_id", "estimate", "se"]].merge(predecessors, left_on="unit_id", right_on="new_unit_id", how="left")
    out["change"] = out["estimate"] - out["estimate_pred"]
    out["change_se"] = np.sqrt(out["se"] ** 2 + out["se_pred"] ** 2)
    out["change_ci_low"] = out["change"] - z * out["change_se"]
    out["change_ci_high"] = out["change"] + z * out["change_se"]
    out["comparison"] = np.where(out["estimate_pred"].notna(), INDICATIVE.replace("area-based", f"{basis}-based"),
                                 "withheld: predecessors cover too little of the unit")
    out["withheld"] = out["withheld"].fillna(True).astype(bool)
    return out.drop(columns=["new_unit_id"])


def registry_crosswalk(area: pd.DataFrame, old_units: pd.DataFrame, new_units: pd.DataFrame) -> pd.DataFrame:
    """Turn :func:`area_crosswalk` rows into registry ids (:data:`CROSSWALK_COLUMNS`, basis ``area``).

    Old districts are matched to ``old_units`` by name (without diacritics), new communes to
    ``new_units`` by their official Vietnamese name within the province: the ward mapping's commune
    codes predate the official list of `vietnam-provinces` for about a quarter of Hà Nội's communes,
    while the names agree one to one. An old district or a new commune the registry lacks is an error.
    """
    old_by_name = {_key(n): u for n, u in zip(old_units["name_vi"], old_units["unit_id"])}
    missing = sorted({d for d in area["old_district"] if _key(d) not in old_by_name})
    if missing:
        raise ValueError(f"crosswalk: old district(s) not in the old units registry: {', '.join(missing)}")
    new_by_name = dict(zip(new_units["name_vi"], new_units["unit_id"]))
    absent = sorted({c for c in area["new_commune"] if c not in new_by_name})
    if absent:
        raise ValueError(f"crosswalk: commune(s) not in the new units registry: {', '.join(absent[:10])}")
    out = pd.DataFrame({
        "old_unit_id": [old_by_name[_key(d)] for d in area["old_district"]],
        "new_unit_id": [new_by_name[c] for c in area["new_commune"]],
        "share_of_old": area["share_of_old"].to_numpy(),
        "share_of_new": area["share_of_new"].to_numpy(),
        "basis": "area",
    })
    return validate_crosswalk(out)


def province_crosswalk() -> pd.DataFrame:
    """The 63 pre-2025 provinces -> the 34 provinces (merged whole): ``old_province, new_unit_id``.

    ``old_province`` is the ASCII name used in ``data/published`` (``"Ha Noi"``, ``"Ho Chi Minh City"``);
    every old province goes whole to one new one (``share_of_old`` 1), so a combined figure of a new
    province's predecessors needs a weight the caller states (e.g. population), never an implicit one.
    """
    from sipas_lib.official_units import ascii_name, province_code

    mapping = json.loads((_vau_data() / "converter_2025.json").read_text(encoding="utf-8"))["DICT_PROVINCE"]
    con = sqlite3.connect(_vau_data() / "dataset.db")
    try:
        names = dict(con.execute("select distinct provinceKey, province from admin_units_legacy").fetchall())
        new_names = dict(con.execute("select distinct provinceKey, province from admin_units").fetchall())
    finally:
        con.close()
    rows = []
    for new_key, old_keys in mapping.items():
        new_id = f"P{province_code(new_names[new_key]):02d}"
        for old_key in old_keys:
            bare = names[old_key]
            for prefix in ("Thành phố ", "Tỉnh "):
                bare = bare.removeprefix(prefix)
            label = ascii_name(bare).replace("Ba Ria Vung Tau", "Ba Ria - Vung Tau")
            rows.append({"old_province": "Ho Chi Minh City" if label == "Ho Chi Minh" else label,
                         "new_unit_id": new_id, "share_of_old": 1.0})
    return pd.DataFrame(rows).sort_values(["new_unit_id", "old_province"]).reset_index(drop=True)
