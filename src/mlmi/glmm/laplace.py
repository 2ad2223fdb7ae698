"""The Laplace objective of a two-level GLMM and its exact gradient (compiled).

Model, for cluster i with rows j (data sorted by cluster; ``starts`` holds the
offsets of the clusters):

    eta_ij = x_ij' beta + w_ij' Lambda u_i,     u_i ~ N(0, I_q),

so the random effects are ``b_i = Lambda u_i`` with ``Psi = Lambda Lambda'``
(lme4's "spherical" parametrisation; ``theta`` holds the lower triangle of
``Lambda`` column by column, exactly lme4's ``theta``).

With ``z_ij = Lambda' w_ij``, the Laplace approximation of minus the marginal
log-likelihood is, per cluster,

    f_i(beta, theta) = -sum_j log p(y_ij | eta_ij(u_hat)) + |u_hat|^2 / 2 + log det H_i / 2,
    H_i = I + sum_j d_ij z_ij z_ij',       d = -d² log p / d eta²  (= Var(Y | eta) for
                                                                  canonical links),

evaluated at the conditional mode ``u_hat_i`` — which is what ``glmer`` (nAGQ = 1)
minimises, as deviance/2. The modes of all clusters are found by Newton's method
with step halving (the penalised objective is convex in u for canonical links).

Every family-specific quantity comes from the family's row kernel
(:func:`mlmi.glmm.families.kernels.row_moments`): log p, e = d log p / d eta (= y - mu for
canonical links), d and d' = d(d)/d(eta); the formulas below hold for any family with a
log-concave likelihood in eta. Family parameters (NB theta, ordinal thresholds) are held
fixed here (``extra``); their gradient is taken by the caller.

Gradient. Writing s_j = H^{-1} z_j, h_j = z_j' s_j,
rho_j = d'_j h_j / 2, v = H^{-1} sum_j rho_j z_j and t_j = rho_j - e_j - d_j z_j'v,
differentiating f_i (through u_hat by the implicit function theorem) gives

    d f / d beta           = sum_ij x_ij t_ij
    d f / d Lambda[r, c]   = sum_ij w_ij[r] (u_ic t_ij + d_ij s_ij[c] + e_ij v_i[c]),

one pass over the data after the modes are found.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._linalg import (
    NEWTON_CONVERGED,
    NEWTON_MAXIT,
    NEWTON_STEPPED,
    chol_inverse,
    chol_logdet,
    chol_solve,
    newton_update,
)
from .families.kernels import row_extra_grad, row_moments, row_moments_cached


@njit(cache=True, error_model="numpy")
def cluster_loglik(fam, y, wt, eta0, Z, a, b, t, extra):
    """sum_j wt_j log p(y_j | eta0_j + Z_j' t) over rows a..b-1 (terms in y alone
    dropped): one cluster's log-likelihood at random effects t (family parameters
    ``extra``, see families/_base.py)."""
    q = t.shape[0]
    s = 0.0
    for j in range(a, b):
        eta = eta0[j]
        for r in range(q):
            eta += Z[j, r] * t[r]
        ll, _, _, _ = row_moments(fam, y[j], eta, extra)
        s += wt[j] * ll
    return s


@njit(cache=True, error_model="numpy")
def cluster_mode(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra):
    """One cluster's conditional mode by Newton iterations from the warm start ``u``
    (see :func:`_newton_mode` for the outputs). A warm start that fails — NaN or far
    off, left by an earlier evaluation at wild parameters — is retried once from the
    prior mean u = 0, so it never poisons later evaluations."""
    return cluster_mode_cached(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra,
                               np.empty((0, 2)))


@njit(cache=True, error_model="numpy")
def cluster_mode_cached(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra, cache):
    """:func:`cluster_mode` that also keeps each row's two intermediate values of
    :func:`row_moments_cached` at the mode in ``cache`` (n × 2; a 0 × 2 array: none)."""
    q = u.shape[0]
    cold = True
    for r in range(q):
        if u[r] != 0.0:
            cold = False
    obj, ok = _newton_mode(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra, cache)
    if not ok and not cold:
        for r in range(q):
            u[r] = 0.0
        obj, ok = _newton_mode(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra, cache)
    return obj, ok


@njit(cache=True, error_model="numpy")
def _newton_mode(fam, y, wt, xb, Z, a, b, u, H, g1, d, dd, extra, cache):
    """Newton iterations for one cluster's conditional mode, starting from ``u``.

    One pass over the cluster's rows per iteration: the objective, gradient and
    Hessian at the current u; a step that increases the objective is halved.
    On return ``u`` is the mode, ``H`` holds the Cholesky factor of H_i at the mode
    and ``g1``, ``d``, ``dd`` hold g1, g2 and g3 (families/_base.py) of each row there,
    ``cache`` (unless it has no rows) the family's two intermediate values there, from
    which the gradient in the family parameters is finished without recomputing them.
    Returns (penalised negative log-lik at the mode, converged).
    """
    store = cache.shape[0] > 0
    q = u.shape[0]
    g = np.empty(q)
    step = np.zeros(q)
    uprev = u.copy()
    objprev = np.inf
    scale = 1.0
    for _ in range(NEWTON_MAXIT):
        obj = 0.0
        for r in range(q):
            g[r] = u[r]
            obj += 0.5 * u[r] * u[r]
            for c in range(r + 1):
                H[r, c] = 1.0 if r == c else 0.0
        for j in range(a, b):
            eta = xb[j]
            for r in range(q):
                eta += Z[j, r] * u[r]
            ll, gj, dj, ddj, c0, c1 = row_moments_cached(fam, y[j], eta, extra)
            if store:
                cache[j, 0] = c0
                cache[j, 1] = c1
            wj = wt[j]  # frequency weight: wj identical rows merged into one
            g1[j] = gj
            d[j] = dj
            dd[j] = ddj
            obj -= wj * ll
            e = wj * gj
            dj *= wj
            for r in range(q):
                g[r] -= e * Z[j, r]
                for c in range(r + 1):
                    H[r, c] += dj * Z[j, r] * Z[j, c]
        if not obj <= objprev + 1e-12 * abs(objprev):
            # the last Newton step went too far (or overflowed): halve it
            scale *= 0.5
            if scale < 1e-9:
                return obj, False
            for r in range(q):
                u[r] = uprev[r] - scale * step[r]
            continue
        for r in range(q):
            for c in range(r + 1, q):
                H[r, c] = H[c, r]
        status = newton_update(H, g, step, u, uprev)
        if status != NEWTON_STEPPED:
            return obj, status == NEWTON_CONVERGED
        objprev = obj
        scale = 1.0
    return obj, False


@njit(cache=True, error_model="numpy")
def laplace_objective(beta, lam, y, wt, X, W, starts, fam, extra, u, grad, grad_extra,
                      want_grad, jac, dpar):
    """Laplace approximation of minus the log-likelihood (constants in y excluded).

    ``wt`` holds frequency weights (1 for every row unless identical rows were merged).
    ``u`` (k × q) is the warm start for the modes and is overwritten with them;
    ``grad`` (p + q(q+1)/2) receives the gradient in (beta, theta) order if
    ``want_grad``, and ``grad_extra`` (length 0, or that of ``extra``) the gradient in
    the family parameters on their natural scale: with x_j the row's derivatives of
    (log p, e, d) with respect to one of them,
    sum_j w_j (-dlog p_j + h_j dd_j / 2 + de_j z_j'v). ``jac`` (k × q × npar) holds
    d u_hat / d(beta, theta) from the
    previous call and ``dpar`` the change of the parameters since then: the modes are
    first moved by ``jac @ dpar`` (a first-order prediction, so Newton starts closer),
    and ``jac`` is refreshed when ``want_grad``. Pass ``dpar`` of zeros to skip.
    Returns (objective, number of clusters whose Newton failed).
    """
    n, p = X.shape
    q = W.shape[1]
    k = starts.shape[0] - 1
    npar = grad.shape[0]
    ne = grad_extra.shape[0]
    eidx = np.zeros(2, dtype=np.int64)
    edl = np.empty(2)
    edg1 = np.empty(2)
    edg2 = np.empty(2)
    GZ = np.zeros((ne, q))
    xb = X @ beta
    Z = W @ lam  # row j is z_j' = w_j' Lambda
    g1 = np.empty(n)
    d = np.empty(n)
    dd = np.empty(n)
    # the family's intermediate values at the modes, for its parameters' gradient
    cache = np.empty((n if want_grad and ne else 0, 2))
    H = np.empty((q, q))
    Hinv = np.empty((q, q))
    s = np.empty(q)
    cvec = np.empty(q)
    v = np.empty(q)
    x_rho_e = np.empty(p)
    XDZ = np.empty((p, q))
    w_rho_e = np.empty(q)
    WDZ = np.empty((q, q))
    We = np.empty(q)
    total = 0.0
    failed = 0
    predict = False
    for t in range(npar):
        if dpar[t] != 0.0:
            predict = True
    if want_grad:
        for t in range(npar):
            grad[t] = 0.0
        for t in range(ne):
            grad_extra[t] = 0.0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = u[i]
        if predict:
            for r in range(q):
                acc = 0.0
                for t in range(npar):
                    acc += jac[i, r, t] * dpar[t]
                s[r] = acc
            big = 0.0
            for r in range(q):
                if not abs(s[r]) < 1.0:  # also NaN: a wild extrapolation is worse than none
                    big = np.inf
            if big < 1.0:
                for r in range(q):
                    ui[r] += s[r]
        obj, ok = cluster_mode_cached(fam, y, wt, xb, Z, a, b, ui, H, g1, d, dd, extra,
                                      cache)
        if not ok:
            failed += 1
        total += obj + 0.5 * chol_logdet(H)
        if not want_grad:
            continue
        chol_inverse(H, Hinv)
        # one arithmetic pass: the sums that the gradient formula needs, with q a
        # compile-time constant for q <= 3 (a tuple's length; see _gradient_sums)
        args = (fam, y, wt, xb, X, W, Z, a, b, ui, Hinv, g1, d, dd, extra, cache, cvec,
                x_rho_e, XDZ, w_rho_e, WDZ, We, GZ, grad_extra, eidx, edl, edg1, edg2)
        if q == 1:
            _gradient_sums(*args, (0,))
        elif q == 2:
            _gradient_sums(*args, (0, 0))
        elif q == 3:
            _gradient_sums(*args, (0, 0, 0))
        else:
            _gradient_sums(*args, ui)
        for r in range(q):
            acc = 0.0
            for c in range(q):
                acc += Hinv[r, c] * cvec[c]
            v[r] = acc
        for t in range(ne):
            for r in range(q):
                grad_extra[t] += GZ[t, r] * v[r]
        for m in range(p):
            acc = x_rho_e[m]
            for c in range(q):
                acc -= XDZ[m, c] * v[c]
            grad[m] += acc
            # d u_hat / d beta_m = -H^{-1} (X'DZ)[m, :]'
            for r in range(q):
                acc = 0.0
                for c in range(q):
                    acc += Hinv[r, c] * XDZ[m, c]
                jac[i, r, m] = -acc
        t = p
        for c in range(q):
            for r in range(c, q):
                wdzv = 0.0
                wdzh = 0.0
                for l in range(q):
                    wdzv += WDZ[r, l] * v[l]
                    wdzh += WDZ[r, l] * Hinv[l, c]
                grad[t] += ui[c] * (w_rho_e[r] - wdzv) + wdzh + v[c] * We[r]
                # d u_hat / d Lambda[r, c] = H^{-1}(We[r] e_c - u_c WDZ[r, :]')
                for l in range(q):
                    acc = Hinv[l, c] * We[r]
                    for m in range(q):
                        acc -= ui[c] * Hinv[l, m] * WDZ[r, m]
                    jac[i, l, t] = acc
                t += 1
    return total, failed


@njit(cache=True, error_model="numpy")
def _gradient_sums(fam, y, wt, xb, X, W, Z, a, b, ui, Hinv, g1, d, dd, extra, cache, cvec,
                   x_rho_e, XDZ, w_rho_e, WDZ, We, GZ, grad_extra, eidx, edl, edg1, edg2,
                   shape_q):
    """One cluster's pass over its rows for the gradient (see the module docstring):
    cvec = sum rho z, x_rho_e = X'(rho - e), XDZ = X'DZ, w_rho_e = W'(rho - e), WDZ =
    W'DZ, We = W'e, and the family parameters' sums (GZ, grad_extra). q = len(shape_q):
    a tuple's length is a compile-time constant, so each q <= 3 gets its own compiled
    copy with the loops over the random effects unrolled (about half the time of this
    pass with loops of unknown length); an array (the modes u_i) for larger q."""
    q = len(shape_q)
    p = X.shape[1]
    ne = GZ.shape[0]
    cvec[:] = 0.0
    x_rho_e[:] = 0.0
    XDZ[:, :] = 0.0
    w_rho_e[:] = 0.0
    WDZ[:, :] = 0.0
    We[:] = 0.0
    GZ[:, :] = 0.0
    for j in range(a, b):
        h = 0.0
        for r in range(q):
            zr = Z[j, r]
            acc = 0.0
            for c in range(q):
                acc += Hinv[r, c] * Z[j, c]
            h += zr * acc
        wj = wt[j]
        rho = 0.5 * wj * dd[j] * h
        e = wj * g1[j]
        re = rho - e
        dj = wj * d[j]
        for r in range(q):
            cvec[r] += rho * Z[j, r]
        for m in range(p):
            x_rho_e[m] += X[j, m] * re
            xd = X[j, m] * dj
            for c in range(q):
                XDZ[m, c] += xd * Z[j, c]
        for r in range(q):
            wr = W[j, r]
            w_rho_e[r] += wr * re
            We[r] += wr * e
            wd = wr * dj
            for c in range(q):
                WDZ[r, c] += wd * Z[j, c]
        if ne:
            eta = xb[j]
            for r in range(q):
                eta += Z[j, r] * ui[r]
            ncomp = row_extra_grad(fam, y[j], eta, extra, cache[j, 0], cache[j, 1],
                                   eidx, edl, edg1, edg2)
            for m in range(ncomp):
                t = eidx[m]
                grad_extra[t] += wj * (0.5 * edg2[m] * h - edl[m])
                for r in range(q):
                    GZ[t, r] += wj * edg1[m] * Z[j, r]


@njit(cache=True, error_model="numpy")
def laplace_details(beta, lam, y, wt, X, W, starts, fam, extra, u, cond_inv, fisher):
    """Quantities at the optimum: modes ``u`` (refined in place), H_i^{-1} per cluster
    into ``cond_inv`` (k × q × q), and the fixed-effects information with the random
    effects integrated out (lme4's R_X'R_X) into ``fisher`` (p × p); the linear
    predictor at the modes into ``eta_out`` (n), for the family's boundary check.
    """
    n, p = X.shape
    q = W.shape[1]
    k = starts.shape[0] - 1
    xb = X @ beta
    Z = W @ lam
    g1 = np.empty(n)
    d = np.empty(n)
    dd = np.empty(n)
    H = np.empty((q, q))
    Hinv = np.empty((q, q))
    ZDX = np.empty((q, p))
    tmp = np.empty(q)
    col = np.empty(q)
    for m in range(p):
        for l in range(p):
            fisher[m, l] = 0.0
    for i in range(k):
        a, b = starts[i], starts[i + 1]
        ui = u[i]
        cluster_mode(fam, y, wt, xb, Z, a, b, ui, H, g1, d, dd, extra)
        chol_inverse(H, Hinv)
        for r in range(q):
            for c in range(q):
                cond_inv[i, r, c] = Hinv[r, c]
            for m in range(p):
                ZDX[r, m] = 0.0
        for j in range(a, b):
            for m in range(p):
                xd = X[j, m] * d[j] * wt[j]
                for l in range(m + 1):
                    fisher[m, l] += xd * X[j, l]
                for r in range(q):
                    ZDX[r, m] += Z[j, r] * xd
        # subtract X'DZ H^{-1} Z'DX (Schur complement)
        for m in range(p):
            for r in range(q):
                tmp[r] = ZDX[r, m]
            chol_solve(H, tmp, col)
            for l in range(m + 1):
                s = 0.0
                for r in range(q):
                    s += ZDX[r, l] * col[r]
                fisher[m, l] -= s
    for m in range(p):
        for l in range(m + 1, p):
            fisher[m, l] = fisher[l, m]
