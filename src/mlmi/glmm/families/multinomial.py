"""Nominal response, baseline-category logit GLMM (Hedeker 2003).

Model. The response has K categories coded 0..K-1, category 0 (the first level) the
reference. With M = K - 1, for row j of cluster i and category k = 1..M,

    eta_ijk = x_ij' beta_k + w_ij' b_ik,        P(Y = k) = exp(eta_k) / (1 + sum_l exp(eta_l)),

with category-specific fixed effects beta_k (p each) and random effects
b_i = (b_i1, ..., b_iM) in R^Q, Q = M q, b_i ~ N(0, Psi), Psi a full Q × Q covariance
(random effects correlated across categories and terms). Parameter vectors are
category-major: beta = (beta_1, ..., beta_M), b = (b_1, ..., b_M); names are
``"<level>:<term>"`` (e.g. ``"2:(Intercept)"``, ``"2:x1"``, ``"3:(Intercept)"``).

Laplace approximation (lme4's spherical parametrisation, as in glmm/laplace.py):
b_i = Lambda u_i with Lambda lower triangular (Q × Q, ``theta`` its lower triangle column
by column), u_i ~ N(0, I_Q). Writing w-tilde_jk = e_k ⊗ w_j (the row's design for
category k in b-space) and z_jk = Lambda' w-tilde_jk, per cluster

    f_i = -sum_j log pi_{j, y_j}(u_hat) + |u_hat|² / 2 + log det H_i / 2,
    H_i = I + sum_j Z_j' A_j Z_j = I + Lambda' G_i Lambda,
    A_j = diag(pi_j) - pi_j pi_j',   G_i = sum_j A_j ⊗ w_j w_j'   (Q × Q),

Z_j the M × Q matrix with rows z_jk'. The multinomial logit is canonical: the gradient of
the penalised objective in u is u - sum_j Z_j' e_j with e_jk = [y_j = k] - pi_jk, and its
Hessian is H_i, so Newton's method finds the (unique) conditional mode. Every per-row sum
is taken in b-space (G_i, sum_j e_j ⊗ w_j), so a row costs O(M² q²), not O(M² Q²).

Gradient (the matrix version of laplace.py's derivation). With S = H^{-1},
C_j = Z_j S Z_j' (= (I ⊗ w_j') Lambda S Lambda' (I ⊗ w_j)), the derivative of
log det H / 2 with respect to eta_jk at fixed Z is

    rho_jk = tr(C_j dA_j/d eta_jk) / 2
           = pi_k (C_kk - sum_a C_aa pi_a - 2 (C pi)_k + 2 pi' C pi) / 2,

and with v = S sum_jk rho_jk z_jk, v-tilde = Lambda v and t_jk = rho_jk - e_jk - (A_j Z_j v)_k
(the implicit derivative of u_hat folded in, as in the scalar case):

    d f / d beta_l[m]      = sum_j x_jm t_jl
                           = sum_j x_jm (rho_jl - e_jl) - sum_R XAW[(m, l), R] v-tilde_R,
    d f / d Lambda[R, c]   = u_c (sum_j w_jr (rho_jl - e_jl) - (G v-tilde)_R)
                             + (G Lambda S)[R, c] + v_c sum_j w_jr e_jl,     R = l q + r,

where XAW[(m, l), k q + r] = sum_j x_jm A_j[k, l] w_jr. The same sums give the modes'
Jacobian d u_hat / d(beta, theta) = -S (d grad_u / d par), used to predict the modes at
the next parameter value. Frequency weights (merged rows) multiply every row's terms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from ...exceptions import InputError
from .. import conventions
from .._linalg import (
    NEWTON_CONVERGED,
    NEWTON_MAXIT,
    NEWTON_STEPPED,
    chol_inverse,
    chol_logdet,
    lambda_to_theta,
    newton_update,
    theta_diagonal_index,
    theta_to_lambda,
)
from ..optimize import SINGULAR_TOL, fit_with_boundary_checks
from ..result import FitWarning, GLMMResult
from ._base import Family, check_codes

MAX_CATEGORIES = 10


# ---------------------------------------------------------------------- compiled kernels
@njit(cache=True, inline="always", error_model="numpy")
def softmax(eta, pi):
    """pi_k = exp(eta_k) / (1 + sum exp(eta)) for k = 1..M into ``pi``; returns
    log(1 + sum exp(eta)) (the reference category has eta = 0), without overflow."""
    M = eta.shape[0]
    mx = 0.0
    for k in range(M):
        if eta[k] > mx:
            mx = eta[k]
    if mx < 30.0:  # no overflow possible: M exponentials, no shift
        s = 1.0
        for k in range(M):
            pi[k] = np.exp(eta[k])
            s += pi[k]
        inv = 1.0 / s
        for k in range(M):
            pi[k] *= inv
        return np.log(s)
    s = np.exp(-mx)
    for k in range(M):
        pi[k] = np.exp(eta[k] - mx)
        s += pi[k]
    inv = 1.0 / s
    for k in range(M):
        pi[k] *= inv
    return mx + np.log(s)


@njit(cache=True, error_model="numpy")
def _pairs(m):
    """(row, column) of the lower triangle of an m × m matrix, row by row."""
    n = m * (m + 1) // 2
    rr = np.empty(n, dtype=np.int64)
    cc = np.empty(n, dtype=np.int64)
    t = 0
    for r in range(m):
        for c in range(r + 1):
            rr[t] = r
            cc[t] = c
            t += 1
    return rr, cc


@njit(cache=True, error_model="numpy")
def _cluster_pass(yc, wt, xb, W, a, b, bvec, eta, pi, pis, Eb, G, Gc, ww, qr, qc, mr, mc,
                  shape_q):
    """One pass over rows a..b-1 at random effects ``bvec`` (b-space, length Q):
    returns -sum wt log p; fills Eb = sum wt e_j ⊗ w_j, G = sum wt A_j ⊗ w_j w_j' (full,
    symmetric) and each row's probabilities into ``pis``. G is accumulated compactly:
    Gc[(k, m), (r, s)] = sum wt A_j[k, m] w_r w_s over the lower-triangle pairs
    (qr, qc of q; mr, mc of M), 18 products a row for K = 4, q = 2."""
    M = xb.shape[1]
    q = len(shape_q)
    Q = M * q
    nq = q * (q + 1) // 2
    nM = mr.shape[0]
    for R in range(Q):
        Eb[R] = 0.0
    Gc[:, :] = 0.0
    nll = 0.0
    for j in range(a, b):
        for k in range(M):
            acc = xb[j, k]
            for r in range(q):
                acc += W[j, r] * bvec[k * q + r]
            eta[k] = acc
        logden = softmax(eta, pi)
        y = yc[j]
        wj = wt[j]
        ll = -logden
        if y > 0:
            ll += eta[y - 1]
        nll -= wj * ll
        for k in range(M):
            pis[j, k] = pi[k]
            ek = wj * ((1.0 if y == k + 1 else 0.0) - pi[k])
            for r in range(q):
                Eb[k * q + r] += ek * W[j, r]
        for t in range(nq):
            ww[t] = wj * W[j, qr[t]] * W[j, qc[t]]
        for t in range(nM):
            k = mr[t]
            m = mc[t]
            akm = (pi[k] if k == m else 0.0) - pi[k] * pi[m]
            for t2 in range(nq):
                Gc[t, t2] += akm * ww[t2]
    for t in range(nM):
        k = mr[t]
        m = mc[t]
        for t2 in range(nq):
            r = qr[t2]
            s = qc[t2]
            g = Gc[t, t2]
            G[k * q + r, m * q + s] = g
            G[m * q + s, k * q + r] = g
            G[k * q + s, m * q + r] = g
            G[m * q + r, k * q + s] = g
    return nll


@njit(cache=True, error_model="numpy")
def congruence(lam, G, H, tmp):
    """H = I + Lambda' G Lambda (G symmetric)."""
    Q = lam.shape[0]
    for R in range(Q):
        for c in range(Q):
            acc = 0.0
            for S in range(c, Q):  # Lambda lower triangular: Lambda[S, c] = 0 for S < c
                acc += G[R, S] * lam[S, c]
            tmp[R, c] = acc
    for r in range(Q):
        for c in range(r + 1):
            acc = 1.0 if r == c else 0.0
            for R in range(r, Q):
                acc += lam[R, r] * tmp[R, c]
            H[r, c] = acc
            H[c, r] = acc


