"""The stage-40 result tables: alpha family, item statistics and CFA, by unit type.

Core layer. :func:`reliability_tables` assembles the three tables the reliability stage writes
(``reliability_alpha``, ``reliability_items``, ``reliability_cfa``); verdict columns hold codes
(:mod:`sipas_lib.reliability.verdicts`), never sentences. :func:`stage_tables` adds the readers'
sentences in both languages, for scripts that want them without a notebook.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sipas_lib.reliability.alpha import cronbach_alpha, item_statistics
from sipas_lib.reliability.base import analysis_rows
from sipas_lib.reliability.cfa import cfa, parse_model
from sipas_lib.reliability.factor import omega
from sipas_lib.reliability.polychoric import ordinal_alpha
from sipas_lib.reliability.verdicts import (
    alpha_verdict, alpha_verdict_code, cfa_verdict, cfa_verdict_code, element_verdict, validity_verdict_code,
)

ALPHA_COLUMNS = ["unit_type", "scale", "n_items", "population", "n", "n_complete", "raw_alpha", "std_alpha",
                 "g6", "average_r", "ase", "feldt_low", "feldt_high", "boot_low", "boot_high", "ci_level",
                 "n_boot", "ordinal_alpha", "ordinal_feldt_low", "ordinal_feldt_high", "omega_total", "omega_h",
                 "note", "verdict"]
CFA_COLUMNS = ["unit_type", "level", "code", "n", "n_items", "n_factors", "npar", "chisq", "df", "pvalue",
               "baseline_chisq", "baseline_df", "cfi", "tli", "rmsea", "rmsea_ci_low", "rmsea_ci_high",
               "rmsea_pvalue", "srmr", "aic", "bic", "converged", "cr", "ave", "note", "verdict"]
ITEM_COLUMNS = {"unit_type": object, "scale": object, "item": object, "n": "int64", "missing_share": float,
                "mean": float, "sd": float, "share_satisfied": float, "raw_r": float, "std_r": float,
                "r_cor": float, "r_drop": float, "alpha_if_deleted": float, "std_alpha_if_deleted": float,
                "weak": bool}
#: Name of the model row of the CFA table.
MODEL_CODE = "five_element"


def _try(fn, *args, **kwargs):
    """``(result, "")``, or ``(None, reason)`` when the method refuses the data (a ValueError)."""
    try:
        return fn(*args, **kwargs), ""
    except ValueError as exc:
        return None, str(exc)


def _alpha_of_scales(pop_rows: Mapping[str, pd.DataFrame], scales: Sequence[tuple[str, list[str]]],
                     weights: str | None, n_boot: int, seed, level: float
                     ) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Alpha of each scale; scales analysed on the same respondents share one bootstrap call."""
    alphas: dict[str, pd.Series] = {}
    notes: dict[str, str] = {}
    for size in sorted({len(r) for r in pop_rows.values()}):
        same = {code: its for code, its in scales if len(pop_rows[code]) == size}
        rows_ = pop_rows[next(iter(same))]
        a, _ = _try(cronbach_alpha, rows_, same, weights=weights, n_boot=n_boot, seed=seed, level=level)
        if a is None:        # one scale is not computable: do them one by one to say which
            for code, its in same.items():
                a1, note1 = _try(cronbach_alpha, rows_, {code: its}, weights=weights, n_boot=n_boot, seed=seed,
                                 level=level)
                if a1 is None:
                    notes[code] = note1
                else:
                    alphas[code] = a1.iloc[0]
        else:
            alphas.update({r["scale"]: r for _, r in a.iterrows()})
    return alphas, notes


