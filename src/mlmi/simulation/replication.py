"""One replication of one scenario: generate, ampute, analyse with every method.

Methods (METHOD.md §4): REF (the complete data before amputation), CCA (complete
cases), STI (stratified imputation: study dummies, logreg / pmm), MLMI (the paper's
method, random slope for y in the imputation models) and 2STG (two-stage imputation).
The analysis model is y ~ x1 + x2 + (1 + x1 | st): logistic for a binary outcome
(Laplace ML, as glmer), linear for a continuous one (REML, lmer's default). Imputed
data are pooled by Rubin's rules; the random-effect SDs omega0, omega1 are averaged over
the imputations as in the paper (the median is kept too).

Categorical x1 (scenario key ``x1`` = "ordinal" / "nominal", issue 11): the analysis
model has x1's categories as dummies and the random slope of the generating model,
``y ~ x1_1 + x1_2 + x1_3 + x2 + (1 + x1_any | st)`` with ``x1_k = [x1 = k]`` and
``x1_any = [x1 >= 1]`` (parameters a0, a1.1, a1.2, a1.3, a2, omega0, omega1). The
imputation methods per variable (:data:`CATEGORICAL_METHODS`): STI ``polr`` (ordinal) or
``polyreg`` (nominal) with the study as dummies and ``pmm`` for x2; MLMI ``2l.polr`` /
``2l.polyreg`` and ``2l.pois`` with the random slopes of :data:`CATEGORICAL_RANDOM`;
2STG ``2l.2stage.polr`` / ``2l.2stage.polyreg`` and ``2l.2stage.pois``.
"""

from __future__ import annotations

import time
import traceback
import warnings
import zlib

import numpy as np
import pandas as pd

from .design import A1_CATEGORICAL, ampute, generate, truth
from .grid import scenario_id, validate, x1_type

METHODS = ("REF", "CCA", "STI", "MLMI", "2STG")
#: MLMI with a given draw of Psi* (mlmi.impute's psi_draw): "MLMI[auto]", "MLMI[paper]",
#: "MLMI[corrected]", "MLMI[ml-normal]". They share MLMI's seed (common random numbers, so
#: their differences carry less Monte Carlo noise). Plain "MLMI" is the paper's method and
#: keeps the paper's draw whatever impute's default (so "MLMI" == "MLMI[paper]").
PSI_METHODS = tuple(f"MLMI[{d}]" for d in ("auto", "paper", "corrected", "ml-normal"))
#: categorical x1 only: MLMI with the paper's random slope for y in x1's model whatever
#: the type (for a nominal x1: category-specific random intercepts and slopes, 2 x 3 = 6
#: random effects per study; 2l.polyreg keeps the slope only with enough observing
#: studies, else drops it and counts it). Shares MLMI's seed.
SLOPE_METHOD = "MLMI[slope]"
ALL_METHODS = METHODS + PSI_METHODS + (SLOPE_METHOD,)
PARAMETERS = ("a0", "a1", "a2", "omega0", "omega1")
FORMULA = "y ~ x1 + x2 + (1 + x1 | st)"
_STRATEGY = {"STI": "stratified", "MLMI": "mlmi", "2STG": "2stage"}
#: categorical x1: analysis model and its parameters
DUMMIES = [f"x1_{k + 1}" for k in range(A1_CATEGORICAL.size)]
FORMULA_CATEGORICAL = f"y ~ {' + '.join(DUMMIES)} + x2 + (1 + x1_any | st)"
PARAMETERS_CATEGORICAL = ("a0", *(f"a1.{k + 1}" for k in range(A1_CATEGORICAL.size)), "a2",
                          "omega0", "omega1")
#: categorical x1: imputation method per (comparator, x1 type) and variable
CATEGORICAL_METHODS = {
    ("STI", "ordinal"): {"x1": "polr", "x2": "pmm"},
    ("STI", "nominal"): {"x1": "polyreg", "x2": "pmm"},
    ("MLMI", "ordinal"): {"x1": "2l.polr", "x2": "2l.pois"},
    ("MLMI", "nominal"): {"x1": "2l.polyreg", "x2": "2l.pois"},
    ("2STG", "ordinal"): {"x1": "2l.2stage.polr", "x2": "2l.2stage.pois"},
    ("2STG", "nominal"): {"x1": "2l.2stage.polyreg", "x2": "2l.2stage.pois"},
}
#: categorical x1: MLMI's random slopes. The paper's random slope for y in both models
#: for an ordinal x1 (one shared random effect per term: q = 2); for a nominal x1 a
#: random slope for y would give 2 x 3 = 6 correlated random effects per study, weakly
#: identified with 10 studies (METHOD.md §8: start with random intercepts), so x1's model
#: has category-specific random intercepts only.
CATEGORICAL_RANDOM = {"ordinal": {"x1": ["y"], "x2": ["y"]},
                      "nominal": {"x2": ["y"]}}


def parameters(scenario: dict) -> tuple[str, ...]:
    """The analysis model's parameters in a scenario."""
    return PARAMETERS if x1_type(scenario) == "binary" else PARAMETERS_CATEGORICAL


