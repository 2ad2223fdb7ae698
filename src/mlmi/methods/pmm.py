"""``pmm``: predictive mean matching (mice's ``mice.impute.pmm`` with its defaults).

1. beta_hat and a draw beta* by the Bayesian linear regression of the variable on the
   single-level design (mice's ``.norm.draw``, see :func:`mlmi.methods._single.draw_linear`).
2. Type-1 matching: predictions of the observed rows with beta_hat, of the missing rows
   with beta*; a study without observed values gets the average study intercept.
3. For each missing row, the ``DONORS`` = 5 observed rows with the closest predictions
   are found and one of them, chosen at random, gives its observed value.

The matching is mice's ``matchindex``: donors are shuffled (random order among tied
predictions), sorted, and for each target the h-th nearest donor, h uniform on 1..5, is
taken by walking out from its position in the sorted predictions (on equal distance
the larger prediction first). Here the walk is vectorised: the 5 nearest donors of a
target lie among the 5 sorted donors on either side of its insertion point.
"""

from __future__ import annotations

import numpy as np

from . import register
from ._single import build_design, draw_linear
from .base import Draw, Problem

#: mice's default donor pool size
DONORS = 5


def match_donors(yhat_obs: np.ndarray, yhat_mis: np.ndarray, donors: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Index into ``yhat_obs`` of one random donor among the ``donors`` nearest
    predictions to each value of ``yhat_mis`` (mice's ``matchindex``)."""
    n1 = yhat_obs.size
    k = min(max(int(donors), 1), n1)
    shuffle = rng.permutation(n1)
    order = shuffle[np.argsort(yhat_obs[shuffle], kind="stable")]
    d = yhat_obs[order]
    h = rng.integers(0, k, size=yhat_mis.size)  # the (h + 1)-th nearest
    right = np.searchsorted(d, yhat_mis, side="left")
    # candidates: k to the right (right, right+1, ...), then k to the left (right-1, ...)
    offsets = np.concatenate([np.arange(k), -1 - np.arange(k)])
    cand = right[:, None] + offsets
    valid = (cand >= 0) & (cand < n1)
    dist = np.where(valid, np.abs(d[np.clip(cand, 0, n1 - 1)] - yhat_mis[:, None]), np.inf)
    rank = np.argsort(dist, axis=1, kind="stable")  # ties: right side first, as mice
    rows = np.arange(yhat_mis.size)
    return order[cand[rows, rank[rows, h]]]


def pmm_step(problem: Problem, donors: int = DONORS) -> Draw:
    """One pmm imputation with ``donors`` candidates per missing row."""
    design = build_design(problem)
    rng = problem.rng
    y_obs = problem.y[design.obs]
    fit = draw_linear(design.x_obs, y_obs, rng, xtx=design.xtx)
    yhat_obs = design.x_obs @ fit.beta_hat
    yhat_mis = design.predict_missing(fit.beta_star)
    idx = match_donors(yhat_obs, yhat_mis, donors, rng)
    notes = list(design.notes)
    if fit.ridge:
        notes.append("[collinearity] X'X singular: ridge 1e-5 * diag(X'X) added")
    return Draw(y_obs[idx], {**design.info(), "ridge": fit.ridge,
                             "n_donors": min(donors, y_obs.size), "fit_warnings": notes})


@register("pmm", types=("binary", "count", "continuous"), multilevel=False, donor=True,
          description="predictive mean matching (mice's pmm: type-1 matching, 5 donors); "
                      "study as fixed dummies, a systematically missing study gets the "
                      "average intercept")
def impute_pmm(problem: Problem) -> Draw:
    """Impute any numeric variable by predictive mean matching (Little 1988)."""
    return pmm_step(problem)
