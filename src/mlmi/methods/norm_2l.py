"""``2l.norm``: multilevel imputation of a continuous variable (linear mixed model)."""

from __future__ import annotations

from . import register
from ._multilevel import multilevel_step
from .base import Draw, Problem


@register("2l.norm", types=("continuous", "count"), multilevel=True,
          description="linear mixed model; sigma* drawn; closed-form posterior of the "
                      "random effects for sporadically missing studies — Jolani 2015")
def impute_2l_norm(problem: Problem) -> Draw:
    """Impute a continuous variable with a two-level linear model (METHOD.md §3)."""
    return multilevel_step(problem, "gaussian")
