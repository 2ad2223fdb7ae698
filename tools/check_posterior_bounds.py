"""Stress check of the exact posterior sampler's bound on random studies (mlmi.posterior).

    python tools/check_posterior_bounds.py [--studies 300] [--draws 5000] [--seed 1]
        [--families ordinal,negbin,multinomial]

For each random study (family, size, design, Psi, beta and responses drawn at random,
including one-sided studies: all in one category / all zeros, and studies that never
show some category), draws ``--draws`` exact draws with draw_random_effects and records
the acceptance rate and the number of proposals whose density ratio exceeded the
optimised bound (``bound_exceeded``; 0 = the sampler was exact). Prints a summary per
family and dimension (mean / 5th percentile / worst acceptance, studies with an
exceedance) and the worst studies. The numbers quoted in docs/samplers-and-diagnostics.md
come from this script.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from mlmi.glmm.families import get_family
from mlmi.posterior import SamplerStats, draw_random_effects


def random_psi(rng, Q):
    scale = np.exp(rng.uniform(np.log(0.1), np.log(3.0)))
    A = rng.standard_normal((Q, Q + 2))
    S = A @ A.T / (Q + 2)
    d = np.sqrt(np.diag(S))
    return scale * S / np.outer(d, d)


def random_study(rng, family):
    n = int(rng.choice([1, 2, 3, 5, 8, 15, 30, 80, 200, 600]))
    q = int(rng.choice([1, 2, 2, 3])) if family != "multinomial" else int(rng.choice([1, 1, 2]))
    x1 = rng.binomial(1, 0.5, n).astype(float)
    x2 = rng.standard_normal(n)
    Xf = np.column_stack([np.ones(n), x1, x2])
    W = Xf[:, :q].copy()
    shape = rng.random()
    if family == "ordinal":
        K = int(rng.choice([2, 3, 4, 5]))
        th = np.sort(rng.normal(0, 1.5, K - 1)) + np.arange(K - 1) * 0.3
        alpha = np.concatenate([th[:1], np.log(np.diff(th))])
        X = Xf[:, 1:]
        beta = rng.normal(0, 0.7, 2)
        psi = random_psi(rng, q)
        extra = get_family("ordinal").kernel_extra(alpha)
        b = rng.multivariate_normal(np.zeros(q), psi)
        if shape < 0.2:
            y = np.full(n, float(rng.integers(0, K)))
        else:
            y = get_family("ordinal").sample(X @ beta + W @ b, rng, extra=alpha)
        return dict(family="ordinal", y=y, X=X, W=W, beta=beta, psi=psi, extra=extra,
                    Q=q, K=K, n=n)
    if family == "negbin":
        theta = float(np.exp(rng.uniform(np.log(0.2), np.log(50))))
        beta = np.array([rng.normal(0, 1.2), rng.normal(0, 0.5), rng.normal(0, 0.5)])
        psi = random_psi(rng, q)
        b = rng.multivariate_normal(np.zeros(q), psi)
        mu = np.exp(np.clip(Xf @ beta + W @ b, -20, 8))
        y = np.zeros(n) if shape < 0.2 else rng.poisson(rng.gamma(theta, mu / theta))
        extra = get_family("negbin").kernel_extra(np.array([np.log(theta)]))
        return dict(family="negbin", y=y.astype(float), X=Xf, W=W, beta=beta, psi=psi,
                    extra=extra, Q=q, K=0, n=n)
    K = int(rng.choice([2, 3, 3, 4]))
    M = K - 1
    X = Xf[:, :2]
    beta = rng.normal(0, 0.8, 2 * M)
    Q = M * q
    psi = random_psi(rng, Q)
    b = rng.multivariate_normal(np.zeros(Q), psi).reshape(M, q)
    eta = X @ beta.reshape(M, 2).T + W @ b.T
    if shape < 0.15:
        y = np.full(n, float(rng.integers(0, K)))
    else:
        y = get_family("multinomial").sample(eta, rng)
        if shape < 0.3 and K > 2:  # never shows its last category
            y = np.minimum(y, K - 2)
    return dict(family="multinomial", y=y, X=X, W=W, beta=beta, psi=psi, extra=None, Q=Q,
                K=K, n=n)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=300)
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--families", default="ordinal,negbin,multinomial")
    ap.add_argument("--save", default=None,
                    help="a .npz file to save the studies with a proposal above the bound")
    args = ap.parse_args(argv)
    rows = []
    saved = {}
    t0 = time.time()
    for family in args.families.split(","):
        code = ["ordinal", "negbin", "multinomial"].index(family)
        for i in range(args.studies):
            # one stream per study, so that any study can be re-created on its own
            rng = np.random.default_rng([args.seed, code, i])
            s = random_study(rng, family)
            st = SamplerStats()
            draw_random_effects(s["family"], s["y"], s["X"], s["W"], s["beta"], s["psi"],
                                args.draws, rng, stats=st, extra=s["extra"])
            rows.append((family, s["Q"], s["K"], s["n"], st.acceptance_rate(),
                         st.bound_exceeded, st.fallbacks, st.mode_failures,
                         float(np.trace(s["psi"]) / s["Q"])))
            if st.bound_exceeded:
                for key, val in s.items():
                    if val is not None:
                        saved[f"{family}{i}_{key}"] = np.asarray(val)
    print(f"{len(rows)} studies, {args.draws} draws each, {time.time() - t0:.0f} s")
    print(f"{'family':12s} {'Q':>2s} {'studies':>7s} {'acc mean':>8s} {'acc p5':>7s} "
          f"{'acc min':>7s} {'exceeded':>8s} {'fallback':>8s} {'mode fail':>9s}")
    keys = sorted({(r[0], r[1]) for r in rows})
    for fam, Q in keys:
        sel = [r for r in rows if r[0] == fam and r[1] == Q]
        acc = np.array([r[4] for r in sel])
        print(f"{fam:12s} {Q:2d} {len(sel):7d} {acc.mean():8.3f} {np.percentile(acc, 5):7.3f} "
              f"{acc.min():7.3f} {sum(r[5] > 0 for r in sel):8d} "
              f"{sum(r[6] > 0 for r in sel):8d} {sum(r[7] > 0 for r in sel):9d}")
    worst = sorted(rows, key=lambda r: r[4])[:5]
    print("lowest acceptance (family, Q, K, n, acceptance, exceeded, fallbacks, mode "
          "failures, mean variance):")
    for r in worst:
        print("  ", r)
    if args.save and saved:
        np.savez(args.save, **saved)
    bad = [r for r in rows if r[5] > 0]
    print(f"studies with a proposal above the bound: {len(bad)}")
    for r in bad[:20]:
        print("  ", r)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
