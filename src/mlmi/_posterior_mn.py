"""Compiled kernels of the posterior sampler for the multinomial (baseline-category logit)
family, whose linear predictor is a vector: eta_j = (eta_j1, ..., eta_jM), M = K - 1.

The random effects of a study are b = (b_1, ..., b_M) in R^Q, Q = M q, category-major
(as in :mod:`mlmi.glmm.families.multinomial`), b = Lambda u with u ~ N(0, I_Q) and
Lambda lower triangular. Row j's predictor for category k is
eta_jk = x_j' beta_k + w_j' b_k. At the conditional mode u_hat (the family's compiled
Newton ``cluster_mode``) with H = L_H L_H' the curvature of -log p(u | y) there, the
sampler works in whitened coordinates t: u = u_hat + B t, B = sqrt(c) L_H^{-T}, so

    eta_jk(t) = eta0_jk + Zt_jk' t,   eta0_jk = eta_jk(u_hat),  Zt_jk = (Lambda B)' (e_k ⊗ w_j),

and the log ratio of target to the multivariate-t(nu) envelope is, up to a constant,

    r(t) = sum_j wt_j log pi_{j, y_j}(t) - ll0 - (|u_hat + B t|² - |u_hat|²) / 2
           + (nu + Q)/2 log(1 + |t|²/nu).

Its gradient is sum_j wt_j Zt_j' e_j - B'(u_hat + B t) + kappa t (e_jk = [y_j = k] - pi_jk,
kappa = (nu + Q)/(nu + |t|²)) and minus its Hessian
sum_j wt_j Zt_j' A_j Zt_j + B'B - kappa I + 2 kappa²/(nu + Q) t t', A_j = diag(pi_j) -
pi_j pi_j'. See :mod:`mlmi.posterior` for how the bound log M = max r is searched and
checked; this module holds the per-row work.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .glmm._linalg import chol_inplace, damped_newton_step
from .glmm.families.multinomial import cluster_mode, congruence, softmax

#: Newton ascent of r: iteration limit, decrement at which it stops (= its margin), and
#: the margin added where r is not concave (a flat ring) — as the scalar sampler's
_BOUND_MAXIT = 40
_BOUND_TOL = 2e-2
_FLAT_MARGIN = 0.02


@njit(cache=True, error_model="numpy")
def _row_logp(yc, eta, pi):
    """log P(Y = y | eta) of one row (reference category 0); fills ``pi``."""
    lse = softmax(eta, pi)
    return (eta[yc - 1] if yc > 0 else 0.0) - lse


@njit(cache=True, error_model="numpy")
def _curvature_at(yc, wt, xb, W, lam, a, b, u, H):
    """H = I + Lambda' G Lambda at u (G = sum_j wt_j A_j ⊗ w_j w_j'), Cholesky-factored in
    place; returns the study's log-likelihood at u. Used where Newton did not converge."""
    M = xb.shape[1]
    q = W.shape[1]
    Q = u.shape[0]
    bvec = np.empty(Q)
    for R in range(Q):
        acc = 0.0
        for c in range(R + 1):
            acc += lam[R, c] * u[c]
        bvec[R] = acc
    G = np.zeros((Q, Q))
    eta = np.empty(M)
    pi = np.empty(M)
    ll = 0.0
    for j in range(a, b):
        for k in range(M):
            acc = xb[j, k]
            for r in range(q):
                acc += W[j, r] * bvec[k * q + r]
            eta[k] = acc
        ll += wt[j] * _row_logp(yc[j], eta, pi)
        for k in range(M):
            for m in range(M):
                akm = wt[j] * ((pi[k] if k == m else 0.0) - pi[k] * pi[m])
                for r in range(q):
                    for s in range(q):
                        G[k * q + r, m * q + s] += akm * W[j, r] * W[j, s]
    tmp = np.empty((Q, Q))
    congruence(lam, G, H, tmp)
    chol_inplace(H)
    return ll


