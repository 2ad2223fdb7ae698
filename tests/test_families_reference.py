"""The ordinal and negative-binomial GLMM families against R (issue 10, point 5).

Fixtures in ``tests/fixtures/families``: data from ``tools/make_family_data.py`` (numpy,
fixed seeds), fits from ``tools/make_family_refs.R`` — ``ordinal::clmm`` (Laplace,
``nAGQ = 1``; and ``nAGQ = 10`` adaptive Gauss–Hermite for a random intercept only) and
``glmmTMB(family = nbinom2)`` (Laplace), with ``lme4::glmer.nb`` as a second opinion.

Tolerances (issue 10): |Δβ| and |Δθ_j| ≤ max(0.01, 5 % of R's SE); random-effects
covariance entries within 0.03 + 3 % of R's value; NB θ within 3 %; mlmi's logLik never
below R's by more than 5e-3 (a better optimum is fine). Boundary fits (true slope
variance 0, R's fit singular or nearly so) are compared on logLik and fixed effects only.
For the Poisson-data case the NB θ runs to infinity: θ is not compared, but the fit must
record a warning that names Poisson. Standard errors have no tolerance in the issue;
``test_standard_errors_match_r`` uses 5 % (both R packages take them from a numerically
differentiated or Laplace-implicit Hessian at a loosely converged optimum).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, gammaln

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "families"
MANIFEST = FIXTURE_DIR / "cases.json"
THRESHOLDS = ["0|1", "1|2", "2|3"]

pytestmark = pytest.mark.skipif(not MANIFEST.exists(),
                                reason=f"family fixtures absent ({FIXTURE_DIR})")


@dataclass(frozen=True)
class RefFit:
    """One R fit of one fixture data set."""

    name: str
    key: str  # "clmm_nAGQ1", "clmm_nAGQ10", "glmmTMB", "glmer.nb", "glmer_poisson"
    meta: dict[str, Any] = field(repr=False)
    fit: dict[str, Any] = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.key}"

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def nagq(self) -> int:
        return int(self.fit["nAGQ"])

    @property
    def formula(self) -> str:
        return f"y ~ x1 + x2 + ({self.meta['re_term']})"


def _load() -> list[RefFit]:
    if not MANIFEST.exists():
        return []
    out = []
    for name, meta in json.loads(MANIFEST.read_text()).items():
        path = FIXTURE_DIR / f"{name}.json"
        if not path.exists() or not (FIXTURE_DIR / f"{name}.csv").exists():
            continue
        ref = json.loads(path.read_text())
        for key, fit in ref["fits"].items():
            out.append(RefFit(name, key, meta, fit))
    return out


ALL = _load()
# the reference fits the issue names
PRIMARY = [c for c in ALL if c.key.startswith("clmm") or c.key == "glmmTMB"]
# glmer(poisson) on the Poisson data: NB nests it as theta -> inf. (glmer.nb's logLik is
# not comparable: its Laplace approximation uses the Fisher information of the
# non-canonical NB2 log link; see tools/make_family_refs.R.)
SECOND = [c for c in ALL if c.key == "glmer_poisson" and "error" not in c.fit]


def matrix(m: dict) -> pd.DataFrame:
    """A matrix stored by make_family_refs.R as rownames/colnames/values."""
    return pd.DataFrame(np.array(m["values"], dtype=float).reshape(len(m["rownames"]), -1),
                        index=m["rownames"], columns=m["colnames"])


@cache
def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURE_DIR / f"{name}.csv", dtype={"g": str})


@cache
def _mlmi_fit(name: str, family: str, formula: str, nagq: int, response: str = "int"):
    from mlmi.glmm import fit_glmm

    data = _data(name).copy()
    if response == "categorical":
        data["y"] = pd.Categorical(data["y"].astype(str), categories=["0", "1", "2", "3"],
                                   ordered=True)
    elif response == "labels":
        labels = np.array(["none", "mild", "moderate", "severe"])
        data["y"] = pd.Categorical(labels[data["y"].to_numpy()], categories=list(labels),
                                   ordered=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what the fit warns about is checked via .warnings
        if family == "ordinal":
            return fit_glmm(formula, data, family="ordinal", nagq=nagq)
        return fit_glmm(formula, data, family=family)


def _fit(case: RefFit):
    return _mlmi_fit(case.name, case.family, case.formula, case.nagq)


class Checks:
    """Collects every comparison of one case, so a failure shows all of them."""

    def __init__(self, case: RefFit):
        self.case = case
        self.failures: list[str] = []

    def close(self, label: str, ours: float, ref: float, tol: float) -> None:
        ours, ref = float(ours), float(ref)
        if not abs(ours - ref) <= tol:  # also catches NaN
            self.failures.append(f"{label}: mlmi {ours:.6g} vs R {ref:.6g} "
                                 f"(|diff| {abs(ours - ref):.3g} > tol {tol:.3g})")

    def at_least(self, label: str, ours: float, ref: float, slack: float) -> None:
        ours, ref = float(ours), float(ref)
        if not ours >= ref - slack:
            self.failures.append(f"{label}: mlmi {ours:.6f} below R {ref:.6f} by "
                                 f"{ref - ours:.3g} (> {slack})")

    def done(self) -> None:
        assert not self.failures, f"{self.case.id} ({self.case.fit['method']}):\n  " + \
            "\n  ".join(self.failures)


def _check_fixed(chk: Checks, ours: pd.Series, ref: dict, se: dict, what: str) -> None:
    assert list(ours.index) == list(ref), (what, list(ours.index), list(ref))
    for k, v in ref.items():
        chk.close(f"{what} {k}", ours[k], v, max(0.01, 0.05 * se[k]))


def _check_cov_re(chk: Checks, ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    o, r = np.asarray(ours, float), ref.to_numpy()
    for i in range(r.shape[0]):
        for j in range(i + 1):
            chk.close(f"cov_re[{ref.index[i]}, {ref.columns[j]}]", o[i, j], r[i, j],
                      0.03 + 0.03 * abs(r[i, j]))


@pytest.mark.parametrize("case", PRIMARY, ids=[c.id for c in PRIMARY])
def test_matches_r(case: RefFit):
    f = case.fit
    assert "error" not in f, f"R's reference fit failed: {f['error']}"
    res = _fit(case)
    chk = Checks(case)
    chk.at_least("logLik", res.loglik, f["logLik"], 5e-3)
    boundary = bool(case.meta["boundary"])
    if case.family == "ordinal":
        _check_fixed(chk, res.thresholds, f["thresholds"], f["thresholds_se"], "threshold")
    _check_fixed(chk, res.fixef, f["fixef"], f["fixef_se"], "fixef")
    if not boundary:
        _check_cov_re(chk, res.cov_re, matrix(f["VarCorr"]))
    if case.family == "negbin":
        if case.meta["poisson_data"]:
            msgs = [str(w.message) for w in res.warnings]
            if not any("poisson" in m.lower() for m in msgs):
                chk.failures.append(f"no warning naming Poisson for Poisson data "
                                    f"(NB theta mlmi {res.nb_theta:.6g} vs R "
                                    f"{f['nb_theta']:.6g}); warnings: {msgs}")
        elif not boundary:
            chk.close("NB theta", res.nb_theta, f["nb_theta"], 0.03 * f["nb_theta"])
    chk.done()


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_loglik_not_below_poisson_glmm(case: RefFit):
    """On Poisson data the NB fit's optimum is never worse than lme4's Poisson GLMM
    (canonical link, so lme4's Laplace approximation is the usual one)."""
    res = _mlmi_fit(case.name, "negbin", case.formula, 1)
    chk = Checks(case)
    chk.at_least("logLik", res.loglik, case.fit["logLik"], 5e-3)
    chk.done()


@pytest.mark.parametrize("case", [c for c in PRIMARY if not c.meta["boundary"]],
                         ids=[c.id for c in PRIMARY if not c.meta["boundary"]])
def test_standard_errors_match_r(case: RefFit):
    f = case.fit
    res = _fit(case)
    ref = matrix(f["vcov"])
    if case.family == "ordinal":
        names = [*THRESHOLDS, "x1", "x2"]
        V = res.vcov_all
    else:
        names = ["(Intercept)", "x1", "x2"]
        V = res.vcov
    assert list(V.index) == names and list(V.columns) == names, (list(V.index), names)
    chk = Checks(case)
    se_ref = np.sqrt(np.diag(ref.loc[names, names].to_numpy()))
    se = np.sqrt(np.diag(V.loc[names, names].to_numpy(float)))
    for k, s, s_ref in zip(names, se, se_ref, strict=True):
        chk.close(f"SE {k}", s, s_ref, 0.05 * s_ref)
    chk.done()


def _ordinal_rs() -> list[RefFit]:
    return [c for c in PRIMARY if c.name == "ordinal_rs" and c.key == "clmm_nAGQ1"]


@pytest.mark.parametrize("case", _ordinal_rs(), ids=[c.id for c in _ordinal_rs()])
def test_ordered_categorical_response(case: RefFit):
    """An ordered categorical response gives the fit of its integer codes; the
    thresholds are named from its levels."""
    f = case.fit
    as_int = _fit(case)
    as_cat = _mlmi_fit(case.name, "ordinal", case.formula, 1, response="categorical")
    chk = Checks(case)
    assert list(as_cat.thresholds.index) == THRESHOLDS, list(as_cat.thresholds.index)
    _check_fixed(chk, as_cat.thresholds, f["thresholds"], f["thresholds_se"], "threshold")
    _check_fixed(chk, as_cat.fixef, f["fixef"], f["fixef_se"], "fixef")
    chk.at_least("logLik", as_cat.loglik, f["logLik"], 5e-3)
    chk.done()
    np.testing.assert_allclose(as_cat.thresholds.to_numpy(), as_int.thresholds.to_numpy(),
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(as_cat.fixef.to_numpy(), as_int.fixef.to_numpy(),
                               rtol=0, atol=1e-8)
    assert abs(as_cat.loglik - as_int.loglik) < 1e-8, (as_cat.loglik, as_int.loglik)

    named = _mlmi_fit(case.name, "ordinal", case.formula, 1, response="labels")
    assert list(named.thresholds.index) == ["none|mild", "mild|moderate", "moderate|severe"]
    np.testing.assert_allclose(named.thresholds.to_numpy(), as_int.thresholds.to_numpy(),
                               rtol=0, atol=1e-8)


def test_fixture_coverage():
    """The fixtures cover what issue 10 asks for, and R's reference fits all ran."""
    manifest = json.loads(MANIFEST.read_text())
    for fam in ("ordinal", "negbin"):
        names = [n for n, m in manifest.items() if m["family"] == fam]
        assert len(names) >= 4, (fam, names)
        terms = {manifest[n]["re_term"] for n in names}
        assert terms == {"1 | g", "1 + x1 | g"}, (fam, terms)
        ks = {manifest[n]["clusters"] for n in names}
        assert min(ks) <= 6 and max(ks) >= 60, (fam, ks)
        assert any(manifest[n]["boundary"] for n in names), fam
        assert all(manifest[n]["rows"] <= 3000 for n in names)
    assert any(m["poisson_data"] for m in manifest.values())
    by_name = {(c.name, c.key): c for c in PRIMARY}
    for n, m in manifest.items():
        keys = ["clmm_nAGQ1"] if m["family"] == "ordinal" else ["glmmTMB"]
        if m["family"] == "ordinal" and m["re_term"] == "1 | g":
            keys.append("clmm_nAGQ10")
        for k in keys:
            assert (n, k) in by_name, f"fixture {n}.json lacks the {k} fit"
            assert "error" not in by_name[n, k].fit, (n, k, by_name[n, k].fit.get("error"))


# ---------------------------------------------------------------------------------------
# mlmi's log-likelihood, independently: the Laplace approximation computed here with
# numpy/scipy at mlmi's own estimates, per cluster
#   log ∫ p(y_i | b) N(b; 0, Psi) db ≈ log p(y_i | b̂) + log N(b̂; 0, Psi)
#                                       + q/2 log 2π − 1/2 log det H_i,
# H_i = W_i' diag(w) W_i + Psi^-1 with w the observed information −d² log p / dη² at the
# conditional mode b̂ (as glmmTMB and ordinal::clmm; both R logLiks are reproduced by this
# code to 1e-4 at R's estimates). A deterministic computation: tolerance 1e-4.
# ---------------------------------------------------------------------------------------


def _ordinal_terms(y: np.ndarray, theta: np.ndarray):
    """log p(y | eta) and its observed information -d²/dη², cumulative logit."""
    cuts = np.r_[-np.inf, theta, np.inf]
    hi, lo = cuts[y + 1], cuts[y]

    def f(x):  # logistic density, 0 at ±inf
        F = expit(x)
        return F * (1 - F), F * (1 - F) * (1 - 2 * F)

    def logp(eta):
        return np.log(expit(hi - eta) - expit(lo - eta))

    def info(eta):
        p = expit(hi - eta) - expit(lo - eta)
        (fh, dfh), (fl, dfl) = f(hi - eta), f(lo - eta)
        d1, d2 = -(fh - fl), dfh - dfl
        return -(d2 / p - (d1 / p) ** 2)

    return logp, info


def _negbin_terms(y: np.ndarray, nb_theta: float):
    """log p(y | eta) and its observed information, NB2 with log link."""
    const = gammaln(y + nb_theta) - gammaln(nb_theta) - gammaln(y + 1)

    def logp(eta):
        mu = np.exp(eta)
        return const + nb_theta * np.log(nb_theta / (nb_theta + mu)) + \
            y * (eta - np.log(nb_theta + mu))

    def info(eta):
        mu = np.exp(eta)
        return mu * nb_theta * (nb_theta + y) / (nb_theta + mu) ** 2

    return logp, info


def laplace_loglik(data: pd.DataFrame, family: str, fixef: pd.Series, psi: np.ndarray,
                   thresholds: np.ndarray | None = None, nb_theta: float | None = None) -> float:
    """The Laplace log-likelihood of ``y ~ x1 + x2 + (1 [+ x1] | g)`` at given parameters."""
    q = psi.shape[0]
    psi_inv = np.linalg.inv(psi)
    logdet_2pi_psi = np.linalg.slogdet(2 * np.pi * psi)[1]
    total = 0.0
    for _, dg in data.groupby("g", sort=False):
        y = dg["y"].to_numpy()
        x1, x2 = dg["x1"].to_numpy(float), dg["x2"].to_numpy(float)
        W = np.column_stack([np.ones(len(dg)), x1])[:, :q]
        if family == "ordinal":
            off = fixef["x1"] * x1 + fixef["x2"] * x2
            logp, info = _ordinal_terms(y, thresholds)
        else:
            off = fixef["(Intercept)"] + fixef["x1"] * x1 + fixef["x2"] * x2
            logp, info = _negbin_terms(y.astype(float), nb_theta)

        def neg(b, off=off, W=W, logp=logp):
            return -(logp(off + W @ b).sum() - 0.5 * b @ psi_inv @ b - 0.5 * logdet_2pi_psi)

        def grad(b, off=off, W=W, logp=logp):
            h = 1e-6  # the score is cheap to difference in q <= 2 dimensions
            return np.array([(neg(b + h * e) - neg(b - h * e)) / (2 * h) for e in np.eye(q)])

        mode = minimize(neg, np.zeros(q), jac=grad, method="BFGS", options={"gtol": 1e-9})
        H = W.T @ (info(off + W @ mode.x)[:, None] * W) + psi_inv
        total += -mode.fun + 0.5 * q * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(H)[1]
    return float(total)


LAPLACE = [c for c in PRIMARY if c.nagq == 1 and not c.meta["boundary"]
           and not c.meta["poisson_data"]]


@pytest.mark.parametrize("case", LAPLACE, ids=[c.id for c in LAPLACE])
def test_loglik_is_the_laplace_approximation(case: RefFit):
    """mlmi's reported logLik equals an independent Laplace approximation at mlmi's
    reported estimates (checks the value with all constants, not just the optimum)."""
    res = _fit(case)
    psi = np.atleast_2d(np.asarray(res.cov_re, float))
    if case.family == "ordinal":
        ours = laplace_loglik(_data(case.name), "ordinal", res.fixef, psi,
                              thresholds=res.thresholds.to_numpy(float))
    else:
        ours = laplace_loglik(_data(case.name), "negbin", res.fixef, psi,
                              nb_theta=float(res.nb_theta))
    assert abs(res.loglik - ours) < 1e-4, \
        f"{case.id}: mlmi logLik {res.loglik:.6f} vs Laplace by hand {ours:.6f}"


@pytest.mark.parametrize("case", LAPLACE, ids=[c.id for c in LAPLACE])
def test_laplace_by_hand_reproduces_r(case: RefFit):
    """The check above is itself checked: at R's estimates it gives R's logLik."""
    f = case.fit
    fixef = pd.Series(f["fixef"])
    psi = matrix(f["VarCorr"]).to_numpy()
    if case.family == "ordinal":
        ll = laplace_loglik(_data(case.name), "ordinal", fixef, psi,
                            thresholds=np.array([f["thresholds"][k] for k in THRESHOLDS]))
    else:
        ll = laplace_loglik(_data(case.name), "negbin", fixef, psi, nb_theta=f["nb_theta"])
    assert abs(ll - f["logLik"]) < 1e-3, f"{case.id}: by hand {ll:.6f} vs R {f['logLik']:.6f}"
