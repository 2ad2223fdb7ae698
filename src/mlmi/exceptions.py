"""Errors and warnings raised by mlmi.

Every error names the offending argument and value. Warnings are also recorded
on the objects that produced them (``GLMMResult.warnings``, ``Imputed.diagnostics``),
so a long run can count and report them instead of losing them on the console.
"""

from __future__ import annotations


class MLMIError(Exception):
    """Base class of all mlmi errors."""


class InputError(MLMIError, ValueError):
    """Invalid user input: wrong type, unknown column, impossible value."""


class ModelError(MLMIError, ValueError):
    """A model that the data cannot identify (too few clusters, too many random effects)."""


class MLMIWarning(UserWarning):
    """Base class of all mlmi warnings."""


class ConvergenceWarning(MLMIWarning):
    """The optimiser stopped before meeting its convergence criterion."""


class SingularFitWarning(MLMIWarning):
    """The random-effects covariance estimate is on the boundary (singular)."""


class SeparationWarning(MLMIWarning):
    """A binary response is perfectly separated (overall or within a cluster)."""


class RankDeficiencyWarning(MLMIWarning):
    """The fixed-effects design was rank deficient; columns were dropped."""


class ImputationWarning(MLMIWarning):
    """Something in an imputation run that the user should know about: a fallback, a
    model fit that did not converge, separation, a study with one participant. The
    counts are in ``Imputed.diagnostics`` and ``Imputed.summary()``."""
