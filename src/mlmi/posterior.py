"""Draws of one study's random effects from their posterior (METHOD.md §3, step 4).

For a study with observed rows (y_j, x_j, w_j), given the drawn (beta, Psi),

    p(b | y) ∝ N(b; 0, Psi) × prod_j p(y_j | x_j'beta + w_j'b).

Everything is computed in lme4's spherical parametrisation b = Lambda u, u ~ N(0, I),
with Psi = Lambda Lambda' (Cholesky factor, or an eigen-factor when Psi is singular,
so a zero variance simply gives a zero column: those u's keep their N(0, 1) prior and
the b's their zero). Samplers (``method``):

``"exact"`` (default)
    Accept–reject with a multivariate-t envelope, exact for any (beta, Psi) and data.
    Centre: the conditional mode u_hat (Newton, :func:`mlmi.glmm.laplace.cluster_mode`);
    scale matrix ``C_SCALE * H^{-1}``, H = I + sum_j d_j z_j z_j' the curvature of
    -log p(u | y) at the mode (z_j = Lambda' w_j, d_j = Var(y_j | eta_j));
    ``NU_T`` degrees of freedom. In whitened coordinates t = L_H'(u - u_hat)/sqrt(c)
    (H = L_H L_H') the log ratio of target to envelope is, up to a constant,

        r(t) = log p(u(t) | y) - log p(u_hat | y) + (nu + q)/2 log(1 + |t|²/nu),

    and the bound log M = max_t r(t) is found by optimisation. r is not concave (for a
    normal target its maximum is the whole ring |t|² = (nu + q)/c - nu), so:

    1. the third and fourth derivatives of the log-likelihood at the mode (known from
       d_j and d_j' without any further exp/log) give a quartic Taylor model of r,
       maximised along 24 directions (q = 2; ±1 for q = 1, 48 for q = 3);
    2. Newton's method (Levenberg damping, step halving) climbs the exact r from the
       best model point, and from the best other local maximum of the model if that is
       within 0.25 of it. It stops when the Newton decrement is below ``_BOUND_TOL`` =
       0.02 and adds that decrement to the bound (twice the quadratic model's remaining
       rise), plus ``_FLAT_MARGIN`` = 0.02 when r is not concave there (a flat ring,
       where Newton may stop short of the ring's highest point);
    3. when the posterior is clearly not normal (the bound exceeds the normal target's
       by > 0.1) or the study is tiny (<= 16 rows), r is also screened on a grid of 12
       directions (q = 2; 24 for q = 3) × radii 1.5, 3, 4.5, and Newton climbs from the
       three best grid points in different directions: there the maximum can lie where
       the Taylor model is poor (a "wall": a likelihood steep on one side and flat on
       the other, e.g. all responses 0).
       ``SCREEN`` holds these thresholds.
       (Until issue 11 the excess threshold was 0.3 for studies of more than 64 rows:
       the random-study check of tools/check_posterior_bounds.py found a cumulative-logit
       study with K = 2, 200 rows, 3 events and variances 2.3 whose Taylor-started
       search stopped at a local maximum, 0.244 against the true 0.283 — 6 of 7 885
       proposals exceeded the bound, counted. Screening at an excess > 0.1 finds it; the
       golden masters' draws did not move.)

    Usually 1–3 passes over the study's (merged) rows, ~40 when screening. On 216
    studies (binomial/Poisson, 5–1000 rows, weak to strong heterogeneity) the bound was
    never below the maximum of r over a dense polar grid and at most 0.03 above it; over
    7 400 random studies (q = 1–3, 1–800 rows, variance scales 0.1–3, all-0/all-1
    responses included; 5 000–20 000 draws each) no proposal exceeded the bound. Before
    step 3 and the flat margin were added, about 1 study in 100 (mostly q = 3) had some.

    The bound is CHECKED at every proposal: a proposal with r(t) > log M is accepted,
    log M is raised to r(t) for the later proposals and ``SamplerStats.bound_exceeded``
    counts it. The sampler is exact whenever that count is 0 (it was 0 in all the
    validation runs).

    Why nu = 5 and c = 1.2. For a normal target the acceptance rate is
    (2/(c nu))^{q/2} Γ((nu+q)/2)/Γ(nu/2) exp(-log M(c)), largest at c = 1: 0.91 / 0.84
    / 0.78 for q = 1 / 2 / 3 at nu = 5 (nu = 4: 0.89 / 0.81 / 0.74; nu = 8: 0.94 /
    0.89 / 0.85). But logistic and Poisson posteriors of small studies and strong
    heterogeneity are skewed, with one tail heavier than the Laplace normal (d_j falls
    off away from the mode), and there a wider, heavier-tailed envelope wins. Measured
    acceptance (mean / worst study) over the 216 studies above:

    ===========  ===========  ===========  ===========
    nu \\ c      1.0          1.2          1.4
    ===========  ===========  ===========  ===========
    4            0.71 / 0.52  0.72 / 0.59  0.69 / 0.62
    5            0.73 / 0.51  0.75 / 0.60  0.71 / 0.65
    6            0.74 / 0.49  0.77 / 0.60  0.72 / 0.66
    8            0.75 / 0.44  0.78 / 0.58  0.71 / 0.67
    ===========  ===========  ===========  ===========

    and over the 1 800 random small and one-sided studies (mean / 5th percentile /
    worst): nu = 4: 0.71 / 0.45 / 0.07; nu = 5: 0.73 / 0.45 / 0.05; nu = 6: 0.74 /
    0.44 / 0.04; nu = 8: 0.76 / 0.41 / 0.03 (c = 1.2). c = 1.2 costs 4 % for
    near-normal posteriors (q = 2: 0.80 instead of 0.84) and gains up to 20 % on skewed
    ones. nu = 5 is within 2 % of nu = 6 on average and keeps the heavier tail for the
    awkward studies (larger nu also let the bound search miss at c = 1.4). The worst
    cases, acceptance ~0.05–0.2, are studies of 1–5 rows with a one-sided likelihood and
    large variances, where a proposal costs next to nothing.

``"prior-ar"``
    The paper's sampler: propose u ~ N(0, I), accept if U <= L(u)/M with M the study's
    likelihood at the posterior mode; at most ``PRIOR_AR_CAP`` = 250 proposals per draw,
    after which the last prior draw is kept (counted in ``fallbacks``). Proposals with
    L(u) > M (the bound is wrong: the likelihood's maximum is not at the posterior mode)
    are counted in ``bound_exceeded``: this sampler is exact only when that count is 0
    and no fallback occurred.

``"laplace"``
    b ~ N(Lambda u_hat, Lambda H^{-1} Lambda') — normal at the mode with the Laplace
    covariance (mice 3.19's ``2l.bin``-style approximation).

``"marginal"``
    b ~ N(0, Psi): the prior, ignoring the study's data.

Families. The scalar-eta families (binomial, poisson, negbin, ordinal) share the kernels
above through their row kernels (families/kernels.py): each row's log p(y | eta) is
concave in eta (for NB2 with a log link and fixed theta, d²/deta² log p = -(y + theta)
theta mu / (mu + theta)² < 0; for the cumulative logit, log(F(a) - F(c)) of a
log-concave F), so the curvature at the mode is positive definite and the mode unique.
The multinomial family (vector eta, b in R^Q with Q = (K - 1) q, category-major) has its
own compiled kernels in :mod:`mlmi._posterior_mn` with the same four samplers: the mode
by the family's compiled Newton iteration, the same t envelope (nu = ``NU_T``, scale
``C_SCALE`` H^{-1}), and a bound found by screening r on a grid of directions (24 for
Q = 2, 48 for Q = 3, the ± axes, ± pairwise diagonals and corners for Q = 4..6) × radii
(the normal target's ring, 1.5, 3, 4.5) and Newton ascent from the best 3 (Q <= 2) or 4
points in different directions; checked at every proposal as above. Psi is factored as a
lower-triangular Lambda (Cholesky, or for a singular Psi the eigen-factor made
triangular by an LQ decomposition).

Gaussian responses have a normal posterior: with M = Psi W'(W Psi W' + sigma² I)^{-1},
mean M (y - X beta) and covariance Psi - M W Psi; it is computed in the equivalent
u-form (precision I + Z'Z/sigma², Z = W Lambda, q×q work per study). ``"exact"``,
``"prior-ar"`` and ``"laplace"`` all draw from it; ``"marginal"`` from the prior.

All random numbers come from the caller's ``numpy.random.Generator`` (generated in
batches in numpy and handed to the compiled kernels), so the same seed gives the same
draws. :func:`draw_many` (one draw for each of k studies) is the entry point of the
imputation loop; :func:`draw_random_effects` draws many times from one study.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from . import _posterior_mn as _mn
from .exceptions import InputError
from .glmm._linalg import chol_inplace, chol_solve, damped_newton_step
from .glmm.families import Family, get_family
from .glmm.families.kernels import row_fourth, row_moments
from .glmm.laplace import cluster_loglik, cluster_mode

__all__ = ["METHODS", "SamplerStats", "draw_many", "draw_random_effects"]

METHODS = ("exact", "prior-ar", "laplace", "marginal")
#: degrees of freedom of the multivariate-t envelope of ``"exact"``
NU_T = 5.0
#: envelope scale c: the t's scale matrix is c H^{-1}
C_SCALE = 1.2
#: the paper's limit on proposals per draw of ``"prior-ar"``
PRIOR_AR_CAP = 250
#: ``"exact"``: proposals per study in the first batch; later batches grow 4×
FIRST_BATCH = 8
#: ``"exact"``: proposals for one draw after which the study's draw falls back to the
#: Laplace normal (counted in ``fallbacks``). At the acceptance rates seen on sane
#: posteriors (>= 0.04) this never happens; it guards against degenerate inputs (e.g. an
#: exploded Psi* from an inverse-Wishart draw with very few studies) that would
#: otherwise end the whole imputation.
EXACT_CAP = 20_000
_BOUND_MAXIT = 40
_BOUND_TOL = 2e-2  # Newton decrement at which the bound search stops (= its margin)
#: margin added to a bound found where r is not concave (a flat ring)
_FLAT_MARGIN = 0.02
#: when the bound search also screens r on a grid of directions × radii: a study with
#: at most SCREEN[0] (merged) rows, or whose bound exceeds the normal target's by more
#: than SCREEN[1], or with at most SCREEN[2] rows and an excess above SCREEN[3] (the
#: last pair is now implied by the second; kept so that tests can switch each off)
SCREEN = (16, 0.1, 64, 0.1)


@dataclass
class SamplerStats:
    """Counters of one or many calls of the samplers, updated in place.

    ``proposals``/``accepted``: candidate draws made/kept by an accept–reject sampler
    (the direct methods — ``"laplace"``, ``"marginal"``, gaussian — count each draw as
    one accepted proposal). ``bound_exceeded``: proposals whose density ratio exceeded
    the sampler's bound (``"exact"``: the bound was raised; ``"prior-ar"``: L(b) > M).
    ``fallbacks``: draws not produced by the sampler (``"prior-ar"``: 250 rejections,
    the last prior draw kept). ``mode_failures``: studies whose posterior mode was not
    found (Newton did not converge): ``"laplace"`` draws are then centred on the last
    iterate, ``"prior-ar"``'s bound is too low (its exceedances are counted), and
    ``"exact"`` draws stay exact (the envelope is only off-centre).
    """

    n_draws: int = 0
    proposals: int = 0
    accepted: int = 0
    bound_exceeded: int = 0
    fallbacks: int = 0
    mode_failures: int = 0

    def acceptance_rate(self) -> float:
        """accepted / proposals (nan before any proposal)."""
        return self.accepted / self.proposals if self.proposals else float("nan")

    def fallback_rate(self) -> float:
        """fallbacks / n_draws (nan before any draw)."""
        return self.fallbacks / self.n_draws if self.n_draws else float("nan")

    def bound_exceeded_rate(self) -> float:
        """bound_exceeded / proposals (nan before any proposal)."""
        return self.bound_exceeded / self.proposals if self.proposals else float("nan")

    def add(self, n_draws=0, proposals=0, accepted=0, bound_exceeded=0, fallbacks=0) -> None:
        """Add counts (in place)."""
        self.n_draws += int(n_draws)
        self.proposals += int(proposals)
        self.accepted += int(accepted)
        self.bound_exceeded += int(bound_exceeded)
        self.fallbacks += int(fallbacks)


# ================================================================ compiled kernels


@njit(cache=True, error_model="numpy")
def _curvature(fam, y, wt, xb, Z, a, b, u, H, extra):
    """H = I + sum_j d_j z_j z_j' at u, Cholesky-factored in place; returns sum wt*ll."""
    q = u.shape[0]
    for r in range(q):
        for c in range(q):
            H[r, c] = 1.0 if r == c else 0.0
    s = 0.0
    for j in range(a, b):
        eta = xb[j]
        for r in range(q):
            eta += Z[j, r] * u[r]
        ll, _, dj, _ = row_moments(fam, y[j], eta, extra)
        s += wt[j] * ll
        dj *= wt[j]
        for r in range(q):
            for c in range(r + 1):
                H[r, c] += dj * Z[j, r] * Z[j, c]
    for r in range(q):
        for c in range(r + 1, q):
            H[r, c] = H[c, r]
    chol_inplace(H)
    return s


