"""The multinomial (baseline-category logit) GLMM family against independent computations.

R has no Laplace fit of this model (issue #10, point 5), so every reference here is
computed from the model's definition with numpy/scipy only:

* the Laplace value of the log-likelihood against a plain numpy implementation of the
  same formula (modes by scipy.optimize, H = I + sum_j Z_j' A_j Z_j built densely with
  Kronecker products): both are the same approximation, so they agree to the modes'
  precision (the engine's Newton stops at decrement 1e-15: mode within ~3e-8, value
  within ~1e-9 per cluster; scipy's BFGS to gtol 1e-9) — we ask 1e-6 per cluster;
* the exact marginal log-likelihood (K = 3, random intercepts: a 2-D integral per
  cluster) by a 40 × 40 adaptive Gauss–Hermite tensor grid (self-checked against 60 × 60
  to 1e-8). The Laplace approximation is not exact: its error per cluster is O(1/n_i);
  measured here 0.011 at n_i = 10, 0.008 at 50 and 0.003 at 200 rows per cluster. With
  200 rows per cluster we allow 0.01 per cluster, and check the error shrinks with n_i
  (a lost term of the formula, e.g. ½log det H, is O(1) per cluster);
* the gradient against central differences of the objective (h = 1e-5: truncation and
  the modes' tolerance give ~1e-7 relative; a wrong term is O(1e-2..1));
* K = 2 against the binomial family (the baseline-category logit with two categories
  is the logistic GLMM), to the optimisers' tolerance;
* recovery of known parameters on a large simulated data set and (slow) coverage of
  the Wald intervals over 250 simulated data sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from mlmi.exceptions import InputError
from mlmi.glmm import fit_arrays, fit_glmm, get_family
from mlmi.glmm._linalg import theta_to_lambda
from mlmi.glmm.families.multinomial import FAMILY, laplace_objective


# ============================================================== simulation
def simulate(rng, k, n_i, beta, psi, q=1, weights=False):
    """(y, X, W, groups) from the baseline-category logit GLMM: X = [1, x1, x2] with x1
    N(0, 1) and x2 Bernoulli(0.5), W = X[:, :q], b_i ~ N(0, psi) category-major."""
    M = beta.shape[0]
    n = k * n_i
    g = np.repeat(np.arange(k), n_i)
    X = np.column_stack([np.ones(n), rng.standard_normal(n), rng.binomial(1, 0.5, n)])
    W = np.ascontiguousarray(X[:, :q])
    b = rng.multivariate_normal(np.zeros(M * q), psi, size=k)
    eta = X @ beta.T + np.stack([np.sum(W * b[g, l * q:(l + 1) * q], axis=1)
                                 for l in range(M)], axis=1)
    prob = FAMILY.probabilities(eta)
    y = np.sum(rng.random(n)[:, None] > np.cumsum(prob, axis=1)[:, :-1], axis=1)
    return y.astype(float), X, W, g


def engine_objective(beta, lam, y, X, W, starts, wt=None, want_grad=False):
    """The engine's Laplace -loglik (and gradient) at (beta (M × p), Lambda)."""
    M, p = beta.shape
    Q = lam.shape[0]
    k = starts.size - 1
    npar = M * p + Q * (Q + 1) // 2
    wt = np.ones(y.size) if wt is None else wt
    grad = np.zeros(npar)
    u = np.zeros((k, Q))
    value, failed = laplace_objective(np.ascontiguousarray(beta), lam,
                                      np.asarray(y, np.int64), wt, X, W, starts, u, grad,
                                      want_grad, np.zeros((k, Q, npar)), np.zeros(npar))
    assert failed == 0
    return value, grad, u


