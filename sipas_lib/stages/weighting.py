"""Stage 30 — survey weights: base weights, non-response adjustment, calibration, trimming, diagnostics.

Reads ``results/responses.parquet`` (stage 20) with the year's ``sample.csv`` (issued
questionnaires, inclusion probabilities) and ``frame_counts.csv`` (frame counts by unit x field x
channel), builds the year's design with :func:`sipas_lib.weighting.build_annual_design` and writes

* ``results/responses_weighted.parquet`` -- the responses with every weighting step's weight and
  the design columns;
* ``results/design.json`` -- the :class:`~sipas_lib.weighting.DesignSpec` (strata, PSUs, fpc,
  lonely-PSU rule, calibration kind with its cells and population counts, trimming). Every later
  stage rebuilds exactly this design with :func:`load_design` and never re-derives it;
* the diagnostics its notebook shows: ``weight_diagnostics`` (one row per weighted unit),
  ``nonresponse_cells`` (unit x survey mode), ``calibration_cells`` (unit x field of the frame),
  ``units_excluded`` (units left out of weighting, with the reason) and ``weighting_summary``.

A unit without a usable questionnaire (none returned, or every returned form blank) is left out of
weighting -- and so of the indices and ranks -- and listed in ``units_excluded``; it does not stop
the weighting of the other units. A missing or unreadable input raises
:class:`~sipas_lib.stages.StageError` naming the file.

Two different design effects appear here, named for what they are: ``deff_kish*`` is Kish's
design effect *due to unequal weighting*, :math:`n\\sum w^2/(\\sum w)^2`, a property of the weights
alone; ``deff_sipas`` is the library's design effect of an estimate (R ``survey``'s ``deff``:
design variance over the variance under simple random sampling without replacement) for the
unit's SIPAS index, taken from :func:`sipas_lib.index.satisfaction_indices`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sipas_lib import config, schemas
from sipas_lib import index as ix
from sipas_lib import weighting as wt
from sipas_lib.inputs import InputError, read_input
from sipas_lib.estimation import SurveyDesign
from sipas_lib.instrument import load_instrument
from sipas_lib.intake import is_in
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError

STAGE = "weighting"
#: The saved design specification, inside the run's ``results/`` folder.
DESIGN_FILE = "design.json"
#: Instrument whose criteria define the SIPAS index in the diagnostics (c01-c18 are shared by the
#: department and district forms; the district form's lg items are not criteria). Same as stage 50.
INDEX_INSTRUMENT = "hanoi_pl5_district"
#: Tables written by :func:`run`, in order.
TABLES = ("responses_weighted", "weight_diagnostics", "nonresponse_cells", "calibration_cells",
          "units_excluded", "weighting_summary")
WEIGHT_STEPS = ("w_base", "w_nr", "w_cal", "w_final")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def _read_input(paths: config.RunPaths, name: str) -> pd.DataFrame:
    """A year's input file (``sample``, ``frame_counts``), typed and validated against its contract
    (:func:`sipas_lib.inputs.read_input`), or :class:`StageError` naming file, row and column."""
    try:
        return read_input(paths.data_dir, name)
    except (InputError, OSError) as err:
        raise StageError(str(err)) from err


def _read_result(paths: config.RunPaths, name: str) -> pd.DataFrame:
    try:
        return schemas.read_result(paths, name)
    except schemas.ContractError as err:
        raise StageError(str(err)) from err


# --------------------------------------------------------------------------------------------
# the saved design
# --------------------------------------------------------------------------------------------
def design_path(paths: config.RunPaths) -> Path:
    """``results/design.json`` of the run."""
    return Path(paths.results) / DESIGN_FILE


def save_design_spec(paths: config.RunPaths, spec: wt.DesignSpec) -> Path:
    """Write the design specification to ``results/design.json``."""
    path = design_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def load_design_spec(paths: config.RunPaths) -> wt.DesignSpec:
    """The design specification the weighting stage saved (``results/design.json``)."""
    path = design_path(paths)
    if not path.exists():
        raise StageError(f"{path}: not found; it is written by stage 'weighting' — run that stage first")
    try:
        return wt.DesignSpec.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as err:
        raise StageError(f"{path}: not a design specification this library can read: {err}") from err


def load_design(paths: config.RunPaths) -> SurveyDesign:
    """The year's design exactly as the weighting stage built it: the weighted responses
    (``results/responses_weighted.parquet``) with the saved specification (``results/design.json``).

    Same weights and same calibration steps, so standard errors account for the calibration.
    Stage 50, the scorecards and the explore notebook use only this function.
    """
    spec = load_design_spec(paths)
    weighted = _read_result(paths, "responses_weighted")
    try:
        return wt.design_from_spec(weighted, spec)
    except ValueError as err:
        raise StageError(f"{schemas.result_path(paths, 'responses_weighted')} and {design_path(paths)}: {err}") from err


# --------------------------------------------------------------------------------------------
# diagnostics (pure functions of the built design and the inputs)
# --------------------------------------------------------------------------------------------
def _unit_types(responses: pd.DataFrame, units: pd.DataFrame | None) -> pd.Series:
    """unit_id -> unit_type, from the units registry (intake's ``units`` table), else the responses."""
    types = responses.groupby("unit_id")["unit_type"].first()
    if units is not None:
        types = units.set_index("unit_id")["unit_type"].combine_first(types)
    return types


def nonresponse_table(sample: pd.DataFrame, data: pd.DataFrame, unit_types: pd.Series) -> pd.DataFrame:
    """One row per unit x survey mode of the issued sample (weighted units): issued, accepted,
    response rate and the non-response adjustment factor ``w_nr / w_base`` of the cell's respondents."""
    smp = sample[sample["unit_id"].isin(data["unit_id"].unique())]
    smp = smp.assign(responded=is_in(smp["form_id"].astype(str), data["form_id"].astype(str)))
    out = (smp.groupby(["unit_id", "survey_mode"], sort=True)
           .agg(n_issued=("form_id", "size"), n_accepted=("responded", "sum")).reset_index())
    factor = (data.assign(f=data["w_nr"] / data["w_base"]).groupby(["unit_id", "survey_mode"])["f"].mean())
    out["response_rate"] = out["n_accepted"] / out["n_issued"]
    out["nr_factor"] = pd.MultiIndex.from_frame(out[["unit_id", "survey_mode"]]).map(factor)
    out["pooled_in_unit"] = out["n_accepted"] == 0
    out.insert(1, "unit_type", out["unit_id"].map(unit_types))
    return out.astype({"n_issued": "int64", "n_accepted": "int64", "nr_factor": float})


def calibration_table(frame_counts: pd.DataFrame, data: pd.DataFrame, unit_types: pd.Series,
                      calibration_kind: str) -> pd.DataFrame:
    """One row per unit x field of the frame (weighted units): frame count, respondents, the sums of
    the weights before (``w_nr``) and after (``w_cal``) calibration and the calibration cell."""
    cells = (frame_counts[frame_counts["unit_id"].isin(data["unit_id"].unique())]
             .groupby(["unit_id", "field"], as_index=False)["N"].sum().rename(columns={"N": "N_frame"}))
    got = data.groupby(["unit_id", "field"]).agg(n=("form_id", "size"), weight_nr=("w_nr", "sum"),
                                                 weight_cal=("w_cal", "sum"), cal_cell=("cal_cell", "first"))
    out = cells.merge(got.reset_index(), on=["unit_id", "field"], how="left", validate="one_to_one")
    out["n"] = out["n"].fillna(0).astype("int64")
    out[["weight_nr", "weight_cal"]] = out[["weight_nr", "weight_cal"]].fillna(0.0)
    # a field cell without respondents is always merged into the unit's largest cell
    largest = data.groupby(["unit_id", "field"]).size().reset_index(name="k").sort_values(
        ["unit_id", "k"], ascending=[True, False]).drop_duplicates("unit_id").set_index("unit_id")["field"]
    out["cal_cell"] = out["cal_cell"].fillna(out["unit_id"].map(largest))
    # merged cells matter only to a calibration on the calibration cells (post-stratification)
    out["merged"] = (out["cal_cell"] != out["field"]) & (calibration_kind == "poststratify")
    out["N_frame"] = out["N_frame"].astype("int64")
    out.insert(1, "unit_type", out["unit_id"].map(unit_types))
    return out


def diagnostics_table(design: SurveyDesign, nonresponse: pd.DataFrame, calibration: pd.DataFrame,
                      year: int, level: float) -> pd.DataFrame:
    """One row per weighted unit: final-weight summaries, Kish's deff of weighting after each
    step, response rate, frame count, trimmed weights, and the unit's SIPAS index weighted and
    unweighted with its design-based SE and deff (the library's deff, R survey's)."""
    data = design.data
    steps = wt.weight_diagnostics(data, list(WEIGHT_STEPS), by="unit_id")
    diag = steps[steps["weight"] == "w_final"].drop(columns="weight").reset_index(drop=True)
    for w in WEIGHT_STEPS[:-1]:
        diag["deff_kish_" + w[2:]] = diag["unit_id"].map(steps[steps["weight"] == w].set_index("unit_id")["deff_kish"])
    diag.insert(1, "unit_type", diag["unit_id"].map(data.groupby("unit_id")["unit_type"].first()))
    rates = nonresponse.groupby("unit_id")[["n_issued", "n_accepted"]].sum()
    diag["n_issued"] = diag["unit_id"].map(rates["n_issued"]).astype("int64")
    diag["response_rate"] = diag["unit_id"].map(rates["n_accepted"] / rates["n_issued"])
    diag["N_frame"] = diag["unit_id"].map(calibration.groupby("unit_id")["N_frame"].sum()).astype("int64")
    trimmed = data["w_final"].to_numpy() != data["w_cal"].to_numpy()
    diag["n_trimmed"] = diag["unit_id"].map(pd.Series(trimmed).groupby(data["unit_id"].to_numpy()).sum()).astype("int64")
    diag["n"] = diag["n"].astype("int64")
    inst = load_instrument(INDEX_INSTRUMENT)
    weighted = _overall(ix.satisfaction_indices(design, inst, by="unit_id", level=level))
    unweighted = _overall(ix.satisfaction_indices(
        SurveyDesign(data, strata=design.strata, lonely_psu=design.lonely_psu), inst, by="unit_id", level=level))
    diag["sipas_weighted"] = diag["unit_id"].map(weighted["estimate"])
    diag["sipas_unweighted"] = diag["unit_id"].map(unweighted["estimate"])
    diag["se_sipas"] = diag["unit_id"].map(weighted["se"])
    diag["deff_sipas"] = diag["unit_id"].map(weighted["deff"])
    diag["year"] = int(year)
    return diag


def _overall(indices: pd.DataFrame) -> pd.DataFrame:
    return indices[(indices["level"] == "overall") & (indices["n"] > 0)].set_index("unit_id")


def excluded_table(spec: wt.DesignSpec, sample: pd.DataFrame, responses: pd.DataFrame,
                   frame_counts: pd.DataFrame, unit_types: pd.Series) -> pd.DataFrame:
    """One row per unit left out of weighting: reason, questionnaires issued and accepted, frame count."""
    ids = [u for u, _ in spec.excluded_units]
    reasons = dict(spec.excluded_units)
    out = pd.DataFrame({"unit_id": pd.Series(ids, dtype=str)})
    out["unit_type"] = out["unit_id"].map(unit_types)
    out["reason"] = out["unit_id"].map(reasons)
    out["n_issued"] = out["unit_id"].map(sample.groupby("unit_id").size()).fillna(0).astype("int64")
    out["n_accepted"] = out["unit_id"].map(responses.groupby("unit_id").size()).fillna(0).astype("int64")
    out["N_frame"] = out["unit_id"].map(frame_counts.groupby("unit_id")["N"].sum()).fillna(0).astype("int64")
    return out


def summary_table(spec: wt.DesignSpec, sample: pd.DataFrame, responses: pd.DataFrame, data: pd.DataFrame,
                  calibration: pd.DataFrame, n_unmatched: int, year: int, *, n_accepted: int | None = None,
                  n_set_aside: int = 0) -> pd.DataFrame:
    """One row: the year's weighting in numbers (what the notebook narrates).

    ``n_accepted`` is what intake accepted (default ``len(responses)``); ``n_set_aside`` the forms the
    integrity stage excluded before weighting (``integrity_exclusions``), so accepted = set aside +
    the forms weighting received."""
    factor = data["w_nr"] / data["w_base"]
    trimmed = data["w_final"].to_numpy() != data["w_cal"].to_numpy()
    with_resp = calibration[calibration["n"] > 0]
    gap = (with_resp["weight_nr"] / with_resp["N_frame"] - 1).abs()
    return pd.DataFrame([{
        "year": int(year),
        "n_issued": int(len(sample)),
        "n_accepted": int(len(responses) if n_accepted is None else n_accepted),
        "n_set_aside": int(n_set_aside),
        "n_unmatched": int(n_unmatched),
        "n_weighted": int(len(data)),
        "n_units": int(data["unit_id"].nunique()),
        "n_units_excluded": len(spec.excluded_units),
        "N_frame": int(round(spec.population_total)),
        "calibration": spec.calibration,
        "trim_ratio": np.nan if spec.trim_ratio is None else float(spec.trim_ratio),
        "min_cell": int(spec.min_cell),
        "lonely_psu": spec.lonely_psu,
        "nr_factor_min": float(factor.min()),
        "nr_factor_median": float(factor.median()),
        "nr_factor_max": float(factor.max()),
        "calibration_gap_mean": float(gap.mean()),
        "n_merged": int(calibration.loc[calibration["merged"], "n"].sum()),
        "n_trimmed": int(trimmed.sum()),
        "n_units_trimmed": int(data.loc[trimmed, "unit_id"].nunique()),
    }])


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightingResult:
    """What :func:`run` returns: the design, its specification and the tables it wrote."""

    design: SurveyDesign
    spec: wt.DesignSpec
    tables: dict

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


def build_design(paths: config.RunPaths, settings: Settings, responses: pd.DataFrame, sample: pd.DataFrame,
                 frame_counts: pd.DataFrame) -> wt.AnnualDesign:
    """The year's design from accepted responses, as this stage builds it (city or national, the run's
    ``weighting`` settings); also used by the integrity stage for its sensitivity analysis.

    Raises
    ------
    StageError
        Inputs the weighting cannot use (the message names the files and the cause).
    """
    forms = [f for f in pd.unique(responses["form"]) if isinstance(f, str)]
    items = sorted({c for f in forms for c in load_instrument(f).item_codes})
    try:
        with warnings.catch_warnings():
            # responses whose form id is not in the sample are counted in weighting_summary
            warnings.filterwarnings("ignore", message=".*form_id not in the sample.*", category=RuntimeWarning)
            return (build_national(paths, settings, responses, sample, frame_counts, items)
                    if design_kind(settings) == "national" else
                    wt.build_annual_design(responses, sample, frame_counts, items=items, **options(settings)))
    except ValueError as err:
        raise StageError(f"weighting of {schemas.result_path(paths, 'responses')} with "
                         f"{Path(paths.data_dir) / 'sample.csv'} and {Path(paths.data_dir) / 'frame_counts.csv'}: "
                         f"{err}") from err


def options(settings: Settings) -> dict:
    """The weighting settings as :func:`~sipas_lib.weighting.build_annual_design` arguments
    (``trim_ratio: 0`` in the configuration = no trimming)."""
    own = settings.section(STAGE)
    trim = float(own["trim_ratio"])
    return {"calibration": str(own["calibration"]), "trim_ratio": trim if trim else None,
            "min_cell": int(own["min_cell"])}


def run(paths: config.RunPaths, settings: Settings) -> WeightingResult:
    """Build the year's weights and design, write the weighting tables and ``results/design.json``.

    Raises
    ------
    StageError
        ``sample.csv``/``frame_counts.csv`` missing or unreadable, ``results/responses.parquet``
        missing, or inputs the weighting cannot use (the message names file and cause).
    """
    responses = _read_result(paths, "responses")
    sample = _read_input(paths, "sample")
    frame_counts = _read_input(paths, "frame_counts")
    units = schemas.read_result(paths, "units", required=False)
    unit_types = _unit_types(responses, units)
    n_accepted = len(responses)
    # forms the integrity stage set aside (integrity.exclude_flagged), listed there with their reason
    set_aside = schemas.read_result(paths, "integrity_exclusions", required=False)
    n_set_aside = 0
    if set_aside is not None and len(set_aside):
        dropped = is_in(responses["form_id"].astype(str), set_aside["form_id"].astype(str))
        n_set_aside = int(dropped.sum())
        responses = responses.loc[~dropped].reset_index(drop=True)
    n_unmatched = int((~is_in(responses["form_id"].astype(str), sample["form_id"])).sum())
    built = build_design(paths, settings, responses, sample, frame_counts)
    design, spec = built.design, built.spec
    data = design.data
    nonresponse = nonresponse_table(sample, data, unit_types)
    calibration = calibration_table(frame_counts, data, unit_types, spec.calibration)
    tables = {
        "responses_weighted": data,
        "weight_diagnostics": diagnostics_table(design, nonresponse, calibration, settings.year, settings.level),
        "nonresponse_cells": nonresponse,
        "calibration_cells": calibration,
        "units_excluded": excluded_table(spec, sample, responses, frame_counts, unit_types),
        "weighting_summary": summary_table(spec, sample, responses, data, calibration, n_unmatched, settings.year,
                                           n_accepted=n_accepted, n_set_aside=n_set_aside),
    }
    written = {}
    for name in TABLES:
        schemas.write_result(paths, name, tables[name])
        table = tables[name].reset_index(drop=True)
        written[name] = table[[c for c in schemas.contract(name).columns if c in table.columns]]
    save_design_spec(paths, spec)
    return WeightingResult(design, spec, written)


# --------------------------------------------------------------------------------------------
# the national design (profile "national": strata = province, PSU = commune drawn PPS)
# --------------------------------------------------------------------------------------------
#: The national sample's first-stage frame in the year's folder (``sipas_lib.weighting.PSU_FRAME_COLUMNS``).
PSU_FRAME_FILE = "psu_frame.csv"


def design_kind(settings: Settings) -> str:
    """``city`` or ``national`` (settings ``weighting.design``); anything else is a :class:`StageError`."""
    kind = str(settings.section(STAGE).get("design", "city"))
    if kind not in wt.DESIGN_KINDS:
        raise StageError(f"settings weighting.design: {kind!r} is not one of {', '.join(wt.DESIGN_KINDS)}")
    return kind


def read_psu_frame(data_dir: str | Path) -> pd.DataFrame:
    """``psu_frame.csv``: every commune of every surveyed province with its measure of size,
    first-stage inclusion probability and whether it was drawn; :class:`StageError` naming file,
    row and column when a column is missing or a value is not what it must be."""
    from sipas_lib.inputs import read_delimited

    path = Path(data_dir) / PSU_FRAME_FILE
    try:
        raw = read_delimited(path, expected_columns=wt.PSU_FRAME_COLUMNS)
    except (InputError, OSError) as err:
        raise StageError(f"{path}: the national design needs the first-stage frame of communes: {err}") from err
    missing = [c for c in wt.PSU_FRAME_COLUMNS if c not in raw.columns]
    if missing:
        raise StageError(f"{path}: missing column(s) {missing}; expected {', '.join(wt.PSU_FRAME_COLUMNS)}")
    out = pd.DataFrame({"unit_id": raw["unit_id"].str.strip(), "commune_id": raw["commune_id"].str.strip()})
    checks = {"size": (lambda v: v >= 0, "a size ≥ 0"), "incl_prob_psu": (lambda v: (v > 0) & (v <= 1), "a probability in (0, 1]")}
    for col, (ok, what) in checks.items():
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna() | ~ok(values)
        if bad.any():
            row = raw.index[bad.to_numpy()][0]
            raise StageError(f"{path}: row {row}, column {col}: expected {what}, found {raw.at[row, col]!r}")
        out[col] = values.to_numpy(float)
    flags = raw["selected"].str.strip().str.lower()
    bad = ~flags.isin(["true", "false", "1", "0"])
    if bad.any():
        row = raw.index[bad.to_numpy()][0]
        raise StageError(f"{path}: row {row}, column selected: expected True or False, found {raw.at[row, 'selected']!r}")
    out["selected"] = flags.isin(["true", "1"]).to_numpy()
    return out


def build_national(paths: config.RunPaths, settings: Settings, responses: pd.DataFrame, sample: pd.DataFrame,
                   frame_counts: pd.DataFrame, items: list[str]) -> wt.AnnualDesign:
    """The national design (:func:`sipas_lib.weighting.build_national_design`) from the year's
    ``psu_frame.csv`` and the weighting settings (``calibration``: poststratify | none; ``trim_ratio``)."""
    own = options(settings)
    if own["calibration"] not in wt.NATIONAL_CALIBRATIONS:
        raise StageError(f"settings weighting.calibration: the national design calibrates with "
                         f"{' or '.join(wt.NATIONAL_CALIBRATIONS)}, not {own['calibration']!r}")
    return wt.build_national_design(responses, sample, read_psu_frame(paths.data_dir), frame_counts,
                                    calibration=own["calibration"], trim_ratio=own["trim_ratio"], items=items)
