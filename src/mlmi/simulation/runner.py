"""Running the simulation study: resumable, incremental, local or on Dask.

Layout of an output directory::

    out/meta.json                         settings of the run (seed, m, maxit, methods)
    out/tasks/<scenario>/rep-000123.parquet   one finished replication
    out/compact/<scenario>.parquet        finished replications merged per scenario
    out/errors/<scenario>/rep-000123.txt  a replication that raised (with traceback)

Every file is written to a temporary name and renamed, so a run killed at any moment
leaves only complete files. A rerun (with the same settings) computes only the
replications that have no result, whatever the number of replications asked for, and
never duplicates one; a replication that failed before is retried. Workers return
their results and the driver writes them, so a Dask cluster needs no shared disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .. import __version__
from .._progress import Progress
from ..exceptions import InputError
from .grid import KEYS, scenario_id, validate
from .replication import ALL_METHODS, METHODS, replicate


# ----------------------------------------------------------------------------- storage
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _task_path(out: Path, sid: str, rep: int) -> Path:
    return out / "tasks" / sid / f"rep-{rep:06d}.parquet"


def _error_path(out: Path, sid: str, rep: int) -> Path:
    return out / "errors" / sid / f"rep-{rep:06d}.txt"


def _clean_temporary(out: Path) -> None:
    """Remove half-written files left by a killed run."""
    for tmp in out.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def done_reps(out: Path, sid: str) -> set[int]:
    """Replications of a scenario that have a result (compacted or not)."""
    reps: set[int] = set()
    comp = out / "compact" / f"{sid}.parquet"
    if comp.exists():
        reps |= set(pd.read_parquet(comp, columns=["rep"])["rep"].unique().tolist())
    folder = out / "tasks" / sid
    if folder.exists():
        reps |= {int(p.stem.split("-")[1]) for p in folder.glob("rep-*.parquet")}
    return reps


def compact(out: str | Path) -> None:
    """Merge each scenario's per-replication files into one Parquet file (atomically),
    then delete them. Safe to interrupt: duplicates are dropped on load."""
    out = Path(out)
    tasks = out / "tasks"
    if not tasks.exists():
        return
    for folder in sorted(p for p in tasks.iterdir() if p.is_dir()):
        files = sorted(folder.glob("rep-*.parquet"))
        if not files:
            continue
        comp = out / "compact" / f"{folder.name}.parquet"
        parts = [pd.read_parquet(comp)] if comp.exists() else []
        parts += [pd.read_parquet(f) for f in files]
        merged = _dedupe(pd.concat(parts, ignore_index=True))
        _atomic_write_parquet(comp, merged)
        for f in files:
            f.unlink(missing_ok=True)


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    return (frame.drop_duplicates(subset=["scenario", "rep", "method", "parameter"], keep="first")
            .sort_values(["rep", "method", "parameter"], kind="stable")
            .reset_index(drop=True))


def load(out: str | Path) -> pd.DataFrame:
    """All results of a run as one long DataFrame.

    Columns: the scenario fields (outcome, heterogeneity, studies, sys, mechanism),
    ``scenario`` (its id), ``rep``, ``method`` (REF, CCA, STI, MLMI, 2STG),
    ``parameter`` (a0, a1, a2, omega0, omega1), ``estimate``, ``std_error``,
    ``conf_low``, ``conf_high``, ``df``, ``median`` and the run metadata: ``seconds``
    (the method's time in that replication), ``warnings`` (warnings recorded by its
    fits), ``fallbacks`` (sampler fallbacks), ``n_used``, ``error``, ``seed``, ``mlmi``.
    """
    out = Path(out)
    parts = [pd.read_parquet(p) for p in sorted((out / "compact").glob("*.parquet"))]
    parts += [pd.read_parquet(p) for p in sorted((out / "tasks").glob("*/rep-*.parquet"))]
    if not parts:
        return pd.DataFrame(columns=[*KEYS, "scenario", "rep", "method", "parameter",
                                     "estimate", "std_error"])
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.drop_duplicates(subset=["scenario", "rep", "method", "parameter"])
    return frame.sort_values(["scenario", "rep", "method", "parameter"],
                             kind="stable").reset_index(drop=True)


def load_errors(out: str | Path) -> pd.DataFrame:
    """Replications that raised: scenario, rep and the error text."""
    out = Path(out)
    rows = [{"scenario": p.parent.name, "rep": int(p.stem.split("-")[1]),
             "error": p.read_text()} for p in sorted((out / "errors").glob("*/rep-*.txt"))]
    return pd.DataFrame(rows, columns=["scenario", "rep", "error"])


# ----------------------------------------------------------------------------- tasks
def _task(scenario: dict, rep: int, seed: int, methods, m: int, maxit: int):
    """Run one replication in a worker; never raises (errors are returned)."""
    import traceback

    from .._threads import single_threaded_blas

    try:
        with single_threaded_blas():
            frame = replicate(scenario, rep, seed, methods=methods, m=m, maxit=maxit)
        for key in reversed(KEYS):
            frame.insert(0, key, scenario[key])
        frame.insert(len(KEYS), "scenario", scenario_id(scenario))
        frame.insert(len(KEYS) + 1, "rep", rep)
        if "x1" in scenario:  # the categorical extension's key (absent: the paper's x1)
            frame.insert(len(KEYS), "x1", scenario["x1"])
        frame["seed"] = seed
        frame["mlmi"] = __version__
        return scenario_id(scenario), rep, frame, None
    except Exception as exc:
        return scenario_id(scenario), rep, None, f"{type(exc).__name__}: {exc}\n" + \
            traceback.format_exc()


# ----------------------------------------------------------------------------- run
def run(
    scenarios: Iterable[dict],
    reps: int,
    out: str | Path,
    seed: int = 1,
    methods=METHODS,
    m: int = 5,
    maxit: int = 10,
    scheduler=None,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Run (or resume) a simulation study.

    Parameters
    ----------
    scenarios : scenario dicts (see :func:`mlmi.simulation.scenarios`).
    reps : replications per scenario; a rerun with more only adds the missing ones.
    out : output directory (created); results are written as they finish.
    seed : the master seed; replication r of scenario s always uses the seed derived
        from (seed, s, r).
    methods : any of "REF", "CCA", "STI", "MLMI", "2STG", and "MLMI[paper]",
        "MLMI[corrected]", "MLMI[ml-normal]" (MLMI with that draw of Psi*).
    m, maxit : imputations and iterations of the chained equations.
    scheduler : None — all local cores (processes; ``workers`` of them); "local" — a Dask
        LocalCluster; an address "tcp://host:8786" or a ``dask.distributed.Client`` — that
        Dask cluster (e.g. one started by dask-jobqueue on SLURM/PBS).
    progress : show a progress bar on stderr.
    workers : number of local processes (default: all cores).

    Returns a dict with the numbers of tasks done now, skipped (already done) and failed.
    """
    if scheduler is not None and scheduler != "local":
        from ..mice import _check_scheduler

        _check_scheduler(scheduler)  # a typo must not wait for the first task
    if scheduler == "local":
        from .._workers import main_without_guard

        script = main_without_guard()
        if script is not None:
            raise InputError(
                f"scheduler='local' starts Dask worker processes, which re-run {script} "
                "from the top because it has no `if __name__ == \"__main__\":` guard; put "
                "the script's code under that guard, or use scheduler=None (mlmi's own "
                "local processes, which need no guard)")

    scenarios = list(scenarios)
    for s in scenarios:
        validate(s)
    methods = tuple(methods)
    unknown = set(methods) - set(ALL_METHODS)
    if unknown:
        raise InputError(f"unknown method(s) {sorted(unknown)}; use {list(ALL_METHODS)}")
    from ..mice import _check_int

    _check_int("reps", reps, 1, "replications per scenario")
    _check_int("seed", seed, 0, "master seed")
    _check_int("m", m, 1, "number of imputations")
    _check_int("maxit", maxit, 1, "iterations")
    if workers is not None:
        _check_int("workers", workers, 1, "local processes")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_meta(out, {"seed": int(seed), "m": int(m), "maxit": int(maxit),
                      "methods": list(methods)})
    _clean_temporary(out)
    todo = []
    skipped = 0
    for s in scenarios:
        sid = scenario_id(s)
        have = done_reps(out, sid)
        for r in range(reps):
            if r in have:
                skipped += 1
            else:
                todo.append((s, r))
    bar = Progress(len(todo), enabled=progress, label="simulate")
    failed = 0

    def handle(result) -> None:
        nonlocal failed
        sid, rep, frame, error = result
        if error is None:
            _atomic_write_parquet(_task_path(out, sid, rep), frame)
            _error_path(out, sid, rep).unlink(missing_ok=True)
        else:
            failed += 1
            _atomic_write_bytes(_error_path(out, sid, rep), error.encode())
        bar.update(error is None)

    args = [(s, r, int(seed), methods, int(m), int(maxit)) for s, r in todo]
    try:
        if scheduler is None:
            _run_local(args, handle, workers)
        else:
            _run_dask(args, handle, scheduler)
    finally:
        bar.close()
    compact(out)
    return {"done": len(todo) - failed, "skipped": skipped, "failed": failed}


