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


def _family_names() -> list[str]:
    """Every registered GLMM family (mlmi.glmm.FAMILIES), for --family."""
    from .glmm import FAMILIES

    return sorted(FAMILIES)


def _glmm_demo(args: argparse.Namespace) -> int:
    """Fit the paper's analysis model to data of its design and show the truth."""
    from .glmm import fit_glmm
    from .glmm import get_family as fit_family
    from .simulation import generate, truth

    rng = np.random.default_rng(args.seed)
    data = generate(args.outcome, args.heterogeneity, args.studies, rng)
    family = "binomial" if args.outcome == "binary" else "gaussian"
    formula = "y ~ x1 + x2 + (1 + x1 | st)"
    print(f"mlmi {__version__} — two-level GLMM fit on data of the paper's design")
    print(f"  {args.outcome} outcome, {args.heterogeneity} heterogeneity, {args.studies} studies,"
          f" {len(data)} participants, seed {args.seed}")
    print(f"  model: {formula}  ({family}, maximum likelihood"
          f"{', Laplace approximation' if fit_family(family).fitter == 'laplace' else ''})\n")
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
    if fit.family.scale_parameter:
        print(f"{'sigma':<18}{1.0:>8.3f}{fit.sigma:>10.3f}")
    print(f"\nlog-likelihood {fit.loglik:.4f}; converged={fit.converged}, singular={fit.singular};"
          f" fitted in {1e3 * elapsed:.1f} ms")
    for w in fit.warnings:
        print(f"warning: {w}")
    return 0


def _parse_methods(items: list[str] | None) -> str | dict | None:
    """--method VAR=METHOD (repeatable) or one --method NAME for every variable."""
    from .exceptions import InputError
    from .methods import STRATEGIES, get_method

    if not items:
        return None
    if len(items) == 1 and "=" not in items[0]:
        name = items[0]
        if name in STRATEGIES:
            return name
        try:
            get_method(name)
        except InputError as exc:
            hint = ""
            for sep in (":", " "):
                if sep in name.strip():
                    var, meth = name.split(sep, 1)
                    hint = f"; to set one variable's method use VAR=METHOD, e.g. " \
                           f"--method {var.strip()}={meth.strip()}"
                    break
            raise InputError(f"--method {name!r}: {exc}{hint}") from None
        return name
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--method {item!r}: use VAR=METHOD (e.g. x1=2l.bin) for each "
                             "variable, or a single method/strategy name alone")
        var, name = item.split("=", 1)
        out[var.strip()] = name.strip()
    return out


def _parse_random(items: list[str] | None) -> dict | None:
    """--random VAR=PRED1,PRED2 (repeatable)."""
    pairs = _parse_pairs(items, "--random", "VAR=PREDICTOR[,PREDICTOR…], e.g. x1=y")
    if pairs is None:
        return None
    return {var: [p.strip() for p in preds.split(",") if p.strip()]
            for var, preds in pairs.items()}


def _parse_choice(items: list[str] | None, option: str, choices, default: str) -> str | dict:
    """--sampler NAME (every variable) or --sampler VAR=NAME (repeatable, per variable;
    the others get the default)."""
    from .exceptions import InputError

    if not items:
        return default
    bare = [i for i in items if "=" not in i]
    if bare and len(items) > 1:
        raise InputError(f"{option}: give one name for every variable ({option} "
                         f"{bare[0]}) or VAR=NAME per variable, not both")
    if bare:
        if bare[0] not in choices:
            raise InputError(f"{option} {bare[0]!r}: use one of {list(choices)} (or "
                             f"VAR=NAME for one variable)")
        return bare[0]
    pairs = _parse_pairs(items, option, f"VAR=NAME with NAME one of {list(choices)}")
    for var, name in pairs.items():
        if name not in choices:
            raise InputError(f"{option} {var}={name}: use one of {list(choices)}")
    return pairs


