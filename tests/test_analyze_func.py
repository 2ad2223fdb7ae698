"""imputed.analyze(func): any analysis model pooled by Rubin's rules.

The pooled numbers are checked against Rubin's rules computed by hand from the m
estimates and covariances (Rubin 1987, eqs. 3.1.2-3.1.5) and against mlmi.pool.rubin;
statsmodels and lifelines are optional test dependencies (the tests using them skip
without them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.analysis import analyze_function
from mlmi.exceptions import InputError
from mlmi.simulation import ampute, generate


@pytest.fixture(scope="module")
def imputed() -> mlmi.Imputed:
    rng = np.random.default_rng(5)
    data = ampute(generate("binary", "moderate", 8, rng, n_total=480), 0.1, "mar", rng)
    return mlmi.impute(data, "st", m=4, maxit=2, seed=2)


def _ols(frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, int]:
    """OLS of y on x1, x2 with study fixed effects: estimates, covariance, residual df."""
    X = pd.get_dummies(frame["st"], prefix="st", dtype=float)
    X["x1"], X["x2"] = frame["x1"], frame["x2"]
    xm = X.to_numpy(dtype=float)
    y = frame["y"].to_numpy(dtype=float)
    beta, *_ = np.linalg.lstsq(xm, y, rcond=None)
    resid = y - xm @ beta
    df = xm.shape[0] - xm.shape[1]
    cov = (resid @ resid / df) * np.linalg.inv(xm.T @ xm)
    return (pd.Series(beta, index=X.columns), pd.DataFrame(cov, X.columns, X.columns), df)


def test_pair_pooled_by_rubins_rules(imputed):
    fits = imputed.analyze(lambda d: _ols(d)[:2], dfcom=400)
    pooled = fits.pool()
    est = np.array([_ols(imputed.complete(i))[0]["x1"] for i in range(1, 5)])
    var = np.array([_ols(imputed.complete(i))[1].loc["x1", "x1"] for i in range(1, 5)])
    qbar, ubar, b = est.mean(), var.mean(), est.var(ddof=1)
    t = ubar + (1 + 1 / 4) * b
    assert pooled.loc["x1", "estimate"] == pytest.approx(qbar, rel=1e-12)
    assert pooled.loc["x1", "std_error"] == pytest.approx(np.sqrt(t), rel=1e-12)
    lam = (1 + 1 / 4) * b / t
    df_old = 3 / lam**2
    df_obs = (401 / 403) * 400 * (1 - lam)
    assert pooled.loc["x1", "df"] == pytest.approx(df_old * df_obs / (df_old + df_obs),
                                                   rel=1e-10)
    assert fits.m == 4 and list(fits.estimates().columns) == list(pooled.index)


def test_numpy_pair_and_variance_vector(imputed):
    def func(d):
        est, cov, _ = _ols(d)
        return est.to_numpy(), np.diag(cov.to_numpy())  # plain arrays, variances only
    pooled = imputed.analyze(func).pool()
    ref = imputed.analyze(lambda d: _ols(d)[:2]).pool()
    np.testing.assert_allclose(pooled["estimate"].to_numpy(), ref["estimate"].to_numpy())
    np.testing.assert_allclose(pooled["std_error"].to_numpy(), ref["std_error"].to_numpy())
    assert pooled.index[0] == "b0"
    assert np.isinf(imputed.analyze(func).dfcom or np.inf)  # no df given: infinite


def test_statsmodels_result_takes_df_resid(imputed):
    sm = pytest.importorskip("statsmodels.formula.api")
    fits = imputed.analyze(lambda d: sm.logit("y ~ x1 + x2 + C(st)", d).fit(disp=0))
    pooled = fits.pool()
    res = [sm.logit("y ~ x1 + x2 + C(st)", imputed.complete(i)).fit(disp=0)
           for i in range(1, 5)]
    assert fits.dfcom == pytest.approx(res[0].df_resid)
    est = np.array([r.params["x1"] for r in res])
    var = np.array([r.cov_params().loc["x1", "x1"] for r in res])
    t = var.mean() + 1.25 * est.var(ddof=1)
    assert pooled.loc["x1", "estimate"] == pytest.approx(est.mean(), rel=1e-12)
    assert pooled.loc["x1", "std_error"] == pytest.approx(np.sqrt(t), rel=1e-12)
    explicit = imputed.analyze(lambda d: sm.logit("y ~ x1 + x2", d).fit(disp=0), dfcom=50)
    assert explicit.dfcom == 50 and explicit.pool()["df"].max() <= 50


def test_lifelines_cox(imputed):
    lifelines = pytest.importorskip("lifelines")

    def cox(d):
        rng = np.random.default_rng(0)  # the same survival times in every imputation
        times = rng.exponential(1.0, len(d)) * np.exp(-0.5 * d["x1"].to_numpy())
        frame = pd.DataFrame({"t": times, "e": 1, "x1": d["x1"], "x2": d["x2"]})
        return lifelines.CoxPHFitter().fit(frame, "t", "e")
    fits = imputed.analyze(cox)
    pooled = fits.pool()
    assert list(pooled.index) == ["x1", "x2"] and fits.dfcom is None  # large-sample
    res = [cox(imputed.complete(i)) for i in range(1, 5)]
    est = np.array([r.params_["x1"] for r in res])
    var = np.array([r.variance_matrix_.loc["x1", "x1"] for r in res])
    assert pooled.loc["x1", "estimate"] == pytest.approx(est.mean(), rel=1e-12)
    assert pooled.loc["x1", "std_error"] == pytest.approx(
        np.sqrt(var.mean() + 1.25 * est.var(ddof=1)), rel=1e-12)


def test_bad_returns_named(imputed):
    with pytest.raises(InputError, match="returned int for imputation 1"):
        imputed.analyze(lambda d: 3)
    with pytest.raises(InputError, match="covariance of shape"):
        imputed.analyze(lambda d: (np.zeros(2), np.eye(3)))
    calls = iter(range(10))

    def changing(d):
        k = 2 + next(calls)
        return pd.Series(np.zeros(k), index=[f"p{j}" for j in range(k)]), np.eye(k)
    with pytest.raises(InputError, match="same parameters"):
        imputed.analyze(changing)
    with pytest.raises(InputError, match="dfcom"):
        analyze_function([imputed.complete(1)], lambda d: (np.zeros(1), np.eye(1)), dfcom=-1)
    with pytest.raises(InputError, match="dfcom"):
        imputed.analyze("y ~ x1 + (1 | st)", "binomial", dfcom=10)


def test_formula_path_unchanged(imputed):
    fits = imputed.analyze("y ~ x1 + x2 + (1 | st)", "binomial")
    assert isinstance(fits, mlmi.MultipleFits)
    assert list(fits.pool().index) == ["(Intercept)", "x1", "x2"]