@njit(cache=True, error_model="numpy")
def _newton_mode(yc, wt, xb, W, lam, a, b, u, H, G, pis, Eb):
    """Newton iterations for one cluster's conditional mode from ``u`` (step halving).
    On return u is the mode, H the Cholesky factor of H_i there, G (lower triangle) and
    ``pis`` the row quantities there. Returns (penalised -loglik at the mode, converged)."""
    Q = u.shape[0]
    M = xb.shape[1]
    g = np.empty(Q)
    step = np.zeros(Q)
    uprev = u.copy()
    bvec = np.empty(Q)
    eta = np.empty(M)
    pi = np.empty(M)
    tmp = np.empty((Q, Q))
    q = W.shape[1]
    qr, qc = _pairs(q)
    mr, mc = _pairs(M)
    Gc = np.empty((mr.shape[0], qr.shape[0]))
    ww = np.empty(qr.shape[0])
    objprev = np.inf
    scale = 1.0
    for _ in range(NEWTON_MAXIT):
        for R in range(Q):
            acc = 0.0
            for c in range(R + 1):
                acc += lam[R, c] * u[c]
            bvec[R] = acc
        # q as a compile-time constant for q <= 2 (a tuple's length): the compiler unrolls
        # the loops over the random effects in the row pass (each q compiled once; larger
        # q, rare with (K - 1) q random effects per study, take the general version)
        args = (yc, wt, xb, W, a, b, bvec, eta, pi, pis, Eb, G, Gc, ww, qr, qc, mr, mc)
        if q == 1:
            obj = _cluster_pass(*args, (0,))
        elif q == 2:
            obj = _cluster_pass(*args, (0, 0))
        else:
            obj = _cluster_pass(*args, W[0])  # W[0]: any array of length q
        for r in range(Q):
            obj += 0.5 * u[r] * u[r]
        if not obj <= objprev + 1e-12 * abs(objprev):
            scale *= 0.5
            if scale < 1e-9:
                return obj, False
            for r in range(Q):
                u[r] = uprev[r] - scale * step[r]
            continue
        # g = u - Lambda' Eb
        for c in range(Q):
            acc = u[c]
            for R in range(c, Q):
                acc -= lam[R, c] * Eb[R]
            g[c] = acc
        congruence(lam, G, H, tmp)
        status = newton_update(H, g, step, u, uprev)
        if status != NEWTON_STEPPED:
            return obj, status == NEWTON_CONVERGED
        objprev = obj
        scale = 1.0
    return obj, False


