"""Negative binomial response (NB2), log link: Var(Y) = mu + mu²/theta.

theta is estimated by maximum likelihood together with beta and Psi (the Laplace
approximation, as glmmTMB's ``nbinom2`` and lme4's ``glmer.nb``); the optimiser works on
log theta. As theta -> infinity the model becomes Poisson; a fit whose theta runs off is
reported (the Poisson family then suffices).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from scipy.special import betainc, gammaln

from ...exceptions import InputError
from ._base import Family, count_limits, discrete_truncated, positive_counts

CODE = 3

#: theta beyond which the overdispersion mu²/theta is below this share of mu at the mean
#: count: no overdispersion detected
NEGLIGIBLE_OVERDISPERSION = 0.01


@njit(cache=True, inline="always", error_model="numpy")
def _ratio(eta, log_theta):
    """r = theta / mu if eta > log theta, else mu / theta (at most 1), and log1p(r): the
    one exp and one log of a row, from which :func:`_logs` builds the rest."""
    r = np.exp(log_theta - eta) if eta > log_theta else np.exp(eta - log_theta)
    return r, np.log1p(r)


@njit(cache=True, inline="always", error_model="numpy")
def _logs(eta, log_theta, r, l1):
    """(eta - log(mu + theta), log theta - log(mu + theta), p, 1 - p) with p = mu / (mu +
    theta), each without cancellation (theta may be 1e4 times the mean at the Poisson
    edge), from r and l1 of :func:`_ratio`."""
    inv = 1.0 / (1.0 + r)
    if eta > log_theta:
        return -l1, (log_theta - eta) - l1, inv, r * inv
    return (eta - log_theta) - l1, -l1, r * inv, inv


#: counts below this take log Gamma(y + theta) - log Gamma(theta) and psi(y + theta) -
#: psi(theta) as the sums over i < y of log(theta + i) and 1 / (theta + i) (no
#: cancellation of two large log-gammas); the sums are tabulated once per theta in
#: :meth:`NegativeBinomial.kernel_extra` (extra[4:4 + SMALL], extra[4 + SMALL:]), so a
#: row looks them up instead of summing at every evaluation
SMALL = 16


@njit(cache=True, inline="always", error_model="numpy")
def _lgamma_ratio(y, theta, extra):
    """log Gamma(y + theta) - log Gamma(theta) for an integer count y."""
    if y < SMALL:
        return extra[4 + int(y)]
    return math.lgamma(y + theta) - extra[2]


@njit(cache=True, inline="always", error_model="numpy")
def moments(y, eta, extra):
    """log p(y | eta, theta) without -log y!, and g1..g3 (extra = [theta, log theta,
    lgamma(theta), digamma(theta)]: :meth:`NegativeBinomial.kernel_extra`).

    With p = mu / (mu + theta): g1 = theta (y - mu) / (mu + theta) = y - (y + theta) p,
    g2 = (y + theta) p (1 - p), g3 = g2 (1 - 2p)."""
    ll, g1, g2, g3, _, _ = moments_cached(y, eta, extra)
    return ll, g1, g2, g3


@njit(cache=True, inline="always", error_model="numpy")
def moments_cached(y, eta, extra):
    """:func:`moments` and r, log1p(r) of :func:`_ratio`, which :func:`extra_grad`
    reuses at the same eta."""
    theta = extra[0]
    r, l1 = _ratio(eta, extra[1])
    eta_lmt, lt_lmt, p, _ = _logs(eta, extra[1], r, l1)
    ll = y * eta_lmt + theta * lt_lmt + _lgamma_ratio(y, theta, extra)
    s = p * (1.0 - p)
    g2 = (y + theta) * s
    return ll, y - (y + theta) * p, g2, g2 * (1.0 - 2.0 * p), r, l1


@njit(cache=True, inline="always", error_model="numpy")
def fourth(y, eta, g2, g3, extra):
    """g4 = (y + theta) (s - 6 s²), s = p (1 - p)."""
    theta = extra[0]
    s = g2 / (y + theta)
    return (y + theta) * (s - 6.0 * s * s)


@njit(cache=True, error_model="numpy")
def digamma(x):
    """psi(x) for x > 0: recurrence up to x >= 6, then the asymptotic series (error
    < 1e-12 there; checked against scipy.special.digamma in the tests)."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    inv = 1.0 / x
    inv2 = inv * inv
    series = inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (
        1.0 / 240 - inv2 * (1.0 / 132)))))
    return acc + np.log(x) - 0.5 * inv - series


