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


def _simulate(args: argparse.Namespace) -> int:
    """Run (or resume) the simulation study."""
    from . import simulation as sim

    if args.scenario:
        scen = [sim.parse_scenario(text) for text in args.scenario]
    else:
        scen = sim.scenarios(args.grid)
    methods = tuple(args.methods.split(",")) if args.methods else sim.METHODS
    total = len(scen) * args.reps
    print(f"mlmi simulate: {len(scen)} scenario(s) × {args.reps} replications = {total} tasks;"
          f" methods {', '.join(methods)}; m={args.m}, maxit={args.maxit}, seed={args.seed};"
          f" results in {args.out}", file=sys.stderr)
    counts = sim.run(scen, args.reps, args.out, seed=args.seed, methods=methods, m=args.m,
                     maxit=args.maxit, scheduler=args.scheduler, progress=not args.quiet,
                     workers=args.workers)
    print(f"done {counts['done']}, already there {counts['skipped']}, failed "
          f"{counts['failed']}" + (f" (see {args.out}/errors)" if counts["failed"] else ""),
          file=sys.stderr)
    return 1 if counts["failed"] else 0


def _report(args: argparse.Namespace) -> int:
    """Tables and figures of a simulation run."""
    from . import simulation as sim

    written = sim.report(args.dir, args.out)
    for path in written:
        print(path)
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

    simp = sub.add_parser(
        "simulate", help="run or resume the paper's simulation study",
        description="Run (or resume) the simulation study: one task per scenario × "
                    "replication, results written as they finish; a rerun computes only "
                    "what is missing. For SLURM/PBS clusters start a Dask cluster with "
                    "dask-jobqueue and pass its address with --scheduler.")
    simp.add_argument("--reps", type=int, required=True, help="replications per scenario")
    simp.add_argument("--out", required=True, help="output directory")
    group = simp.add_mutually_exclusive_group()
    group.add_argument("--grid", choices=["paper", "tiny"], default="paper",
                       help="the 120 scenarios of the paper (default) or 2 small ones")
    group.add_argument("--scenario", action="append",
                       help="one scenario, e.g. outcome=binary,heterogeneity=strong,"
                            "studies=10,sys=0.3,mechanism=mar (repeatable)")
    simp.add_argument("--scheduler", default=None,
                      help="'local' (a Dask LocalCluster) or a Dask scheduler address "
                           "tcp://host:8786; default: local processes")
    simp.add_argument("--workers", type=int, default=None,
                      help="local processes (default: all cores)")
    simp.add_argument("--seed", type=int, default=1)
    simp.add_argument("--methods", default=None,
                      help="comma-separated subset of REF,CCA,STI,MLMI,2STG")
    simp.add_argument("--m", type=int, default=5, help="imputations (default 5)")
    simp.add_argument("--maxit", type=int, default=10, help="iterations (default 10)")
    simp.add_argument("--quiet", action="store_true", help="no progress bar")
    simp.set_defaults(func=_simulate)

    rep = sub.add_parser("report", help="tables and figures of a simulation run")
    rep.add_argument("dir", help="the output directory of mlmi simulate")
    rep.add_argument("--out", required=True, help="where to write tables and figures")
    rep.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlmi`` command: bad input ends with its message, not a
    traceback."""
    from .exceptions import MLMIError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MLMIError as exc:
        print(f"mlmi {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
