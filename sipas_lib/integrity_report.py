"""Fieldwork integrity as readers see it: the flagged units' table shared by notebook 25, the annual
report (notebook 60) and the scorecards.

Report layer. The numbers come from the integrity stage's ``integrity_units`` table
(:mod:`sipas_lib.stages.integrity`); this module only labels and formats them, in one place, so the
three reports say the same thing in the same words.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from sipas_lib import reporting as R
from sipas_lib.texts import load_texts

_TEXTS = load_texts("integrity")


def label(key: str, lang: str) -> str:
    """An integrity text (``sipas_lib/texts/integrity.yaml``) in ``lang``."""
    return _TEXTS[key][lang]


def signal_names(signals: str, lang: str) -> str:
    """``"near_duplicates, return_bunching"`` -> the signals' names in ``lang``, ``"; "``-separated."""
    return "; ".join(label(f"signal_{code}", lang) for code in signals.split(", ") if code)


def _rank_text(rank, low, high) -> str:
    return "–" if pd.isna(rank) else f"{int(rank)} ({int(low)}–{int(high)})"


def _index_text(value, low, high, lang: str) -> str:
    if pd.isna(value):
        return "–"
    return f"{R.fmt_pct(value, 1, lang)} ({R.fmt_ci(low, high, 1, lang)})"


def integrity_table(units: pd.DataFrame, names: Mapping[str, str], lang: str, *, sensitivity: bool = True,
                    reasons: bool = True) -> pd.DataFrame:
    """Units of the integrity table, one display row each: name, forms, signals, suspect forms, and (with
    ``sensitivity``) the index and rank confidence set with all forms and without the suspect ones, and
    (with ``reasons``) the reasons of the flags.

    Parameters
    ----------
    units
        Rows of the ``integrity_units`` table to show (e.g. the flagged ones: ``n_flags > 0``).
    names
        unit_id -> the unit's name in ``lang``.
    lang
        ``"vi"`` or ``"en"``.
    """
    flagged = units
    out = {
        label("int_col_unit", lang): flagged["unit_id"].map(lambda u: names.get(u, u)),
        label("int_col_forms", lang): flagged["n_forms"].map(lambda v: R.fmt_num(v, lang=lang)),
        label("int_col_signals", lang): flagged["signals"].map(lambda s: signal_names(s, lang)),
        label("int_col_suspects", lang): flagged["n_suspect_forms"].map(lambda v: R.fmt_num(v, lang=lang)),
    }
    if sensitivity:
        for suffix in ("all", "without"):
            out[label(f"int_col_index_{suffix}", lang)] = [
                _index_text(v, lo, hi, lang) for v, lo, hi in
                zip(flagged[f"index_{suffix}"], flagged[f"ci_low_{suffix}"], flagged[f"ci_high_{suffix}"])]
            out[label(f"int_col_rank_{suffix}", lang)] = [
                _rank_text(r, lo, hi) for r, lo, hi in
                zip(flagged[f"rank_{suffix}"], flagged[f"rank_ci_low_{suffix}"], flagged[f"rank_ci_high_{suffix}"])]
    if reasons:
        out[label("int_col_reason", lang)] = flagged["reason_vi" if lang == "vi" else "reason"]
    return pd.DataFrame(out).reset_index(drop=True)
