"""The same seed gives identical imputations serially, in processes and on Dask."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import mlmi
from mlmi.exceptions import InputError
from mlmi.simulation import ampute, generate


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    return ampute(generate("binary", "moderate", 8, rng, n_total=480), 0.3, "mar", rng)


@pytest.fixture(scope="module")
def serial(data):
    return mlmi.impute(data, "st", m=3, maxit=2, random={"x1": ["y"]}, seed=77)


def _same(a, b):
    assert a.imputations.keys() == b.imputations.keys()
    for v in a.imputations:
        np.testing.assert_array_equal(a.imputations[v], b.imputations[v])
    np.testing.assert_array_equal(a.chains[["mean", "sd"]].to_numpy(),
                                  b.chains[["mean", "sd"]].to_numpy())


def test_dask_local_cluster_of_processes(data, serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_client = mlmi.impute(data, "st", m=3, maxit=2, random={"x1": ["y"]}, seed=77,
                                    scheduler=client)
            # the chains really ran in the worker processes
            assert len(client.scheduler_info()["workers"]) == 2
        by_address = mlmi.impute(data, "st", m=3, maxit=2, random={"x1": ["y"]}, seed=77,
                                 scheduler=cluster.scheduler_address)
    _same(serial, on_client)
    _same(serial, by_address)


def test_bad_scheduler(data):
    with pytest.raises(InputError, match=r"scheduler must be a dask\.distributed\.Client"):
        mlmi.impute(data, "st", m=1, maxit=1, scheduler=3)


SCRIPT = """
import subprocess
import sys

import numpy as np
import mlmi
from mlmi.simulation import ampute, generate

rng = np.random.default_rng(21)
data = ampute(generate("binary", "moderate", 8, rng, n_total=480), 0.3, "mar", rng)
par = mlmi.impute(data, "st", m=3, maxit=2, seed=77, n_jobs=2)
ser = mlmi.impute(data, "st", m=3, maxit=2, seed=77)
print("IMPUTE-SAME", all(np.array_equal(par.imputations[v], ser.imputations[v])
                         for v in ser.imputations))
{extra}
"""

SIMULATION = """
import pandas as pd
from mlmi import simulation as sim
scen = sim.scenarios("tiny")[:1]
a = sim.run(scen, 2, OUT + "/par", m=2, maxit=1, methods=("REF", "CCA"), progress=False, workers=2)
b = sim.run(scen, 2, OUT + "/ser", m=2, maxit=1, methods=("REF", "CCA"), progress=False, workers=1)
cols = ["rep", "parameter", "estimate", "std_error"]
same = sim.load(OUT + "/par")[cols].equals(sim.load(OUT + "/ser")[cols])
print("SIM-SAME", same, a["done"], a["failed"])
"""


def test_plain_script_without_main_guard(tmp_path):
    """n_jobs=2 and simulation.run from a script with no `if __name__ == "__main__":`
    (the workers must not re-run the script): same numbers as serial."""
    script = tmp_path / "analysis.py"
    extra = f"OUT = {str(tmp_path)!r}\n" + SIMULATION
    script.write_text(SCRIPT.format(extra=extra))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "IMPUTE-SAME True" in res.stdout
    assert "SIM-SAME True 2 0" in res.stdout
    assert res.stdout.count("IMPUTE-SAME") == 1  # the body ran once


def test_python_stdin(tmp_path):
    """`python -` (the script on standard input, as from an editor or a here-document)."""
    res = subprocess.run([sys.executable, "-"], input=SCRIPT.format(extra=""),
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "IMPUTE-SAME True" in res.stdout


def test_dask_local_cluster_from_a_plain_script_says_what_to_change(tmp_path):
    """Dask's own worker processes would re-run a guard-less script: mlmi stops at once
    with a message naming the script and the fix, and writes nothing."""
    script = tmp_path / "sim.py"
    script.write_text("from mlmi import simulation as sim\n"
                      f"sim.run(sim.scenarios('tiny')[:1], 1, {str(tmp_path / 'out')!r}, "
                      "scheduler='local', progress=False)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode != 0
    assert "InputError" in res.stderr and str(script) in res.stderr
    assert 'if __name__ == "__main__":' in res.stderr and "scheduler=None" in res.stderr
    assert not (tmp_path / "out").exists()
