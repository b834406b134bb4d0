"""Fieldwork integrity in the demo year: own surveys, collection points, a planted fabrication, the re-check.

Stages level, beside :mod:`sipas_lib.simulate`, whose :func:`~sipas_lib.simulate.write_demo_year`
calls :func:`plant_integrity_cases` once, after the returned questionnaires are simulated and
spoiled. Everything is drawn from ``numpy.random.default_rng([seed, year, 13])``, a stream of its
own, so the rest of the demo year is what it was without these cases, and the same
``(year, seed)`` always gives the same files.

The model
---------
*Collection points and return dates* (``collection_point``, ``return_date`` of every response).
A postal form comes back through one of the 3–5 post offices of its unit's area (``BC`` + a Hà Nội
postal code, unit-specific shares) 2–12 days after it was filled in; a form handed in at the
one-stop shop goes through the unit's desk (``MC-<unit_id>``), an online one through ``online``,
both on the day.

*A planted fabrication* (:data:`FABRICATION_SHARE` of a unit's issued forms, one department and one
local unit; one of each in a year of fewer than eight units). Staff fill in the forms of people who
never answered (the unit's unreturned postal and one-stop forms first, then returned ones, whose real
answers they replace): near-identical answer vectors (one template of 4s and 5s, each answer
switched to the other with probability 0.05: every criterion satisfied, section V filled in too),
all dated and returned on one day through one post office, by one enumerator.

*Own surveys* (``self_survey.csv``, Phụ lục 2). Every surveyed unit asks 10–30 people a month at its
counter, from the month it came into being. A question's latent answer is the unit's latent
satisfaction with the criteria the question asks about (:mod:`sipas_lib.self_survey`'s mapping,
the same unit, element and criterion effects as the independent survey's answers, see
:func:`sipas_lib.simulate.demo_effects`) plus :data:`COURTESY_BIAS` (people asked by the unit's own
staff are a little kinder: about two points) and the respondent's own terms, cut into 1–5 as the
answers are; an honest unit's own survey runs close to the independent one. One or two *inflating*
units (chosen among the larger units with the lower true satisfaction, where inflating pays) add
:data:`INFLATION` to the latent scale: nearly every own-survey answer is 4 or 5. A few records are
spoiled (out-of-range answer, unknown unit, impossible date) for intake to set aside.

*The re-check* (``recheck.csv``): every returned form flagged ``recheck`` in ``sample.csv`` (spoiled
records aside) is re-checked by one body per unit (MTTQ, CCB or SNV) 7–28 days after it came back.
A real respondent confirms (:data:`RECHECK_OUTCOMES`), occasionally does not remember or cannot be
reached; a planted form's "respondent" mostly denies having answered. A respondent who confirms
answers the re-asked criteria (:data:`RECHECK_CRITERIA`) again, the same answer or one step away;
other outcomes leave them empty. The file carries fake contact columns (``respondent_name``,
``respondent_phone``, ``respondent_address``), as the post office's list would, for intake to drop.

``planted_cases.csv`` logs what was planted (no personal data): one row per fabricated form
(``fabrication``), per inflating unit (``inflated_self_survey``) and per spoiled own-survey record
(``self_survey_spoiled``), so tests and the demo's reader know what the integrity stage should find.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sipas_lib import simulate as sim
from sipas_lib.instrument import load_instrument
from sipas_lib.self_survey import INSTRUMENT as SELF_SURVEY_FORM
from sipas_lib.self_survey import load_mapping
from sipas_lib.units import survey_tier

__all__ = ["FILES", "FABRICATION_SHARE", "COURTESY_BIAS", "INFLATION", "RECHECK_CRITERIA", "RECHECK_OUTCOMES",
           "plant_integrity_cases", "choose_planted_units", "add_collection_points", "plant_fabrication",
           "simulate_self_survey", "simulate_recheck"]

#: Files written into the year's folder, beside the responses.
FILES = ("self_survey.csv", "recheck.csv", "planted_cases.csv")
#: Share of a fabricating unit's issued forms filled in by its staff.
FABRICATION_SHARE = 0.25
#: Latent shift of an honest unit's own survey (counter courtesy): about +2 points of satisfaction.
COURTESY_BIAS = 0.10
#: Latent shift of an inflating unit's own survey: nearly all answers 4 or 5.
INFLATION = 1.5
#: Own-survey forms per unit and month: uniform between these, per unit.
FORMS_PER_MONTH = (10, 30)
#: Criteria asked again at the re-check (setting ``integrity.recheck_criteria``'s default).
RECHECK_CRITERIA = ("c01", "c05", "c10")
#: Who re-checks (Mặt trận Tổ quốc, Hội Cựu chiến binh, Sở Nội vụ; seed 000) and how often.
RECHECK_BODIES = {"MTTQ": 0.4, "CCB": 0.3, "SNV": 0.3}
#: Re-check outcome probabilities of a real respondent and of a planted form.
RECHECK_OUTCOMES = {
    "real": {"confirmed": 0.86, "denied": 0.02, "not_remember": 0.04, "unreachable": 0.08},
    "planted": {"confirmed": 0.05, "denied": 0.75, "not_remember": 0.10, "unreachable": 0.10},
}
#: Hà Nội's postal codes (5 digits, 2018 standard) from which a unit's post offices are drawn.
POSTAL_CODES = (10000, 15000)
_STREAM = 13  # the integrity cases' own random stream: rng([seed, year, 13])


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _effects(units: pd.DataFrame, registry: pd.DataFrame, year: int, seed: int) -> dict[str, np.ndarray]:
    """The latent effects the independent answers were drawn from (as :func:`sipas_lib.simulate.simulate_answers`)."""
    criteria, elements, _ = sim._criteria_layout()
    return sim.demo_effects(units, len(elements), len(criteria), seed, year, registry)


def plant_integrity_cases(answers: pd.DataFrame, sample: pd.DataFrame, spoiled: pd.DataFrame, units: pd.DataFrame,
                          registry: pd.DataFrame, year: int, seed: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Add the integrity cases to a simulated year (the one call of :func:`sipas_lib.simulate.write_demo_year`).

    Parameters
    ----------
    answers
        The returned questionnaires after spoiling (canonical columns, ``survey_date`` as ISO text).
    sample
        The issued sample (``form_id, unit_id, field, survey_mode, recheck`` …).
    spoiled
        The spoiled records' log (``form_id``): never planted on, never re-checked.
    units
        The surveyed units (``unit_id, unit_type``).
    registry
        The units registry (``valid_from``: a unit's own survey starts the month it came into being).
    year, seed
        The demo year and seed; the cases draw from ``default_rng([seed, year, 13])``.

    Returns
    -------
    tuple
        The answers with ``collection_point`` and ``return_date`` and the fabricated block in place,
        and the files to write: :data:`FILES` name -> table.
    """
    rng = np.random.default_rng([seed, year, _STREAM])
    effects = _effects(units, registry, year, seed)
    planted = choose_planted_units(units, sample, effects["unit_base"] + effects["element"].mean(axis=1), seed=rng)
    spoiled_ids = set(spoiled["form_id"].astype(str))
    answers = add_collection_points(answers, seed=rng)
    fabricating = planted.loc[planted["case"] == "fabrication", "unit_id"].tolist()
    tiers = pd.Series(survey_tier(units).to_numpy(), index=units["unit_id"].to_numpy())
    answers, block = plant_fabrication(answers, sample, fabricating, year, exclude=spoiled_ids, tiers=tiers, seed=rng)
    inflating = planted.loc[planted["case"] == "inflated_self_survey", "unit_id"].tolist()
    own, own_spoiled = simulate_self_survey(units, registry, year, effects, inflating, seed=rng)
    recheck = simulate_recheck(answers, sample, set(block["form_id"]), exclude=spoiled_ids, seed=rng)
    log = pd.concat([
        block.assign(case="fabrication")[["case", "unit_id", "form_id", "detail"]],
        planted.loc[planted["case"] == "inflated_self_survey"].assign(
            form_id="", detail=f"own survey shifted by {INFLATION} on the latent scale")[["case", "unit_id", "form_id",
                                                                                          "detail"]],
        own_spoiled.assign(case="self_survey_spoiled", form_id="")[["case", "unit_id", "form_id", "detail"]],
    ], ignore_index=True)
    return answers, {"self_survey.csv": own, "recheck.csv": recheck, "planted_cases.csv": log}


