"""Poisson response, log link (glmer's ``poisson``)."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.special import gammaln, pdtr, pdtrc, xlogy

from ._base import Family, count_limits, discrete_truncated, positive_counts

CODE = 2


@njit(cache=True, inline="always", error_model="numpy")
def moments(y, eta, extra):
    """(y eta - mu, g1 = y - mu, g2 = mu, g3 = mu): log p without -log y!."""
    mu = np.exp(eta)
    return y * eta - mu, y - mu, mu, mu


@njit(cache=True, inline="always", error_model="numpy")
def fourth(y, eta, g2, g3, extra):
    """g4 = mu."""
    return g2


class Poisson(Family):
    name = "poisson"
    link = "log"
    code = CODE
    mean_cap = True
    truncatable = True

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        positive_counts(np.asarray(y, dtype=float), name, self.name)

    def loglik(self, y, eta, sigma=1.0, extra=None):
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        return y * eta - np.exp(eta) - gammaln(y + 1.0)

    def loglik_constant(self, y, wt):
        return -float(wt @ gammaln(y + 1.0))

    def inverse_link(self, eta, extra=None):
        return np.exp(eta)

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        """Poisson(exp(eta)); with ``limits`` the Poisson truncated to the integers in
        [lo, hi] (exact inverse CDF, one uniform per row)."""
        if limits is None:
            return rng.poisson(self.inverse_link(eta)).astype(float)
        lo, hi = count_limits(limits, self.name)
        mu = self.inverse_link(np.asarray(eta, dtype=float))
        return discrete_truncated(*_tails(mu), lo, hi, rng.random(mu.shape[0]))

    def outside_mass(self, eta, sigma=1.0, extra=None, limits=None):
        if limits is None:
            return super().outside_mass(eta, sigma, extra, limits)
        lo, hi = count_limits(limits, self.name)
        mu = self.inverse_link(np.asarray(eta, dtype=float))
        below = pdtr(lo - 1.0, mu) if lo >= 1 else np.zeros(mu.shape[0])
        above = pdtrc(hi, mu) if np.isfinite(hi) else np.zeros(mu.shape[0])
        return below + above

    def irls_start(self, y):
        mu = y + 0.1
        return mu, np.log(mu)

    def irls_weights(self, mu):
        return mu

    def deviance_rows(self, y, eta, mu):
        return 2.0 * (xlogy(y, y) - y * eta - (y - mu))

    def clip_eta(self, eta):
        return np.minimum(eta, 700.0)


def _tails(mu):
    """cdf(x, rows) = P(X <= x), sf(x, rows) = P(X > x) of Poisson(mu[rows])."""

    def cdf(x, rows):
        return pdtr(x, mu[rows])

    def sf(x, rows):
        return pdtrc(x, mu[rows])

    return cdf, sf


FAMILY = Poisson()
