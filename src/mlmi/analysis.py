"""Analysing completed data sets and pooling the results (mice's ``mira`` and ``mipo``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .glmm import GLMMResult, fit_glmm
from .pool import pooled_table, rubin


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
        return table[cols]

    def pool_random(self) -> pd.DataFrame:
        """Random-effect SDs and correlations (and the residual SD for gaussian models):
        ``mean`` over the imputations (the paper's summary) and ``median`` (suggested for
        skewed variance estimates), with the ``min`` and ``max``."""
        rows = [_random_parameters(f) for f in self.fits]
        frame = pd.DataFrame(rows)
        return pd.DataFrame({"mean": frame.mean(), "median": frame.median(),
                             "min": frame.min(), "max": frame.max()})


def _random_parameters(fit: GLMMResult) -> dict[str, float]:
    sd = fit.sd_re
    out = {f"sd({name})": float(v) for name, v in sd.items()}
    corr = fit.corr_re.to_numpy()
    names = list(sd.index)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[f"cor({names[i]},{names[j]})"] = float(corr[i, j])
    if fit.family.name == "gaussian":
        out["sigma"] = float(fit.sigma)
    return out


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


__all__ = ["CompleteCase", "MultipleFits", "analyze_completed", "complete_case"]


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
        return pd.DataFrame({
            "estimate": est, "std_error": se, "df": np.inf, "riv": 0.0, "fmi": 0.0,
            "conf_low": est - z * se, "conf_high": est + z * se,
            "p_value": 2 * stats.norm.sf(np.abs(est / se)),
        }, index=pd.Index(self.fit.x_names, name="term"))

    def pool_random(self) -> pd.DataFrame:
        """Random-effect SDs and correlations of the one fit (mean = median = value)."""
        values = pd.Series(_random_parameters(self.fit))
        return pd.DataFrame({"mean": values, "median": values, "min": values, "max": values})


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
