"""Multivariate random-effects meta-analysis of study coefficient vectors: :func:`mvma`.

The model (no study-level covariates): study ``i`` reports an estimate ``y_i`` (p-vector)
with known within-study covariance ``S_i``, and

    y_i ~ N(theta_i, S_i),   theta_i ~ N(beta, Psi),   i = 1..k.

Three estimators of the between-study covariance ``Psi`` (as R's ``mvmeta``):

``"mm"`` — the method of moments of Jackson, White & Riley (2013, Biometrical
    Journal 55:231-245), the matrix generalisation of DerSimonian & Laird (it is
    Chen, Manning & Dupuis' 2012 estimator when there are no covariates). With fixed-effect weights
    ``W_i = S_i^{-1}``, ``W+ = sum W_i`` and the fixed-effect mean
    ``y_bar = W+^{-1} sum W_i y_i``, the matrix ``Q = sum_i W_i (y_i - y_bar)(y_i - y_bar)'``
    has expectation ``(k - 1) I + C Psi`` with ``C = W+ - sum_i W_i W+^{-1} W_i``
    (symmetric positive definite for k >= 2). So ``Psi_raw = C^{-1} (Q - (k - 1) I)``,
    symmetrised, ``(Psi_raw + Psi_raw') / 2``; its negative eigenvalues are set to 0
    (Jackson et al.'s truncation) to give a positive semi-definite ``Psi``. For p = 1
    this is DerSimonian–Laird: ``tau^2 = max(0, (Q - (k-1)) / (sum w - sum w^2 / sum w))``.
    (mvmeta sets negative eigenvalues to a small positive number instead; we truncate
    at 0 as the paper does, so ``Psi`` can be singular.)

``"reml"`` / ``"ml"`` — maximise the restricted / full log-likelihood (profiled over
    ``beta``) over ``Psi = L L'``, ``L`` lower triangular: the parameters ``par`` are the
    lower-triangular entries of ``L`` in column-major order (mvmeta's parameterisation),
    by BFGS with the analytic gradient, started from the method-of-moments estimate
    (eigenvalues floored away from 0: ``L_jj = 0`` is a stationary point of this
    parameterisation). ``hessian`` is the Hessian of the log-likelihood with respect to
    ``par`` at the maximum (central differences of the analytic gradient, as R's
    ``optimHess``); :meth:`MVMAResult.draw_psi` uses it to draw ``Psi*``.

For every method ``beta`` is the generalised least-squares mean given ``Psi`` and
``beta_cov = (sum_i (S_i + Psi)^{-1})^{-1}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .exceptions import InputError

METHODS = ("mm", "reml", "ml")

#: micemd's check on a drawn Psi*: its largest eigenvalue may not exceed both this
#: absolute value and PSI_DRAW_RATIO times the largest eigenvalue of Psi_hat
PSI_DRAW_MAX = 5.0
PSI_DRAW_RATIO = 10.0


@dataclass
class MVMAResult:
    """A multivariate random-effects meta-analysis (see :func:`mvma`).

    beta : pooled mean (p,); beta_cov : its covariance (p, p); psi : between-study
    covariance (p, p), positive semi-definite.
    method : "mm", "reml" or "ml"; n_studies : k.
    q : the matrix Q of the method of moments (p, p; computed for every method).
    psi_raw : the untruncated, symmetrised moment estimate (unbiased for Psi); for
        "reml"/"ml" the same quantity (it is the start value).
    negeigen : number of eigenvalues of ``psi_raw`` set to 0 ("mm").
    par : REML/ML only: the lower-triangular entries of L (Psi = L L'), column-major.
    hessian : REML/ML only: Hessian of the (restricted) log-likelihood w.r.t. ``par``.
    loglik : REML/ML only: the maximised (restricted) log-likelihood.
    converged : the optimiser met its tolerance (always True for "mm").
    warnings : what went wrong or was adjusted, as text.
    """

    beta: np.ndarray
    beta_cov: np.ndarray
    psi: np.ndarray
    method: str
    n_studies: int
    q: np.ndarray
    psi_raw: np.ndarray
    negeigen: int = 0
    par: np.ndarray | None = None
    hessian: np.ndarray | None = None
    loglik: float = float("nan")
    converged: bool = True
    warnings: list[str] = field(default_factory=list)

    def draw_psi(self, rng: np.random.Generator) -> tuple[np.ndarray, str | None]:
        """A draw Psi* reflecting the uncertainty of ``psi`` (Resche-Rigon & White's
        two-stage imputation, as micemd does it).

        "mm": no draw — ``psi`` itself (micemd returns the moment estimate).
        "reml"/"ml": ``par* ~ N(par, (-H)^{-1})`` with the negative eigenvalues of the
        inverse set to 0 (micemd), and ``Psi* = L* L*'``. If the largest eigenvalue of
        ``Psi*`` exceeds both 5 and 10 times that of ``psi`` the draw is rejected and
        ``psi`` returned (micemd's check). Returns ``(Psi*, warning or None)``.
        """
        if self.par is None or self.hessian is None:
            return self.psi.copy(), None
        p = self.psi.shape[0]
        lam, U = np.linalg.eigh(-0.5 * (self.hessian + self.hessian.T))
        tiny = np.finfo(float).eps * lam.size * max(float(np.max(np.abs(lam))), 1e-300)
        inv = np.where(lam > tiny, 1.0 / np.where(lam > tiny, lam, 1.0), 0.0)
        par_star = self.par + U @ (np.sqrt(inv) * rng.standard_normal(lam.size))
        psi_star = _par_to_psi(par_star, p)
        top = float(np.linalg.eigvalsh(psi_star)[-1])
        if top > PSI_DRAW_MAX and top > PSI_DRAW_RATIO * float(np.linalg.eigvalsh(self.psi)[-1]):
            return self.psi.copy(), (f"Psi* could not be drawn (largest eigenvalue {top:.3g}); "
                                     f"the {self.method.upper()} estimate is used")
        return psi_star, None


def mvma(estimates: np.ndarray, covariances: np.ndarray, method: str = "mm", *,
         maxiter: int = 200) -> MVMAResult:
    """Multivariate random-effects meta-analysis of k study estimates.

    Parameters
    ----------
    estimates : (k, p) study estimates (a length-k vector for p = 1).
    covariances : (k, p, p) within-study covariances, symmetric positive definite
        (a length-k vector of variances for p = 1).
    method : "mm" (method of moments, Jackson, White & Riley 2013 — the default, as in
        micemd's two-stage methods), "reml" or "ml".
    maxiter : iteration limit of the REML/ML optimiser.

    Returns
    -------
    MVMAResult with ``beta``, ``beta_cov``, ``psi`` (and ``par``/``hessian`` for REML/ML).
    With k = 1, Psi is not estimable: it is set to 0 and a warning recorded.
    """
    y, S = _check(estimates, covariances)
    if method not in METHODS:
        raise InputError(f"method={method!r}: use one of {list(METHODS)}")
    k, p = y.shape
    W = np.linalg.inv(S)
    q, psi_raw = _moments(y, W)
    warnings: list[str] = []
    if k < 2:
        warnings.append("one study: the between-study covariance is not estimable; Psi = 0")
        psi = np.zeros((p, p))
        beta, beta_cov = _gls(y, S, psi)
        return MVMAResult(beta, beta_cov, psi, method, k, q, psi_raw, warnings=warnings)

    lam, V = np.linalg.eigh(psi_raw)
    negeigen = int(np.sum(lam < 0))
    psi_mm = (V * np.clip(lam, 0.0, None)) @ V.T
    if method == "mm":
        beta, beta_cov = _gls(y, S, psi_mm)
        return MVMAResult(beta, beta_cov, psi_mm, method, k, q, psi_raw, negeigen=negeigen)

    reml = method == "reml"
    # start: the moment estimate, eigenvalues floored at 1% of the average within-study
    # variance (L_jj = 0 would be a stationary point of the Cholesky parameterisation)
    floor = 0.01 * float(np.mean(np.trace(S, axis1=1, axis2=2))) / p
    start = (V * np.maximum(lam, floor)) @ V.T
    par0 = _psi_to_par(start)

    def fun(par):
        val, grad = _loglik(par, y, S, reml, gradient=True)
        return -val, -grad

    opt = minimize(fun, par0, jac=True, method="BFGS",
                   options={"gtol": 1e-6, "maxiter": maxiter})
    par = opt.x
    grad_norm = float(np.max(np.abs(opt.jac)))
    # BFGS stops with "precision loss" at the maximum when the gradient is at rounding
    # level; accept that as converged when the gradient is small
    converged = bool(opt.success or grad_norm < 1e-4 * max(1.0, abs(opt.fun)))
    if not converged:
        warnings.append(f"{method.upper()} optimiser did not converge ({opt.message}; "
                        f"max |gradient| {grad_norm:.2g})")
    psi = _par_to_psi(par, p)
    loglik = -float(opt.fun)
    hessian = _hessian(par, y, S, reml)
    beta, beta_cov = _gls(y, S, psi)
    return MVMAResult(beta, beta_cov, psi, method, k, q, psi_raw, negeigen=0, par=par,
                      hessian=hessian, loglik=loglik, converged=converged, warnings=warnings)


# ----------------------------------------------------------------------------- pieces
def _check(estimates, covariances) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(estimates, dtype=float)
    S = np.asarray(covariances, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
        if S.ndim == 1:
            S = S[:, None, None]
    if y.ndim != 2 or y.shape[0] < 1:
        raise InputError(f"estimates must be a (k, p) array; got shape {np.shape(estimates)}")
    k, p = y.shape
    if S.shape != (k, p, p):
        raise InputError(f"covariances must have shape ({k}, {p}, {p}) to match estimates; "
                         f"got {np.shape(covariances)}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(S))):
        raise InputError("estimates and covariances must be finite")
    scale = np.max(np.abs(S), axis=(1, 2), keepdims=True)
    if np.any(np.abs(S - np.swapaxes(S, 1, 2)) > 1e-8 * scale):
        raise InputError("within-study covariances must be symmetric")
    S = 0.5 * (S + np.swapaxes(S, 1, 2))
    try:
        np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise InputError("within-study covariances must be positive definite") from None
    return y, S


def _moments(y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q and the symmetrised, untruncated moment estimate C^{-1}(Q - (k-1)I)."""
    k, p = y.shape
    wplus = W.sum(axis=0)
    ybar = np.linalg.solve(wplus, np.einsum("kab,kb->a", W, y))
    r = y - ybar
    q = np.einsum("kab,kb,kc->ac", W, r, r)
    if k < 2:
        return q, np.zeros((p, p))
    c = wplus - np.einsum("kab,bc,kcd->ad", W, np.linalg.inv(wplus), W)
    c = 0.5 * (c + c.T)
    raw = np.linalg.solve(c, q - (k - 1) * np.eye(p))
    return q, 0.5 * (raw + raw.T)


def _gls(y: np.ndarray, S: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised least-squares mean and its covariance given Psi."""
    W = np.linalg.inv(S + psi)
    cov = np.linalg.inv(W.sum(axis=0))
    cov = 0.5 * (cov + cov.T)
    return cov @ np.einsum("kab,kb->a", W, y), cov


def _tril(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices of the lower triangle in column-major order (R's lower.tri)."""
    cols, rows = np.triu_indices(p)
    return rows, cols


def _par_to_psi(par: np.ndarray, p: int) -> np.ndarray:
    L = np.zeros((p, p))
    L[_tril(p)] = par
    return L @ L.T


def _psi_to_par(psi: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(psi)
    return L[_tril(psi.shape[0])]


def _loglik(par: np.ndarray, y: np.ndarray, S: np.ndarray, reml: bool,
            gradient: bool = False):
    """(Restricted) log-likelihood profiled over beta, as a function of par (and its
    gradient). d l / d Psi = G = (1/2)[sum W r r' W - sum W (+ sum W A^{-1} W for REML)],
    A = sum W_i, and d l / d L = 2 G L."""
    k, p = y.shape
    rows, cols = _tril(p)
    L = np.zeros((p, p))
    L[rows, cols] = par
    sigma = S + L @ L.T
    try:
        chol = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return (-np.inf, np.zeros_like(par)) if gradient else -np.inf
    W = np.linalg.inv(sigma)
    A = W.sum(axis=0)
    A = 0.5 * (A + A.T)
    beta = np.linalg.solve(A, np.einsum("kab,kb->a", W, y))
    r = y - beta
    Wr = np.einsum("kab,kb->ka", W, r)
    logdet = 2.0 * float(np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2))))
    n_const = k * p - (p if reml else 0)
    val = -0.5 * (logdet + float(np.sum(r * Wr)) + n_const * np.log(2.0 * np.pi))
    if reml:
        val -= 0.5 * float(np.linalg.slogdet(A)[1])
    if not gradient:
        return val
    G = Wr.T @ Wr - W.sum(axis=0)
    if reml:
        G += np.einsum("kab,bc,kcd->ad", W, np.linalg.inv(A), W)
    G = 0.5 * (G + G.T) * 0.5
    return val, (2.0 * G @ L)[rows, cols]


def _hessian(par: np.ndarray, y: np.ndarray, S: np.ndarray, reml: bool) -> np.ndarray:
    """Hessian of the log-likelihood w.r.t. par by central differences of the gradient."""
    n = par.size
    H = np.empty((n, n))
    for j in range(n):
        h = 1e-5 * max(abs(par[j]), 0.1)
        up, down = par.copy(), par.copy()
        up[j] += h
        down[j] -= h
        H[:, j] = (_loglik(up, y, S, reml, True)[1] - _loglik(down, y, S, reml, True)[1]) / (2 * h)
    return 0.5 * (H + H.T)


__all__ = ["METHODS", "MVMAResult", "mvma"]
