"""``norm``: Bayesian linear regression imputation (mice's ``mice.impute.norm``).

1. Least squares of the variable on the single-level design (study indicators and
   predictors, see :mod:`mlmi.methods._single`) over the observed rows.
2. sigma*^2 = SSR / chi2(n_obs - p), then beta* ~ N(beta_hat, sigma*^2 (X'X)^{-1}).
3. A study without observed values gets the average of the drawn study intercepts.
4. Missing values = X beta* + N(0, sigma*^2); with ``problem.limits = (lo, hi)`` from that
   normal truncated to [lo, hi] (exact inverse-CDF draws, not clipping; ``truncated`` in
   the diagnostics is the summed probability the untruncated normal put outside, as in
   the multilevel methods).
"""

from __future__ import annotations

import numpy as np

from ..glmm import get_family
from . import register
from ._multilevel import TRUNCATION_NOTABLE
from ._single import build_design, draw_linear
from .base import Draw, Problem


@register("norm", types=("continuous",), multilevel=False,
          description="Bayesian linear regression (mice's norm); study as fixed dummies, "
                      "a systematically missing study gets the average intercept")
def impute_norm(problem: Problem) -> Draw:
    """Impute a continuous variable by Bayesian linear regression (Rubin 1987, p. 167)."""
    design = build_design(problem)
    rng = problem.rng
    fit = draw_linear(design.x_obs, problem.y[design.obs], rng, xtx=design.xtx)
    mean = design.predict_missing(fit.beta_star)
    counts = {}
    if problem.limits is None:
        values = mean + fit.sigma_star * rng.standard_normal(mean.size)
    else:
        gaussian = get_family("gaussian")
        outside = gaussian.outside_mass(mean, fit.sigma_star, limits=problem.limits)
        counts = {"truncated": float(outside.sum()),
                  "truncated_rows": int(np.sum(outside > TRUNCATION_NOTABLE))}
        values = gaussian.sample(mean, rng, fit.sigma_star, limits=problem.limits)
    notes = list(design.notes)
    if fit.ridge:
        notes.append("[collinearity] X'X singular: ridge 1e-5 * diag(X'X) added")
    return Draw(values, {**design.info(), "ridge": fit.ridge, **counts,
                         "fit_warnings": notes})
