"""``polyreg``: multinomial-logit imputation of a nominal (or ordinal) variable (mice's
``mice.impute.polyreg``), with the study as fixed dummies for stratified imputation.

Model: ``log P(Z = k | x) / P(Z = 0 | x) = x'B_k``, k = 1..L-1 (the first category the
reference). In the stratified design (``cluster_role == 1``) ``x`` is one indicator per
study and the predictors, without a global intercept, so every category has its own
intercept per study. A systematically missing study gets the paper's rule
(:mod:`._single`) for each category: the average of the estimated study intercepts.

1. Augment the observed rows against separation and categories a study never shows, as
   mice does (White, Daniel & Royston 2010; :func:`._multinom.augment_multinom`). With
   study dummies this matters: a study in which a category is not observed has an
   infinite maximum-likelihood intercept for it; the pseudo-rows keep it finite.
2. Newton fit (:func:`._multinom.fit_multinom`, checked against ``nnet::multinom``).
3. ``B* ~ N(B_hat, V)``, V the inverse observed information (proper imputation). mice's
   ``polyreg`` predicts with the fitted ``B_hat`` of ``nnet::multinom`` without a draw
   (improper: the parameter uncertainty is left out).
4. Each missing value from its category probabilities under ``B*``.

``info``: ``n_sporadic``, ``n_systematic``, ``fit_converged``, ``ridge``, ``n_iter``,
``fit_warnings``.
"""

from __future__ import annotations

import numpy as np

from . import register
from ._multinom import _probs, augment_multinom, fit_multinom
from ._single import build_design, draw_normal
from .base import Draw, Problem
from .polr import draw_categories


@register("polyreg", types=("nominal", "ordinal"), multilevel=False,
          description="multinomial logit (nnet::multinom) with a normal-approximation draw "
                      "of the coefficients (mice's polyreg draws none); study as fixed "
                      "dummies, a systematically missing study gets the average study "
                      "intercept of every category")
def impute_polyreg(problem: Problem) -> Draw:
    """Impute a nominal variable (codes 0..L-1, ``problem.n_levels`` = L) by
    multinomial logistic regression with a proper parameter draw (mice's polyreg)."""
    design = build_design(problem)
    rng = problem.rng
    y_obs = np.round(problem.y[design.obs]).astype(np.int64)
    L = problem.n_levels if problem.n_levels >= 2 else (
        int(y_obs.max()) + 1 if y_obs.size else 2)
    xa, ya, wa = augment_multinom(design.reference_rows(), L)
    x_fit = np.vstack([design.x_obs, xa])
    state_key = ("polyreg", L, tuple(design.fit_cols))
    fit = fit_multinom(x_fit, np.concatenate([y_obs, ya]), L,
                       weights=np.concatenate([np.ones(y_obs.size), wa]),
                       start=problem.state.get(state_key))
    problem.state[state_key] = fit.beta
    P = design.fit_cols.size
    b_star = draw_normal(fit.beta.ravel(order="F"), fit.cov, rng).reshape((P, L - 1),
                                                                          order="F")
    full = np.column_stack([design.expand(b_star[:, k]) for k in range(L - 1)])
    values = draw_categories(_probs(design.X[design.miss], full), rng)
    notes = list(design.notes)
    if not fit.converged:
        notes.append(f"[convergence] Newton did not converge in {fit.n_iter} iterations")
    if fit.ridge:
        notes.append("[collinearity] information matrix singular: ridge added")
    return Draw(values, {**design.info(), "fit_converged": fit.converged,
                         "ridge": fit.ridge, "n_iter": fit.n_iter, "fit_warnings": notes})
