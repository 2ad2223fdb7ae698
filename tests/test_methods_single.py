"""Single-level methods (logreg, pmm, norm) and the stratified strategy (STI).

Statistical checks use fixed seeds; each tolerance is stated next to it as a number of
Monte Carlo standard errors (se), estimated from the draws themselves or from theory.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

import helpers
import mlmi
from mlmi.exceptions import InputError
from mlmi.glm import fit_glm
from mlmi.methods import SPORADIC, STRATEGIES, SYSTEMATIC, Problem, get_method
from mlmi.methods import logreg as logreg_module
from mlmi.methods._single import build_design, draw_linear
from mlmi.methods.logreg import augment, fit_logistic
from mlmi.methods.pmm import match_donors, pmm_step
from mlmi.simulation import ampute, generate


def make_problem(y, x, cluster, ry, *, vtype="continuous", role=1, seed=0) -> Problem:
    """A univariate step as the driver builds it (status from ``ry``)."""
    return helpers.make_problem(y, x, cluster, ry, vtype, seed=seed, cluster_role=role)


def ols(X, y):
    return np.linalg.lstsq(X, y, rcond=None)[0]


# --------------------------------------------------------- (a) the intercept rule
#: study sizes and intercepts; the last study is systematically missing and its true
#: intercept (10) is far from the average (1.5) and the pooled intercept (~2.3)
SIZES = np.array([20, 40, 80, 160, 50])
INTERCEPTS = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
SLOPE = 0.5


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(101)
    cluster = np.repeat(np.arange(5), SIZES)
    x = rng.standard_normal(cluster.size)
    y = INTERCEPTS[cluster] + SLOPE * x + 0.1 * rng.standard_normal(cluster.size)
    ry = cluster != 4
    ry[np.flatnonzero(cluster == 0)[:5]] = False  # sporadic in study 1
    return y, x, cluster, ry


def test_design_expand_uses_average_of_estimated_intercepts(linear_data):
    y, x, cluster, ry = linear_data
    design = build_design(make_problem(y, x, cluster, ry))
    assert design.names == ["study[1]", "study[2]", "study[3]", "study[4]", "study[5]", "x1"]
    np.testing.assert_array_equal(design.averaged, [4])
    np.testing.assert_array_equal(design.fit_cols, [0, 1, 2, 3, 5])
    full = design.expand(np.array([0.1, 1.2, 2.3, 2.9, 0.7]))
    np.testing.assert_allclose(full, [0.1, 1.2, 2.3, 2.9, (0.1 + 1.2 + 2.3 + 2.9) / 4, 0.7],
                               rtol=0, atol=1e-15)
    assert design.info() == {"n_sporadic": 1, "n_systematic": 1}
    # the study is ignored: [1, x], nothing averaged
    plain = build_design(make_problem(y, x, cluster, ry, role=0))
    assert plain.names == ["(Intercept)", "x1"] and plain.averaged.size == 0


def _mean_deviation(problem, expected, calls):
    """Per call, the mean over the rows of (imputed - expected); their mean and se."""
    method = get_method("norm").func
    dev = np.array([np.mean(method(problem).values - expected) for _ in range(calls)])
    return dev.mean(), dev.std(ddof=1) / np.sqrt(calls)


@pytest.mark.parametrize("role", [1, 0])
def test_norm_systematic_study_intercept(linear_data, role):
    """Imputations of the systematically missing study are centred at the average of
    the estimated study intercepts + slope * x (role 1), or at the pooled intercept +
    slope * x (role 0). Tolerance: 4 Monte Carlo se of the mean over 2000 calls."""
    y, x, cluster, ry = linear_data
    problem = make_problem(y, x, cluster, ry, role=role, seed=7)
    miss = ~ry
    if role == 1:
        D = (cluster[:, None] == np.arange(4)).astype(float)
        beta = ols(np.column_stack([D, x])[ry], y[ry])
        intercept = np.where(cluster == 4, beta[:4].mean(), beta[:4][np.minimum(cluster, 3)])
        expected = intercept + beta[4] * x
        assert abs(beta[:4].mean() - 1.5) < 0.1  # the rule, not the true 10 ...
        pooled = ols(np.column_stack([np.ones(ry.sum()), x[ry]]), y[ry])[0]
        assert abs(pooled - beta[:4].mean()) > 0.5  # ... and not the pooled intercept
    else:
        beta = ols(np.column_stack([np.ones(ry.sum()), x[ry]]), y[ry])
        expected = beta[0] + beta[1] * x
    sys_rows = cluster[miss] == 4
    mean, se = _mean_deviation(problem, expected[miss], 2000)
    assert abs(mean) < 4 * se
    # the systematic study alone
    method = get_method("norm").func
    problem = make_problem(y, x, cluster, ry, role=role, seed=8)
    dev = np.array([np.mean((method(problem).values - expected[miss])[sys_rows])
                    for _ in range(2000)])
    assert abs(dev.mean()) < 4 * dev.std(ddof=1) / np.sqrt(dev.size)


def test_logreg_systematic_study_gets_average_intercept():
    """Binary: imputed prevalence in a systematically missing study matches
    expit(average MLE study intercept + slope * x). Tolerance: 4 Monte Carlo se plus
    0.005 for the augmentation and the curvature of expit over the beta* draws
    (both O(1/n) here)."""
    rng = np.random.default_rng(5)
    sizes, a = np.array([500, 1000, 3000, 200]), np.array([-1.0, 0.0, 1.0, 3.0])
    cluster = np.repeat(np.arange(4), sizes)
    x = rng.standard_normal(cluster.size)
    z = rng.binomial(1, expit(a[cluster] + 0.5 * x)).astype(float)
    ry = cluster != 3
    problem = make_problem(z, x, cluster, ry, vtype="binary", seed=9)
    D = (cluster[:, None] == np.arange(3)).astype(float)
    mle = _logistic_mle(np.column_stack([D, x])[ry], z[ry])
    p_expected = expit(mle[:3].mean() + mle[3] * x[~ry])
    assert abs(p_expected.mean() - expit(3 + 0.5 * x[~ry]).mean()) > 0.3  # discriminates
    method = get_method("logreg").func
    dev = np.array([np.mean(method(problem).values - p_expected) for _ in range(400)])
    assert abs(dev.mean()) < 4 * dev.std(ddof=1) / np.sqrt(dev.size) + 0.005


# ------------------------------------------------------------------ (b) norm draws
@pytest.fixture(scope="module")
def small_linear():
    rng = np.random.default_rng(21)
    n = 40
    X = np.column_stack([np.ones(n), rng.standard_normal(n), rng.binomial(1, 0.5, n)])
    y = X @ np.array([1.0, -0.5, 2.0]) + rng.standard_normal(n)
    return X, y


def test_norm_draw_matches_posterior(small_linear):
    """beta*, sigma* against the posterior of the normal linear model with a flat prior:
    sigma^2 ~ SSR / chi2(df), beta | sigma ~ N(beta_hat, sigma^2 (X'X)^{-1}), so
    E sigma*^2 = SSR/(df-2), Var sigma*^2 = 2 SSR^2/((df-2)^2 (df-4)), E beta* = beta_hat,
    Cov beta* = SSR/(df-2) (X'X)^{-1}. 20000 draws; means within 4 se, covariances
    within 5 se (normal-theory se of a sample covariance, x 1.2 for the t tails)."""
    X, y = small_linear
    n, p = X.shape
    df = n - p
    beta_hat = ols(X, y)
    ssr = float(np.sum((y - X @ beta_hat) ** 2))
    rng = np.random.default_rng(3)
    N = 20000
    draws = [draw_linear(X, y, rng) for _ in range(N)]
    np.testing.assert_allclose(draws[0].beta_hat, beta_hat, rtol=1e-10)
    assert draws[0].df == df and not draws[0].ridge
    assert draws[0].sigma_hat == pytest.approx(np.sqrt(ssr / df), rel=1e-12)
    s2 = np.array([d.sigma_star**2 for d in draws])
    mean_s2 = ssr / (df - 2)
    assert abs(s2.mean() - mean_s2) < 4 * np.sqrt(2 * ssr**2 / ((df - 2) ** 2 * (df - 4)) / N)
    # 1 / sigma*^2 = chi2(df) / SSR exactly in distribution: mean df / SSR, var 2 df / SSR^2
    assert abs(np.mean(1 / s2) - df / ssr) < 4 * np.sqrt(2 * df / ssr**2 / N)
    B = np.array([d.beta_star for d in draws])
    cov = mean_s2 * np.linalg.inv(X.T @ X)
    assert np.all(np.abs(B.mean(axis=0) - beta_hat) < 4 * np.sqrt(np.diag(cov) / N))
    se = 1.2 * np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N)
    assert np.all(np.abs(np.cov(B.T) - cov) < 5 * se)


def test_norm_imputations_predictive_distribution(small_linear):
    """An imputed value at row x0 has mean x0'beta_hat and variance
    E sigma*^2 (1 + x0'(X'X)^{-1} x0). 20000 calls; mean within 4 se, variance within
    5 se (se of a sample variance, x 1.2 for the tails)."""
    X, y = small_linear
    n = X.shape[0]
    ry = np.ones(n + 1, dtype=bool)
    ry[-1] = False
    x0 = np.array([0.3, 1.0])
    x = np.vstack([X[:, 1:], x0])
    problem = make_problem(np.append(y, 0.0), x, np.zeros(n + 1, dtype=np.int64), ry,
                           role=0, seed=4)
    method = get_method("norm").func
    N = 20000
    v = np.array([method(problem).values[0] for _ in range(N)])
    beta_hat = ols(X, y)
    df = n - 3
    ssr = float(np.sum((y - X @ beta_hat) ** 2))
    xr = np.append(1.0, x0)
    var = ssr / (df - 2) * (1 + xr @ np.linalg.solve(X.T @ X, xr))
    assert abs(v.mean() - xr @ beta_hat) < 4 * np.sqrt(var / N)
    assert abs(v.var(ddof=1) - var) < 5 * 1.2 * var * np.sqrt(2 / N)


@pytest.mark.parametrize("name", ["norm", "pmm", "logreg"])
def test_collinear_predictor_gets_coefficient_zero(name):
    """A predictor that is a linear combination of earlier columns on the observed rows
    (here 2 * x1; and x3, constant within studies, is aliased with the study indicators)
    is dropped with coefficient 0 and reported; the fit and the draws stay finite and
    separation is not mistaken for it."""
    rng = np.random.default_rng(2)
    n = 300
    cluster = np.repeat(np.arange(3), n // 3)
    x1 = rng.standard_normal(n)
    x = np.column_stack([x1, 2 * x1, np.array([0.5, 1.0, 3.0])[cluster]])
    z = rng.binomial(1, expit(0.5 * x1)).astype(float)
    ry = rng.random(n) > 0.2
    problem = make_problem(z, x, cluster, ry, vtype="binary")
    design = build_design(problem)
    assert [design.names[j] for j in design.fit_cols] == ["study[1]", "study[2]", "study[3]",
                                                           "x1"]
    draw = get_method(name).func(problem)
    assert any("[collinear] ['x2', 'x3']" in w for w in draw.info["fit_warnings"])
    assert draw.info["ridge"] is False and np.all(np.isfinite(draw.values))
    if name == "logreg":
        assert draw.info["separated"] is False


def test_draw_linear_ridge_fallback_for_singular_cross_product():
    """Called directly with a singular X'X, the linear draw adds mice's ridge
    kappa * diag(X'X), kappa = 1e-5, and says so."""
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal(50)
    X = np.column_stack([np.ones(50), x1, 2 * x1])
    y = x1 + rng.standard_normal(50)
    fit = draw_linear(X, y, rng)
    assert fit.ridge and np.all(np.isfinite(fit.beta_star))
    xtx = X.T @ X
    penalised = np.linalg.solve(xtx + 1e-5 * np.diag(np.diag(xtx)), X.T @ y)
    np.testing.assert_allclose(fit.beta_hat, penalised, rtol=1e-6)


# ---------------------------------------------------------------- (c) logreg draws
def _logistic_mle(X, y):
    """Independent maximum likelihood fit (BFGS on the log-likelihood)."""
    def nll(b):
        eta = X @ b
        return -np.sum(y * eta - np.logaddexp(0, eta))

    def grad(b):
        return -X.T @ (y - expit(X @ b))

    res = minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS",
                   options={"gtol": 1e-10, "maxiter": 1000})
    return res.x


def test_logreg_beta_star_centred_at_mle_with_fisher_covariance(monkeypatch):
    """beta* over 3000 calls: mean = MLE within 4 se + 0.05 SE(MLE) (the augmentation's
    pseudo-rows weigh 3 of 1000 rows), covariance = inverse Fisher information at the
    MLE within 5 se (normal-theory se of a sample covariance) + 2 % of SD_i SD_j
    (augmentation)."""
    rng = np.random.default_rng(8)
    n = 1000
    x = np.column_stack([rng.standard_normal(n), rng.binomial(1, 0.4, n)])
    z = rng.binomial(1, expit(-0.3 + 0.8 * x[:, 0] - 0.6 * x[:, 1])).astype(float)
    ry = rng.random(n) > 0.1
    problem = make_problem(z, x, np.zeros(n, dtype=np.int64), ry, vtype="binary", role=0,
                           seed=12)
    X = np.column_stack([np.ones(n), x])[ry]
    mle = _logistic_mle(X, z[ry])
    mu = expit(X @ mle)
    fisher_inv = np.linalg.inv(X.T @ (X * (mu * (1 - mu))[:, None]))
    sd = np.sqrt(np.diag(fisher_inv))

    fit = fit_logistic(build_design(problem), z[ry])
    assert not fit.separated and fit.converged and not fit.ridge
    assert np.all(np.abs(fit.beta - mle) < 0.05 * sd)
    scale = np.outer(sd, sd)  # relative to SD_i SD_j (an off-diagonal may be near 0)
    assert np.all(np.abs(fit.cov - fisher_inv) < 0.02 * scale)

    drawn = []
    real = logreg_module.draw_normal

    def spy(mean, cov, rng):
        out = real(mean, cov, rng)
        drawn.append(out)
        return out

    monkeypatch.setattr(logreg_module, "draw_normal", spy)
    method = get_method("logreg").func
    N = 3000
    for _ in range(N):
        values = method(problem).values
        assert set(np.unique(values)) <= {0.0, 1.0}
    B = np.array(drawn)
    assert B.shape == (N, 3)
    assert np.all(np.abs(B.mean(axis=0) - mle) < 4 * sd / np.sqrt(N) + 0.05 * sd)
    se = np.sqrt((np.outer(sd**2, sd**2) + fisher_inv**2) / N)
    assert np.all(np.abs(np.cov(B.T) - fisher_inv) < 5 * se + 0.02 * scale)


def test_augment_rows_as_white_daniel_royston():
    """4 pseudo-rows per non-constant column: the column at mean ± SD/2 (clipped to its
    range), the others at their means, z = 0, 0, 1, 1; total weight = coefficients."""
    x_ref = np.array([[1, 0, 1.0], [1, 1, 3.0], [1, 1, 8.0], [1, 0, 0.0]])
    xa, ya, wa = augment(x_ref, 3)
    mean, sd = x_ref.mean(axis=0), x_ref.std(axis=0, ddof=1)
    assert xa.shape == (8, 3)  # the constant column (intercept) is not augmented
    np.testing.assert_array_equal(ya, [0, 0, 1, 1, 0, 0, 1, 1])
    np.testing.assert_allclose(wa, 3 / 8)
    np.testing.assert_allclose(xa[:, 0], 1.0)
    np.testing.assert_allclose(xa[:4, 1], np.clip(mean[1] + np.array([.5, -.5, .5, -.5]) * sd[1],
                                                  0, 1))
    np.testing.assert_allclose(xa[:4, 2], mean[2])
    np.testing.assert_allclose(xa[4:, 2], mean[2] + np.array([.5, -.5, .5, -.5]) * sd[2])


@pytest.mark.parametrize("kind", ["study", "predictor"])
def test_logreg_separation_is_handled_and_counted(kind):
    """A study whose observed values are all 1 (its indicator separates) or a predictor
    that separates completely: the unaugmented MLE diverges, the augmented fit stays
    finite, the draws are 0/1, and ``separated`` is reported."""
    rng = np.random.default_rng(30)
    n = 600
    cluster = np.repeat(np.arange(6), n // 6)
    x = rng.standard_normal(n)
    z = rng.binomial(1, expit(0.2 + 0.5 * x)).astype(float)
    if kind == "study":
        z[cluster == 2] = 1.0
    else:
        z = (x > 0).astype(float)
    ry = rng.random(n) > 0.2
    ry[cluster == 5] = False  # and a systematically missing study
    problem = make_problem(z, x, cluster, ry, vtype="binary", seed=1)
    design = build_design(problem)
    plain = fit_glm(z[ry], design.x_obs, "binomial")
    assert plain.separated and np.max(np.abs(plain.beta)) > 8  # the MLE runs away
    fit = fit_logistic(design, z[ry])
    assert fit.separated and fit.converged
    assert np.all(np.isfinite(fit.beta)) and np.max(np.abs(fit.beta)) < np.max(np.abs(plain.beta))
    draw = get_method("logreg").func(problem)
    assert draw.info["separated"] is True
    assert draw.info["n_systematic"] == 1
    assert set(np.unique(draw.values)) <= {0.0, 1.0}
    # the same data without the separation
    z_ok = rng.binomial(1, expit(0.2 + 0.5 * x)).astype(float)
    assert get_method("logreg").func(
        make_problem(z_ok, x, cluster, ry, vtype="binary")).info["separated"] is False


# -------------------------------------------------------------------------- (d) pmm
def test_pmm_imputes_observed_values_only():
    rng = np.random.default_rng(40)
    n = 500
    cluster = rng.integers(0, 5, n)
    x = np.column_stack([rng.standard_normal(n), rng.binomial(1, 0.5, n)])
    counts = rng.poisson(np.exp(0.3 + 0.4 * x[:, 0])).astype(float)
    cont = np.round(x[:, 0] + rng.standard_normal(n), 2)
    binary = rng.binomial(1, 0.4, n).astype(float)
    ry = rng.random(n) > 0.3
    ry[cluster == 4] = False
    for y, vtype in [(counts, "count"), (cont, "continuous"), (binary, "binary")]:
        problem = make_problem(y, x, cluster, ry, vtype=vtype)
        for _ in range(20):
            draw = get_method("pmm").func(problem)
            assert np.all(np.isin(draw.values, y[ry]))
            assert draw.info["n_donors"] == 5 and draw.info["n_systematic"] == 1


def test_match_donors_equals_brute_force():
    """Against an n0 × n1 distance matrix: donors=1 gives the nearest prediction, and
    with donors=5 every pick is among the 5 nearest; each of them is picked with
    probability 1/5 (one target, 5000 calls: counts within 4 binomial se)."""
    rng = np.random.default_rng(50)
    d = rng.standard_normal(300)
    t = rng.standard_normal(200) * 1.5
    dist = np.abs(t[:, None] - d[None, :])
    np.testing.assert_array_equal(match_donors(d, t, 1, rng), np.argmin(dist, axis=1))
    nearest5 = np.argsort(dist, axis=1)[:, :5]
    idx = match_donors(d, t, 5, rng)
    assert all(i in row for i, row in zip(idx, nearest5, strict=True))
    picks = np.array([match_donors(d, t[:1], 5, rng)[0] for _ in range(5000)])
    counts = np.array([np.sum(picks == j) for j in nearest5[0]])
    assert counts.sum() == 5000
    assert np.all(np.abs(counts - 1000) < 4 * np.sqrt(5000 * 0.2 * 0.8))
    # more donors than observations: all are candidates
    assert set(match_donors(d[:3], t, 5, rng)) <= {0, 1, 2}


def test_match_donors_ties_broken_at_random():
    """Predictions with ties (a discrete design): the donors are shuffled in every call
    (as mice's matchindex), so across calls every tied donor can be the nearest."""
    rng = np.random.default_rng(51)
    d = np.repeat([0.0, 1.0, 2.0], 20)
    picks = np.concatenate([match_donors(d, np.array([1.01]), 1, rng) for _ in range(500)])
    assert np.all(d[picks] == 1.0)
    assert np.unique(picks).size == 20  # P(some donor never picked) < 20 (19/20)^500


def test_pmm_exact_linear_relation_returns_nearest_donors(linear_data):
    """With y exactly linear in the design, beta* = beta_hat (SSR = 0) and the
    predictions are the true values: donors=1 returns the observed y closest to each
    missing row's prediction — for the systematically missing study, the prediction with
    the average of the study intercepts; donors=5 returns one of the 5 closest."""
    _, x, cluster, ry = linear_data
    y = INTERCEPTS[cluster] + SLOPE * x
    miss = ~ry
    target = np.where(cluster == 4, INTERCEPTS[:4].mean(), INTERCEPTS[cluster]) + SLOPE * x
    gap = np.abs(target[miss][:, None] - y[ry][None, :])
    nearest = y[ry][np.argmin(gap, axis=1)]
    draw = pmm_step(make_problem(y, x, cluster, ry, seed=3), donors=1)
    np.testing.assert_allclose(draw.values, nearest, rtol=0, atol=1e-12)
    assert draw.info["n_donors"] == 1
    five = np.sort(gap, axis=1)[:, 4]
    for seed in range(5):
        values = get_method("pmm").func(make_problem(y, x, cluster, ry, seed=seed)).values
        assert np.all(np.abs(values - target[miss]) <= five + 1e-12)


# ------------------------------------------------------------ (e) end to end (STI)
def test_stratified_strategy_is_registered():
    assert STRATEGIES["stratified"] == {"binary": "logreg", "count": "pmm",
                                        "continuous": "norm", "ordinal": "polr",
                                        "nominal": "polyreg"}
    for name, types in [("logreg", ("binary",)), ("pmm", ("binary", "count", "continuous")),
                        ("norm", ("continuous",))]:
        info = get_method(name)
        assert info.types == types and not info.multilevel


def test_stratified_runs():
    rng = np.random.default_rng(60)
    data = ampute(generate("binary", "moderate", 6, rng, n_total=300), 0.3, "mar", rng)
    imp = mlmi.impute(data, "st", method="stratified", m=1, maxit=1, seed=1)
    assert imp.methods == {"x1": "logreg", "x2": "pmm"}


@pytest.mark.parametrize("outcome", ["binary", "continuous"])
def test_stratified_end_to_end(outcome):
    rng = np.random.default_rng(61)
    complete = generate(outcome, "moderate", 10, rng, n_total=600)
    variables = ("x1", "x2", "y") if outcome == "continuous" else ("x1", "x2")
    data = ampute(complete, 0.3, "mar" if outcome == "binary" else "mcar", rng,
                  variables=variables)
    m, maxit = 2, 3
    imp = mlmi.impute(data, "st", method="stratified", m=m, maxit=maxit, seed=2)
    expected = {"x1": "logreg", "x2": "pmm", "y": "norm"}
    assert imp.methods == {v: expected[v] for v in variables}
    assert (imp.predictor_matrix["st"] == 1).all()
    for i in range(1, m + 1):
        done = imp.complete(i)
        assert not done[list(variables)].isna().any().any()
        for col in data.columns:
            seen = data[col].notna()
            np.testing.assert_array_equal(done.loc[seen, col], data.loc[seen, col])
        assert set(done["x1"].unique()) <= {0.0, 1.0}
        x2 = done["x2"].to_numpy()
        assert np.all(x2 >= 0) and np.all(x2 == np.round(x2))
        assert np.all(np.isin(x2[data["x2"].isna()], data["x2"].dropna().unique()))
    d = imp.diagnostics
    assert len(d) == m * maxit * len(variables)
    for var in variables:
        sub = d[d["variable"] == var]
        assert len(sub) == m * maxit and (sub["method"] == expected[var]).all()
        st = imp.plan.status[var]
        assert (sub["n_systematic"] == int(np.sum(st == SYSTEMATIC))).all()
        assert (sub["n_sporadic"] == int(np.sum(st == SPORADIC))).all()
    assert d.loc[d["method"] == "logreg", "separated"].notna().all()
    assert (d.loc[d["method"] == "pmm", "n_donors"] == 5).all()
    summary = imp.summary()
    assert summary["method"].loc[list(variables)].to_dict() == {v: expected[v]
                                                                for v in variables}


def test_single_and_multilevel_methods_mix():
    """Diagnostics of a single-level and a multilevel method in one run combine."""
    rng = np.random.default_rng(62)
    data = ampute(generate("binary", "weak", 6, rng, n_total=300), 0.1, "mcar", rng)
    imp = mlmi.impute(data, "st", method={"x1": "2l.bin", "x2": "pmm"}, m=1, maxit=2,
                      seed=3)
    assert imp.predictor_matrix.loc["x1", "st"] == -2
    assert imp.predictor_matrix.loc["x2", "st"] == 1
    assert imp.diagnostics["n_fit_warnings"].notna().all()


# ------------------------------------------------------------------- (f) bad input
def test_random_slope_with_single_level_method_is_an_input_error():
    rng = np.random.default_rng(70)
    data = ampute(generate("binary", "moderate", 6, rng, n_total=300), 0.3, "mar", rng)
    with pytest.raises(InputError, match=r"method 'logreg' for 'x1' is single-level and "
                                         r"cannot have random slopes \(\['y'\]\)"):
        mlmi.impute(data, "st", method="stratified", random={"x1": ["y"]})
    with pytest.raises(InputError, match=r"method 'pmm' for 'x2' is single-level and "
                                         r"cannot have random slopes"):
        mlmi.impute(data, "st", method={"x1": "2l.bin", "x2": "pmm"}, random={"x2": "y"})


def test_single_level_method_rejects_bad_problem():
    rng = np.random.default_rng(71)
    n = 40
    x = rng.standard_normal((n, 2))
    y = rng.standard_normal(n)
    cluster = np.repeat([0, 1], n // 2)
    ry = np.arange(n) % 4 != 0
    problem = make_problem(y, x, cluster, ry)
    problem.type = np.array([1, 2])
    with pytest.raises(InputError, match=r"single-level method cannot have random slopes "
                                         r"\(\['x2'\]\)"):
        get_method("norm").func(problem)
    problem = make_problem(y, x, cluster, ry)
    problem.cluster_role = -2
    with pytest.raises(InputError, match=r"code 1 \(fixed dummies\) or 0 \(ignored\), not -2"):
        get_method("pmm").func(problem)


def test_norm_refuses_counts_and_logreg_refuses_continuous():
    rng = np.random.default_rng(72)
    data = ampute(generate("binary", "moderate", 6, rng, n_total=300), 0.3, "mar", rng)
    with pytest.raises(InputError, match=r"method 'norm' imputes continuous variables, but "
                                         r"'x2' is count"):
        mlmi.impute(data, "st", method={"x1": "logreg", "x2": "norm"},
                    types={"x2": "count"})
    # without a declared type the method sets it (issue 11): x2 continuous, not rounded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = mlmi.impute(data, "st", method={"x1": "logreg", "x2": "norm"}, m=1, maxit=1,
                          seed=1)
    assert imp.types["x2"] == "continuous"
    assert "set by method 'norm'" in imp.plan.variables["x2"].reason
    assert np.any(imp.imputations["x2"] != np.round(imp.imputations["x2"]))
    with pytest.raises(InputError, match=r"method 'logreg' imputes binary variables, but "
                                         r"'x2' is count"):
        mlmi.impute(data, "st", method="logreg")
