"""Chained-equation (MICE) imputation with multilevel models: :func:`impute`."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd

from .._progress import Progress
from .._threads import single_threaded_blas
from ..exceptions import ImputationWarning, InputError
from ..methods.base import DEFAULT_PSI_DRAW
from .diagnostics import frame as diagnostics_frame
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
    sampler: str | dict = "exact",
    seed: int | None = None,
    n_jobs: int = 1,
    types: dict | None = None,
    scheduler=None,
    progress: bool = False,
    level: dict | None = None,
    derived: dict | None = None,
    exclude: list[str] | None = None,
    by: str | None = None,
    psi_draw: str | dict = DEFAULT_PSI_DRAW,
    limits: dict | None = None,
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
    method : None (pick by type: binary → "2l.bin", ordinal → "2l.polr", nominal →
        "2l.polyreg", count → "2l.pois", continuous → "2l.norm"), a strategy name
        ("mlmi", "stratified", "2stage"), one method name for every incomplete variable,
        or a dict variable → method name ("" leaves a variable missing). A method sets
        the variable's type where the inferred type is not one it imputes.
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
        3.19) or "marginal" (prior draw, ignoring the study's data). A dict variable →
        sampler sets it per variable (the others: "exact"), as ``method=`` does:
        ``sampler={"afib": "marginal"}`` with the defaults 2l.bin for afib and 2l.norm for
        continuous variables is mice's 2l.bin + 2l.lmer combination (prior draws for the
        binary variable's studies, the exact normal posterior for the continuous ones).
    psi_draw : how multilevel methods draw Psi*, the between-study covariance of each
        imputation model (every family): "auto" (the default: "corrected" where the
        variable is observed in m_obs >= Q + 4 studies for Q random effects, so the
        inverse Wishart has a finite variance; "ml-normal" where fewer), "paper" (Jolani
        et al.: inverse Wishart with df = m_obs around Lambda_hat = sum of the studies'
        conditional modes b_hat b_hat' — shrunken, so imputed data are less heterogeneous
        than the observed), "corrected"
        (the same Wishart with Lambda_hat = sum (b_hat b_hat' + Var(b | y)), shrinkage put
        back) or "ml-normal" (Psi* from the normal approximation to the sampling
        distribution of the ML estimate Psi_hat, by the delta method from the fit's
        Hessian, negative eigenvalues set to 0; Gaussian tails however few studies observe
        the variable). Rationale and evidence:
        docs/method.md and docs/results/psi-draw.md. Counted in .diagnostics:
        psi_floored, psi_fallbacks, psi_auto_ml_normal. A dict variable → draw sets it
        per variable (the
        others: the default).
    limits : dict variable → (lower, upper): the possible range of a count or continuous
        variable (None for no bound on one side), e.g. ``{"comorbidities": (0, 4)}``.
        Methods that support it draw from the model truncated to the range (not
        clipped; counted as ``truncated`` in .diagnostics); a value a method still puts
        outside is counted (``outside_limits``) and named at the end. Observed values
        must lie inside.
    seed : a non-negative integer; every random draw derives from it, and the same seed
        gives the same imputations, serial or parallel. None: a seed is drawn from the
        operating system, kept in ``Imputed.seed`` and noted in ``Imputed.notes``, so
        the run can be repeated.
    n_jobs : chains run in this many parallel processes (1: in this process; -1: one per
        core). Works from a plain script without a main guard, a notebook or
        ``python -``; Ctrl-C stops the workers at once.
    types : override inferred variable types, dict variable → "binary", "ordinal",
        "nominal" ("categorical" is its alias), "count" or "continuous". Without it the
        type is inferred by the rule of :mod:`mlmi.vartypes` (an integer column is a
        count only where that is plausible; codes and bounded measurements are warned
        about), or set by the method given for the variable; ``.summary()`` gives every
        variable's type and the reason for it.
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
    _check_int("m", m, 1, "number of imputations")
    _check_int("maxit", maxit, 1, "iterations")
    if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, (int, np.integer)) \
            or n_jobs == 0 or n_jobs < -1:
        raise InputError(f"n_jobs={n_jobs!r}: use a positive number of processes or -1 (all)")
    if seed is not None:
        _check_int("seed", seed, 0, "seed of the random draws")
    if not isinstance(progress, (bool, np.bool_)):
        raise InputError(f"progress={progress!r} must be True or False")
    _check_scheduler(scheduler)
    drawn = seed is None
    if drawn:
        # reproducible by default: draw a seed, keep it (Imputed.seed) and say it
        seed = draw_seed()
    args = {"method": method, "random": random, "predictor_matrix": predictor_matrix,
            "visit_sequence": visit_sequence, "sampler": sampler, "types": types,
            "level": level, "derived": derived, "psi_draw": psi_draw, "limits": limits}
    if by is not None:
        from .groups import impute_by

        imputed = impute_by(data, cluster, by, exclude, args, m=m, maxit=maxit, seed=seed,
                            n_jobs=n_jobs, scheduler=scheduler, progress=progress)
        if drawn:
            imputed.plan.notes.append(_drawn_note(seed))
        return imputed
    plan = make_plan(data, cluster, exclude=exclude, **args)
    if drawn:
        plan.notes.append(_drawn_note(seed))
    if not plan.output_variables:
        plan.notes.append("no variable to impute (no missing values, or only in variables "
                          "left missing or constant): every completed data set is the data"
                          + (" with its constants filled in" if plan.constants else ""))
    for message in plan.warnings:
        warnings.warn(message, ImputationWarning, stacklevel=2)
    with single_threaded_blas():
        return _impute(plan, m, maxit, int(seed), n_jobs, scheduler, progress)


def _drawn_note(seed: int) -> str:
    return f"no seed given: drew seed={seed}; pass seed={seed} to repeat these imputations"


def draw_seed() -> int:
    """A fresh seed from the operating system's entropy, small enough to type."""
    return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])


