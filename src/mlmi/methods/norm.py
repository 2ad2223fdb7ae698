"""``norm``: Bayesian linear regression imputation (mice's ``mice.impute.norm``).

1. Least squares of the variable on the single-level design (study indicators and
   predictors, see :mod:`mlmi.methods._single`) over the observed rows.
2. sigma*^2 = SSR / chi2(n_obs - p), then beta* ~ N(beta_hat, sigma*^2 (X'X)^{-1}).
3. A study without observed values gets the average of the drawn study intercepts.
4. Missing values = X beta* + N(0, sigma*^2).
"""

from __future__ import annotations

from . import register
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
    values = mean + fit.sigma_star * rng.standard_normal(mean.size)
    notes = list(design.notes)
    if fit.ridge:
        notes.append("[collinearity] X'X singular: ridge 1e-5 * diag(X'X) added")
    return Draw(values, {**design.info(), "ridge": fit.ridge, "fit_warnings": notes})
