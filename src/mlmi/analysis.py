"""Analysing completed data sets and pooling the results (mice's ``mira`` and ``mipo``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .glmm import GLMMResult, fit_glmm
from .pool import FullTable, pooled_table, rubin


@dataclass
class MultipleFits:
    """The analysis model fitted to each of the m completed data sets.

    fits : the m :class:`~mlmi.glmm.GLMMResult` objects.
    formula, family : the analysis model.
    warnings : per imputation, the warnings of its fit (recorded, not lost).
    """

    fits: list[GLMMResult]
    formula: str
    family: str

    @property
    def m(self) -> int:
        return len(self.fits)

    @property
    def warnings(self) -> list[list[str]]:
        return [[str(w) for w in f.warnings] for f in self.fits]

    def estimates(self) -> pd.DataFrame:
        """Fixed-effect estimates, m × p."""
        return pd.DataFrame([f.fixef for f in self.fits]).reset_index(drop=True)

    def variances(self) -> pd.DataFrame:
        """Squared standard errors of the fixed effects, m × p."""
        return pd.DataFrame([f.std_errors**2 for f in self.fits]).reset_index(drop=True)

    def pool(self, level: float = 0.95) -> pd.DataFrame:
        """Fixed effects pooled by Rubin's rules.

        One row per term (``(Intercept)``, ``x1``, …) with ``estimate`` (mean over the
        imputations), ``std_error`` (sqrt of the total variance), ``df`` (Barnard–Rubin,
        with complete-data df = n − p), ``riv`` (relative increase in variance due to
        nonresponse), ``fmi`` (fraction of missing information), ``conf_low``/``conf_high``
        (``level`` interval from the t distribution with ``df``) and ``p_value``
        (two-sided test of zero); plus ``ubar``, ``b``, ``t`` and ``lambda``.
        """
        if self.m < 2:
            from .exceptions import InputError

            raise InputError(f"pool(): the analysis was fitted to m={self.m} imputation; "
                             "Rubin's rules need at least 2 (impute with m >= 2)")
        names = [list(f.x_names) for f in self.fits]
        if any(n != names[0] for n in names):
            raise ValueError("the fits have different fixed-effect terms (a column was "
                             "dropped as collinear in some imputations); cannot pool")
        n = self.fits[0].n_obs
        p = len(names[0])
        table = rubin(self.estimates(), self.variances(), dfcom=n - p)
        table = pooled_table(table, level=level)
        cols = ["estimate", "std_error", "df", "riv", "fmi", "conf_low", "conf_high",
                "p_value", "ubar", "b", "t", "lambda"]
        return FullTable(table[cols])

    def pool_random(self) -> pd.DataFrame:
        """Random-effect SDs and correlations (and the residual SD for gaussian models):
        ``mean`` over the imputations (the paper's summary) and ``median`` (suggested for
        skewed variance estimates), with the ``min`` and ``max``."""
        rows = [_random_parameters(f) for f in self.fits]
        frame = pd.DataFrame(rows)
        return FullTable({"mean": frame.mean(), "median": frame.median(),
                          "min": frame.min(), "max": frame.max()})


def _random_parameters(fit: GLMMResult) -> dict[str, float]:
    sd = fit.sd_re
    out = {f"sd({name})": float(v) for name, v in sd.items()}
    corr = fit.corr_re.to_numpy()
    names = list(sd.index)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[f"cor({names[i]},{names[j]})"] = float(corr[i, j])
    if fit.family.scale_parameter:
        out["sigma"] = float(fit.sigma)
    return out


def check_analysis(formula: str, family: str, columns: list, arg: str = "formula") -> None:
    """Check an analysis model against the columns it will be fitted to, before any
    imputation: the formula parses, names only columns of the data, and the family is
    known. ``arg`` is how the messages call the formula (e.g. ``--analyze``)."""
    from .exceptions import InputError
    from .glmm import parse_formula
    from .glmm.families import get_family

    get_family(family)
    try:
        terms = parse_formula(formula)
    except InputError as exc:
        raise InputError(f"{arg} {formula!r}: {exc}") from None
    missing = [v for v in terms.variables if v not in columns]
    if missing:
        import difflib

        close = {v: difflib.get_close_matches(v, [str(c) for c in columns], n=1)
                 for v in missing}
        hint = "; ".join(f"did you mean {c[0]!r} for {v!r}?" for v, c in close.items() if c)
        raise InputError(f"{arg} {formula!r} uses column(s) {missing} that are not in the "
                         f"data (columns: {list(columns)[:20]})" + (f"; {hint}" if hint else ""))


def analyze_completed(datasets: list[pd.DataFrame], formula: str, family: str = "gaussian",
                      **kwargs) -> MultipleFits:
    """Fit ``formula`` to each completed data set; warnings are recorded on each fit
    (see ``MultipleFits.warnings``) rather than printed m times."""
    from ._threads import single_threaded_blas

    fits = []
    with single_threaded_blas():
        for d in datasets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fits.append(fit_glmm(formula, d, family, **kwargs))
    return MultipleFits(fits, formula, family)


__all__ = ["CompleteCase", "MultipleFits", "MultipleResults", "analyze_completed",
           "analyze_function", "check_analysis", "complete_case"]


@dataclass
class CompleteCase:
    """Complete-case analysis (CCA): the analysis model fitted to the participants with
    no missing value in any variable of the formula; studies left without participants
    drop out.

    fit : the :class:`~mlmi.glmm.GLMMResult`.
    n_total, n_used : participants before and after dropping incomplete rows.
    studies_used, studies_dropped : labels of the studies kept and lost.
    """

    fit: GLMMResult
    n_total: int
    n_used: int
    studies_used: list
    studies_dropped: list

    def pool(self, level: float = 0.95) -> pd.DataFrame:
        """The fixed effects in the layout of :meth:`MultipleFits.pool` (Wald intervals
        and tests from the normal distribution; df infinite, riv and fmi 0), so CCA sits
        beside the imputation methods in one table."""
        from scipy import stats

        est = self.fit.beta
        se = np.sqrt(np.diag(self.fit.beta_cov))
        z = stats.norm.ppf(0.5 + level / 2)
        return FullTable({
            "estimate": est, "std_error": se, "df": np.inf, "riv": 0.0, "fmi": 0.0,
            "conf_low": est - z * se, "conf_high": est + z * se,
            "p_value": 2 * stats.norm.sf(np.abs(est / se)),
        }, index=pd.Index(self.fit.x_names, name="term"))

    def pool_random(self) -> pd.DataFrame:
        """Random-effect SDs and correlations of the one fit (mean = median = value)."""
        values = pd.Series(_random_parameters(self.fit))
        return FullTable({"mean": values, "median": values, "min": values, "max": values})


def complete_case(data: pd.DataFrame, formula: str, family: str = "gaussian",
                  **kwargs) -> CompleteCase:
    """Complete-case analysis of ``formula`` (lme4 syntax) on ``data``.

    Rows with a missing value in any variable the formula uses are dropped (and
    counted); the model is fitted by :func:`mlmi.glmm.fit_glmm` to the rest. Keyword
    arguments go to ``fit_glmm``; its warnings are recorded on ``.fit.warnings``.
    """
    from .exceptions import InputError
    from .glmm import parse_formula

    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    terms = parse_formula(formula)
    missing = [v for v in terms.variables if v not in data.columns]
    if missing:
        raise InputError(f"formula {formula!r} uses column(s) {missing} that are not in data")
    keep = data[terms.variables].notna().all(axis=1)
    used = data.loc[keep]
    all_studies = pd.unique(data[terms.group].dropna())
    kept_studies = pd.unique(used[terms.group])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_glmm(formula, used, family, **kwargs)
    dropped = [s for s in all_studies if s not in set(kept_studies)]
    return CompleteCase(fit, len(data), int(keep.sum()), pd.Series(kept_studies).tolist(),
                        pd.Series(dropped, dtype=object).tolist())


# ------------------------------------------------------------------ any analysis model
@dataclass
class MultipleResults:
    """Any analysis model fitted to each of the m completed data sets (by a user's
    function), ready for Rubin's rules.

    results : what the function returned for each imputation (kept as given).
    estimates_ : m × p estimates; covariances : the m p × p covariance matrices.
    dfcom : complete-data degrees of freedom used by :meth:`pool` (``None``: infinite).
    """

    results: list
    names: list[str]
    estimates_: np.ndarray
    covariances: np.ndarray
    dfcom: float | None

    @property
    def m(self) -> int:
        return len(self.results)

    def estimates(self) -> pd.DataFrame:
        """The estimates, m × p (one column per parameter)."""
        return pd.DataFrame(self.estimates_, columns=self.names)

    def variances(self) -> pd.DataFrame:
        """Squared standard errors (diagonals of the covariance matrices), m × p."""
        return pd.DataFrame(np.diagonal(self.covariances, axis1=1, axis2=2).copy(),
                            columns=self.names)

    def pool(self, level: float = 0.95) -> pd.DataFrame:
        """Parameters pooled by Rubin's rules, in the layout of :meth:`MultipleFits.pool`
        (Barnard–Rubin df with complete-data df ``dfcom``; infinite if ``None``)."""
        table = pooled_table(rubin(self.estimates(), self.variances(), dfcom=self.dfcom),
                             level=level)
        cols = ["estimate", "std_error", "df", "riv", "fmi", "conf_low", "conf_high",
                "p_value", "ubar", "b", "t", "lambda"]
        return FullTable(table[cols].rename_axis("term"))


def _estimates_of(result, index: int) -> tuple[list[str], np.ndarray, np.ndarray, float | None]:
    """Names, estimates, covariance and residual df of one analysis result: an object
    with ``params`` and ``cov_params()`` (statsmodels), with ``params_`` and
    ``variance_matrix_`` (lifelines), or a pair (estimates, covariance)."""
    from .exceptions import InputError

    df = None
    if isinstance(result, tuple) and len(result) == 2:
        est, cov = result
    elif hasattr(result, "params") and hasattr(result, "cov_params"):
        est, cov = result.params, result.cov_params()
        df = getattr(result, "df_resid", None)
    elif hasattr(result, "params_") and hasattr(result, "variance_matrix_"):
        est, cov = result.params_, result.variance_matrix_
    else:
        raise InputError(
            f"analyze(func): func returned {type(result).__name__} for imputation {index}; "
            "return a fitted result with params and cov_params() (statsmodels), or a pair "
            "(estimates, covariance)"
        )
    if isinstance(est, pd.Series):
        names = [str(n) for n in est.index]
    else:
        names = [f"b{j}" for j in range(np.size(est))]
    est_arr = np.asarray(est, dtype=float).reshape(-1)
    cov_arr = np.asarray(cov, dtype=float)
    if cov_arr.ndim == 1 and cov_arr.size == est_arr.size:  # variances only
        cov_arr = np.diag(cov_arr)
    if cov_arr.shape != (est_arr.size, est_arr.size):
        raise InputError(
            f"analyze(func), imputation {index}: {est_arr.size} estimates but a covariance "
            f"of shape {cov_arr.shape}; expected ({est_arr.size}, {est_arr.size})"
        )
    if isinstance(cov, pd.DataFrame) and isinstance(est, pd.Series):
        cov_arr = cov.loc[est.index, est.index].to_numpy(dtype=float)
    try:
        df = None if df is None else float(df)
    except (TypeError, ValueError):
        df = None
    return names, est_arr, cov_arr, df


def analyze_function(datasets: list[pd.DataFrame], func, dfcom: float | None = None
                     ) -> MultipleResults:
    """Apply ``func`` to each completed data set and collect what Rubin's rules need.

    ``func(frame)`` returns a fitted model with ``params`` and ``cov_params()`` (any
    statsmodels result), one with ``params_`` and ``variance_matrix_`` (lifelines), or a
    pair ``(estimates, covariance)`` (a covariance may be a vector of variances).
    ``dfcom``: complete-data degrees of freedom for the Barnard–Rubin df; ``None`` takes
    the results' ``df_resid`` when they have one (as mice's ``pool`` takes
    ``df.residual``), else infinite (large-sample inference).
    """
    from .exceptions import InputError

    if not callable(func):
        raise InputError(f"analyze: func={func!r} is not callable")
    if dfcom is not None and not (isinstance(dfcom, (int, float, np.integer, np.floating))
                                  and dfcom > 0):
        raise InputError(f"dfcom={dfcom!r} must be a positive number or None (infinite)")
    results, ests, covs, dfs = [], [], [], []
    names0: list[str] | None = None
    for i, frame in enumerate(datasets, start=1):
        res = func(frame)
        names, est, cov, df = _estimates_of(res, i)
        if names0 is None:
            names0 = names
        elif names != names0:
            raise InputError(
                f"analyze(func): imputation {i} gives parameters {names}, imputation 1 "
                f"{names0}; the analysis must estimate the same parameters every time"
            )
        results.append(res)
        ests.append(est)
        covs.append(cov)
        dfs.append(df)
    if dfcom is None and all(d is not None for d in dfs):
        dfcom = float(min(dfs))
    if dfcom is not None and not np.isfinite(dfcom):
        dfcom = None
    return MultipleResults(results, list(names0 or []), np.array(ests), np.array(covs),
                           dfcom)
