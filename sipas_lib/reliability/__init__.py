"""Reliability and validity of the questionnaire (stage 40), matching R's ``psych`` and ``lavaan``.

Every function takes a DataFrame and item column names and returns tidy results. The numbers
follow the conventions of ``psych`` 2.2.9 (``alpha``, ``polychoric``, ``omega``, ``KMO``,
``cortest.bartlett``, ``fa``, ``fa.parallel``), ``GPArotation`` 2022.10 (``oblimin``) and
``lavaan`` 0.6 (``cfa`` with ML, ``fitMeasures``); the test-suite checks them against reference
values produced by ``tests/r/psych_reference.R``.

Missing-data policy
-------------------
* Item non-response ("no answer") is treated as missing at random and handled **pairwise**,
  as ``psych`` does (``use = "pairwise"``): covariances, Pearson and polychoric correlations
  use every respondent who answered both items. Rows with no answer to any of the analysed
  items are dropped (they carry no information).
* Section V (element E5, criteria c15-c18) is asked only of respondents who gave feedback: for
  everybody else it is *structurally* missing, not missing at random, and never imputed.
  :func:`analysis_rows` therefore analyses E5 on respondents with ``gave_feedback`` only, and
  any analysis that mixes E5 with other items (overall alpha, EFA, the five-element CFA) is run
  on the respondents who gave feedback. The CFA (:func:`cfa`) uses the complete cases of
  those respondents (listwise deletion, lavaan's default ``missing = "listwise"``).
* Survey weights are optional where the method allows (alpha, item statistics, Pearson and
  polychoric correlations and everything computed from them). They are treated as
  reliability weights: a weight of 2 counts like a duplicated row in point estimates; the
  unweighted case reproduces ``psych`` exactly. The CFA is unweighted (ML on the sample
  covariance, as lavaan without ``sampling.weights``).

References
----------
Cronbach (1951) Psychometrika 16:297; Feldt, Woodruff & Salih (1987) Appl. Psych. Meas. 11:93;
Olsson (1979) Psychometrika 44:443 (two-step polychoric); Zumbo, Gadermann & Zeisser (2007)
J. Mod. Appl. Stat. Methods 6:21 (ordinal alpha); McDonald (1999) Test theory;
Schmid & Leiman (1957) Psychometrika 22:53; Revelle (2024) psych; Jennrich (2002) Psychometrika
67:7 (gradient projection rotation); Horn (1965) Psychometrika 30:179 (parallel analysis);
Kaiser (1970) Psychometrika 35:401 (KMO); Bartlett (1951) JRSS-B 13:1; Bollen (1989)
Structural equations with latent variables; Hu & Bentler (1999) SEM 6:1 (fit cut-offs);
Fornell & Larcker (1981) J. Marketing Res. 18:39 (AVE, composite reliability).

Layout
------
* :mod:`~sipas_lib.reliability.base` — input checks, the missing-data policy, pairwise covariances;
* :mod:`~sipas_lib.reliability.alpha` — Cronbach's alpha family, Feldt/bootstrap intervals, item statistics;
* :mod:`~sipas_lib.reliability.polychoric` — polychoric correlations and ordinal alpha;
* :mod:`~sipas_lib.reliability.factor` — KMO, Bartlett, EFA and rotations, omega, parallel analysis;
* :mod:`~sipas_lib.reliability.cfa` — confirmatory factor analysis (lavaan's ML and fit measures);
* :mod:`~sipas_lib.reliability.verdicts` — verdict codes against stated thresholds (wording in YAML);
* :mod:`~sipas_lib.reliability.tables` — the stage-40 result tables.

Core layer: imports nothing above the contracts.
"""

from __future__ import annotations

from sipas_lib.reliability.alpha import _boot_alpha, _boot_counts, _feldt, cronbach_alpha, item_statistics
from sipas_lib.reliability.base import (
    SATISFIED_MIN, _matrix, _pairwise, analysis_rows, element_model, pairwise_cor, pairwise_cov,
)
from sipas_lib.reliability.cfa import CFAResult, cfa, parse_model
from sipas_lib.reliability.factor import (
    EFAResult, bartlett_sphericity, efa, kmo, omega, parallel_analysis, schmid_leiman,
)
from sipas_lib.reliability.polychoric import _brent_fmin, bvn_cdf, ordinal_alpha, polychoric, polychoric_thresholds
from sipas_lib.reliability.tables import reliability_tables, stage_tables
from sipas_lib.reliability.verdicts import (
    ALPHA_THRESHOLDS, ALPHA_VERDICTS, FIT_THRESHOLDS, FIT_VERDICTS, VALIDITY_VERDICTS, alpha_verdict,
    alpha_verdict_code, cfa_verdict, cfa_verdict_code, element_verdict, validity_verdict_code,
)
from sipas_lib.texts import load_texts

__all__ = [
    "FIT_THRESHOLDS", "ALPHA_THRESHOLDS", "SATISFIED_MIN", "ALPHA_VERDICTS", "FIT_VERDICTS", "VALIDITY_VERDICTS",
    "analysis_rows", "element_model", "parse_model",
    "pairwise_cov", "pairwise_cor", "cronbach_alpha", "item_statistics",
    "polychoric", "polychoric_thresholds", "ordinal_alpha", "omega", "schmid_leiman",
    "kmo", "bartlett_sphericity", "efa", "EFAResult", "parallel_analysis", "cfa", "CFAResult",
    "bvn_cdf", "alpha_verdict_code", "cfa_verdict_code", "validity_verdict_code",
    "alpha_verdict", "cfa_verdict", "element_verdict", "reliability_tables", "stage_tables", "REPORT_LABELS",
]

#: Report texts of the stage-40 notebook (``texts/reliability.yaml``), kept for scripts that used them.
REPORT_LABELS: dict[str, dict[str, str]] = load_texts("reliability")
