"""The paper's multilevel imputation of one variable (METHOD.md §3), for any family.

1. Fit the two-level GLMM of Z on its predictors to the rows where Z is observed
   (maximum likelihood; Laplace approximation for binary and count Z).
2. beta* ~ N(beta_hat, Var(beta_hat)).
3. Psi* — by the paper's draw ``psi_draw="paper"``:
   Psi*^{-1} ~ Wishart(df = m_obs, scale = Lambda_hat^{-1}), Lambda_hat = sum_i b_hat_i b_hat_i'
   over the m_obs studies that observe Z — or by one of the calibrated alternatives
   (see :data:`PSI_DRAWS` and :func:`draw_psi_star`). sigma*^2 = df sigma_hat^2 / chi2(df)
   for continuous Z, df = residual degrees of freedom.
4. Random effects of each study with missing Z: from the prior N(0, Psi*) if Z is
   systematically missing there, from their posterior given the study's observed Z
   (and beta*, Psi*) if it is sporadically missing.
5. Missing Z drawn from the model with beta* and b_i*.

Each step is a named stage (:func:`fit_stage`, :func:`beta_star_stage`,
:func:`psi_sigma_stage`, :func:`b_star_stage`, :func:`response_stage`) acting on a
:class:`Step`; :func:`multilevel_step` composes them, and a method that differs in one
stage (``2l.pmm``: matching instead of a model draw) composes its own in a few lines. The
families with their own parameters (ordinal thresholds, NB theta) draw them jointly with
beta* (METHOD.md §8); the multinomial family's random effects are (K-1) q-dimensional
and every stage handles them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputError, ModelError
from ..glmm import fit_arrays, get_family
from ..glmm._linalg import theta_diagonal_index, theta_to_lambda
from ..glmm.families import Family
from ..glmm.lmm import cross_products, lmm_profiled
from ..glmm.optimize import SINGULAR_TOL
from ..posterior import SamplerStats, draw_many
from .base import SPORADIC, SYSTEMATIC, Draw, Problem, count_mean_cap

#: eigenvalues of Lambda_hat below this share of its trace are floored (singular fit)
PSI_FLOOR = 1e-8

#: how Psi* (the between-study covariance of the imputation model) is drawn:
#:
#: ``"paper"`` — Jolani et al.: Psi*^{-1} ~ Wishart(m_obs, Lambda_hat^{-1}) with
#: Lambda_hat = sum_i b_hat_i b_hat_i'. The conditional modes b_hat_i are shrunken towards 0,
#: so Lambda_hat understates Psi (most with small studies); and with few observing
#: studies the inverse Wishart is over-dispersed (E[Psi*] = Lambda_hat / (m_obs - q - 1),
#: infinite variance for m_obs <= q + 3).
#:
#: ``"corrected"`` — the same Wishart with the shrinkage put back:
#: Lambda_hat = sum_i (b_hat_i b_hat_i' + Var(b_i | y_i)). Since E[b_i b_i' | y_i] =
#: b_hat_i b_hat_i' + Var(b_i | y_i) and E[b_i b_i'] = Psi, Lambda_hat / m_obs is then an
#: (EM-type) moment estimate of Psi instead of a shrunken one. Still the paper's
#: over-dispersion with few studies.
#:
#: ``"ml-normal"`` — a draw from the approximate (large-sample) sampling distribution of
#: the maximum-likelihood estimate Psi_hat: vech(Psi*) ~ N(vech(Psi_hat), J C J'), C the theta
#: block of the inverse Hessian of -loglik in lme4's theta (Laplace for binary/count — the
#: Hessian the fit already computes for Var(beta_hat); the profiled likelihood for
#: continuous Z, where Psi = sigma^2 Lambda(theta) Lambda(theta)' is scaled by sigma*^2) and
#: J = d vech(Psi) / d theta (the delta method); negative eigenvalues of the draw are set
#: to 0 (counted in psi_floored). Centred at Psi_hat (no shrinkage bias), with Gaussian
#: tails — every moment finite however few studies observe Z, where the paper's draw has
#: none above the first for m_obs <= q + 3 — and, near the boundary, the shape of the
#: sampling distribution of a variance estimated near 0 (a point mass at 0 and a normal
#: part; Self & Liang 1987). The variance scale matters there: a normal on theta itself
#: (the SD scale) is far too wide when a variance is estimated near 0, since the
#: likelihood is flat to second order in theta at 0 (found in the simulation: a slope SD
#: estimated at 0.05 with 4 studies drew SDs of 10).
#:
#: ``"auto"`` — the shrinkage-corrected Wishart (``"corrected"``) where the inverse
#: Wishart has a finite variance (m_obs >= Q + 4 observing studies for Q random effects),
#: ``"ml-normal"`` where it has not (m_obs <= Q + 3: the paper's own 6-study scenarios,
#: where the Wishart draws needed the count clipping guard in 10-20 % of the
#: replications). The default; the evidence and the rule that chose it:
#: docs/results/psi-draw.md. A step that used ml-normal is counted
#: (``psi_auto_ml_normal``).
PSI_DRAWS = ("auto", "paper", "corrected", "ml-normal")

#: "auto" uses the (corrected) Wishart draw from this many observing studies beyond the
#: random-effects dimension Q on (m_obs >= Q + 4: Var(Psi*) finite)
AUTO_MIN_EXTRA_STUDIES = 4


def resolve_psi_draw(psi_draw: str, m_obs: int, n_re: int) -> str:
    """The draw ``psi_draw`` stands for with m_obs observing studies and n_re random
    effects: "auto" is "corrected" if m_obs >= n_re + 4 (the inverse Wishart's variance
    exists), else "ml-normal"; any other choice is itself."""
    if psi_draw != "auto":
        return psi_draw
    return "corrected" if m_obs >= n_re + AUTO_MIN_EXTRA_STUDIES else "ml-normal"


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


def draw_psi_star(fit, psi_draw: str, rng: np.random.Generator, *, sigma_star: float = 1.0,
                  lmm_data: tuple | None = None) -> tuple[np.ndarray, dict]:
    """Psi*, the between-study covariance of one imputation step (METHOD.md §3 step 3).

    fit : the GLMM fit of the imputation model to the rows where Z is observed
        (conditional modes ``b``, conditional covariances ``cond_cov``, ``theta``,
        ``hessian``).
    psi_draw : "auto", "paper", "corrected" or "ml-normal" (see :data:`PSI_DRAWS`).
    sigma_star : the drawn residual SD (continuous Z): ml-normal's Psi* is
        sigma*^2 Lambda(theta*) Lambda(theta*)' since lme4's theta is relative to sigma.
    lmm_data : (y, X, W, cluster) of the observed rows, for the profiled-likelihood
        Hessian of a continuous Z under "ml-normal".

    Returns Psi* and counts: ``psi_floored`` (1 if Lambda_hat was singular and floored,
    or if the theta Hessian had a direction of no curvature that was given no variance)
    and ``psi_fallbacks`` (1 if "ml-normal" found no finite Hessian — a failed fit — and
    used the "corrected" draw instead).
    """
    info = {"psi_floored": 0, "psi_fallbacks": 0}
    psi_draw = resolve_psi_draw(psi_draw, *fit.b.shape)
    if psi_draw == "ml-normal":
        found = _theta_cov(fit, lmm_data)
        if found is not None:
            cov, degenerate = found
            q = fit.b.shape[1]
            lam = theta_to_lambda(fit.theta, q)
            J = _psi_jacobian(lam, q)
            w, V = np.linalg.eigh(J @ cov @ J.T)  # covariance of vec(Psi_hat)
            root = V * np.sqrt(np.clip(w, 0.0, None))
            E = (root @ rng.standard_normal(q * q)).reshape(q, q)
            psi = lam @ lam.T + 0.5 * (E + E.T)
            w, V = np.linalg.eigh(psi)
            if w.min() < 0:  # the boundary: a variance drawn below 0 is 0
                degenerate = True
                psi = (V * np.clip(w, 0.0, None)) @ V.T
            info["psi_floored"] = int(degenerate)
            return sigma_star**2 * psi, info
        info["psi_fallbacks"] = 1
        psi_draw = "corrected"
    m_obs = fit.b.shape[0]
    lambda_hat = fit.b.T @ fit.b
    if psi_draw == "corrected":
        lambda_hat = lambda_hat + fit.cond_cov.sum(axis=0)
    elif psi_draw != "paper":
        raise InputError(f"psi_draw={psi_draw!r}: use one of {list(PSI_DRAWS)}")
    psi_star, floored = draw_psi(lambda_hat, m_obs, rng)
    info["psi_floored"] = int(floored)
    return psi_star, info


def _psi_jacobian(lam: np.ndarray, q: int) -> np.ndarray:
    """d vec(Psi) / d theta for Psi = Lambda Lambda' (q*q × nth): dPsi/dtheta_t =
    E_t Lambda' + Lambda E_t', E_t the unit matrix at theta_t's place in Lambda."""
    cols = []
    for c in range(q):
        for r in range(c, q):
            E = np.zeros((q, q))
            E[r, c] = 1.0
            cols.append((E @ lam.T + lam @ E.T).ravel())
    return np.column_stack(cols)


