"""Survey weights: base weights, non-response adjustment, calibration, trimming, diagnostics.

Every calibration (:func:`poststratify`, :func:`rake`, :func:`calibrate`) and :func:`trim` takes a
:class:`~sipas_lib.estimation.SurveyDesign` (or a :class:`~sipas_lib.estimation.ReplicateDesign`)
and returns a new one. As in R's ``survey`` package, a calibrated Taylor design remembers the
calibration, and every standard error computed from it uses calibration residuals (R's
``svyrecvar`` with ``postStrata``); a replicate design is recalibrated in every replicate.

:func:`annual_design` builds the design of a SIPAS year in one call (base weights ->
non-response adjustment -> post-stratification to the frame's unit x field counts -> trimming).
:func:`build_annual_design` returns the same design with its :class:`DesignSpec` (the design as
data: strata, PSUs, fpc, lonely-PSU rule, calibration kind with its cells and population counts,
trimming); the weighting stage saves the specification and every later stage rebuilds exactly that
design with :func:`design_from_spec`, so no stage re-derives the weighting.

References
----------
Lumley, T. (2010). *Complex Surveys: A Guide to Analysis Using R*, ch. 7. Wiley.
Deville, J.-C. & Särndal, C.-E. (1992). Calibration estimators in survey sampling. *JASA* 87, 376-382.
Kish, L. (1992). Weighting for unequal P_i. *Journal of Official Statistics* 8, 183-200.
Valliant, R., Dever, J. & Kreuter, F. (2018). *Practical Tools for Designing and Weighting Survey
Samples*, ch. 13-14. Springer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from sipas_lib.estimation import (
    CalibrationAtom,
    CalibrationStep,
    ReplicateDesign,
    SurveyDesign,
    onehot_atom,
)
from sipas_lib.intake import is_in

RAKING_SWEEPS = 10  # R's svyrecvar backfits raking residuals with 10 sweeps over the margins
COUNT_COLUMNS = ("N", "Freq", "count", "n")

Design = SurveyDesign | ReplicateDesign


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _keys(key: str | Sequence[str]) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


def _population_table(cols: list[str], population) -> pd.DataFrame:
    """Normalise a population margin to a DataFrame with ``cols`` + ``N``."""
    if isinstance(population, pd.Series):
        pop = population.rename("N").reset_index()
        if len(pop.columns) != len(cols) + 1:
            raise ValueError(f"population for {cols} must be indexed by {len(cols)} level(s)")
        pop.columns = cols + ["N"]
    elif isinstance(population, pd.DataFrame):
        missing = [c for c in cols if c not in population.columns]
        if missing:
            raise ValueError(f"population table for {cols} lacks column(s) {missing}")
        counts = [c for c in population.columns if c not in cols]
        if len(counts) != 1:
            named = [c for c in counts if c in COUNT_COLUMNS]
            if len(named) != 1:
                raise ValueError(f"population table for {cols} must have exactly one count column "
                                 f"besides {cols} (found {counts})")
            counts = named
        pop = population[cols + counts].rename(columns={counts[0]: "N"})
    else:
        raise ValueError("a population margin must be a pandas Series (index = categories) or DataFrame")
    pop = pop.copy()
    pop["N"] = pd.to_numeric(pop["N"], errors="coerce")
    if pop["N"].isna().any() or (pop["N"] < 0).any():
        raise ValueError(f"population counts for {cols} must be non-negative numbers")
    if pop.duplicated(cols).any():
        dup = pop[pop.duplicated(cols)].iloc[0][cols].tolist()
        raise ValueError(f"population for {cols} lists category {dup} twice")
    return pop


def _cell_codes(data: pd.DataFrame, cols: list[str], pop: pd.DataFrame, w: np.ndarray, partial: bool,
                what: str) -> tuple[np.ndarray, np.ndarray]:
    """Row -> population-cell code and the population count of each cell (R postStratify checks)."""
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise ValueError(f"{what}: column(s) {missing} not in the design data")
    if data[cols].isna().any().any():
        raise ValueError(f"{what}: column(s) {cols} have missing values; every respondent needs a cell")
    pop = pop[pop["N"] > 0].reset_index(drop=True)
    idx = pd.MultiIndex.from_frame(pop[cols]) if len(cols) > 1 else pd.Index(pop[cols[0]])
    rows = pd.MultiIndex.from_frame(data[cols]) if len(cols) > 1 else pd.Index(data[cols[0]])
    code = idx.get_indexer(rows)
    if (code < 0).any():
        bad = data[cols].iloc[np.flatnonzero(code < 0)[0]].tolist()
        raise ValueError(f"{what}: respondents in cell {bad} ({int((code < 0).sum())} rows) but the "
                         "population has no such cell (or a zero count); check labels and types")
    K = len(pop)
    wsum = np.bincount(code, weights=w, minlength=K)
    empty = np.flatnonzero(wsum <= 0)
    if empty.size and not partial:
        cells = [pop.iloc[i][cols].tolist() for i in empty[:5]]
        raise ValueError(f"{what}: {empty.size} population cell(s) have no respondents (e.g. {cells}); "
                         "collapse them with a neighbouring cell or use partial=True to ignore them")
    return code, pop["N"].to_numpy(float)


def _label(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Vectorized 'a|b|c' labels of the given columns."""
    out = df[cols[0]].astype(str)
    for c in cols[1:]:
        out = out + "|" + df[c].astype(str)
    return out.to_numpy(dtype=object)


def _weight_matrix(design: Design) -> np.ndarray:
    """(n x m): full weights, then replicate weights for a ReplicateDesign."""
    if isinstance(design, ReplicateDesign):
        return np.column_stack([design.w, design.repweights])
    return design.w[:, None]


def _finish(design: Design, Wnew: np.ndarray, name: str | None, step: CalibrationStep | None) -> Design:
    if isinstance(design, ReplicateDesign):
        return design.with_weights(Wnew[:, 0], Wnew[:, 1:], name=name)
    cal = design.calibration + ((step,) if step is not None else ())
    return design.with_weights(Wnew[:, 0], name=name, calibration=cal)


# --------------------------------------------------------------------------------------------
# base weights and non-response
# --------------------------------------------------------------------------------------------
def base_weights(sample: pd.DataFrame, incl_prob: str = "incl_prob", name: str = "w_base") -> pd.DataFrame:
    """Design (base) weights :math:`d_i = 1/\\pi_i` from inclusion probabilities.

    Returns a copy of ``sample`` with column ``name``. Raises if a probability is missing or
    outside (0, 1].
    """
    if incl_prob not in sample.columns:
        raise ValueError(f"inclusion probability column {incl_prob!r} is not in the sample")
    p = pd.to_numeric(sample[incl_prob], errors="coerce").to_numpy(float)
    bad = np.isnan(p) | (p <= 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{int(bad.sum())} inclusion probabilities are missing or outside (0, 1] "
                         f"(row {i}: {sample[incl_prob].iloc[i]!r})")
    return sample.assign(**{name: 1.0 / p})