@njit(cache=True, error_model="numpy")
def cluster_mode(yc, wt, xb, W, lam, a, b, u, H, G, pis, Eb):
    """One cluster's conditional mode from the warm start ``u``; a failed warm start
    is retried once from u = 0 (as glmm/laplace.py's cluster_mode)."""
    cold = True
    for r in range(u.shape[0]):
        if u[r] != 0.0:
            cold = False
    obj, ok = _newton_mode(yc, wt, xb, W, lam, a, b, u, H, G, pis, Eb)
    if not ok and not cold:
        u[:] = 0.0
        obj, ok = _newton_mode(yc, wt, xb, W, lam, a, b, u, H, G, pis, Eb)
    return obj, ok


@njit(cache=True, error_model="numpy")
def _gradient_rows(yc, wt, X, W, a, b, pis, Tc, ww, C, Cpi, akl, cb, Wre, We, Xre, XAWc, qr,
                   qc, mr, mc, shape_q):
    """One cluster's pass over its rows for the gradient of :func:`laplace_objective`
    (cb, Wre, We, Xre and XAWc, from the probabilities ``pis`` at the mode and Tc);
    q = len(shape_q), a compile-time constant when ``shape_q`` is a tuple (see
    :func:`_cluster_pass`)."""
    q = len(shape_q)
    M = pis.shape[1]
    p = X.shape[1]
    nq = q * (q + 1) // 2
    nM = mr.shape[0]
    cb[:] = 0.0
    Wre[:] = 0.0
    We[:] = 0.0
    Xre[:, :] = 0.0
    XAWc[:, :, :] = 0.0
    for j in range(a, b):
        y = yc[j]
        wj = wt[j]
        for t2 in range(nq):
            ww[t2] = W[j, qr[t2]] * W[j, qc[t2]]
        for t in range(nM):
            k1 = mr[t]
            k2 = mc[t]
            acc = 0.0
            for t2 in range(nq):
                acc += Tc[t, t2] * ww[t2]
            C[k1, k2] = acc
            C[k2, k1] = acc
        trp = 0.0
        pCp = 0.0
        for k1 in range(M):
            acc = 0.0
            for k2 in range(M):
                acc += C[k1, k2] * pis[j, k2]
            Cpi[k1] = acc
            trp += C[k1, k1] * pis[j, k1]
            pCp += pis[j, k1] * acc
        for k1 in range(M):
            pk = pis[j, k1]
            rho = 0.5 * wj * pk * (C[k1, k1] - trp - 2.0 * Cpi[k1] + 2.0 * pCp)
            ek = wj * ((1.0 if y == k1 + 1 else 0.0) - pk)
            re = rho - ek
            for r in range(q):
                wr = W[j, r]
                R = k1 * q + r
                cb[R] += rho * wr
                Wre[R] += wr * re
                We[R] += wr * ek
            for m in range(p):
                Xre[m, k1] += X[j, m] * re
        # XAWc[(m, r), (k, l)] = sum wt x_m w_r A[k, l], l <= k (A is symmetric)
        for t in range(nM):
            k1 = mr[t]
            k2 = mc[t]
            akl[t] = wj * ((pis[j, k1] if k1 == k2 else 0.0) - pis[j, k1] * pis[j, k2])
        for m in range(p):
            xm = X[j, m]
            for r in range(q):
                xw = xm * W[j, r]
                for t in range(nM):
                    XAWc[m, r, t] += xw * akl[t]


