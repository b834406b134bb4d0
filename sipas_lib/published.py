"""Published SIPAS figures (Ministry of Home Affairs, public sources) shipped under ``data/published/``.

These are real published numbers, each row with its source address (see
``data/published/README.md``). They give the national context of a city's own survey: the national
trend, Hà Nội's path against its targets, and published ranks and rank changes of provinces that
the year-on-year code must reproduce.

Files
-----
``sipas_national.csv``
    National SIPAS average by year 2018-2024 with ranges, sample sizes and component indices
    where published. 2022 changed the method (policy domain added, resident sample): 2021 -> 2022
    is not a like-for-like change (``method_break``).
``sipas_provincial_partial.csv``
    88 province-year points 2017-2024: ``year, province, sipas_pct, rank, rank_basis,
    rank_change, policy_pct, policy_rank, service_pct, service_rank, source_url, note``.
    ``rank_basis`` says how the rank is known: ``published``, ``derived`` (arithmetic on published
    changes), ``listing_order`` (order of a top/bottom list) or ``group_membership`` (only that
    the province was in a top/bottom group; no rank). ``rank_change`` is published as "+19" etc.
    (positive = climbed), parsed to a number here.

Tables returned (percent values stay in percent, 0-100)
-------------------------------------------------------
``national_trend()`` -> ``year, national_avg_pct, min_province_pct, max_province_pct,
top_province, method_break, source_url``.
``province_path(province)`` -> ``year, province, sipas_pct, rank, rank_basis, rank_change,
source_url``.
``published_year_table(year)`` -> ``unit_id`` (province), ``estimate`` (share 0-1), ``rank``,
``rank_basis``, ``rank_change_published`` for one year, in the shape ``index.year_on_year``
takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sipas_lib.config import PUBLISHED_DIR

__all__ = [
    "METHOD_BREAK_YEAR",
    "load_national",
    "load_provincial",
    "national_trend",
    "province_path",
    "published_year_table",
]

METHOD_BREAK_YEAR = 2022
"""First year of MoHA's new method (policy domain, resident sample): not comparable with 2021."""

_NATIONAL_COLS = ("year", "national_avg_pct", "source_url")
_PROVINCIAL_COLS = ("year", "province", "sipas_pct", "rank", "rank_basis", "rank_change", "source_url")
_RANK_BASES = {"published", "derived", "listing_order", "group_membership"}


def _read(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise ValueError(f"published figures file not found: {path}")
    df = pd.read_csv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}")
    return df


