"""Polychoric correlations (two-step, Olsson 1979) and ordinal alpha (Zumbo et al. 2007).

Core layer. Reproduces ``psych::polychoric`` (bivariate normal probabilities by Drezner–Wesolowsky
/ Genz Gauss–Legendre quadrature, R's Brent minimiser) and the standardized alpha of the
polychoric matrix.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import linalg, special

from sipas_lib.reliability.alpha import _feldt
from sipas_lib.reliability.base import _cov2cor, _matrix

# --------------------------------------------------------------------------- bivariate normal
_GL = {
    6: (np.array([0.1713244923791705, 0.3607615730481384, 0.4679139345726904]),
        np.array([0.9324695142031522, 0.6612093864662647, 0.2386191860831970])),
    12: (np.array([0.04717533638651177, 0.1069393259953183, 0.1600783285433464,
                   0.2031674267230659, 0.2334925365383547, 0.2491470458134029]),
         np.array([0.9815606342467191, 0.9041172563704750, 0.7699026741943050,
                   0.5873179542866171, 0.3678314989981802, 0.1252334085114692])),
    20: (np.array([0.01761400713915212, 0.04060142980038694, 0.06267204833410906,
                   0.08327674157670475, 0.1019301198172404, 0.1181945319615184,
                   0.1316886384491766, 0.1420961093183821, 0.1491729864726037,
                   0.1527533871307259]),
         np.array([0.9931285991850949, 0.9639719272779138, 0.9122344282513259,
                   0.8391169718222188, 0.7463319064601508, 0.6360536807265150,
                   0.5108670019508271, 0.3737060887154196, 0.2277858511416451,
                   0.07652652113349733])),
}


def _bvnu(h: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(X > h, Y > k) for a standard bivariate normal with correlation r (finite h, k).

    Genz (2004) "Numerical computation of rectangular bivariate and trivariate normal and t
    probabilities", Statistics and Computing 14:251 — the algorithm R's mnormt/mvtnorm use.
    """
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(r, float))
    out = np.empty(h.shape)
    ar = np.abs(r)
    tp = 2 * np.pi
    Phi = special.ndtr
    for ng, sel in ((6, ar < 0.3), (12, (ar >= 0.3) & (ar < 0.75)), (20, ar >= 0.75)):
        if not sel.any():
            continue
        wg, xg = _GL[ng]
        w2 = np.concatenate([wg, wg])
        x2 = np.concatenate([1 - xg, 1 + xg])
        hh, kk, rr = h[sel], k[sel], r[sel]
        hk = hh * kk
        res = np.empty(hh.shape)
        small = np.abs(rr) < 0.925
        if small.any():
            hs = (hh[small] ** 2 + kk[small] ** 2) / 2
            asr = np.arcsin(rr[small]) / 2
            sn = np.sin(asr[:, None] * x2[None, :])
            bvn = np.exp((sn * hk[small, None] - hs[:, None]) / (1 - sn ** 2)) @ w2
            res[small] = bvn * asr / tp + Phi(-hh[small]) * Phi(-kk[small])
        big = ~small
        if big.any():
            H, K, R_ = hh[big], kk[big].copy(), rr[big]
            HK = hk[big].copy()
            neg = R_ < 0
            K[neg] = -K[neg]
            HK[neg] = -HK[neg]
            bvn = np.zeros(H.shape)
            lt1 = np.abs(R_) < 1
            if lt1.any():
                Hh, Kk, hkk = H[lt1], K[lt1], HK[lt1]
                as_ = 1 - R_[lt1] ** 2
                a = np.sqrt(as_)
                bs = (Hh - Kk) ** 2
                asr = -(bs / as_ + hkk) / 2
                c = (4 - hkk) / 8
                d = (12 - hkk) / 80
                v = np.where(asr > -100, a * np.exp(asr) * (1 - c * (bs - as_) * (1 - d * bs) / 3 + c * d * as_ ** 2), 0.0)
                b = np.sqrt(bs)
                with np.errstate(divide="ignore", invalid="ignore"):
                    sp = math.sqrt(tp) * Phi(-b / a)
                    v = np.where(hkk > -100, v - np.exp(-hkk / 2) * sp * b * (1 - c * bs * (1 - d * bs) / 3), v)
                a2 = a / 2
                xs = (a2[:, None] * x2[None, :]) ** 2
                asr2 = -(bs[:, None] / xs + hkk[:, None]) / 2
                ok = asr2 > -100
                spp = 1 + c[:, None] * xs * (1 + 5 * d[:, None] * xs)
                rs = np.sqrt(1 - xs)
                ep = np.exp(-(hkk[:, None] / 2) * xs / (1 + rs) ** 2) / rs
                term = np.where(ok, np.exp(np.where(ok, asr2, 0.0)) * (spp - ep), 0.0) @ w2
                bvn[lt1] = (a2 * term - v) / tp
            pos = R_ > 0
            mx = np.maximum(H, K)
            L = np.where(H < 0, Phi(K) - Phi(H), Phi(-H) - Phi(-K))
            bvn = np.where(pos, bvn + Phi(-mx), np.where(H >= K, -bvn, L - bvn))
            res[big] = bvn
        out[sel] = res
    return np.clip(out, 0.0, 1.0)