@njit(cache=True, error_model="numpy")
def mn_modes(yc, wt, xb, W, lam, starts, U, L, llmode):
    """Conditional mode U[i], Cholesky factor L[i] of the curvature there and the
    study's log-likelihood llmode[i] there, for every study. Returns the number of
    studies whose Newton iterations did not converge (their U[i] is the last iterate
    and L, llmode are recomputed there: the exact sampler stays exact)."""
    k = starts.shape[0] - 1
    Q = U.shape[1]
    M = xb.shape[1]
    G = np.zeros((Q, Q))
    Eb = np.empty(Q)
    pis = np.empty((yc.shape[0], M))
    failed = 0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = U[i]
        for r in range(Q):
            ui[r] = 0.0
        obj, ok = cluster_mode(yc, wt, xb, W, lam, a, b, ui, L[i], G, pis, Eb)
        if ok:
            s = 0.0
            for r in range(Q):
                s += ui[r] * ui[r]
            llmode[i] = 0.5 * s - obj
        else:
            failed += 1
            for r in range(Q):
                if not np.isfinite(ui[r]):
                    ui[r] = 0.0
            llmode[i] = _curvature_at(yc, wt, xb, W, lam, a, b, ui, L[i])
    return failed


@njit(cache=True, error_model="numpy")
def mn_loglik_u(yc, wt, xb, W, lam, a, b, u, bvec, eta, pi):
    """The study's log-likelihood at u (b = Lambda u): the paper's sampler's L(u)."""
    M = xb.shape[1]
    q = W.shape[1]
    Q = u.shape[0]
    for R in range(Q):
        acc = 0.0
        for c in range(R + 1):
            acc += lam[R, c] * u[c]
        bvec[R] = acc
    ll = 0.0
    for j in range(a, b):
        for k in range(M):
            acc = xb[j, k]
            for r in range(q):
                acc += W[j, r] * bvec[k * q + r]
            eta[k] = acc
        ll += wt[j] * _row_logp(yc[j], eta, pi)
    return ll


@njit(cache=True, error_model="numpy")
def _prior_terms(uhat, B, t, v):
    """(|u_hat + B t|² - |u_hat|², |t|²) with v = u_hat + B t (B upper triangular)."""
    Q = t.shape[0]
    prior = 0.0
    tt = 0.0
    for r in range(Q):
        acc = uhat[r]
        for c in range(r, Q):
            acc += B[r, c] * t[c]
        v[r] = acc
        prior += acc * acc - uhat[r] * uhat[r]
        tt += t[r] * t[r]
    return prior, tt


@njit(cache=True, error_model="numpy")
def mn_r_value(yc, wt, eta0, Zt, a, b, ll0, uhat, B, nu, t, eta, pi, v):
    """r(t) (module docstring): one pass over the study's rows."""
    Q = t.shape[0]
    M = eta0.shape[1]
    prior, tt = _prior_terms(uhat, B, t, v)
    ll = 0.0
    for j in range(a, b):
        for k in range(M):
            acc = eta0[j, k]
            for s in range(Q):
                acc += Zt[j, k, s] * t[s]
            eta[k] = acc
        ll += wt[j] * _row_logp(yc[j], eta, pi)
    return ll - ll0 - 0.5 * prior + 0.5 * (nu + Q) * np.log1p(tt / nu)


