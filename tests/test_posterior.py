"""Posterior draws of a study's random effects (mlmi.posterior) against independent references.

References are computed from the model's definition with numpy/scipy only: the posterior
p(b | y) ∝ N(b; 0, Psi) prod_j p(y_j | x_j'beta + w_j'b) is integrated on a dense grid
(q = 1, 2, 3) in coordinates whitened at its mode (mode and curvature from
``scipy.optimize``), and the gaussian posterior by the textbook n × n formula.

Tolerances, and where they come from (N = number of draws, all iid for the exact
samplers):

* means: within 4 Monte Carlo standard errors, SE = posterior SD / sqrt(N); a correct
  sampler fails one such comparison with probability 6e-5 (the seeds are fixed anyway).
* SDs: within 5 % (the SE of an SD estimate is about SD / sqrt(2N): 0.5 % at N = 20 000,
  so 5 % is ~10 SE and still catches an envelope or covariance error of a few %).
* correlations: within 0.03 (SE ≈ (1 - rho²)/sqrt(N) <= 0.0071 at N = 20 000: 4 SE).
* grid references: a 361-point rule per axis over ±12 Laplace SDs (Riemann sums of a
  smooth, rapidly decaying density: error far below 1e-6); each reference checks that
  the density at the edge of its box is < 1e-12 of its maximum.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from mlmi import posterior
from mlmi.exceptions import InputError
from mlmi.glmm.families import get_family
from mlmi.posterior import (
    _BOUND_TOL,
    _FLAT_MARGIN,
    NU_T,
    SamplerStats,
    _factor,
    _Study,
    draw_many,
    draw_random_effects,
)

N_DRAWS = 20_000
PSI_STRONG = np.array([[2.75, -1.82], [-1.82, 2.85]])
PSI_MODERATE = np.array([[0.75, -0.30], [-0.30, 0.85]])
BETA_PAPER = np.array([-1.85, 1.05, -0.04])


# ============================================================== independent references
def _loglik(family, y, eta):
    if family == "binomial":
        return y * eta - np.logaddexp(0.0, eta)
    return y * eta - np.exp(eta)


def _mean_fn(family, eta):
    return expit(eta) if family == "binomial" else np.exp(eta)


def posterior_grid(family, y, X, W, beta, psi, half=12.0, npts=361):
    """Mean and covariance of p(b | y) by a dense grid (q = 1, 2 or 3), plus the mode
    and the inverse curvature at the mode (the Laplace covariance)."""
    q = W.shape[1]
    pinv = np.linalg.inv(psi)
    xb = X @ beta

    def f(b):
        eta = xb + W @ b
        return -_loglik(family, y, eta).sum() + 0.5 * b @ pinv @ b

    def g(b):
        eta = xb + W @ b
        return -W.T @ (y - _mean_fn(family, eta)) + pinv @ b

    opt = minimize(f, np.zeros(q), jac=g, method="BFGS", options={"gtol": 1e-10})
    bhat = opt.x
    eta = xb + W @ bhat
    mu = _mean_fn(family, eta)
    d = mu * (1 - mu) if family == "binomial" else mu
    Hb = pinv + (W * d[:, None]).T @ W
    laplace_cov = np.linalg.inv(Hb)
    R = np.linalg.cholesky(laplace_cov)
    axis = np.linspace(-half, half, npts)
    S = np.stack(np.meshgrid(*([axis] * q), indexing="ij"), -1).reshape(-1, q)
    B = bhat + S @ R.T
    logd = np.empty(B.shape[0])
    for lo in range(0, B.shape[0], 4000):
        Bc = B[lo:lo + 4000]
        E = xb[None, :] + Bc @ W.T
        logd[lo:lo + 4000] = (_loglik(family, y[None, :], E).sum(1)
                              - 0.5 * np.einsum("ij,jk,ik->i", Bc, pinv, Bc))
    w = np.exp(logd - logd.max())
    edge = np.any(np.abs(S) >= half - 1e-9, axis=1)
    assert w[edge].max() < 1e-12, "grid box too small for this posterior"
    w /= w.sum()
    mean = w @ B
    C = B - mean
    cov = (C * w[:, None]).T @ C
    return mean, cov, bhat, laplace_cov


def assert_moments(draws, mean, cov, n_se=4.0, sd_rtol=0.05, corr_atol=0.03):
    n = draws.shape[0]
    sd = np.sqrt(np.diag(cov))
    se = sd / np.sqrt(n)
    dmean = draws.mean(0)
    assert np.all(np.abs(dmean - mean) <= n_se * se), (dmean, mean, se)
    dsd = draws.std(0, ddof=1)
    np.testing.assert_allclose(dsd, sd, rtol=sd_rtol)
    q = draws.shape[1]
    if q > 1:
        dcorr = np.corrcoef(draws.T)
        corr = cov / np.outer(sd, sd)
        iu = np.triu_indices(q, 1)
        np.testing.assert_allclose(dcorr[iu], corr[iu], atol=corr_atol)


def assert_exact_matches_grid(args, seed, **grid):
    """N_DRAWS exact draws of one study against its posterior by quadrature (``grid``:
    options of posterior_grid); the envelope's bound is never exceeded."""
    mean, cov, _, _ = posterior_grid(*args, **grid)
    stats = SamplerStats()
    draws = draw_random_effects(*args, N_DRAWS, np.random.default_rng(seed), stats=stats)
    assert_moments(draws, mean, cov)
    assert stats.bound_exceeded == 0


