"""Stage ``integrity`` (notebook ``25_integrity``): fieldwork integrity, between intake and weighting.

A unit being rated has every incentive to fill in or steer its own questionnaires; seed 000 has the
Fatherland Front (MTTQ) and the Veterans' Association (Hội CCB) re-check (*phúc tra*) a subsample for
that reason. This stage brings the three kinds of evidence together, each signal a documented test with
its null distribution and a plain reason (:mod:`sipas_lib.recheck`, :mod:`sipas_lib.screening`,
:mod:`sipas_lib.self_survey`), never a black-box score:

1. **Re-check** (``recheck.csv``/``.xlsx``, when the year has one): intake with quarantine, reach and
   confirmation rates per unit, per collection route and city-wide, agreement of the re-asked answers
   (exact and weighted Cohen's kappa), and units whose confirmation rate is credibly below
   ``integrity.confirmation_threshold``.
2. **Screening of the returned questionnaires**: near-duplicates, straight-lining, satisfied on every
   criterion, returns bunched on one day and point, concentration on one collection point or enumerator;
   Benjamini–Hochberg across units at ``integrity.false_flag_rate`` per signal.
3. **The units' own surveys** (Phụ lục 2, ``self_survey.csv``/``.xlsx``, when the year has them): monthly
   own-survey satisfaction (a convenience sample: intervals only "as if random"), and the gap to the
   independent survey on the criteria both forms share, with the independent figure's exact design-based
   standard error.
4. **Sensitivity**: each flagged unit's overall index and rank confidence set with all its forms and
   without its suspect forms (the near-duplicate groups, the bunched batch, the forms denied at re-check),
   each from the design the weighting stage builds (:func:`sipas_lib.stages.weighting.build_design`, the
   run's settings), re-weighted without them.
5. **Exclusion** is a setting (``integrity.exclude_flagged``, default false: report, do not exclude). When
   true, the suspect forms are listed in ``integrity_exclusions`` with their reason, and the weighting
   stage drops and counts them (``weighting_summary.n_set_aside``), so the counts still add up.

Contact details of the re-checked respondents never pass intake (``schemas.PERSONAL_COLUMNS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sipas_lib import index as ix
from sipas_lib import recheck, schemas, screening, self_survey
from sipas_lib.config import RunPaths
from sipas_lib.inputs import InputError, optional_year_file, read_input
from sipas_lib.instrument import load_instrument
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError
from sipas_lib.stages import index_ranking as ir
from sipas_lib.stages import weighting as ws
from sipas_lib.schemas.integrity import EXCLUSION_SIGNALS
from sipas_lib.texts import load_texts
from sipas_lib.units import province_of

STAGE = "integrity"
_TEXTS = load_texts("integrity")
#: The index's form (holds every criterion of both Phụ lục 5 forms), as in stage 50.
INSTRUMENT = ir.INSTRUMENT


@dataclass(frozen=True)
class IntegrityTables:
    """What the stage wrote (``tables``: name -> table) and file-level notes for the notebook."""

    tables: dict[str, pd.DataFrame]
    notes: tuple[str, ...] = field(default=())

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


# ------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------
def recheck_tables(paths: RunPaths, sample: pd.DataFrame, responses: pd.DataFrame, *, criteria, threshold: float,
                   level: float) -> dict[str, pd.DataFrame]:
    """The re-check's tables (empty dict when the year has no re-check file)."""
    path = optional_year_file(paths.data_dir, "recheck", "re-check results")
    if path is None:
        return {}
    accepted, quarantine = recheck.read_recheck(path, sample, responses, criteria=list(criteria))
    summary = recheck.recheck_summary(accepted, level=level)
    return {
        "recheck": accepted,
        "recheck_quarantine": quarantine,
        "recheck_summary": summary,
        "recheck_agreement": recheck.recheck_agreement(accepted, responses, criteria=list(criteria), level=level),
        "recheck_flags": recheck.recheck_flags(summary, threshold=threshold, level=level),
    }


def self_survey_tables(paths: RunPaths, units: pd.DataFrame, design, indices: pd.DataFrame, *, year: int,
                       tolerance: float, min_n: int, level: float) -> dict[str, pd.DataFrame]:
    """The own surveys' tables (empty dict when the year has no self-survey file); ``indices`` are the
    design's unit indices (:func:`sipas_lib.stages.index_ranking.unit_indices`), whose criterion rows give
    the independent figures question by question."""
    path = self_survey.self_survey_path(paths.data_dir)
    if path is None:
        return {}
    intake = self_survey.read_self_survey(path, units, year=year)
    independent = pd.concat([indices.loc[indices["level"] == "item"], self_survey.shared_index(design, level=level)],
                            ignore_index=True)
    gaps = self_survey.self_survey_gaps(intake.accepted, independent, level=level)
    return {
        "self_survey_summary": intake.summary,
        "self_survey_quarantine": intake.quarantine,
        "self_survey_monthly": self_survey.monthly_self_satisfaction(intake.accepted, level=level),
        "self_survey_gaps": gaps,
        "self_survey_flags": self_survey.self_survey_flags(gaps, tolerance=tolerance, level=level, min_n=min_n),
    }