@njit(cache=True, error_model="numpy")
def laplace_objective(beta, lam, yc, wt, X, W, starts, u, grad, want_grad, jac, dpar):
    """Laplace approximation of minus the log-likelihood of the baseline-category logit
    GLMM, and its exact gradient in (beta, theta) into ``grad`` if ``want_grad``.

    ``beta`` is the M × p matrix of fixed effects (row k: category k + 1), ``lam`` the
    Q × Q relative Cholesky factor, ``yc`` the category codes 0..K-1 (int64), ``wt``
    frequency weights. ``u`` (k × Q) is the warm start of the modes, overwritten with
    them; ``jac`` (k × Q × npar) and ``dpar`` as in glmm/laplace.py (first-order
    prediction of the modes from the previous call). Returns (objective, failures).
    """
    n, p = X.shape
    q = W.shape[1]
    M = beta.shape[0]
    Q = M * q
    k = starts.shape[0] - 1
    npar = grad.shape[0]
    xb = X @ beta.T  # n × M
    pis = np.empty((n, M))
    H = np.empty((Q, Q))
    G = np.zeros((Q, Q))
    S = np.empty((Q, Q))
    P = np.empty((Q, Q))  # Lambda S
    T = np.empty((Q, Q))  # Lambda S Lambda'
    GP = np.empty((Q, Q))
    Eb = np.empty(Q)
    s = np.empty(Q)
    cb = np.empty(Q)
    cu = np.empty(Q)
    v = np.empty(Q)
    vt = np.empty(Q)
    Gv = np.empty(Q)
    Wre = np.empty(Q)
    We = np.empty(Q)
    Xre = np.empty((p, M))
    XAW = np.empty((p * M, Q))
    C = np.empty((M, M))
    Cpi = np.empty(M)
    tmpQ = np.empty(Q)
    qr, qc = _pairs(q)
    mr, mc = _pairs(M)
    nq = qr.shape[0]
    nM = mr.shape[0]
    Tc = np.empty((nM, nq))
    ww = np.empty(nq)
    akl = np.empty(nM)
    XAWc = np.empty((p, q, nM))
    total = 0.0
    failed = 0
    predict = False
    for t in range(npar):
        if dpar[t] != 0.0:
            predict = True
    if want_grad:
        for t in range(npar):
            grad[t] = 0.0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = u[i]
        if predict:
            big = False
            for r in range(Q):
                acc = 0.0
                for t in range(npar):
                    acc += jac[i, r, t] * dpar[t]
                s[r] = acc
                if not abs(acc) < 1.0:  # also NaN: a wild extrapolation is worse than none
                    big = True
            if not big:
                for r in range(Q):
                    ui[r] += s[r]
        obj, ok = cluster_mode(yc, wt, xb, W, lam, a, b, ui, H, G, pis, Eb)
        if not ok:
            failed += 1
        total += obj + 0.5 * chol_logdet(H)
        if not want_grad:
            continue
        # S = H^{-1}, P = Lambda S, T = P Lambda', GP = G P
        chol_inverse(H, S)
        for R in range(Q):
            for c in range(Q):
                acc = 0.0
                for l in range(R + 1):
                    acc += lam[R, l] * S[l, c]
                P[R, c] = acc
        for R in range(Q):
            for c in range(Q):
                acc = 0.0
                for l in range(c + 1):
                    acc += P[R, l] * lam[c, l]
                T[R, c] = acc
        for R in range(Q):
            for c in range(Q):
                acc = 0.0
                for l in range(Q):
                    acc += G[R, l] * P[l, c]
                GP[R, c] = acc
        # C_j = (I ⊗ w_j') T (I ⊗ w_j) = sum over pairs (r, s) of w_r w_s Tc[(k1, k2), (r, s)]
        for t in range(nM):
            k1 = mr[t]
            k2 = mc[t]
            for t2 in range(nq):
                r = qr[t2]
                s2 = qc[t2]
                val = T[k1 * q + r, k2 * q + s2]
                if r != s2:
                    val += T[k1 * q + s2, k2 * q + r]
                Tc[t, t2] = val
        # the row pass, with q a compile-time constant for q <= 2 (see _newton_mode)
        args = (yc, wt, X, W, a, b, pis, Tc, ww, C, Cpi, akl, cb, Wre, We, Xre, XAWc, qr, qc,
                mr, mc)
        if q == 1:
            _gradient_rows(*args, (0,))
        elif q == 2:
            _gradient_rows(*args, (0, 0))
        else:
            _gradient_rows(*args, W[0])  # W[0]: any array of length q
        for m in range(p):
            for r in range(q):
                for t in range(nM):
                    k1 = mr[t]
                    k2 = mc[t]
                    val = XAWc[m, r, t]
                    XAW[m * M + k2, k1 * q + r] = val
                    XAW[m * M + k1, k2 * q + r] = val
        # v = S Lambda' cb, v-tilde = Lambda v, G v-tilde
        for c in range(Q):
            acc = 0.0
            for R in range(c, Q):
                acc += lam[R, c] * cb[R]
            cu[c] = acc
        for r in range(Q):
            acc = 0.0
            for c in range(Q):
                acc += S[r, c] * cu[c]
            v[r] = acc
        for R in range(Q):
            acc = 0.0
            for c in range(R + 1):
                acc += lam[R, c] * v[c]
            vt[R] = acc
        for R in range(Q):
            acc = 0.0
            for c in range(Q):
                acc += G[R, c] * vt[c]
            Gv[R] = acc
        for m in range(p):
            for l in range(M):
                row = m * M + l
                acc = Xre[m, l]
                for R in range(Q):
                    acc -= XAW[row, R] * vt[R]
                grad[l * p + m] += acc
                # d u_hat / d beta_l[m] = -S Lambda' XAW[row, :]'
                for c in range(Q):
                    acc2 = 0.0
                    for R in range(c, Q):
                        acc2 += lam[R, c] * XAW[row, R]
                    tmpQ[c] = acc2
                for r in range(Q):
                    acc2 = 0.0
                    for c in range(Q):
                        acc2 += S[r, c] * tmpQ[c]
                    jac[i, r, l * p + m] = -acc2
        t = M * p
        for c in range(Q):
            for R in range(c, Q):
                grad[t] += ui[c] * (Wre[R] - Gv[R]) + GP[R, c] + v[c] * We[R]
                # d u_hat / d Lambda[R, c] = S (We[R] e_c - u_c Lambda' G[:, R])
                for l in range(Q):
                    acc2 = 0.0
                    for R2 in range(l, Q):
                        acc2 += lam[R2, l] * G[R2, R]
                    tmpQ[l] = -ui[c] * acc2
                tmpQ[c] += We[R]
                for l in range(Q):
                    acc2 = 0.0
                    for m in range(Q):
                        acc2 += S[l, m] * tmpQ[m]
                    jac[i, l, t] = acc2
                t += 1
    return total, failed


