"""Poisson response, log link (glmer's ``poisson``)."""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy.special import gammaln, xlogy

from ._base import Family, positive_counts

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

    def sample(self, eta, rng, sigma=1.0, extra=None):
        return rng.poisson(self.inverse_link(eta)).astype(float)

    def irls_start(self, y):
        mu = y + 0.1
        return mu, np.log(mu)

    def irls_weights(self, mu):
        return mu

    def deviance_rows(self, y, eta, mu):
        return 2.0 * (xlogy(y, y) - y * eta - (y - mu))

    def clip_eta(self, eta):
        return np.minimum(eta, 700.0)


FAMILY = Poisson()
