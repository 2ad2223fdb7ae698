"""Speed of imputing categorical and skewed variables (issue 11, point 8).

    python benchmarks/bench_categorical.py [--reps 5]

1. The paper's design (METHOD.md §6; binary outcome, moderate heterogeneity, 3000
   participants, MAR + 30 % systematically missing studies) with x1 a 4-category ordinal
   (``mlmi.simulation.generate(..., x1="ordinal")``) at 10 and 30 studies: MLMI
   (``2l.polr`` / ``2l.pois``; with and without the paper's random slope for y),
   STI (``polr`` / ``pmm``) and 2STG (``2l.2stage.polr`` / ``2l.2stage.pois``); and x1 a
   4-category nominal (``2l.polyreg``, ``polyreg``, ``2l.2stage.polyreg``).
   m = 5, maxit = 10, one process; median of ``--reps`` runs. Target: ≤ 1 s (ordinal,
   one core).
2. IPDNa (micemd; ../shared/data, 11 685 rows, 28 centres) with ``2l.pmm`` for BNP and
   the default methods for the rest, m = 5, maxit = 10, one process, median of
   ``--reps`` runs. Target: ≤ 10 s.

The load of the machine (``os.getloadavg``) is printed before and after: wall times are
only comparable when it is low. The CPU time of the process (``time.process_time``, one
BLAS thread) is given too: it is what one core spends, and is less inflated by other
processes competing for the cores (not immune: caches and memory bandwidth are shared).
"""

from __future__ import annotations

from _common import machine, print_table  # first: one BLAS thread

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mlmi
from mlmi.simulation import ampute, generate

IPDNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "micemd_IPDNa.csv"

METHODS = {
    ("ordinal", "mlmi"): {"x1": "2l.polr", "x2": "2l.pois"},
    ("ordinal", "stratified"): {"x1": "polr", "x2": "pmm"},
    ("ordinal", "2stage"): {"x1": "2l.2stage.polr", "x2": "2l.2stage.pois"},
    ("nominal", "mlmi"): {"x1": "2l.polyreg", "x2": "2l.pois"},
    ("nominal", "stratified"): {"x1": "polyreg", "x2": "pmm"},
    ("nominal", "2stage"): {"x1": "2l.2stage.polyreg", "x2": "2l.2stage.pois"},
}


def _timed(fn, reps: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``reps`` calls."""
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def _impute(data, cluster, seed, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmi.impute(data, cluster, seed=seed, **kwargs)


def paper_design(reps: int) -> list[dict]:
    rows = []
    cases = [("ordinal", 10, "mlmi", True), ("ordinal", 10, "mlmi", False),
             ("ordinal", 30, "mlmi", True), ("ordinal", 10, "stratified", False),
             ("ordinal", 10, "2stage", False), ("nominal", 10, "mlmi", False),
             ("nominal", 10, "stratified", False), ("nominal", 10, "2stage", False)]
    from mlmi.methods import available_methods

    for kind, k, strategy, slope in cases:
        if not set(METHODS[(kind, strategy)].values()) <= set(available_methods()):
            print(f"skipped {kind} {strategy}: {METHODS[(kind, strategy)]} not registered")
            continue
        rng = np.random.default_rng(k)
        data = ampute(generate("binary", "moderate", k, rng, x1=kind), 0.3, "mar", rng)
        random = None
        if strategy == "mlmi":
            random = {"x1": ["y"], "x2": ["y"]} if slope else {"x2": ["y"]}
        kwargs = {"m": 5, "maxit": 10, "method": dict(METHODS[(kind, strategy)]),
                  "random": random, "types": {"x1": kind, "x2": "count"}}
        _impute(data, "st", 0, **{**kwargs, "m": 1, "maxit": 1})  # compile kernels
        seeds = iter(range(10_000))
        wall, cpu = _timed(lambda data=data, kwargs=kwargs, seeds=seeds: _impute(
            data, "st", next(seeds), **kwargs), reps)
        rows.append({
            "data": f"paper design, x1 {kind} (4), {k} studies",
            "methods (x1 / x2)": " / ".join(METHODS[(kind, strategy)].values()),
            "random slope y in x1": "yes" if slope else "no",
            "wall (m=5, maxit=10)": f"{wall:.3f} s", "CPU": f"{cpu:.3f} s",
        })
    return rows


def ipdna(reps: int) -> list[dict]:
    data = pd.read_csv(IPDNA)
    kwargs = {"m": 5, "maxit": 10, "method": {"bnp": "2l.pmm"}}
    _impute(data, "centre", 0, **{**kwargs, "m": 1, "maxit": 1})
    seeds = iter(range(10_000))
    wall, cpu = _timed(lambda: _impute(data, "centre", next(seeds), **kwargs), reps)
    imp = _impute(data, "centre", 1, **kwargs)
    bnp = np.concatenate([imp.complete(i)["bnp"].to_numpy() for i in range(1, 6)])
    return [{"data": f"IPDNa (11 685 rows, 28 centres; imputed bnp >= {np.nanmin(bnp):.0f})",
             "methods (x1 / x2)": "bnp 2l.pmm, others default",
             "random slope y in x1": "",
             "wall (m=5, maxit=10)": f"{wall:.3f} s", "CPU": f"{cpu:.3f} s"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-ipdna", action="store_true")
    parser.add_argument("--no-paper", action="store_true")
    args = parser.parse_args()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = [] if args.no_paper else paper_design(args.reps)
    if not args.no_ipdna and IPDNA.exists():
        rows += ipdna(args.reps)
    load1 = os.getloadavg()
    print(f"Categorical / pmm imputation; {machine()}; load average before "
          f"{load0[0]:.2f}, after {load1[0]:.2f} ({time.perf_counter() - t0:.0f} s)")
    print_table(rows, ["data", "methods (x1 / x2)", "random slope y in x1",
                       "wall (m=5, maxit=10)", "CPU"])


if __name__ == "__main__":
    main()