# ============================================================== the validation studies
def study_large_strong():
    """(a) 300 participants, binomial, strong heterogeneity: x1 binary, x2 ~ Poisson(1),
    random intercept and slope on x1 (rows merge: only ~25 distinct (y, x1, x2))."""
    rng = np.random.default_rng(20250101)
    n = 300
    x1 = rng.binomial(1, expit(0.4), n).astype(float)
    x2 = rng.poisson(1.0, n).astype(float)
    X = np.column_stack([np.ones(n), x1, x2])
    W = X[:, :2].copy()
    b_true = np.array([1.2, -0.8])
    y = (rng.random(n) < expit(X @ BETA_PAPER + W @ b_true)).astype(float)
    return "binomial", y, X, W, BETA_PAPER, PSI_STRONG


def study_small_zero():
    """(b) 15 rows, binomial, all responses 0 (skewed posterior, heavy left tail)."""
    rng = np.random.default_rng(7)
    n = 15
    x1 = rng.binomial(1, 0.6, n).astype(float)
    x2 = rng.poisson(1.0, n).astype(float)
    X = np.column_stack([np.ones(n), x1, x2])
    return "binomial", np.zeros(n), X, X[:, :2].copy(), BETA_PAPER, PSI_STRONG


def study_poisson():
    """(c) 60 rows, Poisson, continuous covariate with a random slope (no rows merge)."""
    rng = np.random.default_rng(11)
    n = 60
    x = rng.standard_normal(n)
    z = rng.binomial(1, 0.5, n).astype(float)
    X = np.column_stack([np.ones(n), x, z])
    W = X[:, :2].copy()
    beta = np.array([0.1, 0.3, -0.2])
    y = rng.poisson(np.exp(X @ beta + W @ np.array([-0.6, 0.5]))).astype(float)
    return "poisson", y, X, W, beta, PSI_MODERATE


CASES = {"large_strong": study_large_strong, "small_zero": study_small_zero,
         "poisson": study_poisson}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    args = CASES[request.param]()
    return request.param, args, posterior_grid(*args)


# ============================================================== exact sampler
def test_exact_matches_quadrature(case):
    _, args, (mean, cov, _, _) = case
    stats = SamplerStats()
    draws = draw_random_effects(*args, N_DRAWS, np.random.default_rng(1), stats=stats)
    assert draws.shape == (N_DRAWS, 2)
    assert_moments(draws, mean, cov)
    assert stats.n_draws == stats.accepted == N_DRAWS
    assert stats.bound_exceeded == 0
    assert stats.fallbacks == 0
    # the envelope stays efficient (measured 0.60-0.80 on these studies)
    assert stats.acceptance_rate() > 0.5