def _theta_cov(fit, lmm_data) -> tuple[np.ndarray, bool] | None:
    """Cov(theta_hat): the theta block of the inverse Hessian of -loglik, i.e. the inverse
    of the Schur complement H_tt - H_tb H_bb^{-1} H_bt (beta integrated out to second
    order), and whether it is degenerate. A diagonal of Lambda estimated at its boundary
    0 (a singular fit) is held there, as the paper's draw does (its Lambda_hat is then
    singular and floored), and so are directions of no or negative curvature (a
    redundant parametrisation at a singular fit); the draw is then flagged as
    degenerate. None if no finite Hessian is available."""
    p = fit.beta.size
    nth = fit.theta.size
    if fit.family.scale_parameter:
        if lmm_data is None:
            return None
        S = _lmm_theta_hessian(fit, *lmm_data)
    else:
        H = fit.hessian
        if H is None or not np.all(np.isfinite(H)) or H.shape[0] != p + nth + fit.extra.size:
            return None
        # theta's information with beta and the family's own parameters (NB theta,
        # ordinal thresholds) profiled out
        other = np.r_[0:p, p + nth:H.shape[0]]
        th = np.arange(p, p + nth)
        A, B, C = H[np.ix_(other, other)], H[np.ix_(other, th)], H[np.ix_(th, th)]
        try:
            S = C - B.T @ np.linalg.solve(A, B)
        except np.linalg.LinAlgError:
            return None
    if S is None or not np.all(np.isfinite(S)):
        return None
    q = fit.b.shape[1]
    lam = theta_to_lambda(fit.theta, q)
    diag = theta_diagonal_index(q)
    free = np.ones(nth, dtype=bool)
    free[diag[np.abs(np.diag(lam)) < SINGULAR_TOL]] = False
    Sf = S[np.ix_(free, free)]
    Sf = 0.5 * (Sf + Sf.T)
    w, V = np.linalg.eigh(Sf)
    tol = 1e-8 * max(1.0, float(np.max(np.abs(w)))) if w.size else 0.0
    keep = w > tol
    cov = np.zeros((nth, nth))
    cov[np.ix_(free, free)] = (V[:, keep] / w[keep]) @ V[:, keep].T
    return cov, bool(not free.all() or not keep.all())


