"""Two-level generalized linear mixed models: the engine every imputation method uses.

* :func:`fit_glmm` — lme4-style formula front end.
* :func:`fit_arrays` — array-level fast path for the imputation loop (warm starts).
* :class:`GLMMResult` — ``fixef``, ``vcov``, ``cov_re``, ``ranef``, ``cond_cov``, ...
"""

from .api import fit_glmm
from .families import FAMILIES, Family, get_family
from .fit import Start, fit_arrays
from .formula import parse_formula
from .result import FitWarning, GLMMResult

__all__ = [
    "FAMILIES",
    "Family",
    "FitWarning",
    "GLMMResult",
    "Start",
    "fit_arrays",
    "fit_glmm",
    "get_family",
    "parse_formula",
]