def _r_numpy(st: _Study, T):
    """log target/envelope ratio r(t) of study 0 of ``st`` (see mlmi.posterior) at the
    rows of T, with numpy."""
    a, b = st.starts[0], st.starts[1]
    q = T.shape[1]
    fam = "binomial" if st.code == 1 else "poisson"
    out = np.empty(T.shape[0])
    for lo in range(0, T.shape[0], 20000):
        Tc = T[lo:lo + 20000]
        eta = st.eta0[a:b][None, :] + Tc @ st.Zt[a:b].T
        ll = (st.wt[a:b] * _loglik(fam, st.y[a:b][None, :], eta)).sum(1)
        V = st.U[0] + Tc @ st.B[0].T
        prior = (V ** 2).sum(1) - (st.U[0] ** 2).sum()
        out[lo:lo + 20000] = (ll - st.llmode[0] - 0.5 * prior
                              + 0.5 * (NU_T + q) * np.log1p((Tc ** 2).sum(1) / NU_T))
    return out


def _r_max_brute(st: _Study):
    """max r over a dense polar grid (q = 2, radius <= 7) or 400 000 uniform points in
    the ball of radius 9 (q = 3)."""
    q = st.Zt.shape[1]
    if q == 2:
        rho = np.linspace(0, 7.0, 281)[1:]
        ang = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        R, A = np.meshgrid(rho, ang, indexing="ij")
        T = np.column_stack([(R * np.cos(A)).ravel(), (R * np.sin(A)).ravel()])
    else:
        g = np.random.default_rng(0)
        T = g.standard_normal((400_000, q))
        T *= (9.0 * g.random(400_000) ** (1 / q) / np.linalg.norm(T, axis=1))[:, None]
    return _r_numpy(st, T).max()


def _envelope(family, y, X, W, beta, psi):
    st = _Study(get_family(family), y, X, W, np.array([0, len(y)]), beta, _factor(psi))
    st.modes()
    st.envelopes()
    return st


def test_exact_bound_is_the_maximum(case):
    """The optimised bound log M is >= max r over a dense grid, and tight."""
    _, args, _ = case
    st = _envelope(*args)
    grid_max = _r_max_brute(st)
    assert st.logM[0] >= grid_max - 1e-9
    # margins: the last Newton decrement (<= _BOUND_TOL) + _FLAT_MARGIN on a flat ring
    assert st.logM[0] <= grid_max + _BOUND_TOL + _FLAT_MARGIN


def test_merged_rows_give_the_same_posterior():
    family, y, X, W, beta, psi = study_large_strong()
    st = [_Study(get_family(family), y, X, W, np.array([0, len(y)]), beta, _factor(psi),
                 merge=m) for m in (True, False)]
    assert st[0].y.shape[0] < 60 and st[1].y.shape[0] == 300  # rows were merged
    for s in st:
        s.modes()
        s.envelopes()
    np.testing.assert_allclose(st[0].U, st[1].U, atol=1e-5)  # Newton stops at ~1e-6
    np.testing.assert_allclose(st[0].llmode, st[1].llmode, rtol=1e-9)
    np.testing.assert_allclose(st[0].logM, st[1].logM, atol=0.02)


def study_wall_q2():
    """5 rows, one event, large Psi: the likelihood is a "wall", steep on one side and
    flat on the other, and the maximum of r lies where the Taylor model is poor."""
    X = np.array([[1, 0, 1], [1, 1, 4], [1, 1, 1], [1, 0, 0], [1, 1, 2]], dtype=float)
    return ("binomial", np.array([0, 0, 0, 1, 0], dtype=float), X, X[:, :2].copy(),
            np.array([0.5, 0.37, -0.32]), np.array([[5.67, -4.93], [-4.93, 7.08]]))