def _check_meta(out: Path, settings: dict) -> None:
    meta = out / "meta.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            raise InputError(
                f"{out} holds results made with other settings {diff} (old, new); use "
                "another output directory"
            )
    else:
        _atomic_write_bytes(meta, json.dumps({**settings, "mlmi": __version__,
                                              "code": _source_commit()}, indent=2).encode())


def _source_commit() -> str | None:
    """The git commit of the mlmi source tree (for an editable install), else None —
    so a results folder says which code made it."""
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() + ("+modified" if dirty.stdout.strip() else "")


def _run_local(args, handle, workers: int | None) -> None:
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for a in args:
            handle(_task(*a))
        return
    from concurrent.futures import FIRST_COMPLETED, wait

    from .._workers import process_pool

    with process_pool(workers) as pool:
        pending = set()
        it = iter(args)
        for a in it:  # a bounded window keeps memory flat on a 120 000-task grid
            pending.add(pool.submit(_task, *a))
            if len(pending) >= 4 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    handle(f.result())
        for f in pending:
            handle(f.result())


def _run_dask(args, handle, scheduler) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if isinstance(scheduler, Client):
        client, own = scheduler, False
    elif scheduler == "local":
        cluster = LocalCluster(threads_per_worker=1, processes=True, dashboard_address=None)
        client, own = Client(cluster), True
    elif isinstance(scheduler, str):
        try:
            client, own = Client(scheduler, timeout="10s"), True
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"scheduler={scheduler!r}: cannot connect to a Dask scheduler "
                             f"there ({type(exc).__name__}: {exc})") from exc
    else:
        raise InputError(
            f"scheduler={scheduler!r}: use None, 'local', a 'tcp://host:port' address or a "
            "dask.distributed.Client"
        )
    try:
        window = 4 * max(1, sum(client.nthreads().values()))
        it = iter(args)
        first = [client.submit(_task, *a, pure=False)
                 for a, _ in zip(it, range(window), strict=False)]
        queue = as_completed(first)
        for future in queue:
            handle(future.result())
            nxt = next(it, None)
            if nxt is not None:
                queue.add(client.submit(_task, *nxt, pure=False))
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
