"""The uniform signature of univariate imputation methods (as mice's ``mice.impute.*``).

Every method is a function ``method(problem: Problem) -> Draw``: it receives the
target variable with its observed/missing pattern, the predictors with their roles
and the study of each row, and returns draws for the rows to impute together with
what happened (for the diagnostics). Nothing else is shared between methods and the
driver, so adding a method touches one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: status of a study for one incomplete variable
COMPLETE, SPORADIC, SYSTEMATIC = 0, 1, 2


def study_status(observed: np.ndarray, cluster: np.ndarray, k: int) -> np.ndarray:
    """Per study 0..k-1, the status of one variable: COMPLETE (observed in every row),
    SPORADIC (in some) or SYSTEMATIC (in none); ``observed`` flags the rows that observe
    it, ``cluster`` the study code of each row."""
    n_obs = np.bincount(cluster[observed], minlength=k)
    size = np.bincount(cluster, minlength=k)
    status = np.full(k, COMPLETE, dtype=np.int64)
    status[n_obs < size] = SPORADIC
    status[n_obs == 0] = SYSTEMATIC
    return status


#: mlmi.impute's default draw of Psi* (psi_draw=); the evidence: docs/results/psi-draw.md
DEFAULT_PSI_DRAW = "auto"


@dataclass
class Problem:
    """One univariate imputation step (mice's y, ry, x, type, wy, plus the study).

    variable : name of the incomplete variable Z being imputed.
    vtype : its type, "binary" (0/1), "count", "continuous", "ordinal" (ordered
        categories) or "nominal" (unordered categories); for the last two ``y`` holds the
        category codes 0..L-1 (the first level the reference).
    y : current values of Z (observed values and the current imputations), float.
    ry : True where Z is observed (these rows are the data of the imputation model).
    wy : True where Z is to be imputed (the missing rows).
    x : current values of the predictors, n × P, without an intercept column.
    x_names : names of the columns of ``x``.
    type : role of each predictor (mice's predictor-matrix codes): 1 = fixed effect,
        2 = fixed effect and a random (study-specific) slope. The random intercept is
        always present in multilevel methods.
    cluster : study code (0..K-1) of each row.
    cluster_labels : the study labels, indexed by code.
    status : per study, COMPLETE, SPORADIC or SYSTEMATIC for Z (from ``ry``).
    rng : the chain's random generator; every draw must come from it.
    sampler : how multilevel methods draw the random effects of a sporadically missing
        study: "exact", "prior-ar", "laplace" or "marginal" (see mlmi.posterior).
    psi_draw : how multilevel methods draw Psi*, the between-study covariance of the
        imputation model: "auto", "paper", "corrected" or "ml-normal" (see
        mlmi.methods._multilevel.PSI_DRAWS).
    state : a dict kept per (variable, chain) across iterations, e.g. for warm starts.
    cluster_role : the study column's code in the predictor matrix: -2 for multilevel
        methods; for single-level methods 1 = the study enters as a fixed categorical
        predictor (one indicator per study: stratified imputation), 0 = ignored.
    n_levels : for a categorical variable, its number of categories L (``y`` holds the
        category codes 0..L-1, the first category the reference); 0 otherwise.
    levels : the category labels of an ordinal or nominal variable, in code order (for
        names in messages and fits); None otherwise.
    limits : (lower, upper) bounds of the variable's possible values, or None: counts and
        normal values are then drawn from the model truncated to [lower, upper] (not
        clipped); either bound may be -inf / inf.
    """

    variable: str
    vtype: str
    y: np.ndarray
    ry: np.ndarray
    wy: np.ndarray
    x: np.ndarray
    x_names: list[str]
    type: np.ndarray
    cluster: np.ndarray
    cluster_labels: np.ndarray
    status: np.ndarray
    rng: np.random.Generator
    sampler: str = "exact"
    psi_draw: str = DEFAULT_PSI_DRAW
    state: dict[str, Any] = field(default_factory=dict)
    cluster_role: int = -2
    n_levels: int = 0
    levels: list | None = None
    limits: tuple[float, float] | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_labels.shape[0])

    def design(self, rows: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-effects design X = [1, x] and random-effects design W = [1, x[type == 2]]
        for the given rows."""
        x = self.x[rows]
        n = x.shape[0]
        X = np.empty((n, x.shape[1] + 1))
        X[:, 0] = 1.0
        X[:, 1:] = x
        slopes = np.flatnonzero(self.type == 2)
        W = np.empty((n, slopes.size + 1))
        W[:, 0] = 1.0
        W[:, 1:] = x[:, slopes]
        return X, W

    def study_indicators(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """One 0/1 column per study (n_rows × K): the study as a fixed categorical
        predictor without a global intercept, so each study gets its own intercept."""
        codes = self.cluster[rows]
        out = np.zeros((codes.shape[0], self.n_clusters))
        out[np.arange(codes.shape[0]), codes] = 1.0
        return out

    @property
    def fixed_names(self) -> list[str]:
        return ["(Intercept)", *self.x_names]

    @property
    def random_names(self) -> list[str]:
        return ["(Intercept)", *(nm for nm, t in zip(self.x_names, self.type, strict=True)
                                 if t == 2)]


def count_mean_cap(observed: np.ndarray) -> float:
    """Upper bound on the log-mean of an imputed count: 10 × (largest observed count + 1).

    A Poisson imputation model with few studies can draw an extreme Psi* (the inverse
    Wishart with df = number of observing studies has infinite variance when df <= q + 3)
    and, through a systematically missing study's prior draw, means of millions — values
    no one measured, which then wreck the models that use the variable as a predictor.
    Methods clip the linear predictor here and count every clipped row (``info["clipped"]``,
    reported at the end of :func:`mlmi.impute`)."""
    top = float(np.max(observed)) if observed.size else 0.0
    return float(np.log(10.0 * (top + 1.0)))


@dataclass
class Draw:
    """The result of one univariate step: ``values`` for the rows where ``wy`` is True
    (in row order), and ``info`` — counts for the diagnostics, such as the number of
    sporadic and systematic studies, sampler proposals/acceptances/fallbacks, and the
    warnings of the model fit."""

    values: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its name, the variable types it imputes, whether it needs
    the study identifier (multilevel), the function, and the level of the variables it
    imputes (2: study-level variables, one value per study, as mice's ``2lonly.*``);
    ``donor``: it imputes observed values (predictive mean matching), so it keeps a count
    a count where a model of continuous variables would not."""

    name: str
    types: tuple[str, ...]
    multilevel: bool
    func: Any
    description: str = ""
    level: int = 1
    donor: bool = False
