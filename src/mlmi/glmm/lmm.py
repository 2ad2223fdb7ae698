"""Exact profiled (RE)ML deviance of the two-level linear mixed model (compiled).

Model: y_i = X_i beta + W_i Lambda u_i + e_i, u_i ~ N(0, sigma^2 I), e_i ~ N(0, sigma^2 I),
so Psi = sigma^2 Lambda Lambda' (lme4's lmer parametrisation, theta relative to sigma).

For a given theta the penalised least-squares problem
    min_{beta,u} |y - X beta - Z Lambda u|^2 + |u|^2
is solved with the per-cluster cross-products C_i = W_i'W_i, W_i'X_i, W_i'y_i and the
totals X'X, X'y, y'y, so one evaluation costs O(k q^3 + p^3), independent of n:

    H_i = Lambda' C_i Lambda + I,   P_i = Lambda' W_i'X_i,   v_i = Lambda' W_i'y_i,
    A   = X'X - sum_i P_i' H_i^{-1} P_i                  (= R_X'R_X in lme4),
    beta = A^{-1} (X'y - sum_i P_i' H_i^{-1} v_i),
    r^2 = y'y - sum_i v_i' H_i^{-1} v_i - beta'(X'y - sum_i P_i' H_i^{-1} v_i),

    ML:   dev = sum_i log|H_i| + n (1 + log(2 pi r^2 / n))
    REML: dev = sum_i log|H_i| + log|A| + (n - p)(1 + log(2 pi r^2 / (n - p)))

(lme4's profiled deviance, eqs. 34 and 41 of Bates et al. 2015). The exact gradient
in theta uses d r^2 = -2 sum_i (W_i'e_i)[r] u_i[c] (envelope theorem) and the trace
formulas for the log-determinants; see the comments in the code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._linalg import chol_inplace, chol_inverse, chol_logdet


@njit(cache=True, error_model="numpy")
def cross_products(y, X, W, starts):
    """Per-cluster C_i = W_i'W_i, W_i'X_i, W_i'y_i and the totals X'X, X'y, y'y."""
    p = X.shape[1]
    q = W.shape[1]
    k = starts.shape[0] - 1
    C = np.zeros((k, q, q))
    WX = np.zeros((k, q, p))
    Wy = np.zeros((k, q))
    XtX = np.zeros((p, p))
    Xty = np.zeros(p)
    yty = 0.0
    for i in range(k):
        for j in range(starts[i], starts[i + 1]):
            yj = y[j]
            yty += yj * yj
            for r in range(q):
                wr = W[j, r]
                Wy[i, r] += wr * yj
                for c in range(q):
                    C[i, r, c] += wr * W[j, c]
                for m in range(p):
                    WX[i, r, m] += wr * X[j, m]
            for m in range(p):
                xm = X[j, m]
                Xty[m] += xm * yj
                for l in range(p):
                    XtX[m, l] += xm * X[j, l]
    return C, WX, Wy, XtX, Xty, yty


@njit(cache=True, error_model="numpy")
def _solve_sym(A_chol, b):
    """Solve (L L') x = b column by column (b: m × r)."""
    m = A_chol.shape[0]
    out = b.copy()
    for col in range(b.shape[1]):
        for i in range(m):
            s = out[i, col]
            for kk in range(i):
                s -= A_chol[i, kk] * out[kk, col]
            out[i, col] = s / A_chol[i, i]
        for i in range(m - 1, -1, -1):
            s = out[i, col]
            for kk in range(i + 1, m):
                s -= A_chol[kk, i] * out[kk, col]
            out[i, col] = s / A_chol[i, i]
    return out


@njit(cache=True, error_model="numpy")
def lmm_profiled(lam, C, WX, Wy, XtX, Xty, yty, n, reml, grad, want_grad,
                 out_beta, out_u, out_Hinv):
    """Profiled deviance / 2 at Lambda; fills grad (d/dtheta of deviance/2), beta,
    the spherical modes u (k × q) and H_i^{-1} (k × q × q). Returns (dev/2, r2, logdet A),
    or dev/2 = inf if a matrix is not positive definite."""
    k, q, p = WX.shape
    Hinv = out_Hinv
    logdetH = 0.0
    A = XtX.copy()
    cvec = Xty.copy()
    P = np.empty((k, q, p))
    v = np.empty((k, q))
    HP = np.empty((k, q, p))  # H_i^{-1} P_i
    Hv = np.empty((k, q))  # H_i^{-1} v_i
    Hf = np.empty((q, q))
    vHv = 0.0
    for i in range(k):
        # P_i = Lambda' WX_i, v_i = Lambda' Wy_i, H_i = Lambda' C_i Lambda + I
        for r in range(q):
            for m in range(p):
                s = 0.0
                for l in range(q):
                    s += lam[l, r] * WX[i, l, m]
                P[i, r, m] = s
            s = 0.0
            for l in range(q):
                s += lam[l, r] * Wy[i, l]
            v[i, r] = s
        for r in range(q):
            for c in range(q):
                s = 1.0 if r == c else 0.0
                for a in range(q):
                    la = lam[a, r]
                    if la == 0.0:
                        continue
                    for b in range(q):
                        s += la * C[i, a, b] * lam[b, c]
                Hf[r, c] = s
        if not chol_inplace(Hf):
            return np.inf, 0.0, 0.0
        logdetH += chol_logdet(Hf)
        chol_inverse(Hf, Hinv[i])
        for r in range(q):
            for m in range(p):
                s = 0.0
                for l in range(q):
                    s += Hinv[i, r, l] * P[i, l, m]
                HP[i, r, m] = s
            s = 0.0
            for l in range(q):
                s += Hinv[i, r, l] * v[i, l]
            Hv[i, r] = s
        for m in range(p):
            for l in range(p):
                s = 0.0
                for r in range(q):
                    s += P[i, r, m] * HP[i, r, l]
                A[m, l] -= s
            s = 0.0
            for r in range(q):
                s += P[i, r, m] * Hv[i, r]
            cvec[m] -= s
        for r in range(q):
            vHv += v[i, r] * Hv[i, r]
    Achol = A.copy()
    if not chol_inplace(Achol):
        return np.inf, 0.0, 0.0
    logdetA = chol_logdet(Achol)
    cmat = np.empty((p, 1))
    for m in range(p):
        cmat[m, 0] = cvec[m]
    beta = _solve_sym(Achol, cmat)[:, 0]
    r2 = yty - vHv
    for m in range(p):
        r2 -= beta[m] * cvec[m]
        out_beta[m] = beta[m]
    if not r2 > 0.0:
        return np.inf, r2, logdetA
    dof = n - p if reml else n
    dev = logdetH + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof))
    if reml:
        dev += logdetA
    # modes u_i = H_i^{-1}(v_i - P_i beta)
    for i in range(k):
        for r in range(q):
            s = Hv[i, r]
            for m in range(p):
                s -= HP[i, r, m] * beta[m]
            out_u[i, r] = s
    if not want_grad:
        return 0.5 * dev, r2, logdetA
    for t in range(grad.shape[0]):
        grad[t] = 0.0
    Ainv = np.empty((p, p))
    eye = np.zeros((p, p))
    for m in range(p):
        eye[m, m] = 1.0
    Ainv[:, :] = _solve_sym(Achol, eye)
    CL = np.empty((q, q))
    CLH = np.empty((q, q))
    We = np.empty(q)
    scale = dof / r2
    for i in range(k):
        # C_i Lambda and C_i Lambda H_i^{-1}
        for r in range(q):
            for c in range(q):
                s = 0.0
                for a in range(q):
                    s += C[i, r, a] * lam[a, c]
                CL[r, c] = s
        for r in range(q):
            for c in range(q):
                s = 0.0
                for a in range(q):
                    s += CL[r, a] * Hinv[i, a, c]
                CLH[r, c] = s
        # W_i'e_i = W_i'y_i - W_i'X_i beta - C_i Lambda u_i
        for r in range(q):
            s = Wy[i, r]
            for m in range(p):
                s -= WX[i, r, m] * beta[m]
            for a in range(q):
                s -= CL[r, a] * out_u[i, a]
            We[r] = s
        t = 0
        for c in range(q):
            for r in range(c, q):
                g = 2.0 * CLH[r, c]  # d log|H_i|
                g += scale * (-2.0 * We[r] * out_u[i, c])  # dof/r2 * d r2
                grad[t] += 0.5 * g
                t += 1
        if reml:
            # d log|A| = -sum_i [2 Q_i[c, r] - 2 (C_i Lambda K_i)[r, c]],
            # Q_i = H_i^{-1} P_i A^{-1} WX_i',  K_i = H_i^{-1} P_i A^{-1} P_i' H_i^{-1}
            HPA = np.zeros((q, p))
            for r in range(q):
                for m in range(p):
                    s = 0.0
                    for l in range(p):
                        s += HP[i, r, l] * Ainv[l, m]
                    HPA[r, m] = s
            t = 0
            for c in range(q):
                for r in range(c, q):
                    Qcr = 0.0
                    for m in range(p):
                        Qcr += HPA[c, m] * WX[i, r, m]
                    CLK = 0.0
                    for a in range(q):
                        # K[a, c] = sum_m HPA[a, m] HP[c, m]
                        Kac = 0.0
                        for m in range(p):
                            Kac += HPA[a, m] * HP[i, c, m]
                        CLK += CL[r, a] * Kac
                    grad[t] += 0.5 * (-(2.0 * Qcr - 2.0 * CLK))
                    t += 1
    return 0.5 * dev, r2, logdetA