def add_x1_dummies(data: pd.DataFrame) -> pd.DataFrame:
    """A copy with the categorical x1's analysis columns: x1_k = [x1 = k] (k = 1..3) and
    x1_any = [x1 >= 1] (NaN where x1 is missing). x1 may hold codes or their labels as
    numbers (0..3) or strings of them."""
    out = data.copy()
    codes = pd.to_numeric(out["x1"].astype("object"), errors="coerce").to_numpy(dtype=float)
    miss = np.isnan(codes)
    for k, name in enumerate(DUMMIES, start=1):
        out[name] = np.where(miss, np.nan, (codes == k).astype(float))
    out["x1_any"] = np.where(miss, np.nan, (codes >= 1).astype(float))
    return out


def task_seed(seed: int, scenario: dict, rep: int) -> np.random.SeedSequence:
    """The seed of one task, from (seed, scenario, replication) only — so the numbers do
    not depend on where or in which order tasks run, nor on the other scenarios."""
    key = zlib.crc32(scenario_id(scenario).encode())
    return np.random.SeedSequence(int(seed), spawn_key=(key, int(rep)))


def replicate(scenario: dict, rep: int, seed: int, methods=METHODS, m: int = 5,
              maxit: int = 10) -> pd.DataFrame:
    """Run one replication; one row per method × parameter.

    Columns: method, parameter, estimate, std_error, conf_low, conf_high, df (fixed
    effects; the 95 % interval of a pooled result uses Barnard–Rubin df), median (the
    median over the imputations, for omega), seconds (the method's run time), warnings
    (number of warnings recorded by the method's fits), fallbacks (sampler fallbacks),
    clipped (imputed counts whose mean hit the clipping guard, mlmi.methods.base.count_mean_cap),
    n_used (participants in the analysis), error ("" or the exception).
    """
    validate(scenario)
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; use {list(ALL_METHODS)}")
    data_seed, method_seed = task_seed(seed, scenario, rep).spawn(2)
    rng = np.random.default_rng(data_seed)
    x1 = x1_type(scenario)
    complete = generate(scenario["outcome"], scenario["heterogeneity"], scenario["studies"], rng,
                        **({} if x1 == "binary" else {"x1": x1}))
    incomplete = ampute(complete, scenario["sys"], scenario["mechanism"], rng)
    family = "binomial" if scenario["outcome"] == "binary" else "gaussian"
    reml = family == "gaussian"
    seeds = dict(zip(METHODS, method_seed.generate_state(len(METHODS), dtype=np.uint32),
                     strict=True))
    frames = []
    for method in ALL_METHODS:
        if method not in methods:
            continue
        t0 = time.perf_counter()
        try:
            if x1 == "binary":
                rows = _run_method(method, complete, incomplete, family, reml,
                                   int(seeds[method.split("[")[0]]), m, maxit)
            else:
                rows = _run_method_categorical(method, x1, complete, incomplete, family,
                                               reml, int(seeds[method.split("[")[0]]), m,
                                               maxit)
            error = ""
        except Exception as exc:  # recorded with the rows, never dropped
            rows = pd.DataFrame({"parameter": parameters(scenario)})
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        rows["seconds"] = time.perf_counter() - t0
        rows["error"] = error
        rows.insert(0, "method", method)
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    for col in ("estimate", "std_error", "conf_low", "conf_high", "df", "median", "warnings",
                "fallbacks", "clipped", "n_used"):
        if col not in out:
            out[col] = np.nan
    return out


def _run_method(method, complete, incomplete, family, reml, seed, m, maxit) -> pd.DataFrame:
    from ..analysis import complete_case
    from ..glmm import fit_glmm
    from ..mice import impute

    if method == SLOPE_METHOD:
        raise ValueError(f"{SLOPE_METHOD} is for a categorical x1 only")
    if method in ("REF", "CCA"):
        if method == "REF":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_glmm(FORMULA, complete, family, reml=reml)
            n_used = len(complete)
        else:
            cc = complete_case(incomplete, FORMULA, family, reml=reml)
            fit, n_used = cc.fit, cc.n_used
        table = _wald(fit)
        omega = fit.sd_re.to_numpy()
        omega_median = omega
        n_warn, fallbacks = len([w for w in fit.warnings if w.kind != "info"]), 0
        clipped = 0
    else:
        base, _, draw = method.partition("[")
        random = {"x1": ["y"], "x2": ["y"]} if base == "MLMI" else None
        kwargs = {"psi_draw": draw.rstrip("]")} if draw else {}
        if base == "MLMI" and not draw:
            kwargs["psi_draw"] = "paper"  # the paper's method
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = impute(incomplete, "st", m=m, maxit=maxit, method=_STRATEGY[base],
                         random=random, seed=seed, **kwargs)
        fits = imp.analyze(FORMULA, family, reml=reml)
        table = fits.pool()
        rnd = fits.pool_random()
        omega = rnd.loc[["sd((Intercept))", "sd(x1)"], "mean"].to_numpy()
        omega_median = rnd.loc[["sd((Intercept))", "sd(x1)"], "median"].to_numpy()
        diag = imp.diagnostics
        n_warn = int(sum(len([w for w in f.warnings if w.kind != "info"]) for f in fits.fits))
        fallbacks = int(diag["fallbacks"].sum()) if "fallbacks" in diag else 0
        clipped = int(diag["clipped"].fillna(0).sum()) if "clipped" in diag else 0
        n_used = len(incomplete)
    fixed = pd.DataFrame({
        "parameter": ["a0", "a1", "a2"],
        "estimate": table["estimate"].to_numpy(),
        "std_error": table["std_error"].to_numpy(),
        "conf_low": table["conf_low"].to_numpy(),
        "conf_high": table["conf_high"].to_numpy(),
        "df": table["df"].to_numpy(),
    })
    sds = pd.DataFrame({"parameter": ["omega0", "omega1"], "estimate": omega,
                        "median": omega_median})
    rows = pd.concat([fixed, sds], ignore_index=True)
    rows["warnings"] = n_warn
    rows["fallbacks"] = fallbacks
    rows["clipped"] = clipped
    rows["n_used"] = n_used
    return rows


