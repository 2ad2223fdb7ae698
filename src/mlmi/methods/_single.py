"""What the single-level methods (``logreg``, ``pmm``, ``norm``) share: the stratified
design, the paper's rule for a study without observed values, and the Bayesian
linear-regression draw (mice's ``.norm.draw``).

Stratified imputation (STI, METHOD.md §4) puts the study into the imputation model as
a fixed categorical predictor. With ``problem.cluster_role == 1`` the design is
``[one indicator per study, x]`` without a global intercept, so each study has its own
intercept; with ``cluster_role == 0`` the study is ignored and the design is ``[1, x]``.

A study in which the variable is systematically missing has no observed rows, so its
intercept is not estimable. The paper's rule: its intercept is the (unweighted) average
of the estimated intercepts of the studies that observe the variable. The model is fitted
to the observed rows without that study's indicator column, and :meth:`Design.expand`
fills in its coefficient as that average — for any coefficient vector, so it applies
alike to ``beta_hat`` and to a draw ``beta*``.

Columns that are 0 in every observed row, or linear combinations of earlier columns
there (a study-level predictor next to the study indicators), get coefficient 0 and are
reported in ``fit_warnings`` — mice's sampler removes such predictors before calling a
method. A cross-product that is still singular gets mice's ridge (``ridge`` in ``info``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky, solve_triangular

from ..exceptions import InputError
from .base import SPORADIC, SYSTEMATIC, Problem

#: mice's ridge kappa: kappa * diag(X'X) is added to a singular cross-product
RIDGE = 1e-5
#: a column whose squared residual norm, regressed on the columns before it, is below
#: this share of its own squared norm counts as collinear (X'X numerically singular)
_COLLINEAR = 1e-10


@dataclass
class Design:
    """The single-level design of one univariate step.

    X : full design, n × P (study indicators then ``x``, or ``1`` then ``x``).
    names : the names of the columns of ``X``.
    obs, miss : rows where the variable is observed (the data of the fit) and the rows
        to impute.
    fit_cols : the columns estimated from the observed rows; the others are study
        indicators without observed rows (``averaged``), and columns that are 0 in every
        observed row or linear combinations of earlier columns there (coefficient 0: as
        ``lm`` leaves an aliased coefficient NA and mice sets it to 0, or mice's sampler
        removes a linearly dependent predictor).
    study_cols : indicator columns of the studies with observed rows (to average).
    averaged : indicator columns of the studies without observed rows.
    x_obs : ``X[obs][:, fit_cols]``, the design of the fit; xtx : its cross-product.
    notes : messages for the diagnostics (``fit_warnings``).
    """

    X: np.ndarray
    names: list[str]
    obs: np.ndarray
    miss: np.ndarray
    fit_cols: np.ndarray
    study_cols: np.ndarray
    averaged: np.ndarray
    x_obs: np.ndarray
    xtx: np.ndarray
    n_sporadic: int
    n_systematic: int
    notes: list[str] = field(default_factory=list)

    def expand(self, coef: np.ndarray) -> np.ndarray:
        """Coefficients of all columns of ``X`` from those of ``fit_cols``: a study
        without observed rows gets the average of the estimated study intercepts."""
        full = np.zeros(self.X.shape[1])
        full[self.fit_cols] = coef
        if self.averaged.size:
            full[self.averaged] = full[self.study_cols].mean()
        return full

    def predict_missing(self, coef: np.ndarray) -> np.ndarray:
        """Linear predictor of the rows to impute, ``X[miss] @ expand(coef)``."""
        return self.X[self.miss] @ self.expand(coef)

    def reference_rows(self) -> np.ndarray:
        """Rows of the studies whose intercept is estimated (all rows if the study is
        ignored): the rows that describe the fitted model's predictor space."""
        if not self.averaged.size:
            return self.X[:, self.fit_cols]
        keep = ~np.any(self.X[:, self.averaged] != 0.0, axis=1)
        return self.X[np.ix_(keep, self.fit_cols)]

    def info(self) -> dict:
        """The diagnostics every single-level method reports."""
        return {"n_sporadic": self.n_sporadic, "n_systematic": self.n_systematic}


