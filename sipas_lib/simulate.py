"""A realistic, seeded demo year for Hà Nội: frame, sample, returned questionnaires and dossiers.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, in a fixed order, so
the same ``(year, seed, scale)`` always writes the same files. Run ``python -m sipas_lib.simulate``
or ``sipas demo``.

The model
---------
*Units.* The units registry (``sipas_lib/registry/hanoi_units.csv``) on the year's fieldwork day
(1 October). From 2025 the two-tier structure: Hà Nội's 15 departments after the March 2025
merger and its 126 communes and wards with their official names and codes; each new unit's
effects derive from its predecessors' through the crosswalk (:func:`demo_effects`). Before 2025
the real 20 departments and 30 districts plus four synthetic communes per district (named
``Phường 1`` … / ``Xã 1`` …, dossier records only).

*Frame.* Each unit's yearly number of transactions that received a result is log-normal
(median ~7,000, × ``scale``). Fields of procedure follow the unit's mandate (the Department of
Justice is mostly ``justice`` …; districts mix all five); the submission channel is direct,
online level 3, online level 4 or postal (BCCI) with unit-specific shares. Applicants have
synthetic Vietnamese names, phone numbers and addresses (personal data: they stay in the data
folder).

*Sample.* 1,250 department and 4,800 local questionnaires (Hà Nội 2021, seed 002): departments
(and the old districts) equally, the 126 communes by power allocation with a minimum per
commune (:data:`LOCAL_ALLOCATION`); then proportionally over fields inside a unit, drawn
systematically from each unit × field list sorted by date (:mod:`sipas_lib.sampling`):
:math:`\\pi = n_h / N_h`. Each form gets an id from :func:`sipas_lib.sampling.assign_form_ids`
(6-digit Luhn ids while every unit code fits, as before 2025; 10-digit Damm ids after) and a
survey mode (postal, one-stop shop, online) that depends on the submission channel.

*Answers.* A latent-variable model gives correlated Likert items:
:math:`y^*_{ij} = \\mu_j + u_{unit} + e_{unit,element(j)} + 0.8\\,\\eta_i + 0.6\\,\\varepsilon_{ij}` with
:math:`\\eta_i, \\varepsilon_{ij} \\sim N(0,1)`, cut at (-1.6, -0.9, 0, 1.4) into 1-5, so a unit's
share satisfied is :math:`\\Phi(\\mu_j + u + e)` — unit effects are drawn to put unit SIPAS between
roughly 75 % and 95 %. Section V (c15-c18) is answered only by the ~25 % who gave feedback;
the local-governance block only by registered residents (lg8 only by those who complained);
1.5 % of answers are missing at random.

*Non-response.* Whether a form comes back is Bernoulli with a logit that has a unit effect
and a survey-mode effect (one-stop shop > postal > online), so response rates vary by unit and
channel.

*Broken records.* A handful of records are spoiled the way real returns are: out-of-range codes
(0, 6, 9), an out-of-range age group, a mistyped form id (check digit fails), an unknown unit,
exact and conflicting duplicated form ids. Intake must quarantine exactly these.

*Dossiers.* Monthly administrative dossier records (Phụ lục 3): per unit and, for districts,
per commune, with channel, field, procedure, due and resolution dates (on time / overdue /
pending with a reason), plus petitions, apology letters and satisfaction opinions.

*Records that follow satisfaction.* A unit's records and its survey answers share a latent
quality (:func:`admin_quality`): the records follow a management quality
:math:`m = \\rho\\,z + \\sqrt{1-\\rho^2}\\,\\zeta` with :math:`z` the unit's standardized satisfaction
effect, :math:`\\zeta \\sim N(0, 1)` its own and :math:`\\rho` = :data:`QUALITY_CORRELATION`; a better
unit resolves more dossiers on time, gets more online, fewer complaints and collects more opinions
(:data:`ADMIN_LINKS`). On the two-tier demo year the communes' true index regressed on the model's
default covariates (on-time rate, share online, complaints and opinions per 1,000) gives
:math:`R^2 \\approx 0.6` (``tests/test_simulate.py``), so a small-area model has something to borrow.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from sipas_lib.config import CHANNELS, DEFAULT_SEED, DEFAULT_YEAR, DEMO_DIR, FIELDS, PACKAGE_DIR, SURVEY_MODES
from sipas_lib.crosswalk import validate_crosswalk
from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib import sampling
from sipas_lib.units import REQUIRED_COLUMNS, load_units, parent_types, survey_tier, surveyed_units, units_on

__all__ = ["CHANNELS", "FIELDS", "SURVEY_MODES", "write_demo_year", "demo_is_complete", "content_digest"]
#: Questionnaires per tier (Hà Nội 2021, seed 002): departments, local units (districts, then communes).
TOTALS = {"department": 1250, "local": 4800}
COMMUNES_PER_DISTRICT = 4
#: The day of the year whose units a demo year surveys (fieldwork starts in October).
FIELDWORK_DAY = "10-01"
#: A day of the old structure: the units whose effects every year's units derive from.
LEGACY_DAY = "2024-10-01"
#: Median yearly transactions of a unit (log-normal): a commune's one-stop shop sees fewer than a district's.
FRAME_MEDIAN = {"department": 7000, "district": 7000, "commune": 2500, "ward": 2500}
#: The two-tier year's local allocation: power allocation (Bankier) with a minimum per commune.
LOCAL_ALLOCATION = {"method": "power", "exponent": 0.5, "minimum": 30}
CROSSWALK = PACKAGE_DIR / "registry" / "hanoi_crosswalk_2025.csv"
#: Response files: departments on the department form, local units on the district or commune form.
RESPONSE_FILES = {"department": "responses_departments.xlsx", "district": "responses_districts.csv",
                  "commune": "responses_communes.csv"}

# Field mix of each department (by unit_id); districts use DISTRICT_FIELD_MIX.
_DEPARTMENT_MAIN_FIELD = {
    "S02": "justice", "S11": "labour_social", "S09": "land_environment", "S08": "construction_urban",
    "S17": "construction_urban", "S06": "land_environment",
    # after the 1 March 2025 merger (Home Affairs took over Labour, Invalids and Social Affairs)
    "S90102": "justice", "S90101": "labour_social", "S90105": "land_environment", "S90106": "construction_urban",
    "S90112": "construction_urban",
}
DISTRICT_FIELD_MIX = np.array([0.30, 0.15, 0.25, 0.15, 0.15])

_FAMILY = np.array(["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
                    "Đỗ", "Hồ", "Ngô", "Dương", "Lý"])
_MIDDLE = np.array(["Văn", "Thị", "Hữu", "Đức", "Minh", "Thu", "Ngọc", "Quang", "Thanh", "Xuân", "Hồng"])
_GIVEN = np.array(["An", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Hương",
                   "Khánh", "Lan", "Linh", "Long", "Mai", "Nam", "Nga", "Phương", "Quân", "Sơn", "Tâm",
                   "Thảo", "Trang", "Trung", "Tuấn", "Yến"])
_STREETS = np.array(["Phố Huế", "Hàng Bài", "Kim Mã", "Láng Hạ", "Nguyễn Trãi", "Giải Phóng", "Tây Sơn",
                     "Lạc Long Quân", "Trần Duy Hưng", "Xuân Thủy", "Cầu Giấy", "Minh Khai"])
_OVERDUE_REASONS = np.array(["Hồ sơ phức tạp, cần xác minh", "Phối hợp liên thông chậm",
                             "Thiếu nhân lực", "Lỗi phần mềm một cửa"])
#: A dossier's channel and status, in the order of the codes simulate_dossiers draws.
_DOSSIER_CHANNELS = ("online_l4", "online_l3", "postal", "direct")
_DOSSIER_STATUSES = ("pending", "overdue", "on_time")
_EDU_OTHER = np.array(["Trung cấp lý luận chính trị", "Bổ túc văn hóa", "Chứng chỉ <nghề> & 'ngắn hạn'",
                       "Không đi học"])


def _texts(options, picks: np.ndarray, missing: np.ndarray | None = None) -> pd.Series:
    """``options[picks]`` as a ``str`` Series (missing where ``missing`` is true), taken in Arrow.

    The same values as ``pd.Series(np.asarray(options)[picks])``; building the column from a NumPy
    array of texts converts it one value at a time, which costs seconds on a year's million records."""
    import pyarrow as pa_arrow

    table = pa_arrow.array(list(options), type=pa_arrow.large_string())
    return pd.Series(pd.array(table.take(pa_arrow.array(np.asarray(picks), mask=missing)), dtype="str"))