def _parse_limits(items: list[str] | None) -> dict | None:
    """--limit VAR=LO,HI (repeatable; an empty side is unbounded: bnp=0,)."""
    from .exceptions import InputError

    pairs = _parse_pairs(items, "--limit", "VAR=LO,HI, e.g. comorbidities=0,4")
    if pairs is None:
        return None
    out = {}
    for var, text in pairs.items():
        parts = text.split(",")
        if len(parts) != 2:
            raise InputError(f"--limit {var}={text}: use VAR=LO,HI with two numbers "
                             "separated by a comma (an empty side is unbounded)")
        bounds = []
        for side, part in zip(("lower", "upper"), parts, strict=True):
            part = part.strip()
            if not part:
                bounds.append(None)
                continue
            try:
                bounds.append(float(part))
            except ValueError:
                raise InputError(f"--limit {var}={text}: the {side} bound {part!r} is not a "
                                 "number") from None
        out[var] = tuple(bounds)
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


def _read(args: argparse.Namespace, path: str):
    """Read the input file with the --sep/--encoding/--na-values options; print what was
    detected."""
    from .io import read_table

    notes: list[str] = []
    na = [v for v in (args.na_values or "").split(",") if v] if args.na_values else None
    data = read_table(path, sep=args.sep, encoding=args.encoding, na_values=na, notes=notes)
    for note in notes:
        print(f"mlmi {args.command}: note: {note}", file=sys.stderr)
    return data


def _check_analysis(formula: str, family: str, columns, m: int | None, option: str) -> None:
    """The analysis model is checked before any imputation (a typo must not cost a run)."""
    from .analysis import check_analysis
    from .exceptions import InputError

    check_analysis(formula, family, list(columns), arg=option)
    if m is not None and m < 2:
        raise InputError(f"--m {m}: pooling by Rubin's rules (--analyze) needs at least 2 "
                         "imputations")


def _impute(args: argparse.Namespace) -> int:
    """Impute a user's file; write the long format (.imp, .id, then the columns)."""
    import json
    from pathlib import Path

    from . import __version__
    from .exceptions import InputError
    from .io import check_writable, write_tables
    from .mice import draw_seed, impute

    method = _parse_methods(args.method)
    random = _parse_random(args.random)
    level = dict.fromkeys(args.level2, 2) if args.level2 else None
    derived = _parse_pairs(args.derived, "--derived", "NAME=EXPRESSION")
    types = _parse_pairs(args.type, "--types", "VAR=TYPE, e.g. den=nominal")
    out = check_writable(args.out, [args.input])
    stem = Path(args.out).with_suffix("")
    diag_path = check_writable(f"{stem}.diagnostics.csv", [args.input])
    pooled_path = check_writable(f"{stem}.pooled.csv", [args.input]) if args.analyze else None
    meta_path = Path(f"{stem}.meta.json")
    if args.seed is not None and args.seed < 0:
        raise InputError(f"--seed {args.seed}: use a non-negative integer")
    data = _read(args, args.input)
    if args.analyze:
        _check_analysis(args.analyze, args.family, data.columns, args.m, "--analyze")
    seed = args.seed
    if seed is None:
        seed = draw_seed()
        print(f"mlmi impute: no --seed given; drew --seed {seed} (stored in {meta_path.name}; "
              "give it to repeat this run)", file=sys.stderr)
    from .methods._multilevel import PSI_DRAWS
    from .methods.base import DEFAULT_PSI_DRAW
    from .mice.setup import SAMPLERS

    sampler = _parse_choice(args.sampler, "--sampler", SAMPLERS, "exact")
    psi_draw = _parse_choice(args.psi_draw, "--psi-draw", PSI_DRAWS, DEFAULT_PSI_DRAW)
    limits = _parse_limits(args.limit)
    imputed = impute(data, args.cluster, m=args.m, maxit=args.maxit, method=method,
                     random=random, sampler=sampler, psi_draw=psi_draw, limits=limits,
                     seed=seed, n_jobs=args.jobs,
                     progress=not args.quiet, level=level, derived=derived, types=types,
                     exclude=args.exclude, by=args.by)
    long = imputed.complete("long", include=args.include_original)
    diagnostics = imputed.diagnostics.copy()
    diagnostics.insert(0, "seed", seed)
    meta = {"mlmi": __version__, "input": str(args.input), "cluster": args.cluster,
            "m": imputed.m, "maxit": imputed.maxit, "seed": seed, "n": len(data),
            "sampler": imputed.sampler, "psi_draw": psi_draw, "limits": limits,
            "methods": imputed.methods,
            "include_original": bool(args.include_original), "rows": len(long),
            "output": out.name}
    write_tables([(long, out), (diagnostics, diag_path),
                  (json.dumps(meta, indent=2, default=str), meta_path)])
    if not args.quiet:
        print(imputed, file=sys.stderr)
        for note in imputed.notes:
            print(f"mlmi impute: note: {note}", file=sys.stderr)
    what = "the data as .imp = 0 and " if args.include_original else ""
    print(f"wrote {out} ({what}{imputed.m} imputations, long format with .imp and .id), "
          f"{diag_path} and {meta_path} (seed {seed})")
    if args.analyze:
        fits = imputed.analyze(args.analyze, args.family)
        _print_pooled(fits, pooled_path)
    return 0