def nonresponse_adjust(sample: pd.DataFrame, responded: str, cells: str | Sequence[str],
                       weight: str = "w_base", name: str = "w_nr",
                       fallback: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Weighting-class non-response adjustment.

    Within each cell c of the *issued* sample,

    .. math:: w^{nr}_i = d_i \\, \\frac{\\sum_{j \\in c} d_j}{\\sum_{j \\in c,\\, r_j = 1} d_j}
              \\quad (r_i = 1), \\qquad w^{nr}_i = 0 \\quad (r_i = 0),

    so respondents carry the weight of the non-respondents of their cell (Valliant et al. 2018,
    sec. 13.5).

    Parameters
    ----------
    sample
        Issued sample, one row per selected unit, with base weights.
    responded
        Boolean column: questionnaire returned and accepted.
    cells
        Adjustment-cell column(s), e.g. ``["unit_id", "survey_mode"]``.
    weight, name
        Input base-weight column and output column.
    fallback
        Coarser cell column(s) (e.g. ``"unit_id"``). The issued weight of a cell without any
        respondent is spread over the respondents of its fallback cell in proportion to their
        adjusted weights (so fallback-cell totals are kept); without ``fallback`` such a cell raises.

    Returns
    -------
    pandas.DataFrame
        ``sample`` plus ``name`` (0 for non-respondents), ``nr_factor`` (``name / weight`` for
        respondents) and ``nr_cell`` (the adjustment cell label).
    """
    cells = _keys(cells)
    for c in cells + [responded, weight] + _keys(fallback or []):
        if c not in sample.columns:
            raise ValueError(f"column {c!r} is not in the sample")
    r = sample[responded].astype(bool).to_numpy()
    d = sample[weight].to_numpy(float)
    if not r.any():
        raise ValueError("no respondents in the sample")

    key = _label(sample, cells)
    issued = pd.Series(d).groupby(key).sum()
    resp = pd.Series(d * r).groupby(key).sum()
    empty_cells = resp.index[resp <= 0]
    fac = pd.Series(key).map(issued / resp.where(resp > 0)).to_numpy(float)
    w = np.where(r, d * fac, 0.0)
    in_empty = np.isin(key, empty_cells)
    if in_empty.any():
        if fallback is None:
            raise ValueError(f"{len(empty_cells)} non-response cell(s) have no respondents (e.g. "
                             f"{empty_cells[0]!r}); give fallback cells (e.g. fallback='unit_id') or collapse cells")
        # spread the issued weight of empty cells over the respondents of the same fallback cell
        fkey = _label(sample, _keys(fallback))
        E = pd.Series(np.where(in_empty, d, 0.0)).groupby(fkey).sum()
        R = pd.Series(w).groupby(fkey).sum()
        orphan = E.index[(E > 0) & (R <= 0)]
        if len(orphan):
            raise ValueError(f"fallback cell {orphan[0]!r} has no respondents either")
        w = w * (1 + pd.Series(fkey).map(E / R.where(R > 0)).fillna(0.0).to_numpy())
    return sample.assign(**{name: w, "nr_factor": np.where(r, w / d, np.nan), "nr_cell": key})


# --------------------------------------------------------------------------------------------
# post-stratification, raking, GREG calibration, trimming
# --------------------------------------------------------------------------------------------
def poststratify(design: Design, strata: str | Sequence[str], population, partial: bool = False,
                 name: str | None = None) -> Design:
    """Post-stratify to known cell counts (R ``postStratify``).

    .. math:: w^*_i = w_i \\, N_c / \\hat N_c, \\qquad \\hat N_c = \\sum_{j \\in c} w_j

    Variance: scores are replaced by :math:`w^*_i (z_i - \\bar z_c)` with :math:`\\bar z_c` the
    mean of z in cell c under the old weights (R ``svyrecvar``). A replicate design is
    post-stratified in every replicate.

    Parameters
    ----------
    design
        Design to calibrate.
    strata
        Cell column(s).
    population
        Series indexed by the cell values (MultiIndex for several columns) or DataFrame with the
        cell columns and one count column (``N``/``Freq``).
    partial
        Ignore population cells without respondents (R ``partial=TRUE``); else raise.
    name
        Name of the new weight column (default: overwrite the current one).

    Examples
    --------
    >>> df = pd.DataFrame({"g": ["a", "a", "b"], "y": [1.0, 2, 3]})
    >>> d = poststratify(SurveyDesign(df), "g", pd.Series({"a": 10, "b": 30}))
    >>> d.w.tolist()
    [5.0, 5.0, 30.0]
    """
    cols = _keys(strata)
    pop = _population_table(cols, population)
    W = _weight_matrix(design)
    code, Npop = _cell_codes(design.data, cols, pop, W[:, 0], partial, "poststratify")
    K = len(Npop)
    Wnew = np.empty_like(W)
    for m in range(W.shape[1]):
        freq = np.bincount(code, weights=W[:, m], minlength=K)
        with np.errstate(divide="ignore", invalid="ignore"):
            Wnew[:, m] = W[:, m] * (Npop / freq)[code]
    step = None
    if isinstance(design, SurveyDesign):
        psw, oldw = Wnew[:, 0].copy(), W[:, 0].copy()
        zero = (psw == 0) & (oldw == 0)
        psw[zero] = 1.0
        oldsum = np.bincount(code, weights=oldw, minlength=K)
        with np.errstate(divide="ignore"):
            L = np.where(oldsum > 0, 1.0 / oldsum, 0.0)
        step = CalibrationStep("poststratify", (onehot_atom(code, K, oldw / psw, psw, L),), (0,))
    return _finish(design, Wnew, name, step)


def rake(design: Design, margins: Mapping, maxit: int = 10, epsilon: float = 1.0,
         name: str | None = None, strict: bool = False) -> Design:
    """Raking (iterative proportional fitting) to several population margins (R ``rake``).

    Each sweep post-stratifies to every margin in turn; the sweeps stop when the weighted table of
    all margin variables changes by less than ``epsilon`` (counts; ``epsilon < 1`` is relative to
    the weight total, as R) or after ``maxit`` sweeps. Variance: R's raking residuals (10
    back-fitting sweeps of the post-stratification residuals over the margins).

    Parameters
    ----------
    design
        Design to calibrate.
    margins
        ``{column or tuple of columns: population}``, population as in :func:`poststratify`.
    maxit, epsilon
        Iteration cap and tolerance (R's defaults 10 and 1).
    strict
        Raise instead of warning when raking does not converge.

    Raises
    ------
    ValueError
        Margins whose totals disagree (raking cannot converge), a margin cell without
        respondents, a respondent category missing from a margin.
    """
    if not margins:
        raise ValueError("give at least one margin")
    W = _weight_matrix(design)
    data = design.data
    specs = []
    for key, popm in margins.items():
        cols = _keys(key)
        pop = _population_table(cols, popm)
        code, Npop = _cell_codes(data, cols, pop, W[:, 0], False, f"rake margin {cols}")
        specs.append((cols, code, Npop))
    totals = np.array([s[2].sum() for s in specs])
    if np.any(np.abs(totals - totals[0]) > 1e-6 * max(1.0, abs(totals[0]))):
        desc = ", ".join(f"{'x'.join(s[0])}: {t:,.6g}" for s, t in zip(specs, totals))
        raise ValueError(f"the raking margins disagree on the population total ({desc}); "
                         "raking cannot converge -- make the margins consistent")
    # cells of the cross-classification of all margins: raking factors are constant in a cell
    cell_key = np.zeros(len(data), np.int64)
    for _, code, Npop in specs:
        cell_key = cell_key * len(Npop) + code
    n_cross = int(np.prod([len(sp[2]) for sp in specs], dtype=float))
    if n_cross <= 50_000_000:
        present = np.bincount(cell_key, minlength=n_cross) > 0
        relabel = np.cumsum(present) - 1
        cell_of_row = relabel[cell_key]
        C = int(present.sum())
    else:
        _, cell_of_row = np.unique(cell_key, return_inverse=True)
        C = int(cell_of_row.max()) + 1
    cell_margin = []
    for _, code, Npop in specs:
        cm = np.zeros(C, np.int64)
        cm[cell_of_row] = code
        cell_margin.append(cm)
    Wc = np.stack([np.bincount(cell_of_row, weights=W[:, m], minlength=C) for m in range(W.shape[1])], 1)
    fac = np.ones_like(Wc)
    eps = epsilon * W[:, 0].sum() if epsilon < 1 else epsilon
    old = Wc[:, 0].copy()
    converged = False
    it = 0
    psw_fac: list[np.ndarray] = []
    while it < maxit:
        psw_fac = []
        for (cols, code, Npop), cm in zip(specs, cell_margin):
            K = len(Npop)
            cur = Wc * fac
            freq = np.stack([np.bincount(cm, weights=cur[:, m], minlength=K) for m in range(cur.shape[1])], 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                fac = fac * (Npop[:, None] / freq)[cm]
            psw_fac.append(fac[:, 0].copy())
        new = Wc[:, 0] * fac[:, 0]
        if np.max(np.abs(old - new)) < eps:
            converged = True
            break
        old = new
        it += 1
    if not converged:
        msg = f"raking did not converge after {it} iterations (epsilon={epsilon})"
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + "; raise maxit", RuntimeWarning, stacklevel=2)
    Wnew = W * fac[cell_of_row]
    step = None
    if isinstance(design, SurveyDesign):
        atoms = []
        for (cols, code, Npop), pf in zip(specs, psw_fac):
            psw = W[:, 0] * pf[cell_of_row]
            cnt = np.bincount(code, minlength=len(Npop)).astype(float)
            with np.errstate(divide="ignore"):
                L = np.where(cnt > 0, 1.0 / cnt, 0.0)
                atoms.append(onehot_atom(code, len(Npop), 1.0 / psw, psw, L))
        program = tuple(m for _ in range(RAKING_SWEEPS) for m in range(len(atoms)))
        step = CalibrationStep("raking", tuple(atoms), program)
    return _finish(design, Wnew, name, step)


def _model_matrix(data: pd.DataFrame, margins: Mapping, totals: Mapping, population: float | None):
    """Treatment-coded model matrix (intercept, categorical margins, numeric columns) and totals."""
    blocks = [np.ones(len(data))]
    names = ["(Intercept)"]
    target = []
    N_from_margins = []
    cols_sparse = [sparse.csr_matrix(np.ones((len(data), 1)))]
    for key, popm in (margins or {}).items():
        cols = _keys(key)
        pop = _population_table(cols, popm)
        code, Npop = _cell_codes(data, cols, pop, np.ones(len(data)), False, f"calibrate margin {cols}")
        N_from_margins.append(Npop.sum())
        K = len(Npop)
        if K > 1:
            rows = np.flatnonzero(code > 0)
            cols_sparse.append(sparse.csr_matrix((np.ones(rows.size), (rows, code[rows] - 1)), shape=(len(data), K - 1)))
            target.extend(Npop[1:].tolist())
            names.extend(f"{'x'.join(cols)}={v}" for v in pop[pop["N"] > 0][cols].astype(str).agg("|".join, axis=1).iloc[1:])
    for col, tot in (totals or {}).items():
        if col not in data.columns:
            raise ValueError(f"calibration total for {col!r}: column not in the data")
        v = pd.to_numeric(data[col], errors="coerce").to_numpy(float)
        if np.isnan(v).any():
            raise ValueError(f"calibration variable {col!r} has missing values")
        cols_sparse.append(sparse.csr_matrix(v[:, None]))
        target.append(float(tot))
        names.append(col)
    if N_from_margins:
        Ns = np.array(N_from_margins)
        if np.any(np.abs(Ns - Ns[0]) > 1e-6 * Ns[0]):
            raise ValueError(f"the calibration margins disagree on the population total ({Ns.tolist()})")
        if population is not None and abs(population - Ns[0]) > 1e-6 * Ns[0]:
            raise ValueError(f"population={population:g} disagrees with the margins' total {Ns[0]:g}")
        N = Ns[0]
    elif population is not None:
        N = float(population)
    else:
        raise ValueError("give the population size (population=) or at least one margin")
    M = sparse.hstack(cols_sparse, format="csr")
    return M, np.array([N] + target), names


def calibrate(design: Design, margins: Mapping | None = None, totals: Mapping[str, float] | None = None,
              population: float | None = None, name: str | None = None) -> Design:
    """Linear (GREG) calibration to known totals (R ``calibrate(..., calfun="linear")``).

    With model matrix :math:`M` (intercept, treatment-coded categorical margins, numeric columns),
    sample totals :math:`\\hat T = M^\\top w` and population totals :math:`T`,

    .. math:: g_i = 1 + m_i^\\top (M^\\top W M)^{-1}(T - \\hat T), \\qquad w^*_i = g_i w_i .

    Variance: GREG residuals :math:`w^*_i (z_i - m_i^\\top \\hat\\beta)`,
    :math:`\\hat\\beta = (M^\\top W M)^{-1} M^\\top W z` (R's ``svyrecvar``). A replicate design is
    calibrated in every replicate. The model space equals R's formula ``~ a + b + x`` for
    ``margins={"a":.., "b":..}, totals={"x":..}`` (the coding does not change the result).

    Parameters
    ----------
    margins
        ``{column(s): population counts}`` as in :func:`poststratify` (all levels).
    totals
        ``{numeric column: population total}``.
    population
        Population size (needed when no margin is given).

    Raises
    ------
    ValueError
        Margins with different totals, empty cells, or calibrated weights <= 0 (linear
        calibration can produce them; rake or trim instead).
    """
    M, T, names = _model_matrix(design.data, margins, totals, population)
    W = _weight_matrix(design)
    Wnew = np.empty_like(W)
    for m in range(W.shape[1]):
        w = W[:, m]
        A = (M.T @ M.multiply(w[:, None])).toarray() if sparse.issparse(M) else M.T @ (M * w[:, None])
        A = np.asarray(A)
        that = np.asarray(M.T @ w).ravel()
        lam = np.linalg.lstsq(A, T - that, rcond=None)[0]
        g = 1.0 + np.asarray(M @ lam).ravel()
        if m == 0:
            g0 = g
        Wnew[:, m] = w * g
    if (Wnew[:, 0] <= 0).any():
        raise ValueError(f"linear calibration produced {int((Wnew[:, 0] <= 0).sum())} zero or negative "
                         "weight(s); use rake() (positive factors) or fewer constraints")
    step = None
    if isinstance(design, SurveyDesign):
        # residuals depend on the model space only: centre and scale the columns (the intercept
        # is in the model) so that M'WM is well conditioned (R uses a QR decomposition instead)
        w0 = W[:, 0]
        n_num = len(totals or {})
        Ms = M
        if n_num:
            X = M[:, M.shape[1] - n_num:].toarray()
            Xc = X - (w0 @ X) / w0.sum()
            sd = np.sqrt((w0 @ (Xc * Xc)) / w0.sum())
            sd[sd == 0] = 1.0
            Ms = sparse.hstack([M[:, :M.shape[1] - n_num], sparse.csr_matrix(Xc / sd)], format="csr")
        A = np.asarray((Ms.T @ Ms.multiply(w0[:, None])).todense())
        Ainv = np.linalg.pinv(A, hermitian=True)
        P = sparse.csr_matrix(Ms.multiply(1.0 / g0[:, None]))
        H = sparse.csr_matrix(Ms.multiply(Wnew[:, 0][:, None]))
        step = CalibrationStep("greg", (CalibrationAtom(P, H, Ainv),), (0,))
    return _finish(design, Wnew, name, step)


def _trim_vector(w: np.ndarray, lower, upper, strict: bool, groups: np.ndarray | None) -> np.ndarray:
    """trimWeights on one weight vector; bounds may be scalars or per-row arrays."""
    groups = np.zeros(len(w), np.int64) if groups is None else groups
    G = int(groups.max()) + 1
    w = w.copy()
    for _ in range(1000):
        outside = (w < lower) | (w > upper)
        if not outside.any():
            break
        clipped = np.clip(w, lower, upper)
        excess = np.bincount(groups, weights=w - clipped, minlength=G)
        inside = np.bincount(groups, weights=(~outside).astype(float), minlength=G)
        if np.any((inside == 0) & (np.abs(excess) > 0)):
            raise ValueError("every weight of a group is outside the trimming bounds; widen them")
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(inside > 0, excess / inside, 0.0)
        w = np.where(outside, clipped, w + share[groups])
        if not strict:
            break
    return w


def trim(design: Design, lower: float = -np.inf, upper: float = np.inf, strict: bool = False,
         by: str | Sequence[str] | None = None, name: str | None = None) -> Design:
    """Trim weights to [lower, upper] and share the trimmed amount among the untrimmed weights
    (R ``trimWeights``).

    .. math:: w^*_i = \\min(\\max(w_i, L), U) + 1[L \\le w_i \\le U]\\,
              \\frac{\\sum_j (w_j - \\min(\\max(w_j, L), U))}{\\#\\{j: L \\le w_j \\le U\\}}

    ``strict=True`` repeats until no weight is outside the bounds (R). ``by`` (an extension) trims
    within groups, sharing the trimmed weight within the group so group totals are kept. The
    design keeps its calibration residuals (R does the same). Replicate weights are trimmed the
    same way, column by column.
    """
    if lower > upper:
        raise ValueError(f"lower bound {lower} exceeds upper bound {upper}")
    W = _weight_matrix(design)
    groups = None if by is None else design.data.groupby(_keys(by), sort=True).ngroup().to_numpy()
    Wnew = np.column_stack([_trim_vector(W[:, m], lower, upper, strict, groups) for m in range(W.shape[1])])
    if isinstance(design, ReplicateDesign):
        return design.with_weights(Wnew[:, 0], Wnew[:, 1:], name=name)
    return design.with_weights(Wnew[:, 0], name=name)


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------
def kish_deff(weights: np.ndarray | pd.Series) -> float:
    """Kish's design effect due to unequal weighting,
    :math:`1 + \\mathrm{cv}^2 = n\\sum w^2 / (\\sum w)^2` (Kish 1992)."""
    w = np.asarray(weights, float)
    return float(len(w) * np.sum(w**2) / np.sum(w) ** 2)


def effective_n(weights: np.ndarray | pd.Series) -> float:
    """Kish's effective sample size :math:`(\\sum w)^2 / \\sum w^2 = n / \\mathrm{deff}_w`."""
    w = np.asarray(weights, float)
    return float(np.sum(w) ** 2 / np.sum(w**2))


def weight_diagnostics(data: pd.DataFrame | Design, weights: str | Sequence[str] | None = None,
                       by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Weight summaries per group and weight column: n, sum, min, median, max, max/min, cv,
    Kish deff due to weighting and effective n.

    Parameters
    ----------
    data
        A DataFrame or a design (then ``weights`` defaults to its weight column).
    weights
        Weight column(s) (e.g. ``["w_base", "w_nr", "w_cal", "w_final"]``).
    by
        Group column(s), e.g. ``"unit_id"``; ``None`` = whole sample.

    Returns
    -------
    pandas.DataFrame
        Tidy: the ``by`` columns, ``weight``, ``n, sum, min, median, max, ratio_max_min, cv,
        deff_kish, n_eff``.
    """
    if isinstance(data, (SurveyDesign, ReplicateDesign)):
        if weights is None:
            frame = data.data.assign(weight=data.w)
            weights = ["weight"]
        else:
            frame = data.data
    else:
        frame = data
        if weights is None:
            raise ValueError("name the weight column(s)")
    wcols = _keys(weights)
    missing = [c for c in wcols if c not in frame.columns]
    if missing:
        raise ValueError(f"weight column(s) {missing} not in the data")
    bys = _keys(by) if by is not None else []
    long = frame[bys + wcols].melt(id_vars=bys, var_name="weight", value_name="w")
    g = long.groupby(bys + ["weight"], sort=True, observed=True)["w"]
    out = pd.DataFrame({
        "n": g.size(),
        "sum": g.sum(),
        "min": g.min(),
        "median": g.median(),
        "max": g.max(),
        "sumsq": long.assign(w2=long["w"] ** 2).groupby(bys + ["weight"], sort=True, observed=True)["w2"].sum(),
    })
    out["ratio_max_min"] = out["max"] / out["min"]
    out["deff_kish"] = out["n"] * out["sumsq"] / out["sum"] ** 2
    out["cv"] = np.sqrt(np.maximum(out["deff_kish"] - 1, 0))
    out["n_eff"] = out["sum"] ** 2 / out["sumsq"]
    out = out.drop(columns="sumsq").reset_index()
    order = {c: i for i, c in enumerate(wcols)}
    out = out.sort_values(bys + ["weight"], key=lambda s: s.map(order) if s.name == "weight" else s)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# the SIPAS year
# --------------------------------------------------------------------------------------------
def annual_design(responses: pd.DataFrame, sample: pd.DataFrame, frame_counts: pd.DataFrame,
                  nonresponse_cells: Sequence[str] = ("unit_id", "survey_mode"),
                  calibration: str = "poststratify", trim_ratio: float | None = 3.5,
                  min_cell: int = 1, lonely_psu: str = "adjust", unmatched: str = "drop") -> SurveyDesign:
    """The calibrated design of a SIPAS year; used by the weighting and index stages alike.

    Steps (columns added to the returned design's data):

    1. ``w_base`` = 1 / ``incl_prob`` of the questionnaire in ``sample.csv`` (joined on ``form_id``).
    2. ``w_nr`` -- non-response adjustment within ``unit_id x survey_mode`` cells of the issued
       sample (issued questionnaires vs. accepted responses, :func:`nonresponse_adjust`); a cell
       without any accepted response is pooled within its unit.
    3. ``w_cal`` -- calibration to the frame's ``unit_id x field`` counts (``frame_counts.csv``
       summed over channels): ``calibration="poststratify"`` (default; exact cell counts),
       ``"rake"`` (unit and field margins) or ``"none"`` (``w_cal = w_nr``). A unit's field cell
       with fewer than ``min_cell`` respondents is merged into the unit's largest field cell
       (``cal_cell`` says which).
    4. ``w_final`` -- trimming within unit at ``trim_ratio`` x the unit's median weight
       (:func:`trim` with ``by="unit_id"``, so unit totals are kept); ``None`` to skip.

    Design: strata = ``unit_id`` (column ``stratum``), PSU = the questionnaire (``psu`` =
    ``form_id``), fpc = the unit's frame count (``N_unit``). The sample is drawn by
    unit x field strata; declaring units as strata and post-stratifying to unit x field cells
    recovers the field stratification in the variance (post-stratification residuals remove the
    between-field variation) while avoiding single-respondent strata in small unit x field cells.
    SEs from the returned design account for the calibration (R's ``postStratify``/``rake``).

    The same design together with its specification (to save and rebuild it) is
    :func:`build_annual_design`.

    Parameters
    ----------
    responses
        Accepted responses (``results/responses.parquet``): ``form_id, unit_id, field, ...``.
        A response whose ``form_id`` is not in the sample cannot be weighted: it is left out with
        a ``RuntimeWarning`` (``unmatched="drop"``, default) or raises (``unmatched="error"``).
    sample
        ``sample.csv``: ``form_id, unit_id, field, survey_mode, incl_prob, ...``.
    frame_counts
        ``frame_counts.csv``: ``unit_id, field, channel, N``.

    Returns
    -------
    SurveyDesign
        Weights ``w_final``; data = responses + ``w_base, w_nr, w_cal, w_final, stratum, psu,
        N_unit, nr_cell, cal_cell``.
    """
    return build_annual_design(responses, sample, frame_counts, nonresponse_cells=nonresponse_cells,
                               calibration=calibration, trim_ratio=trim_ratio, min_cell=min_cell,
                               lonely_psu=lonely_psu, unmatched=unmatched, _stacklevel=3).design


# --------------------------------------------------------------------------------------------
# the design as data: a specification that is saved and rebuilds the design exactly
# --------------------------------------------------------------------------------------------
#: Version of the :class:`DesignSpec` dictionary layout (``to_dict``/``from_dict``).
DESIGN_SPEC_VERSION = 1
CALIBRATION_KINDS = ("poststratify", "rake", "none")
#: Why a unit was left out of weighting (:func:`units_without_usable_forms`).
EXCLUSION_REASONS = ("no_responses", "all_blank")


def _native(value):
    """A JSON-serialisable Python scalar (numpy scalars -> int/float/str/bool)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class CalibrationMargin:
    """One population margin of a calibration: the cell columns and the population count of each cell.

    Attributes
    ----------
    columns
        Cell column(s) of the design data, e.g. ``("unit_id", "cal_cell")``.
    cells
        One tuple of category values per population cell (same order as ``counts``).
    counts
        Population count N of each cell (from ``frame_counts.csv``).
    """

    columns: tuple[str, ...]
    cells: tuple[tuple, ...]
    counts: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.cells) != len(self.counts):
            raise ValueError(f"calibration margin {self.columns}: {len(self.cells)} cells but {len(self.counts)} counts")
        if any(len(c) != len(self.columns) for c in self.cells):
            raise ValueError(f"calibration margin {self.columns}: every cell needs {len(self.columns)} value(s)")

    @classmethod
    def from_table(cls, columns: Sequence[str], table: pd.DataFrame, count: str = "N") -> "CalibrationMargin":
        """From a DataFrame with the cell columns and the count column ``count``."""
        cols = tuple(columns)
        cells = tuple(tuple(_native(v) for v in row) for row in table[list(cols)].itertuples(index=False, name=None))
        return cls(cols, cells, tuple(float(v) for v in table[count].to_numpy(float)))

    def table(self) -> pd.DataFrame:
        """The population table: the cell columns + ``N``, one row per cell."""
        out = pd.DataFrame(list(self.cells), columns=list(self.columns))
        out["N"] = np.asarray(self.counts, float)
        return out

    @property
    def total(self) -> float:
        """Population total of the margin."""
        return float(np.sum(self.counts))

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "cells": [list(c) for c in self.cells], "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "CalibrationMargin":
        return cls(tuple(d["columns"]), tuple(tuple(c) for c in d["cells"]), tuple(float(v) for v in d["counts"]))


@dataclass(frozen=True)
class DesignSpec:
    """The full specification of a year's design, as data (saved by the weighting stage as
    ``results/design.json``; every later stage rebuilds the design from it with
    :func:`design_from_spec`, so no stage re-derives the weighting).

    Steps and columns (the column names are those of ``responses_weighted``):

    1. base weight ``base_weight`` = 1 / ``inclusion_probability`` (sample.csv);
    2. non-response adjustment ``nonresponse_weight`` within ``nonresponse_cells`` of the issued
       sample, an empty cell pooled within ``nonresponse_fallback``;
    3. calibration ``calibration`` (``poststratify`` | ``rake`` | ``none``) of the non-response
       weights to ``calibration_margins`` (cells and population counts), raking with
       ``calibration_maxit`` sweeps and tolerance ``calibration_epsilon`` (relative to the weight
       total when below 1); for post-stratification a unit's field cell with fewer than
       ``min_cell`` respondents is merged into the unit's largest field cell (column
       ``cell_column``; raking calibrates to the unit and field margins, so ``min_cell`` does not
       apply to it);
    4. trimming: weights above ``trim_ratio`` x the median calibrated weight of their
       ``trim_by`` group are capped and the excess shared within the group (R ``trimWeights``,
       strict); ``trim_ratio=None``: no trimming. The result is ``weights``.

    Variance: strata ``strata`` (built from ``strata_from``), PSUs ``psu`` (from ``psu_from``),
    finite-population correction ``fpc`` = the population count of the stratum (``fpc_from``),
    lonely-PSU rule ``lonely_psu``; standard errors use the calibration residuals (R ``survey``).

    ``excluded_units`` lists ``(unit_id, reason)`` of units left out of weighting (no usable
    questionnaire); ``n_respondents`` and ``population_total`` are the weighted rows and the
    frame total of the weighted units (a check when the design is rebuilt).
    """

    weights: str = "w_final"
    strata: str = "stratum"
    strata_from: tuple[str, ...] = ("unit_id",)
    psu: str = "psu"
    psu_from: tuple[str, ...] = ("form_id",)
    fpc: str | None = "N_unit"
    fpc_from: str = "population count of the stratum in frame_counts.csv"
    lonely_psu: str = "adjust"
    base_weight: str = "w_base"
    inclusion_probability: str = "incl_prob"
    nonresponse_weight: str = "w_nr"
    nonresponse_cells: tuple[str, ...] = ("unit_id", "survey_mode")
    nonresponse_fallback: tuple[str, ...] = ("unit_id",)
    calibration: str = "poststratify"
    calibration_weight: str = "w_cal"
    calibration_margins: tuple[CalibrationMargin, ...] = ()
    calibration_maxit: int = 100
    calibration_epsilon: float = 1e-8
    min_cell: int = 1
    cell_column: str = "cal_cell"
    trim_ratio: float | None = 3.5
    trim_by: tuple[str, ...] = ("unit_id",)
    excluded_units: tuple[tuple[str, str], ...] = ()
    n_respondents: int = 0
    population_total: float = 0.0

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_KINDS:
            raise ValueError(f"calibration must be one of {CALIBRATION_KINDS}, got {self.calibration!r}")
        if self.calibration != "none" and not self.calibration_margins:
            raise ValueError(f"calibration {self.calibration!r} needs at least one margin")
        if self.calibration == "poststratify" and len(self.calibration_margins) != 1:
            raise ValueError("post-stratification has exactly one margin (the cross-classified cells)")
        if self.trim_ratio is not None and not self.trim_ratio > 1:
            raise ValueError(f"trim_ratio must exceed 1 (a multiple of the group's median weight), got {self.trim_ratio}")
        if self.min_cell < 1:
            raise ValueError(f"min_cell must be at least 1, got {self.min_cell}")
        bad = [r for _, r in self.excluded_units if r not in EXCLUSION_REASONS]
        if bad:
            raise ValueError(f"unknown exclusion reason(s) {bad}; expected one of {EXCLUSION_REASONS}")

    def to_dict(self) -> dict:
        """A JSON-serialisable dictionary (``json.dumps(spec.to_dict())``)."""
        out: dict = {"version": DESIGN_SPEC_VERSION}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "calibration_margins":
                v = [m.to_dict() for m in v]
            elif f.name == "excluded_units":
                v = [list(e) for e in v]
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = _native(v)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "DesignSpec":
        """Inverse of :meth:`to_dict`; an unknown key or version is an error, never ignored."""
        d = dict(d)
        version = d.pop("version", None)
        if version != DESIGN_SPEC_VERSION:
            raise ValueError(f"design specification version {version!r}; this library reads version {DESIGN_SPEC_VERSION}")
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"design specification has unknown key(s) {unknown}")
        kw = {}
        for k, v in d.items():
            if k == "calibration_margins":
                v = tuple(CalibrationMargin.from_dict(m) for m in v)
            elif k == "excluded_units":
                v = tuple(tuple(e) for e in v)
            elif isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)


@dataclass(frozen=True)
class AnnualDesign:
    """A year's design and the specification that rebuilds it (:func:`build_annual_design`)."""

    design: SurveyDesign
    spec: DesignSpec


def units_without_usable_forms(responses: pd.DataFrame, sample: pd.DataFrame,
                               items: Sequence[str]) -> pd.DataFrame:
    """Units of the issued sample without a single usable questionnaire.

    A questionnaire is usable when at least one of ``items`` is answered. A unit is listed with
    reason ``no_responses`` (no accepted questionnaire at all) or ``all_blank`` (accepted
    questionnaires, none with an answered item). Such a unit cannot be weighted (its issued
    weight has no respondent to go to) and is left out of weighting and ranking, with its reason.

    Returns
    -------
    pandas.DataFrame
        ``unit_id, reason, n_issued, n_accepted``, one row per such unit, sorted by ``unit_id``.
    """
    items = [c for c in items if c in responses.columns]
    issued = sample.groupby("unit_id").size()
    accepted = responses.groupby("unit_id").size().reindex(issued.index, fill_value=0)
    answered = (responses[items].notna().any(axis=1) if items else pd.Series(False, index=responses.index))
    usable = answered.groupby(responses["unit_id"]).sum().reindex(issued.index, fill_value=0)
    out = pd.DataFrame({"unit_id": issued.index.astype(str), "n_issued": issued.to_numpy(np.int64),
                        "n_accepted": accepted.to_numpy(np.int64), "usable": usable.to_numpy()})
    out = out[out["usable"] == 0].copy()
    out.insert(1, "reason", np.where(out["n_accepted"] == 0, "no_responses", "all_blank"))
    return out.drop(columns="usable").sort_values("unit_id").reset_index(drop=True)


def _matched_to_sample(smp: pd.DataFrame, resp: pd.DataFrame, items, unmatched: str, stacklevel: int):
    """Responses matched one to one to the issued sample, and units without a usable form left out.

    Returns ``(sample, responses, excluded)`` with ``excluded`` the ``(unit_id, reason)`` pairs of
    :func:`units_without_usable_forms` (when ``items`` is given). Shared by the city and the
    national designs.
    """
    if smp["form_id"].duplicated().any():
        raise ValueError("sample.csv lists a form_id twice")
    if resp["form_id"].duplicated().any():
        raise ValueError(f"responses contain duplicated form_id(s), e.g. {resp.form_id[resp.form_id.duplicated()].iloc[0]!r}")
    unknown = ~is_in(resp["form_id"], smp["form_id"])
    if unknown.any():
        msg = (f"{int(unknown.sum())} response(s) have a form_id not in the sample "
               f"(e.g. {resp.form_id[unknown].iloc[0]!r}); they cannot be weighted")
        if unmatched == "error":
            raise ValueError(msg)
        warnings.warn(msg + " and are left out", RuntimeWarning, stacklevel=stacklevel)
        resp = resp[~unknown]
    excluded: tuple[tuple[str, str], ...] = ()
    if items is not None:
        unusable = units_without_usable_forms(resp, smp, items)
        if len(unusable):
            excluded = tuple(zip(unusable["unit_id"], unusable["reason"]))
            drop = set(unusable["unit_id"])
            smp = smp[~smp["unit_id"].astype(str).isin(drop)]
            resp = resp[~resp["unit_id"].astype(str).isin(drop)]
            if resp.empty:
                raise ValueError(f"no unit has a usable questionnaire ({len(drop)} unit(s) without one)")
    return smp, resp, excluded


def build_annual_design(responses: pd.DataFrame, sample: pd.DataFrame, frame_counts: pd.DataFrame,
                        nonresponse_cells: Sequence[str] = ("unit_id", "survey_mode"),
                        calibration: str = "poststratify", trim_ratio: float | None = 3.5,
                        min_cell: int = 1, lonely_psu: str = "adjust", unmatched: str = "drop",
                        items: Sequence[str] | None = None, _stacklevel: int = 2) -> AnnualDesign:
    """:func:`annual_design` together with its :class:`DesignSpec` (same arguments, same weights).

    With ``items`` (the rated item columns), units without a usable questionnaire
    (:func:`units_without_usable_forms`) are left out of weighting -- their sample rows, responses
    and frame counts -- and listed in ``spec.excluded_units``, so one such unit does not stop the
    weighting of the others. Without ``items`` nothing is excluded (a unit without respondents
    then raises, as in :func:`annual_design`).

    The design is built by :func:`design_from_spec` from the non-response-adjusted data and the
    specification, so the design a stage uses and the design rebuilt from the saved specification
    are computed by the same code.
    """
    for col in ("form_id", "unit_id", "field"):
        if col not in responses.columns:
            raise ValueError(f"responses lack column {col!r}")
    for col in ("form_id", "unit_id", "incl_prob", *nonresponse_cells):
        if col not in sample.columns:
            raise ValueError(f"sample lacks column {col!r}")
    if not {"unit_id", "field", "N"} <= set(frame_counts.columns):
        raise ValueError("frame_counts needs columns unit_id, field, N")
    if unmatched not in ("drop", "error"):
        raise ValueError(f"unmatched must be 'drop' or 'error', got {unmatched!r}")
    if calibration not in CALIBRATION_KINDS:
        raise ValueError(f"calibration must be one of {CALIBRATION_KINDS}, got {calibration!r}")
    if trim_ratio is not None and trim_ratio <= 1:
        raise ValueError(f"trim_ratio must exceed 1 (a multiple of the unit's median weight), got {trim_ratio}")
    smp = sample.copy()
    smp["form_id"] = smp["form_id"].astype(str)
    resp = responses.copy()
    resp["form_id"] = resp["form_id"].astype(str)
    smp, resp, excluded = _matched_to_sample(smp, resp, items, unmatched, _stacklevel + 1)
    smp = base_weights(smp)
    smp["responded"] = is_in(smp["form_id"], resp["form_id"])
    smp = nonresponse_adjust(smp, "responded", list(nonresponse_cells), fallback="unit_id")
    keep_cols = ["form_id", "w_base", "w_nr", "nr_cell"] + (["survey_mode"] if "survey_mode" not in resp.columns else [])
    data = resp.merge(smp[keep_cols], on="form_id", how="left", validate="one_to_one")

    counts = frame_counts.groupby(["unit_id", "field"], as_index=False)["N"].sum()
    unknown_units = sorted(set(data.unit_id) - set(counts.unit_id))
    if unknown_units:
        raise ValueError(f"frame_counts has no counts for unit(s) {unknown_units[:5]}")
    counts = counts[counts.unit_id.isin(data.unit_id.unique())]
    N_unit = counts.groupby("unit_id")["N"].sum()
    data["stratum"] = data["unit_id"]
    data["psu"] = data["form_id"]
    data["N_unit"] = data["unit_id"].map(N_unit).astype(float)

    # collapse thin unit x field cells into the unit's largest cell
    resp_n = data.groupby(["unit_id", "field"]).size()
    cnt = counts.set_index(["unit_id", "field"])["N"]
    nresp = resp_n.reindex(cnt.index, fill_value=0)
    largest = nresp.groupby(level=0).idxmax().map(lambda t: t[1])
    thin = nresp < min_cell
    target = pd.Series(np.where(thin, cnt.index.get_level_values(0).map(largest), cnt.index.get_level_values(1)),
                       index=cnt.index)
    tmap = target.rename("cal_cell").reset_index()
    data = data.merge(tmap, on=["unit_id", "field"], how="left", validate="many_to_one")
    data["cal_cell"] = data["cal_cell"].fillna(data["field"])
    pop_cells = (pd.DataFrame({"unit_id": cnt.index.get_level_values(0), "cal_cell": target.to_numpy(),
                               "N": cnt.to_numpy()}).groupby(["unit_id", "cal_cell"], as_index=False)["N"].sum())

    if calibration == "poststratify":
        margins = (CalibrationMargin.from_table(("unit_id", "cal_cell"), pop_cells),)
    elif calibration == "rake":
        unit_m = pop_cells.groupby("unit_id", as_index=False)["N"].sum()
        field_m = counts.groupby("field", as_index=False)["N"].sum()
        margins = (CalibrationMargin.from_table(("unit_id",), unit_m),
                   CalibrationMargin.from_table(("field",), field_m))
    else:
        margins = ()
    spec = DesignSpec(lonely_psu=lonely_psu, nonresponse_cells=tuple(nonresponse_cells), calibration=calibration,
                      calibration_margins=margins, min_cell=int(min_cell),
                      trim_ratio=None if trim_ratio is None else float(trim_ratio), excluded_units=excluded,
                      n_respondents=int(len(data)), population_total=float(N_unit.sum()))
    return AnnualDesign(design_from_spec(data, spec, check=False), spec)


def design_from_spec(weighted_responses: pd.DataFrame, spec: DesignSpec, check: bool = True) -> SurveyDesign:
    """Rebuild a year's design from its weighted responses and its :class:`DesignSpec`.

    Starts from the non-response-adjusted weights (``spec.nonresponse_weight``) and the design
    columns (strata, PSU, fpc, calibration cells) of ``weighted_responses`` and repeats the
    calibration and trimming of the specification, so the returned design carries the same
    weights *and* the same calibration steps (its standard errors account for the calibration,
    as R's ``survey``) as the design the weighting stage built.

    Parameters
    ----------
    weighted_responses
        ``results/responses_weighted.parquet`` (or the data the weighting built).
    spec
        The design specification (``results/design.json``).
    check
        When the table already holds the calibrated and final weights, verify that the rebuilt
        weights equal them (relative difference <= 1e-9) and that the row count matches the spec.

    Raises
    ------
    ValueError
        A design column missing, or a table and specification that do not belong together.
    """
    data = weighted_responses
    need = [spec.nonresponse_weight, spec.strata, spec.psu, *([spec.fpc] if spec.fpc else []),
            *(c for m in spec.calibration_margins for c in m.columns), *spec.trim_by]
    missing = sorted(set(c for c in need if c not in data.columns))
    if missing:
        raise ValueError(f"the weighted responses lack design column(s) {missing}")
    if check and spec.n_respondents and len(data) != spec.n_respondents:
        raise ValueError(f"the design specification is for {spec.n_respondents} respondents, the table has {len(data)}")
    design = SurveyDesign(data, weights=spec.nonresponse_weight, strata=spec.strata, psu=spec.psu, fpc=spec.fpc,
                          lonely_psu=spec.lonely_psu)
    if spec.calibration == "poststratify":
        m = spec.calibration_margins[0]
        design = poststratify(design, list(m.columns), m.table(), name=spec.calibration_weight)
    elif spec.calibration == "rake":
        margins = {(m.columns[0] if len(m.columns) == 1 else m.columns): m.table() for m in spec.calibration_margins}
        design = rake(design, margins, maxit=spec.calibration_maxit, epsilon=spec.calibration_epsilon,
                      name=spec.calibration_weight)
    else:
        design = design.with_weights(design.w, name=spec.calibration_weight)
    if spec.trim_ratio is not None:
        by = list(spec.trim_by)
        groups = design.data.groupby(by, sort=True).ngroup().to_numpy()
        upper = spec.trim_ratio * design.data.groupby(by)[spec.calibration_weight].transform("median").to_numpy()
        design = design.with_weights(_trim_vector(design.w, -np.inf, upper, True, groups), name=spec.weights)
    else:
        design = design.with_weights(design.w, name=spec.weights)
    if check:
        for col in (spec.calibration_weight, spec.weights):
            if col in weighted_responses.columns:
                stored = pd.to_numeric(weighted_responses[col], errors="coerce").to_numpy(float)
                diff = np.abs(design.data[col].to_numpy(float) - stored) / np.maximum(np.abs(stored), 1e-300)
                if not np.all(diff <= 1e-9):
                    raise ValueError(f"column {col!r} of the weighted responses differs from the weights the design "
                                     f"specification rebuilds (largest relative difference {np.nanmax(diff):.3g}); "
                                     "the table and the specification do not belong to the same run")
    return design


# --------------------------------------------------------------------------------------------
# the ministry's national survey: two-stage sample, PSU = commune, strata = province
# --------------------------------------------------------------------------------------------
#: Design kinds of the weighting stage (settings ``weighting.design``).
DESIGN_KINDS = ("city", "national")
#: Calibrations of the national design: to the provinces' population totals, or none.
NATIONAL_CALIBRATIONS = ("poststratify", "none")
#: Columns of a national sample's first-stage frame (``psu_frame.csv``): every commune of every
#: surveyed province, its measure of size and its first-stage inclusion probability.
PSU_FRAME_COLUMNS = ("unit_id", "commune_id", "size", "incl_prob_psu", "selected")


def build_national_design(responses: pd.DataFrame, sample: pd.DataFrame, psu_frame: pd.DataFrame,
                          frame_counts: pd.DataFrame, calibration: str = "poststratify",
                          trim_ratio: float | None = None, lonely_psu: str = "adjust", unmatched: str = "drop",
                          items: Sequence[str] | None = None) -> AnnualDesign:
    """The design of the ministry's national SIPAS: provinces as strata, communes as PSUs.

    Within each province *h* (the reporting unit, ``unit_id``) communes are drawn with probability
    proportional to size (:math:`\\pi_{hi}` in ``psu_frame.incl_prob_psu``), then respondents
    within each selected commune (:math:`\\pi_{k|hi}`); ``sample.incl_prob`` is the product
    :math:`\\pi_k = \\pi_{hi}\\,\\pi_{k|hi}` and the sample's ``stratum`` names the commune
    (the second-stage stratum is the selected commune).

    Steps (columns of the returned design's data):

    1. ``w_base`` = 1 / ``incl_prob``;
    2. ``w_nr`` -- non-response adjustment within province (weighting classes = ``unit_id``,
       :func:`nonresponse_adjust`);
    3. ``w_cal`` -- post-stratification to the province's population total (the sum of
       ``frame_counts.N`` over the province; ``calibration="poststratify"``) or none;
    4. ``w_final`` -- trimming within province at ``trim_ratio`` x its median weight (``None``: none).

    Variance: strata = province (``stratum``), PSU = commune (``commune_id``; the ``psu`` column
    keeps the questionnaire, as in the city design's table, and ``spec.psu`` names ``commune_id``),
    fpc = the number of communes in the province (``N_psu``, counted in ``psu_frame``), i.e. R's
    ``svydesign(ids = ~commune, strata = ~province, fpc = ~n_communes, weights = ~w)``: the
    ultimate-cluster estimator, which carries the second-stage variance through the PSU totals
    (Särndal, Swensson & Wretman 1992, sec. 4.6) with the first-stage finite-population correction
    :math:`1 - m_h/M_h`.

    Parameters
    ----------
    responses
        Accepted responses: ``form_id, unit_id, ...`` (``unit_id`` = province).
    sample
        Issued forms: ``form_id, unit_id, stratum`` (the commune), ``incl_prob``.
    psu_frame
        :data:`PSU_FRAME_COLUMNS`: one row per commune of each province (selected or not).
    frame_counts
        ``unit_id, N`` (further columns are summed over): the provinces' population totals, the
        post-stratification targets and ``N_unit``.
    items
        Rated item columns: provinces without a usable questionnaire are left out and listed in
        ``spec.excluded_units`` (as :func:`build_annual_design`).

    Raises
    ------
    ValueError
        A missing column, a form whose commune is not a selected commune of its province in
        ``psu_frame``, an unknown calibration, or no usable province.
    """
    if calibration not in NATIONAL_CALIBRATIONS:
        raise ValueError(f"the national design calibrates with one of {NATIONAL_CALIBRATIONS}, got {calibration!r}")
    if trim_ratio is not None and trim_ratio <= 1:
        raise ValueError(f"trim_ratio must exceed 1 (a multiple of the province's median weight), got {trim_ratio}")
    for col in ("form_id", "unit_id"):
        if col not in responses.columns:
            raise ValueError(f"responses lack column {col!r}")
    for col in ("form_id", "unit_id", "stratum", "incl_prob"):
        if col not in sample.columns:
            raise ValueError(f"sample lacks column {col!r}")
    missing = [c for c in PSU_FRAME_COLUMNS if c not in psu_frame.columns]
    if missing:
        raise ValueError(f"psu_frame lacks column(s) {missing}")
    if "commune_id" in responses.columns:
        raise ValueError("responses already hold a column 'commune_id'; the commune comes from the sample")
    frame = psu_frame.assign(unit_id=psu_frame["unit_id"].astype(str), commune_id=psu_frame["commune_id"].astype(str))
    if frame["commune_id"].duplicated().any():
        raise ValueError(f"psu_frame lists commune {frame.commune_id[frame.commune_id.duplicated()].iloc[0]!r} twice")
    smp = sample.assign(form_id=sample["form_id"].astype(str), unit_id=sample["unit_id"].astype(str),
                        commune_id=sample["stratum"].astype(str))
    selected = frame.loc[frame["selected"].astype(bool)].set_index("commune_id")["unit_id"]
    province_of = smp["commune_id"].map(selected)
    off = province_of.isna() | (province_of != smp["unit_id"])
    if off.any():
        row = smp.loc[off].iloc[0]
        raise ValueError(f"form {row.form_id}: commune {row.commune_id!r} is not a selected commune of province "
                         f"{row.unit_id!r} in psu_frame")
    resp = responses.assign(form_id=responses["form_id"].astype(str))
    smp, resp, excluded = _matched_to_sample(smp, resp, items, unmatched, 3)
    smp = base_weights(smp)
    smp["responded"] = is_in(smp["form_id"], resp["form_id"])
    smp = nonresponse_adjust(smp, "responded", ["unit_id"])
    keep = ["form_id", "w_base", "w_nr", "nr_cell", "commune_id"] + \
        (["survey_mode"] if "survey_mode" in smp.columns and "survey_mode" not in resp.columns else [])
    data = resp.merge(smp[keep], on="form_id", how="left", validate="one_to_one")
    n_communes = frame.groupby("unit_id").size()
    data["stratum"] = data["unit_id"].astype(str)
    data["psu"] = data["form_id"]  # the questionnaire, as in the city table; the design's PSU is commune_id
    data["N_psu"] = data["stratum"].map(n_communes).astype(float)
    totals = (frame_counts.assign(unit_id=frame_counts["unit_id"].astype(str))
              .groupby("unit_id", as_index=False)["N"].sum())
    totals = totals[totals["unit_id"].isin(data["stratum"].unique())]
    lacking = sorted(set(data["stratum"]) - set(totals["unit_id"]))
    if lacking:
        raise ValueError(f"frame_counts has no population total for province(s) {lacking[:5]}")
    data["N_unit"] = data["stratum"].map(totals.set_index("unit_id")["N"]).astype(float)
    if "field" in data.columns:
        data["cal_cell"] = data["field"]  # no calibration cells within a province: the field itself
    margins = (CalibrationMargin.from_table(("unit_id",), totals),) if calibration == "poststratify" else ()
    population_total = float(totals["N"].sum())
    spec = DesignSpec(strata_from=("unit_id",), psu="commune_id", psu_from=("commune_id",), fpc="N_psu",
                      fpc_from="number of communes in the province (psu_frame.csv)", lonely_psu=lonely_psu,
                      nonresponse_cells=("unit_id",), nonresponse_fallback=("unit_id",), calibration=calibration,
                      calibration_margins=margins, trim_ratio=None if trim_ratio is None else float(trim_ratio),
                      trim_by=("unit_id",), excluded_units=excluded, n_respondents=int(len(data)),
                      population_total=population_total)
    return AnnualDesign(design_from_spec(data, spec, check=False), spec)
