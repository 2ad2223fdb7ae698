"""Speed and acceptance rates of the random-effects posterior samplers (mlmi.posterior).

    python benchmarks/bench_posterior.py [--reps 20] [--draws 20000] [--ar-draws 5000]

Studies:

* the three validation studies of tests/test_posterior.py — (a) 300 participants,
  binomial, strong heterogeneity; (b) 15 rows, binomial, all responses 0; (c) 60 rows,
  Poisson with a continuous random slope;
* "paper-like": 10 studies of 300 participants of the paper's design (METHOD.md §6),
  15 % of the rows of each study sporadically missing, so ~255 observed rows per study;
  (beta, Psi) = the GLMM fit of the imputation model on the observed rows:
  x1 ~ y + x2 + (1 + y | st) (binomial) and x2 ~ y + x1 + (1 + y | st) (Poisson), for
  weak / moderate / strong heterogeneity, and x1 with a continuous outcome y (then no
  two rows are alike and nothing can be merged: the slow case).

Columns: ``exact ms/20k`` — time of ``draw_random_effects(size=20000)`` per study;
``many µs/study`` — one ``draw_many`` call over the studies (30 copies of a single
study), divided by the number of studies, for "exact" and "laplace" (the mode alone);
``acc exact`` / ``acc prior-ar`` — accepted / proposals; ``prior-ar fallback`` —
share of prior-ar draws that hit the 250-proposal cap and kept a prior draw;
``prior-ar > M`` — share of prior-ar proposals whose likelihood exceeded its bound M
(the likelihood at the posterior mode); ``exact > M`` — the same count for the exact
sampler's bound (0 = exact). Median of ``--reps`` timings, one BLAS thread.
"""

from __future__ import annotations

from _common import machine, median_ms, print_table  # first: 1 thread

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from mlmi.glmm import fit_arrays
from mlmi.posterior import SamplerStats, draw_many, draw_random_effects
from mlmi.simulation import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_posterior import study_large_strong, study_poisson, study_small_zero


def stack(studies):
    """Row-bind studies that share family, beta and psi: (family, y, X, W, starts, beta, psi)."""
    fam, beta, psi = studies[0][0], studies[0][4], studies[0][5]
    ys = [s[1] for s in studies]
    starts = np.concatenate([[0], np.cumsum([len(y) for y in ys])])
    return (fam, np.concatenate(ys), np.vstack([s[2] for s in studies]),
            np.vstack([s[3] for s in studies]), starts, beta, psi)


def paper_like(response, fixed, slope, family, outcome, het, rng):
    """10 studies x 300 of the paper's design, 15 % of rows dropped; (beta, Psi) fitted."""
    data = generate(outcome, het, 10, rng)
    data = data[rng.random(len(data)) >= 0.15].sort_values("st", kind="stable")
    n = len(data)
    y = data[response].to_numpy(float)
    X = np.column_stack([np.ones(n)] + [data[c].to_numpy(float) for c in fixed])
    W = np.column_stack([np.ones(n), data[slope].to_numpy(float)])
    groups = data["st"].to_numpy()
    fit = fit_arrays(y, X, W, groups, family)
    _, idx = np.unique(groups, return_index=True)
    starts = np.append(np.sort(idx), n)
    return (family, y, X, W, starts, fit.beta, fit.psi)


def measure(name, stacked, args, n_copies=1):
    family, y, X, W, starts, beta, psi = stacked
    k = len(starts) - 1
    studies = [(family, y[a:b], X[a:b], W[a:b], beta, psi)
               for a, b in itertools.pairwise(starts)]
    # warm the compiled kernels
    draw_random_effects(*studies[0], 10, np.random.default_rng(0))
    draw_many(*stacked, np.random.default_rng(0))
    g = np.random.default_rng(1)
    ex, ar = SamplerStats(), SamplerStats()
    t_exact = []
    for s in studies[:k // n_copies]:
        t_exact.append(median_ms(lambda s=s: draw_random_effects(*s, args.draws, g),
                                 max(3, args.reps // 4)))
        draw_random_effects(*s, args.draws, g, stats=ex)
        draw_random_effects(*s, args.ar_draws, g, method="prior-ar", stats=ar)
    many = {m: 1e3 * median_ms(lambda m=m: draw_many(*stacked, g, method=m), args.reps) / k
            for m in ("exact", "laplace")}
    rows_per = np.diff(starts)
    return {
        "case": name,
        "studies x rows": (f"{k // n_copies} x {rows_per.mean():.0f}" if n_copies == 1
                           else f"1 x {rows_per[0]}"),
        "q": W.shape[1],
        "exact ms/20k": f"{np.mean(t_exact) * 20000 / args.draws:.1f}",
        "many µs/study exact": f"{many['exact']:.1f}",
        "many µs/study laplace": f"{many['laplace']:.1f}",
        "acc exact": f"{ex.acceptance_rate():.3f}",
        "exact > M": ex.bound_exceeded,
        "acc prior-ar": f"{ar.acceptance_rate():.4f}",
        "prior-ar fallback": f"{ar.fallback_rate():.3f}",
        "prior-ar > M": f"{ar.bound_exceeded_rate():.2e}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="timings per measurement")
    parser.add_argument("--draws", type=int, default=20000, help="exact draws per study")
    parser.add_argument("--ar-draws", type=int, default=5000, help="prior-ar draws per study")
    parser.add_argument("--seed", type=int, default=20251124)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    rows = []
    for name, make in (("(a) binomial 300, strong", study_large_strong),
                       ("(b) binomial 15, all 0", study_small_zero),
                       ("(c) poisson 60, cont. slope", study_poisson)):
        rows.append(measure(name, stack([make()] * 30), args, n_copies=30))
        print(f"  done: {name}", file=sys.stderr, flush=True)
    x1_model = ("x1", ["y", "x2"], "y", "binomial")
    x2_model = ("x2", ["y", "x1"], "y", "poisson")
    for het in ("weak", "moderate", "strong"):
        for label, model in (("x1 binomial", x1_model), ("x2 poisson", x2_model)):
            stacked = paper_like(*model, "binary", het, rng)
            rows.append(measure(f"paper {label}, {het}", stacked, args))
            print(f"  done: paper {label} {het}", file=sys.stderr, flush=True)
    stacked = paper_like(*x1_model, "continuous", "moderate", rng)
    rows.append(measure("paper x1 binomial, cont. y, moderate", stacked, args))

    print(f"Posterior draws of b (mlmi.posterior); {machine()}; one BLAS thread; "
          f"median of {args.reps}; acceptance over {args.draws} exact and "
          f"{args.ar_draws} prior-ar draws per study")
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
