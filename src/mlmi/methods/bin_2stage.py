"""``2l.2stage.bin``: two-stage imputation of a binary variable (Resche-Rigon & White 2018).

Per-study logistic regressions, their multivariate random-effects meta-analysis, then
each study's coefficients from their posterior (studies with observed values) or from
the between-study distribution (systematically missing or dropped studies) — micemd's
``mice.impute.2l.2stage.bin``; see :mod:`mlmi.methods._twostage` for the details and
where we depart from micemd. ``2l.2stage.bin`` estimates the between-study covariance
by the method of moments (micemd's default ``method_est = "mm"``);
``2l.2stage.bin.reml`` by REML, with Psi* drawn from the REML estimate's asymptotic
distribution (micemd's ``method_est = "reml"``).
"""

from __future__ import annotations

from . import register
from ._twostage import twostage_glm
from .base import Draw, Problem


@register("2l.2stage.bin", types=("binary",), multilevel=True,
          description="two-stage: per-study logistic regressions + method-of-moments "
                      "multivariate meta-analysis — Resche-Rigon & White 2018 (micemd)")
def impute_2l_2stage_bin(problem: Problem) -> Draw:
    """Impute a binary (0/1) variable by two-stage imputation (METHOD.md §4, 2STG)."""
    return twostage_glm(problem, "binomial", "mm")


@register("2l.2stage.bin.reml", types=("binary",), multilevel=True,
          description="two-stage as 2l.2stage.bin, between-study covariance by REML "
                      "and drawn from its asymptotic distribution")
def impute_2l_2stage_bin_reml(problem: Problem) -> Draw:
    """Impute a binary variable by two-stage imputation with a REML meta-analysis."""
    return twostage_glm(problem, "binomial", "reml")
