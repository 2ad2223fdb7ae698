"""Rubin's rules: pool estimates from ``m`` multiply imputed data sets.

Each of the ``m`` completed data sets gives, for every parameter, an estimate
``Q_l`` and its squared standard error ``U_l`` (the within-imputation variance).
:func:`rubin` combines them into one estimate with a total variance that adds the
extra uncertainty due to the missing data, and a Barnard–Rubin (1999)
small-sample degrees of freedom for t-based inference; :func:`pooled_table`
adds the t statistic, two-sided p-value and confidence interval.

The numbers are those of R's mice 3.15 (``pool.scalar`` with its default rule
``"rubin1987"``, ``pool()``, ``summary(pool(fit), conf.int = TRUE)``), checked to
1e-8 against fixtures made by ``tools/make_mice_pool_fixtures.R``. The
formulas, with ``k = 1 + 1/m``:

==============  ==========================================================
``estimate``    ``Qbar = mean(Q_l)``
``ubar``        ``mean(U_l)``
``b``           ``sum((Q_l - Qbar)^2) / (m - 1)``
``t``           ``ubar + k b``
``riv``         ``k b / ubar``
``lambda``      ``k b / t``
``df``          Barnard–Rubin, below
``fmi``         ``(riv + 2 / (df + 3)) / (riv + 1)``
``std_error``   ``sqrt(t)``
==============  ==========================================================

Barnard–Rubin df exactly as mice's ``barnard.rubin``: with
``lam = max(lambda, 1e-4)`` (mice floors lambda here, and only here),
``df_old = (m - 1) / lam^2`` (Rubin 1987) and
``df_obs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)``,
``df = df_old * df_obs / (df_old + df_obs)``; for an infinite complete-data df
(``dfcom=None``), ``df = df_old``. The floor keeps ``df`` finite when ``b = 0``.

Edge cases
----------
* ``b = 0`` (every imputation gives the same estimate, e.g. a parameter the
  missing values do not touch): ``riv = lambda = 0`` exactly, ``t = ubar``,
  ``df = df_old * df_obs / (df_old + df_obs)`` with ``lam = 1e-4``, i.e. about
  ``dfcom (dfcom + 1) / (dfcom + 3)`` for finite ``dfcom`` and ``(m - 1) * 1e8``
  for infinite ``dfcom``; ``fmi = 2 / (df + 3)``, small but not 0 (mice's
  definition). All finite.
* ``ubar = 0`` (every within-imputation variance of a parameter is 0): ``riv``
  is infinite and mice returns ``fmi = NaN``; :func:`rubin` raises
  :class:`~mlmi.exceptions.InputError` instead.
* ``ubar`` tiny relative to ``b`` (``lambda`` close to 1): ``df`` is small
  (with finite ``dfcom``, ``df_obs ~ dfcom * ubar / t``), so confidence limits
  become very wide and, for ``df`` below about 0.005 (level 0.95), infinite
  (as in mice).
  ``1 - lambda`` is computed as mice computes it, by subtraction, so ``df``
  carries a relative rounding error of about ``1e-16 * t / ubar`` (1e-8 at
  ``ubar / t = 1e-8``) -- in mice too.

Estimates are pooled parameter by parameter (no multivariate tests).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from .exceptions import InputError

__all__ = [
    "LAMBDA_FLOOR",
    "POOLED_COLUMNS",
    "TABLE_COLUMNS",
    "pooled_table",
    "rubin",
    "t_quantile",
]

LAMBDA_FLOOR = 1e-4
"""Lower bound mice's ``barnard.rubin`` puts on lambda before computing the df."""

POOLED_COLUMNS = ("estimate", "ubar", "b", "t", "df", "riv", "lambda", "fmi", "std_error")
"""Columns of :func:`rubin`'s result, in order."""

TABLE_COLUMNS = (*POOLED_COLUMNS, "statistic", "p_value", "conf_low", "conf_high")
"""Columns of :func:`pooled_table`'s result, in order."""


