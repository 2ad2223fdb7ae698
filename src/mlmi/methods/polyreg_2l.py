"""``2l.polyreg``: multilevel imputation of a nominal (or ordinal) variable by the
baseline-category logit GLMM (METHOD.md §8; Hedeker 2003).

Model: K categories coded 0..K-1, the first the reference; for k = 1..K-1

    log P(Z_ij = k) / P(Z_ij = 0) = x_ij' beta_k + w_ij' b_ik,

with the random effects of a study b_i = (b_i1, ..., b_i,K-1) of dimension (K-1) q,
b_i ~ N(0, Psi), Psi a full (K-1) q × (K-1) q covariance (category-specific random effects,
correlated across categories). The step is the paper's (METHOD.md §3): beta* from the
fit's normal approximation, Psi* from the (K-1) q-dimensional conditional modes (the
chosen ``psi_draw``), a sporadically missing study's b_i* from its posterior given its
observed categories (:func:`mlmi.posterior.draw_many`), a systematically missing study's
from the prior, then each missing category from its probabilities.

Random effects: category-specific random intercepts by default (q = 1, Psi
(K-1) × (K-1)); a predictor with predictor-matrix code 2 adds its category-specific
random slopes. Psi then has ((K-1) q)((K-1) q + 1)/2 parameters — 21 for four categories
and one slope — which few studies cannot identify: with m_obs observing studies and
Q = (K-1) q random effects the paper's draw Psi*^{-1} ~ Wishart(m_obs, Lambda_hat^{-1}) does
not exist for m_obs < Q, and its mean is infinite for m_obs <= Q + 1 (found on the paper's
design with 7 observing studies and Q = 6: slope variances of 8 drawn where 0.3 was
estimated). The rule here: random slopes are kept only where m_obs >= Q + 2; otherwise
they are dropped (random intercepts only, the mice/micemd default), counted in
``slopes_dropped`` and named in the fit warnings. If even the intercepts outnumber the
observing studies (m_obs < K - 1), Psi* is drawn by ``"ml-normal"`` (counted in
``psi_fallbacks``), whose draw exists for any number of studies.

A category that no observed row takes is not fitted and never imputed (counted in
``empty_categories``); separation of the fixed effects (a fitted probability numerically
0) is counted in ``separation`` and reported in the fit warnings, and does not stop the
imputation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import register
from ._multilevel import (
    b_star_stage,
    beta_star_stage,
    categorical_codes,
    fit_stage,
    psi_sigma_stage,
    response_stage,
)
from .base import Draw, Problem


def random_effects_rule(problem: Problem) -> tuple[Problem, str | None]:
    """The problem with random slopes dropped where the observing studies cannot carry
    them (module docstring), and the note saying so (None if nothing was dropped)."""
    slopes = np.flatnonzero(problem.type == 2)
    if not slopes.size:
        return problem, None
    _, categories, _ = categorical_codes(problem)
    m_obs = int(np.unique(problem.cluster[problem.ry]).size)
    Q = (categories.size - 1) * (1 + slopes.size)
    if m_obs >= Q + 2:
        return problem, None
    names = [problem.x_names[j] for j in slopes]
    note = (f"[random-slopes] {problem.variable!r}: {m_obs} observing studies cannot carry "
            f"{Q} category-specific random effects ({categories.size} categories × "
            f"(intercept + slopes of {names}); at least {Q + 2} needed): slopes dropped, "
            "random intercepts only")
    kept = np.where(problem.type == 2, 1, problem.type)
    return dataclasses.replace(problem, type=kept), note


@register("2l.polyreg", types=("nominal", "ordinal"), multilevel=True,
          description="baseline-category logit mixed model with correlated "
                      "category-specific random intercepts (slopes where asked and "
                      "identifiable); random effects from their posterior (sporadic) or "
                      "prior (systematic)")
def impute_2l_polyreg(problem: Problem) -> Draw:
    """Impute a nominal variable (codes 0..L-1, first level the reference) with a
    two-level multinomial logit model."""
    model, note = random_effects_rule(problem)
    step = fit_stage(model, "multinomial")
    step.counts["slopes_dropped"] = int(note is not None)
    if note is not None:
        step.notes.append(note)
    beta_star_stage(step)
    psi_sigma_stage(step)
    b_star_stage(step)
    values = response_stage(step)
    return Draw(values, step.info())
