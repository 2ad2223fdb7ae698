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
from scipy.special import gammaln

from ._base import Family, positive_counts

CODE = 3

#: theta beyond which the overdispersion mu²/theta is below this share of mu at the mean
#: count: no overdispersion detected
NEGLIGIBLE_OVERDISPERSION = 0.01


@njit(cache=True, inline="always", error_model="numpy")
def moments(y, eta, extra):
    """log p(y | eta, theta) without -log y!, and g1..g3 (extra = [theta]).

    With p = mu / (mu + theta): g1 = theta (y - mu) / (mu + theta) = y - (y + theta) p,
    g2 = (y + theta) p (1 - p), g3 = g2 (1 - 2p)."""
    theta = extra[0]
    log_theta = np.log(theta)
    # log(mu + theta) without overflow
    if eta > log_theta:
        lmt = eta + np.log1p(np.exp(log_theta - eta))
    else:
        lmt = log_theta + np.log1p(np.exp(eta - log_theta))
    p = np.exp(eta - lmt)
    ll = (y * eta + theta * log_theta - (y + theta) * lmt
          + math.lgamma(y + theta) - math.lgamma(theta))
    s = p * (1.0 - p)
    g2 = (y + theta) * s
    return ll, y - (y + theta) * p, g2, g2 * (1.0 - 2.0 * p)


@njit(cache=True, inline="always", error_model="numpy")
def fourth(y, eta, g2, g3, extra):
    """g4 = (y + theta) (s - 6 s²), s = p (1 - p)."""
    theta = extra[0]
    s = g2 / (y + theta)
    return (y + theta) * (s - 6.0 * s * s)


class NegativeBinomial(Family):
    name = "negbin"
    link = "log"
    code = CODE
    mean_cap = True

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        positive_counts(np.asarray(y, dtype=float), name, "negative binomial")

    # extra = [log theta] on the optimiser's scale
    def n_extra(self, y):
        return 1

    def start(self, y, X, wt):
        """Poisson start for beta; theta by the method of moments on its residuals."""
        from ...glm import fit_glm
        from .poisson import FAMILY as POISSON

        beta = fit_glm(y, X, POISSON, maxit=8, tol=1e-6, weights=wt).beta
        mu = np.exp(np.clip(X @ beta, -30, 30))
        excess = float(wt @ ((y - mu) ** 2 - mu)) / float(wt @ (mu**2))
        theta = 1.0 / excess if excess > 1e-3 else 1e3
        return beta, np.array([np.log(np.clip(theta, 1e-2, 1e3))])

    def extra_names(self, levels):
        return ["theta"]

    def extra_natural(self, extra):
        return np.exp(np.asarray(extra, dtype=float))

    def extra_jacobian(self, extra):
        return np.diag(np.exp(np.asarray(extra, dtype=float)))

    def check_extra(self, extra, y=None):
        theta = float(np.exp(extra[0]))
        mean = 1.0 if y is None or len(y) == 0 else max(float(np.mean(y)), 1e-8)
        if mean / theta < NEGLIGIBLE_OVERDISPERSION:
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

    def sample(self, eta, rng, sigma=1.0, extra=None):
        """Y | eta ~ Poisson(G), G ~ Gamma(shape theta, mean mu): NB2."""
        theta = float(self.extra_natural(extra)[0])
        mu = self.inverse_link(eta)
        return rng.poisson(rng.gamma(theta, mu / theta)).astype(float)

    def irls_start(self, y):
        mu = y + 0.1
        return mu, np.log(mu)


FAMILY = NegativeBinomial()
