"""Verdicts on reliability and validity: codes computed here, wording in ``texts/reliability.yaml``.

Core layer. The statistics decide a *code* against stated thresholds (:func:`alpha_verdict_code`
-> ``"good"``, :func:`cfa_verdict_code`, :func:`validity_verdict_code`); result tables carry those
codes. Readers' sentences are rendered from the YAML texts (keys ``rel_alpha_verdict_<code>``,
``rel_cfa_verdict_<code>``, ``rel_element_verdict_<code>``), by a notebook through ``ctx.text`` or
by the sentence helpers :func:`alpha_verdict`, :func:`cfa_verdict` and :func:`element_verdict`
kept here for scripts (they hold no wording of their own).

Thresholds: alpha/omega ≥ .80 good, ≥ .70 acceptable, ≥ .60 questionable (Nunnally & Bernstein
1994; George & Mallery 2003); CFA fit good when CFI, TLI ≥ .95, RMSEA ≤ .06, SRMR ≤ .08 (Hu &
Bentler 1999), acceptable when CFI, TLI ≥ .90, RMSEA ≤ .08, SRMR ≤ .10 (Browne & Cudeck 1993;
Marsh, Hau & Wen 2004); convergent validity when CR ≥ .70 and AVE ≥ .50 (Fornell & Larcker 1981).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

# the codes' vocabularies are part of the result tables' contract
from sipas_lib.schemas.reliability import ALPHA_VERDICTS, FIT_VERDICTS, VALIDITY_VERDICTS  # noqa: F401
from sipas_lib.texts import load_texts

ALPHA_THRESHOLDS = {"good": 0.80, "acceptable": 0.70, "questionable": 0.60}
"""Conventional reading of alpha/omega (Nunnally & Bernstein 1994; George & Mallery 2003)."""

FIT_THRESHOLDS = {"cfi": 0.95, "tli": 0.95, "rmsea": 0.06, "srmr": 0.08,
                  "cfi_acceptable": 0.90, "tli_acceptable": 0.90, "rmsea_acceptable": 0.08,
                  "srmr_acceptable": 0.10, "cr": 0.70, "ave": 0.50}
"""Cut-offs for a good CFA fit (Hu & Bentler 1999: CFI, TLI >= .95, RMSEA <= .06, SRMR <= .08),
acceptable fit (CFI, TLI >= .90, RMSEA <= .08; Browne & Cudeck 1993; Marsh, Hau & Wen 2004) and
convergent validity (composite reliability >= .70, AVE >= .50; Fornell & Larcker 1981)."""



def _finite(value) -> bool:
    return value is not None and not pd.isna(value) and bool(np.isfinite(float(value)))


def alpha_verdict_code(value: float | None) -> str:
    """Reading of an alpha/omega value against :data:`ALPHA_THRESHOLDS`.

    Examples
    --------
    >>> [alpha_verdict_code(v) for v in (0.85, 0.72, 0.65, 0.4, float("nan"))]
    ['good', 'acceptable', 'questionable', 'poor', 'not_computable']
    """
    if not _finite(value):
        return "not_computable"
    for code in ("good", "acceptable", "questionable"):
        if value >= ALPHA_THRESHOLDS[code]:
            return code
    return "poor"


def cfa_verdict_code(fit: pd.DataFrame | Mapping) -> str:
    """Reading of a CFA fit (``cfi, tli, rmsea, srmr``) against :data:`FIT_THRESHOLDS`.

    ``good`` when all four indices are within Hu & Bentler's cut-offs, ``acceptable`` when all four
    are within the looser ones, ``poor`` otherwise, ``not_estimable`` when an index is missing.

    Examples
    --------
    >>> cfa_verdict_code({"cfi": 0.97, "tli": 0.96, "rmsea": 0.04, "srmr": 0.03})
    'good'
    >>> cfa_verdict_code({"cfi": 0.93, "tli": 0.92, "rmsea": 0.07, "srmr": 0.06})
    'acceptable'
    """
    row = fit.iloc[0] if isinstance(fit, pd.DataFrame) else fit
    values = {k: row.get(k, np.nan) for k in ("cfi", "tli", "rmsea", "srmr")}
    if not all(_finite(v) for v in values.values()):
        return "not_estimable"
    t = FIT_THRESHOLDS

    def within(suffix: str) -> bool:
        return bool(values["cfi"] >= t["cfi" + suffix] and values["tli"] >= t["tli" + suffix]
                    and values["rmsea"] <= t["rmsea" + suffix] and values["srmr"] <= t["srmr" + suffix])

    if within(""):
        return "good"
    return "acceptable" if within("_acceptable") else "poor"


def validity_verdict_code(cr: float | None, ave: float | None) -> str:
    """Convergent validity of an element: ``supported`` when CR ≥ .70 and AVE ≥ .50.

    Examples
    --------
    >>> validity_verdict_code(0.86, 0.56), validity_verdict_code(0.69, 0.53), validity_verdict_code(None, None)
    ('supported', 'not_supported', 'not_assessed')
    """
    if not (_finite(cr) and _finite(ave)):
        return "not_assessed"
    return "supported" if cr >= FIT_THRESHOLDS["cr"] and ave >= FIT_THRESHOLDS["ave"] else "not_supported"


# --------------------------------------------------------------------------- sentences (wording from YAML)
def _text(key: str, lang: str) -> str:
    return load_texts("reliability")[key][lang]


def _dec(value: float, digits: int, lang: str) -> str:
    out = f"{value:.{digits}f}"
    return out.replace(".", ",") if lang == "vi" else out


def alpha_verdict(value: float | None, lang: str = "en") -> str:
    """Plain-language reading of an alpha/omega value (text ``rel_alpha_verdict_<code>``)."""
    return _text(f"rel_alpha_verdict_{alpha_verdict_code(value)}", lang)


def cfa_verdict(fit: pd.DataFrame | Mapping, lang: str = "en", why: str = "") -> str:
    """One-line verdict on a CFA fit (text ``rel_cfa_verdict_<code>`` with the four indices)."""
    row = fit.iloc[0] if isinstance(fit, pd.DataFrame) else fit
    code = cfa_verdict_code(row)
    if code == "not_estimable":
        return _text("rel_cfa_verdict_not_estimable", lang).format(why=why)
    return _text(f"rel_cfa_verdict_{code}", lang).format(
        **{k: _dec(float(row[k]), 3, lang) for k in ("cfi", "tli", "rmsea", "srmr")})


def element_verdict(alpha: float | None, cr: float | None = None, ave: float | None = None,
                    lang: str = "en") -> str:
    """One-line verdict on an element: internal consistency (alpha) and convergent validity (CR, AVE)."""
    code = validity_verdict_code(cr, ave)
    values = {"rel": alpha_verdict(alpha, lang), "alpha": _dec(alpha, 2, lang) if _finite(alpha) else "–"}
    if code != "not_assessed":
        values.update(cr=_dec(cr, 2, lang), ave=_dec(ave, 2, lang))
    return _text(f"rel_element_verdict_{code}", lang).format(**values)
