"""Stage ``sampling_design`` (notebook ``10_sampling_design``): sample sizes, allocation, selection.

Reads the year's frame (``frame.parquet``: transactions that received a result; only its
non-personal columns, or ``frame_counts.csv`` when the rows are not available) and ``units.csv``;
then, with :mod:`sipas_lib.sampling`:

1. the questionnaires each unit would need for the target margin of error (Cochran's sample size
   with finite-population correction, inflated by the expected response rate, at the run's
   confidence ``level``);
2. the planned questionnaires of each unit type, capped at what the frame can give (a plan larger
   than the frame — a small test year — becomes a census of that group);
3. the allocation over units (``allocation_method``), compared with equal, proportional and
   power(0.5) allocation, and inside a unit proportionally over fields of procedure;
4. the stratified selection with reserves and the re-check (phúc tra) flags, and the form ids.

Writes ``results/sampling_allocation`` and ``results/sample_design`` (no transaction id, no contact
details: ``transaction_id`` would link answers to applicants' case records). The post office's
mailing list (form id, name, address, phone) is written only under
:attr:`sipas_lib.config.RunPaths.private` (``data/raw/private/<run>/``), with formula cells
neutralised (:func:`sipas_lib.spreadsheet.write_csv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sipas_lib import config, formids, schemas
from sipas_lib import sampling as sp
from sipas_lib.settings import Settings
from sipas_lib.spreadsheet import write_csv
from sipas_lib.stages import StageError
from sipas_lib.units import load_units

STAGE = "sampling_design"
#: Assumed share satisfied for every margin of error: p = 0.5 is the worst case (largest p(1 - p)).
P_ASSUMED = 0.5
#: Planned questionnaires per unit type: settings key of each surveyed unit type.
TOTAL_SETTINGS = {"department": "total_departments", "district": "total_districts"}
#: Unit type -> the group its questionnaires are planned in: wards share the communes' total (two-tier years).
PLAN_GROUP = {"ward": "commune"}
#: Label key (``texts/sampling_design.yaml``) of each plan group, as the notebook names it: the year's
#: local units are districts before the 2025 reform and communes and wards after it (registry).
GROUP_LABELS = {"department": "sd_group_department", "district": "sd_group_district", "commune": "sd_group_commune"}
#: Allocations always shown for comparison (method -> power exponent).
COMPARED_METHODS = (("equal", None), ("proportional", None), ("power", 0.5))
MAILING_LIST_FILE = "mailing_list.csv"
MAILING_LIST_COLUMNS = ("form_id", "transaction_id", "unit_id", "role", "reserve_rank", "recheck")


@dataclass(frozen=True)
class SamplingDesign:
    """What the sampling-design stage computed (the written tables and what the notebook shows).

    Attributes
    ----------
    allocation
        ``results/sampling_allocation``: one row per stratum (unit × field).
    sample
        ``results/sample_design``: one row per issued form (main and reserves); ``None`` when the
        year has only ``frame_counts.csv`` (nothing can be drawn).
    units
        One row per surveyed unit: ``unit_id, unit_type, N, n, sampling_fraction, moe, method,
        n_needed, meets_target``.
    frame_counts
        ``unit_id, field, N, unit_type`` of the surveyed units.
    comparisons
        One row per unit type × allocation method: ``unit_type, method`` (equal, proportional,
        power), ``exponent`` (power only), ``n_min, n_max, moe_unit_median, moe_unit_max, moe_city,
        moe_city_equal`` (see :func:`sipas_lib.sampling.compare_allocations`).
    planned, totals
        Planned questionnaires per unit type (settings), and after the frame-capacity cap.
    capacity
        Most questionnaires the frame can give per unit type (sum over units of min(N, maximum)).
    outside_rows
        Frame rows of units outside the survey (left out).
    field_distribution
        Share of the main sample by field against the frame (``sampling.achieved_distribution``).
    summary
        Per unit: main, reserve and re-check forms and the range of design weights.
    mailing_list
        Path of the private mailing list (``None`` without frame rows).
    """

    allocation: pd.DataFrame
    sample: pd.DataFrame | None
    units: pd.DataFrame
    frame_counts: pd.DataFrame
    comparisons: pd.DataFrame
    planned: Mapping[str, int]
    totals: Mapping[str, int]
    capacity: Mapping[str, int]
    outside_rows: int
    field_distribution: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    mailing_list: Path | None = None

    @property
    def capped(self) -> dict[str, tuple[int, int]]:
        """Unit types whose plan exceeded the frame: type -> (planned, capacity)."""
        return {t: (self.planned[t], self.capacity[t]) for t in self.planned if self.planned[t] > self.totals[t]}

    @property
    def mailing_list_shown(self) -> str:
        """Where the mailing list is, as shown in a report: relative to the project when inside it."""
        if self.mailing_list is None:
            return "–"
        try:
            return str(self.mailing_list.relative_to(config.PROJECT_DIR))
        except ValueError:
            return str(Path(*self.mailing_list.parts[-3:]))

    @property
    def id_formats(self) -> list[formids.FormIdFormat]:
        """The formats of the issued form ids (:data:`sipas_lib.formids.FORMATS`), so a report describes
        the ids this year's forms carry (6-digit Luhn before 2025, 10-digit Damm after)."""
        if self.sample is None or self.sample.empty:
            return []
        lengths = set(self.sample["form_id"].astype(str).str.len())
        return [fmt for fmt in formids.FORMATS if fmt.length in lengths]

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables written (name -> table)."""
        out = {"sampling_allocation": self.allocation}
        if self.sample is not None:
            out["sample_design"] = self.sample
        return out


def planned_totals(options: Mapping[str, object], units: pd.DataFrame | None = None) -> dict[str, int]:
    """Planned questionnaires per unit type from the stage's settings (types with 0 are left out).

    ``total_districts`` is the local units' total: after the 2025 reform (``units`` without
    districts but with communes or wards) it goes to the communes and wards, planned as one group
    ``commune`` (:data:`PLAN_GROUP`).
    """
    totals = {unit_type: int(options[key]) for unit_type, key in TOTAL_SETTINGS.items()}
    if units is not None and not units["unit_type"].eq("district").any() and units["unit_type"].isin(
            ["commune", "ward"]).any():
        totals["commune"] = totals.pop("district")
    return {t: n for t, n in totals.items() if n > 0}


def _read_frame(data_dir: Path, in_scope: pd.DataFrame) -> tuple[pd.DataFrame | None, pd.DataFrame, int]:
    """``(frame rows or None, counts by unit × field, rows outside the survey)``; personal columns never read."""
    frame_path, counts_path = data_dir / "frame.parquet", data_dir / "frame_counts.csv"
    if frame_path.exists():
        frame = pd.read_parquet(frame_path, columns=list(sp.FRAME_COLUMNS))
        inside = frame["unit_id"].isin(in_scope["unit_id"])
        frame = frame.loc[inside].reset_index(drop=True)
        return frame, sp.count_frame(frame, by=("unit_id", "field")), int((~inside).sum())
    if counts_path.exists():
        counts = pd.read_csv(counts_path, dtype={"unit_id": str, "field": str}, encoding="utf-8-sig")
        missing = [c for c in ("unit_id", "field", "N") if c not in counts.columns]
        if missing:
            raise StageError(f"{counts_path}: row 1 (header): missing column(s) {missing}; "
                             f"expected unit_id, field, channel, N")
        inside = counts["unit_id"].isin(in_scope["unit_id"])
        counts = counts.loc[inside].groupby(["unit_id", "field"], as_index=False)["N"].sum()
        return None, counts, 0
    raise StageError(f"{data_dir}: neither frame.parquet nor frame_counts.csv: the sampling frame is needed "
                     "to plan the sample")


def capped_totals(frame_counts: pd.DataFrame, planned: Mapping[str, int],
                  maximum: int | None) -> tuple[dict[str, int], dict[str, int]]:
    """Cap each unit type's plan at what its frame can give: ``(totals, capacity)``.

    The capacity of a unit type is :math:`\\sum_h \\min(N_h, \\text{maximum})` over its units; a plan
    above it would ask some unit for more questionnaires than it has transactions, so the plan
    becomes a census of that group. Types left with no questionnaire are dropped.
    """
    unit_sizes = frame_counts.groupby(["unit_type", "unit_id"])["N"].sum()
    limited = unit_sizes if maximum is None else unit_sizes.clip(upper=maximum)
    per_type = limited.groupby(level="unit_type").sum()
    capacity = {t: int(per_type.get(t, 0)) for t in planned}
    totals = {t: min(n, capacity[t]) for t, n in planned.items()}
    return {t: n for t, n in totals.items() if n > 0}, capacity


def compare_methods(frame_counts: pd.DataFrame, totals: Mapping[str, int], options: Mapping[str, object],
                    maximum: int | None, level: float) -> pd.DataFrame:
    """Expected margins of error under equal, proportional, power(0.5) and the configured allocation."""
    methods = list(COMPARED_METHODS)
    configured = (options["allocation_method"],
                  float(options["power_exponent"]) if options["allocation_method"] == "power" else None)
    if configured not in methods:
        methods.append(configured)
    specs = {(m, a): {"method": m, **({"exponent": a} if a is not None else {})} for m, a in methods if m != "neyman"}
    parts = []
    for unit_type, total in totals.items():
        cmp = sp.compare_allocations(frame_counts.loc[frame_counts["unit_type"] == unit_type], total, specs,
                                     minimum=int(options["minimum_per_unit"]), maximum=maximum, p=P_ASSUMED,
                                     level=level, response_rate=float(options["expected_response_rate"]))
        keys = cmp.pop("label")
        cmp.insert(0, "unit_type", unit_type)
        cmp.insert(1, "method", [m for m, _ in keys])
        cmp.insert(2, "exponent", [np.nan if a is None else a for _, a in keys])
        parts.append(cmp)
    return pd.concat(parts, ignore_index=True)


def mailing_list(sample: pd.DataFrame, frame_path: Path) -> pd.DataFrame:
    """The post office's list: each selected form with the applicant's name, address and phone.

    Personal data: written only under the private folder (:func:`run` does), never under ``reports/``.
    """
    table = pq.read_table(frame_path, columns=["transaction_id", *sp.PERSONAL_COLUMNS])
    # only the selected transactions become pandas strings (a sixth of a national frame's 3.7 million)
    selected = pa.array(sample["transaction_id"].unique(), type=table.schema.field("transaction_id").type)
    contacts = table.filter(pc.is_in(table["transaction_id"], value_set=selected)).to_pandas()
    del table
    out = sample[list(MAILING_LIST_COLUMNS)].merge(contacts.drop_duplicates("transaction_id"), on="transaction_id",
                                                    how="left", validate="many_to_one")
    missing = out[list(sp.PERSONAL_COLUMNS)].isna().all(axis=1)
    if missing.any():
        raise StageError(f"{frame_path}: {int(missing.sum())} selected transaction(s) have no contact details "
                         f"(columns {', '.join(sp.PERSONAL_COLUMNS)}), e.g. transaction "
                         f"{out.loc[missing, 'transaction_id'].iloc[0]}")
    return out


def run(paths: config.RunPaths, settings: Settings) -> SamplingDesign:
    """Plan, allocate and draw the year's sample; write ``sampling_allocation`` and ``sample_design``.

    Raises
    ------
    StageError
        No frame, a units file that does not meet its contract, or a plan the frame cannot carry;
        the message names the file (and row and column where there is one).
    """
    options = settings.section(STAGE)
    level = settings.level
    response_rate = float(options["expected_response_rate"])
    margin = float(options["target_margin"])
    maximum = int(options["maximum_per_unit"]) or None
    units_path = paths.data_dir / "units.csv"
    try:
        units = load_units(units_path)
    except (ValueError, FileNotFoundError) as err:
        raise StageError(str(err)) from err
    planned = planned_totals(options, units)
    if not planned:
        raise StageError(f"settings {STAGE}: total_departments and total_districts are both 0: nothing to plan")
    true_type = units.set_index("unit_id")["unit_type"]
    grouped = units.assign(unit_type=units["unit_type"].replace(PLAN_GROUP))
    in_scope = grouped.loc[grouped["unit_type"].isin(list(planned)), ["unit_id", "unit_type"]]
    frame, counts, outside = _read_frame(paths.data_dir, in_scope)
    fc = counts.merge(in_scope, on="unit_id")
    totals, capacity = capped_totals(fc, planned, maximum)
    if not totals:
        raise StageError(f"{paths.data_dir}: the frame has no transaction of a surveyed unit "
                         f"({', '.join(planned)}): nothing to draw from")

    unit_n = fc.groupby(["unit_type", "unit_id"], as_index=False)["N"].sum()
    unit_n["n_needed"] = sp.sample_size(margin, level=level, population=unit_n["N"].to_numpy(),
                                        response_rate=response_rate)
    method = str(options["allocation_method"])
    sd = ({u: np.sqrt(P_ASSUMED * (1 - P_ASSUMED)) for u in in_scope["unit_id"]} if method == "neyman" else None)
    try:
        alloc = sp.allocate_by_type(fc, in_scope, totals, method=method, exponent=float(options["power_exponent"]),
                                    minimum=int(options["minimum_per_unit"]), maximum=maximum, sd=sd, p=P_ASSUMED,
                                    level=level, response_rate=response_rate)
        strata = sp.allocate_within(fc, alloc)
    except ValueError as err:
        raise StageError(f"{paths.data_dir}: the plan does not fit the frame: {err}") from err
    alloc = alloc.merge(unit_n[["unit_id", "n_needed"]], on="unit_id")
    alloc["meets_target"] = alloc["moe"] <= margin + 1e-12
    unit_cols = alloc[["unit_id", "N", "n", "sampling_fraction", "moe", "n_needed", "meets_target", "method"]].rename(
        columns={"N": "N_unit", "n": "n_unit", "sampling_fraction": "f_unit", "moe": "moe_unit"})
    allocation = strata.merge(alloc[["unit_id", "unit_type"]], on="unit_id").merge(unit_cols, on="unit_id")
    allocation["unit_type"] = allocation["unit_id"].map(true_type)  # the registry's type (a ward stays a ward)
    schemas.write_result(paths, "sampling_allocation", allocation)
    comparisons = compare_methods(fc, totals, options, maximum, level)

    if frame is None:
        return SamplingDesign(allocation, None, alloc, fc, comparisons, planned, totals, capacity, outside)
    sample = sp.select(frame, strata, str(options["selection_method"]), seed=settings.seed,
                       reserve=float(options["reserve_share"]), recheck=float(options["recheck_share"]))
    sample = sp.assign_form_ids(sample, units).merge(in_scope, on="unit_id", how="left")
    sample["unit_type"] = sample["unit_id"].map(true_type)
    contacts = mailing_list(sample, paths.data_dir / "frame.parquet")
    mailing = write_csv(contacts, paths.private / MAILING_LIST_FILE)
    design = sample.drop(columns=["transaction_id"])
    schemas.write_result(paths, "sample_design", design)
    distribution = sp.achieved_distribution(design, fc, "field", by=["unit_type"])
    summary = sp.design_summary(design).merge(in_scope, on="unit_id")
    return SamplingDesign(allocation, design, alloc, fc, comparisons, planned, totals, capacity, outside,
                          distribution, summary, mailing)
