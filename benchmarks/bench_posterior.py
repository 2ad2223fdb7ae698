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
  two rows are alike and nothing can be merged: the slow case);
* the other families (``--families``, default on): 10 simulated studies of ~250
  observed rows (x1 binary, x2 normal, random intercept and x1 slope unless said
  otherwise), (beta, Psi, family parameters) = the GLMM fit: ordinal K = 4 (q = 2),
  negative binomial theta = 1.5 (q = 2), multinomial K = 3 with random intercepts
  (Q = 2), K = 4 with random intercepts (Q = 3) and K = 3 with intercept and slope
  (Q = 4).

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


def other_family(family, rng, K=3, q=2, n_studies=10, n_rows=300):
    """10 studies of the other families' models, 15 % of rows dropped; fitted
    (beta, Psi) and the family's kernel parameters: (family, y, X, W, starts, beta, psi),
    extra."""
    rows = []
    for i in range(n_studies):
        x1 = rng.binomial(1, 0.5, n_rows).astype(float)
        x2 = rng.standard_normal(n_rows)
        b = rng.normal(0, [0.8, 0.5])
        rows.append((np.full(n_rows, i), x1, x2, b))
    st = np.concatenate([r[0] for r in rows])
    x1 = np.concatenate([r[1] for r in rows])
    x2 = np.concatenate([r[2] for r in rows])
    b = np.vstack([r[3] for r in rows])[st]
    n = st.size
    if family == "ordinal":
        eta = 0.7 * x1 - 0.4 * x2 + b[:, 0] + b[:, 1] * x1
        cum = 1 / (1 + np.exp(-(np.array([-1.0, 0.2, 1.4])[None, :] - eta[:, None])))
        y = np.sum(rng.random(n)[:, None] > cum, axis=1).astype(float)
        X = np.column_stack([x1, x2])
    elif family == "negbin":
        mu = np.exp(0.5 + 0.4 * x1 - 0.3 * x2 + b[:, 0] + b[:, 1] * x1)
        y = rng.poisson(rng.gamma(1.5, mu / 1.5)).astype(float)
        X = np.column_stack([np.ones(n), x1, x2])
    else:
        M = K - 1
        B = rng.normal(0, 0.6, (M, 3))
        bk = rng.normal(0, 0.7, (n_studies, M))[st]
        eta = np.column_stack([np.ones(n), x1, x2]) @ B.T + bk
        if q == 2:
            eta += rng.normal(0, 0.4, (n_studies, M))[st] * x1[:, None]
        full = np.column_stack([np.zeros(n), eta])
        prob = np.exp(full - full.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        y = np.sum(rng.random(n)[:, None] > np.cumsum(prob, 1)[:, :-1], axis=1).astype(float)
        X = np.column_stack([np.ones(n), x1, x2])
    W = np.column_stack([np.ones(n), x1])[:, :q]
    keep = rng.random(n) >= 0.15
    y, X, W, st = y[keep], X[keep], W[keep], st[keep]
    fit = fit_arrays(y, X, W, st, family)
    _, idx = np.unique(st, return_index=True)
    starts = np.append(np.sort(idx), len(y))
    extra = fit.family.kernel_extra(fit.extra) if family != "multinomial" else None
    return (family, y, X, W, starts, fit.beta, fit.psi), extra


def measure(name, stacked, args, n_copies=1, extra=None):
    family, y, X, W, starts, beta, psi = stacked
    k = len(starts) - 1
    studies = [(family, y[a:b], X[a:b], W[a:b], beta, psi)
               for a, b in itertools.pairwise(starts)]
    # warm the compiled kernels
    draw_random_effects(*studies[0], 10, np.random.default_rng(0), extra=extra)
    draw_many(*stacked, np.random.default_rng(0), extra=extra)
    g = np.random.default_rng(1)
    ex, ar = SamplerStats(), SamplerStats()
    t_exact = []
    for s in studies[:k // n_copies]:
        t_exact.append(median_ms(lambda s=s: draw_random_effects(*s, args.draws, g,
                                                                 extra=extra),
                                 max(3, args.reps // 4)))
        draw_random_effects(*s, args.draws, g, stats=ex, extra=extra)
        draw_random_effects(*s, args.ar_draws, g, method="prior-ar", stats=ar, extra=extra)
    many = {m: 1e3 * median_ms(lambda m=m: draw_many(*stacked, g, method=m, extra=extra),
                               args.reps) / k
            for m in ("exact", "laplace")}
    rows_per = np.diff(starts)
    return {
        "case": name,
        "studies x rows": (f"{k // n_copies} x {rows_per.mean():.0f}" if n_copies == 1
                           else f"1 x {rows_per[0]}"),
        "Q": np.shape(psi)[0],
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
    parser.add_argument("--only-families", action="store_true",
                        help="only the ordinal / negbin / multinomial rows")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    rows = []
    frng = np.random.default_rng(args.seed + 1)
    for name, family, K, q in (("ordinal K=4, 10 x 255", "ordinal", 4, 2),
                               ("negbin, 10 x 255", "negbin", 0, 2),
                               ("multinomial K=3, rand. int.", "multinomial", 3, 1),
                               ("multinomial K=4, rand. int.", "multinomial", 4, 1),
                               ("multinomial K=3, int. + slope", "multinomial", 3, 2)):
        stacked, extra = other_family(family, frng, K=K, q=q)
        rows.append(measure(name, stacked, args, extra=extra))
        print(f"  done: {name}", file=sys.stderr, flush=True)
    if args.only_families:
        print(f"Posterior draws of b (mlmi.posterior); {machine()}; one BLAS thread; "
              f"median of {args.reps}")
        print_table(rows, list(rows[0]))
        return
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
