"""Study-level variables: ``2lonly.norm``, ``2lonly.pmm``, ``2lonly.bin``,
``2lonly.polyreg`` (mice's ``mice.impute.2lonly.*``).

A study-level variable (the school's denomination, a trial's design, a centre's size) has
one value per study. Imputing it participant by participant would give the members of one
study different values, and would count each study as many times as it has members. These
methods instead:

1. aggregate to one row per study: the study's value of the variable (where any member
   has it observed — it is constant within the study) and the study means of the
   predictors (a study-level predictor's mean is its value; a level-1 predictor's mean is
   its contextual, study-level summary, computed from the current imputations);
2. fit the single-level model to the studies that observe the variable and draw from it
   (``norm``: Bayesian linear regression; ``pmm``: predictive mean matching among the
   observing studies; ``bin``: logistic regression with a normal-approximation draw of
   beta; ``polyreg``: multinomial logistic regression, see :mod:`._multinom`) for the
   studies that do not;
3. copy each study's value to all of its members with a missing value. A study where the
   variable is observed for some members keeps that (observed) value for the others.

Few studies: the model has as many rows as studies observing the variable, so with few
studies and many predictors it is weak — the draws then mostly reflect the prior spread
(large sigma*, wide beta*), and collinear predictors get coefficient 0 (reported in
``fit_warnings``). ``n_studies_fit`` and ``n_coef`` in the diagnostics show how many
studies fitted how many coefficients.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from . import register
from ._multinom import augment_multinom, draw_multinom, fit_multinom
from ._single import build_design, draw_linear, draw_normal
from .base import COMPLETE, SYSTEMATIC, Draw, Problem
from .logreg import fit_logistic
from .pmm import DONORS, match_donors


def study_problem(problem: Problem) -> tuple[Problem, np.ndarray, np.ndarray, dict]:
    """The one-row-per-study problem of a study-level variable.

    Returns (the study problem — to impute its ``wy`` studies —, the known value of each
    study (NaN where no member observes it), the studies to impute, and counts)."""
    K = problem.n_clusters
    codes = problem.cluster
    sizes = np.bincount(codes, minlength=K).astype(float)
    n_obs = np.bincount(codes[problem.ry], minlength=K)
    known = np.full(K, np.nan)
    obs_rows = np.flatnonzero(problem.ry)
    known[codes[obs_rows]] = problem.y[obs_rows]  # constant within a study (checked at set-up)
    x_mean = np.empty((K, problem.x.shape[1]))
    for j in range(problem.x.shape[1]):
        x_mean[:, j] = np.bincount(codes, weights=problem.x[:, j], minlength=K) / \
            np.where(sizes > 0, sizes, 1.0)
    needs = np.zeros(K, dtype=bool)
    needs[np.unique(codes[problem.wy])] = True
    to_draw = needs & (n_obs == 0)
    ry = n_obs > 0
    status = np.where(ry, COMPLETE, SYSTEMATIC)
    sub = Problem(
        variable=problem.variable, vtype=problem.vtype, y=np.where(ry, known, 0.0), ry=ry,
        wy=to_draw, x=x_mean, x_names=list(problem.x_names),
        type=np.ones(x_mean.shape[1], dtype=np.int64), cluster=np.arange(K),
        cluster_labels=problem.cluster_labels, status=status, rng=problem.rng,
        sampler=problem.sampler, state=problem.state, cluster_role=0,
        n_levels=problem.n_levels,
    )
    counts = {"n_systematic": int(to_draw.sum()),
              "n_sporadic": int(np.sum(needs & (n_obs > 0))),
              "n_studies_fit": int(ry.sum())}
    return sub, known, to_draw, counts


def _to_rows(problem: Problem, known: np.ndarray, to_draw: np.ndarray,
             drawn: np.ndarray) -> np.ndarray:
    """Each missing row gets its study's value: observed in the study, else drawn."""
    value = known.copy()
    value[np.flatnonzero(to_draw)] = drawn
    return value[problem.cluster[problem.wy]]