def rubin(estimates: Any, variances: Any, dfcom: float | None = None) -> pd.DataFrame:
    """Pool ``m`` sets of estimates and variances with Rubin's rules.

    Parameters
    ----------
    estimates
        ``m x p`` array-like: row ``l`` holds the ``p`` parameter estimates from
        completed data set ``l``. A 1-D array of length ``m`` is one parameter.
        A :class:`pandas.DataFrame` names the parameters by its columns (a named
        :class:`pandas.Series` is one named parameter); rows are matched to the
        rows of ``variances`` by position.
    variances
        Same shape: the within-imputation variances, i.e. the squared standard
        errors of ``estimates`` (the diagonal of each fit's covariance matrix),
        finite and ``>= 0``. If both arguments are DataFrames their columns must
        name the same parameters; ``variances`` is reordered to match.
    dfcom
        Complete-data degrees of freedom: the residual df the analysis would have
        had without missing data (mice's ``pool()`` uses ``n - k`` for ``lm``).
        ``None`` or ``inf`` means infinite (large-sample inference), which makes
        ``df`` the original Rubin (1987) df.

    Returns
    -------
    pandas.DataFrame
        One row per parameter (index: the column names of a DataFrame input,
        else ``0 .. p-1``), columns, in this order:

        ``estimate``
            Pooled point estimate ``Qbar``, the mean of the ``m`` estimates.
        ``ubar``
            Mean within-imputation variance: the sampling variance the estimate
            would have had if the data had been complete.
        ``b``
            Between-imputation variance of the ``m`` estimates (denominator
            ``m - 1``): the extra variance caused by not knowing the missing values.
        ``t``
            Total variance of ``Qbar``, ``ubar + (1 + 1/m) b``; the ``1/m`` term
            accounts for using a finite number of imputations.
        ``df``
            Degrees of freedom of the reference t distribution of
            ``(Qbar - Q) / sqrt(t)``: Barnard & Rubin's (1999) small-sample df
            (never larger than ``dfcom``), computed exactly as mice's
            ``barnard.rubin``, including its floor ``lambda >= 1e-4``.
        ``riv``
            Relative increase in variance due to nonresponse,
            ``(1 + 1/m) b / ubar``.
        ``lambda``
            Proportion of the total variance due to the missing data,
            ``(1 + 1/m) b / t`` (not floored), in ``[0, 1)``.
        ``fmi``
            Fraction of missing information about the parameter, mice's
            definition ``(riv + 2 / (df + 3)) / (riv + 1)`` with the
            Barnard–Rubin ``df``.
        ``std_error``
            Standard error of ``Qbar``, ``sqrt(t)``.

        ``result.attrs`` holds ``m`` and ``dfcom`` (``inf`` if infinite).

    Raises
    ------
    InputError
        If the inputs are not numeric, have different shapes, more than two
        dimensions, fewer than 2 imputations or no parameter; if an estimate is
        not finite, a variance is negative or not finite, or all variances of a
        parameter are 0; if ``dfcom`` is not a number > 0; or if DataFrame
        columns do not match.

    Notes
    -----
    Every quantity is exactly invariant to the order of the imputations (sums
    are exactly rounded with :func:`math.fsum`). See the module docstring for
    the formulas and edge cases.
    """
    q, u, names = _as_matrices(estimates, variances)
    dfc = _check_dfcom(dfcom)
    m, p = q.shape

    qbar = np.empty(p)
    ubar = np.empty(p)
    b = np.empty(p)
    for j in range(p):
        qj = q[:, j]
        if np.all(qj == qj[0]):
            qbar[j], b[j] = qj[0], 0.0
        else:
            mean = math.fsum(qj) / m
            mean += math.fsum(qj - mean) / m  # refinement, as R's mean() does
            qbar[j] = mean
            b[j] = math.fsum((qj - mean) ** 2) / (m - 1)
        ubar[j] = math.fsum(u[:, j]) / m

    zero = ubar == 0.0
    if np.any(zero):
        bad = [names[j] for j in np.flatnonzero(zero)]
        raise InputError(
            f"variances: every within-imputation variance is 0 for parameter(s) {bad}; "
            "Rubin's rules need a positive mean within-imputation variance (ubar > 0)"
        )

    # Same operations, in the same order, as mice's pool.fitlist and barnard.rubin.
    k = 1 + 1 / m
    t = ubar + k * b
    riv = k * b / ubar
    lam = k * b / t
    df = _barnard_rubin(m, lam, dfc)
    fmi = (riv + 2 / (df + 3)) / (riv + 1)

    out = pd.DataFrame(
        {
            "estimate": qbar,
            "ubar": ubar,
            "b": b,
            "t": t,
            "df": df,
            "riv": riv,
            "lambda": lam,
            "fmi": fmi,
            "std_error": np.sqrt(t),
        },
        index=pd.Index(names),
        columns=list(POOLED_COLUMNS),
    )
    out.attrs["m"] = m
    out.attrs["dfcom"] = dfc
    return out


