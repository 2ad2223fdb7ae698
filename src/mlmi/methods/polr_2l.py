"""``2l.polr``: multilevel imputation of an ordinal variable (cumulative-logit GLMM).

The model (METHOD.md §8, ``ordinal::clmm``'s parametrisation):
logit P(Z_ij <= k) = theta_k - x_ij' beta - w_ij' b_i, k = 1..K-1, b_i ~ N(0, Psi), with
no fixed intercept (the thresholds take its place: the fit drops the intercept column).
The step is the paper's (METHOD.md §3): (theta*, beta*) drawn jointly from the normal
approximation of the fit on the scale the fit optimises, (theta_1, log(theta_k -
theta_{k-1})), so the drawn thresholds stay ordered; Psi* as for binary variables; a
sporadically missing study's b_i* from its exact posterior (the cumulative-logit
likelihood is log-concave in b_i), a systematically missing study's from the prior; then
each missing category from its probabilities under theta*, beta*, b_i*.

A category that no observed row takes is not fitted and never imputed (its
maximum-likelihood probability is 0; counted in ``empty_categories``).
"""

from __future__ import annotations

from . import register
from ._multilevel import multilevel_step
from .base import Draw, Problem


@register("2l.polr", types=("ordinal",), multilevel=True,
          description="cumulative-logit (proportional odds) mixed model; thresholds drawn "
                      "ordered with beta*; random effects from their posterior (sporadic) "
                      "or prior (systematic)")
def impute_2l_polr(problem: Problem) -> Draw:
    """Impute an ordinal variable (codes 0..L-1) with a two-level cumulative logit model."""
    return multilevel_step(problem, "ordinal")