def _lmm_theta_hessian(fit, y, X, W, cluster) -> np.ndarray | None:
    """Hessian in theta of the ML profiled -loglik of a linear mixed model (beta and sigma
    profiled out), by forward differences of its analytic gradient (nth + 1 evaluations
    of a q × q problem per study: negligible next to the fit)."""
    order = np.argsort(cluster, kind="stable")
    counts = np.unique(cluster[order], return_counts=True)[1]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    y, X, W = (np.ascontiguousarray(a[order]) for a in (y, X, W))
    C, WX, Wy, XtX, Xty, yty = cross_products(y, X, W, starts)
    q, k, nth = W.shape[1], starts.size - 1, fit.theta.size
    g = np.zeros(nth)
    beta, u, Hinv = np.zeros(X.shape[1]), np.zeros((k, q)), np.zeros((k, q, q))

    def grad(theta):
        value = lmm_profiled(theta_to_lambda(theta, q), C, WX, Wy, XtX, Xty, yty, y.size,
                             False, g, True, beta, u, Hinv)[0]
        return g.copy() if np.isfinite(value) else None

    g0 = grad(fit.theta)
    if g0 is None:
        return None
    H = np.empty((nth, nth))
    for t in range(nth):
        h = 1e-4 * max(1.0, abs(fit.theta[t]))
        e = np.zeros(nth)
        e[t] = h
        gt = grad(fit.theta + e)
        if gt is None:
            return None
        H[:, t] = (gt - g0) / h
    return H


