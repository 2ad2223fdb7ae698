"""The ``mlmi`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    """The applied demonstration (see mlmi.demo)."""
    from .demo import run_demo

    m, maxit = (100, 20) if args.full else (args.m, args.maxit)
    run_demo(args.out, m=m, maxit=maxit, seed=args.seed, progress=not args.quiet)
    return 0


def _glmm_demo(args: argparse.Namespace) -> int:
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


def _parse_methods(items: list[str] | None) -> str | dict | None:
    """--method VAR=METHOD (repeatable) or one --method NAME for every variable."""
    from .exceptions import InputError

    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--method {item!r}: use VAR=METHOD, or one method/strategy name")
        var, name = item.split("=", 1)
        out[var.strip()] = name.strip()
    return out


def _parse_random(items: list[str] | None) -> dict | None:
    """--random VAR=PRED1,PRED2 (repeatable)."""
    from .exceptions import InputError

    if not items:
        return None
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--random {item!r}: use VAR=PREDICTOR[,PREDICTOR…]")
        var, preds = item.split("=", 1)
        out[var.strip()] = [p.strip() for p in preds.split(",") if p.strip()]
    return out


def _parse_pairs(items: list[str] | None, option: str, form: str) -> dict | None:
    """NAME=VALUE options (repeatable) as a dict."""
    from .exceptions import InputError

    if not items:
        return None
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"{option} {item!r}: use {form}")
        name, value = item.split("=", 1)
        out[name.strip()] = value.strip()
    return out


def _impute(args: argparse.Namespace) -> int:
    """Impute a user's file; write the long format (.imp, .id, then the columns)."""
    from pathlib import Path

    from .io import read_table, write_table
    from .mice import impute

    data = read_table(args.input)
    imputed = impute(data, args.cluster, m=args.m, maxit=args.maxit,
                     method=_parse_methods(args.method), random=_parse_random(args.random),
                     sampler=args.sampler, psi_draw=args.psi_draw, seed=args.seed,
                     n_jobs=args.jobs,
                     progress=not args.quiet,
                     level=dict.fromkeys(args.level2, 2) if args.level2 else None,
                     derived=_parse_pairs(args.derived, "--derived", "NAME=EXPRESSION"),
                     types=_parse_pairs(args.type, "--type", "VAR=TYPE"),
                     exclude=args.exclude, by=args.by)
    out = write_table(imputed.complete("long"), args.out)
    stem = Path(args.out).with_suffix("")
    diag = write_table(imputed.diagnostics, f"{stem}.diagnostics.csv")
    if not args.quiet:
        print(imputed, file=sys.stderr)
        for note in imputed.notes:
            print(f"note: {note}", file=sys.stderr)
    print(f"wrote {out} ({imputed.m} imputations, long format with .imp and .id) and {diag}")
    if args.analyze:
        fits = imputed.analyze(args.analyze, args.family)
        _print_pooled(fits, f"{stem}.pooled.csv")
    return 0


def _print_pooled(fits, path) -> None:
    import pandas as pd

    from .io import write_table

    pooled = fits.pool()
    print(f"\n{fits.formula}  ({fits.family}, {fits.m} imputations, Rubin's rules)")
    print(pooled[["estimate", "std_error", "df", "fmi", "conf_low", "conf_high",
                  "p_value"]].round(4).to_string())
    print("\nrandom effects (over the imputations):")
    print(fits.pool_random().round(4).to_string())
    table = pd.concat([pooled.reset_index(names="term")], ignore_index=True)
    print(f"\nwrote {write_table(table, path)}")


