"""Chained-equation (MICE) imputation with multilevel models: :func:`impute`."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._progress import Progress
from .._threads import single_threaded_blas
from ..exceptions import ImputationWarning, InputError
from .imputed import Imputed
from .sampler import ChainResult, run_chain
from .setup import Plan, make_plan


def impute(
    data: pd.DataFrame,
    cluster: str,
    *,
    m: int = 5,
    maxit: int = 10,
    method: str | dict | None = None,
    random: dict | None = None,
    predictor_matrix: pd.DataFrame | None = None,
    visit_sequence: list[str] | None = None,
    sampler: str = "exact",
    seed: int | None = None,
    n_jobs: int = 1,
    types: dict | None = None,
    scheduler=None,
    progress: bool = False,
    level: dict | None = None,
    derived: dict | None = None,
    exclude: list[str] | None = None,
    by: str | None = None,
    psi_draw: str = "paper",
) -> Imputed:
    """Multiple imputation of clustered (IPD meta-analysis) data by chained equations.

    Each incomplete variable is imputed from a two-level model given all others: a
    logistic mixed model for binary, a Poisson mixed model for count and a linear mixed
    model for continuous variables (Jolani 2025). Where a variable is systematically
    missing (never measured in a study) the study's random effects are drawn from
    their prior N(0, Psi*); where it is sporadically missing, from their posterior
    given the study's observed values.

    Parameters
    ----------
    data : the incomplete data, one row per participant; never modified.
    cluster : the study (cluster) column; any dtype, no missing values.
    m : number of imputations (independent chains).
    maxit : iterations of the chained equations per chain.
    method : None (pick by type: binary → "2l.bin", count → "2l.pois", continuous →
        "2l.norm"), a strategy name ("mlmi"), one method name for every incomplete
        variable, or a dict variable → method name ("" leaves a variable missing).
    random : dict variable → predictors that get a random (study-specific) slope in
        that variable's imputation model, e.g. ``{"x1": ["y"], "x2": ["y"]}``; the
        random intercept is always present.
    predictor_matrix : optional DataFrame (imputed variables × columns) with mice's
        codes: -2 the study column, 0 not a predictor, 1 fixed effect, 2 fixed effect
        and random slope. Default: every other variable a fixed-effect predictor.
    visit_sequence : order in which the variables are imputed in each iteration
        (default: column order).
    sampler : draw of a sporadically missing study's random effects: "exact" (default;
        accept–reject with a multivariate-t envelope — exact draws from the posterior),
        "prior-ar" (the paper's accept–reject from the prior, at most 250 proposals then
        the prior draw — counted), "laplace" (normal at the posterior mode, as mice
        3.19) or "marginal" (prior draw, ignoring the study's data).
    psi_draw : how multilevel methods draw Psi*, the between-study covariance of each
        imputation model (every family): "paper" (Jolani et al.: inverse Wishart with
        df = m_obs around Lambda_hat = sum of the studies' conditional modes b_hat b_hat' —
        shrunken, so imputed data are less heterogeneous than the observed), "corrected"
        (the same Wishart with Lambda_hat = sum (b_hat b_hat' + Var(b | y)), shrinkage put
        back) or "ml-normal" (theta*, lme4's relative Cholesky factor, drawn from the
        normal approximation to the ML estimate's sampling distribution; proper with every
        moment finite however few studies observe the variable). Rationale and evidence:
        docs/method.md and docs/results/psi-draw.md. Counted in .diagnostics:
        psi_floored, psi_fallbacks.
    seed : every random draw derives from it; the same seed gives the same imputations,
        serial or parallel.
    n_jobs : chains run in this many parallel processes (1: in this process).
    types : override inferred variable types, dict variable → "binary", "count",
        "continuous" or "categorical".
    scheduler : run the chains on a Dask cluster instead: a ``dask.distributed.Client``
        or the address of a scheduler (``"tcp://host:8786"``). Each chain is one task;
        the numbers are the same as in one process.
    progress : show a progress bar on stderr (steps of the chained equations).
    level : dict variable → 1 or 2: declare a variable participant-level (1) or
        study-level (2: one value per study, imputed once per study by a ``2lonly``
        method from the study means of its predictors and copied to the members). A
        variable constant within every study where it is observed is detected as
        study-level without it.
    derived : dict name → expression of other columns (mice's passive imputation), e.g.
        ``{"bmi": "weight / (height / 100) ** 2", "treat_x_age": "treat * age"}``:
        recomputed from the current imputations whenever an input changes, a predictor of
        the other variables (not of its inputs), never imputed by a model; where the
        column exists and is observed, the observed value is kept.
    exclude : columns kept out of every model and left as they are in the output.
        Identifiers (a distinct value in almost every row), date/time and row-name
        columns are left out without it (see ``Imputed.excluded``).
    by : a fully observed grouping column (e.g. the treatment arm): the whole
        imputation runs separately within each of its levels, so every association with
        it — effect modification included — is kept in the imputations.

    Returns
    -------
    Imputed : the completed data sets (``.complete(i)``), chains, diagnostics;
    ``.analyze(formula, family).pool()`` gives the pooled analysis.
    """
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise InputError(f"m={m!r} must be a positive integer (number of imputations)")
    if not isinstance(maxit, (int, np.integer)) or maxit < 1:
        raise InputError(f"maxit={maxit!r} must be a positive integer (iterations)")
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise InputError(f"n_jobs={n_jobs!r}: use a positive number of processes or -1 (all)")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed={seed!r} must be an integer or None")
    args = {"method": method, "random": random, "predictor_matrix": predictor_matrix,
            "visit_sequence": visit_sequence, "sampler": sampler, "types": types,
            "level": level, "derived": derived, "psi_draw": psi_draw}
    if by is not None:
        from .groups import impute_by

        return impute_by(data, cluster, by, exclude, args, m=m, maxit=maxit, seed=seed,
                         n_jobs=n_jobs, scheduler=scheduler, progress=progress)
    plan = make_plan(data, cluster, exclude=exclude, **args)
    for message in plan.warnings:
        warnings.warn(message, ImputationWarning, stacklevel=2)
    with single_threaded_blas():
        return _impute(plan, m, maxit, seed, n_jobs, scheduler, progress)


def _impute(plan: Plan, m, maxit, seed, n_jobs, scheduler, progress) -> Imputed:
    seeds = np.random.SeedSequence(seed).spawn(m)
    bar = Progress(m * maxit * len(plan.visit_sequence), enabled=progress, label="impute")
    try:
        if scheduler is not None:
            results = _run_chains_dask(plan, seeds, maxit, scheduler, bar)
        else:
            results = _run_chains(plan, seeds, maxit, n_jobs, bar)
    finally:
        bar.close()
    imputed = _collect(plan, results, m, maxit, seed)
    report = _report(imputed)
    if report:
        warnings.warn(report, ImputationWarning, stacklevel=4)
    return imputed


def _report(imputed: Imputed) -> str:
    """One message with what a user must know: fallbacks, non-converged fits,
    separation, sampler bounds exceeded, clipped draws. Singular fits and floored
    Psi-hat are routine (a random-slope variance of 0) and stay in summary()."""
    d = imputed.diagnostics
    parts = []
    for var, sub in d.groupby("variable", sort=False):
        calls = len(sub)
        bits = []
        if "fallbacks" in sub and sub["fallbacks"].sum():
            bits.append(f"{int(sub['fallbacks'].sum())} sampler fallback(s) (prior-ar: the "
                        "prior draw after 250 proposals; exact: the Laplace draw)")
        if "mode_failures" in sub and sub["mode_failures"].fillna(0).sum():
            bits.append(f"{int(sub['mode_failures'].fillna(0).sum())} study posterior "
                        "mode(s) not found (Newton did not converge)")
        if "bound_exceeded" in sub and sub["bound_exceeded"].sum():
            bits.append(f"{int(sub['bound_exceeded'].sum())} proposal(s) above the sampler "
                        "bound")
        if "fit_converged" in sub and (~sub["fit_converged"].astype(bool)).sum():
            bits.append(f"{int((~sub['fit_converged'].astype(bool)).sum())}/{calls} model "
                        "fits not converged")
        if "fit_warnings" in sub:
            # separation of the fixed effects threatens the imputation model; a study
            # whose response is constant (within-cluster) is handled by the random
            # effects' prior and stays in the diagnostics only
            fixed_sep = sub["fit_warnings"].map(lambda text: any(
                part.startswith("[separation]") and "within-cluster" not in part
                for part in text.split("; ")))
            if fixed_sep.sum():
                bits.append(f"{int(fixed_sep.sum())}/{calls} model fits with separation of "
                            "the fixed effects")
        if "dropped_studies" in sub and sub["dropped_studies"].fillna(0).sum():
            spor = int(sub["dropped_sporadic"].fillna(0).sum()) if "dropped_sporadic" in sub \
                else 0
            bits.append(f"{int(sub['dropped_studies'].fillna(0).sum())} per-study fit(s) "
                        f"dropped from the meta-analysis ({spor} in studies with sporadically "
                        "missing values, imputed from the prior instead)")
        if "psi_fallbacks" in sub and sub["psi_fallbacks"].fillna(0).sum():
            bits.append(f"{int(sub['psi_fallbacks'].fillna(0).sum())} Psi* draw(s) without a "
                        "usable likelihood Hessian (ml-normal fell back to the corrected "
                        "Wishart)")
        if "clipped" in sub and sub["clipped"].sum():
            bits.append(f"{int(sub['clipped'].sum())} draw(s) with a clipped mean")
        if bits:
            parts.append(f"{var}: " + ", ".join(bits))
    if not parts:
        return ""
    return ("mlmi.impute: " + "; ".join(parts)
            + " — see .diagnostics and .summary() for where")


def _run_chains(plan: Plan, seeds, maxit: int, n_jobs: int, bar: Progress
                ) -> list[ChainResult]:
    if n_jobs == 1 or len(seeds) == 1:
        return [run_chain(plan, c, s, maxit, progress=bar.update) for c, s in enumerate(seeds)]
    per_chain = maxit * len(plan.visit_sequence)
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    from .._workers import exit_with_parent

    workers = min(len(seeds), (os.cpu_count() or 1) if n_jobs == -1 else n_jobs)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=exit_with_parent) as pool:
        futures = [pool.submit(run_chain, plan, c, s, maxit) for c, s in enumerate(seeds)]
        for f in futures:
            f.add_done_callback(lambda _f: bar.update(n=per_chain))
        return [f.result() for f in futures]


def _run_chains_dask(plan: Plan, seeds, maxit: int, scheduler, bar: Progress
                     ) -> list[ChainResult]:
    """One Dask task per chain; each chain's generator comes from its own spawned seed,
    so where a chain runs does not change its numbers."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise InputError("scheduler= needs dask.distributed") from exc
    own = not isinstance(scheduler, Client)
    if own and not isinstance(scheduler, str):
        raise InputError(
            f"scheduler must be a dask.distributed.Client or a scheduler address such as "
            f"'tcp://host:8786', not {type(scheduler).__name__}"
        )
    client = Client(scheduler) if own else scheduler
    try:
        shared = client.scatter(plan, broadcast=True)
        futures = [client.submit(run_chain, shared, c, s, maxit, pure=False)
                   for c, s in enumerate(seeds)]
        per_chain = maxit * len(plan.visit_sequence)
        for f in futures:
            f.add_done_callback(lambda _f: bar.update(n=per_chain))
        return client.gather(futures)
    finally:
        if own:
            client.close()


def _collect(plan: Plan, results: list[ChainResult], m: int, maxit: int, seed) -> Imputed:
    imputations = {v: np.vstack([r.imputations[v] for r in results])
                   for v in plan.output_variables}
    chains = pd.DataFrame([row for r in results for row in r.trace])
    diag = pd.DataFrame([row for r in results for row in r.diagnostics])
    if "fit_warnings" in diag:
        diag["n_fit_warnings"] = diag["fit_warnings"].map(len)
        diag["fit_warnings"] = diag["fit_warnings"].map("; ".join)
    if "proposals" in diag:
        with np.errstate(invalid="ignore", divide="ignore"):
            diag["acceptance_rate"] = diag["accepted"] / diag["proposals"].where(
                diag["proposals"] > 0)
    return Imputed(plan=plan, m=m, maxit=maxit, seed=seed, imputations=imputations,
                   chains=chains, diagnostics=diag)


__all__ = ["Imputed", "impute"]
