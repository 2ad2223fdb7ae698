"""``2l.2stage.pois``: two-stage imputation of a count variable (Resche-Rigon & White 2018).

Per-study Poisson regressions, their multivariate random-effects meta-analysis, then
each study's coefficients from their posterior (studies with observed values) or from
the between-study distribution (systematically missing or dropped studies) — micemd's
``mice.impute.2l.2stage.pois``; see :mod:`mlmi.methods._twostage` for the details and
where we depart from micemd. ``2l.2stage.pois`` uses the method of moments (micemd's
default), ``2l.2stage.pois.reml`` REML with a drawn Psi*.
"""

from __future__ import annotations

from . import register
from ._twostage import twostage_glm
from .base import Draw, Problem


@register("2l.2stage.pois", types=("count",), multilevel=True,
          description="two-stage: per-study Poisson regressions + method-of-moments "
                      "multivariate meta-analysis — Resche-Rigon & White 2018 (micemd)")
def impute_2l_2stage_pois(problem: Problem) -> Draw:
    """Impute a count variable by two-stage imputation (METHOD.md §4, 2STG)."""
    return twostage_glm(problem, "poisson", "mm")


@register("2l.2stage.pois.reml", types=("count",), multilevel=True,
          description="two-stage as 2l.2stage.pois, between-study covariance by REML "
                      "and drawn from its asymptotic distribution")
def impute_2l_2stage_pois_reml(problem: Problem) -> Draw:
    """Impute a count variable by two-stage imputation with a REML meta-analysis."""
    return twostage_glm(problem, "poisson", "reml")
