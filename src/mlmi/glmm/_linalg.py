"""Tiny dense linear algebra for the q×q blocks of a two-level model (compiled).

q (the number of random effects per cluster) is 1–3 in practice, so hand-written
loops beat a LAPACK call per cluster by a wide margin.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def chol_inplace(a):
    """Lower Cholesky factor of a symmetric positive definite matrix, in place.

    Returns False if the matrix is not numerically positive definite.
    """
    q = a.shape[0]
    for j in range(q):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if not s > 0.0:
            return False
        ljj = np.sqrt(s)
        a[j, j] = ljj
        for i in range(j + 1, q):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / ljj
        for i in range(j):
            a[i, j] = 0.0
    return True


@njit(cache=True, error_model="numpy")
def chol_solve(L, b, out):
    """Solve (L L') x = b for x given the lower Cholesky factor L."""
    q = L.shape[0]
    for i in range(q):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * out[k]
        out[i] = s / L[i, i]
    for i in range(q - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, q):
            s -= L[k, i] * out[k]
        out[i] = s / L[i, i]


@njit(cache=True)
def damped_newton_step(N, g, work, s):
    """Levenberg-damped Newton step of an ascent: solves (N + lam I) s = g with the
    smallest lam >= 0 (0, then 1e-3 (1 + max |N_rr|), doubling) that makes N + lam I
    positive definite (N: minus the Hessian; ``work`` is overwritten with the factor).
    Returns (decrement g's, lam): lam > 0 says the function is not concave there."""
    q = N.shape[0]
    lam = 0.0
    scale = 0.0
    for r in range(q):
        scale = max(scale, abs(N[r, r]))
    while True:
        for r in range(q):
            for c in range(q):
                work[r, c] = N[r, c]
            work[r, r] += lam
        if chol_inplace(work):
            break
        lam = max(2.0 * lam, 1e-3 * (1.0 + scale))
    chol_solve(work, g, s)
    dec = 0.0
    for r in range(q):
        dec += g[r] * s[r]
    return dec, lam


@njit(cache=True, error_model="numpy")
def chol_logdet(L):
    """log det(L L')."""
    s = 0.0
    for i in range(L.shape[0]):
        s += np.log(L[i, i])
    return 2.0 * s


@njit(cache=True, error_model="numpy")
def chol_inverse(L, out):
    """(L L')^{-1} from the lower Cholesky factor."""
    q = L.shape[0]
    e = np.zeros(q)
    col = np.zeros(q)
    for j in range(q):
        for i in range(q):
            e[i] = 0.0
        e[j] = 1.0
        chol_solve(L, e, col)
        for i in range(q):
            out[i, j] = col[i]


#: Newton's method for a cluster's conditional mode (every family): iteration limit, and
#: the tolerance on the Newton decrement g'H^{-1}g — the mode within ~3e-8, so the Laplace
#: log-determinant (not stationary at the mode) is accurate to ~1e-9 per cluster
NEWTON_MAXIT = 60
NEWTON_TOL = 1e-15

#: outcomes of :func:`newton_update`
NEWTON_FAILED, NEWTON_CONVERGED, NEWTON_STEPPED = 0, 1, 2


@njit(cache=True, inline="always", error_model="numpy")
def newton_update(H, g, step, u, uprev):
    """One Newton step for a conditional mode: factor the curvature H (in place), solve
    H step = g, and stop if the decrement g'step is below NEWTON_TOL; otherwise keep u in
    ``uprev`` (for step halving) and move u to u - step. Returns NEWTON_FAILED (H not
    positive definite), NEWTON_CONVERGED or NEWTON_STEPPED."""
    if not chol_inplace(H):
        return NEWTON_FAILED
    chol_solve(H, g, step)
    decrement = 0.0
    for r in range(u.shape[0]):
        decrement += g[r] * step[r]
    if decrement < NEWTON_TOL:
        return NEWTON_CONVERGED
    for r in range(u.shape[0]):
        uprev[r] = u[r]
        u[r] -= step[r]
    return NEWTON_STEPPED


def theta_to_lambda(theta: np.ndarray, q: int) -> np.ndarray:
    """Relative Cholesky factor Λ (lower triangular) from θ, lme4's column-major order.

    For q = 2, θ = (Λ11, Λ21, Λ22), so Ψ = ΛΛ' has Ψ11 = Λ11², Ψ21 = Λ21 Λ11 and
    Ψ22 = Λ21² + Λ22² — the same θ that lme4 reports in ``getME(fit, "theta")``.
    """
    lam = np.zeros((q, q))
    t = 0
    for c in range(q):
        for r in range(c, q):
            lam[r, c] = theta[t]
            t += 1
    return lam


def lambda_to_theta(lam: np.ndarray) -> np.ndarray:
    """Inverse of :func:`theta_to_lambda`."""
    q = lam.shape[0]
    return np.array([lam[r, c] for c in range(q) for r in range(c, q)], dtype=float)


def theta_diagonal_index(q: int) -> np.ndarray:
    """Positions in θ of the diagonal of Λ (bounded below by 0, as in lme4)."""
    idx, t = [], 0
    for c in range(q):
        for r in range(c, q):
            if r == c:
                idx.append(t)
            t += 1
    return np.array(idx, dtype=np.int64)


def theta_pairs(q: int) -> np.ndarray:
    """(row, column) of Λ for each θ element."""
    return np.array([(r, c) for c in range(q) for r in range(c, q)], dtype=np.int64)
