"""``2l.nb``: multilevel imputation of an overdispersed count (negative binomial GLMM).

NB2 with log link, Var(Z | b) = mu + mu²/theta, b_i ~ N(0, Psi) (METHOD.md §8, as
glmmTMB's ``nbinom2``). The step is the paper's (METHOD.md §3) with log theta* drawn
jointly with beta* from the fit's normal approximation. When the fit finds no
overdispersion (theta runs to its upper bound) the fit's warning that the Poisson model
suffices is passed on in ``fit_warnings`` (and ``family_boundary`` is 1); theta is then
held at its estimate (``extra_held``) — the imputations are Poisson in effect.
"""

from __future__ import annotations

from . import register
from ._multilevel import multilevel_step
from .base import Draw, Problem


@register("2l.nb", types=("count",), multilevel=True,
          description="negative binomial (NB2) mixed model, log theta* drawn with beta*; "
                      "random effects from their posterior (sporadic) or prior (systematic)")
def impute_2l_nb(problem: Problem) -> Draw:
    """Impute an overdispersed non-negative count with a two-level NB2 model."""
    return multilevel_step(problem, "negbin")
