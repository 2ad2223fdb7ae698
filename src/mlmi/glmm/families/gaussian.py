"""Gaussian response, identity link: the linear mixed model (fitted exactly by
:mod:`mlmi.glmm.lmm`, not by the Laplace engine)."""

from __future__ import annotations

import numpy as np

from ._base import Family

CODE = 0


class Gaussian(Family):
    name = "gaussian"
    link = "identity"
    code = CODE
    scale_parameter = True
    fitter = "lmm"

    def loglik(self, y, eta, sigma=1.0, extra=None):
        r = (np.asarray(y, dtype=float) - np.asarray(eta, dtype=float)) / sigma
        return -0.5 * r * r - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)

    def inverse_link(self, eta, extra=None):
        return np.asarray(eta, dtype=float)

    def sample(self, eta, rng, sigma=1.0, extra=None):
        mu = self.inverse_link(eta)
        return mu + sigma * rng.standard_normal(mu.shape)

    def irls_start(self, y):
        return y.copy(), y.copy()

    def irls_weights(self, mu):
        return np.ones_like(mu)


FAMILY = Gaussian()
