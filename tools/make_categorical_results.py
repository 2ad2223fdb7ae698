"""Tables of the categorical-x1 simulation (issue 11, point 7a) from a run of
tools/run_categorical_sim.py: ``categorical.csv`` (every performance measure with its
Monte Carlo SE per scenario × method × parameter, mlmi.simulation.summarize) and
``categorical-tables.md`` (bias and coverage with MCSEs, one table per scenario, and the
cells where a method's bias exceeds 3 MCSE or its coverage is below 90 %).

    python tools/make_categorical_results.py runs/categorical [runs/more ...] docs/results

Several run folders (the last argument is the destination) are combined: rows of the
same scenario, replication and method from two folders would be duplicates and are an
error; a replication's methods may come from different folders (their seeds depend only
on the seed, scenario and replication, which must agree: checked).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mlmi.io import atomic_path
from mlmi.simulation import load, summarize
from mlmi.simulation.replication import PARAMETERS_CATEGORICAL

ORDER = {"REF": 0, "CCA": 1, "STI": 2, "MLMI": 3, "2STG": 4}


def _cell(v, se, digits=3) -> str:
    if not np.isfinite(v):
        return ""
    return f"{v:.{digits}f} ({se:.{digits}f})" if np.isfinite(se) else f"{v:.{digits}f}"


def tables(summary: pd.DataFrame, meta: dict) -> str:
    lines = ["# Categorical x1: bias and coverage (generated)", "",
             "Made by `tools/make_categorical_results.py` from a run of "
             "`tools/run_categorical_sim.py`"
             f" (seed {meta.get('seed')}, m = {meta.get('m')}, maxit = {meta.get('maxit')}, "
             f"code {meta.get('code')}). Each cell: estimate (Monte Carlo SE). Bias = mean "
             "estimate − truth; coverage of the 95 % interval (fixed effects only; the "
             "random-effect SDs omega0, omega1 have none). Truth: a0 = −1.85, a1.k = "
             "1.05·k/3, a2 = −0.04, omega = sqrt(diag(Omega)).", ""]
    flags = []
    keys = ["x1", "heterogeneity", "studies"]
    for (x1, het, k), g in summary.groupby(keys, sort=True):
        n = int(g["n"].min())
        nmax = int(g["n"].max())
        lines += [f"## x1 {x1}, {het} heterogeneity, {k} studies "
                  f"({n}{'' if n == nmax else f'–{nmax}'} replications)", ""]
        head = ["method", *(f"{p} bias" for p in PARAMETERS_CATEGORICAL),
                *(f"{p} cover" for p in PARAMETERS_CATEGORICAL[:5])]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, gm in sorted(g.groupby("method"), key=lambda t: ORDER.get(t[0], 9)):
            r = gm.set_index("parameter")
            cells = [method]
            cells += [_cell(r.loc[p, "bias"], r.loc[p, "bias_mcse"]) if p in r.index else ""
                      for p in PARAMETERS_CATEGORICAL]
            cells += [_cell(r.loc[p, "coverage"], r.loc[p, "coverage_mcse"])
                      if p in r.index else "" for p in PARAMETERS_CATEGORICAL[:5]]
            lines.append("| " + " | ".join(cells) + " |")
            for p in PARAMETERS_CATEGORICAL:
                if p not in r.index:
                    continue
                b, bse = r.loc[p, "bias"], r.loc[p, "bias_mcse"]
                cov = r.loc[p, "coverage"]
                if np.isfinite(b) and np.isfinite(bse) and abs(b) > 3 * bse:
                    flags.append(f"- x1 {x1}, {het}, {k} studies, {method}, {p}: bias "
                                 f"{b:.3f} (MCSE {bse:.3f})")
                if np.isfinite(cov) and cov < 0.90:
                    flags.append(f"- x1 {x1}, {het}, {k} studies, {method}, {p}: coverage "
                                 f"{cov:.3f} (MCSE {r.loc[p, 'coverage_mcse']:.3f})")
        lines.append("")
    lines += ["## Cells with |bias| > 3 MCSE or coverage < 90 %", ""]
    lines += flags or ["(none)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    outs, dest = [Path(a) for a in argv[:-1]], Path(argv[-1])
    metas = [json.loads((o / "meta.json").read_text()) for o in outs]
    for key in ("seed", "m", "maxit"):
        if len({m_[key] for m_ in metas}) > 1:
            raise SystemExit(f"run folders differ in {key}: {[m_[key] for m_ in metas]}")
    results = pd.concat([load(o) for o in outs], ignore_index=True)
    dup = results.duplicated(["scenario", "rep", "method", "parameter"])
    if dup.any():
        raise SystemExit(f"{int(dup.sum())} duplicated rows across {outs}")
    errors = int((results["error"].fillna("") != "").sum())
    summary = summarize(results)
    summary = summary.sort_values(["x1", "heterogeneity", "studies", "method", "parameter"],
                                  key=lambda c: c.map(ORDER) if c.name == "method" else c)
    meta = {**metas[0], "code": ", ".join(sorted({str(m_.get("code")) for m_ in metas}))}
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "categorical.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(dest / "categorical-tables.md") as tmp:
        Path(tmp).write_text(tables(summary, meta))
    print(f"{len(results)} rows, {results['rep'].nunique()} rep ids, {errors} error rows")
    print(summary.groupby(["scenario", "method"])["n"].min().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