@njit(cache=True, error_model="numpy")
def laplace_details(beta, lam, yc, wt, X, W, starts, u, cond_inv, fisher, pis):
    """At the optimum: the modes ``u`` (refined in place), H_i^{-1} into ``cond_inv``
    (k × Q × Q), the row probabilities into ``pis`` (n × M), and the fixed-effects
    information with the random effects integrated out (lme4's R_X'R_X),
    sum_j A_j ⊗ x_j x_j' - XAZ S XAZ' with XAZ = XAW Lambda, into ``fisher`` (Mp × Mp,
    category-major). Returns the number of clusters whose mode failed."""
    _n, p = X.shape
    q = W.shape[1]
    M = beta.shape[0]
    Q = M * q
    k = starts.shape[0] - 1
    xb = X @ beta.T
    H = np.empty((Q, Q))
    G = np.empty((Q, Q))
    S = np.empty((Q, Q))
    Eb = np.empty(Q)
    XAW = np.empty((M * p, Q))  # rows l * p + m here
    XAZ = np.empty((M * p, Q))
    SZ = np.empty((M * p, Q))
    failed = 0
    fisher[:, :] = 0.0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ok = cluster_mode(yc, wt, xb, W, lam, a, b, u[i], H, G, pis, Eb)[1]
        if not ok:
            failed += 1
        chol_inverse(H, S)
        cond_inv[i] = S
        XAW[:, :] = 0.0
        for j in range(a, b):
            wj = wt[j]
            for l in range(M):
                for k1 in range(M):
                    akl = wj * ((pis[j, k1] if k1 == l else 0.0) - pis[j, k1] * pis[j, l])
                    for m in range(p):
                        xa = X[j, m] * akl
                        for m2 in range(p):
                            fisher[l * p + m, k1 * p + m2] += xa * X[j, m2]
                        for r in range(q):
                            XAW[l * p + m, k1 * q + r] += xa * W[j, r]
        for row in range(M * p):
            for c in range(Q):
                acc = 0.0
                for R in range(c, Q):
                    acc += XAW[row, R] * lam[R, c]
                XAZ[row, c] = acc
        for row in range(M * p):
            for r in range(Q):
                acc = 0.0
                for c in range(Q):
                    acc += S[r, c] * XAZ[row, c]
                SZ[row, r] = acc
        for r1 in range(M * p):
            for r2 in range(M * p):
                acc = 0.0
                for c in range(Q):
                    acc += XAZ[r1, c] * SZ[r2, c]
                fisher[r1, r2] -= acc
    return failed


