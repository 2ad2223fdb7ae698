"""The paper's central claim about the comparators, reproduced by simulation.

Claim (METHOD.md §6; Jolani 2025, Table 3): under strong heterogeneity with 30 %
systematically missing studies, stratified imputation (STI) covers the regression
coefficient of the study-varying predictor, a1, well below 95 % (the paper: below 80 %),
and over-covers a2; MLMI stays close to the reference analysis of the complete data
(REF), whose Wald intervals themselves cover a1 somewhat less than 95 % with 10 studies.

Design: the paper's scenario binary outcome, strong heterogeneity, 10 studies, MAR,
pi_sys = 0.3, m = 5, maxit = 10, run through the simulation runner's own replication
function (``mlmi.simulation.replicate``), with a seed independent of the evidence run in
docs/results (which found, over 1000 replications: STI 0.70, MLMI 0.93, REF 0.92 at 200).

Tolerances come from the Monte Carlo error of a proportion, sqrt(p (1 - p) / R):
"below nominal" means below 0.95 by more than z such errors; "close to REF" means not
below REF by more than z sqrt(2) errors (two proportions over the same R data sets, a
conservative bound since they are positively correlated).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlmi.simulation import replicate, truth

SCENARIO = {"outcome": "binary", "heterogeneity": "strong", "studies": 10, "sys": 0.3,
            "mechanism": "mar"}
pytestmark = pytest.mark.filterwarnings("ignore::mlmi.exceptions.ImputationWarning",
                                        "ignore::mlmi.exceptions.MLMIWarning")


def _coverage(reps: int, seed: int) -> pd.DataFrame:
    frames = [replicate(SCENARIO, r, seed=seed, methods=("REF", "STI", "MLMI"), m=5, maxit=10)
              for r in range(reps)]
    res = pd.concat(frames, ignore_index=True)
    assert (res["error"].fillna("") == "").all(), res.loc[res["error"] != "", "error"].iloc[0]
    res = res[res.parameter.isin(["a1", "a2"])].copy()
    res["truth"] = res["parameter"].map(truth("strong"))
    res["cover"] = (res.conf_low <= res.truth) & (res.truth <= res.conf_high)
    return res.groupby(["method", "parameter"])["cover"].mean().unstack()


def _mcse(p: float, reps: int) -> float:
    return float(np.sqrt(p * (1 - p) / reps))


def _check(cov: pd.DataFrame, reps: int, z: float) -> None:
    sti, mlmi_, ref = cov.loc["STI", "a1"], cov.loc["MLMI", "a1"], cov.loc["REF", "a1"]
    # STI under-covers a1: significantly below the nominal 95 %
    assert sti < 0.95 - z * _mcse(0.95, reps), cov
    # MLMI does not: close to the complete-data reference, and better than STI
    assert mlmi_ >= ref - z * np.sqrt(2) * _mcse(max(ref, 0.9), reps), cov
    assert mlmi_ > sti, cov


def test_sti_undercovers_a1_mlmi_does_not_small():
    """CI version: 50 replications (~30 s), z = 2.5."""
    _check(_coverage(50, seed=20261124), 50, z=2.5)


@pytest.mark.slow
def test_sti_undercovers_a1_mlmi_does_not():
    """300 replications (~3 min), z = 3; also the paper's thresholds: STI's a1 coverage
    below 85 % beyond Monte Carlo error (point estimate below 80 %), and STI's a2
    coverage above 95 % beyond Monte Carlo error (over-coverage)."""
    reps, z = 300, 3.0
    cov = _coverage(reps, seed=7)
    _check(cov, reps, z)
    sti_a1 = cov.loc["STI", "a1"]
    assert sti_a1 + z * _mcse(sti_a1, reps) < 0.85, cov
    assert sti_a1 < 0.80, cov
    assert cov.loc["STI", "a2"] > 0.95 + 2 * _mcse(0.95, reps), cov
