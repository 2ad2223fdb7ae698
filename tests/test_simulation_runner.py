"""The simulation runner: resumable, atomic, identical wherever tasks run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmi import simulation as sim
from mlmi.exceptions import InputError

METHODS = ("REF", "CCA", "STI", "MLMI", "2STG")
FAST = {"m": 2, "maxit": 2}
ESTIMATES = ["scenario", "rep", "method", "parameter", "estimate", "std_error", "conf_low",
             "conf_high", "median"]


def _estimates(out) -> pd.DataFrame:
    return sim.load(out)[ESTIMATES].reset_index(drop=True)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    """The reference: a tiny grid, 3 replications, run in this process."""
    out = tmp_path_factory.mktemp("clean")
    counts = sim.run(sim.scenarios("tiny"), 3, out, seed=5, methods=METHODS, progress=False,
                     workers=1, **FAST)
    assert counts == {"done": 6, "skipped": 0, "failed": 0}
    return out


def test_load_layout(clean_run):
    df = sim.load(clean_run)
    assert len(df) == 2 * 3 * len(METHODS) * 5
    assert not df.duplicated(["scenario", "rep", "method", "parameter"]).any()
    for col in ("outcome", "heterogeneity", "studies", "sys", "mechanism", "scenario", "rep",
                "method", "parameter", "estimate", "std_error", "seconds", "warnings",
                "fallbacks", "error"):
        assert col in df.columns
    assert set(df["method"]) == set(METHODS)
    assert set(df["parameter"]) == {"a0", "a1", "a2", "omega0", "omega1"}
    assert (df["error"] == "").all()
    # fixed effects have standard errors, random-effect SDs have none
    fixed = df["parameter"].isin(["a0", "a1", "a2"])
    assert df.loc[fixed, "std_error"].notna().all()
    assert df.loc[~fixed, "std_error"].isna().all()


def test_rerun_adds_only_missing(clean_run, tmp_path):
    out = tmp_path / "grow"
    sim.run(sim.scenarios("tiny"), 2, out, seed=5, methods=METHODS, progress=False, workers=1,
            **FAST)
    counts = sim.run(sim.scenarios("tiny"), 3, out, seed=5, methods=METHODS, progress=False,
                     workers=1, **FAST)
    assert counts == {"done": 2, "skipped": 4, "failed": 0}
    pd.testing.assert_frame_equal(_estimates(out), _estimates(clean_run))
    # a rerun asking for what exists computes nothing
    assert sim.run(sim.scenarios("tiny"), 3, out, seed=5, methods=METHODS, progress=False,
                   workers=1, **FAST)["done"] == 0


def test_other_settings_refused(clean_run):
    with pytest.raises(InputError, match="other settings"):
        sim.run(sim.scenarios("tiny"), 3, clean_run, seed=6, methods=METHODS, progress=False,
                workers=1, **FAST)


def test_killed_run_resumes_without_loss_or_duplicates(clean_run, tmp_path):
    """SIGKILL the command mid-run, rerun it: the results equal an uninterrupted run."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mlmi", "simulate", "--grid", "tiny", "--reps", "3",
           "--out", str(out), "--seed", "5", "--m", "2", "--maxit", "2", "--workers", "1",
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list((out / "tasks").glob("*/rep-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run produced no results to interrupt")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sim.load(out)
    assert 0 < partial["rep"].size < 6 * len(METHODS) * 5  # really interrupted
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not list(out.rglob(".*.tmp"))
    pd.testing.assert_frame_equal(_estimates(out), _estimates(clean_run))


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_exit_when_the_driver_is_killed(tmp_path):
    """SIGKILL only the driver of a 2-process run: its workers stop within seconds
    instead of computing results nobody collects (they used to keep running)."""
    cmd = [sys.executable, "-m", "mlmi", "simulate", "--grid", "tiny", "--reps", "50",
           "--out", str(tmp_path / "orphans"), "--seed", "5", "--m", "2", "--maxit", "2",
           "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
            if len(workers) == 2 and list((tmp_path / "orphans").glob("tasks/*/rep-*")):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run did not start two workers")
        proc.kill()
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_local_processes_and_dask_give_identical_numbers(clean_run, tmp_path):
    pytest.importorskip("distributed")
    procs, dask = tmp_path / "procs", tmp_path / "dask"
    sim.run(sim.scenarios("tiny"), 3, procs, seed=5, methods=METHODS, progress=False,
            workers=2, **FAST)
    sim.run(sim.scenarios("tiny"), 3, dask, seed=5, methods=METHODS, progress=False,
            scheduler="local", **FAST)
    pd.testing.assert_frame_equal(_estimates(procs), _estimates(clean_run))
    pd.testing.assert_frame_equal(_estimates(dask), _estimates(clean_run))


def test_failing_task_is_recorded_and_retried(tmp_path, monkeypatch):
    import mlmi.simulation.runner as runner

    real = runner.replicate

    def flaky(scenario, rep, seed, **kw):
        if rep == 1:
            raise RuntimeError("boom in replication 1")
        return real(scenario, rep, seed, **kw)

    monkeypatch.setattr(runner, "replicate", flaky)
    scen = sim.scenarios("tiny")[:1]
    counts = sim.run(scen, 2, tmp_path, seed=5, methods=("REF",), progress=False, workers=1)
    assert counts == {"done": 1, "skipped": 0, "failed": 1}
    errors = sim.load_errors(tmp_path)
    assert errors["rep"].tolist() == [1] and "boom in replication 1" in errors["error"][0]
    monkeypatch.setattr(runner, "replicate", real)
    counts = sim.run(scen, 2, tmp_path, seed=5, methods=("REF",), progress=False, workers=1)
    assert counts == {"done": 1, "skipped": 1, "failed": 0}
    assert sim.load_errors(tmp_path).empty
    assert sorted(sim.load(tmp_path)["rep"].unique()) == [0, 1]


def test_method_failure_recorded_in_rows(monkeypatch):
    import mlmi.simulation.replication as rp

    real = rp._run_method

    def broken(method, *a, **kw):
        if method == "CCA":
            raise ValueError("cca exploded")
        return real(method, *a, **kw)

    monkeypatch.setattr(rp, "_run_method", broken)
    rows = rp.replicate(sim.scenarios("tiny")[0], 0, 1, methods=("REF", "CCA"))
    cca = rows[rows.method == "CCA"]
    assert cca["estimate"].isna().all() and cca["error"].str.contains("cca exploded").all()
    assert rows.loc[rows.method == "REF", "estimate"].notna().all()


def test_task_seed_depends_only_on_seed_scenario_rep():
    a, b = sim.scenarios("tiny")
    s1 = sim.task_seed(1, a, 3).generate_state(4)
    assert np.array_equal(s1, sim.task_seed(1, dict(a), 3).generate_state(4))
    assert not np.array_equal(s1, sim.task_seed(1, a, 4).generate_state(4))
    assert not np.array_equal(s1, sim.task_seed(2, a, 3).generate_state(4))
    assert not np.array_equal(s1, sim.task_seed(1, b, 3).generate_state(4))


def test_scenarios_grid():
    grid = sim.scenarios("paper")
    assert len(grid) == 120
    assert len({sim.scenario_id(s) for s in grid}) == 120
    assert {s["studies"] for s in grid} == {6, 10, 15, 20, 30}
    assert sim.parse_scenario("heterogeneity=strong,studies=6") == {
        "outcome": "binary", "heterogeneity": "strong", "studies": 6, "sys": 0.3,
        "mechanism": "mar"}
    with pytest.raises(InputError, match="unknown scenario key 'k'"):
        sim.parse_scenario("k=10")


def test_scenarios_where_filters_the_grid():
    binary_mar = sim.scenarios("paper", outcome="binary", mechanism="mar")
    assert len(binary_mar) == 30
    assert all(s["outcome"] == "binary" and s["mechanism"] == "mar" for s in binary_mar)
    where = sim.parse_where("outcome=continuous,studies=6/10,sys=0.3")
    assert where == {"outcome": ["continuous"], "studies": [6, 10], "sys": [0.3]}
    chosen = sim.scenarios("paper", **where)
    assert len(chosen) == 2 * 3 * 2  # 2 numbers of studies x 3 heterogeneities x 2 mechanisms
    assert {s["studies"] for s in chosen} == {6, 10}
    with pytest.raises(InputError, match="no scenario"):
        sim.scenarios("paper", studies=7)
    with pytest.raises(InputError, match="unknown scenario key 'k'"):
        sim.parse_where("k=10")
    with pytest.raises(InputError, match="not a valid studies"):
        sim.parse_where("studies=ten")


def test_cli_where_runs_only_the_chosen_scenarios(tmp_path, capsys):
    from mlmi.cli import main

    out = tmp_path / "where"
    assert main(["simulate", "--grid", "tiny", "--where", "outcome=continuous", "--reps", "1",
                 "--out", str(out), "--methods", "REF,CCA", "--m", "2", "--maxit", "1",
                 "--workers", "1", "--quiet"]) == 0
    assert set(sim.load(out)["scenario"]) == {"continuous-weak-k6-sys0.1-mcar"}
    assert main(["simulate", "--scenario", "studies=6", "--where", "sys=0.3", "--reps", "1",
                 "--out", str(out), "--quiet"]) == 2
    assert "--where selects from --grid" in capsys.readouterr().err
