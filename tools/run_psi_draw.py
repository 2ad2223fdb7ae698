"""The simulation evidence for the choice of psi_draw (issue 14; docs/results/psi-draw.md).

Runs REF and MLMI with each draw of Psi* ("MLMI[paper]", "MLMI[corrected]",
"MLMI[ml-normal]", which share one seed per replication) on

* the paper's binary-outcome MAR scenarios with pi_sys = 0.3 at 6, 10 and 30 studies ×
  weak / moderate / strong heterogeneity (mlmi.simulation's resumable runner);
* the continuous outcome at 10 studies (same runner);
* CKD-like data sets ``mlmi.datasets.ckd_like(seed)``: REF (the complete data) against
  MLMI with each draw, analysis ``smoking ~ alcohol + comorbidities + (1 + alcohol | study)``.

Everything is resumable (one file per finished replication, written atomically) and
runs in one process, in chunks, in the order of a plan file that can be edited while
the run goes on (``--plan``; a list of {"kind": "grid"|"ckd", "where": {...}, "reps": N});
the first step with replications left gets the next chunk, so priorities can change
without a restart. ``--until HH:MM`` (UTC) stops before starting a chunk after that time.

    nice -n 10 python tools/run_psi_draw.py --out runs/psi --plan runs/psi-plan.json
    python tools/run_psi_draw.py --out runs/psi --summarise docs/results
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mlmi
from mlmi.simulation import run, scenarios
from mlmi.simulation.grid import scenario_id
from mlmi.simulation.runner import _atomic_write_parquet, done_reps, load

DRAWS = ("paper", "corrected", "ml-normal")
METHODS = ("REF", *(f"MLMI[{d}]" for d in DRAWS))
SEED = 1414
M, MAXIT = 5, 10
CKD_FORMULA = "smoking ~ alcohol + comorbidities + (1 + alcohol | study)"
CKD_RANDOM = {"alcohol": ["smoking"], "comorbidities": ["smoking"]}
CHUNK = 5  # replications per scenario per turn


# ----------------------------------------------------------------------------- CKD-like
def ckd_replicate(seed: int, methods=METHODS) -> pd.DataFrame:
    """REF and MLMI with each draw on ``ckd_like(seed)``: one row per method × parameter
    (a0, a1, a2 pooled by Rubin's rules; omega0, omega1 = the random-effect SDs averaged
    over the imputations, as in the simulation)."""
    data = mlmi.datasets.ckd_like(seed)
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "REF":
                fit = mlmi.fit_glmm(CKD_FORMULA, mlmi.datasets.ckd_like(seed, complete=True),
                                    "binomial")
                est = fit.beta
                se = np.sqrt(np.diag(fit.beta_cov))
                lo, hi = est - 1.959963984540054 * se, est + 1.959963984540054 * se
                omega = fit.sd_re.to_numpy()
                clipped = 0
            else:
                draw = method[len("MLMI["):-1]
                imp = mlmi.impute(data, "study", m=M, maxit=MAXIT, random=CKD_RANDOM,
                                  seed=seed, psi_draw=draw)
                fits = imp.analyze(CKD_FORMULA, "binomial")
                table = fits.pool()
                est, se = table["estimate"].to_numpy(), table["std_error"].to_numpy()
                lo, hi = table["conf_low"].to_numpy(), table["conf_high"].to_numpy()
                omega = fits.pool_random().loc[["sd((Intercept))", "sd(alcohol)"],
                                               "mean"].to_numpy()
                diag = imp.diagnostics
                clipped = int(diag["clipped"].fillna(0).sum()) if "clipped" in diag else 0
        seconds = time.perf_counter() - t0
        for name, e, s, a, b in zip(("a0", "a1", "a2"), est, se, lo, hi, strict=True):
            rows.append({"method": method, "parameter": name, "estimate": e, "std_error": s,
                         "conf_low": a, "conf_high": b, "seconds": seconds,
                         "clipped": clipped})
        for name, e in zip(("omega0", "omega1"), omega, strict=True):
            rows.append({"method": method, "parameter": name, "estimate": e,
                         "seconds": seconds, "clipped": clipped})
    out = pd.DataFrame(rows)
    out.insert(0, "rep", seed)
    out["mlmi"] = mlmi.__version__
    return out


def _ckd_done(out: Path) -> set[int]:
    folder = out / "ckd"
    return {int(p.stem.split("-")[1]) for p in folder.glob("rep-*.parquet")} \
        if folder.exists() else set()


def _ckd_chunk(out: Path, reps: int, n: int) -> int:
    have = _ckd_done(out)
    todo = [r for r in range(1, reps + 1) if r not in have][:n]
    for r in todo:
        try:
            frame = ckd_replicate(r)
        except Exception as exc:  # recorded, never dropped
            (out / "ckd-errors").mkdir(parents=True, exist_ok=True)
            (out / "ckd-errors" / f"rep-{r:06d}.txt").write_text(f"{type(exc).__name__}: {exc}")
            continue
        _atomic_write_parquet(out / "ckd" / f"rep-{r:06d}.parquet", frame)
    return len(todo)


def load_ckd(out: Path) -> pd.DataFrame:
    files = sorted((out / "ckd").glob("rep-*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files \
        else pd.DataFrame()


# ----------------------------------------------------------------------------- driver
def _grid_chunk(out: Path, where: dict, reps: int) -> int:
    """CHUNK more replications of every scenario of ``where`` that has fewer than reps."""
    todo = 0
    for s in scenarios("paper", **where):
        have = len(done_reps(out / "grid", scenario_id(s)))
        if have < reps:
            target = min(reps, have + CHUNK)
            res = run([s], target, out / "grid", seed=SEED, methods=METHODS, m=M, maxit=MAXIT,
                      progress=False, workers=1)
            todo += res["done"] + res["failed"]
    return todo


def drive(out: Path, plan_file: Path, until: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    while True:
        if until is not None:
            now = dt.datetime.now(dt.timezone.utc).strftime("%H:%M")
            if now >= until:
                print(f"{now}: past --until {until}, stopping", flush=True)
                return
        plan = json.loads(plan_file.read_text())
        did = 0
        for step in plan:
            t0 = time.time()
            if step["kind"] == "grid":
                did = _grid_chunk(out, step.get("where", {}), int(step["reps"]))
            else:
                did = _ckd_chunk(out, int(step["reps"]), CHUNK)
            if did:
                print(f"{dt.datetime.now(dt.timezone.utc):%H:%M:%S} {step}: {did} replications "
                      f"in {time.time() - t0:.0f} s", flush=True)
                break
        if not did:
            print("plan complete", flush=True)
            return


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--plan")
    ap.add_argument("--until", help="UTC HH:MM: start no chunk after this time")
    args = ap.parse_args(argv)
    out = Path(args.out)
    drive(out, Path(args.plan), args.until)
    print(f"pid {os.getpid()} done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["ckd_replicate", "load", "load_ckd"]