def suspect_table(suspects: pd.DataFrame, recheck_accepted: pd.DataFrame | None) -> pd.DataFrame:
    """One row per suspect form (``form_id, unit_id, signal, reason, reason_vi``): the screening's suspects and
    the forms whose respondent denied having answered at the re-check; a form keeps its first signal."""
    parts = [suspects[["form_id", "unit_id", "signal"]]]
    if recheck_accepted is not None and len(recheck_accepted):
        denied = recheck_accepted.loc[recheck_accepted["outcome"].astype(str) == "denied", ["form_id", "unit_id"]]
        parts.append(denied.assign(signal="recheck_denied"))
    out = pd.concat(parts, ignore_index=True).astype({"form_id": str, "unit_id": str, "signal": str})
    out = out.drop_duplicates("form_id").reset_index(drop=True)
    for lang, col in (("en", "reason"), ("vi", "reason_vi")):
        out[col] = out["signal"].map({s: _TEXTS[f"exclude_{s}"][lang] for s in EXCLUSION_SIGNALS})
    return out


def _overall_and_ranks(design, instrument, *, rule: str, level: float, min_n: int, k_top: int, n_draws: int,
                       seed: int, province: pd.Series | None, league_by: str,
                       indices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each unit's overall index and rank confidence set under one design (stage 50's functions)."""
    if indices is None:
        indices = ir.unit_indices(design, instrument, rule=rule, level=level, min_n=min_n)
    cov = ix.overall_covariance(design, instrument, rule=rule)
    no_exclusions = pd.DataFrame({"unit_id": pd.Series(dtype=str), "unit_type": pd.Series(dtype=str),
                                  "reason": pd.Series(dtype=str)})
    ranks = ir.league_tables(indices, cov, no_exclusions, level=level, min_n=min_n, k_top=k_top, n_draws=n_draws,
                             seed=seed, province=province, league_by=league_by)
    return ranks.set_index("unit_id")[["estimate", "ci_low", "ci_high", "rank", "rank_ci_low", "rank_ci_high"]]


def unit_table(responses: pd.DataFrame, units: pd.DataFrame, signals: pd.DataFrame, suspects: pd.DataFrame,
               with_all: pd.DataFrame, without: pd.DataFrame | None, *, excluded: bool) -> pd.DataFrame:
    """The per-unit integrity table (``integrity_units``): flags, reasons, suspect forms, sensitivity."""
    n_forms = responses.groupby(responses["unit_id"].astype(str)).size()
    out = pd.DataFrame({"unit_id": n_forms.index.astype(str), "n_forms": n_forms.to_numpy().astype("int64")})
    out["unit_type"] = out["unit_id"].map(units.set_index("unit_id")["unit_type"].astype(str)).fillna("")
    hit = signals.loc[signals["flagged"].astype(bool)]
    by_unit = hit.groupby("unit_id")
    out["n_flags"] = out["unit_id"].map(by_unit.size()).fillna(0).astype("int64")
    out["signals"] = out["unit_id"].map(by_unit["signal"].agg(", ".join)).fillna("")
    out["reason"] = out["unit_id"].map(by_unit["reason"].agg(" ".join)).fillna("")
    out["reason_vi"] = out["unit_id"].map(by_unit["reason_vi"].agg(" ".join)).fillna("")
    out["n_suspect_forms"] = out["unit_id"].map(suspects.groupby("unit_id").size()).fillna(0).astype("int64")
    out["excluded"] = excluded & (out["n_suspect_forms"] > 0)
    for suffix, table in (("all", with_all), ("without", without)):
        shown = (table if table is not None else with_all.iloc[0:0]).reindex(out["unit_id"])
        if suffix == "without":  # only units that have suspect forms get the second column
            has = (out["n_suspect_forms"] > 0).to_numpy()
            shown = shown.astype(float).where(np.repeat(has[:, None], shown.shape[1], axis=1))
        out[f"index_{suffix}"] = shown["estimate"].to_numpy(float)
        out[f"ci_low_{suffix}"] = shown["ci_low"].to_numpy(float)
        out[f"ci_high_{suffix}"] = shown["ci_high"].to_numpy(float)
        for col in ("rank", "rank_ci_low", "rank_ci_high"):
            out[f"{col}_{suffix}"] = pd.array(shown[col].to_numpy(float), dtype="Float64").round().astype("Int64")
    changed = ((out["rank_ci_low_all"] != out["rank_ci_low_without"]) |
               (out["rank_ci_high_all"] != out["rank_ci_high_without"]))
    out["rank_set_changed"] = changed.fillna(False).astype(bool) & out["rank_ci_low_without"].notna().to_numpy()
    columns = list(schemas.contract("integrity_units").columns)
    return out[columns].sort_values(["n_flags", "unit_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# the stage
# ------------------------------------------------------------------------------------------------
def run(paths: RunPaths, settings: Settings) -> IntegrityTables:
    """Compute, validate and write the integrity tables; return them.

    Raises
    ------
    StageError
        A re-check or self-survey file that cannot be read (file, row and column named), or missing
        results of the intake stage.
    """
    opts = settings.section(STAGE)
    level, seed, min_n = settings.level, settings.seed, settings.min_publish_n
    try:
        responses = schemas.read_result(paths, "responses")
        units = schemas.read_result(paths, "units")
        sample = read_input(paths.data_dir, "sample")
        frame_counts = read_input(paths.data_dir, "frame_counts")
    except (schemas.ContractError, InputError, OSError) as err:
        raise StageError(str(err)) from err
    responses = responses.assign(unit_id=responses["unit_id"].astype(str), form_id=responses["form_id"].astype(str))
    notes: list[str] = []
    lang = settings.lang
    try:
        tables = recheck_tables(paths, sample, responses, criteria=opts["recheck_criteria"],
                                threshold=float(opts["confirmation_threshold"]), level=level)
    except InputError as err:
        raise StageError(str(err)) from err
    if not tables:
        notes.append(_TEXTS["no_recheck_file"][lang])

    flags = screening.screen(responses, false_flag_rate=float(opts["false_flag_rate"]),
                             n_permutations=int(opts["n_permutations"]), match=float(opts["near_duplicate_match"]),
                             window=int(opts["bunching_window"]), seed=seed)
    tables["screening_flags"] = flags
    tables["screening_suspects"] = screening.suspect_forms(responses, flags, match=float(opts["near_duplicate_match"]),
                                                           window=int(opts["bunching_window"]))

    design = ws.build_design(paths, settings, responses, sample, frame_counts).design
    index_opts = settings.section("index_ranking")  # the same league tables as stage 50
    ranked = dict(rule=index_opts["rule"], level=level, min_n=min_n, k_top=int(index_opts["k_top"]),
                  n_draws=int(index_opts["n_draws"]), seed=seed, province=province_of(units),
                  league_by=str(index_opts.get("league_by", "auto")))
    instrument = load_instrument(INSTRUMENT)
    indices = ir.unit_indices(design, instrument, rule=ranked["rule"], level=level, min_n=min_n)
    try:
        own = self_survey_tables(paths, units, design, indices, year=settings.year,
                                 tolerance=float(opts["self_survey_gap"]), min_n=int(opts["self_survey_min_n"]),
                                 level=level)
    except InputError as err:
        raise StageError(str(err)) from err
    if not own:
        notes.append(_TEXTS["no_self_survey_file"][lang])
    tables.update(own)

    sources = {"recheck": tables.get("recheck_flags"), "screening": flags, "self_survey": tables.get("self_survey_flags")}
    signals = pd.concat([t.assign(source=s) for s, t in sources.items() if t is not None], ignore_index=True)
    if "p_adjusted" not in signals:
        signals["p_adjusted"] = np.nan
    tables["integrity_signals"] = signals[list(schemas.contract("integrity_signals").columns)]

    suspects = suspect_table(tables["screening_suspects"], tables.get("recheck"))
    flagged_units = set(signals.loc[signals["flagged"].astype(bool), "unit_id"])
    suspects = suspects.loc[suspects["unit_id"].isin(flagged_units | set(suspects.loc[
        suspects["signal"] == "recheck_denied", "unit_id"]))]
    exclude = bool(opts["exclude_flagged"])
    with_all = _overall_and_ranks(design, instrument, indices=indices, **ranked)
    without = None
    if len(suspects):
        kept = responses.loc[~responses["form_id"].isin(set(suspects["form_id"]))]
        without = _overall_and_ranks(ws.build_design(paths, settings, kept, sample, frame_counts).design,
                                     instrument, **ranked)
    tables["integrity_units"] = unit_table(responses, units, signals, suspects, with_all, without, excluded=exclude)
    if exclude:
        tables["integrity_exclusions"] = suspects[list(schemas.contract("integrity_exclusions").columns)]
    else:  # an earlier run's exclusions must not reach this run's weighting
        schemas.result_path(paths, "integrity_exclusions").unlink(missing_ok=True)

    written = {}
    for name, table in tables.items():
        schemas.write_result(paths, name, table)
        written[name] = table
    return IntegrityTables(written, tuple(notes))
