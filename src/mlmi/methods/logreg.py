"""``logreg``: logistic regression imputation (mice's ``mice.impute.logreg``).

1. Augment the observed rows against separation (White, Daniel & Royston 2010, as
   mice's ``augment``): for every non-constant column j of the design, four weighted
   pseudo-rows with all columns at their mean except column j at mean ± SD/2 (clipped
   to its range), once with the variable 0 and once 1; the 4p rows share a total weight
   equal to the number of coefficients (mice: p + 1 with its intercept). Means, SDs and
   ranges are over the rows of the studies that observe the variable (mice: all rows),
   so the pseudo-rows never describe a study whose intercept is not estimated.
2. Fit the logistic regression to the observed and pseudo-rows by IRLS with these
   weights: beta_hat and V = (X'WX)^{-1} (mice: quasibinomial ``glm.fit``,
   ``cov.unscaled``).
3. beta* ~ N(beta_hat, V) (normal approximation to the posterior; Rubin 1987,
   p. 169-170); a study without observed values gets the average drawn study intercept.
4. Missing values ~ Bernoulli(logistic(X beta*)).

Separation of the observed rows is counted (``info["separated"]``): Newton's method
for the unaugmented likelihood is started at beta_hat; without separation it converges
in a few steps, with (quasi-)complete separation the steps do not shrink, or fitted
probabilities come within e^-15 of 0 or 1 (R's ``glm.fit`` warning). The augmented fit
keeps the draws finite either way, as in mice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit

from ..glm import fit_glm
from . import register
from ._single import RIDGE, Design, build_design, draw_normal
from .base import Draw, Problem

#: |eta| beyond which a fitted probability is numerically 0 or 1 (as mlmi.glm, R's glm)
ETA_SEPARATION = 15.0
#: Newton steps of the separation check, and the step size that counts as converged
_CHECK_STEPS, _CHECK_TOL = 30, 1e-6


def augment(x_ref: np.ndarray, n_coef: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-rows (X, y, weights) of White, Daniel & Royston (2010) for the design
    whose rows ``x_ref`` describe the predictor space (see the module docstring)."""
    mean = x_ref.mean(axis=0)
    sd = x_ref.std(axis=0, ddof=1) if x_ref.shape[0] > 1 else np.zeros(x_ref.shape[1])
    cols = np.flatnonzero(sd > 0)
    nr = 4 * cols.size
    xa = np.tile(mean, (nr, 1))
    r = np.arange(nr)
    col = cols[r // 4]
    shift = np.where(r % 2 == 0, 0.5, -0.5) * sd[col]
    xa[r, col] = np.clip(mean[col] + shift, x_ref.min(axis=0)[col], x_ref.max(axis=0)[col])
    ya = (r % 4 >= 2).astype(float)
    wa = np.full(nr, n_coef / nr) if nr else np.empty(0)
    return xa, ya, wa


def is_separated(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> bool:
    """Whether the maximum likelihood estimate of the logistic regression of ``y`` on
    ``x`` fails to exist: Newton's method from ``start`` (near the MLE when it exists)
    does not converge, or drives fitted probabilities to 0 or 1."""
    beta = start.copy()
    for _ in range(_CHECK_STEPS):
        eta = x @ beta
        mu = expit(eta)
        w = mu * (1.0 - mu)
        try:
            step = cho_solve(cho_factor(x.T @ (x * w[:, None])), x.T @ (y - mu))
        except (LinAlgError, ValueError):
            return True  # information singular: weights vanished along a direction
        beta += step
        if np.max(np.abs(step)) < _CHECK_TOL:
            return bool(np.max(np.abs(x @ beta)) > ETA_SEPARATION)
    return True


@dataclass
class LogisticFit:
    """The augmented fit: ``beta`` (beta_hat) and ``cov`` (V), whether the observed
    rows are ``separated``, whether IRLS ``converged``, whether a ``ridge`` was needed,
    and messages for the diagnostics."""

    beta: np.ndarray
    cov: np.ndarray
    separated: bool
    converged: bool
    ridge: bool
    notes: list[str]


def fit_logistic(design: Design, y_obs: np.ndarray) -> LogisticFit:
    """Steps 1-2 of the module docstring, and the separation check."""
    x_obs = design.x_obs
    xa, ya, wa = augment(design.reference_rows(), x_obs.shape[1])
    x_fit = np.vstack([x_obs, xa])
    y_fit = np.concatenate([y_obs, ya])
    w_fit = np.concatenate([np.ones(y_obs.size), wa])
    fit = fit_glm(y_fit, x_fit, "binomial", weights=w_fit)
    notes = list(design.notes)
    ridge = not (np.all(np.isfinite(fit.beta)) and np.all(np.isfinite(fit.cov)))
    if ridge:  # collinear design: penalise, as mice's .norm.draw falls back to a ridge
        pen = RIDGE * float(np.mean(np.diag(x_fit.T @ (x_fit * w_fit[:, None])))) / 4.0
        fit = fit_glm(y_fit, x_fit, "binomial", weights=w_fit, ridge=pen)
        notes.append("[collinearity] X'WX singular: ridge penalty added")
    if not fit.converged:
        notes.append(f"[convergence] IRLS did not converge in {fit.n_iter} iterations")
    separated = is_separated(x_obs, y_obs, fit.beta)
    return LogisticFit(fit.beta, fit.cov, separated, bool(fit.converged), ridge, notes)


@register("logreg", types=("binary",), multilevel=False,
          description="logistic regression with a normal-approximation draw of beta "
                      "(mice's logreg, augmented against separation); study as fixed "
                      "dummies, a systematically missing study gets the average intercept")
def impute_logreg(problem: Problem) -> Draw:
    """Impute a binary (0/1) variable by Bayesian logistic regression (mice's logreg)."""
    design = build_design(problem)
    rng = problem.rng
    fit = fit_logistic(design, problem.y[design.obs])
    beta_star = draw_normal(fit.beta, fit.cov, rng)
    prob = expit(design.predict_missing(beta_star))
    values = (rng.random(prob.size) < prob).astype(float)
    return Draw(values, {**design.info(), "separated": fit.separated,
                         "fit_converged": fit.converged, "ridge": fit.ridge,
                         "fit_warnings": fit.notes})
