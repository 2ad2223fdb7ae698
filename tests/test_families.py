"""The family modules (glmm/families/): row kernels against numerical derivatives of the
family's own numpy log-density, the Laplace gradient in every parameter against central
differences, response sampling against the distribution, and bad input.

Reference fits against R (ordinal::clmm, glmmTMB) are in test_families_reference.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import digamma as scipy_digamma
from scipy.special import expit

from mlmi.exceptions import InputError
from mlmi.glm import fit_glm, irls
from mlmi.glmm import fit_arrays, fit_glmm, get_family
from mlmi.glmm._linalg import theta_to_lambda
from mlmi.glmm.families import negbin, ordinal
from mlmi.glmm.families.kernels import (
    row_extra_grad,
    row_fourth,
    row_moments,
    row_moments_cached,
)
from mlmi.glmm.laplace import laplace_objective
from mlmi.posterior import draw_many

THRESHOLDS = np.array([-1.0, 0.2, 1.5])


def test_digamma_matches_scipy():
    x = np.array([1e-3, 0.01, 0.5, 1.0, 2.5, 5.999, 6.0, 10.0, 123.4, 1e5])
    got = np.array([negbin.digamma(v) for v in x])
    np.testing.assert_allclose(got, scipy_digamma(x), rtol=1e-11, atol=1e-11)


# ------------------------------------------------------------------ row kernels
def kernel_at(name, natural):
    """The kernels' ``extra`` for natural parameters (NB theta, ordinal thresholds)."""
    fam = get_family(name)
    if name == "negbin":
        return fam.kernel_extra(np.log(natural))
    return np.asarray(natural, dtype=float)


ROW_CASES = [
    ("ordinal", 0.0, THRESHOLDS), ("ordinal", 1.0, THRESHOLDS), ("ordinal", 2.0, THRESHOLDS),
    ("ordinal", 3.0, THRESHOLDS), ("negbin", 0.0, np.array([2.5])),
    ("negbin", 7.0, np.array([0.7])), ("negbin", 30.0, np.array([40.0])),
    ("binomial", 1.0, np.zeros(0)), ("poisson", 4.0, np.zeros(0)),
]


def _family_param(name, extra):
    """The numpy family's ``extra`` argument: the optimiser's scale."""
    fam = get_family(name)
    if name == "ordinal":
        return ordinal.alpha_from_thresholds(extra)
    if name == "negbin":
        return np.log(extra)
    return None if fam.n_extra(np.array([1.0])) == 0 else extra


