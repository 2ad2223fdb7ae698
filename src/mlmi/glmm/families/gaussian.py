"""Gaussian response, identity link: the linear mixed model (fitted exactly by
:mod:`mlmi.glmm.lmm`, not by the Laplace engine)."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from ._base import Family, check_limits

CODE = 0


class Gaussian(Family):
    name = "gaussian"
    link = "identity"
    code = CODE
    scale_parameter = True
    fitter = "lmm"
    truncatable = True

    def loglik(self, y, eta, sigma=1.0, extra=None):
        r = (np.asarray(y, dtype=float) - np.asarray(eta, dtype=float)) / sigma
        return -0.5 * r * r - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)

    def inverse_link(self, eta, extra=None):
        return np.asarray(eta, dtype=float)

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        """N(eta, sigma²); with ``limits`` the normal truncated to [lo, hi], drawn exactly
        by the inverse CDF (one uniform per row; see :func:`truncated_standard_normal`)."""
        mu = self.inverse_link(eta)
        if limits is None:
            return mu + sigma * rng.standard_normal(mu.shape)
        lo, hi = check_limits(limits, self.name)
        a = (lo - mu) / sigma
        b = (hi - mu) / sigma
        return mu + sigma * truncated_standard_normal(a, b, rng.random(mu.shape[0]))

    def outside_mass(self, eta, sigma=1.0, extra=None, limits=None):
        if limits is None:
            return super().outside_mass(eta, sigma, extra, limits)
        lo, hi = check_limits(limits, self.name)
        mu = self.inverse_link(np.asarray(eta, dtype=float))
        return ndtr((lo - mu) / sigma) + ndtr((mu - hi) / sigma)

    def irls_start(self, y):
        return y.copy(), y.copy()

    def irls_weights(self, mu):
        return np.ones_like(mu)


FAMILY = Gaussian()


def truncated_standard_normal(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Z ~ N(0, 1) truncated to [a, b], by the inverse CDF at the uniforms ``u``.

    The interval is reflected to the side of 0 where both ends are <= 0 if a > 0, so that
    the normal CDF at its ends is small and keeps its relative precision (ndtr near 1
    would lose it). Where the interval's mass underflows (both ends beyond about -37 after
    reflection) the draw uses the exponential tail approximation of the density near the
    end closest to 0, exact to O(1/b²) relative there."""
    a = np.broadcast_to(np.asarray(a, dtype=float), u.shape).copy()
    b = np.broadcast_to(np.asarray(b, dtype=float), u.shape).copy()
    flip = a > 0
    a[flip], b[flip] = -b[flip], -a[flip]
    pa, pb = ndtr(a), ndtr(b)
    mass = pb - pa
    z = ndtri(pa + u * mass)
    tiny = ~(mass > 0)
    if tiny.any():  # density ~ exp(b z) near the upper end b << 0
        bt, at = b[tiny], a[tiny]
        rate = -bt
        width = bt - at
        z[tiny] = bt + np.log1p(-u[tiny] * -np.expm1(-rate * width)) / rate
    z = np.clip(z, a, b)
    z[flip] = -z[flip]
    return z