def bvn_cdf(h, k, r) -> np.ndarray:
    """Standard bivariate normal CDF :math:`\\Phi_2(h, k; r) = P(X \\le h, Y \\le k)`.

    Vectorized; accepts infinite limits. Accurate to about 1e-15 (Genz 2004).
    """
    h, k, r = np.broadcast_arrays(np.asarray(h, float), np.asarray(k, float), np.asarray(r, float))
    out = np.zeros(h.shape)
    fin = np.isfinite(h) & np.isfinite(k)
    if fin.any():
        out[fin] = _bvnu(-h[fin], -k[fin], r[fin])
    hi_h, hi_k = np.isposinf(h), np.isposinf(k)
    out[hi_h & np.isfinite(k)] = special.ndtr(k[hi_h & np.isfinite(k)])
    out[hi_k & np.isfinite(h)] = special.ndtr(h[hi_k & np.isfinite(h)])
    out[hi_h & hi_k] = 1.0
    out[np.isneginf(h) | np.isneginf(k)] = 0.0
    return out


# --------------------------------------------------------------------------- polychoric
_BRENT_C = (3.0 - math.sqrt(5.0)) * 0.5
_SQRT_EPS = math.sqrt(np.finfo(float).eps)


def _brent_fmin(f, a: np.ndarray, b: np.ndarray, tol: float, maxiter: int = 200) -> np.ndarray:
    """R's ``optimize`` (Brent 1973 ``fmin`` as in R's ``Brent_fmin``), vectorized over problems.

    ``f`` maps a vector of abscissae (one per problem) to objective values; every problem
    follows exactly the path R's scalar code would take.
    """
    a, b = a.astype(float).copy(), b.astype(float).copy()
    v = a + _BRENT_C * (b - a)
    w, x = v.copy(), v.copy()
    d = np.zeros_like(a)
    e = np.zeros_like(a)
    fx = f(x, np.ones(a.shape, bool))
    fv, fw = fx.copy(), fx.copy()
    tol3 = tol / 3.0
    active = np.ones(a.shape, bool)
    for _ in range(maxiter):
        xm = (a + b) * 0.5
        tol1 = _SQRT_EPS * np.abs(x) + tol3
        t2 = tol1 * 2.0
        active &= ~(np.abs(x - xm) <= t2 - (b - a) * 0.5)
        if not active.any():
            break
        p = np.zeros_like(a)
        q = np.zeros_like(a)
        r = np.zeros_like(a)
        par = active & (np.abs(e) > tol1)
        r_ = (x - w) * (fx - fv)
        q_ = (x - v) * (fx - fw)
        p_ = (x - v) * q_ - (x - w) * r_
        q_ = (q_ - r_) * 2.0
        p_ = np.where(q_ > 0, -p_, p_)
        q_ = np.abs(q_)
        p = np.where(par, p_, p)
        q = np.where(par, q_, q)
        r = np.where(par, e, r)
        e = np.where(par, d, e)
        golden = (np.abs(p) >= np.abs(q * 0.5 * r)) | (p <= q * (a - x)) | (p >= q * (b - x))
        e_g = np.where(x < xm, b - x, a - x)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_p = p / q
        u_p = x + d_p
        near = (u_p - a < t2) | (b - u_p < t2)
        d_p = np.where(near, np.where(x >= xm, -tol1, tol1), d_p)
        e = np.where(active & golden, e_g, e)
        d = np.where(active, np.where(golden, _BRENT_C * e_g, d_p), d)
        u = np.where(np.abs(d) >= tol1, x + d, np.where(d > 0, x + tol1, x - tol1))
        u = np.where(active, u, x)
        fu = f(u, active)
        better = active & (fu <= fx)
        worse = active & ~(fu <= fx)
        # fu <= fx
        b = np.where(better & (u < x), x, b)
        a = np.where(better & ~(u < x), x, a)
        # fu > fx
        a = np.where(worse & (u < x), u, a)
        b = np.where(worse & ~(u < x), u, b)
        c1 = worse & ((fu <= fw) | (w == x))
        c2 = worse & ~c1 & ((fu <= fv) | (v == x) | (v == w))
        nv = np.where(better, w, np.where(c1, w, np.where(c2, u, v)))
        nfv = np.where(better, fw, np.where(c1, fw, np.where(c2, fu, fv)))
        nw = np.where(better, x, np.where(c1, u, w))
        nfw = np.where(better, fx, np.where(c1, fu, fw))
        x = np.where(better, u, x)
        fx = np.where(better, fu, fx)
        v, fv, w, fw = nv, nfv, nw, nfw
    return x


