"""``2l.bin``: multilevel imputation of a binary variable (logistic mixed model)."""

from __future__ import annotations

from . import register
from ._multilevel import multilevel_step
from .base import Draw, Problem


@register("2l.bin", types=("binary",), multilevel=True,
          description="logistic mixed model; random effects from their posterior "
                      "(sporadic) or prior (systematic) — Jolani 2025")
def impute_2l_bin(problem: Problem) -> Draw:
    """Impute a binary (0/1) variable with a two-level logistic model (METHOD.md §3)."""
    return multilevel_step(problem, "binomial")