@njit(cache=True, error_model="numpy")
def _modes(fam, y, wt, xb, Z, starts, U, L, llmode, g1, d, dd, extra):
    """Conditional mode U[i], Cholesky factor L[i] of H at the mode and the study's
    log-likelihood llmode[i] there, for every study. Returns the number of studies
    whose Newton iterations did not converge (their U[i] is the last iterate, and L, ll
    are recomputed there: the samplers stay valid, only the envelope is off-centre)."""
    k = starts.shape[0] - 1
    q = U.shape[1]
    failed = 0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = U[i]
        for r in range(q):
            ui[r] = 0.0
        obj, ok = cluster_mode(fam, y, wt, xb, Z, a, b, ui, L[i], g1, d, dd, extra)
        if ok:
            s = 0.0
            for r in range(q):
                s += ui[r] * ui[r]
            llmode[i] = 0.5 * s - obj
        else:
            failed += 1
            llmode[i] = _curvature(fam, y, wt, xb, Z, a, b, ui, L[i], extra)
    return failed


@njit(cache=True, error_model="numpy")
def _r_derivs(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t, g, N, v, extra):
    """r(t) (see the module docstring), its gradient g and minus its Hessian N."""
    q = t.shape[0]
    for r in range(q):
        g[r] = 0.0
        for c in range(q):
            N[r, c] = BtB[r, c]
    s = 0.0
    for j in range(a, b):
        eta = eta0[j]
        for r in range(q):
            eta += Zt[j, r] * t[r]
        ll, gj, dj, _ = row_moments(fam, y[j], eta, extra)
        wj = wt[j]
        s += wj * ll
        e = wj * gj
        dj *= wj
        for r in range(q):
            g[r] += e * Zt[j, r]
            for c in range(r + 1):
                N[r, c] += dj * Zt[j, r] * Zt[j, c]
    prior = 0.0
    tt = 0.0
    for r in range(q):
        acc = uhat[r]
        for c in range(r, q):
            acc += B[r, c] * t[c]
        v[r] = acc
        prior += acc * acc - uhat[r] * uhat[r]
        tt += t[r] * t[r]
    kap = (nu + q) / (nu + tt)
    for r in range(q):
        acc = 0.0
        for c in range(r + 1):
            acc += B[c, r] * v[c]  # (B'v)[r], B upper triangular
        g[r] += kap * t[r] - acc
        for c in range(r + 1):
            N[r, c] += 2.0 * kap * kap / (nu + q) * t[r] * t[c]
        N[r, r] -= kap
    for r in range(q):
        for c in range(r + 1, q):
            N[r, c] = N[c, r]
    return s - ll0 - 0.5 * prior + 0.5 * (nu + q) * np.log1p(tt / nu)