# ---------------------------------------------------------------------- the family
def _category_counts(y: np.ndarray, K: int, wt: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(np.asarray(y, dtype=np.int64), weights=wt, minlength=K)


class Multinomial(Family):
    """Baseline-category (multinomial) logit; see the module docstring for the model.

    The registered instance (``get_family("multinomial")``) knows nothing of the data;
    :meth:`with_levels` gives one bound to a response's levels (``n_eta = K - 1``, names
    ``"<level>:<term>"``), which is what a fit's ``result.family`` holds.
    """

    name = "multinomial"
    link = "logit (baseline category)"
    code = -1  # no scalar row kernel: fitted by its own compiled kernels (fit())
    fitter = "multinomial"
    n_eta = 0  # K - 1, known once bound to a response (with_levels)

    def __init__(self, levels: list | None = None):
        self.levels = None if levels is None else list(levels)
        if self.levels is not None:
            self.n_eta = len(self.levels) - 1

    def with_levels(self, levels: list | None) -> Multinomial:
        """This family bound to a response's levels (category order, first = reference)."""
        return Multinomial(levels)

    # ------------------------------------------------------------------ response
    def encode(self, col: pd.Series, name: str):
        """Category codes 0..K-1 and the levels: a pandas categorical in its categories'
        order (an unused category is an error); bool as [False, True]; strings or other
        objects in sorted order; numbers must be integer codes, levels their sorted
        distinct values."""
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels = list(col.cat.categories)
            codes = col.cat.codes.to_numpy()
            if np.any(codes < 0):
                raise InputError(f"multinomial response {name!r} has "
                                 f"{int(np.sum(codes < 0))} missing value(s); subset first")
            counts = np.bincount(codes, minlength=len(levels))
            self._check_counts(counts, levels, name)
            y = codes.astype(float)
        elif pd.api.types.is_bool_dtype(col.dtype) or not pd.api.types.is_numeric_dtype(
                col.dtype):
            if col.isna().any():
                raise InputError(f"multinomial response {name!r} has {int(col.isna().sum())} "
                                 "missing value(s); subset first")
            values = col.to_numpy()
            uniq = pd.unique(values)
            try:
                levels = sorted(uniq.tolist())
            except TypeError:
                levels = sorted(uniq.tolist(), key=str)
            codes = pd.Categorical(values, categories=levels).codes
            self._check_counts(np.bincount(codes, minlength=len(levels)), levels, name)
            y = codes.astype(float)
        else:
            values = col.to_numpy(dtype=float)
            if not np.all(np.isfinite(values)):
                raise InputError(f"multinomial response {name!r} has "
                                 f"{int(np.sum(~np.isfinite(values)))} missing or non-finite "
                                 "value(s); subset first")
            frac = values != np.round(values)
            if frac.any():
                bad = np.unique(values[frac])[:5].tolist()
                raise InputError(f"multinomial response {name!r} must be integer codes or a "
                                 f"categorical; found non-integer value(s) {bad}")
            uniq = np.unique(values)
            levels = [int(v) for v in uniq]
            self._check_counts(np.ones(len(levels)), levels, name)
            y = np.searchsorted(uniq, values).astype(float)
        self.validate_response(y, name)
        return y, levels

    @staticmethod
    def _check_counts(counts: np.ndarray, levels: list, name: str) -> None:
        observed = int(np.sum(counts > 0))
        if observed < 2:
            seen = [str(levels[j]) for j in np.flatnonzero(counts > 0)]
            raise InputError(
                f"multinomial response {name!r} has one observed category ({seen}); a "
                "multinomial model needs at least two")
        if len(levels) > MAX_CATEGORIES:
            raise InputError(
                f"more than {MAX_CATEGORIES} categories for the multinomial family: response "
                f"{name!r} has {len(levels)} ({[str(v) for v in levels[:12]]}"
                f"{' …' if len(levels) > 12 else ''}); merge categories or use another model")
        empty = [str(levels[j]) for j in np.flatnonzero(counts == 0)]
        if empty:
            raise InputError(
                f"multinomial response {name!r} has no observation in category(ies) {empty} "
                f"of {[str(v) for v in levels]}: the category's coefficients are not "
                "identified; drop the unused level(s) (col.cat.remove_unused_categories()) or "
                "merge them with another category")

    def validate_for_sampler(self, y, extra, n_eta):
        """Codes 0..K-1 with K - 1 = the fixed effects' linear predictors (a study may
        lack some categories)."""
        check_codes(y, n_eta + 1, "multinomial")
        return extra

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        y = np.asarray(y, dtype=float)
        if np.any(y < 0) or np.any(y != np.round(y)):
            bad = np.unique(y[(y < 0) | (y != np.round(y))])[:5].tolist()
            raise InputError(f"multinomial response {name!r} must be category codes 0..K-1; "
                             f"found {bad}")
        K = int(y.max()) + 1 if y.size else 0
        levels = self.levels if self.levels is not None else list(range(max(K, 1)))
        if self.levels is not None and K > len(self.levels):
            raise InputError(f"multinomial response {name!r} has code {K - 1} but only "
                             f"{len(self.levels)} levels {self.levels}")
        self._check_counts(_category_counts(y, len(levels)), levels, name)

    def n_categories(self, y: np.ndarray) -> int:
        """K: the bound levels' count, else 1 + the largest code."""
        return len(self.levels) if self.levels is not None else int(np.max(y)) + 1

    def default_levels(self, y: np.ndarray) -> list:
        """The bound levels, else the codes 0..K-1."""
        return list(self.levels) if self.levels is not None else list(
            range(self.n_categories(y)))

    def level_names(self, y: np.ndarray) -> list[str]:
        K = self.n_categories(y)
        return [str(v) for v in (self.levels if self.levels is not None else range(K))]

    # ------------------------------------------------------------------ likelihood
    def probabilities(self, eta: np.ndarray) -> np.ndarray:
        """P(Y = k | eta), rows × K, from the n × (K-1) linear predictors (reference 0)."""
        eta = np.atleast_2d(np.asarray(eta, dtype=float))
        full = np.hstack([np.zeros((eta.shape[0], 1)), eta])
        full -= full.max(axis=1, keepdims=True)
        ex = np.exp(full)
        return ex / ex.sum(axis=1, keepdims=True)

    def loglik(self, y, eta, sigma=1.0, extra=None):
        """log P(Y = y_j | eta_j) per row (no other constants: the multinomial logit's
        log-likelihood of one draw is exactly this)."""
        eta = np.atleast_2d(np.asarray(eta, dtype=float))
        full = np.hstack([np.zeros((eta.shape[0], 1)), eta])
        lse = np.logaddexp.reduce(full, axis=1)
        y = np.asarray(y, dtype=np.int64)
        return full[np.arange(y.size), y] - lse

    def inverse_link(self, eta, extra=None):
        """The category probabilities (rows × K) — the multinomial 'mean'."""
        return self.probabilities(eta)

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        """Category codes drawn from P(Y = k | eta) (eta: n × (K-1))."""
        if limits is not None:  # no range to truncate to: the error names the family
            self.outside_mass(np.zeros(0), limits=limits)
        prob = self.probabilities(eta)
        cum = np.cumsum(prob, axis=1)[:, :-1]
        u = rng.random(prob.shape[0])
        return np.sum(u[:, None] >= cum, axis=1).astype(float)

    def start(self, y, X, wt, fit_glm):
        """Single-level multinomial logit by a few Newton steps (beta as an M × p matrix
        flattened category-major); empty extra."""
        K = int(np.max(y)) + 1
        return single_level_fit(np.asarray(y, dtype=np.int64), X, wt, K - 1), np.empty(0)

    def boundary_rows(self, eta, wt):
        prob = self.probabilities(eta)
        return int(np.sum(wt[np.any(prob < 1e-10, axis=1)]))

    # ------------------------------------------------------------------ the fit
    def fit(self, design, start, vcov: str, maxiter: int = 1000):
        """Maximum likelihood by the Laplace approximation: see :func:`fit_multinomial`."""
        return fit_multinomial(self, design, start, vcov, maxiter)


FAMILY = Multinomial()


def single_level_fit(yc: np.ndarray, X: np.ndarray, wt: np.ndarray, M: int,
                     iters: int = 8) -> np.ndarray:
    """Multinomial logit without random effects by damped Newton (start values);
    returns beta category-major (M p)."""
    n, p = X.shape
    Y = np.zeros((n, M))
    rows = np.flatnonzero(yc > 0)
    Y[rows, yc[rows] - 1] = 1.0
    B = np.zeros((M, p))
    # intercept-like start: the log odds of each category against the reference
    counts = np.bincount(yc, weights=wt, minlength=M + 1)
    const = np.flatnonzero(np.all(X == X[:1], axis=0))
    if const.size:
        c0 = const[0]
        B[:, c0] = np.log(np.maximum(counts[1:], 0.5) / max(counts[0], 0.5)) / X[0, c0]

    def nll(B):
        """-loglik at B, and the probabilities of categories 1..M there (the next
        Newton step's, so they are not computed twice)."""
        eta = np.hstack([np.zeros((n, 1)), X @ B.T])
        mx = eta.max(axis=1)
        ex = np.exp(eta - mx[:, None])
        total = ex.sum(axis=1)
        lse = mx + np.log(total)
        return -float(wt @ (eta[np.arange(n), yc] - lse)), (ex / total[:, None])[:, 1:]

    f, pi = nll(B)
    for _ in range(iters):
        g = ((Y - pi) * wt[:, None]).T @ X  # M × p, gradient of the log-likelihood
        info = np.empty((M, p, M, p))
        for k in range(M):
            for m in range(k + 1):
                a = wt * ((pi[:, k] if k == m else 0.0) - pi[:, k] * pi[:, m])
                block = X.T @ (X * a[:, None])
                info[k, :, m, :] = block
                info[m, :, k, :] = block.T
        info = info.reshape(M * p, M * p)
        try:
            step = np.linalg.solve(info + 1e-8 * np.eye(M * p), g.ravel()).reshape(M, p)
        except np.linalg.LinAlgError:
            break
        scale = 1.0
        while scale > 1e-4:
            Bn = B + scale * step
            fn, pin = nll(Bn)
            if np.isfinite(fn) and fn <= f:
                break
            scale *= 0.5
        else:
            break
        done = f - fn < 1e-8 * max(1.0, abs(f))
        B, f, pi = Bn, fn, pin
        if done:
            break
    # a (quasi-)separated category runs off: a start that far out only slows the fit
    return np.clip(B, -10.0, 10.0).ravel()


def fit_multinomial(fam: Multinomial, design, st, vcov: str, maxiter: int = 1000):
    """Maximise the Laplace likelihood over par = (beta (M p, category-major), theta
    (Q(Q+1)/2, lme4's order for the Q × Q factor Lambda)) with the exact gradient, then
    the Hessian-based covariance of beta (forward differences of the gradient), as the
    scalar families' fit in glmm/fit.py."""
    y = design.y
    yc = np.ascontiguousarray(y, dtype=np.int64)
    X, W, starts, wt = design.X, design.W, design.starts, design.weights
    p, q, k = design.p, design.q, design.k
    K = fam.n_categories(y)
    if fam.levels is None:
        fam = fam.with_levels(list(range(K)))
    M = K - 1
    Q = M * q
    nth = Q * (Q + 1) // 2
    npar = M * p + nth
    lv = fam.level_names(y)
    x_names = [f"{lv[l + 1]}:{nm}" for l in range(M) for nm in design.x_names]
    w_names = [f"{lv[l + 1]}:{nm}" for l in range(M) for nm in design.w_names]

    beta0 = None
    if st.beta is not None and st.x_names is not None:
        lookup = dict(zip(st.x_names, st.beta, strict=False))
        if all(nm in lookup for nm in x_names):
            beta0 = np.array([lookup[nm] for nm in x_names], float)
    elif st.beta is not None and len(st.beta) == M * p:
        beta0 = np.asarray(st.beta, float)
    if beta0 is None:
        beta0 = single_level_fit(yc, X, wt, M)
    # Lambda = I / 2 (random-effect SDs 0.5 on the logit scale) rather than lme4's I:
    # L-BFGS-B's first steps from SDs of 1 run into the bounds (measured: ~15 fewer
    # evaluations for K = 4 with a random slope)
    theta0 = (np.asarray(st.theta, float).copy()
              if st.theta is not None and len(st.theta) == nth
              else 0.5 * conventions.identity_theta(Q))
    u = (np.array(st.u, dtype=float) if st.u is not None and np.shape(st.u) == (k, Q)
         else np.zeros((k, Q)))

    grad = np.zeros(npar)
    jac = np.zeros((k, Q, npar))
    no_move = np.zeros(npar)
    last = {"par": None}
    failures = [0]

    def fun(par: np.ndarray) -> tuple[float, np.ndarray]:
        B = np.ascontiguousarray(par[:M * p].reshape(M, p))
        lam = theta_to_lambda(par[M * p:], Q)
        dpar = no_move if last["par"] is None else par - last["par"]
        value, failed = laplace_objective(B, lam, yc, wt, X, W, starts, u, grad, True,
                                          jac, dpar)
        failures[0] = failed
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            last["par"] = None
            u[:] = 0.0
            return np.inf, np.zeros(npar)
        last["par"] = par.copy()
        return value, grad.copy()

    def normalize(par: np.ndarray) -> np.ndarray:
        lam = theta_to_lambda(par[M * p:], Q)
        flip = np.diag(lam) < 0
        if not flip.any():
            return par
        lam[:, flip] *= -1
        u[:, flip] *= -1
        last["par"] = None
        return np.concatenate([par[:M * p], lambda_to_theta(lam)])

    par0 = np.concatenate([beta0, theta0])
    diag_index = M * p + theta_diagonal_index(Q)
    lower = np.full(npar, -np.inf)
    lower[diag_index] = 0.0
    # the covariance below needs the Hessian: the fit finishes with Newton steps on it.
    # No preconditioned start (optimize.start_scale) here: it saved a fifth of the
    # evaluations, but with 21 covariance parameters its other path ended on a worse
    # boundary point (a zero diagonal of Lambda; logLik 1.5e-3 and 3.4e-3 lower) in 2 of
    # 40 data sets of bench_multinomial.py's designs
    # Its rows and columns of a variance held at 0 are not computed (skip_held): they
    # are fixed there, and a multinomial fit is never warm-started from its Hessian
    opt, notes = fit_with_boundary_checks(fun, par0, lower, diag_index, maxiter=maxiter,
                                          normalize=normalize, polish=True, skip_held=True)

    beta, theta = opt.par[:M * p].copy(), opt.par[M * p:].copy()
    B = np.ascontiguousarray(beta.reshape(M, p))
    lam = theta_to_lambda(theta, Q)
    cond_inv = np.zeros((k, Q, Q))
    fisher = np.zeros((M * p, M * p))
    pis = np.empty((design.y.shape[0], M))
    detail_failures = laplace_details(B, lam, yc, wt, X, W, starts, u, cond_inv, fisher, pis)
    newton_failures = max(failures[0], detail_failures)
    warnings_ = [FitWarning("info", m) for m in notes]
    fisher_cov = conventions.safe_inverse(fisher)
    joint_cov, ok, hessian = conventions.hessian_vcov(fun, opt.par, M * p, Q,
                                                      hessian=opt.hessian)
    if vcov == "hessian":
        beta_cov = joint_cov
        if not ok:
            warnings_.append(FitWarning(
                "convergence",
                "variance-covariance matrix computed from the Hessian is not positive "
                "definite: falling back to the fixed-effects information (as lme4 does)"))
            beta_cov = fisher_cov
    else:
        beta_cov = fisher_cov
    if not ok:
        joint_cov = None
    if not opt.converged and hessian is not None:
        opt.converged = conventions.lme4_gradient_check(opt, hessian, M * p, Q)
    singular = bool(np.any(np.diag(lam) < SINGULAR_TOL))
    res = GLMMResult(
        family=fam, reml=False, nagq=1, beta=beta, beta_cov=beta_cov,
        beta_cov_fisher=fisher_cov, vcov_method=vcov, theta=theta, psi=lam @ lam.T,
        b=u @ lam.T, u=u.copy(), cond_cov=np.einsum("ab,kbc,dc->kad", lam, cond_inv, lam),
        sigma=1.0, loglik=-opt.value, converged=opt.converged and newton_failures == 0,
        singular=singular, n_iter=opt.n_iter, n_eval=opt.n_eval, x_names=x_names,
        w_names=w_names, clusters=design.clusters, n_obs=design.n,
        cluster_sizes=design.sizes, hessian=hessian, joint_cov=joint_cov,
        levels=list(fam.levels),
    )
    conventions.common_warnings(res, opt, warnings_, newton_failures)
    extreme = int(np.sum(wt[np.any(pis < 1e-10, axis=1) | (pis.sum(axis=1) > 1 - 1e-10)]))
    if extreme:
        warnings_.append(FitWarning(
            "separation",
            f"fitted category probabilities numerically 0 occurred in {extreme} row(s): "
            "some fixed effects are (quasi-)separated and their estimates are unreliable"))
    res.warnings = warnings_
    return res
