"""The simulation design with a categorical x1 (issue 11, point 7a): generation, truth,
scenario grid, and one replication end to end.

Statistical checks use fixed seeds; tolerances are numbers of Monte Carlo standard errors
computed from the draws, stated next to them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from mlmi import simulation as sim
from mlmi.exceptions import InputError
from mlmi.simulation.design import (
    A1_CATEGORICAL,
    X1_LOGITS,
    X1_THRESHOLDS,
    _categorical_x1,
)
from mlmi.simulation.replication import PARAMETERS_CATEGORICAL, add_x1_dummies


def test_binary_design_unchanged():
    """The paper's design draws exactly as before the extension (x1 omitted or
    "binary"): same numbers from the same generator state."""
    a = sim.generate("binary", "strong", 10, np.random.default_rng(3))
    b = sim.generate("binary", "strong", 10, np.random.default_rng(3), x1="binary")
    pd.testing.assert_frame_equal(a, b)
    assert set(a["x1"].unique()) <= {0, 1}
    s = {"outcome": "binary", "heterogeneity": "strong", "studies": 10, "sys": 0.3,
         "mechanism": "mar"}
    assert sim.scenario_id(s) == "binary-strong-k10-sys0.3-mar"
    assert sim.scenario_id({**s, "x1": "binary"}) == "binary-strong-k10-sys0.3-mar"
    assert sim.scenario_id({**s, "x1": "ordinal"}) == "binary-strong-k10-sys0.3-mar-x1ordinal"


def test_categorical_grid_and_truth():
    grid = sim.scenarios("categorical")
    assert len(grid) == 8
    assert {s["x1"] for s in grid} == {"ordinal", "nominal"}
    assert {s["studies"] for s in grid} == {10, 30}
    assert {s["heterogeneity"] for s in grid} == {"moderate", "strong"}
    assert all(s["sys"] == 0.3 and s["mechanism"] == "mar" for s in grid)
    assert len(sim.scenarios("categorical", x1="nominal", studies=10)) == 2
    t = sim.truth("strong", "ordinal")
    assert list(t) == list(PARAMETERS_CATEGORICAL)
    np.testing.assert_allclose([t["a1.1"], t["a1.2"], t["a1.3"]], A1_CATEGORICAL)
    assert t["omega1"] == pytest.approx(np.sqrt(2.85))
    assert set(sim.truth("weak")) == {"a0", "a1", "a2", "omega0", "omega1"}
    with pytest.raises(InputError, match="x1="):
        sim.truth("weak", "count")
    with pytest.raises(InputError, match="x1="):
        sim.generate("binary", "weak", 10, np.random.default_rng(0), x1="ordered")
    assert sim.parse_scenario("x1=nominal,studies=30")["x1"] == "nominal"


@pytest.mark.parametrize("kind", ["ordinal", "nominal"])
def test_categorical_x1_shares(kind):
    """At nu1 = 0 the category shares are those of the stated model: 200 000 draws,
    every share within 4 binomial se."""
    n = 200_000
    x = _categorical_x1(kind, 0.0, n, np.random.default_rng(1)) if kind == "ordinal" else \
        None
    if kind == "ordinal":
        cum = expit(X1_THRESHOLDS)
        p = np.diff(np.concatenate([[0.0], cum, [1.0]]))
    else:
        # nominal: categories 2, 3 get their own study effects; average over them
        rng = np.random.default_rng(2)
        x = np.concatenate([_categorical_x1(kind, 0.0, 50, rng) for _ in range(n // 50)])
        draws = rng.normal(0, np.sqrt(0.2), (200_000, 2))
        lg = np.column_stack([np.zeros(len(draws)), np.full(len(draws), X1_LOGITS[0]),
                              X1_LOGITS[1:] + draws])
        e = np.exp(lg)
        p = (e / e.sum(axis=1, keepdims=True)).mean(axis=0)
    share = np.bincount(x, minlength=4) / x.size
    se = np.sqrt(p * (1 - p) / x.size)
    # nominal: studies of 50 share a draw -> design effect (1 + 49 ICC); ICC < 0.01 here
    factor = 1.0 if kind == "ordinal" else 1.5
    assert np.all(np.abs(share - p) < 4 * factor * se + (0 if kind == "ordinal" else 0.002))


@pytest.mark.parametrize("kind", ["ordinal", "nominal"])
def test_outcome_model_recovered_on_complete_data(kind):
    """The generating model is the analysis model: pooled over 40 complete data sets of
    the design (moderate heterogeneity, 30 studies), each REF estimate of a1.k and a2
    is within 4 Monte Carlo se of the truth (se from the spread of the 40 estimates;
    the Laplace fit's small-sample bias is far below that here)."""
    from mlmi.glmm import fit_glmm
    from mlmi.simulation.replication import FORMULA_CATEGORICAL

    est = []
    for r in range(40):
        data = sim.generate("binary", "moderate", 30, np.random.default_rng(100 + r), x1=kind)
        fit = fit_glmm(FORMULA_CATEGORICAL, add_x1_dummies(data), "binomial")
        est.append(fit.beta)
    est = np.array(est)
    true = np.array([-1.85, *A1_CATEGORICAL, -0.04])
    se = est.std(axis=0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - true) < 4 * se)


