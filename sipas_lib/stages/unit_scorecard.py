"""Stage ``unit_scorecard``: what one unit's scorecard shows, selected from the run's result tables.

Stages layer. A run has one scorecard per unit with an index (~150 in the Hà Nội demo, ~3,900 when
every commune of the country is rated), so this module is built to be cheap per unit: it computes
nothing (every index, interval, rank set, change and gap was computed by the index stage), it reads
each result table once per process (:func:`read_cached`, again only when the file changed), and it
splits every table by unit once (:func:`load_inputs`), so that selecting one unit's rows
(:func:`select`) is a dictionary lookup, not a scan of the tables. The unit's type comes from the
units registry, never from its id.

``run(paths, settings, unit_id)`` is what the scorecard notebook calls for one unit; the report
layer's bulk renderer (:mod:`sipas_lib.scorecards`) calls :func:`load_inputs` once and
:func:`select` per unit: the same selection either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sipas_lib import config, schemas
from sipas_lib.index import OVERALL_CODE
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError
from sipas_lib.stages.annual_report import check_level

#: The result tables a scorecard reads: name -> required (the optional ones exist only with a
#: previous year, a reform crosswalk or the administrative records).
SCORECARD_TABLES: dict[str, bool] = {
    "units": True, "ranks": True, "indices": True, "city_indices": True, "priorities": True,
    "intake_summary": True, "response_rates": True, "yoy": False, "yoy_reform": False, "small_area": False,
    "integrity_units": False,
}

#: Validated result tables by (file, modification time, size): a scorecard reads each table once.
_CACHE: dict[tuple[str, int, int], pd.DataFrame | None] = {}
#: The tables split by unit, by the keys of the tables they were built from (:func:`load_inputs`).
_INPUTS: dict[tuple, "ScorecardInputs"] = {}


def _cache_key(paths: config.RunPaths, name: str) -> tuple[str, int, int]:
    path = schemas.result_path(paths, name)
    try:
        stat = os.stat(path)
        return (str(path), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:  # an optional table the run has not written (remembered as missing)
        return (str(path), -1, -1)


def read_cached(paths: config.RunPaths, name: str, required: bool = True) -> pd.DataFrame | None:
    """:func:`sipas_lib.schemas.read_result`, remembered while the file is unchanged.

    The returned frame is shared between calls: callers select from it, never modify it.
    """
    key = _cache_key(paths, name)
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
    reform
        The unit's row of ``yoy_reform`` (a unit created by the 2025 reorganisation against its
        predecessors), ``None`` when there is none.
    model
        The unit's row of ``small_area`` (direct and model-based index with rank sets), ``None``
        when stage 50 wrote no small-area table.
    integrity
        The unit's row of ``integrity_units`` when the integrity stage (25) flagged it (signals,
        reasons, index and rank set with and without its suspect forms), else ``None``.
    """

    unit: dict[str, Any]
    overall: dict[str, Any] | None
    peer_overall: float
    change: dict[str, Any] | None
    elements: pd.DataFrame
    criteria: pd.DataFrame
    weakest: pd.DataFrame
    sample: dict[str, Any]
    reform: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    integrity: dict[str, Any] | None = None