@njit(cache=True, inline="always", error_model="numpy")
def extra_grad(y, eta, extra, r, l1, idx, dl, dg1, dg2):
    """d log p, d g1, d g2 with respect to theta (natural scale), one entry, from r and
    log1p(r) as :func:`moments_cached` returned them at the same eta (no exp or log
    recomputed):

        d log p = log theta + 1 - log(mu + theta) - (y + theta) / (mu + theta)
                  + psi(y + theta) - psi(theta),
        d g1 = -p + (y + theta) s / theta,   d g2 = s - (y + theta)(1 - 2p) s / theta,
    with p = mu / (mu + theta), s = p (1 - p)."""
    theta = extra[0]
    _, lt_lmt, p, q = _logs(eta, extra[1], r, l1)
    s = p * q
    # psi(y + theta) - psi(theta) = sum_{i<y} 1 / (theta + i) for an integer count
    if y < SMALL:
        dpsi = extra[4 + SMALL + int(y)]
    else:
        dpsi = digamma(y + theta) - extra[3]
    idx[0] = 0
    # 1 - (y + theta) / (mu + theta) = p - y q / theta
    dl[0] = lt_lmt + p - y * q / theta + dpsi
    dg1[0] = -p + (y + theta) * s / theta
    dg2[0] = s - (y + theta) * (1.0 - 2.0 * p) * s / theta
    return 1


