"""Performance measures of a simulation study, with their Monte Carlo standard errors.

For each scenario × method × parameter over the n replications with an estimate
(Morris, White & Crowther 2019, Stat Med 38:2074, Table 6):

* ``mean`` — mean estimate; ``bias`` = mean − truth, MCSE = emp_se / sqrt(n);
* ``emp_se`` — SD of the estimates, MCSE = emp_se / sqrt(2 (n − 1));
* ``model_se`` — sqrt of the mean squared model SE, MCSE = sqrt(Var(se²) / (4 n model_se²));
* ``rmse`` — sqrt of the mean squared error; MCSE by the delta method from that of the
  MSE, sqrt(sum((e² − MSE)²) / (n (n − 1))) / (2 rmse);
* ``coverage`` — share of 95 % intervals containing the truth (fixed effects only),
  MCSE = sqrt(coverage (1 − coverage) / n).

For omega0 and omega1 (the random-effect SDs; averaged over the imputations) there
is no standard error, so model_se and coverage are empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .design import truth
from .grid import KEYS

MEASURES = ["n", "mean", "bias", "bias_mcse", "rmse", "rmse_mcse", "model_se",
            "model_se_mcse", "emp_se", "emp_se_mcse", "coverage", "coverage_mcse"]


def summarize(results: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Performance measures per scenario × method × parameter (see module docstring).

    ``results``: an output directory of :func:`mlmi.simulation.run` or the DataFrame of
    :func:`mlmi.simulation.load`. Replications where a method failed (no estimate) are
    left out and counted in ``n_failed``.
    """
    if not isinstance(results, pd.DataFrame):
        from .runner import load

        results = load(results)
    rows = []
    group_keys = [*KEYS, "scenario", "method", "parameter"]
    for key, g in results.groupby(group_keys, sort=False, dropna=False):
        rec = dict(zip(group_keys, key, strict=True))
        x1 = g["x1"].iloc[0] if "x1" in g else "binary"
        rec["x1"] = x1 if isinstance(x1, str) else "binary"
        true = truth(rec["heterogeneity"], rec["x1"])[rec["parameter"]]
        est = g["estimate"].to_numpy(dtype=float)
        ok = np.isfinite(est)
        rec.update(_measures(est[ok], g["std_error"].to_numpy(dtype=float)[ok],
                             g["conf_low"].to_numpy(dtype=float)[ok],
                             g["conf_high"].to_numpy(dtype=float)[ok], true))
        rec["truth"] = true
        rec["n_failed"] = int((~ok).sum())
        rec["seconds"] = float(g["seconds"].mean()) if "seconds" in g else np.nan
        rows.append(rec)
    extra = ["x1"] if "x1" in results else []  # the categorical extension's runs
    cols = [*KEYS, *extra, "scenario", "method", "parameter", "truth", *MEASURES,
            "n_failed", "seconds"]
    return pd.DataFrame(rows, columns=cols)


def _measures(est, se, lo, hi, true) -> dict:
    n = est.size
    out = dict.fromkeys(MEASURES, np.nan)
    out["n"] = n
    if n == 0:
        return out
    err = est - true
    out["mean"] = est.mean()
    out["bias"] = err.mean()
    mse = np.mean(err**2)
    out["rmse"] = np.sqrt(mse)
    if n > 1:
        emp = est.std(ddof=1)
        out["emp_se"] = emp
        out["bias_mcse"] = emp / np.sqrt(n)
        out["emp_se_mcse"] = emp / np.sqrt(2 * (n - 1))
        mse_mcse = np.sqrt(np.sum((err**2 - mse) ** 2) / (n * (n - 1)))
        out["rmse_mcse"] = mse_mcse / (2 * out["rmse"]) if out["rmse"] > 0 else np.nan
    if np.all(np.isfinite(se)) and np.isfinite(se).any():
        se2 = se**2
        out["model_se"] = np.sqrt(se2.mean())
        if n > 1:
            out["model_se_mcse"] = np.sqrt(se2.var(ddof=1) / (4 * n * se2.mean()))
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        cover = (lo <= true) & (true <= hi)
        out["coverage"] = cover.mean()
        out["coverage_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / n)
    return out