def _pool(args: argparse.Namespace) -> int:
    """Analyse a long-format file (.imp, .id) and pool by Rubin's rules."""
    from pathlib import Path

    from .analysis import analyze_completed
    from .exceptions import InputError
    from .io import read_table

    long = read_table(args.input)
    if ".imp" not in long.columns:
        raise InputError(f"{args.input!r} has no '.imp' column: expected the long format "
                         "written by `mlmi impute`")
    parts = [g.drop(columns=[c for c in (".imp", ".id") if c in g.columns])
             for _, g in long[long[".imp"] > 0].groupby(".imp", sort=True)]
    if len(parts) < 2:
        raise InputError(f"{args.input!r} holds {len(parts)} imputation(s); pooling needs 2+")
    fits = analyze_completed(parts, args.formula, args.family)
    out = args.out or f"{Path(args.input).with_suffix('')}.pooled.csv"
    _print_pooled(fits, out)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    """Run (or resume) the simulation study."""
    from . import simulation as sim
    from .exceptions import InputError

    if args.scenario:
        if args.where:
            raise InputError("--where selects from --grid; with --scenario name each one")
        scen = [sim.parse_scenario(text) for text in args.scenario]
    else:
        scen = sim.scenarios(args.grid, **sim.parse_where(args.where or ""))
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
    demo = sub.add_parser(
        "demo", help="the applied demonstration: a CKD-like IPD meta-analysis",
        description="Generate a synthetic CKD-like IPD meta-analysis (15 studies, the "
                    "paper's missingness pattern), impute it with STI, MLMI and 2STG, "
                    "analyse it with CCA and after imputation, and compare with the truth.")
    demo.add_argument("--out", default=None, help="folder for tables and figures")
    demo.add_argument("--m", type=int, default=20, help="imputations (default 20)")
    demo.add_argument("--maxit", type=int, default=10, help="iterations (default 10)")
    demo.add_argument("--seed", type=int, default=2025)
    demo.add_argument("--full", action="store_true",
                      help="the paper's settings: m = 100, maxit = 20")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)

    gd = sub.add_parser("glmm-demo", help="fit the paper's analysis model to data of its "
                                          "design and show the estimates beside the truth")
    gd.add_argument("--outcome", choices=["binary", "continuous"], default="binary")
    gd.add_argument("--heterogeneity", choices=["weak", "moderate", "strong"],
                    default="moderate")
    gd.add_argument("--studies", type=int, default=10)
    gd.add_argument("--seed", type=int, default=2025)
    gd.set_defaults(func=_glmm_demo)

    imp = sub.add_parser(
        "impute", help="impute your own data file",
        description="Multilevel multiple imputation of a CSV, Parquet or Stata file; writes "
                    "the completed data sets in long format (.imp = imputation number, "
                    ".id = row of the input) as CSV or Parquet, plus the diagnostics.")
    imp.add_argument("input", help="data file: .csv, .tsv, .parquet or .dta")
    imp.add_argument("--cluster", required=True, help="the study (cluster) column")
    imp.add_argument("--method", action="append", metavar="VAR=METHOD",
                     help="method for a variable (repeatable), e.g. x1=2l.bin; or one "
                          "strategy for all: mlmi, stratified, 2stage")
    imp.add_argument("--random", action="append", metavar="VAR=PRED[,PRED]",
                     help="random slopes in a variable's model (repeatable), e.g. x1=y")
    imp.add_argument("--level2", action="append", metavar="VAR",
                     help="a study-level variable (repeatable): imputed once per study; "
                          "variables constant within studies are detected without it")
    imp.add_argument("--derived", action="append", metavar="NAME=EXPR",
                     help="a derived variable (repeatable), e.g. 'bmi=weight/(height/100)**2'"
                          ": recomputed from its inputs, never imputed by a model")
    imp.add_argument("--exclude", action="append", metavar="COL",
                     help="keep a column out of every model, untouched (repeatable)")
    imp.add_argument("--by", metavar="COL",
                     help="impute separately within each level of this fully observed "
                          "column (e.g. the treatment arm)")
    imp.add_argument("--type", action="append", metavar="VAR=TYPE",
                     help="override a variable's type (repeatable): binary, count, "
                          "continuous or categorical")
    imp.add_argument("--m", type=int, default=5, help="imputations (default 5)")
    imp.add_argument("--maxit", type=int, default=10, help="iterations (default 10)")
    imp.add_argument("--seed", type=int, default=None)
    imp.add_argument("--sampler", default="exact",
                     choices=["exact", "prior-ar", "laplace", "marginal"])
    imp.add_argument("--psi-draw", default="paper",
                     choices=["paper", "corrected", "ml-normal"],
                     help="draw of the between-study covariance Psi* of the multilevel "
                          "imputation models (default paper; see docs/method.md)")
    imp.add_argument("--jobs", type=int, default=1, help="chains in parallel processes")
    imp.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    imp.add_argument("--analyze", metavar="FORMULA",
                     help="also fit this mixed model (lme4 syntax) and pool it")
    imp.add_argument("--family", default="gaussian",
                     choices=["gaussian", "binomial", "poisson"], help="for --analyze")
    imp.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    imp.set_defaults(func=_impute)

    pool = sub.add_parser("pool", help="analyse imputed data (long format) and pool",
                          description="Fit a mixed model to every imputation of a long-format "
                                      "file from `mlmi impute` and pool by Rubin's rules.")
    pool.add_argument("input", help="long-format file with .imp and .id")
    pool.add_argument("--formula", required=True, help="lme4-style formula")
    pool.add_argument("--family", default="gaussian",
                      choices=["gaussian", "binomial", "poisson"])
    pool.add_argument("--out", default=None, help="CSV for the pooled table")
    pool.set_defaults(func=_pool)

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
    simp.add_argument("--where", default=None,
                      help="only the scenarios of --grid with these values, e.g. "
                           "outcome=binary,mechanism=mar,studies=6/10")
    simp.add_argument("--scheduler", default=None,
                      help="'local' (a Dask LocalCluster) or a Dask scheduler address "
                           "tcp://host:8786; default: local processes")
    simp.add_argument("--workers", type=int, default=None,
                      help="local processes (default: all cores)")
    simp.add_argument("--seed", type=int, default=1)
    simp.add_argument("--methods", default=None,
                      help="comma-separated subset of REF,CCA,STI,MLMI,2STG; also "
                           "MLMI[paper], MLMI[corrected], MLMI[ml-normal] (MLMI with that "
                           "psi_draw)")
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
    if args.command in ("demo", "impute", "simulate", "glmm-demo") and not getattr(
            args, "quiet", False):
        from ._jit import kernels_cached

        if not kernels_cached():
            print("mlmi: compiling the numerical kernels (first run only, about 20 s)",
                  file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except MLMIError as exc:
        print(f"mlmi {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
