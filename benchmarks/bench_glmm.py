"""Speed of the GLMM engine on the paper's design, next to lme4 in the same run.

    python benchmarks/bench_glmm.py [--reps 30] [--r-reps 10] [--no-r]

Models on a 3000-row, 10-study data set of the paper's design (METHOD.md §6,
moderate heterogeneity):

A  y  ~ x1 + x2 + (1 + x1 | st)   binomial   (analysis model)
B  x1 ~ y + x2 + (1 + y | st)     binomial   (imputation model of x1)
C  x2 ~ y + x1 + (1 + y | st)     poisson    (imputation model of x2)
D  y  ~ x1 + x2 + (1 + x1 | st)   gaussian   (continuous outcome, ML)
E  x1 ~ y + x2 + (1 + y | st)     binomial   (imputation of x1 when y is continuous)

A–C have discrete variables only, so identical rows of a study are merged into
weighted rows (mlmi/glmm/compress.py); E shows the speed without that help.

"cold": a fit from scratch (what a user's single fit costs); "warm": a fit started
from the previous fit of the same model on a data set in which 15 % of the predictor
values were redrawn, as between two iterations of the chained equations. Both include
the Hessian-based vcov. Median of ``--reps`` fits, one BLAS thread; "cold best": the
shortest of another ``--reps`` cold fits (the run no other tenant interrupted).
"""

from __future__ import annotations

from _common import (  # first: 1 thread
    best_ms,
    have_r_package,
    machine,
    median_ms,
    print_table,
    run_r,
)

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mlmi.glmm import fit_arrays
from mlmi.simulation import generate

MODELS = {
    "A": ("y", ["x1", "x2"], "x1", "binomial", "binary"),
    "B": ("x1", ["y", "x2"], "y", "binomial", "binary"),
    "C": ("x2", ["y", "x1"], "y", "poisson", "binary"),
    "D": ("y", ["x1", "x2"], "x1", "gaussian", "continuous"),
    # continuous predictor y: no two rows alike, so no row merging (see compress.py)
    "E": ("x1", ["y", "x2"], "y", "binomial", "continuous"),
}


def arrays(data: pd.DataFrame, response: str, fixed: list[str], slope: str):
    n = len(data)
    X = np.column_stack([np.ones(n)] + [data[c].to_numpy(float) for c in fixed])
    W = np.column_stack([np.ones(n), data[slope].to_numpy(float)])
    return data[response].to_numpy(float), X, W, data["st"].to_numpy()


def perturb(data: pd.DataFrame, cols: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """Redraw 15 % of each predictor from its marginal, like one MICE iteration."""
    out = data.copy()
    for c in cols:
        idx = rng.random(len(out)) < 0.15
        out.loc[idx, c] = rng.choice(data[c].to_numpy(), size=int(idx.sum()))
    return out


def r_times(datasets: dict[str, Path], reps: int) -> dict[str, float]:
    """Median glmer/lmer time (ms) per model on the same CSVs."""
    lines = ["suppressMessages(library(lme4))", "res <- c()"]
    for key, (resp, fixed, slope, family, _) in MODELS.items():
        formula = f"{resp} ~ {' + '.join(fixed)} + (1 + {slope} | st)"
        lines.append(f"d <- read.csv('{datasets[key]}'); d$st <- factor(d$st)")
        if family == "gaussian":
            call = f"lmer({formula}, data = d, REML = FALSE)"
        else:
            call = f"glmer({formula}, data = d, family = {family})"
        lines.append(
            f"t <- replicate({reps}, system.time(suppressWarnings(suppressMessages({call})))"
            f"[['elapsed']]); res['{key}'] <- median(t) * 1000"
        )
    lines.append("cat(paste(names(res), res, sep = '=', collapse = ' '))")
    out = run_r("\n".join(lines))
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30, help="fits per model (median)")
    parser.add_argument("--r-reps", type=int, default=10, help="glmer fits per model")
    parser.add_argument("--no-r", action="store_true", help="skip the lme4 comparison")
    parser.add_argument("--seed", type=int, default=20251124)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    data = {"binary": generate("binary", "moderate", 10, rng),
            "continuous": generate("continuous", "moderate", 10, rng)}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="mlmi-bench-"))
    csvs = {}
    for key, (resp, fixed, slope, family, outcome) in MODELS.items():
        d1 = data[outcome]
        d2 = perturb(d1, fixed, rng)
        a1, a2 = arrays(d1, resp, fixed, slope), arrays(d2, resp, fixed, slope)
        names = ["(Intercept)", *fixed]
        csvs[key] = tmp / f"{key}.csv"
        d1.to_csv(csvs[key], index=False)
        fit_arrays(*a1, family, x_names=names)  # compile / warm the caches
        prev = fit_arrays(*a1, family, x_names=names)
        cold = median_ms(lambda a1=a1, family=family, names=names:
                         fit_arrays(*a1, family, x_names=names), args.reps)
        warm = median_ms(lambda a2=a2, family=family, names=names, prev=prev:
                         fit_arrays(*a2, family, x_names=names, start=prev), args.reps)
        best = best_ms(lambda a1=a1, family=family, names=names:
                       fit_arrays(*a1, family, x_names=names), args.reps)
        w = fit_arrays(*a2, family, x_names=names, start=prev)
        rows.append({
            "model": key, "formula": f"{resp} ~ {' + '.join(fixed)} + (1 + {slope} | st)",
            "family": family, "cold ms": f"{cold:.2f}", "cold best ms": f"{best:.2f}",
            "warm ms": f"{warm:.2f}",
            "evals cold/warm": f"{prev.n_eval}/{w.n_eval}", "_cold": cold,
        })
    if not args.no_r and have_r_package("lme4"):
        rt = r_times(csvs, args.r_reps)
        for r in rows:
            r["lme4 ms"] = f"{rt[r['model']]:.0f}"
            r["lme4 / cold"] = f"{rt[r['model']] / r['_cold']:.0f}x"
    print(f"GLMM engine, 3000 rows, 10 studies; {machine()}; "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; median of {args.reps}")
    cols = ["model", "formula", "family", "cold ms", "cold best ms", "warm ms",
            "evals cold/warm"]
    if "lme4 ms" in rows[0]:
        cols += ["lme4 ms", "lme4 / cold"]
    print_table(rows, cols)


if __name__ == "__main__":
    main()
