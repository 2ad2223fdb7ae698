"""``2l.2stage.norm``: two-stage imputation of a continuous variable (Resche-Rigon & White
2018).

Per-study linear regressions; the study residual variances are drawn from a
meta-analysis of ``log s_i^2`` (study-specific sigma_i*, as micemd's
``mice.impute.2l.2stage.norm``), the coefficients from a multivariate random-effects
meta-analysis: posterior draws for studies with observed values, draws from the
between-study distribution for systematically missing or dropped studies. See
:mod:`mlmi.methods._twostage` (``twostage_norm``) for the details and where we depart
from micemd. ``2l.2stage.norm`` uses the method of moments (micemd's default),
``2l.2stage.norm.reml`` REML with drawn Psi*.
"""

from __future__ import annotations

from . import register
from ._twostage import twostage_norm
from .base import Draw, Problem


@register("2l.2stage.norm", types=("continuous", "count"), multilevel=True,
          description="two-stage: per-study linear regressions + method-of-moments "
                      "multivariate meta-analysis, study-specific sigma — "
                      "Resche-Rigon & White 2018 (micemd)")
def impute_2l_2stage_norm(problem: Problem) -> Draw:
    """Impute a continuous variable by two-stage imputation (METHOD.md §4, 2STG)."""
    return twostage_norm(problem, "mm")


@register("2l.2stage.norm.reml", types=("continuous", "count"), multilevel=True,
          description="two-stage as 2l.2stage.norm, between-study covariances by REML "
                      "and drawn from their asymptotic distribution")
def impute_2l_2stage_norm_reml(problem: Problem) -> Draw:
    """Impute a continuous variable by two-stage imputation with REML meta-analyses."""
    return twostage_norm(problem, "reml")