def study_wall_q3():
    """20 rows, all responses 1, three random effects (intercept, binary and continuous
    slopes) with large variances."""
    x1 = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0], dtype=float)
    x2 = np.array([-0.13, 0.21, 1.24, -0.25, 2.18, 0.95, 0.25, -0.10, 0.39, -2.15,
                   -1.47, -0.19, 0.36, -0.25, 0.55, 0.82, -0.21, 0.26, 0.24, 0.94])
    X = np.column_stack([np.ones(20), x1, x2])
    psi = np.array([[5.82, 0.74, 2.91], [0.74, 1.16, 0.31], [2.91, 0.31, 2.49]])
    return "binomial", np.ones(20), X, X.copy(), np.array([-1.3, 0.32, 0.11]), psi


@pytest.mark.parametrize("make", [study_wall_q2, study_wall_q3], ids=["q2", "q3"])
def test_exact_on_a_wall(make, monkeypatch):
    """Where the posterior is far from normal, the Taylor-started Newton search alone
    finds a local maximum of r well below the global one (it would be caught, raised
    and counted at the proposals); the grid screening finds the global one, and the
    draws match quadrature with no proposal above the bound."""
    args = make()
    q = args[3].shape[1]
    truth = _r_max_brute(_envelope(*args))
    with monkeypatch.context() as mp:
        mp.setattr(posterior, "SCREEN", (0, np.inf, 0, np.inf))  # no screening
        assert _envelope(*args).logM[0] < truth - 0.1
    st = _envelope(*args)
    assert truth - 1e-9 <= st.logM[0] <= truth + _BOUND_TOL + _FLAT_MARGIN
    # q = 3: the posterior's flat side is wide, so a wider box (grids of 81 and 121
    # points over ±20 and ±24 SDs agree to all printed digits)
    assert_exact_matches_grid(args, 1, **({} if q == 2 else {"half": 20.0, "npts": 81}))


def test_exact_one_random_effect():
    rng = np.random.default_rng(3)
    n = 40
    X = np.column_stack([np.ones(n), rng.standard_normal(n)])
    W = X[:, :1].copy()
    y = (rng.random(n) < expit(X @ np.array([-1.0, 0.5]) + 0.7)).astype(float)
    args = ("binomial", y, X, W, np.array([-1.0, 0.5]), np.array([[1.5]]))
    assert_exact_matches_grid(args, 4, npts=2001)


def test_exact_three_random_effects():
    rng = np.random.default_rng(5)
    n = 30
    X = np.column_stack([np.ones(n), rng.binomial(1, 0.5, n), rng.standard_normal(n)])
    W = X.copy()
    beta = np.array([0.2, 0.3, -0.2])
    psi = np.array([[0.8, -0.2, 0.1], [-0.2, 0.6, 0.0], [0.1, 0.0, 0.4]])
    y = rng.poisson(np.exp(X @ beta + W @ np.array([0.5, -0.3, 0.2]))).astype(float)
    args = ("poisson", y, X, W, beta, psi)
    assert_exact_matches_grid(args, 6, npts=61)


def test_singular_psi():
    """A zero variance (or a rank-1 Psi) gives zero (or perfectly correlated) effects, and
    the remaining effect has the right posterior."""
    family, y, X, W, beta, _ = study_poisson()
    psi0 = np.array([[0.75, 0.0], [0.0, 0.0]])
    draws = draw_random_effects(family, y, X, W, beta, psi0, N_DRAWS, np.random.default_rng(8))
    assert np.all(draws[:, 1] == 0.0)
    mean, cov, _, _ = posterior_grid(family, y, X, W[:, :1], beta, psi0[:1, :1], npts=2001)
    assert_moments(draws[:, :1], mean, cov)
    rank1 = np.array([[1.0, 0.5], [0.5, 0.25]])  # b2 = b1 / 2
    d1 = draw_random_effects(family, y, X, W, beta, rank1, 200, np.random.default_rng(9))
    np.testing.assert_allclose(d1[:, 1], 0.5 * d1[:, 0], atol=1e-12)
    zero = draw_random_effects(family, y, X, W, beta, np.zeros((2, 2)), 10,
                               np.random.default_rng(9))
    assert np.all(zero == 0.0)


