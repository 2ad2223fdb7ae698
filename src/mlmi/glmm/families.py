"""Response families of the two-level GLMM, each with its canonical link.

A family is a small object (as in lme4's ``glmFamily``): it knows how to check a
response, the conditional log-density, and the inverse link. The numerical
kernels in :mod:`mlmi.glmm.laplace` use the integer ``code`` to select the same
formulas in compiled code; only canonical links are supported, so the observed
and expected information coincide and the Laplace objective needs only
``d(eta) = Var(Y | eta)`` and its derivative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, gammaln

from ..exceptions import InputError

GAUSSIAN, BINOMIAL, POISSON = 0, 1, 2


@dataclass(frozen=True)
class Family:
    """A response distribution with its canonical link.

    Attributes
    ----------
    name : "gaussian", "binomial" or "poisson".
    link : "identity", "logit" or "log".
    code : integer used by the compiled kernels.
    """

    name: str
    link: str
    code: int

    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """Mean of the response given the linear predictor ``eta``."""
        if self.code == BINOMIAL:
            return expit(eta)
        if self.code == POISSON:
            return np.exp(eta)
        return np.asarray(eta, dtype=float)

    def loglik(self, y: np.ndarray, eta: np.ndarray, sigma: float = 1.0) -> np.ndarray:
        """Log-density of each observation, with all constants (as R's ``d*(log=TRUE)``)."""
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        if self.code == BINOMIAL:
            return y * eta - np.logaddexp(0.0, eta)
        if self.code == POISSON:
            return y * eta - np.exp(eta) - gammaln(y + 1.0)
        r = (y - eta) / sigma
        return -0.5 * r * r - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)

    def sample(self, eta: np.ndarray, rng: np.random.Generator, sigma: float = 1.0) -> np.ndarray:
        """Draw responses from the family given the linear predictor."""
        mu = self.inverse_link(eta)
        if self.code == BINOMIAL:
            return (rng.random(mu.shape) < mu).astype(float)
        if self.code == POISSON:
            return rng.poisson(mu).astype(float)
        return mu + sigma * rng.standard_normal(mu.shape)

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
        if self.code == BINOMIAL:
            bad = ~np.isin(y, (0.0, 1.0))
            if bad.any():
                vals = np.unique(y[bad])[:5].tolist()
                raise InputError(
                    f"binomial response {name!r} must be 0/1 (or bool, or a two-level "
                    f"categorical); found value(s) {vals}"
                )
        elif self.code == POISSON:
            if np.any(y < 0):
                vals = np.unique(y[y < 0])[:5].tolist()
                raise InputError(
                    f"poisson response {name!r} must be a non-negative count; "
                    f"found negative value(s) {vals}"
                )
            frac = y != np.round(y)
            if frac.any():
                vals = np.unique(y[frac])[:5].tolist()
                raise InputError(
                    f"poisson response {name!r} must be integer counts; "
                    f"found non-integer value(s) {vals}"
                )


FAMILIES = {
    "gaussian": Family("gaussian", "identity", GAUSSIAN),
    "binomial": Family("binomial", "logit", BINOMIAL),
    "poisson": Family("poisson", "log", POISSON),
}


def get_family(family: str | Family) -> Family:
    """Look up a family by name (``"gaussian"``, ``"binomial"``, ``"poisson"``)."""
    if isinstance(family, Family):
        return family
    if not isinstance(family, str) or family.lower() not in FAMILIES:
        raise InputError(
            f"family={family!r} is not supported; use one of {sorted(FAMILIES)}"
        )
    return FAMILIES[family.lower()]