@njit(cache=True, error_model="numpy")
def _mn_r_derivs(yc, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t, g, N, v, eta, pi, zbar):
    """r(t), its gradient g and minus its Hessian N."""
    Q = t.shape[0]
    M = eta0.shape[1]
    for r in range(Q):
        g[r] = 0.0
        for c in range(Q):
            N[r, c] = BtB[r, c]
    s = 0.0
    for j in range(a, b):
        for k in range(M):
            acc = eta0[j, k]
            for r in range(Q):
                acc += Zt[j, k, r] * t[r]
            eta[k] = acc
        y = yc[j]
        wj = wt[j]
        s += wj * _row_logp(y, eta, pi)
        for r in range(Q):
            acc = 0.0
            for k in range(M):
                acc += pi[k] * Zt[j, k, r]
            zbar[r] = acc
            # gradient: sum_k e_k Zt_k = Zt_y - zbar (Zt_0 = 0 for the reference)
            g[r] += wj * ((Zt[j, y - 1, r] if y > 0 else 0.0) - acc)
        # Zt' A Zt = sum_k pi_k Zt_k Zt_k' - zbar zbar'
        for r in range(Q):
            for c in range(r + 1):
                acc = 0.0
                for k in range(M):
                    acc += pi[k] * Zt[j, k, r] * Zt[j, k, c]
                N[r, c] += wj * (acc - zbar[r] * zbar[c])
    prior, tt = _prior_terms(uhat, B, t, v)
    kap = (nu + Q) / (nu + tt)
    for r in range(Q):
        acc = 0.0
        for c in range(r + 1):
            acc += B[c, r] * v[c]  # (B'v)[r], B upper triangular
        g[r] += kap * t[r] - acc
        for c in range(r + 1):
            N[r, c] += 2.0 * kap * kap / (nu + Q) * t[r] * t[c]
        N[r, r] -= kap
    for r in range(Q):
        for c in range(r + 1, Q):
            N[r, c] = N[c, r]
    return s - ll0 - 0.5 * prior + 0.5 * (nu + Q) * np.log1p(tt / nu)


@njit(cache=True, error_model="numpy")
def _mn_maximise_r(yc, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t):
    """Newton ascent of r from ``t`` (overwritten), Levenberg damping where r is not
    concave, step halving. Returns (an upper estimate of the local maximum: the largest
    r evaluated, or the last value plus the last Newton decrement (+ _FLAT_MARGIN where r
    is not concave) when converged; passes over the rows)."""
    Q = t.shape[0]
    M = eta0.shape[1]
    g = np.empty(Q)
    N = np.empty((Q, Q))
    Mm = np.empty((Q, Q))
    v = np.empty(Q)
    s = np.empty(Q)
    tn = np.empty(Q)
    gn = np.empty(Q)
    Nn = np.empty((Q, Q))
    eta = np.empty(M)
    pi = np.empty(M)
    zbar = np.empty(Q)
    val = _mn_r_derivs(yc, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, t, g, N, v, eta, pi,
                       zbar)
    passes = 1
    best = val
    margin = 0.0
    for _ in range(_BOUND_MAXIT):
        dec, lam = damped_newton_step(N, g, Mm, s)
        if not dec > _BOUND_TOL:
            margin = max(dec, 0.0) + (_FLAT_MARGIN if lam > 0.0 else 0.0)
            break
        step = 1.0
        moved = False
        while step > 1e-6:
            for r in range(Q):
                tn[r] = t[r] + step * s[r]
            valn = _mn_r_derivs(yc, wt, eta0, Zt, a, b, ll0, uhat, B, BtB, nu, tn, gn, Nn, v,
                                eta, pi, zbar)
            passes += 1
            if valn > best:
                best = valn
            if valn >= val:
                moved = True
                break
            step *= 0.5
        if not moved:
            break
        for r in range(Q):
            t[r] = tn[r]
            g[r] = gn[r]
            for c in range(Q):
                N[r, c] = Nn[r, c]
        val = valn
    return max(best, val + margin), passes


@njit(cache=True, error_model="numpy")
def _dot(x, y):
    s = 0.0
    for r in range(x.shape[0]):
        s += x[r] * y[r]
    return s


