"""Helpers shared by several test modules (importable: conftest.py puts tests/ on the
path): a univariate imputation step as the driver builds it, the real data sets of
../shared/data (the test is skipped where they are absent, as in a user's clone), and a
call with imputation warnings silenced."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmi.exceptions import ImputationWarning
from mlmi.methods import Problem
from mlmi.methods.base import study_status

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_problem(y, x, cluster, ry, vtype: str, *, seed: int = 0, types=None,
                 **fields) -> Problem:
    """A univariate step for target ``z``: its status per study from ``ry`` (as the
    driver computes it), the rows to impute set to NaN (a method that looked at them
    would return NaN), predictors x1.. with role ``types`` (1 for all by default) and the
    generator of ``seed``; ``fields`` are the other Problem fields (cluster_role,
    n_levels, levels, limits, sampler, psi_draw, ...)."""
    y = np.asarray(y, dtype=float).copy()
    x = np.asarray(x, dtype=float).reshape(len(y), -1)
    cluster = np.asarray(cluster, dtype=np.int64)
    ry = np.asarray(ry, dtype=bool)
    K = int(cluster.max()) + 1
    y[~ry] = np.nan
    return Problem(
        variable="z", vtype=vtype, y=y, ry=ry, wy=~ry, x=x,
        x_names=[f"x{j + 1}" for j in range(x.shape[1])],
        type=np.ones(x.shape[1], dtype=np.int64) if types is None else np.asarray(types),
        cluster=cluster, cluster_labels=np.arange(1, K + 1),
        status=study_status(ry, cluster, K), rng=np.random.default_rng(seed), **fields,
    )


def shared_csv(name: str) -> pd.DataFrame:
    """A data set of ../shared/data; skips the test where it is absent."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return pd.read_csv(path)


def quiet(func, *args, **kwargs):
    """func(*args, **kwargs) with ImputationWarning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImputationWarning)
        return func(*args, **kwargs)
