"""Variable types (issue 11, points 1, 4 and 6): the inference rule, its warnings, the
overrides (types=, a method), the registry's coding and decoding, and the real data sets'
variables (skipped without ../shared)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlmi
from helpers import quiet, shared_csv
from mlmi import vartypes
from mlmi.exceptions import ImputationWarning, InputError
from mlmi.methods import STRATEGIES, STUDY_LEVEL
from mlmi.mice.setup import make_plan


def _infer(values, **kw) -> vartypes.Inference:
    return vartypes.infer(pd.Series(values, name="v", **kw))


# ------------------------------------------------------------------ the inference rule
def test_codes_from_one_are_nominal_and_warned():
    rng = np.random.default_rng(1)
    found = _infer(rng.choice([1.0, 2.0, 3.0, 4.0], 300, p=[0.5, 0.3, 0.1, 0.1]))
    assert found.vtype == "nominal" and found.levels == [1.0, 2.0, 3.0, 4.0]
    assert "types={'v': 'ordinal'}" in found.warning and "'count'" in found.warning


def test_right_skewed_counts_are_counts_few_values_warned():
    rng = np.random.default_rng(2)
    many = _infer(rng.poisson(1.5, 500))
    assert many.vtype == "count" and many.warning is None  # 0..7 or so: a count
    few = _infer(rng.choice([0, 1, 2], 500, p=[0.8, 0.15, 0.05]))
    assert few.vtype == "count"
    assert "only the values 0/1/2" in few.warning and "limits={'v': (0, 2)}" in few.warning
    # 0/1/2 about equally often: still a count from 0, warned
    flat = _infer(rng.choice([0, 1, 2], 500))
    assert flat.vtype == "count" and "category codes" in flat.warning
    # a binomial 0..4 (comorbidities) is a count whatever its skewness, not warned
    small = _infer(rng.binomial(4, 0.5, 500))
    assert small.vtype == "count" and small.warning is None
    # a score 0..20 that is not skewed is not a count
    score = _infer(np.clip(np.round(rng.normal(10, 3, 500)), 0, 20))
    assert score.vtype == "continuous" and "bounded score" in score.warning


def test_narrow_range_far_from_zero_and_bounded_scores_are_continuous_warned():
    rng = np.random.default_rng(3)
    months = _infer(rng.integers(216, 228, 400).astype(float))
    assert months.vtype == "continuous" and "narrow range far from 0" in months.warning
    assert "types={'v': 'count'}" in months.warning
    score = _infer(np.clip(np.round(rng.normal(11, 4, 400)), 1, 20))
    assert score.vtype == "continuous" and "bounded score" in score.warning
    years = _infer(rng.integers(18, 90, 400).astype(float))
    assert years.vtype == "continuous" and years.warning is None  # a measurement
    assert _infer(rng.normal(size=50)).reason == "non-integer values"


def test_categoricals_and_text():
    ordered = pd.Categorical(["low", "mid", "high", "mid"], ["low", "mid", "high", "top"],
                             ordered=True)
    found = _infer(ordered)
    assert found.vtype == "ordinal" and found.levels == ["low", "mid", "high"]
    assert "never observed" in found.reason  # 'top' left out
    assert _infer(pd.Categorical(list("abca"))).vtype == "nominal"
    assert _infer(["x", "y", "z", None]).vtype == "nominal"
    assert _infer(["no", "yes", None]).vtype == "binary"
    assert _infer([1.0, 2.0, 1.0]).levels == [1.0, 2.0]  # two codes: binary


def test_strategy_tables_come_from_the_registry():
    assert STRATEGIES["mlmi"]["ordinal"] == "2l.polr"
    assert STRATEGIES["mlmi"]["nominal"] == "2l.polyreg"
    assert STRATEGIES["stratified"]["ordinal"] == "polr"
    assert STRATEGIES["stratified"]["nominal"] == "polyreg"
    assert STRATEGIES["2stage"]["ordinal"] == "2l.2stage.polr"
    assert STRATEGIES["2stage"]["nominal"] == "2l.2stage.polyreg"
    assert STUDY_LEVEL["nominal"] == STUDY_LEVEL["ordinal"] == "2lonly.polyreg"
    assert vartypes.canonical("categorical") == "nominal"
    with pytest.raises(InputError, match="types\\['x'\\] = 'factor'"):
        vartypes.canonical("factor", "types['x']")


# ------------------------------------------------------------------ coding round trip
@pytest.mark.parametrize("col", [
    pd.Series(pd.Categorical(["b", "a", None, "c", "a"], ["a", "b", "c"], ordered=True)),
    pd.Series(["b", "a", None, "c", "a"], dtype=object),
    pd.Series([2.0, 1.0, np.nan, 4.0, 1.0]),
    pd.Series([2, 1, None, 4, 1], dtype="Int64"),
], ids=["ordered-categorical", "object", "float-codes", "Int64-codes"])
def test_categorical_encode_decode_round_trip(col):
    col = col.rename("g")
    kind = vartypes.REGISTRY["nominal"]
    levels = sorted(col.dropna().unique(), key=str)
    block, names = kind.encode(col, levels)
    assert names == [f"g{lv}" for lv in levels[1:]]
    codes = kind.get(block)
    assert np.isnan(codes[2]) and codes[1] == 0
    miss = col.isna().to_numpy()
    out = kind.decode(col, miss, np.array([len(levels) - 1.0]), levels)
    assert out.dtype == col.dtype and out.iloc[2] == levels[-1]
    pd.testing.assert_series_equal(out[~miss], col[~miss])
    np.testing.assert_array_equal(kind.put(len(names), codes[~miss]), block[~miss])


# ------------------------------------------------------------------ overrides
def _study_data(seed=5, n=240, k=8):
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(k), n // k)
    x = rng.normal(size=n)
    age = rng.integers(216, 228, n).astype(float)
    d = pd.DataFrame({"st": st, "x": x, "age": age,
                      "grade": pd.Categorical(rng.choice(["A", "B", "C"], n), ["A", "B", "C"],
                                              ordered=True)})
    d.loc[rng.random(n) < 0.2, "age"] = np.nan
    return d


def test_method_sets_the_type_and_no_rounding():
    d = _study_data()
    rng = np.random.default_rng(9)
    visits = pd.Series(rng.poisson(2.0, len(d)), dtype="Int64")  # nullable integers
    visits[rng.random(len(d)) < 0.2] = pd.NA
    d["visits"] = visits
    plan = quiet(make_plan, d, "st")
    assert plan.variables["visits"].vtype == "count"
    imp = quiet(mlmi.impute, d, "st", m=1, maxit=1, seed=2, method={"visits": "2l.norm"})
    assert imp.types["visits"] == "continuous"
    assert "set by method '2l.norm'" in imp.summary().loc["visits", "type_reason"]
    done = imp.complete(1)["visits"]
    imputed = done[d["visits"].isna()].astype(float)
    assert np.any(imputed != np.round(imputed))  # not rounded as a count
    # types= wins over the method (2l.norm then imputes a count: rounded) and must
    # agree with it
    plan = quiet(make_plan, d, "st", types={"visits": "count"}, method={"visits": "2l.norm"})
    assert plan.variables["visits"].vtype == "count"
    with pytest.raises(InputError, match="method 'norm' imputes continuous variables, but "
                                         "'visits' is count"):
        make_plan(d, "st", types={"visits": "count"}, method={"visits": "norm"})


def test_donor_methods_keep_a_count_by_registration_not_by_name():
    """Whether a method keeps an integer column a count is the method's registered
    ``donor`` flag (it imputes observed values), not its name: a donor method named
    without 'pmm' keeps the count, a model method whose name ends in 'pmm' does not."""
    from mlmi.methods import _REGISTRY, get_method, register

    d = _study_data()
    rng = np.random.default_rng(9)
    visits = pd.Series(rng.poisson(2.0, len(d)), dtype="Int64")
    visits[rng.random(len(d)) < 0.2] = pd.NA
    d["visits"] = visits
    pmm_2l, norm_2l = get_method("2l.pmm").func, get_method("2l.norm").func
    register("test.donor", types=("continuous", "count"), multilevel=True,
             donor=True)(pmm_2l)
    register("test.notpmm", types=("continuous",), multilevel=True)(norm_2l)
    try:
        plan = make_plan(d, "st", method={"visits": "test.donor"})
        assert plan.variables["visits"].vtype == "count"
        plan = make_plan(d, "st", method={"visits": "test.notpmm"})
        assert plan.variables["visits"].vtype == "continuous"
        assert get_method("2l.pmm").donor and get_method("pmm").donor
        assert not get_method("2l.norm").donor
    finally:
        _REGISTRY.pop("test.donor", None)
        _REGISTRY.pop("test.notpmm", None)


def test_summary_and_repr_give_every_variable_type_and_reason():
    d = _study_data()
    with pytest.warns(ImputationWarning, match="'age' has 12 integer values in a narrow range"):
        imp = mlmi.impute(d, "st", m=1, maxit=1, seed=1)
    s = imp.summary()
    assert set(s.index) == {"x", "age", "grade"}
    assert s.loc["age", "type"] == "continuous" and s.loc["age", "method"] == "2l.norm"
    assert "narrow range far from 0" in s.loc["age", "type_reason"]
    assert s.loc["grade", "type"] == "ordinal" and s.loc["grade", "method"] == ""
    assert "ordered categorical with 3 levels" in repr(imp)
    assert "grade" in repr(imp) and "type: integers in a narrow range" in repr(imp)


def test_types_override_checks_values():
    d = _study_data()
    with pytest.raises(InputError, match="'x' is declared binary but has"):
        make_plan(d, "st", types={"x": "binary"})
    with pytest.raises(InputError, match="'x' has negative values"):
        make_plan(d, "st", types={"x": "count"})
    with pytest.raises(InputError, match="declared nominal but has 240 distinct"):
        make_plan(d, "st", types={"x": "categorical"})
    found = vartypes.coerce(d["age"], "ordinal", vartypes.infer(d["age"]), "types=")
    assert found.vtype == "ordinal" and found.levels == list(range(216, 228))
    assert all(type(v) is float for v in found.levels)


def test_cli_types_option(tmp_path, capsys):
    from mlmi.cli import main

    d = _study_data()
    d["x"] = d["x"].round(3)
    src, out = tmp_path / "d.csv", tmp_path / "out.csv"
    d.drop(columns="grade").to_csv(src, index=False)
    code = main(["impute", str(src), "--cluster", "st", "--m", "1", "--maxit", "1",
                 "--seed", "1", "--types", "age=continuous", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "type: integers in a narrow range far from 0 (216-227, 12 values); " \
           "types={'age': 'continuous'}" in err
    # declared: no inference warning
    assert not any("warning" in line and "narrow range" in line for line in err.splitlines())
    # not declared: warned in the command's own words (--types, --limit, --method)
    assert main(["impute", str(src), "--cluster", "st", "--m", "1", "--maxit", "1",
                 "--seed", "1", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "--limit age=216,227 or --method age=2l.pmm" in err
    assert "--types age=count" in err and "types={" not in err
    assert main(["impute", str(src), "--cluster", "st", "--types", "age=factor",
                 "--out", str(out)]) == 2
    assert "types['age'] = 'factor'" in capsys.readouterr().err


# ------------------------------------------------------------------ real data (7b)
def test_real_data_types():
    """The issue's examples on the real data: brandsma den (codes 1-4) nominal and
    study-level, rpg (0/1/2) a warned count, apr (1-20) a warned continuous score;
    CHEM97Na Age in months continuous (was a count imputed 162-277), IPDNa's integer
    measurements continuous without warnings."""
    brandsma = shared_csv("mice_brandsma.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = make_plan(brandsma, "sch")
    types = {v: s.vtype for v, s in plan.variables.items()}
    assert types["den"] == "nominal" and plan.methods["den"] == "2lonly.polyreg"
    assert types["rpg"] == "count" and types["apr"] == "continuous"
    assert types["ssi"] == "continuous" and types["min"] == "binary"
    warned = " ".join(plan.warnings)
    for var in ("'den'", "'rpg'", "'apr'"):
        assert var in warned
    del caught
    chem = shared_csv("micemd_CHEM97Na.csv")
    plan = quiet(make_plan, chem, "School")
    assert plan.variables["Age"].vtype == "continuous" and plan.methods["Age"] == "2l.norm"
    assert any("'Age'" in w and "types={'Age': 'count'}" in w for w in plan.warnings)
    ipd = shared_csv("micemd_IPDNa.csv")
    plan = make_plan(ipd, "centre")
    assert {v: s.vtype for v, s in plan.variables.items() if s.vtype != "continuous"} == {
        "gender": "binary", "afib": "binary"}
    assert not any("integer values" in w for w in plan.warnings)


def test_chem97_age_imputed_as_continuous_in_range_of_a_normal_model():
    """CHEM97Na: Age (months 216-227, SD 3.4) is not a count by default: imputed by
    2l.norm, whose draws have an SD near the observed one (the Poisson model drew
    162-277, SD 14.8)."""
    chem = shared_csv("micemd_CHEM97Na.csv")
    imp = quiet(mlmi.impute, chem, "School", m=2, maxit=3, seed=11)
    assert imp.types["Age"] == "continuous" and imp.methods["Age"] == "2l.norm"
    draws = imp.imputations["Age"]
    obs = chem["Age"].dropna()
    # sd of the draws: the observed SD (3.4) plus between-school spread, far below 14.8
    assert draws.std() < 2 * obs.std()
    assert abs(draws.mean() - obs.mean()) < 1.5


# ------------------------------------------------------------------ plots (7c)
def test_observed_vs_imputed_shows_category_shares_per_study():
    """Ordinal and nominal variables imputed at participant level: one panel per study,
    bars labelled by the levels, heights the study's observed / imputed category shares
    (issue 11, 7c); imputations decoded to the column's own labels."""
    from mlmi import plots
    from mlmi.methods import available_methods

    if "polr" not in available_methods() or "polyreg" not in available_methods():
        pytest.skip("polr/polyreg not available")
    d = _study_data(seed=12)
    rng = np.random.default_rng(12)
    d["colour"] = rng.choice(["red", "green", "blue"], len(d)).astype(object)
    d.loc[rng.random(len(d)) < 0.15, "grade"] = np.nan
    d.loc[rng.random(len(d)) < 0.15, "colour"] = np.nan
    d.loc[d["st"] == 2, "colour"] = np.nan  # systematically missing in study 2
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=4,
                 method={"grade": "polr", "colour": "polyreg", "age": "pmm"})
    assert imp.types["grade"] == "ordinal" and imp.types["colour"] == "nominal"
    done = imp.complete(1)
    assert done["grade"].dtype == d["grade"].dtype and done["grade"].notna().all()
    assert set(done["colour"]) == {"blue", "green", "red"}
    for var, levels in (("grade", ["A", "B", "C"]), ("colour", ["blue", "green", "red"])):
        fig = plots.observed_vs_imputed(imp, var)
        assert len(fig.axes) == 8  # one panel per study
        ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
        assert ticks == levels
        # study 0's observed bars are its category shares
        obs = d.loc[d["st"] == 0, var].dropna().astype(str)
        share = obs.value_counts(normalize=True).reindex(levels, fill_value=0.0)
        heights = [b.get_height() for b in fig.axes[0].patches
                   if b.get_gid() == "observed"]
        np.testing.assert_allclose(heights, share.to_numpy())
        # imputed bars: shares of the imputed codes of study 0 over both imputations
        rows = (d["st"] == 0).to_numpy()[imp.plan.missing[var]]
        codes = imp.imputations[var][:, rows].ravel().astype(int)
        imputed_heights = [b.get_height() for b in fig.axes[0].patches
                           if b.get_gid() == "imputed"]
        np.testing.assert_allclose(imputed_heights,
                                   np.bincount(codes, minlength=3) / codes.size)


def test_ipdna_bnp_by_2l_pmm_positive_and_observed_values():
    """IPDNa with 2l.pmm for BNP (systematically missing in 10 centres): every imputation
    is an observed BNP value, so positive and inside the observed range (7b)."""
    from mlmi.methods import available_methods

    if "2l.pmm" not in available_methods():
        pytest.skip("2l.pmm not available")
    ipd = shared_csv("micemd_IPDNa.csv")
    imp = quiet(mlmi.impute, ipd, "centre", m=2, maxit=2, seed=7,
                 method={"bnp": "2l.pmm"})
    assert imp.methods["bnp"] == "2l.pmm" and imp.types["bnp"] == "continuous"
    draws = imp.imputations["bnp"]
    assert draws.shape == (2, int(ipd["bnp"].isna().sum()))
    assert np.all(draws > 0)
    assert np.isin(draws, ipd["bnp"].dropna().to_numpy()).all()
    assert imp.out_of_range().loc["bnp", "out_of_range"] == 0
    assert imp.summary().loc["bnp", "out_of_range"] == 0
