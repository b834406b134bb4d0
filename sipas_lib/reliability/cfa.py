"""Confirmatory factor analysis by maximum likelihood with lavaan's fit measures, composite
reliability and AVE (``lavaan::cfa``, ``fitMeasures``).

Core layer. References: Bollen (1989) Structural equations with latent variables; Hu & Bentler
(1999) SEM 6:1; Fornell & Larcker (1981) J. Marketing Res. 18:39.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from sipas_lib.reliability.base import _MIN_ROWS, _matrix, analysis_rows

# --------------------------------------------------------------------------- CFA
_MODEL_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=~\s*(.+?)\s*$")


def parse_model(model: str | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """A measurement model as ``{factor: [items]}``; accepts lavaan syntax (``F =~ a + b + c``)."""
    if isinstance(model, Mapping):
        out = {str(k): list(v) for k, v in model.items()}
    elif isinstance(model, str):
        out = {}
        for raw in re.split(r"[\n;]", model):
            line = raw.split("#")[0].strip()
            if not line:
                continue
            m = _MODEL_LINE.match(line)
            if not m:
                raise ValueError(f"cannot read model line {line!r}; expected 'factor =~ item1 + item2 + ...'")
            out.setdefault(m.group(1), []).extend(t.strip() for t in m.group(2).split("+"))
    else:
        raise ValueError("model must be a dict {factor: [items]} or lavaan syntax 'F =~ a + b'")
    if not out:
        raise ValueError("the model has no factor")
    seen: dict[str, str] = {}
    for f, its in out.items():
        if len(its) < 2:
            raise ValueError(f"factor {f} has {len(its)} item(s); a CFA factor needs at least 2")
        for it in its:
            if it in seen:
                raise ValueError(f"item {it} loads on both {seen[it]} and {f}; cross-loadings are not supported")
            seen[it] = f
    return out


@dataclass(frozen=True)
class CFAResult:
    """A confirmatory factor analysis fitted by maximum likelihood (lavaan conventions).

    Attributes
    ----------
    fit
        One row: ``n, npar, chisq, df, pvalue, baseline_chisq, baseline_df, cfi, tli, rmsea,
        rmsea_ci_low, rmsea_ci_high, rmsea_pvalue, srmr, aic, bic, converged``.
    loadings
        One row per item: ``factor, item, est`` (first loading fixed to 1), ``std``
        (completely standardized, lavaan's ``std.all``).
    reliability
        One row per factor: ``factor, n_items, cr`` (composite reliability) and ``ave``.
    phi
        Factor correlations.
    """

    fit: pd.DataFrame
    loadings: pd.DataFrame
    reliability: pd.DataFrame
    phi: pd.DataFrame


def _rmsea_ci(X2: float, dfree: float, N: int, level: float = 0.90) -> tuple[float, float]:
    """lavaan's RMSEA interval: non-centrality bounds of the non-central chi-square."""
    up, lo = 1 - (1 - level) / 2, (1 - level) / 2

    def cdf(lam):
        return stats.ncx2.cdf(X2, dfree, lam) if lam > 0 else stats.chi2.cdf(X2, dfree)

    if dfree < 1 or cdf(0) - up < 0:
        ci_lo = 0.0
    else:
        lam = optimize.brentq(lambda L: cdf(L) - up, 0, X2, xtol=1e-12)
        ci_lo = math.sqrt(lam / (N * dfree))
    n_rmsea = max(N, X2 * 4)
    if dfree < 1 or cdf(n_rmsea) - lo > 0 or cdf(0) - lo < 0:
        ci_hi = 0.0
    else:
        lam = optimize.brentq(lambda L: cdf(L) - lo, 0, n_rmsea, xtol=1e-12)
        ci_hi = math.sqrt(lam / (N * dfree))
    return ci_lo, ci_hi


#: Consecutive Fisher-scoring iterations without a measurable decrease of F after which the fit
#: switches to Newton steps with the observed information (the well-conditioned fits of the lavaan
#: parity tests and of the demo stop before, after at most 5).
_STALL_ITERATIONS = 10
#: Consecutive Fisher-scoring iterations, each decreasing F by more than :data:`_SLOW_RATE` times the
#: iteration before, after which the fit switches to Newton steps (slow linear convergence; the
#: well-conditioned fits converge at rates of 0.03-0.25).
_SLOW_ITERATIONS = 5
_SLOW_RATE = 0.5
#: Fisher-scoring iterations after which the fit switches to Newton steps even while F still
#: decreases (linear convergence; the well-conditioned fits need fewer than 30).
_FISHER_ITERATIONS = 100


@dataclass
class _MLProblem:
    """The ML discrepancy of a simple-structure CFA, its derivatives and start values.

    Parameters, in this order: the free loadings (the first loading of each factor is fixed to
    1), the factor (co)variances (upper triangle, row by row) and the residual variances.
    ``fac_of`` gives each item's factor (items grouped by factor); ``S`` is the covariance
    matrix with divisor N and ``logdet_S`` its log-determinant.
    """

    S: np.ndarray
    logdet_S: float
    fac_of: np.ndarray

    def __post_init__(self):
        self.p, self.nf = len(self.fac_of), int(self.fac_of.max()) + 1
        self.first = np.r_[True, self.fac_of[1:] != self.fac_of[:-1]]
        self.free_l = np.nonzero(~self.first)[0]
        self.tri = np.triu_indices(self.nf)

    def unpack(self, th: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:math:`\\Lambda` (p x nf), :math:`\\Phi` (nf x nf) and the residual variances."""
        p, nf, n_l, n_phi = self.p, self.nf, len(self.free_l), len(self.tri[0])
        lam = np.ones(p)
        lam[self.free_l] = th[:n_l]
        Phi = np.zeros((nf, nf))
        Phi[self.tri] = th[n_l:n_l + n_phi]
        Phi = Phi + np.triu(Phi, 1).T
        theta = th[n_l + n_phi:]
        Lam = np.zeros((p, nf))
        Lam[np.arange(p), self.fac_of] = lam
        return Lam, Phi, theta

    def objective(self, th: np.ndarray) -> tuple[float, np.ndarray]:
        """:math:`F_{ML}` and its gradient :math:`\\operatorname{tr}(G\\dot\\Sigma_a)`, :math:`G=\\Sigma^{-1}-\\Sigma^{-1}S\\Sigma^{-1}`
        (1e10 and a zero gradient where :math:`\\Sigma` is not positive definite)."""
        Lam, Phi, theta = self.unpack(th)
        Sig = Lam @ Phi @ Lam.T + np.diag(theta)
        try:
            c = linalg.cho_factor(Sig)
        except linalg.LinAlgError:
            return 1e10, np.zeros_like(th)
        logdet = 2 * np.log(np.diag(c[0])).sum()
        Si = linalg.cho_solve(c, np.eye(self.p))
        SiS = Si @ self.S
        f = logdet + np.trace(SiS) - self.logdet_S - self.p
        G = Si - SiS @ Si                               # dF/dSigma
        gL = 2 * (G @ Lam @ Phi)
        gPhi = Lam.T @ G @ Lam
        gPhi = 2 * gPhi - np.diag(np.diag(gPhi))
        fl = self.free_l
        return f, np.concatenate([gL[fl, self.fac_of[fl]], gPhi[self.tri], np.diag(G)])

    def start(self) -> np.ndarray:
        """Start values: loadings from the covariances with each factor's marker item, factor
        covariances 0 (lavaan's "simple" start, which keeps :math:`\\Sigma` positive definite)."""
        S, fac_of, var = self.S, self.fac_of, np.diag(self.S)
        lam0 = np.ones(self.p)
        phi0 = np.zeros((self.nf, self.nf))
        for f_, mk in enumerate(np.nonzero(self.first)[0]):
            its = np.nonzero(fac_of == f_)[0]
            others = its[its != mk]
            phi_ff = max(np.mean(S[mk, others]) if len(others) else 0.5 * var[mk], 0.05 * var[mk])
            phi0[f_, f_] = phi_ff
            lam0[others] = S[mk, others] / phi_ff
        theta0 = np.maximum(var - lam0 ** 2 * phi0[fac_of, fac_of], 0.1 * var)
        return np.concatenate([lam0[self.free_l], phi0[self.tri], theta0])

    def _sigma_derivatives(self, Lam: np.ndarray, Phi: np.ndarray) -> np.ndarray:
        """:math:`\\dot\\Sigma_a=\\partial\\Sigma/\\partial\\theta_a` in the order of the parameters (n_par x p x p)."""
        p, fac_of = self.p, self.fac_of
        LP = Lam @ Phi
        D = []
        for i in self.free_l:                              # loadings
            d = np.zeros((p, p))
            d[i, :] = LP[:, fac_of[i]]
            D.append(d + d.T)
        for a, b in zip(*self.tri):                         # factor (co)variances
            o = np.outer(Lam[:, a], Lam[:, b])
            D.append(o + o.T if a != b else o)
        for i in range(p):                                  # residual variances
            d = np.zeros((p, p))
            d[i, i] = 1.0
            D.append(d)
        return np.array(D)

    def information(self, th: np.ndarray, observed: bool = False) -> np.ndarray:
        """Expected (default) or observed Hessian of :math:`F_{ML}` at ``th``.

        With :math:`W=\\Sigma^{-1}`, :math:`M_a=W\\dot\\Sigma_a` and :math:`G=W-WSW`, the expected
        Hessian is :math:`\\operatorname{tr}(M_aM_b)` (Jöreskog 1969) and the observed one
        :math:`\\operatorname{tr}(M_aM_bWS)+\\operatorname{tr}(M_bM_aWS)-\\operatorname{tr}(M_aM_b)
        +\\operatorname{tr}(G\\ddot\\Sigma_{ab})` (Magnus & Neudecker 1999, ch. 9). The second
        derivatives of :math:`\\Lambda\\Phi\\Lambda'` are non-zero only for two loadings
        (:math:`\\operatorname{tr}(G\\ddot\\Sigma)=2\\phi_{f_if_j}G_{ij}`) and for a loading with a
        factor (co)variance :math:`\\phi_{ab}`
        (:math:`2([f_i=a](G\\Lambda)_{ib}+[f_i=b](G\\Lambda)_{ia})`, half of it when a = b).
        """
        Lam, Phi, theta = self.unpack(th)
        W = linalg.inv(Lam @ Phi @ Lam.T + np.diag(theta))
        M = np.einsum("ij,ajk->aik", W, self._sigma_derivatives(Lam, Phi))
        H = np.einsum("aij,bji->ab", M, M)
        if not observed:
            return H
        G = W - W @ self.S @ W
        K = np.einsum("aij,bji->ab", M, M @ (W @ self.S))
        H = K + K.T - H
        fl, (ta, tb) = self.free_l, self.tri
        n_l, fi = len(fl), self.fac_of[fl]
        H[:n_l, :n_l] += 2 * Phi[np.ix_(fi, fi)] * G[np.ix_(fl, fl)]
        GL = (G @ Lam)[fl]
        LF = (fi[:, None] == ta) * GL[:, tb] + (fi[:, None] == tb) * GL[:, ta]
        LF = np.where(ta == tb, LF, 2 * LF)
        H[:n_l, n_l:n_l + len(ta)] += LF
        H[n_l:n_l + len(ta), :n_l] += LF.T
        return H


def _newton_direction(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """:math:`H^{-1}g`; least squares when :math:`H` is (nearly) singular (an unidentified model)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            return linalg.solve(H, g, assume_a="sym")
        except (linalg.LinAlgError, linalg.LinAlgWarning):
            return np.linalg.lstsq(H, g, rcond=None)[0]


def _fisher_scoring(problem: _MLProblem, th: np.ndarray, maxit: int = 500, tol: float = 1e-9
                    ) -> tuple[np.ndarray, bool]:
    """Minimize the ML discrepancy by Fisher scoring with step halving, finished by Newton steps.

    Fisher scoring steps with the expected Hessian (:meth:`_MLProblem.information`). When the
    model fits badly the expected and observed Hessians differ and scoring converges only
    linearly (rate 0.57 on the tiny test year), down to where F no longer decreases measurably
    while the gradient is still far from zero (~25 evaluations an iteration, 500 iterations).
    After :data:`_SLOW_ITERATIONS` slow or :data:`_STALL_ITERATIONS` flat iterations in a row
    (or :data:`_FISHER_ITERATIONS` in all) a step uses the observed Hessian when it is
    positive definite (Newton, quadratic convergence); a Newton step that decreases F fast resets
    the slow and flat counts, so scoring resumes until it slows again (after
    :data:`_FISHER_ITERATIONS`, every step is Newton's); fits that converge fast never switch,
    so their estimates are those of pure Fisher scoring. A Newton step is also accepted when F is
    flat to rounding (:math:`64\\,\\epsilon\\max(1,|F|)`) and the largest gradient component
    decreases. Converged: the largest gradient component below ``tol`` (below 1e-6 when no
    step improves). Unbounded, like lavaan (a Heywood case shows up as a negative residual
    variance).
    """
    f, g = problem.objective(th)
    flat = slow = 0
    decrease = np.inf
    for it in range(maxit):
        newton = flat >= _STALL_ITERATIONS or slow >= _SLOW_ITERATIONS or it >= _FISHER_ITERATIONS
        H = problem.information(th, observed=newton)
        if newton:
            try:
                linalg.cho_factor(H)
            except linalg.LinAlgError:        # not near a minimum: keep scoring
                H = problem.information(th)
        step = _newton_direction(H, g)
        g_max, f_round = np.max(np.abs(g)), 64 * np.finfo(float).eps * max(1.0, abs(f))
        t = 1.0
        while t > 1e-8:
            cand = th - t * step
            fc, gc = problem.objective(cand)
            if fc <= f + 1e-15 or (newton and fc <= f + f_round and np.max(np.abs(gc)) < g_max):
                break
            t /= 2
        else:
            return th, bool(g_max < 1e-6)
        flat = flat + 1 if f - fc < 1e-15 else 0
        slow = slow + 1 if f - fc > max(_SLOW_RATE * decrease, 0.0) else 0
        decrease = f - fc
        done = f - fc < 1e-15 and np.max(np.abs(gc)) < tol
        th, f, g = cand, fc, gc
        if done or np.max(np.abs(g)) < tol * 1e-2:
            return th, True
    return th, bool(np.max(np.abs(g)) < 1e-6)


def cfa(df: pd.DataFrame, model: str | Mapping[str, Sequence[str]], conditional_items: Sequence[str] = (
        "c15", "c16", "c17", "c18"), feedback_column: str = "gave_feedback") -> CFAResult:
    """Confirmatory factor analysis by maximum likelihood, reproducing ``lavaan::cfa`` defaults.

    Model: :math:`\\Sigma(\\theta)=\\Lambda\\Phi\\Lambda'+\\Theta` with simple structure, the first
    loading of each factor fixed to 1, free factor covariances and diagonal residual
    variances. Estimation minimizes
    :math:`F_{ML}=\\log|\\Sigma|+\\operatorname{tr}(S\\Sigma^{-1})-\\log|S|-p` with :math:`S` the
    covariance matrix with divisor :math:`N` (lavaan's ``likelihood = "normal"``). Missing
    data: complete cases (lavaan's default listwise deletion); if the model contains the
    section V items, only respondents with ``feedback_column`` true are used (structural
    missingness, see the module notes).

    Fit: :math:`\\chi^2=N F_{ML}`, df = p(p+1)/2 - npar; baseline = independence model;
    :math:`CFI=1-\\max(\\chi^2-df,0)/\\max(\\chi^2_b-df_b,\\chi^2-df,0)`;
    :math:`TLI=(\\chi^2_b/df_b-\\chi^2/df)/(\\chi^2_b/df_b-1)`;
    :math:`RMSEA=\\sqrt{\\max(\\chi^2-df,0)/(N\\,df)}` with the 90 % interval from the
    non-central :math:`\\chi^2` and the p-value of close fit (RMSEA <= .05);
    SRMR (Bentler) :math:`=\\sqrt{\\sum_{i\\le j}((s_{ij}-\\hat\\sigma_{ij})/\\sqrt{s_{ii}s_{jj}})^2/(p(p+1)/2)}`;
    AIC and BIC from the normal log-likelihood. Composite reliability
    :math:`CR=(\\sum\\lambda^*)^2/((\\sum\\lambda^*)^2+\\sum(1-\\lambda^{*2}))` and
    :math:`AVE=\\overline{\\lambda^{*2}}` use the standardized loadings :math:`\\lambda^*`.
    """
    spec = parse_model(model)
    items = [it for its in spec.values() for it in its]
    data = analysis_rows(df, items, conditional_items, feedback_column) if feedback_column in df.columns \
        else df
    X, _, items = _matrix(data, items, None, what="a CFA", min_rows=_MIN_ROWS)
    X = X[~np.isnan(X).any(axis=1)]
    N, p = X.shape
    nf = len(spec)
    if N < max(p + 2, _MIN_ROWS):
        raise ValueError(f"a CFA of {p} items needs more than {p + 1} complete rows; only {N} respondents "
                         "answered every item")
    S = np.cov(X, rowvar=False, bias=True)
    sign, logdet_S = np.linalg.slogdet(S)
    if sign <= 0:
        raise ValueError("the covariance matrix of the complete cases is singular; check for items that are "
                         "exact copies or sums of others")
    problem = _MLProblem(S, logdet_S, np.repeat(np.arange(nf), [len(v) for v in spec.values()]))
    fac_of, var = problem.fac_of, np.diag(S)
    th, converged = _fisher_scoring(problem, problem.start())
    f_min = problem.objective(th)[0]
    Lam, Phi, theta = problem.unpack(th)
    Sig = Lam @ Phi @ Lam.T + np.diag(theta)
    npar = len(th)
    dfree = p * (p + 1) // 2 - npar
    chisq = N * f_min
    base = N * (np.log(var).sum() - logdet_S)
    base_df = p * (p - 1) // 2
    cfi_den = max(base - base_df, chisq - dfree, 0.0)
    cfi_v = 1.0 - max(chisq - dfree, 0.0) / cfi_den if cfi_den > 0 else 1.0
    tli_v = ((base / base_df) - (chisq / dfree)) / ((base / base_df) - 1) if dfree > 0 else np.nan
    rmsea = math.sqrt(max(chisq - dfree, 0.0) / (N * dfree)) if dfree > 0 else 0.0
    lo, hi = _rmsea_ci(chisq, dfree, N) if dfree > 0 else (np.nan, np.nan)
    rmsea_p = float(stats.ncx2.sf(chisq, dfree, N * dfree * 0.05 ** 2)) if dfree > 0 else np.nan
    sd = np.sqrt(var)
    resid = (S - Sig) / np.outer(sd, sd)
    iu = np.triu_indices(p)
    srmr = math.sqrt(np.mean(resid[iu] ** 2))
    loglik = -N / 2 * (p * math.log(2 * math.pi) + np.linalg.slogdet(Sig)[1]
                       + np.trace(linalg.solve(Sig, S, assume_a="pos")))
    fit = pd.DataFrame([{
        "n": N, "n_items": p, "n_factors": nf, "npar": npar, "chisq": chisq, "df": dfree,
        "pvalue": float(stats.chi2.sf(chisq, dfree)) if dfree > 0 else np.nan,
        "baseline_chisq": base, "baseline_df": base_df, "cfi": cfi_v, "tli": tli_v, "rmsea": rmsea,
        "rmsea_ci_low": lo, "rmsea_ci_high": hi, "rmsea_pvalue": rmsea_p, "srmr": srmr,
        "aic": -2 * loglik + 2 * npar, "bic": -2 * loglik + npar * math.log(N),
        "converged": converged}])
    lam = Lam[np.arange(p), fac_of]
    std = lam * np.sqrt(np.diag(Phi)[fac_of]) / np.sqrt(np.diag(Sig))
    names = list(spec)
    loadings = pd.DataFrame({"factor": [names[f_] for f_ in fac_of], "item": items, "est": lam, "std": std,
                             "residual_var": theta})
    rel = []
    for f_, nm in enumerate(names):
        s = std[fac_of == f_]
        rel.append({"factor": nm, "n_items": len(s),
                    "cr": s.sum() ** 2 / (s.sum() ** 2 + (1 - s ** 2).sum()), "ave": float(np.mean(s ** 2))})
    d = 1 / np.sqrt(np.diag(Phi))
    phi = pd.DataFrame(Phi * d[:, None] * d[None, :], index=names, columns=names)
    return CFAResult(fit=fit, loadings=loadings, reliability=pd.DataFrame(rel), phi=phi)
