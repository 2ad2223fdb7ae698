"""Per-variable sampler and Psi* draw, limits, out-of-range counts (issue 11, points 4
and 5, the driver's side)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.cli import main
from mlmi.exceptions import ImputationWarning, InputError
from mlmi.methods.base import DEFAULT_PSI_DRAW
from mlmi.mice.setup import make_plan


def _data(seed=3, k=10, per=60):
    """x continuous, b binary, both sporadically missing in every study; z complete."""
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(k), per)
    u = rng.normal(0, 0.8, k)[st]
    z = rng.normal(size=st.size)
    x = 1.0 + 0.5 * z + u + rng.normal(size=st.size)
    b = (rng.random(st.size) < 1 / (1 + np.exp(-(0.3 * x + u)))).astype(float)
    d = pd.DataFrame({"st": st, "x": x, "b": b, "z": z})
    d.loc[rng.random(st.size) < 0.2, "x"] = np.nan
    d.loc[rng.random(st.size) < 0.2, "b"] = np.nan
    return d


def _run(d, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImputationWarning)
        return mlmi.impute(d, "st", m=1, maxit=1, seed=5, **kw)


def test_sampler_per_variable_is_mice_2l_bin_with_2l_lmer():
    """sampler={"b": "marginal"}: the binary variable's studies get prior draws (mice's
    2l.bin), the continuous one keeps the exact normal posterior (2l.lmer). x is visited
    first, so with one iteration its imputations are those of sampler="exact" and differ
    from the global "marginal" (which also switches 2l.norm to prior draws)."""
    d = _data()
    mixed = _run(d, sampler={"b": "marginal"})
    exact = _run(d, sampler="exact")
    marginal = _run(d, sampler="marginal")
    assert mixed.plan.samplers == {"x": "exact", "b": "marginal"}
    assert mixed.sampler == {"x": "exact", "b": "marginal"}
    np.testing.assert_array_equal(mixed.imputations["x"], exact.imputations["x"])
    assert not np.array_equal(mixed.imputations["x"], marginal.imputations["x"])
    assert not np.array_equal(mixed.imputations["b"], exact.imputations["b"])
    s = mixed.summary()
    assert s.loc["b", "sampler"] == "marginal" and s.loc["x", "sampler"] == "exact"
    psi = _run(d, psi_draw={"x": "corrected"})
    assert psi.plan.psi_draws == {"x": "corrected", "b": DEFAULT_PSI_DRAW}


def test_per_variable_choices_are_checked():
    d = _data()
    with pytest.raises(InputError, match=r"sampler\['b'\] = 'gibbs': use one of"):
        make_plan(d, "st", sampler={"b": "gibbs"})
    with pytest.raises(InputError, match="sampler names column 'nope'"):
        make_plan(d, "st", sampler={"nope": "exact"})
    with pytest.raises(InputError, match=r"sampler\['z'\] = 'exact': 'z' is not imputed"):
        make_plan(d, "st", sampler={"z": "exact"})
    with pytest.raises(InputError, match=r"psi_draw\['x'\] = 'paper': 'x' is imputed by "
                                         r"'pmm', which draws no random effects"):
        make_plan(d, "st", method={"x": "pmm"}, psi_draw={"x": "paper"})
    with pytest.raises(InputError, match="sampler=3: use one of"):
        make_plan(d, "st", sampler=3)


def test_limits_are_validated():
    d = _data()
    d["n"] = np.random.default_rng(1).poisson(1.0, len(d)).astype(float)
    d.loc[:30, "n"] = np.nan
    ok = make_plan(d, "st", limits={"n": (0, 6), "x": (None, 50)})
    assert ok.limits == {"n": (0.0, 6.0), "x": (-np.inf, 50.0)}
    imp = _run(d, limits={"n": (0, 6)}, sampler={"b": "marginal"})
    assert "limits 0 to 6" in repr(imp) and "sampler 'marginal'" in repr(imp)
    assert imp.summary().loc["n", "limits"] == (0.0, 6.0)
    assert np.all((imp.imputations["n"] >= 0) & (imp.imputations["n"] <= 6))
    top = float(d["n"].max())
    cases = [({"nope": (0, 1)}, "limits names column 'nope'"),
             ({"b": (0, 1)}, r"'b' is binary; limits bound count and continuous"),
             ({"z": (-9, 9)}, r"'z' is not imputed"),
             ({"n": (0,)}, "give two numbers"),
             ({"n": (0, "4")}, "the upper bound '4' is not a number"),
             ({"n": (4, 4)}, "lower bound must be below the upper"),
             ({"n": (0, top - 1)}, rf"observed value\(s\) of 'n' lie outside .*0 to {top:g}")]
    for limits, message in cases:
        with pytest.raises(InputError, match=message):
            make_plan(d, "st", limits=limits)


def test_out_of_range_counted_and_warned():
    """x imputed by a normal model in a data set whose observed x is cut at its 10th and
    90th percentiles: far more than 2 % of the imputations leave the observed range —
    counted per variable in summary() and named in the end-of-run warning; the counts
    are those of the imputed values themselves."""
    d = _data()
    lo, hi = d["x"].quantile([0.1, 0.9])
    d.loc[(d["x"] < lo) | (d["x"] > hi), "x"] = np.nan
    with pytest.warns(ImputationWarning, match=r"x: \d+\.\d% of the imputed values outside "
                                               r"the observed range"):
        imp = mlmi.impute(d, "st", m=2, maxit=2, seed=1)
    r = imp.out_of_range()
    values = imp.imputations["x"]
    n_out = int(np.sum((values < d["x"].min()) | (values > d["x"].max())))
    assert r.loc["x", "out_of_range"] == n_out > 0.02 * values.size
    assert imp.summary().loc["x", "out_of_range"] == n_out
    assert "b" not in r.index  # binary: never out of range


def test_method_ignoring_limits_is_counted_not_clipped():
    d = _data()
    lo, hi = float(d["x"].min()), float(d["x"].max())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        imp = mlmi.impute(d, "st", m=1, maxit=2, seed=1, method={"x": "2l.2stage.norm"},
                          limits={"x": (lo, hi)})
    values = imp.imputations["x"]
    outside = int(np.sum((values < lo) | (values > hi)))
    last = imp.diagnostics.query("variable == 'x' and iteration == 2")
    assert int(last["outside_limits"].sum()) == outside  # the final draw, as written
    if outside:  # 2l.2stage.norm draws from the untruncated normal: named, not clipped
        assert any("outside limits" in str(w.message) for w in caught)


def test_cli_sampler_psi_draw_and_limit(tmp_path, capsys):
    d = _data()
    src, out = tmp_path / "d.csv", tmp_path / "o.csv"
    d.to_csv(src, index=False)
    code = main(["impute", str(src), "--cluster", "st", "--m", "1", "--maxit", "1",
                 "--seed", "5", "--sampler", "b=marginal", "--psi-draw", "x=corrected",
                 "--limit", "x=-20,", "--out", str(out), "--quiet"])
    assert code == 0
    import json

    meta = json.loads((tmp_path / "o.meta.json").read_text())
    assert meta["sampler"] == {"x": "exact", "b": "marginal"}
    assert meta["psi_draw"] == {"x": "corrected"}
    assert meta["limits"] == {"x": [-20.0, None]}
    capsys.readouterr()
    for args, message in [(["--sampler", "b=gibbs"], "--sampler b=gibbs: use one of"),
                          (["--sampler", "exact", "--sampler", "b=marginal"], "not both"),
                          (["--limit", "x=1"], "--limit x=1: use VAR=LO,HI"),
                          (["--limit", "x=a,2"], "the lower bound 'a' is not a number"),
                          (["--limit", "x=100,200"], "lie outside")]:
        assert main(["impute", str(src), "--cluster", "st", *args, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
