"""Stage 40: reliability and validity of the questionnaire (notebook ``40_reliability``).

Reads the accepted questionnaires with their final weights (``responses_weighted``, stage 30; the
unweighted ``responses`` of stage 20 when the weighting stage has not run), computes the alpha
family, item statistics and the five-element CFA by unit type (:mod:`sipas_lib.reliability`), and
writes ``reliability_alpha``, ``reliability_items`` and ``reliability_cfa``. The exploratory
diagnostics the notebook charts (polychoric correlations, KMO, Bartlett, parallel analysis, EFA)
are computed here too, by :func:`diagnostics`, and returned, not written.

Settings: ``reliability.n_boot`` (bootstrap replicates of alpha's interval, and nothing else),
``reliability.weak_r_drop`` (weak-criterion cut-off), ``common.level`` (interval level),
``common.seed`` (bootstrap and parallel-analysis seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sipas_lib import config, reliability, schemas
from sipas_lib.settings import Settings
from sipas_lib.stages import StageError

#: Instrument whose five elements define the measurement model (same criteria in both forms).
INSTRUMENT = "hanoi_pl5_district"
#: Final weight column of ``responses_weighted``.
WEIGHT = "w_final"
#: Simulated data sets of the parallel analysis (psych's default is 20).
PARALLEL_ITERATIONS = 20

_INTEGER_COLUMNS = {"alpha": ("n_items", "n", "n_complete", "n_boot"), "cfa": ("n", "n_items")}


@dataclass(frozen=True)
class ReliabilityInput:
    """The respondents analysed and where they came from."""

    responses: pd.DataFrame
    source: str               # result table read: responses_weighted or responses
    weights: str | None       # weight column, None when unweighted
    model: dict[str, list[str]]

    @property
    def feedback(self) -> pd.DataFrame:
        """Respondents who gave feedback (the only ones asked section V): the factor analyses' rows."""
        return self.responses.loc[self.responses["gave_feedback"].astype(bool)]

    @property
    def criteria(self) -> list[str]:
        return [c for items in self.model.values() for c in items]


def load_input(paths: config.RunPaths) -> ReliabilityInput:
    """The accepted questionnaires, weighted when stage 30 has run (rows with a zero weight dropped).

    Raises
    ------
    StageError
        When neither ``responses_weighted`` nor ``responses`` exists, or a criterion column is missing.
    """
    model = reliability.element_model(INSTRUMENT)
    weighted = schemas.read_result(paths, "responses_weighted", required=False)
    if weighted is not None:
        data, source, weights = weighted, "responses_weighted", WEIGHT
        data = data.loc[data[WEIGHT].fillna(0) > 0]
    else:
        data = schemas.read_result(paths, "responses", required=False)
        if data is None:
            raise StageError(f"{schemas.result_path(paths, 'responses')}: not found (nor responses_weighted); "
                             "run the intake stage (20_intake_quality) first")
        source, weights = "responses", None
    missing = [c for items in model.values() for c in items if c not in data.columns]
    if missing:
        raise StageError(f"{schemas.result_path(paths, source)}: column(s) {', '.join(missing)} of the "
                         f"{INSTRUMENT} elements are missing")
    return ReliabilityInput(data.reset_index(drop=True), source, weights, model)


def _typed(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Whole-number columns as nullable integers (rows with only a note have them missing)."""
    out = {}
    for name, table in tables.items():
        table = table.copy()
        for col in _INTEGER_COLUMNS.get(name, ()):
            table[col] = pd.array(np.round(table[col].astype(float)), dtype="Int64")
        for col in table.columns:
            if col in ("unit_type", "scale", "population", "item", "level", "code", "note", "verdict"):
                table[col] = table[col].fillna("").astype(str)
        out[name] = table
    return out


def compute(data: ReliabilityInput, settings: Settings) -> dict[str, pd.DataFrame]:
    """The three result tables (verdicts as codes), from the stage's settings."""
    options = settings.section("reliability")
    tables = reliability.reliability_tables(
        data.responses, data.model, weights=data.weights, by="unit_type", n_boot=int(options["n_boot"]),
        seed=settings.seed, level=settings.level, weak_r_drop=float(options["weak_r_drop"]))
    return _typed(tables)


def diagnostics(data: ReliabilityInput, settings: Settings) -> dict[str, object]:
    """Exploratory diagnostics on the respondents who gave feedback, each ``None`` with a note when refused.

    Returns ``polychoric`` (matrix), ``kmo`` (table, overall MSA last), ``bartlett`` (one row),
    ``parallel`` (parallel analysis), ``efa`` (five-factor minres/oblimin on polychoric
    correlations, :class:`~sipas_lib.reliability.EFAResult`), ``efa_elements`` (the main factor of
    each element's criteria, by majority) and ``notes`` (method -> reason it was not computed).
    """
    fb, items = data.feedback, data.criteria
    out: dict[str, object] = {"notes": {}}
    calls = {
        "polychoric": lambda: reliability.polychoric(fb, items),
        "kmo": lambda: reliability.kmo(fb, items),
        "bartlett": lambda: reliability.bartlett_sphericity(fb, items),
        "parallel": lambda: reliability.parallel_analysis(fb, items, n_iter=PARALLEL_ITERATIONS, seed=settings.seed,
                                                          weights=data.weights),
        "efa": lambda: reliability.efa(fb, items, n_factors=len(data.model), method="minres", rotation="oblimin",
                                       corr="polychoric", weights=data.weights),
    }
    for name, call in calls.items():
        try:
            out[name] = call()
        except ValueError as exc:
            out[name] = None
            out["notes"][name] = str(exc)
    out["efa_elements"] = None if out["efa"] is None else efa_main_factors(out["efa"].loadings, data.model)
    return out


def efa_main_factors(loadings: pd.DataFrame, model: dict[str, list[str]]) -> pd.DataFrame:
    """For each criterion its element and the factor it loads on most; per element the majority factor.

    Returns one row per criterion: ``item, element, main_factor, element_factor`` (the most common
    main factor among the element's criteria). ``element_factor.nunique()`` equal to the number
    of elements means a clean five-element structure.
    """
    element_of = {c: e for e, items in model.items() for c in items}
    factors = [c for c in loadings.columns if c.startswith(("MR", "ML"))]
    main = [factors[j] for j in loadings[factors].abs().to_numpy().argmax(axis=1)]
    out = pd.DataFrame({"item": loadings["item"], "element": loadings["item"].map(element_of), "main_factor": main})
    majority = out.groupby("element")["main_factor"].agg(lambda s: s.mode().iloc[0])
    out["element_factor"] = out["element"].map(majority)
    return out


def run(paths: config.RunPaths, settings: Settings) -> dict[str, pd.DataFrame]:
    """Compute, validate and write ``reliability_alpha``, ``reliability_items`` and ``reliability_cfa``.

    Returns the tables by their result names.
    """
    tables = compute(load_input(paths), settings)
    out = {"reliability_alpha": tables["alpha"], "reliability_items": tables["items"],
           "reliability_cfa": tables["cfa"]}
    for name, table in out.items():
        schemas.write_result(paths, name, table)
    return out