def _native(value: Any) -> Any:
    """A table cell as a plain Python value; missing values (``pd.NA``) as ``None``."""
    if value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def _rows_by_unit(df: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """``{unit_id: the unit's first row as a dict}`` (plain values, ``pd.NA`` as ``None``)."""
    if df is None or df.empty:
        return {}
    return {str(row["unit_id"]): {k: _native(v) for k, v in row.items()}
            for row in df.drop_duplicates("unit_id").to_dict("records")}


def unit_samples(intake: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """Every unit's questionnaires: issued and returned (``response_rates``, summed over survey modes),
    received, accepted and set aside (``intake_summary``, summed over files), and the response rate
    returned / issued (AAPOR RR1; missing when nothing was issued). Indexed by ``unit_id``."""
    sent = rates.groupby("unit_id")[["issued", "returned"]].sum()
    read = intake.groupby("unit_id")[["received", "accepted", "quarantined"]].sum()
    table = sent.join(read, how="outer").fillna(0).astype("int64")
    issued = table["issued"].where(table["issued"] > 0)
    return table.assign(response_rate=table["returned"] / issued)


@dataclass(frozen=True)
class ScorecardInputs:
    """The tables every scorecard reads, split by unit once (:func:`load_inputs`)."""

    units: dict[str, dict[str, Any]]
    overall: dict[str, dict[str, Any]]
    peer_overall: dict[str, float]
    elements: pd.DataFrame
    element_rows: dict[str, np.ndarray]
    criteria: pd.DataFrame
    criteria_rows: dict[str, np.ndarray]
    weakest: pd.DataFrame
    weakest_rows: dict[str, np.ndarray]
    change: dict[str, dict[str, Any]]
    reform: dict[str, dict[str, Any]]
    model: dict[str, dict[str, Any]]
    sample: pd.DataFrame
    integrity: dict[str, dict[str, Any]]
    no_form: dict[str, str]  # unit type -> why it has no criteria (no survey form for it)
    where: str


def _criteria_order(unit_types: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """``unit_type, code, order``: each type's criteria in the order of its form; and the types
    without a form, with the reason."""
    from sipas_lib.instrument import instrument_for_unit_type

    frames, missing = [], {}
    for unit_type in unit_types:
        try:
            codes = list(instrument_for_unit_type(unit_type).criteria_codes)
        except ValueError as err:
            missing[unit_type] = str(err)
            continue
        frames.append(pd.DataFrame({"unit_type": unit_type, "code": codes, "order": range(len(codes))}))
    empty = pd.DataFrame({"unit_type": pd.Series(dtype=object), "code": pd.Series(dtype=object),
                          "order": pd.Series(dtype="int64")})
    return (pd.concat(frames, ignore_index=True) if frames else empty), missing


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Text columns as plain Python strings (``object``): a unit's rows are then taken thousands of times
    with NumPy's ``take`` instead of Arrow's (the contracts' text dtype is for storage and checks)."""
    text = [c for c in df.columns if pd.api.types.is_string_dtype(df[c]) and df[c].dtype != object]
    return df.astype({c: object for c in text}) if text else df


def _positions(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(k): v for k, v in df.groupby("unit_id", sort=False).indices.items()} if len(df) else {}


def load_inputs(paths: config.RunPaths, settings: Settings) -> ScorecardInputs:
    """Read the scorecards' tables (:data:`SCORECARD_TABLES`, each once per process) and split them by unit.

    Peer (same unit type, city-wide) figures and the gap to them are joined to every unit's rows here,
    in one pass over the tables; :func:`select` then only looks a unit up.

    Raises
    ------
    StageError
        A main result table is missing or breaks its contract, or the index stage computed its
        intervals at another level than ``settings.level``.
    """
    keys = tuple(_cache_key(paths, name) for name in SCORECARD_TABLES)
    tables = {name: read_cached(paths, name, required=required) for name, required in SCORECARD_TABLES.items()}
    ranks = tables["ranks"]
    where = str(schemas.result_path(paths, "ranks"))
    check_level(ranks, settings, where)
    if keys in _INPUTS:
        return _INPUTS[keys]
    units, indices, city, priorities = tables["units"], tables["indices"], tables["city_indices"], tables["priorities"]
    peer = city[["scope", "level", "code", "estimate"]].rename(columns={"scope": "unit_type", "estimate": "peer_estimate"})
    overall_peer = peer.loc[(peer["level"] == "overall") & (peer["code"] == OVERALL_CODE)].drop_duplicates("unit_type")
    keep = ["unit_id", "unit_type", "level", "code", "estimate", "ci_low", "ci_high", "n"]
    elements = (indices.loc[indices["level"] == "element", keep].merge(peer, on=["unit_type", "level", "code"], how="left")
                .sort_values(["unit_id", "code"], kind="stable").reset_index(drop=True))
    order, no_form = _criteria_order(sorted(set(units["unit_type"].astype(str))))
    gaps = priorities[["unit_id", "code", "gap_to_city"]].drop_duplicates(["unit_id", "code"])
    criteria = (indices.loc[indices["level"] == "item", keep].merge(order, on=["unit_type", "code"])
                .merge(peer, on=["unit_type", "level", "code"], how="left")
                .merge(gaps, on=["unit_id", "code"], how="left")
                .sort_values(["unit_id", "order"], kind="stable").reset_index(drop=True))
    elements, criteria = _plain(elements), _plain(criteria)
    weakest = _plain(priorities.loc[priorities["weakest"]].sort_values(["unit_id", "rank_in_unit"], kind="stable"))
    yoy = tables["yoy"]
    change = None if yoy is None else yoy.loc[(yoy["level"] == "overall") & (yoy["code"] == OVERALL_CODE)]
    inputs = ScorecardInputs(
        units=_rows_by_unit(units[["unit_id", "unit_type", "name_vi", "name_en"]]),
        overall=_rows_by_unit(ranks),
        peer_overall=dict(zip(overall_peer["unit_type"], overall_peer["peer_estimate"].astype(float))),
        elements=elements, element_rows=_positions(elements),
        criteria=criteria, criteria_rows=_positions(criteria),
        weakest=weakest.reset_index(drop=True), weakest_rows=_positions(weakest.reset_index(drop=True)),
        change=_rows_by_unit(change), reform=_rows_by_unit(tables["yoy_reform"]),
        model=_rows_by_unit(tables["small_area"]),
        integrity=_rows_by_unit(None if tables["integrity_units"] is None else  # flagged units only
                                tables["integrity_units"].loc[tables["integrity_units"]["n_flags"] > 0]),
        sample=unit_samples(tables["intake_summary"], tables["response_rates"]),
        no_form=no_form, where=str(schemas.result_path(paths, "units")),
    )
    _INPUTS.clear()  # one run's inputs at a time: a kernel rendering several runs keeps only the latest
    _INPUTS[keys] = inputs
    return inputs


def _rows(table: pd.DataFrame, positions: Mapping[str, np.ndarray], unit_id: str, columns: list[str]) -> pd.DataFrame:
    found = positions.get(unit_id)
    if found is None:
        return table.iloc[0:0][columns].reset_index(drop=True)
    return table.iloc[found][columns].reset_index(drop=True)


def select(inputs: ScorecardInputs, unit_id: str) -> Scorecard:
    """One unit's scorecard from :func:`load_inputs` (nothing is read or computed).

    Raises
    ------
    StageError
        The unit is not in the units registry, or its type has no survey form.
    """
    unit_id = str(unit_id)
    unit = inputs.units.get(unit_id)
    if unit is None:
        raise StageError(f"{inputs.where}: unit {unit_id!r} is not in the units registry")
    unit_type = unit["unit_type"]
    if unit_type in inputs.no_form:
        raise StageError(f"{inputs.where}: unit {unit_id!r}: {inputs.no_form[unit_type]}")
    value = ["code", "estimate", "ci_low", "ci_high", "n", "peer_estimate"]
    if unit_id in inputs.sample.index:
        counts = inputs.sample.loc[unit_id]
        sample = {k: int(counts[k]) for k in ("issued", "returned", "received", "accepted", "quarantined")}
        sample["response_rate"] = float(counts["response_rate"]) if pd.notna(counts["response_rate"]) else float("nan")
    else:
        sample = {"issued": 0, "returned": 0, "received": 0, "accepted": 0, "quarantined": 0, "response_rate": float("nan")}
    return Scorecard(
        unit=dict(unit),
        overall=inputs.overall.get(unit_id),
        peer_overall=inputs.peer_overall.get(unit_type, float("nan")),
        change=inputs.change.get(unit_id),
        elements=_rows(inputs.elements, inputs.element_rows, unit_id, value),
        criteria=_rows(inputs.criteria, inputs.criteria_rows, unit_id, [*value, "gap_to_city"]),
        weakest=_rows(inputs.weakest, inputs.weakest_rows, unit_id, list(inputs.weakest.columns)),
        sample=sample,
        reform=inputs.reform.get(unit_id),
        model=inputs.model.get(unit_id),
        integrity=inputs.integrity.get(unit_id),
    )


def run(paths: config.RunPaths, settings: Settings, unit_id: str) -> Scorecard:
    """Select one unit's scorecard from the run's results (:func:`load_inputs`, then :func:`select`).

    Raises
    ------
    StageError
        The unit is not in the units registry, or a main result table is missing or breaks its
        contract.
    """
    return select(load_inputs(paths, settings), unit_id)
