"""The paper's data-generating design and amputation (METHOD.md §6).

Per study i (n_i = N / n participants):

* (nu1_i, nu2_i) ~ N(0, Lambda), Lambda = [[0.200, 0.005], [0.005, 0.200]];
* x1 ~ Bernoulli(logistic(0.4 + nu1_i)),  x2 ~ Poisson(exp(0 + nu2_i));
* (u0_i, u1_i) ~ N(0, Omega);
* binary y ~ Bernoulli(logistic(a0 + a1 x1 + a2 x2 + u0_i + u1_i x1)), redrawn within
  the study until it has at least one event; continuous y = the same linear
  predictor + N(0, 1).

**Categorical x1** (issue 11's extension, ``x1="ordinal"`` or ``"nominal"``): x1 takes
``X1_LEVELS`` = 4 categories 0..3 (0 the reference), generated per study by

* ordinal: cumulative logit ``logit P(x1 <= k) = X1_THRESHOLDS[k] - nu1_i`` (shares about
  0.31 / 0.29 / 0.20 / 0.20 at nu1 = 0);
* nominal: baseline-category logit ``log P(x1 = k) / P(x1 = 0) = X1_LOGITS[k] + nu1_ik``,
  with ``nu1_i1 = nu1_i`` and ``nu1_i2``, ``nu1_i3`` independent N(0, Lambda_11) (every
  category its own study effect; shares about 0.29 / 0.29 / 0.24 / 0.19);

and the outcome model has one fixed effect per non-reference category and the random
slope on "x1 is not the reference category" (with two categories this is the paper's
model exactly):
``a0 + sum_k a1_k [x1 = k] + a2 x2 + u0_i + u1_i [x1 >= 1]``,
``(a1_1, a1_2, a1_3) = A1_CATEGORICAL`` = 1.05 × (1/3, 2/3, 1) for both types.

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
#: types of x1: the paper's binary x1, or a 4-category ordinal / nominal x1
X1_TYPES = ("binary", "ordinal", "nominal")
X1_LEVELS = 4
#: ordinal x1: thresholds of the cumulative logit
X1_THRESHOLDS = np.array([-0.8, 0.4, 1.4])
#: nominal x1: baseline-category logits of categories 1..3
X1_LOGITS = np.array([0.0, -0.2, -0.4])
#: fixed effects of x1's categories 1..3 (dummies, category 0 the reference)
A1_CATEGORICAL = 1.05 * np.array([1.0, 2.0, 3.0]) / 3.0
MECHANISMS = ("mcar", "mar")


def truth(heterogeneity: str, x1: str = "binary") -> dict[str, float]:
    """True values of the analysis model's parameters: a0, a1, a2 and the
    random-effect SDs omega0 = sqrt(Omega_11), omega1 = sqrt(Omega_22); for a
    categorical ``x1`` ("ordinal"/"nominal") a1.1, a1.2, a1.3 (one per non-reference
    category) instead of a1."""
    om = _omega(heterogeneity)
    sds = {"omega0": float(np.sqrt(om[0, 0])), "omega1": float(np.sqrt(om[1, 1]))}
    if _x1_type(x1) == "binary":
        return {"a0": ALPHA[0], "a1": ALPHA[1], "a2": ALPHA[2], **sds}
    return {"a0": ALPHA[0], **{f"a1.{k + 1}": float(a) for k, a in enumerate(A1_CATEGORICAL)},
            "a2": ALPHA[2], **sds}


def _x1_type(x1) -> str:
    if x1 is None or (isinstance(x1, float) and np.isnan(x1)):
        return "binary"  # results made before the categorical design had no x1 field
    if x1 not in X1_TYPES:
        raise InputError(f"x1={x1!r}: use one of {list(X1_TYPES)}")
    return x1


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
    x1: str = "binary",
) -> pd.DataFrame:
    """Complete data of the paper's design (before amputation).

    Parameters
    ----------
    outcome : "binary" (logistic model for y) or "continuous" (linear model, N(0, 1) error).
    heterogeneity : "weak", "moderate" or "strong" between-study covariance Omega.
    studies : number of studies n; each has ``n_total / studies`` participants.
    rng : the random generator (all draws come from it).
    n_total : total number of participants (3000 in the paper).
    x1 : "binary" (the paper's design), "ordinal" or "nominal" (4 categories coded 0..3,
        see the module docstring).

    Returns a DataFrame with columns ``st`` (study 1..n), ``y``, ``x1`` (0/1, or the
    category code 0..3) and ``x2`` (count), as integers where the variable is discrete.
    """
    x1 = _x1_type(x1)
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
        if x1 == "binary":  # the paper's draws, in the paper's order
            xc = rng.binomial(1, expit(0.4 + nu[0]), n_i)
        else:
            xc = _categorical_x1(x1, nu[0], n_i, rng)
        x2 = rng.poisson(np.exp(nu[1]), n_i)
        u = rng.multivariate_normal(np.zeros(2), omega)
        if x1 == "binary":
            eta = ALPHA[0] + ALPHA[1] * xc + ALPHA[2] * x2 + (u[0] + u[1] * xc)
        else:
            effect = np.concatenate([[0.0], A1_CATEGORICAL])[xc]
            eta = ALPHA[0] + effect + ALPHA[2] * x2 + (u[0] + u[1] * (xc >= 1))
        if outcome == "binary":
            p = expit(eta)
            while True:  # the study must have at least one event
                y = rng.binomial(1, p)
                if y.sum() > 0:
                    break
        else:
            y = eta + SIGMA * rng.standard_normal(n_i)
        parts.append(pd.DataFrame({"st": i + 1, "y": y, "x1": xc, "x2": x2}))
    return pd.concat(parts, ignore_index=True)


def _categorical_x1(x1: str, nu1: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Category codes 0..X1_LEVELS-1 of one study (module docstring)."""
    if x1 == "ordinal":
        cum = expit(X1_THRESHOLDS - nu1)
        prob = np.diff(np.concatenate([[0.0], cum, [1.0]]))
    else:
        extra = rng.normal(0.0, np.sqrt(LAMBDA[0, 0]), X1_LEVELS - 2)
        logits = np.concatenate([[0.0], X1_LOGITS + np.concatenate([[nu1], extra])])
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
    return rng.choice(X1_LEVELS, size=n, p=prob)


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
