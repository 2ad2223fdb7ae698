"""Response families of the two-level GLMM: one module per family.

======================  ==================  ============================================
``family=``             module              model
======================  ==================  ============================================
``"gaussian"``          ``gaussian.py``     linear mixed model (exact likelihood)
``"binomial"``          ``binomial.py``     logistic
``"poisson"``           ``poisson.py``      log-linear counts
``"negbin"``            ``negbin.py``       NB2 counts, theta estimated
``"ordinal"``           ``ordinal.py``      cumulative logit (``ordinal::clmm``)
``"multinomial"``       ``multinomial.py``  baseline-category logit (Hedeker 2003)
======================  ==================  ============================================

Each module holds a :class:`Family` (response checks, likelihood with constants, start
values, extra parameters, response sampling) and its compiled per-row kernel; see
:mod:`mlmi.glmm.families._base` for the interface.
"""

from __future__ import annotations

from ...exceptions import InputError
from . import binomial, gaussian, multinomial, negbin, ordinal, poisson
from ._base import Family

FAMILIES: dict[str, Family] = {
    f.name: f for f in (gaussian.FAMILY, binomial.FAMILY, poisson.FAMILY, negbin.FAMILY,
                        ordinal.FAMILY, multinomial.FAMILY)
}


def get_family(family: str | Family) -> Family:
    """Look up a family by name: one of :data:`FAMILIES`; anything else is an error."""
    if isinstance(family, Family):
        if family.name not in FAMILIES:
            raise InputError(f"family {family.name!r} is not registered; use one of "
                             f"{sorted(FAMILIES)}")
        return family
    if not isinstance(family, str) or family.lower() not in FAMILIES:
        raise InputError(
            f"family={family!r} is not supported; use one of {sorted(FAMILIES)}"
        )
    return FAMILIES[family.lower()]


__all__ = ["FAMILIES", "Family", "get_family"]
