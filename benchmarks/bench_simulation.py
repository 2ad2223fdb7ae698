"""Speed of the simulation study, and a projection of the paper's full grid.

    python benchmarks/bench_simulation.py [--reps-per-scenario 1]

1. One replication with all five methods (REF, CCA, STI, MLMI, 2STG; m = 5,
   maxit = 10), binary outcome, 10 studies, moderate heterogeneity, MAR, π_sys = 0.3:
   median of 5, one process, with the time of each method.
2. ``--reps-per-scenario`` replications of every one of the 120 scenarios, one process:
   mean seconds per replication by outcome × number of studies, and the projection of
   120 × 1000 replications on this machine (one core, and all cores with the parallel
   efficiency measured by running a batch with 2 local processes).
"""

from __future__ import annotations

from _common import machine, print_table  # first: one BLAS thread

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

from mlmi import simulation as sim


def one_replication() -> list[dict]:
    s = sim.parse_scenario("outcome=binary,heterogeneity=moderate,studies=10,sys=0.3,"
                           "mechanism=mar")
    sim.replicate(s, 0, 1)
    times, per = [], {}
    for r in range(1, 6):
        t0 = time.perf_counter()
        d = sim.replicate(s, r, 1)
        times.append(time.perf_counter() - t0)
        for m, g in d.groupby("method"):
            per.setdefault(m, []).append(g["seconds"].iloc[0])
    row = {"replication": "binary, k=10, moderate, MAR, 0.3", "total s": f"{np.median(times):.2f}"}
    row.update({m: f"{np.median(per[m]):.3f}" for m in sim.METHODS})
    return [row]


def grid(reps: int) -> tuple[pd.DataFrame, float]:
    rows = []
    for s in sim.scenarios("paper"):
        for r in range(reps):
            t0 = time.perf_counter()
            sim.replicate(s, r, 1)
            rows.append({**s, "seconds": time.perf_counter() - t0})
    per = pd.DataFrame(rows)
    return per, float(per["seconds"].mean())


def parallel_efficiency(batch: int = 24) -> float:
    """Throughput of 2 local processes relative to twice one process (same tasks)."""
    scen = [sim.parse_scenario("studies=10")]
    out1, out2 = tempfile.mkdtemp(), tempfile.mkdtemp()
    try:
        t0 = time.perf_counter()
        sim.run(scen, batch, out1, seed=3, progress=False, workers=1)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        sim.run(scen, batch, out2, seed=3, progress=False, workers=2)
        two = time.perf_counter() - t0
    finally:
        shutil.rmtree(out1)
        shutil.rmtree(out2)
    return one / (2 * two)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps-per-scenario", type=int, default=1)
    args = parser.parse_args()
    print(f"Simulation study; {machine()}")
    print_table(one_replication(), ["replication", "total s", *sim.METHODS])
    per, mean = grid(args.reps_per_scenario)
    table = per.groupby(["outcome", "studies"])["seconds"].mean().unstack().round(2)
    print("\nseconds per replication (all five methods), mean over scenarios:")
    print(table.to_string())
    eff = parallel_efficiency()
    cores = os.cpu_count() or 1
    total = 120 * 1000 * mean
    print(f"\nmean over the 120 scenarios: {mean:.2f} s per replication")
    print(f"full grid (120 × 1000): {total / 3600:.1f} h on one core; "
          f"{total / 3600 / (cores * eff):.1f} h on {cores} cores "
          f"(parallel efficiency of 2 processes {eff:.2f})")


if __name__ == "__main__":
    main()
