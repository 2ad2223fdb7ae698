"""Single-level generalized linear models by iteratively reweighted least squares.

Used for start values of the GLMM, by stratified imputation (study dummies) and by
the per-study first stage of two-stage imputation. Canonical links only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .glmm.families import Family, get_family

_EPS = np.finfo(float).eps


@dataclass
class GLMFit:
    """A fitted single-level GLM.

    beta : coefficients; cov : their covariance (inverse Fisher information, times
    sigma^2 for gaussian); sigma : residual SD (gaussian; 1 otherwise); df_resid : n - p;
    converged : IRLS met its tolerance; separated : fitted probabilities numerically 0
    or 1 occurred (binomial), i.e. (quasi-)complete separation; n_iter : iterations.
    """

    beta: np.ndarray
    cov: np.ndarray
    sigma: float
    df_resid: int
    converged: bool
    separated: bool
    n_iter: int
    deviance: float


def fit_glm(
    y: np.ndarray,
    X: np.ndarray,
    family: str | Family,
    *,
    maxit: int = 50,
    tol: float = 1e-10,
    ridge: float = 0.0,
    weights: np.ndarray | None = None,
) -> GLMFit:
    """Fit ``g(E[y]) = X beta`` by IRLS (R's ``glm.fit`` algorithm; :func:`irls`).

    Parameters
    ----------
    y : response (0/1 for binomial, counts for poisson).
    X : design matrix including the intercept column.
    family : "gaussian", "binomial" or "poisson" (canonical links).
    maxit, tol : IRLS iteration limit and relative deviance tolerance.
    ridge : optional L2 penalty on the coefficients (0: plain maximum likelihood).
    weights : frequency weights (a row with weight k counts as k identical rows).
    """
    fam = get_family(family)
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    p = X.shape[1]
    fw = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    n = round(fw.sum())
    if fam.fitter == "lmm":
        xtx = X.T @ (X * fw[:, None]) + ridge * np.eye(p)
        cf = cho_factor(xtx)
        beta = cho_solve(cf, X.T @ (fw * y))
        resid = y - X @ beta
        rss = float(fw @ resid**2)
        df = max(n - p, 1)
        sigma2 = rss / df
        cov = sigma2 * cho_solve(cf, np.eye(p))
        return GLMFit(beta, cov, float(np.sqrt(sigma2)), n - p, True, False, 1, rss)
    fit = irls(y, X, fam, np.zeros(1, dtype=np.intp), maxit=maxit, tol=tol, ridge=ridge,
               weights=fw)
    beta, info = fit.beta[0], fit.info[0]
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.inf)
    eta = X @ beta
    dev = -2.0 * float(fw @ fam.loglik(y, eta))
    return GLMFit(beta, cov, 1.0, n - p, bool(fit.converged[0]), fam.separated(eta),
                  int(fit.n_iter[0]), dev)


@dataclass
class IRLSFit:
    """Per-group IRLS results: ``beta`` (m, p), Fisher information ``info`` (m, p, p)
    at ``beta`` (plus the ridge), ``converged`` and ``failed`` (non-finite values or a
    singular weighted design) per group, ``n_iter`` per group."""

    beta: np.ndarray
    info: np.ndarray
    converged: np.ndarray
    failed: np.ndarray
    n_iter: np.ndarray


def irls(
    y: np.ndarray,
    X: np.ndarray,
    family: str | Family,
    starts: np.ndarray,
    *,
    maxit: int = 25,
    tol: float = 1e-8,
    ridge: float = 0.0,
    weights: np.ndarray | None = None,
) -> IRLSFit:
    """R's ``glm.fit`` algorithm, vectorised over groups of rows: the one IRLS of mlmi
    (a single fit is one group; two-stage imputation fits every study at once).

    Rows are sorted by group and group g owns rows ``starts[g]:starts[g + 1]``.
    Start from the family's ``irls_start`` (mu from y shrunk away from the boundary),
    then iterate weighted least squares with the working weights ``irls_weights(mu)``
    until the relative change of the deviance, |dev - dev_old| / (|dev| + 0.1), is below
    ``tol`` (R's ``glm.control``), group by group. ``ridge`` adds an L2 penalty;
    ``weights`` are frequency weights.
    """
    fam = get_family(family)
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    fw = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    starts = np.asarray(starts, dtype=np.intp)
    m = starts.size
    bounds = np.append(starts, n)
    groups = [slice(bounds[g], bounds[g + 1]) for g in range(m)]
    penalty = ridge * np.eye(p)
    mu, eta = fam.irls_start(y)
    beta = np.zeros((m, p))
    active = np.ones(m, dtype=bool)
    converged = np.zeros(m, dtype=bool)
    failed = np.zeros(m, dtype=bool)
    n_iter = np.zeros(m, dtype=np.int64)
    dev_old = np.full(m, np.inf)
    dev = np.empty(m)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(maxit):
            w = np.maximum(fam.irls_weights(mu), _EPS) * fw
            wz = w * eta + (y - mu) * fw  # w (eta + (y - mu) / w), the working response
            for g in np.flatnonzero(active):
                rows = groups[g]
                Xg = X[rows]
                n_iter[g] += 1
                try:
                    beta[g] = np.linalg.solve(Xg.T @ (Xg * w[rows, None]) + penalty,
                                              Xg.T @ wz[rows])
                except np.linalg.LinAlgError:
                    failed[g] = True
                if not np.all(np.isfinite(beta[g])):
                    failed[g] = True
                if failed[g]:
                    beta[g] = 0.0
                eta[rows] = fam.clip_eta(Xg @ beta[g])
                mu[rows] = fam.inverse_link(eta[rows])
                dev[g] = np.sum(fw[rows] * fam.deviance_rows(y[rows], eta[rows], mu[rows]))
            failed |= ~np.isfinite(dev)
            done = np.abs(dev - dev_old) / (np.abs(dev) + 0.1) < tol
            converged |= done & active & ~failed
            active &= ~(done | failed)
            dev_old = dev.copy()
            if not active.any():
                break
        w = np.maximum(fam.irls_weights(mu), _EPS) * fw
        info = np.stack([X[rows].T @ (X[rows] * w[rows, None]) + penalty for rows in groups])
    failed |= ~np.all(np.isfinite(info), axis=(1, 2))
    return IRLSFit(beta, info, converged & ~failed, failed, n_iter)
