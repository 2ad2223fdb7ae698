"""Single-level (``polr``, ``polyreg``) and two-stage (``2l.2stage.polr``,
``2l.2stage.polyreg``) methods for ordinal and nominal variables.

The fits are checked against R (``MASS::polr``, ``nnet::multinom``; fixture made by
tools/make_polr_polyreg_fixture.R). Statistical checks use fixed seeds; each tolerance
is a number of Monte Carlo standard errors estimated from the repeated calls themselves
(they include the parameter draw), stated next to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import helpers
from mlmi.methods import Problem, get_method
from mlmi.methods._multinom import fit_multinom
from mlmi.methods._twostage_cat import fit_studies_cat
from mlmi.methods.polr import (
    alpha_from_theta,
    category_probabilities,
    fit_polr,
    theta_from_alpha,
)

FIXTURE = Path(__file__).parent / "fixtures" / "polr_polyreg.json"


def make_problem(y, x, cluster, ry, *, vtype="ordinal", L=4, role=1, seed=0) -> Problem:
    return helpers.make_problem(y, x, cluster, ry, vtype, seed=seed, cluster_role=role,
                                n_levels=L, levels=list(range(L)))


# ------------------------------------------------------------------ against R
@pytest.fixture(scope="module")
def ref():
    return json.loads(FIXTURE.read_text())


def test_fit_polr_matches_mass_polr(ref):
    """Weighted proportional-odds fit with study dummies = MASS::polr: estimates to
    1e-6, log-likelihood to 1e-8, covariance to 1e-5 of the SE products (polr's Hessian
    is optim's finite-difference one)."""
    st = np.array(ref["st"])
    x = np.column_stack([(st == k).astype(float) for k in range(2, 6)]
                        + [ref["x1"], ref["x2"]])
    fit = fit_polr(x, np.array(ref["y_ordinal"]), 4, np.array(ref["w"]))
    assert fit.converged and not fit.ridge
    np.testing.assert_allclose(fit.beta, ref["polr_beta"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(fit.theta, ref["polr_zeta"], rtol=0, atol=1e-6)
    assert fit.loglik == pytest.approx(ref["polr_loglik"][0], abs=1e-8)
    V = np.array(ref["polr_vcov"])  # polr's order: beta, then zeta
    order = [*range(3, 9), 0, 1, 2]
    mine = fit.cov_theta[np.ix_(order, order)]
    scale = np.sqrt(np.outer(np.diag(V), np.diag(V)))
    assert np.max(np.abs(mine - V) / scale) < 1e-5
    # the draw scale: cov of (alpha, beta) is carried to (theta, beta) by the Jacobian
    eps = 1e-6
    a = fit.alpha
    J = np.column_stack([(theta_from_alpha(a + eps * e) - theta_from_alpha(a - eps * e))
                         / (2 * eps) for e in np.eye(3)])
    np.testing.assert_allclose(J @ fit.cov[:3, :3] @ J.T, fit.cov_theta[:3, :3], rtol=1e-6)
    np.testing.assert_allclose(alpha_from_theta(fit.theta), a, rtol=0, atol=1e-14)


def test_fit_multinom_stratified_matches_nnet(ref):
    """Weighted multinomial fit with one intercept per study per category (no global
    intercept) = nnet::multinom: estimates to 1e-6, covariance to 1e-5 of the SEs."""
    st = np.array(ref["st"])
    x = np.column_stack([(st == k).astype(float) for k in range(1, 6)]
                        + [ref["x1"], ref["x2"]])
    fit = fit_multinom(x, np.array(ref["y_nominal"]), 4, np.array(ref["w"]))
    assert fit.converged
    np.testing.assert_allclose(fit.beta, ref["multinom_coef"], rtol=0, atol=1e-6)
    assert fit.loglik == pytest.approx(ref["multinom_loglik"][0], abs=1e-8)
    V = np.array(ref["multinom_vcov"])
    assert np.max(np.abs(fit.cov - V) / np.sqrt(np.outer(np.diag(V), np.diag(V)))) < 1e-5
    warm = fit_multinom(x, np.array(ref["y_nominal"]), 4, np.array(ref["w"]),
                        start=fit.beta + 0.1)
    np.testing.assert_allclose(warm.beta, fit.beta, rtol=0, atol=1e-7)


def test_fit_polr_warm_start_same_answer(ref):
    st = np.array(ref["st"])
    x = np.column_stack([(st == k).astype(float) for k in range(2, 6)]
                        + [ref["x1"], ref["x2"]])
    y, w = np.array(ref["y_ordinal"]), np.array(ref["w"])
    cold = fit_polr(x, y, 4, w)
    warm = fit_polr(x, y, 4, w, start=(cold.theta - 0.2, cold.beta + 0.3))
    np.testing.assert_allclose(warm.beta, cold.beta, rtol=0, atol=1e-8)
    np.testing.assert_allclose(warm.theta, cold.theta, rtol=0, atol=1e-8)


# ------------------------------------------------------- the stratified methods
#: study sizes and locations; the last study is systematically missing, its true
#: location (4) far from the average of the others (relative to study 1: 1.5)
SIZES = np.array([1500, 1500, 1500, 1500, 300])
LOCATION = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
THETA = np.array([0.0, 1.2, 2.5])


@pytest.fixture(scope="module")
def ordinal_data():
    rng = np.random.default_rng(41)
    cluster = np.repeat(np.arange(5), SIZES)
    x = rng.standard_normal(cluster.size)
    eta = LOCATION[cluster] + 0.5 * x
    prob = category_probabilities(eta, THETA)
    z = (rng.random(cluster.size)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    ry = cluster != 4
    ry[np.flatnonzero(cluster == 1)[:300]] = False  # sporadic in study 2
    return z.astype(float), x, cluster, ry


def _share_deviation(method, problem, expected, rows, calls):
    """Per call, imputed category shares in ``rows`` minus ``expected`` (L,), averaged
    over calls, with the Monte Carlo se from the spread between calls."""
    dev = []
    for _ in range(calls):
        v = method(problem).values[rows].astype(int)
        dev.append(np.bincount(v, minlength=expected.size) / v.size - expected)
    dev = np.array(dev)
    return dev.mean(axis=0), dev.std(axis=0, ddof=1) / np.sqrt(calls)


def test_polr_systematic_study_gets_average_location(ordinal_data):
    """The systematically missing study is imputed with the average of the estimated
    study locations (1.5 relative to study 1), not its true 4. Shares within 4 Monte
    Carlo se (over 300 calls, parameter draws included) + 0.003 for the curvature of the
    probabilities over the draws and the augmentation (O(1/n))."""
    z, x, cluster, ry = ordinal_data
    problem = make_problem(z, x, cluster, ry, seed=3)
    method = get_method("polr").func
    D = (cluster[:, None] == np.arange(1, 4)).astype(float)
    fit = fit_polr(np.column_stack([D, x])[ry], z[ry].astype(int), 4)
    avg = fit.beta[:3].sum() / 4.0  # study 1 counts 0
    assert abs(avg - 1.5) < 0.15
    miss = np.flatnonzero(~ry)
    sys_rows = cluster[miss] == 4
    expected = category_probabilities(avg + fit.beta[3] * x[miss][sys_rows],
                                      fit.theta).mean(axis=0)
    truth = category_probabilities(4.0 + 0.5 * x[miss][sys_rows], THETA).mean(axis=0)
    assert np.max(np.abs(expected - truth)) > 0.2  # the check discriminates
    mean, se = _share_deviation(method, problem, expected, sys_rows, 300)
    assert np.all(np.abs(mean) < 4 * se + 0.003)
    # the sporadic study: its own location
    spo = cluster[miss] == 1
    exp_spo = category_probabilities(fit.beta[0] + fit.beta[3] * x[miss][spo],
                                     fit.theta).mean(axis=0)
    mean, se = _share_deviation(method, problem, exp_spo, spo, 300)
    assert np.all(np.abs(mean) < 4 * se + 0.003)
    d = method(problem)
    assert d.info["n_sporadic"] == 1 and d.info["n_systematic"] == 1
    assert d.info["fit_converged"] and d.values.size == (~ry).sum()
    assert set(np.unique(d.values)) <= {0.0, 1.0, 2.0, 3.0}


def test_polr_draws_parameters(ordinal_data):
    """A proper imputation: the imputed shares of the systematically missing study vary
    between calls more than multinomial sampling with fixed parameters allows (the
    parameter draw adds the between-call variance). Variance ratio > 1.3 on the top
    category (expected ~2 here; the ratio's sampling SD over 400 calls is ~0.1)."""
    z, x, cluster, ry = ordinal_data
    # small observed data so the parameter uncertainty is visible
    keep = np.zeros_like(ry)
    for s in range(4):
        keep[np.flatnonzero(cluster == s)[:60]] = True
    keep |= cluster == 4
    z, x, cluster, ry = z[keep], x[keep], cluster[keep], ry[keep]
    problem = make_problem(z, x, cluster, ry, seed=5)
    method = get_method("polr").func
    sys_rows = cluster[~ry] == 4
    top = np.array([np.mean(method(problem).values[sys_rows] == 3) for _ in range(400)])
    p = top.mean()
    assert top.var(ddof=1) / (p * (1 - p) / sys_rows.sum()) > 1.3


def test_polyreg_systematic_study_gets_average_intercepts():
    """Nominal: the systematically missing study is imputed with the average of the
    estimated study intercepts of every category. Shares within 4 Monte Carlo se (300
    calls) + 0.003."""
    rng = np.random.default_rng(43)
    sizes = np.array([1500, 1500, 1500, 300])
    cluster = np.repeat(np.arange(4), sizes)
    x = rng.standard_normal(cluster.size)
    intercepts = np.array([[0.0, 0.5, -0.5], [1.0, -1.0, 0.0], [-0.5, 0.0, 1.0],
                           [3.0, 3.0, -3.0]])  # per study, categories 1..3
    eta = intercepts[cluster] + np.outer(x, [0.5, -0.5, 0.2])
    e = np.column_stack([np.zeros(cluster.size), eta])
    prob = np.exp(e - e.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    z = (rng.random(cluster.size)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    ry = cluster != 3
    problem = make_problem(z, x, cluster, ry, vtype="nominal", seed=6)
    D = (cluster[:, None] == np.arange(3)).astype(float)
    fit = fit_multinom(np.column_stack([D, x])[ry], z[ry], 4)
    avg = fit.beta[:3].mean(axis=0)
    miss = np.flatnonzero(~ry)
    xs = x[miss]
    e = np.column_stack([np.zeros(xs.size), avg + np.outer(xs, fit.beta[3])])
    expected = np.exp(e - e.max(axis=1, keepdims=True))
    expected = (expected / expected.sum(axis=1, keepdims=True)).mean(axis=0)
    mean, se = _share_deviation(get_method("polyreg").func, problem, expected,
                                np.ones(miss.size, dtype=bool), 300)
    assert np.all(np.abs(mean) < 4 * se + 0.003)
    d = get_method("polyreg").func(problem)
    assert d.info["n_systematic"] == 1 and d.info["fit_converged"]


def test_stratified_methods_need_fixed_study_role(ordinal_data):
    z, x, cluster, ry = ordinal_data
    problem = make_problem(z, x, cluster, ry)
    problem.type = np.array([2])
    from mlmi.exceptions import InputError

    with pytest.raises(InputError, match="random"):
        get_method("polr").func(problem)


def test_polr_ignoring_study(ordinal_data):
    """cluster_role 0: one location for all studies (intercept in the thresholds)."""
    z, x, cluster, ry = ordinal_data
    d = get_method("polr").func(make_problem(z, x, cluster, ry, role=0, seed=2))
    assert d.values.size == (~ry).sum() and d.info["fit_converged"]


# ----------------------------------------------------------------- two-stage
def _heterogeneous_ordinal(seed, studies=12, n=400):
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(studies), n)
    x = rng.standard_normal(cluster.size)
    loc = rng.normal(0.0, 1.0, studies)
    slope = 0.5 + rng.normal(0.0, 0.3, studies)
    eta = loc[cluster] + slope[cluster] * x
    prob = category_probabilities(eta, THETA)
    z = (rng.random(cluster.size)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    return z.astype(float), x, cluster, loc, slope


def test_2stage_polr_uses_study_parameters():
    """A large sporadic study far from the average: 2l.2stage.polr imputes it from its
    own (posterior) parameters — its imputed shares match those of its own fit (320
    observed rows) within 4 Monte Carlo se (200 calls) + 0.05 (the posterior shrinks the
    study's estimate towards the pooled one: its threshold gaps, equal in every study,
    almost fully — an estimation error of ~0.03 in a share here), and are far (> 0.2)
    from those of the average study."""
    z, x, cluster, _loc, slope = _heterogeneous_ordinal(7)
    loc_target = 2.5
    rows = cluster == 0
    eta = loc_target + slope[0] * x[rows]
    rng = np.random.default_rng(8)
    prob = category_probabilities(eta, THETA)
    z[rows] = (rng.random(rows.sum())[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    ry = rng.random(z.size) > 0.2
    ry[cluster == 11] = False  # systematically missing
    problem = make_problem(z, x, cluster, ry, seed=9)
    method = get_method("2l.2stage.polr").func
    miss = np.flatnonzero(~ry)
    own = cluster[miss] == 0
    obs0 = ry & (cluster == 0)
    f0 = fit_polr(x[obs0, None], z[obs0].astype(int), 4)
    expected = category_probabilities(f0.beta[0] * x[miss][own], f0.theta).mean(0)
    average = category_probabilities(0.5 * x[miss][own], THETA).mean(0)
    assert np.max(np.abs(expected - average)) > 0.2  # the check discriminates
    mean, se = _share_deviation(method, problem, expected, own, 200)
    assert np.all(np.abs(mean) < 4 * se + 0.05)
    d = method(problem)
    assert d.info["n_systematic"] == 1 and d.info["dropped_studies"] == 0
    assert d.info["n_fitted_studies"] == 11


def test_2stage_drops_study_missing_a_category():
    """A study that never shows a category has no finite threshold: its fit is dropped,
    counted, named, and the study imputed from N(beta*, Psi*)."""
    z, x, cluster, *_ = _heterogeneous_ordinal(11)
    z[(cluster == 2) & (z == 3)] = 2.0  # study 3 never shows the top category
    rng = np.random.default_rng(12)
    ry = rng.random(z.size) > 0.2
    for name, vtype in (("2l.2stage.polr", "ordinal"), ("2l.2stage.polyreg", "nominal")):
        problem = make_problem(z, x, cluster, ry, vtype=vtype, seed=13)
        d = get_method(name).func(problem)
        assert d.info["dropped_studies"] == 1 and d.info["dropped_sporadic"] == 1
        assert any("[dropped] study 3" in w and "[3] not observed" in w
                   for w in d.info["fit_warnings"])
        assert set(np.unique(d.values)) <= {0.0, 1.0, 2.0, 3.0}


def test_fit_studies_cat_vectors():
    """Per-study vectors: ordinal (alpha, beta) = fit_polr on the study's rows;
    nominal vec(B) = fit_multinom on [1, x]."""
    z, x, cluster, *_ = _heterogeneous_ordinal(14, studies=3)
    X = np.column_stack([np.ones(x.size), x])
    fo = fit_studies_cat(z, X, cluster, 4, "polr")
    one = fit_polr(x[cluster == 1, None], z[cluster == 1].astype(int), 4)
    np.testing.assert_allclose(fo.est[1], np.concatenate([one.alpha, one.beta]), atol=1e-10)
    np.testing.assert_allclose(fo.cov[1], one.cov, atol=1e-10)
    fn = fit_studies_cat(z, X, cluster, 4, "polyreg")
    mn = fit_multinom(X[cluster == 2], z[cluster == 2].astype(int), 4)
    np.testing.assert_allclose(fn.est[2], mn.beta.ravel(order="F"), atol=1e-10)
    assert fn.est.shape == (3, 6) and fo.est.shape == (3, 4)


def test_2stage_polyreg_runs_with_systematic_and_pooled_fallback():
    """Every study lacks a category -> no usable fit: the pooled model imputes, and a
    warning says so."""
    z, x, cluster, *_ = _heterogeneous_ordinal(15, studies=4, n=100)
    z[z == 3] = 2.0
    z[(z == 2) & (cluster % 2 == 0)] = 1.0
    ry = np.random.default_rng(16).random(z.size) > 0.2
    problem = make_problem(z, x, cluster, ry, vtype="nominal", seed=17)
    d = get_method("2l.2stage.polyreg").func(problem)
    assert d.info["n_fitted_studies"] == 0
    assert any("pooled single-level" in w for w in d.info["fit_warnings"])
    assert np.all(np.isin(d.values, [0.0, 1.0, 2.0, 3.0]))


# ------------------------------------------------------------- through mlmi.impute
@pytest.mark.parametrize("kind", ["ordinal", "nominal"])
@pytest.mark.parametrize("strategy", ["stratified", "2stage"])
def test_impute_end_to_end(kind, strategy):
    """The strategies pick these methods for ordinal / nominal variables; imputations
    are categories of the variable, observed values never change, every study's
    missing rows are filled."""
    import warnings

    import mlmi
    from mlmi.simulation import ampute, generate

    rng = np.random.default_rng(31)
    data = ampute(generate("binary", "moderate", 10, rng, x1=kind), 0.3, "mar", rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp = mlmi.impute(data, "st", m=2, maxit=2, method=strategy, seed=3,
                          types={"x1": kind, "x2": "count"})
    expected = {("stratified", "ordinal"): "polr", ("stratified", "nominal"): "polyreg",
                ("2stage", "ordinal"): "2l.2stage.polr",
                ("2stage", "nominal"): "2l.2stage.polyreg"}[(strategy, kind)]
    assert imp.plan.methods["x1"] == expected
    obs = data["x1"].notna()
    for i in (1, 2):
        done = imp.complete(i)
        x1 = pd.to_numeric(done["x1"].astype("object")).to_numpy(dtype=float)
        assert not np.isnan(x1).any()
        assert set(np.unique(x1)) <= {0.0, 1.0, 2.0, 3.0}
        np.testing.assert_array_equal(x1[obs], data.loc[obs, "x1"].to_numpy())
    d = imp.diagnostics
    assert (d.loc[d["variable"] == "x1", "n_systematic"] == 3).all()