def test_add_x1_dummies_codes_and_labels():
    d = pd.DataFrame({"x1": [0.0, 1.0, np.nan, 3.0, 2.0]})
    out = add_x1_dummies(d)
    np.testing.assert_array_equal(out["x1_1"], [0, 1, np.nan, 0, 0])
    np.testing.assert_array_equal(out["x1_3"], [0, 0, np.nan, 1, 0])
    np.testing.assert_array_equal(out["x1_any"], [0, 1, np.nan, 1, 1])
    labels = add_x1_dummies(pd.DataFrame({"x1": pd.Categorical(["0", "2", "3"])}))
    np.testing.assert_array_equal(labels["x1_2"], [0, 1, 0])


def test_categorical_replication_ref_cca():
    """REF and CCA on one replication: every parameter estimated, CCA on fewer rows."""
    s = sim.scenarios("categorical", x1="ordinal", studies=10, heterogeneity="moderate")[0]
    rows = sim.replicate(s, 0, 1, methods=("REF", "CCA"))
    assert (rows["error"] == "").all()
    assert list(rows["parameter"][:7]) == list(PARAMETERS_CATEGORICAL)
    assert rows["estimate"].notna().all()
    n_used = rows.groupby("method")["n_used"].first()
    assert n_used["CCA"] < n_used["REF"] == 3000


def test_run_summarize_and_results_script(tmp_path):
    """The resumable runner, summarize (truth per categorical parameter) and the results
    script on a tiny run (REF and CCA, 2 replications of two scenarios, two folders)."""
    import importlib.util
    from pathlib import Path

    grid = sim.scenarios("categorical", studies=10, heterogeneity="moderate")
    a, b = tmp_path / "a", tmp_path / "b"
    assert sim.run(grid, 2, a, seed=3, methods=("REF",), progress=False,
                   workers=1) == {"done": 4, "skipped": 0, "failed": 0}
    sim.run(grid, 2, b, seed=3, methods=("CCA",), progress=False, workers=1)
    summ = sim.summarize(a)
    assert set(summ["x1"]) == {"ordinal", "nominal"}
    row = summ[(summ.parameter == "a1.2") & (summ.method == "REF")].iloc[0]
    assert row["truth"] == pytest.approx(0.70)
    assert row["n"] == 2
    tool = Path(__file__).resolve().parents[1] / "tools" / "make_categorical_results.py"
    spec = importlib.util.spec_from_file_location("make_categorical_results", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dest = tmp_path / "res"
    assert module.main([str(a), str(b), str(dest)]) == 0
    table = (dest / "categorical-tables.md").read_text()
    assert "## x1 nominal, moderate heterogeneity, 10 studies (2 replications)" in table
    assert "| CCA |" in table and "| REF |" in table
    csv = pd.read_csv(dest / "categorical.csv")
    assert set(csv["method"]) == {"REF", "CCA"} and (csv["n"] == 2).all()
    with pytest.raises(SystemExit, match="duplicated"):
        module.main([str(a), str(a), str(dest)])


def test_slope_method_only_for_categorical_x1():
    """MLMI[slope] (the random slope for y in a categorical x1's model) is refused, with
    the reason recorded in the rows, for the paper's binary x1."""
    s = sim.scenarios("tiny")[0]
    rows = sim.replicate(s, 0, 1, methods=("MLMI[slope]",), m=1, maxit=1)
    assert rows["estimate"].isna().all()
    assert rows["error"].str.contains("categorical x1 only").all()
