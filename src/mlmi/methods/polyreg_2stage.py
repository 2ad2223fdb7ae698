"""``2l.2stage.polyreg``: two-stage imputation of a nominal variable (Resche-Rigon & White
2018, with a multinomial-logit model per study).

Per-study multinomial fits (every category's coefficients study-specific), their
multivariate random-effects meta-analysis ((L-1)·P dimensions), then each study's
coefficients from their posterior (studies with a usable fit) or from the between-study
distribution (systematically missing studies, and studies whose fit is not identified —
e.g. a category they never show — counted as dropped). See
:mod:`mlmi.methods._twostage_cat` for the choices, why, and the weak identification of
the between-study covariance with few studies. ``2l.2stage.polyreg`` estimates it by the
method of moments, ``2l.2stage.polyreg.reml`` by REML.
"""

from __future__ import annotations

from . import register
from ._twostage_cat import twostage_cat
from .base import Draw, Problem


@register("2l.2stage.polyreg", types=("nominal", "ordinal"), multilevel=True,
          description="two-stage: per-study multinomial-logit fits + method-of-moments "
                      "multivariate meta-analysis (Resche-Rigon & White 2018's 2STG)")
def impute_2l_2stage_polyreg(problem: Problem) -> Draw:
    """Impute a nominal variable (codes 0..L-1) by two-stage imputation."""
    return twostage_cat(problem, "polyreg", "mm")


@register("2l.2stage.polyreg.reml", types=("nominal", "ordinal"), multilevel=True,
          description="two-stage as 2l.2stage.polyreg, between-study covariance by REML "
                      "and drawn from its asymptotic distribution")
def impute_2l_2stage_polyreg_reml(problem: Problem) -> Draw:
    """Impute a nominal variable by two-stage imputation with a REML meta-analysis."""
    return twostage_cat(problem, "polyreg", "reml")
