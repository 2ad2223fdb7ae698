"""Fitting a two-level GLMM: arrays -> objective -> optimiser -> result.

The array-level entry point :func:`fit_arrays` is what the imputation loop calls
(no formula parsing, optional warm start); :func:`mlmi.glmm.fit_glmm` is the
lme4-style formula front end on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import InputError
from ..glm import fit_glm
from ._linalg import lambda_to_theta, theta_diagonal_index, theta_to_lambda
from .agq import agq_objective, gauss_hermite_rule
from .conventions import (
    common_warnings,
    hessian_vcov,
    identity_theta,
    lme4_gradient_check,
    safe_inverse,
)
from .design import (
    ClusterDesign,
    check_clusters,
    check_random_slopes,
    drop_rank_deficient,
    make_design,
)
from .families import Family, get_family
from .laplace import laplace_details, laplace_objective
from .lmm import cross_products, lmm_profiled
from .optimize import (
    SINGULAR_TOL,
    OptimResult,
    fit_with_boundary_checks,
    gradient_difference,
    start_scale,
)
from .result import FitWarning, GLMMResult


@dataclass
class Start:
    """Start values: fixed effects ``beta`` (named by ``x_names``, so a start from a
    fit with other columns is matched by name), lme4's ``theta`` and, optionally, the
    spherical modes ``u`` (k × q) of the same clusters."""

    beta: np.ndarray | None = None
    theta: np.ndarray | None = None
    u: np.ndarray | None = None
    x_names: list[str] | None = None
    hessian: np.ndarray | None = None  # at (beta, theta, extra): seeds the warm-start optimiser
    extra: np.ndarray | None = None  # family parameters on the optimiser's scale


def fit_arrays(
    y: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    groups: np.ndarray,
    family: str | Family,
    *,
    reml: bool = False,
    nagq: int = 1,
    start: GLMMResult | Start | dict | None = None,
    x_names: list[str] | None = None,
    w_names: list[str] | None = None,
    vcov: str = "hessian",
    check: bool = True,
    maxiter: int = 1000,
) -> GLMMResult:
    """Fit a two-level GLMM from arrays (the fast path of the imputation loop).

    Parameters
    ----------
    y : response (n,). Binomial: 0/1; poisson and negbin: non-negative integer counts;
        ordinal and multinomial: category codes 0..K-1 (multinomial: 0 is the reference
        category; pass a bound family, ``get_family("multinomial").with_levels(levels)``,
        to name the parameters by level instead of by code).
    X : fixed-effects design (n × p), including the intercept column if wanted.
    W : random-effects design (n × q): column 0 is usually the intercept, the others
        the predictors with a study-specific (random) slope.
    groups : cluster (study) label of each row, any hashable type.
    family : a name in :data:`mlmi.glmm.FAMILIES` ("gaussian", "binomial", "poisson",
        "negbin", "ordinal", "multinomial") or a :class:`Family`.
    reml : gaussian only: restricted maximum likelihood instead of ML.
    nagq : 1 = Laplace approximation (glmer's default); > 1 = adaptive Gauss–Hermite
        quadrature with ``nagq`` points per random effect (q <= 2).
    start : warm start — a previous :class:`GLMMResult` (e.g. the same variable's fit in
        the previous MICE iteration), a :class:`Start` or a dict with keys beta/theta.
    x_names, w_names : column names, used for labels and to match a warm start.
    vcov : "hessian" (lme4's default for glmer) or "fisher" (cheaper; see
        :attr:`GLMMResult.vcov`).
    check : validate the arrays (leave True unless they were validated before).
    maxiter : iteration limit of the bounded optimiser (L-BFGS-B) of the gaussian and
        Laplace fits; a fit that hits it is reported as not converged (a "convergence"
        record in ``result.warnings``). Not applied to the warm-start quasi-Newton steps
        (a ``start`` that carries a Hessian) nor to the AGQ stage of ``nagq > 1``.
    """
    fam = get_family(family)
    if reml and fam.fitter != "lmm":
        raise InputError(f"reml=True is only defined for the gaussian family, not {fam.name!r}")
    if not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise InputError(f"nagq={nagq!r} must be a positive integer")
    if vcov not in ("hessian", "fisher"):
        raise InputError(f"vcov={vcov!r}: use 'hessian' or 'fisher'")
    if not isinstance(maxiter, (int, np.integer)) or maxiter < 1:
        raise InputError(f"maxiter={maxiter!r} must be a positive integer")
    notes: list[FitWarning] = []
    if not fam.fixed_intercept:
        X, x_names, absorbed = _drop_constant_columns(X, x_names)
        if absorbed:
            notes.append(FitWarning("info", f"column(s) {absorbed} dropped: the {fam.name} "
                                    "family's thresholds take the place of an intercept"))
    design = make_design(y, X, W, groups, x_names, w_names)
    if check:
        fam.validate_response(design.y)
        check_clusters(design)
        check_random_slopes(design)
    dropped = drop_rank_deficient(design)
    if dropped:
        notes.append(FitWarning(
            "rank",
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}",
        ))
    notes.extend(FitWarning(kind, msg) for kind, msg in fam.design_warnings(design))
    st = _coerce_start(start, design)
    if fam.fitter == "lmm":
        if nagq != 1:
            raise InputError(
                "nagq > 1 is not needed for the gaussian family (its likelihood is exact)"
            )
        result = _fit_lmm(design, reml, st, maxiter)
    else:
        # a warm start from a fit whose rows could not be merged (continuous data) says
        # the same will be true now: skip the attempt
        tried = isinstance(start, GLMMResult) and not start.rows_merged
        work = design if tried else design.compressed()
        if fam.fitter == "multinomial":
            if nagq > 1:
                raise InputError(
                    f"nagq={nagq}: the multinomial family is fitted by the Laplace "
                    "approximation only (nagq=1); its (K-1)q-dimensional random effects "
                    "make quadrature impractical"
                )
            result = fam.fit(work, st, vcov, maxiter)
        elif nagq > 1:
            result = fit_agq(work, fam, nagq, st, vcov)
        else:
            result = _fit_glmm_laplace(work, fam, st, vcov, maxiter)
    result.warnings = notes + result.warnings
    result.dropped = dropped
    result.rows_merged = fam.fitter != "lmm" and work is not design
    return result


def _drop_constant_columns(X, x_names):
    """Remove constant columns (an intercept) for families whose thresholds replace it."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0:
        return X, x_names, []
    const = np.all(X == X[:1], axis=0)
    if not const.any():
        return X, x_names, []
    names = list(x_names) if x_names is not None else [f"x{j}" for j in range(X.shape[1])]
    absorbed = [names[j] for j in np.flatnonzero(const)]
    keep = np.flatnonzero(~const)
    return X[:, keep], [names[j] for j in keep], absorbed


# ---------------------------------------------------------------------- start values
def _coerce_start(start, design: ClusterDesign) -> Start:
    if start is None:
        return Start()
    if isinstance(start, GLMMResult):
        u = start.u if start.u.shape == (design.k, design.q) else None
        same = list(start.x_names) == list(design.x_names) and start.theta.size == (
            design.q * (design.q + 1) // 2)
        return Start(start.beta, start.theta, u, start.x_names,
                     start.hessian if same else None, start.extra)
    if isinstance(start, dict):
        unknown = set(start) - {"beta", "theta", "u", "x_names", "fixef", "extra"}
        if unknown:
            raise InputError(f"start has unknown key(s) {sorted(unknown)}; use beta, theta")
        beta = start.get("beta", start.get("fixef"))
        names = start.get("x_names")
        if beta is not None and hasattr(beta, "index") and names is None:
            names = list(beta.index)
        return Start(
            None if beta is None else np.asarray(beta, float),
            None if start.get("theta") is None else np.asarray(start["theta"], float),
            start.get("u"),
            names,
            extra=None if start.get("extra") is None else np.asarray(start["extra"], float),
        )
    if isinstance(start, Start):
        return start
    raise InputError(f"start must be a GLMMResult, a Start or a dict, not {type(start).__name__}")


def _start_beta_extra(st: Start, design: ClusterDesign, fam: Family
                      ) -> tuple[np.ndarray, np.ndarray]:
    """beta and the family parameters: from the warm start where it fits, else the
    family's rough single-level start."""
    n_extra = fam.n_extra(design.y)
    beta = extra = None
    if st.beta is not None:
        if st.x_names is not None:
            lookup = dict(zip(st.x_names, st.beta, strict=False))
            if all(nm in lookup for nm in design.x_names):
                beta = np.array([lookup[nm] for nm in design.x_names], float)
        elif len(st.beta) == design.p:
            beta = np.asarray(st.beta, float)
    if st.extra is not None and len(st.extra) == n_extra:
        extra = np.asarray(st.extra, float)
    if beta is None or extra is None:
        beta0, extra0 = fam.start(design.y, design.X, design.weights, fit_glm)
        beta = beta0 if beta is None else beta
        extra = extra0 if extra is None else extra
    return beta, extra


def _start_theta(st: Start, q: int) -> np.ndarray:
    nth = q * (q + 1) // 2
    if st.theta is not None and len(st.theta) == nth:
        return np.asarray(st.theta, float).copy()
    return identity_theta(q)


# ---------------------------------------------------------------------- Laplace GLMM
def _fit_glmm_laplace(
    design: ClusterDesign, fam: Family, st: Start, vcov: str, maxiter: int = 1000
) -> GLMMResult:
    """Maximise the Laplace likelihood over par = (beta, theta, extra), with the exact
    gradient from the compiled kernel (in the family parameters on their natural scale,
    carried to the optimiser's scale by the chain rule)."""
    y, X, W, starts, wt = design.y, design.X, design.W, design.starts, design.weights
    p, q, k = design.p, design.q, design.k
    nth = q * (q + 1) // 2
    beta0, extra0 = _start_beta_extra(st, design, fam)
    ne = extra0.size
    u = np.zeros((k, q)) if st.u is None else np.array(st.u, dtype=float)
    grad = np.zeros(p + nth)
    grad_extra = np.zeros(ne)
    jac = np.zeros((k, q, p + nth))
    last = {"par": None}
    failures = [0]

    def fun(par: np.ndarray) -> tuple[float, np.ndarray]:
        lam = theta_to_lambda(par[p:p + nth], q)
        alpha = par[p + nth:]
        core = par[:p + nth]
        dpar = np.zeros(p + nth) if last["par"] is None else core - last["par"]
        value, failed = laplace_objective(par[:p], lam, y, wt, X, W, starts, fam.code,
                                          fam.kernel_extra(alpha), u, grad, grad_extra,
                                          True, jac, dpar)
        last["par"] = core.copy()
        failures[0] = failed
        if not np.isfinite(value):
            last["par"] = None
            return np.inf, np.zeros(par.size)
        if not ne:
            return value, grad.copy()
        g = np.concatenate([grad, fam.extra_jacobian(alpha).T @ grad_extra])
        if not np.all(np.isfinite(g)):
            last["par"] = None
            return np.inf, np.zeros(par.size)
        return value, g

    def normalize(par: np.ndarray) -> np.ndarray:
        """Flip columns of Lambda (and of the modes u) to a non-negative diagonal."""
        lam = theta_to_lambda(par[p:p + nth], q)
        flip = np.diag(lam) < 0
        if not flip.any():
            return par
        lam[:, flip] *= -1
        u[:, flip] *= -1
        last["par"] = None  # the mode predictor's Jacobian no longer applies
        return np.concatenate([par[:p], lambda_to_theta(lam), par[p + nth:]])

    par0 = np.concatenate([beta0, _start_theta(st, q), extra0])
    diag_index = p + theta_diagonal_index(q)
    lower = np.full(par0.size, -np.inf)
    lower[diag_index] = 0.0
    upper = None
    if ne:
        upper = np.concatenate([np.full(p + nth, np.inf), fam.extra_upper(y, wt)])
        par0[p + nth:] = np.minimum(par0[p + nth:], upper[p + nth:])
    hess0 = st.hessian if st.hessian is not None and st.hessian.shape[0] == par0.size else None
    # the Newton finish, and the preconditioned cold start before it, only where the
    # family asks for it (Family.newton_finish): the binomial and poisson fits stay
    # bit-identical
    scale, n_scale = None, 0
    u_start = u.copy()

    def reset() -> None:
        """The state of a fresh start: the start's modes, nothing to predict from."""
        u[:] = u_start
        last["par"] = None

    if fam.newton_finish and hess0 is None:
        scale, n_scale = _cold_scale(design, fam, par0, u, fun)
    opt, notes = fit_with_boundary_checks(fun, par0, lower, diag_index, maxiter=maxiter,
                                          hess0=hess0, normalize=normalize, upper=upper,
                                          polish=fam.newton_finish, scale=scale, reset=reset)
    opt.n_eval += n_scale
    return _glmm_result(design, fam, opt, fun, u, vcov, notes, failures[0], nagq=1)


def _cold_scale(design: ClusterDesign, fam: Family, par0: np.ndarray, u: np.ndarray,
                fun) -> tuple[np.ndarray, int]:
    """The diagonal preconditioner of a cold fit (:func:`optimize.start_scale`) and the
    objective evaluations it took: beta's information at the start from one
    :func:`laplace_details` pass (which also leaves the start's modes in ``u`` for the
    first evaluation), the family parameters' curvature by forward differences of the
    gradient (one evaluation each, and one at the start)."""
    p, q, k = design.p, design.q, design.k
    nth = q * (q + 1) // 2
    theta0, alpha0 = par0[p:p + nth], par0[p + nth:]
    fisher = np.zeros((p, p))
    laplace_details(par0[:p], theta_to_lambda(theta0, q), design.y, design.weights,
                    design.X, design.W, design.starts, fam.code, fam.kernel_extra(alpha0),
                    u, np.zeros((k, q, q)), fisher)
    curvature = np.zeros(alpha0.size)
    if alpha0.size:
        g0 = fun(par0)[1]
        for t in range(p + nth, par0.size):
            curvature[t - p - nth] = gradient_difference(fun, par0, t, g0)[t]
    return start_scale(p, q, k, theta0, fisher, curvature), (1 + alpha0.size if alpha0.size
                                                               else 0)


def fit_agq(design: ClusterDesign, fam: Family, nagq: int, st: Start, vcov: str
            ) -> GLMMResult:
    """Maximise the adaptive Gauss–Hermite likelihood (:mod:`mlmi.glmm.agq`), starting
    from the Laplace optimum, with central-difference gradients (as lme4's nAGQ > 1)."""
    q, p = design.q, design.p
    if q > 2:
        raise InputError(f"nagq > 1 is implemented for q <= 2 random effects, not q = {q}")
    laplace = _fit_glmm_laplace(design, fam, st, "fisher")
    nodes, logw = gauss_hermite_rule(nagq, q)
    y, X, W, starts, wt = design.y, design.X, design.W, design.starts, design.weights
    u = laplace.u.copy()
    nth = q * (q + 1) // 2
    failures = [0]

    def value(par: np.ndarray) -> float:
        lam = theta_to_lambda(par[p:p + nth], q)
        extra = fam.kernel_extra(par[p + nth:])
        total, failures[0] = agq_objective(par[:p], lam, y, wt, X, W, starts, fam.code,
                                           extra, u, nodes, logw)
        return float(total)

    def fun(par: np.ndarray) -> tuple[float, np.ndarray]:
        f0 = value(par)
        g = np.empty(par.size)
        for t in range(par.size):
            h = 1e-5 * max(1.0, abs(par[t]))
            e = np.zeros(par.size)
            e[t] = h
            g[t] = (value(par + e) - value(par - e)) / (2 * h)
        value(par)
        return f0, g

    par0 = np.concatenate([laplace.beta, laplace.theta, laplace.extra])
    diag_index = p + theta_diagonal_index(q)
    lower = np.full(par0.size, -np.inf)
    lower[diag_index] = 0.0
    opt, notes = fit_with_boundary_checks(fun, par0, lower, diag_index)
    opt = OptimResult(opt.par, opt.value, opt.n_iter + laplace.n_iter,
                      opt.n_eval + laplace.n_eval, opt.converged, opt.message, opt.grad)
    value(opt.par)  # the modes, and their failures, at the optimum
    # the reported loglik is the AGQ one; modes and conditional covariances are the
    # Laplace quantities at the AGQ estimates (as lme4 reports them); the gradient is
    # itself a finite difference, so the Hessian takes a larger, central step
    return _glmm_result(design, fam, opt, fun, u, vcov, notes, failures[0], nagq=nagq,
                        hessian_step=(1e-3, True))


def _glmm_result(design, fam, opt: OptimResult, fun, u, vcov, notes, newton_failures, nagq,
                 hessian_step=(1e-4, False)):
    p, q, k = design.p, design.q, design.k
    nth = q * (q + 1) // 2
    beta, theta = opt.par[:p].copy(), opt.par[p:p + nth].copy()
    extra = opt.par[p + nth:].copy()
    ne = extra.size
    lam = theta_to_lambda(theta, q)
    cond_inv = np.zeros((k, q, q))
    fisher = np.zeros((p, p))
    laplace_details(beta, lam, design.y, design.weights, design.X, design.W,
                    design.starts, fam.code, fam.kernel_extra(extra), u, cond_inv, fisher)
    warnings_: list[FitWarning] = [FitWarning("info", m) for m in notes]
    fisher_cov = safe_inverse(fisher)
    hessian = None
    extra_cov = np.full((ne, ne), np.nan)
    joint_cov = None
    # family parameters have no Fisher-information shortcut: their covariance needs the
    # Hessian, so it is computed whenever there are any
    ok = False
    # a family parameter at the edge of its space (NB theta running to infinity) is held
    # fixed there, as lme4 holds a zero variance: the likelihood is flat in it
    held = [p + nth + t for t in fam.extra_at_boundary(extra, design.y)]
    if vcov == "hessian" or ne:
        step, central = hessian_step
        keep = list(range(p)) + [t for t in range(p + nth, p + nth + ne) if t not in held]
        joint_cov, ok, hessian = hessian_vcov(fun, opt.par, p, q, step=step,
                                               central=central, keep=keep, hold=held,
                                               hessian=opt.hessian)
        if ok and held:
            full = np.full((p + ne, p + ne), np.nan)
            idx = [t if t < p else t - nth for t in keep]
            full[np.ix_(idx, idx)] = joint_cov
            joint_cov = full
        if ok:
            extra_cov = joint_cov[p:, p:]
    if vcov == "hessian":
        beta_cov = joint_cov[:p, :p]
        if not ok:
            warnings_.append(FitWarning(
                "convergence",
                "variance-covariance matrix computed from the Hessian is not positive "
                "definite: falling back to the fixed-effects information (as lme4 does)",
            ))
            beta_cov = fisher_cov
            joint_cov = None
    else:
        beta_cov = fisher_cov
    if nagq > 1:
        hessian = None  # of the AGQ objective: not a warm start for the Laplace fits
    if not opt.converged and hessian is not None:
        opt.converged = lme4_gradient_check(opt, hessian, p, q, hold=held)
    loglik = -opt.value + fam.loglik_constant(design.y, design.weights)
    singular = bool(np.any(np.diag(lam) < SINGULAR_TOL))
    b = u @ lam.T
    res = GLMMResult(
        family=fam, reml=False, nagq=nagq, beta=beta, beta_cov=beta_cov,
        beta_cov_fisher=fisher_cov, vcov_method=vcov, theta=theta, psi=lam @ lam.T,
        b=b, u=u.copy(), cond_cov=np.einsum("ab,kbc,dc->kad", lam, cond_inv, lam),
        sigma=1.0, loglik=loglik, converged=opt.converged and newton_failures == 0,
        singular=singular, n_iter=opt.n_iter, n_eval=opt.n_eval,
        x_names=list(design.x_names), w_names=list(design.w_names),
        clusters=design.clusters, n_obs=design.n, cluster_sizes=design.sizes,
        hessian=hessian, extra=extra, extra_cov=extra_cov, joint_cov=joint_cov,
        levels=fam.default_levels(design.y),
    )
    common_warnings(res, opt, warnings_, newton_failures)
    for message in fam.check_extra(extra, design.y):
        warnings_.append(FitWarning("family", message))
    rows = np.repeat(np.arange(k), np.diff(design.starts))
    eta = design.X @ beta + np.einsum("ij,ij->i", design.W, b[rows])
    extreme = fam.boundary_rows(eta, design.weights)
    if extreme:
        warnings_.append(FitWarning(
            "separation",
            f"fitted probabilities numerically 0 or 1 occurred in {extreme} row(s): the "
            "fixed effects are (quasi-)separated and their estimates are unreliable",
        ))
    res.warnings = warnings_
    return res


# ---------------------------------------------------------------------- linear mixed model
def _fit_lmm(design: ClusterDesign, reml: bool, st: Start, maxiter: int = 1000) -> GLMMResult:
    p, q, k, n = design.p, design.q, design.k, design.n
    if n - p <= 0:
        raise InputError(f"n = {n} observations cannot identify {p} fixed effects")
    C, WX, Wy, XtX, Xty, yty = cross_products(design.y, design.X, design.W, design.starts)
    nth = q * (q + 1) // 2
    grad = np.zeros(nth)
    beta = np.zeros(p)
    u = np.zeros((k, q))
    Hinv = np.zeros((k, q, q))

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        lam = theta_to_lambda(theta, q)
        value, _, _ = lmm_profiled(lam, C, WX, Wy, XtX, Xty, yty, n, reml, grad, True,
                                   beta, u, Hinv)
        if not np.isfinite(value):
            return np.inf, np.zeros(nth)
        return value, grad.copy()

    th0 = _start_theta(st, q)
    diag_index = theta_diagonal_index(q)
    lower = np.full(nth, -np.inf)
    lower[diag_index] = 0.0
    opt, notes = fit_with_boundary_checks(fun, th0, lower, diag_index, maxiter=maxiter)
    theta = opt.par
    lam = theta_to_lambda(theta, q)
    value, r2, _ = lmm_profiled(lam, C, WX, Wy, XtX, Xty, yty, n, reml, grad, False,
                                beta, u, Hinv)
    dof = n - p if reml else n
    sigma2 = r2 / dof
    # A = R_X'R_X; vcov = sigma^2 A^{-1}
    A = XtX.copy()
    for i in range(k):
        P = lam.T @ WX[i]
        A -= P.T @ Hinv[i] @ P
    beta_cov = sigma2 * safe_inverse(A)
    warnings_ = [FitWarning("info", m) for m in notes]
    singular = bool(np.any(np.diag(lam) < SINGULAR_TOL))
    res = GLMMResult(
        family=get_family("gaussian"), reml=reml, nagq=1, beta=beta.copy(), beta_cov=beta_cov,
        beta_cov_fisher=beta_cov, vcov_method="hessian", theta=theta.copy(),
        psi=sigma2 * lam @ lam.T, b=u @ lam.T, u=u.copy(),
        cond_cov=sigma2 * np.einsum("ab,kbc,dc->kad", lam, Hinv, lam),
        sigma=float(np.sqrt(sigma2)), loglik=-value, converged=opt.converged,
        singular=singular, n_iter=opt.n_iter, n_eval=opt.n_eval,
        x_names=list(design.x_names), w_names=list(design.w_names),
        clusters=design.clusters, n_obs=n, cluster_sizes=design.sizes,
    )
    common_warnings(res, opt, warnings_)
    res.warnings = warnings_
    return res