# ====================================================================== the stages
#
# One multilevel imputation step is the composition
#
#     step = fit_stage(problem, family)      # 1. the GLMM on the observed rows (warm start)
#     beta_star_stage(step)                  # 2. (beta*, extra*) jointly
#     psi_sigma_stage(step)                  # 3. Psi* (and sigma*)
#     b_star_stage(step)                     # 4. b_i* per study with missing values
#     values = response_stage(step)          # 5. the missing values
#     return Draw(values, step.info())
#
# (:func:`multilevel_step`). A method that differs in one stage (2l.pmm replaces 5 by
# matching) calls the others as they are. Each stage takes its random numbers from
# ``problem.rng`` in this order, so a method's seeded numbers depend only on the stages
# it calls.


@dataclass
class Step:
    """The working state of one multilevel step, filled in stage by stage.

    problem : the univariate problem (target, predictors, studies, rng, options).
    fam : the response family (for ``"multinomial"`` bound to the observed categories).
    X, W : the fixed- and random-effects designs of all rows ([1, x] and [1, x_slopes]).
    obs, miss : rows where Z is observed (the data of the fit) and rows to impute.
    y_obs : the response of the observed rows as the family takes it (categorical
        families: codes of the categories present in the observed rows, 0..K'-1).
    categories : for categorical families, the original codes of the K' categories
        present in the observed rows (``categories[c]`` is the code of fitted category c);
        None otherwise.
    fit : the GLMM fit (``problem.state["fit"]`` holds it for the next warm start).
    cols : columns of X the fit kept (collinear ones and, for the ordinal family, the
        intercept get coefficient 0).
    beta_star : fixed effects drawn, over all columns of X (p,), for the multinomial
        family an M × p matrix (row k: category k + 1 against the reference).
    extra_star : the family's own parameters drawn with beta* (optimiser's scale: NB
        log theta, ordinal (theta_1, log increments)); empty for the others.
    sigma_star, psi_star : the drawn residual SD (1 for non-gaussian families) and
        between-study covariance (Q × Q, Q = q for scalar families, (K'-1) q for the
        multinomial).
    b_star : the drawn random effects per study (n_clusters × Q; 0 for studies without
        missing values).
    counts : what happened, for :meth:`info`.
    """

    problem: Problem
    fam: Family
    X: np.ndarray
    W: np.ndarray
    obs: np.ndarray
    miss: np.ndarray
    y_obs: np.ndarray
    categories: np.ndarray | None = None
    fit: Any = None
    cols: np.ndarray | None = None
    beta_star: np.ndarray | None = None
    extra_star: np.ndarray = field(default_factory=lambda: np.empty(0))
    sigma_star: float = 1.0
    psi_star: np.ndarray | None = None
    b_star: np.ndarray | None = None
    stats: SamplerStats = field(default_factory=SamplerStats)
    counts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def vector(self) -> bool:
        """Whether the family has a vector of linear predictors per row (multinomial)."""
        return self.fam.fitter == "multinomial"

    @property
    def n_eta(self) -> int:
        """Linear predictors per row: K' - 1 for the multinomial family, else 1."""
        return self.fam.n_eta if self.vector else 1

    @property
    def studies_missing(self) -> tuple[np.ndarray, np.ndarray]:
        """(sporadic, systematic) study codes among the studies with rows to impute."""
        studies = np.unique(self.problem.cluster[self.miss])
        st = self.problem.status[studies]
        return studies[st == SPORADIC], studies[st == SYSTEMATIC]

    def linear_predictor(self, rows: np.ndarray, beta: np.ndarray, b: np.ndarray
                         ) -> np.ndarray:
        """x' beta + w' b_study for ``rows``: beta over all columns of X (M × p for the
        multinomial family), ``b`` per study code (n_clusters × Q). Returns (n,) or, for
        the multinomial family, (n, M)."""
        X, W = self.X[rows], self.W[rows]
        bi = b[self.problem.cluster[rows]]
        if not self.vector:
            return X @ beta + np.einsum("ij,ij->i", W, bi)
        M, q = self.n_eta, W.shape[1]
        return X @ beta.T + np.einsum("ir,ikr->ik", W, bi.reshape(-1, M, q))

    def info(self) -> dict[str, Any]:
        """The diagnostics of the step (``Draw.info``)."""
        sporadic, systematic = self.studies_missing
        fit = self.fit
        out = {
            "n_sporadic": int(sporadic.size),
            "n_systematic": int(systematic.size),
            "proposals": self.stats.proposals,
            "accepted": self.stats.accepted,
            "bound_exceeded": self.stats.bound_exceeded,
            "fallbacks": self.stats.fallbacks,
            "mode_failures": self.stats.mode_failures,
        }
        out.update(self.counts)
        if fit is not None:
            out["fit_converged"] = bool(fit.converged)
            out["fit_singular"] = bool(fit.singular)
            out["fit_warnings"] = [str(w) for w in fit.warnings] + list(self.notes)
        else:
            out["fit_warnings"] = list(self.notes)
        return out