@njit(cache=True, error_model="numpy")
def _r_value(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, nu, t, extra):
    """r(t) alone: one pass over the study's rows."""
    q = t.shape[0]
    prior = 0.0
    tt = 0.0
    for r in range(q):
        acc = uhat[r]
        for c in range(r, q):
            acc += B[r, c] * t[c]
        prior += acc * acc - uhat[r] * uhat[r]
        tt += t[r] * t[r]
    ll = cluster_loglik(fam, y, wt, eta0, Zt, a, b, t, extra)
    return ll - ll0 - 0.5 * prior + 0.5 * (nu + q) * np.log1p(tt / nu)


@njit(cache=True, error_model="numpy")
def _maximise_r(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t, extra):
    """Newton ascent of r from ``t`` (overwritten), with Levenberg damping where r is not
    concave and step halving. Returns (an upper estimate of the local maximum — the
    largest r evaluated plus the last Newton decrement when converged —, passes)."""
    q = t.shape[0]
    g = np.empty(q)
    N = np.empty((q, q))
    M = np.empty((q, q))
    v = np.empty(q)
    s = np.empty(q)
    tn = np.empty(q)
    gn = np.empty(q)
    Nn = np.empty((q, q))
    val = _r_derivs(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t, g, N, v, extra)
    passes = 1
    best = val
    margin = 0.0
    for _ in range(_BOUND_MAXIT):
        dec, lam = damped_newton_step(N, g, M, s)
        if not dec > _BOUND_TOL:
            # at a maximum of the quadratic model, val + dec/2: keep dec as a margin;
            # where r is not concave (lam > 0) we are on a flat ring (normal-like
            # target), where r varies little: add _FLAT_MARGIN for what Newton missed
            margin = max(dec, 0.0) + (_FLAT_MARGIN if lam > 0.0 else 0.0)
            break
        step = 1.0
        moved = False
        while step > 1e-6:
            for r in range(q):
                tn[r] = t[r] + step * s[r]
            valn = _r_derivs(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, tn, gn, Nn, v,
                             extra)
            passes += 1
            if valn > best:
                best = valn
            if valn >= val:
                moved = True
                break
            step *= 0.5
        if not moved:
            break
        for r in range(q):
            t[r] = tn[r]
            g[r] = gn[r]
            for c in range(q):
                N[r, c] = Nn[r, c]
        val = valn
    return max(best, val + margin), passes


@njit(cache=True, error_model="numpy", inline="always")
def _dot(a, b):
    s = 0.0
    for r in range(a.shape[0]):
        s += a[r] * b[r]
    return s


@njit(cache=True, error_model="numpy")
def _model_ray(a3, a4, c, nu, q):
    """Maximise the quartic Taylor model of r along a ray,
    m(rho) = -c rho²/2 + a3 rho³/6 + a4 rho⁴/24 + (nu+q)/2 log(1 + rho²/nu),
    over rho in [0.3, 4] (a few safeguarded Newton steps); returns (value, argmax)."""
    rho = np.sqrt(max((nu + q) / c - nu, 0.5))
    for _ in range(8):
        p2 = rho * rho
        m1 = -c * rho + a3 * p2 / 2.0 + a4 * p2 * rho / 6.0 + (nu + q) * rho / (nu + p2)
        m2 = -c + a3 * rho + a4 * p2 / 2.0 + (nu + q) * (nu - p2) / ((nu + p2) * (nu + p2))
        if m2 < 0.0:
            stepr = min(max(-m1 / m2, -0.5), 0.5)
        else:
            stepr = 0.25 if m1 > 0.0 else -0.25
        rho = min(max(rho + stepr, 0.3), 4.0)
    p2 = rho * rho
    val = (-c * p2 / 2.0 + a3 * p2 * rho / 6.0 + a4 * p2 * p2 / 24.0
           + 0.5 * (nu + q) * np.log1p(p2 / nu))
    return val, rho


@njit(cache=True, error_model="numpy")
def _envelopes(fam, y, wt, xb, Z, starts, U, L, llmode, d, dd, nu, c, screen, dirs, near_cos,
               sdirs, snear, radii, i3, m3, i4, m4, eta0, Zt, B, logM, extra):
    """For every study: the whitened design (eta0 = xb + Z u_hat, Zt_j = sqrt(c) L^{-1} z_j),
    B = sqrt(c) L^{-T} (so u = u_hat + B t) and the bound logM = max_t r(t).

    Where the search starts: the third and fourth derivatives of log p at the mode
    (from d and d' of each row at the mode: no extra exp/log) give a quartic Taylor
    model of r, maximised along each direction of ``dirs``; Newton's method on the exact
    r starts from the best model point, and also from the best other local maximum of
    the model over the directions when its model value is within 0.25 of the best; a
    grid screening follows for non-normal or tiny studies (``screen``; see the module
    docstring). Returns the number of passes over the rows spent on the bounds (a cost
    diagnostic)."""
    k = starts.shape[0] - 1
    q = U.shape[1]
    sc = np.sqrt(c)
    Linv = np.empty((q, q))
    e = np.empty(q)
    col = np.empty(q)
    BtB = np.empty((q, q))
    t = np.empty(q)
    T3 = np.empty(i3.shape[0])
    T4 = np.empty(i4.shape[0])
    nd = dirs.shape[0]
    dval = np.empty(nd)
    drho = np.empty(nd)
    nsd = sdirs.shape[0]
    sval = np.empty(nsd * radii.shape[0])
    chosen = np.empty(3, dtype=np.int64)
    # log M for a normal target (the maximum of r on its ring), to gauge non-normality
    a_ring = c * nu / (nu + q)
    gauss_logM = 0.0 if a_ring >= 1.0 else 0.5 * (nu + q) * (a_ring - 1.0 - np.log(a_ring))
    passes = 0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        Li = L[i]
        ui = U[i]
        # L^{-1} by forward substitution, column by column
        for cc in range(q):
            for r in range(q):
                e[r] = 0.0
            e[cc] = 1.0
            for r in range(q):
                acc = e[r]
                for m in range(r):
                    acc -= Li[r, m] * col[m]
                col[r] = acc / Li[r, r]
            for r in range(q):
                Linv[r, cc] = col[r]
        Bi = B[i]
        for r in range(q):
            for cc in range(q):
                Bi[r, cc] = sc * Linv[cc, r]
        for r in range(q):
            for cc in range(q):
                acc = 0.0
                for m in range(q):
                    acc += Bi[m, r] * Bi[m, cc]
                BtB[r, cc] = acc
        T3[:] = 0.0
        T4[:] = 0.0
        for j in range(a, b):
            eta = xb[j]
            for r in range(q):
                eta += Z[j, r] * ui[r]
            eta0[j] = eta
            for r in range(q):
                acc = 0.0
                for m in range(r + 1):
                    acc += Linv[r, m] * Z[j, m]
                Zt[j, r] = sc * acc
            # third/fourth derivatives of log p(y | eta): -d' and -d'' (the family's g3
            # and g4, see glmm/families/_base.py)
            w3 = -wt[j] * dd[j]
            w4 = -wt[j] * row_fourth(fam, y[j], eta, d[j], dd[j], extra)
            for m in range(i3.shape[0]):
                T3[m] += w3 * Zt[j, i3[m, 0]] * Zt[j, i3[m, 1]] * Zt[j, i3[m, 2]]
            for m in range(i4.shape[0]):
                T4[m] += (w4 * Zt[j, i4[m, 0]] * Zt[j, i4[m, 1]] * Zt[j, i4[m, 2]]
                          * Zt[j, i4[m, 3]])
        best_dir = 0
        for s in range(nd):
            v = dirs[s]
            a3 = 0.0
            for m in range(i3.shape[0]):
                a3 += m3[m] * T3[m] * v[i3[m, 0]] * v[i3[m, 1]] * v[i3[m, 2]]
            a4 = 0.0
            for m in range(i4.shape[0]):
                a4 += m4[m] * T4[m] * v[i4[m, 0]] * v[i4[m, 1]] * v[i4[m, 2]] * v[i4[m, 3]]
            dval[s], drho[s] = _model_ray(a3, a4, c, nu, q)
            if dval[s] > dval[best_dir]:
                best_dir = s
        # the best other local maximum of the model over the directions (neighbours:
        # directions with cosine > near_cos), away from the best direction
        other = -1
        for s in range(nd):
            if _dot(dirs[s], dirs[best_dir]) > near_cos:
                continue
            local_max = True
            for s2 in range(nd):
                if s2 != s and _dot(dirs[s], dirs[s2]) > near_cos and dval[s2] > dval[s]:
                    local_max = False
                    break
            if local_max and (other < 0 or dval[s] > dval[other]):
                other = s
        best = 0.0  # r(0) = 0
        for run in range(2):
            s = best_dir if run == 0 else other
            if run == 1 and (other < 0 or dval[other] < dval[best_dir] - 0.25):
                break
            for r in range(q):
                t[r] = drho[s] * dirs[s, r]
            val, p_ = _maximise_r(fam, y, wt, eta0, Zt, a, b, llmode[i], ui, Bi, BtB, nu, t,
                                  extra)
            passes += p_
            if val > best:
                best = val
        rows = b - a
        excess = best - gauss_logM
        if (rows <= screen[0] or excess > screen[1]
                or (rows <= screen[2] and excess > screen[3])):
            # a clearly non-normal posterior (or a cheap one): the maximum may lie where
            # the Taylor model is poor, so screen r over directions × radii and climb
            # from the three best points in different directions
            nr = radii.shape[0]
            ns = nsd * nr
            for s in range(nsd):
                for m in range(nr):
                    for r in range(q):
                        t[r] = radii[m] * sdirs[s, r]
                    sval[s * nr + m] = _r_value(fam, y, wt, eta0, Zt, a, b, llmode[i], ui,
                                                Bi, nu, t, extra)
            passes += ns
            order = np.argsort(-sval)
            picked = 0
            for o in range(ns):
                s = order[o] // nr
                clash = False
                for pp in range(picked):
                    if _dot(sdirs[s], sdirs[chosen[pp]]) > snear:
                        clash = True
                if clash:
                    continue
                chosen[picked] = s
                picked += 1
                for r in range(q):
                    t[r] = radii[order[o] % nr] * sdirs[s, r]
                val, p_ = _maximise_r(fam, y, wt, eta0, Zt, a, b, llmode[i], ui, Bi, BtB,
                                      nu, t, extra)
                passes += p_
                if val > best:
                    best = val
                if picked == 3:
                    break
        logM[i] = best
    return passes


