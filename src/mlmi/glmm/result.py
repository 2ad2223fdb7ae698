"""The result of a two-level GLMM fit, with lme4's accessor vocabulary."""

from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import (
    ConvergenceWarning,
    InputError,
    MLMIWarning,
    RankDeficiencyWarning,
    SeparationWarning,
    SingularFitWarning,
)

if TYPE_CHECKING:  # annotations only: the families import nothing from here
    from .families import Family

_CATEGORIES: dict[str, type[MLMIWarning]] = {
    "convergence": ConvergenceWarning,
    "singular": SingularFitWarning,
    "separation": SeparationWarning,
    "rank": RankDeficiencyWarning,
}


@dataclass(frozen=True)
class FitWarning:
    """A warning recorded on a fit: ``kind`` is one of convergence, singular,
    separation, rank — or info, a note on what the optimiser did (e.g. a boundary
    optimum beaten from the interior) that is recorded but not raised;
    ``message`` says what happened and where."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"

    def emit(self, stacklevel: int = 3) -> None:
        _warnings.warn(self.message, _CATEGORIES.get(self.kind, MLMIWarning), stacklevel=stacklevel)


@dataclass
class GLMMResult:
    """A fitted two-level GLMM ``g(E[y]) = X beta + W b_i``, ``b_i ~ N(0, Psi)``.

    Arrays (what the imputation loop uses)
    --------------------------------------
    beta : fixed effects (p,).
    beta_cov : covariance of ``beta`` (p × p); see ``vcov_method``.
    psi : random-effects covariance Psi-hat (q × q).
    theta : lme4's theta (lower triangle of the relative Cholesky factor, column-major).
    b : conditional modes of the random effects (k × q), one row per cluster.
    cond_cov : conditional covariances of the random effects (k × q × q), i.e. the
        inverse curvature of the (Laplace) posterior of b_i at its mode, with beta and
        Psi fixed at their estimates (lme4's ``condVar``).
    sigma : residual SD (gaussian); 1.0 for binomial and poisson.
    loglik : maximised log-likelihood with all constants (Laplace approximation for
        binomial/poisson at ``nagq = 1``, adaptive Gauss–Hermite for ``nagq > 1``; exact
        for gaussian; the REML criterion for ``reml=True``), comparable to lme4's ``logLik``.

    Labelled views (lme4's accessors)
    ---------------------------------
    ``fixef`` (Series), ``vcov`` (DataFrame), ``cov_re`` (DataFrame), ``ranef`` (DataFrame
    clusters × q).
    """

    family: Family
    reml: bool
    nagq: int
    beta: np.ndarray
    beta_cov: np.ndarray
    beta_cov_fisher: np.ndarray
    vcov_method: str
    theta: np.ndarray
    psi: np.ndarray
    b: np.ndarray
    u: np.ndarray
    cond_cov: np.ndarray
    sigma: float
    loglik: float
    converged: bool
    singular: bool
    n_iter: int
    n_eval: int
    x_names: list[str]
    w_names: list[str]
    clusters: np.ndarray
    n_obs: int
    cluster_sizes: np.ndarray
    warnings: list[FitWarning] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    hessian: np.ndarray | None = None  # of -loglik in (beta, theta, extra), for warm starts
    #: the family's own parameters on the optimiser's scale (NB log theta; ordinal
    #: (theta_0, log increments)); empty for binomial, poisson and gaussian
    extra: np.ndarray = field(default_factory=lambda: np.empty(0))
    extra_cov: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    #: covariance of (beta, extra) jointly, on the optimiser's scale (None: not computed)
    joint_cov: np.ndarray | None = None
    #: levels of a categorical response (ordinal, multinomial), in code order
    levels: list | None = None
    rows_merged: bool = False  # identical rows of a cluster were merged (compress.py)
    formula: str | None = None
    response: str | None = None
    group: str | None = None
    _terms: Any = None  # formula terms, for predict(newdata)

    # ------------------------------------------------------------------ labelled views
    @property
    def fixef(self) -> pd.Series:
        """Fixed-effects estimates by term, named as lme4 names them."""
        return pd.Series(self.beta, index=self.x_names, name="estimate")

    @property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects.

        ``vcov_method == "hessian"`` (the default): the beta block of the inverse of the
        Hessian of minus the (Laplace) log-likelihood in (theta, beta) — what lme4's
        ``vcov()`` returns for ``glmer`` fits (``use.hessian = TRUE``), but with an
        analytic gradient differenced once instead of a double finite difference.
        ``"fisher"``: the inverse of the fixed-effects information with theta held fixed
        and the random effects integrated out (lme4's ``chol2inv(RX)``, i.e.
        ``vcov(fit, use.hessian = FALSE)``). For gaussian fits both are
        ``sigma^2 (R_X'R_X)^{-1}``, which is lme4's ``vcov()`` for ``lmer``.
        """
        return pd.DataFrame(self.beta_cov, index=self.x_names, columns=self.x_names)

    @property
    def family_params(self) -> pd.Series:
        """The family's own parameters on their natural scale: the ordinal thresholds
        (named ``"0|1"``, ``"1|2"``, ... from the response's levels) or the negative
        binomial's theta; empty for the other families."""
        return pd.Series(self.family.extra_natural(self.extra),
                         index=self.family.extra_names(self.levels), dtype=float)

    @property
    def thresholds(self) -> pd.Series:
        """Ordinal family: the cut-points theta_j of logit P(Y <= j) = theta_j - x'beta - w'b
        (``ordinal::clmm``'s ``Threshold coefficients``)."""
        if not self.family.fixed_intercept and self.extra.size:
            return self.family_params
        raise InputError(f"a {self.family.name} fit has no thresholds (ordinal family only)")

    @property
    def nb_theta(self) -> float:
        """Negative binomial family: theta of Var(Y) = mu + mu²/theta (glmmTMB's
        ``sigma()`` for ``nbinom2``, lme4's ``getME(fit, "glmer.nb.theta")``). Named
        ``nb_theta`` because ``theta`` is lme4's covariance parameter vector."""
        params = self.family_params
        if "theta" not in params.index:
            raise InputError(f"a {self.family.name} fit has no NB theta (negbin family only)")
        return float(params["theta"])

    @property
    def vcov_all(self) -> pd.DataFrame:
        """Covariance of the family parameters (natural scale) and the fixed effects
        jointly, family parameters first (``ordinal::clmm``'s ``vcov`` order for the
        thresholds), by the delta method from the optimiser's scale."""
        names = self.family.extra_names(self.levels) + list(self.x_names)
        ne = self.extra.size
        p = len(self.x_names)
        if self.joint_cov is None:
            return pd.DataFrame(np.full((ne + p, ne + p), np.nan), index=names, columns=names)
        J = np.eye(ne + p)
        if ne:
            J[:ne, :ne] = self.family.extra_jacobian(self.extra)
        # joint_cov is ordered (beta, extra): reorder to (extra, beta)
        order = list(range(p, p + ne)) + list(range(p))
        cov = self.joint_cov[np.ix_(order, order)]
        return pd.DataFrame(J @ cov @ J.T, index=names, columns=names)

    @property
    def std_errors(self) -> pd.Series:
        """Standard errors of the fixed effects (square roots of ``vcov``'s diagonal)."""
        return pd.Series(np.sqrt(np.diag(self.beta_cov)), index=self.x_names, name="std_error")

    @property
    def cov_re(self) -> pd.DataFrame:
        """Estimated random-effects covariance matrix Psi-hat (lme4's ``VarCorr``)."""
        return pd.DataFrame(self.psi, index=self.w_names, columns=self.w_names)

    @property
    def sd_re(self) -> pd.Series:
        """Random-effect standard deviations."""
        return pd.Series(np.sqrt(np.clip(np.diag(self.psi), 0, None)), index=self.w_names)

    @property
    def corr_re(self) -> pd.DataFrame:
        """Random-effect correlation matrix (NaN where an SD is 0)."""
        sd = np.sqrt(np.clip(np.diag(self.psi), 0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = self.psi / np.outer(sd, sd)
        np.fill_diagonal(corr, 1.0)
        return pd.DataFrame(corr, index=self.w_names, columns=self.w_names)

    @property
    def ranef(self) -> pd.DataFrame:
        """Conditional modes of the random effects, clusters × random-effect terms."""
        return pd.DataFrame(self.b, index=pd.Index(self.clusters, name=self.group),
                            columns=self.w_names)

    @property
    def n_clusters(self) -> int:
        return int(self.b.shape[0])

    @property
    def deviance(self) -> float:
        """-2 log-likelihood."""
        return -2.0 * self.loglik

    def beta_for(self, names: list[str]) -> np.ndarray:
        """Fixed effects in the order of ``names``, 0 for columns dropped as collinear."""
        lookup = dict(zip(self.x_names, self.beta, strict=True))
        return np.array([lookup.get(nm, 0.0) for nm in names])

    # ------------------------------------------------------------------ prediction
    def predict_arrays(
        self,
        X: np.ndarray,
        W: np.ndarray | None = None,
        cluster_index: np.ndarray | None = None,
        *,
        type: str = "link",
    ) -> np.ndarray:
        """Predictions for design arrays; ``cluster_index`` holds each row's position in
        ``self.clusters`` (-1 for a cluster not in the fit: its random effects are 0,
        the population-level prediction)."""
        if type not in ("link", "response"):
            raise InputError(f"type={type!r}: use 'link' or 'response'")
        if self.family.fitter == "multinomial":
            return self._predict_multinomial(X, W, cluster_index, type)
        eta = np.asarray(X, dtype=float) @ self.beta
        if W is not None and cluster_index is not None:
            ci = np.asarray(cluster_index)
            known = ci >= 0
            eta[known] += np.einsum("ij,ij->i", np.asarray(W, float)[known], self.b[ci[known]])
        if type == "response":
            return self.family.inverse_link(eta)
        return eta

    def _predict_multinomial(self, X, W, cluster_index, type):
        """n × (K-1) linear predictors (category-major beta and b), or n × K
        probabilities for ``type="response"``."""
        M = len(self.levels) - 1
        X = np.asarray(X, dtype=float)
        eta = X @ self.beta.reshape(M, -1).T
        if W is not None and cluster_index is not None:
            W = np.asarray(W, dtype=float)
            ci = np.asarray(cluster_index)
            known = ci >= 0
            b = self.b[ci[known]].reshape(-1, M, W.shape[1])
            eta[known] += np.einsum("ir,ikr->ik", W[known], b)
        return self.family.probabilities(eta) if type == "response" else eta

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        include_random: bool = True,
        *,
        type: str = "link",
    ) -> pd.Series:
        """Predict from a formula fit.

        Parameters
        ----------
        newdata : rows to predict for (default: the data of the fit is not stored, so
            it must be given); must hold the fixed-effects variables and, if
            ``include_random``, the cluster column.
        include_random : add the cluster's conditional modes (lme4's ``re.form = NULL``);
            ``False`` gives the population-level prediction (``re.form = NA``). Clusters
            not in the fit get random effects 0.
        type : ``"link"`` (linear predictor, lme4's default) or ``"response"`` (mean).
            Multinomial fits return a DataFrame: the K - 1 log odds against the
            reference category (``"link"``) or the K category probabilities
            (``"response"``), a column per level.
        """
        if self._terms is None:
            raise InputError("predict(newdata) needs a formula fit; use predict_arrays")
        if not isinstance(newdata, pd.DataFrame):
            raise InputError(
                "newdata must be a pandas DataFrame (the fitted data are not stored), not "
                f"{newdata.__class__.__name__}"
            )
        t = self._terms
        needed = [v for term in t.fixed for v in term]
        if include_random:
            needed += [*t.random, t.group]
        missing = [v for v in dict.fromkeys(needed) if v not in newdata.columns]
        if missing:
            raise InputError(
                f"newdata lacks column(s) {missing} that predict needs"
                + (" (include_random=False does not need the cluster column)"
                   if include_random else "")
            )
        X, W, groups = self._terms.model_arrays(newdata, need_response=False,
                                                need_group=include_random)
        multinomial = self.family.fitter == "multinomial"
        keep = self.x_names
        if multinomial:  # "<level>:<term>" -> the terms of one category
            keep = [nm.split(":", 1)[1] for nm in self.x_names[:len(self.x_names)
                                                              // (len(self.levels) - 1)]]
        X = _align(X, self._terms.x_names, keep)
        ci = None
        if include_random:
            pos = {c: i for i, c in enumerate(self.clusters.tolist())}
            ci = np.array([pos.get(g, -1) for g in groups.tolist()])
        out = self.predict_arrays(X, W if include_random else None, ci, type=type)
        if multinomial:  # a column per category: probabilities, or the K-1 log odds
            cols = self.levels if type == "response" else self.levels[1:]
            return pd.DataFrame(out, index=newdata.index, columns=[str(c) for c in cols])
        return pd.Series(out, index=newdata.index, name="fitted")

    # ------------------------------------------------------------------ display
    def summary(self) -> pd.DataFrame:
        """Fixed effects with standard errors and Wald z statistics."""
        se = np.sqrt(np.diag(self.beta_cov))
        return pd.DataFrame(
            {"estimate": self.beta, "std_error": se, "z": self.beta / se},
            index=self.x_names,
        )

    def __repr__(self) -> str:
        head = f"GLMMResult({self.family.name}"
        if self.formula:
            head += f", {self.formula}"
        if self.extra.size:
            head += ", " + ", ".join(f"{k}={v:.4g}" for k, v in self.family_params.items())
        head += (f", n={self.n_obs}, clusters={self.n_clusters}, loglik={self.loglik:.4f}"
                 f", converged={self.converged}, singular={self.singular})")
        return head


def _align(X: np.ndarray, names: list[str], keep: list[str]) -> np.ndarray:
    """Columns of X (named ``names``) in the order ``keep`` (drops collinear columns)."""
    idx = [names.index(nm) for nm in keep]
    return X[:, idx]
