"""Bad input and troubled fits (issue item 4).

Bad input raises a precise error that names the argument or column and the offending
value: a binomial response that is not 0/1, negative or non-integer Poisson counts,
unknown columns, missing values in a used column (the caller must subset), fewer than
two clusters, more random effects than the data identify (cf. mice#223) and non-finite
predictors. Non-convergence, singular fits, separation and a rank-deficient fixed design
give warnings that are also recorded in ``result.warnings``.

Every case goes through :func:`mlmi.glmm.fit_glmm` and, where the array-level fast path
sees the same problem, through :func:`mlmi.glmm.fit_arrays`. ``fit_arrays`` records its
warnings in ``result.warnings`` (what the imputation loop counts); ``fit_glmm`` also
emits them.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from mlmi.exceptions import (
    ConvergenceWarning,
    InputError,
    MLMIWarning,
    ModelError,
    RankDeficiencyWarning,
    SeparationWarning,
    SingularFitWarning,
)
from mlmi.glmm import FitWarning, fit_arrays, fit_glmm

KIND = {
    ConvergenceWarning: "convergence",
    SingularFitWarning: "singular",
    SeparationWarning: "separation",
    RankDeficiencyWarning: "rank",
}


# ---------------------------------------------------------------------- data
def _data(family: str = "binomial", k: int = 6, m: int = 20, seed: int = 1) -> pd.DataFrame:
    """k clusters ``S1``..``Sk`` of m rows, a predictor x1 and a random intercept."""
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(k), m)
    x1 = rng.normal(size=k * m)
    eta = -0.2 + 0.8 * x1 + 0.8 * rng.normal(size=k)[st]
    if family == "binomial":
        y = (rng.random(k * m) < 1 / (1 + np.exp(-eta))).astype(int)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = eta + 0.5 * rng.normal(size=k * m)
    return pd.DataFrame({"y": y, "x1": x1, "st": [f"S{i + 1}" for i in st]})


def _arrays(df: pd.DataFrame, slope: bool = False):
    """(y, X, W, groups) of ``y ~ x1 + (1 | st)`` (or ``(1 + x1 | st)``)."""
    X = np.column_stack([np.ones(len(df)), df["x1"].to_numpy(float)])
    W = X.copy() if slope else X[:, :1].copy()
    return np.array(df["y"], dtype=float), X, W, np.array(df["st"])


NAMES = {"x_names": ["(Intercept)", "x1"]}


def _fit_warns(category, match, formula, data, family, **kw):
    """fit_glmm emits ``category`` with a message matching ``match`` and records it in
    result.warnings (same kind, same message)."""
    with warnings.catch_warnings(record=True):  # other warnings, re-emitted by pytest.warns
        warnings.simplefilter("always")
        with pytest.warns(category, match=match) as emitted:
            res = fit_glmm(formula, data, family, **kw)
    _assert_recorded(res, category, match)
    # every mlmi warning that was emitted is also on the result
    recorded = {w.message for w in res.warnings}
    for w in emitted:
        if issubclass(w.category, MLMIWarning):
            assert str(w.message) in recorded
    return res


def _assert_recorded(res, category, match):
    assert all(isinstance(w, FitWarning) for w in res.warnings)
    hits = [w for w in res.warnings if w.kind == KIND[category] and re.search(match, w.message)]
    assert hits, f"no {KIND[category]!r} record matching {match!r} in {res.warnings}"


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLMIWarning)
        return fn(*args, **kw)


# ---------------------------------------------------------------------- response values
@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({5: 2}, r"binomial response 'y' must be 0/1 .*found value\(s\) \[2\.0\]"),
        ({5: -1, 6: 0.5}, r"binomial response 'y' must be 0/1 .*found value\(s\) \[-1\.0, 0\.5\]"),
    ],
)
def test_binomial_response_not_01(values, match):
    df = _data()
    df["y"] = df["y"].astype(float)
    for row, v in values.items():
        df.loc[row, "y"] = v
    with pytest.raises(InputError, match=match):
        fit_glmm("y ~ x1 + (1 | st)", df, "binomial")
    with pytest.raises(InputError, match=match):
        fit_arrays(*_arrays(df), "binomial", **NAMES)


def test_binomial_response_with_three_levels():
    df = _data()
    df["y"] = np.where(df["y"] == 1, "yes", "no")
    df.loc[3, "y"] = "maybe"
    with pytest.raises(InputError, match=r"binomial response 'y' must have two levels; found "
                                         r"3: \['maybe', 'no', 'yes'\]"):
        fit_glmm("y ~ x1 + (1 | st)", df, "binomial")


def test_poisson_negative_count():
    df = _data("poisson")
    df.loc[4, "y"] = -2
    match = (r"poisson response 'y' must be a non-negative count; "
             r"found negative value\(s\) \[-2\.0\]")
    with pytest.raises(InputError, match=match):
        fit_glmm("y ~ x1 + (1 | st)", df, "poisson")
    with pytest.raises(InputError, match=match):
        fit_arrays(*_arrays(df), "poisson", **NAMES)


def test_poisson_non_integer_count():
    df = _data("poisson")
    df["y"] = df["y"].astype(float)
    df.loc[4, "y"] = 2.5
    match = r"poisson response 'y' must be integer counts; found non-integer value\(s\) \[2\.5\]"
    with pytest.raises(InputError, match=match):
        fit_glmm("y ~ x1 + (1 | st)", df, "poisson")
    with pytest.raises(InputError, match=match):
        fit_arrays(*_arrays(df), "poisson", **NAMES)


def test_non_numeric_response_for_gaussian():
    df = _data("gaussian").assign(y=lambda d: np.where(d["y"] > 0, "hi", "lo"))
    with pytest.raises(InputError, match=r"response 'y' is not numeric"):
        fit_glmm("y ~ x1 + (1 | st)", df)


# ---------------------------------------------------------------------- columns
@pytest.mark.parametrize(
    ("formula", "missing"),
    [
        ("y ~ x1 + x9 + (1 | st)", "['x9']"),
        ("outcome ~ x1 + (1 | st)", "['outcome']"),
        ("y ~ x1 + (1 + z | st)", "['z']"),
        ("y ~ x1 + (1 | site)", "['site']"),
        ("y ~ a:x1 + (1 | site)", "['a', 'site']"),
    ],
)
def test_unknown_columns(formula, missing):
    with pytest.raises(InputError, match=re.escape(f"uses column(s) {missing} that are not in "
                                                   "data")):
        fit_glmm(formula, _data(), "binomial")


@pytest.mark.parametrize(("col", "row"), [("y", 3), ("x1", 17), ("st", 40)])
def test_missing_value_in_used_column(col, row):
    df = _data("gaussian")
    df.loc[row, col] = np.nan if col != "st" else None
    with pytest.raises(InputError, match=rf"column '{col}' has 1 missing value\(s\) \(first at "
                                         rf"row {row}\).*the caller must subset"):
        fit_glmm("y ~ x1 + (1 | st)", df)


def test_missing_value_in_unused_column_is_fine():
    df = _data("gaussian").assign(unused=np.nan)
    res = fit_glmm("y ~ x1 + (1 | st)", df)
    assert res.n_obs == len(df)


def test_missing_values_in_arrays():
    df = _data("gaussian")
    y, X, W, g = _arrays(df)
    X[7, 1] = np.nan
    with pytest.raises(InputError, match=r"fixed-effects design column 'x1' has 1 non-finite "
                                         r"value\(s\) \['nan'\] \(first in row 7\).*must subset"):
        fit_arrays(y, X, W, g, "gaussian", **NAMES)
    y, X, W, g = _arrays(df)
    y[[2, 9]] = np.nan
    with pytest.raises(InputError, match=r"response 'y' has 2 missing or non-finite value\(s\) "
                                         r"\['nan'\].*must subset"):
        fit_arrays(y, X, W, g, "gaussian", **NAMES)
    y, X, W, g = _arrays(df)
    g = g.astype(object)
    g[5] = None
    with pytest.raises(InputError, match=r"cluster identifier 'groups' has 1 missing value\(s\) "
                                         r"\(first in row 5\)"):
        fit_arrays(y, X, W, g, "gaussian", **NAMES)


@pytest.mark.parametrize(("value", "shown"), [(np.inf, "[inf]"), (-np.inf, "[-inf]")])
def test_non_finite_predictor(value, shown):
    df = _data()
    df.loc[11, "x1"] = value
    with pytest.raises(InputError, match=re.escape(f"column 'x1' has 1 infinite value(s) {shown} "
                                                   "(first at row 11)")):
        fit_glmm("y ~ x1 + (1 | st)", df, "binomial")
    y, X, W, g = _arrays(df, slope=True)
    with pytest.raises(InputError, match=re.escape(
            f"fixed-effects design column 'x1' has 1 non-finite value(s) ['{shown[1:-1]}'] "
            "(first in row 11)")):
        fit_arrays(y, X, W, g, "binomial", **NAMES)
    X[11, 1] = 0.0  # only the random-effects design is bad now
    with pytest.raises(InputError, match=r"random-effects design column 'x1' has 1 non-finite"):
        fit_arrays(y, X, W, g, "binomial", x_names=["(Intercept)", "x1"],
                   w_names=["(Intercept)", "x1"])


def test_non_finite_gaussian_response():
    df = _data("gaussian")
    df.loc[0, "y"] = np.inf
    with pytest.raises(InputError, match=r"column 'y' has 1 infinite value\(s\) \[inf\]"):
        fit_glmm("y ~ x1 + (1 | st)", df)


# ---------------------------------------------------------------------- identifiability
def test_fewer_than_two_clusters():
    df = _data().assign(st="S1")
    with pytest.raises(ModelError, match=r"grouping factor 'st' has 1 level\(s\) \['S1'\]; a "
                                         r"two-level model needs at least 2 clusters"):
        fit_glmm("y ~ x1 + (1 | st)", df, "binomial")
    with pytest.raises(ModelError, match=r"grouping factor 'groups' has 1 level\(s\) \['S1'\]"):
        fit_arrays(*_arrays(df), "binomial", **NAMES)


def test_more_random_effects_than_observations():
    """mice#223: lme4 stops with 'number of observations (=n) <= number of random effects
    (=k*q) for term (1 + ... | id)'; so do we, naming the term."""
    df = _data("gaussian", k=15, m=2)
    match = (r"number of observations \(n = 30\) <= number of random effects "
             r"\(k \* q = 15 \* 2 = 30\) for the term \(1 \+ x1 \| st\)")
    with pytest.raises(ModelError, match=match):
        fit_glmm("y ~ x1 + (1 + x1 | st)", df)
    with pytest.raises(ModelError, match=match.replace("st", "groups")):
        fit_arrays(*_arrays(df, slope=True), "gaussian", x_names=["(Intercept)", "x1"],
                   w_names=["(Intercept)", "x1"])


