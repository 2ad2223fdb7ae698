"""Multinomial logistic regression: the Newton fit and the posterior-approximate draw
behind ``2lonly.polyreg`` (and any later ``polyreg``).

Model: category ``c`` in 0..L-1 with ``P(c | x) = exp(x'b_c) / sum_k exp(x'b_k)``,
``b_0 = 0`` (the first category is the reference), so the coefficients are a P × (L-1)
matrix B. The weighted log-likelihood is concave; Newton's method with step halving
finds its maximum B_hat, and the inverse of the negative Hessian there is the
large-sample covariance V of vec(B_hat) (column-major: all P coefficients of category
1, then of category 2, ...), as R's ``nnet::multinom(Hess = TRUE)`` and statsmodels'
``MNLogit`` report it.

Imputation (:func:`draw_multinom`) draws B* ~ N(B_hat, V) — the normal approximation to
the posterior, as ``logreg`` does for two categories (Rubin 1987, p. 169-170) — and then
each missing category from its predicted probabilities under B*. mice's ``polyreg``
uses the fitted probabilities without drawing B (an improper imputation: the
uncertainty about B is left out); here B is drawn so that the imputations are proper.
Against separation the observed rows are augmented as in mice (White, Daniel & Royston
2010): for every non-constant column, two pseudo-rows (its mean ± SD/2) per category,
sharing a total weight equal to the number of coefficients per category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._single import draw_normal


@dataclass
class MultinomFit:
    """``beta`` (P × (L-1), reference category 0), ``cov`` (covariance of
    ``beta.ravel(order="F")``), whether Newton ``converged``, iterations, log-likelihood,
    and whether a ``ridge`` had to stabilise a singular Hessian."""

    beta: np.ndarray
    cov: np.ndarray
    converged: bool
    n_iter: int
    loglik: float
    ridge: bool


def _lse(eta: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp (n × 1), shifted by the row maximum (no overflow); scipy's
    logsumexp without its per-call overhead, which dominated small fits."""
    top = eta.max(axis=1, keepdims=True)
    return top + np.log(np.exp(eta - top).sum(axis=1, keepdims=True))


def _probs(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """n × L probabilities (category 0 first)."""
    eta = np.column_stack([np.zeros(x.shape[0]), x @ beta])
    return np.exp(eta - _lse(eta))


def _loglik(x, onehot, w, beta) -> float:
    eta = np.column_stack([np.zeros(x.shape[0]), x @ beta])
    return float(np.sum(w * (np.sum(onehot * eta, axis=1) - _lse(eta)[:, 0])))


def _information(x: np.ndarray, w: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """Negative Hessian of the log-likelihood in vec(B) (column-major) order."""
    P = x.shape[1]
    p = pr[:, 1:]
    L1 = p.shape[1]
    out = np.empty((P * L1, P * L1))
    for a in range(L1):
        for b in range(a, L1):
            wab = w * (p[:, a] * ((a == b) - p[:, b]))
            block = x.T @ (x * wab[:, None])
            out[a * P:(a + 1) * P, b * P:(b + 1) * P] = block
            out[b * P:(b + 1) * P, a * P:(a + 1) * P] = block.T
    return out


def fit_multinom(x: np.ndarray, y: np.ndarray, n_levels: int,
                 weights: np.ndarray | None = None, *, maxit: int = 100,
                 tol: float = 1e-10, ridge: float = 0.0,
                 start: np.ndarray | None = None) -> MultinomFit:
    """Maximum likelihood fit of the multinomial logistic regression of ``y`` (codes
    0..n_levels-1) on the design ``x`` (with its intercept column), by Newton's method
    with step halving. ``weights``: frequency weights; ``ridge``: optional L2 penalty;
    ``start``: P × (L-1) coefficients to start from (a warm start; default 0)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y).astype(np.int64)
    n, P = x.shape
    L1 = n_levels - 1
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    onehot = np.zeros((n, n_levels))
    onehot[np.arange(n), y] = 1.0
    beta = np.zeros((P, L1))
    if start is not None and np.shape(start) == (P, L1) and np.all(np.isfinite(start)):
        beta = np.array(start, dtype=float)
    ll = _loglik(x, onehot, w, beta) - 0.5 * ridge * float(np.sum(beta**2))
    converged = False
    used_ridge = ridge > 0
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007 (reported)
        pr = _probs(x, beta)
        grad = (x.T @ (w[:, None] * (onehot[:, 1:] - pr[:, 1:]))).ravel(order="F")
        grad -= ridge * beta.ravel(order="F")
        info = _information(x, w, pr) + ridge * np.eye(P * L1)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, grad, rcond=None)[0]
        t = 1.0
        while True:
            cand = beta + t * step.reshape((P, L1), order="F")
            ll_new = _loglik(x, onehot, w, cand) - 0.5 * ridge * float(np.sum(cand**2))
            if ll_new >= ll - 1e-12 * abs(ll) or t < 1e-8:
                break
            t *= 0.5
        change = ll_new - ll
        beta, ll = cand, ll_new
        if abs(change) < tol * (abs(ll) + 0.1) and np.max(np.abs(t * step)) < 1e-6:
            converged = True
            break
    info = _information(x, w, _probs(x, beta)) + ridge * np.eye(P * L1)
    try:
        cov = np.linalg.inv(info)
        if not np.all(np.isfinite(cov)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        pen = 1e-5 * max(float(np.mean(np.diag(info))), 1e-8)
        cov = np.linalg.inv(info + pen * np.eye(P * L1))
        used_ridge = True
    return MultinomFit(beta, cov, converged, it, ll, used_ridge)


def augment_multinom(x_ref: np.ndarray, n_levels: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-rows (X, y, weights) against separation: for every non-constant column j
    (not the intercept), rows at mean ± SD/2 of column j (others at their mean) for each
    category, sharing a total weight equal to the number of columns (mice's augment)."""
    P = x_ref.shape[1]
    mean = x_ref.mean(axis=0)
    sd = x_ref.std(axis=0, ddof=1) if x_ref.shape[0] > 1 else np.zeros(P)
    cols = np.flatnonzero(sd > 0)
    rows, ys = [], []
    for j in cols:
        for sign in (-0.5, 0.5):
            row = mean.copy()
            row[j] = np.clip(mean[j] + sign * sd[j], x_ref[:, j].min(), x_ref[:, j].max())
            for c in range(n_levels):
                rows.append(row)
                ys.append(c)
    if not rows:
        return np.empty((0, P)), np.empty(0, dtype=np.int64), np.empty(0)
    xa = np.array(rows)
    return xa, np.array(ys, dtype=np.int64), np.full(len(rows), P / len(rows))


def draw_multinom(fit: MultinomFit, x_mis: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """B* ~ N(B_hat, V), then one category per row of ``x_mis`` from its probabilities
    under B*. Returns (codes, B*)."""
    P, L1 = fit.beta.shape
    b_star = draw_normal(fit.beta.ravel(order="F"), fit.cov, rng).reshape((P, L1),
                                                                          order="F")
    pr = _probs(x_mis, b_star)
    u = rng.random(x_mis.shape[0])
    codes = np.minimum((np.cumsum(pr, axis=1) < u[:, None]).sum(axis=1), pr.shape[1] - 1)
    return codes.astype(float), b_star
