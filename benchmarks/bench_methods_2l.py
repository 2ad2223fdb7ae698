"""Time per univariate step of the multilevel methods of issue 11 on the paper's design.

    python benchmarks/bench_methods_2l.py [--iterations 10] [--studies 10 30] [--reps 3]

The paper's design (binary outcome, strong heterogeneity, 3000 rows; MAR, 30 %
systematic), with the incomplete ``x1`` recoded as a 4-category variable (x1 × 2 plus a
coin: codes 0..3, so it stays related to y and the study) for ``2l.polr`` (ordinal) and
``2l.polyreg`` (nominal), and the incomplete count ``x2`` for ``2l.pois``, ``2l.nb``
and ``2l.pmm``; ``2l.bin`` on the binary x1 for reference. Predictors: y (random slope,
as the paper) and the other x (its current values: observed plus a single hot-deck fill).
Each method runs ``iterations`` steps on the same Problem (warm starts, as in the MICE
loop): the first step (cold, includes compiling nothing — kernels are warmed first) and
the median of the others are reported, with the sampler's acceptance rate.

Whole imputations (m = 5, maxit = 10, one process, ``--reps`` runs, median wall and CPU
time): the paper's design (10 studies) with x1 a 4-category ordered categorical (2l.polr
by the default strategy) and the same as nominal (2l.polyreg), and IPDNa (../shared/data)
with ``method={"bnp": "2l.pmm"}`` (issue 11's speed targets: <= 1 s and <= 10 s).
"""

from __future__ import annotations

from _common import machine, print_table  # first: one BLAS thread

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mlmi
from mlmi.methods import COMPLETE, SPORADIC, SYSTEMATIC, Problem, get_method
from mlmi.simulation import ampute, generate


def _problem(data, target, other, vtype, seed, n_levels=0, sampler="exact"):
    codes = data["st"].to_numpy() - 1
    K = int(codes.max()) + 1
    y = data[target].to_numpy(dtype=float)
    ry = ~np.isnan(y)
    o = data[other].to_numpy(dtype=float).copy()
    rng = np.random.default_rng(seed)
    o[np.isnan(o)] = rng.choice(o[~np.isnan(o)], size=int(np.isnan(o).sum()))
    x = np.column_stack([data["y"].to_numpy(dtype=float), o])
    n_obs = np.bincount(codes[ry], minlength=K)
    size = np.bincount(codes, minlength=K)
    status = np.where(n_obs == 0, SYSTEMATIC, np.where(n_obs < size, SPORADIC, COMPLETE))
    yy = y.copy()
    return Problem(variable=target, vtype=vtype, y=yy, ry=ry, wy=~ry, x=x,
                   x_names=["y", other], type=np.array([2, 1]), cluster=codes,
                   cluster_labels=np.arange(1, K + 1), status=status, rng=rng,
                   n_levels=n_levels, levels=list(range(n_levels)) if n_levels else None,
                   sampler=sampler)


def run(studies: int, iterations: int) -> list[dict]:
    rng = np.random.default_rng(studies)
    data = ampute(generate("binary", "strong", studies, rng), 0.3, "mar", rng)
    cat = data["x1"] * 2 + rng.integers(0, 2, len(data))  # NaN stays NaN
    data["x1c"] = cat
    cases = [("2l.bin", "x1", "x2", "binary", 0), ("2l.polr", "x1c", "x2", "ordinal", 4),
             ("2l.polyreg", "x1c", "x2", "nominal", 4), ("2l.pois", "x2", "x1", "count", 0),
             ("2l.nb", "x2", "x1", "count", 0), ("2l.pmm", "x2", "x1", "count", 0)]
    rows = []
    for method, target, other, vtype, L in cases:
        func = get_method(method).func
        # warm the compiled kernels on a throw-away problem
        func(_problem(data, target, other, vtype, 0, L, _sampler(method)))
        p = _problem(data, target, other, vtype, 1, L, _sampler(method))
        times, acc, prop = [], 0, 0
        for _ in range(iterations):
            t0 = time.perf_counter()
            d = func(p)
            times.append(time.perf_counter() - t0)
            acc += d.info.get("accepted", 0)
            prop += d.info.get("proposals", 0)
        rows.append({"studies": studies, "method": method, "variable": f"{target} ({vtype})",
                     "cold ms": f"{1e3 * times[0]:.1f}",
                     "warm ms (median)": f"{1e3 * np.median(times[1:]):.1f}",
                     "acceptance": f"{acc / prop:.2f}" if prop else "",
                     "sampler": _sampler(method)})
    return rows


def _sampler(method: str) -> str:
    return "exact" if method != "2l.polyreg" or _multinomial_exact() else "marginal"


def _multinomial_exact() -> bool:
    """Whether draw_many takes the multinomial family (issue 11, engineer 11s)."""
    from mlmi.glmm import get_family
    from mlmi.posterior import draw_many

    fam = get_family("multinomial").with_levels([0, 1, 2])
    try:
        draw_many(fam, np.array([0.0, 1.0, 2.0]), np.ones((3, 1)), np.ones((3, 1)),
                  np.array([0, 3]), np.zeros(2), np.eye(2), np.random.default_rng(0))
        return True
    except Exception:
        return False


IPDNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "micemd_IPDNa.csv"


def whole(reps: int) -> list[dict]:
    rng = np.random.default_rng(10)
    d = ampute(generate("binary", "strong", 10, rng), 0.3, "mar", rng)
    codes = d["x1"] * 2 + rng.integers(0, 2, len(d))
    runs = []
    for kind, ordered in (("ordinal", True), ("nominal", False)):
        data = d.copy()
        data["x1"] = pd.Categorical(codes, categories=[0.0, 1.0, 2.0, 3.0], ordered=ordered)
        runs.append((f"paper design, 10 studies, x1 {kind} (4 categories)", data, "st", {}))
    if IPDNA.exists():
        runs.append(("IPDNa, bnp by 2l.pmm", pd.read_csv(IPDNA), "centre",
                     {"method": {"bnp": "2l.pmm"}}))
    rows = []
    for label, data, cluster, kw in runs:
        wall, cpu = [], []
        for r in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            imp = mlmi.impute(data, cluster, m=5, maxit=10, seed=100 + r, progress=False,
                              **kw)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows.append({"data": label, "methods": ", ".join(
            f"{v}: {m}" for v, m in imp.methods.items() if m),
            "wall s (median)": f"{np.median(wall):.2f}", "CPU s (median)":
            f"{np.median(cpu):.2f}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--studies", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(machine())
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in args.studies:
            rows += run(k, args.iterations)
        print_table(rows, list(rows[0]))
        if args.reps:
            big = whole(args.reps)
            print_table(big, list(big[0]))


if __name__ == "__main__":
    main()