@njit(cache=True, error_model="numpy")
def _exact_run(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, nu, logM, i, T, logu, out, filled,
               extra):
    """Accept–reject for study i over proposals T (m × q, t-coordinates) with log-uniforms
    ``logu``: accepted u = u_hat + B t go to out[filled], out[filled + 1], ... until
    ``out`` is full. Returns (filled, proposals used, bound exceedances)."""
    q = uhat.shape[0]
    size = out.shape[0]
    used = 0
    exceeded = 0
    for m in range(T.shape[0]):
        if filled >= size:
            break
        t = T[m]
        used += 1
        r = _r_value(fam, y, wt, eta0, Zt, a, b, ll0, uhat, B, nu, t, extra)
        if r > logM[i]:
            exceeded += 1
            logM[i] = r
        if logu[m] <= r - logM[i]:
            for rr in range(q):
                acc = uhat[rr]
                for cc in range(rr, q):
                    acc += B[rr, cc] * t[cc]
                out[filled, rr] = acc
            filled += 1
    return filled, used, exceeded


@njit(cache=True, error_model="numpy")
def _exact_many(fam, y, wt, eta0, Zt, starts, llmode, U, B, nu, logM, todo, T, logu, out, done,
                extra):
    """One batch of proposals (T[s], logu[s]) for each study todo[s]; returns
    (proposals, accepted, exceeded)."""
    used = 0
    acc = 0
    exc = 0
    for s in range(todo.shape[0]):
        i = todo[s]
        a, b = starts[i], starts[i + 1]
        filled, u_, e_ = _exact_run(fam, y, wt, eta0, Zt, a, b, llmode[i], U[i], B[i], nu,
                                    logM, i, T[s], logu[s], out[i:i + 1], 0, extra)
        used += u_
        exc += e_
        if filled == 1:
            done[i] = True
            acc += 1
    return used, acc, exc


@njit(cache=True, error_model="numpy")
def _prior_ar_run(fam, y, wt, xb, Z, a, b, llmax, cap, P, logu, out, filled, tries, extra):
    """The paper's sampler for one study over prior proposals P (m × q, u-coordinates):
    accept if log U <= log L(u) - llmax; after ``cap`` proposals for one draw keep the
    last one. Returns (filled, tries of the current draw, used, accepted, exceeded,
    fallbacks)."""
    q = P.shape[1]
    size = out.shape[0]
    used = 0
    accepted = 0
    exceeded = 0
    fallbacks = 0
    for m in range(P.shape[0]):
        if filled >= size:
            break
        u = P[m]
        used += 1
        tries += 1
        lr = cluster_loglik(fam, y, wt, xb, Z, a, b, u, extra) - llmax
        if lr > 0.0:
            exceeded += 1
        keep = logu[m] <= lr
        if keep:
            accepted += 1
        elif tries >= cap:
            fallbacks += 1
            keep = True
        if keep:
            for r in range(q):
                out[filled, r] = u[r]
            filled += 1
            tries = 0
    return filled, tries, used, accepted, exceeded, fallbacks


@njit(cache=True, error_model="numpy")
def _prior_ar_many(fam, y, wt, xb, Z, starts, llmode, cap, todo, P, logu, out, done, tries,
                   extra):
    """One batch of prior proposals for each study todo[s]; returns
    (proposals, accepted, exceeded, fallbacks)."""
    tot = np.zeros(4, dtype=np.int64)
    for s in range(todo.shape[0]):
        i = todo[s]
        a, b = starts[i], starts[i + 1]
        filled, tr, u_, ac, ex, fb = _prior_ar_run(fam, y, wt, xb, Z, a, b, llmode[i], cap,
                                                   P[s], logu[s], out[i:i + 1], 0, tries[i],
                                                   extra)
        tries[i] = tr
        if filled == 1:
            done[i] = True
        tot[0] += u_
        tot[1] += ac
        tot[2] += ex
        tot[3] += fb
    return tot


@njit(cache=True, error_model="numpy")
def _gaussian_posteriors(y, wt, xb, Z, starts, sigma, U, L):
    """Normal posterior of u per study: precision I + Z'Z/sigma² (its Cholesky factor
    into L[i]) and mean U[i] = (I + Z'Z/sigma²)^{-1} Z'(y - xb)/sigma²."""
    k = starts.shape[0] - 1
    q = U.shape[1]
    rhs = np.empty(q)
    s2 = sigma * sigma
    for i in range(k):
        Li = L[i]
        for r in range(q):
            rhs[r] = 0.0
            for c in range(q):
                Li[r, c] = 1.0 if r == c else 0.0
        for j in range(starts[i], starts[i + 1]):
            wj = wt[j] / s2
            e = wj * (y[j] - xb[j])
            for r in range(q):
                zr = Z[j, r]
                rhs[r] += e * zr
                for c in range(r + 1):
                    Li[r, c] += wj * zr * Z[j, c]
        for r in range(q):
            for c in range(r + 1, q):
                Li[r, c] = Li[c, r]
        chol_inplace(Li)
        chol_solve(Li, rhs, U[i])