def _run(problem: Problem, step) -> Draw:
    sub, known, to_draw, counts = study_problem(problem)
    if not to_draw.any():  # every study with missing members observes the variable
        return Draw(_to_rows(problem, known, to_draw, np.empty(0)),
                    {**counts, "n_coef": 0, "fit_warnings": []})
    design = build_design(sub)
    drawn, info = step(sub, design)
    info = {**counts, "n_coef": int(design.fit_cols.size), **info}
    notes = list(design.notes) + info.pop("notes", [])
    if counts["n_studies_fit"] < design.fit_cols.size + 2:
        notes.append(f"[few studies] {counts['n_studies_fit']} studies observe "
                     f"{problem.variable!r} for {design.fit_cols.size} coefficients")
    info["fit_warnings"] = notes
    return Draw(_to_rows(problem, known, to_draw, drawn), info)


def _norm(sub: Problem, design) -> tuple[np.ndarray, dict]:
    fit = draw_linear(design.x_obs, sub.y[design.obs], sub.rng, xtx=design.xtx)
    mean = design.predict_missing(fit.beta_star)
    return mean + fit.sigma_star * sub.rng.standard_normal(mean.size), {"ridge": fit.ridge}


def _pmm(sub: Problem, design) -> tuple[np.ndarray, dict]:
    y_obs = sub.y[design.obs]
    fit = draw_linear(design.x_obs, y_obs, sub.rng, xtx=design.xtx)
    idx = match_donors(design.x_obs @ fit.beta_hat, design.predict_missing(fit.beta_star),
                       DONORS, sub.rng)
    return y_obs[idx], {"ridge": fit.ridge, "n_donors": min(DONORS, y_obs.size)}


def _bin(sub: Problem, design) -> tuple[np.ndarray, dict]:
    fit = fit_logistic(design, sub.y[design.obs])
    beta_star = draw_normal(fit.beta, fit.cov, sub.rng)
    prob = expit(design.predict_missing(beta_star))
    values = (sub.rng.random(prob.size) < prob).astype(float)
    return values, {"separated": fit.separated, "fit_converged": fit.converged,
                    "ridge": fit.ridge, "notes": fit.notes[len(design.notes):]}


def _polyreg(sub: Problem, design) -> tuple[np.ndarray, dict]:
    y_obs = np.round(sub.y[design.obs]).astype(np.int64)
    n_levels = sub.n_levels or int(y_obs.max()) + 1
    xa, ya, wa = augment_multinom(design.x_obs, n_levels)
    fit = fit_multinom(np.vstack([design.x_obs, xa]), np.concatenate([y_obs, ya]), n_levels,
                       weights=np.concatenate([np.ones(y_obs.size), wa]))
    x_mis = design.X[design.miss][:, design.fit_cols]
    codes, _ = draw_multinom(fit, x_mis, sub.rng)
    notes = []
    if not fit.converged:
        notes.append(f"[convergence] Newton did not converge in {fit.n_iter} iterations")
    return codes, {"fit_converged": fit.converged, "ridge": fit.ridge, "notes": notes}


@register("2lonly.norm", types=("continuous",), multilevel=True, level=2,
          description="study-level variable: Bayesian linear regression on one row per "
                      "study (study means of the predictors), copied to the members")
def impute_2lonly_norm(problem: Problem) -> Draw:
    """Impute a continuous study-level variable (mice's 2lonly.norm)."""
    return _run(problem, _norm)


@register("2lonly.pmm", types=("binary", "count", "continuous"), multilevel=True, level=2,
          donor=True,
          description="study-level variable: predictive mean matching among the observing "
                      "studies (one row per study), copied to the members")
def impute_2lonly_pmm(problem: Problem) -> Draw:
    """Impute a numeric study-level variable by predictive mean matching (2lonly.pmm)."""
    return _run(problem, _pmm)


@register("2lonly.bin", types=("binary",), multilevel=True, level=2,
          description="study-level variable: logistic regression on one row per study "
                      "(normal-approximation draw of beta), copied to the members")
def impute_2lonly_bin(problem: Problem) -> Draw:
    """Impute a binary study-level variable (mice's 2lonly.bin)."""
    return _run(problem, _bin)


@register("2lonly.polyreg", types=("ordinal", "nominal"), multilevel=True, level=2,
          description="study-level variable: multinomial logistic regression on one row per "
                      "study (normal-approximation draw of the coefficients), copied to "
                      "the members")
def impute_2lonly_polyreg(problem: Problem) -> Draw:
    """Impute an ordinal or nominal study-level variable (mice's 2lonly.polyreg; the order
    of ordinal levels is not used); the variable's
    values are category codes 0..L-1 (``problem.n_levels`` = L)."""
    return _run(problem, _polyreg)