def _numbered(prefix: str, n: int, width: int) -> pd.Series:
    """``prefix`` followed by 1 … ``n`` zero-padded to ``width`` digits (``f"{prefix}{i:0{width}d}"``),
    built in Arrow (a Python list of a million ids costs a second)."""
    import pyarrow as pa_arrow
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa_arrow.array(np.arange(1, n + 1, dtype=np.int64)), pa_arrow.large_string()),
                          width=width, padding="0")
    text = pa_arrow.large_string()
    joined = pc.binary_join_element_wise(pa_arrow.scalar(prefix, text), digits, pa_arrow.scalar("", text))
    return pd.Series(pd.array(joined, dtype="str"))


def _units_with_communes(units: pd.DataFrame) -> pd.DataFrame:
    districts = units.loc[units["unit_type"] == "district"]
    k = np.arange(1, COMMUNES_PER_DISTRICT + 1)
    rep = districts.loc[districts.index.repeat(COMMUNES_PER_DISTRICT)].reset_index(drop=True)
    kk = np.tile(k, len(districts))
    urban = rep["district_kind"].eq("urban").to_numpy()
    prefix_vi = np.where(urban, "Phường", "Xã")
    prefix_en = np.where(urban, "Ward", "Commune")
    short = rep["name_vi"].str.replace(r"^(Quận|Huyện|Thị xã) ", "", regex=True)
    short_en = rep["name_en"].str.replace(r" (District|Town)$", "", regex=True)
    communes = pd.DataFrame({
        "unit_id": rep["unit_id"] + "C" + pd.Series(kk).astype(str).str.zfill(2),
        "code": pd.NA,
        "name_vi": pd.Series(prefix_vi) + " " + pd.Series(kk).astype(str) + " (" + short + ")",
        "name_en": pd.Series(prefix_en) + " " + pd.Series(kk).astype(str) + " (" + short_en + ")",
        "unit_type": "commune",
        "parent_id": rep["unit_id"],
    })
    cols = ["unit_id", "code", "name_vi", "name_en", "unit_type", "parent_id"]
    return pd.concat([units[cols], communes[cols]], ignore_index=True)


def _field_probs(units: pd.DataFrame) -> np.ndarray:
    probs = np.tile(DISTRICT_FIELD_MIX, (len(units), 1))
    for i, (uid, utype) in enumerate(zip(units["unit_id"], units["unit_type"])):
        if utype == "department":
            p = np.full(len(FIELDS), 0.02)
            p[FIELDS.index(_DEPARTMENT_MAIN_FIELD.get(uid, "other"))] = 0.92
            probs[i] = p / p.sum()
    return probs


