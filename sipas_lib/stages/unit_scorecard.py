"""Stage ``unit_scorecard``: what one unit's scorecard shows, selected from the run's result tables.

Stages layer. The scorecard template (``notebooks/fanout/unit_scorecard.ipynb``) runs once per
unit with an index, so this module is built to be cheap per unit: it computes nothing (every
index, interval, rank set, change and gap was computed by the index stage), and it reads each
result table once per process — the runner reuses a warm kernel from unit to unit, and a table is
read and validated again only when its file changed (:func:`read_cached`). The unit's type comes
from the units registry, never from its id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sipas_lib import config, schemas
from sipas_lib.index import OVERALL_CODE
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError
from sipas_lib.stages.annual_report import check_level

#: Validated result tables by (file, modification time, size): a scorecard reads each table once.
_CACHE: dict[tuple[str, int, int], pd.DataFrame | None] = {}


def read_cached(paths: config.RunPaths, name: str, required: bool = True) -> pd.DataFrame | None:
    """:func:`sipas_lib.schemas.read_result`, remembered while the file is unchanged.

    The returned frame is shared between calls: callers select from it, never modify it.
    """
    path = schemas.result_path(paths, name)
    try:
        stat = os.stat(path)
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:  # an optional table the run has not written (remembered as missing)
        key = (str(path), -1, -1)
    if key in _CACHE:
        return _CACHE[key]
    try:
        table = schemas.read_result(paths, name, required=required)
    except schemas.ContractError as err:
        raise StageError(str(err)) from None
    _CACHE[key] = table
    return table


@dataclass(frozen=True)
class Scorecard:
    """One unit's scorecard (shares 0–1, intervals at ``settings.level``).

    Attributes
    ----------
    unit
        ``unit_id, unit_type, name_vi, name_en`` from the units registry.
    overall
        The unit's row of ``ranks`` (index, interval, rank and rank sets, publishable,
        ``n_units`` of its type), ``None`` when the unit has no index.
    peer_overall
        The city-wide overall index of the unit's type (``city_indices``).
    change
        The unit's overall row of ``yoy`` (``change, change_ci_low, change_ci_high, significant,
        reason``), ``None`` without a previous year.
    elements
        The unit's element indices with ``peer_estimate`` (the city's index of its type).
    criteria
        The unit's criterion indices (the form's criteria) with ``peer_estimate`` and, for a
        publishable unit, ``gap_to_city`` from ``priorities``.
    weakest
        The unit's weakest criteria (``priorities`` rows flagged ``weakest``, weakest first).
    sample
        ``issued, returned, received, accepted, quarantined, response_rate`` of the unit.
    """

    unit: dict[str, Any]
    overall: dict[str, Any] | None
    peer_overall: float
    change: dict[str, Any] | None
    elements: pd.DataFrame
    criteria: pd.DataFrame
    weakest: pd.DataFrame
    sample: dict[str, Any]


def _one(df: pd.DataFrame) -> dict[str, Any] | None:
    """The first row as a dict, missing values (``pd.NA``) as ``None``; ``None`` for no row."""
    if df.empty:
        return None
    return {k: (None if v is pd.NA else v) for k, v in df.iloc[0].to_dict().items()}


def sample_counts(intake: pd.DataFrame, rates: pd.DataFrame, unit_id: str) -> dict[str, Any]:
    """The unit's questionnaires: issued and returned (``response_rates``, summed over survey modes),
    received, accepted and set aside (``intake_summary``, summed over files)."""
    sent = rates.loc[rates["unit_id"] == unit_id, ["issued", "returned"]].sum()
    read = intake.loc[intake["unit_id"] == unit_id, ["received", "accepted", "quarantined"]].sum()
    issued = int(sent["issued"])
    return {"issued": issued, "returned": int(sent["returned"]), "received": int(read["received"]),
            "accepted": int(read["accepted"]), "quarantined": int(read["quarantined"]),
            "response_rate": sent["returned"] / issued if issued else float("nan")}


def run(paths: config.RunPaths, settings: Settings, unit_id: str) -> Scorecard:
    """Select one unit's scorecard from the run's results.

    Raises
    ------
    StageError
        The unit is not in the units registry, or a main result table is missing or breaks its
        contract.
    """
    from sipas_lib.instrument import instrument_for_unit_type

    unit_id = str(unit_id)
    units = read_cached(paths, "units")
    hit = units.loc[units["unit_id"] == unit_id]
    if hit.empty:
        raise StageError(f"{schemas.result_path(paths, 'units')}: unit {unit_id!r} is not in the units registry")
    unit = hit.iloc[0][["unit_id", "unit_type", "name_vi", "name_en"]].to_dict()
    unit_type = unit["unit_type"]
    ranks = read_cached(paths, "ranks")
    check_level(ranks, settings, str(schemas.result_path(paths, "ranks")))
    indices = read_cached(paths, "indices")
    city = read_cached(paths, "city_indices")
    priorities = read_cached(paths, "priorities")
    yoy = read_cached(paths, "yoy", required=False)

    peer = city.loc[city["scope"] == unit_type]
    peer_overall = peer.loc[(peer["level"] == "overall") & (peer["code"] == OVERALL_CODE), "estimate"]
    mine = indices.loc[indices["unit_id"] == unit_id]
    keep = ["code", "estimate", "ci_low", "ci_high", "n"]
    peer_of = peer[["level", "code", "estimate"]].rename(columns={"estimate": "peer_estimate"})
    elements = mine.loc[mine["level"] == "element", ["level", *keep]].merge(peer_of, on=["level", "code"], how="left")
    criteria_codes = list(instrument_for_unit_type(unit_type).criteria_codes)
    criteria = (mine.loc[(mine["level"] == "item") & mine["code"].isin(criteria_codes), ["level", *keep]]
                .merge(peer_of, on=["level", "code"], how="left")
                .merge(priorities.loc[priorities["unit_id"] == unit_id, ["code", "gap_to_city"]], on="code", how="left"))
    order = {c: i for i, c in enumerate(criteria_codes)}
    criteria = criteria.sort_values("code", key=lambda s: s.map(order), kind="stable")
    weakest = priorities.loc[(priorities["unit_id"] == unit_id) & priorities["weakest"]].sort_values("rank_in_unit")
    change = None
    if yoy is not None:
        change = _one(yoy.loc[(yoy["unit_id"] == unit_id) & (yoy["level"] == "overall") & (yoy["code"] == OVERALL_CODE)])
    return Scorecard(
        unit=unit,
        overall=_one(ranks.loc[ranks["unit_id"] == unit_id]),
        peer_overall=float(peer_overall.iloc[0]) if len(peer_overall) else float("nan"),
        change=change,
        elements=elements.drop(columns="level").sort_values("code").reset_index(drop=True),
        criteria=criteria.drop(columns="level").reset_index(drop=True),
        weakest=weakest.reset_index(drop=True),
        sample=sample_counts(read_cached(paths, "intake_summary"), read_cached(paths, "response_rates"), unit_id),
    )