@pytest.mark.parametrize(("name", "y", "extra"), ROW_CASES)
@pytest.mark.parametrize("eta", [-2.3, 0.0, 0.8, 3.1])
def test_row_kernel_derivatives(name, y, extra, eta):
    """log p (up to terms in y alone), g1 = dlogp/deta, g2 = -d2, g3 = dg2, g4 = dg3 from
    the compiled kernel equal the numpy log-density and its finite differences."""
    fam = get_family(name)
    param = _family_param(name, extra)

    def logp(e):
        return float(fam.loglik(np.array([y]), np.array([e]), 1.0, param)[0])

    kex = kernel_at(name, extra)
    ll, g1, g2, g3 = row_moments(fam.code, y, eta, kex)
    g4 = row_fourth(fam.code, y, eta, g2, g3, kex)
    constant = fam.loglik_constant(np.array([y]), np.ones(1))
    assert ll + constant == pytest.approx(logp(eta), abs=1e-10)
    # five-point stencils (error O(h^4)); h = 1e-3 keeps rounding below 1e-8 even where
    # log p is of order -100
    h = 1e-3
    f = [logp(eta + j * h) for j in (-2, -1, 0, 1, 2)]
    d1 = (f[0] - 8 * f[1] + 8 * f[3] - f[4]) / (12 * h)
    d2 = (-f[0] + 16 * f[1] - 30 * f[2] + 16 * f[3] - f[4]) / (12 * h**2)
    assert g1 == pytest.approx(d1, rel=1e-6, abs=1e-8)
    assert g2 == pytest.approx(-d2, rel=1e-5, abs=1e-6)
    assert g2 > 0  # log-concave: the conditional modes are unique

    def moment(e, which):
        return row_moments(fam.code, y, e, kex)[which]

    def stencil(which):
        v = [moment(eta + j * h, which) for j in (-2, -1, 1, 2)]
        return (v[0] - 8 * v[1] + 8 * v[2] - v[3]) / (12 * h)

    assert g3 == pytest.approx(stencil(2), rel=1e-6, abs=1e-8)
    assert g4 == pytest.approx(stencil(3), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(("name", "y", "extra"), [c for c in ROW_CASES if c[2].size])
@pytest.mark.parametrize("eta", [-1.1, 0.4, 2.2])
def test_row_extra_gradient(name, y, extra, eta):
    """Partials of log p, g1, g2 in the family parameters (natural scale) against central
    differences of the kernel itself."""
    fam = get_family(name)
    idx = np.zeros(2, dtype=np.int64)
    dl, dg1, dg2 = np.empty(2), np.empty(2), np.empty(2)
    at = kernel_at(name, extra)
    *_, c0, c1 = row_moments_cached(fam.code, y, eta, at)  # as the Newton pass keeps them
    n = row_extra_grad(fam.code, y, eta, at, c0, c1, idx, dl, dg1, dg2)
    touched = set(idx[:n].tolist())
    for t in range(extra.size):
        h = 1e-6 * max(1.0, abs(extra[t]))
        e = np.zeros(extra.size)
        e[t] = h
        up = np.array(row_moments(fam.code, y, eta, kernel_at(name, extra + e))[:3])
        down = np.array(row_moments(fam.code, y, eta, kernel_at(name, extra - e))[:3])
        fd = (up - down) / (2 * h)
        if t not in touched:
            np.testing.assert_allclose(fd, 0.0, atol=1e-8)
            continue
        m = list(idx[:n]).index(t)
        np.testing.assert_allclose([dl[m], dg1[m], dg2[m]], fd, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ Laplace gradient
def _data(name, seed=3, k=6, n=80):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(k), n)
    x1 = rng.binomial(1, 0.5, k * n).astype(float)
    x2 = rng.standard_normal(k * n)
    b = rng.standard_normal((k, 2)) * 0.5
    eta = 0.3 * x1 - 0.5 * x2 + b[g, 0] + b[g, 1] * x1
    if name == "ordinal":
        y = (rng.random(k * n)[:, None] > expit(THRESHOLDS[None, :] - eta[:, None])).sum(1)
        X = np.column_stack([x1, x2])
        extra = THRESHOLDS
    else:
        mu = np.exp(0.5 + eta)
        y = rng.poisson(rng.gamma(2.0, mu / 2.0))
        X = np.column_stack([np.ones(k * n), x1, x2])
        extra = np.array([2.0])
    W = np.column_stack([np.ones(k * n), x1])
    return y.astype(float), X, W, g, extra


@pytest.mark.parametrize("q", [2, 3, 4])
@pytest.mark.parametrize("name", ["ordinal", "negbin"])
def test_laplace_gradient_in_every_parameter(name, q):
    """The compiled gradient in (beta, theta) — which for these non-canonical families
    uses the observed information — and in the family parameters equals central
    differences of the Laplace objective (modes found afresh at each point); q = 2 and 3
    run the gradient pass compiled for that q, q = 4 the general one."""
    y, X, _, _, extra = _data(name)
    x1, x2 = X[:, -2], X[:, -1]
    W = np.ascontiguousarray(np.column_stack([np.ones(y.size), x1, x2, x1 * x2])[:, :q])
    fam = get_family(name)
    k, p = 6, X.shape[1]
    starts = np.arange(0, y.size + 1, y.size // k).astype(np.int64)
    wt = np.ones(y.size)
    nth = q * (q + 1) // 2
    lam = 0.4 * np.eye(q) + np.tril(np.full((q, q), 0.1), -1)
    theta = np.array([lam[r, c] for c in range(q) for r in range(c, q)])
    par = np.concatenate([np.full(p, 0.1), theta, extra])

    def f(par, want):
        u = np.zeros((k, q))
        grad = np.zeros(p + nth)
        ge = np.zeros(extra.size)
        v, failed = laplace_objective(par[:p], theta_to_lambda(par[p:p + nth], q), y, wt, X,
                                      W, starts, fam.code, kernel_at(name, par[p + nth:]), u,
                                      grad, ge, want,
                                      np.zeros((k, q, p + nth)), np.zeros(p + nth))
        assert failed == 0
        return v, np.concatenate([grad, ge])

    _, exact = f(par, True)
    for t in range(par.size):
        h = 1e-5 * max(1.0, abs(par[t]))
        e = np.zeros(par.size)
        e[t] = h
        fd = (f(par + e, False)[0] - f(par - e, False)[0]) / (2 * h)
        assert exact[t] == pytest.approx(fd, rel=1e-5, abs=1e-5), t


# ------------------------------------------------------------------ fits and results
def test_ordinal_fit_labels_and_intercept():
    y, X, W, g, _ = _data("ordinal", k=10, n=150)
    Xi = np.column_stack([np.ones(y.size), X])
    fit = fit_arrays(y, Xi, W, g, "ordinal", x_names=["(Intercept)", "x1", "x2"],
                     w_names=["(Intercept)", "x1"])
    assert fit.x_names == ["x1", "x2"]
    assert any(w.kind == "info" and "thresholds take the place" in w.message
               for w in fit.warnings)
    assert list(fit.vcov_all.index) == ["0|1", "1|2", "2|3", "x1", "x2"]
    assert np.all(np.diff(fit.family_params.to_numpy()) > 0)
    # a categorical response names the thresholds by its levels
    data = pd.DataFrame({"g": g, "x1": X[:, 0], "x2": X[:, 1],
                         "y": pd.Categorical.from_codes(y.astype(int), ["none", "mild",
                                                                         "moderate", "severe"],
                                                        ordered=True)})
    f2 = fit_glmm("y ~ x1 + x2 + (1 + x1 | g)", data, "ordinal")
    assert list(f2.thresholds.index) == ["none|mild", "mild|moderate", "moderate|severe"]
    np.testing.assert_allclose(f2.fixef.to_numpy(), fit.fixef.to_numpy(), atol=1e-6)
    with pytest.raises(InputError, match="ordinal family only"):
        _ = fit_glmm("y ~ x1 + (1 | g)", data.assign(y=(y > 1).astype(float)), "binomial"
                     ).thresholds


def test_negbin_theta_and_vcov_all():
    y, X, W, g, _ = _data("negbin", k=12, n=200)
    fit = fit_arrays(y, X, W, g, "negbin", x_names=["(Intercept)", "x1", "x2"],
                     w_names=["(Intercept)", "x1"])
    se = np.sqrt(fit.vcov_all.loc["theta", "theta"])
    # true theta 2; a 4-SE band
    assert abs(fit.nb_theta - 2.0) < 4 * se
    assert list(fit.vcov_all.index) == ["theta", "(Intercept)", "x1", "x2"]
    with pytest.raises(InputError, match="negbin family only"):
        _ = fit_arrays(y, X, W, g, "poisson").nb_theta


# ------------------------------------------------------------------ sampling
def test_ordinal_sample_matches_probabilities():
    fam = get_family("ordinal")
    alpha = ordinal.alpha_from_thresholds(THRESHOLDS)
    eta = np.full(200_000, 0.4)
    draws = fam.sample(eta, np.random.default_rng(1), extra=alpha)
    prob = fam.probabilities(eta[:1], alpha)[0]
    share = np.bincount(draws.astype(int), minlength=4) / eta.size
    se = np.sqrt(prob * (1 - prob) / eta.size)
    assert np.all(np.abs(share - prob) < 4 * se)
    np.testing.assert_allclose(prob.sum(), 1.0)


def test_negbin_sample_mean_and_variance():
    fam = get_family("negbin")
    theta, mu, n = 1.7, 3.2, 400_000
    draws = fam.sample(np.full(n, np.log(mu)), np.random.default_rng(2),
                       extra=np.array([np.log(theta)]))
    var = mu + mu**2 / theta
    assert abs(draws.mean() - mu) < 4 * np.sqrt(var / n)
    # the sample variance's SE from the fourth central moment of NB2, bounded loosely
    assert draws.var() == pytest.approx(var, rel=0.02)


# ------------------------------------------------------------------ bad input
def _frame(y):
    n = len(y)
    return pd.DataFrame({"y": y, "x": np.linspace(0, 1, n), "g": np.arange(n) % 4})


def test_ordinal_one_category():
    with pytest.raises(InputError, match="one observed category"):
        fit_glmm("y ~ x + (1 | g)", _frame(np.zeros(40)), "ordinal")


def test_ordinal_empty_category_is_named():
    y = pd.Categorical(["low", "high"] * 20, categories=["low", "mid", "high"], ordered=True)
    with pytest.raises(InputError, match=r"no observation in level\(s\) \['mid'\]"):
        fit_glmm("y ~ x + (1 | g)", _frame(y), "ordinal")


def test_ordinal_non_integer_codes():
    with pytest.raises(InputError, match=r"non-integer value\(s\) \[0.5\]"):
        fit_glmm("y ~ x + (1 | g)", _frame(np.r_[np.zeros(20), np.full(19, 1.0), 0.5]),
                 "ordinal")


@pytest.mark.parametrize(("value", "message"), [(-1.0, "negative value"),
                                                (2.5, "non-integer value")])
def test_negbin_bad_counts(value, message):
    y = np.r_[np.arange(39) % 5, value].astype(float)
    with pytest.raises(InputError, match=f"negative binomial response 'y'.*{message}"):
        fit_glmm("y ~ x + (1 | g)", _frame(y), "negbin")


def test_unknown_family_is_an_error_everywhere():
    y, X = np.array([0.0, 1, 0, 1]), np.ones((4, 1))
    calls = [
        lambda: fit_glmm("y ~ x + (1 | g)", _frame(y), "gamma"),
        lambda: fit_arrays(y, X, X, np.array([0, 0, 1, 1]), "gamma"),
        lambda: fit_glm(y, X, "gamma"),
        lambda: irls(y, X, "gamma", np.zeros(1, dtype=np.intp)),
        lambda: draw_many("gamma", y, X, X, np.array([0, 4]), np.zeros(1), np.eye(1),
                          np.random.default_rng(0)),
    ]
    for call in calls:
        with pytest.raises(InputError, match="family='gamma' is not supported"):
            call()
