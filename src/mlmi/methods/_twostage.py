"""Two-stage imputation of one variable (2STG; Resche-Rigon & White 2018; METHOD.md §4).

Shared machinery of ``2l.2stage.bin``, ``2l.2stage.pois`` and ``2l.2stage.norm``:

1. **Per-study GLMs.** In every study with observed Z, ``Z ~ [1, x]`` is fitted to the
   study's observed rows alone (all coefficients study-specific; the predictors' roles
   1/2 make no difference — micemd uses every predictor with a positive code). All
   studies are fitted at once by a vectorised IRLS (R's ``glm.fit`` algorithm: its start
   values, its relative deviance criterion 1e-8 and its limit of 25 iterations).
   A study's fit is **dropped** — the study is then imputed as if Z were systematically
   missing there, and counted in ``info["dropped_studies"]`` — when

   - it has fewer observed rows than coefficients, or its design is rank deficient
     (micemd drops a fit with an aliased, ``NA`` coefficient);
   - IRLS fails (non-finite values) or does not converge in 25 iterations (micemd keeps
     a non-converged ``glm``; we drop it);
   - any standard error exceeds 1000 — micemd's rule (``threshold <- 1000``) for
     separation (binary Z) or an all-zero study (count Z), where the MLE is infinite;
   - gaussian only: residual degrees of freedom <= 4 (micemd's rule against overfitting;
     it also keeps the variance ``2 / (df - 4)`` of ``log s^2`` finite).

2. **Meta-analysis** of the kept studies' coefficient vectors with their covariances
   (:func:`mlmi.metaanalysis.mvma`; method of moments by default as micemd's
   ``method_est = "mm"``; REML via the ``*.reml`` method names).

3. **beta* ~ N(beta_hat, Var(beta_hat))**; **Psi*** = Psi_hat for the method of moments,
   a draw from the REML/ML estimate's asymptotic distribution otherwise (both as micemd).

4. **Study coefficients.** A study with a kept fit draws its coefficient vector from the
   normal posterior combining the prior ``N(beta*, Psi*)`` with its own estimate
   ``N(beta_hat_i, V_i)``: precision ``Psi*^{-1} + V_i^{-1}``, mean
   ``cov (Psi*^{-1} beta* + V_i^{-1} beta_hat_i)``. We compute it without inverting
   Psi*: with ``Psi* = R R'`` (R over the positive eigenvalues), ``theta_i = beta* + R u``
   and ``u | data ~ N((I + R'V_i^{-1}R)^{-1} R'V_i^{-1}(beta_hat_i - beta*),
   (I + R'V_i^{-1}R)^{-1})``. This is the same posterior when Psi* is positive definite
   and the correct limit when it is singular (zero between-study variance in some
   direction): the draw then equals beta* in that direction. (micemd uses
   ``ginv(Psi*)``, which for a singular Psi* gives *no* prior information in that
   direction — the opposite limit; we do not follow it there.)
   A study without a kept fit (systematically missing, or dropped) draws
   ``theta_i ~ N(beta*, Psi*)``.

5. The missing values are drawn from the study's GLM with ``theta_i`` (Bernoulli,
   Poisson with the mean clipped at 10 × (largest observed count + 1) and counted, as
   the multilevel methods do (``base.count_mean_cap``), or
   normal with the study's sigma_i* — see :func:`twostage_norm`). (micemd replaces a
   Poisson draw that overflows by the mean of the others.)

If no study's fit can be used, a single-level GLM on all observed rows (study ignored)
imputes every study with Psi = 0, and a warning says so (micemd gives up and leaves the
current values). With one usable study Psi is not estimable and is 0 (a warning).

The method of moments or REML is chosen by the method's name (``2l.2stage.bin`` vs
``2l.2stage.bin.reml``): a name travels with the imputation plan to parallel workers,
where module-level settings would not.

``info`` (one record per call in ``Imputed.diagnostics``): ``n_sporadic``,
``n_systematic`` (studies with missing Z by their status), ``dropped_studies`` (studies
observing Z whose fit was dropped), ``dropped_sporadic`` (of those, sporadic studies
imputed from N(beta*, Psi*)), ``n_fitted_studies``, ``psi_floored`` (1 if the moment
estimate had negative eigenvalues set to 0), ``fit_converged`` (the REML/ML optimiser;
True for the method of moments), ``clipped`` and ``fit_warnings`` (one
``"[dropped] study ..."`` line per dropped study, ``"[2stage] ..."`` lines for the
meta-analysis).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ModelError
from ..glm import fit_glm, irls
from ..glmm import get_family
from ..metaanalysis import MVMAResult, mvma
from ._multilevel import draw_beta, draw_response
from .base import SPORADIC, SYSTEMATIC, Draw, Problem, count_mean_cap

#: R's glm.control(): relative deviance tolerance and iteration limit
IRLS_TOL = 1e-8
IRLS_MAXIT = 25
#: micemd's rule: a fit with a standard error above this is dropped (separation)
SE_THRESHOLD = 1000.0
#: micemd's rule for linear models: residual degrees of freedom <= this are dropped
MIN_DF_NORM = 4
#: a study design whose column-normalised X'X has an eigenvalue below this is rank
#: deficient (|correlation| within ~1e-10 of 1; R's QR tolerance 1e-7 on norms)
RANK_TOL = 1e-12

_OK, _NOT_CONVERGED, _FAILED = 0, 1, 2


@dataclass
class StudyFits:
    """Per-study fits of one family: the kept studies and why others were dropped.

    studies : codes of the studies whose fit is kept (ascending).
    est : (m, p) coefficients; info : (m, p, p) their Fisher information V_i^{-1}
        (gaussian: X_i'X_i, without 1/sigma^2); cov : (m, p, p) V_i (gaussian:
        s_i^2 (X_i'X_i)^{-1}).
    sigma2, df : gaussian only — residual variance and degrees of freedom per study.
    dropped : code -> reason, for studies with observed Z whose fit was dropped.
    """

    studies: np.ndarray
    est: np.ndarray
    info: np.ndarray
    cov: np.ndarray
    sigma2: np.ndarray
    df: np.ndarray
    dropped: dict[int, str] = field(default_factory=dict)


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _segments(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order that sorts rows by study, the studies present, and segment starts."""
    order = np.argsort(codes, kind="stable")
    studies, counts = np.unique(codes[order], return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    return order, studies, starts


def _rank_deficient(gram: np.ndarray) -> np.ndarray:
    """Per study: is X_i'X_i (m, p, p) rank deficient (scale-free test)?"""
    d = np.diagonal(gram, axis1=1, axis2=2)
    zero = np.any(d <= 0.0, axis=1)
    s = 1.0 / np.sqrt(np.where(d > 0.0, d, 1.0))
    norm = gram * s[:, :, None] * s[:, None, :]
    return zero | (np.linalg.eigvalsh(norm)[:, 0] < RANK_TOL)


def fit_studies(y: np.ndarray, X: np.ndarray, codes: np.ndarray, family: str) -> StudyFits:
    """Fit ``family`` ("binomial", "poisson", "gaussian") with design X separately in
    every study present in ``codes`` (the observed rows); see the module docstring for
    when a study's fit is dropped."""
    p = X.shape[1]
    linear = get_family(family).fitter == "lmm"
    order, studies, starts = _segments(codes)
    y, X = y[order], X[order]
    counts = np.diff(np.append(starts, y.size))
    XX = X[:, :, None] * X[:, None, :]
    gram = np.add.reduceat(XX, starts, axis=0)
    dropped: dict[int, str] = {}
    few = counts < p
    deficient = ~few & _rank_deficient(gram)
    if linear:
        few |= (counts - p <= MIN_DF_NORM) & ~deficient
    for j in np.flatnonzero(few):
        dropped[int(studies[j])] = (
            f"{counts[j]} observed row(s) for {p} coefficients"
            + (f" (residual df <= {MIN_DF_NORM}, micemd's rule)" if counts[j] >= p else ""))
    for j in np.flatnonzero(deficient):
        dropped[int(studies[j])] = "rank-deficient design (a predictor constant or collinear)"
    usable = ~(few | deficient)
    if not usable.all():
        keep_rows = np.repeat(usable, counts)
        y, X, XX = y[keep_rows], X[keep_rows], XX[keep_rows]
        studies, counts, gram = studies[usable], counts[usable], gram[usable]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    m = studies.size
    empty = StudyFits(studies[:0], np.empty((0, p)), np.empty((0, p, p)),
                      np.empty((0, p, p)), np.empty(0), np.empty(0), dropped)
    if m == 0:
        return empty
    row_study = np.repeat(np.arange(m), counts)
    if linear:
        xty = np.add.reduceat(X * y[:, None], starts, axis=0)
        est = np.linalg.solve(gram, xty[:, :, None])[:, :, 0]
        resid = y - np.einsum("ij,ij->i", X, est[row_study])
        df = (counts - p).astype(float)
        sigma2 = np.add.reduceat(resid**2, starts) / df
        inv = _sym(np.linalg.inv(gram))
        return StudyFits(studies, est, gram, sigma2[:, None, None] * inv, sigma2, df, dropped)
    est, info, reason_code, reason = _irls(y, X, starts, m, family)
    good = reason_code == _OK
    cov = np.full_like(info, np.nan)
    invertible = reason_code != _FAILED
    if invertible.any():
        try:
            cov[invertible] = _sym(np.linalg.inv(info[invertible]))
        except np.linalg.LinAlgError:
            for j in np.flatnonzero(invertible):
                try:
                    cov[j] = _sym(np.linalg.inv(info[j]))
                except np.linalg.LinAlgError:
                    good[j] = False
                    reason[j] = "singular information matrix"
    with np.errstate(invalid="ignore"):
        se_max = np.sqrt(np.max(np.diagonal(cov, axis1=1, axis2=2), axis=1))
    for j in np.flatnonzero(good | ((reason_code == _NOT_CONVERGED) & np.isfinite(se_max))):
        if not np.isfinite(se_max[j]) or se_max[j] > SE_THRESHOLD:
            reason[j] = (f"separated or unstable fit (largest SE {se_max[j]:.3g} > "
                         f"{SE_THRESHOLD:g}, micemd's rule"
                         + ("; IRLS not converged)" if not good[j] else ")"))
            good[j] = False
    for j in np.flatnonzero(~good):
        dropped[int(studies[j])] = reason[j]
    nan = np.full(int(good.sum()), np.nan)
    return StudyFits(studies[good], est[good], info[good], cov[good], nan, nan, dropped)


def _irls(y, X, starts, m, family):
    """Every study's GLM at once (:func:`mlmi.glm.irls`, R's glm.control: 25 iterations,
    tolerance 1e-8). Returns the coefficients, the Fisher information at them, a status
    per study (_OK, _NOT_CONVERGED, _FAILED) and the reasons for the others."""
    fit = irls(y, X, family, starts, maxit=IRLS_MAXIT, tol=IRLS_TOL)
    code = np.where(fit.failed, _FAILED, np.where(fit.converged, _OK, _NOT_CONVERGED))
    reason = ["" for _ in range(m)]
    for j in range(m):
        if fit.failed[j]:
            reason[j] = "IRLS failed (non-finite or singular weighted design)"
        elif not fit.converged[j]:
            reason[j] = f"IRLS did not converge in {IRLS_MAXIT} iterations"
    return fit.beta, fit.info, code, reason


def psi_root(psi: np.ndarray) -> np.ndarray:
    """R (p, r) with R R' = psi over its positive eigenvalues (r may be 0)."""
    lam, V = np.linalg.eigh(0.5 * (psi + psi.T))
    tol = max(float(lam[-1]), 0.0) * lam.size * 1e-12
    keep = lam > tol
    if not keep.any():
        return np.zeros((psi.shape[0], 0))
    return V[:, keep] * np.sqrt(lam[keep])


def posterior_draws(beta_star: np.ndarray, psi_star: np.ndarray, est: np.ndarray,
                    info: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per study (m, p) of theta_i from its normal posterior given the prior
    N(beta*, Psi*) and its own estimate N(est_i, info_i^{-1}); exact for singular Psi*
    (see the module docstring, step 4)."""
    m, p = est.shape
    R = psi_root(psi_star)
    r = R.shape[1]
    if r == 0 or m == 0:
        return np.broadcast_to(beta_star, (m, p)).copy()
    RI = np.einsum("ar,kab->krb", R, info)                 # R' V_i^{-1}
    prec = np.eye(r) + np.einsum("krb,bs->krs", RI, R)     # I + R' V_i^{-1} R
    rhs = np.einsum("krb,kb->kr", RI, est - beta_star)
    chol = np.linalg.cholesky(prec)
    mean = np.linalg.solve(prec, rhs[:, :, None])[:, :, 0]
    z = rng.standard_normal((m, r))
    # u = mean + L'^{-1} z has covariance (L L')^{-1} = prec^{-1}
    u = mean + np.linalg.solve(np.swapaxes(chol, 1, 2), z[:, :, None])[:, :, 0]
    return beta_star + u @ R.T


def prior_draws(beta_star: np.ndarray, psi_star: np.ndarray, n: int,
                rng: np.random.Generator) -> np.ndarray:
    """n draws (n, p) of theta ~ N(beta*, Psi*) (Psi* may be singular)."""
    R = psi_root(psi_star)
    return beta_star + rng.standard_normal((n, R.shape[1])) @ R.T


@dataclass
class _Stage:
    """What the meta-analysis stage produced for one call."""

    beta_star: np.ndarray
    psi_star: np.ndarray
    result: MVMAResult | None
    warnings: list[str]
    fit_beta: np.ndarray | None = None  # the pooled fallback's estimate


def _meta_stage(est: np.ndarray, cov: np.ndarray, method: str, rng: np.random.Generator,
                what: str = "coefficients") -> _Stage:
    """Steps 2-3: meta-analyse, draw beta* and Psi*."""
    res = mvma(est, cov, method)
    warnings = [f"[2stage] {what}: {w}" for w in res.warnings]
    beta_star = draw_beta(res.beta, res.beta_cov, rng)
    psi_star, note = res.draw_psi(rng)
    if note:
        warnings.append(f"[2stage] {what}: {note}")
    return _Stage(beta_star, psi_star, res, warnings)


def _pooled_stage(y, X, family, rng, warnings) -> _Stage:
    """No study's fit is usable: a single-level GLM on all observed rows (study ignored),
    Psi = 0 — every study is imputed from the pooled model (recorded as a warning)."""
    fit = fit_glm(y, X, family)
    if not np.all(np.isfinite(fit.cov)):
        raise ModelError("two-stage imputation: no study's model could be fitted and the "
                         "pooled model is not identified either")
    warnings.append("[2stage] no study's model could be used; the pooled single-level "
                    "model (Psi = 0) imputes every study")
    p = X.shape[1]
    return _Stage(draw_beta(fit.beta, fit.cov, rng), np.zeros((p, p)), None, warnings,
                  fit_beta=fit.beta)


def _labels(problem: Problem, fits: StudyFits) -> list[str]:
    out = []
    for c, why in sorted(fits.dropped.items()):
        label = problem.cluster_labels[c]
        label = label.item() if isinstance(label, np.generic) else label
        out.append(f"[dropped] study {label!r}: {why}; imputed as systematically missing")
    return out


def _base_info(problem: Problem, fits: StudyFits, stage: _Stage, miss_studies) -> dict:
    st = problem.status[miss_studies]
    res = stage.result
    dropped_sporadic = int(np.sum(np.isin(miss_studies[st == SPORADIC], list(fits.dropped))))
    return {
        "n_sporadic": int(np.sum(st == SPORADIC)),
        "n_systematic": int(np.sum(st == SYSTEMATIC)),
        "dropped_studies": len(fits.dropped),
        "dropped_sporadic": dropped_sporadic,
        "n_fitted_studies": int(fits.studies.size),
        "psi_floored": int(res is not None and res.negeigen > 0),
        "fit_converged": bool(res is None or res.converged),
    }


def twostage_glm(problem: Problem, family: str, method: str) -> Draw:
    """One univariate 2STG step for binary ("binomial") or count ("poisson") Z."""
    rng = problem.rng
    X, _ = problem.design()
    obs = np.flatnonzero(problem.ry)
    miss = np.flatnonzero(problem.wy)
    fits = fit_studies(problem.y[obs], X[obs], problem.cluster[obs], family)
    warnings = _labels(problem, fits)
    if fits.studies.size:
        stage = _meta_stage(fits.est, fits.cov, method, rng)
        stage.warnings[:0] = warnings
    else:
        stage = _pooled_stage(problem.y[obs], X[obs], family, rng, warnings)
    theta, miss_studies = _study_coefficients(problem, miss, fits, stage, rng)
    eta = np.einsum("ij,ij->i", X[miss], theta[problem.cluster[miss]])
    clipped = 0
    fam = get_family(family)
    if fam.mean_cap:
        cap = count_mean_cap(problem.y[problem.ry])
        clipped = int(np.sum(eta > cap))
        eta = np.minimum(eta, cap)
    info = _base_info(problem, fits, stage, miss_studies)
    values = draw_response(fam, eta, rng, 1.0, None, problem, info)
    info["clipped"] = clipped
    info["fit_warnings"] = stage.warnings
    return Draw(values, info)


def _study_coefficients(problem, miss, fits, stage, rng):
    """theta_i (n_clusters, p) for every study with missing rows: posterior draw if its
    fit is kept, prior draw otherwise. Also returns the studies with missing rows."""
    p = stage.beta_star.size
    miss_studies = np.unique(problem.cluster[miss])
    theta = np.zeros((problem.n_clusters, p))
    kept = np.isin(miss_studies, fits.studies)
    post = miss_studies[kept]
    if post.size:
        pos = np.searchsorted(fits.studies, post)
        theta[post] = posterior_draws(stage.beta_star, stage.psi_star, fits.est[pos],
                                      fits.info[pos], rng)
    prior = miss_studies[~kept]
    if prior.size:
        theta[prior] = prior_draws(stage.beta_star, stage.psi_star, prior.size, rng)
    return theta, miss_studies


def twostage_norm(problem: Problem, method: str) -> Draw:
    """One univariate 2STG step for continuous Z (micemd's ``2l.2stage.norm``).

    The residual variance is study-specific, drawn as micemd does: the ``log s_i^2`` of
    the kept studies are meta-analysed (univariate, the same estimator, within-study
    variance ``2 / (df_i - 4)``); ``mu*`` ~ N(mu_hat, Var(mu_hat)), tau^2* as Psi*; a
    kept study draws ``log sigma_i^2`` from its normal posterior (prior
    N(mu*, tau^2*) × its own estimate), any other study from N(mu*, tau^2*). The
    coefficients are then meta-analysed with ``V_i = sigma_i*^2 (X_i'X_i)^{-1}`` and
    drawn as for the other families; ``Z = X theta_i + sigma_i* e``.
    micemd computes ``X'X`` in ``V_i`` from the rows of *all* studies (all of the
    data frame, observed or not) — a slip that makes every ``V_i`` about K times too
    small; we use the study's own observed rows.
    """
    rng = problem.rng
    X, _ = problem.design()
    obs = np.flatnonzero(problem.ry)
    miss = np.flatnonzero(problem.wy)
    fits = fit_studies(problem.y[obs], X[obs], problem.cluster[obs], "gaussian")
    warnings = _labels(problem, fits)
    K = problem.n_clusters
    if fits.studies.size == 0:
        # pooled linear model, sigma*^2 = df s^2 / chi2(df) as the multilevel methods
        stage = _pooled_stage(problem.y[obs], X[obs], "gaussian", rng, warnings)
        df = max(obs.size - X.shape[1], 1)
        resid = problem.y[obs] - X[obs] @ stage.fit_beta
        sigma2 = np.full(K, float(resid @ resid) / rng.chisquare(df))
        theta, miss_studies = _study_coefficients(problem, miss, fits, stage, rng)
    else:
        # residual variances: meta-analysis of log s_i^2 (micemd)
        log_s2 = np.log(fits.sigma2)
        s_stage = _meta_stage(log_s2[:, None], (2.0 / (fits.df - MIN_DF_NORM))[:, None, None],
                              method, rng, what="log sigma^2")
        log_sigma2 = prior_draws(s_stage.beta_star, s_stage.psi_star, K, rng)[:, 0]
        log_sigma2[fits.studies] = posterior_draws(
            s_stage.beta_star, s_stage.psi_star, log_s2[:, None],
            ((fits.df - MIN_DF_NORM) / 2.0)[:, None, None], rng)[:, 0]
        sigma2 = np.exp(log_sigma2)
        # coefficients with V_i = sigma_i*^2 (X_i'X_i)^{-1}
        s_kept = sigma2[fits.studies]
        fits.info = fits.info / s_kept[:, None, None]
        fits.cov = _sym(np.linalg.inv(fits.info))
        stage = _meta_stage(fits.est, fits.cov, method, rng)
        stage.warnings[:0] = warnings + s_stage.warnings
        theta, miss_studies = _study_coefficients(problem, miss, fits, stage, rng)
    codes = problem.cluster[miss]
    eta = np.einsum("ij,ij->i", X[miss], theta[codes])
    info = _base_info(problem, fits, stage, miss_studies)
    values = draw_response(get_family("gaussian"), eta, rng, np.sqrt(sigma2[codes]), None,
                           problem, info)
    info["clipped"] = 0
    info["fit_warnings"] = stage.warnings
    return Draw(values, info)


__all__ = ["StudyFits", "fit_studies", "posterior_draws", "prior_draws", "psi_root",
           "twostage_glm", "twostage_norm"]
