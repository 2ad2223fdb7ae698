"""The paper's multilevel imputation of one variable (METHOD.md §3), for any family.

1. Fit the two-level GLMM of Z on its predictors to the rows where Z is observed
   (maximum likelihood; Laplace approximation for binary and count Z).
2. beta* ~ N(beta_hat, Var(beta_hat)).
3. Psi*^{-1} ~ Wishart(df = m_obs, scale = Lambda_hat^{-1}), Lambda_hat = sum_i b_hat_i b_hat_i'
   over the m_obs studies that observe Z (sigma*^2 = df sigma_hat^2 / chi2(df) for
   continuous Z, df = residual degrees of freedom).
4. Random effects of each study with missing Z: from the prior N(0, Psi*) if Z is
   systematically missing there, from their posterior given the study's observed Z
   (and beta*, Psi*) if it is sporadically missing.
5. Missing Z drawn from the model with beta* and b_i*.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ModelError
from ..glmm import fit_arrays, get_family
from ..posterior import SamplerStats, draw_many
from .base import SPORADIC, SYSTEMATIC, Draw, Problem, count_mean_cap

#: eigenvalues of Lambda_hat below this share of its trace are floored (singular fit)
PSI_FLOOR = 1e-8


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


def multilevel_step(problem: Problem, family: str) -> Draw:
    """One univariate MLMI step for ``family`` ("binomial", "poisson", "gaussian")."""
    fam = get_family(family)
    rng = problem.rng
    X, W = problem.design()
    obs = np.flatnonzero(problem.ry)
    fit = fit_arrays(
        problem.y[obs], X[obs], W[obs], problem.cluster[obs], fam,
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

    # 3. Psi* (and sigma*) from the conditional modes of the m_obs observed studies
    m_obs = fit.b.shape[0]
    psi_star, floored = draw_psi(fit.b.T @ fit.b, m_obs, rng)
    sigma_star = 1.0
    if fam.name == "gaussian":
        df = fit.n_obs - len(fit.beta)
        sigma_star = float(np.sqrt(df * fit.sigma**2 / rng.chisquare(df)))

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
            method=problem.sampler, sigma=sigma_star, stats=stats,
        )

    # 5. the missing values
    eta = X[miss] @ beta_star + np.einsum("ij,ij->i", W[miss], b_star[problem.cluster[miss]])
    clipped = 0
    if fam.name == "poisson":
        cap = count_mean_cap(problem.y[obs])
        clipped = int(np.sum(eta > cap))
        eta = np.minimum(eta, cap)
    values = fam.sample(eta, rng, sigma_star)

    return Draw(values, {
        "n_sporadic": int(sporadic.size),
        "n_systematic": int(systematic.size),
        "proposals": stats.proposals,
        "accepted": stats.accepted,
        "bound_exceeded": stats.bound_exceeded,
        "fallbacks": stats.fallbacks,
        "mode_failures": stats.mode_failures,
        "psi_floored": int(floored),
        "clipped": clipped,
        "fit_converged": bool(fit.converged),
        "fit_singular": bool(fit.singular),
        "fit_warnings": [str(w) for w in fit.warnings],
    })
