"""The ``mlmi`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    """Fit the paper's analysis model to data of its design and show the truth."""
    from .glmm import fit_glmm
    from .simulation import generate, truth

    rng = np.random.default_rng(args.seed)
    data = generate(args.outcome, args.heterogeneity, args.studies, rng)
    family = "binomial" if args.outcome == "binary" else "gaussian"
    formula = "y ~ x1 + x2 + (1 + x1 | st)"
    print(f"mlmi {__version__} — two-level GLMM fit on data of the paper's design")
    print(f"  {args.outcome} outcome, {args.heterogeneity} heterogeneity, {args.studies} studies,"
          f" {len(data)} participants, seed {args.seed}")
    print(f"  model: {formula}  ({family}, maximum likelihood"
          f"{', Laplace approximation' if family == 'binomial' else ''})\n")
    t0 = time.perf_counter()
    fit = fit_glmm(formula, data, family)
    elapsed = time.perf_counter() - t0
    true = truth(args.heterogeneity)
    se = np.sqrt(np.diag(fit.beta_cov))
    print(f"{'parameter':<18}{'truth':>8}{'estimate':>10}{'SE':>8}   95% CI")
    for (name, est), s, key in zip(fit.fixef.items(), se, ("a0", "a1", "a2"), strict=True):
        lo, hi = est - 1.96 * s, est + 1.96 * s
        print(f"{key + ' ' + name:<18}{true[key]:>8.3f}{est:>10.3f}{s:>8.3f}"
              f"   [{lo:.3f}, {hi:.3f}]")
    sd = fit.sd_re.to_numpy()
    print(f"{'omega0 (SD u0)':<18}{true['omega0']:>8.3f}{sd[0]:>10.3f}")
    print(f"{'omega1 (SD u1)':<18}{true['omega1']:>8.3f}{sd[1]:>10.3f}")
    if family == "gaussian":
        print(f"{'sigma':<18}{1.0:>8.3f}{fit.sigma:>10.3f}")
    print(f"\nlog-likelihood {fit.loglik:.4f}; converged={fit.converged}, singular={fit.singular};"
          f" fitted in {1e3 * elapsed:.1f} ms")
    for w in fit.warnings:
        print(f"warning: {w}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlmi",
        description="Multilevel multiple imputation for individual participant data "
                    "meta-analysis.",
    )
    parser.add_argument("--version", action="version", version=f"mlmi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demonstration on data of the paper's design")
    demo.add_argument("--outcome", choices=["binary", "continuous"], default="binary")
    demo.add_argument("--heterogeneity", choices=["weak", "moderate", "strong"],
                      default="moderate")
    demo.add_argument("--studies", type=int, default=10)
    demo.add_argument("--seed", type=int, default=2025)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlmi`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
