"""Two-stage imputation (2STG): the meta-analysis, the per-study fits, the posterior draw
of a study's coefficients, and the methods end to end.

Monte Carlo tolerances: a mean of N draws is compared with its target within 4.5 of its
standard errors (SE = SD / sqrt(N), per element); a sample covariance element within
4.5 SE with SE = sqrt((S_aa S_bb + S_ab^2) / N) (normal theory). With fixed seeds the
tests are deterministic; the bounds say how far a correct implementation could be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

import mlmi
from mlmi.exceptions import InputError
from mlmi.metaanalysis import mvma
from mlmi.methods import STRATEGIES, Problem, get_method
from mlmi.methods._twostage import (
    SE_THRESHOLD,
    fit_studies,
    posterior_draws,
    prior_draws,
)
from mlmi.methods.base import COMPLETE, SPORADIC, SYSTEMATIC
from mlmi.simulation import ampute, generate

Z_MC = 4.5


def _simulate_ma(rng, k, psi, mean, scale=0.3):
    """k study estimates with random within-study covariances and true Psi."""
    p = psi.shape[0]
    A = rng.standard_normal((k, p, p))
    S = scale * (np.einsum("kab,kcb->kac", A, A) / p + 0.2 * np.eye(p))
    theta = rng.multivariate_normal(mean, psi, size=k)
    y = np.array([rng.multivariate_normal(theta[i], S[i]) for i in range(k)])
    return y, S


# ------------------------------------------------------------ method of moments, p = 1
def test_mm_univariate_is_dersimonian_laird_by_hand():
    # y = (1, 2, 4), v = (1, 1/2, 1/4): w = (1, 2, 4), sum w = 7, fixed mean 21/7 = 3,
    # Q = 1*4 + 2*1 + 4*1 = 10, C = 7 - 21/7 = 4, tau^2 = (10 - 2) / 4 = 2;
    # random-effects weights 1/3, 2/5, 4/9 (sum 53/45): mean 131/53, variance 45/53
    res = mvma([1.0, 2.0, 4.0], [1.0, 0.5, 0.25])
    assert res.psi[0, 0] == pytest.approx(2.0, rel=1e-14)
    assert res.q[0, 0] == pytest.approx(10.0, rel=1e-14)
    assert res.beta[0] == pytest.approx(131 / 53, rel=1e-14)
    assert res.beta_cov[0, 0] == pytest.approx(45 / 53, rel=1e-14)
    assert res.negeigen == 0
    # homogeneous: Q = 0.02 < k - 1 = 2, tau^2 truncated at 0; mean 1, variance 1/3
    res = mvma([1.0, 1.1, 0.9], [1.0, 1.0, 1.0])
    assert res.psi[0, 0] == 0.0 and res.negeigen == 1
    assert res.psi_raw[0, 0] == pytest.approx((0.02 - 2) / (3 - 1), rel=1e-12)
    assert res.beta[0] == pytest.approx(1.0, rel=1e-14)
    assert res.beta_cov[0, 0] == pytest.approx(1 / 3, rel=1e-14)


def test_mm_univariate_equals_dersimonian_laird_formula():
    rng = np.random.default_rng(1)
    for _ in range(20):
        k = int(rng.integers(2, 30))
        v = rng.uniform(0.05, 2.0, k)
        y = rng.normal(0.0, np.sqrt(v + rng.uniform(0, 1)))
        w = 1 / v
        ybar = np.sum(w * y) / w.sum()
        q = np.sum(w * (y - ybar) ** 2)
        tau2 = max(0.0, (q - (k - 1)) / (w.sum() - np.sum(w**2) / w.sum()))
        wr = 1 / (v + tau2)
        res = mvma(y[:, None], v[:, None, None])
        assert res.psi[0, 0] == pytest.approx(tau2, rel=1e-12, abs=1e-15)
        assert res.beta[0] == pytest.approx(np.sum(wr * y) / wr.sum(), rel=1e-12)
        assert res.beta_cov[0, 0] == pytest.approx(1 / wr.sum(), rel=1e-12)


# ------------------------------------------------------- method of moments, multivariate
def _mm_block_trace(y, S):
    """Jackson, White & Riley's (2013) estimator in its general matrix form, built by
    brute force: with the stacked data (kp), X = 1_k ⊗ I_p, W = blockdiag(S_i^{-1}),
    H = X (X'WX)^{-1} X'W, Q = btr(W (I-H) y y' (I-H)'), and E[Q] = btr(W (I-H) S (I-H)')
    + sum_ab Psi_ab btr(W (I-H) (I_k ⊗ E_ab) (I-H)'), solved for vec(Psi)."""
    k, p = y.shape
    X = np.kron(np.ones((k, 1)), np.eye(p))
    W = np.zeros((k * p, k * p))
    Sbig = np.zeros_like(W)
    for i in range(k):
        W[i * p:(i + 1) * p, i * p:(i + 1) * p] = np.linalg.inv(S[i])
        Sbig[i * p:(i + 1) * p, i * p:(i + 1) * p] = S[i]
    H = X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    M = np.eye(k * p) - H

    def btr(A):
        return sum(A[i * p:(i + 1) * p, i * p:(i + 1) * p] for i in range(k))

    yv = y.reshape(-1)
    Q = btr(W @ M @ np.outer(yv, yv) @ M.T)
    B = btr(W @ M @ Sbig @ M.T)
    cols = []
    for a in range(p):
        for b in range(p):
            E = np.zeros((p, p))
            E[a, b] = 1.0
            cols.append(btr(W @ M @ np.kron(np.eye(k), E) @ M.T).reshape(-1))
    raw = np.linalg.solve(np.column_stack(cols), (Q - B).reshape(-1)).reshape(p, p)
    raw = 0.5 * (raw + raw.T)
    lam, V = np.linalg.eigh(raw)
    return Q, raw, (V * np.clip(lam, 0, None)) @ V.T


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_mm_matches_general_block_trace_form(seed):
    rng = np.random.default_rng(seed)
    psi = np.array([[0.8, 0.3, -0.05], [0.3, 0.5, 0.02], [-0.05, 0.02, 0.05]])
    y, S = _simulate_ma(rng, 9, psi, np.array([0.5, -1.0, 2.0]))
    Q, raw, psi_mm = _mm_block_trace(y, S)
    res = mvma(y, S, "mm")
    np.testing.assert_allclose(res.q, Q, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.psi_raw, raw, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.psi, psi_mm, rtol=1e-8, atol=1e-10)
    assert np.linalg.eigvalsh(res.psi)[0] >= -1e-12


def test_mm_invariant_to_linear_transformation():
    # y -> A y, S -> A S A' gives Psi -> A Psi A' (Chen et al. 2012; Jackson et al. 2013)
    rng = np.random.default_rng(6)
    psi = np.array([[1.0, 0.4], [0.4, 0.6]])
    y, S = _simulate_ma(rng, 12, psi, np.zeros(2))
    A = np.array([[2.0, 1.0], [-0.5, 1.5]])
    r1 = mvma(y, S)
    r2 = mvma(y @ A.T, np.einsum("ab,kbc,dc->kad", A, S, A))
    np.testing.assert_allclose(r2.psi_raw, A @ r1.psi_raw @ A.T, rtol=1e-9, atol=1e-12)
    # Sylvester's law of inertia: as many negative eigenvalues are truncated; with none,
    # the pooled mean is equivariant too
    assert r1.negeigen == r2.negeigen == 0
    np.testing.assert_allclose(r2.beta, A @ r1.beta, rtol=1e-9, atol=1e-12)


def test_mm_unbiased_for_psi_over_replications():
    """The untruncated moment estimate is exactly unbiased; the pooled mean too."""
    rng = np.random.default_rng(6)
    psi = np.array([[0.5, 0.2], [0.2, 0.3]])
    mean = np.array([1.0, -0.5])
    p = 2
    A = rng.standard_normal((10, p, p))
    S = 0.4 * (np.einsum("kab,kcb->kac", A, A) / p + 0.2 * np.eye(p))  # fixed design
    n_rep = 3000
    raws = np.empty((n_rep, p, p))
    betas = np.empty((n_rep, p))
    Ls = np.linalg.cholesky(S)
    Lp = np.linalg.cholesky(psi)
    for r in range(n_rep):
        theta = mean + rng.standard_normal((10, p)) @ Lp.T
        y = theta + np.einsum("kab,kb->ka", Ls, rng.standard_normal((10, p)))
        res = mvma(y, S)
        raws[r], betas[r] = res.psi_raw, res.beta
    for est, true in ((raws, psi), (betas, mean)):
        m = est.mean(axis=0)
        se = est.std(axis=0, ddof=1) / np.sqrt(n_rep)
        assert np.all(np.abs(m - true) <= Z_MC * se), (m, true, se)


# --------------------------------------------------------------- REML / ML, independent
def _dense_loglik(theta, y, S, reml):
    """The (restricted) log-likelihood from the stacked kp-vector with a dense
    block-diagonal covariance; Psi = L L' with L = [[e^a, 0, ..], [b, e^c, ..]]
    (log-Cholesky, a different parameterisation from mlmi's)."""
    k, p = y.shape
    L = np.zeros((p, p))
    L[np.tril_indices(p)] = theta[: p * (p + 1) // 2]
    L[np.diag_indices(p)] = np.exp(np.diag(L))
    psi = L @ L.T
    V = np.zeros((k * p, k * p))
    for i in range(k):
        V[i * p:(i + 1) * p, i * p:(i + 1) * p] = S[i] + psi
    X = np.kron(np.ones((k, 1)), np.eye(p))
    yv = y.reshape(-1)
    Vi = np.linalg.inv(V)
    if reml:
        beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ yv)
    else:
        beta = theta[p * (p + 1) // 2:]  # ML: maximised jointly with Psi
    r = yv - X @ beta
    out = -0.5 * (np.linalg.slogdet(V)[1] + r @ Vi @ r + (k * p - reml * p) * np.log(2 * np.pi))
    if reml:
        out -= 0.5 * np.linalg.slogdet(X.T @ Vi @ X)[1]
    return out, psi


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_reml_ml_match_direct_maximisation(method):
    rng = np.random.default_rng(7)
    psi_true = np.array([[1.0, 0.5, 0.2], [0.5, 0.8, -0.2], [0.2, -0.2, 0.6]])
    y, S = _simulate_ma(rng, 25, psi_true, np.array([0.0, 1.0, -1.0]), scale=0.2)
    reml = method == "reml"
    p = 3
    nt = p * (p + 1) // 2 + (0 if reml else p)
    best = None
    for start in range(4):
        x0 = np.zeros(nt) if start == 0 else rng.normal(0, 0.5, nt)
        opt = minimize(lambda t: -_dense_loglik(t, y, S, reml)[0], x0, method="BFGS",
                       options={"gtol": 1e-9, "maxiter": 5000})
        if best is None or opt.fun < best.fun:
            best = opt
    ll, psi_direct = _dense_loglik(best.x, y, S, reml)
    res = mvma(y, S, method)
    assert res.converged
    # same maximum (mlmi may only be higher) and the same maximiser
    assert res.loglik == pytest.approx(ll, abs=1e-8)
    np.testing.assert_allclose(res.psi, psi_direct, atol=1e-5)
    assert np.linalg.eigvalsh(res.psi)[0] > 0.05  # an interior maximum: a fair comparison
    if not reml:
        np.testing.assert_allclose(res.beta, best.x[-p:], atol=1e-5)
    # beta_cov = (sum (S_i + Psi)^{-1})^{-1} at the estimate
    expect = np.linalg.inv(np.linalg.inv(S + res.psi).sum(axis=0))
    np.testing.assert_allclose(res.beta_cov, expect, rtol=1e-10)
    # the Hessian is that of the log-likelihood at its maximum: negative definite
    assert np.all(np.linalg.eigvalsh(res.hessian) < 0)


def test_reml_psi_draws_centre_on_estimate():
    rng = np.random.default_rng(8)
    psi_true = np.array([[1.0, 0.3], [0.3, 0.5]])
    y, S = _simulate_ma(rng, 40, psi_true, np.zeros(2), scale=0.1)
    res = mvma(y, S, "reml")
    draws = np.array([res.draw_psi(rng)[0] for _ in range(4000)])
    # par* ~ N(par, (-H)^{-1}) and Psi* = L* L*' : E[Psi*] = Psi + E[dL dL'] (second
    # order); the draws' mean is within a few SE of Psi plus that known shift
    cov = np.linalg.inv(-res.hessian)
    rows, cols = np.triu_indices(2)[1], np.triu_indices(2)[0]
    shift = np.zeros((2, 2))
    for a in range(3):
        for b in range(3):
            Ea = np.zeros((2, 2))
            Eb = np.zeros((2, 2))
            Ea[rows[a], cols[a]] = 1
            Eb[rows[b], cols[b]] = 1
            shift += cov[a, b] * Ea @ Eb.T
    m = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(m - (res.psi + shift)) <= Z_MC * se)
    mm = mvma(y, S, "mm")  # the method of moments: Psi* = Psi_hat (micemd)
    np.testing.assert_array_equal(mm.draw_psi(rng)[0], mm.psi)


def test_mvma_edge_cases():
    one = mvma(np.array([[1.0, 2.0]]), np.array([np.eye(2)]))
    assert np.all(one.psi == 0) and one.warnings
    np.testing.assert_allclose(one.beta, [1.0, 2.0])
    with pytest.raises(InputError, match="shape"):
        mvma(np.zeros((3, 2)), np.zeros((3, 3, 3)))
    with pytest.raises(InputError, match="positive definite"):
        mvma(np.zeros((3, 2)), np.zeros((3, 2, 2)))
    with pytest.raises(InputError, match="method"):
        mvma(np.zeros(3), np.ones(3), method="dl")


# ------------------------------------------------------------------ posterior draws
def test_posterior_draw_matches_closed_form():
    rng = np.random.default_rng(9)
    beta_star = np.array([0.2, -1.0, 0.5])
    psi = np.array([[0.9, 0.3, 0.1], [0.3, 0.4, 0.0], [0.1, 0.0, 0.2]])
    est = np.array([1.0, -0.4, 0.9])
    V = np.array([[0.3, 0.05, 0.0], [0.05, 0.2, 0.02], [0.0, 0.02, 0.5]])
    n = 40000
    draws = posterior_draws(beta_star, psi, np.tile(est, (n, 1)),
                            np.tile(np.linalg.inv(V), (n, 1, 1)), rng)
    cov = np.linalg.inv(np.linalg.inv(psi) + np.linalg.inv(V))
    mean = cov @ (np.linalg.solve(psi, beta_star) + np.linalg.solve(V, est))
    _check_normal(draws, mean, cov)


def test_posterior_draw_with_singular_psi():
    """Zero between-study variance in a direction: the posterior sits on beta* there."""
    rng = np.random.default_rng(10)
    beta_star = np.array([0.5, -0.5, 1.0])
    v = np.array([1.0, 0.5, 0.0])
    psi = 0.8 * np.outer(v, v)  # rank 1
    est = np.array([2.0, 1.0, 3.0])
    V = np.array([[0.4, 0.1, 0.0], [0.1, 0.3, 0.1], [0.0, 0.1, 0.2]])
    n = 40000
    draws = posterior_draws(beta_star, psi, np.tile(est, (n, 1)),
                            np.tile(np.linalg.inv(V), (n, 1, 1)), rng)
    # every draw is beta* + t v exactly
    dev = draws - beta_star
    t = dev @ v / (v @ v)
    np.testing.assert_allclose(dev - np.outer(t, v), 0.0, atol=1e-12)
    # t: prior N(0, 0.8), "data" est - beta* = t v + e, e ~ N(0, V)
    prec = 1 / 0.8 + v @ np.linalg.solve(V, v)
    t_mean = (v @ np.linalg.solve(V, est - beta_star)) / prec
    _check_normal(t[:, None], np.array([t_mean]), np.array([[1 / prec]]))
    # the limit of the brief's formula as Psi -> singular
    eps = 1e-9
    pe = psi + eps * np.eye(3)
    cov_e = np.linalg.inv(np.linalg.inv(pe) + np.linalg.inv(V))
    mean_e = cov_e @ (np.linalg.solve(pe, beta_star) + np.linalg.solve(V, est))
    np.testing.assert_allclose(beta_star + t_mean * v, mean_e, atol=1e-6)
    np.testing.assert_allclose(np.outer(v, v) / prec, cov_e, atol=1e-6)
    # Psi = 0: every draw is beta*
    zero = posterior_draws(beta_star, np.zeros((3, 3)), est[None], np.linalg.inv(V)[None], rng)
    np.testing.assert_array_equal(zero[0], beta_star)


def test_prior_draws():
    rng = np.random.default_rng(11)
    psi = np.array([[0.5, 0.2], [0.2, 0.3]])
    draws = prior_draws(np.array([1.0, 2.0]), psi, 40000, rng)
    _check_normal(draws, np.array([1.0, 2.0]), psi)


def _check_normal(draws, mean, cov):
    n = draws.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(draws.mean(axis=0) - mean) <= Z_MC * se_mean)
    d = np.diag(cov)
    se_cov = np.sqrt((np.outer(d, d) + cov**2) / n)
    assert np.all(np.abs(np.cov(draws.T).reshape(cov.shape) - cov) <= Z_MC * se_cov)


# ------------------------------------------------------------------ per-study fits
def _problem(y, ry, x, cluster, status=None, seed=0, vtype="binary"):
    K = int(cluster.max()) + 1
    if status is None:
        status = np.array([COMPLETE if ry[cluster == c].all() else
                           SYSTEMATIC if not ry[cluster == c].any() else SPORADIC
                           for c in range(K)])
    return Problem(variable="z", vtype=vtype, y=y.astype(float), ry=ry, wy=~ry, x=x,
                   x_names=[f"x{j}" for j in range(x.shape[1])],
                   type=np.ones(x.shape[1], dtype=int), cluster=cluster,
                   cluster_labels=np.array([f"s{c}" for c in range(K)]), status=status,
                   rng=np.random.default_rng(seed))


def test_per_study_glm_matches_single_study_fits():
    from mlmi.glm import fit_glm

    rng = np.random.default_rng(12)
    n, K = 1200, 6
    cluster = np.repeat(np.arange(K), n // K)
    X = np.column_stack([np.ones(n), rng.standard_normal(n), rng.poisson(1.0, n)])
    for family, draw in (("binomial", lambda e: rng.random(n) < 1 / (1 + np.exp(-e))),
                         ("poisson", lambda e: rng.poisson(np.exp(e)))):
        eta = X @ np.array([-0.5, 0.8, 0.2]) + rng.normal(0, 0.5, K)[cluster]
        y = draw(eta).astype(float)
        fits = fit_studies(y, X, cluster, family)
        assert list(fits.studies) == list(range(K)) and not fits.dropped
        for c in range(K):
            ref = fit_glm(y[cluster == c], X[cluster == c], family)
            np.testing.assert_allclose(fits.est[c], ref.beta, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(fits.cov[c], ref.cov, rtol=1e-5)
    y = X @ np.array([1.0, 2.0, -1.0]) + rng.standard_normal(n)
    fits = fit_studies(y, X, cluster, "gaussian")
    for c in range(K):
        ref = fit_glm(y[cluster == c], X[cluster == c], "gaussian")
        np.testing.assert_allclose(fits.est[c], ref.beta, rtol=1e-10)
        np.testing.assert_allclose(fits.cov[c], ref.cov, rtol=1e-10)
        assert fits.sigma2[c] == pytest.approx(ref.sigma**2, rel=1e-10)


def test_separated_and_small_studies_are_dropped_and_counted():
    rng = np.random.default_rng(13)
    K, n_i = 6, 80
    cluster = np.repeat(np.arange(K), n_i)
    x = rng.standard_normal((K * n_i, 1))
    z = (rng.random(K * n_i) < 1 / (1 + np.exp(-(0.3 + x[:, 0])))).astype(float)
    sep = cluster == 2
    z[sep] = (x[sep, 0] > 0).astype(float)  # study s2: complete separation
    ry = rng.random(K * n_i) > 0.2
    small = np.flatnonzero(cluster == 4)
    ry[small] = False
    ry[small[0]] = True  # study s4: one observed row for two coefficients
    ry[cluster == 5] = False  # study s5: systematically missing
    fits = fit_studies(z[ry], np.column_stack([np.ones(ry.sum()), x[ry]]), cluster[ry],
                       "binomial")
    assert set(fits.dropped) == {2, 4}
    assert "separated" in fits.dropped[2] and "1 observed row" in fits.dropped[4]
    assert list(fits.studies) == [0, 1, 3]
    draw = get_method("2l.2stage.bin").func(_problem(np.where(ry, z, 0.0), ry, x, cluster))
    info = draw.info
    assert info["dropped_studies"] == 2 and info["dropped_sporadic"] == 2
    assert info["n_sporadic"] == 5 and info["n_systematic"] == 1
    assert sum("[dropped] study 's2'" in w for w in info["fit_warnings"]) == 1
    assert sum("[dropped] study 's4'" in w for w in info["fit_warnings"]) == 1
    assert draw.values.shape == ((~ry).sum(),) and set(np.unique(draw.values)) <= {0, 1}


def test_all_zero_count_study_dropped_by_se_rule():
    rng = np.random.default_rng(14)
    K, n_i = 5, 60
    cluster = np.repeat(np.arange(K), n_i)
    x = rng.standard_normal((K * n_i, 1))
    z = rng.poisson(np.exp(0.2 + 0.3 * x[:, 0])).astype(float)
    z[cluster == 1] = 0.0
    fits = fit_studies(z, np.column_stack([np.ones(K * n_i), x]), cluster, "poisson")
    assert set(fits.dropped) == {1}
    assert "separated" in fits.dropped[1] and f"> {SE_THRESHOLD:g}" in fits.dropped[1]


def test_no_usable_study_falls_back_to_pooled_model():
    rng = np.random.default_rng(15)
    K, n_i = 4, 50
    cluster = np.repeat(np.arange(K), n_i)
    x = rng.standard_normal((K * n_i, 1))
    z = (x[:, 0] + rng.normal(0, 1, K * n_i) > 0).astype(float)
    ry = np.zeros(K * n_i, dtype=bool)
    for c in range(K - 1):
        ry[np.flatnonzero(cluster == c)[:1]] = True  # one row each: every fit dropped
    draw = get_method("2l.2stage.bin").func(_problem(np.where(ry, z, 0), ry, x, cluster))
    assert draw.info["dropped_studies"] == 3 and draw.info["n_fitted_studies"] == 0
    assert any("pooled" in w for w in draw.info["fit_warnings"])
    assert np.all(np.isin(draw.values, [0, 1]))


def test_norm_method_draws_study_sigma():
    """2l.2stage.norm: a sporadic study with a small residual SD keeps it."""
    rng = np.random.default_rng(16)
    K, n_i = 8, 200
    cluster = np.repeat(np.arange(K), n_i)
    x = rng.standard_normal((K * n_i, 1))
    sd = np.where(np.arange(K) == 0, 0.2, 2.0)[cluster]
    z = 1.0 + 0.5 * x[:, 0] + sd * rng.standard_normal(K * n_i)
    ry = rng.random(K * n_i) > 0.3
    ry[cluster == 7] = False
    prob = _problem(np.where(ry, z, 0.0), ry, x, cluster, vtype="continuous")
    draw = get_method("2l.2stage.norm").func(prob)
    miss = ~ry
    resid = draw.values - (1.0 + 0.5 * x[miss, 0])
    s0 = resid[cluster[miss] == 0].std()
    s1 = resid[cluster[miss] == 1].std()
    assert 0.1 < s0 < 0.4 and 1.5 < s1 < 2.6
    assert draw.info["n_systematic"] == 1 and draw.info["dropped_studies"] == 0
    draw = get_method("2l.2stage.norm.reml").func(prob)
    assert np.all(np.isfinite(draw.values))


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def paper_data() -> pd.DataFrame:
    rng = np.random.default_rng(21)
    complete = generate("binary", "moderate", 10, rng, n_total=1000)
    return ampute(complete, 0.3, "mar", rng)


def test_strategy_registered():
    assert STRATEGIES["2stage"] == {"binary": "2l.2stage.bin", "count": "2l.2stage.pois",
                                    "continuous": "2l.2stage.norm",
                                    "ordinal": "2l.2stage.polr",
                                    "nominal": "2l.2stage.polyreg"}
    for name in ("2l.2stage.bin", "2l.2stage.pois", "2l.2stage.norm",
                 "2l.2stage.bin.reml", "2l.2stage.pois.reml", "2l.2stage.norm.reml"):
        assert get_method(name).multilevel


def test_impute_2stage_end_to_end(paper_data):
    before = paper_data.copy(deep=True)
    imp = mlmi.impute(paper_data, "st", m=2, maxit=3, method="2stage", seed=4)
    pd.testing.assert_frame_equal(paper_data, before)
    assert imp.plan.methods == {"x1": "2l.2stage.bin", "x2": "2l.2stage.pois"}
    observed = paper_data.notna()
    for i in (1, 2):
        done = imp.complete(i)
        assert not done.isna().any().any()
        for col in paper_data.columns:
            np.testing.assert_array_equal(done.loc[observed[col], col],
                                          paper_data.loc[observed[col], col])
        assert set(done["x1"].unique()) <= {0, 1} and (done["x2"] >= 0).all()
    d = imp.diagnostics
    assert len(d) == 2 * 3 * 2
    for key in ("n_sporadic", "n_systematic", "dropped_studies", "psi_floored",
                "fit_converged", "n_fit_warnings", "seconds"):
        assert key in d and d[key].notna().all()
    assert (d["n_systematic"] == 3).all() and (d["n_sporadic"] == 7).all()
    fits = imp.analyze("y ~ x1 + x2 + (1 + x1 | st)", "binomial").pool()
    assert np.all(np.isfinite(fits["estimate"]))
    # the same seed gives the same numbers
    again = mlmi.impute(paper_data, "st", m=2, maxit=3, method="2stage", seed=4)
    for v in ("x1", "x2"):
        np.testing.assert_array_equal(imp.imputations[v], again.imputations[v])


def test_impute_2stage_reml_by_name(paper_data):
    imp = mlmi.impute(paper_data, "st", m=1, maxit=2, seed=5,
                      method={"x1": "2l.2stage.bin.reml", "x2": "2l.2stage.pois.reml"})
    d = imp.diagnostics
    assert set(d["method"]) == {"2l.2stage.bin.reml", "2l.2stage.pois.reml"}
    assert (d["psi_floored"] == 0).all()