# ============================================================== other methods
def test_laplace_is_normal_at_the_mode(case):
    """laplace: N(b_hat, (Psi^{-1} + W'DW)^{-1}) — mode and curvature from scipy."""
    _, args, (_, _, bhat, laplace_cov) = case
    stats = SamplerStats()
    draws = draw_random_effects(*args, N_DRAWS, np.random.default_rng(2), method="laplace",
                                stats=stats)
    assert_moments(draws, bhat, laplace_cov)
    assert stats.acceptance_rate() == 1.0


def test_marginal_is_the_prior(case):
    _, args, _ = case
    draws = draw_random_effects(*args, N_DRAWS, np.random.default_rng(3), method="marginal")
    assert_moments(draws, np.zeros(2), args[5])


def test_prior_ar_exact_when_its_bound_holds():
    """A tiny balanced study whose likelihood is maximal at b = 0 = the posterior mode:
    M = L(mode) is the true maximum, so the paper's sampler is exact."""
    x1 = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=float)
    X = np.column_stack([np.ones(8), x1])
    args = ("binomial", y, X, X.copy(), np.zeros(2), PSI_STRONG)
    mean, cov, _, _ = posterior_grid(*args)
    stats = SamplerStats()
    draws = draw_random_effects(*args, N_DRAWS, np.random.default_rng(5), method="prior-ar",
                                stats=stats)
    assert_moments(draws, mean, cov)
    assert stats.bound_exceeded == 0 and stats.fallbacks == 0
    assert stats.accepted == N_DRAWS and stats.proposals > N_DRAWS


def test_prior_ar_fails_and_says_so_for_a_large_study():
    """300 participants, strong heterogeneity: acceptance collapses (~1 %), many draws hit
    the 250 cap and fall back to the prior, and some proposals exceed M; the draws are
    then far too dispersed. All of it is counted."""
    args = study_large_strong()
    _, cov, _, _ = posterior_grid(*args)
    stats = SamplerStats()
    n = 2000
    draws = draw_random_effects(*args, n, np.random.default_rng(6), method="prior-ar",
                                stats=stats)
    assert stats.n_draws == n
    assert stats.acceptance_rate() < 0.05
    assert stats.fallbacks > 0.02 * n
    assert stats.bound_exceeded > 0
    assert stats.accepted + stats.fallbacks == n
    assert np.all(draws.std(0) > 1.5 * np.sqrt(np.diag(cov)))


# ============================================================== gaussian
def _gaussian_case(psi):
    rng = np.random.default_rng(12)
    n = 25
    X = np.column_stack([np.ones(n), rng.standard_normal(n), rng.binomial(1, 0.4, n)])
    W = X[:, :2].copy()
    beta = np.array([0.5, -0.2, 0.3])
    sigma = 1.3
    y = X @ beta + W @ np.array([0.8, -0.4]) + sigma * rng.standard_normal(n)
    return y, X, W, beta, sigma


@pytest.mark.parametrize("psi", [PSI_MODERATE, np.array([[0.9, 0.0], [0.0, 0.0]])],
                         ids=["regular", "singular"])
def test_gaussian_closed_form(psi):
    y, X, W, beta, sigma = _gaussian_case(psi)
    M = psi @ W.T @ np.linalg.inv(W @ psi @ W.T + sigma ** 2 * np.eye(len(y)))
    mean = M @ (y - X @ beta)
    cov = psi - M @ W @ psi
    # the kernel's u-form equals the direct n × n formula
    lam = _factor(psi)
    st = _Study(get_family("gaussian"), y, X, W, np.array([0, len(y)]), beta, lam)
    st.gaussian(sigma)
    np.testing.assert_allclose(lam @ st.U[0], mean, atol=1e-12)
    Pinv = np.linalg.inv(st.L[0] @ st.L[0].T)
    np.testing.assert_allclose(lam @ Pinv @ lam.T, cov, atol=1e-12)
    # "exact", "prior-ar" and "laplace" all draw from it, with the same random numbers
    draws = {m: draw_random_effects("gaussian", y, X, W, beta, psi, N_DRAWS,
                                    np.random.default_rng(13), method=m, sigma=sigma)
             for m in ("exact", "prior-ar", "laplace")}
    np.testing.assert_array_equal(draws["exact"], draws["prior-ar"])
    np.testing.assert_array_equal(draws["exact"], draws["laplace"])
    sd = np.sqrt(np.diag(cov))
    keep = sd > 0
    assert_moments(draws["exact"][:, keep], mean[keep], cov[np.ix_(keep, keep)])
    assert np.all(draws["exact"][:, ~keep] == 0.0)
    marg = draw_random_effects("gaussian", y, X, W, beta, psi, N_DRAWS,
                               np.random.default_rng(14), method="marginal", sigma=sigma)
    assert_moments(marg[:, keep], np.zeros(keep.sum()), psi[np.ix_(keep, keep)])


