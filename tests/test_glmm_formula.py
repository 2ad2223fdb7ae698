"""The lme4-style formula front end: parsing, design columns (checked against R's
``model.matrix``), encodings of the response and the cluster column, prediction and
warm starts."""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from mlmi.exceptions import InputError, MLMIWarning
from mlmi.glmm import fit_glmm, parse_formula

FORMULA = "y ~ x1 + (1 + x1 | st)"


@pytest.fixture(autouse=True)
def _quiet():
    """Fit warnings are tested in test_glmm_errors.py."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLMIWarning)
        yield


def _data(k: int = 8, m: int = 25, seed: int = 3, family: str = "binomial") -> pd.DataFrame:
    """Random intercept and slope of x1; clusters 0..k-1; a 3-level factor grp."""
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(k), m)
    x1 = rng.normal(size=k * m)
    b0, b1 = 0.9 * rng.normal(size=k), 0.6 * rng.normal(size=k)
    eta = -0.2 + 0.8 * x1 + b0[st] + b1[st] * x1
    if family == "binomial":
        y = (rng.random(k * m) < expit(eta)).astype(int)
    elif family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = eta + 0.5 * rng.normal(size=k * m)
    grp = rng.choice(["a", "b", "c"], size=k * m)
    return pd.DataFrame({"y": y, "x1": x1, "x2": rng.normal(size=k * m), "grp": grp, "st": st})


def _same_fit(a, b, atol=0.0):
    np.testing.assert_allclose(a.beta, b.beta, rtol=0, atol=atol)
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=atol)
    np.testing.assert_allclose(a.beta_cov, b.beta_cov, rtol=0, atol=max(atol, 1e-12))
    assert a.loglik == pytest.approx(b.loglik, abs=max(atol, 1e-12))
    assert a.x_names == b.x_names


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("formula", "intercept", "fixed", "random_intercept", "random", "group"),
    [
        ("y ~ x1 + (1 + x1 | st)", True, [("x1",)], True, ["x1"], "st"),
        ("y ~ x1 + x2 + (1 | st)", True, [("x1",), ("x2",)], True, [], "st"),
        ("y ~ x1 + (x1 | st)", True, [("x1",)], True, ["x1"], "st"),  # intercept implied
        ("y ~ x1 + (0 + x1 | st)", True, [("x1",)], False, ["x1"], "st"),
        ("y ~ x1 + (x1 - 1 | st)", True, [("x1",)], False, ["x1"], "st"),
        ("y ~ 0 + x1 + (1 | st)", False, [("x1",)], True, [], "st"),
        ("y ~ x1 - 1 + (1 | st)", False, [("x1",)], True, [], "st"),
        ("y ~ -1 + x1 + (1 | st)", False, [("x1",)], True, [], "st"),
        ("y ~ (1 | st)", True, [], True, [], "st"),
        ("y~x1+(1|st)", True, [("x1",)], True, [], "st"),
        ("y ~ (1 | st) + x1", True, [("x1",)], True, [], "st"),
        ("y ~ a:b + (1 | st)", True, [("a", "b")], True, [], "st"),
        ("y ~ a*b + (1 | st)", True, [("a",), ("b",), ("a", "b")], True, [], "st"),
        # R's order: main effects first; b:a is a:b; each term once
        ("y ~ a:b + a + b + b:a + (1 | st)", True, [("a",), ("b",), ("a", "b")], True, [], "st"),
        ("y ~ a*b*c + (1 | st)", True,
         [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")],
         True, [], "st"),
        ("y ~ a*b:c + (1 | st)", True, [("a",), ("b", "c"), ("a", "b", "c")], True, [], "st"),
        ("`my y` ~ `x 1` + (1 + `x 1` | `study-id`)", True, [("x 1",)], True, ["x 1"],
         "study-id"),
    ],
)
def test_parse(formula, intercept, fixed, random_intercept, random, group):
    t = parse_formula(formula)
    assert (t.intercept, t.fixed, t.random_intercept, t.random, t.group) == (
        intercept, fixed, random_intercept, random, group)


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ x1 + (1 | st) + (1 | g)", r"exactly one random-effects term .*found 2"),
        ("y ~ x1", r"exactly one random-effects term .*found 0"),
        ("y ~ x1 + (1 + x1 || st)", r"uncorrelated random effects \(\|\|\) are not supported"),
        ("y ~ x1 + (1 || st)", r"uncorrelated random effects \(\|\|\) are not supported"),
        ("y ~ log(x1) + (1 | st)", r"cannot interpret term 'log\(x1\)'.*transform variables "
                                   r"in the data frame first"),
        ("y ~ I(x1^2) + (1 | st)", r"cannot interpret term 'I\(x1\^2\)'"),
        ("y ~ x1^2 + (1 | st)", r"cannot interpret term 'x1\^2'"),
        ("y ~ x1 + (log(x1) | st)", r"cannot interpret the random-effects term"),
        ("y ~ x1 + (1 + x1:x2 | st)", r"interactions \('x1:x2'\) are not supported in the "
                                      r"random-effects term"),
        ("y ~ x1 + (1 | st/class)", r"the grouping factor must be one column name"),
        ("y ~ x1 + (1 | st:class)", r"the grouping factor must be one column name"),
        ("log(y) ~ x1 + (1 | st)", r"the response must be a single column name"),
        ("y ~ . + (1 | st)", r"'\.' \(all other columns\) is not supported"),
        ("y ~ x1 + x2 - x2 + (1 | st)", r"cannot remove term 'x2'"),
        ("y x1 (1 | st)", r"must be a string like"),
    ],
)
def test_unsupported_syntax(formula, match):
    with pytest.raises(InputError, match=match):
        parse_formula(formula)
    with pytest.raises(InputError, match=re.escape(formula) if "~" in formula else match):
        fit_glmm(formula, _data(), "binomial")


def test_formula_must_be_a_string():
    with pytest.raises(InputError, match=r"formula=None must be a string"):
        parse_formula(None)


# ---------------------------------------------------------------------- design columns
# column names of R 4.2.2's model.matrix() for the same right-hand sides, with
# a = factor(p, q, r), b = factor(u, v) and x, z, w numeric
R_COLUMNS = {
    "y ~ 0 + a": "ap aq ar",
    "y ~ a:x": "(Intercept) ap:x aq:x ar:x",
    "y ~ 0 + x:a + b": "bu bv x:ap x:aq x:ar",
    "y ~ 0 + x + x:a": "x x:ap x:aq x:ar",
    "y ~ a*b": "(Intercept) aq ar bv aq:bv ar:bv",
    "y ~ 0 + a + b": "ap aq ar bv",
    "y ~ b:a + a": "(Intercept) aq ar bv:ap bv:aq bv:ar",
    "y ~ x*z*w": "(Intercept) x z w x:z x:w z:w x:z:w",
    "y ~ x*z:w": "(Intercept) x z:w x:z:w",
    "y ~ z:x + x": "(Intercept) x z:x",
    "y ~ a:b": "(Intercept) ap:bu aq:bu ar:bu ap:bv aq:bv ar:bv",
    "y ~ x + a:b": "(Intercept) x ap:bu aq:bu ar:bu ap:bv aq:bv ar:bv",
    "y ~ a + a:b": "(Intercept) aq ar ap:bv aq:bv ar:bv",
    "y ~ x - 1": "x",
    "y ~ 0 + a:x + b:z": "ap:x aq:x ar:x bu:z bv:z",
}


def _factor_data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "y": rng.normal(size=12), "x": rng.normal(size=12), "z": rng.normal(size=12),
        "w": rng.normal(size=12), "a": np.tile(["p", "q", "r"], 4),
        "b": np.repeat(["u", "v"], 6), "st": np.arange(12) % 3,
    })


@pytest.mark.parametrize("rhs", list(R_COLUMNS))
def test_design_columns_match_r(rhs):
    d = _factor_data()
    t = parse_formula(rhs + " + (1 | st)")
    t.learn_levels(d)
    X, _, _ = t.model_arrays(d)
    assert " ".join(t.x_names) == R_COLUMNS[rhs]
    assert X.shape == (len(d), len(t.x_names))


def test_design_column_values():
    d = _factor_data()
    t = parse_formula("y ~ a*x + (0 + a | st)")
    t.learn_levels(d)
    X, W, groups = t.model_arrays(d)
    cols = dict(zip(t.x_names, X.T, strict=True))
    assert t.x_names == ["(Intercept)", "aq", "ar", "x", "aq:x", "ar:x"]
    np.testing.assert_array_equal(cols["aq"], (d["a"] == "q").astype(float))
    np.testing.assert_array_equal(cols["ar:x"], (d["a"] == "r") * d["x"])
    # (0 + a | st): an indicator for every level, as lme4's model.matrix(~ 0 + a)
    assert t.w_names == ["ap", "aq", "ar"]
    np.testing.assert_array_equal(W.sum(axis=1), 1.0)
    np.testing.assert_array_equal(groups, d["st"].to_numpy())


def test_interaction_fit_equals_fit_with_product_column():
    df = _data(family="gaussian")
    a = fit_glmm("y ~ x1*x2 + (1 | st)", df)
    b = fit_glmm("y ~ x1 + x2 + x1x2 + (1 | st)", df.assign(x1x2=df["x1"] * df["x2"]))
    assert list(a.fixef.index) == ["(Intercept)", "x1", "x2", "x1:x2"]
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)


def test_no_intercept_with_a_factor_is_the_same_model():
    """y ~ 0 + grp is a reparametrisation of y ~ grp (one column per level, as R)."""
    df = _data(family="gaussian")
    a = fit_glmm("y ~ 0 + grp + x1 + (1 | st)", df)
    b = fit_glmm("y ~ grp + x1 + (1 | st)", df)
    assert list(a.fixef.index) == ["grpa", "grpb", "grpc", "x1"]
    assert a.loglik == pytest.approx(b.loglik, rel=1e-10)
    assert a.fixef["grpa"] == pytest.approx(b.fixef["(Intercept)"], abs=1e-6)
    assert a.fixef["grpc"] - a.fixef["grpa"] == pytest.approx(b.fixef["grpc"], abs=1e-6)


# ---------------------------------------------------------------------- encodings
_YES_NO = {1: "yes", 0: "no"}


@pytest.mark.parametrize(
    "encode",
    [
        lambda y: y.astype(bool),
        lambda y: y.astype(float),
        lambda y: y.astype("Int64"),
        lambda y: y.astype("boolean"),
        lambda y: y.map(_YES_NO).astype(object),
        lambda y: y.map(_YES_NO).astype("string"),
        lambda y: pd.Categorical(y.map(_YES_NO)),
        lambda y: pd.Categorical(y.map({1: "event", 0: "none"}), categories=["none", "event"]),
    ],
    ids=["bool", "float", "Int64", "boolean", "object", "string", "categorical",
         "categorical-ordered-levels"],
)
def test_binary_response_encodings_give_the_identical_fit(encode):
    df = _data()
    ref = fit_glmm(FORMULA, df, "binomial")
    _same_fit(fit_glmm(FORMULA, df.assign(y=encode(df["y"])), "binomial"), ref)


def test_second_level_of_a_categorical_response_is_the_event():
    df = _data()
    ref = fit_glmm("y ~ x1 + (1 | st)", df, "binomial")
    flipped = pd.Categorical(np.where(df["y"] == 1, "yes", "no"), categories=["yes", "no"])
    res = fit_glmm("y ~ x1 + (1 | st)", df.assign(y=flipped), "binomial")
    np.testing.assert_allclose(res.beta, -ref.beta, atol=1e-4)
    assert res.loglik == pytest.approx(ref.loglik, abs=1e-6)


def test_cluster_encodings_give_identical_estimates():
    df = _data()
    names = np.array(["Leeds", "Bern", "Oslo", "Graz", "Pisa", "Cork", "Lund", "Ulm"])
    ref = fit_glmm(FORMULA, df, "binomial")
    assert list(ref.ranef.index) == list(range(8))
    assert ref.ranef.index.name == "st"
    # string labels are ordered as R orders a factor's default levels (sorted)
    res = fit_glmm(FORMULA, df.assign(st=names[df["st"]]), "binomial")
    assert list(res.ranef.index) == sorted(names)
    for st in [
        names[df["st"]],
        pd.Categorical(names[df["st"]]),
        pd.Categorical(names[df["st"]], categories=[*names[::-1], "Unused"]),
    ]:
        res = fit_glmm(FORMULA, df.assign(st=st), "binomial")
        assert sorted(res.ranef.index) == sorted(names)  # an unused category is no cluster
        assert res.ranef.index.name == "st"
        np.testing.assert_allclose(res.beta, ref.beta, atol=1e-6)
        np.testing.assert_allclose(res.psi, ref.psi, atol=1e-6)
        assert res.loglik == pytest.approx(ref.loglik, abs=1e-8)
        # the same cluster has the same random effects under its new label
        modes = res.ranef.loc[names].to_numpy()
        np.testing.assert_allclose(modes, ref.ranef.to_numpy(), atol=1e-6)
    # a categorical's clusters come in the order of its categories, as lme4's ranef
    # follows the factor's levels (unused levels dropped)
    res = fit_glmm(FORMULA, df.assign(
        st=pd.Categorical(names[df["st"]], categories=[*names[::-1], "Unused"])), "binomial")
    assert list(res.ranef.index) == list(names[::-1])
    assert list(res.clusters) == list(names[::-1])
    np.testing.assert_allclose(res.cond_cov, ref.cond_cov[::-1], atol=1e-8)


@pytest.mark.parametrize("wrap", [pd.Categorical, pd.CategoricalIndex, pd.Series],
                         ids=["Categorical", "CategoricalIndex", "Series"])
def test_array_entry_keeps_a_categoricals_order(wrap):
    """make_design (fit_arrays' entry) numbers the clusters of a categorical in the order
    of its categories whether it comes bare, as an index or in a Series; other labels
    sorted, as R's default factor levels."""
    from mlmi.glmm.design import make_design

    labels = np.array(["b", "a", "c", "b", "a", "c"])
    cats = ["c", "b", "a", "unused"]
    X, W = np.ones((6, 1)), np.ones((6, 1))
    design = make_design(np.zeros(6), X, W, wrap(pd.Categorical(labels, categories=cats)))
    assert list(design.clusters) == ["c", "b", "a"]
    assert list(make_design(np.zeros(6), X, W, labels).clusters) == ["a", "b", "c"]


def test_data_frame_is_not_modified():
    df = _data()
    df["st"] = pd.Categorical([f"S{i}" for i in df["st"]])
    df["y"] = df["y"].astype(bool)
    df["flag"] = df["x2"] > 0
    df["x3"] = np.arange(len(df))  # int64
    df.index = pd.RangeIndex(100, 100 + len(df))
    before = copy.deepcopy(df)
    res = fit_glmm("y ~ x1 + grp + flag + x3 + (1 + x1 | st)", df, "binomial")
    res.predict(df)
    res.predict(df, include_random=False, type="response")
    pd.testing.assert_frame_equal(df, before, check_exact=True)
    assert df.dtypes.equals(before.dtypes)
    assert df["st"].cat.categories.equals(before["st"].cat.categories)


# ---------------------------------------------------------------------- prediction
def _manual_eta(res, df, with_random=True):
    X = np.column_stack([np.ones(len(df)), df["x1"].to_numpy()])
    eta = X @ res.fixef[["(Intercept)", "x1"]].to_numpy()
    if with_random:
        b = res.ranef.loc[df["st"]].to_numpy()
        eta = eta + np.einsum("ij,ij->i", X, b)
    return eta


@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian"])
def test_predict_in_sample(family):
    df = _data(family=family)
    res = fit_glmm(FORMULA, df, family)
    eta = _manual_eta(res, df)
    link = res.predict(df)
    assert isinstance(link, pd.Series)
    assert link.index.equals(df.index)
    np.testing.assert_allclose(link, eta, rtol=1e-12, atol=1e-12)
    mean = {"binomial": expit(eta), "poisson": np.exp(eta), "gaussian": eta}[family]
    np.testing.assert_allclose(res.predict(df, type="response"), mean, rtol=1e-12)
    fixed = _manual_eta(res, df, with_random=False)
    np.testing.assert_allclose(res.predict(df, include_random=False), fixed, rtol=1e-12)


def test_predict_new_cluster_gets_zero_random_effects():
    df = _data()
    res = fit_glmm(FORMULA, df, "binomial")
    new = pd.DataFrame({"x1": [0.3, 0.3, -1.2], "st": [99, 2, 99]}, index=["a", "b", "c"])
    pred = res.predict(new)
    beta, b2 = res.fixef.to_numpy(), res.ranef.loc[2].to_numpy()
    assert pred["a"] == pytest.approx(beta @ [1, 0.3])
    assert pred["b"] == pytest.approx((beta + b2) @ [1, 0.3])
    assert pred["c"] == pytest.approx(beta @ [1, -1.2])
    assert pred["a"] == pytest.approx(res.predict(new, include_random=False)["a"])


def test_predict_population_level_needs_no_cluster_column():
    df = _data()
    res = fit_glmm(FORMULA, df, "binomial")
    new = df[["x1"]].iloc[:5]
    np.testing.assert_allclose(res.predict(new, include_random=False),
                               _manual_eta(res, df.iloc[:5], with_random=False))
    with pytest.raises(InputError, match=r"newdata lacks column\(s\) \['st'\]"):
        res.predict(new)


def test_predict_with_a_factor():
    df = _data(family="gaussian")
    res = fit_glmm("y ~ x1 + grp + (1 | st)", df)
    new = pd.DataFrame({"x1": [1.0, 1.0, 1.0], "grp": ["a", "c", None], "st": [0, 0, 0]})
    pred = res.predict(new, include_random=False)
    f = res.fixef
    assert pred[0] == pytest.approx(f["(Intercept)"] + f["x1"])
    assert pred[1] == pytest.approx(f["(Intercept)"] + f["x1"] + f["grpc"])
    assert np.isnan(pred[2])  # a missing level is not the reference level
    with pytest.raises(InputError, match=r"column 'grp' has level\(s\) \['d'\] not seen"):
        res.predict(new.assign(grp=["a", "d", "b"]))


def test_predict_bad_arguments():
    df = _data()
    res = fit_glmm(FORMULA, df, "binomial")
    with pytest.raises(InputError, match=r"type='probability': use 'link' or 'response'"):
        res.predict(df, type="probability")
    with pytest.raises(InputError, match=r"newdata must be a pandas DataFrame"):
        res.predict()
    with pytest.raises(InputError, match=r"newdata lacks column\(s\) \['x1'\]"):
        res.predict(df.drop(columns="x1"))


# ---------------------------------------------------------------------- warm start
@pytest.mark.parametrize("family", ["binomial", "poisson", "gaussian"])
def test_start_from_previous_fit(family):
    df = _data(family=family)
    cold = fit_glmm(FORMULA, df, family)
    warm = fit_glmm(FORMULA, df, family, start=cold)
    assert warm.converged
    assert warm.n_iter < cold.n_iter
    assert warm.loglik == pytest.approx(cold.loglik, abs=1e-6)
    np.testing.assert_allclose(warm.beta, cold.beta, atol=1e-4)
    np.testing.assert_allclose(warm.psi, cold.psi, atol=1e-4)


def test_start_from_dict():
    df = _data()
    cold = fit_glmm(FORMULA, df, "binomial")
    warm = fit_glmm(FORMULA, df, "binomial", start={"beta": cold.fixef, "theta": cold.theta})
    assert warm.n_iter < cold.n_iter
    assert warm.loglik == pytest.approx(cold.loglik, abs=1e-6)
