"""What every response family provides (as lme4's ``glmFamily``, plus what imputation needs).

A family is one module (``binomial.py``, ``negbin.py``, ...) holding a :class:`Family`
subclass and, for the families fitted by the Laplace engine, one compiled kernel
``moments(y, eta, extra)`` with the per-row log-likelihood and its derivatives with
respect to the linear predictor. The engine (Laplace objective and gradient, conditional
modes, AGQ, the posterior sampler) reaches the kernels through
:func:`mlmi.glmm.families.kernels.row_moments`; everything else goes through the methods
below. Nothing outside a family's module knows its formulas.

Vocabulary
----------
``eta``   linear predictor x'beta + w'b (one per row; ``n_eta`` per row for the
          multinomial family).
``extra`` the family's own parameters on the optimiser's (unconstrained) scale, a float
          array: empty for binomial/poisson, [log theta] for the negative binomial, the
          thresholds for the ordinal family.
``g1``    d log p / d eta;  ``g2`` = -d² log p / d eta² (the observed information, > 0 for
          the log-concave families here);  ``g3`` = d g2 / d eta;  ``g4`` = d g3 / d eta.
          For canonical links g1 = y - mu and g2 = Var(Y | eta).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...exceptions import InputError


class Family:
    """A response distribution and its link. Subclasses override what differs."""

    #: name used in ``family=...`` and in messages
    name: str = ""
    #: link function, for display
    link: str = ""
    #: integer that selects this family's kernel in compiled code (families/kernels.py)
    code: int = -1
    #: responses can be drawn from the model truncated to ``limits=(lo, hi)`` (counts and
    #: normal values); the categorical families have no range to truncate to
    truncatable: bool = False
    #: linear predictors per row (K - 1 for a K-category multinomial response)
    n_eta: int = 1
    #: whether the fixed part has its own intercept (False: the thresholds take its place)
    fixed_intercept: bool = True
    #: a residual scale sigma is estimated (gaussian): imputation draws sigma* too
    scale_parameter: bool = False
    #: counts with a log link: an imputation mean beyond ``count_mean_cap`` is clipped
    #: (and counted), so one extreme Psi* draw cannot produce astronomically large counts
    mean_cap: bool = False
    #: how the GLMM is fitted: "laplace" (glmm/laplace.py, scalar eta), "lmm" (exact
    #: linear mixed model, glmm/lmm.py) or "multinomial" (vector eta)
    fitter: str = "laplace"
    #: a cold Laplace fit runs L-BFGS-B on diagonally preconditioned parameters
    #: (optimize.start_scale), stops it near the optimum and finishes with Newton steps
    #: on the finite-difference Hessian that the covariance needs anyway
    #: (optimize.newton_polish): 36 -> 26 evaluations for the ordinal and 33 -> 24 for
    #: the negbin benchmark fits. False for binomial and poisson, whose fits (and seeded
    #: imputations, the golden masters) must not move
    newton_finish: bool = False

    # ------------------------------------------------------------------ response
    def encode(self, col: pd.Series, name: str) -> tuple[np.ndarray, list | None]:
        """The response as floats (and its levels, for categorical families), checked."""
        try:
            y = col.to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"response {name!r} is not numeric (dtype {col.dtype})") from exc
        self.validate_response(y, name)
        return y, None

    def validate_response(self, y: np.ndarray, name: str = "y") -> None:
        """Raise :class:`InputError` unless ``y`` is a valid response for this family."""
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)):
            bad = ~np.isfinite(y)
            raise InputError(
                f"response {name!r} has {int(bad.sum())} missing or non-finite value(s) "
                f"{sorted({str(v) for v in y[bad]})}; the caller must subset to the rows "
                "where it is observed"
            )

    def validate_for_sampler(self, y: np.ndarray, extra: np.ndarray | None, n_eta: int
                             ) -> np.ndarray | None:
        """Check a response (a few studies' rows) and the kernel parameters ``extra``
        given to the posterior sampler (mlmi.posterior), whose rows need not show every
        category; returns ``extra`` as the kernels take it. ``n_eta`` is the number of
        linear predictors the fixed effects give (K - 1 for the multinomial family)."""
        self.validate_response(y)
        return extra

    # ------------------------------------------------------------------ extra parameters
    def n_extra(self, y: np.ndarray) -> int:
        """Number of family parameters beyond beta and Psi (0 by default)."""
        return 0

    def start(self, y: np.ndarray, X: np.ndarray, wt: np.ndarray, fit_glm
              ) -> tuple[np.ndarray, np.ndarray]:
        """Rough start values (beta, extra) from a single-level fit; ``fit_glm`` is
        :func:`mlmi.glm.fit_glm`, passed in by the engine (the single-level IRLS uses the
        families, so a family does not import it)."""
        return fit_glm(y, X, self, maxit=8, tol=1e-6, weights=wt).beta, np.empty(0)

    def default_levels(self, y: np.ndarray) -> list | None:
        """Levels of a categorical response coded 0..K-1 (when no labels are known)."""
        return None

    def extra_names(self, levels: list | None) -> list[str]:
        """Labels of the family parameters, e.g. ``["0|1", "1|2"]`` or ``["theta"]``."""
        return []

    def extra_natural(self, extra: np.ndarray) -> np.ndarray:
        """Family parameters on their natural scale (e.g. theta from log theta)."""
        return np.asarray(extra, dtype=float)

    def kernel_extra(self, extra: np.ndarray) -> np.ndarray:
        """What the compiled row kernels receive as ``extra``: the natural parameters,
        followed by any constants derived from them that would otherwise be recomputed
        for every row (e.g. log-gamma of NB theta)."""
        return self.extra_natural(extra)

    def extra_jacobian(self, extra: np.ndarray) -> np.ndarray:
        """d(natural parameters) / d(optimiser's parameters), for the delta method."""
        extra = np.asarray(extra, dtype=float)
        h = 1e-6
        J = np.empty((extra.size, extra.size))
        for t in range(extra.size):
            e = np.zeros(extra.size)
            e[t] = h
            J[:, t] = (self.extra_natural(extra + e) - self.extra_natural(extra - e)) / (2 * h)
        return J

    def extra_upper(self, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """Upper bounds of the family parameters on the optimiser's scale (inf: none)."""
        return np.full(self.n_extra(y), np.inf)

    def extra_at_boundary(self, extra: np.ndarray, y: np.ndarray | None = None) -> list[int]:
        """Indices of family parameters at the edge of their space, held fixed there
        for the covariance and the convergence check (as a zero variance is)."""
        return []

    def check_extra(self, extra: np.ndarray, y: np.ndarray | None = None) -> list[str]:
        """Messages about the fitted family parameters (e.g. theta running to infinity)."""
        return []

    # ------------------------------------------------------------------ likelihood
    def loglik(self, y: np.ndarray, eta: np.ndarray, sigma: float = 1.0,
               extra: np.ndarray | None = None) -> np.ndarray:
        """Log-density of each observation, with all constants (as R's ``d*(log=TRUE)``)."""
        raise NotImplementedError

    def loglik_constant(self, y: np.ndarray, wt: np.ndarray) -> float:
        """The part of the log-likelihood that the compiled kernel leaves out (terms in y
        alone, such as -log y!)."""
        return 0.0

    def inverse_link(self, eta: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        """Mean of the response given the linear predictor."""
        raise NotImplementedError

    def sample(self, eta: np.ndarray, rng: np.random.Generator, sigma: float = 1.0,
               extra: np.ndarray | None = None, limits: tuple[float, float] | None = None
               ) -> np.ndarray:
        """Draw responses from the family given the linear predictor (imputation).

        ``limits=(lo, hi)``: draw from the model truncated to [lo, hi] (exactly, by the
        inverse CDF; families with ``truncatable`` only). ``None``: the untruncated model."""
        raise NotImplementedError

    def outside_mass(self, eta: np.ndarray, sigma: float = 1.0,
                     extra: np.ndarray | None = None,
                     limits: tuple[float, float] | None = None) -> np.ndarray:
        """P(Y < lo or Y > hi | eta) per row under the untruncated model: the probability
        that truncation to ``limits`` removes (0 where ``limits`` is None)."""
        eta = np.asarray(eta, dtype=float)
        if limits is None:
            return np.zeros(eta.shape[0])
        raise InputError(f"the {self.name} family has no range to truncate to "
                         f"(limits={limits!r}); limits apply to counts and normal values")

    # ------------------------------------------------------------------ single-level GLM
    def irls_start(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu, eta) to start IRLS from, as R's ``family()$initialize``."""
        raise InputError(f"family {self.name!r} has no single-level IRLS fit")

    def irls_weights(self, mu: np.ndarray) -> np.ndarray:
        """Working weights (d mu / d eta)^2 / Var(Y) — Var(Y) for canonical links."""
        raise InputError(f"family {self.name!r} has no single-level IRLS fit")

    def design_warnings(self, design) -> list[tuple[str, str]]:
        """(kind, message) pairs about the data before fitting (e.g. separation)."""
        return []

    def boundary_rows(self, eta: np.ndarray, wt: np.ndarray) -> int:
        """Rows whose fitted value is numerically on the boundary (a probability of 0
        or 1): a symptom of separation."""
        return 0

    def deviance_rows(self, y: np.ndarray, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Per-row deviance (R's ``dev.resids``), for IRLS's convergence test."""
        return -2.0 * self.loglik(y, eta)

    def clip_eta(self, eta: np.ndarray) -> np.ndarray:
        """The linear predictor kept where the mean is finite (IRLS)."""
        return eta

    def separated(self, eta: np.ndarray) -> bool:
        """Whether fitted values at the boundary (probability 0 or 1) occurred."""
        return False

    def __repr__(self) -> str:
        return f"Family({self.name!r}, link={self.link!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Family) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def positive_counts(y: np.ndarray, name: str, family: str) -> None:
    """Counts must be non-negative integers (poisson, negative binomial)."""
    if np.any(y < 0):
        vals = np.unique(y[y < 0])[:5].tolist()
        raise InputError(
            f"{family} response {name!r} must be a non-negative count; "
            f"found negative value(s) {vals}"
        )
    frac = y != np.round(y)
    if frac.any():
        vals = np.unique(y[frac])[:5].tolist()
        raise InputError(
            f"{family} response {name!r} must be integer counts; "
            f"found non-integer value(s) {vals}"
        )


def check_limits(limits, family: str) -> tuple[float, float]:
    """``limits`` as (lo, hi) floats with lo <= hi (either may be infinite); a clear error
    otherwise."""
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise InputError(f"limits={limits!r} must be a pair (lower, upper) of numbers "
                         "(-inf / inf for no bound)") from None
    if np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise InputError(f"limits={limits!r} must have lower <= upper")
    return lo, hi


def count_limits(limits, family: str) -> tuple[float, float]:
    """The integer range [ceil(lo), floor(hi)] of a count truncated to ``limits``
    (lower at least 0); an error if it holds no integer."""
    lo, hi = check_limits(limits, family)
    lo_i = max(float(np.ceil(lo)), 0.0)
    hi_i = float(np.floor(hi)) if np.isfinite(hi) else np.inf
    if lo_i > hi_i:
        raise InputError(f"limits={limits!r} contain no non-negative integer: a {family} "
                         "count cannot be drawn there")
    return lo_i, hi_i


def discrete_truncated(cdf, sf, lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    """Exact draws of integer responses truncated to [lo, hi] by the inverse CDF.

    ``cdf(x, rows)`` = P(X <= x) and ``sf(x, rows)`` = P(X > x) of the untruncated model
    for the given rows (x an integer array, may be -1); ``u`` uniform on [0, 1), one per
    row. Each row gets the smallest integer x in [lo, hi] with
    P(lo <= X <= x) >= u P(lo <= X <= hi). Where the range lies in the upper tail
    (P(X < lo) > 1/2) the comparison is made on survival probabilities, which keep their
    relative precision there (1 - F would be lost to cancellation). Where the mass of the
    range underflows to 0 the draw is the bound nearest to the model's mass.
    Found by bisection on the integers (doubling first when hi is infinite)."""
    n = u.shape[0]
    rows = np.arange(n)
    x_lo = np.full(n, lo - 1.0)
    f_lo = np.where(x_lo >= 0, cdf(x_lo, rows), 0.0)  # P(X < lo)
    s_lo = np.where(x_lo >= 0, sf(x_lo, rows), 1.0)  # P(X >= lo)
    if np.isfinite(hi):
        x_hi = np.full(n, hi)
        f_hi, s_hi = cdf(x_hi, rows), sf(x_hi, rows)
    else:
        f_hi, s_hi = np.ones(n), np.zeros(n)
    upper = f_lo > 0.5
    target_f = f_lo + u * (f_hi - f_lo)
    target_s = s_lo - u * (s_lo - s_hi)
    mass = np.where(upper, s_lo - s_hi, f_hi - f_lo)
    out = np.full(n, lo)
    empty = ~(mass > 0)
    if empty.any() and np.isfinite(hi):  # all mass above hi: hi; below lo: lo
        out[empty & ~upper] = hi
    todo = np.flatnonzero(~empty)
    if not todo.size:
        return out

    def cond(x, idx):
        return np.where(upper[idx], sf(x, idx) <= target_s[idx], cdf(x, idx) >= target_f[idx])

    a = np.full(todo.size, lo - 1.0)  # cond treated as false at lo - 1
    if np.isfinite(hi):
        b = np.full(todo.size, hi)  # cond true at hi (u < 1)
    else:
        b = np.full(todo.size, lo)
        for _ in range(80):
            ok = cond(b, todo)
            if ok.all():
                break
            b = np.where(ok, b, lo + 2.0 * (b - lo) + 1.0)
    while True:
        gap = b - a > 1
        if not gap.any():
            break
        mid = np.floor(0.5 * (a + b))
        c = cond(mid, todo)
        move = gap & c
        b = np.where(move, mid, b)
        a = np.where(gap & ~c, mid, a)
    out[todo] = b
    return out


def check_codes(y: np.ndarray, K: int, what: str) -> None:
    """y must be finite category codes 0..K-1 (an error names the first bad values)."""
    if not np.all(np.isfinite(y)):
        raise InputError("y has missing or non-finite values")
    bad = (y < 0) | (y > K - 1) | (y != np.round(y))
    if bad.any():
        raise InputError(f"{what} response y must be category codes 0..{K - 1}; found "
                         f"{np.unique(y[bad])[:5].tolist()}")
