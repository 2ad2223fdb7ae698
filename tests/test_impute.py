"""mlmi.impute: the chained-equation driver, its outputs and its input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mlmi
from mlmi.exceptions import ImputationWarning, InputError, ModelError
from mlmi.simulation import ampute, generate

RANDOM = {"x1": ["y"], "x2": ["y"]}


@pytest.fixture(scope="module")
def paper_data() -> pd.DataFrame:
    """Binary outcome, 10 studies × 60, MAR sporadic + 30 % systematic missingness."""
    rng = np.random.default_rng(11)
    complete = generate("binary", "moderate", 10, rng, n_total=600)
    return ampute(complete, 0.3, "mar", rng)


@pytest.fixture(scope="module")
def imputed(paper_data) -> mlmi.Imputed:
    return mlmi.impute(paper_data, "st", m=3, maxit=3, random=RANDOM, seed=1)


# ----------------------------------------------------------------------- outputs
def test_observed_values_and_input_untouched(paper_data):
    before = paper_data.copy(deep=True)
    imp = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=3)
    pd.testing.assert_frame_equal(paper_data, before)
    for i in (1, 2):
        done = imp.complete(i)
        observed = paper_data.notna()
        for col in paper_data.columns:
            np.testing.assert_array_equal(done.loc[observed[col], col],
                                          paper_data.loc[observed[col], col])
        assert not done.isna().any().any()


def test_complete_keeps_index_columns_dtypes(paper_data):
    data = paper_data.copy()
    data.index = [f"p{i}" for i in range(len(data))]
    data["st"] = "study-" + data["st"].astype(str)
    data["x2"] = data["x2"].astype("Int64")  # nullable integer count
    imp = mlmi.impute(data, "st", m=2, maxit=1, seed=5)
    done = imp.complete(2)
    assert list(done.index) == list(data.index)
    assert list(done.columns) == list(data.columns)
    assert dict(done.dtypes) == dict(data.dtypes)
    assert set(done["x1"].unique()) <= {0.0, 1.0}
    assert (done["x2"] >= 0).all()


def test_complete_long_and_all(imputed, paper_data):
    long = imputed.complete("long")
    assert list(long.columns[:2]) == [".imp", ".id"]
    assert len(long) == 3 * len(paper_data)
    assert sorted(long[".imp"].unique()) == [1, 2, 3]
    # mice's layout: .id is the row number 1..n
    np.testing.assert_array_equal(long.loc[long[".imp"] == 2, ".id"],
                                  np.arange(1, len(paper_data) + 1))
    with_data = imputed.complete("long", include=True)
    assert sorted(with_data[".imp"].unique()) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(
        with_data[with_data[".imp"] == 0].drop(columns=[".imp", ".id"]),
        paper_data.reset_index(drop=True))
    assert len(imputed.complete("all")) == 3
    pd.testing.assert_frame_equal(imputed.complete(0), paper_data)
    with pytest.raises(InputError, match="1 to 3"):
        imputed.complete(4)


def test_same_seed_same_numbers(paper_data):
    a = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=42)
    b = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=42)
    c = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=43)
    for v in ("x1", "x2"):
        np.testing.assert_array_equal(a.imputations[v], b.imputations[v])
    assert any(not np.array_equal(a.imputations[v], c.imputations[v]) for v in ("x1", "x2"))


def test_chains_and_diagnostics(imputed, paper_data):
    ch = imputed.chains
    assert set(ch.columns) >= {"variable", "iteration", "chain", "mean", "sd"}
    assert len(ch) == 2 * 3 * 3  # variables × iterations × chains
    d = imputed.diagnostics
    assert len(d) == 2 * 3 * 3
    for col in ("variable", "iteration", "chain", "method", "n_sporadic", "n_systematic",
                "acceptance_rate", "fallbacks", "fit_warnings"):
        assert col in d.columns
    st = paper_data.groupby("st")["x1"].apply(lambda s: s.isna().all())
    assert (d.loc[d.variable == "x1", "n_systematic"] == st.sum()).all()
    assert set(d["method"]) == {"2l.bin", "2l.pois"}
    # the exact sampler accepts something on every call with sporadic studies
    spor = d[d.n_sporadic > 0]
    assert (spor["accepted"] >= spor["n_sporadic"]).all()


def test_methods_by_type(imputed):
    assert imputed.methods == {"x1": "2l.bin", "x2": "2l.pois"}
    assert imputed.types == {"y": "binary", "x1": "binary", "x2": "count"}
    pm = imputed.predictor_matrix
    assert pm.loc["x1", "y"] == 2 and pm.loc["x1", "x2"] == 1 and pm.loc["x1", "st"] == -2
    assert pm.loc["x2", "x1"] == 1 and pm.loc["x2", "x2"] == 0


def test_continuous_variable_and_override(paper_data):
    data = paper_data.copy()
    data["x2"] = data["x2"] + 0.5 * np.random.default_rng(0).standard_normal(len(data))
    imp = mlmi.impute(data, "st", m=1, maxit=1, seed=2)
    assert imp.methods["x2"] == "2l.norm"
    imp = mlmi.impute(paper_data, "st", m=1, maxit=1, seed=2, method={"x2": "2l.norm"})
    assert imp.methods["x2"] == "2l.norm"


@pytest.mark.filterwarnings("ignore::mlmi.exceptions.ImputationWarning")  # prior-ar's bound
@pytest.mark.parametrize("sampler", ["exact", "prior-ar", "laplace", "marginal"])
def test_samplers_run(paper_data, sampler):
    imp = mlmi.impute(paper_data, "st", m=1, maxit=1, random=RANDOM, seed=4, sampler=sampler)
    d = imp.diagnostics
    if sampler in ("marginal", "laplace"):  # direct draws: every proposal is accepted
        assert (d["proposals"] == d["accepted"]).all() and (d["fallbacks"] == 0).all()
    if sampler == "prior-ar":
        assert (d["proposals"] >= d["accepted"]).all()


def test_analyze_and_pool(imputed):
    fits = imputed.analyze("y ~ x1 + x2 + (1 + x1 | st)", "binomial")
    pooled = fits.pool()
    assert list(pooled.index) == ["(Intercept)", "x1", "x2"]
    for col in ("estimate", "std_error", "df", "riv", "fmi", "conf_low", "conf_high", "p_value"):
        assert col in pooled.columns
    assert (pooled["conf_low"] < pooled["estimate"]).all()
    rnd = fits.pool_random()
    assert list(rnd.columns[:2]) == ["mean", "median"]
    assert "sd((Intercept))" in rnd.index and "cor((Intercept),x1)" in rnd.index


# ----------------------------------------------------------------------- bad input
def _small():
    rng = np.random.default_rng(7)
    d = generate("binary", "weak", 6, rng, n_total=300)
    return ampute(d, 0.0, "mcar", rng)


def test_cluster_column_problems():
    d = _small()
    with pytest.raises(InputError, match="'study' is not a column"):
        mlmi.impute(d, "study")
    bad = d.copy()
    bad.loc[3, "st"] = np.nan
    with pytest.raises(InputError, match="cluster column 'st' has 1 missing"):
        mlmi.impute(bad, "st")


def test_variable_missing_everywhere():
    d = _small()
    d["z"] = np.nan
    with pytest.raises(InputError, match="'z' is missing in all 300 rows"):
        mlmi.impute(d, "st")


def test_binary_with_three_values():
    d = _small()
    d.loc[0, "x1"] = 2.0
    with pytest.raises(InputError, match=r"'x1' is declared binary but has 3 distinct"):
        mlmi.impute(d, "st", types={"x1": "binary"})
    with pytest.raises(InputError, match="imputes binary variables, but 'x1' is count"):
        mlmi.impute(d, "st", method={"x1": "2l.bin"})


def test_negative_counts_for_poisson():
    d = _small()
    d["x2"] = d["x2"] - 1
    with pytest.raises(InputError, match=r"'x2' has negative values \[-1.0\]"):
        mlmi.impute(d, "st", method={"x2": "2l.pois"})


def test_unknown_method_and_wrong_type():
    d = _small()
    with pytest.raises(InputError, match=r"unknown imputation method '2l\.foo'"):
        mlmi.impute(d, "st", method={"x1": "2l.foo"})
    with pytest.raises(InputError, match=r"'2l\.pois' imputes count variables, but 'x1' is "
                                         "binary"):
        mlmi.impute(d, "st", method={"x1": "2l.pois"})
    with pytest.raises(InputError, match="method names column 'nope'"):
        mlmi.impute(d, "st", method={"nope": "2l.bin"})


def test_random_slope_on_non_predictor():
    d = _small()
    pm = pd.DataFrame(1, index=["x1", "x2"], columns=["y", "x1", "x2", "st"])
    pm["st"] = -2
    pm.loc["x1", "x1"] = pm.loc["x2", "x2"] = 0
    pm.loc["x1", "y"] = 0
    with pytest.raises(InputError, match="random slope for 'y' in the model of 'x1', but 'y' "
                                         "is not a predictor"):
        mlmi.impute(d, "st", predictor_matrix=pm, random={"x1": ["y"]})
    with pytest.raises(InputError, match="random\\['x1'\\] names the cluster column 'st'"):
        mlmi.impute(d, "st", random={"x1": ["st"]})


def test_study_with_one_participant_is_noted():
    d = _small()
    d.loc[0, "st"] = 99  # a study of one participant
    with pytest.warns(ImputationWarning, match=r"single participant \(99\)"):
        imp = mlmi.impute(d, "st", m=1, maxit=1, seed=1)
    assert any("single participant (99)" in n for n in imp.notes)


def test_only_one_study_observes_a_variable():
    d = _small()
    d.loc[d.st != 1, "x1"] = np.nan
    with pytest.raises(ModelError, match="only one study observes 'x1' \\(study '1'\\)"):
        mlmi.impute(d, "st")


def test_separation_is_counted():
    d = _small()
    # x1 = y exactly where observed: complete separation in x1's model
    d["x1"] = np.where(d["x1"].isna(), np.nan, d["y"])
    with pytest.warns(ImputationWarning, match=r"x1: 2/2 model fits with separation of the "
                                               "fixed effects"):
        imp = mlmi.impute(d, "st", m=1, maxit=2, seed=1)
    dx = imp.diagnostics[imp.diagnostics.variable == "x1"]
    assert dx["fit_warnings"].str.contains("separation").all()
    assert imp.summary().loc["x1", "n_fit_warnings"] > 0


def test_categorical_predictor_dummy_coded():
    d = _small()
    d["grp"] = pd.Categorical(np.random.default_rng(1).choice(["a", "b", "c"], len(d)))
    imp = mlmi.impute(d, "st", m=1, maxit=1, seed=1)
    assert any("'grp' enters the imputation models as 2 dummy column(s) ['grpb', 'grpc']"
               in n for n in imp.notes)
    assert imp.complete(1)["grp"].dtype == d["grp"].dtype
    d.loc[0, "grp"] = np.nan
    from mlmi.methods import available_methods

    if "2l.polyreg" in available_methods():  # the nominal method (issue 11)
        imp = mlmi.impute(d, "st", m=1, maxit=1, seed=1)
        assert imp.methods["grp"] == "2l.polyreg"
        assert imp.complete(1)["grp"].iloc[0] in ("a", "b", "c")
    else:
        with pytest.raises(InputError, match=r"'grp' is nominal .* with 1 missing values; "
                                             r"strategy 'mlmi' imputes nominal variables "
                                             r"with '2l\.polyreg', which is not available"):
            mlmi.impute(d, "st")


def test_bad_arguments():
    d = _small()
    with pytest.raises(InputError, match="m=0"):
        mlmi.impute(d, "st", m=0)
    with pytest.raises(InputError, match="sampler='gibbs'"):
        mlmi.impute(d, "st", sampler="gibbs")
    with pytest.raises(InputError, match="data must be a pandas DataFrame"):
        mlmi.impute(d.to_numpy(), "st")
    with pytest.raises(InputError, match="visit_sequence names 'y'"):
        mlmi.impute(d, "st", visit_sequence=["x1", "x2", "y"])


def test_prior_ar_fallbacks_are_reported():
    """The paper's sampler gives up on large, heterogeneous studies: counted and warned."""
    rng = np.random.default_rng(0)  # a data set where it falls back 6 times
    d = ampute(generate("binary", "strong", 6, rng, n_total=3000), 0.1, "mar", rng)
    with pytest.warns(ImputationWarning, match=r"sampler fallback\(s\) \(prior-ar: the prior draw"):
        imp = mlmi.impute(d, "st", m=2, maxit=3, random=RANDOM, seed=2, sampler="prior-ar")
    assert imp.summary()["fallbacks"].sum() == imp.diagnostics["fallbacks"].sum() > 0


