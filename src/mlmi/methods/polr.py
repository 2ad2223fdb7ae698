"""``polr``: proportional-odds imputation of an ordinal variable (mice's
``mice.impute.polr``), with the study as fixed dummies for stratified imputation.

Model (as ``MASS::polr``): for categories 0..L-1,
``logit P(Z <= k | x) = theta_k - x'beta``, k = 0..L-2, with ordered thresholds
``theta_0 < ... < theta_{L-2}`` and no intercept in ``x'beta`` (the thresholds take its
place). In the stratified design (``cluster_role == 1``) ``x`` holds one indicator per
study and the predictors; the first observing study's indicator is left out (its
location is in the thresholds), so the other studies' coefficients are location shifts
relative to it. A systematically missing study gets the paper's rule
(:mod:`._single`): the average of the estimated study coefficients (the left-out
study counting 0).

1. Augment the observed rows against separation and empty categories, as mice does
   (White, Daniel & Royston 2010; :func:`._multinom.augment_multinom`).
2. Maximise the weighted log-likelihood by Newton's method with step halving (the
   log-likelihood is concave in (theta, beta), Pratt 1981), from the marginal
   cumulative logits.
3. Draw ``(alpha*, beta*)`` from the normal approximation of the posterior, on the
   scale ``alpha = (theta_0, log(theta_1 - theta_0), ...)`` (so the drawn thresholds
   are always ordered); its covariance is the inverse observed information
   ``(J' I J)^{-1}``, ``J = d theta / d alpha`` — the scale ``2l.polr`` draws on.
4. Each missing value from its category probabilities under ``(theta*, beta*)``.

mice's ``polr`` predicts with the fitted ``(theta_hat, beta_hat)`` without drawing them
(an improper imputation: the parameter uncertainty is left out, so Rubin's rules
understate the variance); here they are drawn, as ``logreg`` draws beta. mice falls back
to ``multinom`` when ``polr`` fails; here the concave Newton fit of the augmented data
does not fail short of a singular information matrix, where a ridge (counted) is added.

``info``: ``n_sporadic``, ``n_systematic``, ``fit_converged``, ``ridge``, ``n_iter``,
``fit_warnings``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from . import register
from ._multinom import augment_multinom
from ._single import Design, build_design, draw_normal
from .base import Draw, Problem

#: Newton's limit and tolerance (on the largest step of a parameter)
MAXIT, TOL = 100, 1e-9


@dataclass
class PolrFit:
    """A proportional-odds fit: ``theta`` (L-1 ordered thresholds), ``beta`` (P), the
    covariance ``cov`` of ``(alpha, beta)`` with ``alpha`` the log-gap scale, the
    covariance ``cov_theta`` of ``(theta, beta)`` (``MASS::polr``'s ``vcov`` up to its
    order: polr lists beta first), the log-likelihood, whether Newton ``converged``, its
    iterations and whether a ``ridge`` stabilised a singular information matrix."""

    theta: np.ndarray
    beta: np.ndarray
    cov: np.ndarray
    cov_theta: np.ndarray
    loglik: float
    converged: bool
    n_iter: int
    ridge: bool

    @property
    def alpha(self) -> np.ndarray:
        return alpha_from_theta(self.theta)


def theta_from_alpha(alpha: np.ndarray) -> np.ndarray:
    """Ordered thresholds from ``(theta_0, log gaps)`` (works on the last axis)."""
    alpha = np.asarray(alpha, dtype=float)
    out = alpha.copy()
    out[..., 1:] = np.exp(alpha[..., 1:])
    return np.cumsum(out, axis=-1)


def alpha_from_theta(theta: np.ndarray) -> np.ndarray:
    """``(theta_0, log(theta_1 - theta_0), ...)`` of ordered thresholds."""
    theta = np.asarray(theta, dtype=float)
    out = theta.copy()
    out[..., 1:] = np.log(np.diff(theta, axis=-1))
    return out


def _jacobian(theta: np.ndarray) -> np.ndarray:
    """d theta / d alpha (lower triangular: theta_j = alpha_0 + sum_{m<=j} exp(alpha_m))."""
    L1 = theta.size
    J = np.zeros((L1, L1))
    J[:, 0] = 1.0
    gaps = np.diff(theta)
    for m in range(1, L1):
        J[m:, m] = gaps[m - 1]
    return J


def _terms(y: np.ndarray, eta: np.ndarray, theta: np.ndarray):
    """Per row: log p, and the first and second derivatives of log p with respect to
    a = theta_y - eta and c = theta_{y-1} - eta (a = +inf for the top category,
    c = -inf for the bottom one)."""
    L1 = theta.size
    upper = y < L1
    lower = y > 0
    a = np.where(upper, np.concatenate([theta, [0.0]])[np.minimum(y, L1)] - eta, 0.0)
    c = np.where(lower, theta[np.maximum(y - 1, 0)] - eta, 0.0)
    Fa = np.where(upper, expit(a), 1.0)
    Ga = np.where(upper, expit(-a), 0.0)
    Fc = np.where(lower, expit(c), 0.0)
    Gc = np.where(lower, expit(-c), 1.0)
    fa = Fa * Ga * upper
    fc = Fc * Gc * lower
    dfa = fa * (Ga - Fa)
    dfc = fc * (Gc - Fc)
    D = np.where(Fa < 0.5, Fa - Fc, Gc - Ga)  # without cancellation
    D = np.maximum(D, 1e-300)
    la, lc = fa / D, -fc / D
    laa = dfa / D - la**2
    lcc = -dfc / D - lc**2
    lac = -la * lc
    return np.log(D), la, lc, laa, lcc, lac


def _loglik(x, y, w, theta, beta) -> float:
    return float(np.sum(w * _terms(y, x @ beta, theta)[0]))


def _grad_info(x, y, w, theta, beta):
    """Gradient and observed information (negative Hessian) of the weighted
    log-likelihood in (theta, beta).

    With a = theta_y - x'beta and c = theta_{y-1} - x'beta, the Hessian is
    sum_i [l_aa u u' + l_cc v v' + l_ac (u v' + v u')] with u = da/d(theta, beta) =
    (e_y, -x), v = (e_{y-1}, -x); its beta block is x' diag(l_aa + l_cc + 2 l_ac) x —
    one weighted cross product of the design per Newton step."""
    L1 = theta.size
    n, P = x.shape
    ll, la, lc, laa, lcc, lac = _terms(y, x @ beta, theta)
    up = y < L1
    lo = y > 0
    Eu = np.zeros((n, L1))  # e_y (the threshold above the category)
    Ev = np.zeros((n, L1))  # e_{y-1} (the threshold below)
    rows = np.arange(n)
    Eu[rows[up], y[up]] = 1.0
    Ev[rows[lo], y[lo] - 1] = 1.0
    grad = np.empty(L1 + P)
    grad[:L1] = Eu.T @ (w * la) + Ev.T @ (w * lc)
    grad[L1:] = -(x.T @ (w * (la + lc)))
    hess = np.empty((L1 + P, L1 + P))
    cross = Eu.T @ (Ev * (w * lac)[:, None])
    hess[:L1, :L1] = (Eu.T @ (Eu * (w * laa)[:, None]) + Ev.T @ (Ev * (w * lcc)[:, None])
                      + cross + cross.T)
    tb = -(Eu.T @ (x * (w * (laa + lac))[:, None]) + Ev.T @ (x * (w * (lcc + lac))[:, None]))
    hess[:L1, L1:] = tb
    hess[L1:, :L1] = tb.T
    hess[L1:, L1:] = x.T @ (x * (w * (laa + lcc + 2.0 * lac))[:, None])
    return float(np.sum(w * ll)), grad, -hess


def _start_theta(y: np.ndarray, w: np.ndarray, L: int) -> np.ndarray:
    """Marginal cumulative logits (each category given a little weight so all exist)."""
    share = np.bincount(y, weights=w, minlength=L) + 0.5
    cum = np.cumsum(share)[:-1] / share.sum()
    return np.log(cum / (1.0 - cum))


def fit_polr(x: np.ndarray, y: np.ndarray, n_levels: int,
             weights: np.ndarray | None = None, *, start: tuple | None = None,
             maxit: int = MAXIT, tol: float = TOL) -> PolrFit:
    """Maximum likelihood fit of the proportional-odds model of ``y`` (codes
    0..n_levels-1) on ``x`` (no intercept column), with frequency ``weights``;
    ``start``: (theta, beta) to start from (a warm start)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y).astype(np.int64)
    n, P = x.shape
    L1 = n_levels - 1
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if start is not None and start[0].size == L1 and start[1].size == P:
        theta, beta = start[0].copy(), start[1].copy()
    else:
        theta, beta = _start_theta(y, w, n_levels), np.zeros(P)
    ll = _loglik(x, y, w, theta, beta)
    converged = ridge = False
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007 (reported)
        ll, grad, info = _grad_info(x, y, w, theta, beta)
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            ridge = True
            step = np.linalg.solve(info + 1e-8 * np.trace(info) / info.shape[0]
                                   * np.eye(info.shape[0]), grad)
        t = 1.0
        while True:
            th = theta + t * step[:L1]
            be = beta + t * step[L1:]
            if np.all(np.diff(th) > 0):
                ll_new = _loglik(x, y, w, th, be)
                if ll_new >= ll - 1e-12 * abs(ll):
                    break
            t *= 0.5
            if t < 1e-10:
                th, be, ll_new = theta, beta, ll
                break
        theta, beta, ll = th, be, ll_new
        if np.max(np.abs(t * step)) < tol:
            converged = True
            break
    ll, _, info = _grad_info(x, y, w, theta, beta)
    J = np.zeros((L1 + P, L1 + P))
    J[:L1, :L1] = _jacobian(theta)
    J[L1:, L1:] = np.eye(P)
    info_alpha = J.T @ info @ J
    try:
        cov = np.linalg.inv(info_alpha)
        if not np.all(np.isfinite(cov)) or np.min(np.diag(cov)) <= 0:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        pen = 1e-5 * max(float(np.mean(np.diag(info_alpha))), 1e-8)
        cov = np.linalg.inv(info_alpha + pen * np.eye(L1 + P))
        ridge = True
    cov = 0.5 * (cov + cov.T)
    return PolrFit(theta, beta, cov, J @ cov @ J.T, ll, converged, it, ridge)


