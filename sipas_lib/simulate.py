"""A realistic, seeded demo year for Hà Nội: frame, sample, returned questionnaires and dossiers.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``, in a fixed order, so
the same ``(year, seed, scale)`` always writes the same files. Run ``python -m sipas_lib.simulate``
or ``sipas demo``.

The model
---------
*Units.* Hà Nội's real 20 departments and 30 districts (``sipas_lib/registry/hanoi_units.csv``)
plus four synthetic communes per district (named ``Phường 1`` … / ``Xã 1`` …; the real commune
list is not bundled).

*Frame.* Each unit's yearly number of transactions that received a result is log-normal
(median ~7,000, × ``scale``). Fields of procedure follow the unit's mandate (the Department of
Justice is mostly ``justice`` …; districts mix all five); the submission channel is direct,
online level 3, online level 4 or postal (BCCI) with unit-specific shares. Applicants have
synthetic Vietnamese names, phone numbers and addresses (personal data: they stay in the data
folder).

*Sample.* 1,250 department and 4,800 district questionnaires (Hà Nội 2021, seed 002) are
allocated equally over units, then proportionally over fields inside a unit, and drawn
systematically from each unit × field list sorted by date (:mod:`sipas_lib.sampling`):
:math:`\\pi = n_h / N_h`. Each form gets a 6-digit id (unit code, serial, Luhn check digit)
and a survey mode (postal, one-stop shop, online) that depends on the submission channel.

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

from sipas_lib.config import CHANNELS, DEFAULT_SEED, DEFAULT_YEAR, DEMO_DIR, FIELDS, SURVEY_MODES
from sipas_lib.instrument import instrument_for_unit_type
from sipas_lib import sampling
from sipas_lib.units import load_units

__all__ = ["CHANNELS", "FIELDS", "SURVEY_MODES", "write_demo_year", "demo_is_complete", "content_digest"]
TOTALS = {"department": 1250, "district": 4800}
COMMUNES_PER_DISTRICT = 4

# Field mix of each department (by unit_id); districts use DISTRICT_FIELD_MIX.
_DEPARTMENT_MAIN_FIELD = {
    "S02": "justice", "S11": "labour_social", "S09": "land_environment", "S08": "construction_urban",
    "S17": "construction_urban", "S06": "land_environment",
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
_EDU_OTHER = np.array(["Trung cấp lý luận chính trị", "Bổ túc văn hóa", "Chứng chỉ <nghề> & 'ngắn hạn'",
                       "Không đi học"])
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
    name = (pd.Series(_FAMILY[rng.integers(0, len(_FAMILY), n)]) + " "
            + pd.Series(_MIDDLE[rng.integers(0, len(_MIDDLE), n)]) + " "
            + pd.Series(_GIVEN[rng.integers(0, len(_GIVEN), n)]))
    phone = "09" + pd.Series(rng.integers(0, 10**8, n)).astype(str).str.zfill(8)
    address = ("Số " + pd.Series(rng.integers(1, 400, n)).astype(str) + ", "
               + pd.Series(_STREETS[rng.integers(0, len(_STREETS), n)]) + ", Hà Nội")
    return pd.DataFrame({"applicant_name": name, "phone": phone, "address": address})


def simulate_frame(units: pd.DataFrame, year: int, rng: np.random.Generator, scale: float = 1.0) -> pd.DataFrame:
    """One row per transaction that received a result between 1 January and 30 September."""
    n_units = len(units)
    sizes = np.maximum(np.round(rng.lognormal(np.log(7000), 0.6, n_units) * scale), 40).astype(int)
    unit_idx = np.repeat(np.arange(n_units), sizes)
    n = len(unit_idx)
    probs = _field_probs(units)
    cum = probs.cumsum(axis=1)[unit_idx]
    field_idx = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=len(FIELDS) - 1)
    channel_mix = rng.dirichlet(np.array([11, 3, 4, 2.0]), n_units)
    ccum = channel_mix.cumsum(axis=1)[unit_idx]
    channel_idx = (rng.random(n)[:, None] > ccum).sum(axis=1).clip(max=len(CHANNELS) - 1)
    start = np.datetime64(f"{year}-01-01")
    received = start + rng.integers(0, 250, n).astype("timedelta64[D]")
    result = received + rng.integers(1, 25, n).astype("timedelta64[D]")
    fields = np.array(FIELDS)[field_idx]
    frame = pd.DataFrame({
        "transaction_id": [f"{year}-{i:07d}" for i in range(1, n + 1)],
        "unit_id": units["unit_id"].to_numpy()[unit_idx],
        "field": fields,
        "procedure": pd.Series(fields) + "-" + pd.Series(rng.integers(1, 40, n)).astype(str).str.zfill(3),
        "received_on": received,
        "result_on": result,
        "channel": np.array(CHANNELS)[channel_idx],
    })
    return pd.concat([frame, _people(rng, n)], axis=1)


def draw_sample(frame: pd.DataFrame, units: pd.DataFrame, rng: np.random.Generator,
                totals: dict[str, int]) -> pd.DataFrame:
    """The fielded sample, drawn with :mod:`sipas_lib.sampling` as the sampling stage would.

    Equal allocation over the units of a type, proportional over fields inside a unit,
    systematic selection from each unit x field list sorted by date received, 10 % of each
    unit's forms flagged for re-check (phúc tra); then a survey mode per form that depends on how
    the dossier was submitted.
    """
    counts = sampling.count_frame(frame)
    per_unit = sampling.allocate_by_type(counts, units, totals, method="equal")
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


def simulate_answers(sample: pd.DataFrame, units: pd.DataFrame, rng: np.random.Generator,
                     year: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Returned questionnaires (before spoiling), canonical columns, both forms."""
    ids = units["unit_id"].to_numpy()
    unit_pos = pd.Index(ids).get_indexer(sample["unit_id"])
    n = len(sample)
    instrument = instrument_for_unit_type("district")
    criteria = instrument.criteria_codes
    element_of = instrument.items.set_index("code")["element"]
    elements = sorted(element_of.loc[criteria].unique())
    effects = unit_effects(len(ids), len(elements), len(criteria), seed, year)
    # Response: unit effect + survey-mode effect on the logit scale.
    unit_resp = effects["response"]
    mode_eff = sample["survey_mode"].map({"one_stop": 2.6, "postal": 1.3, "online": 0.7}).to_numpy()
    returned = rng.random(n) < 1 / (1 + np.exp(-(mode_eff + unit_resp[unit_pos])))
    resp = sample.loc[returned].reset_index(drop=True)
    pos = unit_pos[returned]
    m = len(resp)
    unit_base, element_eff, item_eff = effects["unit_base"], effects["element"], effects["item"]
    el_idx = np.array([elements.index(element_of[c]) for c in criteria])
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
    is_district = units["unit_type"].to_numpy()[pos] == "district"
    resident = (rng.random(m) < 0.7) & is_district
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