def test_parallel_chains_equal_serial(paper_data):
    a = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=9)
    b = mlmi.impute(paper_data, "st", m=2, maxit=2, random=RANDOM, seed=9, n_jobs=2)
    for v in ("x1", "x2"):
        np.testing.assert_array_equal(a.imputations[v], b.imputations[v])


def test_binary_coded_1_2_declared_binary():
    d = _small()
    d["z"] = np.where(np.random.default_rng(3).random(len(d)) < 0.4, 2.0, 1.0)
    d.loc[d.index[::9], "z"] = np.nan
    imp = mlmi.impute(d, "st", m=1, maxit=1, types={"z": "binary"}, seed=1)
    assert imp.methods["z"] == "2l.bin"
    done = imp.complete(1)
    assert set(done["z"].unique()) <= {1.0, 2.0} and done["z"].notna().all()


def test_draw_beta_refuses_a_non_finite_covariance():
    """A failed fit's NaN covariance is a named error, not numpy's LinAlgError."""
    from mlmi.methods._multilevel import draw_beta

    cov = np.eye(2)
    cov[0, 1] = np.nan
    with pytest.raises(ModelError, match="not finite"):
        draw_beta(np.zeros(2), cov, np.random.default_rng(0))
    draw = draw_beta(np.zeros(2), np.eye(2), np.random.default_rng(0))
    assert draw.shape == (2,) and np.all(np.isfinite(draw))