def category_probabilities(eta: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """n × L probabilities P(Z = k) = F(theta_k - eta) - F(theta_{k-1} - eta)."""
    cum = expit(theta[None, :] - eta[:, None])
    cum = np.column_stack([np.zeros(eta.size), cum, np.ones(eta.size)])
    return np.clip(np.diff(cum, axis=1), 0.0, None)


def draw_categories(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category code per row of ``prob`` (n × L), by inversion of one uniform."""
    u = rng.random(prob.shape[0])
    cum = np.cumsum(prob, axis=1)
    cum /= cum[:, -1:]
    return np.minimum((cum < u[:, None]).sum(axis=1), prob.shape[1] - 1).astype(float)


def reference_column(design: Design) -> int:
    """The column whose coefficient is fixed at 0 because the thresholds carry it: the
    first observing study's indicator (stratified design), else the intercept."""
    if design.study_cols.size:
        return int(design.study_cols[0])
    return 0


@register("polr", types=("ordinal",), multilevel=False,
          description="proportional odds (MASS::polr) with a normal-approximation draw of "
                      "the thresholds (log-gap scale) and coefficients (mice's polr draws "
                      "none); study as fixed dummies, a systematically missing study gets "
                      "the average study location")
def impute_polr(problem: Problem) -> Draw:
    """Impute an ordinal variable (codes 0..L-1, ``problem.n_levels`` = L) by
    proportional-odds regression with a proper parameter draw (mice's polr)."""
    design = build_design(problem)
    rng = problem.rng
    L = problem.n_levels
    y_obs = np.round(problem.y[design.obs]).astype(np.int64)
    if L < 2:
        L = int(y_obs.max()) + 1 if y_obs.size else 2
    ref = reference_column(design)
    cols = design.fit_cols[design.fit_cols != ref]
    x_obs = design.X[np.ix_(design.obs, cols)]
    keep_ref = np.ones(design.fit_cols.size, dtype=bool)
    keep_ref[design.fit_cols == ref] = False
    x_ref = design.reference_rows()[:, keep_ref]
    xa, ya, wa = augment_multinom(x_ref, L)
    state_key = ("polr", L, tuple(cols))
    start = problem.state.get(state_key)
    fit = fit_polr(np.vstack([x_obs, xa]), np.concatenate([y_obs, ya]), L,
                   np.concatenate([np.ones(y_obs.size), wa]), start=start)
    problem.state[state_key] = (fit.theta, fit.beta)
    L1 = L - 1
    par = draw_normal(np.concatenate([fit.alpha, fit.beta]), fit.cov, rng)
    theta_star = theta_from_alpha(par[:L1])
    coef = np.zeros(design.fit_cols.size)
    coef[keep_ref] = par[L1:]
    eta = design.predict_missing(coef)
    values = draw_categories(category_probabilities(eta, theta_star), rng)
    notes = list(design.notes)
    if not fit.converged:
        notes.append(f"[convergence] Newton did not converge in {fit.n_iter} iterations")
    if fit.ridge:
        notes.append("[collinearity] information matrix singular: ridge added")
    return Draw(values, {**design.info(), "fit_converged": fit.converged,
                         "ridge": fit.ridge, "n_iter": fit.n_iter, "fit_warnings": notes})
