"""The simulation evidence for categorical x1 (issue 11, point 7a;
docs/results/categorical.md).

Runs the paper's design with x1 a 4-category ordinal or nominal covariate
(``mlmi.simulation.scenarios("categorical")``: binary outcome, MAR, 30 % systematically
missing studies, 10 and 30 studies, moderate and strong heterogeneity) with REF, CCA,
STI and MLMI (``--methods`` to change), m = 5, maxit = 10, in one process, in turns of
``--chunk`` replications per scenario so that every scenario grows at the same pace.
Every finished replication is one file written atomically (mlmi.simulation's runner),
so a killed run resumes where it stopped. ``--until HH:MM`` (UTC) starts no turn after
that time.

Several jobs can share the one process, taking turns (``--job OUT|METHODS|WHERE``,
repeatable): e.g. the methods of one type of x1 in one folder and a method that arrived
later in another. A replication's data and each method's seed depend only on (seed,
scenario, replication), so results for the same replication from different folders
belong together (tools/make_categorical_results.py reads several folders).

    nice -n 10 python tools/run_categorical_sim.py --out runs/categorical --reps 300
    nice -n 10 python tools/run_categorical_sim.py --reps 300 \
        --job "runs/ordinal|REF,CCA,STI,MLMI|x1=ordinal" \
        --job "runs/nominal|REF,CCA,STI|x1=nominal"
    python tools/make_categorical_results.py runs/categorical docs/results
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from mlmi.simulation import run, scenarios

SEED = 1111
M, MAXIT = 5, 10
METHODS = ("REF", "CCA", "STI", "MLMI")


def _past(until: str | None) -> bool:
    if not until:
        return False
    now = dt.datetime.now(dt.timezone.utc)
    hh, mm = (int(v) for v in until.split(":"))
    return (now.hour, now.minute) >= (hh, mm)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output directory (resumable)")
    ap.add_argument("--job", action="append", default=[],
                    help="OUT|METHODS|WHERE: a folder, its methods and scenarios (repeatable)")
    ap.add_argument("--reps", type=int, default=300, help="replications per scenario")
    ap.add_argument("--chunk", type=int, default=5, help="replications per scenario per turn")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--where", default="", help="e.g. x1=ordinal (mlmi simulate's --where)")
    ap.add_argument("--until", default=None, help="HH:MM UTC: start no turn after this")
    args = ap.parse_args(argv)
    from mlmi.simulation import parse_where

    specs = [j.split("|") for j in args.job]
    if args.out:
        specs.append([args.out, args.methods, args.where])
    if not specs or any(len(s) != 3 for s in specs):
        ap.error("give --out or --job OUT|METHODS|WHERE")
    jobs = [(out, tuple(m.strip() for m in methods.split(",") if m.strip()),
             scenarios("categorical", **parse_where(where))) for out, methods, where in specs]
    target = args.chunk
    while True:
        for out, methods, grid in jobs:
            if _past(args.until):
                print(f"stopping: past {args.until} UTC", flush=True)
                return 0
            t0 = time.perf_counter()
            counts = run(grid, min(target, args.reps), out, seed=SEED, methods=methods,
                         m=M, maxit=MAXIT, progress=False, workers=1)
            print(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {out} "
                  f"reps<={min(target, args.reps)}: {counts} in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        if target >= args.reps:
            return 0
        target += args.chunk


if __name__ == "__main__":
    sys.exit(main())
