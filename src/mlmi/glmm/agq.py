"""Adaptive Gauss–Hermite quadrature (nagq > 1) for random intercepts and slopes (q <= 2).

Beyond lme4, whose ``nAGQ > 1`` is limited to one scalar random effect. For each
cluster the integrand g(u) = p(y_i | beta, Lambda u) phi(u) is centred at its mode
u_hat and scaled by the Cholesky factor L of its curvature H_i = L L' there:

    int g(u) du = 2^{q/2} |L|^{-1} int exp(-|z|^2) [g(u_hat + sqrt(2) L^{-T} z) exp(|z|^2)] dz
                ~ 2^{q/2} |L|^{-1} sum_k w_k g(u_k) exp(|z_k|^2),

a product rule with ``nagq`` nodes per dimension. With one node it is the Laplace
approximation. The objective has no cheap exact gradient (the nodes move with the
parameters), so the optimiser starts from the Laplace optimum and uses central
differences, as lme4 does for its nAGQ > 1 stage.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..exceptions import InputError
from ._linalg import chol_logdet, theta_diagonal_index, theta_to_lambda
from .design import ClusterDesign
from .families import Family
from .laplace import _cluster_mode, cluster_loglik
from .optimize import OptimResult, fit_with_boundary_checks


@njit(cache=True, error_model="numpy")
def agq_objective(beta, lam, y, wt, X, W, starts, fam, u, nodes, logw):
    """Minus the AGQ log-likelihood (constants in y excluded). ``nodes`` (K × q) and
    ``logw`` (K) form the product Gauss–Hermite rule; ``u`` holds warm-start modes.
    Returns (objective, number of clusters whose mode did not converge: their rule is
    centred on the last Newton iterate)."""
    n = X.shape[0]
    q = W.shape[1]
    k = starts.shape[0] - 1
    xb = X @ beta
    Z = W @ lam
    mu = np.empty(n)
    d = np.empty(n)
    dd = np.empty(n)
    H = np.empty((q, q))
    uk = np.empty(q)
    K = nodes.shape[0]
    vals = np.empty(K)
    total = 0.0
    failed = 0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = u[i]
        _, ok = _cluster_mode(fam, y, wt, xb, Z, a, b, ui, H, mu, d, dd)
        if not ok:
            failed += 1
        # u_k = u_hat + sqrt(2) L^{-T} z_k  (back substitution with L')
        for kk in range(K):
            for r in range(q - 1, -1, -1):
                s = np.sqrt(2.0) * nodes[kk, r]
                for c in range(r + 1, q):
                    s -= H[c, r] * uk[c]
                uk[r] = s / H[r, r]
            logg = 0.0
            z2 = 0.0
            for r in range(q):
                uk[r] += ui[r]
                logg -= 0.5 * uk[r] * uk[r]
                z2 += nodes[kk, r] * nodes[kk, r]
            logg += cluster_loglik(fam, y, wt, xb, Z, a, b, uk)
            vals[kk] = logw[kk] + logg + z2
        vmax = vals.max()
        acc = 0.0
        for kk in range(K):
            acc += np.exp(vals[kk] - vmax)
        # log of 2^{q/2} |L|^{-1} (2 pi)^{-q/2} sum_k ...
        loglik_i = 0.5 * q * np.log(2.0) - 0.5 * chol_logdet(H) - 0.5 * q * np.log(
            2.0 * np.pi) + vmax + np.log(acc)
        total -= loglik_i
    return total, failed


def gauss_hermite_rule(nagq: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Product Gauss–Hermite rule (weight exp(-|z|^2)) with ``nagq`` nodes per dimension."""
    z, w = np.polynomial.hermite.hermgauss(nagq)
    grids = np.meshgrid(*([z] * q), indexing="ij")
    wgrids = np.meshgrid(*([w] * q), indexing="ij")
    nodes = np.column_stack([g.ravel() for g in grids])
    logw = np.sum(np.log(np.column_stack([g.ravel() for g in wgrids])), axis=1)
    return nodes, logw


def fit_agq(design: ClusterDesign, fam: Family, nagq: int, st, vcov: str):
    """Maximise the AGQ likelihood, starting from the Laplace optimum."""
    from .fit import _fit_glmm_laplace, _glmm_result, _hessian_vcov

    q, p = design.q, design.p
    if q > 2:
        raise InputError(f"nagq > 1 is implemented for q <= 2 random effects, not q = {q}")
    laplace = _fit_glmm_laplace(design, fam, st, "fisher")
    nodes, logw = gauss_hermite_rule(nagq, q)
    y, X, W, starts, wt = design.y, design.X, design.W, design.starts, design.weights
    u = laplace.u.copy()
    nth = q * (q + 1) // 2
    npar = p + nth

    failures = [0]

    def value(par: np.ndarray) -> float:
        lam = theta_to_lambda(par[p:], q)
        total, failures[0] = agq_objective(par[:p], lam, y, wt, X, W, starts, fam.code, u,
                                           nodes, logw)
        return float(total)

    def fun(par: np.ndarray) -> tuple[float, np.ndarray]:
        f0 = value(par)
        g = np.empty(npar)
        for t in range(npar):
            h = 1e-5 * max(1.0, abs(par[t]))
            e = np.zeros(npar)
            e[t] = h
            g[t] = (value(par + e) - value(par - e)) / (2 * h)
        value(par)
        return f0, g

    par0 = np.concatenate([laplace.beta, laplace.theta])
    diag_index = p + theta_diagonal_index(q)
    lower = np.full(npar, -np.inf)
    lower[diag_index] = 0.0
    opt, notes = fit_with_boundary_checks(fun, par0, lower, diag_index)
    opt = OptimResult(opt.par, opt.value, opt.n_iter + laplace.n_iter,
                      opt.n_eval + laplace.n_eval, opt.converged, opt.message, opt.grad)
    value(opt.par)  # the modes, and their failures, at the optimum
    res = _glmm_result(design, fam, opt, fun, u, "fisher", notes, failures[0], nagq=nagq)
    # the reported loglik is the AGQ one; modes and conditional covariances are the
    # Laplace quantities at the AGQ estimates (as lme4 reports them)
    if vcov == "hessian":
        # the gradient is itself a finite difference: a larger, central step
        cov, ok, _ = _hessian_vcov(fun, opt.par, p, q, step=1e-3, central=True)
        if ok:
            res.beta_cov = cov
            res.vcov_method = "hessian"
    return res