@njit(cache=True, error_model="numpy")
def mn_envelopes(yc, wt, xb, W, lam, starts, U, L, llmode, nu, c, dirs, near, radii, n_climb,
                 eta0, Zt, B, logM):
    """For every study: B = sqrt(c) L^{-T} (u = u_hat + B t), the whitened design
    (eta0, Zt) and the bound logM = max_t r(t).

    The search: r on a grid of directions ``dirs`` × ``radii`` (the first radius is the
    ring where a normal target's r peaks); Newton's method climbs from the best point
    and from the best points of up to ``n_climb`` - 1 other directions (at cosine below
    ``near`` to those already climbed from). The bound is the largest value found, plus
    the margins of :func:`_mn_maximise_r`. Returns the passes over the rows spent."""
    k = starts.shape[0] - 1
    Q = U.shape[1]
    M = xb.shape[1]
    q = W.shape[1]
    sc = np.sqrt(c)
    Linv = np.empty((Q, Q))
    LB = np.empty((Q, Q))
    BtB = np.empty((Q, Q))
    col = np.empty(Q)
    t = np.empty(Q)
    v = np.empty(Q)
    eta = np.empty(M)
    pi = np.empty(M)
    bhat = np.empty(Q)
    nd = dirs.shape[0]
    nr = radii.shape[0]
    sval = np.empty(nd * nr)
    chosen = np.empty(n_climb, dtype=np.int64)
    passes = 0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        Li = L[i]
        ui = U[i]
        for cc in range(Q):  # L^{-1} column by column (forward substitution)
            for r in range(Q):
                acc = 1.0 if r == cc else 0.0
                for m in range(r):
                    acc -= Li[r, m] * col[m]
                col[r] = acc / Li[r, r]
            for r in range(Q):
                Linv[r, cc] = col[r]
        Bi = B[i]
        for r in range(Q):
            for cc in range(Q):
                Bi[r, cc] = sc * Linv[cc, r]
        for r in range(Q):
            for cc in range(Q):
                acc = 0.0
                for m in range(Q):
                    acc += Bi[m, r] * Bi[m, cc]
                BtB[r, cc] = acc
        # Lambda B, and b_hat = Lambda u_hat
        for R in range(Q):
            acc = 0.0
            for m in range(R + 1):
                acc += lam[R, m] * ui[m]
            bhat[R] = acc
            for cc in range(Q):
                acc = 0.0
                for m in range(R + 1):
                    acc += lam[R, m] * Bi[m, cc]
                LB[R, cc] = acc
        for j in range(a, b):
            for kk in range(M):
                acc = xb[j, kk]
                for r in range(q):
                    acc += W[j, r] * bhat[kk * q + r]
                eta0[j, kk] = acc
                for cc in range(Q):
                    acc = 0.0
                    for r in range(q):
                        acc += W[j, r] * LB[kk * q + r, cc]
                    Zt[j, kk, cc] = acc
        # screening
        for s in range(nd):
            for m in range(nr):
                for r in range(Q):
                    t[r] = radii[m] * dirs[s, r]
                sval[s * nr + m] = mn_r_value(yc, wt, eta0, Zt, a, b, llmode[i], ui, Bi, nu, t,
                                              eta, pi, v)
        passes += nd * nr
        best = 0.0  # r(0) = 0
        order = np.argsort(-sval)
        picked = 0
        for o in range(nd * nr):
            s = order[o] // nr
            clash = False
            for pp in range(picked):
                if _dot(dirs[s], dirs[chosen[pp]]) > near:
                    clash = True
            if clash:
                continue
            chosen[picked] = s
            picked += 1
            for r in range(Q):
                t[r] = radii[order[o] % nr] * dirs[s, r]
            val, p_ = _mn_maximise_r(yc, wt, eta0, Zt, a, b, llmode[i], ui, Bi, BtB, nu, t)
            passes += p_
            if val > best:
                best = val
            if picked == n_climb:
                break
        if sval[order[0]] > best:  # cannot happen (Newton only climbs); kept for safety
            best = sval[order[0]]
        logM[i] = best
    return passes