def reliability_tables(df: pd.DataFrame, model: Mapping[str, Sequence[str]], weights: str | None = None,
                       by: str | None = "unit_type", n_boot: int = 1000,
                       seed: int | np.random.Generator | None = None, level: float = 0.95,
                       feedback_column: str = "gave_feedback", n_group_factors: int | None = None,
                       weak_r_drop: float = 0.30) -> dict[str, pd.DataFrame]:
    """The three stage-40 result tables, for all respondents and by ``by`` (unit type), with verdict codes.

    For each group (``all`` plus each value of ``by``) and each element of ``model`` plus the
    whole questionnaire (``overall``): alpha with Feldt and bootstrap intervals at ``level``,
    ordinal alpha, omega (one factor for an element; ``n_group_factors`` = number of elements for
    ``overall``), item statistics (weak when ``r_drop < weak_r_drop`` or alpha rises without the
    item), and the CFA of ``model`` with composite reliability and AVE. Each element is analysed
    on :func:`~sipas_lib.reliability.analysis_rows` (E5 on respondents who gave feedback);
    ``overall`` and the CFA mix E5 with the other items, so they use respondents who gave
    feedback. A group too small for a method gets a row with ``note`` saying why instead of an
    error.

    Returns
    -------
    dict
        ``alpha`` (one row per group × scale; ``verdict`` in
        :data:`~sipas_lib.reliability.verdicts.ALPHA_VERDICTS`), ``items`` (one row per group ×
        scale × item) and ``cfa`` (per group one ``model`` row, ``verdict`` in ``FIT_VERDICTS``,
        and one ``element`` row per element, ``verdict`` in ``VALIDITY_VERDICTS``).
    """
    model = parse_model(model)
    criteria = [c for its in model.values() for c in its]
    scales = list(model.items()) + [("overall", criteria)]
    nf = n_group_factors or len(model)
    groups: list[tuple[str, pd.DataFrame]] = [("all", df)]
    if by is not None and by in df.columns:
        groups += [(str(g), d) for g, d in df.groupby(by, sort=True)]
    alpha_rows, item_rows, cfa_rows = [], [], []
    for g, d in groups:
        if g != "all" and len(d) == len(df) and not isinstance(seed, np.random.Generator):
            # the group holds every respondent (one unit type, as in the national survey): same rows and
            # seed as "all", so the same results, relabelled rather than computed again
            alpha_rows += [{**r, "unit_type": g} for r in alpha_rows if r["unit_type"] == "all"]
            item_rows += [s.assign(unit_type=g) for s in item_rows if (s["unit_type"] == "all").all()]
            cfa_rows += [{**r, "unit_type": g} for r in cfa_rows if r["unit_type"] == "all"]
            continue
        pop_rows = {code: (analysis_rows(d, its, feedback_column=feedback_column)
                           if feedback_column in d.columns else d) for code, its in scales}
        alphas, notes = _alpha_of_scales(pop_rows, scales, weights, n_boot, seed, level)
        for code, its in scales:
            rows = pop_rows[code]
            base = {"unit_type": g, "scale": code, "n_items": len(its),
                    "population": "gave_feedback" if len(rows) < len(d) else "all"}
            if code not in alphas:
                alpha_rows.append({**base, "n": len(rows), "note": notes.get(code, "")})
                continue
            row = {**base, **alphas[code].drop(["scale", "n_items"]).to_dict(), "note": ""}
            o, _ = _try(ordinal_alpha, rows, its, weights=weights, level=level)
            if o is not None:
                row.update(ordinal_alpha=o["ordinal_alpha"].iloc[0], ordinal_feldt_low=o["feldt_low"].iloc[0],
                           ordinal_feldt_high=o["feldt_high"].iloc[0])
            om, _ = _try(omega, rows, its, n_factors=1 if code != "overall" else nf, weights=weights)
            if om is not None:
                row.update(omega_total=om["omega_total"].iloc[0],
                           omega_h=om["omega_h"].iloc[0] if code == "overall" else np.nan)
            alpha_rows.append(row)
            s, _ = _try(item_statistics, rows, its, weights=weights, weak_r_drop=weak_r_drop)
            if s is not None:
                s.insert(0, "scale", code)
                s.insert(0, "unit_type", g)
                item_rows.append(s)
        res, note = _try(cfa, d, model, feedback_column=feedback_column)
        if res is None:
            cfa_rows.append({"unit_type": g, "level": "model", "code": MODEL_CODE, "note": note})
            cfa_rows += [{"unit_type": g, "level": "element", "code": e, "n_items": len(v), "note": note}
                         for e, v in model.items()]
            continue
        f = res.fit.iloc[0].to_dict()
        cfa_rows.append({"unit_type": g, "level": "model", "code": MODEL_CODE, **f, "note": ""})
        for r in res.reliability.itertuples():
            cfa_rows.append({"unit_type": g, "level": "element", "code": r.factor, "n": f["n"],
                             "n_items": r.n_items, "cr": r.cr, "ave": r.ave, "note": ""})
    alpha_t = pd.DataFrame(alpha_rows)
    alpha_t = alpha_t.reindex(columns=list(dict.fromkeys(ALPHA_COLUMNS + list(alpha_t.columns))))
    alpha_t["verdict"] = [alpha_verdict_code(v) for v in alpha_t["raw_alpha"]]
    items_t = pd.concat(item_rows, ignore_index=True) if item_rows else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in ITEM_COLUMNS.items()})
    cfa_t = pd.DataFrame(cfa_rows)
    cfa_t = cfa_t.reindex(columns=list(dict.fromkeys(CFA_COLUMNS + list(cfa_t.columns))))
    cfa_t["verdict"] = [cfa_verdict_code(r) if r["level"] == "model" else validity_verdict_code(r["cr"], r["ave"])
                        for _, r in cfa_t.iterrows()]
    cfa_t["converged"] = cfa_t["converged"].astype("boolean")
    return {"alpha": alpha_t, "items": items_t, "cfa": cfa_t}