def spoil(answers: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spoil a handful of records the way real returns are spoiled; return (records, log).

    The log lists every spoiled record with the defect, so tests can check that intake
    quarantines exactly these (``form_id`` + ``defect``).
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
    out.loc[rows[4], "form_id"] = fid[:5] + str((int(fid[5]) + 3) % 10)
    log.append((out.loc[rows[4], "form_id"], "bad_check_digit"))
    bad_unit = "D31" if out.loc[rows[5], "unit_id"].startswith("D") else "S21"
    out.loc[rows[5], "unit_id"] = bad_unit
    log.append((out.loc[rows[5], "form_id"], "unknown_unit"))
    exact = out.iloc[[rows[6]]]
    conflict = out.iloc[[rows[7]]].copy()
    conflict["c01"] = 1.0 if conflict["c01"].iloc[0] != 1.0 else 2.0
    log.append((exact["form_id"].iloc[0], "duplicate_exact"))
    log.append((conflict["form_id"].iloc[0], "duplicate_conflicting"))
    out = pd.concat([out, exact, conflict], ignore_index=True)
    return out, pd.DataFrame(log, columns=["form_id", "defect"])


def simulate_dossiers(units: pd.DataFrame, frame_sizes: pd.Series, year: int, rng: np.random.Generator,
                      scale: float = 1.0) -> dict[str, pd.DataFrame]:
    """Administrative records for the monthly report (Phụ lục 3), units and communes."""
    owners = units.loc[units["unit_type"] != "commune", ["unit_id", "unit_type"]].copy()
    owners["level"] = "unit"
    owners["commune_id"] = pd.NA
    owners["size"] = owners["unit_id"].map(frame_sizes).fillna(1000).to_numpy() * 1.3
    communes = units.loc[units["unit_type"] == "commune", ["unit_id", "parent_id"]]
    com = pd.DataFrame({"unit_id": communes["parent_id"].to_numpy(), "unit_type": "district", "level": "commune",
                        "commune_id": communes["unit_id"].to_numpy(),
                        "size": np.round(rng.lognormal(np.log(1500), 0.5, len(communes)) * scale)})
    owners = pd.concat([owners, com], ignore_index=True)
    owners["size"] = np.maximum(owners["size"].astype(float).round(), 20).astype(int)
    # Procedure catalogue: 20-60 procedures per owner, each with online/postal offers.
    n_proc = rng.integers(20, 61, len(owners))
    p_owner = np.repeat(np.arange(len(owners)), n_proc)
    np_total = len(p_owner)
    probs = np.tile(DISTRICT_FIELD_MIX, (np_total, 1))
    p_field = (rng.random(np_total)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(max=4)
    procedures = pd.DataFrame({
        "procedure_id": [f"P{i:06d}" for i in range(1, np_total + 1)],
        "unit_id": owners["unit_id"].to_numpy()[p_owner],
        "level": owners["level"].to_numpy()[p_owner],
        "commune_id": owners["commune_id"].to_numpy()[p_owner],
        "field": np.array(FIELDS)[p_field],
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
    ch = np.where(proc["offers_online_l4"].to_numpy() & (rng.random(nd) < 0.35), "online_l4",
                  np.where(proc["offers_online_l3"].to_numpy() & (rng.random(nd) < 0.25), "online_l3",
                           np.where(proc["offers_postal"].to_numpy() & (rng.random(nd) < 0.10), "postal", "direct")))
    received = np.datetime64(f"{year}-01-01") + rng.integers(0, 365, nd).astype("timedelta64[D]")
    allowed = rng.choice([3, 5, 7, 10, 15, 20], nd)
    due = received + allowed.astype("timedelta64[D]")
    late_prob = np.where(owners["level"].to_numpy()[d_owner] == "commune", 0.05, 0.03)
    late = rng.random(nd) < late_prob
    took = np.where(late, allowed + rng.integers(1, 15, nd), np.maximum(allowed - rng.integers(0, 5, nd), 1))
    resolved = received + took.astype("timedelta64[D]")
    year_end = np.datetime64(f"{year}-12-31")
    pending = resolved > year_end
    status = np.where(pending, "pending", np.where(late, "overdue", "on_time"))
    dossiers = pd.DataFrame({
        "dossier_id": [f"HS{year}{i:08d}" for i in range(1, nd + 1)],
        "unit_id": proc["unit_id"].to_numpy(), "level": proc["level"].to_numpy(),
        "commune_id": proc["commune_id"].to_numpy(), "field": proc["field"].to_numpy(), "channel": ch,
        "procedure_id": proc["procedure_id"].to_numpy(), "received_on": received, "due_on": due,
        "resolved_on": pd.Series(resolved).where(~pending), "status": status,
        "overdue_reason": np.where(status == "overdue", _OVERDUE_REASONS[rng.integers(0, 4, nd)], None),
    })

    def events(rate: float, date_col: str, prefix: str) -> pd.DataFrame:
        k = rng.random(nd) < rate
        sub = dossiers.loc[k, ["unit_id", "level", "commune_id", "received_on"]].reset_index(drop=True)
        sub[date_col] = sub.pop("received_on") + pd.to_timedelta(rng.integers(0, 20, len(sub)), unit="D")
        sub.insert(0, f"{prefix}_id", [f"{prefix[:2].upper()}{i:07d}" for i in range(1, len(sub) + 1)])
        return sub.loc[sub[date_col] <= pd.Timestamp(year_end)].reset_index(drop=True)

    feedback = events(0.004, "received_on", "feedback")
    feedback["kind"] = np.where(rng.random(len(feedback)) < 0.7, "behaviour", "regulation")
    feedback["result_published"] = rng.random(len(feedback)) < 0.8
    late_rows = dossiers.loc[dossiers["status"] == "overdue", ["unit_id", "level", "commune_id", "due_on"]]
    apologies = late_rows.loc[rng.random(len(late_rows)) < 0.6].reset_index(drop=True)
    apologies = apologies.rename(columns={"due_on": "sent_on"})
    apologies["sent_on"] = apologies["sent_on"] + pd.to_timedelta(1, unit="D")
    apologies = apologies.loc[apologies["sent_on"] <= pd.Timestamp(year_end)].reset_index(drop=True)
    apologies.insert(0, "apology_id", [f"XL{i:07d}" for i in range(1, len(apologies) + 1)])
    apologies["reason"] = "Giải quyết quá hạn"
    opinions = events(0.2, "received_on", "opinion")
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


DEMO_FILES = ("units.csv", "frame.parquet", "frame_counts.csv", "sample.csv", "responses_departments.xlsx",
              "responses_districts.csv", "spoiled_records.csv", "dossiers.parquet", "procedures.csv",
              "feedback.parquet", "apologies.parquet", "opinions.parquet")


def write_demo_year(folder: str | os.PathLike = DEMO_DIR, year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED,
                    scale: float = 1.0, n_departments: int | None = None,
                    n_districts: int | None = None, previous_year: bool = False,
                    if_missing: bool = False) -> dict[str, Path]:
    """Simulate a demo year and write its files (see ``docs``/README for the contracts).

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
        Keep only the first few units of each type (tiny test years).
    previous_year
        Also write ``year - 1`` (same seed, so the same units lead and trail, with a yearly drift)
        to ``folder/previous_year/``, for year-on-year comparisons.
    if_missing
        Write only the files that do not exist yet; an existing file is never touched (its bytes and
        modification time stay as they are), so the committed demo files stay clean in git. The
        whole year is still simulated, so the files written are the same as in a full run.

    Returns
    -------
    dict
        File name -> path written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, year])
    registry = load_units()
    keep = pd.concat([
        registry.loc[registry["unit_type"] == "department"].head(n_departments or 10**6),
        registry.loc[registry["unit_type"] == "district"].head(n_districts or 10**6)])
    units = _units_with_communes(keep.reset_index(drop=True))
    surveyed = units.loc[units["unit_type"] != "commune"].reset_index(drop=True)
    frame = simulate_frame(surveyed, year, rng, scale)
    totals = {t: max(int(round(v * scale * len(surveyed.query("unit_type == @t")) /
                               len(registry.query("unit_type == @t")))), 1)
              for t, v in TOTALS.items()}
    sample = draw_sample(frame, surveyed, rng, totals)
    answers = simulate_answers(sample, surveyed, rng, year, seed)
    # the unit type comes from the registry, looked up before spoiling: the record whose unit is
    # made unknown stays in the file of its real unit's form
    answers.insert(0, "_unit_type", answers["unit_id"].map(surveyed.set_index("unit_id")["unit_type"]))
    answers, spoiled = spoil(answers, rng)
    utype = answers.pop("_unit_type")
    dept = answers.loc[utype == "department"].drop(columns=[c for c in answers if c.startswith("lg")])
    dist = answers.loc[utype == "district"]
    admin = simulate_dossiers(units, frame.groupby("unit_id").size(), year, rng, scale)
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
    put("responses_departments.xlsx", to_vietnamese_headers(dept))
    put("responses_districts.csv", dist)
    put("spoiled_records.csv", spoiled)
    for name, table in admin.items():
        put(f"{name}.csv" if name == "procedures" else f"{name}.parquet", table)
    if previous_year:
        earlier = write_demo_year(folder / PREVIOUS_YEAR_DIR, year - 1, seed, scale, n_departments, n_districts,
                                  if_missing=if_missing)
        written.update({f"{PREVIOUS_YEAR_DIR}/{name}": path for name, path in earlier.items()})
    return written


PREVIOUS_YEAR_DIR = "previous_year"


def demo_is_complete(folder: str | os.PathLike = DEMO_DIR, previous_year: bool = False) -> bool:
    """True when every demo file exists in ``folder`` (and in its ``previous_year/`` when asked)."""
    folders = [Path(folder)] + ([Path(folder) / PREVIOUS_YEAR_DIR] if previous_year else [])
    return all((f / name).exists() for f in folders for name in DEMO_FILES)


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
