"""Complete-case analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.exceptions import InputError
from mlmi.simulation import ampute, generate


def test_complete_case_counts_and_fit():
    rng = np.random.default_rng(3)
    complete = generate("binary", "moderate", 10, rng, n_total=1000)
    data = ampute(complete, 0.3, "mar", rng)
    cc = mlmi.complete_case(data, "y ~ x1 + x2 + (1 + x1 | st)", "binomial")
    keep = data[["y", "x1", "x2", "st"]].notna().all(axis=1)
    assert cc.n_total == 1000 and cc.n_used == int(keep.sum())
    lost = sorted(set(data.st) - set(data.loc[keep, "st"]))
    assert sorted(cc.studies_dropped) == lost and len(cc.studies_used) == 10 - len(lost)
    ref = mlmi.fit_glmm("y ~ x1 + x2 + (1 + x1 | st)", data.loc[keep], "binomial")
    np.testing.assert_array_equal(cc.fit.beta, ref.beta)
    table = cc.pool()
    assert list(table.index) == ["(Intercept)", "x1", "x2"]
    se = np.sqrt(np.diag(ref.beta_cov))
    np.testing.assert_allclose(table["conf_high"] - table["estimate"], 1.959963985 * se)
    assert set(cc.pool_random().columns) == {"mean", "median", "min", "max"}


def test_complete_case_does_not_modify_data():
    rng = np.random.default_rng(4)
    data = ampute(generate("binary", "weak", 6, rng, n_total=600), 0.3, "mar", rng)
    before = data.copy(deep=True)
    mlmi.complete_case(data, "y ~ x1 + (1 | st)", "binomial")
    pd.testing.assert_frame_equal(data, before)


def test_complete_case_errors():
    data = generate("binary", "weak", 4, np.random.default_rng(1), n_total=200)
    with pytest.raises(InputError, match=r"column\(s\) \['z'\]"):
        mlmi.complete_case(data, "y ~ z + (1 | st)", "binomial")
