"""Simulate the data sets behind the ordinal and negative-binomial GLMM reference fixtures.

    python tools/make_family_data.py [tests/fixtures/families]

Writes ``<name>.csv`` (columns ``g`` cluster label, ``x1``, ``x2``, ``y``) for every case
below and ``cases.json`` (family, random-effects term R fits, true parameters, seed),
which ``tools/make_family_refs.R`` reads to fit ``ordinal::clmm`` / ``glmmTMB`` and write
``<name>.json``. Every data set flows from its own fixed numpy seed, so rerunning this
script reproduces the CSVs bit for bit.

Models (w = (1, x1), b_i ~ N(0, Psi) per cluster i):

* ordinal, cumulative logit as ``ordinal::clmm``: logit P(Y <= j) = theta_j - x'beta - w'b,
  j = 0, 1, 2, Y coded 0..3 (drawn as Y* = x'beta + w'b + logistic noise, Y = #{j: Y* > theta_j}).
* negbin, NB2 with log link: mu = exp(beta0 + x'beta + w'b), Var(Y) = mu + mu^2/theta
  (Y ~ Gamma-Poisson with shape theta); the ``poisson`` case draws Poisson counts
  (theta = infinity), which an NB fit must recognise.

Cases per family: random intercept only (fitted with ``(1 | g)``, also at nAGQ = 10 for
clmm), random intercept + slope, few clusters (6), many clusters (60), strong
heterogeneity, and a boundary case (true slope variance 0, fitted with a slope, so R's
fit is singular or nearly so). All files stay under 3 000 rows.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ORD_THETA = [-1.0, 0.5, 2.0]          # thresholds theta_0|1, theta_1|2, theta_2|3
ORD_BETA = [0.8, -0.5]                # x1, x2
NB_BETA = [0.5, 0.4, -0.3]            # (Intercept), x1, x2

# name -> (family, clusters, rows per cluster, x1 "binary" or "cont" (standard normal),
#          Psi as (var intercept, cov, var slope), RE term R fits, NB theta (None: Poisson), seed)
CASES: dict[str, tuple] = {
    "ordinal_ri": ("ordinal", 20, 60, "binary", (0.6, 0.0, 0.0), "1 | g", None, 1001),
    "ordinal_rs": ("ordinal", 20, 75, "binary", (0.5, -0.1, 0.4), "1 + x1 | g", None, 1002),
    "ordinal_k6": ("ordinal", 6, 250, "binary", (0.5, 0.1, 0.3), "1 + x1 | g", None, 1003),
    "ordinal_k60": ("ordinal", 60, 40, "cont", (0.4, 0.05, 0.2), "1 + x1 | g", None, 1004),
    "ordinal_strong": ("ordinal", 20, 75, "binary", (2.5, -1.2, 2.0), "1 + x1 | g", None, 1005),
    "ordinal_boundary": ("ordinal", 15, 100, "binary", (0.5, 0.0, 0.0), "1 + x1 | g", None, 1206),
    "negbin_ri": ("negbin", 20, 60, "binary", (0.5, 0.0, 0.0), "1 | g", 2.0, 2001),
    "negbin_rs": ("negbin", 20, 75, "binary", (0.4, -0.1, 0.3), "1 + x1 | g", 3.0, 2002),
    "negbin_k6": ("negbin", 6, 250, "binary", (0.4, 0.1, 0.2), "1 + x1 | g", 1.5, 2003),
    "negbin_k60": ("negbin", 60, 40, "cont", (0.3, 0.05, 0.15), "1 + x1 | g", 5.0, 2004),
    "negbin_strong": ("negbin", 20, 75, "binary", (1.5, -0.6, 1.0), "1 + x1 | g", 1.0, 2005),
    "negbin_boundary": ("negbin", 15, 100, "binary", (0.4, 0.0, 0.0), "1 + x1 | g", 2.0, 2406),
    "negbin_poisson": ("negbin", 20, 75, "binary", (0.4, -0.1, 0.3), "1 + x1 | g", None, 2007),
}


def _draw_b(psi: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k cluster effects (intercept, slope) from N(0, Psi); Psi may be singular."""
    vals, vecs = np.linalg.eigh(psi)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    return rng.standard_normal((k, 2)) @ root.T


def simulate(name: str) -> pd.DataFrame:
    """The data set of case ``name`` (columns g, x1, x2, y)."""
    family, k, m, x1_kind, psi3, _, nb_theta, seed = CASES[name]
    psi = [[psi3[0], psi3[1]], [psi3[1], psi3[2]]]
    rng = np.random.default_rng(seed)
    n = k * m
    g = np.repeat(np.arange(1, k + 1), m)
    if x1_kind == "binary":
        x1 = rng.binomial(1, 0.45, n).astype(float)
    else:
        x1 = np.round(rng.standard_normal(n), 4)
    x2 = np.round(rng.normal(0.0, 1.0, n), 4)
    b = _draw_b(np.asarray(psi, float), k, rng)[g - 1]
    re = b[:, 0] + b[:, 1] * x1
    if family == "ordinal":
        eta = ORD_BETA[0] * x1 + ORD_BETA[1] * x2 + re
        latent = eta + rng.logistic(size=n)
        y = (latent[:, None] > np.asarray(ORD_THETA)[None, :]).sum(axis=1)
        if np.bincount(y, minlength=4).min() == 0:
            raise RuntimeError(f"{name}: an empty category; change its seed")
    else:
        mu = np.exp(NB_BETA[0] + NB_BETA[1] * x1 + NB_BETA[2] * x2 + re)
        if nb_theta is None:
            y = rng.poisson(mu)
        else:
            y = rng.poisson(rng.gamma(nb_theta, mu / nb_theta))
    x1_out = x1.astype(int) if x1_kind == "binary" else x1
    return pd.DataFrame({"g": [f"c{i:02d}" for i in g], "x1": x1_out, "x2": x2, "y": y})


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (family, k, _m, x1_kind, psi, term, nb_theta, seed) in CASES.items():
        d = simulate(name)
        assert len(d) <= 3000
        _write_atomic(out / f"{name}.csv", d.to_csv(index=False))
        truth: dict = {"psi": [[psi[0], psi[1]], [psi[1], psi[2]]]}
        if family == "ordinal":
            truth |= {"thresholds": dict(zip(["0|1", "1|2", "2|3"], ORD_THETA, strict=True)),
                      "fixef": dict(zip(["x1", "x2"], ORD_BETA, strict=True))}
        else:
            truth |= {"fixef": dict(zip(["(Intercept)", "x1", "x2"], NB_BETA, strict=True)),
                      "nb_theta": nb_theta if nb_theta is not None else "Inf"}
        manifest[name] = {
            "family": family, "re_term": term, "formula": f"y ~ x1 + x2 + ({term})",
            "clusters": k, "rows": len(d), "seed": seed,
            "x1": "binary" if x1_kind == "binary" else "continuous",
            "boundary": name.endswith("_boundary"), "poisson_data": name.endswith("_poisson"),
            "truth": truth,
        }
        counts = np.bincount(d["y"]) if family == "ordinal" else d["y"].describe()[["mean", "max"]]
        print(name, len(d), np.round(np.asarray(counts, float), 2).tolist())
    _write_atomic(out / "cases.json", json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests" / "fixtures" / "families")
