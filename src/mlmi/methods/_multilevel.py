"""The paper's multilevel imputation of one variable (METHOD.md §3), for any family.

1. Fit the two-level GLMM of Z on its predictors to the rows where Z is observed
   (maximum likelihood; Laplace approximation for binary and count Z).
2. beta* ~ N(beta_hat, Var(beta_hat)).
3. Psi* — by the paper's draw ``psi_draw="paper"``:
   Psi*^{-1} ~ Wishart(df = m_obs, scale = Lambda_hat^{-1}), Lambda_hat = sum_i b_hat_i b_hat_i'
   over the m_obs studies that observe Z — or by one of the calibrated alternatives
   (see :data:`PSI_DRAWS` and :func:`draw_psi_star`). sigma*^2 = df sigma_hat^2 / chi2(df)
   for continuous Z, df = residual degrees of freedom.
4. Random effects of each study with missing Z: from the prior N(0, Psi*) if Z is
   systematically missing there, from their posterior given the study's observed Z
   (and beta*, Psi*) if it is sporadically missing.
5. Missing Z drawn from the model with beta* and b_i*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError, ModelError
from ..glmm import fit_arrays, get_family
from ..glmm._linalg import theta_diagonal_index, theta_to_lambda
from ..glmm.lmm import cross_products, lmm_profiled
from ..glmm.optimize import SINGULAR_TOL
from ..posterior import SamplerStats, draw_many
from .base import SPORADIC, SYSTEMATIC, Draw, Problem, count_mean_cap

#: eigenvalues of Lambda_hat below this share of its trace are floored (singular fit)
PSI_FLOOR = 1e-8

#: how Psi* (the between-study covariance of the imputation model) is drawn:
#:
#: ``"paper"`` — Jolani et al.: Psi*^{-1} ~ Wishart(m_obs, Lambda_hat^{-1}) with
#: Lambda_hat = sum_i b_hat_i b_hat_i'. The conditional modes b_hat_i are shrunken towards 0,
#: so Lambda_hat understates Psi (most with small studies); and with few observing
#: studies the inverse Wishart is over-dispersed (E[Psi*] = Lambda_hat / (m_obs - q - 1),
#: infinite variance for m_obs <= q + 3).
#:
#: ``"corrected"`` — the same Wishart with the shrinkage put back:
#: Lambda_hat = sum_i (b_hat_i b_hat_i' + Var(b_i | y_i)). Since E[b_i b_i' | y_i] =
#: b_hat_i b_hat_i' + Var(b_i | y_i) and E[b_i b_i'] = Psi, Lambda_hat / m_obs is then an
#: (EM-type) moment estimate of Psi instead of a shrunken one. Still the paper's
#: over-dispersion with few studies.
#:
#: ``"ml-normal"`` — a draw from the approximate (large-sample) sampling distribution of
#: the maximum-likelihood estimate Psi_hat: vech(Psi*) ~ N(vech(Psi_hat), J C J'), C the theta
#: block of the inverse Hessian of -loglik in lme4's theta (Laplace for binary/count — the
#: Hessian the fit already computes for Var(beta_hat); the profiled likelihood for
#: continuous Z, where Psi = sigma^2 Lambda(theta) Lambda(theta)' is scaled by sigma*^2) and
#: J = d vech(Psi) / d theta (the delta method); negative eigenvalues of the draw are set
#: to 0 (counted in psi_floored). Centred at Psi_hat (no shrinkage bias), with Gaussian
#: tails — every moment finite however few studies observe Z, where the paper's draw has
#: none above the first for m_obs <= q + 3 — and, near the boundary, the shape of the
#: sampling distribution of a variance estimated near 0 (a point mass at 0 and a normal
#: part; Self & Liang 1987). The variance scale matters there: a normal on theta itself
#: (the SD scale) is far too wide when a variance is estimated near 0, since the
#: likelihood is flat to second order in theta at 0 (found in the simulation: a slope SD
#: estimated at 0.05 with 4 studies drew SDs of 10).
PSI_DRAWS = ("paper", "corrected", "ml-normal")


def draw_beta(beta_hat: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """beta* ~ N(beta_hat, cov), via the symmetric square root (robust to a
    semi-definite cov). A non-finite cov (a failed fit) is an error, not a draw."""
    if not np.all(np.isfinite(cov)):
        raise ModelError(
            "the covariance of the fixed effects of the imputation model is not finite "
            "(the model fit failed); check this variable's predictors for collinearity or "
            "separation, or impute it with a simpler model"
        )
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    root = V * np.sqrt(np.clip(w, 0.0, None))
    return beta_hat + root @ rng.standard_normal(beta_hat.size)


def draw_psi(lambda_hat: np.ndarray, df: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, bool]:
    """Psi* with Psi*^{-1} ~ Wishart(df, Lambda_hat^{-1}) (Jolani et al.'s draw).

    A singular Lambda_hat (e.g. after a singular GLMM fit, a random slope with
    variance 0) has its small eigenvalues floored at ``PSI_FLOOR * trace`` so the
    draw exists; the second value says whether that happened (it is counted).
    """
    q = lambda_hat.shape[0]
    w, V = np.linalg.eigh(0.5 * (lambda_hat + lambda_hat.T))
    floor = max(PSI_FLOOR * float(np.sum(np.clip(w, 0, None))), 1e-12)
    floored = bool(w.min() < floor)
    w = np.maximum(w, floor)
    scale_root = V / np.sqrt(w)  # (scale_root)(scale_root)' = Lambda_hat^{-1}
    Z = rng.standard_normal((df, q)) @ scale_root.T  # rows ~ N(0, Lambda_hat^{-1})
    precision = Z.T @ Z
    return np.linalg.inv(precision), floored


def draw_psi_star(fit, psi_draw: str, rng: np.random.Generator, *, sigma_star: float = 1.0,
                  lmm_data: tuple | None = None) -> tuple[np.ndarray, dict]:
    """Psi*, the between-study covariance of one imputation step (METHOD.md §3 step 3).

    fit : the GLMM fit of the imputation model to the rows where Z is observed
        (conditional modes ``b``, conditional covariances ``cond_cov``, ``theta``,
        ``hessian``).
    psi_draw : "paper", "corrected" or "ml-normal" (see :data:`PSI_DRAWS`).
    sigma_star : the drawn residual SD (continuous Z): ml-normal's Psi* is
        sigma*^2 Lambda(theta*) Lambda(theta*)' since lme4's theta is relative to sigma.
    lmm_data : (y, X, W, cluster) of the observed rows, for the profiled-likelihood
        Hessian of a continuous Z under "ml-normal".

    Returns Psi* and counts: ``psi_floored`` (1 if Lambda_hat was singular and floored,
    or if the theta Hessian had a direction of no curvature that was given no variance)
    and ``psi_fallbacks`` (1 if "ml-normal" found no finite Hessian — a failed fit — and
    used the "corrected" draw instead).
    """
    info = {"psi_floored": 0, "psi_fallbacks": 0}
    if psi_draw == "ml-normal":
        found = _theta_cov(fit, lmm_data)
        if found is not None:
            cov, degenerate = found
            q = fit.b.shape[1]
            lam = theta_to_lambda(fit.theta, q)
            J = _psi_jacobian(lam, q)
            w, V = np.linalg.eigh(J @ cov @ J.T)  # covariance of vec(Psi_hat)
            root = V * np.sqrt(np.clip(w, 0.0, None))
            E = (root @ rng.standard_normal(q * q)).reshape(q, q)
            psi = lam @ lam.T + 0.5 * (E + E.T)
            w, V = np.linalg.eigh(psi)
            if w.min() < 0:  # the boundary: a variance drawn below 0 is 0
                degenerate = True
                psi = (V * np.clip(w, 0.0, None)) @ V.T
            info["psi_floored"] = int(degenerate)
            return sigma_star**2 * psi, info
        info["psi_fallbacks"] = 1
        psi_draw = "corrected"
    m_obs = fit.b.shape[0]
    lambda_hat = fit.b.T @ fit.b
    if psi_draw == "corrected":
        lambda_hat = lambda_hat + fit.cond_cov.sum(axis=0)
    elif psi_draw != "paper":
        raise InputError(f"psi_draw={psi_draw!r}: use one of {list(PSI_DRAWS)}")
    psi_star, floored = draw_psi(lambda_hat, m_obs, rng)
    info["psi_floored"] = int(floored)
    return psi_star, info


def _psi_jacobian(lam: np.ndarray, q: int) -> np.ndarray:
    """d vec(Psi) / d theta for Psi = Lambda Lambda' (q*q × nth): dPsi/dtheta_t =
    E_t Lambda' + Lambda E_t', E_t the unit matrix at theta_t's place in Lambda."""
    cols = []
    for c in range(q):
        for r in range(c, q):
            E = np.zeros((q, q))
            E[r, c] = 1.0
            cols.append((E @ lam.T + lam @ E.T).ravel())
    return np.column_stack(cols)


def _theta_cov(fit, lmm_data) -> tuple[np.ndarray, bool] | None:
    """Cov(theta_hat): the theta block of the inverse Hessian of -loglik, i.e. the inverse
    of the Schur complement H_tt - H_tb H_bb^{-1} H_bt (beta integrated out to second
    order), and whether it is degenerate. A diagonal of Lambda estimated at its boundary
    0 (a singular fit) is held there, as the paper's draw does (its Lambda_hat is then
    singular and floored), and so are directions of no or negative curvature (a
    redundant parametrisation at a singular fit); the draw is then flagged as
    degenerate. None if no finite Hessian is available."""
    p = fit.beta.size
    nth = fit.theta.size
    if fit.family.scale_parameter:
        if lmm_data is None:
            return None
        S = _lmm_theta_hessian(fit, *lmm_data)
    else:
        H = fit.hessian
        if H is None or not np.all(np.isfinite(H)) or H.shape[0] != p + nth + fit.extra.size:
            return None
        # theta's information with beta and the family's own parameters (NB theta,
        # ordinal thresholds) profiled out
        other = np.r_[0:p, p + nth:H.shape[0]]
        th = np.arange(p, p + nth)
        A, B, C = H[np.ix_(other, other)], H[np.ix_(other, th)], H[np.ix_(th, th)]
        try:
            S = C - B.T @ np.linalg.solve(A, B)
        except np.linalg.LinAlgError:
            return None
    if S is None or not np.all(np.isfinite(S)):
        return None
    q = fit.b.shape[1]
    lam = theta_to_lambda(fit.theta, q)
    diag = theta_diagonal_index(q)
    free = np.ones(nth, dtype=bool)
    free[diag[np.abs(np.diag(lam)) < SINGULAR_TOL]] = False
    Sf = S[np.ix_(free, free)]
    Sf = 0.5 * (Sf + Sf.T)
    w, V = np.linalg.eigh(Sf)
    tol = 1e-8 * max(1.0, float(np.max(np.abs(w)))) if w.size else 0.0
    keep = w > tol
    cov = np.zeros((nth, nth))
    cov[np.ix_(free, free)] = (V[:, keep] / w[keep]) @ V[:, keep].T
    return cov, bool(not free.all() or not keep.all())


def _lmm_theta_hessian(fit, y, X, W, cluster) -> np.ndarray | None:
    """Hessian in theta of the ML profiled -loglik of a linear mixed model (beta and sigma
    profiled out), by forward differences of its analytic gradient (nth + 1 evaluations
    of a q × q problem per study: negligible next to the fit)."""
    order = np.argsort(cluster, kind="stable")
    counts = np.unique(cluster[order], return_counts=True)[1]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    y, X, W = (np.ascontiguousarray(a[order]) for a in (y, X, W))
    C, WX, Wy, XtX, Xty, yty = cross_products(y, X, W, starts)
    q, k, nth = W.shape[1], starts.size - 1, fit.theta.size
    g = np.zeros(nth)
    beta, u, Hinv = np.zeros(X.shape[1]), np.zeros((k, q)), np.zeros((k, q, q))

    def grad(theta):
        value = lmm_profiled(theta_to_lambda(theta, q), C, WX, Wy, XtX, Xty, yty, y.size,
                             False, g, True, beta, u, Hinv)[0]
        return g.copy() if np.isfinite(value) else None

    g0 = grad(fit.theta)
    if g0 is None:
        return None
    H = np.empty((nth, nth))
    for t in range(nth):
        h = 1e-4 * max(1.0, abs(fit.theta[t]))
        e = np.zeros(nth)
        e[t] = h
        gt = grad(fit.theta + e)
        if gt is None:
            return None
        H[:, t] = (gt - g0) / h
    return H


def multilevel_step(problem: Problem, family: str) -> Draw:
    """One univariate MLMI step for ``family`` ("binomial", "poisson", "gaussian")."""
    fam = get_family(family)
    rng = problem.rng
    X, W = problem.design()
    obs = np.flatnonzero(problem.ry)
    # the studies by their labels (in code order), so warnings name them as the user does
    groups = pd.Categorical.from_codes(problem.cluster[obs],
                                       categories=pd.Index(problem.cluster_labels))
    fit = fit_arrays(
        problem.y[obs], X[obs], W[obs], groups, fam,
        start=problem.state.get("fit"), x_names=problem.fixed_names,
        w_names=problem.random_names,
    )
    problem.state["fit"] = fit
    q = W.shape[1]

    # 2. beta* (collinear columns that the fit dropped get coefficient 0)
    names = problem.fixed_names
    keep = [names.index(nm) for nm in fit.x_names]
    beta_star = np.zeros(len(names))
    beta_star[keep] = draw_beta(fit.beta, fit.beta_cov, rng)

    # 3. sigma* and Psi* (by problem.psi_draw) from the fit to the m_obs observing studies
    # (ml-normal scales Psi* by sigma*^2, so it needs sigma* first; the Wishart draws keep
    # the paper's order, Psi* then sigma*, so their seeded numbers do not move)
    def draw_sigma() -> float:
        if not fam.scale_parameter:
            return 1.0
        df = fit.n_obs - len(fit.beta)
        return float(np.sqrt(df * fit.sigma**2 / rng.chisquare(df)))

    if problem.psi_draw == "ml-normal":
        sigma_star = draw_sigma()
        lmm_data = ((problem.y[obs], X[obs][:, keep], W[obs], problem.cluster[obs])
                    if fam.scale_parameter else None)
        psi_star, psi_info = draw_psi_star(fit, "ml-normal", rng, sigma_star=sigma_star,
                                           lmm_data=lmm_data)
    else:
        psi_star, psi_info = draw_psi_star(fit, problem.psi_draw, rng)
        sigma_star = draw_sigma()

    # the family's own parameters at their MLE (NB theta, ordinal thresholds): as the
    # compiled kernels take them, and on the fit's scale for the response draw
    kernel_extra = fam.kernel_extra(fit.extra)

    # 4. b_i* for the studies with missing Z
    miss = np.flatnonzero(problem.wy)
    studies = np.unique(problem.cluster[miss])
    b_star = np.zeros((problem.n_clusters, q))
    systematic = studies[problem.status[studies] == SYSTEMATIC]
    sporadic = studies[problem.status[studies] == SPORADIC]
    if systematic.size:
        root = np.linalg.cholesky(psi_star + 1e-14 * np.eye(q))
        b_star[systematic] = rng.standard_normal((systematic.size, q)) @ root.T
    stats = SamplerStats()
    if sporadic.size:
        rows = obs[np.isin(problem.cluster[obs], sporadic)]
        rows = rows[np.argsort(problem.cluster[rows], kind="stable")]
        counts = np.bincount(problem.cluster[rows], minlength=problem.n_clusters)[sporadic]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        b_star[sporadic] = draw_many(
            fam, problem.y[rows], X[rows], W[rows], starts, beta_star, psi_star, rng,
            method=problem.sampler, sigma=sigma_star, stats=stats, extra=kernel_extra,
        )

    # 5. the missing values
    eta = X[miss] @ beta_star + np.einsum("ij,ij->i", W[miss], b_star[problem.cluster[miss]])
    clipped = 0
    if fam.mean_cap:
        cap = count_mean_cap(problem.y[obs])
        clipped = int(np.sum(eta > cap))
        eta = np.minimum(eta, cap)
    values = fam.sample(eta, rng, sigma_star, fit.extra)

    return Draw(values, {
        "n_sporadic": int(sporadic.size),
        "n_systematic": int(systematic.size),
        "proposals": stats.proposals,
        "accepted": stats.accepted,
        "bound_exceeded": stats.bound_exceeded,
        "fallbacks": stats.fallbacks,
        "mode_failures": stats.mode_failures,
        "psi_floored": psi_info["psi_floored"],
        "psi_fallbacks": psi_info["psi_fallbacks"],
        "clipped": clipped,
        "fit_converged": bool(fit.converged),
        "fit_singular": bool(fit.singular),
        "fit_warnings": [str(w) for w in fit.warnings],
    })
