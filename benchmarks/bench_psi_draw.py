"""Cost of each psi_draw (the draw of Psi*) per imputation, against the paper's draw.

    python benchmarks/bench_psi_draw.py [--reps 7] [--no-ipdna]

Whole imputations (m = 5, maxit = 10, one process) of the paper's design (binary
outcome, x1 binary and x2 count incomplete: 2l.bin, 2l.pois; 6, 10 and 30 studies) and
of IPDNa (../shared/data: six 2l.norm variables and one 2l.bin), with every psi_draw
("auto", the default, is ml-normal at 6 studies and the paper's draw at 10 and 30). The
draws are timed interleaved (auto, paper, corrected, ml-normal, auto, ...) with a
different seed per round, so a busy machine slows them alike; the table gives the median
time and its ratio to the paper's draw. The draw of Psi* alone (``draw_psi_star`` on one
fitted model, median of 2000 calls) is timed too.
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
from mlmi.glmm import fit_arrays
from mlmi.methods._multilevel import PSI_DRAWS, draw_psi_star
from mlmi.simulation import ampute, generate

IPDNA = Path(__file__).resolve().parents[2] / "shared" / "data" / "micemd_IPDNa.csv"


def _interleaved(label: str, run, reps: int) -> list[dict]:
    times: dict[str, list[float]] = {d: [] for d in PSI_DRAWS}
    for r in range(reps):
        for d in PSI_DRAWS:
            t0 = time.perf_counter()
            run(d, 100 + r)
            times[d].append(time.perf_counter() - t0)
    base = float(np.median(times["paper"]))
    return [{"data": label, "psi_draw": d, "imputation (m=5, maxit=10)":
             f"{np.median(times[d]):.3f} s",
             "vs paper": f"{np.median(times[d]) / base:.3f}"} for d in PSI_DRAWS]


def paper_design(reps: int) -> list[dict]:
    rows = []
    # 6 studies: 4 observe x1 and x2 (q = 2), so "auto" is ml-normal there; at 10 and 30
    # it is the paper's draw
    for k in (6, 10, 30):
        rng = np.random.default_rng(k)
        data = ampute(generate("binary", "moderate", k, rng), 0.3, "mar", rng)
        for d in PSI_DRAWS:  # compile every kernel first
            mlmi.impute(data, "st", m=1, maxit=1, seed=0, psi_draw=d)

        def run(d, seed, data=data):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mlmi.impute(data, "st", m=5, maxit=10, seed=seed, psi_draw=d,
                            random={"x1": ["y"], "x2": ["y"]})

        rows += _interleaved(f"paper design, {k} studies (2l.bin, 2l.pois)", run, reps)
    return rows


def ipdna(reps: int) -> list[dict]:
    data = pd.read_csv(IPDNA)
    for d in PSI_DRAWS:
        mlmi.impute(data, "centre", m=1, maxit=1, seed=0, psi_draw=d)

    def run(d, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlmi.impute(data, "centre", m=5, maxit=10, seed=seed, psi_draw=d)

    return _interleaved("IPDNa (6 × 2l.norm, 2l.bin)", run, reps)


def draw_only() -> list[dict]:
    """The Psi* step alone, on one binomial and one gaussian fit of 3000 rows."""
    rng = np.random.default_rng(3)
    rows = []
    for fam, outcome in (("binomial", "binary"), ("gaussian", "continuous")):
        d = generate(outcome, "moderate", 30, rng)
        y = d["y"].to_numpy(float)
        X = np.column_stack([np.ones(len(d)), d["x1"], d["x2"]])
        W = X[:, :2]
        g = d["st"].to_numpy()
        fit = fit_arrays(y, X, W, g, fam)
        lmm = (y, X, W, g) if fam == "gaussian" else None
        for dr in PSI_DRAWS:
            r = np.random.default_rng(0)
            ts = []
            for _ in range(2000):
                t0 = time.perf_counter()
                draw_psi_star(fit, dr, r, lmm_data=lmm)
                ts.append(time.perf_counter() - t0)
            rows.append({"data": f"Psi* step alone, {fam} fit (30 studies, 3000 rows)",
                         "psi_draw": dr,
                         "imputation (m=5, maxit=10)": f"{1e6 * np.median(ts):.0f} µs",
                         "vs paper": ""})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-ipdna", action="store_true")
    args = parser.parse_args()
    rows = paper_design(args.reps)
    if not args.no_ipdna and IPDNA.exists():
        rows += ipdna(max(3, args.reps // 2))
    rows += draw_only()
    print(f"psi_draw cost; {machine()}")
    print_table(rows, ["data", "psi_draw", "imputation (m=5, maxit=10)", "vs paper"])


if __name__ == "__main__":
    main()
