"""Speed of a whole multilevel imputation.

    python benchmarks/bench_impute.py [--reps 5] [--no-ipdna]

1. The paper's design (METHOD.md §6): binary outcome, moderate heterogeneity, 3000
   participants in 6, 10 or 30 studies; x1 (binary) and x2 (count) sporadically (MAR)
   and systematically (30 % of studies) missing; MLMI (random slope for y, exact
   sampler), STI ("stratified") and 2STG ("2stage"); m = 5, maxit = 10. Median of
   ``--reps`` runs, one process.
2. IPDNa (micemd; ../shared/data, 11 685 rows, 28 centres, 7 incomplete variables),
   default methods (6 × 2l.norm, afib 2l.bin), m = 5, maxit = 10: total time and time
   per iteration per chain; n_jobs = 2 as well (two processes).
"""

from __future__ import annotations

from _common import machine, median_ms, print_table  # first: one BLAS thread

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mlmi
from mlmi.simulation import ampute, generate

IPDNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "micemd_IPDNa.csv"


def _row(data: str, strategy: str, rows: int, seconds: float, imp, variables) -> dict:
    """One table row: the whole imputation's time, the median time of one univariate
    step (one variable's model fit and draws, from the diagnostics), the exact sampler's
    acceptance rate of ``variables`` (MLMI only) and the number of fallbacks."""
    s = imp.summary()
    acc = [f"{s.loc[v, 'acceptance_rate']:.2f}" for v in variables
           if "acceptance_rate" in s and np.isfinite(s.loc[v, "acceptance_rate"])]
    return {
        "data": data, "strategy": strategy, "rows": rows,
        "imputation (m=5, maxit=10)": f"{seconds:.3f} s",
        "per univariate step": f"{1e3 * imp.diagnostics['seconds'].median():.2f} ms",
        "acceptance": " / ".join(acc),
        "fallbacks": int(s["fallbacks"].sum()) if "fallbacks" in s else 0,
        "per iteration per chain": f"{seconds / 50:.3f} s",
    }


def paper_design(reps: int) -> list[dict]:
    rows = []
    for k, strategy in [(6, "mlmi"), (10, "mlmi"), (30, "mlmi"), (10, "stratified"),
                        (30, "stratified"), (10, "2stage"), (30, "2stage")]:
        rng = np.random.default_rng(k)
        data = ampute(generate("binary", "moderate", k, rng), 0.3, "mar", rng)
        kwargs = {"m": 5, "maxit": 10, "method": strategy,
                  "random": {"x1": ["y"], "x2": ["y"]} if strategy == "mlmi" else None}
        mlmi.impute(data, "st", m=1, maxit=1, seed=0)  # load compiled kernels
        seeds = iter(range(10_000))
        ms = median_ms(lambda data=data, kwargs=kwargs, seeds=seeds: mlmi.impute(
            data, "st", seed=next(seeds), **kwargs), reps)
        imp = mlmi.impute(data, "st", seed=1, **kwargs)
        rows.append(_row(f"paper design, {k} studies", strategy, len(data), ms / 1e3, imp,
                         ["x1", "x2"]))
    return rows


def ipdna() -> list[dict]:
    data = pd.read_csv(IPDNA)
    rows = []
    for strategy, n_jobs in (("mlmi", 1), ("mlmi", 2), ("stratified", 1), ("2stage", 1)):
        method = None if strategy == "mlmi" else strategy
        mlmi.impute(data, "centre", m=1, maxit=1, seed=0, method=method)
        t0 = time.perf_counter()
        imp = mlmi.impute(data, "centre", m=5, maxit=10, seed=1, n_jobs=n_jobs, method=method)
        rows.append(_row(f"IPDNa, n_jobs={n_jobs}", strategy, len(data),
                         time.perf_counter() - t0, imp, ["afib"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-ipdna", action="store_true")
    args = parser.parse_args()
    rows = paper_design(args.reps)
    if not args.no_ipdna and IPDNA.exists():
        rows += ipdna()
    print(f"Multilevel imputation; {machine()}")
    print_table(rows, ["data", "strategy", "rows", "imputation (m=5, maxit=10)",
                       "per univariate step", "acceptance", "fallbacks",
                       "per iteration per chain"])


if __name__ == "__main__":
    main()