def fit_stage(problem: Problem, family: str | Family, *, state_key: str = "fit") -> Step:
    """Stage 1: fit the two-level GLMM of Z to its observed rows by maximum likelihood,
    warm-started from the previous iteration's fit (``problem.state[state_key]``).

    For ordinal and nominal Z (``problem.y`` holds codes 0..L-1) only the categories
    present in the observed rows are fitted (recoded 0..K'-1): a category without
    observed values has no estimable threshold or coefficients, and the maximum-likelihood
    imputation model gives it probability 0. Such categories are counted
    (``empty_categories``) and named in the notes. Fewer than two observed categories is
    an error raised by the caller (:func:`categorical_codes`)."""
    fam = get_family(family)
    X, W = problem.design()
    obs = np.flatnonzero(problem.ry)
    miss = np.flatnonzero(problem.wy)
    y_obs = problem.y[obs]
    categories = None
    step_notes: list[str] = []
    counts: dict[str, Any] = {}
    if fam.name in ("ordinal", "multinomial"):
        y_obs, categories, empty = categorical_codes(problem)
        counts["empty_categories"] = len(empty)
        if empty:
            step_notes.append(
                f"[empty-category] {problem.variable!r}: no observed value in "
                f"categor{'y' if len(empty) == 1 else 'ies'} {empty}: not fitted, never "
                "imputed (the model's maximum-likelihood probability for it is 0)")
        if fam.fitter == "multinomial":
            labels = _labels(problem, categories)
            fam = fam.with_levels(labels)
    # the studies by their labels (in code order), so warnings name them as the user does
    groups = pd.Categorical.from_codes(problem.cluster[obs],
                                       categories=pd.Index(problem.cluster_labels))
    x_cols = np.arange(X.shape[1])
    if not fam.fixed_intercept:  # ordinal: the thresholds take the intercept's place
        x_cols = x_cols[1:]
    fit = fit_arrays(
        y_obs, X[obs][:, x_cols], W[obs], groups, fam,
        start=problem.state.get(state_key),
        x_names=[problem.fixed_names[j] for j in x_cols], w_names=problem.random_names,
    )
    problem.state[state_key] = fit
    names = problem.fixed_names
    if fam.fitter == "multinomial":
        prefix = len(str(fam.levels[1])) + 1  # "<level>:<term>"
        M = len(fam.levels) - 1
        terms = [nm[prefix:] for nm in fit.x_names[:len(fit.x_names) // M]]
    else:
        terms = fit.x_names
    cols = np.array([names.index(nm) for nm in terms], dtype=np.int64)
    step = Step(problem, fam, X, W, obs, miss, y_obs, categories, fit, cols,
                counts=counts, notes=step_notes)
    for w in fit.warnings:
        if w.kind == "separation":
            counts["separation"] = counts.get("separation", 0) + 1
        if w.kind == "family":  # e.g. NB theta at its boundary: the Poisson suffices
            counts["family_boundary"] = 1
    return step


def categorical_codes(problem: Problem) -> tuple[np.ndarray, np.ndarray, list]:
    """The observed codes of an ordinal/nominal Z recoded to the categories present
    (0..K'-1), those categories' original codes, and the labels of the empty ones.
    An error naming the variable if fewer than two categories are observed."""
    L = int(problem.n_levels)
    y = problem.y[problem.ry]
    codes = np.rint(y).astype(np.int64)
    if L < 2 or np.any(codes < 0) or np.any(codes >= L) or np.any(codes != y):
        raise InputError(
            f"imputing {problem.variable!r} ({problem.vtype}): the observed values must be "
            f"category codes 0..n_levels-1 with n_levels >= 2; got n_levels={L} and values "
            f"{np.unique(y)[:6].tolist()}")
    present = np.flatnonzero(np.bincount(codes, minlength=L) > 0)
    labels = problem.levels if problem.levels is not None else list(range(L))
    if present.size < 2:
        raise InputError(
            f"imputing {problem.variable!r} ({problem.vtype}): only one category "
            f"({labels[int(present[0])] if present.size else 'none'!r}) is observed; "
            "there is nothing to model — the variable is constant where observed")
    empty = [labels[j] for j in range(L) if j not in set(present.tolist())]
    recode = np.full(L, -1, dtype=np.int64)
    recode[present] = np.arange(present.size)
    return recode[codes].astype(float), present, empty


def _labels(problem: Problem, categories: np.ndarray) -> list:
    """Labels of the fitted categories (for the fit's parameter names)."""
    if problem.levels is None:
        return [int(c) for c in categories]
    return [problem.levels[int(c)] for c in categories]


def beta_star_stage(step: Step) -> None:
    """Stage 2: beta* ~ N(beta_hat, Var(beta_hat)) — for families with their own
    parameters jointly with them, (beta*, extra*) ~ N((beta_hat, extra_hat), joint
    covariance) on the optimiser's scale (METHOD.md §8): ordinal thresholds as
    (theta_1, log increments), so theta* stays ordered; NB as log theta.

    A family parameter held at the edge of its space by the fit (NB theta running to
    infinity: no overdispersion; its covariance row is NaN) keeps its estimate, as does
    every family parameter when the fit has no joint covariance (its Hessian was not
    positive definite: beta* then comes from the fit's fallback covariance); both are
    counted (``extra_held``). Collinear columns that the fit dropped get coefficient 0."""
    fit, rng = step.fit, step.problem.rng
    p_full = step.X.shape[1]
    ne = fit.extra.size
    if ne == 0:
        coef = draw_beta(fit.beta, fit.beta_cov, rng)
        step.extra_star = fit.extra.copy()
    else:
        mean = np.concatenate([fit.beta, fit.extra])
        p = fit.beta.size
        if fit.joint_cov is not None:
            cov = np.asarray(fit.joint_cov, dtype=float)
        else:
            cov = np.full((p + ne, p + ne), np.nan)
            cov[:p, :p] = fit.beta_cov
        free = np.isfinite(np.diag(cov))
        free[:p] = True  # a non-finite beta covariance is draw_beta's error
        draw = mean.copy()
        sub = np.flatnonzero(free)
        draw[sub] = draw_beta(mean[sub], cov[np.ix_(sub, sub)], rng)
        coef, step.extra_star = draw[:p], draw[p:]
        step.counts["extra_held"] = int(np.sum(~free))
    if not step.vector:
        beta_star = np.zeros(p_full)
        beta_star[step.cols] = coef
    else:
        M = step.n_eta
        beta_star = np.zeros((M, p_full))
        beta_star[:, step.cols] = coef.reshape(M, step.cols.size)
    step.beta_star = beta_star


def psi_sigma_stage(step: Step) -> None:
    """Stage 3: Psi* by ``problem.psi_draw`` (:func:`draw_psi_star`) and, for continuous
    Z, sigma*^2 = df sigma_hat^2 / chi2(df), df = residual degrees of freedom.

    ml-normal scales Psi* by sigma*^2, so it needs sigma* first; the Wishart draws keep
    the paper's order, Psi* then sigma*, so their seeded numbers do not move. The
    Wishart draws need at least as many observing studies as random effects (df = m_obs
    >= Q; else the Wishart is singular and Psi* infinite in some direction): with fewer,
    the draw is ml-normal's instead, counted in ``psi_fallbacks``. "auto" is resolved
    here, per step, from the fit's number of observing studies (:func:`resolve_psi_draw`)."""
    problem, fit, fam, rng = step.problem, step.fit, step.fam, step.problem.rng

    def draw_sigma() -> float:
        if not fam.scale_parameter:
            return 1.0
        df = fit.n_obs - len(fit.beta)
        return float(np.sqrt(df * fit.sigma**2 / rng.chisquare(df)))

    psi_draw = resolve_psi_draw(problem.psi_draw, *fit.b.shape)
    step.counts["psi_auto_ml_normal"] = int(problem.psi_draw == "auto"
                                            and psi_draw == "ml-normal")
    too_few = psi_draw != "ml-normal" and fit.b.shape[0] < fit.b.shape[1]
    if psi_draw == "ml-normal" or too_few:
        step.sigma_star = draw_sigma()
        obs = step.obs
        lmm_data = ((problem.y[obs], step.X[obs][:, step.cols], step.W[obs],
                     problem.cluster[obs]) if fam.scale_parameter else None)
        psi_star, psi_info = draw_psi_star(fit, "ml-normal", rng, sigma_star=step.sigma_star,
                                           lmm_data=lmm_data)
        if too_few:
            psi_info["psi_fallbacks"] += 1
            step.notes.append(
                f"[psi] {fit.b.shape[0]} observing stud(ies) for {fit.b.shape[1]} random "
                f"effects: the Wishart draw ({psi_draw!r}) does not exist; Psi* drawn by "
                "'ml-normal'")
    else:
        psi_star, psi_info = draw_psi_star(fit, psi_draw, rng)
        step.sigma_star = draw_sigma()
    # the Wishart's inverse of an ill-conditioned precision is symmetric only to
    # round-off, which the samplers' symmetry check can see for (K-1) q dimensions
    step.psi_star = 0.5 * (psi_star + psi_star.T)
    step.counts["psi_floored"] = psi_info["psi_floored"]
    step.counts["psi_fallbacks"] = psi_info["psi_fallbacks"]


def b_star_stage(step: Step) -> None:
    """Stage 4: b_i* for every study with values to impute — from the prior
    N(0, Psi*) where Z is systematically missing, from the posterior given the study's
    observed values (and beta*, Psi*, the family parameters drawn) where it is
    sporadically missing, by ``problem.sampler`` through :func:`mlmi.posterior.draw_many`
    (its proposals, acceptances and fallbacks go to the step's sampler statistics)."""
    problem, rng = step.problem, step.problem.rng
    Q = step.psi_star.shape[0]
    b_star = np.zeros((problem.n_clusters, Q))
    sporadic, systematic = step.studies_missing
    if systematic.size:
        root = np.linalg.cholesky(step.psi_star + 1e-14 * np.eye(Q))
        b_star[systematic] = rng.standard_normal((systematic.size, Q)) @ root.T
    if sporadic.size:
        obs = step.obs
        in_sporadic = np.isin(problem.cluster[obs], sporadic)
        pos = np.flatnonzero(in_sporadic)
        pos = pos[np.argsort(problem.cluster[obs[pos]], kind="stable")]
        rows = obs[pos]
        counts = np.bincount(problem.cluster[rows], minlength=problem.n_clusters)[sporadic]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kernel_extra = step.fam.kernel_extra(step.extra_star)
        if not step.vector:
            X, beta = step.X[rows], step.beta_star
        else:  # the fit's columns, beta flat category-major as the fit's
            X = step.X[rows][:, step.cols]
            beta = step.beta_star[:, step.cols].ravel()
        b_star[sporadic] = draw_many(
            step.fam, step.y_obs[pos], X, step.W[rows], starts, beta, step.psi_star, rng,
            method=problem.sampler, sigma=step.sigma_star, stats=step.stats,
            extra=kernel_extra,
        )
    step.b_star = b_star


def response_stage(step: Step) -> np.ndarray:
    """Stage 5: the missing values drawn from the model with beta*, b_i*, sigma* and the
    family parameters drawn.

    Counts (log link): the linear predictor is capped at :func:`count_mean_cap` (counted
    in ``clipped``). With ``problem.limits = (lo, hi)`` counts and normal values are drawn
    from the model truncated to [lo, hi] (exactly, by the inverse CDF — never clipped);
    ``truncated`` is the summed probability outside [lo, hi] under the untruncated model
    (the expected number of values it would have put out of range) and
    ``truncated_rows`` the number of rows where that probability exceeds
    :data:`TRUNCATION_NOTABLE` (the range, more than the model, decides their value).
    Categorical codes are mapped back from the observed categories to 0..L-1."""
    problem, fam, rng = step.problem, step.fam, step.problem.rng
    eta = step.linear_predictor(step.miss, step.beta_star, step.b_star)
    clipped = 0
    if fam.mean_cap:
        cap = count_mean_cap(problem.y[step.obs])
        clipped = int(np.sum(eta > cap))
        eta = np.minimum(eta, cap)
    step.counts["clipped"] = clipped
    values = draw_response(fam, eta, rng, step.sigma_star, step.extra_star, problem,
                           step.counts)
    if step.categories is not None:
        values = step.categories[values.astype(np.int64)].astype(float)
    return values


#: a row whose untruncated model puts more than this probability outside the limits is
#: counted in ``truncated_rows``
TRUNCATION_NOTABLE = 0.5


def draw_response(fam, eta: np.ndarray, rng: np.random.Generator, sigma, extra,
                  problem: Problem, counts: dict) -> np.ndarray:
    """Missing values from ``fam`` at the linear predictor ``eta`` (``sigma``: the residual
    SD, a number or one per row; ``extra``: the family's drawn parameters) — from the model
    truncated to ``problem.limits`` when given (families with ``truncatable`` only; an
    error naming the variable otherwise), with ``truncated`` and ``truncated_rows``
    added to ``counts`` (see :func:`response_stage`). Every method that draws from a
    family's model (multilevel and two-stage) goes through here."""
    if problem.limits is None:
        return fam.sample(eta, rng, sigma, extra)
    if not fam.truncatable:
        raise InputError(
            f"imputing {problem.variable!r}: limits={problem.limits!r} apply to counts "
            f"and normal values, not to the {fam.name} family")
    outside = fam.outside_mass(eta, sigma, extra, problem.limits)
    counts["truncated"] = float(np.sum(outside))
    counts["truncated_rows"] = int(np.sum(outside > TRUNCATION_NOTABLE))
    return fam.sample(eta, rng, sigma, extra, limits=problem.limits)


def multilevel_step(problem: Problem, family: str) -> Draw:
    """One univariate MLMI step for ``family`` (METHOD.md §3 and §8): the five stages."""
    step = fit_stage(problem, family)
    beta_star_stage(step)
    psi_sigma_stage(step)
    b_star_stage(step)
    values = response_stage(step)
    return Draw(values, step.info())