# ============================================================== numpy reference
def _cluster_h(u, beta, lam, y, X, W):
    """-sum log p(y | u) + |u|²/2, its gradient and H = I + sum_j Z_j' A_j Z_j (dense)."""
    M = beta.shape[0]
    q = W.shape[1]
    Z = np.stack([np.kron(np.eye(M), w[None, :]) @ lam for w in W])  # n × M × Q
    eta = X @ beta.T + Z @ u
    full = np.hstack([np.zeros((y.size, 1)), eta])
    lse = np.logaddexp.reduce(full, axis=1)
    yi = y.astype(int)
    value = -np.sum(full[np.arange(y.size), yi] - lse) + u @ u / 2
    pi = np.exp(full - lse[:, None])[:, 1:]
    onehot = np.eye(M + 1)[yi][:, 1:]
    grad = u - np.einsum("jkc,jk->c", Z, onehot - pi)
    A = np.stack([np.diag(p) - np.outer(p, p) for p in pi])
    H = np.eye(M * q) + np.einsum("jkc,jkl,jld->cd", Z, A, Z)
    return value, grad, H


def numpy_laplace(beta, lam, y, X, W, starts):
    """Laplace -loglik per cluster, from scratch: scipy's BFGS for the mode."""
    out = []
    for i in range(starts.size - 1):
        s = slice(starts[i], starts[i + 1])
        args = (beta, lam, y[s], X[s], W[s])
        res = minimize(lambda u, args=args: _cluster_h(u, *args)[:2], np.zeros(lam.shape[0]),
                       jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 500})
        value, _, H = _cluster_h(res.x, *args)
        out.append(value + 0.5 * np.linalg.slogdet(H)[1])
    return np.array(out)


def _h_intercepts(U, beta, lam, y, X, W):
    """-sum log p(y | u) + |u|²/2 at many points U (rows) for random intercepts (W = 1):
    eta_jk = x_j' beta_k + (Lambda u)_k, vectorised over the points."""
    assert W.shape[1] == 1 and np.all(W == 1)
    eta = (X @ beta.T)[None, :, :] + (U @ lam.T)[:, None, :]  # points × n × M
    full = np.concatenate([np.zeros((*eta.shape[:2], 1)), eta], axis=2)
    lse = np.logaddexp.reduce(full, axis=2)
    ll = np.take_along_axis(full, y.astype(int)[None, :, None], axis=2)[:, :, 0] - lse
    return -ll.sum(axis=1) + np.sum(U * U, axis=1) / 2


