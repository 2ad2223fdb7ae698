"""One chain of the chained equations (METHOD.md §2).

Start values are random draws from the observed values of each variable — within
the study where the study observes it, else from all observed values. Each
iteration then imputes every incomplete variable once, in the visit sequence, from
its own model given the current values of the others. Observed values are never
written to: only the rows where a variable is missing are.

A study-level variable starts with one value per study (copied to its members); an
ordinal or nominal one is handed to its method as category codes 0..L-1
(``Problem.n_levels``, ``Problem.levels``) and its dummy columns in the working matrix are
rewritten from the drawn codes after each step. Derived variables are recomputed right after any of
their inputs changes, and the study means of predictor-matrix code 3 are recomputed
from the current values before every univariate step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..exceptions import MLMIError
from ..methods import Problem, get_method
from .diagnostics import StepRecord
from .setup import Plan, _compute_derived


@dataclass
class ChainResult:
    """What one chain returns: the final imputations (per variable, the values at its
    missing rows, in row order), the trace (mean and SD of the imputed values per
    iteration) and one diagnostics record per univariate call."""

    chain: int
    imputations: dict[str, np.ndarray]
    trace: list[dict]
    diagnostics: list[StepRecord]


def get_values(plan: Plan, work: np.ndarray, var: str, rows=slice(None)) -> np.ndarray:
    """Current values of ``var`` (category codes 0..L-1 for an ordinal or nominal
    variable, read from its dummy columns)."""
    spec = plan.variables[var]
    if not spec.kind.categorical:
        return work[rows, spec.cols[0]]
    return spec.kind.get(work[rows][:, spec.cols])


def set_values(plan: Plan, work: np.ndarray, var: str, rows: np.ndarray,
               values: np.ndarray) -> None:
    """Write ``values`` (codes for an ordinal or nominal variable: its dummy columns are
    rewritten) into ``var``'s columns."""
    spec = plan.variables[var]
    if not spec.kind.categorical:
        work[rows, spec.cols[0]] = values
        return
    work[np.ix_(rows, spec.cols)] = spec.kind.put(len(spec.cols), values)


def initial_values(plan: Plan, work: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the missing entries of the imputed variables with random observed values,
    drawn within the study if it observes the variable, else from all studies; a
    study-level variable gets one value per study. Derived variables are then computed."""
    for var in plan.imputed_variables:
        miss = plan.missing[var]
        current = get_values(plan, work, var)
        observed = current[~miss]
        obs_codes = plan.codes[~miss]
        level2 = var in plan.level2
        if level2:  # one value per observing study
            _, first = np.unique(obs_codes, return_index=True)
            study_values = observed[first]
        for study in np.unique(plan.codes[miss]):
            rows = np.flatnonzero(miss & (plan.codes == study))
            pool = observed[obs_codes == study]
            if pool.size == 0:
                pool = study_values if level2 else observed
            draw = rng.choice(pool, size=1 if level2 else rows.size)
            set_values(plan, work, var, rows, np.resize(draw, rows.size))
    _compute_derived(plan, work, list(plan.derived))


def run_chain(plan: Plan, chain: int, seed: np.random.SeedSequence, maxit: int,
              progress=None) -> ChainResult:
    """Run one chain of ``maxit`` iterations with its own random generator."""
    from .._threads import single_threaded_blas

    with single_threaded_blas():  # also in worker processes
        return _run_chain(plan, chain, seed, maxit, progress)


def _run_chain(plan: Plan, chain: int, seed, maxit: int, progress) -> ChainResult:
    rng = np.random.default_rng(seed)
    work = plan.work.copy()
    initial_values(plan, work, rng)
    states: dict[str, dict] = {v: {} for v in plan.imputed_variables}
    design = {v: plan.predictors(v) for v in plan.imputed_variables}
    means = {v: plan.mean_predictors(v) for v in plan.imputed_variables}
    sizes = np.bincount(plan.codes, minlength=plan.labels.size).astype(float)
    trace: list[dict] = []
    diagnostics: list[StepRecord] = []
    for it in range(1, maxit + 1):
        for var in plan.visit_sequence:
            info = get_method(plan.methods[var])
            spec = plan.variables[var]
            cols, names, roles = design[var]
            x = work[:, cols]
            mean_cols, mean_names = means[var]
            if mean_cols:  # predictor-matrix code 3: study means of the current values
                x = np.column_stack([x, _study_means(work[:, mean_cols], plan.codes,
                                                     sizes)])
                names = [*names, *mean_names]
                roles = np.concatenate([roles, np.ones(len(mean_cols), dtype=np.int64)])
            miss = plan.missing[var]
            problem = Problem(
                variable=var, vtype=spec.vtype, y=get_values(plan, work, var).copy(),
                ry=~miss, wy=miss, x=x, x_names=names, type=roles, cluster=plan.codes,
                cluster_labels=plan.labels, status=plan.status[var], rng=rng,
                sampler=plan.samplers.get(var, plan.sampler),
                psi_draw=plan.psi_draws.get(var, plan.psi_draw), state=states[var],
                cluster_role=int(plan.predictor_matrix.loc[var, plan.cluster]),
                n_levels=spec.kind.n_levels(spec.levels),
                levels=list(spec.levels) if spec.kind.categorical else None,
                limits=plan.limits.get(var),
            )
            t0 = time.perf_counter()
            try:
                draw = info.func(problem)
            except MLMIError as exc:
                raise type(exc)(
                    f"imputing {var!r} with {info.name!r} (chain {chain + 1}, iteration "
                    f"{it}): {exc}"
                ) from exc
            seconds = time.perf_counter() - t0
            values = np.asarray(draw.values, dtype=float)
            if values.shape != (int(miss.sum()),) or not np.all(np.isfinite(values)):
                raise MLMIError(
                    f"method {info.name!r} returned {values.shape[0]} value(s) for {var!r} "
                    f"({int(np.sum(~np.isfinite(values)))} not finite); expected "
                    f"{int(miss.sum())} finite values"
                )
            set_values(plan, work, var, np.flatnonzero(miss), values)
            counts = dict(draw.info)
            if var in plan.limits:  # a method that ignores limits: counted, not clipped
                lo, hi = plan.limits[var]
                shown = spec.kind.imputed_scale(values)
                counts["outside_limits"] = int(np.sum((shown < lo) | (shown > hi)))
            _compute_derived(plan, work, plan.dependents(var))
            diagnostics.append(StepRecord.from_draw(var, it, chain + 1, info.name, seconds,
                                                    counts))
            if progress is not None:
                progress()
        for var in plan.imputed_variables:
            vals = get_values(plan, work, var, plan.missing[var])
            trace.append({"variable": var, "iteration": it, "chain": chain + 1,
                          "mean": float(vals.mean()), "sd": float(vals.std(ddof=1))
                          if vals.size > 1 else np.nan})
    imputations = {v: get_values(plan, work, v, plan.missing[v]).copy()
                   for v in plan.output_variables}
    return ChainResult(chain, imputations, trace, diagnostics)


def _study_means(values: np.ndarray, codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each row's study mean of each column of ``values``."""
    out = np.empty_like(values)
    for j in range(values.shape[1]):
        out[:, j] = (np.bincount(codes, weights=values[:, j], minlength=sizes.size)
                     / sizes)[codes]
    return out