def load_national(folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """National SIPAS averages by year, as published (percent), with a ``method_break`` flag."""
    df = _read(Path(folder) / "sipas_national.csv", _NATIONAL_COLS)
    df["year"] = df["year"].astype(int)
    if df["year"].duplicated().any():
        raise ValueError("sipas_national.csv: a year appears twice")
    df["method_break"] = df["year"] == METHOD_BREAK_YEAR
    return df.sort_values("year").reset_index(drop=True)


def _parse_change(value) -> float:
    if pd.isna(value):
        return np.nan
    text = str(value).strip().replace("\u2212", "-")
    try:
        return float(text)
    except ValueError as err:
        raise ValueError(f"sipas_provincial_partial.csv: rank_change {value!r} is not a number like '+19'") from err


def load_provincial(folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """Province-year points as published; ``rank`` nullable integer, ``rank_change`` numeric."""
    df = _read(Path(folder) / "sipas_provincial_partial.csv", _PROVINCIAL_COLS)
    df["year"] = df["year"].astype(int)
    df["rank"] = pd.to_numeric(df["rank"], errors="raise").astype("Int64")
    df["rank_change"] = df["rank_change"].map(_parse_change)
    bases = set(df["rank_basis"].dropna())
    if not bases <= _RANK_BASES:
        raise ValueError(f"sipas_provincial_partial.csv: unknown rank_basis {sorted(bases - _RANK_BASES)}")
    bad = df["rank"].notna() & df["rank_basis"].isna()
    if bad.any():
        raise ValueError(f"sipas_provincial_partial.csv: rank without rank_basis in rows {list(df.index[bad])}")
    return df


def national_trend(folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """Data for the national trend chart (percent)."""
    df = load_national(folder)
    cols = ["year", "national_avg_pct", "min_province_pct", "max_province_pct", "top_province",
            "method_break", "source_url"]
    return df[[c for c in cols if c in df.columns]]


def province_path(province: str = "Ha Noi", folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """One province's published values and ranks by year (default Hà Nội, spelled ``Ha Noi``)."""
    df = load_provincial(folder)
    hit = df[df["province"] == province]
    if hit.empty:
        raise ValueError(f"province {province!r} not in the published table; known: {sorted(df['province'].unique())}")
    if hit["year"].duplicated().any():
        raise ValueError(f"province {province!r} has two rows for one year")
    cols = ["year", "province", "sipas_pct", "rank", "rank_basis", "rank_change", "source_url"]
    return hit[cols].sort_values("year").reset_index(drop=True)


def published_year_table(year: int, folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """The published provinces of one year shaped like an index result table.

    Columns ``unit_id`` (province), ``estimate`` (share 0-1, NaN when not published), ``rank``
    (nullable), ``rank_basis``, ``rank_change_published``. Rows with neither a value nor a rank
    (group membership only) are dropped.
    """
    df = load_provincial(folder)
    g = df[(df["year"] == int(year)) & (df["sipas_pct"].notna() | df["rank"].notna())]
    if g.empty:
        raise ValueError(f"no published provincial figures for {year}; years: {sorted(df['year'].unique())}")
    return pd.DataFrame(
        {
            "unit_id": g["province"].to_numpy(),
            "estimate": g["sipas_pct"].to_numpy(float) / 100.0,
            "rank": g["rank"].to_numpy(),
            "rank_basis": g["rank_basis"].to_numpy(),
            "rank_change_published": g["rank_change"].to_numpy(float),
        }
    ).reset_index(drop=True)


#: Weights a combined predecessor figure may use. Only ``equal``: no population or sample sizes of
#: the 63 old provinces are bundled, so no other weight can be stated honestly.
PREDECESSOR_WEIGHTS = ("equal",)


def predecessor_published(crosswalk: pd.DataFrame, up_to_year: int = 2024, *, weight: str = "equal",
                          folder: str | os.PathLike = PUBLISHED_DIR) -> pd.DataFrame:
    """The published SIPAS of each new province's predecessors, side by side, and a combined figure.

    The 34 provinces of 1 July 2025 were formed from the 63 old ones merged whole
    (:func:`sipas_lib.crosswalk.province_crosswalk`: ``old_province, new_unit_id``). For every new
    province this lists each predecessor's latest published value up to ``up_to_year``
    (``row_kind = "predecessor"``; a rank without a value where only the rank is published; empty
    when nothing is published). A combined figure (``row_kind = "combined"``) is given only for a
    merged province whose predecessors *all* have a published value in one common year (the latest
    such year), with the weight stated in ``weight``:

    .. math:: \\bar p = \\sum_j \\omega_j p_j, \\qquad \\omega_j = 1/J \\ (\\text{equal})

    Ranks of old provinces (out of 63) are never combined.

    Returns
    -------
    DataFrame
        ``unit_id, row_kind, old_province, n_predecessors, year, published`` (share 0–1),
        ``rank, rank_basis, weight, source_url``, sorted by ``unit_id``, predecessors first.

    Raises
    ------
    ValueError
        A weight other than :data:`PREDECESSOR_WEIGHTS`.
    """
    if weight not in PREDECESSOR_WEIGHTS:
        raise ValueError(f"a combined predecessor figure needs a stated weight; available: {PREDECESSOR_WEIGHTS} "
                         f"(no population figures of the old provinces are bundled), got {weight!r}")
    points = load_provincial(folder)
    points = points[points["year"] <= int(up_to_year)]
    valued = points[points["sipas_pct"].notna()]
    ranked = points[points["rank"].notna()]
    rows = []
    for unit_id, group in crosswalk.groupby("new_unit_id", sort=True):
        olds = sorted(group["old_province"])
        for old in olds:
            hit = valued[valued["province"] == old]
            if hit.empty:
                hit = ranked[ranked["province"] == old]
            last = hit.sort_values("year").iloc[-1] if len(hit) else None
            rows.append({"unit_id": unit_id, "row_kind": "predecessor", "old_province": old,
                         "n_predecessors": len(olds),
                         "year": None if last is None else int(last["year"]),
                         "published": np.nan if last is None else float(last["sipas_pct"]) / 100.0,
                         "rank": pd.NA if last is None else last["rank"],
                         "rank_basis": None if last is None else last["rank_basis"],
                         "weight": None, "source_url": None if last is None else last["source_url"]})
        if len(olds) > 1:
            mine = valued[valued["province"].isin(olds)]
            per_year = mine.groupby("year")["province"].nunique()
            common = per_year.index[per_year == len(olds)]
            if len(common):
                year = int(common.max())
                values = mine[mine["year"] == year].drop_duplicates("province")["sipas_pct"].to_numpy(float) / 100.0
                rows.append({"unit_id": unit_id, "row_kind": "combined", "old_province": " + ".join(olds),
                             "n_predecessors": len(olds), "year": year, "published": float(np.mean(values)),
                             "rank": pd.NA, "rank_basis": None, "weight": weight, "source_url": None})
    out = pd.DataFrame(rows)
    out["year"] = out["year"].astype("Int64")
    out["rank"] = pd.array(out["rank"], dtype="Int64")
    return out.reset_index(drop=True)