def exact_minus_loglik(beta, lam, y, X, W, starts, nodes=40):
    """-log of the exact marginal likelihood per cluster by adaptive Gauss–Hermite
    (Q = 2: a tensor grid centred at the mode, scaled by the Laplace curvature)."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-t²/2)
    T = np.array([[a, c] for a in t for c in t])
    logw = np.log(np.array([wa * wc for wa in w for wc in w]))
    out = []
    for i in range(starts.size - 1):
        s = slice(starts[i], starts[i + 1])
        args = (beta, lam, y[s], X[s], W[s])
        res = minimize(lambda u, args=args: _cluster_h(u, *args)[:2], np.zeros(2), jac=True,
                       method="BFGS", options={"gtol": 1e-9})
        H = _cluster_h(res.x, *args)[2]
        C = np.linalg.cholesky(np.linalg.inv(H))
        vals = -_h_intercepts(res.x[None, :] + T @ C.T, *args) + np.sum(T * T, axis=1) / 2
        # ∫ exp(-h(u)) (2 pi)^{-1} du = det C (2 pi)^{-1} ∫ exp(-h(u_hat + C z) + |z|²/2) dN
        log_int = (np.logaddexp.reduce(vals + logw) + np.log(np.linalg.det(C))
                   - np.log(2 * np.pi))
        out.append(-log_int)
    return np.array(out)


K3_BETA = np.array([[0.2, 0.5, -0.3], [-0.3, -0.6, 0.4]])
K3_PSI = np.array([[0.8, 0.3], [0.3, 0.5]])


# ============================================================== (a) log-likelihood
def test_laplace_value_matches_numpy_implementation():
    rng = np.random.default_rng(11)
    y, X, W, _g = simulate(rng, 4, 60, K3_BETA, K3_PSI)
    starts = np.arange(0, y.size + 1, 60)
    lam = np.linalg.cholesky(K3_PSI * 1.2)
    beta = K3_BETA + 0.1
    engine = engine_objective(beta, lam, y, X, W, starts)[0]
    reference = numpy_laplace(beta, lam, y, X, W, starts)
    assert abs(engine - reference.sum()) < 1e-6 * reference.size
    # random slopes, K = 4: Q = 6, still the same formula
    beta4 = np.array([[0.2, 0.5, -0.3], [-0.3, -0.6, 0.4], [0.1, 0.2, 0.3]])
    psi6 = 0.2 * np.eye(6) + 0.1
    y, X, W, _g = simulate(rng, 3, 50, beta4, psi6, q=2)
    starts = np.arange(0, y.size + 1, 50)
    lam = np.linalg.cholesky(psi6)
    engine = engine_objective(beta4, lam, y, X, W, starts)[0]
    reference = numpy_laplace(beta4, lam, y, X, W, starts)
    assert abs(engine - reference.sum()) < 1e-6 * reference.size


def test_laplace_close_to_exact_integral_for_large_clusters():
    """K = 3, random intercepts: the 2-D integral per cluster by brute force."""
    rng = np.random.default_rng(5)
    lam = np.linalg.cholesky(K3_PSI)
    errors = {}
    for n_i in (10, 200):
        y, X, W, _g = simulate(rng, 3, n_i, K3_BETA, K3_PSI)
        starts = np.arange(0, y.size + 1, n_i)
        engine = engine_objective(K3_BETA, lam, y, X, W, starts)[0]
        exact = exact_minus_loglik(K3_BETA, lam, y, X, W, starts)
        if n_i == 200:  # the reference itself: the grid has converged
            finer = exact_minus_loglik(K3_BETA, lam, y, X, W, starts, nodes=60)
            assert np.max(np.abs(finer - exact)) < 1e-8
        errors[n_i] = abs(engine - exact.sum()) / exact.size
    assert errors[200] < 0.01
    assert errors[200] < errors[10]


def test_fitted_loglik_is_the_laplace_value_at_the_estimates():
    rng = np.random.default_rng(3)
    y, X, W, g = simulate(rng, 8, 150, K3_BETA, K3_PSI)
    fit = fit_arrays(y, X, W, g, "multinomial", x_names=["(Intercept)", "x1", "x2"])
    starts = np.arange(0, y.size + 1, 150)
    lam = theta_to_lambda(fit.theta, 2)
    ref = numpy_laplace(fit.beta.reshape(2, 3), lam, y, X, W, starts).sum()
    assert abs(fit.loglik + ref) < 1e-5
    exact = exact_minus_loglik(fit.beta.reshape(2, 3), lam, y, X, W, starts).sum()
    assert abs(fit.loglik + exact) < 0.01 * 8


# ============================================================== (b) gradient
@pytest.mark.parametrize("q", [1, 2, 3])  # 1, 2: the row passes compiled for q; 3: general
def test_gradient_matches_central_differences(q):
    rng = np.random.default_rng(20 + q)
    beta = np.array([[0.2, 0.5, -0.3], [-0.3, -0.6, 0.4], [0.1, 0.2, 0.3]])
    Q = 3 * q
    psi = 0.3 * np.eye(Q) + 0.1
    y, X, W, _g = simulate(rng, 4, 40, beta, psi, q=q)
    starts = np.arange(0, y.size + 1, 40)
    wt = rng.integers(1, 4, y.size).astype(float)  # frequency weights (merged rows)
    lam = np.linalg.cholesky(psi) + np.tril(rng.normal(scale=0.05, size=(Q, Q)), -1)
    theta = np.array([lam[r, c] for c in range(Q) for r in range(c, Q)])
    par = np.concatenate([beta.ravel(), theta])

    def f(par):
        return engine_objective(par[:9].reshape(3, 3), theta_to_lambda(par[9:], Q), y, X,
                                W, starts, wt, want_grad=True)[:2]

    _value, grad = f(par)
    fd = np.empty(par.size)
    for t in range(par.size):
        e = np.zeros(par.size)
        e[t] = 1e-5
        fd[t] = (f(par + e)[0] - f(par - e)[0]) / 2e-5
    assert np.max(np.abs(grad - fd)) < 1e-5 * max(1.0, np.max(np.abs(fd)))


def test_frequency_weights_equal_repeated_rows():
    rng = np.random.default_rng(4)
    y, X, W, _g = simulate(rng, 3, 30, K3_BETA, K3_PSI)
    wt = rng.integers(1, 4, y.size)
    rep = np.repeat(np.arange(y.size), wt)
    starts = np.arange(0, y.size + 1, 30)
    starts_rep = np.concatenate([[0], np.cumsum(np.add.reduceat(wt, starts[:-1]))])
    lam = np.linalg.cholesky(K3_PSI)
    a = engine_objective(K3_BETA, lam, y, X, W, starts, wt.astype(float), True)
    b = engine_objective(K3_BETA, lam, y[rep], X[rep], W[rep], starts_rep, None, True)
    assert abs(a[0] - b[0]) < 1e-9 * abs(b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-8, atol=1e-8)


# ============================================================== K = 2 is the binomial GLMM
def test_two_categories_equal_the_binomial_glmm():
    rng = np.random.default_rng(8)
    y, X, W, g = simulate(rng, 12, 100, K3_BETA[:1], np.array([[0.6]]))
    names = ["(Intercept)", "x1", "x2"]
    mult = fit_arrays(y, X, W, g, "multinomial", x_names=names)
    binom = fit_arrays(y, X, W, g, "binomial", x_names=names)
    assert abs(mult.loglik - binom.loglik) < 1e-6
    np.testing.assert_allclose(mult.beta, binom.beta, atol=2e-4)
    np.testing.assert_allclose(mult.psi, binom.psi, atol=2e-4)
    np.testing.assert_allclose(mult.beta_cov, binom.beta_cov, rtol=2e-3)
    assert list(mult.fixef.index) == ["1:(Intercept)", "1:x1", "1:x2"]


# ============================================================== (c) recovery
def test_recovers_known_parameters():
    """40 clusters × 300 rows, K = 3, random intercept and slope (Q = 4, correlated):
    every fixed effect within 3 SE of the truth (fixed seed); the random-effect SDs
    within 3 × their approximate SE sd / sqrt(2k) (the delta-method SE of an SD
    estimated from k = 40 clusters; k is what limits it)."""
    rng = np.random.default_rng(2025)
    sd = np.array([0.8, 0.4, 0.7, 0.3])
    corr = np.full((4, 4), 0.3) + 0.7 * np.eye(4)
    psi = corr * np.outer(sd, sd)
    y, X, _W, g = simulate(rng, 40, 300, K3_BETA, psi, q=2)
    data = pd.DataFrame({"y": pd.Categorical(np.array(["a", "b", "c"])[y.astype(int)]),
                         "x1": X[:, 1], "x2": X[:, 2], "g": g})
    fit = fit_glmm("y ~ x1 + x2 + (1 + x1 | g)", data, family="multinomial")
    assert fit.converged
    assert list(fit.fixef.index) == ["b:(Intercept)", "b:x1", "b:x2",
                                     "c:(Intercept)", "c:x1", "c:x2"]
    assert list(fit.cov_re.index) == ["b:(Intercept)", "b:x1", "c:(Intercept)", "c:x1"]
    z = (fit.beta - K3_BETA.ravel()) / fit.std_errors.to_numpy()
    assert np.all(np.abs(z) < 3), z
    se_sd = sd / np.sqrt(2 * 40)
    assert np.all(np.abs(fit.sd_re.to_numpy() - sd) < 3 * se_sd), fit.sd_re
    assert fit.levels == ["a", "b", "c"]


# ============================================================== (d) coverage
@pytest.mark.slow
def test_wald_interval_coverage():
    """95 % Wald intervals of the 4 fixed effects over 250 simulated data sets (K = 3,
    30 clusters × 100, correlated random intercepts). The Monte Carlo SE of a coverage
    of 0.95 over 250 data sets is sqrt(0.95 · 0.05 / 250) = 0.0138; we accept
    [0.95 - 3 SE, 0.95 + 3 SE] = [0.909, 0.991] per coefficient."""
    rng = np.random.default_rng(20251202)
    beta = K3_BETA[:, :2]
    reps = 250
    hits = np.zeros(4)
    for _ in range(reps):
        y, X, W, g = simulate(rng, 30, 100, np.hstack([beta, np.zeros((2, 1))]), K3_PSI)
        fit = fit_arrays(y, X[:, :2], W, g, "multinomial", x_names=["(Intercept)", "x1"])
        se = np.sqrt(np.diag(fit.beta_cov))
        hits += np.abs(fit.beta - beta.ravel()) < 1.959964 * se
    coverage = hits / reps
    mc_se = np.sqrt(0.95 * 0.05 / reps)
    assert np.all(np.abs(coverage - 0.95) < 3 * mc_se), coverage


# ============================================================== family functions
def test_probabilities_loglik_and_sampling():
    eta = np.array([[0.0, 0.0], [1.0, -2.0], [800.0, 0.0]])
    prob = FAMILY.probabilities(eta)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    np.testing.assert_allclose(prob[0], [1 / 3] * 3)
    np.testing.assert_allclose(prob[1], np.exp([0, 1, -2]) / np.exp([0, 1, -2]).sum())
    ll = FAMILY.loglik(np.array([0, 1, 1]), eta)
    np.testing.assert_allclose(ll, np.log([1 / 3, prob[1, 1], 1.0]))
    # sampling: frequencies within 4 binomial SE of the probabilities
    rng = np.random.default_rng(1)
    n = 20000
    draws = FAMILY.sample(np.tile([1.0, -2.0], (n, 1)), rng)
    freq = np.bincount(draws.astype(int), minlength=3) / n
    p = prob[1]
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n))


def test_front_end_encodings_agree():
    rng = np.random.default_rng(9)
    y, X, _W, g = simulate(rng, 6, 80, K3_BETA, K3_PSI)
    labels = np.array(["none", "some", "many"])
    base = pd.DataFrame({"x1": X[:, 1], "x2": X[:, 2], "g": g})
    cat = base.assign(y=pd.Categorical(labels[y.astype(int)], categories=labels))
    strings = base.assign(y=labels[y.astype(int)])  # sorted: many < none < some
    codes = base.assign(y=(y * 10).astype(int))
    f_cat = fit_glmm("y ~ x1 + x2 + (1 | g)", cat, family="multinomial")
    f_codes = fit_glmm("y ~ x1 + x2 + (1 | g)", codes, family="multinomial")
    f_str = fit_glmm("y ~ x1 + x2 + (1 | g)", strings, family="multinomial")
    assert f_cat.levels == ["none", "some", "many"]
    assert f_codes.levels == [0, 10, 20]
    assert f_str.levels == ["many", "none", "some"]
    assert f_cat.fixef.index[0] == "some:(Intercept)"
    assert f_codes.fixef.index[3] == "20:(Intercept)"
    np.testing.assert_allclose(f_cat.beta, f_codes.beta)
    assert abs(f_cat.loglik - f_codes.loglik) < 1e-9
    # another reference category: the same model, so the same maximised likelihood
    assert abs(f_str.loglik - f_cat.loglik) < 1e-4
    assert f_cat.ranef.columns.tolist() == ["some:(Intercept)", "many:(Intercept)"]
    assert f_cat.cond_cov.shape == (6, 2, 2)


def test_warm_start_from_previous_fit():
    rng = np.random.default_rng(12)
    y, X, W, g = simulate(rng, 6, 100, K3_BETA, K3_PSI)
    names = ["(Intercept)", "x1", "x2"]
    cold = fit_arrays(y, X, W, g, "multinomial", x_names=names)
    warm = fit_arrays(y, X, W, g, "multinomial", x_names=names, start=cold)
    assert abs(warm.loglik - cold.loglik) < 1e-6
    assert warm.n_eval < cold.n_eval
    assert cold.x_names[3] == "2:(Intercept)"  # unbound family: named by code
    bound = fit_arrays(y, X, W, g, FAMILY.with_levels(["lo", "mid", "hi"]), x_names=names)
    assert bound.x_names[3] == "hi:(Intercept)" and bound.levels == ["lo", "mid", "hi"]
    assert abs(bound.loglik - cold.loglik) < 1e-9


# ============================================================== (e) bad input
def _frame(y):
    n = len(y)
    rng = np.random.default_rng(0)
    return pd.DataFrame({"y": y, "x": rng.standard_normal(n), "g": np.arange(n) % 4})


def test_one_observed_category_is_an_error():
    with pytest.raises(InputError, match=r"'y' has one observed category \(\['a'\]\)"):
        fit_glmm("y ~ x + (1 | g)", _frame(["a"] * 20), family="multinomial")
    with pytest.raises(InputError, match="one observed category"):
        fit_glmm("y ~ x + (1 | g)", _frame(pd.Categorical(["a"] * 20, categories=["a", "b"])),
                 family="multinomial")


def test_more_than_ten_categories_is_an_error():
    y = np.arange(24) % 12
    with pytest.raises(InputError, match=r"more than 10 categories for the multinomial "
                                         r"family: response 'y' has 12"):
        fit_glmm("y ~ x + (1 | g)", _frame(y), family="multinomial")
    with pytest.raises(InputError, match="more than 10 categories"):
        FAMILY.validate_response(y.astype(float), "status")


def test_empty_category_is_an_error():
    y = pd.Categorical(["a", "c"] * 10, categories=["a", "b", "c"])
    with pytest.raises(InputError, match=r"no observation in category\(ies\) \['b'\]"):
        fit_glmm("y ~ x + (1 | g)", _frame(y), family="multinomial")
    with pytest.raises(InputError, match=r"no observation in category\(ies\) \['1'\]"):
        FAMILY.validate_response(np.array([0.0, 2.0, 0.0, 2.0]), "y")


def test_other_bad_input():
    with pytest.raises(InputError, match="non-integer"):
        fit_glmm("y ~ x + (1 | g)", _frame([0.5, 1.0] * 10), family="multinomial")
    rng = np.random.default_rng(1)
    y, X, W, g = simulate(rng, 4, 30, K3_BETA, K3_PSI)
    with pytest.raises(InputError, match=r"nagq=5.*Laplace approximation only"):
        fit_arrays(y, X, W, g, "multinomial", nagq=5)
    assert get_family("multinomial") is FAMILY


def test_predict_probabilities():
    rng = np.random.default_rng(13)
    y, X, _W, g = simulate(rng, 5, 80, K3_BETA, K3_PSI)
    labels = np.array(["a", "b", "c"])
    data = pd.DataFrame({"y": labels[y.astype(int)], "x1": X[:, 1], "x2": X[:, 2], "g": g})
    fit = fit_glmm("y ~ x1 + x2 + (1 | g)", data, family="multinomial")
    prob = fit.predict(data.head(4), type="response")
    assert list(prob.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(prob.sum(axis=1), 1.0)
    # by hand: eta_k = x' beta_k + b_{g,k}
    B = fit.beta.reshape(2, 3)
    eta = X[:4] @ B.T + fit.b[g[:4]]
    np.testing.assert_allclose(fit.predict(data.head(4)).to_numpy(), eta)
    np.testing.assert_allclose(prob.to_numpy(), FAMILY.probabilities(eta))
    pop = fit.predict(data.head(4), include_random=False)
    np.testing.assert_allclose(pop.to_numpy(), X[:4] @ B.T)