def test_random_slope_constant_within_clusters():
    df = _data().assign(z=lambda d: d["st"].str[1:].astype(float))  # a cluster-level variable
    with pytest.raises(ModelError, match=r"random slope for 'z': the predictor is constant "
                                         r"within every cluster of 'st'"):
        fit_glmm("y ~ x1 + z + (1 + z | st)", df, "binomial")


def test_rank_deficient_random_effects_design():
    df = _data().assign(x2=lambda d: 2 * d["x1"])
    with pytest.raises(ModelError, match=r"random-effects design of \(1 \+ x1 \+ x2 \| st\) "
                                         r"\(columns \(Intercept\), x1, x2\) is rank deficient"):
        fit_glmm("y ~ x1 + (1 + x1 + x2 | st)", df, "binomial")


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"family": "gamma"}, InputError, r"family='gamma' is not supported"),
        ({"nagq": 0}, InputError, r"nagq=0 must be a positive integer"),
        ({"vcov": "sandwich"}, InputError, r"vcov='sandwich'"),
        ({"reml": True}, InputError, r"reml=True is only defined for the gaussian family, "
                                     r"not 'binomial'"),
        ({"maxiter": 0}, InputError, r"maxiter=0 must be a positive integer"),
        ({"start": [0.1, 0.2]}, InputError, r"start must be a GLMMResult, a Start or a dict, "
                                            r"not list"),
        ({"start": {"beta": [0, 1], "sigma": 1}}, InputError,
         r"start has unknown key\(s\) \['sigma'\]"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kw = {"family": "binomial", **kwargs}
    with pytest.raises(error, match=match):
        fit_glmm("y ~ x1 + (1 | st)", _data(), **kw)


def test_data_must_be_a_data_frame():
    with pytest.raises(InputError, match=r"data must be a pandas DataFrame, not dict"):
        fit_glmm("y ~ x1 + (1 | st)", _data().to_dict("list"), "binomial")


def test_arrays_of_different_lengths():
    y, X, W, g = _arrays(_data())
    with pytest.raises(InputError, match=r"same number of rows; got 119, 120, 120 and 120"):
        fit_arrays(y[:-1], X, W, g, "binomial")


# ---------------------------------------------------------------------- warnings
def test_non_convergence_gaussian():
    df = _data("gaussian", seed=3)
    match = r"model failed to converge: max\|gradient\| = .* after 1 iterations"
    res = _fit_warns(ConvergenceWarning, match, "y ~ x1 + (1 | st)", df, "gaussian", maxiter=1)
    assert not res.converged
    assert res.n_iter == 1
    assert fit_glmm("y ~ x1 + (1 | st)", df).converged  # the default limit is enough


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_non_convergence_glmm(family):
    df = _data(family, seed=3)
    # (a singular stop may be retried from the interior, with maxiter iterations more)
    match = r"model failed to converge: max\|gradient\| = .* after \d+ iterations"
    res = _fit_warns(ConvergenceWarning, match, "y ~ x1 + (1 + x1 | st)", df, family, maxiter=2)
    assert not res.converged
    res = _quiet(fit_arrays, *_arrays(df, slope=True), family, maxiter=2, **NAMES)
    assert not res.converged
    _assert_recorded(res, ConvergenceWarning, match)


def _no_cluster_variation(family: str) -> pd.DataFrame:
    """Identical clusters: the ML estimate of the random-intercept variance is 0."""
    rng = np.random.default_rng(7)
    k, m = 6, 20
    x1 = np.tile(rng.normal(size=m), k)
    if family == "binomial":
        y = np.tile((rng.random(m) < 0.5).astype(float), k)
    else:
        y = np.tile(1 + 0.5 * x1[:m] + rng.normal(size=m), k)
    return pd.DataFrame({"y": y, "x1": x1, "st": np.repeat(np.arange(k), m)})


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_singular_fit(family):
    df = _no_cluster_variation(family)
    match = r"boundary \(singular\) fit"
    res = _fit_warns(SingularFitWarning, match, "y ~ x1 + (1 | st)", df, family)
    assert res.singular
    assert res.cov_re.iloc[0, 0] == pytest.approx(0.0, abs=1e-8)
    res = fit_arrays(*_arrays(df), family, **NAMES)
    assert res.singular
    _assert_recorded(res, SingularFitWarning, match)


def test_separation_within_a_cluster():
    """(a) A cluster whose binary response is all 0: its random intercept is identified
    only by the prior; the warning names the cluster."""
    df = _data(k=6, m=20, seed=2)
    df.loc[df["st"] == "S4", "y"] = 0
    assert df.groupby("st")["y"].nunique().eq(1).sum() == 1
    match = r"within-cluster separation: the response is constant in 1 cluster\(s\): S4 \(all 0\)"
    res = _fit_warns(SeparationWarning, match, "y ~ x1 + (1 | st)", df, "binomial")
    assert res.ranef.loc["S4", "(Intercept)"] < 0
    res = fit_arrays(*_arrays(df), "binomial", **NAMES)
    _assert_recorded(res, SeparationWarning, match)


def test_separation_by_a_random_slope_within_a_cluster():
    df = _data(k=6, m=20, seed=2)
    s2 = df["st"] == "S2"
    df.loc[s2, "y"] = (df.loc[s2, "x1"] > 0).astype(int)
    match = r"within-cluster separation: 'x1' perfectly separates the response in 1 " \
            r"cluster\(s\): S2"
    _fit_warns(SeparationWarning, match, "y ~ x1 + (1 + x1 | st)", df, "binomial")


def test_complete_separation_overall():
    """(b) A predictor that separates y overall: fitted probabilities 0 or 1."""
    df = _data(k=6, m=20, seed=2)
    df["y"] = (df["x1"] > 0).astype(int)
    match = r"fitted probabilities numerically 0 or 1 occurred in \d+ row\(s\)"
    res = _fit_warns(SeparationWarning, match, "y ~ x1 + (1 | st)", df, "binomial")
    assert res.fixef["x1"] > 10  # diverging towards infinity
    res = _quiet(fit_arrays, *_arrays(df), "binomial", **NAMES)
    _assert_recorded(res, SeparationWarning, match)


def test_rank_deficient_fixed_design_drops_the_column():
    """As lme4: 'fixed-effect model matrix is rank deficient so dropping 1 column'; the
    later of two collinear columns goes, and the fit is the fit without it."""
    df = _data("gaussian", seed=4).assign(x2=lambda d: 2 * d["x1"])
    match = r"rank deficient so dropping 1 column\(s\): x2"
    res = _fit_warns(RankDeficiencyWarning, match, "y ~ x1 + x2 + (1 | st)", df, "gaussian")
    assert list(res.fixef.index) == ["(Intercept)", "x1"]
    assert list(res.vcov.index) == ["(Intercept)", "x1"]
    assert res.dropped == ["x2"]
    ref = fit_glmm("y ~ x1 + (1 | st)", df)
    np.testing.assert_allclose(res.beta, ref.beta, rtol=1e-10)
    assert res.loglik == pytest.approx(ref.loglik, rel=1e-12)
    # prediction still works from data that has the dropped column
    np.testing.assert_allclose(res.predict(df), ref.predict(df), rtol=1e-10)
    y, X, W, g = _arrays(df)
    res = fit_arrays(y, np.column_stack([X, 2 * X[:, 1]]), W, g, "gaussian",
                     x_names=["(Intercept)", "x1", "x2"])
    assert res.x_names == ["(Intercept)", "x1"]
    _assert_recorded(res, RankDeficiencyWarning, match)


def test_rank_deficient_binomial_design():
    df = _data(seed=4).assign(x2=lambda d: d["x1"] + 1.0)  # collinear with the intercept
    res = _fit_warns(RankDeficiencyWarning, r"dropping 1 column\(s\): x2",
                     "y ~ x1 + x2 + (1 | st)", df, "binomial")
    assert list(res.fixef.index) == ["(Intercept)", "x1"]
