"""Single-level generalized linear models by iteratively reweighted least squares.

Used for start values of the GLMM, by stratified imputation (study dummies) and by
the per-study first stage of two-stage imputation. Canonical links only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from .glmm.families import Family, get_family


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
    """Fit ``g(E[y]) = X beta`` by IRLS (R's ``glm.fit`` algorithm).

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
    # start as R does: mu from y shrunk away from the boundary
    mu, eta = fam.irls_start(y)
    dev_old = np.inf
    beta = np.zeros(p)
    converged = False
    n_iter = 0
    for n_iter in range(1, maxit + 1):  # noqa: B007 (reported below)
        w = np.maximum(fam.irls_weights(mu), 1e-12)
        z = eta + (y - mu) / w
        xw = X * (w * fw)[:, None]
        try:
            cf = cho_factor(X.T @ xw + ridge * np.eye(p))
        except LinAlgError:
            break
        beta = cho_solve(cf, xw.T @ z)
        eta = X @ beta
        mu = fam.inverse_link(eta)
        dev = -2.0 * float(fw @ fam.loglik(y, eta))
        if abs(dev - dev_old) / (abs(dev) + 0.1) < tol:
            converged = True
            break
        dev_old = dev
    w = fam.irls_weights(mu)
    info = X.T @ (X * (np.maximum(w, 1e-300) * fw)[:, None]) + ridge * np.eye(p)
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov = np.full((p, p), np.inf)
    separated = fam.separated(eta)
    dev = -2.0 * float(fw @ fam.loglik(y, eta))
    return GLMFit(beta, cov, 1.0, n - p, converged, separated, n_iter, dev)
