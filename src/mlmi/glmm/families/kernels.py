"""The one place where compiled code selects a family's kernel by its integer code.

numba compiles a kernel per function it calls, and a family passed as a function object
would defeat the on-disk cache (every process would recompile), so the engine's kernels
take the family's ``code`` and call :func:`row_moments` / :func:`row_fourth`, which
forward to the family module's own ``moments`` / ``fourth``. A code without a family
returns NaN, which every caller turns into a failed evaluation; Python never passes one
(:func:`mlmi.glmm.families.get_family` rejects unknown families first).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import binomial, negbin, ordinal, poisson


@njit(cache=True, inline="always", error_model="numpy")
def row_moments(fam, y, eta, extra):
    """(log p(y | eta) without terms in y alone, g1, g2, g3) of one row (see _base.py)."""
    if fam == binomial.CODE:
        return binomial.moments(y, eta, extra)
    if fam == poisson.CODE:
        return poisson.moments(y, eta, extra)
    if fam == negbin.CODE:
        return negbin.moments(y, eta, extra)
    if fam == ordinal.CODE:
        return ordinal.moments(y, eta, extra)
    return np.nan, np.nan, np.nan, np.nan


@njit(cache=True, inline="always", error_model="numpy")
def row_fourth(fam, y, eta, g2, g3, extra):
    """g4 = d g3 / d eta of one row, given its g2 and g3 at eta."""
    if fam == binomial.CODE:
        return binomial.fourth(y, eta, g2, g3, extra)
    if fam == poisson.CODE:
        return poisson.fourth(y, eta, g2, g3, extra)
    if fam == negbin.CODE:
        return negbin.fourth(y, eta, g2, g3, extra)
    if fam == ordinal.CODE:
        return ordinal.fourth(y, eta, g2, g3, extra)
    return np.nan


@njit(cache=True, inline="always", error_model="numpy")
def row_moments_cached(fam, y, eta, extra):
    """:func:`row_moments` and two intermediate values (c0, c1) from which the family's
    ``extra_grad`` finishes its parameter derivatives at the same eta without a
    transcendental function (0, 0 for families without parameters)."""
    if fam == negbin.CODE:
        return negbin.moments_cached(y, eta, extra)
    if fam == ordinal.CODE:
        return ordinal.moments_cached(y, eta, extra)
    ll, g1, g2, g3 = row_moments(fam, y, eta, extra)
    return ll, g1, g2, g3, 0.0, 0.0


@njit(cache=True, inline="always", error_model="numpy")
def row_extra_grad(fam, y, eta, extra, c0, c1, idx, dl, dg1, dg2):
    """Partial derivatives of one row's log p, g1 and g2 with respect to the family
    parameters it involves (natural scale), from the (c0, c1) that
    :func:`row_moments_cached` returned at the same eta: their indices into ``extra`` go
    to ``idx``; returns how many (0 for families without parameters)."""
    if fam == negbin.CODE:
        return negbin.extra_grad(y, eta, extra, c0, c1, idx, dl, dg1, dg2)
    if fam == ordinal.CODE:
        return ordinal.extra_grad(y, eta, extra, c0, c1, idx, dl, dg1, dg2)
    return 0