def _print_pooled(fits, path) -> None:
    from .io import write_table

    pooled = fits.pool()
    random = fits.pool_random()
    # the file first: a closed pipe (| head) must not lose it
    written = write_table(pooled.reset_index(names="term"), path)
    print(f"\n{fits.formula}  ({fits.family}, {fits.m} imputations, Rubin's rules)")
    print(pooled[["estimate", "std_error", "df", "fmi", "conf_low", "conf_high",
                  "p_value"]].round(4).to_string())
    print("\nrandom effects (over the imputations):")
    print(random.round(4).to_string())
    print(f"\nwrote {written}")


def _pool(args: argparse.Namespace) -> int:
    """Analyse a long-format file (.imp, .id) and pool by Rubin's rules."""
    import json
    from pathlib import Path

    from .analysis import analyze_completed
    from .exceptions import InputError
    from .io import check_long, check_writable

    out = check_writable(args.out or f"{Path(args.input).with_suffix('')}.pooled.csv",
                         [args.input])
    long = _read(args, args.input)
    if ".imp" not in long.columns:
        raise InputError(f"{args.input!r} has no '.imp' column: expected the long format "
                         "written by `mlmi impute`")
    _check_analysis(args.formula, args.family,
                    [c for c in long.columns if c not in (".imp", ".id")], None, "--formula")
    tail = None
    if Path(args.input).suffix.lower() in (".csv", ".txt", ".tsv"):
        with open(args.input, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 1))
            tail = fh.read()
    meta_path = Path(f"{Path(args.input).with_suffix('')}.meta.json")
    meta = None
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if meta is not None and meta.get("output") not in (None, Path(args.input).name):
            meta = None
    check_long(long, str(args.input), tail, meta)
    parts = [g.drop(columns=[c for c in (".imp", ".id") if c in g.columns])
             for _, g in long[long[".imp"] > 0].groupby(".imp", sort=True)]
    if len(parts) < 2:
        raise InputError(f"{args.input!r} holds {len(parts)} imputation(s); pooling needs 2+")
    fits = analyze_completed(parts, args.formula, args.family)
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