def test_posterior_mode_failures_are_counted_and_reported(paper_data, monkeypatch):
    """A study whose posterior mode is not found (Newton fails) is counted in
    SamplerStats, the diagnostics and summary(), and named in the end-of-run warning —
    the kernel is wrapped here to report one failure per call."""
    import mlmi.posterior as posterior

    stats = posterior.SamplerStats()
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(20), rng.binomial(1, 0.5, 20)])
    y = rng.binomial(1, 0.3, 20).astype(float)
    psi = np.eye(2) * 0.5
    posterior.draw_random_effects("binomial", y, X, X, np.zeros(2), psi, 5, rng,
                                  method="laplace", stats=stats)
    assert stats.mode_failures == 0
    real = posterior._modes
    monkeypatch.setattr(posterior, "_modes", lambda *a: real(*a) + 1)
    posterior.draw_random_effects("binomial", y, X, X, np.zeros(2), psi, 5, rng,
                                  method="laplace", stats=stats)
    assert stats.mode_failures == 1
    with pytest.warns(ImputationWarning, match=r"study posterior mode\(s\) not found"):
        imp = mlmi.impute(paper_data, "st", m=1, maxit=1, random=RANDOM, seed=3)
    assert imp.summary()["mode_failures"].sum() == imp.diagnostics["mode_failures"].sum() > 0