def choose_planted_units(units: pd.DataFrame, sample: pd.DataFrame, satisfaction: np.ndarray, *,
                         seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """Which units fabricate forms and which inflate their own survey.

    Two of each (one department and one local unit) when the year has at least eight surveyed
    units, else one of each, never the same unit twice. Both are drawn among the units with at
    least the median number of issued forms (a block of a quarter of a unit's forms is then a
    block); the inflating ones among those at or below the median true ``satisfaction`` (a latent
    level per row of ``units``), where inflating pays.

    Returns
    -------
    DataFrame
        ``unit_id, case`` (``fabrication`` | ``inflated_self_survey``).
    """
    rng = _rng(seed)
    issued = sample.groupby("unit_id").size()
    keep = units["unit_id"].isin(issued.index).to_numpy()
    units, level = units.loc[keep].reset_index(drop=True), np.asarray(satisfaction, dtype=float)[keep]
    tier = survey_tier(units).to_numpy()
    size = issued.loc[units["unit_id"]].to_numpy()
    big = size >= np.median(size)
    low = level <= np.median(level)
    n_each = 2 if len(units) >= 8 else 1
    chosen: list[tuple[str, str]] = []
    for case, order, extra in (("fabrication", ("department", "local"), np.ones(len(units), bool)),
                               ("inflated_self_survey", ("local", "department"), low)):
        for t in order[:n_each]:
            taken = units["unit_id"].isin([u for u, _ in chosen]).to_numpy()
            pool = np.flatnonzero((tier == t) & big & extra & ~taken)
            if not len(pool):
                pool = np.flatnonzero((tier == t) & ~taken) if (tier == t).any() else np.flatnonzero(~taken)
            chosen.append((units["unit_id"].iloc[int(rng.choice(pool))], case))
    return pd.DataFrame(chosen, columns=["unit_id", "case"])


def add_collection_points(answers: pd.DataFrame, *, seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """Add ``collection_point`` and ``return_date`` to every returned form (not personal data).

    Postal forms: one of their unit's 3–5 post offices (``BC<postal code>``, unit-specific shares),
    2–12 days after ``survey_date``; one-stop forms: the unit's desk ``MC-<unit_id>``; online forms:
    ``online``; both returned on the survey date. Copies of one form id (duplicates) keep the first
    copy's point and date, as a form keyed twice would.
    """
    rng = _rng(seed)
    out = answers.copy()
    unit_ids, pos = np.unique(out["unit_id"].astype(str).to_numpy(), return_inverse=True)
    n_units, width = len(unit_ids), 5
    k = rng.integers(3, width + 1, n_units)
    offices = np.array([[f"BC{c}" for c in rng.choice(np.arange(*POSTAL_CODES), width, replace=False)]
                        for _ in range(n_units)], dtype=object)
    shares = rng.dirichlet(np.full(width, 2.0), n_units) * (np.arange(width)[None, :] < k[:, None])
    cum = np.cumsum(shares / shares.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    pick = (rng.random(len(out))[:, None] > cum[pos]).sum(axis=1)
    channel = out["channel"].astype(str).to_numpy()
    out["collection_point"] = np.where(channel == "postal", offices[pos, pick],
                                       np.where(channel == "one_stop", "MC-" + unit_ids[pos].astype(object), "online"))
    delay = np.where(channel == "postal", rng.integers(2, 13, len(out)), 0)
    filled = pd.to_datetime(out["survey_date"], errors="coerce")
    out["return_date"] = (filled + pd.to_timedelta(delay, unit="D")).dt.strftime("%Y-%m-%d")
    first = out.groupby("form_id", sort=False)[["collection_point", "return_date"]].transform("first")
    out[["collection_point", "return_date"]] = first
    return out


def plant_fabrication(answers: pd.DataFrame, sample: pd.DataFrame, unit_ids: Sequence[str], year: int, *,
                      share: float = FABRICATION_SHARE, exclude: set[str] = frozenset(),
                      tiers: pd.Series | None = None,
                      seed: int | np.random.Generator | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace a block of each unit's forms by forms its staff filled in.

    ``round(share × issued)`` (at least 5) of the unit's issued forms, unreturned postal and
    one-stop forms first, then returned ones (``exclude``: spoiled form ids, never used). The block
    is near-identical (one template of 4s and 5s over every criterion and, for a local unit, every
    local-governance item; each answer switched to the other with probability 0.05), dated and
    returned on one day of the fieldwork through one of the unit's post offices, by one
    enumerator; the other columns (respondent information) come from the unit's real forms (from
    forms of its tier, ``tiers``: unit_id -> department | local, when none of the unit came back; the
    ``_tier`` column of :func:`sipas_lib.simulate.write_demo_year` is then set from it).

    Returns
    -------
    tuple
        The answers with the block in place of the forms it replaces (appended at the end, as a
        batch keyed last), and the block's log ``unit_id, form_id, detail``.
    """
    rng = _rng(seed)
    criteria = sim._criteria_layout()[0]
    local_items = [c for c in answers.columns if c.startswith("lg")]
    parts, logs = [answers], []
    replaced: set[str] = set()
    for unit in unit_ids:
        forms = sample.loc[(sample["unit_id"] == unit) & ~sample["form_id"].isin(exclude)]
        returned = forms["form_id"].isin(answers["form_id"]).to_numpy()
        offline = forms["survey_mode"].ne("online").to_numpy()
        rank = np.where(~returned & offline, 0, np.where(offline, 1, 2)) + rng.random(len(forms))
        size = min(max(int(round(share * len(forms))), 5), len(forms))
        block = forms.iloc[np.argsort(rank)[:size]]
        own = answers.loc[(answers["unit_id"] == unit) & ~answers["form_id"].isin(exclude)]
        if own.empty:  # nobody of the unit answered (a tiny test year): respondents of its tier
            own = answers.loc[answers["unit_id"].map(tiers).eq(tiers.get(unit)).to_numpy()] if tiers is not None \
                else answers
        rows = own.iloc[rng.integers(0, len(own), size)].reset_index(drop=True)
        if tiers is not None and "_tier" in rows:
            rows["_tier"] = tiers[unit]  # the response file of the unit's form
        template = np.where(rng.random(len(criteria) + len(local_items)) < 0.6, 5.0, 4.0)
        filled = np.tile(template, (size, 1))
        switch = rng.random(filled.shape) < 0.05
        filled[switch] = 9.0 - filled[switch]  # 4 <-> 5
        rows[criteria] = filled[:, :len(criteria)]
        local = tiers.get(unit) == "local" if tiers is not None else rows[local_items].notna().any().any()
        if local_items and local:  # the local form's governance block is filled in too
            rows[local_items] = filled[:, len(criteria):]
        day = (np.datetime64(f"{year}-10-10") + rng.integers(0, 40)).astype(str)
        postal = answers.loc[(answers["unit_id"] == unit) & (answers["channel"] == "postal")]
        postal = postal["collection_point"] if "collection_point" in postal else postal["channel"].iloc[:0]
        office = postal.mode().iloc[0] if len(postal) else f"BC{rng.integers(*POSTAL_CODES)}"  # its busiest office
        staff = sim._people(rng, 1)
        rows["form_id"] = block["form_id"].to_numpy()
        rows["field"] = block["field"].to_numpy()
        rows["channel"] = block["survey_mode"].to_numpy()
        rows["survey_date"] = rows["return_date"] = day
        rows["collection_point"] = office
        for column, source in (("enumerator_name", "applicant_name"), ("enumerator_phone", "phone"),
                               ("enumerator_address", "address")):
            if column in rows.columns:
                rows[column] = staff[source].iloc[0]
        parts.append(rows)
        replaced |= set(block["form_id"])
        logs.append(pd.DataFrame({"unit_id": unit, "form_id": block["form_id"].to_numpy(),
                                  "detail": f"filled in by staff: returned {day} through {office}, "
                                            f"{size} forms of {len(forms)} issued"}))
    parts[0] = answers.loc[~answers["form_id"].isin(replaced)]
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["unit_id", "form_id", "detail"])
    return pd.concat(parts, ignore_index=True), log


def simulate_self_survey(units: pd.DataFrame, registry: pd.DataFrame, year: int, effects: dict[str, np.ndarray],
                         inflating: Sequence[str] = (), *,
                         seed: int | np.random.Generator | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every surveyed unit's own survey (Phụ lục 2) of the year, one row per form, and its spoiled records.

    See the module docstring for the model; ``effects`` are the latent effects of ``units``
    (:func:`sipas_lib.simulate.demo_effects`) the independent answers were drawn from.

    Returns
    -------
    tuple
        ``unit_id, survey_date, s1 … s8`` (ISO dates, 1–5 or empty), and the log of the spoiled
        records ``unit_id, detail`` (the detail names the CSV row).
    """
    rng = _rng(seed)
    criteria, _, el_idx = sim._criteria_layout()
    # latent mean of each own-survey question: the mean over the criteria it asks about
    pairs = load_mapping().query("match != 'none'")
    questions = load_instrument(SELF_SURVEY_FORM).item_codes
    weights = np.zeros((len(criteria), len(questions)))
    for q, code in enumerate(questions):  # eight questions
        asked = pairs.loc[pairs["pl2_item"] == code, "pl5_criterion"]
        if asked.empty:
            raise ValueError(f"own-survey question {code} has no Phụ lục 5 criterion in the mapping")
        weights[[criteria.index(c) for c in asked], q] = 1.0 / len(asked)
    mu = (effects["unit_base"][:, None] + effects["item"][None, :] + effects["element"][:, el_idx]) @ weights
    mu += np.where(units["unit_id"].isin(list(inflating)).to_numpy(), INFLATION, COURTESY_BIAS)[:, None]

    start = registry.set_index("unit_id")["valid_from"].reindex(units["unit_id"])
    first_month = np.where(start.dt.year.to_numpy() == year, start.dt.month.to_numpy(), 1).astype(int)
    per_month = rng.uniform(*FORMS_PER_MONTH, len(units))
    counts = rng.poisson(per_month[:, None] * (np.arange(1, 13)[None, :] >= first_month[:, None]))
    unit_pos = np.repeat(np.repeat(np.arange(len(units)), 12), counts.ravel())
    month = np.repeat(np.tile(np.arange(1, 13), len(units)), counts.ravel())
    m = len(unit_pos)
    month_start = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
    days = (month_start + pd.offsets.MonthEnd(0)).dt.day.to_numpy()
    date = month_start + pd.to_timedelta(np.floor(rng.random(m) * days), unit="D")
    latent = mu[unit_pos] + 0.8 * rng.normal(size=(m, 1)) + 0.6 * rng.normal(size=(m, len(questions)))
    answers = sim._likert(latent).astype(float)
    answers[rng.random(answers.shape) < 0.02] = np.nan
    answers[rng.random(m) < 0.15, questions.index("s8")] = np.nan  # never gave feedback: left blank
    out = pd.DataFrame({"unit_id": units["unit_id"].to_numpy()[unit_pos], "survey_date": date.dt.strftime("%Y-%m-%d")})
    out = pd.concat([out, pd.DataFrame(answers, columns=questions).astype("Int64")], axis=1)
    out = out.sort_values(["unit_id", "survey_date"], kind="stable").reset_index(drop=True)

    # a few records spoiled the way returns are, for intake to set aside
    rows = rng.choice(len(out), 3, replace=False)
    log = pd.DataFrame({"unit_id": out["unit_id"].iloc[rows].to_numpy(), "detail": [
        f"row {rows[0] + 2}: s3 = 7 (outside 1-5)", f"row {rows[1] + 2}: unknown unit X99",
        f"row {rows[2] + 2}: survey date 31/02/{year} does not exist"]})
    out = out.astype({"s3": object})
    out.loc[rows[0], "s3"] = 7
    out.loc[rows[1], "unit_id"] = "X99"
    out.loc[rows[2], "survey_date"] = f"31/02/{year}"
    return out, log


def simulate_recheck(answers: pd.DataFrame, sample: pd.DataFrame, planted: set[str], *,
                     exclude: set[str] = frozenset(), criteria: Sequence[str] = RECHECK_CRITERIA,
                     seed: int | np.random.Generator | None = None) -> pd.DataFrame:
    """The re-check results of the returned forms flagged ``recheck`` in the sample (``recheck.csv``).

    Returns
    -------
    DataFrame
        ``form_id, rechecked_by, recheck_date, outcome``, the re-asked ``criteria`` (1–5 when the
        respondent confirmed, else empty) and fake ``respondent_name, respondent_phone,
        respondent_address``.
    """
    rng = _rng(seed)
    flagged = sample.loc[sample["recheck"].astype(bool) & ~sample["form_id"].isin(exclude), ["form_id", "unit_id"]]
    forms = answers.drop_duplicates("form_id").set_index("form_id")
    flagged = flagged.loc[flagged["form_id"].isin(forms.index)].reset_index(drop=True)
    n = len(flagged)
    unit_ids = np.unique(flagged["unit_id"])
    bodies = pd.Series(rng.choice(list(RECHECK_BODIES), len(unit_ids), p=list(RECHECK_BODIES.values())),
                       index=unit_ids)
    is_planted = flagged["form_id"].isin(planted).to_numpy()
    u = rng.random(n)
    outcome = np.empty(n, dtype=object)
    for kind, mask in (("real", ~is_planted), ("planted", is_planted)):
        names, cumulative = list(RECHECK_OUTCOMES[kind]), np.cumsum(list(RECHECK_OUTCOMES[kind].values()))
        outcome[mask] = np.array(names, dtype=object)[(u[mask, None] > cumulative[None, :-1]).sum(axis=1)]
    returned = pd.DatetimeIndex(pd.to_datetime(forms.loc[flagged["form_id"], "return_date"].to_numpy()))
    year_end = pd.to_datetime(returned.year.astype(str) + "-12-31")  # the re-check closes with the year
    when = np.minimum(returned + pd.to_timedelta(rng.integers(7, 29, n), unit="D"), year_end)
    out = pd.DataFrame({"form_id": flagged["form_id"], "rechecked_by": flagged["unit_id"].map(bodies).to_numpy(),
                        "recheck_date": pd.DatetimeIndex(when).strftime("%Y-%m-%d"), "outcome": outcome})
    original = forms.loc[flagged["form_id"], list(criteria)].to_numpy(dtype=float)
    # a planted form's "respondent" answers with their own view: that of a random real form of the same unit
    real_forms = answers.loc[~answers["form_id"].isin(planted)].sort_values("unit_id", kind="stable")
    first = real_forms["unit_id"].searchsorted(flagged["unit_id"].to_numpy(), side="left")
    count = real_forms["unit_id"].searchsorted(flagged["unit_id"].to_numpy(), side="right") - first
    donor = np.minimum(first + np.floor(rng.random(n) * np.maximum(count, 1)).astype(int), len(real_forms) - 1)
    mine = real_forms[list(criteria)].to_numpy(dtype=float)[donor]
    base = np.where(is_planted[:, None], mine, original)
    step = np.where(rng.random(base.shape) < 0.25, rng.choice([-1.0, 1.0], base.shape), 0.0)
    again = np.clip(base + step, 1, 5)
    again[outcome != "confirmed"] = np.nan
    for k, column in enumerate(criteria):
        out[column] = again[:, k]
    people = sim._people(rng, n)
    out["respondent_name"] = people["applicant_name"].to_numpy()
    out["respondent_phone"] = people["phone"].to_numpy()
    out["respondent_address"] = people["address"].to_numpy()
    return out
