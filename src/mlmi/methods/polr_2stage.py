"""``2l.2stage.polr``: two-stage imputation of an ordinal variable (Resche-Rigon & White
2018, with a proportional-odds model per study).

Per-study proportional-odds fits (thresholds on their log-gap scale and the predictors'
coefficients, all study-specific), their multivariate random-effects meta-analysis, then
each study's parameters from their posterior (studies with a usable fit) or from the
between-study distribution (systematically missing studies, and studies whose fit is not
identified — e.g. a category they never show — counted as dropped). See
:mod:`mlmi.methods._twostage_cat` for the choices and why. ``2l.2stage.polr`` estimates
the between-study covariance by the method of moments, ``2l.2stage.polr.reml`` by REML.
"""

from __future__ import annotations

from . import register
from ._twostage_cat import twostage_cat
from .base import Draw, Problem


@register("2l.2stage.polr", types=("ordinal",), multilevel=True,
          description="two-stage: per-study proportional-odds fits + method-of-moments "
                      "multivariate meta-analysis (Resche-Rigon & White 2018's 2STG)")
def impute_2l_2stage_polr(problem: Problem) -> Draw:
    """Impute an ordinal variable (codes 0..L-1) by two-stage imputation."""
    return twostage_cat(problem, "polr", "mm")


@register("2l.2stage.polr.reml", types=("ordinal",), multilevel=True,
          description="two-stage as 2l.2stage.polr, between-study covariance by REML and "
                      "drawn from its asymptotic distribution")
def impute_2l_2stage_polr_reml(problem: Problem) -> Draw:
    """Impute an ordinal variable by two-stage imputation with a REML meta-analysis."""
    return twostage_cat(problem, "polr", "reml")