class NegativeBinomial(Family):
    name = "negbin"
    link = "log"
    code = CODE
    mean_cap = True
    truncatable = True
    newton_finish = True

    def validate_for_sampler(self, y, extra, n_eta):
        """extra = kernel_extra(theta) with theta > 0, and non-negative counts."""
        if extra is None or extra.size != self.kernel_extra(np.zeros(1)).size \
                or not extra[0] > 0:
            raise InputError(
                "family='negbin' needs extra = fit.family.kernel_extra(fit.extra) "
                f"([theta, log theta, lgamma(theta), digamma(theta), tables], theta > 0); got "
                f"{None if extra is None else extra.tolist()}")
        self.validate_response(y)
        return extra

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        positive_counts(np.asarray(y, dtype=float), name, "negative binomial")

    # extra = [log theta] on the optimiser's scale
    def n_extra(self, y):
        return 1

    def start(self, y, X, wt, fit_glm):
        """Poisson start for beta; theta by the method of moments on its residuals."""
        from .poisson import FAMILY as POISSON

        beta = fit_glm(y, X, POISSON, maxit=8, tol=1e-6, weights=wt).beta
        mu = np.exp(np.clip(X @ beta, -30, 30))
        excess = float(wt @ ((y - mu) ** 2 - mu)) / float(wt @ (mu**2))
        theta = 1.0 / excess if excess > 1e-3 else 1e3
        return beta, np.array([np.log(np.clip(theta, 1e-2, 1e3))])

    def extra_names(self, levels):
        return ["theta"]

    def kernel_extra(self, extra):
        """[theta, log theta, lgamma(theta), digamma(theta), then for y = 0..SMALL-1 the
        sums over i < y of log(theta + i), then of 1 / (theta + i)]: the same for every
        row, so the kernels do not recompute them."""
        log_theta = float(np.asarray(extra, dtype=float)[0])
        theta = float(np.exp(log_theta))
        out = np.empty(4 + 2 * SMALL)
        out[:4] = theta, log_theta, math.lgamma(theta), float(digamma(theta))
        s = d = 0.0
        for i in range(SMALL):  # in the order the per-row loop summed: same numbers
            out[4 + i] = s
            out[4 + SMALL + i] = d
            s += math.log(theta + i)
            d += 1.0 / (theta + i)
        return out

    def extra_natural(self, extra):
        return np.exp(np.asarray(extra, dtype=float))

    def extra_jacobian(self, extra):
        return np.diag(np.exp(np.asarray(extra, dtype=float)))

    def extra_upper(self, y, wt):
        """log theta <= log(1e4 * max(mean count, 1)): beyond it the overdispersion is
        below 0.01 % of the mean — the Poisson model, where the likelihood is flat in
        theta and an unbounded optimiser would wander."""
        mean = float(wt @ y) / float(wt.sum()) if len(y) else 1.0
        return np.array([np.log(1e4 * max(mean, 1.0))])

    def extra_at_boundary(self, extra, y=None):
        return [0] if self._negligible(extra, y) else []

    def _negligible(self, extra, y):
        theta = float(np.exp(extra[0]))
        mean = 1.0 if y is None or len(y) == 0 else max(float(np.mean(y)), 1e-8)
        return mean / theta < NEGLIGIBLE_OVERDISPERSION

    def check_extra(self, extra, y=None):
        theta = float(np.exp(extra[0]))
        mean = 1.0 if y is None or len(y) == 0 else max(float(np.mean(y)), 1e-8)
        if self._negligible(extra, y):
            return [f"theta = {theta:.4g} runs to infinity (overdispersion mu²/theta is "
                    f"{100 * mean / theta:.2g} % of the mean at the mean count): the data "
                    "show no overdispersion and the Poisson family suffices"]
        return []

    def loglik(self, y, eta, sigma=1.0, extra=None):
        theta = float(self.extra_natural(extra)[0])
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        lmt = np.logaddexp(eta, np.log(theta))
        return (y * eta + theta * np.log(theta) - (y + theta) * lmt
                + gammaln(y + theta) - gammaln(theta) - gammaln(y + 1.0))

    def loglik_constant(self, y, wt):
        return -float(wt @ gammaln(y + 1.0))

    def inverse_link(self, eta, extra=None):
        return np.exp(eta)

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        """Y | eta ~ Poisson(G), G ~ Gamma(shape theta, mean mu): NB2. With ``limits``
        the NB2 truncated to the integers in [lo, hi] (exact inverse CDF)."""
        theta = float(self.extra_natural(extra)[0])
        mu = self.inverse_link(eta)
        if limits is None:
            return rng.poisson(rng.gamma(theta, mu / theta)).astype(float)
        lo, hi = count_limits(limits, self.name)
        mu = np.asarray(mu, dtype=float)
        return discrete_truncated(*_tails(mu, theta), lo, hi, rng.random(mu.shape[0]))

    def outside_mass(self, eta, sigma=1.0, extra=None, limits=None):
        if limits is None:
            return super().outside_mass(eta, sigma, extra, limits)
        lo, hi = count_limits(limits, self.name)
        theta = float(self.extra_natural(extra)[0])
        mu = self.inverse_link(np.asarray(eta, dtype=float))
        cdf, sf = _tails(mu, theta)
        rows = np.arange(mu.shape[0])
        below = cdf(np.full(mu.shape[0], lo - 1.0), rows) if lo >= 1 else 0.0 * mu
        above = sf(np.full(mu.shape[0], hi), rows) if np.isfinite(hi) else 0.0 * mu
        return below + above

    def irls_start(self, y):
        mu = y + 0.1
        return mu, np.log(mu)


def _tails(mu, theta):
    """cdf(x, rows) = P(X <= x) = I_p(theta, x + 1) and sf(x, rows) = P(X > x) =
    I_{1-p}(x + 1, theta) of NB2(mu[rows], theta), p = theta / (mu + theta) (the
    regularised incomplete beta; 1 - p = mu / (mu + theta) taken without cancellation)."""
    p = theta / (mu + theta)
    p1 = mu / (mu + theta)

    def cdf(x, rows):
        return betainc(theta, x + 1.0, p[rows])

    def sf(x, rows):
        return betainc(x + 1.0, theta, p1[rows])

    return cdf, sf


FAMILY = NegativeBinomial()
