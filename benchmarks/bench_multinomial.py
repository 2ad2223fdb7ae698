"""Speed of the multinomial (baseline-category logit) GLMM fit, K = 4 (issue #10, point 6).

    python benchmarks/bench_multinomial.py [--reps 15] [--seed 20251202]

3000 rows, 10 studies, random intercept + slope of x1 for each of the K - 1 = 3
non-reference categories, correlated (Q = 6 random effects, 21 covariance parameters,
9 fixed effects):

P  paper's design predictors (METHOD.md §6): x1 binary, x2 a count — identical rows of
   a study merge into weighted rows (mlmi/glmm/compress.py);
C  x1 continuous N(0, 1), x2 binary — no two rows alike, nothing merges.

The response is drawn from the model with beta_k and a Psi with SDs 0.8 (intercepts) and
0.4 (slopes), correlations 0.3. "cold": a fit from scratch including the Hessian-based
vcov; median of ``--reps`` fits; wall-clock and process CPU time (on a shared machine
the CPU time is the fairer figure), one BLAS thread.
"""

from __future__ import annotations

from _common import machine  # first: one thread

import argparse
import os
import time

import numpy as np

from mlmi.glmm import fit_arrays

BETA = np.array([[-0.5, 0.5, -0.3], [-0.8, -0.4, 0.3], [0.2, 0.8, 0.1]])  # K - 1 = 3 rows


def psi(q: int = 2, M: int = 3) -> np.ndarray:
    sd = np.tile([0.8, 0.4][:q], M)
    corr = np.full((M * q, M * q), 0.3) + 0.7 * np.eye(M * q)
    return corr * np.outer(sd, sd)


def simulate(design: str, rng: np.random.Generator, k: int = 10, n_i: int = 300):
    """(y, X, W, groups) of one data set."""
    n = k * n_i
    g = np.repeat(np.arange(k), n_i)
    if design == "P":
        nu = rng.multivariate_normal(np.zeros(2), [[0.2, 0.005], [0.005, 0.2]], size=k)
        x1 = rng.binomial(1, 1 / (1 + np.exp(-(0.4 + nu[g, 0])))).astype(float)
        x2 = rng.poisson(np.exp(nu[g, 1])).astype(float)
    else:
        x1 = rng.standard_normal(n)
        x2 = rng.binomial(1, 0.5, n).astype(float)
    X = np.column_stack([np.ones(n), x1, x2])
    W = X[:, :2]
    M, q = BETA.shape[0], 2
    b = rng.multivariate_normal(np.zeros(M * q), psi(q, M), size=k)
    eta = X @ BETA.T + np.stack([np.sum(W * b[g, l * q:(l + 1) * q], axis=1)
                                 for l in range(M)], axis=1)
    full = np.hstack([np.zeros((n, 1)), eta])
    prob = np.exp(full - full.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    y = np.sum(rng.random(n)[:, None] > np.cumsum(prob, axis=1)[:, :-1], axis=1)
    return y.astype(float), X, W, g


def timed(fn, reps: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="fits per data set (median)")
    parser.add_argument("--datasets", type=int, default=5, help="data sets per design")
    parser.add_argument("--seed", type=int, default=20251202)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    names = ["(Intercept)", "x1", "x2"]
    print(f"multinomial GLMM, K = 4, 3000 rows, 10 studies, (1 + x1 | st); {machine()}; "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
          f"median of {args.reps} cold fits per data set")
    print("| design | data set | rows after merging | cold ms (wall) | cold ms (CPU) | evals |"
          " converged | singular |")
    print("|---|---|---|---|---|---|---|---|")
    for design in ("P", "C"):
        for d in range(args.datasets):
            y, X, W, g = simulate(design, rng)
            fit = fit_arrays(y, X, W, g, "multinomial", x_names=names)  # warm the caches
            wall, cpu = timed(lambda y=y, X=X, W=W, g=g:
                              fit_arrays(y, X, W, g, "multinomial", x_names=names), args.reps)
            from mlmi.glmm.design import make_design
            rows = make_design(y, X, W, g).compressed().y.shape[0]
            print(f"| {design} | {d + 1} | {rows} | {wall:.1f} | {cpu:.1f} | {fit.n_eval} |"
                  f" {fit.converged} | {fit.singular} |")


if __name__ == "__main__":
    main()
