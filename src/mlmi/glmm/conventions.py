"""Conventions every GLMM fit shares, whatever its family or fitter: lme4's start value
and convergence check, the Hessian-based covariance, the warnings a fit reports.

Kept apart from :mod:`mlmi.glmm.fit` so that a family with its own fitter (the
multinomial) uses them without importing the fitting driver, which imports the families.
"""

from __future__ import annotations

import numpy as np

from ._linalg import theta_diagonal_index, theta_to_lambda
from .optimize import SINGULAR_TOL, OptimResult, fd_hessian
from .result import FitWarning, GLMMResult


def identity_theta(q: int) -> np.ndarray:
    """theta of Lambda = I (lme4's default start)."""
    lam = np.eye(q)
    return np.array([lam[r, c] for c in range(q) for r in range(c, q)])


def lme4_gradient_check(opt: OptimResult, hessian: np.ndarray, p: int, q: int,
                         tol: float = 0.002, hold: list[int] = ()) -> bool:
    """lme4's convergence check (``checkConv``, ``check.conv.grad``): converged if, for
    every parameter not on the boundary, the smaller of |gradient| and |Hessian-scaled
    gradient| is below ``tol`` on the deviance scale (our objective is deviance / 2).
    The scaled gradient L^{-1} g (H = L L') is the remaining Newton step in standard-error
    units, so a large data set with a flat optimum is not flagged merely because its raw
    gradient is large."""
    lam_diag = np.diag(theta_to_lambda(opt.par[p:p + q * (q + 1) // 2], q))
    on_boundary = {p + t for t, c in zip(theta_diagonal_index(q), range(q), strict=True)
                   if lam_diag[c] < SINGULAR_TOL}
    free = [t for t in range(opt.par.size) if t not in on_boundary and t not in hold]
    g = 2.0 * opt.grad[free]  # deviance scale
    try:
        L = np.linalg.cholesky(2.0 * hessian[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return False
    scaled = np.linalg.solve(L, g)
    return bool(np.max(np.minimum(np.abs(g), np.abs(scaled))) < tol)


def common_warnings(res: GLMMResult, opt: OptimResult, warnings_: list, newton_failures=0):
    """Append the warnings every GLMM fit reports: non-convergence of the optimiser or of
    the conditional modes, and a singular random-effects covariance."""
    if not opt.converged:
        g = np.max(np.abs(opt.grad)) if np.all(np.isfinite(opt.grad)) else np.nan
        warnings_.append(FitWarning(
            "convergence",
            f"model failed to converge: max|gradient| = {g:.3g} after {opt.n_iter} "
            f"iterations ({opt.message})",
        ))
    if newton_failures:
        warnings_.append(FitWarning(
            "convergence",
            f"the conditional modes of {newton_failures} cluster(s) did not converge",
        ))
    if res.singular:
        warnings_.append(FitWarning(
            "singular",
            "boundary (singular) fit: the estimated random-effects covariance matrix is "
            "singular (a variance is 0 or a correlation is ±1); see lme4's ?isSingular",
        ))


def safe_inverse(A: np.ndarray) -> np.ndarray:
    """A's inverse, or NaN where A is singular (reported by the caller, never raised)."""
    try:
        return np.linalg.inv(A)
    except np.linalg.LinAlgError:
        return np.full_like(A, np.nan)


def hessian_vcov(
    fun, par: np.ndarray, p: int, q: int, *, step: float = 1e-4, central: bool = False,
    keep: list[int] | None = None, hold: list[int] = (), hessian: np.ndarray | None = None,
) -> tuple[np.ndarray, bool, np.ndarray]:
    """The ``keep`` block (default: beta) of the inverse Hessian of -loglik in
    (beta, theta, extra), by differences of the gradient (forward differences of the
    exact gradient by default; ``hessian``: one already computed next to ``par``, by
    the optimiser's Newton finish). theta on the boundary (a zero diagonal of Lambda) is
    held fixed, and directions of zero curvature among the other parameters (a
    redundant parametrisation at a singular fit) are projected out. Returns
    (covariance, ok, full Hessian)."""
    keep = list(range(p)) if keep is None else list(keep)
    nk = len(keep)
    npar = par.size
    hess = (fd_hessian(fun, par, step=step, central=central) if hessian is None
            else hessian)
    if not np.all(np.isfinite(hess)):
        return np.full((nk, nk), np.nan), False, hess
    diag_index = p + theta_diagonal_index(q)
    lam = theta_to_lambda(par[p:p + q * (q + 1) // 2], q)
    fixed = [t for t, c in zip(diag_index, range(q), strict=True) if lam[c, c] < SINGULAR_TOL]
    fixed += list(hold)
    free = [t for t in range(npar) if t not in fixed and t not in keep]
    A = hess[np.ix_(keep, keep)]
    B = hess[np.ix_(keep, free)]
    C = hess[np.ix_(free, free)]
    if len(free):
        w, V = np.linalg.eigh(C)
        tol = 1e-8 * max(1.0, np.max(np.abs(w)))
        pos = w > tol
        if np.any(w < -tol):
            return np.full((nk, nk), np.nan), False, hess
        Cpinv = (V[:, pos] / w[pos]) @ V[:, pos].T
        schur = A - B @ Cpinv @ B.T
    else:
        schur = A
    try:
        cov = np.linalg.inv(schur)
    except np.linalg.LinAlgError:
        return np.full((nk, nk), np.nan), False, hess
    cov = 0.5 * (cov + cov.T)
    if np.any(np.linalg.eigvalsh(cov) <= 0):
        return cov, False, hess
    return cov, True, hess