def _run_method_categorical(method, x1, complete, incomplete, family, reml, seed, m,
                            maxit) -> pd.DataFrame:
    """One method on a replication with a categorical x1 (module docstring)."""
    from ..analysis import analyze_completed, complete_case
    from ..glmm import fit_glmm
    from ..mice import impute

    formula = FORMULA_CATEGORICAL
    names = ["(Intercept)", *DUMMIES, "x2"]
    if method in ("REF", "CCA"):
        if method == "REF":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_glmm(formula, add_x1_dummies(complete), family, reml=reml)
            n_used = len(complete)
        else:
            cc = complete_case(add_x1_dummies(incomplete), formula, family, reml=reml)
            fit, n_used = cc.fit, cc.n_used
        table = _wald(fit)
        omega = fit.sd_re.to_numpy()
        omega_median = omega
        n_warn, fallbacks, clipped = len([w for w in fit.warnings if w.kind != "info"]), 0, 0
    else:
        base = method.partition("[")[0]
        if base not in ("STI", "MLMI", "2STG"):
            raise ValueError(f"method {method!r} is not available for a categorical x1")
        random = CATEGORICAL_RANDOM[x1] if base == "MLMI" else None
        if method == SLOPE_METHOD:
            random = {"x1": ["y"], "x2": ["y"]}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = impute(incomplete, "st", m=m, maxit=maxit,
                         method=dict(CATEGORICAL_METHODS[(base, x1)]), random=random,
                         types={"x1": x1, "x2": "count"}, seed=seed,
                         psi_draw="paper")  # the paper's method, as plain "MLMI"
        datasets = [add_x1_dummies(imp.complete(i)) for i in range(1, m + 1)]
        fits = analyze_completed(datasets, formula, family, reml=reml)
        table = fits.pool()
        rnd = fits.pool_random()
        omega = rnd.loc[["sd((Intercept))", "sd(x1_any)"], "mean"].to_numpy()
        omega_median = rnd.loc[["sd((Intercept))", "sd(x1_any)"], "median"].to_numpy()
        diag = imp.diagnostics
        n_warn = int(sum(len([w for w in f.warnings if w.kind != "info"]) for f in fits.fits))
        fallbacks = int(diag["fallbacks"].sum()) if "fallbacks" in diag else 0
        clipped = int(diag["clipped"].fillna(0).sum()) if "clipped" in diag else 0
        n_used = len(incomplete)
    table = table.loc[names] if set(names) <= set(table.index) else table
    fixed = pd.DataFrame({
        "parameter": ["a0", *(f"a1.{k + 1}" for k in range(len(DUMMIES))), "a2"],
        "estimate": table["estimate"].to_numpy(),
        "std_error": table["std_error"].to_numpy(),
        "conf_low": table["conf_low"].to_numpy(),
        "conf_high": table["conf_high"].to_numpy(),
        "df": table["df"].to_numpy(),
    })
    sds = pd.DataFrame({"parameter": ["omega0", "omega1"], "estimate": omega,
                        "median": omega_median})
    rows = pd.concat([fixed, sds], ignore_index=True)
    rows["warnings"] = n_warn
    rows["fallbacks"] = fallbacks
    rows["clipped"] = clipped
    rows["n_used"] = n_used
    return rows


def _wald(fit) -> pd.DataFrame:
    """95 % Wald intervals of a single fit (df infinite), as lme4's confint(method="Wald")."""
    est = fit.beta
    se = np.sqrt(np.diag(fit.beta_cov))
    return pd.DataFrame({"estimate": est, "std_error": se, "conf_low": est - 1.959963984540054 * se,
                         "conf_high": est + 1.959963984540054 * se, "df": np.inf})


def true_values(scenario: dict) -> dict[str, float]:
    """The true value of every parameter in a scenario."""
    return truth(scenario["heterogeneity"], x1_type(scenario))
