"""Bernoulli response, logit link (glmer's ``binomial``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit
from scipy.special import expit

from ...exceptions import InputError
from ._base import Family

CODE = 1

# |eta| beyond this makes a fitted probability numerically 0 or 1 (as R's glm warns)
ETA_SEPARATION = 15.0


@njit(cache=True, inline="always", error_model="numpy")
def moments(y, eta, extra):
    """(log p(y | eta), g1, g2, g3) for y in {0, 1}: g1 = y - mu, g2 = mu(1 - mu)."""
    if eta >= 0.0:
        ex = np.exp(-eta)
        mu = 1.0 / (1.0 + ex)
        sp = eta + np.log1p(ex)
    else:
        ex = np.exp(eta)
        mu = ex / (1.0 + ex)
        sp = np.log1p(ex)
    d = mu * (1.0 - mu)
    return y * eta - sp, y - mu, d, d * (1.0 - 2.0 * mu)


@njit(cache=True, inline="always", error_model="numpy")
def fourth(y, eta, g2, g3, extra):
    """g4 = d g3 / d eta = d - 6 d² (d = mu(1 - mu)), from the stored g2."""
    return g2 - 6.0 * g2 * g2


class Binomial(Family):
    name = "binomial"
    link = "logit"
    code = CODE

    def encode(self, col: pd.Series, name: str):
        """0/1, bool, or a two-level categorical whose second level is the event."""
        if pd.api.types.is_bool_dtype(col.dtype):
            return col.to_numpy(dtype=float), None
        if not pd.api.types.is_numeric_dtype(col.dtype):
            levels = (list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype)
                      else sorted(pd.unique(col), key=str))
            if len(levels) != 2:
                raise InputError(
                    f"binomial response {name!r} must have two levels; found {len(levels)}: "
                    f"{[str(v) for v in levels[:6]]}"
                )
            return (col.to_numpy() == levels[1]).astype(float), None
        return super().encode(col, name)

    def validate_response(self, y, name="y"):
        super().validate_response(y, name)
        y = np.asarray(y, dtype=float)
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            vals = np.unique(y[bad])[:5].tolist()
            raise InputError(
                f"binomial response {name!r} must be 0/1 (or bool, or a two-level "
                f"categorical); found value(s) {vals}"
            )

    def loglik(self, y, eta, sigma=1.0, extra=None):
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        return y * eta - np.logaddexp(0.0, eta)

    def inverse_link(self, eta, extra=None):
        return expit(eta)

    def sample(self, eta, rng, sigma=1.0, extra=None, limits=None):
        if limits is not None:  # no range to truncate to: the error names the family
            self.outside_mass(np.zeros(0), limits=limits)
        mu = self.inverse_link(eta)
        return (rng.random(mu.shape) < mu).astype(float)

    def irls_start(self, y):
        mu = (y + 0.5) / 2.0
        return mu, np.log(mu / (1 - mu))

    def irls_weights(self, mu):
        return mu * (1 - mu)

    def deviance_rows(self, y, eta, mu):
        return -2.0 * (y * eta - np.logaddexp(0.0, eta))

    def separated(self, eta):
        return bool(np.any(np.abs(eta) > ETA_SEPARATION))

    def design_warnings(self, design):
        return _fixed_separation(design) + _within_cluster_separation(design)

    def boundary_rows(self, eta, wt):
        mu = expit(eta)
        return int(np.sum(wt[(mu < 1e-10) | (mu > 1.0 - 1e-10)]))


FAMILY = Binomial()


def _fixed_separation(design) -> list[tuple[str, str]]:
    """Separation of a binary response by one fixed-effects predictor: complete (the
    predictor's values for y = 0 and y = 1 do not overlap) or quasi-complete (a binary
    predictor at one of whose values the response is constant, e.g. a category without
    events). The maximum-likelihood estimate of that coefficient is then infinite and
    the optimiser stops wherever the likelihood became flat."""
    y, X = design.y, design.X
    if y.min() == y.max():
        return []
    out = []
    for j, name in enumerate(design.x_names):
        v = X[:, j]
        lo, hi = v.min(), v.max()
        if lo == hi:
            continue
        v0, v1 = v[y == 0], v[y == 1]
        if v0.max() < v1.min() or v1.max() < v0.min():
            out.append(("separation", f"{name!r} completely separates the response: "
                                  "its coefficient's maximum-likelihood estimate is infinite"))
            continue
        if np.all((v == lo) | (v == hi)):
            for value in (lo, hi):
                yv = y[v == value]
                if yv.min() == yv.max():
                    out.append((
                        "separation",
                        f"quasi-complete separation: the response is always {int(yv[0])} where "
                        f"{name!r} = {value:g} ({yv.size} rows); its coefficient's "
                        "maximum-likelihood estimate is infinite"))
                    break
    return out


def _within_cluster_separation(design) -> list[tuple[str, str]]:
    """Binary response constant within a cluster, or perfectly separated by a
    random-slope predictor within a cluster: the cluster's random effects are then
    identified only through their prior (the penalty), not by its data."""
    y, W, starts = design.y, design.W, design.starts
    constant, by_slope = [], {}
    for i in range(design.k):
        seg = slice(starts[i], starts[i + 1])
        yi = y[seg]
        label = design.clusters[i]
        if yi.min() == yi.max():
            constant.append(f"{label} (all {int(yi[0])})")
            continue
        for r, name in enumerate(design.w_names):
            w = W[seg, r]
            if w.min() == w.max():
                continue
            w0, w1 = w[yi == 0], w[yi == 1]
            if w0.max() < w1.min() or w1.max() < w0.min():
                by_slope.setdefault(name, []).append(str(label))
    out = []
    if constant:
        out.append((
            "separation",
            f"within-cluster separation: the response is constant in {len(constant)} "
            f"cluster(s): {', '.join(map(str, constant[:10]))}"
            + (" …" if len(constant) > 10 else ""),
        ))
    for name, labels in by_slope.items():
        out.append((
            "separation",
            f"within-cluster separation: {name!r} perfectly separates the response in "
            f"{len(labels)} cluster(s): {', '.join(labels[:10])}"
            + (" …" if len(labels) > 10 else ""),
        ))
    return out
