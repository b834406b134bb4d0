"""Factor analysis: KMO, Bartlett's test, EFA (minres / ML) with varimax and oblimin rotations,
Schmid–Leiman, McDonald's omega and Horn's parallel analysis (``psych``, ``GPArotation``).

Core layer. References: Kaiser (1970) Psychometrika 35:401; Bartlett (1951) JRSS-B 13:1;
Jennrich (2002) Psychometrika 67:7; Schmid & Leiman (1957) Psychometrika 22:53; McDonald (1999)
Test theory; Horn (1965) Psychometrika 30:179.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import linalg, optimize, stats

from sipas_lib.reliability.base import _cov2cor, _matrix, _pairwise, _smc
from sipas_lib.reliability.polychoric import _polychoric_matrix

# --------------------------------------------------------------------------- factor analysis
def _eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = linalg.eigh(S)
    return vals[::-1], vecs[:, ::-1]


def _minres_obj(psi: np.ndarray, S: np.ndarray, nf: int) -> float:
    Sr = S.copy()
    np.fill_diagonal(Sr, 1.0 - psi)    # psych: diag(S) <- 1 - Psi (S a correlation matrix)
    vals, vecs = _eigh_desc(Sr)
    vals = np.where(vals < np.finfo(float).eps, 100 * np.finfo(float).eps, vals)
    L = vecs[:, :nf] * np.sqrt(vals[:nf])
    res = S - L @ L.T
    iu = np.tril_indices(S.shape[0], -1)
    return float((res[iu] ** 2).sum())


def _minres_grad(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    vals, vecs = _eigh_desc(S - np.diag(psi))
    L = vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf], 0))
    return np.diag(L @ L.T) + psi - np.diag(S)


def _ml_obj(psi: np.ndarray, S: np.ndarray, nf: int) -> float:
    sc = 1 / np.sqrt(psi)
    vals = linalg.eigvalsh(S * sc[:, None] * sc[None, :])[::-1]
    e = vals[nf:]
    return float(-(np.sum(np.log(e) - e) - nf + S.shape[0]))


def _ml_loadings(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    sc = 1 / np.sqrt(psi)
    vals, vecs = _eigh_desc(S * sc[:, None] * sc[None, :])
    return np.sqrt(psi)[:, None] * (vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf] - 1, 0)))


def _ml_grad(psi: np.ndarray, S: np.ndarray, nf: int) -> np.ndarray:
    L = _ml_loadings(psi, S, nf)
    g = L @ L.T + np.diag(psi) - S
    return np.diag(g) / psi ** 2


def _fit_factors(S: np.ndarray, nf: int, fm: str) -> tuple[np.ndarray, np.ndarray]:
    """Unrotated loadings and uniquenesses (psych::fa's ``fit``), solved to tight tolerance."""
    smc = _smc(S)
    upper = max(smc.max(), 1.0)
    start = np.diag(S) - smc
    if fm == "minres":
        fun, jac = _minres_obj, _minres_grad
    else:
        fun, jac = _ml_obj, _ml_grad
    # R's optim(method = "L-BFGS-B", control = list(parscale = rep(0.01, p))) with its defaults
    # (factr = 1e7, pgtol = 0, lmm = 5): same scaling and stopping rule, so the solution lands
    # where psych's does (the exact optimum differs by ~1e-4 in flat directions).
    scale = 0.01
    res = optimize.minimize(lambda y: fun(y * scale, S, nf), start / scale,
                            jac=lambda y: jac(y * scale, S, nf) * scale, method="L-BFGS-B",
                            bounds=[(0.005 / scale, upper / scale)] * len(start),
                            options={"ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxcor": 5,
                                     "maxiter": 100})
    psi = res.x * scale
    if fm == "minres":
        vals, vecs = _eigh_desc(S - np.diag(psi))
        L = vecs[:, :nf] * np.sqrt(np.maximum(vals[:nf], 0))
    else:
        L = _ml_loadings(psi, S, nf)
    return L, psi


def _varimax(L: np.ndarray, normalize: bool = True, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """R's ``stats::varimax`` (Kaiser normalization, same stopping rule)."""
    nc = L.shape[1]
    if nc < 2:
        return L, np.eye(nc)
    x = L.copy()
    if normalize:
        sc = np.sqrt((x ** 2).sum(axis=1))
        x = x / sc[:, None]
    p = x.shape[0]
    TT = np.eye(nc)
    d = 0.0
    for _ in range(1000):
        z = x @ TT
        B = x.T @ (z ** 3 - z @ np.diag((z ** 2).sum(axis=0)) / p)
        u, s, vt = linalg.svd(B)
        TT = u @ vt
        dpast, d = d, s.sum()
        if d < dpast * (1 + eps):
            break
    z = x @ TT
    if normalize:
        z = z * sc[:, None]
    return z, TT


def _oblimin(A: np.ndarray, gam: float = 0.0, eps: float = 1e-5, maxit: int = 1000
             ) -> tuple[np.ndarray, np.ndarray]:
    """GPArotation::oblimin (gradient projection, Jennrich 2002), unnormalized, same stopping rule.

    Returns pattern loadings and the factor correlation matrix :math:`\\Phi = T'T`.
    """
    p, m = A.shape
    off = 1.0 - np.eye(m)

    def vgq(L):
        X = (L ** 2) @ off
        if gam != 0:
            X = (np.eye(p) - gam / p) @ X
        return L * X, float(np.sum(L ** 2 * X) / 4)

    Tm = np.eye(m)
    al = 1.0
    L = A @ linalg.inv(Tm).T
    Gq, f = vgq(L)
    G = -(L.T @ Gq @ linalg.inv(Tm)).T
    for _ in range(maxit + 1):
        Gp = G - Tm @ np.diag((Tm * G).sum(axis=0))
        s = math.sqrt(float(np.sum(Gp ** 2)))
        if s < eps:
            break
        al = 2 * al
        for _i in range(11):
            Xm = Tm - al * Gp
            v = 1 / np.sqrt((Xm ** 2).sum(axis=0))
            Tt = Xm * v[None, :]
            L = A @ linalg.inv(Tt).T
            Gqt, ft = vgq(L)
            if f - ft > 0.5 * s ** 2 * al:
                break
            al = al / 2
        Tm = Tt
        f = ft
        G = -(L.T @ Gqt @ linalg.inv(Tt)).T
    return L, Tm.T @ Tm


def _fa(S: np.ndarray, nf: int, fm: str = "minres", rotate: str = "oblimin"):
    """psych::fa on a correlation matrix: loadings, Phi, communalities, uniquenesses, values."""
    if fm not in ("minres", "ml"):
        raise ValueError(f"unknown factoring method {fm!r}; use 'minres' or 'ml'")
    if rotate not in ("oblimin", "varimax", "none"):
        raise ValueError(f"unknown rotation {rotate!r}; use 'oblimin', 'varimax' or 'none'")
    L, psi = _fit_factors(S, nf, fm)
    sgn = np.sign(L.sum(axis=0))
    sgn[sgn == 0] = 1
    L = L * sgn
    L[L == 0] = 1e-15
    model = L @ L.T
    Phi = None
    if nf > 1 and rotate == "varimax":
        L, _ = _varimax(L)
    elif nf > 1 and rotate == "oblimin":
        L, Phi = _oblimin(L)
    sgn = np.sign(L.sum(axis=0))
    sgn[sgn == 0] = 1
    L = L * sgn
    if Phi is not None:
        Phi = Phi * sgn[:, None] * sgn[None, :]
    if nf > 1:
        ev = np.diag(L.T @ L) if Phi is None else np.diag(Phi @ L.T @ L)
        order = np.argsort(-ev, kind="stable")
        L = L[:, order]
        if Phi is not None:
            Phi = Phi[np.ix_(order, order)]
    Sm = S.copy()
    np.fill_diagonal(Sm, np.diag(model))
    values = np.sort(linalg.eigvalsh(Sm))[::-1]
    return {"loadings": L, "Phi": Phi, "communality": np.diag(model),
            "uniquenesses": np.diag(S - model), "values": values, "psi": psi}


def _corr(df, items, weights, corr: str, what: str):
    X, w, items = _matrix(df, items, weights, what=what)
    if corr == "pearson":
        R = _pairwise(X, w, "cor")
    elif corr == "polychoric":
        R, _, _ = _polychoric_matrix(X, w, items)
    else:
        raise ValueError(f"unknown correlation {corr!r}; use 'pearson' or 'polychoric'")
    if not np.all(np.isfinite(R)):
        raise ValueError("some pairs of items were never answered together; the correlation matrix is incomplete")
    return R, X, items


@dataclass(frozen=True)
class EFAResult:
    """An exploratory factor solution (``psych::fa``).

    Attributes
    ----------
    loadings
        Tidy: one row per item with the factor columns (``MR1``.. or ``ML1``..),
        ``communality`` (h2) and ``uniqueness`` (u2).
    phi
        Factor correlations (oblique rotations), else ``None``.
    eigenvalues
        Eigenvalues of the reduced correlation matrix (psych's ``values``).
    """

    loadings: pd.DataFrame
    phi: pd.DataFrame | None
    eigenvalues: np.ndarray
    method: str
    rotation: str
    n: int

    def long(self) -> pd.DataFrame:
        """Loadings in long form: ``item, factor, loading``."""
        fac = [c for c in self.loadings.columns if c not in ("item", "communality", "uniqueness")]
        return self.loadings.melt(id_vars="item", value_vars=fac, var_name="factor", value_name="loading")


def efa(df: pd.DataFrame, items: Sequence[str], n_factors: int, method: str = "minres",
        rotation: str = "oblimin", corr: str = "pearson", weights: str | None = None) -> EFAResult:
    """Exploratory factor analysis, as ``psych::fa``.

    ``method="minres"`` minimizes the sum of squared off-diagonal residuals
    :math:`\\sum_{i<j}(r_{ij}-\\lambda_i'\\lambda_j)^2`; ``method="ml"`` maximizes the normal
    likelihood (the discrepancy :math:`\\log|\\Sigma|+\\operatorname{tr}(R\\Sigma^{-1})-\\log|R|-p`
    with :math:`\\Sigma=\\Lambda\\Lambda'+\\Psi`). Both start from :math:`1-SMC` and bound the
    uniquenesses to [0.005, 1]. ``rotation`` is ``"oblimin"`` (GPArotation::oblimin, gamma 0,
    unnormalized), ``"varimax"`` (stats::varimax, Kaiser-normalized) or ``"none"``. Factors are
    signed to positive column sums and ordered by explained variance, as psych does.
    ``corr="polychoric"`` factors the polychoric matrix instead of Pearson correlations.
    """
    if not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ValueError(f"n_factors must be a positive integer, got {n_factors!r}")
    R, X, items = _corr(df, items, weights, corr, "factor analysis")
    p = len(items)
    dof = ((p - n_factors) ** 2 - (p + n_factors)) / 2
    if n_factors >= p or dof < 0:
        raise ValueError(f"{n_factors} factors are too many for {p} items")
    out = _fa(R, n_factors, method, rotation)
    prefix = "MR" if method == "minres" else "ML"
    cols = [f"{prefix}{j + 1}" for j in range(n_factors)]
    lt = pd.DataFrame(out["loadings"], columns=cols)
    lt.insert(0, "item", items)
    lt["communality"] = out["communality"]
    lt["uniqueness"] = out["uniquenesses"]
    phi = None if out["Phi"] is None else pd.DataFrame(out["Phi"], index=cols, columns=cols)
    return EFAResult(loadings=lt, phi=phi, eigenvalues=out["values"], method=method,
                     rotation=rotation, n=X.shape[0])


def schmid_leiman(R: np.ndarray | pd.DataFrame, n_factors: int = 3, fm: str = "minres") -> pd.DataFrame:
    """Schmid-Leiman transformation of an oblimin solution (``psych::schmid``).

    Steps: ``fa(R, n_factors, fm, rotate="varimax")``; oblimin rotation of those loadings
    (pattern :math:`F`, factor correlations :math:`\\Phi`); general-factor loadings of the
    group factors :math:`g` from a one-factor ``fa`` of :math:`\\Phi` (two factors:
    :math:`g_1=g_2=\\sqrt{|\\phi_{12}|}`); item loadings on the general factor :math:`Fg` and on
    the residualized group factors :math:`\\operatorname{sign}(F)\\sqrt{F^2(1-g^2)}`.

    Returns
    -------
    pandas.DataFrame
        One row per item: ``item, g, F1*, .., h2, u2, p2`` (p2 = g^2/h2).
    """
    names = list(R.columns) if isinstance(R, pd.DataFrame) else [f"V{i + 1}" for i in range(len(R))]
    R = np.asarray(R, float)
    orth = _fa(R, n_factors, fm, "varimax")["loadings"]
    h2 = (orth ** 2).sum(axis=1)
    if n_factors == 1:
        fload, gload = orth, np.array([1.0])
    else:
        fload, Phi = _oblimin(orth)
        if n_factors > 2:
            gload = _fa(Phi, 1, fm, "none")["loadings"][:, 0]
        else:
            g = math.sqrt(abs(Phi[0, 1]))
            gload = np.array([g, math.copysign(g, Phi[0, 1])])
    g = fload @ gload
    diagm = np.diag(R)
    uniq2 = np.clip(diagm[:, None] - (diagm[:, None] - fload ** 2) - (fload * gload) ** 2, 0, None)
    sm = np.sign(fload) * np.sqrt(uniq2)
    out = pd.DataFrame(sm, columns=[f"F{j + 1}*" for j in range(n_factors)])
    out.insert(0, "g", g)
    out.insert(0, "item", names)
    out["h2"] = h2
    out["u2"] = diagm - h2
    out["p2"] = g ** 2 / h2
    return out


def omega(df: pd.DataFrame, items: Sequence[str], n_factors: int = 3, fm: str = "minres",
          corr: str = "pearson", weights: str | None = None, label: str | None = None) -> pd.DataFrame:
    """McDonald's omega total and omega hierarchical via Schmid-Leiman, as ``psych::omega``.

    With :math:`R` the (pairwise) correlation matrix, items reversed where their general
    loading is negative (psych's ``flip``), :math:`V_t=\\mathbf 1'R\\mathbf 1`, general loadings
    :math:`g` and communalities :math:`h^2` from :func:`schmid_leiman`:

    .. math:: \\omega_h = \\frac{(\\sum g)^2}{V_t}, \\qquad
              \\omega_t = \\frac{V_t-\\sum(1-h^2)}{V_t}, \\qquad
              \\omega_{lim} = \\frac{(\\sum g)^2}{V_t-\\sum(1-h^2)}.

    ``alpha`` (standardized) and Guttman's :math:`\\lambda_6` (``g6``) of the same matrix are
    reported alongside. With ``n_factors=1`` omega_h equals omega_t (one common factor).

    Returns
    -------
    pandas.DataFrame
        One row: ``scale, n_items, n, n_factors, omega_h, omega_total, omega_lim, alpha, g6, ecv``.
    """
    if not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ValueError(f"n_factors must be a positive integer, got {n_factors!r}")
    R, X, items = _corr(df, items, weights, corr, "omega")
    p = len(items)
    if n_factors >= p:
        raise ValueError(f"omega with {n_factors} group factors needs more than {n_factors} items; got {p}")
    sl = schmid_leiman(pd.DataFrame(R, index=items, columns=items), n_factors, fm)
    key = np.sign(sl["g"].to_numpy())
    key[key == 0] = 1
    m = R * key[:, None] * key[None, :]
    g = sl["g"].to_numpy() * key
    Vt = m.sum()
    u2 = sl["u2"].sum()
    gsq = g.sum() ** 2
    ev = (sl[["g"] + [f"F{j + 1}*" for j in range(n_factors)]] ** 2).sum(axis=0).to_numpy()
    return pd.DataFrame([{
        "scale": label if label is not None else f"{items[0]}..{items[-1]}", "n_items": p,
        "n": X.shape[0], "n_factors": n_factors, "omega_h": gsq / Vt, "omega_total": (Vt - u2) / Vt,
        "omega_lim": gsq / (Vt - u2), "alpha": (Vt - np.trace(m)) / Vt * p / (p - 1),
        "g6": (Vt + _smc(m).sum() - np.trace(m)) / Vt, "ecv": ev[0] / ev.sum()}])


def kmo(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Kaiser-Meyer-Olkin measure of sampling adequacy, overall and per item (``psych::KMO``).

    With :math:`r_{ij}` the correlations and :math:`q_{ij}` the partial (anti-image)
    correlations from :math:`R^{-1}`,
    :math:`MSA=\\sum_{i\\ne j}r_{ij}^2/(\\sum_{i\\ne j}r_{ij}^2+\\sum_{i\\ne j}q_{ij}^2)`; the
    item MSA sums over column :math:`i` only. Kaiser (1974): >= .80 meritorious, >= .60 mediocre,
    < .50 unacceptable.

    Returns
    -------
    pandas.DataFrame
        One row per item plus a row ``item="overall"``: ``item, msa``.
    """
    R, _, items = _corr(df, items, weights, "pearson", "KMO")
    try:
        Q = linalg.inv(R)
    except linalg.LinAlgError as exc:
        raise ValueError("the correlation matrix is singular (an item is a linear combination of others); "
                         "KMO is undefined") from exc
    Q = _cov2cor(Q)
    np.fill_diagonal(Q, 0)
    r = R.copy()
    np.fill_diagonal(r, 0)
    r2, q2 = (r ** 2), (Q ** 2)
    msa = r2.sum() / (r2.sum() + q2.sum())
    msai = r2.sum(axis=0) / (r2.sum(axis=0) + q2.sum(axis=0))
    return pd.DataFrame({"item": items + ["overall"], "msa": np.append(msai, msa)})


def bartlett_sphericity(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Bartlett's test that the correlation matrix is an identity (``psych::cortest.bartlett``).

    .. math:: \\chi^2 = -\\log|R|\\,\\big(n-1-(2p+5)/6\\big), \\quad df = p(p-1)/2,

    with :math:`n` the number of respondents (rows with at least one answer) and :math:`R` the
    pairwise correlation matrix.
    """
    R, X, items = _corr(df, items, weights, "pearson", "Bartlett's test")
    n, p = X.shape
    sign, logdet = np.linalg.slogdet(R)
    if sign <= 0:
        raise ValueError("the correlation matrix is not positive definite; Bartlett's test is undefined")
    chisq = -logdet * (n - 1 - (2 * p + 5) / 6)
    dfree = p * (p - 1) / 2
    return pd.DataFrame([{"chisq": chisq, "df": dfree, "p_value": float(stats.chi2.sf(chisq, dfree)),
                          "n": n, "n_items": p}])


def parallel_analysis(df: pd.DataFrame, items: Sequence[str], n_iter: int = 20,
                      seed: int | np.random.Generator | None = None, quantile: float = 0.95, fm: str = "minres", weights: str | None = None) -> pd.DataFrame:
    """Horn's parallel analysis with simulated normal data, as ``psych::fa.parallel(sim=TRUE)``.

    The simulated correlation matrices are those of ``n`` independent standard normal
    variables; they are drawn from their exact (Wishart) distribution rather than by
    generating the raw data, which gives the same distribution at a fraction of the cost.

    Observed eigenvalues of the correlation matrix (components, ``pc_observed``) and of the
    reduced matrix with one-factor ``fm`` communalities on the diagonal (factors,
    ``fa_observed``) are compared with the mean and the ``quantile`` of the same eigenvalues
    from ``n_iter`` data sets of independent normal variables of the same size (seeded). A
    component/factor is retained while the observed eigenvalue exceeds the simulated mean
    (psych's rule); the quantile is reported for the stricter reading.

    Returns
    -------
    pandas.DataFrame
        One row per position: ``number, pc_observed, pc_sim_mean, pc_sim_q, fa_observed,
        fa_sim_mean, fa_sim_q, retain_pc, retain_fa``. ``attrs`` is not used; the numbers of
        components and factors to retain are ``retain_pc.sum()`` and ``retain_fa.sum()``.
    """
    R, X, items = _corr(df, items, weights, "pearson", "parallel analysis")
    n, p = X.shape
    pc = np.sort(linalg.eigvalsh(R))[::-1]
    fa_obs = _fa(R, 1, fm, "none")["values"]
    rng = np.random.default_rng(seed)
    pcs = np.empty((n_iter, p))
    fas = np.empty((n_iter, p))
    lower = np.tril_indices(p, -1)
    for b in range(n_iter):
        # The correlation matrix of n independent normal p-vectors, drawn directly: the
        # scatter matrix is Wishart(n - 1, I) (Bartlett decomposition W = A A').
        A = np.zeros((p, p))
        A[np.diag_indices(p)] = np.sqrt(rng.chisquare(n - 1 - np.arange(p)))
        A[lower] = rng.standard_normal(len(lower[0]))
        C = A @ A.T
        d = 1 / np.sqrt(np.diag(C))
        Rs = C * d[:, None] * d[None, :]
        pcs[b] = np.sort(linalg.eigvalsh(Rs))[::-1]
        fas[b] = _fa(Rs, 1, fm, "none")["values"]
    out = pd.DataFrame({"number": np.arange(1, p + 1), "pc_observed": pc, "pc_sim_mean": pcs.mean(axis=0),
                        "pc_sim_q": np.quantile(pcs, quantile, axis=0), "fa_observed": fa_obs,
                        "fa_sim_mean": fas.mean(axis=0), "fa_sim_q": np.quantile(fas, quantile, axis=0)})
    out["retain_pc"] = np.cumprod(out["pc_observed"] > out["pc_sim_mean"]).astype(bool)
    out["retain_fa"] = np.cumprod(out["fa_observed"] > out["fa_sim_mean"]).astype(bool)
    return out
