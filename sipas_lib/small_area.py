r"""Small-area estimates: the Fay–Herriot area-level model, borrowing strength from administrative records.

Core layer: pure statistics on tidy tables, no presentation.

Model (Fay & Herriot 1979; Rao & Molina 2015, ch. 6)
------------------------------------------------------
For area (unit) :math:`i = 1..m` with a direct estimate :math:`y_i` (the design-based index of
stage 50) and its sampling variance :math:`D_i` (treated as known),

.. math::

    y_i = \theta_i + e_i,\qquad \theta_i = x_i^\top\beta + u_i,\qquad
    u_i \sim N(0, A),\quad e_i \sim N(0, D_i),

with :math:`x_i` the unit's covariates from its administrative records (on-time resolution
rate, share of online dossiers, complaints / apologies / opinions per 1,000 dossiers). With
:math:`V = \mathrm{diag}(A + D_i)`, :math:`\hat\beta = (X^\top V^{-1}X)^{-1}X^\top V^{-1}y` and
the area variance :math:`A` by REML (default) or ML (Fisher scoring, truncated at 0), the EBLUP is

.. math::

    \hat\theta_i = \gamma_i y_i + (1-\gamma_i)\,x_i^\top\hat\beta,\qquad \gamma_i = \frac{A}{A + D_i},

the *shrinkage factor* :math:`\gamma_i` being the weight of the direct estimate. A unit without
sample gets the *synthetic* estimate :math:`x_i^\top\hat\beta` (flagged); when :math:`\hat A = 0`
every estimate is synthetic (said so in ``estimate_type``).

MSE (Prasad & Rao 1990; Datta & Lahiri 2000), with :math:`Q = (X^\top V^{-1} X)^{-1}`:

* :math:`g_{1i} = \gamma_i D_i`, :math:`g_{2i} = (1-\gamma_i)^2 x_i^\top Q x_i`,
  :math:`g_{3i} = D_i^2 (A + D_i)^{-3}\,\bar V(\hat A)`, :math:`\bar V(\hat A) = 2/\sum_j (A+D_j)^{-2}`;
* REML: :math:`\mathrm{mse}_i = g_{1i} + g_{2i} + 2 g_{3i}` (Datta–Lahiri; the same form as
  Prasad–Rao's for the moment estimator);
* ML: :math:`\mathrm{mse}_i = g_{1i} + g_{2i} + 2 g_{3i} - b_{ML}(\hat A)\,(1-\gamma_i)^2` with the
  bias :math:`b_{ML} = -\mathrm{tr}(Q X^\top V^{-2} X) / (2\sum_j (A+D_j)^{-2})` (Datta & Lahiri 2000);
* a unit without sample: :math:`A + x_i^\top Q x_i`;
* a parametric bootstrap (:func:`bootstrap_mse`) as a check: draw :math:`\theta^* = X\hat\beta + u^*`,
  :math:`y^* = \theta^* + e^*`, refit, average :math:`(\hat\theta^*_i - \theta^*_i)^2`.

Transformations. Near 0 or 1 a share's sampling distribution is skewed; ``transform="arcsine"``
(:math:`t = \arcsin\sqrt{p}`, :math:`D^t = D/(4p(1-p))`) or ``"logit"`` (:math:`D^t = D/(p(1-p))^2`)
fits the model on that scale (delta method). Back-transformed point estimates :math:`h(\hat\theta^t)`
estimate the *median*, not the mean, of the share: the bias :math:`\tfrac12 h''(\hat\theta^t)\,\mathrm{mse}^t`
is reported per unit (``backtransform_bias``); intervals are back-transformed end points (exact for a
monotone :math:`h`), the MSE on the share scale by the delta method :math:`h'(\hat\theta^t)^2\,\mathrm{mse}^t`.

Sampling variances (``variance=``, :data:`VARIANCES`). The model treats :math:`D_i` as known, but a
small unit's design-based variance is itself a noisy estimate: for a share near 1 (37 of 38
satisfied) it is tiny, or zero when everyone is satisfied. A unit whose :math:`D_i` is
under-estimated gets too little shrinkage and too short an interval (:math:`g_{1i} = \gamma_i D_i`),
and the noise in the :math:`D_i` distorts the REML area variance :math:`\hat A`, so the model-based
intervals under-cover: 0.91 instead of 0.95, the analytic MSE 17 % short of the empirical one, in
the coverage simulation of tests/test_small_area.py (0.936 and 4 % with smoothed variances). The
standard remedy is to smooth *every* unit's sampling variance with a generalized variance function
(GVF; Rao & Molina 2015 §6.4.1; You & Chapman 2006; Fabrizi, Ferrante & Pacei 2005; the US Census
Bureau's SAIPE):

* ``"smoothed"`` (:func:`gvf_variances`): on the arcsine scale the variance of the share of a simple
  random sample of n is :math:`1/(4n)` whatever p (Var arcsin√p̂ ≈ p(1-p)/n · 1/(4p(1-p))), so

  .. math:: \tilde D^t_i = \frac{\overline{\mathrm{deff}}}{4 n_i},\qquad
            \mathrm{deff}_j = \frac{n_j\,\hat D_j}{\hat p_j(1-\hat p_j)},

  :math:`\overline{\mathrm{deff}}` the median design effect over the units of the fit with a usable
  variance (robust to the noisy ones; a pooled design effect as in SAIPE). It is free of
  :math:`\hat p_i`, hence of the correlation between the estimate and its variance. On the identity
  or logit scale the same GVF is carried by the delta method at the pooled share
  :math:`\bar p = \sum n_j\hat p_j/\sum n_j` (:math:`\overline{\mathrm{deff}}\,\bar p(1-\bar p)/n_i`,
  :math:`\overline{\mathrm{deff}}/(n_i\bar p(1-\bar p))`): p-free only on the arcsine scale, which is why
  that scale is the stage's default. ``variance_smoothed`` is then true for every unit with a sample.
  For the overall SIPAS (each respondent's share of satisfied criteria, not a 0/1 answer) the pooled
  design effect is well below 1 (about 0.3 for the demo's communes).
* ``"direct"``: each unit's own design variance (delta method to the model scale); only unusable
  ones — missing, zero or from fewer than ``min_n_variance`` respondents — get the GVF
  :math:`\tilde D_i = s^2 / n_i` on the share scale, :math:`s^2` = median of :math:`D_j n_j` over the
  usable ones (:func:`smooth_variances`; ``variance_smoothed`` says which).

Either way ``sampling_variance_direct`` keeps the unit's own design variance on the model scale (empty
when unusable), to compare with the ``sampling_variance`` the model used.

References: Fay & Herriot (1979) JASA 74:269–277; Prasad & Rao (1990) JASA 85:163–171; Datta &
Lahiri (2000) Statistica Sinica 10:613–627; Rao & Molina (2015) *Small Area Estimation*, 2nd ed.;
You & Chapman (2006) Survey Methodology 32(1):97–103; Fabrizi, Ferrante & Pacei (2005) Statistics in
Transition 7(3); Viechtbauer (2010) metafor, J Stat Softw 36(3) (``rma(method="REML")`` and ``blup()``
agree with :func:`fay_herriot`, tests/r/small_area_reference.R).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special

METHODS = ("REML", "ML")
TRANSFORMS = ("identity", "arcsine", "logit")
#: Sampling variances of the model: every unit's from a GVF, or each unit's own (module docstring).
VARIANCES = ("smoothed", "direct")
#: ``estimate_type`` of a row of :func:`fay_herriot`'s table.
ESTIMATE_TYPES = ("eblup", "synthetic_no_sample", "synthetic_zero_area_variance")
#: Covariates :func:`admin_covariates` computes (the default set of the model is a setting).
COVARIATES = ("on_time_rate", "share_online", "complaints_per_1000", "apologies_per_1000", "opinions_per_1000")


# ------------------------------------------------------------------------------------------------
# covariates from the administrative records
# ------------------------------------------------------------------------------------------------
def admin_covariates(data_dir: str | os.PathLike, year: int, unit_ids: Sequence[str] | None = None, *,
                     record_level: str = "unit", **engine) -> pd.DataFrame:
    """Each unit's year of administrative records as model covariates.

    Aggregates the year's ``dossiers``/``feedback``/``apologies``/``opinions`` (January to
    December, :func:`sipas_lib.admin_records.monthly_aggregates`, records of ``record_level`` "unit").

    Returns
    -------
    DataFrame
        ``unit_id, dossiers`` (to resolve in the year), ``on_time_rate`` (resolved on time /
        resolved), ``share_online`` (online level 3 + 4 / dossiers), ``complaints_per_1000``
        (feedback items per 1,000 dossiers), ``apologies_per_1000``, ``opinions_per_1000``
        (satisfaction opinions collected during service per 1,000 dossiers). Units without
        dossiers have missing rates.
    """
    from sipas_lib import admin_records as ar

    counts, _ = ar.monthly_aggregates(data_dir, year, 12, unit_ids, **engine)  # engine: ar.engine_options(settings)
    sub = counts[(counts["level"] == record_level) & (counts["period"] == "ytd")]
    wide = sub.pivot_table(index="unit_id", columns="metric", values="value", aggfunc="sum", fill_value=0)
    for col in ("total", "resolved", "on_time", "ch_online_l3", "ch_online_l4", "fb_total", "apologies", "opinions"):
        if col not in wide.columns:
            wide[col] = 0
    total = wide["total"].where(wide["total"] > 0).astype(float)
    resolved = wide["resolved"].where(wide["resolved"] > 0).astype(float)
    out = pd.DataFrame({
        "unit_id": wide.index.astype(str),
        "dossiers": wide["total"].to_numpy("int64"),
        "on_time_rate": (wide["on_time"] / resolved).to_numpy(float),
        "share_online": ((wide["ch_online_l3"] + wide["ch_online_l4"]) / total).to_numpy(float),
        "complaints_per_1000": (1000 * wide["fb_total"] / total).to_numpy(float),
        "apologies_per_1000": (1000 * wide["apologies"] / total).to_numpy(float),
        "opinions_per_1000": (1000 * wide["opinions"] / total).to_numpy(float),
    })
    if unit_ids is not None:
        out = pd.DataFrame({"unit_id": pd.Index(unit_ids, dtype=str).unique()}).merge(out, on="unit_id", how="left")
        out["dossiers"] = out["dossiers"].fillna(0).astype("int64")
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
def _gls(y: np.ndarray, X: np.ndarray, vinv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """beta = (X'V^-1 X)^-1 X'V^-1 y and Q = (X'V^-1 X)^-1 for diagonal V^-1 (``vinv``)."""
    Q = np.linalg.inv(X.T @ (X * vinv[:, None]))
    return Q @ (X.T @ (vinv * y)), Q


def _score_info(A: float, y: np.ndarray, X: np.ndarray, D: np.ndarray, method: str) -> tuple[float, float]:
    """Score and Fisher information of the (restricted) log-likelihood in A."""
    vinv = 1.0 / (A + D)
    _, Q = _gls(y, X, vinv)
    # P = V^-1 - V^-1 X Q X' V^-1
    VX = X * vinv[:, None]
    P = np.diag(vinv) - VX @ Q @ VX.T
    Py = P @ y
    if method == "REML":
        return 0.5 * (Py @ Py - np.trace(P)), 0.5 * np.sum(P * P)
    return 0.5 * (Py @ Py - vinv.sum()), 0.5 * np.sum(vinv**2)


def area_variance(y, X, D, *, method: str = "REML", tol: float = 1e-12, max_iter: int = 500) -> float:
    """Variance :math:`A` of the area effects by REML or ML (Fisher scoring with step halving, A ≥ 0).

    Starts at the moment estimate :math:`\\max(0, \\mathrm{var}(y - X\\hat\\beta_{OLS}) - \\bar D)`;
    stops when the step is below ``tol`` (relative). An estimate on the boundary (score ≤ 0 at 0)
    is exactly 0.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y, X, D = np.asarray(y, float), np.asarray(X, float), np.asarray(D, float)
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    A = max(0.0, resid @ resid / max(1, len(y) - X.shape[1]) - D.mean())
    for _ in range(max_iter):
        score, info = _score_info(A, y, X, D, method)
        new = A + score / info
        if new < 0:
            new = 0.0
            if A == 0.0:
                return 0.0
        if abs(new - A) <= tol * max(1.0, A):
            return float(new)
        A = new
    raise ValueError(f"{method} estimate of the area variance did not converge in {max_iter} iterations")


@dataclass(frozen=True)
class FayHerriotFit:
    """A fitted Fay–Herriot model (on the model scale, i.e. after the transform).

    ``table``: one row per area (see :func:`fay_herriot`); ``coefficients``: ``term, estimate,
    se, z, p_value``; ``area_variance``; ``beta_cov`` (:math:`Q`); ``mse_cov``: the MSE matrix
    of the EBLUPs (diagonal = ``mse``, off-diagonal :math:`(1-\\gamma_i)(1-\\gamma_j)x_i^\\top Q x_j`,
    the shared error of :math:`\\hat\\beta`), used for rank confidence sets; ``variance``: which
    sampling variances (:data:`VARIANCES`), ``gvf_deff``: the pooled design effect of the smoothed
    ones (NaN with ``"direct"``).
    """

    table: pd.DataFrame
    coefficients: pd.DataFrame
    area_variance: float
    beta_cov: np.ndarray
    mse_cov: pd.DataFrame
    method: str
    transform: str
    n_areas: int
    variance: str = "direct"
    gvf_deff: float = float("nan")


def _eblup_parts(y, X, D, A):
    vinv = 1.0 / (A + D)
    beta, Q = _gls(y, X, vinv)
    gamma = A / (A + D)
    synthetic = X @ beta
    return beta, Q, gamma, synthetic, gamma * y + (1 - gamma) * synthetic


def analytic_mse(X: np.ndarray, D: np.ndarray, A: float, *, method: str = "REML",
                 X_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Second-order MSE of the EBLUPs (in-sample areas) and of synthetic estimates (``X_out``).

    Returns ``(mse_in, mse_out)``; see the module docstring for the formulas (REML: Datta–Lahiri
    = Prasad–Rao form :math:`g_1 + g_2 + 2g_3`; ML: with the bias term of :math:`\\hat A`).
    """
    X, D = np.asarray(X, float), np.asarray(D, float)
    vinv = 1.0 / (A + D)
    Q = np.linalg.inv(X.T @ (X * vinv[:, None]))
    gamma = A * vinv
    g1 = gamma * D
    g2 = (1 - gamma) ** 2 * np.einsum("ij,jk,ik->i", X, Q, X)
    var_A = 2.0 / np.sum(vinv**2)
    g3 = D**2 * vinv**3 * var_A
    mse = g1 + g2 + 2 * g3
    if method == "ML":
        b_ml = -np.trace(Q @ (X.T @ (X * (vinv**2)[:, None]))) / (2 * np.sum(vinv**2))
        mse = mse - b_ml * (1 - gamma) ** 2
    mse_out = np.empty(0)
    if X_out is not None and len(X_out):
        X_out = np.asarray(X_out, float)
        mse_out = A + np.einsum("ij,jk,ik->i", X_out, Q, X_out)
    return mse, mse_out


def smooth_variances(variance, n, *, min_n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Replace unusable sampling variances by a generalized variance function :math:`s^2/n_i`.

    A variance is unusable when it is missing, not positive, or comes from fewer than ``min_n``
    respondents. :math:`s^2` = median of :math:`D_j n_j` over the usable ones. Returns
    ``(variances, smoothed_flag)``.
    """
    D, n = np.asarray(variance, float), np.asarray(n, float)
    bad = ~np.isfinite(D) | (D <= 0) | (n < min_n)
    good = ~bad & (n > 0)
    if bad.any():
        if not good.any():
            raise ValueError("no unit has a usable sampling variance to smooth the others from")
        s2 = float(np.median(D[good] * n[good]))
        D = np.where(bad, s2 / np.maximum(n, 1), D)
    return D, bad


def gvf_variances(estimate, variance, n, *, transform: str = "arcsine",
                  min_n: int = 10) -> tuple[np.ndarray, float]:
    r"""Smoothed sampling variances of every unit on the model scale: a pooled design effect over n.

    .. math:: \tilde D^t_i = \frac{\overline{\mathrm{deff}}}{4 n_i}\ \text{(arcsine)},\qquad
              \overline{\mathrm{deff}} = \operatorname{median}_j \frac{n_j \hat D_j}{\hat p_j (1-\hat p_j)},

    the median over the units with a usable variance (finite, positive, :math:`n_j \ge` ``min_n``,
    :math:`0 < \hat p_j < 1`). The arcsine transform stabilizes the variance of a share at
    :math:`1/(4n)` for every p, so the smoothed variance does not inherit the noise of a small unit's
    own :math:`\hat p_i(1-\hat p_i)`. On the ``"identity"`` scale
    :math:`\overline{\mathrm{deff}}\,\bar p(1-\bar p)/n_i` and on the ``"logit"`` scale
    :math:`\overline{\mathrm{deff}}/(n_i\,\bar p(1-\bar p))` (delta method at the pooled share
    :math:`\bar p = \sum_j n_j \hat p_j / \sum_j n_j`).

    Parameters
    ----------
    estimate, variance, n
        Direct shares (0–1), their design-based variances (share scale) and respondents of the
        units with a sample.
    transform
        Model scale, one of :data:`TRANSFORMS`.
    min_n
        Fewest respondents for a unit's own variance to enter the pooled design effect.

    Returns
    -------
    (variances, deff)
        Smoothed variances on the model scale, one per unit, and the pooled design effect.

    References
    ----------
    Rao & Molina (2015) *Small Area Estimation*, 2nd ed., §6.4.1; You & Chapman (2006) Survey
    Methodology 32(1):97–103; Bureau of the Census, SAIPE methodology (state and county models).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    p, D, n = (np.asarray(a, float) for a in (estimate, variance, n))
    usable = np.isfinite(D) & (D > 0) & (n >= min_n) & (p > 0) & (p < 1)
    if not usable.any():
        raise ValueError("no unit has a usable sampling variance (positive, from at least "
                         f"{min_n} respondents, share strictly between 0 and 1) to pool a design effect from")
    deff = float(np.median(n[usable] * D[usable] / (p[usable] * (1 - p[usable]))))
    n_safe = np.maximum(n, 1)
    p_bar = float(np.sum(n * p) / np.sum(n))
    scale = {"arcsine": 0.25, "identity": p_bar * (1 - p_bar), "logit": 1 / (p_bar * (1 - p_bar))}[transform]
    return deff * scale / n_safe, deff


def _to_model_scale(p, var, transform: str, n):
    p, var = np.asarray(p, float), np.asarray(var, float)
    if transform == "identity":
        return p, var
    # keep shares off the bounds by half a respondent so the transform and its derivative exist
    eps = 0.5 / np.maximum(np.asarray(n, float), 1)
    q = np.clip(p, eps, 1 - eps)
    if transform == "arcsine":
        return np.arcsin(np.sqrt(q)), var / (4 * q * (1 - q))
    return np.log(q / (1 - q)), var / (q * (1 - q)) ** 2


def _back(t, transform: str):
    """h(t), h'(t), h''(t) of the inverse transform."""
    t = np.asarray(t, float)
    if transform == "identity":
        return t, np.ones_like(t), np.zeros_like(t)
    if transform == "arcsine":
        tc = np.clip(t, 0, np.pi / 2)
        return np.sin(tc) ** 2, np.sin(2 * tc), 2 * np.cos(2 * tc)
    p = 1 / (1 + np.exp(-t))
    return p, p * (1 - p), p * (1 - p) * (1 - 2 * p)



def too_few_areas(m: int, p: int) -> str | None:
    """Why a Fay–Herriot model of ``p`` coefficients cannot be fitted to ``m`` areas with a sample, or None.

    The fit needs more areas than coefficients (m > p): with m <= p the residual variance of the
    regression, hence the area variance A, is not identified (Rao & Molina 2015, §6.1).
    """
    return f"{m} areas with a sample cannot fit {p} coefficients" if m <= p else None


def fay_herriot(direct: pd.DataFrame, covariates: Sequence[str], *, unit: str = "unit_id",
                estimate: str = "estimate", se: str = "se", n: str = "n", method: str = "REML",
                transform: str = "identity", level: float = 0.95, min_n_variance: int = 10,
                smooth: bool = True, variance: str = "direct") -> FayHerriotFit:
    """Fit the Fay–Herriot model to one set of areas and return EBLUPs with their MSE.

    Parameters
    ----------
    direct
        One row per area: ``unit``, the direct estimate ``estimate`` (share 0–1, missing for an
        area without sample), its design-based ``se``, the respondents ``n``, and the
        ``covariates`` (no missing values).
    covariates
        Covariate columns (an intercept is added).
    method
        ``"REML"`` (default) or ``"ML"`` for the area variance.
    transform
        ``"identity"``, ``"arcsine"`` or ``"logit"`` (model scale; results are back-transformed).
    level
        Confidence level of the intervals (direct: estimate ± z·se; model: on the model scale
        ± z·√mse, back-transformed).
    variance
        Sampling variances :math:`D_i` the model treats as known (:data:`VARIANCES`):
        ``"direct"`` (default; each unit's design variance, the textbook model and metafor's
        ``vi``) or ``"smoothed"`` (every unit's from :func:`gvf_variances`,
        :math:`\\overline{\\mathrm{deff}}/(4n_i)` on the arcsine scale; stage 50's default, see the
        module docstring for why).
    min_n_variance, smooth
        With ``variance="direct"``, sampling variances that are missing, zero or from fewer than
        ``min_n_variance`` respondents are replaced by :func:`smooth_variances` (``smooth=False``:
        such areas are an error). With ``"smoothed"``, ``min_n_variance`` is the fewest respondents
        for a unit to enter the pooled design effect.

    Returns
    -------
    FayHerriotFit
        ``table``: ``unit_id, n, direct, direct_se, direct_ci_low, direct_ci_high,
        sampling_variance`` (model scale, as used), ``sampling_variance_direct`` (the unit's own
        design variance on the model scale; empty when unusable), ``variance_smoothed`` (the
        variance used is a GVF: every sampled unit with ``"smoothed"``), ``synthetic`` (model
        scale, :math:`x_i^\\top\\hat\\beta`), ``shrinkage`` (:math:`\\gamma_i`), ``model_estimate,
        model_se`` (√MSE on the share scale), ``model_ci_low, model_ci_high, mse`` (model scale),
        ``backtransform_bias, std_residual`` (:math:`(y_i - x_i^\\top\\hat\\beta)/\\sqrt{A + D_i}`),
        ``estimate_type``; ``gvf_deff`` of the fit is the pooled design effect (``"smoothed"``).
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    covariates = list(covariates)
    need = [unit, estimate, se, n, *covariates]
    missing = [c for c in need if c not in direct.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found; available: {list(direct.columns)}")
    if not direct[unit].is_unique:
        raise ValueError(f"unit ids repeat in column {unit!r}")
    X_all = design_matrix(direct, covariates)
    bad_x = np.isnan(X_all).any(axis=1)
    if bad_x.any():
        raise ValueError(f"covariates missing for unit(s) {sorted(direct.loc[bad_x, unit].astype(str))}")
    # each column read once as an array (pandas operations dominate the cost of a fit on a few hundred units)
    dir_est, dir_se = (direct[c].to_numpy(float, na_value=np.nan) for c in (estimate, se))
    n_all = direct[n].to_numpy(float, na_value=np.nan)
    n_all = np.where(np.isnan(n_all), 0.0, n_all)
    sampled = ~np.isnan(dir_est) & (n_all > 0)
    m, p = int(sampled.sum()), X_all.shape[1]
    if (reason := too_few_areas(m, p)) is not None:
        raise ValueError(f"{reason} (intercept + {covariates})")
    if np.linalg.matrix_rank(X_all[sampled]) < p:
        raise ValueError(f"the covariates {covariates} are collinear over the sampled areas")
    var_direct = dir_se**2
    p_in, var_in, n_in = dir_est[sampled], var_direct[sampled], n_all[sampled]
    usable = np.isfinite(var_in) & (var_in > 0) & (n_in >= min_n_variance)
    y, D_own = _to_model_scale(p_in, np.where(usable, var_in, np.nan), transform, n_in)
    gvf_deff = float("nan")
    if variance == "smoothed":
        D, gvf_deff = gvf_variances(p_in, var_in, n_in, transform=transform, min_n=min_n_variance)
        smoothed = np.ones(m, bool)
    else:
        if smooth:
            D_share, smoothed = smooth_variances(var_in, n_in, min_n=min_n_variance)
        else:
            D_share, smoothed = var_in, np.zeros(m, bool)
            if not (np.isfinite(D_share) & (D_share > 0)).all():
                raise ValueError("some sampling variances are missing or zero; use smooth=True")
        _, D = _to_model_scale(p_in, D_share, transform, n_in)
    X = X_all[sampled]
    A = area_variance(y, X, D, method=method)
    beta, Q, gamma, synth_in, eblup = _eblup_parts(y, X, D, A)
    X_out = X_all[~sampled]
    mse_in, mse_out = analytic_mse(X, D, A, method=method, X_out=X_out)

    # model-scale results in the table's row order
    k = len(direct)
    est_t, mse_t, synth, shrink, Dfull, Down = (np.full(k, np.nan) for _ in range(6))
    est_t[sampled], mse_t[sampled], synth[sampled], shrink[sampled], Dfull[sampled] = eblup, mse_in, synth_in, gamma, D
    Down[sampled] = D_own
    est_t[~sampled], mse_t[~sampled], synth[~sampled], shrink[~sampled] = X_out @ beta, mse_out, X_out @ beta, 0.0
    smooth_full = np.zeros(k, bool)
    smooth_full[sampled] = smoothed
    resid = np.full(k, np.nan)
    resid[sampled] = (y - synth_in) / np.sqrt(A + D)

    z = special.ndtri(0.5 + level / 2)  # the normal quantile (stats.norm.ppf without its argument checks)
    est, d1, d2 = _back(est_t, transform)
    lo, _, _ = _back(est_t - z * np.sqrt(mse_t), transform)
    hi, _, _ = _back(est_t + z * np.sqrt(mse_t), transform)
    kind = np.where(~sampled, "synthetic_no_sample", np.where(A == 0.0, "synthetic_zero_area_variance", "eblup"))
    table = pd.DataFrame({
        "unit_id": direct[unit].astype(str).array,  # the column's array: no round trip through Python strings
        "n": n_all.astype("int64"),
        "direct": dir_est,
        "direct_se": dir_se,
        "direct_ci_low": np.clip(dir_est - z * dir_se, 0, 1),
        "direct_ci_high": np.clip(dir_est + z * dir_se, 0, 1),
        "sampling_variance": Dfull,
        "sampling_variance_direct": Down,
        "variance_smoothed": smooth_full,
        "synthetic": synth,
        "shrinkage": shrink,
        "model_estimate": np.clip(est, 0, 1),
        "model_se": np.abs(d1) * np.sqrt(mse_t),
        "model_ci_low": np.clip(np.minimum(lo, hi), 0, 1),
        "model_ci_high": np.clip(np.maximum(lo, hi), 0, 1),
        "mse": mse_t,
        "backtransform_bias": 0.5 * d2 * mse_t,
        "std_residual": resid,
        "estimate_type": kind,
    })
    se_beta = np.sqrt(np.diag(Q))
    zb = beta / se_beta
    coefficients = pd.DataFrame({"term": ["intercept", *covariates], "estimate": beta, "se": se_beta, "z": zb,
                                 "p_value": 2 * special.ndtr(-np.abs(zb))})  # stats.norm.sf
    # MSE matrix of the EBLUPs: diagonal mse, off-diagonal the shared error of beta-hat
    lam = np.where(sampled, 1 - np.nan_to_num(shrink), 1.0)
    cov = (lam[:, None] * lam[None, :]) * (X_all @ Q @ X_all.T)
    np.fill_diagonal(cov, mse_t)
    ids = pd.Index(table["unit_id"].array)  # one index for rows and columns, from the column as it is
    return FayHerriotFit(table=table, coefficients=coefficients, area_variance=float(A), beta_cov=Q,
                         mse_cov=pd.DataFrame(cov, index=ids, columns=ids), method=method, transform=transform,
                         n_areas=m, variance=variance, gvf_deff=gvf_deff)


def bootstrap_mse(fit: FayHerriotFit, X: np.ndarray, *, n_boot: int = 200, seed=None) -> np.ndarray:
    """Parametric bootstrap MSE of the EBLUPs of the sampled areas (model scale), a check of the analytic MSE.

    For b = 1..B: :math:`u^* \\sim N(0,\\hat A)`, :math:`e^* \\sim N(0, D_i)`,
    :math:`\\theta^* = X\\hat\\beta + u^*`, :math:`y^* = \\theta^* + e^*`; refit (same method) and
    average :math:`(\\hat\\theta^*_i - \\theta^*_i)^2`. ``X``: the design matrix of the sampled
    areas (intercept first) in the order of ``fit.table``'s sampled rows.
    """
    rng = np.random.default_rng(seed)
    t = fit.table.loc[fit.table["estimate_type"] != "synthetic_no_sample"]
    D = t["sampling_variance"].to_numpy(float)
    X = np.asarray(X, float)
    beta = fit.coefficients["estimate"].to_numpy(float)
    A = fit.area_variance
    acc = np.zeros(len(D))
    for _ in range(n_boot):
        theta = X @ beta + rng.normal(0, np.sqrt(A), len(D))
        y = theta + rng.normal(0, np.sqrt(D))
        A_b = area_variance(y, X, D, method=fit.method)
        acc += (_eblup_parts(y, X, D, A_b)[4] - theta) ** 2
    return acc / n_boot


def design_matrix(direct: pd.DataFrame, covariates: Sequence[str]) -> np.ndarray:
    """Intercept and ``covariates`` of the rows of ``direct`` (the model's X; missing values NaN)."""
    # column by column: selecting a list of columns copies the frame, many times slower on small tables
    return np.column_stack([np.ones(len(direct)), *(direct[c].to_numpy(float, na_value=np.nan) for c in covariates)])


def benchmark(table: pd.DataFrame, weights: pd.Series, city_direct: float, *,
              estimate: str = "model_estimate") -> tuple[float, float]:
    """Model-based estimates aggregated with frame weights against the direct city figure.

    Returns ``(aggregate, ratio)``: :math:`\\bar\\theta = \\sum_i W_i\\hat\\theta_i/\\sum_i W_i`
    (``weights`` indexed by unit id, e.g. the units' frame sizes) and the ratio-benchmarking
    factor :math:`r = \\hat Y_{direct}/\\bar\\theta`; multiplying every estimate by :math:`r` makes
    them add up to the direct figure (ratio benchmarking).
    """
    w = table["unit_id"].map(weights).to_numpy(float)
    ok = np.isfinite(w) & table[estimate].notna().to_numpy()
    if not ok.any() or w[ok].sum() <= 0:
        return float("nan"), float("nan")
    agg = float(np.sum(w[ok] * table.loc[ok, estimate].to_numpy(float)) / w[ok].sum())
    return agg, float(city_direct / agg)