def stage_tables(df: pd.DataFrame, model: Mapping[str, Sequence[str]], weights: str | None = None,
                 by: str | None = "unit_type", n_boot: int = 1000,
                 seed: int | np.random.Generator | None = None, lang: str = "vi",
                 feedback_column: str = "gave_feedback", n_group_factors: int | None = None,
                 level: float = 0.95) -> dict[str, pd.DataFrame]:
    """:func:`reliability_tables` with readers' sentences added (wording from ``texts/reliability.yaml``).

    ``alpha`` and ``cfa`` keep the code in ``verdict_code`` and carry ``verdict_vi``,
    ``verdict_en`` and ``verdict`` (in ``lang``). The reliability stage writes the coded tables
    of :func:`reliability_tables`; this is for scripts and for reading a run without a notebook.
    """
    tables = reliability_tables(df, model, weights=weights, by=by, n_boot=n_boot, seed=seed, level=level,
                                feedback_column=feedback_column, n_group_factors=n_group_factors)
    alpha_t, cfa_t = tables["alpha"], tables["cfa"]
    alpha_t["verdict_code"] = alpha_t.pop("verdict")
    cfa_t["verdict_code"] = cfa_t.pop("verdict")
    for lg in ("vi", "en"):
        alpha_t[f"verdict_{lg}"] = [alpha_verdict(v, lg) for v in alpha_t["raw_alpha"]]
    alpha_t["verdict"] = alpha_t[f"verdict_{lang}"]
    a_idx = alpha_t.set_index(["unit_type", "scale"])["raw_alpha"]
    for lg in ("vi", "en"):
        cfa_t[f"verdict_{lg}"] = [
            cfa_verdict(r, lg, why=str(r["note"])) if r["level"] == "model"
            else element_verdict(a_idx.get((r["unit_type"], r["code"]), np.nan), r["cr"], r["ave"], lg)
            for _, r in cfa_t.iterrows()]
    cfa_t["verdict"] = cfa_t[f"verdict_{lang}"]
    return tables