def _check_int(name: str, value, low: int, meaning: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise InputError(f"{name}={value!r} must be {kind} ({meaning})")


def _check_scheduler(scheduler) -> None:
    """A scheduler address is checked before the imputation starts (a typo should not
    cost a run): 'tcp://host:port', 'host:port' or a Client."""
    if scheduler is None:
        return
    if isinstance(scheduler, str):
        try:
            from distributed.comm import parse_address
            from distributed.comm.addressing import parse_host_port

            proto, loc = parse_address(scheduler)
            if proto in ("tcp", "tls", "ws", "wss"):
                parse_host_port(loc)
        except (ValueError, TypeError) as exc:
            raise InputError(
                f"scheduler={scheduler!r} is not a Dask scheduler address: use "
                f"'tcp://host:8786' (host and port), or a dask.distributed.Client ({exc})"
            ) from exc
        except ImportError:  # pragma: no cover - dask[distributed] is a dependency
            raise InputError("scheduler= needs dask.distributed") from None
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        return
    if not isinstance(scheduler, Client):
        raise InputError(
            f"scheduler must be a dask.distributed.Client or a scheduler address such as "
            f"'tcp://host:8786', not {type(scheduler).__name__}"
        )


def _impute(plan: Plan, m, maxit, seed, n_jobs, scheduler, progress) -> Imputed:
    seeds = np.random.SeedSequence(seed).spawn(m)
    bar = Progress(m * maxit * len(plan.visit_sequence), enabled=progress, label="impute")
    try:
        if not plan.output_variables:
            results = [ChainResult(c, {}, [], []) for c in range(m)]
        elif scheduler is not None:
            results = _run_chains_dask(plan, seeds, maxit, scheduler, bar)
        else:
            results = _run_chains(plan, seeds, maxit, n_jobs, bar)
    finally:
        bar.close()
    imputed = _collect(plan, results, m, maxit, seed)
    report = _report(imputed)
    if report:
        warnings.warn(report, ImputationWarning, stacklevel=3)
    return imputed


#: a variable with more than this per cent of its imputed values outside its observed
#: range is named in the end-of-run warning (all counts are in Imputed.summary())
OUT_OF_RANGE_PCT = 2.0


def _report(imputed: Imputed) -> str:
    """One message with what a user must know: fallbacks, non-converged fits,
    separation, sampler bounds exceeded, singular (floored) Psi-hat, clipped draws,
    values outside limits, and variables with more than OUT_OF_RANGE_PCT per cent of their
    imputed values outside the observed range."""
    d = imputed.diagnostics
    parts = []
    if "variable" not in d or not len(d):
        return ""
    ranges = imputed.out_of_range()
    separated: dict[str, int] = {}
    for rec in imputed.records:
        if rec.count_kind("separation"):
            separated[rec.variable] = separated.get(rec.variable, 0) + 1
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
        # separation of the fixed effects threatens the imputation model; a study whose
        # response is constant (kind cluster-separation) is handled by the random
        # effects' prior and stays in the diagnostics only
        fixed_sep = separated.get(var, 0)
        if fixed_sep:
            bits.append(f"{fixed_sep}/{calls} model fits with separation of the fixed "
                        "effects")
        if "dropped_studies" in sub and sub["dropped_studies"].fillna(0).sum():
            spor = int(sub["dropped_sporadic"].fillna(0).sum()) if "dropped_sporadic" in sub \
                else 0
            bits.append(f"{int(sub['dropped_studies'].fillna(0).sum())} per-study fit(s) "
                        f"dropped from the meta-analysis ({spor} in studies with sporadically "
                        "missing values, imputed from the prior instead)")
        if "psi_fallbacks" in sub and sub["psi_fallbacks"].fillna(0).sum():
            bits.append(f"{int(sub['psi_fallbacks'].fillna(0).sum())} Psi* draw(s) by a "
                        "fallback (ml-normal without a usable likelihood Hessian: the "
                        "corrected Wishart; a Wishart draw with fewer observing studies "
                        "than random effects: ml-normal)")
        if "psi_floored" in sub and sub["psi_floored"].fillna(0).sum():
            bits.append(f"{int(sub['psi_floored'].fillna(0).sum())}/{calls} fits with a "
                        "singular Psi-hat (a random-effect variance estimated as 0; floored)")
        if "clipped" in sub and sub["clipped"].sum():
            bits.append(f"{int(sub['clipped'].sum())} draw(s) with a clipped mean")
        if "outside_limits" in sub and sub["outside_limits"].fillna(0).sum():
            bits.append(f"{int(sub['outside_limits'].fillna(0).sum())} imputed value(s) "
                        f"outside limits={imputed.plan.limits.get(var)} (its method "
                        f"{imputed.plan.methods.get(var)!r} does not draw within limits)")
        if var in ranges.index and ranges.loc[var, "out_of_range_pct"] > OUT_OF_RANGE_PCT:
            r = ranges.loc[var]
            bits.append(f"{r['out_of_range_pct']:.1f}% of the imputed values outside the "
                        f"observed range {r['observed_min']:g} to {r['observed_max']:g} "
                        f"(imputed {r['imputed_min']:g} to {r['imputed_max']:g}; more than "
                        f"{OUT_OF_RANGE_PCT:g}%: limits= or a donor method keeps them in)")
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
    import os

    from .._workers import process_pool

    workers = min(len(seeds), (os.cpu_count() or 1) if n_jobs == -1 else n_jobs)
    with process_pool(workers) as pool:
        futures = [pool.submit(run_chain, plan, c, s, maxit) for c, s in enumerate(seeds)]
        for f in futures:
            f.add_done_callback(lambda f: _advance(bar, f, per_chain))
        return [f.result() for f in futures]


def _advance(bar: Progress, future, steps: int) -> None:
    """Count a finished chain on the bar (not a cancelled or failed one)."""
    if not future.cancelled() and future.exception() is None:
        bar.update(n=steps)


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
    if own:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"scheduler={scheduler!r}: cannot connect to a Dask scheduler "
                             f"there ({type(exc).__name__}: {exc})") from exc
    else:
        client = scheduler
    try:
        shared = client.scatter(plan, broadcast=True)
        futures = [client.submit(run_chain, shared, c, s, maxit, pure=False)
                   for c, s in enumerate(seeds)]
        per_chain = maxit * len(plan.visit_sequence)
        for f in futures:
            f.add_done_callback(lambda f: _advance(bar, f, per_chain))
        try:
            return client.gather(futures)
        except BaseException:  # Ctrl-C or an error: do not leave chains running
            with contextlib.suppress(Exception):
                client.cancel(futures)
            raise
    finally:
        if own:
            client.close()


def _collect(plan: Plan, results: list[ChainResult], m: int, maxit: int, seed) -> Imputed:
    imputations = {v: np.vstack([r.imputations[v] for r in results])
                   for v in plan.output_variables}
    chains = pd.DataFrame([row for r in results for row in r.trace])
    records = [rec for r in results for rec in r.diagnostics]
    return Imputed(plan=plan, m=m, maxit=maxit, seed=seed, imputations=imputations,
                   chains=chains, diagnostics=diagnostics_frame(records), records=records)


__all__ = ["Imputed", "impute"]