def _reading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sep", default=None,
                        help="CSV field separator (default: detected from the header: "
                             "',' ';' tab or '|')")
    parser.add_argument("--encoding", default=None,
                        help="text encoding of a CSV file (default: UTF-8, else Latin-1)")
    parser.add_argument("--na-values", default=None, metavar="CODE[,CODE]",
                        help="extra codes read as missing (empty fields, NA and '.' always "
                             "are), e.g. -99,999")


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
    imp.add_argument("--types", "--type", dest="type", action="append", metavar="VAR=TYPE",
                     help="override a variable's inferred type (repeatable): binary, "
                          "ordinal, nominal (alias categorical), count or continuous")
    imp.add_argument("--m", type=int, default=5, help="imputations (default 5)")
    imp.add_argument("--maxit", type=int, default=10, help="iterations (default 10)")
    imp.add_argument("--seed", type=int, default=None)
    imp.add_argument("--sampler", action="append", metavar="NAME|VAR=NAME",
                     help="draw of a sporadically missing study's random effects: exact "
                          "(default), prior-ar, laplace or marginal; for every variable, "
                          "or VAR=NAME per variable (repeatable), e.g. afib=marginal")
    imp.add_argument("--psi-draw", action="append", metavar="NAME|VAR=NAME",
                     help="draw of the between-study covariance Psi* of the multilevel "
                          "imputation models: auto (default: corrected where at least "
                          "q + 4 studies observe the variable, else ml-normal), paper, "
                          "corrected or ml-normal (see docs/method.md); for every "
                          "variable or VAR=NAME")
    imp.add_argument("--limit", action="append", metavar="VAR=LO,HI",
                     help="the possible range of a count or continuous variable "
                          "(repeatable), e.g. comorbidities=0,4 or bnp=0, (no upper "
                          "bound): drawn from the truncated model, counted")
    imp.add_argument("--jobs", type=int, default=1, help="chains in parallel processes")
    imp.add_argument("--out", required=True, help="output file (.csv or .parquet)")
    imp.add_argument("--analyze", metavar="FORMULA",
                     help="also fit this mixed model (lme4 syntax) and pool it")
    imp.add_argument("--family", default="gaussian",
                     choices=_family_names(), help="for --analyze")
    imp.add_argument("--include-original", action="store_true",
                     help="also write the incomplete data as .imp = 0 (what R's "
                          "mice::as.mids() reads)")
    imp.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    _reading_options(imp)
    imp.set_defaults(func=_impute)

    pool = sub.add_parser("pool", help="analyse imputed data (long format) and pool",
                          description="Fit a mixed model to every imputation of a long-format "
                                      "file from `mlmi impute` and pool by Rubin's rules.")
    pool.add_argument("input", help="long-format file with .imp and .id")
    pool.add_argument("--formula", required=True, help="lme4-style formula")
    pool.add_argument("--family", default="gaussian",
                      choices=_family_names())
    pool.add_argument("--out", default=None, help="CSV for the pooled table")
    _reading_options(pool)
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
    """Entry point of the ``mlmi`` command. A user error ends with one line naming the
    argument and value (status 2), never a traceback; Ctrl-C ends with status 130 and
    no partial output; a closed pipe (``| head``) ends quietly; warnings print as one
    line each."""
    import os
    import warnings

    from .exceptions import MLMIError, MLMIWarning

    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"mlmi {args.command}"

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        for origin in ("mlmi.impute: ", "mlmi.impute:"):
            text = text.removeprefix(origin)  # the command already says where
        text = _as_options(text)
        try:
            print(f"{prefix}: warning: {text}", file=sys.stderr)
        except (OSError, ValueError):  # pragma: no cover - stderr closed
            pass

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            warnings.filterwarnings("default", category=MLMIWarning)
            if args.command in ("demo", "impute", "simulate", "glmm-demo") and not getattr(
                    args, "quiet", False):
                from ._jit import kernels_cached

                if not kernels_cached():
                    print("mlmi: compiling the numerical kernels (first run only, about 20 s)",
                          file=sys.stderr)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not as a warning at exit
            return code
    except MLMIError as exc:
        print(f"{prefix}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted (Ctrl-C); no file was left half-written",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_pipe()
    except OSError as exc:  # a file or folder the system refused (permissions, disk full)
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # not a user error: a bug in mlmi. One line by default (the traceback on request)
        if os.environ.get("MLMI_DEBUG"):
            raise
        print(f"{prefix}: internal error (a bug in mlmi, please report it): "
              f"{type(exc).__name__}: {' '.join(str(exc).split())}; set MLMI_DEBUG=1 to "
              "see the traceback", file=sys.stderr)
        return 1


def _as_options(text: str) -> str:
    """The library's advice in the command's own words: types={'x': 'count'} ->
    --types x=count, limits={'x': (0, 4)} -> --limit x=0,4, method={'x': 'm'} ->
    --method x=m."""
    import re

    text = re.sub(r"types=\{'([^']+)': '([^']+)'\}", r"--types \1=\2", text)
    text = re.sub(r"method=\{'([^']+)': '([^']+)'\}", r"--method \1=\2", text)
    return re.sub(r"limits=\{'([^']+)': \(([^,()]+), ([^,()]+)\)\}", r"--limit \1=\2,\3",
                  text)


def _quiet_pipe() -> int:
    """The reader went away (| head): stop quietly, and keep Python from complaining
    when it flushes stdout at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
