"""The paper's data-generating design and amputation (METHOD.md §6).

Per study i (n_i = N / n participants):

* (nu1_i, nu2_i) ~ N(0, Lambda), Lambda = [[0.200, 0.005], [0.005, 0.200]];
* x1 ~ Bernoulli(logistic(0.4 + nu1_i)),  x2 ~ Poisson(exp(0 + nu2_i));
* (u0_i, u1_i) ~ N(0, Omega);
* binary y ~ Bernoulli(logistic(a0 + a1 x1 + a2 x2 + u0_i + u1_i x1)), redrawn within
  the study until it has at least one event; continuous y = the same linear
  predictor + N(0, 1).

Amputation: sporadic missingness in x1 and x2 with logit P(missing) = d0 + d1 y
(MCAR: d1 = 0; MAR: d1 = 1 for x1 and 0.5 for x2; d0 = logit(0.15) - d1 mean(y)),
then, independently for x1 and x2, round(n pi_sys) randomly chosen studies lose the
variable entirely (systematically missing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from ..exceptions import InputError

#: fixed effects of the analysis model (a0, a1, a2)
ALPHA = np.array([-1.85, 1.05, -0.04])
#: covariance of the study effects on x1 and x2
LAMBDA = np.array([[0.200, 0.005], [0.005, 0.200]])
#: between-study covariance Omega of (u0, u1) by heterogeneity level
OMEGA = {
    "weak": np.array([[0.100, -0.024], [-0.024, 0.250]]),
    "moderate": np.array([[0.75, -0.30], [-0.30, 0.85]]),
    "strong": np.array([[2.75, -1.82], [-1.82, 2.85]]),
}
#: residual SD of the continuous outcome
SIGMA = 1.0
#: MAR strength d1 of sporadic missingness, per variable
D1_MAR = {"x1": 1.0, "x2": 0.5}
P_SPORADIC = 0.15
OUTCOMES = ("binary", "continuous")
MECHANISMS = ("mcar", "mar")


def truth(heterogeneity: str) -> dict[str, float]:
    """True values of the analysis model's parameters: a0, a1, a2 and the
    random-effect SDs omega0 = sqrt(Omega_11), omega1 = sqrt(Omega_22)."""
    om = _omega(heterogeneity)
    return {"a0": ALPHA[0], "a1": ALPHA[1], "a2": ALPHA[2],
            "omega0": float(np.sqrt(om[0, 0])), "omega1": float(np.sqrt(om[1, 1]))}


def _omega(heterogeneity: str) -> np.ndarray:
    if heterogeneity not in OMEGA:
        raise InputError(f"heterogeneity={heterogeneity!r}: use one of {list(OMEGA)}")
    return OMEGA[heterogeneity]


def generate(
    outcome: str,
    heterogeneity: str,
    studies: int,
    rng: np.random.Generator,
    *,
    n_total: int = 3000,
) -> pd.DataFrame:
    """Complete data of the paper's design (before amputation).

    Parameters
    ----------
    outcome : "binary" (logistic model for y) or "continuous" (linear model, N(0, 1) error).
    heterogeneity : "weak", "moderate" or "strong" between-study covariance Omega.
    studies : number of studies n; each has ``n_total / studies`` participants.
    rng : the random generator (all draws come from it).
    n_total : total number of participants (3000 in the paper).

    Returns a DataFrame with columns ``st`` (study 1..n), ``y``, ``x1`` (0/1) and
    ``x2`` (count), as integers where the variable is discrete.
    """
    if outcome not in OUTCOMES:
        raise InputError(f"outcome={outcome!r}: use 'binary' or 'continuous'")
    omega = _omega(heterogeneity)
    if not isinstance(studies, (int, np.integer)) or studies < 2:
        raise InputError(f"studies={studies!r} must be an integer >= 2")
    n_i = n_total // studies
    if n_i * studies != n_total:
        raise InputError(f"n_total={n_total} is not divisible by studies={studies}")
    parts = []
    for i in range(studies):
        nu = rng.multivariate_normal(np.zeros(2), LAMBDA)
        x1 = rng.binomial(1, expit(0.4 + nu[0]), n_i)
        x2 = rng.poisson(np.exp(nu[1]), n_i)
        u = rng.multivariate_normal(np.zeros(2), omega)
        eta = ALPHA[0] + ALPHA[1] * x1 + ALPHA[2] * x2 + (u[0] + u[1] * x1)
        if outcome == "binary":
            p = expit(eta)
            while True:  # the study must have at least one event
                y = rng.binomial(1, p)
                if y.sum() > 0:
                    break
        else:
            y = eta + SIGMA * rng.standard_normal(n_i)
        parts.append(pd.DataFrame({"st": i + 1, "y": y, "x1": x1, "x2": x2}))
    return pd.concat(parts, ignore_index=True)


def ampute(
    data: pd.DataFrame,
    sys: float,
    mechanism: str,
    rng: np.random.Generator,
    spo: float = P_SPORADIC,
    *,
    variables: tuple[str, ...] = ("x1", "x2"),
    cluster: str = "st",
    outcome: str = "y",
) -> pd.DataFrame:
    """Make ``variables`` sporadically and systematically missing, as the paper does.

    Parameters
    ----------
    data : complete data (not modified).
    sys : proportion pi_sys of studies in which each variable is systematically missing
        (round(n * sys) studies, chosen independently for each variable).
    mechanism : "mcar" (d1 = 0) or "mar" (logit P(missing) = d0 + d1 * y, d1 = 1 for
        x1 and 0.5 for x2, or 1 for any other variable).
    rng : the random generator.
    spo : marginal probability of sporadic missingness (0.15 in the paper).
    variables, cluster, outcome : column names.

    Returns a copy with NaN for the missing values; the incomplete columns become float.
    """
    if mechanism not in MECHANISMS:
        raise InputError(f"mechanism={mechanism!r}: use 'mcar' or 'mar'")
    if not 0 <= sys < 1:
        raise InputError(f"sys={sys!r} must be a proportion in [0, 1)")
    out = data.copy()
    y = data[outcome].to_numpy(dtype=float)
    for v in variables:
        d1 = D1_MAR.get(v, 1.0) if mechanism == "mar" else 0.0
        d0 = logit(spo) - d1 * y.mean()
        missing = rng.random(len(out)) < expit(d0 + d1 * y)
        out[v] = out[v].astype(float)
        out.loc[missing, v] = np.nan
    studies = np.unique(out[cluster].to_numpy())
    n_sys = round(len(studies) * sys)
    for v in variables:
        lost = rng.choice(studies, size=n_sys, replace=False)
        out.loc[out[cluster].isin(lost), v] = np.nan
    return out