@njit(cache=True, error_model="numpy")
def _normal_draws(U, L, idx, E, out):
    """out[m] = U[idx[m]] + L[idx[m]]^{-T} E[m]: draws from N(U[i], (L L')^{-1})."""
    q = U.shape[1]
    for m in range(idx.shape[0]):
        i = idx[m]
        Li = L[i]
        for r in range(q - 1, -1, -1):
            acc = E[m, r]
            for c in range(r + 1, q):
                acc -= Li[c, r] * out[m, c]
            out[m, r] = acc / Li[r, r]
        for r in range(q):
            out[m, r] += U[i, r]


@njit(cache=True, error_model="numpy")
def _merge_rows(yb, Xb, Wb, y, X, W, starts, probe):
    """Merge identical rows (y, x, w) within each study into one row with a frequency
    weight (the posterior depends on the rows only through their counts).

    An open-addressing hash table per study keeps this O(n). If, after ``probe`` rows,
    more than 3/4 of them were distinct (continuous variables), it gives up early and
    returns an empty ``keep``. Returns (keep, wt, new_starts)."""
    n = y.shape[0]
    k = starts.shape[0] - 1
    p = X.shape[1]
    q = W.shape[1]
    largest = 1
    for i in range(k):
        largest = max(largest, starts[i + 1] - starts[i])
    size = 1
    while size < 2 * largest:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, dtype=np.int64)
    used = np.empty(largest, dtype=np.int64)
    keep = np.empty(n, dtype=np.int64)
    wt = np.zeros(n)
    new_starts = np.zeros(k + 1, dtype=np.int64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    sh = np.uint64(29)
    m = 0
    for i in range(k):
        nused = 0
        for j in range(starts[i], starts[i + 1]):
            h = yb[j] * mult
            for c in range(p):
                h = (h ^ (h >> sh)) * mult + Xb[j, c]
            for c in range(q):
                h = (h ^ (h >> sh)) * mult + Wb[j, c]
            slot = (h ^ (h >> np.uint64(32))) & mask
            while True:
                s = table[slot]
                if s < 0:
                    table[slot] = m
                    used[nused] = slot
                    nused += 1
                    keep[m] = j
                    wt[m] = 1.0
                    m += 1
                    break
                jj = keep[s]
                same = y[jj] == y[j]
                c = 0
                while same and c < p:
                    same = X[jj, c] == X[j, c]
                    c += 1
                c = 0
                while same and c < q:
                    same = W[jj, c] == W[j, c]
                    c += 1
                if same:
                    wt[s] += 1.0
                    break
                slot = (slot + np.uint64(1)) & mask
            if j + 1 == probe and 4 * m > 3 * probe:
                return keep[:0], wt[:0], new_starts
        for s in range(nused):
            table[used[s]] = -1
        new_starts[i + 1] = m
    return keep[:m], wt[:m], new_starts


# ================================================================ Python front end


def _factor(psi: np.ndarray) -> np.ndarray:
    """Lambda with Psi = Lambda Lambda': Cholesky if Psi is positive definite, else the
    eigen-factor V diag(sqrt(max(lambda, 0))) (zero columns for zero variances)."""
    try:
        return np.linalg.cholesky(psi)
    except np.linalg.LinAlgError:
        pass
    w, V = np.linalg.eigh(psi)
    return V * np.sqrt(np.clip(w, 0.0, None))


def _check_psi(psi, q: int) -> np.ndarray:
    psi = np.asarray(psi, dtype=float)
    if psi.ndim == 0 and q == 1:
        psi = psi.reshape(1, 1)
    if psi.shape != (q, q):
        raise InputError(f"psi must be {q} × {q} (W has {q} columns); got shape {psi.shape}")
    if not np.all(np.isfinite(psi)):
        raise InputError("psi has non-finite entries")
    scale = max(1.0, float(np.max(np.abs(psi))))
    if np.max(np.abs(psi - psi.T)) > 1e-10 * scale:
        raise InputError(f"psi must be symmetric; got {psi.tolist()}")
    psi = 0.5 * (psi + psi.T)
    wmin = float(np.linalg.eigvalsh(psi)[0])
    if wmin < -1e-10 * scale:
        raise InputError(f"psi must be positive semi-definite; its smallest eigenvalue is {wmin:g}")
    return psi


def _check_arrays(fam: Family, y, X, W, beta, starts=None, extra=None):
    y = np.ascontiguousarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    W = np.asarray(W, dtype=float)
    beta = np.ascontiguousarray(beta, dtype=float).reshape(-1)
    if y.ndim != 1:
        raise InputError(f"y must be one-dimensional; got shape {y.shape}")
    n = y.shape[0]
    if W.ndim == 1:  # a single random effect
        W = W.reshape(-1, 1)
    if X.ndim != 2 or X.shape[0] != n:
        raise InputError(f"X must be n × p with n = len(y) = {n}; got shape {X.shape}")
    if W.ndim != 2 or W.shape[0] != n or W.shape[1] < 1:
        raise InputError(f"W must be n × q with n = len(y) = {n}, q >= 1; got shape {W.shape}")
    if fam.fitter == "multinomial":
        p = X.shape[1]
        if p < 1 or beta.shape[0] < p or beta.shape[0] % p:
            raise InputError(
                f"beta has {beta.shape[0]} entries; the multinomial family needs (K - 1) × p "
                f"of them, category-major, with p = {p} columns of X")
        if fam.n_eta and beta.shape[0] != fam.n_eta * p:
            raise InputError(
                f"beta has {beta.shape[0]} entries; the family has {fam.n_eta + 1} "
                f"categories, so (K - 1) × p = {fam.n_eta * p}")
    elif beta.shape[0] != X.shape[1]:
        raise InputError(f"beta has {beta.shape[0]} entries but X has {X.shape[1]} columns")
    for name, arr in (("X", X), ("W", W), ("beta", beta)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name} has missing or non-finite values")
    extra = _check_response(fam, y, extra, beta.shape[0] // max(X.shape[1], 1))
    if starts is not None:
        starts = np.ascontiguousarray(starts, dtype=np.int64).reshape(-1)
        if (starts.shape[0] < 1 or starts[0] != 0 or starts[-1] != n
                or np.any(np.diff(starts) < 0)):
            raise InputError(
                f"starts must be non-decreasing offsets from 0 to len(y) = {n}; "
                f"got {starts[:5].tolist()}{' ...' if starts.shape[0] > 5 else ''}")
    return y, np.ascontiguousarray(X), np.ascontiguousarray(W), beta, starts, extra


def _check_response(fam: Family, y: np.ndarray, extra, M: int) -> np.ndarray | None:
    """The response against the family, and the family's kernel parameters ``extra``
    (finite here; the family checks the rest: Family.validate_for_sampler)."""
    if extra is not None:
        extra = np.ascontiguousarray(extra, dtype=float).reshape(-1)
        if not np.all(np.isfinite(extra)):
            raise InputError(f"extra (the {fam.name} family's parameters) has non-finite "
                             f"values: {extra.tolist()}")
    return fam.validate_for_sampler(y, extra, M)


def _check_common(method, rng, sigma, fam):
    if method not in METHODS:
        raise InputError(f"method={method!r} is not supported; use one of {list(METHODS)}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); got {type(rng)}")
    if fam.fitter == "lmm":
        if sigma is None:
            raise InputError("family='gaussian' needs sigma (the residual SD)")
        sigma = float(sigma)
        if not (np.isfinite(sigma) and sigma > 0):
            raise InputError(f"sigma must be a positive number; got {sigma}")
    return sigma


def _directions(q: int, n2: int, n3: int):
    """Unit directions in R^q (n2 for q = 2, a Fibonacci sphere of n3 for q = 3; ± axes
    and ± pairwise diagonals for q > 3) and the cosine above which two of them are
    neighbours (a little over their spacing)."""
    if q == 1:
        return np.array([[1.0], [-1.0]]), 0.0
    if q == 2:
        ang = np.arange(n2) * (2.0 * np.pi / n2)
        return (np.column_stack([np.cos(ang), np.sin(ang)]),
                float(np.cos(1.35 * 2.0 * np.pi / n2)))
    if q == 3:
        i = np.arange(n3) + 0.5
        z = 1.0 - 2.0 * i / n3
        phi = i * np.pi * (3.0 - np.sqrt(5.0))
        rad = np.sqrt(1.0 - z * z)
        spacing = np.sqrt(4.0 * np.pi / n3)
        return (np.column_stack([rad * np.cos(phi), rad * np.sin(phi), z]),
                float(np.cos(1.35 * spacing)))
    eye = np.eye(q)
    pairs = [(eye[a] + s * eye[b]) / np.sqrt(2.0)
             for a in range(q) for b in range(a + 1, q) for s in (1.0, -1.0)]
    dirs = np.vstack([eye, *pairs])
    return np.vstack([dirs, -dirs]), float(np.cos(np.radians(50)))


@functools.lru_cache(maxsize=8)
def _taylor_tables(q: int):
    """The tables of the bound search in :func:`_envelopes`: the Taylor model's
    directions (24 for q = 2, 48 for q = 3) and their neighbour cosine; the screening
    grid's directions (12 / 24) with theirs, and its radii; the index tables of the
    symmetric 3- and 4-tensors of the Taylor model with their multiplicities."""
    dirs, near = _directions(q, 24, 48)
    sdirs, snear = _directions(q, 12, 24)
    radii = np.array([1.5, 3.0, 4.5])
    tabs = []
    for order in (3, 4):
        idx = list(itertools.combinations_with_replacement(range(q), order))
        mult = [math.factorial(order)
                / np.prod([math.factorial(t.count(v)) for v in set(t)]) for t in idx]
        tabs += [np.array(idx, dtype=np.int64), np.array(mult, dtype=float)]
    return (np.ascontiguousarray(dirs), near, np.ascontiguousarray(sdirs), snear, radii,
            *tabs)


class _Study:
    """The kernels' arrays for a set of studies (rows sorted by study), with identical
    rows of a study merged into weighted rows when that removes at least 1/4 of them."""

    def __init__(self, fam, y, X, W, starts, beta, lam, merge=True, extra=None):
        n = y.shape[0]
        wt = None
        if merge and n >= 16:
            probe = min(n, 256)
            keep, w, new_starts = _merge_rows(y.view(np.uint64), X.view(np.uint64),
                                              W.view(np.uint64), y, X, W, starts, probe)
            if 0 < keep.shape[0] <= 0.75 * n:
                y, X, W, starts, wt = y[keep], X[keep], W[keep], new_starts, w
        self.fam = fam
        self.code = np.int64(fam.code)
        self.extra = np.zeros(0) if extra is None else np.ascontiguousarray(extra, dtype=float)
        self.y = y
        self.wt = np.ones(y.shape[0]) if wt is None else wt
        self.xb = X @ beta
        self.Z = np.ascontiguousarray(W @ lam)
        self.starts = starts
        self.k = starts.shape[0] - 1
        self.q = lam.shape[0]

    def modes(self, stats=None):
        """Posterior modes and curvatures of every study; failures go to ``stats``."""
        n, k, q = self.y.shape[0], self.k, self.q
        self.U = np.zeros((k, q))
        self.L = np.zeros((k, q, q))
        self.llmode = np.zeros(k)
        self.g1, self.d, self.dd = np.empty(n), np.empty(n), np.empty(n)
        failed = _modes(self.code, self.y, self.wt, self.xb, self.Z, self.starts, self.U,
                        self.L, self.llmode, self.g1, self.d, self.dd, self.extra)
        if stats is not None:
            stats.mode_failures += int(failed)

    def envelopes(self):
        n, k, q = self.y.shape[0], self.k, self.q
        self.eta0 = np.empty(n)
        self.Zt = np.empty((n, q))
        self.B = np.zeros((k, q, q))
        self.logM = np.zeros(k)
        self.bound_passes = _envelopes(
            self.code, self.y, self.wt, self.xb, self.Z, self.starts, self.U, self.L,
            self.llmode, self.d, self.dd, NU_T, C_SCALE, SCREEN, *_taylor_tables(q),
            self.eta0, self.Zt, self.B, self.logM, self.extra)

    def gaussian(self, sigma):
        self.U = np.zeros((self.k, self.q))
        self.L = np.zeros((self.k, self.q, self.q))
        _gaussian_posteriors(self.y, self.wt, self.xb, self.Z, self.starts, sigma, self.U, self.L)


def _t_proposals(rng, shape, q):
    """Standard multivariate-t(NU_T) vectors of the given leading shape, and log-uniforms."""
    E = rng.standard_normal((*shape, q))
    w = rng.chisquare(NU_T, size=shape)
    logu = np.log(rng.random(shape))
    return E * np.sqrt(NU_T / w)[..., None], logu


def draw_random_effects(
    family: str | Family,
    y,
    X,
    W,
    beta,
    psi,
    size: int,
    rng: np.random.Generator,
    method: str = "exact",
    sigma: float | None = None,
    *,
    stats: SamplerStats | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Draws of one study's random effects b from their posterior given its rows.

    Parameters
    ----------
    family : "binomial" (logit), "poisson" (log), "negbin" (NB2, log), "ordinal"
        (cumulative logit), "multinomial" (baseline-category logit), "gaussian"
        (identity), or a :class:`~mlmi.glmm.families.Family`.
    y : (n_i,) the study's observed responses (ordinal / multinomial: category codes
        0..K-1; a study need not show every category).
    X : (n_i, p) fixed-effects design; W : (n_i, q) random-effects design.
    beta : (p,) fixed effects — multinomial: ((K - 1) p,), category-major
        (beta_1, ..., beta_{K-1}) as the fit's ``.beta``; psi : (Q, Q) random-effects
        covariance, Q = q (multinomial: Q = (K - 1) q, b category-major as the fit's
        ``.psi``), positive semi-definite; a zero variance gives a zero effect.
    size : number of draws (>= 1).
    rng : numpy Generator; every random number is taken from it.
    method : "exact" (default), "prior-ar", "laplace" or "marginal" — see the module
        docstring. For gaussian the first three all draw from the closed-form posterior.
    sigma : residual SD (gaussian only).
    stats : :class:`SamplerStats` updated in place (optional).
    extra : the family's own parameters as its compiled kernels take them,
        ``fit.family.kernel_extra(fit.extra)`` (NB theta and constants derived from it,
        ordinal thresholds); empty for binomial and poisson.

    Returns
    -------
    (size, Q) array of draws of b.
    """
    fam = get_family(family)
    sigma = _check_common(method, rng, sigma, fam)
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise InputError(f"size must be a positive integer; got {size!r}")
    y, X, W, beta, _, extra = _check_arrays(fam, y, X, W, beta, extra=extra)
    n = y.shape[0]
    if fam.fitter == "multinomial":
        return _draw_multinomial(y, X, W, np.array([0, n], dtype=np.int64), beta, psi, rng,
                                 method, stats, int(size))
    lam = _factor(_check_psi(psi, W.shape[1]))
    if method == "marginal":
        _count_direct(stats, size)
        return rng.standard_normal((size, lam.shape[0])) @ lam.T
    st = _Study(fam, y, X, W, np.array([0, n], dtype=np.int64), beta, lam, extra=extra)
    u = _draw_one_study(st, int(size), rng, method, sigma, stats)
    return u @ lam.T


def _draw_one_study(st: _Study, size, rng, method, sigma, stats):
    q = st.q
    idx = np.zeros(size, dtype=np.int64)
    if st.fam.fitter == "lmm" or method == "laplace":
        if st.fam.fitter == "lmm":
            st.gaussian(sigma)
        else:
            st.modes(stats)
        u = np.empty((size, q))
        _normal_draws(st.U, st.L, idx, rng.standard_normal((size, q)), u)
        _count_direct(stats, size)
        return u
    st.modes(stats)
    out = np.empty((size, q))
    if method == "exact":
        st.envelopes()
        filled = used = exceeded = 0
        rate = 0.7  # a first guess; batches then follow the observed rate
        while filled < size:
            m = int(np.ceil((size - filled) / rate * 1.05)) + 8
            T, logu = _t_proposals(rng, (m,), q)
            filled, u_, e_ = _exact_run(st.code, st.y, st.wt, st.eta0, st.Zt, 0, st.y.shape[0],
                                        st.llmode[0], st.U[0], st.B[0], NU_T, st.logM, 0, T,
                                        logu, out, filled, st.extra)
            used += u_
            exceeded += e_
            rate = max(filled / used, 1e-3)
            if used > EXACT_CAP * size and filled < size:
                # degenerate posterior: the rest from the Laplace normal, counted
                rest = np.empty((size - filled, q))
                _normal_draws(st.U, st.L, np.zeros(size - filled, dtype=np.int64),
                              rng.standard_normal((size - filled, q)), rest)
                out[filled:] = rest
                if stats is not None:
                    stats.add(size, used, filled, exceeded, size - filled)
                return out
        if stats is not None:
            stats.add(size, used, size, exceeded, 0)
        return out
    # prior-ar
    filled = tries = 0
    tot = np.zeros(4, dtype=np.int64)
    m = 8
    n = st.y.shape[0]
    while filled < size:
        P = rng.standard_normal((m, q))
        logu = np.log(rng.random(m))
        filled, tries, u_, ac, ex, fb = _prior_ar_run(st.code, st.y, st.wt, st.xb, st.Z, 0, n,
                                                      st.llmode[0], PRIOR_AR_CAP, P, logu, out,
                                                      filled, tries, st.extra)
        tot += (u_, ac, ex, fb)
        rate = max(filled / tot[0], 1.0 / PRIOR_AR_CAP)
        m = min(int(np.ceil((size - filled) / rate * 1.05)) + 8, 1 << 20)
    if stats is not None:
        stats.add(size, tot[0], tot[1], tot[2], tot[3])
    return out


def _count_direct(stats, k):
    if stats is not None:
        stats.add(k, k, k, 0, 0)


def draw_many(
    family: str | Family,
    y,
    X,
    W,
    starts,
    beta,
    psi,
    rng: np.random.Generator,
    method: str = "exact",
    sigma: float | None = None,
    stats: SamplerStats | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """One posterior draw of b for each of k studies (the imputation loop's entry point).

    Study i owns rows ``starts[i]:starts[i + 1]`` of ``y``, ``X``, ``W`` (rows sorted by
    study); the other arguments are those of :func:`draw_random_effects`. Returns a
    (k, Q) array (Q = q; multinomial: (K - 1) q, category-major). The per-study work
    (mode, envelope bound, proposals) runs in compiled
    code; proposals are generated in numpy, ``FIRST_BATCH`` per study at first, then
    4× more for the studies still without an accepted draw.
    """
    fam = get_family(family)
    sigma = _check_common(method, rng, sigma, fam)
    y, X, W, beta, starts, extra = _check_arrays(fam, y, X, W, beta, starts, extra)
    if fam.fitter == "multinomial":
        return _draw_multinomial(y, X, W, starts, beta, psi, rng, method, stats, None)
    lam = _factor(_check_psi(psi, W.shape[1]))
    k, q = starts.shape[0] - 1, lam.shape[0]
    if method == "marginal":
        _count_direct(stats, k)
        return rng.standard_normal((k, q)) @ lam.T
    if k == 0:
        return np.zeros((0, q))
    st = _Study(fam, y, X, W, starts, beta, lam, extra=extra)
    idx = np.arange(k, dtype=np.int64)
    if fam.fitter == "lmm" or method == "laplace":
        if fam.fitter == "lmm":
            st.gaussian(sigma)
        else:
            st.modes(stats)
        u = np.empty((k, q))
        _normal_draws(st.U, st.L, idx, rng.standard_normal((k, q)), u)
        _count_direct(stats, k)
        return u @ lam.T
    st.modes(stats)
    out = np.zeros((k, q))
    done = np.zeros(k, dtype=np.bool_)
    todo = idx
    if method == "exact":
        st.envelopes()
        m = FIRST_BATCH
        tot = np.zeros(3, dtype=np.int64)
        total_m = 0
        while todo.shape[0]:
            T, logu = _t_proposals(rng, (todo.shape[0], m), q)
            tot += _exact_many(st.code, st.y, st.wt, st.eta0, st.Zt, st.starts, st.llmode,
                               st.U, st.B, NU_T, st.logM, todo, T, logu, out, done, st.extra)
            todo = idx[~done]
            total_m += m
            if total_m > EXACT_CAP and todo.shape[0]:
                # degenerate posteriors: their draws from the Laplace normal, counted
                rest = np.empty((todo.shape[0], q))
                _normal_draws(st.U, st.L, todo, rng.standard_normal((todo.shape[0], q)), rest)
                out[todo] = rest
                if stats is not None:
                    stats.add(k, tot[0], tot[1], tot[2], todo.shape[0])
                return out @ lam.T
            m *= 4
        if stats is not None:
            stats.add(k, tot[0], tot[1], tot[2], 0)
        return out @ lam.T
    # prior-ar: batches of 8, 32, 128, then the rest of the 250
    tries = np.zeros(k, dtype=np.int64)
    tot = np.zeros(4, dtype=np.int64)
    m, total_m = 8, 0
    while todo.shape[0]:
        m = min(m, PRIOR_AR_CAP - total_m)
        P = rng.standard_normal((todo.shape[0], m, q))
        logu = np.log(rng.random((todo.shape[0], m)))
        tot += _prior_ar_many(st.code, st.y, st.wt, st.xb, st.Z, st.starts, st.llmode,
                              PRIOR_AR_CAP, todo, P, logu, out, done, tries, st.extra)
        todo = idx[~done]
        total_m += m
        m *= 4
    if stats is not None:
        stats.add(k, tot[0], tot[1], tot[2], tot[3])
    return out @ lam.T


# ================================================================ multinomial (vector eta)


def _tri_factor(psi: np.ndarray) -> np.ndarray:
    """A lower-triangular Lambda with Psi = Lambda Lambda' (the multinomial kernels use
    the triangle): Cholesky if Psi is positive definite, else the eigen-factor turned
    triangular by an LQ decomposition (Lambda_eig = L Q with Q orthogonal, so
    L L' = Psi; zero variances give zero columns)."""
    try:
        return np.linalg.cholesky(psi)
    except np.linalg.LinAlgError:
        pass
    lam = _factor(psi)
    L = np.linalg.qr(lam.T, mode="r").T
    sign = np.where(np.diag(L) < 0, -1.0, 1.0)
    return np.ascontiguousarray(L * sign)


@functools.lru_cache(maxsize=8)
def _mn_tables(Q: int):
    """Directions (unit vectors in R^Q), their neighbour cosine and the radii of the
    multinomial bound search's screening grid (see :func:`_draw_multinomial`): 24 / 48
    directions for Q = 2 / 3; for Q > 3 the ± axes, ± pairwise diagonals and (Q <= 6)
    the 2^Q corners. The first radius is the ring where r of a normal target peaks."""
    dirs, near = _directions(Q, 24, 48)
    if 3 < Q <= 6:
        corners = np.array(list(itertools.product((-1.0, 1.0), repeat=Q))) / np.sqrt(Q)
        dirs = np.vstack([dirs, corners])
    ring = math.sqrt(max((NU_T + Q) / C_SCALE - NU_T, 0.5))
    radii = np.array([ring, 1.5, 3.0, 4.5])
    return np.ascontiguousarray(dirs), near, radii


class _MnStudy:
    """The multinomial kernels' arrays for a set of studies (rows sorted by study),
    identical rows of a study merged into weighted rows when that removes >= 1/4."""

    def __init__(self, y, X, W, starts, beta, lam, merge=True):
        n, p = X.shape
        wt = None
        if merge and n >= 16:
            probe = min(n, 256)
            keep, w, new_starts = _merge_rows(y.view(np.uint64), X.view(np.uint64),
                                              W.view(np.uint64), y, X, W, starts, probe)
            if 0 < keep.shape[0] <= 0.75 * n:
                y, X, W, starts, wt = y[keep], X[keep], W[keep], new_starts, w
        M = beta.shape[0] // p
        self.yc = np.ascontiguousarray(y, dtype=np.int64)
        self.wt = np.ones(y.shape[0]) if wt is None else wt
        self.xb = np.ascontiguousarray(X @ beta.reshape(M, p).T)
        self.W = np.ascontiguousarray(W)
        self.lam = np.ascontiguousarray(lam)
        self.starts = starts
        self.k = starts.shape[0] - 1
        self.Q = lam.shape[0]

    def modes(self, stats=None):
        k, Q = self.k, self.Q
        self.U = np.zeros((k, Q))
        self.L = np.zeros((k, Q, Q))
        self.llmode = np.zeros(k)
        failed = _mn.mn_modes(self.yc, self.wt, self.xb, self.W, self.lam, self.starts,
                              self.U, self.L, self.llmode)
        if stats is not None:
            stats.mode_failures += int(failed)

    def envelopes(self):
        n, k, Q = self.yc.shape[0], self.k, self.Q
        self.eta0 = np.empty((n, self.xb.shape[1]))
        self.Zt = np.empty((n, self.xb.shape[1], Q))
        self.B = np.zeros((k, Q, Q))
        self.logM = np.zeros(k)
        dirs, near, radii = _mn_tables(Q)
        self.bound_passes = _mn.mn_envelopes(
            self.yc, self.wt, self.xb, self.W, self.lam, self.starts, self.U, self.L,
            self.llmode, NU_T, C_SCALE, dirs, near, radii, 3 if Q <= 2 else 4, self.eta0,
            self.Zt, self.B, self.logM)


def _draw_multinomial(y, X, W, starts, beta, psi, rng, method, stats, size):
    """Posterior draws of b (category-major, Q = (K - 1) q) for the multinomial family.

    ``size=None``: one draw for each study of ``starts`` (draw_many), else ``size``
    draws of the one study (draw_random_effects). Same samplers as the scalar families
    (module docstring): "exact" — t envelope at the mode with scale C_SCALE H^{-1}; its
    bound log M = max r is searched by screening r on directions × radii (see
    :func:`_mn_tables`) and Newton ascent from the best 3 (Q <= 2) or 4 points in
    different directions, and checked at every proposal (raised and counted in
    ``bound_exceeded`` when a proposal exceeds it); "laplace"; "marginal"; "prior-ar"."""
    q = W.shape[1]
    M = beta.shape[0] // X.shape[1]
    Q = M * q
    if np.shape(psi) != (Q, Q) and not (Q == 1 and np.size(psi) == 1):
        raise InputError(
            f"psi must be Q × Q with Q = (K - 1) q = {M} × {q} = {Q} for the multinomial "
            f"family (b category-major); got shape {np.shape(psi)}")
    lam = _tri_factor(_check_psi(np.reshape(psi, (Q, Q)), Q))
    k = starts.shape[0] - 1
    many = size is None
    n_out = k if many else size
    if method == "marginal":
        _count_direct(stats, n_out)
        return rng.standard_normal((n_out, Q)) @ lam.T
    if k == 0:
        return np.zeros((0, Q))
    st = _MnStudy(y, X, W, starts, beta, lam)
    st.modes(stats)
    if method == "laplace":
        idx = np.arange(k, dtype=np.int64) if many else np.zeros(size, dtype=np.int64)
        u = np.empty((n_out, Q))
        _normal_draws(st.U, st.L, idx, rng.standard_normal((n_out, Q)), u)
        _count_direct(stats, n_out)
        return u @ lam.T
    out = np.zeros((n_out, Q))
    if method == "exact":
        st.envelopes()
        if not many:
            filled = used = exceeded = 0
            rate = 0.7
            n = st.yc.shape[0]
            while filled < size:
                m = int(np.ceil((size - filled) / rate * 1.05)) + 8
                T, logu = _t_proposals(rng, (m,), Q)
                filled, u_, e_ = _mn.mn_exact_one(st.yc, st.wt, st.eta0, st.Zt, 0, n,
                                                  st.llmode[0], st.U[0], st.B[0], NU_T, st.logM,
                                                  T, logu, out, filled)
                used += u_
                exceeded += e_
                rate = max(filled / used, 1e-3)
                if used > EXACT_CAP * size and filled < size:
                    rest = np.empty((size - filled, Q))
                    _normal_draws(st.U, st.L, np.zeros(size - filled, dtype=np.int64),
                                  rng.standard_normal((size - filled, Q)), rest)
                    out[filled:] = rest
                    if stats is not None:
                        stats.add(size, used, filled, exceeded, size - filled)
                    return out @ lam.T
            if stats is not None:
                stats.add(size, used, size, exceeded, 0)
            return out @ lam.T
        idx = np.arange(k, dtype=np.int64)
        done = np.zeros(k, dtype=np.bool_)
        todo = idx
        m = FIRST_BATCH
        tot = np.zeros(3, dtype=np.int64)
        total_m = 0
        while todo.shape[0]:
            T, logu = _t_proposals(rng, (todo.shape[0], m), Q)
            tot += _mn.mn_exact_many(st.yc, st.wt, st.eta0, st.Zt, st.starts, st.llmode, st.U,
                                     st.B, NU_T, st.logM, todo, T, logu, out, done)
            todo = idx[~done]
            total_m += m
            if total_m > EXACT_CAP and todo.shape[0]:
                rest = np.empty((todo.shape[0], Q))
                _normal_draws(st.U, st.L, todo, rng.standard_normal((todo.shape[0], Q)), rest)
                out[todo] = rest
                if stats is not None:
                    stats.add(k, tot[0], tot[1], tot[2], todo.shape[0])
                return out @ lam.T
            m *= 4
        if stats is not None:
            stats.add(k, tot[0], tot[1], tot[2], 0)
        return out @ lam.T
    # prior-ar
    tot = np.zeros(4, dtype=np.int64)
    if not many:
        filled = tries = 0
        m = 8
        n = st.yc.shape[0]
        while filled < size:
            P = rng.standard_normal((m, Q))
            logu = np.log(rng.random(m))
            filled, tries, u_, ac, ex, fb = _mn.mn_prior_ar_run(
                st.yc, st.wt, st.xb, st.W, st.lam, 0, n, st.llmode[0], PRIOR_AR_CAP, P, logu,
                out, filled, tries)
            tot += (u_, ac, ex, fb)
            rate = max(filled / tot[0], 1.0 / PRIOR_AR_CAP)
            m = min(int(np.ceil((size - filled) / rate * 1.05)) + 8, 1 << 20)
        if stats is not None:
            stats.add(size, tot[0], tot[1], tot[2], tot[3])
        return out @ lam.T
    idx = np.arange(k, dtype=np.int64)
    done = np.zeros(k, dtype=np.bool_)
    todo = idx
    tries = np.zeros(k, dtype=np.int64)
    m, total_m = 8, 0
    while todo.shape[0]:
        m = min(m, PRIOR_AR_CAP - total_m)
        P = rng.standard_normal((todo.shape[0], m, Q))
        logu = np.log(rng.random((todo.shape[0], m)))
        tot += _mn.mn_prior_ar_many(st.yc, st.wt, st.xb, st.W, st.lam, st.starts, st.llmode,
                                    PRIOR_AR_CAP, todo, P, logu, out, done, tries)
        todo = idx[~done]
        total_m += m
        m *= 4
    if stats is not None:
        stats.add(k, tot[0], tot[1], tot[2], tot[3])
    return out @ lam.T