def _codes(X: np.ndarray, items: list[str], max_cat: int = 8) -> tuple[np.ndarray, int]:
    """Integer category codes 0..K-1 (-1 = missing), shifted by the global minimum as psych."""
    obs = ~np.isnan(X)
    vals = X[obs]
    if np.any(vals != np.round(vals)):
        bad = [c for j, c in enumerate(items) if np.any(X[obs[:, j], j] != np.round(X[obs[:, j], j]))]
        raise ValueError(f"polychoric correlations need whole-number ratings; {', '.join(bad)} "
                         "has fractional values")
    lo, hi = vals.min(), vals.max()
    K = int(hi - lo + 1)
    if K > max_cat:
        raise ValueError(f"the items have {K} categories (more than {max_cat}); polychoric "
                         "correlations are meant for ordinal ratings")
    codes = np.where(obs, X - lo, -1).astype(np.int64)
    return codes, K


def _thresholds_from_freq(freq: np.ndarray) -> np.ndarray:
    """qnorm of cumulative proportions (K-1 thresholds per column)."""
    cum = np.cumsum(freq / freq.sum(axis=0), axis=0)[:-1]
    return special.ndtri(np.clip(cum, 0.0, 1.0))


def _cell_probs(rho: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Cell probabilities (P, K, K) of the discretized bivariate normal."""
    P = rho.shape[0]
    K1 = tx.shape[1]
    H = np.broadcast_to(tx[:, :, None], (P, K1, K1))
    Kk = np.broadcast_to(ty[:, None, :], (P, K1, K1))
    F = np.zeros((P, K1 + 2, K1 + 2))
    F[:, 1:-1, 1:-1] = bvn_cdf(H, Kk, np.broadcast_to(rho[:, None, None], (P, K1, K1)))
    F[:, -1, 1:-1] = special.ndtr(ty)
    F[:, 1:-1, -1] = special.ndtr(tx)
    F[:, -1, -1] = 1.0
    return F[:, 1:, 1:] - F[:, :-1, 1:] - F[:, 1:, :-1] + F[:, :-1, :-1]


def _poly_objective(tabs: np.ndarray, tx: np.ndarray, ty: np.ndarray):
    def f(rho: np.ndarray, active: np.ndarray) -> np.ndarray:
        out = np.zeros(rho.shape)
        if active.any():
            Pc = _cell_probs(rho[active], tx[active], ty[active])
            with np.errstate(divide="ignore", invalid="ignore"):
                lP = np.where(Pc > 0, np.log(np.where(Pc > 0, Pc, 1.0)), 0.0)
            out[active] = -(tabs[active] * lP).sum(axis=(1, 2))
        return out
    return f


def _cor_smooth(R: np.ndarray, eig_tol: float = 1e-12) -> np.ndarray:
    """psych::cor.smooth: make a non-positive-definite correlation matrix positive definite."""
    vals, vecs = linalg.eigh(R)
    if vals.min() >= np.finfo(float).eps:
        return R
    vals = np.where(vals < eig_tol, 100 * eig_tol, vals)
    vals = vals * R.shape[0] / vals.sum()
    return _cov2cor((vecs * vals) @ vecs.T)


def _pair_tables(codes: np.ndarray, K: int, w: np.ndarray | None, I: np.ndarray, J: np.ndarray) -> np.ndarray:
    """Weighted K x K contingency tables of all item pairs (rows with both answered)."""
    n, p = codes.shape
    tabs = np.empty((len(I), K, K))
    ww = np.ones(n) if w is None else w
    for i in range(p):                        # loop over items, vectorized over partners
        js = np.nonzero(I == i)[0]
        if js.size == 0:
            continue
        ci = codes[:, i]
        okc = ci >= 0
        partners = J[js]
        cj = codes[okc][:, partners]                       # (n_i, m)
        ok = cj >= 0
        idx = ci[okc][:, None] * K + np.where(ok, cj, 0) + (np.arange(js.size) * K * K)[None, :]
        wt = np.broadcast_to(ww[okc][:, None], cj.shape)
        t = np.bincount(idx[ok], weights=wt[ok], minlength=js.size * K * K)
        tabs[js] = t.reshape(js.size, K, K)
    return tabs


def _polychoric_matrix(X: np.ndarray, w: np.ndarray | None, items: list[str], correct: float = 0.5,
                       global_thresholds: bool | None = None, smooth: bool = True,
                       tol: float = np.finfo(float).eps ** 0.25):
    codes, K = _codes(X, items)
    p = codes.shape[1]
    ww = np.ones(codes.shape[0]) if w is None else w
    freq = np.stack([np.bincount(codes[codes[:, j] >= 0, j], weights=ww[codes[:, j] >= 0], minlength=K)
                     for j in range(p)], axis=1)
    tau = _thresholds_from_freq(freq)                          # (K-1, p)
    top = np.array([np.max(np.nonzero(freq[:, j])[0]) for j in range(p)])
    if global_thresholds is None:
        global_thresholds = bool(np.all(top == top[0]))       # psych: equal number of categories
    I, J = np.tril_indices(p, -1)
    tabs = _pair_tables(codes, K, w, I, J)
    tot = tabs.sum(axis=(1, 2))
    if np.any(tot == 0):
        bad = [f"{items[i]}-{items[j]}" for i, j, t in zip(I, J, tot) if t == 0]
        raise ValueError(f"no respondent answered both items of pair(s) {', '.join(bad[:5])}")
    tabs = tabs / tot[:, None, None]
    if global_thresholds:
        tx, ty = tau[:, I].T, tau[:, J].T
        rho = _brent_fmin(_poly_objective(tabs, tx, ty), -np.ones(len(I)), np.ones(len(I)), tol)
    else:   # psych's local thresholds: drop empty rows/columns, replace zero cells by correct/n
        K1 = K - 1
        tx = np.full((len(I), K1), np.inf)
        ty = np.full((len(I), K1), np.inf)
        tp = np.zeros((len(I), K, K))
        usable = np.ones(len(I), bool)
        for m in range(len(I)):
            t = tabs[m]
            t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
            if correct > 0 and np.any(t == 0):
                t = np.where(t == 0, correct / tot[m], t)
            if min(t.shape) < 2:
                usable[m] = False
                continue
            kx, ky = t.shape
            tx[m, :kx - 1] = special.ndtri(np.cumsum(t.sum(axis=1))[:-1])
            ty[m, :ky - 1] = special.ndtri(np.cumsum(t.sum(axis=0))[:-1])
            tp[m, :kx, :ky] = t
        rho = np.full(len(I), np.nan)
        if usable.any():
            rho[usable] = _brent_fmin(_poly_objective(tp[usable], tx[usable], ty[usable]),
                                      -np.ones(usable.sum()), np.ones(usable.sum()), tol)
    Rm = np.eye(p)
    Rm[I, J] = rho
    Rm[J, I] = rho
    if smooth and np.all(np.isfinite(Rm)):
        Rm = _cor_smooth(Rm)
    return Rm, tau, global_thresholds


def polychoric(df: pd.DataFrame, items: Sequence[str], weights: str | None = None,
               correct: float = 0.5, global_thresholds: bool | None = None,
               smooth: bool = True) -> pd.DataFrame:
    """Polychoric correlation matrix of ordinal items (two-step estimator, as ``psych::polychoric``).

    Step 1: each item's thresholds are the normal quantiles of its cumulative answer shares,
    :math:`\\tau_c = \\Phi^{-1}(\\sum_{m\\le c} p_m)`, from all respondents who answered it
    ("global" thresholds, psych's default when all items have the same number of
    categories; otherwise per-pair thresholds with zero cells replaced by ``correct``/n).
    Step 2: for each pair, the correlation :math:`\\rho` maximizes the multinomial
    log-likelihood :math:`\\sum_{ab} p_{ab}\\log\\pi_{ab}(\\rho)` of the pair's contingency table,
    where :math:`\\pi_{ab}` are rectangle probabilities of the standard bivariate normal
    (Olsson 1979). The one-dimensional search is R's ``optimize`` (Brent, tolerance
    ``.Machine$double.eps^0.25``), vectorized over all pairs. Missing values are handled
    pairwise. A matrix that is not positive definite is smoothed as ``psych::cor.smooth``.

    Returns
    -------
    pandas.DataFrame
        Square matrix, items on both axes.
    """
    X, w, items = _matrix(df, items, weights, what="polychoric correlations")
    R, _, _ = _polychoric_matrix(X, w, items, correct, global_thresholds, smooth)
    return pd.DataFrame(R, index=items, columns=items)


def polychoric_thresholds(df: pd.DataFrame, items: Sequence[str], weights: str | None = None) -> pd.DataFrame:
    """Item thresholds :math:`\\tau` of the polychoric model (one row per item, psych's ``tau``)."""
    X, w, items = _matrix(df, items, weights, min_items=1, what="polychoric thresholds")
    codes, K = _codes(X, items)
    ww = np.ones(codes.shape[0]) if w is None else w
    freq = np.stack([np.bincount(codes[codes[:, j] >= 0, j], weights=ww[codes[:, j] >= 0], minlength=K)
                     for j in range(codes.shape[1])], axis=1)
    tau = _thresholds_from_freq(freq)
    return pd.DataFrame(tau.T, index=items, columns=[f"t{c + 1}" for c in range(K - 1)])


def _ordinal_alpha_from_R(R: np.ndarray) -> float:
    k = R.shape[0]
    return float((1.0 - k / R.sum()) * k / (k - 1))


def ordinal_alpha(df: pd.DataFrame, items: Sequence[str], weights: str | None = None,
                  level: float = 0.95, n_boot: int = 0, seed: int | np.random.Generator | None = None,
                  label: str | None = None) -> pd.DataFrame:
    """Ordinal alpha (Zumbo, Gadermann & Zeisser 2007): standardized alpha of the polychoric matrix.

    .. math:: \\alpha_{ord} = \\frac{k}{k-1}\\Big(1-\\frac{k}{\\mathbf 1'R_{poly}\\mathbf 1}\\Big)

    This is what ``psych::alpha(polychoric(x)$rho)`` reports. The Feldt interval is applied to
    ordinal alpha as an approximation (it assumes the F distribution of raw alpha); with
    ``n_boot > 0`` a percentile bootstrap interval (rows resampled, polychoric matrix
    re-estimated each time) is added.

    ``level`` is the confidence level of both intervals; ``seed`` (int or Generator) seeds the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row: ``scale, n_items, n, ordinal_alpha, feldt_low, feldt_high, boot_low,
        boot_high, ci_level, n_boot``.
    """
    X, w, items = _matrix(df, items, weights, what="ordinal alpha")
    n, k = X.shape
    R, _, _ = _polychoric_matrix(X, w, items)
    a = _ordinal_alpha_from_R(R)
    lo, hi = _feldt(a, n, k, level)
    b_lo = b_hi = np.nan
    if n_boot and n_boot > 0:
        rng = np.random.default_rng(seed)
        vals = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            try:
                Rb, _, _ = _polychoric_matrix(X[idx], None if w is None else w[idx], items)
                vals[b] = _ordinal_alpha_from_R(Rb)
            except ValueError:
                vals[b] = np.nan
        b_lo, b_hi = np.nanquantile(vals, [(1 - level) / 2, 1 - (1 - level) / 2])
    return pd.DataFrame([{
        "scale": label if label is not None else f"{items[0]}..{items[-1]}", "n_items": k, "n": n,
        "ordinal_alpha": a, "feldt_low": lo, "feldt_high": hi, "boot_low": float(b_lo),
        "boot_high": float(b_hi), "ci_level": level, "n_boot": int(n_boot or 0)}])
