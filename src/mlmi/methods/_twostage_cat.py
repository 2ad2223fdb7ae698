"""Two-stage imputation of an ordinal or nominal variable (``2l.2stage.polr``,
``2l.2stage.polyreg``): Resche-Rigon & White's (2018) 2STG (METHOD.md §4) with a
proportional-odds or multinomial-logit model per study. The steps and the shared
machinery (meta-analysis, posterior and prior draws of the study coefficients, the
record of dropped studies) are those of :mod:`._twostage`; what is specific:

**The per-study parameter vector** — what is meta-analysed.

* ordinal: ``(alpha_i, beta_i)`` with ``alpha = (theta_0, log(theta_1 - theta_0), ...)``
  the thresholds on their log-gap scale (the scale the fit works on, on which the
  estimates are closer to normal and every draw has ordered thresholds) and ``beta_i``
  the coefficients of the predictors — all study-specific, L - 1 + P numbers (the
  thresholds carry the study's location: there is no intercept in ``beta``);
* nominal: ``vec(B_i)``, the P coefficients (intercept first) of category 1, then of
  category 2, ...: (L - 1)·P numbers (micemd's ``2l.2stage`` family has no
  multinomial member; this is its natural extension).

**Identifiability and the choice made.** A study's fit enters the meta-analysis only when
its parameters are identified from its own rows. Beyond the rules of :mod:`._twostage`
(too few rows, rank-deficient design, failed or non-converged fit, a standard error
above 1000 — separation), a study is **dropped when it does not observe every
category**: a missing category makes a threshold (ordinal) or a category's intercept
(nominal) infinite — the maximum likelihood estimate does not exist. No augmentation is
used within studies (it would pull a study's estimate towards an arbitrary pseudo-data
value and then be counted as evidence in the meta-analysis). A dropped study is imputed
as a systematically missing one, from ``N(beta*, Psi*)``, and counted
(``dropped_studies``, ``dropped_sporadic``, one ``[dropped]`` line each). We considered
and did not take common thresholds with a study-specific location shift only: it
identifies studies lacking a category, but it is a one-stage model in disguise (the
thresholds are estimated jointly), and the paper's 2STG makes every coefficient
study-specific. The price, stated: with few studies and a nominal variable the
between-study covariance has (L-1)P(1 + (L-1)P)/2 parameters — with L = 4 categories and
P = 3 (intercept and two predictors) that is a 9 × 9 Psi — estimated from as many vectors
as studies observe the variable; the method of moments then truncates it to a
low-rank Psi (``psi_floored``), i.e. some directions get no between-study variance.

If no study's fit is usable, a single-level model on all observed rows (study ignored;
augmented against separation as mice's ``polr``/``polyreg``) imputes every study with
Psi = 0, and a warning says so.
"""

from __future__ import annotations

import numpy as np

from ._multinom import _probs, augment_multinom, fit_multinom
from ._single import draw_normal
from ._twostage import (
    SE_THRESHOLD,
    StudyFits,
    _base_info,
    _labels,
    _meta_stage,
    _rank_deficient,
    _segments,
    _Stage,
    _study_coefficients,
    _sym,
)
from .base import Draw, Problem
from .polr import category_probabilities, draw_categories, fit_polr, theta_from_alpha


def _n_levels(problem: Problem, y_obs: np.ndarray) -> int:
    if problem.n_levels >= 2:
        return int(problem.n_levels)
    return int(y_obs.max()) + 1 if y_obs.size else 2


