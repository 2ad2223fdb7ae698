"""``2l.pois``: multilevel imputation of a count variable (Poisson mixed model)."""

from __future__ import annotations

from . import register
from ._multilevel import multilevel_step
from .base import Draw, Problem


@register("2l.pois", types=("count",), multilevel=True,
          description="Poisson mixed model; random effects from their posterior "
                      "(sporadic) or prior (systematic) — Jolani 2025")
def impute_2l_pois(problem: Problem) -> Draw:
    """Impute a non-negative count with a two-level Poisson model (METHOD.md §3)."""
    return multilevel_step(problem, "poisson")