# ============================================================== draw_many, reproducibility
def _stacked(cases):
    ys, Xs, Ws = [], [], []
    for _, y, X, W, _, _ in cases:
        ys.append(y), Xs.append(X), Ws.append(W)
    starts = np.concatenate([[0], np.cumsum([len(y) for y in ys])])
    return np.concatenate(ys), np.vstack(Xs), np.vstack(Ws), starts


def test_draw_many_matches_draw_random_effects():
    """Three binomial studies (+ an empty one, whose posterior is the prior): the
    per-study draws of 4000 calls of draw_many agree with draw_random_effects."""
    a = study_large_strong()
    b = study_small_zero()
    rng = np.random.default_rng(21)
    n = 80
    X = np.column_stack([np.ones(n), rng.binomial(1, 0.6, n), rng.poisson(1.0, n)])
    c = ("binomial", (rng.random(n) < 0.3).astype(float), X, X[:, :2].copy(), BETA_PAPER,
         PSI_STRONG)
    empty = ("binomial", np.zeros(0), np.zeros((0, 3)), np.zeros((0, 2)), BETA_PAPER,
             PSI_STRONG)
    y, X, W, starts = _stacked([a, empty, b, c])
    calls = 4000
    g = np.random.default_rng(22)
    stats = SamplerStats()
    many = np.stack([draw_many("binomial", y, X, W, starts, BETA_PAPER, PSI_STRONG, g,
                               stats=stats) for _ in range(calls)])
    assert many.shape == (calls, 4, 2)
    assert stats.n_draws == 4 * calls and stats.bound_exceeded == 0
    for i, args in enumerate([a, None, b, c]):
        if args is None:  # the empty study: prior
            assert_moments(many[:, i], np.zeros(2), PSI_STRONG)
            continue
        ref = draw_random_effects(*args, N_DRAWS, np.random.default_rng(23 + i))
        se = ref.std(0) * np.sqrt(1 / calls + 1 / N_DRAWS)
        assert np.all(np.abs(many[:, i].mean(0) - ref.mean(0)) <= 4 * se)
        np.testing.assert_allclose(many[:, i].std(0), ref.std(0), rtol=0.06)


def test_draw_many_gaussian_and_laplace():
    """draw_many's direct methods: per-study means over 4000 calls match the closed form
    (gaussian) and the mode (laplace), within 4 SE."""
    y, X, W, beta, sigma = _gaussian_case(PSI_MODERATE)
    starts = np.array([0, 10, 10, 25])  # the middle study is empty: prior
    g = np.random.default_rng(51)
    draws = np.stack([draw_many("gaussian", y, X, W, starts, beta, PSI_MODERATE, g,
                                sigma=sigma) for _ in range(4000)])
    for i in range(3):
        a, b = starts[i], starts[i + 1]
        Wi, psi = W[a:b], PSI_MODERATE
        M = psi @ Wi.T @ np.linalg.inv(Wi @ psi @ Wi.T + sigma ** 2 * np.eye(b - a))
        assert_moments(draws[:, i], M @ (y[a:b] - X[a:b] @ beta), psi - M @ Wi @ psi,
                       corr_atol=0.06)  # N = 4000: SE of a correlation <= 0.016
    family, yb, Xb, Wb, betab, psib = study_poisson()
    stats = SamplerStats()
    lap = np.stack([draw_many(family, yb, Xb, Wb, np.array([0, len(yb)]), betab, psib, g,
                              method="laplace", stats=stats) for _ in range(4000)])
    _, _, bhat, laplace_cov = posterior_grid(family, yb, Xb, Wb, betab, psib)
    assert_moments(lap[:, 0], bhat, laplace_cov, corr_atol=0.06)
    assert stats.n_draws == stats.accepted == stats.proposals == 4000