@njit(cache=True, error_model="numpy")
def _mn_exact_run(yc, wt, eta0, Zt, a, b, ll0, uhat, B, nu, logM, i, T, logu, out, filled):
    """Accept–reject for study i over proposals T (m × Q, t-coordinates) with log-uniforms
    ``logu``; accepted u = u_hat + B t go to out[filled], ... until ``out`` is full. A
    proposal with r(t) > logM[i] raises the bound (counted). Returns (filled, proposals
    used, bound exceedances)."""
    Q = uhat.shape[0]
    M = eta0.shape[1]
    eta = np.empty(M)
    pi = np.empty(M)
    v = np.empty(Q)
    size = out.shape[0]
    used = 0
    exceeded = 0
    for m in range(T.shape[0]):
        if filled >= size:
            break
        t = T[m]
        used += 1
        r = mn_r_value(yc, wt, eta0, Zt, a, b, ll0, uhat, B, nu, t, eta, pi, v)
        if r > logM[i]:
            exceeded += 1
            logM[i] = r
        if logu[m] <= r - logM[i]:
            for rr in range(Q):
                out[filled, rr] = v[rr]  # v = u_hat + B t (mn_r_value left it there)
            filled += 1
    return filled, used, exceeded


@njit(cache=True, error_model="numpy")
def mn_exact_many(yc, wt, eta0, Zt, starts, llmode, U, B, nu, logM, todo, T, logu, out, done):
    """One batch of proposals T[s] for each study todo[s]; returns (proposals, accepted,
    exceeded)."""
    used = 0
    acc = 0
    exc = 0
    for s in range(todo.shape[0]):
        i = todo[s]
        filled, u_, e_ = _mn_exact_run(yc, wt, eta0, Zt, starts[i], starts[i + 1], llmode[i],
                                       U[i], B[i], nu, logM, i, T[s], logu[s], out[i:i + 1], 0)
        used += u_
        exc += e_
        if filled == 1:
            done[i] = True
            acc += 1
    return used, acc, exc


@njit(cache=True, error_model="numpy")
def mn_exact_one(yc, wt, eta0, Zt, a, b, ll0, uhat, B, nu, logM, T, logu, out, filled):
    """Many draws of one study (draw_random_effects): see :func:`_mn_exact_run`."""
    return _mn_exact_run(yc, wt, eta0, Zt, a, b, ll0, uhat, B, nu, logM, 0, T, logu, out,
                         filled)


@njit(cache=True, error_model="numpy")
def mn_prior_ar_run(yc, wt, xb, W, lam, a, b, llmax, cap, P, logu, out, filled, tries):
    """The paper's sampler for one study over prior proposals P (m × Q, u-coordinates):
    accept if log U <= log L(u) - llmax (llmax: the log-likelihood at the posterior
    mode); after ``cap`` proposals for one draw keep the last one. Returns (filled,
    tries of the current draw, used, accepted, exceeded, fallbacks)."""
    Q = P.shape[1]
    M = xb.shape[1]
    bvec = np.empty(Q)
    eta = np.empty(M)
    pi = np.empty(M)
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
        lr = mn_loglik_u(yc, wt, xb, W, lam, a, b, u, bvec, eta, pi) - llmax
        if lr > 0.0:
            exceeded += 1
        keep = logu[m] <= lr
        if keep:
            accepted += 1
        elif tries >= cap:
            fallbacks += 1
            keep = True
        if keep:
            for r in range(Q):
                out[filled, r] = u[r]
            filled += 1
            tries = 0
    return filled, tries, used, accepted, exceeded, fallbacks


@njit(cache=True, error_model="numpy")
def mn_prior_ar_many(yc, wt, xb, W, lam, starts, llmode, cap, todo, P, logu, out, done, tries):
    """One batch of prior proposals for each study todo[s]; returns (proposals, accepted,
    exceeded, fallbacks)."""
    tot = np.zeros(4, dtype=np.int64)
    for s in range(todo.shape[0]):
        i = todo[s]
        filled, tr, u_, ac, ex, fb = mn_prior_ar_run(yc, wt, xb, W, lam, starts[i],
                                                     starts[i + 1], llmode[i], cap, P[s],
                                                     logu[s], out[i:i + 1], 0, tries[i])
        tries[i] = tr
        if filled == 1:
            done[i] = True
        tot[0] += u_
        tot[1] += ac
        tot[2] += ex
        tot[3] += fb
    return tot