def fit_studies_cat(y: np.ndarray, X: np.ndarray, codes: np.ndarray, n_levels: int,
                    model: str) -> StudyFits:
    """Per-study proportional-odds (``model="polr"``; X's first column, the intercept,
    is left out) or multinomial (``"polyreg"``) fits of the observed rows; see the module
    docstring for the parameter vector and when a study is dropped."""
    order, studies, starts = _segments(codes)
    y, X = y[order].astype(np.int64), X[order]
    ends = np.append(starts[1:], y.size)
    P = X.shape[1]
    d = (n_levels - 1 + P - 1) if model == "polr" else (n_levels - 1) * P
    gram = np.add.reduceat(X[:, :, None] * X[:, None, :], starts, axis=0)
    deficient = _rank_deficient(gram)
    est, info, cov, kept = [], [], [], []
    dropped: dict[int, str] = {}
    for j, s in enumerate(studies):
        sl = slice(starts[j], ends[j])
        yj, Xj = y[sl], X[sl]
        seen = np.bincount(yj, minlength=n_levels)
        code = int(s)
        if yj.size < d:
            dropped[code] = f"{yj.size} observed row(s) for {d} coefficients"
            continue
        if deficient[j]:
            dropped[code] = "rank-deficient design (a predictor constant or collinear)"
            continue
        if np.any(seen == 0):
            dropped[code] = (f"categories {np.flatnonzero(seen == 0).tolist()} not observed "
                             "(their threshold/intercept is not identified)")
            continue
        if model == "polr":
            fit = fit_polr(Xj[:, 1:], yj, n_levels)
            vec = np.concatenate([fit.alpha, fit.beta])
            ok, nit = fit.converged and not fit.ridge, fit.n_iter
        else:
            fit = fit_multinom(Xj, yj, n_levels)
            vec = fit.beta.ravel(order="F")
            ok, nit = fit.converged and not fit.ridge, fit.n_iter
        c = fit.cov
        if not ok:
            dropped[code] = f"fit did not converge in {nit} iterations (or singular)"
            continue
        with np.errstate(invalid="ignore"):
            se_max = float(np.sqrt(np.max(np.diag(c))))
        if not np.isfinite(se_max) or se_max > SE_THRESHOLD:
            dropped[code] = (f"separated or unstable fit (largest SE {se_max:.3g} > "
                             f"{SE_THRESHOLD:g}, micemd's rule)")
            continue
        try:
            inv = _sym(np.linalg.inv(c))
        except np.linalg.LinAlgError:
            dropped[code] = "singular information matrix"
            continue
        est.append(vec)
        cov.append(_sym(c))
        info.append(inv)
        kept.append(code)
    nan = np.full(len(kept), np.nan)
    if not kept:
        return StudyFits(np.empty(0, dtype=np.int64), np.empty((0, d)), np.empty((0, d, d)),
                         np.empty((0, d, d)), nan, nan, dropped)
    return StudyFits(np.array(kept, dtype=np.int64), np.array(est), np.array(info),
                     np.array(cov), nan, nan, dropped)


def _pooled_stage_cat(y, X, n_levels, model, rng, warnings) -> _Stage:
    """No usable study fit: the single-level model on all observed rows (augmented, as
    mice's polr/polyreg), Psi = 0."""
    y = y.astype(np.int64)
    if model == "polr":
        xa, ya, wa = augment_multinom(X[:, 1:], n_levels)
        fit = fit_polr(np.vstack([X[:, 1:], xa]), np.concatenate([y, ya]), n_levels,
                       np.concatenate([np.ones(y.size), wa]))
        vec = np.concatenate([fit.alpha, fit.beta])
    else:
        xa, ya, wa = augment_multinom(X, n_levels)
        fit = fit_multinom(np.vstack([X, xa]), np.concatenate([y, ya]), n_levels,
                           weights=np.concatenate([np.ones(y.size), wa]))
        vec = fit.beta.ravel(order="F")
    warnings.append("[2stage] no study's model could be used; the pooled single-level "
                    "model (Psi = 0) imputes every study")
    d = vec.size
    return _Stage(draw_normal(vec, fit.cov, rng), np.zeros((d, d)), None, warnings,
                  fit_beta=vec)


def twostage_cat(problem: Problem, model: str, method: str) -> Draw:
    """One univariate 2STG step for an ordinal (``model="polr"``) or nominal
    (``"polyreg"``) variable; ``method``: the meta-analysis estimator ("mm"/"reml")."""
    rng = problem.rng
    X, _ = problem.design()
    obs = np.flatnonzero(problem.ry)
    miss = np.flatnonzero(problem.wy)
    y_obs = np.round(problem.y[obs]).astype(np.int64)
    L = _n_levels(problem, y_obs)
    fits = fit_studies_cat(y_obs, X[obs], problem.cluster[obs], L, model)
    warnings = _labels(problem, fits)
    if fits.studies.size:
        stage = _meta_stage(fits.est, fits.cov, method, rng)
        stage.warnings[:0] = warnings
    else:
        stage = _pooled_stage_cat(y_obs, X[obs], L, model, rng, warnings)
    theta, miss_studies = _study_coefficients(problem, miss, fits, stage, rng)
    values = np.empty(miss.size)
    codes = problem.cluster[miss]
    P = X.shape[1]
    for s in miss_studies:
        rows = np.flatnonzero(codes == s)
        Xs = X[miss[rows]]
        if model == "polr":
            th = theta_from_alpha(theta[s, :L - 1])
            prob = category_probabilities(Xs[:, 1:] @ theta[s, L - 1:], th)
        else:
            prob = _probs(Xs, theta[s].reshape((P, L - 1), order="F"))
        values[rows] = draw_categories(prob, rng)
    info = _base_info(problem, fits, stage, miss_studies)
    info["clipped"] = 0
    info["fit_warnings"] = stage.warnings
    return Draw(values, info)


__all__ = ["fit_studies_cat", "twostage_cat"]