def _people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Synthetic names, phones and addresses (personal data, for the mailing list only)."""
    name = (_texts(_FAMILY, rng.integers(0, len(_FAMILY), n)) + " "
            + _texts(_MIDDLE, rng.integers(0, len(_MIDDLE), n)) + " "
            + _texts(_GIVEN, rng.integers(0, len(_GIVEN), n)))
    phone = "09" + pd.Series(rng.integers(0, 10**8, n)).astype(str).str.zfill(8)
    address = ("Số " + pd.Series(rng.integers(1, 400, n)).astype(str) + ", "
               + _texts(_STREETS, rng.integers(0, len(_STREETS), n)) + ", Hà Nội")
    return pd.DataFrame({"applicant_name": name, "phone": phone, "address": address})


def simulate_frame(units: pd.DataFrame, year: int, rng: np.random.Generator, scale: float = 1.0,
                   since: str | None = None) -> pd.DataFrame:
    """One row per transaction that received a result between 1 January and 30 September.

    ``since``: the day the units were created (``YYYY-MM-DD``, e.g. ``2025-07-01`` for the communes
    of the reform): transactions are received from that day on, so the frame holds only what the
    surveyed units themselves handled.
    """
    n_units = len(units)
    median = units["unit_type"].map(FRAME_MEDIAN).to_numpy(dtype=float)
    sizes = np.maximum(np.round(rng.lognormal(np.log(median), 0.6, n_units) * scale), 40).astype(int)
    unit_idx = np.repeat(np.arange(n_units), sizes)
    n = len(unit_idx)
    probs = _field_probs(units)
    cum = probs.cumsum(axis=1)[unit_idx]
    field_idx = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=len(FIELDS) - 1)
    channel_mix = rng.dirichlet(np.array([11, 3, 4, 2.0]), n_units)
    ccum = channel_mix.cumsum(axis=1)[unit_idx]
    channel_idx = (rng.random(n)[:, None] > ccum).sum(axis=1).clip(max=len(CHANNELS) - 1)
    start = np.datetime64(since or f"{year}-01-01")
    days = 250 if since is None else int((np.datetime64(f"{year}-09-05") - start) / np.timedelta64(1, "D"))
    received = start + rng.integers(0, days, n).astype("timedelta64[D]")
    result = received + rng.integers(1, 25, n).astype("timedelta64[D]")
    fields = _texts(FIELDS, field_idx)
    frame = pd.DataFrame({
        "transaction_id": _numbered(f"{year}-", n, 7).array,
        "unit_id": _texts(units["unit_id"], unit_idx).array,
        "field": fields.array,
        "procedure": (fields + "-" + pd.Series(rng.integers(1, 40, n)).astype(str).str.zfill(3)).array,
        "received_on": received,
        "result_on": result,
        "channel": _texts(CHANNELS, channel_idx).array,
    })
    return pd.concat([frame, _people(rng, n)], axis=1)


def draw_sample(frame: pd.DataFrame, units: pd.DataFrame, rng: np.random.Generator,
                totals: dict[str, int], local: dict | None = None) -> pd.DataFrame:
    """The fielded sample, drawn with :mod:`sipas_lib.sampling` as the sampling stage would.

    ``totals`` are questionnaires per tier (:func:`sipas_lib.units.survey_tier`: ``department``,
    ``local``). Equal allocation over the units of a tier — except the local tier when ``local``
    gives another rule (e.g. :data:`LOCAL_ALLOCATION`: power allocation with a minimum per
    commune, capped at what the total allows); proportional over fields inside a unit;
    systematic selection from each unit x field list sorted by date received, 10 % of each unit's
    forms flagged for re-check (phúc tra); then a survey mode per form that depends on how the
    dossier was submitted. Form ids: :func:`sipas_lib.sampling.assign_form_ids` (6-digit while every
    unit code fits, else 10-digit).
    """
    counts = sampling.count_frame(frame)
    tiers = units.assign(tier=survey_tier(units))
    parts = []
    for tier, total in totals.items():
        rule = {"method": "equal"} if local is None or tier != "local" else dict(local)
        n_units = int((tiers["tier"] == tier).sum())
        if "minimum" in rule:
            rule["minimum"] = min(int(rule["minimum"]), total // max(n_units, 1))
        method = rule.pop("method")
        parts.append(sampling.allocate_by_type(counts, tiers, {tier: total}, method=method, type_col="tier",
                                               **rule))
    per_unit = pd.concat(parts, ignore_index=True)
    strata = sampling.allocate_within(counts, per_unit, by="field", method="proportional")
    chosen = sampling.select(frame, strata, method="systematic", seed=rng, recheck=0.10)
    chosen = sampling.assign_form_ids(chosen, units)
    online = chosen["channel"].str.startswith("online").to_numpy()
    u = rng.random(len(chosen))
    chosen["survey_mode"] = np.where(online, np.where(u < 0.55, "online", "postal"),
                                     np.where(u < 0.65, "postal", "one_stop"))
    cols = ["form_id", "transaction_id", "unit_id", "field", "channel", "survey_mode", "stratum",
            "N_h", "n_h", "incl_prob", "design_weight", "recheck"]
    return chosen[cols].reset_index(drop=True)


def _likert(latent: np.ndarray) -> np.ndarray:
    return 1 + np.searchsorted(np.array([-1.6, -0.9, 0.0, 1.4]), latent)


def unit_effects(n_units: int, n_elements: int, n_criteria: int, seed: int, year: int) -> dict[str, np.ndarray]:
    """Latent unit, element and item effects: stable across years, plus a small yearly drift.

    The stable part comes from ``seed`` alone, so consecutive demo years of the same seed show the
    same units near the top and bottom, and year-on-year changes of a few points, as real
    SIPAS series do; the drift comes from ``(seed, year)``.
    """
    stable = np.random.default_rng([seed, 0])
    drift = np.random.default_rng([seed, year, 1])
    return {
        "unit_base": stable.uniform(0.8, 1.6, n_units) + drift.normal(0, 0.08, n_units),
        "element": stable.normal(0, 0.15, (n_units, n_elements)) + drift.normal(0, 0.05, (n_units, n_elements)),
        "item": stable.normal(0, 0.12, n_criteria),
        "response": stable.normal(0, 0.5, n_units) + drift.normal(0, 0.1, n_units),
    }


def _crosswalk() -> pd.DataFrame:
    """The shipped crosswalk across the reform (old unit -> new unit with shares)."""
    table = pd.read_csv(CROSSWALK, dtype={"old_unit_id": str, "new_unit_id": str})
    return validate_crosswalk(table, str(CROSSWALK))


def demo_effects(units: pd.DataFrame, n_elements: int, n_criteria: int, seed: int, year: int,
                 registry: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    r"""Latent effects of ``units`` (aligned with its rows), continuous across the 2025 reform.

    The old structure's surveyed units (20 departments, 30 districts, registry order) get
    :func:`unit_effects` of ``(seed, year)``. A unit created by the reform inherits its
    predecessors' effects through the shipped crosswalk (``share_of_new`` normalised over its
    predecessors), plus a small own effect stable across years:

    .. math:: u_c = \sum_d \frac{a_{dc}}{\sum_{d'} a_{d'c}}\, u_d + \nu_c,\quad \nu_c \sim N(0, 0.06^2)

    so a commune's true index sits near the area-weighted mix of its old districts', and a
    year-on-year comparison across the reform has a true signal. A unit with no predecessor gets
    fresh effects from its own draw. A year of the old structure draws its units in their order
    (for the full 20 + 30 units that is the draw the new units inherit from; a tiny legacy year
    keeps the data it always had).
    """
    registry = load_units() if registry is None else registry
    legacy = surveyed_units(units_on(registry, LEGACY_DAY))
    old_pos = pd.Index(legacy["unit_id"]).get_indexer(units["unit_id"])
    if (old_pos >= 0).all():
        # a year of the old structure: its units in order, as the demo has always drawn them (so a tiny legacy
        # year keeps its data; the full old structure is the same draw as the one the new units inherit from)
        return unit_effects(len(units), n_elements, n_criteria, seed, year)
    old = unit_effects(len(legacy), n_elements, n_criteria, seed, year)
    crosswalk = _crosswalk()
    crosswalk = crosswalk.loc[crosswalk["old_unit_id"].isin(legacy["unit_id"])]
    weights = (crosswalk.pivot_table(index="new_unit_id", columns="old_unit_id", values="share_of_new",
                                     aggfunc="sum", fill_value=0.0)
               .reindex(columns=legacy["unit_id"], fill_value=0.0))
    weights = weights.div(weights.sum(axis=1), axis=0)
    # own effects of every registry unit, drawn once so a unit's value does not depend on which units are kept
    own_rng = np.random.default_rng([seed, 2])
    n_reg = len(registry)
    own = {"unit_base": own_rng.normal(0, 0.06, n_reg), "element": own_rng.normal(0, 0.04, (n_reg, n_elements)),
           "response": own_rng.normal(0, 0.15, n_reg)}
    fresh = unit_effects(n_reg, n_elements, n_criteria, seed + 1, year)
    reg_pos = pd.Index(registry["unit_id"]).get_indexer(units["unit_id"])
    out = {"item": old["item"]}
    for key in ("unit_base", "element", "response"):
        rows = []
        for uid, op, rp in zip(units["unit_id"], old_pos, reg_pos):
            if op >= 0:
                rows.append(old[key][op])
            elif uid in weights.index:
                rows.append(weights.loc[uid].to_numpy() @ old[key] + own[key][rp])
            else:
                rows.append(fresh[key][rp])
        out[key] = np.array(rows, dtype=float)
    return out


#: Mean and SD of a unit's overall satisfaction effect u + mean element effect (:func:`unit_effects`: stable
#: u ~ uniform(0.8, 1.6), SD 0.8/√12; five element effects N(0, 0.15²), their mean SD 0.15/√5).
_EFFECT_MEAN, _EFFECT_SD = 1.2, float(np.sqrt(0.8**2 / 12 + 0.15**2 / 5))
#: Correlation ρ of a unit's management quality (which its administrative records follow) with its
#: satisfaction effect: set so that the two-tier year's communes give R² ≈ 0.6 (true index on the covariates).
QUALITY_CORRELATION = 0.85
#: Change per SD of management quality: log-odds of a late resolution, log-odds of an online submission
#: (where the procedure offers it), log-rate of complaints, log-rate of opinions collected during service.
ADMIN_LINKS = {"late": -0.6, "online": 0.5, "complaints": -0.5, "opinions": 0.3}
#: SD of each record kind's own unit-level deviation from the shared quality (the kinds are not collinear).
ADMIN_LINK_NOISE = 0.3


def _criteria_layout() -> tuple[list[str], list[str], np.ndarray]:
    """The local form's criteria, its elements (sorted) and each criterion's element position."""
    instrument = instrument_for_unit_type("district")
    criteria = list(instrument.criteria_codes)
    element_of = instrument.items.set_index("code")["element"]
    elements = sorted(element_of.loc[criteria].unique())
    return criteria, elements, np.array([elements.index(element_of[c]) for c in criteria])


def admin_quality(units: pd.DataFrame, seed: int, year: int, registry: pd.DataFrame | None = None) -> pd.DataFrame:
    r"""How far each unit's administrative records sit from the average, on each record kind's link scale.

    The unit's management quality shares a part with its overall satisfaction effect
    :math:`u + \bar e` (unit plus mean element effect, :func:`demo_effects`, the same its survey answers
    come from):

    .. math:: m = \rho\,z + \sqrt{1-\rho^2}\,\zeta,\qquad
              z = (u + \bar e - 1.2)\,/\,\sqrt{0.8^2/12 + 0.15^2/5},

    with :math:`\rho` = :data:`QUALITY_CORRELATION` and :math:`\zeta \sim N(0,1)` the unit's own;
    record kind :math:`k` shifts by :math:`b_k (m + \xi_k)` (:data:`ADMIN_LINKS`,
    :math:`\xi_k \sim N(0, 0.3^2)`, :data:`ADMIN_LINK_NOISE`). :math:`\zeta, \xi` are drawn once per
    registry unit from ``seed`` (stable across years and whichever units a year keeps); :math:`u`
    carries the year's drift. The design follows the area-level model the records feed
    (Rao & Molina 2015, *Small Area Estimation*, §6.1): satisfaction and records correlate through
    the unit, not through each respondent.

    Returns
    -------
    DataFrame
        Index ``unit_id`` (the surveyed units of ``units``); columns ``quality`` (:math:`m`) and one
        per key of :data:`ADMIN_LINKS` (the shift on that kind's log-odds or log-rate scale).
    """
    registry = load_units() if registry is None else registry
    surveyed = surveyed_units(units)
    criteria, elements, _ = _criteria_layout()
    effects = demo_effects(surveyed, len(elements), len(criteria), seed, year, registry)
    z = (effects["unit_base"] + effects["element"].mean(axis=1) - _EFFECT_MEAN) / _EFFECT_SD
    own_rng = np.random.default_rng([seed, 3])
    own = own_rng.normal(size=len(registry))
    noise = own_rng.normal(0, ADMIN_LINK_NOISE, (len(registry), len(ADMIN_LINKS)))
    pos = pd.Index(registry["unit_id"]).get_indexer(surveyed["unit_id"])
    known = pos >= 0
    own_u = np.where(known, own[pos], 0.0)
    noise_u = np.where(known[:, None], noise[pos], 0.0)
    rho = QUALITY_CORRELATION
    quality = rho * z + np.sqrt(1 - rho**2) * own_u
    out = pd.DataFrame({"quality": quality}, index=pd.Index(surveyed["unit_id"].to_numpy(), name="unit_id"))
    for k, (kind, slope) in enumerate(ADMIN_LINKS.items()):
        out[kind] = slope * (quality + noise_u[:, k])
    return out


def true_unit_index(units: pd.DataFrame, seed: int, year: int, registry: pd.DataFrame | None = None) -> pd.Series:
    r"""Each surveyed unit's true overall index (the value its direct estimate targets).

    Satisfied means a latent above 0, so criterion :math:`j`'s true share is
    :math:`\Phi(\mu_j + u + e_{element(j)})` (the respondent terms have variance
    :math:`0.8^2 + 0.6^2 = 1`, :func:`simulate_answers`); element index = mean of its criteria,
    overall = mean of the elements (the ``mean`` aggregation rule). Returned with index ``unit_id``.
    """
    from scipy.stats import norm

    surveyed = surveyed_units(units)
    criteria, elements, el_idx = _criteria_layout()
    eff = demo_effects(surveyed, len(elements), len(criteria), seed, year, registry)
    share = norm.cdf(eff["item"][None, :] + eff["unit_base"][:, None] + eff["element"][:, el_idx])
    element_index = np.stack([share[:, el_idx == k].mean(axis=1) for k in range(len(elements))], axis=1)
    return pd.Series(element_index.mean(axis=1), index=pd.Index(surveyed["unit_id"].to_numpy(), name="unit_id"),
                     name="true_index")


def simulate_answers(sample: pd.DataFrame, units: pd.DataFrame, rng: np.random.Generator,
                     year: int, seed: int = DEFAULT_SEED, registry: pd.DataFrame | None = None) -> pd.DataFrame:
    """Returned questionnaires (before spoiling), canonical columns, every form.

    The local forms (district before the reform, commune after) share the criteria and the
    local-governance items; departments answer no local-governance item.
    """
    ids = units["unit_id"].to_numpy()
    unit_pos = pd.Index(ids).get_indexer(sample["unit_id"])
    n = len(sample)
    instrument = instrument_for_unit_type("district")
    criteria, elements, el_idx = _criteria_layout()
    effects = demo_effects(units, len(elements), len(criteria), seed, year, registry)
    # Response: unit effect + survey-mode effect on the logit scale.
    unit_resp = effects["response"]
    mode_eff = sample["survey_mode"].map({"one_stop": 2.6, "postal": 1.3, "online": 0.7}).to_numpy()
    returned = rng.random(n) < 1 / (1 + np.exp(-(mode_eff + unit_resp[unit_pos])))
    resp = sample.loc[returned].reset_index(drop=True)
    pos = unit_pos[returned]
    m = len(resp)
    unit_base, element_eff, item_eff = effects["unit_base"], effects["element"], effects["item"]
    eta = rng.normal(size=(m, 1))
    latent = (item_eff[None, :] + unit_base[pos][:, None] + element_eff[pos][:, el_idx]
              + 0.8 * eta + 0.6 * rng.normal(size=(m, len(criteria))))
    answers = _likert(latent).astype(float)
    gave_feedback = rng.random(m) < 0.25
    answers[~gave_feedback[:, None] & (el_idx == elements.index("E5"))[None, :]] = np.nan
    answers[rng.random(answers.shape) < 0.015] = np.nan
    out = resp[["form_id", "unit_id", "field", "survey_mode"]].rename(columns={"survey_mode": "channel"})
    out = pd.concat([out, pd.DataFrame(answers, columns=criteria)], axis=1)
    # Local governance (district form only; registered residents; lg8 only after a complaint).
    lg = [c for c in instrument.item_codes if c.startswith("lg")]
    lg_latent = 0.4 + unit_base[pos][:, None] * 0.6 + 0.7 * eta + 0.7 * rng.normal(size=(m, len(lg)))
    lg_ans = _likert(lg_latent).astype(float)
    is_local = survey_tier(units).to_numpy()[pos] == "local"
    resident = (rng.random(m) < 0.7) & is_local
    lg_ans[~resident] = np.nan
    lg_ans[~(rng.random(m) < 0.12), len(lg) - 1] = np.nan
    lg_ans[rng.random(lg_ans.shape) < 0.015] = np.nan
    out = pd.concat([out, pd.DataFrame(lg_ans, columns=lg)], axis=1)
    out["gender"] = rng.choice([1, 2], m, p=[0.48, 0.52])
    out["age_group"] = rng.choice([1, 2, 3, 4, 5], m, p=[0.08, 0.30, 0.35, 0.18, 0.09])
    out["education"] = rng.choice(np.arange(1, 8), m, p=[0.03, 0.10, 0.22, 0.20, 0.35, 0.08, 0.02])
    other = out["education"].to_numpy() == 7
    out["education_other"] = np.where(other, _EDU_OTHER[rng.integers(0, len(_EDU_OTHER), m)], "")
    start = np.datetime64(f"{year}-10-01")
    out["survey_date"] = (start + rng.integers(0, 60, m).astype("timedelta64[D]")).astype(str)
    staff = _people(rng, 40)
    who = rng.integers(0, 40, m)
    out["enumerator_name"] = staff["applicant_name"].to_numpy()[who]
    out["enumerator_phone"] = staff["phone"].to_numpy()[who]
    out["enumerator_address"] = staff["address"].to_numpy()[who]
    return out


def spoil(answers: pd.DataFrame, rng: np.random.Generator,
          unknown_unit: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spoil a handful of records the way real returns are spoiled; return (records, log).

    The log lists every spoiled record with the defect, so tests can check that intake
    quarantines exactly these (``form_id`` + ``defect``). ``unknown_unit`` gives, per record, the
    id written when its unit is made unknown (an id of the same look that is not in the registry).
    """
    out = answers.copy()
    log = []
    rows = rng.choice(len(out), 8, replace=False)
    for r, col, val in zip(rows[:3], ("c03", "c10", "c13"), (6, 0, 9)):
        out.loc[r, col] = val
        log.append((out.loc[r, "form_id"], f"out_of_range:{col}"))
    out.loc[rows[3], "age_group"] = 8
    log.append((out.loc[rows[3], "form_id"], "out_of_range:age_group"))
    fid = out.loc[rows[4], "form_id"]
    out.loc[rows[4], "form_id"] = fid[:-1] + str((int(fid[-1]) + 3) % 10)  # a mistyped check digit
    log.append((out.loc[rows[4], "form_id"], "bad_check_digit"))
    out.loc[rows[5], "unit_id"] = "X99" if unknown_unit is None else unknown_unit.iloc[rows[5]]
    log.append((out.loc[rows[5], "form_id"], "unknown_unit"))
    exact = out.iloc[[rows[6]]]
    conflict = out.iloc[[rows[7]]].copy()
    conflict["c01"] = 1.0 if conflict["c01"].iloc[0] != 1.0 else 2.0
    log.append((exact["form_id"].iloc[0], "duplicate_exact"))
    log.append((conflict["form_id"].iloc[0], "duplicate_conflicting"))
    out = pd.concat([out, exact, conflict], ignore_index=True)
    return out, pd.DataFrame(log, columns=["form_id", "defect"])


def simulate_dossiers(units: pd.DataFrame, frame_sizes: pd.Series, year: int, rng: np.random.Generator,
                      scale: float = 1.0, quality: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Administrative records for the monthly report (Phụ lục 3): every surveyed unit, and a legacy
    district's communes (``level="commune"``).

    ``quality`` (:func:`admin_quality`, by ``unit_id``) moves each unit's records with its latent
    quality: the log-odds of a late resolution (3 % for a unit, 5 % for a legacy commune at 0) and
    of an online submission (35 % level 4, 25 % level 3 where offered), the log-rates of complaints
    (4 per 1,000 dossiers) and of opinions collected (200 per 1,000). A legacy district's communes
    follow their district. Without it every unit has the average rates. The draws are the same
    either way (only the probabilities change), so the procedure catalogue does not depend on it.
    """
    owners = surveyed_units(units)[["unit_id", "unit_type"]].copy()
    owners["level"] = "unit"
    owners["commune_id"] = pd.NA
    owners["size"] = owners["unit_id"].map(frame_sizes).fillna(1000).to_numpy() * 1.3
    # a legacy district's communes report in block B of its Mẫu số 2; after the reform communes are units
    communes = units.loc[parent_types(units).eq("district").to_numpy(), ["unit_id", "parent_id"]]
    com = pd.DataFrame({"unit_id": communes["parent_id"].to_numpy(), "unit_type": "district", "level": "commune",
                        "commune_id": communes["unit_id"].to_numpy(),
                        "size": np.round(rng.lognormal(np.log(1500), 0.5, len(communes)) * scale)})
    owners = pd.concat([owners, com], ignore_index=True)
    owners["size"] = np.maximum(owners["size"].astype(float).round(), 20).astype(int)
    shift = (pd.DataFrame(0.0, index=owners.index, columns=list(ADMIN_LINKS)) if quality is None
             else quality.reindex(owners["unit_id"].to_numpy())[list(ADMIN_LINKS)].fillna(0.0).set_axis(owners.index))
    # Procedure catalogue: 20-60 procedures per owner, each with online/postal offers.
    n_proc = rng.integers(20, 61, len(owners))
    p_owner = np.repeat(np.arange(len(owners)), n_proc)
    np_total = len(p_owner)
    probs = np.tile(DISTRICT_FIELD_MIX, (np_total, 1))
    p_field = (rng.random(np_total)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(max=4)
    procedures = pd.DataFrame({
        "procedure_id": _numbered("P", np_total, 6).array,
        "unit_id": _texts(owners["unit_id"], p_owner).array,
        "level": _texts(owners["level"], p_owner).array,
        "commune_id": owners["commune_id"].to_numpy()[p_owner],
        "field": _texts(FIELDS, p_field).array,
        "offers_online_l3": rng.random(np_total) < 0.55,
        "offers_online_l4": rng.random(np_total) < 0.35,
        "offers_postal": rng.random(np_total) < 0.60,
    })
    # Dossiers: each owner's dossiers pick a procedure of the owner (Zipf-like popularity).
    d_owner = np.repeat(np.arange(len(owners)), owners["size"].to_numpy())
    nd = len(d_owner)
    start_proc = np.concatenate([[0], np.cumsum(n_proc)[:-1]])
    pick = np.minimum((rng.pareto(1.2, nd) * 3).astype(int), n_proc[d_owner] - 1)
    proc_row = start_proc[d_owner] + pick
    proc = procedures.iloc[proc_row]
    online_shift = shift["online"].to_numpy()[d_owner]
    p_l4, p_l3 = expit(logit(0.35) + online_shift), expit(logit(0.25) + online_shift)
    ch = np.where(proc["offers_online_l4"].to_numpy() & (rng.random(nd) < p_l4), 0,  # codes of _DOSSIER_CHANNELS
                  np.where(proc["offers_online_l3"].to_numpy() & (rng.random(nd) < p_l3), 1,
                           np.where(proc["offers_postal"].to_numpy() & (rng.random(nd) < 0.10), 2, 3)))
    received = np.datetime64(f"{year}-01-01") + rng.integers(0, 365, nd).astype("timedelta64[D]")
    allowed = rng.choice([3, 5, 7, 10, 15, 20], nd)
    due = received + allowed.astype("timedelta64[D]")
    late_prob = expit(logit(np.where(owners["level"].to_numpy()[d_owner] == "commune", 0.05, 0.03))
                       + shift["late"].to_numpy()[d_owner])
    late = rng.random(nd) < late_prob
    took = np.where(late, allowed + rng.integers(1, 15, nd), np.maximum(allowed - rng.integers(0, 5, nd), 1))
    resolved = received + took.astype("timedelta64[D]")
    year_end = np.datetime64(f"{year}-12-31")
    pending = resolved > year_end
    status = np.where(pending, 0, np.where(late, 1, 2))  # codes of _DOSSIER_STATUSES
    dossiers = pd.DataFrame({
        "dossier_id": _numbered(f"HS{year}", nd, 8).array,
        "unit_id": proc["unit_id"].array, "level": proc["level"].array,
        "commune_id": proc["commune_id"].to_numpy(), "field": proc["field"].array,
        "channel": _texts(_DOSSIER_CHANNELS, ch).array,
        "procedure_id": proc["procedure_id"].array, "received_on": received, "due_on": due,
        "resolved_on": pd.Series(resolved).where(~pending), "status": _texts(_DOSSIER_STATUSES, status).array,
        "overdue_reason": _texts(_OVERDUE_REASONS, rng.integers(0, 4, nd), missing=status != 1).array,
    })

    def events(rate: np.ndarray, date_col: str, prefix: str) -> pd.DataFrame:
        k = rng.random(nd) < rate
        sub = dossiers.loc[k, ["unit_id", "level", "commune_id", "received_on"]].reset_index(drop=True)
        sub[date_col] = sub.pop("received_on") + pd.to_timedelta(rng.integers(0, 20, len(sub)), unit="D")
        sub.insert(0, f"{prefix}_id", _numbered(prefix[:2].upper(), len(sub), 7).array)
        return sub.loc[sub[date_col] <= pd.Timestamp(year_end)].reset_index(drop=True)

    feedback = events(0.004 * np.exp(shift["complaints"].to_numpy()[d_owner]), "received_on", "feedback")
    feedback["kind"] = np.where(rng.random(len(feedback)) < 0.7, "behaviour", "regulation")
    feedback["result_published"] = rng.random(len(feedback)) < 0.8
    late_rows = dossiers.loc[dossiers["status"] == "overdue", ["unit_id", "level", "commune_id", "due_on"]]
    apologies = late_rows.loc[rng.random(len(late_rows)) < 0.6].reset_index(drop=True)
    apologies = apologies.rename(columns={"due_on": "sent_on"})
    apologies["sent_on"] = apologies["sent_on"] + pd.to_timedelta(1, unit="D")
    apologies = apologies.loc[apologies["sent_on"] <= pd.Timestamp(year_end)].reset_index(drop=True)
    apologies.insert(0, "apology_id", _numbered("XL", len(apologies), 7).array)
    apologies["reason"] = "Giải quyết quá hạn"
    opinions = events(0.2 * np.exp(shift["opinions"].to_numpy()[d_owner]), "received_on", "opinion")
    opinions["medium"] = np.where(rng.random(len(opinions)) < 0.4, "paper", "electronic")
    opinions["satisfied"] = rng.random(len(opinions)) < 0.97
    return {"dossiers": dossiers, "procedures": procedures, "feedback": feedback, "apologies": apologies,
            "opinions": opinions}


def to_vietnamese_headers(answers: pd.DataFrame) -> pd.DataFrame:
    """Rename canonical columns to the Vietnamese headers intake understands."""
    from sipas_lib.intake import VIETNAMESE_HEADERS

    inverse = {canonical: vi for vi, canonical in VIETNAMESE_HEADERS.items()}
    return answers.rename(columns=inverse)


#: Zip entry time of every part of a demo workbook (the zip format's earliest date): no clock in the file.
ZIP_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
_CORE_TIMES = re.compile(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)")


def write_reproducible_xlsx(table: pd.DataFrame, path: str | os.PathLike, *, sheet_name: str, year: int) -> Path:
    """Write ``table`` as an Excel workbook whose bytes depend only on the table (and ``year``).

    A workbook normally records when it was written: the ``created``/``modified`` document
    properties (``docProps/core.xml``) and the time of every zip entry. Both are fixed here —
    the properties to 1 January of ``year``, the entries to :data:`ZIP_ENTRY_TIME` — so writing the
    same demo year twice gives identical files and a fresh clone's committed workbooks stay
    unmodified in git (the idea of reproducible builds' ``SOURCE_DATE_EPOCH``).
    """
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        table.to_excel(writer, index=False, sheet_name=sheet_name)
    stamp = f"{year:04d}-01-01T00:00:00Z".encode()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            data = source.read(entry.filename)
            if entry.filename == "docProps/core.xml":
                data = _CORE_TIMES.sub(lambda m: m.group(1) + stamp + m.group(3), data)
            fixed = zipfile.ZipInfo(entry.filename, date_time=ZIP_ENTRY_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, data)
    path = Path(path)
    path.write_bytes(out.getvalue())
    return path


#: Files of every demo year; plus the local units' responses (:data:`RESPONSE_FILES`, by structure).
COMMON_FILES = ("units.csv", "frame.parquet", "frame_counts.csv", "sample.csv", "responses_departments.xlsx",
                "spoiled_records.csv", "dossiers.parquet", "procedures.csv", "feedback.parquet", "apologies.parquet",
                "opinions.parquet", "self_survey.csv", "recheck.csv", "planted_cases.csv")
DEMO_FILES = COMMON_FILES + ("responses_districts.csv",)  # a year of the old structure (before 1 July 2025)
TWO_TIER_FILES = COMMON_FILES + ("responses_communes.csv",)  # a year of the two-tier structure


STRUCTURES = ("legacy", "two_tier")
#: A day of the two-tier structure (after the 1 July 2025 reform).
TWO_TIER_DAY = "2025-10-01"


def structure_day(year: int, structure: str | None = None) -> str:
    """The day whose units a demo year surveys: its fieldwork day, or a day of the ``structure`` asked for."""
    if structure is None:
        return f"{year}-{FIELDWORK_DAY}"
    if structure not in STRUCTURES:
        raise ValueError(f"structure must be one of {STRUCTURES} or None (by the year), got {structure!r}")
    return LEGACY_DAY if structure == "legacy" else TWO_TIER_DAY


def is_two_tier(year: int, registry: pd.DataFrame | None = None, structure: str | None = None) -> bool:
    """True when the year's units (:func:`structure_day`) have no district: the two-tier structure."""
    registry = load_units() if registry is None else registry
    return not (units_on(registry, structure_day(year, structure))["unit_type"] == "district").any()


def demo_files(year: int, structure: str | None = None) -> tuple[str, ...]:
    """The files :func:`write_demo_year` writes for ``year`` (and ``structure``)."""
    return TWO_TIER_FILES if is_two_tier(year, structure=structure) else DEMO_FILES


def year_units(registry: pd.DataFrame, year: int, n_departments: int | None = None,
               n_local: int | None = None, structure: str | None = None) -> pd.DataFrame:
    """The year's ``units.csv``: the units valid on its fieldwork day (registry order).

    The province, the departments (the first ``n_departments``) and the local units (the first
    ``n_local`` districts, or the communes and wards whose main predecessor is one of the first
    ``n_local`` districts); a legacy year adds :data:`COMMUNES_PER_DISTRICT`
    synthetic communes per district for the dossier records. Columns: the registry contract
    without the validity dates (the file is one day's registry).
    """
    current = units_on(registry, structure_day(year, structure))
    tier = survey_tier(current)
    local = current.loc[tier == "local"]
    if n_local and not (local["unit_type"] == "district").any():
        # the communes whose main predecessor is one of the first n_local districts: a tiny two-tier
        # year then covers the same ground as its tiny legacy previous year
        legacy = units_on(registry, LEGACY_DAY)
        districts = legacy.loc[legacy["unit_type"] == "district", "unit_id"].head(n_local)
        main = _crosswalk().sort_values("share_of_new", ascending=False, kind="stable").drop_duplicates("new_unit_id")
        local = local.loc[local["unit_id"].isin(main.loc[main["old_unit_id"].isin(districts), "new_unit_id"])]
    keep = pd.concat([current.loc[current["unit_type"] == "province"],
                      current.loc[tier == "department"].head(n_departments or 10**6),
                      local.head(n_local or 10**6) if (local["unit_type"] == "district").any() else local]
                     ).reset_index(drop=True)
    if (local["unit_type"] == "district").any():
        keep = _units_with_communes(keep)
    out = keep[list(REQUIRED_COLUMNS)].copy()
    out["code"] = out["code"].astype("Int64")
    return out.reset_index(drop=True)


def write_demo_year(folder: str | os.PathLike = DEMO_DIR, year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED,
                    scale: float = 1.0, n_departments: int | None = None,
                    n_districts: int | None = None, previous_year: bool = False,
                    if_missing: bool = False, structure: str | None = None) -> dict[str, Path]:
    """Simulate a demo year and write its files (see ``docs``/README for the contracts).

    The year follows the units registry on its fieldwork day (1 October): from 2025 the two-tier
    structure (Hà Nội's 15 departments after the March 2025 merger and 126 communes and wards,
    1,250 + 4,800 questionnaires, the local ones allocated by :data:`LOCAL_ALLOCATION` and answered
    on the commune form, ``responses_communes.csv``), before it the 20 departments and 30
    districts (``responses_districts.csv``, equal allocation). Unit effects continue across the
    reform (:func:`demo_effects`).

    Parameters
    ----------
    folder
        Where to write; created if needed. Existing demo files are overwritten (unless ``if_missing``).
    year, seed
        The same pair always gives byte-identical files (the workbook's metadata and zip entry
        times are fixed, see :func:`write_reproducible_xlsx`).
    scale
        Multiplies frame size, sample totals and dossier counts (``0.05`` gives a tiny year for tests).
    n_departments, n_districts
        Keep only the first few departments and local units (districts before the reform,
        communes and wards after it): tiny test years.
    previous_year
        Also write ``year - 1`` (same seed, so the same units lead and trail, with a yearly drift)
        to ``folder/previous_year/``, for year-on-year comparisons (across the reform for 2025).
    if_missing
        Write only the files that do not exist yet; an existing file is never touched (its bytes and
        modification time stay as they are), so the committed demo files stay clean in git. The
        whole year is still simulated, so the files written are the same as in a full run.
    structure
        ``None`` (the year's own units), ``"legacy"`` (the 20 departments and 30 districts whatever
        the year, e.g. a tiny test year that exercises the old files) or ``"two_tier"``. A legacy
        year's previous year is legacy too.

    Returns
    -------
    dict
        File name -> path written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, year])
    registry = load_units()
    two_tier = is_two_tier(year, registry, structure)
    units = year_units(registry, year, n_departments, n_districts, structure)
    surveyed = surveyed_units(units)
    tier = pd.Series(survey_tier(surveyed).to_numpy(), index=surveyed["unit_id"])
    full_tier = survey_tier(surveyed_units(units_on(registry, structure_day(year, structure))))
    created = registry.set_index("unit_id").loc[surveyed["unit_id"], "valid_from"].max()
    since = created.strftime("%Y-%m-%d") if pd.notna(created) and created.year == year else None
    frame = simulate_frame(surveyed, year, rng, scale, since)
    totals = {t: max(int(round(v * scale * int((tier == t).sum()) / int((full_tier == t).sum()))), 1)
              for t, v in TOTALS.items()}
    sample = draw_sample(frame, surveyed, rng, totals, local=LOCAL_ALLOCATION if two_tier else None)
    answers = simulate_answers(sample, surveyed, rng, year, seed, registry)
    # the tier comes from the registry, looked up before spoiling: the record whose unit is made
    # unknown stays in the file of its real unit's form
    answers.insert(0, "_tier", answers["unit_id"].map(tier))
    answers, spoiled = spoil(answers, rng, answers["_tier"].map(_unknown_unit_ids(registry, two_tier)))
    from sipas_lib.simulate_integrity import plant_integrity_cases  # issue 13; it builds on this module
    answers, integrity_files = plant_integrity_cases(answers, sample, spoiled, surveyed, registry, year, seed)
    answers_tier = answers.pop("_tier")
    dept = answers.loc[answers_tier == "department"].drop(columns=[c for c in answers if c.startswith("lg")])
    local = answers.loc[answers_tier == "local"]
    admin = simulate_dossiers(units, frame.groupby("unit_id").size(), year, rng, scale,
                              quality=admin_quality(units, seed, year, registry))
    written = {}

    def put(name: str, table: pd.DataFrame) -> None:
        path = folder / name
        if if_missing and path.exists():
            return
        if name.endswith(".csv"):
            table.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        elif name.endswith(".parquet"):
            table.to_parquet(path, index=False)
        else:
            write_reproducible_xlsx(table, path, sheet_name="Phieu", year=year)
        written[name] = path

    put("units.csv", units)
    put("frame.parquet", frame)
    put("frame_counts.csv", frame.groupby(["unit_id", "field", "channel"]).size().rename("N").reset_index())
    put("sample.csv", sample)
    put(RESPONSE_FILES["department"], to_vietnamese_headers(dept))
    put(RESPONSE_FILES["commune" if two_tier else "district"], local)
    put("spoiled_records.csv", spoiled)
    for name, table in integrity_files.items():  # self_survey.csv, recheck.csv, planted_cases.csv
        put(name, table)
    for name, table in admin.items():
        put(f"{name}.csv" if name == "procedures" else f"{name}.parquet", table)
    if previous_year:
        earlier = write_demo_year(folder / PREVIOUS_YEAR_DIR, year - 1, seed, scale, n_departments, n_districts,
                                  if_missing=if_missing, structure="legacy" if structure == "legacy" else None)
        written.update({f"{PREVIOUS_YEAR_DIR}/{name}": path for name, path in earlier.items()})
    return written


def _unknown_unit_ids(registry: pd.DataFrame, two_tier: bool) -> dict[str, str]:
    """An id per tier that looks like the tier's ids but is in no registry (the spoiled 'unknown unit')."""
    ids = {"department": "S90199", "local": "C99999"} if two_tier else {"department": "S21", "local": "D31"}
    clash = set(ids.values()) & set(registry["unit_id"])
    if clash:
        raise ValueError(f"the registry has unit(s) {sorted(clash)}: pick other ids for the spoiled 'unknown unit'")
    return ids


PREVIOUS_YEAR_DIR = "previous_year"


def demo_is_complete(folder: str | os.PathLike = DEMO_DIR, previous_year: bool = False) -> bool:
    """True when every demo file exists in ``folder`` (and in its ``previous_year/`` when asked)."""
    folders = [Path(folder)] + ([Path(folder) / PREVIOUS_YEAR_DIR] if previous_year else [])
    local = (RESPONSE_FILES["district"], RESPONSE_FILES["commune"])  # one of them, by the year's structure
    return all(all((f / name).exists() for name in COMMON_FILES) and any((f / name).exists() for name in local)
               for f in folders)


def content_digest(path: str | os.PathLike) -> str:
    """A digest of a demo file's content (tables compared by value, not bytes, for XLSX/Parquet)."""
    path = Path(path)
    if path.suffix == ".csv":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    table = pd.read_excel(path) if path.suffix == ".xlsx" else pd.read_parquet(path)
    return hashlib.sha256(pd.util.hash_pandas_object(table.astype(str), index=True).to_numpy().tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the seeded SIPAS demo year.")
    parser.add_argument("--out", default=str(DEMO_DIR))
    parser.add_argument("--year", type=int, default=DEFAULT_YEAR)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    for name, path in write_demo_year(args.out, args.year, args.seed, args.scale, previous_year=True).items():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
