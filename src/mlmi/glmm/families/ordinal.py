"""Ordinal response, cumulative logit (proportional odds), parameterised as
``ordinal::clmm``: logit P(Y <= j) = theta_j - x'beta - w'b, j = 0..K-2, with no fixed
intercept (the K - 1 thresholds theta_j take its place).

The response is coded 0..K-1 (the positions of an ordered categorical's levels). The
optimiser works on alpha = (theta_0, log(theta_1 - theta_0), ...), so the thresholds stay
ordered; their covariance is carried back by the delta method.

Per row with y = k, a = theta_k - eta and c = theta_{k-1} - eta (theta_{-1} = -inf,
theta_{K-1} = +inf), log p = log(F(a) - F(c)) with F the logistic cdf. Writing
D = F(a) - F(c) and r_m = (F^(m)(a) - F^(m)(c)) / D (F^(m) the m-th derivative of F),
the derivatives with respect to eta are

    g1 = -r_1,   g2 = r_1² - r_2,   g3 = 2 r_1³ - 3 r_1 r_2 + r_3,
    g4 = 6 r_1⁴ - 12 r_1² r_2 + 3 r_2² + 4 r_1 r_3 - r_4,

and log p is concave in eta (g2 > 0), so the conditional modes are unique.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit
from scipy.special import expit

from ...exceptions import InputError
from ._base import Family, check_codes

CODE = 4
MAX_CATEGORIES = 30


@njit(cache=True, inline="always", error_model="numpy")
def _cdf_terms(x, ex):
    """F(x), 1 - F(x) and F', F'', F''', F'''' at x (logistic), without cancellation,
    given ex = exp(-|x|) (their one transcendental function)."""
    inv = 1.0 / (1.0 + ex)
    if x >= 0.0:
        F = inv
        G = ex * inv
    else:
        F = ex * inv
        G = inv
    f = F * G
    f1 = f * (G - F)
    f2 = f - 6.0 * f * f
    f3 = f1 * (1.0 - 12.0 * f)
    return F, G, f, f1, f2, f3


@njit(cache=True, inline="always", error_model="numpy")
def _row(y, eta, extra):
    """(log p, r1, r2, r3, r4) of one row; extra holds the K - 1 ordered thresholds."""
    ll, r1, r2, r3, r4, _, _ = _row_ex(y, eta, extra)
    return ll, r1, r2, r3, r4


@njit(cache=True, inline="always", error_model="numpy")
def _row_ex(y, eta, extra):
    """_row and exp(-|a|), exp(-|c|) at its two boundary points (0 where absent), which
    :func:`extra_grad` reuses."""
    k = int(y)
    K1 = extra.shape[0]
    has_upper = k < K1
    has_lower = k > 0
    Fa = 1.0
    Ga = 0.0
    fa = f1a = f2a = f3a = 0.0
    Fc = 0.0
    Gc = 1.0
    fc = f1c = f2c = f3c = 0.0
    ex_a = ex_c = 0.0
    if has_upper:
        x = extra[k] - eta
        ex_a = np.exp(-abs(x))
        Fa, Ga, fa, f1a, f2a, f3a = _cdf_terms(x, ex_a)
    if has_lower:
        x = extra[k - 1] - eta
        ex_c = np.exp(-abs(x))
        Fc, Gc, fc, f1c, f2c, f3c = _cdf_terms(x, ex_c)
    # D = F(a) - F(c) = (1 - F(c)) - (1 - F(a)): take the form without cancellation
    D = Fa - Fc if Fa < 0.5 else Gc - Ga
    if not D > 0.0:
        return -np.inf, 0.0, 0.0, 0.0, 0.0, ex_a, ex_c
    inv = 1.0 / D
    return (np.log(D), (fa - fc) * inv, (f1a - f1c) * inv, (f2a - f2c) * inv,
            (f3a - f3c) * inv, ex_a, ex_c)


@njit(cache=True, inline="always", error_model="numpy")
def moments(y, eta, extra):
    ll, r1, r2, r3, _ = _row(y, eta, extra)
    return ll, -r1, r1 * r1 - r2, 2.0 * r1 * r1 * r1 - 3.0 * r1 * r2 + r3


@njit(cache=True, inline="always", error_model="numpy")
def moments_cached(y, eta, extra):
    """:func:`moments` and the two values :func:`extra_grad` needs at this eta."""
    ll, r1, r2, r3, _, ex_a, ex_c = _row_ex(y, eta, extra)
    return ll, -r1, r1 * r1 - r2, 2.0 * r1 * r1 * r1 - 3.0 * r1 * r2 + r3, ex_a, ex_c


@njit(cache=True, inline="always", error_model="numpy")
def fourth(y, eta, g2, g3, extra):
    _, r1, r2, r3, r4 = _row(y, eta, extra)
    return 6.0 * r1**4 - 12.0 * r1 * r1 * r2 + 3.0 * r2 * r2 + 4.0 * r1 * r3 - r4


@njit(cache=True, inline="always", error_model="numpy")
def extra_grad(y, eta, extra, ex_a, ex_c, idx, dl, dg1, dg2):
    """Partial derivatives of log p, g1 and g2 of one row with respect to the thresholds
    it involves (theta_k above, theta_{k-1} below, for y = k), from exp(-|a|), exp(-|c|)
    as :func:`moments_cached` returned them at the same eta (no exponential
    recomputed); their indices go to ``idx``. With x the boundary point (a or c), s = +1
    for a and -1 for c:

        d log p = s f(x) / D,   d g1 = s (r1 f(x) - f'(x)) / D,
        d g2 = s (2 r1 (f'(x) - r1 f(x)) - (f''(x) - r2 f(x))) / D.
    Returns the number of entries filled (0, 1 or 2)."""
    k = int(y)
    K1 = extra.shape[0]
    Fa, Ga, fa, f1a, f2a = 1.0, 0.0, 0.0, 0.0, 0.0
    Fc, Gc, fc, f1c, f2c = 0.0, 1.0, 0.0, 0.0, 0.0
    if k < K1:
        Fa, Ga, fa, f1a, f2a, _ = _cdf_terms(extra[k] - eta, ex_a)
    if k > 0:
        Fc, Gc, fc, f1c, f2c, _ = _cdf_terms(extra[k - 1] - eta, ex_c)
    D = Fa - Fc if Fa < 0.5 else Gc - Ga
    if not D > 0.0:
        return 0
    inv = 1.0 / D
    r1 = (fa - fc) * inv
    r2 = (f1a - f1c) * inv
    m = 0
    if k < K1:  # theta_k, the upper boundary (s = +1)
        idx[m] = k
        dl[m] = fa * inv
        dg1[m] = (r1 * fa - f1a) * inv
        dg2[m] = (2.0 * r1 * (f1a - r1 * fa) - (f2a - r2 * fa)) * inv
        m += 1
    if k > 0:  # theta_{k-1}, the lower boundary (s = -1)
        idx[m] = k - 1
        dl[m] = -fc * inv
        dg1[m] = -(r1 * fc - f1c) * inv
        dg2[m] = -(2.0 * r1 * (f1c - r1 * fc) - (f2c - r2 * fc)) * inv
        m += 1
    return m


def thresholds_from_alpha(alpha: np.ndarray) -> np.ndarray:
    """theta_0 = alpha_0, theta_j = theta_{j-1} + exp(alpha_j)."""
    alpha = np.asarray(alpha, dtype=float)
    return np.cumsum(np.concatenate([alpha[:1], np.exp(alpha[1:])]))


def alpha_from_thresholds(theta: np.ndarray) -> np.ndarray:
    theta = np.asarray(theta, dtype=float)
    return np.concatenate([theta[:1], np.log(np.diff(theta))])


class Ordinal(Family):
    name = "ordinal"
    link = "logit (cumulative)"
    code = CODE
    fixed_intercept = False
    newton_finish = True

    def encode(self, col: pd.Series, name: str):
        """An ordered (or any) categorical: codes of its levels, in level order; integer
        codes: 0..K-1 after mapping the sorted distinct values. Empty levels of a
        categorical are an error (their threshold is not identified)."""
        if isinstance(col.dtype, pd.CategoricalDtype):
            levels = list(col.cat.categories)
            codes = col.cat.codes.to_numpy()
            if np.any(codes < 0):
                raise InputError(f"ordinal response {name!r} has missing values; subset first")
            counts = np.bincount(codes, minlength=len(levels))
            empty = [str(levels[j]) for j in np.flatnonzero(counts == 0)]
            if empty:
                raise InputError(
                    f"ordinal response {name!r} has no observation in level(s) {empty} of "
                    f"{[str(v) for v in levels]}: drop the unused level(s) "
                    "(col.cat.remove_unused_categories()) or merge them with a neighbour"
                )
            y = codes.astype(float)
        else:
            try:
                values = col.to_numpy(dtype=float)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"ordinal response {name!r} must be an ordered categorical or integer "
                    f"codes, not dtype {col.dtype}") from exc
            if not np.all(np.isfinite(values)):
                raise InputError(f"ordinal response {name!r} has missing or non-finite "
                                 "values; subset first")
            if np.any(values != np.round(values)):
                bad = np.unique(values[values != np.round(values)])[:5].tolist()
                raise InputError(f"ordinal response {name!r} must be integer codes or an "
                                 f"ordered categorical; found non-integer value(s) {bad}")
            levels = sorted(np.unique(values).tolist())
            y = np.searchsorted(np.asarray(levels), values).astype(float)
            levels = [int(v) for v in levels]
        self.validate_response(y, name)
        return y, levels

    def validate_for_sampler(self, y, extra, n_eta):
        """The K - 1 thresholds, increasing, and codes 0..K-1 (a study may lack some)."""
        if extra is None or extra.size < 1:
            raise InputError("family='ordinal' needs extra = the K - 1 thresholds "
                             "(fit.family.kernel_extra(fit.extra))")
        if np.any(np.diff(extra) <= 0):
            raise InputError(f"extra (ordinal thresholds) must be increasing; got "
                             f"{extra.tolist()}")
        check_codes(y, extra.size + 1, "ordinal")
        return extra

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        y = np.asarray(y, dtype=float)
        if np.any(y < 0) or np.any(y != np.round(y)):
            raise InputError(f"ordinal response {name!r} must be coded 0..K-1")
        K = int(y.max()) + 1 if y.size else 0
        if K < 2 or np.unique(y).size < 2:
            raise InputError(
                f"ordinal response {name!r} has one observed category "
                f"({sorted(set(y.tolist()))}); an ordinal model needs at least two")
        if K > MAX_CATEGORIES:
            raise InputError(f"ordinal response {name!r} has {K} categories; more than "
                             f"{MAX_CATEGORIES} is not an ordinal variable — treat it as "
                             "continuous")
        missing = sorted(set(range(K)) - set(np.unique(y).astype(int).tolist()))
        if missing:
            raise InputError(
                f"ordinal response {name!r} has no observation in category code(s) "
                f"{missing} of 0..{K - 1}: the thresholds around an empty category are not "
                "identified; merge it with a neighbour")

    def n_extra(self, y):
        return int(np.max(y)) if len(y) else 0

    def start(self, y, X, wt, fit_glm):
        """beta = 0; thresholds at the logits of the cumulative proportions."""
        K = int(np.max(y)) + 1
        counts = np.bincount(y.astype(np.int64), weights=wt, minlength=K)
        cum = np.cumsum(counts)[:-1] / counts.sum()
        theta = np.log(cum / (1.0 - cum))
        return np.zeros(X.shape[1]), alpha_from_thresholds(theta)

    def default_levels(self, y):
        return list(range(int(np.max(y)) + 1)) if len(y) else []

    def extra_names(self, levels):
        if levels is None:
            return []
        return [f"{levels[j]}|{levels[j + 1]}" for j in range(len(levels) - 1)]

    def extra_natural(self, extra):
        return thresholds_from_alpha(extra)

    def extra_jacobian(self, extra):
        """d theta / d alpha (lower triangular)."""
        extra = np.asarray(extra, dtype=float)
        K1 = extra.size
        J = np.zeros((K1, K1))
        J[:, 0] = 1.0
        for j in range(1, K1):
            J[j:, j] = np.exp(extra[j])
        return J

    def cumulative(self, eta, extra):
        """P(Y <= j | eta), rows × (K - 1)."""
        theta = self.extra_natural(extra)
        return expit(theta[None, :] - np.asarray(eta, dtype=float)[:, None])

    def probabilities(self, eta, extra):
        """P(Y = k | eta), rows × K."""
        cum = self.cumulative(eta, extra)
        n = cum.shape[0]
        full = np.hstack([np.zeros((n, 1)), cum, np.ones((n, 1))])
        return np.diff(full, axis=1)

    def loglik(self, y, eta, sigma=1.0, extra=None):
        """log P(Y = y | eta) = log(F(a) - F(c)), taken as (1 - F(c)) - (1 - F(a)) where
        F(a) > 1/2, so that no category's probability is lost to cancellation."""
        theta = np.concatenate([[-np.inf], self.extra_natural(extra), [np.inf]])
        y = np.asarray(y, dtype=np.int64)
        eta = np.asarray(eta, dtype=float)
        a, c = theta[y + 1] - eta, theta[y] - eta
        Fa, Fc = expit(a), expit(c)
        D = np.where(Fa < 0.5, Fa - Fc, expit(-c) - expit(-a))
        with np.errstate(divide="ignore"):
            return np.log(D)

    def inverse_link(self, eta, extra=None):
        """Expected category code E[Y | eta] (0..K-1 scale)."""
        prob = self.probabilities(np.atleast_1d(eta), extra)
        return prob @ np.arange(prob.shape[1])

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        if limits is not None:  # no range to truncate to: the error names the family
            self.outside_mass(np.zeros(0), limits=limits)
        cum = self.cumulative(np.atleast_1d(eta), extra)
        u = rng.random(cum.shape[0])
        return np.sum(u[:, None] > cum, axis=1).astype(float)


FAMILY = Ordinal()
