"""Stage 80: the annual survey-implementation report, Phụ lục 4 of plan 143/KH-UBND
(notebook ``80_annual_survey_report``).

Every number comes from the intake stage's results, never recomputed from raw files:

* counts from ``intake_summary`` (received = accepted + quarantined, checked);
* the return rate from ``response_rates`` (distinct issued form ids that came back / issued);
* quarantined records by ``rule`` from ``quarantine/quarantine.csv`` (columns ``rule``,
  ``reason``, ``reason_vi``); the reasons may quote what was typed, so only the rule is kept;
* the fieldwork period from the accepted questionnaires' survey dates within the survey year
  (``common.year``): dates outside it are counted and left out, never stretching the period.

Writes ``annual_survey_summary``, ``annual_survey_forms``, ``annual_survey_units`` and
``annual_survey_quarantine``; the notebook fills the template with
:func:`sipas_lib.admin_reports.annual_survey_rows`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sipas_lib import config, schemas
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError

#: Columns of ``quarantine/quarantine.csv`` this stage relies on.
QUARANTINE_COLUMNS = ("rule", "reason", "reason_vi")
#: Lengths of a collection round (kỳ lấy phiếu) the template knows, in months.
ROUND_MONTHS = (1, 3, 6, 12)


def fieldwork_period(dates: pd.Series, year: int) -> dict[str, object]:
    """The fieldwork period from survey dates: only dates within ``year`` count.

    Returns ``first_survey_date, last_survey_date, dated, dates_outside_year, dates_missing,
    span_months, round_months, rounds``: the span in calendar months is rounded up to a round of
    1, 3, 6 or 12 months (the template's *kỳ lấy phiếu*), and ``rounds`` = ⌈span / round⌉.

    Examples
    --------
    >>> d = pd.Series(pd.to_datetime(["2025-01-15", "2025-05-02", "1900-01-01", None]))
    >>> p = fieldwork_period(d, 2025)
    >>> p["first_survey_date"].date(), p["last_survey_date"].date(), p["dates_outside_year"], p["round_months"]
    (datetime.date(2025, 1, 15), datetime.date(2025, 5, 2), 1, 6)
    """
    dates = pd.to_datetime(dates)
    present = dates.dropna()
    inside = present[present.dt.year == int(year)]
    out = {"dated": int(len(inside)), "dates_outside_year": int(len(present) - len(inside)),
           "dates_missing": int(dates.isna().sum())}
    if inside.empty:
        return {**out, "first_survey_date": pd.NaT, "last_survey_date": pd.NaT,
                "span_months": None, "round_months": None, "rounds": None}
    a, b = inside.min(), inside.max()
    span = (b.year - a.year) * 12 + b.month - a.month + 1
    months = next(m for m in ROUND_MONTHS if span <= m)
    return {**out, "first_survey_date": a, "last_survey_date": b, "span_months": span, "round_months": months,
            "rounds": math.ceil(span / months)}


def read_quarantine(paths: config.RunPaths) -> pd.DataFrame:
    """``quarantine/quarantine.csv`` as written by the intake stage (columns checked, text only)."""
    path = paths.quarantine / "quarantine.csv"
    if not path.exists():
        raise StageError(f"{path}: not found; it is written by stage 'intake_quality' — run that stage first")
    table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    missing = [c for c in QUARANTINE_COLUMNS if c not in table.columns]
    if missing:
        raise StageError(f"{path}: column(s) {', '.join(missing)} missing; expected {', '.join(QUARANTINE_COLUMNS)}")
    empty = table.index[table["rule"].str.strip() == ""]
    if len(empty):
        raise StageError(f"{path}, row {int(empty[0]) + 2}, column 'rule': empty")
    return table


def quarantine_by_rule(quarantine: pd.DataFrame, received: int) -> pd.DataFrame:
    """Records set aside per rule with their share of the records received (largest first)."""
    counts = quarantine["rule"].value_counts(sort=False)
    out = pd.DataFrame({"rule": counts.index.astype(str), "n": counts.to_numpy().astype("int64")})
    out["share_of_received"] = out["n"] / received if received else np.nan
    return out.sort_values(["n", "rule"], ascending=[False, True], kind="stable").reset_index(drop=True)


def compute(paths: config.RunPaths, settings: Settings) -> dict[str, pd.DataFrame]:
    """The four tables of Phụ lục 4 (nothing written)."""
    responses = schemas.read_result(paths, "responses")
    intake = schemas.read_result(paths, "intake_summary")
    rates = schemas.read_result(paths, "response_rates")
    quarantine = read_quarantine(paths)
    received, accepted, quarantined = (int(intake[c].sum()) for c in ("received", "accepted", "quarantined"))
    where = schemas.result_path(paths, "intake_summary")
    if received != accepted + quarantined:
        raise StageError(f"{where}: received ({received}) is not accepted ({accepted}) + quarantined ({quarantined})")
    if accepted != len(responses):
        raise StageError(f"{where}: {accepted} accepted, but {schemas.result_path(paths, 'responses')} "
                         f"holds {len(responses)} questionnaires")
    if quarantined != len(quarantine):
        raise StageError(f"{where}: {quarantined} quarantined, but {paths.quarantine / 'quarantine.csv'} "
                         f"lists {len(quarantine)} records")
    issued, returned = int(rates["issued"].sum()), int(rates["returned"].sum())
    forms = (responses.groupby(["field", "channel"]).size().rename("n").reset_index()
             .rename(columns={"channel": "survey_mode"}))
    forms["n"] = forms["n"].astype("int64")
    by_field = forms.groupby("field")["n"].sum().sort_values(ascending=False, kind="stable")
    summary = {
        "year": int(settings.year), "received": received, "accepted": accepted, "quarantined": quarantined,
        "issued": issued, "returned": returned, "return_rate": returned / issued if issued else np.nan,
        **fieldwork_period(responses["survey_date"], settings.year),
        "top_field": by_field.index[0] if len(by_field) else None,
        "top_field_n": int(by_field.iloc[0]) if len(by_field) else 0,
    }
    summary_t = pd.DataFrame([summary])
    for col in ("span_months", "round_months", "rounds"):
        summary_t[col] = summary_t[col].astype("Int64")
    for col in ("first_survey_date", "last_survey_date"):
        summary_t[col] = pd.to_datetime(summary_t[col]).astype("datetime64[us]")
    summary_t["top_field"] = summary_t["top_field"].astype("str") if len(by_field) else pd.Series([None], dtype="str")
    units = (responses.groupby("unit_type").agg(n_units=("unit_id", "nunique"), n_forms=("unit_id", "size"))
             .reset_index().astype({"n_units": "int64", "n_forms": "int64"}))
    return {"annual_survey_summary": summary_t, "annual_survey_forms": forms, "annual_survey_units": units,
            "annual_survey_quarantine": quarantine_by_rule(quarantine, received)}


def run(paths: config.RunPaths, settings: Settings) -> dict[str, pd.DataFrame]:
    """Compute, validate and write the four Phụ lục 4 tables; returns them by their result names."""
    tables = compute(paths, settings)
    for name, table in tables.items():
        schemas.write_result(paths, name, table)
    return tables
