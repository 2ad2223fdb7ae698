"""Real IPD-MA structure: study-level variables (2lonly.*), study means as predictors
(code 3), derived (passive) variables, columns that are not data, imputation by group."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmi
from helpers import quiet, shared_csv
from mlmi.exceptions import ImputationWarning, InputError
from mlmi.methods import Problem, get_method
from mlmi.methods._multinom import augment_multinom, fit_multinom
from mlmi.mice.columns import not_data

FIXTURES = Path(__file__).resolve().parent / "fixtures"




# ------------------------------------------------------------------ real data
def test_brandsma_school_variables_constant_within_school():
    data = shared_csv("mice_brandsma.csv")
    # den (codes 1-4) is inferred nominal (issue 11: it was a count imputed 0-9)
    imp = quiet(mlmi.impute, data, "sch", m=2, maxit=2, seed=4)
    assert imp.types["den"] == "nominal"
    assert imp.study_level == ["den", "ssi"]
    assert imp.methods["den"] == "2lonly.polyreg" and imp.methods["ssi"] == "2lonly.norm"
    assert "pup" in imp.excluded and "identifier" in imp.excluded["pup"]
    assert "pup" not in imp.predictor_matrix.columns
    for i in (1, 2):
        done = imp.complete(i)
        assert not done[["den", "ssi"]].isna().any().any()
        per_school = done.groupby("sch")[["den", "ssi"]].nunique()
        assert (per_school == 1).all().all()  # one value per school
        assert set(done["den"].unique()) <= {1.0, 2.0, 3.0, 4.0}
        obs = data["ssi"].notna()
        np.testing.assert_array_equal(done.loc[obs, "ssi"], data.loc[obs, "ssi"])
        np.testing.assert_array_equal(done["pup"], data["pup"])
    # the schools without den got one drawn value; the 2lonly records are in diagnostics
    d = imp.diagnostics[imp.diagnostics["variable"] == "den"]
    assert (d["n_systematic"] == 13).all() and (d["n_studies_fit"] > 150).all()


def test_brandsma_level1_method_on_school_variable_warns():
    data = shared_csv("mice_brandsma.csv")
    plan = mlmi.mice.make_plan(data, "sch", method={"ssi": "2l.norm"},
                               types={"den": "categorical"})
    assert any("'ssi' is constant within every study" in w for w in plan.warnings)
    # declared participant-level: no warning, a level-1 model
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImputationWarning)
        plan = mlmi.mice.make_plan(data, "sch", level={"ssi": 1}, types={"den": "categorical"})
    assert plan.methods["ssi"] == "2l.norm" and "ssi" not in plan.level2


def test_obesity_bmi_is_weight_over_height_squared():
    data = shared_csv("micemd_Obesity.csv")
    imp = quiet(mlmi.impute, data, "Cluster", m=3, maxit=3, seed=2,
                 derived={"BMI": "Weight / Height ** 2"})
    assert imp.methods["BMI"] == "~Weight / Height ** 2"
    pm = imp.predictor_matrix
    assert pm.loc["Weight", "BMI"] == 0 and pm.loc["Height", "BMI"] == 0
    assert pm.loc["Age", "BMI"] == 1 and "BMI" not in pm.index
    obs = data["BMI"].notna()
    for i in (1, 2, 3):
        done = imp.complete(i)
        assert not done.isna().any().any()
        np.testing.assert_allclose(done["BMI"], done["Weight"] / done["Height"] ** 2,
                                   rtol=1e-12)
        np.testing.assert_array_equal(done.loc[obs, "BMI"], data.loc[obs, "BMI"])
    # imputed BMI differs between imputations (it follows the imputed weights)
    assert imp.imputations["BMI"].std(axis=0).mean() > 0.1


# ------------------------------------------------------------------ not data
def _with_junk(n_studies=8, per=100, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_studies * per
    st = np.repeat(np.arange(n_studies), per)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    d = pd.DataFrame({
        "Unnamed: 0": np.arange(1, n + 1),
        "patient": [f"P{k:05d}" for k in rng.permutation(n)],
        "visit": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "when": pd.date_range("2020-01-01", periods=n, freq="h"),
        "st": st, "x": x, "y": y,
    })
    d.loc[rng.random(n) < 0.2, "x"] = np.nan
    d.loc[rng.random(n) < 0.05, "patient"] = None
    return d


def test_identifier_date_and_row_name_columns_left_out():
    data = _with_junk()
    imp = quiet(mlmi.impute, data, "st", m=2, maxit=2, seed=1)
    ex = imp.excluded
    assert set(ex) == {"Unnamed: 0", "patient", "visit", "when"}
    assert ex["Unnamed: 0"].startswith("row-name") and ex["patient"].startswith("identifier")
    assert ex["patient"].startswith(
        "identifier (text with 757 distinct values in 757 observed rows of 800")
    assert ex["visit"].startswith("date/time") and ex["when"].startswith("date/time")
    assert list(imp.predictor_matrix.columns) == ["x", "y", "st"]
    assert any("'patient' left out of every model" in n for n in imp.notes)
    done = imp.complete(1)
    for col in ex:  # kept untouched, missing values included
        pd.testing.assert_series_equal(done[col], data[col])
    assert done["x"].notna().all()


def test_exclude_and_types_override():
    data = _with_junk()
    data["noise"] = np.random.default_rng(3).normal(size=len(data))
    imp = quiet(mlmi.impute, data, "st", m=1, maxit=1, seed=1, exclude=["noise"],
                 types={"Unnamed: 0": "continuous"})
    assert imp.excluded["noise"] == "exclude=" and "Unnamed: 0" not in imp.excluded
    assert "Unnamed: 0" in imp.predictor_matrix.columns
    assert "noise" not in imp.predictor_matrix.columns
    with pytest.raises(InputError, match="exclude names column 'nope'"):
        mlmi.impute(data, "st", exclude=["nope"])
    with pytest.raises(InputError, match="cluster"):
        mlmi.impute(data, "st", exclude=["st"])


def test_not_data_rules():
    n = 200
    assert not_data(pd.Series(np.random.default_rng(0).normal(size=n), name="w")) is None
    assert not_data(pd.Series(np.arange(n) % 50, name="age")) is None
    assert not_data(pd.Series(np.arange(n), name="pid")).startswith("identifier")
    assert not_data(pd.Series([f"id{k}" for k in range(n)], name="pid")).startswith("ident")
    assert not_data(pd.Series(["a", "b"] * (n // 2), name="g")) is None
    assert not_data(pd.Series(["01/02/2020"] * n, name="d")).startswith("date/time")
    assert not_data(pd.Series(np.arange(10), name="small")) is None  # too few rows
    rng = np.random.default_rng(1)
    grams = pd.Series(rng.choice(np.arange(2000, 4500), 100, replace=False), name="bw")
    assert not_data(grams) is None  # all distinct integers, but a measurement (not dense)
    ids = pd.Series(rng.choice(np.arange(100000, 999999), 1000, replace=False), name="pid")
    assert not_data(ids).startswith("identifier")  # sparse, but 1000 all distinct
    assert not_data(pd.Series(np.arange(1000.0) + 0.5, name="w")) is None  # not integers


def test_many_level_categorical_warned_before_fitting():
    rng = np.random.default_rng(1)
    n = 600
    d = pd.DataFrame({"st": np.repeat(np.arange(6), 100), "x": rng.normal(size=n),
                      "country": [f"c{k}" for k in rng.integers(0, 40, n)]})
    d.loc[rng.random(n) < 0.2, "x"] = np.nan
    plan = mlmi.mice.make_plan(d, "st")  # decided before any model is fitted
    assert any("'country' has 40 levels" in w and "exclude=['country']" in w
               for w in plan.warnings)
    with pytest.warns(ImputationWarning, match="'country' has 40 levels"):
        mlmi.impute(d, "st", m=1, maxit=1, seed=1)


# ------------------------------------------------------------------ study level
def _study_data(K=300, per=4, seed=0, frac=0.3):
    """z_k = 1 + 2 xbar_k + N(0, 0.5^2) per study; z missing for a share of studies."""
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(K), per)
    u = rng.normal(size=K)
    x = u[st] + rng.normal(size=K * per)
    xbar = np.bincount(st, weights=x) / per
    z = 1 + 2 * xbar + 0.5 * rng.normal(size=K)
    cat = np.where(xbar[:, None] > [-0.5, 0.5], 1, 0).sum(axis=1)  # 0, 1, 2 by xbar
    miss = rng.random(K) < frac
    return st, x, xbar, z, cat, miss


def _problem(y, st, x, miss_study, rng, vtype="continuous", n_levels=0):
    K = st.max() + 1
    yy = y[st].astype(float)
    wy = miss_study[st]
    yy[wy] = 0.0
    status = np.where(miss_study, 2, 0)
    return Problem(variable="z", vtype=vtype, y=yy, ry=~wy, wy=wy, x=x[:, None],
                   x_names=["x"], type=np.ones(1, dtype=np.int64), cluster=st,
                   cluster_labels=np.arange(K), status=status, rng=rng, n_levels=n_levels)


def test_2lonly_norm_draws_from_study_level_regression():
    st, x, xbar, z, _, miss = _study_data()
    rng = np.random.default_rng(7)
    R = 200
    draws = []
    for _ in range(R):
        d = get_method("2lonly.norm").func(_problem(z, st, x, miss, rng))
        vals = d.values.reshape(-1, 4)
        assert np.all(vals == vals[:, :1])  # one value per study, copied to its members
        draws.append(vals[:, 0])
    draws = np.array(draws)  # R x missing studies
    resid = draws - (1 + 2 * xbar[miss])
    # E[z* | xbar] = 1 + 2 xbar up to the estimation error of 210 studies (SE of the
    # mean residual ~ 0.5/sqrt(R*91) + parameter draw ~ 0.05): 4 SE = 0.2
    assert abs(resid.mean()) < 0.2
    assert resid.std() == pytest.approx(0.5, rel=0.15)  # sigma* around 0.5


def test_2lonly_pmm_bin_polyreg_take_values_of_observing_studies():
    st, x, xbar, z, cat, miss = _study_data(seed=3)
    rng = np.random.default_rng(2)
    d = get_method("2lonly.pmm").func(_problem(z, st, x, miss, rng))
    assert np.isin(d.values, z[~miss]).all()
    b = (z > 1).astype(float)
    got = np.mean([get_method("2lonly.bin").func(_problem(b, st, x, miss, rng)).values
                   for _ in range(50)], axis=0).reshape(-1, 4)[:, 0]
    # P(z > 1 | xbar) = Phi(2 xbar / 0.5): check the imputed shares by xbar tercile
    true = (xbar[miss] > 0).astype(float)
    assert np.corrcoef(got, true)[0, 1] > 0.8
    codes = np.array([get_method("2lonly.polyreg").func(
        _problem(cat, st, x, miss, rng, "categorical", 3)).values for _ in range(30)])
    assert set(np.unique(codes)) <= {0.0, 1.0, 2.0}
    modal = np.array([np.bincount(c.astype(int), minlength=3).argmax()
                      for c in codes.T.reshape(-1, 4, 30)[:, 0, :]])
    assert np.mean(modal == cat[miss]) > 0.85  # cat is a deterministic function of xbar


def test_2lonly_keeps_a_studys_observed_value():
    st, x, _, z, _, miss = _study_data(K=40, seed=5)
    rng = np.random.default_rng(0)
    p = _problem(z, st, x, miss, rng)
    # one member of a missing study has it observed: the others get that value
    k = int(np.flatnonzero(miss)[0])
    first = np.flatnonzero(st == k)[0]
    p.ry[first], p.wy[first], p.y[first] = True, False, 9.5
    d = get_method("2lonly.norm").func(p)
    rows = np.flatnonzero(p.wy)
    np.testing.assert_array_equal(d.values[st[rows] == k], 9.5)
    assert d.info["n_sporadic"] == 1


def test_declared_study_level_must_be_constant():
    st, x, _, z, _, _ = _study_data(K=20)
    d = pd.DataFrame({"st": st, "x": x, "z": z[st] + np.where(st == 3, np.arange(len(st)), 0)})
    with pytest.raises(InputError, match=r"level\['z'\] = 2, but 'z' takes different"):
        mlmi.mice.make_plan(d, "st", level={"z": 2})
    with pytest.raises(InputError, match="level"):
        mlmi.mice.make_plan(d, "st", level={"z": 3})


# ------------------------------------------------------------------ multinomial fit
def test_multinom_matches_nnet():
    ref = json.loads((FIXTURES / "multinom_nnet.json").read_text())
    x = np.column_stack([np.ones(len(ref["y"])), ref["x1"], ref["x2"]])
    fit = fit_multinom(x, np.array(ref["y"]), 3)
    assert fit.converged
    # nnet's BFGS stops at reltol 1e-14 of the deviance: coefficients agree to ~1e-7
    np.testing.assert_allclose(fit.beta, np.array(ref["coef"]), atol=1e-6)
    np.testing.assert_allclose(fit.cov, np.array(ref["vcov"]), atol=1e-7)
    assert fit.loglik == pytest.approx(ref["loglik"][0], abs=1e-9)


def test_multinom_matches_statsmodels_weighted_as_replicated():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(4)
    n = 150
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.integers(0, 4, n)
    w = rng.integers(1, 4, n)
    fit = fit_multinom(x, y, 4, weights=w.astype(float))
    rep = np.repeat(np.arange(n), w)  # frequency weights = replicated rows
    ref = sm.MNLogit(y[rep], x[rep]).fit(disp=0, method="newton", tol=1e-12)
    np.testing.assert_allclose(fit.beta, ref.params, atol=1e-8)
    np.testing.assert_allclose(fit.cov, np.asarray(ref.cov_params()), atol=1e-10)


def test_multinom_augmentation_keeps_separated_fit_finite():
    x = np.column_stack([np.ones(30), np.linspace(-1, 1, 30)])
    y = np.repeat([0, 1, 2], 10)  # perfectly separated by x
    xa, ya, wa = augment_multinom(x, 3)
    assert wa.sum() == pytest.approx(2) and set(ya) == {0, 1, 2}
    fit = fit_multinom(np.vstack([x, xa]), np.concatenate([y, ya]), 3,
                       weights=np.concatenate([np.ones(30), wa]))
    assert fit.converged and np.all(np.isfinite(fit.cov)) and np.abs(fit.beta).max() < 100


# ------------------------------------------------------------------ study means (code 3)
def test_code_3_adds_current_study_means(monkeypatch):
    st, x, *_ = _study_data(K=30, seed=1)
    rng = np.random.default_rng(0)
    y = x + rng.normal(size=x.size)
    d = pd.DataFrame({"st": st, "x": x, "y": y})
    d.loc[rng.random(len(d)) < 0.3, "x"] = np.nan
    d.loc[rng.random(len(d)) < 0.3, "y"] = np.nan
    pm = pd.DataFrame({"x": [0, 3], "y": [1, 0], "st": [-2, -2]}, index=["x", "y"])
    import mlmi.mice.sampler as sampler

    seen = []
    real = sampler.get_method

    def spy(name):
        info = real(name)

        def func(problem):
            seen.append((problem.variable, list(problem.x_names), problem.x.copy(),
                         problem.cluster))
            return info.func(problem)
        return type(info)(info.name, info.types, info.multilevel, func, info.description,
                          info.level)
    monkeypatch.setattr(sampler, "get_method", spy)
    quiet(mlmi.impute, d, "st", m=1, maxit=2, seed=3, predictor_matrix=pm)
    calls = [c for c in seen if c[0] == "y"]
    assert calls and all(names == ["x", "mean(x)"] for _, names, _, _ in calls)
    for _, _, xx, cl in calls:  # the mean column is the study mean of the current x
        means = np.bincount(cl, weights=xx[:, 0]) / np.bincount(cl)
        np.testing.assert_allclose(xx[:, 1], means[cl], rtol=1e-12)
    with pytest.raises(InputError, match="collinear with the study dummies"):
        mlmi.impute(d, "st", method={"y": "norm", "x": "norm"},
                    predictor_matrix=pm.assign(st=[1, 1]))


# ------------------------------------------------------------------ derived
def test_derived_new_column_chain_and_observed_kept():
    rng = np.random.default_rng(2)
    n = 400
    d = pd.DataFrame({"st": np.repeat(np.arange(8), 50), "w": rng.normal(70, 10, n),
                      "h": rng.normal(170, 10, n), "treat": rng.integers(0, 2, n)})
    d.loc[rng.random(n) < 0.3, "w"] = np.nan
    d["bmi"] = d["w"] / (d["h"] / 100) ** 2
    d.loc[5, "bmi"] = 33.0  # observed though w is (say) missing there
    d.loc[5, "w"] = np.nan
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=1,
                 derived={"bmi": "w / (h / 100) ** 2", "tx": "treat * bmi",
                          "logw": "log(w)"})
    for i in (1, 2):
        done = imp.complete(i)
        assert done.loc[5, "bmi"] == 33.0
        other = done.index != 5
        np.testing.assert_allclose(done.loc[other, "bmi"],
                                   done.loc[other, "w"] / (done.loc[other, "h"] / 100) ** 2)
        np.testing.assert_allclose(done["tx"], done["treat"] * done["bmi"])
        np.testing.assert_allclose(done["logw"], np.log(done["w"]))
    assert imp.complete(0)["tx"].isna().all()  # new column: nothing observed
    assert "tx               derived     ~treat * bmi" in repr(imp)
    pm = imp.predictor_matrix
    assert pm.loc["w", "tx"] == 0 and pm.loc["w", "logw"] == 0  # not predictors of inputs


@pytest.mark.parametrize("derived,match", [
    ({"b": "w +"}, "not an expression"),
    ({"b": "nope * 2"}, "not a column of data"),
    ({"b": "b * 2"}, "itself"),
    ({"b": "__import__('os')"}, "only the functions"),
    ({"b": "w if w else h"}, "not allowed"),
    ({"b": "c * 2", "c": "w"}, "defined before"),
    ({"st": "w"}, "cluster"),
])
def test_derived_errors(derived, match):
    d = pd.DataFrame({"st": np.repeat([1, 2, 3], 10), "w": np.arange(30.0),
                      "h": np.arange(30.0) + 1})
    d.loc[3, "w"] = np.nan
    with pytest.raises(InputError, match=match):
        mlmi.mice.make_plan(d, "st", derived=derived)


# ------------------------------------------------------------------ by group
def _arms(seed=0, K=8, per=60):
    rng = np.random.default_rng(seed)
    st = np.repeat(np.arange(K), per)
    treat = rng.integers(0, 2, K * per)
    x = rng.normal(size=K * per)
    y = x + treat * x + rng.normal(size=K * per)
    d = pd.DataFrame({"st": st, "treat": treat, "x": x, "y": y})
    d.loc[rng.random(K * per) < 0.3, "x"] = np.nan
    return d


def test_by_group_imputes_each_arm_separately():
    d = _arms()
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=1, by="treat")
    assert imp.excluded["treat"].startswith("by=")
    assert set(imp.diagnostics["group"]) == {0, 1}
    text = repr(imp)
    assert "within the 2 levels of 'treat'" in text and "treat (by=)" in text
    assert imp.complete(1)["x"].notna().all()
    # reproducible, and a different seed gives different draws
    again = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=1, by="treat")
    np.testing.assert_array_equal(again.imputations["x"], imp.imputations["x"])
    # the arms' slopes of x on y differ (1 vs 2): the imputations keep that
    done = imp.complete(1)
    miss = d["x"].isna()
    slopes = [np.polyfit(done.loc[miss & (d.treat == a), "x"],
                         done.loc[miss & (d.treat == a), "y"], 1)[0] for a in (0, 1)]
    assert slopes[1] - slopes[0] > 0.5  # true slopes of y on x: 1 and 2


def test_by_group_few_participants_named_and_errors():
    d = _arms()
    d = d.drop(d.index[(d.st == 2) & (d.treat == 1)][3:])  # study 2: 3 treated
    with pytest.warns(ImputationWarning, match=r"group 1: 1 study has fewer than 5 .*2: 3"):
        mlmi.impute(d, "st", m=1, maxit=1, seed=1, by="treat")
    bad = _arms()
    bad.loc[0, "treat"] = np.nan
    with pytest.raises(InputError, match="fully observed"):
        mlmi.impute(bad, "st", by="treat")
    with pytest.raises(InputError, match="not a column"):
        mlmi.impute(_arms(), "st", by="arm")
    one = _arms()
    one.loc[one.treat == 1, "st"] = 0  # arm 1 in a single study
    with pytest.raises(mlmi.exceptions.MLMIError, match=r"by='treat', group 1"):
        quiet(mlmi.impute, one, "st", m=1, maxit=1, by="treat")


# ------------------------------------------------------------------ command line
def test_cli_structure_options(tmp_path, capsys):
    from mlmi.cli import main

    d = _arms()
    d["id"] = np.arange(len(d)) + 1000
    d["site_size"] = d["st"].map(lambda k: 100.0 + 10 * k)
    d.loc[d["st"] == 3, "site_size"] = np.nan
    src = tmp_path / "in.csv"
    d.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    code = main(
        ["impute", str(src), "--cluster", "st", "--m", "2", "--maxit", "1", "--seed", "1",
         "--by", "treat", "--derived", "x2=x * x", "--level2", "site_size",
         "--exclude", "id", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "x2" in err and "site_size" in err and "'id'" in err
    long = pd.read_csv(out)
    assert not long[["x", "x2", "site_size"]].isna().any().any()
    np.testing.assert_allclose(long["x2"], long["x"] ** 2)
    assert (long.groupby([".imp", "st"])["site_size"].nunique() == 1).all()
    assert main(["impute", str(src), "--cluster", "st", "--derived", "x2", "--out",
                 str(out)]) == 2
    assert "--derived 'x2': use NAME=EXPRESSION" in capsys.readouterr().err


def test_categorical_study_level_end_to_end_and_plot():
    rng = np.random.default_rng(8)
    K, per = 30, 20
    st = np.repeat(np.arange(K), per)
    setting = rng.choice(["clinic", "hospital", "population"], K)
    d = pd.DataFrame({"st": st, "x": rng.normal(size=K * per) + (setting == "clinic")[st],
                      "setting": pd.Categorical(setting[st]), "flag": rng.integers(0, 2, K)[st]})
    d.loc[d["st"] < 8, "setting"] = np.nan
    d.loc[d["st"].isin([9, 10]), "flag"] = np.nan
    d.loc[rng.random(len(d)) < 0.2, "x"] = np.nan
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=3)
    assert imp.methods["setting"] == "2lonly.polyreg" and imp.methods["flag"] == "2lonly.bin"
    for i in (1, 2):
        done = imp.complete(i)
        assert done["setting"].dtype == d["setting"].dtype  # categories kept
        assert (done.groupby("st", observed=True)[["setting", "flag"]].nunique() == 1).all().all()
    from mlmi import plots

    fig = plots.observed_vs_imputed(imp, "setting")
    labels = {tuple(t.get_text() for t in ax.get_xticklabels()) for ax in fig.axes}
    assert ("clinic", "hospital", "population") in labels


def test_code_3_keeps_a_contextual_effect():
    """y = 0.5 x + 1.5 mean_study(x) + u + e with y systematically missing in 16 of 40
    studies: imputing y from x alone (code 1) gives the systematic studies no contextual
    shift and attenuates the pooled contextual effect; with x's study mean (code 3) it is
    kept. Over 8 data sets the code-3 mean estimate has a Monte Carlo SE of about 0.03
    (measured: 0.029 over 12), so 0.15 is 5 SEs; code 1 averages about 0.7."""
    def gen(seed, K=40, per=25):
        rng = np.random.default_rng(seed)
        st = np.repeat(np.arange(K), per)
        x = rng.normal(size=K)[st] + rng.normal(size=K * per)
        xbar = np.bincount(st, weights=x) / per
        y = 0.5 * x + 1.5 * xbar[st] + 0.3 * rng.normal(size=K)[st] + rng.normal(size=K * per)
        d = pd.DataFrame({"st": st, "x": x, "y": y})
        d.loc[np.isin(st, rng.choice(K, 16, replace=False)), "y"] = np.nan
        return d

    def contextual(frame):
        xbar = frame.groupby("st")["x"].transform("mean").to_numpy()
        X = np.column_stack([np.ones(len(frame)), frame["x"], xbar])
        y = frame["y"].to_numpy()
        b = np.linalg.lstsq(X, y, rcond=None)[0]
        r = y - X @ b
        return b, r @ r / (len(y) - 3) * np.linalg.inv(X.T @ X)

    pm3 = pd.DataFrame({"x": [3], "y": [0], "st": [-2]}, index=["y"])
    est1, est3 = [], []
    for seed in range(8):
        d = gen(seed)
        est1.append(quiet(mlmi.impute, d, "st", m=5, maxit=1, seed=1).analyze(
            contextual).pool().loc["b2", "estimate"])
        est3.append(quiet(mlmi.impute, d, "st", m=5, maxit=1, seed=1, predictor_matrix=pm3
                           ).analyze(contextual).pool().loc["b2", "estimate"])
    assert abs(np.mean(est3) - 1.5) < 0.15
    assert np.mean(est1) < 1.1


def test_arguments_naming_an_excluded_column():
    data = _with_junk()
    with pytest.raises(InputError, match=r"level\['patient'\]: 'patient' is left out"):
        mlmi.mice.make_plan(data, "st", level={"patient": 2})
    with pytest.raises(InputError, match=r"method\['x'\]: 'x' is left out .*exclude="):
        mlmi.mice.make_plan(data, "st", exclude=["x"], method={"x": "pmm"})


def test_by_group_trace_is_the_whole_datas():
    d = _arms()
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=2, seed=1, by="treat")
    last = imp.chains[imp.chains["iteration"] == 2].set_index("chain")
    vals = imp.imputations["x"]  # the final iteration's values, m x n_missing
    np.testing.assert_allclose(last.loc[[1, 2], "mean"], vals.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(last.loc[[1, 2], "sd"], vals.std(axis=1, ddof=1), rtol=1e-10)


def test_by_group_study_level_value_observed_in_another_arm_wins():
    d = _arms(K=12)
    d["size"] = 100.0 + 10 * d["st"]
    d.loc[d["st"] < 3, "size"] = np.nan  # unknown in studies 0-2
    d.loc[(d["st"] == 4) & (d["treat"] == 1), "size"] = np.nan  # known from arm 0 only
    imp = quiet(mlmi.impute, d, "st", m=2, maxit=1, seed=2, by="treat")
    assert imp.study_level == ["size"]
    for i in (1, 2):
        done = imp.complete(i)
        assert (done.groupby("st")["size"].nunique() == 1).all()
        assert (done.loc[done["st"] == 4, "size"] == 140.0).all()
    assert any("take the value drawn in the group with most" in n for n in imp.notes)