@pytest.mark.parametrize("method", ["exact", "prior-ar", "laplace", "marginal"])
def test_same_seed_same_draws(method):
    args = study_small_zero()
    one = draw_random_effects(*args, 500, np.random.default_rng(31), method=method)
    two = draw_random_effects(*args, 500, np.random.default_rng(31), method=method)
    other = draw_random_effects(*args, 500, np.random.default_rng(32), method=method)
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, other)
    y, X, W, starts = _stacked([study_large_strong(), args, study_small_zero()])
    many = [draw_many("binomial", y, X, W, starts, BETA_PAPER, PSI_STRONG,
                      np.random.default_rng(s), method=method) for s in (33, 33, 34)]
    np.testing.assert_array_equal(many[0], many[1])
    assert not np.array_equal(many[0], many[2])


def test_prior_ar_draw_many_counts_the_cap():
    """draw_many's prior-ar: each study gets at most 250 proposals; fallbacks counted."""
    a = study_large_strong()
    y, X, W, starts = _stacked([a] * 5)
    stats = SamplerStats()
    g = np.random.default_rng(41)
    for _ in range(40):
        draw_many("binomial", y, X, W, starts, BETA_PAPER, PSI_STRONG, g, method="prior-ar",
                  stats=stats)
    assert stats.n_draws == 200
    assert stats.accepted + stats.fallbacks == 200
    assert stats.fallbacks > 0
    assert stats.proposals <= 250 * 200


def test_sampler_stats():
    s = SamplerStats()
    assert np.isnan(s.acceptance_rate()) and np.isnan(s.fallback_rate())
    s.add(n_draws=4, proposals=10, accepted=3, bound_exceeded=1, fallbacks=1)
    assert s.acceptance_rate() == 0.3 and s.fallback_rate() == 0.25
    assert s.bound_exceeded_rate() == 0.1


# ============================================================== input checks
def test_input_errors():
    family, y, X, W, beta, psi = study_small_zero()
    g = np.random.default_rng(0)
    with pytest.raises(InputError, match="method"):
        draw_random_effects(family, y, X, W, beta, psi, 5, g, method="metropolis")
    with pytest.raises(InputError, match="Generator"):
        draw_random_effects(family, y, X, W, beta, psi, 5, np.random.RandomState(0))
    with pytest.raises(InputError, match="semi-definite"):
        draw_random_effects(family, y, X, W, beta, np.array([[1.0, 2.0], [2.0, 1.0]]), 5, g)
    with pytest.raises(InputError, match="psi must be 2"):
        draw_random_effects(family, y, X, W, beta, np.eye(3), 5, g)
    with pytest.raises(InputError, match="sigma"):
        draw_random_effects("gaussian", y, X, W, beta, psi, 5, g)
    with pytest.raises(InputError, match="0/1"):
        draw_random_effects(family, y + 2, X, W, beta, psi, 5, g)
    with pytest.raises(InputError, match="size"):
        draw_random_effects(family, y, X, W, beta, psi, 0, g)
    with pytest.raises(InputError, match="beta"):
        draw_random_effects(family, y, X, W, beta[:2], psi, 5, g)
    with pytest.raises(InputError, match="starts"):
        draw_many(family, y, X, W, np.array([0, 20]), beta, psi, g)
    with pytest.raises(InputError, match="not supported"):
        draw_many("gamma", y, X, W, np.array([0, 15]), beta, psi, g)
