"""Design-based estimation for complex surveys, exact to R's ``survey`` package.

A :class:`SurveyDesign` describes the sample once (weights, strata, first- and second-stage
clusters, finite-population corrections, the lonely-PSU rule); every estimator takes it:

* :func:`mean`, :func:`total`, :func:`proportion`, :func:`ratio` -- many columns and many domains
  in one vectorized pass, returned as one tidy DataFrame
  (``variable``, the ``by`` columns, ``estimate, se, ci_low, ci_high, deff, n, n_eff, df``);
* :func:`total_covariance` -- the primitive every composite measure is linearized through;
* :class:`ReplicateDesign` / :func:`as_replicate` -- jackknife (JK1, JKn) and Rao-Wu rescaling
  bootstrap replicate weights; the estimators above accept it too, and
  :func:`replicate_estimate` gives an SE for any statistic.

Variance (Taylor linearization, R ``svyrecvar``)
------------------------------------------------
For weighted scores :math:`x_i = w_i z_i` the PSU totals :math:`t_{hi} = \\sum_{j \\in (h,i)} x_j`
give

.. math:: \\hat V = \\sum_h (1-f_h)\\,\\frac{n_h}{n_h-1}\\sum_{i=1}^{n_h}(t_{hi}-\\bar t_h)(t_{hi}-\\bar t_h)^\\top
          \\; + \\sum_h \\frac{n_h}{N_h}\\sum_{i} (1-f_{2,hi})\\frac{m_{hi}}{m_{hi}-1}
          \\sum_{k}(t_{hik}-\\bar t_{hi})(t_{hik}-\\bar t_{hi})^\\top

(the second-stage term only when ``ssu`` and both fpcs are given, as R). Domains keep the full
design: a domain's scores are zero outside it, so PSUs without domain members still count. For
calibrated designs (post-stratified, raked, GREG-calibrated, see :mod:`sipas_lib.weighting`) the
scores are first replaced by calibration residuals exactly as R's ``svyrecvar`` does.

Conventions (all as R ``survey`` 4.1)
-------------------------------------
* ``na_rm``: missing values are dropped per variable (a separate ``svymean(~y, na.rm=TRUE)`` per
  column, i.e. a domain of the respondents who answered), not listwise across columns.
* CIs of ``mean``/``total``/``ratio`` use the normal quantile (R ``confint`` default ``df=Inf``);
  ``proportion`` uses Student's t with ``degf`` (R ``svyciprop``). Pass ``df="design"`` (t with the
  design degrees of freedom) or a number to override. ``df`` is reported per row.
* ``degf`` = number of PSUs with non-zero weight minus number of strata, counted within the domain
  (R's ``degf`` of the ``svyby`` subset design).
* ``deff`` is R's ``deff=TRUE`` (without-replacement SRS of the same size: ``(N-n)/(N n)``).
* ``n`` = respondents with a non-missing value and non-zero weight; ``n_eff = n / deff`` (missing
  when the variance is 0, e.g. everybody satisfied).
* PSU ids are nested in strata (R's ``nest=TRUE``).
* ``proportion(method="beta")`` rescales the effective size with R's ``nrow(design)``: the rows of
  the domain for an uncalibrated design, all rows for a calibrated one (R subsets uncalibrated
  designs but only zero-weights calibrated ones). When the estimate is exactly 0 or 1, ``logit``,
  ``beta`` and ``wilson`` return the Clopper-Pearson bound on the respondent count (R returns a
  degenerate or missing interval).
* ``lonely_psu="average"`` at the second stage (a PSU with one sampled SSU): the other PSUs'
  second-stage terms are scaled up by (PSUs / PSUs with >= 2 SSUs); R returns NaN there.

Where R's numbers are reproduced (tests/test_estimation.py, tests/test_weighting.py; relative
difference <= 1e-8): svymean, svytotal, svyby, svyratio, svyciprop (logit, beta), deff, degf,
vcov(svytotal), as.svrepdesign (JK1, JKn), postStratify, rake, calibrate (linear), trimWeights, on
stratified, one- and two-stage cluster designs, all lonely-PSU rules, calibrated Taylor and
replicate designs. The Rao-Wu bootstrap is random (R's RNG differs) and is checked by its
properties instead.

Speed: the estimators never build an n x (domains x variables) score matrix. PSU x domain sums of
``w y`` and ``w x`` are formed in one pass per column (``numpy.bincount``); linearized scores are
linear in them. Calibration residuals are carried as low-rank corrections ``x - H B`` whose
coefficients ``B`` are found in the small space of calibration cells (R's 10 raking sweeps included).
Full covariances across domains (and variances under calibration) are formed from sparse PSU totals:
each PSU is non-zero only in the domains of its rows and of its calibration cells, so a national year
(400,000 forms, 3,900 units, 19,500 post-strata within units) takes seconds and ~1 GB instead of an
11.7 GiB PSU x domain matrix; a calibration whose margins cut across all domains falls back to dense
blocks, and raises a clear ``ValueError`` where those would not fit in memory.

References
----------
Lumley, T. (2010). *Complex Surveys: A Guide to Analysis Using R*. Wiley.
Lumley, T. (2024). survey: analysis of complex survey samples. R package version 4.1.
Korn, E. L. & Graubard, B. I. (1998). Confidence intervals for proportions with small expected
numbers of positive counts estimated from survey data. *Survey Methodology* 24, 193-201.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse, stats

LONELY_PSU_RULES = ("fail", "adjust", "average", "certainty", "remove")
PROPORTION_METHODS = ("logit", "beta", "wilson", "wald")
RESULT_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "deff", "n", "n_eff", "df")
_CHUNK_BUDGET = 20_000_000  # floats per dense block of unit totals (160 MB)
_SPARSE_BUDGET = 80_000_000  # non-zeros of one sparse matrix of unit totals (~1 GB as CSR)
_DENSE_BUDGET = 150_000_000  # floats of the dense unit x (domain x score) matrix of a full covariance (1.2 GB)
_F_TINY = 1e-7  # R: a stratum whose sampling fraction is ~1 contributes no variance


# --------------------------------------------------------------------------------------------
# design structure
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Structure:
    """Integer codes and stage sizes derived once from a design's columns (internal)."""

    n: int
    stratum: np.ndarray  # (n,) stratum code
    n_strata: int
    psu: np.ndarray  # (n,) PSU code, nested in strata
    n_psu: int
    psu_stratum: np.ndarray  # (n_psu,)
    n_h: np.ndarray  # (n_strata,) sampled PSUs
    N_h: np.ndarray  # (n_strata,) population PSUs (inf without fpc)
    ssu: np.ndarray | None  # (n,) SSU code nested in PSU (None: no second stage variance)
    n_ssu: int
    ssu_psu: np.ndarray | None
    m_i: np.ndarray | None  # (n_psu,) sampled SSUs
    M_i: np.ndarray | None  # (n_psu,) population SSUs
    fpc_weights: np.ndarray | None  # weights implied by the fpcs when no weights are given

    @property
    def f_h(self) -> np.ndarray:
        """R's ``(N-n)/N`` (1 without fpc)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(np.isinf(self.N_h), 1.0, (self.N_h - self.n_h) / self.N_h)


def _codes(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.factorize(pd.Series(values).to_numpy(), sort=True)[0].astype(np.int64)


def _pair_codes(outer: np.ndarray, inner: pd.Series) -> np.ndarray:
    inner_codes = _codes(inner)
    key = outer.astype(np.int64) * (int(inner_codes.max()) + 1) + inner_codes
    return pd.factorize(key, sort=True)[0].astype(np.int64)


def _read_fpc(values: np.ndarray, sampled: np.ndarray, what: str, name: str, labels) -> np.ndarray:
    """Population sizes from an fpc column (population size or sampling fraction, as R)."""
    if np.any(~np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"fpc column {name!r} ({what}) has missing, zero or negative values")
    if np.all(values <= 1):
        pop = sampled / values
    elif np.all(values >= 1):
        pop = values.astype(float)
    else:
        raise ValueError(
            f"fpc column {name!r} ({what}) mixes sampling fractions (<= 1) and population sizes (> 1); "
            "give one or the other, as R's svydesign requires")
    bad = np.flatnonzero(pop < sampled - 1e-9)
    if bad.size:
        i = bad[0]
        raise ValueError(
            f"fpc column {name!r} is smaller than the sample: {what} {labels[i]!r} has {int(sampled[i])} "
            f"sampled units but a population of {pop[i]:g} (FPC implies >100% sampling)")
    return pop


def _build_structure(d: "SurveyDesign") -> _Structure:
    data = d.data
    n = len(data)
    if n == 0:
        raise ValueError("the design has no rows")
    for role in ("weights", "strata", "psu", "ssu", "fpc", "fpc2"):
        col = getattr(d, role)
        if col is not None and col not in data.columns:
            raise ValueError(f"{role} column {col!r} is not in the data (columns: {', '.join(map(str, data.columns[:20]))}...)")
        if col is not None and data[col].isna().any():
            bad = int(data[col].isna().sum())
            raise ValueError(f"{role} column {col!r} has {bad} missing value(s)")
    if d.lonely_psu not in LONELY_PSU_RULES:
        raise ValueError(f"lonely_psu must be one of {LONELY_PSU_RULES}, got {d.lonely_psu!r}")
    if d.ssu is not None and d.psu is None:
        raise ValueError("ssu (second-stage units) needs psu (first-stage units)")
    if d.fpc2 is not None and (d.ssu is None or d.fpc is None):
        raise ValueError("fpc2 needs ssu and the first-stage fpc")
    if d.ssu is not None and d.fpc is not None and d.fpc2 is None:
        raise ValueError("with ssu and fpc, give fpc2 too (R's svydesign needs an fpc for every stage); "
                         "drop ssu to use the ultimate-cluster (with-replacement) approximation")

    stratum = _codes(data[d.strata]) if d.strata is not None else np.zeros(n, np.int64)
    strata_labels = (pd.Series(data[d.strata].to_numpy()).drop_duplicates().sort_values().tolist()
                     if d.strata is not None else ["(all)"])
    n_strata = int(stratum.max()) + 1
    psu = _pair_codes(stratum, data[d.psu]) if d.psu is not None else np.arange(n, dtype=np.int64)
    n_psu = int(psu.max()) + 1
    psu_stratum = np.zeros(n_psu, np.int64)
    psu_stratum[psu] = stratum
    n_h = np.bincount(psu_stratum, minlength=n_strata).astype(float)

    N_h = np.full(n_strata, np.inf)
    if d.fpc is not None:
        fpc = pd.to_numeric(data[d.fpc], errors="coerce").to_numpy(float)
        # one value per stratum
        lo = np.full(n_strata, np.inf)
        hi = np.full(n_strata, -np.inf)
        np.minimum.at(lo, stratum, fpc)
        np.maximum.at(hi, stratum, fpc)
        varies = np.flatnonzero(hi - lo > 1e-9 * np.abs(hi))
        if varies.size:
            raise ValueError(f"fpc column {d.fpc!r} varies within stratum {strata_labels[varies[0]]!r}; "
                             "it must be constant in a stratum")
        N_h = _read_fpc(lo, n_h, "stratum", d.fpc, strata_labels)

    ssu = ssu_psu = m_i = M_i = None
    n_ssu = 0
    if d.ssu is not None and d.fpc is not None:
        ssu = _pair_codes(psu, data[d.ssu])
        n_ssu = int(ssu.max()) + 1
        ssu_psu = np.zeros(n_ssu, np.int64)
        ssu_psu[ssu] = psu
        m_i = np.bincount(ssu_psu, minlength=n_psu).astype(float)
        fpc2 = pd.to_numeric(data[d.fpc2], errors="coerce").to_numpy(float)
        lo = np.full(n_psu, np.inf)
        hi = np.full(n_psu, -np.inf)
        np.minimum.at(lo, psu, fpc2)
        np.maximum.at(hi, psu, fpc2)
        psu_labels = pd.Series(data[d.psu].to_numpy()).groupby(psu).first().tolist()
        varies = np.flatnonzero(hi - lo > 1e-9 * np.abs(hi))
        if varies.size:
            raise ValueError(f"fpc2 column {d.fpc2!r} varies within PSU {psu_labels[varies[0]]!r}")
        M_i = _read_fpc(lo, m_i, "PSU", d.fpc2, psu_labels)

    fpc_weights = None
    if d.weights is None and d.fpc is not None:
        fpc_weights = (N_h / n_h)[stratum]
        if M_i is not None:
            fpc_weights = fpc_weights * (M_i / m_i)[psu]

    st = _Structure(n, stratum, n_strata, psu, n_psu, psu_stratum, n_h, N_h, ssu, n_ssu, ssu_psu,
                    m_i, M_i, fpc_weights)

    if d.lonely_psu == "fail":
        lonely = np.flatnonzero((n_h == 1) & (st.f_h >= _F_TINY))
        if lonely.size:
            raise ValueError(
                f"stratum {strata_labels[lonely[0]]!r} has only one PSU ({lonely.size} such strata); "
                "choose lonely_psu='adjust', 'average', 'certainty' or 'remove' (R's survey.lonely.psu), "
                "or collapse strata")
        if m_i is not None:
            f2 = (M_i - m_i) / M_i
            lonely2 = np.flatnonzero((m_i == 1) & (f2 >= _F_TINY))
            if lonely2.size:
                raise ValueError(f"{lonely2.size} PSU(s) have only one sampled SSU at stage 2; choose "
                                 "another lonely_psu rule")
    return st


@dataclass(frozen=True, eq=False)
class SurveyDesign:
    """A probability sample: one small description handed to every estimator (R ``svydesign``).

    Parameters
    ----------
    data
        One row per respondent.
    weights
        Column of sampling weights (``1/pi``). ``None``: weights implied by the fpcs, else 1.
    strata
        Column of first-stage strata (``None``: unstratified).
    psu
        Column of first-stage clusters, nested in strata (``None``: each row is a PSU).
    ssu
        Column of second-stage units (used for variance only with ``fpc`` and ``fpc2``, as R).
    fpc, fpc2
        Finite population correction per stage: population size (number of PSUs in the stratum /
        SSUs in the PSU) or sampling fraction (all values <= 1), as R accepts.
    lonely_psu
        Rule for a stratum with a single PSU: ``fail`` (error at construction), ``adjust``
        (centre at the grand mean, i.e. zero), ``average`` (average of the other strata),
        ``certainty`` / ``remove`` (no contribution), as R's ``options(survey.lonely.psu)``.
    calibration
        Internal: calibration steps added by :mod:`sipas_lib.weighting`, used to replace scores by
        calibration residuals in variances (R's ``postStrata``). Do not set by hand.

    Raises
    ------
    ValueError
        Missing column, missing/negative weights, fpc smaller than the sample, mixed fpc kinds,
        fpc varying in a stratum, a single-PSU stratum under ``lonely_psu="fail"``.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1., 2, 3, 4], "w": [2., 2, 3, 3], "h": ["a", "a", "b", "b"]})
    >>> d = SurveyDesign(df, weights="w", strata="h")
    >>> float(mean(d, "y")["estimate"].iloc[0])
    2.7
    """

    data: pd.DataFrame
    weights: str | None = None
    strata: str | None = None
    psu: str | None = None
    ssu: str | None = None
    fpc: str | None = None
    fpc2: str | None = None
    lonely_psu: str = "fail"
    calibration: tuple = field(default=(), repr=False)
    _structure: _Structure | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, pd.DataFrame):
            raise ValueError("data must be a pandas DataFrame")
        st = self._structure if self._structure is not None else _build_structure(self)
        object.__setattr__(self, "_structure", st)
        if self.weights is not None:
            if self.weights not in self.data.columns:
                raise ValueError(f"weights column {self.weights!r} is not in the data")
            w = pd.to_numeric(self.data[self.weights], errors="coerce").to_numpy(float)
            if np.isnan(w).any():
                raise ValueError(f"weights column {self.weights!r} has {int(np.isnan(w).sum())} missing "
                                 "or non-numeric value(s)")
            if (w < 0).any():
                i = int(np.flatnonzero(w < 0)[0])
                raise ValueError(f"weights column {self.weights!r} has negative weights (row {i}: {w[i]:g})")
            if not np.isfinite(w).all():
                raise ValueError(f"weights column {self.weights!r} has infinite weights")
        elif st.fpc_weights is not None:
            w = st.fpc_weights
        else:
            w = np.ones(st.n)
        w.setflags(write=False)
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_cache", {})

    # -- convenience --------------------------------------------------------------------------
    @property
    def w(self) -> np.ndarray:
        """The sampling (calibrated) weights as a read-only float array."""
        return self._w  # type: ignore[attr-defined]

    @property
    def n(self) -> int:
        return self._structure.n  # type: ignore[union-attr]

    def degf(self) -> int:
        """Design degrees of freedom (R ``degf``): PSUs with non-zero weight minus strata."""
        st = self._structure
        keep = self.w != 0
        return int(np.unique(st.psu[keep]).size - np.unique(st.stratum[keep]).size)

    def assign(self, **columns) -> "SurveyDesign":
        """The same design (weights, strata, clusters, calibration) with extra or replaced data
        columns, e.g. derived indicators: ``design.assign(sat=(design.data.c01 >= 4))``. The
        design columns themselves cannot be replaced this way."""
        roles = {self.weights, self.strata, self.psu, self.ssu, self.fpc, self.fpc2} - {None}
        clash = sorted(roles & set(columns))
        if clash:
            raise ValueError(f"assign cannot replace design column(s) {clash}; build a new SurveyDesign")
        return dataclasses.replace(self, data=self.data.assign(**columns), _structure=self._structure)

    def with_weights(self, weights: np.ndarray, name: str | None = None,
                     calibration: tuple | None = None) -> "SurveyDesign":
        """A new design with other weights (same rows, strata and clusters); internal helper of
        :mod:`sipas_lib.weighting`. ``name`` is the new weight column (default: the current one,
        or ``"w"``)."""
        name = name or self.weights or "w"
        data = self.data.assign(**{name: np.asarray(weights, float)})
        return dataclasses.replace(self, data=data, weights=name,
                                   calibration=self.calibration if calibration is None else calibration,
                                   _structure=self._structure)


# --------------------------------------------------------------------------------------------
# calibration steps (residual operators used in variances)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CalibrationAtom:
    """One linear correction ``x <- x - H @ b`` with ``b = L (P' x)``; internal.

    ``P`` and ``H`` are sparse (n x p); ``L`` is a vector (diagonal) or a p x p matrix. A scaled
    one-hot atom (post-stratum or raking margin) stores only ``codes``, ``p_factor`` and
    ``h_factor`` (``P = onehot(codes) * p_factor``, ``H = onehot(codes) * h_factor``), which lets
    the variance engine use grouped sums.
    """

    P: sparse.csr_matrix | None
    H: sparse.csr_matrix | None
    L: np.ndarray
    codes: np.ndarray | None = None
    p_factor: np.ndarray | None = None
    h_factor: np.ndarray | None = None

    @property
    def p(self) -> int:
        return len(self.L)

    def P_matrix(self) -> sparse.csr_matrix:
        if self.P is not None:
            return self.P
        n = len(self.codes)
        return sparse.csr_matrix((self.p_factor, (np.arange(n), self.codes)), shape=(n, self.p))

    def H_matrix(self) -> sparse.csr_matrix:
        if self.H is not None:
            return self.H
        n = len(self.codes)
        return sparse.csr_matrix((self.h_factor, (np.arange(n), self.codes)), shape=(n, self.p))


@dataclass(frozen=True, eq=False)
class CalibrationStep:
    """A calibration as R stores it in ``design$postStrata``; internal.

    ``kind`` is ``poststratify``, ``raking`` or ``greg``; ``program`` lists the atom indices applied
    in order (raking: 10 sweeps over the margins, exactly as R's ``svyrecvar``).
    """

    kind: str
    atoms: tuple[CalibrationAtom, ...]
    program: tuple[int, ...]


def onehot_atom(codes: np.ndarray, K: int, p_factor: np.ndarray, h_factor: np.ndarray,
                L: np.ndarray) -> CalibrationAtom:
    """A scaled one-hot calibration atom (see :class:`CalibrationAtom`); ``len(L) == K``."""
    return CalibrationAtom(None, None, np.asarray(L, float), codes=codes, p_factor=p_factor, h_factor=h_factor)


# --------------------------------------------------------------------------------------------
# variance engine
# --------------------------------------------------------------------------------------------
def group_sum(key: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Column-wise grouped sums: out[g, j] = sum of values[i, j] over key[i] == g (np.add.at's sums, by bincount)."""
    out = np.empty((size, values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.bincount(key, weights=values[:, j], minlength=size)
    return out


def _agg(key: np.ndarray, size: int, wv: np.ndarray, base: np.ndarray | None, k: int,
         rows: np.ndarray | None = None) -> np.ndarray:
    """(size, k) grouped sums of ``wv * base[rows, j]`` (``base=None``: a column of ones, (size, 1)).

    ``base`` is best Fortran-ordered (one contiguous pass per column).
    """
    if base is None:
        return np.bincount(key, weights=wv, minlength=size)[:, None]
    out = np.empty((size, k))
    for j in range(k):
        col = base[:, j] if rows is None else base[rows, j]
        out[:, j] = np.bincount(key, weights=wv * col, minlength=size)
    return out


def _combine(parts: list[np.ndarray], coefs: list[np.ndarray], n_units: int, Dc: int, k: int) -> np.ndarray:
    """sum_q coef_q[d, j] * part_q[unit, d, j] -> (n_units, Dc*k)."""
    T = np.zeros((n_units, Dc, k))
    for part, coef in zip(parts, coefs):
        T += part.reshape(n_units, Dc, -1) * coef[None, :, :]
    return T.reshape(n_units, Dc * k)


def _indicator(codes: np.ndarray, size: int) -> sparse.csr_matrix:
    """(size x len(codes)) 0/1 matrix with a one at (codes[i], i): ``_indicator(c, G) @ V`` sums V's rows by group."""
    return sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(size, len(codes)))


def _unit_sums_of_H(a: CalibrationAtom, unit: np.ndarray, n_units: int) -> sparse.csr_matrix:
    """Sparse (n_units x p_a) sums of the atom's H over the rows of each unit (PSU or SSU)."""
    if a.codes is not None:
        m = sparse.csr_matrix((a.h_factor * np.ones(len(unit)), (unit, a.codes)), shape=(n_units, a.p))
        m.sum_duplicates()
        return m
    return (_indicator(unit, n_units) @ a.H_matrix()).tocsr()


def _cross(a: CalibrationAtom, b: CalibrationAtom) -> sparse.csr_matrix:
    """P_a' H_b (p_a x p_b), sparse: cells nested in one another meet in few pairs."""
    if a.codes is not None and b.codes is not None:
        m = sparse.csr_matrix((a.p_factor * b.h_factor * np.ones(len(a.codes)), (a.codes, b.codes)), shape=(a.p, b.p))
        m.sum_duplicates()
        return m
    return (a.P_matrix().T @ b.H_matrix()).tocsr()


def _design_cache(design: SurveyDesign) -> dict:
    """Per-design precomputations for calibration residuals: the atoms in program order and their sparse
    cross products ``P_a' H_b``. The unit sums of H come lazily from :func:`_unit_sums` (sparse: a
    national design's 400,000 PSUs x 19,500 cells would be 58 GiB dense)."""
    cache = design._cache  # type: ignore[attr-defined]
    if "atoms" in cache:
        return cache
    atoms = [a for step in design.calibration for a in step.atoms]
    program = []
    offset = 0
    for step in design.calibration:
        program.extend(offset + i for i in step.program)
        offset += len(step.atoms)
    cache["atoms"] = atoms
    cache["program"] = program
    cache["coo"] = [None if a.codes is not None else a.P_matrix().tocoo() for a in atoms]
    cache["cross"] = {(i, j): _cross(atoms[i], atoms[j]) for i in range(len(atoms)) for j in range(len(atoms))}
    return cache


def _unit_sums(design: SurveyDesign, stage: int) -> list[sparse.csr_matrix]:
    """Cached sparse unit sums of every atom's H: stage 1 per PSU (n_psu x p_a), stage 2 per SSU."""
    cache = _design_cache(design)
    key = f"SH{stage}"
    if key not in cache:
        st = design._structure
        unit, n_units = (st.psu, st.n_psu) if stage == 1 else (st.ssu, st.n_ssu)
        cache[key] = [_unit_sums_of_H(a, unit, n_units) for a in cache["atoms"]]
    return cache[key]


def _calibration_coefficients(design: SurveyDesign, bases, coefs, wv: np.ndarray, dl: np.ndarray,
                              Dc: int, k: int) -> list:
    """Coefficients B_a (p_a x Dc*k) so that residual = x_expanded - sum_a H_a B_a (R svyrecvar)."""
    cache = _design_cache(design)
    atoms, program, cross = cache["atoms"], cache["program"], cache["cross"]
    probes = []
    for a, coo in zip(atoms, cache["coo"]):
        K = a.p
        if a.codes is not None:
            key = a.codes * Dc + dl
            wva = wv * a.p_factor
            parts = [_agg(key, K * Dc, wva, b, k) for b in bases]
        else:
            key = coo.col.astype(np.int64) * Dc + dl[coo.row]
            wva = coo.data * wv[coo.row]
            parts = [_agg(key, K * Dc, wva, b, k, rows=coo.row) for b in bases]
        probes.append(_combine(parts, coefs, K, Dc, k))
    B = [np.zeros_like(p) for p in probes]
    touched: list[int] = []
    for ai in program:
        probe = probes[ai].copy()
        for bj in touched:
            probe -= cross[(ai, bj)] @ B[bj]
        L = atoms[ai].L
        b = L[:, None] * probe if L.ndim == 1 else L @ probe
        B[ai] += b
        if ai not in touched:
            touched.append(ai)
    return B


def _stage_scales(n_g: np.ndarray, f_g: np.ndarray, lonely: str, mult: np.ndarray | None):
    """Per-group scale ``(1-f) n/(n-1)``, centring flags and the overall factor (R ``onestrat``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_g > 1, f_g * n_g / (n_g - 1), f_g)
    scale = np.where(f_g < _F_TINY, 0.0, scale)
    lonely_g = (n_g == 1) & (f_g >= _F_TINY)
    centre = np.ones(len(n_g), bool)
    factor = 1.0
    if lonely == "adjust":
        centre = ~lonely_g
    elif lonely == "average":
        scale = np.where(lonely_g, 0.0, scale)
        nok = len(n_g) - int(lonely_g.sum())
        factor = len(n_g) / nok if nok > 0 else np.nan
    else:  # fail / certainty / remove: a lonely unit is centred at itself -> no contribution
        scale = np.where(lonely_g, 0.0, scale)
    if mult is not None:
        scale = scale * mult
    return scale, centre, factor


def _stage_cov(T: np.ndarray, group: np.ndarray, n_groups: int, n_g: np.ndarray, f_g: np.ndarray,
               lonely: str, mult: np.ndarray | None, mode: str, k: int):
    """One stage of R's ``onestage``: centred, scaled crossproducts of unit totals.

    ``T`` (units x C), ``group`` (units,) stratum of each unit; ``mult`` optional per-group factor
    (stage-2: n_h/N_h). Returns diag (C,) or per-domain blocks (C/k, k, k) or full (C, C).
    """
    scale, centre, factor = _stage_scales(n_g, f_g, lonely, mult)
    sums = _indicator(group, n_groups) @ T
    means = sums / n_g[:, None]
    means[~centre] = 0.0
    Tc = T - means[group]
    s = scale[group]
    if mode == "diag":
        return factor * (s @ (Tc * Tc))
    Tw = Tc * np.sqrt(s)[:, None]
    if mode == "blocks":
        Dc = Tc.shape[1] // k
        R = Tw.reshape(len(group), Dc, k)
        return factor * np.einsum("udk,udl->dkl", R, R)
    return factor * (Tw.T @ Tw)


def _sparse_stage_cov(unit: np.ndarray, unit_group: np.ndarray, n_g: np.ndarray, f_g: np.ndarray,
                      lonely: str, mult: np.ndarray | None, rows: np.ndarray, d: np.ndarray, D: int,
                      wr: np.ndarray, bases: list, coefs: list, k: int, mode: str) -> np.ndarray:
    """``_stage_cov`` for uncalibrated designs from the (unit, domain) pairs present only.

    Uses sum_i (t_i - tbar)^2 = sum_i t_i^2 - n_h tbar^2 per stratum and domain, so units without
    domain members (zero totals) need no storage: memory ~ rows x k instead of units x domains x k.
    """
    key = unit[rows] * D + d
    pair, inv = np.unique(key, return_inverse=True)
    P = pair.size
    pdom = pair % D
    T = np.zeros((P, k))
    for base, coef in zip(bases, coefs):
        T += _agg(inv, P, wr, base, k, rows=rows) * coef[pdom]
    g = unit_group[pair // D]
    gd, inv2 = np.unique(g * D + pdom, return_inverse=True)
    G = gd.size
    gg, dd = gd // D, gd % D
    scale, centre, factor = _stage_scales(n_g, f_g, lonely, mult)
    # centre within (stratum, domain) before squaring (no cancellation); the n_h - (pairs) units
    # without domain members have total 0 and add (n_h - pairs) * mean^2
    S1 = np.zeros((G, k))
    np.add.at(S1, inv2, T)
    npairs = np.bincount(inv2, minlength=G).astype(float)
    cen = np.where(centre[gg], 1.0, 0.0)[:, None]
    mean = cen * S1 / n_g[gg][:, None]
    Tc = T - mean[inv2]
    absent = (n_g[gg] - npairs)[:, None]
    if mode == "diag":
        S2 = np.zeros((G, k))
        np.add.at(S2, inv2, Tc * Tc)
        c = scale[gg][:, None] * (S2 + absent * mean**2)
        out = np.zeros((D, k))
        np.add.at(out, dd, c)
        return factor * out
    S2 = np.zeros((G, k, k))
    np.add.at(S2, inv2, Tc[:, :, None] * Tc[:, None, :])
    c = scale[gg][:, None, None] * (S2 + absent[:, :, None] * mean[:, :, None] * mean[:, None, :])
    out = np.zeros((D, k, k))
    np.add.at(out, dd, c)
    return factor * out


def _sparse_H(design: SurveyDesign) -> dict:
    """Per-design sparse forms of the calibration's unit sums of H (internal cache): ``SH_sparse``
    (n_psu x p_a) per atom and ``ESH_sparse`` = its stratum sums (n_strata x p_a)."""
    cache = _design_cache(design)
    if "ESH_sparse" not in cache:
        st = design._structure
        E = _indicator(st.psu_stratum, st.n_strata)
        cache["SH_sparse"] = _unit_sums(design, 1)
        cache["ESH_sparse"] = [(E @ m).tocsr() for m in cache["SH_sparse"]]
    return cache


def _calibrated_diag_cov(design: SurveyDesign, bases: list, coefs: list, dom: np.ndarray, D: int,
                         k: int) -> np.ndarray | None:
    """``_expanded_cov(mode="diag")`` of a calibrated design without the dense PSU x domain x score matrix.

    First from sparse unit totals (:func:`_sparse_cov`: any design whose calibration cells nest in
    the domains, e.g. post-strata within units; a national year's 3,900 units x 32 scores in seconds).
    When those totals would not be sparse (a margin across the domains), a one-stage design whose
    calibration atoms are all one-hot (post-strata, raking margins) takes the low-rank form below;
    any other returns ``None`` (the dense route).

    The PSU totals are ``T = A - sum_a SH_a B_a``: ``A`` has, per PSU, non-zeros only in the domains
    of its own rows, and the calibration part has rank ``p`` (the cells). With the PSU scale ``s``
    (``_stage_scales``) and the stratum sums ``R_h = sum_{u in h} T_u``, the stage variance
    ``sum_h s_h sum_{u in h} (T_u - c_h R_h / n_h)^2`` is

    .. math:: \\sum_u s_u A_u^2 - 2\\sum_a\\sum_u s_u A_u (SH_a B_a)_u
              + \\sum_{a,b} B_a \\circ (SH_a^\\top S\\, SH_b) B_b - \\sum_h s_h c_h R_h^2 / n_h

    (column by column): grouped sums over the rows, and products with ``p x p`` and ``n_strata x p``
    sparse matrices. Same value as centring the dense matrix (to rounding), at a small fraction of
    the time and memory: the Hà Nội demo's 141 units x 32 scores in 0.1 s instead of 3.5 s, and a
    national run's 3,900 units without a 400,000 x 125,000 matrix.
    """
    st = design._structure
    v = _sparse_cov(design, bases, coefs, dom, D, k, "diag")
    if v is not None or st.ssu is not None or any(a.codes is None for a in _design_cache(design)["atoms"]):
        return v
    cache = _sparse_H(design)
    SH, ESH = cache["SH_sparse"], cache["ESH_sparse"]
    scale, centre, factor = _stage_scales(st.n_h, st.f_h, design.lonely_psu, None)
    s_psu = scale[st.psu_stratum]
    S = sparse.diags(s_psu)
    G = [[(SH[a].T @ S @ SH[b]).tocsr() for b in range(len(SH))] for a in range(len(SH))]
    shrink = np.where(centre, scale / st.n_h, 0.0)
    w = design.w
    p_total = sum(m.shape[1] for m in SH)
    Dc = max(1, min(D, _CHUNK_BUDGET // max(1, max(st.n_strata, p_total) * k)))
    out = np.empty((D, k))
    for d0 in range(0, D, Dc):
        d1 = min(D, d0 + Dc)
        Dc_ = d1 - d0
        inside = (dom >= d0) & (dom < d1)
        wv = np.where(inside, w, 0.0)
        dl = np.where(inside, dom - d0, 0)
        cf = [c[d0:d1] for c in coefs]
        B = _calibration_coefficients(design, bases, cf, wv, dl, Dc_, k)
        # the rows' own parts, summed per (PSU, domain) pair present
        rows = np.flatnonzero(inside)
        dr = dl[rows]
        a = np.zeros((rows.size, k))
        for base, coef in zip(bases, cf):
            a += (1.0 if base is None else base[rows]) * coef[dr]
        a *= w[rows][:, None]
        pair, inv = np.unique(st.psu[rows] * Dc_ + dr, return_inverse=True)
        A = group_sum(inv, a, pair.size)
        pu, pd_ = pair // Dc_, pair % Dc_
        sp = s_psu[pu][:, None]
        total = group_sum(pd_, sp * A * A, Dc_)
        for m, b in zip(SH, B):  # cross terms: each pair's A with its PSU's calibration part in its domain
            sub = m[pu].tocoo()
            bb = b.reshape(b.shape[0], Dc_, k)[sub.col, pd_[sub.row]] * sub.data[:, None]
            total -= 2.0 * group_sum(pd_, sp * A * group_sum(sub.row, bb, pair.size), Dc_)
        flat = total.reshape(Dc_ * k)
        for i, ba in enumerate(B):
            for j, bb in enumerate(B):
                flat += (ba * (G[i][j] @ bb)).sum(axis=0)
        R = group_sum(st.psu_stratum[pu] * Dc_ + pd_, A, st.n_strata * Dc_).reshape(st.n_strata, Dc_ * k)
        for m, b in zip(ESH, B):
            R -= m @ b
        flat -= shrink @ (R * R)
        out[d0:d1] = factor * flat.reshape(Dc_, k)
    return out


def _row_scores(w: np.ndarray, bases: list, coefs: list, dom: np.ndarray, D: int, k: int) -> sparse.csr_matrix:
    """Sparse (n x D*k) weighted scores: row i holds ``w_i sum_q coefs[q][d, j] bases[q][i, j]`` in
    column ``d*k + j`` of its own domain ``d = dom_i`` only (rows with ``dom < 0``: empty)."""
    inside = dom >= 0
    every = bool(inside.all())  # the usual case: no copies of the score columns
    d = dom if every else dom[inside]
    x = np.zeros((d.size, k))
    for base, coef in zip(bases, coefs):
        x += (1.0 if base is None else (base if every else base[inside])) * coef[d]
    x *= (w if every else w[inside])[:, None]
    cols = d[:, None] * k + np.arange(k)
    indptr = np.concatenate([[0], np.cumsum(np.where(inside, k, 0))])  # k entries per row in a domain
    return sparse.csr_matrix((x.ravel(), cols.ravel(), indptr), shape=(len(dom), D * k))


def _product_nnz_bound(a: sparse.csr_matrix, b: sparse.csr_matrix) -> int:
    """Upper bound of the non-zeros of ``a @ b`` (scipy's own: a's column counts times b's row counts)."""
    return int(np.bincount(a.indices, minlength=a.shape[1]) @ np.diff(b.indptr))


def _sparse_calibration_coefficients(design: SurveyDesign, X: sparse.csr_matrix) -> list | None:
    """:func:`_calibration_coefficients` on sparse scores ``X`` (n x C): sparse ``B_a`` (p_a x C).

    With cells nested in domains (post-strata within units) ``B_a`` has the non-zeros of ``P_a' X``
    only. ``None`` when raking sweeps would fill it in past ``_SPARSE_BUDGET`` non-zeros.
    """
    cache = _design_cache(design)
    atoms, program, cross = cache["atoms"], cache["program"], cache["cross"]
    probes = [(a.P_matrix().T @ X).tocsr() for a in atoms]
    B = [sparse.csr_matrix(p.shape) for p in probes]
    touched: list[int] = []
    for ai in program:
        probe = probes[ai]
        for bj in touched:
            if _product_nnz_bound(cross[(ai, bj)], B[bj]) > _SPARSE_BUDGET:
                return None
            probe = probe - cross[(ai, bj)] @ B[bj]
        L = atoms[ai].L
        b = sparse.diags(L) @ probe if L.ndim == 1 else sparse.csr_matrix((probe.T @ L.T).T)
        B[ai] = (B[ai] + b).tocsr()
        if ai not in touched:
            touched.append(ai)
    return B


def _sparse_unit_totals(design: SurveyDesign, X: sparse.csr_matrix, B: list, stage: int) -> sparse.csr_matrix | None:
    """Unit totals of the (calibration residual) scores, ``T = U X - sum_a SH_a B_a`` (units x C),
    sparse; stage 1: PSUs, stage 2: SSUs. ``None`` when T would exceed ``_SPARSE_BUDGET`` non-zeros."""
    st = design._structure
    unit, n_units = (st.psu, st.n_psu) if stage == 1 else (st.ssu, st.n_ssu)
    T = (_indicator(unit, n_units) @ X).tocsr()
    SH = _unit_sums(design, stage) if B else []
    if T.nnz + sum(_product_nnz_bound(m, b) for m, b in zip(SH, B)) > _SPARSE_BUDGET:
        return None
    for m, b in zip(SH, B):
        T = T - m @ b
    return T.tocsr()


def _totals_cov(T: sparse.csr_matrix, group: np.ndarray, n_groups: int, n_g: np.ndarray, f_g: np.ndarray,
                lonely: str, mult: np.ndarray | None, mode: str) -> np.ndarray:
    """:func:`_stage_cov` of sparse unit totals ``T``: the diagonal (C,) or the full (C, C) matrix.

    The units are centred at their group means as R does, ``T_u - c_h R_h / n_h`` with the group sums
    :math:`R_h = \\sum_{u \\in h} T_u` and the centring flag ``c_h`` of ``_stage_scales``, when the
    means stay sparse (groups nested in domains, as strata = units); otherwise, without centring,

    .. math:: \\sum_h s_h \\sum_{u \\in h} (T_u - c_h R_h/n_h)(T_u - c_h R_h/n_h)^\\top
              = T^\\top S\\,T - \\sum_h s_h c_h R_h R_h^\\top / n_h

    (``c_h`` is 0 or 1), both sparse products (exact in theory, less accurate when the totals of a
    group are nearly equal).
    """
    scale, centre, factor = _stage_scales(n_g, f_g, lonely, mult)
    s = scale[group]
    R = (_indicator(group, n_groups) @ T).tocsr()
    keep = centre & (n_g > 0)
    if T.nnz + int((np.diff(R.indptr) * keep)[group].sum()) <= _SPARSE_BUDGET:  # the means spread over the units
        means = R.copy()
        means.data /= np.repeat(np.where(keep, n_g, np.inf), np.diff(R.indptr))
        Tc = (T - means[group]).tocsr()
        if mode == "diag":
            return factor * ((Tc.multiply(Tc)).T @ s)
        return factor * (Tc.T @ (sparse.diags(s) @ Tc)).toarray()
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(keep, scale / n_g, 0.0)
    if mode == "diag":
        return factor * ((T.multiply(T)).T @ s - (R.multiply(R)).T @ shrink)
    return factor * (T.T @ (sparse.diags(s) @ T) - R.T @ (sparse.diags(shrink) @ R)).toarray()


def _sparse_cov(design: SurveyDesign, bases: list, coefs: list, dom: np.ndarray, D: int, k: int,
                mode: str) -> np.ndarray | None:
    """``_expanded_cov`` from sparse PSU (and SSU) totals: ``mode`` ``full`` (D*k x D*k) or ``diag`` (D, k).

    Each PSU's totals are non-zero in the domains of its own rows, plus, for a calibrated design,
    where ``SH_a B_a`` reaches (the domains its calibration cells meet): with post-strata nested in
    units that is nothing more, so a national year (400,000 PSUs, 3,900 units) needs ~n non-zeros
    instead of a dense 400,000 x 3,900 matrix (11.7 GiB). ``None`` when the totals would not be
    sparse (a calibration margin across all domains): the caller falls back to the dense route.
    """
    st = design._structure
    X = _row_scores(design.w, bases, coefs, dom, D, k)
    B = []
    if design.calibration:
        B = _sparse_calibration_coefficients(design, X)
        if B is None:
            return None
    T1 = _sparse_unit_totals(design, X, B, 1)
    if T1 is None:
        return None
    v = _totals_cov(T1, st.psu_stratum, st.n_strata, st.n_h, st.f_h, design.lonely_psu, None, mode)
    if st.ssu is not None:
        T2 = _sparse_unit_totals(design, X, B, 2)
        if T2 is None:
            return None
        f2 = (st.M_i - st.m_i) / st.M_i
        mult = (st.n_h / st.N_h)[st.psu_stratum]
        v = v + _totals_cov(T2, st.ssu_psu, st.n_psu, st.m_i, f2, design.lonely_psu, mult, mode)
    return v.reshape(D, k) if mode == "diag" else v


def _expanded_cov(design: SurveyDesign, bases: list, coefs: list, dom: np.ndarray, D: int,
                  mode: str = "diag", unit_parts: list | None = None):
    """Design covariance of domain totals of linearized scores.

    The weighted score of row i for domain d and variable j is
    ``w_i * sum_q coefs[q][d, j] * bases[q][i, j] * 1[dom_i = d]`` (``bases[q] = None`` is a column
    of ones); rows with ``dom < 0`` belong to no domain. Working with such sufficient statistics
    avoids building n x (D*k) score matrices. ``mode``: ``diag`` -> (D, k) variances; ``blocks`` ->
    (D, k, k); ``full`` -> (D*k, D*k). ``unit_parts`` (optional): the PSU x domain sums of
    ``w * bases[q]`` already computed, shape (n_psu, D, k or 1), used when all domains fit in one chunk.
    """
    st = design._structure
    k = coefs[0].shape[1]
    n_units = max(st.n_psu, st.n_ssu)
    calibrated = len(design.calibration) > 0
    if not calibrated and unit_parts is None and mode != "full" and n_units * D > 2 * st.n:
        # many domains, few rows per unit: work on the (unit, domain) pairs present
        rows = np.flatnonzero(dom >= 0)
        d, wr = dom[rows], design.w[rows]
        v = _sparse_stage_cov(st.psu, st.psu_stratum, st.n_h, st.f_h, design.lonely_psu, None, rows, d, D,
                              wr, bases, coefs, k, mode)
        if st.ssu is not None:
            f2 = (st.M_i - st.m_i) / st.M_i
            mult = (st.n_h / st.N_h)[st.psu_stratum]
            v = v + _sparse_stage_cov(st.ssu, st.ssu_psu, st.m_i, f2, design.lonely_psu, mult, rows, d, D,
                                      wr, bases, coefs, k, mode)
        return v
    if mode == "full" and unit_parts is None:
        if (D * k) ** 2 > _DENSE_BUDGET:
            raise ValueError(f"a full covariance of {D} domains x {k} scores is a {D * k} x {D * k} matrix "
                             f"({(D * k) ** 2 * 8 / 2**30:.1f} GiB); ask for diag=True or for fewer domains or scores")
        v = _sparse_cov(design, bases, coefs, dom, D, k, "full")
        if v is not None:
            return v
        if n_units * D * k > _DENSE_BUDGET:
            raise ValueError(
                f"the full covariance of {D} domains x {k} scores under this calibration needs a dense "
                f"{n_units} x {D * k} matrix of unit totals ({n_units * D * k * 8 / 2**30:.1f} GiB): its margins "
                "cut across the domains, so the totals are not sparse; ask for diag=True, fewer domains, or "
                "calibrate on cells nested in the domains")
    if calibrated and mode == "diag" and unit_parts is None:
        v = _calibrated_diag_cov(design, bases, coefs, dom, D, k)
        if v is not None:
            return v
    if unit_parts is not None:
        chunks = [(0, D)]
    elif mode == "full":
        chunks = [(0, D)]
    else:
        Dc = max(1, min(D, _CHUNK_BUDGET // max(1, n_units * k)))
        chunks = [(d0, min(D, d0 + Dc)) for d0 in range(0, D, Dc)]
    out = []
    w = design.w
    for d0, d1 in chunks:
        Dc = d1 - d0
        inside = (dom >= d0) & (dom < d1)
        wv = np.where(inside, w, 0.0)
        dl = np.where(inside, dom - d0, 0)
        cf = [c[d0:d1] for c in coefs]
        if calibrated:
            B = _calibration_coefficients(design, bases, cf, wv, dl, Dc, k)
        if unit_parts is not None:
            parts = unit_parts
        else:
            key = st.psu * Dc + dl
            parts = [_agg(key, st.n_psu * Dc, wv, b, k) for b in bases]
        T1 = _combine(parts, cf, st.n_psu, Dc, k)
        if calibrated:
            for SH, b in zip(_unit_sums(design, 1), B):
                T1 -= SH @ b
        v = _stage_cov(T1, st.psu_stratum, st.n_strata, st.n_h, st.f_h, design.lonely_psu, None, mode, k)
        if st.ssu is not None:
            key2 = st.ssu * Dc + dl
            T2 = _combine([_agg(key2, st.n_ssu * Dc, wv, b, k) for b in bases], cf, st.n_ssu, Dc, k)
            if calibrated:
                for SH, b in zip(_unit_sums(design, 2), B):
                    T2 -= SH @ b
            f2 = (st.M_i - st.m_i) / st.M_i
            mult = (st.n_h / st.N_h)[st.psu_stratum]
            v = v + _stage_cov(T2, st.ssu_psu, st.n_psu, st.m_i, f2, design.lonely_psu, mult, mode, k)
        out.append(v)
    if mode == "diag":
        return np.concatenate(out).reshape(D, k)
    if mode == "blocks":
        return np.concatenate(out, axis=0)
    return out[0]


# --------------------------------------------------------------------------------------------
# domains and inputs
# --------------------------------------------------------------------------------------------
def _as_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    if isinstance(columns, str):
        return [columns]
    return list(columns)


def _domains(data: pd.DataFrame, by: str | Sequence[str] | None) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Domain code per row (-1: missing domain value) and the sorted table of domain values."""
    by = _as_list(by)
    if not by:
        return np.zeros(len(data), np.int64), None
    missing = [b for b in by if b not in data.columns]
    if missing:
        raise ValueError(f"by column(s) {missing} not in the data")
    g = data.groupby(by, sort=True, dropna=True, observed=True)
    ng = g.ngroup().to_numpy(dtype=float, na_value=np.nan)
    codes = np.where(np.isnan(ng), -1, ng).astype(np.int64)
    index = g.size().index.to_frame(index=False)[by]
    return codes, index


def _numeric(data: pd.DataFrame, columns: list[str], what: str) -> np.ndarray:
    """(n x k) float array (Fortran order: one contiguous column per variable), NaN = missing."""
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not in the data")
    out = np.empty((len(data), len(columns)), order="F")
    for j, c in enumerate(columns):
        s = data[c]
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            out[:, j] = s.to_numpy(dtype=float, na_value=np.nan)
        else:
            v = pd.to_numeric(s, errors="coerce")
            bad = v.isna() & s.notna()
            if bad.any():
                raise ValueError(f"{what} column {c!r} has non-numeric values, e.g. {s[bad].iloc[0]!r}")
            out[:, j] = v.to_numpy(dtype=float, na_value=np.nan)
    return out


def _degf(design: SurveyDesign, dom: np.ndarray, D: int) -> np.ndarray:
    """R ``degf`` of each domain's subset design: PSUs minus strata with non-zero weight."""
    st = design._structure
    keep = (dom >= 0) & (design.w != 0)
    d = dom[keep]

    def distinct_per_domain(codes: np.ndarray, size: int) -> np.ndarray:
        key = d * size + codes[keep]
        if D * size <= 200_000_000:
            seen = np.zeros(D * size, bool)
            seen[key] = True
            return seen.reshape(D, size).sum(axis=1)
        return np.bincount(np.unique(key) // size, minlength=D)

    return (distinct_per_domain(st.psu, st.n_psu) - distinct_per_domain(st.stratum, st.n_strata)).astype(float)


def _replicate_design(design) -> bool:
    return isinstance(design, ReplicateDesign)


# --------------------------------------------------------------------------------------------
# the estimator core
# --------------------------------------------------------------------------------------------
def _estimate(design, Y: np.ndarray, X: np.ndarray | None, dom: np.ndarray, D: int, kind: str,
              na_rm: bool, binary: bool = False) -> dict:
    """Totals, means or ratios of the columns of Y (over X) in each domain, with variances.

    Returns a dict of (D, k) arrays: estimate, var, n, deff, den, psum.
    """
    w = design.w
    k = Y.shape[1]
    nan = np.isnan(Y)
    if X is not None:
        nan |= np.isnan(X)
    any_nan = bool(nan.any())
    if any_nan and not na_rm:
        bad = int(np.flatnonzero(nan.any(axis=0))[0])
        raise ValueError(f"missing values in column {bad}; use na_rm=True to drop them per variable")
    a = (~nan).astype(float, order="F") if any_nan else None  # None: every row answered
    y0 = np.where(nan, 0.0, Y) if any_nan else Y
    x0 = None if X is None else (np.where(nan, 0.0, X) if any_nan else X)
    ones = np.ones((D, k))
    # sums per PSU x domain, one pass per column (w y, w y^2; w x, w x y, w x^2; answering weights);
    # domain sums are their column sums, and the PSU totals of the linearized scores are linear
    # combinations of them (no n x k score matrix is formed)
    st = design._structure if not _replicate_design(design) else None
    fast = st is not None and max(st.n_psu, st.n_ssu) * D * k <= _CHUNK_BUDGET
    G = st.n_psu if fast else 1
    keep = dom >= 0
    dkey = np.where(keep, dom, 0) + (st.psu * D if fast else 0)
    wk = np.where(keep, w, 0.0)
    nzk = (keep & (w != 0)).astype(float)
    names = ["num"] + (["den"] if X is not None else []) + (["psum", "nobs"] if any_nan else [])
    acc = {nm: np.empty((G * D, k)) for nm in names}
    for j in range(k):
        yj = y0[:, j]
        wy = wk * yj
        acc["num"][:, j] = np.bincount(dkey, weights=wy, minlength=G * D)
        if X is not None:
            xj = x0[:, j]
            wx = wk * xj
            acc["den"][:, j] = np.bincount(dkey, weights=wx, minlength=G * D)
        if any_nan:
            acc["psum"][:, j] = np.bincount(dkey, weights=wk * a[:, j], minlength=G * D)
            acc["nobs"][:, j] = np.bincount(dkey, weights=nzk * a[:, j], minlength=G * D)
    if not any_nan:
        acc["psum"] = np.bincount(dkey, weights=wk, minlength=G * D)[:, None]
        acc["nobs"] = np.bincount(dkey, weights=nzk, minlength=G * D)[:, None]
    by_unit = {nm: v.reshape(G, D, -1) for nm, v in acc.items()}
    acc = {nm: v.sum(axis=0) * ones for nm, v in by_unit.items()}
    num = acc["num"]
    psum, n_obs = acc["psum"], acc["nobs"]
    den = psum if X is None else acc["den"]
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "total":
            est = num
            bases, coefs = [y0], [ones]
            parts = [by_unit["num"]]
        else:
            est = num / den
            bases = [y0, a if X is None else x0]
            coefs = [1.0 / den, -est / den]
            parts = [by_unit["num"], by_unit["psum"] if X is None else by_unit["den"]]
        coefs = [np.where(np.isfinite(c), c, 0.0) for c in coefs]
    if _replicate_design(design):
        var = _replicate_var(design, Y, X, dom, D, kind, na_rm, est)
    else:
        var = _expanded_cov(design, bases, coefs, dom, D, "diag", unit_parts=parts if fast else None)
    # design effect against SRS without replacement (R deff=TRUE): svyvar of y (mean, total) or of
    # the linearized ratio variable r = (y - R x)/X (ratio), on the answering rows of the domain
    with np.errstate(divide="ignore", invalid="ignore"):
        if binary:
            ss = num - num**2 / psum  # sum w a (y - p)^2 = psum p (1 - p) for 0/1 data
        else:
            # second pass: sum of w a (u - ubar_d)^2, u = y (mean, total) or y - R x (ratio)
            dk = np.where(keep, dom, 0)
            centre_ = est if kind == "ratio" else num / psum
            ss = np.empty((D, k))
            for j in range(k):
                c = centre_[dk, j]
                u = y0[:, j] - c * (x0[:, j] if kind == "ratio" else 1.0)
                wa_j = wk if a is None else wk * a[:, j]
                ss[:, j] = np.bincount(dk, weights=wa_j * u * u, minlength=D)
            if kind == "ratio":
                ss = ss / den**2
        s2 = ss / psum * n_obs / (n_obs - 1)
        if kind == "mean":
            vsrs = np.where(psum < n_obs, np.nan, s2 * (psum - n_obs) / (psum * n_obs))
        else:
            vsrs = s2 * psum * (psum - n_obs) / n_obs
        deff = var / vsrs
    return {"estimate": est, "var": var, "n": n_obs, "deff": deff, "den": den, "psum": psum}


def _df_for(design, dom, D, df, default_degf: bool) -> np.ndarray:
    if df is None:
        df = "design" if default_degf else np.inf
    if isinstance(df, str):
        if df != "design":
            raise ValueError(f"df must be a number, None or 'design', got {df!r}")
        if _replicate_design(design):
            return np.full(D, float(design.degf()))
        return _degf(design, dom, D)
    return np.full(D, float(df))


def _tidy(variables: list[str], index: pd.DataFrame | None, cols: dict) -> pd.DataFrame:
    D, k = cols["estimate"].shape
    out = pd.DataFrame({"variable": np.repeat(np.asarray(variables, dtype=object), D)})
    if index is not None:
        rep = index.iloc[np.tile(np.arange(D), k)].reset_index(drop=True)
        out = pd.concat([out, rep], axis=1)
    for name in RESULT_COLUMNS:
        out[name] = np.asarray(cols[name]).T.ravel()
    out["n"] = out["n"].astype(np.int64)
    return out


def _normal_ci(est, se, df, level):
    q = stats.t.ppf(0.5 + level / 2, df[:, None]) if np.isfinite(df).any() else stats.norm.ppf(0.5 + level / 2)
    q = np.where(np.isinf(df)[:, None], stats.norm.ppf(0.5 + level / 2), q)
    q = np.where((df <= 0)[:, None], np.nan, q)
    return est - q * se, est + q * se


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")


def _run(design, columns, by, level, na_rm, kind, df, denominators=None, Y=None, binary=False):
    _check_level(level)
    columns = _as_list(columns)
    if not columns:
        raise ValueError("give at least one column")
    data = design.data
    if Y is None:
        Y = _numeric(data, columns, "variable")
    X = None
    if denominators is not None:
        X = _numeric(data, denominators, "denominator")
    dom, index = _domains(data, by)
    D = 1 if index is None else len(index)
    r = _estimate(design, Y, X, dom, D, kind, na_rm, binary=binary)
    se = np.sqrt(r["var"])
    dfs = _df_for(design, dom, D, df, default_degf=False)
    lo, hi = _normal_ci(r["estimate"], se, dfs, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(r["deff"] > 0, r["n"] / r["deff"], np.nan)
    cols = {"estimate": r["estimate"], "se": se, "ci_low": lo, "ci_high": hi, "deff": r["deff"],
            "n": r["n"], "n_eff": n_eff, "df": np.repeat(dfs[:, None], len(columns), 1)}
    return _tidy(columns, index, cols), r, dom, D


def wilson_bounds(p, n_eff, quantile):
    r"""Wilson score bounds of a share on an effective sample size, for a given quantile.

    .. math:: \frac{\hat p + \frac{t^2}{2n^*} \pm t\sqrt{\frac{\hat p(1-\hat p)}{n^*} +
              \frac{t^2}{4n^{*2}}}}{1 + t^2/n^*}

    The one formula behind :func:`proportion` (``method="wilson"``) and
    :func:`sipas_lib.index.score_interval`. Wilson, E. B. (1927), *JASA* 22, 209-212.

    Examples
    --------
    >>> lo, hi = wilson_bounds(np.array([1.0]), np.array([2.0]), 1.959963984540054)
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.342, 1.0)
    """
    centre = p + quantile**2 / (2 * n_eff)
    half = quantile * np.sqrt(p * (1 - p) / n_eff + quantile**2 / (4 * n_eff**2))
    scale = 1 + quantile**2 / n_eff
    return (centre - half) / scale, (centre + half) / scale


def mean(design: "SurveyDesign | ReplicateDesign", columns: str | Sequence[str],
         by: str | Sequence[str] | None = None, level: float = 0.95, na_rm: bool = True,
         df: float | str | None = None) -> pd.DataFrame:
    """Weighted means with design-based SEs, for many columns and domains at once (R ``svymean``,
    ``svyby(..., svymean)``).

    .. math:: \\hat{\\bar y}_d = \\frac{\\sum_i w_i a_i 1_d(i) y_i}{\\sum_i w_i a_i 1_d(i)},\\qquad
              z_i = \\frac{a_i 1_d(i)(y_i - \\hat{\\bar y}_d)}{\\sum_i w_i a_i 1_d(i)}

    with ``a_i`` = answered; the variance is that of the total of the linearized score ``z``.

    Parameters
    ----------
    design
        A :class:`SurveyDesign` or :class:`ReplicateDesign`.
    columns
        Numeric column(s).
    by
        Domain column(s); domains keep the full design (rows with a missing ``by`` value belong to
        no domain but stay in the design).
    level
        Confidence level.
    na_rm
        Drop missing values per variable (else a missing value raises).
    df
        ``None``: normal quantile (R ``confint``); ``"design"``: t with R's ``degf``; or a number.

    Returns
    -------
    pandas.DataFrame
        ``variable``, the ``by`` columns, ``estimate, se, ci_low, ci_high, deff, n, n_eff, df``.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1., 2, 3, 4], "g": ["a", "a", "b", "b"]})
    >>> mean(SurveyDesign(df), "y", by="g")["estimate"].tolist()
    [1.5, 3.5]
    """
    return _run(design, columns, by, level, na_rm, "mean", df)[0]


def total(design: "SurveyDesign | ReplicateDesign", columns: str | Sequence[str],
          by: str | Sequence[str] | None = None, level: float = 0.95, na_rm: bool = True,
          df: float | str | None = None) -> pd.DataFrame:
    """Weighted totals :math:`\\hat t_d = \\sum_i w_i 1_d(i) y_i` with design-based SEs (R ``svytotal``).

    Same parameters and output as :func:`mean`; missing values count as excluded rows.
    """
    return _run(design, columns, by, level, na_rm, "total", df)[0]


def ratio(design: "SurveyDesign | ReplicateDesign", numerator: str | Sequence[str],
          denominator: str | Sequence[str], by: str | Sequence[str] | None = None,
          level: float = 0.95, na_rm: bool = True, df: float | str | None = None) -> pd.DataFrame:
    """Ratios of totals :math:`\\hat R_d = \\sum w y 1_d / \\sum w x 1_d` (R ``svyratio``).

    Numerators and denominators are paired column by column (one denominator is recycled). The
    linearized score is :math:`z_i = 1_d(i)(y_i - \\hat R_d x_i)/\\hat X_d`; rows missing either
    value are dropped for that pair. ``variable`` reads ``"num/den"``.
    """
    num = _as_list(numerator)
    den = _as_list(denominator)
    if len(den) == 1 and len(num) > 1:
        den = den * len(num)
    if len(den) != len(num):
        raise ValueError(f"{len(num)} numerators but {len(den)} denominators; give one denominator or one per numerator")
    out, *_ = _run(design, num, by, level, na_rm, "ratio", df, denominators=den)
    names = [f"{a}/{b}" for a, b in zip(num, den)]
    out["variable"] = np.repeat(np.asarray(names, dtype=object), len(out) // len(num))
    return out


def proportion(design: "SurveyDesign | ReplicateDesign", columns: str | Sequence[str],
               by: str | Sequence[str] | None = None, level: float = 0.95, method: str = "logit",
               na_rm: bool = True, df: float | str | None = None) -> pd.DataFrame:
    """Proportions of 0/1 (or boolean) columns with design-based CIs (R ``svyciprop``).

    The estimate and SE are those of :func:`mean`. Intervals, with ``t`` = Student quantile on
    ``df`` (default R's ``degf`` of the domain, as ``svyciprop``):

    * ``logit`` -- :math:`\\operatorname{expit}(\\operatorname{logit}\\hat p \\pm t\\,
      \\mathrm{SE}/(\\hat p(1-\\hat p)))` (R ``svyciprop(method="logit")``);
    * ``beta`` -- Korn & Graubard (1998): effective size :math:`n^* = \\hat p(1-\\hat p)/V\\,
      (t_{n_{rows}-1}/t_{df})^2`, interval :math:`[B_{\\alpha/2}(n^*\\hat p, n^*(1-\\hat p)+1),
      B_{1-\\alpha/2}(n^*\\hat p+1, n^*(1-\\hat p))]`; ``n_rows`` is the number of rows of R's
      domain design (the domain's rows; all rows of a calibrated design, R's subsetting rule);
    * ``wilson`` -- Wilson score interval on :math:`n^* = \\hat p(1-\\hat p)/V` with quantile ``t``;
    * ``wald`` -- :math:`\\hat p \\pm t\\,\\mathrm{SE}`.

    When :math:`\\hat p \\in \\{0, 1\\}` (SE = 0) ``logit`` and ``beta`` fall back to the exact
    Clopper-Pearson bound on the respondent count (R would return a degenerate interval).
    """
    if method not in PROPORTION_METHODS:
        raise ValueError(f"method must be one of {PROPORTION_METHODS}, got {method!r}")
    cols_ = _as_list(columns)
    Y = _numeric(design.data, cols_, "variable")
    if not np.nanmax(np.abs(Y * (Y - 1)), initial=0.0) == 0:
        ok = (Y == 0) | (Y == 1) | np.isnan(Y)
        j = int(np.flatnonzero(~ok.all(axis=0))[0])
        raise ValueError(f"proportion needs 0/1 or boolean columns; {cols_[j]!r} has other values "
                         f"(e.g. {Y[~ok[:, j], j][0]:g}); build an indicator such as (item >= 4)")
    out, r, dom, D = _run(design, cols_, by, level, na_rm, "mean", df, Y=Y, binary=True)
    dfs = _df_for(design, dom, D, df, default_degf=True)
    p = r["estimate"]
    v = r["var"]
    k = p.shape[1]
    dfm = np.repeat(dfs[:, None], k, 1)
    alpha = 1 - level
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(np.isinf(dfm), stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, dfm))
        t = np.where(dfm <= 0, np.nan, t)
        se = np.sqrt(v)
        if method == "logit":
            lg = np.log(p / (1 - p))
            sl = se / (p * (1 - p))
            lo, hi = 1 / (1 + np.exp(-(lg - t * sl))), 1 / (1 + np.exp(-(lg + t * sl)))
        elif method == "beta":
            if _replicate_design(design):
                nrows = np.full_like(p, design.n)
            elif design.calibration:
                nrows = np.full_like(p, design.n)
            else:
                nrows = np.repeat(np.bincount(dom[dom >= 0], minlength=D)[:, None].astype(float), k, 1)
            neff = p * (1 - p) / v
            neff = neff * (stats.t.ppf(alpha / 2, nrows - 1) / stats.t.ppf(alpha / 2, dfm)) ** 2
            lo = stats.beta.ppf(alpha / 2, neff * p, neff * (1 - p) + 1)
            hi = stats.beta.ppf(1 - alpha / 2, neff * p + 1, neff * (1 - p))
        elif method == "wilson":
            lo, hi = wilson_bounds(p, p * (1 - p) / v, t)
        else:
            lo, hi = p - t * se, p + t * se
        if method in ("logit", "beta", "wilson"):
            # degenerate p in {0,1}: Clopper-Pearson on the respondent count
            nn = r["n"]
            zero, one = (p == 0) & (nn > 0), (p == 1) & (nn > 0)
            lo = np.where(zero, 0.0, np.where(one, stats.beta.ppf(alpha / 2, nn, 1), lo))
            hi = np.where(one, 1.0, np.where(zero, stats.beta.ppf(1 - alpha / 2, 1, nn), hi))
    out["ci_low"] = lo.T.ravel()
    out["ci_high"] = hi.T.ravel()
    out["df"] = dfm.T.ravel()
    return out


def total_covariance(design: "SurveyDesign | ReplicateDesign", scores: np.ndarray | pd.DataFrame,
                     by: str | Sequence[str] | None = None, full: bool = False, diag: bool = False):
    """Design covariance of weighted totals :math:`\\hat t = \\sum_i w_i z_i` (R ``vcov(svytotal)``).

    The primitive for linearized composite measures: pass per-row influence values ``z`` (not
    multiplied by the weights) and get the covariance of their weighted totals. For a smooth
    statistic :math:`\\theta = g(t_1..t_m)` use :math:`z_i = \\sum_j \\partial g/\\partial t_j\\, y_{ij}`.
    For example, the mean of J ratio indices :math:`p_j = \\sum w y_j / \\sum w a_j` in domain d has
    :math:`z_i = J^{-1}\\sum_j a_{ij}(y_{ij} - p_{jd})/\\hat A_{jd}`.

    Parameters
    ----------
    design
        :class:`SurveyDesign` (Taylor; calibrated designs use calibration residuals, as R) or
        :class:`ReplicateDesign` (replicate variance, as R's ``svrepdesign``).
    scores
        (n x k) array or DataFrame of z values; no missing values (use 0 for rows outside a measure).
    by
        Domain column(s). Domain d's totals use ``z * 1[row in d]``: the full design is kept.
    full
        With ``by``: return the full (D*k x D*k) covariance (domain-major: row ``d*k + j``) including
        cross-domain terms (non-zero under calibration or when domains share PSUs). Computed from
        sparse PSU totals (``_sparse_cov``); ``ValueError`` when the answer or, for a calibration
        across the domains, the dense PSU totals would exceed ``_DENSE_BUDGET`` floats.
    diag
        Return only the variances: (k,) without ``by``, (D, k) with it (fastest).

    Returns
    -------
    (index, cov)
        ``by=None``: ``index`` is ``None`` and ``cov`` is (k, k). With ``by``: ``index`` is a
        DataFrame of the domain values (sorted, one row per domain) and ``cov`` is (D, k, k), the
        block of each domain (or (D*k, D*k) when ``full``).

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1., 2, 3, 4], "h": ["a", "a", "b", "b"]})
    >>> d = SurveyDesign(df, strata="h")
    >>> _, v = total_covariance(d, df[["y"]])
    >>> round(float(v[0, 0]), 10)  # each stratum: 2/(2-1) * ((1-1.5)^2 + (2-1.5)^2) = 1
    2.0
    """
    Z = np.asarray(scores, dtype=float)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.shape[0] != design.n:
        raise ValueError(f"scores have {Z.shape[0]} rows but the design has {design.n}")
    if np.isnan(Z).any():
        raise ValueError("scores contain missing values; use 0 for rows that do not contribute")
    dom, index = _domains(design.data, by)
    D = 1 if index is None else len(index)
    if full and diag:
        raise ValueError("choose full=True or diag=True, not both")
    mode = "full" if full else ("diag" if diag else "blocks")
    if _replicate_design(design):
        if mode == "diag":
            cov = np.diagonal(_replicate_total_cov(design, Z, dom, D, "blocks"), axis1=1, axis2=2)
        else:
            cov = _replicate_total_cov(design, Z, dom, D, mode)
    else:
        cov = _expanded_cov(design, [np.asfortranarray(Z)], [np.ones((D, Z.shape[1]))], dom, D, mode)
    if index is None:
        return None, (cov[0] if mode in ("blocks", "diag") else cov)
    return index, cov


# --------------------------------------------------------------------------------------------
# replicate weights
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ReplicateDesign:
    """A replicate-weight design (R ``svrepdesign``): full-sample weights plus R replicate weights.

    Variance of a statistic :math:`\\hat\\theta`:
    :math:`V = s \\sum_r c_r (\\hat\\theta_r - \\bar\\theta)^2` (``mse=False``, R's default; centred at
    :math:`\\hat\\theta` with ``mse=True``), with ``scale`` s and ``rscales`` c_r.

    Parameters
    ----------
    data
        Rows of the sample.
    weights
        Column of full-sample weights.
    repweights
        (n x R) array of replicate weights (already multiplied by the full-sample weights).
    scale, rscales
        As R (JK1: ``(1-f)(n-1)/n``; JKn: ``rscales = (1-f_h)(n_h-1)/n_h``; bootstrap ``1/(R-1)``).
    type
        ``JK1``, ``JKn``, ``bootstrap`` (label only).
    mse
        Centre replicates at the full-sample estimate instead of their mean.
    """

    data: pd.DataFrame
    weights: str
    repweights: np.ndarray
    scale: float
    rscales: np.ndarray
    type: str = "JK1"
    mse: bool = False
    degrees_of_freedom: int | None = None

    def __post_init__(self) -> None:
        if self.weights not in self.data.columns:
            raise ValueError(f"weights column {self.weights!r} is not in the data")
        w = pd.to_numeric(self.data[self.weights], errors="coerce").to_numpy(float)
        if np.isnan(w).any() or (w < 0).any():
            raise ValueError(f"weights column {self.weights!r} has missing or negative values")
        rw = np.asarray(self.repweights, float)
        if rw.ndim != 2 or rw.shape[0] != len(self.data):
            raise ValueError(f"repweights must be (n x R) with n = {len(self.data)} rows")
        rs = np.broadcast_to(np.asarray(self.rscales, float), (rw.shape[1],)).copy()
        object.__setattr__(self, "repweights", rw)
        object.__setattr__(self, "rscales", rs)
        object.__setattr__(self, "_w", w)

    @property
    def w(self) -> np.ndarray:
        return self._w  # type: ignore[attr-defined]

    @property
    def n(self) -> int:
        return len(self.data)

    @property
    def replicates(self) -> int:
        return self.repweights.shape[1]

    def degf(self) -> int:
        """Degrees of freedom: given, else rank of the replicate weights minus 1 (R)."""
        if self.degrees_of_freedom is not None:
            return int(self.degrees_of_freedom)
        return int(np.linalg.matrix_rank(self.repweights)) - 1

    def variance(self, full: np.ndarray, reps: np.ndarray) -> np.ndarray:
        """Replicate variance of statistics: ``full`` (...,), ``reps`` (R, ...)."""
        centre = full if self.mse else reps.mean(axis=0)
        dev = reps - centre
        return self.scale * np.tensordot(self.rscales, dev * dev, axes=(0, 0))

    def covariance(self, full: np.ndarray, reps: np.ndarray) -> np.ndarray:
        """Replicate covariance of a vector statistic: ``full`` (m,), ``reps`` (R, m)."""
        centre = full if self.mse else reps.mean(axis=0)
        dev = reps - centre
        return self.scale * (dev * self.rscales[:, None]).T @ dev

    def assign(self, **columns) -> "ReplicateDesign":
        """The same replicate design with extra or replaced data columns (not the weight column)."""
        if self.weights in columns:
            raise ValueError(f"assign cannot replace the weight column {self.weights!r}")
        return dataclasses.replace(self, data=self.data.assign(**columns))

    def with_weights(self, weights: np.ndarray, repweights: np.ndarray, name: str | None = None) -> "ReplicateDesign":
        name = name or self.weights
        return dataclasses.replace(self, data=self.data.assign(**{name: np.asarray(weights, float)}),
                                   weights=name, repweights=repweights)


def _domain_rep_sums(rw: np.ndarray, V: np.ndarray, dom: np.ndarray, D: int) -> np.ndarray:
    """(R, D, k): sum over rows in domain d of rw[i, r] * V[i, j] (loop over domains)."""
    R, k = rw.shape[1], V.shape[1]
    out = np.zeros((R, D, k))
    order = np.argsort(dom, kind="stable")
    ds = dom[order]
    bounds = np.searchsorted(ds, np.arange(D + 1))
    for d in range(D):
        idx = order[bounds[d]:bounds[d + 1]]
        if idx.size:
            out[:, d, :] = rw[idx].T @ V[idx]
    return out


def _replicate_var(design: ReplicateDesign, Y, X, dom, D, kind, na_rm, est) -> np.ndarray:
    valid = ~np.isnan(Y)
    if X is not None:
        valid &= ~np.isnan(X)
    a = valid.astype(float)
    y0 = np.where(valid, Y, 0.0)
    num = _domain_rep_sums(design.repweights, a * y0, dom, D)
    if kind == "total":
        reps = num
    else:
        x0 = a if X is None else a * np.where(valid, X, 0.0)
        den = _domain_rep_sums(design.repweights, x0, dom, D)
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = num / den
    return design.variance(est, reps)


def _replicate_total_cov(design: ReplicateDesign, Z, dom, D, mode):
    keep = dom >= 0
    full = group_sum(dom[keep], design.w[keep, None] * Z[keep], D)  # (D, k)
    reps = _domain_rep_sums(design.repweights, Z, dom, D)  # (R, D, k)
    k = Z.shape[1]
    if mode == "full":
        return design.covariance(full.ravel(), reps.reshape(reps.shape[0], D * k))
    centre = full if design.mse else reps.mean(axis=0)
    dev = (reps - centre) * np.sqrt(design.rscales)[:, None, None]
    return design.scale * np.einsum("rdk,rdl->dkl", dev, dev)


def as_replicate(design: SurveyDesign, type: str = "JKn", replicates: int = 200,
                 seed: int | None = None, mse: bool = False) -> ReplicateDesign:
    """Replicate weights from a Taylor design (R ``as.svrepdesign``).

    * ``JK1`` -- delete-one-PSU jackknife ignoring strata: replicate r drops PSU r and multiplies
      the others by n/(n-1); ``scale = (1-f)(n-1)/n`` (f from the design's fpc if it is a single
      stratum).
    * ``JKn`` -- stratified jackknife: drop PSU i of stratum h, multiply its stratum's other PSUs by
      :math:`n_h/(n_h-1)`; ``rscales = (1-f_h)(n_h-1)/n_h``; lonely PSUs follow ``lonely_psu`` (R's
      ``jknweights``: adjust -> one replicate multiplying the other strata by H/(H-1)).
    * ``bootstrap`` -- Rao-Wu (1988) rescaling bootstrap (R's ``subbootstrap``): in each stratum draw
      :math:`n_h-1` PSUs with replacement; multiplier :math:`n_h/(n_h-1)\\,r_{hi}` (with fpc, the
      Rao-Wu-Yue 1992 form :math:`1-\\lambda_h+\\lambda_h n_h r_{hi}/(n_h-1)`,
      :math:`\\lambda_h=\\sqrt{1-f_h}`); ``scale = 1/(R-1)``. Same seed -> identical weights.

    Calibration is not redone in the replicates (R's ``as.svrepdesign`` of an uncalibrated design);
    calibrate the returned design with :mod:`sipas_lib.weighting` to recalibrate every replicate.
    """
    if not isinstance(design, SurveyDesign):
        raise ValueError("as_replicate needs a SurveyDesign")
    if design.calibration:
        raise ValueError("convert the design before calibrating it (calibration is then redone in every replicate)")
    st = design._structure
    w = design.w
    name = design.weights or "w"
    data = design.data if design.weights else design.data.assign(**{name: w})
    f_h = st.f_h
    if type == "JK1":
        if st.n_strata > 1:
            pass  # as R: JK1 ignores strata
        n = st.n_psu
        f = f_h[0] if st.n_strata == 1 else 1.0
        mult = np.full((n, n), n / (n - 1))
        np.fill_diagonal(mult, 0.0)
        rw = w[:, None] * mult[st.psu]
        return ReplicateDesign(data, name, rw, scale=f * (n - 1) / n, rscales=np.ones(n), type="JK1",
                               mse=mse, degrees_of_freedom=n - 1)
    if type == "JKn":
        n_h = st.n_h
        lonely = (n_h == 1) & (f_h >= _F_TINY)
        keep_psu = ~lonely[st.psu_stratum]
        reps = np.flatnonzero(keep_psu)  # one replicate per PSU of a non-lonely stratum
        h_rep = st.psu_stratum[reps]
        same = st.psu_stratum[:, None] == h_rep[None, :]
        factor = (n_h / np.maximum(n_h - 1, 1))[st.psu_stratum]
        mult = np.where(same, factor[:, None], 1.0)
        mult[reps, np.arange(reps.size)] = 0.0
        rscales = (f_h * (n_h - 1) / n_h)[h_rep]
        scale = 1.0
        if lonely.any():
            if design.lonely_psu == "adjust":
                H = st.n_strata
                for h in np.flatnonzero(lonely):
                    col = np.where(st.psu_stratum == h, 0.0, H / (H - 1))
                    mult = np.column_stack([mult, col])
                    rscales = np.append(rscales, (H - 1) / H)
            elif design.lonely_psu == "average":
                scale = st.n_psu / reps.size
        rw = w[:, None] * mult[st.psu]
        return ReplicateDesign(data, name, rw, scale=scale, rscales=rscales, type="JKn", mse=mse,
                               degrees_of_freedom=st.n_psu - st.n_strata)
    if type == "bootstrap":
        if replicates < 2:
            raise ValueError("bootstrap needs at least 2 replicates")
        rng = np.random.default_rng(seed)
        n_h = st.n_h
        if (n_h < 2).any():
            raise ValueError("the bootstrap needs at least two PSUs in every stratum")
        counts = np.zeros((st.n_psu, replicates))
        order = np.argsort(st.psu_stratum, kind="stable")
        bounds = np.searchsorted(st.psu_stratum[order], np.arange(st.n_strata + 1))
        for h in range(st.n_strata):
            idx = order[bounds[h]:bounds[h + 1]]
            nh = idx.size
            counts[idx] = rng.multinomial(nh - 1, np.full(nh, 1 / nh), size=replicates).T
        nh_psu = n_h[st.psu_stratum][:, None]
        lam = np.sqrt(f_h[st.psu_stratum])[:, None]
        mult = 1 - lam + lam * nh_psu / (nh_psu - 1) * counts
        rw = w[:, None] * mult[st.psu]
        # R: degf of a replicate design = rank of the replicate weights - 1 (PSU level: same rank)
        return ReplicateDesign(data, name, rw, scale=1 / (replicates - 1), rscales=np.ones(replicates),
                               type="bootstrap", mse=mse,
                               degrees_of_freedom=int(np.linalg.matrix_rank(mult)) - 1)
    raise ValueError(f"type must be 'JK1', 'JKn' or 'bootstrap', got {type!r}")


def replicate_estimate(design: ReplicateDesign, statistic: Callable[[np.ndarray], np.ndarray | float],
                       vectorized: bool = False) -> pd.DataFrame:
    """Estimate and replicate SE of any statistic of the weights.

    Parameters
    ----------
    design
        A :class:`ReplicateDesign`.
    statistic
        ``statistic(weights) -> scalar or 1-D array`` computed on ``design.data`` with the given
        weights (the full-sample weights, then each replicate's). With ``vectorized=True`` it
        receives the (n x R) matrix and must return an (R, m) array.

    Returns
    -------
    pandas.DataFrame
        One row per component: ``component, estimate, se``.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1., 2, 3, 4], "w": [1., 1, 1, 1]})
    >>> rd = as_replicate(SurveyDesign(df, weights="w"), "JK1")
    >>> float(replicate_estimate(rd, lambda w: np.sum(w * df.y) / np.sum(w))["se"].iloc[0])  # doctest: +ELLIPSIS
    0.645...
    """
    full = np.atleast_1d(np.asarray(statistic(design.w), float))
    if vectorized:
        reps = np.asarray(statistic(design.repweights), float).reshape(design.replicates, -1)
    else:
        reps = np.stack([np.atleast_1d(np.asarray(statistic(design.repweights[:, r]), float))
                         for r in range(design.replicates)])
    var = design.variance(full, reps)
    return pd.DataFrame({"component": np.arange(full.size), "estimate": full, "se": np.sqrt(var)})