def build_design(problem: Problem) -> Design:
    """The stratified (``cluster_role`` 1) or plain (0) design of ``problem``."""
    if np.any(problem.type == 2):
        slopes = [nm for nm, t in zip(problem.x_names, problem.type, strict=True) if t == 2]
        raise InputError(
            f"imputing {problem.variable!r}: a single-level method cannot have random "
            f"slopes ({slopes}); use a multilevel method or predictor-matrix code 1"
        )
    if problem.cluster_role not in (0, 1):
        raise InputError(
            f"imputing {problem.variable!r}: a single-level method needs the study's "
            f"predictor-matrix code 1 (fixed dummies) or 0 (ignored), not "
            f"{problem.cluster_role}"
        )
    n, p = problem.x.shape
    obs = np.flatnonzero(problem.ry)
    miss = np.flatnonzero(problem.wy)
    K = problem.n_clusters
    if problem.cluster_role == 1:
        X = np.empty((n, K + p))
        X[:, :K] = problem.study_indicators()
        X[:, K:] = problem.x
        names = [f"study[{lab}]" for lab in problem.cluster_labels] + list(problem.x_names)
        n_obs = np.bincount(problem.cluster[obs], minlength=K)
        study_cols = np.flatnonzero(n_obs > 0)
        averaged = np.flatnonzero(n_obs == 0)
        first_x = K
    else:
        X = np.empty((n, 1 + p))
        X[:, 0] = 1.0
        X[:, 1:] = problem.x
        names = ["(Intercept)", *problem.x_names]
        study_cols = averaged = np.empty(0, dtype=np.int64)
        first_x = 1
    notes = []
    zero = first_x + np.flatnonzero(~np.any(problem.x[obs] != 0.0, axis=0))
    if zero.size:
        notes.append(
            f"[collinear] {[names[j] for j in zero]} 0 in every observed row of "
            f"{problem.variable!r}: coefficient 0"
        )
    fit_cols = np.setdiff1d(np.arange(X.shape[1]), np.concatenate([averaged, zero]))
    x_obs = X[np.ix_(obs, fit_cols)]
    xtx = x_obs.T @ x_obs
    aliased = aliased_columns(xtx)
    if aliased.size:
        notes.append(
            f"[collinear] {[names[j] for j in fit_cols[aliased]]} linearly dependent on "
            f"earlier columns in the observed rows of {problem.variable!r}: coefficient 0"
        )
        fit_cols = np.delete(fit_cols, aliased)
        x_obs = X[np.ix_(obs, fit_cols)]
        xtx = x_obs.T @ x_obs
    studies = np.unique(problem.cluster[miss])
    st = problem.status[studies]
    return Design(
        X=X, names=names, obs=obs, miss=miss, fit_cols=fit_cols, study_cols=study_cols,
        averaged=averaged, x_obs=x_obs, xtx=xtx,
        n_sporadic=int(np.sum(st == SPORADIC)), n_systematic=int(np.sum(st == SYSTEMATIC)),
        notes=notes,
    )


def aliased_columns(xtx: np.ndarray) -> np.ndarray:
    """Columns that are (numerically) linear combinations of earlier columns, given the
    cross-product X'X of a design without zero columns; dropping them leaves a full-rank
    design (as ``lm`` leaves aliased coefficients NA and mice removes linearly dependent
    predictors before a method is called)."""
    d = np.sqrt(np.diag(xtx))
    scaled = xtx / np.outer(d, d)
    try:
        if np.min(np.diag(cholesky(scaled, lower=False))) ** 2 > _COLLINEAR:
            return np.empty(0, dtype=np.int64)
    except LinAlgError:
        pass
    keep: list[int] = []
    for j in range(xtx.shape[0]):  # greedy: keep a column if it adds a new direction
        cand = [*keep, j]
        try:
            if cholesky(scaled[np.ix_(cand, cand)], lower=False)[-1, -1] ** 2 > _COLLINEAR:
                keep.append(j)
        except LinAlgError:
            pass
    return np.setdiff1d(np.arange(xtx.shape[0]), keep)


# --------------------------------------------------------------- linear draw
def cross_product_root(xtx: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, bool]:
    """Upper Cholesky factor R of X'X (X'X = R'R); if X'X is numerically singular,
    of X'X + ridge * diag(X'X) (mice's fallback). The flag says whether the ridge
    was added."""
    d = np.sqrt(np.diag(xtx))
    d = np.where(d > 0, d, 1.0)
    try:
        rc = cholesky(xtx / np.outer(d, d), lower=False)
        if np.min(np.diag(rc)) ** 2 > _COLLINEAR:
            return rc * d, False  # R = Rc D
    except LinAlgError:
        pass
    pen = ridge * np.where(np.diag(xtx) > 0, np.diag(xtx), 1.0)
    return cholesky(xtx + np.diag(pen), lower=False), True


@dataclass
class LinearDraw:
    """Least squares and one draw from the posterior of the normal linear model
    (flat prior on beta and log sigma): ``beta_hat``, ``sigma_hat`` and the draws
    ``beta_star``, ``sigma_star``; ``df = max(n - p, 1)``; ``ridge``: the fallback was used."""

    beta_hat: np.ndarray
    sigma_hat: float
    beta_star: np.ndarray
    sigma_star: float
    df: int
    ridge: bool


def draw_linear(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                ridge: float = RIDGE, xtx: np.ndarray | None = None) -> LinearDraw:
    """mice's ``.norm.draw`` (Rubin 1987, p. 167) on the observed rows ``x``, ``y``:

    beta_hat = (X'X)^{-1} X'y, SSR = |y - X beta_hat|^2, df = max(n - p, 1);
    sigma*^2 = SSR / g with g ~ chi2(df); beta* = beta_hat + sigma* R^{-1} z, z ~ N(0, I),
    where X'X = R'R (so beta* ~ N(beta_hat, sigma*^2 (X'X)^{-1})). ``xtx``: X'X if
    already computed.
    """
    n, p = x.shape
    R, used = cross_product_root(x.T @ x if xtx is None else xtx, ridge)
    beta_hat = cho_solve((R, False), x.T @ y)
    resid = y - x @ beta_hat
    ssr = float(resid @ resid)
    df = max(n - p, 1)
    sigma_star = float(np.sqrt(ssr / rng.chisquare(df)))
    beta_star = beta_hat + sigma_star * solve_triangular(R, rng.standard_normal(p),
                                                         lower=False)
    return LinearDraw(beta_hat, float(np.sqrt(ssr / df)), beta_star, sigma_star, df, used)


def draw_normal(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mean + L z with L L' = cov (Cholesky, as mice's ``t(chol(sym(V)))``; the
    symmetric square root if cov is only semi-definite)."""
    cov = 0.5 * (cov + cov.T)
    z = rng.standard_normal(mean.size)
    try:
        return mean + cholesky(cov, lower=True) @ z
    except LinAlgError:
        w, V = np.linalg.eigh(cov)
        return mean + (V * np.sqrt(np.clip(w, 0.0, None))) @ z
