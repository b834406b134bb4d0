"""A seeded national demo year for the Ministry of Home Affairs' SIPAS: 34 provinces, two-stage sample.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``(seed, year)``, in a fixed
order, so the same ``(year, seed, scale)`` always writes the same bytes. ``sipas demo --profile
national`` writes it to ``data/demo_national/``.

The model
---------
*Units.* The 34 provinces after the 1 July 2025 reform and their 3,321 communes, from the official
list (:func:`sipas_lib.official_units.provinces` / :func:`~sipas_lib.official_units.communes`);
the provinces are the reporting units.

*First-stage frame* (``psu_frame.csv``). Each commune's yearly number of administrative
transactions with a result (its measure of size) is log-normal (median ~1,500, x ``scale``).

*Sample.* Within each province, :data:`COMMUNES_PER_PROVINCE` communes are drawn by systematic
PPS on the size (:func:`sipas_lib.sampling.select`, R ``sampling::UPsystematic``), giving the
commune's :math:`\\pi_{hi}`; then :data:`FORMS_PER_COMMUNE` transactions by simple random sampling
without replacement within each selected commune, :math:`\\pi_{k|hi} = m / N_{hi}`. A form's
``incl_prob`` is the product, its ``stratum`` the commune (34 x 12 x 83 = 33,864 forms). Form
ids: the provinces get the form-id codes 10-43 in the order of the official list (``units.csv``
``code``) and at most 999 forms each, so :func:`sipas_lib.sampling.assign_form_ids` writes the
6-digit ids today's intake reads (with more forms per province it writes the current 10-digit
ids of :mod:`sipas_lib.formids`).

*Answers.* The commune form (``hanoi_pl5_commune``: Phụ lục 5's 18 criteria of five elements and
the 8 local-governance items, asked about the commune People's Committee). It fits the national
design better than the generic department form (which asks about "the agency", *cơ quan*): the
respondents are drawn in communes, whose one-stop shops resolve most procedures since the 2025
reform. Latent model with a province, a commune and a person effect, so
answers cluster within communes and the design effect of the two-stage sample is real:
:math:`y^*_{ij} = \\mu_j + u_{h} + v_{hi} + e_{h,element(j)} + 0.8\\,\\eta_k + 0.6\\,\\varepsilon_{kj}`,
:math:`v_{hi} \\sim N(0, 0.25^2)`, cut at (-1.6, -0.9, 0, 1.4) into 1-5. Section V (c15-c18) is
answered by ~25 %, the local-governance items by registered residents (~70 %; lg8 only after a
complaint), 1.5 % of answers are missing at random. A form comes back with a probability
depending on the province and the survey mode (one-stop shop > postal > online).

The files: ``units.csv`` (34 provinces), ``psu_frame.csv``, ``frame_counts.csv`` (province x field
x channel transaction counts: the post-stratification totals), ``sample.csv`` and
``responses_national.csv`` (canonical headers, commune form; its enumerator column is
personal data and stay in the data folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from sipas_lib import official_units, sampling
from sipas_lib.config import CHANNELS, DATA_DIR, DEFAULT_SEED, DEFAULT_YEAR, FIELDS
from sipas_lib.instrument import load_instrument

NATIONAL_DIR = DATA_DIR / "demo_national"
COMMUNES_PER_PROVINCE = 12
FORMS_PER_COMMUNE = 83
#: First form-id code of the provinces (10, 11, ... in the order of the official list).
FIRST_FORM_CODE = 10
#: The form the national demo's respondents answer (generic "cơ quan" wording).
INSTRUMENT = "hanoi_pl5_commune"
FIELD_MIX = np.array([0.30, 0.15, 0.25, 0.15, 0.15])
CHANNEL_MIX = np.array([0.55, 0.15, 0.20, 0.10])
CUTS = np.array([-1.6, -0.9, 0.0, 1.4])
#: Small files are committed; ``responses_national.csv`` is regenerated (``--if-missing``).
NATIONAL_FILES = ("units.csv", "psu_frame.csv", "frame_counts.csv", "sample.csv", "responses_national.csv")
ENUMERATORS = ("Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Chi", "Phạm Quang Dũng", "Hoàng Thu Hà")


def psu_frame(communes: pd.DataFrame, rng: np.random.Generator, scale: float = 1.0) -> pd.DataFrame:
    """The first-stage frame: ``unit_id`` (province), ``commune_id``, ``size`` (transactions)."""
    size = np.maximum(np.round(rng.lognormal(np.log(1500), 0.7, len(communes)) * scale), FORMS_PER_COMMUNE * 2)
    return pd.DataFrame({"unit_id": communes["parent_id"].astype(str).to_numpy(),
                         "commune_id": communes["unit_id"].astype(str).to_numpy(),
                         "size": size.astype(np.int64)})


def draw_communes(frame: pd.DataFrame, per_province: int, rng: np.random.Generator) -> pd.DataFrame:
    """First stage: ``per_province`` communes per province by systematic PPS on ``size``.

    Returns ``frame`` with ``incl_prob_psu`` (:func:`sipas_lib.sampling.inclusion_probabilities`
    within province) and ``selected``.
    """
    n = frame.groupby("unit_id").size().clip(upper=per_province).rename("n_h").reset_index()
    chosen = sampling.select(frame, n, method="pps", seed=rng, size_col="size", sort_by=None,
                             field_col=None, id_col="commune_id", keep=())
    chosen = chosen[chosen["role"] == "main"] if "role" in chosen.columns else chosen
    pik = sampling.inclusion_probabilities(frame["size"], n.set_index("unit_id")["n_h"], by=frame["unit_id"])
    return frame.assign(incl_prob_psu=pik, selected=frame["commune_id"].isin(chosen["commune_id"]))


def draw_respondents(frame: pd.DataFrame, units: pd.DataFrame, per_commune: int,
                     rng: np.random.Generator, year: int) -> pd.DataFrame:
    """Second stage: ``per_commune`` transactions by SRS without replacement in each selected commune.

    ``incl_prob`` = :math:`\\pi_{hi} \\cdot m/N_{hi}`; ``stratum`` = the commune (``N_h``, ``n_h``
    are the commune's transactions and forms).
    """
    sel = frame.loc[frame["selected"]].reset_index(drop=True)
    rows = np.repeat(np.arange(len(sel)), per_commune)
    serial = np.concatenate([np.sort(rng.choice(int(s), per_commune, replace=False)) + 1 for s in sel["size"]])
    out = pd.DataFrame({
        "transaction_id": sel["commune_id"].to_numpy()[rows] + f"-{year}-" + pd.Series(serial).astype(str).str.zfill(6),
        "unit_id": sel["unit_id"].to_numpy()[rows],
        "field": np.array(FIELDS)[rng.choice(len(FIELDS), len(rows), p=FIELD_MIX)],
        "channel": np.array(CHANNELS)[rng.choice(len(CHANNELS), len(rows), p=CHANNEL_MIX)],
        "stratum": sel["commune_id"].to_numpy()[rows],
        "N_h": sel["size"].to_numpy()[rows],
        "n_h": per_commune,
    })
    out["incl_prob"] = sel["incl_prob_psu"].to_numpy()[rows] * per_commune / out["N_h"]
    out["design_weight"] = 1.0 / out["incl_prob"]
    out["recheck"] = False
    online = out["channel"].str.startswith("online").to_numpy()
    u = rng.random(len(out))
    out["survey_mode"] = np.where(online, np.where(u < 0.55, "online", "postal"),
                                  np.where(u < 0.65, "postal", "one_stop"))
    out = sampling.assign_form_ids(out, units)
    cols = ["form_id", "transaction_id", "unit_id", "field", "channel", "survey_mode", "stratum", "N_h", "n_h",
            "incl_prob", "design_weight", "recheck"]
    return out[cols]


def simulate_answers(sample: pd.DataFrame, provinces: pd.DataFrame, rng: np.random.Generator,
                     year: int, seed: int) -> pd.DataFrame:
    """Returned questionnaires (canonical columns) of the department form; see the module's model."""
    inst = load_instrument(INSTRUMENT)
    criteria = inst.criteria_codes
    element_of = inst.items.set_index("code")["element"]
    elements = sorted(element_of.loc[criteria].unique())
    el_idx = np.array([elements.index(element_of[c]) for c in criteria])
    stable = np.random.default_rng([seed, 0, 34])  # provinces keep their place from year to year
    p_base = stable.uniform(0.7, 1.6, len(provinces)) + rng.normal(0, 0.08, len(provinces))
    p_element = stable.normal(0, 0.15, (len(provinces), len(elements)))
    p_resp = stable.normal(0, 0.5, len(provinces))
    item = stable.normal(0, 0.12, len(criteria))
    pos = pd.Index(provinces["unit_id"]).get_indexer(sample["unit_id"])
    communes, c_pos = np.unique(sample["stratum"].to_numpy(), return_inverse=True)
    c_eff = rng.normal(0, 0.25, len(communes))
    mode = sample["survey_mode"].map({"one_stop": 2.4, "postal": 1.2, "online": 0.6}).to_numpy()
    returned = rng.random(len(sample)) < 1 / (1 + np.exp(-(mode + p_resp[pos])))
    resp = sample.loc[returned].reset_index(drop=True)
    pos, c_pos = pos[returned], c_pos[returned]
    m = len(resp)
    eta = rng.normal(size=(m, 1))
    latent = (item[None, :] + p_base[pos][:, None] + c_eff[c_pos][:, None] + p_element[pos][:, el_idx]
              + 0.8 * eta + 0.6 * rng.normal(size=(m, len(criteria))))
    answers = (1 + np.searchsorted(CUTS, latent)).astype(float)
    feedback = rng.random(m) < 0.25
    answers[~feedback[:, None] & (el_idx == elements.index("E5"))[None, :]] = np.nan
    answers[rng.random(answers.shape) < 0.015] = np.nan
    out = resp[["form_id", "unit_id", "field", "survey_mode"]].rename(columns={"survey_mode": "channel"})
    out = pd.concat([out, pd.DataFrame(answers, columns=criteria)], axis=1)
    local = [c for c in inst.item_codes if c not in criteria]  # lg1-lg8: registered residents only
    lg = (1 + np.searchsorted(CUTS, 0.4 + 0.6 * p_base[pos][:, None] + 0.7 * eta
                              + 0.7 * rng.normal(size=(m, len(local))))).astype(float)
    lg[~(rng.random(m) < 0.7)] = np.nan
    lg[~(rng.random(m) < 0.12), len(local) - 1] = np.nan
    lg[rng.random(lg.shape) < 0.015] = np.nan
    out = pd.concat([out, pd.DataFrame(lg, columns=local)], axis=1)
    out["gender"] = rng.choice([1, 2], m, p=[0.48, 0.52])
    out["age_group"] = rng.choice([1, 2, 3, 4, 5], m, p=[0.08, 0.30, 0.35, 0.18, 0.09])
    out["education"] = rng.choice(np.arange(1, 7), m, p=[0.04, 0.11, 0.23, 0.20, 0.34, 0.08])
    out["education_other"] = ""
    out["survey_date"] = (np.datetime64(f"{year}-10-01") + rng.integers(0, 60, m).astype("timedelta64[D]")).astype(str)
    out["enumerator_name"] = np.array(ENUMERATORS)[rng.integers(0, len(ENUMERATORS), m)]
    return out


def national_year(year: int = DEFAULT_YEAR, seed: int = DEFAULT_SEED, scale: float = 1.0,
                  provinces: int | None = None, per_province: int = COMMUNES_PER_PROVINCE,
                  per_commune: int = FORMS_PER_COMMUNE) -> dict[str, pd.DataFrame]:
    """The national demo year's tables (file name -> table), without writing them.

    ``provinces`` keeps only the first few provinces (tiny test years); ``per_province`` and
    ``per_commune`` set the two stages' sample sizes.
    """
    rng = np.random.default_rng([seed, year, 34])
    units = official_units.provinces()
    if provinces is not None:
        units = units.head(provinces).reset_index(drop=True)
    units["code"] = FIRST_FORM_CODE + np.arange(len(units))  # the survey's own form-id codes
    communes = official_units.communes()
    communes = communes[communes["parent_id"].isin(units["unit_id"])].reset_index(drop=True)
    frame = draw_communes(psu_frame(communes, rng, scale), per_province, rng)
    sample = draw_respondents(frame, units, per_commune, rng, year)
    answers = simulate_answers(sample, units, rng, year, seed)
    # province totals for post-stratification: every commune's transactions, by field and channel
    size = frame.groupby("unit_id")["size"].sum()
    counts = pd.DataFrame([(u, f, c) for u in units["unit_id"] for f in FIELDS for c in CHANNELS],
                          columns=["unit_id", "field", "channel"])
    share = FIELD_MIX[[FIELDS.index(f) for f in counts["field"]]] * CHANNEL_MIX[[CHANNELS.index(c) for c in counts["channel"]]]
    counts["N"] = np.maximum(np.round(counts["unit_id"].map(size).to_numpy() * share), 1).astype(np.int64)
    return {"units.csv": units[["unit_id", "code", "name_vi", "name_en", "unit_type", "parent_id"]],
            "psu_frame.csv": frame, "frame_counts.csv": counts, "sample.csv": sample,
            "responses_national.csv": answers}


def write_national_year(folder: str | os.PathLike = NATIONAL_DIR, year: int = DEFAULT_YEAR,
                        seed: int = DEFAULT_SEED, scale: float = 1.0, if_missing: bool = False,
                        **sizes) -> dict[str, Path]:
    """Write :func:`national_year` to ``folder`` (CSV, ``\\n`` line ends: byte-reproducible).

    With ``if_missing`` an existing file is never touched (the committed small files stay clean
    in git); the whole year is still simulated, so a regenerated file equals a full run's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, table in national_year(year, seed, scale, **sizes).items():
        path = folder / name
        if if_missing and path.exists():
            continue
        table.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        written[name] = path
    return written


def national_is_complete(folder: str | os.PathLike = NATIONAL_DIR) -> bool:
    """True when every national demo file exists in ``folder``."""
    return all((Path(folder) / name).exists() for name in NATIONAL_FILES)
