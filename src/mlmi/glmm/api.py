"""The lme4-style front end: ``fit_glmm(formula, data, family)``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._threads import single_threaded_blas
from ..exceptions import InputError
from .families import Family, get_family
from .fit import Start, fit_arrays
from .formula import parse_formula
from .result import GLMMResult


def fit_glmm(
    formula: str,
    data: pd.DataFrame,
    family: str | Family = "gaussian",
    *,
    reml: bool = False,
    nagq: int = 1,
    start: GLMMResult | Start | dict | None = None,
    vcov: str = "hessian",
    maxiter: int = 1000,
) -> GLMMResult:
    """Fit a two-level generalized linear mixed model by maximum likelihood.

    Parameters
    ----------
    formula : lme4-style formula with one random-effects term, e.g.
        ``"y ~ x1 + x2 + (1 + x1 | st)"``: fixed effects for x1 and x2, a random
        intercept and a random slope of x1 that vary between the clusters ``st``.
        ``(1 | st)`` is a random intercept only; ``(0 + x1 | st)`` a random slope only.
    data : the data; it is not modified. Every column the formula uses must be
        complete — subset the rows first (``data.dropna(subset=...)``).
    family : ``"gaussian"`` (linear mixed model), ``"binomial"`` (logistic; the response
        may be 0/1, bool or a two-level categorical whose second level is the event),
        ``"poisson"`` (log link; non-negative integer counts), ``"negbin"`` (NB2 counts,
        Var = mu + mu²/theta with theta estimated; ``result.nb_theta``), ``"ordinal"``
        (cumulative logit as ``ordinal::clmm``: an ordered categorical or integer codes;
        the formula's intercept is replaced by the thresholds, ``result.thresholds``) or
        ``"multinomial"`` (baseline-category logit, first level the reference; fixed
        effects and random effects named ``"<level>:<term>"``).
    reml : gaussian only: restricted maximum likelihood (lme4's default for ``lmer``);
        the default here is ML, which is what a likelihood comparison needs.
    nagq : 1 = Laplace approximation (``glmer``'s default, ``nAGQ = 1``); > 1 = adaptive
        Gauss–Hermite quadrature with ``nagq`` points per random effect (q <= 2).
    start : start values: a previous fit, a :class:`~mlmi.glmm.fit.Start`, or a dict
        ``{"beta": ..., "theta": ...}`` (theta in lme4's order).
    vcov : ``"hessian"`` (lme4's ``vcov()`` for glmer) or ``"fisher"`` (lme4's
        ``use.hessian = FALSE``); see :attr:`GLMMResult.vcov`.
    maxiter : iteration limit of the bounded optimiser (L-BFGS-B); a fit that reaches it
        is reported as not converged (``ConvergenceWarning``, ``result.converged`` False).
        Not applied to the warm-start steps from a previous fit's Hessian nor to the AGQ
        stage of ``nagq > 1`` (see :func:`~mlmi.glmm.fit.fit_arrays`).

    Returns
    -------
    GLMMResult with ``fixef``, ``vcov``, ``cov_re``, ``ranef``, ``cond_cov``, ``sigma``,
    ``loglik``, ``converged``, ``singular``, ``n_iter``, ``warnings`` and ``predict``.
    Warnings (non-convergence, singular fit, separation, dropped columns) are both
    emitted and recorded in ``result.warnings``.
    """
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    fam = get_family(family)
    terms = parse_formula(formula)
    missing = [v for v in terms.variables if v not in data.columns]
    if missing:
        raise InputError(
            f"formula {formula!r} uses column(s) {missing} that are not in data "
            f"(columns: {list(data.columns)[:20]})"
        )
    for var in terms.variables:
        _check_column(data[var], var, terms.variables)
    y, levels = fam.encode(data[terms.response], terms.response)
    if fam.fitter == "multinomial":  # names "<level>:<term>" need the levels
        fam = fam.with_levels(levels)
    terms.learn_levels(data)
    X, W, groups = terms.model_arrays(data)
    # a named Series, so that the design's checks name the grouping column
    groups = pd.Series(groups, name=terms.group)
    # one BLAS thread: the matrices are tiny and a threaded BLAS only adds
    # synchronisation (L-BFGS-B took 6 s of a 7 s fit on a loaded 2-core machine)
    with single_threaded_blas():
        result = fit_arrays(
            y, X, W, groups, fam, reml=reml, nagq=nagq, start=start,
            x_names=terms.x_names, w_names=terms.w_names, vcov=vcov, maxiter=maxiter,
        )
    result.levels = levels
    result.formula = terms.formula
    result.response = terms.response
    result.group = terms.group
    result._terms = terms
    for w in result.warnings:
        if w.kind != "info":  # notes on what the optimiser did are kept, not raised
            w.emit(stacklevel=3)
    return result


def _check_column(col: pd.Series, var: str, used: list[str]) -> None:
    """No missing and no infinite values in a column the formula uses."""
    missing = col.isna().to_numpy()
    if missing.any():
        raise InputError(
            f"column {var!r} has {int(missing.sum())} missing value(s) (first at row "
            f"{col.index[int(np.argmax(missing))]!r}); fit_glmm does not drop rows silently "
            f"— the caller must subset, e.g. data.dropna(subset={used!r})"
        )
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        inf = np.isinf(col.to_numpy(dtype=float))
        if inf.any():
            raise InputError(
                f"column {var!r} has {int(inf.sum())} infinite value(s) "
                f"{sorted(set(col[inf].tolist()))} (first at row "
                f"{col.index[int(np.argmax(inf))]!r}); the caller must subset to the rows "
                "where it is finite (or transform it) before fitting"
            )