def pooled_table(pooled: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Add t tests and confidence intervals to the result of :func:`rubin`.

    As mice's ``summary(pool(fit), conf.int = TRUE, conf.level = level)``:

    ``statistic``
        ``estimate / std_error``, the Wald t statistic for the hypothesis that
        the parameter is 0.
    ``p_value``
        Two-sided p-value of that test, ``2 P(T > |statistic|)`` with ``T`` a
        t variable with ``max(df, 0.001)`` degrees of freedom (mice's guard).
    ``conf_low``, ``conf_high``
        ``estimate + q std_error`` with ``q`` the ``(1 - level)/2`` and
        ``(1 + level)/2`` quantiles of the t distribution with ``df`` degrees of
        freedom (:func:`t_quantile`, R's ``qt``): a ``level`` confidence
        interval for the parameter. They are infinite when ``df`` is so small
        (below about 0.005 at level 0.95) that the quantile overflows, as in
        mice, and NaN if ``df`` is 0 (possible only when ``ubar / b`` is below
        the rounding error of ``t``, about 1e-16).

    Parameters
    ----------
    pooled
        A data frame with at least the columns ``estimate``, ``std_error`` and
        ``df`` (the output of :func:`rubin`).
    level
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    pandas.DataFrame
        A copy of ``pooled`` with the four columns appended (in the order
        ``statistic, p_value, conf_low, conf_high``); ``attrs["level"]`` is set.
    """
    if not isinstance(pooled, pd.DataFrame):
        raise InputError(
            f"pooled: expected the DataFrame returned by rubin(), got {type(pooled).__name__}"
        )
    missing = [c for c in ("estimate", "std_error", "df") if c not in pooled.columns]
    if missing:
        raise InputError(f"pooled: missing column(s) {missing}; pass the result of rubin()")
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < float(level) < 1:
        raise InputError(f"level: must be a number strictly between 0 and 1, got {level!r}")
    level = float(level)

    est = pooled["estimate"].to_numpy(dtype=float)
    se = pooled["std_error"].to_numpy(dtype=float)
    df = pooled["df"].to_numpy(dtype=float)

    statistic = est / se
    p_value = 2 * stats.t.sf(np.abs(statistic), np.maximum(df, 0.001))
    a = (1 - level) / 2
    conf_low = est + t_quantile(a, df) * se
    conf_high = est + t_quantile(1 - a, df) * se

    out = pooled.copy()
    out["statistic"] = statistic
    out["p_value"] = p_value
    out["conf_low"] = conf_low
    out["conf_high"] = conf_high
    out.attrs = {**pooled.attrs, "level": level}
    return out


# ---------------------------------------------------------------------------
# internals
# ---------------------------------------------------------------------------


def t_quantile(p: Any, df: Any) -> np.ndarray:
    """Quantile function of Student's t distribution, as R's ``qt(p, df)``.

    :func:`scipy.stats.t.ppf`, except in the far tail that only tiny ``df``
    reach (below about 0.05, as Barnard–Rubin df can be when ``lambda`` is close
    to 1): scipy inverts the incomplete beta function in
    ``z = df / (df + x^2)``, which underflows, so it returns about 1e152
    whatever the true quantile (R: 1e229 for ``qt(0.025, 0.0056)``). Where
    ``log z < -500`` (``|x|`` above about ``1e108 sqrt(df)``) the leading term of
    the tail, ``P(|T| > x) = I_z(df/2, 1/2) ~ z^(df/2) / ((df/2) B(df/2, 1/2))``,
    is solved for ``x`` in logs instead (relative error ~1e-12 against R);
    beyond the double range the result is +-inf, as in R.
    """
    p, df = np.broadcast_arrays(np.asarray(p, dtype=float), np.asarray(df, dtype=float))
    q = np.asarray(stats.t.ppf(p, df), dtype=float)
    tail = np.minimum(p, 1 - p)
    a = df / 2
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_z = (np.log(2 * tail) + np.log(a) + special.betaln(a, 0.5)) / a
        far = log_z < -500  # z < 1e-217: the O(z) terms are negligible
        x = np.exp(0.5 * (np.log(df) - log_z))
    return np.where(far, np.where(p < 0.5, -x, x), q)


def _barnard_rubin(m: int, lam: np.ndarray, dfcom: float) -> np.ndarray:
    """mice 3.15's ``barnard.rubin(m, b, t, dfcom)`` given ``lambda = (1 + 1/m) b / t``."""
    lam = np.where(lam < LAMBDA_FLOOR, LAMBDA_FLOOR, lam)
    dfold = (m - 1) / lam**2
    if math.isinf(dfcom):
        return dfold
    dfobs = (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam)
    return dfold * dfobs / (dfold + dfobs)


def _check_dfcom(dfcom: Any) -> float:
    if dfcom is None:
        return math.inf
    if isinstance(dfcom, bool) or not isinstance(dfcom, Real):
        raise InputError(f"dfcom: must be a number > 0 or None (infinite), got {dfcom!r}")
    value = float(dfcom)
    if math.isnan(value) or value <= 0:
        raise InputError(f"dfcom: must be > 0 (or None for infinite), got {dfcom!r}")
    return value


def _as_matrices(estimates: Any, variances: Any) -> tuple[np.ndarray, np.ndarray, list]:
    """Both inputs as float ``m x p`` arrays, and the parameter names."""
    q_names = _names_of(estimates)
    u_names = _names_of(variances)
    if q_names is not None and u_names is not None:
        if len(set(q_names)) != len(q_names) or len(set(u_names)) != len(u_names):
            raise InputError("estimates, variances: duplicated parameter (column) names")
        if set(q_names) != set(u_names):
            raise InputError(
                "estimates, variances: the DataFrame columns name different parameters: "
                f"{list(q_names)} vs {list(u_names)}"
            )
        if isinstance(variances, pd.DataFrame) and list(u_names) != list(q_names):
            variances = variances[list(q_names)]

    q = _as_array(estimates, "estimates")
    u = _as_array(variances, "variances")
    if q.shape != u.shape:
        raise InputError(
            f"estimates, variances: shapes differ: {q.shape} vs {u.shape} "
            "(both must be m x p: one row per imputation, one column per parameter)"
        )
    m, p = q.shape
    if m < 2:
        raise InputError(f"estimates: need at least 2 imputations (rows), got m = {m}")
    if p < 1:
        raise InputError("estimates: no parameters (0 columns)")

    names = q_names if q_names is not None else u_names
    if names is None:
        names = list(range(p))
    names = list(names)

    if not np.all(np.isfinite(q)):
        i, j = np.argwhere(~np.isfinite(q))[0]
        raise InputError(
            f"estimates: must be finite; imputation {i} (0-based row), parameter "
            f"{names[j]!r} is {q[i, j]!r}"
        )
    bad = ~np.isfinite(u) | (u < 0)
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        what = "negative" if np.isfinite(u[i, j]) else "not finite"
        raise InputError(
            f"variances: must be finite and >= 0; imputation {i} (0-based row), parameter "
            f"{names[j]!r} is {what} ({u[i, j]!r})"
        )
    return q, u, names


def _names_of(x: Any) -> Sequence[Hashable] | None:
    if isinstance(x, pd.DataFrame):
        return list(x.columns)
    if isinstance(x, pd.Series) and x.name is not None:
        return [x.name]
    return None


def _as_array(x: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: must be numeric (m x p or length m), got {exc}") from None
    if a.ndim == 0:
        raise InputError(f"{what}: must be an m x p array or a length-m vector, got a scalar")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"{what}: must be an m x p array or a length-m vector, got {a.ndim}-D")
    return a


class FullTable(pd.DataFrame):
    """A DataFrame of results (``pool()``, ``pool_random()``, ``summary()``) that prints
    in full — every row, column, term and interval — in a terminal and in a notebook,
    wrapping to the width of the terminal instead of eliding columns as ``...``.
    Otherwise an ordinary DataFrame."""

    @property
    def _constructor(self):
        return FullTable

    def __repr__(self) -> str:
        with _show_all():
            return super().__repr__()

    def _repr_html_(self) -> str | None:
        with _show_all():
            return super()._repr_html_()

    def to_string(self, *args, **kwargs) -> str:
        with _show_all():
            return super().to_string(*args, **kwargs)


def _show_all():
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    return pd.option_context("display.max_columns", None, "display.max_rows", None,
                             "display.width", max(width, 40), "display.max_colwidth", None)
