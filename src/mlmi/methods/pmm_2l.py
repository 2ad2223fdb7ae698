"""``2l.pmm``: multilevel predictive mean matching (METHOD.md §8).

1.–4. The stages of the linear mixed model's step (as ``2l.norm``): the fit to the
   observed rows, beta* ~ N(beta_hat, Var(beta_hat)), Psi* and sigma*, and b_i* for
   every study with missing values — from the posterior given its observed values where
   Z is sporadically missing, from the prior N(0, Psi*) where it is systematically
   missing.
5. Instead of a normal draw, type-1 matching (mice's ``pmm``) on the multilevel linear
   predictor: an observed row's prediction uses beta_hat and its study's conditional
   mode b_hat_i; a missing row's uses beta* and its study's drawn b_i*. Each missing value
   takes the observed value of one donor drawn at random among the ``DONORS`` = 5 closest
   predictions (:func:`mlmi.methods.pmm.match_donors`).

Imputations are observed values, so a skewed or bounded variable (a positive biomarker,
ages in a narrow range, a score 1–20) stays in its observed range and keeps its
shape; the random effects in both predictions carry the study differences into the
matching, and b_i* carries the imputation model's uncertainty about them.

Where the donors come from: a study with at least :data:`MIN_STUDY_DONORS` observed
values (twice the donor pool, so that the 5 nearest are a choice among at least 10)
matches its missing rows to its own observed rows — its values are the most
exchangeable with its missing ones; a study with fewer (and a systematically missing
study, which has none) matches across the observed rows of all studies, where the
random effects in the predictions still place it. Counted per step: ``pmm_within`` and
``pmm_across`` (rows), ``pmm_within_studies`` and ``pmm_across_studies``.

``limits`` are not needed (every imputation is an observed value) and are ignored.
"""

from __future__ import annotations

import numpy as np

from . import register
from ._multilevel import (
    Step,
    b_star_stage,
    beta_star_stage,
    fit_stage,
    psi_sigma_stage,
)
from .base import Draw, Problem
from .pmm import DONORS, match_donors

#: a study needs this many observed values to give the donors of its own missing rows
MIN_STUDY_DONORS = 2 * DONORS


def match_stage(step: Step, donors: int = DONORS) -> np.ndarray:
    """Type-1 matching on the multilevel linear predictor (module docstring, step 5);
    the counts of within- and across-study matches go to ``step.counts``."""
    problem, fit, rng = step.problem, step.fit, step.problem.rng
    beta_hat = np.zeros(step.X.shape[1])
    beta_hat[step.cols] = fit.beta
    b_hat = np.zeros((problem.n_clusters, fit.b.shape[1]))
    b_hat[np.unique(problem.cluster[step.obs])] = fit.b  # the fit's clusters, in code order
    yhat_obs = step.linear_predictor(step.obs, beta_hat, b_hat)
    yhat_mis = step.linear_predictor(step.miss, step.beta_star, step.b_star)
    y_obs = problem.y[step.obs]
    values = np.empty(step.miss.size)
    study_obs = problem.cluster[step.obs]
    study_mis = problem.cluster[step.miss]
    n_obs = np.bincount(study_obs, minlength=problem.n_clusters)
    across = np.zeros(step.miss.size, dtype=bool)
    within_studies = across_studies = 0
    for i in np.unique(study_mis):
        rows = np.flatnonzero(study_mis == i)
        if n_obs[i] >= MIN_STUDY_DONORS:
            own = np.flatnonzero(study_obs == i)
            values[rows] = y_obs[own[match_donors(yhat_obs[own], yhat_mis[rows], donors,
                                                  rng)]]
            within_studies += 1
        else:
            across[rows] = True
            across_studies += 1
    if across.any():
        values[across] = y_obs[match_donors(yhat_obs, yhat_mis[across], donors, rng)]
    step.counts.update({
        "pmm_within": int(np.sum(~across)), "pmm_across": int(np.sum(across)),
        "pmm_within_studies": within_studies, "pmm_across_studies": across_studies,
    })
    return values


@register("2l.pmm", types=("continuous", "count"), multilevel=True, donor=True,
          description="multilevel predictive mean matching: linear mixed model, donors "
                      "matched on x'beta + w'b including the drawn b_i*; within the study "
                      "when it has >= 10 observed values, else across studies")
def impute_2l_pmm(problem: Problem) -> Draw:
    """Impute a continuous or count variable by observed values of donors matched on the
    multilevel linear predictor (METHOD.md §8)."""
    step = fit_stage(problem, "gaussian")
    beta_star_stage(step)
    psi_sigma_stage(step)
    b_star_stage(step)
    values = match_stage(step)
    return Draw(values, step.info())
