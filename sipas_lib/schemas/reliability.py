"""Contracts of the tables written by stage ``reliability`` (:mod:`sipas_lib.stages.reliability`)."""

from __future__ import annotations

import pandera.pandas as pa

from sipas_lib.schemas import register
from sipas_lib.schemas import columns as C

register("reliability_alpha", "reliability", "TODO: one row per …", {
    "unit_type": C.text("unit_type", nullable=False),
    "scale": C.text("scale", nullable=False),
    "n_items": C.integer("n_items"),
    "population": C.text("population", nullable=False),
    "n": C.integer("n"),
    "n_complete": C.integer("n_complete"),
    "raw_alpha": C.number("raw_alpha"),
    "std_alpha": C.number("std_alpha"),
    "g6": C.number("g6"),
    "average_r": C.number("average_r"),
    "ase": C.number("ase"),
    "feldt_low": C.number("feldt_low"),
    "feldt_high": C.number("feldt_high"),
    "boot_low": C.number("boot_low"),
    "boot_high": C.number("boot_high"),
    "ci_level": C.number("ci_level"),
    "n_boot": C.integer("n_boot"),
    "ordinal_alpha": C.number("ordinal_alpha"),
    "ordinal_feldt_low": C.number("ordinal_feldt_low"),
    "ordinal_feldt_high": C.number("ordinal_feldt_high"),
    "omega_total": C.number("omega_total"),
    "omega_h": C.number("omega_h"),
    "note": C.text("note", nullable=False),
    "verdict_vi": C.text("verdict_vi", nullable=False),
    "verdict_en": C.text("verdict_en", nullable=False),
    "verdict": C.text("verdict", nullable=False),
})

register("reliability_items", "reliability", "TODO: one row per …", {
    "unit_type": C.text("unit_type", nullable=False),
    "scale": C.text("scale", nullable=False),
    "item": C.text("item", nullable=False),
    "n": C.integer("n"),
    "missing_share": C.number("missing_share"),
    "mean": C.number("mean"),
    "sd": C.number("sd"),
    "share_satisfied": C.number("share_satisfied"),
    "raw_r": C.number("raw_r"),
    "std_r": C.number("std_r"),
    "r_cor": C.number("r_cor"),
    "r_drop": C.number("r_drop"),
    "alpha_if_deleted": C.number("alpha_if_deleted"),
    "std_alpha_if_deleted": C.number("std_alpha_if_deleted"),
    "weak": C.flag("weak"),
})

register("reliability_cfa", "reliability", "TODO: one row per …", {
    "unit_type": C.text("unit_type", nullable=False),
    "level": C.text("level", nullable=False),
    "code": C.text("code", nullable=False),
    "n": C.integer("n"),
    "n_items": C.integer("n_items"),
    "n_factors": C.number("n_factors"),
    "npar": C.number("npar"),
    "chisq": C.number("chisq"),
    "df": C.number("df"),
    "pvalue": C.number("pvalue"),
    "baseline_chisq": C.number("baseline_chisq"),
    "baseline_df": C.number("baseline_df"),
    "cfi": C.number("cfi"),
    "tli": C.number("tli"),
    "rmsea": C.number("rmsea"),
    "rmsea_ci_low": C.number("rmsea_ci_low"),
    "rmsea_ci_high": C.number("rmsea_ci_high"),
    "rmsea_pvalue": C.number("rmsea_pvalue"),
    "srmr": C.number("srmr"),
    "aic": C.number("aic"),
    "bic": C.number("bic"),
    "converged": pa.Column(None, nullable=True, description="converged"),
    "cr": C.number("cr"),
    "ave": C.number("ave"),
    "note": C.text("note", nullable=False),
    "verdict_vi": C.text("verdict_vi", nullable=False),
    "verdict_en": C.text("verdict_en", nullable=False),
    "verdict": C.text("verdict", nullable=False),
})
