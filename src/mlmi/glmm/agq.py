"""Adaptive Gauss–Hermite quadrature (nagq > 1) for random intercepts and slopes (q <= 2).

Beyond lme4, whose ``nAGQ > 1`` is limited to one scalar random effect. For each
cluster the integrand g(u) = p(y_i | beta, Lambda u) phi(u) is centred at its mode
u_hat and scaled by the Cholesky factor L of its curvature H_i = L L' there:

    int g(u) du = 2^{q/2} |L|^{-1} int exp(-|z|^2) [g(u_hat + sqrt(2) L^{-T} z) exp(|z|^2)] dz
                ~ 2^{q/2} |L|^{-1} sum_k w_k g(u_k) exp(|z_k|^2),

a product rule with ``nagq`` nodes per dimension. With one node it is the Laplace
approximation. The objective has no cheap exact gradient (the nodes move with the
parameters), so the optimiser starts from the Laplace optimum and uses central
differences, as lme4 does for its nAGQ > 1 stage (:func:`mlmi.glmm.fit.fit_agq`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._linalg import chol_logdet
from .laplace import cluster_loglik, cluster_mode


@njit(cache=True, error_model="numpy")
def agq_objective(beta, lam, y, wt, X, W, starts, fam, extra, u, nodes, logw):
    """Minus the AGQ log-likelihood (constants in y excluded). ``nodes`` (K × q) and
    ``logw`` (K) form the product Gauss–Hermite rule; ``u`` holds warm-start modes.
    Returns (objective, number of clusters whose mode did not converge: their rule is
    centred on the last Newton iterate)."""
    n = X.shape[0]
    q = W.shape[1]
    k = starts.shape[0] - 1
    xb = X @ beta
    Z = W @ lam
    g1 = np.empty(n)
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
        _, ok = cluster_mode(fam, y, wt, xb, Z, a, b, ui, H, g1, d, dd, extra)
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
            logg += cluster_loglik(fam, y, wt, xb, Z, a, b, uk, extra)
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
