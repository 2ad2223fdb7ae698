"""The same seed gives identical imputations serially, in processes and on Dask."""

from __future__ import annotations

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
