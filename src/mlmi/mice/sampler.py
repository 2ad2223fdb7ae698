"""One chain of the chained equations (METHOD.md §2).

Start values are random draws from the observed values of each variable — within
the study where the study observes it, else from all observed values. Each
iteration then imputes every incomplete variable once, in the visit sequence, from
its own model given the current values of the others. Observed values are never
written to: only the rows where a variable is missing are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..exceptions import MLMIError
from ..methods import Problem, get_method
from .setup import Plan


@dataclass
class ChainResult:
    """What one chain returns: the final imputations (per variable, the values at its
    missing rows, in row order), the trace (mean and SD of the imputed values per
    iteration) and one diagnostics record per univariate call."""

    chain: int
    imputations: dict[str, np.ndarray]
    trace: list[dict]
    diagnostics: list[dict]


def initial_values(plan: Plan, work: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the missing entries of the imputed variables with random observed values,
    drawn within the study if it observes the variable, else from all studies."""
    for var in plan.imputed_variables:
        col = plan.variables[var].cols[0]
        miss = plan.missing[var]
        observed = work[~miss, col]
        obs_codes = plan.codes[~miss]
        for study in np.unique(plan.codes[miss]):
            rows = np.flatnonzero(miss & (plan.codes == study))
            pool = observed[obs_codes == study]
            if pool.size == 0:
                pool = observed
            work[rows, col] = rng.choice(pool, size=rows.size)


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
    trace: list[dict] = []
    diagnostics: list[dict] = []
    for it in range(1, maxit + 1):
        for var in plan.visit_sequence:
            info = get_method(plan.methods[var])
            spec = plan.variables[var]
            col = spec.cols[0]
            cols, names, roles = design[var]
            miss = plan.missing[var]
            problem = Problem(
                variable=var, vtype=spec.vtype, y=work[:, col].copy(), ry=~miss, wy=miss,
                x=work[:, cols], x_names=names, type=roles, cluster=plan.codes,
                cluster_labels=plan.labels, status=plan.status[var], rng=rng,
                sampler=plan.sampler, state=states[var],
                cluster_role=int(plan.predictor_matrix.loc[var, plan.cluster]),
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
            work[miss, col] = values
            record = {"variable": var, "iteration": it, "chain": chain + 1,
                      "method": info.name, "seconds": seconds}
            record.update(draw.info)
            diagnostics.append(record)
            if progress is not None:
                progress()
        for var in plan.imputed_variables:
            vals = work[plan.missing[var], plan.variables[var].cols[0]]
            trace.append({"variable": var, "iteration": it, "chain": chain + 1,
                          "mean": float(vals.mean()), "sd": float(vals.std(ddof=1))
                          if vals.size > 1 else np.nan})
    imputations = {v: work[plan.missing[v], plan.variables[v].cols[0]].copy()
                   for v in plan.imputed_variables}
    return ChainResult(chain, imputations, trace, diagnostics)
